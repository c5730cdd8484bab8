/* Worker aggregate: state machine (with EC2 observations that may skip states), capacity
 * reservations per session, the port registry, and its lcm_kind vtable. */
#include "worker.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "definition.h"
#include "jsonx.h"
#include "kind_glue.h"
#include "template.h"
#include "version.h"

static const char *const origin_names[] = {"scale_up", "manual", "discovered"};

const char *lcm_worker_origin_name(int o)
{
    return (o >= 0 && o < 3) ? origin_names[o] : "?";
}

int lcm_worker_origin_parse(const char *s)
{
    for (int i = 0; s && i < 3; i++)
        if (!strcmp(s, origin_names[i]))
            return i;
    return -1;
}

struct lcm_worker *lcm_worker_new(const char *id)
{
    struct lcm_worker *w = calloc(1, sizeof *w);
    if (w && id && !(w->id = strdup(id))) {
        free(w);
        return NULL;
    }
    if (w)
        w->desired_status = LCM_WK_RUNNING;
    return w;
}

static void wk_clear(struct lcm_worker *w)
{
    char *id = w->id;
    free(w->name);
    free(w->region);
    free(w->template_name);
    free(w->instance_id);
    free(w->instance_type);
    free(w->ami_id);
    free(w->private_ip);
    free(w->public_ip);
    free(w->endpoint);
    free(w->license.status);
    free(w->cml.version);
    lcm_strv_free(w->cml.node_definitions, w->cml.n_node_definitions);
    for (uint32_t i = 0; i < w->nsessions; i++)
        free(w->sessions[i].session_id);
    free(w->sessions);
    lcm_ports_free(&w->ports);
    free(w->drain.reason);
    lcm_history_free(&w->history);
    free(w->created_by);
    memset(w, 0, sizeof *w);
    w->id = id;
    w->desired_status = LCM_WK_RUNNING;
}

void lcm_worker_free(struct lcm_worker *w)
{
    if (!w)
        return;
    wk_clear(w);
    free(w->id);
    free(w);
}

int32_t lcm_worker_node_limit(const struct lcm_worker *w)
{
    int32_t lim = w->declared.nodes;
    if (w->license.node_limit > 0 && w->license.node_limit < lim)
        lim = w->license.node_limit;
    if (w->license.type == LCM_LIC_PERSONAL && lim > LCM_PERSONAL_NODE_LIMIT)
        lim = LCM_PERSONAL_NODE_LIMIT;
    return lim;
}

const struct lcm_alloc *lcm_worker_find_alloc(const struct lcm_worker *w, const char *sid)
{
    for (uint32_t i = 0; sid && i < w->nsessions; i++)
        if (!strcmp(w->sessions[i].session_id, sid))
            return &w->sessions[i];
    return NULL;
}

int lcm_worker_drain_done(const struct lcm_worker *w, int64_t now)
{
    if (w->status != LCM_WK_DRAINING)
        return 0;
    return w->nsessions == 0 || (w->drain.deadline && now >= w->drain.deadline);
}

/* ---- JSON ---------------------------------------------------------------------------- */

static int put_cap(cJSON *o, const char *k, const struct lcm_capacity *c, const char *nodes_key)
{
    cJSON *x = cJSON_AddObjectToObject(o, k);
    return (!x || lcm_jx_put_i64(x, "cpu_cores", c->cpu_cores) ||
            lcm_jx_put_i64(x, "memory_gb", c->memory_gb) ||
            lcm_jx_put_i64(x, "storage_gb", c->storage_gb) ||
            lcm_jx_put_i64(x, nodes_key, c->nodes)) ? -1 : 0;
}

static int get_cap(const cJSON *o, const char *k, struct lcm_capacity *c, const char *nodes_key)
{
    const cJSON *x;
    cJSON *tmp;
    int64_t v[4];
    int r = k ? lcm_jx_nested(o, k, &x, &tmp) : (x = o, tmp = NULL, 1);
    int ok = r == 1 && lcm_jx_i64(x, "cpu_cores", &v[0]) == 1 &&
             lcm_jx_i64(x, "memory_gb", &v[1]) == 1 && lcm_jx_i64(x, "storage_gb", &v[2]) == 1 &&
             lcm_jx_i64(x, nodes_key, &v[3]) == 1;
    cJSON_Delete(tmp);
    for (int i = 0; ok && i < 4; i++)
        ok = v[i] >= 0 && v[i] <= INT32_MAX;
    if (!ok)
        return -1;
    *c = (struct lcm_capacity){(int32_t)v[0], (int32_t)v[1], (int32_t)v[2], (int32_t)v[3]};
    return 0;
}

