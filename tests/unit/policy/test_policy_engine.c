/* Engine tests: invalid results, errors and timeouts fall back to the built-in and are counted
 * (counter + metric); a bad reload (syntax, missing function, failing fixture, bytecode,
 * top-level loop) is refused and the last good generation keeps serving; generations are
 * pinned across reloads, also under concurrent evaluation; a file change is picked up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "policy_builtin.h"
#include "policy_test_util.h"

/* A placement policy whose behaviour is chosen by the session id, so that it passes its
 * fixture (id "s") at load and misbehaves on demand. Keeps the shortlist order and scores
 * every worker with VERSION, so a test can tell generations apart. */
static const char *probe_fmt =
    "local VERSION = %d\n"
    "local P = {}\n"
    "function P.rank(session, workers, ctx)\n"
    "  local id, w1 = session.id, workers[1] and workers[1].id\n"
    "  if id == 'loop' then while true do end end\n"
    "  if id == 'coloop' then coroutine.wrap(function() while true do end end)() end\n"
    "  if id == 'error' then error('boom') end\n"
    "  if id == 'mem' then local t = {} for i = 1, 1e8 do t[i] = i end end\n"
    "  if id == 'unknown' then return { { worker_id = 'nope', score = 1 } } end\n"
    "  if id == 'dup' then return { { worker_id = w1, score = 1 }, { worker_id = w1, score = 2 } } end\n"
    "  if id == 'nan' then return { { worker_id = w1, score = 0/0 } } end\n"
    "  if id == 'inf' then return { { worker_id = w1, score = math.huge } } end\n"
    "  if id == 'noscore' then return { { worker_id = w1 } } end\n"
    "  if id == 'string' then return 'w1' end\n"
    "  if id == 'nil' then return nil end\n"
    "  if id == 'holes' then return { { worker_id = w1, score = 1 }, nil, { worker_id = 'w2', score = 1 } } end\n"
    "  if id == 'idnum' then return { { worker_id = 5, score = 1 } } end\n"
    "  if id == 'extra' then return { { worker_id = w1, score = 1 }, x = 1 } end\n"
    "  if id == 'toolong' then local t = {} for i = 1, #workers + 1 do t[i] = { worker_id = w1, score = 1 } end return t end\n"
    "  local out = {}\n"
    "  for i, w in ipairs(workers) do out[i] = { worker_id = w.id, score = VERSION } end\n"
    "  return out\n"
    "end\n"
    "return P\n";

static const char *probe_fixture =
    "local function w(id, cpu) return { id = id, status = 'running', license_type = 'enterprise',\n"
    "  declared = { cpu_cores = 48, memory_gb = 192, storage_gb = 256, max_nodes = 200 },\n"
    "  allocated = { cpu_cores = cpu, memory_gb = 0, storage_gb = 0, nodes = 0 } } end\n"
    "return { { name = 'keeps order', session = { id = 's' },\n"
    "  workers = { w('w1', 0), w('w2', 40) }, expect = { 'w1', 'w2' } } }\n";

struct fx {
    char *dir;
    struct lcm_policy_engine *e;
    struct lcm_metrics *m;
};

