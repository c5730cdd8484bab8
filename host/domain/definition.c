/* Definition aggregate: validation of authored definitions, the canonical spec JSON kept in
 * events and in the hash, its state machine, and its lcm_kind vtable. */
#include "definition.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fsm.h"
#include "jsonx.h"
#include "kind_glue.h"
#include "sha256.h"
#include "topology.h"
#include "version.h"

#define TXT 256
#define MAX_TOPOLOGY (4u << 20)

struct lcm_definition *lcm_definition_new(const char *id)
{
    struct lcm_definition *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    if (id && !(d->id = strdup(id))) {
        free(d);
        return NULL;
    }
    d->max_duration_minutes = LCM_DEF_DEFAULT_DURATION;
    d->boot_lead_minutes = LCM_DEF_DEFAULT_BOOT_LEAD;
    return d;
}

static void ports_free(struct lcm_port_spec *p, size_t n)
{
    for (size_t i = 0; p && i < n; i++) {
        free(p[i].name);
        free(p[i].node_label);
    }
    free(p);
}

/* Frees everything but id. */
static void def_clear(struct lcm_definition *d)
{
    free(d->name);
    free(d->semver);
    free(d->fqn);
    free(d->description);
    free(d->topology);
    free(d->topology_uri);
    free(d->topology_sha256);
    free(d->req.cml_version_min);
    free(d->req.cml_version_max);
    lcm_strv_free(d->req.node_definitions, d->req.n_node_definitions);
    ports_free(d->ports, d->nports);
    lcm_strv_free(d->user_visible_devices, d->n_user_visible_devices);
    free(d->grading_ruleset);
    lcm_history_free(&d->history);
    free(d->created_by);
    char *id = d->id;
    memset(d, 0, sizeof *d);
    d->id = id;
    d->max_duration_minutes = LCM_DEF_DEFAULT_DURATION;
    d->boot_lead_minutes = LCM_DEF_DEFAULT_BOOT_LEAD;
}

void lcm_definition_free(struct lcm_definition *d)
{
    if (!d)
        return;
    def_clear(d);
    free(d->id);
    free(d);
}

/* ---- validation ---------------------------------------------------------------------- */

static int cml_version(const cJSON *o, const char *k, const char *field, char **dst,
                       struct lcm_derr *err)
{
    const char *v;
    int r = lcm_jx_str(o, k, &v);
    if (r == 0)
        return 0;
    if (r < 0 || !lcm_version_valid(v))
        return lcm_derr_set(err, LCM_DERR_INVALID, field,
                            "%s must be a version like 2.9.1", field);
    return lcm_set_str(dst, v) ? lcm_derr_set(err, LCM_DERR_NOMEM, field, "out of memory") : 0;
}

static int load_requirements(const cJSON *body, struct lcm_definition *d, struct lcm_derr *err)
{
    const cJSON *rr;
    cJSON *tmp = NULL;
    int rc = 0, r = lcm_jx_nested(body, "resource_requirements", &rr, &tmp);
    if (r <= 0 || !cJSON_IsObject(rr)) {
        cJSON_Delete(tmp);
        return lcm_derr_set(err, LCM_DERR_INVALID, "resource_requirements",
                            "resource_requirements must be an object");
    }
    struct lcm_requirements *q = &d->req;
    if ((rc = lcm_get_int(rr, "cpu_cores", "resource_requirements.cpu_cores", 1, 1, 4096,
                      &q->need.cpu_cores, err)) ||
        (rc = lcm_get_int(rr, "memory_gb", "resource_requirements.memory_gb", 1, 1, 65536,
                      &q->need.memory_gb, err)) ||
        (rc = lcm_get_int(rr, "storage_gb", "resource_requirements.storage_gb", 0, 0, 1 << 20,
                      &q->need.storage_gb, err)) ||
        (rc = lcm_get_flag(rr, "nested_virt", "resource_requirements.nested_virt",
                       &q->nested_virt, err)) < 0 ||
        (rc = cml_version(rr, "cml_version_min", "resource_requirements.cml_version_min",
                          &q->cml_version_min, err)) ||
        (rc = cml_version(rr, "cml_version_max", "resource_requirements.cml_version_max",
                          &q->cml_version_max, err)) ||
        (rc = lcm_get_strv(rr, "node_definitions", "resource_requirements.node_definitions",
                       &q->node_definitions, &q->n_node_definitions, err)) < 0)
        goto out;
    rc = 0;
    /* upstream seeds: ami_requirements[0] {cml_version_min, node_definitions_required} */
    const cJSON *ami = cJSON_GetObjectItemCaseSensitive(rr, "ami_requirements");
    if (cJSON_IsArray(ami) && cJSON_GetArraySize(ami) > 0) {
        const cJSON *a0 = cJSON_GetArrayItem(ami, 0);
        if (!q->cml_version_min &&
            (rc = cml_version(a0, "cml_version_min",
                              "resource_requirements.ami_requirements[0].cml_version_min",
                              &q->cml_version_min, err)))
            goto out;
        if (!q->cml_version_max &&
            (rc = cml_version(a0, "cml_version_max",
                              "resource_requirements.ami_requirements[0].cml_version_max",
                              &q->cml_version_max, err)))
            goto out;
        if (!q->n_node_definitions &&
            (rc = lcm_get_strv(a0, "node_definitions_required",
                           "resource_requirements.ami_requirements[0].node_definitions_required",
                           &q->node_definitions, &q->n_node_definitions, err)) < 0)
            goto out;
        rc = 0;
    }
    if (q->cml_version_min && q->cml_version_max &&
        lcm_version_cmp(q->cml_version_min, q->cml_version_max) > 0)
        rc = lcm_derr_set(err, LCM_DERR_INVALID, "resource_requirements.cml_version_max",
                          "cml_version_max %s is below cml_version_min %s",
                          q->cml_version_max, q->cml_version_min);
out:
    cJSON_Delete(tmp);
    return rc;
}

