/* Request-body shapes (see api_body.h) and the shared parse-check-validate path used by the
 * fuzz target. The member lists follow DOMAIN.md plus the upstream seed aliases the domain
 * validators understand; anything else is refused rather than silently ignored. */
#include "api_body.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "domain/definition.h"
#include "domain/derr.h"
#include "domain/session.h"
#include "domain/template.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define SCHEMA(name, arr) const struct api_schema name = { arr, N(arr), 0 }
#define MAX_DEPTH 16

/* ---- templates ---- */
static const struct api_field capacity_f[] = {
    { "cpu_cores", AT_INT, NULL, 0, NULL },
    { "memory_gb", AT_INT, NULL, 0, NULL },
    { "storage_gb", AT_INT, NULL, 0, NULL },
    { "max_nodes", AT_INT, NULL, 0, NULL },
};
static SCHEMA(capacity_s, capacity_f);
static const struct api_schema tags_s = { NULL, 0, AT_STR };
static const struct api_field region_f[] = {
    { "subnet_id", AT_STR | AT_NULL, NULL, 0, NULL },
    { "security_group_ids", AT_ARR | AT_NULL, NULL, AT_STR, NULL },
    { "key_name", AT_STR | AT_NULL, NULL, 0, NULL },
    { "tags", AT_OBJ | AT_NULL, &tags_s, 0, NULL },
};
static SCHEMA(region_s, region_f);
static const struct api_schema regions_s = { NULL, 0, AT_OBJ };   /* values checked below */
static const struct api_field template_f[] = {
    { "name", AT_STR, NULL, 0, NULL },
    { "description", AT_STR | AT_NULL, NULL, 0, NULL },
    { "instance_type", AT_STR, NULL, 0, NULL },
    { "ami_name_pattern", AT_STR | AT_NULL, NULL, 0, NULL },
    { "region", AT_STR | AT_NULL, NULL, 0, NULL },
    { "capacity", AT_OBJ, &capacity_s, 0, NULL },
    { "license_type", AT_STR, NULL, 0, NULL },
    { "cost_per_hour", AT_NUM | AT_NULL, NULL, 0, NULL },
    { "cost_per_hour_usd", AT_NUM | AT_NULL, NULL, 0, NULL },
    { "enabled", AT_BOOL, NULL, 0, NULL },
    { "subnet_id", AT_STR | AT_NULL, NULL, 0, NULL },
    { "security_group_ids", AT_ARR | AT_NULL, NULL, AT_STR, NULL },
    { "key_name", AT_STR | AT_NULL, NULL, 0, NULL },
    { "tags", AT_OBJ | AT_NULL, &tags_s, 0, NULL },
    { "regions", AT_OBJ | AT_NULL, &regions_s, 0, NULL },
};
SCHEMA(lcm_api_schema_template, template_f);

