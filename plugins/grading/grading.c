/* The grading plugin: grading provider for the grading engine API (OAuth2 client credentials).
 * Access tokens are fetched single-flight per (token URL, credential set), cached until
 * shortly before they expire, and fetched again once when the engine answers 401. Parsing is
 * in grading_parse.c; the op mapping and error codes are in docs/grading.md. */
#include <lcm/spi.h>

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grading_parse.h"
#include "plugkit.h"

static const struct lcm_plugin_config_key grd_config[] = {
    { "url", LCM_PCFG_STRING, NULL,
      "grading engine base URL (the environment variable LCM_GRADING_URL wins)", 0 },
    { "token_url", LCM_PCFG_STRING, NULL,
      "OAuth2 token endpoint (LCM_GRADING_TOKEN_URL wins); unset = <url>/oauth2/token", 0 },
    { "client_id", LCM_PCFG_STRING, NULL, "OAuth2 client id (LCM_GRADING_CLIENT_ID wins)", 0 },
    { "grading_client_secret", LCM_PCFG_SECRET, NULL,
      "OAuth2 client secret (LCM_GRADING_CLIENT_SECRET wins)", 0 },
    { "scope", LCM_PCFG_STRING, NULL, "OAuth2 scope to ask for (e.g. api); unset = none", 0 },
    { "token_refresh_margin_ms", LCM_PCFG_INT, "30000",
      "fetch a new token this long before the cached one expires (at most a tenth of its "
      "lifetime)", 0 },
    { "default_collector", LCM_PCFG_STRING, "cli",
      "collector of pod devices that do not name one", 0 },
    { "timeout_ms", LCM_PCFG_INT, "15000", "per-attempt timeout of a grading call", 0 },
    { "connect_timeout_ms", LCM_PCFG_INT, "5000", "TCP/TLS connect timeout", 0 },
    { "max_retries", LCM_PCFG_INT, "2",
      "extra attempts on transport errors, 429 and 5xx (every call is idempotent)", 0 },
    { "verify_tls", LCM_PCFG_BOOL, "true", "verify TLS certificates", 0 },
    { "ca_file", LCM_PCFG_STRING, NULL, "CA bundle to verify certificates with", 0 },
};

struct grd_op;

/* A cached access token for one (token URL, credential set). */
struct grd_tok {
    struct grd_tok *next;
    struct grd_plugin *p;
    char *token_url, *cred;
    char *token;                 /* NULL = none */
    uint64_t refresh_at;         /* host monotonic ms after which a new one is fetched */
    int fetching;
    struct grd_op *waiters, *wtail;
};

struct grd_plugin {
    const struct lcm_host_services *hs;
    struct lcm_host *h;
    char *url, *token_url, *client_id, *scope, *collector, *ca_file;   /* owned or NULL */
    long timeout_ms, connect_timeout_ms, margin_ms;
    int max_retries, verify_tls, stopped;
    struct grd_tok *toks;
    struct grd_op *ops;
};

typedef void (*grd_step_fn)(struct grd_op *op, const struct lcm_http_resp *r);

struct grd_op {
    struct grd_plugin *p;
    struct grd_op *prev, *next, *wnext;
    struct grd_tok *tok;
    const char *name;
    uint64_t op_id, http_id, timer_id;
    char corr[64];
    lcm_done_fn done;
    void *ud;
    uint64_t deadline_ms;
    int insecure;
    char base[512];

    /* current request */
    char method[8];
    char *path;                  /* owned, after the base URL */
    char *body;                  /* owned; wiped (may hold device passwords) */
    size_t body_len;
    grd_step_fn step;
    char *token_used;            /* owned copy of the bearer the request went out with */
    int in_http, in_wait, timer_armed, refetched;

    /* op arguments kept across steps */
    char sid[GRD_MAX_ID + 1];
    char part[GRD_MAX_ID + 1];
};

/* ---- helpers ---- */

