/* Fold determinism: a realistic event history for each kind; after every event,
 * fields → from_fields → fields gives identical bytes, to_json agrees, and the API field
 * names of DOMAIN.md are present. Also: folding the same events twice gives the same bytes,
 * index memberships, and the read-model memory per session. */
#include "builders.h"

#include "lab.h"
#include "session.h"
#include "session_time.h"
#include "topology.h"

/* Applies the pending events one by one, round-tripping after each. */
static void fold_rt(const struct lcm_kind *k, void *s, struct lcm_events *evs, const char *id)
{
    for (size_t i = 0; i < evs->n; i++) {
        char at[LCM_TIME_BUFSZ], err[256] = "";
        struct lcm_event ev;
        lcm_events_view(evs, i, k->version(s) + 1, at, &ev);
        if (k->apply(s, &ev, err, sizeof err))
            fail_msg("%s refused: %s", ev.type, err);
        assert_roundtrip(k, s, id);
    }
    lcm_events_clear(evs);
}

static struct lcm_definition *make_def(struct lcm_events *log)
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
    cJSON *aff = cJSON_AddArrayToObject(b, "license_affinity");
    cJSON_AddItemToArray(aff, cJSON_CreateString("personal"));
    cJSON_AddItemToArray(aff, cJSON_CreateString("enterprise"));
    free(topo);
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    if (lcm_definition_cmd_create("def-1", b, "author", T0, &out, &err))
        fail_msg("definition: %s: %s", err.field, err.message);
    cJSON_Delete(b);
    struct lcm_definition *d = lcm_definition_new("def-1");
    for (size_t i = 0; i < out.n; i++)
        lcm_events_add(log, out.v[i].type, cJSON_Duplicate(out.v[i].data, 1), out.v[i].at, out.v[i].by);
    fold_rt(&lcm_kind_definition, d, &out, "def-1");
    assert_int_equal(lcm_definition_cmd_transition(d, LCM_DEF_ACTIVE, "synced", "ctl", T0 + 1, &out,
                                                   &err), 0);
    for (size_t i = 0; i < out.n; i++)
        lcm_events_add(log, out.v[i].type, cJSON_Duplicate(out.v[i].data, 1), out.v[i].at, out.v[i].by);
    fold_rt(&lcm_kind_definition, d, &out, "def-1");
    return d;
}

static void test_definition_fold(void **st)
{
    struct lcm_events log;
    lcm_events_init(&log);
    struct lcm_definition *d = make_def(&log);
    /* derived from the topology: 3 nodes, node definitions, ports <label>_<proto> */
    assert_int_equal(d->req.need.nodes, 3);
    assert_int_equal(d->req.n_node_definitions, 3);
    assert_int_equal(d->nports, 4);
    assert_string_equal(d->ports[0].name, "pc_serial");
    assert_string_equal(d->ports[0].node_label, "PC");
    assert_string_equal(d->ports[1].name, "pc_vnc");
    assert_string_equal(d->ports[2].name, "iosv-0_serial");
    assert_string_equal(d->ports[3].name, "vmanagemockapi_serial");
    assert_int_equal(strlen(d->topology_sha256), 64);
    assert_int_equal(d->lds_enabled, 1);
    /* replaying the same log into a fresh state gives the same bytes */
    struct lcm_definition *d2 = lcm_definition_new("def-1");
    fold(&lcm_kind_definition, d2, &log);
    struct fieldbuf a = {0}, b = {0};
    lcm_kind_definition.fields(d, fb_emit, &a);
    lcm_kind_definition.fields(d2, fb_emit, &b);
    assert_string_equal(a.bytes, b.bytes);
    /* the semver is in field "semver" (the store owns "version") */
    assert_string_equal(fb_get(&a, "semver"), "1.0.0");
    assert_null(fb_get(&a, "version"));
    cJSON *j = lcm_kind_definition.to_json(d);
    assert_string_equal(cJSON_GetObjectItem(j, "version")->valuestring, "1.0.0");
    assert_string_equal(cJSON_GetObjectItem(j, "status")->valuestring, "active");
    cJSON_Delete(j);
    fb_free(&a);
    fb_free(&b);
    lcm_definition_free(d);
    lcm_definition_free(d2);
}

