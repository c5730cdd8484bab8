/* The aws plugin: cloud provider for AWS EC2 (Query API 2016-11-15) and CloudWatch
 * (GetMetricData), signed with SigV4 through the host's HTTP service. Owns its retry policy:
 * jittered exponential backoff, only where a retry cannot duplicate work. See docs/aws.md. */
#include <lcm/spi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws_query.h"
#include "aws_xml.h"

#define AWS_EC2_VERSION "2016-11-15"
#define AWS_CW_VERSION "2010-08-01"
#define AWS_MAX_LIST 1000        /* ids / tags / filters per call: EC2's own limits are lower */

enum aws_kind { AWS_LAUNCH, AWS_DESCRIBE, AWS_START, AWS_STOP, AWS_TERMINATE, AWS_IMAGES,
                AWS_TAGS, AWS_METRICS };

/* Why an error may be retried inside the plugin. */
enum aws_retry { RETRY_NEVER,       /* auth, validation, capacity, conflicts: the caller decides */
                 RETRY_REJECTED,    /* throttled: the request was refused unprocessed, always safe */
                 RETRY_IF_SAFE,     /* 5xx / transport: the request may have been applied */
                 RETRY_NOTFOUND };  /* eventual consistency right after a launch */

struct aws_plugin {
    const struct lcm_host_services *hs;
    struct lcm_host *h;
    struct aws_op *ops;          /* in flight, owned */
    uint64_t rng;
    int max_attempts, notfound_retries;
    long backoff_base_ms, backoff_max_ms, timeout_ms;
    const char *root_device, *root_volume_type;   /* host-owned config strings */
};

/* One operation in flight; owns its body, credentials copy (wiped on free) and URL. */
struct aws_op {
    struct aws_plugin *p;
    struct aws_op *prev, *next;
    enum aws_kind kind;
    const char *action;          /* static */
    const char *service;         /* "ec2" / "monitoring": metric label */
    uint64_t op_id;
    char corr[64];
    lcm_done_fn done;
    void *ud;
    char *url;
    char sigv4[96];
    struct aws_form form;
    char *ak, *sk, *token;
    int attempt;
    int safe;                    /* a retry after a 5xx/transport error cannot duplicate work */
    int notfound_left;
    int64_t deadline_ms;
    uint64_t http_id, timer_id;
    int http_pending, timer_pending, cancelled;
    int percent;                 /* metrics: the metric is a percentage (CPUUtilization) */
    struct lcm_error last;       /* the error that caused the pending retry */
};

static const struct lcm_plugin_config_key aws_config[] = {
    { "aws_access_key_id", LCM_PCFG_SECRET, NULL,
      "Access key id (used when AWS_ACCESS_KEY_ID is not set in the environment)", 0 },
    { "aws_secret_access_key", LCM_PCFG_SECRET, NULL,
      "Secret access key (used when AWS_ACCESS_KEY_ID is not set in the environment)", 0 },
    { "aws_session_token", LCM_PCFG_SECRET, NULL,
      "Session token for temporary credentials (sent as X-Amz-Security-Token)", 0 },
    { "aws_region", LCM_PCFG_STRING, NULL,
      "Default region when a call names none and AWS_REGION is not set", 0 },
    { "aws_endpoint_url", LCM_PCFG_STRING, NULL,
      "Endpoint for every service (e.g. http://127.0.0.1:5000 for moto); env AWS_ENDPOINT_URL wins",
      0 },
    { "aws_endpoint_url_ec2", LCM_PCFG_STRING, NULL,
      "EC2 endpoint; env AWS_ENDPOINT_URL_EC2 wins", 0 },
    { "aws_endpoint_url_cloudwatch", LCM_PCFG_STRING, NULL,
      "CloudWatch endpoint; env AWS_ENDPOINT_URL_CLOUDWATCH wins", 0 },
    { "max_attempts", LCM_PCFG_INT, "4",
      "Attempts per operation for retryable errors (1 = no retries)", 0 },
    { "backoff_base_ms", LCM_PCFG_INT, "200",
      "First retry delay; doubles per attempt, jittered to [d/2, d]", 0 },
    { "backoff_max_ms", LCM_PCFG_INT, "5000", "Cap of one retry delay", 0 },
    { "request_timeout_ms", LCM_PCFG_INT, "20000", "Timeout of one HTTP attempt", 0 },
    { "notfound_retries", LCM_PCFG_INT, "2",
      "Extra attempts on InvalidInstanceID.NotFound (EC2 is eventually consistent after a launch)",
      0 },
    { "root_device_name", LCM_PCFG_STRING, "/dev/sda1",
      "Device name of the AMI's root volume, used when a launch sets root_volume_gb", 0 },
    { "root_volume_type", LCM_PCFG_STRING, "gp3", "EBS volume type of a resized root volume", 0 },
};

/* ------------------------------------------------------------------------------------------
 * helpers
 * ------------------------------------------------------------------------------------------ */

static void aws_wipe_free(char *s)
{
    if (!s)
        return;
    volatile char *v = s;
    while (*v)
        *v++ = '\0';
    free(s);
}

static void aws_errf(struct lcm_error *e, int code, int retryable, int status, const char *fmt,
                     ...) __attribute__((format(printf, 5, 6)));
static void aws_errf(struct lcm_error *e, int code, int retryable, int status, const char *fmt,
                     ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lcm_error_set(e, code, retryable, status, msg);
}

