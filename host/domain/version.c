/* SemVer and CML version comparison. Both are parsed by hand so that "2.10.0" compares
 * above "2.9.1" (the system this one replaces compared strings). */
#include "version.h"

#include <string.h>

static int parse_num(const char **pp, uint64_t *out, int allow_leading_zero)
{
    const char *p = *pp;
    if (*p < '0' || *p > '9')
        return -1;
    if (!allow_leading_zero && p[0] == '0' && p[1] >= '0' && p[1] <= '9')
        return -1;
    uint64_t v = 0;
    while (*p >= '0' && *p <= '9') {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    *out = v;
    *pp = p;
    return 0;
}

static int ident_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c == '-';
}

/* Dot-separated non-empty identifiers up to end (NUL or '+'); returns length or -1. */
static int scan_idents(const char *p, int numeric_rules)
{
    const char *start = p;
    for (;;) {
        const char *id = p;
        int all_digits = 1;
        while (ident_char(*p)) {
            if (*p < '0' || *p > '9')
                all_digits = 0;
            p++;
        }
        if (p == id)
            return -1;
        if (numeric_rules && all_digits && p - id > 1 && id[0] == '0')
            return -1;
        if (*p != '.')
            break;
        p++;
    }
    return (int)(p - start);
}

int lcm_semver_parse(const char *s, struct lcm_semver *out)
{
    if (!s)
        return -1;
    const char *p = s;
    struct lcm_semver v = {0};
    if (parse_num(&p, &v.major, 0) || *p++ != '.' || parse_num(&p, &v.minor, 0) ||
        *p++ != '.' || parse_num(&p, &v.patch, 0))
        return -1;
    if (*p == '-') {
        p++;
        int n = scan_idents(p, 1);
        if (n < 0)
            return -1;
        v.pre = p;
        v.pre_len = n;
        p += n;
    }
    if (*p == '+') {
        p++;
        int n = scan_idents(p, 0);
        if (n < 0)
            return -1;
        p += n;
    }
    if (*p != '\0')
        return -1;
    *out = v;
    return 0;
}

static int cmp_u64(uint64_t a, uint64_t b)
{
    return a < b ? -1 : a > b ? 1 : 0;
}

static int cmp_pre(const char *a, int alen, const char *b, int blen)
{
    int i = 0, j = 0;
    while (i < alen && j < blen) {
        int ai = i, bj = j;
        while (i < alen && a[i] != '.')
            i++;
        while (j < blen && b[j] != '.')
            j++;
        int an = 1, bn = 1;
        for (int k = ai; k < i; k++)
            if (a[k] < '0' || a[k] > '9')
                an = 0;
        for (int k = bj; k < j; k++)
            if (b[k] < '0' || b[k] > '9')
                bn = 0;
        int c;
        if (an && bn) {
            /* no leading zeros, so a longer numeric identifier is larger */
            c = (i - ai) != (j - bj) ? ((i - ai) < (j - bj) ? -1 : 1)
                                     : memcmp(a + ai, b + bj, (size_t)(i - ai));
        } else if (an != bn) {
            c = an ? -1 : 1;   /* numeric identifiers sort below alphanumeric ones */
        } else {
            int la = i - ai, lb = j - bj;
            c = memcmp(a + ai, b + bj, (size_t)(la < lb ? la : lb));
            if (c == 0)
                c = la < lb ? -1 : la > lb ? 1 : 0;
        }
        if (c)
            return c < 0 ? -1 : 1;
        if (i < alen)
            i++;
        if (j < blen)
            j++;
    }
    /* a larger set of identifiers has higher precedence when all before are equal */
    return (i < alen) ? 1 : (j < blen) ? -1 : 0;
}

int lcm_semver_cmp(const struct lcm_semver *a, const struct lcm_semver *b)
{
    int c = cmp_u64(a->major, b->major);
    if (!c)
        c = cmp_u64(a->minor, b->minor);
    if (!c)
        c = cmp_u64(a->patch, b->patch);
    if (c)
        return c;
    if (!a->pre && !b->pre)
        return 0;
    if (!a->pre)
        return 1;
    if (!b->pre)
        return -1;
    return cmp_pre(a->pre, a->pre_len, b->pre, b->pre_len);
}

int lcm_semver_cmp_str(const char *a, const char *b, int *cmp)
{
    struct lcm_semver sa, sb;
    if (lcm_semver_parse(a, &sa) || lcm_semver_parse(b, &sb))
        return -1;
    *cmp = lcm_semver_cmp(&sa, &sb);
    return 0;
}

#define VMAX 6
struct dotted { uint64_t c[VMAX]; int n; int has_pre; };

static int parse_dotted(const char *s, struct dotted *d)
{
    if (!s || !*s)
        return -1;
    memset(d, 0, sizeof *d);
    const char *p = s;
    for (;;) {
        if (d->n == VMAX || parse_num(&p, &d->c[d->n], 1))
            return -1;
        d->n++;
        if (*p != '.')
            break;
        p++;
    }
    if (*p == '-') {
        p++;
        int n = scan_idents(p, 0);
        if (n < 0)
            return -1;
        d->has_pre = 1;
        p += n;
    }
    if (*p == '+') {
        p++;
        int n = scan_idents(p, 0);
        if (n < 0)
            return -1;
        p += n;
    }
    return *p == '\0' ? 0 : -1;
}

int lcm_version_valid(const char *s)
{
    struct dotted d;
    return parse_dotted(s, &d) == 0;
}

int lcm_version_cmp(const char *a, const char *b)
{
    struct dotted da, db;
    int va = parse_dotted(a, &da) == 0, vb = parse_dotted(b, &db) == 0;
    if (!va || !vb)
        return va - vb;
    for (int i = 0; i < VMAX; i++) {
        int c = cmp_u64(da.c[i], db.c[i]);
        if (c)
            return c;
    }
    return db.has_pre - da.has_pre;
}

int lcm_version_in_range(const char *v, const char *min, const char *max)
{
    if (!lcm_version_valid(v))
        return 0;
    if (min && *min && lcm_version_cmp(v, min) < 0)
        return 0;
    if (max && *max && lcm_version_cmp(v, max) > 0)
        return 0;
    return 1;
}
