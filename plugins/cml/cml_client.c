/* The cml plugin's HTTP client: every CML call goes through the host's async HTTP service with
 * a bearer token cached per (endpoint, credential set). Authentication is single-flight: ops
 * that need a token while one is being fetched wait in the endpoint's queue. A 401 drops the
 * token and re-authenticates once; the second 401 is an auth error. */
#include "cml_client.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cml_endpoint.h"
#include "plugkit.h"

struct cml_ep {
    struct cml_ep *next;
    struct cml_plugin *p;
    char *base;                  /* "https://10.0.0.5" (no trailing '/') */
    char *cred;                  /* credential set name, "CML" by default */
    char *token;                 /* NULL = none cached */
    int authing;
    struct cml_op *waiters, *wtail;
};

#define CML_CTYPE_JSON "application/json"

int cml_id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!(isalnum(c) || c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return strcmp(id, ".") != 0 && strcmp(id, "..") != 0;
}

const char *cml_op_base(const struct cml_op *op) { return op->ep->base; }

static void ep_free(struct cml_ep *ep)
{
    if (ep->token) {
        memset(ep->token, 0, strlen(ep->token));
        free(ep->token);
    }
    free(ep->base);
    free(ep->cred);
    free(ep);
}

static struct cml_ep *ep_get(struct cml_plugin *p, const char *base, const char *cred)
{
    for (struct cml_ep *ep = p->eps; ep; ep = ep->next)
        if (strcmp(ep->base, base) == 0 && strcmp(ep->cred, cred) == 0)
            return ep;
    struct cml_ep *ep = calloc(1, sizeof *ep);
    if (!ep)
        return NULL;
    ep->p = p;
    ep->base = strdup(base);
    ep->cred = strdup(cred);
    if (!ep->base || !ep->cred) {
        ep_free(ep);
        return NULL;
    }
    ep->next = p->eps;
    p->eps = ep;
    p->neps++;
    return ep;
}

static void drop_token(struct cml_ep *ep)
{
    if (!ep->token)
        return;
    memset(ep->token, 0, strlen(ep->token));
    free(ep->token);
    ep->token = NULL;
}

/* Username and password of a credential set: secrets <CRED>_USERNAME / <CRED>_PASSWORD (env
 * LCM_<CRED>_USERNAME …, or the secret config keys), the username also from the "username"
 * config key. Returns 0 or LCM_E_CONFIG. */
static int credentials(struct cml_plugin *p, const char *cred, char *user, size_t ucap,
                       char *pass, size_t pcap)
{
    char name[96];
    snprintf(name, sizeof name, "%s_USERNAME", cred);
    int n = p->hs->secret(p->h, name, user, ucap);
    if (n <= 0) {
        const char *u = strcmp(cred, "CML") == 0 ? p->hs->config_str(p->h, "username") : NULL;
        if (!u || !*u || strlen(u) + 1 > ucap)
            return LCM_E_CONFIG;
        memcpy(user, u, strlen(u) + 1);
    }
    snprintf(name, sizeof name, "%s_PASSWORD", cred);
    n = p->hs->secret(p->h, name, pass, pcap);
    if (n < 0) {
        memset(user, 0, ucap);
        return LCM_E_CONFIG;
    }
    return 0;
}

/* ---- op lifecycle ---- */

static void op_free(struct cml_op *op)
{
    free(op->path);
    if (op->body) {
        memset(op->body, 0, op->body_len);   /* may hold a licence token */
        free(op->body);
    }
    free(op->token_used);
    free(op->lab_id);
    for (size_t i = 0; i < op->nstrs; i++)
        free(op->strs[i]);
    free(op->strs);
    cml_arena_free(&op->arena);
    free(op);
}

static void op_unlink(struct cml_op *op)
{
    struct cml_plugin *p = op->p;
    if (op->prev)
        op->prev->next = op->next;
    else if (p->ops == op)
        p->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->prev = op->next = NULL;
}

