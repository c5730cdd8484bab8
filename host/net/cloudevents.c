/* POST /api/v1/cloudevents: CloudEvents from LDS and the grading engine. Each event is
 * validated, de-duplicated by source+id, and — for the LDS/grading types lcmd acts on —
 * recorded on the affected session's stream (session.cloudevent_received) before the 202, so
 * an acknowledged event is never lost; the session controller acts on the recorded event. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "ce_parse.h"
#include "core/config.h"
#include "core/httpd.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/redis.h"
#include "net_int.h"
#include "session.h"
#include "store/store.h"

#define MAX_CONFLICT_RETRIES 8

enum ce_class { CE_UNKNOWN, CE_LDS, CE_GRADING };

struct ce_job {
    struct ce_job *prev, *next;
    struct lcm_ce_ingest *c;          /* NULL: orphaned (lcmd freed the part) */
    struct lcm_req *req;
    struct lcm_ce_list list;
    size_t i;                         /* event being processed */
    int retries;
    cJSON *results;                   /* array, one per event */
    char sid[136];                    /* session the current event is recorded on */
    struct event *retry_ev;
    char rid[40];
};

struct lcm_ce_ingest {
    struct lcm_net *n;
    struct ce_job head;
    char *lds_prefix, *grading_prefix;
    long long dedupe_ttl_ms;
    size_t max_batch;
};

static void job_next(struct ce_job *j);

static const char *const lds_events[] = { "session.running", "session.paused",
                                          "session.user-finished", "session.ended", NULL };
static const char *const grading_events[] = { "completed", "failed", NULL };

/* type = <prefix>.<event>[.v<N>] */
static int type_in(const char *type, const char *prefix, const char *const *events)
{
    size_t pl = strlen(prefix);
    if (!pl || strncmp(type, prefix, pl) || type[pl] != '.')
        return 0;
    const char *rest = type + pl + 1;
    for (size_t i = 0; events[i]; i++) {
        size_t el = strlen(events[i]);
        if (strncmp(rest, events[i], el))
            continue;
        const char *v = rest + el;
        if (!*v)
            return 1;
        if (v[0] == '.' && v[1] == 'v' && v[2]) {
            const char *d = v + 2;
            while (*d >= '0' && *d <= '9')
                d++;
            if (!*d)
                return 1;
        }
    }
    return 0;
}

static enum ce_class classify(const struct lcm_ce_ingest *c, const char *type)
{
    if (type_in(type, c->lds_prefix, lds_events))
        return CE_LDS;
    if (type_in(type, c->grading_prefix, grading_events))
        return CE_GRADING;
    return CE_UNKNOWN;
}

/* ---- which session an event is about ------------------------------------------------- */

struct find {
    const char *lds, *grading;
    const struct lcm_session *hit;
};

static int find_each(const char *id, const void *state, void *ud)
{
    (void)id;
    struct find *f = ud;
    const struct lcm_session *s = state;
    if (f->grading && s->grading.grading_session_id && !strcmp(s->grading.grading_session_id, f->grading)) {
        f->hit = s;
        return 1;
    }
    if (f->lds && s->user_session.lds_session_id && !strcmp(s->user_session.lds_session_id, f->lds)) {
        f->hit = s;
        if (!f->grading)
            return 1;
    }
    return 0;
}

static const char *data_str(const cJSON *obj, const char *k)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(obj, "data");
    const cJSON *v = cJSON_IsObject(d) ? cJSON_GetObjectItemCaseSensitive(d, k) : NULL;
    return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

/* LDS: auth_id (lcmd puts its session id there) → lds_session_id / session_id / subject.
 * Grading: grading_session_id / subject → lds_session_id (a grading session created with
 * its LDS session). */
static const struct lcm_session *find_session(struct lcm_ce_ingest *c, const struct lcm_ce *ev,
                                              enum ce_class cls)
{
    struct lcm_store *st = c->n->store;
    struct find f = { 0 };
    if (cls == CE_LDS) {
        const char *aid = data_str(ev->obj, "auth_id");
        const struct lcm_session *s = aid ? lcm_store_get(st, "session", aid) : NULL;
        if (s)
            return s;
        f.lds = data_str(ev->obj, "lds_session_id");
        if (!f.lds)
            f.lds = data_str(ev->obj, "session_id");
        if (!f.lds)
            f.lds = ev->subject;
    } else {
        f.grading = data_str(ev->obj, "grading_session_id");
        if (!f.grading)
            f.grading = ev->subject;
        f.lds = data_str(ev->obj, "lds_session_id");
    }
    if (!f.lds && !f.grading)
        return NULL;
    lcm_store_each(st, "session", find_each, &f);
    return f.hit;
}

