/* Lab record aggregate: CML state mapping, commanded transitions, port ownership, session
 * binding with a bounded run history, and its lcm_kind vtable. */
#include "lab.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "jsonx.h"
#include "kind_glue.h"

static const char *const action_names[] = {"start", "stop", "wipe", "delete"};

const char *lcm_lab_action_name(int a)
{
    return (a >= 0 && a < LCM_LAB_ACT__COUNT) ? action_names[a] : "?";
}

int lcm_lab_action_parse(const char *s)
{
    for (int i = 0; s && i < LCM_LAB_ACT__COUNT; i++)
        if (!strcmp(action_names[i], s))
            return i;
    return -1;
}

int lcm_lab_status_from_cml(const char *c)
{
    static const struct { const char *cml; int st; } map[] = {
        {"DEFINED_ON_CORE", LCM_LAB_DEFINED}, {"STARTED", LCM_LAB_BOOTED},
        {"BOOTED", LCM_LAB_BOOTED},           {"STOPPED", LCM_LAB_STOPPED},
        {"QUEUED", LCM_LAB_QUEUED},           {"STARTING", LCM_LAB_STARTING},
        {"STOPPING", LCM_LAB_STOPPING},       {"PAUSED", LCM_LAB_PAUSED},
        {"WIPED", LCM_LAB_WIPED},             {"ERROR", LCM_LAB_ERROR},
        {"DISCONNECTED", LCM_LAB_ERROR}};
    for (size_t i = 0; c && i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(map[i].cml, c))
            return map[i].st;
    return -1;
}

struct lcm_lab *lcm_lab_new(const char *id)
{
    struct lcm_lab *l = calloc(1, sizeof *l);
    if (l && id && !(l->id = strdup(id))) {
        free(l);
        return NULL;
    }
    if (l)
        l->pending_action = -1;
    return l;
}

static void lab_clear(struct lcm_lab *l)
{
    char *id = l->id;
    free(l->worker_id);
    free(l->cml_lab_id);
    free(l->title);
    free(l->definition_id);
    free(l->active_session_id);
    for (uint16_t i = 0; i < l->nports; i++)
        free(l->ports[i].name);
    free(l->ports);
    for (int i = 0; i < l->nruns; i++)
        free(l->runs[i].session_id);
    lcm_history_free(&l->history);
    free(l->created_by);
    memset(l, 0, sizeof *l);
    l->id = id;
    l->pending_action = -1;
}

void lcm_lab_free(struct lcm_lab *l)
{
    if (!l)
        return;
    lab_clear(l);
    free(l->id);
    free(l);
}

/* ---- JSON ---------------------------------------------------------------------------- */

static cJSON *lab_json(const struct lcm_lab *l)
{
    cJSON *o = cJSON_CreateObject(), *p, *runs, *h;
    if (!o || lcm_jx_put_str(o, "id", l->id) || lcm_jx_put_str(o, "worker_id", l->worker_id) ||
        lcm_jx_put_str(o, "cml_lab_id", l->cml_lab_id) || lcm_jx_put_str(o, "title", l->title) ||
        lcm_jx_put_str(o, "definition_id", l->definition_id) ||
        lcm_jx_put_str(o, "status", lcm_fsm_name(&lcm_fsm_lab, l->status)) ||
        lcm_jx_put_str(o, "active_session_id", l->active_session_id) ||
        lcm_jx_put_str(o, "pending_action",
                       l->pending_action >= 0 ? lcm_lab_action_name(l->pending_action) : NULL) ||
        !(p = cJSON_AddObjectToObject(o, "ports")))
        goto bad;
    for (uint16_t i = 0; i < l->nports; i++)
        if (!cJSON_AddNumberToObject(p, l->ports[i].name, l->ports[i].port))
            goto bad;
    if (!(runs = cJSON_AddArrayToObject(o, "runs")))
        goto bad;
    for (int i = 0; i < l->nruns; i++) {
        cJSON *r = cJSON_CreateObject();
        if (!r || !cJSON_AddItemToArray(runs, r) ||
            lcm_jx_put_str(r, "session_id", l->runs[i].session_id) ||
            lcm_jx_put_time(r, "started_at", l->runs[i].started_at) ||
            lcm_jx_put_time(r, "ended_at", l->runs[i].ended_at))
            goto bad;
    }
    if (!(h = lcm_history_to_json(&l->history, &lcm_fsm_lab)) ||
        !cJSON_AddItemToObject(o, "status_history", h) ||
        lcm_jx_put_time(o, "created_at", l->created_at) ||
        lcm_jx_put_str(o, "created_by", l->created_by) ||
        lcm_jx_put_time(o, "updated_at", l->updated_at))
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

static int ports_load(struct lcm_lab *l, const cJSON *obj)
{
    if (!cJSON_IsObject(obj) || cJSON_GetArraySize(obj) > 256)
        return -1;
    int n = cJSON_GetArraySize(obj), i = 0;
    struct lcm_lab_port *v = n ? calloc((size_t)n, sizeof *v) : NULL;
    if (n && !v)
        return -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        int dup = 0;
        for (int k = 0; k < i && it->string; k++)
            dup |= !strcmp(v[k].name, it->string);
        if (dup || !cJSON_IsNumber(it) || it->valuedouble < 1 || it->valuedouble > 65535 ||
            it->valuedouble != floor(it->valuedouble) || !lcm_text_ok(it->string, 160, 0) ||
            !(v[i].name = strdup(it->string))) {
            for (int k = 0; k < i; k++)
                free(v[k].name);
            free(v);
            return -1;
        }
        v[i++].port = (uint16_t)it->valuedouble;
    }
    for (uint16_t k = 0; k < l->nports; k++)
        free(l->ports[k].name);
    free(l->ports);
    l->ports = v;
    l->nports = (uint16_t)n;
    return 0;
}

