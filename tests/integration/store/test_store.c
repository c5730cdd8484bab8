/* Integration tests of the event store against a real redis-server (appendonly yes): atomic
 * appends (concurrency, multi-aggregate, fencing, uniqueness, validation), read models that
 * follow lcm:feed across two store instances, rebuild byte for byte, malformed entries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/redis.h"
#include "harness.h"
#include "store/store.h"
#include "testkind.h"

struct env {
    struct th_redis srv;
    struct event_base *base;
    redisContext *sync;
};
static struct env E;

static int setup(void **state)
{
    (void)state;
    lcm_log_set_level(LCM_LOG_ERROR);
    if (th_redis_start(&E.srv, NULL) < 0)
        return -1;
    E.base = event_base_new();
    E.sync = th_sync(&E.srv);
    return E.base && E.sync ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    redisFree(E.sync);
    event_base_free(E.base);
    th_redis_stop(&E.srv);
    return 0;
}

static int flush(void **state)
{
    (void)state;
    freeReplyObject(th_cmd(E.sync, "FLUSHALL"));
    return 0;
}

/* A store on its own connection. */
struct inst {
    struct lcm_redis *r;
    struct lcm_store *s;
};

static void inst_open(struct inst *in, int follow)
{
    char err[256];
    in->r = th_connect(E.base, E.srv.url);
    assert_non_null(in->r);
    struct lcm_store_opts o = { .kinds = lcm_test_kinds, .no_follow = !follow,
                                .feed_maxlen = 100000 };
    in->s = lcm_store_new(E.base, in->r, NULL, &o, err, sizeof(err));
    assert_non_null(in->s);
}

static void ready_cb(struct lcm_store *s, int status, void *ud)
{
    (void)s;
    *(int *)ud = status == 0 ? 1 : -1;
}

static void inst_start(struct inst *in)
{
    int ready = 0;
    assert_int_equal(lcm_store_start(in->s, ready_cb, &ready), 0);
    assert_int_equal(th_run_until(E.base, &ready, 5000), 0);
    assert_int_equal(ready, 1);
}

static void inst_close(struct inst *in)
{
    lcm_redis_free(in->r);
    lcm_store_free(in->s);
}

struct res {
    int done;
    int status;
    int64_t current;
    char holder[256];
    char msg[256];
    uint64_t versions[8];
    size_t nv;
};

static void done_cb(const struct lcm_store_result *r, void *ud)
{
    struct res *x = ud;
    x->done++;
    x->status = r->status;
    x->current = r->current_version;
    snprintf(x->holder, sizeof(x->holder), "%s", r->holder);
    snprintf(x->msg, sizeof(x->msg), "%s", r->message);
    x->nv = r->n_versions < 8 ? r->n_versions : 8;
    for (size_t i = 0; i < x->nv; i++)
        x->versions[i] = r->versions[i];
}

static void wait_res(struct res *x)
{
    assert_int_equal(th_run_until(E.base, &x->done, 5000), 0);
    assert_int_equal(x->done, 1);
}

static long long sync_int(const char *fmt, const char *arg)
{
    redisReply *r = th_cmd(E.sync, fmt, arg);
    long long v = -1;
    if (r && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r && r->type == REDIS_REPLY_STRING)
        v = atoll(r->str);
    freeReplyObject(r);
    return v;
}

/* Commits one note.set event with the given JSON data. */
static int commit_set(struct inst *in, const char *id, uint64_t expected, const char *data,
                      const char *fence)
{
    struct lcm_store_event ev = { "note.set", data, NULL, "test" };
    struct lcm_store_change c = { &lcm_test_note_kind, id, expected, &ev, 1, NULL, 0 };
    struct res x = { 0 };
    char err[256];
    int rc = lcm_store_commit(in->s, &c, 1, fence, done_cb, &x, err, sizeof(err));
    if (rc < 0) {
        if (rc != LCM_STORE_ECONFLICT)
            fprintf(stderr, "commit %s: %s\n", id, err);
        return rc;
    }
    wait_res(&x);
    if (x.status != 0 && x.status != LCM_STORE_EDUPLICATE)
        fprintf(stderr, "commit %s: %s\n", id, x.msg);
    return x.status;
}

/* ---- append basics ------------------------------------------------------------------- */

