/* Store benchmark: events appended per second through lcm_store_append (one event per atomic
 * append, hash + index + feed updated) vs raw pipelined XADD of the same entry, both against
 * the same private redis-server in the same run, alternated over several rounds (medians, so
 * that a machine shared with other work skews both sides alike), with Redis's own CPU time per
 * event; then rebuild time for 100k and 1M events. In the same rounds it measures the floor of
 * the layout (layout_floor.lua: only the writes the layout requires per event, no checks) as a
 * Redis Function, as the same function with one feed entry per call, and as the same commands
 * sent raw and pipelined without any function: what any implementation of the layout can reach
 * on this Redis. Prints a table and one JSON object (last line).
 * Usage: bench_store [--quick] [--rounds N] */
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/log.h"
#include "core/redis.h"
#include "harness.h"
#include "store/store.h"
#include "testkind.h"

#define DATA "{\"status\":\"running\",\"worker_id\":\"w-0001\",\"reason\":\"benchmark\"}"
#define WINDOW 512

static struct event_base *base;
static struct th_redis srv;

/* Redis main-thread CPU seconds so far (INFO cpu), or -1. */
static double redis_cpu(void)
{
    redisContext *c = th_sync(&srv);
    redisReply *r = c ? redisCommand(c, "INFO cpu") : NULL;
    double u = -1, sy = -1;
    if (r && r->type == REDIS_REPLY_STRING) {
        const char *a = strstr(r->str, "used_cpu_user_main_thread:");
        const char *b = strstr(r->str, "used_cpu_sys_main_thread:");
        if (a && b) {
            u = atof(a + strlen("used_cpu_user_main_thread:"));
            sy = atof(b + strlen("used_cpu_sys_main_thread:"));
        }
    }
    freeReplyObject(r);
    redisFree(c);
    return u < 0 ? -1 : u + sy;
}

static long fcall_calls(void)
{
    redisContext *c = th_sync(&srv);
    redisReply *r = c ? redisCommand(c, "INFO commandstats") : NULL;
    long n = 0;
    const char *f = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "cmdstat_fcall:calls=")
                                                       : NULL;
    if (f)
        n = atol(f + strlen("cmdstat_fcall:calls="));
    freeReplyObject(r);
    redisFree(c);
    return n;
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

/* ---- raw pipelined XADD ------------------------------------------------------------ */

static double bench_raw(long n)
{
    redisContext *c = th_sync(&srv);
    double t0 = th_now_ms();
    long sent = 0, got = 0;
    while (got < n) {
        while (sent < n && sent - got < WINDOW) {
            char v[24];
            snprintf(v, sizeof(v), "%ld", sent + 1);
            redisAppendCommand(c, "XADD bench:raw * type note.set version %s at "
                               "2025-01-01T00:00:00.000Z by bench data %s", v, DATA);
            sent++;
        }
        void *r;
        if (redisGetReply(c, &r) != REDIS_OK) {
            fprintf(stderr, "raw XADD failed\n");
            exit(1);
        }
        freeReplyObject(r);
        got++;
    }
    double ms = th_now_ms() - t0;
    freeReplyObject(redisCommand(c, "DEL bench:raw"));
    redisFree(c);
    return (double)n / (ms / 1000.0);
}

/* ---- store appends ------------------------------------------------------------------ */

struct app {
    struct lcm_store *s;
    long n, sent, done, failed;
    int naggs, events_per;
    uint64_t *ver;
    char prefix[16];
};

static void app_next(struct app *a);

static void app_done(const struct lcm_store_result *r, void *ud)
{
    struct app *a = ud;
    a->done++;
    if (r->status != LCM_STORE_OK && a->failed++ < 3)
        fprintf(stderr, "append failed: %s %s\n", lcm_store_strerror(r->status), r->message);
    app_next(a);
}

