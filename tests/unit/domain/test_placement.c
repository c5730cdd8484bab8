/* The placement hard filter, one test per DOMAIN.md rule (1–5) including the fixes:
 * draining takes nothing, personal licence holds one session, CML versions compare as
 * versions, ports are counted. */
#include "builders.h"

#include "placement.h"

static struct lcm_place_req base_req(void)
{
    static char *nds[] = {"iosv"};
    struct lcm_place_req r = {.need = {4, 8, 50, 3}, .license_affinity = 0,
                              .cml_version_min = "2.7.0", .node_definitions = nds,
                              .n_node_definitions = 1, .nports = 4};
    return r;
}

static void test_rule1_status(void **st)
{
    struct lcm_worker *w = make_worker("w", multi_json, 0, 0);
    struct lcm_place_req r = base_req();
    assert_int_equal(lcm_placement_check(w, &r), LCM_REJ_NONE);
    const int not_running[] = {LCM_WK_PENDING, LCM_WK_PROVISIONING, LCM_WK_STARTING,
                               LCM_WK_STOPPING, LCM_WK_STOPPED, LCM_WK_TERMINATING,
                               LCM_WK_TERMINATED, LCM_WK_FAILED};
    for (size_t i = 0; i < sizeof not_running / sizeof not_running[0]; i++) {
        w->status = (uint8_t)not_running[i];
        assert_int_equal(lcm_placement_check(w, &r), LCM_REJ_NOT_RUNNING);
    }
    w->status = LCM_WK_DRAINING;   /* (fix) a draining worker takes no new session */
    assert_int_equal(lcm_placement_check(w, &r), LCM_REJ_DRAINING);
    w->status = LCM_WK_RUNNING;
    w->cml.ready = 0;
    assert_int_equal(lcm_placement_check(w, &r), LCM_REJ_CML_NOT_READY);
    lcm_worker_free(w);
}

