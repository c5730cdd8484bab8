/* The sessions controller: level-triggered pipeline of DOMAIN.md "The session pipeline".
 * Each pass looks at the sessions that need attention (sessions_index.h: kept current from
 * the store's change feed, so a pass is O(active) however many sessions are archived or
 * booked ahead) and takes at most one action per session (claimed through the controller
 * framework): record a step as started, make its external call, record the outcome. Steps
 * resume from what the session records; a deadline timer wakes the pass at the earliest
 * timeslot rule, retry or poll that is due. */
#include "sessions.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "app.h"
#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "controllers.h"
#include "ctl.h"
#include "domain/definition.h"
#include "domain/lab.h"
#include "domain/session.h"
#include "domain/session_time.h"
#include "domain/topology.h"
#include "domain/worker.h"
#include "plugin/plugin.h"
#include "sessions_index.h"
#include "sessions_int.h"
#include "sessions_tx.h"
#include "store/store.h"

#define BY "controller:sessions"
#define NAME "sessions"

enum { SIG_RUNNING = 1, SIG_FINISHED = 2, SIG_GRADED = 4 };

/* In-memory companions of sessions: signals from CloudEvents, retry/poll times, and which
 * commands this process has sent. Losing them (crash, failover) only delays: the recorded
 * steps and the polls of LDS/grading/CML recover every decision. */
struct rt {
    char *sid;
    unsigned sigs;
    int64_t not_before;           /* monotonic ms: backoff or poll of the current step */
    int64_t lds_poll_at, grading_poll_at;
    int64_t sent[LCM_STEP__COUNT];/* monotonic ms a start/stop/wipe was last sent */
    uint32_t fresh;               /* step bit: started by this process, no call made yet */
    int lds_refused;              /* the last LDS create of this process got an HTTP answer
                                     (a refusal: nothing was created), not a lost answer */
    struct rt *next;
};
#define NRT 1024
/* A full re-index of every session this often: the change feed keeps the index current, this
 * only bounds the delay should a change ever be missed (level-triggered, like the sweep). */
#define RESCAN_MS 60000

struct sparams {
    struct lcm_time_params tp;
    long step_timeout_ms, backoff_ms, backoff_max_ms, poll_ms, lds_poll_ms, grading_poll_ms;
    long boot_timeout_s, wait_timeout_s, grading_timeout_s, archive_after_s;
    int retries;
};

struct lcm_sessions_ctl {
    struct lcm_app *app;
    struct sparams p;
    struct rt *rt[NRT];
    struct event *deadline_ev;
    int64_t due;                  /* monotonic ms of the earliest due item of the last pass */
    struct lcm_sidx *idx;         /* sessions to look at; built when leadership starts */
    int running;                  /* leader and started */
    int indexed;                  /* idx holds every session that needs attention */
    int64_t next_rescan;          /* monotonic ms of the next full re-index */
    int sub;                      /* store change subscription, or -1 */
    const char *lds_prefix, *grading_prefix;   /* CloudEvent type prefixes (config) */
};

/* ---- small helpers ------------------------------------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int64_t wall(void) { return (int64_t)time(NULL); }

static unsigned long hstr(const char *s)
{
    unsigned long h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h;
}

static struct rt *rt_get(struct lcm_sessions_ctl *c, const char *sid, int create)
{
    unsigned long b = hstr(sid) % NRT;
    for (struct rt *r = c->rt[b]; r; r = r->next)
        if (!strcmp(r->sid, sid))
            return r;
    if (!create)
        return NULL;
    struct rt *r = calloc(1, sizeof(*r));
    if (!r || !(r->sid = strdup(sid))) {
        free(r);
        return NULL;
    }
    r->next = c->rt[b];
    c->rt[b] = r;
    return r;
}

static void rt_drop(struct lcm_sessions_ctl *c, const char *sid)
{
    for (struct rt **pp = &c->rt[hstr(sid) % NRT]; *pp; pp = &(*pp)->next) {
        if (!strcmp((*pp)->sid, sid)) {
            struct rt *r = *pp;
            *pp = r->next;
            free(r->sid);
            free(r);
            return;
        }
    }
}

static void due_at(struct lcm_sessions_ctl *c, int64_t mono)
{
    if (mono > 0 && (c->due == 0 || mono < c->due))
        c->due = mono;
}

/* Wall time `when` (seconds) as a monotonic deadline, from the sub-second wall clock: `now`
 * is a whole second, so (when - now) alone could fire up to a second late, and with an
 * expiry grace of 0 that second is the whole window between instantiating and expired. */
static void due_wall(struct lcm_sessions_ctl *c, int64_t when, int64_t now)
{
    if (when > 0 && when >= now) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        int64_t in_ms = when * 1000 - ((int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000);
        due_at(c, mono_ms() + (in_ms > 0 ? in_ms : 0) + 20);
    }
}

static const struct lcm_session *get_s(struct lcm_sessions_ctl *c, const char *id)
{
    return id ? lcm_store_get(c->app->store, "session", id) : NULL;
}
static const struct lcm_worker *get_w(struct lcm_sessions_ctl *c, const char *id)
{
    return id ? lcm_store_get(c->app->store, "worker", id) : NULL;
}
static const struct lcm_definition *get_d(struct lcm_sessions_ctl *c, const char *id)
{
    return id ? lcm_store_get(c->app->store, "definition", id) : NULL;
}
static const struct lcm_lab *get_l(struct lcm_sessions_ctl *c, const char *id)
{
    return id ? lcm_store_get(c->app->store, "lab", id) : NULL;
}

/* The lab record bound to s (NULL when none or it serves someone else now). */
static const struct lcm_lab *bound_lab(struct lcm_sessions_ctl *c, const struct lcm_session *s)
{
    const struct lcm_lab *l = get_l(c, s->lab_record_id);
    return l && l->active_session_id && !strcmp(l->active_session_id, s->id) ? l : NULL;
}

static void claim_release(struct lcm_sessions_ctl *c, const char *sid)
{
    lcm_ctl_release(c->app->ctl, "session", sid);
}

static long backoff(const struct lcm_sessions_ctl *c, int attempts)
{
    long b = c->p.backoff_ms;
    for (int i = 1; i < attempts && b < c->p.backoff_max_ms; i++)
        b *= 2;
    return b > c->p.backoff_max_ms ? c->p.backoff_max_ms : b;
}

void lcm_sessions_lab_title(const char *sid, char *out, size_t cap)
{
    snprintf(out, cap, "lcm-%.56s", sid);
}

struct findq { const char *w, *id; const struct lcm_lab *found; };

static int find_each(const char *id, const void *st, void *ud)
{
    const struct lcm_lab *l = st;
    struct findq *q = ud;
    (void)id;
    if (l->worker_id && l->cml_lab_id && !strcmp(l->worker_id, q->w) && !strcmp(l->cml_lab_id, q->id)) {
        q->found = l;
        return 1;
    }
    return 0;
}

const struct lcm_lab *lcm_sessions_find_lab(const struct lcm_store *st, const char *worker_id,
                                            const char *cml_lab_id)
{
    struct findq q = { worker_id, cml_lab_id, NULL };
    if (worker_id && cml_lab_id)
        lcm_store_each(st, "lab", find_each, &q);
    return q.found;
}

void lcm_sessions_lab_record_id(const char *sid, char *out, size_t cap)
{
    snprintf(out, cap, "lab-%.120s", sid);
}

/* ---- commits ------------------------------------------------------------------------- */

struct cdone {
    struct lcm_sessions_ctl *c;
    char *sid;
    char what[64];
    long backoff_on_error;
};

static void commit_done(const struct lcm_store_result *res, void *ud)
{
    struct cdone *d = ud;
    struct lcm_sessions_ctl *c = d->c;
    if (res->status == LCM_STORE_ECONFLICT) {
        lcm_debug("sessions", "msg=\"commit conflict, will retry\" session=%s what=%s", d->sid,
                  d->what);
    } else if (res->status != LCM_STORE_OK) {
        lcm_warn("sessions", "msg=\"commit failed\" session=%s what=%s err=\"%s %s\"", d->sid,
                 d->what, lcm_store_strerror(res->status), res->message);
        struct rt *r = rt_get(c, d->sid, 1);
        if (r)
            r->not_before = mono_ms() + (d->backoff_on_error ? d->backoff_on_error : 500);
    }
    claim_release(c, d->sid);
    lcm_ctl_wake(c->app->ctl, NAME);
    free(d->sid);
    free(d);
}

/* Commits tx under the session's claim (already held) and releases it when done. */
static int commit(struct lcm_sessions_ctl *c, struct lcm_tx *tx, const char *sid, const char *what)
{
    char err[256];
    struct cdone *d = calloc(1, sizeof(*d));
    if (!d || !(d->sid = strdup(sid))) {
        free(d);
        lcm_tx_free(tx);
        claim_release(c, sid);
        return -1;
    }
    d->c = c;
    snprintf(d->what, sizeof(d->what), "%s", what);
    d->backoff_on_error = c->p.backoff_ms;
    if (lcm_tx_nevents(tx) == 0 && !tx->failed) {
        lcm_tx_free(tx);
        free(d->sid);
        free(d);
        claim_release(c, sid);
        return 0;
    }
    if (lcm_tx_commit(tx, c->app->ctl, commit_done, d, err, sizeof(err)) < 0) {
        lcm_warn("sessions", "msg=\"cannot commit\" session=%s what=%s err=\"%s\"", sid, what, err);
        struct rt *r = rt_get(c, sid, 1);
        if (r)
            r->not_before = mono_ms() + c->p.backoff_ms;
        free(d->sid);
        free(d);
        lcm_tx_free(tx);
        claim_release(c, sid);
        return -1;
    }
    lcm_tx_free(tx);
    return 0;
}

static struct lcm_session *tx_s(struct lcm_tx *tx, const struct lcm_session *s)
{
    return lcm_tx_state(tx, &lcm_kind_session, s->id, s);
}

static void tx_step(struct lcm_tx *tx, const struct lcm_session *s, int step, int state,
                    const char *error)
{
    struct lcm_session *ss = tx_s(tx, s);
    struct lcm_derr de;
    if (ss)
        lcm_tx_check(tx, lcm_session_cmd_step(ss, (enum lcm_step)step, (enum lcm_step_state)state,
                                              error, BY, wall(), lcm_tx_events(tx, ss), &de), &de);
}

static void tx_to(struct lcm_tx *tx, const struct lcm_session *s, int to, const char *reason)
{
    struct lcm_session *ss = tx_s(tx, s);
    struct lcm_derr de;
    if (ss && lcm_fsm_allowed(&lcm_fsm_session, ss->status, to))
        lcm_tx_check(tx, lcm_session_cmd_transition(ss, (enum lcm_session_status)to, reason, BY,
                                                    wall(), lcm_tx_events(tx, ss), &de), &de);
}

static void observe_step_done(struct lcm_sessions_ctl *c, const struct lcm_session *s, int step)
{
    const struct lcm_step_progress *p = &s->steps[step];
    if (p->started_at) {
        char lab[64];
        snprintf(lab, sizeof(lab), "step=\"%s\"", lcm_step_name(step));
        lcm_metrics_observe(c->app->metrics, "lcm_pipeline_step_seconds", lab,
                            (double)(wall() - p->started_at));
    }
}

/* Claims s and commits "step started"; the pass after it runs the step's action. */
static void begin_step(struct lcm_sessions_ctl *c, const struct lcm_session *s, int step)
{
    if (!lcm_ctl_claim(c->app->ctl, "session", s->id))
        return;
    struct rt *r = rt_get(c, s->id, 1);
    if (r) {
        r->fresh |= 1u << step;
        r->sent[step] = 0;
    }
    struct lcm_tx tx;
    lcm_tx_init(&tx);
    tx_step(&tx, s, step, LCM_STEP_STARTED, NULL);
    lcm_info("sessions", "msg=\"step started\" session=%s step=%s attempt=%d", s->id,
             lcm_step_name(step), s->steps[step].attempts + 1);
    commit(c, &tx, s->id, lcm_step_name(step));
}

/* Records the failure of the current attempt of step (claim held). A step out of retries,
 * or failing for good, terminates the session (which then releases everything); for a
 * session already terminated the step is given up and teardown goes on. */
static void step_fail(struct lcm_sessions_ctl *c, const char *sid, int step, int retryable, const char *fmt,
                      ...) __attribute__((format(printf, 5, 6)));
static void step_fail(struct lcm_sessions_ctl *c, const char *sid, int step, int retryable, const char *fmt,
                      ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const struct lcm_session *s = get_s(c, sid);
    if (!s) {
        claim_release(c, sid);
        return;
    }
    int attempts = s->steps[step].attempts;
    int final = attempts >= 1 + c->p.retries || (!retryable && s->status != LCM_SS_TERMINATED);
    struct lcm_tx tx;
    lcm_tx_init(&tx);
    tx_step(&tx, s, step, LCM_STEP_FAILED, msg);
    lcm_metrics_inc(c->app->metrics, "lcm_pipeline_step_failures_total", NULL, 1);
    if (final && s->status != LCM_SS_TERMINATED) {
        char reason[512];
        snprintf(reason, sizeof(reason), "%s failed after %d attempt%s: %.400s",
                 lcm_step_name(step), attempts, attempts == 1 ? "" : "s", msg);
        tx_to(&tx, s, LCM_SS_TERMINATED, reason);
        lcm_warn("sessions", "msg=\"step failed, terminating session\" session=%s step=%s "
                 "attempts=%d err=\"%s\"", sid, lcm_step_name(step), attempts, msg);
    } else {
        struct rt *r = rt_get(c, sid, 1);
        if (r)
            r->not_before = mono_ms() + backoff(c, attempts);
        lcm_warn("sessions", "msg=\"step failed, will retry\" session=%s step=%s attempts=%d "
                 "err=\"%s\"", sid, lcm_step_name(step), attempts, msg);
    }
    commit(c, &tx, sid, "step failed");
}

