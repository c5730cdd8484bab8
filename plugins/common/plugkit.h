/* lcm_plugkit: helpers shared by the provider plugins (config reading, input checks, the
 * SPI error for an HTTP answer, the failed-op log line and metric). Linked statically into
 * each plugin with hidden visibility; uses only the SDK and the host services table. */
#ifndef LCM_PLUGKIT_H
#define LCM_PLUGKIT_H

#include <lcm/spi.h>

#include <stdint.h>

/* A copy of s, or NULL when s is NULL or empty (or out of memory). */
char *lcm_pk_dup_or_null(const char *s);

/* Integer config key clamped to [lo, hi]; dflt when unset or not an integer. */
long lcm_pk_cfg_long(const struct lcm_host_services *hs, struct lcm_host *h, const char *key,
                     long dflt, long lo, long hi);

/* Boolean config key; dflt when unset or not a boolean. */
int lcm_pk_cfg_bool(const struct lcm_host_services *hs, struct lcm_host *h, const char *key,
                    int dflt);

/* The environment variable env when set and non-empty, else config key; NULL when neither. */
const char *lcm_pk_env_or_cfg(const struct lcm_host_services *hs, struct lcm_host *h,
                              const char *env, const char *key);

/* 1 when u is an http:// or https:// URL of printable ASCII without spaces. */
int lcm_pk_url_ok(const char *u);

/* 1 when c is a credential set name: 1 to 60 characters of [A-Za-z0-9_]. */
int lcm_pk_cred_ok(const char *c);

/* Drops trailing '/' characters of s in place (s may be NULL). */
void lcm_pk_strip_slash(char *s);

/* The host retries inside one request: shares the left ms before the deadline between the
 * attempts so that all of them end by it. Drops attempts while each would get under 200 ms,
 * then caps *timeout at the share (at least 1 ms). */
void lcm_pk_share_deadline(long left, long *timeout, int *retries);

/* For an answer without an HTTP status: fills e and returns 1 when r was cancelled
 * ("<who> <op>: <what>: cancelled") or failed in transport ("<who> <op>: <what>: <error>
 * (<n> attempts)", retryable timeout or unavailable; the error text cut at errmax
 * characters). Returns 0 (e untouched) when r carries a status. */
int lcm_pk_http_transport_error(struct lcm_error *e, const struct lcm_http_resp *r,
                                const char *who, const char *op, const char *what, int errmax);

/* The SPI code for HTTP status st: 401/403 auth, 404 not found, 409 and conflict2 conflict,
 * 408 timeout, 429 throttled, 5xx unavailable (504 timeout), anything else remote.
 * *retry is 1 for 408, 429 and 5xx, else 0. */
int lcm_pk_http_code(int st, int conflict2, int *retry);

/* The log line and "<who>_errors_total" count of an op that ends with err. */
void lcm_pk_log_op_error(const struct lcm_host_services *hs, struct lcm_host *h,
                         const char *who, const char *op, uint64_t op_id, const char *corr,
                         const char *endpoint, const struct lcm_error *err);

/* An RFC 3339 date-time (`T`, `t` or a space between date and time; any number of fraction
 * digits, kept to the microsecond; `Z` or a ±hh[:]mm offset) as µs since the epoch. Without
 * an offset it is UTC unless need_offset (then refused). 0, or -1 (*us untouched). */
int lcm_pk_rfc3339_us(const char *s, int need_offset, int64_t *us);

/* Appends s to out at *o (out has cap bytes and stays NUL-terminated) with control
 * characters, DEL, '"' and '\\' as spaces: remote error text made safe for a log line. */
void lcm_pk_append_printable(char *out, size_t cap, size_t *o, const char *s);

/* out = the first 160 bytes of a body that is not JSON (proxies answer HTML or plain text) as
 * printable ASCII, everything else as spaces, trailing spaces dropped. */
void lcm_pk_printable_prefix(const char *body, size_t len, char *out, size_t cap);

struct cJSON;

/* Copies msg into why (why may be NULL): the reason a parser gives with its error. */
void lcm_pk_set_why(char *why, size_t whylen, const char *msg);

/* A remote answer's body parsed as JSON: NULL with why "empty body", "body too large" (over
 * max bytes) or "not JSON". The caller deletes the tree. */
struct cJSON *lcm_pk_json_parse(const char *body, size_t len, size_t max, char *why,
                                size_t whylen);

/* Percent-encodes s for one URL path segment or form value: everything but unreserved
 * characters (A-Z a-z 0-9 - . _ ~), so a space becomes %20 and '/' %2F. Returns the length, or
 * -1 when it does not fit in cap bytes with its NUL. */
int lcm_pk_percent_encode(const char *s, char *out, size_t cap);

#endif
