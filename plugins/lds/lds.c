/* The lds plugin: delivery provider for the LDS Reservations API v3 (HTTP Basic), one
 * deployment per region. Each SPI op is one HTTP call through the host's client; answers are
 * parsed by lds_parse.c and errors mapped to LCM_E_* (see docs/lds.md). */
#include <lcm/spi.h>

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "lds_parse.h"
#include "plugkit.h"

static const struct lcm_plugin_config_key lds_config[] = {
    { "url", LCM_PCFG_STRING, NULL,
      "LDS base URL of the default deployment, e.g. https://lds.example.com (the environment "
      "variable LCM_LDS_URL wins)", 0 },
    { "frontend_url", LCM_PCFG_STRING, NULL,
      "frontend base URL put in launch links (LCM_LDS_FRONTEND_URL wins); unset = the URL "
      "LDS answers", 0 },
    { "username", LCM_PCFG_STRING, NULL, "HTTP Basic user (LCM_LDS_USERNAME wins)", 0 },
    { "lds_password", LCM_PCFG_SECRET, NULL, "HTTP Basic password (LCM_LDS_PASSWORD wins)", 0 },
    { "deployments", LCM_PCFG_STRING, NULL,
      "per-region deployments as JSON: {\"<region>\": {\"url\": …, \"frontend_url\": …, "
      "\"credentials\": \"<SET>\"}}; credentials name secrets <SET>_USERNAME/<SET>_PASSWORD "
      "(LCM_LDS_DEPLOYMENTS wins)", 0 },
    { "origin", LCM_PCFG_STRING, "lcm", "origin of created LDS sessions", 0 },
    { "auth_id_type", LCM_PCFG_STRING, "ordered_session", "auth_id_type of created sessions", 0 },
    { "rack_group", LCM_PCFG_STRING, "lcm", "rack_group of created sessions", 0 },
    { "rack_number", LCM_PCFG_STRING, "1", "rack_number of created sessions", 0 },
    { "location", LCM_PCFG_STRING, "lcm", "location of created sessions when the call has no "
      "region", 0 },
    { "timeout_ms", LCM_PCFG_INT, "15000", "per-attempt timeout of an LDS call", 0 },
    { "connect_timeout_ms", LCM_PCFG_INT, "5000", "TCP/TLS connect timeout", 0 },
    { "max_retries", LCM_PCFG_INT, "2",
      "extra attempts on transport errors, 429 and 5xx for idempotent calls (not create)", 0 },
    { "verify_tls", LCM_PCFG_BOOL, "true", "verify LDS TLS certificates", 0 },
    { "ca_file", LCM_PCFG_STRING, NULL, "CA bundle to verify LDS certificates with", 0 },
};

struct lds_deployment {
    char *region, *url, *frontend_url, *credentials;
};

struct lds_op;

struct lds_plugin {
    const struct lcm_host_services *hs;
    struct lcm_host *h;
    char *url, *frontend_url, *ca_file;        /* owned; NULL = unset */
    struct lds_deployment *deps;
    size_t ndeps;
    struct lds_create_defaults defaults;       /* strings owned by the host config */
    long timeout_ms, connect_timeout_ms;
    int max_retries, verify_tls, stopped;
    struct lds_op *ops;                        /* in flight */
};

struct lds_op;
typedef void (*lds_step_fn)(struct lds_op *op, const struct lcm_http_resp *r);

/* One operation in flight: one HTTP request, answered exactly once. */
struct lds_op {
    struct lds_plugin *p;
    struct lds_op *prev, *next;
    const char *name;                          /* SPI op name, static */
    uint64_t op_id, http_id;
    char corr[64];
    lcm_done_fn done;
    void *ud;
    char method[8];
    char path[1024];                           /* for messages: after the base URL */
    char base[512];
    char frontend[512];
    lds_step_fn step;
    int in_http;
    struct {                                   /* session_find: what it looks for */
        char auth_id[LDS_MAX_AUTH_ID + 1];
        char fqn[LDS_MAX_FQN + 1];
        int64_t created_after_ms;
    } find;
};

/* ---- small helpers ---- */

