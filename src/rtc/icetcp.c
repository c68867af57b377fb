/*
 * icetcp — see icetcp.h.
 *
 * Closing is deferred while a loop dispatches: a closed connection is
 * taken out of its epoll set and its descriptor closed at once, but its
 * memory waits on the loop's graveyard until the end of the dispatch, so
 * an event for it later in the same epoll batch finds it marked dead
 * (a peer can replace one of its connections while another one is read).
 */
#include "rtc/icetcp.h"

#include "util/netaddr.h"

#include "rtc/stun.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define ACCEPT_BATCH 32
#define READ_ROUNDS 16 /* recv calls per connection per dispatch */
#define LISTEN_BACKLOG 128
#define FRAME_HEADER 2

struct icetcp_conn {
    int fd;
    int loop;     /* the loop it is on now */
    int stranger; /* no valid check yet: counted against the caps */
    int dead;     /* closed; memory on the graveyard */
    int moves;    /* hand-offs so far (at most one is ever needed) */
    int64_t deadline_us;
    struct sockaddr_in remote;
    void *ice; /* its peer, once attached */
    icetcp_peer *peer;
    rtc_timer timer;
    icetcp_conn *prev, *next; /* the loop's list */
    icetcp_conn *link;        /* hand-off list or graveyard */

    /* writing: any thread, under wlock */
    pthread_mutex_t wlock;
    int wfull; /* the write buffer overflowed: being closed */
    int want_out;
    uint8_t *wbuf; /* ICETCP_WRITE_BUFFER bytes, allocated when first needed */
    size_t woff, wlen;

    size_t rlen;
    uint8_t rbuf[2 * (FRAME_HEADER + ICETCP_MAX_FRAME)];
};

typedef struct {
    int index;
    rtc_loop *loop;
    int epfd, lfd, evfd;
    icetcp_conn *conns; /* every connection of this loop (owner thread) */
    icetcp_conn *grave;
    int dispatching;
    pthread_mutex_t handoff_lock;
    icetcp_conn *handoff;
    int stopped; /* under handoff_lock */
} tcp_loop;

static struct {
    int running;
    uint16_t port;
    void (*unwatch)(int loop, int fd);
    int n;
    tcp_loop *tl;
    pthread_mutex_t lock; /* the caps: strangers and per_addr */
    int strangers;
    GHashTable *per_addr; /* remote IPv4 (network order) -> strangers from it */
} T = {.lock = PTHREAD_MUTEX_INITIALIZER};

static struct {
    atomic_ulong accepted, open, strangers, rx_frames, tx_frames, handed_off, refused_total,
        refused_address, closed_bad_stun, closed_unknown_username, closed_bad_integrity,
        closed_oversize, closed_timeout, closed_write_full, dropped_frames;
} S;

/* epoll tags besides connections */
static char tag_listen, tag_handoff;

icetcp_stats icetcp_get_stats(void)
{
    return (icetcp_stats){
        .accepted = atomic_load(&S.accepted),
        .open = atomic_load(&S.open),
        .strangers = atomic_load(&S.strangers),
        .rx_frames = atomic_load(&S.rx_frames),
        .tx_frames = atomic_load(&S.tx_frames),
        .handed_off = atomic_load(&S.handed_off),
        .refused_total = atomic_load(&S.refused_total),
        .refused_address = atomic_load(&S.refused_address),
        .closed_bad_stun = atomic_load(&S.closed_bad_stun),
        .closed_unknown_username = atomic_load(&S.closed_unknown_username),
        .closed_bad_integrity = atomic_load(&S.closed_bad_integrity),
        .closed_oversize = atomic_load(&S.closed_oversize),
        .closed_timeout = atomic_load(&S.closed_timeout),
        .closed_write_full = atomic_load(&S.closed_write_full),
        .dropped_frames = atomic_load(&S.dropped_frames),
    };
}

uint16_t icetcp_port(void) { return T.running ? T.port : 0; }

