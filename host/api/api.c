/* The API object and the helpers every resource file uses: problem+json mapping of domain
 * and store errors, strict body parsing, ETag/If-Match, deferred commits through the event
 * store, controller requests on lcm:requests, and cursor-paginated lists. */
#include "api_int.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <openssl/rand.h>

#include "app.h"
#include "core/auth.h"
#include "core/httpd.h"
#include "core/log.h"
#include "core/redis.h"
#include "domain/rfc3339.h"
#include "store/store.h"

/* ---- api object ---- */

struct lcm_api *lcm_api_new(struct lcm_app *app, char *err, size_t errlen)
{
    if (!app || !app->httpd || !app->store || !app->redis) {
        snprintf(err, errlen, "lcm_api_new: httpd, store and redis are required");
        return NULL;
    }
    struct lcm_api *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->app = app;
    a->sub = -1;
    lcm_time_params_default(&a->tp);
    if (api_sessions_init(a) || api_templates_routes(a) || api_definitions_routes(a) ||
        api_workers_routes(a) || api_sessions_routes(a) || api_labs_routes(a) ||
        api_openapi_routes(a)) {
        snprintf(err, errlen, "cannot register the API routes (out of memory)");
        api_sessions_free(a);
        free(a);
        return NULL;
    }
    return a;
}

void lcm_api_free(struct lcm_api *a)
{
    if (!a)
        return;
    /* Operations still waiting for Redis: their callbacks run later (when the connection
     * is freed) and must neither answer a request nor touch the api. */
    for (struct api_op *op = a->ops, *n; op; op = n) {
        n = op->next;
        op->api = NULL;
        op->req = NULL;
        op->prev = op->next = NULL;
        if (op->timer) {
            event_free(op->timer);
            op->timer = NULL;
            /* a pending retry timer has no callback to come: free now */
            if (op->ctx_free)
                op->ctx_free(op->ctx);
            free(op);
        }
    }
    api_sessions_free(a);
    free(a);
}

/* ---- ops ---- */

/* The server answered the request itself (shutdown grace): the op lives on until its store
 * callback, which then finds no request to answer. */
static void op_abandoned(struct lcm_req *r, void *ud)
{
    struct api_op *op = ud;
    (void)r;
    op->req = NULL;
}

struct api_op *api_op_new(struct lcm_api *a, struct lcm_req *r, const struct lcm_kind *k,
                          const char *id, int ok_status)
{
    struct api_op *op = calloc(1, sizeof(*op));
    if (!op) {
        lcm_reply_problem(r, 503, "internal", "Service Unavailable", "out of memory", NULL);
        return NULL;
    }
    op->api = a;
    op->req = r;
    op->kind = k;
    snprintf(op->id, sizeof(op->id), "%s", id ? id : "");
    op->ok_status = ok_status;
    lcm_req_on_abandon(r, op_abandoned, op);
    op->next = a->ops;
    if (a->ops)
        a->ops->prev = op;
    a->ops = op;
    return op;
}

void api_op_free(struct api_op *op)
{
    if (!op)
        return;
    if (op->api) {
        if (op->prev)
            op->prev->next = op->next;
        else
            op->api->ops = op->next;
        if (op->next)
            op->next->prev = op->prev;
    }
    if (op->timer)
        event_free(op->timer);
    if (op->ctx_free)
        op->ctx_free(op->ctx);
    free(op);
}

void api_op_default_done(struct api_op *op, const struct lcm_store_result *res)
{
    if (res->status == LCM_STORE_OK) {
        const void *st = lcm_store_get(op->api->app->store, op->kind->name, op->id);
        if (st) {
            char loc[256] = "";
            if (op->location)
                snprintf(loc, sizeof(loc), "%s/%s", op->location, op->id);
            api_reply_agg(op->req, op->ok_status, op->kind, st, op->location ? loc : NULL);
        } else {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "id", op->id);
            lcm_reply_json(op->req, op->ok_status, o);
        }
    } else {
        api_problem_store(op->req, res->status, op->kind ? op->kind->name : NULL, op->id,
                          res->current_version, res->holder);
    }
}

