/* JSON validation of API bodies: every refusal names the offending field, so the API can
 * answer problem+json with it. Also the sample seeds (converted to JSON) validate. */
#include "builders.h"

#include <math.h>

#include "jsonx.h"
#include "session.h"
#include "session_time.h"

struct bad_case { const char *body; const char *field; };

static const char def_ok[] =
    "{\"name\":\"lab\",\"version\":\"1.0.0\",\"form_qualified_name\":\"F Q N\","
    "\"resource_requirements\":{\"cpu_cores\":3,\"memory_gb\":5,\"storage_gb\":50},"
    "\"node_count\":2}";

static void check_def(const char *body, const char *field)
{
    cJSON *b = cJSON_Parse(body);
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    int rc = lcm_definition_cmd_create("d", b, "author", T0, &out, &err);
    if (field) {
        if (rc == 0)
            fail_msg("accepted: %s", body);
        assert_int_equal(rc, LCM_DERR_INVALID);
        assert_int_equal(err.code, LCM_DERR_INVALID);
        if (strcmp(err.field, field))
            fail_msg("field %s, expected %s (%s) for %s", err.field, field, err.message, body);
        assert_true(err.message[0] != '\0');
        assert_int_equal(out.n, 0);
        assert_int_equal(lcm_derr_http_status(rc), 422);
        assert_string_equal(lcm_derr_code_name(rc), "invalid");
    } else if (rc) {
        fail_msg("refused %s: %s", err.field, err.message);
    }
    lcm_events_clear(&out);
    cJSON_Delete(b);
}