static int add_port(struct lcm_port_spec **v, uint16_t *n, const char *name, const char *label,
                    int proto)
{
    if (*n >= 256)
        return -2;
    for (uint16_t i = 0; i < *n; i++)
        if (!strcmp((*v)[i].name, name))
            return -3;
    struct lcm_port_spec *nv = realloc(*v, (size_t)(*n + 1) * sizeof *nv);
    if (!nv)
        return -1;
    *v = nv;
    struct lcm_port_spec *p = &nv[*n];
    p->name = strdup(name);
    p->node_label = lcm_dup(label);
    p->protocol = (uint8_t)proto;
    if (!p->name || (label && *label && !p->node_label)) {
        free(p->name);
        free(p->node_label);
        return -1;
    }
    (*n)++;
    return 0;
}

static int load_ports(const cJSON *body, struct lcm_definition *d, int *given,
                      struct lcm_derr *err)
{
    const cJSON *pt;
    cJSON *tmp = NULL;
    int r = lcm_jx_nested(body, "port_template", &pt, &tmp), rc = 0;
    *given = r != 0;
    if (r == 0)
        return 0;
    if (r > 0 && cJSON_IsObject(pt))     /* upstream: {"ports": [...]} */
        pt = cJSON_GetObjectItemCaseSensitive(pt, "ports");
    if (r < 0 || !cJSON_IsArray(pt)) {
        cJSON_Delete(tmp);
        return lcm_derr_set(err, LCM_DERR_INVALID, "port_template",
                            "port_template must be an array of {name, protocol}");
    }
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, pt) {
        char field[64];
        const char *name, *proto, *label;
        snprintf(field, sizeof field, "port_template[%d].name", i);
        if (lcm_jx_str(it, "name", &name) != 1 || !lcm_text_ok(name, 128, 0)) {
            rc = lcm_derr_set(err, LCM_DERR_INVALID, field, "%s is required (no spaces)",
                              field);
            break;
        }
        /* the name's suffix is the protocol of the tag; "protocol" may say tcp (upstream) */
        const char *us = strrchr(name, '_');
        int p = us ? lcm_proto_parse(us + 1) : -1;
        snprintf(field, sizeof field, "port_template[%d].protocol", i);
        int pr = lcm_jx_str(it, "protocol", &proto);
        if (pr < 0 || (pr == 1 && lcm_proto_parse(proto) < 0)) {
            rc = lcm_derr_set(err, LCM_DERR_INVALID, field,
                              "%s must be one of serial, vnc, ssh, telnet, tcp, http, https",
                              field);
            break;
        }
        if (p < 0)
            p = pr == 1 ? lcm_proto_parse(proto) : -1;
        if (p < 0) {
            rc = lcm_derr_set(err, LCM_DERR_INVALID, field, "%s is required", field);
            break;
        }
        char lbuf[129] = "";
        if (lcm_jx_str(it, "node_label", &label) != 1) {
            size_t ln = us ? (size_t)(us - name) : strlen(name);
            if (ln > 128)
                ln = 128;
            memcpy(lbuf, name, ln);
            lbuf[ln] = '\0';
            label = lbuf;
        }
        int a = add_port(&d->ports, &d->nports, name, label, p);
        if (a) {
            snprintf(field, sizeof field, "port_template[%d].name", i);
            rc = lcm_derr_set(err, a == -1 ? LCM_DERR_NOMEM : LCM_DERR_INVALID, field,
                              a == -3 ? "duplicate port name %s" : "too many ports (%s)", name);
            break;
        }
        i++;
    }
    cJSON_Delete(tmp);
    return rc;
}

