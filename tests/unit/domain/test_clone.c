/* kind->clone of every aggregate kind: a history that folds every event type of the kind;
 * before and after each event the clone emits the same hash fields, indexes and JSON as the
 * state it was made from (assert_clone), folding the event into the clone and into the
 * original gives the same bytes, and the walk then continues on the clone with the original
 * freed, so a pointer shared by the two (a shallow copy) shows up under AddressSanitizer. */
#include "builders.h"

#include "lab.h"
#include "session.h"
#include "session_time.h"

/* The state under test and the event types folded so far. */
struct walk {
    const struct lcm_kind *k;
    void *s;
    char seen[64][48];
    int nseen;
};

static void seen(struct walk *w, const char *type)
{
    for (int i = 0; i < w->nseen; i++)
        if (!strcmp(w->seen[i], type))
            return;
    assert_true(w->nseen < 64);
    snprintf(w->seen[w->nseen++], sizeof w->seen[0], "%s", type);
}

static void assert_same(const struct lcm_kind *k, const void *a, const void *b)
{
    struct fieldbuf fa = {0}, fb = {0};
    k->fields(a, fb_emit, &fa);
    k->fields(b, fb_emit, &fb);
    assert_int_equal(fa.len, fb.len);
    assert_memory_equal(fa.bytes, fb.bytes, fa.len);
    fb_free(&fa);
    fb_free(&fb);
    assert_int_equal(k->version(a), k->version(b));
}

/* Folds evs one by one, each into a fresh clone and into the current state. */
static void step(struct walk *w, struct lcm_events *evs)
{
    assert_true(evs->n > 0);
    for (size_t i = 0; i < evs->n; i++) {
        char at[LCM_TIME_BUFSZ], err[256] = "";
        struct lcm_event ev;
        lcm_events_view(evs, i, w->k->version(w->s) + 1, at, &ev);
        assert_clone(w->k, w->s);
        void *c = w->k->clone(w->s);
        assert_non_null(c);
        if (w->k->apply(c, &ev, err, sizeof err))
            fail_msg("%s refused on the clone: %s", ev.type, err);
        if (w->k->apply(w->s, &ev, err, sizeof err))
            fail_msg("%s refused: %s", ev.type, err);
        assert_same(w->k, c, w->s);
        assert_clone(w->k, c);
        w->k->destroy(w->s);
        w->s = c;
        seen(w, ev.type);
    }
    lcm_events_clear(evs);
}

static void assert_seen(const struct walk *w, const char *const *types)
{
    for (size_t i = 0; types[i]; i++) {
        int found = 0;
        for (int j = 0; j < w->nseen; j++)
            found |= !strcmp(w->seen[j], types[i]);
        if (!found)
            fail_msg("event type %s not folded", types[i]);
    }
}

static void test_kinds_have_clone(void **st)
{
    (void)st;
    for (size_t i = 0; lcm_kinds[i]; i++)
        if (!lcm_kinds[i]->clone)
            fail_msg("kind %s has no clone", lcm_kinds[i]->name);
}

