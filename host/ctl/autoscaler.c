/* Autoscaler cycle: demand (unplaced sessions in the lead window, pending ones starting
 * within worker_boot_minutes, less what a new worker would not fix) and fleet → scale_up
 * policy → host limits → worker.created (origin scale_up, desired running; the worker
 * controller launches them); empty idle workers → scale_down policy → guard → drain+stop /
 * stop / terminate. Cooldowns, idle times and launches per session live under lcm:sched:*
 * in Redis so a new leader honours them. */
#include "autoscaler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/redis.h"
#include "domain/definition.h"
#include "domain/license.h"
#include "domain/session.h"
#include "domain/session_time.h"
#include "domain/template.h"
#include "domain/worker.h"
#include "policy/policy_builtin.h"

#define KEY_UP "lcm:sched:cooldown:up"
#define KEY_DOWN "lcm:sched:cooldown:down"
#define KEY_IDLE "lcm:sched:idle"
#define KEY_DECISIONS "lcm:sched:decisions"
#define KEY_LAUNCHED "lcm:sched:launched"

/* Launches made for one pending session (mirrors a field of lcm:sched:launched, value
 * "<n> <latest worker id>"); dropped once the session is no longer pending. */
#define LREC_BUCKETS 1024
struct lrec {
    char *sid;
    int64_t n;
    char wid[48];
    unsigned seen;                /* cycle that last saw the session pending */
    unsigned attributed;          /* cycle that last launched for it */
    struct lrec *next;
};

/* Rate limit of repeated refusal records (one per key per 10 s). */
struct note {
    char *key;
    int64_t at_ms;
    struct note *next;
};

struct idle_ent {
    char *id;
    int64_t at;
    struct idle_ent *next;
};

struct lcm_autoscaler {
    struct lcm_autoscaler_env env;
    struct lcm_autoscaler_cfg cfg;
    char by[64];
    int64_t up_until_ms, down_until_ms;
    struct idle_ent *idle;        /* last time each worker emptied (short list) */
    size_t inflight;
    unsigned seq;
    int64_t last_note;
    /* last cycle */
    int64_t last_at;
    size_t last_groups, last_unplaced, last_upcoming;
    int64_t last_launched, last_refused, last_retired;
    size_t last_capped, last_waiting, last_cannot;
    struct lrec *lrec[LREC_BUCKETS];
    size_t nlrec;
    unsigned cycle_no;
    int64_t loading_until_ms;     /* lcm:sched:launched being read after start */
    struct note *notes;
};

static int64_t wall_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void lcm_autoscaler_cfg_default(struct lcm_autoscaler_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->lead_window_minutes = 35;
    c->worker_boot_minutes = 25;
    c->max_workers_per_region = 50;
    c->max_launches_per_cycle = 20;
    c->up_cooldown_s = 60;
    c->down_cooldown_s = 300;
    c->idle_minutes = 60;
    c->stopped_retention_minutes = 1440;
    c->max_launches_per_session = 2;
}

void lcm_autoscaler_cfg_from_config(const struct lcm_config *cfg, struct lcm_autoscaler_cfg *c)
{
    lcm_autoscaler_cfg_default(c);
    c->lead_window_minutes = (int)lcm_config_int(cfg, "lead_window_minutes");
    c->worker_boot_minutes = (int)lcm_config_int(cfg, "worker_boot_minutes");
    c->max_workers_per_region = lcm_config_int(cfg, "max_workers_per_region");
    c->max_launches_per_cycle = lcm_config_int(cfg, "max_launches_per_cycle");
    c->up_cooldown_s = lcm_config_int(cfg, "scale_up_cooldown_s");
    c->down_cooldown_s = lcm_config_int(cfg, "scale_down_cooldown_s");
    c->idle_minutes = lcm_config_int(cfg, "idle_minutes");
    c->min_warm_workers = lcm_config_int(cfg, "min_warm_workers");
    c->stopped_retention_minutes = lcm_config_int(cfg, "stopped_retention_minutes");
    c->drain_deadline_minutes = lcm_config_int(cfg, "drain_deadline_minutes");
}

struct lcm_autoscaler *lcm_autoscaler_new(const struct lcm_autoscaler_env *env,
                                          const struct lcm_autoscaler_cfg *cfg)
{
    struct lcm_autoscaler *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->env = *env;
    if (cfg)
        a->cfg = *cfg;
    else
        lcm_autoscaler_cfg_default(&a->cfg);
    snprintf(a->by, sizeof a->by, "%s", a->cfg.by ? a->cfg.by : "controller:autoscaler");
    a->cfg.by = a->by;
    a->seq = (unsigned)(wall_ms() ^ ((int64_t)getpid() << 16));
    if (env->metrics) {
        lcm_metrics_declare(env->metrics, "lcm_autoscaler_decisions_total", LCM_METRIC_COUNTER,
                            "Scaling decisions by action (scale_up, drain, stop, terminate) and result (taken, refused)");
    }
    return a;
}

/* ---- launches per session ---- */

static unsigned long str_hash(const char *s)
{
    unsigned long h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h;
}

static struct lrec *lrec_find(const struct lcm_autoscaler *a, const char *sid)
{
    for (struct lrec *e = a->lrec[str_hash(sid) % LREC_BUCKETS]; e; e = e->next)
        if (!strcmp(e->sid, sid))
            return e;
    return NULL;
}

static struct lrec *lrec_put(struct lcm_autoscaler *a, const char *sid, int64_t n, const char *wid)
{
    struct lrec *e = lrec_find(a, sid);
    if (!e) {
        e = calloc(1, sizeof *e);
        if (!e || !(e->sid = strdup(sid))) {
            free(e);
            return NULL;
        }
        unsigned long b = str_hash(sid) % LREC_BUCKETS;
        e->next = a->lrec[b];
        a->lrec[b] = e;
        a->nlrec++;
    }
    e->n = n;
    snprintf(e->wid, sizeof e->wid, "%s", wid ? wid : "");
    return e;
}

static void lrec_clear(struct lcm_autoscaler *a)
{
    for (size_t i = 0; i < LREC_BUCKETS; i++)
        while (a->lrec[i]) {
            struct lrec *n = a->lrec[i]->next;
            free(a->lrec[i]->sid);
            free(a->lrec[i]);
            a->lrec[i] = n;
        }
    a->nlrec = 0;
}

/* Sends "HSET key f v f v …" or "HDEL key f f …" in chunks (argv borrowed). */
static void send_fields(struct lcm_autoscaler *a, const char *cmd, const char **fv, size_t n,
                        size_t per)
{
    if (!a->env.redis || n == 0)
        return;
    const char *argv[2 + 2 * 256];
    for (size_t i = 0; i < n;) {
        int argc = 0;
        argv[argc++] = cmd;
        argv[argc++] = KEY_LAUNCHED;
        for (size_t k = 0; k < 256 && i < n; k++, i++)
            for (size_t j = 0; j < per; j++)
                argv[argc++] = fv[i * per + j];
        lcm_redis_commandv(a->env.redis, NULL, NULL, argc, argv, NULL);
    }
}

/* At most one record per key every 10 s: a refusal repeated every cycle would bury the log. */
static int note_due(struct lcm_autoscaler *a, const char *key, int64_t nowms)
{
    struct note **pp = &a->notes;
    while (*pp) {
        struct note *e = *pp;
        if (!strcmp(e->key, key)) {
            if (nowms - e->at_ms < 10000)
                return 0;
            e->at_ms = nowms;
            return 1;
        }
        if (nowms - e->at_ms > 60000) {   /* forgotten: keeps the list short */
            *pp = e->next;
            free(e->key);
            free(e);
            continue;
        }
        pp = &e->next;
    }
    struct note *e = calloc(1, sizeof *e);
    if (e && (e->key = strdup(key))) {
        e->at_ms = nowms;
        e->next = a->notes;
        a->notes = e;
    } else {
        free(e);
    }
    return 1;
}

void lcm_autoscaler_free(struct lcm_autoscaler *a)
{
    if (!a)
        return;
    while (a->idle) {
        struct idle_ent *n = a->idle->next;
        free(a->idle->id);
        free(a->idle);
        a->idle = n;
    }
    lrec_clear(a);
    while (a->notes) {
        struct note *n = a->notes->next;
        free(a->notes->key);
        free(a->notes);
        a->notes = n;
    }
    free(a);
}