static int lab_load(const cJSON *o, struct lcm_lab *l, char *err, size_t errlen)
{
    const char *v;
    const cJSON *x;
    cJSON *tmp = NULL;
    if (str_field(o, "worker_id", &l->worker_id) || !l->worker_id ||
        str_field(o, "cml_lab_id", &l->cml_lab_id) || str_field(o, "title", &l->title) ||
        str_field(o, "definition_id", &l->definition_id) ||
        str_field(o, "active_session_id", &l->active_session_id) ||
        str_field(o, "created_by", &l->created_by))
        goto bad;
    int st = lcm_jx_str(o, "status", &v) == 1 ? lcm_fsm_parse(&lcm_fsm_lab, v) : -1;
    if (st < 0)
        goto bad;
    l->status = (uint8_t)st;
    int r = lcm_jx_str(o, "pending_action", &v);
    if (r < 0 || (r == 1 && lcm_lab_action_parse(v) < 0))
        goto bad;
    l->pending_action = (int8_t)(r == 1 ? lcm_lab_action_parse(v) : -1);
    if (lcm_jx_nested(o, "ports", &x, &tmp) != 1 || ports_load(l, x))
        goto bad;
    cJSON_Delete(tmp);
    tmp = NULL;
    if (lcm_jx_nested(o, "runs", &x, &tmp) != 1 || !cJSON_IsArray(x) ||
        cJSON_GetArraySize(x) > LCM_LAB_MAX_RUNS)
        goto bad;
    const cJSON *it;
    cJSON_ArrayForEach(it, x) {
        struct lcm_lab_run *run = &l->runs[l->nruns];
        if (lcm_jx_str(it, "session_id", &v) != 1 || !(run->session_id = strdup(v)))
            goto bad;
        l->nruns++;
        if (lcm_jx_time(it, "started_at", &run->started_at) < 0 ||
            lcm_jx_time(it, "ended_at", &run->ended_at) < 0)
            goto bad;
    }
    cJSON_Delete(tmp);
    tmp = NULL;
    if (lcm_jx_nested(o, "status_history", &x, &tmp) < 0 ||
        lcm_history_from_json(&l->history, x, &lcm_fsm_lab) ||
        lcm_jx_time(o, "created_at", &l->created_at) < 0 ||
        lcm_jx_time(o, "updated_at", &l->updated_at) < 0)
        goto bad;
    cJSON_Delete(tmp);
    return 0;
bad:
    cJSON_Delete(tmp);
    lcm_errf(err, errlen, "lab state does not parse");
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

static int known(const struct lcm_lab *l, struct lcm_derr *err)
{
    lcm_derr_clear(err);
    return l->version ? 0 : lcm_derr_set(err, LCM_DERR_NOT_FOUND, "id", "unknown lab record");
}

int lcm_lab_cmd_create(const char *id, const char *worker_id, const char *cml_lab_id,
                       const char *title, const char *definition_id, int discovered,
                       const char *by, int64_t now, struct lcm_events *out,
                       struct lcm_derr *err)
{
    lcm_derr_clear(err);
    if (!lcm_text_ok(id, 128, 0))
        return lcm_derr_set(err, LCM_DERR_INVALID, "id", "id must be 1-128 printable characters");
    if (!lcm_text_ok(worker_id, 128, 0))
        return lcm_derr_set(err, LCM_DERR_INVALID, "worker_id", "worker_id is required");
    if (cml_lab_id && *cml_lab_id && !lcm_text_ok(cml_lab_id, 128, 0))
        return lcm_derr_set(err, LCM_DERR_INVALID, "cml_lab_id", "bad cml_lab_id");
    if (discovered && !(cml_lab_id && *cml_lab_id))
        return lcm_derr_set(err, LCM_DERR_INVALID, "cml_lab_id",
                            "a discovered lab needs its CML lab id");
    if (title && *title && !lcm_text_ok(title, 256, 1))
        return lcm_derr_set(err, LCM_DERR_INVALID, "title", "title not printable");
    if (definition_id && *definition_id && !lcm_text_ok(definition_id, 128, 0))
        return lcm_derr_set(err, LCM_DERR_INVALID, "definition_id", "bad definition_id");
    cJSON *d = cJSON_CreateObject();
    if (d && (lcm_jx_put_str(d, "worker_id", worker_id) ||
              lcm_jx_put_str(d, "cml_lab_id", cml_lab_id) || lcm_jx_put_str(d, "title", title) ||
              lcm_jx_put_str(d, "definition_id", definition_id) ||
              lcm_jx_put_str(d, "status", discovered ? "discovered" : "importing"))) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "lab.created", d, now, by, err);
}

