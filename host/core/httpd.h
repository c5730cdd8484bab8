/* The inbound HTTP server: evhttp with explicit limits, a small router with {param}
 * patterns, request ids, per-route metrics, problem+json errors, deferred replies and
 * streaming (SSE). Handlers may reply later (e.g. from a Redis callback). */
#ifndef LCM_HTTPD_H
#define LCM_HTTPD_H

#include <stddef.h>

struct event_base;
struct lcm_metrics;
struct lcm_httpd;
struct lcm_req;
struct cJSON;

typedef void (*lcm_route_fn)(struct lcm_req *req, void *ud);
/* Authenticates/authorises a request for a route's permission. Returns 0 to proceed, or
 * -1 after having replied (401/403). */
typedef int (*lcm_auth_fn)(struct lcm_req *req, const char *perm, void *ud);
/* Called when the client of a streaming reply goes away. */
typedef void (*lcm_req_close_fn)(struct lcm_req *req, void *ud);

enum { LCM_ROUTE_OPEN = 1 };   /* no authentication */

struct lcm_httpd_opts {
    const char *listen;        /* host:port; port 0 picks a free one */
    size_t max_body;
    size_t max_headers;
    int timeout_s;
};

struct lcm_route_info {
    const char *method, *pattern, *perm;
    unsigned flags;
};

struct lcm_httpd *lcm_httpd_new(struct event_base *base, struct lcm_metrics *metrics,
                                const struct lcm_httpd_opts *opts, char *err, size_t errlen);
/* Stops accepting and waits for in-flight requests; on_drained runs once they are done
 * (or after grace_ms, when stragglers are answered 503). */
void lcm_httpd_shutdown(struct lcm_httpd *h, int grace_ms, void (*on_drained)(void *), void *ud);
void lcm_httpd_free(struct lcm_httpd *h);
int lcm_httpd_port(const struct lcm_httpd *h);
size_t lcm_httpd_inflight(const struct lcm_httpd *h);

/* Registers a route; pattern segments "{name}" capture one path segment. perm is passed to
 * the auth hook (ignored for LCM_ROUTE_OPEN). Returns 0 or -1. */
int lcm_httpd_route(struct lcm_httpd *h, const char *method, const char *pattern,
                    unsigned flags, const char *perm, lcm_route_fn fn, void *ud);
void lcm_httpd_set_auth(struct lcm_httpd *h, lcm_auth_fn fn, void *ud);
/* Handler for GET requests no route matched (e.g. static dashboard files). */
void lcm_httpd_set_fallback(struct lcm_httpd *h, lcm_route_fn fn, void *ud);
/* Iterates the route table (for the OpenAPI consistency test). */
size_t lcm_httpd_routes(const struct lcm_httpd *h, struct lcm_route_info *out, size_t cap);

/* A handler that replies later registers this: when the server has to answer the request
 * itself first (shutdown grace expired), fn runs and the owner must forget the request. */
typedef void (*lcm_req_abandon_fn)(struct lcm_req *req, void *ud);
void lcm_req_on_abandon(struct lcm_req *r, lcm_req_abandon_fn fn, void *ud);

/* Request accessors: valid until the reply is sent. */
const char *lcm_req_method(const struct lcm_req *r);
const char *lcm_req_path(const struct lcm_req *r);
const char *lcm_req_route(const struct lcm_req *r);      /* matched pattern */
const char *lcm_req_id(const struct lcm_req *r);
const char *lcm_req_param(const struct lcm_req *r, const char *name);
const char *lcm_req_query(const struct lcm_req *r, const char *name);   /* decoded; NULL if absent */
const char *lcm_req_header(const struct lcm_req *r, const char *name);
/* Body (NUL-terminated copy); NULL when empty. */
const char *lcm_req_body(struct lcm_req *r, size_t *len);
struct lcm_httpd *lcm_req_server(const struct lcm_req *r);
/* Whatever the auth hook wants to attach (subject, role). */
void lcm_req_set_auth(struct lcm_req *r, const char *subject, const char *role);
const char *lcm_req_subject(const struct lcm_req *r);
const char *lcm_req_role(const struct lcm_req *r);

void lcm_reply_header(struct lcm_req *r, const char *name, const char *value);
void lcm_reply(struct lcm_req *r, int status, const char *content_type, const char *body,
               size_t len);
/* Consumes json. */
void lcm_reply_json(struct lcm_req *r, int status, struct cJSON *json);
/* RFC 9457 problem+json; type is a slug ("validation", "not-found", …) rendered as
 * "urn:lcm:problem:<slug>"; field names the offending input field (may be NULL). */
void lcm_reply_problem(struct lcm_req *r, int status, const char *type, const char *title,
                       const char *detail, const char *field);

/* Streaming (SSE). After start, write chunks; end finishes. on_close runs if the client
 * disconnects first (then do not touch r again after it returns). */
void lcm_reply_stream_start(struct lcm_req *r, int status, const char *content_type,
                            lcm_req_close_fn on_close, void *ud);
int lcm_reply_stream_write(struct lcm_req *r, const char *data, size_t len);
void lcm_reply_stream_end(struct lcm_req *r);
/* Bytes written to a streaming reply that the client has not taken yet (for dropping slow
 * SSE clients). */
size_t lcm_reply_stream_pending(const struct lcm_req *r);

#endif
