/* /api/v1/sessions: learners' labs in timeslots. Creation is idempotent: a reservation_id
 * or an Idempotency-Key names the session (its id is derived from them), so the same request
 * again returns the same session (200) and a different body under the same key is refused
 * (409). State changes go through the domain's session commands; what needs the pipeline
 * (teardown) sets desired_status and lets the session controller do it. */
#include "api_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "app.h"
#include "core/auth.h"
#include "core/httpd.h"
#include "core/log.h"
#include "core/redis.h"
#include "domain/definition.h"
#include "domain/jsonx.h"
#include "domain/rfc3339.h"
#include "domain/session.h"
#include "store/store.h"

#define K (&lcm_kind_session)
#define IDEM_TTL_MS (24LL * 3600 * 1000)
#define RETRY_MS 20
#define RETRY_MAX 100   /* × 20 ms: how long to wait for a concurrent creator's session */

static int64_t created(const void *s) { return ((const struct lcm_session *)s)->created_at; }

/* ---- reads ---- */

struct filter {
    struct lcm_req *r;
    int64_t from, to;
    int has_from, has_to;
};

static int keep(const void *st, void *ud)
{
    const struct lcm_session *s = st;
    struct filter *f = ud;
    const char *v;
    if ((v = lcm_req_query(f->r, "status")) && !api_csv_has(v, lcm_fsm_name(&lcm_fsm_session, s->status)))
        return 0;
    if ((v = lcm_req_query(f->r, "worker")) && (!s->worker_id || strcmp(v, s->worker_id)))
        return 0;
    if ((v = lcm_req_query(f->r, "definition")) && (!s->definition_id || strcmp(v, s->definition_id)))
        return 0;
    if ((v = lcm_req_query(f->r, "owner")) && (!s->owner || strcmp(v, s->owner)))
        return 0;
    if ((v = lcm_req_query(f->r, "reservation")) && (!s->reservation_id || strcmp(v, s->reservation_id)))
        return 0;
    /* time range: the timeslot overlaps [from, to) ("now" sessions start at creation) */
    int64_t start = s->start ? s->start : s->created_at;
    if (f->has_to && start >= f->to)
        return 0;
    if (f->has_from && s->end <= f->from)
        return 0;
    return 1;
}

static void h_list(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    if (api_ready(a, r))
        return;
    struct filter f = { .r = r };
    if ((f.has_from = api_query_time(r, "from", &f.from)) < 0 ||
        (f.has_to = api_query_time(r, "to", &f.to)) < 0)
        return;
    const char *st = lcm_req_query(r, "status");
    for (const char *p = st; p && *p;) {
        size_t n = strcspn(p, ",");
        char w[32];
        snprintf(w, sizeof(w), "%.*s", (int)(n < 31 ? n : 31), p);
        if (lcm_fsm_parse(&lcm_fsm_session, w) < 0) {
            lcm_reply_problem(r, 400, "invalid-query", "Invalid query parameter",
                              "status must be session statuses separated by commas", "status");
            return;
        }
        p += n + (p[n] == ',');
    }
    api_list(a, r, K, keep, &f, created);
}

static void h_get(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    if (api_ready(a, r))
        return;
    const void *s = api_get(a, r, K, lcm_req_param(r, "id"));
    if (s)
        api_reply_agg(r, 200, K, s, NULL);
}

/* ---- reservation_id → session ---- */

/* A hash map from reservation_id to session id, so that a lookup (and every booking with a
 * new reservation_id) costs O(1) instead of a walk of every session. Built from the read
 * models on first use (once they are loaded), then kept current from the store's change feed;
 * entries are checked against the session on use, so a stale one only misses. The unique
 * index lcm:idx:session:reservation:<id> in Redis stays the authority: a booking that the map
 * misses is refused by the store as DUPLICATE, and GET …/by-reservation asks Redis before it
 * answers 404. */
struct rsv_ent {
    char *rid, *sid;              /* owned */
    unsigned long hash;
    struct rsv_ent *next;
};

struct api_rsv {
    struct rsv_ent **b;
    size_t nb, n;
    int built;
};

static unsigned long rsv_hash(const char *s)
{
    unsigned long h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h;
}

