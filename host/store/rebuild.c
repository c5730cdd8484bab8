/* lcmd --rebuild: recreates every aggregate hash and every lcm:idx:* key from the event
 * streams alone, folding each stream with kind->apply. One SCAN pass drops the indexes and
 * lists the streams and the hashes (a hash that does not exist needs no DEL); reads are
 * pipelined (a window of XRANGE calls in flight) and writes are sent without waiting, so
 * Redis stays busy. */
#include "store_int.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/log.h"
#include "../core/redis.h"
#include "entry.h"

#define READ_WINDOW 512
#define XRANGE_COUNT "1000"

struct lcm_store_rebuild {
    struct lcm_store *s;
    lcm_store_rebuild_fn done;
    void *ud;
    int phase;                 /* 0: scanning (dropping lcm:idx:*, listing keys), 2: folding */
    int scan_done, failed;
    size_t inflight;           /* commands without reply */
    size_t reading;            /* streams being read */
    char **keys;
    size_t nkeys, capkeys, next;
    char **hashes;             /* open-addressing set of the hash keys that exist */
    size_t nhashes, caphashes;
    struct timespec t0;
    struct lcm_store_rebuild_stats st;
};

struct rb_stream {
    struct lcm_store_rebuild *rb;
    const struct lcm_kind *kind;
    char *key;                 /* borrowed from rb->keys */
    char id[130];
    void *state;
    uint64_t version;
};

static void rb_pump(struct lcm_store_rebuild *rb);
static void rb_scan(struct lcm_store_rebuild *rb, const char *cursor);

static uint64_t str_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

/* Remembers an existing hash key. 0 or -1 (out of memory). */
static int hashes_add(struct lcm_store_rebuild *rb, const char *key, size_t n)
{
    if (2 * (rb->nhashes + 1) > rb->caphashes) {
        size_t cap = rb->caphashes ? rb->caphashes * 2 : 1024;
        char **t = calloc(cap, sizeof(*t));
        if (!t)
            return -1;
        for (size_t i = 0; i < rb->caphashes; i++) {
            char *k = rb->hashes[i];
            if (!k)
                continue;
            size_t j = str_hash(k, strlen(k)) & (cap - 1);
            while (t[j])
                j = (j + 1) & (cap - 1);
            t[j] = k;
        }
        free(rb->hashes);
        rb->hashes = t;
        rb->caphashes = cap;
    }
    size_t j = str_hash(key, n) & (rb->caphashes - 1);
    while (rb->hashes[j]) {
        if (strlen(rb->hashes[j]) == n && memcmp(rb->hashes[j], key, n) == 0)
            return 0;
        j = (j + 1) & (rb->caphashes - 1);
    }
    if (!(rb->hashes[j] = strndup(key, n)))
        return -1;
    rb->nhashes++;
    return 0;
}

static int hashes_has(const struct lcm_store_rebuild *rb, const char *key)
{
    if (!rb->caphashes)
        return 0;
    size_t n = strlen(key), j = str_hash(key, n) & (rb->caphashes - 1);
    while (rb->hashes[j]) {
        if (strcmp(rb->hashes[j], key) == 0)
            return 1;
        j = (j + 1) & (rb->caphashes - 1);
    }
    return 0;
}

static void rb_fail(struct lcm_store_rebuild *rb, const char *why)
{
    if (!rb->failed)
        lcm_error("store", "msg=\"rebuild failed\" reason=\"%.200s\"", why);
    rb->failed = 1;
}

static void rb_finish(struct lcm_store_rebuild *rb)
{
    if (rb->inflight || rb->reading)
        return;
    if (!rb->failed && (rb->phase < 2 || rb->next < rb->nkeys))
        return;
    struct lcm_store *s = rb->s;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    rb->st.seconds = (double)(t1.tv_sec - rb->t0.tv_sec) +
                     (double)(t1.tv_nsec - rb->t0.tv_nsec) / 1e9;
    if (!rb->failed)
        lcm_info("store", "msg=\"rebuild done\" aggregates=%zu events=%zu skipped=%zu "
                 "index_entries=%zu seconds=%.3f", rb->st.aggregates, rb->st.events,
                 rb->st.skipped, rb->st.index_entries, rb->st.seconds);
    s->rebuild = NULL;
    for (size_t i = 0; i < rb->nkeys; i++)
        free(rb->keys[i]);
    free(rb->keys);
    for (size_t i = 0; i < rb->caphashes; i++)
        free(rb->hashes[i]);
    free(rb->hashes);
    lcm_store_rebuild_fn done = rb->done;
    void *ud = rb->ud;
    struct lcm_store_rebuild_stats st = rb->st;
    int status = rb->failed ? LCM_STORE_EREDIS : 0;
    free(rb);
    done(s, status, &st, ud);
}

