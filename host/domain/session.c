/* Session aggregate: creation rules, the session state machine, pipeline progress, the LDS
 * user session, grading and score children, and its lcm_kind vtable. */
#include "session.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "definition.h"
#include "jsonx.h"
#include "kind_glue.h"
#include "rfc3339.h"
#include "session_time.h"

static const char *const step_names[LCM_STEP__COUNT] = {
    "resolve_lab", "allocate_ports", "sync_tags", "start_lab", "lds_session", "mark_ready",
    "collect", "open_grading", "record_score", "stop_lab", "release_lds", "wipe_lab"};
static const char *const step_state_names[LCM_STEP_STATE__COUNT] = {
    "none", "started", "done", "failed", "skipped"};

const char *lcm_step_name(int step)
{
    return (step >= 0 && step < LCM_STEP__COUNT) ? step_names[step] : "?";
}

int lcm_step_parse(const char *s)
{
    for (int i = 0; s && i < LCM_STEP__COUNT; i++)
        if (!strcmp(step_names[i], s))
            return i;
    return -1;
}

const char *lcm_step_state_name(int st)
{
    return (st >= 0 && st < LCM_STEP_STATE__COUNT) ? step_state_names[st] : "?";
}

int lcm_step_state_parse(const char *s)
{
    for (int i = 0; s && i < LCM_STEP_STATE__COUNT; i++)
        if (!strcmp(step_state_names[i], s))
            return i;
    return -1;
}

struct lcm_session *lcm_session_new(const char *id)
{
    struct lcm_session *s = calloc(1, sizeof *s);
    if (s && id && !(s->id = strdup(id))) {
        free(s);
        return NULL;
    }
    if (s) {
        s->desired_status = LCM_SS_RUNNING;
        s->boot_lead_minutes = -1;
        s->score.passed = -1;
    }
    return s;
}

static void ss_clear(struct lcm_session *s)
{
    char *id = s->id;
    free(s->definition_id);
    free(s->definition_name);
    free(s->definition_version);
    free(s->owner);
    free(s->reservation_id);
    free(s->worker_id);
    free(s->lab_record_id);
    free(s->cml_lab_id);
    for (uint16_t i = 0; i < s->nports; i++)
        free(s->ports[i].name);
    free(s->ports);
    for (int i = 0; i < LCM_STEP__COUNT; i++)
        free(s->steps[i].error);
    free(s->user_session.lds_session_id);
    free(s->user_session.login_url);
    free(s->user_session.devices_json);
    free(s->user_session.status);
    free(s->grading.grading_session_id);
    free(s->grading.status);
    free(s->score.sections_json);
    free(s->desired_reason);
    free(s->desired_by);
    lcm_history_free(&s->history);
    free(s->created_by);
    memset(s, 0, sizeof *s);
    s->id = id;
    s->desired_status = LCM_SS_RUNNING;
    s->boot_lead_minutes = -1;
    s->score.passed = -1;
}

void lcm_session_free(struct lcm_session *s)
{
    if (!s)
        return;
    ss_clear(s);
    free(s->id);
    free(s);
}

