/* The labs controller: lab record actions (start/stop/wipe/delete with a timeout each),
 * lab discovery per worker (list the worker's CML labs, record unknown ones, orphan records
 * whose lab disappeared, let idle records follow CML) and orphaning of labs whose worker is
 * gone. Ports go back to the worker's registry when a lab is deleted or orphaned. */
#include "labs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "app.h"
#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "controllers.h"
#include "ctl.h"
#include "domain/lab.h"
#include "domain/session.h"
#include "domain/worker.h"
#include "plugin/plugin.h"
#include "sessions_int.h"
#include "sessions_tx.h"
#include "store/store.h"

#define BY "controller:labs"
#define NAME "labs"
#define RT_OFF(m) offsetof(struct lcm_runtime_ops, m)

/* When an action started (monotonic ms) and when its command was sent; in memory only: a
 * new leader restarts the clock, which can only lengthen a timeout. */
struct act {
    char *lab_id;
    int action;
    int64_t started, sent, next;
    struct act *next_in_list;
};

struct lcm_labs_ctl {
    struct lcm_app *app;
    long interval_ms, action_timeout_s, poll_ms, timeout_ms;
    int64_t next_discovery;       /* monotonic ms */
    char **want;                  /* workers asked for by lcm_labs_discover (NULL entry = all) */
    size_t nwant;
    int want_all;
    struct act *acts;
    char **todo;
    size_t ntodo, cap;
    struct event *timer;
};

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int64_t wall(void) { return (int64_t)time(NULL); }

static const struct lcm_lab *get_l(struct lcm_labs_ctl *c, const char *id)
{
    return id ? lcm_store_get(c->app->store, "lab", id) : NULL;
}
static const struct lcm_worker *get_w(struct lcm_labs_ctl *c, const char *id)
{
    return id ? lcm_store_get(c->app->store, "worker", id) : NULL;
}

static struct act *act_get(struct lcm_labs_ctl *c, const char *lab_id, int create)
{
    for (struct act *a = c->acts; a; a = a->next_in_list)
        if (!strcmp(a->lab_id, lab_id))
            return a;
    if (!create)
        return NULL;
    struct act *a = calloc(1, sizeof(*a));
    if (!a || !(a->lab_id = strdup(lab_id))) {
        free(a);
        return NULL;
    }
    a->action = -1;
    a->next_in_list = c->acts;
    c->acts = a;
    return a;
}

static void act_drop(struct lcm_labs_ctl *c, const char *lab_id)
{
    for (struct act **pp = &c->acts; *pp; pp = &(*pp)->next_in_list) {
        if (!strcmp((*pp)->lab_id, lab_id)) {
            struct act *a = *pp;
            *pp = a->next_in_list;
            free(a->lab_id);
            free(a);
            return;
        }
    }
}

static void fill_call(struct lcm_labs_ctl *c, struct lcm_call *cl, const struct lcm_worker *w,
                      const char *corr)
{
    memset(cl, 0, sizeof(*cl));
    cl->size = sizeof(*cl);
    cl->correlation_id = corr;
    cl->deadline_ms = mono_ms() + c->timeout_ms;
    cl->region = w->region;
    cl->worker_id = w->id;
    cl->instance_id = w->instance_id;
    cl->endpoint = w->endpoint ? w->endpoint : w->private_ip;
}

/* ---- commits ------------------------------------------------------------------------- */

struct cdone {
    struct lcm_labs_ctl *c;
    char *claim_kind, *claim_id;  /* released when the commit is answered (may be NULL) */
};

static void commit_done(const struct lcm_store_result *res, void *ud)
{
    struct cdone *d = ud;
    if (res->status != LCM_STORE_OK)
        lcm_warn("labs", "msg=\"commit failed\" what=%s:%s err=\"%s %s\"",
                 d->claim_kind ? d->claim_kind : "-", d->claim_id ? d->claim_id : "-",
                 lcm_store_strerror(res->status), res->message);
    if (d->claim_kind)
        lcm_ctl_release(d->c->app->ctl, d->claim_kind, d->claim_id);
    lcm_ctl_wake(d->c->app->ctl, NAME);
    free(d->claim_kind);
    free(d->claim_id);
    free(d);
}