/* Replies to writes: only errors matter. */
static void rb_wrote(struct lcm_redis *r, redisReply *reply, void *ud)
{
    (void)r;
    struct lcm_store_rebuild *rb = ud;
    rb->inflight--;
    if (!reply)
        rb_fail(rb, "connection lost");
    else if (reply->type == REDIS_REPLY_ERROR)
        rb_fail(rb, reply->str);
    rb_finish(rb);
}

static int rb_send(struct lcm_store_rebuild *rb, int argc, const char **argv)
{
    size_t lens[argc];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (lcm_redis_commandv(rb->s->r, rb_wrote, rb, argc, argv, lens) < 0) {
        rb_fail(rb, "not connected");
        return -1;
    }
    rb->inflight++;
    return 0;
}

struct idx_ctx {
    struct lcm_store_rebuild *rb;
    const char *id;
};

static void rb_index(const struct lcm_index_entry *e, void *ud)
{
    struct idx_ctx *c = ud;
    if (!e || !e->key || strncmp(e->key, "lcm:idx:", 8) != 0)
        return;
    char score[32];
    snprintf(score, sizeof(score), "%.17g", e->score);
    const char *sadd[] = { "SADD", e->key, c->id };
    const char *zadd[] = { "ZADD", e->key, score, c->id };
    if (e->sorted)
        rb_send(c->rb, 4, zadd);
    else
        rb_send(c->rb, 3, sadd);
    c->rb->st.index_entries++;
}

/* The stream is folded: write its hash (replacing any stale one) and its indexes. */
static void rb_write(struct rb_stream *x)
{
    struct lcm_store_rebuild *rb = x->rb;
    if (!x->state || x->version == 0)
        return;
    char hkey[300], ver[24];
    snprintf(hkey, sizeof(hkey), "lcm:{%s:%s}", x->kind->name, x->id);
    snprintf(ver, sizeof(ver), "%" PRIu64, x->version);
    struct lcm_store_fieldv fv;
    lcm_store_fieldv_collect(x->kind, x->state, &fv);
    const char **argv = malloc((4 + 2 * fv.n) * sizeof(*argv));
    if (fv.oom || !argv) {
        rb_fail(rb, "out of memory");
    } else {
        /* The stale hash goes first, unless there is none (a rebuild after the hashes
         * were dropped writes each one fresh). */
        if (hashes_has(rb, hkey)) {
            const char *del[] = { "DEL", hkey };
            rb_send(rb, 2, del);
        }
        int argc = 0;
        argv[argc++] = "HSET";
        argv[argc++] = hkey;
        argv[argc++] = "version";
        argv[argc++] = ver;
        for (size_t i = 0; i < fv.n; i++) {
            if (strcmp(fv.names[i], "version") == 0)
                continue;
            argv[argc++] = fv.names[i];
            argv[argc++] = fv.values[i];
        }
        rb_send(rb, argc, argv);
        struct idx_ctx c = { rb, x->id };
        x->kind->indexes(x->state, rb_index, &c);
        rb->st.aggregates++;
    }
    free(argv);
    lcm_store_fieldv_free(&fv);
}

/* An lcm.snapshot entry (written by lcm_compact) restarts the fold from its hash fields. */
static int rb_snapshot(struct rb_stream *x, const struct lcm_store_entry *e, char *err,
                       size_t errlen)
{
    size_t n = (size_t)cJSON_GetArraySize(e->data) + 1, i = 0;
    const char **names = calloc(n, sizeof(*names)), **values = calloc(n, sizeof(*values));
    char ver[24];
    int rc = -1;
    void *st = NULL;
    if (!names || !values) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, e->data) {
        if (!cJSON_IsString(it) || strcmp(it->string, "version") == 0) {
            snprintf(err, errlen, "snapshot member %.40s is not a string field", it->string);
            goto out;
        }
        names[i] = it->string;
        values[i++] = it->valuestring;
    }
    snprintf(ver, sizeof(ver), "%" PRIu64, e->version);
    names[i] = "version";
    values[i++] = ver;
    st = x->kind->create(x->id);
    if (!st || x->kind->from_fields(st, names, values, i, err, errlen) < 0)
        goto out;
    if (x->state)
        x->kind->destroy(x->state);
    x->state = st;
    st = NULL;
    x->version = e->version;
    rc = 0;
