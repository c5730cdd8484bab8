/* The outbound CloudEvents deliverer: session and worker events from lcm:feed, read through
 * the consumer group lcm-outbox and POSTed to every configured sink, at least once and in
 * order per aggregate; an entry is XACKed only after every sink answered 2xx. One replica
 * delivers at a time (lease lcm:outbox:lease); a new holder first XAUTOCLAIMs what a dead one
 * left pending. The same holder trims lcm:feed by MINID, never past an unacknowledged entry. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "core/config.h"
#include "core/httpc.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/redis.h"
#include "net_int.h"
#include "store/entry.h"

#define GROUP "lcm-outbox"
#define FEED "lcm:feed"
#define LEASE_KEY "lcm:outbox:lease"
#define EPOCH_KEY "lcm:outbox:epoch"
#define DEAD_KEY "lcm:outbox:dead"
#define NBUCKETS 4096
#define MAX_SINKS 32

struct ob_item {
    struct ob_item *next;
    char feed_id[48];
    char *body;
    size_t len;
    int attempts;
    uint32_t done;                  /* bit per sink that answered 2xx */
};

struct ob_agg {
    struct ob_agg *hnext, *rnext;
    struct lcm_outbox *o;
    char key[280];                  /* kind:id */
    struct ob_item *head, *tail;
    int inflight;                   /* sinks still to answer for head */
    int queued;                     /* in the ready list */
    int waiting;                    /* in backoff */
    struct event *retry_ev;
};

/* One pending async call (Redis or HTTP): orphaned (o = NULL) when the outbox is freed. */
struct ob_op;
typedef void (*ob_fn)(struct lcm_outbox *o, redisReply *reply, struct ob_op *op);
struct ob_op {
    struct ob_op *prev, *next;
    struct lcm_outbox *o;
    ob_fn fn;
    struct ob_agg *agg;             /* deliveries */
    int sink;
};

struct lcm_outbox {
    struct lcm_net *n;
    char me[128];
    char token[64];                 /* lease token while we hold it */
    char **sinks;
    size_t nsinks;
    const char *bearer;
    const char *source, *type_prefix;
    char **exclude;
    size_t nexclude;
    long batch, concurrency, max_attempts, backoff_ms, backoff_max_ms, timeout_ms;
    long lease_ms, claim_idle_ms, poll_ms, trim_ms;
    long long retention_ms;
    uint64_t safe_ms, safe_seq;     /* trimming: oldest id the group still needs */
    enum { ST_IDLE, ST_RECOVER, ST_OWN, ST_NEW } state;
    int leader, stopping, group_ok;
    int lease_busy, read_busy, trim_busy, group_busy;
    char cursor[48];                /* ST_OWN: last PEL id read; ST_RECOVER: XAUTOCLAIM cursor */
    struct event *tick, *wake, *lease_ev, *trim_ev;
    struct ob_agg *buckets[NBUCKETS];
    struct ob_agg *ready_head, *ready_tail;
    size_t nitems, naggs;
    long active;
    struct ob_op ops;
};

/* ---- small helpers ------------------------------------------------------------------- */

static void metric(struct lcm_outbox *o, const char *name, double by)
{
    if (o->n->metrics)
        lcm_metrics_inc(o->n->metrics, name, NULL, by);
}

static void gauge(struct lcm_outbox *o)
{
    if (o->n->metrics) {
        lcm_metrics_set(o->n->metrics, "lcm_outbox_backlog", NULL, (double)o->nitems);
        lcm_metrics_set(o->n->metrics, "lcm_outbox_leader", NULL, o->leader);
    }
}

static struct ob_op *op_new(struct lcm_outbox *o, ob_fn fn)
{
    struct ob_op *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->o = o;
    op->fn = fn;
    op->prev = o->ops.prev;
    op->next = &o->ops;
    o->ops.prev->next = op;
    o->ops.prev = op;
    return op;
}

static void op_free(struct ob_op *op)
{
    if (op->prev) {
        op->prev->next = op->next;
        op->next->prev = op->prev;
    }
    free(op);
}

static void redis_cb(struct lcm_redis *r, redisReply *reply, void *ud)
{
    (void)r;
    struct ob_op *op = ud;
    if (op->o && op->fn)
        op->fn(op->o, reply, op);
    op_free(op);
}

/* Sends a command; fn (may be NULL) runs with the reply unless the outbox is gone. */
static int cmd(struct lcm_outbox *o, ob_fn fn, int argc, const char **argv)
{
    size_t lens[32];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    struct ob_op *op = op_new(o, fn);
    if (!op)
        return -1;
    if (lcm_redis_commandv(o->n->redis, redis_cb, op, argc, argv, lens) < 0) {
        op_free(op);
        return -1;
    }
    return 0;
}

static unsigned hash(const char *s)
{
    unsigned h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h % NBUCKETS;
}

