/* Built-in C versions of the default policies (most-utilised-first placement, cheapest fitting
 * template scale-up, idle-and-empty scale-down). They must decide exactly what the default
 * Lua scripts decide: the fixtures in policies/fixtures/ run against both. */
#include "policy_builtin.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lcm_policy_placement_out_clear(struct lcm_policy_placement_out *o)
{
    if (!o)
        return;
    free(o->ranks);
    o->ranks = NULL;
    o->n = 0;
}

void lcm_policy_scale_up_out_clear(struct lcm_policy_scale_up_out *o)
{
    if (!o)
        return;
    free(o->launches);
    o->launches = NULL;
    o->n = 0;
}

void lcm_policy_scale_down_out_clear(struct lcm_policy_scale_down_out *o)
{
    if (!o)
        return;
    free(o->retire);
    o->retire = NULL;
    o->n = 0;
}

int lcm_policy_license_serves(unsigned worker_lic, unsigned affinity)
{
    if (affinity == 0)
        return 1;
    if (worker_lic & affinity)
        return 1;
    return worker_lic == LCM_POLICY_LIC_ENTERPRISE && (affinity & LCM_POLICY_LIC_PERSONAL);
}

static double share(double used, double declared)
{
    return declared > 0 ? used / declared : 0.0;
}

double lcm_policy_utilisation(const struct lcm_policy_worker *w)
{
    double u = share(w->allocated.cpu_cores, w->declared.cpu_cores);
    double m = share(w->allocated.memory_gb, w->declared.memory_gb);
    double s = share(w->allocated.storage_gb, w->declared.storage_gb);
    double n = share((double)w->allocated.nodes, (double)w->declared.nodes);
    if (m > u)
        u = m;
    if (s > u)
        u = s;
    if (n > u)
        u = n;
    return u;
}

/* ---------------------------------------------------------------- placement */

struct ranked {
    const struct lcm_policy_worker *w;
    double score;
};

static int cmp_ranked(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    if (x->w->session_count != y->w->session_count)
        return x->w->session_count > y->w->session_count ? -1 : 1;
    return strcmp(x->w->id, y->w->id);
}

int lcm_policy_builtin_place(const struct lcm_policy_placement_in *in,
                             struct lcm_policy_placement_out *out)
{
    out->ranks = NULL;
    out->n = 0;
    if (in->n_workers == 0)
        return 0;
    struct ranked *r = calloc(in->n_workers, sizeof(*r));
    struct lcm_policy_rank *ranks = calloc(in->n_workers, sizeof(*ranks));
    if (!r || !ranks) {
        free(r);
        free(ranks);
        return LCM_POLICY_E_NOMEM;
    }
    for (size_t i = 0; i < in->n_workers; i++) {
        r[i].w = &in->workers[i];
        r[i].score = lcm_policy_utilisation(&in->workers[i]);
    }
    qsort(r, in->n_workers, sizeof(*r), cmp_ranked);
    for (size_t i = 0; i < in->n_workers; i++) {
        snprintf(ranks[i].worker_id, sizeof(ranks[i].worker_id), "%s", r[i].w->id);
        ranks[i].score = r[i].score;
    }
    free(r);
    out->ranks = ranks;
    out->n = in->n_workers;
    return 0;
}

/* ---------------------------------------------------------------- scale up */

/* Capacity that demand can still use: existing running / in-flight workers and the workers
 * this plan launches. */
struct slot {
    char region[LCM_POLICY_SHORT_MAX];
    unsigned license;
    int inflight;             /* not running yet: may absorb unplaced demand */
    double cpu, mem, storage; /* free */
    int64_t nodes;
    int64_t sessions_left;    /* personal licence: one session; else -1 = unlimited */
};

static int is_inflight(const char *status)
{
    return !strcmp(status, "pending") || !strcmp(status, "provisioning") ||
           !strcmp(status, "starting");
}

