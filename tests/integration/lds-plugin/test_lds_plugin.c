/* Integration tests of the lds plugin: build/plugins/lcm-lds.so loaded through the real loader
 * with lcmd's host services (libevent loop, curl-multi client, metrics), talking HTTP Basic to
 * a real lds-sim process on a free loopback port; faults injected through /_sim/faults. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "plugin.h"
#include "plugtest.h"

#define OP(name) offsetof(struct lcm_delivery_ops, name)
#define FQN "Exam CCIE TEST v1 DES 1.1"
#define FRONTEND "https://learn.example.test:8443/lds"

static char sim_url[128];

static void call(size_t off, const struct pt_target *t, const void *args, pt_conv_fn conv,
                 struct pt_outcome *o)
{
    pt_call(LCM_KIND_DELIVERY, off, t, args, conv, o);
}

static cJSON *conv_session(const void *r)
{
    const struct lcm_lds_session *s = r;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", s->id ? s->id : "");
    cJSON_AddStringToObject(o, "state", s->state ? s->state : "");
    if (s->part_state)
        cJSON_AddStringToObject(o, "part_state", s->part_state);
    cJSON_AddNumberToObject(o, "is_finalized", s->is_finalized);
    return o;
}

static cJSON *conv_url(const void *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "url", ((const struct lcm_lds_url *)r)->url);
    return o;
}

static const struct lcm_lds_create_args create_args = {
    .form_qualified_name = FQN, .external_id = "sess-0001", .candidate_id = "cand-42",
    .first_name = "Ada", .last_name = "Lovelace", .email = "ada@example.test",
    .timeslot_start_ms = 1767261600000, .timeslot_end_ms = 1767268800000,
    .max_length_minutes = 120,
};

/* Creates a session; returns its id (caller frees). */
static char *create_session(const struct pt_target *t)
{
    struct pt_outcome o;
    call(OP(session_create), t, &create_args, conv_session, &o);
    pt_expect_ok(&o);
    assert_string_equal(pt_res_str(&o, "state"), "created");
    char *id = strdup(pt_res_str(&o, "id"));
    pt_outcome_free(&o);
    assert_true(strlen(id) >= 32);
    return id;
}

/* GET /_sim/sessions/<id> as JSON (caller deletes). */
static cJSON *sim_session(const char *id)
{
    char path[200], *body = NULL;
    snprintf(path, sizeof path, "/_sim/sessions/%s", id);
    assert_int_equal(pt_sim("GET", path, NULL, &body), 200);
    cJSON *j = cJSON_Parse(body);
    free(body);
    assert_non_null(j);
    return j;
}

static double lds_stat(const char *f) { return pt_sim_num("/_sim/stats", f); }

/* ---- setup ---- */

static int setup(void **state)
{
    const char *argv[] = { "--username", "lds-user", "--password", "lds pass:word", "--quiet",
                           NULL };
    if (pt_start_sim(LDS_SIM, argv) != 0)
        return -1;
    snprintf(sim_url, sizeof sim_url, "http://127.0.0.1:%d", pt_sim_port);
    setenv("LCM_LDS_URL", sim_url, 1);
    setenv("LCM_LDS_FRONTEND_URL", FRONTEND, 1);
    setenv("LCM_LDS_USERNAME", "lds-user", 1);
    setenv("LCM_LDS_PASSWORD", "lds pass:word", 1);
    setenv("LCM_BADLDS_USERNAME", "lds-user", 1);
    setenv("LCM_BADLDS_PASSWORD", "bad-pw-7731", 1);
    setenv("LCM_LDSEU_USERNAME", "lds-user", 1);
    setenv("LCM_LDSEU_PASSWORD", "lds pass:word", 1);
    char cfg[1024];
    /* Short timeouts so timeouts and retries show up quickly; one regional deployment. */
    snprintf(cfg, sizeof cfg,
             "{\"lds\": {\"timeout_ms\": 700, \"connect_timeout_ms\": 500, \"max_retries\": 2,"
             " \"deployments\": \"{\\\"eu-west-1\\\": {\\\"url\\\": \\\"%s\\\", "
             "\\\"frontend_url\\\": \\\"https://eu.learn.example.test\\\", "
             "\\\"credentials\\\": \\\"LDSEU\\\"}}\"}}", sim_url);
    return pt_load(LDS_PLUGIN, cfg);
}