static void deps_free(struct lds_plugin *p)
{
    for (size_t i = 0; i < p->ndeps; i++) {
        free(p->deps[i].region);
        free(p->deps[i].url);
        free(p->deps[i].frontend_url);
        free(p->deps[i].credentials);
    }
    free(p->deps);
    p->deps = NULL;
    p->ndeps = 0;
}

/* Parses the deployments JSON; 0 or -1 with why filled. */
static int deps_parse(struct lds_plugin *p, const char *json, char *why, size_t whylen)
{
    cJSON *j = cJSON_Parse(json);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        snprintf(why, whylen, "deployments is not a JSON object");
        return -1;
    }
    size_t n = (size_t)cJSON_GetArraySize(j);
    p->deps = calloc(n ? n : 1, sizeof *p->deps);
    if (!p->deps) {
        cJSON_Delete(j);
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    const cJSON *d;
    cJSON_ArrayForEach(d, j)
    {
        struct lds_deployment *x = &p->deps[p->ndeps++];
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(d, "url");
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(d, "frontend_url");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(d, "credentials");
        x->region = strdup(d->string ? d->string : "");
        if (!cJSON_IsObject(d) || !cJSON_IsString(u) || !lcm_pk_url_ok(u->valuestring) ||
            (f && !(cJSON_IsString(f) && lcm_pk_url_ok(f->valuestring))) ||
            (c && !(cJSON_IsString(c) && lcm_pk_cred_ok(c->valuestring)))) {
            snprintf(why, whylen, "deployment \"%.40s\": want {\"url\": \"http(s)://…\", "
                     "\"frontend_url\"?: \"http(s)://…\", \"credentials\"?: \"NAME\"}",
                     d->string ? d->string : "");
            cJSON_Delete(j);
            return -1;
        }
        x->url = strdup(u->valuestring);
        x->frontend_url = f ? strdup(f->valuestring) : NULL;
        x->credentials = c ? strdup(c->valuestring) : NULL;
        if (!x->region || !x->url || (f && !x->frontend_url) || (c && !x->credentials)) {
            snprintf(why, whylen, "out of memory");
            cJSON_Delete(j);
            return -1;
        }
        lcm_pk_strip_slash(x->url);
        lcm_pk_strip_slash(x->frontend_url);
    }
    cJSON_Delete(j);
    return 0;
}

/* ---- create / destroy ---- */

static void plugin_free(struct lds_plugin *p)
{
    deps_free(p);
    free(p->url);
    free(p->frontend_url);
    free(p->ca_file);
    free(p);
}

static int lds_create(const struct lcm_host_services *hs, struct lcm_host *h, void **self,
                      struct lcm_error *err)
{
    if (!hs || hs->size < LCM_SPI_SIZE_UPTO(struct lcm_host_services, config_bool)) {
        lcm_error_set(err, LCM_E_INVAL, 0, 0, "lds: host services table too old");
        return LCM_E_INVAL;
    }
    struct lds_plugin *p = calloc(1, sizeof *p);
    if (!p) {
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return LCM_E_NOMEM;
    }
    char why[200], m[256];
    p->hs = hs;
    p->h = h;
    const char *url = lcm_pk_env_or_cfg(hs, h, "LCM_LDS_URL", "url");
    const char *fe = lcm_pk_env_or_cfg(hs, h, "LCM_LDS_FRONTEND_URL", "frontend_url");
    const char *ca = hs->config_str(h, "ca_file");
    const char *deps = lcm_pk_env_or_cfg(hs, h, "LCM_LDS_DEPLOYMENTS", "deployments");
    if ((url && !lcm_pk_url_ok(url)) || (fe && !lcm_pk_url_ok(fe))) {
        lcm_error_set(err, LCM_E_CONFIG, 0, 0, "lds: url and frontend_url must be http(s) "
                      "URLs");
        plugin_free(p);
        return LCM_E_CONFIG;
    }
    p->url = lcm_pk_dup_or_null(url);
    p->frontend_url = lcm_pk_dup_or_null(fe);
    p->ca_file = lcm_pk_dup_or_null(ca);
    if ((url && !p->url) || (fe && !p->frontend_url) || (ca && *ca && !p->ca_file)) {
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        plugin_free(p);
        return LCM_E_NOMEM;
    }
    lcm_pk_strip_slash(p->url);
    lcm_pk_strip_slash(p->frontend_url);
    if (deps && deps_parse(p, deps, why, sizeof why) != 0) {
        snprintf(m, sizeof m, "lds: %s", why);
        lcm_error_set(err, LCM_E_CONFIG, 0, 0, m);
        plugin_free(p);
        return LCM_E_CONFIG;
    }
    const char *v;
    p->defaults.origin = (v = hs->config_str(h, "origin")) && *v ? v : "lcm";
    p->defaults.auth_id_type = (v = hs->config_str(h, "auth_id_type")) && *v ? v
                                                                              : "ordered_session";
    p->defaults.rack_group = (v = hs->config_str(h, "rack_group")) && *v ? v : "lcm";
    p->defaults.rack_number = (v = hs->config_str(h, "rack_number")) && *v ? v : "1";
    p->defaults.location = (v = hs->config_str(h, "location")) && *v ? v : "lcm";
    p->timeout_ms = lcm_pk_cfg_long(hs, h, "timeout_ms", 15000, 50, 3600000);
    p->connect_timeout_ms = lcm_pk_cfg_long(hs, h, "connect_timeout_ms", 5000, 50, 600000);
    p->max_retries = (int)lcm_pk_cfg_long(hs, h, "max_retries", 2, 0, 10);
    p->verify_tls = lcm_pk_cfg_bool(hs, h, "verify_tls", 1);
    hs->log(h, LCM_SPI_INFO, "msg=\"lds plugin ready\" url=\"%s\" frontend_url=\"%s\" "
            "deployments=%zu", p->url ? p->url : "", p->frontend_url ? p->frontend_url : "",
            p->ndeps);
    *self = p;
    return 0;
}

