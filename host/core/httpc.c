/* Outbound HTTP: curl's multi interface driven by the libevent loop (socket + timer
 * callbacks). Each request owns copies of everything it needs, may be retried with jittered
 * exponential backoff when idempotent, and finishes by calling done exactly once from the
 * loop — including when cancelled. */
#include "httpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "log.h"
#include "metrics.h"

struct sockctx {
    struct event *ev;
    curl_socket_t fd;
};

struct hreq {
    struct hreq *prev, *next;
    struct lcm_httpc *c;
    uint64_t id;
    CURL *easy;                 /* non-NULL while an attempt is running */
    struct curl_slist *headers;
    char *method, *url, *body, *userpwd, *sigv4, *ca_file, *label, *bearer_hdr, *token_hdr;
    size_t body_len;
    enum lcm_httpc_auth auth;
    long timeout_ms, connect_timeout_ms, backoff_base_ms, backoff_max_ms, backoff_cur_ms;
    int max_retries, idempotent, insecure;
    size_t max_resp;
    int attempts;
    /* response of the current attempt */
    char *resp;
    size_t resp_len, resp_cap;
    struct lcm_httpc_header *rh;
    size_t nrh, caprh;
    int too_large;
    long retry_after_ms;
    struct event *timer;        /* retry delay, or deferred completion */
    int finishing;              /* timer fires completion, not a retry */
    int cancelled;
    int status;
    CURLcode cc;
    char errbuf[CURL_ERROR_SIZE];
    lcm_httpc_done_fn done;
    void *ud;
    struct timespec start;
};

struct lcm_httpc {
    struct event_base *base;
    struct lcm_metrics *metrics;
    CURLM *multi;
    struct event *timer;
    struct hreq head;
    size_t inflight;
    uint64_t next_id;
    long default_timeout_ms, default_connect_timeout_ms;
    int freeing;
};

static int curl_global_done;

static void free_response(struct hreq *q)
{
    free(q->resp);
    q->resp = NULL;
    q->resp_len = q->resp_cap = 0;
    for (size_t i = 0; i < q->nrh; i++) {
        free((char *)q->rh[i].name);
        free((char *)q->rh[i].value);
    }
    free(q->rh);
    q->rh = NULL;
    q->nrh = q->caprh = 0;
    q->too_large = 0;
    q->retry_after_ms = -1;
}

static void hreq_free(struct hreq *q)
{
    q->prev->next = q->next;
    q->next->prev = q->prev;
    q->c->inflight--;
    if (q->easy) {
        curl_multi_remove_handle(q->c->multi, q->easy);
        curl_easy_cleanup(q->easy);
    }
    if (q->timer)
        event_free(q->timer);
    curl_slist_free_all(q->headers);
    free(q->method);
    free(q->url);
    free(q->body);
    if (q->userpwd) {
        memset(q->userpwd, 0, strlen(q->userpwd));
        free(q->userpwd);
    }
    free(q->sigv4);
    free(q->ca_file);
    free(q->label);
    free(q->bearer_hdr);
    free(q->token_hdr);
    free_response(q);
    free(q);
}

