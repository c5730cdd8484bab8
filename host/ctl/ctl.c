/* Leader lease (FCALL lcm_lease_acquire / lcm_lease_release from the store's function
 * library), controller registry, coalesced wake-ups, single-flight claims per aggregate. */
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "app.h"
#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/redis.h"
#include "domain/kind.h"
#include "store/store.h"

struct ctrl {
    struct lcm_controller def;
    void *ud;
    struct event *sweep_ev;
    struct event *wake_ev;
    int wake_pending;
    int running;
    uint64_t reconciles;
    double last_reconcile_ms;
    time_t last_reconcile_at;
};

struct claim {
    char *key;
    struct claim *next;
};

#define NCLAIM 1024

struct lcm_ctl {
    struct lcm_app *app;
    char holder[128];
    char token[64];
    int leader;
    int started;
    int shutting_down;
    long ttl_ms;
    struct timespec last_renew_ok;   /* when the last successful acquire/renew was sent */
    struct timespec renew_sent;
    int renew_inflight;
    struct event *lease_ev;
    struct ctrl *ctrls;
    size_t n;
    int sub;
    struct claim *claims[NCLAIM];
    uint64_t terms;
};

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static double ts_ms(const struct timespec *t) { return (double)t->tv_sec * 1e3 + (double)t->tv_nsec / 1e6; }

/* ---- controllers ---- */

static void run_reconcile(struct ctrl *k)
{
    double t0 = now_ms();
    k->def.reconcile(k->ud);
    k->reconciles++;
    k->last_reconcile_ms = now_ms() - t0;
    k->last_reconcile_at = time(NULL);
}

static int lease_valid(const struct lcm_ctl *c)
{
    return c->leader && now_ms() - ts_ms(&c->last_renew_ok) < (double)c->ttl_ms * 0.9;
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct ctrl *k = arg;
    (void)fd;
    (void)what;
    k->wake_pending = 0;
    if (k->running)
        run_reconcile(k);
}

static void start_controllers(struct lcm_ctl *c)
{
    for (size_t i = 0; i < c->n; i++) {
        struct ctrl *k = &c->ctrls[i];
        if (k->running)
            continue;
        k->running = 1;
        if (k->def.start)
            k->def.start(k->ud);
        unsigned ms = k->def.sweep_ms ? k->def.sweep_ms : 1000;
        struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
        event_add(k->sweep_ev, &tv);
        struct timeval zero = { 0, 0 };
        event_add(k->wake_ev, &zero);
    }
}

static void stop_controllers(struct lcm_ctl *c)
{
    for (size_t i = 0; i < c->n; i++) {
        struct ctrl *k = &c->ctrls[i];
        if (!k->running)
            continue;
        k->running = 0;
        event_del(k->sweep_ev);
        event_del(k->wake_ev);
        if (k->def.stop)
            k->def.stop(k->ud);
    }
}

static void become_follower(struct lcm_ctl *c, const char *why)
{
    if (!c->leader)
        return;
    c->leader = 0;
    c->token[0] = 0;
    lcm_warn("ctl", "msg=\"lost leadership\" holder=%s reason=\"%s\"", c->holder, why);
    lcm_metrics_set(c->app->metrics, "lcm_leader", NULL, 0);
    stop_controllers(c);
}

static void change_cb(const struct lcm_kind *kind, const char *id, const void *state,
                      const struct lcm_event *ev, const char *feed_id, void *ud)
{
    struct lcm_ctl *c = ud;
    (void)feed_id;
    if (!c->leader)
        return;
    for (size_t i = 0; i < c->n; i++) {
        struct ctrl *k = &c->ctrls[i];
        if (!k->running)
            continue;
        /* interested sees every change, even with a wake already pending: controllers use it
         * to keep their own indexes and to react to specific events */
        if (k->def.interested && !k->def.interested(k->ud, kind, id, state, ev))
            continue;
        if (k->wake_pending)
            continue;
        k->wake_pending = 1;
        /* a short delay batches a burst of events into one reconcile */
        struct timeval tv = { 0, 5 * 1000 };
        event_add(k->wake_ev, &tv);
    }
}

void lcm_ctl_wake(struct lcm_ctl *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++) {
        struct ctrl *k = &c->ctrls[i];
        if (!k->running || k->wake_pending || (name && strcmp(name, k->def.name) != 0))
            continue;
        k->wake_pending = 1;
        struct timeval zero = { 0, 0 };
        event_add(k->wake_ev, &zero);
    }
}