static void write_probe(const char *dir, int version)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), probe_fmt, version);
    assert_int_equal(ptu_write(dir, "placement.lua", buf), 0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->dir = ptu_copy_defaults();
    assert_non_null(f->dir);
    write_probe(f->dir, 1);
    assert_int_equal(ptu_write(f->dir, "fixtures/placement.lua", probe_fixture), 0);
    f->m = lcm_metrics_new();
    char err[256];
    struct lcm_policy_config cfg = {.dir = f->dir, .metrics = f->m};
    f->e = lcm_policy_engine_new(&cfg, err, sizeof(err));
    assert_non_null(f->e);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    lcm_policy_engine_free(f->e);
    lcm_metrics_free(f->m);
    ptu_rmdir(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static struct lcm_policy_worker shortlist[2];

static struct lcm_policy_placement_in place_in(const char *session_id)
{
    shortlist[0] = ptu_worker("w1", 0, 0);
    shortlist[1] = ptu_worker("w2", 40, 8); /* fuller: the built-in ranks it first */
    struct lcm_policy_placement_in in;
    memset(&in, 0, sizeof(in));
    snprintf(in.session_id, sizeof(in.session_id), "%s", session_id);
    in.req.cpu_cores = 4;
    in.workers = shortlist;
    in.n_workers = 2;
    return in;
}

static cJSON *policy_status(struct lcm_policy_engine *e, const char *name, cJSON **root)
{
    *root = lcm_policy_status_json(e);
    cJSON *arr = cJSON_GetObjectItem(*root, "policies");
    cJSON *p;
    cJSON_ArrayForEach(p, arr)
    {
        if (!strcmp(cJSON_GetObjectItem(p, "name")->valuestring, name))
            return p;
    }
    fail_msg("policy %s not in status", name);
    return NULL;
}

static double status_num(struct lcm_policy_engine *e, const char *name, const char *key)
{
    cJSON *root;
    cJSON *p = policy_status(e, name, &root);
    double v = cJSON_GetObjectItem(p, key)->valuedouble;
    cJSON_Delete(root);
    return v;
}

static void test_defaults_and_probe_loaded(void **state)
{
    struct fx *f = *state;
    cJSON *root;
    cJSON *p = policy_status(f->e, "scale_up", &root);
    assert_string_equal(cJSON_GetObjectItem(p, "source")->valuestring, "lua");
    assert_int_equal(cJSON_GetObjectItem(p, "generation")->valueint, 1);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(p, "last_error")));
    assert_int_equal(strlen(cJSON_GetObjectItem(p, "sha256")->valuestring), 64);
    assert_true(cJSON_GetObjectItem(p, "fixtures")->valueint >= 5);
    assert_true(cJSON_IsString(cJSON_GetObjectItem(p, "loaded_at")));
    cJSON_Delete(root);

    struct lcm_policy_placement_in in = place_in("normal");
    struct lcm_policy_placement_out out;
    struct lcm_policy_eval_info info;
    assert_int_equal(lcm_policy_place(f->e, NULL, &in, &out, &info), 0);
    assert_int_equal(info.source, LCM_POLICY_SRC_LUA);
    assert_int_equal(info.generation, 1);
    assert_int_equal(out.n, 2);
    assert_string_equal(out.ranks[0].worker_id, "w1"); /* the probe keeps input order */
    assert_true(out.ranks[0].score == 1.0);
    lcm_policy_placement_out_clear(&out);
    assert_int_equal(lcm_policy_fallbacks(f->e, LCM_POLICY_PLACEMENT), 0);
}

static void expect_fallback2(struct fx *f, const char *id, enum lcm_policy_fallback why,
                             enum lcm_policy_fallback or_why)
{
    struct lcm_policy_placement_in in = place_in(id);
    struct lcm_policy_placement_out out;
    struct lcm_policy_eval_info info;
    long long t0 = ptu_now_ns(), c0 = ptu_cpu_ns();
    assert_int_equal(lcm_policy_place(f->e, NULL, &in, &out, &info), 0);
    double ms = ptu_cpu_ms_since(c0); /* what the call cost the loop */
    assert_true(ptu_ms_since(t0) < 2000);
    if (info.fallback != why && info.fallback != or_why)
        fail_msg("session %s: fallback %d, expected %d (%s)", id, info.fallback, why, info.error);
    assert_int_equal(info.source, LCM_POLICY_SRC_BUILTIN);
    /* the decision is the built-in's: most utilised (w2) first */
    assert_int_equal(out.n, 2);
    assert_string_equal(out.ranks[0].worker_id, "w2");
    assert_string_equal(out.ranks[1].worker_id, "w1");
    lcm_policy_placement_out_clear(&out);
    /* the loop is never held anywhere near 100 ms */
    if (ms > 95)
        fail_msg("session %s: evaluation took %.1f ms", id, ms);
}

static void expect_fallback(struct fx *f, const char *id, enum lcm_policy_fallback why)
{
    expect_fallback2(f, id, why, why);
}

