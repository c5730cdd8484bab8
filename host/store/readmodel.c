/* Read models: every aggregate's state in memory, loaded at start from the hashes (SCAN
 * lcm:{*} TYPE hash + pipelined HGETALL) and kept current by folding lcm:feed, read with
 * XREAD BLOCK on a connection of its own so that blocking never stalls normal commands. */
#include "store_int.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/log.h"
#include "../core/metrics.h"
#include "../core/redis.h"
#include "entry.h"

#define FOLLOW_BLOCK_MS "2000"
#define FOLLOW_COUNT "1000"

/* ---- maps ---------------------------------------------------------------------------- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

struct lcm_store_kmap *lcm_store_kmap_find(const struct lcm_store *s, const char *kind)
{
    for (size_t i = 0; kind && i < s->n_maps; i++)
        if (strcmp(s->maps[i].kind->name, kind) == 0)
            return &s->maps[i];
    return NULL;
}

struct lcm_store_agg *lcm_store_agg_find(const struct lcm_store_kmap *m, const char *id)
{
    struct lcm_store_agg *a = m->buckets[hash_str(id) & (m->nbuckets - 1)];
    while (a && strcmp(a->id, id) != 0)
        a = a->next;
    return a;
}

static void grow(struct lcm_store_kmap *m)
{
    size_t nb = m->nbuckets * 4;
    struct lcm_store_agg **b = calloc(nb, sizeof(*b));
    if (!b)
        return;   /* chains just get longer */
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct lcm_store_agg *a = m->buckets[i];
        while (a) {
            struct lcm_store_agg *next = a->next;
            size_t h = hash_str(a->id) & (nb - 1);
            a->next = b[h];
            b[h] = a;
            a = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = nb;
}

struct lcm_store_agg *lcm_store_agg_put(struct lcm_store_kmap *m, const char *id, void *state)
{
    struct lcm_store_agg *a = lcm_store_agg_find(m, id);
    if (a) {
        if (a->state != state) {
            lcm_store_fcache_drop(m->s, a);
            m->kind->destroy(a->state);
        }
        a->state = state;
        a->version = m->kind->version(state);
        return a;
    }
    a = calloc(1, sizeof(*a));
    if (!a || !(a->id = strdup(id))) {
        free(a);
        return NULL;
    }
    if (m->count >= m->nbuckets)
        grow(m);
    a->state = state;
    a->version = m->kind->version(state);
    size_t h = hash_str(id) & (m->nbuckets - 1);
    a->next = m->buckets[h];
    m->buckets[h] = a;
    m->count++;
    return a;
}

void lcm_store_maps_free(struct lcm_store *s)
{
    for (size_t i = 0; s->maps && i < s->n_maps; i++) {
        struct lcm_store_kmap *m = &s->maps[i];
        for (size_t b = 0; m->buckets && b < m->nbuckets; b++) {
            struct lcm_store_agg *a = m->buckets[b];
            while (a) {
                struct lcm_store_agg *next = a->next;
                lcm_store_fcache_drop(s, a);
                m->kind->destroy(a->state);
                free(a->id);
                free(a);
                a = next;
            }
        }
        free(m->buckets);
    }
    free(s->maps);
    s->maps = NULL;
}

const void *lcm_store_get(const struct lcm_store *s, const char *kind, const char *id)
{
    const struct lcm_store_kmap *m = lcm_store_kmap_find(s, kind);
    const struct lcm_store_agg *a = m && id ? lcm_store_agg_find(m, id) : NULL;
    return a ? a->state : NULL;
}

size_t lcm_store_each(const struct lcm_store *s, const char *kind, lcm_store_each_fn fn,
                      void *ud)
{
    const struct lcm_store_kmap *m = lcm_store_kmap_find(s, kind);
    size_t n = 0;
    for (size_t b = 0; m && b < m->nbuckets; b++)
        for (const struct lcm_store_agg *a = m->buckets[b]; a; a = a->next) {
            n++;
            if (fn(a->id, a->state, ud))
                return n;
        }
    return n;
}

size_t lcm_store_count(const struct lcm_store *s, const char *kind)
{
    const struct lcm_store_kmap *m = lcm_store_kmap_find(s, kind);
    return m ? m->count : 0;
}

int lcm_store_loaded(const struct lcm_store *s) { return s->loaded; }
const char *lcm_store_feed_position(const struct lcm_store *s) { return s->feed_pos; }

