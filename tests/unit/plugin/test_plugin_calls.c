/* Call-path tests: done exactly once and never re-entrant (violations caught, and fatal in
 * debug builds), shutdown with ops in flight (timers, pending, HTTP), the host services a
 * plugin sees (HTTP on a loopback server, secrets, config), cancel, and the SDK example. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "core/httpc.h"
#include "core/metrics.h"
#include "harness.h"
#include "plugin.h"

enum { BH_TIMER, BH_TWICE, BH_INSIDE, BH_PENDING, BH_INSIDE_ERR, BH_HTTP, BH_FAIL, BH_SECRET,
       BH_CONFIG };

/* ---- fixture world: loop, metrics, HTTP client, loopback server ---- */

static struct event_base *base;
static struct lcm_metrics *metrics;
static struct lcm_httpc *httpc;
static struct evhttp *srv;
static int srv_port;
static struct evhttp_request *held[8];
static int nheld;
static char last_method[16], last_uri[512], last_auth[256];
static int srv_hits;

static void srv_cb(struct evhttp_request *req, void *arg)
{
    const char *uri = evhttp_request_get_uri(req);
    srv_hits++;
    snprintf(last_uri, sizeof last_uri, "%s", uri);
    snprintf(last_method, sizeof last_method, "%s",
             evhttp_request_get_command(req) == EVHTTP_REQ_POST ? "POST" : "GET");
    const char *a = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    snprintf(last_auth, sizeof last_auth, "%s", a ? a : "");
    if (strncmp(uri, "/hang", 5) == 0 && nheld < 8) {
        held[nheld++] = req;            /* never answered: stays in flight */
        return;
    }
    struct evbuffer *b = evbuffer_new();
    if (strcmp(uri, "/fx") == 0) {
        evbuffer_add_printf(b, "hello-body");
        evhttp_send_reply(req, 200, "OK", b);
    } else if (strcmp(uri, "/api/v1/sessions/s1/parts/p1/grade") == 0) {
        evbuffer_add_printf(b, "{}");
        evhttp_send_reply(req, 202, "Accepted", b);
    } else {
        evbuffer_add_printf(b, "no");
        evhttp_send_reply(req, 404, "Not Found", b);
    }
    evbuffer_free(b);
}

static int setup(void **state)
{
    base = event_base_new();
    metrics = lcm_metrics_new();
    httpc = lcm_httpc_new(base, metrics);
    srv = evhttp_new(base);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(srv, "127.0.0.1", 0);
    if (!base || !metrics || !httpc || !srv || !bs)
        return -1;
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &sl);
    srv_port = ntohs(sa.sin_port);
    evhttp_set_gencb(srv, srv_cb, NULL);
    return 0;
}

static int teardown(void **state)
{
    lcm_httpc_free(httpc);
    evhttp_free(srv);
    lcm_metrics_free(metrics);
    event_base_free(base);
    return 0;
}

/* ---- helpers ---- */

struct outcome {
    int calls;
    int code;                  /* 0 = success */
    int retryable, http_status;
    char message[256];
    char id[128], extra[64];
    size_t n;
};

static void record(void *ud, const struct lcm_error *err, const void *result)
{
    struct outcome *o = ud;
    o->calls++;
    if (err) {
        o->code = err->code;
        o->retryable = err->retryable;
        o->http_status = err->http_status;
        snprintf(o->message, sizeof o->message, "%s", err->message);
        assert_null(result);
        return;
    }
    o->code = 0;
    const struct lcm_cloud_instances *res = result;
    if (res) {
        o->n = res->n;
        if (res->n) {
            snprintf(o->id, sizeof o->id, "%s", res->v[0].instance_id ? res->v[0].instance_id
                                                                      : "");
            snprintf(o->extra, sizeof o->extra, "%s",
                     res->v[0].instance_type ? res->v[0].instance_type
                     : res->v[0].state_name ? res->v[0].state_name : "");
        }
    }
}