static const char *aws_getenv(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static int aws_cfg_int(struct aws_plugin *p, const char *key, long def, long lo, long hi)
{
    int64_t v;
    if (p->hs->config_int(p->h, key, &v) != 0)
        return (int)def;
    return (int)(v < lo ? lo : v > hi ? hi : v);
}

/* Reads the fields of call the host compiled in (call may be NULL or from an older host). */
#define CALL_HAS(c, m) ((c) && (c)->size >= LCM_SPI_SIZE_UPTO(struct lcm_call, m))
#define CALL_STR(c, m) (CALL_HAS(c, m) ? (c)->m : NULL)

static int region_ok(const char *r)
{
    size_t n = r ? strlen(r) : 0;
    if (n == 0 || n > 32)
        return 0;
    for (; *r; r++)
        if (!((*r >= 'a' && *r <= 'z') || (*r >= '0' && *r <= '9') || *r == '-'))
            return 0;
    return 1;
}

static const char *aws_region(struct aws_plugin *p, const struct lcm_call *call)
{
    const char *r = CALL_STR(call, region);
    if (r && *r)
        return r;
    if ((r = aws_getenv("AWS_REGION")) || (r = aws_getenv("AWS_DEFAULT_REGION")))
        return r;
    r = p->hs->config_str(p->h, "aws_region");
    return r && *r ? r : "us-east-1";
}

/* Like every AWS SDK: service-specific env, global env, then the plugin config (specific,
 * global), else the public endpoint of the region. */
static char *aws_endpoint(struct aws_plugin *p, int cw, const char *region)
{
    const char *e = aws_getenv(cw ? "AWS_ENDPOINT_URL_CLOUDWATCH" : "AWS_ENDPOINT_URL_EC2");
    if (!e)
        e = aws_getenv("AWS_ENDPOINT_URL");
    if (!e)
        e = p->hs->config_str(p->h, cw ? "aws_endpoint_url_cloudwatch" : "aws_endpoint_url_ec2");
    if (!e || !*e)
        e = p->hs->config_str(p->h, "aws_endpoint_url");
    char buf[512];
    if (e && *e) {
        const char *scheme = strstr(e, "://");
        int has_path = scheme && strchr(scheme + 3, '/') != NULL;
        snprintf(buf, sizeof buf, "%s%s", e, has_path ? "" : "/");
    } else {
        snprintf(buf, sizeof buf, "https://%s.%s.amazonaws.com/", cw ? "monitoring" : "ec2",
                 region);
    }
    return strdup(buf);
}

/* Credentials: a named set (call->credentials = "X" → secrets X_ACCESS_KEY_ID, …), else
 * AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN from the environment, else the
 * plugin's secret config keys. The three always come from one source, never mixed. */
static int aws_creds(struct aws_plugin *p, const struct lcm_call *call, struct aws_op *op,
                     struct lcm_error *err)
{
    char name[96], buf[2048];
    const char *set = CALL_STR(call, credentials);
    const char *prefix = set && *set ? set : NULL;
    if (!prefix && aws_getenv("AWS_ACCESS_KEY_ID")) {
        const char *sk = aws_getenv("AWS_SECRET_ACCESS_KEY");
        if (!sk) {
            aws_errf(err, LCM_E_CONFIG, 0, 0,
                     "aws: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
            return LCM_E_CONFIG;
        }
        op->ak = strdup(aws_getenv("AWS_ACCESS_KEY_ID"));
        op->sk = strdup(sk);
        const char *tok = aws_getenv("AWS_SESSION_TOKEN");
        if (tok && !(op->token = strdup(tok)))
            return LCM_E_NOMEM;
        return op->ak && op->sk ? 0 : LCM_E_NOMEM;
    }
    if (!prefix)
        prefix = "AWS";
    if (strlen(prefix) > 48) {
        aws_errf(err, LCM_E_INVAL, 0, 0, "aws: credential set name too long");
        return LCM_E_INVAL;
    }
    static const char *const parts[] = { "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN" };
    char **dst[] = { &op->ak, &op->sk, &op->token };
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "%s_%s", prefix, parts[i]);
        int n = p->hs->secret(p->h, name, buf, sizeof buf);
        if (n >= 0) {
            *dst[i] = strdup(buf);
            memset(buf, 0, sizeof buf);
            if (!*dst[i])
                return LCM_E_NOMEM;
        } else if (i < 2) {
            aws_errf(err, LCM_E_CONFIG, 0, 0,
                     "aws: no credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the "
                     "secret %s (env LCM_%s or config key)", name, name);
            memset(buf, 0, sizeof buf);
            return LCM_E_CONFIG;
        }
    }
    return 0;
}

static void aws_op_free(struct aws_op *op)
{
    if (!op)
        return;
    aws_wipe_free(op->ak);
    aws_wipe_free(op->sk);
    aws_wipe_free(op->token);
    free(op->url);
    aws_form_free(&op->form);
    free(op);
}

static void op_link(struct aws_plugin *p, struct aws_op *op)
{
    op->prev = NULL;
    op->next = p->ops;
    if (p->ops)
        p->ops->prev = op;
    p->ops = op;
}

static void op_unlink(struct aws_plugin *p, struct aws_op *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else if (p->ops == op)
        p->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->prev = op->next = NULL;
}

/* A new op for one API call; credentials, region and endpoint resolved now so that a
 * configuration problem is reported synchronously (done never runs). */
