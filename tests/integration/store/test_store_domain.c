/* Integration test of the store with the real domain kinds (host/domain: template,
 * definition, worker, session) against redis-server: aggregates built by the domain's
 * command functions and committed through lcm_store_commit (placements as one commit over a
 * session and its worker), then rebuilt from the streams and compared byte for byte, both
 * after the hashes were dropped and over the existing hashes; a second store loads the same
 * aggregates from the hashes. Also the commit path's field cache: commits diff against the
 * fields this store last wrote, and a change folded from another writer through lcm:feed
 * (or an eviction) must not leave a stale diff (every hash equals its state's fields). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/redis.h"
#include "domain/definition.h"
#include "domain/events.h"
#include "domain/session.h"
#include "domain/session_time.h"
#include "domain/template.h"
#include "domain/worker.h"
#include "harness.h"
#include "store/store.h"
#include "store/store_int.h"   /* the field cache's budget and bytes (test only) */

#define BY "test:store_domain"
#define NWORKERS 3
#define NSESSIONS 8

static struct th_redis srv;
static struct event_base *base;
static redisContext *sync_c;

struct res {
    int done, status;
    char msg[256];
};

static void done_cb(const struct lcm_store_result *r, void *ud)
{
    struct res *x = ud;
    x->done = 1;
    x->status = r->status;
    snprintf(x->msg, sizeof(x->msg), "%s", r->message);
}

/* Commits up to 4 changes, each from a list of new events, and waits for the result. */
struct chg {
    const struct lcm_kind *kind;
    const char *id;
    uint64_t version;
    struct lcm_events *evs;
};

static int commit(struct lcm_store *s, const struct chg *c, size_t n)
{
    struct lcm_store_event se[4][8];
    char *js[4][8];
    struct lcm_store_change ch[4];
    memset(js, 0, sizeof(js));
    for (size_t i = 0; i < n; i++) {
        assert_true(c[i].evs->n > 0 && c[i].evs->n <= 8);
        for (size_t e = 0; e < c[i].evs->n; e++) {
            js[i][e] = cJSON_PrintUnformatted(c[i].evs->v[e].data);
            se[i][e] = (struct lcm_store_event){ c[i].evs->v[e].type, js[i][e], NULL, BY };
        }
        ch[i] = (struct lcm_store_change){ c[i].kind, c[i].id, c[i].version, se[i],
                                           c[i].evs->n, NULL, 0 };
    }
    struct res x = { 0 };
    char err[256];
    int rc = lcm_store_commit(s, ch, n, NULL, done_cb, &x, err, sizeof(err));
    for (size_t i = 0; i < n; i++) {
        for (size_t e = 0; e < c[i].evs->n; e++)
            cJSON_free(js[i][e]);
        lcm_events_clear(c[i].evs);
    }
    if (rc < 0) {
        fprintf(stderr, "commit: %s\n", err);
        return rc;
    }
    assert_int_equal(th_run_until(base, &x.done, 10000), 0);
    if (x.status)
        fprintf(stderr, "commit: %s\n", x.msg);
    return x.status;
}

static int commit1(struct lcm_store *s, const struct lcm_kind *k, const char *id, uint64_t v,
                   struct lcm_events *evs)
{
    struct chg c = { k, id, v, evs };
    return commit(s, &c, 1);
}

static void ready_cb(struct lcm_store *s, int status, void *ud)
{
    (void)s;
    *(int *)ud = status == 0 ? 1 : -1;
}

static struct lcm_store *open_store_opt(struct lcm_redis **r, int follow)
{
    char err[256];
    *r = th_connect(base, srv.url);
    assert_non_null(*r);
    struct lcm_store_opts o = { .no_follow = !follow };   /* kinds: the domain's */
    struct lcm_store *s = lcm_store_new(base, *r, NULL, &o, err, sizeof(err));
    assert_non_null(s);
    int ready = 0;
    assert_int_equal(lcm_store_start(s, ready_cb, &ready), 0);
    assert_int_equal(th_run_until(base, &ready, 10000), 0);
    assert_int_equal(ready, 1);
    return s;
}

