/* Typed errors of the domain layer: a code the API maps to problem+json (type + HTTP status),
 * the offending field (JSON path, "" when none) and a human message. */
#ifndef LCM_DOMAIN_DERR_H
#define LCM_DOMAIN_DERR_H

enum lcm_derr_code {
    LCM_DERR_OK = 0,
    LCM_DERR_INVALID = -1,    /* malformed or out-of-range input (422) */
    LCM_DERR_CONFLICT = -2,   /* not allowed in the aggregate's current state (409) */
    LCM_DERR_NOT_FOUND = -3,  /* a referenced item does not exist (404) */
    LCM_DERR_EXHAUSTED = -4,  /* capacity or ports exhausted (409) */
    LCM_DERR_NOMEM = -5       /* allocation failed (500) */
};

struct lcm_derr {
    int code;
    char field[64];
    char message[256];
};

void lcm_derr_clear(struct lcm_derr *e);
/* Fills e (when not NULL) and returns code, so callers can `return lcm_derr_set(...)`. */
int lcm_derr_set(struct lcm_derr *e, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Stable short names ("invalid", "conflict", "not_found", "exhausted", "nomem") for the
 * problem+json `type`, and the HTTP status the API should use. */
const char *lcm_derr_code_name(int code);
int lcm_derr_http_status(int code);

#endif