static void commit_done(const struct lcm_store_result *res, void *ud)
{
    struct api_op *op = ud;
    if (!op->req || !op->api) {   /* detached at shutdown */
        api_op_free(op);
        return;
    }
    if (res->status != LCM_STORE_OK && res->status != LCM_STORE_ECONFLICT &&
        res->status != LCM_STORE_EDUPLICATE)
        lcm_warn("api", "req=%s msg=\"store write failed\" kind=%s id=%s err=\"%s\" detail=\"%s\"",
                 lcm_req_id(op->req), op->kind ? op->kind->name : "-", op->id,
                 lcm_store_strerror(res->status), res->message);
    api_done_fn fn = op->done ? op->done : api_op_default_done;
    fn(op, res);
    /* a done that re-armed a retry keeps the op */
    if (!op->timer)
        api_op_free(op);
}

int api_commit(struct api_op *op, const struct api_change *ch, size_t n)
{
    struct lcm_store_change *sc = calloc(n, sizeof(*sc));
    struct lcm_store_event **sev = calloc(n, sizeof(*sev));
    char ***texts = calloc(n, sizeof(*texts));
    char (**ats)[LCM_TIME_BUFSZ] = calloc(n, sizeof(*ats));
    int rc = -1, oom = !sc || !sev || !texts || !ats;
    for (size_t i = 0; !oom && i < n; i++) {
        size_t ne = ch[i].evs->n;
        sev[i] = calloc(ne ? ne : 1, sizeof(**sev));
        texts[i] = calloc(ne ? ne : 1, sizeof(**texts));
        ats[i] = calloc(ne ? ne : 1, sizeof(**ats));
        if (!sev[i] || !texts[i] || !ats[i]) {
            oom = 1;
            break;
        }
        for (size_t e = 0; e < ne; e++) {
            const struct lcm_new_event *ev = &ch[i].evs->v[e];
            texts[i][e] = cJSON_PrintUnformatted(ev->data);
            if (!texts[i][e] || lcm_rfc3339_format(ev->at, ats[i][e], LCM_TIME_BUFSZ) < 0) {
                oom = 1;
                break;
            }
            sev[i][e].type = ev->type;
            sev[i][e].data = texts[i][e];
            sev[i][e].at = ats[i][e];
            sev[i][e].by = ev->by;
        }
        sc[i].kind = ch[i].kind;
        sc[i].id = ch[i].id;
        sc[i].expected_version = ch[i].expected;
        sc[i].events = sev[i];
        sc[i].n_events = ne;
        sc[i].uniques = ch[i].uniques;
        sc[i].n_uniques = ch[i].n_uniques;
    }
    struct lcm_req *r = op->req;
    if (oom) {
        lcm_reply_problem(r, 503, "internal", "Service Unavailable", "out of memory", NULL);
        api_op_free(op);
    } else {
        char err[300] = "";
        int st = lcm_store_commit(op->api->app->store, sc, n, NULL, commit_done, op, err,
                                  sizeof(err));
        if (st == 0) {
            rc = 0;
        } else {
            if (st != LCM_STORE_ECONFLICT)
                lcm_warn("api", "req=%s msg=\"commit refused\" kind=%s id=%s err=\"%s\"",
                         lcm_req_id(r), ch[0].kind->name, ch[0].id, err);
            const void *cur = st == LCM_STORE_ECONFLICT
                                  ? lcm_store_get(op->api->app->store, ch[0].kind->name, ch[0].id)
                                  : NULL;
            api_problem_store(r, st, ch[0].kind->name, ch[0].id,
                              cur ? (int64_t)ch[0].kind->version(cur) : -1, NULL);
            api_op_free(op);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (texts && texts[i])
            for (size_t e = 0; e < ch[i].evs->n; e++)
                free(texts[i][e]);
        if (texts)
            free(texts[i]);
        if (sev)
            free(sev[i]);
        if (ats)
            free(ats[i]);
    }
    free(texts);
    free(sev);
    free(ats);
    free(sc);
    return rc;
}

/* ---- controller requests ---- */

struct req_ctx {
    char type[48];
    cJSON *doc;
};

static void req_ctx_free(void *p)
{
    struct req_ctx *c = p;
    cJSON_Delete(c->doc);
    free(c);
}

static void request_done(struct lcm_redis *rd, redisReply *reply, void *ud)
{
    (void)rd;
    struct api_op *op = ud;
    if (!op->req || !op->api) {
        api_op_free(op);
        return;
    }
    struct req_ctx *c = op->ctx;
    if (!reply || reply->type != REDIS_REPLY_STRING) {
        lcm_reply_header(op->req, "Retry-After", "1");
        lcm_reply_problem(op->req, 503, "store-unavailable", "Service Unavailable",
                          reply && reply->type == REDIS_REPLY_ERROR ? reply->str
                                                                    : "Redis did not answer",
                          NULL);
    } else {
        cJSON_AddStringToObject(c->doc, "request_id", reply->str);
        lcm_info("api", "req=%s msg=\"controller request recorded\" type=%s entry=%s",
                 lcm_req_id(op->req), c->type, reply->str);
        cJSON *d = c->doc;
        c->doc = NULL;
        lcm_reply_json(op->req, 202, d);
    }
    api_op_free(op);
}

void api_request(struct lcm_api *a, struct lcm_req *r, const char *type, const char *const *kv,
                 size_t nkv)
{
    char at[LCM_TIME_BUFSZ];
    lcm_rfc3339_format(api_now(), at, sizeof(at));
    const char *by = api_by(r);
    struct api_op *op = api_op_new(a, r, NULL, NULL, 202);
    if (!op)
        return;
    struct req_ctx *c = calloc(1, sizeof(*c));
    cJSON *doc = cJSON_CreateObject();
    if (!c || !doc) {
        free(c);
        cJSON_Delete(doc);
        lcm_reply_problem(r, 503, "internal", "Service Unavailable", "out of memory", NULL);
        api_op_free(op);
        return;
    }
    snprintf(c->type, sizeof(c->type), "%s", type);
    c->doc = doc;
    op->ctx = c;
    op->ctx_free = req_ctx_free;
    cJSON_AddStringToObject(doc, "type", type);
    const char *argv[32];
    size_t argl[32];
    int argc = 0;
    argv[argc++] = "XADD";
    argv[argc++] = API_REQUESTS_STREAM;
    argv[argc++] = "MAXLEN";
    argv[argc++] = "~";
    argv[argc++] = "10000";
    argv[argc++] = "*";
    argv[argc++] = "type";
    argv[argc++] = type;
    for (size_t i = 0; i + 1 < nkv && argc < 26; i += 2) {
        argv[argc++] = kv[i];
        argv[argc++] = kv[i + 1];
        cJSON_AddStringToObject(doc, kv[i], kv[i + 1]);
    }
    argv[argc++] = "by";
    argv[argc++] = by;
    argv[argc++] = "at";
    argv[argc++] = at;
    argv[argc++] = "req";
    argv[argc++] = lcm_req_id(r);
    cJSON_AddStringToObject(doc, "by", by);
    cJSON_AddStringToObject(doc, "requested_at", at);
    for (int i = 0; i < argc; i++)
        argl[i] = strlen(argv[i]);
    if (lcm_redis_commandv(a->app->redis, request_done, op, argc, argv, argl) < 0) {
        lcm_reply_header(r, "Retry-After", "1");
        lcm_reply_problem(r, 503, "store-unavailable", "Service Unavailable",
                          "Redis is not connected", NULL);
        api_op_free(op);
    }
}

/* ---- replies ---- */

int api_ready(struct lcm_api *a, struct lcm_req *r)
{
    if (lcm_store_loaded(a->app->store))
        return 0;
    lcm_reply_header(r, "Retry-After", "1");
    lcm_reply_problem(r, 503, "store-unavailable", "Service Unavailable",
                      "the read models are still loading (or Redis is unreachable)", NULL);
    return -1;
}

void api_problem_derr(struct lcm_req *r, const struct lcm_derr *e)
{
    const char *field = e->field[0] ? e->field : NULL;
    const char *msg = e->message[0] ? e->message : lcm_derr_code_name(e->code);
    switch (e->code) {
    case LCM_DERR_INVALID:
        lcm_reply_problem(r, 422, "validation", "Validation failed", msg, field);
        break;
    case LCM_DERR_CONFLICT:
        lcm_reply_problem(r, 409, "invalid-state", "Not allowed in the current state", msg, field);
        break;
    case LCM_DERR_NOT_FOUND:
        if (!field || !strcmp(field, "id"))
            lcm_reply_problem(r, 404, "not-found", "Not Found", msg, field);
        else
            lcm_reply_problem(r, 422, "unknown-reference", "Unknown reference", msg, field);
        break;
    case LCM_DERR_EXHAUSTED:
        lcm_reply_problem(r, 409, "exhausted", "Capacity exhausted", msg, field);
        break;
    default:
        lcm_reply_problem(r, 503, "internal", "Service Unavailable", msg, NULL);
        break;
    }
}

void api_problem_store(struct lcm_req *r, int status, const char *kind, const char *id,
                       int64_t current, const char *holder)
{
    char detail[400];
    switch (status) {
    case LCM_STORE_ECONFLICT:
        if (current >= 0)
            snprintf(detail, sizeof(detail),
                     "the %s %s was changed by another writer (now at revision %" PRId64
                     "); read it again and retry", kind ? kind : "aggregate", id ? id : "", current);
        else
            snprintf(detail, sizeof(detail),
                     "the %s %s was changed by another writer; read it again and retry",
                     kind ? kind : "aggregate", id ? id : "");
        lcm_reply_problem(r, 409, "version-conflict", "Conflicting write", detail, NULL);
        break;
    case LCM_STORE_EDUPLICATE:
        snprintf(detail, sizeof(detail), "a unique value is already held: %s",
                 holder && *holder ? holder : "(unknown)");
        lcm_reply_problem(r, 409, "duplicate", "Duplicate", detail, NULL);
        break;
    case LCM_STORE_EUNAVAILABLE:
        lcm_reply_header(r, "Retry-After", "1");
        lcm_reply_problem(r, 503, "store-unavailable", "Service Unavailable",
                          "Redis is not reachable; the write may or may not have happened", NULL);
        break;
    default:
        lcm_reply_problem(r, 500, "internal", "Internal Server Error", lcm_store_strerror(status),
                          NULL);
        break;
    }
}

cJSON *api_agg_json(const struct lcm_kind *k, const void *state)
{
    cJSON *o = k->to_json(state);
    if (o)
        cJSON_AddNumberToObject(o, "revision", (double)k->version(state));
    return o;
}

void api_reply_agg(struct lcm_req *r, int status, const struct lcm_kind *k, const void *state,
                   const char *location)
{
    char etag[32];
    snprintf(etag, sizeof(etag), "\"%" PRIu64 "\"", k->version(state));
    lcm_reply_header(r, "ETag", etag);
    if (location)
        lcm_reply_header(r, "Location", location);
    lcm_reply_json(r, status, api_agg_json(k, state));
}

/* ---- inputs ---- */

static int json_media(const char *ct)
{
    while (*ct == ' ')
        ct++;
    size_t n = strcspn(ct, "; ");
    if (n == 16 && !strncasecmp(ct, "application/json", 16))
        return 1;
    /* application/merge-patch+json, application/problem+json, … */
    return n > 17 && !strncasecmp(ct, "application/", 12) && !strncasecmp(ct + n - 5, "+json", 5);
}

cJSON *api_body(struct lcm_req *r, const struct api_schema *s, int required)
{
    size_t len = 0;
    const char *body = lcm_req_body(r, &len);
    const char *ct = lcm_req_header(r, "Content-Type");
    if (body && len && ct && !json_media(ct)) {
        lcm_reply_problem(r, 415, "unsupported-media-type", "Unsupported Media Type",
                          "send the body as application/json", NULL);
        return NULL;
    }
    size_t ws = 0;
    while (body && ws < len && body[ws] && strchr(" \t\r\n", body[ws]))
        ws++;
    if (!body || ws == len) {
        if (required) {
            lcm_reply_problem(r, 400, "malformed-json", "Malformed request body",
                              "a JSON object body is required", NULL);
            return NULL;
        }
        return cJSON_CreateObject();
    }
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    int trailing = 0;
    if (o && end) {
        for (const char *p = end; p < body + len; p++)
            if (!*p || !strchr(" \t\r\n", *p))
                trailing = 1;
    }
    if (!o || trailing) {
        char detail[128];
        if (!o && end && end >= body && end <= body + len)
            snprintf(detail, sizeof(detail), "the body is not valid JSON (near byte %zu)",
                     (size_t)(end - body));
        else
            snprintf(detail, sizeof(detail), "the body is not one valid JSON value");
        cJSON_Delete(o);
        lcm_reply_problem(r, 400, "malformed-json", "Malformed request body", detail, NULL);
        return NULL;
    }
    if (!o) {
        lcm_reply_problem(r, 400, "malformed-json", "Malformed request body", "invalid JSON", NULL);
        return NULL;
    }
    struct lcm_derr e;
    int rc = lcm_api_body_check(o, s, &e);
    if (rc == API_BODY_UNKNOWN) {
        lcm_reply_problem(r, 422, "unknown-field", "Unknown field", e.message, e.field);
        cJSON_Delete(o);
        return NULL;
    }
    if (rc) {
        lcm_reply_problem(r, 422, "validation", "Validation failed", e.message,
                          e.field[0] ? e.field : NULL);
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

const void *api_get(struct lcm_api *a, struct lcm_req *r, const struct lcm_kind *k,
                    const char *id)
{
    const void *st = id ? lcm_store_get(a->app->store, k->name, id) : NULL;
    if (!st) {
        char detail[200];
        snprintf(detail, sizeof(detail), "no %s with id '%.128s'", k->name, id ? id : "");
        lcm_reply_problem(r, 404, "not-found", "Not Found", detail, NULL);
    }
    return st;
}

int api_if_match(struct lcm_req *r, uint64_t version)
{
    const char *h = lcm_req_header(r, "If-Match");
    if (!h)
        return 0;
    const char *p = h;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (!*p)
            break;
        if (*p == '*')
            return 0;
        if (!strncmp(p, "W/", 2))
            p += 2;
        if (*p == '"') {
            char *end;
            unsigned long long v = strtoull(p + 1, &end, 10);
            if (end != p + 1 && *end == '"' && v == version)
                return 0;
        }
        p += strcspn(p, ",");
    }
    char detail[160], etag[32];
    snprintf(detail, sizeof(detail), "If-Match does not match the current ETag \"%" PRIu64 "\"",
             version);
    snprintf(etag, sizeof(etag), "\"%" PRIu64 "\"", version);
    lcm_reply_header(r, "ETag", etag);
    lcm_reply_problem(r, 412, "precondition-failed", "Precondition Failed", detail, NULL);
    return -1;
}

int api_query_time(struct lcm_req *r, const char *name, int64_t *out)
{
    const char *v = lcm_req_query(r, name);
    if (!v)
        return 0;
    if (lcm_rfc3339_parse(v, out) < 0) {
        char detail[128];
        snprintf(detail, sizeof(detail), "%s must be an RFC 3339 time", name);
        lcm_reply_problem(r, 400, "invalid-query", "Invalid query parameter", detail, name);
        return -1;
    }
    return 1;
}

int api_query_bool(struct lcm_req *r, const char *name, int def)
{
    const char *v = lcm_req_query(r, name);
    if (!v)
        return def;
    if (!strcmp(v, "true") || !strcmp(v, "1"))
        return 1;
    if (!strcmp(v, "false") || !strcmp(v, "0"))
        return 0;
    char detail[128];
    snprintf(detail, sizeof(detail), "%s must be true or false", name);
    lcm_reply_problem(r, 400, "invalid-query", "Invalid query parameter", detail, name);
    return -1;
}

const char *api_by(struct lcm_req *r)
{
    const char *s = lcm_req_subject(r);
    return s && *s ? s : "anonymous";
}

int64_t api_now(void) { return (int64_t)time(NULL); }

void api_new_id(const char *prefix, char *out, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long ms = (unsigned long long)ts.tv_sec * 1000ULL + (unsigned long long)ts.tv_nsec / 1000000ULL;
    unsigned char rnd[4];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        unsigned v = (unsigned)rand();
        memcpy(rnd, &v, sizeof(rnd));
    }
    snprintf(out, cap, "%s%012llx%02x%02x%02x%02x", prefix, ms & 0xffffffffffffULL, rnd[0], rnd[1],
             rnd[2], rnd[3]);
}

void api_hash_id(const char *prefix, const char *a, const char *b, size_t n, char *out,
                 size_t cap)
{
    size_t la = strlen(a), lb = b ? strlen(b) : 0;
    char *buf = malloc(la + lb + 2);
    char hex[65] = "";
    if (buf) {
        memcpy(buf, a, la);
        buf[la] = '\n';
        if (b)
            memcpy(buf + la + 1, b, lb);
        lcm_auth_sha256_hex(buf, la + 1 + lb, hex);
        free(buf);
    }
    if (n > 64)
        n = 64;
    snprintf(out, cap, "%s%.*s", prefix, (int)n, hex);
}

/* ---- lists ---- */

struct list_item {
    int64_t created;
    const char *id;
    const void *state;
};

struct list_ctx {
    struct list_item *v;
    size_t n, cap;
    int oom;
    api_filter_fn keep;
    void *ud;
    api_created_fn created;
    int64_t after_t;
    const char *after_id;          /* NULL: from the start */
    size_t total;
};

static int cmp_item(int64_t ta, const char *ia, int64_t tb, const char *ib)
{
    if (ta != tb)
        return ta < tb ? -1 : 1;
    return strcmp(ia, ib);
}

static int list_sort(const void *a, const void *b)
{
    const struct list_item *x = a, *y = b;
    return cmp_item(x->created, x->id, y->created, y->id);
}

static int list_each(const char *id, const void *state, void *ud)
{
    struct list_ctx *c = ud;
    if (c->keep && !c->keep(state, c->ud))
        return 0;
    c->total++;
    int64_t t = c->created(state);
    if (c->after_id && cmp_item(t, id, c->after_t, c->after_id) <= 0)
        return 0;
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 64;
        struct list_item *nv = realloc(c->v, nc * sizeof(*nv));
        if (!nv) {
            c->oom = 1;
            return 1;
        }
        c->v = nv;
        c->cap = nc;
    }
    c->v[c->n++] = (struct list_item){ t, id, state };
    return 0;
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void b64_encode(const unsigned char *in, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = b64url[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = b64url[v & 63];
    }
    out[o] = 0;
}

static int b64_decode(const char *in, unsigned char *out, size_t cap, size_t *outlen)
{
    size_t n = strlen(in), o = 0;
    unsigned v = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = strchr(b64url, in[i]);
        if (!p || !in[i])
            return -1;
        v = (v << 6) | (unsigned)(p - b64url);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (unsigned char)((v >> bits) & 0xff);
        }
    }
    *outlen = o;
    return 0;
}