static struct lcm_store *open_store(struct lcm_redis **r)
{
    return open_store_opt(r, 0);
}

static void expect_ok(int derr_rc, const struct lcm_derr *e)
{
    if (derr_rc)
        fprintf(stderr, "domain command refused: %s: %s\n", e->field, e->message);
    assert_int_equal(derr_rc, 0);
}

static void seed(struct lcm_store *s)
{
    struct lcm_events ev;
    struct lcm_derr e;
    int64_t now = (int64_t)time(NULL);
    lcm_events_init(&ev);

    cJSON *tpl = cJSON_Parse(
        "{\"name\":\"t1\",\"instance_type\":\"m5zn.metal\",\"ami_name_pattern\":\"cml-*\","
        "\"capacity\":{\"cpu_cores\":48,\"memory_gb\":192,\"storage_gb\":256,\"max_nodes\":200},"
        "\"cost_per_hour\":3.96,\"enabled\":true,\"region\":\"eu-west-1\","
        "\"license_type\":\"enterprise\"}");
    memset(&e, 0, sizeof(e));
    expect_ok(lcm_template_cmd_create(tpl, BY, now, &ev, &e), &e);
    cJSON_Delete(tpl);
    assert_int_equal(commit1(s, &lcm_kind_template, "t1", 0, &ev), 0);

    cJSON *def = cJSON_Parse(
        "{\"name\":\"lab-d1\",\"version\":\"1.0.0\",\"topology_uri\":\"s3://labs/d1.yaml\","
        "\"node_count\":5,\"resource_requirements\":{\"cpu_cores\":8,\"memory_gb\":16,"
        "\"storage_gb\":20,\"cml_version_min\":\"2.9.0\",\"node_definitions\":[\"iosv\"]},"
        "\"lds_enabled\":false}");
    expect_ok(lcm_definition_cmd_create("d1", def, BY, now, &ev, &e), &e);
    cJSON_Delete(def);
    assert_int_equal(commit1(s, &lcm_kind_definition, "d1", 0, &ev), 0);
    const struct lcm_definition *d = lcm_store_get(s, "definition", "d1");
    assert_non_null(d);
    expect_ok(lcm_definition_cmd_transition(d, LCM_DEF_ACTIVE, "seed", BY, now, &ev, &e), &e);
    assert_int_equal(commit1(s, &lcm_kind_definition, "d1", d->version, &ev), 0);
    d = lcm_store_get(s, "definition", "d1");   /* the commit installed a new state */
    assert_int_equal(d->status, LCM_DEF_ACTIVE);

    char wid[NWORKERS][16];
    for (int i = 0; i < NWORKERS; i++) {
        snprintf(wid[i], sizeof(wid[i]), "w%d", i);
        const struct lcm_template *t = lcm_store_get(s, "template", "t1");
        struct lcm_worker_create c = { .id = wid[i], .region = "eu-west-1",
                                       .origin = LCM_ORIGIN_MANUAL };
        expect_ok(lcm_worker_cmd_create(&c, t, BY, now, &ev, &e), &e);
        assert_int_equal(commit1(s, &lcm_kind_worker, wid[i], 0, &ev), 0);
        static const int path[] = { LCM_WK_PROVISIONING, LCM_WK_STARTING, LCM_WK_RUNNING };
        for (size_t p = 0; p < 3; p++) {
            const struct lcm_worker *w = lcm_store_get(s, "worker", wid[i]);
            expect_ok(lcm_worker_cmd_transition(w, path[p], "seed", BY, now, &ev, &e), &e);
            assert_int_equal(commit1(s, &lcm_kind_worker, wid[i], w->version, &ev), 0);
        }
        const struct lcm_worker *w = lcm_store_get(s, "worker", wid[i]);
        const char *nds[] = { "iosv", "csr1000v" };
        expect_ok(lcm_worker_cmd_set_cml(w, "2.9.1", 1, nds, 2, BY, now, &ev, &e), &e);
        assert_int_equal(commit1(s, &lcm_kind_worker, wid[i], w->version, &ev), 0);
    }

    struct lcm_time_params tp;
    lcm_time_params_default(&tp);
    for (int i = 0; i < NSESSIONS; i++) {
        char sid[16];
        snprintf(sid, sizeof(sid), "s%d", i);
        struct lcm_session_create c = { .id = sid, .definition_id = "d1", .owner = "learner" };
        expect_ok(lcm_session_cmd_create(&c, d, &tp, BY, now, &ev, &e), &e);
        assert_int_equal(commit1(s, &lcm_kind_session, sid, 0, &ev), 0);
        if (i >= 5)
            continue;   /* some stay pending */
        /* Placement: capacity on the worker and the session's schedule in one commit. */
        const struct lcm_session *ss = lcm_store_get(s, "session", sid);
        const struct lcm_worker *w = lcm_store_get(s, "worker", wid[i % NWORKERS]);
        struct lcm_capacity req = { 8, 16, 20, 5 };
        struct lcm_events wev;
        lcm_events_init(&wev);
        expect_ok(lcm_worker_cmd_allocate(w, sid, &req, BY, now, &wev, &e), &e);
        expect_ok(lcm_session_cmd_schedule(ss, wid[i % NWORKERS], "placed", BY, now, &ev, &e),
                  &e);
        struct chg two[2] = { { &lcm_kind_session, sid, ss->version, &ev },
                              { &lcm_kind_worker, wid[i % NWORKERS], w->version, &wev } };
        assert_int_equal(commit(s, two, 2), 0);
        lcm_events_clear(&wev);
    }
    /* one worker drains */
    const struct lcm_worker *w = lcm_store_get(s, "worker", "w2");
    expect_ok(lcm_worker_cmd_drain(w, "seed", 0, BY, now, &ev, &e), &e);
    assert_int_equal(commit1(s, &lcm_kind_worker, "w2", w->version, &ev), 0);
    lcm_events_clear(&ev);
}

