/* Discovery and orphan clean-up for the worker controller: one sweep over every known region
 * lists the instances carrying LCM's tags and those whose AMI matches the configured name
 * pattern; instances LCM does not know become `discovered` workers, and workers whose
 * instance is missing or in another state than expected are re-read (poll) at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "app.h"
#include "core/log.h"
#include "core/metrics.h"
#include "ctl.h"
#include "domain/events.h"
#include "domain/fsm.h"
#include "domain/template.h"
#include "domain/worker.h"
#include "plugin/plugin.h"
#include "store/store.h"
#include "workers_int.h"

#define MAX_REGIONS 32
#define MAX_IMAGES 20
#define MAX_PAGES 200

struct seen {
    char *instance_id, *worker_tag, *template_tag, *image_id, *type, *private_ip, *public_ip;
    char *region;
    enum lcm_instance_state state;
};

struct sweep {
    char *regions[MAX_REGIONS];
    size_t nregions, ri;
    int phase;                     /* 0 tagged, 1 images, 2 by image */
    char *next_token;
    char *images[MAX_IMAGES];
    size_t nimages, ii;
    int pages;
    struct seen *v;
    size_t n, cap;
    int failed_regions;
};

static void sweep_free(void *p)
{
    struct sweep *s = p;
    if (!s)
        return;
    for (size_t i = 0; i < s->nregions; i++)
        free(s->regions[i]);
    for (size_t i = 0; i < s->nimages; i++)
        free(s->images[i]);
    free(s->next_token);
    for (size_t i = 0; i < s->n; i++) {
        struct seen *x = &s->v[i];
        free(x->instance_id);
        free(x->worker_tag);
        free(x->template_tag);
        free(x->image_id);
        free(x->type);
        free(x->private_ip);
        free(x->public_ip);
        free(x->region);
    }
    free(s->v);
    free(s);
}

static char *dup0(const char *s) { return s && *s ? strdup(s) : NULL; }

static void add_region(struct sweep *s, const char *r)
{
    if (!r || !*r || s->nregions >= MAX_REGIONS)
        return;
    for (size_t i = 0; i < s->nregions; i++)
        if (!strcmp(s->regions[i], r))
            return;
    s->regions[s->nregions] = strdup(r);
    if (s->regions[s->nregions])
        s->nregions++;
}

static int region_of_template(const char *id, const void *state, void *ud)
{
    const struct lcm_template *t = state;
    struct sweep *s = ud;
    (void)id;
    if (t->deleted)
        return 0;
    add_region(s, t->region);
    cJSON *r = t->regions_json ? cJSON_Parse(t->regions_json) : NULL, *it;
    cJSON_ArrayForEach(it, r)
        add_region(s, it->string);
    cJSON_Delete(r);
    return 0;
}

static int region_of_worker(const char *id, const void *state, void *ud)
{
    const struct lcm_worker *w = state;
    (void)id;
    if (w->status != LCM_WK_TERMINATED)
        add_region(ud, w->region);
    return 0;
}

static void keep(struct sweep *s, const struct lcm_cloud_instance *inst, const char *region)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i].instance_id, inst->instance_id))
            return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        struct seen *v = realloc(s->v, cap * sizeof(*v));
        if (!v)
            return;
        s->v = v;
        s->cap = cap;
    }
    struct seen *x = &s->v[s->n];
    memset(x, 0, sizeof(*x));
    x->instance_id = strdup(inst->instance_id);
    if (!x->instance_id)
        return;
    for (size_t i = 0; i < inst->tags.n; i++) {
        if (!strcmp(inst->tags.v[i].key, "lcm:worker_id"))
            x->worker_tag = dup0(inst->tags.v[i].value);
        else if (!strcmp(inst->tags.v[i].key, "lcm:template"))
            x->template_tag = dup0(inst->tags.v[i].value);
    }
    x->image_id = dup0(inst->image_id);
    x->type = dup0(inst->instance_type);
    x->private_ip = dup0(inst->private_ip);
    x->public_ip = dup0(inst->public_ip);
    x->region = dup0(region);
    x->state = inst->state;
    s->n++;
}

static void next_call(struct wop *op);

