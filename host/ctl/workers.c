/* The worker controller: per worker, compares status with desired_status and takes the one
 * next step (launch, adopt, poll EC2, start/stop/terminate, CML readiness, drain) through the
 * cloud and runtime plugins, one action per worker at a time, each step idempotent so that a
 * crash between "did it" and "recorded it" is harmless. State machine: docs/workers.md. */
#include "workers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "app.h"
#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/redis.h"
#include "controllers.h"
#include "ctl.h"
#include "labs.h"
#include "domain/events.h"
#include "domain/fsm.h"
#include "domain/jsonx.h"
#include "domain/rfc3339.h"
#include "domain/sha256.h"
#include "domain/template.h"
#include "domain/worker.h"
#include "plugin/plugin.h"
#include "store/store.h"
#include "workers_int.h"

enum step {
    S_COMMIT = 1, S_LAUNCH, S_POLL, S_READY, S_START, S_STOP, S_TERMINATE
};
static const char *const step_names[] = {"?", "commit", "launch", "poll", "readiness",
                                         "start", "stop", "terminate"};

/* ---- small helpers ------------------------------------------------------------------- */

double wk_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int64_t wk_wall_s(void) { return (int64_t)time(NULL); }

static unsigned long hstr(const char *s)
{
    unsigned long h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h;
}

struct wk_track *wk_track(struct lcm_workers_ctl *c, const char *id)
{
    struct wk_track **b = &c->tracks[hstr(id) % WK_NTRACK];
    for (struct wk_track *t = *b; t; t = t->next)
        if (!strcmp(t->id, id))
            return t;
    struct wk_track *t = calloc(1, sizeof(*t));
    if (!t || !(t->id = strdup(id))) {
        free(t);
        return NULL;
    }
    t->status_seen = -1;
    t->next = *b;
    *b = t;
    return t;
}

void wk_track_forget(struct lcm_workers_ctl *c, const char *id)
{
    for (struct wk_track **pp = &c->tracks[hstr(id) % WK_NTRACK]; *pp; pp = &(*pp)->next) {
        if (!strcmp((*pp)->id, id)) {
            struct wk_track *t = *pp;
            *pp = t->next;
            free(t->id);
            free(t);
            return;
        }
    }
}

static void tracks_clear(struct lcm_workers_ctl *c)
{
    for (size_t i = 0; i < WK_NTRACK; i++) {
        while (c->tracks[i]) {
            struct wk_track *t = c->tracks[i];
            c->tracks[i] = t->next;
            free(t->id);
            free(t);
        }
    }
}

struct wop *wk_op_new(struct lcm_workers_ctl *c, const char *worker_id, int step)
{
    struct wop *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->c = c;
    op->step = step;
    snprintf(op->id, sizeof(op->id), "%s", worker_id ? worker_id : "");
    op->next = c->ops;
    if (c->ops)
        c->ops->prev = op;
    c->ops = op;
    return op;
}

void wk_op_done(struct wop *op)
{
    struct lcm_workers_ctl *c = op->c;
    if (c) {
        if (op->claimed)
            lcm_ctl_release(c->app->ctl, "worker", op->id);
        if (op->prev)
            op->prev->next = op->next;
        else
            c->ops = op->next;
        if (op->next)
            op->next->prev = op->prev;
        lcm_ctl_wake(c->app->ctl, "workers");
    }
    if (op->extra_free)
        op->extra_free(op->extra);
    lcm_strv_free(op->node_defs, op->n_node_defs);
    free(op);
}

static const struct lcm_worker *get_worker(struct lcm_workers_ctl *c, const char *id)
{
    return lcm_store_get(c->app->store, "worker", id);
}

void wk_call_for(struct lcm_workers_ctl *c, const struct lcm_worker *w, struct lcm_call *call)
{
    memset(call, 0, sizeof(*call));
    call->size = sizeof(*call);
    call->correlation_id = w->id;
    call->worker_id = w->id;
    call->region = w->region;
    call->instance_id = w->instance_id;
    call->endpoint = w->endpoint;
    call->deadline_ms = (int64_t)wk_now_ms() + c->op_timeout_ms;
}

int wk_status_of_instance(enum lcm_instance_state s)
{
    switch (s) {
    case LCM_INSTANCE_PENDING: return LCM_WK_STARTING;
    case LCM_INSTANCE_RUNNING: return LCM_WK_RUNNING;
    case LCM_INSTANCE_STOPPING: return LCM_WK_STOPPING;
    case LCM_INSTANCE_STOPPED: return LCM_WK_STOPPED;
    case LCM_INSTANCE_SHUTTING_DOWN: return LCM_WK_TERMINATING;
    case LCM_INSTANCE_TERMINATED: return LCM_WK_TERMINATED;
    default: return -1;
    }
}

void wk_observe_instance(const struct lcm_worker *w, const struct lcm_cloud_instance *inst,
                         int status, struct lcm_events *out)
{
    char endpoint[128] = "";
    if (inst->private_ip && *inst->private_ip)
        snprintf(endpoint, sizeof(endpoint), "https://%s", inst->private_ip);
    struct lcm_worker_observation ob = {
        .status = status,
        .instance_id = inst->instance_id,
        .instance_type = inst->instance_type,
        .ami_id = inst->image_id,
        .private_ip = inst->private_ip,
        .public_ip = inst->public_ip,
        .endpoint = endpoint[0] ? endpoint : NULL,
    };
    struct lcm_derr de;
    if (lcm_worker_cmd_observe(w, &ob, WK_BY, wk_wall_s(), out, &de))
        lcm_warn("workers", "worker=%s msg=\"observation refused\" err=\"%s\"", w->id, de.message);
}

static void count(struct lcm_workers_ctl *c, const char *action, const char *outcome)
{
    char labels[128];
    snprintf(labels, sizeof(labels), "action=\"%s\",outcome=\"%s\"", action, outcome);
    lcm_metrics_inc(c->app->metrics, "lcm_worker_actions_total", labels, 1);
}

/* ---- commits ------------------------------------------------------------------------- */

struct commit_ud {
    struct wop *op;
    wk_commit_fn done;
};

static void commit_cb(const struct lcm_store_result *res, void *ud)
{
    struct commit_ud *cu = ud;
    struct wop *op = cu->op;
    wk_commit_fn done = cu->done;
    free(cu);
    if (res->status != LCM_STORE_OK && op->c)
        lcm_info("workers", "worker=%s msg=\"commit not applied\" err=\"%s\" detail=\"%s\"", op->id,
                 lcm_store_strerror(res->status), res->message);
    done(op, res->status);
}