/* ---- definitions ---- */
static const struct api_field ami_f[] = {
    { "cml_version_min", AT_STR | AT_NULL, NULL, 0, NULL },
    { "cml_version_max", AT_STR | AT_NULL, NULL, 0, NULL },
    { "node_definitions_required", AT_ARR | AT_NULL, NULL, AT_STR, NULL },
};
static SCHEMA(ami_s, ami_f);
static const struct api_field req_f[] = {
    { "cpu_cores", AT_INT, NULL, 0, NULL },
    { "memory_gb", AT_INT, NULL, 0, NULL },
    { "storage_gb", AT_INT | AT_NULL, NULL, 0, NULL },
    { "nested_virt", AT_BOOL | AT_NULL, NULL, 0, NULL },
    { "cml_version_min", AT_STR | AT_NULL, NULL, 0, NULL },
    { "cml_version_max", AT_STR | AT_NULL, NULL, 0, NULL },
    { "node_definitions", AT_ARR | AT_NULL, NULL, AT_STR, NULL },
    { "ami_requirements", AT_ARR | AT_NULL, NULL, AT_OBJ, &ami_s },
};
static SCHEMA(req_s, req_f);
static const struct api_field port_f[] = {
    { "name", AT_STR, NULL, 0, NULL },
    { "protocol", AT_STR | AT_NULL, NULL, 0, NULL },
    { "node_label", AT_STR | AT_NULL, NULL, 0, NULL },
    { "description", AT_STR | AT_NULL, NULL, 0, NULL },
};
static SCHEMA(port_s, port_f);
static const struct api_field definition_f[] = {
    { "name", AT_STR, NULL, 0, NULL },
    { "version", AT_STR, NULL, 0, NULL },
    { "form_qualified_name", AT_STR | AT_NULL, NULL, 0, NULL },
    { "description", AT_STR | AT_NULL, NULL, 0, NULL },
    { "topology", AT_STR | AT_NULL, NULL, 0, NULL },
    { "topology_uri", AT_STR | AT_NULL, NULL, 0, NULL },
    { "topology_sha256", AT_STR | AT_NULL, NULL, 0, NULL },
    { "resource_requirements", AT_OBJ, &req_s, 0, NULL },
    { "node_count", AT_INT | AT_NULL, NULL, 0, NULL },
    { "license_affinity", AT_ARR | AT_NULL, NULL, AT_STR, NULL },
    /* an array of {name, protocol}, or upstream's {"ports": [...]} (checked below) */
    { "port_template", AT_ARR | AT_OBJ | AT_NULL, NULL, AT_OBJ, &port_s },
    { "user_visible_devices", AT_ARR | AT_NULL, NULL, AT_STR, NULL },
    { "lds_enabled", AT_BOOL | AT_NULL, NULL, 0, NULL },
    { "grading_enabled", AT_BOOL | AT_NULL, NULL, 0, NULL },
    { "grading_ruleset", AT_STR | AT_NULL, NULL, 0, NULL },
    { "max_duration_minutes", AT_INT | AT_NULL, NULL, 0, NULL },
    { "boot_lead_minutes", AT_INT | AT_NULL, NULL, 0, NULL },
    { "lab_reuse_enabled", AT_BOOL | AT_NULL, NULL, 0, NULL },
    { "warm_pool_depth", AT_INT | AT_NULL, NULL, 0, NULL },
};
SCHEMA(lcm_api_schema_definition, definition_f);
static const struct api_field port_wrap_f[] = {
    { "ports", AT_ARR, NULL, AT_OBJ, &port_s },
};
static SCHEMA(port_wrap_s, port_wrap_f);

/* ---- sessions, workers, labs ---- */
static const struct api_field timeslot_f[] = {
    { "start", AT_STR | AT_NULL, NULL, 0, NULL },
    { "end", AT_STR | AT_NULL, NULL, 0, NULL },
};
static SCHEMA(timeslot_s, timeslot_f);
static const struct api_field session_create_f[] = {
    { "definition_id", AT_STR | AT_REQ, NULL, 0, NULL },
    { "timeslot", AT_OBJ | AT_NULL, &timeslot_s, 0, NULL },
    { "reservation_id", AT_STR | AT_NULL, NULL, 0, NULL },
    { "owner", AT_STR | AT_NULL, NULL, 0, NULL },
};
SCHEMA(lcm_api_schema_session_create, session_create_f);
static const struct api_field worker_create_f[] = {
    { "template", AT_STR | AT_REQ, NULL, 0, NULL },
    { "region", AT_STR | AT_REQ, NULL, 0, NULL },
    { "name", AT_STR | AT_NULL, NULL, 0, NULL },
};
SCHEMA(lcm_api_schema_worker_create, worker_create_f);
static const struct api_field worker_import_f[] = {
    { "region", AT_STR | AT_REQ, NULL, 0, NULL },
};
SCHEMA(lcm_api_schema_worker_import, worker_import_f);
static const struct api_field worker_drain_f[] = {
    { "reason", AT_STR | AT_NULL, NULL, 0, NULL },
    { "deadline", AT_STR | AT_NULL, NULL, 0, NULL },
};
SCHEMA(lcm_api_schema_worker_drain, worker_drain_f);
static const struct api_field reason_f[] = {
    { "reason", AT_STR | AT_NULL, NULL, 0, NULL },
};
SCHEMA(lcm_api_schema_reason, reason_f);
static const struct api_field extend_f[] = {
    { "end", AT_STR | AT_REQ, NULL, 0, NULL },
};
SCHEMA(lcm_api_schema_session_extend, extend_f);
static const struct api_field transition_f[] = {
    { "status", AT_STR | AT_REQ, NULL, 0, NULL },
    { "reason", AT_STR | AT_NULL, NULL, 0, NULL },
};
SCHEMA(lcm_api_schema_session_transition, transition_f);
static const struct api_field requeue_f[] = {
    { "timeslot", AT_OBJ | AT_NULL, &timeslot_s, 0, NULL },
    { "reason", AT_STR | AT_NULL, NULL, 0, NULL },
};
SCHEMA(lcm_api_schema_session_requeue, requeue_f);
static const struct api_field lab_action_f[] = {
    { "action", AT_STR | AT_REQ, NULL, 0, NULL },
};
SCHEMA(lcm_api_schema_lab_action, lab_action_f);

