/* Test helper: seeds aggregates straight through the event store (no HTTP API needed), one
 * atomic commit at a time against the read models, so scheduler tests can put workers into
 * `running` with CML ready without AWS. Usage: sched_seed <redis-url> '<json array of ops>'
 *   {"op":"template","body":{…template…}}
 *   {"op":"definition","id":"d1","body":{…definition…}}            (created and activated)
 *   {"op":"worker","id":"w1","template":"t","region":"r","status":"running",
 *    "cml":{"version":"2.9.0","ready":true,"node_definitions":["iosv"]},"license":"enterprise"}
 *   {"op":"session","id":"s1","definition_id":"d1","start":<unix>|0,"end":<unix>|0}
 *   {"op":"worker_status","id":"w1","status":"draining"}   (a table transition)
 * Prints one line per commit; exits 0 when every op applied, 1 otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "core/metrics.h"
#include "core/redis.h"
#include "domain/definition.h"
#include "domain/session.h"
#include "domain/session_time.h"
#include "domain/template.h"
#include "domain/worker.h"
#include "store/store.h"

struct seed {
    struct event_base *base;
    struct lcm_store *st;
    cJSON *ops;
    int i, n, failed, busy, started;
    struct event *tick;
};

static const char *BY = "test:sched_seed";

static int jint(const cJSON *o, const char *k, long long def)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(x) ? (int)x->valuedouble : (int)def;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static void next(struct seed *s);

static void done(const struct lcm_store_result *res, void *ud)
{
    struct seed *s = ud;
    s->busy = 0;
    if (res->status != LCM_STORE_OK) {
        fprintf(stderr, "sched_seed: op %d: commit failed: %s %s\n", s->i, lcm_store_strerror(res->status), res->message);
        s->failed = 1;
        event_base_loopbreak(s->base);
        return;
    }
    next(s);
}

/* Commits evs on (kind, id); returns 1 when a commit was sent, 0 when evs is empty. */
static int commit(struct seed *s, const struct lcm_kind *k, const char *id, uint64_t ver,
                  struct lcm_events *evs)
{
    if (evs->n == 0)
        return 0;
    struct lcm_store_event se[8];
    char *js[8] = { 0 };
    size_t n = evs->n < 8 ? evs->n : 8;
    for (size_t i = 0; i < n; i++) {
        js[i] = cJSON_PrintUnformatted(evs->v[i].data);
        se[i] = (struct lcm_store_event){ evs->v[i].type, js[i], NULL, BY };
    }
    struct lcm_store_change ch = { k, id, ver, se, n, NULL, 0 };
    char err[256];
    int rc = lcm_store_commit(s->st, &ch, 1, NULL, done, s, err, sizeof err);
    for (size_t i = 0; i < n; i++)
        cJSON_free(js[i]);
    lcm_events_clear(evs);
    if (rc < 0) {
        fprintf(stderr, "sched_seed: op %d: %s\n", s->i, err);
        s->failed = 1;
        return -1;
    }
    s->busy = 1;
    return 1;
}

