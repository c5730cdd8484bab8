/* Unit tests of the cml plugin's pure parts: response parsers (spec-shaped answers, hostile
 * ones, bounds), RFC 3339 times, the CML → lab status mapping and endpoint templates. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cml_endpoint.h"
#include "cml_parse.h"

#define S(x) x, strlen(x)

static void test_token(void **state)
{
    struct cml_arena a = { 0 };
    const char *tok;
    char why[128];
    assert_int_equal(cml_parse_token(&a, S("\"aaa.bbb.ccc\""), &tok, why, sizeof why), 0);
    assert_string_equal(tok, "aaa.bbb.ccc");
    assert_int_equal(cml_parse_token(&a, S("{\"token\":\"x\"}"), &tok, why, sizeof why),
                     LCM_E_PROTO);
    assert_null(tok);
    /* A token that would split the Authorization header is refused. */
    assert_int_equal(cml_parse_token(&a, S("\"abc\\r\\nX-Evil: 1\""), &tok, why, sizeof why),
                     LCM_E_PROTO);
    assert_int_equal(cml_parse_token(&a, S("\"\""), &tok, why, sizeof why), LCM_E_PROTO);
    assert_int_equal(cml_parse_token(&a, "", 0, &tok, why, sizeof why), LCM_E_PROTO);
    cml_arena_free(&a);
}

static void test_error_text(void **state)
{
    char out[64];
    cml_parse_error_text(S("{\"code\":404,\"description\":\"Lab not found: x\"}"), out,
                         sizeof out);
    assert_string_equal(out, "Lab not found: x");
    cml_parse_error_text(S("<html>\n  <b>Bad   gateway</b>\n</html>"), out, sizeof out);
    assert_string_equal(out, "<html> <b>Bad gateway</b> </html>");
    cml_parse_error_text(S("\x01\x02\xff"), out, sizeof out);
    assert_string_equal(out, "?");
    cml_parse_error_text(NULL, 0, out, sizeof out);
    assert_string_equal(out, "");
    char tiny[4];
    cml_parse_error_text(S("{\"description\":\"abcdef\"}"), tiny, sizeof tiny);
    assert_string_equal(tiny, "abc");
}

static void test_system_info_and_health(void **state)
{
    struct cml_arena a = { 0 };
    struct lcm_rt_system_info si;
    char why[128];
    assert_int_equal(cml_parse_system_info(&a, S("{\"version\":\"2.9.0+build.3\",\"ready\":true,"
                                                 "\"allow_ssh_pubkey_auth\":false,\"oui\":null}"),
                                           &si, why, sizeof why), 0);
    assert_string_equal(si.version, "2.9.0+build.3");
    assert_int_equal(si.ready, 1);
    assert_int_equal(cml_parse_system_info(&a, S("{\"version\":\"2.9\",\"ready\":\"yes\"}"), &si,
                                           why, sizeof why), 0);
    assert_int_equal(si.ready, 0);           /* only a JSON true counts */
    assert_int_equal(cml_parse_system_info(&a, S("{\"ready\":true}"), &si, why, sizeof why),
                     LCM_E_PROTO);
    assert_int_equal(cml_parse_system_info(&a, S("[1]"), &si, why, sizeof why), LCM_E_PROTO);

    int valid, lic;
    assert_int_equal(cml_parse_health(S("{\"valid\":true,\"is_licensed\":true,\"computes\":{},"
                                        "\"controller\":{\"valid\":true}}"), &valid, &lic, why,
                                      sizeof why), 0);
    assert_int_equal(valid, 1);
    assert_int_equal(lic, 1);
    assert_int_equal(cml_parse_health(S("{\"valid\":true,\"controller\":{\"valid\":false}}"),
                                      &valid, &lic, why, sizeof why), 0);
    assert_int_equal(valid, 0);
    assert_int_equal(cml_parse_health(S("{\"valid\":null}"), &valid, &lic, why, sizeof why), 0);
    assert_int_equal(valid, 0);
    cml_arena_free(&a);
}

