/* Commit-path micro-benchmark: microseconds of this process's time spent inside
 * lcm_store_commit (fold into a copy of the current state, field and index diff, encoding)
 * per commit, with the real domain kinds against a private redis-server, for the commits lcmd
 * makes most: a new session (POST /api/v1/sessions), a placement (worker + 10 sessions in one
 * commit, as the scheduler makes it) and a small change to a busy worker (worker.metrics on a
 * worker holding 20 sessions). Rounds alternate the cases; medians are reported. Prints a
 * table and one JSON object (last line). Usage: bench_commit [--quick] [--rounds N]
 * [--case create|place|metrics]: one case only, once, e.g. to count instructions per commit
 * under callgrind (only the timed calls are collected):
 *   valgrind --tool=callgrind --collect-atstart=no bench_commit --quick --case place */
#include <cjson/cJSON.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/redis.h"
#include "domain/definition.h"
#include "domain/session.h"
#include "domain/session_time.h"
#include "domain/template.h"
#include "domain/worker.h"
#include "harness.h"
#include "store/store.h"

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#endif
#endif
#ifndef CALLGRIND_TOGGLE_COLLECT
#define CALLGRIND_TOGGLE_COLLECT
#endif

#define WINDOW 256           /* commits in flight before the loop runs */
#define PER_WORKER 10        /* sessions per placement commit */

static struct event_base *base;
static struct th_redis srv;
static struct lcm_store *st;
static long pending;
static double commit_ns;     /* time inside lcm_store_commit, accumulated */
static long commits;
static int collect = 1;      /* timed commits are counted by callgrind */

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void done_cb(const struct lcm_store_result *res, void *ud)
{
    (void)ud;
    pending--;
    if (res->status != LCM_STORE_OK) {
        fprintf(stderr, "commit failed: %s %s\n", lcm_store_strerror(res->status), res->message);
        exit(1);
    }
}

static void drain(long upto)
{
    while (pending > upto)
        event_base_loop(base, EVLOOP_ONCE);
}

/* Event texts for a change (owned by the caller: free with evs_free). */
struct evbuf {
    struct lcm_store_event se[32];
    char *js[32], *types[32];
    size_t n;
};

static void evs_take(struct evbuf *b, struct lcm_events *evs)
{
    for (size_t i = 0; i < evs->n && b->n < 32; i++, b->n++) {
        b->js[b->n] = cJSON_PrintUnformatted(evs->v[i].data);
        b->types[b->n] = strdup(evs->v[i].type);
        b->se[b->n] = (struct lcm_store_event){ b->types[b->n], b->js[b->n], NULL, "bench" };
    }
}

static void evs_done(struct evbuf *b, size_t n, struct lcm_events *evs)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < b[i].n; j++) {
            cJSON_free(b[i].js[j]);
            free(b[i].types[j]);
        }
    lcm_events_clear(evs);
}

/* Commits n changes, timing the call alone. */
static void commit(struct lcm_store_change *ch, size_t n, int timed)
{
    char err[256];
    if (timed && collect)
        CALLGRIND_TOGGLE_COLLECT;
    double t0 = now_ns();
    int rc = lcm_store_commit(st, ch, n, NULL, done_cb, NULL, err, sizeof err);
    double t1 = now_ns();
    if (timed && collect)
        CALLGRIND_TOGGLE_COLLECT;
    if (rc < 0) {
        fprintf(stderr, "commit %s:%s: %s\n", ch[0].kind->name, ch[0].id, err);
        exit(1);
    }
    if (timed) {
        commit_ns += t1 - t0;
        commits++;
    }
    pending++;
    drain(WINDOW);
}

static void one(const struct lcm_kind *k, const char *id, uint64_t ver, struct lcm_events *evs,
                int timed)
{
    struct evbuf b = { .n = 0 };
    evs_take(&b, evs);
    struct lcm_store_change ch = { k, id, ver, b.se, b.n, NULL, 0 };
    commit(&ch, 1, timed);
    evs_done(&b, 1, evs);
}

