/*
 * mux — see mux.h.
 *
 * Ownership rule that keeps this lock-light: a mux_ice is only ever read
 * or written on its owner loop's thread, except for its send path (guarded
 * by path_lock) and its immutable credentials. The two lookup tables (ufrag
 * -> peer, and per receiving loop 5-tuple -> peer) store the owner's index
 * beside the pointer, so a loop that finds a peer owned by another loop
 * forwards the datagram without touching the peer; an entry leaves its
 * table (under that table's lock) before the peer is freed on its owner.
 */
#include "rtc/mux.h"

#include "rtc/ice.h"
#include "rtc/icetcp.h"
#include "rtc/stun.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define RX_BATCH 32
#define RX_ROUNDS 8 /* recvmmsg calls per dispatch before yielding */
#define TX_BATCH 64
#define DGRAM_MAX 2048
#define INBOX_MAX 4096
#define MAX_TUPLES 4 /* 5-tuples one peer may use at once */
#define MAX_LOCAL_ADDRS 16
#define CHECK_RTO_MS 50
#define CHECK_RTO_MAX_MS 800
#define CONSENT_MIN_MS 4000
#define CONSENT_SPREAD_MS 2000
#define UFRAG_LEN 8
#define PWD_LEN 24

/* A 5-tuple on the shared socket (the protocol and our port are fixed). */
typedef struct {
    uint32_t local_ip; /* network order: the address the client sent to */
    uint32_t remote_ip;
    uint16_t remote_port; /* network order */
    uint16_t zero;
} tuple_key;

typedef struct mux_loop mux_loop;
typedef struct mux_ice mux_ice;

typedef struct {
    tuple_key key;
    mux_ice *ice; /* dereferenced on the owner loop only */
    int owner;
} tuple_entry;

typedef struct {
    GSource base;
    mux_loop *ml;
} mux_source;

typedef struct inbox_item {
    struct inbox_item *next;
    int recv_loop;
    tuple_key key;
    size_t len;
    uint8_t data[];
} inbox_item;

typedef struct {
    int n;
    int fd;
    struct mmsghdr msgs[TX_BATCH];
    struct iovec iov[TX_BATCH];
    struct sockaddr_in to[TX_BATCH];
    union {
        char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
        struct cmsghdr align;
    } ctl[TX_BATCH];
    uint8_t data[TX_BATCH][DGRAM_MAX];
} tx_batch;

struct mux_loop {
    int index;
    rtc_loop *loop;
    int sock; /* the shared server socket, -1 on a client */
    int epfd;
    int evfd;
    mux_source *src;
    pthread_mutex_t table_lock;
    GHashTable *by_tuple;     /* tuple_key -> tuple_entry (owned) */
    uint8_t (*rx)[DGRAM_MAX]; /* RX_BATCH receive buffers */
    pthread_mutex_t inbox_lock;
    inbox_item *inbox_head, *inbox_tail;
    int inbox_count;
    tx_batch *tx;
};

struct mux_ice {
    rtc_ice base;
    mux_loop *owner;
    int controlling;
    int local_client;
    rtc_ice_callbacks cb;
    void *arg;
    char peer_id[40];
    char ufrag[UFRAG_LEN + 1];
    char pwd[PWD_LEN + 1];
    char remote_ufrag[257];
    char remote_pwd[257];
    int have_remote;
    int registered; /* in the ufrag table */
    int connected;
    int64_t last_seen_us; /* last valid check (server) or answer (client) */
    rtc_timer timer;      /* server: consent; client: checks and consent */

    /* server: the 5-tuples this peer's checks came from */
    struct {
        tuple_key key;
        int loop;
        int used;
    } tuples[MAX_TUPLES];
    int next_tuple;

    /* the path sends take: any thread, under path_lock */
    pthread_mutex_t path_lock;
    int has_path;
    struct sockaddr_in path_remote;
    uint32_t path_local_ip;
    icetcp_conn *path_tcp; /* the path is this ICE-TCP connection (icetcp.h) */

    /* server: its ICE-TCP connections */
    icetcp_peer tcp;

    /* client */
    int fd;
    struct sockaddr_in cands[RTC_MAX_REMOTE_CANDIDATES];
    int n_cands;
    uint64_t tiebreaker;
    uint8_t txid[STUN_TXID_BYTES];
    int rto_ms;
};

static struct {
    int running;
    rtc_loops *loops;
    int n;
    mux_loop *ml;
    uint16_t port;
    int consent_ms;
    char addrs[MAX_LOCAL_ADDRS][INET_ADDRSTRLEN]; /* advertised, non-loopback */
    int n_addrs;
    pthread_mutex_t ufrag_lock;
    GHashTable *by_ufrag; /* ufrag -> mux_ice (owner read under the lock) */
} M = {.ufrag_lock = PTHREAD_MUTEX_INITIALIZER};

static struct {
    atomic_ulong rx_datagrams, tx_datagrams, rx_calls, tx_calls, forwarded;
    atomic_ulong drop_unknown_source, drop_bad_stun, drop_unknown_username, drop_bad_integrity,
        drop_inbox_full, consent_expired;
} S;

/* The batch the calling thread is filling, while its loop handles input. */
static _Thread_local tx_batch *current_tx;
static void (*batch_end)(void);
static void tx_flush(tx_batch *b);

int rtc_mux_batching(void) { return current_tx != NULL; }

void rtc_mux_set_batch_end(void (*fn)(void)) { batch_end = fn; }

rtc_mux_stats rtc_mux_get_stats(void)
{
    return (rtc_mux_stats){
        .rx_datagrams = atomic_load(&S.rx_datagrams),
        .tx_datagrams = atomic_load(&S.tx_datagrams),
        .rx_calls = atomic_load(&S.rx_calls),
        .tx_calls = atomic_load(&S.tx_calls),
        .forwarded = atomic_load(&S.forwarded),
        .drop_unknown_source = atomic_load(&S.drop_unknown_source),
        .drop_bad_stun = atomic_load(&S.drop_bad_stun),
        .drop_unknown_username = atomic_load(&S.drop_unknown_username),
        .drop_bad_integrity = atomic_load(&S.drop_bad_integrity),
        .drop_inbox_full = atomic_load(&S.drop_inbox_full),
        .consent_expired = atomic_load(&S.consent_expired),
        .tcp = icetcp_get_stats(),
    };
}

int rtc_mux_running(void) { return M.running; }

/* ---------- tables ---------- */

static guint tuple_hash(gconstpointer k)
{
    const tuple_key *t = k;
    uint64_t h = ((uint64_t)t->remote_ip << 16 | t->remote_port) ^ ((uint64_t)t->local_ip << 40);
    h *= 0x9E3779B97F4A7C15ull;
    return (guint)(h >> 32);
}

static gboolean tuple_equal(gconstpointer a, gconstpointer b)
{
    return memcmp(a, b, sizeof(tuple_key)) == 0;
}

