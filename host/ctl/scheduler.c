/* The scheduler's cycle: candidates (pending, in the lead window, not backing off, not in
 * flight) soonest first → planner → one atomic store write per worker touched (its
 * allocations + its sessions' scheduled events, with expected versions) → bookkeeping of
 * unplaced sessions (backoff, rejection counts, lcm:sched:retry in Redis, metrics, log). */
#include "scheduler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/redis.h"
#include "domain/definition.h"
#include "domain/session.h"
#include "domain/session_time.h"
#include "domain/worker.h"
#include "scheduler_index.h"

#define LOG_MAX 200
#define RETRY_KEY "lcm:sched:retry"

/* ---- a small string-keyed map (session/worker ids) ---- */

struct ment {
    char *key;
    struct ment *next;
    uint32_t attempts;      /* retry: failed attempts in a row */
    int64_t next_ms;        /* retry: not before (unix ms) */
    uint64_t epoch;         /* retry: fleet epoch at the failure */
    uint32_t sig;           /* retry: hash of the last counts recorded */
};

struct smap {
    struct ment **b;
    size_t nb, n;
};

static unsigned long shash(const char *s)
{
    unsigned long h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h;
}

static struct ment *smap_get(const struct smap *m, const char *k)
{
    if (!m->nb)
        return NULL;
    for (struct ment *e = m->b[shash(k) % m->nb]; e; e = e->next)
        if (!strcmp(e->key, k))
            return e;
    return NULL;
}

static struct ment *smap_put(struct smap *m, const char *k)
{
    struct ment *e = smap_get(m, k);
    if (e)
        return e;
    if (m->n >= m->nb) {
        size_t nb = m->nb ? m->nb * 2 : 256;
        struct ment **b = calloc(nb, sizeof *b);
        if (!b)
            return NULL;
        for (size_t i = 0; i < m->nb; i++)
            for (struct ment *x = m->b[i], *nx; x; x = nx) {
                nx = x->next;
                size_t h = shash(x->key) % nb;
                x->next = b[h];
                b[h] = x;
            }
        free(m->b);
        m->b = b;
        m->nb = nb;
    }
    e = calloc(1, sizeof *e);
    if (!e || !(e->key = strdup(k))) {
        free(e);
        return NULL;
    }
    size_t h = shash(k) % m->nb;
    e->next = m->b[h];
    m->b[h] = e;
    m->n++;
    return e;
}

static void smap_del(struct smap *m, const char *k)
{
    if (!m->nb)
        return;
    for (struct ment **pp = &m->b[shash(k) % m->nb]; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->key, k)) {
            struct ment *x = *pp;
            *pp = x->next;
            free(x->key);
            free(x);
            m->n--;
            return;
        }
}

static void smap_clear(struct smap *m)
{
    for (size_t i = 0; i < m->nb; i++)
        for (struct ment *x = m->b[i], *nx; x; x = nx) {
            nx = x->next;
            free(x->key);
            free(x);
        }
    free(m->b);
    memset(m, 0, sizeof *m);
}

/* ---- state ---- */

struct commit_ctx {
    struct lcm_sched *s;          /* NULL once detached */
    struct commit_ctx *prev, *next;
    char *worker_id;
    char **sessions;
    size_t n;
    double t0;
};

/* Placements decided by a cycle, waiting to be submitted. A big cycle submits them in
 * slices with a turn of the loop in between, so Redis works on the first commits while the
 * next ones are built. Held by id and version (the read models may move between slices):
 * an aggregate that changed meanwhile drops its placements, which the next cycle retries.
 * Their sessions and workers are marked busy from the decision on. */
struct plan_sess {
    char *id;
    uint64_t version;
    struct lcm_capacity need;
};
struct plan_wk {
    char *id;
    uint64_t version;
    struct plan_sess *ss;
    size_t n;
};
struct plan {
    struct plan_wk *wk;
    size_t n, next;
    int64_t now;
};

#define SLICE_SESSIONS 512

struct lcm_sched {
    struct lcm_sched_env env;
    struct lcm_sched_cfg cfg;
    char by[64];
    struct smap retry;            /* session id → backoff state */
    struct smap busy_sessions;    /* commits in flight */
    struct smap busy_workers;
    struct commit_ctx *commits;
    uint64_t fleet_epoch;
    struct lcm_sched_stats st;
    cJSON *log[LOG_MAX];
    size_t log_head, log_n;
    struct lcm_sched_decision dec;   /* reused across decisions */
    struct plan plan;                /* placements not submitted yet */
    struct lcm_sched_index *idx;     /* pending sessions by start, sessions per worker */
};

static double mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int64_t wall_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void lcm_sched_cfg_default(struct lcm_sched_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->lead_window_minutes = 35;
    c->shortlist = 32;
    c->backoff_max_s = 60;
    c->cycle_budget_ms = 250;
    c->mode = LCM_SCHED_POLICY_ENGINE;
}

void lcm_sched_cfg_from_config(const struct lcm_config *cfg, struct lcm_sched_cfg *c)
{
    lcm_sched_cfg_default(c);
    c->lead_window_minutes = (int)lcm_config_int(cfg, "lead_window_minutes");
    c->shortlist = (size_t)lcm_config_int(cfg, "shortlist_size");
    c->backoff_max_s = (int)lcm_config_int(cfg, "sched_backoff_max_s");
}