static void waiters_remove(struct cml_ep *ep, struct cml_op *op)
{
    struct cml_op *prev = NULL;
    for (struct cml_op *w = ep->waiters; w; prev = w, w = w->wnext) {
        if (w != op)
            continue;
        if (prev)
            prev->wnext = w->wnext;
        else
            ep->waiters = w->wnext;
        if (ep->wtail == w)
            ep->wtail = prev;
        break;
    }
    op->wnext = NULL;
    op->in_auth_wait = 0;
}

struct cml_op *cml_op_new(struct cml_plugin *p, const struct lcm_call *call, const char *name,
                          lcm_done_fn done, void *ud, struct lcm_error *err)
{
    char base[512], why[200];
    if (!done) {
        lcm_error_set(err, LCM_E_INVAL, 0, 0, "cml: no done callback");
        return NULL;
    }
    if (p->stopped) {
        lcm_error_set(err, LCM_E_SHUTDOWN, 0, 0, "cml: plugin is stopping");
        return NULL;
    }
    const char *cep = call ? call->endpoint : NULL;
    const char *iid = call ? call->instance_id : NULL;
    const char *wid = call ? call->worker_id : NULL;
    if (cml_endpoint_resolve(p->cfg.endpoint_template, cep, iid, wid, base, sizeof base, why,
                             sizeof why) != 0) {
        char m[256];
        snprintf(m, sizeof m, "cml %s: %s", name, why);
        lcm_error_set(err, LCM_E_INVAL, 0, 0, m);
        return NULL;
    }
    const char *cred = call && call->credentials && *call->credentials ? call->credentials
                                                                       : "CML";
    for (const char *c = cred; *c; c++)
        if (!(isalnum((unsigned char)*c) || *c == '_') || c - cred > 60) {
            lcm_error_set(err, LCM_E_INVAL, 0, 0, "cml: invalid credential set name");
            return NULL;
        }
    struct cml_op *op = calloc(1, sizeof *op);
    struct cml_ep *ep = op ? ep_get(p, base, cred) : NULL;
    if (!ep) {
        free(op);
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "cml: out of memory");
        return NULL;
    }
    op->p = p;
    op->ep = ep;
    op->name = name;
    op->done = done;
    op->ud = ud;
    if (call && call->size >= LCM_SPI_SIZE_UPTO(struct lcm_call, insecure_tls)) {
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

void cml_op_discard(struct cml_op *op)
{
    if (op->in_auth_wait)
        waiters_remove(op->ep, op);
    op_unlink(op);
    op_free(op);
}

void cml_op_finish(struct cml_op *op, const struct lcm_error *err, const void *result)
{
    struct cml_plugin *p = op->p;
    op_unlink(op);
    if (err)
        lcm_pk_log_op_error(p->hs, p->h, "cml", op->name, op->op_id, op->corr, op->ep->base, err);
    op->done(op->ud, err, err ? NULL : result);
    op_free(op);
}

void cml_op_fail(struct cml_op *op, int code, int retryable, int http_status, const char *fmt,
                 ...)
{
    struct lcm_error e;
    char m[sizeof e.message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    lcm_error_set(&e, code, retryable, http_status, m);
    cml_op_finish(op, &e, NULL);
}

void cml_http_error(const struct cml_op *op, const struct lcm_http_resp *resp, int http400,
                    struct lcm_error *err)
{
    char desc[160];
    char m[sizeof err->message];
    int code, retry = 0, st = resp ? resp->status : 0;
    const char *meth = op->method, *path = op->path ? op->path : "";
    if (!resp) {
        lcm_error_set(err, LCM_E_INTERNAL, 0, 0, "cml: no response");
        return;
    }
    char what[sizeof err->message];
    snprintf(what, sizeof what, "%s %s", meth, path);
    if (lcm_pk_http_transport_error(err, resp, "cml", op->name, what, (int)sizeof err->message))
        return;
    cml_parse_error_text(resp->body, resp->body_len, desc, sizeof desc);
    code = lcm_pk_http_code(st, 423, &retry);
    if (st == 400)
        code = http400;
    snprintf(m, sizeof m, "cml %s: %s %s: HTTP %d%s%s", op->name, meth, path, st,
             desc[0] ? ": " : "", desc);
    lcm_error_set(err, code, retry, st, m);
}

void cml_op_fail_http(struct cml_op *op, const struct lcm_http_resp *resp, int http400)
{
    struct lcm_error e;
    cml_http_error(op, resp, http400, &e);
    cml_op_finish(op, &e, NULL);
}

/* ---- requests ---- */

static int op_send(struct cml_op *op, struct lcm_error *err);

static void op_http_done(void *ud, const struct lcm_http_resp *resp)
{
    struct cml_op *op = ud;
    struct cml_plugin *p = op->p;
    struct cml_ep *ep = op->ep;
    op->in_http = 0;
    if (resp->cancelled) {
        cml_op_fail(op, LCM_E_CANCELLED, 0, 0, "cml %s: cancelled", op->name);
        return;
    }
    if (op->needs_auth && resp->status == 401) {
        /* Only drop the token this request used: another op may have refreshed it already. */
        if (ep->token && op->token_used && strcmp(ep->token, op->token_used) == 0)
            drop_token(ep);
        if (!op->reauthed) {
            op->reauthed = 1;
            p->hs->metric_inc(p->h, "cml_reauth_total", NULL, 1);
            p->hs->log(p->h, LCM_SPI_INFO, "msg=\"token refused, re-authenticating\" op=%s "
                       "endpoint=%s", op->name, ep->base);
            struct lcm_error e;
            if (op_send(op, &e) != 0)
                cml_op_finish(op, &e, NULL);
            return;
        }
        cml_op_fail_http(op, resp, LCM_E_AUTH);
        return;
    }
    op->step(op, resp);
}

static void auth_done(void *ud, const struct lcm_http_resp *resp);

/* Starts POST /authenticate for ep. Returns 0 or LCM_E_* (err filled). */
static int auth_start(struct cml_ep *ep, const struct cml_op *op, struct lcm_error *err)
{
    struct cml_plugin *p = ep->p;
    char user[256], pass[1024], url[640];
    int rc = credentials(p, ep->cred, user, sizeof user, pass, sizeof pass);
    if (rc != 0) {
        char m[200];
        snprintf(m, sizeof m, "cml: credentials for set %s are not configured "
                 "(LCM_%s_USERNAME / LCM_%s_PASSWORD)", ep->cred, ep->cred, ep->cred);
        lcm_error_set(err, LCM_E_CONFIG, 0, 0, m);
        return LCM_E_CONFIG;
    }
    cJSON *o = cJSON_CreateObject();
    char *body = NULL;
    if (o && cJSON_AddStringToObject(o, "username", user) &&
        cJSON_AddStringToObject(o, "password", pass))
        body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    memset(pass, 0, sizeof pass);
    memset(user, 0, sizeof user);
    if (!body) {
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "cml: out of memory");
        return LCM_E_NOMEM;
    }
    snprintf(url, sizeof url, "%s/api/v0/authenticate", ep->base);
    const char *hdrs[] = { "Content-Type: " CML_CTYPE_JSON, "Accept: application/json" };
    struct lcm_http_req req = {
        .size = sizeof req, .method = "POST", .url = url, .headers = hdrs, .nheaders = 2,
        .body = body, .body_len = strlen(body), .timeout_ms = p->cfg.timeout_ms,
        .connect_timeout_ms = p->cfg.connect_timeout_ms, .max_retries = p->cfg.max_retries,
        .idempotent = 1, .insecure = !p->cfg.verify_tls || (op && op->insecure),
        .ca_file = p->cfg.ca_file, .metric_label = "authenticate",
        .max_response_bytes = 64 * 1024,
    };
    uint64_t id;
    rc = p->hs->http_request(p->h, &req, auth_done, ep, &id);
    memset(body, 0, strlen(body));
    free(body);
    if (rc != 0) {
        lcm_error_set(err, rc, rc != LCM_E_SHUTDOWN, 0, "cml: cannot send authenticate");
        return rc;
    }
    ep->authing = 1;
    return 0;
}

static void auth_done(void *ud, const struct lcm_http_resp *resp)
{
    struct cml_ep *ep = ud;
    struct cml_plugin *p = ep->p;
    struct lcm_error e = { 0 };
    struct cml_arena a = { 0 };
    char why[128];
    const char *tok = NULL;
    ep->authing = 0;
    int ok = 0;
    if (resp->status == 200 &&
        cml_parse_token(&a, resp->body, resp->body_len, &tok, why, sizeof why) == 0) {
        drop_token(ep);
        ep->token = strdup(tok);
        ok = ep->token != NULL;
        if (!ok)
            lcm_error_set(&e, LCM_E_NOMEM, 1, 0, "cml: out of memory");
    } else if (resp->status == 200) {
        char m[200];
        snprintf(m, sizeof m, "cml: authenticate at %s: %s", ep->base, why);
        lcm_error_set(&e, LCM_E_PROTO, 0, 200, m);
    } else if (resp->status == 401 || resp->status == 403) {
        char desc[100], m[240];
        cml_parse_error_text(resp->body, resp->body_len, desc, sizeof desc);
        snprintf(m, sizeof m, "cml: authentication refused by %s (HTTP %d%s%s); check the "
                 "credentials of set %s", ep->base, resp->status, desc[0] ? ": " : "", desc,
                 ep->cred);
        lcm_error_set(&e, LCM_E_AUTH, 0, resp->status, m);
    } else {
        struct cml_op fake = { .name = "authenticate", .method = "POST",
                               .path = (char *)"/authenticate" };
        cml_http_error(&fake, resp, LCM_E_AUTH, &e);
    }
    if (a.head && tok)
        memset((char *)tok, 0, strlen(tok));
    cml_arena_free(&a);
    p->hs->metric_inc(p->h, "cml_auth_total", ok ? "result=\"ok\"" : "result=\"error\"", 1);

    /* Detach the queue first: finishing an op may start new ops on this endpoint. */
    struct cml_op *w = ep->waiters;
    ep->waiters = ep->wtail = NULL;
    while (w) {
        struct cml_op *next = w->wnext;
        w->wnext = NULL;
        w->in_auth_wait = 0;
        if (ok) {
            struct lcm_error se;
            if (op_send(w, &se) != 0)
                cml_op_finish(w, &se, NULL);
        } else {
            cml_op_finish(w, &e, NULL);
        }
        w = next;
    }
}

static int op_send(struct cml_op *op, struct lcm_error *err)
{
    struct cml_plugin *p = op->p;
    struct cml_ep *ep = op->ep;
    if (op->needs_auth && !ep->token) {
        if (!ep->authing && auth_start(ep, op, err) != 0)
            return err->code;
        op->wnext = NULL;
        if (ep->wtail)
            ep->wtail->wnext = op;
        else
            ep->waiters = op;
        ep->wtail = op;
        op->in_auth_wait = 1;
        return 0;
    }
    long timeout = op->timeout_ms > 0 ? op->timeout_ms : p->cfg.timeout_ms;
    int retries = op->idempotent ? p->cfg.max_retries : 0;
    if (op->deadline_ms) {
        uint64_t now = p->hs->monotonic_ms(p->h);
        if (now >= op->deadline_ms) {
            char m[160];
            snprintf(m, sizeof m, "cml %s: deadline passed before %s %s", op->name, op->method,
                     op->path);
            lcm_error_set(err, LCM_E_TIMEOUT, 1, 0, m);
            return LCM_E_TIMEOUT;
        }
        /* The host retries inside one request: share the time left between the attempts so
         * that all of them end by the deadline (fewer attempts when it is short). */
        lcm_pk_share_deadline((long)(op->deadline_ms - now), &timeout, &retries);
    }
    char url[1024];
    int n = snprintf(url, sizeof url, "%s/api/v0%s", ep->base, op->path);
    if (n < 0 || (size_t)n >= sizeof url) {
        lcm_error_set(err, LCM_E_INVAL, 0, 0, "cml: URL too long");
        return LCM_E_INVAL;
    }
    const char *hdrs[2] = { "Accept: application/json", NULL };
    char ct[80];
    size_t nh = 1;
    if (op->ctype) {
        snprintf(ct, sizeof ct, "Content-Type: %s", op->ctype);
        hdrs[nh++] = ct;
    }
    free(op->token_used);
    op->token_used = NULL;
    if (op->needs_auth && !(op->token_used = strdup(ep->token))) {
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "cml: out of memory");
        return LCM_E_NOMEM;
    }
    char label[48];
    snprintf(label, sizeof label, "%s", op->name);
    struct lcm_http_req req = {
        .size = sizeof req, .method = op->method, .url = url, .headers = hdrs, .nheaders = nh,
        .body = op->body, .body_len = op->body_len, .timeout_ms = timeout,
        .connect_timeout_ms = p->cfg.connect_timeout_ms,
        .max_retries = retries, .idempotent = op->idempotent,
        .insecure = !p->cfg.verify_tls || op->insecure, .ca_file = p->cfg.ca_file,
        .auth = op->needs_auth ? LCM_HTTP_AUTH_BEARER : LCM_HTTP_AUTH_NONE,
        .bearer = op->token_used, .metric_label = label,
        .max_response_bytes = 32u * 1024 * 1024,
    };
    int rc = p->hs->http_request(p->h, &req, op_http_done, op, &op->http_id);
    if (rc != 0) {
        char m[160];
        snprintf(m, sizeof m, "cml %s: cannot send %s %s", op->name, op->method, op->path);
        lcm_error_set(err, rc, rc != LCM_E_SHUTDOWN && rc != LCM_E_INVAL, 0, m);
        return rc;
    }
    op->in_http = 1;
    return 0;
}