/* Ends the action without a commit; the step is looked at again after delay_ms. */
static void later(struct lcm_sessions_ctl *c, const char *sid, long delay_ms)
{
    struct rt *r = rt_get(c, sid, 1);
    if (r)
        r->not_before = mono_ms() + delay_ms;
    claim_release(c, sid);
    lcm_ctl_wake(c->app->ctl, NAME);
}

/* ---- plugin calls -------------------------------------------------------------------- */

struct op {
    struct lcm_sessions_ctl *c;
    char *sid;
    int step;
    int what;
    char *lab_record_id;          /* verify/adopt: the lab record in question */
    char *cml_lab_id;
    char **ids;                   /* search: lab ids on the worker; tags: node ids */
    char ***tags;                 /* tags: new tag list per node (NULL-terminated) */
    size_t nids, idx;
};

static struct op *op_new(struct lcm_sessions_ctl *c, const char *sid, int step, int what)
{
    struct op *o = calloc(1, sizeof(*o));
    if (!o || !(o->sid = strdup(sid))) {
        free(o);
        return NULL;
    }
    o->c = c;
    o->step = step;
    o->what = what;
    return o;
}

static void op_free(struct op *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->nids; i++) {
        free(o->ids ? o->ids[i] : NULL);
        if (o->tags && o->tags[i]) {
            for (char **t = o->tags[i]; *t; t++)
                free(*t);
            free(o->tags[i]);
        }
    }
    free(o->ids);
    free(o->tags);
    free(o->lab_record_id);
    free(o->cml_lab_id);
    free(o->sid);
    free(o);
}

static void fill_call(struct lcm_sessions_ctl *c, struct lcm_call *call, const char *sid,
                      const struct lcm_worker *w, int runtime)
{
    memset(call, 0, sizeof(*call));
    call->size = sizeof(*call);
    call->correlation_id = sid;
    call->deadline_ms = mono_ms() + c->p.step_timeout_ms;
    if (w) {
        call->region = w->region;
        call->worker_id = w->id;
        call->instance_id = w->instance_id;
        if (runtime)
            call->endpoint = w->endpoint ? w->endpoint : w->private_ip;
    }
}

/* Starts op through the plugin registry; a synchronous refusal fails the step at once. */
static void op_call(struct op *o, enum lcm_plugin_kind kind, size_t off, const struct lcm_worker *w,
                 const void *args, lcm_done_fn done)
{
    struct lcm_sessions_ctl *c = o->c;
    struct lcm_call cl;
    struct lcm_error e = { 0 };
    fill_call(c, &cl, o->sid, w, kind == LCM_KIND_RUNTIME);
    if (lcm_plugins_call(c->app->plugins, kind, off, &cl, args, done, o, &e, NULL) == 0)
        return;
    char sid[160];
    snprintf(sid, sizeof(sid), "%s", o->sid);
    int step = o->step;
    op_free(o);
    step_fail(c, sid, step, e.retryable || e.code == LCM_E_UNAVAIL, "%s", e.message[0] ? e.message
                                                                            : "plugin refused the call");
}

#define RT_OFF(m) offsetof(struct lcm_runtime_ops, m)
#define DL_OFF(m) offsetof(struct lcm_delivery_ops, m)
#define GR_OFF(m) offsetof(struct lcm_grading_ops, m)

static int implements(struct lcm_sessions_ctl *c, enum lcm_plugin_kind kind, size_t off)
{
    struct lcm_plugin *p = lcm_plugins_get(c->app->plugins, kind);
    return p && lcm_plugin_implements(p, off);
}

/* The session and its worker again after an asynchronous call (the read model may have
 * moved on); NULL when the session is gone or left the status the call was made for. */
static const struct lcm_session *recheck(struct op *o)
{
    const struct lcm_session *s = get_s(o->c, o->sid);
    if (!s || s->steps[o->step].state != LCM_STEP_STARTED) {
        claim_release(o->c, o->sid);
        lcm_ctl_wake(o->c->app->ctl, NAME);
        return NULL;
    }
    return s;
}

/* Common failure path of a done callback. */
static void op_failed(struct op *o, const struct lcm_error *e, const char *what)
{
    struct lcm_sessions_ctl *c = o->c;
    char sid[160];
    snprintf(sid, sizeof(sid), "%s", o->sid);
    int step = o->step;
    op_free(o);
    step_fail(c, sid, step, e->retryable || e->code == LCM_E_TIMEOUT || e->code == LCM_E_UNAVAIL ||
                                e->code == LCM_E_THROTTLED,
              "%s: %s", what, e->message);
}

/* The session of a done callback when its step is still the one this op runs; otherwise
 * NULL, with the op freed (recheck released the claim). */
static const struct lcm_session *op_recheck(struct op *o)
{
    const struct lcm_session *s = recheck(o);
    if (!s)
        op_free(o);
    return s;
}

/* op_recheck, then the common failure path when the call failed (e): NULL, op ended. */
static const struct lcm_session *op_resume(struct op *o, const struct lcm_error *e,
                                           const char *what)
{
    const struct lcm_session *s = op_recheck(o);
    if (s && e) {
        op_failed(o, e, what);
        return NULL;
    }
    return s;
}

/* The session and its worker for the next call of a multi-call op (search, tags); NULL
 * (claim released, op freed) when either is gone. */
static const struct lcm_session *op_next_target(struct op *o, const struct lcm_worker **w)
{
    const struct lcm_session *s = get_s(o->c, o->sid);
    *w = s ? get_w(o->c, s->worker_id) : NULL;
    if (!s || !*w) {
        claim_release(o->c, o->sid);
        op_free(o);
        return NULL;
    }
    return s;
}

/* ---- instantiating: resolve lab ------------------------------------------------------ */

enum { W_IMPORT = 1, W_VERIFY, W_SEARCH_LIST, W_SEARCH_GET };

static void tx_bind(struct lcm_tx *tx, const struct lcm_session *s, const struct lcm_lab *l,
                    const char *cml_state)
{
    struct lcm_lab *ls = lcm_tx_state(tx, &lcm_kind_lab, l->id, l);
    struct lcm_session *ss = tx_s(tx, s);
    struct lcm_derr de;
    if (!ls || !ss)
        return;
    if (cml_state && !(ls->status == LCM_LAB_WIPED && !strcmp(cml_state, "DEFINED_ON_CORE")) &&
        lcm_lab_status_from_cml(cml_state) >= 0)
        lcm_tx_check(tx, lcm_lab_cmd_observe(ls, cml_state, BY, wall(), lcm_tx_events(tx, ls), &de),
                     &de);
    lcm_tx_check(tx, lcm_lab_cmd_bind(ls, s->id, BY, wall(), lcm_tx_events(tx, ls), &de), &de);
    lcm_tx_check(tx, lcm_session_cmd_bind_lab(ss, l->id, l->cml_lab_id, BY, wall(),
                                              lcm_tx_events(tx, ss), &de), &de);
    tx_step(tx, s, LCM_STEP_RESOLVE_LAB, LCM_STEP_DONE, NULL);
}

/* A new lab record for a CML lab this session imported (or found by its title after a
 * crash), bound to the session, in one commit. */
static void adopt_new(struct op *o, const struct lcm_session *s, const char *cml_lab_id,
                      const char *how)
{
    struct lcm_sessions_ctl *c = o->c;
    char lid[160], title[80];
    lcm_sessions_lab_record_id(s->id, lid, sizeof(lid));
    lcm_sessions_lab_title(s->id, title, sizeof(title));
    struct lcm_tx tx;
    struct lcm_derr de;
    lcm_tx_init(&tx);
    struct lcm_lab *ls = lcm_tx_state(&tx, &lcm_kind_lab, lid, NULL);
    struct lcm_session *ss = tx_s(&tx, s);
    if (ls && ss) {
        lcm_tx_check(&tx, lcm_lab_cmd_create(lid, s->worker_id, cml_lab_id, title, s->definition_id,
                                             0, BY, wall(), lcm_tx_events(&tx, ls), &de), &de);
        lcm_tx_check(&tx, lcm_lab_cmd_transition(ls, LCM_LAB_DEFINED, how, BY, wall(),
                                                 lcm_tx_events(&tx, ls), &de), &de);
        if (s->status == LCM_SS_INSTANTIATING) {
            lcm_tx_check(&tx, lcm_lab_cmd_bind(ls, s->id, BY, wall(), lcm_tx_events(&tx, ls), &de),
                         &de);
            lcm_tx_check(&tx, lcm_session_cmd_bind_lab(ss, lid, cml_lab_id, BY, wall(),
                                                       lcm_tx_events(&tx, ss), &de), &de);
            tx_step(&tx, s, LCM_STEP_RESOLVE_LAB, LCM_STEP_DONE, NULL);
        } else {
            /* the session left instantiating meanwhile: keep the lab as a free record */
            tx_step(&tx, s, LCM_STEP_RESOLVE_LAB, LCM_STEP_FAILED, "session no longer instantiating");
        }
    }
    lcm_info("sessions", "msg=\"lab resolved\" session=%s lab=%s cml_lab_id=%s how=\"%s\"", s->id,
             lid, cml_lab_id, how);
    observe_step_done(c, s, LCM_STEP_RESOLVE_LAB);
    commit(c, &tx, s->id, "resolve_lab");
}

static void do_import(struct op *o, const struct lcm_session *s);

static void import_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct op *o = ud;
    const struct lcm_session *s = get_s(o->c, o->sid);
    if (e) {
        op_failed(o, e, "import");
        return;
    }
    const struct lcm_rt_imported *im = result;
    if (!s || !s->worker_id) {
        /* The session went away meanwhile; the lab has our title, so discovery and a later
         * search find it. */
        claim_release(o->c, o->sid);
        op_free(o);
        return;
    }
    adopt_new(o, s, im->lab_id, "imported");
    op_free(o);
}

static void do_import(struct op *o, const struct lcm_session *s)
{
    struct lcm_sessions_ctl *c = o->c;
    const struct lcm_definition *d = get_d(c, s->definition_id);
    const struct lcm_worker *w = get_w(c, s->worker_id);
    if (!d || !d->topology || !*d->topology) {
        char sid[160];
        snprintf(sid, sizeof(sid), "%s", o->sid);
        op_free(o);
        step_fail(c, sid, LCM_STEP_RESOLVE_LAB, 0, "definition %s has no topology to import",
                  s->definition_id);
        return;
    }
    struct rt *r = rt_get(c, s->id, 1);
    if (r)
        r->fresh &= ~(1u << LCM_STEP_RESOLVE_LAB);   /* from here on, a retry searches first */
    char title[80];
    lcm_sessions_lab_title(s->id, title, sizeof(title));
    struct lcm_rt_lab_import_args a = { .topology_yaml = d->topology,
                                        .topology_len = strlen(d->topology), .title = title };
    o->what = W_IMPORT;
    lcm_info("sessions", "msg=\"importing lab\" session=%s worker=%s title=%s", s->id, s->worker_id,
             title);
    op_call(o, LCM_KIND_RUNTIME, RT_OFF(lab_import), w, &a, import_done);
}

/* 1 when a lab record of this worker already holds cml_lab_id. */
static int cml_lab_known(struct lcm_sessions_ctl *c, const char *worker_id, const char *cml_lab_id);

static void search_next(struct op *o);

static void search_get_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct op *o = ud;
    const struct lcm_session *s = op_recheck(o);
    if (!s)
        return;
    if (!e) {
        const struct lcm_rt_lab *lab = result;
        char title[80];
        lcm_sessions_lab_title(s->id, title, sizeof(title));
        if (lab->title && !strcmp(lab->title, title)) {
            adopt_new(o, s, o->ids[o->idx], "found by title after a restart");
            op_free(o);
            return;
        }
    } else if (e->code != LCM_E_NOTFOUND) {
        op_failed(o, e, "search lab by title");
        return;
    }
    o->idx++;
    search_next(o);
}

static void search_next(struct op *o)
{
    struct lcm_sessions_ctl *c = o->c;
    const struct lcm_worker *w;
    const struct lcm_session *s = op_next_target(o, &w);
    if (!s)
        return;
    while (o->idx < o->nids && cml_lab_known(c, w->id, o->ids[o->idx]))
        o->idx++;
    if (o->idx >= o->nids) {
        /* Not there. When this attempt was recorded by another process (or before our own
         * import call whose outcome we lost), that import may still be running on CML: look
         * again until it would have timed out, then import. */
        struct rt *r = rt_get(c, s->id, 0);
        int fresh = r && (r->fresh & (1u << LCM_STEP_RESOLVE_LAB));
        int64_t started = s->steps[LCM_STEP_RESOLVE_LAB].started_at;
        if (!fresh && started && wall() - started <= c->p.step_timeout_ms / 1000 + 1) {
            lcm_debug("sessions", "msg=\"lab not found by title yet; an earlier import may be "
                      "running\" session=%s", s->id);
            later(c, o->sid, c->p.poll_ms > 500 ? c->p.poll_ms : 500);
            op_free(o);
            return;
        }
        do_import(o, s);
        return;
    }
    struct lcm_rt_lab_args a = { .lab_id = o->ids[o->idx] };
    o->what = W_SEARCH_GET;
    op_call(o, LCM_KIND_RUNTIME, RT_OFF(lab_get), w, &a, search_get_done);
}