/* Commits tx; releases the claim kind/id (if given) once answered. */
static void commit(struct lcm_labs_ctl *c, struct lcm_tx *tx, const char *ckind, const char *cid)
{
    char err[256];
    struct cdone *d = calloc(1, sizeof(*d));
    if (d) {
        d->c = c;
        d->claim_kind = ckind ? strdup(ckind) : NULL;
        d->claim_id = cid ? strdup(cid) : NULL;
    }
    if (!d || lcm_tx_nevents(tx) == 0 ||
        lcm_tx_commit(tx, c->app->ctl, commit_done, d, err, sizeof(err)) < 0) {
        if (d && lcm_tx_nevents(tx))
            lcm_warn("labs", "msg=\"cannot commit\" err=\"%s\"", err);
        if (ckind)
            lcm_ctl_release(c->app->ctl, ckind, cid);
        if (d) {
            free(d->claim_kind);
            free(d->claim_id);
            free(d);
        }
    }
    lcm_tx_free(tx);
}

/* Orphans l (and gives its ports back to its worker when that still exists). */
static void tx_orphan(struct lcm_tx *tx, struct lcm_labs_ctl *c, const struct lcm_lab *l, const char *why)
{
    struct lcm_derr de;
    struct lcm_lab *ls = lcm_tx_state(tx, &lcm_kind_lab, l->id, l);
    if (ls && lcm_fsm_allowed(&lcm_fsm_lab, ls->status, LCM_LAB_ORPHANED))
        lcm_tx_check(tx, lcm_lab_cmd_transition(ls, LCM_LAB_ORPHANED, why, BY, wall(),
                                                lcm_tx_events(tx, ls), &de), &de);
    const struct lcm_worker *w = get_w(c, l->worker_id);
    if (w && lcm_ports_lease(&w->ports, l->id)) {
        struct lcm_worker *ws = lcm_tx_state(tx, &lcm_kind_worker, w->id, w);
        if (ws)
            lcm_tx_check(tx, lcm_worker_cmd_ports_release(ws, l->id, BY, wall(),
                                                          lcm_tx_events(tx, ws), &de), &de);
    }
}

/* ---- actions ------------------------------------------------------------------------- */

struct aop {
    struct lcm_labs_ctl *c;
    char *lab_id;
    int phase;                    /* 0 = get, 1 = command */
};

static void aop_free(struct aop *o)
{
    free(o->lab_id);
    free(o);
}

static void action_finish(struct lcm_labs_ctl *c, const struct lcm_lab *l, const char *cml_state,
                          int gone, const char *error)
{
    struct lcm_tx tx;
    struct lcm_derr de;
    lcm_tx_init(&tx);
    struct lcm_lab *ls = lcm_tx_state(&tx, &lcm_kind_lab, l->id, l);
    int a = l->pending_action;
    if (ls && !error) {
        if (gone) {
            if (!lcm_fsm_allowed(&lcm_fsm_lab, ls->status, LCM_LAB_DELETING))
                lcm_tx_check(&tx, lcm_lab_cmd_transition(ls, LCM_LAB_ORPHANED, "gone from CML", BY,
                                                         wall(), lcm_tx_events(&tx, ls), &de), &de);
            if (ls->status != LCM_LAB_ORPHANED)
                lcm_tx_check(&tx, lcm_lab_cmd_transition(ls, LCM_LAB_DELETING, NULL, BY, wall(),
                                                         lcm_tx_events(&tx, ls), &de), &de);
            lcm_tx_check(&tx, lcm_lab_cmd_transition(ls, LCM_LAB_DELETED, "deleted on request", BY,
                                                     wall(), lcm_tx_events(&tx, ls), &de), &de);
            const struct lcm_worker *w = get_w(c, l->worker_id);
            if (w && lcm_ports_lease(&w->ports, l->id)) {
                struct lcm_worker *ws = lcm_tx_state(&tx, &lcm_kind_worker, w->id, w);
                if (ws)
                    lcm_tx_check(&tx, lcm_worker_cmd_ports_release(ws, l->id, BY, wall(),
                                                                   lcm_tx_events(&tx, ws), &de), &de);
            }
        } else if (a == LCM_LAB_ACT_WIPE) {
            if (ls->status == LCM_LAB_STOPPED)
                lcm_tx_check(&tx, lcm_lab_cmd_transition(ls, LCM_LAB_WIPING, NULL, BY, wall(),
                                                         lcm_tx_events(&tx, ls), &de), &de);
            if (ls->status == LCM_LAB_WIPING)
                lcm_tx_check(&tx, lcm_lab_cmd_transition(ls, LCM_LAB_WIPED, "wiped on request", BY,
                                                         wall(), lcm_tx_events(&tx, ls), &de), &de);
        } else if (cml_state && lcm_lab_status_from_cml(cml_state) >= 0) {
            lcm_tx_check(&tx, lcm_lab_cmd_observe(ls, cml_state, BY, wall(), lcm_tx_events(&tx, ls),
                                                  &de), &de);
        }
    }
    if (ls)
        lcm_tx_check(&tx, lcm_lab_cmd_action_done(ls, error, BY, wall(), lcm_tx_events(&tx, ls), &de),
                     &de);
    lcm_info("labs", "msg=\"lab action done\" lab=%s action=%s error=\"%s\"", l->id,
             lcm_lab_action_name(a), error ? error : "");
    lcm_metrics_inc(c->app->metrics, "lcm_lab_actions_total", error ? "result=\"error\""
                                                                     : "result=\"ok\"", 1);
    act_drop(c, l->id);
    commit(c, &tx, "lab", l->id);
}

