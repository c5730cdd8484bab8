/* lcmd: the LCM host. Wires the loop-level services (config, logging, metrics, Redis,
 * HTTP server and client) together with the parts that plug into them, runs one libevent
 * loop, and shuts down cleanly on SIGTERM/SIGINT. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "app.h"
#include "api/api.h"
#include "core/auth.h"
#include "ctl/ctl.h"
#include "ctl/controllers.h"
#include "core/config.h"
#include "core/embedded.h"
#include "core/httpc.h"
#include "core/httpd.h"
#include "core/jwt.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/redis.h"
#include "core/static.h"
#include "net/net.h"
#include "plugin/plugin.h"
#include "policy/policy.h"
#include "store/store.h"

extern char **environ;


static void usage(FILE *out)
{
    fprintf(out,
            "usage: lcmd [--config FILE] [--check-config] [--version] [--rebuild] [--config-docs]\n"
            "  --config FILE    read configuration from FILE (key = value); LCM_* env overrides it\n"
            "  --check-config   validate the configuration, print the effective values, exit\n"
            "  --version        print the version and the plugin SPI version, exit\n"
            "  --rebuild        rebuild every aggregate hash and index from the event streams, exit\n"
            "  --config-docs    print the Markdown reference of every configuration key, exit\n");
}

/* ---- operational endpoints ---- */

static void h_healthz(struct lcm_req *r, void *ud)
{
    (void)ud;
    static const char body[] = "{\"status\":\"ok\"}";
    lcm_reply(r, 200, "application/json", body, sizeof(body) - 1);
}

static void h_readyz(struct lcm_req *r, void *ud)
{
    struct lcm_app *d = ud;
    cJSON *o = cJSON_CreateObject();
    cJSON *checks = cJSON_AddObjectToObject(o, "checks");
    int redis_ok = lcm_redis_connected(d->redis);
    cJSON_AddStringToObject(checks, "redis", redis_ok ? "ok" : "unreachable");
    int store_ok = d->store && lcm_store_loaded(d->store);
    cJSON_AddStringToObject(checks, "store", store_ok ? "ok" : "loading");
    int ready = redis_ok && store_ok && !d->stopping;
    if (d->ctl) {
        cJSON_AddStringToObject(o, "role", lcm_ctl_is_leader(d->ctl) ? "leader" : "follower");
        cJSON_AddStringToObject(o, "holder", lcm_ctl_holder(d->ctl));
    }
    cJSON_AddStringToObject(o, "status", ready ? "ready" : "not-ready");
    if (!ready)
        lcm_reply_header(r, "Retry-After", "1");
    lcm_reply_json(r, ready ? 200 : 503, o);
}

static void h_metrics(struct lcm_req *r, void *ud)
{
    struct lcm_app *d = ud;
    lcm_metrics_set(d->metrics, "lcm_uptime_seconds", NULL, (double)(time(NULL) - d->started));
    lcm_metrics_set(d->metrics, "lcm_httpc_inflight", NULL, (double)lcm_httpc_inflight(d->httpc));
    size_t len = 0;
    char *text = lcm_metrics_render(d->metrics, &len);
    if (!text) {
        lcm_reply_problem(r, 500, "internal", NULL, "could not render metrics", NULL);
        return;
    }
    lcm_reply(r, 200, "text/plain; version=0.0.4", text, len);
    free(text);
}

static void h_plugins(struct lcm_req *r, void *ud)
{
    struct lcm_app *d = ud;
    lcm_reply_json(r, 200, lcm_plugins_status_json(d->plugins));
}

static void h_policies(struct lcm_req *r, void *ud)
{
    struct lcm_app *d = ud;
    lcm_reply_json(r, 200, lcm_policy_status_json(d->policy));
}