static void record_nores(void *ud, const struct lcm_error *err, const void *result)
{
    struct outcome *o = ud;
    o->calls++;
    o->code = err ? err->code : 0;
    if (err)
        snprintf(o->message, sizeof o->message, "%s", err->message);
}

static struct lcm_plugins *load_dir(const char *dir, const char *config_json)
{
    cJSON *cfg = config_json ? cJSON_Parse(config_json) : NULL;
    struct lcm_plugin_host_ctx ctx = { .base = base, .httpc = httpc, .metrics = metrics,
                                       .config = cfg };
    char err[256];
    struct lcm_plugins *r = lcm_plugins_load(dir, &ctx, err, sizeof err);
    cJSON_Delete(cfg);     /* the registry copies what it keeps */
    assert_non_null(r);
    return r;
}

static struct lcm_plugins *load_fx(char **dirp, const char *config_json)
{
    char *dir = h_tmpdir();
    assert_int_equal(h_fx(dir, "fx-good.so", "fx.so"), 0);
    struct lcm_plugins *r = load_dir(dir, config_json);
    assert_int_equal(lcm_plugins_count(r), 1);
    *dirp = dir;
    return r;
}

static void unload(struct lcm_plugins *r, char *dir)
{
    lcm_plugins_free(r);
    h_rmtree(dir);
    free(dir);
}

static int describe(struct lcm_plugins *r, int bh, const char *endpoint, struct outcome *o,
                    uint64_t *id)
{
    struct lcm_cloud_describe_args a = { .max_results = bh };
    struct lcm_call c = { .endpoint = endpoint, .correlation_id = "test" };
    struct lcm_error err;
    return lcm_cloud_call(r, describe, &c, &a, record, o, &err, id);
}

static void wait_calls(struct outcome *o, int n)
{
    for (int i = 0; i < 3000 && o->calls < n; i++)
        h_run_for(base, 1);
}

/* Violations seen through the test handler. */
static int nviol;
static char last_viol[128];
static void on_violation(const char *plugin, const char *op, const char *what, void *ud)
{
    nviol++;
    snprintf(last_viol, sizeof last_viol, "%s", what);
}

static int reset_violations(void **state)
{
    nviol = 0;
    last_viol[0] = '\0';
    lcm_plugins_set_violation_handler(on_violation, NULL);
    return 0;
}

/* ---- tests ---- */

static void test_call_completes_once(void **state)
{
    char *dir;
    struct lcm_plugins *r = load_fx(&dir, NULL);
    struct outcome o = { 0 };
    uint64_t id = 0;
    assert_int_equal(describe(r, BH_TIMER, NULL, &o, &id), 0);
    assert_true(id > 0);
    assert_int_equal(o.calls, 0);                 /* never from inside the call */
    assert_int_equal(lcm_plugins_inflight(r), 1);
    wait_calls(&o, 1);
    h_run_for(base, 20);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.code, 0);
    assert_int_equal(o.n, 1);
    assert_string_equal(o.id, "i-fx");
    assert_int_equal(lcm_plugins_inflight(r), 0);
    assert_true(lcm_metrics_get(metrics, "lcm_plugin_calls_total",
                                "plugin=\"fx\",op=\"describe\",result=\"ok\"") >= 1);

    struct outcome f = { 0 };
    assert_int_equal(describe(r, BH_FAIL, NULL, &f, NULL), 0);
    wait_calls(&f, 1);
    assert_int_equal(f.calls, 1);
    assert_int_equal(f.code, LCM_E_UNAVAIL);
    assert_int_equal(f.retryable, 1);
    assert_int_equal(f.http_status, 503);
    assert_int_equal(nviol, 0);

    /* Synchronous refusal: error returned, done never runs. */
    struct outcome s = { 0 };
    struct lcm_error err;
    struct lcm_cloud_ids_args ids = { 0 };
    assert_int_equal(lcm_cloud_call(r, start, NULL, &ids, record, &s, &err, NULL),
                     LCM_E_NOTIMPL);
    assert_int_equal(err.code, LCM_E_NOTIMPL);
    h_run_for(base, 10);
    assert_int_equal(s.calls, 0);
    assert_int_equal(lcm_plugins_inflight(r), 0);
    unload(r, dir);
}