static void test_sample_topology(void **st)
{
    char *topo = read_file(DOMAIN_TEST_DATA "/sample_cml_lab.yaml");
    struct lcm_topology t;
    struct lcm_derr err;
    assert_int_equal(lcm_topology_parse(topo, &t, &err), 0);
    assert_int_equal(t.nnodes, 2);
    assert_string_equal(t.nodes[0].label, "vmanage-mock");
    assert_string_equal(t.nodes[0].node_definition, "mock-server");
    assert_int_equal(t.nodes[0].ntags, 1);
    assert_string_equal(t.nodes[0].tags[0], "serial:5041");
    assert_string_equal(t.nodes[1].label, "ubuntu-desktop");
    assert_int_equal(t.nodes[1].ntags, 2);
    assert_string_equal(t.nodes[1].tags[1], "vnc:5044");
    lcm_topology_free(&t);
    free(topo);
    const char *inline_tags = "lab:\n  title: x\nnodes:\n- id: n0\n  label: \"R 1\"\n"
                              "  tags: [ssh:22, 'https:443', other]\n  node_definition: iosv\n";
    assert_int_equal(lcm_topology_parse(inline_tags, &t, &err), 0);
    assert_int_equal(t.nnodes, 1);
    assert_string_equal(t.nodes[0].label, "R 1");
    assert_int_equal(t.nodes[0].ntags, 3);
    assert_string_equal(t.nodes[0].tags[1], "https:443");
    char name[64];
    lcm_port_name(t.nodes[0].label, LCM_PROTO_HTTPS, name, sizeof name);
    assert_string_equal(name, "r-1_https");
    lcm_topology_free(&t);
    assert_int_equal(lcm_topology_parse("links: []\n", &t, &err), LCM_DERR_INVALID);
    assert_string_equal(err.field, "topology");
}

static void test_template_fold(void **st)
{
    struct lcm_template *t = make_template(multi_json);
    assert_roundtrip(&lcm_kind_template, t, t->id);
    assert_int_equal(t->capacity.nodes, 200);
    assert_true(t->cost_per_hour > 3.96 && t->cost_per_hour < 3.97);
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    cJSON *b = cJSON_Parse(multi_json);
    cJSON_ReplaceItemInObject(b, "enabled", cJSON_CreateFalse());
    cJSON *regions = cJSON_AddObjectToObject(b, "regions");
    cJSON *eu = cJSON_AddObjectToObject(regions, "eu-west-1");
    cJSON_AddStringToObject(eu, "subnet_id", "subnet-eu");
    cJSON *tags = cJSON_AddObjectToObject(b, "tags");
    cJSON_AddStringToObject(tags, "team", "labs");
    assert_int_equal(lcm_template_cmd_update(t, b, "admin", T0 + 5, &out, &err), 0);
    cJSON_Delete(b);
    fold_rt(&lcm_kind_template, t, &out, t->id);
    assert_int_equal(t->enabled, 0);
    cJSON *ls = lcm_template_launch_settings(t, "eu-west-1");
    assert_string_equal(cJSON_GetObjectItem(ls, "subnet_id")->valuestring, "subnet-eu");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(ls, "tags"), "team")->valuestring,
                        "labs");
    cJSON_Delete(ls);
    assert_int_equal(lcm_template_cmd_delete(t, "retired", "admin", T0 + 6, &out, &err), 0);
    fold_rt(&lcm_kind_template, t, &out, t->id);
    assert_int_equal(lcm_template_cmd_delete(t, "again", "admin", T0 + 7, &out, &err),
                     LCM_DERR_CONFLICT);
    lcm_template_free(t);
}

