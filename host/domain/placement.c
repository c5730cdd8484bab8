/* Placement hard filter (DOMAIN.md "Placement" 1–5), cheapest checks first so that the
 * 1,000 × 10,000 sweep spends its time on the few workers that are close to fitting. */
#include "placement.h"

#include <string.h>

#include "definition.h"
#include "fsm.h"
#include "version.h"
#include "worker.h"

static const char *const reject_names[LCM_REJ__COUNT] = {
    "none", "not_running", "draining", "cml_not_ready", "license", "personal_busy", "cpu",
    "memory", "storage", "nodes", "cml_version", "node_definition", "ports"};

const char *lcm_place_reject_name(enum lcm_place_reject r)
{
    return ((int)r >= 0 && r < LCM_REJ__COUNT) ? reject_names[r] : "?";
}

void lcm_place_req_from_definition(const struct lcm_definition *d, struct lcm_place_req *r)
{
    memset(r, 0, sizeof *r);
    r->need = d->req.need;
    r->license_affinity = d->license_affinity;
    r->cml_version_min = d->req.cml_version_min;
    r->cml_version_max = d->req.cml_version_max;
    r->node_definitions = d->req.node_definitions;
    r->n_node_definitions = d->req.n_node_definitions;
    r->nports = d->nports;
}

int lcm_license_serves(int worker_lic, uint8_t affinity)
{
    if (affinity == 0)
        return 1;
    uint8_t serves = (uint8_t)worker_lic;
    if (worker_lic == LCM_LIC_ENTERPRISE)
        serves |= LCM_LIC_PERSONAL;
    return (serves & affinity) != 0;
}

static int has_node_definition(const struct lcm_worker *w, const char *nd)
{
    for (uint16_t i = 0; i < w->cml.n_node_definitions; i++)
        if (!strcmp(w->cml.node_definitions[i], nd))
            return 1;
    return 0;
}

enum lcm_place_reject lcm_placement_check(const struct lcm_worker *w,
                                          const struct lcm_place_req *r)
{
    /* 1 */
    if (w->status == LCM_WK_DRAINING)
        return LCM_REJ_DRAINING;
    if (w->status != LCM_WK_RUNNING)
        return LCM_REJ_NOT_RUNNING;
    if (!w->cml.ready)
        return LCM_REJ_CML_NOT_READY;
    /* 2 */
    if (!lcm_license_serves(w->license.type, r->license_affinity))
        return LCM_REJ_LICENSE;
    if (w->license.type == LCM_LIC_PERSONAL && w->nsessions > 0)
        return LCM_REJ_PERSONAL_BUSY;
    /* 3 */
    switch (lcm_capacity_check(&w->declared, &w->allocated, &r->need, lcm_worker_node_limit(w))) {
    case LCM_CAP_FITS: break;
    case LCM_CAP_CPU: return LCM_REJ_CPU;
    case LCM_CAP_MEMORY: return LCM_REJ_MEMORY;
    case LCM_CAP_STORAGE: return LCM_REJ_STORAGE;
    case LCM_CAP_NODES: return LCM_REJ_NODES;
    }
    /* 4 (fix: versions, not strings) */
    if ((r->cml_version_min && *r->cml_version_min) || (r->cml_version_max && *r->cml_version_max)) {
        if (!lcm_version_in_range(w->cml.version, r->cml_version_min, r->cml_version_max))
            return LCM_REJ_CML_VERSION;
    }
    for (size_t i = 0; i < r->n_node_definitions; i++)
        if (!has_node_definition(w, r->node_definitions[i]))
            return LCM_REJ_NODE_DEFINITION;
    /* 5 (fix) */
    if (r->nports > lcm_ports_free_count(&w->ports))
        return LCM_REJ_PORTS;
    return LCM_REJ_NONE;
}

size_t lcm_placement_filter(const struct lcm_worker *const *ws, size_t n,
                            const struct lcm_place_req *r, enum lcm_place_reject *reasons,
                            uint32_t counts[LCM_REJ__COUNT], size_t *pass)
{
    size_t np = 0;
    for (size_t i = 0; i < n; i++) {
        enum lcm_place_reject v = lcm_placement_check(ws[i], r);
        if (reasons)
            reasons[i] = v;
        if (counts)
            counts[v]++;
        if (v == LCM_REJ_NONE) {
            if (pass)
                pass[np] = i;
            np++;
        }
    }
    return np;
}
