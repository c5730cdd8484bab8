/* The store's connection handling and writes: loads the `lcm` Redis Function library on every
 * connect, encodes appends as one FCALL lcm_append (keys declared for Redis), decodes its
 * distinguishable error replies, and derives hash/index changes for high-level commits. */
#include "store_int.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/log.h"
#include "../core/metrics.h"
#include "../core/redis.h"
#include "entry.h"

const char *lcm_store_strerror(int status)
{
    switch (status) {
    case LCM_STORE_OK: return "ok";
    case LCM_STORE_ECONFLICT: return "conflict";
    case LCM_STORE_EFENCED: return "fenced";
    case LCM_STORE_EDUPLICATE: return "duplicate";
    case LCM_STORE_EINVALID: return "invalid";
    case LCM_STORE_EUNAVAILABLE: return "unavailable";
    case LCM_STORE_EREDIS: return "redis error";
    case LCM_STORE_ENOMEM: return "out of memory";
    default: return "unknown";
    }
}

void lcm_store_now(char *buf, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char day[32];
    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap, "%.20s.%03dZ", day, (int)(ts.tv_nsec / 1000000) % 1000);
}

/* ---- function library ---------------------------------------------------------------- */

static void function_loaded(struct lcm_redis *r, redisReply *reply, void *ud)
{
    (void)r;
    (void)ud;
    if (!reply)
        return;   /* dropped: the next connect loads it again */
    if (reply->type == REDIS_REPLY_ERROR)
        lcm_error("store", "msg=\"FUNCTION LOAD failed (Redis >= 7 required)\" error=\"%.200s\"",
                  reply->str);
    else
        lcm_debug("store", "msg=\"function library loaded\" library=lcm");
}

static void load_function(struct lcm_redis *r, void *ud)
{
    const char *argv[] = { "FUNCTION", "LOAD", "REPLACE", lcm_store_lua_source };
    size_t lens[] = { 8, 4, 7, strlen(lcm_store_lua_source) };
    if (lcm_redis_commandv(r, function_loaded, ud, 4, argv, lens) < 0)
        lcm_warn("store", "msg=\"cannot send FUNCTION LOAD (not connected)\"");
}

static void fail_queue(struct lcm_store *s);

/* ---- lifecycle ----------------------------------------------------------------------- */

struct lcm_store *lcm_store_new(struct event_base *base, struct lcm_redis *r,
                                struct lcm_metrics *metrics, const struct lcm_store_opts *opts,
                                char *err, size_t errlen)
{
    struct lcm_store_opts dflt = { 0 };
    if (!opts)
        opts = &dflt;
    struct lcm_store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->base = base;
    s->r = r;
    s->metrics = metrics;
    s->feed_maxlen = opts->feed_maxlen == 0 ? 100000 : opts->feed_maxlen;
    snprintf(s->feed_maxlen_s, sizeof(s->feed_maxlen_s), "%ld",
             s->feed_maxlen < 0 ? 0L : s->feed_maxlen);
    s->no_follow = opts->no_follow;
    s->next_handle = 1;
    strcpy(s->feed_pos, "0-0");
    const char *url = opts->follow_url ? opts->follow_url : lcm_redis_url(r);
    s->follow_url = strdup(url ? url : "");
#ifdef LCM_STORE_NO_DOMAIN
    const struct lcm_kind *const *kinds = opts->kinds;
#else
    const struct lcm_kind *const *kinds = opts->kinds ? opts->kinds : lcm_kinds;
#endif
    if (!kinds) {
        snprintf(err, errlen, "no aggregate kinds (lcm_domain not built)");
        lcm_store_free(s);
        return NULL;
    }
    for (size_t i = 0; kinds[i]; i++)
        s->n_maps++;
    s->maps = calloc(s->n_maps ? s->n_maps : 1, sizeof(*s->maps));
    if (!s->follow_url || !s->maps) {
        snprintf(err, errlen, "out of memory");
        lcm_store_free(s);
        return NULL;
    }
    s->fcache_max = LCM_STORE_FCACHE_MAX;
    for (size_t i = 0; i < s->n_maps; i++) {
        s->maps[i].s = s;
        s->maps[i].kind = kinds[i];
        s->maps[i].nbuckets = 64;
        s->maps[i].buckets = calloc(64, sizeof(*s->maps[i].buckets));
        if (!s->maps[i].buckets || !lcm_store_valid_name(kinds[i]->name)) {
            snprintf(err, errlen, "bad kind or out of memory");
            lcm_store_free(s);
            return NULL;
        }
    }
    if (metrics) {
        lcm_metrics_declare(metrics, "lcm_store_appends_total", LCM_METRIC_COUNTER,
                            "Atomic appends by result");
        lcm_metrics_declare(metrics, "lcm_store_append_seconds", LCM_METRIC_HISTOGRAM,
                            "Latency of lcm_append calls");
        lcm_metrics_declare(metrics, "lcm_store_feed_events_total", LCM_METRIC_COUNTER,
                            "lcm:feed entries folded into the read models");
        lcm_metrics_declare(metrics, "lcm_store_malformed_entries_total", LCM_METRIC_COUNTER,
                            "Stream entries skipped because they could not be decoded");
    }
    /* Runs at once when already connected, and after every reconnect (a failover to a
     * replica that lacks the library, a FUNCTION FLUSH by an operator). */
    lcm_redis_on_connect(r, load_function, s);
    return s;
}

void lcm_store_free(struct lcm_store *s)
{
    if (!s)
        return;
    s->closing = 1;
    fail_queue(s);
    lcm_store_follow_stop(s);
    lcm_store_rebuild_abort(s);
    lcm_store_maps_free(s);
    free(s->subs);
    free(s->follow_url);
    free(s);
}

