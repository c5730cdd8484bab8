/* Placement planning over a snapshot of the fleet: hard rules (DOMAIN.md "Placement" 1–5)
 * split into the verdicts that hold for a whole cycle (status, licence, CML version, node
 * definitions: once per definition × worker) and the ones that move with every placement
 * (personal busy, capacity, ports), then the shortlist and the placement policy. */
#include "scheduler_plan.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "domain/definition.h"
#include "domain/fsm.h"
#include "domain/version.h"
#include "policy/policy_builtin.h"
#include "store/store.h"

unsigned lcm_sched_policy_license(unsigned b)
{
    unsigned o = 0;
    if (b & LCM_LIC_PERSONAL)
        o |= LCM_POLICY_LIC_PERSONAL;
    if (b & LCM_LIC_ENTERPRISE)
        o |= LCM_POLICY_LIC_ENTERPRISE;
    if (b & LCM_LIC_EVALUATION)
        o |= LCM_POLICY_LIC_EVALUATION;
    return o;
}

int64_t lcm_sched_status_since(const struct lcm_worker *w)
{
    for (int i = (int)w->history.n - 1; i >= 0; i--)
        if (w->history.v[i].to == w->status)
            return w->history.v[i].at;
    return w->created_at;
}

static void cpy(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(dst, src, n);
    dst[n] = 0;
}

static void pw_alloc(struct lcm_policy_worker *pw, const struct lcm_worker *w)
{
    pw->allocated.cpu_cores = w->allocated.cpu_cores;
    pw->allocated.memory_gb = w->allocated.memory_gb;
    pw->allocated.storage_gb = w->allocated.storage_gb;
    pw->allocated.nodes = w->allocated.nodes;
    pw->session_count = w->nsessions;
}

void lcm_sched_policy_worker(const struct lcm_worker *w, struct lcm_policy_worker *pw)
{
    memset(pw, 0, sizeof *pw);
    cpy(pw->id, sizeof pw->id, w->id);
    cpy(pw->region, sizeof pw->region, w->region);
    cpy(pw->template_name, sizeof pw->template_name, w->template_name);
    cpy(pw->status, sizeof pw->status, lcm_fsm_name(&lcm_fsm_worker, w->status));
    pw->license_type = lcm_sched_policy_license(w->license.type);
    cpy(pw->cml_version, sizeof pw->cml_version, w->cml.version);
    pw->declared.cpu_cores = w->declared.cpu_cores;
    pw->declared.memory_gb = w->declared.memory_gb;
    pw->declared.storage_gb = w->declared.storage_gb;
    pw->declared.nodes = lcm_worker_node_limit(w);
    pw_alloc(pw, w);
    pw->cpu_percent = w->metrics.cpu_pct;
    pw->memory_percent = w->metrics.mem_pct;
    pw->last_activity_at = w->last_activity_at;
    pw->status_since = lcm_sched_status_since(w);
}

/* ---- snapshot ---- */

struct build_ctx {
    struct lcm_sched_snap *sn;
    size_t cap;
    lcm_sched_exclude_fn exclude;
    void *ud;
    int oom;
};

static int add_worker(const char *id, const void *state, void *ud)
{
    struct build_ctx *b = ud;
    (void)id;
    if (b->sn->nwk == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        struct lcm_sched_wk *n = realloc(b->sn->wk, nc * sizeof *n);
        if (!n) {
            b->oom = 1;
            return 1;
        }
        b->sn->wk = n;
        b->cap = nc;
    }
    struct lcm_sched_wk *k = &b->sn->wk[b->sn->nwk++];
    memset(k, 0, sizeof *k);
    k->w = state;
    k->sh = *k->w;
    k->excluded = b->exclude ? b->exclude(b->ud, k->w->id) : 0;
    return 0;
}

static double util_of(const struct lcm_policy_worker *w)
{
    return lcm_policy_utilisation(w);
}

static int cmp_id(const void *a, const void *b)
{
    const struct lcm_sched_wk *x = *(const struct lcm_sched_wk *const *)a;
    const struct lcm_sched_wk *y = *(const struct lcm_sched_wk *const *)b;
    return strcmp(x->w->id, y->w->id);
}