static struct idle_ent *idle_find(const struct lcm_autoscaler *a, const char *id)
{
    for (struct idle_ent *e = a->idle; e; e = e->next)
        if (!strcmp(e->id, id))
            return e;
    return NULL;
}

static void idle_set(struct lcm_autoscaler *a, const char *id, int64_t at)
{
    struct idle_ent *e = idle_find(a, id);
    if (!e) {
        e = calloc(1, sizeof *e);
        if (!e || !(e->id = strdup(id))) {
            free(e);
            return;
        }
        e->next = a->idle;
        a->idle = e;
    }
    if (at > e->at)
        e->at = at;
}

/* ---- Redis state ---- */

static void pttl_reply(struct lcm_redis *r, redisReply *rep, void *ud)
{
    int64_t *until = ud;
    (void)r;
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer > 0)
        *until = wall_ms() + rep->integer;
}

static void idle_reply(struct lcm_redis *r, redisReply *rep, void *ud)
{
    struct lcm_autoscaler *a = ud;
    (void)r;
    if (!rep || rep->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i + 1 < rep->elements; i += 2)
        if (rep->element[i]->type == REDIS_REPLY_STRING && rep->element[i + 1]->type == REDIS_REPLY_STRING)
            idle_set(a, rep->element[i]->str, atoll(rep->element[i + 1]->str));
}

/* The reply never touches the autoscaler when it is NULL (lcm_redis_free runs pending
 * callbacks that way at shutdown, after the autoscaler is gone). */
static void launched_reply(struct lcm_redis *r, redisReply *rep, void *ud)
{
    struct lcm_autoscaler *a = ud;
    (void)r;
    if (!rep)
        return;
    if (rep->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i + 1 < rep->elements; i += 2) {
            const redisReply *f = rep->element[i], *v = rep->element[i + 1];
            if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                continue;
            long long n = 0;
            char wid[48] = "";
            if (sscanf(v->str, "%lld %47s", &n, wid) >= 1 && n > 0)
                lrec_put(a, f->str, n, wid);
        }
    a->loading_until_ms = 0;
}

void lcm_autoscaler_start(struct lcm_autoscaler *a)
{
    if (!a->env.redis)
        return;
    const char *up[] = { "PTTL", KEY_UP }, *down[] = { "PTTL", KEY_DOWN }, *idle[] = { "HGETALL", KEY_IDLE };
    lcm_redis_commandv(a->env.redis, pttl_reply, &a->up_until_ms, 2, up, NULL);
    lcm_redis_commandv(a->env.redis, pttl_reply, &a->down_until_ms, 2, down, NULL);
    lcm_redis_commandv(a->env.redis, idle_reply, a, 2, idle, NULL);
    /* Redis holds the launches per session (another leader may have launched since this
     * one last led): scale-up waits for them, at most 5 s if Redis does not answer */
    lrec_clear(a);
    const char *launched[] = { "HGETALL", KEY_LAUNCHED };
    if (lcm_redis_commandv(a->env.redis, launched_reply, a, 2, launched, NULL) == 0)
        a->loading_until_ms = wall_ms() + 5000;
}

static void set_cooldown(struct lcm_autoscaler *a, const char *key, int64_t *until, int64_t secs)
{
    if (secs <= 0)
        return;
    *until = wall_ms() + secs * 1000;
    if (a->env.redis) {
        char ms[32];
        snprintf(ms, sizeof ms, "%lld", (long long)(secs * 1000));
        const char *argv[] = { "SET", key, a->by, "PX", ms };
        lcm_redis_commandv(a->env.redis, NULL, NULL, 5, argv, NULL);
    }
}

int lcm_autoscaler_note_change(struct lcm_autoscaler *a, const char *kind, const char *id,
                               const char *type)
{
    if (!strcmp(kind, "worker")) {
        if (!strcmp(type, "worker.released")) {
            int64_t now = wall_ms() / 1000;
            idle_set(a, id, now);
            if (a->env.redis) {
                char v[32];
                snprintf(v, sizeof v, "%lld", (long long)now);
                const char *argv[] = { "HSET", KEY_IDLE, id, v };
                lcm_redis_commandv(a->env.redis, NULL, NULL, 4, argv, NULL);
            }
        }
        return strcmp(type, "worker.metrics") != 0;
    }
    return !strcmp(kind, "session") && !strcmp(type, "session.created");
}

/* ---- decision records ---- */

static void record(struct lcm_autoscaler *a, const char *decision, const char *result,
                   const char *worker_id, const char *tpl, const char *region, int64_t count,
                   const char *reason)
{
    cJSON *e = cJSON_CreateObject();
    if (!e)
        return;
    cJSON_AddStringToObject(e, "decision", decision);
    cJSON_AddStringToObject(e, "result", result);
    if (worker_id)
        cJSON_AddStringToObject(e, "worker_id", worker_id);
    if (tpl)
        cJSON_AddStringToObject(e, "template", tpl);
    if (region)
        cJSON_AddStringToObject(e, "region", region);
    if (count)
        cJSON_AddNumberToObject(e, "count", (double)count);
    cJSON_AddStringToObject(e, "reason", reason ? reason : "");
    cJSON_AddStringToObject(e, "by", a->by);
    char ts[32];
    lcm_rfc3339_format(wall_ms() / 1000, ts, sizeof ts);
    cJSON_AddStringToObject(e, "at", ts);
    if (a->env.redis) {
        char *js = cJSON_PrintUnformatted(e);
        if (js) {
            const char *argv[] = { "XADD", KEY_DECISIONS, "MAXLEN", "~", "10000", "*", "decision", js };
            lcm_redis_commandv(a->env.redis, NULL, NULL, 8, argv, NULL);
            cJSON_free(js);
        }
    }
    if (a->env.metrics) {
        char lab[96];
        snprintf(lab, sizeof lab, "action=\"%s\",result=\"%s\"", decision, result);
        lcm_metrics_inc(a->env.metrics, "lcm_autoscaler_decisions_total", lab, count ? (double)count : 1);
    }
    lcm_info("autoscaler", "decision=%s result=%s worker=%s template=%s region=%s count=%lld reason=\"%s\"",
             decision, result, worker_id ? worker_id : "-", tpl ? tpl : "-", region ? region : "-",
             (long long)count, reason ? reason : "");
    if (a->env.sched)
        lcm_sched_log(a->env.sched, e);
    else
        cJSON_Delete(e);
}

/* ---- snapshot helpers ---- */

struct wbusy {
    char *id;
    size_t n;
    struct wbusy *next;
};

struct group {
    struct lcm_policy_demand d;
    const struct lcm_definition *def;
    struct lcm_place_req req;
    const char **sids;            /* its demand sessions, soonest first (borrowed ids) */
    size_t nsids, capsids;
};

struct scan {
    struct lcm_autoscaler *a;
    int64_t now;
    struct lcm_time_params tp;
    struct wbusy *busy[256];
    struct group *groups;
    size_t ngroups, capgroups;
    size_t unplaced, upcoming;
    size_t capped, waiting;       /* left out of demand by the launches made for them */
    const char *capped_sid;
    char capped_wid[48];
    int oom;
};

static size_t busy_of(const struct scan *sc, const char *wid)
{
    /* the scheduler's session index keeps these counts current from the feed */
    if (sc->a->env.sched)
        return lcm_sched_worker_sessions(sc->a->env.sched, wid);
    unsigned long h = 5381;
    for (const char *p = wid; *p; p++)
        h = h * 33 + (unsigned char)*p;
    for (const struct wbusy *b = sc->busy[h % 256]; b; b = b->next)
        if (!strcmp(b->id, wid))
            return b->n;
    return 0;
}

static void busy_add(struct scan *sc, const char *wid)
{
    unsigned long h = 5381;
    for (const char *p = wid; *p; p++)
        h = h * 33 + (unsigned char)*p;
    for (struct wbusy *b = sc->busy[h % 256]; b; b = b->next)
        if (!strcmp(b->id, wid)) {
            b->n++;
            return;
        }
    struct wbusy *b = calloc(1, sizeof *b);
    if (!b || !(b->id = strdup(wid))) {
        free(b);
        sc->oom = 1;
        return;
    }
    b->n = 1;
    b->next = sc->busy[h % 256];
    sc->busy[h % 256] = b;
}

