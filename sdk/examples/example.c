/* Example provider plugin: the template a third party copies. A "grading" provider whose
 * request_grading op POSTs to <base_url>/api/v1/sessions/{sid}/parts/{pid}/grade through the
 * host's HTTP service; the other ops are declared but answer "not implemented". */
#include <lcm/spi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Configuration the host validates and shows at GET /api/v1/plugins. */
static const struct lcm_plugin_config_key ex_config[] = {
    { "base_url", LCM_PCFG_STRING, "http://127.0.0.1:8090", "Grading engine base URL", 0 },
    { "timeout_ms", LCM_PCFG_INT, "5000", "Per-attempt HTTP timeout", 0 },
    { "api_token", LCM_PCFG_SECRET, NULL, "Bearer token (or env LCM_EXAMPLE_API_TOKEN)", 0 },
};

struct ex_op;

struct ex_plugin {
    const struct lcm_host_services *hs;
    struct lcm_host *h;
    const char *base_url;           /* owned by the host, valid until destroy */
    long timeout_ms;
    struct ex_op *ops;              /* in flight, so stop() can finish them */
};

/* One operation in flight: what the plugin needs to answer its caller exactly once. */
struct ex_op {
    struct ex_plugin *p;
    uint64_t op_id, http_id;
    lcm_done_fn done;
    void *ud;
    struct ex_op *next;
};

static int ex_create(const struct lcm_host_services *hs, struct lcm_host *h, void **self,
                     struct lcm_error *err)
{
    /* Refuse a host whose services table lacks what we use (older host). */
    if (hs->size < LCM_SPI_SIZE_UPTO(struct lcm_host_services, config_bool)) {
        lcm_error_set(err, LCM_E_INVAL, 0, 0, "host services table too old");
        return LCM_E_INVAL;
    }
    struct ex_plugin *p = calloc(1, sizeof *p);
    if (!p) {
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return LCM_E_NOMEM;
    }
    int64_t t = 5000;
    p->hs = hs;
    p->h = h;
    p->base_url = hs->config_str(h, "base_url");
    hs->config_int(h, "timeout_ms", &t);
    p->timeout_ms = (long)t;
    hs->log(h, LCM_SPI_INFO, "msg=\"example plugin ready\" base_url=%s", p->base_url);
    *self = p;
    return 0;
}

static void ex_unlink(struct ex_plugin *p, struct ex_op *o)
{
    for (struct ex_op **pp = &p->ops; *pp; pp = &(*pp)->next)
        if (*pp == o) {
            *pp = o->next;
            return;
        }
}

/* Maps the HTTP outcome to the SPI's error codes. */
static int ex_map(const struct lcm_http_resp *r, struct lcm_error *e)
{
    char msg[200];
    if (r->cancelled) {
        lcm_error_set(e, LCM_E_CANCELLED, 1, 0, "cancelled");
    } else if (r->status == 0) {
        snprintf(msg, sizeof msg, "no response: %s", r->error ? r->error : "?");
        lcm_error_set(e, r->timed_out ? LCM_E_TIMEOUT : LCM_E_UNAVAIL, 1, 0, msg);
    } else if (r->status >= 200 && r->status < 300) {
        return 0;
    } else {
        int code = r->status == 401 || r->status == 403 ? LCM_E_AUTH
                 : r->status == 404                     ? LCM_E_NOTFOUND
                 : r->status == 409                     ? LCM_E_CONFLICT
                 : r->status == 429                     ? LCM_E_THROTTLED
                 : r->status >= 500                     ? LCM_E_UNAVAIL
                                                        : LCM_E_REMOTE;
        snprintf(msg, sizeof msg, "grading engine answered HTTP %d", r->status);
        lcm_error_set(e, code, code == LCM_E_UNAVAIL || code == LCM_E_THROTTLED, r->status, msg);
    }
    return e->code;
}

static void ex_grade_done(void *ud, const struct lcm_http_resp *resp)
{
    struct ex_op *o = ud;
    struct ex_plugin *p = o->p;
    struct lcm_error e = { 0 };
    int rc = ex_map(resp, &e);
    p->hs->metric_observe(p->h, "example_grade_seconds", NULL, resp->elapsed_s);
    ex_unlink(p, o);
    o->done(o->ud, rc ? &e : NULL, NULL);   /* exactly once, from the loop */
    free(o);
}

