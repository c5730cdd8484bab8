/* The async HTTP client against an in-process evhttp server on the same loop: success,
 * timeout, cancel, retry with backoff, no retry for non-idempotent calls, auth headers,
 * done exactly once and never re-entrantly, shutdown with requests in flight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "core/httpc.h"
#include "core/metrics.h"

struct fixture {
    struct event_base *base;
    struct evhttp *http;
    struct lcm_metrics *m;
    struct lcm_httpc *c;
    int port;
    int flaky_left;      /* /flaky fails this many more times */
    int flaky_hits;
    int post_hits;
};

struct result {
    int calls;
    int status;
    int cancelled, timed_out, attempts;
    char body[256];
    int in_request;      /* set while lcm_httpc_request runs: done must not see it */
    int reentrant;
    struct event_base *base;
    int stop_after;
};

static void slow_reply(evutil_socket_t fd, short w, void *arg)
{
    (void)fd;
    (void)w;
    struct evhttp_request *req = arg;
    evhttp_send_reply(req, 200, "OK", NULL);
}

static void handler(struct evhttp_request *req, void *arg)
{
    struct fixture *f = arg;
    const char *uri = evhttp_request_get_uri(req);
    struct evbuffer *out = evbuffer_new();
    if (strcmp(uri, "/ok") == 0) {
        evbuffer_add_printf(out, "hello");
        evhttp_send_reply(req, 200, "OK", out);
    } else if (strcmp(uri, "/slow") == 0) {
        struct timeval tv = { 2, 0 };
        event_base_once(f->base, -1, EV_TIMEOUT, slow_reply, req, &tv);
    } else if (strcmp(uri, "/flaky") == 0) {
        f->flaky_hits++;
        if (f->flaky_left > 0) {
            f->flaky_left--;
            evhttp_send_reply(req, 503, "Unavailable", out);
        } else {
            evbuffer_add_printf(out, "recovered");
            evhttp_send_reply(req, 200, "OK", out);
        }
    } else if (strcmp(uri, "/post") == 0) {
        f->post_hits++;
        evhttp_send_reply(req, 500, "Boom", out);
    } else if (strcmp(uri, "/auth") == 0) {
        const char *a = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
        evbuffer_add_printf(out, "%s", a ? a : "none");
        evhttp_send_reply(req, 200, "OK", out);
    } else if (strcmp(uri, "/big") == 0) {
        for (int i = 0; i < 2000; i++)
            evbuffer_add_printf(out, "0123456789");
        evhttp_send_reply(req, 200, "OK", out);
    } else {
        evhttp_send_reply(req, 404, "Not Found", out);
    }
    evbuffer_free(out);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->base = event_base_new();
    f->http = evhttp_new(f->base);
    struct evhttp_bound_socket *s = evhttp_bind_socket_with_handle(f->http, "127.0.0.1", 0);
    assert_non_null(s);
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);
    getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&sin, &sl);
    f->port = ntohs(sin.sin_port);
    evhttp_set_gencb(f->http, handler, f);
    f->m = lcm_metrics_new();
    f->c = lcm_httpc_new(f->base, f->m);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    lcm_httpc_free(f->c);
    evhttp_free(f->http);
    lcm_metrics_free(f->m);
    event_base_free(f->base);
    free(f);
    return 0;
}

static void done_cb(const struct lcm_httpc_resp *r, void *ud)
{
    struct result *res = ud;
    if (res->in_request)
        res->reentrant = 1;
    res->calls++;
    res->status = r->status;
    res->cancelled = r->cancelled;
    res->timed_out = r->timed_out;
    res->attempts = r->attempts;
    snprintf(res->body, sizeof(res->body), "%.*s", (int)(r->body_len < 200 ? r->body_len : 200), r->body);
    if (res->base)
        event_base_loopexit(res->base, NULL);
}

static uint64_t start(struct fixture *f, const char *path, struct lcm_httpc_req *rq, struct result *res)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", f->port, path);
    rq->url = url;
    res->base = f->base;
    res->in_request = 1;
    uint64_t id = 0;
    assert_int_equal(lcm_httpc_request(f->c, rq, done_cb, res, &id), 0);
    res->in_request = 0;
    return id;
}

static void run(struct fixture *f)
{
    struct timeval guard = { 10, 0 };
    event_base_loopexit(f->base, &guard);
    event_base_dispatch(f->base);
}

static void ok(void **state)
{
    struct fixture *f = *state;
    struct lcm_httpc_req rq = { .method = "GET", .metric_label = "test" };
    struct result res = { 0 };
    start(f, "/ok", &rq, &res);
    run(f);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.reentrant, 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "hello");
    assert_true(lcm_metrics_get(f->m, "lcm_httpc_requests_total", "target=\"test\",code=\"200\"") == 1);
}