static void test_append_layout(void **state)
{
    (void)state;
    struct inst a;
    inst_open(&a, 0);
    inst_start(&a);
    assert_int_equal(commit_set(&a, "n1", 0, "{\"status\":\"pending\",\"score\":\"5\",\"x\":\"1\"}",
                                NULL), 0);
    assert_int_equal(commit_set(&a, "n1", 1, "{\"status\":\"ready\"}", NULL), 0);

    redisReply *r = th_cmd(E.sync, "HGETALL lcm:{note:n1}");
    assert_int_equal(r->elements, 8);   /* version status score x */
    freeReplyObject(r);
    assert_int_equal(sync_int("HGET lcm:{note:n1} %s", "version"), 2);
    r = th_cmd(E.sync, "HGET lcm:{note:n1} status");
    assert_string_equal(r->str, "ready");
    freeReplyObject(r);
    /* the status index moved, the sorted index holds the score */
    assert_int_equal(sync_int("SISMEMBER lcm:idx:note:status:pending %s", "n1"), 0);
    assert_int_equal(sync_int("SISMEMBER lcm:idx:note:status:ready %s", "n1"), 1);
    assert_int_equal(sync_int("ZSCORE lcm:idx:note:score %s", "n1"), 5);
    /* stream and feed entries carry the documented fields */
    r = th_cmd(E.sync, "XRANGE lcm:{note:n1}:events - +");
    assert_int_equal(r->elements, 2);
    const redisReply *f = r->element[1]->element[1];
    assert_int_equal(f->elements, 10);
    assert_string_equal(f->element[0]->str, "type");
    assert_string_equal(f->element[1]->str, "note.set");
    assert_string_equal(f->element[2]->str, "version");
    assert_string_equal(f->element[3]->str, "2");
    assert_string_equal(f->element[6]->str, "by");
    assert_string_equal(f->element[7]->str, "test");
    assert_string_equal(f->element[9]->str, "{\"status\":\"ready\"}");
    freeReplyObject(r);
    r = th_cmd(E.sync, "XREVRANGE lcm:feed + - COUNT 1");
    f = r->element[0]->element[1];
    assert_int_equal(f->elements, 14);
    assert_string_equal(f->element[1]->str, "note");
    assert_string_equal(f->element[3]->str, "n1");
    assert_string_equal(f->element[7]->str, "2");
    freeReplyObject(r);
    /* read your writes */
    const void *st = lcm_store_get(a.s, "note", "n1");
    assert_non_null(st);
    assert_int_equal(lcm_test_note_kind.version(st), 2);
    /* a field removed by an event is removed from the hash */
    struct lcm_store_event ev = { "note.unset", "{\"fields\":[\"x\"]}", NULL, "test" };
    struct lcm_store_change c = { &lcm_test_note_kind, "n1", 2, &ev, 1, NULL, 0 };
    struct res x = { 0 };
    char err[256];
    assert_int_equal(lcm_store_commit(a.s, &c, 1, NULL, done_cb, &x, err, sizeof(err)), 0);
    wait_res(&x);
    assert_int_equal(x.status, 0);
    assert_int_equal(sync_int("HEXISTS lcm:{note:n1} %s", "x"), 0);
    /* a stale expected version is refused by the read model at once */
    assert_int_equal(commit_set(&a, "n1", 1, "{\"y\":\"1\"}", NULL), LCM_STORE_ECONFLICT);
    inst_close(&a);
}

/* ---- concurrency --------------------------------------------------------------------- */

#define WRITERS 4
#define PER_WRITER 40

struct writer {
    struct inst in;
    int n;           /* successful appends */
    int conflicts;
    int failed;
    int busy;
    int idx;
};
static int writers_done;

static void writer_next(struct writer *w);

static void writer_appended(const struct lcm_store_result *r, void *ud)
{
    struct writer *w = ud;
    w->busy = 0;
    if (r->status == LCM_STORE_OK) {
        w->n++;
    } else if (r->status == LCM_STORE_ECONFLICT) {
        w->conflicts++;
        if (r->current_version < 0)
            w->failed++;
    } else {
        w->failed++;
    }
    writer_next(w);
}

static void writer_read(struct lcm_redis *r, redisReply *reply, void *ud)
{
    (void)r;
    struct writer *w = ud;
    uint64_t v = reply && reply->type == REDIS_REPLY_STRING ? strtoull(reply->str, NULL, 10) : 0;
    char data[64];
    snprintf(data, sizeof(data), "{\"w%d\":\"%d\"}", w->idx, w->n + 1);
    struct lcm_store_event ev = { "note.set", data, NULL, "writer" };
    char fields[2][32];
    snprintf(fields[0], sizeof(fields[0]), "w%d", w->idx);
    snprintf(fields[1], sizeof(fields[1]), "%d", w->n + 1);
    struct lcm_store_field fld = { fields[0], fields[1] };
    struct lcm_store_write wr = { "note", "hot", v, &ev, 1, &fld, 1, NULL, 0, NULL, 0 };
    if (lcm_store_append(w->in.s, &wr, 1, NULL, writer_appended, w) < 0) {
        w->failed++;
        writers_done++;
    }
}

static void writer_next(struct writer *w)
{
    if (w->n >= PER_WRITER || w->failed) {
        writers_done++;
        return;
    }
    w->busy = 1;
    if (lcm_redis_command(w->in.r, writer_read, w, "HGET lcm:{note:hot} version") < 0) {
        w->failed++;
        writers_done++;
    }
}

static void test_concurrent_writers(void **state)
{
    (void)state;
    struct writer w[WRITERS];
    memset(w, 0, sizeof(w));
    writers_done = 0;
    for (int i = 0; i < WRITERS; i++) {
        inst_open(&w[i].in, 0);
        w[i].idx = i;
    }
    for (int i = 0; i < WRITERS; i++)
        writer_next(&w[i]);
    int all = 0;
    double t0 = th_now_ms();
    while (writers_done < WRITERS && th_now_ms() - t0 < 20000)
        event_base_loop(E.base, EVLOOP_ONCE);
    (void)all;
    assert_int_equal(writers_done, WRITERS);
    int conflicts = 0;
    for (int i = 0; i < WRITERS; i++) {
        assert_int_equal(w[i].failed, 0);
        assert_int_equal(w[i].n, PER_WRITER);
        conflicts += w[i].conflicts;
    }
    assert_true(conflicts > 0);   /* they really raced */
    /* no lost update: every successful append is one version, no gap, no duplicate */
    assert_int_equal(sync_int("HGET lcm:{note:hot} %s", "version"), WRITERS * PER_WRITER);
    redisReply *r = th_cmd(E.sync, "XRANGE lcm:{note:hot}:events - +");
    assert_int_equal(r->elements, WRITERS * PER_WRITER);
    for (size_t i = 0; i < r->elements; i++)
        assert_int_equal(atoi(r->element[i]->element[1]->element[3]->str), (int)i + 1);
    freeReplyObject(r);
    r = th_cmd(E.sync, "XRANGE lcm:feed - +");
    assert_int_equal(r->elements, WRITERS * PER_WRITER);
    freeReplyObject(r);
    for (int i = 0; i < WRITERS; i++) {
        char f[8];
        snprintf(f, sizeof(f), "w%d", i);
        assert_int_equal(sync_int("HGET lcm:{note:hot} %s", f), PER_WRITER);
        inst_close(&w[i].in);
    }
}