int lcm_store_subscribe(struct lcm_store *s, lcm_store_change_fn fn, void *ud)
{
    if (!fn)
        return -1;
    for (size_t i = 0; i < s->n_subs; i++)
        if (!s->subs[i].fn) {
            s->subs[i] = (struct lcm_store_sub){ s->next_handle++, fn, ud };
            return s->subs[i].handle;
        }
    if (s->n_subs == s->cap_subs) {
        size_t cap = s->cap_subs ? s->cap_subs * 2 : 4;
        struct lcm_store_sub *n = realloc(s->subs, cap * sizeof(*n));
        if (!n)
            return -1;
        s->subs = n;
        s->cap_subs = cap;
    }
    s->subs[s->n_subs] = (struct lcm_store_sub){ s->next_handle++, fn, ud };
    return s->subs[s->n_subs++].handle;
}

void lcm_store_unsubscribe(struct lcm_store *s, int handle)
{
    for (size_t i = 0; i < s->n_subs; i++)
        if (s->subs[i].handle == handle)
            s->subs[i].fn = NULL;   /* slot reused later; safe inside a callback */
}

/* ---- hash → state -------------------------------------------------------------------- */

/* Builds a state from an HGETALL reply. NULL (logged) when the hash is malformed. */
static void *state_from_hash(const struct lcm_kind *k, const char *id, const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements == 0 || r->elements % 2)
        return NULL;
    size_t n = r->elements / 2;
    const char **names = malloc(n * sizeof(*names));
    const char **values = malloc(n * sizeof(*values));
    void *st = NULL;
    char err[200] = "";
    if (!names || !values)
        goto out;
    for (size_t i = 0; i < n; i++) {
        const redisReply *f = r->element[2 * i], *v = r->element[2 * i + 1];
        if (!f || !v || f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
            memchr(f->str, 0, f->len) || memchr(v->str, 0, v->len)) {
            snprintf(err, sizeof(err), "field %zu is not a string", i);
            goto bad;
        }
        names[i] = f->str;
        values[i] = v->str;
    }
    st = k->create(id);
    if (st && k->from_fields(st, names, values, n, err, sizeof(err)) < 0) {
        k->destroy(st);
        st = NULL;
        goto bad;
    }
    goto out;
bad:
    lcm_warn("store", "msg=\"malformed aggregate hash skipped\" key=\"lcm:{%s:%s}\" reason=\"%s\"",
             k->name, id, err);
out:
    free(names);
    free(values);
    return st;
}

/* Parses "lcm:{<kind>:<id>}" (NUL-terminated copies into kind/id). Returns 0 or -1. */
static int parse_hash_key(const char *key, size_t len, char *kind, char *id)
{
    if (len < 8 || len > 270 || strncmp(key, "lcm:{", 5) != 0 || key[len - 1] != '}')
        return -1;
    const char *in = key + 5, *end = key + len - 1, *colon = memchr(in, ':', (size_t)(end - in));
    if (!colon || colon - in > 128 || end - colon - 1 > 128)
        return -1;
    memcpy(kind, in, (size_t)(colon - in));
    kind[colon - in] = '\0';
    memcpy(id, colon + 1, (size_t)(end - colon - 1));
    id[end - colon - 1] = '\0';
    return lcm_store_valid_name(kind) && lcm_store_valid_name(id) ? 0 : -1;
}

/* ---- initial load -------------------------------------------------------------------- */

struct lcm_store_load {
    struct lcm_store *s;
    size_t inflight;
    int scan_done, failed;
    char feed_start[48];
};

struct load_get {
    struct lcm_store_load *l;
    struct lcm_store_kmap *m;
    char id[129];
};

static void follow_start(struct lcm_store *s);

static void load_finish(struct lcm_store_load *l)
{
    struct lcm_store *s = l->s;
    if (l->inflight || (!l->scan_done && !l->failed))
        return;
    s->load = NULL;
    int status = l->failed ? -1 : 0;
    if (!l->failed) {
        memcpy(s->feed_pos, l->feed_start, sizeof(s->feed_pos));
        s->loaded = 1;
        size_t total = 0;
        for (size_t i = 0; i < s->n_maps; i++)
            total += s->maps[i].count;
        lcm_info("store", "msg=\"read models loaded\" aggregates=%zu feed_from=%s", total,
                 s->feed_pos);
        if (!s->no_follow && !s->closing)
            follow_start(s);
    }
    free(l);
    if (s->ready)
        s->ready(s, status, s->ready_ud);
}