static void action_later(struct lcm_labs_ctl *c, const char *lab_id)
{
    struct act *a = act_get(c, lab_id, 0);
    if (a)
        a->next = mono_ms() + c->poll_ms;
    lcm_ctl_release(c->app->ctl, "lab", lab_id);
}

static void action_cmd_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct aop *o = ud;
    struct lcm_labs_ctl *c = o->c;
    (void)result;
    const struct lcm_lab *l = get_l(c, o->lab_id);
    /* CML refusing the command (400 → conflict: licence limit, wrong state…) ends the
     * action with CML's reason; transport trouble is retried at the next poll. */
    if (e && !e->retryable && e->code != LCM_E_NOTFOUND && l && l->pending_action >= 0) {
        char msg[300];
        snprintf(msg, sizeof(msg), "%s", e->message);
        action_finish(c, l, NULL, 0, msg);
    } else {
        action_later(c, o->lab_id);
    }
    aop_free(o);
}

static void action_get_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct aop *o = ud;
    struct lcm_labs_ctl *c = o->c;
    const struct lcm_lab *l = get_l(c, o->lab_id);
    const struct lcm_worker *w = l ? get_w(c, l->worker_id) : NULL;
    struct act *a = act_get(c, o->lab_id, 0);
    if (!l || l->pending_action < 0 || !w || !a) {
        lcm_ctl_release(c->app->ctl, "lab", o->lab_id);
        aop_free(o);
        return;
    }
    int act = l->pending_action;
    if (e && e->code == LCM_E_NOTFOUND) {
        if (act == LCM_LAB_ACT_DELETE)
            action_finish(c, l, NULL, 1, NULL);
        else
            action_finish(c, l, NULL, 0, "lab not found on CML");
        aop_free(o);
        return;
    }
    if (e) {
        if (!e->retryable) {
            action_finish(c, l, NULL, 0, e->message);
        } else {
            action_later(c, o->lab_id);
        }
        aop_free(o);
        return;
    }
    const struct lcm_rt_lab *lab = result;
    const char *st = lab->state ? lab->state : "";
    int started = !strcmp(st, "STARTED") || !strcmp(st, "BOOTED");
    int idle = !strcmp(st, "STOPPED") || !strcmp(st, "DEFINED_ON_CORE");
    size_t off = 0;
    switch (act) {
    case LCM_LAB_ACT_START:
        if (started) {
            /* CML's start is over once the lab is STARTED (nodes keep booting) */
            action_finish(c, l, st, 0, NULL);
            aop_free(o);
            return;
        }
        off = RT_OFF(lab_start);
        break;
    case LCM_LAB_ACT_STOP:
        if (idle) {
            action_finish(c, l, st, 0, NULL);
            aop_free(o);
            return;
        }
        off = RT_OFF(lab_stop);
        break;
    case LCM_LAB_ACT_WIPE:
        if (!strcmp(st, "DEFINED_ON_CORE") && a->sent) {
            action_finish(c, l, st, 0, NULL);
            aop_free(o);
            return;
        }
        if (started) {
            action_finish(c, l, st, 0, "the lab is running: stop it first");
            aop_free(o);
            return;
        }
        off = RT_OFF(lab_wipe);
        break;
    default:  /* delete: stop first when running */
        off = started ? RT_OFF(lab_stop) : RT_OFF(lab_delete);
        break;
    }
    if (!off || (a->sent && mono_ms() - a->sent < c->action_timeout_s * 1000 &&
                 !(act == LCM_LAB_ACT_DELETE && idle))) {
        action_later(c, o->lab_id);
        aop_free(o);
        return;
    }
    a->sent = mono_ms();
    struct lcm_call cl;
    struct lcm_error err = { 0 };
    fill_call(c, &cl, w, l->id);
    struct lcm_rt_lab_args args = { .lab_id = l->cml_lab_id };
    lcm_info("labs", "msg=\"lab action command\" lab=%s action=%s cml_state=%s", l->id,
             lcm_lab_action_name(act), st);
    if (lcm_plugins_call(c->app->plugins, LCM_KIND_RUNTIME, off, &cl, &args, action_cmd_done, o,
                         &err, NULL) != 0) {
        action_finish(c, l, NULL, 0, err.message);
        aop_free(o);
    }
}