static cJSON *wk_json(const struct lcm_worker *w)
{
    const struct lcm_fsm *m = &lcm_fsm_worker;
    cJSON *o = cJSON_CreateObject(), *lic, *cml, *nd, *ss, *ports, *met, *h;
    if (!o || lcm_jx_put_str(o, "id", w->id) || lcm_jx_put_str(o, "name", w->name) ||
        lcm_jx_put_str(o, "region", w->region) || lcm_jx_put_str(o, "template", w->template_name) ||
        lcm_jx_put_str(o, "instance_id", w->instance_id) ||
        lcm_jx_put_str(o, "instance_type", w->instance_type) ||
        lcm_jx_put_str(o, "ami_id", w->ami_id) || lcm_jx_put_str(o, "private_ip", w->private_ip) ||
        lcm_jx_put_str(o, "public_ip", w->public_ip) || lcm_jx_put_str(o, "endpoint", w->endpoint) ||
        lcm_jx_put_str(o, "status", lcm_fsm_name(m, w->status)) ||
        lcm_jx_put_str(o, "desired_status", lcm_fsm_name(m, w->desired_status)) ||
        lcm_jx_put_str(o, "origin", lcm_worker_origin_name(w->origin)) ||
        !(lic = cJSON_AddObjectToObject(o, "license")) ||
        lcm_jx_put_str(lic, "type", lcm_license_name(w->license.type)) ||
        lcm_jx_put_str(lic, "status", w->license.status) ||
        lcm_jx_put_i64(lic, "node_limit", w->license.node_limit) ||
        !(cml = cJSON_AddObjectToObject(o, "cml")) || lcm_jx_put_str(cml, "version", w->cml.version) ||
        lcm_jx_put_bool(cml, "ready", w->cml.ready) ||
        !(nd = lcm_strv_to_json(w->cml.node_definitions, w->cml.n_node_definitions)) ||
        !cJSON_AddItemToObject(cml, "node_definitions", nd) ||
        put_cap(o, "declared", &w->declared, "max_nodes") ||
        put_cap(o, "allocated", &w->allocated, "nodes") ||
        !(ss = cJSON_AddArrayToObject(o, "sessions")))
        goto bad;
    for (uint32_t i = 0; i < w->nsessions; i++) {
        cJSON *a = cJSON_CreateObject();
        if (!a || !cJSON_AddItemToArray(ss, a) ||
            lcm_jx_put_str(a, "session_id", w->sessions[i].session_id) ||
            lcm_jx_put_i64(a, "cpu_cores", w->sessions[i].req.cpu_cores) ||
            lcm_jx_put_i64(a, "memory_gb", w->sessions[i].req.memory_gb) ||
            lcm_jx_put_i64(a, "storage_gb", w->sessions[i].req.storage_gb) ||
            lcm_jx_put_i64(a, "nodes", w->sessions[i].req.nodes))
            goto bad;
    }
    if (!(ports = lcm_ports_to_json(&w->ports)) || !cJSON_AddItemToObject(o, "ports", ports) ||
        lcm_jx_put_i64(ports, "free", lcm_ports_free_count(&w->ports)) ||
        !(met = cJSON_AddObjectToObject(o, "metrics")) ||
        !cJSON_AddNumberToObject(met, "cpu_pct", w->metrics.cpu_pct) ||
        !cJSON_AddNumberToObject(met, "mem_pct", w->metrics.mem_pct) ||
        lcm_jx_put_time(met, "at", w->metrics.at) ||
        lcm_jx_put_time(o, "last_activity_at", w->last_activity_at))
        goto bad;
    if (w->status == LCM_WK_DRAINING) {
        cJSON *dr = cJSON_AddObjectToObject(o, "drain");
        if (!dr || lcm_jx_put_time(dr, "started_at", w->drain.started_at) ||
            lcm_jx_put_str(dr, "reason", w->drain.reason) ||
            lcm_jx_put_time(dr, "deadline", w->drain.deadline))
            goto bad;
    } else if (!cJSON_AddNullToObject(o, "drain")) {
        goto bad;
    }
    if (!(h = lcm_history_to_json(&w->history, m)) || !cJSON_AddItemToObject(o, "status_history", h) ||
        lcm_jx_put_time(o, "created_at", w->created_at) ||
        lcm_jx_put_str(o, "created_by", w->created_by) ||
        lcm_jx_put_time(o, "updated_at", w->updated_at))
        goto bad;
    return o;
bad:
    cJSON_Delete(o);
    return NULL;
}

static int str_field(const cJSON *o, const char *k, char **dst)
{
    const char *v;
    if (lcm_jx_str(o, k, &v) < 0)
        return -1;
    return lcm_set_str(dst, v);
}

static int status_field(const cJSON *o, const char *k, int required)
{
    const char *v;
    int r = lcm_jx_str(o, k, &v);
    if (r == 0)
        return required ? -1 : -2;
    return r < 0 ? -1 : lcm_fsm_parse(&lcm_fsm_worker, v);
}

static int alloc_push(struct lcm_worker *w, const char *sid, const struct lcm_capacity *req)
{
    if (w->nsessions == w->cap_sessions) {
        uint32_t cap = w->cap_sessions ? w->cap_sessions * 2 : 2;
        struct lcm_alloc *v = realloc(w->sessions, cap * sizeof *v);
        if (!v)
            return -1;
        w->sessions = v;
        w->cap_sessions = cap;
    }
    char *s = strdup(sid);
    if (!s)
        return -1;
    w->sessions[w->nsessions++] = (struct lcm_alloc){.session_id = s, .req = *req};
    return 0;
}