static void scan_free(struct scan *sc)
{
    for (size_t i = 0; i < 256; i++)
        while (sc->busy[i]) {
            struct wbusy *n = sc->busy[i]->next;
            free(sc->busy[i]->id);
            free(sc->busy[i]);
            sc->busy[i] = n;
        }
    for (size_t i = 0; i < sc->ngroups; i++)
        free(sc->groups[i].sids);
    free(sc->groups);
}

static void cpy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static struct group *group_for(struct scan *sc, const char *def_id)
{
    for (size_t i = 0; i < sc->ngroups; i++)
        if (!strcmp(sc->groups[i].d.req.definition_id, def_id))
            return &sc->groups[i];
    const struct lcm_definition *d = lcm_store_get(sc->a->env.store, "definition", def_id);
    if (!d)
        return NULL;
    if (sc->ngroups == sc->capgroups) {
        size_t nc = sc->capgroups ? sc->capgroups * 2 : 8;
        struct group *g = realloc(sc->groups, nc * sizeof *g);
        if (!g) {
            sc->oom = 1;
            return NULL;
        }
        sc->groups = g;
        sc->capgroups = nc;
    }
    struct group *g = &sc->groups[sc->ngroups++];
    memset(g, 0, sizeof *g);
    cpy(g->d.req.definition_id, sizeof g->d.req.definition_id, def_id);
    g->d.req.cpu_cores = d->req.need.cpu_cores;
    g->d.req.memory_gb = d->req.need.memory_gb;
    g->d.req.storage_gb = d->req.need.storage_gb;
    g->d.req.node_count = d->req.need.nodes;
    g->d.req.license_affinity = lcm_sched_policy_license(d->license_affinity);
    g->def = d;
    lcm_place_req_from_definition(d, &g->req);
    return g;
}

static void group_add_session(struct scan *sc, struct group *g, const char *sid)
{
    if (g->nsids == g->capsids) {
        size_t nc = g->capsids ? g->capsids * 2 : 8;
        const char **v = realloc(g->sids, nc * sizeof *v);
        if (!v) {
            sc->oom = 1;
            return;
        }
        g->sids = v;
        g->capsids = nc;
    }
    g->sids[g->nsids++] = sid;
}

/* A worker launched and not yet able to take sessions: scale-up counts it as capacity. */
static int in_flight(const struct lcm_worker *w)
{
    return w->status == LCM_WK_PENDING || w->status == LCM_WK_PROVISIONING ||
           w->status == LCM_WK_STARTING || (w->status == LCM_WK_RUNNING && !w->cml.ready);
}

static int scan_pending(const struct lcm_session *s, void *ud);

/* Without a scheduler (no session index): every session, for busy counts and demand. */
static int scan_session(const char *id, const void *state, void *ud)
{
    struct scan *sc = ud;
    const struct lcm_session *s = state;
    (void)id;
    if (lcm_session_is_terminal(s->status))
        return 0;
    if (s->worker_id && *s->worker_id)
        busy_add(sc, s->worker_id);
    return scan_pending(s, ud);
}

/* Demand: a pending session unplaced in the lead window, or booked within the boot time. */
static int scan_pending(const struct lcm_session *s, void *ud)
{
    struct scan *sc = ud;
    struct lcm_autoscaler *a = sc->a;
    if (s->status != LCM_SS_PENDING)
        return 0;
    struct lrec *lr = a->nlrec ? lrec_find(a, s->id) : NULL;
    if (lr)
        lr->seen = a->cycle_no;
    if (lcm_session_is_expired(s, sc->now, &sc->tp))
        return 0;
    int unplaced = a->env.sched && lcm_sched_is_unplaced(a->env.sched, s->id) &&
                   lcm_session_in_lead_window(s, sc->now, &sc->tp);
    int upcoming = !unplaced &&
                   (s->start == 0 || s->start - (int64_t)a->cfg.worker_boot_minutes * 60 <= sc->now);
    if (!unplaced && !upcoming)
        return 0;
    struct group *g = group_for(sc, s->definition_id);
    if (!g)
        return 0;
    if (lr) {
        /* Launches were made for this session already. While the latest is in flight the
         * session stays demand (the policy counts that worker as its capacity). Once it
         * runs with room for the session, the scheduler places it there: no launch. Else
         * (the worker failed, went away or filled up) it may have another, up to the cap. */
        const struct lcm_worker *w = lr->wid[0] ? lcm_store_get(a->env.store, "worker", lr->wid) : NULL;
        if (!w || !in_flight(w)) {
            if (w && w->status == LCM_WK_RUNNING && lcm_placement_check(w, &g->req) == LCM_REJ_NONE) {
                sc->waiting++;
                return 0;
            }
            if (a->cfg.max_launches_per_session > 0 && lr->n >= a->cfg.max_launches_per_session) {
                if (!sc->capped++) {
                    sc->capped_sid = s->id;
                    cpy(sc->capped_wid, sizeof sc->capped_wid, lr->wid);
                }
                return 0;
            }
        }
    }
    group_add_session(sc, g, s->id);
    if (unplaced) {
        g->d.unplaced++;
        sc->unplaced++;
    } else {
        g->d.upcoming++;
        sc->upcoming++;
    }
    return 0;
}

struct fleet {
    struct lcm_policy_worker *v;
    const struct lcm_worker **w;
    size_t n, cap;
    int oom;
};

static int scan_worker(const char *id, const void *state, void *ud)
{
    struct fleet *f = ud;
    const struct lcm_worker *w = state;
    (void)id;
    if (w->status == LCM_WK_TERMINATED || w->version == 0)
        return 0;
    if (f->n == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 64;
        struct lcm_policy_worker *v = realloc(f->v, nc * sizeof *v);
        if (v)
            f->v = v;
        const struct lcm_worker **ww = realloc(f->w, nc * sizeof *ww);
        if (ww)
            f->w = ww;
        if (!v || !ww) {
            f->oom = 1;
            return 1;
        }
        f->cap = nc;
    }
    lcm_sched_policy_worker(w, &f->v[f->n]);
    f->w[f->n] = w;
    f->n++;
    return 0;
}

struct tpls {
    struct lcm_policy_template *v;
    size_t n, cap;
    int oom;
};

static void tpl_push(struct tpls *t, const struct lcm_template *x, const char *region)
{
    if (!region || !*region)
        return;
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 8;
        struct lcm_policy_template *v = realloc(t->v, nc * sizeof *v);
        if (!v) {
            t->oom = 1;
            return;
        }
        t->v = v;
        t->cap = nc;
    }
    struct lcm_policy_template *p = &t->v[t->n++];
    memset(p, 0, sizeof *p);
    cpy(p->name, sizeof p->name, x->name);
    cpy(p->region, sizeof p->region, region);
    p->license_type = lcm_sched_policy_license(x->license_type);
    p->capacity.cpu_cores = x->capacity.cpu_cores;
    p->capacity.memory_gb = x->capacity.memory_gb;
    p->capacity.storage_gb = x->capacity.storage_gb;
    p->capacity.nodes = x->capacity.nodes;
    if (x->license_type == LCM_LIC_PERSONAL && p->capacity.nodes > LCM_PERSONAL_NODE_LIMIT)
        p->capacity.nodes = LCM_PERSONAL_NODE_LIMIT;
    p->cost_per_hour = x->cost_per_hour;
    p->enabled = x->enabled && !x->deleted;
}

static int scan_template(const char *id, const void *state, void *ud)
{
    struct tpls *t = ud;
    const struct lcm_template *x = state;
    (void)id;
    if (x->deleted || x->version == 0)
        return 0;
    /* one entry per region the template can launch in */
    cJSON *regions = x->regions_json ? cJSON_Parse(x->regions_json) : NULL;
    int any = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, regions) {
        if (it->string && (!x->region || strcmp(x->region, it->string))) {
            tpl_push(t, x, it->string);
            any = 1;
        }
    }
    cJSON_Delete(regions);
    if (x->region && *x->region)
        tpl_push(t, x, x->region);
    else if (!any)
        lcm_debug("autoscaler", "msg=\"template has no region; not used for scale-up\" template=%s", x->name);
    return 0;
}

static int64_t region_count(const struct fleet *f, const char *region)
{
    int64_t n = 0;
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->v[i].region, region))
            n++;
    return n;
}

