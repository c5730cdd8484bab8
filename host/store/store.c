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
    for (size_t i = 0; i < s->n_maps; i++) {
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
    lcm_store_follow_stop(s);
    lcm_store_rebuild_abort(s);
    lcm_store_maps_free(s);
    free(s->subs);
    free(s->follow_url);
    free(s);
}

/* ---- append -------------------------------------------------------------------------- */

/* Strings built for one FCALL; chunks never move so pointers into them stay valid. */
struct arena {
    struct chunk { struct chunk *next; size_t used, cap; char buf[]; } *head;
    int oom;
};

static char *arena_alloc(struct arena *a, size_t n)
{
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > 8192 ? n : 8192;
        struct chunk *c = malloc(sizeof(*c) + cap);
        if (!c) {
            a->oom = 1;
            return NULL;
        }
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    char *p = a->head->buf + a->head->used;
    a->head->used += n;
    return p;
}

static const char *arena_printf(struct arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static const char *arena_printf(struct arena *a, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        a->oom = 1;
        return NULL;
    }
    char *p = arena_alloc(a, (size_t)n + 1);
    if (p)
        memcpy(p, tmp, (size_t)n + 1);
    return p;
}

static void arena_free(struct arena *a)
{
    while (a->head) {
        struct chunk *n = a->head->next;
        free(a->head);
        a->head = n;
    }
}

struct commit_item {
    const struct lcm_kind *kind;
    char *id;
    uint64_t expected;
    void *state;     /* the new state, installed on success */
};

struct append_op {
    struct lcm_store *s;
    lcm_store_done_fn done;
    void *ud;
    struct timespec t0;
    struct commit_item *items;   /* commits only */
    size_t n_items;
};

static void commit_items_free(struct commit_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (items[i].state)
            items[i].kind->destroy(items[i].state);
        free(items[i].id);
    }
    free(items);
}