/* Full state from the JSON written by wk_json (hash read back). */
static int wk_load(const cJSON *o, struct lcm_worker *w, char *err, size_t errlen)
{
    const struct lcm_fsm *m = &lcm_fsm_worker;
    const char *s;
    const cJSON *x;
    cJSON *tmp = NULL;
    int st = status_field(o, "status", 1), ds = status_field(o, "desired_status", 1);
    if (st < 0 || ds < 0)
        goto bad;
    w->status = (uint8_t)st;
    w->desired_status = (uint8_t)ds;
    if (str_field(o, "name", &w->name) || str_field(o, "region", &w->region) ||
        str_field(o, "template", &w->template_name) || str_field(o, "instance_id", &w->instance_id) ||
        str_field(o, "instance_type", &w->instance_type) || str_field(o, "ami_id", &w->ami_id) ||
        str_field(o, "private_ip", &w->private_ip) || str_field(o, "public_ip", &w->public_ip) ||
        str_field(o, "endpoint", &w->endpoint) || lcm_jx_str(o, "origin", &s) != 1 ||
        lcm_worker_origin_parse(s) < 0)
        goto bad;
    w->origin = (uint8_t)lcm_worker_origin_parse(s);
    int64_t v;
    int b;
    if (lcm_jx_nested(o, "license", &x, &tmp) != 1 || lcm_jx_str(x, "type", &s) != 1 ||
        !(w->license.type = (uint8_t)lcm_license_parse(s)) || str_field(x, "status", &w->license.status) ||
        lcm_jx_i64(x, "node_limit", &v) != 1 || v < 0 || v > INT32_MAX)
        goto bad;
    w->license.node_limit = (int32_t)v;
    cJSON_Delete(tmp);
    tmp = NULL;
    int bad_i;
    if (lcm_jx_nested(o, "cml", &x, &tmp) != 1 || str_field(x, "version", &w->cml.version) ||
        lcm_jx_bool(x, "ready", &b) != 1 ||
        lcm_strv_from_json(cJSON_GetObjectItemCaseSensitive(x, "node_definitions"), 4096, 256,
                           &w->cml.node_definitions, &w->cml.n_node_definitions, &bad_i))
        goto bad;
    w->cml.ready = (uint8_t)b;
    cJSON_Delete(tmp);
    tmp = NULL;
    if (get_cap(o, "declared", &w->declared, "max_nodes") ||
        get_cap(o, "allocated", &w->allocated, "nodes"))
        goto bad;
    if (lcm_jx_nested(o, "sessions", &x, &tmp) != 1 || !cJSON_IsArray(x))
        goto bad;
    const cJSON *it;
    struct lcm_capacity sum = {0};
    cJSON_ArrayForEach(it, x) {
        struct lcm_capacity c;
        if (lcm_jx_str(it, "session_id", &s) != 1 || get_cap(it, NULL, &c, "nodes") ||
            lcm_worker_find_alloc(w, s) || alloc_push(w, s, &c))
            goto bad;
        sum.cpu_cores += c.cpu_cores;
        sum.memory_gb += c.memory_gb;
        sum.storage_gb += c.storage_gb;
        sum.nodes += c.nodes;
    }
    cJSON_Delete(tmp);
    tmp = NULL;
    if (memcmp(&sum, &w->allocated, sizeof sum))
        goto bad;   /* allocated must be the sum of the reservations */
    struct lcm_derr de;
    if (lcm_jx_nested(o, "ports", &x, &tmp) != 1 || lcm_ports_from_json(&w->ports, x, &de))
        goto bad;
    cJSON_Delete(tmp);
    tmp = NULL;
    if (lcm_jx_nested(o, "metrics", &x, &tmp) != 1 ||
        lcm_jx_num(x, "cpu_pct", &w->metrics.cpu_pct) != 1 ||
        lcm_jx_num(x, "mem_pct", &w->metrics.mem_pct) != 1 ||
        lcm_jx_time(x, "at", &w->metrics.at) < 0 ||
        lcm_jx_time(o, "last_activity_at", &w->last_activity_at) < 0)
        goto bad;
    cJSON_Delete(tmp);
    tmp = NULL;
    int r = lcm_jx_nested(o, "drain", &x, &tmp);
    if (r < 0 || (r == 1 && (lcm_jx_time(x, "started_at", &w->drain.started_at) < 0 ||
                             str_field(x, "reason", &w->drain.reason) ||
                             lcm_jx_time(x, "deadline", &w->drain.deadline) < 0)))
        goto bad;
    cJSON_Delete(tmp);
    tmp = NULL;
    if (lcm_jx_nested(o, "status_history", &x, &tmp) < 0 ||
        lcm_history_from_json(&w->history, x, m) ||
        lcm_jx_time(o, "created_at", &w->created_at) < 0 ||
        lcm_jx_time(o, "updated_at", &w->updated_at) < 0 || str_field(o, "created_by", &w->created_by))
        goto bad;
    cJSON_Delete(tmp);
    return 0;
bad:
    cJSON_Delete(tmp);
    lcm_errf(err, errlen, "worker state does not parse");
    return -1;
}

/* ---- commands ------------------------------------------------------------------------ */

static int emit(struct lcm_events *out, const char *type, cJSON *data, int64_t now,
                const char *by, struct lcm_derr *err)
{
    if (!data || lcm_events_add(out, type, data, now, by))
        return lcm_derr_set(err, LCM_DERR_NOMEM, "", "out of memory");
    return 0;
}

int lcm_worker_cmd_create(const struct lcm_worker_create *c, const struct lcm_template *tpl,
                          const char *by, int64_t now, struct lcm_events *out,
                          struct lcm_derr *err)
{
    lcm_derr_clear(err);
    if (!lcm_text_ok(c->id, 128, 0))
        return lcm_derr_set(err, LCM_DERR_INVALID, "id", "id must be 1-128 printable characters");
    if (!tpl || tpl->version == 0)
        return lcm_derr_set(err, LCM_DERR_NOT_FOUND, "template", "unknown template");
    if (tpl->deleted || !tpl->enabled)
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "template", "template %s is %s", tpl->name,
                            tpl->deleted ? "deleted" : "disabled");
    const char *region = c->region && *c->region ? c->region : tpl->region;
    if (!lcm_text_ok(region, 64, 0))
        return lcm_derr_set(err, LCM_DERR_INVALID, "region", "region is required");
    if (c->name && *c->name && !lcm_text_ok(c->name, 128, 1))
        return lcm_derr_set(err, LCM_DERR_INVALID, "name", "name must be printable, ≤128");
    if (c->origin < 0 || c->origin > LCM_ORIGIN_DISCOVERED)
        return lcm_derr_set(err, LCM_DERR_INVALID, "origin", "unknown origin");
    uint16_t lo = c->ports_lo ? c->ports_lo : LCM_PORTS_DEFAULT_LO;
    uint16_t hi = c->ports_hi ? c->ports_hi : LCM_PORTS_DEFAULT_HI;
    if (lo > hi)
        return lcm_derr_set(err, LCM_DERR_INVALID, "ports_range", "port range %u-%u is empty",
                            lo, hi);
    cJSON *d = cJSON_CreateObject(), *r;
    if (!d || lcm_jx_put_str(d, "name", c->name && *c->name ? c->name : c->id) ||
        lcm_jx_put_str(d, "region", region) || lcm_jx_put_str(d, "template", tpl->name) ||
        lcm_jx_put_str(d, "instance_type", tpl->instance_type) ||
        lcm_jx_put_str(d, "origin", lcm_worker_origin_name(c->origin)) ||
        put_cap(d, "declared", &tpl->capacity, "max_nodes") ||
        lcm_jx_put_str(d, "license_type", lcm_license_name(tpl->license_type)) ||
        lcm_jx_put_str(d, "desired_status", "running") ||
        !(r = cJSON_AddArrayToObject(d, "ports_range")) ||
        !cJSON_AddItemToArray(r, cJSON_CreateNumber(lo)) ||
        !cJSON_AddItemToArray(r, cJSON_CreateNumber(hi))) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "worker.created", d, now, by, err);
}