/* ---- op lifecycle ---- */

static void op_unlink(struct lds_op *op)
{
    struct lds_plugin *p = op->p;
    if (op->prev)
        op->prev->next = op->next;
    else if (p->ops == op)
        p->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->prev = op->next = NULL;
}

/* Completes op exactly once and frees it. */
static void find_step(struct lds_op *op, const struct lcm_http_resp *r);

static void op_finish(struct lds_op *op, const struct lcm_error *err, const void *result)
{
    struct lds_plugin *p = op->p;
    op_unlink(op);
    /* "Not found" is session_find's ordinary answer (the host asks while it waits for a
     * create that may still be running), not a failure to count or log. */
    if (err && !(err->code == LCM_E_NOTFOUND && op->step == find_step))
        lcm_pk_log_op_error(p->hs, p->h, "lds", op->name, op->op_id, op->corr, op->base,
                            err);
    op->done(op->ud, err, err ? NULL : result);
    free(op);
}

static void op_fail(struct lds_op *op, int code, int retryable, int status, const char *fmt,
                    ...) __attribute__((format(printf, 5, 6)));
static void op_fail(struct lds_op *op, int code, int retryable, int status, const char *fmt,
                    ...)
{
    struct lcm_error e;
    char m[sizeof e.message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    lcm_error_set(&e, code, retryable, status, m);
    op_finish(op, &e, NULL);
}

/* The SPI error for a non-2xx or transport answer (see docs/lds.md, "Errors"). */
static void http_error(const struct lds_op *op, const struct lcm_http_resp *r,
                       struct lcm_error *e)
{
    char m[sizeof e->message], desc[160], what[120];
    int retry, st = r->status;
    snprintf(what, sizeof what, "%s %.100s", op->method, op->path);
    if (lcm_pk_http_transport_error(e, r, "lds", op->name, what, 80))
        return;
    lds_parse_error_text(r->body, r->body_len, desc, sizeof desc);
    int code = lcm_pk_http_code(st, 423, &retry);
    snprintf(m, sizeof m, "lds %s: %s %.100s: HTTP %d%s%.100s", op->name, op->method, op->path, st,
             desc[0] ? ": " : "", desc);
    lcm_error_set(e, code, retry, st, m);
}

static void op_fail_http(struct lds_op *op, const struct lcm_http_resp *r)
{
    struct lcm_error e;
    http_error(op, r, &e);
    op_finish(op, &e, NULL);
}

static void op_http_done(void *ud, const struct lcm_http_resp *r)
{
    struct lds_op *op = ud;
    struct lds_plugin *p = op->p;
    op->in_http = 0;
    char labels[96];
    snprintf(labels, sizeof labels, "op=\"%s\"", op->name);
    p->hs->metric_observe(p->h, "lds_call_seconds", labels, r->elapsed_s);
    if (r->cancelled || r->status < 200 || r->status >= 300) {
        op_fail_http(op, r);
        return;
    }
    op->step(op, r);
}

static int bad_args(struct lcm_error *err, const char *op, const char *what)
{
    char m[200];
    snprintf(m, sizeof m, "lds %s: %s", op, what);
    lcm_error_set(err, LCM_E_INVAL, 0, 0, m);
    return LCM_E_INVAL;
}

/* The deployment for a call's region, or NULL. */
static const struct lds_deployment *dep_for(const struct lds_plugin *p, const char *region)
{
    for (size_t i = 0; region && *region && i < p->ndeps; i++)
        if (strcmp(p->deps[i].region, region) == 0)
            return &p->deps[i];
    return NULL;
}

/* Starts op's one request: resolves the deployment and credentials of call, sends method
 * path (after the base URL) with body, and links op. Returns 0 (step or a failure runs later)
 * or LCM_E_* with err filled (op freed, done never runs). */
static int op_start(struct lds_plugin *p, struct lds_op *op, const struct lcm_call *call,
                    const char *method, const char *path, const char *body, size_t body_len,
                    int idempotent, lds_step_fn step, struct lcm_error *err)
{
    char m[256], user[256], pass[512], name[96], url[1600];
    const char *oname = op->name;
    int rc;
    op->p = p;
    if (p->stopped) {
        lcm_error_set(err, LCM_E_SHUTDOWN, 0, 0, "lds: plugin is stopping");
        free(op);
        return LCM_E_SHUTDOWN;
    }
    int full = call && call->size >= LCM_SPI_SIZE_UPTO(struct lcm_call, insecure_tls);
    const char *region = full ? call->region : NULL;
    const struct lds_deployment *dep = dep_for(p, region);
    const char *base = dep ? dep->url : p->url;
    const char *fe = dep && dep->frontend_url ? dep->frontend_url : p->frontend_url;
    if (full && call->endpoint && strstr(call->endpoint, "://")) {
        if (!lcm_pk_url_ok(call->endpoint)) {
            free(op);
            return bad_args(err, oname, "call endpoint is not an http(s) URL");
        }
        base = call->endpoint;
    }
    if (!base) {
        snprintf(m, sizeof m, "lds %s: no LDS deployment for region \"%s\" (set LCM_LDS_URL, "
                 "url or deployments)", op->name, region ? region : "");
        lcm_error_set(err, LCM_E_CONFIG, 0, 0, m);
        free(op);
        return LCM_E_CONFIG;
    }
    const char *cred = full && call->credentials && *call->credentials ? call->credentials
                       : dep && dep->credentials                       ? dep->credentials
                                                                       : "LDS";
    if (!lcm_pk_cred_ok(cred)) {
        free(op);
        return bad_args(err, oname, "invalid credential set name");
    }
    snprintf(op->base, sizeof op->base, "%s", base);
    lcm_pk_strip_slash(op->base);
    snprintf(op->frontend, sizeof op->frontend, "%s", fe ? fe : "");
    snprintf(op->method, sizeof op->method, "%s", method);
    snprintf(op->path, sizeof op->path, "%s", path);
    int n = snprintf(url, sizeof url, "%s%s", op->base, path);
    if (n < 0 || (size_t)n >= sizeof url) {
        free(op);
        return bad_args(err, oname, "URL too long");
    }

    /* Credentials: <SET>_USERNAME / <SET>_PASSWORD through secret() (env LCM_<SET>_…), the
     * default set also from the username / lds_password config keys. */
    snprintf(name, sizeof name, "%s_USERNAME", cred);
    if (p->hs->secret(p->h, name, user, sizeof user) <= 0) {
        const char *u = strcmp(cred, "LDS") == 0 ? p->hs->config_str(p->h, "username") : NULL;
        if (!u || !*u || strlen(u) + 1 > sizeof user)
            user[0] = '\0';
        else
            memcpy(user, u, strlen(u) + 1);
    }
    snprintf(name, sizeof name, "%s_PASSWORD", cred);
    rc = p->hs->secret(p->h, name, pass, sizeof pass);
    if (!user[0] || rc < 0) {
        memset(user, 0, sizeof user);
        memset(pass, 0, sizeof pass);
        snprintf(m, sizeof m, "lds %s: credentials of set %s are not configured "
                 "(LCM_%s_USERNAME / LCM_%s_PASSWORD)", op->name, cred, cred, cred);
        lcm_error_set(err, LCM_E_CONFIG, 0, 0, m);
        free(op);
        return LCM_E_CONFIG;
    }

    long timeout = p->timeout_ms;
    int retries = idempotent ? p->max_retries : 0;
    if (full && call->deadline_ms > 0) {
        uint64_t now = p->hs->monotonic_ms(p->h);
        if (now >= (uint64_t)call->deadline_ms) {
            memset(pass, 0, sizeof pass);
            snprintf(m, sizeof m, "lds %s: deadline passed before %s %.100s", op->name, method,
                     path);
            lcm_error_set(err, LCM_E_TIMEOUT, 1, 0, m);
            free(op);
            return LCM_E_TIMEOUT;
        }
        lcm_pk_share_deadline((long)((uint64_t)call->deadline_ms - now), &timeout, &retries);
    }
    if (full) {
        op->op_id = call->op_id;
        snprintf(op->corr, sizeof op->corr, "%s", call->correlation_id ? call->correlation_id
                                                                       : "");
    }
    const char *hdrs[2] = { "Accept: application/json", "Content-Type: application/json" };
    struct lcm_http_req req = {
        .size = sizeof req, .method = method, .url = url, .headers = hdrs,
        .nheaders = body ? 2 : 1, .body = body, .body_len = body ? body_len : 0,
        .timeout_ms = timeout, .connect_timeout_ms = p->connect_timeout_ms,
        .max_retries = retries, .idempotent = idempotent,
        .insecure = !p->verify_tls || (full && call->insecure_tls), .ca_file = p->ca_file,
        .auth = LCM_HTTP_AUTH_BASIC, .username = user, .password = pass,
        .metric_label = op->name, .max_response_bytes = 4u << 20,
    };
    op->p = p;
    op->step = step;
    rc = p->hs->http_request(p->h, &req, op_http_done, op, &op->http_id);
    memset(user, 0, sizeof user);
    memset(pass, 0, sizeof pass);
    if (rc != 0) {
        snprintf(m, sizeof m, "lds %s: cannot send %s %.100s", op->name, method, path);
        lcm_error_set(err, rc, rc != LCM_E_SHUTDOWN && rc != LCM_E_INVAL, 0, m);
        free(op);
        return rc;
    }
    op->in_http = 1;
    op->next = p->ops;
    if (p->ops)
        p->ops->prev = op;
    p->ops = op;
    return 0;
}

static struct lds_op *op_new(const char *name, lcm_done_fn done, void *ud, struct lcm_error *err)
{
    if (!done) {
        lcm_error_set(err, LCM_E_INVAL, 0, 0, "lds: no done callback");
        return NULL;
    }
    struct lds_op *op = calloc(1, sizeof *op);
    if (!op) {
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return NULL;
    }
    op->name = name;
    op->done = done;
    op->ud = ud;
    return op;
}

static void proto_fail(struct lds_op *op, int status, const char *why)
{
    op_fail(op, LCM_E_PROTO, 0, status, "lds %s: %s %.100s: %.100s", op->name, op->method, op->path,
            why);
}

/* ---- session_create ---- */

static void create_step(struct lds_op *op, const struct lcm_http_resp *r)
{
    char id[LDS_MAX_ID + 1], why[128];
    if (lds_parse_created(r->body, r->body_len, id, sizeof id, why, sizeof why) != 0) {
        proto_fail(op, r->status, why);
        return;
    }
    /* LDS answers only the id: a new session is in state "created" with its one part. */
    struct lcm_lds_session s = { .id = id, .state = "created", .part_state = "created" };
    op->p->hs->log(op->p->h, LCM_SPI_INFO, "msg=\"lds session created\" lds_session_id=%s "
                   "corr=%s endpoint=%s", id, op->corr[0] ? op->corr : "-", op->base);
    op_finish(op, NULL, &s);
}

static int nonempty(const char *s) { return s && *s; }

static int lds_session_create(void *self, const struct lcm_call *call, const void *args,
                              lcm_done_fn done, void *ud, struct lcm_error *err)
{
    struct lds_plugin *p = self;
    const struct lcm_lds_create_args *a = args;
    if (!a || !nonempty(a->form_qualified_name) || !nonempty(a->external_id) ||
        !nonempty(a->candidate_id))
        return bad_args(err, "session_create",
                        "form_qualified_name, external_id and candidate_id are required");
    struct lds_op *op = op_new("session_create", done, ud, err);
    if (!op)
        return err->code;
    struct lds_create_defaults d = p->defaults;
    if (call && call->size >= LCM_SPI_SIZE_UPTO(struct lcm_call, region) && call->region &&
        *call->region)
        d.location = call->region;
    char *body = lds_build_create_body(a, &d, p->hs->wall_ms(p->h));
    if (!body) {
        free(op);
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return LCM_E_NOMEM;
    }
    /* Not idempotent: LDS has no client token, a retried POST could create a second session. */
    int rc = op_start(p, op, call, "POST", "/reservations/v3/lab_session", body, strlen(body),
                      0, create_step, err);
    free(body);
    return rc;
}

/* ---- set_devices ---- */

static void devices_step(struct lds_op *op, const struct lcm_http_resp *r)
{
    size_t n;
    char why[128];
    if (r->body_len > 0 && lds_parse_devices(r->body, r->body_len, &n, why, sizeof why) != 0) {
        proto_fail(op, r->status, why);
        return;
    }
    op_finish(op, NULL, NULL);
}

static int lds_set_devices(void *self, const struct lcm_call *call, const void *args,
                           lcm_done_fn done, void *ud, struct lcm_error *err)
{
    const struct lcm_lds_devices_args *a = args;
    if (!a || !lds_id_ok(a->lds_session_id))
        return bad_args(err, "set_devices", "missing or invalid lds_session_id");
    if (a->part < 0 || a->part > 1000 || (a->n && !a->v) || a->n > 4096)
        return bad_args(err, "set_devices", "invalid part or device list");
    for (size_t i = 0; i < a->n; i++)
        if (!nonempty(a->v[i].device_label) || !nonempty(a->v[i].protocol) ||
            !nonempty(a->v[i].host) || a->v[i].port < 0 || a->v[i].port > 65535)
            return bad_args(err, "set_devices",
                            "every device needs device_label, protocol, host and a port "
                            "in 0..65535");
    struct lds_op *op = op_new("set_devices", done, ud, err);
    if (!op)
        return err->code;
    char path[256];
    snprintf(path, sizeof path, "/reservations/v3/lab_session/%s/part/%d/devices",
             a->lds_session_id, a->part > 0 ? a->part : 1);
    char *body = lds_build_devices_body(a->v, a->n);
    if (!body) {
        free(op);
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return LCM_E_NOMEM;
    }
    size_t len = strlen(body);
    int rc = op_start(self, op, call, "PUT", path, body, len, 1, devices_step, err);
    memset(body, 0, len);                     /* device passwords */
    free(body);
    return rc;
}

/* ---- session_get ---- */

static void get_step(struct lds_op *op, const struct lcm_http_resp *r)
{
    struct lds_session_info si;
    char why[128];
    if (lds_parse_session(r->body, r->body_len, &si, why, sizeof why) != 0) {
        proto_fail(op, r->status, why);
        return;
    }
    struct lcm_lds_session s = { .id = si.id, .state = si.state[0] ? si.state : "unknown",
                                 .part_state = si.has_part_state ? si.part_state : NULL,
                                 .is_finalized = si.is_finalized };
    op_finish(op, NULL, &s);
}

static int session_op(void *self, const struct lcm_call *call, const void *args,
                      const char *name, const char *method, const char *suffix,
                      const char *body, lds_step_fn step, lcm_done_fn done, void *ud,
                      struct lcm_error *err)
{
    const struct lcm_lds_session_args *a = args;
    if (!a || !lds_id_ok(a->lds_session_id))
        return bad_args(err, name, "missing or invalid lds_session_id");
    struct lds_op *op = op_new(name, done, ud, err);
    if (!op)
        return err->code;
    char path[256];
    snprintf(path, sizeof path, "/reservations/v3/lab_session/%s%s", a->lds_session_id,
             suffix);
    return op_start(self, op, call, method, path, body, body ? strlen(body) : 0, 1, step,
                    err);
}

static int lds_session_get(void *self, const struct lcm_call *call, const void *args,
                           lcm_done_fn done, void *ud, struct lcm_error *err)
{
    return session_op(self, call, args, "session_get", "GET", "", NULL, get_step, done, ud,
                      err);
}

/* ---- launch_url ---- */

static void launch_step(struct lds_op *op, const struct lcm_http_resp *r)
{
    char raw[LDS_MAX_URL + 1], url[LDS_MAX_URL + 1], why[128];
    if (lds_parse_launch_url(r->body, r->body_len, raw, sizeof raw, why, sizeof why) != 0 ||
        lds_launch_rewrite(raw, op->frontend, url, sizeof url, why, sizeof why) != 0) {
        proto_fail(op, r->status, why);
        return;
    }
    struct lcm_lds_url u = { .url = url };
    op_finish(op, NULL, &u);
}

static int lds_launch_url(void *self, const struct lcm_call *call, const void *args,
                          lcm_done_fn done, void *ud, struct lcm_error *err)
{
    return session_op(self, call, args, "launch_url", "GET", "/lablet_launch_url", NULL,
                      launch_step, done, ud, err);
}

/* ---- release ---- */

static void noresult_step(struct lds_op *op, const struct lcm_http_resp *r)
{
    op_finish(op, NULL, NULL);
}

static int lds_release(void *self, const struct lcm_call *call, const void *args,
                       lcm_done_fn done, void *ud, struct lcm_error *err)
{
    /* LDS answers 204 again for a released session, so a retry is harmless. */
    return session_op(self, call, args, "release", "POST", "/release", "{}", noresult_step,
                      done, ud, err);
}

/* ---- refresh_content ---- */

static void refresh_step(struct lds_op *op, const struct lcm_http_resp *r)
{
    /* The LabFolder answer is informational; it must at least be a JSON object. */
    cJSON *j = r->body_len ? cJSON_ParseWithLength(r->body, r->body_len) : NULL;
    int ok = r->body_len == 0 || cJSON_IsObject(j);
    cJSON_Delete(j);
    if (!ok) {
        proto_fail(op, r->status, "lab folder answer is not a JSON object");
        return;
    }
    op_finish(op, NULL, NULL);
}

static int lds_refresh_content(void *self, const struct lcm_call *call, const void *args,
                               lcm_done_fn done, void *ud, struct lcm_error *err)
{
    const struct lcm_lds_content_args *a = args;
    if (!a || !nonempty(a->form_qualified_name) || strlen(a->form_qualified_name) > 256)
        return bad_args(err, "refresh_content", "missing or too long form_qualified_name");
    char enc[800], path[900];
    if (lcm_pk_percent_encode(a->form_qualified_name, enc, sizeof enc) < 0)
        return bad_args(err, "refresh_content", "form_qualified_name too long");
    struct lds_op *op = op_new("refresh_content", done, ud, err);
    if (!op)
        return err->code;
    snprintf(path, sizeof path, "/reservations/v3/lab_folder/minio/%s", enc);
    return op_start(self, op, call, "PUT", path, NULL, 0, 1, refresh_step, err);
}

/* ---- session_find ---- */

static void find_step(struct lds_op *op, const struct lcm_http_resp *r)
{
    struct lds_find_query q = { .auth_id = op->find.auth_id, .fqn = op->find.fqn,
                                .created_after_ms = op->find.created_after_ms };
    struct lds_session_info si;
    char why[128];
    int found;
    if (lds_parse_report_find(r->body, r->body_len, &q, &si, &found, why, sizeof why) != 0) {
        proto_fail(op, r->status, why);
        return;
    }
    if (!found) {
        /* The path is no use here (long, and cut before from=): say what was looked for. */
        op_fail(op, LCM_E_NOTFOUND, 0, r->status, "lds session_find: no LDS session of this "
                "external id and form, not finalized, created at or after %lld ms",
                (long long)op->find.created_after_ms);
        return;
    }
    struct lcm_lds_session s = { .id = si.id, .state = si.state[0] ? si.state : "unknown",
                                 .part_state = si.has_part_state ? si.part_state : NULL,
                                 .is_finalized = 0 };
    op->p->hs->log(op->p->h, LCM_SPI_INFO, "msg=\"lds session found\" lds_session_id=%s "
                   "corr=%s endpoint=%s", si.id, op->corr[0] ? op->corr : "-", op->base);
    op_finish(op, NULL, &s);
}

static int lds_session_find(void *self, const struct lcm_call *call, const void *args,
                            lcm_done_fn done, void *ud, struct lcm_error *err)
{
    const struct lcm_lds_find_args *a = args;
    if (!a || !nonempty(a->form_qualified_name) || !nonempty(a->external_id) ||
        strlen(a->form_qualified_name) > LDS_MAX_FQN || strlen(a->external_id) > LDS_MAX_AUTH_ID)
        return bad_args(err, "session_find",
                        "form_qualified_name and external_id are required (at most 256 bytes)");
    if (a->created_after_ms < 0 || a->created_after_ms > LDS_MAX_TIME_MS)
        return bad_args(err, "session_find", "created_after_ms out of range");
    char enc[3 * LDS_MAX_FQN + 1], from[40] = "", path[1024];
    if (lcm_pk_percent_encode(a->form_qualified_name, enc, sizeof enc) < 0)
        return bad_args(err, "session_find", "form_qualified_name too long");
    /* LDS filters by fqn and from (at second precision, rounded down); the step checks
     * everything again, as a server may read from loosely. */
    if (a->created_after_ms > 0)
        lds_rfc3339(a->created_after_ms, from, sizeof from);
    snprintf(path, sizeof path, "/reservations/v3/reporting/lab_session?fqn=%s%s%s", enc,
             from[0] ? "&from=" : "", from);
    struct lds_op *op = op_new("session_find", done, ud, err);
    if (!op)
        return err->code;
    snprintf(op->find.auth_id, sizeof op->find.auth_id, "%s", a->external_id);
    snprintf(op->find.fqn, sizeof op->find.fqn, "%s", a->form_qualified_name);
    op->find.created_after_ms = a->created_after_ms;
    return op_start(self, op, call, "GET", path, NULL, 0, 1, find_step, err);
}

/* ---- cancel / stop / destroy ---- */

static void lds_cancel(void *self, uint64_t op_id)
{
    struct lds_plugin *p = self;
    for (struct lds_op *op = p->ops; op; op = op->next)
        if (op_id != 0 && op->op_id == op_id && op->in_http) {
            /* The answer then arrives with cancelled=1 and finishes the op. */
            p->hs->http_cancel(p->h, op->http_id);
            return;
        }
}

static void lds_stop(void *self)
{
    struct lds_plugin *p = self;
    p->stopped = 1;
    /* The host drops our HTTP callbacks after stop(): finish and free everything now. */
    while (p->ops) {
        struct lds_op *op = p->ops;
        p->hs->http_cancel(p->h, op->http_id);
        op->in_http = 0;
        op_fail(op, LCM_E_CANCELLED, 0, 0, "lds %s: cancelled (plugin stopping)", op->name);
    }
}

static void lds_destroy(void *self)
{
    struct lds_plugin *p = self;
    if (!p)
        return;
    while (p->ops) {                          /* only if stop() was never called */
        struct lds_op *op = p->ops;
        op_unlink(op);
        free(op);
    }
    plugin_free(p);
}

static const struct lcm_delivery_ops lds_ops = {
    .size = sizeof(struct lcm_delivery_ops),
    .session_create = lds_session_create,
    .set_devices = lds_set_devices,
    .session_get = lds_session_get,
    .launch_url = lds_launch_url,
    .release = lds_release,
    .refresh_content = lds_refresh_content,
    .session_find = lds_session_find,
};

LCM_PLUGIN_DESCRIPTOR = {
    LCM_PLUGIN_HEADER,
    .kind = LCM_KIND_DELIVERY,
    .name = "lds",
    .version = "1.1.0",
    .description = "delivery provider for LDS Reservations API v3 (HTTP Basic, one deployment "
                   "per region)",
    .config = lds_config,
    .nconfig = sizeof lds_config / sizeof lds_config[0],
    .create = lds_create,
    .stop = lds_stop,
    .destroy = lds_destroy,
    .cancel = lds_cancel,
    .ops = &lds_ops,
    .unimplemented_ops = NULL,
};