static struct aws_op *aws_op_new(struct aws_plugin *p, const struct lcm_call *call,
                                 enum aws_kind kind, const char *action, int cw, int safe,
                                 lcm_done_fn done, void *ud, struct lcm_error *err, int *rc)
{
    struct aws_op *op = calloc(1, sizeof *op);
    if (!op) {
        *rc = LCM_E_NOMEM;
        aws_errf(err, LCM_E_NOMEM, 1, 0, "aws: out of memory");
        return NULL;
    }
    op->p = p;
    op->kind = kind;
    op->action = action;
    op->service = cw ? "monitoring" : "ec2";
    op->safe = safe;
    op->done = done;
    op->ud = ud;
    op->notfound_left = p->notfound_retries;
    op->op_id = CALL_HAS(call, op_id) ? call->op_id : 0;
    const char *corr = CALL_STR(call, correlation_id);
    snprintf(op->corr, sizeof op->corr, "%s", corr ? corr : "-");
    op->deadline_ms = CALL_HAS(call, deadline_ms) ? call->deadline_ms : 0;
    const char *region = aws_region(p, call);
    if (!region_ok(region)) {
        *rc = LCM_E_INVAL;
        aws_errf(err, LCM_E_INVAL, 0, 0, "aws: invalid region name");
        goto fail;
    }
    snprintf(op->sigv4, sizeof op->sigv4, "aws:amz:%s:%s", region, op->service);
    if (!(op->url = aws_endpoint(p, cw, region))) {
        *rc = LCM_E_NOMEM;
        aws_errf(err, LCM_E_NOMEM, 1, 0, "aws: out of memory");
        goto fail;
    }
    if ((*rc = aws_creds(p, call, op, err)) != 0) {
        if (*rc == LCM_E_NOMEM)
            aws_errf(err, LCM_E_NOMEM, 1, 0, "aws: out of memory");
        goto fail;
    }
    aws_form_init(&op->form, action, cw ? AWS_CW_VERSION : AWS_EC2_VERSION);
    return op;
fail:
    aws_op_free(op);
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * error mapping
 * ------------------------------------------------------------------------------------------ */

struct aws_errmap { const char *code; int lcm, retryable; enum aws_retry retry; };

static const struct aws_errmap aws_errors[] = {
    /* throttling: refused before doing anything */
    { "RequestLimitExceeded", LCM_E_THROTTLED, 1, RETRY_REJECTED },
    { "Throttling", LCM_E_THROTTLED, 1, RETRY_REJECTED },
    { "ThrottlingException", LCM_E_THROTTLED, 1, RETRY_REJECTED },
    { "RequestThrottled", LCM_E_THROTTLED, 1, RETRY_REJECTED },
    { "RequestThrottledException", LCM_E_THROTTLED, 1, RETRY_REJECTED },
    { "TooManyRequestsException", LCM_E_THROTTLED, 1, RETRY_REJECTED },
    { "SlowDown", LCM_E_THROTTLED, 1, RETRY_REJECTED },
    { "PriorRequestNotComplete", LCM_E_THROTTLED, 1, RETRY_REJECTED },
    /* capacity and quotas: retrying at once rarely helps; the controller retries later,
     * perhaps elsewhere */
    { "InsufficientInstanceCapacity", LCM_E_UNAVAIL, 1, RETRY_NEVER },
    { "InsufficientHostCapacity", LCM_E_UNAVAIL, 1, RETRY_NEVER },
    { "InsufficientReservedInstanceCapacity", LCM_E_UNAVAIL, 1, RETRY_NEVER },
    { "InsufficientAddressCapacity", LCM_E_UNAVAIL, 1, RETRY_NEVER },
    { "InsufficientFreeAddressesInSubnet", LCM_E_UNAVAIL, 1, RETRY_NEVER },
    { "InstanceLimitExceeded", LCM_E_THROTTLED, 1, RETRY_NEVER },
    { "VcpuLimitExceeded", LCM_E_THROTTLED, 1, RETRY_NEVER },
    /* eventual consistency */
    { "InvalidInstanceID.NotFound", LCM_E_NOTFOUND, 1, RETRY_NOTFOUND },
    /* configuration errors: not found, but retrying will not create them */
    { "InvalidAMIID.NotFound", LCM_E_NOTFOUND, 0, RETRY_NEVER },
    { "InvalidAMIID.Unavailable", LCM_E_NOTFOUND, 0, RETRY_NEVER },
    { "InvalidSubnetID.NotFound", LCM_E_NOTFOUND, 0, RETRY_NEVER },
    { "InvalidGroup.NotFound", LCM_E_NOTFOUND, 0, RETRY_NEVER },
    { "InvalidKeyPair.NotFound", LCM_E_NOTFOUND, 0, RETRY_NEVER },
    /* auth: one clear error, never retried */
    { "AuthFailure", LCM_E_AUTH, 0, RETRY_NEVER },
    { "SignatureDoesNotMatch", LCM_E_AUTH, 0, RETRY_NEVER },
    { "UnauthorizedOperation", LCM_E_AUTH, 0, RETRY_NEVER },
    { "InvalidClientTokenId", LCM_E_AUTH, 0, RETRY_NEVER },
    { "InvalidAccessKeyId", LCM_E_AUTH, 0, RETRY_NEVER },
    { "AccessDenied", LCM_E_AUTH, 0, RETRY_NEVER },
    { "AccessDeniedException", LCM_E_AUTH, 0, RETRY_NEVER },
    { "ExpiredToken", LCM_E_AUTH, 0, RETRY_NEVER },
    { "RequestExpired", LCM_E_AUTH, 0, RETRY_NEVER },
    { "IncompleteSignature", LCM_E_AUTH, 0, RETRY_NEVER },
    { "MissingAuthenticationToken", LCM_E_AUTH, 0, RETRY_NEVER },
    { "OptInRequired", LCM_E_AUTH, 0, RETRY_NEVER },
    { "Blocked", LCM_E_AUTH, 0, RETRY_NEVER },
    /* state conflicts: may succeed once the instance settles */
    { "IncorrectInstanceState", LCM_E_CONFLICT, 1, RETRY_NEVER },
    { "IncorrectState", LCM_E_CONFLICT, 1, RETRY_NEVER },
    { "IdempotentParameterMismatch", LCM_E_CONFLICT, 0, RETRY_NEVER },
    /* caller bugs */
    { "InvalidParameterValue", LCM_E_INVAL, 0, RETRY_NEVER },
    { "InvalidParameterCombination", LCM_E_INVAL, 0, RETRY_NEVER },
    { "InvalidParameter", LCM_E_INVAL, 0, RETRY_NEVER },
    { "MissingParameter", LCM_E_INVAL, 0, RETRY_NEVER },
    { "UnknownParameter", LCM_E_INVAL, 0, RETRY_NEVER },
    { "ValidationError", LCM_E_INVAL, 0, RETRY_NEVER },
    { "InvalidAction", LCM_E_INVAL, 0, RETRY_NEVER },
    { "InvalidInstanceID.Malformed", LCM_E_INVAL, 0, RETRY_NEVER },
    { "InvalidID", LCM_E_INVAL, 0, RETRY_NEVER },
    /* server side */
    { "InternalError", LCM_E_UNAVAIL, 1, RETRY_IF_SAFE },
    { "InternalFailure", LCM_E_UNAVAIL, 1, RETRY_IF_SAFE },
    { "ServiceUnavailable", LCM_E_UNAVAIL, 1, RETRY_IF_SAFE },
    { "Unavailable", LCM_E_UNAVAIL, 1, RETRY_IF_SAFE },
};

static struct aws_errmap aws_map_error(const char *code, int status)
{
    for (size_t i = 0; code && i < sizeof aws_errors / sizeof aws_errors[0]; i++)
        if (strcmp(code, aws_errors[i].code) == 0)
            return aws_errors[i];
    if (status == 429)
        return (struct aws_errmap){ code, LCM_E_THROTTLED, 1, RETRY_REJECTED };
    if (status >= 500)
        return (struct aws_errmap){ code, LCM_E_UNAVAIL, 1, RETRY_IF_SAFE };
    if (status == 401 || status == 403)
        return (struct aws_errmap){ code, LCM_E_AUTH, 0, RETRY_NEVER };
    return (struct aws_errmap){ code, LCM_E_REMOTE, 0, RETRY_NEVER };
}

/* ------------------------------------------------------------------------------------------
 * sending, retrying, completing
 * ------------------------------------------------------------------------------------------ */

static void aws_on_http(void *ud, const struct lcm_http_resp *resp);
static void aws_on_timer(void *ud);

static void aws_count(struct aws_op *op, const char *outcome)
{
    char labels[160];
    snprintf(labels, sizeof labels, "action=\"%s\",outcome=\"%s\"", op->action, outcome);
    op->p->hs->metric_inc(op->p->h, "aws_calls_total", labels, 1);
}

static void aws_finish(struct aws_op *op, const struct lcm_error *err, const void *result)
{
    struct aws_plugin *p = op->p;
    op_unlink(p, op);
    aws_count(op, err ? "error" : "ok");
    lcm_done_fn done = op->done;
    void *ud = op->ud;
    aws_op_free(op);
    done(ud, err, result);
}

static void aws_finish_err(struct aws_op *op, int code, int retryable, int status,
                           const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void aws_finish_err(struct aws_op *op, int code, int retryable, int status,
                           const char *fmt, ...)
{
    struct lcm_error e;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lcm_error_set(&e, code, retryable, status, msg);
    aws_finish(op, &e, NULL);
}

static int aws_send(struct aws_op *op)
{
    struct aws_plugin *p = op->p;
    long timeout = p->timeout_ms;
    if (op->deadline_ms > 0) {
        int64_t left = op->deadline_ms - (int64_t)p->hs->monotonic_ms(p->h);
        if (left <= 0)
            return LCM_E_TIMEOUT;
        if (left < timeout)
            timeout = (long)left;
    }
    static const char *const headers[] = {
        "Content-Type: application/x-www-form-urlencoded; charset=utf-8",
        "Accept: text/xml",
    };
    char label[48];
    snprintf(label, sizeof label, "aws.%s", op->service);
    /* max_retries = 0: the host must not retry behind our back, since only the plugin
     * knows whether a 5xx on this action may be repeated. */
    struct lcm_http_req req = {
        .size = sizeof req, .method = "POST", .url = op->url, .headers = headers,
        .nheaders = 2, .body = op->form.buf, .body_len = op->form.len, .timeout_ms = timeout,
        .max_retries = 0, .idempotent = 0, .auth = LCM_HTTP_AUTH_SIGV4, .username = op->ak,
        .password = op->sk, .sigv4 = op->sigv4, .session_token = op->token,
        .metric_label = label,
    };
    op->attempt++;
    int rc = p->hs->http_request(p->h, &req, aws_on_http, op, &op->http_id);
    if (rc == 0)
        op->http_pending = 1;
    return rc;
}

/* Delay before retry number n (n = 1 for the first retry): d = min(cap, base·2^(n-1)),
 * jittered uniformly in [d/2, d] so that many workers throttled together spread out. */
static long aws_backoff(struct aws_plugin *p, int n)
{
    long d = p->backoff_base_ms;
    for (int i = 1; i < n && d < p->backoff_max_ms; i++)
        d *= 2;
    if (d > p->backoff_max_ms)
        d = p->backoff_max_ms;
    long half = d / 2;
    return half + (long)(aws_rand_next(&p->rng) % (uint64_t)(d - half + 1));
}

/* Returns 1 when a retry was scheduled. */
static int aws_maybe_retry(struct aws_op *op, enum aws_retry why, const struct lcm_error *e,
                           const char *code)
{
    struct aws_plugin *p = op->p;
    int allowed = 0;
    switch (why) {
    case RETRY_REJECTED: allowed = op->attempt < p->max_attempts; break;
    case RETRY_IF_SAFE: allowed = op->safe && op->attempt < p->max_attempts; break;
    case RETRY_NOTFOUND: allowed = op->notfound_left > 0; break;
    case RETRY_NEVER: allowed = 0; break;
    }
    if (!allowed || op->cancelled)
        return 0;
    long delay = aws_backoff(p, op->attempt);
    if (op->deadline_ms > 0 &&
        (int64_t)p->hs->monotonic_ms(p->h) + delay >= op->deadline_ms)
        return 0;
    if (p->hs->timer_add(p->h, (uint64_t)delay, aws_on_timer, op, &op->timer_id) != 0)
        return 0;
    if (why == RETRY_NOTFOUND)
        op->notfound_left--;
    op->timer_pending = 1;
    op->last = *e;
    char labels[160];
    snprintf(labels, sizeof labels, "action=\"%s\",code=\"%s\"", op->action,
             code ? code : "transport");
    p->hs->metric_inc(p->h, "aws_retries_total", labels, 1);
    p->hs->log(p->h, LCM_SPI_INFO,
               "msg=\"aws retry\" op=%llu corr=%s action=%s attempt=%d code=%s status=%d "
               "delay_ms=%ld",
               (unsigned long long)op->op_id, op->corr, op->action, op->attempt,
               code ? code : "transport", e->http_status, delay);
    return 1;
}

static void aws_on_timer(void *ud)
{
    struct aws_op *op = ud;
    op->timer_pending = 0;
    if (op->cancelled) {
        aws_finish_err(op, LCM_E_CANCELLED, 1, 0, "aws %s: cancelled", op->action);
        return;
    }
    int rc = aws_send(op);
    if (rc != 0) {
        /* Could not even send the retry: report the error that caused it. */
        struct lcm_error e = op->last;
        if (rc == LCM_E_TIMEOUT)
            aws_errf(&e, LCM_E_TIMEOUT, 1, 0, "aws %s: deadline reached after %d attempts (%s)",
                     op->action, op->attempt, op->last.message);
        aws_finish(op, &e, NULL);
    }
}

/* Parses a 2xx body for op's kind and completes it. */
static void aws_complete_ok(struct aws_op *op, const struct lcm_http_resp *resp)
{
    struct aws_doc *doc = NULL;
    char perr[128];
    if (aws_xml_parse(resp->body, resp->body_len, &doc, perr, sizeof perr) != 0) {
        aws_finish_err(op, LCM_E_PROTO, 0, resp->status, "aws %s: unreadable response: %s",
                       op->action, perr);
        return;
    }
    int rc = -1;
    union {
        struct lcm_cloud_instances inst;
        struct lcm_cloud_changes ch;
        struct lcm_cloud_images img;
        struct lcm_cloud_datapoints dp;
    } r;
    const void *result = NULL;
    switch (op->kind) {
    case AWS_LAUNCH:
    case AWS_DESCRIBE:
        rc = aws_xml_instances(doc, &r.inst);
        result = &r.inst;
        if (rc == 0 && op->kind == AWS_LAUNCH && r.inst.n != 1)
            rc = -1;
        break;
    case AWS_START:
    case AWS_STOP:
    case AWS_TERMINATE:
        rc = aws_xml_changes(doc, &r.ch);
        result = &r.ch;
        break;
    case AWS_IMAGES:
        rc = aws_xml_images(doc, &r.img);
        result = &r.img;
        break;
    case AWS_TAGS:
        rc = aws_xml_return_true(doc, "CreateTagsResponse");
        result = NULL;
        break;
    case AWS_METRICS:
        rc = aws_xml_datapoints(doc, &r.dp, NULL);
        r.dp.unit = op->percent ? "Percent" : NULL;
        result = &r.dp;
        break;
    }
    if (rc != 0)
        aws_finish_err(op, LCM_E_PROTO, 0, resp->status,
                       "aws %s: response did not have the expected shape (root <%s>)",
                       op->action, doc->root->name);
    else
        aws_finish(op, NULL, result);
    aws_doc_free(doc);
}

static void aws_on_http(void *ud, const struct lcm_http_resp *resp)
{
    struct aws_op *op = ud;
    struct aws_plugin *p = op->p;
    op->http_pending = 0;
    if (resp->cancelled || op->cancelled) {
        aws_finish_err(op, LCM_E_CANCELLED, 1, 0, "aws %s: cancelled", op->action);
        return;
    }
    if (resp->status >= 200 && resp->status < 300) {
        aws_complete_ok(op, resp);
        return;
    }
    struct lcm_error e;
    if (resp->status == 0) {
        int code = resp->timed_out ? LCM_E_TIMEOUT : LCM_E_UNAVAIL;
        aws_errf(&e, code, 1, 0, "aws %s: %s (attempt %d)", op->action,
                 resp->error ? resp->error : "no response", op->attempt);
        if (!aws_maybe_retry(op, RETRY_IF_SAFE, &e, NULL))
            aws_finish(op, &e, NULL);
        return;
    }
    struct aws_doc *doc = NULL;
    const char *code = NULL, *msg = NULL;
    char perr[128];
    if (aws_xml_parse(resp->body, resp->body_len, &doc, perr, sizeof perr) == 0)
        aws_xml_error(doc, &code, &msg);
    struct aws_errmap m = aws_map_error(code, resp->status);
    aws_errf(&e, m.lcm, m.retryable, resp->status, "aws %s: %s: %s (http %d, attempt %d)",
             op->action, code ? code : "HTTP error", msg ? msg : "no message", resp->status,
             op->attempt);
    if (m.lcm == LCM_E_AUTH)
        p->hs->log(p->h, LCM_SPI_ERROR,
                   "msg=\"aws refused the credentials\" op=%llu corr=%s action=%s code=%s "
                   "status=%d",
                   (unsigned long long)op->op_id, op->corr, op->action, code ? code : "-",
                   resp->status);
    int retried = aws_maybe_retry(op, m.retry, &e, code);
    aws_doc_free(doc);
    if (!retried)
        aws_finish(op, &e, NULL);
}

/* Sends the first attempt; on failure frees op and fills err (done never runs). */
static int aws_start_op(struct aws_plugin *p, struct aws_op *op, struct lcm_error *err)
{
    if (op->form.oom) {
        aws_op_free(op);
        aws_errf(err, LCM_E_NOMEM, 1, 0, "aws: out of memory");
        return LCM_E_NOMEM;
    }
    int rc = aws_send(op);
    if (rc != 0) {
        aws_errf(err, rc, rc != LCM_E_INVAL, 0, "aws %s: could not send the request (%d)",
                 op->action, rc);
        aws_op_free(op);
        return rc;
    }
    op_link(p, op);
    p->hs->log(p->h, LCM_SPI_DEBUG, "msg=\"aws call\" op=%llu corr=%s action=%s",
               (unsigned long long)op->op_id, op->corr, op->action);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * argument checks
 * ------------------------------------------------------------------------------------------ */

static int strs_ok(const struct lcm_strs *s, size_t max)
{
    if (s->n > max || (s->n && !s->v))
        return 0;
    for (size_t i = 0; i < s->n; i++)
        if (!s->v[i] || !*s->v[i])
            return 0;
    return 1;
}

static int kvs_ok(const struct lcm_kvs *s, size_t max)
{
    if (s->n > max || (s->n && !s->v))
        return 0;
    for (size_t i = 0; i < s->n; i++)
        if (!s->v[i].key || !*s->v[i].key || !s->v[i].value)
            return 0;
    return 1;
}

static const char *kvs_get(const struct lcm_kvs *s, const char *key)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].key, key) == 0)
            return s->v[i].value;
    return NULL;
}