static int teardown(void **state)
{
    int rc = pt_teardown();
    if (rc != 0)
        fprintf(stderr, "lds-sim exited with %d\n", rc);
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
    struct lcm_plugin *p = lcm_plugins_get(pt_reg, LCM_KIND_DELIVERY);
    assert_non_null(p);
    assert_string_equal(lcm_plugin_name(p), "lds");
    static const size_t ops[] = { OP(session_create), OP(set_devices), OP(session_get),
                                  OP(launch_url), OP(release), OP(refresh_content),
                                  OP(session_find) };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        assert_true(lcm_plugin_implements(p, ops[i]));
    cJSON *st = lcm_plugins_status_json(pt_reg);
    const cJSON *l = cJSON_GetArrayItem(cJSON_GetObjectItem(st, "loaded"), 0);
    const cJSON *ni = cJSON_GetObjectItem(l, "not_implemented");
    assert_true(ni == NULL || cJSON_GetArraySize(ni) == 0);
    /* The password is never shown. */
    char *txt = cJSON_PrintUnformatted(st);
    assert_null(strstr(txt, "lds pass:word"));
    free(txt);
    cJSON_Delete(st);
}

static void test_full_flow(void **state)
{
    double created0 = lds_stat("lds.created");
    char *id = create_session(NULL);
    assert_true(lds_stat("lds.created") == created0 + 1);

    /* What LDS got: the body the spec asks for, with our ids. */
    cJSON *s = sim_session(id);
    assert_string_equal(cJSON_GetObjectItem(s, "auth_id")->valuestring, "sess-0001");
    assert_string_equal(cJSON_GetObjectItem(s, "candidate_id")->valuestring, "cand-42");
    assert_string_equal(cJSON_GetObjectItem(s, "scheduled_date")->valuestring,
                        "2026-01-01T10:00:00Z");
    const cJSON *part = cJSON_GetArrayItem(cJSON_GetObjectItem(s, "session_parts"), 0);
    assert_string_equal(cJSON_GetObjectItem(part, "form_qualified_name")->valuestring, FQN);
    assert_string_equal(cJSON_GetObjectItem(part, "repository_type")->valuestring, "minio");
    cJSON_Delete(s);

    /* Devices of part 1: worker IP and lab ports, one with a console password. */
    struct lcm_lds_device devs[] = {
        { "R1", "telnet", "10.1.2.3", 5001, NULL },
        { "SW1", "ssh", "10.1.2.3", 5002, "cisco123" },
    };
    struct lcm_lds_devices_args da = { .lds_session_id = id, .part = 1, .v = devs, .n = 2 };
    struct pt_outcome o;
    call(OP(set_devices), NULL, &da, NULL, &o);
    pt_expect_ok(&o);
    s = sim_session(id);
    part = cJSON_GetArrayItem(cJSON_GetObjectItem(s, "session_parts"), 0);
    const cJSON *dl = cJSON_GetObjectItem(part, "devices");
    assert_int_equal(cJSON_GetArraySize(dl), 2);
    const cJSON *d0 = cJSON_GetArrayItem(dl, 0), *d1 = cJSON_GetArrayItem(dl, 1);
    assert_string_equal(cJSON_GetObjectItem(d0, "device_label")->valuestring, "R1");
    assert_string_equal(cJSON_GetObjectItem(d0, "protocol")->valuestring, "telnet");
    assert_string_equal(cJSON_GetObjectItem(d0, "host")->valuestring, "10.1.2.3");
    assert_int_equal(cJSON_GetObjectItem(d0, "port")->valueint, 5001);
    assert_int_equal(cJSON_GetObjectItem(d1, "port")->valueint, 5002);
    cJSON_Delete(s);

    /* Launch URL: LDS's link, on the configured frontend. */
    struct lcm_lds_session_args sa = { .lds_session_id = id };
    call(OP(launch_url), NULL, &sa, conv_url, &o);
    pt_expect_ok(&o);
    const char *url = pt_res_str(&o, "url");
    char want[256];
    snprintf(want, sizeof want, FRONTEND "/lablet/%s?token=", id);
    if (strncmp(url, want, strlen(want)) != 0)
        fail_msg("launch url %s does not start with %s", url, want);
    pt_outcome_free(&o);

    call(OP(session_get), NULL, &sa, conv_session, &o);
    pt_expect_ok(&o);
    assert_string_equal(pt_res_str(&o, "id"), id);
    assert_string_equal(pt_res_str(&o, "state"), "created");
    assert_string_equal(pt_res_str(&o, "part_state"), "created");
    assert_true(pt_res_num(&o, "is_finalized") == 0);
    pt_outcome_free(&o);

    /* The learner logs in: get sees it. */
    char path[200];
    snprintf(path, sizeof path, "/_sim/sessions/%s/login", id);
    assert_int_equal(pt_sim("POST", path, "{}", NULL), 202);
    call(OP(session_get), NULL, &sa, conv_session, &o);
    pt_expect_ok(&o);
    assert_string_equal(pt_res_str(&o, "state"), "running");
    assert_string_equal(pt_res_str(&o, "part_state"), "running");
    pt_outcome_free(&o);

    /* Release (twice: teardown retries must be harmless), then the session is final. */
    double rel0 = lds_stat("lds.released");
    call(OP(release), NULL, &sa, NULL, &o);
    pt_expect_ok(&o);
    call(OP(release), NULL, &sa, NULL, &o);
    pt_expect_ok(&o);
    assert_true(lds_stat("lds.released") == rel0 + 1);
    call(OP(session_get), NULL, &sa, conv_session, &o);
    pt_expect_ok(&o);
    assert_string_equal(pt_res_str(&o, "state"), "finalized");
    assert_true(pt_res_num(&o, "is_finalized") == 1);
    pt_outcome_free(&o);

    /* A finalized session refuses devices and launch links: conflict, not retryable. */
    call(OP(launch_url), NULL, &sa, conv_url, &o);
    pt_expect_err(&o, LCM_E_CONFLICT, 0);
    assert_int_equal(o.http_status, 409);
    call(OP(set_devices), NULL, &da, NULL, &o);
    pt_expect_err(&o, LCM_E_CONFLICT, 0);

    /* Content refresh for the FQN (spaces in the path segment). */
    struct lcm_lds_content_args ca = { .form_qualified_name = FQN };
    call(OP(refresh_content), NULL, &ca, NULL, &o);
    pt_expect_ok(&o);
    call(OP(refresh_content), NULL, &ca, NULL, &o);
    pt_expect_ok(&o);
    char *body = NULL;
    assert_int_equal(pt_sim("GET", "/_sim/content", NULL, &body), 200);
    cJSON *c = cJSON_Parse(body);
    free(body);
    const cJSON *fc = cJSON_GetObjectItem(c, FQN);
    assert_non_null(fc);
    assert_int_equal(cJSON_GetObjectItem(fc, "refreshes")->valueint, 2);
    cJSON_Delete(c);
    free(id);
}