/* The next step of op o, or 0 when o is complete. */
static int step(struct seed *s, const cJSON *o)
{
    struct lcm_events ev;
    lcm_events_init(&ev);
    struct lcm_derr e = { 0 };
    int64_t now = (int64_t)time(NULL);
    const char *op = jstr(o, "op");
    const char *id = jstr(o, "id");
    if (!op)
        return -1;
    if (!strcmp(op, "template")) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "body");
        const char *name = jstr(b, "name");
        if (!name)
            return -1;
        if (lcm_store_get(s->st, "template", name))
            return 0;
        if (lcm_template_cmd_create(b, BY, now, &ev, &e))
            goto derr;
        return commit(s, &lcm_kind_template, name, 0, &ev);
    }
    if (!strcmp(op, "definition")) {
        const struct lcm_definition *d = lcm_store_get(s->st, "definition", id);
        if (!d) {
            if (lcm_definition_cmd_create(id, cJSON_GetObjectItemCaseSensitive(o, "body"), BY, now, &ev, &e))
                goto derr;
            return commit(s, &lcm_kind_definition, id, 0, &ev);
        }
        if (d->status == LCM_DEF_ACTIVE)
            return 0;
        if (lcm_definition_cmd_transition(d, LCM_DEF_ACTIVE, "seed", BY, now, &ev, &e))
            goto derr;
        return commit(s, &lcm_kind_definition, id, d->version, &ev);
    }
    if (!strcmp(op, "worker")) {
        const struct lcm_worker *w = lcm_store_get(s->st, "worker", id);
        if (!w) {
            const struct lcm_template *t = lcm_store_get(s->st, "template", jstr(o, "template"));
            struct lcm_worker_create c = { .id = id, .region = jstr(o, "region"), .origin = LCM_ORIGIN_MANUAL };
            if (lcm_worker_cmd_create(&c, t, BY, now, &ev, &e))
                goto derr;
            return commit(s, &lcm_kind_worker, id, 0, &ev);
        }
        const char *want = jstr(o, "status");
        int target = want ? lcm_fsm_parse(&lcm_fsm_worker, want) : LCM_WK_RUNNING;
        static const int path[] = { LCM_WK_PROVISIONING, LCM_WK_STARTING, LCM_WK_RUNNING };
        for (size_t i = 0; i < 3 && w->status < target && w->status < LCM_WK_RUNNING; i++) {
            if (path[i] > w->status) {
                if (lcm_worker_cmd_transition(w, path[i], "seed", BY, now, &ev, &e))
                    goto derr;
                return commit(s, &lcm_kind_worker, id, w->version, &ev);
            }
        }
        const cJSON *cml = cJSON_GetObjectItemCaseSensitive(o, "cml");
        if (cml && !w->cml.ready && !w->cml.version) {
            const cJSON *nds = cJSON_GetObjectItemCaseSensitive(cml, "node_definitions");
            const char *v[64];
            size_t n = 0;
            const cJSON *it;
            cJSON_ArrayForEach(it, nds) if (cJSON_IsString(it) && n < 64) v[n++] = it->valuestring;
            if (lcm_worker_cmd_set_cml(w, jstr(cml, "version"), cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cml, "ready")),
                                       v, n, BY, now, &ev, &e))
                goto derr;
            return commit(s, &lcm_kind_worker, id, w->version, &ev);
        }
        const char *lic = jstr(o, "license");
        if (lic && (w->license.type != lcm_license_parse(lic) || !w->license.status)) {
            if (lcm_worker_cmd_set_license(w, lcm_license_parse(lic), "registered", 0, BY, now, &ev, &e))
                goto derr;
            return commit(s, &lcm_kind_worker, id, w->version, &ev);
        }
        if (target != w->status && target > LCM_WK_RUNNING) {
            if (lcm_worker_cmd_transition(w, target, "seed", BY, now, &ev, &e))
                goto derr;
            return commit(s, &lcm_kind_worker, id, w->version, &ev);
        }
        return 0;
    }
    if (!strcmp(op, "worker_status")) {
        const struct lcm_worker *w = lcm_store_get(s->st, "worker", id);
        int target = lcm_fsm_parse(&lcm_fsm_worker, jstr(o, "status"));
        if (!w || target < 0)
            return -1;
        if (w->status == target)
            return 0;
        if (target == LCM_WK_DRAINING ? lcm_worker_cmd_drain(w, "seed", 0, BY, now, &ev, &e)
                                      : lcm_worker_cmd_transition(w, target, "seed", BY, now, &ev, &e))
            goto derr;
        return commit(s, &lcm_kind_worker, id, w->version, &ev);
    }
    if (!strcmp(op, "session")) {
        if (lcm_store_get(s->st, "session", id))
            return 0;
        const char *did = jstr(o, "definition_id");
        const struct lcm_definition *d = lcm_store_get(s->st, "definition", did);
        struct lcm_session_create c = { .id = id, .definition_id = did, .owner = "test",
                                         .start = jint(o, "start", 0), .end = jint(o, "end", 0) };
        struct lcm_time_params tp;
        lcm_time_params_default(&tp);
        if (!d || lcm_session_cmd_create(&c, d, &tp, BY, now, &ev, &e))
            goto derr;
        return commit(s, &lcm_kind_session, id, 0, &ev);
    }
    fprintf(stderr, "sched_seed: unknown op %s\n", op);
    return -1;
derr:
    fprintf(stderr, "sched_seed: op %d (%s %s): %s: %s\n", s->i, op, id ? id : "", e.field, e.message);
    lcm_events_clear(&ev);
    return -1;
}

static void next(struct seed *s)
{
    while (s->i < s->n) {
        int rc = step(s, cJSON_GetArrayItem(s->ops, s->i));
        if (rc < 0) {
            s->failed = 1;
            event_base_loopbreak(s->base);
            return;
        }
        if (rc > 0)
            return;   /* wait for the commit */
        s->i++;
    }
    event_base_loopbreak(s->base);
}

static void ready(struct lcm_store *st, int status, void *ud)
{
    struct seed *s = ud;
    (void)st;
    if (status != 0) {
        fprintf(stderr, "sched_seed: store load failed\n");
        s->failed = 1;
        event_base_loopbreak(s->base);
        return;
    }
    next(s);
}

static void connected(struct lcm_redis *r, void *ud)
{
    struct seed *s = ud;
    (void)r;
    if (s->started)
        return;
    s->started = 1;
    if (lcm_store_start(s->st, ready, s) < 0) {
        fprintf(stderr, "sched_seed: cannot start the store\n");
        s->failed = 1;
        event_base_loopbreak(s->base);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: sched_seed <redis-url> '<json ops>'\n");
        return 2;
    }
    struct seed s = { 0 };
    s.ops = cJSON_Parse(argv[2]);
    if (!cJSON_IsArray(s.ops)) {
        fprintf(stderr, "sched_seed: ops must be a JSON array\n");
        return 2;
    }
    s.n = cJSON_GetArraySize(s.ops);
    s.base = event_base_new();
    struct lcm_metrics *m = lcm_metrics_new();
    struct lcm_redis_opts ro = { .url = argv[1] };
    struct lcm_redis *r = lcm_redis_new(s.base, m, &ro);
    struct lcm_store_opts so = { .no_follow = 1 };
    char err[256];
    s.st = r ? lcm_store_new(s.base, r, m, &so, err, sizeof err) : NULL;
    if (s.st)
        lcm_redis_on_connect(r, connected, &s);
    else
        s.failed = 1;
    struct timeval limit = { 60, 0 };
    event_base_loopexit(s.base, &limit);
    if (!s.failed)
        event_base_dispatch(s.base);
    int ok = !s.failed && s.i == s.n;
    if (!ok && !s.failed)
        fprintf(stderr, "sched_seed: timed out at op %d\n", s.i);
    lcm_redis_free(r);
    lcm_store_free(s.st);
    lcm_metrics_free(m);
    event_base_free(s.base);
    cJSON_Delete(s.ops);
    return ok ? 0 : 1;
}
