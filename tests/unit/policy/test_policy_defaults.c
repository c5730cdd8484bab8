/* The default policies: their fixtures pass in Lua and in the built-in C; on thousands of
 * random inputs the Lua scripts and the built-ins decide exactly the same; and the behaviours
 * DOMAIN.md asks for (most utilised first, cheapest fitting template with personal-only
 * definitions on personal templates, scale-down only from the eligible list). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_builtin.h"
#include "policy_test_util.h"

static struct lcm_policy_engine *engine;
static unsigned long long rng = 42;

static unsigned rnd(unsigned n)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return n ? (unsigned)((rng >> 33) % n) : 0;
}

static int setup(void **state)
{
    (void)state;
    char err[256];
    struct lcm_policy_config cfg = {.dir = LCM_DEFAULT_POLICY_DIR, .deadline_ms = 200};
    engine = lcm_policy_engine_new(&cfg, err, sizeof(err));
    return engine ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    lcm_policy_engine_free(engine);
    return 0;
}

static void test_fixtures_pass_lua_and_builtin(void **state)
{
    (void)state;
    assert_int_equal(lcm_policy_check_dir(LCM_DEFAULT_POLICY_DIR, 1, NULL), 0);
    for (int k = 0; k < LCM_POLICY_KINDS; k++) {
        struct lcm_policy_gen *g = lcm_policy_pin(engine, (enum lcm_policy_kind)k);
        assert_non_null(g); /* every default loaded, fixtures and all */
        lcm_policy_unpin(g);
    }
}

static const char *const statuses[] = {"running", "running", "running", "starting", "pending",
                                       "provisioning", "draining", "stopped"};
static const char *const regions[] = {"eu-west-1", "us-east-1"};

static struct lcm_policy_worker random_worker(int i)
{
    char id[16];
    snprintf(id, sizeof(id), "w%02d", i);
    /* quantised allocations so that ties happen and the tie-breaks are exercised */
    struct lcm_policy_worker w = ptu_worker(id, 4.0 * rnd(13), (int)rnd(6));
    snprintf(w.status, sizeof(w.status), "%s", statuses[rnd(8)]);
    snprintf(w.region, sizeof(w.region), "%s", regions[rnd(2)]);
    if (rnd(3) == 0) {
        w.license_type = LCM_POLICY_LIC_PERSONAL;
        snprintf(w.template_name, sizeof(w.template_name), "single-session");
        w.declared.nodes = 20;
        w.declared.storage_gb = 128;
        w.allocated = (struct lcm_policy_capacity){0, 0, 0, 0};
        w.session_count = rnd(2);
        if (w.session_count)
            w.allocated = (struct lcm_policy_capacity){4, 8, 50, 3};
    }
    w.allocated.memory_gb = 8.0 * rnd(25);
    w.allocated.nodes = rnd(4) * 10;
    w.last_activity_at = 1764240000 - 600 * (int64_t)rnd(20);
    w.status_since = 1764240000 - 1800 * (int64_t)rnd(10);
    return w;
}

static void test_lua_equals_builtin_placement(void **state)
{
    (void)state;
    struct lcm_policy_worker ws[40];
    for (int round = 0; round < 300; round++) {
        size_t n = rnd(41);
        for (size_t i = 0; i < n; i++)
            ws[i] = random_worker((int)i);
        struct lcm_policy_placement_in in = {.session_id = "s", .workers = ws, .n_workers = n};
        struct lcm_policy_placement_out lua, c;
        struct lcm_policy_eval_info info;
        assert_int_equal(lcm_policy_place(engine, NULL, &in, &lua, &info), 0);
        if (info.source != LCM_POLICY_SRC_LUA)
            fail_msg("round %d fell back: %s", round, info.error);
        assert_int_equal(lcm_policy_builtin_place(&in, &c), 0);
        assert_int_equal(lua.n, c.n);
        for (size_t i = 0; i < c.n; i++) {
            assert_string_equal(lua.ranks[i].worker_id, c.ranks[i].worker_id);
            assert_true(lua.ranks[i].score == c.ranks[i].score);
            if (i > 0) /* most utilised first */
                assert_true(c.ranks[i - 1].score >= c.ranks[i].score);
        }
        lcm_policy_placement_out_clear(&lua);
        lcm_policy_placement_out_clear(&c);
    }
}

static struct lcm_policy_template tpl(const char *name, const char *region, unsigned lic,
                                      double cpu, double mem, double storage, int64_t nodes,
                                      double cost)
{
    struct lcm_policy_template t;
    memset(&t, 0, sizeof(t));
    snprintf(t.name, sizeof(t.name), "%s", name);
    snprintf(t.region, sizeof(t.region), "%s", region);
    t.license_type = lic;
    t.capacity = (struct lcm_policy_capacity){cpu, mem, storage, nodes};
    t.cost_per_hour = cost;
    t.enabled = 1;
    return t;
}