static int64_t t_now;

static void seed(void)
{
    struct lcm_events ev;
    struct lcm_derr e;
    lcm_events_init(&ev);
    cJSON *tb = cJSON_Parse("{\"name\":\"multi\",\"instance_type\":\"m5zn.metal\","
                            "\"ami_name_pattern\":\"cml\",\"capacity\":{\"cpu_cores\":48,"
                            "\"memory_gb\":192,\"storage_gb\":256,\"max_nodes\":200},"
                            "\"cost_per_hour\":3.96,\"enabled\":true,\"region\":\"eu-west-1\","
                            "\"license_type\":\"enterprise\"}");
    if (lcm_template_cmd_create(tb, "bench", t_now, &ev, &e))
        exit(1);
    cJSON_Delete(tb);
    one(&lcm_kind_template, "multi", 0, &ev, 0);
    cJSON *b = cJSON_Parse("{\"name\":\"def-small\",\"version\":\"1.0.0\",\"topology_uri\":"
                           "\"s3://b/small.yaml\",\"node_count\":2,\"resource_requirements\":"
                           "{\"cpu_cores\":2,\"memory_gb\":4,\"storage_gb\":10,"
                           "\"cml_version_min\":\"2.9.0\",\"node_definitions\":[\"iosv\"]},"
                           "\"lds_enabled\":false}");
    if (lcm_definition_cmd_create("def-small", b, "bench", t_now, &ev, &e))
        exit(1);
    cJSON_Delete(b);
    one(&lcm_kind_definition, "def-small", 0, &ev, 0);
    drain(0);
    const struct lcm_definition *def = lcm_store_get(st, "definition", "def-small");
    if (lcm_definition_cmd_transition(def, LCM_DEF_ACTIVE, "bench", "bench", t_now, &ev, &e))
        exit(1);
    one(&lcm_kind_definition, "def-small", def->version, &ev, 0);
    drain(0);
}

/* A running worker with CML ready (several commits, untimed). */
static void make_worker(const char *id)
{
    struct lcm_events ev;
    struct lcm_derr e;
    lcm_events_init(&ev);
    const struct lcm_template *tpl = lcm_store_get(st, "template", "multi");
    struct lcm_worker_create c = { .id = id, .region = "eu-west-1", .origin = LCM_ORIGIN_MANUAL };
    if (lcm_worker_cmd_create(&c, tpl, "bench", t_now, &ev, &e))
        exit(1);
    one(&lcm_kind_worker, id, 0, &ev, 0);
    drain(0);
    static const int path[] = { LCM_WK_PROVISIONING, LCM_WK_STARTING, LCM_WK_RUNNING };
    for (int p = 0; p < 3; p++) {
        const struct lcm_worker *w = lcm_store_get(st, "worker", id);
        if (lcm_worker_cmd_transition(w, path[p], "bench", "bench", t_now, &ev, &e))
            exit(1);
        one(&lcm_kind_worker, id, w->version, &ev, 0);
        drain(0);
    }
    const struct lcm_worker *w = lcm_store_get(st, "worker", id);
    const char *nds[] = { "iosv", "csr1000v" };
    if (lcm_worker_cmd_set_cml(w, "2.9.1", 1, nds, 2, "bench", t_now, &ev, &e))
        exit(1);
    one(&lcm_kind_worker, id, w->version, &ev, 0);
    drain(0);
}

