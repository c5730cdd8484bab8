/* bench_policy: placement evaluations per second over a 32-worker shortlist, the default Lua
 * policy through the engine (sandbox, marshalling, validation) against the same policy built
 * in C, in the same run; plus the cost of one reload and evaluation latency while reloading.
 * Prints a table and one JSON line. Usage: bench_policy [--seconds S] [--dir DIR] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "policy.h"
#include "policy_builtin.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void make_shortlist(struct lcm_policy_worker *ws, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct lcm_policy_worker *w = &ws[i];
        memset(w, 0, sizeof(*w));
        snprintf(w->id, sizeof(w->id), "worker-%02zu-4f1c2a9e", i);
        snprintf(w->region, sizeof(w->region), "eu-west-1");
        snprintf(w->template_name, sizeof(w->template_name), "multi-sessions");
        snprintf(w->status, sizeof(w->status), "running");
        w->license_type = LCM_POLICY_LIC_ENTERPRISE;
        snprintf(w->cml_version, sizeof(w->cml_version), "2.9.1");
        w->declared = (struct lcm_policy_capacity){48, 192, 256, 200};
        double f = (double)((i * 7) % 11) / 11.0;
        w->allocated = (struct lcm_policy_capacity){48 * f, 192 * f * 0.9, 256 * f * 0.5,
                                                    (int64_t)(200 * f * 0.3)};
        w->session_count = (int64_t)(12 * f);
        w->cpu_percent = 100 * f;
        w->memory_percent = 90 * f;
        w->last_activity_at = 1764240000 - (int64_t)i * 60;
        w->status_since = 1764230000;
    }
}

struct rate {
    double per_s;
    double mean_us;
    long long n;
};

static struct rate run_lua(struct lcm_policy_engine *e, struct lcm_policy_gen *g,
                           const struct lcm_policy_placement_in *in, double seconds, int *fallbacks)
{
    long long n = 0;
    double t0 = now_s(), t;
    do {
        for (int k = 0; k < 100; k++) {
            struct lcm_policy_placement_out out;
            struct lcm_policy_eval_info info;
            lcm_policy_place(e, g, in, &out, &info);
            if (info.source != LCM_POLICY_SRC_LUA)
                (*fallbacks)++;
            lcm_policy_placement_out_clear(&out);
        }
        n += 100;
        t = now_s() - t0;
    } while (t < seconds);
    return (struct rate){(double)n / t, t / (double)n * 1e6, n};
}

static struct rate run_c(const struct lcm_policy_placement_in *in, double seconds)
{
    long long n = 0;
    double t0 = now_s(), t;
    do {
        for (int k = 0; k < 1000; k++) {
            struct lcm_policy_placement_out out;
            lcm_policy_builtin_place(in, &out);
            lcm_policy_placement_out_clear(&out);
        }
        n += 1000;
        t = now_s() - t0;
    } while (t < seconds);
    return (struct rate){(double)n / t, t / (double)n * 1e6, n};
}

int main(int argc, char **argv)
{
    double seconds = 1.0;
    const char *dir = LCM_DEFAULT_POLICY_DIR;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--seconds S] [--dir POLICY_DIR]\n", argv[0]);
            return 2;
        }
    }
    char err[512];
    lcm_log_set_level(LCM_LOG_WARN); /* one "policy loaded" line per reload otherwise */
    struct lcm_policy_config cfg = {.dir = dir};
    struct lcm_policy_engine *e = lcm_policy_engine_new(&cfg, err, sizeof(err));
    if (!e) {
        fprintf(stderr, "engine: %s\n", err);
        return 1;
    }
    struct lcm_policy_gen *g = lcm_policy_pin(e, LCM_POLICY_PLACEMENT);
    if (!g) {
        fprintf(stderr, "placement policy did not load from %s\n", dir);
        lcm_policy_engine_free(e);
        return 1;
    }
    lcm_policy_unpin(g);

    enum { N = 32 };
    struct lcm_policy_worker ws[N];
    make_shortlist(ws, N);
    struct lcm_policy_placement_in in = {.session_id = "bench-session", .workers = ws,
                                         .n_workers = N, .now = 1764240000};
    in.req = (struct lcm_policy_requirements){.definition_id = "bench-def", .cpu_cores = 4,
                                              .memory_gb = 8, .storage_gb = 50, .node_count = 3};

    /* Same answers first: the benchmark compares like with like. */
    struct lcm_policy_placement_out a, b;
    struct lcm_policy_eval_info info;
    lcm_policy_place(e, NULL, &in, &a, &info);
    lcm_policy_builtin_place(&in, &b);
    int same = a.n == b.n && info.source == LCM_POLICY_SRC_LUA;
    for (size_t i = 0; same && i < a.n; i++)
        same = !strcmp(a.ranks[i].worker_id, b.ranks[i].worker_id);
    lcm_policy_placement_out_clear(&a);
    lcm_policy_placement_out_clear(&b);

    int fallbacks = 0;
    run_lua(e, NULL, &in, seconds / 10, &fallbacks); /* warm-up */
    struct rate lua = run_lua(e, NULL, &in, seconds, &fallbacks);
    g = lcm_policy_pin(e, LCM_POLICY_PLACEMENT);
    struct rate lua_pinned = run_lua(e, g, &in, seconds, &fallbacks);
    lcm_policy_unpin(g);
    run_c(&in, seconds / 10);
    struct rate c = run_c(&in, seconds);

    /* Reload cost: read + hash + new VM + load + fixtures + swap, forced each time. */
    enum { R = 50 };
    double rl[R];
    for (int i = 0; i < R; i++) {
        double t0 = now_s();
        if (lcm_policy_reload(e, LCM_POLICY_PLACEMENT, 1, err, sizeof(err)) != 1) {
            fprintf(stderr, "reload failed: %s\n", err);
            return 1;
        }
        rl[i] = (now_s() - t0) * 1e3;
    }
    qsort(rl, R, sizeof(rl[0]), cmp_double);
    double rl_mean = 0;
    for (int i = 0; i < R; i++)
        rl_mean += rl[i] / R;
    double t0 = now_s();
    lcm_policy_reload_all(e, 1, err, sizeof(err));
    double reload_all_ms = (now_s() - t0) * 1e3;

    /* Evaluation latency while reloading every 100 evaluations (the loop does both). */
    enum { M = 5000 };
    static double lat[M];
    double worst_reload = 0;
    for (int i = 0; i < M; i++) {
        if (i % 100 == 99) {
            double r0 = now_s();
            lcm_policy_reload(e, LCM_POLICY_PLACEMENT, 1, err, sizeof(err));
            double r = (now_s() - r0) * 1e3;
            if (r > worst_reload)
                worst_reload = r;
        }
        double s0 = now_s();
        struct lcm_policy_placement_out out;
        lcm_policy_place(e, NULL, &in, &out, &info);
        if (info.source != LCM_POLICY_SRC_LUA)
            fallbacks++;
        lcm_policy_placement_out_clear(&out);
        lat[i] = (now_s() - s0) * 1e6;
    }
    qsort(lat, M, sizeof(lat[0]), cmp_double);

    double ratio = c.per_s / lua.per_s;
    printf("policy benchmark: placement over a %d-worker shortlist (%.1f s per side)\n", N, seconds);
    printf("  %-34s %14s %12s\n", "implementation", "evals/s", "us/eval");
    printf("  %-34s %14.0f %12.2f\n", "lua (engine, pin per call)", lua.per_s, lua.mean_us);
    printf("  %-34s %14.0f %12.2f\n", "lua (engine, generation pinned)", lua_pinned.per_s,
           lua_pinned.mean_us);
    printf("  %-34s %14.0f %12.2f\n", "c built-in (same policy)", c.per_s, c.mean_us);
    printf("  %-34s %14.1fx\n", "c / lua", ratio);
    printf("  reload (placement, forced): mean %.3f ms, p50 %.3f ms, max %.3f ms (n=%d)\n", rl_mean,
           rl[R / 2], rl[R - 1], R);
    printf("  reload all three (forced): %.3f ms\n", reload_all_ms);
    printf("  eval latency while reloading every 100 evals: p50 %.1f us, p99 %.1f us, max %.1f us;"
           " worst reload %.3f ms\n",
           lat[M / 2], lat[M * 99 / 100], lat[M - 1], worst_reload);
    printf("  same ranking lua vs c: %s; fallbacks during the run: %d\n", same ? "yes" : "NO",
           fallbacks);
    printf("{\"bench\":\"policy\",\"shortlist\":%d,\"lua_evals_per_s\":%.0f,"
           "\"lua_pinned_evals_per_s\":%.0f,\"c_evals_per_s\":%.0f,\"c_over_lua\":%.2f,"
           "\"lua_us_per_eval\":%.3f,\"c_us_per_eval\":%.3f,\"reload_ms_mean\":%.3f,"
           "\"reload_ms_p50\":%.3f,\"reload_ms_max\":%.3f,\"reload_all_ms\":%.3f,"
           "\"eval_during_reload_p99_us\":%.1f,\"eval_during_reload_max_us\":%.1f,"
           "\"same_ranking\":%s,\"fallbacks\":%d}\n",
           N, lua.per_s, lua_pinned.per_s, c.per_s, ratio, lua.mean_us, c.mean_us, rl_mean,
           rl[R / 2], rl[R - 1], reload_all_ms, lat[M * 99 / 100], lat[M - 1],
           same ? "true" : "false", fallbacks);
    lcm_policy_engine_free(e);
    return same && fallbacks == 0 ? 0 : 1;
}
