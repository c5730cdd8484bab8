/* lcm_plugkit: the pieces the lds, grading and cml plugins had each written the same way
 * (config reading, URL and credential-name checks, HTTP answer to SPI error, the failed-op
 * log line). Plugins cannot link host libraries, so this is linked statically into each. */
#include "plugkit.h"

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