static void test_no_provider_and_bad_op(void **state)
{
    char *dir;
    struct lcm_plugins *r = load_fx(&dir, NULL);
    struct outcome o = { 0 };
    struct lcm_error err;
    assert_int_equal(lcm_runtime_call(r, system_info, NULL, NULL, record, &o, &err, NULL),
                     LCM_E_NOTFOUND);
    assert_non_null(strstr(err.message, "no runtime plugin"));
    assert_int_equal(lcm_plugins_call(r, LCM_KIND_CLOUD, 3, NULL, NULL, record, &o, &err, NULL),
                     LCM_E_INVAL);
    assert_int_equal(o.calls, 0);
    unload(r, dir);
}

static void test_done_twice_caught(void **state)
{
    char *dir;
    struct lcm_plugins *r = load_fx(&dir, NULL);
    struct outcome o = { 0 };
    assert_int_equal(describe(r, BH_TWICE, NULL, &o, NULL), 0);
    wait_calls(&o, 1);
    h_run_for(base, 20);
    assert_int_equal(o.calls, 1);                 /* the caller still hears once */
    assert_int_equal(nviol, 1);
    assert_string_equal(last_viol, "done called twice or for an op it did not accept");
    unload(r, dir);
}

static void test_done_inside_op_caught(void **state)
{
    char *dir;
    struct lcm_plugins *r = load_fx(&dir, NULL);
    struct outcome o = { 0 };
    assert_int_equal(describe(r, BH_INSIDE, NULL, &o, NULL), 0);
    assert_int_equal(o.calls, 0);                 /* not re-entered */
    assert_int_equal(nviol, 1);
    assert_string_equal(last_viol, "done called from inside the op");
    wait_calls(&o, 1);
    h_run_for(base, 10);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.code, LCM_E_INTERNAL);
    assert_int_equal(lcm_plugins_inflight(r), 0);

    /* done inside, then an error return: the caller only sees the error return. */
    struct outcome e = { 0 };
    assert_int_equal(describe(r, BH_INSIDE_ERR, NULL, &e, NULL), LCM_E_UNAVAIL);
    assert_int_equal(nviol, 3);
    assert_string_equal(last_viol, "done called for an op that returned an error");
    h_run_for(base, 10);
    assert_int_equal(e.calls, 0);
    assert_int_equal(lcm_plugins_inflight(r), 0);
    unload(r, dir);
}

/* Without a test handler, a violation is fatal in debug builds (LCM_DEBUG_CHECKS). */
static void test_violation_aborts_in_debug(void **state)
{
    char *dir;
    struct lcm_plugins *r = load_fx(&dir, NULL);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        lcm_plugins_set_violation_handler(NULL, NULL);
        struct outcome o = { 0 };
        if (describe(r, BH_TWICE, NULL, &o, NULL) != 0)
            _exit(3);
        wait_calls(&o, 1);
        h_run_for(base, 20);
        _exit(lcm_plugins_violations() == 1 ? 0 : 4);
    }
    int st = 0;
    waitpid(pid, &st, 0);
#ifdef LCM_DEBUG_CHECKS
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGABRT);
#else
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
#endif
    unload(r, dir);
}

static void shutdown_case(const char *config, int expect_code)
{
    char *dir;
    struct lcm_plugins *r = load_fx(&dir, config);
    struct outcome o[8];
    memset(o, 0, sizeof o);
    for (int i = 0; i < 8; i++)
        assert_int_equal(describe(r, i < 5 ? BH_PENDING : BH_TIMER, NULL, &o[i], NULL), 0);
    assert_int_equal(lcm_plugins_inflight(r), 8);
    lcm_plugins_shutdown(r);
    assert_int_equal(lcm_plugins_inflight(r), 0);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(o[i].calls, 1);
        assert_int_equal(o[i].code, expect_code);
    }
    /* Nothing fires later: the plugin's timers were dropped with it. */
    h_run_for(base, 40);
    for (int i = 0; i < 8; i++)
        assert_int_equal(o[i].calls, 1);
    struct outcome late = { 0 };
    assert_int_equal(describe(r, BH_TIMER, NULL, &late, NULL), LCM_E_SHUTDOWN);
    lcm_plugins_shutdown(r);                      /* idempotent */
    assert_int_equal(late.calls, 0);
    assert_int_equal(nviol, 0);
    unload(r, dir);
}