static size_t slen(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

size_t lcm_session_mem(const struct lcm_session *s)
{
    size_t b = sizeof *s + slen(s->id) + slen(s->definition_id) + slen(s->definition_name) +
               slen(s->definition_version) + slen(s->owner) + slen(s->reservation_id) +
               slen(s->worker_id) + slen(s->lab_record_id) + slen(s->cml_lab_id) +
               slen(s->user_session.lds_session_id) + slen(s->user_session.login_url) +
               slen(s->user_session.devices_json) + slen(s->user_session.status) +
               slen(s->grading.grading_session_id) + slen(s->grading.status) +
               slen(s->score.sections_json) + slen(s->desired_reason) + slen(s->desired_by) +
               slen(s->created_by) + lcm_history_mem(&s->history);
    b += (size_t)s->nports * sizeof *s->ports;
    for (uint16_t i = 0; i < s->nports; i++)
        b += slen(s->ports[i].name);
    for (int i = 0; i < LCM_STEP__COUNT; i++)
        b += slen(s->steps[i].error);
    return b;
}

/* ---- JSON ---------------------------------------------------------------------------- */

static int put_raw(cJSON *o, const char *k, const char *json)
{
    cJSON *v = json ? cJSON_Parse(json) : cJSON_CreateNull();
    return (v && cJSON_AddItemToObject(o, k, v)) ? 0 : (cJSON_Delete(v), -1);
}

static cJSON *ss_json(const struct lcm_session *s)
{
    const struct lcm_fsm *m = &lcm_fsm_session;
    cJSON *o = cJSON_CreateObject(), *ts, *ports, *pipe, *us, *gr, *h;
    if (!o || lcm_jx_put_str(o, "id", s->id) ||
        lcm_jx_put_str(o, "definition_id", s->definition_id) ||
        lcm_jx_put_str(o, "definition_name", s->definition_name) ||
        lcm_jx_put_str(o, "definition_version", s->definition_version) ||
        lcm_jx_put_str(o, "owner", s->owner) ||
        lcm_jx_put_str(o, "reservation_id", s->reservation_id) ||
        !(ts = cJSON_AddObjectToObject(o, "timeslot")) || lcm_jx_put_time(ts, "start", s->start) ||
        lcm_jx_put_time(ts, "end", s->end) || lcm_jx_put_str(o, "status", lcm_fsm_name(m, s->status)) ||
        lcm_jx_put_str(o, "desired_status", lcm_fsm_name(m, s->desired_status)) ||
        lcm_jx_put_str(o, "desired_reason", s->desired_reason) ||
        lcm_jx_put_str(o, "desired_by", s->desired_by) ||
        lcm_jx_put_i64(o, "boot_lead_minutes", s->boot_lead_minutes) ||
        lcm_jx_put_bool(o, "lds_enabled", s->lds_enabled) ||
        lcm_jx_put_bool(o, "grading_enabled", s->grading_enabled) ||
        lcm_jx_put_str(o, "worker_id", s->worker_id) ||
        lcm_jx_put_str(o, "lab_record_id", s->lab_record_id) ||
        lcm_jx_put_str(o, "cml_lab_id", s->cml_lab_id) || !(ports = cJSON_AddObjectToObject(o, "ports")))
        goto bad;
    for (uint16_t i = 0; i < s->nports; i++)
        if (!cJSON_AddNumberToObject(ports, s->ports[i].name, s->ports[i].port))
            goto bad;
    if (!(pipe = cJSON_AddObjectToObject(o, "pipeline")))
        goto bad;
    for (int i = 0; i < LCM_STEP__COUNT; i++) {
        const struct lcm_step_progress *p = &s->steps[i];
        if (p->state == LCM_STEP_NONE)
            continue;
        cJSON *x = cJSON_AddObjectToObject(pipe, step_names[i]);
        if (!x || lcm_jx_put_str(x, "state", step_state_names[p->state]) ||
            lcm_jx_put_i64(x, "attempts", p->attempts) ||
            lcm_jx_put_time(x, "started_at", p->started_at) ||
            lcm_jx_put_time(x, "ended_at", p->ended_at) || lcm_jx_put_str(x, "error", p->error))
            goto bad;
    }
    if (!(us = cJSON_AddObjectToObject(o, "user_session")) ||
        lcm_jx_put_str(us, "lds_session_id", s->user_session.lds_session_id) ||
        lcm_jx_put_str(us, "login_url", s->user_session.login_url) ||
        put_raw(us, "devices", s->user_session.devices_json) ||
        lcm_jx_put_str(us, "status", s->user_session.status) ||
        !(gr = cJSON_AddObjectToObject(o, "grading")) ||
        lcm_jx_put_str(gr, "grading_session_id", s->grading.grading_session_id) ||
        lcm_jx_put_str(gr, "status", s->grading.status))
        goto bad;
    if (s->score.present) {
        cJSON *sc = cJSON_AddObjectToObject(o, "score");
        if (!sc || !cJSON_AddNumberToObject(sc, "score", s->score.score) ||
            !cJSON_AddNumberToObject(sc, "max_score", s->score.max_score) ||
            !cJSON_AddNumberToObject(sc, "cut_score", s->score.cut_score) ||
            (s->score.passed < 0 ? !cJSON_AddNullToObject(sc, "passed")
                                 : lcm_jx_put_bool(sc, "passed", s->score.passed)) ||
            put_raw(sc, "sections", s->score.sections_json) ||
            lcm_jx_put_time(sc, "submitted_at", s->score.submitted_at))
            goto bad;
    } else if (!cJSON_AddNullToObject(o, "score")) {
        goto bad;
    }
    if (!(h = lcm_history_to_json(&s->history, m)) || !cJSON_AddItemToObject(o, "status_history", h) ||
        lcm_jx_put_time(o, "created_at", s->created_at) ||
        lcm_jx_put_str(o, "created_by", s->created_by) ||
        lcm_jx_put_time(o, "updated_at", s->updated_at))
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

/* A JSON array (given as JSON or as text) stored as compact text; NULL/absent clears. */
static int raw_field(const cJSON *o, const char *k, char **dst)
{
    const cJSON *v;
    cJSON *tmp;
    int r = lcm_jx_nested(o, k, &v, &tmp);
    if (r < 0 || (r == 1 && !cJSON_IsArray(v))) {
        cJSON_Delete(tmp);
        return -1;
    }
    if (r == 0)
        return lcm_set_str(dst, NULL);
    char *txt = cJSON_PrintUnformatted(v);
    cJSON_Delete(tmp);
    if (!txt)
        return -1;
    int rc = lcm_set_str(dst, txt);
    cJSON_free(txt);
    return rc;
}

static int ports_load(struct lcm_session *s, const cJSON *obj)
{
    if (!cJSON_IsObject(obj) || cJSON_GetArraySize(obj) > 256)
        return -1;
    int n = cJSON_GetArraySize(obj), i = 0;
    struct lcm_session_port *v = n ? calloc((size_t)n, sizeof *v) : NULL;
    if (n && !v)
        return -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 1 || it->valuedouble > 65535 ||
            it->valuedouble != floor(it->valuedouble) || !lcm_text_ok(it->string, 160, 0) ||
            !(v[i].name = strdup(it->string)))
            goto bad;
        for (int k = 0; k < i; k++)
            if (!strcmp(v[k].name, it->string))
                goto bad_i;
        v[i].port = (uint16_t)it->valuedouble;
        i++;
    }
    for (uint16_t k = 0; k < s->nports; k++)
        free(s->ports[k].name);
    free(s->ports);
    s->ports = v;
    s->nports = (uint16_t)n;
    return 0;
bad_i:
    i++;
bad:
    for (int k = 0; k <= i && k < n; k++)
        free(v[k].name);
    free(v);
    return -1;
}

static int score_load(struct lcm_session *s, const cJSON *sc, int strict)
{
    double score, max, cut = 0;
    int passed = -1, r;
    int64_t sub;
    if (lcm_jx_num(sc, "score", &score) != 1 || lcm_jx_num(sc, "max_score", &max) != 1 ||
        lcm_jx_num(sc, "cut_score", &cut) < 0 || (r = lcm_jx_bool(sc, "passed", &passed)) < 0 ||
        lcm_jx_time(sc, "submitted_at", &sub) < 0 || score < 0 || max < 0 || cut < 0 ||
        (strict && (score > max || cut > max)))
        return -1;
    char *sections = NULL;
    if (raw_field(sc, "sections", &sections))
        return -1;
    free(s->score.sections_json);
    s->score.sections_json = sections;
    s->score.score = score;
    s->score.max_score = max;
    s->score.cut_score = cut;
    s->score.passed = (int8_t)(r == 1 ? passed : -1);
    s->score.submitted_at = sub;
    s->score.present = 1;
    return 0;
}