static void test_invalid_results_fall_back(void **state)
{
    struct fx *f = *state;
    static const char *const invalid[] = {"unknown", "dup", "nan", "inf", "noscore", "string",
                                          "nil", "holes", "idnum", "extra", "toolong"};
    size_t n = sizeof(invalid) / sizeof(invalid[0]);
    for (size_t i = 0; i < n; i++)
        expect_fallback(f, invalid[i], LCM_POLICY_FB_INVALID);
    assert_int_equal(lcm_policy_fallbacks(f->e, LCM_POLICY_PLACEMENT), n);
    assert_true(lcm_metrics_get(f->m, "lcm_policy_fallbacks_total", "policy=\"placement\"") ==
                (double)n);
    assert_true(status_num(f->e, "placement", "fallbacks") == (double)n);
}

static void test_errors_and_timeouts_fall_back(void **state)
{
    struct fx *f = *state;
    expect_fallback(f, "error", LCM_POLICY_FB_ERROR);
    /* memory cap, or on a slow sanitizer build the deadline first */
    expect_fallback2(f, "mem", LCM_POLICY_FB_ERROR, LCM_POLICY_FB_TIMEOUT);
    expect_fallback(f, "loop", LCM_POLICY_FB_TIMEOUT);
    expect_fallback(f, "coloop", LCM_POLICY_FB_TIMEOUT);
    assert_int_equal(lcm_policy_fallbacks(f->e, LCM_POLICY_PLACEMENT), 4);
    assert_true(lcm_metrics_get(f->m, "lcm_policy_fallbacks_total", "policy=\"placement\"") == 4);
    /* the VM is still good after being stopped */
    struct lcm_policy_placement_in in = place_in("normal");
    struct lcm_policy_placement_out out;
    struct lcm_policy_eval_info info;
    assert_int_equal(lcm_policy_place(f->e, NULL, &in, &out, &info), 0);
    assert_int_equal(info.source, LCM_POLICY_SRC_LUA);
    lcm_policy_placement_out_clear(&out);
    assert_true(status_num(f->e, "placement", "evaluations") == 5);
}

static void expect_refused(struct fx *f, const char *rel, const void *text, size_t len,
                           const char *needle)
{
    assert_int_equal(ptu_write_bytes(f->dir, rel, text, len), 0);
    char err[512];
    long long t0 = ptu_now_ns();
    int rc = lcm_policy_reload(f->e, LCM_POLICY_PLACEMENT, 0, err, sizeof(err));
    double ms = ptu_ms_since(t0);
    if (rc >= 0 || !strstr(err, needle))
        fail_msg("expected refusal mentioning '%s', got rc %d: %s", needle, rc, err);
    assert_true(ms < 500);
    cJSON *root;
    cJSON *p = policy_status(f->e, "placement", &root);
    assert_int_equal(cJSON_GetObjectItem(p, "generation")->valueint, 1);
    assert_true(strstr(cJSON_GetObjectItem(p, "last_error")->valuestring, needle) != NULL);
    assert_true(cJSON_IsString(cJSON_GetObjectItem(p, "last_error_at")));
    cJSON_Delete(root);
    /* the last good generation keeps serving */
    struct lcm_policy_placement_in in = place_in("normal");
    struct lcm_policy_placement_out out;
    struct lcm_policy_eval_info info;
    assert_int_equal(lcm_policy_place(f->e, NULL, &in, &out, &info), 0);
    assert_int_equal(info.source, LCM_POLICY_SRC_LUA);
    assert_int_equal(info.generation, 1);
    assert_string_equal(out.ranks[0].worker_id, "w1");
    lcm_policy_placement_out_clear(&out);
}

