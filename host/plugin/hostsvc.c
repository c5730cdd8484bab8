/* Host services for plugins: the implementation of struct lcm_host_services on lcmd's loop.
 * HTTP goes through host/core/httpc, logs through host/core/log, metrics through
 * host/core/metrics; each plugin's timers and requests are tracked so shutdown can stop them. */
#include "hostsvc.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "core/httpc.h"
#include "core/log.h"
#include "core/metrics.h"
#include "plugin.h"

struct cfgval {
    const struct lcm_plugin_config_key *key;   /* borrowed from the descriptor */
    char *value;                               /* NULL = unset */
    const char *origin;                        /* "default", "config", "env" */
};

struct hs_timer {
    struct lcm_host *h;
    uint64_t id;
    struct event *ev;
    lcm_timer_fn cb;
    void *ud;
    struct hs_timer *prev, *next;
};

/* One plugin HTTP request. Detached at shutdown: h becomes NULL and the completion only frees
 * the record, so a late completion never reaches unloaded plugin code. */
struct hs_http {
    struct lcm_host *h;
    uint64_t id;
    lcm_http_done_fn done;
    void *ud;
    struct hs_http *prev, *next;
};

struct lcm_host {
    char name[64];
    char comp[80];
    struct event_base *base;
    struct lcm_httpc *httpc;
    struct lcm_metrics *metrics;
    struct cfgval *cfg;
    size_t ncfg;
    struct hs_timer *timers;
    struct hs_http *reqs;
    size_t ntimers, nreqs;
    uint64_t next_timer_id;
    int closed;
};

#define DLIST_ADD(head, n)                                                                 \
    do {                                                                                   \
        (n)->prev = NULL;                                                                  \
        (n)->next = (head);                                                                \
        if (head)                                                                          \
            (head)->prev = (n);                                                            \
        (head) = (n);                                                                      \
    } while (0)
#define DLIST_DEL(head, n)                                                                 \
    do {                                                                                   \
        if ((n)->prev)                                                                     \
            (n)->prev->next = (n)->next;                                                   \
        else                                                                               \
            (head) = (n)->next;                                                            \
        if ((n)->next)                                                                     \
            (n)->next->prev = (n)->prev;                                                   \
    } while (0)

static const char *type_name(enum lcm_plugin_config_type t)
{
    switch (t) {
    case LCM_PCFG_STRING: return "string";
    case LCM_PCFG_INT: return "int";
    case LCM_PCFG_BOOL: return "bool";
    case LCM_PCFG_SECRET: return "secret";
    }
    return "?";
}

static int parse_int(const char *s, int64_t *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, int *out)
{
    static const char *const t[] = { "true", "yes", "on", "1" }, *const f[] = { "false", "no",
                                                                              "off", "0" };
    for (int i = 0; s && i < 4; i++) {
        if (strcmp(s, t[i]) == 0) { *out = 1; return 0; }
        if (strcmp(s, f[i]) == 0) { *out = 0; return 0; }
    }
    return -1;
}

static int valid_key_name(const char *s)
{
    if (!s || !*s || strlen(s) > 63)
        return 0;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_'))
            return 0;
    return 1;
}

static int check_value(const struct lcm_plugin_config_key *k, const char *v)
{
    int64_t i;
    int b;
    if (k->type == LCM_PCFG_INT)
        return parse_int(v, &i);
    if (k->type == LCM_PCFG_BOOL)
        return parse_bool(v, &b);
    return 0;
}

/* LCM_PLUGIN_<NAME>_<KEY>: upper case, '-' becomes '_'. */
static void env_name(char *dst, size_t cap, const char *plugin, const char *key)
{
    snprintf(dst, cap, "LCM_PLUGIN_%s_%s", plugin, key);
    for (char *p = dst; *p; p++)
        *p = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
}

/* The value of a JSON config item as text; NULL when of an unusable type. */
static char *json_text(const cJSON *it)
{
    char buf[64];
    if (cJSON_IsString(it))
        return strdup(it->valuestring);
    if (cJSON_IsBool(it))
        return strdup(cJSON_IsTrue(it) ? "true" : "false");
    if (cJSON_IsNumber(it)) {
        double d = it->valuedouble;
        if (d == (double)(long long)d)
            snprintf(buf, sizeof buf, "%lld", (long long)d);
        else
            snprintf(buf, sizeof buf, "%.17g", d);
        return strdup(buf);
    }
    return NULL;
}