/* How many sessions of req fit into the free resources (capped at want). */
static int64_t fit_count(const struct slot *s, const struct lcm_policy_requirements *req,
                         int64_t want)
{
    int64_t k = want;
    if (s->sessions_left >= 0 && s->sessions_left < k)
        k = s->sessions_left;
    if (req->cpu_cores > 0) {
        double f = floor(s->cpu / req->cpu_cores);
        if (f < (double)k)
            k = f < 0 ? 0 : (int64_t)f;
    }
    if (req->memory_gb > 0) {
        double f = floor(s->mem / req->memory_gb);
        if (f < (double)k)
            k = f < 0 ? 0 : (int64_t)f;
    }
    if (req->storage_gb > 0) {
        double f = floor(s->storage / req->storage_gb);
        if (f < (double)k)
            k = f < 0 ? 0 : (int64_t)f;
    }
    if (req->node_count > 0) {
        int64_t f = s->nodes / req->node_count;
        if (f < k)
            k = f < 0 ? 0 : f;
    }
    return k;
}

static void take(struct slot *s, const struct lcm_policy_requirements *req, int64_t k)
{
    s->cpu -= req->cpu_cores * (double)k;
    s->mem -= req->memory_gb * (double)k;
    s->storage -= req->storage_gb * (double)k;
    s->nodes -= req->node_count * k;
    if (s->sessions_left >= 0)
        s->sessions_left -= k;
}

static void slot_from_template(struct slot *s, const struct lcm_policy_template *t)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->region, sizeof(s->region), "%s", t->region);
    s->license = t->license_type;
    s->inflight = 1;
    s->cpu = t->capacity.cpu_cores;
    s->mem = t->capacity.memory_gb;
    s->storage = t->capacity.storage_gb;
    s->nodes = t->capacity.nodes;
    s->sessions_left = t->license_type == LCM_POLICY_LIC_PERSONAL ? 1 : -1;
}

static int slot_usable(const struct slot *s, const struct lcm_policy_demand *d)
{
    if (d->region[0] && strcmp(d->region, s->region) != 0)
        return 0;
    return lcm_policy_license_serves(s->license, d->req.license_affinity);
}

/* Workers of template t needed for `sessions` sessions of req; 0 if t cannot hold one. */
static int64_t workers_needed(const struct lcm_policy_template *t,
                              const struct lcm_policy_requirements *req, int64_t sessions)
{
    struct slot s;
    slot_from_template(&s, t);
    int64_t per = fit_count(&s, req, INT64_MAX / 4);
    if (per <= 0)
        return 0;
    return (sessions + per - 1) / per;
}

static int template_allowed(const struct lcm_policy_template *t, const struct lcm_policy_demand *d)
{
    if (!t->enabled)
        return 0;
    if (d->region[0] && strcmp(d->region, t->region) != 0)
        return 0;
    /* The template's licence must be one the definition asks for: a personal-only
     * definition therefore gets a personal-licence template. */
    return d->req.license_affinity == 0 || (t->license_type & d->req.license_affinity);
}

int lcm_policy_builtin_scale_up(const struct lcm_policy_scale_up_in *in,
                                struct lcm_policy_scale_up_out *out)
{
    int rc = LCM_POLICY_E_NOMEM;
    struct slot *slots = NULL;
    size_t n_slots = 0, cap_slots = 0;
    struct lcm_policy_launch *plan = NULL;
    size_t n_plan = 0;