/* ---- multi-aggregate, fencing, uniques, validation ------------------------------------ */

static void append2(struct inst *in, uint64_t ea, uint64_t eb, const char *fence, struct res *x)
{
    struct lcm_store_event ev = { "note.set", "{\"status\":\"scheduled\"}", NULL, "sched" };
    struct lcm_store_event ev2 = { "note.set", "{\"reserved\":\"1\"}", NULL, "sched" };
    struct lcm_store_field fa = { "status", "scheduled" }, fb = { "reserved", "1" };
    struct lcm_store_index_op ia = { "lcm:idx:note:status:scheduled", 0, 0, 0, NULL, 0 };
    struct lcm_store_write w[2] = {
        { "note", "sess", ea, &ev, 1, &fa, 1, &ia, 1, NULL, 0 },
        { "note", "work", eb, &ev2, 1, &fb, 1, NULL, 0, NULL, 0 },
    };
    memset(x, 0, sizeof(*x));
    assert_int_equal(lcm_store_append(in->s, w, 2, fence, done_cb, x), 0);
    wait_res(x);
}

static void assert_nothing_written(void)
{
    assert_int_equal(sync_int("EXISTS %s", "lcm:{note:sess}"), 0);
    assert_int_equal(sync_int("EXISTS %s", "lcm:{note:sess}:events"), 0);
    assert_int_equal(sync_int("EXISTS %s", "lcm:idx:note:status:scheduled"), 0);
    assert_int_equal(sync_int("EXISTS %s", "lcm:feed"), 0);
}

static void test_multi_aggregate(void **state)
{
    (void)state;
    struct inst a;
    inst_open(&a, 0);
    struct res x;
    append2(&a, 0, 3, NULL, &x);   /* work does not exist: version 0, not 3 */
    assert_int_equal(x.status, LCM_STORE_ECONFLICT);
    assert_int_equal(x.current, 0);
    assert_nothing_written();
    append2(&a, 0, 0, NULL, &x);
    assert_int_equal(x.status, 0);
    assert_int_equal(x.nv, 2);
    assert_int_equal(x.versions[0], 1);
    assert_int_equal(x.versions[1], 1);
    assert_int_equal(sync_int("XLEN %s", "lcm:feed"), 2);
    assert_int_equal(sync_int("SISMEMBER lcm:idx:note:status:scheduled %s", "sess"), 1);
    inst_close(&a);
}

static void test_fencing(void **state)
{
    (void)state;
    struct inst a;
    inst_open(&a, 0);
    redisReply *r = th_cmd(E.sync, "FCALL lcm_lease_acquire 2 lcm:leader lcm:leader:epoch h1 10000");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    char tok1[32];
    snprintf(tok1, sizeof(tok1), "%s", r->str);
    freeReplyObject(r);
    r = th_cmd(E.sync, "FCALL lcm_lease_acquire 2 lcm:leader lcm:leader:epoch h2 10000");
    assert_int_equal(r->type, REDIS_REPLY_ERROR);   /* HELD */
    assert_non_null(strstr(r->str, "HELD"));
    freeReplyObject(r);

    struct res x;
    append2(&a, 0, 0, "999", &x);
    assert_int_equal(x.status, LCM_STORE_EFENCED);
    assert_nothing_written();
    /* the lease moves to h2 (h1 expired): h1's token is stale */
    freeReplyObject(th_cmd(E.sync, "DEL lcm:leader"));
    r = th_cmd(E.sync, "FCALL lcm_lease_acquire 2 lcm:leader lcm:leader:epoch h2 10000");
    char tok2[32];
    snprintf(tok2, sizeof(tok2), "%s", r->str);
    freeReplyObject(r);
    assert_string_not_equal(tok1, tok2);
    append2(&a, 0, 0, tok1, &x);
    assert_int_equal(x.status, LCM_STORE_EFENCED);
    assert_nothing_written();
    append2(&a, 0, 0, tok2, &x);
    assert_int_equal(x.status, 0);
    /* no lease at all: every fenced write is refused */
    r = th_cmd(E.sync, "FCALL lcm_lease_release 1 lcm:leader %s", tok2);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    append2(&a, 1, 1, tok2, &x);
    assert_int_equal(x.status, LCM_STORE_EFENCED);
    inst_close(&a);
}

static int unique_append(struct inst *a, const char *id, const char *name, long long ttl,
                         struct res *x)
{
    struct lcm_store_event ev = { "note.set", "{\"a\":\"1\"}", NULL, "api" };
    struct lcm_store_unique u = { name, NULL, ttl, 0 };
    struct lcm_store_write w = { "note", id, 0, &ev, 1, NULL, 0, NULL, 0, &u, 1 };
    memset(x, 0, sizeof(*x));
    assert_int_equal(lcm_store_append(a->s, &w, 1, NULL, done_cb, x), 0);
    wait_res(x);
    return x->status;
}

