/* lcm_plugkit: the pieces the lds, grading and cml plugins had each written the same way
 * (config reading, URL and credential-name checks, HTTP answer to SPI error, the failed-op
 * log line). Plugins cannot link host libraries, so this is linked statically into each. */
#include "plugkit.h"

#include <cjson/cJSON.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *lcm_pk_dup_or_null(const char *s) { return s && *s ? strdup(s) : NULL; }

long lcm_pk_cfg_long(const struct lcm_host_services *hs, struct lcm_host *h, const char *key,
                     long dflt, long lo, long hi)
{
    int64_t v;
    if (hs->config_int(h, key, &v) != 0)
        return dflt;
    return v < lo ? lo : v > hi ? hi : (long)v;
}

int lcm_pk_cfg_bool(const struct lcm_host_services *hs, struct lcm_host *h, const char *key,
                    int dflt)
{
    int b = dflt;
    if (hs->config_bool(h, key, &b) != 0)
        b = dflt;
    return b;
}

const char *lcm_pk_env_or_cfg(const struct lcm_host_services *hs, struct lcm_host *h,
                              const char *env, const char *key)
{
    const char *v = getenv(env);
    if (v && *v)
        return v;
    v = hs->config_str(h, key);
    return v && *v ? v : NULL;
}

int lcm_pk_url_ok(const char *u)
{
    if (!u || !(strncmp(u, "http://", 7) == 0 || strncmp(u, "https://", 8) == 0))
        return 0;
    for (; *u; u++)
        if ((unsigned char)*u <= 0x20 || (unsigned char)*u >= 0x7f)
            return 0;
    return 1;
}

int lcm_pk_cred_ok(const char *c)
{
    size_t n = c ? strlen(c) : 0;
    if (n == 0 || n > 60)
        return 0;
    for (; *c; c++)
        if (!(isalnum((unsigned char)*c) || *c == '_'))
            return 0;
    return 1;
}

void lcm_pk_strip_slash(char *s)
{
    size_t n = s ? strlen(s) : 0;
    while (n > 0 && s[n - 1] == '/')
        s[--n] = '\0';
}

void lcm_pk_share_deadline(long left, long *timeout, int *retries)
{
    while (*retries > 0 && left / (*retries + 1) < 200)
        (*retries)--;
    if (left / (*retries + 1) < *timeout)
        *timeout = left / (*retries + 1);
    if (*timeout < 1)
        *timeout = 1;
}

int lcm_pk_http_transport_error(struct lcm_error *e, const struct lcm_http_resp *r,
                                const char *who, const char *op, const char *what, int errmax)
{
    char m[sizeof e->message];
    if (r->cancelled) {
        snprintf(m, sizeof m, "%s %s: %s: cancelled", who, op, what);
        lcm_error_set(e, LCM_E_CANCELLED, 0, 0, m);
        return 1;
    }
    if (r->status != 0)
        return 0;
    snprintf(m, sizeof m, "%s %s: %s: %.*s (%d attempt%s)", who, op, what, errmax,
             r->error ? r->error : r->timed_out ? "timed out" : "no response", r->attempts,
             r->attempts == 1 ? "" : "s");
    lcm_error_set(e, r->timed_out ? LCM_E_TIMEOUT : LCM_E_UNAVAIL, 1, 0, m);
    return 1;
}

int lcm_pk_http_code(int st, int conflict2, int *retry)
{
    *retry = 0;
    if (st == 401 || st == 403)
        return LCM_E_AUTH;
    if (st == 404)
        return LCM_E_NOTFOUND;
    if (st == 409 || st == conflict2)
        return LCM_E_CONFLICT;
    if (st == 408 || st == 429 || st >= 500) {
        *retry = 1;
        return st == 429 ? LCM_E_THROTTLED : st == 408 || st == 504 ? LCM_E_TIMEOUT
                                                                     : LCM_E_UNAVAIL;
    }
    return LCM_E_REMOTE;
}