/* ---- append: encoding and group commit ---------------------------------------------- */

/* Each lcm_store_append is encoded at once into an op that owns copies of its strings (the
 * caller's are borrowed for the call only). Ops are sent as groups of one FCALL lcm_append:
 * an append made while fewer than BATCH_MAX_INFLIGHT calls are in flight (and none queued)
 * goes out at once, alone; the others queue and leave together as soon as a call returns,
 * so under load one FCALL carries many appends (group commit) and the per-call cost in
 * Redis (dispatch, function entry, AOF wrapping) is paid once for all of them. Each group
 * stays atomic on its own: it is validated and written or refused independently, in order. */
#define BATCH_MAX_GROUPS 128    /* appends per FCALL: bounds the time Redis spends in one */
#define BATCH_MAX_ARGV 16384    /* keys + arguments per FCALL */
#define BATCH_MAX_INFLIGHT 2    /* FCALLs in flight before appends wait for one to return */

struct commit_item {
    const struct lcm_kind *kind;
    char *id;
    uint64_t expected;
    void *state;     /* the new state, installed on success */
    struct lcm_store_fset *fields;   /* its hash fields, cached with it on success */
};

/* One encoded string: offset and length in op->buf; a key or an argument of the FCALL. */
struct enc_str {
    uint32_t off;
    unsigned len : 31;
    unsigned key : 1;
};

struct append_op {
    struct append_op *next;      /* queue / batch link */
    struct lcm_store *s;
    lcm_store_done_fn done;
    void *ud;
    struct timespec t0;
    struct commit_item *items;   /* commits only */
    size_t n_items;
    char *buf;                   /* the strings, NUL-terminated */
    size_t len, cap;
    struct enc_str *v;
    size_t n, capv, nkeys;
    int oom;
};

/* The appends of one FCALL, in group order. */
struct batch {
    struct lcm_store *s;
    struct append_op *head;
    size_t n;
};

static void commit_items_free(struct commit_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (items[i].state)
            items[i].kind->destroy(items[i].state);
        lcm_store_fset_free(items[i].fields);
        free(items[i].fields);
        free(items[i].id);
    }
    free(items);
}

static void op_free(struct append_op *op)
{
    if (!op)
        return;
    commit_items_free(op->items, op->n_items);
    free(op->buf);
    free(op->v);
    free(op);
}

/* Appends one string (n bytes + NUL). */
static void op_put(struct append_op *op, int key, const char *str, size_t n)
{
    if (op->oom)
        return;
    if (op->n == op->capv) {
        size_t cap = op->capv ? op->capv * 2 : 32;
        struct enc_str *nv = realloc(op->v, cap * sizeof(*nv));
        if (!nv) {
            op->oom = 1;
            return;
        }
        op->v = nv;
        op->capv = cap;
    }
    if (op->cap - op->len < n + 1) {
        size_t cap = op->cap ? op->cap : 512;
        while (cap - op->len < n + 1)
            cap *= 2;
        char *nb = cap > UINT32_MAX ? NULL : realloc(op->buf, cap);
        if (!nb) {
            op->oom = 1;
            return;
        }
        op->buf = nb;
        op->cap = cap;
    }
    memcpy(op->buf + op->len, str, n);
    op->buf[op->len + n] = '\0';
    op->v[op->n++] = (struct enc_str){ (uint32_t)op->len, (unsigned)n, (unsigned)(key != 0) };
    op->len += n + 1;
    op->nkeys += key != 0;
}

static void op_puts(struct append_op *op, int key, const char *str)
{
    op_put(op, key, str, strlen(str));
}