static void test_licence(void **state)
{
    struct cml_arena a = { 0 };
    struct lcm_rt_licence l;
    char why[128];
    const char *ent =
        "{\"registration\":{\"status\":\"COMPLETED\"},\"authorization\":{\"status\":"
        "\"IN_COMPLIANCE\"},\"features\":[{\"id\":\"regid.x.CML_ENTERPRISE\",\"max\":1},"
        "{\"id\":\"regid.2019-10.com.cisco.CML_NODE_COUNT,1.0\",\"name\":\"CML - Node\","
        "\"max\":300}],\"product_license\":{\"active\":\"CML_Enterprise\",\"is_enterprise\":true}}";
    assert_int_equal(cml_parse_licence(&a, S(ent), &l, why, sizeof why), 0);
    assert_string_equal(l.product_license, "enterprise");
    assert_string_equal(l.registration_status, "COMPLETED");
    assert_string_equal(l.authorization_status, "IN_COMPLIANCE");
    assert_int_equal(l.registered, 1);
    assert_int_equal(l.node_limit, 300);

    const char *pers = "{\"registration\":{\"status\":\"UNREGISTERED\"},\"product_license\":"
                       "{\"active\":\"CML_Personal\"}}";
    assert_int_equal(cml_parse_licence(&a, S(pers), &l, why, sizeof why), 0);
    assert_string_equal(l.product_license, "personal");
    assert_int_equal(l.registered, 0);
    assert_int_equal(l.node_limit, 20);      /* built into personal licences */

    assert_int_equal(cml_parse_licence(&a, S("{\"product_license\":{\"active\":\"CML_Eval\"}}"),
                                       &l, why, sizeof why), 0);
    assert_string_equal(l.product_license, "evaluation");
    assert_int_equal(cml_parse_licence(&a, S("{\"product_license\":{\"active\":\"Odd_One\"}}"),
                                       &l, why, sizeof why), 0);
    assert_string_equal(l.product_license, "odd_one");
    /* Hostile numbers are clamped, wrong types ignored. */
    assert_int_equal(cml_parse_licence(&a, S("{\"registration\":{\"status\":1},\"features\":"
                                             "[{\"id\":\"NODE\",\"max\":1e300},{\"id\":\"node\","
                                             "\"max\":\"9\"}],\"product_license\":{\"active\":"
                                             "\"CML_Enterprise\"}}"), &l, why, sizeof why), 0);
    assert_int_equal(l.node_limit, 1000000);
    assert_null(l.registration_status);
    assert_int_equal(cml_parse_licence(&a, S("{}"), &l, why, sizeof why), LCM_E_PROTO);
    cml_arena_free(&a);
}

static void test_import_and_lab(void **state)
{
    struct cml_arena a = { 0 };
    char why[128];
    struct lcm_rt_imported im;
    assert_int_equal(cml_parse_imported(&a, S("{\"id\":\"90f84e38-a71c-4d57-8d90-00fa8a197385\","
                                              "\"warnings\":[\"w1\",2,\"w2\"]}"), &im, why,
                                        sizeof why), 0);
    assert_string_equal(im.lab_id, "90f84e38-a71c-4d57-8d90-00fa8a197385");
    assert_int_equal(im.warnings.n, 2);
    assert_string_equal(im.warnings.v[1], "w2");
    assert_int_equal(cml_parse_imported(&a, S("{\"id\":\"x\",\"warnings\":null}"), &im, why,
                                        sizeof why), 0);
    assert_int_equal(im.warnings.n, 0);
    assert_int_equal(cml_parse_imported(&a, S("{\"warnings\":[]}"), &im, why, sizeof why),
                     LCM_E_PROTO);

    struct lcm_rt_lab lab;
    assert_int_equal(cml_parse_lab(&a, S("{\"id\":\"L1\",\"lab_title\":\"T\",\"state\":\"STOPPED\","
                                         "\"node_count\":3,\"created\":\"2025-01-01T00:00:00Z\","
                                         "\"effective_permissions\":[]}"), &lab, why,
                                   sizeof why), 0);
    assert_string_equal(lab.id, "L1");
    assert_string_equal(lab.title, "T");
    assert_string_equal(lab.state, "STOPPED");
    assert_int_equal(lab.node_count, 3);
    assert_int_equal(cml_parse_lab(&a, S("{\"id\":\"L1\",\"node_count\":-5,\"state\":\"X\"}"),
                                   &lab, why, sizeof why), 0);
    assert_int_equal(lab.node_count, 0);
    assert_int_equal(cml_parse_lab(&a, S("{\"id\":\"L1\"}"), &lab, why, sizeof why),
                     LCM_E_PROTO);

    int b;
    assert_int_equal(cml_parse_bool(S("true"), &b, why, sizeof why), 0);
    assert_int_equal(b, 1);
    assert_int_equal(cml_parse_bool(S(" false "), &b, why, sizeof why), 0);
    assert_int_equal(b, 0);
    assert_int_equal(cml_parse_bool(S("\"true\""), &b, why, sizeof why), LCM_E_PROTO);
    cml_arena_free(&a);
}