void lcm_pk_log_op_error(const struct lcm_host_services *hs, struct lcm_host *h,
                         const char *who, const char *op, uint64_t op_id, const char *corr,
                         const char *endpoint, const struct lcm_error *err)
{
    char labels[96], metric[64];
    snprintf(labels, sizeof labels, "op=\"%s\",kind=\"%s\"", op,
             err->retryable ? "retryable" : "final");
    snprintf(metric, sizeof metric, "%s_errors_total", who);
    hs->metric_inc(h, metric, labels, 1);
    hs->log(h, err->retryable ? LCM_SPI_WARN : LCM_SPI_INFO,
            "msg=\"%s op failed\" op=%s op_id=%llu corr=%s endpoint=%s code=%d retryable=%d "
            "http=%d reason=\"%s\"", who, op, (unsigned long long)op_id,
            corr && corr[0] ? corr : "-", endpoint, err->code, err->retryable, err->http_status,
            err->message);
}

/* ---- RFC 3339 date-times ------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* n decimal digits at *p (advanced past them); -1 when they are not all digits. */
static int digits(const char **p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (!isdigit((unsigned char)**p))
            return -1;
        v = v * 10 + (**p - '0');
    }
    return v;
}

int lcm_pk_rfc3339_us(const char *s, int need_offset, int64_t *us)
{
    static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    if (!s || !us)
        return -1;
    const char *p = s;
    int y = digits(&p, 4);
    if (y < 0 || *p++ != '-')
        return -1;
    int mo = digits(&p, 2);
    if (mo < 1 || mo > 12 || *p++ != '-')
        return -1;
    int d = digits(&p, 2);
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap))
        return -1;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return -1;
    p++;
    int h = digits(&p, 2);
    if (h < 0 || h > 23 || *p++ != ':')
        return -1;
    int mi = digits(&p, 2);
    if (mi < 0 || mi > 59 || *p++ != ':')
        return -1;
    int sec = digits(&p, 2);
    if (sec < 0 || sec > 60)                  /* 60: a leap second */
        return -1;
    int64_t frac = 0;
    if (*p == '.') {
        int n = 0;
        if (!isdigit((unsigned char)*++p))
            return -1;
        for (; isdigit((unsigned char)*p); p++)
            if (n < 6) {
                frac = frac * 10 + (*p - '0');
                n++;
            }
        for (; n < 6; n++)
            frac *= 10;
    }
    int64_t off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1;
        int oh = digits(&p, 2);
        if (oh < 0 || oh > 23)
            return -1;
        if (*p == ':')
            p++;
        int om = digits(&p, 2);
        if (om < 0 || om > 59)
            return -1;
        off = sign * (int64_t)(oh * 3600 + om * 60);
    } else if (need_offset) {
        return -1;                            /* a time without offset is ambiguous */
    }
    if (*p)
        return -1;
    *us = (days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off) * 1000000 + frac;
    return 0;
}

/* ---- error text for log lines -------------------------------------------------------- */

void lcm_pk_append_printable(char *out, size_t cap, size_t *o, const char *s)
{
    for (; s && *s && *o + 1 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        out[(*o)++] = c < 0x20 || c == 0x7f || c == '"' || c == '\\' ? ' ' : (char)c;
    }
    out[*o] = '\0';
}

void lcm_pk_printable_prefix(const char *body, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len && i < 160 && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)body[i];
        out[o++] = c < 0x20 || c >= 0x7f || c == '"' || c == '\\' ? ' ' : (char)c;
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
}

/* ---- JSON answers --------------------------------------------------------------------- */

void lcm_pk_set_why(char *why, size_t whylen, const char *msg)
{
    if (why && whylen)
        snprintf(why, whylen, "%s", msg);
}

cJSON *lcm_pk_json_parse(const char *body, size_t len, size_t max, char *why, size_t whylen)
{
    if (!body || len == 0) {
        lcm_pk_set_why(why, whylen, "empty body");
        return NULL;
    }
    if (len > max) {
        lcm_pk_set_why(why, whylen, "body too large");
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(body, len);
    if (!j)
        lcm_pk_set_why(why, whylen, "not JSON");
    return j;
}

/* ---- URLs ---------------------------------------------------------------------------- */

int lcm_pk_percent_encode(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    if (!s || !out || cap == 0)
        return -1;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            if (o + 1 >= cap)
                return -1;
            out[o++] = (char)c;
        } else {
            if (o + 3 >= cap)
                return -1;
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return (int)o;
}