static void test_rule2_license(void **st)
{
    struct lcm_worker *ent = make_worker("we", multi_json, 0, 0);
    struct lcm_worker *per = make_worker("wp", single_json, 0, 0);
    struct lcm_place_req r = base_req();
    struct { uint8_t aff; int ent_ok, per_ok; } cases[] = {
        {0, 1, 1},
        {LCM_LIC_PERSONAL, 1, 1},            /* enterprise serves personal */
        {LCM_LIC_ENTERPRISE, 1, 0},
        {LCM_LIC_EVALUATION, 0, 0},
        {LCM_LIC_PERSONAL | LCM_LIC_ENTERPRISE, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        r.license_affinity = cases[i].aff;
        assert_int_equal(lcm_placement_check(ent, &r) == LCM_REJ_NONE, cases[i].ent_ok);
        assert_int_equal(lcm_placement_check(per, &r) == LCM_REJ_NONE, cases[i].per_ok);
        if (!cases[i].ent_ok)
            assert_int_equal(lcm_placement_check(ent, &r), LCM_REJ_LICENSE);
    }
    assert_true(lcm_license_serves(LCM_LIC_EVALUATION, LCM_LIC_EVALUATION));
    assert_false(lcm_license_serves(LCM_LIC_EVALUATION, LCM_LIC_PERSONAL));
    /* (fix) a personal-licence worker holds at most one session */
    r.license_affinity = LCM_LIC_PERSONAL;
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    struct lcm_capacity one = {1, 1, 1, 1};
    assert_int_equal(lcm_worker_cmd_allocate(per, "s1", &one, "x", T0, &out, &err), 0);
    fold(&lcm_kind_worker, per, &out);
    assert_int_equal(lcm_placement_check(per, &r), LCM_REJ_PERSONAL_BUSY);
    assert_int_equal(lcm_worker_cmd_allocate(ent, "s1", &one, "x", T0, &out, &err), 0);
    fold(&lcm_kind_worker, ent, &out);
    assert_int_equal(lcm_placement_check(ent, &r), LCM_REJ_NONE);
    lcm_worker_free(ent);
    lcm_worker_free(per);
}

static void test_rule3_capacity(void **st)
{
    struct lcm_worker *w = make_worker("w", multi_json, 0, 0);
    struct lcm_place_req r = base_req();
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    struct lcm_capacity used = {44, 184, 206, 197};
    assert_int_equal(lcm_worker_cmd_allocate(w, "s1", &used, "x", T0, &out, &err), 0);
    fold(&lcm_kind_worker, w, &out);
    assert_int_equal(lcm_placement_check(w, &r), LCM_REJ_NONE);   /* exactly fits */
    r.need.cpu_cores = 5;
    assert_int_equal(lcm_placement_check(w, &r), LCM_REJ_CPU);
    r.need.cpu_cores = 4;
    r.need.memory_gb = 9;
    assert_int_equal(lcm_placement_check(w, &r), LCM_REJ_MEMORY);
    r.need.memory_gb = 8;
    r.need.storage_gb = 51;
    assert_int_equal(lcm_placement_check(w, &r), LCM_REJ_STORAGE);
    r.need.storage_gb = 50;
    r.need.nodes = 4;
    assert_int_equal(lcm_placement_check(w, &r), LCM_REJ_NODES);
    lcm_worker_free(w);
    /* personal: node limit 20 even when the template declares more */
    struct lcm_worker *p = make_worker("wp", multi_json, 0, 0);
    p->license.type = LCM_LIC_PERSONAL;
    r = base_req();
    r.need.nodes = 21;
    assert_int_equal(lcm_placement_check(p, &r), LCM_REJ_NODES);
    r.need.nodes = 20;
    assert_int_equal(lcm_placement_check(p, &r), LCM_REJ_NONE);
    lcm_worker_free(p);
}

static void test_rule4_cml(void **st)
{
    struct lcm_worker *w = make_worker("w", multi_json, 0, 0);   /* CML 2.9.1 */
    struct lcm_place_req r = base_req();
    /* (fix) compared as versions: "2.10.0" > "2.9.1" although "2.1…" < "2.9…" as strings */
    r.cml_version_min = "2.10.0";
    assert_int_equal(lcm_placement_check(w, &r), LCM_REJ_CML_VERSION);
    r.cml_version_min = "2.9.1";
    assert_int_equal(lcm_placement_check(w, &r), LCM_REJ_NONE);
    r.cml_version_min = NULL;
    r.cml_version_max = "2.9.0";
    assert_int_equal(lcm_placement_check(w, &r), LCM_REJ_CML_VERSION);
    r.cml_version_max = "2.10";
    assert_int_equal(lcm_placement_check(w, &r), LCM_REJ_NONE);
    free(w->cml.version);
    w->cml.version = strdup("2.10.0");
    r.cml_version_min = "2.9.1";
    r.cml_version_max = NULL;
    assert_int_equal(lcm_placement_check(w, &r), LCM_REJ_NONE);
    /* every required node definition present */
    static char *nds[] = {"iosv", "csr1000v"};
    r.node_definitions = nds;
    r.n_node_definitions = 2;
    assert_int_equal(lcm_placement_check(w, &r), LCM_REJ_NODE_DEFINITION);
    r.n_node_definitions = 1;
    assert_int_equal(lcm_placement_check(w, &r), LCM_REJ_NONE);
    lcm_worker_free(w);
}

static void test_rule5_ports(void **st)
{
    struct lcm_worker *w = make_worker("w", multi_json, 2000, 2005);   /* 6 ports */
    struct lcm_place_req r = base_req();
    struct lcm_events out;
    struct lcm_derr err;
    uint16_t v[8];
    lcm_events_init(&out);
    assert_int_equal(lcm_placement_check(w, &r), LCM_REJ_NONE);
    assert_int_equal(lcm_worker_cmd_ports_allocate(w, "lab1", 3, v, "x", T0, &out, &err), 0);
    fold(&lcm_kind_worker, w, &out);
    assert_int_equal(lcm_placement_check(w, &r), LCM_REJ_PORTS);   /* 4 needed, 3 free */
    r.nports = 3;
    assert_int_equal(lcm_placement_check(w, &r), LCM_REJ_NONE);
    lcm_worker_free(w);
}

static void test_filter_counts(void **st)
{
    struct lcm_worker *ws[4];
    ws[0] = make_worker("a", multi_json, 0, 0);
    ws[1] = make_worker("b", multi_json, 0, 0);
    ws[1]->status = LCM_WK_DRAINING;
    ws[2] = make_worker("c", single_json, 0, 0);
    ws[3] = make_worker("d", multi_json, 0, 0);
    ws[3]->cml.ready = 0;
    struct lcm_place_req r = base_req();
    r.license_affinity = LCM_LIC_ENTERPRISE;
    enum lcm_place_reject reasons[4];
    uint32_t counts[LCM_REJ__COUNT] = {0};
    size_t pass[4];
    size_t n = lcm_placement_filter((const struct lcm_worker *const *)ws, 4, &r, reasons, counts,
                                    pass);
    assert_int_equal(n, 1);
    assert_int_equal(pass[0], 0);
    assert_int_equal(reasons[1], LCM_REJ_DRAINING);
    assert_int_equal(reasons[2], LCM_REJ_LICENSE);
    assert_int_equal(reasons[3], LCM_REJ_CML_NOT_READY);
    assert_int_equal(counts[LCM_REJ_NONE], 1);
    assert_int_equal(counts[LCM_REJ_DRAINING], 1);
    assert_string_equal(lcm_place_reject_name(LCM_REJ_PORTS), "ports");
    for (int i = 0; i < 4; i++)
        lcm_worker_free(ws[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule1_status),
        cmocka_unit_test(test_rule2_license),
        cmocka_unit_test(test_rule3_capacity),
        cmocka_unit_test(test_rule4_cml),
        cmocka_unit_test(test_rule5_ports),
        cmocka_unit_test(test_filter_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
