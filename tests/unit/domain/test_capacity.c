/* Capacity arithmetic, the worker's allocate/release commands (never negative, never above
 * declared, personal licence holds one session) and the per-worker port registry
 * (lowest-free, exhaustion, reuse of freed ports). */
#include "builders.h"

#include "capacity.h"
#include "ports.h"

static void test_capacity_arith(void **st)
{
    struct lcm_capacity decl = {48, 192, 256, 200}, alloc = {0}, req = {16, 64, 100, 50};
    assert_int_equal(lcm_capacity_add(&alloc, &decl, &req, 0), 0);
    assert_int_equal(lcm_capacity_add(&alloc, &decl, &req, 0), 0);
    assert_int_equal(lcm_capacity_add(&alloc, &decl, &req, 0), -1);     /* storage 300 > 256 */
    assert_int_equal(alloc.cpu_cores, 32);
    assert_int_equal(lcm_capacity_check(&decl, &alloc, &req, 0), LCM_CAP_STORAGE);
    struct lcm_capacity exact = {16, 64, 56, 100};
    assert_int_equal(lcm_capacity_check(&decl, &alloc, &exact, 0), LCM_CAP_FITS); /* exactly full */
    assert_int_equal(lcm_capacity_check(&decl, &alloc, &exact, 150), LCM_CAP_NODES);
    struct lcm_capacity cpu = {17, 1, 1, 1};
    assert_int_equal(lcm_capacity_check(&decl, &alloc, &cpu, 0), LCM_CAP_CPU);
    struct lcm_capacity mem = {1, 129, 1, 1};
    assert_int_equal(lcm_capacity_check(&decl, &alloc, &mem, 0), LCM_CAP_MEMORY);
    struct lcm_capacity neg = {-1, 0, 0, 0};
    assert_int_not_equal(lcm_capacity_check(&decl, &alloc, &neg, 0), LCM_CAP_FITS);
    struct lcm_capacity huge = {INT32_MAX, 0, 0, 0};
    assert_int_equal(lcm_capacity_check(&decl, &alloc, &huge, 0), LCM_CAP_CPU); /* no wrap */
    assert_int_equal(lcm_capacity_sub(&alloc, &req), 0);
    assert_int_equal(lcm_capacity_sub(&alloc, &req), 0);
    assert_int_equal(lcm_capacity_sub(&alloc, &req), -1);               /* never negative */
    assert_int_equal(alloc.cpu_cores, 0);
    assert_int_equal(alloc.nodes, 0);
}

static void test_worker_allocate_release(void **st)
{
    struct lcm_worker *w = make_worker("w1", multi_json, 0, 0);
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    struct lcm_capacity req = {16, 64, 100, 50};
    assert_int_equal(lcm_worker_cmd_allocate(w, "s1", &req, "x", T0, &out, &err), 0);
    fold(&lcm_kind_worker, w, &out);
    /* idempotent repeat: no event */
    assert_int_equal(lcm_worker_cmd_allocate(w, "s1", &req, "x", T0, &out, &err), 0);
    assert_int_equal(out.n, 0);
    struct lcm_capacity other = {1, 1, 1, 1};
    assert_int_equal(lcm_worker_cmd_allocate(w, "s1", &other, "x", T0, &out, &err), LCM_DERR_CONFLICT);
    assert_int_equal(lcm_worker_cmd_allocate(w, "s2", &req, "x", T0, &out, &err), 0);
    fold(&lcm_kind_worker, w, &out);
    assert_int_equal(lcm_worker_cmd_allocate(w, "s3", &req, "x", T0, &out, &err), LCM_DERR_EXHAUSTED);
    assert_string_equal(err.field, "storage");
    assert_int_equal(out.n, 0);
    assert_int_equal(w->allocated.cpu_cores, 32);
    assert_int_equal(w->allocated.storage_gb, 200);
    assert_int_equal(w->nsessions, 2);
    /* a forged allocation above declared does not fold */
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "session_id", "s9");
    cJSON_AddNumberToObject(d, "cpu_cores", 1);
    cJSON_AddNumberToObject(d, "memory_gb", 1);
    cJSON_AddNumberToObject(d, "storage_gb", 57);
    cJSON_AddNumberToObject(d, "nodes", 1);
    lcm_events_add(&out, "worker.allocated", d, T0, "forger");
    char e[256];
    assert_int_not_equal(lcm_events_apply(&lcm_kind_worker, w, &out, e, sizeof e), 0);
    lcm_events_clear(&out);
    assert_int_equal(w->allocated.storage_gb, 200);
    /* release, release again (no-op), and unknown (no-op) */
    assert_int_equal(lcm_worker_cmd_release(w, "s1", "x", T0, &out, &err), 0);
    fold(&lcm_kind_worker, w, &out);
    assert_int_equal(lcm_worker_cmd_release(w, "s1", "x", T0, &out, &err), 0);
    assert_int_equal(out.n, 0);
    assert_int_equal(lcm_worker_cmd_release(w, "nope", "x", T0, &out, &err), 0);
    assert_int_equal(out.n, 0);
    /* a forged release of an unknown session does not fold (never negative) */
    d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "session_id", "s1");
    lcm_events_add(&out, "worker.released", d, T0, "forger");
    assert_int_not_equal(lcm_events_apply(&lcm_kind_worker, w, &out, e, sizeof e), 0);
    lcm_events_clear(&out);
    assert_int_equal(w->allocated.cpu_cores, 16);
    assert_int_equal(lcm_worker_cmd_release(w, "s2", "x", T0, &out, &err), 0);
    fold(&lcm_kind_worker, w, &out);
    assert_int_equal(w->allocated.cpu_cores, 0);
    assert_int_equal(w->allocated.memory_gb, 0);
    assert_int_equal(w->allocated.storage_gb, 0);
    assert_int_equal(w->allocated.nodes, 0);
    assert_int_equal(w->nsessions, 0);
    /* draining: no new placements */
    assert_int_equal(lcm_worker_cmd_drain(w, NULL, 0, "x", T0, &out, &err), 0);
    fold(&lcm_kind_worker, w, &out);
    assert_int_equal(lcm_worker_cmd_allocate(w, "s4", &req, "x", T0, &out, &err), LCM_DERR_CONFLICT);
    lcm_worker_free(w);
}