static void declare_metrics(struct lcm_metrics *m)
{
    if (!m)
        return;
    lcm_metrics_declare(m, "lcm_scheduler_placements_total", LCM_METRIC_COUNTER,
                        "Sessions placed (session.scheduled committed with the worker's capacity)");
    lcm_metrics_declare(m, "lcm_scheduler_unplaced_total", LCM_METRIC_COUNTER,
                        "Placement attempts that found no worker");
    lcm_metrics_declare(m, "lcm_scheduler_rejections_total", LCM_METRIC_COUNTER,
                        "Workers rejected, by the hard rule they broke, in attempts that found no worker");
    lcm_metrics_declare(m, "lcm_scheduler_conflicts_total", LCM_METRIC_COUNTER,
                        "Placement commits refused by the store (version conflict or stale fence)");
    lcm_metrics_declare(m, "lcm_scheduler_queue_depth", LCM_METRIC_GAUGE,
                        "Pending sessions inside the lead window at the last cycle");
    lcm_metrics_declare(m, "lcm_scheduler_cycle_seconds", LCM_METRIC_HISTOGRAM,
                        "Time a scheduler cycle spends planning (commits complete later)");
    lcm_metrics_set(m, "lcm_scheduler_queue_depth", NULL, 0);
}

struct lcm_sched *lcm_sched_new(const struct lcm_sched_env *env, const struct lcm_sched_cfg *cfg)
{
    struct lcm_sched *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->env = *env;
    if (cfg)
        s->cfg = *cfg;
    else
        lcm_sched_cfg_default(&s->cfg);
    if (!s->cfg.shortlist)
        s->cfg.shortlist = 32;
    if (s->cfg.backoff_max_s <= 0)
        s->cfg.backoff_max_s = 60;
    snprintf(s->by, sizeof s->by, "%s", s->cfg.by ? s->cfg.by : "controller:scheduler");
    s->cfg.by = s->by;
    lcm_sched_decision_init(&s->dec);
    if (!(s->idx = lcm_sched_index_new(env->store))) {
        free(s);
        return NULL;
    }
    declare_metrics(env->metrics);
    return s;
}

static void plan_wk_free(struct plan_wk *pw)
{
    for (size_t i = 0; i < pw->n; i++)
        free(pw->ss[i].id);
    free(pw->ss);
    free(pw->id);
    memset(pw, 0, sizeof *pw);
}

/* Forgets the placements not submitted yet (their sessions are planned again later). */
static void plan_drop(struct lcm_sched *s)
{
    for (size_t k = s->plan.next; k < s->plan.n; k++) {
        struct plan_wk *pw = &s->plan.wk[k];
        smap_del(&s->busy_workers, pw->id);
        for (size_t i = 0; i < pw->n; i++)
            smap_del(&s->busy_sessions, pw->ss[i].id);
    }
    for (size_t k = 0; k < s->plan.n; k++)
        plan_wk_free(&s->plan.wk[k]);
    free(s->plan.wk);
    memset(&s->plan, 0, sizeof s->plan);
}

void lcm_sched_free(struct lcm_sched *s)
{
    if (!s)
        return;
    plan_drop(s);
    for (struct commit_ctx *c = s->commits; c; c = c->next)
        c->s = NULL;
    smap_clear(&s->retry);
    smap_clear(&s->busy_sessions);
    smap_clear(&s->busy_workers);
    for (size_t i = 0; i < LOG_MAX; i++)
        cJSON_Delete(s->log[i]);
    lcm_sched_decision_free(&s->dec);
    free(s->dec.shortlist);
    lcm_sched_index_free(s->idx);
    free(s);
}

/* ---- decision log ---- */

void lcm_sched_log(struct lcm_sched *s, cJSON *e)
{
    if (!e)
        return;
    if (!cJSON_GetObjectItemCaseSensitive(e, "at")) {
        char ts[40];
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
        cJSON_AddStringToObject(e, "at", ts);
    }
    size_t slot = (s->log_head + s->log_n) % LOG_MAX;
    if (s->log_n == LOG_MAX) {
        cJSON_Delete(s->log[s->log_head]);
        s->log[s->log_head] = NULL;
        s->log_head = (s->log_head + 1) % LOG_MAX;
        slot = (s->log_head + s->log_n - 1) % LOG_MAX;
    } else {
        s->log_n++;
    }
    s->log[slot] = e;
}

static void log_decision(struct lcm_sched *s, const char *kind, const char *session_id,
                         const char *worker_id, const char *reason, const uint32_t *counts)
{
    cJSON *e = cJSON_CreateObject();
    if (!e)
        return;
    cJSON_AddStringToObject(e, "decision", kind);
    if (session_id)
        cJSON_AddStringToObject(e, "session_id", session_id);
    if (worker_id)
        cJSON_AddStringToObject(e, "worker_id", worker_id);
    if (reason)
        cJSON_AddStringToObject(e, "reason", reason);
    if (counts)
        cJSON_AddItemToObject(e, "rejections", lcm_sched_counts_json(counts));
    lcm_sched_log(s, e);
}

/* ---- Redis-kept retry counters ---- */

static void retry_loaded(struct lcm_redis *r, redisReply *rep, void *ud)
{
    struct lcm_sched *s = ud;
    (void)r;
    if (!rep || rep->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        const redisReply *k = rep->element[i], *v = rep->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        unsigned att = 0;
        long long nx = 0;
        if (sscanf(v->str, "%u %lld", &att, &nx) != 2)
            continue;
        struct ment *e = smap_put(&s->retry, k->str);
        if (e && e->attempts < att) {
            e->attempts = att;
            e->next_ms = nx;
            e->epoch = s->fleet_epoch;
        }
    }
}