static int rb_flag;
static struct lcm_store_rebuild_stats rb_st;
static void rebuilt(struct lcm_store *s, int status, const struct lcm_store_rebuild_stats *st,
                    void *ud)
{
    (void)s;
    (void)ud;
    rb_st = *st;
    rb_flag = status == 0 ? 1 : -1;
}

static void rebuild_and_compare(struct lcm_store *s, const char *before, int drop_hashes)
{
    if (drop_hashes) {
        redisReply *keys = th_cmd(sync_c, "KEYS lcm:*");
        for (size_t i = 0; i < keys->elements; i++) {
            redisReply *t = th_cmd(sync_c, "TYPE %s", keys->element[i]->str);
            if (strcmp(t->str, "stream") != 0 &&
                strncmp(keys->element[i]->str, "lcm:uniq:", 9) != 0)
                freeReplyObject(th_cmd(sync_c, "DEL %s", keys->element[i]->str));
            freeReplyObject(t);
        }
        freeReplyObject(keys);
    }
    else {
        /* existing hashes that differ from the streams: a changed value, an extra field,
         * a missing field; the others are equal and left alone */
        freeReplyObject(th_cmd(sync_c, "HSET lcm:{session:s1} status bogus extra 1"));
        freeReplyObject(th_cmd(sync_c, "HDEL lcm:{worker:w1} version"));
        freeReplyObject(th_cmd(sync_c, "HSET lcm:{definition:d1} version 99"));
    }
    /* a stale index entry that the rebuild must drop */
    freeReplyObject(th_cmd(sync_c, "SADD lcm:idx:session:status:bogus s1"));
    rb_flag = 0;
    assert_int_equal(lcm_store_rebuild(s, rebuilt, NULL), 0);
    assert_int_equal(th_run_until(base, &rb_flag, 20000), 0);
    assert_int_equal(rb_flag, 1);
    assert_int_equal(rb_st.skipped, 0);
    assert_int_equal(rb_st.aggregates, 2 + NWORKERS + NSESSIONS);
    char *after = th_snapshot(sync_c);
    if (strcmp(before, after) != 0)
        fprintf(stderr, "BEFORE:\n%s\nAFTER:\n%s\n", before, after);
    assert_string_equal(before, after);
    free(after);
}