int icetcp_loop_fd(int loop) { return T.running ? T.tl[loop].epfd : -1; }

/* ---------- the caps on strangers ---------- */

/* 0 when a stranger from addr may be admitted (and is counted), else the
 * counter of the cap it is over. */
static atomic_ulong *stranger_admit(uint32_t addr)
{
    atomic_ulong *over = NULL;
    pthread_mutex_lock(&T.lock);
    gpointer key = GUINT_TO_POINTER(addr);
    int from_addr = GPOINTER_TO_INT(g_hash_table_lookup(T.per_addr, key));
    if (T.strangers >= ICETCP_MAX_STRANGERS)
        over = &S.refused_total;
    else if (from_addr >= ICETCP_MAX_PER_ADDRESS)
        over = &S.refused_address;
    else {
        T.strangers++;
        g_hash_table_insert(T.per_addr, key, GINT_TO_POINTER(from_addr + 1));
    }
    pthread_mutex_unlock(&T.lock);
    return over;
}

static void stranger_release(icetcp_conn *c)
{
    if (!c->stranger)
        return;
    c->stranger = 0;
    atomic_fetch_sub(&S.strangers, 1);
    pthread_mutex_lock(&T.lock);
    gpointer key = GUINT_TO_POINTER(c->remote.sin_addr.s_addr);
    int from_addr = GPOINTER_TO_INT(g_hash_table_lookup(T.per_addr, key));
    if (from_addr <= 1)
        g_hash_table_remove(T.per_addr, key);
    else
        g_hash_table_insert(T.per_addr, key, GINT_TO_POINTER(from_addr - 1));
    T.strangers--;
    pthread_mutex_unlock(&T.lock);
}

/* ---------- connections ---------- */

static void conn_free(icetcp_conn *c)
{
    pthread_mutex_destroy(&c->wlock);
    mem_free(c->wbuf);
    mem_free(c);
}

static void free_grave(tcp_loop *tl)
{
    while (tl->grave) {
        icetcp_conn *c = tl->grave;
        tl->grave = c->link;
        conn_free(c);
    }
}