static void load_fail(struct lcm_store_load *l, const char *why)
{
    if (!l->failed)
        lcm_error("store", "msg=\"read model load failed\" reason=\"%s\"", why);
    l->failed = 1;
}

static void load_got_hash(struct lcm_redis *r, redisReply *reply, void *ud)
{
    (void)r;
    struct load_get *g = ud;
    struct lcm_store_load *l = g->l;
    l->inflight--;
    if (!reply) {
        load_fail(l, "connection lost");
    } else if (!l->failed && reply->type == REDIS_REPLY_ARRAY && reply->elements) {
        void *st = state_from_hash(g->m->kind, g->id, reply);
        if (st) {
            struct lcm_store_agg *a = lcm_store_agg_find(g->m, g->id);
            if (!a || a->version < g->m->kind->version(st)) {
                if (!lcm_store_agg_put(g->m, g->id, st))
                    g->m->kind->destroy(st);
            } else {
                g->m->kind->destroy(st);
            }
        }
    }
    free(g);
    load_finish(l);
}

static void load_scan(struct lcm_store_load *l, const char *cursor);

static void load_scanned(struct lcm_redis *r, redisReply *reply, void *ud)
{
    (void)r;
    struct lcm_store_load *l = ud;
    struct lcm_store *s = l->s;
    l->inflight--;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        load_fail(l, reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "SCAN failed");
        load_finish(l);
        return;
    }
    const redisReply *keys = reply->element[1];
    for (size_t i = 0; i < keys->elements && !l->failed; i++) {
        const redisReply *k = keys->element[i];
        char kind[130], id[130];
        if (k->type != REDIS_REPLY_STRING || parse_hash_key(k->str, k->len, kind, id) < 0)
            continue;
        struct lcm_store_kmap *m = lcm_store_kmap_find(s, kind);
        if (!m)
            continue;
        struct load_get *g = calloc(1, sizeof(*g));
        if (!g) {
            load_fail(l, "out of memory");
            break;
        }
        g->l = l;
        g->m = m;
        memcpy(g->id, id, strlen(id) + 1);
        const char *argv[] = { "HGETALL", k->str };
        size_t lens[] = { 7, k->len };
        if (lcm_redis_commandv(s->r, load_got_hash, g, 2, argv, lens) < 0) {
            free(g);
            load_fail(l, "not connected");
            break;
        }
        l->inflight++;
    }
    if (strcmp(reply->element[0]->str, "0") == 0 || l->failed)
        l->scan_done = 1;
    else
        load_scan(l, reply->element[0]->str);
    load_finish(l);
}

static void load_scan(struct lcm_store_load *l, const char *cursor)
{
    const char *argv[] = { "SCAN", cursor, "MATCH", "lcm:{*}", "COUNT", "1000", "TYPE", "hash" };
    size_t lens[8];
    for (int i = 0; i < 8; i++)
        lens[i] = strlen(argv[i]);
    if (lcm_redis_commandv(l->s->r, load_scanned, l, 8, argv, lens) < 0) {
        load_fail(l, "not connected");
        l->scan_done = 1;
        return;
    }
    l->inflight++;
}

static void load_feed_tail(struct lcm_redis *r, redisReply *reply, void *ud)
{
    (void)r;
    struct lcm_store_load *l = ud;
    l->inflight--;
    /* The feed position is taken before the hashes are read, so nothing written in between
     * is missed: replayed events at or below a loaded version are simply skipped. */
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        load_fail(l, reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "XREVRANGE failed");
        l->scan_done = 1;
        load_finish(l);
        return;
    }
    strcpy(l->feed_start, "0-0");
    if (reply->elements == 1) {
        const redisReply *e = reply->element[0];
        if (e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
            e->element[0]->type == REDIS_REPLY_STRING && e->element[0]->len < 48)
            memcpy(l->feed_start, e->element[0]->str, e->element[0]->len + 1);
    }
    load_scan(l, "0");
    load_finish(l);
}