int lcm_ctl_register(struct lcm_ctl *c, const struct lcm_controller *def, void *ud)
{
    struct ctrl *nk = realloc(c->ctrls, (c->n + 1) * sizeof(*nk));
    if (!nk)
        return -1;
    c->ctrls = nk;
    /* events point at array slots: re-create them after realloc */
    for (size_t i = 0; i < c->n; i++) {
        event_free(c->ctrls[i].sweep_ev);
        event_free(c->ctrls[i].wake_ev);
        c->ctrls[i].sweep_ev = event_new(c->app->base, -1, EV_PERSIST, sweep_cb, &c->ctrls[i]);
        c->ctrls[i].wake_ev = evtimer_new(c->app->base, sweep_cb, &c->ctrls[i]);
        if (c->ctrls[i].running) {
            unsigned ms = c->ctrls[i].def.sweep_ms ? c->ctrls[i].def.sweep_ms : 1000;
            struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
            event_add(c->ctrls[i].sweep_ev, &tv);
        }
    }
    struct ctrl *k = &c->ctrls[c->n];
    memset(k, 0, sizeof(*k));
    k->def = *def;
    k->ud = ud;
    k->sweep_ev = event_new(c->app->base, -1, EV_PERSIST, sweep_cb, k);
    k->wake_ev = evtimer_new(c->app->base, sweep_cb, k);
    c->n++;
    if (lease_valid(c))
        start_controllers(c);
    return 0;
}

/* ---- lease ---- */

static void lease_reply(struct lcm_redis *r, redisReply *reply, void *ud)
{
    struct lcm_ctl *c = ud;
    (void)r;
    c->renew_inflight = 0;
    if (c->shutting_down)
        return;
    if (reply && (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS)) {
        int was = c->leader;
        int new_term = !was || strcmp(c->token, reply->str) != 0;
        snprintf(c->token, sizeof(c->token), "%s", reply->str);
        c->last_renew_ok = c->renew_sent;
        c->leader = 1;
        if (new_term) {
            c->terms++;
            lcm_info("ctl", "msg=\"leader\" holder=%s token=%s ttl_ms=%ld", c->holder, c->token, c->ttl_ms);
            lcm_metrics_set(c->app->metrics, "lcm_leader", NULL, 1);
            lcm_metrics_inc(c->app->metrics, "lcm_leader_terms_total", NULL, 1);
            if (was)
                stop_controllers(c);
            start_controllers(c);
        }
        return;
    }
    if (reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "HELD", 4) == 0) {
        if (c->leader)
            become_follower(c, "lease held by another replica");
        return;
    }
    /* Redis unreachable or the function library not loaded yet: keep what we have until the
     * lease would have expired. */
    if (reply && reply->type == REDIS_REPLY_ERROR)
        lcm_debug("ctl", "msg=\"lease call failed\" err=\"%s\"", reply->str);
}

static void lease_tick(evutil_socket_t fd, short what, void *arg)
{
    struct lcm_ctl *c = arg;
    (void)fd;
    (void)what;
    if (c->leader && !lease_valid(c))
        become_follower(c, "lease not renewed in time");
    if (c->renew_inflight || c->shutting_down)
        return;
    if (!c->app->store_ready)
        return;
    char ttl[32];
    snprintf(ttl, sizeof(ttl), "%ld", c->ttl_ms);
    const char *argv[] = { "FCALL", "lcm_lease_acquire", "2", "lcm:leader", "lcm:leader:epoch", c->holder, ttl };
    clock_gettime(CLOCK_MONOTONIC, &c->renew_sent);
    if (lcm_redis_commandv(c->app->redis, lease_reply, c, 7, argv, NULL) == 0)
        c->renew_inflight = 1;
}

struct lcm_ctl *lcm_ctl_new(struct lcm_app *app, char *err, size_t errlen)
{
    struct lcm_ctl *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->app = app;
    c->ttl_ms = (long)lcm_config_int(app->cfg, "lease_ttl_ms");
    const char *h = lcm_config_str(app->cfg, "leader_holder");
    if (h) {
        snprintf(c->holder, sizeof(c->holder), "%s", h);
    } else {
        char host[64] = "lcmd";
        gethostname(host, sizeof(host) - 1);
        for (char *p = host; *p; p++)
            if (*p == ' ')
                *p = '-';
        snprintf(c->holder, sizeof(c->holder), "%s-%d-%04x", host, (int)getpid(), (unsigned)rand() & 0xffff);
    }
    c->lease_ev = event_new(app->base, -1, EV_PERSIST, lease_tick, c);
    c->sub = lcm_store_subscribe(app->store, change_cb, c);
    if (!c->lease_ev || c->sub < 0) {
        snprintf(err, errlen, "cannot set up the leader lease");
        lcm_ctl_free(c);
        return NULL;
    }
    lcm_metrics_declare(app->metrics, "lcm_leader", LCM_METRIC_GAUGE, "1 while this replica holds the leader lease");
    lcm_metrics_declare(app->metrics, "lcm_leader_terms_total", LCM_METRIC_COUNTER, "Leader terms won by this replica");
    lcm_metrics_set(app->metrics, "lcm_leader", NULL, 0);
    return c;
}

void lcm_ctl_start(struct lcm_ctl *c)
{
    if (c->started)
        return;
    c->started = 1;
    long period = c->ttl_ms / 3;
    if (period < 50)
        period = 50;
    struct timeval tv = { period / 1000, (period % 1000) * 1000 };
    event_add(c->lease_ev, &tv);
    lease_tick(-1, 0, c);
}