static void test_personal_one_session(void **st)
{
    struct lcm_worker *w = make_worker("wp", single_json, 0, 0);
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    assert_int_equal(lcm_worker_node_limit(w), 20);
    struct lcm_capacity small = {1, 1, 1, 2}, big = {1, 1, 1, 21};
    assert_int_equal(lcm_worker_cmd_allocate(w, "s0", &big, "x", T0, &out, &err), LCM_DERR_EXHAUSTED);
    assert_string_equal(err.field, "nodes");
    assert_int_equal(lcm_worker_cmd_allocate(w, "s1", &small, "x", T0, &out, &err), 0);
    fold(&lcm_kind_worker, w, &out);
    assert_int_equal(lcm_worker_cmd_allocate(w, "s2", &small, "x", T0, &out, &err), LCM_DERR_EXHAUSTED);
    assert_int_equal(out.n, 0);
    assert_int_equal(lcm_worker_cmd_release(w, "s1", "x", T0, &out, &err), 0);
    fold(&lcm_kind_worker, w, &out);
    assert_int_equal(lcm_worker_cmd_allocate(w, "s2", &small, "x", T0, &out, &err), 0);
    fold(&lcm_kind_worker, w, &out);
    /* a licence node limit below the template's applies too */
    assert_int_equal(lcm_worker_cmd_set_license(w, LCM_LIC_PERSONAL, "registered", 5, "x", T0,
                                                &out, &err), 0);
    fold(&lcm_kind_worker, w, &out);
    assert_int_equal(lcm_worker_node_limit(w), 5);
    lcm_worker_free(w);
}

