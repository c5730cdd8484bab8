/* Inbound HTTP on evhttp. libevent's defaults are unlimited, so every limit is set
 * explicitly (body, headers, timeouts). Each request gets an lcm_req that lives until the
 * reply is sent; handlers may reply from a later callback. */
#include "httpd.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "log.h"
#include "metrics.h"

#define MAX_SEGS 16
#define MAX_PARAMS 4

struct route {
    char *method, *pattern, *perm;
    char *segs[MAX_SEGS];
    int nsegs;
    unsigned flags;
    lcm_route_fn fn;
    void *ud;
};

struct lcm_req {
    struct lcm_req *prev, *next;
    struct lcm_httpd *h;
    struct evhttp_request *ereq;
    const struct route *route;
    char id[40];
    char *path;                     /* decoded path */
    const char *method;
    struct evkeyvalq query;
    int query_parsed;
    char *pnames[MAX_PARAMS], *pvals[MAX_PARAMS];
    int nparams;
    char *body;
    size_t body_len;
    int body_read;
    char *subject, *role;
    struct timespec start;
    int streaming;
    lcm_req_close_fn on_close;
    void *close_ud;
    lcm_req_abandon_fn on_abandon;
    void *abandon_ud;
};

struct lcm_httpd {
    struct event_base *base;
    struct lcm_metrics *metrics;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    int port;
    struct route *routes;
    size_t nroutes, caproutes;
    lcm_auth_fn auth;
    void *auth_ud;
    lcm_route_fn fallback;
    void *fallback_ud;
    struct lcm_req head;            /* in-flight requests */
    size_t inflight;
    unsigned long long seq;
    unsigned idprefix;
    int shutting_down;
    void (*on_drained)(void *);
    void *drained_ud;
    struct event *grace_ev;
};

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