int wk_commit(struct lcm_workers_ctl *c, const char *id, uint64_t expected, const struct lcm_events *evs,
              struct wop *op, wk_commit_fn done)
{
    size_t n = evs->n;
    if (n == 0)
        return -1;
    struct lcm_store_event *se = calloc(n, sizeof(*se));
    char **data = calloc(n, sizeof(*data));
    char (*at)[LCM_TIME_BUFSZ] = calloc(n, sizeof(*at));
    struct commit_ud *cu = malloc(sizeof(*cu));
    int rc = -1;
    if (!se || !data || !at || !cu)
        goto out;
    for (size_t i = 0; i < n; i++) {
        data[i] = cJSON_PrintUnformatted(evs->v[i].data);
        if (!data[i] || lcm_rfc3339_format(evs->v[i].at, at[i], sizeof(at[i])) < 0)
            goto out;
        se[i] = (struct lcm_store_event){ evs->v[i].type, data[i], at[i], evs->v[i].by };
    }
    struct lcm_store_change ch = { .kind = &lcm_kind_worker, .id = id, .expected_version = expected,
                                   .events = se, .n_events = n };
    cu->op = op;
    cu->done = done;
    char err[256] = "";
    rc = lcm_ctl_commit(c->app->ctl, &ch, 1, commit_cb, cu, err, sizeof(err));
    if (rc < 0)
        lcm_info("workers", "worker=%s msg=\"commit refused\" err=\"%s\"", id, err);
    else
        cu = NULL;
out:
    for (size_t i = 0; data && i < n; i++)
        free(data[i]);
    free(data);
    free(at);
    free(se);
    free(cu);
    return rc < 0 ? -1 : 0;
}

static void commit_then_release(struct wop *op, int status)
{
    (void)status;
    wk_op_done(op);
}

/* A new op for step on w holding the worker's claim, or NULL (nothing started) when out of
 * memory or another action holds the claim. */
static struct wop *claimed_op(struct lcm_workers_ctl *c, const struct lcm_worker *w, int step)
{
    struct wop *op = wk_op_new(c, w->id, step);
    if (!op)
        return NULL;
    if (!lcm_ctl_claim(c->app->ctl, "worker", w->id)) {
        wk_op_done(op);
        return NULL;
    }
    op->claimed = 1;
    return op;
}

/* The controller of a done callback's op; NULL (and the op ended) once the controller was
 * freed under it at shutdown. */
static struct lcm_workers_ctl *op_ctl(struct wop *op)
{
    struct lcm_workers_ctl *c = op->c;
    if (!c)
        wk_op_done(op);
    return c;
}

/* op_ctl(), then the op's worker; NULL (and the op ended) when either is gone. */
static const struct lcm_worker *op_worker(struct wop *op)
{
    struct lcm_workers_ctl *c = op_ctl(op);
    const struct lcm_worker *w = c ? get_worker(c, op->id) : NULL;
    if (c && !w)
        wk_op_done(op);
    return w;
}

/* Commits evs for the op's worker and ends the op afterwards (also when nothing to commit). */
static void finish_with(struct wop *op, uint64_t expected, struct lcm_events *evs)
{
    if (!op->c || evs->n == 0 ||
        wk_commit(op->c, op->id, expected, evs, op, commit_then_release) < 0)
        wk_op_done(op);
    lcm_events_clear(evs);
}

/* Starts a commit-only action on w (claims it). */
static void act_commit(struct lcm_workers_ctl *c, const struct lcm_worker *w, struct lcm_events *evs,
                       const char *what)
{
    if (evs->n == 0)
        return;
    struct wop *op = wk_op_new(c, w->id, S_COMMIT);
    if (!op || !lcm_ctl_claim(c->app->ctl, "worker", w->id)) {
        if (op)
            wk_op_done(op);
        lcm_events_clear(evs);
        return;
    }
    op->claimed = 1;
    lcm_info("workers", "worker=%s msg=\"%s\" status=%s desired=%s", w->id, what,
             lcm_fsm_name(&lcm_fsm_worker, w->status), lcm_fsm_name(&lcm_fsm_worker, w->desired_status));
    finish_with(op, w->version, evs);
}

static void act_transition(struct lcm_workers_ctl *c, const struct lcm_worker *w, int to, const char *reason)
{
    struct lcm_events evs;
    struct lcm_derr de;
    lcm_events_init(&evs);
    if (lcm_worker_cmd_transition(w, (enum lcm_worker_status)to, reason, WK_BY, wk_wall_s(), &evs, &de)) {
        lcm_warn("workers", "worker=%s msg=\"transition refused\" to=%s err=\"%s\"", w->id,
                 lcm_fsm_name(&lcm_fsm_worker, to), de.message);
        lcm_events_clear(&evs);
        return;
    }
    char what[96];
    snprintf(what, sizeof(what), "-> %s", lcm_fsm_name(&lcm_fsm_worker, to));
    act_commit(c, w, &evs, what);
}

/* Seconds since the worker entered its current status (from its history, so it survives a
 * restart or a change of leader). */
static int64_t in_status_s(const struct lcm_worker *w)
{
    int64_t since = w->created_at;
    for (int i = (int)w->history.n - 1; i >= 0; i--) {
        if (w->history.v[i].to == w->status) {
            since = w->history.v[i].at;
            break;
        }
    }
    return wk_wall_s() - since;
}

/* ---- failures and backoff ------------------------------------------------------------ */

static double backoff_ms(struct lcm_workers_ctl *c, unsigned attempt)
{
    double d = (double)c->backoff_base_ms;
    for (unsigned i = 1; i < attempt && d < (double)c->backoff_max_ms; i++)
        d *= 2;
    if (d > (double)c->backoff_max_ms)
        d = (double)c->backoff_max_ms;
    /* uniform in [d/2, d]: workers failing together spread out */
    return d / 2 + (d / 2) * ((double)rand() / (double)RAND_MAX);
}

/* A step failed. fatal: the worker may go to failed (non-retryable error, or retries
 * exhausted); otherwise it only backs off. Ends the op. */
static void step_failed(struct wop *op, const struct lcm_error *e, int fatal)
{
    struct lcm_workers_ctl *c = op_ctl(op);
    if (!c)
        return;
    struct wk_track *t = wk_track(c, op->id);
    const struct lcm_worker *w = get_worker(c, op->id);
    if (!t || !w) {
        wk_op_done(op);
        return;
    }
    if (t->step != op->step)
        t->attempts = 0;
    t->step = op->step;
    t->attempts++;
    snprintf(t->last_error, sizeof(t->last_error), "%s: %s", step_names[op->step], e->message);
    count(c, step_names[op->step], e->retryable ? "retry" : "error");
    int give_up = fatal && (!e->retryable || t->attempts >= (unsigned)c->max_attempts);
    if (e->code == LCM_E_SHUTDOWN || e->code == LCM_E_CANCELLED)
        give_up = 0;
    if (give_up && !lcm_fsm_is_final(&lcm_fsm_worker, w->status) && w->status != LCM_WK_FAILED) {
        char reason[400];
        snprintf(reason, sizeof(reason), "%s (after %u attempt%s)", t->last_error, t->attempts,
                 t->attempts == 1 ? "" : "s");
        lcm_warn("workers", "worker=%s msg=\"giving up\" reason=\"%s\"", w->id, reason);
        struct lcm_events evs;
        struct lcm_derr de;
        lcm_events_init(&evs);
        if (lcm_worker_cmd_transition(w, LCM_WK_FAILED, reason, WK_BY, wk_wall_s(), &evs, &de) == 0) {
            t->attempts = 0;
            finish_with(op, w->version, &evs);
            return;
        }
        lcm_events_clear(&evs);
    }
    double d = backoff_ms(c, t->attempts);
    t->next_ms = wk_now_ms() + d;
    lcm_info("workers", "worker=%s msg=\"step failed, retrying\" step=%s attempt=%u delay_ms=%.0f "
             "code=%d retryable=%d err=\"%s\"", op->id, step_names[op->step], t->attempts, d,
             e->code, e->retryable, e->message);
    wk_op_done(op);
}