static void op_putf(struct append_op *op, int key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void op_putf(struct append_op *op, int key, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        op->oom = 1;
    else
        op_put(op, key, tmp, (size_t)n);
}

/* Big-endian 16-bit count (the protocol's binary sizes; see lcm_store.lua). */
static void put_u16(char *p, size_t v)
{
    p[0] = (char)(unsigned char)(v >> 8);
    p[1] = (char)(unsigned char)(v & 0xff);
}

static const char *ix_member(const struct lcm_store_index_op *ix, const struct lcm_store_write *x)
{
    return ix->member ? ix->member : x->id;
}

/* A removal from one set that pairs with an addition of the same member to another set
 * (a status index moving): sent as one SMOVE. Returns the index of the addition or -1. */
static long smove_partner(const struct lcm_store_write *x, size_t j, const unsigned char *used)
{
    const struct lcm_store_index_op *rm = &x->indexes[j];
    if (rm->sorted || !rm->remove)
        return -1;
    for (size_t i = 0; i < x->n_indexes; i++) {
        const struct lcm_store_index_op *ad = &x->indexes[i];
        if (!used[i] && !ad->sorted && !ad->remove && !ad->unique && ad->key &&
            strcmp(ad->key, rm->key) != 0 && strcmp(ix_member(ad, x), ix_member(rm, x)) == 0)
            return (long)i;
    }
    return -1;
}

/* Encodes one group: its keys and arguments of the lcm_append protocol (lcm_store.lua).
 * Returns 0 or LCM_STORE_EINVALID / LCM_STORE_ENOMEM. */
static int encode_group(struct append_op *op, const struct lcm_store_write *w, size_t n,
                        const char *fence, const char *now)
{
    if (n > 0xffff)
        return LCM_STORE_EINVALID;
    op_puts(op, 0, fence ? fence : "");
    size_t hdr = op->n;
    op_put(op, 0, "", 0);     /* sizes, filled in below */
    for (size_t i = 0; i < n; i++) {
        const struct lcm_store_write *x = &w[i];
        size_t nset = 0, ndel = 0, nidx = 0;
        if (!lcm_store_valid_name(x->kind) || !lcm_store_valid_name(x->id) ||
            x->n_events == 0 || (x->n_fields && !x->fields) || (x->n_indexes && !x->indexes) ||
            (x->n_uniques && !x->uniques) || !x->events)
            return LCM_STORE_EINVALID;
        for (size_t f = 0; f < x->n_fields; f++) {
            if (!x->fields[f].name)
                return LCM_STORE_EINVALID;
            if (x->fields[f].value)
                nset++;
            else
                ndel++;
        }
        unsigned char used_s[32], *used = used_s;
        if (x->n_indexes > sizeof(used_s) && !(used = malloc(x->n_indexes)))
            return LCM_STORE_ENOMEM;
        memset(used, 0, x->n_indexes);
        for (size_t j = 0; j < x->n_indexes; j++)
            if (!x->indexes[j].key) {
                if (used != used_s)
                    free(used);
                return LCM_STORE_EINVALID;
            }
        for (size_t j = 0; j < x->n_indexes; j++) {
            if (used[j])
                continue;
            long pj = smove_partner(x, j, used);
            used[j] = 1;
            if (pj >= 0)
                used[pj] = 2;   /* sent with j */
            nidx++;
        }
        op_putf(op, 1, "lcm:{%s:%s}", x->kind, x->id);
        op_putf(op, 1, "lcm:{%s:%s}:events", x->kind, x->id);
        if (x->n_events > 0xffff || nset > 0xffff || ndel > 0xffff || nidx > 0xffff ||
            x->n_uniques > 0xffff) {
            if (used != used_s)
                free(used);
            return LCM_STORE_EINVALID;
        }
        char counts[40];
        put_u16(counts, x->n_events);
        put_u16(counts + 2, nset);
        put_u16(counts + 4, ndel);
        put_u16(counts + 6, nidx);
        put_u16(counts + 8, x->n_uniques);
        int cl = snprintf(counts + 10, sizeof(counts) - 10, "%" PRIu64, x->expected_version);
        op_put(op, 0, counts, 10 + (size_t)cl);
        for (size_t e = 0; e < x->n_events; e++) {
            const struct lcm_store_event *ev = &x->events[e];
            if (!ev->type || !ev->data) {
                if (used != used_s)
                    free(used);
                return LCM_STORE_EINVALID;
            }
            op_puts(op, 0, ev->type);
            op_putf(op, 0, "%" PRIu64, x->expected_version + e + 1);
            op_puts(op, 0, ev->at ? ev->at : now);
            op_puts(op, 0, ev->by ? ev->by : "");
            op_puts(op, 0, ev->data);
        }
        for (size_t f = 0; f < x->n_fields; f++)
            if (x->fields[f].value) {
                op_puts(op, 0, x->fields[f].name);
                op_puts(op, 0, x->fields[f].value);
            }
        for (size_t f = 0; f < x->n_fields; f++)
            if (!x->fields[f].value)
                op_puts(op, 0, x->fields[f].name);
        memset(used, 0, x->n_indexes);
        for (size_t j = 0; j < x->n_indexes; j++) {
            const struct lcm_store_index_op *ix = &x->indexes[j];
            if (used[j])
                continue;
            used[j] = 1;
            long pj = smove_partner(x, j, used);
            op_puts(op, 1, ix->key);
            if (pj >= 0) {
                used[pj] = 1;
                op_puts(op, 1, x->indexes[pj].key);
                op_put(op, 0, "smove", 5);
            } else {
                op_puts(op, 0, ix->sorted ? (ix->remove ? "zrem" : "zadd")
                                          : (ix->remove ? "srem" : ix->unique ? "uadd" : "sadd"));
            }
            op_puts(op, 0, ix_member(ix, x));
            if (pj < 0 && ix->sorted && !ix->remove)
                op_putf(op, 0, "%.17g", ix->score);
        }
        if (used != used_s)
            free(used);
        for (size_t j = 0; j < x->n_uniques; j++) {
            const struct lcm_store_unique *u = &x->uniques[j];
            if (!u->name || u->ttl_ms < 0)
                return LCM_STORE_EINVALID;
            op_putf(op, 1, "lcm:uniq:%s", u->name);
            op_puts(op, 0, u->value ? u->value : x->id);
            op_putf(op, 0, "%lld", u->ttl_ms);
            op_puts(op, 0, u->release ? "del" : "set");
        }
    }
    if (op->oom)
        return LCM_STORE_ENOMEM;
    /* The sizes count what follows them: the arguments after them, and every key. */
    size_t nargs = op->n - op->nkeys - 2, n0 = op->n;
    if (nargs > 0xffff || op->nkeys > 0xffff)
        return LCM_STORE_EINVALID;
    char sizes[6];
    put_u16(sizes, n);
    put_u16(sizes + 2, nargs);
    put_u16(sizes + 4, op->nkeys);
    op_put(op, 0, sizes, 6);
    if (op->oom)
        return LCM_STORE_ENOMEM;
    op->v[hdr] = op->v[n0];
    op->n--;
    return 0;
}

/* Parses "CONFLICT <kind:id> current=<n|unknown> expected=<n>" etc. into res. */
static void decode_error(const char *msg, size_t len, struct lcm_store_result *res)
{
    snprintf(res->message, sizeof(res->message), "%.*s", (int)len, msg);
    msg = res->message;
    res->current_version = -1;
    if (strncmp(msg, "CONFLICT ", 9) == 0) {
        res->status = LCM_STORE_ECONFLICT;
        const char *p = msg + 9, *sp = strchr(p, ' ');
        size_t n = sp ? (size_t)(sp - p) : strlen(p);
        if (n < sizeof(res->aggregate)) {
            memcpy(res->aggregate, p, n);
            res->aggregate[n] = '\0';
        }
        const char *c = strstr(msg, " current=");
        if (c && c[9] >= '0' && c[9] <= '9')
            res->current_version = strtoll(c + 9, NULL, 10);
    } else if (strncmp(msg, "FENCED", 6) == 0) {
        res->status = LCM_STORE_EFENCED;
    } else if (strncmp(msg, "DUPLICATE ", 10) == 0) {
        res->status = LCM_STORE_EDUPLICATE;
        snprintf(res->holder, sizeof(res->holder), "%s", msg + 10);
    } else if (strncmp(msg, "INVALID", 7) == 0) {
        res->status = LCM_STORE_EINVALID;
    } else {
        res->status = LCM_STORE_EREDIS;
    }
}

static void fcache_set(struct lcm_store *s, struct lcm_store_agg *a, struct lcm_store_fset *f);

static void install_commit(struct lcm_store *s, struct append_op *op, const uint64_t *versions)
{
    for (size_t i = 0; i < op->n_items; i++) {
        struct commit_item *it = &op->items[i];
        struct lcm_store_kmap *m = lcm_store_kmap_find(s, it->kind->name);
        if (!m)
            continue;
        struct lcm_store_agg *a = lcm_store_agg_find(m, it->id);
        uint64_t have = a ? a->version : 0;
        /* The feed may have delivered these events (and more) already: keep the newer. When
         * it folded exactly this commit's events (the same events on the same state, so the
         * same state: fold determinism), their fields are still the state's. */
        if (a && have == versions[i] && have != it->expected && it->fields &&
            it->fields->version == have && !a->fields) {
            fcache_set(s, a, it->fields);
            it->fields = NULL;
        }
        if (have != it->expected || it->kind->version(it->state) != versions[i])
            continue;
        uint64_t notified = a ? a->notified : 0;
        a = lcm_store_agg_put(m, it->id, it->state);
        if (a) {
            a->notified = notified;
            it->state = NULL;
            if (it->fields) {
                fcache_set(s, a, it->fields);
                it->fields = NULL;
            }
        }
    }
}

/* Reports one append's outcome (reply: its element of the FCALL reply, an error reply for
 * the whole call, or NULL) and frees the op. */
static void op_complete(struct append_op *op, const redisReply *reply, int status,
                        const char *why)
{
    struct lcm_store *s = op->s;
    struct lcm_store_result res;
    memset(&res, 0, sizeof(res));
    res.current_version = -1;
    uint64_t vbuf[16], *versions = vbuf;
    if (status) {
        res.status = status;
        snprintf(res.message, sizeof(res.message), "%s", why);
    } else if (reply->type == REDIS_REPLY_ERROR) {
        decode_error(reply->str ? reply->str : "", reply->str ? reply->len : 0, &res);
        /* Redis disagrees with our read model about this aggregate's version: after a
         * failover that lost writes, Redis is the truth. Re-read it so that the caller's
         * retry (and every later write) works against what Redis really holds. */
        if (res.status == LCM_STORE_ECONFLICT && !s->closing) {
            char kind[32];
            const char *colon = strchr(res.aggregate, ':');
            if (colon && (size_t)(colon - res.aggregate) < sizeof(kind)) {
                memcpy(kind, res.aggregate, (size_t)(colon - res.aggregate));
                kind[colon - res.aggregate] = 0;
                struct lcm_store_kmap *m = lcm_store_kmap_find(s, kind);
                struct lcm_store_agg *a = m ? lcm_store_agg_find(m, colon + 1) : NULL;
                if (a && res.current_version >= 0 && (uint64_t)res.current_version != a->version)
                    lcm_store_resync(s, kind, colon + 1);
            }
        }
    } else if (reply->type == REDIS_REPLY_ARRAY) {
        if (reply->elements > 16)
            versions = calloc(reply->elements, sizeof(*versions));
        if (!versions) {
            res.status = LCM_STORE_ENOMEM;
        } else {
            for (size_t i = 0; i < reply->elements; i++) {
                const redisReply *e = reply->element[i];
                versions[i] = !e ? 0
                              : e->type == REDIS_REPLY_INTEGER ? (uint64_t)e->integer
                              : e->type == REDIS_REPLY_STRING ? strtoull(e->str, NULL, 10) : 0;
            }
            res.versions = versions;
            res.n_versions = reply->elements;
            if (op->items && res.n_versions == op->n_items && !s->closing)
                install_commit(s, op, versions);
        }
    } else {
        res.status = LCM_STORE_EREDIS;
        snprintf(res.message, sizeof(res.message), "unexpected reply type %d", reply->type);
    }
    if (s->metrics && !s->closing) {
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        char labels[64];
        snprintf(labels, sizeof(labels), "result=\"%s\"", lcm_store_strerror(res.status));
        lcm_metrics_inc(s->metrics, "lcm_store_appends_total", labels, 1);
        lcm_metrics_observe(s->metrics, "lcm_store_append_seconds", NULL,
                            (double)(t1.tv_sec - op->t0.tv_sec) +
                                (double)(t1.tv_nsec - op->t0.tv_nsec) / 1e9);
    }
    op->done(&res, op->ud);
    if (versions != vbuf)
        free(versions);
    op_free(op);
}

static void flush_queue(struct lcm_store *s);

static void batch_reply(struct lcm_redis *r, redisReply *reply, void *ud)
{
    (void)r;
    struct batch *b = ud;
    struct lcm_store *s = b->s;
    int whole = !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != b->n;
    /* Appends made by the callbacks below queue up and leave together afterwards. */
    s->in_reply++;
    size_t i = 0;
    for (struct append_op *op = b->head, *next; op; op = next, i++) {
        next = op->next;
        if (!reply)
            op_complete(op, NULL, LCM_STORE_EUNAVAILABLE, "connection lost before the reply");
        else if (whole && reply->type == REDIS_REPLY_ERROR)
            op_complete(op, reply, 0, NULL);
        else if (whole)
            op_complete(op, NULL, LCM_STORE_EREDIS, "unexpected reply to lcm_append");
        else
            op_complete(op, reply->element[i], 0, NULL);
    }
    free(b);
    s->in_reply--;
    s->inflight--;
    flush_queue(s);
}

/* Sends ops (linked, n of them) as one FCALL. Returns 0, or -1 (ops untouched). */
static int send_batch(struct lcm_store *s, struct append_op *head, size_t n)
{
    size_t nkeys = 2, nargs = 3;
    for (struct append_op *op = head; op; op = op->next) {
        nkeys += op->nkeys;
        nargs += op->n - op->nkeys;
    }
    size_t argc = 3 + nkeys + nargs;
    const char **argv = malloc(argc * sizeof(*argv));
    size_t *lens = malloc(argc * sizeof(*lens));
    struct batch *b = calloc(1, sizeof(*b));
    char nk[24], ng[24];
    int rc = -1;
    if (!argv || !lens || !b)
        goto out;
    snprintf(nk, sizeof(nk), "%zu", nkeys);
    snprintf(ng, sizeof(ng), "%zu", n);
    size_t k = 3, a = 3 + nkeys;
    argv[0] = "FCALL";
    argv[1] = "lcm_append";
    argv[2] = nk;
    argv[k++] = LCM_STORE_LEADER;
    argv[k++] = LCM_STORE_FEED;
    argv[a++] = "2";
    argv[a++] = s->feed_maxlen_s;
    argv[a++] = ng;
    for (struct append_op *op = head; op; op = op->next)
        for (size_t i = 0; i < op->n; i++) {
            size_t j = op->v[i].key ? k++ : a++;
            argv[j] = op->buf + op->v[i].off;
            lens[j] = op->v[i].len;
        }
    for (size_t i = 0; i < 3; i++)
        lens[i] = strlen(argv[i]);
    for (size_t i = 3; i < 5; i++)
        lens[i] = strlen(argv[i]);
    for (size_t i = 3 + nkeys; i < 6 + nkeys; i++)
        lens[i] = strlen(argv[i]);
    b->s = s;
    b->head = head;
    b->n = n;
    if (lcm_redis_commandv(s->r, batch_reply, b, (int)argc, argv, lens) < 0)
        goto out;
    b = NULL;
    s->inflight++;
    rc = 0;
out:
    free(b);
    free(argv);
    free(lens);
    return rc;
}

/* Sends queued ops, up to BATCH_MAX_GROUPS per FCALL, while fewer than BATCH_MAX_INFLIGHT
 * calls are in flight. Runs from reply callbacks only, so failures are reported through
 * done (never from inside lcm_store_append). */
static void flush_queue(struct lcm_store *s)
{
    while (s->q_head && s->inflight < BATCH_MAX_INFLIGHT && !s->in_reply) {
        struct append_op *head = s->q_head, *last = head;
        size_t n = 1, argc = 5 + 3 + head->n;
        while (last->next && n < BATCH_MAX_GROUPS && argc + last->next->n <= BATCH_MAX_ARGV) {
            last = last->next;
            argc += last->n;
            n++;
        }
        s->q_head = last->next;
        if (!s->q_head)
            s->q_tail = NULL;
        s->q_len -= n;
        last->next = NULL;
        if (send_batch(s, head, n) < 0) {
            s->in_reply++;
            for (struct append_op *op = head, *next; op; op = next) {
                next = op->next;
                op_complete(op, NULL, LCM_STORE_EUNAVAILABLE, "not connected");
            }
            s->in_reply--;
        }
    }
}

/* Fails every queued op (store freed with appends still waiting). */
static void fail_queue(struct lcm_store *s)
{
    while (s->q_head) {
        struct append_op *op = s->q_head;
        s->q_head = op->next;
        s->q_len--;
        op_complete(op, NULL, LCM_STORE_EUNAVAILABLE, "store closed");
    }
    s->q_tail = NULL;
}

/* Encodes and sends or queues; on success takes ownership of items (freed after done). */
static int submit_append(struct lcm_store *s, const struct lcm_store_write *w, size_t n,
                         const char *fence, lcm_store_done_fn done, void *ud,
                         struct commit_item *items, size_t n_items)
{
    if (!s || !w || n == 0 || !done)
        return LCM_STORE_EINVALID;
    if (s->closing || !lcm_redis_connected(s->r))
        return LCM_STORE_EUNAVAILABLE;
    struct append_op *op = calloc(1, sizeof(*op));
    if (!op)
        return LCM_STORE_ENOMEM;
    char now[40];
    lcm_store_now(now, sizeof(now));
    int rc = encode_group(op, w, n, fence, now);
    if (rc < 0 || op->n > BATCH_MAX_ARGV) {
        op_free(op);
        return rc < 0 ? rc : LCM_STORE_EINVALID;
    }
    op->s = s;
    op->done = done;
    op->ud = ud;
    op->items = items;
    op->n_items = n_items;
    clock_gettime(CLOCK_MONOTONIC, &op->t0);
    if (!s->q_head && !s->in_reply && s->inflight < BATCH_MAX_INFLIGHT) {
        if (send_batch(s, op, 1) < 0) {
            op->items = NULL;   /* still the caller's */
            op_free(op);
            return LCM_STORE_EUNAVAILABLE;
        }
    } else {
        if (s->q_tail)
            s->q_tail->next = op;
        else
            s->q_head = op;
        s->q_tail = op;
        s->q_len++;
    }
    return 0;
}

int lcm_store_append(struct lcm_store *s, const struct lcm_store_write *writes, size_t n,
                     const char *fence, lcm_store_done_fn done, void *ud)
{
    return submit_append(s, writes, n, fence, done, ud, NULL, 0);
}

/* ---- commit: fold, diff, append ------------------------------------------------------ */

static void fieldv_emit(const char *field, const char *value, void *ud)
{
    struct lcm_store_fieldv *v = ud;
    if (v->oom || !field || !value)
        return;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        char **nn = realloc(v->names, cap * sizeof(*nn));
        if (nn)
            v->names = nn;
        char **nv = realloc(v->values, cap * sizeof(*nv));
        if (nv)
            v->values = nv;
        if (!nn || !nv) {
            v->oom = 1;
            return;
        }
        v->cap = cap;
    }
    v->names[v->n] = strdup(field);
    v->values[v->n] = strdup(value);
    if (!v->names[v->n] || !v->values[v->n]) {
        free(v->names[v->n]);
        free(v->values[v->n]);
        v->oom = 1;
        return;
    }
    v->n++;
}

