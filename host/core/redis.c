/* Redis connection: hiredis async on the libevent loop. Commands are wrapped so that each
 * callback runs exactly once (with NULL when the connection dies), a stuck server is detected
 * by a command timeout, and the connection comes back by itself with jittered backoff.
 * Sentinel mode: every (re)connect asks the sentinels for the primary, verifies it with ROLE,
 * and a +switch-master announcement or a READONLY reply moves the connection at once. */
#include "redis.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>

#include "log.h"
#include "metrics.h"

struct pending {
    struct pending *prev, *next;
    struct lcm_redis *r;
    lcm_redis_cb cb;
    void *ud;
    struct timespec sent;
};

struct hook {
    lcm_redis_connect_hook fn;
    void *ud;
};

struct lcm_redis {
    struct event_base *base;
    struct lcm_metrics *metrics;
    struct lcm_redis_addr addr;
    char *url;
    long connect_timeout_ms, command_timeout_ms, backoff_max_ms;
    redisAsyncContext *ac;      /* NULL while disconnected */
    int connected;
    int freeing;
    long backoff_ms;
    struct event *retry_ev;     /* reconnect timer */
    struct event *watch_ev;     /* periodic: connect and command timeouts */
    struct timespec connect_started;
    struct timespec last_ping;
    struct pending head;        /* sentinel of the in-flight list */
    struct hook *hooks;
    size_t nhooks;
    char endpoint[600];         /* host:port or socket path in use */
    /* Sentinel mode (addr.is_sentinel). The primary's address lives in addr.host/port. */
    int sentinel_first;         /* the sentinel that answered last: asked first next time */
    int sentinel_tries;         /* sentinels asked in the current discovery round */
    int sac_idx;
    redisAsyncContext *sac;     /* SENTINEL get-master-addr-by-name in flight */
    struct timespec sac_started;
    /* One subscription per sentinel: the sentinel leading a failover is the only one that
     * announces its start, and any of them may lead. */
    redisAsyncContext *subs[LCM_REDIS_MAX_SENTINELS];
    struct timespec sub_attempt[LCM_REDIS_MAX_SENTINELS];
    int fenced;                 /* a failover of our primary started: no link until it ends */
    struct timespec fence_started;
};

static double elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - since->tv_sec) * 1e3 + (double)(now.tv_nsec - since->tv_nsec) / 1e6;
}

/* host[:port] or [v6]:port, from p to end; port defaults to def. */
static int parse_hostport(const char *p, const char *end, int def, char *host, size_t hostlen,
                          int *port)
{
    const char *he, *colon = NULL;
    if (p < end && *p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb)
            return -1;
        p++;
        he = rb;
        if (rb + 1 < end) {
            if (rb[1] != ':')
                return -1;
            colon = rb + 1;
        }
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        he = colon ? colon : end;
    }
    size_t hl = (size_t)(he - p);
    if (hl == 0 || hl >= hostlen)
        return -1;
    memcpy(host, p, hl);
    host[hl] = 0;
    *port = def;
    if (colon) {
        long v = 0;
        const char *q = colon + 1;
        if (q == end)
            return -1;
        for (; q < end; q++) {
            if (*q < '0' || *q > '9' || (v = v * 10 + (*q - '0')) > 65535)
                return -1;
        }
        if (v <= 0)
            return -1;
        *port = (int)v;
    }
    return 0;
}