void lcm_sched_start(struct lcm_sched *s)
{
    s->fleet_epoch++;
    lcm_sched_index_resync(s->idx);
    if (s->env.redis) {
        const char *argv[] = { "HGETALL", RETRY_KEY };
        lcm_redis_commandv(s->env.redis, retry_loaded, s, 2, argv, NULL);
    }
}

void lcm_sched_stop(struct lcm_sched *s)
{
    /* in-flight commits finish (or are fenced); their callbacks clear the marks. What was
     * not submitted yet is forgotten: the next leader plans it again. */
    plan_drop(s);
}

int lcm_sched_note_change(struct lcm_sched *s, const char *kind, const char *type)
{
    if (!strcmp(kind, "worker")) {
        /* anything that can make room or change eligibility ends every backoff */
        if (strcmp(type, "worker.metrics") && strcmp(type, "worker.allocated") &&
            strcmp(type, "worker.ports_allocated"))
            s->fleet_epoch++;
        return 1;
    }
    if (!strcmp(kind, "session")) {
        if (!strcmp(type, "session.created"))
            return 1;
        /* a session leaving a worker frees capacity (released on the worker as well) */
        return 0;
    }
    if (!strcmp(kind, "definition"))
        return 1;
    return 0;
}

size_t lcm_sched_each_pending(struct lcm_sched *s, int64_t start_max,
                              int (*fn)(const struct lcm_session *ss, void *ud), void *ud)
{
    return lcm_sched_index_each_pending(s->idx, start_max, fn, ud);
}

size_t lcm_sched_worker_sessions(struct lcm_sched *s, const char *worker_id)
{
    return lcm_sched_index_worker_sessions(s->idx, worker_id);
}

int lcm_sched_worker_busy(const struct lcm_sched *s, const char *worker_id)
{
    return smap_get(&s->busy_workers, worker_id) != NULL;
}

int lcm_sched_is_unplaced(const struct lcm_sched *s, const char *session_id)
{
    const struct ment *e = smap_get(&s->retry, session_id);
    return e && e->attempts > 0;
}

void lcm_sched_get_stats(const struct lcm_sched *s, struct lcm_sched_stats *st)
{
    *st = s->st;
    st->inflight_sessions = s->busy_sessions.n;
}

/* ---- the cycle ---- */

struct cand {
    int64_t key;
    const struct lcm_session *s;
};

struct collect_ctx {
    struct lcm_sched *s;
    struct cand *v;
    size_t n, cap;
    int64_t now;
    struct lcm_time_params tp;
    size_t depth;
    int all;                      /* availability: ignore backoff and in-flight marks */
    int64_t win_start, win_end;   /* availability: only sessions overlapping this window */
    int oom;
};

static int collect(const char *id, const void *state, void *ud)
{
    struct collect_ctx *c = ud;
    const struct lcm_session *ss = state;
    (void)id;
    if (c->all) {
        int64_t st = ss->start ? ss->start : ss->created_at;
        if (ss->status != LCM_SS_PENDING || lcm_session_is_expired(ss, c->now, &c->tp) ||
            st >= c->win_end || (ss->end && ss->end <= c->win_start))
            return 0;
    } else {
        if (ss->status != LCM_SS_PENDING || !lcm_session_in_lead_window(ss, c->now, &c->tp) ||
            lcm_session_is_expired(ss, c->now, &c->tp))
            return 0;
        c->depth++;
        if (smap_get(&c->s->busy_sessions, ss->id))
            return 0;
        const struct ment *r = smap_get(&c->s->retry, ss->id);
        if (r && r->attempts && r->epoch == c->s->fleet_epoch && r->next_ms > c->now * 1000)
            return 0;
    }
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 256;
        struct cand *v = realloc(c->v, nc * sizeof *v);
        if (!v) {
            c->oom = 1;
            return 1;
        }
        c->v = v;
        c->cap = nc;
    }
    c->v[c->n].key = ss->start ? ss->start : ss->created_at;
    c->v[c->n].s = ss;
    c->n++;
    return 0;
}

static int collect_pending(const struct lcm_session *ss, void *ud)
{
    return collect(ss->id, ss, ud);
}

static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return strcmp(x->s->id, y->s->id);
}

static int excluded_worker(void *ud, const char *id)
{
    struct lcm_sched *s = ud;
    return smap_get(&s->busy_workers, id) != NULL;
}

/* Placements of one cycle grouped per worker. */
struct place {
    const struct lcm_session *s;
    size_t wk;
    size_t def;
    size_t next;                  /* next placement on the same worker, or SIZE_MAX */
};

static char *event_json(const struct lcm_new_event *e)
{
    return cJSON_PrintUnformatted(e->data);
}