static void tuple_forget(mux_ice *ice, int i)
{
    if (!ice->tuples[i].used)
        return;
    mux_loop *ml = &M.ml[ice->tuples[i].loop];
    pthread_mutex_lock(&ml->table_lock);
    tuple_entry *e = g_hash_table_lookup(ml->by_tuple, &ice->tuples[i].key);
    if (e && e->ice == ice)
        g_hash_table_remove(ml->by_tuple, &ice->tuples[i].key);
    pthread_mutex_unlock(&ml->table_lock);
    ice->tuples[i].used = 0;
}

/* Owner thread: this peer's checks come from key on loop recv. */
static void tuple_learn(mux_ice *ice, int recv, const tuple_key *key)
{
    for (int i = 0; i < MAX_TUPLES; i++)
        if (ice->tuples[i].used && ice->tuples[i].loop == recv &&
            memcmp(&ice->tuples[i].key, key, sizeof *key) == 0)
            return;
    int slot = -1;
    for (int i = 0; i < MAX_TUPLES && slot < 0; i++)
        if (!ice->tuples[i].used)
            slot = i;
    if (slot < 0) { /* the oldest gives way, never the path in use */
        pthread_mutex_lock(&ice->path_lock);
        for (int tries = 0; tries < MAX_TUPLES && slot < 0; tries++) {
            int i = ice->next_tuple;
            ice->next_tuple = (ice->next_tuple + 1) % MAX_TUPLES;
            int is_path = ice->has_path &&
                          ice->path_remote.sin_addr.s_addr == ice->tuples[i].key.remote_ip &&
                          ice->path_remote.sin_port == ice->tuples[i].key.remote_port &&
                          ice->path_local_ip == ice->tuples[i].key.local_ip;
            if (!is_path)
                slot = i;
        }
        pthread_mutex_unlock(&ice->path_lock);
        tuple_forget(ice, slot);
    }
    tuple_entry *e = mem_alloc(sizeof *e);
    if (e == NULL)
        return; /* still answered; the next check tries again */
    e->key = *key;
    e->ice = ice;
    e->owner = ice->owner->index;
    mux_loop *ml = &M.ml[recv];
    pthread_mutex_lock(&ml->table_lock);
    /* A 5-tuple that another peer held (a client reusing its port) now
     * belongs to this one: its checks proved it. */
    g_hash_table_replace(ml->by_tuple, &e->key, e);
    pthread_mutex_unlock(&ml->table_lock);
    ice->tuples[slot].key = *key;
    ice->tuples[slot].loop = recv;
    ice->tuples[slot].used = 1;
}

/* ---------- sending ---------- */

static void count_tx(unsigned long datagrams)
{
    atomic_fetch_add(&S.tx_datagrams, datagrams);
    atomic_fetch_add(&S.tx_calls, 1);
}

static void tx_flush(tx_batch *b)
{
    int off = 0;
    while (off < b->n) {
        int r = sendmmsg(b->fd, b->msgs + off, (unsigned)(b->n - off), 0);
        atomic_fetch_add(&S.tx_calls, 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            off++; /* that datagram failed (as a lost packet would); go on */
            continue;
        }
        atomic_fetch_add(&S.tx_datagrams, (unsigned long)r);
        off += r;
    }
    b->n = 0;
}

static void fill_pktinfo(struct msghdr *mh, void *ctl, size_t ctlcap, uint32_t local_ip)
{
    if (local_ip == 0) {
        mh->msg_control = NULL;
        mh->msg_controllen = 0;
        return;
    }
    memset(ctl, 0, ctlcap);
    mh->msg_control = ctl;
    mh->msg_controllen = CMSG_SPACE(sizeof(struct in_pktinfo));
    struct cmsghdr *c = CMSG_FIRSTHDR(mh);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
    struct in_pktinfo pi = {0};
    pi.ipi_spec_dst.s_addr = local_ip;
    memcpy(CMSG_DATA(c), &pi, sizeof pi);
}

/* From the shared port: queued in the calling loop's batch when it is
 * handling input, else sent at once. local_ip picks the source address
 * (the one the client sent to). */