static double since_s(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* ---- routing ---- */

static int split_path(char *path, char **segs, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *s = strtok_r(path, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
        if (n == max)
            return -1;
        segs[n++] = s;
    }
    return n;
}

int lcm_httpd_route(struct lcm_httpd *h, const char *method, const char *pattern,
                    unsigned flags, const char *perm, lcm_route_fn fn, void *ud)
{
    if (h->nroutes == h->caproutes) {
        size_t nc = h->caproutes ? h->caproutes * 2 : 64;
        struct route *nr = realloc(h->routes, nc * sizeof(*nr));
        if (!nr)
            return -1;
        h->routes = nr;
        h->caproutes = nc;
    }
    struct route *r = &h->routes[h->nroutes];
    memset(r, 0, sizeof(*r));
    r->method = strdup(method);
    r->pattern = strdup(pattern);
    r->perm = strdup(perm ? perm : "");
    char *tmp = strdup(pattern);
    if (!r->method || !r->pattern || !r->perm || !tmp)
        goto fail;
    char *segs[MAX_SEGS];
    int n = split_path(tmp, segs, MAX_SEGS);
    if (n < 0)
        goto fail;
    for (int i = 0; i < n; i++) {
        if (!(r->segs[i] = strdup(segs[i])))
            goto fail;
        r->nsegs++;
    }
    free(tmp);
    r->flags = flags;
    r->fn = fn;
    r->ud = ud;
    h->nroutes++;
    return 0;
fail:
    free(tmp);
    free(r->method);
    free(r->pattern);
    free(r->perm);
    for (int i = 0; i < r->nsegs; i++)
        free(r->segs[i]);
    return -1;
}

size_t lcm_httpd_routes(const struct lcm_httpd *h, struct lcm_route_info *out, size_t cap)
{
    for (size_t i = 0; i < h->nroutes && i < cap; i++) {
        out[i].method = h->routes[i].method;
        out[i].pattern = h->routes[i].pattern;
        out[i].perm = h->routes[i].perm;
        out[i].flags = h->routes[i].flags;
    }
    return h->nroutes;
}

/* Finds the route for method+path; sets *path_matched when some route has the path but not
 * the method (→ 405). Literal segments win over {params} at the same position. */
static const struct route *match(struct lcm_httpd *h, struct lcm_req *req, const char *method,
                                 char **segs, int nsegs, int *path_matched)
{
    const struct route *best = NULL;
    int best_literals = -1;
    *path_matched = 0;
    for (size_t i = 0; i < h->nroutes; i++) {
        const struct route *r = &h->routes[i];
        if (r->nsegs != nsegs)
            continue;
        int ok = 1, literals = 0;
        for (int s = 0; s < nsegs && ok; s++) {
            if (r->segs[s][0] == '{')
                continue;
            if (strcmp(r->segs[s], segs[s]) != 0)
                ok = 0;
            else
                literals++;
        }
        if (!ok)
            continue;
        int mok = strcmp(r->method, method) == 0 ||
                  (strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0);
        if (!mok) {
            *path_matched = 1;
            continue;
        }
        if (literals > best_literals) {
            best = r;
            best_literals = literals;
        }
    }
    if (best) {
        for (int s = 0; s < nsegs && req->nparams < MAX_PARAMS; s++) {
            const char *seg = best->segs[s];
            if (seg[0] != '{')
                continue;
            size_t l = strlen(seg);
            req->pnames[req->nparams] = strndup(seg + 1, l >= 2 ? l - 2 : 0);
            req->pvals[req->nparams] = evhttp_uridecode(segs[s], 0, NULL);
            if (!req->pnames[req->nparams] || !req->pvals[req->nparams]) {
                free(req->pnames[req->nparams]);
                free(req->pvals[req->nparams]);
                return NULL;
            }
            req->nparams++;
        }
    }
    return best;
}

/* ---- request lifecycle ---- */

static void req_free(struct lcm_req *r)
{
    r->prev->next = r->next;
    r->next->prev = r->prev;
    r->h->inflight--;
    free(r->path);
    if (r->query_parsed)
        evhttp_clear_headers(&r->query);
    for (int i = 0; i < r->nparams; i++) {
        free(r->pnames[i]);
        free(r->pvals[i]);
    }
    free(r->body);
    free(r->subject);
    free(r->role);
    free(r);
}

static void maybe_drained(struct lcm_httpd *h)
{
    if (h->shutting_down && h->inflight == 0 && h->on_drained) {
        void (*cb)(void *) = h->on_drained;
        h->on_drained = NULL;
        if (h->grace_ev)
            event_del(h->grace_ev);
        cb(h->drained_ud);
    }
}

static void observe(struct lcm_req *r, int status)
{
    char labels[512], route[256];
    lcm_metrics_escape(route, sizeof(route), r->route ? r->route->pattern : "unmatched");
    snprintf(labels, sizeof(labels), "route=\"%s\",method=\"%s\",code=\"%d\"", route, r->method, status);
    lcm_metrics_inc(r->h->metrics, "lcm_http_requests_total", labels, 1);
    snprintf(labels, sizeof(labels), "route=\"%s\",method=\"%s\"", route, r->method);
    lcm_metrics_observe(r->h->metrics, "lcm_http_request_duration_seconds", labels, since_s(&r->start));
    double secs = since_s(&r->start);
    enum lcm_log_level lvl = status >= 500 ? LCM_LOG_WARN : LCM_LOG_DEBUG;
    lcm_log(lvl, "http", "req=%s method=%s path=\"%s\" status=%d dur_ms=%.2f subject=%s", r->id,
            r->method, r->path ? r->path : "?", status, secs * 1e3, r->subject ? r->subject : "-");
}

static void send_and_free(struct lcm_req *r, int status, struct evbuffer *buf)
{
    observe(r, status);
    struct lcm_httpd *h = r->h;
    evhttp_send_reply(r->ereq, status, reason_phrase(status), buf);
    req_free(r);
    maybe_drained(h);
}

void lcm_reply_header(struct lcm_req *r, const char *name, const char *value)
{
    evhttp_add_header(evhttp_request_get_output_headers(r->ereq), name, value);
}

void lcm_reply(struct lcm_req *r, int status, const char *content_type, const char *body,
               size_t len)
{
    struct evbuffer *buf = evbuffer_new();
    if (content_type)
        lcm_reply_header(r, "Content-Type", content_type);
    if (buf && body && len && evhttp_request_get_command(r->ereq) != EVHTTP_REQ_HEAD)
        evbuffer_add(buf, body, len);
    send_and_free(r, status, buf);
    if (buf)
        evbuffer_free(buf);
}

void lcm_reply_json(struct lcm_req *r, int status, cJSON *json)
{
    char *s = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    if (!s) {
        lcm_reply_problem(r, 500, "internal", "Internal Server Error", "could not render the response", NULL);
        return;
    }
    lcm_reply(r, status, "application/json", s, strlen(s));
    free(s);
}

void lcm_reply_problem(struct lcm_req *r, int status, const char *type, const char *title,
                       const char *detail, const char *field)
{
    char t[128];
    snprintf(t, sizeof(t), "urn:lcm:problem:%s", type ? type : "error");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", t);
    cJSON_AddStringToObject(o, "title", title ? title : reason_phrase(status));
    cJSON_AddNumberToObject(o, "status", status);
    if (detail)
        cJSON_AddStringToObject(o, "detail", detail);
    if (field)
        cJSON_AddStringToObject(o, "field", field);
    if (r->path)
        cJSON_AddStringToObject(o, "instance", r->path);
    cJSON_AddStringToObject(o, "request_id", r->id);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    lcm_reply(r, status, "application/problem+json", s ? s : "{}", s ? strlen(s) : 2);
    free(s);
}

/* ---- streaming ---- */

static void stream_closed(struct evhttp_connection *evcon, void *arg)
{
    struct lcm_req *r = arg;
    (void)evcon;
    struct lcm_httpd *h = r->h;
    lcm_req_close_fn cb = r->on_close;
    void *ud = r->close_ud;
    /* The request was detached from the dead connection; ending it frees it. */
    evhttp_send_reply_end(r->ereq);
    observe(r, 200);
    req_free(r);
    if (cb)
        cb(NULL, ud);
    maybe_drained(h);
}

void lcm_reply_stream_start(struct lcm_req *r, int status, const char *content_type,
                            lcm_req_close_fn on_close, void *ud)
{
    r->streaming = 1;
    r->on_close = on_close;
    r->close_ud = ud;
    if (content_type)
        lcm_reply_header(r, "Content-Type", content_type);
    evhttp_send_reply_start(r->ereq, status, reason_phrase(status));
    struct evhttp_connection *evcon = evhttp_request_get_connection(r->ereq);
    if (evcon)
        evhttp_connection_set_closecb(evcon, stream_closed, r);
}

int lcm_reply_stream_write(struct lcm_req *r, const char *data, size_t len)
{
    struct evbuffer *buf = evbuffer_new();
    if (!buf)
        return -1;
    evbuffer_add(buf, data, len);
    evhttp_send_reply_chunk(r->ereq, buf);
    evbuffer_free(buf);
    return 0;
}

size_t lcm_reply_stream_pending(const struct lcm_req *r)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(r->ereq);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

void lcm_reply_stream_end(struct lcm_req *r)
{
    struct lcm_httpd *h = r->h;
    struct evhttp_connection *evcon = evhttp_request_get_connection(r->ereq);
    if (evcon)
        evhttp_connection_set_closecb(evcon, NULL, NULL);
    observe(r, 200);
    evhttp_send_reply_end(r->ereq);
    req_free(r);
    maybe_drained(h);
}

/* ---- accessors ---- */

void lcm_req_on_abandon(struct lcm_req *r, lcm_req_abandon_fn fn, void *ud)
{
    r->on_abandon = fn;
    r->abandon_ud = ud;
}

const char *lcm_req_method(const struct lcm_req *r) { return r->method; }
const char *lcm_req_path(const struct lcm_req *r) { return r->path; }
const char *lcm_req_route(const struct lcm_req *r) { return r->route ? r->route->pattern : NULL; }
const char *lcm_req_id(const struct lcm_req *r) { return r->id; }
struct lcm_httpd *lcm_req_server(const struct lcm_req *r) { return r->h; }
const char *lcm_req_subject(const struct lcm_req *r) { return r->subject; }
const char *lcm_req_role(const struct lcm_req *r) { return r->role; }

void lcm_req_set_auth(struct lcm_req *r, const char *subject, const char *role)
{
    free(r->subject);
    free(r->role);
    r->subject = subject ? strdup(subject) : NULL;
    r->role = role ? strdup(role) : NULL;
}

const char *lcm_req_param(const struct lcm_req *r, const char *name)
{
    for (int i = 0; i < r->nparams; i++)
        if (strcmp(r->pnames[i], name) == 0)
            return r->pvals[i];
    return NULL;
}

const char *lcm_req_query(const struct lcm_req *r, const char *name)
{
    struct lcm_req *m = (struct lcm_req *)r;
    if (!m->query_parsed) {
        TAILQ_INIT(&m->query);
        const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(r->ereq));
        if (q)
            evhttp_parse_query_str(q, &m->query);
        m->query_parsed = 1;
    }
    return evhttp_find_header(&m->query, name);
}