static int ss_load(const cJSON *o, struct lcm_session *s, char *err, size_t errlen)
{
    const struct lcm_fsm *m = &lcm_fsm_session;
    const char *v;
    const cJSON *x;
    cJSON *tmp = NULL;
    int64_t i64;
    int b;
    if (str_field(o, "definition_id", &s->definition_id) || !s->definition_id ||
        str_field(o, "definition_name", &s->definition_name) ||
        str_field(o, "definition_version", &s->definition_version) ||
        str_field(o, "owner", &s->owner) || str_field(o, "reservation_id", &s->reservation_id) ||
        str_field(o, "worker_id", &s->worker_id) ||
        str_field(o, "lab_record_id", &s->lab_record_id) ||
        str_field(o, "cml_lab_id", &s->cml_lab_id) || str_field(o, "created_by", &s->created_by) ||
        str_field(o, "desired_reason", &s->desired_reason) ||
        str_field(o, "desired_by", &s->desired_by))
        goto bad;
    if (lcm_jx_nested(o, "timeslot", &x, &tmp) != 1 || lcm_jx_time(x, "start", &s->start) < 0 ||
        lcm_jx_time(x, "end", &s->end) < 0)
        goto bad;
    cJSON_Delete(tmp);
    tmp = NULL;
    int st = lcm_jx_str(o, "status", &v) == 1 ? lcm_fsm_parse(m, v) : -1;
    int ds = lcm_jx_str(o, "desired_status", &v) == 1 ? lcm_fsm_parse(m, v) : -1;
    if (st < 0 || ds < 0 || lcm_jx_i64(o, "boot_lead_minutes", &i64) != 1 || i64 < -1 ||
        i64 > 24 * 60)
        goto bad;
    s->status = (uint8_t)st;
    s->desired_status = (uint8_t)ds;
    s->boot_lead_minutes = (int16_t)i64;
    if (lcm_jx_bool(o, "lds_enabled", &b) != 1)
        goto bad;
    s->lds_enabled = (uint8_t)b;
    if (lcm_jx_bool(o, "grading_enabled", &b) != 1)
        goto bad;
    s->grading_enabled = (uint8_t)b;
    if (lcm_jx_nested(o, "ports", &x, &tmp) != 1 || ports_load(s, x))
        goto bad;
    cJSON_Delete(tmp);
    tmp = NULL;
    if (lcm_jx_nested(o, "pipeline", &x, &tmp) != 1 || !cJSON_IsObject(x))
        goto bad;
    const cJSON *it;
    cJSON_ArrayForEach(it, x) {
        int step = lcm_step_parse(it->string), ps;
        struct lcm_step_progress *p = step >= 0 ? &s->steps[step] : NULL;
        if (!p || lcm_jx_str(it, "state", &v) != 1 || (ps = lcm_step_state_parse(v)) <= 0 ||
            lcm_jx_i64(it, "attempts", &i64) != 1 || i64 < 0 || i64 > 255 ||
            lcm_jx_time(it, "started_at", &p->started_at) < 0 ||
            lcm_jx_time(it, "ended_at", &p->ended_at) < 0 || str_field(it, "error", &p->error))
            goto bad;
        p->state = (uint8_t)ps;
        p->attempts = (uint8_t)i64;
    }
    cJSON_Delete(tmp);
    tmp = NULL;
    if (lcm_jx_nested(o, "user_session", &x, &tmp) != 1 ||
        str_field(x, "lds_session_id", &s->user_session.lds_session_id) ||
        str_field(x, "login_url", &s->user_session.login_url) ||
        raw_field(x, "devices", &s->user_session.devices_json) ||
        str_field(x, "status", &s->user_session.status))
        goto bad;
    cJSON_Delete(tmp);
    tmp = NULL;
    if (lcm_jx_nested(o, "grading", &x, &tmp) != 1 ||
        str_field(x, "grading_session_id", &s->grading.grading_session_id) ||
        str_field(x, "status", &s->grading.status))
        goto bad;
    cJSON_Delete(tmp);
    tmp = NULL;
    int r = lcm_jx_nested(o, "score", &x, &tmp);
    if (r < 0 || (r == 1 && score_load(s, x, 0)))
        goto bad;
    cJSON_Delete(tmp);
    tmp = NULL;
    if (lcm_jx_nested(o, "status_history", &x, &tmp) < 0 ||
        lcm_history_from_json(&s->history, x, m) ||
        lcm_jx_time(o, "created_at", &s->created_at) < 0 ||
        lcm_jx_time(o, "updated_at", &s->updated_at) < 0)
        goto bad;
    cJSON_Delete(tmp);
    return 0;
bad:
    cJSON_Delete(tmp);
    lcm_errf(err, errlen, "session state does not parse");
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

static int known(const struct lcm_session *s, struct lcm_derr *err)
{
    lcm_derr_clear(err);
    if (s->version == 0)
        return lcm_derr_set(err, LCM_DERR_NOT_FOUND, "id", "unknown session");
    return 0;
}

int lcm_session_parse_create(const cJSON *body, struct lcm_session_create *c,
                             struct lcm_derr *err)
{
    lcm_derr_clear(err);
    memset(c, 0, sizeof *c);
    if (!cJSON_IsObject(body))
        return lcm_derr_set(err, LCM_DERR_INVALID, "", "body must be a JSON object");
    const char *v;
    if (lcm_jx_str(body, "definition_id", &v) != 1 || !lcm_text_ok(v, 128, 0))
        return lcm_derr_set(err, LCM_DERR_INVALID, "definition_id", "definition_id is required");
    c->definition_id = v;
    int r = lcm_jx_str(body, "reservation_id", &v);
    if (r < 0 || (r == 1 && !lcm_text_ok(v, 128, 0)))
        return lcm_derr_set(err, LCM_DERR_INVALID, "reservation_id",
                            "reservation_id must be 1-128 printable characters without spaces");
    c->reservation_id = v;
    r = lcm_jx_str(body, "owner", &v);
    if (r < 0 || (r == 1 && !lcm_text_ok(v, 256, 1)))
        return lcm_derr_set(err, LCM_DERR_INVALID, "owner", "owner must be a printable string");
    c->owner = v;
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(body, "timeslot");
    if (ts && !cJSON_IsNull(ts)) {
        if (!cJSON_IsObject(ts))
            return lcm_derr_set(err, LCM_DERR_INVALID, "timeslot", "timeslot must be an object");
        if (lcm_jx_time(ts, "start", &c->start) < 0)
            return lcm_derr_set(err, LCM_DERR_INVALID, "timeslot.start",
                                "timeslot.start must be an RFC 3339 time");
        if (lcm_jx_time(ts, "end", &c->end) < 0)
            return lcm_derr_set(err, LCM_DERR_INVALID, "timeslot.end",
                                "timeslot.end must be an RFC 3339 time");
    }
    return 0;
}

int lcm_session_cmd_create(const struct lcm_session_create *c, const struct lcm_definition *def,
                           const struct lcm_time_params *p, const char *by, int64_t now,
                           struct lcm_events *out, struct lcm_derr *err)
{
    lcm_derr_clear(err);
    if (!lcm_text_ok(c->id, 128, 0))
        return lcm_derr_set(err, LCM_DERR_INVALID, "id", "id must be 1-128 printable characters");
    if (!def || def->version == 0)
        return lcm_derr_set(err, LCM_DERR_NOT_FOUND, "definition_id", "unknown definition");
    if (!lcm_definition_bookable(def))
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "definition_id",
                            "definition %s is %s; only active definitions can be booked",
                            def->id, lcm_fsm_name(&lcm_fsm_definition, def->status));
    if (c->reservation_id && *c->reservation_id && !lcm_text_ok(c->reservation_id, 128, 0))
        return lcm_derr_set(err, LCM_DERR_INVALID, "reservation_id", "bad reservation_id");
    int64_t start = c->start, base = start ? start : now;
    int64_t end = c->end ? c->end : base + (int64_t)def->max_duration_minutes * 60;
    if (start && start + (int64_t)p->grace_minutes * 60 < now)
        return lcm_derr_set(err, LCM_DERR_INVALID, "timeslot.start",
                            "timeslot.start is in the past (beyond the %d min grace)",
                            p->grace_minutes);
    if (end <= base)
        return lcm_derr_set(err, LCM_DERR_INVALID, "timeslot.end",
                            "timeslot.end must be after timeslot.start");
    if (end <= now)
        return lcm_derr_set(err, LCM_DERR_INVALID, "timeslot.end", "timeslot.end has passed");
    if (end - base > (int64_t)def->max_duration_minutes * 60)
        return lcm_derr_set(err, LCM_DERR_INVALID, "timeslot.end",
                            "the timeslot is longer than the definition's %d minutes",
                            def->max_duration_minutes);
    cJSON *d = cJSON_CreateObject(), *ts;
    if (d && (lcm_jx_put_str(d, "definition_id", def->id) ||
              lcm_jx_put_str(d, "definition_name", def->name) ||
              lcm_jx_put_str(d, "definition_version", def->semver) ||
              lcm_jx_put_str(d, "owner", c->owner && *c->owner ? c->owner : by) ||
              lcm_jx_put_str(d, "reservation_id", c->reservation_id) ||
              !(ts = cJSON_AddObjectToObject(d, "timeslot")) || lcm_jx_put_time(ts, "start", start) ||
              lcm_jx_put_time(ts, "end", end) ||
              lcm_jx_put_i64(d, "boot_lead_minutes", def->boot_lead_minutes) ||
              lcm_jx_put_bool(d, "lds_enabled", def->lds_enabled) ||
              lcm_jx_put_bool(d, "grading_enabled", def->grading_enabled))) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "session.created", d, now, by, err);
}