/* ---- checking ---- */

static unsigned type_of(const cJSON *v)
{
    if (cJSON_IsString(v))
        return AT_STR;
    if (cJSON_IsBool(v))
        return AT_BOOL;
    if (cJSON_IsNull(v))
        return AT_NULL;
    if (cJSON_IsObject(v))
        return AT_OBJ;
    if (cJSON_IsArray(v))
        return AT_ARR;
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (isfinite(d) && d == floor(d) && fabs(d) < 9007199254740992.0)
            return AT_INT | AT_NUM;
        return AT_NUM;
    }
    return 0;
}

static const char *type_words(unsigned t)
{
    t &= ~(unsigned)(AT_NULL | AT_REQ);
    switch (t) {
    case AT_STR: return "a string";
    case AT_INT: return "an integer";
    case AT_NUM: return "a number";
    case AT_BOOL: return "a boolean";
    case AT_OBJ: return "an object";
    case AT_ARR: return "an array";
    case AT_ARR | AT_OBJ: return "an array or an object";
    default: return "of another type";
    }
}

static void path_join(char *out, size_t cap, const char *prefix, const char *name)
{
    if (prefix && *prefix)
        snprintf(out, cap, "%s.%s", prefix, name);
    else
        snprintf(out, cap, "%s", name);
}

static int check_obj(const cJSON *o, const struct api_schema *s, const char *prefix, int depth,
                     struct lcm_derr *err);

static int check_value(const cJSON *v, unsigned types, const struct api_schema *obj,
                       unsigned items, const struct api_schema *item_obj, const char *path,
                       int depth, struct lcm_derr *err)
{
    unsigned t = type_of(v);
    if (!(t & types) || depth > MAX_DEPTH)
        return lcm_derr_set(err, LCM_DERR_INVALID, path, "%s must be %s%s", path,
                            type_words(types), types & AT_NULL ? " (or null)" : ""),
               API_BODY_TYPE;
    if (t == AT_OBJ && obj)
        return check_obj(v, obj, path, depth + 1, err);
    if (t == AT_ARR && items) {
        int i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, v) {
            char p[64];
            snprintf(p, sizeof p, "%s[%d]", path, i++);
            int rc = check_value(it, items, item_obj, 0, NULL, p, depth + 1, err);
            if (rc)
                return rc;
        }
    }
    return API_BODY_OK;
}