static void shared_send(mux_loop *owner, const struct sockaddr_in *to, uint32_t local_ip,
                        const uint8_t *data, size_t len)
{
    tx_batch *b = current_tx;
    if (b && len <= DGRAM_MAX) {
        int i = b->n;
        memcpy(b->data[i], data, len);
        b->iov[i] = (struct iovec){.iov_base = b->data[i], .iov_len = len};
        b->to[i] = *to;
        struct msghdr *mh = &b->msgs[i].msg_hdr;
        memset(mh, 0, sizeof *mh);
        mh->msg_name = &b->to[i];
        mh->msg_namelen = sizeof b->to[i];
        mh->msg_iov = &b->iov[i];
        mh->msg_iovlen = 1;
        fill_pktinfo(mh, b->ctl[i].buf, sizeof b->ctl[i].buf, local_ip);
        if (++b->n == TX_BATCH)
            tx_flush(b);
        return;
    }
    union {
        char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    struct msghdr mh = {
        .msg_name = (void *)to, .msg_namelen = sizeof *to, .msg_iov = &iov, .msg_iovlen = 1};
    fill_pktinfo(&mh, ctl.buf, sizeof ctl.buf, local_ip);
    if (sendmsg(owner->sock, &mh, 0) >= 0)
        count_tx(1);
}

static void client_send(mux_ice *ice, const struct sockaddr_in *to, const uint8_t *data, size_t len)
{
    if (sendto(ice->fd, data, len, 0, (const struct sockaddr *)to, sizeof *to) >= 0)
        count_tx(1);
}

static void mux_send(rtc_ice *base, const uint8_t *data, size_t len)
{
    mux_ice *ice = (mux_ice *)base;
    pthread_mutex_lock(&ice->path_lock);
    if (ice->path_tcp) { /* under the lock: it keeps the connection alive */
        icetcp_send(ice->path_tcp, data, len);
        pthread_mutex_unlock(&ice->path_lock);
        return;
    }
    int ok = ice->has_path;
    struct sockaddr_in to = ice->path_remote;
    uint32_t local_ip = ice->path_local_ip;
    pthread_mutex_unlock(&ice->path_lock);
    if (!ok)
        return;
    if (ice->controlling)
        client_send(ice, &to, data, len);
    else
        shared_send(ice->owner, &to, local_ip, data, len);
}

static void set_path(mux_ice *ice, const struct sockaddr_in *remote, uint32_t local_ip)
{
    pthread_mutex_lock(&ice->path_lock);
    ice->has_path = 1;
    ice->path_remote = *remote;
    ice->path_local_ip = local_ip;
    ice->path_tcp = NULL;
    pthread_mutex_unlock(&ice->path_lock);
}

/* ---------- server: answering checks ---------- */

static void consent_cb(rtc_timer *t);

static void mark_connected(mux_ice *ice)
{
    if (ice->connected)
        return;
    ice->connected = 1;
    ice->cb.connected(ice->arg);
}

/* Owner thread: a STUN Binding request for this peer. */
static void answer_check(mux_ice *ice, int recv, const tuple_key *key, const uint8_t *data,
                         size_t len, const stun_msg *m)
{
    /* USERNAME is "OURS:THEIRS" (RFC 8445 §7.2.2). */
    size_t ul = strlen(ice->ufrag);
    const char *theirs = (const char *)m->username + ul + 1;
    size_t tl = m->username_len - ul - 1;
    if (ice->have_remote &&
        (tl != strlen(ice->remote_ufrag) || memcmp(theirs, ice->remote_ufrag, tl) != 0)) {
        atomic_fetch_add(&S.drop_bad_integrity, 1);
        log_debug("mux", "peer %s: a check with another remote ufrag dropped", ice->peer_id);
        return;
    }
    if (!stun_check_integrity(data, len, m, (const uint8_t *)ice->pwd, strlen(ice->pwd))) {
        atomic_fetch_add(&S.drop_bad_integrity, 1);
        log_debug("mux", "peer %s: a check with a bad MESSAGE-INTEGRITY dropped", ice->peer_id);
        return;
    }
    struct sockaddr_in from = {
        .sin_family = AF_INET, .sin_addr.s_addr = key->remote_ip, .sin_port = key->remote_port};
    uint8_t out[STUN_MAX_MESSAGE_BYTES];
    stun_writer w;
    stun_begin(&w, out, sizeof out, STUN_BINDING_SUCCESS, m->txid);
    stun_add_xor_address(&w, (const struct sockaddr *)&from);
    int n = stun_finish(&w, (const uint8_t *)ice->pwd, strlen(ice->pwd));
    if (n > 0)
        shared_send(ice->owner, &from, key->local_ip, out, (size_t)n);
    tuple_learn(ice, recv, key);
    ice->last_seen_us = g_get_monotonic_time();
    /* A lite agent sends on the pair the controlling side nominated; until
     * it nominates, on the first pair that checked in (RFC 8445 §6.1.3.2). */
    pthread_mutex_lock(&ice->path_lock);
    int nominate = m->use_candidate || !ice->has_path;
    pthread_mutex_unlock(&ice->path_lock);
    if (nominate)
        set_path(ice, &from, key->local_ip);
    if (!ice->connected) {
        char a[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &from.sin_addr, a, sizeof a);
        log_debug("mux", "peer %s: ICE connected from %s:%u (loop %d, read by loop %d)",
                  ice->peer_id, a, ntohs(from.sin_port), ice->owner->index, recv);
        rtc_timer_start(ice->owner->loop, &ice->timer, M.consent_ms, consent_cb);
        mark_connected(ice);
    }
}

static void consent_cb(rtc_timer *t)
{
    mux_ice *ice = (mux_ice *)((char *)t - offsetof(mux_ice, timer));
    int64_t idle_ms = (g_get_monotonic_time() - ice->last_seen_us) / 1000;
    if (idle_ms < M.consent_ms) {
        rtc_timer_start(ice->owner->loop, &ice->timer, M.consent_ms - idle_ms, consent_cb);
        return;
    }
    atomic_fetch_add(&S.consent_expired, 1);
    ice->cb.failed(ice->arg, "ICE consent expired (no check for the consent timeout)");
}

/* ---------- server: ICE-TCP (icetcp.h) ---------- */

static int username_ufrag(const stun_msg *m, char *out, size_t cap);

mux_tcp_result mux_tcp_check(int loop, icetcp_conn *c, void *known,
                             const struct sockaddr_in *remote, const uint8_t *data, size_t len,
                             int *owner)
{
    stun_msg m;
    char err[128], ufrag[UFRAG_LEN + 1];
    int r = -1;
    if (stun_parse(data, len, &m, err, sizeof err) < 0 || m.type != STUN_BINDING_REQUEST ||
        !m.has_fingerprint || m.integrity_at == 0 ||
        (r = username_ufrag(&m, ufrag, sizeof ufrag)) < 0)
        return r == -2 ? MUX_TCP_UNKNOWN_USERNAME : MUX_TCP_BAD_STUN;
    pthread_mutex_lock(&M.ufrag_lock);
    mux_ice *ice = M.by_ufrag ? g_hash_table_lookup(M.by_ufrag, ufrag) : NULL;
    *owner = ice ? ice->owner->index : -1;
    pthread_mutex_unlock(&M.ufrag_lock);
    if (ice == NULL)
        return MUX_TCP_UNKNOWN_USERNAME;
    if (*owner != loop)
        return known ? MUX_TCP_BAD_INTEGRITY : MUX_TCP_OTHER_LOOP;
    if (known && known != ice)
        return MUX_TCP_BAD_INTEGRITY; /* a connection of one peer checking for another */
    size_t ul = strlen(ice->ufrag);
    const char *theirs = (const char *)m.username + ul + 1;
    size_t tl = m.username_len - ul - 1;
    if ((ice->have_remote &&
         (tl != strlen(ice->remote_ufrag) || memcmp(theirs, ice->remote_ufrag, tl) != 0)) ||
        !stun_check_integrity(data, len, &m, (const uint8_t *)ice->pwd, strlen(ice->pwd)))
        return MUX_TCP_BAD_INTEGRITY;
    uint8_t out[STUN_MAX_MESSAGE_BYTES];
    stun_writer w;
    stun_begin(&w, out, sizeof out, STUN_BINDING_SUCCESS, m.txid);
    stun_add_xor_address(&w, (const struct sockaddr *)remote);
    int n = stun_finish(&w, (const uint8_t *)ice->pwd, strlen(ice->pwd));
    if (n > 0)
        icetcp_send(c, out, (size_t)n);
    ice->last_seen_us = g_get_monotonic_time();
    pthread_mutex_lock(&ice->path_lock);
    const icetcp_conn *path = ice->path_tcp;
    int nominate = m.use_candidate || !ice->has_path;
    pthread_mutex_unlock(&ice->path_lock);
    if (!known)
        icetcp_attach(&ice->tcp, c, ice, path);
    if (nominate && path != c) {
        pthread_mutex_lock(&ice->path_lock);
        ice->has_path = 1;
        ice->path_tcp = c;
        memset(&ice->path_remote, 0, sizeof ice->path_remote);
        ice->path_local_ip = 0;
        pthread_mutex_unlock(&ice->path_lock);
        char a[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &remote->sin_addr, a, sizeof a);
        log_debug("mux", "peer %s: path is ICE-TCP from %s:%u", ice->peer_id, a,
                  ntohs(remote->sin_port));
    }
    if (!ice->connected) {
        rtc_timer_start(ice->owner->loop, &ice->timer, M.consent_ms, consent_cb);
        mark_connected(ice);
    }
    return MUX_TCP_OK;
}

void mux_tcp_input(void *arg, const uint8_t *data, size_t len)
{
    mux_ice *ice = arg;
    ice->cb.input(ice->arg, data, len);
}

void mux_tcp_unpath(void *arg, const icetcp_conn *c)
{
    mux_ice *ice = arg;
    pthread_mutex_lock(&ice->path_lock);
    if (ice->path_tcp == c) {
        /* no path until the next check (the remote reconnects) or consent
         * runs out */
        ice->path_tcp = NULL;
        ice->has_path = 0;
        log_info("mux", "peer %s: its ICE-TCP path closed", ice->peer_id);
    }
    pthread_mutex_unlock(&ice->path_lock);
}

/* ---------- server: the receive path ---------- */

static int username_ufrag(const stun_msg *m, char *out, size_t cap)
{
    const uint8_t *colon = m->username ? memchr(m->username, ':', m->username_len) : NULL;
    if (colon == NULL)
        return -1;
    size_t n = (size_t)(colon - m->username);
    if (n == 0)
        return -1;
    if (n >= cap)
        return -2; /* well formed, but longer than any ufrag chatd hands out */
    memcpy(out, m->username, n);
    out[n] = '\0';
    return 0;
}

/* Parses a STUN datagram well enough to route or answer it: a Binding
 * request with USERNAME, MESSAGE-INTEGRITY and FINGERPRINT. */
static int parse_check(const uint8_t *data, size_t len, stun_msg *m, char *ufrag, size_t cap)
{
    char err[128];
    int r = -1;
    if (stun_parse(data, len, m, err, sizeof err) < 0 || m->type != STUN_BINDING_REQUEST ||
        !m->has_fingerprint || m->integrity_at == 0 || (r = username_ufrag(m, ufrag, cap)) < 0) {
        atomic_fetch_add(r == -2 ? &S.drop_unknown_username : &S.drop_bad_stun, 1);
        return -1;
    }
    return 0;
}

static void forward(int owner, int recv, const tuple_key *key, const uint8_t *data, size_t len)
{
    mux_loop *ml = &M.ml[owner];
    inbox_item *it = NULL;
    pthread_mutex_lock(&ml->inbox_lock);
    int room = ml->inbox_count < INBOX_MAX;
    pthread_mutex_unlock(&ml->inbox_lock);
    if (room)
        it = mem_alloc(sizeof *it + len);
    if (it == NULL) {
        atomic_fetch_add(&S.drop_inbox_full, 1);
        return;
    }
    it->next = NULL;
    it->recv_loop = recv;
    it->key = *key;
    it->len = len;
    memcpy(it->data, data, len);
    pthread_mutex_lock(&ml->inbox_lock);
    int was_empty = ml->inbox_head == NULL;
    if (ml->inbox_tail)
        ml->inbox_tail->next = it;
    else
        ml->inbox_head = it;
    ml->inbox_tail = it;
    ml->inbox_count++;
    pthread_mutex_unlock(&ml->inbox_lock);
    atomic_fetch_add(&S.forwarded, 1);
    if (was_empty) {
        uint64_t one = 1;
        if (write(ml->evfd, &one, sizeof one) < 0 && errno != EAGAIN)
            log_debug("mux", "inbox wake: %s", strerror(errno));
    }
}

/* Routes one datagram that arrived on loop `here` (recv: the loop whose
 * socket read it; from_inbox: another loop forwarded it here, which may be
 * the receiving loop itself, sent back by the loop its check's ufrag named). */
static void route(mux_loop *here, int recv, const tuple_key *key, const uint8_t *data, size_t len,
                  int from_inbox)
{
    mux_loop *rl = &M.ml[recv];
    pthread_mutex_lock(&rl->table_lock);
    tuple_entry *e = g_hash_table_lookup(rl->by_tuple, key);
    mux_ice *ice = e ? e->ice : NULL;
    int owner = e ? e->owner : -1;
    pthread_mutex_unlock(&rl->table_lock);

    int stun = stun_is_stun(data, len);
    if (ice && owner != here->index) {
        if (!from_inbox) {
            forward(owner, recv, key, data, len);
            return;
        }
        /* Forwarded here, but the 5-tuple names a peer of another loop: a
         * check is routed by its ufrag below (the ufrag's owner is final,
         * so this ends in one more hop at most); the rest is gone. Never by
         * the 5-tuple again: a client that took a dead peer's port sends
         * checks that the dead peer's loop hands to the ufrag's loop, and
         * when that is the loop that read them, forwarding by the 5-tuple
         * once more would bounce them between the two loops until the new
         * peer's setup timed out (churn-asan, about 1 cycle in 2,000). */
        ice = NULL;
    }
    if (ice && !stun) {
        ice->cb.input(ice->arg, data, len);
        return;
    }
    if (!stun) {
        atomic_fetch_add(&S.drop_unknown_source, 1);
        return;
    }
    stun_msg m;
    char ufrag[UFRAG_LEN + 1];
    if (parse_check(data, len, &m, ufrag, sizeof ufrag) < 0)
        return;
    pthread_mutex_lock(&M.ufrag_lock);
    mux_ice *target = M.by_ufrag ? g_hash_table_lookup(M.by_ufrag, ufrag) : NULL;
    int target_owner = target ? target->owner->index : -1;
    pthread_mutex_unlock(&M.ufrag_lock);
    if (target == NULL) {
        atomic_fetch_add(&S.drop_unknown_username, 1);
        log_debug("mux", "a check for ufrag %s, which no peer has, dropped", ufrag);
        return;
    }
    if (target_owner != here->index) {
        /* Also for a datagram forwarded here by the loop that read it: a
         * client that reuses a dead peer's 5-tuple (a killed client's port,
         * taken again) reaches the dead peer's loop first. */
        forward(target_owner, recv, key, data, len);
        return;
    }
    answer_check(target, recv, key, data, len, &m);
}

static void read_shared(mux_loop *ml)
{
    uint8_t(*bufs)[DGRAM_MAX] = ml->rx;
    struct mmsghdr msgs[RX_BATCH];
    struct iovec iov[RX_BATCH];
    struct sockaddr_in from[RX_BATCH];
    union {
        char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
        struct cmsghdr align;
    } ctl[RX_BATCH];
    for (int round = 0; round < RX_ROUNDS; round++) {
        for (int i = 0; i < RX_BATCH; i++) {
            iov[i] = (struct iovec){.iov_base = bufs[i], .iov_len = DGRAM_MAX};
            msgs[i].msg_hdr = (struct msghdr){.msg_name = &from[i],
                                              .msg_namelen = sizeof from[i],
                                              .msg_iov = &iov[i],
                                              .msg_iovlen = 1,
                                              .msg_control = ctl[i].buf,
                                              .msg_controllen = sizeof ctl[i].buf};
        }
        int n = recvmmsg(ml->sock, msgs, RX_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return;
        atomic_fetch_add(&S.rx_calls, 1);
        atomic_fetch_add(&S.rx_datagrams, (unsigned long)n);
        for (int i = 0; i < n; i++) {
            struct msghdr *mh = &msgs[i].msg_hdr;
            if ((mh->msg_flags & MSG_TRUNC) || from[i].sin_family != AF_INET) {
                atomic_fetch_add(&S.drop_bad_stun, 1);
                continue;
            }
            tuple_key key = {.remote_ip = from[i].sin_addr.s_addr, .remote_port = from[i].sin_port};
            for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c))
                if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
                    struct in_pktinfo pi;
                    memcpy(&pi, CMSG_DATA(c), sizeof pi);
                    key.local_ip = pi.ipi_addr.s_addr;
                }
            route(ml, ml->index, &key, bufs[i], msgs[i].msg_len, 0);
        }
        if (n < RX_BATCH)
            return;
    }
}

