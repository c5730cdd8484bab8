/* Internals shared by the resource files of host/api (api.c holds the helpers): the api
 * object, in-flight operations bound to a request, problem+json mapping, body parsing,
 * ETag/If-Match, commits, lists with cursors. Not for use outside host/api. */
#ifndef LCM_API_INT_H
#define LCM_API_INT_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "api_body.h"
#include "domain/derr.h"
#include "domain/events.h"
#include "domain/kind.h"
#include "domain/session_time.h"

struct cJSON;
struct event;
struct lcm_req;
struct lcm_store_result;
struct lcm_store_unique;

#define API_BASE "/api/v1"
#define API_LIST_DEFAULT 50
#define API_LIST_MAX 500
#define API_REQUESTS_STREAM "lcm:requests"

struct api_op;

struct api_rsv;

struct lcm_api {
    struct lcm_app *app;
    struct lcm_time_params tp;
    struct api_op *ops;           /* in flight (doubly linked) */
    unsigned long long seq;
    struct api_rsv *rsv;          /* reservation_id → session id (api_sessions.c) */
    int sub;                      /* store change subscription keeping rsv current, or -1 */
};

/* An operation waiting for the store or Redis on behalf of a request. When the api is freed
 * first, api and req become NULL and the callback only frees the op. */
typedef void (*api_done_fn)(struct api_op *op, const struct lcm_store_result *res);
struct api_op {
    struct api_op *prev, *next;
    struct lcm_api *api;
    struct lcm_req *req;
    api_done_fn done;             /* NULL → api_op_default_done */
    const struct lcm_kind *kind;  /* aggregate rendered on success */
    char id[160];
    int ok_status;                /* 200, 201, 202 */
    const char *location;         /* collection path for a Location header on 201, or NULL */
    void *ctx;                    /* owned when ctx_free is set */
    void (*ctx_free)(void *);
    struct event *timer;          /* retries (session create after a conflict) */
    int tries;
};

struct api_op *api_op_new(struct lcm_api *a, struct lcm_req *r, const struct lcm_kind *k,
                          const char *id, int ok_status);
void api_op_free(struct api_op *op);
void api_op_default_done(struct api_op *op, const struct lcm_store_result *res);

/* One aggregate's part of a commit. */
struct api_change {
    const struct lcm_kind *kind;
    const char *id;
    uint64_t expected;
    const struct lcm_events *evs;
    const struct lcm_store_unique *uniques;
    size_t n_uniques;
};
/* Commits atomically; op->done (or the default) runs later. On an immediate failure the
 * request is answered, op is freed and -1 returned. */
int api_commit(struct api_op *op, const struct api_change *ch, size_t n);

/* Appends a request for a controller to lcm:requests (XADD; fields name/value pairs) and
 * answers 202 with {request_id, type, ...fields, by, requested_at}. */
void api_request(struct lcm_api *a, struct lcm_req *r, const char *type, const char *const *kv,
                 size_t nkv);

/* ---- replies ---- */
/* 503 while the read models are loading. Returns 0 when ready, -1 after replying. */
int api_ready(struct lcm_api *a, struct lcm_req *r);
void api_problem_derr(struct lcm_req *r, const struct lcm_derr *e);
void api_problem_store(struct lcm_req *r, int status, const char *kind, const char *id,
                       int64_t current, const char *holder);
/* Renders an aggregate with "revision" and an ETag header. */
void api_reply_agg(struct lcm_req *r, int status, const struct lcm_kind *k, const void *state,
                   const char *location);
struct cJSON *api_agg_json(const struct lcm_kind *k, const void *state);

/* ---- inputs ---- */
/* The body checked against s. Missing body: an empty object when !required, else 400.
 * Returns NULL after replying (400 malformed, 415, 422). */
struct cJSON *api_body(struct lcm_req *r, const struct api_schema *s, int required);
/* The aggregate or NULL after replying 404. */
const void *api_get(struct lcm_api *a, struct lcm_req *r, const struct lcm_kind *k,
                    const char *id);
/* 0 when no If-Match or it matches version; -1 after replying 412. */
int api_if_match(struct lcm_req *r, uint64_t version);
/* Optional RFC 3339 query parameter: 0 absent, 1 parsed, -1 after replying 400. */
int api_query_time(struct lcm_req *r, const char *name, int64_t *out);
/* Optional boolean query parameter (true/false/1/0): 0/1, or -1 after replying 400. */
int api_query_bool(struct lcm_req *r, const char *name, int def);
const char *api_by(struct lcm_req *r);
int64_t api_now(void);
/* prefix + 12 hex digits of milliseconds + 8 random hex digits. */
void api_new_id(const char *prefix, char *out, size_t cap);
/* sha256 hex of a and b joined by a newline, first n hex digits. */
void api_hash_id(const char *prefix, const char *a, const char *b, size_t n, char *out,
                 size_t cap);

/* ---- lists ---- */
typedef int (*api_filter_fn)(const void *state, void *ud);       /* 1 = keep */
typedef int64_t (*api_created_fn)(const void *state);
/* GET collection: filters, sorts by (created_at, id), pages with limit/cursor and answers
 * {items, next_cursor, total}. */
void api_list(struct lcm_api *a, struct lcm_req *r, const struct lcm_kind *k,
              api_filter_fn keep, void *ud, api_created_fn created);
/* Comma-separated query value contains s (NULL q = no filter). */
int api_csv_has(const char *q, const char *s);

/* ---- routes of each resource ---- */
int api_templates_routes(struct lcm_api *a);
int api_definitions_routes(struct lcm_api *a);
int api_workers_routes(struct lcm_api *a);
int api_sessions_routes(struct lcm_api *a);
/* The reservation map of sessions: subscribes to store changes (0, or -1 out of memory);
 * api_sessions_free unsubscribes and frees it. */
int api_sessions_init(struct lcm_api *a);
void api_sessions_free(struct lcm_api *a);
int api_labs_routes(struct lcm_api *a);
int api_openapi_routes(struct lcm_api *a);

/* JSON merge patch (RFC 7396) of patch into target (modified in place). */
void api_merge_patch(struct cJSON *target, const struct cJSON *patch);

#endif
