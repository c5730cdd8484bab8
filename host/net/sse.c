/* GET /api/v1/events: the change feed as Server-Sent Events. Live events come from the one
 * store subscription (each frame is built once and fanned out); a client that reconnects
 * with Last-Event-ID first replays lcm:feed with XRANGE (exclusive) and then switches to live,
 * de-duplicated by feed id, so it misses and repeats nothing. Slow clients are dropped. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "core/config.h"
#include "core/httpd.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/redis.h"
#include "net_int.h"
#include "store/entry.h"

#define REPLAY_PAGE "500"
#define MAX_FILTERS 16

struct frame {
    struct frame *next;
    char id[48];
    size_t len;
    char text[];
};

struct sse_client {
    struct sse_client *prev, *next;
    struct lcm_sse *s;                /* NULL: orphaned while a replay page is in flight */
    struct lcm_req *req;              /* NULL once the client is gone */
    char rid[40];
    char *kinds[MAX_FILTERS], *types[MAX_FILTERS];
    size_t nkinds, ntypes;
    char *agg_id;
    char last[48];                    /* last feed id sent (or skipped by filter) */
    int replaying, replay_inflight;
    struct frame *q_head, *q_tail;    /* live frames held during the replay */
    size_t q_bytes;
    uint64_t sent;
};

struct lcm_sse {
    struct lcm_net *n;
    struct sse_client head;
    size_t nclients, max_clients;
    size_t max_buffer;
    struct event *hb;
    int hb_s;
};

static void client_free(struct sse_client *c)
{
    for (size_t i = 0; i < c->nkinds; i++)
        free(c->kinds[i]);
    for (size_t i = 0; i < c->ntypes; i++)
        free(c->types[i]);
    free(c->agg_id);
    for (struct frame *f = c->q_head, *nx; f; f = nx) {
        nx = f->next;
        free(f);
    }
    free(c);
}

static void client_unlink(struct sse_client *c)
{
    if (c->prev) {
        c->prev->next = c->next;
        c->next->prev = c->prev;
        c->prev = c->next = NULL;
        c->s->nclients--;
        if (c->s->n->metrics)
            lcm_metrics_set(c->s->n->metrics, "lcm_sse_clients", NULL, (double)c->s->nclients);
    }
}

/* The server told us the client is gone (req is NULL here). */
static void on_close(struct lcm_req *r, void *ud)
{
    (void)r;
    struct sse_client *c = ud;
    c->req = NULL;
    lcm_debug("sse", "req=%s msg=\"client gone\" sent=%" PRIu64, c->rid, c->sent);
    client_unlink(c);
    if (!c->replay_inflight)
        client_free(c);
}

/* Ends a client from our side (slow, or lcmd stopping). */
static void client_drop(struct sse_client *c, const char *why)
{
    if (c->req) {
        lcm_info("sse", "req=%s msg=\"dropping client\" reason=%s sent=%" PRIu64, c->rid, why, c->sent);
        struct lcm_req *r = c->req;
        c->req = NULL;
        lcm_reply_stream_end(r);
    }
    client_unlink(c);
    if (!c->replay_inflight)
        client_free(c);
}

