/*
 * ice_nice — the ICE half of a peer on libnice (see ice.h): one agent and
 * one UDP socket per peer, full ICE, host candidates on every interface
 * (or --ice-address). The v1 transport: chatd with --rtc-port 0, and the
 * clients of full-ICE servers such as Janus.
 */
#include "rtc/ice.h"

#include "util/err.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/netaddr.h"

#include <agent.h>
#include <arpa/inet.h>
#include <interfaces.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#define ICE_PACING_MS 5u /* Ta, see nice_create() */

typedef struct {
    rtc_ice base;
    NiceAgent *agent;
    guint stream_id;
    GMainContext *ctx;
    int controlling;
    int local_client;
    int connected;
    rtc_ice_callbacks cb;
    void *arg;
    char peer_id[40];
} nice_ice;

static void nice_recv(NiceAgent *agent, guint stream_id, guint component_id, guint len, gchar *buf,
                      gpointer data)
{
    (void)agent, (void)stream_id, (void)component_id;
    nice_ice *n = data;
    /* STUN never reaches us: libnice takes it. */
    if (len > 0)
        n->cb.input(n->arg, (const uint8_t *)buf, len);
}

static void nice_state_changed(NiceAgent *agent, guint stream_id, guint component_id, guint state,
                               gpointer data)
{
    (void)agent, (void)stream_id, (void)component_id;
    nice_ice *n = data;
    if (state == NICE_COMPONENT_STATE_CONNECTED || state == NICE_COMPONENT_STATE_READY) {
        if (!n->connected) {
            n->connected = 1;
            n->cb.connected(n->arg);
        }
    } else if (state == NICE_COMPONENT_STATE_FAILED) {
        n->cb.failed(n->arg, n->connected ? "ICE connection lost (consent expired)"
                                          : "ICE connectivity checks failed");
    }
}

static void nice_free(rtc_ice *ice)
{
    nice_ice *n = (nice_ice *)ice;
    if (n->agent) {
        g_signal_handlers_disconnect_by_data(n->agent, n);
        nice_agent_attach_recv(n->agent, n->stream_id, 1, n->ctx, NULL, NULL);
        nice_agent_remove_stream(n->agent, n->stream_id);
        g_object_unref(n->agent);
    }
    mem_free(n);
}

static rtc_ice *nice_create(const rtc_ice_config *cfg, sdp_description *d, char *err, size_t errlen)
{
    nice_ice *n = mem_calloc(1, sizeof *n);
    if (n == NULL) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    n->base.ops = &rtc_ice_nice_ops;
    n->controlling = cfg->controlling;
    n->local_client = cfg->local_client;
    n->cb = *cfg->cb;
    n->arg = cfg->arg;
    snprintf(n->peer_id, sizeof n->peer_id, "%s", cfg->peer_id);
    GMainContext *ctx = n->ctx = rtc_loop_context(cfg->loop);
    /* No REGULAR_NOMINATION: as controlling agent (our offering clients)
     * libnice then nominates with the first check, as Janus does; chatd
     * answers and is controlled, where the option changes nothing. */
    n->agent =
        nice_agent_new_full(ctx, NICE_COMPATIBILITY_RFC5245, NICE_AGENT_OPTION_CONSENT_FRESHNESS);
    if (n->agent == NULL) {
        err_set(err, errlen, "cannot create the ICE agent");
        goto fail;
    }
    /* Ta, the pacing of connectivity checks: with libnice's 20 ms default
     * the wait for the first tick alone was most of a setup on a quiet link
     * (with regular nomination, three ticks: about 60 ms). RFC 8445 §14.2
     * allows 5 ms for a few candidates, and a peer here has one or two. */
    g_object_set(n->agent, "controlling-mode", n->controlling ? TRUE : FALSE, "upnp", FALSE,
                 "ice-tcp", FALSE, "ice-udp", TRUE, "stun-pacing-timer", ICE_PACING_MS, NULL);
    const char *const *addrs = cfg->ice_addresses;
    if ((addrs == NULL || addrs[0] == NULL) && cfg->local_client) {
        /* Every interface, loopback included: libnice's own default leaves
         * loopback out, and then a client on this machine that reaches
         * chatd at 127.0.0.1 (chat-client with a loopback URL) shares no
         * usable pair with it. Only for such a client: a remote one would
         * get a candidate it cannot use. */
        GList *ips = nice_interfaces_get_local_ips(TRUE);
        for (GList *i = ips; i; i = i->next) {
            NiceAddress addr;
            nice_address_init(&addr);
            if (nice_address_set_from_string(&addr, i->data))
                nice_agent_add_local_address(n->agent, &addr);
        }
        g_list_free_full(ips, g_free);
    }
    for (const char *const *a = addrs; a && *a; a++) {
        NiceAddress addr;
        nice_address_init(&addr);
        if (!nice_address_set_from_string(&addr, *a)) {
            err_set(err, errlen, "bad ICE address '%s'", *a);
            goto fail;
        }
        nice_agent_add_local_address(n->agent, &addr);
    }
    n->stream_id = nice_agent_add_stream(n->agent, 1);
    if (n->stream_id == 0) {
        err_set(err, errlen, "cannot add an ICE stream");
        goto fail;
    }
    nice_agent_set_stream_name(n->agent, n->stream_id, "application");
    g_signal_connect(n->agent, "component-state-changed", G_CALLBACK(nice_state_changed), n);
    nice_agent_attach_recv(n->agent, n->stream_id, 1, ctx, nice_recv, n);
    if (!nice_agent_gather_candidates(n->agent, n->stream_id)) {
        err_set(err, errlen, "ICE gathering failed (no usable local address)");
        goto fail;
    }

    gchar *ufrag = NULL, *pwd = NULL;
    nice_agent_get_local_credentials(n->agent, n->stream_id, &ufrag, &pwd);
    snprintf(d->ice_ufrag, sizeof d->ice_ufrag, "%s", ufrag ? ufrag : "");
    snprintf(d->ice_pwd, sizeof d->ice_pwd, "%s", pwd ? pwd : "");
    g_free(ufrag);
    g_free(pwd);
    GSList *cands = nice_agent_get_local_candidates(n->agent, n->stream_id, 1);
    for (GSList *i = cands; i; i = i->next) {
        NiceCandidate *c = i->data;
        gchar *line = nice_agent_generate_local_candidate_sdp(n->agent, c);
        const char *v = line && strncmp(line, "a=", 2) == 0 ? line + 2 : line;
        if (v && d->n_candidates < SDP_MAX_CANDIDATES && strlen(v) < SDP_MAX_CANDIDATE_LEN) {
            strcpy(d->candidates[d->n_candidates++], v);
            if (d->conn_address[0] == '\0') {
                nice_address_to_string(&c->addr, d->conn_address);
                d->conn_port = (uint16_t)nice_address_get_port(&c->addr);
            }
        }
        g_free(line);
    }
    g_slist_free_full(cands, (GDestroyNotify)nice_candidate_free);
    if (d->n_candidates == 0) {
        err_set(err, errlen, "no local ICE candidate");
        goto fail;
    }
    return &n->base;
fail:
    nice_free(&n->base);
    return NULL;
}

