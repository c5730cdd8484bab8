/* What the host knows about each provider kind: its ops table's members (name, offset,
 * whether required, the SPI minor that added it). The loader validates plugins against it and
 * GET /api/v1/plugins lists ops from it. */
#ifndef LCM_PLUGIN_OPTABLE_H
#define LCM_PLUGIN_OPTABLE_H

#include <stddef.h>
#include <stdint.h>

struct lcm_op_meta {
    const char *name;          /* "launch" */
    size_t offset;             /* offsetof the member in the kind's ops struct */
    int required;              /* a plugin without it is refused */
    unsigned since_minor;      /* SPI minor that appended it */
};

struct lcm_kind_meta {
    uint32_t kind;             /* enum lcm_plugin_kind */
    const char *name;          /* "cloud", "runtime", "delivery", "grading" */
    const struct lcm_op_meta *ops;
    size_t nops;
    size_t host_size;          /* sizeof the ops struct as the host is built */
};

const struct lcm_kind_meta *lcm_optable_kind(uint32_t kind);     /* NULL when unknown */
const struct lcm_kind_meta *lcm_optable_kind_by_name(const char *name);
/* The op at offset, or NULL when offset is not a member of the kind's table. */
const struct lcm_op_meta *lcm_optable_op(const struct lcm_kind_meta *k, size_t offset);
const struct lcm_op_meta *lcm_optable_op_by_name(const struct lcm_kind_meta *k,
                                                 const char *name);
/* The smallest ops table size a plugin built against SPI <major>.<minor> can have: the end of
 * the last member that existed at that minor. */
size_t lcm_optable_min_size(const struct lcm_kind_meta *k, unsigned minor);

#endif