/* sentinel://host:port[,host:port...]/master[/db] */
static int parse_sentinel(const char *url, struct lcm_redis_addr *out, char *err, size_t errlen)
{
    const char *p = url + 11;
    if (strchr(p, '@')) {
        snprintf(err, errlen, "credentials in the Redis URL are not supported; use a unix socket or loopback");
        return -1;
    }
    const char *slash = strchr(p, '/');
    if (!slash) {
        snprintf(err, errlen, "sentinel URL needs a master name: sentinel://host:port,.../master: %s", url);
        return -1;
    }
    while (p < slash) {
        const char *comma = memchr(p, ',', (size_t)(slash - p));
        const char *e = comma ? comma : slash;
        if (out->nsentinels == LCM_REDIS_MAX_SENTINELS) {
            snprintf(err, errlen, "more than %d sentinels in the Redis URL", LCM_REDIS_MAX_SENTINELS);
            return -1;
        }
        struct lcm_redis_hostport *hp = &out->sentinels[out->nsentinels];
        if (parse_hostport(p, e, 26379, hp->host, sizeof(hp->host), &hp->port) < 0) {
            snprintf(err, errlen, "bad sentinel address '%.*s' in Redis URL: %s", (int)(e - p), p, url);
            return -1;
        }
        out->nsentinels++;
        p = comma ? comma + 1 : slash;
        if (comma && p == slash) {
            snprintf(err, errlen, "empty sentinel address in Redis URL: %s", url);
            return -1;
        }
    }
    if (out->nsentinels == 0) {
        snprintf(err, errlen, "sentinel URL without sentinels: %s", url);
        return -1;
    }
    const char *name = slash + 1, *dbs = strchr(name, '/');
    size_t nl = dbs ? (size_t)(dbs - name) : strlen(name);
    if (nl == 0 || nl >= sizeof(out->master)) {
        snprintf(err, errlen, "sentinel URL needs a master name (1-%zu characters): %s",
                 sizeof(out->master) - 1, url);
        return -1;
    }
    for (size_t i = 0; i < nl; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            snprintf(err, errlen, "bad character in sentinel master name: %s", url);
            return -1;
        }
    }
    memcpy(out->master, name, nl);
    if (dbs && dbs[1]) {
        char *end;
        long db = strtol(dbs + 1, &end, 10);
        if (*end || db < 0 || db > 1000 || dbs[1] == '-' || dbs[1] == '+') {
            snprintf(err, errlen, "bad db number in Redis URL: %s", url);
            return -1;
        }
        out->db = (int)db;
    }
    out->is_sentinel = 1;
    return 0;
}

int lcm_redis_parse_url(const char *url, struct lcm_redis_addr *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!url || !*url) {
        snprintf(err, errlen, "empty Redis URL");
        return -1;
    }
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7, *q = strchr(p, '?');
        size_t l = q ? (size_t)(q - p) : strlen(p);
        if (l == 0 || l >= sizeof(out->path) || p[0] != '/') {
            snprintf(err, errlen, "unix URL needs an absolute socket path: %s", url);
            return -1;
        }
        memcpy(out->path, p, l);
        out->is_unix = 1;
        if (q) {
            char *end;
            if (strncmp(q, "?db=", 4) != 0 || (out->db = (int)strtol(q + 4, &end, 10)) < 0 || *end) {
                snprintf(err, errlen, "bad unix URL query (only ?db=N): %s", url);
                return -1;
            }
        }
        return 0;
    }
    if (strncmp(url, "redis://", 8) == 0) {
        const char *p = url + 8;
        const char *at = strchr(p, '@');
        if (at) {
            snprintf(err, errlen, "credentials in the Redis URL are not supported; use a unix socket or loopback");
            return -1;
        }
        const char *slash = strchr(p, '/');
        const char *hostend = slash ? slash : p + strlen(p);
        const char *colon = memchr(p, ':', (size_t)(hostend - p));
        const char *he = colon ? colon : hostend;
        size_t hl = (size_t)(he - p);
        if (hl == 0 || hl >= sizeof(out->host)) {
            snprintf(err, errlen, "Redis URL without host: %s", url);
            return -1;
        }
        memcpy(out->host, p, hl);
        out->port = 6379;
        if (colon) {
            char *end;
            long port = strtol(colon + 1, &end, 10);
            if (end != hostend || port <= 0 || port > 65535) {
                snprintf(err, errlen, "bad port in Redis URL: %s", url);
                return -1;
            }
            out->port = (int)port;
        }
        if (slash && slash[1]) {
            char *end;
            long db = strtol(slash + 1, &end, 10);
            if (*end || db < 0 || db > 1000) {
                snprintf(err, errlen, "bad db number in Redis URL: %s", url);
                return -1;
            }
            out->db = (int)db;
        }
        return 0;
    }
    if (strncmp(url, "sentinel://", 11) == 0)
        return parse_sentinel(url, out, err, errlen);
    snprintf(err, errlen, "Redis URL must start with redis://, unix:// or sentinel://: %s", url);
    return -1;
}

static void schedule_reconnect(struct lcm_redis *r);
static void do_connect(struct lcm_redis *r);
static void connect_primary(struct lcm_redis *r);
static void drop_connection(struct lcm_redis *r, const char *why);