static int check_reason(const char *reason, struct lcm_derr *err)
{
    if (reason && *reason && !lcm_text_ok(reason, 512, 1))
        return lcm_derr_set(err, LCM_DERR_INVALID, "reason", "reason too long or not printable");
    return 0;
}

static int transition(const struct lcm_worker *w, int to, const char *reason, int64_t deadline,
                      const char *by, int64_t now, struct lcm_events *out, struct lcm_derr *err)
{
    const struct lcm_fsm *m = &lcm_fsm_worker;
    lcm_derr_clear(err);
    if (w->version == 0)
        return lcm_derr_set(err, LCM_DERR_NOT_FOUND, "id", "unknown worker");
    if (to < 0 || to >= LCM_WK__COUNT)
        return lcm_derr_set(err, LCM_DERR_INVALID, "status", "unknown status");
    if (!lcm_fsm_allowed(m, w->status, to))
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "status", "worker cannot go from %s to %s",
                            lcm_fsm_name(m, w->status), lcm_fsm_name(m, to));
    if (check_reason(reason, err))
        return err->code;
    cJSON *d = lcm_events_transition_data(m, w->status, reason);
    if (d && to == LCM_WK_DRAINING && deadline && lcm_jx_put_time(d, "deadline", deadline)) {
        cJSON_Delete(d);
        d = NULL;
    }
    char type[48];
    snprintf(type, sizeof type, "worker.%s", lcm_fsm_name(m, to));
    return emit(out, type, d, now, by, err);
}

int lcm_worker_cmd_transition(const struct lcm_worker *w, enum lcm_worker_status to,
                              const char *reason, const char *by, int64_t now,
                              struct lcm_events *out, struct lcm_derr *err)
{
    return transition(w, (int)to, reason, 0, by, now, out, err);
}

int lcm_worker_cmd_drain(const struct lcm_worker *w, const char *reason, int64_t deadline,
                         const char *by, int64_t now, struct lcm_events *out,
                         struct lcm_derr *err)
{
    if (deadline && deadline < now)
        return lcm_derr_set(err, LCM_DERR_INVALID, "deadline", "drain deadline is in the past");
    return transition(w, LCM_WK_DRAINING, reason && *reason ? reason : "drain", deadline, by,
                      now, out, err);
}

int lcm_worker_cmd_cancel_drain(const struct lcm_worker *w, const char *by, int64_t now,
                                struct lcm_events *out, struct lcm_derr *err)
{
    if (w->version && w->status != LCM_WK_DRAINING)
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "status", "worker is %s, not draining",
                            lcm_fsm_name(&lcm_fsm_worker, w->status));
    return transition(w, LCM_WK_RUNNING, "drain cancelled", 0, by, now, out, err);
}

int lcm_worker_cmd_set_desired(const struct lcm_worker *w, enum lcm_worker_status desired,
                               const char *by, int64_t now, struct lcm_events *out,
                               struct lcm_derr *err)
{
    lcm_derr_clear(err);
    if (w->version == 0)
        return lcm_derr_set(err, LCM_DERR_NOT_FOUND, "id", "unknown worker");
    if (desired != LCM_WK_RUNNING && desired != LCM_WK_STOPPED && desired != LCM_WK_TERMINATED)
        return lcm_derr_set(err, LCM_DERR_INVALID, "desired_status",
                            "desired_status must be running, stopped or terminated");
    if (w->desired_status == LCM_WK_TERMINATED && desired != LCM_WK_TERMINATED)
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "desired_status",
                            "worker is being terminated");
    if (w->desired_status == desired)
        return 0;
    cJSON *d = cJSON_CreateObject();
    if (d && lcm_jx_put_str(d, "desired_status", lcm_fsm_name(&lcm_fsm_worker, (int)desired))) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "worker.desired", d, now, by, err);
}

static int differs(const char *cur, const char *v)
{
    return v && *v && (!cur || strcmp(cur, v));
}

int lcm_worker_cmd_observe(const struct lcm_worker *w, const struct lcm_worker_observation *ob,
                           const char *by, int64_t now, struct lcm_events *out,
                           struct lcm_derr *err)
{
    lcm_derr_clear(err);
    if (w->version == 0)
        return lcm_derr_set(err, LCM_DERR_NOT_FOUND, "id", "unknown worker");
    if (ob->status >= LCM_WK__COUNT)
        return lcm_derr_set(err, LCM_DERR_INVALID, "status", "unknown status");
    const char *keys[] = {"instance_id", "instance_type", "ami_id", "private_ip", "public_ip",
                          "endpoint"};
    const char *vals[] = {ob->instance_id, ob->instance_type, ob->ami_id, ob->private_ip,
                          ob->public_ip, ob->endpoint};
    const char *curs[] = {w->instance_id, w->instance_type, w->ami_id, w->private_ip,
                          w->public_ip, w->endpoint};
    cJSON *d = cJSON_CreateObject();
    int changed = 0;
    if (!d)
        return lcm_derr_set(err, LCM_DERR_NOMEM, "", "out of memory");
    if (ob->status >= 0 && ob->status != w->status) {
        changed = 1;
        lcm_jx_put_str(d, "status", lcm_fsm_name(&lcm_fsm_worker, ob->status));
        lcm_jx_put_str(d, "from", lcm_fsm_name(&lcm_fsm_worker, w->status));
    }
    for (int i = 0; i < 6; i++) {
        if (vals[i] && *vals[i] && !lcm_text_ok(vals[i], 512, 0)) {
            cJSON_Delete(d);
            return lcm_derr_set(err, LCM_DERR_INVALID, keys[i], "%s is not printable", keys[i]);
        }
        if (differs(curs[i], vals[i])) {
            changed = 1;
            lcm_jx_put_str(d, keys[i], vals[i]);
        }
    }
    if (!changed) {
        cJSON_Delete(d);
        return 0;
    }
    return emit(out, "worker.observed", d, now, by, err);
}