static struct ob_agg *agg_get(struct lcm_outbox *o, const char *key, int create)
{
    unsigned b = hash(key);
    for (struct ob_agg *a = o->buckets[b]; a; a = a->hnext)
        if (!strcmp(a->key, key))
            return a;
    if (!create)
        return NULL;
    struct ob_agg *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->o = o;
    snprintf(a->key, sizeof(a->key), "%s", key);
    a->hnext = o->buckets[b];
    o->buckets[b] = a;
    o->naggs++;
    return a;
}

static void item_free(struct ob_item *it)
{
    free(it->body);
    free(it);
}

static void agg_free(struct lcm_outbox *o, struct ob_agg *a)
{
    unsigned b = hash(a->key);
    for (struct ob_agg **p = &o->buckets[b]; *p; p = &(*p)->hnext)
        if (*p == a) {
            *p = a->hnext;
            break;
        }
    if (a->queued) {
        for (struct ob_agg **p = &o->ready_head, *prev = NULL; *p; prev = *p, p = &(*p)->rnext)
            if (*p == a) {
                *p = a->rnext;
                if (o->ready_tail == a)
                    o->ready_tail = prev;
                break;
            }
    }
    for (struct ob_item *it = a->head, *nx; it; it = nx) {
        nx = it->next;
        item_free(it);
        o->nitems--;
    }
    if (a->retry_ev)
        event_free(a->retry_ev);
    o->naggs--;
    free(a);
}

static void ready_push(struct lcm_outbox *o, struct ob_agg *a)
{
    if (a->queued || a->inflight || a->waiting || !a->head)
        return;
    a->queued = 1;
    a->rnext = NULL;
    if (o->ready_tail)
        o->ready_tail->rnext = a;
    else
        o->ready_head = a;
    o->ready_tail = a;
}

static void kick(struct lcm_outbox *o)
{
    if (o->wake && !o->stopping)
        event_active(o->wake, 0, 0);
}

void lcm_outbox_wake(struct lcm_outbox *o)
{
    if (o && o->leader && o->state == ST_NEW)
        kick(o);
}

/* Drops everything buffered (lease lost); deliveries in flight finish and are dropped then. */
static void drop_all(struct lcm_outbox *o)
{
    for (unsigned b = 0; b < NBUCKETS; b++)
        for (struct ob_agg *a = o->buckets[b], *nx; a; a = nx) {
            nx = a->hnext;
            if (!a->inflight)
                agg_free(o, a);
        }
    gauge(o);
}

/* ---- turning feed entries into CloudEvents ------------------------------------------- */

static int excluded(const struct lcm_outbox *o, const char *type)
{
    for (size_t i = 0; i < o->nexclude; i++)
        if (!strcmp(o->exclude[i], type))
            return 1;
    return 0;
}

static char *cloudevent(const struct lcm_outbox *o, const struct lcm_store_entry *e, size_t *len)
{
    char ceid[300], type[400];
    const char *ev = e->type;
    size_t kl = strlen(e->kind);
    if (!strncmp(ev, e->kind, kl) && ev[kl] == '.')
        ev += kl + 1;
    snprintf(ceid, sizeof(ceid), "%s:%s:%" PRIu64, e->kind, e->id, e->version);
    snprintf(type, sizeof(type), "%s.%s.%s.v1", o->type_prefix, e->kind, ev);
    cJSON *c = cJSON_CreateObject();
    cJSON *d = lcm_net_event_obj(e->kind, e->id, e->type, e->version, e->at, e->by, e->data);
    if (!c || !d) {
        cJSON_Delete(c);
        cJSON_Delete(d);
        return NULL;
    }
    cJSON_AddStringToObject(c, "specversion", "1.0");
    cJSON_AddStringToObject(c, "id", ceid);
    cJSON_AddStringToObject(c, "source", o->source);
    cJSON_AddStringToObject(c, "type", type);
    cJSON_AddStringToObject(c, "subject", e->id);
    if (e->at && *e->at)
        cJSON_AddStringToObject(c, "time", e->at);
    cJSON_AddStringToObject(c, "datacontenttype", "application/json");
    cJSON_AddStringToObject(c, "lcmkind", e->kind);
    cJSON_AddNumberToObject(c, "lcmversion", (double)e->version);
    cJSON_AddStringToObject(c, "lcmfeedid", e->entry_id);
    cJSON_AddItemToObject(c, "data", d);
    char *s = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    if (s)
        *len = strlen(s);
    return s;
}

static void ack(struct lcm_outbox *o, const char *id)
{
    const char *argv[] = { "XACK", FEED, GROUP, id };
    if (cmd(o, NULL, 4, argv) < 0)
        lcm_warn("outbox", "msg=\"XACK not sent (Redis down); the entry will be delivered again\" entry=%s", id);
}