const char *lcm_req_header(const struct lcm_req *r, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(r->ereq), name);
}

const char *lcm_req_body(struct lcm_req *r, size_t *len)
{
    if (!r->body_read) {
        r->body_read = 1;
        struct evbuffer *in = evhttp_request_get_input_buffer(r->ereq);
        size_t n = evbuffer_get_length(in);
        if (n) {
            r->body = malloc(n + 1);
            if (r->body) {
                evbuffer_copyout(in, r->body, n);
                r->body[n] = 0;
                r->body_len = n;
            }
        }
    }
    if (len)
        *len = r->body_len;
    return r->body;
}

/* ---- dispatch ---- */

static const char *method_name(enum evhttp_cmd_type c)
{
    switch (c) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_PATCH: return "PATCH";
    default: return "OTHER";
    }
}

static int valid_request_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!isalnum((unsigned char)s[n]) && s[n] != '-' && s[n] != '_' && s[n] != '.')
            return 0;
    return n > 0 && n < 37;
}

static void dispatch(struct evhttp_request *ereq, void *arg)
{
    struct lcm_httpd *h = arg;
    struct lcm_req *r = calloc(1, sizeof(*r));
    if (!r) {
        evhttp_send_error(ereq, 503, "Out of memory");
        return;
    }
    r->h = h;
    r->ereq = ereq;
    clock_gettime(CLOCK_MONOTONIC, &r->start);
    r->method = method_name(evhttp_request_get_command(ereq));
    r->next = &h->head;
    r->prev = h->head.prev;
    h->head.prev->next = r;
    h->head.prev = r;
    h->inflight++;

    const char *rid = evhttp_find_header(evhttp_request_get_input_headers(ereq), "X-Request-Id");
    if (rid && valid_request_id(rid))
        snprintf(r->id, sizeof(r->id), "%s", rid);
    else
        snprintf(r->id, sizeof(r->id), "%08x-%llu", h->idprefix, ++h->seq);
    lcm_reply_header(r, "X-Request-Id", r->id);

    if (h->shutting_down) {
        lcm_reply_header(r, "Connection", "close");
        lcm_reply_problem(r, 503, "shutting-down", "Service Unavailable", "lcmd is shutting down", NULL);
        return;
    }
    const char *raw = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(ereq));
    r->path = evhttp_uridecode(raw ? raw : "/", 0, NULL);
    char *tmp = strdup(raw ? raw : "/");
    if (!r->path || !tmp) {
        free(tmp);
        lcm_reply_problem(r, 503, "internal", "Service Unavailable", "out of memory", NULL);
        return;
    }
    char *segs[MAX_SEGS];
    int nsegs = split_path(tmp, segs, MAX_SEGS);
    int path_matched = 0;
    r->route = nsegs < 0 ? NULL : match(h, r, r->method, segs, nsegs, &path_matched);
    free(tmp);
    if (!r->route) {
        if (h->fallback && (strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0) && !path_matched) {
            h->fallback(r, h->fallback_ud);
            return;
        }
        if (path_matched)
            lcm_reply_problem(r, 405, "method-not-allowed", "Method Not Allowed",
                              "this resource does not support that method", NULL);
        else
            lcm_reply_problem(r, 404, "not-found", "Not Found", "no such route", NULL);
        return;
    }
    if (!(r->route->flags & LCM_ROUTE_OPEN) && h->auth) {
        if (h->auth(r, r->route->perm, h->auth_ud) < 0)
            return;   /* replied */
    }
    r->route->fn(r, r->route->ud);
}

