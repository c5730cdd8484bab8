/* simkit: the small runtime shared by lds-sim and grading-sim — one libevent loop, an evhttp
 * server with admin routes (/_sim/health, /_sim/stats, /_sim/events, /_sim/faults), fault
 * injection, and a CloudEvents outbox that posts to lcmd with retries, in order per subject. */
#ifndef SIMKIT_H
#define SIMKIT_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <event2/http.h>

struct simkit;

/* Replies an error in the simulated product's own error format (LDS: {"message"}, grading:
 * ProblemDetails). Used for injected faults as well as the sim's own errors. */
typedef void (*simkit_error_fn)(struct evhttp_request *req, int status, const char *detail);
/* Handles every request that is not a simkit admin route; segs are the percent-decoded path
 * segments (borrowed for the call). Must reply (now or later) exactly once. */
typedef void (*simkit_route_fn)(struct simkit *kit, struct evhttp_request *req, char **segs,
                                int nsegs, void *ud);
/* Adds simulator-specific counters to GET /_sim/stats. */
typedef void (*simkit_stats_fn)(struct simkit *kit, cJSON *stats, void *ud);
/* Called once at shutdown before the server is freed, so the sim frees its own state. */
typedef void (*simkit_shutdown_fn)(struct simkit *kit, void *ud);

struct simkit_opts {
    const char *name;        /* "lds-sim": log prefix and default CloudEvent source */
    const char *listen;      /* ADDR:PORT, port 0 picks a free one */
    const char *lcm_url;     /* base URL of lcmd (http only); NULL: events are recorded, not posted */
    const char *lcm_token;   /* bearer token for lcmd, may be NULL */
    const char *ce_path;     /* appended to lcm_url, default /api/v1/cloudevents */
    const char *type_prefix; /* CloudEvent type = <type_prefix>.<suffix> */
    const char *source;      /* CloudEvent source, default name */
    const char *port_file;   /* written with the bound port once listening */
    int ce_retries;          /* attempts after the first, default 5 */
    int ce_backoff_ms;       /* first retry delay, doubled each time, default 200 */
    int ce_timeout_ms;       /* per attempt, default 5000 */
    int ce_concurrency;      /* posts in flight at most, default 64 */
    int quiet;               /* no per-request log lines */
    simkit_error_fn error_reply;
    simkit_route_fn route;
    simkit_stats_fn stats;
    simkit_shutdown_fn shutdown;
    void *ud;
};

/* Fills defaults. */
void simkit_opts_init(struct simkit_opts *o, const char *name);
/* Consumes a common option at argv[*i] (and its value); returns 1 when consumed, 0 when the
 * option is not a common one, -1 when its value is missing or invalid. */
int simkit_parse_common(struct simkit_opts *o, int argc, char **argv, int *i);
/* The usage text of the common options. */
const char *simkit_common_usage(void);
/* Parses a non-negative integer option value; returns -1 on garbage. */
int simkit_parse_int(const char *s, long *out);

/* Creates the loop and server and binds; 0 or -1 with err filled. */
int simkit_new(struct simkit **out, const struct simkit_opts *o, char *err, size_t errlen);
/* Runs until SIGINT/SIGTERM. */
int simkit_run(struct simkit *kit);
/* Flushes deferred replies, cancels posts, frees everything. NULL is fine. */
void simkit_free(struct simkit *kit);

struct event_base *simkit_base(struct simkit *kit);
/* The base URL this server answers on, e.g. "http://127.0.0.1:8081". */
const char *simkit_self_url(struct simkit *kit);
void simkit_log(struct simkit *kit, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Replies: body is consumed (may be NULL for an empty body); a Content-Type already set on the
 * request is kept, else application/json. */
void simkit_reply_json(struct evhttp_request *req, int status, cJSON *body);
void simkit_reply_empty(struct evhttp_request *req, int status);
/* The request body as a NUL-terminated string (caller frees), never NULL unless out of memory. */
char *simkit_body(struct evhttp_request *req);
/* The request body parsed as JSON; NULL when empty or invalid (then *empty says which). */
cJSON *simkit_body_json(struct evhttp_request *req, int *empty);
/* A query parameter of the request URI, copied into out; 0 when present. */
int simkit_query(struct evhttp_request *req, const char *key, char *out, size_t outlen);

/* Queues a CloudEvent (structured mode) to lcmd; data is consumed. Fills id_out (37 bytes) with
 * the event id when not NULL. Returns 0, or -1 when out of memory. */
int simkit_emit(struct simkit *kit, const char *type_suffix, const char *subject, cJSON *data,
                char *id_out);
/* The full type for a suffix (static buffer per kit, valid until the next call). */
const char *simkit_type(struct simkit *kit, const char *type_suffix);

/* Utilities. */
void simkit_uuid(char out[37]);
void simkit_random_hex(char *out, size_t nbytes); /* writes 2*nbytes hex chars + NUL */
void simkit_now_rfc3339(char out[32]);
double simkit_mono_s(void);
/* Standard base64 (url=0) or unpadded base64url (url=1); caller frees. */
char *simkit_base64(const unsigned char *in, size_t len, int url);

/* String-keyed hash map; values are borrowed pointers. */
struct simkit_map;
struct simkit_map *simkit_map_new(void);
void simkit_map_free(struct simkit_map *m); /* frees keys, not values */
void *simkit_map_get(const struct simkit_map *m, const char *key);
int simkit_map_put(struct simkit_map *m, const char *key, void *val); /* replaces */
void *simkit_map_del(struct simkit_map *m, const char *key);          /* returns the value */
size_t simkit_map_count(const struct simkit_map *m);
/* Iteration: pass *pos = 0 first; returns 0 when exhausted. Do not modify while iterating. */
int simkit_map_next(const struct simkit_map *m, size_t *pos, const char **key, void **val);

#endif