int lcm_lab_cmd_transition(const struct lcm_lab *l, enum lcm_lab_status to, const char *reason,
                           const char *by, int64_t now, struct lcm_events *out,
                           struct lcm_derr *err)
{
    const struct lcm_fsm *m = &lcm_fsm_lab;
    if (known(l, err))
        return err->code;
    if ((int)to < 0 || to >= LCM_LAB__COUNT)
        return lcm_derr_set(err, LCM_DERR_INVALID, "status", "unknown status");
    if (!lcm_fsm_allowed(m, l->status, (int)to))
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "status", "lab cannot go from %s to %s",
                            lcm_fsm_name(m, l->status), lcm_fsm_name(m, (int)to));
    if (reason && *reason && !lcm_text_ok(reason, 512, 1))
        return lcm_derr_set(err, LCM_DERR_INVALID, "reason", "reason too long or not printable");
    char type[48];
    snprintf(type, sizeof type, "lab.%s", lcm_fsm_name(m, (int)to));
    return emit(out, type, lcm_events_transition_data(m, l->status, reason), now, by, err);
}

int lcm_lab_cmd_observe(const struct lcm_lab *l, const char *cml_state, const char *by,
                        int64_t now, struct lcm_events *out, struct lcm_derr *err)
{
    if (known(l, err))
        return err->code;
    int st = lcm_lab_status_from_cml(cml_state);
    if (st < 0)
        return lcm_derr_set(err, LCM_DERR_INVALID, "state", "unknown CML lab state %.64s",
                            cml_state ? cml_state : "(null)");
    if (st == l->status)
        return 0;
    cJSON *d = cJSON_CreateObject();
    if (d && (lcm_jx_put_str(d, "cml_state", cml_state) ||
              lcm_jx_put_str(d, "status", lcm_fsm_name(&lcm_fsm_lab, st)))) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "lab.observed", d, now, by, err);
}

int lcm_lab_cmd_assign_ports(const struct lcm_lab *l, const char *const *names,
                             const uint16_t *ports, size_t n, const char *by, int64_t now,
                             struct lcm_events *out, struct lcm_derr *err)
{
    if (known(l, err))
        return err->code;
    if (n == 0 || n > 256)
        return lcm_derr_set(err, LCM_DERR_INVALID, "ports", "between 1 and 256 ports");
    if (l->nports)
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "ports",
                            "the lab already owns its ports (kept until deleted)");
    cJSON *d = cJSON_CreateObject(), *p = d ? cJSON_AddObjectToObject(d, "ports") : NULL;
    for (size_t i = 0; p && i < n; i++) {
        if (!lcm_text_ok(names[i], 160, 0) || ports[i] == 0 ||
            cJSON_GetObjectItemCaseSensitive(p, names[i])) {
            cJSON_Delete(d);
            return lcm_derr_set(err, LCM_DERR_INVALID, "ports", "bad or repeated port name %zu", i);
        }
        cJSON_AddNumberToObject(p, names[i], ports[i]);
    }
    if (!p) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "lab.ports_assigned", d, now, by, err);
}