int lcm_store_start(struct lcm_store *s, lcm_store_ready_fn ready, void *ud)
{
    if (s->load || s->loaded)
        return -1;
    struct lcm_store_load *l = calloc(1, sizeof(*l));
    if (!l)
        return -1;
    l->s = s;
    s->ready = ready;
    s->ready_ud = ud;
    if (lcm_redis_command(s->r, load_feed_tail, l, "XREVRANGE %s + - COUNT 1", LCM_STORE_FEED) < 0) {
        free(l);
        return -1;
    }
    l->inflight++;
    s->load = l;
    return 0;
}

/* ---- resync of one aggregate --------------------------------------------------------- */

struct reload {
    struct lcm_store *s;
    struct lcm_store_kmap *m;
    int force;                 /* take Redis' state even when its version is lower */
    char id[129];
};

static void reload_got(struct lcm_redis *r, redisReply *reply, void *ud)
{
    (void)r;
    struct reload *rl = ud;
    struct lcm_store *s = rl->s;
    s->pending_reloads--;
    if (reply && !s->closing) {
        struct lcm_store_agg *a = lcm_store_agg_find(rl->m, rl->id);
        void *st = state_from_hash(rl->m->kind, rl->id, reply);
        if (a)
            a->reloading = 0;
        uint64_t v = st ? rl->m->kind->version(st) : 0;
        if (st && (!a || a->version < v || (rl->force && a->version != v))) {
            if (a && a->version > v)
                lcm_warn("store", "msg=\"read model was ahead of Redis (writes lost in a failover?); "
                         "taking Redis' state\" aggregate=%s:%s local=%" PRIu64 " redis=%" PRIu64,
                         rl->m->kind->name, rl->id, a->version, v);
            if (!lcm_store_agg_put(rl->m, rl->id, st))
                rl->m->kind->destroy(st);
        } else if (st) {
            rl->m->kind->destroy(st);
        }
    }
    free(rl);
}

static void reload_ex(struct lcm_store *s, struct lcm_store_kmap *m, const char *id, int force)
{
    struct lcm_store_agg *a = lcm_store_agg_find(m, id);
    if (a && a->reloading)
        return;
    struct reload *rl = calloc(1, sizeof(*rl));
    if (!rl)
        return;
    rl->s = s;
    rl->m = m;
    rl->force = force;
    snprintf(rl->id, sizeof(rl->id), "%s", id);
    if (lcm_redis_command(s->r, reload_got, rl, "HGETALL lcm:{%s:%s}", m->kind->name, id) < 0) {
        free(rl);
        return;
    }
    s->pending_reloads++;
    if (a)
        a->reloading = 1;
}

static void reload(struct lcm_store *s, struct lcm_store_kmap *m, const char *id)
{
    reload_ex(s, m, id, 0);
}

void lcm_store_resync(struct lcm_store *s, const char *kind, const char *id)
{
    struct lcm_store_kmap *m = lcm_store_kmap_find(s, kind);
    if (!m || s->closing)
        return;
    if (s->metrics)
        lcm_metrics_inc(s->metrics, "lcm_store_resyncs_total", NULL, 1);
    reload_ex(s, m, id, 1);
}

/* ---- feed follower ------------------------------------------------------------------- */

static void fold_feed(const struct lcm_store_entry *e, void *ud)
{
    struct lcm_store *s = ud;
    struct lcm_store_kmap *m = lcm_store_kmap_find(s, e->kind);
    if (!m) {
        lcm_debug("store", "msg=\"feed entry of unknown kind skipped\" entry=%s kind=%s",
                  e->entry_id, e->kind);
        return;
    }
    struct lcm_store_agg *a = lcm_store_agg_find(m, e->id);
    uint64_t have = a ? a->version : 0;
    struct lcm_event ev = { e->type, e->version, e->at, e->by, e->data };
    if (e->version == have + 1 && !(a && a->reloading)) {
        char err[200] = "";
        void *st = a ? a->state : m->kind->create(e->id);
        if (a)
            lcm_store_fcache_drop(s, a);   /* state changes in place (or is resynced) */
        if (st && m->kind->apply(st, &ev, err, sizeof(err)) == 0) {
            if (a)
                a->version = m->kind->version(st);
            else if (!(a = lcm_store_agg_put(m, e->id, st)))
                m->kind->destroy(st);
        } else {
            lcm_warn("store", "msg=\"feed event does not apply, resyncing from the hash\" "
                     "key=lcm:feed entry=%s aggregate=%s:%s version=%" PRIu64 " reason=\"%s\"",
                     e->entry_id, e->kind, e->id, e->version, err);
            if (st && !a)
                m->kind->destroy(st);
            reload(s, m, e->id);
        }
    } else if (e->version > have + 1) {
        /* A gap (trimmed feed, missed entries): the hash is the current state. */
        reload(s, m, e->id);
    }
    if (s->metrics)
        lcm_metrics_inc(s->metrics, "lcm_store_feed_events_total", NULL, 1);
    a = lcm_store_agg_find(m, e->id);
    for (size_t i = 0; i < s->n_subs; i++)
        if (s->subs[i].fn)
            s->subs[i].fn(m->kind, e->id, a ? a->state : NULL, &ev, e->entry_id, s->subs[i].ud);
}