static void app_next(struct app *a)
{
    while (a->sent < a->n && a->sent - a->done < WINDOW) {
        int i = (int)(a->sent % a->naggs);
        char id[32], st[32], data[160];
        snprintf(id, sizeof(id), "%s%d", a->prefix, i);
        uint64_t v = a->ver[i];
        snprintf(st, sizeof(st), "lcm:idx:note:status:s%" PRIu64, (v + 1) % 4);
        char old[32];
        snprintf(old, sizeof(old), "lcm:idx:note:status:s%" PRIu64, v % 4);
        struct lcm_store_event ev[16];
        for (int e = 0; e < a->events_per; e++) {
            snprintf(data, sizeof(data), "{\"status\":\"s%" PRIu64 "\",\"n\":\"%" PRIu64 "\"}",
                     (v + 1) % 4, v + 1);
            ev[e] = (struct lcm_store_event){ "note.set", a->events_per == 1 ? DATA : "{\"k\":\"v\"}",
                                              "2025-01-01T00:00:00.000Z", "bench" };
        }
        char sv[8], nv[24];
        snprintf(sv, sizeof(sv), "s%" PRIu64, (v + a->events_per) % 4);
        snprintf(nv, sizeof(nv), "%" PRIu64, v + (uint64_t)a->events_per);
        struct lcm_store_field f[2] = { { "status", sv }, { "n", nv } };
        struct lcm_store_index_op ix[2] = { { old, 0, 1, 0, NULL, 0 }, { st, 0, 0, 0, NULL, 0 } };
        struct lcm_store_write w = { "note", id, v, ev, (size_t)a->events_per, f, 2,
                                     ix, v ? 2 : 1, NULL, 0 };
        if (!v)
            w.indexes = &ix[1];
        if (lcm_store_append(a->s, &w, 1, NULL, app_done, a) < 0) {
            fprintf(stderr, "append not sent\n");
            exit(1);
        }
        a->ver[i] += (uint64_t)a->events_per;
        a->sent++;
    }
}

static double run_appends(struct lcm_store *s, const char *prefix, long appends, int naggs,
                          int events_per)
{
    struct app a = { .s = s, .n = appends, .naggs = naggs, .events_per = events_per };
    snprintf(a.prefix, sizeof(a.prefix), "%s", prefix);
    a.ver = calloc((size_t)naggs, sizeof(*a.ver));
    double t0 = th_now_ms();
    app_next(&a);
    while (a.done < a.n)
        event_base_loop(base, EVLOOP_ONCE);
    double ms = th_now_ms() - t0;
    free(a.ver);
    if (a.failed) {
        fprintf(stderr, "%ld appends failed\n", a.failed);
        exit(1);
    }
    return (double)appends * events_per / (ms / 1000.0);
}

/* ---- the layout floor ----------------------------------------------------------------- */

#define FLOOR_PER_CALL 128
#define FLOOR_AGGS 1000

static void load_floor(void)
{
    FILE *f = fopen(LCM_BENCH_FLOOR_LUA, "r");
    static char src[8192];
    size_t n = f ? fread(src, 1, sizeof(src) - 1, f) : 0;
    if (f)
        fclose(f);
    if (n == 0) {
        fprintf(stderr, "cannot read %s\n", LCM_BENCH_FLOOR_LUA);
        exit(1);
    }
    src[n] = 0;
    redisContext *c = th_sync(&srv);
    redisReply *r = c ? redisCommand(c, "FUNCTION LOAD REPLACE %s", src) : NULL;
    if (!r || r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "FUNCTION LOAD layout_floor.lua: %s\n", r ? r->str : "no connection");
        exit(1);
    }
    freeReplyObject(r);
    redisFree(c);
}

/* Per event of the floor: the keys and arguments of one note.set on aggregate i. */
struct floor_ev {
    char hk[48], ek[56], from[40], to[40], v[24], st[8];
};

static void floor_event(struct floor_ev *e, const char *prefix, int i, uint64_t *ver)
{
    uint64_t v = ver[i]++;
    snprintf(e->hk, sizeof(e->hk), "lcm:{note:%s%d}", prefix, i);
    snprintf(e->ek, sizeof(e->ek), "%s:events", e->hk);
    snprintf(e->from, sizeof(e->from), "lcm:idx:note:status:s%" PRIu64, v % 4);
    snprintf(e->to, sizeof(e->to), "lcm:idx:note:status:s%" PRIu64, (v + 1) % 4);
    snprintf(e->v, sizeof(e->v), "%" PRIu64, v + 1);
    snprintf(e->st, sizeof(e->st), "s%" PRIu64, (v + 1) % 4);
}

static void expect_ok(redisContext *c, const char *what)
{
    redisReply *r;
    if (redisGetReply(c, (void **)&r) != REDIS_OK || r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "%s failed: %s\n", what, r ? r->str : c->errstr);
        exit(1);
    }
    freeReplyObject(r);
}