static void list_add(struct lcm_redis *r, struct pending *p)
{
    p->next = &r->head;
    p->prev = r->head.prev;
    r->head.prev->next = p;
    r->head.prev = p;
}

static void list_del(struct pending *p)
{
    p->prev->next = p->next;
    p->next->prev = p->prev;
    p->prev = p->next = p;
}

static int is_readonly_error(const redisReply *rep)
{
    return rep && rep->type == REDIS_REPLY_ERROR && rep->str && strncmp(rep->str, "READONLY", 8) == 0;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct pending *p = privdata;
    struct lcm_redis *r = p->r;
    /* A READONLY answer through Sentinel means this server was demoted under us (a failover
     * the link survived): the caller gets the error (nothing was written), the link moves. */
    int moved = r->addr.is_sentinel && is_readonly_error(reply);
    list_del(p);
    if (p->cb)
        p->cb(p->r, reply, p->ud);
    free(p);
    if (moved && r->ac == ac && !r->freeing)
        drop_connection(r, "READONLY reply: server is no longer the primary");
}

/* The link is ready for commands: SELECT, then the hooks (they may queue commands). */
static void mark_ready(struct lcm_redis *r)
{
    r->connected = 1;
    r->backoff_ms = 0;
    lcm_info("redis", "msg=\"connected\" url=%s endpoint=%s", r->url, r->endpoint);
    lcm_metrics_set(r->metrics, "lcm_redis_connected", NULL, 1);
    if (r->addr.db)
        lcm_redis_command(r, NULL, NULL, "SELECT %d", r->addr.db);
    for (size_t i = 0; i < r->nhooks; i++)
        r->hooks[i].fn(r, r->hooks[i].ud);
}

/* Sentinel mode: the server a sentinel named must say it is the primary before anything is
 * written to it (a sentinel may answer with a stale view during a failover). */
static void on_role(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct lcm_redis *r = ac->data;
    redisReply *rep = reply;
    (void)privdata;
    if (!r || r->freeing || ac != r->ac || !rep)
        return;   /* dropped meanwhile; the drop path reconnects */
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 &&
        rep->element[0]->type == REDIS_REPLY_STRING && strcmp(rep->element[0]->str, "master") == 0)
        return;   /* the PING sent behind it decides readiness */
    lcm_warn("redis", "msg=\"sentinel named a server that is not the primary\" endpoint=%s role=\"%.40s\"",
             r->endpoint,
             rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 && rep->element[0]->str
                 ? rep->element[0]->str : (rep->type == REDIS_REPLY_ERROR ? rep->str : "?"));
    drop_connection(r, NULL);
}

/* Readiness probe on every new link: a Redis that is still loading its AOF/RDB accepts
 * connections but refuses commands with -LOADING (FUNCTION LOAD included), so the hooks must
 * not run before it answers PING. */
static void on_probe(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct lcm_redis *r = ac->data;
    redisReply *rep = reply;
    (void)privdata;
    if (!r || r->freeing || ac != r->ac || !rep)
        return;
    if (rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0) {
        mark_ready(r);
        return;
    }
    int loading = rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "LOADING", 7) == 0;
    lcm_warn("redis", "msg=\"%s\" endpoint=%s reply=\"%.100s\"",
             loading ? "Redis is loading its dataset; retrying" : "PING refused", r->endpoint,
             rep->type == REDIS_REPLY_ERROR || rep->type == REDIS_REPLY_STATUS ? rep->str : "?");
    drop_connection(r, NULL);
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct lcm_redis *r = ac->data;
    if (!r)
        return;
    if (status != REDIS_OK) {
        lcm_warn("redis", "msg=\"connect failed\" url=%s endpoint=%s err=\"%s\"", r->url, r->endpoint,
                 ac->errstr);
        /* hiredis frees the context after this callback */
        if (r->ac == ac)
            r->ac = NULL;
        schedule_reconnect(r);
        return;
    }
    /* hiredis does not run this callback under its in-callback guard, so the replies (not
     * this function) decide whether to keep the link. */
    if ((r->addr.is_sentinel && redisAsyncCommand(ac, on_role, NULL, "ROLE") != REDIS_OK) ||
        redisAsyncCommand(ac, on_probe, NULL, "PING") != REDIS_OK)
        lcm_warn("redis", "msg=\"cannot send the readiness probe\" endpoint=%s", r->endpoint);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct lcm_redis *r = ac->data;
    if (!r)
        return;   /* dropped by drop_connection, which reconnects itself */
    int was = r->connected;
    r->connected = 0;
    if (r->ac == ac)
        r->ac = NULL;
    lcm_metrics_set(r->metrics, "lcm_redis_connected", NULL, 0);
    if (r->freeing)
        return;
    if (was)
        lcm_warn("redis", "msg=\"disconnected\" url=%s endpoint=%s clean=%d", r->url, r->endpoint,
                 status == REDIS_OK);
    schedule_reconnect(r);
}