static void commit_done(const struct lcm_store_result *res, void *ud)
{
    struct commit_ctx *c = ud;
    struct lcm_sched *s = c->s;
    if (s) {
        if (c->prev)
            c->prev->next = c->next;
        else
            s->commits = c->next;
        if (c->next)
            c->next->prev = c->prev;
        smap_del(&s->busy_workers, c->worker_id);
        for (size_t i = 0; i < c->n; i++)
            smap_del(&s->busy_sessions, c->sessions[i]);
        s->st.inflight_commits--;
        if (res->status == LCM_STORE_OK) {
            s->st.committed += c->n;
            if (s->env.metrics)
                lcm_metrics_inc(s->env.metrics, "lcm_scheduler_placements_total", NULL, (double)c->n);
            /* drop the retry counters of placed sessions */
            if (s->env.redis) {
                const char **argv = malloc((c->n + 2) * sizeof *argv);
                if (argv) {
                    argv[0] = "HDEL";
                    argv[1] = RETRY_KEY;
                    size_t k = 2;
                    for (size_t i = 0; i < c->n; i++) {
                        if (smap_get(&s->retry, c->sessions[i]))
                            argv[k++] = c->sessions[i];
                    }
                    if (k > 2)
                        lcm_redis_commandv(s->env.redis, NULL, NULL, (int)k, argv, NULL);
                    free(argv);
                }
            }
            for (size_t i = 0; i < c->n; i++) {
                smap_del(&s->retry, c->sessions[i]);
                /* no need to wait for the feed to know they are no longer pending */
                lcm_sched_index_note(s->idx, c->sessions[i],
                                     lcm_store_get(s->env.store, "session", c->sessions[i]));
            }
            for (size_t i = 0; i < c->n; i++)
                log_decision(s, "placed", c->sessions[i], c->worker_id, NULL, NULL);
        } else {
            if (res->status == LCM_STORE_ECONFLICT || res->status == LCM_STORE_EFENCED)
                s->st.conflicts++;
            else
                s->st.failed_commits++;
            if (s->env.metrics)
                lcm_metrics_inc(s->env.metrics, "lcm_scheduler_conflicts_total", NULL, 1);
            lcm_info("scheduler", "msg=\"placement commit refused\" worker=%s sessions=%zu status=%s detail=\"%s\"",
                     c->worker_id, c->n, lcm_store_strerror(res->status), res->message);
            char why[200];
            snprintf(why, sizeof why, "commit refused: %s", lcm_store_strerror(res->status));
            log_decision(s, "commit_refused", c->n ? c->sessions[0] : NULL, c->worker_id, why, NULL);
            if (s->env.wake && res->status != LCM_STORE_EFENCED)
                s->env.wake(s->env.wake_ud);
        }
        if (s->env.wake && !s->st.inflight_commits)
            s->env.wake(s->env.wake_ud);
    }
    for (size_t i = 0; i < c->n; i++)
        free(c->sessions[i]);
    free(c->sessions);
    free(c->worker_id);
    free(c);
}

/* Builds and submits the atomic write for the placements on one worker, after checking
 * that the worker and its sessions are still at the versions they were planned at. Returns
 * the number of sessions submitted; the busy marks of what was not submitted are cleared. */
static size_t commit_worker(struct lcm_sched *s, struct plan_wk *pw, int64_t now)
{
    const struct lcm_worker *w = lcm_store_get(s->env.store, "worker", pw->id);
    size_t n = pw->n;
    struct lcm_events wev;
    lcm_events_init(&wev);
    struct lcm_events *sev = calloc(n, sizeof *sev);
    struct lcm_store_change *ch = calloc(n + 1, sizeof *ch);
    struct lcm_store_event *se = calloc(2 * n, sizeof *se);
    char **js = calloc(2 * n, sizeof *js);
    const struct lcm_session **ss = calloc(n, sizeof *ss);
    struct commit_ctx *c = NULL;
    size_t done = 0;
    struct lcm_derr derr;
    if (!w || w->version != pw->version) {
        lcm_debug("scheduler", "msg=\"worker changed before its placements were sent\" worker=%s", pw->id);
        goto out;
    }
    if (!sev || !ch || !se || !js || !ss)
        goto out;
    for (size_t i = 0; i < n; i++) {
        ss[i] = lcm_store_get(s->env.store, "session", pw->ss[i].id);
        if (!ss[i] || ss[i]->version != pw->ss[i].version || ss[i]->status != LCM_SS_PENDING) {
            lcm_debug("scheduler", "msg=\"session changed before its placement was sent\" session=%s", pw->ss[i].id);
            goto out;
        }
    }
    c = calloc(1, sizeof *c);
    if (!c || !(c->sessions = calloc(n, sizeof *c->sessions)))
        goto out;
    /* the worker's allocations, validated against the real state plus the earlier ones */
    struct lcm_worker shadow = *w;
    struct lcm_alloc *tmp = malloc((w->nsessions + n) * sizeof *tmp);
    if (!tmp)
        goto out;
    if (w->nsessions)
        memcpy(tmp, w->sessions, w->nsessions * sizeof *tmp);
    shadow.sessions = tmp;
    shadow.cap_sessions = w->nsessions + (uint32_t)n;
    size_t i;
    int bad = 0;
    for (i = 0; i < n; i++) {
        const struct lcm_capacity *need = &pw->ss[i].need;
        lcm_events_init(&sev[i]);
        if (lcm_worker_cmd_allocate(&shadow, ss[i]->id, need, s->by, now, &wev, &derr) ||
            lcm_session_cmd_schedule(ss[i], w->id, "placed by the scheduler", s->by, now, &sev[i], &derr)) {
            lcm_warn("scheduler", "msg=\"placement refused by the domain\" session=%s worker=%s err=\"%s\"",
                     ss[i]->id, w->id, derr.message);
            bad = 1;
            break;
        }
        shadow.sessions[shadow.nsessions].session_id = ss[i]->id;
        shadow.sessions[shadow.nsessions].req = *need;
        shadow.nsessions++;
        lcm_capacity_add(&shadow.allocated, &shadow.declared, need, lcm_worker_node_limit(&shadow));
    }
    free(tmp);
    if (bad || wev.n != n)
        goto out;
    for (i = 0; i < n; i++) {
        js[i] = event_json(&wev.v[i]);
        js[n + i] = event_json(&sev[i].v[0]);
        if (!js[i] || !js[n + i])
            goto out;
        se[i] = (struct lcm_store_event){ wev.v[i].type, js[i], NULL, s->by };
        se[n + i] = (struct lcm_store_event){ sev[i].v[0].type, js[n + i], NULL, s->by };
    }
    ch[0] = (struct lcm_store_change){ &lcm_kind_worker, w->id, w->version, se, n, NULL, 0 };
    for (i = 0; i < n; i++) {
        ch[1 + i] = (struct lcm_store_change){ &lcm_kind_session, ss[i]->id, ss[i]->version,
                                               &se[n + i], 1, NULL, 0 };
        c->sessions[i] = pw->ss[i].id;   /* ownership moves to the commit */
        pw->ss[i].id = NULL;
        c->n = i + 1;
    }
    c->worker_id = pw->id;
    pw->id = NULL;
    c->s = s;
    c->t0 = mono_ms();
    char err[256] = "";
    int rc = s->env.commit(s->env.commit_ud, ch, n + 1, commit_done, c, err, sizeof err);
    if (rc < 0) {
        s->st.conflicts += rc == LCM_STORE_ECONFLICT;
        lcm_info("scheduler", "msg=\"placement commit not sent\" worker=%s err=\"%s\"", w->id, err);
        /* back to the plan entry, whose marks are cleared below */
        pw->id = c->worker_id;
        for (i = 0; i < c->n; i++)
            pw->ss[i].id = c->sessions[i];
        c->worker_id = NULL;
        c->n = 0;
        goto out;
    }
    /* in flight: the busy marks stay until it lands */
    c->next = s->commits;
    if (s->commits)
        s->commits->prev = c;
    s->commits = c;
    s->st.inflight_commits++;
    done = n;
    c = NULL;
out:
    if (!done) {
        smap_del(&s->busy_workers, pw->id);
        for (size_t k = 0; k < pw->n; k++)
            if (pw->ss[k].id)
                smap_del(&s->busy_sessions, pw->ss[k].id);
    }
    if (c) {
        for (size_t k = 0; k < c->n; k++)
            free(c->sessions[k]);
        free(c->sessions);
        free(c->worker_id);
        free(c);
    }
    lcm_events_clear(&wev);
    for (size_t k = 0; sev && k < n; k++)
        lcm_events_clear(&sev[k]);
    for (size_t k = 0; js && k < 2 * n; k++)
        cJSON_free(js[k]);
    free(js);
    free(se);
    free(ch);
    free(sev);
    free(ss);
    return done;
}

