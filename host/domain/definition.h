/* Definition aggregate: a bookable lab, versioned (semver), with its CML topology, resource
 * requirements, licence affinity and port template. Events:
 *   definition.created  {spec}            (status pending_sync)
 *   definition.updated  {spec}            (only while pending_sync or inactive)
 *   definition.<status> {from, reason}    (active, inactive, deprecated, deleted)
 * The spec JSON uses the field names of DOMAIN.md; the API validator also accepts the
 * upstream seed names (resource_requirements.ami_requirements[0].cml_version_min /
 * node_definitions_required, port_template.ports[], cost fields). */
#ifndef LCM_DOMAIN_DEFINITION_H
#define LCM_DOMAIN_DEFINITION_H

#include <stdint.h>

#include "capacity.h"
#include "derr.h"
#include "events.h"
#include "history.h"
#include "kind.h"
#include "license.h"

struct cJSON;


struct lcm_port_spec {
    char *name;          /* "<label>_<proto>", unique within the template */
    char *node_label;    /* CML node label the port belongs to */
    uint8_t protocol;    /* enum lcm_proto */
};

struct lcm_requirements {
    struct lcm_capacity need;     /* cpu_cores, memory_gb, storage_gb; nodes = node_count */
    uint8_t nested_virt;
    char *cml_version_min, *cml_version_max;   /* NULL = open */
    char **node_definitions;
    uint16_t n_node_definitions;
};

#define LCM_DEF_DEFAULT_DURATION 60
#define LCM_DEF_DEFAULT_BOOT_LEAD 20

struct lcm_definition {
    char *id;
    uint64_t version;             /* aggregate version (not the semver) */
    char *name, *semver, *fqn, *description;
    char *topology, *topology_uri, *topology_sha256;
    struct lcm_requirements req;
    uint8_t license_affinity;     /* lcm_license bits, 0 = any */
    struct lcm_port_spec *ports;
    uint16_t nports;
    char **user_visible_devices;
    uint16_t n_user_visible_devices;
    uint8_t lds_enabled, grading_enabled, lab_reuse_enabled;
    char *grading_ruleset;
    int32_t max_duration_minutes, boot_lead_minutes, warm_pool_depth;
    uint8_t status;               /* enum lcm_definition_status */
    struct lcm_history history;
    int64_t created_at, updated_at;
    char *created_by;
};

extern const struct lcm_kind lcm_kind_definition;

struct lcm_definition *lcm_definition_new(const char *id);
void lcm_definition_free(struct lcm_definition *d);

/* Validates an API body (or a converted seed) into d (which must be freshly created);
 * derives topology_sha256, node_count, the node definitions and the port template from the
 * topology when they are not given. Errors name the JSON field. */
int lcm_definition_validate(const struct cJSON *body, struct lcm_definition *d,
                            struct lcm_derr *err);
/* The spec part (no status/history/timestamps) as canonical JSON. */
struct cJSON *lcm_definition_spec_json(const struct lcm_definition *d);

/* Commands. id: the new aggregate's id (required). */
int lcm_definition_cmd_create(const char *id, const struct cJSON *body, const char *by,
                              int64_t now, struct lcm_events *out, struct lcm_derr *err);
int lcm_definition_cmd_update(const struct lcm_definition *d, const struct cJSON *body,
                              const char *by, int64_t now, struct lcm_events *out,
                              struct lcm_derr *err);
int lcm_definition_cmd_transition(const struct lcm_definition *d,
                                  enum lcm_definition_status to, const char *reason,
                                  const char *by, int64_t now, struct lcm_events *out,
                                  struct lcm_derr *err);
/* 1 when a supersedes b: same name and a higher semver (activating a deprecates b). */
int lcm_definition_supersedes(const struct lcm_definition *a, const struct lcm_definition *b);
/* 1 when sessions may be booked on d (status active). */
int lcm_definition_bookable(const struct lcm_definition *d);

#endif