static void test_worker_fold(void **st)
{
    struct lcm_worker *w = make_worker("w-1", multi_json, 0, 0);
    assert_roundtrip(&lcm_kind_worker, w, "w-1");
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    struct lcm_worker_observation ob = {.status = -1, .instance_id = "i-0abc",
                                        .private_ip = "10.0.0.5", .endpoint = "https://10.0.0.5/api/v0"};
    uint16_t ports[3];
    struct lcm_capacity req = {4, 8, 50, 3};
    assert_int_equal(lcm_worker_cmd_observe(w, &ob, "ctl:workers", T0 + 20, &out, &err), 0);
    assert_int_equal(lcm_worker_cmd_set_license(w, LCM_LIC_ENTERPRISE, "registered", 0, "ctl", T0 + 21, &out, &err), 0);
    assert_int_equal(lcm_worker_cmd_metrics(w, 12.5, 40.25, T0 + 15, "ctl", T0 + 22, &out, &err), 0);
    fold_rt(&lcm_kind_worker, w, &out, "w-1");
    assert_int_equal(lcm_worker_cmd_allocate(w, "s-1", &req, "ctl:scheduler", T0 + 30, &out, &err), 0);
    fold_rt(&lcm_kind_worker, w, &out, "w-1");
    assert_int_equal(lcm_worker_cmd_ports_allocate(w, "lab-1", 3, ports, "ctl", T0 + 31, &out, &err), 0);
    fold_rt(&lcm_kind_worker, w, &out, "w-1");
    assert_int_equal(lcm_worker_cmd_set_desired(w, LCM_WK_STOPPED, "admin", T0 + 32, &out, &err), 0);
    assert_int_equal(lcm_worker_cmd_drain(w, "admin stop", T0 + 3600, "admin", T0 + 33, &out, &err), 0);
    fold_rt(&lcm_kind_worker, w, &out, "w-1");
    assert_int_equal(lcm_worker_drain_done(w, T0 + 34), 0);        /* holds a session */
    assert_int_equal(lcm_worker_drain_done(w, T0 + 3600), 1);      /* deadline passed */
    /* API names */
    cJSON *j = lcm_kind_worker.to_json(w);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "cml"), "ready")));
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "cml"), "version")->valuestring, "2.9.1");
    assert_string_equal(cJSON_GetObjectItem(j, "instance_id")->valuestring, "i-0abc");
    assert_string_equal(cJSON_GetObjectItem(j, "status")->valuestring, "draining");
    assert_string_equal(cJSON_GetObjectItem(j, "desired_status")->valuestring, "stopped");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "drain"), "deadline")->valuestring,
                        "2025-11-27T11:00:00Z");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "allocated"), "cpu_cores")->valueint, 4);
    cJSON_Delete(j);
    lcm_worker_free(w);
}

struct idx_capture { char keys[16][320]; int sorted[16]; int unique[16]; double score[16]; int n; };
static void idx_emit(const struct lcm_index_entry *e, void *ud)
{
    struct idx_capture *c = ud;
    assert_true(c->n < 16);
    snprintf(c->keys[c->n], sizeof c->keys[0], "%s", e->key);
    c->sorted[c->n] = e->sorted;
    c->unique[c->n] = e->unique;
    c->score[c->n] = e->score;
    c->n++;
}
static int idx_find(const struct idx_capture *c, const char *key)
{
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->keys[i], key))
            return i;
    return -1;
}