static void run_action(struct lcm_labs_ctl *c, const struct lcm_lab *l)
{
    const struct lcm_worker *w = get_w(c, l->worker_id);
    struct act *a = act_get(c, l->id, 1);
    int64_t now = mono_ms();
    if (!a)
        return;
    if (a->action != l->pending_action) {
        a->action = l->pending_action;
        a->started = now;
        a->sent = 0;
        a->next = 0;
    }
    if (a->next > now)
        return;
    if (!lcm_ctl_claim(c->app->ctl, "lab", l->id))
        return;
    if (!w || !l->cml_lab_id) {
        action_finish(c, l, NULL, 0, !w ? "the lab's worker is unknown" : "the lab has no CML id");
        return;
    }
    if (l->pending_action == LCM_LAB_ACT_DELETE && l->active_session_id) {
        char msg[200];
        snprintf(msg, sizeof(msg), "lab in use by session %s", l->active_session_id);
        action_finish(c, l, NULL, 0, msg);
        return;
    }
    if (now - a->started > c->action_timeout_s * 1000) {
        char msg[120];
        snprintf(msg, sizeof(msg), "timed out after %lds", c->action_timeout_s);
        action_finish(c, l, NULL, 0, msg);
        return;
    }
    struct aop *o = calloc(1, sizeof(*o));
    if (!o || !(o->lab_id = strdup(l->id))) {
        free(o);
        lcm_ctl_release(c->app->ctl, "lab", l->id);
        return;
    }
    o->c = c;
    struct lcm_call cl;
    struct lcm_error err = { 0 };
    fill_call(c, &cl, w, l->id);
    struct lcm_rt_lab_args args = { .lab_id = l->cml_lab_id };
    if (lcm_runtime_call(c->app->plugins, lab_get, &cl, &args, action_get_done, o, &err, NULL)) {
        aop_free(o);
        lcm_ctl_release(c->app->ctl, "lab", l->id);
    }
}

/* ---- discovery ----------------------------------------------------------------------- */

struct known {
    char *id, *cml;
};

struct dop {
    struct lcm_labs_ctl *c;
    char *worker_id;
    char **ids;                   /* CML lab ids on the worker */
    size_t nids, idx;
    struct known *known;          /* lab records of the worker when the pass began */
    size_t nknown;
};