int lcm_sched_snap_build(struct lcm_sched_snap *sn, const struct lcm_store *st,
                         size_t shortlist, lcm_sched_exclude_fn exclude, void *ud)
{
    memset(sn, 0, sizeof *sn);
    sn->shortlist = shortlist ? shortlist : 32;
    struct build_ctx b = { .sn = sn, .exclude = exclude, .ud = ud };
    lcm_store_each(st, "worker", add_worker, &b);
    if (b.oom)
        return -1;
    /* ids in order: the shortlist's tie-break compares integers, not strings */
    struct lcm_sched_wk **order = malloc((sn->nwk ? sn->nwk : 1) * sizeof *order);
    if (!order)
        return -1;
    for (size_t i = 0; i < sn->nwk; i++)
        order[i] = &sn->wk[i];
    qsort(order, sn->nwk, sizeof *order, cmp_id);
    for (size_t i = 0; i < sn->nwk; i++)
        order[i]->idrank = (uint32_t)i;
    free(order);
    for (size_t i = 0; i < sn->nwk; i++) {
        struct lcm_sched_wk *k = &sn->wk[i];
        lcm_sched_policy_worker(k->w, &k->pw);
        k->util = util_of(&k->pw);
    }
    return 0;
}

static void def_free(struct lcm_sched_def *d)
{
    free(d->id);
    free(d->pre);
    free(d->post);
    free(d->ord);
    free(d->pos);
}

void lcm_sched_snap_free(struct lcm_sched_snap *sn)
{
    for (size_t i = 0; i < sn->nwk; i++)
        free(sn->wk[i].tent);
    free(sn->wk);
    for (size_t i = 0; i < sn->ndefs; i++)
        def_free(&sn->defs[i]);
    free(sn->defs);
    memset(sn, 0, sizeof *sn);
}

static int has_nd(const struct lcm_worker *w, const char *nd)
{
    for (uint16_t i = 0; i < w->cml.n_node_definitions; i++)
        if (!strcmp(w->cml.node_definitions[i], nd))
            return 1;
    return 0;
}

/* Rules 1 and 2 (licence type): status and licence do not change within a cycle. */
static uint8_t pre_verdict(const struct lcm_worker *w, const struct lcm_place_req *r)
{
    if (w->status == LCM_WK_DRAINING)
        return LCM_REJ_DRAINING;
    if (w->status != LCM_WK_RUNNING)
        return LCM_REJ_NOT_RUNNING;
    if (!w->cml.ready)
        return LCM_REJ_CML_NOT_READY;
    if (!lcm_license_serves(w->license.type, r->license_affinity))
        return LCM_REJ_LICENSE;
    return LCM_REJ_NONE;
}

/* Rule 4: the CML version and node definitions of a worker are fixed within a cycle. */
static uint8_t post_verdict(const struct lcm_worker *w, const struct lcm_place_req *r)
{
    if ((r->cml_version_min && *r->cml_version_min) || (r->cml_version_max && *r->cml_version_max)) {
        if (!lcm_version_in_range(w->cml.version, r->cml_version_min, r->cml_version_max))
            return LCM_REJ_CML_VERSION;
    }
    for (size_t i = 0; i < r->n_node_definitions; i++)
        if (!has_nd(w, r->node_definitions[i]))
            return LCM_REJ_NODE_DEFINITION;
    return LCM_REJ_NONE;
}

/* Shortlist order: most utilised first (what bin packing wants the policy to see), then more
 * sessions, then id. A strict total order (ids are unique). */
static int better(const struct lcm_sched_wk *a, const struct lcm_sched_wk *b)
{
    if (a->util != b->util)
        return a->util > b->util;
    if (a->sh.nsessions != b->sh.nsessions)
        return a->sh.nsessions > b->sh.nsessions;
    return a->idrank < b->idrank;
}

static int cmp_better(const void *a, const void *b, void *ud)
{
    const struct lcm_sched_snap *sn = ud;
    const struct lcm_sched_wk *x = &sn->wk[*(const size_t *)a], *y = &sn->wk[*(const size_t *)b];
    return better(x, y) ? -1 : better(y, x) ? 1 : 0;
}

