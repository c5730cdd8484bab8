/* Unit tests of the lds plugin's pure helpers (lds_parse.c): answer parsers on good, odd and
 * hostile input, launch-URL rewriting onto the frontend, path escaping and request bodies. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "lds_parse.h"
#include "plugkit.h"

#define S(x) x, strlen(x)

static void test_created(void **state)
{
    char id[LDS_MAX_ID + 1], why[128];
    assert_int_equal(lds_parse_created(S("{\"location\":\"http://x/reservations/v3/lab_session/"
                                         "abc\",\"message\":\"Session created\",\"session_id\":"
                                         "\"3f1e2d4c-0000-4000-8000-000000000001\"}"),
                                       id, sizeof id, why, sizeof why), 0);
    assert_string_equal(id, "3f1e2d4c-0000-4000-8000-000000000001");
    /* Only a location: its last segment. */
    assert_int_equal(lds_parse_created(S("{\"location\":\"http://x/lab_session/u-1/\"}"), id,
                                       sizeof id, why, sizeof why), 0);
    assert_string_equal(id, "u-1");
    /* Ids that would change the URL are refused. */
    assert_int_equal(lds_parse_created(S("{\"session_id\":\"../admin\"}"), id, sizeof id, why,
                                       sizeof why), LCM_E_PROTO);
    assert_int_equal(lds_parse_created(S("{\"session_id\":\"a b\"}"), id, sizeof id, why,
                                       sizeof why), LCM_E_PROTO);
    assert_int_equal(lds_parse_created(S("{\"session_id\":7}"), id, sizeof id, why, sizeof why),
                     LCM_E_PROTO);
    assert_int_equal(lds_parse_created(S("[]"), id, sizeof id, why, sizeof why), LCM_E_PROTO);
    assert_int_equal(lds_parse_created(S("<html>"), id, sizeof id, why, sizeof why),
                     LCM_E_PROTO);
    assert_int_equal(lds_parse_created("", 0, id, sizeof id, why, sizeof why), LCM_E_PROTO);
}

static void test_session(void **state)
{
    struct lds_session_info si;
    char why[128];
    assert_int_equal(lds_parse_session(S("{\"id\":\"s-1\",\"state\":\"running\",\"is_finalized\":"
                                         "false,\"current_session_part\":2,\"session_parts\":"
                                         "[{\"session_part_state\":\"user_finished\"},"
                                         "{\"session_part_state\":\"running\"}]}"),
                                       &si, why, sizeof why), 0);
    assert_string_equal(si.id, "s-1");
    assert_string_equal(si.state, "running");
    assert_string_equal(si.part_state, "running");
    assert_int_equal(si.is_finalized, 0);
    /* No parts, null state: still a session. */
    assert_int_equal(lds_parse_session(S("{\"id\":\"s-2\",\"state\":null,\"is_finalized\":true}"),
                                       &si, why, sizeof why), 0);
    assert_int_equal(si.has_part_state, 0);
    assert_int_equal(si.is_finalized, 1);
    assert_string_equal(si.state, "");
    /* Wrong types are protocol errors. */
    assert_int_equal(lds_parse_session(S("{\"id\":\"s\",\"is_finalized\":\"yes\"}"), &si, why,
                                       sizeof why), LCM_E_PROTO);
    assert_int_equal(lds_parse_session(S("{\"id\":\"s\",\"state\":5}"), &si, why, sizeof why),
                     LCM_E_PROTO);
    assert_int_equal(lds_parse_session(S("{\"id\":\"s\",\"session_parts\":{}}"), &si, why,
                                       sizeof why), LCM_E_PROTO);
    assert_int_equal(lds_parse_session(S("{\"state\":\"running\"}"), &si, why, sizeof why),
                     LCM_E_PROTO);
    /* A part index out of range falls back to the first part. */
    assert_int_equal(lds_parse_session(S("{\"id\":\"s\",\"current_session_part\":9,"
                                         "\"session_parts\":[{\"session_part_state\":\"x\"}]}"),
                                       &si, why, sizeof why), 0);
    assert_string_equal(si.part_state, "x");
}