/* ---- job lifecycle ------------------------------------------------------------------- */

static void job_free(struct ce_job *j)
{
    if (j->prev) {
        j->prev->next = j->next;
        j->next->prev = j->prev;
    }
    if (j->retry_ev)
        event_free(j->retry_ev);
    lcm_ce_list_clear(&j->list);
    cJSON_Delete(j->results);
    free(j);
}

static void count(struct lcm_ce_ingest *c, const char *result)
{
    if (c->n->metrics) {
        char l[64];
        snprintf(l, sizeof(l), "result=\"%s\"", result);
        lcm_metrics_inc(c->n->metrics, "lcm_cloudevents_received_total", l, 1);
    }
}

static void job_result(struct ce_job *j, const char *status, const char *session_id)
{
    const struct lcm_ce *ev = &j->list.v[j->i];
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "id", ev->id);
        cJSON_AddStringToObject(o, "source", ev->source);
        cJSON_AddStringToObject(o, "type", ev->type);
        cJSON_AddStringToObject(o, "status", status);
        if (session_id)
            cJSON_AddStringToObject(o, "session_id", session_id);
        cJSON_AddItemToArray(j->results, o);
    }
    count(j->c, status);
    lcm_info("cloudevents", "req=%s msg=\"cloudevent\" ce_id=\"%.80s\" source=\"%.80s\" type=\"%.120s\" "
             "result=%s session=%s", j->rid, ev->id, ev->source, ev->type, status,
             session_id ? session_id : "-");
    j->i++;
    j->retries = 0;
}

static void job_fail(struct ce_job *j, int status, const char *detail)
{
    if (j->req) {
        lcm_reply_header(j->req, "Retry-After", "1");
        lcm_reply_problem(j->req, status, "unavailable", "Event store unavailable", detail, NULL);
        j->req = NULL;
    }
    count(j->c, "failed");
    job_free(j);
}

static void job_finish(struct ce_job *j)
{
    if (j->req) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "results", j->results);
        j->results = NULL;
        lcm_reply_json(j->req, 202, o);
        j->req = NULL;
    }
    job_free(j);
}

static void retry_cb(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    job_next(ud);
}

static void job_later(struct ce_job *j, long ms)
{
    if (!j->retry_ev && !(j->retry_ev = evtimer_new(j->c->n->base, retry_cb, j))) {
        job_fail(j, 503, "out of memory");
        return;
    }
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(j->retry_ev, &tv);
}

static void unknown_done(struct lcm_redis *r, redisReply *reply, void *ud)
{
    (void)r;
    struct ce_job *j = ud;
    if (!j->c) {
        job_free(j);
        return;
    }
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        job_fail(j, 503, "could not remember the event (Redis)");
        return;
    }
    if (reply->type == REDIS_REPLY_NIL) {
        job_result(j, "duplicate", NULL);
    } else {
        lcm_warn("cloudevents", "req=%s msg=\"unknown CloudEvent type accepted and ignored\" type=\"%.120s\"",
                 j->rid, j->list.v[j->i].type);
        job_result(j, "ignored-unknown-type", NULL);
    }
    job_next(j);
}

static void record_done(const struct lcm_store_result *res, void *ud)
{
    struct ce_job *j = ud;
    if (!j->c) {
        job_free(j);
        return;
    }
    switch (res->status) {
    case LCM_STORE_OK: {
        job_result(j, "recorded", j->sid);
        break;
    }
    case LCM_STORE_EDUPLICATE:
        job_result(j, "duplicate", NULL);
        break;
    case LCM_STORE_ECONFLICT:
        if (++j->retries <= MAX_CONFLICT_RETRIES) {
            job_later(j, 10L * j->retries);
            return;
        }
        job_fail(j, 503, "the session kept changing; retry");
        return;
    default:
        lcm_warn("cloudevents", "req=%s msg=\"recording the event failed\" err=\"%s\" detail=\"%.200s\"",
                 j->rid, lcm_store_strerror(res->status), res->message);
        job_fail(j, 503, "the event could not be recorded; retry");
        return;
    }
    job_next(j);
}