/* Submits the next slice of the plan; asks for another turn when some remains. */
static int plan_submit(struct lcm_sched *s)
{
    int submitted = 0;
    size_t sent = 0;
    while (s->plan.next < s->plan.n && sent < SLICE_SESSIONS) {
        struct plan_wk *pw = &s->plan.wk[s->plan.next++];
        sent += pw->n;
        submitted += (int)commit_worker(s, pw, s->plan.now);
        plan_wk_free(pw);
    }
    if (s->plan.next >= s->plan.n) {
        free(s->plan.wk);
        memset(&s->plan, 0, sizeof s->plan);
    } else if (s->env.wake) {
        s->env.wake(s->env.wake_ud);
    }
    s->st.placed += (uint64_t)submitted;
    return submitted;
}

static uint32_t counts_sig(const uint32_t *c)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < LCM_REJ__COUNT; i++)
        h = (h ^ c[i]) * 16777619u;
    return h | 1;
}

/* Turns a cycle's placements (per worker, in placement order) into the plan, marking its
 * workers and sessions busy. Returns 0 or -1 (out of memory: nothing planned). */
static int plan_build(struct lcm_sched *s, const struct lcm_sched_snap *sn, const struct place *pl,
                      const size_t *head, int64_t now)
{
    size_t nw = 0;
    for (size_t k = 0; k < sn->nwk; k++)
        nw += head[k] != SIZE_MAX;
    if (!nw)
        return 0;
    struct plan *P = &s->plan;
    P->wk = calloc(nw, sizeof *P->wk);
    if (!P->wk)
        return -1;
    P->now = now;
    for (size_t k = 0; k < sn->nwk; k++) {
        if (head[k] == SIZE_MAX)
            continue;
        struct plan_wk *pw = &P->wk[P->n];
        size_t n = 0;
        for (size_t p = head[k]; p != SIZE_MAX; p = pl[p].next)
            n++;
        pw->ss = calloc(n, sizeof *pw->ss);
        if (!pw->ss || !(pw->id = strdup(sn->wk[k].w->id)))
            goto oom;
        pw->version = sn->wk[k].w->version;
        for (size_t p = head[k]; p != SIZE_MAX; p = pl[p].next) {
            struct plan_sess *ps = &pw->ss[pw->n];
            if (!(ps->id = strdup(pl[p].s->id)))
                goto oom;
            ps->version = pl[p].s->version;
            ps->need = sn->defs[pl[p].def].req.need;
            pw->n++;
        }
        P->n++;
    }
    for (size_t k = 0; k < P->n; k++) {
        smap_put(&s->busy_workers, P->wk[k].id);
        for (size_t i = 0; i < P->wk[k].n; i++)
            smap_put(&s->busy_sessions, P->wk[k].ss[i].id);
    }
    return 0;
oom:
    for (size_t k = 0; k <= P->n && k < nw; k++)
        plan_wk_free(&P->wk[k]);
    free(P->wk);
    memset(P, 0, sizeof *P);
    return -1;
}