static int transition(const struct lcm_session *s, int to, const char *reason,
                      const char *xkey, const char *xval, const char *by, int64_t now,
                      struct lcm_events *out, struct lcm_derr *err)
{
    const struct lcm_fsm *m = &lcm_fsm_session;
    if (known(s, err))
        return err->code;
    if (to < 0 || to >= LCM_SS__COUNT)
        return lcm_derr_set(err, LCM_DERR_INVALID, "status", "unknown status");
    if (!lcm_fsm_allowed(m, s->status, to))
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "status", "session cannot go from %s to %s",
                            lcm_fsm_name(m, s->status), lcm_fsm_name(m, to));
    if (reason && *reason && !lcm_text_ok(reason, 512, 1))
        return lcm_derr_set(err, LCM_DERR_INVALID, "reason", "reason too long or not printable");
    cJSON *d = lcm_events_transition_data(m, s->status, reason);
    if (d && xkey && lcm_jx_put_str(d, xkey, xval)) {
        cJSON_Delete(d);
        d = NULL;
    }
    char type[48];
    snprintf(type, sizeof type, "session.%s", lcm_fsm_name(m, to));
    return emit(out, type, d, now, by, err);
}

int lcm_session_cmd_transition(const struct lcm_session *s, enum lcm_session_status to,
                               const char *reason, const char *by, int64_t now,
                               struct lcm_events *out, struct lcm_derr *err)
{
    if (to == LCM_SS_SCHEDULED && s->version && lcm_fsm_allowed(&lcm_fsm_session, s->status, to))
        return lcm_derr_set(err, LCM_DERR_INVALID, "worker_id",
                            "scheduling needs a worker (lcm_session_cmd_schedule)");
    return transition(s, (int)to, reason, NULL, NULL, by, now, out, err);
}