/* Closes the command link now (or right after the current hiredis callback): pending
 * callbacks run with NULL, and a reconnect is scheduled. */
static void drop_connection(struct lcm_redis *r, const char *why)
{
    redisAsyncContext *ac = r->ac;
    if (!ac)
        return;
    int was = r->connected;
    r->ac = NULL;
    r->connected = 0;
    if (was) {
        lcm_metrics_set(r->metrics, "lcm_redis_connected", NULL, 0);
        if (why)
            lcm_warn("redis", "msg=\"dropping connection\" url=%s endpoint=%s reason=\"%s\"", r->url,
                     r->endpoint, why);
    }
    ac->data = NULL;   /* its disconnect callback must not reconnect a second time */
    redisAsyncFree(ac);
    schedule_reconnect(r);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    do_connect(arg);
}

static void schedule_reconnect(struct lcm_redis *r)
{
    if (r->freeing)
        return;
    r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : 50;
    if (r->backoff_ms > r->backoff_max_ms)
        r->backoff_ms = r->backoff_max_ms;
    /* Full jitter between half and the whole delay: replicas do not reconnect in lockstep. */
    long d = r->backoff_ms / 2 + (long)((unsigned)rand() % (unsigned)(r->backoff_ms / 2 + 1));
    struct timeval tv = { d / 1000, (d % 1000) * 1000 };
    event_add(r->retry_ev, &tv);
    lcm_metrics_inc(r->metrics, "lcm_redis_reconnects_total", NULL, 1);
}

static void set_endpoint(struct lcm_redis *r)
{
    if (r->addr.is_unix)
        snprintf(r->endpoint, sizeof(r->endpoint), "%s", r->addr.path);
    else if (strchr(r->addr.host, ':'))
        snprintf(r->endpoint, sizeof(r->endpoint), "[%s]:%d", r->addr.host, r->addr.port);
    else
        snprintf(r->endpoint, sizeof(r->endpoint), "%s:%d", r->addr.host, r->addr.port);
}

