/* Integration tests of the grading plugin: build/plugins/lcm-grading.so loaded through the real
 * loader with lcmd's host services, against a real grading-sim process (OAuth2 client
 * credentials, grading after a delay) on a free loopback port; faults through /_sim/. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/metrics.h"
#include "plugin.h"
#include "plugtest.h"

#define OP(name) offsetof(struct lcm_grading_ops, name)
#define FQN "Exam CCIE TEST v1 DES 1.1"
#define SECRET "s3cret&=+ x"

static void call(size_t off, const struct pt_target *t, const void *args, pt_conv_fn conv,
                 struct pt_outcome *o)
{
    pt_call(LCM_KIND_GRADING, off, t, args, conv, o);
}

static cJSON *conv_created(const void *r)
{
    const struct lcm_grd_created *c = r;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "grading_session_id", c->grading_session_id);
    cJSON_AddStringToObject(o, "part_id", c->part_id);
    return o;
}

static cJSON *conv_result(const void *r)
{
    const struct lcm_grd_result *g = r;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", g->status ? g->status : "");
    cJSON_AddNumberToObject(o, "completed", g->completed);
    cJSON_AddNumberToObject(o, "failed", g->failed);
    cJSON_AddNumberToObject(o, "score", g->score);
    cJSON_AddNumberToObject(o, "max_score", g->max_score);
    cJSON_AddNumberToObject(o, "cut_score", g->cut_score);
    cJSON_AddNumberToObject(o, "passed", g->passed);
    if (g->submitted_at)
        cJSON_AddStringToObject(o, "submitted_at", g->submitted_at);
    cJSON *s = cJSON_AddArrayToObject(o, "sections");
    for (size_t i = 0; i < g->nsections; i++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "id", g->sections[i].id ? g->sections[i].id : "");
        cJSON_AddNumberToObject(x, "score", g->sections[i].score);
        cJSON_AddNumberToObject(x, "max_score", g->sections[i].max_score);
        cJSON_AddItemToArray(s, x);
    }
    return o;
}

static const struct lcm_grd_interface r1_ifs[] = {
    { "console", "telnet", "10.1.2.3", 5001, NULL, NULL },
    { "mgmt", "ssh", "10.1.2.3", 5101, "admin", "cisco123" },
};
static const struct lcm_grd_interface sw1_ifs[] = {
    { "console", "telnet", "10.1.2.3", 5002, NULL, NULL },
};
static const struct lcm_grd_device pod[] = {
    { "R1", "r1.lab", "ios", r1_ifs, 2 },
    { "SW1", NULL, NULL, sw1_ifs, 1 },
};

static void create(const char *sid, const char *part, struct pt_outcome *o)
{
    struct lcm_grd_create_args a = { .session_id = sid, .candidate_id = "cand-42",
                                     .lds_session_id = "lds-0001", .lds_environment = "eu",
                                     .part_id = part, .pod_id = "pod-1", .devices = pod,
                                     .ndevices = 2 };
    call(OP(session_create), NULL, &a, conv_created, o);
}

static void create_ok(const char *sid)
{
    struct pt_outcome o;
    create(sid, FQN, &o);
    pt_expect_ok(&o);
    assert_string_equal(pt_res_str(&o, "grading_session_id"), sid);
    assert_string_equal(pt_res_str(&o, "part_id"), FQN);
    pt_outcome_free(&o);
}

static void grade_ok(const char *sid)
{
    struct lcm_grd_part_args pa = { .grading_session_id = sid, .part_id = FQN };
    struct pt_outcome o;
    call(OP(request_grading), NULL, &pa, NULL, &o);
    pt_expect_ok(&o);
}

/* Polls get_result until completed or failed; o keeps the last outcome (caller frees). */
static void poll_result(const char *sid, struct pt_outcome *o)
{
    struct lcm_grd_session_args ga = { .grading_session_id = sid };
    uint64_t end = pt_now_ms() + 10000;
    while (pt_now_ms() < end) {
        call(OP(get_result), NULL, &ga, conv_result, o);
        pt_expect_ok(o);
        if (pt_res_num(o, "completed") == 1 || pt_res_num(o, "failed") == 1)
            return;
        pt_outcome_free(o);
        pt_run_ms(40);
    }
    fail_msg("grading of %s never finished", sid);
}