int lcm_session_cmd_schedule(const struct lcm_session *s, const char *worker_id,
                             const char *reason, const char *by, int64_t now,
                             struct lcm_events *out, struct lcm_derr *err)
{
    if (!lcm_text_ok(worker_id, 128, 0))
        return lcm_derr_set(err, LCM_DERR_INVALID, "worker_id", "worker_id is required");
    return transition(s, LCM_SS_SCHEDULED, reason, "worker_id", worker_id, by, now, out, err);
}

int lcm_session_cmd_ready(const struct lcm_session *s, const char *login_url, const char *by,
                          int64_t now, struct lcm_events *out, struct lcm_derr *err)
{
    if (login_url && *login_url && !lcm_text_ok(login_url, 4096, 0))
        return lcm_derr_set(err, LCM_DERR_INVALID, "login_url", "login_url is not printable");
    return transition(s, LCM_SS_READY, NULL, login_url && *login_url ? "login_url" : NULL,
                      login_url, by, now, out, err);
}

int lcm_session_cmd_extend(const struct lcm_session *s, int64_t new_end,
                           int32_t max_duration_minutes, const char *by, int64_t now,
                           struct lcm_events *out, struct lcm_derr *err)
{
    if (known(s, err))
        return err->code;
    if (s->status >= LCM_SS_STOPPING)
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "status", "a %s session cannot be extended",
                            lcm_fsm_name(&lcm_fsm_session, s->status));
    if (new_end <= s->end || new_end <= now)
        return lcm_derr_set(err, LCM_DERR_INVALID, "end",
                            "end must be later than the current end and now");
    int64_t base = s->start ? s->start : s->created_at;
    if (max_duration_minutes > 0 && new_end - base > (int64_t)max_duration_minutes * 60)
        return lcm_derr_set(err, LCM_DERR_INVALID, "end",
                            "the timeslot would exceed %d minutes", max_duration_minutes);
    cJSON *d = cJSON_CreateObject();
    if (d && lcm_jx_put_time(d, "end", new_end)) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "session.extended", d, now, by, err);
}

int lcm_session_cmd_set_desired(const struct lcm_session *s, enum lcm_session_status desired,
                                const char *by, int64_t now, struct lcm_events *out,
                                struct lcm_derr *err)
{
    return lcm_session_cmd_request(s, desired, NULL, by, now, out, err);
}

int lcm_session_cmd_request(const struct lcm_session *s, enum lcm_session_status desired,
                            const char *reason, const char *by, int64_t now,
                            struct lcm_events *out, struct lcm_derr *err)
{
    if (known(s, err))
        return err->code;
    if (desired != LCM_SS_RUNNING && desired != LCM_SS_STOPPED && desired != LCM_SS_TERMINATED)
        return lcm_derr_set(err, LCM_DERR_INVALID, "desired_status",
                            "desired_status must be running, stopped or terminated");
    if (reason && *reason && !lcm_text_ok(reason, 400, 1))
        return lcm_derr_set(err, LCM_DERR_INVALID, "reason",
                            "reason must be at most 400 printable characters");
    /* the first request stands: asking again (with another reason) changes nothing */
    if (s->desired_status == desired)
        return 0;
    cJSON *d = cJSON_CreateObject();
    if (d && (lcm_jx_put_str(d, "desired_status", lcm_fsm_name(&lcm_fsm_session, (int)desired)) ||
              (reason && *reason && lcm_jx_put_str(d, "reason", reason)))) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "session.desired", d, now, by, err);
}

int lcm_session_cmd_bind_lab(const struct lcm_session *s, const char *lab_record_id,
                             const char *cml_lab_id, const char *by, int64_t now,
                             struct lcm_events *out, struct lcm_derr *err)
{
    if (known(s, err))
        return err->code;
    if (!lcm_text_ok(lab_record_id, 128, 0))
        return lcm_derr_set(err, LCM_DERR_INVALID, "lab_record_id", "lab_record_id is required");
    if (cml_lab_id && *cml_lab_id && !lcm_text_ok(cml_lab_id, 128, 0))
        return lcm_derr_set(err, LCM_DERR_INVALID, "cml_lab_id", "bad cml_lab_id");
    if (s->status != LCM_SS_INSTANTIATING)
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "status",
                            "a lab is bound while instantiating, not when %s",
                            lcm_fsm_name(&lcm_fsm_session, s->status));
    cJSON *d = cJSON_CreateObject();
    if (d && (lcm_jx_put_str(d, "lab_record_id", lab_record_id) ||
              lcm_jx_put_str(d, "cml_lab_id", cml_lab_id))) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "session.lab_bound", d, now, by, err);
}

int lcm_session_cmd_set_ports(const struct lcm_session *s, const char *const *names,
                              const uint16_t *ports, size_t n, const char *by, int64_t now,
                              struct lcm_events *out, struct lcm_derr *err)
{
    if (known(s, err))
        return err->code;
    if (n > 256)
        return lcm_derr_set(err, LCM_DERR_INVALID, "ports", "too many ports");
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
    return emit(out, "session.ports_assigned", d, now, by, err);
}

int lcm_session_cmd_step(const struct lcm_session *s, enum lcm_step step,
                         enum lcm_step_state state, const char *error, const char *by,
                         int64_t now, struct lcm_events *out, struct lcm_derr *err)
{
    if (known(s, err))
        return err->code;
    if ((int)step < 0 || step >= LCM_STEP__COUNT)
        return lcm_derr_set(err, LCM_DERR_INVALID, "step", "unknown step");
    if ((int)state <= LCM_STEP_NONE || state >= LCM_STEP_STATE__COUNT)
        return lcm_derr_set(err, LCM_DERR_INVALID, "state", "unknown step state");
    if (error && *error && !lcm_text_ok(error, 1024, 1))
        return lcm_derr_set(err, LCM_DERR_INVALID, "error", "error text not printable");
    cJSON *d = cJSON_CreateObject();
    if (d && (lcm_jx_put_str(d, "step", step_names[step]) ||
              lcm_jx_put_str(d, "state", step_state_names[state]) ||
              lcm_jx_put_str(d, "error", error))) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "session.step", d, now, by, err);
}