void lcm_store_fieldv_collect(const struct lcm_kind *k, const void *state,
                              struct lcm_store_fieldv *out)
{
    memset(out, 0, sizeof(*out));
    k->fields(state, fieldv_emit, out);
}

void lcm_store_fieldv_free(struct lcm_store_fieldv *v)
{
    for (size_t i = 0; i < v->n; i++) {
        free(v->names[i]);
        free(v->values[i]);
    }
    free(v->names);
    free(v->values);
    memset(v, 0, sizeof(*v));
}

void *lcm_store_clone_state(const struct lcm_kind *k, const char *id, const void *state,
                            char *err, size_t errlen)
{
    void *c = k->create(id);
    if (!c || !state) {
        if (!c)
            snprintf(err, errlen, "out of memory");
        return c;
    }
    struct lcm_store_fieldv fv;
    lcm_store_fieldv_collect(k, state, &fv);
    char vbuf[24];
    snprintf(vbuf, sizeof(vbuf), "%" PRIu64, k->version(state));
    /* from_fields takes the hash as read back, "version" included. */
    if (!fv.oom)
        fieldv_emit("version", vbuf, &fv);
    if (fv.oom || k->from_fields(c, (const char *const *)fv.names,
                                 (const char *const *)fv.values, fv.n, err, errlen) < 0) {
        if (fv.oom)
            snprintf(err, errlen, "out of memory");
        k->destroy(c);
        c = NULL;
    }
    lcm_store_fieldv_free(&fv);
    return c;
}