static void test_lua_equals_builtin_scale_up(void **state)
{
    (void)state;
    static const double cpus[] = {2, 4, 8}, mems[] = {4, 8, 16}, stores[] = {20, 50};
    static const int64_t nodes[] = {1, 3, 10};
    for (int round = 0; round < 400; round++) {
        struct lcm_policy_template t[4] = {
            tpl("multi-sessions", "eu-west-1", LCM_POLICY_LIC_ENTERPRISE, 48, 192, 256, 200, 3.9641),
            tpl("single-session", "eu-west-1", LCM_POLICY_LIC_PERSONAL, 48, 192, 128, 20, 3.9641),
            tpl("small-enterprise", "us-east-1", LCM_POLICY_LIC_ENTERPRISE, 8, 32, 100, 20, 0.8),
            tpl("eval", "eu-west-1", LCM_POLICY_LIC_EVALUATION, 16, 64, 128, 50, 1.5)};
        for (int i = 0; i < 4; i++)
            t[i].enabled = rnd(5) != 0;
        struct lcm_policy_demand d[5];
        size_t nd = rnd(6);
        for (size_t i = 0; i < nd; i++) {
            memset(&d[i], 0, sizeof(d[i]));
            snprintf(d[i].req.definition_id, sizeof(d[i].req.definition_id), "d%zu", i);
            d[i].req.cpu_cores = cpus[rnd(3)];
            d[i].req.memory_gb = mems[rnd(3)];
            d[i].req.storage_gb = stores[rnd(2)];
            d[i].req.node_count = nodes[rnd(3)];
            d[i].req.license_affinity = rnd(8);
            if (rnd(3) == 0)
                snprintf(d[i].region, sizeof(d[i].region), "%s", regions[rnd(2)]);
            d[i].unplaced = rnd(7);
            d[i].upcoming = rnd(7);
        }
        struct lcm_policy_worker fleet[8];
        size_t nf = rnd(9);
        for (size_t i = 0; i < nf; i++)
            fleet[i] = random_worker((int)i);
        struct lcm_policy_rejection rej[1] = {{"capacity", 3}};
        struct lcm_policy_scale_up_in in = {
            .demand = d, .n_demand = nd, .rejections = rej, .n_rejections = 1, .fleet = fleet,
            .n_fleet = nf, .templates = t, .n_templates = 4,
            .limits = {.now = 1764240000, .max_workers_per_region = rnd(3) ? 0 : 3 + rnd(5),
                       .max_launches_per_cycle = rnd(3) ? 0 : 1 + rnd(4),
                       .cooldown_active = rnd(10) == 0}};
        struct lcm_policy_scale_up_out lua, c;
        struct lcm_policy_eval_info info;
        assert_int_equal(lcm_policy_scale_up(engine, NULL, &in, &lua, &info), 0);
        if (info.source != LCM_POLICY_SRC_LUA)
            fail_msg("round %d fell back: %s", round, info.error);
        assert_int_equal(lcm_policy_builtin_scale_up(&in, &c), 0);
        if (lua.n != c.n)
            fail_msg("round %d: lua %zu entries, builtin %zu", round, lua.n, c.n);
        int64_t total = 0;
        for (size_t i = 0; i < c.n; i++) {
            assert_string_equal(lua.launches[i].template_name, c.launches[i].template_name);
            assert_string_equal(lua.launches[i].region, c.launches[i].region);
            assert_int_equal(lua.launches[i].count, c.launches[i].count);
            assert_true(c.launches[i].count > 0);
            total += c.launches[i].count;
        }
        if (in.limits.max_launches_per_cycle > 0)
            assert_true(total <= in.limits.max_launches_per_cycle);
        lcm_policy_scale_up_out_clear(&lua);
        lcm_policy_scale_up_out_clear(&c);
    }
}