static void test_definition_errors(void **st)
{
    check_def(def_ok, NULL);
    struct bad_case cases[] = {
        {"[]", ""},
        {"{\"version\":\"1.0.0\"}", "name"},
        {"{\"name\":42,\"version\":\"1.0.0\"}", "name"},
        {"{\"name\":\"lab\"}", "version"},
        {"{\"name\":\"lab\",\"version\":\"1.0\"}", "version"},
        {"{\"name\":\"lab\",\"version\":\"v1.0.0\"}", "version"},
        {"{\"name\":\"lab\",\"version\":\"1.0.0\"}", "resource_requirements"},
        {"{\"name\":\"lab\",\"version\":\"1.0.0\",\"resource_requirements\":{\"memory_gb\":5}}",
         "resource_requirements.cpu_cores"},
        {"{\"name\":\"lab\",\"version\":\"1.0.0\",\"resource_requirements\":{\"cpu_cores\":-1,\"memory_gb\":5}}",
         "resource_requirements.cpu_cores"},
        {"{\"name\":\"lab\",\"version\":\"1.0.0\",\"resource_requirements\":{\"cpu_cores\":1.5,\"memory_gb\":5}}",
         "resource_requirements.cpu_cores"},
        {"{\"name\":\"lab\",\"version\":\"1.0.0\",\"resource_requirements\":{\"cpu_cores\":1,\"memory_gb\":\"x\"}}",
         "resource_requirements.memory_gb"},
        {"{\"name\":\"lab\",\"version\":\"1.0.0\",\"resource_requirements\":{\"cpu_cores\":1,\"memory_gb\":1,"
         "\"cml_version_min\":\"two\"}}", "resource_requirements.cml_version_min"},
        {"{\"name\":\"lab\",\"version\":\"1.0.0\",\"resource_requirements\":{\"cpu_cores\":1,\"memory_gb\":1,"
         "\"cml_version_min\":\"2.10.0\",\"cml_version_max\":\"2.9.1\"}}",
         "resource_requirements.cml_version_max"},
        {"{\"name\":\"lab\",\"version\":\"1.0.0\",\"resource_requirements\":{\"cpu_cores\":1,\"memory_gb\":1,"
         "\"node_definitions\":[\"iosv\",7]}}", "resource_requirements.node_definitions"},
        {"{\"name\":\"lab\",\"version\":\"1.0.0\",\"resource_requirements\":{\"cpu_cores\":1,\"memory_gb\":1}}",
         "node_count"},
        {"{\"name\":\"lab\",\"version\":\"1.0.0\",\"node_count\":0,\"resource_requirements\":{\"cpu_cores\":1,\"memory_gb\":1}}",
         "node_count"},
        {"{\"name\":\"lab\",\"version\":\"1.0.0\",\"node_count\":1,\"license_affinity\":[\"gold\"],"
         "\"resource_requirements\":{\"cpu_cores\":1,\"memory_gb\":1}}", "license_affinity[0]"},
        {"{\"name\":\"lab\",\"version\":\"1.0.0\",\"node_count\":1,\"license_affinity\":\"personal\","
         "\"resource_requirements\":{\"cpu_cores\":1,\"memory_gb\":1}}", "license_affinity"},
        {"{\"name\":\"lab\",\"version\":\"1.0.0\",\"node_count\":1,\"port_template\":[{\"name\":\"pc_serial\"},"
         "{\"name\":\"pc_serial\"}],\"resource_requirements\":{\"cpu_cores\":1,\"memory_gb\":1}}",
         "port_template[1].name"},
        {"{\"name\":\"lab\",\"version\":\"1.0.0\",\"node_count\":1,\"port_template\":[{\"name\":\"pc\","
         "\"protocol\":\"rdp\"}],\"resource_requirements\":{\"cpu_cores\":1,\"memory_gb\":1}}",
         "port_template[0].protocol"},
        {"{\"name\":\"lab\",\"version\":\"1.0.0\",\"node_count\":1,\"port_template\":[{\"name\":\"pc\"}],"
         "\"resource_requirements\":{\"cpu_cores\":1,\"memory_gb\":1}}", "port_template[0].protocol"},
        {"{\"name\":\"lab\",\"version\":\"1.0.0\",\"node_count\":1,\"lds_enabled\":true,"
         "\"resource_requirements\":{\"cpu_cores\":1,\"memory_gb\":1}}", "form_qualified_name"},
        {"{\"name\":\"lab\",\"version\":\"1.0.0\",\"node_count\":1,\"max_duration_minutes\":0,"
         "\"resource_requirements\":{\"cpu_cores\":1,\"memory_gb\":1}}", "max_duration_minutes"},
        {"{\"name\":\"lab\",\"version\":\"1.0.0\",\"node_count\":1,\"grading_enabled\":\"yes\","
         "\"resource_requirements\":{\"cpu_cores\":1,\"memory_gb\":1}}", "grading_enabled"},
        {"{\"name\":\"lab\",\"version\":\"1.0.0\",\"topology\":\"lab:\\n  title: x\\n\","
         "\"resource_requirements\":{\"cpu_cores\":1,\"memory_gb\":1}}", "topology"},
        {"{\"name\":\"lab\",\"version\":\"1.0.0\",\"node_count\":1,\"topology_sha256\":\"abc\","
         "\"resource_requirements\":{\"cpu_cores\":1,\"memory_gb\":1}}", "topology_sha256"},
        {"{\"name\":\"la\\u0001b\",\"version\":\"1.0.0\"}", "name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_def(cases[i].body, cases[i].field);
}

/* The upstream seed shape (exam-associate-auto-v1.1-lab-lab-2.5.1.yaml as JSON). */
static void test_definition_seed_shape(void **st)
{
    const char *seed =
        "{\"id\":\"exam-associate-auto-v1.1-lab-lab-2.5.1-v1.0.0\","
        "\"name\":\"exam-associate-auto-v1.1-lab-lab-2.5.1\",\"version\":\"1.0.0\","
        "\"form_qualified_name\":\"Exam Associate AUTO v1.1 LAB LAB-2.5.1\",\"lab_yaml_hash\":\"\","
        "\"grading_rules_uri\":null,\"resource_requirements\":{\"cpu_cores\":3,\"memory_gb\":5,"
        "\"storage_gb\":50,\"nested_virt\":true,\"ami_requirements\":[{\"cml_version_min\":\"2.7.0\","
        "\"node_definitions_required\":[\"ubuntu-desktop-24-04-v2\",\"mock-server\"]}]},"
        "\"node_count\":2,\"license_affinity\":[\"personal\"],\"port_template\":{\"ports\":["
        "{\"name\":\"vmanage-mock_serial\",\"protocol\":\"tcp\"},"
        "{\"name\":\"ubuntu-desktop_serial\",\"protocol\":\"tcp\"},"
        "{\"name\":\"ubuntu-desktop_vnc\",\"protocol\":\"tcp\"}]},\"max_duration_minutes\":120,"
        "\"warm_pool_depth\":0,\"lab_reuse_enabled\":true,\"created_by\":\"seeder\"}";
    cJSON *b = cJSON_Parse(seed);
    struct lcm_definition *d = lcm_definition_new("x");
    struct lcm_derr err;
    if (lcm_definition_validate(b, d, &err))
        fail_msg("%s: %s", err.field, err.message);
    assert_string_equal(d->req.cml_version_min, "2.7.0");
    assert_int_equal(d->req.n_node_definitions, 2);
    assert_int_equal(d->nports, 3);
    assert_string_equal(d->ports[2].node_label, "ubuntu-desktop");
    lcm_definition_free(d);
    cJSON_Delete(b);
}

static void check_tpl(const char *body, const char *field)
{
    cJSON *b = cJSON_Parse(body);
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    int rc = lcm_template_cmd_create(b, "admin", T0, &out, &err);
    if (field) {
        if (rc == 0)
            fail_msg("accepted: %s", body);
        if (strcmp(err.field, field))
            fail_msg("field %s, expected %s (%s)", err.field, field, err.message);
        assert_int_equal(out.n, 0);
    } else if (rc) {
        fail_msg("refused %s: %s", err.field, err.message);
    }
    lcm_events_clear(&out);
    cJSON_Delete(b);
}

static void test_template_errors(void **st)
{
    check_tpl(multi_json, NULL);
    check_tpl(single_json, NULL);
    struct bad_case cases[] = {
        {"{}", "name"},
        {"{\"name\":\"a b\"}", "name"},
        {"{\"name\":\"t\"}", "instance_type"},
        {"{\"name\":\"t\",\"instance_type\":\"m5\"}", "capacity"},
        {"{\"name\":\"t\",\"instance_type\":\"m5\",\"capacity\":{\"cpu_cores\":1,\"memory_gb\":1,\"storage_gb\":1}}",
         "capacity.max_nodes"},
        {"{\"name\":\"t\",\"instance_type\":\"m5\",\"capacity\":{\"cpu_cores\":0,\"memory_gb\":1,\"storage_gb\":1,\"max_nodes\":1}}",
         "capacity.cpu_cores"},
        {"{\"name\":\"t\",\"instance_type\":\"m5\",\"license_type\":\"gold\",\"capacity\":{\"cpu_cores\":1,"
         "\"memory_gb\":1,\"storage_gb\":1,\"max_nodes\":1}}", "license_type"},
        {"{\"name\":\"t\",\"instance_type\":\"m5\",\"cost_per_hour_usd\":-1,\"capacity\":{\"cpu_cores\":1,"
         "\"memory_gb\":1,\"storage_gb\":1,\"max_nodes\":1}}", "cost_per_hour_usd"},
        {"{\"name\":\"t\",\"instance_type\":\"m5\",\"security_group_ids\":\"sg-1\",\"capacity\":{\"cpu_cores\":1,"
         "\"memory_gb\":1,\"storage_gb\":1,\"max_nodes\":1}}", "security_group_ids"},
        {"{\"name\":\"t\",\"instance_type\":\"m5\",\"tags\":{\"a\":1},\"capacity\":{\"cpu_cores\":1,"
         "\"memory_gb\":1,\"storage_gb\":1,\"max_nodes\":1}}", "tags"},
        {"{\"name\":\"t\",\"instance_type\":\"m5\",\"regions\":{\"eu-west-1\":{\"key_name\":5}},"
         "\"capacity\":{\"cpu_cores\":1,\"memory_gb\":1,\"storage_gb\":1,\"max_nodes\":1}}",
         "regions.eu-west-1.key_name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_tpl(cases[i].body, cases[i].field);
}

static struct lcm_definition *active_def(int max_minutes)
{
    cJSON *b = cJSON_Parse(def_ok);
    cJSON_AddNumberToObject(b, "max_duration_minutes", max_minutes);
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    assert_int_equal(lcm_definition_cmd_create("d1", b, "author", T0 - 100, &out, &err), 0);
    cJSON_Delete(b);
    struct lcm_definition *d = lcm_definition_new("d1");
    fold(&lcm_kind_definition, d, &out);
    return d;
}

static void test_session_create(void **st)
{
    struct lcm_definition *d = active_def(60);
    struct lcm_time_params p;
    lcm_time_params_default(&p);
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    struct lcm_session_create c;
    /* body parsing */
    struct bad_case bodies[] = {
        {"{}", "definition_id"},
        {"{\"definition_id\":\"d1\",\"reservation_id\":\"has space\"}", "reservation_id"},
        {"{\"definition_id\":\"d1\",\"timeslot\":{\"start\":\"tomorrow\"}}", "timeslot.start"},
        {"{\"definition_id\":\"d1\",\"timeslot\":{\"start\":\"2025-11-27T11:00:00Z\",\"end\":5}}", "timeslot.end"},
        {"{\"definition_id\":\"d1\",\"timeslot\":[]}", "timeslot"},
        {"{\"definition_id\":\"d1\",\"owner\":7}", "owner"},
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        cJSON *b = cJSON_Parse(bodies[i].body);
        assert_int_equal(lcm_session_parse_create(b, &c, &err), LCM_DERR_INVALID);
        assert_string_equal(err.field, bodies[i].field);
        cJSON_Delete(b);
    }
    /* a pending_sync definition cannot be booked */
    c = (struct lcm_session_create){.id = "s1", .start = T0 + 600};
    assert_int_equal(lcm_session_cmd_create(&c, d, &p, "svc", T0, &out, &err), LCM_DERR_CONFLICT);
    assert_string_equal(err.field, "definition_id");
    assert_int_equal(lcm_definition_cmd_transition(d, LCM_DEF_ACTIVE, NULL, "x", T0, &out, &err), 0);
    fold(&lcm_kind_definition, d, &out);
    assert_int_equal(lcm_session_cmd_create(&c, NULL, &p, "svc", T0, &out, &err), LCM_DERR_NOT_FOUND);
    /* start in the past beyond the grace; end before start; longer than max duration */
    c.start = T0 - 6 * 60;
    assert_int_equal(lcm_session_cmd_create(&c, d, &p, "svc", T0, &out, &err), LCM_DERR_INVALID);
    assert_string_equal(err.field, "timeslot.start");
    c.start = T0 + 600;
    c.end = T0 + 600;
    assert_int_equal(lcm_session_cmd_create(&c, d, &p, "svc", T0, &out, &err), LCM_DERR_INVALID);
    assert_string_equal(err.field, "timeslot.end");
    c.end = T0 + 600 + 61 * 60;
    assert_int_equal(lcm_session_cmd_create(&c, d, &p, "svc", T0, &out, &err), LCM_DERR_INVALID);
    assert_string_equal(err.field, "timeslot.end");
    assert_int_equal(out.n, 0);
    /* "now" session: end defaults to now + max duration; owner defaults to the caller */
    c = (struct lcm_session_create){.id = "s2"};
    assert_int_equal(lcm_session_cmd_create(&c, d, &p, "svc:exam", T0, &out, &err), 0);
    struct lcm_session *s = lcm_session_new("s2");
    fold(&lcm_kind_session, s, &out);
    assert_int_equal(s->start, 0);
    assert_int_equal(s->end, T0 + 3600);
    assert_string_equal(s->owner, "svc:exam");
    assert_int_equal(s->boot_lead_minutes, 20);
    assert_roundtrip(&lcm_kind_session, s, "s2");
    lcm_session_free(s);
    lcm_definition_free(d);
}

static void test_score_errors(void **st)
{
    struct lcm_session *s = lcm_session_new("s");
    s->version = 3;
    s->status = LCM_SS_GRADING;
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    struct bad_case cases[] = {
        {"{}", "score.score"},
        {"{\"score\":-1,\"max_score\":5}", "score.score"},
        {"{\"score\":6,\"max_score\":5}", "score.max_score"},
        {"{\"score\":4,\"max_score\":5,\"cut_score\":6}", "score.cut_score"},
        {"{\"score\":4,\"max_score\":5,\"passed\":\"yes\"}", "score.passed"},
        {"{\"score\":4,\"max_score\":5,\"sections\":{}}", "score.sections"},
        {"{\"score\":4,\"max_score\":5,\"submitted_at\":\"yesterday\"}", "score.submitted_at"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *b = cJSON_Parse(cases[i].body);
        assert_int_equal(lcm_session_cmd_score(s, b, "g", T0, &out, &err), LCM_DERR_INVALID);
        assert_string_equal(err.field, cases[i].field);
        cJSON_Delete(b);
    }
    s->status = LCM_SS_RUNNING;
    cJSON *b = cJSON_Parse("{\"score\":4,\"max_score\":5}");
    assert_int_equal(lcm_session_cmd_score(s, b, "g", T0, &out, &err), LCM_DERR_CONFLICT);
    assert_int_equal(lcm_derr_http_status(err.code), 409);
    cJSON_Delete(b);
    assert_int_equal(lcm_session_cmd_user_session(s, NULL, NULL, "{\"not\":\"array\"}", NULL, "x",
                                                  T0, &out, &err), LCM_DERR_INVALID);
    assert_string_equal(err.field, "devices");
    assert_int_equal(out.n, 0);
    lcm_session_free(s);
}

/* lcm_jx_print and the hash fields of lcm_jx_emit_fields are byte for byte what
 * cJSON_PrintUnformatted gives (the hashes written before must keep their bytes), over
 * random trees with awkward numbers and every byte value in strings and keys. */
static unsigned rnd_state = 12345;
static unsigned rnd(void)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 8) & 0xffffff;
}

static cJSON *rnd_number(void)
{
    static const double special[] = {0, 1, -1, 42, 2147483647.0, -2147483647.0, -2147483648.0,
                                     2147483648.0, 4294967296.0, 1e15, 1e15 + 1, 1e16, 1e17,
                                     9007199254740993.0, 1e300, -1e300, 0.1, 40.5, 3.9641,
                                     12.25, 1.0 / 3, 2.0 / 3, 5e-324, 1e-7, 123456.789,
                                     1764237600, -0.5, 0.30000000000000004};
    unsigned k = rnd() % 40;
    if (k < sizeof special / sizeof *special)
        return cJSON_CreateNumber(special[k]);
    if (k < 32)
        return cJSON_CreateNumber((double)((int)rnd() - 0x800000) * (k % 2 ? 1 : 1000));
    if (k < 34) {
        cJSON *n = cJSON_CreateNumber(0);
        n->valuedouble = k == 32 ? -0.0 : (rnd() % 2 ? NAN : -INFINITY);
        return n;
    }
    return cJSON_CreateNumber(((double)rnd() - 8388608.0) / (double)(rnd() % 1000 + 1));
}

static void rnd_text(char *buf, size_t cap)
{
    size_t n = rnd() % (cap - 1);
    for (size_t i = 0; i < n; i++) {
        unsigned k = rnd() % 4;
        buf[i] = (char)(k == 0 ? 1 + rnd() % 255 : k == 1 ? 1 + rnd() % 40 : 'a' + rnd() % 26);
    }
    buf[n] = 0;
}

static cJSON *rnd_tree(int depth)
{
    char txt[40];
    unsigned k = rnd() % (depth > 3 ? 6 : 8);
    switch (k) {
    case 0: return cJSON_CreateNull();
    case 1: return cJSON_CreateBool(rnd() % 2);
    case 2: case 3: return rnd_number();
    case 4: rnd_text(txt, sizeof txt); return cJSON_CreateString(txt);
    case 5: return cJSON_CreateRaw(rnd() % 2 ? "[1,2]" : "\"raw\"");
    case 6: {
        cJSON *a = cJSON_CreateArray();
        for (unsigned i = rnd() % 5; i > 0; i--)
            cJSON_AddItemToArray(a, rnd_tree(depth + 1));
        return a;
    }
    default: {
        cJSON *o = cJSON_CreateObject();
        for (unsigned i = rnd() % 5; i > 0; i--) {
            rnd_text(txt, sizeof txt);
            cJSON_AddItemToObject(o, txt, rnd_tree(depth + 1));
        }
        return o;
    }
    }
}

struct emitted { char *names[64], *values[64]; size_t n; };
static void emit_keep(const char *f, const char *v, void *ud)
{
    struct emitted *e = ud;
    assert_true(e->n < 64);
    e->names[e->n] = strdup(f);
    e->values[e->n++] = strdup(v);
}

static void test_print_matches_cjson(void **st)
{
    (void)st;
    for (int t = 0; t < 20000; t++) {
        cJSON *tree = rnd_tree(0);
        char *want = cJSON_PrintUnformatted(tree), *got = lcm_jx_print(tree);
        assert_non_null(want);
        assert_non_null(got);
        assert_string_equal(got, want);
        free(got);
        cJSON_free(want);
        cJSON_Delete(tree);
    }
    for (int t = 0; t < 2000; t++) {
        cJSON *o = cJSON_CreateObject();
        for (int i = 0; i < 12; i++) {
            char key[16];
            snprintf(key, sizeof key, "f%d", i);
            cJSON_AddItemToObject(o, key, rnd_tree(1));
        }
        struct emitted e = {.n = 0};
        lcm_jx_emit_fields(o, NULL, emit_keep, &e);
        size_t j = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, o) {
            if (cJSON_IsNull(it))
                continue;
            assert_true(j < e.n);
            assert_string_equal(e.names[j], it->string);
            if (cJSON_IsString(it)) {
                assert_string_equal(e.values[j], it->valuestring);
            } else {
                char *want = cJSON_PrintUnformatted(it);
                assert_string_equal(e.values[j], want);
                cJSON_free(want);
            }
            j++;
        }
        assert_int_equal(j, e.n);
        for (size_t i = 0; i < e.n; i++) {
            free(e.names[i]);
            free(e.values[i]);
        }
        cJSON_Delete(o);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_print_matches_cjson),
        cmocka_unit_test(test_definition_errors),
        cmocka_unit_test(test_definition_seed_shape),
        cmocka_unit_test(test_template_errors),
        cmocka_unit_test(test_session_create),
        cmocka_unit_test(test_score_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