int cml_op_request(struct cml_op *op, const char *method, const char *path, const char *body,
                   size_t body_len, const char *ctype, int needs_auth, int idempotent,
                   cml_step_fn step, struct lcm_error *err)
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
    if (body && body_len) {
        op->body = malloc(body_len);
        if (op->body) {
            memcpy(op->body, body, body_len);
            op->body_len = body_len;
        }
    }
    if (!op->path || (body && body_len && !op->body)) {
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "cml: out of memory");
        return LCM_E_NOMEM;
    }
    op->ctype = ctype;
    op->needs_auth = needs_auth;
    op->idempotent = idempotent;
    op->step = step;
    op->reauthed = 0;
    return op_send(op, err);
}

/* ---- cancel / stop / free ---- */

static void cancel_fire(void *ud)
{
    struct cml_op *op = ud;
    op->timer_armed = 0;
    cml_op_fail(op, LCM_E_CANCELLED, 0, 0, "cml %s: cancelled", op->name);
}

void cml_client_cancel(struct cml_plugin *p, uint64_t op_id)
{
    struct cml_op *op;
    for (op = p->ops; op; op = op->next)
        if (op->op_id == op_id && op_id != 0)
            break;
    if (!op || op->timer_armed)
        return;
    if (op->in_http) {
        p->hs->http_cancel(p->h, op->http_id);   /* the answer arrives with cancelled=1 */
        return;
    }
    if (op->in_auth_wait) {
        waiters_remove(op->ep, op);
        /* done must not run from inside cancel(): finish from the loop. */
        if (p->hs->timer_add(p->h, 0, cancel_fire, op, &op->timer_id) == 0)
            op->timer_armed = 1;
    }
}

void cml_client_stop(struct cml_plugin *p)
{
    p->stopped = 1;
    /* The host drops our timers and HTTP callbacks after stop(): nothing below is touched
     * again, so the ops are completed and freed here and the auth queues forgotten. */
    for (struct cml_ep *ep = p->eps; ep; ep = ep->next) {
        ep->waiters = ep->wtail = NULL;
        ep->authing = 0;
    }
    while (p->ops) {
        struct cml_op *op = p->ops;
        op->in_auth_wait = 0;
        op->in_http = 0;
        op->timer_armed = 0;
        cml_op_fail(op, LCM_E_CANCELLED, 0, 0, "cml %s: cancelled (plugin stopping)",
                    op->name);
    }
}

void cml_client_free(struct cml_plugin *p)
{
    while (p->ops) {
        struct cml_op *op = p->ops;
        op_unlink(op);
        op_free(op);
    }
    while (p->eps) {
        struct cml_ep *ep = p->eps;
        p->eps = ep->next;
        ep_free(ep);
    }
    p->neps = 0;
}