#define BAD_ARGS(err, what)                                                                \
    do {                                                                                   \
        aws_errf((err), LCM_E_INVAL, 0, 0, "aws: %s", (what));                             \
        return LCM_E_INVAL;                                                                \
    } while (0)

/* ------------------------------------------------------------------------------------------
 * operations
 * ------------------------------------------------------------------------------------------ */

static void add_tags(struct aws_form *f, int spec, const struct lcm_kvs *tags, int *k)
{
    for (size_t i = 0; i < tags->n; i++) {
        ++*k;
        aws_form_addf(f, tags->v[i].key, "TagSpecification.%d.Tag.%d.Key", spec, *k);
        aws_form_addf(f, tags->v[i].value, "TagSpecification.%d.Tag.%d.Value", spec, *k);
    }
}

static int aws_launch(void *self, const struct lcm_call *call, const void *vargs,
                      lcm_done_fn done, void *ud, struct lcm_error *err)
{
    struct aws_plugin *p = self;
    const struct lcm_cloud_launch_args *a = vargs;
    if (!a || !done)
        BAD_ARGS(err, "launch: missing arguments");
    if (!a->image_id || !*a->image_id || !a->instance_type || !*a->instance_type)
        BAD_ARGS(err, "launch: image_id and instance_type are required");
    if (!strs_ok(&a->security_group_ids, 64) || !kvs_ok(&a->tags, 48))
        BAD_ARGS(err, "launch: bad security groups or tags");
    if (a->user_data_len && !a->user_data)
        BAD_ARGS(err, "launch: user_data_len without user_data");
    if (a->user_data_len > 16384)
        BAD_ARGS(err, "launch: user data over EC2's 16 KiB limit");
    if (a->root_volume_gb < 0 || a->root_volume_gb > 16384)
        BAD_ARGS(err, "launch: bad root_volume_gb");

    /* The ClientToken makes RunInstances idempotent on AWS: the same token within the
     * region returns the first launch's instance instead of starting another. */
    char token[72];
    const char *worker = CALL_STR(call, worker_id);
    if (a->client_token && *a->client_token) {
        if (!aws_client_token_valid(a->client_token))
            BAD_ARGS(err, "launch: client_token must be 1..64 printable ASCII characters");
        snprintf(token, sizeof token, "%s", a->client_token);
    } else if (worker && *worker) {
        aws_client_token(worker, token, sizeof token);
    } else {
        token[0] = '\0';
    }

    int rc;
    struct aws_op *op = aws_op_new(p, call, AWS_LAUNCH, "RunInstances", 0, token[0] != '\0',
                                   done, ud, err, &rc);
    if (!op)
        return rc;
    if (!token[0])
        p->hs->log(p->h, LCM_SPI_WARN,
                   "msg=\"launch without worker id or client token: not idempotent, 5xx not "
                   "retried\" corr=%s", op->corr);
    struct aws_form *f = &op->form;
    aws_form_add(f, "ImageId", a->image_id);
    aws_form_add(f, "InstanceType", a->instance_type);
    aws_form_add(f, "MinCount", "1");
    aws_form_add(f, "MaxCount", "1");
    if (token[0])
        aws_form_add(f, "ClientToken", token);
    if (a->subnet_id && *a->subnet_id)
        aws_form_add(f, "SubnetId", a->subnet_id);
    for (size_t i = 0; i < a->security_group_ids.n; i++)
        aws_form_addf(f, a->security_group_ids.v[i], "SecurityGroupId.%zu", i + 1);
    if (a->key_name && *a->key_name)
        aws_form_add(f, "KeyName", a->key_name);
    if (a->iam_instance_profile && *a->iam_instance_profile)
        aws_form_add(f, strncmp(a->iam_instance_profile, "arn:", 4) == 0
                            ? "IamInstanceProfile.Arn" : "IamInstanceProfile.Name",
                     a->iam_instance_profile);
    if (a->user_data_len) {
        char *b64 = aws_base64(a->user_data, a->user_data_len);
        if (!b64)
            f->oom = 1;
        else
            aws_form_add(f, "UserData", b64);
        free(b64);
    }
    if (a->root_volume_gb > 0) {
        char gb[16];
        snprintf(gb, sizeof gb, "%d", a->root_volume_gb);
        aws_form_add(f, "BlockDeviceMapping.1.DeviceName", p->root_device);
        aws_form_add(f, "BlockDeviceMapping.1.Ebs.VolumeSize", gb);
        aws_form_add(f, "BlockDeviceMapping.1.Ebs.VolumeType", p->root_volume_type);
        aws_form_add(f, "BlockDeviceMapping.1.Ebs.DeleteOnTermination", "true");
    }
    /* The LCM tags go on the instance and its volumes at launch, so an instance is never
     * visible without them (discovery and the launch-once check rely on lcm:worker_id). */
    struct lcm_kv extra[2];
    size_t nextra = 0;
    if (worker && *worker && !kvs_get(&a->tags, "lcm:worker_id"))
        extra[nextra++] = (struct lcm_kv){ "lcm:worker_id", worker };
    if (!kvs_get(&a->tags, "lcm:managed_by"))
        extra[nextra++] = (struct lcm_kv){ "lcm:managed_by", "lcm" };
    struct lcm_kvs ex = { extra, nextra };
    static const char *const rtypes[] = { "instance", "volume" };
    for (int s = 1; s <= 2; s++) {
        int k = 0;
        aws_form_addf(f, rtypes[s - 1], "TagSpecification.%d.ResourceType", s);
        add_tags(f, s, &a->tags, &k);
        add_tags(f, s, &ex, &k);
    }
    return aws_start_op(p, op, err);
}