static void test_shutdown_plugin_finishes(void **state)
{
    shutdown_case(NULL, LCM_E_CANCELLED);
}

static void test_shutdown_host_finishes(void **state)
{
    shutdown_case("{\"fx\":{\"honour_stop\":false}}", LCM_E_SHUTDOWN);
}

static void test_http_through_host(void **state)
{
    char *dir, ep[128];
    struct lcm_plugins *r = load_fx(&dir, "{\"fx\":{\"honour_stop\":false}}");
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", srv_port);
    struct outcome o = { 0 };
    assert_int_equal(describe(r, BH_HTTP, ep, &o, NULL), 0);
    wait_calls(&o, 1);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.code, 0);
    assert_string_equal(o.id, "hello-body");
    assert_string_equal(o.extra, "200");
    assert_string_equal(last_uri, "/fx");

    /* A request still in flight at shutdown: answered once by the host; the HTTP completion
     * that arrives afterwards never reaches the unloaded plugin (ASan would see it). */
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d/hang", srv_port);
    struct outcome h = { 0 };
    int before = nheld;
    assert_int_equal(describe(r, BH_HTTP, ep, &h, NULL), 0);
    for (int i = 0; i < 2000 && nheld == before; i++)
        h_run_for(base, 1);
    assert_int_equal(nheld, before + 1);
    assert_int_equal(lcm_httpc_inflight(httpc), 1);
    lcm_plugins_shutdown(r);
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.code, LCM_E_SHUTDOWN);
    for (int i = 0; i < 500 && lcm_httpc_inflight(httpc) > 0; i++)
        h_run_for(base, 1);
    assert_int_equal(lcm_httpc_inflight(httpc), 0);
    assert_int_equal(h.calls, 1);
    unload(r, dir);
}

static void test_secrets_and_config(void **state)
{
    char *dir;
    struct lcm_plugins *r = load_fx(&dir, "{\"fx\":{\"greeting\":\"hey\",\"retries\":7,"
                                          "\"fx_token\":\"from-config\"}}");
    struct outcome o = { 0 };
    assert_int_equal(describe(r, BH_CONFIG, NULL, &o, NULL), 0);
    wait_calls(&o, 1);
    assert_string_equal(o.id, "hey");
    assert_string_equal(o.extra, "7");

    struct outcome s1 = { 0 };
    assert_int_equal(describe(r, BH_SECRET, NULL, &s1, NULL), 0);
    wait_calls(&s1, 1);
    assert_int_equal(s1.code, 0);
    assert_string_equal(s1.id, "from-config");

    setenv("LCM_FX_TOKEN", "from-env", 1);
    struct outcome s2 = { 0 };
    assert_int_equal(describe(r, BH_SECRET, NULL, &s2, NULL), 0);
    wait_calls(&s2, 1);
    unsetenv("LCM_FX_TOKEN");
    assert_string_equal(s2.id, "from-env");
    unload(r, dir);

    /* No secret anywhere: LCM_E_NOTFOUND reaches the plugin. */
    r = load_fx(&dir, NULL);
    struct outcome s3 = { 0 };
    assert_int_equal(describe(r, BH_SECRET, NULL, &s3, NULL), 0);
    wait_calls(&s3, 1);
    assert_int_equal(s3.code, LCM_E_NOTFOUND);
    unload(r, dir);
}