static void job_next(struct ce_job *j)
{
    struct lcm_ce_ingest *c = j->c;
    if (!c) {
        job_free(j);
        return;
    }
    if (j->i >= j->list.n) {
        job_finish(j);
        return;
    }
    const struct lcm_ce *ev = &j->list.v[j->i];
    char hex[65], key[80];
    lcm_ce_dedupe_hash(ev->source, ev->id, hex);
    snprintf(key, sizeof(key), "ce:%s", hex);
    enum ce_class cls = classify(c, ev->type);
    if (cls == CE_UNKNOWN) {
        char full[96], ttl[32];
        snprintf(full, sizeof(full), "lcm:uniq:%s", key);
        snprintf(ttl, sizeof(ttl), "%lld", c->dedupe_ttl_ms);
        const char *argv[] = { "SET", full, "ignored", "NX", "PX", ttl };
        size_t lens[6];
        for (int k = 0; k < 6; k++)
            lens[k] = strlen(argv[k]);
        if (lcm_redis_commandv(c->n->redis, unknown_done, j, 6, argv, lens) < 0)
            job_fail(j, 503, "Redis is unavailable");
        return;
    }
    if (!lcm_store_loaded(c->n->store)) {
        /* Matching needs the read model: a 503 makes the sender retry in a moment. */
        job_fail(j, 503, "lcmd is still loading its read models; retry");
        return;
    }
    const struct lcm_session *s = find_session(c, ev, cls);
    if (!s) {
        /* Not remembered: a resend may match once the session knows its LDS/grading id. */
        lcm_warn("cloudevents", "req=%s msg=\"no session matches the CloudEvent\" type=\"%.120s\" "
                 "subject=\"%.120s\"", j->rid, ev->type, ev->subject ? ev->subject : "-");
        job_result(j, "unmatched", NULL);
        job_next(j);
        return;
    }
    /* The recorded event carries the CloudEvent as received. */
    cJSON *d = cJSON_CreateObject();
    cJSON *copy = cJSON_Duplicate(ev->obj, 1);
    char *text = NULL;
    if (d && copy) {
        cJSON_AddItemToObject(d, "cloudevent", copy);
        copy = NULL;
        text = cJSON_PrintUnformatted(d);
    }
    cJSON_Delete(copy);
    cJSON_Delete(d);
    if (!text) {
        job_fail(j, 503, "out of memory");
        return;
    }
    snprintf(j->sid, sizeof(j->sid), "%s", s->id);
    char nonce[72];
    snprintf(nonce, sizeof(nonce), "%.40s-%zu", j->rid, j->i);
    char by[160];
    snprintf(by, sizeof(by), "cloudevents:%.140s", ev->source);
    struct lcm_store_event se = { .type = "session.cloudevent_received", .data = text, .by = by };
    struct lcm_store_unique u = { .name = key, .value = nonce, .ttl_ms = c->dedupe_ttl_ms };
    struct lcm_store_change ch = { .kind = &lcm_kind_session, .id = s->id,
                                   .expected_version = s->version, .events = &se, .n_events = 1,
                                   .uniques = &u, .n_uniques = 1 };
    char err[256] = "";
    int rc = lcm_store_commit(c->n->store, &ch, 1, NULL, record_done, j, err, sizeof(err));
    cJSON_free(text);
    if (rc == LCM_STORE_ECONFLICT && ++j->retries <= MAX_CONFLICT_RETRIES) {
        job_later(j, 10L * j->retries);
        return;
    }
    if (rc < 0) {
        lcm_warn("cloudevents", "req=%s msg=\"cannot record the event\" err=\"%s\" detail=\"%.200s\"",
                 j->rid, lcm_store_strerror(rc), err);
        job_fail(j, 503, "the event could not be recorded; retry");
    }
}

/* ---- route --------------------------------------------------------------------------- */

static const char *hdr(void *ud, const char *name)
{
    return lcm_req_header(ud, name);
}