static void connect_primary(struct lcm_redis *r)
{
    if (r->ac || r->freeing)
        return;
    set_endpoint(r);
    redisAsyncContext *ac = r->addr.is_unix ? redisAsyncConnectUnix(r->addr.path)
                                            : redisAsyncConnect(r->addr.host, r->addr.port);
    if (!ac || ac->err) {
        lcm_warn("redis", "msg=\"connect failed\" url=%s endpoint=%s err=\"%s\"", r->url, r->endpoint,
                 ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_reconnect(r);
        return;
    }
    ac->data = r;
    r->ac = ac;
    clock_gettime(CLOCK_MONOTONIC, &r->connect_started);
    redisLibeventAttach(ac, r->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

/* ---- Sentinel discovery ------------------------------------------------------------- */

static void ask_sentinel(struct lcm_redis *r);

static void sac_close(struct lcm_redis *r)
{
    redisAsyncContext *sac = r->sac;
    r->sac = NULL;   /* first: its NULL-reply callback then sees a stale context */
    if (sac)
        redisAsyncFree(sac);
}

static void on_sentinel_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct lcm_redis *r = ac->data;
    if (status == REDIS_OK || !r || ac != r->sac)
        return;
    lcm_warn("redis", "msg=\"sentinel unreachable\" sentinel=%s:%d err=\"%s\"",
             r->addr.sentinels[r->sac_idx].host, r->addr.sentinels[r->sac_idx].port, ac->errstr);
    r->sac = NULL;   /* hiredis frees it after this callback */
    ask_sentinel(r);
}

static void on_master_addr(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct lcm_redis *r = ac->data;
    redisReply *rep = reply;
    (void)privdata;
    if (!r || r->freeing || ac != r->sac)
        return;
    const struct lcm_redis_hostport *s = &r->addr.sentinels[r->sac_idx];
    r->sac = NULL;
    if (rep)
        redisAsyncFree(ac);   /* deferred by hiredis until this callback returns */
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING) {
        lcm_warn("redis", "msg=\"sentinel does not name a primary\" sentinel=%s:%d master=%s reply=\"%.100s\"",
                 s->host, s->port, r->addr.master,
                 !rep ? "connection lost" : rep->type == REDIS_REPLY_ERROR ? rep->str
                 : rep->type == REDIS_REPLY_NIL ? "unknown master name" : "unexpected reply");
        ask_sentinel(r);
        return;
    }
    char *end;
    long port = strtol(rep->element[1]->str, &end, 10);
    if (*end || port <= 0 || port > 65535 || rep->element[0]->len == 0 ||
        rep->element[0]->len >= sizeof(r->addr.host)) {
        lcm_warn("redis", "msg=\"sentinel gave a bad address\" sentinel=%s:%d", s->host, s->port);
        ask_sentinel(r);
        return;
    }
    r->sentinel_first = r->sac_idx;
    if (r->addr.host[0] && (strcmp(r->addr.host, rep->element[0]->str) != 0 || r->addr.port != (int)port)) {
        lcm_warn("redis", "msg=\"primary moved\" master=%s from=%s:%d to=%s:%ld", r->addr.master,
                 r->addr.host, r->addr.port, rep->element[0]->str, port);
        lcm_metrics_inc(r->metrics, "lcm_redis_primary_changes_total", NULL, 1);
    }
    memcpy(r->addr.host, rep->element[0]->str, rep->element[0]->len);
    r->addr.host[rep->element[0]->len] = 0;
    r->addr.port = (int)port;
    connect_primary(r);
}

/* Asks the next sentinel of this round; after all of them failed, backs off and starts over. */
static void ask_sentinel(struct lcm_redis *r)
{
    while (!r->freeing && !r->sac && !r->ac) {
        if (r->sentinel_tries >= r->addr.nsentinels) {
            lcm_warn("redis", "msg=\"no sentinel named the primary\" master=%s sentinels=%d", r->addr.master,
                     r->addr.nsentinels);
            schedule_reconnect(r);
            return;
        }
        int idx = (r->sentinel_first + r->sentinel_tries) % r->addr.nsentinels;
        r->sentinel_tries++;
        const struct lcm_redis_hostport *s = &r->addr.sentinels[idx];
        redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);
        if (!ac || ac->err) {
            lcm_warn("redis", "msg=\"sentinel unreachable\" sentinel=%s:%d err=\"%s\"", s->host, s->port,
                     ac ? ac->errstr : "out of memory");
            if (ac)
                redisAsyncFree(ac);
            continue;
        }
        ac->data = r;
        r->sac = ac;
        r->sac_idx = idx;
        clock_gettime(CLOCK_MONOTONIC, &r->sac_started);
        redisLibeventAttach(ac, r->base);
        redisAsyncSetConnectCallback(ac, on_sentinel_connect);
        if (redisAsyncCommand(ac, on_master_addr, NULL, "SENTINEL get-master-addr-by-name %s",
                              r->addr.master) != REDIS_OK)
            sac_close(r);
    }
}

/* Failover fence. A sentinel that starts promoting the replica announces
 * +failover-state-send-slaveof-noone first; from the moment the replica stops replicating,
 * every write the old primary still acknowledges is lost when the new one takes over. So the
 * link is closed at once and not reopened until +switch-master names the new primary, the
 * failover is aborted (-failover-abort-*), or FENCE_MAX_MS passed (then the sentinels are
 * asked again). */
#define FENCE_MAX_MS 5000

static void close_link_now(struct lcm_redis *r)
{
    event_del(r->retry_ev);
    sac_close(r);
    if (r->ac) {
        redisAsyncContext *old = r->ac;
        int was = r->connected;
        r->ac = NULL;
        r->connected = 0;
        old->data = NULL;
        redisAsyncFree(old);   /* not inside old's callback: pending callbacks get NULL now */
        if (was)
            lcm_metrics_set(r->metrics, "lcm_redis_connected", NULL, 0);
    }
}