static int bindable(int st)
{
    return st == LCM_LAB_DEFINED || st == LCM_LAB_STOPPED || st == LCM_LAB_WIPED ||
           st == LCM_LAB_BOOTED || st == LCM_LAB_IMPORTING;
}

int lcm_lab_cmd_bind(const struct lcm_lab *l, const char *session_id, const char *by,
                     int64_t now, struct lcm_events *out, struct lcm_derr *err)
{
    if (known(l, err))
        return err->code;
    if (!lcm_text_ok(session_id, 128, 0))
        return lcm_derr_set(err, LCM_DERR_INVALID, "session_id", "session_id is required");
    if (l->active_session_id) {
        if (!strcmp(l->active_session_id, session_id))
            return 0;
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "active_session_id",
                            "lab is in use by session %s", l->active_session_id);
    }
    if (!bindable(l->status))
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "status", "a %s lab cannot be bound",
                            lcm_fsm_name(&lcm_fsm_lab, l->status));
    cJSON *d = cJSON_CreateObject();
    if (d && lcm_jx_put_str(d, "session_id", session_id)) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "lab.bound", d, now, by, err);
}

int lcm_lab_cmd_unbind(const struct lcm_lab *l, const char *session_id, const char *by,
                       int64_t now, struct lcm_events *out, struct lcm_derr *err)
{
    if (known(l, err))
        return err->code;
    if (!l->active_session_id || !session_id || strcmp(l->active_session_id, session_id))
        return 0;
    cJSON *d = cJSON_CreateObject();
    if (d && lcm_jx_put_str(d, "session_id", session_id)) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "lab.unbound", d, now, by, err);
}

static int action_allowed(int a, int st)
{
    switch (a) {
    case LCM_LAB_ACT_START:
        return st == LCM_LAB_DEFINED || st == LCM_LAB_STOPPED || st == LCM_LAB_WIPED;
    case LCM_LAB_ACT_STOP:
        return st == LCM_LAB_BOOTED || st == LCM_LAB_STARTING || st == LCM_LAB_QUEUED ||
               st == LCM_LAB_PAUSED;
    case LCM_LAB_ACT_WIPE:
        return st == LCM_LAB_STOPPED;
    case LCM_LAB_ACT_DELETE:
        return st != LCM_LAB_DELETING && st != LCM_LAB_DELETED && st != LCM_LAB_ARCHIVED;
    }
    return 0;
}

int lcm_lab_cmd_request_action(const struct lcm_lab *l, enum lcm_lab_action a, const char *by,
                               int64_t now, struct lcm_events *out, struct lcm_derr *err)
{
    if (known(l, err))
        return err->code;
    if ((int)a < 0 || a >= LCM_LAB_ACT__COUNT)
        return lcm_derr_set(err, LCM_DERR_INVALID, "action",
                            "action must be start, stop, wipe or delete");
    if (l->pending_action >= 0)
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "pending_action", "%s is already pending",
                            lcm_lab_action_name(l->pending_action));
    if (!action_allowed((int)a, l->status))
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "action", "cannot %s a %s lab",
                            lcm_lab_action_name((int)a), lcm_fsm_name(&lcm_fsm_lab, l->status));
    cJSON *d = cJSON_CreateObject();
    if (d && lcm_jx_put_str(d, "action", lcm_lab_action_name((int)a))) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "lab.action_requested", d, now, by, err);
}

int lcm_lab_cmd_action_done(const struct lcm_lab *l, const char *error, const char *by,
                            int64_t now, struct lcm_events *out, struct lcm_derr *err)
{
    if (known(l, err))
        return err->code;
    if (l->pending_action < 0)
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "pending_action", "no action is pending");
    cJSON *d = cJSON_CreateObject();
    if (d && (lcm_jx_put_str(d, "action", lcm_lab_action_name(l->pending_action)) ||
              lcm_jx_put_str(d, "error", error && *error ? error : NULL))) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "lab.action_done", d, now, by, err);
}