struct idxv {
    struct lcm_index_entry *v;
    char **keys;
    size_t n, cap;
    int oom;
};

static void idx_emit(const struct lcm_index_entry *e, void *ud)
{
    struct idxv *x = ud;
    if (x->oom || !e || !e->key)
        return;
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 8;
        struct lcm_index_entry *nv = realloc(x->v, cap * sizeof(*nv));
        if (nv)
            x->v = nv;
        char **nk = realloc(x->keys, cap * sizeof(*nk));
        if (nk)
            x->keys = nk;
        if (!nv || !nk) {
            x->oom = 1;
            return;
        }
        x->cap = cap;
    }
    x->keys[x->n] = strdup(e->key);
    if (!x->keys[x->n]) {
        x->oom = 1;
        return;
    }
    x->v[x->n] = *e;
    x->v[x->n].key = x->keys[x->n];
    x->n++;
}

static void idxv_free(struct idxv *x)
{
    for (size_t i = 0; i < x->n; i++)
        free(x->keys[i]);
    free(x->keys);
    free(x->v);
}

static const struct lcm_index_entry *idx_find(const struct idxv *x, const char *key)
{
    for (size_t i = 0; i < x->n; i++)
        if (strcmp(x->v[i].key, key) == 0)
            return &x->v[i];
    return NULL;
}