static void test_nodes(void **state)
{
    struct cml_arena a = { 0 };
    char why[128];
    struct lcm_rt_nodes n;
    const char **cfg;
    const char *body =
        "[{\"id\":\"n1\",\"label\":\"PC\",\"node_definition\":\"ubuntu\",\"state\":\"BOOTED\","
        "\"tags\":[\"serial:4567\",\"vnc:4568\"],\"configuration\":\"hostname pc\"},"
        "{\"id\":\"n2\",\"label\":\"R1\",\"node_definition\":\"iosv\",\"state\":\"STOPPED\","
        "\"tags\":[],\"configuration\":[{\"name\":\"ios_config.txt\",\"content\":\"hostname r1\"},"
        "{\"name\":\"x\",\"content\":\"y\"}]},"
        "{\"id\":\"n3\",\"label\":\"S\",\"tags\":[1,\"a\"],\"configuration\":{\"name\":\"f\","
        "\"content\":\"c3\"}}]";
    assert_int_equal(cml_parse_nodes(&a, S(body), &n, &cfg, why, sizeof why), 0);
    assert_int_equal(n.n, 3);
    assert_string_equal(n.v[0].label, "PC");
    assert_int_equal(n.v[0].tags.n, 2);
    assert_string_equal(n.v[0].tags.v[1], "vnc:4568");
    assert_string_equal(cfg[0], "hostname pc");
    assert_string_equal(cfg[1], "hostname r1");
    assert_string_equal(cfg[2], "c3");
    assert_int_equal(n.v[2].tags.n, 1);      /* non-strings skipped */
    assert_null(n.v[2].state);
    assert_int_equal(cml_parse_nodes(&a, S("[]"), &n, NULL, why, sizeof why), 0);
    assert_int_equal(n.n, 0);
    /* The id-only form (data=false) is not what we asked for. */
    assert_int_equal(cml_parse_nodes(&a, S("[\"n1\"]"), &n, NULL, why, sizeof why),
                     LCM_E_PROTO);
    assert_int_equal(cml_parse_nodes(&a, S("[{\"label\":\"no id\"}]"), &n, NULL, why,
                                     sizeof why), LCM_E_PROTO);
    /* Too many tags on one node. */
    size_t cap = 64 + 8 * (CML_MAX_TAGS + 2);
    char *big = malloc(cap);
    size_t o = (size_t)snprintf(big, cap, "[{\"id\":\"n\",\"tags\":[");
    for (int i = 0; i < CML_MAX_TAGS + 1; i++)
        o += (size_t)snprintf(big + o, cap - o, "%s\"t\"", i ? "," : "");
    snprintf(big + o, cap - o, "]}]");
    assert_int_equal(cml_parse_nodes(&a, big, strlen(big), &n, NULL, why, sizeof why),
                     LCM_E_PROTO);
    free(big);
    cml_arena_free(&a);
}