static void test_session_fold(void **st)
{
    struct lcm_events log;
    lcm_events_init(&log);
    struct lcm_definition *d = make_def(&log);
    lcm_events_clear(&log);
    struct lcm_time_params p;
    lcm_time_params_default(&p);
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    struct lcm_session_create c = {.id = "s-1", .owner = "learner-7", .reservation_id = "R-42",
                                   .start = T0 + 3600, .end = T0 + 3600 + 3600};
    assert_int_equal(lcm_session_cmd_create(&c, d, &p, "svc:exam", T0, &out, &err), 0);
    struct lcm_session *s = lcm_session_new("s-1");
    fold_rt(&lcm_kind_session, s, &out, "s-1");
    struct idx_capture ix = {0};
    lcm_kind_session.indexes(s, idx_emit, &ix);
    assert_true(idx_find(&ix, "lcm:idx:session:status:pending") >= 0);
    int k = idx_find(&ix, "lcm:idx:session:start");
    assert_true(k >= 0);
    assert_int_equal(ix.sorted[k], 1);
    assert_true(ix.score[k] == (double)(T0 + 3600));
    k = idx_find(&ix, "lcm:idx:session:reservation:R-42");
    assert_true(k >= 0);
    assert_int_equal(ix.unique[k], 1);
    assert_int_equal(idx_find(&ix, "lcm:idx:session:worker:w-1"), -1);

    assert_int_equal(lcm_session_cmd_schedule(s, "w-1", "bin packing", "ctl:scheduler", T0 + 1500, &out, &err), 0);
    fold_rt(&lcm_kind_session, s, &out, "s-1");
    memset(&ix, 0, sizeof ix);
    lcm_kind_session.indexes(s, idx_emit, &ix);
    assert_true(idx_find(&ix, "lcm:idx:session:worker:w-1") >= 0);
    assert_int_equal(lcm_session_cmd_transition(s, LCM_SS_INSTANTIATING, NULL, "ctl", T0 + 2400, &out, &err), 0);
    fold_rt(&lcm_kind_session, s, &out, "s-1");
    assert_int_equal(lcm_session_cmd_step(s, LCM_STEP_RESOLVE_LAB, LCM_STEP_STARTED, NULL, "ctl", T0 + 2401, &out, &err), 0);
    assert_int_equal(lcm_session_cmd_step(s, LCM_STEP_RESOLVE_LAB, LCM_STEP_FAILED, "CML 503", "ctl", T0 + 2402, &out, &err), 0);
    assert_int_equal(lcm_session_cmd_step(s, LCM_STEP_RESOLVE_LAB, LCM_STEP_STARTED, NULL, "ctl", T0 + 2403, &out, &err), 0);
    assert_int_equal(lcm_session_cmd_step(s, LCM_STEP_RESOLVE_LAB, LCM_STEP_DONE, NULL, "ctl", T0 + 2404, &out, &err), 0);
    assert_int_equal(lcm_session_cmd_bind_lab(s, "lab-1", "cml-abc", "ctl", T0 + 2405, &out, &err), 0);
    const char *names[] = {"pc_serial", "pc_vnc", "iosv-0_serial", "vmanagemockapi_serial"};
    const uint16_t ports[] = {2000, 2001, 2002, 2003};
    assert_int_equal(lcm_session_cmd_set_ports(s, names, ports, 4, "ctl", T0 + 2406, &out, &err), 0);
    assert_int_equal(lcm_session_cmd_user_session(s, "lds-9", "https://lds/launch/9",
        "[{\"device_label\":\"PC\",\"protocol\":\"vnc\",\"host\":\"10.0.0.5\",\"port\":2001}]",
        "created", "ctl", T0 + 2407, &out, &err), 0);
    fold_rt(&lcm_kind_session, s, &out, "s-1");
    assert_int_equal(s->steps[LCM_STEP_RESOLVE_LAB].attempts, 2);
    assert_null(s->steps[LCM_STEP_RESOLVE_LAB].error);
    assert_int_equal(lcm_session_cmd_ready(s, "https://lds/launch/9", "ctl", T0 + 2500, &out, &err), 0);
    fold_rt(&lcm_kind_session, s, &out, "s-1");
    const int path[] = {LCM_SS_RUNNING, LCM_SS_COLLECTING};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(lcm_session_cmd_transition(s, path[i], NULL, "lds", T0 + 3700 + i, &out, &err), 0);
        fold_rt(&lcm_kind_session, s, &out, "s-1");
    }
    assert_int_equal(lcm_session_cmd_extend(s, T0 + 3600 + 5400, d->max_duration_minutes, "svc", T0 + 3800, &out, &err),
                     LCM_DERR_INVALID);                       /* 90 min > 60 */
    assert_string_equal(err.field, "end");
    assert_int_equal(lcm_session_cmd_grading(s, "g-1", "open", "ctl", T0 + 3801, &out, &err), 0);
    assert_int_equal(lcm_session_cmd_transition(s, LCM_SS_GRADING, NULL, "ctl", T0 + 3802, &out, &err), 0);
    fold_rt(&lcm_kind_session, s, &out, "s-1");
    cJSON *rep = cJSON_Parse("{\"score\":42.5,\"max_score\":50,\"cut_score\":40,"
                             "\"sections\":[{\"name\":\"A\",\"score\":20}]}");
    assert_int_equal(lcm_session_cmd_score(s, rep, "grading", T0 + 3900, &out, &err), 0);
    cJSON_Delete(rep);
    fold_rt(&lcm_kind_session, s, &out, "s-1");
    assert_int_equal(s->score.passed, 1);
    const int tail[] = {LCM_SS_STOPPING, LCM_SS_STOPPED, LCM_SS_ARCHIVED};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(lcm_session_cmd_transition(s, tail[i], NULL, "ctl", T0 + 4000 + i, &out, &err), 0);
        fold_rt(&lcm_kind_session, s, &out, "s-1");
    }
    cJSON *j = lcm_kind_session.to_json(s);
    assert_string_equal(cJSON_GetObjectItem(j, "status")->valuestring, "archived");
    assert_string_equal(cJSON_GetObjectItem(j, "worker_id")->valuestring, "w-1");
    assert_string_equal(cJSON_GetObjectItem(j, "lab_record_id")->valuestring, "lab-1");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "timeslot"), "start")->valuestring,
                        "2025-11-27T11:00:00Z");
    cJSON *us = cJSON_GetObjectItem(j, "user_session");
    assert_string_equal(cJSON_GetObjectItem(us, "login_url")->valuestring, "https://lds/launch/9");
    assert_string_equal(cJSON_GetObjectItem(us, "lds_session_id")->valuestring, "lds-9");
    assert_true(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "score"), "score")->valuedouble == 42.5);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "ports"), "pc_vnc")->valueint, 2001);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "status_history")), 9);
    cJSON_Delete(j);
    size_t mem = lcm_session_mem(s);
    print_message("read-model memory of a complete session: %zu bytes (struct %zu)\n", mem,
                  sizeof *s);
    assert_true(mem <= 2048);
    lcm_session_free(s);
    lcm_definition_free(d);
}