/* Fills what the topology implies and the body did not say. */
static int derive_from_topology(struct lcm_definition *d, int ports_given, int nodes_given,
                                struct lcm_derr *err)
{
    struct lcm_topology t;
    int rc = lcm_topology_parse(d->topology, &t, err);
    if (rc)
        return rc;
    if (!nodes_given)
        d->req.need.nodes = t.nnodes;
    for (int i = 0; !ports_given && i < t.nnodes; i++) {
        for (int k = 0; k < t.nodes[i].ntags; k++) {
            char proto[16];
            const char *tag = t.nodes[i].tags[k], *colon = strchr(tag, ':');
            if (!colon || (size_t)(colon - tag) >= sizeof proto)
                continue;
            memcpy(proto, tag, (size_t)(colon - tag));
            proto[colon - tag] = '\0';
            int p = lcm_proto_parse(proto);
            if (p < 0)
                continue;
            char name[160];
            lcm_port_name(t.nodes[i].label, p, name, sizeof name);
            int a = add_port(&d->ports, &d->nports, name, t.nodes[i].label, p);
            if (a == -1) {
                rc = lcm_derr_set(err, LCM_DERR_NOMEM, "topology", "out of memory");
                goto out;
            }
            /* -3: a node with two tags of one protocol keeps the first */
        }
    }
    if (!d->req.n_node_definitions) {
        for (int i = 0; i < t.nnodes; i++) {
            const char *nd = t.nodes[i].node_definition;
            int dup = !*nd;
            for (uint16_t k = 0; !dup && k < d->req.n_node_definitions; k++)
                dup = !strcmp(d->req.node_definitions[k], nd);
            if (dup)
                continue;
            char **v = realloc(d->req.node_definitions,
                               (size_t)(d->req.n_node_definitions + 1) * sizeof *v);
            if (!v || !(v[d->req.n_node_definitions] = strdup(nd))) {
                if (v)
                    d->req.node_definitions = v;
                rc = lcm_derr_set(err, LCM_DERR_NOMEM, "topology", "out of memory");
                goto out;
            }
            d->req.node_definitions = v;
            d->req.n_node_definitions++;
        }
    }
out:
    lcm_topology_free(&t);
    return rc;
}

/* Loads the spec part. api=1: an authored body (aliases, derivations, required checks);
 * api=0: canonical JSON (event data or a hash read back), same checks. */