/* An admin POST to the simulator that must succeed (200 or 204). */
static void sim_post(const char *path, const char *body)
{
    int st = pt_sim("POST", path, body, NULL);
    if (st < 200 || st > 299)
        fail_msg("POST %s: HTTP %d", path, st);
}

static double gstat(const char *f) { return pt_sim_num("/_sim/stats", f); }

static double refused_metric(void)
{
    return lcm_metrics_get(pt_metrics, "lcm_plugin_grading_token_refused_total",
                           "plugin=\"grading\"");
}

/* ---- setup ---- */

static int setup(void **state)
{
    const char *argv[] = { "--client-id", "lcm", "--client-secret", SECRET, "--score", "85",
                           "--max-score", "100", "--cut-score", "70", "--delay-ms", "150",
                           "--sections", "2", "--token-ttl", "300", "--quiet", NULL };
    if (pt_start_sim(GRADING_SIM, argv) != 0)
        return -1;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", pt_sim_port);
    setenv("LCM_GRADING_URL", url, 1);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/auth/realms/mozart/protocol/openid-connect"
             "/token", pt_sim_port);
    setenv("LCM_GRADING_TOKEN_URL", url, 1);
    setenv("LCM_GRADING_CLIENT_ID", "lcm", 1);
    setenv("LCM_GRADING_CLIENT_SECRET", SECRET, 1);
    setenv("LCM_WRONG_CLIENT_ID", "lcm", 1);
    setenv("LCM_WRONG_CLIENT_SECRET", "not-the-secret", 1);
    setenv("LCM_ALT_CLIENT_ID", "lcm", 1);
    setenv("LCM_ALT_CLIENT_SECRET", SECRET, 1);
    setenv("LCM_ALT2_CLIENT_ID", "lcm", 1);
    setenv("LCM_ALT2_CLIENT_SECRET", SECRET, 1);
    setenv("LCM_ALT3_CLIENT_ID", "lcm", 1);
    setenv("LCM_ALT3_CLIENT_SECRET", SECRET, 1);
    return pt_load(GRADING_PLUGIN, "{\"grading\": {\"timeout_ms\": 700, \"max_retries\": 2,"
                                   " \"connect_timeout_ms\": 500}}");
}

static int teardown(void **state)
{
    int rc = pt_teardown();
    if (rc != 0)
        fprintf(stderr, "grading-sim exited with %d\n", rc);
    return rc == 0 ? 0 : -1;
}

static int per_test_teardown(void **state)
{
    pt_clear_faults();
    return 0;
}

/* ---- tests ---- */

static void test_loaded_and_implemented(void **state)
{
    struct lcm_plugin *p = lcm_plugins_get(pt_reg, LCM_KIND_GRADING);
    assert_non_null(p);
    assert_string_equal(lcm_plugin_name(p), "grading");
    assert_true(lcm_plugin_implements(p, OP(session_create)));
    assert_true(lcm_plugin_implements(p, OP(request_grading)));
    assert_true(lcm_plugin_implements(p, OP(get_result)));
    cJSON *st = lcm_plugins_status_json(pt_reg);
    const cJSON *l = cJSON_GetArrayItem(cJSON_GetObjectItem(st, "loaded"), 0);
    const cJSON *ni = cJSON_GetObjectItem(l, "not_implemented");
    assert_true(ni == NULL || cJSON_GetArraySize(ni) == 0);
    char *txt = cJSON_PrintUnformatted(st);
    assert_null(strstr(txt, SECRET));
    free(txt);
    cJSON_Delete(st);
}

