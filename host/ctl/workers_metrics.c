/* Metrics of running workers: CloudWatch CPU through the cloud plugin, CML system stats,
 * readiness, node definitions and user activity through the runtime plugin. The result goes on the worker read
 * model (worker.metrics, worker.cml when readiness flips) and into /metrics gauges. Every
 * call is optional and best effort: a metric that cannot be read never fails a worker. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "core/log.h"
#include "core/metrics.h"
#include "ctl.h"
#include "domain/events.h"
#include "domain/jsonx.h"
#include "domain/worker.h"
#include "plugin/plugin.h"
#include "store/store.h"
#include "workers_int.h"

enum { M_CW = 1, M_INFO, M_NODEDEFS, M_STATS, M_ACTIVITY, M_COMMIT };

/* What a worker record keeps of CML's node definitions (lcm_worker apply_cml's bounds). */
#define WK_MAX_NODE_DEFS 4096
#define WK_MAX_NODE_DEF_LEN 256

void wk_metrics_declare(struct lcm_workers_ctl *c)
{
    struct lcm_metrics *m = c->app->metrics;
    lcm_metrics_declare(m, "lcm_worker_cpu_percent", LCM_METRIC_GAUGE,
                        "Worker CPU utilisation (source=cloudwatch|cml)");
    lcm_metrics_declare(m, "lcm_worker_memory_percent", LCM_METRIC_GAUGE, "Worker memory use from CML");
    lcm_metrics_declare(m, "lcm_worker_running_nodes", LCM_METRIC_GAUGE, "Running CML nodes on the worker");
    lcm_metrics_declare(m, "lcm_worker_last_activity_timestamp_seconds", LCM_METRIC_GAUGE,
                        "Newest CML user activity on the worker (Unix time)");
    lcm_metrics_declare(m, "lcm_worker_discovered_total", LCM_METRIC_COUNTER,
                        "Instances found outside LCM and imported as workers");
    lcm_metrics_declare(m, "lcm_worker_discovery_sweeps_total", LCM_METRIC_COUNTER, "Discovery sweeps finished");
}

static void next_stage(struct wop *op);

static int implements(struct lcm_workers_ctl *c, enum lcm_plugin_kind kind, size_t off)
{
    struct lcm_plugin *p = lcm_plugins_get(c->app->plugins, kind);
    return p && lcm_plugin_implements(p, off);
}

static void labels_for(char *buf, size_t cap, const char *id, const char *source)
{
    char esc[200];
    lcm_metrics_escape(esc, sizeof(esc), id);
    if (source)
        snprintf(buf, cap, "worker=\"%s\",source=\"%s\"", esc, source);
    else
        snprintf(buf, cap, "worker=\"%s\"", esc);
}

static void got_cw(void *ud, const struct lcm_error *e, const void *result)
{
    struct wop *op = ud;
    if (op->c && !e) {
        const struct lcm_cloud_datapoints *d = result;
        if (d && d->n > 0 && isfinite(d->v[d->n - 1].value)) {
            op->cpu_cw = d->v[d->n - 1].value;
            op->have_cw = 1;
        }
    } else if (op->c && e) {
        lcm_debug("workers", "worker=%s msg=\"cloudwatch cpu unavailable\" err=\"%s\"", op->id, e->message);
    }
    next_stage(op);
}

static void got_info(void *ud, const struct lcm_error *e, const void *result)
{
    struct wop *op = ud;
    if (op->c) {
        const struct lcm_rt_system_info *si = e ? NULL : result;
        op->cml_ready = si ? si->ready : -1;   /* unreachable once is not "not ready" */
        snprintf(op->cml_version, sizeof(op->cml_version), "%s", si && si->version ? si->version : "");
    }
    next_stage(op);
}

/* ---- node definitions (also used by readiness in workers.c) ---- */