static void test_port_registry(void **st)
{
    struct lcm_ports p;
    struct lcm_derr err;
    uint16_t v[300];
    assert_int_equal(lcm_ports_init(&p, 2000, 9999), 0);
    assert_int_equal(lcm_ports_free_count(&p), 8000);
    assert_int_equal(lcm_ports_pick(&p, 3, v, &err), 0);
    assert_int_equal(v[0], 2000);
    assert_int_equal(v[2], 2002);
    assert_int_equal(lcm_ports_take(&p, "labA", v, 3, &err), 0);
    assert_int_equal(lcm_ports_take(&p, "labB", v, 1, &err), LCM_DERR_CONFLICT);  /* in use */
    assert_int_equal(lcm_ports_take(&p, "labA", v + 3, 1, &err), LCM_DERR_CONFLICT); /* has lease */
    uint16_t out_of_range = 10000, dup[2] = {5000, 5000};
    assert_int_equal(lcm_ports_take(&p, "labC", &out_of_range, 1, &err), LCM_DERR_CONFLICT);
    assert_int_equal(lcm_ports_take(&p, "labC", dup, 2, &err), LCM_DERR_CONFLICT);
    assert_int_equal(lcm_ports_pick(&p, 2, v, &err), 0);
    assert_int_equal(v[0], 2003);
    assert_int_equal(lcm_ports_take(&p, "labB", v, 2, &err), 0);
    assert_int_equal(lcm_ports_free_count(&p), 7995);
    /* free labA: its ports are the lowest again and get reused */
    assert_int_equal(lcm_ports_release(&p, "labA"), 3);
    assert_int_equal(lcm_ports_release(&p, "labA"), 0);
    assert_int_equal(lcm_ports_pick(&p, 4, v, &err), 0);
    assert_int_equal(v[0], 2000);
    assert_int_equal(v[1], 2001);
    assert_int_equal(v[2], 2002);
    assert_int_equal(v[3], 2005);   /* skips labB's 2003-2004 */
    lcm_ports_free(&p);

    /* exhaustion on a small range, crossing a 64-bit word boundary */
    assert_int_equal(lcm_ports_init(&p, 3000, 3099), 0);
    char lab[16];
    for (int i = 0; i < 33; i++) {
        snprintf(lab, sizeof lab, "l%d", i);
        assert_int_equal(lcm_ports_pick(&p, 3, v, &err), 0);
        assert_int_equal(v[0], 3000 + 3 * i);
        assert_int_equal(lcm_ports_take(&p, lab, v, 3, &err), 0);
    }
    assert_int_equal(lcm_ports_free_count(&p), 1);
    assert_int_equal(lcm_ports_pick(&p, 2, v, &err), LCM_DERR_EXHAUSTED);
    assert_string_equal(err.field, "ports");
    assert_int_equal(lcm_ports_release(&p, "l21"), 3);   /* 3063-3065 */
    assert_int_equal(lcm_ports_pick(&p, 4, v, &err), 0);
    assert_int_equal(v[0], 3063);
    assert_int_equal(v[3], 3099);
    lcm_ports_free(&p);
}

/* Through the worker aggregate: lowest-free per lab record, idempotent, exhaustion, release
 * on lab delete, and the registry survives fields → from_fields. */
static void test_worker_ports(void **st)
{
    struct lcm_worker *w = make_worker("w1", multi_json, 2000, 2009);
    struct lcm_events out;
    struct lcm_derr err;
    uint16_t v[16];
    lcm_events_init(&out);
    assert_int_equal(lcm_worker_cmd_ports_allocate(w, "lab1", 4, v, "x", T0, &out, &err), 0);
    assert_int_equal(v[0], 2000);
    fold(&lcm_kind_worker, w, &out);
    assert_int_equal(lcm_worker_cmd_ports_allocate(w, "lab1", 4, v, "x", T0, &out, &err), 0);
    assert_int_equal(out.n, 0);                       /* already leased: same ports back */
    assert_int_equal(v[3], 2003);
    assert_int_equal(lcm_worker_cmd_ports_allocate(w, "lab2", 4, v, "x", T0, &out, &err), 0);
    assert_int_equal(v[0], 2004);
    fold(&lcm_kind_worker, w, &out);
    assert_int_equal(lcm_worker_cmd_ports_allocate(w, "lab3", 3, v, "x", T0, &out, &err),
                     LCM_DERR_EXHAUSTED);
    assert_int_equal(out.n, 0);
    assert_roundtrip(&lcm_kind_worker, w, "w1");
    assert_int_equal(lcm_worker_cmd_ports_release(w, "lab1", "x", T0, &out, &err), 0);
    fold(&lcm_kind_worker, w, &out);
    assert_int_equal(lcm_worker_cmd_ports_allocate(w, "lab3", 3, v, "x", T0, &out, &err), 0);
    assert_int_equal(v[0], 2000);
    assert_int_equal(v[2], 2002);
    fold(&lcm_kind_worker, w, &out);
    /* a forged allocation of a port in use never folds (no two labs share a port) */
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "lab_id", "lab4");
    cJSON *a = cJSON_AddArrayToObject(d, "ports");
    cJSON_AddItemToArray(a, cJSON_CreateNumber(2004));
    lcm_events_add(&out, "worker.ports_allocated", d, T0, "forger");
    char e[256];
    assert_int_not_equal(lcm_events_apply(&lcm_kind_worker, w, &out, e, sizeof e), 0);
    lcm_events_clear(&out);
    assert_int_equal(lcm_ports_free_count(&w->ports), 3);
    assert_roundtrip(&lcm_kind_worker, w, "w1");
    lcm_worker_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capacity_arith),
        cmocka_unit_test(test_worker_allocate_release),
        cmocka_unit_test(test_personal_one_session),
        cmocka_unit_test(test_port_registry),
        cmocka_unit_test(test_worker_ports),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