static void test_full_flow(void **state)
{
    double tok0 = gstat("grading.tokens_issued");
    create_ok("sess-flow");

    /* The engine got the pod: devices with host/port/protocol, credentials as authentication. */
    char *body = NULL;
    assert_int_equal(pt_sim("GET", "/_sim/sessions/sess-flow", NULL, &body), 200);
    cJSON *s = cJSON_Parse(body);
    free(body);
    assert_string_equal(cJSON_GetObjectItem(s, "candidateId")->valuestring, "cand-42");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(s, "lds"), "id")->valuestring,
                        "lds-0001");
    const cJSON *part = cJSON_GetArrayItem(cJSON_GetObjectItem(s, "parts"), 0);
    assert_string_equal(cJSON_GetObjectItem(part, "id")->valuestring, FQN);
    const cJSON *podj = cJSON_GetObjectItem(part, "pod");
    assert_string_equal(cJSON_GetObjectItem(podj, "id")->valuestring, "pod-1");
    const cJSON *devs = cJSON_GetObjectItem(podj, "devices");
    assert_int_equal(cJSON_GetArraySize(devs), 2);
    const cJSON *r1 = cJSON_GetArrayItem(devs, 0), *sw1 = cJSON_GetArrayItem(devs, 1);
    assert_string_equal(cJSON_GetObjectItem(r1, "hostname")->valuestring, "r1.lab");
    assert_string_equal(cJSON_GetObjectItem(r1, "collector")->valuestring, "ios");
    const cJSON *mg = cJSON_GetArrayItem(cJSON_GetObjectItem(r1, "interfaces"), 1);
    assert_string_equal(cJSON_GetObjectItem(mg, "protocol")->valuestring, "ssh");
    assert_string_equal(cJSON_GetObjectItem(mg, "host")->valuestring, "10.1.2.3");
    assert_int_equal(cJSON_GetObjectItem(mg, "port")->valueint, 5101);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(mg, "authentication"),
                                            "scheme")->valuestring, "basic");
    /* Defaults: hostname = label, the configured default collector. */
    assert_string_equal(cJSON_GetObjectItem(sw1, "hostname")->valuestring, "SW1");
    assert_string_equal(cJSON_GetObjectItem(sw1, "collector")->valuestring, "cli");
    cJSON_Delete(s);

    /* Before grading: pending, nothing final. */
    struct lcm_grd_session_args ga = { .grading_session_id = "sess-flow" };
    struct pt_outcome o;
    call(OP(get_result), NULL, &ga, conv_result, &o);
    pt_expect_ok(&o);
    assert_string_equal(pt_res_str(&o, "status"), "Pending");
    assert_true(pt_res_num(&o, "completed") == 0 && pt_res_num(&o, "failed") == 0);
    assert_true(pt_res_num(&o, "passed") == -1);
    pt_outcome_free(&o);

    grade_ok("sess-flow");
    poll_result("sess-flow", &o);
    assert_true(pt_res_num(&o, "completed") == 1);
    assert_string_equal(pt_res_str(&o, "status"), "Graded");
    assert_true(pt_res_num(&o, "score") == 85);
    assert_true(pt_res_num(&o, "max_score") == 100);
    assert_true(pt_res_num(&o, "cut_score") == 70);
    assert_true(pt_res_num(&o, "passed") == 1);
    assert_non_null(pt_res_str(&o, "submitted_at"));
    const cJSON *secs = cJSON_GetObjectItem(o.res, "sections");
    assert_int_equal(cJSON_GetArraySize(secs), 2);
    double sum = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, secs) sum += cJSON_GetObjectItem(x, "score")->valuedouble;
    assert_true(sum == 85);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(secs, 0), "id")->valuestring,
                        "section-1");
    pt_outcome_free(&o);
    /* One token served every call. */
    assert_true(gstat("grading.tokens_issued") <= tok0 + 1);

    /* A failing score: passed false. */
    sim_post("/_sim/sessions/sess-flow/config", "{\"score\": 40}");
    grade_ok("sess-flow");
    uint64_t end = pt_now_ms() + 5000;
    do {
        pt_run_ms(50);
        call(OP(get_result), NULL, &ga, conv_result, &o);
        pt_expect_ok(&o);
        if (pt_res_num(&o, "score") == 40)
            break;
        pt_outcome_free(&o);
    } while (pt_now_ms() < end);
    assert_true(pt_res_num(&o, "score") == 40);
    assert_true(pt_res_num(&o, "passed") == 0);
    pt_outcome_free(&o);
}

static void test_create_is_idempotent(void **state)
{
    create_ok("sess-idem");
    double created = gstat("grading.sessions_created");
    create_ok("sess-idem");                   /* 422 → the existing session is ours */
    assert_true(gstat("grading.sessions_created") == created);
    struct pt_outcome o;
    create("sess-idem", "Another Part FQN", &o);  /* exists, but not with this part */
    pt_expect_err(&o, LCM_E_CONFLICT, 0);
    /* Schema violations (candidateId < 3 chars) are remote errors, not retried. */
    struct lcm_grd_create_args a = { .session_id = "sess-bad", .candidate_id = "ab",
                                     .part_id = FQN, .devices = pod, .ndevices = 2 };
    call(OP(session_create), NULL, &a, conv_created, &o);
    pt_expect_err(&o, LCM_E_REMOTE, 0);
    assert_int_equal(o.http_status, 400);
    /* A device without interfaces is refused before any request. */
    struct lcm_grd_device bare = { "R9", NULL, NULL, NULL, 0 };
    a.candidate_id = "cand-42";
    a.devices = &bare;
    a.ndevices = 1;
    assert_int_equal(pt_call_async(LCM_KIND_GRADING, OP(session_create), NULL, &a, NULL, &o,
                                   NULL), LCM_E_INVAL);
}