static int load_spec(const cJSON *o, struct lcm_definition *d, int api, struct lcm_derr *err)
{
    int rc;
    if (!cJSON_IsObject(o))
        return lcm_derr_set(err, LCM_DERR_INVALID, "", "body must be a JSON object");
    if ((rc = lcm_get_text(o, "name", "name", 1, 128, 1, &d->name, err)) ||
        (rc = lcm_get_text(o, "version", "version", 1, 64, 0, &d->semver, err)) ||
        (rc = lcm_get_text(o, "form_qualified_name", "form_qualified_name", 0, TXT, 1, &d->fqn,
                       err)) ||
        (rc = lcm_get_text(o, "description", "description", 0, 4096, 1, &d->description, err)) ||
        (rc = lcm_get_text(o, "topology_uri", "topology_uri", 0, 2048, 0, &d->topology_uri,
                       err)) ||
        (rc = lcm_get_text(o, "topology_sha256", "topology_sha256", 0, 64, 0, &d->topology_sha256,
                       err)) ||
        (rc = lcm_get_text(o, "grading_ruleset", "grading_ruleset", 0, 2048, 1,
                       &d->grading_ruleset, err)))
        return rc;
    struct lcm_semver sv;
    if (lcm_semver_parse(d->semver, &sv))
        return lcm_derr_set(err, LCM_DERR_INVALID, "version",
                            "version must be a semantic version like 1.0.0");
    const char *topo;
    int r = lcm_jx_str(o, "topology", &topo);
    if (r < 0 || (r == 1 && strlen(topo) > MAX_TOPOLOGY))
        return lcm_derr_set(err, LCM_DERR_INVALID, "topology",
                            "topology must be the CML lab YAML as a string (at most 4 MiB)");
    if (r == 1 && lcm_set_str(&d->topology, topo))
        return lcm_derr_set(err, LCM_DERR_NOMEM, "topology", "out of memory");
    if (d->topology_sha256) {
        int ok = strlen(d->topology_sha256) == 64;
        for (const char *p = d->topology_sha256; ok && *p; p++)
            ok = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f');
        if (!ok)
            return lcm_derr_set(err, LCM_DERR_INVALID, "topology_sha256",
                                "topology_sha256 must be 64 lowercase hex digits");
    }
    if ((rc = load_requirements(o, d, err)))
        return rc;
    int nodes_given = 0;
    int32_t nc = 0;
    if ((rc = lcm_get_int(o, "node_count", "node_count", 0, 1, 100000, &nc, err)))
        return rc;
    int64_t tmpi;
    nodes_given = lcm_jx_i64(o, "node_count", &tmpi) == 1;
    if (nodes_given)
        d->req.need.nodes = nc;

    const cJSON *aff;
    cJSON *atmp;
    r = lcm_jx_nested(o, "license_affinity", &aff, &atmp);
    if (r < 0 || (r > 0 && !cJSON_IsArray(aff))) {
        cJSON_Delete(atmp);
        return lcm_derr_set(err, LCM_DERR_INVALID, "license_affinity",
                            "license_affinity must be an array");
    }
    int i = 0;
    const cJSON *it;
    const cJSON *affl = r > 0 ? aff : NULL;
    cJSON_ArrayForEach(it, affl) {
        int lic = cJSON_IsString(it) ? lcm_license_parse(it->valuestring) : 0;
        if (!lic) {
            cJSON_Delete(atmp);
            char field[48];
            snprintf(field, sizeof field, "license_affinity[%d]", i);
            return lcm_derr_set(err, LCM_DERR_INVALID, field,
                                "%s must be personal, enterprise or evaluation", field);
        }
        d->license_affinity |= (uint8_t)lic;
        i++;
    }
    cJSON_Delete(atmp);

    int ports_given;
    if ((rc = load_ports(o, d, &ports_given, err)))
        return rc;
    if (lcm_get_strv(o, "user_visible_devices", "user_visible_devices", &d->user_visible_devices,
                 &d->n_user_visible_devices, err) < 0)
        return err ? err->code : LCM_DERR_INVALID;
    uint8_t lds = d->fqn != NULL;
    if ((rc = lcm_get_flag(o, "lds_enabled", "lds_enabled", &lds, err)) < 0 ||
        (rc = lcm_get_flag(o, "grading_enabled", "grading_enabled", &d->grading_enabled, err)) <
            0 ||
        (rc = lcm_get_flag(o, "lab_reuse_enabled", "lab_reuse_enabled", &d->lab_reuse_enabled,
                       err)) < 0)
        return rc;
    d->lds_enabled = lds;
    if (d->lds_enabled && !d->fqn)
        return lcm_derr_set(err, LCM_DERR_INVALID, "form_qualified_name",
                            "form_qualified_name is required when lds_enabled");
    if ((rc = lcm_get_int(o, "max_duration_minutes", "max_duration_minutes", 0, 1, 7 * 24 * 60,
                      &d->max_duration_minutes, err)) ||
        (rc = lcm_get_int(o, "boot_lead_minutes", "boot_lead_minutes", 0, 0, 24 * 60,
                      &d->boot_lead_minutes, err)) ||
        (rc = lcm_get_int(o, "warm_pool_depth", "warm_pool_depth", 0, 0, 1000,
                      &d->warm_pool_depth, err)))
        return rc;
    if (api && d->topology) {
        if ((rc = derive_from_topology(d, ports_given, nodes_given, err)))
            return rc;
        char hex[65];
        lcm_sha256_hex(d->topology, strlen(d->topology), hex);
        if (lcm_set_str(&d->topology_sha256, hex))
            return lcm_derr_set(err, LCM_DERR_NOMEM, "topology", "out of memory");
    }
    if (d->req.need.nodes < 1)
        return lcm_derr_set(err, LCM_DERR_INVALID, "node_count",
                            "node_count is required (or a topology to count nodes from)");
    return 0;
}