static int ex_request_grading(void *self, const struct lcm_call *call, const void *args,
                              lcm_done_fn done, void *ud, struct lcm_error *err)
{
    struct ex_plugin *p = self;
    const struct lcm_grd_part_args *a = args;
    if (!a || !a->grading_session_id || !a->part_id) {
        lcm_error_set(err, LCM_E_INVAL, 0, 0, "grading_session_id and part_id are required");
        return LCM_E_INVAL;
    }
    const char *base = call && call->endpoint ? call->endpoint : p->base_url;
    char url[1024], token[512], auth[600];
    int n = snprintf(url, sizeof url, "%s/api/v1/sessions/%s/parts/%s/grade", base,
                     a->grading_session_id, a->part_id);
    if (n < 0 || (size_t)n >= sizeof url) {
        lcm_error_set(err, LCM_E_INVAL, 0, 0, "URL too long");
        return LCM_E_INVAL;
    }
    const char *hdrs[2] = { "Content-Type: application/json", NULL };
    size_t nh = 1;
    if (p->hs->secret(p->h, "EXAMPLE_API_TOKEN", token, sizeof token) > 0) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hdrs[nh++] = auth;
    }
    struct ex_op *o = calloc(1, sizeof *o);
    if (!o) {
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return LCM_E_NOMEM;
    }
    o->p = p;
    o->op_id = call ? call->op_id : 0;
    o->done = done;
    o->ud = ud;
    struct lcm_http_req req = {
        .size = sizeof req, .method = "POST", .url = url, .headers = hdrs, .nheaders = nh,
        .body = "{}", .body_len = 2, .timeout_ms = p->timeout_ms, .max_retries = 0,
        .metric_label = "grade",
    };
    int rc = p->hs->http_request(p->h, &req, ex_grade_done, o, &o->http_id);
    memset(token, 0, sizeof token);      /* the host copied what it needs */
    memset(auth, 0, sizeof auth);
    if (rc != 0) {
        free(o);
        lcm_error_set(err, rc, 1, 0, "could not start the HTTP request");
        return rc;
    }
    o->next = p->ops;
    p->ops = o;
    return 0;                             /* done runs later from ex_grade_done */
}

static int ex_notimpl(void *self, const struct lcm_call *call, const void *args,
                      lcm_done_fn done, void *ud, struct lcm_error *err)
{
    lcm_error_set(err, LCM_E_NOTIMPL, 0, 0, "example plugin: not implemented");
    return LCM_E_NOTIMPL;
}

/* Cancelling the HTTP request makes ex_grade_done run later with cancelled=1, which answers
 * the caller with LCM_E_CANCELLED: still exactly once, never from inside this call. */
static void ex_cancel(void *self, uint64_t op_id)
{
    struct ex_plugin *p = self;
    for (struct ex_op *o = p->ops; o; o = o->next)
        if (o->op_id == op_id)
            p->hs->http_cancel(p->h, o->http_id);
}

/* Shutdown: answer everything now (done may be called from inside stop). */
static void ex_stop(void *self)
{
    struct ex_plugin *p = self;
    while (p->ops) {
        struct ex_op *o = p->ops;
        struct lcm_error e;
        p->ops = o->next;
        p->hs->http_cancel(p->h, o->http_id);
        /* The host drops the request's callback after stop returns, so o can go now. */
        lcm_error_set(&e, LCM_E_CANCELLED, 1, 0, "plugin stopping");
        o->done(o->ud, &e, NULL);
        free(o);
    }
}

static void ex_destroy(void *self) { free(self); }

static const struct lcm_grading_ops ex_ops = {
    .size = sizeof(struct lcm_grading_ops),
    .session_create = ex_notimpl,
    .request_grading = ex_request_grading,
    .get_result = ex_notimpl,
};

static const char *const ex_unimplemented[] = { "session_create", "get_result", NULL };

LCM_PLUGIN_DESCRIPTOR = {
    LCM_PLUGIN_HEADER,
    .kind = LCM_KIND_GRADING,
    .name = "example",
    .version = "1.0.0",
    .description = "SDK example: a grading provider that only requests grading",
    .config = ex_config,
    .nconfig = sizeof ex_config / sizeof ex_config[0],
    .create = ex_create,
    .stop = ex_stop,
    .destroy = ex_destroy,
    .cancel = ex_cancel,
    .ops = &ex_ops,
    .unimplemented_ops = ex_unimplemented,
};
