/* Async HTTP client on the host's event loop (curl multi driven by libevent).
 * Every outbound call in lcmd and its plugins goes through here, so each gets a timeout,
 * bounded retries with jittered backoff (idempotent requests only), metrics and logs. */
#ifndef LCM_HTTPC_H
#define LCM_HTTPC_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct lcm_metrics;
struct lcm_httpc;

enum lcm_httpc_auth { LCM_HTTPC_AUTH_NONE = 0, LCM_HTTPC_AUTH_BASIC, LCM_HTTPC_AUTH_BEARER,
                      LCM_HTTPC_AUTH_SIGV4 };

/* Everything is borrowed for the duration of lcm_httpc_request() only: the client copies
 * what it keeps. */
struct lcm_httpc_req {
    const char *method;              /* "GET", "POST", … */
    const char *url;
    const char *const *headers;      /* "Name: value" strings */
    size_t nheaders;
    const void *body;
    size_t body_len;
    long timeout_ms;                 /* whole-transfer timeout per attempt; 0 = client default */
    long connect_timeout_ms;         /* 0 = client default */
    int max_retries;                 /* extra attempts on transport errors / 429 / 5xx */
    int idempotent;                  /* retries happen only when set */
    long backoff_base_ms;            /* first retry delay (jittered, doubling); 0 = 100 ms */
    long backoff_max_ms;             /* cap per delay; 0 = 5000 ms */
    int insecure;                    /* skip TLS peer/host verification */
    const char *ca_file;             /* optional CA bundle */
    enum lcm_httpc_auth auth;
    const char *username, *password; /* BASIC; SIGV4: access key id / secret */
    const char *bearer;              /* BEARER token */
    const char *sigv4;               /* SIGV4 provider string "aws:amz:<region>:<service>" */
    const char *session_token;       /* SIGV4: sent as X-Amz-Security-Token when set */
    const char *metric_label;        /* e.g. "aws.ec2"; labels lcm_httpc_* metrics */
    size_t max_response_bytes;       /* 0 = 16 MiB */
};

struct lcm_httpc_header { const char *name, *value; };

/* Valid only during the done callback. status 0 means no HTTP response; then error says why
 * (curl's message, "cancelled", "response too large"). */
struct lcm_httpc_resp {
    int status;
    const char *body;                /* NUL-terminated */
    size_t body_len;
    const struct lcm_httpc_header *headers;
    size_t nheaders;
    int attempts;                    /* how many attempts were made */
    int cancelled;
    int timed_out;
    const char *error;               /* NULL on an HTTP response */
    double elapsed_s;
};

/* Called exactly once per accepted request, never from inside lcm_httpc_request() or
 * lcm_httpc_cancel(). */
typedef void (*lcm_httpc_done_fn)(const struct lcm_httpc_resp *resp, void *ud);

struct lcm_httpc *lcm_httpc_new(struct event_base *base, struct lcm_metrics *metrics);
/* Shutdown: every request still in flight is cancelled and its done runs (cancelled=1)
 * before this returns, so each done still runs exactly once. */
void lcm_httpc_free(struct lcm_httpc *c);

/* Returns 0 and fills *id (may be NULL), or a negative errno-style code for bad arguments
 * (then done is never called). */
int lcm_httpc_request(struct lcm_httpc *c, const struct lcm_httpc_req *req,
                      lcm_httpc_done_fn done, void *ud, uint64_t *id);
/* Cancels a request in flight: its done runs later from the loop with cancelled=1.
 * Returns 0, or -ENOENT when the id is unknown or already finished. */
int lcm_httpc_cancel(struct lcm_httpc *c, uint64_t id);
/* Timeouts used when a request leaves them 0 (from config httpc_timeout_ms and
 * httpc_connect_timeout_ms; built-in 10 s / 3 s). */
void lcm_httpc_set_defaults(struct lcm_httpc *c, long timeout_ms, long connect_timeout_ms);
/* Number of requests in flight (including ones waiting for a retry). */
size_t lcm_httpc_inflight(const struct lcm_httpc *c);

const char *lcm_httpc_resp_header(const struct lcm_httpc_resp *r, const char *name);

#endif