static void described(void *ud, const struct lcm_error *e, const void *result)
{
    struct wop *op = ud;
    struct sweep *s = op->extra;
    if (!op->c) {
        wk_op_done(op);
        return;
    }
    free(s->next_token);
    s->next_token = NULL;
    if (e) {
        lcm_warn("workers", "msg=\"discovery: describe failed; region skipped\" region=%s err=\"%s\"",
                 s->regions[s->ri], e->message);
        s->failed_regions = 1;
        s->phase = 3;   /* skip the rest of this region */
        next_call(op);
        return;
    }
    const struct lcm_cloud_instances *r = result;
    for (size_t i = 0; r && i < r->n; i++)
        if (r->v[i].instance_id)
            keep(s, &r->v[i], s->regions[s->ri]);
    if (r && r->next_token && *r->next_token && ++s->pages < MAX_PAGES)
        s->next_token = strdup(r->next_token);
    else if (s->phase == 0)
        s->phase = 1;
    else if (s->phase == 2)
        s->ii++;
    next_call(op);
}

static void images_found(void *ud, const struct lcm_error *e, const void *result)
{
    struct wop *op = ud;
    struct sweep *s = op->extra;
    if (!op->c) {
        wk_op_done(op);
        return;
    }
    for (size_t i = 0; i < s->nimages; i++)
        free(s->images[i]);
    s->nimages = s->ii = 0;
    if (e) {
        lcm_warn("workers", "msg=\"discovery: image lookup failed\" region=%s err=\"%s\"",
                 s->regions[s->ri], e->message);
        s->failed_regions = 1;
    }
    const struct lcm_cloud_images *imgs = result;
    for (size_t i = 0; imgs && i < imgs->n && s->nimages < MAX_IMAGES; i++)
        if (imgs->v[i].image_id && (s->images[s->nimages] = strdup(imgs->v[i].image_id)))
            s->nimages++;
    s->phase = 2;
    next_call(op);
}

static void finish_sweep(struct wop *op);

/* Issues the next describe/find_image of the sweep, or finishes it. */
static void next_call(struct wop *op)
{
    struct lcm_workers_ctl *c = op->c;
    struct sweep *s = op->extra;
    for (;;) {
        if (s->ri >= s->nregions) {
            finish_sweep(op);
            return;
        }
        if (s->phase == 1 && !c->ami_pattern)
            s->phase = 3;
        if (s->phase == 2 && s->ii >= s->nimages)
            s->phase = 3;
        if (s->phase == 3) {
            s->ri++;
            s->phase = 0;
            s->pages = 0;
            continue;
        }
        break;
    }
    struct lcm_call call = { .size = sizeof(call), .region = s->regions[s->ri],
                             .correlation_id = "discovery",
                             .deadline_ms = (int64_t)wk_now_ms() + c->op_timeout_ms };
    struct lcm_error e = {0};
    int rc;
    static const char *const live[] = { "pending", "running", "stopping", "stopped", "shutting-down",
                                        "terminated" };
    if (s->phase == 0) {
        struct lcm_kv tag = { "lcm:managed_by", "*" };
        struct lcm_cloud_describe_args a = { .tag_filters = { &tag, 1 }, .states = { live, 6 },
                                             .next_token = s->next_token, .max_results = 500 };
        rc = lcm_cloud_call(c->app->plugins, describe, &call, &a, described, op, &e, NULL);
    } else if (s->phase == 1) {
        struct lcm_cloud_find_image_args a = { .name_pattern = c->ami_pattern };
        rc = lcm_cloud_call(c->app->plugins, find_image, &call, &a, images_found, op, &e, NULL);
    } else {
        struct lcm_kv f = { "filter:image-id", s->images[s->ii] };
        struct lcm_cloud_describe_args a = { .tag_filters = { &f, 1 }, .states = { live, 4 },
                                             .next_token = s->next_token, .max_results = 500 };
        rc = lcm_cloud_call(c->app->plugins, describe, &call, &a, described, op, &e, NULL);
    }
    if (rc < 0) {
        lcm_warn("workers", "msg=\"discovery call refused\" region=%s err=\"%s\"", s->regions[s->ri], e.message);
        s->failed_regions = 1;
        s->phase = 3;
        next_call(op);
    }
}

/* ---- applying what the sweep saw ---------------------------------------------------- */

struct known {
    struct sweep *s;
    struct lcm_workers_ctl *c;
    char *hit;        /* per seen instance: 1 when a worker has it */
};

static struct seen *find_seen(struct sweep *s, const char *instance_id)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i].instance_id, instance_id))
            return &s->v[i];
    return NULL;
}

static int region_swept(const struct sweep *s, const char *region)
{
    if (!region)
        return 0;
    for (size_t i = 0; i < s->nregions; i++)
        if (!strcmp(s->regions[i], region))
            return 1;
    return 0;
}

/* Marks instances known to a worker; asks for a poll of workers whose instance is missing or
 * in a state the worker does not expect. */
