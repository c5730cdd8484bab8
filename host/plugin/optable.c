/* The per-kind op tables of the SPI as data, so that validation, calling and the status
 * listing all use one description. Appending an op to spi.h means appending a row here with
 * the new minor. */
#include "optable.h"

#include <string.h>

#include <lcm/spi.h>

#define OP(type, m, req, minor) { #m, offsetof(struct type, m), req, minor }

static const struct lcm_op_meta cloud_ops[] = {
    OP(lcm_cloud_ops, launch, 1, 0),
    OP(lcm_cloud_ops, describe, 1, 0),
    OP(lcm_cloud_ops, start, 1, 0),
    OP(lcm_cloud_ops, stop, 1, 0),
    OP(lcm_cloud_ops, terminate, 1, 0),
    OP(lcm_cloud_ops, find_image, 1, 0),
    OP(lcm_cloud_ops, create_tags, 0, 0),
    OP(lcm_cloud_ops, metrics, 0, 1),
};

static const struct lcm_op_meta runtime_ops[] = {
    OP(lcm_runtime_ops, system_info, 1, 0),
    OP(lcm_runtime_ops, licence_get, 1, 0),
    OP(lcm_runtime_ops, licence_register, 0, 0),
    OP(lcm_runtime_ops, lab_import, 1, 0),
    OP(lcm_runtime_ops, lab_get, 1, 0),
    OP(lcm_runtime_ops, lab_start, 1, 0),
    OP(lcm_runtime_ops, lab_stop, 1, 0),
    OP(lcm_runtime_ops, lab_wipe, 1, 0),
    OP(lcm_runtime_ops, lab_delete, 1, 0),
    OP(lcm_runtime_ops, lab_converged, 1, 0),
    OP(lcm_runtime_ops, nodes_list, 1, 0),
    OP(lcm_runtime_ops, node_set_tags, 1, 0),
    OP(lcm_runtime_ops, extract_configs, 0, 0),
    OP(lcm_runtime_ops, system_stats, 0, 1),
    OP(lcm_runtime_ops, activity, 0, 1),
    OP(lcm_runtime_ops, list_labs, 0, 1),
    OP(lcm_runtime_ops, node_definitions, 0, 2),
};

static const struct lcm_op_meta delivery_ops[] = {
    OP(lcm_delivery_ops, session_create, 1, 0),
    OP(lcm_delivery_ops, set_devices, 1, 0),
    OP(lcm_delivery_ops, session_get, 1, 0),
    OP(lcm_delivery_ops, launch_url, 1, 0),
    OP(lcm_delivery_ops, release, 1, 0),
    OP(lcm_delivery_ops, refresh_content, 0, 1),
    OP(lcm_delivery_ops, session_find, 0, 3),
};

static const struct lcm_op_meta grading_ops[] = {
    OP(lcm_grading_ops, session_create, 1, 0),
    OP(lcm_grading_ops, request_grading, 1, 0),
    OP(lcm_grading_ops, get_result, 1, 0),
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const struct lcm_kind_meta kinds[] = {
    { LCM_KIND_CLOUD, "cloud", cloud_ops, N(cloud_ops), sizeof(struct lcm_cloud_ops) },
    { LCM_KIND_RUNTIME, "runtime", runtime_ops, N(runtime_ops), sizeof(struct lcm_runtime_ops) },
    { LCM_KIND_DELIVERY, "delivery", delivery_ops, N(delivery_ops),
      sizeof(struct lcm_delivery_ops) },
    { LCM_KIND_GRADING, "grading", grading_ops, N(grading_ops), sizeof(struct lcm_grading_ops) },
};

const struct lcm_kind_meta *lcm_optable_kind(uint32_t kind)
{
    for (size_t i = 0; i < N(kinds); i++)
        if (kinds[i].kind == kind)
            return &kinds[i];
    return NULL;
}

const struct lcm_kind_meta *lcm_optable_kind_by_name(const char *name)
{
    for (size_t i = 0; name && i < N(kinds); i++)
        if (strcmp(kinds[i].name, name) == 0)
            return &kinds[i];
    return NULL;
}

const struct lcm_op_meta *lcm_optable_op(const struct lcm_kind_meta *k, size_t offset)
{
    for (size_t i = 0; k && i < k->nops; i++)
        if (k->ops[i].offset == offset)
            return &k->ops[i];
    return NULL;
}

const struct lcm_op_meta *lcm_optable_op_by_name(const struct lcm_kind_meta *k, const char *name)
{
    for (size_t i = 0; k && name && i < k->nops; i++)
        if (strcmp(k->ops[i].name, name) == 0)
            return &k->ops[i];
    return NULL;
}

size_t lcm_optable_min_size(const struct lcm_kind_meta *k, unsigned minor)
{
    size_t end = sizeof(uint32_t);
    for (size_t i = 0; i < k->nops; i++) {
        size_t e = k->ops[i].offset + sizeof(lcm_op_fn);
        if (k->ops[i].since_minor <= minor && e > end)
            end = e;
    }
    return end;
}