static void test_launch_rewrite(void **state)
{
    char out[512], why[128];
    assert_int_equal(lds_launch_rewrite("http://10.0.0.5:8080/lablet/s-1?token=a.b.c",
                                        "https://learn.example.com/lds/", out, sizeof out, why,
                                        sizeof why), 0);
    assert_string_equal(out, "https://learn.example.com/lds/lablet/s-1?token=a.b.c");
    assert_int_equal(lds_launch_rewrite("/lablet/s-1?token=t", "https://f.example", out,
                                        sizeof out, why, sizeof why), 0);
    assert_string_equal(out, "https://f.example/lablet/s-1?token=t");
    assert_int_equal(lds_launch_rewrite("https://lds.example/x?token=t", NULL, out, sizeof out,
                                        why, sizeof why), 0);
    assert_string_equal(out, "https://lds.example/x?token=t");
    assert_int_equal(lds_launch_rewrite("https://lds.example?token=t", "https://f.example",
                                        out, sizeof out, why, sizeof why), 0);
    assert_string_equal(out, "https://f.example/?token=t");
    /* Relative without a frontend, other schemes, protocol-relative, spaces: refused. */
    assert_int_equal(lds_launch_rewrite("/lablet/s", NULL, out, sizeof out, why, sizeof why), -1);
    assert_int_equal(lds_launch_rewrite("javascript:alert(1)", "https://f", out, sizeof out, why,
                                        sizeof why), -1);
    assert_int_equal(lds_launch_rewrite("//evil.example/x", "https://f", out, sizeof out, why,
                                        sizeof why), -1);
    assert_int_equal(lds_launch_rewrite("https://a/b c", NULL, out, sizeof out, why, sizeof why),
                     -1);
    char small[16];
    assert_int_equal(lds_launch_rewrite("/lablet/very/long/path", "https://f.example", small,
                                        sizeof small, why, sizeof why), -1);
}

static void test_escape_and_errors(void **state)
{
    char out[128];
    assert_int_equal(lcm_pk_percent_encode("Exam CCIE TEST v1 DES 1.1", out, sizeof out), 35);
    assert_string_equal(out, "Exam%20CCIE%20TEST%20v1%20DES%201.1");
    assert_true(lcm_pk_percent_encode("a/b?c#d", out, sizeof out) > 0);
    assert_string_equal(out, "a%2Fb%3Fc%23d");
    char tiny[4];
    assert_int_equal(lcm_pk_percent_encode("a b", tiny, sizeof tiny), -1);

    char t[160];
    lds_parse_error_text(S("{\"message\":\"Input payload validation failed\",\"errors\":"
                           "{\"host\":\"required\"}}"), t, sizeof t);
    assert_string_equal(t, "Input payload validation failed (host: required)");
    lds_parse_error_text(S("<html>\n502 Bad Gateway</html>"), t, sizeof t);
    assert_string_equal(t, "<html> 502 Bad Gateway</html>");
    lds_parse_error_text(NULL, 0, t, sizeof t);
    assert_string_equal(t, "");
    size_t n;
    char why[64];
    assert_int_equal(lds_parse_devices(S("[{\"device_label\":\"R1\"},{}]"), &n, why, sizeof why),
                     0);
    assert_int_equal(n, 2);
    assert_int_equal(lds_parse_devices(S("[1]"), &n, why, sizeof why), LCM_E_PROTO);
}

static void test_bodies(void **state)
{
    struct lcm_lds_create_args a = { .form_qualified_name = "F Q N", .external_id = "e1",
                                     .candidate_id = "c1", .timeslot_start_ms = 1767261600000,
                                     .timeslot_end_ms = 1767265200000 };
    struct lds_create_defaults d = { "lcm", "ordered_session", "lcm", "1", "eu-west-1", 0 };
    char *b = lds_build_create_body(&a, &d, 0);
    cJSON *j = cJSON_Parse(b);
    free(b);
    assert_string_equal(cJSON_GetObjectItem(j, "auth_id")->valuestring, "e1");
    assert_string_equal(cJSON_GetObjectItem(j, "first_name")->valuestring, "-");
    assert_string_equal(cJSON_GetObjectItem(j, "location")->valuestring, "eu-west-1");
    assert_string_equal(cJSON_GetObjectItem(j, "scheduled_date")->valuestring,
                        "2026-01-01T10:00:00Z");
    assert_string_equal(cJSON_GetObjectItem(j, "user_timeslot_end")->valuestring,
                        "2026-01-01T11:00:00Z");
    assert_null(cJSON_GetObjectItem(j, "email_address"));
    const cJSON *p = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "session_parts"), 0);
    assert_string_equal(cJSON_GetObjectItem(p, "form_qualified_name")->valuestring, "F Q N");
    cJSON_Delete(j);

    struct lcm_lds_device dv[] = { { "R1", "telnet", "10.0.0.1", 0, NULL },
                                   { "R2", "ssh", "10.0.0.1", 22, "pw" } };
    b = lds_build_devices_body(dv, 2);
    j = cJSON_Parse(b);
    free(b);
    assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 0), "port"));
    assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 0), "password"));
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 1), "port")->valueint, 22);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 1), "password")->valuestring,
                        "pw");
    cJSON_Delete(j);
}

/* One report entry: id, auth_id, created (NULL: left out), finalized, the part's FQN. */
static void entry(char *buf, size_t cap, const char *id, const char *auth, const char *created,
                  int finalized, const char *fqn)
{
    size_t n = strlen(buf);
    char c[64] = "";
    if (created)
        snprintf(c, sizeof c, "\"created\":\"%s\",", created);
    snprintf(buf + n, cap - n,
             "%s{\"id\":\"%s\",\"auth_id\":\"%s\",%s\"session_state\":\"created\","
             "\"session_finalized\":%s,\"session_parts\":[{\"form_qualified_name\":\"%s\","
             "\"session_part_state\":\"created\"}]}",
             n > strlen("{\"lab_sessions\":[") ? "," : "", id, auth, c,
             finalized ? "true" : "false", fqn);
}