static void test_domain_rebuild(void **state)
{
    (void)state;
    struct lcm_redis *r;
    struct lcm_store *s = open_store(&r);
    seed(s);
    char *before = th_snapshot(sync_c);
    /* the domain's indexes really are there (not an empty comparison) */
    assert_non_null(strstr(before, "hash lcm:{session:s0}"));
    assert_non_null(strstr(before, "hash lcm:{worker:w1}"));
    assert_non_null(strstr(before, "lcm:idx:session:"));
    assert_non_null(strstr(before, "lcm:idx:worker:"));

    rebuild_and_compare(s, before, 1);   /* from the streams alone */
    rebuild_and_compare(s, before, 0);   /* over existing hashes, some of them stale */

    /* a second store loads the same aggregates from the hashes */
    struct lcm_redis *r2;
    struct lcm_store *s2 = open_store(&r2);
    assert_int_equal(lcm_store_count(s2, "session"), NSESSIONS);
    assert_int_equal(lcm_store_count(s2, "worker"), NWORKERS);
    const struct lcm_session *a = lcm_store_get(s, "session", "s3");
    const struct lcm_session *b = lcm_store_get(s2, "session", "s3");
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->version, b->version);
    assert_string_equal(a->worker_id, b->worker_id);
    cJSON *ja = lcm_kind_worker.to_json(lcm_store_get(s, "worker", "w0"));
    cJSON *jb = lcm_kind_worker.to_json(lcm_store_get(s2, "worker", "w0"));
    char *ta = cJSON_PrintUnformatted(ja), *tb = cJSON_PrintUnformatted(jb);
    assert_string_equal(ta, tb);
    cJSON_free(ta);
    cJSON_free(tb);
    cJSON_Delete(ja);
    cJSON_Delete(jb);
    free(before);
    lcm_redis_free(r2);
    lcm_store_free(s2);
    lcm_redis_free(r);
    lcm_store_free(s);
}

/* The hash of kind:id in Redis equals the fields of the store's state + version. */
struct fl { char text[16384]; size_t len; };
static void fl_emit(const char *f, const char *v, void *ud)
{
    struct fl *x = ud;
    int n = snprintf(x->text + x->len, sizeof(x->text) - x->len, "%s=%s\n", f, v);
    assert_true(n > 0 && (size_t)n < sizeof(x->text) - x->len);
    x->len += (size_t)n;
}
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}
/* Sorted "name=value" lines. */
static void sort_lines(char *text)
{
    char *lines[256];
    size_t n = 0;
    for (char *p = strtok(text, "\n"); p; p = strtok(NULL, "\n")) {
        assert_true(n < 256);
        lines[n++] = strdup(p);
    }
    qsort(lines, n, sizeof(*lines), cmp_str);
    text[0] = 0;
    for (size_t i = 0; i < n; i++) {
        strcat(text, lines[i]);
        strcat(text, "\n");
        free(lines[i]);
    }
}
static void assert_hash_matches(struct lcm_store *s, const struct lcm_kind *k, const char *id)
{
    const void *st = lcm_store_get(s, k->name, id);
    assert_non_null(st);
    struct fl want = { .len = 0 }, got = { .len = 0 };
    k->fields(st, fl_emit, &want);
    char v[32];
    snprintf(v, sizeof(v), "%llu", (unsigned long long)k->version(st));
    fl_emit("version", v, &want);
    redisReply *h = th_cmd(sync_c, "HGETALL lcm:{%s:%s}", k->name, id);
    assert_int_equal(h->type, REDIS_REPLY_ARRAY);
    for (size_t i = 0; i + 1 < h->elements; i += 2)
        fl_emit(h->element[i]->str, h->element[i + 1]->str, &got);
    freeReplyObject(h);
    sort_lines(want.text);
    sort_lines(got.text);
    if (strcmp(want.text, got.text) != 0)
        fprintf(stderr, "%s:%s\nSTATE:\n%s\nHASH:\n%s\n", k->name, id, want.text, got.text);
    assert_string_equal(want.text, got.text);
}

