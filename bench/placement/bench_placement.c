/* Placement benchmark: 1,000 running workers and 10,000 pending sessions (four definitions)
 * in a private redis-server; the scheduler places every session and commits each placement
 * (session.scheduled + worker.allocated, one atomic write per worker) through the event
 * store. Run twice in one process on identical data: placement.lua through the policy engine,
 * then the built-in C policy (the same ranking). Prints placements/s for both and the ratio,
 * as a table and as JSON. Usage: bench_placement [--quick] [--workers N] [--sessions N]
 * [--shortlist N] [--budget-ms N]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "core/log.h"
#include "core/redis.h"
#include "ctl/scheduler.h"
#include "domain/definition.h"
#include "domain/session.h"
#include "domain/session_time.h"
#include "domain/template.h"
#include "domain/worker.h"
#include "harness.h"
#include "policy/policy.h"
#include "store/store.h"

static struct event_base *base;
static struct th_redis srv;
static long pending_commits;
static int commit_failed;

static void seed_done(const struct lcm_store_result *res, void *ud)
{
    (void)ud;
    pending_commits--;
    if (res->status != LCM_STORE_OK) {
        fprintf(stderr, "seed commit failed: %s %s\n", lcm_store_strerror(res->status), res->message);
        commit_failed = 1;
    }
}

/* Commits the events of evs on one aggregate (expected version ver). */
static void commit_events(struct lcm_store *st, const struct lcm_kind *k, const char *id, uint64_t ver,
                          struct lcm_events *evs)
{
    struct lcm_store_event se[16];
    char *js[16] = { 0 };
    size_t n = evs->n;
    for (size_t i = 0; i < n && i < 16; i++) {
        js[i] = cJSON_PrintUnformatted(evs->v[i].data);
        se[i] = (struct lcm_store_event){ evs->v[i].type, js[i], NULL, "bench" };
    }
    struct lcm_store_change ch = { k, id, ver, se, n, NULL, 0 };
    char err[256];
    if (lcm_store_commit(st, &ch, 1, NULL, seed_done, NULL, err, sizeof err) < 0) {
        fprintf(stderr, "seed %s %s: %s\n", k->name, id, err);
        exit(1);
    }
    pending_commits++;
    for (size_t i = 0; i < n && i < 16; i++)
        cJSON_free(js[i]);
    lcm_events_clear(evs);
}

static void drain(void)
{
    while (pending_commits > 0)
        event_base_loop(base, EVLOOP_ONCE);
    if (commit_failed)
        exit(1);
}

/* Runs a command on a fresh state copy: events of one command are applied to *w so the next
 * command validates against the folded state; they are appended to all. */
static void fold(struct lcm_worker *w, struct lcm_events *one, struct lcm_events *all)
{
    char err[200];
    if (lcm_events_apply(&lcm_kind_worker, w, one, err, sizeof err) < 0) {
        fprintf(stderr, "fold: %s\n", err);
        exit(1);
    }
    w->version += 0;
    for (size_t i = 0; i < one->n; i++) {
        lcm_events_add(all, one->v[i].type, cJSON_Duplicate(one->v[i].data, 1), one->v[i].at, one->v[i].by);
    }
    lcm_events_clear(one);
}

static const struct { const char *id; int cpu, mem, st, nodes; } DEFS[] = {
    { "def-small", 2, 4, 10, 2 }, { "def-medium", 4, 8, 20, 3 },
    { "def-memory", 4, 16, 20, 4 }, { "def-large", 6, 16, 30, 6 },
};