static void test_bad_reloads_refused_last_good_kept(void **state)
{
    struct fx *f = *state;
    const char *s;
    s = "return { rank = function(s, w) return {} end";
    expect_refused(f, "placement.lua", s, strlen(s), "placement.lua");
    s = "return { rnk = function() return {} end }";
    expect_refused(f, "placement.lua", s, strlen(s), "no function 'rank'");
    s = "return 42";
    expect_refused(f, "placement.lua", s, strlen(s), "table of functions");
    s = "error('top-level failure')";
    expect_refused(f, "placement.lua", s, strlen(s), "top-level failure");
    s = "while true do end";
    expect_refused(f, "placement.lua", s, strlen(s), "exceeded");
    s = "return { rank = function(s, w) return { { worker_id = 'w2', score = 1 },"
        " { worker_id = 'w1', score = 0 } } end }";
    expect_refused(f, "placement.lua", s, strlen(s), "fixture 'keeps order'");
    s = "return { rank = function(s, w) return { { worker_id = 'zz', score = 1 } } end }";
    expect_refused(f, "placement.lua", s, strlen(s), "not in the shortlist");
    /* bytecode, as string.dump makes it */
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    assert_int_equal(luaL_dostring(L, "return string.dump(function() return { rank = "
                                      "function() return {} end } end)"),
                     0);
    size_t len;
    const char *bc = lua_tolstring(L, -1, &len);
    expect_refused(f, "placement.lua", bc, len, "binary");
    lua_close(L);
    /* a broken fixture file refuses too */
    write_probe(f->dir, 1);
    s = "return { { name = 'typo', sesion = {} } }";
    expect_refused(f, "fixtures/placement.lua", s, strlen(s), "unknown field");
    s = "return {}";
    expect_refused(f, "fixtures/placement.lua", s, strlen(s), "no fixture cases");

    /* a refused file is not retried by the watcher until it changes */
    double refusals = status_num(f->e, "placement", "refusals");
    assert_int_equal(lcm_policy_poll(f->e), 0);
    assert_true(status_num(f->e, "placement", "refusals") == refusals);

    /* fixing it installs generation 2 and clears the error */
    assert_int_equal(ptu_write(f->dir, "fixtures/placement.lua", probe_fixture), 0);
    write_probe(f->dir, 2);
    char err[512];
    assert_int_equal(lcm_policy_reload(f->e, LCM_POLICY_PLACEMENT, 0, err, sizeof(err)), 1);
    cJSON *root;
    cJSON *p = policy_status(f->e, "placement", &root);
    assert_int_equal(cJSON_GetObjectItem(p, "generation")->valueint, 2);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(p, "last_error")));
    cJSON_Delete(root);
    /* unchanged files: nothing to do; forced: a new generation */
    assert_int_equal(lcm_policy_reload(f->e, LCM_POLICY_PLACEMENT, 0, err, sizeof(err)), 0);
    assert_int_equal(lcm_policy_reload_all(f->e, 1, err, sizeof(err)), 0);
    assert_true(status_num(f->e, "placement", "generation") == 3);
    assert_true(status_num(f->e, "scale_up", "generation") == 2);
}

static void test_generation_pinned_across_reload(void **state)
{
    struct fx *f = *state;
    struct lcm_policy_gen *g1 = lcm_policy_pin(f->e, LCM_POLICY_PLACEMENT);
    assert_non_null(g1);
    assert_int_equal(lcm_policy_gen_number(g1), 1);
    write_probe(f->dir, 2);
    char err[512];
    assert_int_equal(lcm_policy_reload(f->e, LCM_POLICY_PLACEMENT, 0, err, sizeof(err)), 1);

    struct lcm_policy_placement_in in = place_in("normal");
    struct lcm_policy_placement_out out;
    struct lcm_policy_eval_info info;
    assert_int_equal(lcm_policy_place(f->e, g1, &in, &out, &info), 0);
    assert_int_equal(info.generation, 1);
    assert_true(out.ranks[0].score == 1.0); /* the old generation, still alive */
    lcm_policy_placement_out_clear(&out);
    assert_int_equal(lcm_policy_place(f->e, NULL, &in, &out, &info), 0);
    assert_int_equal(info.generation, 2);
    assert_true(out.ranks[0].score == 2.0);
    lcm_policy_placement_out_clear(&out);
    /* a pin of the wrong kind is refused */
    assert_int_not_equal(lcm_policy_scale_up(f->e, g1, &(struct lcm_policy_scale_up_in){0},
                                             &(struct lcm_policy_scale_up_out){0}, NULL),
                         0);
    lcm_policy_unpin(g1); /* frees generation 1 (ASan would see a leak or a double free) */
}

struct worker_arg {
    struct lcm_policy_engine *e;
    int mixed;
    int evaluations;
    int fallbacks;
};