int lcm_definition_validate(const cJSON *body, struct lcm_definition *d, struct lcm_derr *err)
{
    lcm_derr_clear(err);
    return load_spec(body, d, 1, err);
}

/* ---- JSON ---------------------------------------------------------------------------- */

static int put_spec(cJSON *o, const struct lcm_definition *d)
{
    cJSON *rr = cJSON_CreateObject(), *nd, *aff, *pt, *uvd;
    if (!rr || !cJSON_AddItemToObject(o, "resource_requirements", rr))
        return (cJSON_Delete(rr), -1);
    if (lcm_jx_put_i64(rr, "cpu_cores", d->req.need.cpu_cores) ||
        lcm_jx_put_i64(rr, "memory_gb", d->req.need.memory_gb) ||
        lcm_jx_put_i64(rr, "storage_gb", d->req.need.storage_gb) ||
        lcm_jx_put_bool(rr, "nested_virt", d->req.nested_virt) ||
        lcm_jx_put_str(rr, "cml_version_min", d->req.cml_version_min) ||
        lcm_jx_put_str(rr, "cml_version_max", d->req.cml_version_max) ||
        !(nd = lcm_strv_to_json(d->req.node_definitions, d->req.n_node_definitions)) ||
        !cJSON_AddItemToObject(rr, "node_definitions", nd))
        return -1;
    if (lcm_jx_put_i64(o, "node_count", d->req.need.nodes))
        return -1;
    if (!(aff = cJSON_AddArrayToObject(o, "license_affinity")))
        return -1;
    for (int b = 1; b <= LCM_LIC_EVALUATION; b <<= 1)
        if (d->license_affinity & b)
            cJSON_AddItemToArray(aff, cJSON_CreateString(lcm_license_name(b)));
    if (!(pt = cJSON_AddArrayToObject(o, "port_template")))
        return -1;
    for (uint16_t i = 0; i < d->nports; i++) {
        cJSON *p = cJSON_CreateObject();
        if (!p || !cJSON_AddItemToArray(pt, p) || lcm_jx_put_str(p, "name", d->ports[i].name) ||
            lcm_jx_put_str(p, "protocol", lcm_proto_name(d->ports[i].protocol)) ||
            lcm_jx_put_str(p, "node_label", d->ports[i].node_label))
            return -1;
    }
    if (!(uvd = lcm_strv_to_json(d->user_visible_devices, d->n_user_visible_devices)) ||
        !cJSON_AddItemToObject(o, "user_visible_devices", uvd))
        return -1;
    if (lcm_jx_put_bool(o, "lds_enabled", d->lds_enabled) ||
        lcm_jx_put_bool(o, "grading_enabled", d->grading_enabled) ||
        lcm_jx_put_str(o, "grading_ruleset", d->grading_ruleset) ||
        lcm_jx_put_i64(o, "max_duration_minutes", d->max_duration_minutes) ||
        lcm_jx_put_i64(o, "boot_lead_minutes", d->boot_lead_minutes) ||
        lcm_jx_put_bool(o, "lab_reuse_enabled", d->lab_reuse_enabled) ||
        lcm_jx_put_i64(o, "warm_pool_depth", d->warm_pool_depth))
        return -1;
    return 0;
}

static cJSON *spec_json(const struct lcm_definition *d, int with_state)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || (with_state && lcm_jx_put_str(o, "id", d->id)) ||
        lcm_jx_put_str(o, "name", d->name) || lcm_jx_put_str(o, "version", d->semver) ||
        lcm_jx_put_str(o, "form_qualified_name", d->fqn) ||
        lcm_jx_put_str(o, "description", d->description) ||
        (with_state && lcm_jx_put_str(o, "status", lcm_fsm_name(&lcm_fsm_definition, d->status))) ||
        lcm_jx_put_str(o, "topology", d->topology) ||
        lcm_jx_put_str(o, "topology_uri", d->topology_uri) ||
        lcm_jx_put_str(o, "topology_sha256", d->topology_sha256) || put_spec(o, d))
        goto bad;
    if (with_state) {
        cJSON *h = lcm_history_to_json(&d->history, &lcm_fsm_definition);
        if (!h || !cJSON_AddItemToObject(o, "status_history", h) ||
            lcm_jx_put_time(o, "created_at", d->created_at) ||
            lcm_jx_put_str(o, "created_by", d->created_by) ||
            lcm_jx_put_time(o, "updated_at", d->updated_at))
            goto bad;
    }
    return o;
bad:
    cJSON_Delete(o);
    return NULL;
}