static void test_sdk_example(void **state)
{
    char *dir = h_tmpdir();
    assert_int_equal(h_fx(dir, "lcm-example.so", "lcm-example.so"), 0);
    char cfg[256], ep[128];
    snprintf(cfg, sizeof cfg, "{\"example\":{\"base_url\":\"http://127.0.0.1:%d\"}}", srv_port);
    setenv("LCM_EXAMPLE_API_TOKEN", "tok-123", 1);
    struct lcm_plugins *r = load_dir(dir, cfg);
    assert_int_equal(lcm_plugins_count(r), 1);
    struct lcm_error err;

    struct lcm_grd_part_args a = { .grading_session_id = "s1", .part_id = "p1" };
    struct outcome o = { 0 };
    assert_int_equal(lcm_grading_call(r, request_grading, NULL, &a, record_nores, &o, &err,
                                      NULL), 0);
    wait_calls(&o, 1);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.code, 0);
    assert_string_equal(last_method, "POST");
    assert_string_equal(last_uri, "/api/v1/sessions/s1/parts/p1/grade");
    assert_string_equal(last_auth, "Bearer tok-123");

    struct lcm_grd_part_args missing = { .grading_session_id = "nope", .part_id = "p1" };
    struct outcome nf = { 0 };
    assert_int_equal(lcm_grading_call(r, request_grading, NULL, &missing, record_nores, &nf,
                                      &err, NULL), 0);
    wait_calls(&nf, 1);
    assert_int_equal(nf.code, LCM_E_NOTFOUND);

    /* Ops the example declares unimplemented say so. */
    struct outcome ni = { 0 };
    assert_int_equal(lcm_grading_call(r, get_result, NULL, &a, record_nores, &ni, &err, NULL),
                     LCM_E_NOTIMPL);

    /* Cancel one op in flight through the plugin's cancel(). */
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d/hang", srv_port);
    struct lcm_call c = { .endpoint = ep };
    struct outcome cx = { 0 };
    uint64_t id = 0;
    assert_int_equal(lcm_grading_call(r, request_grading, &c, &a, record_nores, &cx, &err, &id),
                     0);
    h_run_for(base, 30);
    assert_int_equal(lcm_plugins_cancel(r, id), 0);
    assert_int_equal(cx.calls, 0);
    wait_calls(&cx, 1);
    assert_int_equal(cx.calls, 1);
    assert_int_equal(cx.code, LCM_E_CANCELLED);
    assert_int_equal(lcm_plugins_cancel(r, id), LCM_E_NOTFOUND);

    /* And one in flight at shutdown: the example's stop() answers it. */
    struct outcome sd = { 0 };
    assert_int_equal(lcm_grading_call(r, request_grading, &c, &a, record_nores, &sd, &err,
                                      NULL), 0);
    h_run_for(base, 30);
    lcm_plugins_shutdown(r);
    assert_int_equal(sd.calls, 1);
    assert_int_equal(sd.code, LCM_E_CANCELLED);
    for (int i = 0; i < 500 && lcm_httpc_inflight(httpc) > 0; i++)
        h_run_for(base, 1);
    assert_int_equal(sd.calls, 1);
    unsetenv("LCM_EXAMPLE_API_TOKEN");
    assert_int_equal(nviol, 0);
    unload(r, dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_call_completes_once, reset_violations),
        cmocka_unit_test_setup(test_no_provider_and_bad_op, reset_violations),
        cmocka_unit_test_setup(test_done_twice_caught, reset_violations),
        cmocka_unit_test_setup(test_done_inside_op_caught, reset_violations),
        cmocka_unit_test_setup(test_violation_aborts_in_debug, reset_violations),
        cmocka_unit_test_setup(test_shutdown_plugin_finishes, reset_violations),
        cmocka_unit_test_setup(test_shutdown_host_finishes, reset_violations),
        cmocka_unit_test_setup(test_http_through_host, reset_violations),
        cmocka_unit_test_setup(test_secrets_and_config, reset_violations),
        cmocka_unit_test_setup(test_sdk_example, reset_violations),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