static void fence_start(struct lcm_redis *r, const char *mip, int mport)
{
    if (strcmp(mip, r->addr.host) != 0 || mport != r->addr.port)
        return;   /* not the primary we use (already moved) */
    if (!r->fenced)
        lcm_warn("redis", "msg=\"sentinel started a failover; pausing writes until the new primary is "
                 "announced\" master=%s primary=%s:%d", r->addr.master, mip, mport);
    r->fenced = 1;
    clock_gettime(CLOCK_MONOTONIC, &r->fence_started);
    close_link_now(r);
    struct timeval tv = { FENCE_MAX_MS / 1000, (FENCE_MAX_MS % 1000) * 1000 };
    event_add(r->retry_ev, &tv);
}

static void switch_to(struct lcm_redis *r, const char *newip, int newport)
{
    int same = strcmp(newip, r->addr.host) == 0 && newport == r->addr.port;
    if (same && !r->fenced && (r->ac || r->sac))
        return;   /* already there (every sentinel announces the same switch) */
    if (!same) {
        lcm_warn("redis", "msg=\"sentinel announced a new primary\" master=%s from=%s:%d to=%s:%d",
                 r->addr.master, r->addr.host, r->addr.port, newip, newport);
        lcm_metrics_inc(r->metrics, "lcm_redis_primary_changes_total", NULL, 1);
    }
    if (r->fenced)
        lcm_info("redis", "msg=\"failover over; writes resume\" master=%s paused_ms=%.0f", r->addr.master,
                 elapsed_ms(&r->fence_started));
    r->fenced = 0;
    close_link_now(r);
    snprintf(r->addr.host, sizeof(r->addr.host), "%s", newip);
    r->addr.port = newport;
    r->backoff_ms = 0;
    connect_primary(r);   /* ROLE still verifies it */
}

static void on_sentinel_event(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct lcm_redis *r = ac->data;
    redisReply *rep = reply;
    (void)privdata;
    if (!r || r->freeing)
        return;
    int i = 0;
    while (i < r->addr.nsentinels && r->subs[i] != ac)
        i++;
    if (i == r->addr.nsentinels)
        return;
    if (!rep) {
        r->subs[i] = NULL;   /* reopened by the watchdog */
        return;
    }
    /* ["message", channel, payload] or ["pmessage", pattern, channel, payload] */
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 || rep->element[0]->type != REDIS_REPLY_STRING)
        return;
    size_t ci = strcmp(rep->element[0]->str, "message") == 0 ? 1
              : strcmp(rep->element[0]->str, "pmessage") == 0 && rep->elements == 4 ? 2 : 0;
    if (!ci || rep->element[ci]->type != REDIS_REPLY_STRING || rep->element[ci + 1]->type != REDIS_REPLY_STRING)
        return;
    const char *chan = rep->element[ci]->str, *msg = rep->element[ci + 1]->str;
    char name[128], ip[256];
    int port;
    if (strcmp(chan, "+switch-master") == 0) {
        /* "<name> <old-ip> <old-port> <new-ip> <new-port>" */
        char oldip[256];
        int oldport;
        if (sscanf(msg, "%127s %255s %d %255s %d", name, oldip, &oldport, ip, &port) == 5 &&
            strcmp(name, r->addr.master) == 0 && port > 0 && port <= 65535)
            switch_to(r, ip, port);
        return;
    }
    /* "<type> <name> <ip> <port> @ <master> <master-ip> <master-port>" */
    const char *at = strstr(msg, " @ ");
    if (!at || sscanf(at + 3, "%127s %255s %d", name, ip, &port) != 3 || strcmp(name, r->addr.master) != 0)
        return;
    if (strcmp(chan, "+failover-state-send-slaveof-noone") == 0) {
        fence_start(r, ip, port);
    } else if (strncmp(chan, "-failover-abort", 15) == 0 && r->fenced) {
        lcm_warn("redis", "msg=\"failover aborted; resuming on the same primary\" master=%s event=%s",
                 r->addr.master, chan);
        r->fenced = 0;
        event_del(r->retry_ev);
        do_connect(r);
    }
}