static int aws_describe(void *self, const struct lcm_call *call, const void *vargs,
                        lcm_done_fn done, void *ud, struct lcm_error *err)
{
    struct aws_plugin *p = self;
    const struct lcm_cloud_describe_args *a = vargs;
    if (!a || !done)
        BAD_ARGS(err, "describe: missing arguments");
    if (!strs_ok(&a->instance_ids, AWS_MAX_LIST) || !kvs_ok(&a->tag_filters, 50) ||
        !strs_ok(&a->states, 6))
        BAD_ARGS(err, "describe: bad instance ids, tag filters or states");
    int rc;
    struct aws_op *op = aws_op_new(p, call, AWS_DESCRIBE, "DescribeInstances", 0, 1, done, ud,
                                   err, &rc);
    if (!op)
        return rc;
    struct aws_form *f = &op->form;
    for (size_t i = 0; i < a->instance_ids.n; i++)
        aws_form_addf(f, a->instance_ids.v[i], "InstanceId.%zu", i + 1);
    int nf = 0;
    for (size_t i = 0; i < a->tag_filters.n; i++) {
        const struct lcm_kv *kv = &a->tag_filters.v[i];
        char name[200];
        nf++;
        /* "filter:<name>" passes an EC2 filter through (e.g. filter:image-id), since the
         * SPI's describe args have no field for non-tag filters. */
        if (strncmp(kv->key, "filter:", 7) == 0) {
            snprintf(name, sizeof name, "%s", kv->key + 7);
            aws_form_addf(f, name, "Filter.%d.Name", nf);
            aws_form_addf(f, kv->value, "Filter.%d.Value.1", nf);
        } else if (strcmp(kv->value, "*") == 0) {
            aws_form_addf(f, "tag-key", "Filter.%d.Name", nf);
            aws_form_addf(f, kv->key, "Filter.%d.Value.1", nf);
        } else {
            snprintf(name, sizeof name, "tag:%s", kv->key);
            aws_form_addf(f, name, "Filter.%d.Name", nf);
            aws_form_addf(f, kv->value, "Filter.%d.Value.1", nf);
        }
    }
    if (a->states.n) {
        nf++;
        aws_form_addf(f, "instance-state-name", "Filter.%d.Name", nf);
        for (size_t i = 0; i < a->states.n; i++)
            aws_form_addf(f, a->states.v[i], "Filter.%d.Value.%zu", nf, i + 1);
    }
    /* EC2 refuses MaxResults together with instance ids. */
    if (a->max_results > 0 && a->instance_ids.n == 0) {
        char mr[16];
        snprintf(mr, sizeof mr, "%d", a->max_results < 5 ? 5 : a->max_results > 1000
                                                                  ? 1000 : a->max_results);
        aws_form_add(f, "MaxResults", mr);
    }
    if (a->next_token && *a->next_token)
        aws_form_add(f, "NextToken", a->next_token);
    /* Only a lookup by id right after a launch hits eventual consistency worth waiting for. */
    if (a->instance_ids.n == 0)
        op->notfound_left = 0;
    return aws_start_op(p, op, err);
}