int64_t lcm_autoscaler_room(const struct lcm_autoscaler *a, const char *region)
{
    if (a->cfg.max_workers_per_region <= 0)
        return -1;
    struct fleet f = { 0 };
    lcm_store_each(a->env.store, "worker", scan_worker, &f);
    int64_t room = a->cfg.max_workers_per_region - region_count(&f, region);
    free(f.v);
    free(f.w);
    return room > 0 ? room : 0;
}

/* ---- what a new worker of a template would not fix ---- */

static int cml_observed(const struct lcm_worker *w)
{
    switch (w->status) {
    case LCM_WK_RUNNING:
    case LCM_WK_DRAINING:
        return w->cml.ready;
    case LCM_WK_STOPPING:
    case LCM_WK_STOPPED:
        /* what it showed while it ran (a stopped worker must not make the next launch
         * look like the first) */
        return w->cml.version && *w->cml.version;
    default:
        return 0;
    }
}

/* The verdict of the worker as if it were running and empty: only what its load cannot
 * explain is left (licence, CML version, node definitions, a need above its capacity). */
static enum lcm_place_reject empty_verdict(const struct lcm_worker *w, const struct lcm_place_req *r)
{
    struct lcm_worker x = *w;   /* shallow copy, only read */
    x.status = LCM_WK_RUNNING;
    x.cml.ready = 1;
    x.nsessions = 0;
    x.sessions = NULL;
    memset(&x.allocated, 0, sizeof x.allocated);
    struct lcm_place_req q = *r;
    q.nports = 0;   /* a new worker has its whole port range free */
    return lcm_placement_check(&x, &q);
}

static void describe_reject(const struct lcm_worker *w, const struct lcm_definition *d,
                            enum lcm_place_reject v, char *buf, size_t len)
{
    switch (v) {
    case LCM_REJ_NODE_DEFINITION:
        for (uint16_t i = 0; i < d->req.n_node_definitions; i++) {
            int has = 0;
            for (uint16_t k = 0; k < w->cml.n_node_definitions && !has; k++)
                has = !strcmp(w->cml.node_definitions[k], d->req.node_definitions[i]);
            if (!has) {
                snprintf(buf, len, "node_definition %s missing on its workers", d->req.node_definitions[i]);
                return;
            }
        }
        snprintf(buf, len, "node_definition missing on its workers");
        return;
    case LCM_REJ_CML_VERSION:
        snprintf(buf, len, "cml_version %s of its workers outside [%s, %s]",
                 w->cml.version ? w->cml.version : "unknown",
                 d->req.cml_version_min ? d->req.cml_version_min : "",
                 d->req.cml_version_max ? d->req.cml_version_max : "");
        return;
    case LCM_REJ_LICENSE:
        snprintf(buf, len, "license %s of its workers does not serve the definition's affinity",
                 lcm_license_name(w->license.type));
        return;
    case LCM_REJ_NODES:
        snprintf(buf, len, "nodes: the definition needs %lld, its workers allow %d",
                 (long long)d->req.need.nodes, (int)lcm_worker_node_limit(w));
        return;
    default:
        snprintf(buf, len, "%s: the definition needs more than an empty worker of it offers",
                 lcm_place_reject_name(v));
        return;
    }
}

int lcm_autoscaler_cannot_serve(const struct lcm_worker *const *ws, size_t n,
                                const struct lcm_definition *d, char *why, size_t whylen)
{
    struct lcm_place_req r;
    lcm_place_req_from_definition(d, &r);
    const struct lcm_worker *first = NULL;
    enum lcm_place_reject first_v = LCM_REJ_NONE;
    size_t seen = 0;
    for (size_t i = 0; i < n; i++) {
        const struct lcm_worker *w = ws[i];
        if (!w || !cml_observed(w))
            continue;
        enum lcm_place_reject v = empty_verdict(w, &r);
        if (v == LCM_REJ_NONE)
            return 0;   /* one of them could serve it: so could a new one */
        if (!first || strcmp(w->id, first->id) < 0) {
            first = w;
            first_v = v;
        }
        seen++;
    }
    if (!first)
        return 0;
    if (why && whylen) {
        char what[200];
        describe_reject(first, d, first_v, what, sizeof what);
        snprintf(why, whylen, "%s (%zu observed, e.g. %s)", what, seen, first->id);
    }
    return 1;
}

/* Sessions of a definition one worker of the template holds (0: none). */
static int64_t sessions_per_worker(const struct lcm_policy_template *p, const struct lcm_capacity *n)
{
    int64_t per = INT64_MAX;
    if (n->cpu_cores > 0 && (int64_t)(p->capacity.cpu_cores / n->cpu_cores) < per)
        per = (int64_t)(p->capacity.cpu_cores / n->cpu_cores);
    if (n->memory_gb > 0 && (int64_t)(p->capacity.memory_gb / n->memory_gb) < per)
        per = (int64_t)(p->capacity.memory_gb / n->memory_gb);
    if (n->storage_gb > 0 && (int64_t)(p->capacity.storage_gb / n->storage_gb) < per)
        per = (int64_t)(p->capacity.storage_gb / n->storage_gb);
    if (n->nodes > 0 && p->capacity.nodes / n->nodes < per)
        per = p->capacity.nodes / n->nodes;
    if (p->license_type == LCM_POLICY_LIC_PERSONAL && per > 1)
        per = 1;
    if (per == INT64_MAX)
        per = 1000;
    return per > 0 ? per : 0;
}

/* ---- commits ---- */

struct act_ctx {
    struct lcm_autoscaler *a;
    char what[32];
    char ids[256];
};

static void act_done(const struct lcm_store_result *res, void *ud)
{
    struct act_ctx *c = ud;
    struct lcm_autoscaler *a = c->a;
    if (a) {
        a->inflight--;
        if (res->status != LCM_STORE_OK) {
            char why[300];
            snprintf(why, sizeof why, "commit refused: %s %s", lcm_store_strerror(res->status), res->message);
            record(a, c->what, "failed", c->ids, NULL, NULL, 0, why);
        }
    }
    free(c);
}

static int submit(struct lcm_autoscaler *a, const char *what, const char *ids,
                  struct lcm_store_change *ch, size_t n)
{
    struct act_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->a = a;
    snprintf(c->what, sizeof c->what, "%s", what);
    snprintf(c->ids, sizeof c->ids, "%s", ids);
    char err[256] = "";
    if (a->env.commit(a->env.commit_ud, ch, n, act_done, c, err, sizeof err) < 0) {
        record(a, what, "failed", ids, NULL, NULL, 0, err);
        free(c);
        return -1;
    }
    a->inflight++;
    return 0;
}

/* JSON texts for a list of new events (owned by the caller; cJSON_free each). */
static int events_to_store(const struct lcm_events *ev, const char *by, struct lcm_store_event *se,
                           char **js)
{
    for (size_t i = 0; i < ev->n; i++) {
        js[i] = cJSON_PrintUnformatted(ev->v[i].data);
        if (!js[i])
            return -1;
        se[i] = (struct lcm_store_event){ ev->v[i].type, js[i], NULL, by };
    }
    return 0;
}