cJSON *lcm_definition_spec_json(const struct lcm_definition *d)
{
    return spec_json(d, 0);
}

/* ---- commands ------------------------------------------------------------------------ */

static int transition_event(const struct lcm_fsm *m, int from, int to, const char *reason,
                            cJSON **data)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || lcm_jx_put_str(o, "from", lcm_fsm_name(m, from)) ||
        lcm_jx_put_str(o, "reason", reason)) {
        cJSON_Delete(o);
        return -1;
    }
    *data = o;
    return 0;
}

int lcm_definition_cmd_create(const char *id, const cJSON *body, const char *by, int64_t now,
                              struct lcm_events *out, struct lcm_derr *err)
{
    lcm_derr_clear(err);
    if (!lcm_text_ok(id, 128, 0))
        return lcm_derr_set(err, LCM_DERR_INVALID, "id", "id must be 1-128 printable characters");
    struct lcm_definition *d = lcm_definition_new(id);
    if (!d)
        return lcm_derr_set(err, LCM_DERR_NOMEM, "", "out of memory");
    int rc = load_spec(body, d, 1, err);
    if (!rc) {
        cJSON *data = spec_json(d, 0);
        char type[64];
        snprintf(type, sizeof type, "definition.created");
        rc = data ? lcm_events_add(out, type, data, now, by) : LCM_DERR_NOMEM;
        if (rc)
            lcm_derr_set(err, rc, "", "out of memory");
    }
    lcm_definition_free(d);
    return rc;
}

int lcm_definition_cmd_update(const struct lcm_definition *d, const cJSON *body,
                              const char *by, int64_t now, struct lcm_events *out,
                              struct lcm_derr *err)
{
    lcm_derr_clear(err);
    if (d->status != LCM_DEF_PENDING_SYNC && d->status != LCM_DEF_INACTIVE)
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "status",
                            "a %s definition cannot be edited; create a new version",
                            lcm_fsm_name(&lcm_fsm_definition, d->status));
    struct lcm_definition *n = lcm_definition_new(d->id);
    if (!n)
        return lcm_derr_set(err, LCM_DERR_NOMEM, "", "out of memory");
    int rc = load_spec(body, n, 1, err);
    if (!rc && d->name && strcmp(n->name, d->name))
        rc = lcm_derr_set(err, LCM_DERR_INVALID, "name",
                          "the name of a definition cannot change");
    if (!rc) {
        cJSON *data = spec_json(n, 0);
        rc = data ? lcm_events_add(out, "definition.updated", data, now, by) : LCM_DERR_NOMEM;
        if (rc)
            lcm_derr_set(err, rc, "", "out of memory");
    }
    lcm_definition_free(n);
    return rc;
}

int lcm_definition_cmd_transition(const struct lcm_definition *d,
                                  enum lcm_definition_status to, const char *reason,
                                  const char *by, int64_t now, struct lcm_events *out,
                                  struct lcm_derr *err)
{
    lcm_derr_clear(err);
    const struct lcm_fsm *m = &lcm_fsm_definition;
    if ((int)to < 0 || to >= LCM_DEF__COUNT)
        return lcm_derr_set(err, LCM_DERR_INVALID, "status", "unknown status");
    if (!lcm_fsm_allowed(m, d->status, (int)to))
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "status",
                            "definition cannot go from %s to %s", lcm_fsm_name(m, d->status),
                            lcm_fsm_name(m, (int)to));
    if (reason && !lcm_text_ok(reason, 512, 1))
        return lcm_derr_set(err, LCM_DERR_INVALID, "reason", "reason too long or not printable");
    cJSON *data;
    char type[64];
    snprintf(type, sizeof type, "definition.%s", lcm_fsm_name(m, (int)to));
    if (transition_event(m, d->status, (int)to, reason, &data) ||
        lcm_events_add(out, type, data, now, by))
        return lcm_derr_set(err, LCM_DERR_NOMEM, "", "out of memory");
    return 0;
}

int lcm_definition_supersedes(const struct lcm_definition *a, const struct lcm_definition *b)
{
    int c;
    if (!a->name || !b->name || strcmp(a->name, b->name))
        return 0;
    return lcm_semver_cmp_str(a->semver, b->semver, &c) == 0 && c > 0;
}

int lcm_definition_bookable(const struct lcm_definition *d)
{
    return d->status == LCM_DEF_ACTIVE;
}

/* ---- kind vtable --------------------------------------------------------------------- */