static int find_in(const char *entries, const struct lds_find_query *q, char *id, int *found)
{
    char body[4096];
    snprintf(body, sizeof body, "{\"lab_sessions\":[%s]}", entries);
    struct lds_session_info si;
    char why[128];
    int rc = lds_parse_report_find(body, strlen(body), q, &si, found, why, sizeof why);
    if (rc == 0 && *found)
        strcpy(id, si.id);
    return rc;
}

/* session_find's choice among report entries: ours only (auth_id, FQN, not finalized, created
 * at or after the bound), the newest by created, undated ones below dated ones, ties to the
 * later entry; a malformed entry of ours spoils the answer, one of another auth_id does not. */
static void test_report_find(void **state)
{
    (void)state;
    const struct lds_find_query q = { "ses-1", "FQN A", 1767261600000 };   /* 2026-01-01T10:00Z */
    char b[2048] = "{\"lab_sessions\":[", id[LDS_MAX_ID + 1] = "";
    int found = -1;
    const size_t head = strlen(b);
#define RESET() (b[head] = '\0')
#define FIND() find_in(b + head, &q, id, &found)
    /* nothing of ours */
    entry(b, sizeof b, "u-other", "ses-2", "2026-01-01T11:00:00Z", 0, "FQN A");
    entry(b, sizeof b, "u-fqn", "ses-1", "2026-01-01T11:00:00Z", 0, "FQN B");
    entry(b, sizeof b, "u-final", "ses-1", "2026-01-01T11:00:00Z", 1, "FQN A");
    entry(b, sizeof b, "u-old", "ses-1", "2026-01-01T09:59:59.999Z", 0, "FQN A");
    assert_int_equal(FIND(), 0);
    assert_int_equal(found, 0);
    /* the newest of ours wins, wherever it stands */
    entry(b, sizeof b, "u-b", "ses-1", "2026-01-01T12:00:00+01:00", 0, "FQN A");   /* 11:00Z */
    entry(b, sizeof b, "u-a", "ses-1", "2026-01-01T11:30:00Z", 0, "FQN A");
    entry(b, sizeof b, "u-c", "ses-1", "2026-01-01T10:00:00Z", 0, "FQN A");        /* the bound */
    assert_int_equal(FIND(), 0);
    assert_int_equal(found, 1);
    assert_string_equal(id, "u-a");
    /* an undated entry only when no dated one matches */
    RESET();
    entry(b, sizeof b, "u-nodate", "ses-1", NULL, 0, "FQN A");
    entry(b, sizeof b, "u-dated", "ses-1", "2026-01-01T10:00:01Z", 0, "FQN A");
    assert_int_equal(FIND(), 0);
    assert_string_equal(id, "u-dated");
    RESET();
    entry(b, sizeof b, "u-nodate", "ses-1", NULL, 0, "FQN A");
    assert_int_equal(FIND(), 0);
    assert_int_equal(found, 1);
    assert_string_equal(id, "u-nodate");
    /* equal created: the later entry */
    RESET();
    entry(b, sizeof b, "u-first", "ses-1", "2026-01-01T11:00:00Z", 0, "FQN A");
    entry(b, sizeof b, "u-second", "ses-1", "2026-01-01T11:00:00Z", 0, "FQN A");
    assert_int_equal(FIND(), 0);
    assert_string_equal(id, "u-second");
    /* malformed: an entry of ours with a bad id spoils it; another auth_id's junk does not */
    RESET();
    entry(b, sizeof b, "../x", "ses-1", "2026-01-01T11:00:00Z", 0, "FQN A");
    assert_int_equal(FIND(), LCM_E_PROTO);
    RESET();
    strcat(b, "{\"auth_id\":\"ses-9\",\"id\":7,\"session_finalized\":\"no\"}");
    entry(b, sizeof b, "u-ok", "ses-1", "2026-01-01T11:00:00Z", 0, "FQN A");
    assert_int_equal(FIND(), 0);
    assert_string_equal(id, "u-ok");
    /* not a report at all */
    struct lds_session_info si;
    char why[128];
    assert_int_equal(lds_parse_report_find(S("{\"sessions\":[]}"), &q, &si, &found, why,
                                           sizeof why), LCM_E_PROTO);
    assert_int_equal(lds_parse_report_find(S("[]"), &q, &si, &found, why, sizeof why),
                     LCM_E_PROTO);
    assert_int_equal(lds_parse_report_find(S("{\"lab_sessions\":[]}"), &q, &si, &found, why,
                                           sizeof why), 0);
    assert_int_equal(found, 0);
#undef RESET
#undef FIND
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_created),         cmocka_unit_test(test_session),
        cmocka_unit_test(test_launch_rewrite),  cmocka_unit_test(test_escape_and_errors),
        cmocka_unit_test(test_bodies),          cmocka_unit_test(test_report_find),
    };
    return cmocka_run_group_tests_name("lds_parse", tests, NULL, NULL);
}