static void test_token_expiry_and_refresh(void **state)
{
    create_ok("sess-tok");
    struct lcm_grd_session_args ga = { .grading_session_id = "sess-tok" };
    struct pt_outcome o;

    /* The engine revokes every token: the next call gets 401, fetches once, succeeds. */
    double tok0 = gstat("grading.tokens_issued"), ref0 = refused_metric();
    sim_post("/_sim/tokens/expire", "{}");
    call(OP(get_result), NULL, &ga, conv_result, &o);
    pt_expect_ok(&o);
    pt_outcome_free(&o);
    assert_true(gstat("grading.tokens_issued") == tok0 + 1);
    assert_true(refused_metric() == ref0 + 1);

    /* Short-lived tokens (1 s): refreshed before they expire, without a 401. */
    sim_post("/_sim/config", "{\"token_ttl\": 1}");
    sim_post("/_sim/tokens/expire", "{}");
    call(OP(get_result), NULL, &ga, conv_result, &o);      /* 401 → token with ttl 1 */
    pt_expect_ok(&o);
    pt_outcome_free(&o);
    tok0 = gstat("grading.tokens_issued");
    ref0 = refused_metric();
    double af0 = gstat("grading.auth_failures");
    for (int i = 0; i < 3; i++) {
        pt_run_ms(1050);
        call(OP(get_result), NULL, &ga, conv_result, &o);
        pt_expect_ok(&o);
        pt_outcome_free(&o);
    }
    assert_true(gstat("grading.tokens_issued") == tok0 + 3);
    assert_true(refused_metric() == ref0);
    assert_true(gstat("grading.auth_failures") == af0);
    /* Within its lifetime the token is reused. */
    tok0 = gstat("grading.tokens_issued");
    call(OP(get_result), NULL, &ga, conv_result, &o);
    pt_outcome_free(&o);
    assert_true(gstat("grading.tokens_issued") == tok0);
    sim_post("/_sim/config", "{\"token_ttl\": 300}");
}

static void test_auth_failures(void **state)
{
    create_ok("sess-auth");
    struct lcm_grd_session_args ga = { .grading_session_id = "sess-auth" };
    struct pt_outcome o;

    /* The API refuses even fresh tokens: one refetch, then a final auth error. */
    double tok0 = gstat("grading.tokens_issued");
    pt_add_fault("{\"path\":\"/api/v1/sessions\",\"status\":401,\"count\":0}");
    call(OP(get_result), NULL, &ga, conv_result, &o);
    pt_expect_err(&o, LCM_E_AUTH, 0);
    assert_int_equal(o.http_status, 401);
    assert_true(gstat("grading.tokens_issued") == tok0 + 1);
    pt_clear_faults();

    /* Wrong client secret: the token endpoint's 401 is final; no secret in the message. */
    struct pt_target wrong = { .credentials = "WRONG" };
    double af0 = gstat("grading.auth_failures");
    call(OP(get_result), &wrong, &ga, conv_result, &o);
    pt_expect_err(&o, LCM_E_AUTH, 0);
    assert_int_equal(o.http_status, 401);
    assert_null(strstr(o.message, "not-the-secret"));
    assert_true(gstat("grading.auth_failures") == af0 + 1);
    /* A set without credentials: refused at once. */
    struct pt_target none = { .credentials = "NOSUCHSET" };
    assert_int_equal(pt_call_async(LCM_KIND_GRADING, OP(get_result), &none, &ga, NULL, &o,
                                   NULL), LCM_E_CONFIG);
    pt_run_ms(20);
    assert_int_equal(o.calls, 0);

    /* Token endpoint down: retryable; one 500 is hidden by the host's retry. */
    sim_post("/_sim/tokens/expire", "{}");
    pt_add_fault("{\"path\":\"/token\",\"status\":500,\"count\":0}");
    call(OP(get_result), NULL, &ga, conv_result, &o);
    pt_expect_err(&o, LCM_E_UNAVAIL, 1);
    pt_clear_faults();
    pt_add_fault("{\"path\":\"/token\",\"status\":500,\"count\":1}");
    call(OP(get_result), NULL, &ga, conv_result, &o);
    pt_expect_ok(&o);
    pt_outcome_free(&o);
}