/* One entry read from the group: queued for its aggregate, or acknowledged at once when it
 * is not delivered (other kinds, excluded types, malformed or trimmed entries). */
static void take(struct lcm_outbox *o, const redisReply *entry)
{
    struct lcm_store_entry e;
    char err[200];
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements < 1 ||
        entry->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *id = entry->element[0]->str;
    if (entry->elements < 2 || entry->element[1]->type != REDIS_REPLY_ARRAY) {
        lcm_warn("outbox", "msg=\"pending entry was trimmed before delivery\" entry=%s", id);
        metric(o, "lcm_outbox_lost_total", 1);
        ack(o, id);
        return;
    }
    if (lcm_store_entry_decode(entry, 1, &e, err, sizeof(err)) < 0) {
        lcm_warn("outbox", "msg=\"malformed feed entry skipped\" entry=%s reason=\"%s\"", id, err);
        ack(o, id);
        return;
    }
    int deliver = (!strcmp(e.kind, "session") || !strcmp(e.kind, "worker")) && !excluded(o, e.type);
    if (!deliver) {
        ack(o, id);
        lcm_store_entry_clear(&e);
        return;
    }
    char key[280];
    snprintf(key, sizeof(key), "%s:%s", e.kind, e.id);
    struct ob_agg *a = agg_get(o, key, 1);
    struct ob_item *it = a ? calloc(1, sizeof(*it)) : NULL;
    if (it)
        it->body = cloudevent(o, &e, &it->len);
    lcm_store_entry_clear(&e);
    if (!it || !it->body) {
        /* Not acknowledged: read again after a restart or claim. */
        lcm_error("outbox", "msg=\"out of memory queueing an event\" entry=%s", id);
        free(it);
        return;
    }
    snprintf(it->feed_id, sizeof(it->feed_id), "%s", id);
    if (a->tail)
        a->tail->next = it;
    else
        a->head = it;
    a->tail = it;
    o->nitems++;
    ready_push(o, a);
}

/* ---- delivery ------------------------------------------------------------------------ */

static void dispatch(struct lcm_outbox *o);

static void retry_due(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    struct ob_agg *a = ud;
    a->waiting = 0;
    ready_push(a->o, a);
    dispatch(a->o);
}

static void head_done(struct lcm_outbox *o, struct ob_agg *a)
{
    struct ob_item *it = a->head;
    uint32_t all = o->nsinks >= 32 ? 0xffffffffu : ((1u << o->nsinks) - 1);
    o->active--;
    if ((it->done & all) == all) {
        ack(o, it->feed_id);
        metric(o, "lcm_outbox_delivered_total", 1);
    } else if (++it->attempts >= o->max_attempts) {
        /* Dead letter: kept in a stream for operators, acknowledged, the aggregate moves on. */
        char failed[16];
        snprintf(failed, sizeof(failed), "%u", (unsigned)(all & ~it->done));
        const char *argv[] = { "XADD", DEAD_KEY, "MAXLEN", "~", "10000", "*", "feed_id", it->feed_id,
                               "aggregate", a->key, "attempts", "", "failed_sinks_mask", failed,
                               "cloudevent", it->body };
        char att[16];
        snprintf(att, sizeof(att), "%d", it->attempts);
        argv[11] = att;
        cmd(o, NULL, 16, argv);
        lcm_warn("outbox", "msg=\"event dead-lettered\" entry=%s aggregate=%s attempts=%d key=" DEAD_KEY,
                 it->feed_id, a->key, it->attempts);
        metric(o, "lcm_outbox_dead_letters_total", 1);
        ack(o, it->feed_id);
    } else {
        metric(o, "lcm_outbox_failed_attempts_total", 1);
        long d = o->backoff_ms;
        for (int i = 1; i < it->attempts && d < o->backoff_max_ms; i++)
            d *= 2;
        if (d > o->backoff_max_ms)
            d = o->backoff_max_ms;
        d = d / 2 + (d > 1 ? rand() % (d / 2 + 1) : 0);   /* jitter: [d/2, d] */
        if (!a->retry_ev)
            a->retry_ev = evtimer_new(o->n->base, retry_due, a);
        struct timeval tv = { d / 1000, (d % 1000) * 1000 };
        if (a->retry_ev && o->leader && !o->stopping) {
            a->waiting = 1;
            evtimer_add(a->retry_ev, &tv);
        }
        if (!o->leader)
            agg_free(o, a);
        dispatch(o);
        return;
    }
    a->head = it->next;
    if (!a->head)
        a->tail = NULL;
    item_free(it);
    o->nitems--;
    if (!a->head || !o->leader)
        agg_free(o, a);
    else
        ready_push(o, a);
    gauge(o);
    dispatch(o);
    kick(o);   /* room for more */
}