static void h_policies_reload(struct lcm_req *r, void *ud)
{
    struct lcm_app *d = ud;
    char err[512] = "";
    int refused = lcm_policy_reload_all(d->policy, 1, err, sizeof(err));
    lcm_info("policy", "req=%s msg=\"reload requested\" by=%s refused=%d", lcm_req_id(r),
             lcm_req_subject(r) ? lcm_req_subject(r) : "-", refused);
    if (refused > 0) {
        lcm_reply_problem(r, 422, "policy-refused", "Policy refused",
                          err[0] ? err : "a policy failed to load; the last good one keeps serving", NULL);
        return;
    }
    lcm_reply_json(r, 200, lcm_policy_status_json(d->policy));
}

static cJSON *read_json_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    cJSON *j = buf ? cJSON_ParseWithLength(buf, n) : NULL;
    free(buf);
    if (!cJSON_IsObject(j)) {
        snprintf(err, errlen, "%s: not a JSON object", path);
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

static int auth_hook(struct lcm_req *r, const char *perm, void *ud)
{
    struct lcm_app *d = ud;
    const char *h = lcm_req_header(r, "Authorization");
    const char *subject = NULL, *role = NULL;
    struct lcm_jwt_claims claims;
    int ok = h && strncasecmp(h, "Bearer ", 7) == 0 && lcm_auth_check(d->auth, h + 7, &subject, &role) == 0;
    if (!ok && h && d->jwks && strncasecmp(h, "Bearer ", 7) == 0 && lcm_jwt_looks_like(h + 7)) {
        struct lcm_jwt_policy pol = {
            .issuer = lcm_config_str(d->cfg, "oidc_issuer"),
            .audience = lcm_config_str(d->cfg, "oidc_audience"),
            .role_claim = lcm_config_str(d->cfg, "oidc_role_claim"),
            .now = (int64_t)time(NULL),
            .leeway_s = lcm_config_int(d->cfg, "oidc_leeway_s"),
        };
        char why[128];
        if (lcm_jwt_verify(d->jwks, &pol, h + 7, &claims, why, sizeof(why)) == 0 && lcm_auth_valid_role(claims.role)) {
            ok = 1;
            subject = claims.sub;
            role = claims.role;
        } else {
            lcm_info("auth", "req=%s msg=\"jwt refused\" reason=\"%s\"", lcm_req_id(r), why);
        }
    }
    if (!ok) {
        lcm_reply_header(r, "WWW-Authenticate", "Bearer realm=\"lcm\"");
        lcm_reply_problem(r, 401, "unauthenticated", "Unauthorized",
                          h ? "the bearer token is not valid" : "a bearer token is required", NULL);
        return -1;
    }
    lcm_req_set_auth(r, subject, role);
    if (!lcm_auth_role_allows(role, perm)) {
        char detail[160];
        snprintf(detail, sizeof(detail), "role '%s' does not have the '%s' permission", role, perm);
        lcm_reply_problem(r, 403, "forbidden", "Forbidden", detail, NULL);
        return -1;
    }
    return 0;
}

/* ---- store ---- */

static void store_ready(struct lcm_store *s, int status, void *ud)
{
    struct lcm_app *d = ud;
    (void)s;
    d->store_ready = status == 0 ? 1 : 0;
    if (status == 0 && d->ctl)
        lcm_ctl_start(d->ctl);
    if (status == 0)
        lcm_info("store", "msg=\"read models loaded\" definitions=%zu templates=%zu workers=%zu sessions=%zu labs=%zu",
                 lcm_store_count(d->store, "definition"), lcm_store_count(d->store, "template"),
                 lcm_store_count(d->store, "worker"), lcm_store_count(d->store, "session"),
                 lcm_store_count(d->store, "lab"));
    else
        lcm_warn("store", "msg=\"loading read models failed; retrying on reconnect\" err=\"%s\"",
                 lcm_store_strerror(status));
}

/* Loads the read models once Redis is reachable (and again after a failed load). */
static void redis_connected(struct lcm_redis *r, void *ud)
{
    struct lcm_app *d = ud;
    (void)r;
    if (d->store && d->store_ready != 1 && d->store_ready != 2) {
        d->store_ready = 2;   /* loading */
        if (lcm_store_start(d->store, store_ready, d) < 0)
            d->store_ready = 0;
    }
}

static int rebuild_status = 1;

static void rebuild_done(struct lcm_store *s, int status, const struct lcm_store_rebuild_stats *st, void *ud)
{
    struct lcm_app *d = ud;
    (void)s;
    if (status == 0) {
        printf("rebuilt %zu aggregates from %zu events (%zu skipped, %zu index entries) in %.2f s\n",
               st->aggregates, st->events, st->skipped, st->index_entries, st->seconds);
        rebuild_status = 0;
    } else {
        fprintf(stderr, "lcmd: rebuild failed: %s\n", lcm_store_strerror(status));
    }
    event_base_loopexit(d->base, NULL);
}

static void rebuild_connected(struct lcm_redis *r, void *ud)
{
    struct lcm_app *d = ud;
    (void)r;
    if (d->store_ready)
        return;
    d->store_ready = 1;
    if (lcm_store_rebuild(d->store, rebuild_done, d) < 0) {
        fprintf(stderr, "lcmd: rebuild could not start\n");
        event_base_loopexit(d->base, NULL);
    }
}

/* ---- lifecycle ---- */

static void drained(void *ud)
{
    struct lcm_app *d = ud;
    /* A short grace lets queued Redis writes (the lease release) reach the server. */
    struct timeval tv = { 0, 100 * 1000 };
    event_base_loopexit(d->base, &tv);
}

static void on_signal(evutil_socket_t sig, short what, void *ud)
{
    struct lcm_app *d = ud;
    (void)what;
    if (sig == SIGHUP) {
        char err[512] = "";
        int refused = lcm_policy_reload_all(d->policy, 1, err, sizeof(err));
        lcm_info("lcmd", "msg=\"SIGHUP: policies reloaded\" refused=%d err=\"%s\"", refused, err);
        return;
    }
    if (d->stopping) {
        lcm_warn("lcmd", "msg=\"second signal: exiting now\"");
        event_base_loopbreak(d->base);
        return;
    }
    d->stopping = 1;
    lcm_ctl_shutdown(d->ctl);
    lcm_net_shutdown(d->net);
    lcm_info("lcmd", "msg=\"shutting down\" signal=%d inflight=%zu", (int)sig, lcm_httpd_inflight(d->httpd));
    lcm_httpd_shutdown(d->httpd, 5000, drained, d);
}

static void raise_fd_limit(long long want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t target = (rlim_t)want;
    if (rl.rlim_max != RLIM_INFINITY && target > rl.rlim_max)
        target = rl.rlim_max;
    if (rl.rlim_cur < target) {
        rl.rlim_cur = target;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            lcm_warn("lcmd", "msg=\"cannot raise the file descriptor limit\" want=%lld", want);
    }
}

static void teardown(struct lcm_app *d)
{
    /* The HTTP server drained its requests before we got here, so no API or SSE callback
     * still holds a request. */
    lcm_net_free(d->net);
    lcm_api_free(d->api);
    lcm_httpd_free(d->httpd);
    lcm_ctl_shutdown(d->ctl);
    /* plugins first: their in-flight operations complete (cancelled) while HTTP still exists */
    lcm_plugins_shutdown(d->plugins);
    /* Redis before its users: pending callbacks run (with NULL replies) while the store,
     * the controllers and the API still exist. */
    lcm_redis_free(d->redis);
    d->redis = NULL;
    lcm_controllers_free(d);
    lcm_ctl_free(d->ctl);
    lcm_store_free(d->store);
    lcm_plugins_free(d->plugins);
    lcm_policy_engine_free(d->policy);
    lcm_httpc_free(d->httpc);
    if (d->sig_term)
        event_free(d->sig_term);
    if (d->sig_int)
        event_free(d->sig_int);
    if (d->sig_hup)
        event_free(d->sig_hup);
    lcm_embedded_redis_stop(&d->embedded);
    lcm_auth_free(d->auth);
    lcm_jwks_free(d->jwks);
    lcm_metrics_free(d->metrics);
    if (d->base)
        event_base_free(d->base);
    lcm_config_free(d->cfg);
    libevent_global_shutdown();
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "check-config", no_argument, NULL, 'k' },
        { "version", no_argument, NULL, 'v' },
        { "rebuild", no_argument, NULL, 'r' },
        { "config-docs", no_argument, NULL, 'd' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *config_file = NULL;
    int check = 0, rebuild = 0, opt;
    while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': config_file = optarg; break;
        case 'k': check = 1; break;
        case 'r': rebuild = 1; break;
        case 'v':
            printf("lcmd %s\n", LCM_VERSION);
            return 0;
        case 'd':
            lcm_config_write_docs(stdout);
            return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "lcmd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    struct lcm_app d;
    memset(&d, 0, sizeof(d));
    char err[512];
    d.cfg = lcm_config_load(config_file, environ, err, sizeof(err));
    if (!d.cfg) {
        fprintf(stderr, "lcmd: invalid configuration: %s\n", err);
        return 2;
    }
    enum lcm_log_level lvl = LCM_LOG_INFO;
    lcm_log_parse_level(lcm_config_str(d.cfg, "log_level"), &lvl);
    lcm_log_set_level(lvl);
    char *generated = NULL;
    d.auth = lcm_auth_new(d.cfg, &generated, err, sizeof(err));
    if (!d.auth) {
        fprintf(stderr, "lcmd: invalid configuration: %s\n", err);
        lcm_config_free(d.cfg);
        return 2;
    }
    if (lcm_config_str(d.cfg, "oidc_jwks_file")) {
        if (!lcm_config_str(d.cfg, "oidc_issuer")) {
            fprintf(stderr, "lcmd: invalid configuration: oidc_issuer is required with oidc_jwks_file\n");
            free(generated);
            lcm_auth_free(d.auth);
            lcm_config_free(d.cfg);
            return 2;
        }
        d.jwks = lcm_jwks_load(lcm_config_str(d.cfg, "oidc_jwks_file"), err, sizeof(err));
        if (!d.jwks) {
            fprintf(stderr, "lcmd: invalid configuration: oidc_jwks_file: %s\n", err);
            free(generated);
            lcm_auth_free(d.auth);
            lcm_config_free(d.cfg);
            return 2;
        }
    }
    if (check) {
        struct lcm_redis_addr addr;
        const char *url = lcm_config_str(d.cfg, "redis_url");
        int rc = 0;
        if (url && lcm_redis_parse_url(url, &addr, err, sizeof(err)) < 0) {
            fprintf(stderr, "lcmd: invalid configuration: redis_url: %s\n", err);
            rc = 2;
        } else {
            lcm_config_dump(d.cfg, stdout);
            printf("# configuration ok\n");
        }
        free(generated);
        lcm_auth_free(d.auth);
        lcm_jwks_free(d.jwks);
        lcm_config_free(d.cfg);
        return rc;
    }

    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    raise_fd_limit(lcm_config_int(d.cfg, "http_max_connections") + 256);
    d.started = time(NULL);

    const char *redis_url = lcm_config_str(d.cfg, "redis_url");
    if (!redis_url) {
        if (lcm_embedded_redis_start(lcm_config_str(d.cfg, "redis_server"), lcm_config_str(d.cfg, "data_dir"),
                                     lcm_config_str(d.cfg, "redis_appendfsync"), &d.embedded, err,
                                     sizeof(err)) < 0) {
            fprintf(stderr, "lcmd: embedded redis: %s\n", err);
            free(generated);
            teardown(&d);
            return 1;
        }
        redis_url = d.embedded.url;
    }

    d.base = event_base_new();
    d.metrics = lcm_metrics_new();
    if (!d.base || !d.metrics) {
        fprintf(stderr, "lcmd: out of memory\n");
        free(generated);
        teardown(&d);
        return 1;
    }
    lcm_metrics_declare(d.metrics, "lcm_uptime_seconds", LCM_METRIC_GAUGE, "Seconds since lcmd started");
    lcm_metrics_declare(d.metrics, "lcm_build_info", LCM_METRIC_GAUGE, "Build information");
    lcm_metrics_set(d.metrics, "lcm_build_info", "version=\"" LCM_VERSION "\"", 1);

    struct lcm_redis_opts ro = {
        .url = redis_url,
        .connect_timeout_ms = (long)lcm_config_int(d.cfg, "redis_connect_timeout_ms"),
        .command_timeout_ms = (long)lcm_config_int(d.cfg, "redis_command_timeout_ms"),
        .backoff_max_ms = (long)lcm_config_int(d.cfg, "redis_backoff_max_ms"),
    };
    d.redis = lcm_redis_new(d.base, d.metrics, &ro);
    /* lcm:feed is trimmed by the outbox deliverer (MINID behind its consumer group), never by
     * length, so undelivered CloudEvents are not dropped. */
    struct lcm_store_opts so = { .no_follow = rebuild, .feed_maxlen = -1 };
    d.store = d.redis ? lcm_store_new(d.base, d.redis, d.metrics, &so, err, sizeof(err)) : NULL;
    if (!d.store) {
        fprintf(stderr, "lcmd: store: %s\n", d.redis ? err : "cannot set up Redis");
        free(generated);
        teardown(&d);
        return 1;
    }
    if (rebuild) {
        free(generated);
        lcm_redis_on_connect(d.redis, rebuild_connected, &d);
        struct timeval limit = { 600, 0 };
        event_base_loopexit(d.base, &limit);
        event_base_dispatch(d.base);
        teardown(&d);
        return rebuild_status;
    }
    lcm_redis_on_connect(d.redis, redis_connected, &d);
    d.ctl = lcm_ctl_new(&d, err, sizeof(err));
    if (!d.ctl) {
        fprintf(stderr, "lcmd: controllers: %s\n", err);
        free(generated);
        teardown(&d);
        return 1;
    }
    d.httpc = lcm_httpc_new(d.base, d.metrics);
    if (d.httpc)
        lcm_httpc_set_defaults(d.httpc, (long)lcm_config_int(d.cfg, "httpc_timeout_ms"),
                               (long)lcm_config_int(d.cfg, "httpc_connect_timeout_ms"));
    struct lcm_httpd_opts ho = {
        .listen = lcm_config_str(d.cfg, "listen"),
        .max_body = (size_t)lcm_config_int(d.cfg, "http_max_body_bytes"),
        .max_headers = (size_t)lcm_config_int(d.cfg, "http_max_header_bytes"),
        .timeout_s = (int)lcm_config_int(d.cfg, "http_timeout_s"),
    };
    d.httpd = lcm_httpd_new(d.base, d.metrics, &ho, err, sizeof(err));
    if (!d.redis || !d.httpc || !d.httpd) {
        fprintf(stderr, "lcmd: %s\n", d.httpd ? "cannot set up Redis or the HTTP client" : err);
        free(generated);
        teardown(&d);
        return 1;
    }
    cJSON *plugin_cfg = NULL;
    if (lcm_config_str(d.cfg, "plugin_config_file") &&
        !(plugin_cfg = read_json_file(lcm_config_str(d.cfg, "plugin_config_file"), err, sizeof(err)))) {
        fprintf(stderr, "lcmd: plugin_config_file: %s\n", err);
        free(generated);
        teardown(&d);
        return 2;
    }
    struct lcm_plugin_host_ctx pctx = { .base = d.base, .httpc = d.httpc, .metrics = d.metrics, .config = plugin_cfg };
    d.plugins = lcm_plugins_load(lcm_config_str(d.cfg, "plugin_dir"), &pctx, err, sizeof(err));
    cJSON_Delete(plugin_cfg);
    if (!d.plugins) {
        fprintf(stderr, "lcmd: plugins: %s\n", err);
        free(generated);
        teardown(&d);
        return 1;
    }
    struct lcm_policy_config pcfg = {
        .dir = lcm_config_str(d.cfg, "policy_dir"),
        .mem_limit = (size_t)lcm_config_int(d.cfg, "policy_mem_limit_mb") << 20,
        .instr_budget = (uint64_t)lcm_config_int(d.cfg, "policy_instr_budget"),
        .deadline_ms = (unsigned)lcm_config_int(d.cfg, "policy_deadline_ms"),
        .watch_interval_ms = (unsigned)lcm_config_int(d.cfg, "policy_watch_interval_ms"),
        .base = d.base,
        .metrics = d.metrics,
    };
    d.policy = lcm_policy_engine_new(&pcfg, err, sizeof(err));
    if (!d.policy) {
        fprintf(stderr, "lcmd: policies: %s\n", err);
        free(generated);
        teardown(&d);
        return 1;
    }
    if (lcm_controllers_init(&d, err, sizeof(err)) < 0) {
        fprintf(stderr, "lcmd: controllers: %s\n", err);
        free(generated);
        teardown(&d);
        return 1;
    }
    lcm_httpd_set_auth(d.httpd, auth_hook, &d);
    lcm_httpd_set_fallback(d.httpd, lcm_static_serve, (void *)lcm_config_str(d.cfg, "ui_dir"));
    lcm_httpd_route(d.httpd, "GET", "/api/v1/plugins", 0, LCM_PERM_READ, h_plugins, &d);
    lcm_httpd_route(d.httpd, "GET", "/api/v1/policies", 0, LCM_PERM_READ, h_policies, &d);
    lcm_httpd_route(d.httpd, "POST", "/api/v1/policies/reload", 0, LCM_PERM_OPERATE, h_policies_reload, &d);
    d.api = lcm_api_new(&d, err, sizeof(err));
    d.net = d.api ? lcm_net_new(&d, err, sizeof(err)) : NULL;
    if (!d.api || !d.net) {
        fprintf(stderr, "lcmd: %s: %s\n", d.api ? "events" : "api", err);
        free(generated);
        teardown(&d);
        return 1;
    }
    lcm_httpd_route(d.httpd, "GET", "/healthz", LCM_ROUTE_OPEN, NULL, h_healthz, &d);
    lcm_httpd_route(d.httpd, "GET", "/readyz", LCM_ROUTE_OPEN, NULL, h_readyz, &d);
    lcm_httpd_route(d.httpd, "GET", "/metrics", lcm_config_bool(d.cfg, "metrics_open") ? LCM_ROUTE_OPEN : 0,
                    LCM_PERM_READ, h_metrics, &d);

    d.sig_term = evsignal_new(d.base, SIGTERM, on_signal, &d);
    d.sig_int = evsignal_new(d.base, SIGINT, on_signal, &d);
    d.sig_hup = evsignal_new(d.base, SIGHUP, on_signal, &d);
    event_add(d.sig_term, NULL);
    event_add(d.sig_int, NULL);
    event_add(d.sig_hup, NULL);

    char listen_host[256];
    snprintf(listen_host, sizeof(listen_host), "%s", lcm_config_str(d.cfg, "listen"));
    char *colon = strrchr(listen_host, ':');
    if (colon)
        *colon = 0;
    lcm_info("lcmd", "msg=\"listening\" url=http://%s:%d redis=%s version=%s", listen_host,
             lcm_httpd_port(d.httpd), redis_url, LCM_VERSION);
    /* The one line scripts wait for (port may have been chosen by the OS). */
    printf("lcmd listening on http://%s:%d\n", listen_host, lcm_httpd_port(d.httpd));
    if (generated) {
        printf("admin token (shown once, only its hash is kept): %s\n", generated);
        memset(generated, 0, strlen(generated));
        free(generated);
    }
    fflush(stdout);

    event_base_dispatch(d.base);
    lcm_info("lcmd", "msg=\"stopped\"");
    teardown(&d);
    return 0;
}