/* Whether checks may go to a remote candidate: never to an unspecified or
 * multicast address; to loopback only for an offer from this machine (or
 * when we are the offering client). */
static int remote_candidate_allowed(const nice_ice *n, const NiceCandidate *c)
{
    struct sockaddr_storage ss;
    nice_address_copy_to_sockaddr(&c->addr, (struct sockaddr *)&ss);
    if (ss.ss_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)&ss)->sin_addr.s_addr);
        if (a == 0 || (a >> 28) == 0xe)
            return 0;
    } else if (ss.ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
        if (IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_MULTICAST(a))
            return 0;
    } else {
        return 0;
    }
    return !netaddr_is_loopback((const struct sockaddr *)&ss) || n->controlling || n->local_client;
}

static int nice_set_remote(rtc_ice *ice, const sdp_description *r, char *err, size_t errlen)
{
    nice_ice *n = (nice_ice *)ice;
    if (!nice_agent_set_remote_credentials(n->agent, n->stream_id, r->ice_ufrag, r->ice_pwd)) {
        err_set(err, errlen, "bad remote ICE credentials");
        return -1;
    }
    GSList *list = NULL;
    size_t used = 0;
    for (size_t i = 0; i < r->n_candidates; i++) {
        if (used == RTC_MAX_REMOTE_CANDIDATES) {
            log_debug("rtc", "peer %s: %zu remote candidates past the first %d ignored", n->peer_id,
                      r->n_candidates - i, RTC_MAX_REMOTE_CANDIDATES);
            break;
        }
        char line[SDP_MAX_CANDIDATE_LEN + 3];
        snprintf(line, sizeof line, "a=%s", r->candidates[i]);
        NiceCandidate *c = nice_agent_parse_remote_candidate_sdp(n->agent, n->stream_id, line);
        if (c && !remote_candidate_allowed(n, c)) {
            nice_candidate_free(c);
            c = NULL;
        }
        if (c) {
            list = g_slist_append(list, c);
            used++;
        }
    }
    if (list) {
        nice_agent_set_remote_candidates(n->agent, n->stream_id, 1, list);
        g_slist_free_full(list, (GDestroyNotify)nice_candidate_free);
    }
    return 0;
}

static void nice_send(rtc_ice *ice, const uint8_t *data, size_t len)
{
    nice_ice *n = (nice_ice *)ice;
    if (nice_agent_send(n->agent, n->stream_id, 1, (guint)len, (const gchar *)data) < 0)
        log_debug("rtc", "peer %s: ICE send of %zu bytes failed", n->peer_id, len);
}

static int nice_is_connected(rtc_ice *ice)
{
    nice_ice *n = (nice_ice *)ice;
    NiceComponentState st = nice_agent_get_component_state(n->agent, n->stream_id, 1);
    return st == NICE_COMPONENT_STATE_CONNECTED || st == NICE_COMPONENT_STATE_READY;
}

const rtc_ice_ops rtc_ice_nice_ops = {
    .create = nice_create,
    .set_remote = nice_set_remote,
    .send = nice_send,
    .is_connected = nice_is_connected,
    .free = nice_free,
};
