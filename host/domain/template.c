/* Worker template aggregate: validation of the template body (sample field names
 * included), canonical JSON, commands and its lcm_kind vtable. Templates have no state
 * machine: they are enabled/disabled and soft-deleted. */
#include "template.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "definition.h"
#include "jsonx.h"
#include "kind_glue.h"

struct lcm_template *lcm_template_new(const char *id)
{
    struct lcm_template *t = calloc(1, sizeof *t);
    if (t && id && !(t->id = strdup(id))) {
        free(t);
        return NULL;
    }
    if (t)
        t->enabled = 1;
    return t;
}

static void tpl_clear_spec(struct lcm_template *t)
{
    free(t->name);
    free(t->description);
    free(t->instance_type);
    free(t->ami_name_pattern);
    free(t->region);
    free(t->subnet_id);
    free(t->key_name);
    lcm_strv_free(t->security_group_ids, t->n_security_group_ids);
    free(t->tags_json);
    free(t->regions_json);
}

void lcm_template_free(struct lcm_template *t)
{
    if (!t)
        return;
    tpl_clear_spec(t);
    free(t->created_by);
    free(t->id);
    free(t);
}

/* A canonical copy of a {string: string} object, or NULL with err. */
static cJSON *tags_copy(const cJSON *o, const char *field, struct lcm_derr *err)
{
    if (!cJSON_IsObject(o) || cJSON_GetArraySize(o) > 50) {
        lcm_derr_set(err, LCM_DERR_INVALID, field,
                     "%s must be an object of at most 50 string values", field);
        return NULL;
    }
    cJSON *c = cJSON_CreateObject();
    const cJSON *it;
    cJSON_ArrayForEach(it, o) {
        if (!cJSON_IsString(it) || !lcm_text_ok(it->string, 128, 1) ||
            strlen(it->valuestring) > 256) {
            cJSON_Delete(c);
            lcm_derr_set(err, LCM_DERR_INVALID, field, "%s.%s must be a string", field,
                         it->string ? it->string : "?");
            return NULL;
        }
        cJSON_AddItemToObject(c, it->string, cJSON_CreateString(it->valuestring));
    }
    return c;
}

/* Launch settings {subnet_id, security_group_ids, key_name, tags} from o, canonical. */
static cJSON *launch_copy(const cJSON *o, const char *prefix, struct lcm_derr *err)
{
    char field[160];
    const cJSON *sg, *tags;
    cJSON *sgtmp = NULL, *tagtmp = NULL;
    cJSON *c = cJSON_CreateObject();
    const char *const keys[] = {"subnet_id", "key_name"};
    for (int i = 0; i < 2; i++) {
        const char *v;
        int r = lcm_jx_str(o, keys[i], &v);
        snprintf(field, sizeof field, "%s%s", prefix, keys[i]);
        if (r < 0 || (r == 1 && !lcm_text_ok(v, 256, 0))) {
            lcm_derr_set(err, LCM_DERR_INVALID, field, "%s must be a string", field);
            goto bad;
        }
        if (r == 1)
            cJSON_AddItemToObject(c, keys[i], cJSON_CreateString(v));
    }
    int sgr = lcm_jx_nested(o, "security_group_ids", &sg, &sgtmp);
    int tgr = lcm_jx_nested(o, "tags", &tags, &tagtmp);
    if (sgr < 0 || tgr < 0) {
        lcm_derr_set(err, LCM_DERR_INVALID, sgr < 0 ? "security_group_ids" : "tags",
                     "%s has the wrong type", sgr < 0 ? "security_group_ids" : "tags");
        goto bad;
    }
    if (sg) {
        snprintf(field, sizeof field, "%ssecurity_group_ids", prefix);
        char **v;
        uint16_t n;
        int bad;
        if (lcm_strv_from_json(sg, 32, 256, &v, &n, &bad)) {
            lcm_derr_set(err, LCM_DERR_INVALID, field, "%s must be an array of strings", field);
            goto bad;
        }
        cJSON_AddItemToObject(c, "security_group_ids", lcm_strv_to_json(v, n));
        lcm_strv_free(v, n);
    }
    if (tags) {
        snprintf(field, sizeof field, "%stags", prefix);
        cJSON *tc = tags_copy(tags, field, err);
        if (!tc)
            goto bad;
        cJSON_AddItemToObject(c, "tags", tc);
    }
    cJSON_Delete(sgtmp);
    cJSON_Delete(tagtmp);
    return c;
bad:
    cJSON_Delete(sgtmp);
    cJSON_Delete(tagtmp);
    cJSON_Delete(c);
    return NULL;
}