static int split_list(const char *v, char **out, size_t *n)
{
    *n = 0;
    if (!v)
        return 0;
    const char *p = v;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len) {
            if (*n >= MAX_FILTERS || len > 128)
                return -1;
            if (!(out[*n] = strndup(p, len)))
                return -1;
            (*n)++;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

static int type_matches(const char *pat, const char *type)
{
    size_t n = strlen(pat);
    if (n && pat[n - 1] == '*')
        return !strncmp(pat, type, n - 1);
    return !strcmp(pat, type);
}

static int wants(const struct sse_client *c, const char *kind, const char *id, const char *type)
{
    if (c->nkinds) {
        size_t i = 0;
        while (i < c->nkinds && strcmp(c->kinds[i], kind))
            i++;
        if (i == c->nkinds)
            return 0;
    }
    if (c->agg_id && strcmp(c->agg_id, id))
        return 0;
    if (c->ntypes) {
        size_t i = 0;
        while (i < c->ntypes && !type_matches(c->types[i], type))
            i++;
        if (i == c->ntypes)
            return 0;
    }
    return 1;
}

static int client_write(struct sse_client *c, const char *text, size_t len)
{
    if (!c->req)
        return -1;
    struct lcm_sse *s = c->s;
    if (s->max_buffer &&
        lcm_reply_stream_pending(c->req) + len > s->max_buffer) {
        if (s->n->metrics)
            lcm_metrics_inc(s->n->metrics, "lcm_sse_dropped_total", "reason=\"slow\"", 1);
        client_drop(c, "slow");
        return -1;
    }
    if (lcm_reply_stream_write(c->req, text, len) < 0) {
        client_drop(c, "write-failed");
        return -1;
    }
    return 0;
}

static struct frame *frame_new(const char *feed_id, const char *type, const char *json)
{
    size_t cap = strlen(feed_id) + strlen(type) + strlen(json) + 32;
    struct frame *f = malloc(sizeof(*f) + cap);
    if (!f)
        return NULL;
    f->next = NULL;
    snprintf(f->id, sizeof(f->id), "%s", feed_id);
    int n = snprintf(f->text, cap, "id: %s\nevent: %s\ndata: %s\n\n", feed_id, type, json);
    f->len = n < 0 ? 0 : (size_t)n;
    return f;
}

/* Sends a frame to a live (not replaying) client unless it already has it. */
static void deliver(struct sse_client *c, const char *feed_id, const char *text, size_t len)
{
    if (lcm_net_id_cmp(feed_id, c->last) <= 0)
        return;
    snprintf(c->last, sizeof(c->last), "%s", feed_id);
    if (client_write(c, text, len) == 0) {
        c->sent++;
        if (c->s->n->metrics)
            lcm_metrics_inc(c->s->n->metrics, "lcm_sse_events_total", NULL, 1);
    }
}

void lcm_sse_event(struct lcm_sse *s, const char *kind, const char *id, const char *type,
                   uint64_t version, const char *at, const char *by, const cJSON *data,
                   const char *feed_id)
{
    if (!s || s->nclients == 0)
        return;
    struct frame *f = NULL;
    for (struct sse_client *c = s->head.next, *nx; c != &s->head; c = nx) {
        nx = c->next;
        if (!wants(c, kind, id, type)) {
            if (!c->replaying && lcm_net_id_cmp(feed_id, c->last) > 0)
                snprintf(c->last, sizeof(c->last), "%s", feed_id);
            continue;
        }
        if (!f) {
            char *json = lcm_net_event_json(kind, id, type, version, at, by, data);
            f = json ? frame_new(feed_id, type, json) : NULL;
            cJSON_free(json);
            if (!f)
                return;
        }
        if (c->replaying) {
            /* Held until the replay reaches it; bounded like the socket buffer. */
            struct frame *q = malloc(sizeof(*q) + f->len + 1);
            if (!q || c->q_bytes + f->len > (s->max_buffer ? s->max_buffer : (size_t)-1)) {
                free(q);
                if (s->n->metrics)
                    lcm_metrics_inc(s->n->metrics, "lcm_sse_dropped_total", "reason=\"slow\"", 1);
                client_drop(c, "replay-backlog");
                continue;
            }
            memcpy(q, f, sizeof(*q) + f->len + 1);
            q->next = NULL;
            if (c->q_tail)
                c->q_tail->next = q;
            else
                c->q_head = q;
            c->q_tail = q;
            c->q_bytes += f->len;
            continue;
        }
        deliver(c, feed_id, f->text, f->len);
    }
    free(f);
}

/* ---- replay from lcm:feed ------------------------------------------------------------ */

static void replay_next(struct sse_client *c);

static void replay_entry(const struct lcm_store_entry *e, void *ud)
{
    struct sse_client *c = ud;
    if (!c->req)
        return;
    if (!wants(c, e->kind, e->id, e->type)) {
        if (lcm_net_id_cmp(e->entry_id, c->last) > 0)
            snprintf(c->last, sizeof(c->last), "%s", e->entry_id);
        return;
    }
    char *json = lcm_net_event_json(e->kind, e->id, e->type, e->version, e->at, e->by, e->data);
    struct frame *f = json ? frame_new(e->entry_id, e->type, json) : NULL;
    if (f)
        deliver(c, f->id, f->text, f->len);
    free(f);
    cJSON_free(json);
}

static void replay_done(struct sse_client *c)
{
    c->replaying = 0;
    struct frame *f = c->q_head;
    c->q_head = c->q_tail = NULL;
    c->q_bytes = 0;
    while (f) {
        struct frame *nx = f->next;
        if (c->req)
            deliver(c, f->id, f->text, f->len);
        free(f);
        f = nx;
    }
}

static void replay_got(struct lcm_redis *r, redisReply *reply, void *ud)
{
    (void)r;
    struct sse_client *c = ud;
    /* replay_inflight stays set while the page is processed: a drop meanwhile only unlinks. */
    if (c->s && c->req) {
        if (!reply || reply->type != REDIS_REPLY_ARRAY) {
            lcm_warn("sse", "req=%s msg=\"replay from lcm:feed failed\" error=\"%.200s\"", c->rid,
                     reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "no reply");
            client_drop(c, "replay-failed");
        } else {
            char last[48];
            snprintf(last, sizeof(last), "%s", c->last);
            lcm_store_entries_each(reply, 1, "lcm:feed", replay_entry, c, last, sizeof(last));
            /* Malformed entries are skipped but still moved past. */
            if (c->req && lcm_net_id_cmp(last, c->last) > 0)
                snprintf(c->last, sizeof(c->last), "%s", last);
            if (c->req) {
                if (reply->elements >= (size_t)atoi(REPLAY_PAGE)) {
                    c->replay_inflight = 0;
                    replay_next(c);
                    return;
                }
                replay_done(c);
            }
        }
    }
    c->replay_inflight = 0;
    if (!c->req && !c->prev)
        client_free(c);
}

static void replay_next(struct sse_client *c)
{
    char start[64];
    snprintf(start, sizeof(start), "(%s", c->last);
    const char *argv[] = { "XRANGE", "lcm:feed", start, "+", "COUNT", REPLAY_PAGE };
    size_t lens[6];
    for (int i = 0; i < 6; i++)
        lens[i] = strlen(argv[i]);
    if (lcm_redis_commandv(c->s->n->redis, replay_got, c, 6, argv, lens) < 0) {
        client_drop(c, "redis-unavailable");
        return;
    }
    c->replay_inflight = 1;
}

/* ---- route --------------------------------------------------------------------------- */

static void h_events(struct lcm_req *r, void *ud)
{
    struct lcm_sse *s = ud;
    const char *last = lcm_req_header(r, "Last-Event-ID");
    if (!last || !*last)
        last = lcm_req_query(r, "last_event_id");
    uint64_t ms, seq;
    if (last && *last && lcm_net_id_parse(last, &ms, &seq) < 0) {
        lcm_reply_problem(r, 400, "validation", "Invalid Last-Event-ID",
                          "Last-Event-ID must be an lcm:feed entry id (\"<ms>-<seq>\")", "last_event_id");
        return;
    }
    if (s->nclients >= s->max_clients) {
        lcm_reply_header(r, "Retry-After", "5");
        lcm_reply_problem(r, 503, "too-many-streams", "Too many event streams",
                          "the SSE client limit (sse_max_clients) is reached", NULL);
        return;
    }
    struct sse_client *c = calloc(1, sizeof(*c));
    if (!c) {
        lcm_reply_problem(r, 500, "internal", NULL, "out of memory", NULL);
        return;
    }
    c->s = s;
    snprintf(c->rid, sizeof(c->rid), "%s", lcm_req_id(r));
    const char *id = lcm_req_query(r, "id");
    if (split_list(lcm_req_query(r, "kind"), c->kinds, &c->nkinds) < 0 ||
        split_list(lcm_req_query(r, "type"), c->types, &c->ntypes) < 0 ||
        (id && *id && !(c->agg_id = strdup(id)))) {
        client_free(c);
        lcm_reply_problem(r, 400, "validation", "Invalid filter",
                          "kind and type take at most 16 comma-separated values of 128 characters",
                          "kind");
        return;
    }
    c->req = r;
    lcm_reply_header(r, "Cache-Control", "no-cache");
    lcm_reply_header(r, "X-Accel-Buffering", "no");
    lcm_reply_stream_start(r, 200, "text/event-stream", on_close, c);
    c->prev = s->head.prev;
    c->next = &s->head;
    s->head.prev->next = c;
    s->head.prev = c;
    s->nclients++;
    if (s->n->metrics)
        lcm_metrics_set(s->n->metrics, "lcm_sse_clients", NULL, (double)s->nclients);
    static const char hello[] = "retry: 2000\n: lcm change feed\n\n";
    if (client_write(c, hello, sizeof(hello) - 1) < 0)
        return;
    if (last && *last) {
        snprintf(c->last, sizeof(c->last), "%s", last);
        c->replaying = 1;
        replay_next(c);
    } else {
        /* Live only: start at what the read model has folded, so nothing older is sent. */
        snprintf(c->last, sizeof(c->last), "%s", "0-0");
    }
}

static void heartbeat(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    struct lcm_sse *s = ud;
    char line[64];
    int n = snprintf(line, sizeof(line), ": heartbeat %lld\n\n", (long long)time(NULL));
    for (struct sse_client *c = s->head.next, *nx; c != &s->head; c = nx) {
        nx = c->next;
        client_write(c, line, (size_t)n);
    }
}

struct lcm_sse *lcm_sse_new(struct lcm_net *n, char *err, size_t errlen)
{
    struct lcm_sse *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->n = n;
    s->head.prev = s->head.next = &s->head;
    s->max_clients = (size_t)lcm_config_int(n->cfg, "sse_max_clients");
    s->max_buffer = (size_t)lcm_config_int(n->cfg, "sse_max_buffer_bytes");
    s->hb_s = (int)lcm_config_int(n->cfg, "sse_heartbeat_ms");
    s->hb = event_new(n->base, -1, EV_PERSIST, heartbeat, s);
    struct timeval tv = { s->hb_s / 1000, (s->hb_s % 1000) * 1000 };
    if (!s->hb || event_add(s->hb, &tv) < 0 ||
        lcm_httpd_route(n->httpd, "GET", "/api/v1/events", 0, "read", h_events, s) < 0) {
        snprintf(err, errlen, "cannot set up the SSE route");
        lcm_sse_free(s);
        return NULL;
    }
    if (n->metrics) {
        lcm_metrics_declare(n->metrics, "lcm_sse_clients", LCM_METRIC_GAUGE, "Connected SSE clients");
        lcm_metrics_declare(n->metrics, "lcm_sse_events_total", LCM_METRIC_COUNTER, "Events sent to SSE clients");
        lcm_metrics_declare(n->metrics, "lcm_sse_dropped_total", LCM_METRIC_COUNTER, "SSE clients dropped by lcmd, by reason");
        lcm_metrics_set(n->metrics, "lcm_sse_clients", NULL, 0);
    }
    return s;
}

void lcm_sse_free(struct lcm_sse *s)
{
    if (!s)
        return;
    while (s->head.next != &s->head) {
        struct sse_client *c = s->head.next;
        struct lcm_req *r = c->req;
        c->req = NULL;
        client_unlink(c);
        if (r)
            lcm_reply_stream_end(r);
        if (c->replay_inflight)
            c->s = NULL;    /* replay_got frees it */
        else
            client_free(c);
    }
    if (s->hb)
        event_free(s->hb);
    free(s);
}