static void test_labs_stats_events(void **state)
{
    struct cml_arena a = { 0 };
    char why[128];
    struct lcm_rt_lab_ids ids;
    assert_int_equal(cml_parse_lab_ids(&a, S("[\"a\",\"b\"]"), &ids, why, sizeof why), 0);
    assert_int_equal(ids.ids.n, 2);
    assert_int_equal(cml_parse_lab_ids(&a, S("{}"), &ids, why, sizeof why), LCM_E_PROTO);

    struct lcm_rt_system_stats st;
    const char *stats =
        "{\"computes\":{\"c1\":{\"hostname\":\"h\",\"is_controller\":true,\"stats\":{\"cpu\":"
        "{\"count\":48,\"percent\":12.5},\"memory\":{\"used\":1,\"free\":1,\"total\":2},\"disk\":"
        "{\"used\":1,\"free\":1,\"total\":2},\"dominfo\":{\"running_nodes\":4,\"allocated_cpus\":"
        "1,\"allocated_memory\":1}}},\"c2\":{\"stats\":{\"dominfo\":{\"running_nodes\":2}}}},"
        "\"all\":{\"cpu\":{\"count\":48,\"percent\":150},\"memory\":{\"used\":100,\"free\":"
        "100,\"total\":200},\"disk\":{\"used\":5,\"free\":5,\"total\":10}},\"controller\":{}}";
    assert_int_equal(cml_parse_stats(S(stats), &st, why, sizeof why), 0);
    assert_int_equal(st.computes, 2);
    assert_int_equal(st.running_nodes, 6);
    assert_true(st.cpu_percent == 100);      /* clamped */
    assert_int_equal(st.mem_total_bytes, 200);
    assert_int_equal(st.disk_used_bytes, 5);
    assert_int_equal(cml_parse_stats(S("{\"controller\":{}}"), &st, why, sizeof why),
                     LCM_E_PROTO);

    struct lcm_rt_activity act;
    const char *ev =
        "[{\"category\":\"boot_node\",\"timestamp\":\"2025-03-01T10:00:00Z\",\"data\":"
        "{\"lab_id\":\"L\"}},"
        "{\"category\":\"user_activity\",\"timestamp\":\"2025-03-01T10:05:00.250+00:00\","
        "\"data\":{}},"
        "{\"category\":\"system_stats\",\"timestamp\":\"2025-03-01T11:00:00Z\",\"data\":{}},"
        "{\"category\":\"start_lab\",\"timestamp\":\"garbage\",\"data\":{}},"
        "{\"category\":\"stop_lab\",\"timestamp\":\"2025-03-01T09:00:00Z\",\"data\":7}, 5]";
    assert_int_equal(cml_parse_events(&a, S(ev), 0, &act, why, sizeof why), 0);
    assert_int_equal(act.n, 4);              /* the undatable one and the non-object dropped */
    int64_t t5;
    assert_int_equal(cml_rfc3339_ms("2025-03-01T10:05:00.250Z", &t5), 0);
    assert_true(act.last_activity_ms == t5); /* system_stats/boot_node are not users */
    assert_string_equal(act.v[0].lab_id, "L");
    int64_t since;
    assert_int_equal(cml_rfc3339_ms("2025-03-01T10:30:00Z", &since), 0);
    assert_int_equal(cml_parse_events(&a, S(ev), since, &act, why, sizeof why), 0);
    assert_int_equal(act.n, 1);
    assert_true(act.last_activity_ms == 0);
    assert_int_equal(cml_parse_events(&a, S("{}"), 0, &act, why, sizeof why), LCM_E_PROTO);

    assert_string_equal(cml_parse_extracted(&a, S("\"cfg\"")), "cfg");
    assert_string_equal(cml_parse_extracted(&a, S("{\"configuration\":\"c2\"}")), "c2");
    assert_null(cml_parse_extracted(&a, S("{}")));
    assert_null(cml_parse_extracted(&a, "", 0));
    cml_arena_free(&a);
}