out:
    if (st)
        x->kind->destroy(st);
    free(names);
    free(values);
    return rc;
}

static void rb_fold(const struct lcm_store_entry *e, void *ud)
{
    struct rb_stream *x = ud;
    char err[200] = "";
    int ok;
    if (strcmp(e->type, "lcm.snapshot") == 0) {
        ok = rb_snapshot(x, e, err, sizeof(err)) == 0;
    } else if (e->version != x->version + 1) {
        snprintf(err, sizeof(err), "version %" PRIu64 " does not follow %" PRIu64, e->version,
                 x->version);
        ok = 0;
    } else {
        if (!x->state)
            x->state = x->kind->create(x->id);
        struct lcm_event ev = { e->type, e->version, e->at, e->by, e->data };
        ok = x->state && x->kind->apply(x->state, &ev, err, sizeof(err)) == 0;
        if (ok)
            x->version = e->version;
    }
    if (ok) {
        x->rb->st.events++;
    } else {
        x->rb->st.skipped++;
        lcm_warn("store", "msg=\"event skipped by rebuild\" key=\"%s\" entry=%s reason=\"%s\"",
                 x->key, e->entry_id, err);
    }
}

static int rb_read(struct rb_stream *x, const char *from);

static void rb_got_range(struct lcm_redis *r, redisReply *reply, void *ud)
{
    (void)r;
    struct rb_stream *x = ud;
    struct lcm_store_rebuild *rb = x->rb;
    rb->inflight--;
    if (reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "WRONGTYPE", 9) == 0) {
        /* Named like a stream but is not one (written by hand): nothing to fold. */
        lcm_warn("store", "msg=\"not a stream, not rebuilt\" key=\"%s\"", x->key);
        rb->st.skipped++;
    } else if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        rb_fail(rb, reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "XRANGE failed");
    } else if (!rb->failed) {
        char last[48] = "";
        long skipped = lcm_store_entries_each(reply, 0, x->key, rb_fold, x, last, sizeof(last));
        if (skipped > 0)
            rb->st.skipped += (size_t)skipped;
        if (reply->elements == (size_t)atoi(XRANGE_COUNT) && last[0]) {
            char from[50];
            snprintf(from, sizeof(from), "(%s", last);
            if (rb_read(x, from) == 0)
                return;
        } else {
            rb_write(x);
        }
    }
    if (x->state)
        x->kind->destroy(x->state);
    free(x);
    rb->reading--;
    rb_pump(rb);
    rb_finish(rb);
}

/* Returns 0, or -1 (rebuild marked failed; the caller still owns x). */
static int rb_read(struct rb_stream *x, const char *from)
{
    const char *argv[] = { "XRANGE", x->key, from, "+", "COUNT", XRANGE_COUNT };
    size_t lens[6];
    for (int i = 0; i < 6; i++)
        lens[i] = strlen(argv[i]);
    if (lcm_redis_commandv(x->rb->s->r, rb_got_range, x, 6, argv, lens) < 0) {
        rb_fail(x->rb, "not connected");
        return -1;
    }
    x->rb->inflight++;
    return 0;
}

/* Keeps READ_WINDOW streams being read. */
static void rb_pump(struct lcm_store_rebuild *rb)
{
    while (!rb->failed && rb->phase == 2 && rb->reading < READ_WINDOW && rb->next < rb->nkeys) {
        char *key = rb->keys[rb->next++];
        size_t len = strlen(key);
        /* key = lcm:{<kind>:<id>}:events */
        char kind[130];
        const char *in = key + 5, *colon = strchr(in, ':'), *close = key + len - 8;
        if (!colon || colon > close || colon - in > 128 || close - colon - 1 > 128)
            continue;
        memcpy(kind, in, (size_t)(colon - in));
        kind[colon - in] = '\0';
        struct lcm_store_kmap *m = lcm_store_kmap_find(rb->s, kind);
        struct rb_stream *x = m ? calloc(1, sizeof(*x)) : NULL;
        if (!m) {
            lcm_warn("store", "msg=\"stream of unknown kind not rebuilt\" key=\"%s\"", key);
            continue;
        }
        if (!x) {
            rb_fail(rb, "out of memory");
            break;
        }
        memcpy(x->id, colon + 1, (size_t)(close - colon - 1));
        x->id[close - colon - 1] = '\0';
        if (!lcm_store_valid_name(x->id)) {
            free(x);
            continue;
        }
        x->rb = rb;
        x->kind = m->kind;
        x->key = key;
        rb->reading++;
        if (rb_read(x, "-") < 0) {
            rb->reading--;
            free(x);
        }
    }
}