/* Case 1: n new sessions, one commit each. Returns µs per commit. */
static double case_create(const char *prefix, long n, int timed)
{
    struct lcm_events ev;
    struct lcm_derr e;
    struct lcm_time_params tp;
    lcm_events_init(&ev);
    lcm_time_params_default(&tp);
    const struct lcm_definition *def = lcm_store_get(st, "definition", "def-small");
    commit_ns = 0;
    commits = 0;
    for (long i = 0; i < n; i++) {
        char id[48];
        snprintf(id, sizeof id, "%.20s%06ld", prefix, i);
        def = lcm_store_get(st, "definition", "def-small");
        struct lcm_session_create c = { .id = id, .definition_id = "def-small", .owner = "bench" };
        if (lcm_session_cmd_create(&c, def, &tp, "bench", t_now, &ev, &e)) {
            fprintf(stderr, "session: %s\n", e.message);
            exit(1);
        }
        one(&lcm_kind_session, id, 0, &ev, timed);
    }
    drain(0);
    return commits ? commit_ns / 1e3 / (double)commits : 0;
}

/* Case 2: for each of nw fresh workers, one commit placing PER_WORKER pending sessions
 * (session.scheduled on each + worker.allocated ×PER_WORKER), twice per worker so the second
 * one lands on a worker already holding sessions. Returns µs per commit. */
static double case_place(const char *prefix, long nw)
{
    struct lcm_events ev;
    struct lcm_derr e;
    lcm_events_init(&ev);
    char wid[48], sp[48];
    for (long i = 0; i < nw; i++) {
        snprintf(wid, sizeof wid, "%.20sw%05ld", prefix, i);
        make_worker(wid);
    }
    snprintf(sp, sizeof sp, "%.20ss", prefix);
    case_create(sp, nw * PER_WORKER * 2, 0);
    commit_ns = 0;
    commits = 0;
    struct lcm_capacity req = { 2, 4, 10, 2 };
    for (int pass = 0; pass < 2; pass++)
        for (long i = 0; i < nw; i++) {
            snprintf(wid, sizeof wid, "%.20sw%05ld", prefix, i);
            const struct lcm_worker *w = lcm_store_get(st, "worker", wid);
            struct evbuf b[PER_WORKER + 1];
            struct lcm_store_change ch[PER_WORKER + 1];
            char sid[PER_WORKER][48];
            b[0].n = 0;
            for (int k = 0; k < PER_WORKER; k++) {
                long si = (i * 2 + pass) * PER_WORKER + k;
                snprintf(sid[k], sizeof sid[k], "%.20s%06ld", sp, si);
                if (lcm_worker_cmd_allocate(w, sid[k], &req, "bench", t_now, &ev, &e)) {
                    fprintf(stderr, "allocate: %s\n", e.message);
                    exit(1);
                }
            }
            evs_take(&b[0], &ev);
            lcm_events_clear(&ev);
            ch[0] = (struct lcm_store_change){ &lcm_kind_worker, wid, w->version, b[0].se,
                                               b[0].n, NULL, 0 };
            for (int k = 0; k < PER_WORKER; k++) {
                const struct lcm_session *s = lcm_store_get(st, "session", sid[k]);
                if (lcm_session_cmd_schedule(s, wid, "placed", "bench", t_now, &ev, &e)) {
                    fprintf(stderr, "schedule: %s\n", e.message);
                    exit(1);
                }
                b[k + 1].n = 0;
                evs_take(&b[k + 1], &ev);
                lcm_events_clear(&ev);
                ch[k + 1] = (struct lcm_store_change){ &lcm_kind_session, sid[k], s->version,
                                                       b[k + 1].se, b[k + 1].n, NULL, 0 };
            }
            commit(ch, PER_WORKER + 1, 1);
            evs_done(b, PER_WORKER + 1, &ev);
            /* the next pass reads the worker back from the read model */
            if (i == nw - 1)
                drain(0);
        }
    drain(0);
    return commits ? commit_ns / 1e3 / (double)commits : 0;
}