static void dop_free(struct dop *o)
{
    for (size_t i = 0; i < o->nids; i++)
        free(o->ids[i]);
    free(o->ids);
    for (size_t i = 0; i < o->nknown; i++) {
        free(o->known[i].id);
        free(o->known[i].cml);
    }
    free(o->known);
    free(o->worker_id);
    free(o);
}

static void disc_end(struct dop *o)
{
    char key[200];
    snprintf(key, sizeof(key), "%s", o->worker_id);
    lcm_ctl_release(o->c->app->ctl, "labdisc", key);
    dop_free(o);
}

static void disc_next(struct dop *o);

/* A lab whose title says a session is importing it right now is left to that session. */
static int pending_import(struct lcm_labs_ctl *c, const char *title)
{
    if (!title || strncmp(title, "lcm-", 4))
        return 0;
    const struct lcm_session *s = lcm_store_get(c->app->store, "session", title + 4);
    return s && s->status == LCM_SS_INSTANTIATING && !s->lab_record_id;
}

static void disc_get_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct dop *o = ud;
    struct lcm_labs_ctl *c = o->c;
    const char *cml = o->ids[o->idx];
    const struct lcm_lab *l = lcm_sessions_find_lab(c->app->store, o->worker_id, cml);
    if (e) {
        lcm_debug("labs", "msg=\"discovery: lab_get failed\" worker=%s lab=%s err=\"%s\"",
                  o->worker_id, cml, e->message);
        o->idx++;
        disc_next(o);
        return;
    }
    const struct lcm_rt_lab *lab = result;
    struct lcm_tx tx;
    struct lcm_derr de;
    lcm_tx_init(&tx);
    if (!l) {
        if (pending_import(c, lab->title)) {
            o->idx++;
            disc_next(o);
            return;
        }
        char id[160];
        snprintf(id, sizeof(id), "lab-%.60s-%.60s", o->worker_id, cml);
        for (char *p = id; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                  *p == '-' || *p == '_' || *p == '.'))
                *p = '-';
        if (!get_l(c, id)) {
            struct lcm_lab *ls = lcm_tx_state(&tx, &lcm_kind_lab, id, NULL);
            if (ls) {
                lcm_tx_check(&tx, lcm_lab_cmd_create(id, o->worker_id, cml, lab->title, NULL, 1, BY,
                                                     wall(), lcm_tx_events(&tx, ls), &de), &de);
                if (lab->state && lcm_lab_status_from_cml(lab->state) >= 0)
                    lcm_tx_check(&tx, lcm_lab_cmd_observe(ls, lab->state, BY, wall(),
                                                          lcm_tx_events(&tx, ls), &de), &de);
            }
            lcm_info("labs", "msg=\"lab discovered\" worker=%s cml_lab_id=%s title=\"%s\" record=%s",
                     o->worker_id, cml, lab->title ? lab->title : "", id);
            lcm_metrics_inc(c->app->metrics, "lcm_labs_discovered_total", NULL, 1);
            commit(c, &tx, NULL, NULL);
        } else {
            lcm_tx_free(&tx);
        }
    } else if (!l->active_session_id && l->pending_action < 0 && lab->state &&
               lcm_lab_status_from_cml(lab->state) >= 0 &&
               !lcm_ctl_claimed(c->app->ctl, "lab", l->id) &&
               !(l->status == LCM_LAB_WIPED && !strcmp(lab->state, "DEFINED_ON_CORE")) &&
               l->status != LCM_LAB_ORPHANED && l->status != LCM_LAB_DELETED &&
               l->status != LCM_LAB_ARCHIVED && l->status != LCM_LAB_WIPING &&
               l->status != LCM_LAB_DELETING) {
        /* an idle record follows what CML says */
        struct lcm_lab *ls = lcm_tx_state(&tx, &lcm_kind_lab, l->id, l);
        if (ls)
            lcm_tx_check(&tx, lcm_lab_cmd_observe(ls, lab->state, BY, wall(), lcm_tx_events(&tx, ls),
                                                  &de), &de);
        commit(c, &tx, NULL, NULL);
    } else {
        lcm_tx_free(&tx);
    }
    o->idx++;
    disc_next(o);
}