/* The floor as one Redis Function call per FLOOR_PER_CALL events (as lcm_append's group
 * commit), four calls in flight. Events per second. */
static double bench_floor_fcall(const char *fn, const char *prefix, long n)
{
    redisContext *c = th_sync(&srv);
    uint64_t *ver = calloc(FLOOR_AGGS, sizeof(*ver));
    struct floor_ev ev[FLOOR_PER_CALL];
    const char *argv[3 + 7 * FLOOR_PER_CALL + 1];
    size_t argl[3 + 7 * FLOOR_PER_CALL + 1];
    char nk[16];
    long calls = n / FLOOR_PER_CALL, sent = 0, got = 0, at = 0;
    double t0 = th_now_ms();
    while (got < calls) {
        while (sent < calls && sent - got < 4) {
            int a = 0;
            argv[a++] = "FCALL";
            argv[a++] = fn;
            snprintf(nk, sizeof(nk), "%d", 4 * FLOOR_PER_CALL + 1);
            argv[a++] = nk;
            for (int j = 0; j < FLOOR_PER_CALL; j++) {
                floor_event(&ev[j], prefix, (int)(at++ % FLOOR_AGGS), ver);
                argv[a++] = ev[j].hk;
                argv[a++] = ev[j].ek;
                argv[a++] = ev[j].from;
                argv[a++] = ev[j].to;
            }
            argv[a++] = "lcm:feed";
            for (int j = 0; j < FLOOR_PER_CALL; j++) {
                argv[a++] = ev[j].v;
                argv[a++] = ev[j].st;
                argv[a++] = DATA;
            }
            for (int k = 0; k < a; k++)
                argl[k] = strlen(argv[k]);
            redisAppendCommandArgv(c, a, argv, argl);
            sent++;
        }
        expect_ok(c, fn);
        got++;
    }
    double ms = th_now_ms() - t0;
    free(ver);
    redisFree(c);
    return (double)(calls * FLOOR_PER_CALL) / (ms / 1000.0);
}

/* The floor as plain commands, pipelined (no function, no atomicity): five per event. */
static double bench_floor_raw(const char *prefix, long n)
{
    redisContext *c = th_sync(&srv);
    uint64_t *ver = calloc(FLOOR_AGGS, sizeof(*ver));
    long sent = 0, got = 0;
    double t0 = th_now_ms();
    while (got < n) {
        while (sent < n && sent - got < WINDOW) {
            struct floor_ev e;
            floor_event(&e, prefix, (int)(sent % FLOOR_AGGS), ver);
            redisAppendCommand(c, "HGET %s version", e.hk);
            redisAppendCommand(c, "XADD %s * type note.set version %s at "
                               "2025-01-01T00:00:00.000Z by bench data %s", e.ek, e.v, DATA);
            redisAppendCommand(c, "XADD lcm:feed * kind note id %s type note.set version %s "
                               "at 2025-01-01T00:00:00.000Z by bench data %s", e.hk, e.v, DATA);
            redisAppendCommand(c, "HSET %s version %s status %s n %s", e.hk, e.v, e.st, e.v);
            redisAppendCommand(c, "SMOVE %s %s %s", e.from, e.to, e.hk);
            sent++;
        }
        for (int k = 0; k < 5; k++)
            expect_ok(c, "floor command");
        got++;
    }
    double ms = th_now_ms() - t0;
    free(ver);
    redisFree(c);
    return (double)n / (ms / 1000.0);
}

/* ---- rebuild ------------------------------------------------------------------------ */