static double since_s(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static void finish(struct hreq *q, const char *error)
{
    struct lcm_httpc_resp r;
    memset(&r, 0, sizeof(r));
    r.status = q->cancelled ? 0 : q->status;
    r.body = q->resp ? q->resp : "";
    r.body_len = q->resp_len;
    r.headers = q->rh;
    r.nheaders = q->nrh;
    r.attempts = q->attempts;
    r.cancelled = q->cancelled;
    r.timed_out = !q->cancelled && q->cc == CURLE_OPERATION_TIMEDOUT;
    r.error = q->cancelled ? "cancelled" : error;
    r.elapsed_s = since_s(&q->start);
    char labels[300], code[16];
    snprintf(code, sizeof(code), "%d", r.status);
    snprintf(labels, sizeof(labels), "target=\"%s\",code=\"%s\"", q->label,
             q->cancelled ? "cancelled" : r.status ? code : "error");
    lcm_metrics_inc(q->c->metrics, "lcm_httpc_requests_total", labels, 1);
    snprintf(labels, sizeof(labels), "target=\"%s\"", q->label);
    lcm_metrics_observe(q->c->metrics, "lcm_httpc_request_duration_seconds", labels, r.elapsed_s);
    if (r.error)
        lcm_debug("httpc", "target=%s method=%s attempts=%d err=\"%s\"", q->label, q->method,
                  q->attempts, r.error);
    lcm_httpc_done_fn done = q->done;
    void *ud = q->ud;
    /* Unlink first so that done may start new requests or free things freely. */
    done(&r, ud);
    hreq_free(q);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct hreq *q = ud;
    size_t n = size * nmemb;
    if (q->resp_len + n > q->max_resp) {
        q->too_large = 1;
        return 0;
    }
    if (q->resp_len + n + 1 > q->resp_cap) {
        size_t nc = (q->resp_len + n + 1) * 2;
        if (nc > q->max_resp + 1)
            nc = q->max_resp + 1;
        char *np = realloc(q->resp, nc);
        if (!np)
            return 0;
        q->resp = np;
        q->resp_cap = nc;
    }
    memcpy(q->resp + q->resp_len, ptr, n);
    q->resp_len += n;
    q->resp[q->resp_len] = 0;
    return n;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *ud)
{
    struct hreq *q = ud;
    size_t n = size * nitems;
    if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        /* a new response (redirect, 100-continue): forget earlier headers */
        for (size_t i = 0; i < q->nrh; i++) {
            free((char *)q->rh[i].name);
            free((char *)q->rh[i].value);
        }
        q->nrh = 0;
        return n;
    }
    const char *colon = memchr(buf, ':', n);
    if (!colon || q->nrh >= 128)
        return n;
    const char *v = colon + 1, *e = buf + n;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
        e--;
    if (q->nrh == q->caprh) {
        size_t nc = q->caprh ? q->caprh * 2 : 16;
        struct lcm_httpc_header *nh = realloc(q->rh, nc * sizeof(*nh));
        if (!nh)
            return n;
        q->rh = nh;
        q->caprh = nc;
    }
    char *name = strndup(buf, (size_t)(colon - buf)), *value = strndup(v, (size_t)(e - v));
    if (!name || !value) {
        free(name);
        free(value);
        return n;
    }
    q->rh[q->nrh].name = name;
    q->rh[q->nrh].value = value;
    q->nrh++;
    if (strcasecmp(name, "Retry-After") == 0) {
        char *end;
        long s = strtol(value, &end, 10);
        if (end != value && s >= 0)
            q->retry_after_ms = s * 1000;
    }
    return n;
}

