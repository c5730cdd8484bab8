/* A minimal lcmd for the host/net tests while lcmd's main.c does not create host/net yet:
 * the same config table, Redis, store, HTTP server/client and bearer-token auth as lcmd, plus
 * lcm_net. The tests use build/bin/lcmd instead as soon as it links lcm_net_new. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "app.h"
#include "core/auth.h"
#include "core/config.h"
#include "core/httpc.h"
#include "core/httpd.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/redis.h"
#include "net.h"
#include "store/store.h"

extern char **environ;

struct host {
    struct lcm_app app;
    struct lcm_net *net;
    struct event *sig_term, *sig_int;
};

static int auth_hook(struct lcm_req *r, const char *perm, void *ud)
{
    struct host *h = ud;
    const char *a = lcm_req_header(r, "Authorization"), *subject = NULL, *role = NULL;
    if (!a || strncasecmp(a, "Bearer ", 7) || lcm_auth_check(h->app.auth, a + 7, &subject, &role)) {
        lcm_reply_problem(r, 401, "unauthenticated", "Unauthorized", "a valid bearer token is required", NULL);
        return -1;
    }
    lcm_req_set_auth(r, subject, role);
    if (!lcm_auth_role_allows(role, perm)) {
        lcm_reply_problem(r, 403, "forbidden", "Forbidden", "missing permission", NULL);
        return -1;
    }
    return 0;
}

static void h_healthz(struct lcm_req *r, void *ud)
{
    (void)ud;
    lcm_reply(r, 200, "application/json", "{\"status\":\"ok\"}", 15);
}

static void h_readyz(struct lcm_req *r, void *ud)
{
    struct host *h = ud;
    int ok = lcm_redis_connected(h->app.redis) && lcm_store_loaded(h->app.store);
    lcm_reply(r, ok ? 200 : 503, "application/json", ok ? "{\"status\":\"ready\"}" : "{\"status\":\"not-ready\"}",
              ok ? 18 : 22);
}

static void h_metrics(struct lcm_req *r, void *ud)
{
    struct host *h = ud;
    size_t len = 0;
    char *text = lcm_metrics_render(h->app.metrics, &len);
    lcm_reply(r, 200, "text/plain; version=0.0.4", text ? text : "", text ? len : 0);
    free(text);
}

static void store_ready(struct lcm_store *s, int status, void *ud)
{
    (void)s;
    struct host *h = ud;
    h->app.store_ready = status == 0;
}

static void connected(struct lcm_redis *r, void *ud)
{
    (void)r;
    struct host *h = ud;
    if (!h->app.store_ready && lcm_store_start(h->app.store, store_ready, h) < 0)
        lcm_warn("events-host", "msg=\"store start failed\"");
}

static void drained(void *ud)
{
    struct host *h = ud;
    event_base_loopexit(h->app.base, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *ud)
{
    (void)sig;
    (void)what;
    struct host *h = ud;
    if (h->app.stopping) {
        event_base_loopbreak(h->app.base);
        return;
    }
    h->app.stopping = 1;
    lcm_net_shutdown(h->net);
    lcm_httpd_shutdown(h->app.httpd, 2000, drained, h);
}

int main(void)
{
    struct host h;
    memset(&h, 0, sizeof(h));
    struct lcm_app *d = &h.app;
    char err[512];
    int rc = 1;
    signal(SIGPIPE, SIG_IGN);
    d->cfg = lcm_config_load(NULL, environ, err, sizeof(err));
    if (!d->cfg) {
        fprintf(stderr, "events-host: %s\n", err);
        return 2;
    }
    enum lcm_log_level lvl = LCM_LOG_INFO;
    lcm_log_parse_level(lcm_config_str(d->cfg, "log_level"), &lvl);
    lcm_log_set_level(lvl);
    char *generated = NULL;
    d->auth = lcm_auth_new(d->cfg, &generated, err, sizeof(err));
    free(generated);
    d->base = event_base_new();
    d->metrics = lcm_metrics_new();
    struct lcm_redis_opts ro = { .url = lcm_config_str(d->cfg, "redis_url"), .connect_timeout_ms = 2000,
                                 .command_timeout_ms = 5000, .backoff_max_ms = 500 };
    d->redis = d->base && ro.url ? lcm_redis_new(d->base, d->metrics, &ro) : NULL;
    /* lcm:feed is trimmed by host/net (MINID), never by length in the store. */
    struct lcm_store_opts so = { .feed_maxlen = -1 };
    d->store = d->redis ? lcm_store_new(d->base, d->redis, d->metrics, &so, err, sizeof(err)) : NULL;
    struct lcm_httpd_opts ho = { .listen = lcm_config_str(d->cfg, "listen"), .max_body = 1 << 20,
                                 .max_headers = 16384, .timeout_s = (int)lcm_config_int(d->cfg, "http_timeout_s") };
    d->httpd = d->store ? lcm_httpd_new(d->base, d->metrics, &ho, err, sizeof(err)) : NULL;
    d->httpc = d->httpd ? lcm_httpc_new(d->base, d->metrics) : NULL;
    if (!d->auth || !d->httpc) {
        fprintf(stderr, "events-host: setup failed: %s\n", err);
        goto out;
    }
    lcm_redis_on_connect(d->redis, connected, &h);
    lcm_httpd_set_auth(d->httpd, auth_hook, &h);
    lcm_httpd_route(d->httpd, "GET", "/healthz", LCM_ROUTE_OPEN, NULL, h_healthz, &h);
    lcm_httpd_route(d->httpd, "GET", "/readyz", LCM_ROUTE_OPEN, NULL, h_readyz, &h);
    lcm_httpd_route(d->httpd, "GET", "/metrics", LCM_ROUTE_OPEN, NULL, h_metrics, &h);
    if (!(h.net = lcm_net_new(d, err, sizeof(err)))) {
        fprintf(stderr, "events-host: net: %s\n", err);
        goto out;
    }
    h.sig_term = evsignal_new(d->base, SIGTERM, on_signal, &h);
    h.sig_int = evsignal_new(d->base, SIGINT, on_signal, &h);
    event_add(h.sig_term, NULL);
    event_add(h.sig_int, NULL);
    printf("lcmd listening on http://127.0.0.1:%d\n", lcm_httpd_port(d->httpd));
    fflush(stdout);
    event_base_dispatch(d->base);
    rc = 0;
out:
    lcm_net_free(h.net);
    lcm_httpd_free(d->httpd);
    lcm_httpc_free(d->httpc);
    lcm_redis_free(d->redis);
    lcm_store_free(d->store);
    if (h.sig_term)
        event_free(h.sig_term);
    if (h.sig_int)
        event_free(h.sig_int);
    lcm_auth_free(d->auth);
    lcm_metrics_free(d->metrics);
    if (d->base)
        event_base_free(d->base);
    lcm_config_free(d->cfg);
    libevent_global_shutdown();
    return rc;
}