int lcm_session_cmd_user_session(const struct lcm_session *s, const char *lds_session_id,
                                 const char *login_url, const char *devices_json,
                                 const char *status, const char *by, int64_t now,
                                 struct lcm_events *out, struct lcm_derr *err)
{
    if (known(s, err))
        return err->code;
    cJSON *d = cJSON_CreateObject();
    if (!d)
        return lcm_derr_set(err, LCM_DERR_NOMEM, "", "out of memory");
    const char *keys[] = {"lds_session_id", "login_url", "status"};
    const char *vals[] = {lds_session_id, login_url, status};
    for (int i = 0; i < 3; i++) {
        if (!vals[i])
            continue;
        if (!lcm_text_ok(vals[i], 4096, 0)) {
            cJSON_Delete(d);
            return lcm_derr_set(err, LCM_DERR_INVALID, keys[i], "user_session.%s is not valid",
                                keys[i]);
        }
        lcm_jx_put_str(d, keys[i], vals[i]);
    }
    if (devices_json) {
        cJSON *dev = cJSON_Parse(devices_json);
        if (!cJSON_IsArray(dev)) {
            cJSON_Delete(dev);
            cJSON_Delete(d);
            return lcm_derr_set(err, LCM_DERR_INVALID, "devices",
                                "user_session.devices must be a JSON array");
        }
        cJSON_AddItemToObject(d, "devices", dev);
    }
    return emit(out, "session.user_session", d, now, by, err);
}

int lcm_session_cmd_grading(const struct lcm_session *s, const char *grading_session_id,
                            const char *status, const char *by, int64_t now,
                            struct lcm_events *out, struct lcm_derr *err)
{
    if (known(s, err))
        return err->code;
    if ((grading_session_id && !lcm_text_ok(grading_session_id, 256, 0)) ||
        (status && !lcm_text_ok(status, 64, 1)))
        return lcm_derr_set(err, LCM_DERR_INVALID,
                            grading_session_id && !lcm_text_ok(grading_session_id, 256, 0)
                                ? "grading_session_id" : "status",
                            "bad grading session value");
    cJSON *d = cJSON_CreateObject();
    if (d && ((grading_session_id && lcm_jx_put_str(d, "grading_session_id", grading_session_id)) ||
              (status && lcm_jx_put_str(d, "status", status)))) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "session.grading_updated", d, now, by, err);
}

int lcm_session_cmd_score(const struct lcm_session *s, const cJSON *report, const char *by,
                          int64_t now, struct lcm_events *out, struct lcm_derr *err)
{
    if (known(s, err))
        return err->code;
    if (s->status != LCM_SS_GRADING && s->status != LCM_SS_COLLECTING)
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "status",
                            "a score is recorded while collecting or grading, not when %s",
                            lcm_fsm_name(&lcm_fsm_session, s->status));
    double score, max, cut = 0;
    int passed, rp;
    int64_t sub;
    if (!cJSON_IsObject(report))
        return lcm_derr_set(err, LCM_DERR_INVALID, "score", "score report must be an object");
    if (lcm_jx_num(report, "score", &score) != 1 || score < 0)
        return lcm_derr_set(err, LCM_DERR_INVALID, "score.score", "score.score must be ≥ 0");
    if (lcm_jx_num(report, "max_score", &max) != 1 || max < score)
        return lcm_derr_set(err, LCM_DERR_INVALID, "score.max_score",
                            "score.max_score must be a number ≥ score");
    if (lcm_jx_num(report, "cut_score", &cut) < 0 || cut < 0 || cut > max)
        return lcm_derr_set(err, LCM_DERR_INVALID, "score.cut_score",
                            "score.cut_score must be within [0, max_score]");
    if ((rp = lcm_jx_bool(report, "passed", &passed)) < 0)
        return lcm_derr_set(err, LCM_DERR_INVALID, "score.passed", "must be a boolean");
    if (lcm_jx_time(report, "submitted_at", &sub) < 0)
        return lcm_derr_set(err, LCM_DERR_INVALID, "score.submitted_at", "must be RFC 3339");
    const cJSON *sec = cJSON_GetObjectItemCaseSensitive(report, "sections");
    if (sec && !cJSON_IsNull(sec) && !cJSON_IsArray(sec))
        return lcm_derr_set(err, LCM_DERR_INVALID, "score.sections", "must be an array");
    if (rp == 0)
        passed = lcm_jx_num(report, "cut_score", &cut) == 1 ? score >= cut : -1;
    cJSON *d = cJSON_CreateObject();
    if (d && (!cJSON_AddNumberToObject(d, "score", score) ||
              !cJSON_AddNumberToObject(d, "max_score", max) ||
              !cJSON_AddNumberToObject(d, "cut_score", cut) ||
              (passed < 0 ? !cJSON_AddNullToObject(d, "passed") : lcm_jx_put_bool(d, "passed", passed)) ||
              (sec && cJSON_IsArray(sec) &&
               !cJSON_AddItemToObject(d, "sections", cJSON_Duplicate(sec, 1))) ||
              lcm_jx_put_time(d, "submitted_at", sub ? sub : now))) {
        cJSON_Delete(d);
        d = NULL;
    }
    return emit(out, "session.scored", d, now, by, err);
}

/* ---- apply --------------------------------------------------------------------------- */