static int check_worker(const char *id, const void *state, void *ud)
{
    struct known *k = ud;
    const struct lcm_worker *w = state;
    struct sweep *s = k->s;
    if (w->instance_id) {
        for (size_t i = 0; i < s->n; i++)
            if (!strcmp(s->v[i].instance_id, w->instance_id))
                k->hit[i] = 1;
    }
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].worker_tag && !strcmp(s->v[i].worker_tag, id))
            k->hit[i] = 1;
    if (!w->instance_id || w->status == LCM_WK_TERMINATED || !region_swept(s, w->region) ||
        s->failed_regions)
        return 0;
    struct seen *x = find_seen(s, w->instance_id);
    int S = w->status, suspicious;
    if (!x) {
        suspicious = 1;
    } else {
        int gone = x->state == LCM_INSTANCE_TERMINATED || x->state == LCM_INSTANCE_SHUTTING_DOWN;
        suspicious = (gone && S != LCM_WK_TERMINATING) ||
                     ((S == LCM_WK_RUNNING || S == LCM_WK_DRAINING) && x->state != LCM_INSTANCE_RUNNING) ||
                     (S == LCM_WK_STOPPED && x->state != LCM_INSTANCE_STOPPED &&
                      x->state != LCM_INSTANCE_STOPPING);
    }
    struct wk_track *t = suspicious ? wk_track(k->c, id) : NULL;
    if (t) {
        t->missing = x ? 0 : t->missing + 1;
        t->refresh = 1;
        lcm_info("workers", "worker=%s msg=\"instance %s; re-reading it\" instance=%s", id,
                 x ? "in an unexpected state" : "missing from the sweep", w->instance_id);
    }
    return 0;
}

struct tpl_pick {
    const char *type, *region;
    const struct lcm_template *best;
    int score;
};

static int pick_template(const char *id, const void *state, void *ud)
{
    const struct lcm_template *t = state;
    struct tpl_pick *p = ud;
    (void)id;
    if (t->deleted || !t->enabled)
        return 0;
    int score = 1 + (p->type && t->instance_type && !strcmp(p->type, t->instance_type) ? 2 : 0) +
                (p->region && t->region && !strcmp(p->region, t->region) ? 1 : 0);
    if (score > p->score || (score == p->score && p->best && strcmp(t->name, p->best->name) < 0)) {
        p->best = t;
        p->score = score;
    }
    return 0;
}

static void created_cb(struct wop *op, int status)
{
    if (op->c && status == 0) {
        lcm_info("workers", "worker=%s msg=\"discovered instance imported\" instance=%s", op->id,
                 op->instance_id);
        lcm_metrics_inc(op->c->app->metrics, "lcm_worker_discovered_total", NULL, 1);
    }
    wk_op_done(op);
}

static void tags_done(void *ud, const struct lcm_error *e, const void *result)
{
    struct wop *op = ud;
    (void)result;
    if (e && op->c)
        lcm_info("workers", "worker=%s msg=\"could not tag discovered instance\" err=\"%s\"", op->id, e->message);
    wk_op_done(op);
}

