/*
 * test_bus — the in-process publish/subscribe of src/chat/bus: delivery to
 * every subscriber of a topic except the sender, topic isolation, frame
 * reference counting, unsubscribe (the last one removes the topic), and
 * allocation failures in frame and subscription creation.
 */
#include <criterion/criterion.h>

#include "chat/bus.h"
#include "util/mem.h"

#include <stdio.h>
#include <string.h>

#include "torture.h"

typedef struct {
    int got;
    char last[32];
} inbox;

static void deliver(void *subscriber, chat_frame *f)
{
    inbox *in = subscriber;
    in->got++;
    snprintf(in->last, sizeof in->last, "%.*s", (int)chat_frame_len(f), chat_frame_data(f));
}

Test(bus, publish_reaches_every_subscriber_but_the_sender)
{
    chat_bus *b = chat_bus_new();
    cr_assert_not_null(b);
    inbox a = {0}, c = {0}, other = {0};
    chat_sub *sa = chat_bus_subscribe(b, "lobby", deliver, &a);
    chat_sub *sc = chat_bus_subscribe(b, "lobby", deliver, &c);
    chat_sub *so = chat_bus_subscribe(b, "other", deliver, &other);
    cr_assert(sa && sc && so);
    cr_assert_eq(chat_bus_subscribers(b, "lobby"), 2);
    cr_assert_eq(chat_bus_subscribers(b, "nobody"), 0);

    chat_frame *f = chat_frame_take(mem_strdup("hello"), 5);
    cr_assert_eq(chat_bus_publish(b, "lobby", f, &a), 1, "the sender is skipped");
    cr_assert_eq(a.got, 0);
    cr_assert_eq(c.got, 1);
    cr_assert_str_eq(c.last, "hello");
    cr_assert_eq(other.got, 0, "topics are separate");
    cr_assert_eq(chat_bus_publish(b, "lobby", f, NULL), 2);
    cr_assert_eq(chat_bus_publish(b, "nobody", f, NULL), 0);

    chat_frame *g = chat_frame_ref(f);
    chat_frame_unref(f);
    cr_assert_str_eq(chat_frame_data(g), "hello", "a reference keeps the frame");
    chat_frame_unref(g);
    chat_frame_unref(NULL);

    chat_bus_unsubscribe(b, sa);
    cr_assert_eq(chat_bus_subscribers(b, "lobby"), 1);
    chat_bus_unsubscribe(b, sc);
    cr_assert_eq(chat_bus_subscribers(b, "lobby"), 0);
    chat_bus_unsubscribe(b, NULL);
    /* the topic was removed with its last subscriber: subscribing again works */
    sa = chat_bus_subscribe(b, "lobby", deliver, &a);
    cr_assert_eq(chat_bus_subscribers(b, "lobby"), 1);
    chat_bus_unsubscribe(b, sa);
    chat_bus_unsubscribe(b, so);
    chat_bus_free(b);
    chat_bus_free(NULL);
    check_leaks();
}

Test(bus, allocation_failures)
{
    /* a frame that cannot be made frees the data it was given */
    char *data = mem_strdup("x");
    mem_fail_at(1);
    cr_assert_null(chat_frame_take(data, 1));
    mem_fail_at(0);
    chat_bus *b = NULL;
    mem_fail_at(1);
    cr_assert_null(chat_bus_new());
    mem_fail_at(0);
    b = chat_bus_new();
    inbox in = {0};
    for (unsigned long n = 1; n <= 2; n++) {
        mem_fail_at(n);
        cr_assert_null(chat_bus_subscribe(b, "t", deliver, &in), "allocation %lu", n);
        mem_fail_at(0);
    }
    cr_assert_eq(chat_bus_subscribers(b, "t"), 0, "a failed subscribe leaves nothing");
    chat_bus_free(b);
    check_leaks();
}
