/*
 * fuzz_event — libFuzzer target for chat/event: a cluster event as NATS
 * would carry it (JSON), read by every node (chat/link.c).
 *
 * Every input that is JSON goes through chat_event_kind_of and the reader
 * of its kind. What must hold, beyond what the sanitizers catch:
 *  - a message that is accepted has a valid room name, a user id > 0,
 *    text and ts, a source of auto, manual or whisper; a whisper has 1..20
 *    recipients, ascending and distinct, whose text form is exactly those
 *    ids joined by commas; anything else has no recipients; and it builds
 *    into the frame and the object chatd delivers;
 *  - an accepted announcement, kick, close or room names a valid room (or
 *    every room, for an announcement), and an announcement builds;
 *  - nothing read is longer than the protocol allows.
 * Single-threaded, like libFuzzer's driver.
 */
#include "app/offer.h"
#include "chat/event.h"
#include "chat/protocol.h"
#include "util/mem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_event: broken promise: %s\n", what);
        abort();
    }
}

static void message(const json_t *ev)
{
    proto_message m;
    long ids[PROTO_MAX_RECIPIENTS];
    size_t n = 0;
    char text[CHAT_EVENT_RECIPIENTS_MAX];
    if (!chat_event_message(ev, 42, &m, ids, &n, text)) {
        check(n == 0 || n <= PROTO_MAX_RECIPIENTS, "recipients bounded when refused");
        return;
    }
    check(m.room && offer_room_name_valid(m.room), "a valid room");
    check(m.user_id > 0 && m.text && m.ts && strlen(m.ts) <= 31, "user, text and ts");
    check(strlen(m.text) <= PROTO_MAX_TEXT * 4, "text within the protocol's size");
    int whisper = strcmp(m.source, "whisper") == 0;
    check(whisper || strcmp(m.source, "auto") == 0 || strcmp(m.source, "manual") == 0,
          "a known source");
    check(whisper == (m.to != NULL), "recipients exactly on whispers");
    if (whisper) {
        check(n >= 1 && n <= PROTO_MAX_RECIPIENTS, "1..20 recipients");
        char again[CHAT_EVENT_RECIPIENTS_MAX];
        size_t len = 0;
        for (size_t i = 0; i < n; i++) {
            check(ids[i] > 0 && (i == 0 || ids[i] > ids[i - 1]), "ascending, distinct ids");
            len += (size_t)snprintf(again + len, sizeof again - len, i ? ",%ld" : "%ld", ids[i]);
        }
        check(strcmp(again, text) == 0, "the recipients' text form");
    } else {
        check(n == 0 && text[0] == '\0', "no recipients on a public message");
    }
    char *frame = proto_build_message(&m, "ref");
    json_t *obj = proto_message_object(&m, NULL);
    check(frame != NULL && obj != NULL, "an accepted message builds");
    mem_free(frame);
    json_decref(obj);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *ev = json_loadb((const char *)data, size, 0, NULL);
    if (ev == NULL)
        return 0;
    const char *origin = NULL, *room, *text, *ts, *reason;
    long user;
    int removed;
    chat_room_def def;
    switch (chat_event_kind_of(ev, &origin)) {
    case CHAT_EVENT_MESSAGE:
        message(ev);
        break;
    case CHAT_EVENT_ANNOUNCEMENT:
        if (chat_event_announcement(ev, &room, &text, &ts)) {
            check(room == NULL || offer_room_name_valid(room), "an announcement's room");
            json_t *obj = proto_announcement_object(42, room, text, ts);
            check(obj != NULL, "an accepted announcement builds");
            json_decref(obj);
        }
        break;
    case CHAT_EVENT_KICK:
        if (chat_event_kick(ev, &room, &user))
            check(offer_room_name_valid(room) && user > 0, "a kick's room and user");
        break;
    case CHAT_EVENT_CLOSE:
        if (chat_event_close(ev, &room, &reason))
            check(offer_room_name_valid(room) && strlen(reason) <= 200, "a close's room");
        break;
    case CHAT_EVENT_ROOM:
        if (chat_event_room(ev, &def, &removed))
            check(offer_room_name_valid(def.name), "a room event's name");
        break;
    case CHAT_EVENT_BAD:
        break;
    }
    json_decref(ev);
    return 0;
}