static void search_list_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct op *o = ud;
    const struct lcm_session *s = op_resume(o, e, "list labs");
    if (!s)
        return;
    const struct lcm_rt_lab_ids *ids = result;
    o->ids = ids->ids.n ? calloc(ids->ids.n, sizeof(char *)) : NULL;
    for (size_t i = 0; o->ids && i < ids->ids.n; i++)
        if ((o->ids[o->nids] = strdup(ids->ids.v[i])))
            o->nids++;
    search_next(o);
}

static void verify_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct op *o = ud;
    struct lcm_sessions_ctl *c = o->c;
    const struct lcm_session *s = op_recheck(o);
    if (!s)
        return;
    const struct lcm_lab *l = get_l(c, o->lab_record_id);
    if (!l || l->active_session_id) {
        later(c, o->sid, 0);
        op_free(o);
        return;
    }
    struct lcm_tx tx;
    struct lcm_derr de;
    lcm_tx_init(&tx);
    if (e && e->code == LCM_E_NOTFOUND) {
        /* The record says wiped, CML does not have it: orphan it and look again. */
        struct lcm_lab *ls = lcm_tx_state(&tx, &lcm_kind_lab, l->id, l);
        const struct lcm_worker *w = get_w(c, l->worker_id);
        if (ls)
            lcm_tx_check(&tx, lcm_lab_cmd_transition(ls, LCM_LAB_ORPHANED, "not found on CML", BY,
                                                     wall(), lcm_tx_events(&tx, ls), &de), &de);
        if (w && lcm_ports_lease(&w->ports, l->id)) {
            struct lcm_worker *ws = lcm_tx_state(&tx, &lcm_kind_worker, w->id, w);
            if (ws)
                lcm_tx_check(&tx, lcm_worker_cmd_ports_release(ws, l->id, BY, wall(),
                                                               lcm_tx_events(&tx, ws), &de), &de);
        }
        lcm_info("sessions", "msg=\"reuse candidate gone from CML\" session=%s lab=%s", s->id, l->id);
        commit(c, &tx, s->id, "orphan reuse candidate");
        op_free(o);
        return;
    }
    if (e) {
        lcm_tx_free(&tx);
        op_failed(o, e, "verify reusable lab");
        return;
    }
    const struct lcm_rt_lab *lab = result;
    if (!lab->state || (strcmp(lab->state, "DEFINED_ON_CORE") && strcmp(lab->state, "STOPPED"))) {
        /* Not idle on CML after all: record what CML says and choose again. */
        struct lcm_lab *ls = lcm_tx_state(&tx, &lcm_kind_lab, l->id, l);
        if (ls && lab->state && lcm_lab_status_from_cml(lab->state) >= 0)
            lcm_tx_check(&tx, lcm_lab_cmd_observe(ls, lab->state, BY, wall(), lcm_tx_events(&tx, ls),
                                                  &de), &de);
        if (lcm_tx_nevents(&tx) == 0) {
            lcm_tx_free(&tx);
            later(c, o->sid, c->p.poll_ms);
        } else {
            commit(c, &tx, s->id, "reuse candidate busy");
        }
        op_free(o);
        return;
    }
    tx_bind(&tx, s, l, lab->state);
    lcm_info("sessions", "msg=\"lab reused\" session=%s lab=%s cml_lab_id=%s", s->id, l->id,
             l->cml_lab_id);
    lcm_metrics_inc(c->app->metrics, "lcm_lab_reuse_total", NULL, 1);
    observe_step_done(c, s, LCM_STEP_RESOLVE_LAB);
    commit(c, &tx, s->id, "reuse lab");
    op_free(o);
}

static int cml_lab_known(struct lcm_sessions_ctl *c, const char *worker_id, const char *cml_lab_id)
{
    return lcm_sessions_find_lab(c->app->store, worker_id, cml_lab_id) != NULL;
}

static int reuse_pick(const char *id, const void *st, void *ud)
{
    const struct lcm_lab *l = st;
    struct { struct lcm_sessions_ctl *c; const struct lcm_session *s; const struct lcm_lab *best; } *q = ud;
    (void)id;
    if (l->active_session_id || l->pending_action >= 0 || !l->cml_lab_id || !l->definition_id ||
        !l->worker_id || strcmp(l->worker_id, q->s->worker_id) ||
        strcmp(l->definition_id, q->s->definition_id))
        return 0;
    if (l->status != LCM_LAB_WIPED && l->status != LCM_LAB_STOPPED && l->status != LCM_LAB_DEFINED)
        return 0;
    if (lcm_ctl_claimed(q->c->app->ctl, "lab", l->id))
        return 0;
    /* wiped first (DOMAIN.md), then stopped, then defined */
    static const int rank[LCM_LAB__COUNT] = { [LCM_LAB_WIPED] = 3, [LCM_LAB_STOPPED] = 2,
                                              [LCM_LAB_DEFINED] = 1 };
    if (!q->best || rank[l->status] > rank[q->best->status])
        q->best = l;
    return 0;
}

static void act_resolve(struct lcm_sessions_ctl *c, const struct lcm_session *s, const struct lcm_worker *w,
                        const struct lcm_definition *d, struct rt *r)
{
    if (!lcm_ctl_claim(c->app->ctl, "session", s->id))
        return;
    struct lcm_tx tx;
    lcm_tx_init(&tx);
    if (s->lab_record_id) {
        tx_step(&tx, s, LCM_STEP_RESOLVE_LAB, LCM_STEP_DONE, NULL);
        commit(c, &tx, s->id, "resolve_lab");
        return;
    }
    char lid[160];
    lcm_sessions_lab_record_id(s->id, lid, sizeof(lid));
    const struct lcm_lab *own = get_l(c, lid);
    if (own && own->worker_id && !strcmp(own->worker_id, s->worker_id) &&
        (!own->active_session_id || !strcmp(own->active_session_id, s->id))) {
        /* Our own record exists (e.g. discovery found the lab first): bind it. */
        tx_bind(&tx, s, own, NULL);
        commit(c, &tx, s->id, "resolve_lab own record");
        return;
    }
    struct op *o = op_new(c, s->id, LCM_STEP_RESOLVE_LAB, 0);
    if (!o) {
        later(c, s->id, c->p.backoff_ms);
        return;
    }
    if (d->lab_reuse_enabled) {
        struct { struct lcm_sessions_ctl *c; const struct lcm_session *s; const struct lcm_lab *best; } q =
            { c, s, NULL };
        lcm_store_each(c->app->store, "lab", reuse_pick, &q);
        if (q.best) {
            o->what = W_VERIFY;
            o->lab_record_id = strdup(q.best->id);
            struct lcm_rt_lab_args a = { .lab_id = q.best->cml_lab_id };
            op_call(o, LCM_KIND_RUNTIME, RT_OFF(lab_get), w, &a, verify_done);
            return;
        }
    }
    int first_try = r && (r->fresh & (1u << LCM_STEP_RESOLVE_LAB)) &&
                    s->steps[LCM_STEP_RESOLVE_LAB].attempts == 1;
    if (!first_try && implements(c, LCM_KIND_RUNTIME, RT_OFF(list_labs))) {
        /* An earlier attempt (maybe of a process that died) may have imported the lab
         * already: look for our deterministic title before importing again. */
        o->what = W_SEARCH_LIST;
        op_call(o, LCM_KIND_RUNTIME, RT_OFF(list_labs), w, NULL, search_list_done);
        return;
    }
    do_import(o, s);
}

/* ---- instantiating: ports, tags ------------------------------------------------------ */

static void act_ports(struct lcm_sessions_ctl *c, const struct lcm_session *s, const struct lcm_worker *w,
                      const struct lcm_definition *d, const struct lcm_lab *l)
{
    if (!lcm_ctl_claim(c->app->ctl, "session", s->id))
        return;
    struct lcm_tx tx;
    struct lcm_derr de;
    lcm_tx_init(&tx);
    struct lcm_session *ss = tx_s(&tx, s);
    if (!ss) {
        commit(c, &tx, s->id, "allocate_ports");
        return;
    }
    if (l->nports || d->nports == 0) {
        /* The lab owns its ports already (a reused lab), or the definition needs none. */
        if (l->nports && s->nports == 0) {
            const char *names[LCM_PORTS_MAX_PER_LAB];
            uint16_t ports[LCM_PORTS_MAX_PER_LAB];
            size_t n = 0;
            for (uint16_t i = 0; i < l->nports && n < LCM_PORTS_MAX_PER_LAB; i++, n++) {
                names[n] = l->ports[i].name;
                ports[n] = l->ports[i].port;
            }
            lcm_tx_check(&tx, lcm_session_cmd_set_ports(ss, names, ports, n, BY, wall(),
                                                        lcm_tx_events(&tx, ss), &de), &de);
        }
        tx_step(&tx, s, LCM_STEP_ALLOCATE_PORTS, LCM_STEP_DONE, NULL);
        observe_step_done(c, s, LCM_STEP_ALLOCATE_PORTS);
        commit(c, &tx, s->id, "allocate_ports");
        return;
    }
    size_t n = d->nports > LCM_PORTS_MAX_PER_LAB ? LCM_PORTS_MAX_PER_LAB : d->nports;
    uint16_t ports[LCM_PORTS_MAX_PER_LAB];
    const char *names[LCM_PORTS_MAX_PER_LAB];
    for (size_t i = 0; i < n; i++)
        names[i] = d->ports[i].name;
    struct lcm_worker *ws = lcm_tx_state(&tx, &lcm_kind_worker, w->id, w);
    struct lcm_lab *ls = lcm_tx_state(&tx, &lcm_kind_lab, l->id, l);
    if (!ws || !ls) {
        commit(c, &tx, s->id, "allocate_ports");
        return;
    }
    /* One atomic write across the worker's port registry, the lab record that owns the
     * ports and the session: a crash leaves either all three or none. */
    int rc = lcm_worker_cmd_ports_allocate(ws, l->id, n, ports, BY, wall(), lcm_tx_events(&tx, ws),
                                           &de);
    if (rc == LCM_DERR_EXHAUSTED) {
        lcm_tx_free(&tx);
        step_fail(c, s->id, LCM_STEP_ALLOCATE_PORTS, 1, "ports: %s", de.message);
        return;
    }
    lcm_tx_check(&tx, rc, &de);
    lcm_tx_check(&tx, lcm_lab_cmd_assign_ports(ls, names, ports, n, BY, wall(),
                                               lcm_tx_events(&tx, ls), &de), &de);
    lcm_tx_check(&tx, lcm_session_cmd_set_ports(ss, names, ports, n, BY, wall(),
                                                lcm_tx_events(&tx, ss), &de), &de);
    tx_step(&tx, s, LCM_STEP_ALLOCATE_PORTS, LCM_STEP_DONE, NULL);
    if (tx.failed) {
        char msg[300];
        snprintf(msg, sizeof(msg), "%s", tx.derr.message);
        lcm_tx_free(&tx);
        step_fail(c, s->id, LCM_STEP_ALLOCATE_PORTS, 1, "ports: %s", msg);
        return;
    }
    lcm_info("sessions", "msg=\"ports allocated\" session=%s lab=%s worker=%s n=%zu first=%u",
             s->id, l->id, w->id, n, (unsigned)ports[0]);
    observe_step_done(c, s, LCM_STEP_ALLOCATE_PORTS);
    commit(c, &tx, s->id, "allocate_ports");
}

static int is_port_tag(const char *t)
{
    const char *colon = strchr(t, ':');
    if (!colon || !colon[1])
        return 0;
    char proto[16];
    size_t n = (size_t)(colon - t);
    if (n == 0 || n >= sizeof(proto))
        return 0;
    memcpy(proto, t, n);
    proto[n] = 0;
    if (lcm_proto_parse(proto) < 0)
        return 0;
    for (const char *p = colon + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return 1;
}

static uint16_t session_port(const struct lcm_session *s, const char *name)
{
    for (uint16_t i = 0; i < s->nports; i++)
        if (!strcmp(s->ports[i].name, name))
            return s->ports[i].port;
    return 0;
}

static void tags_next(struct op *o);

static void tags_set_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct op *o = ud;
    (void)result;
    if (!op_resume(o, e, "set node tags"))
        return;
    o->idx++;
    tags_next(o);
}

static void tags_next(struct op *o)
{
    struct lcm_sessions_ctl *c = o->c;
    const struct lcm_worker *w;
    const struct lcm_session *s = op_next_target(o, &w);
    if (!s)
        return;
    while (o->idx < o->nids && !o->tags[o->idx])
        o->idx++;
    if (o->idx < o->nids) {
        size_t nt = 0;
        while (o->tags[o->idx][nt])
            nt++;
        struct lcm_rt_node_tags_args a = { .lab_id = o->cml_lab_id, .node_id = o->ids[o->idx],
                                           .tags = { (const char *const *)o->tags[o->idx], nt } };
        op_call(o, LCM_KIND_RUNTIME, RT_OFF(node_set_tags), w, &a, tags_set_done);
        return;
    }
    struct lcm_tx tx;
    lcm_tx_init(&tx);
    tx_step(&tx, s, LCM_STEP_SYNC_TAGS, LCM_STEP_DONE, NULL);
    observe_step_done(c, s, LCM_STEP_SYNC_TAGS);
    commit(c, &tx, s->id, "sync_tags");
    op_free(o);
}