static void step_ok(struct wop *op, double next_in_ms)
{
    struct lcm_workers_ctl *c = op->c;
    struct wk_track *t = c ? wk_track(c, op->id) : NULL;
    if (t) {
        if (t->step == op->step)
            t->attempts = 0;
        t->next_ms = wk_now_ms() + next_in_ms;
    }
}

static void sync_error(struct wop *op, const struct lcm_error *e, int fatal)
{
    /* the plugin refused the call synchronously (done never runs) */
    step_failed(op, e, fatal);
}

/* ---- launch: look up by tag (adopt), else find the AMI and launch ----------------------- */

static void launch_described(void *ud, const struct lcm_error *e, const void *result);
static void launch_image(void *ud, const struct lcm_error *e, const void *result);
static void launch_done(void *ud, const struct lcm_error *e, const void *result);

static void act_launch(struct lcm_workers_ctl *c, const struct lcm_worker *w)
{
    struct wop *op = claimed_op(c, w, S_LAUNCH);
    if (!op)
        return;
    snprintf(op->region, sizeof(op->region), "%s", w->region ? w->region : "");
    struct lcm_call call;
    wk_call_for(c, w, &call);
    /* moto ignores ClientToken (and EC2 forgets nothing but tokens), so an instance tagged
     * with this worker id is looked for before every launch */
    struct lcm_kv tag = { "lcm:worker_id", w->id };
    static const char *const states[] = { "pending", "running", "stopping", "stopped" };
    struct lcm_cloud_describe_args a = { .tag_filters = { &tag, 1 }, .states = { states, 4 } };
    struct lcm_error e = {0};
    if (lcm_cloud_call(c->app->plugins, describe, &call, &a, launch_described, op, &e, NULL) < 0)
        sync_error(op, &e, 1);
}

static void launch_described(void *ud, const struct lcm_error *e, const void *result)
{
    struct wop *op = ud;
    struct lcm_workers_ctl *c = op_ctl(op);
    if (!c)
        return;
    if (e) {
        step_failed(op, e, 1);
        return;
    }
    const struct lcm_worker *w = get_worker(c, op->id);
    if (!w) {
        wk_op_done(op);
        return;
    }
    const struct lcm_cloud_instances *r = result;
    if (r && r->n > 0) {
        const struct lcm_cloud_instance *inst = &r->v[0];
        if (r->n > 1)
            lcm_warn("workers", "worker=%s msg=\"several instances carry this worker id; adopting the "
                     "first\" n=%zu first=%s", w->id, r->n, inst->instance_id);
        lcm_info("workers", "worker=%s msg=\"adopting instance\" instance=%s state=%s", w->id,
                 inst->instance_id, inst->state_name ? inst->state_name : "?");
        int st = wk_status_of_instance(inst->state);
        if (st == LCM_WK_RUNNING)
            st = LCM_WK_STARTING;   /* readiness decides running */
        struct lcm_events evs;
        lcm_events_init(&evs);
        wk_observe_instance(w, inst, st, &evs);
        count(c, "adopt", "ok");
        step_ok(op, 0);
        finish_with(op, w->version, &evs);
        return;
    }
    if (w->desired_status == LCM_WK_TERMINATED) {
        /* nothing was launched and nothing should be: the worker is gone */
        struct lcm_worker_observation ob = { .status = LCM_WK_TERMINATED };
        struct lcm_events evs;
        struct lcm_derr de;
        lcm_events_init(&evs);
        lcm_worker_cmd_observe(w, &ob, WK_BY, wk_wall_s(), &evs, &de);
        finish_with(op, w->version, &evs);
        return;
    }
    const struct lcm_template *tpl = w->template_name ?
        lcm_store_get(c->app->store, "template", w->template_name) : NULL;
    if (!tpl || !tpl->ami_name_pattern || !*tpl->ami_name_pattern) {
        struct lcm_error fe = { .code = LCM_E_CONFIG };
        snprintf(fe.message, sizeof(fe.message), "template %s %s", w->template_name ? w->template_name : "?",
                 tpl ? "has no ami_name_pattern" : "does not exist");
        step_failed(op, &fe, 1);
        return;
    }
    struct lcm_call call;
    wk_call_for(c, w, &call);
    struct lcm_cloud_find_image_args a = { .name_pattern = tpl->ami_name_pattern };
    struct lcm_error se = {0};
    op->stage = 1;
    if (lcm_cloud_call(c->app->plugins, find_image, &call, &a, launch_image, op, &se, NULL) < 0)
        sync_error(op, &se, 1);
}

/* ClientToken: "lcm-<worker id>" for the first launch (as the aws plugin would derive it),
 * "-<n>" appended for the n-th launch of the same worker (EC2 remembers tokens of terminated
 * instances); hashed when the id does not fit EC2's 64 characters. */
static void client_token(const struct lcm_worker *w, char *out, size_t cap)
{
    unsigned gen = 0;
    for (uint16_t i = 0; i < w->history.n; i++)
        if (w->history.v[i].to == LCM_WK_PROVISIONING)
            gen++;
    /* history is bounded: a long-lived worker may have dropped early entries, which only
     * makes the generation smaller; the newest launch still differs from a failed one */
    int safe = strlen(w->id) <= 50;
    for (const char *p = w->id; safe && *p; p++)
        safe = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
               *p == '-' || *p == '_' || *p == '.' || *p == '~';
    char base[64];
    if (safe) {
        snprintf(base, sizeof(base), "lcm-%s", w->id);
    } else {
        char hex[65];
        lcm_sha256_hex(w->id, strlen(w->id), hex);
        snprintf(base, sizeof(base), "lcm-%.32s", hex);
    }
    if (gen <= 1)
        snprintf(out, cap, "%s", base);
    else
        snprintf(out, cap, "%s-%u", base, gen);
}