/* ---- field sets and the read model's field cache ------------------------------------ */

static size_t fset_bytes(const struct lcm_store_fset *f)
{
    return sizeof(*f) + f->cap + f->capn * sizeof(*f->off);
}

static void fset_emit(const char *field, const char *value, void *ud)
{
    struct lcm_store_fset *f = ud;
    if (f->oom || !field || !value)
        return;
    size_t fl = strlen(field) + 1, vl = strlen(value) + 1;
    if (f->n * 2 + 2 > f->capn) {
        size_t capn = f->capn ? f->capn * 2 : 64;
        uint32_t *no = realloc(f->off, capn * sizeof(*no));
        if (!no) {
            f->oom = 1;
            return;
        }
        f->off = no;
        f->capn = capn;
    }
    if (f->cap - f->len < fl + vl) {
        size_t cap = f->cap ? f->cap : 2048;
        while (cap - f->len < fl + vl)
            cap *= 2;
        char *nb = cap > UINT32_MAX ? NULL : realloc(f->buf, cap);
        if (!nb) {
            f->oom = 1;
            return;
        }
        f->buf = nb;
        f->cap = cap;
    }
    f->off[2 * f->n] = (uint32_t)f->len;
    memcpy(f->buf + f->len, field, fl);
    f->len += fl;
    f->off[2 * f->n + 1] = (uint32_t)f->len;
    memcpy(f->buf + f->len, value, vl);
    f->len += vl;
    f->n++;
}

void lcm_store_fset_collect(const struct lcm_kind *k, const void *state,
                            struct lcm_store_fset *f)
{
    memset(f, 0, sizeof(*f));
    f->version = k->version(state);
    k->fields(state, fset_emit, f);
}

void lcm_store_fset_free(struct lcm_store_fset *f)
{
    if (!f)
        return;
    free(f->buf);
    free(f->off);
    memset(f, 0, sizeof(*f));
}