static int load_config(struct lcm_host *h, const struct lcm_plugin_descriptor *d,
                       const struct lcm_plugin_host_ctx *ctx, char *err, size_t errlen)
{
    if (d->nconfig && !d->config) {
        snprintf(err, errlen, "config schema: nconfig=%zu but no keys", d->nconfig);
        return -1;
    }
    if (d->nconfig > 256) {
        snprintf(err, errlen, "config schema: too many keys (%zu)", d->nconfig);
        return -1;
    }
    h->cfg = calloc(d->nconfig ? d->nconfig : 1, sizeof *h->cfg);
    if (!h->cfg) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    h->ncfg = d->nconfig;
    for (size_t i = 0; i < d->nconfig; i++) {
        const struct lcm_plugin_config_key *k = &d->config[i];
        h->cfg[i].key = k;
        if (!valid_key_name(k->name)) {
            snprintf(err, errlen, "config schema: key %zu has an invalid name", i);
            return -1;
        }
        if (k->type < LCM_PCFG_STRING || k->type > LCM_PCFG_SECRET) {
            snprintf(err, errlen, "config schema: key %s has unknown type %d", k->name,
                     (int)k->type);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(d->config[j].name, k->name) == 0) {
                snprintf(err, errlen, "config schema: key %s declared twice", k->name);
                return -1;
            }
        if (k->default_value && check_value(k, k->default_value) != 0) {
            snprintf(err, errlen, "config schema: default of %s is not a valid %s", k->name,
                     type_name(k->type));
            return -1;
        }
    }

    const cJSON *mine = ctx && ctx->config
        ? cJSON_GetObjectItemCaseSensitive((cJSON *)ctx->config, d->name) : NULL;
    if (mine && !cJSON_IsObject(mine)) {
        snprintf(err, errlen, "config: the value for plugin %s is not an object", d->name);
        return -1;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, mine) {
        size_t i;
        for (i = 0; i < h->ncfg; i++)
            if (strcmp(h->cfg[i].key->name, it->string) == 0)
                break;
        if (i == h->ncfg) {
            snprintf(err, errlen, "config: unknown key %.64s", it->string);
            return -1;
        }
        char *v = json_text(it);
        if (!v) {
            snprintf(err, errlen, "config: key %s: expected %s", it->string,
                     type_name(h->cfg[i].key->type));
            return -1;
        }
        h->cfg[i].value = v;
        h->cfg[i].origin = "config";
    }
    for (size_t i = 0; i < h->ncfg; i++) {
        struct cfgval *c = &h->cfg[i];
        char en[160];
        env_name(en, sizeof en, d->name, c->key->name);
        const char *ev = getenv(en);
        if (ev) {
            free(c->value);
            c->value = strdup(ev);
            c->origin = "env";
        } else if (!c->value && c->key->default_value) {
            c->value = strdup(c->key->default_value);
            c->origin = "default";
        }
        if (c->origin && !c->value) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        if (!c->value && c->key->required) {
            snprintf(err, errlen, "config: required key %s is not set", c->key->name);
            return -1;
        }
        /* Never echo the value: it may be a secret put in the wrong key. */
        if (c->value && check_value(c->key, c->value) != 0) {
            snprintf(err, errlen, "config: key %s (%s): expected %s", c->key->name, c->origin,
                     type_name(c->key->type));
            return -1;
        }
    }
    return 0;
}

struct lcm_host *lcm_hostsvc_new(const struct lcm_plugin_descriptor *d,
                                 const struct lcm_plugin_host_ctx *ctx, char *err,
                                 size_t errlen)
{
    struct lcm_host *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(h->name, sizeof h->name, "%s", d->name);
    snprintf(h->comp, sizeof h->comp, "plugin.%s", d->name);
    h->base = ctx->base;
    h->httpc = ctx->httpc;
    h->metrics = ctx->metrics;
    h->next_timer_id = 1;
    if (load_config(h, d, ctx, err, errlen) != 0) {
        lcm_hostsvc_free(h);
        return NULL;
    }
    return h;
}

