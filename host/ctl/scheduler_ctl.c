/* The scheduler and autoscaler as controllers of the leader-only framework: sweeps at
 * scheduler_interval_ms / autoscaler_interval_ms, woken by session, worker and definition
 * changes; every write goes through lcm_ctl_commit (fenced). */
#include "scheduler_ctl.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "autoscaler.h"
#include "core/config.h"
#include "core/log.h"
#include "ctl.h"
#include "domain/kind.h"
#include "scheduler.h"

struct sched_ctl {
    struct lcm_app *app;
    struct lcm_sched *sched;
    struct lcm_autoscaler *as;
    struct sched_ctl *next;
};

/* one per lcmd app (a list so that tests may run several apps in one process) */
static struct sched_ctl *instances;

static int ctl_commit(void *ud, const struct lcm_store_change *ch, size_t n, lcm_store_done_fn done,
                      void *dud, char *err, size_t errlen)
{
    struct lcm_app *app = ud;
    return lcm_ctl_commit(app->ctl, ch, n, done, dud, err, errlen);
}

static void wake_sched(void *ud)
{
    struct sched_ctl *c = ud;
    lcm_ctl_wake(c->app->ctl, "scheduler");
}

static void s_start(void *ud)
{
    struct sched_ctl *c = ud;
    lcm_sched_start(c->sched);
}

static void s_stop(void *ud)
{
    struct sched_ctl *c = ud;
    lcm_sched_stop(c->sched);
}

static void s_reconcile(void *ud)
{
    struct sched_ctl *c = ud;
    struct lcm_sched_stats before, after;
    lcm_sched_get_stats(c->sched, &before);
    lcm_sched_cycle(c->sched, (int64_t)time(NULL));
    lcm_sched_get_stats(c->sched, &after);
    /* sessions that found no worker are demand: let the autoscaler look now */
    if (after.unplaced_attempts != before.unplaced_attempts)
        lcm_ctl_wake(c->app->ctl, "autoscaler");
}

static int s_interested(void *ud, const struct lcm_kind *kind, const char *id, const void *state,
                        const struct lcm_event *ev)
{
    struct sched_ctl *c = ud;
    (void)id;
    (void)state;
    return lcm_sched_note_change(c->sched, kind->name, ev && ev->type ? ev->type : "");
}

static void a_start(void *ud)
{
    struct sched_ctl *c = ud;
    lcm_autoscaler_start(c->as);
}

static void a_reconcile(void *ud)
{
    struct sched_ctl *c = ud;
    lcm_autoscaler_cycle(c->as, (int64_t)time(NULL));
}

static int a_interested(void *ud, const struct lcm_kind *kind, const char *id, const void *state,
                        const struct lcm_event *ev)
{
    struct sched_ctl *c = ud;
    (void)state;
    return lcm_autoscaler_note_change(c->as, kind->name, id, ev && ev->type ? ev->type : "");
}

int lcm_sched_ctl_init(struct lcm_app *app, char *err, size_t errlen)
{
    struct sched_ctl *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->app = app;
    struct lcm_sched_cfg scfg;
    lcm_sched_cfg_from_config(app->cfg, &scfg);
    struct lcm_sched_env senv = {
        .store = app->store, .policy = app->policy, .metrics = app->metrics, .redis = app->redis,
        .commit = ctl_commit, .commit_ud = app, .wake = wake_sched, .wake_ud = c,
    };
    c->sched = lcm_sched_new(&senv, &scfg);
    struct lcm_autoscaler_cfg acfg;
    lcm_autoscaler_cfg_from_config(app->cfg, &acfg);
    struct lcm_autoscaler_env aenv = {
        .store = app->store, .policy = app->policy, .metrics = app->metrics, .redis = app->redis,
        .sched = c->sched, .commit = ctl_commit, .commit_ud = app,
    };
    c->as = c->sched ? lcm_autoscaler_new(&aenv, &acfg) : NULL;
    if (!c->sched || !c->as) {
        lcm_autoscaler_free(c->as);
        lcm_sched_free(c->sched);
        free(c);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->next = instances;
    instances = c;
    const struct lcm_controller sdef = {
        .name = "scheduler", .sweep_ms = (unsigned)lcm_config_int(app->cfg, "scheduler_interval_ms"),
        .start = s_start, .stop = s_stop, .reconcile = s_reconcile, .interested = s_interested,
    };
    const struct lcm_controller adef = {
        .name = "autoscaler", .sweep_ms = (unsigned)lcm_config_int(app->cfg, "autoscaler_interval_ms"),
        .start = a_start, .reconcile = a_reconcile, .interested = a_interested,
    };
    if (lcm_ctl_register(app->ctl, &sdef, c) < 0 || lcm_ctl_register(app->ctl, &adef, c) < 0 ||
        lcm_sched_api_register(app, c->sched, c->as) < 0) {
        snprintf(err, errlen, "cannot register the scheduler");
        return -1;   /* freed by lcm_sched_ctl_free */
    }
    return 0;
}

void lcm_sched_ctl_free(struct lcm_app *app)
{
    for (struct sched_ctl **pp = &instances; *pp; pp = &(*pp)->next) {
        if ((*pp)->app != app)
            continue;
        struct sched_ctl *c = *pp;
        *pp = c->next;
        lcm_autoscaler_free(c->as);
        lcm_sched_free(c->sched);
        free(c);
        return;
    }
}