static void test_uniques(void **state)
{
    (void)state;
    struct inst a;
    inst_open(&a, 0);
    struct res x;
    assert_int_equal(unique_append(&a, "s1", "reservation:R-1", 0, &x), 0);
    assert_int_equal(unique_append(&a, "s2", "reservation:R-1", 0, &x), LCM_STORE_EDUPLICATE);
    assert_string_equal(x.holder, "lcm:uniq:reservation:R-1 s1");
    assert_int_equal(sync_int("EXISTS %s", "lcm:{note:s2}"), 0);
    assert_int_equal(unique_append(&a, "s3", "idem:K1", 60000, &x), 0);
    /* unique index entries from the kind (struct lcm_index_entry.unique) */
    inst_start(&a);
    assert_int_equal(commit_set(&a, "u1", 0, "{\"ref\":\"R9\"}", NULL), 0);
    assert_int_equal(commit_set(&a, "u1", 1, "{\"ref\":\"R9\",\"z\":\"1\"}", NULL), 0);
    assert_int_equal(commit_set(&a, "u2", 0, "{\"ref\":\"R9\"}", NULL), LCM_STORE_EDUPLICATE);
    assert_int_equal(sync_int("EXISTS %s", "lcm:{note:u2}"), 0);
    assert_int_equal(commit_set(&a, "u1", 2, "{\"ref\":\"R10\"}", NULL), 0);
    assert_int_equal(commit_set(&a, "u2", 0, "{\"ref\":\"R9\"}", NULL), 0);
    long long ttl = sync_int("PTTL %s", "lcm:uniq:idem:K1");
    assert_true(ttl > 0 && ttl <= 60000);
    inst_close(&a);
}

static void test_invalid(void **state)
{
    (void)state;
    struct inst a;
    inst_open(&a, 0);
    freeReplyObject(th_cmd(E.sync, "SET lcm:idx:note:status:scheduled oops"));
    struct res x;
    append2(&a, 0, 0, NULL, &x);
    assert_int_equal(x.status, LCM_STORE_EINVALID);
    assert_int_equal(sync_int("EXISTS %s", "lcm:{note:sess}"), 0);
    assert_int_equal(sync_int("EXISTS %s", "lcm:{note:work}"), 0);
    assert_int_equal(sync_int("EXISTS %s", "lcm:feed"), 0);
    /* caller errors are refused before anything is sent */
    struct lcm_store_event ev = { "note.set", "{}", NULL, NULL };
    struct lcm_store_write w = { "note", "bad id", 0, &ev, 1, NULL, 0, NULL, 0, NULL, 0 };
    assert_int_equal(lcm_store_append(a.s, &w, 1, NULL, done_cb, &x), LCM_STORE_EINVALID);
    /* the server validates too (raw FCALL as an operator might type it) */
    redisReply *r = th_cmd(E.sync, "FCALL lcm_append 4 lcm:leader lcm:feed lcm:{note:z} "
                           "lcm:{note:z}:events 1 \"\" 100 1 note z 0 1 0 0 0 0 t at by notjson");
    assert_int_equal(r->type, REDIS_REPLY_ERROR);   /* an old protocol: refused as a whole */
    assert_non_null(strstr(r->str, "INVALID"));
    freeReplyObject(r);
    /* the current protocol with a bad event in one group: that group alone is refused */
    static const char sizes[6] = { 0, 1, 0, 6, 0, 2 }, counts[11] = { 0, 1, 0, 0, 0, 0, 0, 0,
                                                                       0, 0, '0' };
    const char *argv[] = { "FCALL", "lcm_append", "4", "lcm:leader", "lcm:feed", "lcm:{note:z}",
                           "lcm:{note:z}:events", "2", "100", "1", "", sizes, counts, "t", "1",
                           "at", "by", "notjson" };
    size_t lens[18];
    for (int i = 0; i < 18; i++)
        lens[i] = strlen(argv[i]);
    lens[11] = 6;
    lens[12] = 11;
    r = redisCommandArgv(E.sync, 18, argv, lens);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 1);
    assert_int_equal(r->element[0]->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(r->element[0]->str, "INVALID"));
    assert_non_null(strstr(r->element[0]->str, "JSON object"));
    freeReplyObject(r);
    assert_int_equal(sync_int("EXISTS %s", "lcm:{note:z}:events"), 0);
    inst_close(&a);
}

/* ---- group commit -------------------------------------------------------------------- */

static void write1(struct inst *in, const char *id, uint64_t expected, const char *data,
                   const char *idx_key, const char *uniq, const char *fence, struct res *x)
{
    struct lcm_store_event ev = { "note.set", data, NULL, "gc" };
    struct lcm_store_field f = { "status", "s" };
    struct lcm_store_index_op ix = { idx_key, 0, 0, 0, NULL, 0 };
    struct lcm_store_unique u = { uniq, NULL, 0, 0 };
    struct lcm_store_write w = { "note", id, expected, &ev, 1, &f, 1, idx_key ? &ix : NULL,
                                 idx_key ? 1 : 0, uniq ? &u : NULL, uniq ? 1 : 0 };
    memset(x, 0, sizeof(*x));
    assert_int_equal(lcm_store_append(in->s, &w, 1, fence, done_cb, x), 0);
}