static void h_cloudevents(struct lcm_req *r, void *ud)
{
    struct lcm_ce_ingest *c = ud;
    const char *ct = lcm_req_header(r, "Content-Type");
    int mode = lcm_ce_mode(ct, lcm_req_header(r, "ce-specversion") != NULL);
    if (mode < 0) {
        count(c, "invalid");
        lcm_reply_problem(r, 415, "unsupported-media-type", "Unsupported Media Type",
                          "send application/cloudevents+json, application/cloudevents-batch+json, "
                          "or binary mode with ce-* headers", "Content-Type");
        return;
    }
    size_t len = 0;
    const char *body = lcm_req_body(r, &len);
    struct ce_job *j = calloc(1, sizeof(*j));
    if (!j || !(j->results = cJSON_CreateArray())) {
        free(j);
        lcm_reply_problem(r, 500, "internal", NULL, "out of memory", NULL);
        return;
    }
    struct lcm_ce_err e = { 0 };
    int rc;
    if (mode == LCM_CE_STRUCTURED)
        rc = lcm_ce_parse_structured(body, len, &j->list, &e);
    else if (mode == LCM_CE_BATCH)
        rc = lcm_ce_parse_batch(body, len, c->max_batch, &j->list, &e);
    else
        rc = lcm_ce_parse_binary(hdr, r, NULL, ct, body, len, &j->list, &e);
    if (rc < 0) {
        count(c, "invalid");
        lcm_info("cloudevents", "req=%s msg=\"CloudEvent refused\" field=\"%s\" detail=\"%s\"",
                 lcm_req_id(r), e.field, e.detail);
        lcm_reply_problem(r, e.status ? e.status : 400, "validation", "Invalid CloudEvent",
                          e.detail, e.field[0] ? e.field : NULL);
        job_free(j);
        return;
    }
    j->c = c;
    j->req = r;
    snprintf(j->rid, sizeof(j->rid), "%s", lcm_req_id(r));
    j->prev = c->head.prev;
    j->next = &c->head;
    c->head.prev->next = j;
    c->head.prev = j;
    job_next(j);
}

struct lcm_ce_ingest *lcm_ce_ingest_new(struct lcm_net *n, char *err, size_t errlen)
{
    struct lcm_ce_ingest *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->n = n;
    c->head.prev = c->head.next = &c->head;
    c->lds_prefix = strdup(lcm_config_str(n->cfg, "cloudevents_lds_prefix"));
    c->grading_prefix = strdup(lcm_config_str(n->cfg, "cloudevents_grading_prefix"));
    c->dedupe_ttl_ms = lcm_config_int(n->cfg, "cloudevents_dedupe_ttl_s") * 1000;
    c->max_batch = (size_t)lcm_config_int(n->cfg, "cloudevents_max_batch");
    if (!c->lds_prefix || !c->grading_prefix ||
        lcm_httpd_route(n->httpd, "POST", "/api/v1/cloudevents", 0, "book", h_cloudevents, c) < 0) {
        snprintf(err, errlen, "cannot set up the CloudEvents route");
        lcm_ce_ingest_free(c);
        return NULL;
    }
    if (n->metrics)
        lcm_metrics_declare(n->metrics, "lcm_cloudevents_received_total", LCM_METRIC_COUNTER,
                            "CloudEvents received, by result (recorded, duplicate, unmatched, "
                            "ignored-unknown-type, invalid, failed)");
    return c;
}

void lcm_ce_ingest_free(struct lcm_ce_ingest *c)
{
    if (!c)
        return;
    while (c->head.next != &c->head) {
        struct ce_job *j = c->head.next;
        j->prev->next = j->next;
        j->next->prev = j->prev;
        j->prev = j->next = NULL;
        if (j->req) {
            lcm_reply_problem(j->req, 503, "shutting-down", "Service Unavailable", "lcmd is shutting down", NULL);
            j->req = NULL;
        }
        if (j->retry_ev && evtimer_pending(j->retry_ev, NULL)) {
            job_free(j);    /* only waiting on our own timer */
        } else {
            j->c = NULL;    /* a Redis/store callback is pending: it frees the job */
        }
    }
    free(c->lds_prefix);
    free(c->grading_prefix);
    free(c);
}