struct lcm_sched_def *lcm_sched_snap_def(struct lcm_sched_snap *sn, const char *definition_id,
                                         const struct lcm_definition *def)
{
    for (size_t i = 0; i < sn->ndefs; i++)
        if (!strcmp(sn->defs[i].id, definition_id))
            return &sn->defs[i];
    if (sn->ndefs == sn->capdefs) {
        size_t nc = sn->capdefs ? sn->capdefs * 2 : 8;
        struct lcm_sched_def *n = realloc(sn->defs, nc * sizeof *n);
        if (!n)
            return NULL;
        sn->defs = n;
        sn->capdefs = nc;
    }
    struct lcm_sched_def *df = &sn->defs[sn->ndefs];
    memset(df, 0, sizeof *df);
    df->id = strdup(definition_id);
    df->pre = malloc(sn->nwk ? sn->nwk : 1);
    df->post = malloc(sn->nwk ? sn->nwk : 1);
    if (!df->id || !df->pre || !df->post) {
        def_free(df);
        return NULL;
    }
    df->ord = malloc((sn->nwk ? sn->nwk : 1) * sizeof *df->ord);
    df->pos = malloc((sn->nwk ? sn->nwk : 1) * sizeof *df->pos);
    if (!df->ord || !df->pos) {
        def_free(df);
        return NULL;
    }
    for (size_t i = 0; i < sn->nwk; i++)
        df->pos[i] = SIZE_MAX;
    df->d = def;
    cpy(df->preq.definition_id, sizeof df->preq.definition_id, definition_id);
    if (def) {
        lcm_place_req_from_definition(def, &df->req);
        df->preq.cpu_cores = def->req.need.cpu_cores;
        df->preq.memory_gb = def->req.need.memory_gb;
        df->preq.storage_gb = def->req.need.storage_gb;
        df->preq.node_count = def->req.need.nodes;
        df->preq.license_affinity = lcm_sched_policy_license(def->license_affinity);
        for (size_t i = 0; i < sn->nwk; i++) {
            df->pre[i] = pre_verdict(sn->wk[i].w, &df->req);
            df->post[i] = df->pre[i] == LCM_REJ_NONE ? post_verdict(sn->wk[i].w, &df->req)
                                                      : LCM_REJ_NONE;
            if (df->pre[i] == LCM_REJ_NONE && df->post[i] == LCM_REJ_NONE && !sn->wk[i].excluded)
                df->ord[df->nord++] = i;
        }
        qsort_r(df->ord, df->nord, sizeof *df->ord, cmp_better, sn);
        for (size_t j = 0; j < df->nord; j++)
            df->pos[df->ord[j]] = j;
    } else {
        memset(df->pre, LCM_REJ_NOT_RUNNING, sn->nwk);
        memset(df->post, 0, sn->nwk);
    }
    sn->ndefs++;
    return df;
}

enum lcm_place_reject lcm_sched_verdict(const struct lcm_sched_snap *sn,
                                        const struct lcm_sched_def *df, size_t i)
{
    if (df->pre[i] != LCM_REJ_NONE)
        return (enum lcm_place_reject)df->pre[i];
    const struct lcm_worker *w = &sn->wk[i].sh;
    if (w->license.type == LCM_LIC_PERSONAL && w->nsessions > 0)
        return LCM_REJ_PERSONAL_BUSY;
    switch (lcm_capacity_check(&w->declared, &w->allocated, &df->req.need, lcm_worker_node_limit(w))) {
    case LCM_CAP_FITS: break;
    case LCM_CAP_CPU: return LCM_REJ_CPU;
    case LCM_CAP_MEMORY: return LCM_REJ_MEMORY;
    case LCM_CAP_STORAGE: return LCM_REJ_STORAGE;
    case LCM_CAP_NODES: return LCM_REJ_NODES;
    }
    if (df->post[i] != LCM_REJ_NONE)
        return (enum lcm_place_reject)df->post[i];
    if (df->req.nports > lcm_ports_free_count(&w->ports))
        return LCM_REJ_PORTS;
    return LCM_REJ_NONE;
}

/* ---- decisions ---- */

void lcm_sched_decision_init(struct lcm_sched_decision *d)
{
    memset(d, 0, sizeof *d);
    d->chosen = -1;
}