static const char *const def_rename[] = {"version", "semver", NULL};

static void *k_create(const char *id)
{
    return lcm_definition_new(id);
}

static void k_destroy(void *s)
{
    lcm_definition_free(s);
}

static uint64_t k_version(const void *s)
{
    return ((const struct lcm_definition *)s)->version;
}

/* Swaps the spec part of n into d: d keeps its id, version, status, history and
 * timestamps; n receives d's old spec (and keeps its own id/history/created_by) to be freed. */
static void take_spec(struct lcm_definition *d, struct lcm_definition *n)
{
    struct lcm_definition old = *d;
    char *nid = n->id, *ncb = n->created_by;
    struct lcm_history nh = n->history;
    *d = *n;
    d->id = old.id;
    d->version = old.version;
    d->status = old.status;
    d->history = old.history;
    d->created_at = old.created_at;
    d->updated_at = old.updated_at;
    d->created_by = old.created_by;
    *n = old;
    n->id = nid;
    n->history = nh;
    n->created_by = ncb;
}

static int k_apply(void *state, const struct lcm_event *ev, char *err, size_t errlen)
{
    struct lcm_definition *d = state;
    const struct lcm_fsm *m = &lcm_fsm_definition;
    int64_t at;
    struct lcm_derr de = {0};
    if (!ev->type || !ev->data || !cJSON_IsObject(ev->data) || lcm_rfc3339_parse(ev->at, &at)) {
        lcm_errf(err, errlen, "event lacks type, object data or a valid time");
        return -1;
    }
    if (ev->version && ev->version != d->version + 1) {
        lcm_errf(err, errlen, "version %llu does not follow %llu",
                 (unsigned long long)ev->version, (unsigned long long)d->version);
        return -1;
    }
    if (!strncmp(ev->type, "definition.", 11)) {
        const char *t = ev->type + 11;
        if (!strcmp(t, "created") || !strcmp(t, "updated")) {
            int created = t[0] == 'c';
            if (created != (d->version == 0)) {
                lcm_errf(err, errlen, "%s on a definition at version %llu", ev->type,
                         (unsigned long long)d->version);
                return -1;
            }
            if (!created && d->status != LCM_DEF_PENDING_SYNC && d->status != LCM_DEF_INACTIVE) {
                lcm_errf(err, errlen, "definition.updated while %s", lcm_fsm_name(m, d->status));
                return -1;
            }
            struct lcm_definition *n = lcm_definition_new(NULL);
            if (!n || load_spec(ev->data, n, 0, &de)) {
                lcm_errf(err, errlen, "bad %s data: %s: %s", ev->type, de.field, de.message);
                lcm_definition_free(n);
                return -1;
            }
            if (!created && strcmp(n->name, d->name)) {
                lcm_errf(err, errlen, "definition.updated changes the name");
                lcm_definition_free(n);
                return -1;
            }
            take_spec(d, n);
            if (created) {
                d->created_at = at;
                d->status = LCM_DEF_PENDING_SYNC;
                if (lcm_set_str(&d->created_by, ev->by)) {
                    lcm_definition_free(n);
                    lcm_errf(err, errlen, "out of memory");
                    return -1;
                }
            }
            lcm_definition_free(n);
            d->updated_at = at;
            d->version++;
            return 0;
        }
        int to = lcm_fsm_parse(m, t);
        if (to >= 0 && d->version > 0) {
            const char *from, *reason;
            if (lcm_jx_str(ev->data, "from", &from) != 1 ||
                lcm_fsm_parse(m, from) != d->status || lcm_jx_str(ev->data, "reason", &reason) < 0) {
                lcm_errf(err, errlen, "%s: from does not match status %s", ev->type,
                         lcm_fsm_name(m, d->status));
                return -1;
            }
            if (!lcm_fsm_allowed(m, d->status, to)) {
                lcm_errf(err, errlen, "definition cannot go from %s to %s",
                         lcm_fsm_name(m, d->status), t);
                return -1;
            }
            if (lcm_history_push(&d->history, d->status, to, at, ev->by, reason)) {
                lcm_errf(err, errlen, "out of memory");
                return -1;
            }
            d->status = (uint8_t)to;
            d->updated_at = at;
            d->version++;
            return 0;
        }
    }
    lcm_errf(err, errlen, "unknown or misplaced event type %s", ev->type);
    return -1;
}

static cJSON *k_to_json(const void *s)
{
    return spec_json(s, 1);
}

