/* Worker capacity arithmetic: overflow-safe integer checks used by both the worker's
 * allocate command and the placement filter. */
#include "capacity.h"

int lcm_capacity_valid(const struct lcm_capacity *c)
{
    return c->cpu_cores >= 0 && c->memory_gb >= 0 && c->storage_gb >= 0 && c->nodes >= 0;
}

static int room(int32_t decl, int32_t alloc, int32_t req)
{
    /* 64-bit so that absurd inputs cannot wrap around */
    return req >= 0 && (int64_t)alloc + (int64_t)req <= (int64_t)decl;
}

enum lcm_capacity_short lcm_capacity_check(const struct lcm_capacity *decl,
                                           const struct lcm_capacity *alloc,
                                           const struct lcm_capacity *req, int32_t node_limit)
{
    int32_t nodes = decl->nodes;
    if (node_limit > 0 && node_limit < nodes)
        nodes = node_limit;
    if (!room(decl->cpu_cores, alloc->cpu_cores, req->cpu_cores))
        return LCM_CAP_CPU;
    if (!room(decl->memory_gb, alloc->memory_gb, req->memory_gb))
        return LCM_CAP_MEMORY;
    if (!room(decl->storage_gb, alloc->storage_gb, req->storage_gb))
        return LCM_CAP_STORAGE;
    if (!room(nodes, alloc->nodes, req->nodes))
        return LCM_CAP_NODES;
    return LCM_CAP_FITS;
}

int lcm_capacity_add(struct lcm_capacity *alloc, const struct lcm_capacity *decl,
                     const struct lcm_capacity *req, int32_t node_limit)
{
    if (lcm_capacity_check(decl, alloc, req, node_limit) != LCM_CAP_FITS)
        return -1;
    alloc->cpu_cores += req->cpu_cores;
    alloc->memory_gb += req->memory_gb;
    alloc->storage_gb += req->storage_gb;
    alloc->nodes += req->nodes;
    return 0;
}

int lcm_capacity_sub(struct lcm_capacity *alloc, const struct lcm_capacity *req)
{
    if (!lcm_capacity_valid(req) || req->cpu_cores > alloc->cpu_cores ||
        req->memory_gb > alloc->memory_gb || req->storage_gb > alloc->storage_gb ||
        req->nodes > alloc->nodes)
        return -1;
    alloc->cpu_cores -= req->cpu_cores;
    alloc->memory_gb -= req->memory_gb;
    alloc->storage_gb -= req->storage_gb;
    alloc->nodes -= req->nodes;
    return 0;
}

const char *lcm_capacity_short_name(enum lcm_capacity_short s)
{
    switch (s) {
    case LCM_CAP_FITS: return "fits";
    case LCM_CAP_CPU: return "cpu";
    case LCM_CAP_MEMORY: return "memory";
    case LCM_CAP_STORAGE: return "storage";
    case LCM_CAP_NODES: return "nodes";
    }
    return "?";
}