static int apply_created(struct lcm_session *s, const cJSON *d, const char *by, int64_t at)
{
    struct lcm_session n;
    memset(&n, 0, sizeof n);
    n.desired_status = LCM_SS_RUNNING;
    n.score.passed = -1;
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(d, "timeslot");
    int64_t bl = -1;
    int lds = 0, gr = 0;
    if (str_field(d, "definition_id", &n.definition_id) || !n.definition_id ||
        str_field(d, "definition_name", &n.definition_name) ||
        str_field(d, "definition_version", &n.definition_version) ||
        str_field(d, "owner", &n.owner) || str_field(d, "reservation_id", &n.reservation_id) ||
        !cJSON_IsObject(ts) || lcm_jx_time(ts, "start", &n.start) < 0 ||
        lcm_jx_time(ts, "end", &n.end) != 1 || (n.start && n.end <= n.start) ||
        lcm_jx_i64(d, "boot_lead_minutes", &bl) < 0 || bl < -1 || bl > 24 * 60 ||
        lcm_jx_bool(d, "lds_enabled", &lds) < 0 || lcm_jx_bool(d, "grading_enabled", &gr) < 0 ||
        !(n.created_by = strdup(by ? by : "system"))) {
        ss_clear(&n);
        return -1;
    }
    n.boot_lead_minutes = (int16_t)bl;
    n.lds_enabled = (uint8_t)lds;
    n.grading_enabled = (uint8_t)gr;
    n.status = LCM_SS_PENDING;
    n.created_at = at;
    n.id = s->id;
    *s = n;
    return 0;
}

static int apply_step(struct lcm_session *s, const cJSON *d, int64_t at)
{
    const char *v, *e;
    int step = lcm_jx_str(d, "step", &v) == 1 ? lcm_step_parse(v) : -1;
    int st = lcm_jx_str(d, "state", &v) == 1 ? lcm_step_state_parse(v) : -1;
    if (step < 0 || st <= 0 || lcm_jx_str(d, "error", &e) < 0)
        return -1;
    struct lcm_step_progress *p = &s->steps[step];
    if (st == LCM_STEP_FAILED && lcm_set_str(&p->error, e))
        return -1;
    if (st == LCM_STEP_STARTED) {
        p->started_at = at;
        p->ended_at = 0;
        if (p->attempts < 255)
            p->attempts++;
    } else {
        p->ended_at = at;
    }
    if (st == LCM_STEP_DONE || st == LCM_STEP_SKIPPED)
        lcm_set_str(&p->error, NULL);
    p->state = (uint8_t)st;
    return 0;
}

static int apply_user_session(struct lcm_session *s, const cJSON *d)
{
    const char *v;
    if (lcm_jx_str(d, "lds_session_id", &v) < 0 || lcm_jx_str(d, "login_url", &v) < 0 ||
        lcm_jx_str(d, "status", &v) < 0)
        return -1;
    const cJSON *dev = cJSON_GetObjectItemCaseSensitive(d, "devices");
    if (dev && !cJSON_IsNull(dev) && !cJSON_IsArray(dev))
        return -1;
    if ((lcm_jx_str(d, "lds_session_id", &v) == 1 && lcm_set_str(&s->user_session.lds_session_id, v)) ||
        (lcm_jx_str(d, "login_url", &v) == 1 && lcm_set_str(&s->user_session.login_url, v)) ||
        (lcm_jx_str(d, "status", &v) == 1 && lcm_set_str(&s->user_session.status, v)) ||
        (dev && cJSON_IsArray(dev) && raw_field(d, "devices", &s->user_session.devices_json)))
        return -1;
    return 0;
}

static int k_apply(void *state, const struct lcm_event *ev, char *err, size_t errlen)
{
    struct lcm_session *s = state;
    const struct lcm_fsm *m = &lcm_fsm_session;
    int64_t at;
    const cJSON *d = ev->data;
    const char *v;
    if (lcm_events_check(ev, s->version, &at, err, errlen))
        return -1;
    if (strncmp(ev->type, "session.", 8))
        goto unknown;
    const char *t = ev->type + 8;
    int rc = 0;
    if (!strcmp(t, "created")) {
        if (s->version != 0)
            goto misplaced;
        rc = apply_created(s, d, ev->by, at);
    } else if (s->version == 0) {
        goto misplaced;
    } else if (!strcmp(t, "extended")) {
        int64_t end;
        rc = (lcm_jx_time(d, "end", &end) == 1 && end > s->end) ? 0 : -1;
        if (!rc)
            s->end = end;
    } else if (!strcmp(t, "desired")) {
        int ds = lcm_jx_str(d, "desired_status", &v) == 1 ? lcm_fsm_parse(m, v) : -1;
        const char *why = NULL;
        rc = (ds == LCM_SS_RUNNING || ds == LCM_SS_STOPPED || ds == LCM_SS_TERMINATED) &&
             lcm_jx_str(d, "reason", &why) >= 0 ? 0 : -1;
        if (!rc)
            rc = lcm_set_str(&s->desired_reason, why) || lcm_set_str(&s->desired_by, ev->by) ? -1 : 0;
        if (!rc)
            s->desired_status = (uint8_t)ds;
    } else if (!strcmp(t, "lab_bound")) {
        const char *c;
        rc = (lcm_jx_str(d, "lab_record_id", &v) == 1 && lcm_jx_str(d, "cml_lab_id", &c) >= 0 &&
              !lcm_set_str(&s->lab_record_id, v) && !lcm_set_str(&s->cml_lab_id, c)) ? 0 : -1;
    } else if (!strcmp(t, "ports_assigned")) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(d, "ports");
        rc = ports_load(s, p);
    } else if (!strcmp(t, "step")) {
        rc = apply_step(s, d, at);
    } else if (!strcmp(t, "user_session")) {
        rc = apply_user_session(s, d);
    } else if (!strcmp(t, "grading_updated")) {
        rc = (lcm_jx_str(d, "grading_session_id", &v) >= 0 &&
              (!v || !lcm_set_str(&s->grading.grading_session_id, v)) &&
              lcm_jx_str(d, "status", &v) >= 0 && (!v || !lcm_set_str(&s->grading.status, v)))
                 ? 0 : -1;
    } else if (!strcmp(t, "scored")) {
        rc = score_load(s, d, 1);
    } else if (!strcmp(t, "cloudevent_received")) {
        /* An external CloudEvent (LDS, grading) recorded before it was acknowledged; the
         * session controller acts on it. It changes no state here, only the version. */
        const cJSON *ce = cJSON_GetObjectItemCaseSensitive(d, "cloudevent");
        const char *ty, *cid, *src;
        rc = (cJSON_IsObject(ce) && lcm_jx_str(ce, "type", &ty) == 1 &&
              lcm_jx_str(ce, "id", &cid) == 1 && lcm_jx_str(ce, "source", &src) == 1) ? 0 : -1;
    } else {
        int to = lcm_fsm_parse(m, t);
        if (to < 0)
            goto unknown;
        const char *wid = NULL, *url = NULL;
        if (to == LCM_SS_SCHEDULED && lcm_jx_str(d, "worker_id", &wid) != 1)
            goto bad;
        if (lcm_jx_str(d, "login_url", &url) < 0)
            goto bad;
        if (lcm_history_apply_transition(m, &s->status, &s->history, to, ev, at, err, errlen))
            return -1;
        if (wid)
            lcm_set_str(&s->worker_id, wid);
        if (url)
            lcm_set_str(&s->user_session.login_url, url);
    }
    if (rc)
        goto bad;
    s->updated_at = at;
    s->version++;
    return 0;