/* Creates count workers of the template; their ids go to out_ids (count entries). */
static int launch(struct lcm_autoscaler *a, const struct lcm_template *tpl, const char *region,
                  int64_t count, const char *reason, int64_t now, char (*out_ids)[40])
{
    struct lcm_store_change *ch = calloc((size_t)count, sizeof *ch);
    struct lcm_events *evs = calloc((size_t)count, sizeof *evs);
    struct lcm_store_event *se = calloc((size_t)count, sizeof *se);
    char **js = calloc((size_t)count, sizeof *js);
    char (*ids)[40] = calloc((size_t)count, sizeof *ids);
    int rc = -1;
    if (!ch || !evs || !se || !js || !ids)
        goto out;
    char idlist[256] = "";
    for (int64_t i = 0; i < count; i++) {
        lcm_events_init(&evs[i]);
        a->seq = a->seq * 1103515245u + 12345u;
        snprintf(ids[i], sizeof ids[i], "w-%08llx%04x", (unsigned long long)(wall_ms() & 0xffffffffLL),
                 (a->seq >> 8) & 0xffff);
        struct lcm_worker_create wc = { .id = ids[i], .region = region, .origin = LCM_ORIGIN_SCALE_UP };
        struct lcm_derr derr;
        if (lcm_worker_cmd_create(&wc, tpl, a->by, now, &evs[i], &derr)) {
            record(a, "scale_up", "refused", NULL, tpl->name, region, count, derr.message);
            goto out;
        }
        /* the reason travels on the worker's own stream (apply ignores extra fields) */
        cJSON_AddStringToObject(evs[i].v[0].data, "reason", reason);
        if (events_to_store(&evs[i], a->by, &se[i], &js[i]) < 0)
            goto out;
        ch[i] = (struct lcm_store_change){ &lcm_kind_worker, ids[i], 0, &se[i], 1, NULL, 0 };
        if (strlen(idlist) + strlen(ids[i]) + 2 < sizeof idlist)
            snprintf(idlist + strlen(idlist), sizeof idlist - strlen(idlist), "%s%s", i ? "," : "", ids[i]);
    }
    rc = submit(a, "scale_up", idlist, ch, (size_t)count);
    if (rc == 0) {
        record(a, "scale_up", "taken", idlist, tpl->name, region, count, reason);
        memcpy(out_ids, ids, (size_t)count * sizeof *ids);
    }
out:
    for (int64_t i = 0; evs && i < count; i++)
        lcm_events_clear(&evs[i]);
    for (int64_t i = 0; js && i < count; i++)
        cJSON_free(js[i]);
    free(ids);
    free(js);
    free(se);
    free(evs);
    free(ch);
    return rc;
}

const char *lcm_autoscaler_guard(const struct lcm_worker *w, size_t busy, int action)
{
    if (busy > 0 || w->nsessions > 0 || w->allocated.cpu_cores > 0 || w->allocated.nodes > 0)
        return "worker holds a non-terminal session";
    switch (action) {
    case LCM_POLICY_DRAIN:
        return w->status == LCM_WK_RUNNING ? NULL : "drain needs a running worker";
    case LCM_POLICY_STOP:
        return w->status == LCM_WK_RUNNING || w->status == LCM_WK_DRAINING ? NULL
                                                                           : "stop needs a running or draining worker";
    case LCM_POLICY_TERMINATE:
        return w->status == LCM_WK_RUNNING || w->status == LCM_WK_DRAINING ||
                       w->status == LCM_WK_STOPPED || w->status == LCM_WK_FAILED
                   ? NULL : "terminate needs a running, draining, stopped or failed worker";
    default:
        return "unknown action";
    }
}

static int retire(struct lcm_autoscaler *a, const struct lcm_worker *w, int action,
                  const char *reason, int64_t now)
{
    struct lcm_events ev;
    lcm_events_init(&ev);
    struct lcm_derr derr = { 0 };
    int rc = -1;
    if (action == LCM_POLICY_DRAIN) {
        int64_t deadline = a->cfg.drain_deadline_minutes > 0 ? now + a->cfg.drain_deadline_minutes * 60 : 0;
        rc = lcm_worker_cmd_drain(w, reason, deadline, a->by, now, &ev, &derr);
        /* drain → stop: once drained, the worker controller stops it */
        if (!rc && w->desired_status != LCM_WK_STOPPED)
            rc = lcm_worker_cmd_set_desired(w, LCM_WK_STOPPED, a->by, now, &ev, &derr);
    } else {
        rc = lcm_worker_cmd_set_desired(w, action == LCM_POLICY_STOP ? LCM_WK_STOPPED : LCM_WK_TERMINATED,
                                        a->by, now, &ev, &derr);
    }
    const char *name = lcm_policy_action_name((enum lcm_policy_action)action);
    if (rc || ev.n == 0) {
        record(a, name, "refused", w->id, NULL, w->region, 0, rc ? derr.message : "nothing to change");
        lcm_events_clear(&ev);
        return -1;
    }
    for (size_t i = 0; i < ev.n; i++)
        if (!cJSON_GetObjectItemCaseSensitive(ev.v[i].data, "reason"))
            cJSON_AddStringToObject(ev.v[i].data, "reason", reason);
    struct lcm_store_event se[4];
    char *js[4] = { 0 };
    if (ev.n <= 4 && events_to_store(&ev, a->by, se, js) == 0) {
        struct lcm_store_change ch = { &lcm_kind_worker, w->id, w->version, se, ev.n, NULL, 0 };
        rc = submit(a, name, w->id, &ch, 1);
        if (rc == 0)
            record(a, name, "taken", w->id, w->template_name, w->region, 0, reason);
    } else {
        rc = -1;
    }
    for (size_t i = 0; i < 4; i++)
        cJSON_free(js[i]);
    lcm_events_clear(&ev);
    return rc;
}

/* ---- the cycle ---- */

/* Attributes the workers just launched (ids, cnt, of template tpl / p) to the demand
 * sessions of the groups they were planned for (soonest first, as many as one worker holds
 * each), and writes the launch counts to lcm:sched:launched. A session whose latest worker
 * is still in flight is covered by it and gets none. */
static void attribute(struct lcm_autoscaler *a, struct scan *sc, const size_t *gi, size_t ng,
                      const struct lcm_template *tpl, const struct lcm_policy_template *p,
                      char (*ids)[40], int64_t cnt)
{
    size_t max = 0, nfv = 0;
    for (size_t x = 0; x < ng; x++)
        max += sc->groups[gi[x]].nsids;
    if (max == 0)
        return;
    const char **fv = malloc(2 * max * sizeof *fv);
    char (*vals)[72] = malloc(max * sizeof *vals);
    if (!fv || !vals) {
        free(fv);
        free(vals);
        return;
    }
    int64_t k = 0;
    double used = 0;   /* share of worker k given out */
    for (size_t x = 0; x < ng && k < cnt; x++) {
        struct group *g = &sc->groups[gi[x]];
        if (!g->def || !lcm_license_serves(tpl->license_type, g->def->license_affinity))
            continue;
        int64_t per = sessions_per_worker(p, &g->def->req.need);
        if (per <= 0)
            continue;
        for (size_t i = 0; i < g->nsids && k < cnt; i++) {
            struct lrec *lr = lrec_find(a, g->sids[i]);
            if (lr && lr->attributed == a->cycle_no)
                continue;
            if (lr && lr->wid[0]) {
                const struct lcm_worker *w = lcm_store_get(a->env.store, "worker", lr->wid);
                if (w && in_flight(w))
                    continue;
            }
            int64_t n = (lr ? lr->n : 0) + 1;
            if (!(lr = lrec_put(a, g->sids[i], n, ids[k])))
                continue;
            lr->attributed = lr->seen = a->cycle_no;
            snprintf(vals[nfv], sizeof vals[nfv], "%lld %s", (long long)n, ids[k]);
            fv[2 * nfv] = lr->sid;
            fv[2 * nfv + 1] = vals[nfv];
            nfv++;
            used += 1.0 / (double)per;
            if (used > 1.0 - 1e-9) {
                k++;
                used = 0;
            }
        }
    }
    send_fields(a, "HSET", fv, nfv, 2);
    free(fv);
    free(vals);
}