    out->launches = NULL;
    out->n = 0;
    if (in->limits.cooldown_active || in->n_demand == 0)
        return 0;
    plan = calloc(in->n_templates ? in->n_templates : 1, sizeof(*plan));
    if (!plan)
        goto out;
    for (size_t i = 0; i < in->n_fleet; i++) {
        const struct lcm_policy_worker *w = &in->fleet[i];
        int running = !strcmp(w->status, "running");
        if (!running && !is_inflight(w->status))
            continue;
        if (n_slots == cap_slots) {
            size_t nc = cap_slots ? cap_slots * 2 : 16;
            struct slot *ns = realloc(slots, nc * sizeof(*ns));
            if (!ns)
                goto out;
            slots = ns;
            cap_slots = nc;
        }
        struct slot *s = &slots[n_slots++];
        memset(s, 0, sizeof(*s));
        snprintf(s->region, sizeof(s->region), "%s", w->region);
        s->license = w->license_type;
        s->inflight = !running;
        s->cpu = w->declared.cpu_cores - w->allocated.cpu_cores;
        s->mem = w->declared.memory_gb - w->allocated.memory_gb;
        s->storage = w->declared.storage_gb - w->allocated.storage_gb;
        s->nodes = w->declared.nodes - w->allocated.nodes;
        s->sessions_left = w->license_type == LCM_POLICY_LIC_PERSONAL
                               ? (w->session_count > 0 ? 0 : 1) : -1;
    }

    for (size_t di = 0; di < in->n_demand; di++) {
        const struct lcm_policy_demand *d = &in->demand[di];
        int64_t unplaced = d->unplaced > 0 ? d->unplaced : 0;
        int64_t upcoming = d->upcoming > 0 ? d->upcoming : 0;
        /* Future capacity first (fix: no duplicate launches): unplaced demand can only go to
         * workers that are not running yet; upcoming demand to any. */
        for (size_t i = 0; i < n_slots && (unplaced > 0 || upcoming > 0); i++) {
            struct slot *s = &slots[i];
            if (!slot_usable(s, d))
                continue;
            if (s->inflight && unplaced > 0) {
                int64_t k = fit_count(s, &d->req, unplaced);
                take(s, &d->req, k);
                unplaced -= k;
            }
            if (upcoming > 0) {
                int64_t k = fit_count(s, &d->req, upcoming);
                take(s, &d->req, k);
                upcoming -= k;
            }
        }
        int64_t remaining = unplaced + upcoming;
        if (remaining <= 0)
            continue;
        const struct lcm_policy_template *best = NULL;
        int64_t best_n = 0;
        double best_cost = 0;
        for (size_t ti = 0; ti < in->n_templates; ti++) {
            const struct lcm_policy_template *t = &in->templates[ti];
            if (!template_allowed(t, d))
                continue;
            int64_t n = workers_needed(t, &d->req, remaining);
            if (n <= 0)
                continue;
            double cost = (double)n * t->cost_per_hour;
            if (!best || cost < best_cost || (cost == best_cost && n < best_n) ||
                (cost == best_cost && n == best_n && strcmp(t->name, best->name) < 0)) {
                best = t;
                best_n = n;
                best_cost = cost;
            }
        }
        if (!best)
            continue;
        /* The new workers become capacity for the rest of the demand. */
        for (int64_t k = 0; k < best_n; k++) {
            if (n_slots == cap_slots) {
                size_t nc = cap_slots ? cap_slots * 2 : 16;
                struct slot *ns = realloc(slots, nc * sizeof(*ns));
                if (!ns)
                    goto out;
                slots = ns;
                cap_slots = nc;
            }
            struct slot *s = &slots[n_slots++];
            slot_from_template(s, best);
            int64_t f = fit_count(s, &d->req, remaining);
            take(s, &d->req, f);
            remaining -= f;
        }
        size_t pi = 0;
        while (pi < n_plan && (strcmp(plan[pi].template_name, best->name) != 0 ||
                               strcmp(plan[pi].region, best->region) != 0))
            pi++;
        if (pi == n_plan) {
            n_plan++;
            snprintf(plan[pi].template_name, sizeof(plan[pi].template_name), "%s", best->name);
            snprintf(plan[pi].region, sizeof(plan[pi].region), "%s", best->region);
            snprintf(plan[pi].reason, sizeof(plan[pi].reason),
                     "demand for %s: %lld unplaced, %lld upcoming; cheapest fitting template",
                     d->req.definition_id, (long long)d->unplaced, (long long)d->upcoming);
        }
        plan[pi].count += best_n;
    }