static void sent(const struct lcm_httpc_resp *resp, void *ud)
{
    struct ob_op *op = ud;
    struct lcm_outbox *o = op->o;
    struct ob_agg *a = op->agg;
    int sink = op->sink;
    op_free(op);
    if (!o)
        return;
    if (resp->status >= 200 && resp->status < 300) {
        a->head->done |= 1u << sink;
    } else if (!resp->cancelled) {
        lcm_info("outbox", "msg=\"delivery failed\" sink=%d entry=%s status=%d error=\"%s\" attempt=%d",
                 sink, a->head->feed_id, resp->status, resp->error ? resp->error : "-",
                 a->head->attempts + 1);
    }
    if (--a->inflight == 0)
        head_done(o, a);
}

static void send_head(struct lcm_outbox *o, struct ob_agg *a)
{
    struct ob_item *it = a->head;
    static const char *const hdrs[] = { "Content-Type: application/cloudevents+json; charset=utf-8" };
    o->active++;
    a->inflight = 1;   /* guard while issuing */
    for (size_t i = 0; i < o->nsinks; i++) {
        if (it->done & (1u << i))
            continue;
        struct ob_op *op = op_new(o, NULL);
        if (!op)
            continue;
        op->agg = a;
        op->sink = (int)i;
        struct lcm_httpc_req rq = {
            .method = "POST", .url = o->sinks[i], .headers = hdrs, .nheaders = 1,
            .body = it->body, .body_len = it->len, .timeout_ms = o->timeout_ms,
            .max_retries = 0, .metric_label = "outbox",
            .auth = o->bearer ? LCM_HTTPC_AUTH_BEARER : LCM_HTTPC_AUTH_NONE, .bearer = o->bearer,
        };
        a->inflight++;
        if (lcm_httpc_request(o->n->httpc, &rq, sent, op, NULL) < 0) {
            a->inflight--;
            op_free(op);
        }
    }
    if (--a->inflight == 0)
        head_done(o, a);
}

static void dispatch(struct lcm_outbox *o)
{
    while (o->leader && !o->stopping && o->active < o->concurrency && o->ready_head) {
        struct ob_agg *a = o->ready_head;
        o->ready_head = a->rnext;
        if (!o->ready_head)
            o->ready_tail = NULL;
        a->queued = 0;
        send_head(o, a);
    }
}

/* ---- reading the group --------------------------------------------------------------- */

static void pump(struct lcm_outbox *o);

static void read_got(struct lcm_outbox *o, redisReply *reply, struct ob_op *op)
{
    (void)op;
    o->read_busy = 0;
    if (!o->leader)
        return;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply && strstr(reply->str, "NOGROUP"))
            o->group_ok = 0;
        lcm_warn("outbox", "msg=\"XREADGROUP failed\" error=\"%.200s\"", reply ? reply->str : "no reply");
        return;
    }
    const redisReply *entries = reply->type == REDIS_REPLY_ARRAY ? lcm_store_xread_entries(reply, FEED) : NULL;
    size_t n = entries ? entries->elements : 0;
    for (size_t i = 0; i < n; i++) {
        take(o, entries->element[i]);
        const redisReply *e = entries->element[i];
        if (o->state == ST_OWN && e->type == REDIS_REPLY_ARRAY && e->elements >= 1 &&
            e->element[0]->type == REDIS_REPLY_STRING)
            snprintf(o->cursor, sizeof(o->cursor), "%s", e->element[0]->str);
    }
    if (o->state == ST_OWN && n == 0) {
        lcm_info("outbox", "msg=\"pending entries recovered; delivering new events\" consumer=%s", o->me);
        o->state = ST_NEW;
    }
    gauge(o);
    dispatch(o);
    if (o->state == ST_OWN || (long)n >= o->batch)
        kick(o);
}

static void claimed(struct lcm_outbox *o, redisReply *reply, struct ob_op *op);

static void consumers_got(struct lcm_outbox *o, redisReply *reply, struct ob_op *op)
{
    (void)op;
    o->read_busy = 0;
    if (!o->leader || o->state != ST_RECOVER)
        return;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        if (reply && reply->type == REDIS_REPLY_ERROR && strstr(reply->str, "NOGROUP"))
            o->group_ok = 0;
        return;
    }
    int others = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *c = reply->element[i];
        const char *name = NULL;
        long long pending = 0;
        for (size_t k = 0; c->type == REDIS_REPLY_ARRAY && k + 1 < c->elements; k += 2) {
            const redisReply *f = c->element[k], *v = c->element[k + 1];
            if (f->type != REDIS_REPLY_STRING)
                continue;
            if (!strcmp(f->str, "name") && v->type == REDIS_REPLY_STRING)
                name = v->str;
            else if (!strcmp(f->str, "pending") && v->type == REDIS_REPLY_INTEGER)
                pending = v->integer;
        }
        if (!name || !strcmp(name, o->me))
            continue;
        if (pending > 0) {
            others++;
        } else {
            const char *argv[] = { "XGROUP", "DELCONSUMER", FEED, GROUP, name };
            cmd(o, NULL, 5, argv);
        }
    }
    if (others) {
        /* A dead deliverer left entries pending: claim them once idle long enough. */
        char idle[32];
        snprintf(idle, sizeof(idle), "%ld", o->claim_idle_ms);
        char count[16];
        snprintf(count, sizeof(count), "%ld", o->batch);
        const char *argv[] = { "XAUTOCLAIM", FEED, GROUP, o->me, idle, o->cursor, "COUNT", count };
        if (cmd(o, claimed, 8, argv) == 0)
            o->read_busy = 1;
        return;
    }
    o->state = ST_OWN;
    snprintf(o->cursor, sizeof(o->cursor), "0");
    kick(o);
}

