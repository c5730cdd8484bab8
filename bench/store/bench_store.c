/* Store benchmark: events appended per second through lcm_store_append (one event per atomic
 * append, hash + index + feed updated) vs raw pipelined XADD of the same entry, both against
 * the same private redis-server in the same run; then rebuild time for 100k and 1M events.
 * Prints a table and one JSON object (last line). Usage: bench_store [--quick] */
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/redis.h"
#include "harness.h"
#include "store/store.h"
#include "testkind.h"

#define DATA "{\"status\":\"running\",\"worker_id\":\"w-0001\",\"reason\":\"benchmark\"}"
#define WINDOW 512

static struct event_base *base;
static struct th_redis srv;

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
    if (lcm_store_rebuild(s, rb_done, NULL) < 0)
        exit(1);
    th_run_until(base, &rb_flag, 600000);
    if (rb_flag != 1 || rb_st.events != (size_t)events) {
        fprintf(stderr, "rebuild failed: events=%zu\n", rb_st.events);
        exit(1);
    }
    *aggs = rb_st.aggregates;
    return rb_st.seconds;
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
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
    double raw = bench_raw(n_append);
    double store = run_appends(s, "a", n_append, 1000, 1);
    if (getenv("BENCH_STORE_STATS")) {
        redisContext *c = th_sync(&srv);
        redisReply *st = redisCommand(c, "INFO commandstats");
        fprintf(stderr, "%s\n", st->str);
        freeReplyObject(st);
        redisFree(c);
    }
    double raw2 = bench_raw(n_append);   /* again, so that drift shows */
    double raw_avg = (raw + raw2) / 2;
    size_t aggs100k = 0, aggs1m = 0;
    double rb100k = bench_rebuild(s, 100000, &aggs100k);
    double rb1m = bench_rebuild(s, rb_big, &aggs1m);

    printf("%-44s %14s\n", "measure", "value");
    printf("%-44s %14.0f\n", "raw pipelined XADD (events/s)", raw_avg);
    printf("%-44s %14.0f\n", "lcm_store_append, 1 event/append (events/s)", store);
    printf("%-44s %14.3f\n", "ratio store/raw (aim >= 0.35)", store / raw_avg);
    printf("%-44s %14.3f\n", "rebuild 100k events (s)", rb100k);
    printf("%-44s %14.3f\n", quick ? "rebuild 100k events again (s)" : "rebuild 1M events (s, aim <= 2.5)", rb1m);
    printf("{\"bench\":\"store\",\"appends\":%ld,\"raw_xadd_eps\":%.0f,\"store_append_eps\":%.0f,"
           "\"ratio\":%.3f,\"rebuild_100k_s\":%.3f,\"rebuild_100k_aggregates\":%zu,"
           "\"rebuild_big_events\":%ld,\"rebuild_big_s\":%.3f,\"rebuild_big_aggregates\":%zu}\n",
           n_append, raw_avg, store, store / raw_avg, rb100k, aggs100k, rb_big, rb1m, aggs1m);
    lcm_redis_free(r);
    lcm_store_free(s);
    event_base_free(base);
    th_redis_stop(&srv);
    return 0;
}