/* ---- apply --------------------------------------------------------------------------- */

static int apply_created(struct lcm_lab *l, const cJSON *d, const char *by, int64_t at)
{
    struct lcm_lab n;
    memset(&n, 0, sizeof n);
    n.pending_action = -1;
    const char *v;
    int st = lcm_jx_str(d, "status", &v) == 1 ? lcm_fsm_parse(&lcm_fsm_lab, v) : -1;
    if ((st != LCM_LAB_IMPORTING && st != LCM_LAB_DISCOVERED) ||
        str_field(d, "worker_id", &n.worker_id) || !n.worker_id ||
        str_field(d, "cml_lab_id", &n.cml_lab_id) || str_field(d, "title", &n.title) ||
        str_field(d, "definition_id", &n.definition_id) ||
        !(n.created_by = strdup(by ? by : "system"))) {
        lab_clear(&n);
        return -1;
    }
    n.status = (uint8_t)st;
    n.created_at = at;
    n.id = l->id;
    *l = n;
    return 0;
}

static int apply_bound(struct lcm_lab *l, const cJSON *d, int64_t at, int bind)
{
    const char *sid;
    if (lcm_jx_str(d, "session_id", &sid) != 1)
        return -1;
    if (!bind) {
        if (!l->active_session_id || strcmp(l->active_session_id, sid))
            return -1;
        if (l->nruns && !strcmp(l->runs[l->nruns - 1].session_id, sid))
            l->runs[l->nruns - 1].ended_at = at;
        return lcm_set_str(&l->active_session_id, NULL);
    }
    if (l->active_session_id || !bindable(l->status))
        return -1;
    char *s = strdup(sid);
    if (!s || lcm_set_str(&l->active_session_id, sid)) {
        free(s);
        return -1;
    }
    if (l->nruns == LCM_LAB_MAX_RUNS) {
        free(l->runs[0].session_id);
        memmove(l->runs, l->runs + 1, (LCM_LAB_MAX_RUNS - 1) * sizeof l->runs[0]);
        l->nruns--;
    }
    l->runs[l->nruns++] = (struct lcm_lab_run){.session_id = s, .started_at = at};
    return 0;
}

static int k_apply(void *state, const struct lcm_event *ev, char *err, size_t errlen)
{
    struct lcm_lab *l = state;
    const struct lcm_fsm *m = &lcm_fsm_lab;
    int64_t at;
    const cJSON *d = ev->data;
    const char *v;
    if (lcm_events_check(ev, l->version, &at, err, errlen))
        return -1;
    if (strncmp(ev->type, "lab.", 4))
        goto unknown;
    const char *t = ev->type + 4;
    int rc = 0;
    if (!strcmp(t, "created")) {
        if (l->version != 0)
            goto misplaced;
        rc = apply_created(l, d, ev->by, at);
    } else if (l->version == 0) {
        goto misplaced;
    } else if (!strcmp(t, "observed")) {
        int st = lcm_jx_str(d, "status", &v) == 1 ? lcm_fsm_parse(m, v) : -1;
        const char *cml;
        if (st < 0 || lcm_jx_str(d, "cml_state", &cml) < 0)
            goto bad;
        if (st != l->status) {
            char reason[96];
            snprintf(reason, sizeof reason, "observed %.40s%s", cml ? cml : "",
                     lcm_fsm_allowed(m, l->status, st) ? "" : " (outside the table)");
            if (lcm_history_push(&l->history, l->status, st, at, ev->by, reason))
                goto bad;
            l->status = (uint8_t)st;
        }
    } else if (!strcmp(t, "ports_assigned")) {
        rc = l->nports ? -1 : ports_load(l, cJSON_GetObjectItemCaseSensitive(d, "ports"));
    } else if (!strcmp(t, "bound") || !strcmp(t, "unbound")) {
        rc = apply_bound(l, d, at, t[0] == 'b');
    } else if (!strcmp(t, "action_requested")) {
        int a = lcm_jx_str(d, "action", &v) == 1 ? lcm_lab_action_parse(v) : -1;
        rc = (a >= 0 && l->pending_action < 0) ? 0 : -1;
        if (!rc)
            l->pending_action = (int8_t)a;
    } else if (!strcmp(t, "action_done")) {
        rc = (l->pending_action >= 0 && lcm_jx_str(d, "error", &v) >= 0) ? 0 : -1;
        if (!rc)
            l->pending_action = -1;
    } else {
        int to = lcm_fsm_parse(m, t);
        if (to < 0)
            goto unknown;
        if (lcm_history_apply_transition(m, &l->status, &l->history, to, ev, at, err, errlen))
            return -1;
    }
    if (rc)
        goto bad;
    l->updated_at = at;
    l->version++;
    return 0;
bad:
    lcm_errf(err, errlen, "%s does not fit lab %s (status %s)", ev->type, l->id ? l->id : "?",
             lcm_fsm_name(m, l->status));
    return -1;
misplaced:
    lcm_errf(err, errlen, "%s at version %llu", ev->type, (unsigned long long)l->version);
    return -1;
unknown:
    lcm_errf(err, errlen, "unknown event type %s", ev->type);
    return -1;
}