static void claimed(struct lcm_outbox *o, redisReply *reply, struct ob_op *op)
{
    (void)op;
    o->read_busy = 0;
    if (!o->leader || o->state != ST_RECOVER)
        return;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING) {
        lcm_warn("outbox", "msg=\"XAUTOCLAIM failed\" error=\"%.200s\"",
                 reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "no reply");
        return;
    }
    size_t got = reply->element[1]->type == REDIS_REPLY_ARRAY ? reply->element[1]->elements : 0;
    size_t lost = reply->elements >= 3 && reply->element[2]->type == REDIS_REPLY_ARRAY
                      ? reply->element[2]->elements : 0;
    if (got || lost)
        lcm_info("outbox", "msg=\"claimed entries of a dead deliverer\" claimed=%zu trimmed=%zu", got, lost);
    if (lost) {
        metric(o, "lcm_outbox_lost_total", (double)lost);
        lcm_warn("outbox", "msg=\"pending entries were trimmed before delivery\" count=%zu", lost);
    }
    metric(o, "lcm_outbox_claimed_total", (double)got);
    const char *next = reply->element[0]->str;
    snprintf(o->cursor, sizeof(o->cursor), "%s", next);
    if (strcmp(next, "0-0")) {
        kick(o);    /* more to scan */
        return;
    }
    /* Scan complete; look again: some may not have been idle long enough yet. The next
     * tick re-checks (claim_idle_ms bounds how long that takes). */
}

static void group_made(struct lcm_outbox *o, redisReply *reply, struct ob_op *op)
{
    (void)op;
    o->group_busy = 0;
    if (reply && (reply->type == REDIS_REPLY_STATUS ||
                  (reply->type == REDIS_REPLY_ERROR && strstr(reply->str, "BUSYGROUP")))) {
        o->group_ok = 1;
        kick(o);
    } else if (reply) {
        lcm_warn("outbox", "msg=\"cannot create the consumer group\" error=\"%.200s\"", reply->str);
    }
}

static void pump(struct lcm_outbox *o)
{
    if (!o->leader || o->stopping || o->nsinks == 0)
        return;
    if (!o->group_ok) {
        if (!o->group_busy) {
            /* New groups start at the end: events before the first configured sink are not sent. */
            const char *argv[] = { "XGROUP", "CREATE", FEED, GROUP, "$", "MKSTREAM" };
            if (cmd(o, group_made, 6, argv) == 0)
                o->group_busy = 1;
        }
        return;
    }
    if (o->read_busy)
        return;
    if (o->state == ST_RECOVER) {
        if (strcmp(o->cursor, "0-0")) {
            char idle[32], count[16];
            snprintf(idle, sizeof(idle), "%ld", o->claim_idle_ms);
            snprintf(count, sizeof(count), "%ld", o->batch);
            const char *argv[] = { "XAUTOCLAIM", FEED, GROUP, o->me, idle, o->cursor, "COUNT", count };
            if (cmd(o, claimed, 8, argv) == 0)
                o->read_busy = 1;
            return;
        }
        const char *argv[] = { "XINFO", "CONSUMERS", FEED, GROUP };
        if (cmd(o, consumers_got, 4, argv) == 0)
            o->read_busy = 1;
        return;
    }
    if ((long)o->nitems >= o->batch * 4)
        return;   /* enough buffered; deliveries make room */
    char count[24];
    snprintf(count, sizeof(count), "%ld", o->batch);
    const char *argv[] = { "XREADGROUP", "GROUP", GROUP, o->me, "COUNT", count, "STREAMS", FEED,
                           o->state == ST_OWN ? o->cursor : ">" };
    if (cmd(o, read_got, 9, argv) == 0)
        o->read_busy = 1;
}

static void wake_cb(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    pump(ud);
}

/* ---- lease --------------------------------------------------------------------------- */

static void become_follower(struct lcm_outbox *o, const char *why)
{
    if (!o->leader)
        return;
    lcm_warn("outbox", "msg=\"deliverer lease lost; stopping delivery\" reason=\"%s\"", why);
    o->leader = 0;
    o->state = ST_IDLE;
    o->token[0] = 0;
    drop_all(o);
}