/* Runs the loop until the n appends of x are done (5 s at most), then checks each status. */
static void expect_results(struct res *x, const int *want, int n)
{
    double t0 = th_now_ms();
    int all = 0;
    while (!all && th_now_ms() - t0 < 5000) {
        event_base_loop(E.base, EVLOOP_ONCE);
        all = 1;
        for (int i = 0; i < n; i++)
            all &= x[i].done == 1;
    }
    assert_true(all);
    for (int i = 0; i < n; i++) {
        if (x[i].status != want[i])
            fprintf(stderr, "append %d: %d %s\n", i, x[i].status, x[i].msg);
        assert_int_equal(x[i].status, want[i]);
    }
}

/* Index key types are remembered across the groups of one call, including a key a removal
 * may have emptied: a later group that would make it a set and a sorted set at once is
 * refused as a whole (nothing written), one that makes it a sorted set alone is written. */
static void test_group_index_types(void **state)
{
    (void)state;
    struct inst a;
    inst_open(&a, 0);
    const char *k = "lcm:idx:note:tk";
    struct lcm_store_event ev = { "note.set", "{\"a\":\"1\"}", NULL, "gc" };
    struct lcm_store_index_op add = { k, 0, 0, 0, NULL, 0 }, rm = { k, 0, 1, 0, NULL, 0 };
    struct lcm_store_index_op both[2] = { { k, 0, 0, 0, NULL, 0 }, { k, 1, 0, 5, NULL, 0 } };
    struct lcm_store_index_op zadd = { k, 1, 0, 7, NULL, 0 };
    struct lcm_store_write w[5] = {
        { "note", "t0", 0, &ev, 1, NULL, 0, &add, 1, NULL, 0 },
        { "note", "tx", 0, &ev, 1, NULL, 0, NULL, 0, NULL, 0 },
        /* queued behind the two in flight: one FCALL */
        { "note", "t0", 1, &ev, 1, NULL, 0, &rm, 1, NULL, 0 },
        { "note", "t1", 0, &ev, 1, NULL, 0, both, 2, NULL, 0 },
        { "note", "t2", 0, &ev, 1, NULL, 0, &zadd, 1, NULL, 0 },
    };
    struct res x[5];
    memset(x, 0, sizeof(x));
    freeReplyObject(th_cmd(E.sync, "CONFIG RESETSTAT"));
    for (int i = 0; i < 5; i++)
        assert_int_equal(lcm_store_append(a.s, &w[i], 1, NULL, done_cb, &x[i]), 0);
    static const int want[5] = { 0, 0, 0, LCM_STORE_EINVALID, 0 };
    expect_results(x, want, 5);
    assert_int_equal(sync_int("EXISTS %s", "lcm:{note:t1}"), 0);
    assert_int_equal(sync_int("EXISTS %s", "lcm:{note:t1}:events"), 0);
    redisReply *r = th_cmd(E.sync, "TYPE %s", k);
    assert_string_equal(r->str, "zset");
    freeReplyObject(r);
    r = th_cmd(E.sync, "ZSCORE %s t2", k);
    assert_string_equal(r->str, "7");
    freeReplyObject(r);
    /* the three queued appends left in one call */
    r = th_cmd(E.sync, "INFO commandstats");
    const char *f = strstr(r->str, "cmdstat_fcall:calls=");
    assert_non_null(f);
    assert_true(atoi(f + strlen("cmdstat_fcall:calls=")) <= 3);
    freeReplyObject(r);
    inst_close(&a);
}

/* Appends queued while calls are in flight leave together in one FCALL; each stays atomic on
 * its own and is refused or written independently of its neighbours, in order. */