/* ---- kind ---------------------------------------------------------------------------- */

static void *k_create(const char *id) { return lcm_lab_new(id); }
static void k_destroy(void *s) { lcm_lab_free(s); }
static uint64_t k_version(const void *s) { return ((const struct lcm_lab *)s)->version; }
static cJSON *k_to_json(const void *s) { return lab_json(s); }

/* Gives c, a bit copy of l, its own copies of what they share (see lcm_kind_glue.own). */
static int k_own(void *cp, const void *st)
{
    struct lcm_lab *c = cp;
    const struct lcm_lab *l = st;
    char **strs[] = { &c->id, &c->worker_id, &c->cml_lab_id, &c->title, &c->definition_id,
                      &c->active_session_id, &c->created_by };
    int rc = lcm_clone_strs(strs, sizeof strs / sizeof *strs);
    for (uint8_t i = 0; i < c->nruns; i++)
        rc |= lcm_clone_str(&c->runs[i].session_id);
    if (l->ports) {
        c->ports = malloc((l->nports ? l->nports : 1) * sizeof *c->ports);
        if (!c->ports)
            c->nports = 0;
        for (uint16_t i = 0; c->ports && i < l->nports; i++) {
            c->ports[i] = l->ports[i];
            rc |= lcm_clone_str(&c->ports[i].name);
        }
        rc |= !c->ports;
    }
    rc |= lcm_history_clone(&c->history, &l->history);
    return rc;
}

static void k_clear(void *s) { lab_clear(s); }
static int k_load(const cJSON *o, void *s, char *err, size_t errlen)
{
    return lab_load(o, s, err, errlen);
}

static const struct lcm_kind_glue glue = {
    .size = sizeof(struct lcm_lab), .id_off = offsetof(struct lcm_lab, id),
    .version_off = offsetof(struct lcm_lab, version), .create = k_create,
    .destroy = k_destroy, .clear = k_clear, .load = k_load, .own = k_own};

static void *k_clone(const void *st) { return lcm_kind_glue_clone(&glue, st); }

static void k_fields(const void *s, lcm_field_emit_fn emitf, void *ud)
{
    lcm_kind_glue_fields(lab_json(s), NULL, emitf, ud);
}

static void k_indexes(const void *s, lcm_index_emit_fn emitf, void *ud)
{
    const struct lcm_lab *l = s;
    char key[320];
    if (l->version == 0)
        return;
    emitf(&(struct lcm_index_entry){.key = "lcm:idx:lab:all"}, ud);
    snprintf(key, sizeof key, "lcm:idx:lab:status:%s", lcm_fsm_name(&lcm_fsm_lab, l->status));
    emitf(&(struct lcm_index_entry){.key = key}, ud);
    if (l->worker_id) {
        snprintf(key, sizeof key, "lcm:idx:lab:worker:%s", l->worker_id);
        emitf(&(struct lcm_index_entry){.key = key}, ud);
    }
    if (l->definition_id) {
        snprintf(key, sizeof key, "lcm:idx:lab:definition:%s", l->definition_id);
        emitf(&(struct lcm_index_entry){.key = key}, ud);
    }
}

static int k_from_fields(void *state, const char *const *fields, const char *const *values,
                         size_t n, char *err, size_t errlen)
{
    return lcm_kind_glue_from_fields(&glue, state, fields, values, n, err, errlen);
}

const struct lcm_kind lcm_kind_lab = {
    .name = "lab",
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