static void launch_image(void *ud, const struct lcm_error *e, const void *result)
{
    struct wop *op = ud;
    struct lcm_workers_ctl *c = op_ctl(op);
    if (!c)
        return;
    if (e) {
        step_failed(op, e, 1);
        return;
    }
    const struct lcm_worker *w = get_worker(c, op->id);
    const struct lcm_template *tpl = w && w->template_name ?
        lcm_store_get(c->app->store, "template", w->template_name) : NULL;
    if (!w || !tpl) {
        wk_op_done(op);
        return;
    }
    const struct lcm_cloud_images *imgs = result;
    if (!imgs || imgs->n == 0) {
        struct lcm_error fe = { .code = LCM_E_NOTFOUND };
        snprintf(fe.message, sizeof(fe.message), "no available AMI matches '%s' in %s",
                 tpl->ami_name_pattern, w->region ? w->region : "?");
        step_failed(op, &fe, 1);
        return;
    }
    snprintf(op->image_id, sizeof(op->image_id), "%s", imgs->v[0].image_id);
    cJSON *ls = lcm_template_launch_settings(tpl, w->region);
    const char *subnet = NULL, *key = NULL;
    const char *sgs[32];
    size_t nsg = 0;
    struct lcm_kv tags[40];
    size_t ntags = 0;
    tags[ntags++] = (struct lcm_kv){ "lcm:template", tpl->name };
    tags[ntags++] = (struct lcm_kv){ "lcm:worker_id", w->id };
    tags[ntags++] = (struct lcm_kv){ "lcm:managed_by", "lcm" };
    tags[ntags++] = (struct lcm_kv){ "Name", w->name ? w->name : w->id };
    if (ls) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(ls, "subnet_id"), *it;
        subnet = cJSON_IsString(x) ? x->valuestring : NULL;
        x = cJSON_GetObjectItemCaseSensitive(ls, "key_name");
        key = cJSON_IsString(x) ? x->valuestring : NULL;
        x = cJSON_GetObjectItemCaseSensitive(ls, "security_group_ids");
        cJSON_ArrayForEach(it, x)
            if (cJSON_IsString(it) && nsg < 32)
                sgs[nsg++] = it->valuestring;
        x = cJSON_GetObjectItemCaseSensitive(ls, "tags");
        cJSON_ArrayForEach(it, x) {
            if (!cJSON_IsString(it) || ntags >= 40 || !strncmp(it->string, "lcm:", 4) ||
                !strcmp(it->string, "Name"))
                continue;
            tags[ntags++] = (struct lcm_kv){ it->string, it->valuestring };
        }
    }
    char token[80];
    client_token(w, token, sizeof(token));
    struct lcm_cloud_launch_args a = {
        .image_id = op->image_id,
        .instance_type = tpl->instance_type ? tpl->instance_type : w->instance_type,
        .client_token = token,
        .subnet_id = subnet,
        .security_group_ids = { sgs, nsg },
        .key_name = key,
        .tags = { tags, ntags },
    };
    struct lcm_call call;
    wk_call_for(c, w, &call);
    lcm_info("workers", "worker=%s msg=\"launching\" region=%s image=%s type=%s client_token=%s",
             w->id, w->region ? w->region : "-", op->image_id, a.instance_type ? a.instance_type : "-", token);
    struct lcm_error se = {0};
    op->stage = 2;
    int rc = lcm_cloud_call(c->app->plugins, launch, &call, &a, launch_done, op, &se, NULL);
    cJSON_Delete(ls);
    if (rc < 0)
        sync_error(op, &se, 1);
}

static void launch_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct wop *op = ud;
    struct lcm_workers_ctl *c = op_ctl(op);
    if (!c)
        return;
    if (e) {
        step_failed(op, e, 1);
        return;
    }
    const struct lcm_cloud_instances *r = result;
    const struct lcm_worker *w = get_worker(c, op->id);
    if (!w || !r || r->n == 0) {
        wk_op_done(op);
        return;
    }
    lcm_info("workers", "worker=%s msg=\"launched\" instance=%s", w->id, r->v[0].instance_id);
    count(c, "launch", "ok");
    struct lcm_events evs;
    lcm_events_init(&evs);
    int st = wk_status_of_instance(r->v[0].state);
    wk_observe_instance(w, &r->v[0], st == LCM_WK_RUNNING || st < 0 ? LCM_WK_STARTING : st, &evs);
    step_ok(op, (double)c->poll_ms);
    finish_with(op, w->version, &evs);
}

/* ---- poll: describe the instance and act on what EC2 says ------------------------------ */

static void poll_described(void *ud, const struct lcm_error *e, const void *result);
static void ids_done(void *ud, const struct lcm_error *e, const void *result);
static void ready_info(void *ud, const struct lcm_error *e, const void *result);

static void act_poll(struct lcm_workers_ctl *c, const struct lcm_worker *w)
{
    struct wop *op = claimed_op(c, w, S_POLL);
    if (!op)
        return;
    struct wk_track *t = wk_track(c, w->id);
    if (t)
        t->refresh = 0;   /* taken; a failure backs off instead of polling in a loop */
    snprintf(op->instance_id, sizeof(op->instance_id), "%s", w->instance_id);
    struct lcm_call call;
    wk_call_for(c, w, &call);
    const char *ids[] = { w->instance_id };
    struct lcm_cloud_describe_args a = { .instance_ids = { ids, 1 } };
    struct lcm_error e = {0};
    if (lcm_cloud_call(c->app->plugins, describe, &call, &a, poll_described, op, &e, NULL) < 0)
        sync_error(op, &e, 0);
}

static void act_ids(struct wop *op, const struct lcm_worker *w, int step)
{
    struct lcm_workers_ctl *c = op->c;
    op->step = step;
    struct lcm_call call;
    wk_call_for(c, w, &call);
    const char *ids[] = { w->instance_id };
    struct lcm_cloud_ids_args a = { .instance_ids = { ids, 1 } };
    struct lcm_error e = {0};
    int rc;
    lcm_info("workers", "worker=%s msg=\"%s instance\" instance=%s", w->id, step_names[step], w->instance_id);
    if (step == S_START)
        rc = lcm_cloud_call(c->app->plugins, start, &call, &a, ids_done, op, &e, NULL);
    else if (step == S_STOP)
        rc = lcm_cloud_call(c->app->plugins, stop, &call, &a, ids_done, op, &e, NULL);
    else
        rc = lcm_cloud_call(c->app->plugins, terminate, &call, &a, ids_done, op, &e, NULL);
    if (rc < 0)
        sync_error(op, &e, 0);
}

/* Sends the start, stop or terminate call for w's instance under the worker's claim (skipped
 * when another action holds it: the next sweep looks again). */
static void act_send(struct lcm_workers_ctl *c, const struct lcm_worker *w, int step)
{
    struct wop *op = claimed_op(c, w, step);
    if (op)
        act_ids(op, w, step);
}

/* Stopping and terminating: without an instance the worker moves on to gone_to; otherwise the
 * stop or terminate call goes out once (sent) and the instance is polled after that. */
static void act_instance_end(struct lcm_workers_ctl *c, const struct lcm_worker *w, int sent,
                             int step, int gone_to)
{
    if (!w->instance_id)
        act_transition(c, w, gone_to, "no instance");
    else if (!sent)
        act_send(c, w, step);
    else
        act_poll(c, w);
}