static int scale_up(struct lcm_autoscaler *a, struct scan *sc, struct fleet *f, int64_t now)
{
    struct tpls t = { 0 };
    lcm_store_each(a->env.store, "template", scan_template, &t);
    int64_t nowms = wall_ms();
    size_t ng = sc->ngroups, nt = t.n, n0 = f->n;
    struct lcm_policy_demand *dem = malloc((ng ? ng : 1) * sizeof *dem);
    struct lcm_policy_template *tv = malloc((nt ? nt : 1) * sizeof *tv);
    uint8_t *mask = calloc((ng ? ng : 1) * (nt ? nt : 1), 1);   /* [group][template entry] */
    size_t *part = malloc((ng ? ng : 1) * sizeof *part);
    uint8_t *done = calloc(ng ? ng : 1, 1);
    size_t *wt = malloc((n0 ? n0 : 1) * sizeof *wt);           /* template entry per worker */
    const struct lcm_worker **tw = malloc((n0 ? n0 : 1) * sizeof *tw);
    char (*saved)[LCM_POLICY_SHORT_MAX] = malloc((n0 ? n0 : 1) * sizeof *saved);
    unsigned char *booting = calloc(n0 ? n0 : 1, 1);
    int taken = 0, any_cannot = 0;
    if (!dem || !tv || !mask || !part || !done || !wt || !tw || !saved || !booting || t.oom) {
        taken = -1;
        goto out;
    }
    struct lcm_sched_stats st = { 0 };
    if (a->env.sched)
        lcm_sched_get_stats(a->env.sched, &st);
    struct lcm_policy_rejection rej[LCM_REJ__COUNT];
    size_t nrej = 0;
    for (int r = 1; r < LCM_REJ__COUNT; r++)
        if (st.last_counts[r]) {
            cpy(rej[nrej].reason, sizeof rej[nrej].reason, lcm_place_reject_name((enum lcm_place_reject)r));
            rej[nrej++].count = st.last_counts[r];
        }
    int cooldown = nowms < a->up_until_ms;
    /* A worker whose instance runs but whose CML is not ready yet cannot take sessions, and
     * unplaced sessions have not failed on it: for scale-up it is capacity on its way, like
     * a starting one. Shown as "starting" so that the policy counts it instead of launching
     * again while CML boots (restored for scale-down below). */
    for (size_t i = 0; i < n0; i++)
        if (f->w[i] && f->w[i]->status == LCM_WK_RUNNING && !f->w[i]->cml.ready) {
            booting[i] = 1;
            cpy(f->v[i].status, sizeof f->v[i].status, "starting");
        }

    /* Which templates cannot serve which definitions: judged from their workers whose CML
     * was observed. Launching one more of them would only add a worker that rejects the
     * sessions like the others (the runaway this prevents: one launch per cooldown while
     * idle ones are retired). Before any of its workers ran, a template may be tried. */
    for (size_t i = 0; i < n0; i++) {
        wt[i] = SIZE_MAX;
        const struct lcm_worker *w = f->w[i];
        for (size_t ti = 0; w && w->template_name && w->region && ti < nt && wt[i] == SIZE_MAX; ti++)
            if (!strcmp(w->template_name, t.v[ti].name) && !strcmp(w->region, t.v[ti].region))
                wt[i] = ti;
    }
    for (size_t ti = 0; ti < nt; ti++) {
        if (!t.v[ti].enabled)
            continue;
        size_t ntw = 0;
        for (size_t i = 0; i < n0; i++)
            if (wt[i] == ti)
                tw[ntw++] = f->w[i];
        for (size_t gi = 0; ntw && gi < ng; gi++) {
            struct group *g = &sc->groups[gi];
            char why[300];
            if (!g->def || !lcm_autoscaler_cannot_serve(tw, ntw, g->def, why, sizeof why))
                continue;
            mask[gi * nt + ti] = 1;
            int64_t demand = g->d.unplaced + g->d.upcoming;
            unsigned aff = g->d.req.license_affinity;
            /* said only for a template the policy could otherwise have picked */
            if (demand <= 0 || (aff && !(aff & t.v[ti].license_type)) ||
                sessions_per_worker(&t.v[ti], &g->def->req.need) <= 0)
                continue;
            any_cannot = 1;
            char key[200], msg[480];
            snprintf(key, sizeof key, "cannot|%s|%s|%s", t.v[ti].name, t.v[ti].region, g->def->id);
            if (!note_due(a, key, nowms))
                continue;
            snprintf(msg, sizeof msg, "template %s cannot serve definition %s: %s; not launched for its %lld sessions",
                     t.v[ti].name, g->def->id, why, (long long)demand);
            record(a, "scale_up", "refused", NULL, t.v[ti].name, t.v[ti].region, demand, msg);
        }
    }
    a->last_cannot = (size_t)any_cannot;

    if (cooldown && sc->unplaced > 0) {
        char why[128];
        snprintf(why, sizeof why, "cooldown: %lld s left; %zu sessions unplaced",
                 (long long)((a->up_until_ms - nowms + 999) / 1000), sc->unplaced);
        /* one record per 10 s of cooldown at most: the log stays readable */
        if (nowms / 10000 != a->last_note) {
            a->last_note = nowms / 10000;
            record(a, "scale_up", "refused", NULL, NULL, NULL, 0, why);
        }
    }
    if (sc->capped && note_due(a, "capped", nowms)) {
        char why[400];
        snprintf(why, sizeof why, "%zu pending sessions already had %lld launches made for them "
                 "(max_launches_per_session) and are still unplaced, e.g. %s (latest worker %s); "
                 "not launching again for them",
                 sc->capped, (long long)a->cfg.max_launches_per_session, sc->capped_sid ? sc->capped_sid : "-",
                 sc->capped_wid[0] ? sc->capped_wid : "-");
        record(a, "scale_up", "refused", NULL, NULL, NULL, (int64_t)sc->capped, why);
    }

    /* One policy call per set of definitions that the same templates cannot serve (one call
     * in the usual case): those templates are left out of the call, and their workers are
     * shown as draining (counted in their region, no capacity for these sessions). */
    int64_t budget = a->cfg.max_launches_per_cycle > 0 ? a->cfg.max_launches_per_cycle : INT64_MAX;
    for (size_t gi = 0; gi < ng; gi++) {
        if (done[gi])
            continue;
        const uint8_t *m = &mask[gi * nt];
        size_t np = 0, ntv = 0;
        for (size_t gj = gi; gj < ng; gj++)
            if (!done[gj] && (nt == 0 || !memcmp(m, &mask[gj * nt], nt))) {
                done[gj] = 1;
                part[np] = gj;
                dem[np++] = sc->groups[gj].d;
            }
        for (size_t ti = 0; ti < nt; ti++)
            if (!m[ti])
                tv[ntv++] = t.v[ti];
        int masked = ntv < nt;
        if (masked && ntv == 0)
            continue;   /* every template showed it cannot serve them: refused above */
        for (size_t i = 0; masked && i < n0; i++) {
            memcpy(saved[i], f->v[i].status, sizeof saved[i]);
            if (wt[i] != SIZE_MAX && m[wt[i]])
                cpy(f->v[i].status, sizeof f->v[i].status, "draining");
        }
        struct lcm_policy_scale_up_in in = {
            .demand = dem, .n_demand = np, .rejections = rej, .n_rejections = nrej,
            .fleet = f->v, .n_fleet = f->n, .templates = tv, .n_templates = ntv,
            .limits = { .now = now, .max_workers_per_region = a->cfg.max_workers_per_region,
                        .max_launches_per_cycle = a->cfg.max_launches_per_cycle,
                        .cooldown_active = cooldown, .min_warm_workers = a->cfg.min_warm_workers,
                        .stopped_retention_minutes = a->cfg.stopped_retention_minutes },
        };
        struct lcm_policy_scale_up_out out = { 0 };
        struct lcm_policy_eval_info info = { 0 };
        int rc = a->env.policy ? lcm_policy_scale_up(a->env.policy, NULL, &in, &out, &info)
                               : lcm_policy_builtin_scale_up(&in, &out);
        for (size_t i = 0; masked && i < n0; i++)
            memcpy(f->v[i].status, saved[i], sizeof saved[i]);
        for (size_t i = 0; rc >= 0 && i < out.n; i++) {
            const struct lcm_policy_launch *l = &out.launches[i];
            const struct lcm_template *tpl = lcm_store_get(a->env.store, "template", l->template_name);
            int64_t want = l->count, cnt = want;
            char why[200];
            const struct lcm_policy_template *p = NULL;
            for (size_t ti = 0; ti < ntv && !p; ti++)
                if (!strcmp(tv[ti].name, l->template_name) && !strcmp(tv[ti].region, l->region))
                    p = &tv[ti];
            if (!tpl || !tpl->enabled || tpl->deleted) {
                record(a, "scale_up", "refused", NULL, l->template_name, l->region, want, "template unknown or disabled");
                continue;
            }
            if (!p) {
                /* the policy named a template/region it was not offered for this demand
                 * (e.g. one whose workers cannot serve it) */
                record(a, "scale_up", "refused", NULL, l->template_name, l->region, want,
                       "template not offered for this demand (unknown region, or its workers cannot serve it)");
                continue;
            }
            if (cooldown) {
                record(a, "scale_up", "refused", NULL, l->template_name, l->region, want, "scale-up cooldown active");
                continue;
            }
            if (a->cfg.max_workers_per_region > 0) {
                int64_t room = a->cfg.max_workers_per_region - region_count(f, l->region);
                if (room < 0)
                    room = 0;
                if (cnt > room) {
                    snprintf(why, sizeof why, "max_workers_per_region %lld reached in %s: %lld of %lld refused",
                             (long long)a->cfg.max_workers_per_region, l->region, (long long)(cnt - room), (long long)want);
                    record(a, "scale_up", "refused", NULL, l->template_name, l->region, cnt - room, why);
                    cnt = room;
                }
            }
            if (cnt > budget) {
                snprintf(why, sizeof why, "max_launches_per_cycle %lld: %lld of %lld deferred",
                         (long long)a->cfg.max_launches_per_cycle, (long long)(cnt - budget), (long long)want);
                record(a, "scale_up", "refused", NULL, l->template_name, l->region, cnt - budget, why);
                cnt = budget;
            }
            if (cnt <= 0)
                continue;
            char (*ids)[40] = calloc((size_t)cnt, sizeof *ids);
            if (ids && launch(a, tpl, l->region, cnt, l->reason, now, ids) == 0) {
                budget -= cnt;
                taken += (int)cnt;
                attribute(a, sc, part, np, tpl, p, ids, cnt);
                /* count them in the region at once (the read model learns of them later) */
                for (int64_t k = 0; k < cnt && f->n < f->cap; k++) {
                    memset(&f->v[f->n], 0, sizeof f->v[f->n]);
                    cpy(f->v[f->n].region, sizeof f->v[f->n].region, l->region);
                    f->w[f->n] = NULL;
                    f->n++;
                }
            }
            free(ids);
        }
        lcm_policy_scale_up_out_clear(&out);
    }
    for (size_t i = 0; i < n0; i++)
        if (booting[i])
            cpy(f->v[i].status, sizeof f->v[i].status, "running");
    if (taken)
        set_cooldown(a, KEY_UP, &a->up_until_ms, a->cfg.up_cooldown_s);
    if (!taken && !cooldown && !any_cannot && sc->unplaced > 0 && nowms / 10000 != a->last_note) {
        /* demand left unserved: say which limit binds (the policy already planned within
         * them, so there was nothing for the host to cut) */
        char why[256], regions[128] = "";
        int capped = 0, open = 0;
        for (size_t i = 0; i < t.n; i++) {
            if (!t.v[i].enabled)
                continue;
            if (a->cfg.max_workers_per_region > 0 && region_count(f, t.v[i].region) >= a->cfg.max_workers_per_region) {
                capped++;
                if (!strstr(regions, t.v[i].region) && strlen(regions) + strlen(t.v[i].region) + 2 < sizeof regions)
                    snprintf(regions + strlen(regions), sizeof regions - strlen(regions), "%s%s",
                             regions[0] ? "," : "", t.v[i].region);
            } else {
                open++;
            }
        }
        if (capped && !open)
            snprintf(why, sizeof why, "max_workers_per_region %lld reached in %s; %zu sessions unplaced",
                     (long long)a->cfg.max_workers_per_region, regions, sc->unplaced);
        else
            snprintf(why, sizeof why, "no launch planned for %zu unplaced sessions (in-flight capacity covers them, or no template fits)",
                     sc->unplaced);
        a->last_note = nowms / 10000;
        record(a, "scale_up", "refused", NULL, NULL, NULL, 0, why);
    }
out:
    a->last_launched = taken > 0 ? taken : 0;
    free(dem);
    free(tv);
    free(mask);
    free(part);
    free(done);
    free(wt);
    free(tw);
    free(saved);
    free(booting);
    free(t.v);
    return taken;
}