/* ---- server ---- */

struct lcm_httpd *lcm_httpd_new(struct event_base *base, struct lcm_metrics *metrics,
                                const struct lcm_httpd_opts *opts, char *err, size_t errlen)
{
    struct lcm_httpd *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->base = base;
    h->metrics = metrics;
    h->head.next = h->head.prev = &h->head;
    h->idprefix = (unsigned)rand();
    h->http = evhttp_new(base);
    if (!h->http) {
        snprintf(err, errlen, "evhttp_new failed");
        goto fail;
    }
    char host[256];
    const char *colon = strrchr(opts->listen, ':');
    if (!colon || (size_t)(colon - opts->listen) >= sizeof(host)) {
        snprintf(err, errlen, "listen address must be host:port: %s", opts->listen);
        goto fail;
    }
    memcpy(host, opts->listen, (size_t)(colon - opts->listen));
    host[colon - opts->listen] = 0;
    int port = atoi(colon + 1);
    h->sock = evhttp_bind_socket_with_handle(h->http, host, (ev_uint16_t)port);
    if (!h->sock) {
        snprintf(err, errlen, "cannot listen on %s (address in use or not local?)", opts->listen);
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(evhttp_bound_socket_get_fd(h->sock), (struct sockaddr *)&ss, &sl) == 0)
        h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    evhttp_set_max_body_size(h->http, (ev_ssize_t)opts->max_body);
    evhttp_set_max_headers_size(h->http, (ev_ssize_t)opts->max_headers);
    evhttp_set_timeout(h->http, opts->timeout_s);
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(h->http, dispatch, h);
    lcm_metrics_declare(metrics, "lcm_http_requests_total", LCM_METRIC_COUNTER, "HTTP requests by route, method and status code");
    lcm_metrics_declare(metrics, "lcm_http_request_duration_seconds", LCM_METRIC_HISTOGRAM, "HTTP request latency by route");
    return h;
fail:
    lcm_httpd_free(h);
    return NULL;
}