static int aws_ids_op(void *self, const struct lcm_call *call, const void *vargs,
                      lcm_done_fn done, void *ud, struct lcm_error *err, enum aws_kind kind,
                      const char *action)
{
    struct aws_plugin *p = self;
    const struct lcm_cloud_ids_args *a = vargs;
    if (!a || !done)
        BAD_ARGS(err, "missing arguments");
    if (a->instance_ids.n == 0 || !strs_ok(&a->instance_ids, AWS_MAX_LIST))
        BAD_ARGS(err, "instance_ids must name 1..1000 instances");
    int rc;
    /* Start/stop/terminate converge on a state, so repeating one is harmless. */
    struct aws_op *op = aws_op_new(p, call, kind, action, 0, 1, done, ud, err, &rc);
    if (!op)
        return rc;
    for (size_t i = 0; i < a->instance_ids.n; i++)
        aws_form_addf(&op->form, a->instance_ids.v[i], "InstanceId.%zu", i + 1);
    if (kind == AWS_STOP && a->force)
        aws_form_add(&op->form, "Force", "true");
    return aws_start_op(p, op, err);
}

static int aws_start(void *self, const struct lcm_call *call, const void *args,
                     lcm_done_fn done, void *ud, struct lcm_error *err)
{
    return aws_ids_op(self, call, args, done, ud, err, AWS_START, "StartInstances");
}