static void test_lua_equals_builtin_scale_down(void **state)
{
    (void)state;
    for (int round = 0; round < 400; round++) {
        struct lcm_policy_worker fleet[10], el[10];
        size_t nf = rnd(11), ne = 0;
        for (size_t i = 0; i < nf; i++) {
            fleet[i] = random_worker((int)i);
            int empty = fleet[i].session_count == 0;
            if (empty && (!strcmp(fleet[i].status, "running") || !strcmp(fleet[i].status, "stopped")) &&
                rnd(3) != 0)
                el[ne++] = fleet[i];
        }
        struct lcm_policy_scale_down_in in = {
            .eligible = el, .n_eligible = ne, .fleet = fleet, .n_fleet = nf,
            .limits = {.now = 1764240000, .min_warm_workers = rnd(4),
                       .stopped_retention_minutes = rnd(3) * 60, .cooldown_active = rnd(10) == 0}};
        struct lcm_policy_scale_down_out lua, c;
        struct lcm_policy_eval_info info;
        assert_int_equal(lcm_policy_scale_down(engine, NULL, &in, &lua, &info), 0);
        if (info.source != LCM_POLICY_SRC_LUA)
            fail_msg("round %d fell back: %s", round, info.error);
        assert_int_equal(lcm_policy_builtin_scale_down(&in, &c), 0);
        assert_int_equal(lua.n, c.n);
        for (size_t i = 0; i < c.n; i++) {
            assert_string_equal(lua.retire[i].worker_id, c.retire[i].worker_id);
            assert_int_equal(lua.retire[i].action, c.retire[i].action);
            /* only ever from the eligible list */
            int found = 0;
            for (size_t k = 0; k < ne; k++)
                found |= !strcmp(el[k].id, c.retire[i].worker_id);
            assert_true(found);
        }
        lcm_policy_scale_down_out_clear(&lua);
        lcm_policy_scale_down_out_clear(&c);
    }
}

static void test_most_utilised_first(void **state)
{
    (void)state;
    struct lcm_policy_worker ws[3] = {ptu_worker("idle", 0, 0), ptu_worker("busy", 36, 9),
                                      ptu_worker("half", 24, 6)};
    struct lcm_policy_placement_in in = {.session_id = "s", .workers = ws, .n_workers = 3};
    struct lcm_policy_placement_out out;
    struct lcm_policy_eval_info info;
    assert_int_equal(lcm_policy_place(engine, NULL, &in, &out, &info), 0);
    assert_int_equal(info.source, LCM_POLICY_SRC_LUA);
    assert_int_equal(out.n, 3);
    assert_string_equal(out.ranks[0].worker_id, "busy");
    assert_string_equal(out.ranks[1].worker_id, "half");
    assert_string_equal(out.ranks[2].worker_id, "idle");
    assert_true(out.ranks[0].score == 0.75);
    lcm_policy_placement_out_clear(&out);
}

static void test_cheapest_template_personal_only(void **state)
{
    (void)state;
    struct lcm_policy_template t[3] = {
        tpl("multi-sessions", "eu-west-1", LCM_POLICY_LIC_ENTERPRISE, 48, 192, 256, 200, 3.9641),
        tpl("single-session", "eu-west-1", LCM_POLICY_LIC_PERSONAL, 48, 192, 128, 20, 3.9641),
        tpl("cheap-enterprise", "eu-west-1", LCM_POLICY_LIC_ENTERPRISE, 8, 32, 100, 20, 0.5)};
    struct lcm_policy_demand d = {.req = {.definition_id = "personal-lab", .cpu_cores = 4,
                                          .memory_gb = 8, .storage_gb = 50, .node_count = 3,
                                          .license_affinity = LCM_POLICY_LIC_PERSONAL},
                                  .unplaced = 2};
    struct lcm_policy_scale_up_in in = {.demand = &d, .n_demand = 1, .templates = t,
                                        .n_templates = 3, .limits = {.now = 1764240000}};
    struct lcm_policy_scale_up_out out;
    struct lcm_policy_eval_info info;
    assert_int_equal(lcm_policy_scale_up(engine, NULL, &in, &out, &info), 0);
    assert_int_equal(info.source, LCM_POLICY_SRC_LUA);
    assert_int_equal(out.n, 1);
    assert_string_equal(out.launches[0].template_name, "single-session");
    assert_int_equal(out.launches[0].count, 2); /* one session per personal worker */
    lcm_policy_scale_up_out_clear(&out);

    /* any licence: the cheapest that fits wins */
    d.req.license_affinity = 0;
    assert_int_equal(lcm_policy_scale_up(engine, NULL, &in, &out, &info), 0);
    assert_int_equal(out.n, 1);
    assert_string_equal(out.launches[0].template_name, "cheap-enterprise");
    assert_int_equal(out.launches[0].count, 1);
    lcm_policy_scale_up_out_clear(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_pass_lua_and_builtin),
        cmocka_unit_test(test_lua_equals_builtin_placement),
        cmocka_unit_test(test_lua_equals_builtin_scale_up),
        cmocka_unit_test(test_lua_equals_builtin_scale_down),
        cmocka_unit_test(test_most_utilised_first),
        cmocka_unit_test(test_cheapest_template_personal_only),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