static void test_grading_failure(void **state)
{
    create_ok("sess-fail");
    sim_post("/_sim/sessions/sess-fail/config", "{\"fail\": true}");
    grade_ok("sess-fail");
    struct pt_outcome o;
    poll_result("sess-fail", &o);
    assert_true(pt_res_num(&o, "failed") == 1);
    assert_true(pt_res_num(&o, "completed") == 0);
    assert_string_equal(pt_res_str(&o, "status"), "Faulted");
    assert_true(pt_res_num(&o, "passed") == -1);
    pt_outcome_free(&o);
}

static void test_errors_and_timeouts(void **state)
{
    create_ok("sess-err");
    struct pt_outcome o;
    struct lcm_grd_session_args unknown = { .grading_session_id = "no-such-session" };
    call(OP(get_result), NULL, &unknown, conv_result, &o);
    pt_expect_err(&o, LCM_E_NOTFOUND, 0);
    assert_int_equal(o.http_status, 404);
    struct lcm_grd_part_args pa = { .grading_session_id = "sess-err", .part_id = "No Part" };
    call(OP(request_grading), NULL, &pa, NULL, &o);
    pt_expect_err(&o, LCM_E_NOTFOUND, 0);

    /* 5xx on every attempt: retryable unavailable, after 1 + max_retries attempts. */
    double f0 = gstat("faulted");
    pt_add_fault("{\"path\":\"/grade\",\"status\":503,\"count\":0}");
    pa.part_id = FQN;
    call(OP(request_grading), NULL, &pa, NULL, &o);
    pt_expect_err(&o, LCM_E_UNAVAIL, 1);
    assert_true(gstat("faulted") == f0 + 3);
    pt_clear_faults();
    /* A 503 once: the retry grades (joining, never twice). */
    pt_add_fault("{\"path\":\"/grade\",\"status\":503,\"count\":1}");
    call(OP(request_grading), NULL, &pa, NULL, &o);
    pt_expect_ok(&o);
    pt_clear_faults();

    /* Slow engine: a retryable timeout. */
    pt_add_fault("{\"path\":\"/api/v1/sessions/sess-err\",\"method\":\"GET\","
                 "\"delay_ms\":1500,\"count\":0}");
    struct lcm_grd_session_args ga = { .grading_session_id = "sess-err" };
    call(OP(get_result), NULL, &ga, conv_result, &o);
    pt_expect_err(&o, LCM_E_TIMEOUT, 1);
    pt_clear_faults();
    /* Dropped connection: unavailable, retryable. */
    pt_add_fault("{\"path\":\"/api/v1/sessions/sess-err\",\"drop\":true,\"count\":0}");
    call(OP(get_result), NULL, &ga, conv_result, &o);
    pt_expect_err(&o, LCM_E_UNAVAIL, 1);
    pt_clear_faults();
    /* 429: throttled, retryable. */
    pt_add_fault("{\"path\":\"/api/v1/sessions/sess-err\",\"status\":429,\"count\":0}");
    call(OP(get_result), NULL, &ga, conv_result, &o);
    pt_expect_err(&o, LCM_E_THROTTLED, 1);
}

static void test_single_flight_token(void **state)
{
    create_ok("sess-sf");
    /* A fresh credential set: ten ops at once share one token request. */
    struct pt_target alt = { .credentials = "ALT" };
    struct lcm_grd_session_args ga = { .grading_session_id = "sess-sf" };
    struct pt_outcome o[10];
    double tok0 = gstat("grading.tokens_issued");
    for (int i = 0; i < 10; i++)
        assert_int_equal(pt_call_async(LCM_KIND_GRADING, OP(get_result), &alt, &ga, conv_result,
                                       &o[i], NULL), 0);
    uint64_t end = pt_now_ms() + 10000;
    for (int i = 0; i < 10; i++) {
        pt_run_until(&o[i].calls, (int)(end - pt_now_ms()));
        assert_int_equal(o[i].calls, 1);
        pt_expect_ok(&o[i]);
        pt_outcome_free(&o[i]);
    }
    assert_true(gstat("grading.tokens_issued") == tok0 + 1);
}