int lcm_worker_cmd_set_cml(const struct lcm_worker *w, const char *version, int ready,
                           const char *const *nds, size_t n, const char *by, int64_t now,
                           struct lcm_events *out, struct lcm_derr *err)
{
    lcm_derr_clear(err);
    if (w->version == 0)
        return lcm_derr_set(err, LCM_DERR_NOT_FOUND, "id", "unknown worker");
    if (version && *version && !lcm_version_valid(version))
        return lcm_derr_set(err, LCM_DERR_INVALID, "cml.version", "not a version: %.64s",
                            version);
    cJSON *d = cJSON_CreateObject(), *a = NULL;
    if (!d || lcm_jx_put_str(d, "version", version) || lcm_jx_put_bool(d, "ready", ready) ||
        !(a = cJSON_AddArrayToObject(d, "node_definitions"))) {
        cJSON_Delete(d);
        return lcm_derr_set(err, LCM_DERR_NOMEM, "", "out of memory");
    }
    for (size_t i = 0; nds && i < n; i++) {
        if (!lcm_text_ok(nds[i], 256, 1)) {
            cJSON_Delete(d);
            return lcm_derr_set(err, LCM_DERR_INVALID, "cml.node_definitions",
                                "node definition %zu is not printable", i);
        }
        cJSON_AddItemToArray(a, cJSON_CreateString(nds[i]));
    }
    return emit(out, "worker.cml", d, now, by, err);
}

int lcm_worker_cmd_set_license(const struct lcm_worker *w, int type, const char *status,
                               int32_t node_limit, const char *by, int64_t now,
                               struct lcm_events *out, struct lcm_derr *err)
{
    lcm_derr_clear(err);
    if (w->version == 0)
        return lcm_derr_set(err, LCM_DERR_NOT_FOUND, "id", "unknown worker");
    if (type != LCM_LIC_PERSONAL && type != LCM_LIC_ENTERPRISE && type != LCM_LIC_EVALUATION)
        return lcm_derr_set(err, LCM_DERR_INVALID, "license.type", "unknown licence type");
    if (node_limit < 0)
        return lcm_derr_set(err, LCM_DERR_INVALID, "license.node_limit", "negative node limit");
    if (status && *status && !lcm_text_ok(status, 64, 1))
        return lcm_derr_set(err, LCM_DERR_INVALID, "license.status", "not printable");
    cJSON *d = cJSON_CreateObject();
    if (d && (lcm_jx_put_str(d, "type", lcm_license_name(type)) ||
              lcm_jx_put_str(d, "status", status) || lcm_jx_put_i64(d, "node_limit", node_limit))) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "worker.license", d, now, by, err);
}

int lcm_worker_cmd_metrics(const struct lcm_worker *w, double cpu_pct, double mem_pct,
                           int64_t last_activity_at, const char *by, int64_t now,
                           struct lcm_events *out, struct lcm_derr *err)
{
    lcm_derr_clear(err);
    if (w->version == 0)
        return lcm_derr_set(err, LCM_DERR_NOT_FOUND, "id", "unknown worker");
    if (!isfinite(cpu_pct) || !isfinite(mem_pct) || cpu_pct < 0 || cpu_pct > 100 ||
        mem_pct < 0 || mem_pct > 100)
        return lcm_derr_set(err, LCM_DERR_INVALID, "metrics", "percentages must be in [0, 100]");
    cJSON *d = cJSON_CreateObject();
    if (d && (!cJSON_AddNumberToObject(d, "cpu_pct", cpu_pct) ||
              !cJSON_AddNumberToObject(d, "mem_pct", mem_pct) ||
              lcm_jx_put_time(d, "last_activity_at", last_activity_at))) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "worker.metrics", d, now, by, err);
}

/* Shared by the allocate command and apply, so a refused reservation can never be folded. */
static int can_allocate(const struct lcm_worker *w, const char *sid,
                        const struct lcm_capacity *req, struct lcm_derr *err)
{
    if (!lcm_text_ok(sid, 128, 0))
        return lcm_derr_set(err, LCM_DERR_INVALID, "session_id", "session id required");
    if (!lcm_capacity_valid(req))
        return lcm_derr_set(err, LCM_DERR_INVALID, "requirements", "negative requirement");
    if (w->status != LCM_WK_RUNNING)
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "status",
                            "worker is %s; only running workers take sessions",
                            lcm_fsm_name(&lcm_fsm_worker, w->status));
    if (w->license.type == LCM_LIC_PERSONAL && w->nsessions >= 1)
        return lcm_derr_set(err, LCM_DERR_EXHAUSTED, "session_id",
                            "a personal-licence worker holds at most one session");
    enum lcm_capacity_short s =
        lcm_capacity_check(&w->declared, &w->allocated, req, lcm_worker_node_limit(w));
    if (s != LCM_CAP_FITS)
        return lcm_derr_set(err, LCM_DERR_EXHAUSTED, lcm_capacity_short_name(s),
                            "not enough %s on worker", lcm_capacity_short_name(s));
    return 0;
}

int lcm_worker_cmd_allocate(const struct lcm_worker *w, const char *session_id,
                            const struct lcm_capacity *req, const char *by, int64_t now,
                            struct lcm_events *out, struct lcm_derr *err)
{
    lcm_derr_clear(err);
    if (w->version == 0)
        return lcm_derr_set(err, LCM_DERR_NOT_FOUND, "id", "unknown worker");
    const struct lcm_alloc *a = lcm_worker_find_alloc(w, session_id);
    if (a) {
        if (!memcmp(&a->req, req, sizeof *req))
            return 0;
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "session_id",
                            "session already holds a different reservation");
    }
    int rc = can_allocate(w, session_id, req, err);
    if (rc)
        return rc;
    cJSON *d = cJSON_CreateObject();
    if (d && (lcm_jx_put_str(d, "session_id", session_id) ||
              lcm_jx_put_i64(d, "cpu_cores", req->cpu_cores) ||
              lcm_jx_put_i64(d, "memory_gb", req->memory_gb) ||
              lcm_jx_put_i64(d, "storage_gb", req->storage_gb) ||
              lcm_jx_put_i64(d, "nodes", req->nodes))) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "worker.allocated", d, now, by, err);
}