static void list_remove(tcp_loop *tl, icetcp_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (tl->conns == c)
        tl->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void list_add(tcp_loop *tl, icetcp_conn *c)
{
    c->prev = NULL;
    c->next = tl->conns;
    if (tl->conns)
        tl->conns->prev = c;
    tl->conns = c;
}

/* Owner loop: closes c; `counter` (may be NULL) counts the reason. */
static void conn_close(icetcp_conn *c, atomic_ulong *counter, const char *why)
{
    if (c->dead)
        return;
    tcp_loop *tl = &T.tl[c->loop];
    c->dead = 1;
    if (counter)
        atomic_fetch_add(counter, 1);
    stranger_release(c);
    rtc_timer_stop(&c->timer);
    if (c->ice) {
        /* after this no other thread can reach c (icetcp.h: Threading) */
        void *ice = c->ice;
        c->ice = NULL;
        mux_tcp_unpath(ice, c);
        for (int i = 0; i < ICETCP_PER_PEER; i++)
            if (c->peer->conn[i] == c)
                c->peer->conn[i] = NULL;
        c->peer = NULL;
    }
    char a[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &c->remote.sin_addr, a, sizeof a);
    if (counter)
        log_info("icetcp", "connection from %s:%u closed: %s", a, ntohs(c->remote.sin_port), why);
    else
        log_debug("icetcp", "connection from %s:%u closed: %s", a, ntohs(c->remote.sin_port), why);
    epoll_ctl(tl->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    atomic_fetch_sub(&S.open, 1);
    list_remove(tl, c);
    c->link = tl->grave;
    tl->grave = c;
    if (!tl->dispatching)
        free_grave(tl);
}

static void timeout_cb(rtc_timer *t)
{
    icetcp_conn *c = (icetcp_conn *)((char *)t - offsetof(icetcp_conn, timer));
    conn_close(c, &S.closed_timeout, "no valid ICE check within the time allowed");
}

static void set_events(icetcp_conn *c, int out)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(T.tl[c->loop].epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

void icetcp_send(icetcp_conn *c, const uint8_t *data, size_t len)
{
    if (len > 0xFFFF)
        return;
    uint8_t hdr[FRAME_HEADER] = {(uint8_t)(len >> 8), (uint8_t)len};
    size_t total = FRAME_HEADER + len, sent = 0;
    pthread_mutex_lock(&c->wlock);
    if (c->wfull || c->fd < 0) {
        pthread_mutex_unlock(&c->wlock);
        return;
    }
    if (c->wlen == 0) {
        struct iovec iov[2] = {{.iov_base = hdr, .iov_len = FRAME_HEADER},
                               {.iov_base = (void *)data, .iov_len = len}};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
        ssize_t r;
        do
            r = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (r < 0 && errno == EINTR);
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            /* broken: the reader sees it too and closes */
            pthread_mutex_unlock(&c->wlock);
            return;
        }
        sent = r > 0 ? (size_t)r : 0;
        if (sent == total) {
            pthread_mutex_unlock(&c->wlock);
            atomic_fetch_add(&S.tx_frames, 1);
            return;
        }
    }
    size_t rest = total - sent;
    if (c->wbuf == NULL)
        c->wbuf = mem_alloc(ICETCP_WRITE_BUFFER);
    if (c->wbuf == NULL || c->wlen + rest > ICETCP_WRITE_BUFFER) {
        /* The remote does not read: close rather than block or grow. The
         * owner loop sees the shutdown as the end of the stream. */
        c->wfull = 1;
        shutdown(c->fd, SHUT_RDWR);
        pthread_mutex_unlock(&c->wlock);
        return;
    }
    if (c->woff + c->wlen + rest > ICETCP_WRITE_BUFFER) {
        memmove(c->wbuf, c->wbuf + c->woff, c->wlen);
        c->woff = 0;
    }
    uint8_t *at = c->wbuf + c->woff + c->wlen;
    for (size_t i = sent; i < FRAME_HEADER; i++)
        *at++ = hdr[i];
    size_t skip = sent > FRAME_HEADER ? sent - FRAME_HEADER : 0;
    memcpy(at, data + skip, len - skip);
    c->wlen += rest;
    if (!c->want_out) {
        c->want_out = 1;
        set_events(c, 1);
    }
    pthread_mutex_unlock(&c->wlock);
    atomic_fetch_add(&S.tx_frames, 1);
}

/* Owner loop: the socket can take more. */
static void conn_writable(icetcp_conn *c)
{
    pthread_mutex_lock(&c->wlock);
    while (c->wlen > 0 && !c->wfull) {
        ssize_t r = send(c->fd, c->wbuf + c->woff, c->wlen, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break; /* EAGAIN: wait again; an error: the reader closes */
        }
        c->woff += (size_t)r;
        c->wlen -= (size_t)r;
    }
    if (c->wlen == 0) {
        c->woff = 0;
        if (c->want_out) {
            c->want_out = 0;
            set_events(c, 0);
        }
    }
    pthread_mutex_unlock(&c->wlock);
}

void icetcp_attach(icetcp_peer *p, icetcp_conn *c, void *ice, const icetcp_conn *path)
{
    int slot = -1;
    for (int i = 0; i < ICETCP_PER_PEER && slot < 0; i++)
        if (p->conn[i] == NULL)
            slot = i;
    for (int tries = 0; tries < ICETCP_PER_PEER && slot < 0; tries++) {
        int i = p->next;
        p->next = (p->next + 1) % ICETCP_PER_PEER;
        if (p->conn[i] != path)
            slot = i;
    }
    if (p->conn[slot])
        conn_close(p->conn[slot], NULL, "replaced by a newer connection of its peer");
    p->conn[slot] = c;
    c->ice = ice;
    c->peer = p;
    stranger_release(c);
    rtc_timer_stop(&c->timer);
}

void icetcp_peer_close(icetcp_peer *p)
{
    for (int i = 0; i < ICETCP_PER_PEER; i++)
        if (p->conn[i])
            conn_close(p->conn[i], NULL, "its peer closed");
}

/* ---------- hand-off to the owner loop ---------- */

static void handoff(tcp_loop *from, icetcp_conn *c, int owner)
{
    rtc_timer_stop(&c->timer);
    epoll_ctl(from->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    list_remove(from, c);
    c->moves++;
    tcp_loop *to = &T.tl[owner];
    pthread_mutex_lock(&to->handoff_lock);
    int ok = !to->stopped;
    int was_empty = to->handoff == NULL;
    if (ok) {
        c->link = to->handoff;
        to->handoff = c;
    }
    pthread_mutex_unlock(&to->handoff_lock);
    if (!ok) { /* shutting down */
        list_add(from, c);
        conn_close(c, NULL, "shutting down");
        return;
    }
    atomic_fetch_add(&S.handed_off, 1);
    if (was_empty) {
        uint64_t one = 1;
        if (write(to->evfd, &one, sizeof one) < 0 && errno != EAGAIN)
            log_debug("icetcp", "hand-off wake: %s", strerror(errno));
    }
}

static void conn_readable(tcp_loop *tl, icetcp_conn *c);
static int conn_frames(tcp_loop *tl, icetcp_conn *c);

static void read_handoff(tcp_loop *tl)
{
    uint64_t v;
    if (read(tl->evfd, &v, sizeof v) < 0 && errno != EAGAIN)
        log_debug("icetcp", "hand-off read: %s", strerror(errno));
    pthread_mutex_lock(&tl->handoff_lock);
    icetcp_conn *list = tl->handoff;
    tl->handoff = NULL;
    pthread_mutex_unlock(&tl->handoff_lock);
    while (list) {
        icetcp_conn *c = list;
        list = c->link;
        c->link = NULL;
        c->loop = tl->index;
        list_add(tl, c);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        int64_t left_ms = (c->deadline_us - g_get_monotonic_time()) / 1000;
        if (epoll_ctl(tl->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
            conn_close(c, NULL, "cannot watch it on its peer's loop");
            continue;
        }
        if (left_ms <= 0) {
            conn_close(c, &S.closed_timeout, "no valid ICE check within the time allowed");
            continue;
        }
        rtc_timer_start(tl->loop, &c->timer, left_ms, timeout_cb);
        if (conn_frames(tl, c) == 0)
            conn_readable(tl, c);
    }
}

/* ---------- reading ---------- */

/* Handles the whole frames in c's buffer. 0 to read on; -1 when c is
 * closed or handed off. */
static int conn_frames(tcp_loop *tl, icetcp_conn *c)
{
    size_t off = 0;
    while (c->rlen - off >= FRAME_HEADER && !c->dead) {
        size_t flen = (size_t)c->rbuf[off] << 8 | c->rbuf[off + 1];
        if (flen > ICETCP_MAX_FRAME) {
            conn_close(c, &S.closed_oversize, "a frame over 2 KiB");
            return -1;
        }
        if (c->rlen - off < FRAME_HEADER + flen)
            break;
        const uint8_t *f = c->rbuf + off + FRAME_HEADER;
        if (c->stranger || stun_is_stun(f, flen)) {
            int owner = -1;
            mux_tcp_result r = mux_tcp_check(tl->index, c, c->ice, &c->remote, f, flen, &owner);
            if (r == MUX_TCP_OTHER_LOOP && c->stranger && c->moves == 0) {
                /* the frame stays in the buffer for the owner */
                memmove(c->rbuf, c->rbuf + off, c->rlen - off);
                c->rlen -= off;
                handoff(tl, c, owner);
                return -1;
            }
            if (r != MUX_TCP_OK && c->stranger) {
                atomic_ulong *why = r == MUX_TCP_UNKNOWN_USERNAME ? &S.closed_unknown_username
                                    : r == MUX_TCP_BAD_INTEGRITY  ? &S.closed_bad_integrity
                                                                  : &S.closed_bad_stun;
                conn_close(c, why,
                           r == MUX_TCP_UNKNOWN_USERNAME ? "first frame: a check for no peer"
                           : r == MUX_TCP_BAD_INTEGRITY  ? "first frame: a check that fails "
                                                           "MESSAGE-INTEGRITY"
                                                         : "first frame is not an ICE check");
                return -1;
            }
            if (r != MUX_TCP_OK)
                atomic_fetch_add(&S.dropped_frames, 1);
        } else {
            mux_tcp_input(c->ice, f, flen);
        }
        atomic_fetch_add(&S.rx_frames, 1);
        off += FRAME_HEADER + flen;
    }
    if (c->dead)
        return -1;
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen -= off;
    return 0;
}

static void conn_readable(tcp_loop *tl, icetcp_conn *c)
{
    for (int round = 0; round < READ_ROUNDS && !c->dead; round++) {
        size_t room = sizeof c->rbuf - c->rlen;
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, room, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            pthread_mutex_lock(&c->wlock);
            int full = c->wfull;
            pthread_mutex_unlock(&c->wlock);
            if (full)
                conn_close(c, &S.closed_write_full,
                           "its write buffer is full (the remote does not read)");
            else
                conn_close(c, NULL, n == 0 ? "closed by the remote" : strerror(errno));
            return;
        }
        c->rlen += (size_t)n;
        if (conn_frames(tl, c) < 0)
            return;
        if ((size_t)n < room)
            return;
    }
}

static void accept_some(tcp_loop *tl)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        int fd = accept4(tl->lfd, (struct sockaddr *)&from, &fl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        atomic_fetch_add(&S.accepted, 1);
        atomic_ulong *over =
            from.sin_family == AF_INET ? stranger_admit(from.sin_addr.s_addr) : &S.refused_total;
        if (over) {
            atomic_fetch_add(over, 1);
            close(fd);
            continue;
        }
        atomic_fetch_add(&S.strangers, 1);
        icetcp_conn *c = mem_calloc(1, sizeof *c);
        if (c == NULL) {
            icetcp_conn tmp = {.stranger = 1, .remote = from};
            stranger_release(&tmp);
            close(fd);
            continue;
        }
        atomic_fetch_add(&S.open, 1);
        c->fd = fd;
        c->loop = tl->index;
        c->stranger = 1;
        c->remote = from;
        c->deadline_us = g_get_monotonic_time() + (int64_t)ICETCP_AUTH_TIMEOUT_MS * 1000;
        pthread_mutex_init(&c->wlock, NULL);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        list_add(tl, c);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        if (epoll_ctl(tl->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ||
            rtc_timer_start(tl->loop, &c->timer, ICETCP_AUTH_TIMEOUT_MS, timeout_cb) < 0) {
            conn_close(c, NULL, "cannot watch it");
            continue;
        }
    }
}

void icetcp_dispatch(int loop)
{
    tcp_loop *tl = &T.tl[loop];
    struct epoll_event ev[64];
    int n = epoll_wait(tl->epfd, ev, 64, 0);
    tl->dispatching = 1;
    for (int i = 0; i < n; i++) {
        void *tag = ev[i].data.ptr;
        if (tag == &tag_listen) {
            accept_some(tl);
        } else if (tag == &tag_handoff) {
            read_handoff(tl);
        } else {
            icetcp_conn *c = tag;
            if (c->dead || c->loop != loop)
                continue;
            if (ev[i].events & EPOLLOUT)
                conn_writable(c);
            if (!c->dead && (ev[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                conn_readable(tl, c);
        }
    }
    tl->dispatching = 0;
    free_grave(tl);
}

/* ---------- start / stop ---------- */

static int open_listener(uint16_t port, char *err, size_t errlen)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err_set(err, errlen, "TCP socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        err_set(err, errlen, "cannot listen on TCP port %u (--ice-tcp-port): %s", port,
                strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int watch(int epfd, int fd, void *tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

int icetcp_start(rtc_loops *loops, uint16_t port, char *err, size_t errlen)
{
    if (!netaddr_port_free(SOCK_STREAM, port)) {
        err_set(err, errlen, "TCP port %u (--ice-tcp-port) is in use by another process", port);
        return -1;
    }
    if (T.running) {
        err_set(err, errlen, "ICE-TCP is already running");
        return -1;
    }
    T.n = rtc_loops_count(loops);
    T.port = port;
    T.tl = mem_calloc((size_t)T.n, sizeof *T.tl);
    if (T.tl == NULL) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_lock(&T.lock);
    T.per_addr = g_hash_table_new(g_direct_hash, g_direct_equal);
    T.strangers = 0;
    pthread_mutex_unlock(&T.lock);
    for (int i = 0; i < T.n; i++) {
        tcp_loop *tl = &T.tl[i];
        tl->index = i;
        tl->loop = rtc_loops_get(loops, i);
        tl->epfd = tl->lfd = tl->evfd = -1;
        pthread_mutex_init(&tl->handoff_lock, NULL);
    }
    T.running = 1; /* from here icetcp_stop undoes whatever was made */
    for (int i = 0; i < T.n; i++) {
        tcp_loop *tl = &T.tl[i];
        tl->epfd = epoll_create1(EPOLL_CLOEXEC);
        tl->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (tl->epfd < 0 || tl->evfd < 0 || watch(tl->epfd, tl->evfd, &tag_handoff) < 0) {
            err_set(err, errlen, "cannot set up loop %d's TCP poller: %s", i, strerror(errno));
            icetcp_stop(NULL);
            return -1;
        }
        tl->lfd = open_listener(port, err, errlen);
        if (tl->lfd < 0 || watch(tl->epfd, tl->lfd, &tag_listen) < 0) {
            icetcp_stop(NULL);
            return -1;
        }
    }
    return 0;
}

/* On loop tl's thread: closes what it holds. */
static void stop_loop(void *arg)
{
    tcp_loop *tl = arg;
    if (T.unwatch && tl->epfd >= 0)
        T.unwatch(tl->index, tl->epfd);
    pthread_mutex_lock(&tl->handoff_lock);
    tl->stopped = 1;
    icetcp_conn *list = tl->handoff;
    tl->handoff = NULL;
    pthread_mutex_unlock(&tl->handoff_lock);
    for (icetcp_conn *c; (c = list) != NULL;) {
        list = c->link;
        c->loop = tl->index;
        list_add(tl, c);
        conn_close(c, NULL, "shutting down");
    }
    while (tl->conns)
        conn_close(tl->conns, NULL, "shutting down");
    free_grave(tl);
}

void icetcp_stop(void (*unwatch)(int loop, int fd))
{
    if (!T.running)
        return;
    T.unwatch = unwatch;
    for (int i = 0; i < T.n; i++) {
        tcp_loop *tl = &T.tl[i];
        if (rtc_loop_current() == tl->loop)
            stop_loop(tl);
        else
            rtc_loop_run_sync(tl->loop, stop_loop, tl);
    }
    for (int i = 0; i < T.n; i++) {
        tcp_loop *tl = &T.tl[i];
        if (tl->lfd >= 0)
            close(tl->lfd);
        if (tl->evfd >= 0)
            close(tl->evfd);
        if (tl->epfd >= 0)
            close(tl->epfd);
        pthread_mutex_destroy(&tl->handoff_lock);
    }
    mem_free(T.tl);
    T.tl = NULL;
    pthread_mutex_lock(&T.lock);
    g_hash_table_destroy(T.per_addr);
    T.per_addr = NULL;
    T.strangers = 0;
    pthread_mutex_unlock(&T.lock);
    T.running = 0;
}