void lcm_ctl_shutdown(struct lcm_ctl *c)
{
    if (!c || c->shutting_down)
        return;
    c->shutting_down = 1;
    if (c->lease_ev)
        event_del(c->lease_ev);
    if (c->leader && c->token[0]) {
        const char *argv[] = { "FCALL", "lcm_lease_release", "1", "lcm:leader", c->token };
        lcm_redis_commandv(c->app->redis, NULL, NULL, 5, argv, NULL);
    }
    int was = c->leader;
    c->leader = 0;
    c->token[0] = 0;
    if (was)
        lcm_info("ctl", "msg=\"released leadership\" holder=%s", c->holder);
    stop_controllers(c);
}

void lcm_ctl_free(struct lcm_ctl *c)
{
    if (!c)
        return;
    lcm_ctl_shutdown(c);
    if (c->sub >= 0 && c->app->store)
        lcm_store_unsubscribe(c->app->store, c->sub);
    for (size_t i = 0; i < c->n; i++) {
        event_free(c->ctrls[i].sweep_ev);
        event_free(c->ctrls[i].wake_ev);
    }
    free(c->ctrls);
    for (size_t i = 0; i < NCLAIM; i++) {
        while (c->claims[i]) {
            struct claim *n = c->claims[i]->next;
            free(c->claims[i]->key);
            free(c->claims[i]);
            c->claims[i] = n;
        }
    }
    if (c->lease_ev)
        event_free(c->lease_ev);
    free(c);
}

int lcm_ctl_is_leader(const struct lcm_ctl *c) { return c && lease_valid(c); }
const char *lcm_ctl_fence(const struct lcm_ctl *c) { return lcm_ctl_is_leader(c) ? c->token : NULL; }
const char *lcm_ctl_holder(const struct lcm_ctl *c) { return c->holder; }
struct lcm_app *lcm_ctl_app(const struct lcm_ctl *c) { return c->app; }

int lcm_ctl_commit(struct lcm_ctl *c, const struct lcm_store_change *changes, size_t n,
                   lcm_ctl_done_fn done, void *ud, char *err, size_t errlen)
{
    const char *fence = lcm_ctl_fence(c);
    if (!fence) {
        snprintf(err, errlen, "not the leader");
        return -1;
    }
    return lcm_store_commit(c->app->store, changes, n, fence, done, ud, err, errlen);
}

/* ---- claims ---- */

static unsigned long hash_key(const char *s)
{
    unsigned long h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h;
}

static void claim_key(char *out, size_t cap, const char *kind, const char *id)
{
    snprintf(out, cap, "%s:%s", kind, id);
}

int lcm_ctl_claimed(const struct lcm_ctl *c, const char *kind, const char *id)
{
    char key[300];
    claim_key(key, sizeof(key), kind, id);
    for (struct claim *x = c->claims[hash_key(key) % NCLAIM]; x; x = x->next)
        if (strcmp(x->key, key) == 0)
            return 1;
    return 0;
}

int lcm_ctl_claim(struct lcm_ctl *c, const char *kind, const char *id)
{
    if (lcm_ctl_claimed(c, kind, id))
        return 0;
    char key[300];
    claim_key(key, sizeof(key), kind, id);
    struct claim *x = calloc(1, sizeof(*x));
    if (!x || !(x->key = strdup(key))) {
        free(x);
        return 0;
    }
    unsigned long b = hash_key(key) % NCLAIM;
    x->next = c->claims[b];
    c->claims[b] = x;
    return 1;
}

void lcm_ctl_release(struct lcm_ctl *c, const char *kind, const char *id)
{
    char key[300];
    claim_key(key, sizeof(key), kind, id);
    for (struct claim **pp = &c->claims[hash_key(key) % NCLAIM]; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->key, key) == 0) {
            struct claim *x = *pp;
            *pp = x->next;
            free(x->key);
            free(x);
            return;
        }
    }
}

cJSON *lcm_ctl_status_json(const struct lcm_ctl *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "leader", lcm_ctl_is_leader(c));
    cJSON_AddStringToObject(o, "holder", c->holder);
    if (lcm_ctl_is_leader(c))
        cJSON_AddStringToObject(o, "fence", c->token);
    cJSON_AddNumberToObject(o, "lease_ttl_ms", (double)c->ttl_ms);
    cJSON_AddNumberToObject(o, "terms", (double)c->terms);
    cJSON *arr = cJSON_AddArrayToObject(o, "controllers");
    for (size_t i = 0; i < c->n; i++) {
        const struct ctrl *k = &c->ctrls[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", k->def.name);
        cJSON_AddBoolToObject(e, "running", k->running);
        cJSON_AddNumberToObject(e, "reconciles", (double)k->reconciles);
        cJSON_AddNumberToObject(e, "last_reconcile_ms", k->last_reconcile_ms);
        if (k->last_reconcile_at) {
            char ts[32];
            struct tm tm;
            gmtime_r(&k->last_reconcile_at, &tm);
            strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
            cJSON_AddStringToObject(e, "last_reconcile_at", ts);
        }
        cJSON_AddItemToArray(arr, e);
    }
    return o;
}