static void on_sub_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct lcm_redis *r = ac->data;
    if (status == REDIS_OK || !r)
        return;
    for (int i = 0; i < r->addr.nsentinels; i++)
        if (r->subs[i] == ac)
            r->subs[i] = NULL;   /* hiredis frees it */
}

static void open_subscription(struct lcm_redis *r, int i)
{
    clock_gettime(CLOCK_MONOTONIC, &r->sub_attempt[i]);
    const struct lcm_redis_hostport *s = &r->addr.sentinels[i];
    redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);
    if (!ac || ac->err) {
        if (ac)
            redisAsyncFree(ac);
        return;
    }
    ac->data = r;
    r->subs[i] = ac;
    redisLibeventAttach(ac, r->base);
    redisAsyncSetConnectCallback(ac, on_sub_connect);
    if (redisAsyncCommand(ac, on_sentinel_event, NULL,
                          "SUBSCRIBE +switch-master +failover-state-send-slaveof-noone") != REDIS_OK ||
        redisAsyncCommand(ac, on_sentinel_event, NULL, "PSUBSCRIBE -failover-abort*") != REDIS_OK) {
        r->subs[i] = NULL;
        redisAsyncFree(ac);
    }
}

static void do_connect(struct lcm_redis *r)
{
    if (r->ac || r->sac || r->freeing)
        return;
    if (r->fenced) {
        double left = FENCE_MAX_MS - elapsed_ms(&r->fence_started);
        if (left > 1) {
            struct timeval tv = { (long)left / 1000, ((long)left % 1000) * 1000 };
            event_add(r->retry_ev, &tv);
            return;
        }
        lcm_warn("redis", "msg=\"no new primary announced in time; asking the sentinels\" master=%s",
                 r->addr.master);
        r->fenced = 0;
    }
    if (r->addr.is_sentinel) {
        r->sentinel_tries = 0;
        ask_sentinel(r);
        return;
    }
    connect_primary(r);
}

/* Periodic watchdog: a connect that hangs, or a command without a reply for longer than the
 * command timeout, means the server is gone or stuck: drop the connection (pending callbacks
 * get NULL) and reconnect. */
static void watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct lcm_redis *r = arg;
    (void)fd;
    (void)what;
    if (r->addr.is_sentinel) {
        if (r->sac && elapsed_ms(&r->sac_started) > (double)r->connect_timeout_ms) {
            lcm_warn("redis", "msg=\"sentinel timed out\" sentinel=%s:%d", r->addr.sentinels[r->sac_idx].host,
                     r->addr.sentinels[r->sac_idx].port);
            sac_close(r);
            ask_sentinel(r);
        }
        for (int i = 0; i < r->addr.nsentinels; i++)
            if (!r->subs[i] && elapsed_ms(&r->sub_attempt[i]) > 1000)
                open_subscription(r, i);
    }
    if (!r->ac)
        return;
    const char *stuck = NULL;
    if (!r->connected && elapsed_ms(&r->connect_started) > (double)r->connect_timeout_ms) {
        lcm_warn("redis", "msg=\"connect timed out\" url=%s endpoint=%s", r->url, r->endpoint);
        stuck = "connect timed out";
    } else if (r->connected && r->head.next != &r->head &&
               elapsed_ms(&r->head.next->sent) > (double)r->command_timeout_ms) {
        lcm_warn("redis", "msg=\"command timed out; reconnecting\" url=%s endpoint=%s timeout_ms=%ld", r->url,
                 r->endpoint, r->command_timeout_ms);
        stuck = "command timed out";
    }
    /* Heartbeat: a server that stopped answering (SIGSTOP, network partition) is only noticed
     * through a command that gets no reply, so keep one going when the link is quiet. */
    if (!stuck && r->connected && r->head.next == &r->head && elapsed_ms(&r->last_ping) > 1000) {
        clock_gettime(CLOCK_MONOTONIC, &r->last_ping);
        lcm_redis_command(r, NULL, NULL, "PING");
    }
    if (stuck)
        drop_connection(r, stuck);
}