static struct lcm_definition *walk_definition(void)
{
    char *topo = read_file(DOMAIN_TEST_DATA "/TEST-LAB-1.1.yaml");
    assert_non_null(topo);
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "name", "exam-associate-auto-v1.1-lab-2.5.1");
    cJSON_AddStringToObject(b, "version", "1.0.0");
    cJSON_AddStringToObject(b, "form_qualified_name", "Exam Associate Auto v1.1 LAB 2.5.1");
    cJSON *rr = cJSON_AddObjectToObject(b, "resource_requirements");
    cJSON_AddNumberToObject(rr, "cpu_cores", 4);
    cJSON_AddNumberToObject(rr, "memory_gb", 8);
    cJSON_AddNumberToObject(rr, "storage_gb", 50);
    cJSON_AddStringToObject(rr, "cml_version_min", "2.7.0");
    cJSON_AddStringToObject(b, "topology", topo);
    cJSON_AddBoolToObject(b, "grading_enabled", 1);
    cJSON_AddBoolToObject(b, "lds_enabled", 1);
    cJSON *aff = cJSON_AddArrayToObject(b, "license_affinity");
    cJSON_AddItemToArray(aff, cJSON_CreateString("personal"));
    cJSON_AddItemToArray(aff, cJSON_CreateString("enterprise"));
    free(topo);
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    struct walk w = {.k = &lcm_kind_definition, .s = lcm_definition_new("def-1")};
    assert_clone(w.k, w.s);   /* empty state */
    if (lcm_definition_cmd_create("def-1", b, "author", T0, &out, &err))
        fail_msg("definition: %s: %s", err.field, err.message);
    step(&w, &out);
    cJSON_AddStringToObject(b, "description", "second cut");
    if (lcm_definition_cmd_update(w.s, b, "author", T0 + 1, &out, &err))
        fail_msg("update: %s: %s", err.field, err.message);
    step(&w, &out);
    cJSON_Delete(b);
    const int path[] = {LCM_DEF_ACTIVE, LCM_DEF_INACTIVE, LCM_DEF_ACTIVE};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(lcm_definition_cmd_transition(w.s, path[i], "synced", "ctl", T0 + 2 + i,
                                                       &out, &err), 0);
        step(&w, &out);
    }
    static const char *const types[] = {"definition.created", "definition.updated",
                                        "definition.active", "definition.inactive", NULL};
    assert_seen(&w, types);
    struct lcm_definition *d = w.s;
    assert_true(d->nports > 0);
    assert_true(d->history.n >= 3);
    return d;
}

static void test_definition_clone(void **st)
{
    (void)st;
    lcm_definition_free(walk_definition());
}

static void test_template_clone(void **st)
{
    (void)st;
    struct walk w = {.k = &lcm_kind_template, .s = lcm_template_new("multi-sessions")};
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    assert_clone(w.k, w.s);
    cJSON *b = cJSON_Parse(multi_json);
    cJSON *sg = cJSON_AddArrayToObject(b, "security_group_ids");
    cJSON_AddItemToArray(sg, cJSON_CreateString("sg-1"));
    cJSON_AddItemToArray(sg, cJSON_CreateString("sg-2"));
    assert_int_equal(lcm_template_cmd_create(b, "seeder", T0, &out, &err), 0);
    step(&w, &out);
    cJSON *regions = cJSON_AddObjectToObject(b, "regions");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(regions, "eu-west-1"), "subnet_id", "subnet-eu");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(b, "tags"), "team", "labs");
    assert_int_equal(lcm_template_cmd_update(w.s, b, "admin", T0 + 1, &out, &err), 0);
    step(&w, &out);
    cJSON_Delete(b);
    assert_int_equal(lcm_template_cmd_delete(w.s, "retired", "admin", T0 + 2, &out, &err), 0);
    step(&w, &out);
    static const char *const types[] = {"template.created", "template.updated",
                                        "template.deleted", NULL};
    assert_seen(&w, types);
    lcm_template_free(w.s);
}