static int scale_down(struct lcm_autoscaler *a, struct scan *sc, struct fleet *f, int64_t now)
{
    int64_t nowms = wall_ms();
    int cooldown = nowms < a->down_until_ms;
    struct lcm_policy_worker *el = malloc((f->n ? f->n : 1) * sizeof *el);
    const struct lcm_worker **elw = malloc((f->n ? f->n : 1) * sizeof *elw);
    size_t nel = 0, running = 0;
    int acted = 0;
    if (!el || !elw) {
        free(el);
        free(elw);
        return -1;
    }
    for (size_t i = 0; i < f->n; i++) {
        const struct lcm_worker *w = f->w[i];
        if (!w)
            continue;
        if (w->status == LCM_WK_RUNNING)
            running++;
        if (busy_of(sc, w->id) || w->nsessions ||
            (a->env.sched && lcm_sched_worker_busy(a->env.sched, w->id)))
            continue;
        if (w->status == LCM_WK_STOPPED) {
            el[nel] = f->v[i];
            elw[nel++] = w;
            continue;
        }
        if (w->status != LCM_WK_RUNNING)
            continue;
        int64_t since = lcm_sched_status_since(w);
        if (now - since < a->cfg.down_cooldown_s)
            continue;   /* just started: give it a chance */
        int64_t idle_from = since;
        if (w->last_activity_at > idle_from)
            idle_from = w->last_activity_at;
        const struct idle_ent *ie = idle_find(a, w->id);
        if (ie && ie->at > idle_from)
            idle_from = ie->at;
        if (now - idle_from < a->cfg.idle_minutes * 60)
            continue;
        el[nel] = f->v[i];
        elw[nel++] = w;
    }
    struct lcm_policy_scale_down_in in = {
        .eligible = el, .n_eligible = nel, .fleet = f->v, .n_fleet = f->n,
        .limits = { .now = now, .max_workers_per_region = a->cfg.max_workers_per_region,
                    .max_launches_per_cycle = a->cfg.max_launches_per_cycle,
                    .cooldown_active = cooldown, .min_warm_workers = a->cfg.min_warm_workers,
                    .stopped_retention_minutes = a->cfg.stopped_retention_minutes },
    };
    struct lcm_policy_scale_down_out out = { 0 };
    struct lcm_policy_eval_info info = { 0 };
    int rc = nel == 0 ? 0
             : a->env.policy ? lcm_policy_scale_down(a->env.policy, NULL, &in, &out, &info)
                             : lcm_policy_builtin_scale_down(&in, &out);
    if (rc < 0)
        goto out;
    if (info.fallback != LCM_POLICY_FB_NONE && info.fallback != LCM_POLICY_FB_NOT_LOADED && info.error[0])
        record(a, "scale_down", "refused", NULL, NULL, NULL, 0, info.error);
    for (size_t i = 0; i < out.n; i++) {
        const struct lcm_policy_retire *r = &out.retire[i];
        const char *name = lcm_policy_action_name(r->action);
        const struct lcm_worker *w = NULL;
        for (size_t k = 0; k < nel && !w; k++)
            if (!strcmp(el[k].id, r->worker_id))
                w = elw[k];
        if (!w) {
            /* not offered to the policy: re-read it to say why in the record */
            w = lcm_store_get(a->env.store, "worker", r->worker_id);
            const char *why = w ? lcm_autoscaler_guard(w, busy_of(sc, w->id), r->action) : "unknown worker";
            record(a, name, "refused", r->worker_id, NULL, NULL, 0, why ? why : "worker is not eligible");
            continue;
        }
        const char *why = lcm_autoscaler_guard(w, busy_of(sc, w->id), r->action);
        if (!why && cooldown && r->action != LCM_POLICY_TERMINATE)
            why = "scale-down cooldown active";
        if (!why && w->status == LCM_WK_RUNNING && (int64_t)running <= a->cfg.min_warm_workers)
            why = "at the warm minimum";
        if (why) {
            record(a, name, "refused", w->id, NULL, w->region, 0, why);
            continue;
        }
        if (retire(a, w, r->action, r->reason, now) == 0) {
            acted++;
            if (w->status == LCM_WK_RUNNING)
                running--;
        }
    }
    if (acted)
        set_cooldown(a, KEY_DOWN, &a->down_until_ms, a->cfg.down_cooldown_s);
out:
    a->last_retired = acted;
    lcm_policy_scale_down_out_clear(&out);
    free(el);
    free(elw);
    return acted;
}

/* Forgets the launches made for sessions that are no longer pending (placed, expired,
 * terminated, gone), here and in Redis. A session the cycle saw pending is kept. */