static void seed(struct lcm_store *st, int nworkers, int nsessions)
{
    int64_t now = (int64_t)time(NULL);
    struct lcm_events ev, all;
    lcm_events_init(&ev);
    lcm_events_init(&all);
    struct lcm_derr e;
    cJSON *tb = cJSON_Parse("{\"name\":\"multi\",\"instance_type\":\"m5zn.metal\",\"ami_name_pattern\":\"cml\","
                            "\"capacity\":{\"cpu_cores\":48,\"memory_gb\":192,\"storage_gb\":256,\"max_nodes\":200},"
                            "\"cost_per_hour\":3.96,\"enabled\":true,\"region\":\"eu-west-1\",\"license_type\":\"enterprise\"}");
    if (lcm_template_cmd_create(tb, "bench", now, &ev, &e))
        exit(1);
    commit_events(st, &lcm_kind_template, "multi", 0, &ev);
    cJSON_Delete(tb);
    for (size_t d = 0; d < 4; d++) {
        char body[512];
        snprintf(body, sizeof body,
                 "{\"name\":\"%s\",\"version\":\"1.0.0\",\"topology_uri\":\"s3://b/%s.yaml\",\"node_count\":%d,"
                 "\"resource_requirements\":{\"cpu_cores\":%d,\"memory_gb\":%d,\"storage_gb\":%d,"
                 "\"cml_version_min\":\"2.9.0\",\"node_definitions\":[\"iosv\"]},\"lds_enabled\":false}",
                 DEFS[d].id, DEFS[d].id, DEFS[d].nodes, DEFS[d].cpu, DEFS[d].mem, DEFS[d].st);
        cJSON *b = cJSON_Parse(body);
        if (lcm_definition_cmd_create(DEFS[d].id, b, "bench", now, &ev, &e)) {
            fprintf(stderr, "definition: %s\n", e.message);
            exit(1);
        }
        cJSON_Delete(b);
        commit_events(st, &lcm_kind_definition, DEFS[d].id, 0, &ev);
    }
    drain();
    for (size_t d = 0; d < 4; d++) {
        const struct lcm_definition *def = lcm_store_get(st, "definition", DEFS[d].id);
        if (lcm_definition_cmd_transition(def, LCM_DEF_ACTIVE, "bench", "bench", now, &ev, &e))
            exit(1);
        commit_events(st, &lcm_kind_definition, DEFS[d].id, def->version, &ev);
    }
    const struct lcm_template *tpl = lcm_store_get(st, "template", "multi");
    const char *nds[] = { "iosv", "csr1000v" };
    for (int i = 0; i < nworkers; i++) {
        char id[32];
        snprintf(id, sizeof id, "w-%05d", i);
        struct lcm_worker *w = lcm_worker_new(id);
        struct lcm_worker_create c = { .id = id, .region = "eu-west-1", .origin = LCM_ORIGIN_MANUAL };
        if (lcm_worker_cmd_create(&c, tpl, "bench", now, &ev, &e))
            exit(1);
        fold(w, &ev, &all);
        static const int path[] = { LCM_WK_PROVISIONING, LCM_WK_STARTING, LCM_WK_RUNNING };
        for (int p = 0; p < 3; p++) {
            if (lcm_worker_cmd_transition(w, path[p], "bench", "bench", now, &ev, &e))
                exit(1);
            fold(w, &ev, &all);
        }
        if (lcm_worker_cmd_set_cml(w, "2.9.1", 1, nds, 2, "bench", now, &ev, &e))
            exit(1);
        fold(w, &ev, &all);
        commit_events(st, &lcm_kind_worker, id, 0, &all);
        lcm_worker_free(w);
        if (pending_commits > 2000)
            drain();
    }
    drain();
    struct lcm_time_params tp;
    lcm_time_params_default(&tp);
    for (int i = 0; i < nsessions; i++) {
        char id[32];
        snprintf(id, sizeof id, "s-%06d", i);
        const struct lcm_definition *def = lcm_store_get(st, "definition", DEFS[i % 4].id);
        struct lcm_session_create c = { .id = id, .definition_id = DEFS[i % 4].id, .owner = "bench" };
        if (lcm_session_cmd_create(&c, def, &tp, "bench", now, &ev, &e)) {
            fprintf(stderr, "session: %s\n", e.message);
            exit(1);
        }
        commit_events(st, &lcm_kind_session, id, 0, &ev);
        if (pending_commits > 2000)
            drain();
    }
    drain();
}

static int store_commit(void *ud, const struct lcm_store_change *ch, size_t n, lcm_store_done_fn done,
                        void *dud, char *err, size_t errlen)
{
    return lcm_store_commit(ud, ch, n, NULL, done, dud, err, errlen);
}

static int woken;
static void wake(void *ud)
{
    (void)ud;
    woken = 1;
}

/* Microseconds Redis spent in FCALL (the store's lcm_append) so far: INFO commandstats. */
static double redis_fcall_us(void)
{
    redisContext *c = th_sync(&srv);
    redisReply *r = th_cmd(c, "INFO commandstats");
    double us = 0;
    const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "cmdstat_fcall:") : NULL;
    if (p && (p = strstr(p, "usec=")))
        us = atof(p + 5);
    freeReplyObject(r);
    redisFree(c);
    return us;
}

struct result {
    double seconds, plan_ms, decide_ms, commit_ms, redis_ms;
    uint64_t placed, cycles, conflicts;
    int nworkers_used;
    double p_per_s;
};

static int count_used(const char *id, const void *state, void *ud)
{
    (void)id;
    const struct lcm_worker *w = state;
    if (w->nsessions)
        ++*(int *)ud;
    return 0;
}

static size_t shortlist = 32;

/* Which worker each session went to (index = the session's number), per run: the Lua run
 * and the C run must place every session on the same worker. */