void lcm_sched_decision_free(struct lcm_sched_decision *d)
{
    free(d->shortlist);
    free(d->reasons);
    lcm_policy_placement_out_clear(&d->ranks);
    lcm_sched_decision_init(d);
}

/* Drops candidate ord[j] of df (it fails a rule that only gets stricter). */
static void drop_candidate(struct lcm_sched_def *df, size_t j)
{
    df->pos[df->ord[j]] = SIZE_MAX;
    memmove(&df->ord[j], &df->ord[j + 1], (df->nord - j - 1) * sizeof *df->ord);
    df->nord--;
    for (size_t t = j; t < df->nord; t++)
        df->pos[df->ord[t]] = t;
}

/* The check of every worker: counts, reasons and (with build) the bounded, sorted shortlist. */
static void scan_all(struct lcm_sched_snap *sn, struct lcm_sched_def *df,
                     struct lcm_sched_decision *d, int build)
{
    size_t k = sn->shortlist;
    memset(d->counts, 0, sizeof d->counts);
    d->considered = d->passed = 0;
    for (size_t i = 0; i < sn->nwk; i++) {
        const struct lcm_sched_wk *w = &sn->wk[i];
        if (w->excluded)
            continue;
        enum lcm_place_reject v = df->d ? lcm_sched_verdict(sn, df, i) : LCM_REJ_NOT_RUNNING;
        d->considered++;
        d->counts[v]++;
        if (d->reasons)
            d->reasons[i] = v;
        if (v != LCM_REJ_NONE)
            continue;
        d->passed++;
        if (!build)
            continue;
        /* insert into the bounded, sorted shortlist */
        size_t n = d->nshort;
        if (n == k && !better(w, &sn->wk[d->shortlist[n - 1]]))
            continue;
        size_t pos = n < k ? n : k - 1;
        while (pos > 0 && better(w, &sn->wk[d->shortlist[pos - 1]])) {
            d->shortlist[pos] = d->shortlist[pos - 1];
            pos--;
        }
        d->shortlist[pos] = i;
        if (n < k)
            d->nshort++;
    }
}

int lcm_sched_decide(struct lcm_sched_snap *sn, struct lcm_sched_def *df,
                     const char *session_id, struct lcm_policy_engine *engine,
                     struct lcm_policy_gen *gen, enum lcm_sched_policy_mode mode, int64_t now,
                     int want_reasons, struct lcm_sched_decision *d)
{
    /* reset, keeping the shortlist buffer across decisions */
    free(d->reasons);
    d->reasons = NULL;
    lcm_policy_placement_out_clear(&d->ranks);
    memset(d->counts, 0, sizeof d->counts);
    memset(&d->info, 0, sizeof d->info);
    d->chosen = -1;
    d->chosen_score = 0;
    d->considered = d->passed = d->nshort = 0;
    size_t k = sn->shortlist;
    if (d->capshort < k) {
        free(d->shortlist);
        d->capshort = 0;
        d->shortlist = malloc(k * sizeof *d->shortlist);
        if (!d->shortlist)
            return -1;
        d->capshort = k;
    }
    if (want_reasons && !(d->reasons = calloc(sn->nwk ? sn->nwk : 1, sizeof *d->reasons)))
        return -1;
    int counted = 0;
    if (want_reasons || !df->d) {
        scan_all(sn, df, d, 1);
        counted = 1;
    } else {
        /* the first k candidates that still pass, in shortlist order: the same shortlist as
         * the bounded insertion over every worker, without looking at every worker */
        size_t j = 0;
        while (j < df->nord && d->nshort < k) {
            size_t i = df->ord[j];
            if (lcm_sched_verdict(sn, df, i) != LCM_REJ_NONE) {
                drop_candidate(df, j);
                continue;
            }
            d->shortlist[d->nshort++] = i;
            j++;
        }
    }
    if (d->nshort == 0) {
        if (!counted)
            scan_all(sn, df, d, 0);
        return 0;
    }

    struct lcm_policy_worker stackbuf[32];
    struct lcm_policy_worker *pws = d->nshort <= 32 ? stackbuf : malloc(d->nshort * sizeof *pws);
    if (!pws)
        return -1;
    for (size_t j = 0; j < d->nshort; j++)
        pws[j] = sn->wk[d->shortlist[j]].pw;
    struct lcm_policy_placement_in in = { .req = df->preq, .workers = pws, .n_workers = d->nshort,
                                          .now = now };
    cpy(in.session_id, sizeof in.session_id, session_id);
    int rc;
    if (engine && mode == LCM_SCHED_POLICY_ENGINE && sn->pcycle) {
        rc = lcm_policy_place_cycle_rank(sn->pcycle, &in, d->shortlist, &d->ranks, &d->info);
    } else if (engine && mode == LCM_SCHED_POLICY_ENGINE) {
        rc = lcm_policy_place(engine, gen, &in, &d->ranks, &d->info);
    } else {
        memset(&d->info, 0, sizeof d->info);
        d->info.source = LCM_POLICY_SRC_BUILTIN;
        rc = lcm_policy_builtin_place(&in, &d->ranks);
    }
    if (rc == 0) {
        /* The engine validated that every rank names a shortlisted worker. */
        for (size_t r = 0; r < d->ranks.n && d->chosen < 0; r++)
            for (size_t j = 0; j < d->nshort; j++)
                if (!strcmp(d->ranks.ranks[r].worker_id, pws[j].id)) {
                    d->chosen = (int)d->shortlist[j];
                    d->chosen_score = d->ranks.ranks[r].score;
                    break;
                }
    }
    if (pws != stackbuf)
        free(pws);
    if (rc == 0 && d->chosen < 0 && !counted)
        scan_all(sn, df, d, 0);   /* the policy chose none: the counts explain the refusal */
    return rc == 0 ? 0 : -1;
}