static void ids_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct wop *op = ud;
    (void)result;
    struct lcm_workers_ctl *c = op_ctl(op);
    if (!c)
        return;
    struct wk_track *t = wk_track(c, op->id);
    if (e && !(op->step == S_TERMINATE && e->code == LCM_E_NOTFOUND)) {
        step_failed(op, e, 0);
        return;
    }
    if (t) {
        if (op->step == S_START)
            t->start_sent = 1;
        else if (op->step == S_STOP)
            t->stop_sent = 1;
        else
            t->term_sent = 1;
    }
    count(c, step_names[op->step], "ok");
    /* the next poll reads the new state soon */
    step_ok(op, (double)(c->poll_ms < 1000 ? c->poll_ms : 1000));
    wk_op_done(op);
}

static int runtime_available(struct lcm_workers_ctl *c)
{
    struct lcm_plugin *p = lcm_plugins_get(c->app->plugins, LCM_KIND_RUNTIME);
    return p && lcm_plugin_implements(p, offsetof(struct lcm_runtime_ops, system_info));
}

static void poll_described(void *ud, const struct lcm_error *e, const void *result)
{
    struct wop *op = ud;
    struct lcm_workers_ctl *c = op_ctl(op);
    if (!c)
        return;
    const struct lcm_worker *w = get_worker(c, op->id);
    if (!w || !w->instance_id || strcmp(w->instance_id, op->instance_id)) {
        wk_op_done(op);
        return;
    }
    struct wk_track *t = wk_track(c, op->id);
    const struct lcm_cloud_instances *r = result;
    const struct lcm_cloud_instance *inst = NULL;
    if (!e && r) {
        for (size_t i = 0; i < r->n; i++)
            if (r->v[i].instance_id && !strcmp(r->v[i].instance_id, w->instance_id))
                inst = &r->v[i];
    }
    struct lcm_events evs;
    struct lcm_derr de;
    lcm_events_init(&evs);
    int young = (w->status == LCM_WK_PROVISIONING || w->status == LCM_WK_STARTING) && in_status_s(w) < 60;
    if (((e && e->code == LCM_E_NOTFOUND) || (!e && !inst)) && !young) {
        /* gone from EC2 (long terminated, or deleted outside LCM) */
        lcm_warn("workers", "worker=%s msg=\"instance not found; worker terminated\" instance=%s", w->id,
                 w->instance_id);
        count(c, "orphan", "terminated");
        struct lcm_worker_observation ob = { .status = LCM_WK_TERMINATED };
        lcm_worker_cmd_observe(w, &ob, WK_BY, wk_wall_s(), &evs, &de);
        finish_with(op, w->version, &evs);
        return;
    }
    if (e || !inst) {
        /* (a NotFound right after a launch is EC2's eventual consistency) */
        struct lcm_error nf = { .code = LCM_E_NOTFOUND, .retryable = 1 };
        snprintf(nf.message, sizeof(nf.message), "instance %s not visible yet", w->instance_id);
        step_failed(op, e ? e : &nf, 0);
        return;
    }
    int ec2 = wk_status_of_instance(inst->state);
    int S = w->status, D = w->desired_status;
    step_ok(op, (double)c->poll_ms);
    if (ec2 == LCM_WK_TERMINATED || ec2 == LCM_WK_TERMINATING) {
        if (S == LCM_WK_TERMINATING && ec2 == LCM_WK_TERMINATED) {
            wk_observe_instance(w, inst, -1, &evs);
            lcm_worker_cmd_transition(w, LCM_WK_TERMINATED, "instance terminated", WK_BY, wk_wall_s(), &evs, &de);
        } else if (S != LCM_WK_TERMINATING) {
            if (D != LCM_WK_TERMINATED) {
                lcm_warn("workers", "worker=%s msg=\"instance terminated outside LCM\" instance=%s",
                         w->id, w->instance_id);
                count(c, "orphan", "terminated");
            }
            wk_observe_instance(w, inst, ec2, &evs);
        } else if (t && !t->term_sent) {
            act_ids(op, w, S_TERMINATE);
            return;
        }
        finish_with(op, w->version, &evs);
        return;
    }
    switch (S) {
    case LCM_WK_TERMINATING:
        if (t && !t->term_sent) {
            act_ids(op, w, S_TERMINATE);
            return;
        }
        break;
    case LCM_WK_STOPPING:
        if (ec2 == LCM_WK_STOPPED) {
            wk_observe_instance(w, inst, -1, &evs);
            lcm_worker_cmd_transition(w, LCM_WK_STOPPED, "instance stopped", WK_BY, wk_wall_s(), &evs, &de);
        } else if ((ec2 == LCM_WK_RUNNING || ec2 == LCM_WK_STARTING) && t && !t->stop_sent) {
            act_ids(op, w, S_STOP);
            return;
        }
        break;
    case LCM_WK_PROVISIONING:
    case LCM_WK_STARTING:
        if (S == LCM_WK_PROVISIONING) {
            wk_observe_instance(w, inst, LCM_WK_STARTING, &evs);
            break;
        }
        if (ec2 == LCM_WK_STOPPED && D != LCM_WK_TERMINATED && t && !t->start_sent) {
            act_ids(op, w, S_START);
            return;
        }
        if (ec2 == LCM_WK_RUNNING) {
            wk_observe_instance(w, inst, -1, &evs);
            if (evs.n > 0) {
                /* record the addresses first; readiness follows on the next pass */
                step_ok(op, 0);
                break;
            }
            if (!runtime_available(c)) {
                lcm_worker_cmd_transition(w, LCM_WK_RUNNING, "instance running (no runtime plugin)",
                                          WK_BY, wk_wall_s(), &evs, &de);
                break;
            }
            op->step = S_READY;
            struct lcm_call call;
            wk_call_for(c, w, &call);
            struct lcm_error se = {0};
            if (lcm_runtime_call(c->app->plugins, system_info, &call, NULL, ready_info, op, &se, NULL) < 0)
                sync_error(op, &se, 0);
            return;
        }
        wk_observe_instance(w, inst, -1, &evs);
        break;
    case LCM_WK_RUNNING:
    case LCM_WK_DRAINING:
    case LCM_WK_STOPPED:
        /* drift: EC2 says something else than the worker (stopped from the console, …) */
        if (ec2 >= 0 && ec2 != S && !(S == LCM_WK_DRAINING && ec2 == LCM_WK_RUNNING) &&
            !(S == LCM_WK_STOPPED && ec2 == LCM_WK_STOPPING)) {
            lcm_warn("workers", "worker=%s msg=\"instance state changed outside LCM\" status=%s ec2=%s",
                     w->id, lcm_fsm_name(&lcm_fsm_worker, S), inst->state_name ? inst->state_name : "?");
            wk_observe_instance(w, inst, ec2 == LCM_WK_RUNNING ? LCM_WK_STARTING : ec2, &evs);
        } else {
            wk_observe_instance(w, inst, -1, &evs);
        }
        break;
    default:
        wk_observe_instance(w, inst, -1, &evs);
        break;
    }
    finish_with(op, w->version, &evs);
}

