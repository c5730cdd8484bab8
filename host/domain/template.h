/* Worker template aggregate (id = name): the EC2 shape and declared capacity of a kind of
 * worker, e.g. multi-sessions (enterprise) and single-session (personal, one session).
 * Events: template.created {spec}, template.updated {spec}, template.deleted {reason}.
 * Accepts the sample files' field names (converted to JSON): id, name, description,
 * instance_type, ami_name_pattern, capacity{cpu_cores, memory_gb, storage_gb, max_nodes},
 * cost_per_hour_usd (or cost_per_hour), enabled, created_by; plus license_type (default
 * enterprise), region, subnet_id, security_group_ids[], key_name, tags{} and regions{<region>:
 * {subnet_id, security_group_ids[], key_name, tags{}}} for per-region launch settings. */
#ifndef LCM_DOMAIN_TEMPLATE_H
#define LCM_DOMAIN_TEMPLATE_H

#include <stdint.h>

#include "capacity.h"
#include "derr.h"
#include "events.h"
#include "kind.h"

struct cJSON;

struct lcm_template {
    char *id;                   /* == name */
    uint64_t version;
    char *name, *description, *instance_type, *ami_name_pattern, *region;
    struct lcm_capacity capacity;   /* nodes = max_nodes */
    uint8_t license_type;           /* one lcm_license bit */
    uint8_t enabled, deleted;
    double cost_per_hour;
    char *subnet_id, *key_name;
    char **security_group_ids;
    uint16_t n_security_group_ids;
    char *tags_json;            /* canonical JSON object of string values, NULL when none */
    char *regions_json;         /* canonical JSON object of per-region settings, or NULL */
    int64_t created_at, updated_at;
    char *created_by;
};

extern const struct lcm_kind lcm_kind_template;

struct lcm_template *lcm_template_new(const char *id);
void lcm_template_free(struct lcm_template *t);
/* Validates an API body into t (fresh). Errors name the JSON field. */
int lcm_template_validate(const struct cJSON *body, struct lcm_template *t,
                          struct lcm_derr *err);
/* The launch settings for region (per-region entry over the top-level ones): returns a new
 * object {subnet_id, security_group_ids, key_name, tags} (caller deletes) or NULL. */
struct cJSON *lcm_template_launch_settings(const struct lcm_template *t, const char *region);

int lcm_template_cmd_create(const struct cJSON *body, const char *by, int64_t now,
                            struct lcm_events *out, struct lcm_derr *err);
int lcm_template_cmd_update(const struct lcm_template *t, const struct cJSON *body,
                            const char *by, int64_t now, struct lcm_events *out,
                            struct lcm_derr *err);
int lcm_template_cmd_delete(const struct lcm_template *t, const char *reason, const char *by,
                            int64_t now, struct lcm_events *out, struct lcm_derr *err);

#endif