/* Case 3: n worker.metrics commits spread over the workers of a placement case. */
static double case_metrics(const char *prefix, long nw, long n)
{
    struct lcm_events ev;
    struct lcm_derr e;
    lcm_events_init(&ev);
    commit_ns = 0;
    commits = 0;
    for (long i = 0; i < n; i++) {
        char wid[48];
        snprintf(wid, sizeof wid, "%.20sw%05ld", prefix, i % nw);
        if (i % nw == 0)
            drain(0);   /* each worker's previous commit is installed */
        const struct lcm_worker *w = lcm_store_get(st, "worker", wid);
        if (lcm_worker_cmd_metrics(w, (double)(i % 100), 40.5, t_now, "bench", t_now, &ev, &e))
            exit(1);
        one(&lcm_kind_worker, wid, w->version, &ev, 1);
    }
    drain(0);
    return commits ? commit_ns / 1e3 / (double)commits : 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    int quick = 0, rounds = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strcmp(argv[i], "--case") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
    }
    if (rounds < 1 || rounds > 15)
        rounds = quick ? 3 : 7;
    long n_create = quick ? 2000 : 10000, n_workers = quick ? 50 : 200;
    lcm_log_set_level(LCM_LOG_WARN);
    t_now = (int64_t)time(NULL);
    if (th_redis_start(&srv, "--appendfsync everysec") < 0) {
        fprintf(stderr, "cannot start redis-server\n");
        return 1;
    }
    base = event_base_new();
    struct lcm_redis *r = th_connect(base, srv.url);
    char err[256];
    struct lcm_store_opts o = { .no_follow = 1 };
    st = r ? lcm_store_new(base, r, NULL, &o, err, sizeof(err)) : NULL;
    if (!st) {
        fprintf(stderr, "store: %s\n", r ? err : "no connection");
        return 1;
    }
    seed();
    if (only) {
        double us = 0;
        if (strcmp(only, "create") == 0)
            us = case_create("c-", n_create, 1);
        else if (strcmp(only, "place") == 0)
            us = case_place("p-", n_workers);
        else if (strcmp(only, "metrics") == 0) {
            collect = 0;
            case_place("p-", n_workers);
            collect = 1;
            us = case_metrics("p-", n_workers, n_workers * 20);
        }
        else
            fprintf(stderr, "unknown case %s\n", only);
        printf("{\"bench\":\"store_commit\",\"case\":\"%s\",\"commits\":%ld,\"us\":%.2f}\n",
               only, commits, us);
        lcm_redis_free(r);
        lcm_store_free(st);
        event_base_free(base);
        th_redis_stop(&srv);
        return 0;
    }
    case_create("warm", 500, 1);
    double cr[16], pl[16], me[16];
    for (int i = 0; i < rounds; i++) {
        char p[32];
        snprintf(p, sizeof p, "c%d-", i);
        cr[i] = case_create(p, n_create, 1);
        snprintf(p, sizeof p, "p%d-", i);
        pl[i] = case_place(p, n_workers);
        me[i] = case_metrics(p, n_workers, n_workers * 20);
        fprintf(stderr, "round %d: create %.1f us, placement (1 worker + %d sessions) %.1f us, "
                "worker.metrics %.1f us\n", i + 1, cr[i], PER_WORKER, pl[i], me[i]);
    }
    double crm = median(cr, rounds), plm = median(pl, rounds), mem = median(me, rounds);
    printf("%-60s %10s\n", "lcm_store_commit, time inside the call (median)", "us/commit");
    printf("%-60s %10.1f\n", "session.created (new session)", crm);
    printf("%-60s %10.1f\n", "placement: worker + 10 sessions in one commit", plm);
    printf("%-60s %10.1f\n", "  per placed session", plm / PER_WORKER);
    printf("%-60s %10.1f\n", "worker.metrics on a worker holding 20 sessions", mem);
    printf("{\"bench\":\"store_commit\",\"rounds\":%d,\"create_us\":%.2f,\"placement_us\":%.2f,"
           "\"placement_per_session_us\":%.2f,\"worker_metrics_us\":%.2f}\n",
           rounds, crm, plm, plm / PER_WORKER, mem);
    lcm_redis_free(r);
    lcm_store_free(st);
    event_base_free(base);
    th_redis_stop(&srv);
    return 0;
}