static void test_cancel(void **state)
{
    create_ok("sess-cancel");
    struct lcm_grd_session_args ga = { .grading_session_id = "sess-cancel" };
    struct pt_outcome o;
    uint64_t id = 0;
    /* Cancel while in the HTTP call. */
    pt_add_fault("{\"path\":\"/api/v1/sessions/sess-cancel\",\"delay_ms\":600,\"count\":1}");
    assert_int_equal(pt_call_async(LCM_KIND_GRADING, OP(get_result), NULL, &ga, conv_result,
                                   &o, &id), 0);
    pt_run_ms(50);
    assert_int_equal(lcm_plugins_cancel(pt_reg, id), 0);
    pt_run_until(&o.calls, 3000);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.code, LCM_E_CANCELLED);
    /* Cancel while waiting for a token. */
    pt_add_fault("{\"path\":\"/token\",\"delay_ms\":600,\"count\":1}");
    struct pt_target alt2 = { .credentials = "ALT2" };
    assert_int_equal(pt_call_async(LCM_KIND_GRADING, OP(get_result), &alt2, &ga, conv_result,
                                   &o, &id), 0);
    pt_run_ms(50);
    assert_int_equal(lcm_plugins_cancel(pt_reg, id), 0);
    assert_int_equal(o.calls, 0);                /* never from inside cancel */
    pt_run_until(&o.calls, 3000);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.code, LCM_E_CANCELLED);
    pt_run_ms(800);                              /* the late token changes nothing */
    assert_int_equal(o.calls, 1);
    assert_int_equal(lcm_plugins_inflight(pt_reg), 0);
}

/* No client secret, token or interface password ever reaches a log line. */
static void test_no_secrets_logged(void **state)
{
    assert_true(pt_log_contains("msg=\"grading token fetched\""));   /* the log is captured */
    assert_false(pt_log_contains(SECRET));
    assert_false(pt_log_contains("s3cret"));
    assert_false(pt_log_contains("not-the-secret"));
    assert_false(pt_log_contains("cisco123"));
    assert_false(pt_log_contains("access_token"));
}

/* Last: shutdown with an op in flight and one waiting for a token. */
static void test_shutdown_completes_inflight(void **state)
{
    pt_add_fault("{\"path\":\"/\",\"delay_ms\":2000,\"count\":0}");
    sim_post("/_sim/tokens/expire", "{}");
    struct lcm_grd_session_args ga = { .grading_session_id = "sess-flow" };
    struct pt_target alt = { .credentials = "ALT3" };     /* no token yet: waits for one */
    struct pt_outcome a, b;
    assert_int_equal(pt_call_async(LCM_KIND_GRADING, OP(get_result), NULL, &ga, NULL, &a, NULL),
                     0);
    assert_int_equal(pt_call_async(LCM_KIND_GRADING, OP(get_result), &alt, &ga, NULL, &b, NULL),
                     0);
    pt_run_ms(50);
    lcm_plugins_shutdown(pt_reg);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_true(a.code == LCM_E_CANCELLED || a.code == LCM_E_SHUTDOWN);
    assert_true(b.code == LCM_E_CANCELLED || b.code == LCM_E_SHUTDOWN);
    pt_run_ms(100);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_true(lcm_plugins_violations() == 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loaded_and_implemented),
        cmocka_unit_test_teardown(test_full_flow, per_test_teardown),
        cmocka_unit_test_teardown(test_create_is_idempotent, per_test_teardown),
        cmocka_unit_test_teardown(test_token_expiry_and_refresh, per_test_teardown),
        cmocka_unit_test_teardown(test_auth_failures, per_test_teardown),
        cmocka_unit_test_teardown(test_grading_failure, per_test_teardown),
        cmocka_unit_test_teardown(test_errors_and_timeouts, per_test_teardown),
        cmocka_unit_test_teardown(test_single_flight_token, per_test_teardown),
        cmocka_unit_test_teardown(test_cancel, per_test_teardown),
        cmocka_unit_test(test_no_secrets_logged),
        cmocka_unit_test(test_shutdown_completes_inflight),
    };
    return cmocka_run_group_tests_name("grading_plugin", tests, setup, teardown);
}