/* A batch: what the loop's thread sends meanwhile is queued in its tx
 * batch (a client-only loop has no shared socket, so it sends at once). */
static void batch_open(mux_loop *ml)
{
    ml->tx->fd = ml->sock;
    current_tx = ml->sock >= 0 ? ml->tx : NULL;
}

/* Ends the batch: run_hook lets the peer layer flush what it corked. */
static void batch_close(int run_hook)
{
    if (current_tx && run_hook && batch_end)
        batch_end();
    if (current_tx && current_tx->n)
        tx_flush(current_tx);
    current_tx = NULL;
}

void rtc_mux_run_batched(rtc_loop *l, void (*fn)(void))
{
    mux_loop *ml = M.running ? &M.ml[rtc_loop_index(l)] : NULL;
    if (ml == NULL || ml->sock < 0 || current_tx != NULL) {
        fn();
        return;
    }
    batch_open(ml);
    fn();
    batch_close(0); /* fn is the peer layer's own flush */
}

typedef struct {
    mux_loop *ml;
    tuple_key key;
    const uint8_t *data;
    size_t len;
} inject_job;

static void inject_on_loop(void *arg)
{
    inject_job *j = arg;
    batch_open(j->ml);
    route(j->ml, j->ml->index, &j->key, j->data, j->len, 0);
    batch_close(1);
}