typedef char wid_t[16];
static wid_t *assign[2];

struct assign_ctx {
    wid_t *v;
    int n;
};

static int record_assign(const char *id, const void *state, void *ud)
{
    struct assign_ctx *a = ud;
    const struct lcm_session *ss = state;
    int k = atoi(id + 2);
    if (k >= 0 && k < a->n && ss->worker_id)
        snprintf(a->v[k], sizeof a->v[k], "%s", ss->worker_id);
    return 0;
}

static struct result run(const char *label, enum lcm_sched_policy_mode mode, int nworkers, int nsessions,
                         long budget_ms)
{
    struct result res = { 0 };
    redisContext *c = th_sync(&srv);
    freeReplyObject(th_cmd(c, "FLUSHALL"));
    redisFree(c);
    struct lcm_redis *r = th_connect(base, srv.url);
    char err[256];
    struct lcm_store_opts o = { .no_follow = 1 };
    struct lcm_store *st = r ? lcm_store_new(base, r, NULL, &o, err, sizeof err) : NULL;
    int loaded = 0;
    if (!st) {
        fprintf(stderr, "store: %s\n", err);
        exit(1);
    }
    seed(st, nworkers, nsessions);
    (void)loaded;
    struct lcm_policy_config pc = { .dir = LCM_POLICY_SRC_DIR };
    struct lcm_policy_engine *eng = lcm_policy_engine_new(&pc, err, sizeof err);
    if (!eng) {
        fprintf(stderr, "policy: %s\n", err);
        exit(1);
    }
    struct lcm_sched_cfg cfg;
    lcm_sched_cfg_default(&cfg);
    cfg.mode = mode;
    cfg.cycle_budget_ms = budget_ms;
    cfg.shortlist = shortlist;
    struct lcm_sched_env env = { .store = st, .policy = eng, .commit = store_commit, .commit_ud = st,
                                 .wake = wake };
    struct lcm_sched *s = lcm_sched_new(&env, &cfg);
    struct lcm_sched_stats ss;
    double redis0 = redis_fcall_us();
    double t0 = th_now_ms(), plan = 0;
    for (;;) {
        woken = 0;
        double p0 = th_now_ms();
        lcm_sched_cycle(s, (int64_t)time(NULL));
        plan += th_now_ms() - p0;
        lcm_sched_get_stats(s, &ss);
        res.decide_ms += ss.last_decide_ms;
        res.commit_ms += ss.last_commit_ms;
        /* A cycle that has more to submit (the next slice of its commits, or planning it
         * yielded) asks for another: one turn of the loop sends what was built, as lcmd's
         * zero-delay wake does. Otherwise let the commits land; a refused one asks again. */
        if (woken) {
            event_base_loop(base, EVLOOP_NONBLOCK);
            continue;
        }
        while (ss.inflight_commits > 0) {
            event_base_loop(base, EVLOOP_ONCE);
            lcm_sched_get_stats(s, &ss);
        }
        if (ss.committed >= (uint64_t)nsessions || !woken || th_now_ms() - t0 > 120000)
            break;
    }
    while (ss.inflight_commits > 0) {
        event_base_loop(base, EVLOOP_ONCE);
        lcm_sched_get_stats(s, &ss);
    }
    res.seconds = (th_now_ms() - t0) / 1e3;
    res.redis_ms = (redis_fcall_us() - redis0) / 1e3;
    res.plan_ms = plan;
    res.placed = ss.committed;
    res.cycles = ss.cycles;
    res.conflicts = ss.conflicts;
    lcm_store_each(st, "worker", count_used, &res.nworkers_used);
    int side = mode == LCM_SCHED_POLICY_ENGINE ? 0 : 1;
    assign[side] = calloc((size_t)nsessions, sizeof(wid_t));
    if (assign[side]) {
        struct assign_ctx ac = { assign[side], nsessions };
        lcm_store_each(st, "session", record_assign, &ac);
    }
    res.p_per_s = (double)res.placed / res.seconds;
    fprintf(stderr, "%s: placed %llu of %d in %.3f s (in lcm_sched_cycle %.0f ms = deciding %.0f + building and "
                    "sending commits %.0f; Redis busy in FCALL %.0f ms; %llu planning cycles, %d workers used)\n",
            label, (unsigned long long)res.placed, nsessions, res.seconds, plan, res.decide_ms, res.commit_ms,
            res.redis_ms, (unsigned long long)res.cycles, res.nworkers_used);
    /* verify in Redis: every session scheduled, no worker over its capacity */
    redisContext *v = th_sync(&srv);
    redisReply *n = th_cmd(v, "SCARD lcm:idx:session:status:scheduled");
    if (!n || n->integer != (long long)res.placed) {
        fprintf(stderr, "%s: Redis has %lld scheduled sessions, expected %llu\n", label, n ? n->integer : -1,
                (unsigned long long)res.placed);
        exit(1);
    }
    freeReplyObject(n);
    redisFree(v);
    lcm_sched_free(s);
    lcm_policy_engine_free(eng);
    lcm_redis_free(r);
    lcm_store_free(st);
    return res;
}