static void *eval_thread(void *p)
{
    struct worker_arg *a = p;
    struct lcm_policy_worker ws[4];
    for (int i = 0; i < 4; i++) {
        char id[8];
        snprintf(id, sizeof(id), "w%d", i + 1);
        ws[i] = ptu_worker(id, i * 4.0, i);
    }
    for (int it = 0; it < 150; it++) {
        struct lcm_policy_gen *g = lcm_policy_pin(a->e, LCM_POLICY_PLACEMENT);
        uint64_t n = lcm_policy_gen_number(g);
        double expect = (n % 2) ? 1.0 : 2.0; /* odd generations are v1, even are v2 */
        for (int k = 0; k < 3; k++) {
            struct lcm_policy_placement_in in = {.session_id = "normal", .workers = ws,
                                                 .n_workers = 4};
            struct lcm_policy_placement_out out;
            struct lcm_policy_eval_info info;
            lcm_policy_place(a->e, g, &in, &out, &info);
            a->evaluations++;
            if (info.source != LCM_POLICY_SRC_LUA)
                a->fallbacks++;
            else if (info.generation != n || out.n != 4)
                a->mixed++;
            else
                for (size_t j = 0; j < out.n; j++)
                    if (out.ranks[j].score != expect)
                        a->mixed++;
            lcm_policy_placement_out_clear(&out);
        }
        lcm_policy_unpin(g);
    }
    return NULL;
}

static void test_concurrent_reload_never_mixes(void **state)
{
    struct fx *f = *state;
    pthread_t th[4];
    struct worker_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct worker_arg){.e = f->e};
        pthread_create(&th[i], NULL, eval_thread, &args[i]);
    }
    /* generation k holds v1 when k is odd, v2 when even */
    for (int r = 0; r < 30; r++) {
        uint64_t next = (uint64_t)status_num(f->e, "placement", "generation") + 1;
        write_probe(f->dir, (next % 2) ? 1 : 2);
        char err[512];
        assert_int_equal(lcm_policy_reload(f->e, LCM_POLICY_PLACEMENT, 1, err, sizeof(err)), 1);
    }
    int mixed = 0, evals = 0, fbs = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        mixed += args[i].mixed;
        evals += args[i].evaluations;
        fbs += args[i].fallbacks;
    }
    assert_int_equal(evals, 4 * 150 * 3);
    assert_int_equal(fbs, 0);
    assert_int_equal(mixed, 0);
    assert_true(status_num(f->e, "placement", "generation") == 31);
}

static void stop_loop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

static void test_file_change_reloads(void **state)
{
    struct fx *f = *state;
    struct event_base *base = event_base_new();
    char err[256];
    struct lcm_policy_config cfg = {.dir = f->dir, .base = base, .watch_interval_ms = 50};
    struct lcm_policy_engine *e = lcm_policy_engine_new(&cfg, err, sizeof(err));
    assert_non_null(e);
    assert_true(status_num(e, "placement", "generation") == 1);

    write_probe(f->dir, 2);
    struct event *tick = evtimer_new(base, stop_loop, base);
    long long t0 = ptu_now_ns();
    while (status_num(e, "placement", "generation") < 2 && ptu_ms_since(t0) < 3000) {
        struct timeval tv = {0, 100000};
        evtimer_add(tick, &tv);
        event_base_dispatch(base);
    }
    assert_true(status_num(e, "placement", "generation") == 2);
    struct lcm_policy_placement_in in = place_in("normal");
    struct lcm_policy_placement_out out;
    assert_int_equal(lcm_policy_place(e, NULL, &in, &out, NULL), 0);
    assert_true(out.ranks[0].score == 2.0);
    lcm_policy_placement_out_clear(&out);

    /* a broken edit is refused by the watcher too; the good one keeps serving */
    assert_int_equal(ptu_write(f->dir, "placement.lua", "return {"), 0);
    t0 = ptu_now_ns();
    while (status_num(e, "placement", "refusals") < 1 && ptu_ms_since(t0) < 3000) {
        struct timeval tv = {0, 100000};
        evtimer_add(tick, &tv);
        event_base_dispatch(base);
    }
    assert_true(status_num(e, "placement", "refusals") == 1);
    assert_true(status_num(e, "placement", "generation") == 2);
    event_free(tick);
    lcm_policy_engine_free(e);
    event_base_free(base);
}