static void disc_next(struct dop *o)
{
    struct lcm_labs_ctl *c = o->c;
    const struct lcm_worker *w = get_w(c, o->worker_id);
    if (!w || !lcm_ctl_is_leader(c->app->ctl)) {
        disc_end(o);
        return;
    }
    if (o->idx < o->nids) {
        struct lcm_call cl;
        struct lcm_error err = { 0 };
        fill_call(c, &cl, w, o->worker_id);
        struct lcm_rt_lab_args args = { .lab_id = o->ids[o->idx] };
        if (lcm_runtime_call(c->app->plugins, lab_get, &cl, &args, disc_get_done, o, &err, NULL)) {
            o->idx = o->nids;
            disc_end(o);
        }
        return;
    }
    /* Records of this worker (as of the start of the pass) whose lab CML no longer has. */
    for (size_t k = 0; k < o->nknown; k++) {
        int present = 0;
        for (size_t i = 0; i < o->nids && !present; i++)
            present = !strcmp(o->ids[i], o->known[k].cml);
        const struct lcm_lab *l = get_l(c, o->known[k].id);
        if (present || !l || l->status == LCM_LAB_ORPHANED || l->status == LCM_LAB_DELETED ||
            l->status == LCM_LAB_ARCHIVED || l->pending_action >= 0 ||
            lcm_ctl_claimed(c->app->ctl, "lab", l->id))
            continue;
        struct lcm_tx tx;
        lcm_tx_init(&tx);
        tx_orphan(&tx, c, l, "lab not found on its worker");
        lcm_info("labs", "msg=\"lab orphaned\" lab=%s worker=%s cml_lab_id=%s", l->id, o->worker_id,
                 l->cml_lab_id);
        lcm_metrics_inc(c->app->metrics, "lcm_labs_orphaned_total", NULL, 1);
        commit(c, &tx, NULL, NULL);
    }
    disc_end(o);
}

static void disc_list_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct dop *o = ud;
    if (e) {
        lcm_warn("labs", "msg=\"discovery: list labs failed\" worker=%s err=\"%s\"", o->worker_id,
                 e->message);
        disc_end(o);
        return;
    }
    const struct lcm_rt_lab_ids *ids = result;
    o->ids = ids->ids.n ? calloc(ids->ids.n, sizeof(char *)) : NULL;
    for (size_t i = 0; o->ids && i < ids->ids.n; i++)
        if ((o->ids[o->nids] = strdup(ids->ids.v[i])))
            o->nids++;
    disc_next(o);
}

struct snapq { const char *w; struct dop *o; };

static int snap_each(const char *id, const void *st, void *ud)
{
    const struct lcm_lab *l = st;
    struct snapq *q = ud;
    if (!l->worker_id || !l->cml_lab_id || strcmp(l->worker_id, q->w))
        return 0;
    struct known *nk = realloc(q->o->known, (q->o->nknown + 1) * sizeof(*nk));
    if (!nk)
        return 1;
    q->o->known = nk;
    nk[q->o->nknown].id = strdup(id);
    nk[q->o->nknown].cml = strdup(l->cml_lab_id);
    if (nk[q->o->nknown].id && nk[q->o->nknown].cml)
        q->o->nknown++;
    else {
        free(nk[q->o->nknown].id);
        free(nk[q->o->nknown].cml);
    }
    return 0;
}

static int implements_list(struct lcm_labs_ctl *c)
{
    struct lcm_plugin *p = lcm_plugins_get(c->app->plugins, LCM_KIND_RUNTIME);
    return p && lcm_plugin_implements(p, RT_OFF(list_labs)) &&
           lcm_plugin_implements(p, RT_OFF(lab_get));
}

static void discover_worker(struct lcm_labs_ctl *c, const struct lcm_worker *w)
{
    if (!implements_list(c))
        return;
    if (!lcm_ctl_claim(c->app->ctl, "labdisc", w->id))
        return;
    struct dop *o = calloc(1, sizeof(*o));
    if (!o || !(o->worker_id = strdup(w->id))) {
        free(o);
        lcm_ctl_release(c->app->ctl, "labdisc", w->id);
        return;
    }
    o->c = c;
    struct snapq q = { w->id, o };
    lcm_store_each(c->app->store, "lab", snap_each, &q);
    struct lcm_call cl;
    struct lcm_error err = { 0 };
    fill_call(c, &cl, w, w->id);
    if (lcm_runtime_call(c->app->plugins, list_labs, &cl, NULL, disc_list_done, o, &err, NULL)) {
        lcm_debug("labs", "msg=\"discovery: list labs refused\" worker=%s err=\"%s\"", w->id,
                  err.message);
        disc_end(o);
    }
}