static void import_instance(struct lcm_workers_ctl *c, const struct seen *x)
{
    char id[160];
    if (x->worker_tag && strlen(x->worker_tag) < 128)
        snprintf(id, sizeof(id), "%s", x->worker_tag);
    else
        snprintf(id, sizeof(id), "w-%s", x->instance_id);
    if (lcm_store_get(c->app->store, "worker", id))
        return;
    const struct lcm_template *tpl = x->template_tag ?
        lcm_store_get(c->app->store, "template", x->template_tag) : NULL;
    if (!tpl || tpl->deleted || !tpl->enabled) {
        struct tpl_pick p = { .type = x->type, .region = x->region };
        lcm_store_each(c->app->store, "template", pick_template, &p);
        tpl = p.best;
    }
    if (!tpl) {
        lcm_warn("workers", "msg=\"discovered instance not imported: no enabled template\" instance=%s",
                 x->instance_id);
        return;
    }
    struct lcm_events evs;
    struct lcm_derr de;
    lcm_events_init(&evs);
    int64_t now = wk_wall_s();
    struct lcm_worker_create cr = { .id = id, .region = x->region, .origin = LCM_ORIGIN_DISCOVERED };
    struct lcm_worker *tmp = lcm_worker_new(id);
    char why[256];
    if (!tmp || lcm_worker_cmd_create(&cr, tpl, WK_BY, now, &evs, &de) ||
        lcm_events_apply(&lcm_kind_worker, tmp, &evs, why, sizeof(why))) {
        lcm_warn("workers", "msg=\"discovered instance not imported\" instance=%s err=\"%s\"", x->instance_id,
                 de.message);
        lcm_worker_free(tmp);
        lcm_events_clear(&evs);
        return;
    }
    /* what EC2 says: a running instance still has to show CML readiness, so it starts as
     * `starting`; a stopped one stays stopped (discovery never starts anything) */
    int st = x->state == LCM_INSTANCE_STOPPED ? LCM_WK_STOPPED :
             x->state == LCM_INSTANCE_STOPPING ? LCM_WK_STOPPING : LCM_WK_STARTING;
    struct lcm_cloud_instance inst = { .instance_id = x->instance_id, .state = x->state,
                                       .image_id = x->image_id, .instance_type = x->type,
                                       .private_ip = x->private_ip, .public_ip = x->public_ip };
    struct lcm_events more;
    lcm_events_init(&more);
    wk_observe_instance(tmp, &inst, st, &more);
    if (st != LCM_WK_STARTING)
        lcm_worker_cmd_set_desired(tmp, LCM_WK_STOPPED, WK_BY, now, &more, &de);
    for (size_t i = 0; i < more.n; i++) {
        lcm_events_add(&evs, more.v[i].type, more.v[i].data, more.v[i].at, more.v[i].by);
        more.v[i].data = NULL;
    }
    lcm_events_clear(&more);
    lcm_worker_free(tmp);
    struct wop *op = wk_op_new(c, id, 0);
    if (!op) {
        lcm_events_clear(&evs);
        return;
    }
    snprintf(op->instance_id, sizeof(op->instance_id), "%s", x->instance_id);
    if (wk_commit(c, id, 0, &evs, op, created_cb) < 0)
        wk_op_done(op);
    lcm_events_clear(&evs);
    /* tag it so later sweeps find it by tag and "launch once" sees it */
    struct wop *top = wk_op_new(c, id, 0);
    if (!top)
        return;
    struct lcm_kv tags[] = { { "lcm:worker_id", id }, { "lcm:managed_by", "lcm" },
                             { "lcm:template", tpl->name } };
    const char *ids[] = { x->instance_id };
    struct lcm_cloud_tags_args ta = { .resource_ids = { ids, 1 }, .tags = { tags, 3 } };
    struct lcm_call call = { .size = sizeof(call), .region = x->region, .worker_id = id,
                             .instance_id = x->instance_id, .correlation_id = id,
                             .deadline_ms = (int64_t)wk_now_ms() + c->op_timeout_ms };
    struct lcm_error e = {0};
    if (lcm_cloud_call(c->app->plugins, create_tags, &call, &ta, tags_done, top, &e, NULL) < 0)
        wk_op_done(top);
}

static void finish_sweep(struct wop *op)
{
    struct lcm_workers_ctl *c = op->c;
    struct sweep *s = op->extra;
    c->sweeps++;
    struct known k = { .s = s, .c = c, .hit = calloc(s->n ? s->n : 1, 1) };
    if (!k.hit) {
        c->discovery_busy = 0;
        wk_op_done(op);
        return;
    }
    lcm_store_each(c->app->store, "worker", check_worker, &k);
    size_t imported = 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct seen *x = &s->v[i];
        if (k.hit[i] || x->state == LCM_INSTANCE_TERMINATED || x->state == LCM_INSTANCE_SHUTTING_DOWN)
            continue;
        import_instance(c, x);
        imported++;
    }
    lcm_debug("workers", "msg=\"discovery sweep done\" regions=%zu instances=%zu new=%zu", s->nregions, s->n,
              imported);
    lcm_metrics_inc(c->app->metrics, "lcm_worker_discovery_sweeps_total", NULL, 1);
    free(k.hit);
    c->discovery_busy = 0;
    wk_op_done(op);
}

void wk_discovery_start(struct lcm_workers_ctl *c)
{
    struct sweep *s = calloc(1, sizeof(*s));
    struct wop *op = s ? wk_op_new(c, NULL, 0) : NULL;
    if (!op) {
        free(s);
        return;
    }
    op->extra = s;
    op->extra_free = sweep_free;
    lcm_store_each(c->app->store, "template", region_of_template, s);
    lcm_store_each(c->app->store, "worker", region_of_worker, s);
    for (size_t i = 0; i < 16; i++) {
        if (c->extra_regions[i]) {
            add_region(s, c->extra_regions[i]);
            free(c->extra_regions[i]);
            c->extra_regions[i] = NULL;
        }
    }
    c->discovery_busy = 1;
    next_call(op);
}
