/* Request side of the aws plugin: AWS Query API form bodies (percent-encoded the way SigV4
 * canonicalises them), base64 for user data, deterministic ClientTokens and timestamps.
 * Pure functions, no I/O. */
#ifndef AWS_QUERY_H
#define AWS_QUERY_H

#include <stddef.h>
#include <stdint.h>

/* A growing "k=v&k=v" body. After any allocation failure oom is set and further adds are
 * ignored; check it once before sending. */
struct aws_form {
    char *buf;
    size_t len, cap;
    int oom;
    int n;                      /* parameters added */
};

void aws_form_init(struct aws_form *f, const char *action, const char *version);
void aws_form_add(struct aws_form *f, const char *key, const char *value);
/* Key built from a printf format (e.g. "Filter.%d.Value.%d"). */
void aws_form_addf(struct aws_form *f, const char *value, const char *keyfmt, ...)
    __attribute__((format(printf, 3, 4)));
void aws_form_free(struct aws_form *f);

/* RFC 3986 unreserved characters stay, everything else becomes %XX (upper hex). */
int aws_urlencode(char *dst, size_t cap, const char *src);   /* 0, or -1 when it does not fit */

/* Standard base64 with padding; caller frees. NULL on OOM. */
char *aws_base64(const void *data, size_t len);

/* The ClientToken for a worker: "lcm-<worker id>" when the id is short and plain, else
 * "lcm-" + a 32-hex-digit hash of it; at most 64 characters (EC2's limit). Deterministic, so
 * every retry and every restart of lcmd sends the same token for the same worker. Returns 0
 * or -1 for an empty id. */
int aws_client_token(const char *worker_id, char *out, size_t cap);
/* 1 when s is a valid EC2 ClientToken (1..64 printable ASCII). */
int aws_client_token_valid(const char *s);

/* Epoch ms → "YYYY-MM-DDTHH:MM:SSZ". */
void aws_iso8601(int64_t ms, char out[32]);

/* xorshift64* step; the plugin's jitter source (state must be non-zero). */
uint64_t aws_rand_next(uint64_t *state);

#endif