int lcm_sched_cycle(struct lcm_sched *s, int64_t now)
{
    double t0 = mono_ms();
    if (s->plan.n) {
        /* the rest of the last cycle's placements first */
        int k = plan_submit(s);
        s->st.last_decide_ms = 0;
        s->st.last_commit_ms = s->st.last_cycle_ms = mono_ms() - t0;
        return k;
    }
    struct collect_ctx cc = { .s = s, .now = now };
    lcm_time_params_default(&cc.tp);
    cc.tp.lead_window_minutes = s->cfg.lead_window_minutes;
    lcm_sched_index_each_pending(s->idx, now + (int64_t)s->cfg.lead_window_minutes * 60,
                                 collect_pending, &cc);
    s->st.cycles++;
    s->st.queue_depth = cc.depth;
    if (s->env.metrics)
        lcm_metrics_set(s->env.metrics, "lcm_scheduler_queue_depth", NULL, (double)cc.depth);
    if (cc.oom) {
        free(cc.v);
        return -1;
    }
    if (cc.n == 0) {
        free(cc.v);
        return 0;
    }
    qsort(cc.v, cc.n, sizeof *cc.v, cmp_cand);

    struct lcm_sched_snap sn;
    struct place *pl = malloc(cc.n * sizeof *pl);
    size_t *head = NULL;
    int submitted = 0;
    if (!pl || lcm_sched_snap_build(&sn, s->env.store, s->cfg.shortlist, excluded_worker, s) < 0) {
        free(pl);
        free(cc.v);
        return -1;
    }
    head = malloc((sn.nwk ? sn.nwk : 1) * sizeof *head);
    if (!head)
        goto out;
    for (size_t i = 0; i < sn.nwk; i++)
        head[i] = SIZE_MAX;
    memset(s->st.last_counts, 0, sizeof s->st.last_counts);

    struct lcm_policy_gen *gen = s->env.policy && s->cfg.mode == LCM_SCHED_POLICY_ENGINE
                                     ? lcm_policy_pin(s->env.policy, LCM_POLICY_PLACEMENT) : NULL;
    /* worker tables built once for the whole cycle (NULL when out of memory: per call) */
    if (gen)
        sn.pcycle = lcm_policy_place_cycle_begin(s->env.policy, gen, sn.nwk);
    size_t npl = 0, nun = 0;
    const char **hargv = NULL;
    char (*hval)[48] = NULL;
    size_t nh = 0;
    if (s->env.redis) {
        hargv = malloc((2 + 2 * cc.n) * sizeof *hargv);
        hval = malloc(cc.n * sizeof *hval);
    }
    size_t i;
    for (i = 0; i < cc.n; i++) {
        if (s->cfg.cycle_budget_ms > 0 && (i & 63) == 63 && mono_ms() - t0 > (double)s->cfg.cycle_budget_ms)
            break;   /* yield to the loop; the rest is planned by the next cycle */
        const struct lcm_session *ss = cc.v[i].s;
        const struct lcm_definition *def = lcm_store_get(s->env.store, "definition", ss->definition_id);
        struct lcm_sched_def *df = lcm_sched_snap_def(&sn, ss->definition_id, def);
        if (!df)
            break;
        if (lcm_sched_decide(&sn, df, ss->id, s->env.policy, gen, s->cfg.mode, now, 0, &s->dec) < 0)
            break;
        if (s->dec.chosen >= 0) {
            size_t k = (size_t)s->dec.chosen;
            if (lcm_sched_snap_take(&sn, df, k, ss->id) < 0)
                break;
            pl[npl] = (struct place){ ss, k, (size_t)(df - sn.defs), SIZE_MAX };
            /* keep placement order per worker: append at the tail */
            if (head[k] == SIZE_MAX) {
                head[k] = npl;
            } else {
                size_t t = head[k];
                while (pl[t].next != SIZE_MAX)
                    t = pl[t].next;
                pl[t].next = npl;
            }
            npl++;
            continue;
        }
        /* nothing fits: back off, count, remember for the autoscaler */
        nun++;
        const uint32_t *counts = s->dec.counts;
        for (int r = 1; r < LCM_REJ__COUNT; r++) {
            s->st.last_counts[r] += counts[r];
            if (counts[r] && s->env.metrics) {
                char lab[64];
                snprintf(lab, sizeof lab, "reason=\"%s\"", lcm_place_reject_name((enum lcm_place_reject)r));
                lcm_metrics_inc(s->env.metrics, "lcm_scheduler_rejections_total", lab, counts[r]);
            }
        }
        struct ment *e = smap_put(&s->retry, ss->id);
        if (!e)
            continue;
        e->attempts++;
        int64_t delay = e->attempts >= 8 ? s->cfg.backoff_max_s : (1 << (e->attempts - 1));
        if (delay > s->cfg.backoff_max_s)
            delay = s->cfg.backoff_max_s;
        e->next_ms = now * 1000 + delay * 1000;
        e->epoch = s->fleet_epoch;
        uint32_t sig = counts_sig(counts);
        if (sig != e->sig) {
            e->sig = sig;
            char why[96];
            snprintf(why, sizeof why, "no worker fits (%zu considered, definition %s)",
                     s->dec.considered, df->d ? "known" : "unknown");
            log_decision(s, "unplaced", ss->id, NULL, why, counts);
        }
        if (hargv && hval) {
            snprintf(hval[nh], sizeof hval[nh], "%u %lld", e->attempts, (long long)e->next_ms);
            hargv[2 + 2 * nh] = ss->id;
            hargv[3 + 2 * nh] = hval[nh];
            nh++;
        }
    }
    lcm_policy_place_cycle_end(sn.pcycle);
    sn.pcycle = NULL;
    if (gen)
        lcm_policy_unpin(gen);
    s->st.unplaced_attempts += nun;
    if (nun && s->env.metrics)
        lcm_metrics_inc(s->env.metrics, "lcm_scheduler_unplaced_total", NULL, (double)nun);
    if (nh) {
        hargv[0] = "HSET";
        hargv[1] = RETRY_KEY;
        lcm_redis_commandv(s->env.redis, NULL, NULL, (int)(2 + 2 * nh), hargv, NULL);
    }
    free(hargv);
    free(hval);
    int more = i < cc.n;
    double tc = mono_ms();
    s->st.last_decide_ms = tc - t0;
    if (plan_build(s, &sn, pl, head, now) < 0)
        goto out;
    submitted = plan_submit(s);
    s->st.last_commit_ms = mono_ms() - tc;
    if (more && s->env.wake)
        s->env.wake(s->env.wake_ud);
out:
    free(head);
    free(pl);
    free(cc.v);
    lcm_sched_snap_free(&sn);
    s->st.last_cycle_ms = mono_ms() - t0;
    if (s->env.metrics)
        lcm_metrics_observe(s->env.metrics, "lcm_scheduler_cycle_seconds", NULL, s->st.last_cycle_ms / 1e3);
    (void)wall_ms;
    return submitted;
}