void rtc_mux_inject(rtc_loop *l, const void *from_sockaddr_in, uint32_t local_ip,
                    const uint8_t *data, size_t len)
{
    const struct sockaddr_in *from = from_sockaddr_in;
    if (!M.running)
        return;
    inject_job j = {.ml = &M.ml[rtc_loop_index(l)],
                    .key = {.local_ip = local_ip,
                            .remote_ip = from->sin_addr.s_addr,
                            .remote_port = from->sin_port},
                    .data = data,
                    .len = len};
    atomic_fetch_add(&S.rx_datagrams, 1);
    rtc_loop_run_sync(l, inject_on_loop, &j);
}

static void read_inbox(mux_loop *ml)
{
    uint64_t v;
    if (read(ml->evfd, &v, sizeof v) < 0 && errno != EAGAIN)
        log_debug("mux", "inbox read: %s", strerror(errno));
    pthread_mutex_lock(&ml->inbox_lock);
    inbox_item *it = ml->inbox_head;
    ml->inbox_head = ml->inbox_tail = NULL;
    ml->inbox_count = 0;
    pthread_mutex_unlock(&ml->inbox_lock);
    while (it) {
        inbox_item *next = it->next;
        route(ml, it->recv_loop, &it->key, it->data, it->len, 1);
        mem_free(it);
        it = next;
    }
}

/* ---------- client: checks towards an ICE-lite server ---------- */

static void client_timer_cb(rtc_timer *t);

/* nominate: with USE-CANDIDATE. A lite server sends on the pair nominated
 * last (or, before any, the first that checked in), so only the pair this
 * client picked may carry it: were every first check to nominate, the
 * server would send on whichever arrived last while this client listens
 * on whichever answered first (chat-client took 6 s to connect to a
 * chatd with two ICE addresses, until its consent check nominated). */
static void send_check(mux_ice *ice, const struct sockaddr_in *to, int nominate)
{
    uint8_t out[STUN_MAX_MESSAGE_BYTES];
    char user[sizeof ice->remote_ufrag + sizeof ice->ufrag + 1];
    snprintf(user, sizeof user, "%s:%s", ice->remote_ufrag, ice->ufrag);
    stun_writer w;
    stun_begin(&w, out, sizeof out, STUN_BINDING_REQUEST, ice->txid);
    stun_add_bytes(&w, STUN_ATTR_USERNAME, user, strlen(user));
    /* peer-reflexive priority of a host candidate, RFC 8445 §5.1.2.1 */
    stun_add_u32(&w, STUN_ATTR_PRIORITY, (110u << 24) | (65535u << 8) | 255u);
    stun_add_u64(&w, STUN_ATTR_ICE_CONTROLLING, ice->tiebreaker);
    if (nominate)
        stun_add_flag(&w, STUN_ATTR_USE_CANDIDATE);
    int n = stun_finish(&w, (const uint8_t *)ice->remote_pwd, strlen(ice->remote_pwd));
    if (n > 0)
        client_send(ice, to, out, (size_t)n);
}

/* fresh: a new transaction (a consent check); a retransmission keeps its
 * transaction id (RFC 8489 §6.2.1), or an answer that arrives after the
 * next retransmission would never match. */
static void send_checks(mux_ice *ice, int fresh)
{
    if (fresh)
        RAND_bytes(ice->txid, sizeof ice->txid);
    pthread_mutex_lock(&ice->path_lock);
    int has = ice->has_path;
    struct sockaddr_in path = ice->path_remote;
    pthread_mutex_unlock(&ice->path_lock);
    if (has) {
        send_check(ice, &path, 1);
    } else {
        for (int i = 0; i < ice->n_cands; i++)
            send_check(ice, &ice->cands[i], 0);
    }
}

static void client_timer_cb(rtc_timer *t)
{
    mux_ice *ice = (mux_ice *)((char *)t - offsetof(mux_ice, timer));
    if (!ice->connected) {
        send_checks(ice, 0);
        ice->rto_ms = ice->rto_ms * 2 > CHECK_RTO_MAX_MS ? CHECK_RTO_MAX_MS : ice->rto_ms * 2;
        rtc_timer_start(ice->owner->loop, &ice->timer, ice->rto_ms, client_timer_cb);
        return;
    }
    int64_t idle_ms = (g_get_monotonic_time() - ice->last_seen_us) / 1000;
    if (idle_ms >= M.consent_ms) {
        atomic_fetch_add(&S.consent_expired, 1);
        ice->cb.failed(ice->arg, "ICE consent expired (the server stopped answering)");
        return;
    }
    send_checks(ice, 1);
    uint32_t r;
    RAND_bytes((unsigned char *)&r, sizeof r);
    rtc_timer_start(ice->owner->loop, &ice->timer, CONSENT_MIN_MS + r % CONSENT_SPREAD_MS,
                    client_timer_cb);
}

/* A full-ICE server (chatd --rtc-port 0) checks the path back too, and
 * only takes our nomination once its own check succeeds (RFC 8445
 * §7.3.1.5): answer it. */