static struct rsv_ent *rsv_find(const struct api_rsv *m, const char *rid, unsigned long h)
{
    for (struct rsv_ent *e = m->b[h & (m->nb - 1)]; e; e = e->next)
        if (e->hash == h && !strcmp(e->rid, rid))
            return e;
    return NULL;
}

static void rsv_grow(struct api_rsv *m)
{
    size_t nb = m->nb * 2;
    struct rsv_ent **b = calloc(nb, sizeof(*b));
    if (!b)
        return;   /* stays denser, still correct */
    for (size_t i = 0; i < m->nb; i++) {
        while (m->b[i]) {
            struct rsv_ent *e = m->b[i];
            m->b[i] = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
}

static void rsv_put(struct api_rsv *m, const char *rid, const char *sid)
{
    unsigned long h = rsv_hash(rid);
    struct rsv_ent *e = rsv_find(m, rid, h);
    if (e) {
        if (strcmp(e->sid, sid)) {
            char *n = strdup(sid);
            if (n) {
                free(e->sid);
                e->sid = n;
            }
        }
        return;
    }
    if (m->n >= m->nb)
        rsv_grow(m);
    if (!(e = calloc(1, sizeof(*e))) || !(e->rid = strdup(rid)) || !(e->sid = strdup(sid))) {
        if (e)
            free(e->rid);
        free(e);
        return;   /* a miss later, answered by Redis' unique index */
    }
    e->hash = h;
    e->next = m->b[h & (m->nb - 1)];
    m->b[h & (m->nb - 1)] = e;
    m->n++;
}

static void rsv_on_change(const struct lcm_kind *kind, const char *id, const void *state,
                          const struct lcm_event *ev, const char *feed_id, void *ud)
{
    struct lcm_api *a = ud;
    const struct lcm_session *s = state;
    (void)ev;
    (void)feed_id;
    if (a->rsv->built && kind == K && s && s->reservation_id)
        rsv_put(a->rsv, s->reservation_id, id);
}

static int rsv_each(const char *id, const void *st, void *ud)
{
    const struct lcm_session *s = st;
    if (s->reservation_id)
        rsv_put(ud, s->reservation_id, id);
    return 0;
}

int api_sessions_init(struct lcm_api *a)
{
    struct api_rsv *m = calloc(1, sizeof(*m));
    if (!m || !(m->b = calloc(m->nb = 1024, sizeof(*m->b)))) {
        free(m);
        return -1;
    }
    a->rsv = m;
    if ((a->sub = lcm_store_subscribe(a->app->store, rsv_on_change, a)) < 0)
        return -1;
    return 0;
}

void api_sessions_free(struct lcm_api *a)
{
    struct api_rsv *m = a->rsv;
    if (a->sub >= 0)
        lcm_store_unsubscribe(a->app->store, a->sub);
    a->sub = -1;
    if (!m)
        return;
    for (size_t i = 0; i < m->nb; i++) {
        while (m->b[i]) {
            struct rsv_ent *e = m->b[i];
            m->b[i] = e->next;
            free(e->rid);
            free(e->sid);
            free(e);
        }
    }
    free(m->b);
    free(m);
    a->rsv = NULL;
}

/* The session holding rid, from the map (built here on first use: the one walk of every
 * session), or NULL. Only once the read models are loaded. */
static const struct lcm_session *session_by_reservation(struct lcm_api *a, const char *rid)
{
    struct api_rsv *m = a->rsv;
    if (!lcm_store_loaded(a->app->store))
        return NULL;
    if (!m->built) {
        lcm_store_each(a->app->store, K->name, rsv_each, m);
        m->built = 1;
    }
    const struct rsv_ent *e = rsv_find(m, rid, rsv_hash(rid));
    const struct lcm_session *s = e ? lcm_store_get(a->app->store, K->name, e->sid) : NULL;
    return s && s->reservation_id && !strcmp(s->reservation_id, rid) ? s : NULL;
}

static void not_found_rsv(struct lcm_req *r, const char *rid)
{
    char detail[200];
    snprintf(detail, sizeof(detail), "no session has reservation_id '%.128s'", rid ? rid : "");
    lcm_reply_problem(r, 404, "not-found", "Not Found", detail, NULL);
}

/* The map missed: Redis' unique index decides (the map may lag after a read-model reload). */
static void rsv_members_done(struct lcm_redis *rd, redisReply *reply, void *ud)
{
    struct api_op *op = ud;
    (void)rd;
    if (!op->req || !op->api) {
        api_op_free(op);
        return;
    }
    const struct lcm_session *s = NULL;
    for (size_t i = 0; reply && reply->type == REDIS_REPLY_ARRAY && i < reply->elements && !s; i++)
        if (reply->element[i]->type == REDIS_REPLY_STRING)
            s = lcm_store_get(op->api->app->store, K->name, reply->element[i]->str);
    if (s && s->reservation_id && !strcmp(s->reservation_id, op->id)) {
        rsv_put(op->api->rsv, s->reservation_id, s->id);
        api_reply_agg(op->req, 200, K, s, NULL);
    } else if (!reply || reply->type == REDIS_REPLY_ERROR) {
        lcm_reply_header(op->req, "Retry-After", "1");
        lcm_reply_problem(op->req, 503, "store-unavailable", "Service Unavailable",
                          reply ? reply->str : "Redis did not answer", NULL);
    } else {
        not_found_rsv(op->req, op->id);
    }
    api_op_free(op);
}

static void h_by_reservation(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    if (api_ready(a, r))
        return;
    const char *rid = lcm_req_param(r, "reservation_id");
    const struct lcm_session *s = rid ? session_by_reservation(a, rid) : NULL;
    if (s) {
        api_reply_agg(r, 200, K, s, NULL);
        return;
    }
    if (!rid || !*rid || strlen(rid) > 128) {
        not_found_rsv(r, rid);
        return;
    }
    struct api_op *op = api_op_new(a, r, K, rid, 200);
    if (!op)
        return;
    char key[200];
    snprintf(key, sizeof(key), "lcm:idx:session:reservation:%s", rid);
    const char *argv[] = { "SMEMBERS", key };
    if (lcm_redis_commandv(a->app->redis, rsv_members_done, op, 2, argv, NULL) < 0) {
        lcm_reply_header(r, "Retry-After", "1");
        lcm_reply_problem(r, 503, "store-unavailable", "Service Unavailable",
                          "Redis is not connected", NULL);
        api_op_free(op);
    }
}

/* ---- create ---- */

/* What the request asked for, kept to compare with a session that already exists. */
struct want {
    char *definition_id, *owner, *reservation_id;
    int64_t start, end;
    char idem[80];              /* unique name for the Idempotency-Key, "" without one */
};

static void want_free(void *p)
{
    struct want *w = p;
    free(w->definition_id);
    free(w->owner);
    free(w->reservation_id);
    free(w);
}

static int same_request(const struct lcm_session *s, const struct want *w)
{
    if (!s->definition_id || strcmp(s->definition_id, w->definition_id))
        return 0;
    if (!s->owner || strcmp(s->owner, w->owner))
        return 0;
    if (!!s->reservation_id != !!w->reservation_id ||
        (w->reservation_id && strcmp(s->reservation_id, w->reservation_id)))
        return 0;
    if (s->start != w->start)
        return 0;
    if (w->end && s->end != w->end)
        return 0;
    return 1;
}

static void reply_existing(struct lcm_req *r, const struct lcm_session *s, const struct want *w)
{
    if (same_request(s, w)) {
        lcm_reply_header(r, "Idempotent-Replayed", "true");
        char loc[256];
        snprintf(loc, sizeof(loc), API_BASE "/sessions/%s", s->id);
        api_reply_agg(r, 200, K, s, loc);
        return;
    }
    char detail[300];
    snprintf(detail, sizeof(detail),
             "session %s was created for this %s with a different request body", s->id,
             w->reservation_id ? "reservation_id" : "Idempotency-Key");
    lcm_reply_problem(r, 409, "idempotency-mismatch", "Idempotency key reused", detail,
                      w->reservation_id ? "reservation_id" : NULL);
}

static void create_retry(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    struct api_op *op = ud;
    if (!op->req) {   /* the server answered it (shutdown) */
        api_op_free(op);
        return;
    }
    const struct lcm_session *s = lcm_store_get(op->api->app->store, K->name, op->id);
    if (s) {
        reply_existing(op->req, s, op->ctx);
    } else if (++op->tries < RETRY_MAX) {
        struct timeval tv = { 0, RETRY_MS * 1000 };
        evtimer_add(op->timer, &tv);
        return;
    } else {
        lcm_reply_problem(op->req, 409, "version-conflict", "Conflicting write",
                          "a concurrent request is creating this session; retry", NULL);
    }
    api_op_free(op);
}

static void created_done(struct api_op *op, const struct lcm_store_result *res)
{
    struct want *w = op->ctx;
    if (res->status == LCM_STORE_ECONFLICT) {
        /* another request created this id first: answer with it once the read model has
         * it (at once when it was this replica, after the feed otherwise) */
        const struct lcm_session *s = lcm_store_get(op->api->app->store, K->name, op->id);
        if (s) {
            reply_existing(op->req, s, w);
            return;
        }
        op->timer = evtimer_new(op->api->app->base, create_retry, op);
        struct timeval tv = { 0, RETRY_MS * 1000 };
        if (op->timer && evtimer_add(op->timer, &tv) == 0)
            return;
        api_op_default_done(op, res);
        return;
    }
    if (res->status == LCM_STORE_EDUPLICATE) {
        /* the reservation or the Idempotency-Key is held by another session */
        const char *sp = strrchr(res->holder, ' ');
        const struct lcm_session *s = sp ? lcm_store_get(op->api->app->store, K->name, sp + 1) : NULL;
        if (!s && w->reservation_id)
            s = session_by_reservation(op->api, w->reservation_id);
        if (s) {
            reply_existing(op->req, s, w);
            return;
        }
    }
    api_op_default_done(op, res);
}

static int valid_key(const char *k)
{
    size_t n = strlen(k);
    if (n < 1 || n > 128)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e)
            return 0;
    return 1;
}

static void h_create(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    if (api_ready(a, r))
        return;
    const char *key = lcm_req_header(r, "Idempotency-Key");
    if (key && !valid_key(key)) {
        lcm_reply_problem(r, 400, "invalid-header", "Invalid header",
                          "Idempotency-Key must be 1-128 visible ASCII characters", "Idempotency-Key");
        return;
    }
    cJSON *body = api_body(r, &lcm_api_schema_session_create, 1);
    if (!body)
        return;
    struct lcm_events evs;
    lcm_events_init(&evs);
    struct lcm_derr e;
    struct lcm_session_create c;
    struct want *w = NULL;
    if (lcm_session_parse_create(body, &c, &e)) {
        api_problem_derr(r, &e);
        goto out;
    }
    const cJSON *rv = cJSON_GetObjectItemCaseSensitive(body, "reservation_id");
    if (cJSON_IsString(rv) && !rv->valuestring[0]) {
        lcm_reply_problem(r, 422, "validation", "Validation failed",
                          "reservation_id must not be empty (omit it or send null)", "reservation_id");
        goto out;
    }
    const char *by = api_by(r);
    char id[80];
    w = calloc(1, sizeof(*w));
    if (!w || !(w->definition_id = strdup(c.definition_id)) ||
        !(w->owner = strdup(c.owner && *c.owner ? c.owner : by)) ||
        (c.reservation_id && *c.reservation_id && !(w->reservation_id = strdup(c.reservation_id)))) {
        lcm_reply_problem(r, 503, "internal", "Service Unavailable", "out of memory", NULL);
        goto out;
    }
    w->start = c.start;
    w->end = c.end;
    if (key)
        api_hash_id("idem:session:", by, key, 40, w->idem, sizeof(w->idem));
    if (w->reservation_id)
        api_hash_id("ses-r", "reservation", w->reservation_id, 24, id, sizeof(id));
    else if (key)
        api_hash_id("ses-k", by, key, 24, id, sizeof(id));
    else
        api_new_id("ses-", id, sizeof(id));
    c.id = id;
    const struct lcm_session *have = lcm_store_get(a->app->store, K->name, id);
    if (!have && w->reservation_id)
        have = session_by_reservation(a, w->reservation_id);
    if (have) {
        reply_existing(r, have, w);
        goto out;
    }
    const struct lcm_definition *def = lcm_store_get(a->app->store, lcm_kind_definition.name,
                                                     c.definition_id);
    if (lcm_session_cmd_create(&c, def, &a->tp, by, api_now(), &evs, &e)) {
        api_problem_derr(r, &e);
        goto out;
    }
    struct lcm_store_unique u = { w->idem, NULL, IDEM_TTL_MS, 0 };
    struct api_op *op = api_op_new(a, r, K, id, 201);
    if (!op)
        goto out;
    op->location = API_BASE "/sessions";
    op->done = created_done;
    op->ctx = w;
    op->ctx_free = want_free;
    w = NULL;
    struct api_change ch = { K, id, 0, &evs, u.name[0] ? &u : NULL, u.name[0] ? 1 : 0 };
    api_commit(op, &ch, 1);
out:
    if (w)
        want_free(w);
    lcm_events_clear(&evs);
    cJSON_Delete(body);
}

/* ---- state changes ---- */

static const struct lcm_session *target(struct lcm_api *a, struct lcm_req *r)
{
    if (api_ready(a, r))
        return NULL;
    const struct lcm_session *s = api_get(a, r, K, lcm_req_param(r, "id"));
    if (!s || api_if_match(r, s->version))
        return NULL;
    return s;
}

static void commit_one(struct lcm_api *a, struct lcm_req *r, const struct lcm_session *s,
                       struct lcm_events *evs, int ok_status)
{
    if (evs->n == 0) {
        api_reply_agg(r, 200, K, s, NULL);
        return;
    }
    struct api_op *op = api_op_new(a, r, K, s->id, ok_status);
    if (!op)
        return;
    struct api_change ch = { K, s->id, s->version, evs, NULL, 0 };
    api_commit(op, &ch, 1);
}

/* Terminating: a pending session holds nothing and ends at once (200); one that may hold a
 * worker, a lab or an LDS session gets desired_status terminated (with the caller and its
 * reason, which the controller's `terminated` entry in status_history repeats) and the session
 * controller tears it down and records `terminated` (202). */
static void terminate(struct lcm_api *a, struct lcm_req *r, const struct lcm_session *s,
                      const char *reason)
{
    struct lcm_events evs;
    lcm_events_init(&evs);
    struct lcm_derr e;
    int rc;
    int direct = s->status == LCM_SS_PENDING || s->status == LCM_SS_ARCHIVED;
    if (s->status == LCM_SS_TERMINATED)
        rc = 0;
    else if (direct)
        rc = lcm_session_cmd_transition(s, LCM_SS_TERMINATED, reason && *reason ? reason : "terminated by API",
                                        api_by(r), api_now(), &evs, &e);
    else
        rc = lcm_session_cmd_request(s, LCM_SS_TERMINATED, reason, api_by(r), api_now(), &evs, &e);
    if (rc)
        api_problem_derr(r, &e);
    else
        commit_one(a, r, s, &evs, direct || s->status == LCM_SS_TERMINATED ? 200 : 202);
    lcm_events_clear(&evs);
}

static void h_terminate(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    const struct lcm_session *s = target(a, r);
    if (!s)
        return;
    cJSON *body = api_body(r, &lcm_api_schema_reason, 0);
    if (!body)
        return;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(body, "reason");
    terminate(a, r, s, cJSON_IsString(rs) ? rs->valuestring : NULL);
    cJSON_Delete(body);
}

static void h_extend(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    const struct lcm_session *s = target(a, r);
    if (!s)
        return;
    cJSON *body = api_body(r, &lcm_api_schema_session_extend, 1);
    if (!body)
        return;
    int64_t end;
    struct lcm_events evs;
    lcm_events_init(&evs);
    struct lcm_derr e;
    if (lcm_rfc3339_parse(cJSON_GetObjectItemCaseSensitive(body, "end")->valuestring, &end) < 0) {
        lcm_reply_problem(r, 422, "validation", "Validation failed", "end must be an RFC 3339 time", "end");
    } else {
        const struct lcm_definition *def = s->definition_id
            ? lcm_store_get(a->app->store, lcm_kind_definition.name, s->definition_id) : NULL;
        if (lcm_session_cmd_extend(s, end, def ? def->max_duration_minutes : 0, api_by(r), api_now(),
                                   &evs, &e))
            api_problem_derr(r, &e);
        else
            commit_one(a, r, s, &evs, 200);
    }
    lcm_events_clear(&evs);
    cJSON_Delete(body);
}

static void h_collect(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    const struct lcm_session *s = target(a, r);
    if (!s)
        return;
    cJSON *body = api_body(r, &lcm_api_schema_reason, 0);
    if (!body)
        return;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(body, "reason");
    struct lcm_events evs;
    lcm_events_init(&evs);
    struct lcm_derr e;
    if (s->status == LCM_SS_COLLECTING || s->status == LCM_SS_GRADING) {
        api_reply_agg(r, 200, K, s, NULL);   /* already collecting: idempotent */
    } else if (lcm_session_cmd_transition(s, LCM_SS_COLLECTING,
                                          cJSON_IsString(rs) ? rs->valuestring : "collect requested",
                                          api_by(r), api_now(), &evs, &e)) {
        api_problem_derr(r, &e);
    } else {
        commit_one(a, r, s, &evs, 200);
    }
    lcm_events_clear(&evs);
    cJSON_Delete(body);
}

/* What an operator may set by hand (docs/api.md): facts a controller would otherwise learn
 * from LDS or the clock. Placement, the pipeline and teardown stay the controllers'. */
static int operator_target(int to)
{
    return to == LCM_SS_RUNNING || to == LCM_SS_COLLECTING || to == LCM_SS_STOPPING ||
           to == LCM_SS_ARCHIVED || to == LCM_SS_TERMINATED;
}

static void h_transition(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    const struct lcm_session *s = target(a, r);
    if (!s)
        return;
    cJSON *body = api_body(r, &lcm_api_schema_session_transition, 1);
    if (!body)
        return;
    const char *st = cJSON_GetObjectItemCaseSensitive(body, "status")->valuestring;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(body, "reason");
    const char *reason = cJSON_IsString(rs) ? rs->valuestring : NULL;
    int to = lcm_fsm_parse(&lcm_fsm_session, st);
    struct lcm_events evs;
    lcm_events_init(&evs);
    struct lcm_derr e;
    if (to < 0) {
        lcm_reply_problem(r, 422, "validation", "Validation failed", "status is not a session status", "status");
    } else if (!operator_target(to)) {
        char detail[200];
        snprintf(detail, sizeof(detail),
                 "an operator cannot move a session to %s (the controllers do); allowed: running, "
                 "collecting, stopping, archived, terminated", st);
        lcm_reply_problem(r, 422, "transition-not-allowed", "Transition not allowed", detail, "status");
    } else if (to == LCM_SS_TERMINATED) {
        terminate(a, r, s, reason);
    } else if (lcm_session_cmd_transition(s, to, reason ? reason : "operator", api_by(r), api_now(),
                                          &evs, &e)) {
        api_problem_derr(r, &e);
    } else {
        commit_one(a, r, s, &evs, 200);
    }
    lcm_events_clear(&evs);
    cJSON_Delete(body);
}

/* ---- requeue ---- */

static int ever_delivered(const struct lcm_session *s)
{
    for (uint16_t i = 0; i < s->history.n; i++) {
        int to = s->history.v[i].to;
        if (to == LCM_SS_READY || to == LCM_SS_RUNNING || to == LCM_SS_COLLECTING ||
            to == LCM_SS_GRADING)
            return 1;
    }
    return 0;
}

static void requeued_done(struct api_op *op, const struct lcm_store_result *res)
{
    if (res->status == LCM_STORE_ECONFLICT) {
        const struct lcm_session *s = lcm_store_get(op->api->app->store, K->name, op->id);
        if (s) {
            api_reply_agg(op->req, 200, K, s, NULL);
            return;
        }
    }
    api_op_default_done(op, res);
}

/* A session that ended before the learner ever got the lab (expired: no capacity in time;
 * terminated: the pipeline gave up) is booked again as a new session for the same
 * definition and owner. The id is derived from the original, so repeating the call returns
 * the same new session. */
static void h_requeue(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    const struct lcm_session *s = target(a, r);
    if (!s)
        return;
    cJSON *body = api_body(r, &lcm_api_schema_session_requeue, 0);
    if (!body)
        return;
    struct lcm_events evs;
    lcm_events_init(&evs);
    struct lcm_derr e;
    char id[80];
    api_hash_id("ses-q", s->id, "requeue", 24, id, sizeof(id));
    const struct lcm_session *again = lcm_store_get(a->app->store, K->name, id);
    if (again) {
        api_reply_agg(r, 200, K, again, NULL);
        goto out;
    }
    if ((s->status != LCM_SS_EXPIRED && s->status != LCM_SS_TERMINATED) || ever_delivered(s)) {
        char detail[200];
        snprintf(detail, sizeof(detail),
                 "only an expired or terminated session that never became ready can be requeued "
                 "(this one is %s%s)", lcm_fsm_name(&lcm_fsm_session, s->status),
                 ever_delivered(s) ? " and was delivered" : "");
        lcm_reply_problem(r, 409, "invalid-state", "Not allowed in the current state", detail, "status");
        goto out;
    }
    struct lcm_session_create c = { .id = id, .definition_id = s->definition_id, .owner = s->owner };
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(body, "timeslot");
    if (cJSON_IsObject(ts)) {
        cJSON *tmp = cJSON_CreateObject();
        cJSON_AddStringToObject(tmp, "definition_id", s->definition_id ? s->definition_id : "-");
        cJSON_AddItemToObject(tmp, "timeslot", cJSON_Duplicate(ts, 1));
        struct lcm_session_create p;
        int rc = lcm_session_parse_create(tmp, &p, &e);
        if (!rc) {
            c.start = p.start;
            c.end = p.end;
        }
        cJSON_Delete(tmp);
        if (rc) {
            api_problem_derr(r, &e);
            goto out;
        }
    }
    const struct lcm_definition *def = s->definition_id
        ? lcm_store_get(a->app->store, lcm_kind_definition.name, s->definition_id) : NULL;
    if (lcm_session_cmd_create(&c, def, &a->tp, api_by(r), api_now(), &evs, &e)) {
        api_problem_derr(r, &e);
        goto out;
    }
    lcm_info("api", "req=%s msg=\"session requeued\" from=%s to=%s by=%s", lcm_req_id(r), s->id, id,
             api_by(r));
    struct api_op *op = api_op_new(a, r, K, id, 201);
    if (!op)
        goto out;
    op->location = API_BASE "/sessions";
    op->done = requeued_done;
    struct api_change ch = { K, id, 0, &evs, NULL, 0 };
    api_commit(op, &ch, 1);
out:
    lcm_events_clear(&evs);
    cJSON_Delete(body);
}

int api_sessions_routes(struct lcm_api *a)
{
    struct lcm_httpd *h = a->app->httpd;
    return lcm_httpd_route(h, "GET", API_BASE "/sessions", 0, LCM_PERM_READ, h_list, a) ||
           lcm_httpd_route(h, "POST", API_BASE "/sessions", 0, LCM_PERM_BOOK, h_create, a) ||
           lcm_httpd_route(h, "GET", API_BASE "/sessions/{id}", 0, LCM_PERM_READ, h_get, a) ||
           lcm_httpd_route(h, "GET", API_BASE "/sessions/by-reservation/{reservation_id}", 0, LCM_PERM_READ,
                           h_by_reservation, a) ||
           lcm_httpd_route(h, "POST", API_BASE "/sessions/{id}/terminate", 0, LCM_PERM_BOOK, h_terminate, a) ||
           lcm_httpd_route(h, "POST", API_BASE "/sessions/{id}/extend", 0, LCM_PERM_BOOK, h_extend, a) ||
           lcm_httpd_route(h, "POST", API_BASE "/sessions/{id}/collect", 0, LCM_PERM_BOOK, h_collect, a) ||
           lcm_httpd_route(h, "POST", API_BASE "/sessions/{id}/transition", 0, LCM_PERM_OPERATE, h_transition, a) ||
           lcm_httpd_route(h, "POST", API_BASE "/sessions/{id}/requeue", 0, LCM_PERM_OPERATE, h_requeue, a);
}