static void tags_list_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct op *o = ud;
    struct lcm_sessions_ctl *c = o->c;
    const struct lcm_session *s = op_resume(o, e, "list nodes");
    if (!s)
        return;
    const struct lcm_definition *d = get_d(c, s->definition_id);
    const struct lcm_rt_nodes *nodes = result;
    o->ids = nodes->n ? calloc(nodes->n, sizeof(char *)) : NULL;
    o->tags = nodes->n ? calloc(nodes->n, sizeof(char **)) : NULL;
    if (nodes->n && (!o->ids || !o->tags)) {
        later(c, o->sid, c->p.backoff_ms);
        op_free(o);
        return;
    }
    for (size_t i = 0; i < nodes->n; i++) {
        const struct lcm_rt_node *nd = &nodes->v[i];
        o->ids[i] = strdup(nd->id ? nd->id : "");
        o->nids++;
        /* the proto:port tags this node should carry */
        size_t want = 0;
        for (uint16_t k = 0; d && k < d->nports; k++)
            if (nd->label && d->ports[k].node_label && !strcmp(d->ports[k].node_label, nd->label) &&
                session_port(s, d->ports[k].name))
                want++;
        char **nt = calloc(nd->tags.n + want + 1, sizeof(char *));
        size_t m = 0;
        int changed = 0;
        for (size_t t = 0; nt && t < nd->tags.n; t++) {
            if (is_port_tag(nd->tags.v[t])) {
                changed = 1;
                continue;            /* replaced below; other tags are kept */
            }
            nt[m++] = strdup(nd->tags.v[t]);
        }
        for (uint16_t k = 0; nt && d && k < d->nports; k++) {
            uint16_t port = session_port(s, d->ports[k].name);
            if (!nd->label || !d->ports[k].node_label || strcmp(d->ports[k].node_label, nd->label) ||
                !port)
                continue;
            char tag[64];
            snprintf(tag, sizeof(tag), "%s:%u", lcm_proto_name(d->ports[k].protocol), (unsigned)port);
            nt[m++] = strdup(tag);
            changed = 1;
        }
        if (nt && changed) {
            /* unchanged when the node already carries exactly these port tags */
            size_t same = 0, old_ports = 0;
            for (size_t t = 0; t < nd->tags.n; t++) {
                if (!is_port_tag(nd->tags.v[t]))
                    continue;
                old_ports++;
                for (size_t q = 0; q < m; q++)
                    if (nt[q] && !strcmp(nt[q], nd->tags.v[t]))
                        same++;
            }
            if (old_ports == want && same == want)
                changed = 0;
        }
        if (!changed) {
            for (size_t q = 0; nt && q < m; q++)
                free(nt[q]);
            free(nt);
            nt = NULL;
        }
        o->tags[i] = nt;
    }
    o->idx = 0;
    tags_next(o);
}

/* ---- instantiating: start, LDS ------------------------------------------------------- */

enum { W_GET = 10, W_CONVERGED, W_START, W_STOP, W_WIPE, W_LDS_CREATE, W_LDS_FIND, W_LDS_DEVICES,
       W_LDS_URL, W_LDS_POLL, W_LDS_RELEASE, W_EXTRACT, W_GRD_CREATE, W_GRD_REQUEST, W_GRD_RESULT };

static void lab_cmd_done(void *ud, const struct lcm_error *e, const void *result);

static void converged_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct op *o = ud;
    struct lcm_sessions_ctl *c = o->c;
    const struct lcm_session *s = op_resume(o, e, "check converged");
    if (!s)
        return;
    const struct lcm_rt_converged *cv = result;
    if (!cv->converged) {
        later(c, o->sid, c->p.poll_ms);
        op_free(o);
        return;
    }
    const struct lcm_lab *l = bound_lab(c, s);
    struct lcm_tx tx;
    struct lcm_derr de;
    lcm_tx_init(&tx);
    struct lcm_lab *ls = l ? lcm_tx_state(&tx, &lcm_kind_lab, l->id, l) : NULL;
    if (ls)
        lcm_tx_check(&tx, lcm_lab_cmd_observe(ls, "BOOTED", BY, wall(), lcm_tx_events(&tx, ls), &de),
                     &de);
    tx_step(&tx, s, LCM_STEP_START_LAB, LCM_STEP_DONE, NULL);
    lcm_info("sessions", "msg=\"lab converged\" session=%s lab=%s", s->id, l ? l->id : "-");
    observe_step_done(c, s, LCM_STEP_START_LAB);
    commit(c, &tx, s->id, "start_lab");
    op_free(o);
}

/* stop/wipe landed on CML: record what the lab is now, and finish the step. */
static void teardown_lab_state(struct op *o, const struct lcm_session *s, const char *cml_state)
{
    struct lcm_sessions_ctl *c = o->c;
    const struct lcm_lab *l = bound_lab(c, s);
    struct lcm_tx tx;
    struct lcm_derr de;
    lcm_tx_init(&tx);
    struct lcm_lab *ls = l ? lcm_tx_state(&tx, &lcm_kind_lab, l->id, l) : NULL;
    if (ls && !cml_state) {
        lcm_tx_check(&tx, lcm_lab_cmd_transition(ls, LCM_LAB_ORPHANED, "not found on CML", BY, wall(),
                                                 lcm_tx_events(&tx, ls), &de), &de);
    } else if (ls && o->step == LCM_STEP_WIPE_LAB) {
        if (ls->status == LCM_LAB_WIPING)
            lcm_tx_check(&tx, lcm_lab_cmd_transition(ls, LCM_LAB_WIPED, NULL, BY, wall(),
                                                     lcm_tx_events(&tx, ls), &de), &de);
        else if (ls->status != LCM_LAB_WIPED)
            lcm_tx_check(&tx, lcm_lab_cmd_observe(ls, cml_state, BY, wall(), lcm_tx_events(&tx, ls),
                                                  &de), &de);
    } else if (ls && !(ls->status == LCM_LAB_WIPED && !strcmp(cml_state, "DEFINED_ON_CORE"))) {
        lcm_tx_check(&tx, lcm_lab_cmd_observe(ls, cml_state, BY, wall(), lcm_tx_events(&tx, ls), &de),
                     &de);
    }
    tx_step(&tx, s, o->step, LCM_STEP_DONE, NULL);
    lcm_info("sessions", "msg=\"step done\" session=%s step=%s lab=%s cml_state=%s", s->id,
             lcm_step_name(o->step), l ? l->id : "-", cml_state ? cml_state : "gone");
    observe_step_done(c, s, o->step);
    commit(c, &tx, s->id, lcm_step_name(o->step));
}

static void lab_get_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct op *o = ud;
    struct lcm_sessions_ctl *c = o->c;
    const struct lcm_session *s = op_recheck(o);
    if (!s)
        return;
    const struct lcm_lab *l = bound_lab(c, s);
    const struct lcm_worker *w = get_w(c, s->worker_id);
    if (!l || !w) {
        later(c, o->sid, 0);
        op_free(o);
        return;
    }
    struct rt *r = rt_get(c, s->id, 1);
    int64_t now = mono_ms();
    const struct lcm_step_progress *p = &s->steps[o->step];
    long limit = o->step == LCM_STEP_START_LAB ? c->p.boot_timeout_s : c->p.wait_timeout_s;
    if (e && e->code == LCM_E_NOTFOUND) {
        if (o->step == LCM_STEP_START_LAB) {
            op_failed(o, e, "lab vanished from CML");
        } else {
            teardown_lab_state(o, s, NULL);
            op_free(o);
        }
        return;
    }
    if (e) {
        op_failed(o, e, "get lab");
        return;
    }
    const struct lcm_rt_lab *lab = result;
    const char *st = lab->state ? lab->state : "";
    int started = !strcmp(st, "STARTED") || !strcmp(st, "BOOTED");
    int goal = 0;
    size_t cmd_off = 0;
    switch (o->step) {
    case LCM_STEP_START_LAB:
        goal = started;
        cmd_off = RT_OFF(lab_start);
        break;
    case LCM_STEP_STOP_LAB:
        goal = !strcmp(st, "STOPPED") || !strcmp(st, "DEFINED_ON_CORE");
        cmd_off = RT_OFF(lab_stop);
        break;
    default:
        goal = !strcmp(st, "DEFINED_ON_CORE");
        cmd_off = RT_OFF(lab_wipe);
        if (started) {
            /* Wipe needs a stopped lab; stop it first (a start raced us). */
            cmd_off = RT_OFF(lab_stop);
        }
        break;
    }
    if (goal && o->step == LCM_STEP_START_LAB) {
        struct lcm_rt_lab_args a = { .lab_id = l->cml_lab_id };
        o->what = W_CONVERGED;
        op_call(o, LCM_KIND_RUNTIME, RT_OFF(lab_converged), w, &a, converged_done);
        return;
    }
    if (goal) {
        teardown_lab_state(o, s, st);
        op_free(o);
        return;
    }
    if (p->started_at && wall() - p->started_at > limit) {
        char sid[160];
        snprintf(sid, sizeof(sid), "%s", o->sid);
        int step = o->step;
        op_free(o);
        step_fail(c, sid, step, 1, "lab %s still %s after %lds", l->cml_lab_id, st, limit);
        return;
    }
    /* Send the command once per attempt window, then poll. */
    if (r && r->sent[o->step] && now - r->sent[o->step] < limit * 1000) {
        later(c, o->sid, c->p.poll_ms);
        op_free(o);
        return;
    }
    if (r)
        r->sent[o->step] = now;
    struct lcm_rt_lab_args a = { .lab_id = l->cml_lab_id };
    o->what = W_START;
    lcm_info("sessions", "msg=\"lab command\" session=%s step=%s lab=%s cml_state=%s", s->id,
             lcm_step_name(o->step), l->id, st);
    op_call(o, LCM_KIND_RUNTIME, cmd_off, w, &a, lab_cmd_done);
}

static void lab_cmd_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct op *o = ud;
    struct lcm_sessions_ctl *c = o->c;
    (void)result;
    if (!op_recheck(o))
        return;
    if (e && e->code != LCM_E_CONFLICT) {
        struct rt *r = rt_get(c, o->sid, 0);
        if (r)
            r->sent[o->step] = 0;
        op_failed(o, e, "lab command");
        return;
    }
    later(c, o->sid, c->p.poll_ms);
    op_free(o);
}

/* start_lab, stop_lab, wipe_lab: read the lab's state, send the command once, poll. */
static void act_lab_state(struct lcm_sessions_ctl *c, const struct lcm_session *s, const struct lcm_worker *w,
                          const struct lcm_lab *l, int step)
{
    if (!lcm_ctl_claim(c->app->ctl, "session", s->id))
        return;
    if (step == LCM_STEP_WIPE_LAB && l->status == LCM_LAB_STOPPED) {
        /* Say we are wiping before we do, so the record shows it. */
        struct lcm_tx tx;
        struct lcm_derr de;
        lcm_tx_init(&tx);
        struct lcm_lab *ls = lcm_tx_state(&tx, &lcm_kind_lab, l->id, l);
        if (ls)
            lcm_tx_check(&tx, lcm_lab_cmd_transition(ls, LCM_LAB_WIPING, NULL, BY, wall(),
                                                     lcm_tx_events(&tx, ls), &de), &de);
        commit(c, &tx, s->id, "lab wiping");
        return;
    }
    struct op *o = op_new(c, s->id, step, W_GET);
    if (!o) {
        later(c, s->id, c->p.backoff_ms);
        return;
    }
    struct lcm_rt_lab_args a = { .lab_id = l->cml_lab_id };
    op_call(o, LCM_KIND_RUNTIME, RT_OFF(lab_get), w, &a, lab_get_done);
}

static char *devices_json(const struct lcm_session *s, const struct lcm_definition *d,
                          const struct lcm_worker *w, struct lcm_lds_device *out, size_t *n)
{
    cJSON *arr = cJSON_CreateArray();
    *n = 0;
    const char *host = w->private_ip ? w->private_ip : w->public_ip ? w->public_ip : "";
    for (uint16_t k = 0; arr && k < d->nports && *n < LCM_PORTS_MAX_PER_LAB; k++) {
        const struct lcm_port_spec *ps = &d->ports[k];
        int visible = d->n_user_visible_devices == 0;
        for (uint16_t v = 0; !visible && v < d->n_user_visible_devices; v++)
            visible = ps->node_label && !strcmp(d->user_visible_devices[v], ps->node_label);
        uint16_t port = session_port(s, ps->name);
        if (!visible || !port || !ps->node_label)
            continue;
        out[*n] = (struct lcm_lds_device){ .device_label = ps->node_label,
                                           .protocol = lcm_proto_name(ps->protocol),
                                           .host = host, .port = port };
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "device_label", ps->node_label);
        cJSON_AddStringToObject(o, "protocol", lcm_proto_name(ps->protocol));
        cJSON_AddStringToObject(o, "host", host);
        cJSON_AddNumberToObject(o, "port", port);
        cJSON_AddItemToArray(arr, o);
        (*n)++;
    }
    char *txt = arr ? cJSON_PrintUnformatted(arr) : NULL;
    cJSON_Delete(arr);
    return txt;
}

static void lds_create(struct op *o, const struct lcm_session *s, const struct lcm_worker *w,
                       const struct lcm_definition *d);