static void answer_server_check(mux_ice *ice, const struct sockaddr_in *from, const uint8_t *data,
                                size_t len, const stun_msg *m)
{
    size_t ul = strlen(ice->ufrag);
    if (!m->has_fingerprint || m->integrity_at == 0 || m->username == NULL ||
        m->username_len <= ul || memcmp(m->username, ice->ufrag, ul) != 0 ||
        m->username[ul] != ':' ||
        !stun_check_integrity(data, len, m, (const uint8_t *)ice->pwd, strlen(ice->pwd))) {
        atomic_fetch_add(&S.drop_bad_integrity, 1);
        return;
    }
    uint8_t out[STUN_MAX_MESSAGE_BYTES];
    stun_writer w;
    stun_begin(&w, out, sizeof out, STUN_BINDING_SUCCESS, m->txid);
    stun_add_xor_address(&w, (const struct sockaddr *)from);
    int n = stun_finish(&w, (const uint8_t *)ice->pwd, strlen(ice->pwd));
    if (n > 0)
        client_send(ice, from, out, (size_t)n);
}

/* One of the server's candidates (from its answer, fixed at start). */
static int is_candidate(const mux_ice *ice, const struct sockaddr_in *from)
{
    for (int i = 0; i < ice->n_cands; i++)
        if (ice->cands[i].sin_addr.s_addr == from->sin_addr.s_addr &&
            ice->cands[i].sin_port == from->sin_port)
            return 1;
    return 0;
}

static void client_input(mux_ice *ice, const struct sockaddr_in *from, const uint8_t *data,
                         size_t len)
{
    if (!stun_is_stun(data, len)) {
        /* From the server's picked pair, or another of its candidates: the
         * server may send from the first pair that checked in until our
         * nomination reaches it (DTLS authenticates what follows). */
        pthread_mutex_lock(&ice->path_lock);
        int ok = ice->has_path && ice->path_remote.sin_addr.s_addr == from->sin_addr.s_addr &&
                 ice->path_remote.sin_port == from->sin_port;
        pthread_mutex_unlock(&ice->path_lock);
        ok = ok || (ice->has_path && is_candidate(ice, from));
        if (ok)
            ice->cb.input(ice->arg, data, len);
        else
            atomic_fetch_add(&S.drop_unknown_source, 1);
        return;
    }
    stun_msg m;
    char err[128];
    if (stun_parse(data, len, &m, err, sizeof err) == 0 && m.type == STUN_BINDING_REQUEST) {
        answer_server_check(ice, from, data, len, &m);
        return;
    }
    if (stun_parse(data, len, &m, err, sizeof err) < 0 || m.type != STUN_BINDING_SUCCESS ||
        memcmp(m.txid, ice->txid, sizeof m.txid) != 0 || m.integrity_at == 0) {
        atomic_fetch_add(&S.drop_bad_stun, 1);
        return;
    }
    if (!stun_check_integrity(data, len, &m, (const uint8_t *)ice->remote_pwd,
                              strlen(ice->remote_pwd))) {
        atomic_fetch_add(&S.drop_bad_integrity, 1);
        return;
    }
    ice->last_seen_us = g_get_monotonic_time();
    if (!ice->connected) {
        set_path(ice, from, 0);
        /* nominate the pair that answered first, at once */
        RAND_bytes(ice->txid, sizeof ice->txid);
        send_check(ice, from, 1);
        uint32_t r;
        RAND_bytes((unsigned char *)&r, sizeof r);
        rtc_timer_start(ice->owner->loop, &ice->timer, CONSENT_MIN_MS + r % CONSENT_SPREAD_MS,
                        client_timer_cb);
        mark_connected(ice);
    }
}

static void read_client(mux_ice *ice)
{
    uint8_t buf[DGRAM_MAX];
    for (int i = 0; i < RX_BATCH; i++) {
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(ice->fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC,
                             (struct sockaddr *)&from, &fl);
        if (n < 0)
            return;
        atomic_fetch_add(&S.rx_calls, 1);
        atomic_fetch_add(&S.rx_datagrams, 1);
        if ((size_t)n > sizeof buf || from.sin_family != AF_INET)
            continue;
        client_input(ice, &from, buf, (size_t)n);
    }
}

/* ---------- the loop source ---------- */

/* epoll data: the shared socket and the inbox are told apart by these
 * tags; anything else is a client peer. */
static char tag_shared, tag_inbox, tag_tcp;

static gboolean source_dispatch(GSource *src, GSourceFunc cb, gpointer data)
{
    (void)cb, (void)data;
    mux_loop *ml = ((mux_source *)src)->ml;
    struct epoll_event ev[64];
    int n = epoll_wait(ml->epfd, ev, 64, 0);
    batch_open(ml);
    for (int i = 0; i < n; i++) {
        void *tag = ev[i].data.ptr;
        if (tag == &tag_shared)
            read_shared(ml);
        else if (tag == &tag_inbox)
            read_inbox(ml);
        else if (tag == &tag_tcp)
            icetcp_dispatch(ml->index);
        else
            read_client(tag);
    }
    batch_close(1);
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs source_funcs = {.dispatch = source_dispatch};

static int epoll_add(mux_loop *ml, int fd, void *tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};
    return epoll_ctl(ml->epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* ---------- addresses ---------- */

static int add_addr(const char *a)
{
    for (int i = 0; i < M.n_addrs; i++)
        if (strcmp(M.addrs[i], a) == 0)
            return 0;
    if (M.n_addrs == MAX_LOCAL_ADDRS)
        return 0;
    snprintf(M.addrs[M.n_addrs++], INET_ADDRSTRLEN, "%s", a);
    return 0;
}

static const char *public_for(const char *local, const char *const *pub)
{
    for (const char *const *p = pub; p && *p; p++) {
        const char *eq = strchr(*p, '=');
        if (eq == NULL)
            return *p;
        if ((size_t)(eq - *p) == strlen(local) && strncmp(*p, local, strlen(local)) == 0)
            return eq + 1;
    }
    return local;
}

static int gather_addresses(const rtc_mux_config *cfg, char *err, size_t errlen)
{
    M.n_addrs = 0;
    char list[MAX_LOCAL_ADDRS][INET_ADDRSTRLEN];
    int n = 0;
    if (cfg->ice_addresses && cfg->ice_addresses[0]) {
        for (const char *const *a = cfg->ice_addresses; *a; a++) {
            struct in_addr in;
            if (inet_pton(AF_INET, *a, &in) != 1) {
                err_set(err, errlen,
                        "ICE address '%s': the one-port transport takes IPv4 addresses", *a);
                return -1;
            }
            if (n < MAX_LOCAL_ADDRS)
                snprintf(list[n++], INET_ADDRSTRLEN, "%s", *a);
        }
    } else {
        struct ifaddrs *ifs = NULL;
        if (getifaddrs(&ifs) < 0) {
            err_set(err, errlen, "cannot list the interfaces: %s", strerror(errno));
            return -1;
        }
        for (struct ifaddrs *i = ifs; i && n < MAX_LOCAL_ADDRS; i = i->ifa_next) {
            if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET ||
                !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK))
                continue;
            inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, list[n++],
                      INET_ADDRSTRLEN);
        }
        freeifaddrs(ifs);
    }
    for (const char *const *p = cfg->public_addresses; p && *p; p++) {
        const char *eq = strchr(*p, '=');
        struct in_addr in;
        char local[INET_ADDRSTRLEN] = "";
        if (eq && (size_t)(eq - *p) < sizeof local)
            memcpy(local, *p, (size_t)(eq - *p));
        if (inet_pton(AF_INET, eq ? eq + 1 : *p, &in) != 1 ||
            (eq && inet_pton(AF_INET, local, &in) != 1)) {
            err_set(err, errlen, "ICE public address '%s': want PUBLIC or LOCAL=PUBLIC (IPv4)", *p);
            return -1;
        }
    }
    for (int i = 0; i < n; i++) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        inet_pton(AF_INET, list[i], &sa.sin_addr);
        int loop = netaddr_is_loopback((struct sockaddr *)&sa);
        add_addr(loop ? list[i] : public_for(list[i], cfg->public_addresses));
    }
    return 0;
}