static int aws_stop(void *self, const struct lcm_call *call, const void *args, lcm_done_fn done,
                    void *ud, struct lcm_error *err)
{
    return aws_ids_op(self, call, args, done, ud, err, AWS_STOP, "StopInstances");
}

static int aws_terminate(void *self, const struct lcm_call *call, const void *args,
                         lcm_done_fn done, void *ud, struct lcm_error *err)
{
    return aws_ids_op(self, call, args, done, ud, err, AWS_TERMINATE, "TerminateInstances");
}

static int aws_find_image(void *self, const struct lcm_call *call, const void *vargs,
                          lcm_done_fn done, void *ud, struct lcm_error *err)
{
    struct aws_plugin *p = self;
    const struct lcm_cloud_find_image_args *a = vargs;
    if (!a || !done || !a->name_pattern || !*a->name_pattern)
        BAD_ARGS(err, "find_image: name_pattern is required");
    if (!strs_ok(&a->owners, 16))
        BAD_ARGS(err, "find_image: bad owners");
    int rc;
    struct aws_op *op = aws_op_new(p, call, AWS_IMAGES, "DescribeImages", 0, 1, done, ud, err,
                                   &rc);
    if (!op)
        return rc;
    struct aws_form *f = &op->form;
    for (size_t i = 0; i < a->owners.n; i++)
        aws_form_addf(f, a->owners.v[i], "Owner.%zu", i + 1);
    aws_form_add(f, "Filter.1.Name", "name");
    aws_form_add(f, "Filter.1.Value.1", a->name_pattern);
    aws_form_add(f, "Filter.2.Name", "state");
    aws_form_add(f, "Filter.2.Value.1", "available");
    return aws_start_op(p, op, err);
}

static int aws_create_tags(void *self, const struct lcm_call *call, const void *vargs,
                           lcm_done_fn done, void *ud, struct lcm_error *err)
{
    struct aws_plugin *p = self;
    const struct lcm_cloud_tags_args *a = vargs;
    if (!a || !done)
        BAD_ARGS(err, "create_tags: missing arguments");
    if (a->resource_ids.n == 0 || !strs_ok(&a->resource_ids, AWS_MAX_LIST) || a->tags.n == 0 ||
        !kvs_ok(&a->tags, 50))
        BAD_ARGS(err, "create_tags: needs 1..1000 resource ids and 1..50 tags");
    int rc;
    struct aws_op *op = aws_op_new(p, call, AWS_TAGS, "CreateTags", 0, 1, done, ud, err, &rc);
    if (!op)
        return rc;
    for (size_t i = 0; i < a->resource_ids.n; i++)
        aws_form_addf(&op->form, a->resource_ids.v[i], "ResourceId.%zu", i + 1);
    for (size_t i = 0; i < a->tags.n; i++) {
        aws_form_addf(&op->form, a->tags.v[i].key, "Tag.%zu.Key", i + 1);
        aws_form_addf(&op->form, a->tags.v[i].value, "Tag.%zu.Value", i + 1);
    }
    return aws_start_op(p, op, err);
}

static int aws_metrics(void *self, const struct lcm_call *call, const void *vargs,
                       lcm_done_fn done, void *ud, struct lcm_error *err)
{
    struct aws_plugin *p = self;
    const struct lcm_cloud_metrics_args *a = vargs;
    if (!a || !done || !a->instance_id || !*a->instance_id)
        BAD_ARGS(err, "metrics: instance_id is required");
    if (a->start_ms <= 0 || a->end_ms <= a->start_ms)
        BAD_ARGS(err, "metrics: need 0 < start_ms < end_ms");
    if (a->period_s < 0 || (a->period_s && a->period_s % 60 && a->period_s > 60))
        BAD_ARGS(err, "metrics: period_s must be a multiple of 60 (or 1/5/10/30)");
    const char *stat = a->statistic && *a->statistic ? a->statistic : "Average";
    const char *metric = a->metric && *a->metric ? a->metric : "CPUUtilization";
    int rc;
    struct aws_op *op = aws_op_new(p, call, AWS_METRICS, "GetMetricData", 1, 1, done, ud, err,
                                   &rc);
    if (!op)
        return rc;
    op->percent = strcmp(metric, "CPUUtilization") == 0;
    struct aws_form *f = &op->form;
    char t0[32], t1[32], period[16];
    aws_iso8601(a->start_ms, t0);
    aws_iso8601(a->end_ms, t1);
    snprintf(period, sizeof period, "%d", a->period_s ? a->period_s : 300);
    aws_form_add(f, "StartTime", t0);
    aws_form_add(f, "EndTime", t1);
    aws_form_add(f, "ScanBy", "TimestampAscending");
    const char *q = "MetricDataQueries.member.1.";
    aws_form_addf(f, "m1", "%sId", q);
    aws_form_addf(f, "AWS/EC2", "%sMetricStat.Metric.Namespace", q);
    aws_form_addf(f, metric, "%sMetricStat.Metric.MetricName", q);
    aws_form_addf(f, "InstanceId", "%sMetricStat.Metric.Dimensions.member.1.Name", q);
    aws_form_addf(f, a->instance_id, "%sMetricStat.Metric.Dimensions.member.1.Value", q);
    aws_form_addf(f, period, "%sMetricStat.Period", q);
    aws_form_addf(f, stat, "%sMetricStat.Stat", q);
    aws_form_addf(f, "true", "%sReturnData", q);
    return aws_start_op(p, op, err);
}

