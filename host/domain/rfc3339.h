/* RFC 3339 UTC timestamps <-> epoch seconds, without the C library's time zone state
 * (pure and deterministic: the same seconds always print the same bytes). */
#ifndef LCM_DOMAIN_RFC3339_H
#define LCM_DOMAIN_RFC3339_H

#include <stddef.h>
#include <stdint.h>

#define LCM_TIME_BUFSZ 32

/* "2025-11-27T11:03:00Z". Returns 0, or -1 when buf is too small or t out of range. */
int lcm_rfc3339_format(int64_t t, char *buf, size_t len);
/* Accepts YYYY-MM-DD[Tt ]HH:MM:SS[.frac](Z|z|+HH:MM|-HH:MM); fractions are dropped.
 * Returns 0 or -1. */
int lcm_rfc3339_parse(const char *s, int64_t *out);

#endif