static void lds_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct op *o = ud;
    struct lcm_sessions_ctl *c = o->c;
    if (o->what == W_LDS_CREATE && e) {
        struct rt *r = rt_get(c, o->sid, 1);
        if (r)
            r->lds_refused = e->http_status >= 400 && e->code != LCM_E_TIMEOUT;
    }
    if (o->what == W_LDS_FIND && e && e->code == LCM_E_NOTFOUND) {
        /* No LDS session of ours yet. When the earlier create was refused, none will come:
         * create now. When its answer was lost (timeout, dropped connection, a process that
         * died), LDS may still be working on it: look again until that request would have
         * timed out, then create. */
        const struct lcm_session *s = op_recheck(o);
        if (!s)
            return;
        const struct lcm_worker *w = get_w(c, s->worker_id);
        const struct lcm_definition *d = get_d(c, s->definition_id);
        struct rt *r = rt_get(c, s->id, 0);
        int64_t started = s->steps[LCM_STEP_LDS_SESSION].started_at;
        if (!w || !d || (!(r && r->lds_refused) && started &&
                         wall() - started <= c->p.step_timeout_ms / 1000 + 1)) {
            if (w && d)
                lcm_debug("sessions", "msg=\"LDS session not found yet; an earlier create may "
                          "still be running\" session=%s", s->id);
            later(c, o->sid, c->p.poll_ms > 500 ? c->p.poll_ms : 500);
            op_free(o);
            return;
        }
        lds_create(o, s, w, d);
        return;
    }
    const struct lcm_session *s =
        op_resume(o, e, o->what == W_LDS_CREATE ? "LDS create session"
                        : o->what == W_LDS_FIND ? "LDS find session"
                        : o->what == W_LDS_DEVICES ? "LDS set devices" : "LDS launch URL");
    if (!s)
        return;
    struct lcm_tx tx;
    struct lcm_derr de;
    lcm_tx_init(&tx);
    struct lcm_session *ss = tx_s(&tx, s);
    if (!ss) {
        commit(c, &tx, s->id, "lds");
        op_free(o);
        return;
    }
    if (o->what == W_LDS_CREATE || o->what == W_LDS_FIND) {
        const struct lcm_lds_session *ls = result;
        lcm_tx_check(&tx, lcm_session_cmd_user_session(ss, ls->id, NULL, NULL,
                                                       ls->state ? ls->state : "created", BY, wall(),
                                                       lcm_tx_events(&tx, ss), &de), &de);
        if (o->what == W_LDS_FIND)
            lcm_info("sessions", "msg=\"LDS session found (created by an earlier attempt)\" "
                     "session=%s lds_session_id=%s", s->id, ls->id);
        else
            lcm_info("sessions", "msg=\"LDS session created\" session=%s lds_session_id=%s",
                     s->id, ls->id);
    } else if (o->what == W_LDS_DEVICES) {
        lcm_tx_check(&tx, lcm_session_cmd_user_session(ss, NULL, NULL,
                                                       o->cml_lab_id ? o->cml_lab_id : "[]", NULL, BY,
                                                       wall(), lcm_tx_events(&tx, ss), &de), &de);
    } else {
        const struct lcm_lds_url *u = result;
        lcm_tx_check(&tx, lcm_session_cmd_user_session(ss, NULL, u->url, NULL, NULL, BY, wall(),
                                                       lcm_tx_events(&tx, ss), &de), &de);
        tx_step(&tx, s, LCM_STEP_LDS_SESSION, LCM_STEP_DONE, NULL);
        observe_step_done(c, s, LCM_STEP_LDS_SESSION);
    }
    commit(c, &tx, s->id, "lds");
    op_free(o);
}

static void lds_create(struct op *o, const struct lcm_session *s, const struct lcm_worker *w,
                       const struct lcm_definition *d)
{
    struct rt *r = rt_get(o->c, s->id, 1);
    if (r)
        r->fresh &= ~(1u << LCM_STEP_LDS_SESSION);   /* from here on, a retry looks first */
    const char *owner = s->owner && *s->owner ? s->owner : "lcm";
    struct lcm_lds_create_args a = {
        .form_qualified_name = d->fqn ? d->fqn : d->name,
        .external_id = s->id,
        .candidate_id = owner,
        .timeslot_start_ms = (s->start ? s->start : s->created_at) * 1000,
        .timeslot_end_ms = s->end * 1000,
        .max_length_minutes = d->max_duration_minutes,
    };
    o->what = W_LDS_CREATE;
    op_call(o, LCM_KIND_DELIVERY, DL_OFF(session_create), w, &a, lds_done);
}

static void act_lds(struct lcm_sessions_ctl *c, const struct lcm_session *s, const struct lcm_worker *w,
                    const struct lcm_definition *d)
{
    if (!lcm_ctl_claim(c->app->ctl, "session", s->id))
        return;
    struct op *o = op_new(c, s->id, LCM_STEP_LDS_SESSION, 0);
    if (!o) {
        later(c, s->id, c->p.backoff_ms);
        return;
    }
    if (!s->user_session.lds_session_id) {
        /* An earlier attempt (maybe of a process that died) may have created the LDS session
         * and lost the answer: look for it by our id before creating another. */
        struct rt *r = rt_get(c, s->id, 0);
        int first_try = r && (r->fresh & (1u << LCM_STEP_LDS_SESSION)) &&
                        s->steps[LCM_STEP_LDS_SESSION].attempts == 1;
        if (!first_try && implements(c, LCM_KIND_DELIVERY, DL_OFF(session_find))) {
            /* An hour of slack for clocks that disagree; the external id is what matches. */
            int64_t since = s->created_at > 3600 ? s->created_at - 3600 : 0;
            struct lcm_lds_find_args a = { .form_qualified_name = d->fqn ? d->fqn : d->name,
                                           .external_id = s->id,
                                           .created_after_ms = since * 1000 };
            o->what = W_LDS_FIND;
            op_call(o, LCM_KIND_DELIVERY, DL_OFF(session_find), w, &a, lds_done);
            return;
        }
        lds_create(o, s, w, d);
        return;
    }
    if (!s->user_session.devices_json) {
        struct lcm_lds_device devs[LCM_PORTS_MAX_PER_LAB];
        size_t n = 0;
        o->cml_lab_id = devices_json(s, d, w, devs, &n);   /* kept for the commit */
        struct lcm_lds_devices_args a = { .lds_session_id = s->user_session.lds_session_id,
                                          .part = 1, .v = devs, .n = n };
        o->what = W_LDS_DEVICES;
        op_call(o, LCM_KIND_DELIVERY, DL_OFF(set_devices), w, &a, lds_done);
        return;
    }
    struct lcm_lds_session_args a = { .lds_session_id = s->user_session.lds_session_id };
    o->what = W_LDS_URL;
    op_call(o, LCM_KIND_DELIVERY, DL_OFF(launch_url), w, &a, lds_done);
}

/* ---- ready / running: LDS state ------------------------------------------------------ */

static unsigned lds_state_sigs(const char *st)
{
    if (!st)
        return 0;
    if (!strcmp(st, "running") || !strcmp(st, "paused"))
        return SIG_RUNNING;
    if (!strcmp(st, "user_finished") || !strcmp(st, "ended") || !strcmp(st, "finalized"))
        return SIG_RUNNING | SIG_FINISHED;
    return 0;
}

static void lds_poll_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct op *o = ud;
    struct lcm_sessions_ctl *c = o->c;
    struct rt *r = rt_get(c, o->sid, 1);
    if (!e && r) {
        const struct lcm_lds_session *ls = result;
        unsigned add = lds_state_sigs(ls->part_state ? ls->part_state : ls->state);
        if (!add)
            add = lds_state_sigs(ls->state);
        r->sigs |= add;
    } else if (e) {
        lcm_debug("sessions", "msg=\"LDS poll failed\" session=%s err=\"%s\"", o->sid, e->message);
    }
    claim_release(c, o->sid);
    lcm_ctl_wake(c->app->ctl, NAME);
    op_free(o);
}

static void poll_lds(struct lcm_sessions_ctl *c, const struct lcm_session *s, struct rt *r)
{
    if (!s->user_session.lds_session_id || !lcm_ctl_claim(c->app->ctl, "session", s->id))
        return;
    r->lds_poll_at = mono_ms() + c->p.lds_poll_ms;
    struct op *o = op_new(c, s->id, LCM_STEP_MARK_READY, W_LDS_POLL);
    if (!o) {
        claim_release(c, s->id);
        return;
    }
    struct lcm_call cl;
    struct lcm_error e = { 0 };
    const struct lcm_worker *w = get_w(c, s->worker_id);
    fill_call(c, &cl, s->id, w, 0);
    struct lcm_lds_session_args a = { .lds_session_id = s->user_session.lds_session_id };
    if (lcm_delivery_call(c->app->plugins, session_get, &cl, &a, lds_poll_done, o, &e, NULL)) {
        claim_release(c, s->id);
        op_free(o);
    }
}

/* ---- collecting / grading ------------------------------------------------------------ */

static void extract_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct op *o = ud;
    struct lcm_sessions_ctl *c = o->c;
    const struct lcm_session *s = op_resume(o, e, "extract configurations");
    if (!s)
        return;
    const struct lcm_rt_configs *cf = result;
    lcm_info("sessions", "msg=\"configurations extracted\" session=%s nodes=%zu", s->id, cf->n);
    struct lcm_tx tx;
    lcm_tx_init(&tx);
    tx_step(&tx, s, LCM_STEP_COLLECT, LCM_STEP_DONE, NULL);
    observe_step_done(c, s, LCM_STEP_COLLECT);
    commit(c, &tx, s->id, "collect");
    op_free(o);
}

static void act_collect(struct lcm_sessions_ctl *c, const struct lcm_session *s, const struct lcm_worker *w)
{
    if (!lcm_ctl_claim(c->app->ctl, "session", s->id))
        return;
    const struct lcm_lab *l = bound_lab(c, s);
    if (!l || !l->cml_lab_id || !implements(c, LCM_KIND_RUNTIME, RT_OFF(extract_configs))) {
        struct lcm_tx tx;
        lcm_tx_init(&tx);
        tx_step(&tx, s, LCM_STEP_COLLECT, LCM_STEP_SKIPPED, NULL);
        commit(c, &tx, s->id, "collect");
        return;
    }
    struct op *o = op_new(c, s->id, LCM_STEP_COLLECT, W_EXTRACT);
    if (!o) {
        later(c, s->id, c->p.backoff_ms);
        return;
    }
    struct lcm_rt_extract_args a = { .lab_id = l->cml_lab_id };
    op_call(o, LCM_KIND_RUNTIME, RT_OFF(extract_configs), w, &a, extract_done);
}

static const char *grading_part(const struct lcm_definition *d)
{
    if (d && d->grading_ruleset && strlen(d->grading_ruleset) >= 3)
        return d->grading_ruleset;
    if (d && d->fqn && strlen(d->fqn) >= 3)
        return d->fqn;
    return d && d->name && strlen(d->name) >= 3 ? d->name : "lab-part";
}

static void grading_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct op *o = ud;
    struct lcm_sessions_ctl *c = o->c;
    const struct lcm_session *s =
        op_resume(o, e, o->what == W_GRD_CREATE ? "grading create session" : "grading request");
    if (!s)
        return;
    struct lcm_tx tx;
    struct lcm_derr de;
    lcm_tx_init(&tx);
    struct lcm_session *ss = tx_s(&tx, s);
    if (ss && o->what == W_GRD_CREATE) {
        const struct lcm_grd_created *g = result;
        lcm_tx_check(&tx, lcm_session_cmd_grading(ss, g->grading_session_id, "created", BY, wall(),
                                                  lcm_tx_events(&tx, ss), &de), &de);
    } else if (ss) {
        lcm_tx_check(&tx, lcm_session_cmd_grading(ss, NULL, "requested", BY, wall(),
                                                  lcm_tx_events(&tx, ss), &de), &de);
        tx_step(&tx, s, LCM_STEP_OPEN_GRADING, LCM_STEP_DONE, NULL);
        tx_to(&tx, s, LCM_SS_GRADING, "grading requested");
        tx_step(&tx, s, LCM_STEP_RECORD_SCORE, LCM_STEP_STARTED, NULL);
        observe_step_done(c, s, LCM_STEP_OPEN_GRADING);
        struct rt *r = rt_get(c, s->id, 1);
        if (r)
            r->grading_poll_at = mono_ms() + c->p.grading_poll_ms;
    }
    commit(c, &tx, s->id, "open_grading");
    op_free(o);
}