static int rb_flag;
static struct lcm_store_rebuild_stats rb_st;
static void rb_done(struct lcm_store *s, int status, const struct lcm_store_rebuild_stats *st,
                    void *ud)
{
    (void)s;
    (void)ud;
    rb_st = *st;
    rb_flag = status == 0 ? 1 : -1;
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds of the last rebuild: Redis's main thread and this process. */
static double rb_redis_cpu, rb_self_cpu;

static double bench_rebuild(struct lcm_store *s, long events, size_t *aggs)
{
    redisContext *c = th_sync(&srv);
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    /* 10 events per aggregate, written 10 per atomic append */
    int naggs = (int)(events / 10);
    run_appends(s, "r", naggs, naggs, 10);
    redisReply *r = redisCommand(c, "DBSIZE");
    fprintf(stderr, "populated %ld events, %lld keys\n", events, r->integer);
    freeReplyObject(r);
    redisFree(c);
    rb_flag = 0;
    double c0 = redis_cpu(), u0 = self_cpu();
    if (lcm_store_rebuild(s, rb_done, NULL) < 0)
        exit(1);
    th_run_until(base, &rb_flag, 600000);
    rb_redis_cpu = redis_cpu() - c0;
    rb_self_cpu = self_cpu() - u0;
    if (rb_flag != 1 || rb_st.events != (size_t)events) {
        fprintf(stderr, "rebuild failed: events=%zu\n", rb_st.events);
        exit(1);
    }
    *aggs = rb_st.aggregates;
    return rb_st.seconds;
}

int main(int argc, char **argv)
{
    int quick = 0, rounds = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
    }
    if (rounds < 1 || rounds > 15)
        rounds = quick ? 1 : 3;
    long n_append = quick ? 20000 : 200000;
    long rb_big = quick ? 100000 : 1000000;
    lcm_log_set_level(LCM_LOG_WARN);
    if (th_redis_start(&srv, "--appendfsync everysec") < 0) {
        fprintf(stderr, "cannot start redis-server\n");
        return 1;
    }
    base = event_base_new();
    struct lcm_redis *r = th_connect(base, srv.url);
    char err[256];
    struct lcm_store_opts o = { .kinds = lcm_test_kinds, .no_follow = 1 };
    struct lcm_store *s = r ? lcm_store_new(base, r, NULL, &o, err, sizeof(err)) : NULL;
    if (!s) {
        fprintf(stderr, "store: %s\n", r ? err : "no connection");
        return 1;
    }
    /* warm up (loads the function, allocates) */
    run_appends(s, "warm", 2000, 100, 1);
    load_floor();
    /* raw, store, floors, raw, store, floors, …, raw: each round between two raw ones */
    enum { F_FN, F_FEED1, F_RAW, NFLOOR };
    static const char *const floor_name[NFLOOR] = {
        "layout floor as a Redis Function", "same, one feed entry per call",
        "same commands raw, pipelined, no function" };
    static const char *const floor_key[NFLOOR] = { "floor_function", "floor_feed1",
                                                   "floor_raw" };
    double raw[16], store[16], ratio[16], raw_cpu[16], store_cpu[16];
    double fl[NFLOOR][16], fl_ratio[NFLOOR][16], fl_cpu[NFLOOR][16];
    long fc0 = fcall_calls(), fc_floor = 0;
    for (int i = 0; i <= rounds; i++) {
        double c0 = redis_cpu();
        raw[i] = bench_raw(n_append);
        raw_cpu[i] = (redis_cpu() - c0) * 1e6 / (double)n_append;
        if (i == rounds)
            break;
        char prefix[16];
        snprintf(prefix, sizeof(prefix), "a%d_", i);
        c0 = redis_cpu();
        store[i] = run_appends(s, prefix, n_append, 1000, 1);
        store_cpu[i] = (redis_cpu() - c0) * 1e6 / (double)n_append;
        for (int f = 0; f < NFLOOR; f++) {
            snprintf(prefix, sizeof(prefix), "f%d_%d_", f, i);
            long f0 = fcall_calls();
            c0 = redis_cpu();
            fl[f][i] = f == F_RAW ? bench_floor_raw(prefix, n_append)
                                  : bench_floor_fcall(f == F_FN ? "lcm_bench_floor"
                                                                : "lcm_bench_floor_feed1",
                                                      prefix, n_append);
            fl_cpu[f][i] = (redis_cpu() - c0) * 1e6 / (double)n_append;
            fc_floor += fcall_calls() - f0;
        }
    }
    double appends_per_fcall = (double)(n_append * rounds) / (double)(fcall_calls() - fc0 -
                                                                      fc_floor);
    for (int i = 0; i < rounds; i++) {
        ratio[i] = store[i] / ((raw[i] + raw[i + 1]) / 2);
        for (int f = 0; f < NFLOOR; f++)
            fl_ratio[f][i] = fl[f][i] / ((raw[i] + raw[i + 1]) / 2);
    }
    if (getenv("BENCH_STORE_STATS")) {
        redisContext *c = th_sync(&srv);
        redisReply *st = redisCommand(c, "INFO commandstats");
        fprintf(stderr, "%s\n", st->str);
        freeReplyObject(st);
        redisFree(c);
    }
    double fl_m[NFLOOR], fl_ratio_m[NFLOOR], fl_cpu_m[NFLOOR];
    for (int f = 0; f < NFLOOR; f++) {
        fl_m[f] = median(fl[f], rounds);
        fl_ratio_m[f] = median(fl_ratio[f], rounds);
        fl_cpu_m[f] = median(fl_cpu[f], rounds);
    }
    double raw_m = median(raw, rounds + 1), store_m = median(store, rounds);
    double ratio_m = median(ratio, rounds);
    double raw_cpu_m = median(raw_cpu, rounds + 1), store_cpu_m = median(store_cpu, rounds);
    size_t aggs100k = 0, aggs1m = 0;
    double rb100k = bench_rebuild(s, 100000, &aggs100k);
    double rb1m = bench_rebuild(s, rb_big, &aggs1m);
    double rb_rcpu = rb_redis_cpu, rb_ccpu = rb_self_cpu;

    printf("%-52s %14s\n", "measure", "value");
    printf("%-52s %14.0f\n", "raw pipelined XADD (events/s, median)", raw_m);
    printf("%-52s %14.0f\n", "lcm_store_append, 1 event/append (events/s, median)", store_m);
    printf("%-52s %14.3f\n", "ratio store/raw (median of rounds, aim >= 0.35)", ratio_m);
    printf("%-52s %14.2f\n", "Redis CPU per raw XADD (us)", raw_cpu_m);
    printf("%-52s %14.2f\n", "Redis CPU per store event (us)", store_cpu_m);
    printf("%-52s %14.1f\n", "appends per FCALL (group commit)", appends_per_fcall);
    for (int f = 0; f < NFLOOR; f++) {
        printf("%-52s %14.0f\n", floor_name[f], fl_m[f]);
        printf("%-52s %14.3f\n", "  ratio to raw XADD (median of rounds)", fl_ratio_m[f]);
        printf("%-52s %14.2f\n", "  Redis CPU per event (us)", fl_cpu_m[f]);
    }
    printf("%-52s %14.3f\n", "rebuild 100k events (s)", rb100k);
    printf("%-52s %14.3f\n", quick ? "rebuild 100k events again (s)" : "rebuild 1M events (s, aim <= 2.5)", rb1m);
    printf("%-52s %14.3f\n", "  of which Redis CPU / lcmd-side CPU (s)", rb_rcpu);
    printf("%-52s %14.3f\n", "", rb_ccpu);
    printf("{\"bench\":\"store\",\"appends\":%ld,\"rounds\":%d,\"raw_xadd_eps\":%.0f,"
           "\"store_append_eps\":%.0f,\"ratio\":%.3f,\"ratios\":[",
           n_append, rounds, raw_m, store_m, ratio_m);
    for (int i = 0; i < rounds; i++)
        printf("%s%.3f", i ? "," : "", ratio[i]);
    printf("],\"redis_cpu_us_per_raw_xadd\":%.2f,\"redis_cpu_us_per_store_event\":%.2f,"
           "\"appends_per_fcall\":%.1f,\"rebuild_100k_s\":%.3f,\"rebuild_100k_aggregates\":%zu,"
           "\"rebuild_big_events\":%ld,\"rebuild_big_s\":%.3f,\"rebuild_big_aggregates\":%zu,"
           "\"rebuild_big_redis_cpu_s\":%.3f,\"rebuild_big_client_cpu_s\":%.3f",
           raw_cpu_m, store_cpu_m, appends_per_fcall, rb100k, aggs100k, rb_big, rb1m, aggs1m,
           rb_rcpu, rb_ccpu);
    for (int f = 0; f < NFLOOR; f++)
        printf(",\"%s_eps\":%.0f,\"%s_ratio\":%.3f,\"%s_redis_cpu_us\":%.2f", floor_key[f],
               fl_m[f], floor_key[f], fl_ratio_m[f], floor_key[f], fl_cpu_m[f]);
    printf("}\n");
    lcm_redis_free(r);
    lcm_store_free(s);
    event_base_free(base);
    th_redis_stop(&srv);
    return 0;
}