static void test_worker_clone(void **st)
{
    (void)st;
    struct lcm_template *t = make_template(multi_json);
    struct walk w = {.k = &lcm_kind_worker, .s = lcm_worker_new("w-1")};
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    assert_clone(w.k, w.s);
    struct lcm_worker_create c = {.id = "w-1", .origin = LCM_ORIGIN_SCALE_UP};
    assert_int_equal(lcm_worker_cmd_create(&c, t, "ctl:autoscaler", T0, &out, &err), 0);
    step(&w, &out);
    const int path[] = {LCM_WK_PROVISIONING, LCM_WK_STARTING, LCM_WK_RUNNING};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(lcm_worker_cmd_transition(w.s, path[i], NULL, "ctl", T0 + 1 + i, &out,
                                                   &err), 0);
        step(&w, &out);
    }
    struct lcm_worker_observation ob = {.status = -1, .instance_id = "i-0abc",
                                        .instance_type = "m5zn.metal", .ami_id = "ami-1",
                                        .private_ip = "10.0.0.5", .public_ip = "3.3.3.3",
                                        .endpoint = "https://10.0.0.5/api/v0"};
    assert_int_equal(lcm_worker_cmd_observe(w.s, &ob, "ctl", T0 + 10, &out, &err), 0);
    step(&w, &out);
    const char *nds[] = {"iosv", "ubuntu", "csr1000v"};
    assert_int_equal(lcm_worker_cmd_set_cml(w.s, "2.9.1", 1, nds, 3, "ctl", T0 + 11, &out, &err), 0);
    step(&w, &out);
    assert_int_equal(lcm_worker_cmd_set_license(w.s, LCM_LIC_ENTERPRISE, "registered", 150, "ctl",
                                                T0 + 12, &out, &err), 0);
    step(&w, &out);
    assert_int_equal(lcm_worker_cmd_metrics(w.s, 12.5, 40.25, T0 + 5, "ctl", T0 + 13, &out, &err),
                     0);
    step(&w, &out);
    struct lcm_capacity req = {4, 8, 20, 3};
    char sid[16];
    for (int i = 0; i < 5; i++) {   /* past the allocation array's first capacity */
        snprintf(sid, sizeof sid, "s-%d", i);
        assert_int_equal(lcm_worker_cmd_allocate(w.s, sid, &req, "ctl:scheduler", T0 + 20 + i,
                                                 &out, &err), 0);
        step(&w, &out);
    }
    uint16_t ports[4];
    assert_int_equal(lcm_worker_cmd_ports_allocate(w.s, "lab-1", 4, ports, "ctl", T0 + 30, &out,
                                                   &err), 0);
    step(&w, &out);
    assert_int_equal(lcm_worker_cmd_ports_allocate(w.s, "lab-2", 2, ports, "ctl", T0 + 31, &out,
                                                   &err), 0);
    step(&w, &out);
    assert_int_equal(lcm_worker_cmd_ports_release(w.s, "lab-1", "ctl", T0 + 32, &out, &err), 0);
    step(&w, &out);
    assert_int_equal(lcm_worker_cmd_release(w.s, "s-2", "ctl", T0 + 33, &out, &err), 0);
    step(&w, &out);
    assert_int_equal(lcm_worker_cmd_drain(w.s, "maintenance", T0 + 3600, "admin", T0 + 34, &out,
                                          &err), 0);
    step(&w, &out);
    assert_int_equal(lcm_worker_cmd_cancel_drain(w.s, "admin", T0 + 35, &out, &err), 0);
    step(&w, &out);
    assert_int_equal(lcm_worker_cmd_set_desired(w.s, LCM_WK_STOPPED, "admin", T0 + 36, &out, &err),
                     0);
    step(&w, &out);
    static const char *const types[] = {
        "worker.created", "worker.provisioning", "worker.starting", "worker.running",
        "worker.observed", "worker.cml", "worker.license", "worker.metrics", "worker.allocated",
        "worker.ports_allocated", "worker.ports_released", "worker.released", "worker.draining",
        "worker.desired", NULL};
    assert_seen(&w, types);
    struct lcm_worker *wk = w.s;
    assert_int_equal(wk->nsessions, 4);
    assert_int_equal(wk->ports.nleases, 1);
    lcm_worker_free(wk);
    lcm_template_free(t);
}