/* ---- status, preview, availability ---- */

cJSON *lcm_sched_status_json(const struct lcm_sched *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "queue_depth", (double)s->st.queue_depth);
    cJSON_AddNumberToObject(o, "cycles", (double)s->st.cycles);
    cJSON_AddNumberToObject(o, "placed", (double)s->st.committed);
    cJSON_AddNumberToObject(o, "unplaced_attempts", (double)s->st.unplaced_attempts);
    cJSON_AddNumberToObject(o, "conflicts", (double)s->st.conflicts);
    cJSON_AddNumberToObject(o, "inflight_commits", (double)s->st.inflight_commits);
    cJSON_AddNumberToObject(o, "backing_off", (double)s->retry.n);
    cJSON_AddNumberToObject(o, "last_cycle_ms", s->st.last_cycle_ms);
    cJSON_AddStringToObject(o, "policy_mode", s->cfg.mode == LCM_SCHED_POLICY_ENGINE ? "lua" : "builtin");
    cJSON_AddNumberToObject(o, "lead_window_minutes", s->cfg.lead_window_minutes);
    cJSON_AddNumberToObject(o, "shortlist_size", (double)s->cfg.shortlist);
    cJSON_AddItemToObject(o, "rejections", lcm_sched_counts_json(s->st.last_counts));
    cJSON *arr = cJSON_AddArrayToObject(o, "decisions");
    for (size_t i = 0; i < s->log_n; i++) {
        const cJSON *e = s->log[(s->log_head + i) % LOG_MAX];
        if (e)
            cJSON_AddItemToArray(arr, cJSON_Duplicate(e, 1));
    }
    return o;
}

static cJSON *worker_brief(const struct lcm_sched_wk *k)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "worker_id", k->w->id);
    cJSON_AddNumberToObject(o, "utilisation", k->util);
    cJSON_AddNumberToObject(o, "sessions", k->sh.nsessions);
    return o;
}