static const char *fs_name(const struct lcm_store_fset *f, size_t i)
{
    return f->buf + f->off[2 * i];
}

static const char *fs_value(const struct lcm_store_fset *f, size_t i, size_t *len)
{
    size_t end = i + 1 < f->n ? f->off[2 * i + 2] : f->len;
    *len = end - f->off[2 * i + 1] - 1;
    return f->buf + f->off[2 * i + 1];
}

/* Index of field name in f, trying position hint first (a kind emits its fields in a fixed
 * order, so old and new mostly line up). -1 when absent. */
static long fs_find(const struct lcm_store_fset *f, const char *name, size_t hint)
{
    if (hint < f->n && strcmp(fs_name(f, hint), name) == 0)
        return (long)hint;
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(fs_name(f, i), name) == 0)
            return (long)i;
    return -1;
}

static void lru_unlink(struct lcm_store *s, struct lcm_store_agg *a)
{
    if (a->lru_prev)
        a->lru_prev->lru_next = a->lru_next;
    else
        s->lru_head = a->lru_next;
    if (a->lru_next)
        a->lru_next->lru_prev = a->lru_prev;
    else
        s->lru_tail = a->lru_prev;
    a->lru_prev = a->lru_next = NULL;
}

void lcm_store_fcache_drop(struct lcm_store *s, struct lcm_store_agg *a)
{
    if (!a->fields)
        return;
    lru_unlink(s, a);
    s->fcache_bytes -= fset_bytes(a->fields);
    lcm_store_fset_free(a->fields);
    free(a->fields);
    a->fields = NULL;
}

/* Caches f (taken over) as a's fields, most recent first, within the byte budget. */
static void fcache_set(struct lcm_store *s, struct lcm_store_agg *a, struct lcm_store_fset *f)
{
    lcm_store_fcache_drop(s, a);
    if (f->oom || f->version != a->version || fset_bytes(f) > s->fcache_max) {
        lcm_store_fset_free(f);
        free(f);
    } else {
        /* trimmed to size: it may stay cached for long */
        char *nb = f->len && f->cap > f->len + 64 ? realloc(f->buf, f->len) : NULL;
        if (nb) {
            f->buf = nb;
            f->cap = f->len;
        }
        uint32_t *no = f->n && f->capn > 2 * f->n + 8
                           ? realloc(f->off, 2 * f->n * sizeof(*no)) : NULL;
        if (no) {
            f->off = no;
            f->capn = 2 * f->n;
        }
        a->fields = f;
        s->fcache_bytes += fset_bytes(f);
        a->lru_next = s->lru_head;
        if (s->lru_head)
            s->lru_head->lru_prev = a;
        s->lru_head = a;
        if (!s->lru_tail)
            s->lru_tail = a;
    }
    while (s->fcache_bytes > s->fcache_max && s->lru_tail)
        lcm_store_fcache_drop(s, s->lru_tail);
}

/* Per change: everything the write borrows, freed after submit_append encoded it. */
struct change_tmp {
    struct lcm_store_fset oldf;      /* when the cache had none */
    struct idxv oldi, newi;
    struct lcm_store_field *fields;
    struct lcm_store_index_op *ops;
};

/* Derives the write's hash field and index changes from old (NULL: a new aggregate; its
 * cached fields when the cache has them) to nw, whose fields are collected into *newf. */
static int diff_change(struct lcm_store *s, const struct lcm_kind *k, struct lcm_store_agg *a,
                       const void *nw, struct lcm_store_fset *newf, struct change_tmp *t,
                       struct lcm_store_write *w)
{
    const void *old = a ? a->state : NULL;
    const struct lcm_store_fset *of = &t->oldf;
    if (a && a->fields && a->fields->version == a->version) {
        of = a->fields;
        /* used again: most recent first */
        lru_unlink(s, a);
        a->lru_next = s->lru_head;
        if (s->lru_head)
            s->lru_head->lru_prev = a;
        s->lru_head = a;
        if (!s->lru_tail)
            s->lru_tail = a;
    } else if (old) {
        lcm_store_fset_collect(k, old, &t->oldf);
    }
    lcm_store_fset_collect(k, nw, newf);
    if (old)
        k->indexes(old, idx_emit, &t->oldi);
    k->indexes(nw, idx_emit, &t->newi);
    if (of->oom || newf->oom || t->oldi.oom || t->newi.oom)
        return LCM_STORE_ENOMEM;
    t->fields = calloc(of->n + newf->n + 1, sizeof(*t->fields));
    t->ops = calloc(t->oldi.n + t->newi.n + 1, sizeof(*t->ops));
    if (!t->fields || !t->ops)
        return LCM_STORE_ENOMEM;
    size_t nf = 0, no = 0;
    for (size_t i = 0; i < newf->n; i++) {
        const char *name = fs_name(newf, i);
        size_t nl, ol;
        const char *nv = fs_value(newf, i, &nl);
        long j = fs_find(of, name, i);
        if (j < 0 || (fs_value(of, (size_t)j, &ol), ol != nl) ||
            memcmp(fs_value(of, (size_t)j, &ol), nv, nl) != 0)
            t->fields[nf++] = (struct lcm_store_field){ name, nv };
    }
    for (size_t j = 0; j < of->n; j++)
        if (fs_find(newf, fs_name(of, j), j) < 0)
            t->fields[nf++] = (struct lcm_store_field){ fs_name(of, j), NULL };
    for (size_t j = 0; j < t->oldi.n; j++) {
        const struct lcm_index_entry *o = &t->oldi.v[j], *n = idx_find(&t->newi, o->key);
        if (!n || n->sorted != o->sorted)
            t->ops[no++] = (struct lcm_store_index_op){ o->key, o->sorted, 1, 0, NULL, 0 };
    }
    for (size_t i = 0; i < t->newi.n; i++) {
        const struct lcm_index_entry *n = &t->newi.v[i], *o = idx_find(&t->oldi, n->key);
        if (!o || o->sorted != n->sorted || (n->sorted && o->score != n->score))
            t->ops[no++] = (struct lcm_store_index_op){ n->key, n->sorted, 0, n->score, NULL,
                                                        n->unique && !n->sorted };
    }
    w->fields = t->fields;
    w->n_fields = nf;
    w->indexes = t->ops;
    w->n_indexes = no;
    return 0;
}