/* ---- readiness through the runtime plugin: system_info, licence ------------------------ */

static void ready_licence(void *ud, const struct lcm_error *e, const void *result);
static void ready_nodedefs(void *ud, const struct lcm_error *e, const void *result);

static void ready_info(void *ud, const struct lcm_error *e, const void *result)
{
    struct wop *op = ud;
    const struct lcm_worker *w = op_worker(op);
    if (!w)
        return;
    struct lcm_workers_ctl *c = op->c;
    if (e) {
        /* CML not answering yet is normal while it boots: retry until the boot timeout */
        struct wk_track *t = wk_track(c, op->id);
        if (t)
            snprintf(t->last_error, sizeof(t->last_error), "CML: %s", e->message);
        step_ok(op, (double)c->poll_ms);
        wk_op_done(op);
        return;
    }
    const struct lcm_rt_system_info *si = result;
    snprintf(op->cml_version, sizeof(op->cml_version), "%s", si->version ? si->version : "");
    op->cml_ready = si->ready;
    if (!si->ready) {
        struct wk_track *t = wk_track(c, op->id);
        if (t)
            snprintf(t->last_error, sizeof(t->last_error), "CML reports not ready");
        struct lcm_events evs;
        lcm_events_init(&evs);
        if (w->cml.ready || (op->cml_version[0] && (!w->cml.version || strcmp(w->cml.version, op->cml_version))))
            wk_set_cml(w, op, op->cml_version[0] ? op->cml_version : NULL, 0, wk_wall_s(), &evs);
        step_ok(op, (double)c->poll_ms);
        finish_with(op, w->version, &evs);
        return;
    }
    struct lcm_call call;
    wk_call_for(c, w, &call);
    struct lcm_error se = {0};
    /* CML's node definitions go on the worker with readiness: placement needs them */
    if (wk_has_node_defs_op(c)) {
        if (lcm_runtime_call(c->app->plugins, node_definitions, &call, NULL, ready_nodedefs, op, &se,
                             NULL) < 0)
            step_failed(op, &se, 0);
        return;
    }
    if (lcm_runtime_call(c->app->plugins, licence_get, &call, NULL, ready_licence, op, &se, NULL) < 0)
        step_failed(op, &se, 0);
}

static void ready_nodedefs(void *ud, const struct lcm_error *e, const void *result)
{
    struct wop *op = ud;
    const struct lcm_worker *w = op_worker(op);
    if (!w)
        return;
    struct lcm_workers_ctl *c = op->c;
    if (e || wk_node_defs_take(op, result) < 0) {
        /* like licensing: retried on the next poll, and named if the boot timeout fails it */
        struct wk_track *t = wk_track(c, op->id);
        if (t)
            snprintf(t->last_error, sizeof(t->last_error), "CML node definitions: %s",
                     e ? e->message : "out of memory");
        step_ok(op, (double)c->poll_ms);
        wk_op_done(op);
        return;
    }
    struct lcm_call call;
    wk_call_for(c, w, &call);
    struct lcm_error se = {0};
    if (lcm_runtime_call(c->app->plugins, licence_get, &call, NULL, ready_licence, op, &se, NULL) < 0)
        step_failed(op, &se, 0);
}

static void ready_licence(void *ud, const struct lcm_error *e, const void *result)
{
    struct wop *op = ud;
    const struct lcm_worker *w = op_worker(op);
    if (!w)
        return;
    struct lcm_workers_ctl *c = op->c;
    struct wk_track *t = wk_track(c, op->id);
    if (e) {
        if (t)
            snprintf(t->last_error, sizeof(t->last_error), "CML licensing: %s", e->message);
        step_ok(op, (double)c->poll_ms);
        wk_op_done(op);
        return;
    }
    const struct lcm_rt_licence *lic = result;
    struct lcm_events evs;
    struct lcm_derr de;
    lcm_events_init(&evs);
    int type = lic->product_license ? lcm_license_parse(lic->product_license) : 0;
    if (!type)
        type = w->license.type;
    const char *lstatus = lic->registered ? "registered" :
                          (lic->registration_status ? lic->registration_status : "unregistered");
    if (type != w->license.type || lic->node_limit != w->license.node_limit || !w->license.status ||
        strcmp(w->license.status, lstatus))
        lcm_worker_cmd_set_license(w, type, lstatus, lic->node_limit > 0 ? lic->node_limit : 0, WK_BY,
                                   wk_wall_s(), &evs, &de);
    int ready = lic->registered != 0;
    const char *ver = op->cml_version[0] ? op->cml_version : NULL;
    int nd_changed = wk_node_defs_changed(op, w);
    if (nd_changed)
        lcm_info("workers", "worker=%s msg=\"CML node definitions recorded\" count=%zu", w->id,
                 op->n_node_defs);
    if (ready != w->cml.ready || nd_changed || (ver && (!w->cml.version || strcmp(w->cml.version, ver))))
        wk_set_cml(w, op, ver, ready, wk_wall_s(), &evs);
    if (ready && w->status == LCM_WK_STARTING) {
        lcm_worker_cmd_transition(w, LCM_WK_RUNNING, "CML ready and licensed", WK_BY, wk_wall_s(), &evs, &de);
        count(c, "readiness", "ok");
    } else if (!ready && t) {
        snprintf(t->last_error, sizeof(t->last_error), "CML licence not registered (%s)", lstatus);
        lcm_info("workers", "worker=%s msg=\"CML ready but not licensed\" status=%s", w->id, lstatus);
    }
    step_ok(op, (double)c->poll_ms);
    finish_with(op, w->version, &evs);
}

/* ---- the decision per worker ------------------------------------------------------------ */