static void test_session_clone(void **st)
{
    (void)st;
    struct lcm_definition *d = walk_definition();
    struct lcm_time_params p;
    lcm_time_params_default(&p);
    struct walk w = {.k = &lcm_kind_session, .s = lcm_session_new("s-1")};
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    assert_clone(w.k, w.s);
    struct lcm_session_create c = {.id = "s-1", .owner = "learner-7", .reservation_id = "R-42",
                                   .start = T0 + 3600, .end = T0 + 3600 + 1800};
    assert_int_equal(lcm_session_cmd_create(&c, d, &p, "svc:exam", T0, &out, &err), 0);
    step(&w, &out);
    assert_int_equal(lcm_session_cmd_extend(w.s, T0 + 3600 + 3000, d->max_duration_minutes, "svc",
                                            T0 + 1, &out, &err), 0);
    step(&w, &out);
    assert_int_equal(lcm_session_cmd_schedule(w.s, "w-1", "bin packing", "ctl:scheduler",
                                              T0 + 1500, &out, &err), 0);
    step(&w, &out);
    assert_int_equal(lcm_session_cmd_transition(w.s, LCM_SS_INSTANTIATING, NULL, "ctl", T0 + 2400,
                                                &out, &err), 0);
    step(&w, &out);
    assert_int_equal(lcm_session_cmd_step(w.s, LCM_STEP_RESOLVE_LAB, LCM_STEP_STARTED, NULL, "ctl",
                                          T0 + 2401, &out, &err), 0);
    assert_int_equal(lcm_session_cmd_step(w.s, LCM_STEP_RESOLVE_LAB, LCM_STEP_FAILED, "CML 503",
                                          "ctl", T0 + 2402, &out, &err), 0);
    step(&w, &out);   /* the clone carries the step's error text */
    assert_int_equal(lcm_session_cmd_step(w.s, LCM_STEP_RESOLVE_LAB, LCM_STEP_DONE, NULL, "ctl",
                                          T0 + 2403, &out, &err), 0);
    assert_int_equal(lcm_session_cmd_bind_lab(w.s, "lab-1", "cml-abc", "ctl", T0 + 2404, &out,
                                              &err), 0);
    const char *names[] = {"pc_serial", "pc_vnc", "iosv-0_serial"};
    const uint16_t ports[] = {2000, 2001, 2002};
    assert_int_equal(lcm_session_cmd_set_ports(w.s, names, ports, 3, "ctl", T0 + 2405, &out, &err),
                     0);
    assert_int_equal(lcm_session_cmd_user_session(w.s, "lds-9", "https://lds/launch/9",
        "[{\"device_label\":\"PC\",\"protocol\":\"vnc\",\"host\":\"10.0.0.5\",\"port\":2001}]",
        "created", "ctl", T0 + 2406, &out, &err), 0);
    step(&w, &out);
    assert_int_equal(lcm_session_cmd_ready(w.s, "https://lds/launch/9", "ctl", T0 + 2500, &out,
                                           &err), 0);
    step(&w, &out);
    cJSON *ce = cJSON_Parse("{\"cloudevent\":{\"specversion\":\"1.0\",\"id\":\"ev-1\","
                            "\"source\":\"lds\",\"type\":\"com.cisco.lds.session.started\"}}");
    assert_int_equal(lcm_events_add(&out, "session.cloudevent_received", ce, T0 + 3600, "lds"), 0);
    step(&w, &out);
    const int path[] = {LCM_SS_RUNNING, LCM_SS_COLLECTING};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(lcm_session_cmd_transition(w.s, path[i], NULL, "lds", T0 + 3700 + i, &out,
                                                    &err), 0);
        step(&w, &out);
    }
    assert_int_equal(lcm_session_cmd_grading(w.s, "g-1", "open", "ctl", T0 + 3801, &out, &err), 0);
    assert_int_equal(lcm_session_cmd_transition(w.s, LCM_SS_GRADING, NULL, "ctl", T0 + 3802, &out,
                                                &err), 0);
    step(&w, &out);
    cJSON *rep = cJSON_Parse("{\"score\":42.5,\"max_score\":50,\"cut_score\":40,"
                             "\"sections\":[{\"name\":\"A\",\"score\":20}]}");
    assert_int_equal(lcm_session_cmd_score(w.s, rep, "grading", T0 + 3900, &out, &err), 0);
    cJSON_Delete(rep);
    step(&w, &out);
    assert_int_equal(lcm_session_cmd_request(w.s, LCM_SS_TERMINATED, "done early", "token:ops",
                                             T0 + 3950, &out, &err), 0);
    step(&w, &out);
    const int tail[] = {LCM_SS_STOPPING, LCM_SS_STOPPED, LCM_SS_ARCHIVED};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(lcm_session_cmd_transition(w.s, tail[i], NULL, "ctl", T0 + 4000 + i, &out,
                                                    &err), 0);
        step(&w, &out);
    }
    static const char *const types[] = {
        "session.created", "session.extended", "session.scheduled", "session.instantiating",
        "session.step", "session.lab_bound", "session.ports_assigned", "session.user_session",
        "session.ready", "session.cloudevent_received", "session.running", "session.collecting",
        "session.grading_updated", "session.grading", "session.scored", "session.desired",
        "session.stopping", "session.stopped", "session.archived", NULL};
    assert_seen(&w, types);
    struct lcm_session *s = w.s;
    assert_string_equal(s->desired_reason, "done early");
    assert_int_equal(s->nports, 3);
    lcm_session_free(s);
    lcm_definition_free(d);
}