static int start_attempt(struct hreq *q)
{
    CURL *e = curl_easy_init();
    if (!e)
        return -1;
    q->attempts++;
    q->status = 0;
    q->cc = CURLE_OK;
    q->errbuf[0] = 0;
    free_response(q);
    curl_easy_setopt(e, CURLOPT_URL, q->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, q);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, q->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, q);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, q->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, q->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    if (q->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (q->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, q->ca_file);
    if (strcmp(q->method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(q->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(q->method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, q->method);
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body ? q->body : "");
    }
    switch (q->auth) {
    case LCM_HTTPC_AUTH_BASIC:
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERPWD, q->userpwd);
        break;
    case LCM_HTTPC_AUTH_SIGV4:
        curl_easy_setopt(e, CURLOPT_AWS_SIGV4, q->sigv4);
        curl_easy_setopt(e, CURLOPT_USERPWD, q->userpwd);
        break;
    default:
        break;
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, q->headers);
    if (curl_multi_add_handle(q->c->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        return -1;
    }
    q->easy = e;
    return 0;
}

static void timer_fired(evutil_socket_t fd, short what, void *arg)
{
    struct hreq *q = arg;
    (void)fd;
    (void)what;
    if (q->finishing || q->cancelled) {
        finish(q, q->cancelled ? "cancelled" : q->errbuf[0] ? q->errbuf : "could not start request");
        return;
    }
    if (start_attempt(q) < 0) {
        snprintf(q->errbuf, sizeof(q->errbuf), "could not start request");
        q->finishing = 1;
        struct timeval zero = { 0, 0 };
        evtimer_add(q->timer, &zero);
    }
}

static int retryable(const struct hreq *q)
{
    if (!q->idempotent || q->attempts > q->max_retries || q->too_large)
        return 0;
    if (q->cc != CURLE_OK)
        return q->cc == CURLE_COULDNT_CONNECT || q->cc == CURLE_OPERATION_TIMEDOUT ||
               q->cc == CURLE_RECV_ERROR || q->cc == CURLE_SEND_ERROR ||
               q->cc == CURLE_GOT_NOTHING || q->cc == CURLE_PARTIAL_FILE ||
               q->cc == CURLE_COULDNT_RESOLVE_HOST;
    return q->status == 429 || q->status == 500 || q->status == 502 || q->status == 503 ||
           q->status == 504;
}

static void attempt_done(struct hreq *q, CURLcode cc)
{
    long status = 0;
    curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(q->c->multi, q->easy);
    curl_easy_cleanup(q->easy);
    q->easy = NULL;
    q->cc = cc;
    q->status = cc == CURLE_OK ? (int)status : 0;
    if (retryable(q)) {
        long d = q->backoff_cur_ms ? q->backoff_cur_ms * 2 : q->backoff_base_ms;
        if (d > q->backoff_max_ms)
            d = q->backoff_max_ms;
        q->backoff_cur_ms = d;
        /* Jitter in [d/2, d]; a server's Retry-After wins when longer (still capped). */
        long wait = d / 2 + (long)((unsigned)rand() % (unsigned)(d / 2 + 1));
        if (q->retry_after_ms > wait)
            wait = q->retry_after_ms < q->backoff_max_ms ? q->retry_after_ms : q->backoff_max_ms;
        char labels[200];
        snprintf(labels, sizeof(labels), "target=\"%s\"", q->label);
        lcm_metrics_inc(q->c->metrics, "lcm_httpc_retries_total", labels, 1);
        lcm_debug("httpc", "target=%s attempt=%d status=%d err=\"%s\" retry_in_ms=%ld", q->label,
                  q->attempts, q->status, cc ? curl_easy_strerror(cc) : "-", wait);
        struct timeval tv = { wait / 1000, (wait % 1000) * 1000 };
        evtimer_add(q->timer, &tv);
        return;
    }
    const char *err = NULL;
    if (q->too_large)
        err = "response too large";
    else if (cc != CURLE_OK)
        err = q->errbuf[0] ? q->errbuf : curl_easy_strerror(cc);
    finish(q, err);
}

static void check_done(struct lcm_httpc *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct hreq *q = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&q);
        attempt_done(q, msg->data.result);
    }
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    struct lcm_httpc *c = arg;
    int running;
    int flags = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(c->multi, fd, flags, &running);
    check_done(c);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct lcm_httpc *c = arg;
    int running;
    (void)fd;
    (void)what;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(c);
}

static int socket_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct lcm_httpc *c = userp;
    struct sockctx *sc = socketp;
    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (sc) {
            event_free(sc->ev);
            free(sc);
            curl_multi_assign(c->multi, s, NULL);
        }
        return 0;
    }
    short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
    if (!sc) {
        sc = calloc(1, sizeof(*sc));
        if (!sc)
            return -1;
        sc->fd = s;
        curl_multi_assign(c->multi, s, sc);
    } else {
        event_free(sc->ev);
    }
    sc->ev = event_new(c->base, s, kind, on_socket_event, c);
    if (!sc->ev)
        return -1;
    event_add(sc->ev, NULL);
    return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct lcm_httpc *c = userp;
    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(c->timer);
        return 0;
    }
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    evtimer_add(c->timer, &tv);
    return 0;
}