static void rb_unlinked(struct lcm_redis *r, redisReply *reply, void *ud)
{
    rb_wrote(r, reply, ud);
}

static void rb_scanned(struct lcm_redis *r, redisReply *reply, void *ud)
{
    (void)r;
    struct lcm_store_rebuild *rb = ud;
    rb->inflight--;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        rb_fail(rb, reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "SCAN failed");
        rb_finish(rb);
        return;
    }
    const redisReply *keys = reply->element[1];
    for (size_t i = 0; i < keys->elements && !rb->failed; i++) {
        const redisReply *k = keys->element[i];
        if (k->type != REDIS_REPLY_STRING || memchr(k->str, 0, k->len))
            continue;
        if (k->len > 8 && strncmp(k->str, "lcm:idx:", 8) == 0) {
            const char *argv[] = { "UNLINK", k->str };
            size_t lens[] = { 6, k->len };
            if (lcm_redis_commandv(rb->s->r, rb_unlinked, rb, 2, argv, lens) < 0)
                rb_fail(rb, "not connected");
            else
                rb->inflight++;
            continue;
        }
        if (k->len < 8 || strncmp(k->str, "lcm:{", 5) != 0)
            continue;
        if (k->len < 16 || strcmp(k->str + k->len - 8, "}:events") != 0) {
            if (k->str[k->len - 1] == '}' && hashes_add(rb, k->str, k->len) < 0) {
                rb_fail(rb, "out of memory");
                break;
            }
            continue;
        }
        if (rb->nkeys == rb->capkeys) {
            size_t cap = rb->capkeys ? rb->capkeys * 2 : 1024;
            char **n = realloc(rb->keys, cap * sizeof(*n));
            if (!n) {
                rb_fail(rb, "out of memory");
                break;
            }
            rb->keys = n;
            rb->capkeys = cap;
        }
        if (!(rb->keys[rb->nkeys] = strdup(k->str))) {
            rb_fail(rb, "out of memory");
            break;
        }
        rb->nkeys++;
    }
    if (rb->failed) {
        rb_finish(rb);
        return;
    }
    if (strcmp(reply->element[0]->str, "0") != 0) {
        rb_scan(rb, reply->element[0]->str);
        return;
    }
    rb->phase = 2;
    lcm_info("store", "msg=\"rebuilding from streams\" streams=%zu", rb->nkeys);
    rb_pump(rb);
    rb_finish(rb);
}

static void rb_scan(struct lcm_store_rebuild *rb, const char *cursor)
{
    const char *argv[] = { "SCAN", cursor, "MATCH", "lcm:*", "COUNT", "1000" };
    int argc = 6;
    size_t lens[6];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (lcm_redis_commandv(rb->s->r, rb_scanned, rb, argc, argv, lens) < 0) {
        rb_fail(rb, "not connected");
        rb_finish(rb);
        return;
    }
    rb->inflight++;
}

int lcm_store_rebuild(struct lcm_store *s, lcm_store_rebuild_fn done, void *ud)
{
    if (!s || !done || s->rebuild)
        return -1;
    struct lcm_store_rebuild *rb = calloc(1, sizeof(*rb));
    if (!rb)
        return -1;
    rb->s = s;
    rb->done = done;
    rb->ud = ud;
    clock_gettime(CLOCK_MONOTONIC, &rb->t0);
    const char *argv[] = { "SCAN", "0", "MATCH", "lcm:*", "COUNT", "1000" };
    size_t lens[] = { 4, 1, 5, 5, 5, 4 };
    if (lcm_redis_commandv(s->r, rb_scanned, rb, 6, argv, lens) < 0) {
        free(rb);
        return -1;
    }
    rb->inflight++;
    s->rebuild = rb;
    return 0;
}

void lcm_store_rebuild_abort(struct lcm_store *s)
{
    if (s->rebuild)
        lcm_error("store", "msg=\"store freed during a rebuild; free the redis connection "
                  "first\"");
}