void lcm_hostsvc_close(struct lcm_host *h)
{
    if (!h)
        return;
    h->closed = 1;
    while (h->timers) {
        struct hs_timer *t = h->timers;
        DLIST_DEL(h->timers, t);
        event_free(t->ev);
        free(t);
    }
    h->ntimers = 0;
    while (h->reqs) {
        struct hs_http *r = h->reqs;
        DLIST_DEL(h->reqs, r);
        r->h = NULL;
        /* The completion (from the loop, or from lcm_httpc_free) frees r. */
        if (h->httpc)
            lcm_httpc_cancel(h->httpc, r->id);
    }
    h->nreqs = 0;
}

void lcm_hostsvc_free(struct lcm_host *h)
{
    if (!h)
        return;
    lcm_hostsvc_close(h);
    for (size_t i = 0; i < h->ncfg; i++)
        free(h->cfg[i].value);
    free(h->cfg);
    free(h);
}

size_t lcm_hostsvc_pending(const struct lcm_host *h) { return h ? h->ntimers + h->nreqs : 0; }
const char *lcm_hostsvc_comp(const struct lcm_host *h) { return h->comp; }

struct cJSON *lcm_hostsvc_config_json(const struct lcm_host *h)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < h->ncfg; i++) {
        const struct cfgval *c = &h->cfg[i];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            break;
        cJSON_AddStringToObject(o, "name", c->key->name);
        cJSON_AddStringToObject(o, "type", type_name(c->key->type));
        if (c->key->type == LCM_PCFG_SECRET)
            cJSON_AddNullToObject(o, "default");
        else if (c->key->default_value)
            cJSON_AddStringToObject(o, "default", c->key->default_value);
        else
            cJSON_AddNullToObject(o, "default");
        cJSON_AddStringToObject(o, "description", c->key->description ? c->key->description
                                                                        : "");
        cJSON_AddBoolToObject(o, "required", c->key->required != 0);
        cJSON_AddBoolToObject(o, "set", c->value != NULL);
        if (c->key->type != LCM_PCFG_SECRET && c->value)
            cJSON_AddStringToObject(o, "value", c->value);
        if (c->origin)
            cJSON_AddStringToObject(o, "origin", c->origin);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

/* ---- services ---- */

static enum lcm_log_level map_level(enum lcm_spi_log_level l)
{
    switch (l) {
    case LCM_SPI_DEBUG: return LCM_LOG_DEBUG;
    case LCM_SPI_INFO: return LCM_LOG_INFO;
    case LCM_SPI_WARN: return LCM_LOG_WARN;
    default: return LCM_LOG_ERROR;
    }
}

static void hs_logv(struct lcm_host *h, enum lcm_spi_log_level lvl, const char *fmt, va_list ap)
{
    lcm_logv(map_level(lvl), h->comp, fmt ? fmt : "", ap);
}

static void hs_log(struct lcm_host *h, enum lcm_spi_log_level lvl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    hs_logv(h, lvl, fmt, ap);
    va_end(ap);
}

static uint64_t hs_monotonic_ms(struct lcm_host *h)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int64_t hs_wall_ms(struct lcm_host *h)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void timer_fired(evutil_socket_t fd, short what, void *arg)
{
    struct hs_timer *t = arg;
    struct lcm_host *h = t->h;
    lcm_timer_fn cb = t->cb;
    void *ud = t->ud;
    DLIST_DEL(h->timers, t);
    h->ntimers--;
    event_free(t->ev);
    free(t);
    cb(ud);
}

static int hs_timer_add(struct lcm_host *h, uint64_t delay_ms, lcm_timer_fn cb, void *ud,
                        uint64_t *id)
{
    if (!cb)
        return LCM_E_INVAL;
    if (h->closed || !h->base)
        return LCM_E_SHUTDOWN;
    struct hs_timer *t = calloc(1, sizeof *t);
    if (!t)
        return LCM_E_NOMEM;
    t->ev = evtimer_new(h->base, timer_fired, t);
    if (!t->ev) {
        free(t);
        return LCM_E_NOMEM;
    }
    struct timeval tv = { (time_t)(delay_ms / 1000), (suseconds_t)(delay_ms % 1000) * 1000 };
    if (evtimer_add(t->ev, &tv) != 0) {
        event_free(t->ev);
        free(t);
        return LCM_E_INTERNAL;
    }
    t->h = h;
    t->cb = cb;
    t->ud = ud;
    t->id = h->next_timer_id++;
    DLIST_ADD(h->timers, t);
    h->ntimers++;
    if (id)
        *id = t->id;
    return 0;
}

static int hs_timer_cancel(struct lcm_host *h, uint64_t id)
{
    for (struct hs_timer *t = h->timers; t; t = t->next) {
        if (t->id == id) {
            DLIST_DEL(h->timers, t);
            h->ntimers--;
            event_free(t->ev);
            free(t);
            return 0;
        }
    }
    return LCM_E_NOTFOUND;
}

static void http_done(const struct lcm_httpc_resp *resp, void *ud)
{
    struct hs_http *r = ud;
    struct lcm_host *h = r->h;
    if (!h) {                       /* detached at shutdown */
        free(r);
        return;
    }
    DLIST_DEL(h->reqs, r);
    h->nreqs--;
    struct lcm_http_header stackh[32], *hdrs = stackh;
    if (resp->nheaders > 32) {
        hdrs = calloc(resp->nheaders, sizeof *hdrs);
        if (!hdrs)
            hdrs = stackh;
    }
    size_t nh = hdrs == stackh && resp->nheaders > 32 ? 32 : resp->nheaders;
    for (size_t i = 0; i < nh; i++) {
        hdrs[i].name = resp->headers[i].name;
        hdrs[i].value = resp->headers[i].value;
    }
    struct lcm_http_resp out = {
        .status = resp->status, .body = resp->body ? resp->body : "",
        .body_len = resp->body ? resp->body_len : 0, .headers = hdrs, .nheaders = nh,
        .attempts = resp->attempts, .cancelled = resp->cancelled,
        .timed_out = resp->timed_out, .error = resp->error, .elapsed_s = resp->elapsed_s,
    };
    lcm_http_done_fn done = r->done;
    void *dud = r->ud;
    free(r);
    done(dud, &out);
    if (hdrs != stackh)
        free(hdrs);
}

static int hs_http_request(struct lcm_host *h, const struct lcm_http_req *req,
                           lcm_http_done_fn done, void *ud, uint64_t *id)
{
    if (!req || !done || req->size < LCM_SPI_SIZE_UPTO(struct lcm_http_req, max_response_bytes))
        return LCM_E_INVAL;
    if (h->closed)
        return LCM_E_SHUTDOWN;
    if (!h->httpc)
        return LCM_E_UNAVAIL;
    char label[128];
    snprintf(label, sizeof label, "%s%s%s", h->name, req->metric_label ? "." : "",
             req->metric_label ? req->metric_label : "");
    struct lcm_httpc_req hr = {
        .method = req->method, .url = req->url, .headers = req->headers,
        .nheaders = req->nheaders, .body = req->body, .body_len = req->body_len,
        .timeout_ms = req->timeout_ms, .connect_timeout_ms = req->connect_timeout_ms,
        .max_retries = req->max_retries, .idempotent = req->idempotent,
        .insecure = req->insecure, .ca_file = req->ca_file,
        .auth = (enum lcm_httpc_auth)req->auth, .username = req->username,
        .password = req->password, .bearer = req->bearer, .sigv4 = req->sigv4,
        .session_token = req->session_token, .metric_label = label,
        .max_response_bytes = req->max_response_bytes,
    };
    struct hs_http *r = calloc(1, sizeof *r);
    if (!r)
        return LCM_E_NOMEM;
    r->h = h;
    r->done = done;
    r->ud = ud;
    int rc = lcm_httpc_request(h->httpc, &hr, http_done, r, &r->id);
    if (rc != 0) {
        free(r);
        return LCM_E_INVAL;
    }
    DLIST_ADD(h->reqs, r);
    h->nreqs++;
    if (id)
        *id = r->id;
    return 0;
}

static int hs_http_cancel(struct lcm_host *h, uint64_t id)
{
    for (struct hs_http *r = h->reqs; r; r = r->next)
        if (r->id == id)
            return h->httpc && lcm_httpc_cancel(h->httpc, id) == 0 ? 0 : LCM_E_NOTFOUND;
    return LCM_E_NOTFOUND;
}

static const struct cfgval *cfg_find(const struct lcm_host *h, const char *key)
{
    for (size_t i = 0; key && i < h->ncfg; i++)
        if (strcmp(h->cfg[i].key->name, key) == 0)
            return &h->cfg[i];
    return NULL;
}

static int hs_secret(struct lcm_host *h, const char *name, char *buf, size_t cap)
{
    if (!name || !*name || !buf || cap == 0 || strlen(name) > 100)
        return LCM_E_INVAL;
    char env[112] = "LCM_", lower[101];
    size_t i;
    for (i = 0; name[i]; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!(isalnum(c) || c == '_'))
            return LCM_E_INVAL;
        env[4 + i] = (char)toupper(c);
        lower[i] = (char)tolower(c);
    }
    env[4 + i] = '\0';
    lower[i] = '\0';
    const char *v = getenv(env);
    if (!v) {
        const struct cfgval *c = cfg_find(h, lower);
        if (c && c->key->type == LCM_PCFG_SECRET)
            v = c->value;
    }
    if (!v)
        return LCM_E_NOTFOUND;
    size_t n = strlen(v);
    if (n + 1 > cap)
        return LCM_E_INVAL;
    memcpy(buf, v, n + 1);
    return (int)n;
}