static void timeout(void **state)
{
    struct fixture *f = *state;
    struct lcm_httpc_req rq = { .method = "GET", .timeout_ms = 200 };
    struct result res = { 0 };
    start(f, "/slow", &rq, &res);
    run(f);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.timed_out, 1);
}

static void cancel(void **state)
{
    struct fixture *f = *state;
    struct lcm_httpc_req rq = { .method = "GET", .timeout_ms = 5000 };
    struct result res = { 0 };
    uint64_t id = start(f, "/slow", &rq, &res);
    assert_int_equal(lcm_httpc_cancel(f->c, id), 0);
    assert_int_equal(res.calls, 0);          /* never from inside cancel */
    run(f);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.cancelled, 1);
    assert_int_equal(lcm_httpc_cancel(f->c, id), -2 /* -ENOENT */);
}

static void retry_with_backoff(void **state)
{
    struct fixture *f = *state;
    f->flaky_left = 2;
    struct lcm_httpc_req rq = { .method = "GET", .idempotent = 1, .max_retries = 3, .backoff_base_ms = 50 };
    struct result res = { 0 };
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    start(f, "/flaky", &rq, &res);
    run(f);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.attempts, 3);
    assert_int_equal(f->flaky_hits, 3);
    assert_string_equal(res.body, "recovered");
    /* two delays, jittered in [d/2, d]: at least 25 + 50 ms */
    assert_true(ms >= 75);
}

static void retries_exhausted(void **state)
{
    struct fixture *f = *state;
    f->flaky_left = 10;
    struct lcm_httpc_req rq = { .method = "GET", .idempotent = 1, .max_retries = 2, .backoff_base_ms = 10 };
    struct result res = { 0 };
    start(f, "/flaky", &rq, &res);
    run(f);
    assert_int_equal(res.status, 503);
    assert_int_equal(res.attempts, 3);
}

static void no_retry_when_not_idempotent(void **state)
{
    struct fixture *f = *state;
    struct lcm_httpc_req rq = { .method = "POST", .body = "x=1", .body_len = 3, .max_retries = 5 };
    struct result res = { 0 };
    start(f, "/post", &rq, &res);
    run(f);
    assert_int_equal(res.status, 500);
    assert_int_equal(f->post_hits, 1);
}

static void auth_headers(void **state)
{
    struct fixture *f = *state;
    struct lcm_httpc_req rq = { .method = "GET", .auth = LCM_HTTPC_AUTH_BEARER, .bearer = "abc" };
    struct result res = { 0 };
    start(f, "/auth", &rq, &res);
    run(f);
    assert_string_equal(res.body, "Bearer abc");
    struct lcm_httpc_req rb = { .method = "GET", .auth = LCM_HTTPC_AUTH_BASIC, .username = "u", .password = "p" };
    struct result r2 = { 0 };
    start(f, "/auth", &rb, &r2);
    run(f);
    assert_string_equal(r2.body, "Basic dTpw");
    /* missing credentials are refused up front, done never runs */
    struct lcm_httpc_req bad = { .method = "GET", .url = "http://127.0.0.1:1/", .auth = LCM_HTTPC_AUTH_BASIC };
    struct result r3 = { 0 };
    assert_true(lcm_httpc_request(f->c, &bad, done_cb, &r3, NULL) < 0);
    struct lcm_httpc_req ftp = { .method = "GET", .url = "file:///etc/passwd" };
    assert_true(lcm_httpc_request(f->c, &ftp, done_cb, &r3, NULL) < 0);
    assert_int_equal(r3.calls, 0);
}

static void response_cap(void **state)
{
    struct fixture *f = *state;
    struct lcm_httpc_req rq = { .method = "GET", .max_response_bytes = 1000 };
    struct result res = { 0 };
    start(f, "/big", &rq, &res);
    run(f);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, 0);
}

static void free_in_flight(void **state)
{
    struct fixture *f = *state;
    struct lcm_httpc_req rq = { .method = "GET", .timeout_ms = 5000 };
    struct result res[5];
    memset(res, 0, sizeof(res));
    for (int i = 0; i < 5; i++)
        start(f, "/slow", &rq, &res[i]);
    /* run the loop briefly so some requests are on the wire */
    struct timeval tv = { 0, 100 * 1000 };
    event_base_loopexit(f->base, &tv);
    event_base_dispatch(f->base);
    lcm_httpc_free(f->c);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_int_equal(res[i].cancelled, 1);
    }
    f->c = lcm_httpc_new(f->base, f->m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(ok, setup, teardown),
        cmocka_unit_test_setup_teardown(timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(retry_with_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(retries_exhausted, setup, teardown),
        cmocka_unit_test_setup_teardown(no_retry_when_not_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(auth_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(response_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(free_in_flight, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