static void test_missing_dir_serves_builtin(void **state)
{
    (void)state;
    char err[256];
    struct lcm_policy_config cfg = {.dir = "/nonexistent/lcm-policies"};
    struct lcm_policy_engine *e = lcm_policy_engine_new(&cfg, err, sizeof(err));
    assert_non_null(e);
    struct lcm_policy_placement_in in = place_in("normal");
    struct lcm_policy_placement_out out;
    struct lcm_policy_eval_info info;
    assert_int_equal(lcm_policy_place(e, NULL, &in, &out, &info), 0);
    assert_int_equal(info.source, LCM_POLICY_SRC_BUILTIN);
    assert_int_equal(info.fallback, LCM_POLICY_FB_NOT_LOADED);
    assert_string_equal(out.ranks[0].worker_id, "w2");
    lcm_policy_placement_out_clear(&out);
    cJSON *root;
    cJSON *p = policy_status(e, "placement", &root);
    assert_string_equal(cJSON_GetObjectItem(p, "source")->valuestring, "builtin");
    assert_int_equal(cJSON_GetObjectItem(p, "generation")->valueint, 0);
    assert_non_null(strstr(cJSON_GetObjectItem(p, "last_error")->valuestring, "cannot open"));
    cJSON_Delete(root);
    lcm_policy_engine_free(e);
}

/* Scaling results are validated as strictly as rankings. */
static const char *up_probe =
    "return { plan = function(demand, fleet, templates, limits)\n"
    "  local n = limits.now\n"
    "  if n == 1 then return { { template = 'nope', region = 'eu-west-1', count = 1 } } end\n"
    "  if n == 2 then return { { template = 'off', region = 'eu-west-1', count = 1 } } end\n"
    "  if n == 3 then return { { template = 'multi', region = 'us-east-1', count = 1 } } end\n"
    "  if n == 4 then return { { template = 'multi', region = 'eu-west-1', count = 0 } } end\n"
    "  if n == 5 then return { { template = 'multi', region = 'eu-west-1', count = 1.5 } } end\n"
    "  if n == 6 then return { { template = 'multi', region = 'eu-west-1', count = 1 },\n"
    "                          { template = 'multi', region = 'eu-west-1', count = 2 } } end\n"
    "  if n == 7 then return { { template = 'multi', region = 'eu-west-1', count = 1, reason = {} } } end\n"
    "  if n == 100 then return { { template = 'multi', region = 'eu-west-1', count = 2, reason = 'ok' } } end\n"
    "  return {}\n"
    "end }\n";
static const char *up_fixture =
    "return { { name = 'quiet', demand = { groups = {} }, fleet = {}, templates = {},\n"
    "  limits = { now = 0 }, expect = {} } }\n";
static const char *down_probe =
    "return { choose = function(eligible, fleet, limits)\n"
    "  local n = limits.now\n"
    "  if n == 1 then return { { worker_id = 'w-busy', action = 'drain' } } end\n"
    "  if n == 2 then return { { worker_id = 'w-idle', action = 'explode' } } end\n"
    "  if n == 3 then return { { worker_id = 'w-stopped', action = 'drain' } } end\n"
    "  if n == 4 then return { { worker_id = 'w-idle', action = 'drain' },\n"
    "                          { worker_id = 'w-idle', action = 'stop' } } end\n"
    "  if n == 100 then return { { worker_id = 'w-idle', action = 'drain' },\n"
    "                            { worker_id = 'w-stopped', action = 'terminate' } } end\n"
    "  return {}\n"
    "end }\n";
static const char *down_fixture =
    "return { { name = 'quiet', eligible = {}, fleet = {}, limits = { now = 0 }, expect = {} } }\n";