static void test_node_definitions(void **state)
{
    struct cml_arena a = { 0 };
    char why[128];
    struct lcm_rt_node_definitions nd;
    /* the spec's shape (trimmed): objects with an id and much else we ignore */
    assert_int_equal(cml_parse_node_definitions(&a, S(
        "[{\"id\":\"iosv\",\"boot\":{\"timeout\":180},\"general\":{\"nature\":\"router\"}},"
        "{\"id\":\"ubuntu-desktop-24-04-v2\",\"ui\":{\"label\":\"x\"}},"
        "{\"id\":\"iosv\"},"                          /* duplicate: kept once */
        "{\"id\":\"\"},{\"id\":7},{\"nope\":1},\"iosv\",null,"  /* unusable: skipped */
        "{\"id\":\"bad\\nline\"},"
        "{\"id\":\"external_connector\"}]"), &nd, why, sizeof why), 0);
    assert_int_equal(nd.ids.n, 3);
    assert_string_equal(nd.ids.v[0], "iosv");
    assert_string_equal(nd.ids.v[1], "ubuntu-desktop-24-04-v2");
    assert_string_equal(nd.ids.v[2], "external_connector");

    assert_int_equal(cml_parse_node_definitions(&a, S("[]"), &nd, why, sizeof why), 0);
    assert_int_equal(nd.ids.n, 0);
    assert_null(nd.ids.v);

    /* an id of 250 characters is CML's limit; 251 is not an id */
    char big[600], id250[251], id251[252];
    memset(id250, 'a', 250);
    id250[250] = '\0';
    memset(id251, 'b', 251);
    id251[251] = '\0';
    snprintf(big, sizeof big, "[{\"id\":\"%s\"},{\"id\":\"%s\"}]", id250, id251);
    assert_int_equal(cml_parse_node_definitions(&a, S(big), &nd, why, sizeof why), 0);
    assert_int_equal(nd.ids.n, 1);
    assert_int_equal(strlen(nd.ids.v[0]), 250);

    /* not a list, or a list with nothing usable: the answer is not understood */
    assert_int_equal(cml_parse_node_definitions(&a, S("{\"id\":\"iosv\"}"), &nd, why, sizeof why),
                     LCM_E_PROTO);
    assert_non_null(strstr(why, "not a JSON array"));
    assert_int_equal(cml_parse_node_definitions(&a, S("[1,{\"x\":2}]"), &nd, why, sizeof why),
                     LCM_E_PROTO);
    assert_non_null(strstr(why, "usable id"));
    assert_int_equal(cml_parse_node_definitions(&a, "", 0, &nd, why, sizeof why), LCM_E_PROTO);
    assert_int_equal(cml_parse_node_definitions(&a, S("[{\"id\":\"x\"}"), &nd, why, sizeof why),
                     LCM_E_PROTO);
    cml_arena_free(&a);
}

static void test_rfc3339_and_status(void **state)
{
    int64_t t;
    assert_int_equal(cml_rfc3339_ms("1970-01-01T00:00:00Z", &t), 0);
    assert_true(t == 0);
    assert_int_equal(cml_rfc3339_ms("2000-03-01T00:00:00.5Z", &t), 0);
    assert_true(t == 951868800500LL);
    assert_int_equal(cml_rfc3339_ms("2000-03-01T02:00:00+02:00", &t), 0);
    assert_true(t == 951868800000LL);
    assert_int_equal(cml_rfc3339_ms("2000-02-29T23:00:00-01:00", &t), 0);
    assert_true(t == 951868800000LL);
    assert_int_equal(cml_rfc3339_ms("2025-01-01T00:00:00.123456789Z", &t), 0);
    assert_int_equal(cml_rfc3339_ms("2025-01-01T00:00:00", &t), -1);   /* no offset */
    assert_int_equal(cml_rfc3339_ms("2025-13-01T00:00:00Z", &t), -1);
    assert_int_equal(cml_rfc3339_ms("2025-01-01T00:00:00.Z", &t), -1);
    assert_int_equal(cml_rfc3339_ms("2025-01-01T00:00:00Zjunk", &t), -1);
    assert_int_equal(cml_rfc3339_ms(NULL, &t), -1);

    assert_string_equal(cml_lab_status("DEFINED_ON_CORE"), "defined");
    assert_string_equal(cml_lab_status("STARTED"), "booted");
    assert_string_equal(cml_lab_status("BOOTED"), "booted");
    assert_string_equal(cml_lab_status("STOPPED"), "stopped");
    assert_string_equal(cml_lab_status("QUEUED"), "queued");
    assert_null(cml_lab_status("DISCONNECTED"));
    assert_null(cml_lab_status(NULL));

    assert_true(cml_user_category("user_activity"));
    assert_true(cml_user_category("start_lab"));
    assert_false(cml_user_category("system_stats"));
    assert_false(cml_user_category(NULL));
}