int lcm_worker_cmd_release(const struct lcm_worker *w, const char *session_id, const char *by,
                           int64_t now, struct lcm_events *out, struct lcm_derr *err)
{
    lcm_derr_clear(err);
    if (w->version == 0)
        return lcm_derr_set(err, LCM_DERR_NOT_FOUND, "id", "unknown worker");
    if (!lcm_worker_find_alloc(w, session_id))
        return 0;
    cJSON *d = cJSON_CreateObject();
    if (d && lcm_jx_put_str(d, "session_id", session_id)) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "worker.released", d, now, by, err);
}

int lcm_worker_cmd_ports_allocate(const struct lcm_worker *w, const char *lab_id, size_t n,
                                  uint16_t *ports_out, const char *by, int64_t now,
                                  struct lcm_events *out, struct lcm_derr *err)
{
    lcm_derr_clear(err);
    if (w->version == 0)
        return lcm_derr_set(err, LCM_DERR_NOT_FOUND, "id", "unknown worker");
    if (!lcm_text_ok(lab_id, 128, 0))
        return lcm_derr_set(err, LCM_DERR_INVALID, "lab_id", "lab id required");
    if (n == 0 || n > LCM_PORTS_MAX_PER_LAB)
        return lcm_derr_set(err, LCM_DERR_INVALID, "ports", "between 1 and %d ports per lab",
                            LCM_PORTS_MAX_PER_LAB);
    if (w->status == LCM_WK_TERMINATING || w->status == LCM_WK_TERMINATED)
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "status", "worker is %s",
                            lcm_fsm_name(&lcm_fsm_worker, w->status));
    const struct lcm_port_lease *l = lcm_ports_lease(&w->ports, lab_id);
    if (l) {
        if (l->n != n)
            return lcm_derr_set(err, LCM_DERR_CONFLICT, "ports",
                                "lab %s already holds %u ports", lab_id, l->n);
        memcpy(ports_out, l->ports, n * sizeof *ports_out);
        return 0;
    }
    int rc = lcm_ports_pick(&w->ports, n, ports_out, err);
    if (rc)
        return rc;
    cJSON *d = cJSON_CreateObject(), *a = NULL;
    if (!d || lcm_jx_put_str(d, "lab_id", lab_id) || !(a = cJSON_AddArrayToObject(d, "ports"))) {
        cJSON_Delete(d);
        d = NULL;
    }
    for (size_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(ports_out[i]));
    return emit(out, "worker.ports_allocated", d, now, by, err);
}

int lcm_worker_cmd_ports_release(const struct lcm_worker *w, const char *lab_id,
                                 const char *by, int64_t now, struct lcm_events *out,
                                 struct lcm_derr *err)
{
    lcm_derr_clear(err);
    if (w->version == 0)
        return lcm_derr_set(err, LCM_DERR_NOT_FOUND, "id", "unknown worker");
    if (!lcm_ports_lease(&w->ports, lab_id))
        return 0;
    cJSON *d = cJSON_CreateObject();
    if (d && lcm_jx_put_str(d, "lab_id", lab_id)) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "worker.ports_released", d, now, by, err);
}

/* ---- apply --------------------------------------------------------------------------- */