static void follow_issue(struct lcm_store *s);

static void follow_retry_cb(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    follow_issue(ud);
}

static void follow_later(struct lcm_store *s, long ms)
{
    if (s->closing || !s->follow_retry)
        return;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(s->follow_retry, &tv);
}

static void follow_got(struct lcm_redis *r, redisReply *reply, void *ud)
{
    (void)r;
    struct lcm_store *s = ud;
    s->follow_inflight = 0;
    if (s->closing)
        return;
    if (!reply) {
        follow_later(s, 100);   /* dropped or timed out; the follower reconnects */
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        lcm_warn("store", "msg=\"XREAD on lcm:feed failed\" error=\"%.200s\"", reply->str);
        follow_later(s, 1000);
        return;
    }
    if (reply->type == REDIS_REPLY_ARRAY) {
        const redisReply *entries = lcm_store_xread_entries(reply, LCM_STORE_FEED);
        if (entries) {
            long skipped = lcm_store_entries_each(entries, 1, LCM_STORE_FEED, fold_feed, s,
                                                  s->feed_pos, sizeof(s->feed_pos));
            if (skipped > 0 && s->metrics)
                lcm_metrics_inc(s->metrics, "lcm_store_malformed_entries_total", NULL,
                                (double)skipped);
        }
    }
    follow_issue(s);
}

static void follow_issue(struct lcm_store *s)
{
    if (s->closing || s->follow_inflight || !s->follow)
        return;
    const char *argv[] = { "XREAD", "COUNT", FOLLOW_COUNT, "BLOCK", FOLLOW_BLOCK_MS, "STREAMS",
                           LCM_STORE_FEED, s->feed_pos };
    size_t lens[8];
    for (int i = 0; i < 8; i++)
        lens[i] = strlen(argv[i]);
    if (lcm_redis_commandv(s->follow, follow_got, s, 8, argv, lens) < 0) {
        follow_later(s, 100);
        return;
    }
    s->follow_inflight = 1;
}

static void follow_connected(struct lcm_redis *r, void *ud)
{
    (void)r;
    struct lcm_store *s = ud;
    if (!s->closing && s->follow_retry)
        evtimer_del(s->follow_retry);
    follow_issue(s);
}

static void follow_start(struct lcm_store *s)
{
    if (s->follow_started)
        return;
    s->follow_started = 1;
    struct lcm_redis_opts o = { .url = s->follow_url, .connect_timeout_ms = 2000,
                                .command_timeout_ms = 10000, .backoff_max_ms = 2000 };
    s->follow = lcm_redis_new(s->base, NULL, &o);
    s->follow_retry = evtimer_new(s->base, follow_retry_cb, s);
    if (!s->follow || !s->follow_retry) {
        lcm_error("store", "msg=\"cannot create the feed follower\"");
        return;
    }
    lcm_redis_on_connect(s->follow, follow_connected, s);
    follow_issue(s);
}

void lcm_store_follow_stop(struct lcm_store *s)
{
    if (s->follow) {
        lcm_redis_free(s->follow);   /* the pending XREAD completes with NULL: closing */
        s->follow = NULL;
    }
    if (s->follow_retry) {
        event_free(s->follow_retry);
        s->follow_retry = NULL;
    }
    if (s->load) {
        /* Only reachable when the command connection outlives the store (a misuse): the
         * pending callbacks would reference freed memory, so say so loudly. */
        lcm_error("store", "msg=\"store freed during its initial load; free the redis "
                  "connection first\"");
    }
}