struct lcm_httpc *lcm_httpc_new(struct event_base *base, struct lcm_metrics *metrics)
{
    if (!curl_global_done) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        curl_global_done = 1;
    }
    struct lcm_httpc *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->base = base;
    c->metrics = metrics;
    c->default_timeout_ms = 10000;
    c->default_connect_timeout_ms = 3000;
    c->head.next = c->head.prev = &c->head;
    c->multi = curl_multi_init();
    c->timer = evtimer_new(base, on_timeout, c);
    if (!c->multi || !c->timer) {
        lcm_httpc_free(c);
        return NULL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 64L);
    lcm_metrics_declare(metrics, "lcm_httpc_requests_total", LCM_METRIC_COUNTER, "Outbound HTTP requests by target and final status");
    lcm_metrics_declare(metrics, "lcm_httpc_request_duration_seconds", LCM_METRIC_HISTOGRAM, "Outbound HTTP latency including retries");
    lcm_metrics_declare(metrics, "lcm_httpc_retries_total", LCM_METRIC_COUNTER, "Outbound HTTP retries by target");
    return c;
}

void lcm_httpc_free(struct lcm_httpc *c)
{
    if (!c)
        return;
    c->freeing = 1;
    while (c->head.next != &c->head) {
        struct hreq *q = c->head.next;
        q->cancelled = 1;
        finish(q, "cancelled");
    }
    if (c->timer)
        event_free(c->timer);
    if (c->multi)
        curl_multi_cleanup(c->multi);
    free(c);
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

/* Appends "<prefix><value>" to the request's headers; the string is kept in *keep so that it
 * can be wiped when the request is freed (it holds a credential). 0 or -1 (out of memory). */
static int add_secret_header(struct hreq *q, char **keep, const char *prefix, const char *value)
{
    size_t l = strlen(prefix) + strlen(value) + 1;
    if (!(*keep = malloc(l)))
        return -1;
    snprintf(*keep, l, "%s%s", prefix, value);
    struct curl_slist *n = curl_slist_append(q->headers, *keep);
    if (!n)
        return -1;
    q->headers = n;
    return 0;
}

int lcm_httpc_request(struct lcm_httpc *c, const struct lcm_httpc_req *req,
                      lcm_httpc_done_fn done, void *ud, uint64_t *id)
{
    if (!c || !req || !req->url || !done || c->freeing)
        return -EINVAL;
    if (strncmp(req->url, "http://", 7) != 0 && strncmp(req->url, "https://", 8) != 0)
        return -EINVAL;
    if (req->auth == LCM_HTTPC_AUTH_SIGV4 && (!req->sigv4 || !req->username || !req->password))
        return -EINVAL;
    if (req->auth == LCM_HTTPC_AUTH_BASIC && (!req->username || !req->password))
        return -EINVAL;
    if (req->auth == LCM_HTTPC_AUTH_BEARER && !req->bearer)
        return -EINVAL;
    struct hreq *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->c = c;
    q->id = ++c->next_id;
    q->done = done;
    q->ud = ud;
    q->retry_after_ms = -1;
    clock_gettime(CLOCK_MONOTONIC, &q->start);
    q->method = strdup(req->method ? req->method : "GET");
    q->url = strdup(req->url);
    q->label = strdup(req->metric_label ? req->metric_label : "other");
    q->sigv4 = dup_or_null(req->sigv4);
    q->ca_file = dup_or_null(req->ca_file);
    q->auth = req->auth;
    q->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : c->default_timeout_ms;
    q->connect_timeout_ms = req->connect_timeout_ms > 0 ? req->connect_timeout_ms : c->default_connect_timeout_ms;
    q->max_retries = req->max_retries > 0 ? req->max_retries : 0;
    q->idempotent = req->idempotent;
    q->backoff_base_ms = req->backoff_base_ms > 0 ? req->backoff_base_ms : 100;
    q->backoff_max_ms = req->backoff_max_ms > 0 ? req->backoff_max_ms : 5000;
    q->insecure = req->insecure;
    q->max_resp = req->max_response_bytes ? req->max_response_bytes : 16u << 20;
    int oom = !q->method || !q->url || !q->label || (req->sigv4 && !q->sigv4) ||
              (req->ca_file && !q->ca_file);
    if (req->body && req->body_len) {
        q->body = malloc(req->body_len + 1);
        if (q->body) {
            memcpy(q->body, req->body, req->body_len);
            q->body[req->body_len] = 0;
            q->body_len = req->body_len;
        } else {
            oom = 1;
        }
    }
    if (req->auth == LCM_HTTPC_AUTH_BASIC || req->auth == LCM_HTTPC_AUTH_SIGV4) {
        size_t l = strlen(req->username) + strlen(req->password) + 2;
        if ((q->userpwd = malloc(l)))
            snprintf(q->userpwd, l, "%s:%s", req->username, req->password);
        else
            oom = 1;
    }
    for (size_t i = 0; i < req->nheaders && !oom; i++) {
        struct curl_slist *n = curl_slist_append(q->headers, req->headers[i]);
        if (!n)
            oom = 1;
        else
            q->headers = n;
    }
    /* Our own defaults: no "Expect: 100-continue" round trip on POST bodies. Not for SigV4:
     * curl would sign the suppressed header, and the server could not verify it. */
    if (!oom && req->auth != LCM_HTTPC_AUTH_SIGV4) {
        struct curl_slist *n = curl_slist_append(q->headers, "Expect:");
        if (n)
            q->headers = n;
    }
    if (!oom && req->auth == LCM_HTTPC_AUTH_BEARER)
        oom = add_secret_header(q, &q->bearer_hdr, "Authorization: Bearer ", req->bearer) < 0;
    if (!oom && req->auth == LCM_HTTPC_AUTH_SIGV4 && req->session_token)
        oom = add_secret_header(q, &q->token_hdr, "X-Amz-Security-Token: ", req->session_token) < 0;
    q->timer = evtimer_new(c->base, timer_fired, q);
    /* link before any failure path so hreq_free can unlink */
    q->next = &c->head;
    q->prev = c->head.prev;
    c->head.prev->next = q;
    c->head.prev = q;
    c->inflight++;
    if (oom || !q->timer) {
        hreq_free(q);
        return -ENOMEM;
    }
    /* Start from the loop, never from inside this call, so done cannot run re-entrantly
     * even when curl fails synchronously. */
    struct timeval zero = { 0, 0 };
    evtimer_add(q->timer, &zero);
    if (id)
        *id = q->id;
    return 0;
}

int lcm_httpc_cancel(struct lcm_httpc *c, uint64_t id)
{
    for (struct hreq *q = c->head.next; q != &c->head; q = q->next) {
        if (q->id != id || q->cancelled)
            continue;
        q->cancelled = 1;
        if (q->easy) {
            curl_multi_remove_handle(c->multi, q->easy);
            curl_easy_cleanup(q->easy);
            q->easy = NULL;
        }
        struct timeval zero = { 0, 0 };
        evtimer_add(q->timer, &zero);
        return 0;
    }
    return -ENOENT;
}

size_t lcm_httpc_inflight(const struct lcm_httpc *c) { return c ? c->inflight : 0; }

void lcm_httpc_set_defaults(struct lcm_httpc *c, long timeout_ms, long connect_timeout_ms)
{
    if (timeout_ms > 0)
        c->default_timeout_ms = timeout_ms;
    if (connect_timeout_ms > 0)
        c->default_connect_timeout_ms = connect_timeout_ms;
}

const char *lcm_httpc_resp_header(const struct lcm_httpc_resp *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}