/* ---- reconcile ----------------------------------------------------------------------- */

static int worker_gone(const struct lcm_worker *w)
{
    return !w || w->status == LCM_WK_TERMINATED || w->status == LCM_WK_TERMINATING ||
           w->status == LCM_WK_FAILED;
}

static int collect_labs(const char *id, const void *st, void *ud)
{
    struct lcm_labs_ctl *c = ud;
    const struct lcm_lab *l = st;
    if (l->status == LCM_LAB_ARCHIVED || l->status == LCM_LAB_DELETED)
        return 0;
    if (l->pending_action < 0 && (l->status == LCM_LAB_ORPHANED || !worker_gone(get_w(c, l->worker_id))))
        return 0;
    if (c->ntodo == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 32;
        char **n = realloc(c->todo, nc * sizeof(*n));
        if (!n)
            return 1;
        c->todo = n;
        c->cap = nc;
    }
    if ((c->todo[c->ntodo] = strdup(id)))
        c->ntodo++;
    return 0;
}

struct wq { struct lcm_labs_ctl *c; int all; };

static int want_worker(struct lcm_labs_ctl *c, const char *id)
{
    for (size_t i = 0; i < c->nwant; i++)
        if (!strcmp(c->want[i], id))
            return 1;
    return 0;
}

static int disc_each(const char *id, const void *st, void *ud)
{
    struct wq *q = ud;
    const struct lcm_worker *w = st;
    if ((w->status != LCM_WK_RUNNING && w->status != LCM_WK_DRAINING) ||
        (!w->endpoint && !w->private_ip))
        return 0;
    if (q->all || want_worker(q->c, id))
        discover_worker(q->c, w);
    return 0;
}

static void reconcile(void *ud)
{
    struct lcm_labs_ctl *c = ud;
    if (!c->app->plugins)
        return;
    int64_t now = mono_ms();
    c->ntodo = 0;
    lcm_store_each(c->app->store, "lab", collect_labs, c);
    for (size_t i = 0; i < c->ntodo; i++) {
        const struct lcm_lab *l = get_l(c, c->todo[i]);
        if (l && !lcm_ctl_claimed(c->app->ctl, "lab", l->id)) {
            if (l->pending_action >= 0) {
                run_action(c, l);
            } else if (worker_gone(get_w(c, l->worker_id)) && l->status != LCM_LAB_ORPHANED &&
                       !l->active_session_id && lcm_ctl_claim(c->app->ctl, "lab", l->id)) {
                struct lcm_tx tx;
                lcm_tx_init(&tx);
                tx_orphan(&tx, c, l, "its worker is gone");
                lcm_info("labs", "msg=\"lab orphaned\" lab=%s worker=%s reason=\"worker gone\"", l->id,
                         l->worker_id);
                commit(c, &tx, "lab", l->id);
            }
        }
        free(c->todo[i]);
    }
    c->ntodo = 0;
    int all = now >= c->next_discovery || c->want_all;
    if (all || c->nwant) {
        struct wq q = { c, all };
        lcm_store_each(c->app->store, "worker", disc_each, &q);
        for (size_t i = 0; i < c->nwant; i++)
            free(c->want[i]);
        c->nwant = 0;
        c->want_all = 0;
        if (all)
            c->next_discovery = now + c->interval_ms;
    }
    /* wake for the next discovery and the next action poll */
    int64_t due = c->next_discovery;
    for (struct act *a = c->acts; a; a = a->next_in_list)
        if (a->next && a->next < due)
            due = a->next;
    int64_t d = due - mono_ms();
    if (d < 0)
        d = 0;
    struct timeval tv = { (time_t)(d / 1000), (suseconds_t)((d % 1000) * 1000) };
    event_del(c->timer);
    event_add(c->timer, &tv);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct lcm_labs_ctl *c = arg;
    (void)fd;
    (void)what;
    lcm_ctl_wake(c->app->ctl, NAME);
}