cJSON *lcm_sched_preview(struct lcm_sched *s, const char *session_id, const char *definition_id,
                         int64_t now, int *http_status, char *err, size_t errlen)
{
    const struct lcm_session *ss = NULL;
    if (session_id && *session_id) {
        ss = lcm_store_get(s->env.store, "session", session_id);
        if (!ss) {
            *http_status = 404;
            snprintf(err, errlen, "unknown session %s", session_id);
            return NULL;
        }
        definition_id = ss->definition_id;
    }
    if (!definition_id || !*definition_id) {
        *http_status = 422;
        snprintf(err, errlen, "give session_id or definition_id");
        return NULL;
    }
    const struct lcm_definition *def = lcm_store_get(s->env.store, "definition", definition_id);
    if (!def) {
        *http_status = 404;
        snprintf(err, errlen, "unknown definition %s", definition_id);
        return NULL;
    }
    struct lcm_sched_snap sn;
    struct lcm_sched_decision d;
    lcm_sched_decision_init(&d);
    cJSON *o = NULL;
    if (lcm_sched_snap_build(&sn, s->env.store, s->cfg.shortlist, NULL, NULL) < 0)
        goto oom;
    struct lcm_sched_def *df = lcm_sched_snap_def(&sn, definition_id, def);
    if (!df || lcm_sched_decide(&sn, df, ss ? ss->id : "preview", s->env.policy, NULL, s->cfg.mode,
                                now, 1, &d) < 0)
        goto oom;
    o = cJSON_CreateObject();
    if (ss) {
        cJSON_AddStringToObject(o, "session_id", ss->id);
        cJSON_AddStringToObject(o, "session_status", lcm_fsm_name(&lcm_fsm_session, ss->status));
    }
    cJSON_AddStringToObject(o, "definition_id", definition_id);
    if (d.chosen >= 0) {
        cJSON_AddStringToObject(o, "worker_id", sn.wk[d.chosen].w->id);
        cJSON_AddNumberToObject(o, "score", d.chosen_score);
    } else {
        cJSON_AddNullToObject(o, "worker_id");
    }
    cJSON_AddStringToObject(o, "policy", d.info.source == LCM_POLICY_SRC_LUA ? "lua" : "builtin");
    if (d.info.fallback != LCM_POLICY_FB_NONE && d.info.error[0])
        cJSON_AddStringToObject(o, "policy_fallback", d.info.error);
    cJSON_AddNumberToObject(o, "policy_generation", (double)d.info.generation);
    cJSON_AddNumberToObject(o, "considered", (double)d.considered);
    cJSON_AddNumberToObject(o, "passed", (double)d.passed);
    cJSON *cands = cJSON_AddArrayToObject(o, "candidates");
    for (size_t r = 0; r < d.ranks.n; r++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "worker_id", d.ranks.ranks[r].worker_id);
        cJSON_AddNumberToObject(e, "score", d.ranks.ranks[r].score);
        cJSON_AddNumberToObject(e, "rank", (double)r + 1);
        cJSON_AddItemToArray(cands, e);
    }
    cJSON *sl = cJSON_AddArrayToObject(o, "shortlist");
    for (size_t j = 0; j < d.nshort; j++)
        cJSON_AddItemToArray(sl, worker_brief(&sn.wk[d.shortlist[j]]));
    cJSON *rej = cJSON_AddArrayToObject(o, "rejected");
    for (size_t i = 0; i < sn.nwk; i++) {
        if (d.reasons[i] == LCM_REJ_NONE)
            continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "worker_id", sn.wk[i].w->id);
        cJSON_AddStringToObject(e, "reason", lcm_place_reject_name(d.reasons[i]));
        cJSON_AddItemToArray(rej, e);
    }
    cJSON_AddItemToObject(o, "rejections", lcm_sched_counts_json(d.counts));
    lcm_sched_decision_free(&d);
    lcm_sched_snap_free(&sn);
    return o;
oom:
    lcm_sched_decision_free(&d);
    lcm_sched_snap_free(&sn);
    *http_status = 500;
    snprintf(err, errlen, "out of memory");
    return NULL;
}

int lcm_sched_availability(struct lcm_sched *s, const char *definition_id, int64_t start,
                           int64_t end, int64_t max, int64_t now, struct lcm_sched_avail *out)
{
    memset(out, 0, sizeof *out);
    const struct lcm_definition *def = lcm_store_get(s->env.store, "definition", definition_id);
    if (!def)
        return 0;
    out->known_definition = 1;
    struct lcm_sched_snap sn;
    struct lcm_sched_decision d;
    lcm_sched_decision_init(&d);
    int rc = -1;
    struct lcm_policy_gen *gen = s->env.policy && s->cfg.mode == LCM_SCHED_POLICY_ENGINE
                                     ? lcm_policy_pin(s->env.policy, LCM_POLICY_PLACEMENT) : NULL;
    if (lcm_sched_snap_build(&sn, s->env.store, s->cfg.shortlist, NULL, NULL) < 0)
        goto out;
    if (gen)
        sn.pcycle = lcm_policy_place_cycle_begin(s->env.policy, gen, sn.nwk);
    /* Sessions already waiting for a worker in that window are served first. */
    struct collect_ctx cc = { .s = s, .now = now, .all = 1, .win_start = start, .win_end = end };
    lcm_time_params_default(&cc.tp);
    cc.tp.lead_window_minutes = s->cfg.lead_window_minutes;
    lcm_sched_index_each_pending(s->idx, end > INT64_MIN ? end - 1 : end, collect_pending, &cc);
    if (cc.oom) {
        free(cc.v);
        goto out;
    }
    if (cc.n)
        qsort(cc.v, cc.n, sizeof *cc.v, cmp_cand);
    for (size_t i = 0; i < cc.n; i++) {
        const struct lcm_session *ss = cc.v[i].s;
        struct lcm_sched_def *pdf = lcm_sched_snap_def(&sn, ss->definition_id,
                                                       lcm_store_get(s->env.store, "definition", ss->definition_id));
        if (!pdf || lcm_sched_decide(&sn, pdf, ss->id, s->env.policy, gen, s->cfg.mode, now, 0, &d) < 0)
            break;
        if (d.chosen >= 0)
            lcm_sched_snap_take(&sn, pdf, (size_t)d.chosen, ss->id);
    }
    free(cc.v);
    struct lcm_sched_def *df = lcm_sched_snap_def(&sn, definition_id, def);
    if (!df)
        goto out;
    /* ids for the tentative sessions: the snapshot borrows them until it is freed */
    static const char *const probe = "availability-probe";
    while (out->fits_now < max) {
        if (lcm_sched_decide(&sn, df, probe, s->env.policy, gen, s->cfg.mode, now, 0, &d) < 0)
            goto out;
        if (d.chosen < 0) {
            if (out->fits_now == 0)
                memcpy(out->counts, d.counts, sizeof out->counts);
            break;
        }
        if (lcm_sched_snap_take(&sn, df, (size_t)d.chosen, probe) < 0)
            goto out;
        out->fits_now++;
    }
    rc = 0;
out:
    lcm_policy_place_cycle_end(sn.pcycle);
    sn.pcycle = NULL;
    if (gen)
        lcm_policy_unpin(gen);
    lcm_sched_decision_free(&d);
    lcm_sched_snap_free(&sn);
    return rc;
}