int main(int argc, char **argv)
{
    int nworkers = 1000, nsessions = 10000;
    long budget = 0;
    const char *only = NULL;   /* profiling: run one side only */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            nworkers = 100;
            nsessions = 1000;
        } else if (!strcmp(argv[i], "--workers") && i + 1 < argc) {
            nworkers = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--sessions") && i + 1 < argc) {
            nsessions = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--shortlist") && i + 1 < argc) {
            shortlist = (size_t)atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--budget-ms") && i + 1 < argc) {
            budget = atol(argv[++i]);
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            only = argv[++i];
        }
    }
    lcm_log_set_level(LCM_LOG_WARN);
    if (th_redis_start(&srv, "--appendfsync everysec") < 0) {
        fprintf(stderr, "cannot start redis-server\n");
        return 1;
    }
    base = event_base_new();
    struct result lua = { .p_per_s = 1 }, c = { .p_per_s = 1 };
    if (!only || !strcmp(only, "lua"))
        lua = run("lua", LCM_SCHED_POLICY_ENGINE, nworkers, nsessions, budget);
    if (!only || !strcmp(only, "c"))
        c = run("c", LCM_SCHED_POLICY_BUILTIN, nworkers, nsessions, budget);
    double ratio = lua.p_per_s / c.p_per_s;
    int same = assign[0] && assign[1];
    for (int i = 0; same && i < nsessions; i++)
        same = assign[0][i][0] && !strcmp(assign[0][i], assign[1][i]);
    printf("%-40s %14s %14s\n", "placement (committed to Redis)", "lua policy", "c policy");
    printf("%-40s %14d %14d\n", "workers", nworkers, nworkers);
    printf("%-40s %14llu %14llu\n", "sessions placed", (unsigned long long)lua.placed, (unsigned long long)c.placed);
    printf("%-40s %14.3f %14.3f\n", "wall seconds (plan + commit)", lua.seconds, c.seconds);
    printf("%-40s %14.0f %14.0f\n", "ms in lcm_sched_cycle", lua.plan_ms, c.plan_ms);
    printf("%-40s %14.0f %14.0f\n", "  of which deciding (filters + policy)", lua.decide_ms, c.decide_ms);
    printf("%-40s %14.0f %14.0f\n", "Redis ms in FCALL (lcm_append)", lua.redis_ms, c.redis_ms);
    printf("%-40s %14.0f %14.0f\n", "placements/s", lua.p_per_s, c.p_per_s);
    printf("%-40s %14d %14d\n", "workers used (bin packing)", lua.nworkers_used, c.nworkers_used);
    printf("%-40s %14.2f\n", "ratio lua/c", ratio);
    printf("%-40s %14s\n", "same worker for every session", same ? "yes" : "NO");
    printf("{\"bench\":\"placement\",\"shortlist\":%zu,\"workers\":%d,\"sessions\":%d,"
           "\"lua\":{\"placed\":%llu,\"seconds\":%.4f,\"plan_ms\":%.1f,\"decide_ms\":%.1f,\"redis_ms\":%.1f,\"placements_per_s\":%.0f,\"workers_used\":%d},"
           "\"c\":{\"placed\":%llu,\"seconds\":%.4f,\"plan_ms\":%.1f,\"decide_ms\":%.1f,\"redis_ms\":%.1f,\"placements_per_s\":%.0f,\"workers_used\":%d},"
           "\"ratio_lua_c\":%.3f,\"same_placements\":%s}\n",
           shortlist, nworkers, nsessions, (unsigned long long)lua.placed, lua.seconds, lua.plan_ms, lua.decide_ms,
           lua.redis_ms, lua.p_per_s, lua.nworkers_used, (unsigned long long)c.placed, c.seconds, c.plan_ms,
           c.decide_ms, c.redis_ms, c.p_per_s, c.nworkers_used, ratio, same ? "true" : "false");
    event_base_free(base);
    th_redis_stop(&srv);
    free(assign[0]);
    free(assign[1]);
    if (only)
        return 0;
    return lua.placed == (uint64_t)nsessions && c.placed == (uint64_t)nsessions && same ? 0 : 1;
}