static void act_open_grading(struct lcm_sessions_ctl *c, const struct lcm_session *s,
                             const struct lcm_worker *w, const struct lcm_definition *d)
{
    if (!lcm_ctl_claim(c->app->ctl, "session", s->id))
        return;
    struct op *o = op_new(c, s->id, LCM_STEP_OPEN_GRADING, 0);
    if (!o) {
        later(c, s->id, c->p.backoff_ms);
        return;
    }
    if (s->grading.grading_session_id) {
        struct lcm_grd_part_args a = { .grading_session_id = s->grading.grading_session_id,
                                       .part_id = grading_part(d) };
        o->what = W_GRD_REQUEST;
        op_call(o, LCM_KIND_GRADING, GR_OFF(request_grading), w, &a, grading_done);
        return;
    }
    /* The pod: one device per node with ports, one interface per port. */
    struct lcm_grd_device devs[64];
    struct lcm_grd_interface ifs[LCM_PORTS_MAX_PER_LAB];
    size_t nd = 0, nf = 0;
    const char *host = w && w->private_ip ? w->private_ip : w && w->public_ip ? w->public_ip : "";
    for (uint16_t k = 0; d && k < d->nports && nf < LCM_PORTS_MAX_PER_LAB; k++) {
        const struct lcm_port_spec *ps = &d->ports[k];
        uint16_t port = session_port(s, ps->name);
        if (!port || !ps->node_label)
            continue;
        size_t di = 0;
        while (di < nd && strcmp(devs[di].label, ps->node_label))
            di++;
        if (di == nd) {
            if (nd == 64)
                continue;
            devs[nd++] = (struct lcm_grd_device){ .label = ps->node_label,
                                                  .hostname = ps->node_label, .ifaces = NULL };
        }
        (void)di;
    }
    /* interfaces grouped per device, contiguous */
    for (size_t di = 0; di < nd; di++) {
        devs[di].ifaces = &ifs[nf];
        for (uint16_t k = 0; d && k < d->nports && nf < LCM_PORTS_MAX_PER_LAB; k++) {
            const struct lcm_port_spec *ps = &d->ports[k];
            uint16_t port = session_port(s, ps->name);
            if (!port || !ps->node_label || strcmp(ps->node_label, devs[di].label))
                continue;
            ifs[nf++] = (struct lcm_grd_interface){ .name = ps->name,
                                                    .protocol = lcm_proto_name(ps->protocol),
                                                    .host = host, .port = port };
            devs[di].nifaces++;
        }
    }
    char cand[160];
    snprintf(cand, sizeof(cand), "%s", s->owner && strlen(s->owner) >= 3 ? s->owner : "lcm-learner");
    struct lcm_grd_create_args a = { .session_id = s->id, .candidate_id = cand,
                                     .lds_session_id = s->user_session.lds_session_id,
                                     .part_id = grading_part(d), .pod_id = s->id,
                                     .devices = devs, .ndevices = nd };
    o->what = W_GRD_CREATE;
    op_call(o, LCM_KIND_GRADING, GR_OFF(session_create), w, &a, grading_done);
}

static void result_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct op *o = ud;
    struct lcm_sessions_ctl *c = o->c;
    const struct lcm_session *s = op_recheck(o);
    if (!s)
        return;
    struct rt *r = rt_get(c, s->id, 1);
    if (r)
        r->grading_poll_at = mono_ms() + c->p.grading_poll_ms;
    if (e) {
        /* A poll that fails is retried at the next poll; the grading timeout bounds it. */
        lcm_warn("sessions", "msg=\"grading result poll failed\" session=%s err=\"%s\"", s->id,
                 e->message);
        claim_release(c, o->sid);
        lcm_ctl_wake(c->app->ctl, NAME);
        op_free(o);
        return;
    }
    const struct lcm_grd_result *g = result;
    struct lcm_tx tx;
    struct lcm_derr de;
    lcm_tx_init(&tx);
    struct lcm_session *ss = tx_s(&tx, s);
    if (g->completed && ss) {
        cJSON *rep = cJSON_CreateObject();
        cJSON_AddNumberToObject(rep, "score", g->score);
        cJSON_AddNumberToObject(rep, "max_score", g->max_score < g->score ? g->score : g->max_score);
        if (g->cut_score >= 0 && g->cut_score <= g->max_score)
            cJSON_AddNumberToObject(rep, "cut_score", g->cut_score);
        if (g->passed >= 0)
            cJSON_AddBoolToObject(rep, "passed", g->passed);
        if (g->submitted_at && *g->submitted_at)
            cJSON_AddStringToObject(rep, "submitted_at", g->submitted_at);
        cJSON *secs = cJSON_AddArrayToObject(rep, "sections");
        for (size_t i = 0; secs && i < g->nsections; i++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "id", g->sections[i].id ? g->sections[i].id : "");
            cJSON_AddNumberToObject(x, "score", g->sections[i].score);
            cJSON_AddNumberToObject(x, "max_score", g->sections[i].max_score);
            cJSON_AddItemToArray(secs, x);
        }
        lcm_tx_check(&tx, lcm_session_cmd_grading(ss, NULL, g->status ? g->status : "completed", BY,
                                                  wall(), lcm_tx_events(&tx, ss), &de), &de);
        int rc = lcm_session_cmd_score(ss, rep, BY, wall(), lcm_tx_events(&tx, ss), &de);
        if (rc == LCM_DERR_INVALID && cJSON_GetObjectItem(rep, "submitted_at")) {
            cJSON_DeleteItemFromObject(rep, "submitted_at");
            rc = lcm_session_cmd_score(ss, rep, BY, wall(), lcm_tx_events(&tx, ss), &de);
        }
        lcm_tx_check(&tx, rc, &de);
        cJSON_Delete(rep);
        tx_step(&tx, s, LCM_STEP_RECORD_SCORE, LCM_STEP_DONE, NULL);
        tx_to(&tx, s, LCM_SS_STOPPING, "graded");
        observe_step_done(c, s, LCM_STEP_RECORD_SCORE);
        lcm_info("sessions", "msg=\"score recorded\" session=%s score=%g max=%g", s->id, g->score,
                 g->max_score);
        commit(c, &tx, s->id, "record_score");
    } else if (g->failed && ss) {
        char reason[300];
        snprintf(reason, sizeof(reason), "grading failed: %.200s", g->status ? g->status : "failed");
        lcm_tx_check(&tx, lcm_session_cmd_grading(ss, NULL, "failed", BY, wall(),
                                                  lcm_tx_events(&tx, ss), &de), &de);
        tx_step(&tx, s, LCM_STEP_RECORD_SCORE, LCM_STEP_FAILED, reason);
        tx_to(&tx, s, LCM_SS_STOPPING, reason);
        lcm_warn("sessions", "msg=\"grading failed\" session=%s", s->id);
        commit(c, &tx, s->id, "grading failed");
    } else {
        lcm_tx_free(&tx);
        claim_release(c, o->sid);
        lcm_ctl_wake(c->app->ctl, NAME);
    }
    op_free(o);
}

static void act_record_score(struct lcm_sessions_ctl *c, const struct lcm_session *s, struct rt *r,
                             const struct lcm_definition *d)
{
    int64_t now = mono_ms();
    const struct lcm_step_progress *p = &s->steps[LCM_STEP_RECORD_SCORE];
    if (p->started_at && wall() - p->started_at > c->p.grading_timeout_s) {
        if (!lcm_ctl_claim(c->app->ctl, "session", s->id))
            return;
        struct lcm_tx tx;
        lcm_tx_init(&tx);
        tx_step(&tx, s, LCM_STEP_RECORD_SCORE, LCM_STEP_FAILED, "no grading result in time");
        tx_to(&tx, s, LCM_SS_STOPPING, "grading timed out");
        commit(c, &tx, s->id, "grading timeout");
        return;
    }
    if (!(r->sigs & SIG_GRADED) && r->grading_poll_at && now < r->grading_poll_at) {
        due_at(c, r->grading_poll_at);
        return;
    }
    if (!s->grading.grading_session_id || !lcm_ctl_claim(c->app->ctl, "session", s->id))
        return;
    r->sigs &= ~(unsigned)SIG_GRADED;
    r->grading_poll_at = now + c->p.grading_poll_ms;
    struct op *o = op_new(c, s->id, LCM_STEP_RECORD_SCORE, W_GRD_RESULT);
    if (!o) {
        claim_release(c, s->id);
        return;
    }
    (void)d;
    struct lcm_grd_session_args a = { .grading_session_id = s->grading.grading_session_id };
    op_call(o, LCM_KIND_GRADING, GR_OFF(get_result), get_w(c, s->worker_id), &a, result_done);
}

/* ---- teardown ------------------------------------------------------------------------ */

static void release_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct op *o = ud;
    struct lcm_sessions_ctl *c = o->c;
    (void)result;
    const struct lcm_session *s = op_recheck(o);
    if (!s)
        return;
    if (e && e->code != LCM_E_NOTFOUND) {
        op_failed(o, e, "LDS release");
        return;
    }
    struct lcm_tx tx;
    struct lcm_derr de;
    lcm_tx_init(&tx);
    struct lcm_session *ss = tx_s(&tx, s);
    if (ss)
        lcm_tx_check(&tx, lcm_session_cmd_user_session(ss, NULL, NULL, NULL, "released", BY, wall(),
                                                       lcm_tx_events(&tx, ss), &de), &de);
    tx_step(&tx, s, LCM_STEP_RELEASE_LDS, LCM_STEP_DONE, NULL);
    observe_step_done(c, s, LCM_STEP_RELEASE_LDS);
    commit(c, &tx, s->id, "release_lds");
    op_free(o);
}

static void act_release_lds(struct lcm_sessions_ctl *c, const struct lcm_session *s, const struct lcm_worker *w)
{
    if (!lcm_ctl_claim(c->app->ctl, "session", s->id))
        return;
    struct op *o = op_new(c, s->id, LCM_STEP_RELEASE_LDS, W_LDS_RELEASE);
    if (!o) {
        later(c, s->id, c->p.backoff_ms);
        return;
    }
    struct lcm_lds_session_args a = { .lds_session_id = s->user_session.lds_session_id };
    op_call(o, LCM_KIND_DELIVERY, DL_OFF(release), w, &a, release_done);
}

static int lds_needs_release(const struct lcm_session *s)
{
    return s->user_session.lds_session_id &&
           !(s->user_session.status && !strcmp(s->user_session.status, "released"));
}

/* Last teardown commit: the lab is given back (unbound; marked error when its wipe was
 * given up), the worker's capacity released, and the session moves on. */
static void finalize(struct lcm_sessions_ctl *c, const struct lcm_session *s)
{
    const struct lcm_lab *l = bound_lab(c, s);
    const struct lcm_worker *w = get_w(c, s->worker_id);
    int to = s->status == LCM_SS_STOPPING ? LCM_SS_STOPPED
             : s->status == LCM_SS_EXPIRED ? LCM_SS_ARCHIVED : -1;
    int has_alloc = w && lcm_worker_find_alloc(w, s->id);
    if (!l && !has_alloc && to < 0)
        return;
    if (!lcm_ctl_claim(c->app->ctl, "session", s->id))
        return;
    struct lcm_tx tx;
    struct lcm_derr de;
    lcm_tx_init(&tx);
    if (l) {
        struct lcm_lab *ls = lcm_tx_state(&tx, &lcm_kind_lab, l->id, l);
        if (ls && ls->status != LCM_LAB_WIPED && ls->status != LCM_LAB_STOPPED &&
            ls->status != LCM_LAB_DEFINED && ls->status != LCM_LAB_ORPHANED &&
            lcm_fsm_allowed(&lcm_fsm_lab, ls->status, LCM_LAB_ERROR))
            lcm_tx_check(&tx, lcm_lab_cmd_transition(ls, LCM_LAB_ERROR, "teardown gave up", BY,
                                                     wall(), lcm_tx_events(&tx, ls), &de), &de);
        if (ls)
            lcm_tx_check(&tx, lcm_lab_cmd_unbind(ls, s->id, BY, wall(), lcm_tx_events(&tx, ls), &de),
                         &de);
    }
    if (has_alloc) {
        struct lcm_worker *ws = lcm_tx_state(&tx, &lcm_kind_worker, w->id, w);
        if (ws)
            lcm_tx_check(&tx, lcm_worker_cmd_release(ws, s->id, BY, wall(), lcm_tx_events(&tx, ws),
                                                     &de), &de);
    }
    if (to >= 0)
        tx_to(&tx, s, to, s->status == LCM_SS_EXPIRED ? "expired and torn down" : "torn down");
    lcm_info("sessions", "msg=\"released\" session=%s lab=%s capacity=%d next=%s", s->id,
             l ? l->id : "-", has_alloc, to >= 0 ? lcm_fsm_name(&lcm_fsm_session, to) : "-");
    commit(c, &tx, s->id, "finalize");
}

/* 1 when a teardown step is over: done, skipped, or given up in a terminated session. */
static int step_over(const struct lcm_sessions_ctl *c, const struct lcm_session *s, int step)
{
    const struct lcm_step_progress *p = &s->steps[step];
    return p->state == LCM_STEP_DONE || p->state == LCM_STEP_SKIPPED ||
           (s->status == LCM_SS_TERMINATED && p->state == LCM_STEP_FAILED &&
            p->attempts >= 1 + c->p.retries);
}

/* ---- the per-session decision -------------------------------------------------------- */

/* Runs step when it is not over: starts it, or (started) runs act. Returns 1 when over. */
static int run_step(struct lcm_sessions_ctl *c, const struct lcm_session *s, struct rt *r, int step,
                    int *want_act)
{
    const struct lcm_step_progress *p = &s->steps[step];
    *want_act = 0;
    if (p->state == LCM_STEP_DONE || p->state == LCM_STEP_SKIPPED)
        return 1;
    if (p->state == LCM_STEP_FAILED && p->attempts >= 1 + c->p.retries) {
        if (s->status == LCM_SS_TERMINATED)
            return 1;
        /* Out of retries (recorded before a restart, say): terminate now. */
        if (lcm_ctl_claim(c->app->ctl, "session", s->id)) {
            char reason[512];
            snprintf(reason, sizeof(reason), "%s failed after %d attempts: %.400s",
                     lcm_step_name(step), p->attempts, p->error ? p->error : "");
            struct lcm_tx tx;
            lcm_tx_init(&tx);
            tx_to(&tx, s, LCM_SS_TERMINATED, reason);
            commit(c, &tx, s->id, "terminate");
        }
        return 0;
    }
    if (r && r->not_before > mono_ms()) {
        due_at(c, r->not_before);
        return 0;
    }
    if (p->state == LCM_STEP_NONE || p->state == LCM_STEP_FAILED) {
        begin_step(c, s, step);
        return 0;
    }
    *want_act = 1;
    return 0;
}