/* Creates a session for external id ext; returns its id (caller frees). */
static char *create_for(const char *ext)
{
    struct lcm_lds_create_args a = create_args;
    a.external_id = ext;
    struct pt_outcome o;
    call(OP(session_create), NULL, &a, conv_session, &o);
    pt_expect_ok(&o);
    char *id = strdup(pt_res_str(&o, "id"));
    pt_outcome_free(&o);
    return id;
}

/* The sim's created of a session ("2026-01-01T10:00:00.123456Z") as Unix ms. */
static int64_t sim_created_ms(const char *id)
{
    cJSON *s = sim_session(id);
    const char *c = cJSON_GetObjectItem(s, "created")->valuestring;
    struct tm tm = { 0 };
    int usec = 0;
    assert_int_equal(sscanf(c, "%4d-%2d-%2dT%2d:%2d:%2d.%6dZ", &tm.tm_year, &tm.tm_mon,
                            &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &usec), 7);
    cJSON_Delete(s);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + usec / 1000;
}

static void sim_release(const char *id)
{
    struct lcm_lds_session_args sa = { .lds_session_id = id };
    struct pt_outcome o;
    call(OP(release), NULL, &sa, NULL, &o);
    pt_expect_ok(&o);
}

static void find(const char *fqn, const char *ext, int64_t after_ms, struct pt_outcome *o)
{
    struct lcm_lds_find_args a = { .form_qualified_name = fqn, .external_id = ext,
                                   .created_after_ms = after_ms };
    call(OP(session_find), NULL, &a, conv_session, o);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_session_find(void **state)
{
    struct pt_outcome o;
    /* Other sessions of the same FQN exist (sess-0001): only our external id counts. */
    char *other = create_for("sess-0001");
    char *id = create_for("find-0001");
    double r0 = lds_stat("lds.reports");
    find(FQN, "find-0001", 0, &o);
    pt_expect_ok(&o);
    assert_string_equal(pt_res_str(&o, "id"), id);
    assert_string_equal(pt_res_str(&o, "state"), "created");
    assert_string_equal(pt_res_str(&o, "part_state"), "created");
    assert_true(pt_res_num(&o, "is_finalized") == 0);
    pt_outcome_free(&o);
    assert_true(lds_stat("lds.reports") == r0 + 1);            /* one request */
    char line[200];
    snprintf(line, sizeof line, "msg=\"lds session found\" lds_session_id=%s", id);
    assert_true(pt_log_contains(line));

    /* created_after: an hour ago finds it; the LDS state is what LDS says now. */
    char path[200];
    snprintf(path, sizeof path, "/_sim/sessions/%s/login", id);
    assert_int_equal(pt_sim("POST", path, "{}", NULL), 202);
    find(FQN, "find-0001", wall_ms() - 3600 * 1000, &o);
    pt_expect_ok(&o);
    assert_string_equal(pt_res_str(&o, "id"), id);
    assert_string_equal(pt_res_str(&o, "state"), "running");
    assert_string_equal(pt_res_str(&o, "part_state"), "running");
    pt_outcome_free(&o);

    /* Not found: another external id, another form, created_after in the future (LDS filters
     * it), and 1 ms after its creation (LDS's from is whole seconds: the plugin filters). */
    find(FQN, "find-none", 0, &o);
    pt_expect_err(&o, LCM_E_NOTFOUND, 0);
    find("Exam CCIE TEST v2 ENT 1.0", "find-0001", 0, &o);
    pt_expect_err(&o, LCM_E_NOTFOUND, 0);
    find(FQN, "find-0001", wall_ms() + 3600 * 1000, &o);
    pt_expect_err(&o, LCM_E_NOTFOUND, 0);
    int64_t created = sim_created_ms(id);
    find(FQN, "find-0001", created + 1, &o);
    pt_expect_err(&o, LCM_E_NOTFOUND, 0);
    find(FQN, "find-0001", created, &o);
    pt_expect_ok(&o);
    pt_outcome_free(&o);

    /* A finalized session is not found. */
    sim_release(id);
    find(FQN, "find-0001", 0, &o);
    pt_expect_err(&o, LCM_E_NOTFOUND, 0);
    assert_int_equal(o.http_status, 200);

    /* Two sessions for one external id: the newer; once it is released, the older. */
    char *older = create_for("find-0002");
    pt_run_ms(5);
    char *newer = create_for("find-0002");
    assert_true(sim_created_ms(newer) > sim_created_ms(older));
    find(FQN, "find-0002", 0, &o);
    pt_expect_ok(&o);
    assert_string_equal(pt_res_str(&o, "id"), newer);
    pt_outcome_free(&o);
    sim_release(newer);
    find(FQN, "find-0002", 0, &o);
    pt_expect_ok(&o);
    assert_string_equal(pt_res_str(&o, "id"), older);
    pt_outcome_free(&o);
    sim_release(older);
    find(FQN, "find-0002", 0, &o);
    pt_expect_err(&o, LCM_E_NOTFOUND, 0);

    /* Idempotent: one 503 is hidden by the host's retry; 503 on every attempt is retryable. */
    char *again = create_for("find-0003");
    pt_add_fault("{\"path\":\"/reporting/lab_session\",\"method\":\"GET\","
                 "\"status\":503,\"count\":1}");
    find(FQN, "find-0003", 0, &o);
    pt_expect_ok(&o);
    assert_string_equal(pt_res_str(&o, "id"), again);
    pt_outcome_free(&o);
    double f0 = pt_sim_num("/_sim/stats", "faulted");
    pt_add_fault("{\"path\":\"/reporting/lab_session\",\"status\":503,\"count\":0}");
    find(FQN, "find-0003", 0, &o);
    pt_expect_err(&o, LCM_E_UNAVAIL, 1);
    assert_true(pt_sim_num("/_sim/stats", "faulted") == f0 + 3);
    pt_clear_faults();
    free(other);
    free(id);
    free(older);
    free(newer);
    free(again);
}

static void test_session_find_bad_args(void **state)
{
    char longfqn[300];
    memset(longfqn, 'x', sizeof longfqn - 1);
    longfqn[sizeof longfqn - 1] = '\0';
    const struct lcm_lds_find_args bad[] = {
        { .form_qualified_name = NULL, .external_id = "find-x" },
        { .form_qualified_name = "", .external_id = "find-x" },
        { .form_qualified_name = FQN, .external_id = NULL },
        { .form_qualified_name = FQN, .external_id = "" },
        { .form_qualified_name = FQN, .external_id = "find-x", .created_after_ms = -1 },
        { .form_qualified_name = FQN, .external_id = "find-x",
          .created_after_ms = INT64_C(253402300800000) },
        { .form_qualified_name = longfqn, .external_id = "find-x" },
        { .form_qualified_name = FQN, .external_id = longfqn },
    };
    struct pt_outcome o;
    double req0 = pt_sim_num("/_sim/stats", "requests");
    assert_int_equal(pt_call_async(LCM_KIND_DELIVERY, OP(session_find), NULL, NULL, NULL, &o,
                                   NULL), LCM_E_INVAL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(pt_call_async(LCM_KIND_DELIVERY, OP(session_find), NULL, &bad[i], NULL,
                                       &o, NULL), LCM_E_INVAL);
        assert_int_equal(o.retryable, 0);
    }
    pt_run_ms(20);
    assert_int_equal(o.calls, 0);
    /* Nothing went out (+1: the stats call itself). */
    assert_true(pt_sim_num("/_sim/stats", "requests") == req0 + 1);
}

static void test_region_deployment(void **state)
{
    /* eu-west-1 has its own deployment: its frontend and its credential set. */
    struct pt_target eu = { .region = "eu-west-1" };
    char *id = create_session(&eu);
    cJSON *s = sim_session(id);
    assert_string_equal(cJSON_GetObjectItem(s, "location")->valuestring, "eu-west-1");
    cJSON_Delete(s);
    struct lcm_lds_session_args sa = { .lds_session_id = id };
    struct pt_outcome o;
    call(OP(launch_url), &eu, &sa, conv_url, &o);
    pt_expect_ok(&o);
    assert_true(strncmp(pt_res_str(&o, "url"), "https://eu.learn.example.test/lablet/", 37) == 0);
    pt_outcome_free(&o);
    /* A region without a deployment uses the default one. */
    struct pt_target other = { .region = "ap-south-1" };
    call(OP(launch_url), &other, &sa, conv_url, &o);
    pt_expect_ok(&o);
    assert_true(strncmp(pt_res_str(&o, "url"), FRONTEND "/lablet/", strlen(FRONTEND) + 8) == 0);
    pt_outcome_free(&o);
    /* An explicit endpoint wins. */
    struct pt_target ep = { .endpoint = "http://127.0.0.1:1" };
    call(OP(session_get), &ep, &sa, conv_session, &o);
    pt_expect_err(&o, LCM_E_UNAVAIL, 1);
    free(id);
}

static void test_auth_and_config_errors(void **state)
{
    double af0 = lds_stat("lds.auth_failures");
    struct pt_target bad = { .credentials = "BADLDS" };
    struct pt_outcome o;
    call(OP(session_create), &bad, &create_args, conv_session, &o);
    pt_expect_err(&o, LCM_E_AUTH, 0);
    assert_int_equal(o.http_status, 401);
    assert_null(strstr(o.message, "bad-pw-7731"));
    /* 401 is final: no retry. */
    assert_true(lds_stat("lds.auth_failures") == af0 + 1);
    struct lcm_lds_session_args sa = { .lds_session_id = "00000000-0000-4000-8000-000000000000" };
    call(OP(session_get), &bad, &sa, conv_session, &o);
    pt_expect_err(&o, LCM_E_AUTH, 0);
    assert_true(lds_stat("lds.auth_failures") == af0 + 2);

    /* A credential set without secrets: refused at once, done never runs. */
    struct pt_target none = { .credentials = "NOSUCHSET" };
    assert_int_equal(pt_call_async(LCM_KIND_DELIVERY, OP(session_get), &none, &sa, NULL, &o,
                                   NULL), LCM_E_CONFIG);
    pt_run_ms(20);
    assert_int_equal(o.calls, 0);
    assert_int_equal(o.retryable, 0);

    /* Bad arguments: refused synchronously. */
    struct lcm_lds_session_args evil = { .lds_session_id = "../../admin" };
    assert_int_equal(pt_call_async(LCM_KIND_DELIVERY, OP(release), NULL, &evil, NULL, &o, NULL),
                     LCM_E_INVAL);
    struct lcm_lds_create_args nofqn = create_args;
    nofqn.form_qualified_name = NULL;
    assert_int_equal(pt_call_async(LCM_KIND_DELIVERY, OP(session_create), NULL, &nofqn, NULL,
                                   &o, NULL), LCM_E_INVAL);
    struct lcm_lds_device nohost = { "R1", "telnet", NULL, 1, NULL };
    struct lcm_lds_devices_args da = { .lds_session_id = sa.lds_session_id, .v = &nohost,
                                       .n = 1 };
    assert_int_equal(pt_call_async(LCM_KIND_DELIVERY, OP(set_devices), NULL, &da, NULL, &o,
                                   NULL), LCM_E_INVAL);
    pt_run_ms(20);
    assert_int_equal(o.calls, 0);
}

static void test_not_found(void **state)
{
    struct lcm_lds_session_args sa = { .lds_session_id = "00000000-0000-4000-8000-000000000000" };
    struct pt_outcome o;
    double req0 = pt_sim_num("/_sim/stats", "requests");
    call(OP(session_get), NULL, &sa, conv_session, &o);
    pt_expect_err(&o, LCM_E_NOTFOUND, 0);
    assert_int_equal(o.http_status, 404);
    assert_non_null(strstr(o.message, "not found"));
    call(OP(release), NULL, &sa, NULL, &o);
    pt_expect_err(&o, LCM_E_NOTFOUND, 0);
    struct lcm_lds_device dev = { "R1", "telnet", "10.0.0.1", 5000, NULL };
    struct lcm_lds_devices_args da = { .lds_session_id = sa.lds_session_id, .part = 1,
                                       .v = &dev, .n = 1 };
    call(OP(set_devices), NULL, &da, NULL, &o);
    pt_expect_err(&o, LCM_E_NOTFOUND, 0);
    /* 404s are not retried: three calls, three requests (+1 for the stats call itself). */
    assert_true(pt_sim_num("/_sim/stats", "requests") == req0 + 4);
}

static void test_server_errors(void **state)
{
    char *id = create_session(NULL);
    struct lcm_lds_session_args sa = { .lds_session_id = id };
    struct pt_outcome o;

    /* LDS down for the GETs: retried by the host (1 + max_retries), then retryable. */
    double f0 = pt_sim_num("/_sim/stats", "faulted");
    pt_add_fault("{\"path\":\"/reservations/v3/lab_session/\",\"method\":\"GET\","
                 "\"status\":503,\"count\":0}");
    call(OP(session_get), NULL, &sa, conv_session, &o);
    pt_expect_err(&o, LCM_E_UNAVAIL, 1);
    assert_int_equal(o.http_status, 503);
    assert_true(pt_sim_num("/_sim/stats", "faulted") == f0 + 3);
    pt_clear_faults();

    /* One 502: the host's retry hides it. */
    pt_add_fault("{\"path\":\"/lablet_launch_url\",\"status\":502,\"count\":1}");
    call(OP(launch_url), NULL, &sa, conv_url, &o);
    pt_expect_ok(&o);
    pt_outcome_free(&o);

    /* Create is not idempotent: a 503 is not retried (no second session), but retryable. */
    double c0 = lds_stat("lds.created");
    f0 = pt_sim_num("/_sim/stats", "faulted");
    pt_add_fault("{\"path\":\"/reservations/v3/lab_session\",\"method\":\"POST\","
                 "\"status\":503,\"count\":1}");
    call(OP(session_create), NULL, &create_args, conv_session, &o);
    pt_expect_err(&o, LCM_E_UNAVAIL, 1);
    assert_true(pt_sim_num("/_sim/stats", "faulted") == f0 + 1);
    assert_true(lds_stat("lds.created") == c0);

    /* 429: throttled, retryable; 504: timeout, retryable; 400: remote error, final. */
    pt_add_fault("{\"path\":\"/release\",\"status\":429,\"count\":0}");
    call(OP(release), NULL, &sa, NULL, &o);
    pt_expect_err(&o, LCM_E_THROTTLED, 1);
    pt_clear_faults();
    pt_add_fault("{\"path\":\"/release\",\"status\":504,\"count\":0}");
    call(OP(release), NULL, &sa, NULL, &o);
    pt_expect_err(&o, LCM_E_TIMEOUT, 1);
    pt_clear_faults();
    pt_add_fault("{\"path\":\"/devices\",\"status\":400,\"count\":1}");
    struct lcm_lds_device dev = { "R1", "telnet", "10.0.0.1", 5000, NULL };
    struct lcm_lds_devices_args da = { .lds_session_id = id, .part = 1, .v = &dev, .n = 1 };
    call(OP(set_devices), NULL, &da, NULL, &o);
    pt_expect_err(&o, LCM_E_REMOTE, 0);
    assert_int_equal(o.http_status, 400);
    free(id);
}

static void test_timeouts_and_drops(void **state)
{
    char *id = create_session(NULL);
    struct lcm_lds_session_args sa = { .lds_session_id = id };
    struct pt_outcome o;

    /* Slower than timeout_ms (700) on every attempt: a retryable timeout. */
    pt_add_fault("{\"path\":\"/reservations/v3/lab_session/\",\"method\":\"GET\","
                 "\"delay_ms\":1500,\"count\":0}");
    uint64_t t0 = pt_now_ms();
    call(OP(session_get), NULL, &sa, conv_session, &o);
    pt_expect_err(&o, LCM_E_TIMEOUT, 1);
    assert_true(pt_now_ms() - t0 >= 700);

    /* A call deadline shorter than the timeout ends it sooner. */
    struct pt_target dl = { .deadline_ms = 0 };
    t0 = pt_now_ms();
    dl.deadline_ms = (int64_t)t0 + 300;
    /* deadline_ms is on the host's monotonic clock, which is CLOCK_MONOTONIC as ours */
    call(OP(session_get), &dl, &sa, conv_session, &o);
    pt_expect_err(&o, LCM_E_TIMEOUT, 1);
    assert_true(pt_now_ms() - t0 < 650);
    /* A deadline already passed: refused at once. */
    dl.deadline_ms = (int64_t)pt_now_ms() - 1;
    assert_int_equal(pt_call_async(LCM_KIND_DELIVERY, OP(session_get), &dl, &sa, NULL, &o,
                                   NULL), LCM_E_TIMEOUT);
    assert_int_equal(o.retryable, 1);
    pt_clear_faults();

    /* Connection dropped without an answer: unavailable, retryable. */
    pt_add_fault("{\"path\":\"/reservations/v3/lab_session/\",\"drop\":true,\"count\":0}");
    call(OP(session_get), NULL, &sa, conv_session, &o);
    pt_expect_err(&o, LCM_E_UNAVAIL, 1);
    pt_clear_faults();

    /* And LDS is fine again. */
    call(OP(session_get), NULL, &sa, conv_session, &o);
    pt_expect_ok(&o);
    pt_outcome_free(&o);
    free(id);
}

static void test_cancel(void **state)
{
    char *id = create_session(NULL);
    struct lcm_lds_session_args sa = { .lds_session_id = id };
    pt_add_fault("{\"path\":\"/reservations/v3/lab_session/\",\"delay_ms\":600,\"count\":1}");
    struct pt_outcome o;
    uint64_t op = 0;
    assert_int_equal(pt_call_async(LCM_KIND_DELIVERY, OP(session_get), NULL, &sa, conv_session,
                                   &o, &op), 0);
    pt_run_ms(50);
    assert_int_equal(o.calls, 0);
    assert_int_equal(lcm_plugins_cancel(pt_reg, op), 0);
    pt_run_until(&o.calls, 3000);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.code, LCM_E_CANCELLED);
    pt_run_ms(700);
    assert_int_equal(o.calls, 1);
    assert_int_equal(lcm_plugins_inflight(pt_reg), 0);
    free(id);
}