static int check_obj(const cJSON *o, const struct api_schema *s, const char *prefix, int depth,
                     struct lcm_derr *err)
{
    if (!cJSON_IsObject(o))
        return lcm_derr_set(err, LCM_DERR_INVALID, prefix ? prefix : "",
                            "%s must be a JSON object", prefix && *prefix ? prefix : "the body"),
               API_BODY_TYPE;
    const cJSON *m;
    cJSON_ArrayForEach(m, o) {
        char path[64];
        path_join(path, sizeof path, prefix, m->string ? m->string : "?");
        const struct api_field *f = NULL;
        for (size_t i = 0; i < s->n && !f; i++)
            if (m->string && !strcmp(s->fields[i].name, m->string))
                f = &s->fields[i];
        /* two members with one name: cJSON keeps both; refuse the ambiguity */
        for (const cJSON *x = m->next; x; x = x->next)
            if (x->string && m->string && !strcmp(x->string, m->string))
                return lcm_derr_set(err, LCM_DERR_INVALID, path, "%s appears twice", path),
                       API_BODY_TYPE;
        int rc;
        if (f) {
            const struct api_schema *sub = f->obj;
            /* port_template as upstream's {"ports": [...]} */
            if (f->obj == NULL && f->item_obj == &port_s && cJSON_IsObject(m))
                sub = &port_wrap_s;
            rc = check_value(m, f->types, sub, f->items, f->item_obj, path, depth, err);
        } else if (s->open) {
            const struct api_schema *sub = s == &regions_s ? &region_s : NULL;
            rc = check_value(m, s->open, sub, 0, NULL, path, depth, err);
        } else {
            return lcm_derr_set(err, LCM_DERR_INVALID, path, "unknown field %s", path),
                   API_BODY_UNKNOWN;
        }
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < s->n; i++) {
        if (!(s->fields[i].types & AT_REQ))
            continue;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, s->fields[i].name);
        if (!v || cJSON_IsNull(v)) {
            char path[64];
            path_join(path, sizeof path, prefix, s->fields[i].name);
            return lcm_derr_set(err, LCM_DERR_INVALID, path, "%s is required", path), API_BODY_TYPE;
        }
    }
    return API_BODY_OK;
}

int lcm_api_body_check(const cJSON *o, const struct api_schema *s, struct lcm_derr *err)
{
    lcm_derr_clear(err);
    return check_obj(o, s, "", 0, err);
}

int lcm_api_body_validate(const char *kind, const char *json, size_t len, struct lcm_derr *err)
{
    lcm_derr_clear(err);
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    int trailing = 0;
    /* the input is not NUL-terminated: scan what follows the value by length */
    for (const char *p = end; o && p && p < json + len; p++)
        if (!strchr(" \t\r\n", *p) || !*p)
            trailing = 1;
    if (!o || trailing)
        return cJSON_Delete(o), lcm_derr_set(err, LCM_DERR_INVALID, "", "malformed JSON");
    int rc = 0;
    if (!strcmp(kind, "template")) {
        if (lcm_api_body_check(o, &lcm_api_schema_template, err)) {
            rc = err->code;
        } else {
            struct lcm_template *t = lcm_template_new(NULL);
            rc = t ? lcm_template_validate(o, t, err)
                   : lcm_derr_set(err, LCM_DERR_NOMEM, "", "out of memory");
            lcm_template_free(t);
        }
    } else if (!strcmp(kind, "definition")) {
        if (lcm_api_body_check(o, &lcm_api_schema_definition, err)) {
            rc = err->code;
        } else {
            struct lcm_definition *d = lcm_definition_new("fuzz");
            rc = d ? lcm_definition_validate(o, d, err)
                   : lcm_derr_set(err, LCM_DERR_NOMEM, "", "out of memory");
            lcm_definition_free(d);
        }
    } else if (!strcmp(kind, "session")) {
        struct lcm_session_create c;
        if (lcm_api_body_check(o, &lcm_api_schema_session_create, err))
            rc = err->code;
        else
            rc = lcm_session_parse_create(o, &c, err);
    } else {
        rc = lcm_derr_set(err, LCM_DERR_INVALID, "", "unknown body kind");
    }
    cJSON_Delete(o);
    return rc;
}