int api_csv_has(const char *q, const char *s)
{
    if (!q)
        return 1;
    if (!s)
        return 0;
    size_t ls = strlen(s);
    for (const char *p = q; *p;) {
        size_t n = strcspn(p, ",");
        if (n == ls && !strncmp(p, s, n))
            return 1;
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

void api_list(struct lcm_api *a, struct lcm_req *r, const struct lcm_kind *k,
              api_filter_fn keep, void *ud, api_created_fn created)
{
    long limit = API_LIST_DEFAULT;
    const char *ls = lcm_req_query(r, "limit");
    if (ls) {
        char *end;
        limit = strtol(ls, &end, 10);
        if (!*ls || *end || limit < 1 || limit > API_LIST_MAX) {
            lcm_reply_problem(r, 400, "invalid-query", "Invalid query parameter",
                              "limit must be an integer from 1 to 500", "limit");
            return;
        }
    }
    struct list_ctx c = { .keep = keep, .ud = ud, .created = created };
    char curbuf[300];
    const char *cs = lcm_req_query(r, "cursor");
    if (cs) {
        unsigned char raw[sizeof(curbuf)];
        size_t n = 0;
        char *dot = NULL, *end = NULL;
        if (strlen(cs) < 380 && b64_decode(cs, raw, sizeof(raw) - 1, &n) == 0) {
            raw[n] = 0;
            memcpy(curbuf, raw, n + 1);
            dot = strchr(curbuf, '.');
        }
        if (dot && curbuf[0] == 'c') {
            *dot = 0;
            c.after_t = strtoll(curbuf + 1, &end, 10);
        }
        if (!dot || !end || *end || !dot[1] || strlen(dot + 1) != n - (size_t)(dot + 1 - curbuf)) {
            lcm_reply_problem(r, 400, "invalid-cursor", "Invalid cursor",
                              "cursor is not one this server returned", "cursor");
            return;
        }
        c.after_id = dot + 1;
    }
    lcm_store_each(a->app->store, k->name, list_each, &c);
    if (c.oom) {
        free(c.v);
        lcm_reply_problem(r, 503, "internal", "Service Unavailable", "out of memory", NULL);
        return;
    }
    if (c.n)
        qsort(c.v, c.n, sizeof(*c.v), list_sort);
    cJSON *o = cJSON_CreateObject();
    cJSON *items = cJSON_AddArrayToObject(o, "items");
    size_t shown = c.n < (size_t)limit ? c.n : (size_t)limit;
    for (size_t i = 0; i < shown; i++)
        cJSON_AddItemToArray(items, api_agg_json(k, c.v[i].state));
    if (c.n > shown) {
        const struct list_item *last = &c.v[shown - 1];
        char raw[300], enc[420];
        int rn = snprintf(raw, sizeof(raw), "c%" PRId64 ".%s", last->created, last->id);
        b64_encode((const unsigned char *)raw, (size_t)(rn < (int)sizeof(raw) ? rn : (int)sizeof(raw) - 1), enc,
                   sizeof(enc));
        cJSON_AddStringToObject(o, "next_cursor", enc);
    } else {
        cJSON_AddNullToObject(o, "next_cursor");
    }
    cJSON_AddNumberToObject(o, "total", (double)c.total);
    free(c.v);
    lcm_reply_json(r, 200, o);
}

/* ---- merge patch ---- */

void api_merge_patch(cJSON *target, const cJSON *patch)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, patch) {
        if (!m->string)
            continue;
        if (cJSON_IsNull(m)) {
            cJSON_DeleteItemFromObjectCaseSensitive(target, m->string);
            continue;
        }
        cJSON *cur = cJSON_GetObjectItemCaseSensitive(target, m->string);
        if (cJSON_IsObject(m) && cJSON_IsObject(cur)) {
            api_merge_patch(cur, m);
            continue;
        }
        cJSON *copy = cJSON_Duplicate(m, 1);
        if (!copy)
            continue;
        if (cur)
            cJSON_ReplaceItemInObjectCaseSensitive(target, m->string, copy);
        else
            cJSON_AddItemToObject(target, m->string, copy);
    }
}