int lcm_sched_snap_take(struct lcm_sched_snap *sn, const struct lcm_sched_def *df, size_t i,
                        const char *session_id)
{
    struct lcm_sched_wk *k = &sn->wk[i];
    struct lcm_worker *w = &k->sh;
    if (!k->tent || w->nsessions == w->cap_sessions) {
        uint32_t nc = w->cap_sessions > w->nsessions ? w->cap_sessions : w->nsessions;
        nc = nc ? nc * 2 : 4;
        struct lcm_alloc *n = malloc(nc * sizeof *n);
        if (!n)
            return -1;
        if (w->nsessions)
            memcpy(n, w->sessions, w->nsessions * sizeof *n);
        free(k->tent);
        k->tent = n;
        w->sessions = n;
        w->cap_sessions = nc;
    }
    /* borrowed id: the caller keeps session_id alive for the snapshot's lifetime */
    w->sessions[w->nsessions].session_id = (char *)session_id;
    w->sessions[w->nsessions].req = df->req.need;
    w->nsessions++;
    lcm_capacity_add(&w->allocated, &w->declared, &df->req.need, lcm_worker_node_limit(w));
    /* the lab will lease this many ports at instantiation: keep them free meanwhile */
    w->ports.nfree = w->ports.nfree > df->req.nports ? w->ports.nfree - (uint32_t)df->req.nports : 0;
    k->placed++;
    pw_alloc(&k->pw, w);
    k->util = util_of(&k->pw);
    /* fuller now: it moves forward in every candidate list that holds it */
    for (size_t x = 0; x < sn->ndefs; x++) {
        struct lcm_sched_def *o = &sn->defs[x];
        size_t p = o->pos[i];
        if (p == SIZE_MAX)
            continue;
        while (p > 0 && better(k, &sn->wk[o->ord[p - 1]])) {
            o->ord[p] = o->ord[p - 1];
            o->pos[o->ord[p]] = p;
            p--;
        }
        o->ord[p] = i;
        o->pos[i] = p;
    }
    lcm_policy_place_cycle_touch(sn->pcycle, i);
    return 0;
}

cJSON *lcm_sched_counts_json(const uint32_t counts[LCM_REJ__COUNT])
{
    cJSON *o = cJSON_CreateObject();
    for (int r = 1; o && r < LCM_REJ__COUNT; r++)
        if (counts[r])
            cJSON_AddNumberToObject(o, lcm_place_reject_name((enum lcm_place_reject)r), counts[r]);
    return o;
}
