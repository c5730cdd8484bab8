/* Redis connection: hiredis async on the libevent loop. Commands are wrapped so that each
 * callback runs exactly once (with NULL when the connection dies), a stuck server is detected
 * by a command timeout, and the connection comes back by itself with jittered backoff. */
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
};

static double elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - since->tv_sec) * 1e3 + (double)(now.tv_nsec - since->tv_nsec) / 1e6;
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
    if (strncmp(url, "sentinel://", 11) == 0) {
        snprintf(err, errlen, "sentinel:// URLs are not supported by this build yet: %s", url);
        return -1;
    }
    snprintf(err, errlen, "Redis URL must start with redis://, unix:// or sentinel://: %s", url);
    return -1;
}

static void schedule_reconnect(struct lcm_redis *r);
static void do_connect(struct lcm_redis *r);

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

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct pending *p = privdata;
    (void)ac;
    list_del(p);
    if (p->cb)
        p->cb(p->r, reply, p->ud);
    free(p);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct lcm_redis *r = ac->data;
    if (status != REDIS_OK) {
        lcm_warn("redis", "msg=\"connect failed\" url=%s err=\"%s\"", r->url, ac->errstr);
        /* hiredis frees the context after this callback */
        r->ac = NULL;
        schedule_reconnect(r);
        return;
    }
    r->connected = 1;
    r->backoff_ms = 0;
    lcm_info("redis", "msg=\"connected\" url=%s", r->url);
    lcm_metrics_set(r->metrics, "lcm_redis_connected", NULL, 1);
    if (r->addr.db)
        lcm_redis_command(r, NULL, NULL, "SELECT %d", r->addr.db);
    for (size_t i = 0; i < r->nhooks; i++)
        r->hooks[i].fn(r, r->hooks[i].ud);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct lcm_redis *r = ac->data;
    int was = r->connected;
    r->connected = 0;
    r->ac = NULL;
    lcm_metrics_set(r->metrics, "lcm_redis_connected", NULL, 0);
    if (r->freeing)
        return;
    if (was)
        lcm_warn("redis", "msg=\"disconnected\" url=%s clean=%d", r->url, status == REDIS_OK);
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

static void do_connect(struct lcm_redis *r)
{
    if (r->ac || r->freeing)
        return;
    redisAsyncContext *ac = r->addr.is_unix ? redisAsyncConnectUnix(r->addr.path)
                                            : redisAsyncConnect(r->addr.host, r->addr.port);
    if (!ac || ac->err) {
        lcm_warn("redis", "msg=\"connect failed\" url=%s err=\"%s\"", r->url,
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

/* Periodic watchdog: a connect that hangs, or a command without a reply for longer than the
 * command timeout, means the server is gone or stuck: drop the connection (pending callbacks
 * get NULL) and reconnect. */
static void watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct lcm_redis *r = arg;
    (void)fd;
    (void)what;
    if (!r->ac)
        return;
    int stuck = 0;
    if (!r->connected && elapsed_ms(&r->connect_started) > (double)r->connect_timeout_ms) {
        lcm_warn("redis", "msg=\"connect timed out\" url=%s", r->url);
        stuck = 1;
    } else if (r->connected && r->head.next != &r->head &&
               elapsed_ms(&r->head.next->sent) > (double)r->command_timeout_ms) {
        lcm_warn("redis", "msg=\"command timed out; reconnecting\" url=%s timeout_ms=%ld", r->url,
                 r->command_timeout_ms);
        stuck = 1;
    }
    /* Heartbeat: a server that stopped answering (SIGSTOP, network partition) is only noticed
     * through a command that gets no reply, so keep one going when the link is quiet. */
    if (!stuck && r->connected && r->head.next == &r->head && elapsed_ms(&r->last_ping) > 1000) {
        clock_gettime(CLOCK_MONOTONIC, &r->last_ping);
        lcm_redis_command(r, NULL, NULL, "PING");
    }
    if (stuck) {
        redisAsyncContext *ac = r->ac;
        int was = r->connected;
        r->ac = NULL;
        r->connected = 0;
        /* redisAsyncFree runs pending callbacks with NULL; the disconnect callback only runs
         * for a context that had connected, so reconnect explicitly otherwise. */
        redisAsyncFree(ac);
        if (!was)
            schedule_reconnect(r);
    }
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