static void wipe_free(char *s)
{
    if (s) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

static int nonempty(const char *s) { return s && *s; }

/* ---- create / destroy ---- */

static void plugin_free(struct grd_plugin *p)
{
    while (p->toks) {
        struct grd_tok *t = p->toks;
        p->toks = t->next;
        wipe_free(t->token);
        free(t->token_url);
        free(t->cred);
        free(t);
    }
    free(p->url);
    free(p->token_url);
    free(p->client_id);
    free(p->scope);
    free(p->collector);
    free(p->ca_file);
    free(p);
}

static int grd_create(const struct lcm_host_services *hs, struct lcm_host *h, void **self,
                      struct lcm_error *err)
{
    if (!hs || hs->size < LCM_SPI_SIZE_UPTO(struct lcm_host_services, config_bool)) {
        lcm_error_set(err, LCM_E_INVAL, 0, 0, "grading: host services table too old");
        return LCM_E_INVAL;
    }
    struct grd_plugin *p = calloc(1, sizeof *p);
    if (!p) {
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return LCM_E_NOMEM;
    }
    p->hs = hs;
    p->h = h;
    const char *url = lcm_pk_env_or_cfg(hs, h, "LCM_GRADING_URL", "url");
    const char *turl = lcm_pk_env_or_cfg(hs, h, "LCM_GRADING_TOKEN_URL", "token_url");
    const char *cid = lcm_pk_env_or_cfg(hs, h, "LCM_GRADING_CLIENT_ID", "client_id");
    const char *scope = hs->config_str(h, "scope");
    const char *coll = hs->config_str(h, "default_collector");
    const char *ca = hs->config_str(h, "ca_file");
    if ((url && !lcm_pk_url_ok(url)) || (turl && !lcm_pk_url_ok(turl))) {
        lcm_error_set(err, LCM_E_CONFIG, 0, 0, "grading: url and token_url must be http(s) "
                      "URLs");
        plugin_free(p);
        return LCM_E_CONFIG;
    }
    p->url = lcm_pk_dup_or_null(url);
    p->token_url = lcm_pk_dup_or_null(turl);
    p->client_id = lcm_pk_dup_or_null(cid);
    p->scope = lcm_pk_dup_or_null(scope);
    p->collector = strdup(coll && *coll ? coll : "cli");
    p->ca_file = lcm_pk_dup_or_null(ca);
    if ((url && !p->url) || (turl && !p->token_url) || (cid && !p->client_id) ||
        (nonempty(scope) && !p->scope) || !p->collector || (nonempty(ca) && !p->ca_file)) {
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        plugin_free(p);
        return LCM_E_NOMEM;
    }
    lcm_pk_strip_slash(p->url);
    p->timeout_ms = lcm_pk_cfg_long(hs, h, "timeout_ms", 15000, 50, 3600000);
    p->connect_timeout_ms = lcm_pk_cfg_long(hs, h, "connect_timeout_ms", 5000, 50, 600000);
    p->max_retries = (int)lcm_pk_cfg_long(hs, h, "max_retries", 2, 0, 10);
    p->margin_ms = lcm_pk_cfg_long(hs, h, "token_refresh_margin_ms", 30000, 0, 3600000);
    p->verify_tls = lcm_pk_cfg_bool(hs, h, "verify_tls", 1);
    hs->log(h, LCM_SPI_INFO, "msg=\"grading plugin ready\" url=\"%s\" token_url=\"%s\"",
            p->url ? p->url : "", p->token_url ? p->token_url : "(<url>/oauth2/token)");
    *self = p;
    return 0;
}

/* ---- op lifecycle ---- */

static void op_free(struct grd_op *op)
{
    free(op->path);
    if (op->body) {
        memset(op->body, 0, op->body_len);
        free(op->body);
    }
    wipe_free(op->token_used);
    free(op);
}

static void op_unlink(struct grd_op *op)
{
    struct grd_plugin *p = op->p;
    if (op->prev)
        op->prev->next = op->next;
    else if (p->ops == op)
        p->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->prev = op->next = NULL;
}

static void waiters_remove(struct grd_tok *t, struct grd_op *op)
{
    struct grd_op *prev = NULL;
    for (struct grd_op *w = t->waiters; w; prev = w, w = w->wnext) {
        if (w != op)
            continue;
        if (prev)
            prev->wnext = w->wnext;
        else
            t->waiters = w->wnext;
        if (t->wtail == w)
            t->wtail = prev;
        break;
    }
    op->wnext = NULL;
    op->in_wait = 0;
}

static void op_finish(struct grd_op *op, const struct lcm_error *err, const void *result)
{
    struct grd_plugin *p = op->p;
    op_unlink(op);
    if (err)
        lcm_pk_log_op_error(p->hs, p->h, "grading", op->name, op->op_id, op->corr, op->base,
                            err);
    op->done(op->ud, err, err ? NULL : result);
    op_free(op);
}

static void op_fail(struct grd_op *op, int code, int retryable, int status, const char *fmt,
                    ...) __attribute__((format(printf, 5, 6)));
static void op_fail(struct grd_op *op, int code, int retryable, int status, const char *fmt,
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

/* The SPI error for a non-2xx or transport answer (docs/grading.md, "Errors"). what names
 * the request in the message. */
static void http_error(const char *opname, const char *what, const struct lcm_http_resp *r,
                       struct lcm_error *e)
{
    char m[sizeof e->message], desc[160], w[121];
    int retry, st = r->status;
    snprintf(w, sizeof w, "%s", what);
    if (lcm_pk_http_transport_error(e, r, "grading", opname, w, 80))
        return;
    grd_parse_error_text(r->body, r->body_len, desc, sizeof desc);
    int code = lcm_pk_http_code(st, 422, &retry);
    snprintf(m, sizeof m, "grading %s: %.120s: HTTP %d%s%.100s", opname, what, st,
             desc[0] ? ": " : "", desc);
    lcm_error_set(e, code, retry, st, m);
}

static void op_fail_http(struct grd_op *op, const struct lcm_http_resp *r)
{
    struct lcm_error e;
    char what[160];
    snprintf(what, sizeof what, "%s %.140s", op->method, op->path);
    http_error(op->name, what, r, &e);
    op_finish(op, &e, NULL);
}

/* ---- tokens ---- */

static struct grd_tok *tok_get(struct grd_plugin *p, const char *token_url, const char *cred)
{
    for (struct grd_tok *t = p->toks; t; t = t->next)
        if (strcmp(t->token_url, token_url) == 0 && strcmp(t->cred, cred) == 0)
            return t;
    struct grd_tok *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->p = p;
    t->token_url = strdup(token_url);
    t->cred = strdup(cred);
    if (!t->token_url || !t->cred) {
        free(t->token_url);
        free(t->cred);
        free(t);
        return NULL;
    }
    t->next = p->toks;
    p->toks = t;
    return t;
}

static void tok_drop(struct grd_tok *t)
{
    wipe_free(t->token);
    t->token = NULL;
}

static int op_send(struct grd_op *op, struct lcm_error *err);
static void tok_done(void *ud, const struct lcm_http_resp *r);

/* Client id and secret of a credential set: secrets <SET>_CLIENT_ID / <SET>_CLIENT_SECRET
 * (env LCM_<SET>_…); the default set GRADING also from the client_id / grading_client_secret
 * config keys. */
static int client_creds(struct grd_plugin *p, const char *cred, char *id, size_t idcap,
                        char *sec, size_t seccap)
{
    char name[96];
    snprintf(name, sizeof name, "%s_CLIENT_ID", cred);
    if (p->hs->secret(p->h, name, id, idcap) <= 0) {
        const char *c = strcmp(cred, "GRADING") == 0 ? p->client_id : NULL;
        if (!c || strlen(c) + 1 > idcap)
            return LCM_E_CONFIG;
        memcpy(id, c, strlen(c) + 1);
    }
    snprintf(name, sizeof name, "%s_CLIENT_SECRET", cred);
    if (p->hs->secret(p->h, name, sec, seccap) <= 0) {
        memset(id, 0, idcap);
        return LCM_E_CONFIG;
    }
    return 0;
}

/* Starts the client-credentials request for t. 0 or LCM_E_* with err filled. */
static int tok_fetch(struct grd_plugin *p, struct grd_tok *t, const struct grd_op *op,
                     struct lcm_error *err)
{
    char id[512], sec[1024], eid[1600], esec[3100], escope[400] = "", m[256];
    if (client_creds(p, t->cred, id, sizeof id, sec, sizeof sec) != 0) {
        snprintf(m, sizeof m, "grading: client credentials of set %s are not configured "
                 "(LCM_%s_CLIENT_ID / LCM_%s_CLIENT_SECRET)", t->cred, t->cred, t->cred);
        lcm_error_set(err, LCM_E_CONFIG, 0, 0, m);
        return LCM_E_CONFIG;
    }
    int ok = lcm_pk_percent_encode(id, eid, sizeof eid) >= 0 && lcm_pk_percent_encode(sec, esec, sizeof esec) >= 0 &&
             (!p->scope || lcm_pk_percent_encode(p->scope, escope, sizeof escope) >= 0);
    memset(sec, 0, sizeof sec);
    memset(id, 0, sizeof id);
    size_t cap = strlen(eid) + strlen(esec) + strlen(escope) + 128;
    char *body = ok ? malloc(cap) : NULL;
    if (body)
        snprintf(body, cap, "grant_type=client_credentials&client_id=%s&client_secret=%s%s%s",
                 eid, esec, escope[0] ? "&scope=" : "", escope);
    memset(esec, 0, sizeof esec);
    if (!body) {
        lcm_error_set(err, ok ? LCM_E_NOMEM : LCM_E_CONFIG, ok, 0,
                      ok ? "out of memory" : "grading: client credentials too long");
        return err->code;
    }
    const char *hdrs[] = { "Content-Type: application/x-www-form-urlencoded",
                           "Accept: application/json" };
    struct lcm_http_req req = {
        .size = sizeof req, .method = "POST", .url = t->token_url, .headers = hdrs,
        .nheaders = 2, .body = body, .body_len = strlen(body), .timeout_ms = p->timeout_ms,
        .connect_timeout_ms = p->connect_timeout_ms, .max_retries = p->max_retries,
        .idempotent = 1, .insecure = !p->verify_tls || (op && op->insecure),
        .ca_file = p->ca_file, .metric_label = "token", .max_response_bytes = 256 * 1024,
    };
    uint64_t hid;
    int rc = p->hs->http_request(p->h, &req, tok_done, t, &hid);
    memset(body, 0, strlen(body));
    free(body);
    if (rc != 0) {
        lcm_error_set(err, rc, rc != LCM_E_SHUTDOWN && rc != LCM_E_INVAL, 0,
                      "grading: cannot send the token request");
        return rc;
    }
    t->fetching = 1;
    return 0;
}

static void tok_done(void *ud, const struct lcm_http_resp *r)
{
    struct grd_tok *t = ud;
    struct grd_plugin *p = t->p;
    struct lcm_error e = { 0 };
    char why[128], m[256];
    long ttl = 0;
    int ok = 0;
    t->fetching = 0;
    if (r->status >= 200 && r->status < 300) {
        char *tok = malloc(GRD_MAX_TOKEN + 1);
        if (tok && grd_parse_token(r->body, r->body_len, tok, GRD_MAX_TOKEN + 1, &ttl, why,
                                   sizeof why) == 0) {
            tok_drop(t);
            t->token = tok;
            ok = 1;
        } else if (!tok) {
            lcm_error_set(&e, LCM_E_NOMEM, 1, 0, "out of memory");
        } else {
            free(tok);
            snprintf(m, sizeof m, "grading: token endpoint %.100s: %s", t->token_url, why);
            lcm_error_set(&e, LCM_E_PROTO, 0, r->status, m);
        }
    } else if (r->status == 400 || r->status == 401 || r->status == 403) {
        char desc[120];
        grd_parse_error_text(r->body, r->body_len, desc, sizeof desc);
        snprintf(m, sizeof m, "grading: token refused by %.80s (HTTP %d%s%.60s); check the "
                 "client credentials of set %.40s", t->token_url, r->status, desc[0] ? ": " : "",
                 desc, t->cred);
        lcm_error_set(&e, LCM_E_AUTH, 0, r->status, m);
    } else {
        char what[140];
        snprintf(what, sizeof what, "POST %.100s", t->token_url);
        http_error("token", what, r, &e);
    }
    {
        uint64_t now = p->hs->monotonic_ms(p->h);
        long life = ttl * 1000, margin = p->margin_ms;
        if (margin > life / 10)
            margin = life / 10;
        t->refresh_at = now + (uint64_t)(life - margin);
        p->hs->metric_inc(p->h, "grading_token_fetch_total", ok ? "result=\"ok\""
                                                               : "result=\"error\"", 1);
        if (ok)
            p->hs->log(p->h, LCM_SPI_INFO, "msg=\"grading token fetched\" token_url=%s "
                       "credentials=%s expires_in_s=%ld", t->token_url, t->cred, ttl);
    }
    /* Detach the queue first: finishing an op may start new ops on this token. */
    struct grd_op *w = t->waiters;
    t->waiters = t->wtail = NULL;
    while (w) {
        struct grd_op *next = w->wnext;
        w->wnext = NULL;
        w->in_wait = 0;
        struct lcm_error se;
        if (!ok)
            op_finish(w, &e, NULL);
        else if (op_send(w, &se) != 0)
            op_finish(w, &se, NULL);
        w = next;
    }
}

/* ---- requests ---- */

static void op_http_done(void *ud, const struct lcm_http_resp *r)
{
    struct grd_op *op = ud;
    struct grd_plugin *p = op->p;
    struct grd_tok *t = op->tok;
    op->in_http = 0;
    char labels[96];
    snprintf(labels, sizeof labels, "op=\"%s\"", op->name);
    p->hs->metric_observe(p->h, "grading_call_seconds", labels, r->elapsed_s);
    if (!r->cancelled && r->status == 401) {
        /* Only drop the token this request used: another op may have refreshed it already. */
        if (t->token && op->token_used && strcmp(t->token, op->token_used) == 0)
            tok_drop(t);
        if (!op->refetched) {
            op->refetched = 1;
            p->hs->metric_inc(p->h, "grading_token_refused_total", NULL, 1);
            p->hs->log(p->h, LCM_SPI_INFO, "msg=\"token refused, fetching a new one\" op=%s "
                       "corr=%s", op->name, op->corr[0] ? op->corr : "-");
            struct lcm_error e;
            if (op_send(op, &e) != 0)
                op_finish(op, &e, NULL);
            return;
        }
    }
    op->step(op, r);
}

static int op_send(struct grd_op *op, struct lcm_error *err)
{
    struct grd_plugin *p = op->p;
    struct grd_tok *t = op->tok;
    uint64_t now = p->hs->monotonic_ms(p->h);
    if (t->token && now >= t->refresh_at)
        tok_drop(t);                      /* about to expire: do not send it */
    if (!t->token) {
        if (!t->fetching && tok_fetch(p, t, op, err) != 0)
            return err->code;
        op->wnext = NULL;
        if (t->wtail)
            t->wtail->wnext = op;
        else
            t->waiters = op;
        t->wtail = op;
        op->in_wait = 1;
        return 0;
    }
    long timeout = p->timeout_ms;
    int retries = p->max_retries;
    if (op->deadline_ms) {
        if (now >= op->deadline_ms) {
            char m[200];
            snprintf(m, sizeof m, "grading %s: deadline passed before %s %.120s", op->name,
                     op->method, op->path);
            lcm_error_set(err, LCM_E_TIMEOUT, 1, 0, m);
            return LCM_E_TIMEOUT;
        }
        lcm_pk_share_deadline((long)(op->deadline_ms - now), &timeout, &retries);
    }
    char url[1600];
    int n = snprintf(url, sizeof url, "%s%s", op->base, op->path);
    if (n < 0 || (size_t)n >= sizeof url) {
        lcm_error_set(err, LCM_E_INVAL, 0, 0, "grading: URL too long");
        return LCM_E_INVAL;
    }
    wipe_free(op->token_used);
    if (!(op->token_used = strdup(t->token))) {
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return LCM_E_NOMEM;
    }
    const char *hdrs[] = { "Accept: application/json", "Content-Type: application/json" };
    struct lcm_http_req req = {
        .size = sizeof req, .method = op->method, .url = url, .headers = hdrs,
        .nheaders = op->body ? 2 : 1, .body = op->body, .body_len = op->body_len,
        .timeout_ms = timeout, .connect_timeout_ms = p->connect_timeout_ms,
        .max_retries = retries, .idempotent = 1,
        .insecure = !p->verify_tls || op->insecure, .ca_file = p->ca_file,
        .auth = LCM_HTTP_AUTH_BEARER, .bearer = op->token_used, .metric_label = op->name,
        .max_response_bytes = 8u << 20,
    };
    int rc = p->hs->http_request(p->h, &req, op_http_done, op, &op->http_id);
    if (rc != 0) {
        char m[200];
        snprintf(m, sizeof m, "grading %s: cannot send %s %.120s", op->name, op->method,
                 op->path);
        lcm_error_set(err, rc, rc != LCM_E_SHUTDOWN && rc != LCM_E_INVAL, 0, m);
        return rc;
    }
    op->in_http = 1;
    return 0;
}

/* Sets the op's next request (body copied) and sends it. 0 or LCM_E_* with err filled. */
static int op_request(struct grd_op *op, const char *method, const char *path,
                      const char *body, grd_step_fn step, struct lcm_error *err)
{
    snprintf(op->method, sizeof op->method, "%s", method);
    free(op->path);
    if (op->body) {
        memset(op->body, 0, op->body_len);
        free(op->body);
    }
    op->body = NULL;
    op->body_len = 0;
    op->path = strdup(path);
    if (body && !(op->body = strdup(body)))
        op->path = (free(op->path), NULL);
    if (!op->path) {
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return LCM_E_NOMEM;
    }
    op->body_len = body ? strlen(body) : 0;
    op->step = step;
    op->refetched = 0;
    return op_send(op, err);
}

/* Next request from inside a step; fails the op when it cannot go out. */
static void op_next(struct grd_op *op, const char *method, const char *path, grd_step_fn step)
{
    struct lcm_error e;
    if (op_request(op, method, path, NULL, step, &e) != 0)
        op_finish(op, &e, NULL);
}

static int bad_args(struct lcm_error *err, const char *op, const char *what)
{
    char m[200];
    snprintf(m, sizeof m, "grading %s: %s", op, what);
    lcm_error_set(err, LCM_E_INVAL, 0, 0, m);
    return LCM_E_INVAL;
}

/* A new op for call: base URL, token cache entry and call context resolved. NULL with err
 * filled when the call cannot be made. */
static struct grd_op *op_new(struct grd_plugin *p, const struct lcm_call *call, const char *name,
                             lcm_done_fn done, void *ud, struct lcm_error *err)
{
    char m[256], turl[600];
    if (!done) {
        bad_args(err, name, "no done callback");
        return NULL;
    }
    if (p->stopped) {
        lcm_error_set(err, LCM_E_SHUTDOWN, 0, 0, "grading: plugin is stopping");
        return NULL;
    }
    int full = call && call->size >= LCM_SPI_SIZE_UPTO(struct lcm_call, insecure_tls);
    const char *base = p->url;
    if (full && call->endpoint && strstr(call->endpoint, "://")) {
        if (!lcm_pk_url_ok(call->endpoint)) {
            bad_args(err, name, "call endpoint is not an http(s) URL");
            return NULL;
        }
        base = call->endpoint;
    }
    if (!base) {
        snprintf(m, sizeof m, "grading %s: no grading engine URL (set LCM_GRADING_URL or url)",
                 name);
        lcm_error_set(err, LCM_E_CONFIG, 0, 0, m);
        return NULL;
    }
    const char *cred = full && nonempty(call->credentials) ? call->credentials : "GRADING";
    if (!lcm_pk_cred_ok(cred)) {
        bad_args(err, name, "invalid credential set name");
        return NULL;
    }
    if (p->token_url) {
        snprintf(turl, sizeof turl, "%s", p->token_url);
    } else {
        int n = snprintf(turl, sizeof turl, "%s", base);
        while (n > 0 && turl[n - 1] == '/')
            turl[--n] = '\0';
        if ((size_t)n + sizeof "/oauth2/token" > sizeof turl) {
            bad_args(err, name, "URL too long");
            return NULL;
        }
        strcat(turl, "/oauth2/token");
    }
    struct grd_op *op = calloc(1, sizeof *op);
    struct grd_tok *t = op ? tok_get(p, turl, cred) : NULL;
    if (!t) {
        free(op);
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return NULL;
    }
    op->p = p;
    op->tok = t;
    op->name = name;
    op->done = done;
    op->ud = ud;
    snprintf(op->base, sizeof op->base, "%s", base);
    lcm_pk_strip_slash(op->base);
    if (full) {
        op->op_id = call->op_id;
        snprintf(op->corr, sizeof op->corr, "%s", call->correlation_id ? call->correlation_id
                                                                       : "");
        op->deadline_ms = call->deadline_ms > 0 ? (uint64_t)call->deadline_ms : 0;
        op->insecure = call->insecure_tls != 0;
    }
    op->next = p->ops;
    if (p->ops)
        p->ops->prev = op;
    p->ops = op;
    return op;
}

/* Sends the op's first request; on failure the op is discarded (done never runs). */
static int op_begin(struct grd_op *op, const char *method, const char *path, const char *body,
                    grd_step_fn step, struct lcm_error *err)
{
    int rc = op_request(op, method, path, body, step, err);
    if (rc != 0) {
        if (op->in_wait)
            waiters_remove(op->tok, op);
        op_unlink(op);
        op_free(op);
    }
    return rc;
}

static int ok2xx(const struct lcm_http_resp *r) { return r->status >= 200 && r->status < 300; }

static void proto_fail(struct grd_op *op, int status, const char *why)
{
    op_fail(op, LCM_E_PROTO, 0, status, "grading %s: %s %.120s: %.100s", op->name, op->method,
            op->path, why);
}

/* ---- session_create ---- */

static void created_finish(struct grd_op *op, const char *id)
{
    struct lcm_grd_created c = { .grading_session_id = id, .part_id = op->part };
    op_finish(op, NULL, &c);
}

/* After a 422 (the id exists): the session is ours when it has the part. */
static void create_check_step(struct grd_op *op, const struct lcm_http_resp *r)
{
    char id[GRD_MAX_ID + 1], why[128];
    int has;
    if (!ok2xx(r)) {
        op_fail_http(op, r);
        return;
    }
    if (grd_parse_session_part(r->body, r->body_len, op->part, id, sizeof id, &has, why,
                               sizeof why) != 0) {
        proto_fail(op, r->status, why);
        return;
    }
    if (!has) {
        op_fail(op, LCM_E_CONFLICT, 0, 422, "grading session_create: session %s exists without "
                "part %.100s", op->sid, op->part);
        return;
    }
    op->p->hs->log(op->p->h, LCM_SPI_INFO, "msg=\"grading session existed already\" "
                   "grading_session_id=%s corr=%s", op->sid, op->corr[0] ? op->corr : "-");
    created_finish(op, id);
}

static void create_step(struct grd_op *op, const struct lcm_http_resp *r)
{
    char id[GRD_MAX_ID + 1], why[128], path[GRD_MAX_ID * 3 + 64], esid[GRD_MAX_ID * 3 + 1];
    int has;
    if (r->status == 422) {
        /* Created by an earlier attempt (a retry after a lost answer, or a resumed step). */
        lcm_pk_percent_encode(op->sid, esid, sizeof esid);
        snprintf(path, sizeof path, "/api/v1/sessions/%s", esid);
        op_next(op, "GET", path, create_check_step);
        return;
    }
    if (!ok2xx(r)) {
        op_fail_http(op, r);
        return;
    }
    if (grd_parse_session_part(r->body, r->body_len, op->part, id, sizeof id, &has, why,
                               sizeof why) != 0) {
        proto_fail(op, r->status, why);
        return;
    }
    if (!has) {
        proto_fail(op, r->status, "created session lacks the part");
        return;
    }
    created_finish(op, id);
}

static int grd_session_create(void *self, const struct lcm_call *call, const void *args,
                              lcm_done_fn done, void *ud, struct lcm_error *err)
{
    struct grd_plugin *p = self;
    const struct lcm_grd_create_args *a = args;
    if (!a || !nonempty(a->session_id) || !nonempty(a->candidate_id) ||
        !nonempty(a->part_id))
        return bad_args(err, "session_create", "session_id, candidate_id and part_id are "
                        "required");
    if (strlen(a->session_id) > GRD_MAX_ID || strlen(a->part_id) > GRD_MAX_ID)
        return bad_args(err, "session_create", "session_id or part_id too long");
    if ((a->ndevices && !a->devices) || a->ndevices > 1024)
        return bad_args(err, "session_create", "invalid device list");
    for (size_t i = 0; i < a->ndevices; i++) {
        const struct lcm_grd_device *d = &a->devices[i];
        if (!nonempty(d->label) || d->nifaces == 0 || !d->ifaces)
            return bad_args(err, "session_create", "every pod device needs a label and at "
                            "least one interface");
        for (size_t k = 0; k < d->nifaces; k++)
            if (!nonempty(d->ifaces[k].name) || !nonempty(d->ifaces[k].protocol) ||
                !nonempty(d->ifaces[k].host) || d->ifaces[k].port < 0 ||
                d->ifaces[k].port > 65535)
                return bad_args(err, "session_create", "every interface needs name, protocol, "
                                "host and a port in 0..65535");
    }
    struct grd_op *op = op_new(p, call, "session_create", done, ud, err);
    if (!op)
        return err->code;
    snprintf(op->sid, sizeof op->sid, "%s", a->session_id);
    snprintf(op->part, sizeof op->part, "%s", a->part_id);
    char *body = grd_build_create_body(a, p->collector);
    if (!body) {
        op_unlink(op);
        op_free(op);
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return LCM_E_NOMEM;
    }
    int rc = op_begin(op, "POST", "/api/v1/sessions", body, create_step, err);
    memset(body, 0, strlen(body));
    free(body);
    return rc;
}

/* ---- request_grading ---- */

static void grade_step(struct grd_op *op, const struct lcm_http_resp *r)
{
    if (!ok2xx(r)) {
        op_fail_http(op, r);
        return;
    }
    op_finish(op, NULL, NULL);
}

static int grd_request_grading(void *self, const struct lcm_call *call, const void *args,
                               lcm_done_fn done, void *ud, struct lcm_error *err)
{
    const struct lcm_grd_part_args *a = args;
    char esid[GRD_MAX_ID * 3 + 1], epid[GRD_MAX_ID * 3 + 1], path[2 * GRD_MAX_ID * 3 + 64];
    if (!a || !nonempty(a->grading_session_id) || !nonempty(a->part_id) ||
        lcm_pk_percent_encode(a->grading_session_id, esid, sizeof esid) < 0 ||
        lcm_pk_percent_encode(a->part_id, epid, sizeof epid) < 0)
        return bad_args(err, "request_grading", "missing or too long grading_session_id / "
                        "part_id");
    struct grd_op *op = op_new(self, call, "request_grading", done, ud, err);
    if (!op)
        return err->code;
    snprintf(path, sizeof path, "/api/v1/sessions/%s/parts/%s/grade", esid, epid);
    /* A grade request while that part grades joins the running one: safe to retry. */
    return op_begin(op, "POST", path, "", grade_step, err);
}

/* ---- get_result ---- */

static void result_step(struct grd_op *op, const struct lcm_http_resp *r)
{
    struct grd_result_buf b;
    char why[128];
    if (!ok2xx(r)) {
        op_fail_http(op, r);
        return;
    }
    int rc = grd_parse_result(r->body, r->body_len, NULL, &b, why, sizeof why);
    if (rc != 0) {
        if (rc == LCM_E_NOMEM)
            op_fail(op, LCM_E_NOMEM, 1, r->status, "out of memory");
        else
            proto_fail(op, r->status, why);
        return;
    }
    if (b.r.failed)
        op->p->hs->log(op->p->h, LCM_SPI_INFO, "msg=\"grading failed\" grading_session_id=%s "
                       "part=\"%s\" reason=\"%s\" corr=%s", op->sid, b.part_id, b.reason,
                       op->corr[0] ? op->corr : "-");
    op_finish(op, NULL, &b.r);
    grd_result_free(&b);
}

static int grd_get_result(void *self, const struct lcm_call *call, const void *args,
                          lcm_done_fn done, void *ud, struct lcm_error *err)
{
    const struct lcm_grd_session_args *a = args;
    char esid[GRD_MAX_ID * 3 + 1], path[GRD_MAX_ID * 3 + 64];
    if (!a || !nonempty(a->grading_session_id) || strlen(a->grading_session_id) > GRD_MAX_ID ||
        lcm_pk_percent_encode(a->grading_session_id, esid, sizeof esid) < 0)
        return bad_args(err, "get_result", "missing or too long grading_session_id");
    struct grd_op *op = op_new(self, call, "get_result", done, ud, err);
    if (!op)
        return err->code;
    snprintf(op->sid, sizeof op->sid, "%s", a->grading_session_id);
    snprintf(path, sizeof path, "/api/v1/sessions/%s", esid);
    return op_begin(op, "GET", path, NULL, result_step, err);
}

/* ---- cancel / stop / destroy ---- */

static void cancel_fire(void *ud)
{
    struct grd_op *op = ud;
    op->timer_armed = 0;
    op_fail(op, LCM_E_CANCELLED, 0, 0, "grading %s: cancelled", op->name);
}

static void grd_cancel(void *self, uint64_t op_id)
{
    struct grd_plugin *p = self;
    struct grd_op *op;
    for (op = p->ops; op; op = op->next)
        if (op_id != 0 && op->op_id == op_id)
            break;
    if (!op || op->timer_armed)
        return;
    if (op->in_http) {
        p->hs->http_cancel(p->h, op->http_id);     /* the answer arrives with cancelled=1 */
    } else if (op->in_wait) {
        waiters_remove(op->tok, op);
        /* done must not run from inside cancel(): finish from the loop. */
        if (p->hs->timer_add(p->h, 0, cancel_fire, op, &op->timer_id) == 0)
            op->timer_armed = 1;
    }
}

static void grd_stop(void *self)
{
    struct grd_plugin *p = self;
    p->stopped = 1;
    /* The host drops our timers and HTTP callbacks after stop(): complete and free now. */
    for (struct grd_tok *t = p->toks; t; t = t->next) {
        t->waiters = t->wtail = NULL;
        t->fetching = 0;
    }
    while (p->ops) {
        struct grd_op *op = p->ops;
        if (op->in_http)
            p->hs->http_cancel(p->h, op->http_id);
        op->in_http = op->in_wait = op->timer_armed = 0;
        op_fail(op, LCM_E_CANCELLED, 0, 0, "grading %s: cancelled (plugin stopping)",
                op->name);
    }
}

static void grd_destroy(void *self)
{
    struct grd_plugin *p = self;
    if (!p)
        return;
    while (p->ops) {
        struct grd_op *op = p->ops;
        op_unlink(op);
        op_free(op);
    }
    plugin_free(p);
}

static const struct lcm_grading_ops grd_ops = {
    .size = sizeof(struct lcm_grading_ops),
    .session_create = grd_session_create,
    .request_grading = grd_request_grading,
    .get_result = grd_get_result,
};

LCM_PLUGIN_DESCRIPTOR = {
    LCM_PLUGIN_HEADER,
    .kind = LCM_KIND_GRADING,
    .name = "grading",
    .version = "1.0.0",
    .description = "grading provider for the grading engine API (OAuth2 client credentials)",
    .config = grd_config,
    .nconfig = sizeof grd_config / sizeof grd_config[0],
    .create = grd_create,
    .stop = grd_stop,
    .destroy = grd_destroy,
    .cancel = grd_cancel,
    .ops = &grd_ops,
    .unimplemented_ops = NULL,
};