static int set_json_text(char **dst, const cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    if (!s)
        return -1;
    int rc = lcm_set_str(dst, s);
    cJSON_free(s);
    return rc;
}

static int load_spec(const cJSON *o, struct lcm_template *t, struct lcm_derr *err)
{
    int rc;
    if (!cJSON_IsObject(o))
        return lcm_derr_set(err, LCM_DERR_INVALID, "", "body must be a JSON object");
    if ((rc = lcm_get_text(o, "name", "name", 1, 64, 0, &t->name, err)) ||
        (rc = lcm_get_text(o, "description", "description", 0, 1024, 1, &t->description, err)) ||
        (rc = lcm_get_text(o, "instance_type", "instance_type", 1, 64, 0, &t->instance_type,
                           err)) ||
        (rc = lcm_get_text(o, "ami_name_pattern", "ami_name_pattern", 0, 256, 1,
                           &t->ami_name_pattern, err)) ||
        (rc = lcm_get_text(o, "region", "region", 0, 64, 0, &t->region, err)))
        return rc;
    const cJSON *cap;
    cJSON *tmp;
    int r = lcm_jx_nested(o, "capacity", &cap, &tmp);
    if (r <= 0 || !cJSON_IsObject(cap)) {
        cJSON_Delete(tmp);
        return lcm_derr_set(err, LCM_DERR_INVALID, "capacity",
                            "capacity {cpu_cores, memory_gb, storage_gb, max_nodes} is required");
    }
    rc = 0;
    if ((rc = lcm_get_int(cap, "cpu_cores", "capacity.cpu_cores", 1, 1, 100000,
                          &t->capacity.cpu_cores, err)) ||
        (rc = lcm_get_int(cap, "memory_gb", "capacity.memory_gb", 1, 1, 1 << 24,
                          &t->capacity.memory_gb, err)) ||
        (rc = lcm_get_int(cap, "storage_gb", "capacity.storage_gb", 1, 0, 1 << 24,
                          &t->capacity.storage_gb, err)) ||
        (rc = lcm_get_int(cap, "max_nodes", "capacity.max_nodes", 1, 1, 100000,
                          &t->capacity.nodes, err))) {
        cJSON_Delete(tmp);
        return rc;
    }
    cJSON_Delete(tmp);
    const char *lic;
    r = lcm_jx_str(o, "license_type", &lic);
    t->license_type = LCM_LIC_ENTERPRISE;
    if (r < 0 || (r == 1 && !(t->license_type = (uint8_t)lcm_license_parse(lic))))
        return lcm_derr_set(err, LCM_DERR_INVALID, "license_type",
                            "license_type must be personal, enterprise or evaluation");
    double cost = 0;
    const char *ck = "cost_per_hour";
    r = lcm_jx_num(o, ck, &cost);
    if (r == 0) {
        ck = "cost_per_hour_usd";
        r = lcm_jx_num(o, ck, &cost);
    }
    if (r < 0 || cost < 0 || cost > 1e6)
        return lcm_derr_set(err, LCM_DERR_INVALID, ck, "%s must be a number ≥ 0", ck);
    t->cost_per_hour = cost;
    if ((rc = lcm_get_flag(o, "enabled", "enabled", &t->enabled, err)) < 0)
        return rc;
    cJSON *launch = launch_copy(o, "", err);
    if (!launch)
        return err ? err->code : LCM_DERR_INVALID;
    const char *v;
    cJSON *sg = cJSON_GetObjectItemCaseSensitive(launch, "security_group_ids");
    int bad;
    rc = 0;
    if ((lcm_jx_str(launch, "subnet_id", &v) == 1 && lcm_set_str(&t->subnet_id, v)) ||
        (lcm_jx_str(launch, "key_name", &v) == 1 && lcm_set_str(&t->key_name, v)) ||
        (sg && lcm_strv_from_json(sg, 32, 256, &t->security_group_ids,
                                  &t->n_security_group_ids, &bad)) ||
        (cJSON_GetObjectItemCaseSensitive(launch, "tags") &&
         set_json_text(&t->tags_json, cJSON_GetObjectItemCaseSensitive(launch, "tags"))))
        rc = lcm_derr_set(err, LCM_DERR_NOMEM, "", "out of memory");
    cJSON_Delete(launch);
    if (rc)
        return rc;
    const cJSON *regions;
    r = lcm_jx_nested(o, "regions", &regions, &tmp);
    if (r < 0 || (r > 0 && !cJSON_IsObject(regions))) {
        cJSON_Delete(tmp);
        return lcm_derr_set(err, LCM_DERR_INVALID, "regions",
                            "regions must be an object {<region>: {launch settings}}");
    }
    if (r > 0 && cJSON_GetArraySize(regions) > 0) {
        cJSON *rc_obj = cJSON_CreateObject();
        const cJSON *it;
        cJSON_ArrayForEach(it, regions) {
            char prefix[128];
            snprintf(prefix, sizeof prefix, "regions.%.64s.", it->string);
            cJSON *l = cJSON_IsObject(it) && lcm_text_ok(it->string, 64, 0)
                           ? launch_copy(it, prefix, err)
                           : NULL;
            if (!l) {
                if (!cJSON_IsObject(it) || !lcm_text_ok(it->string, 64, 0))
                    lcm_derr_set(err, LCM_DERR_INVALID, "regions", "bad region entry");
                cJSON_Delete(rc_obj);
                cJSON_Delete(tmp);
                return err ? err->code : LCM_DERR_INVALID;
            }
            cJSON_AddItemToObject(rc_obj, it->string, l);
        }
        rc = set_json_text(&t->regions_json, rc_obj);
        cJSON_Delete(rc_obj);
    }
    cJSON_Delete(tmp);
    return rc ? lcm_derr_set(err, LCM_DERR_NOMEM, "", "out of memory") : 0;
}