/* ---------- start / stop ---------- */

static int open_shared(uint16_t port, char *err, size_t errlen)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err_set(err, errlen, "UDP socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    int buf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
    /* Bursts of fan-out and of many clients' checks: the defaults (about
     * 200 KiB) drop datagrams long before the loop is busy. */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        err_set(err, errlen, "cannot bind UDP port %u (--rtc-port): %s", port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void free_entry(gpointer e) { mem_free(e); }

int rtc_mux_start(rtc_loops *loops, const rtc_mux_config *cfg, char *err, size_t errlen)
{
    if (cfg->port && !netaddr_port_free(SOCK_DGRAM, cfg->port)) {
        err_set(err, errlen, "UDP port %u (--rtc-port) is in use by another process", cfg->port);
        return -1;
    }
    if (M.running) {
        err_set(err, errlen, "the one-port transport is already running");
        return -1;
    }
    if (gather_addresses(cfg, err, errlen) < 0)
        return -1;
    M.loops = loops;
    M.n = rtc_loops_count(loops);
    M.port = cfg->port;
    M.consent_ms = cfg->consent_timeout_ms > 0 ? cfg->consent_timeout_ms : MUX_CONSENT_TIMEOUT_MS;
    M.ml = mem_calloc((size_t)M.n, sizeof *M.ml);
    if (M.ml == NULL) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_lock(&M.ufrag_lock);
    M.by_ufrag = g_hash_table_new(g_str_hash, g_str_equal);
    pthread_mutex_unlock(&M.ufrag_lock);
    for (int i = 0; i < M.n; i++) {
        mux_loop *ml = &M.ml[i];
        ml->index = i;
        ml->loop = rtc_loops_get(loops, i);
        ml->sock = ml->epfd = ml->evfd = -1;
        pthread_mutex_init(&ml->table_lock, NULL);
        pthread_mutex_init(&ml->inbox_lock, NULL);
        ml->by_tuple = g_hash_table_new_full(tuple_hash, tuple_equal, NULL, free_entry);
    }
    M.running = 1; /* from here rtc_mux_stop undoes whatever was made */
    for (int i = 0; i < M.n; i++) {
        mux_loop *ml = &M.ml[i];
        ml->tx = mem_calloc(1, sizeof *ml->tx);
        ml->rx = mem_alloc(RX_BATCH * sizeof *ml->rx);
        ml->epfd = epoll_create1(EPOLL_CLOEXEC);
        ml->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (ml->tx == NULL || ml->rx == NULL || ml->epfd < 0 || ml->evfd < 0 ||
            epoll_add(ml, ml->evfd, &tag_inbox) < 0) {
            err_set(err, errlen, "cannot set up loop %d's poller: %s", i, strerror(errno));
            rtc_mux_stop();
            return -1;
        }
        if (cfg->port) {
            ml->sock = open_shared(cfg->port, err, errlen);
            if (ml->sock < 0 || epoll_add(ml, ml->sock, &tag_shared) < 0) {
                rtc_mux_stop();
                return -1;
            }
        }
        ml->src = (mux_source *)g_source_new(&source_funcs, sizeof(mux_source));
        ml->src->ml = ml;
        g_source_add_unix_fd(&ml->src->base, ml->epfd, G_IO_IN);
        g_source_attach(&ml->src->base, rtc_loop_context(ml->loop));
    }
    if (cfg->port && cfg->tcp_port) {
        if (icetcp_start(loops, cfg->tcp_port, err, errlen) < 0) {
            rtc_mux_stop();
            return -1;
        }
        for (int i = 0; i < M.n; i++)
            if (epoll_add(&M.ml[i], icetcp_loop_fd(i), &tag_tcp) < 0) {
                err_set(err, errlen, "cannot watch loop %d's TCP poller: %s", i, strerror(errno));
                rtc_mux_stop();
                return -1;
            }
    }
    return 0;
}

/* On loop `loop`'s thread (icetcp_stop): its TCP poller leaves the loop's. */
static void unwatch_tcp(int loop, int fd) { epoll_ctl(M.ml[loop].epfd, EPOLL_CTL_DEL, fd, NULL); }

void rtc_mux_stop(void)
{
    if (!M.running)
        return;
    icetcp_stop(unwatch_tcp);
    for (int i = 0; i < M.n; i++) {
        mux_loop *ml = &M.ml[i];
        if (ml->src) {
            g_source_destroy(&ml->src->base);
            g_source_unref(&ml->src->base);
        }
        if (ml->sock >= 0)
            close(ml->sock);
        if (ml->epfd >= 0)
            close(ml->epfd);
        if (ml->evfd >= 0)
            close(ml->evfd);
        for (inbox_item *it = ml->inbox_head, *next; it; it = next) {
            next = it->next;
            mem_free(it);
        }
        g_hash_table_destroy(ml->by_tuple);
        pthread_mutex_destroy(&ml->table_lock);
        pthread_mutex_destroy(&ml->inbox_lock);
        mem_free(ml->tx);
        mem_free(ml->rx);
    }
    mem_free(M.ml);
    M.ml = NULL;
    pthread_mutex_lock(&M.ufrag_lock);
    g_hash_table_destroy(M.by_ufrag);
    M.by_ufrag = NULL;
    pthread_mutex_unlock(&M.ufrag_lock);
    M.running = 0;
}

/* ---------- the ICE half ---------- */

static void random_ice_chars(char *out, size_t n)
{
    static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t r[64];
    RAND_bytes(r, (int)n);
    for (size_t i = 0; i < n; i++)
        out[i] = set[r[i] & 63];
    out[n] = '\0';
}

static void mux_free(rtc_ice *base)
{
    mux_ice *ice = (mux_ice *)base;
    rtc_timer_stop(&ice->timer);
    if (ice->registered) {
        pthread_mutex_lock(&M.ufrag_lock);
        g_hash_table_remove(M.by_ufrag, ice->ufrag);
        pthread_mutex_unlock(&M.ufrag_lock);
    }
    for (int i = 0; i < MAX_TUPLES; i++)
        tuple_forget(ice, i);
    pthread_mutex_lock(&ice->path_lock);
    ice->has_path = 0;
    ice->path_tcp = NULL;
    pthread_mutex_unlock(&ice->path_lock);
    icetcp_peer_close(&ice->tcp);
    if (ice->fd >= 0) {
        epoll_ctl(ice->owner->epfd, EPOLL_CTL_DEL, ice->fd, NULL);
        close(ice->fd);
    }
    pthread_mutex_destroy(&ice->path_lock);
    mem_free(ice);
}

static int add_candidate(sdp_description *d, int i, const char *addr, uint16_t port)
{
    if (d->n_candidates >= SDP_MAX_CANDIDATES)
        return 0;
    /* host candidate, priority per RFC 8445 §5.1.2.1 (type 126, local
     * preference by order, component 1) */
    uint32_t prio = (126u << 24) | ((uint32_t)(65535 - i) << 8) | 255u;
    snprintf(d->candidates[d->n_candidates++], SDP_MAX_CANDIDATE_LEN,
             "candidate:%d 1 udp %u %s %u typ host", i + 1, prio, addr, port);
    if (d->conn_address[0] == '\0') {
        snprintf(d->conn_address, sizeof d->conn_address, "%s", addr);
        d->conn_port = port;
    }
    return 0;
}

static rtc_ice *mux_create(const rtc_ice_config *cfg, sdp_description *d, char *err, size_t errlen)
{
    if (!M.running) {
        err_set(err, errlen, "the one-port transport is not started");
        return NULL;
    }
    if (!cfg->controlling && M.port == 0) {
        err_set(err, errlen, "no --rtc-port to answer on");
        return NULL;
    }
    mux_ice *ice = mem_calloc(1, sizeof *ice);
    if (ice == NULL) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    ice->base.ops = &rtc_ice_mux_ops;
    ice->owner = &M.ml[rtc_loop_index(cfg->loop)];
    ice->controlling = cfg->controlling;
    ice->local_client = cfg->local_client;
    ice->cb = *cfg->cb;
    ice->arg = cfg->arg;
    ice->fd = -1;
    pthread_mutex_init(&ice->path_lock, NULL);
    snprintf(ice->peer_id, sizeof ice->peer_id, "%s", cfg->peer_id);
    random_ice_chars(ice->pwd, PWD_LEN);
    RAND_bytes((unsigned char *)&ice->tiebreaker, sizeof ice->tiebreaker);
    pthread_mutex_lock(&M.ufrag_lock);
    do
        random_ice_chars(ice->ufrag, UFRAG_LEN);
    while (g_hash_table_contains(M.by_ufrag, ice->ufrag));
    if (!ice->controlling) {
        g_hash_table_insert(M.by_ufrag, ice->ufrag, ice);
        ice->registered = 1;
    }
    pthread_mutex_unlock(&M.ufrag_lock);
    snprintf(d->ice_ufrag, sizeof d->ice_ufrag, "%s", ice->ufrag);
    snprintf(d->ice_pwd, sizeof d->ice_pwd, "%s", ice->pwd);

    if (ice->controlling) {
        ice->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET};
        if (ice->fd < 0 || bind(ice->fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
            epoll_add(ice->owner, ice->fd, ice) < 0) {
            err_set(err, errlen, "client UDP socket: %s", strerror(errno));
            mux_free(&ice->base);
            return NULL;
        }
        return &ice->base; /* an ICE-lite server learns our address from our checks */
    }
    d->ice_lite = 1;
    int k = 0;
    for (int i = 0; i < M.n_addrs; i++)
        add_candidate(d, k++, M.addrs[i], M.port);
    if (ice->local_client &&
        (M.n_addrs == 0 || cfg->ice_addresses == NULL || cfg->ice_addresses[0] == NULL)) {
        /* A client on this machine that reached chatd over loopback. */
        add_candidate(d, k++, "127.0.0.1", M.port);
    }
    /* ICE-TCP passive candidates (RFC 6544 §4.5) next to the UDP ones, on
     * the same addresses, preferred less (type preference 90, as libwebrtc
     * gives host TCP; local preference: direction passive) */
    uint16_t tcp_port = icetcp_port();
    for (int i = 0, n_udp = d->n_candidates; tcp_port && i < n_udp; i++) {
        char addr[64];
        if (d->n_candidates >= SDP_MAX_CANDIDATES ||
            sscanf(d->candidates[i], "candidate:%*s %*u %*s %*u %63s", addr) != 1)
            break;
        uint32_t local_pref = (4u << 13) | (8191u - (uint32_t)i);
        uint32_t prio = (90u << 24) | (local_pref << 8) | 255u;
        snprintf(d->candidates[d->n_candidates++], SDP_MAX_CANDIDATE_LEN,
                 "candidate:%d 1 tcp %u %s %u typ host tcptype passive", 100 + i + 1, prio, addr,
                 tcp_port);
    }
    if (d->n_candidates == 0) {
        err_set(err, errlen, "no local ICE candidate (no IPv4 interface is up)");
        mux_free(&ice->base);
        return NULL;
    }
    return &ice->base;
}

static int mux_set_remote(rtc_ice *base, const sdp_description *r, char *err, size_t errlen)
{
    mux_ice *ice = (mux_ice *)base;
    if (r->ice_ufrag[0] == '\0' || r->ice_pwd[0] == '\0' || strchr(r->ice_ufrag, ':')) {
        err_set(err, errlen, "bad remote ICE credentials");
        return -1;
    }
    snprintf(ice->remote_ufrag, sizeof ice->remote_ufrag, "%s", r->ice_ufrag);
    snprintf(ice->remote_pwd, sizeof ice->remote_pwd, "%s", r->ice_pwd);
    ice->have_remote = 1;
    if (!ice->controlling)
        return 0; /* lite: the remote's candidates are learnt from its checks */
    for (size_t i = 0; i < r->n_candidates && ice->n_cands < RTC_MAX_REMOTE_CANDIDATES; i++) {
        char addr[64], typ[16];
        unsigned comp, port;
        char proto[8];
        if (sscanf(r->candidates[i], "candidate:%*s %u %7s %*u %63s %u typ %15s", &comp, proto,
                   addr, &port, typ) != 5 ||
            comp != 1 || strcasecmp(proto, "udp") != 0 || port == 0 || port > 65535)
            continue;
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
            continue;
        ice->cands[ice->n_cands++] = sa;
    }
    if (ice->n_cands == 0) {
        err_set(err, errlen, "the answer has no IPv4 UDP candidate");
        return -1;
    }
    ice->rto_ms = CHECK_RTO_MS;
    send_checks(ice, 1);
    rtc_timer_start(ice->owner->loop, &ice->timer, ice->rto_ms, client_timer_cb);
    return 0;
}

static int mux_is_connected(rtc_ice *base) { return ((mux_ice *)base)->connected; }

const rtc_ice_ops rtc_ice_mux_ops = {
    .create = mux_create,
    .set_remote = mux_set_remote,
    .send = mux_send,
    .is_connected = mux_is_connected,
    .free = mux_free,
};