/* A terminate request keeps who asked and why (session.desired {reason}); both survive the
 * hash round trip, a second request does not overwrite them, and a reason that is not
 * printable or too long is refused. */
static void test_session_request_reason(void **st)
{
    struct lcm_events log;
    lcm_events_init(&log);
    struct lcm_definition *d = make_def(&log);
    lcm_events_clear(&log);
    struct lcm_time_params p;
    lcm_time_params_default(&p);
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    struct lcm_session_create c = {.id = "s-r", .owner = "learner-7", .start = T0 + 3600,
                                   .end = T0 + 7200};
    assert_int_equal(lcm_session_cmd_create(&c, d, &p, "svc:exam", T0, &out, &err), 0);
    struct lcm_session *s = lcm_session_new("s-r");
    fold_rt(&lcm_kind_session, s, &out, "s-r");
    assert_null(s->desired_reason);
    assert_null(s->desired_by);

    char longr[460];
    memset(longr, 'x', sizeof longr - 1);
    longr[sizeof longr - 1] = 0;
    assert_int_equal(lcm_session_cmd_request(s, LCM_SS_TERMINATED, longr, "op", T0 + 1, &out, &err),
                     LCM_DERR_INVALID);
    assert_string_equal(err.field, "reason");
    assert_int_equal(lcm_session_cmd_request(s, LCM_SS_TERMINATED, "bad\nline", "op", T0 + 1, &out,
                                             &err), LCM_DERR_INVALID);
    assert_int_equal(out.n, 0);

    assert_int_equal(lcm_session_cmd_request(s, LCM_SS_TERMINATED, "learner cheated", "token:ops-1",
                                             T0 + 2, &out, &err), 0);
    assert_int_equal(out.n, 1);
    assert_string_equal(out.v[0].type, "session.desired");
    fold_rt(&lcm_kind_session, s, &out, "s-r");
    assert_int_equal(s->desired_status, LCM_SS_TERMINATED);
    assert_string_equal(s->desired_reason, "learner cheated");
    assert_string_equal(s->desired_by, "token:ops-1");
    cJSON *j = lcm_kind_session.to_json(s);
    assert_string_equal(cJSON_GetObjectItem(j, "desired_reason")->valuestring, "learner cheated");
    assert_string_equal(cJSON_GetObjectItem(j, "desired_by")->valuestring, "token:ops-1");
    cJSON_Delete(j);

    /* asked again: nothing to record, the first reason stands */
    assert_int_equal(lcm_session_cmd_request(s, LCM_SS_TERMINATED, "other", "token:ops-2", T0 + 3,
                                             &out, &err), 0);
    assert_int_equal(out.n, 0);
    /* a request without a reason (set_desired) clears it: the reason belongs to its request */
    assert_int_equal(lcm_session_cmd_set_desired(s, LCM_SS_RUNNING, "svc", T0 + 4, &out, &err), 0);
    fold_rt(&lcm_kind_session, s, &out, "s-r");
    assert_null(s->desired_reason);
    assert_string_equal(s->desired_by, "svc");
    lcm_session_free(s);
    lcm_definition_free(d);
}