static void decide(struct lcm_workers_ctl *c, const struct lcm_worker *w, struct wk_track *t)
{
    int S = w->status, D = w->desired_status;
    struct lcm_events evs;
    struct lcm_derr de;
    switch (S) {
    case LCM_WK_PENDING:
        if (D == LCM_WK_RUNNING)
            act_transition(c, w, LCM_WK_PROVISIONING, "launch");
        else if (D == LCM_WK_TERMINATED)
            act_launch(c, w);   /* adopts an instance if one exists, else terminated */
        return;
    case LCM_WK_PROVISIONING:
        if (in_status_s(w) > c->boot_timeout_s) {
            char reason[400];
            snprintf(reason, sizeof(reason), "launch timed out after %lds%s%s", c->boot_timeout_s,
                     t->last_error[0] ? ": " : "", t->last_error);
            act_transition(c, w, LCM_WK_FAILED, reason);
        } else if (w->instance_id) {
            act_poll(c, w);
        } else {
            act_launch(c, w);
        }
        return;
    case LCM_WK_STARTING:
        if (D != LCM_WK_TERMINATED && in_status_s(w) > c->boot_timeout_s) {
            char reason[400];
            snprintf(reason, sizeof(reason), "not ready after %lds%s%s", c->boot_timeout_s,
                     t->last_error[0] ? ": " : "", t->last_error);
            act_transition(c, w, LCM_WK_FAILED, reason);
            return;
        }
        if (D == LCM_WK_TERMINATED && w->instance_id && !t->term_sent) {
            act_send(c, w, S_TERMINATE);
            return;
        }
        if (w->instance_id)
            act_poll(c, w);
        else
            act_transition(c, w, LCM_WK_FAILED, "starting without an instance");
        return;
    case LCM_WK_RUNNING:
        if (D == LCM_WK_TERMINATED) {
            act_transition(c, w, LCM_WK_TERMINATING, "terminate requested");
        } else if (D == LCM_WK_STOPPED) {
            lcm_events_init(&evs);
            int64_t now = wk_wall_s();
            if (lcm_worker_cmd_drain(w, "stop requested", c->drain_minutes ? now + c->drain_minutes * 60 : 0,
                                     WK_BY, now, &evs, &de) == 0)
                act_commit(c, w, &evs, "draining before stop");
            else
                lcm_events_clear(&evs);
        } else if (t->refresh && w->instance_id) {
            act_poll(c, w);
        } else if (wk_now_ms() >= t->metrics_ms) {
            wk_metrics_start(c, w);
        }
        return;
    case LCM_WK_DRAINING:
        if (D == LCM_WK_TERMINATED && w->nsessions == 0) {
            act_transition(c, w, LCM_WK_TERMINATING, "terminate requested");
        } else if (lcm_worker_drain_done(w, wk_wall_s())) {
            lcm_events_init(&evs);
            const char *why = w->nsessions == 0 ? "drained" : "drain deadline passed";
            int rc = lcm_worker_cmd_transition(w, LCM_WK_STOPPING, why, WK_BY, wk_wall_s(), &evs, &de);
            /* a drained worker stays stopped: without this a desired "running" would start
             * it again at once */
            if (!rc && D == LCM_WK_RUNNING)
                rc = lcm_worker_cmd_set_desired(w, LCM_WK_STOPPED, WK_BY, wk_wall_s(), &evs, &de);
            if (!rc)
                act_commit(c, w, &evs, why);
            else
                lcm_events_clear(&evs);
        } else if (t->refresh && w->instance_id) {
            act_poll(c, w);
        } else if (wk_now_ms() >= t->metrics_ms) {
            wk_metrics_start(c, w);
        }
        return;
    case LCM_WK_STOPPING:
        act_instance_end(c, w, t->stop_sent, S_STOP, LCM_WK_STOPPED);
        return;
    case LCM_WK_STOPPED:
        if (D == LCM_WK_TERMINATED)
            act_transition(c, w, LCM_WK_TERMINATING, "terminate requested");
        else if (D == LCM_WK_RUNNING && w->instance_id)
            act_transition(c, w, LCM_WK_STARTING, "start requested");
        else if (t->refresh && w->instance_id)
            act_poll(c, w);
        return;
    case LCM_WK_TERMINATING:
        act_instance_end(c, w, t->term_sent, S_TERMINATE, LCM_WK_TERMINATED);
        return;
    case LCM_WK_FAILED:
        /* stays failed until an operator retries (failed → pending) or terminates */
        if (D == LCM_WK_TERMINATED)
            act_transition(c, w, LCM_WK_TERMINATING, "terminate requested");
        return;
    default:
        return;
    }
}

struct each_ctx {
    struct lcm_workers_ctl *c;
    double now;
    size_t by_status[LCM_WK__COUNT];
};

static int each_worker(const char *id, const void *state, void *ud)
{
    struct each_ctx *x = ud;
    struct lcm_workers_ctl *c = x->c;
    const struct lcm_worker *w = state;
    if (w->status < LCM_WK__COUNT)
        x->by_status[w->status]++;
    if (w->status == LCM_WK_TERMINATED) {
        wk_track_forget(c, id);
        return 0;
    }
    if (lcm_ctl_claimed(c->app->ctl, "worker", id))
        return 0;
    struct wk_track *t = wk_track(c, id);
    if (!t)
        return 0;
    if (t->status_seen != w->status) {
        t->status_seen = w->status;
        t->start_sent = t->stop_sent = t->term_sent = 0;
        t->next_ms = 0;
    }
    if (x->now < t->next_ms && !t->refresh)
        return 0;
    decide(c, w, t);
    return 0;
}

/* ---- requests from the API (any replica) ---------------------------------------------- */

/* POST /workers/import and /workers/{id}/refresh append {type: worker.import, region} and
 * {type: worker.refresh, worker_id} to the stream lcm:requests (host/api). The controller
 * reads it through its own consumer group, so the position survives a change of leader and
 * other controllers reading the stream are not disturbed. Only the leader reads it, so a
 * refresh also asks the labs controller (same process, leader too) to discover that worker's
 * labs. Requests are hints: a lost one only waits for the next periodic sweep. */
#define REQ_STREAM "lcm:requests"
#define REQ_GROUP "lcm-workers"

static void add_region(struct lcm_workers_ctl *c, const char *region)
{
    if (!region || !*region)
        return;
    for (size_t i = 0; i < 16; i++) {
        if (c->extra_regions[i] && !strcmp(c->extra_regions[i], region))
            return;
        if (!c->extra_regions[i]) {
            c->extra_regions[i] = strdup(region);
            return;
        }
    }
}

static const char *entry_field(const redisReply *fields, const char *name)
{
    for (size_t i = 0; fields && fields->type == REDIS_REPLY_ARRAY && i + 1 < fields->elements; i += 2)
        if (fields->element[i]->type == REDIS_REPLY_STRING && !strcmp(fields->element[i]->str, name) &&
            fields->element[i + 1]->type == REDIS_REPLY_STRING)
            return fields->element[i + 1]->str;
    return NULL;
}

static void handle_request(struct lcm_workers_ctl *c, const redisReply *fields)
{
    const char *type = entry_field(fields, "type");
    if (!type)
        return;
    if (!strcmp(type, "worker.import")) {
        const char *region = entry_field(fields, "region");
        lcm_info("workers", "msg=\"import requested\" region=%s", region ? region : "*");
        add_region(c, region);
        c->discovery_now = 1;
    } else if (!strcmp(type, "worker.refresh")) {
        const char *id = entry_field(fields, "worker_id");
        struct wk_track *t = id ? wk_track(c, id) : NULL;
        if (t) {
            t->refresh = 1;
            t->metrics_ms = 0;
        }
        /* and its labs: the labs controller lists them on CML now (unknown ones become
         * discovered records, vanished ones orphaned) instead of at its next period */
        if (id && lcm_labs_discover(c->app, id) < 0)
            lcm_warn("workers", "worker=%s msg=\"refresh: no labs controller to discover labs\"", id);
        lcm_info("workers", "worker=%s msg=\"refresh requested\"", id ? id : "-");
    }
}