bad:
    lcm_errf(err, errlen, "%s does not fit session %s (status %s)", ev->type,
             s->id ? s->id : "?", lcm_fsm_name(m, s->status));
    return -1;
misplaced:
    lcm_errf(err, errlen, "%s at version %llu", ev->type, (unsigned long long)s->version);
    return -1;
unknown:
    lcm_errf(err, errlen, "unknown event type %s", ev->type);
    return -1;
}

/* ---- kind ---------------------------------------------------------------------------- */

static void *k_create(const char *id) { return lcm_session_new(id); }
static void k_destroy(void *st) { lcm_session_free(st); }
static uint64_t k_version(const void *st) { return ((const struct lcm_session *)st)->version; }
static cJSON *k_to_json(const void *st) { return ss_json(st); }

/* Gives c, a bit copy of s, its own copies of what they share (see lcm_kind_glue.own). */
static int k_own(void *cp, const void *st)
{
    struct lcm_session *c = cp;
    const struct lcm_session *s = st;
    char **strs[] = { &c->id, &c->definition_id, &c->definition_name, &c->definition_version,
                      &c->owner, &c->reservation_id, &c->desired_reason, &c->desired_by,
                      &c->worker_id, &c->lab_record_id, &c->cml_lab_id,
                      &c->user_session.lds_session_id, &c->user_session.login_url,
                      &c->user_session.devices_json, &c->user_session.status,
                      &c->grading.grading_session_id, &c->grading.status,
                      &c->score.sections_json, &c->created_by };
    int rc = lcm_clone_strs(strs, sizeof strs / sizeof *strs);
    for (int i = 0; i < LCM_STEP__COUNT; i++)
        rc |= lcm_clone_str(&c->steps[i].error);
    if (s->ports) {
        c->ports = malloc((s->nports ? s->nports : 1) * sizeof *c->ports);
        if (!c->ports)
            c->nports = 0;
        for (uint16_t i = 0; c->ports && i < s->nports; i++) {
            c->ports[i] = s->ports[i];
            rc |= lcm_clone_str(&c->ports[i].name);
        }
        rc |= !c->ports;
    }
    rc |= lcm_history_clone(&c->history, &s->history);
    return rc;
}

static void k_clear(void *st) { ss_clear(st); }
static int k_load(const cJSON *o, void *st, char *err, size_t errlen)
{
    return ss_load(o, st, err, errlen);
}

static const struct lcm_kind_glue glue = {
    .size = sizeof(struct lcm_session), .id_off = offsetof(struct lcm_session, id),
    .version_off = offsetof(struct lcm_session, version), .create = k_create,
    .destroy = k_destroy, .clear = k_clear, .load = k_load, .own = k_own};

static void *k_clone(const void *st) { return lcm_kind_glue_clone(&glue, st); }

static void k_fields(const void *st, lcm_field_emit_fn emitf, void *ud)
{
    lcm_kind_glue_fields(ss_json(st), NULL, emitf, ud);
}

static void k_indexes(const void *st, lcm_index_emit_fn emitf, void *ud)
{
    const struct lcm_session *s = st;
    char key[320];
    if (s->version == 0)
        return;
    emitf(&(struct lcm_index_entry){.key = "lcm:idx:session:all"}, ud);
    snprintf(key, sizeof key, "lcm:idx:session:status:%s", lcm_fsm_name(&lcm_fsm_session, s->status));
    emitf(&(struct lcm_index_entry){.key = key}, ud);
    emitf(&(struct lcm_index_entry){.key = "lcm:idx:session:start", .sorted = 1,
                                    .score = (double)(s->start ? s->start : s->created_at)},
          ud);
    if (s->worker_id && lcm_session_holds_capacity(s->status)) {
        snprintf(key, sizeof key, "lcm:idx:session:worker:%s", s->worker_id);
        emitf(&(struct lcm_index_entry){.key = key}, ud);
    }
    if (s->reservation_id) {
        snprintf(key, sizeof key, "lcm:idx:session:reservation:%s", s->reservation_id);
        emitf(&(struct lcm_index_entry){.key = key, .unique = 1}, ud);
    }
}

static int k_from_fields(void *state, const char *const *fields, const char *const *values,
                         size_t n, char *err, size_t errlen)
{
    return lcm_kind_glue_from_fields(&glue, state, fields, values, n, err, errlen);
}

const struct lcm_kind lcm_kind_session = {
    .name = "session",
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
