/* Unit tests of the grading plugin's pure helpers (grading_parse.c): token, Session and error
 * parsers on good, odd and hostile input, escaping and the CreateSessionCommand body. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "grading_parse.h"
#include "plugkit.h"

#define S(x) x, strlen(x)

static void test_token(void **state)
{
    char tok[GRD_MAX_TOKEN + 1], why[128];
    long ttl = 0;
    assert_int_equal(grd_parse_token(S("{\"access_token\":\"abc.def\",\"token_type\":\"Bearer\","
                                       "\"expires_in\":300,\"scope\":\"api\"}"),
                                     tok, sizeof tok, &ttl, why, sizeof why), 0);
    assert_string_equal(tok, "abc.def");
    assert_int_equal(ttl, 300);
    assert_int_equal(grd_parse_token(S("{\"access_token\":\"t\",\"token_type\":\"bearer\","
                                       "\"expires_in\":\"60\"}"), tok, sizeof tok, &ttl, why,
                                     sizeof why), 0);
    assert_int_equal(ttl, 60);
    assert_int_equal(grd_parse_token(S("{\"access_token\":\"t\"}"), tok, sizeof tok, &ttl, why,
                                     sizeof why), 0);
    assert_int_equal(ttl, GRD_DEFAULT_TTL_S);
    assert_int_equal(grd_parse_token(S("{\"access_token\":\"t\",\"expires_in\":-5}"), tok,
                                     sizeof tok, &ttl, why, sizeof why), 0);
    assert_int_equal(ttl, 1);
    assert_int_equal(grd_parse_token(S("{\"access_token\":\"t\",\"expires_in\":1e300}"), tok,
                                     sizeof tok, &ttl, why, sizeof why), 0);
    assert_int_equal(ttl, GRD_MAX_TTL_S);
    /* Refused: no token, header injection, other token types, junk. */
    assert_int_equal(grd_parse_token(S("{\"token_type\":\"Bearer\"}"), tok, sizeof tok, &ttl,
                                     why, sizeof why), LCM_E_PROTO);
    assert_int_equal(grd_parse_token(S("{\"access_token\":\"a\\r\\nX-Evil: 1\"}"), tok,
                                     sizeof tok, &ttl, why, sizeof why), LCM_E_PROTO);
    assert_int_equal(grd_parse_token(S("{\"access_token\":\"a\",\"token_type\":\"mac\"}"), tok,
                                     sizeof tok, &ttl, why, sizeof why), LCM_E_PROTO);
    assert_int_equal(grd_parse_token(S("{\"access_token\":\"a\",\"expires_in\":\"soon\"}"), tok,
                                     sizeof tok, &ttl, why, sizeof why), LCM_E_PROTO);
    assert_int_equal(grd_parse_token(S("\"abc\""), tok, sizeof tok, &ttl, why, sizeof why),
                     LCM_E_PROTO);
    char small[4];
    assert_int_equal(grd_parse_token(S("{\"access_token\":\"abcdef\"}"), small, sizeof small,
                                     &ttl, why, sizeof why), LCM_E_PROTO);
}

static const char *graded =
    "{\"id\":\"s1\",\"candidateId\":\"cand\",\"status\":\"Graded\",\"parts\":[{\"id\":\"P 1\","
    "\"status\":\"Graded\",\"lastSubmitted\":null,\"scoreReport\":{\"createdAt\":"
    "\"2026-01-01T10:00:00Z\",\"score\":85,\"maxScore\":100,\"sections\":[{\"id\":\"a\","
    "\"score\":50,\"maxScore\":50},{\"id\":\"b\",\"score\":35,\"maxScore\":50}],\"variables\":"
    "{\"cutScore\":70,\"passed\":true}}}]}";