static void test_group_commit(void **state)
{
    (void)state;
    struct inst a;
    inst_open(&a, 0);
    redisReply *r = th_cmd(E.sync, "FCALL lcm_lease_acquire 2 lcm:leader lcm:leader:epoch h1 60000");
    char tok[32];
    snprintf(tok, sizeof(tok), "%s", r->str);
    freeReplyObject(r);
    freeReplyObject(th_cmd(E.sync, "SET lcm:idx:note:broken oops"));
    freeReplyObject(th_cmd(E.sync, "CONFIG RESETSTAT"));

    struct res x[12];
    write1(&a, "c0", 0, "{\"a\":\"1\"}", NULL, NULL, NULL, &x[0]);
    write1(&a, "c1", 0, "{\"a\":\"1\"}", NULL, NULL, NULL, &x[1]);
    /* from here on they queue behind the two in flight */
    write1(&a, "c0", 1, "{\"a\":\"2\"}", NULL, NULL, NULL, &x[2]);    /* after x[0]: ok */
    write1(&a, "c0", 1, "{\"a\":\"3\"}", NULL, NULL, NULL, &x[3]);    /* stale: CONFLICT */
    write1(&a, "c2", 0, "{\"a\":\"1\"}", NULL, NULL, "999", &x[4]);   /* FENCED */
    write1(&a, "c3", 0, "{\"a\":\"1\"}", NULL, NULL, tok, &x[5]);     /* fenced, current: ok */
    write1(&a, "c4", 0, "{\"a\":\"1\"}", "lcm:idx:note:broken", NULL, NULL, &x[6]); /* INVALID */
    write1(&a, "c5", 0, "[1]", NULL, NULL, NULL, &x[7]);             /* INVALID (data) */
    write1(&a, "c6", 0, "{\"a\":\"1\"}", NULL, "gc:R-1", NULL, &x[8]); /* ok */
    write1(&a, "c7", 0, "{\"a\":\"1\"}", NULL, "gc:R-1", NULL, &x[9]); /* DUPLICATE */
    /* a multi-aggregate group whose second write is refused writes neither */
    struct lcm_store_event ev = { "note.set", "{\"a\":\"1\"}", NULL, "gc" };
    struct lcm_store_index_op bad = { "lcm:idx:note:broken", 0, 0, 0, NULL, 0 };
    struct lcm_store_write two[2] = {
        { "note", "c8", 0, &ev, 1, NULL, 0, NULL, 0, NULL, 0 },
        { "note", "c9", 0, &ev, 1, NULL, 0, &bad, 1, NULL, 0 },
    };
    memset(&x[10], 0, sizeof(x[10]));
    assert_int_equal(lcm_store_append(a.s, two, 2, NULL, done_cb, &x[10]), 0);
    write1(&a, "c0", 2, "{\"a\":\"4\"}", NULL, NULL, NULL, &x[11]);   /* after x[2]: ok */

    static const int want[12] = { 0, 0, 0, LCM_STORE_ECONFLICT, LCM_STORE_EFENCED, 0,
                                  LCM_STORE_EINVALID, LCM_STORE_EINVALID, 0,
                                  LCM_STORE_EDUPLICATE, LCM_STORE_EINVALID, 0 };
    expect_results(x, want, 12);
    assert_int_equal(x[3].current, 2);
    assert_int_equal(x[11].nv, 1);
    assert_int_equal(x[11].versions[0], 3);
    assert_string_equal(x[9].holder, "lcm:uniq:gc:R-1 c6");
    /* fewer calls than appends: the queued ones went together */
    r = th_cmd(E.sync, "INFO commandstats");
    const char *fc = strstr(r->str, "cmdstat_fcall:calls=");
    assert_non_null(fc);
    long calls = atol(fc + 20);
    freeReplyObject(r);
    assert_true(calls >= 2 && calls <= 4);
    /* what was refused left nothing behind; what succeeded is all there */
    static const char *const absent[] = { "lcm:{note:c2}", "lcm:{note:c4}", "lcm:{note:c5}",
                                          "lcm:{note:c7}", "lcm:{note:c8}", "lcm:{note:c9}",
                                          "lcm:{note:c8}:events", "lcm:{note:c9}:events",
                                          "lcm:{note:c4}:events" };
    for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++)
        assert_int_equal(sync_int("EXISTS %s", absent[i]), 0);
    assert_int_equal(sync_int("HGET lcm:{note:c0} %s", "version"), 3);
    assert_int_equal(sync_int("XLEN %s", "lcm:{note:c0}:events"), 3);
    assert_int_equal(sync_int("HGET lcm:{note:c3} %s", "version"), 1);
    assert_int_equal(sync_int("XLEN %s", "lcm:feed"), 3 + 1 + 1 + 1);   /* c0 ×3, c1, c3, c6 */
    r = th_cmd(E.sync, "GET lcm:idx:note:broken");
    assert_string_equal(r->str, "oops");
    freeReplyObject(r);
    inst_close(&a);
}

/* ---- feed following-------------------------------------------------------------- */

struct seen {
    int n;
    char last_type[64];
    char feed_id[48];
};

static void on_change(const struct lcm_kind *k, const char *id, const void *st,
                      const struct lcm_event *ev, const char *feed_id, void *ud)
{
    (void)k;
    (void)id;
    (void)st;
    struct seen *s = ud;
    s->n++;
    snprintf(s->last_type, sizeof(s->last_type), "%s", ev->type);
    snprintf(s->feed_id, sizeof(s->feed_id), "%s", feed_id);
}

static void test_feed_follow(void **state)
{
    (void)state;
    struct inst a, b;
    inst_open(&a, 1);
    inst_open(&b, 1);
    /* b loads an aggregate written before it started, then follows */
    inst_start(&a);
    assert_int_equal(commit_set(&a, "f1", 0, "{\"status\":\"pending\"}", NULL), 0);
    inst_start(&b);
    const void *st = lcm_store_get(b.s, "note", "f1");
    assert_non_null(st);
    assert_int_equal(lcm_test_note_kind.version(st), 1);
    struct seen seen = { 0 };
    int h = lcm_store_subscribe(b.s, on_change, &seen);
    assert_true(h > 0);
    for (int round = 0; round < 5; round++) {
        char id[16];
        snprintf(id, sizeof(id), "g%d", round);
        double t0 = th_now_ms();
        assert_int_equal(commit_set(&a, id, 0, "{\"status\":\"ready\"}", NULL), 0);
        while (!lcm_store_get(b.s, "note", id) && th_now_ms() - t0 < 1000)
            event_base_loop(E.base, EVLOOP_ONCE);
        double dt = th_now_ms() - t0;
        assert_non_null(lcm_store_get(b.s, "note", id));
        assert_true(dt < 100.0);
    }
    assert_int_equal(commit_set(&a, "f1", 1, "{\"status\":\"ready\"}", NULL), 0);
    double t0 = th_now_ms();
    while (th_now_ms() - t0 < 1000 &&
           lcm_test_note_kind.version(lcm_store_get(b.s, "note", "f1")) != 2)
        event_base_loop(E.base, EVLOOP_ONCE);
    assert_int_equal(lcm_test_note_kind.version(lcm_store_get(b.s, "note", "f1")), 2);
    assert_int_equal(seen.n, 6);
    assert_string_equal(seen.last_type, "note.set");
    assert_string_equal(seen.feed_id, lcm_store_feed_position(b.s));
    assert_int_equal(lcm_store_count(b.s, "note"), 6);
    /* a also sees b's writes */
    assert_int_equal(commit_set(&b, "f1", 2, "{\"by\":\"b\"}", NULL), 0);
    t0 = th_now_ms();
    while (th_now_ms() - t0 < 1000 &&
           lcm_test_note_kind.version(lcm_store_get(a.s, "note", "f1")) != 3)
        event_base_loop(E.base, EVLOOP_ONCE);
    assert_int_equal(lcm_test_note_kind.version(lcm_store_get(a.s, "note", "f1")), 3);
    lcm_store_unsubscribe(b.s, h);
    inst_close(&a);
    inst_close(&b);
}