int lcm_template_validate(const cJSON *body, struct lcm_template *t, struct lcm_derr *err)
{
    lcm_derr_clear(err);
    return load_spec(body, t, err);
}

static int put_raw_json(cJSON *o, const char *k, const char *text)
{
    cJSON *v = text ? cJSON_Parse(text) : cJSON_CreateNull();
    return (v && cJSON_AddItemToObject(o, k, v)) ? 0 : (cJSON_Delete(v), -1);
}

static cJSON *tpl_json(const struct lcm_template *t, int with_state)
{
    cJSON *o = cJSON_CreateObject(), *cap, *sg;
    if (!o || (with_state && lcm_jx_put_str(o, "id", t->id)) ||
        lcm_jx_put_str(o, "name", t->name) || lcm_jx_put_str(o, "description", t->description) ||
        (with_state && lcm_jx_put_str(o, "status", t->deleted ? "deleted" : "active")) ||
        lcm_jx_put_bool(o, "enabled", t->enabled) ||
        lcm_jx_put_str(o, "instance_type", t->instance_type) ||
        lcm_jx_put_str(o, "ami_name_pattern", t->ami_name_pattern) ||
        lcm_jx_put_str(o, "region", t->region) || !(cap = cJSON_AddObjectToObject(o, "capacity")) ||
        lcm_jx_put_i64(cap, "cpu_cores", t->capacity.cpu_cores) ||
        lcm_jx_put_i64(cap, "memory_gb", t->capacity.memory_gb) ||
        lcm_jx_put_i64(cap, "storage_gb", t->capacity.storage_gb) ||
        lcm_jx_put_i64(cap, "max_nodes", t->capacity.nodes) ||
        lcm_jx_put_str(o, "license_type", lcm_license_name(t->license_type)) ||
        !cJSON_AddNumberToObject(o, "cost_per_hour", t->cost_per_hour) ||
        lcm_jx_put_str(o, "subnet_id", t->subnet_id) ||
        !(sg = lcm_strv_to_json(t->security_group_ids, t->n_security_group_ids)) ||
        !cJSON_AddItemToObject(o, "security_group_ids", sg) ||
        lcm_jx_put_str(o, "key_name", t->key_name) || put_raw_json(o, "tags", t->tags_json) ||
        put_raw_json(o, "regions", t->regions_json) ||
        (with_state && (lcm_jx_put_time(o, "created_at", t->created_at) ||
                        lcm_jx_put_str(o, "created_by", t->created_by) ||
                        lcm_jx_put_time(o, "updated_at", t->updated_at)))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *lcm_template_launch_settings(const struct lcm_template *t, const char *region)
{
    cJSON *o = cJSON_CreateObject(), *sg;
    if (!o || lcm_jx_put_str(o, "subnet_id", t->subnet_id) ||
        !(sg = lcm_strv_to_json(t->security_group_ids, t->n_security_group_ids)) ||
        !cJSON_AddItemToObject(o, "security_group_ids", sg) ||
        lcm_jx_put_str(o, "key_name", t->key_name) || put_raw_json(o, "tags", t->tags_json)) {
        cJSON_Delete(o);
        return NULL;
    }
    cJSON *regions = region && t->regions_json ? cJSON_Parse(t->regions_json) : NULL;
    const cJSON *r = regions ? cJSON_GetObjectItemCaseSensitive(regions, region) : NULL, *it;
    cJSON_ArrayForEach(it, r) {
        cJSON_DeleteItemFromObjectCaseSensitive(o, it->string);
        cJSON_AddItemToObject(o, it->string, cJSON_Duplicate(it, 1));
    }
    cJSON_Delete(regions);
    return o;
}

/* ---- commands ------------------------------------------------------------------------ */

static int spec_event(const cJSON *body, const char *type, const struct lcm_template *cur,
                      const char *by, int64_t now, struct lcm_events *out,
                      struct lcm_derr *err)
{
    lcm_derr_clear(err);
    struct lcm_template *n = lcm_template_new(NULL);
    if (!n)
        return lcm_derr_set(err, LCM_DERR_NOMEM, "", "out of memory");
    int rc = load_spec(body, n, err);
    if (!rc && cur && strcmp(cur->name, n->name))
        rc = lcm_derr_set(err, LCM_DERR_INVALID, "name", "a template's name cannot change");
    if (!rc) {
        cJSON *data = tpl_json(n, 0);
        rc = data ? lcm_events_add(out, type, data, now, by) : LCM_DERR_NOMEM;
        if (rc)
            lcm_derr_set(err, rc, "", "out of memory");
    }
    lcm_template_free(n);
    return rc;
}

int lcm_template_cmd_create(const cJSON *body, const char *by, int64_t now,
                            struct lcm_events *out, struct lcm_derr *err)
{
    return spec_event(body, "template.created", NULL, by, now, out, err);
}

int lcm_template_cmd_update(const struct lcm_template *t, const cJSON *body, const char *by,
                            int64_t now, struct lcm_events *out, struct lcm_derr *err)
{
    if (t->deleted || t->version == 0)
        return lcm_derr_set(err, t->version ? LCM_DERR_CONFLICT : LCM_DERR_NOT_FOUND, "name",
                            "template %s is %s", t->id ? t->id : "?",
                            t->version ? "deleted" : "unknown");
    return spec_event(body, "template.updated", t, by, now, out, err);
}

int lcm_template_cmd_delete(const struct lcm_template *t, const char *reason, const char *by,
                            int64_t now, struct lcm_events *out, struct lcm_derr *err)
{
    lcm_derr_clear(err);
    if (t->deleted || t->version == 0)
        return lcm_derr_set(err, t->version ? LCM_DERR_CONFLICT : LCM_DERR_NOT_FOUND, "name",
                            "template %s is %s", t->id ? t->id : "?",
                            t->version ? "already deleted" : "unknown");
    cJSON *d = cJSON_CreateObject();
    if (!d || lcm_jx_put_str(d, "reason", reason) ||
        lcm_events_add(out, "template.deleted", d, now, by))
        return lcm_derr_set(err, LCM_DERR_NOMEM, "", "out of memory");
    return 0;
}

/* ---- kind ---------------------------------------------------------------------------- */

static void *k_create(const char *id) { return lcm_template_new(id); }
static void k_destroy(void *s) { lcm_template_free(s); }
static uint64_t k_version(const void *s) { return ((const struct lcm_template *)s)->version; }

/* Moves n's spec into t; n gets t's old spec to be freed. */
static void swap_spec(struct lcm_template *t, struct lcm_template *n)
{
    struct lcm_template old = *t;
    char *nid = n->id, *ncb = n->created_by;
    *t = *n;
    t->id = old.id;
    t->version = old.version;
    t->deleted = old.deleted;
    t->created_at = old.created_at;
    t->updated_at = old.updated_at;
    t->created_by = old.created_by;
    *n = old;
    n->id = nid;
    n->created_by = ncb;
}

static int k_apply(void *state, const struct lcm_event *ev, char *err, size_t errlen)
{
    struct lcm_template *t = state;
    int64_t at;
    struct lcm_derr de = {0};
    if (!ev->type || !cJSON_IsObject(ev->data) || lcm_rfc3339_parse(ev->at, &at)) {
        lcm_errf(err, errlen, "event lacks type, object data or a valid time");
        return -1;
    }
    if (ev->version && ev->version != t->version + 1) {
        lcm_errf(err, errlen, "version %llu does not follow %llu",
                 (unsigned long long)ev->version, (unsigned long long)t->version);
        return -1;
    }
    int created = !strcmp(ev->type, "template.created");
    if (created || !strcmp(ev->type, "template.updated")) {
        if (created != (t->version == 0) || t->deleted) {
            lcm_errf(err, errlen, "%s does not fit a template at version %llu%s", ev->type,
                     (unsigned long long)t->version, t->deleted ? " (deleted)" : "");
            return -1;
        }
        struct lcm_template *n = lcm_template_new(NULL);
        if (!n || load_spec(ev->data, n, &de) || (!created && strcmp(n->name, t->name))) {
            lcm_errf(err, errlen, "bad %s data: %s %s", ev->type, de.field, de.message);
            lcm_template_free(n);
            return -1;
        }
        swap_spec(t, n);
        lcm_template_free(n);
        if (created) {
            t->created_at = at;
            if (lcm_set_str(&t->created_by, ev->by)) {
                lcm_errf(err, errlen, "out of memory");
                return -1;
            }
        }
    } else if (!strcmp(ev->type, "template.deleted") && t->version > 0 && !t->deleted) {
        t->deleted = 1;
    } else {
        lcm_errf(err, errlen, "unknown or misplaced event type %s", ev->type);
        return -1;
    }
    t->updated_at = at;
    t->version++;
    return 0;
}

static cJSON *k_to_json(const void *s) { return tpl_json(s, 1); }

/* Gives c, a bit copy of st, its own copies of what they share (see lcm_kind_glue.own);
 * all of a template's pointers are reached from c itself. */
static int k_own(void *cp, const void *st)
{
    struct lcm_template *c = cp;
    (void)st;
    char **strs[] = { &c->id, &c->name, &c->description, &c->instance_type,
                      &c->ami_name_pattern, &c->region, &c->subnet_id, &c->key_name,
                      &c->tags_json, &c->regions_json, &c->created_by };
    int rc = lcm_clone_strs(strs, sizeof strs / sizeof *strs);
    rc |= lcm_clone_strv(&c->security_group_ids, &c->n_security_group_ids);
    return rc;
}

static const struct lcm_kind_glue glue = {
    .size = sizeof(struct lcm_template), .destroy = k_destroy, .own = k_own};

static void *k_clone(const void *st) { return lcm_kind_glue_clone(&glue, st); }

static void k_fields(const void *s, lcm_field_emit_fn emit, void *ud)
{
    lcm_kind_glue_fields(tpl_json(s, 1), NULL, emit, ud);
}

static void k_indexes(const void *s, lcm_index_emit_fn emit, void *ud)
{
    const struct lcm_template *t = s;
    if (t->version == 0)
        return;
    emit(&(struct lcm_index_entry){.key = "lcm:idx:template:all"}, ud);
    emit(&(struct lcm_index_entry){.key = t->deleted ? "lcm:idx:template:status:deleted"
                                                     : "lcm:idx:template:status:active"},
         ud);
}

static int k_from_fields(void *state, const char *const *fields, const char *const *values,
                         size_t n, char *err, size_t errlen)
{
    struct lcm_template *t = state;
    uint64_t version;
    struct lcm_derr de = {0};
    cJSON *o = lcm_jx_from_fields(fields, values, n, NULL, &version);
    struct lcm_template *nt = lcm_template_new(NULL);
    const char *st, *by;
    int rc = -1;
    if (!o || !nt) {
        lcm_errf(err, errlen, "out of memory");
        goto out;
    }
    if (load_spec(o, nt, &de)) {
        lcm_errf(err, errlen, "%s: %s", de.field, de.message);
        goto out;
    }
    if (lcm_jx_str(o, "status", &st) != 1 || (strcmp(st, "active") && strcmp(st, "deleted")) ||
        lcm_jx_time(o, "created_at", &nt->created_at) < 0 ||
        lcm_jx_time(o, "updated_at", &nt->updated_at) < 0 || lcm_jx_str(o, "created_by", &by) < 0 ||
        lcm_set_str(&nt->created_by, by)) {
        lcm_errf(err, errlen, "bad status or timestamps");
        goto out;
    }
    nt->deleted = !strcmp(st, "deleted");
    nt->version = version;
    struct lcm_template tmp = *t;
    char *nid = nt->id;
    *t = *nt;
    t->id = tmp.id;
    *nt = tmp;
    nt->id = nid;
    rc = 0;
out:
    lcm_template_free(nt);
    cJSON_Delete(o);
    return rc;
}

const struct lcm_kind lcm_kind_template = {
    .name = "template",
    .create = k_create,
    .destroy = k_destroy,
    .apply = k_apply,
    .fields = k_fields,
    .indexes = k_indexes,
    .to_json = k_to_json,
    .from_fields = k_from_fields,
    .version = k_version,
    .clone = k_clone,
};