static void metric_name(char *dst, size_t cap, const char *name)
{
    snprintf(dst, cap, "lcm_plugin_%s", name ? name : "");
    for (char *p = dst; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_' || *p == ':'))
            *p = '_';
}

static void metric_labels(char *dst, size_t cap, const struct lcm_host *h, const char *labels)
{
    char esc[128];
    lcm_metrics_escape(esc, sizeof esc, h->name);
    snprintf(dst, cap, "plugin=\"%s\"%s%s", esc, labels && *labels ? "," : "",
             labels && *labels ? labels : "");
}

static void hs_metric_inc(struct lcm_host *h, const char *name, const char *labels, double by)
{
    if (!h->metrics)
        return;
    char n[128], l[512];
    metric_name(n, sizeof n, name);
    metric_labels(l, sizeof l, h, labels);
    lcm_metrics_inc(h->metrics, n, l, by);
}

static void hs_metric_observe(struct lcm_host *h, const char *name, const char *labels,
                              double seconds)
{
    if (!h->metrics)
        return;
    char n[128], l[512];
    metric_name(n, sizeof n, name);
    metric_labels(l, sizeof l, h, labels);
    lcm_metrics_observe(h->metrics, n, l, seconds);
}

static void hs_metric_set(struct lcm_host *h, const char *name, const char *labels, double v)
{
    if (!h->metrics)
        return;
    char n[128], l[512];
    metric_name(n, sizeof n, name);
    metric_labels(l, sizeof l, h, labels);
    lcm_metrics_set(h->metrics, n, l, v);
}

static const char *hs_config_str(struct lcm_host *h, const char *key)
{
    const struct cfgval *c = cfg_find(h, key);
    return c && c->key->type != LCM_PCFG_SECRET ? c->value : NULL;
}

static int hs_config_int(struct lcm_host *h, const char *key, int64_t *out)
{
    const struct cfgval *c = cfg_find(h, key);
    if (!c || !c->value)
        return LCM_E_NOTFOUND;
    if (c->key->type != LCM_PCFG_INT || !out)
        return LCM_E_INVAL;
    return parse_int(c->value, out) == 0 ? 0 : LCM_E_INVAL;
}

static int hs_config_bool(struct lcm_host *h, const char *key, int *out)
{
    const struct cfgval *c = cfg_find(h, key);
    if (!c || !c->value)
        return LCM_E_NOTFOUND;
    if (c->key->type != LCM_PCFG_BOOL || !out)
        return LCM_E_INVAL;
    return parse_bool(c->value, out) == 0 ? 0 : LCM_E_INVAL;
}

const struct lcm_host_services lcm_hostsvc_table = {
    .size = sizeof(struct lcm_host_services),
    .spi_major = LCM_SPI_MAJOR,
    .spi_minor = LCM_SPI_MINOR,
    .log = hs_log,
    .logv = hs_logv,
    .monotonic_ms = hs_monotonic_ms,
    .wall_ms = hs_wall_ms,
    .timer_add = hs_timer_add,
    .timer_cancel = hs_timer_cancel,
    .http_request = hs_http_request,
    .http_cancel = hs_http_cancel,
    .secret = hs_secret,
    .metric_inc = hs_metric_inc,
    .metric_observe = hs_metric_observe,
    .config_str = hs_config_str,
    .config_int = hs_config_int,
    .config_bool = hs_config_bool,
    .metric_set = hs_metric_set,
};