static void lease_got(struct lcm_outbox *o, redisReply *reply, struct ob_op *op)
{
    (void)op;
    o->lease_busy = 0;
    if (o->stopping)
        return;
    if (reply && (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_INTEGER)) {
        char tok[64];
        if (reply->type == REDIS_REPLY_STRING)
            snprintf(tok, sizeof(tok), "%s", reply->str);
        else
            snprintf(tok, sizeof(tok), "%lld", reply->integer);
        if (!o->leader) {
            o->leader = 1;
            o->state = ST_RECOVER;
            snprintf(o->cursor, sizeof(o->cursor), "0-0");   /* a full claim scan first */
            lcm_info("outbox", "msg=\"deliverer lease acquired\" consumer=%s token=%s sinks=%zu",
                     o->me, tok, o->nsinks);
            o->group_ok = 0;
            gauge(o);
            kick(o);
        }
        snprintf(o->token, sizeof(o->token), "%s", tok);
        return;
    }
    if (reply && reply->type == REDIS_REPLY_ERROR && !strncmp(reply->str, "HELD", 4)) {
        become_follower(o, "held by another replica");
        return;
    }
    if (reply)
        lcm_warn("outbox", "msg=\"lease call failed\" error=\"%.200s\"", reply->type == REDIS_REPLY_ERROR ? reply->str : "?");
    /* No reply: Redis down. Keep going until the TTL would have run out; the next renewal
     * decides. (Renewing every third of the TTL leaves two tries.) */
}

static void lease_tick(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    struct lcm_outbox *o = ud;
    if (o->stopping || o->lease_busy)
        return;
    /* After losing the lease, wait for our deliveries in flight before competing again, so
     * a re-acquired lease never sees an aggregate delivered twice at once. */
    if (!o->leader && o->active > 0)
        return;
    char ttl[32];
    snprintf(ttl, sizeof(ttl), "%ld", o->lease_ms);
    const char *argv[] = { "FCALL", "lcm_lease_acquire", "2", LEASE_KEY, EPOCH_KEY, o->me, ttl };
    if (cmd(o, lease_got, 7, argv) == 0)
        o->lease_busy = 1;
}

static void tick_cb(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    pump(ud);
}

/* ---- feed trimming ------------------------------------------------------------------- */

/* Removes entries older than both the retention and the oldest entry the group still needs
 * (its oldest pending entry, or the first one it has not read). The store must not trim by
 * MAXLEN itself (feed_maxlen < 0), or entries could vanish before delivery. */

static void trimmed(struct lcm_outbox *o, redisReply *reply, struct ob_op *op)
{
    (void)op;
    o->trim_busy = 0;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0) {
        metric(o, "lcm_feed_trimmed_total", (double)reply->integer);
        lcm_debug("outbox", "msg=\"lcm:feed trimmed\" removed=%lld", reply->integer);
    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        lcm_warn("outbox", "msg=\"XTRIM failed\" error=\"%.200s\"", reply->str);
    }
}

static void trim_to(struct lcm_outbox *o, uint64_t ms, uint64_t seq)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t now_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
    uint64_t keep_ms = now_ms > (uint64_t)o->retention_ms ? now_ms - (uint64_t)o->retention_ms : 0;
    if (keep_ms < ms || (keep_ms == ms && seq > 0)) {
        ms = keep_ms;
        seq = 0;
    }
    if (ms == 0) {
        o->trim_busy = 0;
        return;
    }
    char minid[64];
    snprintf(minid, sizeof(minid), "%" PRIu64 "-%" PRIu64, ms, seq);
    const char *argv[] = { "XTRIM", FEED, "MINID", "~", minid };
    if (cmd(o, trimmed, 5, argv) < 0)
        o->trim_busy = 0;
}

static void pending_got(struct lcm_outbox *o, redisReply *reply, struct ob_op *op)
{
    (void)op;
    /* XPENDING summary: [count, min-id, max-id, consumers] */
    uint64_t ms, seq;
    if (!o->leader || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER) {
        o->trim_busy = 0;   /* unsure: trim nothing this round */
        return;
    }
    if (reply->element[0]->integer > 0) {
        if (reply->element[1]->type != REDIS_REPLY_STRING ||
            lcm_net_id_parse(reply->element[1]->str, &ms, &seq) < 0) {
            o->trim_busy = 0;
            return;
        }
        if (ms < o->safe_ms || (ms == o->safe_ms && seq < o->safe_seq)) {
            o->safe_ms = ms;
            o->safe_seq = seq;
        }
    }
    trim_to(o, o->safe_ms, o->safe_seq);
}