static int interested(void *ud, const struct lcm_kind *kind, const char *id, const void *state,
                      const struct lcm_event *ev)
{
    struct lcm_labs_ctl *c = ud;
    (void)state;
    if (!strcmp(kind->name, "lab"))
        return ev && ev->type && (!strcmp(ev->type, "lab.action_requested") ||
                                  !strcmp(ev->type, "lab.created"));
    if (!strcmp(kind->name, "worker") && ev && ev->type) {
        if (!strcmp(ev->type, "worker.running"))
            lcm_labs_discover(c->app, id);   /* a worker that (re)appears: look at its labs */
        return !strcmp(ev->type, "worker.running") || !strcmp(ev->type, "worker.terminated") ||
               !strcmp(ev->type, "worker.failed") || !strcmp(ev->type, "worker.terminating");
    }
    return 0;
}

static void stop(void *ud)
{
    struct lcm_labs_ctl *c = ud;
    event_del(c->timer);
}

int lcm_labs_discover(struct lcm_app *app, const char *worker_id)
{
    struct lcm_labs_ctl *c = app->controllers ? app->controllers->labs : NULL;
    if (!c)
        return -1;
    if (!worker_id) {
        c->want_all = 1;
    } else if (!want_worker(c, worker_id)) {
        char **n = realloc(c->want, (c->nwant + 1) * sizeof(*n));
        if (!n)
            return -1;
        c->want = n;
        if ((c->want[c->nwant] = strdup(worker_id)))
            c->nwant++;
    }
    lcm_ctl_wake(c->app->ctl, NAME);
    return 0;
}

int lcm_labs_ctl_init(struct lcm_app *app, char *err, size_t errlen)
{
    if (!app->controllers) {
        snprintf(err, errlen, "labs controller: lcm_controllers_init sets it up");
        return -1;
    }
    struct lcm_labs_ctl *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->app = app;
    c->interval_ms = (long)lcm_config_int(app->cfg, "lab_discovery_interval_ms");
    c->action_timeout_s = (long)lcm_config_int(app->cfg, "lab_action_timeout_s");
    c->poll_ms = (long)lcm_config_int(app->cfg, "session_poll_ms");
    c->timeout_ms = (long)lcm_config_int(app->cfg, "session_step_timeout_ms");
    c->timer = evtimer_new(app->base, timer_cb, c);
    lcm_metrics_declare(app->metrics, "lcm_lab_actions_total", LCM_METRIC_COUNTER,
                        "Lab record actions finished, by result");
    lcm_metrics_declare(app->metrics, "lcm_labs_discovered_total", LCM_METRIC_COUNTER,
                        "CML labs found on workers that LCM did not know");
    lcm_metrics_declare(app->metrics, "lcm_labs_orphaned_total", LCM_METRIC_COUNTER,
                        "Lab records orphaned because their lab disappeared from CML");
    struct lcm_controller def = { .name = NAME, .sweep_ms = 5000, .stop = stop,
                                  .reconcile = reconcile, .interested = interested };
    if (!c->timer || lcm_ctl_register(app->ctl, &def, c) < 0) {
        snprintf(err, errlen, "cannot register the labs controller");
        if (c->timer)
            event_free(c->timer);
        free(c);
        return -1;
    }
    app->controllers->labs = c;
    return 0;
}

void lcm_labs_ctl_free(struct lcm_app *app)
{
    struct lcm_labs_ctl *c = app->controllers ? app->controllers->labs : NULL;
    if (!c)
        return;
    app->controllers->labs = NULL;
    event_free(c->timer);
    while (c->acts)
        act_drop(c, c->acts->lab_id);
    for (size_t i = 0; i < c->nwant; i++)
        free(c->want[i]);
    free(c->want);
    for (size_t i = 0; i < c->ntodo; i++)
        free(c->todo[i]);
    free(c->todo);
    free(c);
}