struct lcm_redis *lcm_redis_new(struct event_base *base, struct lcm_metrics *metrics,
                                const struct lcm_redis_opts *opts)
{
    char err[256];
    struct lcm_redis *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    if (lcm_redis_parse_url(opts->url, &r->addr, err, sizeof(err)) < 0) {
        lcm_error("redis", "msg=\"bad url\" err=\"%s\"", err);
        free(r);
        return NULL;
    }
    r->base = base;
    r->metrics = metrics;
    r->url = strdup(opts->url);
    r->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 2000;
    r->command_timeout_ms = opts->command_timeout_ms > 0 ? opts->command_timeout_ms : 5000;
    r->backoff_max_ms = opts->backoff_max_ms > 0 ? opts->backoff_max_ms : 2000;
    r->head.next = r->head.prev = &r->head;
    r->retry_ev = evtimer_new(base, retry_cb, r);
    r->watch_ev = event_new(base, -1, EV_PERSIST, watch_cb, r);
    if (!r->url || !r->retry_ev || !r->watch_ev) {
        lcm_redis_free(r);
        return NULL;
    }
    lcm_metrics_declare(metrics, "lcm_redis_connected", LCM_METRIC_GAUGE, "1 while the Redis connection is up");
    lcm_metrics_declare(metrics, "lcm_redis_reconnects_total", LCM_METRIC_COUNTER, "Redis reconnect attempts scheduled");
    lcm_metrics_declare(metrics, "lcm_redis_primary_changes_total", LCM_METRIC_COUNTER,
                        "Sentinel: times the primary's address changed (failovers followed)");
    lcm_metrics_set(metrics, "lcm_redis_connected", NULL, 0);
    struct timeval tick = { 0, 200 * 1000 };
    event_add(r->watch_ev, &tick);
    do_connect(r);
    return r;
}

void lcm_redis_free(struct lcm_redis *r)
{
    if (!r)
        return;
    r->freeing = 1;
    if (r->ac) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        redisAsyncFree(ac);
    }
    sac_close(r);
    for (int i = 0; i < LCM_REDIS_MAX_SENTINELS; i++) {
        redisAsyncContext *sub = r->subs[i];
        r->subs[i] = NULL;
        if (sub)
            redisAsyncFree(sub);
    }
    if (r->retry_ev)
        event_free(r->retry_ev);
    if (r->watch_ev)
        event_free(r->watch_ev);
    free(r->hooks);
    free(r->url);
    free(r);
}

void lcm_redis_on_connect(struct lcm_redis *r, lcm_redis_connect_hook hook, void *ud)
{
    struct hook *nh = realloc(r->hooks, (r->nhooks + 1) * sizeof(*nh));
    if (!nh)
        return;
    r->hooks = nh;
    r->hooks[r->nhooks].fn = hook;
    r->hooks[r->nhooks].ud = ud;
    r->nhooks++;
    if (r->connected)
        hook(r, ud);
}

int lcm_redis_connected(const struct lcm_redis *r) { return r && r->connected; }
redisAsyncContext *lcm_redis_ctx(struct lcm_redis *r) { return r->connected ? r->ac : NULL; }
const char *lcm_redis_url(const struct lcm_redis *r) { return r->url; }
const char *lcm_redis_endpoint(const struct lcm_redis *r) { return r->endpoint; }

static struct pending *new_pending(struct lcm_redis *r, lcm_redis_cb cb, void *ud)
{
    struct pending *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->r = r;
    p->cb = cb;
    p->ud = ud;
    clock_gettime(CLOCK_MONOTONIC, &p->sent);
    return p;
}

int lcm_redis_command(struct lcm_redis *r, lcm_redis_cb cb, void *ud, const char *fmt, ...)
{
    if (!r->connected || !r->ac)
        return -1;
    struct pending *p = new_pending(r, cb, ud);
    if (!p)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int rc = redisvAsyncCommand(r->ac, on_reply, p, fmt, ap);
    va_end(ap);
    if (rc != REDIS_OK) {
        free(p);
        return -1;
    }
    list_add(r, p);
    return 0;
}

int lcm_redis_commandv(struct lcm_redis *r, lcm_redis_cb cb, void *ud, int argc,
                       const char **argv, const size_t *argvlen)
{
    if (!r->connected || !r->ac)
        return -1;
    struct pending *p = new_pending(r, cb, ud);
    if (!p)
        return -1;
    if (redisAsyncCommandArgv(r->ac, on_reply, p, argc, argv, argvlen) != REDIS_OK) {
        free(p);
        return -1;
    }
    list_add(r, p);
    return 0;
}