static void lrec_sweep(struct lcm_autoscaler *a)
{
    const char *drop[256];
    size_t nd = 0;
    for (size_t b = 0; b < LREC_BUCKETS; b++) {
        struct lrec **pp = &a->lrec[b];
        while (*pp) {
            struct lrec *e = *pp;
            const struct lcm_session *s = e->seen == a->cycle_no ? NULL
                                          : lcm_store_get(a->env.store, "session", e->sid);
            if (e->seen == a->cycle_no || (s && s->status == LCM_SS_PENDING)) {
                pp = &e->next;
                continue;
            }
            *pp = e->next;
            a->nlrec--;
            drop[nd++] = e->sid;   /* freed after the HDEL is formatted */
            e->sid = NULL;
            free(e);
            if (nd == 256) {
                send_fields(a, "HDEL", drop, nd, 1);
                for (size_t i = 0; i < nd; i++)
                    free((char *)drop[i]);
                nd = 0;
            }
        }
    }
    send_fields(a, "HDEL", drop, nd, 1);
    for (size_t i = 0; i < nd; i++)
        free((char *)drop[i]);
}

int lcm_autoscaler_cycle(struct lcm_autoscaler *a, int64_t now)
{
    /* decisions of the previous cycle must be in the read model first: they are in-flight
     * capacity, and counting them is what prevents duplicate launches */
    if (a->inflight)
        return 0;
    /* the launches per session of the previous leader first (bounded wait) */
    if (a->loading_until_ms && wall_ms() < a->loading_until_ms)
        return 0;
    a->loading_until_ms = 0;
    a->cycle_no++;
    struct scan sc = { .a = a, .now = now };
    lcm_time_params_default(&sc.tp);
    sc.tp.lead_window_minutes = a->cfg.lead_window_minutes;
    if (a->env.sched) {
        /* demand lies within max(lead window, boot time) of now: the index's window */
        int64_t ahead = a->cfg.lead_window_minutes > a->cfg.worker_boot_minutes
                            ? a->cfg.lead_window_minutes : a->cfg.worker_boot_minutes;
        lcm_sched_each_pending(a->env.sched, now + ahead * 60, scan_pending, &sc);
    } else {
        lcm_store_each(a->env.store, "session", scan_session, &sc);
    }
    struct fleet f = { 0 };
    lcm_store_each(a->env.store, "worker", scan_worker, &f);
    int rc = 0;
    if (sc.oom || f.oom) {
        rc = -1;
        goto out;
    }
    /* room for the workers a scale-up may add to the fleet view */
    size_t extra = a->cfg.max_launches_per_cycle > 0 ? (size_t)a->cfg.max_launches_per_cycle : 1000;
    if (f.n + extra > f.cap) {
        struct lcm_policy_worker *v = realloc(f.v, (f.n + extra) * sizeof *v);
        if (v)
            f.v = v;
        const struct lcm_worker **ww = realloc(f.w, (f.n + extra) * sizeof *ww);
        if (ww)
            f.w = ww;
        if (v && ww)
            f.cap = f.n + extra;
    }
    a->last_at = now;
    a->last_groups = sc.ngroups;
    a->last_unplaced = sc.unplaced;
    a->last_upcoming = sc.upcoming;
    a->last_capped = sc.capped;
    a->last_waiting = sc.waiting;
    a->last_cannot = 0;
    int up = sc.ngroups ? scale_up(a, &sc, &f, now) : 0;
    if (up < 0) {
        rc = -1;
        goto out;
    }
    int down = up == 0 ? scale_down(a, &sc, &f, now) : 0;
    rc = up + (down > 0 ? down : 0);
    lrec_sweep(a);
out:
    scan_free(&sc);
    free(f.v);
    free(f.w);
    return rc;
}

cJSON *lcm_autoscaler_status_json(const struct lcm_autoscaler *a, int64_t now)
{
    int64_t nowms = wall_ms();
    (void)now;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "scale_up_cooldown_remaining_s",
                            a->up_until_ms > nowms ? (double)(a->up_until_ms - nowms) / 1e3 : 0);
    cJSON_AddNumberToObject(o, "scale_down_cooldown_remaining_s",
                            a->down_until_ms > nowms ? (double)(a->down_until_ms - nowms) / 1e3 : 0);
    cJSON_AddNumberToObject(o, "inflight_commits", (double)a->inflight);
    cJSON *l = cJSON_AddObjectToObject(o, "last_cycle");
    cJSON_AddNumberToObject(l, "demand_groups", (double)a->last_groups);
    cJSON_AddNumberToObject(l, "unplaced", (double)a->last_unplaced);
    cJSON_AddNumberToObject(l, "upcoming", (double)a->last_upcoming);
    cJSON_AddNumberToObject(l, "launched", (double)a->last_launched);
    cJSON_AddNumberToObject(l, "retired", (double)a->last_retired);
    /* unplaced sessions left out of scale-up: a worker launched for them has room (the
     * scheduler places them next), or they had max_launches_per_session already */
    cJSON_AddNumberToObject(l, "waiting_for_launched_worker", (double)a->last_waiting);
    cJSON_AddNumberToObject(l, "launch_capped", (double)a->last_capped);
    cJSON_AddBoolToObject(l, "template_cannot_serve", a->last_cannot != 0);
    cJSON_AddNumberToObject(o, "sessions_with_launches", (double)a->nlrec);
    cJSON *lim = cJSON_AddObjectToObject(o, "limits");
    cJSON_AddNumberToObject(lim, "max_workers_per_region", (double)a->cfg.max_workers_per_region);
    cJSON_AddNumberToObject(lim, "max_launches_per_cycle", (double)a->cfg.max_launches_per_cycle);
    cJSON_AddNumberToObject(lim, "scale_up_cooldown_s", (double)a->cfg.up_cooldown_s);
    cJSON_AddNumberToObject(lim, "scale_down_cooldown_s", (double)a->cfg.down_cooldown_s);
    cJSON_AddNumberToObject(lim, "idle_minutes", (double)a->cfg.idle_minutes);
    cJSON_AddNumberToObject(lim, "min_warm_workers", (double)a->cfg.min_warm_workers);
    cJSON_AddNumberToObject(lim, "stopped_retention_minutes", (double)a->cfg.stopped_retention_minutes);
    cJSON_AddNumberToObject(lim, "worker_boot_minutes", a->cfg.worker_boot_minutes);
    cJSON_AddNumberToObject(lim, "max_launches_per_session", (double)a->cfg.max_launches_per_session);
    return o;
}

const char *lcm_autoscaler_best_template(const struct lcm_autoscaler *a, const char *definition_id,
                                         int64_t *per_worker, const char **region)
{
    *per_worker = 0;
    *region = NULL;
    const struct lcm_definition *d = lcm_store_get(a->env.store, "definition", definition_id);
    if (!d)
        return NULL;
    struct tpls t = { 0 };
    lcm_store_each(a->env.store, "template", scan_template, &t);
    struct fleet f = { 0 };
    lcm_store_each(a->env.store, "worker", scan_worker, &f);
    const char *best = NULL;
    double best_cost = 0;
    for (size_t i = 0; i < t.n; i++) {
        const struct lcm_policy_template *p = &t.v[i];
        unsigned aff = lcm_sched_policy_license(d->license_affinity);
        if (!p->enabled || (aff && !(aff & p->license_type)))
            continue;
        int64_t per = sessions_per_worker(p, &d->req.need);
        if (per <= 0)
            continue;
        /* a template whose workers showed they cannot serve it adds no availability */
        const struct lcm_worker **tw = f.n ? malloc(f.n * sizeof *tw) : NULL;
        size_t ntw = 0;
        for (size_t k = 0; tw && k < f.n; k++)
            if (f.w[k]->template_name && !strcmp(f.w[k]->template_name, p->name) && f.w[k]->region &&
                !strcmp(f.w[k]->region, p->region))
                tw[ntw++] = f.w[k];
        int cannot = ntw && lcm_autoscaler_cannot_serve(tw, ntw, d, NULL, 0);
        free(tw);
        if (cannot)
            continue;
        double cost = p->cost_per_hour / (double)per;
        if (!best || cost < best_cost) {
            const struct lcm_template *x = lcm_store_get(a->env.store, "template", p->name);
            best = x ? x->name : NULL;
            *region = x ? (x->region ? x->region : NULL) : NULL;
            best_cost = cost;
            *per_worker = per;
        }
    }
    free(t.v);
    free(f.v);
    free(f.w);
    return best;
}