static void test_lab_clone(void **st)
{
    (void)st;
    struct walk w = {.k = &lcm_kind_lab, .s = lcm_lab_new("lab-1")};
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    assert_clone(w.k, w.s);
    assert_int_equal(lcm_lab_cmd_create("lab-1", "w-1", "cml-abc", "DEVASC", "def-1", 0, "ctl", T0,
                                        &out, &err), 0);
    step(&w, &out);
    assert_int_equal(lcm_lab_cmd_observe(w.s, "DEFINED_ON_CORE", "ctl", T0 + 1, &out, &err), 0);
    step(&w, &out);
    const char *names[] = {"pc_serial", "pc_vnc"};
    const uint16_t ports[] = {2000, 2001};
    assert_int_equal(lcm_lab_cmd_assign_ports(w.s, names, ports, 2, "ctl", T0 + 2, &out, &err), 0);
    step(&w, &out);
    /* more runs than the lab keeps: bound/unbound 18 times */
    for (int r = 0; r < LCM_LAB_MAX_RUNS + 2; r++) {
        char sid[16];
        snprintf(sid, sizeof sid, "s-%d", r);
        assert_int_equal(lcm_lab_cmd_bind(w.s, sid, "ctl", T0 + 10 + 2 * r, &out, &err), 0);
        step(&w, &out);
        assert_int_equal(lcm_lab_cmd_unbind(w.s, sid, "ctl", T0 + 11 + 2 * r, &out, &err), 0);
        step(&w, &out);
    }
    assert_int_equal(lcm_lab_cmd_bind(w.s, "s-last", "ctl", T0 + 100, &out, &err), 0);
    step(&w, &out);
    assert_int_equal(lcm_lab_cmd_request_action(w.s, LCM_LAB_ACT_START, "admin", T0 + 101, &out,
                                                &err), 0);
    step(&w, &out);
    assert_int_equal(lcm_lab_cmd_transition(w.s, LCM_LAB_STARTING, NULL, "ctl", T0 + 102, &out,
                                            &err), 0);
    step(&w, &out);
    assert_int_equal(lcm_lab_cmd_action_done(w.s, NULL, "ctl", T0 + 103, &out, &err), 0);
    step(&w, &out);
    const int path[] = {LCM_LAB_BOOTED, LCM_LAB_STOPPING, LCM_LAB_STOPPED, LCM_LAB_WIPING,
                        LCM_LAB_WIPED};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(lcm_lab_cmd_transition(w.s, path[i], NULL, "ctl", T0 + 110 + i, &out,
                                                &err), 0);
        step(&w, &out);
    }
    static const char *const types[] = {
        "lab.created", "lab.observed", "lab.ports_assigned", "lab.bound", "lab.unbound",
        "lab.action_requested", "lab.starting", "lab.action_done", "lab.booted", "lab.wiped",
        NULL};
    assert_seen(&w, types);
    struct lcm_lab *l = w.s;
    assert_int_equal(l->nruns, LCM_LAB_MAX_RUNS);
    assert_string_equal(l->active_session_id, "s-last");
    lcm_lab_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds_have_clone),
        cmocka_unit_test(test_definition_clone),
        cmocka_unit_test(test_template_clone),
        cmocka_unit_test(test_worker_clone),
        cmocka_unit_test(test_session_clone),
        cmocka_unit_test(test_lab_clone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