static void metrics(struct lcm_store *s, const char *wid, double cpu)
{
    struct lcm_events ev;
    struct lcm_derr e;
    lcm_events_init(&ev);
    const struct lcm_worker *w = lcm_store_get(s, "worker", wid);
    assert_non_null(w);
    expect_ok(lcm_worker_cmd_metrics(w, cpu, 20.5, 0, BY, (int64_t)time(NULL), &ev, &e), &e);
    assert_int_equal(commit1(s, &lcm_kind_worker, wid, w->version, &ev), 0);
}

static void test_commit_field_cache(void **state)
{
    (void)state;
    freeReplyObject(th_cmd(sync_c, "FLUSHALL"));
    struct lcm_redis *ra, *rb;
    struct lcm_store *a = open_store_opt(&ra, 1);   /* follows lcm:feed */
    seed(a);
    assert_true(a->fcache_bytes > 0);   /* the seed's commits left their fields cached */
    metrics(a, "w0", 10);
    assert_hash_matches(a, &lcm_kind_worker, "w0");

    /* another writer changes w0; a folds it from the feed (its cached fields are stale) */
    struct lcm_store *b = open_store(&rb);
    metrics(b, "w0", 50);
    uint64_t want = ((const struct lcm_worker *)lcm_store_get(b, "worker", "w0"))->version;
    double t0 = th_now_ms();
    while (((const struct lcm_worker *)lcm_store_get(a, "worker", "w0"))->version != want) {
        assert_true(th_now_ms() - t0 < 10000);
        event_base_loop(base, EVLOOP_ONCE);
    }
    /* back to the value a wrote last: only a diff against the folded state sends it */
    metrics(a, "w0", 10);
    assert_hash_matches(a, &lcm_kind_worker, "w0");
    assert_hash_matches(b, &lcm_kind_session, "s0");

    /* a budget of two and a half workers: commits round the three, evicting each other */
    metrics(a, "w0", 11);
    const struct lcm_store_fset *f0 =
        lcm_store_agg_find(lcm_store_kmap_find(a, "worker"), "w0")->fields;
    assert_non_null(f0);
    size_t wb = sizeof(*f0) + f0->cap + f0->capn * sizeof(*f0->off);
    a->fcache_max = wb * 5 / 2;
    metrics(a, "w0", 12);
    assert_true(a->fcache_bytes <= a->fcache_max);
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < NWORKERS; i++) {
            char wid[16];
            snprintf(wid, sizeof(wid), "w%d", i);
            metrics(a, wid, 30 + round * 10 + i);
            assert_true(a->fcache_bytes <= a->fcache_max);
            assert_hash_matches(a, &lcm_kind_worker, wid);
        }
    size_t n = 0, nw = 0, bytes = 0;
    for (struct lcm_store_agg *x = a->lru_head; x; x = x->lru_next) {
        assert_non_null(x->fields);
        n++;
        nw += strncmp(x->id, "w", 1) == 0;
        bytes += x->fields->cap;
    }
    assert_true(n >= 1 && nw >= 1 && nw <= 2);   /* three workers do not fit */
    assert_true(bytes <= a->fcache_bytes);
    assert_ptr_equal(a->lru_head, lcm_store_agg_find(lcm_store_kmap_find(a, "worker"), "w2"));
    a->fcache_max = LCM_STORE_FCACHE_MAX;
    for (int i = 0; i < NSESSIONS; i++) {
        char sid[16];
        snprintf(sid, sizeof(sid), "s%d", i);
        assert_hash_matches(a, &lcm_kind_session, sid);
    }
    lcm_redis_free(rb);
    lcm_store_free(b);
    lcm_redis_free(ra);
    lcm_store_free(a);
}

static int setup(void **state)
{
    (void)state;
    lcm_log_set_level(LCM_LOG_ERROR);
    if (th_redis_start(&srv, NULL) < 0)
        return -1;
    base = event_base_new();
    sync_c = th_sync(&srv);
    return base && sync_c ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    redisFree(sync_c);
    event_base_free(base);
    th_redis_stop(&srv);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_domain_rebuild),
        cmocka_unit_test(test_commit_field_cache),
    };
    return cmocka_run_group_tests_name("store_domain", tests, setup, teardown);
}