/* No credential or device password ever reaches a log line. */
static void test_no_secrets_logged(void **state)
{
    assert_true(pt_log_contains("msg=\"lds op failed\""));     /* the log is captured */
    assert_false(pt_log_contains("lds pass:word"));
    assert_false(pt_log_contains("cisco123"));
    assert_false(pt_log_contains("bad-pw-7731"));
}

/* Last: shutdown with ops in flight completes each exactly once. */
static void test_shutdown_completes_inflight(void **state)
{
    pt_add_fault("{\"path\":\"/\",\"delay_ms\":2000,\"count\":0}");
    struct lcm_lds_session_args sa = { .lds_session_id = "00000000-0000-4000-8000-000000000001" };
    struct pt_outcome a, b;
    assert_int_equal(pt_call_async(LCM_KIND_DELIVERY, OP(session_get), NULL, &sa, NULL, &a,
                                   NULL), 0);
    assert_int_equal(pt_call_async(LCM_KIND_DELIVERY, OP(session_create), NULL, &create_args,
                                   NULL, &b, NULL), 0);
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
        cmocka_unit_test_teardown(test_session_find, per_test_teardown),
        cmocka_unit_test_teardown(test_session_find_bad_args, per_test_teardown),
        cmocka_unit_test_teardown(test_region_deployment, per_test_teardown),
        cmocka_unit_test_teardown(test_auth_and_config_errors, per_test_teardown),
        cmocka_unit_test_teardown(test_not_found, per_test_teardown),
        cmocka_unit_test_teardown(test_server_errors, per_test_teardown),
        cmocka_unit_test_teardown(test_timeouts_and_drops, per_test_teardown),
        cmocka_unit_test_teardown(test_cancel, per_test_teardown),
        cmocka_unit_test(test_no_secrets_logged),
        cmocka_unit_test(test_shutdown_completes_inflight),
    };
    return cmocka_run_group_tests_name("lds_plugin", tests, setup, teardown);
}