/* ---- malformed entries ---------------------------------------------------------------- */

static void test_malformed_entries(void **state)
{
    (void)state;
    struct inst a, b;
    inst_open(&a, 1);
    inst_open(&b, 1);
    inst_start(&a);
    inst_start(&b);
    lcm_log_set_level(LCM_LOG_ERROR);   /* the skips are logged at warn */
    static const char *junk[] = {
        "XADD lcm:feed * hello world",
        "XADD lcm:feed * kind note id m1 type note.set version 1 at x data notjson",
        "XADD lcm:feed * kind note id m1 type note.set version -4 at x data {}",
        "XADD lcm:feed * kind note id m1 type note.set version 1 version 1 at x data {}",
        "XADD lcm:feed * kind ../../x id m1 type note.set version 1 at x data {}",
        "XADD lcm:feed * kind nope id m1 type note.set version 1 at x data {}",
        "XADD lcm:feed * kind note id m1 type note.bogus version 1 at x data {}",
        "XADD lcm:feed * kind note id m1 type note.set version 99999999999999999999 at x data {}",
        "XADD lcm:feed * kind note id m1 type note.set version 1 at x data []",
    };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
        freeReplyObject(th_cmd(E.sync, junk[i]));
    /* binary junk with an embedded NUL */
    freeReplyObject(th_cmd(E.sync, "XADD lcm:feed * kind note id m1 type %b version 1 at x data {}",
                           "a\0b", (size_t)3));
    /* a real write after the junk still converges on b */
    assert_int_equal(commit_set(&a, "ok1", 0, "{\"status\":\"fine\"}", NULL), 0);
    double t0 = th_now_ms();
    while (!lcm_store_get(b.s, "note", "ok1") && th_now_ms() - t0 < 2000)
        event_base_loop(E.base, EVLOOP_ONCE);
    assert_non_null(lcm_store_get(b.s, "note", "ok1"));
    assert_null(lcm_store_get(b.s, "note", "m1"));
    inst_close(&a);
    inst_close(&b);
}

/* ---- rebuild ------------------------------------------------------------------------- */