static void change_tmp_free(struct change_tmp *t)
{
    lcm_store_fset_free(&t->oldf);
    idxv_free(&t->oldi);
    idxv_free(&t->newi);
    free(t->fields);
    free(t->ops);
}

int lcm_store_commit(struct lcm_store *s, const struct lcm_store_change *changes, size_t n,
                     const char *fence, lcm_store_done_fn done, void *ud,
                     char *err, size_t errlen)
{
    if (!s || !changes || n == 0 || !done) {
        snprintf(err, errlen, "bad arguments");
        return LCM_STORE_EINVALID;
    }
    struct commit_item *items = calloc(n, sizeof(*items));
    struct change_tmp *tmp = calloc(n, sizeof(*tmp));
    struct lcm_store_write *w = calloc(n, sizeof(*w));
    int rc = LCM_STORE_ENOMEM;
    if (!items || !tmp || !w) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    char now[40];
    lcm_store_now(now, sizeof(now));
    for (size_t i = 0; i < n; i++) {
        const struct lcm_store_change *c = &changes[i];
        struct lcm_store_kmap *m = c->kind ? lcm_store_kmap_find(s, c->kind->name) : NULL;
        if (!m || !lcm_store_valid_name(c->id) || c->n_events == 0) {
            snprintf(err, errlen, "change %zu: unknown kind, bad id or no events", i);
            rc = LCM_STORE_EINVALID;
            goto out;
        }
        struct lcm_store_agg *a = lcm_store_agg_find(m, c->id);
        uint64_t have = a ? a->version : 0;
        if (have != c->expected_version) {
            snprintf(err, errlen, "%s:%s current=%" PRIu64 " expected=%" PRIu64,
                     c->kind->name, c->id, have, c->expected_version);
            rc = LCM_STORE_ECONFLICT;
            goto out;
        }
        items[i].kind = c->kind;
        items[i].expected = c->expected_version;
        items[i].id = strdup(c->id);
        /* A deep copy by the kind when it has one; the fields round trip otherwise. */
        if (a && c->kind->clone) {
            items[i].state = c->kind->clone(a->state);
            if (!items[i].state)
                snprintf(err, errlen, "out of memory");
        } else {
            items[i].state = lcm_store_clone_state(c->kind, c->id, a ? a->state : NULL, err,
                                                   errlen);
        }
        if (!items[i].id || !items[i].state) {
            rc = items[i].id && !(a && c->kind->clone) ? LCM_STORE_EINVALID : LCM_STORE_ENOMEM;
            goto out;
        }
        for (size_t e = 0; e < c->n_events; e++) {
            const struct lcm_store_event *se = &c->events[e];
            cJSON *data = se->data ? cJSON_Parse(se->data) : NULL;
            struct lcm_event ev = { se->type, c->expected_version + e + 1, se->at ? se->at : now,
                                    se->by ? se->by : "", data };
            char why[200] = "";
            int ok = se->type && cJSON_IsObject(data) &&
                     c->kind->apply(items[i].state, &ev, why, sizeof(why)) == 0;
            cJSON_Delete(data);
            if (!ok) {
                snprintf(err, errlen, "%s:%s event %zu (%s) does not apply: %s", c->kind->name,
                         c->id, e, se->type ? se->type : "?", why[0] ? why : "bad data");
                rc = LCM_STORE_EINVALID;
                goto out;
            }
        }
        w[i].kind = c->kind->name;
        w[i].id = c->id;
        w[i].expected_version = c->expected_version;
        w[i].events = c->events;
        w[i].n_events = c->n_events;
        w[i].uniques = c->uniques;
        w[i].n_uniques = c->n_uniques;
        items[i].fields = calloc(1, sizeof(*items[i].fields));
        rc = items[i].fields ? diff_change(s, c->kind, a, items[i].state, items[i].fields,
                                           &tmp[i], &w[i])
                             : LCM_STORE_ENOMEM;
        if (rc < 0) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
    }
    /* Events without `at` get the same timestamp here and in Redis. */
    struct lcm_store_event **evcopy = calloc(n, sizeof(*evcopy));
    if (!evcopy) {
        snprintf(err, errlen, "out of memory");
        rc = LCM_STORE_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        evcopy[i] = malloc(changes[i].n_events * sizeof(**evcopy));
        if (!evcopy[i]) {
            rc = LCM_STORE_ENOMEM;
            break;
        }
        for (size_t e = 0; e < changes[i].n_events; e++) {
            evcopy[i][e] = changes[i].events[e];
            if (!evcopy[i][e].at)
                evcopy[i][e].at = now;
        }
        w[i].events = evcopy[i];
    }
    if (rc >= 0) {
        rc = submit_append(s, w, n, fence, done, ud, items, n);
        if (rc == 0)
            items = NULL;
        else
            snprintf(err, errlen, "%s", lcm_store_strerror(rc));
    }
    for (size_t i = 0; i < n; i++)
        free(evcopy[i]);
    free(evcopy);
out:
    if (tmp)
        for (size_t i = 0; i < n; i++)
            change_tmp_free(&tmp[i]);
    free(tmp);
    free(w);
    if (items)
        commit_items_free(items, n);
    return rc;
}