static void test_scaling_results_validated(void **state)
{
    struct fx *f = *state;
    assert_int_equal(ptu_write(f->dir, "scale_up.lua", up_probe), 0);
    assert_int_equal(ptu_write(f->dir, "fixtures/scale_up.lua", up_fixture), 0);
    assert_int_equal(ptu_write(f->dir, "scale_down.lua", down_probe), 0);
    assert_int_equal(ptu_write(f->dir, "fixtures/scale_down.lua", down_fixture), 0);
    char err[512];
    assert_int_equal(lcm_policy_reload_all(f->e, 0, err, sizeof(err)), 0);

    struct lcm_policy_template t[2];
    memset(t, 0, sizeof(t));
    snprintf(t[0].name, sizeof(t[0].name), "multi");
    snprintf(t[0].region, sizeof(t[0].region), "eu-west-1");
    t[0].license_type = LCM_POLICY_LIC_ENTERPRISE;
    t[0].capacity = (struct lcm_policy_capacity){48, 192, 256, 200};
    t[0].cost_per_hour = 4;
    t[0].enabled = 1;
    t[1] = t[0];
    snprintf(t[1].name, sizeof(t[1].name), "off");
    t[1].enabled = 0;
    struct lcm_policy_scale_up_in up = {.templates = t, .n_templates = 2};
    struct lcm_policy_scale_up_out uo;
    struct lcm_policy_eval_info info;
    for (int n = 1; n <= 7; n++) {
        up.limits.now = n;
        assert_int_equal(lcm_policy_scale_up(f->e, NULL, &up, &uo, &info), 0);
        if (info.fallback != LCM_POLICY_FB_INVALID)
            fail_msg("scale_up case %d: fallback %d (%s)", n, info.fallback, info.error);
        assert_int_equal(uo.n, 0); /* the built-in: no demand, no launch */
        lcm_policy_scale_up_out_clear(&uo);
    }
    up.limits.now = 100;
    assert_int_equal(lcm_policy_scale_up(f->e, NULL, &up, &uo, &info), 0);
    assert_int_equal(info.source, LCM_POLICY_SRC_LUA);
    assert_int_equal(uo.n, 1);
    assert_string_equal(uo.launches[0].template_name, "multi");
    assert_int_equal(uo.launches[0].count, 2);
    assert_string_equal(uo.launches[0].reason, "ok");
    lcm_policy_scale_up_out_clear(&uo);
    assert_int_equal(lcm_policy_fallbacks(f->e, LCM_POLICY_SCALE_UP), 7);

    struct lcm_policy_worker el[2] = {ptu_worker("w-idle", 0, 0), ptu_worker("w-stopped", 0, 0)};
    snprintf(el[1].status, sizeof(el[1].status), "stopped");
    struct lcm_policy_worker fleet[3] = {el[0], el[1], ptu_worker("w-busy", 8, 2)};
    struct lcm_policy_scale_down_in down = {.eligible = el, .n_eligible = 2, .fleet = fleet,
                                            .n_fleet = 3};
    struct lcm_policy_scale_down_out dout;
    for (int n = 1; n <= 4; n++) {
        down.limits.now = n;
        assert_int_equal(lcm_policy_scale_down(f->e, NULL, &down, &dout, &info), 0);
        if (info.fallback != LCM_POLICY_FB_INVALID)
            fail_msg("scale_down case %d: fallback %d (%s)", n, info.fallback, info.error);
        lcm_policy_scale_down_out_clear(&dout);
    }
    down.limits.now = 100;
    assert_int_equal(lcm_policy_scale_down(f->e, NULL, &down, &dout, &info), 0);
    assert_int_equal(info.source, LCM_POLICY_SRC_LUA);
    assert_int_equal(dout.n, 2);
    assert_int_equal(dout.retire[1].action, LCM_POLICY_TERMINATE);
    lcm_policy_scale_down_out_clear(&dout);
    assert_int_equal(lcm_policy_fallbacks(f->e, LCM_POLICY_SCALE_DOWN), 4);
    assert_true(lcm_metrics_get(f->m, "lcm_policy_fallbacks_total", "policy=\"scale_down\"") == 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults_and_probe_loaded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_results_fall_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_and_timeouts_fall_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_reloads_refused_last_good_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generation_pinned_across_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_reload_never_mixes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_change_reloads, setup, teardown),
        cmocka_unit_test(test_missing_dir_serves_builtin),
        cmocka_unit_test_setup_teardown(test_scaling_results_validated, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
