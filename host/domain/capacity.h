/* Capacity arithmetic on plain integers (the scheduler compares 1,000 workers × 10,000
 * sessions, so no strings or JSON here). Allocation never goes above the declared capacity
 * and release never below zero. */
#ifndef LCM_DOMAIN_CAPACITY_H
#define LCM_DOMAIN_CAPACITY_H

#include <stdint.h>

struct lcm_capacity {
    int32_t cpu_cores;
    int32_t memory_gb;
    int32_t storage_gb;
    int32_t nodes;         /* declared: the node limit; allocated/requirement: node count */
};

enum lcm_capacity_short {
    LCM_CAP_FITS = 0, LCM_CAP_CPU, LCM_CAP_MEMORY, LCM_CAP_STORAGE, LCM_CAP_NODES
};

/* 1 when every member is ≥ 0. */
int lcm_capacity_valid(const struct lcm_capacity *c);
/* Which dimension (first in cpu, memory, storage, nodes order) lacks room for req on top of
 * alloc within decl; node_limit overrides decl->nodes when > 0 and smaller. */
enum lcm_capacity_short lcm_capacity_check(const struct lcm_capacity *decl,
                                           const struct lcm_capacity *alloc,
                                           const struct lcm_capacity *req, int32_t node_limit);
/* alloc += req when it fits (returns 0), else -1 and alloc unchanged. */
int lcm_capacity_add(struct lcm_capacity *alloc, const struct lcm_capacity *decl,
                     const struct lcm_capacity *req, int32_t node_limit);
/* alloc -= req when no member would go negative (returns 0), else -1 and unchanged. */
int lcm_capacity_sub(struct lcm_capacity *alloc, const struct lcm_capacity *req);
const char *lcm_capacity_short_name(enum lcm_capacity_short s);

#endif