static void transition(struct lcm_sessions_ctl *c, const struct lcm_session *s, int to, const char *reason)
{
    if (!lcm_ctl_claim(c->app->ctl, "session", s->id))
        return;
    struct lcm_tx tx;
    lcm_tx_init(&tx);
    tx_to(&tx, s, to, reason);
    lcm_info("sessions", "msg=\"transition\" session=%s from=%s to=%s reason=\"%s\"", s->id,
             lcm_fsm_name(&lcm_fsm_session, s->status), lcm_fsm_name(&lcm_fsm_session, to),
             reason ? reason : "");
    commit(c, &tx, s->id, lcm_fsm_name(&lcm_fsm_session, to));
}

static void instantiate(struct lcm_sessions_ctl *c, const struct lcm_session *s, struct rt *r)
{
    const struct lcm_worker *w = get_w(c, s->worker_id);
    const struct lcm_definition *d = get_d(c, s->definition_id);
    int act;
    if (!w || !d) {
        if (lcm_ctl_claim(c->app->ctl, "session", s->id)) {
            struct lcm_tx tx;
            lcm_tx_init(&tx);
            tx_to(&tx, s, LCM_SS_TERMINATED, !w ? "worker not found" : "definition not found");
            commit(c, &tx, s->id, "terminate");
        }
        return;
    }
    if (!run_step(c, s, r, LCM_STEP_RESOLVE_LAB, &act)) {
        if (act)
            act_resolve(c, s, w, d, r);
        return;
    }
    const struct lcm_lab *l = bound_lab(c, s);
    if (!l) {
        /* Bound before, gone now (deleted or taken by an operator action): resolve again. */
        if (lcm_ctl_claim(c->app->ctl, "session", s->id)) {
            struct lcm_tx tx;
            lcm_tx_init(&tx);
            tx_to(&tx, s, LCM_SS_TERMINATED, "the session's lab record was lost");
            commit(c, &tx, s->id, "terminate");
        }
        return;
    }
    if (!run_step(c, s, r, LCM_STEP_ALLOCATE_PORTS, &act)) {
        if (act)
            act_ports(c, s, w, d, l);
        return;
    }
    if (!run_step(c, s, r, LCM_STEP_SYNC_TAGS, &act)) {
        if (act && lcm_ctl_claim(c->app->ctl, "session", s->id)) {
            struct op *o = op_new(c, s->id, LCM_STEP_SYNC_TAGS, 0);
            if (o && (o->cml_lab_id = strdup(l->cml_lab_id))) {
                struct lcm_rt_lab_args a = { .lab_id = l->cml_lab_id };
                op_call(o, LCM_KIND_RUNTIME, RT_OFF(nodes_list), w, &a, tags_list_done);
            } else {
                op_free(o);
                later(c, s->id, c->p.backoff_ms);
            }
        }
        return;
    }
    if (!run_step(c, s, r, LCM_STEP_START_LAB, &act)) {
        if (act)
            act_lab_state(c, s, w, l, LCM_STEP_START_LAB);
        return;
    }
    if (!s->lds_enabled) {
        if (s->steps[LCM_STEP_LDS_SESSION].state != LCM_STEP_SKIPPED &&
            lcm_ctl_claim(c->app->ctl, "session", s->id)) {
            struct lcm_tx tx;
            lcm_tx_init(&tx);
            tx_step(&tx, s, LCM_STEP_LDS_SESSION, LCM_STEP_SKIPPED, NULL);
            tx_step(&tx, s, LCM_STEP_MARK_READY, LCM_STEP_DONE, NULL);
            struct lcm_session *ss = tx_s(&tx, s);
            struct lcm_derr de;
            if (ss)
                lcm_tx_check(&tx, lcm_session_cmd_ready(ss, NULL, BY, wall(), lcm_tx_events(&tx, ss),
                                                        &de), &de);
            commit(c, &tx, s->id, "ready");
        }
        return;
    }
    if (!run_step(c, s, r, LCM_STEP_LDS_SESSION, &act)) {
        if (act)
            act_lds(c, s, w, d);
        return;
    }
    if (lcm_ctl_claim(c->app->ctl, "session", s->id)) {
        struct lcm_tx tx;
        struct lcm_derr de;
        lcm_tx_init(&tx);
        tx_step(&tx, s, LCM_STEP_MARK_READY, LCM_STEP_DONE, NULL);
        struct lcm_session *ss = tx_s(&tx, s);
        if (ss)
            lcm_tx_check(&tx, lcm_session_cmd_ready(ss, s->user_session.login_url, BY, wall(),
                                                    lcm_tx_events(&tx, ss), &de), &de);
        lcm_info("sessions", "msg=\"ready\" session=%s", s->id);
        commit(c, &tx, s->id, "ready");
    }
}

static void teardown(struct lcm_sessions_ctl *c, const struct lcm_session *s, struct rt *r)
{
    const struct lcm_worker *w = get_w(c, s->worker_id);
    const struct lcm_lab *l = bound_lab(c, s);
    int act;
    if (l && w && l->cml_lab_id && !step_over(c, s, LCM_STEP_STOP_LAB)) {
        if (!run_step(c, s, r, LCM_STEP_STOP_LAB, &act)) {
            if (act)
                act_lab_state(c, s, w, l, LCM_STEP_STOP_LAB);
            return;
        }
    }
    if (lds_needs_release(s) && !step_over(c, s, LCM_STEP_RELEASE_LDS)) {
        if (!run_step(c, s, r, LCM_STEP_RELEASE_LDS, &act)) {
            if (act)
                act_release_lds(c, s, w);
            return;
        }
    }
    if (l && w && l->cml_lab_id && l->status != LCM_LAB_ORPHANED &&
        !step_over(c, s, LCM_STEP_WIPE_LAB)) {
        if (!run_step(c, s, r, LCM_STEP_WIPE_LAB, &act)) {
            if (act)
                act_lab_state(c, s, w, l, LCM_STEP_WIPE_LAB);
            return;
        }
    }
    finalize(c, s);
}

/* What the clock says for s, and when to look again. */
static int clock_rules(struct lcm_sessions_ctl *c, const struct lcm_session *s, int64_t now)
{
    const struct lcm_time_params *tp = &c->p.tp;
    enum lcm_deadline_action a = lcm_session_deadline_action(s, now, tp);
    if (a == LCM_DEADLINE_EXPIRE) {
        transition(c, s, LCM_SS_EXPIRED,
                   s->status <= LCM_SS_SCHEDULED ? "missed its timeslot start" : "timeslot ended");
        return 1;
    }
    if (a == LCM_DEADLINE_COLLECT) {
        transition(c, s, LCM_SS_COLLECTING, "timeslot ended");
        return 1;
    }
    switch (s->status) {
    case LCM_SS_PENDING:
    case LCM_SS_SCHEDULED:
        if (s->start)
            due_wall(c, s->start + (int64_t)tp->grace_minutes * 60 + 1, now);
        if (s->status == LCM_SS_SCHEDULED && s->start) {
            int64_t lead = s->boot_lead_minutes >= 0 ? s->boot_lead_minutes
                                                     : tp->default_boot_lead_minutes;
            due_wall(c, s->start - lead * 60, now);
        }
        if (s->end)
            due_wall(c, s->end, now);
        break;
    case LCM_SS_INSTANTIATING:
    case LCM_SS_READY:
    case LCM_SS_RUNNING:
        if (s->end)
            due_wall(c, s->end, now);
        break;
    case LCM_SS_COLLECTING:
    case LCM_SS_GRADING:
        if (s->end)
            due_wall(c, s->end + (int64_t)tp->collect_grace_minutes * 60, now);
        break;
    default:
        break;
    }
    return 0;
}

/* The reason recorded for a transition an operator asked for through desired_status: who
 * asked and why, as the request said (session.desired), so status_history shows it. */
static const char *requested(const struct lcm_session *s, const char *what, char *buf, size_t cap)
{
    if (!s->desired_by && !s->desired_reason)
        return what;
    snprintf(buf, cap, "%s%s%.80s%s%.400s", what, s->desired_by ? " by " : "",
             s->desired_by ? s->desired_by : "", s->desired_reason ? ": " : "",
             s->desired_reason ? s->desired_reason : "");
    return buf;
}

static void decide(struct lcm_sessions_ctl *c, const struct lcm_session *s)
{
    int64_t now = wall();
    struct rt *r = rt_get(c, s->id, 0);
    char why[512];
    if (lcm_ctl_claimed(c->app->ctl, "session", s->id))
        return;
    if (s->desired_status == LCM_SS_TERMINATED && s->status != LCM_SS_TERMINATED) {
        transition(c, s, LCM_SS_TERMINATED, requested(s, "terminate requested", why, sizeof(why)));
        return;
    }
    if (clock_rules(c, s, now))
        return;
    if (s->desired_status == LCM_SS_STOPPED && s->status >= LCM_SS_READY &&
        s->status <= LCM_SS_GRADING) {
        transition(c, s, LCM_SS_STOPPING, requested(s, "stop requested", why, sizeof(why)));
        return;
    }
    switch (s->status) {
    case LCM_SS_SCHEDULED:
        if (lcm_session_due_to_instantiate(s, now, &c->p.tp))
            transition(c, s, LCM_SS_INSTANTIATING, "boot lead reached");
        return;
    case LCM_SS_INSTANTIATING:
        if (!r && !(r = rt_get(c, s->id, 1)))
            return;
        instantiate(c, s, r);
        return;
    case LCM_SS_READY:
    case LCM_SS_RUNNING: {
        if (!r && !(r = rt_get(c, s->id, 1)))
            return;
        if (s->status == LCM_SS_READY && (r->sigs & (SIG_RUNNING | SIG_FINISHED))) {
            r->sigs &= ~(unsigned)SIG_RUNNING;
            transition(c, s, LCM_SS_RUNNING, "learner logged in (LDS)");
            return;
        }
        if (s->status == LCM_SS_RUNNING && (r->sigs & SIG_FINISHED)) {
            r->sigs &= ~(unsigned)(SIG_FINISHED | SIG_RUNNING);
            transition(c, s, s->grading_enabled ? LCM_SS_COLLECTING : LCM_SS_STOPPING,
                       "learner finished (LDS)");
            return;
        }
        r->sigs &= ~(unsigned)SIG_RUNNING;
        if (s->lds_enabled && s->user_session.lds_session_id) {
            int64_t m = mono_ms();
            if (r->lds_poll_at == 0)
                r->lds_poll_at = m + c->p.lds_poll_ms;
            if (m >= r->lds_poll_at)
                poll_lds(c, s, r);
            else
                due_at(c, r->lds_poll_at);
        }
        return;
    }
    case LCM_SS_COLLECTING: {
        if (!r && !(r = rt_get(c, s->id, 1)))
            return;
        if (!s->grading_enabled) {
            transition(c, s, LCM_SS_STOPPING, "grading not enabled");
            return;
        }
        const struct lcm_worker *w = get_w(c, s->worker_id);
        const struct lcm_definition *d = get_d(c, s->definition_id);
        int act;
        if (!run_step(c, s, r, LCM_STEP_COLLECT, &act)) {
            if (act)
                act_collect(c, s, w);
            return;
        }
        if (!run_step(c, s, r, LCM_STEP_OPEN_GRADING, &act)) {
            if (act)
                act_open_grading(c, s, w, d);
            return;
        }
        /* open_grading done but still collecting (e.g. a crash between): go on. */
        transition(c, s, LCM_SS_GRADING, "grading requested");
        return;
    }
    case LCM_SS_GRADING: {
        if (!r && !(r = rt_get(c, s->id, 1)))
            return;
        int act;
        if (!run_step(c, s, r, LCM_STEP_RECORD_SCORE, &act)) {
            if (act)
                act_record_score(c, s, r, get_d(c, s->definition_id));
            return;
        }
        transition(c, s, LCM_SS_STOPPING, "graded");
        return;
    }
    case LCM_SS_STOPPING:
    case LCM_SS_EXPIRED:
    case LCM_SS_TERMINATED:
        if (!r && !(r = rt_get(c, s->id, 1)))
            return;
        teardown(c, s, r);
        return;
    case LCM_SS_STOPPED:
        if (s->updated_at + c->p.archive_after_s <= now)
            transition(c, s, LCM_SS_ARCHIVED, "archived");
        else
            due_wall(c, s->updated_at + c->p.archive_after_s, now);
        return;
    default:
        return;
    }
}

/* 1 when s needs no more attention from this controller. */
static int settled(struct lcm_sessions_ctl *c, const struct lcm_session *s)
{
    if (s->status == LCM_SS_ARCHIVED)
        return 1;
    if (s->status != LCM_SS_TERMINATED)
        return 0;
    const struct lcm_worker *w = get_w(c, s->worker_id);
    return !bound_lab(c, s) && !(w && lcm_worker_find_alloc(w, s->id)) &&
           !(lds_needs_release(s) && !step_over(c, s, LCM_STEP_RELEASE_LDS));
}

/* ---- which sessions a pass looks at ----------------------------------------------------- */

enum { WATCH_NONE = -1, WATCH_ACTIVE = 0 };

/* When the controller must look at s again: WATCH_ACTIVE (every pass), a wall time (only the
 * clock can make it act before then: a pending/scheduled session before its boot lead or
 * expiry, a stopped one before it is archived), or WATCH_NONE (nothing left to do until it
 * changes). Mirrors decide(): what it does for a waiting session depends on the clock and
 * on the session's own state, and every change of that state comes through the feed. */