static int apply_created(struct lcm_worker *w, const cJSON *d, const char *by, int64_t at)
{
    struct lcm_worker n = {0};
    const char *s;
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(d, "ports_range");
    int o = lcm_jx_str(d, "origin", &s) == 1 ? lcm_worker_origin_parse(s) : -1;
    int ds = status_field(d, "desired_status", 1);
    int lic = lcm_jx_str(d, "license_type", &s) == 1 ? lcm_license_parse(s) : 0;
    if (o < 0 || ds < 0 || !lic || !cJSON_IsArray(r) || cJSON_GetArraySize(r) != 2 ||
        !cJSON_IsNumber(cJSON_GetArrayItem(r, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(r, 1)))
        return -1;
    double lo = cJSON_GetArrayItem(r, 0)->valuedouble, hi = cJSON_GetArrayItem(r, 1)->valuedouble;
    if (lo < 1 || hi > 65535 || lo > hi || lo != floor(lo) || hi != floor(hi))
        return -1;
    if (lcm_jx_str(d, "name", &s) != 1 || str_field(d, "name", &n.name) ||
        lcm_jx_str(d, "region", &s) != 1 || str_field(d, "region", &n.region) ||
        str_field(d, "template", &n.template_name) ||
        str_field(d, "instance_type", &n.instance_type) ||
        get_cap(d, "declared", &n.declared, "max_nodes") ||
        lcm_ports_init(&n.ports, (uint16_t)lo, (uint16_t)hi) || !(n.created_by = strdup(by ? by : "system"))) {
        n.id = NULL;
        wk_clear(&n);
        return -1;
    }
    n.origin = (uint8_t)o;
    n.desired_status = (uint8_t)ds;
    n.license.type = (uint8_t)lic;
    n.status = LCM_WK_PENDING;
    n.created_at = at;
    n.id = w->id;
    *w = n;
    return 0;
}

static int apply_observed(struct lcm_worker *w, const struct lcm_event *ev, int64_t at)
{
    const cJSON *d = ev->data;
    const char *keys[] = {"instance_id", "instance_type", "ami_id", "private_ip", "public_ip",
                          "endpoint"};
    char **dsts[] = {&w->instance_id, &w->instance_type, &w->ami_id, &w->private_ip,
                     &w->public_ip, &w->endpoint};
    const char *v;
    int st = status_field(d, "status", 0);
    if (st == -1)
        return -1;
    for (int i = 0; i < 6; i++)
        if (lcm_jx_str(d, keys[i], &v) < 0)
            return -1;
    if (st >= 0 && st != w->status) {
        char reason[96];
        snprintf(reason, sizeof reason, "observed%s",
                 lcm_fsm_allowed(&lcm_fsm_worker, w->status, st) ? "" : " (outside the table)");
        if (lcm_history_push(&w->history, w->status, st, at, ev->by, reason))
            return -1;
        w->status = (uint8_t)st;
    }
    for (int i = 0; i < 6; i++)
        if (lcm_jx_str(d, keys[i], &v) == 1 && lcm_set_str(dsts[i], v))
            return -1;
    return 0;
}

static int apply_cml(struct lcm_worker *w, const cJSON *d)
{
    const char *v;
    int ready, bad;
    char **nd = NULL;
    uint16_t n = 0;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(d, "node_definitions");
    if (lcm_jx_str(d, "version", &v) < 0 || (v && !lcm_version_valid(v)) ||
        lcm_jx_bool(d, "ready", &ready) < 0 ||
        (a && lcm_strv_from_json(a, 4096, 256, &nd, &n, &bad)))
        return -1;
    if (lcm_jx_str(d, "version", &v) == 1 && lcm_set_str(&w->cml.version, v)) {
        lcm_strv_free(nd, n);
        return -1;
    }
    if (lcm_jx_bool(d, "ready", &ready) == 1)
        w->cml.ready = (uint8_t)ready;
    if (a) {
        lcm_strv_free(w->cml.node_definitions, w->cml.n_node_definitions);
        w->cml.node_definitions = nd;
        w->cml.n_node_definitions = n;
    }
    return 0;
}

static int apply_license(struct lcm_worker *w, const cJSON *d)
{
    const char *t, *s;
    int64_t lim = 0;
    int lic = 0, rl;
    if (lcm_jx_str(d, "type", &t) < 0 || (t && !(lic = lcm_license_parse(t))) ||
        lcm_jx_str(d, "status", &s) < 0 || (rl = lcm_jx_i64(d, "node_limit", &lim)) < 0 ||
        lim < 0 || lim > INT32_MAX)
        return -1;
    if (s && lcm_set_str(&w->license.status, s))
        return -1;
    if (lic)
        w->license.type = (uint8_t)lic;
    if (rl == 1)
        w->license.node_limit = (int32_t)lim;
    return 0;
}

static int apply_metrics(struct lcm_worker *w, const cJSON *d, int64_t at)
{
    double c, m;
    int64_t la;
    if (lcm_jx_num(d, "cpu_pct", &c) != 1 || lcm_jx_num(d, "mem_pct", &m) != 1 ||
        lcm_jx_time(d, "last_activity_at", &la) < 0)
        return -1;
    w->metrics.cpu_pct = c;
    w->metrics.mem_pct = m;
    w->metrics.at = at;
    if (la)
        w->last_activity_at = la;
    return 0;
}

static int apply_alloc(struct lcm_worker *w, const cJSON *d)
{
    const char *sid;
    struct lcm_capacity req;
    if (lcm_jx_str(d, "session_id", &sid) != 1 || get_cap(d, NULL, &req, "nodes") ||
        lcm_worker_find_alloc(w, sid) || can_allocate(w, sid, &req, NULL))
        return -1;
    if (alloc_push(w, sid, &req))
        return -1;
    lcm_capacity_add(&w->allocated, &w->declared, &req, lcm_worker_node_limit(w));
    return 0;
}

static int apply_release(struct lcm_worker *w, const cJSON *d)
{
    const char *sid;
    if (lcm_jx_str(d, "session_id", &sid) != 1)
        return -1;
    for (uint32_t i = 0; i < w->nsessions; i++) {
        if (strcmp(w->sessions[i].session_id, sid))
            continue;
        if (lcm_capacity_sub(&w->allocated, &w->sessions[i].req))
            return -1;
        free(w->sessions[i].session_id);
        memmove(&w->sessions[i], &w->sessions[i + 1],
                (w->nsessions - i - 1) * sizeof *w->sessions);
        w->nsessions--;
        return 0;
    }
    return -1;
}

static int apply_ports(struct lcm_worker *w, const cJSON *d, int take)
{
    const char *lab;
    if (lcm_jx_str(d, "lab_id", &lab) != 1)
        return -1;
    if (!take)
        return lcm_ports_release(&w->ports, lab) > 0 ? 0 : -1;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(d, "ports"), *it;
    uint16_t v[LCM_PORTS_MAX_PER_LAB];
    int n = 0;
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) < 1 ||
        cJSON_GetArraySize(a) > LCM_PORTS_MAX_PER_LAB)
        return -1;
    cJSON_ArrayForEach(it, a) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 1 || it->valuedouble > 65535 ||
            it->valuedouble != floor(it->valuedouble))
            return -1;
        v[n++] = (uint16_t)it->valuedouble;
    }
    return lcm_ports_take(&w->ports, lab, v, (size_t)n, NULL) ? -1 : 0;
}