    /* Plan within the limits the policy was given (the host enforces them again). */
    int64_t budget = in->limits.max_launches_per_cycle > 0 ? in->limits.max_launches_per_cycle
                                                            : INT64_MAX;
    size_t kept = 0;
    for (size_t pi = 0; pi < n_plan; pi++) {
        int64_t c = plan[pi].count;
        if (in->limits.max_workers_per_region > 0) {
            int64_t in_region = 0;
            for (size_t i = 0; i < in->n_fleet; i++)
                if (!strcmp(in->fleet[i].region, plan[pi].region))
                    in_region++;
            for (size_t j = 0; j < kept; j++)
                if (!strcmp(plan[j].region, plan[pi].region))
                    in_region += plan[j].count;
            int64_t room = in->limits.max_workers_per_region - in_region;
            if (c > room)
                c = room;
        }
        if (c > budget)
            c = budget;
        if (c <= 0)
            continue;
        budget -= c;
        plan[kept] = plan[pi];
        plan[kept].count = c;
        kept++;
    }
    rc = 0;
    if (kept == 0) {
        free(plan);
        plan = NULL;
    }
    out->launches = plan;
    out->n = kept;
    plan = NULL;
out:
    free(plan);
    free(slots);
    return rc;
}

/* ---------------------------------------------------------------- scale down */

static int cmp_idle(const void *a, const void *b)
{
    const struct lcm_policy_worker *const *x = a, *const *y = b;
    if ((*x)->last_activity_at != (*y)->last_activity_at)
        return (*x)->last_activity_at < (*y)->last_activity_at ? -1 : 1;
    return strcmp((*x)->id, (*y)->id);
}

int lcm_policy_builtin_scale_down(const struct lcm_policy_scale_down_in *in,
                                  struct lcm_policy_scale_down_out *out)
{
    out->retire = NULL;
    out->n = 0;
    if (in->limits.cooldown_active || in->n_eligible == 0)
        return 0;
    const struct lcm_policy_worker **cand = calloc(in->n_eligible, sizeof(*cand));
    struct lcm_policy_retire *r = calloc(in->n_eligible, sizeof(*r));
    if (!cand || !r) {
        free(cand);
        free(r);
        return LCM_POLICY_E_NOMEM;
    }
    int64_t running = 0;
    for (size_t i = 0; i < in->n_fleet; i++)
        if (!strcmp(in->fleet[i].status, "running"))
            running++;
    int64_t removable = running - in->limits.min_warm_workers;
    size_t nc = 0, n = 0;
    for (size_t i = 0; i < in->n_eligible; i++)
        if (!strcmp(in->eligible[i].status, "running"))
            cand[nc++] = &in->eligible[i];
    qsort(cand, nc, sizeof(*cand), cmp_idle);
    /* Idlest first; drain (graceful) rather than stop or terminate. */
    for (size_t i = 0; i < nc && removable > 0; i++, removable--) {
        snprintf(r[n].worker_id, sizeof(r[n].worker_id), "%s", cand[i]->id);
        r[n].action = LCM_POLICY_DRAIN;
        snprintf(r[n].reason, sizeof(r[n].reason), "empty and idle, above warm minimum %lld",
                 (long long)in->limits.min_warm_workers);
        n++;
    }
    int64_t retention = in->limits.stopped_retention_minutes * 60;
    for (size_t i = 0; i < in->n_eligible; i++) {
        const struct lcm_policy_worker *w = &in->eligible[i];
        if (strcmp(w->status, "stopped") != 0 || in->limits.stopped_retention_minutes <= 0)
            continue;
        if (in->limits.now - w->status_since < retention)
            continue;
        snprintf(r[n].worker_id, sizeof(r[n].worker_id), "%s", w->id);
        r[n].action = LCM_POLICY_TERMINATE;
        snprintf(r[n].reason, sizeof(r[n].reason), "stopped longer than retention %lld min",
                 (long long)in->limits.stopped_retention_minutes);
        n++;
    }
    free(cand);
    if (n == 0) {
        free(r);
        r = NULL;
    }
    out->retire = r;
    out->n = n;
    return 0;
}
