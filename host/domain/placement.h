/* The hard placement rules of DOMAIN.md "Placement" 1–5 as a pure function: the scheduler
 * calls it per (session, worker) and hands only the workers that pass to the Lua policy for
 * ranking; the rejection counts per reason feed scale-up. */
#ifndef LCM_DOMAIN_PLACEMENT_H
#define LCM_DOMAIN_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

#include "capacity.h"

struct lcm_worker;
struct lcm_definition;

enum lcm_place_reject {
    LCM_REJ_NONE = 0,
    LCM_REJ_NOT_RUNNING,      /* 1: status is not running */
    LCM_REJ_DRAINING,         /* 1: draining (fix: no new placements) */
    LCM_REJ_CML_NOT_READY,    /* 1: CML not ready */
    LCM_REJ_LICENSE,          /* 2: licence type does not serve the affinity */
    LCM_REJ_PERSONAL_BUSY,    /* 2: personal licence already holds a session */
    LCM_REJ_CPU,              /* 3 */
    LCM_REJ_MEMORY,           /* 3 */
    LCM_REJ_STORAGE,          /* 3 */
    LCM_REJ_NODES,            /* 3: nodes in use + node_count > node limit */
    LCM_REJ_CML_VERSION,      /* 4: outside [min, max] compared as versions (fix) */
    LCM_REJ_NODE_DEFINITION,  /* 4: a required node definition is missing */
    LCM_REJ_PORTS,            /* 5: not enough free ports (fix) */
    LCM_REJ__COUNT
};

const char *lcm_place_reject_name(enum lcm_place_reject r);   /* "cpu", "draining", … */

/* What a session needs; borrowed pointers (typically from its definition). */
struct lcm_place_req {
    struct lcm_capacity need;           /* nodes = node_count */
    uint8_t license_affinity;           /* lcm_license bits; 0 = any */
    const char *cml_version_min, *cml_version_max;
    char *const *node_definitions;
    size_t n_node_definitions;
    size_t nports;                      /* entries in the port template */
};

void lcm_place_req_from_definition(const struct lcm_definition *d, struct lcm_place_req *r);

/* 1 when a worker with licence `worker_lic` may serve a session whose definition accepts
 * `affinity` (enterprise serves enterprise and personal; personal serves personal;
 * evaluation serves evaluation; empty affinity = any). */
int lcm_license_serves(int worker_lic, uint8_t affinity);

/* The first rule (in DOMAIN.md order) the worker breaks, or LCM_REJ_NONE. */
enum lcm_place_reject lcm_placement_check(const struct lcm_worker *w,
                                          const struct lcm_place_req *r);

/* Checks n workers: writes each verdict to reasons[i] (may be NULL), adds to
 * counts[reason] (may be NULL; not zeroed here) and stores the indexes of the workers that
 * pass in pass[] (may be NULL). Returns how many pass. */
size_t lcm_placement_filter(const struct lcm_worker *const *ws, size_t n,
                            const struct lcm_place_req *r, enum lcm_place_reject *reasons,
                            uint32_t counts[LCM_REJ__COUNT], size_t *pass);

#endif