static void groups_got(struct lcm_outbox *o, redisReply *reply, struct ob_op *op)
{
    (void)op;
    if (!o->leader || !reply || reply->type != REDIS_REPLY_ARRAY) {
        o->trim_busy = 0;
        return;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *g = reply->element[i];
        const char *name = NULL, *last = NULL;
        for (size_t k = 0; g->type == REDIS_REPLY_ARRAY && k + 1 < g->elements; k += 2) {
            const redisReply *f = g->element[k], *v = g->element[k + 1];
            if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                continue;
            if (!strcmp(f->str, "name"))
                name = v->str;
            else if (!strcmp(f->str, "last-delivered-id"))
                last = v->str;
        }
        if (!name || strcmp(name, GROUP))
            continue;
        uint64_t ms, seq;
        if (!last || lcm_net_id_parse(last, &ms, &seq) < 0)
            break;
        /* Everything after last-delivered-id is unread: keep from its successor on. */
        o->safe_ms = ms;
        o->safe_seq = seq + 1;
        const char *argv[] = { "XPENDING", FEED, GROUP };
        if (cmd(o, pending_got, 3, argv) < 0)
            break;
        return;
    }
    o->trim_busy = 0;   /* no group yet (or unreadable): trim nothing */
}

static void trim_tick(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    struct lcm_outbox *o = ud;
    if (!o->leader || o->stopping || o->trim_busy)
        return;
    o->trim_busy = 1;
    if (o->nsinks == 0) {
        trim_to(o, UINT64_MAX, 0);   /* no deliverer: retention alone */
        return;
    }
    const char *argv[] = { "XINFO", "GROUPS", FEED };
    if (cmd(o, groups_got, 3, argv) < 0)
        o->trim_busy = 0;
}

/* ---- life cycle ---------------------------------------------------------------------- */

