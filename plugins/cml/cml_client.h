/* The cml plugin's HTTP client for CML 2.9: per-endpoint token cache with single-flight
 * authentication, one transparent re-authentication on 401, deadlines, error mapping to
 * LCM_E_*, and the lifecycle of an operation in flight (done exactly once, cancel, stop). */
#ifndef LCM_CML_CLIENT_H
#define LCM_CML_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <lcm/spi.h>

#include "cml_parse.h"

struct cml_ep;
struct cml_op;

/* Settings read once at create() (see cml.c for the keys). */
struct cml_settings {
    char *endpoint_template;     /* owned; NULL = use the call endpoint / default template */
    char *ca_file;               /* owned; NULL = system bundle */
    long timeout_ms, connect_timeout_ms;
    int max_retries;             /* for idempotent calls */
    int verify_tls;
    int health_in_readiness;
};

struct cml_plugin {
    const struct lcm_host_services *hs;
    struct lcm_host *h;
    struct cml_settings cfg;
    struct cml_ep *eps;          /* owned list: one per (base URL, credential set) */
    size_t neps;
    struct cml_op *ops;          /* owned list of ops in flight */
    int stopped;
};

/* What a step does with the answer to the op's current request. The response is valid only
 * during the call. The step either issues the next request (cml_op_request) or finishes the
 * op (cml_op_finish / cml_op_fail*). 401 and cancellation never reach a step. */
typedef void (*cml_step_fn)(struct cml_op *op, const struct lcm_http_resp *resp);

struct cml_op {
    struct cml_plugin *p;
    struct cml_op *prev, *next;  /* p->ops */
    struct cml_op *wnext;        /* the endpoint's queue waiting for a token */
    struct cml_ep *ep;
    const char *name;            /* SPI op name, static */
    uint64_t op_id;
    char corr[64];
    lcm_done_fn done;
    void *ud;
    uint64_t deadline_ms;        /* host monotonic; 0 = none */
    int insecure;

    /* current request */
    char method[8];
    char *path;                  /* owned; after /api/v0, e.g. "/labs/<id>/start" */
    char *body;                  /* owned */
    size_t body_len;
    const char *ctype;           /* static */
    int needs_auth, idempotent;
    long timeout_ms;             /* per attempt; 0 = the configured timeout_ms */
    cml_step_fn step;
    uint64_t http_id, timer_id;
    int in_http, in_auth_wait, timer_armed, reauthed;
    char *token_used;            /* owned copy of the bearer the request went out with */

    /* op arguments and progress (owned), used as each op needs */
    char *lab_id;
    char **strs;                 /* tags, or node ids */
    size_t nstrs;
    int64_t since_ms;
    int all_nodes;
    size_t idx;
    struct lcm_rt_nodes nodes;   /* in arena */
    const char **targets;        /* extract: node ids to extract (in arena) */
    const char **extracted;      /* extract: config per target from the PUT answer (arena) */
    size_t ntargets;
    struct lcm_rt_system_info sysinfo;   /* system_info with health (strings in arena) */
    struct cml_arena arena;      /* results handed to done */
};

/* Creates an op for call (endpoint resolved, credentials checked, ids copied) and links it.
 * NULL with err filled when the call cannot be made (then nothing is left behind). */
struct cml_op *cml_op_new(struct cml_plugin *p, const struct lcm_call *call, const char *name,
                          lcm_done_fn done, void *ud, struct lcm_error *err);
/* Frees an op whose entry point fails before anything went out: done never runs. */
void cml_op_discard(struct cml_op *op);
/* Issues a request (path after /api/v0; body copied; ctype NULL = none); step runs with the
 * answer later. Returns 0 or LCM_E_* with err filled (then the caller discards or fails). */
int cml_op_request(struct cml_op *op, const char *method, const char *path, const char *body,
                   size_t body_len, const char *ctype, int needs_auth, int idempotent,
                   cml_step_fn step, struct lcm_error *err);
/* Completes the op: done(ud, err, result) exactly once, then frees it. */
void cml_op_finish(struct cml_op *op, const struct lcm_error *err, const void *result);
void cml_op_fail(struct cml_op *op, int code, int retryable, int http_status, const char *fmt,
                 ...) __attribute__((format(printf, 5, 6)));
/* Fails the op from a non-2xx or transport answer; http400 is the code a 400 maps to
 * (LCM_E_REMOTE, or LCM_E_CONFLICT for state changes). */
void cml_op_fail_http(struct cml_op *op, const struct lcm_http_resp *resp, int http400);
/* Fills err from a non-2xx or transport answer (as cml_op_fail_http does). */
void cml_http_error(const struct cml_op *op, const struct lcm_http_resp *resp, int http400,
                    struct lcm_error *err);

void cml_client_cancel(struct cml_plugin *p, uint64_t op_id);
/* stop(): every op in flight finishes with LCM_E_CANCELLED now. */
void cml_client_stop(struct cml_plugin *p);
/* destroy(): frees endpoints and whatever is left, without callbacks. */
void cml_client_free(struct cml_plugin *p);

/* The op's CML base URL (for logs). */
const char *cml_op_base(const struct cml_op *op);

/* 1 for a URL-safe CML id ([A-Za-z0-9._-]{1,64}). */
int cml_id_ok(const char *id);

#endif