int lcm_httpd_port(const struct lcm_httpd *h) { return h->port; }
size_t lcm_httpd_inflight(const struct lcm_httpd *h) { return h->inflight; }
void lcm_httpd_set_auth(struct lcm_httpd *h, lcm_auth_fn fn, void *ud) { h->auth = fn; h->auth_ud = ud; }
void lcm_httpd_set_fallback(struct lcm_httpd *h, lcm_route_fn fn, void *ud) { h->fallback = fn; h->fallback_ud = ud; }

static void grace_cb(evutil_socket_t fd, short what, void *arg)
{
    struct lcm_httpd *h = arg;
    (void)fd;
    (void)what;
    /* Stragglers: streams are ended, deferred replies answered 503. Their owners'
     * callbacks must tolerate the request being gone (they are told through on_close). */
    while (h->head.next != &h->head) {
        struct lcm_req *r = h->head.next;
        if (r->streaming) {
            lcm_req_close_fn cb = r->on_close;
            void *ud = r->close_ud;
            lcm_reply_stream_end(r);
            if (cb)
                cb(NULL, ud);
        } else {
            if (r->on_abandon)
                r->on_abandon(r, r->abandon_ud);
            lcm_reply_problem(r, 503, "shutting-down", "Service Unavailable", "lcmd is shutting down", NULL);
        }
    }
    maybe_drained(h);
}

void lcm_httpd_shutdown(struct lcm_httpd *h, int grace_ms, void (*on_drained)(void *), void *ud)
{
    h->shutting_down = 1;
    h->on_drained = on_drained;
    h->drained_ud = ud;
    if (h->sock) {
        evhttp_del_accept_socket(h->http, h->sock);
        h->sock = NULL;
    }
    /* Streams never finish on their own: end them now. */
    for (struct lcm_req *r = h->head.next, *n; r != &h->head; r = n) {
        n = r->next;
        if (r->streaming) {
            lcm_req_close_fn cb = r->on_close;
            void *cud = r->close_ud;
            lcm_reply_stream_end(r);
            if (cb)
                cb(NULL, cud);
        }
    }
    if (h->inflight == 0) {
        maybe_drained(h);
        return;
    }
    h->grace_ev = evtimer_new(h->base, grace_cb, h);
    struct timeval tv = { grace_ms / 1000, (grace_ms % 1000) * 1000 };
    if (h->grace_ev)
        evtimer_add(h->grace_ev, &tv);
}

void lcm_httpd_free(struct lcm_httpd *h)
{
    if (!h)
        return;
    if (h->grace_ev)
        event_free(h->grace_ev);
    if (h->http)
        evhttp_free(h->http);
    for (size_t i = 0; i < h->nroutes; i++) {
        struct route *r = &h->routes[i];
        free(r->method);
        free(r->pattern);
        free(r->perm);
        for (int s = 0; s < r->nsegs; s++)
            free(r->segs[s]);
    }
    free(h->routes);
    free(h);
}