static int k_apply(void *state, const struct lcm_event *ev, char *err, size_t errlen)
{
    struct lcm_worker *w = state;
    const struct lcm_fsm *m = &lcm_fsm_worker;
    int64_t at;
    if (lcm_events_check(ev, w->version, &at, err, errlen))
        return -1;
    if (strncmp(ev->type, "worker.", 7))
        goto unknown;
    const char *t = ev->type + 7;
    int rc;
    if (!strcmp(t, "created")) {
        if (w->version != 0)
            goto misplaced;
        rc = apply_created(w, ev->data, ev->by, at);
    } else if (w->version == 0) {
        goto misplaced;
    } else if (!strcmp(t, "observed")) {
        rc = apply_observed(w, ev, at);
    } else if (!strcmp(t, "cml")) {
        rc = apply_cml(w, ev->data);
    } else if (!strcmp(t, "license")) {
        rc = apply_license(w, ev->data);
    } else if (!strcmp(t, "metrics")) {
        rc = apply_metrics(w, ev->data, at);
    } else if (!strcmp(t, "desired")) {
        int ds = status_field(ev->data, "desired_status", 1);
        rc = (ds == LCM_WK_RUNNING || ds == LCM_WK_STOPPED || ds == LCM_WK_TERMINATED) ? 0 : -1;
        if (!rc)
            w->desired_status = (uint8_t)ds;
    } else if (!strcmp(t, "allocated")) {
        rc = apply_alloc(w, ev->data);
    } else if (!strcmp(t, "released")) {
        rc = apply_release(w, ev->data);
    } else if (!strcmp(t, "ports_allocated") || !strcmp(t, "ports_released")) {
        rc = apply_ports(w, ev->data, t[6] == 'a');
    } else {
        int to = lcm_fsm_parse(m, t);
        if (to < 0)
            goto unknown;
        int64_t deadline = 0;
        const char *reason;
        if (lcm_jx_time(ev->data, "deadline", &deadline) < 0)
            goto bad;
        int from = w->status;
        if (lcm_history_apply_transition(m, &w->status, &w->history, to, ev, at, err, errlen))
            return -1;
        if (to == LCM_WK_DRAINING) {
            lcm_jx_str(ev->data, "reason", &reason);
            w->drain.started_at = at;
            w->drain.deadline = deadline;
            lcm_set_str(&w->drain.reason, reason);
        } else if (from == LCM_WK_DRAINING) {
            w->drain.started_at = w->drain.deadline = 0;
            lcm_set_str(&w->drain.reason, NULL);
        }
        rc = 0;
    }
    if (rc)
        goto bad;
    w->updated_at = at;
    w->version++;
    return 0;
bad:
    lcm_errf(err, errlen, "%s does not fit worker %s (status %s)", ev->type, w->id ? w->id : "?",
             lcm_fsm_name(m, w->status));
    return -1;
misplaced:
    lcm_errf(err, errlen, "%s at version %llu", ev->type, (unsigned long long)w->version);
    return -1;
unknown:
    lcm_errf(err, errlen, "unknown event type %s", ev->type);
    return -1;
}

/* ---- kind ---------------------------------------------------------------------------- */

static void *k_create(const char *id) { return lcm_worker_new(id); }
static void k_destroy(void *s) { lcm_worker_free(s); }
static uint64_t k_version(const void *s) { return ((const struct lcm_worker *)s)->version; }
static cJSON *k_to_json(const void *s) { return wk_json(s); }

/* Gives c, a bit copy of w, its own copies of what they share (see lcm_kind_glue.own). */
static int k_own(void *cp, const void *st)
{
    struct lcm_worker *c = cp;
    const struct lcm_worker *w = st;
    char **strs[] = { &c->id, &c->name, &c->region, &c->template_name, &c->instance_id,
                      &c->instance_type, &c->ami_id, &c->private_ip, &c->public_ip,
                      &c->endpoint, &c->license.status, &c->cml.version, &c->drain.reason,
                      &c->created_by };
    int rc = lcm_clone_strs(strs, sizeof strs / sizeof *strs);
    rc |= lcm_clone_strv(&c->cml.node_definitions, &c->cml.n_node_definitions);
    if (w->sessions) {
        c->sessions = malloc((w->cap_sessions ? w->cap_sessions : 1) * sizeof *c->sessions);
        if (!c->sessions)
            c->nsessions = c->cap_sessions = 0;
        for (uint32_t i = 0; c->sessions && i < w->nsessions; i++) {
            c->sessions[i] = w->sessions[i];
            rc |= lcm_clone_str(&c->sessions[i].session_id);
        }
        rc |= !c->sessions;
    }
    rc |= lcm_ports_clone(&c->ports, &w->ports) != 0;
    rc |= lcm_history_clone(&c->history, &w->history);
    return rc;
}

static void k_clear(void *s) { wk_clear(s); }
static int k_load(const cJSON *o, void *s, char *err, size_t errlen)
{
    return wk_load(o, s, err, errlen);
}

static const struct lcm_kind_glue glue = {
    .size = sizeof(struct lcm_worker), .id_off = offsetof(struct lcm_worker, id),
    .version_off = offsetof(struct lcm_worker, version), .create = k_create,
    .destroy = k_destroy, .clear = k_clear, .load = k_load, .own = k_own};

static void *k_clone(const void *st) { return lcm_kind_glue_clone(&glue, st); }

static void k_fields(const void *s, lcm_field_emit_fn emitf, void *ud)
{
    lcm_kind_glue_fields(wk_json(s), NULL, emitf, ud);
}

static void k_indexes(const void *s, lcm_index_emit_fn emitf, void *ud)
{
    const struct lcm_worker *w = s;
    char key[320];
    if (w->version == 0)
        return;
    emitf(&(struct lcm_index_entry){.key = "lcm:idx:worker:all"}, ud);
    snprintf(key, sizeof key, "lcm:idx:worker:status:%s", lcm_fsm_name(&lcm_fsm_worker, w->status));
    emitf(&(struct lcm_index_entry){.key = key}, ud);
    if (w->region) {
        snprintf(key, sizeof key, "lcm:idx:worker:region:%s", w->region);
        emitf(&(struct lcm_index_entry){.key = key}, ud);
    }
    if (w->template_name) {
        snprintf(key, sizeof key, "lcm:idx:worker:template:%s", w->template_name);
        emitf(&(struct lcm_index_entry){.key = key}, ud);
    }
    if (w->instance_id) {
        snprintf(key, sizeof key, "lcm:idx:worker:instance:%s", w->instance_id);
        emitf(&(struct lcm_index_entry){.key = key, .unique = 1}, ud);
    }
}

static int k_from_fields(void *state, const char *const *fields, const char *const *values,
                         size_t n, char *err, size_t errlen)
{
    return lcm_kind_glue_from_fields(&glue, state, fields, values, n, err, errlen);
}

const struct lcm_kind lcm_kind_worker = {
    .name = "worker",
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