static void test_endpoint(void **state)
{
    char out[256], err[200];
    assert_int_equal(cml_endpoint_resolve(NULL, "10.0.0.5", NULL, NULL, out, sizeof out, err,
                                          sizeof err), 0);
    assert_string_equal(out, "https://10.0.0.5");
    assert_int_equal(cml_endpoint_resolve(NULL, "https://cml.example:8443/", NULL, NULL, out,
                                          sizeof out, err, sizeof err), 0);
    assert_string_equal(out, "https://cml.example:8443");
    assert_int_equal(cml_endpoint_resolve("http://127.0.0.1:9100/{instance_id}",
                                          "https://10.0.0.5", "i-0abc", "w1", out, sizeof out,
                                          err, sizeof err), 0);
    assert_string_equal(out, "http://127.0.0.1:9100/i-0abc");
    assert_int_equal(cml_endpoint_resolve("https://{private_ip}:8443/", "https://user@10.1.2.3:1/x",
                                          NULL, NULL, out, sizeof out, err, sizeof err), 0);
    assert_string_equal(out, "https://10.1.2.3:8443");
    assert_int_equal(cml_endpoint_resolve("http://sim/{worker_id}", NULL, NULL, "w-7", out,
                                          sizeof out, err, sizeof err), 0);
    assert_string_equal(out, "http://sim/w-7");
    /* Missing values, unknown placeholders and unsafe values are refused. */
    assert_int_equal(cml_endpoint_resolve("http://sim/{instance_id}", NULL, NULL, "w", out,
                                          sizeof out, err, sizeof err), -1);
    assert_non_null(strstr(err, "{instance_id}"));
    assert_int_equal(cml_endpoint_resolve(NULL, NULL, NULL, NULL, out, sizeof out, err,
                                          sizeof err), -1);
    assert_int_equal(cml_endpoint_expand("http://x/{bogus}", "i", "w", "p", out, sizeof out,
                                         err, sizeof err), -1);
    assert_int_equal(cml_endpoint_expand("http://x/{instance_id", "i", "w", "p", out,
                                         sizeof out, err, sizeof err), -1);
    assert_int_equal(cml_endpoint_expand("http://x/{instance_id}", "../../evil", "w", "p", out,
                                         sizeof out, err, sizeof err), -1);
    assert_int_equal(cml_endpoint_expand("http://x/{instance_id}", "a@b", "w", "p", out,
                                         sizeof out, err, sizeof err), -1);
    assert_int_equal(cml_endpoint_expand("{private_ip}", "i", "w", "10.0.0.1", out, sizeof out,
                                         err, sizeof err), -1);   /* not absolute */
    char small[12];
    assert_int_equal(cml_endpoint_expand("http://{private_ip}", "i", "w", "10.100.100.100",
                                         small, sizeof small, err, sizeof err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_error_text),
        cmocka_unit_test(test_system_info_and_health),
        cmocka_unit_test(test_licence),
        cmocka_unit_test(test_import_and_lab),
        cmocka_unit_test(test_nodes),
        cmocka_unit_test(test_labs_stats_events),
        cmocka_unit_test(test_node_definitions),
        cmocka_unit_test(test_rfc3339_and_status),
        cmocka_unit_test(test_endpoint),
    };
    return cmocka_run_group_tests_name("cml_parse", tests, NULL, NULL);
}