/* Gives c, a bit copy of d, its own copies of what they share (see lcm_kind_glue.own). */
static int k_own(void *cp, const void *st)
{
    struct lcm_definition *c = cp;
    const struct lcm_definition *d = st;
    char **strs[] = { &c->id, &c->name, &c->semver, &c->fqn, &c->description, &c->topology,
                      &c->topology_uri, &c->topology_sha256, &c->req.cml_version_min,
                      &c->req.cml_version_max, &c->grading_ruleset, &c->created_by };
    int rc = lcm_clone_strs(strs, sizeof strs / sizeof *strs);
    rc |= lcm_clone_strv(&c->req.node_definitions, &c->req.n_node_definitions);
    rc |= lcm_clone_strv(&c->user_visible_devices, &c->n_user_visible_devices);
    if (d->ports) {
        c->ports = malloc((d->nports ? d->nports : 1) * sizeof *c->ports);
        if (!c->ports)
            c->nports = 0;
        for (uint16_t i = 0; c->ports && i < d->nports; i++) {
            c->ports[i] = d->ports[i];
            rc |= lcm_clone_str(&c->ports[i].name);
            rc |= lcm_clone_str(&c->ports[i].node_label);
        }
        rc |= !c->ports;
    }
    rc |= lcm_history_clone(&c->history, &d->history);
    return rc;
}

static const struct lcm_kind_glue glue = {
    .size = sizeof(struct lcm_definition), .destroy = k_destroy, .own = k_own};

static void *k_clone(const void *st) { return lcm_kind_glue_clone(&glue, st); }

static void k_fields(const void *s, lcm_field_emit_fn emit, void *ud)
{
    lcm_kind_glue_fields(spec_json(s, 1), def_rename, emit, ud);
}

static void k_indexes(const void *s, lcm_index_emit_fn emit, void *ud)
{
    const struct lcm_definition *d = s;
    char key[320];
    if (d->version == 0)
        return;
    emit(&(struct lcm_index_entry){.key = "lcm:idx:definition:all"}, ud);
    snprintf(key, sizeof key, "lcm:idx:definition:status:%s",
             lcm_fsm_name(&lcm_fsm_definition, d->status));
    emit(&(struct lcm_index_entry){.key = key}, ud);
    if (d->name) {
        snprintf(key, sizeof key, "lcm:idx:definition:name:%s", d->name);
        emit(&(struct lcm_index_entry){.key = key}, ud);
    }
}

static int k_from_fields(void *state, const char *const *fields, const char *const *values,
                         size_t n, char *err, size_t errlen)
{
    struct lcm_definition *d = state;
    uint64_t version;
    struct lcm_derr de = {0};
    cJSON *o = lcm_jx_from_fields(fields, values, n, def_rename, &version);
    struct lcm_definition *nd = lcm_definition_new(d->id);
    const char *st, *by;
    int rc = -1;
    if (err && errlen)
        err[0] = '\0';
    if (!o || !nd)
        goto out;
    if (load_spec(o, nd, 0, &de)) {
        lcm_errf(err, errlen, "%s: %s", de.field, de.message);
        goto out;
    }
    int status = lcm_jx_str(o, "status", &st) == 1 ? lcm_fsm_parse(&lcm_fsm_definition, st) : -1;
    const cJSON *h;
    cJSON *htmp = NULL;
    if (status < 0 || lcm_jx_nested(o, "status_history", &h, &htmp) < 0 ||
        lcm_history_from_json(&nd->history, h, &lcm_fsm_definition) ||
        lcm_jx_time(o, "created_at", &nd->created_at) < 0 ||
        lcm_jx_time(o, "updated_at", &nd->updated_at) < 0 ||
        lcm_jx_str(o, "created_by", &by) < 0 || lcm_set_str(&nd->created_by, by)) {
        cJSON_Delete(htmp);
        lcm_errf(err, errlen, "bad status, status_history or timestamps");
        goto out;
    }
    cJSON_Delete(htmp);
    nd->status = (uint8_t)status;
    nd->version = version;
    /* swap everything into d */
    struct lcm_definition tmp = *d;
    char *nid = nd->id;
    *d = *nd;
    d->id = tmp.id;
    *nd = tmp;
    nd->id = nid;
    rc = 0;
out:
    if (rc && err && errlen && !err[0])
        lcm_errf(err, errlen, "out of memory");
    lcm_definition_free(nd);
    cJSON_Delete(o);
    return rc;
}

const struct lcm_kind lcm_kind_definition = {
    .name = "definition",
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