static void requests_reply(struct lcm_redis *r, redisReply *reply, void *ud)
{
    struct wop *op = ud;
    struct lcm_workers_ctl *c = op->c;
    if (c) {
        c->requests_busy = 0;
        if (reply && reply->type == REDIS_REPLY_ERROR && strstr(reply->str, "NOGROUP"))
            c->group_ready = 0;
        /* [[stream, [[id, [field, value, …]], …]]] */
        const redisReply *entries = NULL;
        if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
            reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2)
            entries = reply->element[0]->element[1];
        const char *argv[3 + 64];
        int argc = 0;
        argv[argc++] = "XACK";
        argv[argc++] = REQ_STREAM;
        argv[argc++] = REQ_GROUP;
        for (size_t i = 0; entries && entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++) {
            const redisReply *e = entries->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING)
                continue;
            handle_request(c, e->element[1]);
            if (argc < 3 + 64)
                argv[argc++] = e->element[0]->str;
        }
        if (argc > 3) {
            lcm_redis_commandv(r, NULL, NULL, argc, argv, NULL);
            lcm_ctl_wake(c->app->ctl, "workers");
        }
    }
    wk_op_done(op);
}

static void group_reply(struct lcm_redis *r, redisReply *reply, void *ud)
{
    struct wop *op = ud;
    (void)r;
    if (op->c) {
        op->c->requests_busy = 0;
        /* OK, or BUSYGROUP when it exists already */
        op->c->group_ready = reply && (reply->type != REDIS_REPLY_ERROR || strstr(reply->str, "BUSYGROUP"));
    }
    wk_op_done(op);
}

static void poll_requests(struct lcm_workers_ctl *c, double now)
{
    if (c->requests_busy || now < c->next_requests_ms)
        return;
    c->next_requests_ms = now + 250;
    struct wop *op = wk_op_new(c, NULL, 0);
    if (!op)
        return;
    int rc;
    if (!c->group_ready) {
        const char *argv[] = { "XGROUP", "CREATE", REQ_STREAM, REQ_GROUP, "$", "MKSTREAM" };
        rc = lcm_redis_commandv(c->app->redis, group_reply, op, 6, argv, NULL);
    } else {
        const char *argv[] = { "XREADGROUP", "GROUP", REQ_GROUP, "leader", "COUNT", "64",
                               "STREAMS", REQ_STREAM, ">" };
        rc = lcm_redis_commandv(c->app->redis, requests_reply, op, 9, argv, NULL);
    }
    if (rc == 0)
        c->requests_busy = 1;
    else
        wk_op_done(op);
}

/* ---- controller callbacks ------------------------------------------------------------- */

static void reconcile(void *ud)
{
    struct lcm_workers_ctl *c = ud;
    if (!c->running || !c->app->plugins)
        return;
    double now = wk_now_ms();
    poll_requests(c, now);
    if (lcm_plugins_get(c->app->plugins, LCM_KIND_CLOUD) == NULL)
        return;
    if (!c->discovery_busy && (c->discovery_now || (c->discovery_enabled && now >= c->next_discovery_ms))) {
        c->discovery_now = 0;
        c->next_discovery_ms = now + (double)c->discovery_ms;
        wk_discovery_start(c);
    }
    struct each_ctx x = { .c = c, .now = now };
    lcm_store_each(c->app->store, "worker", each_worker, &x);
    for (int s = 0; s < LCM_WK__COUNT; s++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "status=\"%s\"", lcm_fsm_name(&lcm_fsm_worker, s));
        lcm_metrics_set(c->app->metrics, "lcm_workers", labels, (double)x.by_status[s]);
    }
}

static int interested(void *ud, const struct lcm_kind *kind, const char *id, const void *state,
                      const struct lcm_event *ev)
{
    (void)ud;
    (void)id;
    (void)state;
    (void)ev;
    return kind == &lcm_kind_worker;
}

static void start(void *ud)
{
    struct lcm_workers_ctl *c = ud;
    c->running = 1;
    c->next_discovery_ms = wk_now_ms();   /* discover at once on becoming leader */
    lcm_info("workers", "msg=\"worker controller started\" poll_ms=%ld discovery_ms=%ld metrics_ms=%ld",
             c->poll_ms, c->discovery_ms, c->metrics_ms);
}

static void stop(void *ud)
{
    struct lcm_workers_ctl *c = ud;
    c->running = 0;
    tracks_clear(c);
}

int lcm_workers_ctl_init(struct lcm_app *app, char *err, size_t errlen)
{
    if (!app->controllers) {
        snprintf(err, errlen, "worker controller: lcm_controllers_init sets it up");
        return -1;
    }
    struct lcm_workers_ctl *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->app = app;
    c->poll_ms = (long)lcm_config_int(app->cfg, "worker_poll_interval_ms");
    c->discovery_ms = (long)lcm_config_int(app->cfg, "discovery_interval_ms");
    c->discovery_enabled = c->discovery_ms > 0;
    if (!c->discovery_enabled)
        c->discovery_ms = 60000;
    c->metrics_ms = (long)lcm_config_int(app->cfg, "metrics_interval_ms");
    c->boot_timeout_s = (long)lcm_config_int(app->cfg, "worker_boot_timeout_s");
    c->drain_minutes = (long)lcm_config_int(app->cfg, "worker_stop_drain_minutes");
    c->max_attempts = (long)lcm_config_int(app->cfg, "worker_max_attempts");
    c->backoff_base_ms = (long)lcm_config_int(app->cfg, "worker_backoff_base_ms");
    c->backoff_max_ms = (long)lcm_config_int(app->cfg, "worker_backoff_max_ms");
    c->op_timeout_ms = (long)lcm_config_int(app->cfg, "worker_op_timeout_ms");
    c->ami_pattern = lcm_config_str(app->cfg, "discovery_ami_name_pattern");
    if (c->backoff_max_ms < c->backoff_base_ms)
        c->backoff_max_ms = c->backoff_base_ms;
    lcm_metrics_declare(app->metrics, "lcm_workers", LCM_METRIC_GAUGE, "Workers by status");
    lcm_metrics_declare(app->metrics, "lcm_worker_actions_total", LCM_METRIC_COUNTER,
                        "Worker controller actions by outcome");
    wk_metrics_declare(c);
    struct lcm_controller def = {
        .name = "workers",
        .sweep_ms = (unsigned)(c->poll_ms < 1000 ? c->poll_ms : 1000),
        .start = start,
        .stop = stop,
        .reconcile = reconcile,
        .interested = interested,
    };
    if (lcm_ctl_register(app->ctl, &def, c) < 0) {
        snprintf(err, errlen, "cannot register the worker controller");
        free(c);
        return -1;
    }
    app->controllers->workers = c;
    return 0;
}

void lcm_workers_ctl_free(struct lcm_app *app)
{
    struct lcm_workers_ctl *c = app->controllers ? app->controllers->workers : NULL;
    if (!c)
        return;
    app->controllers->workers = NULL;
    /* ops still in flight complete later (plugin shutdown, Redis teardown): detach them */
    for (struct wop *op = c->ops; op; op = op->next)
        op->c = NULL;
    tracks_clear(c);
    for (size_t i = 0; i < 16; i++)
        free(c->extra_regions[i]);
    free(c);
}