static void test_result(void **state)
{
    struct grd_result_buf b;
    char why[128];
    assert_int_equal(grd_parse_result(S(graded), NULL, &b, why, sizeof why), 0);
    assert_string_equal(b.r.status, "Graded");
    assert_int_equal(b.r.completed, 1);
    assert_int_equal(b.r.failed, 0);
    assert_true(b.r.score == 85 && b.r.max_score == 100 && b.r.cut_score == 70);
    assert_int_equal(b.r.passed, 1);
    assert_int_equal(b.r.nsections, 2);
    assert_string_equal(b.r.sections[1].id, "b");
    assert_true(b.r.sections[1].score == 35);
    assert_string_equal(b.r.submitted_at, "2026-01-01T10:00:00Z");
    grd_result_free(&b);
    /* A named part; an absent one. */
    assert_int_equal(grd_parse_result(S(graded), "P 1", &b, why, sizeof why), 0);
    grd_result_free(&b);
    assert_int_equal(grd_parse_result(S(graded), "P 2", &b, why, sizeof why), LCM_E_PROTO);

    /* Cut score without passed: computed. */
    assert_int_equal(grd_parse_result(S("{\"id\":\"s\",\"parts\":[{\"id\":\"p\",\"status\":"
                                        "\"Graded\",\"scoreReport\":{\"score\":60,\"maxScore\":"
                                        "100,\"variables\":{\"cutScore\":70}}}]}"),
                                      NULL, &b, why, sizeof why), 0);
    assert_int_equal(b.r.passed, 0);
    grd_result_free(&b);
    /* Faulted. */
    assert_int_equal(grd_parse_result(S("{\"id\":\"s\",\"parts\":[{\"id\":\"p\",\"status\":"
                                        "\"Faulted\",\"statusReason\":\"collector down\"}]}"),
                                      NULL, &b, why, sizeof why), 0);
    assert_int_equal(b.r.failed, 1);
    assert_int_equal(b.r.completed, 0);
    assert_int_equal(b.r.passed, -1);
    assert_string_equal(b.reason, "collector down");
    grd_result_free(&b);
    /* Pending: no report yet. */
    assert_int_equal(grd_parse_result(S("{\"id\":\"s\",\"parts\":[{\"id\":\"p\",\"status\":"
                                        "\"Pending\"}]}"), NULL, &b, why, sizeof why), 0);
    assert_int_equal(b.r.completed, 0);
    grd_result_free(&b);
    /* Broken shapes. */
    static const char *const bad[] = {
        "{\"id\":\"s\",\"parts\":[{\"id\":\"p\",\"status\":\"Graded\"}]}",
        "{\"id\":\"s\",\"parts\":[{\"id\":\"p\",\"status\":\"Graded\",\"scoreReport\":{}}]}",
        "{\"id\":\"s\",\"parts\":[{\"id\":\"p\",\"scoreReport\":[1]}]}",
        "{\"id\":\"s\",\"parts\":[{\"id\":\"p\",\"status\":\"Graded\",\"scoreReport\":{\"score\":"
        "1,\"maxScore\":2,\"sections\":[7]}}]}",
        "{\"id\":\"s\",\"parts\":[]}", "{\"id\":\"s\"}", "[]", "null", "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(grd_parse_result(S(bad[i]), NULL, &b, why, sizeof why), LCM_E_PROTO);
        grd_result_free(&b);
    }
}

static void test_session_part_and_errors(void **state)
{
    char id[GRD_MAX_ID + 1], why[128], t[160];
    int has;
    assert_int_equal(grd_parse_session_part(S(graded), "P 1", id, sizeof id, &has, why,
                                            sizeof why), 0);
    assert_string_equal(id, "s1");
    assert_int_equal(has, 1);
    assert_int_equal(grd_parse_session_part(S(graded), "Q", id, sizeof id, &has, why,
                                            sizeof why), 0);
    assert_int_equal(has, 0);
    assert_int_equal(grd_parse_session_part(S("{\"id\":null}"), "Q", id, sizeof id, &has, why,
                                            sizeof why), LCM_E_PROTO);
    grd_parse_error_text(S("{\"type\":\"x\",\"title\":\"One or more validation errors\","
                           "\"status\":400,\"errors\":{\"candidateId\":[\"too short\"]}}"),
                         t, sizeof t);
    assert_string_equal(t, "One or more validation errors (candidateId too short)");
    grd_parse_error_text(S("{\"error\":\"invalid_client\",\"error_description\":\"bad\"}"), t,
                         sizeof t);
    assert_string_equal(t, "invalid_client: bad");
    grd_parse_error_text("", 0, t, sizeof t);
    assert_string_equal(t, "");
    char e[64];
    assert_true(lcm_pk_percent_encode("a b&c=d+", e, sizeof e) > 0);
    assert_string_equal(e, "a%20b%26c%3Dd%2B");
}

static void test_create_body(void **state)
{
    struct lcm_grd_interface ifs[] = { { "console", "telnet", "10.0.0.1", 5001, NULL, NULL },
                                       { "mgmt", "ssh", "10.0.0.1", 22, "u", "p" } };
    struct lcm_grd_device d = { "R1", NULL, NULL, ifs, 2 };
    struct lcm_grd_create_args a = { .session_id = "s1", .candidate_id = "cand",
                                     .lds_session_id = "l1", .part_id = "P 1", .devices = &d,
                                     .ndevices = 1 };
    char *b = grd_build_create_body(&a, "cli");
    cJSON *j = cJSON_Parse(b);
    free(b);
    assert_string_equal(cJSON_GetObjectItem(j, "id")->valuestring, "s1");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "lds"), "environment")));
    const cJSON *p = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "parts"), 0);
    const cJSON *pod = cJSON_GetObjectItem(p, "pod");
    assert_string_equal(cJSON_GetObjectItem(pod, "id")->valuestring, "s1");
    const cJSON *dev = cJSON_GetArrayItem(cJSON_GetObjectItem(pod, "devices"), 0);
    assert_string_equal(cJSON_GetObjectItem(dev, "hostname")->valuestring, "R1");
    assert_string_equal(cJSON_GetObjectItem(dev, "collector")->valuestring, "cli");
    const cJSON *i0 = cJSON_GetArrayItem(cJSON_GetObjectItem(dev, "interfaces"), 0);
    const cJSON *i1 = cJSON_GetArrayItem(cJSON_GetObjectItem(dev, "interfaces"), 1);
    assert_null(cJSON_GetObjectItem(i0, "authentication"));
    const cJSON *au = cJSON_GetObjectItem(i1, "authentication");
    assert_string_equal(cJSON_GetObjectItem(au, "scheme")->valuestring, "basic");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(au, "properties"),
                                            "password")->valuestring, "p");
    cJSON_Delete(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_result),
        cmocka_unit_test(test_session_part_and_errors),
        cmocka_unit_test(test_create_body),
    };
    return cmocka_run_group_tests_name("grading_parse", tests, NULL, NULL);
}
