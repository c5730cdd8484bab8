/* Version arithmetic: strict SemVer 2.0 for definition versions, and dotted numeric
 * comparison for CML versions (2.10.0 > 2.9.1: compared as numbers, never as strings). */
#ifndef LCM_DOMAIN_VERSION_H
#define LCM_DOMAIN_VERSION_H

#include <stdint.h>

struct lcm_semver {
    uint64_t major, minor, patch;
    const char *pre;      /* points into the parsed string, NULL when no pre-release */
    int pre_len;
};

/* MAJOR.MINOR.PATCH[-pre][+build], no leading zeros, no leading 'v'. Returns 0 or -1. */
int lcm_semver_parse(const char *s, struct lcm_semver *out);
/* <0, 0, >0 by SemVer precedence (build metadata ignored). */
int lcm_semver_cmp(const struct lcm_semver *a, const struct lcm_semver *b);
/* Parses both; returns 0 and sets *cmp, or -1 when either is not a semver. */
int lcm_semver_cmp_str(const char *a, const char *b, int *cmp);

/* CML versions: 1 to 6 dot-separated decimal components ("2.9", "2.9.1", "2.10.0.5"), an
 * optional "-suffix" (a pre-release: sorts before the same numbers without it) and an
 * optional "+build" (ignored). Missing components count as 0 (2.9 == 2.9.0). */
int lcm_version_valid(const char *s);
/* <0, 0, >0; an invalid version sorts before every valid one (so it never satisfies a
 * minimum). */
int lcm_version_cmp(const char *a, const char *b);
/* 1 when v is within [min, max]; NULL or "" bounds are open. Invalid v → 0. */
int lcm_version_in_range(const char *v, const char *min, const char *max);

#endif