/* Parses "CONFLICT <kind:id> current=<n|unknown> expected=<n>" etc. into res. */
static void decode_error(const char *msg, struct lcm_store_result *res)
{
    snprintf(res->message, sizeof(res->message), "%s", msg);
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

static void install_commit(struct lcm_store *s, struct append_op *op, const uint64_t *versions)
{
    for (size_t i = 0; i < op->n_items; i++) {
        struct commit_item *it = &op->items[i];
        struct lcm_store_kmap *m = lcm_store_kmap_find(s, it->kind->name);
        if (!m)
            continue;
        struct lcm_store_agg *a = lcm_store_agg_find(m, it->id);
        uint64_t have = a ? a->version : 0;
        /* The feed may have delivered these events (and more) already: keep the newer. */
        if (have != it->expected || it->kind->version(it->state) != versions[i])
            continue;
        uint64_t notified = a ? a->notified : 0;
        a = lcm_store_agg_put(m, it->id, it->state);
        if (a) {
            a->notified = notified;
            it->state = NULL;
        }
    }
}

static void append_reply(struct lcm_redis *r, redisReply *reply, void *ud)
{
    (void)r;
    struct append_op *op = ud;
    struct lcm_store *s = op->s;
    struct lcm_store_result res;
    memset(&res, 0, sizeof(res));
    res.current_version = -1;
    uint64_t vbuf[16], *versions = vbuf;
    if (!reply) {
        res.status = LCM_STORE_EUNAVAILABLE;
        snprintf(res.message, sizeof(res.message), "connection lost before the reply");
    } else if (reply->type == REDIS_REPLY_ERROR) {
        decode_error(reply->str ? reply->str : "", &res);
    } else if (reply->type == REDIS_REPLY_ARRAY) {
        if (reply->elements > 16)
            versions = calloc(reply->elements, sizeof(*versions));
        if (!versions) {
            res.status = LCM_STORE_ENOMEM;
        } else {
            for (size_t i = 0; i < reply->elements; i++) {
                const redisReply *e = reply->element[i];
                versions[i] = e && e->type == REDIS_REPLY_INTEGER ? (uint64_t)e->integer : 0;
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
        char labels[64];
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        snprintf(labels, sizeof(labels), "result=\"%s\"", lcm_store_strerror(res.status));
        lcm_metrics_inc(s->metrics, "lcm_store_appends_total", labels, 1);
        lcm_metrics_observe(s->metrics, "lcm_store_append_seconds", NULL,
                            (double)(t1.tv_sec - op->t0.tv_sec) +
                                (double)(t1.tv_nsec - op->t0.tv_nsec) / 1e9);
    }
    op->done(&res, op->ud);
    if (versions != vbuf)
        free(versions);
    commit_items_free(op->items, op->n_items);
    free(op);
}

/* Encodes and sends; on success takes ownership of items (freed after the reply). */
static int send_append(struct lcm_store *s, const struct lcm_store_write *w, size_t n,
                       const char *fence, lcm_store_done_fn done, void *ud,
                       struct commit_item *items, size_t n_items)
{
    if (!s || !w || n == 0 || !done)
        return LCM_STORE_EINVALID;
    size_t nkeys = 2, nargs = 4;
    for (size_t i = 0; i < n; i++) {
        if (!lcm_store_valid_name(w[i].kind) || !lcm_store_valid_name(w[i].id) ||
            w[i].n_events == 0)
            return LCM_STORE_EINVALID;
        nkeys += 2 + w[i].n_indexes + w[i].n_uniques;
        nargs += 8 + 4 * w[i].n_events + 3 * w[i].n_indexes + 3 * w[i].n_uniques;
        for (size_t f = 0; f < w[i].n_fields; f++)
            nargs += w[i].fields[f].value ? 2 : 1;   /* HSET pair, or HDEL name */
    }
    size_t argc = 3 + nkeys + nargs;
    const char **argv = malloc(argc * sizeof(*argv));
    size_t *lens = malloc(argc * sizeof(*lens));
    struct append_op *op = calloc(1, sizeof(*op));
    struct arena a = { 0 };
    int rc = LCM_STORE_ENOMEM;
    if (!argv || !lens || !op)
        goto out;
    char now[40];
    lcm_store_now(now, sizeof(now));

    /* Keys and args are laid out in two regions filled in one pass. */
    size_t k = 0, g = 3 + nkeys;
    argv[0] = "FCALL";
    argv[1] = "lcm_append";
    argv[2] = arena_printf(&a, "%zu", nkeys);
    argv[3 + k++] = LCM_STORE_LEADER;
    argv[3 + k++] = LCM_STORE_FEED;
    argv[g++] = "1";
    argv[g++] = fence ? fence : "";
    argv[g++] = s->feed_maxlen_s;
    argv[g++] = arena_printf(&a, "%zu", n);
    for (size_t i = 0; i < n; i++) {
        const struct lcm_store_write *x = &w[i];
        size_t nset = 0, ndel = 0;
        for (size_t f = 0; f < x->n_fields; f++) {
            if (!x->fields[f].name)
                goto invalid;
            if (x->fields[f].value)
                nset++;
            else
                ndel++;
        }
        argv[3 + k++] = arena_printf(&a, "lcm:{%s:%s}", x->kind, x->id);
        argv[3 + k++] = arena_printf(&a, "lcm:{%s:%s}:events", x->kind, x->id);
        argv[g++] = x->kind;
        argv[g++] = x->id;
        argv[g++] = arena_printf(&a, "%" PRIu64, x->expected_version);
        argv[g++] = arena_printf(&a, "%zu", x->n_events);
        argv[g++] = arena_printf(&a, "%zu", nset);
        argv[g++] = arena_printf(&a, "%zu", ndel);
        argv[g++] = arena_printf(&a, "%zu", x->n_indexes);
        argv[g++] = arena_printf(&a, "%zu", x->n_uniques);
        for (size_t e = 0; e < x->n_events; e++) {
            const struct lcm_store_event *ev = &x->events[e];
            if (!ev->type || !ev->data)
                goto invalid;
            argv[g++] = ev->type;
            argv[g++] = ev->at ? ev->at : now;
            argv[g++] = ev->by ? ev->by : "";
            argv[g++] = ev->data;
        }
        for (size_t f = 0; f < x->n_fields; f++) {
            if (x->fields[f].value) {
                argv[g++] = x->fields[f].name;
                argv[g++] = x->fields[f].value;
            }
        }
        for (size_t f = 0; f < x->n_fields; f++)
            if (!x->fields[f].value)
                argv[g++] = x->fields[f].name;
        for (size_t j = 0; j < x->n_indexes; j++) {
            const struct lcm_store_index_op *ix = &x->indexes[j];
            if (!ix->key)
                goto invalid;
            argv[3 + k++] = ix->key;
            argv[g++] = ix->sorted ? (ix->remove ? "zrem" : "zadd")
                                   : (ix->remove ? "srem" : ix->unique ? "uadd" : "sadd");
            argv[g++] = ix->sorted && !ix->remove ? arena_printf(&a, "%.17g", ix->score) : "0";
            argv[g++] = ix->member ? ix->member : x->id;
        }
        for (size_t j = 0; j < x->n_uniques; j++) {
            const struct lcm_store_unique *u = &x->uniques[j];
            if (!u->name || u->ttl_ms < 0)
                goto invalid;
            argv[3 + k++] = arena_printf(&a, "lcm:uniq:%s", u->name);
            argv[g++] = u->value ? u->value : x->id;
            argv[g++] = arena_printf(&a, "%lld", u->ttl_ms);
            argv[g++] = u->release ? "del" : "set";
        }
    }
    if (a.oom)
        goto out;
    if (g != argc || 3 + k != 3 + nkeys) {
        lcm_error("store", "msg=\"append encoding mismatch (bug)\" argc=%zu filled=%zu", argc, g);
        goto invalid;
    }
    for (size_t i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    op->s = s;
    op->done = done;
    op->ud = ud;
    op->items = items;
    op->n_items = n_items;
    clock_gettime(CLOCK_MONOTONIC, &op->t0);
    if (lcm_redis_commandv(s->r, append_reply, op, (int)argc, argv, lens) < 0) {
        op->items = NULL;
        rc = LCM_STORE_EUNAVAILABLE;
        goto out;
    }
    op = NULL;
    rc = 0;
    goto out;
invalid:
    rc = LCM_STORE_EINVALID;
out:
    arena_free(&a);
    free(argv);
    free(lens);
    free(op);
    return rc;
}

int lcm_store_append(struct lcm_store *s, const struct lcm_store_write *writes, size_t n,
                     const char *fence, lcm_store_done_fn done, void *ud)
{
    return send_append(s, writes, n, fence, done, ud, NULL, 0);
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

/* Per change: everything the write borrows, freed after send_append formatted it. */
struct change_tmp {
    struct lcm_store_fieldv oldf, newf;
    struct idxv oldi, newi;
    struct lcm_store_field *fields;
    struct lcm_store_index_op *ops;
};

static int diff_change(const struct lcm_kind *k, const void *old, const void *nw,
                       struct change_tmp *t, struct lcm_store_write *w)
{
    if (old)
        lcm_store_fieldv_collect(k, old, &t->oldf);
    lcm_store_fieldv_collect(k, nw, &t->newf);
    if (old)
        k->indexes(old, idx_emit, &t->oldi);
    k->indexes(nw, idx_emit, &t->newi);
    if (t->oldf.oom || t->newf.oom || t->oldi.oom || t->newi.oom)
        return LCM_STORE_ENOMEM;
    t->fields = calloc(t->oldf.n + t->newf.n + 1, sizeof(*t->fields));
    t->ops = calloc(t->oldi.n + t->newi.n + 1, sizeof(*t->ops));
    if (!t->fields || !t->ops)
        return LCM_STORE_ENOMEM;
    size_t nf = 0, no = 0;
    for (size_t i = 0; i < t->newf.n; i++) {
        size_t j = 0;
        while (j < t->oldf.n && strcmp(t->oldf.names[j], t->newf.names[i]) != 0)
            j++;
        if (j == t->oldf.n || strcmp(t->oldf.values[j], t->newf.values[i]) != 0)
            t->fields[nf++] = (struct lcm_store_field){ t->newf.names[i], t->newf.values[i] };
    }
    for (size_t j = 0; j < t->oldf.n; j++) {
        size_t i = 0;
        while (i < t->newf.n && strcmp(t->oldf.names[j], t->newf.names[i]) != 0)
            i++;
        if (i == t->newf.n)
            t->fields[nf++] = (struct lcm_store_field){ t->oldf.names[j], NULL };
    }
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
    lcm_store_fieldv_free(&t->oldf);
    lcm_store_fieldv_free(&t->newf);
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
        const struct lcm_store_agg *a = lcm_store_agg_find(m, c->id);
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
        items[i].state = lcm_store_clone_state(c->kind, c->id, a ? a->state : NULL, err, errlen);
        if (!items[i].id || !items[i].state) {
            rc = items[i].id ? LCM_STORE_EINVALID : LCM_STORE_ENOMEM;
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
        rc = diff_change(c->kind, a ? a->state : NULL, items[i].state, &tmp[i], &w[i]);
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
        rc = send_append(s, w, n, fence, done, ud, items, n);
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