static int64_t watch(struct lcm_sessions_ctl *c, const struct lcm_session *s, int64_t now)
{
    if (settled(c, s))
        return WATCH_NONE;
    if (lcm_ctl_claimed(c->app->ctl, "session", s->id) ||
        (s->desired_status == LCM_SS_TERMINATED && s->status != LCM_SS_TERMINATED))
        return WATCH_ACTIVE;
    const struct lcm_time_params *tp = &c->p.tp;
    int64_t t[3];
    size_t n = 0;
    switch (s->status) {
    case LCM_SS_PENDING:
    case LCM_SS_SCHEDULED:
        /* the times at which lcm_session_deadline_action / _due_to_instantiate turn */
        if (s->start)
            t[n++] = s->start + (int64_t)tp->grace_minutes * 60 + 1;
        if (s->end)
            t[n++] = s->end;
        if (s->status == LCM_SS_SCHEDULED) {
            int64_t lead = s->boot_lead_minutes >= 0 ? s->boot_lead_minutes
                                                     : tp->default_boot_lead_minutes;
            if (!s->start)
                return WATCH_ACTIVE;
            t[n++] = s->start - lead * 60;
        }
        break;
    case LCM_SS_STOPPED:
        t[n++] = s->updated_at + c->p.archive_after_s;
        break;
    default:
        return WATCH_ACTIVE;
    }
    int64_t next = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] <= now)
            return WATCH_ACTIVE;
        if (!next || t[i] < next)
            next = t[i];
    }
    return next ? next : WATCH_NONE;
}

/* Files s in the index by watch(); drops its in-memory companion once it is settled. */
static void index_one(struct lcm_sessions_ctl *c, const char *id, const struct lcm_session *s,
                      int64_t now)
{
    int64_t w = s ? watch(c, s, now) : WATCH_NONE;
    if (w == WATCH_NONE) {
        lcm_sidx_remove(c->idx, id);
        if (!s || settled(c, s))
            rt_drop(c, id);
    } else if (w == WATCH_ACTIVE) {
        lcm_sidx_activate(c->idx, id);
    } else {
        lcm_sidx_park(c->idx, id, w);
    }
}

static int index_each(const char *id, const void *st, void *ud)
{
    struct lcm_sessions_ctl *c = ud;
    index_one(c, id, st, wall());
    return 0;
}

/* The one O(all sessions) walk: on becoming leader and every RESCAN_MS. */
static void index_rebuild(struct lcm_sessions_ctl *c)
{
    lcm_sidx_clear(c->idx);
    lcm_store_each(c->app->store, "session", index_each, c);
    c->indexed = 1;
    c->next_rescan = mono_ms() + RESCAN_MS;
}

static void arm(struct lcm_sessions_ctl *c)
{
    if (!c->deadline_ev)
        return;
    event_del(c->deadline_ev);
    if (!c->due)
        return;
    int64_t d = c->due - mono_ms();
    if (d < 0)
        d = 0;
    struct timeval tv = { (time_t)(d / 1000), (suseconds_t)((d % 1000) * 1000) };
    event_add(c->deadline_ev, &tv);
}

static void reconcile(void *ud)
{
    struct lcm_sessions_ctl *c = ud;
    if (!c->app->plugins || !c->running)
        return;
    c->due = 0;
    if (!c->indexed || mono_ms() >= c->next_rescan)
        index_rebuild(c);
    int64_t now = wall();
    lcm_sidx_wake_due(c->idx, now);
    size_t n = 0;
    char **ids = lcm_sidx_active_ids(c->idx, &n);
    for (size_t i = 0; ids && i < n; i++) {
        const struct lcm_session *s = get_s(c, ids[i]);
        if (s && !settled(c, s) && lcm_ctl_is_leader(c->app->ctl))
            decide(c, s);
        /* the state decide() saw: what it started shows as a claim (active); what it
         * committed comes back through the feed and files the session again */
        index_one(c, ids[i], get_s(c, ids[i]), now);
    }
    lcm_sidx_ids_free(ids);
    int64_t next = lcm_sidx_next(c->idx);
    if (next)
        due_wall(c, next, wall());
    lcm_metrics_set(c->app->metrics, "lcm_sessions_controller_due_ms", NULL,
                    c->due ? (double)(c->due - mono_ms()) : -1);
    lcm_metrics_set(c->app->metrics, "lcm_sessions_controller_sessions", "state=\"active\"",
                    (double)lcm_sidx_nactive(c->idx));
    lcm_metrics_set(c->app->metrics, "lcm_sessions_controller_sessions", "state=\"parked\"",
                    (double)lcm_sidx_nparked(c->idx));
    arm(c);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct lcm_sessions_ctl *c = arg;
    (void)fd;
    (void)what;
    lcm_ctl_wake(c->app->ctl, NAME);
}

static const char *after_prefix(const char *type, const char *prefix)
{
    size_t n = prefix ? strlen(prefix) : 0;
    return n && !strncmp(type, prefix, n) && type[n] == '.' ? type + n + 1 : NULL;
}

/* The signal an LDS/grading CloudEvent recorded on a session's stream (POST
 * /api/v1/cloudevents) gives the pipeline, or 0. */
static unsigned cloudevent_signal(const struct lcm_sessions_ctl *c, const struct lcm_event *ev,
                                  const char **type)
{
    *type = "";
    if (!ev || !ev->type || strcmp(ev->type, "session.cloudevent_received") != 0 || !ev->data)
        return 0;
    const cJSON *ce = cJSON_GetObjectItemCaseSensitive(ev->data, "cloudevent");
    const cJSON *ty = ce ? cJSON_GetObjectItemCaseSensitive(ce, "type") : NULL;
    const char *t = cJSON_IsString(ty) ? ty->valuestring : "";
    *type = t;
    /* <lds prefix>.session.<event>[.vN] and <grading prefix>.<event>[.vN], the prefixes
     * being those POST /api/v1/cloudevents accepts */
    const char *lr = after_prefix(t, c->lds_prefix), *gr = after_prefix(t, c->grading_prefix);
    if (lr && (!strncmp(lr, "session.running", 15) || !strncmp(lr, "session.paused", 14)))
        return SIG_RUNNING;
    if (lr && (!strncmp(lr, "session.user-finished", 21) || !strncmp(lr, "session.ended", 13)))
        return SIG_RUNNING | SIG_FINISHED;
    if (gr && (!strncmp(gr, "completed", 9) || !strncmp(gr, "failed", 6)))
        return SIG_GRADED;
    return 0;
}

/* Every change folded into the read models (the controller framework's `interested` is
 * skipped while a wake is pending, so signals and the index are kept from here). */
static void on_change(const struct lcm_kind *kind, const char *id, const void *state,
                      const struct lcm_event *ev, const char *feed_id, void *ud)
{
    struct lcm_sessions_ctl *c = ud;
    (void)feed_id;
    if (!c->running || kind != &lcm_kind_session)
        return;
    const char *t;
    unsigned sig = cloudevent_signal(c, ev, &t);
    struct rt *r = sig ? rt_get(c, id, 1) : NULL;
    if (r) {
        r->sigs |= sig;
        r->not_before = 0;
        lcm_info("sessions", "msg=\"cloudevent\" session=%s type=%s", id, t);
    }
    if (!c->indexed)
        return;   /* the first pass builds the index from the read models */
    int64_t now = wall();
    index_one(c, id, state, now);
    if (r)
        lcm_sidx_activate(c->idx, id);
    /* a parked session's time may be earlier than the deadline armed by the last pass */
    int64_t at;
    if (lcm_sidx_state(c->idx, id, &at) == 2) {
        int64_t before = c->due;
        due_wall(c, at, now);
        if (c->due != before)
            arm(c);
    }
}

/* A pass soon only for a session that needs one now; a booking ahead (parked) or one with
 * nothing left to do (archived) only updates the index, so a burst of bookings does not make
 * the controller walk anything. */
static int interested(void *ud, const struct lcm_kind *kind, const char *id, const void *state,
                      const struct lcm_event *ev)
{
    struct lcm_sessions_ctl *c = ud;
    (void)id;
    if (kind != &lcm_kind_session)
        return 0;
    const char *t;
    if (cloudevent_signal(c, ev, &t))
        return 1;
    return !state || watch(c, state, wall()) == WATCH_ACTIVE;
}

static void start(void *ud)
{
    struct lcm_sessions_ctl *c = ud;
    c->running = 1;
    c->indexed = 0;   /* built by the first pass, from the read models as they are now */
    lcm_info("sessions", "msg=\"sessions controller started\"");
}

static void stop(void *ud)
{
    struct lcm_sessions_ctl *c = ud;
    c->running = 0;
    c->indexed = 0;
    lcm_sidx_clear(c->idx);
    if (c->deadline_ev)
        event_del(c->deadline_ev);
}

static long cfg_int(struct lcm_app *app, const char *k)
{
    return (long)lcm_config_int(app->cfg, k);
}

int lcm_sessions_ctl_init(struct lcm_app *app, char *err, size_t errlen)
{
    if (!app->controllers) {
        snprintf(err, errlen, "sessions controller: lcm_controllers_init sets it up");
        return -1;
    }
    struct lcm_sessions_ctl *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->app = app;
    lcm_time_params_default(&c->p.tp);
    c->p.tp.lead_window_minutes = (int32_t)cfg_int(app, "lead_window_minutes");
    c->p.tp.default_boot_lead_minutes = (int32_t)cfg_int(app, "boot_lead_minutes");
    c->p.tp.grace_minutes = (int32_t)cfg_int(app, "expiry_grace_minutes");
    c->p.tp.collect_grace_minutes = (int32_t)cfg_int(app, "collect_grace_minutes");
    c->p.step_timeout_ms = cfg_int(app, "session_step_timeout_ms");
    c->p.retries = (int)cfg_int(app, "session_step_retries");
    c->p.backoff_ms = cfg_int(app, "session_retry_backoff_ms");
    c->p.backoff_max_ms = cfg_int(app, "session_retry_backoff_max_ms");
    c->p.poll_ms = cfg_int(app, "session_poll_ms");
    c->p.lds_poll_ms = cfg_int(app, "session_lds_poll_ms");
    c->p.grading_poll_ms = cfg_int(app, "session_grading_poll_ms");
    c->p.boot_timeout_s = cfg_int(app, "session_boot_timeout_s");
    c->p.wait_timeout_s = cfg_int(app, "session_wait_timeout_s");
    c->p.grading_timeout_s = cfg_int(app, "session_grading_timeout_s");
    c->p.archive_after_s = cfg_int(app, "session_archive_after_s");
    c->lds_prefix = lcm_config_str(app->cfg, "cloudevents_lds_prefix");
    c->grading_prefix = lcm_config_str(app->cfg, "cloudevents_grading_prefix");
    c->deadline_ev = evtimer_new(app->base, deadline_cb, c);
    c->idx = lcm_sidx_new();
    c->sub = -1;
    lcm_metrics_declare(app->metrics, "lcm_pipeline_step_seconds", LCM_METRIC_HISTOGRAM,
                        "Duration of session pipeline steps, from started to done");
    lcm_metrics_declare(app->metrics, "lcm_pipeline_step_failures_total", LCM_METRIC_COUNTER,
                        "Failed attempts of session pipeline steps");
    lcm_metrics_declare(app->metrics, "lcm_lab_reuse_total", LCM_METRIC_COUNTER,
                        "Sessions that reused a wiped lab instead of importing");
    lcm_metrics_declare(app->metrics, "lcm_sessions_controller_due_ms", LCM_METRIC_GAUGE,
                        "Milliseconds until the sessions controller's next deadline (-1 none)");
    lcm_metrics_declare(app->metrics, "lcm_sessions_controller_sessions", LCM_METRIC_GAUGE,
                        "Sessions the sessions controller looks at on every pass (active) or "
                        "at a later time (parked)");
    struct lcm_controller def = { .name = NAME,
                                  .sweep_ms = (unsigned)cfg_int(app, "session_sweep_ms"),
                                  .start = start, .stop = stop, .reconcile = reconcile,
                                  .interested = interested };
    if (!c->deadline_ev || !c->idx ||
        (c->sub = lcm_store_subscribe(app->store, on_change, c)) < 0 ||
        lcm_ctl_register(app->ctl, &def, c) < 0) {
        snprintf(err, errlen, "cannot register the sessions controller");
        if (c->sub >= 0)
            lcm_store_unsubscribe(app->store, c->sub);
        if (c->deadline_ev)
            event_free(c->deadline_ev);
        lcm_sidx_free(c->idx);
        free(c);
        return -1;
    }
    app->controllers->sessions = c;
    return 0;
}

void lcm_sessions_ctl_free(struct lcm_app *app)
{
    struct lcm_sessions_ctl *c = app->controllers ? app->controllers->sessions : NULL;
    if (!c)
        return;
    app->controllers->sessions = NULL;
    if (c->deadline_ev)
        event_free(c->deadline_ev);
    for (size_t i = 0; i < NRT; i++) {
        while (c->rt[i]) {
            struct rt *n = c->rt[i]->next;
            free(c->rt[i]->sid);
            free(c->rt[i]);
            c->rt[i] = n;
        }
    }
    if (c->sub >= 0 && app->store)
        lcm_store_unsubscribe(app->store, c->sub);
    lcm_sidx_free(c->idx);
    free(c);
}
