/* Request-body shapes of the resource routes: which members each JSON body may have and
 * their JSON types. Checked before the domain validators see a body, so unknown fields and
 * wrong types are refused with the offending field's path. Pure (cJSON only), fuzzed. */
#ifndef LCM_API_BODY_H
#define LCM_API_BODY_H

#include <stddef.h>

struct cJSON;
struct lcm_derr;

enum {
    AT_STR = 1, AT_INT = 2, AT_NUM = 4, AT_BOOL = 8, AT_OBJ = 16, AT_ARR = 32, AT_NULL = 64,
    AT_REQ = 128    /* the member must be present and not null */
};

struct api_schema;
struct api_field {
    const char *name;
    unsigned types;                   /* AT_* bits */
    const struct api_schema *obj;     /* members of an object value (NULL: any object) */
    unsigned items;                   /* AT_* bits of array items (0: any) */
    const struct api_schema *item_obj;
};
struct api_schema {
    const struct api_field *fields;
    size_t n;
    unsigned open;                    /* nonzero: other members allowed with these types */
};

/* Check results. */
enum { API_BODY_OK = 0, API_BODY_UNKNOWN = 1, API_BODY_TYPE = 2 };

/* Checks o against s. On failure fills err (code LCM_DERR_INVALID, field = JSON path such as
 * "timeslot.start" or "port_template[2].name") and returns API_BODY_UNKNOWN or
 * API_BODY_TYPE. Nesting deeper than 16 levels is a type error. */
int lcm_api_body_check(const struct cJSON *o, const struct api_schema *s,
                       struct lcm_derr *err);

extern const struct api_schema lcm_api_schema_template;
extern const struct api_schema lcm_api_schema_definition;
extern const struct api_schema lcm_api_schema_session_create;
extern const struct api_schema lcm_api_schema_worker_create;
extern const struct api_schema lcm_api_schema_worker_import;
extern const struct api_schema lcm_api_schema_worker_drain;
extern const struct api_schema lcm_api_schema_reason;          /* {reason?} */
extern const struct api_schema lcm_api_schema_session_extend;
extern const struct api_schema lcm_api_schema_session_transition;
extern const struct api_schema lcm_api_schema_session_requeue;
extern const struct api_schema lcm_api_schema_lab_action;

/* What POST /templates, POST /definitions and POST /sessions do with a body before any
 * store access: parse (exactly one JSON value), check the shape, run the domain validator.
 * kind: "template", "definition" or "session". Returns 0, or a negative LCM_DERR_* with err
 * filled (malformed JSON: LCM_DERR_INVALID with field ""). For the fuzz target and tests. */
int lcm_api_body_validate(const char *kind, const char *json, size_t len,
                          struct lcm_derr *err);

#endif