/* Canonical text of every hash and index: sorted field/value pairs, sorted members. */
static char *snapshot(void)
{
    size_t cap = 1 << 20, len = 0;
    char *out = malloc(cap);
    out[0] = '\0';
    redisReply *keys = th_cmd(E.sync, "KEYS lcm:*");
    /* sort key names */
    char **names = calloc(keys->elements + 1, sizeof(*names));
    for (size_t i = 0; i < keys->elements; i++)
        names[i] = keys->element[i]->str;
    for (size_t i = 0; i < keys->elements; i++)
        for (size_t j = i + 1; j < keys->elements; j++)
            if (strcmp(names[i], names[j]) > 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
    for (size_t i = 0; i < keys->elements; i++) {
        redisReply *t = th_cmd(E.sync, "TYPE %s", names[i]);
        redisReply *v = NULL;
        if (strcmp(t->str, "hash") == 0)
            v = th_cmd(E.sync, "HGETALL %s", names[i]);
        else if (strcmp(t->str, "set") == 0)
            v = th_cmd(E.sync, "SORT %s ALPHA", names[i]);
        else if (strcmp(t->str, "zset") == 0)
            v = th_cmd(E.sync, "ZRANGE %s 0 -1 WITHSCORES", names[i]);
        if (v) {
            /* pairs for hashes sorted by field, singles otherwise (already ordered) */
            size_t step = strcmp(t->str, "set") == 0 ? 1 : 2;
            size_t n = v->elements / step;
            size_t *ord = calloc(n + 1, sizeof(*ord));
            for (size_t k = 0; k < n; k++)
                ord[k] = k;
            if (strcmp(t->str, "hash") == 0)
                for (size_t k = 0; k < n; k++)
                    for (size_t m = k + 1; m < n; m++)
                        if (strcmp(v->element[ord[k] * 2]->str, v->element[ord[m] * 2]->str) > 0) {
                            size_t tmp = ord[k];
                            ord[k] = ord[m];
                            ord[m] = tmp;
                        }
            len += (size_t)snprintf(out + len, cap - len, "%s %s\n", t->str, names[i]);
            for (size_t k = 0; k < n; k++)
                for (size_t s = 0; s < step; s++)
                    len += (size_t)snprintf(out + len, cap - len, "  %s\n",
                                            v->element[ord[k] * step + s]->str);
            free(ord);
            freeReplyObject(v);
        }
        freeReplyObject(t);
    }
    free(names);
    freeReplyObject(keys);
    return out;
}

static void rebuilt_cb(struct lcm_store *s, int status, const struct lcm_store_rebuild_stats *st,
                       void *ud)
{
    (void)s;
    struct lcm_store_rebuild_stats *out = ud;
    *out = *st;
    if (status != 0)
        out->aggregates = (size_t)-1;
}

static int rebuilt_flag;
static void rebuilt_flag_cb(struct lcm_store *s, int status,
                            const struct lcm_store_rebuild_stats *st, void *ud)
{
    rebuilt_cb(s, status, st, ud);
    rebuilt_flag = status == 0 ? 1 : -1;
}

static void test_rebuild(void **state)
{
    (void)state;
    struct inst a;
    inst_open(&a, 0);
    inst_start(&a);
    char id[16], data[128];
    static const char *const statuses[] = { "pending", "scheduled", "ready", "stopped" };
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof(id), "r%d", i);
        uint64_t v = 0;
        for (int e = 0; e <= i % 5; e++, v++) {
            snprintf(data, sizeof(data), "{\"status\":\"%s\",\"score\":\"%d.5\",\"e%d\":\"x\\\"y\"}",
                     statuses[(i + e) % 4], i * 10 + e, e);
            assert_int_equal(commit_set(&a, id, v, data, NULL), 0);
        }
        if (i % 3 == 0) {
            struct lcm_store_event ev = { "note.unset", "{\"fields\":[\"e0\",\"score\"]}", NULL, "t" };
            struct lcm_store_change c = { &lcm_test_note_kind, id, v, &ev, 1, NULL, 0 };
            struct res x = { 0 };
            char err[256];
            assert_int_equal(lcm_store_commit(a.s, &c, 1, NULL, done_cb, &x, err, sizeof(err)), 0);
            wait_res(&x);
            assert_int_equal(x.status, 0);
        }
    }
    /* one archived aggregate compacted to a snapshot entry: rebuild starts from it */
    assert_int_equal(commit_set(&a, "r4", 5, "{\"status\":\"archived\",\"tail\":\"t\"}", NULL), 0);
    redisReply *r = th_cmd(E.sync, "FCALL lcm_compact 2 lcm:{note:r4} lcm:{note:r4}:events");
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 6);
    freeReplyObject(r);
    r = th_cmd(E.sync, "FCALL lcm_compact 2 lcm:{note:r5} lcm:{note:r5}:events");
    assert_int_equal(r->type, REDIS_REPLY_ERROR);   /* not archived */
    freeReplyObject(r);
    assert_int_equal(sync_int("XLEN %s", "lcm:{note:r4}:events"), 1);
    /* junk in one aggregate stream is skipped by the rebuild */
    freeReplyObject(th_cmd(E.sync, "XADD lcm:{note:r7}:events * garbage 1"));

    char *before = snapshot();
    /* every hash and index goes; plus a stale index that must not survive */
    redisReply *keys = th_cmd(E.sync, "KEYS lcm:*");
    for (size_t i = 0; i < keys->elements; i++) {
        redisReply *t = th_cmd(E.sync, "TYPE %s", keys->element[i]->str);
        if (strcmp(t->str, "stream") != 0 && strncmp(keys->element[i]->str, "lcm:uniq:", 9) != 0)
            freeReplyObject(th_cmd(E.sync, "DEL %s", keys->element[i]->str));
        freeReplyObject(t);
    }
    freeReplyObject(keys);
    freeReplyObject(th_cmd(E.sync, "SADD lcm:idx:note:status:stale r1"));
    assert_int_equal(sync_int("EXISTS %s", "lcm:{note:r1}"), 0);

    struct lcm_store_rebuild_stats st = { 0 };
    rebuilt_flag = 0;
    assert_int_equal(lcm_store_rebuild(a.s, rebuilt_flag_cb, &st), 0);
    assert_int_equal(th_run_until(E.base, &rebuilt_flag, 10000), 0);
    assert_int_equal(rebuilt_flag, 1);
    assert_int_equal(st.aggregates, 40);
    assert_int_equal(st.skipped, 1);
    char *after = snapshot();
    if (strcmp(before, after) != 0)
        fprintf(stderr, "BEFORE:\n%s\nAFTER:\n%s\n", before, after);
    assert_string_equal(before, after);
    free(before);
    free(after);
    inst_close(&a);
}

/* ---- persistence settings ------------------------------------------------------------ */

static void test_aof_on(void **state)
{
    (void)state;
    redisReply *r = th_cmd(E.sync, "CONFIG GET appendonly");
    assert_string_equal(r->element[1]->str, "yes");
    freeReplyObject(r);
    /* the library survives a restart of Redis (it is in the AOF) */
    r = th_cmd(E.sync, "FUNCTION LIST LIBRARYNAME lcm");
    assert_int_equal(r->elements, 1);
    freeReplyObject(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_append_layout, flush),
        cmocka_unit_test_setup(test_concurrent_writers, flush),
        cmocka_unit_test_setup(test_multi_aggregate, flush),
        cmocka_unit_test_setup(test_fencing, flush),
        cmocka_unit_test_setup(test_uniques, flush),
        cmocka_unit_test_setup(test_invalid, flush),
        cmocka_unit_test_setup(test_group_commit, flush),
        cmocka_unit_test_setup(test_group_index_types, flush),
        cmocka_unit_test_setup(test_feed_follow, flush),
        cmocka_unit_test_setup(test_malformed_entries, flush),
        cmocka_unit_test_setup(test_rebuild, flush),
        cmocka_unit_test(test_aof_on),
    };
    return cmocka_run_group_tests_name("store", tests, setup, teardown);
}