static void test_lab_fold(void **st)
{
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    assert_int_equal(lcm_lab_cmd_create("lab-1", "w-1", "cml-abc", "DEVASC", "def-1", 0, "ctl", T0, &out, &err), 0);
    struct lcm_lab *l = lcm_lab_new("lab-1");
    fold_rt(&lcm_kind_lab, l, &out, "lab-1");
    const char *names[] = {"pc_serial", "pc_vnc"};
    const uint16_t ports[] = {2000, 2001};
    assert_int_equal(lcm_lab_cmd_observe(l, "DEFINED_ON_CORE", "ctl", T0 + 1, &out, &err), 0);
    assert_int_equal(lcm_lab_cmd_assign_ports(l, names, ports, 2, "ctl", T0 + 2, &out, &err), 0);
    fold_rt(&lcm_kind_lab, l, &out, "lab-1");
    assert_int_equal(lcm_lab_cmd_assign_ports(l, names, ports, 2, "ctl", T0 + 2, &out, &err), LCM_DERR_CONFLICT);
    assert_int_equal(lcm_lab_cmd_bind(l, "s-1", "ctl", T0 + 3, &out, &err), 0);
    fold_rt(&lcm_kind_lab, l, &out, "lab-1");
    assert_int_equal(lcm_lab_cmd_bind(l, "s-2", "ctl", T0 + 3, &out, &err), LCM_DERR_CONFLICT);
    assert_int_equal(lcm_lab_cmd_request_action(l, LCM_LAB_ACT_START, "admin", T0 + 4, &out, &err), 0);
    fold_rt(&lcm_kind_lab, l, &out, "lab-1");
    assert_int_equal(lcm_lab_cmd_request_action(l, LCM_LAB_ACT_STOP, "admin", T0 + 4, &out, &err), LCM_DERR_CONFLICT);
    assert_int_equal(lcm_lab_cmd_transition(l, LCM_LAB_STARTING, NULL, "ctl", T0 + 5, &out, &err), 0);
    assert_int_equal(lcm_lab_cmd_action_done(l, NULL, "ctl", T0 + 6, &out, &err), 0);
    fold_rt(&lcm_kind_lab, l, &out, "lab-1");
    const int path[] = {LCM_LAB_BOOTED, LCM_LAB_STOPPING, LCM_LAB_STOPPED, LCM_LAB_WIPING, LCM_LAB_WIPED};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(lcm_lab_cmd_transition(l, path[i], NULL, "ctl", T0 + 10 + i, &out, &err), 0);
        fold_rt(&lcm_kind_lab, l, &out, "lab-1");
    }
    assert_int_equal(lcm_lab_cmd_unbind(l, "s-1", "ctl", T0 + 20, &out, &err), 0);
    fold_rt(&lcm_kind_lab, l, &out, "lab-1");
    assert_int_equal(l->nruns, 1);
    assert_int_equal(l->runs[0].ended_at, T0 + 20);
    /* the wiped lab keeps its ports and can be reused */
    assert_int_equal(l->nports, 2);
    assert_int_equal(lcm_lab_cmd_bind(l, "s-2", "ctl", T0 + 30, &out, &err), 0);
    fold_rt(&lcm_kind_lab, l, &out, "lab-1");
    assert_int_equal(l->nruns, 2);
    lcm_lab_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_definition_fold),
        cmocka_unit_test(test_sample_topology),
        cmocka_unit_test(test_template_fold),
        cmocka_unit_test(test_worker_fold),
        cmocka_unit_test(test_session_fold),
        cmocka_unit_test(test_session_request_reason),
        cmocka_unit_test(test_lab_fold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