static char **split(const char *s, const char *seps, size_t *n)
{
    *n = 0;
    if (!s)
        return NULL;
    char **v = NULL;
    const char *p = s;
    while (*p) {
        size_t len = strcspn(p, seps);
        if (len) {
            char **nv = realloc(v, (*n + 1) * sizeof(*v));
            if (!nv)
                break;
            v = nv;
            v[*n] = strndup(p, len);
            if (v[*n])
                (*n)++;
        }
        p += len;
        if (*p)
            p++;
    }
    return v;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

struct lcm_outbox *lcm_outbox_new(struct lcm_net *n, char *err, size_t errlen)
{
    struct lcm_outbox *o = calloc(1, sizeof(*o));
    if (!o) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    o->n = n;
    o->ops.prev = o->ops.next = &o->ops;
    const struct lcm_config *c = n->cfg;
    const char *const *items = NULL;
    size_t ni = lcm_config_list(c, "cloudevents_sinks", &items);
    for (size_t i = 0; i < ni; i++) {
        size_t k = 0;
        char **parts = split(items[i], ";", &k);
        for (size_t j = 0; j < k; j++) {
            if (o->nsinks >= MAX_SINKS || (strncmp(parts[j], "http://", 7) && strncmp(parts[j], "https://", 8))) {
                snprintf(err, errlen, "cloudevents_sinks: '%.100s' is not an http(s) URL (or more than %d sinks)",
                         parts[j], MAX_SINKS);
                free_list(parts, k);
                lcm_outbox_free(o);
                return NULL;
            }
            char **nv = realloc(o->sinks, (o->nsinks + 1) * sizeof(*nv));
            if (!nv) {
                free_list(parts, k);
                lcm_outbox_free(o);
                snprintf(err, errlen, "out of memory");
                return NULL;
            }
            o->sinks = nv;
            o->sinks[o->nsinks++] = parts[j];
            parts[j] = NULL;
        }
        free_list(parts, k);
    }
    o->bearer = lcm_config_str(c, "cloudevents_sink_token");
    o->source = lcm_config_str(c, "cloudevents_source");
    o->type_prefix = lcm_config_str(c, "cloudevents_type_prefix");
    o->exclude = split(lcm_config_str(c, "outbox_exclude_types"), ",; ", &o->nexclude);
    o->batch = (long)lcm_config_int(c, "outbox_batch");
    o->concurrency = (long)lcm_config_int(c, "outbox_concurrency");
    o->max_attempts = (long)lcm_config_int(c, "outbox_max_attempts");
    o->backoff_ms = (long)lcm_config_int(c, "outbox_backoff_ms");
    o->backoff_max_ms = (long)lcm_config_int(c, "outbox_backoff_max_ms");
    o->timeout_ms = (long)lcm_config_int(c, "outbox_timeout_ms");
    o->lease_ms = (long)lcm_config_int(c, "outbox_lease_ms");
    o->claim_idle_ms = (long)lcm_config_int(c, "outbox_claim_idle_ms");
    o->poll_ms = (long)lcm_config_int(c, "outbox_poll_ms");
    o->trim_ms = (long)lcm_config_int(c, "feed_trim_interval_ms");
    o->retention_ms = lcm_config_int(c, "feed_retention_s") * 1000;
    char host[64] = "lcmd";
    gethostname(host, sizeof(host) - 1);
    for (char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
            *p = '_';
    const char *name = lcm_config_str(c, "outbox_consumer");
    if (name)
        snprintf(o->me, sizeof(o->me), "%s", name);
    else
        snprintf(o->me, sizeof(o->me), "%.60s-%ld", host, (long)getpid());
    o->wake = event_new(n->base, -1, 0, wake_cb, o);
    o->tick = event_new(n->base, -1, EV_PERSIST, tick_cb, o);
    o->lease_ev = event_new(n->base, -1, EV_PERSIST, lease_tick, o);
    o->trim_ev = event_new(n->base, -1, EV_PERSIST, trim_tick, o);
    if (!o->wake || !o->tick || !o->lease_ev || !o->trim_ev || !o->source || !o->type_prefix) {
        snprintf(err, errlen, "cannot set up the outbox");
        lcm_outbox_free(o);
        return NULL;
    }
    struct timeval tp = { o->poll_ms / 1000, (o->poll_ms % 1000) * 1000 };
    long lr = o->lease_ms / 3;
    struct timeval tl = { lr / 1000, (lr % 1000) * 1000 };
    struct timeval tt = { o->trim_ms / 1000, (o->trim_ms % 1000) * 1000 };
    event_add(o->tick, &tp);
    event_add(o->lease_ev, &tl);
    event_add(o->trim_ev, &tt);
    event_active(o->lease_ev, 0, 0);
    if (n->metrics) {
        struct lcm_metrics *m = n->metrics;
        lcm_metrics_declare(m, "lcm_outbox_delivered_total", LCM_METRIC_COUNTER, "CloudEvents delivered to every sink and acknowledged");
        lcm_metrics_declare(m, "lcm_outbox_failed_attempts_total", LCM_METRIC_COUNTER, "Delivery attempts that some sink refused or missed (retried)");
        lcm_metrics_declare(m, "lcm_outbox_dead_letters_total", LCM_METRIC_COUNTER, "CloudEvents given up after outbox_max_attempts (kept in lcm:outbox:dead)");
        lcm_metrics_declare(m, "lcm_outbox_lost_total", LCM_METRIC_COUNTER, "Pending entries found trimmed from lcm:feed before delivery (should stay 0)");
        lcm_metrics_declare(m, "lcm_outbox_claimed_total", LCM_METRIC_COUNTER, "Entries claimed (XAUTOCLAIM) from a dead deliverer");
        lcm_metrics_declare(m, "lcm_outbox_backlog", LCM_METRIC_GAUGE, "Events read from the group and not yet delivered");
        lcm_metrics_declare(m, "lcm_outbox_leader", LCM_METRIC_GAUGE, "1 when this replica holds the deliverer lease");
        lcm_metrics_declare(m, "lcm_feed_trimmed_total", LCM_METRIC_COUNTER, "Entries trimmed from lcm:feed (MINID, never past undelivered ones)");
        lcm_metrics_inc(m, "lcm_outbox_dead_letters_total", NULL, 0);
        lcm_metrics_inc(m, "lcm_outbox_delivered_total", NULL, 0);
        gauge(o);
    }
    lcm_info("outbox", "msg=\"outbox configured\" consumer=%s sinks=%zu", o->me, o->nsinks);
    return o;
}

void lcm_outbox_shutdown(struct lcm_outbox *o)
{
    if (!o || o->stopping)
        return;
    o->stopping = 1;
    if (o->leader && o->token[0]) {
        const char *argv[] = { "FCALL", "lcm_lease_release", "1", LEASE_KEY, o->token };
        cmd(o, NULL, 5, argv);
        lcm_info("outbox", "msg=\"deliverer lease released\" consumer=%s", o->me);
    }
    o->leader = 0;
    gauge(o);
}

void lcm_outbox_free(struct lcm_outbox *o)
{
    if (!o)
        return;
    o->leader = 0;
    for (unsigned b = 0; b < NBUCKETS; b++)
        while (o->buckets[b])
            agg_free(o, o->buckets[b]);
    while (o->ops.next != &o->ops) {
        struct ob_op *op = o->ops.next;
        op->prev->next = op->next;
        op->next->prev = op->prev;
        op->prev = op->next = NULL;
        op->o = NULL;   /* its callback frees it */
    }
    if (o->wake)
        event_free(o->wake);
    if (o->tick)
        event_free(o->tick);
    if (o->lease_ev)
        event_free(o->lease_ev);
    if (o->trim_ev)
        event_free(o->trim_ev);
    free_list(o->sinks, o->nsinks);
    free_list(o->exclude, o->nexclude);
    free(o);
}