int wk_has_node_defs_op(struct lcm_workers_ctl *c)
{
    return implements(c, LCM_KIND_RUNTIME, offsetof(struct lcm_runtime_ops, node_definitions));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int wk_node_defs_take(struct wop *op, const struct lcm_rt_node_definitions *nd)
{
    size_t n = nd ? nd->ids.n : 0, k = 0;
    char **v = calloc(n ? n : 1, sizeof(*v));
    if (!v)
        return -1;
    for (size_t i = 0; i < n && k < WK_MAX_NODE_DEFS; i++) {
        /* an id the worker record would refuse would make the whole worker.cml event fail */
        if (!nd->ids.v || !lcm_text_ok(nd->ids.v[i], WK_MAX_NODE_DEF_LEN, 1))
            continue;
        if (!(v[k] = strdup(nd->ids.v[i]))) {
            lcm_strv_free(v, k);
            return -1;
        }
        k++;
    }
    qsort(v, k, sizeof(*v), cmp_str);   /* a stable order: no event when CML only reorders */
    size_t u = 0;
    for (size_t i = 0; i < k; i++) {
        if (u && !strcmp(v[u - 1], v[i]))
            free(v[i]);
        else
            v[u++] = v[i];
    }
    lcm_strv_free(op->node_defs, op->n_node_defs);
    op->node_defs = v;
    op->n_node_defs = u;
    op->have_node_defs = 1;
    return 0;
}

int wk_node_defs_changed(const struct wop *op, const struct lcm_worker *w)
{
    if (!op->have_node_defs)
        return 0;
    if (op->n_node_defs != w->cml.n_node_definitions)
        return 1;
    for (size_t i = 0; i < op->n_node_defs; i++) {
        const char *k = op->node_defs[i];
        if (!bsearch(&k, w->cml.node_definitions, w->cml.n_node_definitions, sizeof(char *), cmp_str)) {
            /* the recorded list may come from elsewhere unsorted: fall back to a scan */
            int found = 0;
            for (uint16_t j = 0; !found && j < w->cml.n_node_definitions; j++)
                found = !strcmp(w->cml.node_definitions[j], k);
            if (!found)
                return 1;
        }
    }
    return 0;
}

void wk_set_cml(const struct lcm_worker *w, const struct wop *op, const char *version, int ready,
                int64_t now, struct lcm_events *evs)
{
    struct lcm_derr de;
    const char *const *nds = op && op->have_node_defs ? (const char *const *)op->node_defs
                                                     : (const char *const *)w->cml.node_definitions;
    size_t n = op && op->have_node_defs ? op->n_node_defs : w->cml.n_node_definitions;
    if (lcm_worker_cmd_set_cml(w, version, ready, nds, n, WK_BY, now, evs, &de))
        lcm_warn("workers", "worker=%s msg=\"CML info refused\" err=\"%s\"", w->id, de.message);
}

static void got_nodedefs(void *ud, const struct lcm_error *e, const void *result)
{
    struct wop *op = ud;
    if (op->c && !e) {
        if (wk_node_defs_take(op, result) < 0)
            lcm_warn("workers", "worker=%s msg=\"node definitions dropped: out of memory\"", op->id);
    } else if (op->c && e) {
        lcm_debug("workers", "worker=%s msg=\"node definitions unavailable\" err=\"%s\"", op->id,
                  e->message);
    }
    next_stage(op);
}

static void got_stats(void *ud, const struct lcm_error *e, const void *result)
{
    struct wop *op = ud;
    if (op->c && !e && result) {
        const struct lcm_rt_system_stats *st = result;
        op->cpu_cml = st->cpu_percent;
        op->mem_cml = st->mem_total_bytes ? 100.0 * (double)st->mem_used_bytes / (double)st->mem_total_bytes : 0;
        op->have_stats = 1;
        char labels[256];
        labels_for(labels, sizeof(labels), op->id, NULL);
        lcm_metrics_set(op->c->app->metrics, "lcm_worker_running_nodes", labels, st->running_nodes);
    }
    next_stage(op);
}

static void got_activity(void *ud, const struct lcm_error *e, const void *result)
{
    struct wop *op = ud;
    if (op->c && !e && result)
        op->last_activity_ms = ((const struct lcm_rt_activity *)result)->last_activity_ms;
    next_stage(op);
}

static double clamp_pct(double v)
{
    if (!isfinite(v) || v < 0)
        return 0;
    return v > 100 ? 100 : v;
}

static void committed(struct wop *op, int status)
{
    (void)status;
    wk_op_done(op);
}

static void commit_metrics(struct wop *op)
{
    struct lcm_workers_ctl *c = op->c;
    const struct lcm_worker *w = lcm_store_get(c->app->store, "worker", op->id);
    if (!w || (w->status != LCM_WK_RUNNING && w->status != LCM_WK_DRAINING)) {
        wk_op_done(op);
        return;
    }
    char labels[256];
    if (op->have_cw) {
        labels_for(labels, sizeof(labels), op->id, "cloudwatch");
        lcm_metrics_set(c->app->metrics, "lcm_worker_cpu_percent", labels, op->cpu_cw);
    }
    if (op->have_stats) {
        labels_for(labels, sizeof(labels), op->id, "cml");
        lcm_metrics_set(c->app->metrics, "lcm_worker_cpu_percent", labels, op->cpu_cml);
        labels_for(labels, sizeof(labels), op->id, NULL);
        lcm_metrics_set(c->app->metrics, "lcm_worker_memory_percent", labels, op->mem_cml);
    }
    int64_t activity = op->last_activity_ms > 0 ? op->last_activity_ms / 1000 : 0;
    if (activity) {
        labels_for(labels, sizeof(labels), op->id, NULL);
        lcm_metrics_set(c->app->metrics, "lcm_worker_last_activity_timestamp_seconds", labels, (double)activity);
    }
    struct lcm_events evs;
    struct lcm_derr de;
    lcm_events_init(&evs);
    int64_t now = wk_wall_s();
    if (op->have_cw || op->have_stats || activity) {
        /* CML's own CPU figure is the hypervisor's; CloudWatch's is the fallback */
        double cpu = clamp_pct(op->have_stats ? op->cpu_cml : op->have_cw ? op->cpu_cw : w->metrics.cpu_pct);
        double mem = clamp_pct(op->have_stats ? op->mem_cml : w->metrics.mem_pct);
        int changed = fabs(cpu - w->metrics.cpu_pct) >= 1.0 || fabs(mem - w->metrics.mem_pct) >= 1.0 ||
                      (activity && activity > w->last_activity_at) || w->metrics.at == 0 ||
                      now - w->metrics.at >= 5 * (c->metrics_ms / 1000 + 1);
        if (changed)
            lcm_worker_cmd_metrics(w, cpu, mem, activity > w->last_activity_at ? activity : 0, WK_BY, now,
                                   &evs, &de);
    }
    int ready_changed = op->cml_ready >= 0 && (op->cml_ready != 0) != (w->cml.ready != 0);
    int nd_changed = wk_node_defs_changed(op, w);
    if (ready_changed)
        lcm_info("workers", "worker=%s msg=\"CML readiness changed\" ready=%d", w->id, op->cml_ready);
    if (nd_changed)
        lcm_info("workers", "worker=%s msg=\"CML node definitions changed\" count=%zu was=%u", w->id,
                 op->n_node_defs, (unsigned)w->cml.n_node_definitions);
    if (ready_changed || nd_changed)
        wk_set_cml(w, op, op->cml_version[0] ? op->cml_version : NULL,
                   ready_changed ? op->cml_ready : w->cml.ready, now, &evs);
    if (evs.n == 0 || wk_commit(c, op->id, w->version, &evs, op, committed) < 0)
        wk_op_done(op);
    lcm_events_clear(&evs);
}

static void next_stage(struct wop *op)
{
    struct lcm_workers_ctl *c = op->c;
    if (!c) {
        wk_op_done(op);
        return;
    }
    const struct lcm_worker *w = lcm_store_get(c->app->store, "worker", op->id);
    if (!w) {
        wk_op_done(op);
        return;
    }
    struct lcm_call call;
    wk_call_for(c, w, &call);
    struct lcm_error e = {0};
    for (;;) {
        op->stage++;
        int rc = 1;   /* 1 = stage skipped */
        if (op->stage == M_CW && w->instance_id &&
            implements(c, LCM_KIND_CLOUD, offsetof(struct lcm_cloud_ops, metrics))) {
            int64_t end = wk_wall_s() * 1000;
            struct lcm_cloud_metrics_args a = { .instance_id = w->instance_id, .metric = "CPUUtilization",
                                                .statistic = "Average", .start_ms = end - 15 * 60 * 1000,
                                                .end_ms = end, .period_s = 60 };
            rc = lcm_cloud_call(c->app->plugins, metrics, &call, &a, got_cw, op, &e, NULL);
        } else if (op->stage == M_INFO && implements(c, LCM_KIND_RUNTIME, offsetof(struct lcm_runtime_ops, system_info))) {
            rc = lcm_runtime_call(c->app->plugins, system_info, &call, NULL, got_info, op, &e, NULL);
        } else if (op->stage == M_NODEDEFS && op->cml_ready == 1 && wk_has_node_defs_op(c)) {
            /* refreshed with every poll: images are added to and removed from CML at runtime */
            rc = lcm_runtime_call(c->app->plugins, node_definitions, &call, NULL, got_nodedefs, op, &e, NULL);
        } else if (op->stage == M_STATS &&
                   implements(c, LCM_KIND_RUNTIME, offsetof(struct lcm_runtime_ops, system_stats))) {
            rc = lcm_runtime_call(c->app->plugins, system_stats, &call, NULL, got_stats, op, &e, NULL);
        } else if (op->stage == M_ACTIVITY &&
                   implements(c, LCM_KIND_RUNTIME, offsetof(struct lcm_runtime_ops, activity))) {
            struct lcm_rt_activity_args a = { .since_ms = (w->last_activity_at ? w->last_activity_at
                                                           : wk_wall_s() - 86400) * 1000 };
            rc = lcm_runtime_call(c->app->plugins, activity, &call, &a, got_activity, op, &e, NULL);
        } else if (op->stage >= M_COMMIT) {
            commit_metrics(op);
            return;
        }
        if (rc == 0)
            return;
        if (rc < 0)
            lcm_debug("workers", "worker=%s msg=\"metrics call refused\" stage=%d err=\"%s\"", op->id, op->stage,
                      e.message);
    }
}

void wk_metrics_start(struct lcm_workers_ctl *c, const struct lcm_worker *w)
{
    struct wk_track *t = wk_track(c, w->id);
    if (t)
        t->metrics_ms = wk_now_ms() + (double)c->metrics_ms;
    struct wop *op = wk_op_new(c, w->id, 0);
    if (!op)
        return;
    if (!lcm_ctl_claim(c->app->ctl, "worker", w->id)) {
        wk_op_done(op);
        return;
    }
    op->claimed = 1;
    op->cml_ready = -1;   /* unknown until system_info answers */
    next_stage(op);
}