/* ------------------------------------------------------------------------------------------
 * lifecycle
 * ------------------------------------------------------------------------------------------ */

static int aws_create(const struct lcm_host_services *hs, struct lcm_host *h, void **self,
                      struct lcm_error *err)
{
    if (!hs || hs->size < LCM_SPI_SIZE_UPTO(struct lcm_host_services, config_bool)) {
        lcm_error_set(err, LCM_E_CONFIG, 0, 0, "aws: host services table too old");
        return LCM_E_CONFIG;
    }
    struct aws_plugin *p = calloc(1, sizeof *p);
    if (!p) {
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "aws: out of memory");
        return LCM_E_NOMEM;
    }
    p->hs = hs;
    p->h = h;
    p->max_attempts = aws_cfg_int(p, "max_attempts", 4, 1, 20);
    p->notfound_retries = aws_cfg_int(p, "notfound_retries", 2, 0, 20);
    p->backoff_base_ms = aws_cfg_int(p, "backoff_base_ms", 200, 1, 600000);
    p->backoff_max_ms = aws_cfg_int(p, "backoff_max_ms", 5000, 1, 600000);
    if (p->backoff_max_ms < p->backoff_base_ms)
        p->backoff_max_ms = p->backoff_base_ms;
    p->timeout_ms = aws_cfg_int(p, "request_timeout_ms", 20000, 100, 600000);
    p->root_device = hs->config_str(h, "root_device_name");
    p->root_volume_type = hs->config_str(h, "root_volume_type");
    if (!p->root_device)
        p->root_device = "/dev/sda1";
    if (!p->root_volume_type)
        p->root_volume_type = "gp3";
    /* Jitter only has to differ between replicas and restarts, not be unpredictable. */
    p->rng = hs->monotonic_ms(h) * 0x9E3779B97F4A7C15ULL ^ (uint64_t)hs->wall_ms(h) ^
             (uint64_t)(uintptr_t)p;
    if (!p->rng)
        p->rng = 0x2545F4914F6CDD1DULL;
    int from_env = aws_getenv("AWS_ACCESS_KEY_ID") != NULL;
    hs->log(h, LCM_SPI_INFO,
            "msg=\"aws provider ready\" region=%s credentials=%s max_attempts=%d "
            "backoff_base_ms=%ld backoff_max_ms=%ld",
            aws_region(p, NULL), from_env ? "env" : "config", p->max_attempts,
            p->backoff_base_ms, p->backoff_max_ms);
    *self = p;
    return 0;
}

/* Host shutdown: every op in flight ends now with LCM_E_CANCELLED. The host drops our
 * pending timers and HTTP requests right after, so freeing the ops here is safe. */
static void aws_stop_all(void *self)
{
    struct aws_plugin *p = self;
    while (p->ops) {
        struct aws_op *op = p->ops;
        if (op->timer_pending)
            p->hs->timer_cancel(p->h, op->timer_id);
        if (op->http_pending)
            p->hs->http_cancel(p->h, op->http_id);
        op->timer_pending = op->http_pending = 0;
        struct lcm_error e;
        aws_errf(&e, LCM_E_CANCELLED, 1, 0, "aws %s: host shutting down", op->action);
        aws_finish(op, &e, NULL);
    }
}

static void aws_destroy(void *self)
{
    struct aws_plugin *p = self;
    if (!p)
        return;
    /* Without a stop() first, the host has already completed our ops; only free them. */
    while (p->ops) {
        struct aws_op *op = p->ops;
        op_unlink(p, op);
        aws_op_free(op);
    }
    free(p);
}

static void aws_cancel_timer_fired(void *ud)
{
    struct aws_op *op = ud;
    op->timer_pending = 0;
    aws_finish_err(op, LCM_E_CANCELLED, 1, 0, "aws %s: cancelled", op->action);
}

static void aws_cancel(void *self, uint64_t op_id)
{
    struct aws_plugin *p = self;
    for (struct aws_op *op = p->ops; op; op = op->next) {
        if (op->op_id != op_id || op->cancelled)
            continue;
        op->cancelled = 1;
        if (op->http_pending) {
            p->hs->http_cancel(p->h, op->http_id);   /* its callback completes the op */
        } else if (op->timer_pending) {
            /* Waiting between attempts: complete from the loop, never from inside cancel.
             * Arm the new timer first so the op never ends up with neither; if that fails,
             * the retry timer completes it as cancelled when it fires. */
            uint64_t nid;
            if (p->hs->timer_add(p->h, 0, aws_cancel_timer_fired, op, &nid) == 0) {
                if (p->hs->timer_cancel(p->h, op->timer_id) == 0)
                    op->timer_id = nid;
                else
                    p->hs->timer_cancel(p->h, nid);
            }
        }
        return;
    }
}

static const struct lcm_cloud_ops aws_ops = {
    .size = sizeof(struct lcm_cloud_ops),
    .launch = aws_launch,
    .describe = aws_describe,
    .start = aws_start,
    .stop = aws_stop,
    .terminate = aws_terminate,
    .find_image = aws_find_image,
    .create_tags = aws_create_tags,
    .metrics = aws_metrics,
};

LCM_PLUGIN_DESCRIPTOR = {
    LCM_PLUGIN_HEADER,
    .kind = LCM_KIND_CLOUD,
    .name = "aws",
    .version = "0.1.0",
    .description = "cloud provider for AWS EC2 and CloudWatch (Query API, SigV4 via the host)",
    .config = aws_config,
    .nconfig = sizeof aws_config / sizeof aws_config[0],
    .create = aws_create,
    .stop = aws_stop_all,
    .destroy = aws_destroy,
    .cancel = aws_cancel,
    .ops = &aws_ops,
    .unimplemented_ops = NULL,
};
