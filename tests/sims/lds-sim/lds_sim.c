/* lds-sim: a stand-in for the LDS Reservations API v3 (reference/lds/), sessions and parts kept in
 * memory, plus admin routes that play the learner (login/pause/finish/end) and post the matching
 * LDS CloudEvents to lcmd. See docs/simulators.md. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "plugkit.h"   /* lcm_pk_rfc3339_us, shared with the plugins */
#include "simkit.h"

struct lds_part {
    char *repository_type, *fqn, *track, *exam_version;
    cJSON *variables; /* object or NULL */
    cJSON *devices;   /* array, as last PUT */
    char state[24];
};

struct lds_session {
    char id[37];
    char log_id[37];
    char created[32];  /* RFC 3339 UTC with microseconds, as LDS (Python) answers it */
    int64_t created_us; /* the same as Unix microseconds: reports filter and sort on it */
    char state[24];
    int finalized;
    int timer_paused;
    cJSON *input; /* the create body without session_parts: the echoed descriptive fields */
    int nparts;
    struct lds_part *parts;
    char *launch_token; /* issued with the first launch URL */
    int launch_urls, logins, devices_puts;
    char last_event_id[37];
    char last_event_type[128];
};

struct lds_content {
    int refreshes;
    char refreshed_at[32];
};

struct lds {
    struct simkit *kit;
    const char *username, *password, *frontend_url;
    char *expected_auth; /* "Basic <b64>" */
    struct simkit_map *sessions; /* id -> struct lds_session */
    struct simkit_map *content;  /* fqn -> struct lds_content */
    unsigned long n_created, n_released, n_auth_failures, n_reports;
};

/* ---------------------------------------------------------------- replies */

/* LDS (Flask-RESTX) error body: {"message": "..."} */
static void lds_error(struct evhttp_request *req, int status, const char *detail)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "message", detail);
    if (status == 401)
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                          "Basic realm=\"LDS\"");
    simkit_reply_json(req, status, j);
}

static void lds_validation_error(struct evhttp_request *req, const char *field, const char *msg)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *errs = cJSON_AddObjectToObject(j, "errors");
    cJSON_AddStringToObject(errs, field, msg);
    cJSON_AddStringToObject(j, "message", "Input payload validation failed");
    simkit_reply_json(req, 400, j);
}

/* ---------------------------------------------------------------- time */

/* Now as a session's created: RFC 3339 UTC with microseconds, and as Unix microseconds. */
static void now_created(char out[32], int64_t *us)
{
    struct timespec ts;
    struct tm tm;
    char date[24];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    unsigned usec = (unsigned)(ts.tv_nsec / 1000) % 1000000u;
    snprintf(out, 32, "%.19s.%06uZ", date, usec);
    *us = (int64_t)ts.tv_sec * 1000000 + usec;
}

/* ---------------------------------------------------------------- model */

static void part_clear(struct lds_part *p)
{
    free(p->repository_type);
    free(p->fqn);
    free(p->track);
    free(p->exam_version);
    cJSON_Delete(p->variables);
    cJSON_Delete(p->devices);
}

static void session_free(struct lds_session *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->nparts; i++)
        part_clear(&s->parts[i]);
    free(s->parts);
    cJSON_Delete(s->input);
    free(s->launch_token);
    free(s);
}

static void session_set_state(struct lds_session *s, const char *state)
{
    snprintf(s->state, sizeof s->state, "%s", state);
    for (int i = 0; i < s->nparts; i++)
        snprintf(s->parts[i].state, sizeof s->parts[i].state, "%s", state);
}

static char *dup_str_item(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

static cJSON *part_json(const struct lds_part *p)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "repository_type", p->repository_type);
    if (p->fqn)
        cJSON_AddStringToObject(j, "form_qualified_name", p->fqn);
    if (p->track)
        cJSON_AddStringToObject(j, "track", p->track);
    if (p->exam_version)
        cJSON_AddStringToObject(j, "exam_version", p->exam_version);
    cJSON_AddStringToObject(j, "session_part_state", p->state);
    cJSON_AddItemToObject(j, "variables",
                          p->variables ? cJSON_Duplicate(p->variables, 1) : cJSON_CreateObject());
    return j;
}

/* The schema types rack_number as a string while its own example sends 1: answer a string. */
static void add_rack_number(cJSON *j, const cJSON *input)
{
    const cJSON *rn = cJSON_GetObjectItemCaseSensitive(input, "rack_number");
    if (cJSON_IsString(rn)) {
        cJSON_AddStringToObject(j, "rack_number", rn->valuestring);
    } else if (cJSON_IsNumber(rn)) {
        char b[32];
        snprintf(b, sizeof b, "%d", rn->valueint);
        cJSON_AddStringToObject(j, "rack_number", b);
    }
}

/* The LDSSession schema's readable fields. */
static cJSON *session_json(const struct lds_session *s)
{
    static const char *const echo[] = {"origin", "auth_id", "auth_id_type", "candidate_id",
                                       "location", "first_name", "last_name", "rack_group",
                                       "scheduled_date", "email_address", NULL};
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", s->id);
    for (int i = 0; echo[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->input, echo[i]);
        if (v)
            cJSON_AddItemToObject(j, echo[i], cJSON_Duplicate(v, 1));
    }
    const cJSON *tz = cJSON_GetObjectItemCaseSensitive(s->input, "timezone_offset");
    cJSON_AddNumberToObject(j, "timezone_offset", cJSON_IsNumber(tz) ? tz->valueint : 0);
    add_rack_number(j, s->input);
    cJSON_AddStringToObject(j, "state", s->state);
    cJSON_AddBoolToObject(j, "is_finalized", s->finalized);
    cJSON_AddStringToObject(j, "log_id", s->log_id);
    cJSON_AddBoolToObject(j, "active_reservation", !s->finalized);
    cJSON_AddBoolToObject(j, "timer_paused", s->timer_paused);
    cJSON_AddStringToObject(j, "created", s->created);
    cJSON_AddNumberToObject(j, "current_session_part", s->nparts > 0 ? 1 : 0);
    cJSON *parts = cJSON_AddArrayToObject(j, "session_parts");
    for (int i = 0; i < s->nparts; i++)
        cJSON_AddItemToArray(parts, part_json(&s->parts[i]));
    return j;
}

/* ---------------------------------------------------------------- validation */

/* Checks the LDSSession create body; returns the offending field (and message) or NULL. */
static const char *check_session(const cJSON *b, const char **msg)
{
    static const char *const req_str[] = {"auth_id", "auth_id_type", "candidate_id",
                                          "first_name", "last_name", "location", "origin",
                                          "rack_group", "scheduled_date", NULL};
    static char m[160];
    for (int i = 0; req_str[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, req_str[i]);
        if (!v) {
            snprintf(m, sizeof m, "'%s' is a required property", req_str[i]);
            *msg = m;
            return req_str[i];
        }
        if (!cJSON_IsString(v)) {
            snprintf(m, sizeof m, "%s is not of type 'string'", req_str[i]);
            *msg = m;
            return req_str[i];
        }
    }
    const cJSON *tz = cJSON_GetObjectItemCaseSensitive(b, "timezone_offset");
    if (!tz) {
        *msg = "'timezone_offset' is a required property";
        return "timezone_offset";
    }
    if (!cJSON_IsNumber(tz) || tz->valuedouble != (double)tz->valueint) {
        *msg = "timezone_offset is not of type 'integer'";
        return "timezone_offset";
    }
    const cJSON *rn = cJSON_GetObjectItemCaseSensitive(b, "rack_number");
    if (!rn) {
        *msg = "'rack_number' is a required property";
        return "rack_number";
    }
    if (!cJSON_IsString(rn) && !cJSON_IsNumber(rn)) {
        *msg = "rack_number is not of type 'string'";
        return "rack_number";
    }
    static const char *const opt_str[] = {"email_address", "password", "user_timeslot_end", NULL};
    for (int i = 0; opt_str[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, opt_str[i]);
        if (v && !cJSON_IsString(v) && !cJSON_IsNull(v)) {
            snprintf(m, sizeof m, "%s is not of type 'string'", opt_str[i]);
            *msg = m;
            return opt_str[i];
        }
    }
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(b, "session_parts");
    if (parts && !cJSON_IsArray(parts)) {
        *msg = "session_parts is not of type 'array'";
        return "session_parts";
    }
    const cJSON *p;
    cJSON_ArrayForEach(p, parts) {
        const cJSON *rt = cJSON_GetObjectItemCaseSensitive(p, "repository_type");
        const cJSON *fqn = cJSON_GetObjectItemCaseSensitive(p, "form_qualified_name");
        const cJSON *track = cJSON_GetObjectItemCaseSensitive(p, "track");
        const cJSON *ev = cJSON_GetObjectItemCaseSensitive(p, "exam_version");
        const cJSON *vars = cJSON_GetObjectItemCaseSensitive(p, "variables");
        if (!cJSON_IsObject(p)) {
            *msg = "session part is not of type 'object'";
            return "session_parts";
        }
        if (rt && (!cJSON_IsString(rt) || (strcmp(rt->valuestring, "svn") != 0 &&
                                           strcmp(rt->valuestring, "minio") != 0))) {
            *msg = "repository_type is not one of ['svn', 'minio']";
            return "session_parts.repository_type";
        }
        if ((fqn && !cJSON_IsString(fqn)) || (track && !cJSON_IsString(track)) ||
            (ev && !cJSON_IsString(ev))) {
            *msg = "form_qualified_name, track and exam_version are strings";
            return "session_parts";
        }
        if (vars && !cJSON_IsObject(vars)) {
            *msg = "variables is not of type 'object'";
            return "session_parts.variables";
        }
        int minio = rt && strcmp(rt->valuestring, "minio") == 0;
        if (minio && !fqn) {
            *msg = "a minio part needs form_qualified_name";
            return "session_parts.form_qualified_name";
        }
        if (!minio && !fqn && !(track && ev)) {
            *msg = "an svn part needs track and exam_version (or form_qualified_name)";
            return "session_parts";
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------- events */

static int emit_state(struct lds *l, struct lds_session *s, const char *what, const char *suffix,
                      const char *by, char *id_out)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "lds_session_id", s->id);
    cJSON_AddStringToObject(d, "session_id", s->id);
    cJSON_AddNumberToObject(d, "part", 1);
    cJSON_AddStringToObject(d, "state", s->state);
    if (s->nparts > 0 && s->parts[0].fqn)
        cJSON_AddStringToObject(d, "form_qualified_name", s->parts[0].fqn);
    const cJSON *aid = cJSON_GetObjectItemCaseSensitive(s->input, "auth_id");
    const cJSON *cid = cJSON_GetObjectItemCaseSensitive(s->input, "candidate_id");
    if (cJSON_IsString(aid))
        cJSON_AddStringToObject(d, "auth_id", aid->valuestring);
    if (cJSON_IsString(cid))
        cJSON_AddStringToObject(d, "candidate_id", cid->valuestring);
    if (by)
        cJSON_AddStringToObject(d, "ended_by", by);
    cJSON_AddStringToObject(d, "event", what);
    if (simkit_emit(l->kit, suffix, s->id, d, s->last_event_id) < 0)
        return -1;
    snprintf(s->last_event_type, sizeof s->last_event_type, "%s", simkit_type(l->kit, suffix));
    if (id_out)
        memcpy(id_out, s->last_event_id, 37);
    return 0;
}

/* ---------------------------------------------------------------- API handlers */

static void create_session(struct lds *l, struct evhttp_request *req)
{
    int empty;
    cJSON *b = simkit_body_json(req, &empty);
    const char *msg = NULL, *field;
    struct lds_session *s = NULL;
    if (!cJSON_IsObject(b)) {
        lds_error(req, 400, empty ? "a JSON body is required" : "the body is not a JSON object");
        goto out;
    }
    if ((field = check_session(b, &msg))) {
        lds_validation_error(req, field, msg);
        goto out;
    }
    s = calloc(1, sizeof *s);
    if (!s)
        goto oom;
    simkit_uuid(s->id);
    simkit_uuid(s->log_id);
    now_created(s->created, &s->created_us);
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(b, "session_parts");
    s->nparts = cJSON_GetArraySize(parts);
    if (s->nparts > 0 && !(s->parts = calloc((size_t)s->nparts, sizeof *s->parts)))
        goto oom;
    int i = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, parts) {
        struct lds_part *lp = &s->parts[i++];
        lp->repository_type = dup_str_item(p, "repository_type");
        if (!lp->repository_type)
            lp->repository_type = strdup("svn");
        lp->fqn = dup_str_item(p, "form_qualified_name");
        lp->track = dup_str_item(p, "track");
        lp->exam_version = dup_str_item(p, "exam_version");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, "variables");
        lp->variables = v ? cJSON_Duplicate(v, 1) : NULL;
        lp->devices = cJSON_CreateArray();
    }
    cJSON_DeleteItemFromObjectCaseSensitive(b, "session_parts");
    cJSON_DeleteItemFromObjectCaseSensitive(b, "password"); /* never echoed or kept */
    s->input = b;
    b = NULL;
    session_set_state(s, "created");
    if (simkit_map_put(l->sessions, s->id, s) < 0)
        goto oom;
    l->n_created++;
    char loc[256];
    snprintf(loc, sizeof loc, "%s/reservations/v3/lab_session/%s", simkit_self_url(l->kit), s->id);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "location", loc);
    cJSON_AddStringToObject(j, "message", "Session created");
    cJSON_AddStringToObject(j, "session_id", s->id);
    simkit_log(l->kit, "info", "msg=\"lds session created\" lds_session_id=%s parts=%d", s->id,
               s->nparts);
    s = NULL;
    simkit_reply_json(req, 200, j);
    goto out;
oom:
    lds_error(req, 500, "out of memory");
out:
    session_free(s);
    cJSON_Delete(b);
}

static void put_devices(struct lds *l, struct lds_session *s, struct lds_part *p,
                        struct evhttp_request *req)
{
    int empty;
    cJSON *b = simkit_body_json(req, &empty);
    cJSON *out = NULL;
    if (!cJSON_IsArray(b)) {
        lds_error(req, 400, empty ? "a JSON array of devices is required"
                                  : "the body is not a JSON array");
        goto done;
    }
    out = cJSON_CreateArray();
    const cJSON *d;
    int idx = 0;
    cJSON_ArrayForEach(d, b) {
        const cJSON *label = cJSON_GetObjectItemCaseSensitive(d, "device_label");
        const cJSON *proto = cJSON_GetObjectItemCaseSensitive(d, "protocol");
        const cJSON *host = cJSON_GetObjectItemCaseSensitive(d, "host");
        const cJSON *port = cJSON_GetObjectItemCaseSensitive(d, "port");
        const cJSON *pw = cJSON_GetObjectItemCaseSensitive(d, "password");
        char field[64];
        const char *bad = NULL;
        if (!cJSON_IsObject(d))
            bad = "is not of type 'object'";
        else if (!cJSON_IsString(label) || !*label->valuestring)
            bad = "device_label: a non-empty string is required";
        else if (!cJSON_IsString(proto) || !*proto->valuestring)
            bad = "protocol: a non-empty string is required";
        else if (!cJSON_IsString(host) || !*host->valuestring)
            bad = "host: a non-empty string is required";
        else if (port && !cJSON_IsNull(port) &&
                 (!cJSON_IsNumber(port) || port->valuedouble != (double)port->valueint ||
                  port->valueint < 1 || port->valueint > 65535))
            bad = "port: an integer 1..65535 or null";
        else if (pw && !cJSON_IsNull(pw) && !cJSON_IsString(pw))
            bad = "password: a string or null";
        if (bad) {
            snprintf(field, sizeof field, "%d", idx);
            lds_validation_error(req, field, bad);
            goto done;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "device_label", label->valuestring);
        cJSON_AddStringToObject(o, "protocol", proto->valuestring);
        cJSON_AddStringToObject(o, "host", host->valuestring);
        if (cJSON_IsNumber(port))
            cJSON_AddNumberToObject(o, "port", port->valueint);
        else
            cJSON_AddNullToObject(o, "port");
        if (cJSON_IsString(pw))
            cJSON_AddStringToObject(o, "password", pw->valuestring);
        else
            cJSON_AddNullToObject(o, "password");
        cJSON_AddItemToArray(out, o);
        idx++;
    }
    cJSON_Delete(p->devices);
    p->devices = out;
    out = NULL;
    s->devices_puts++;
    simkit_log(l->kit, "info", "msg=\"devices set\" lds_session_id=%s devices=%d", s->id, idx);
    simkit_reply_json(req, 200, cJSON_Duplicate(p->devices, 1));
done:
    cJSON_Delete(out);
    cJSON_Delete(b);
}

static char *make_launch_token(const struct lds_session *s)
{
    char payload[256];
    const char *hdr = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
    snprintf(payload, sizeof payload, "{\"sub\":\"%s\",\"iss\":\"lds-sim\",\"iat\":%lld}", s->id,
             (long long)time(NULL));
    char *h = simkit_base64((const unsigned char *)hdr, strlen(hdr), 1);
    char *p = simkit_base64((const unsigned char *)payload, strlen(payload), 1);
    char *t = NULL;
    if (h && p && (t = malloc(strlen(h) + strlen(p) + 3)))
        sprintf(t, "%s.%s.", h, p); /* an unsigned JWT: the sim only checks it is the one issued */
    free(h);
    free(p);
    return t;
}

static int launch_url(struct lds *l, struct lds_session *s, char *out, size_t outlen)
{
    if (!s->launch_token && !(s->launch_token = make_launch_token(s)))
        return -1;
    const char *fe = l->frontend_url ? l->frontend_url : simkit_self_url(l->kit);
    size_t fl = strlen(fe);
    while (fl > 0 && fe[fl - 1] == '/')
        fl--;
    snprintf(out, outlen, "%.*s/lablet/%s?token=%s", (int)fl, fe, s->id, s->launch_token);
    return 0;
}

static void content_refresh(struct lds *l, struct evhttp_request *req, const char *fqn, int get)
{
    struct lds_content *c = simkit_map_get(l->content, fqn);
    if (get && !c) {
        lds_error(req, 404, "no lab folder for this form_qualified_name");
        return;
    }
    if (!get) {
        if (!c) {
            c = calloc(1, sizeof *c);
            if (!c || simkit_map_put(l->content, fqn, c) < 0) {
                free(c);
                lds_error(req, 500, "out of memory");
                return;
            }
        }
        c->refreshes++;
        simkit_now_rfc3339(c->refreshed_at);
    }
    /* the FQN reads like "Exam CCIE TEST v1 DES 1.1": derive the folder's ids from its words */
    char words[6][64] = {{0}};
    int nw = 0;
    const char *p = fqn;
    while (*p && nw < 6) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n == 0)
            break;
        snprintf(words[nw++], sizeof words[0], "%.*s", (int)(n < 63 ? n : 63), p);
        p += n;
    }
    char version[96];
    snprintf(version, sizeof version, "%s.%d", nw > 0 ? words[nw - 1] : "1", c->refreshes);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "DatePublished", c->refreshed_at);
    cJSON_AddStringToObject(j, "Version", version);
    cJSON_AddStringToObject(j, "Publisher", "lds-sim");
    cJSON_AddStringToObject(j, "Layout", "Lablet");
    cJSON_AddStringToObject(j, "FormName", fqn);
    cJSON_AddStringToObject(j, "FormStatus", "Published");
    cJSON_AddStringToObject(j, "FormId", fqn);
    cJSON_AddStringToObject(j, "FormSetId", nw > 2 ? words[2] : fqn);
    cJSON_AddStringToObject(j, "ModuleId", nw > 4 ? words[4] : fqn);
    cJSON_AddStringToObject(j, "ModuleTypeName", "Lablet");
    cJSON_AddStringToObject(j, "ExamId", nw > 2 ? words[2] : fqn);
    cJSON_AddStringToObject(j, "ExamVersion", nw > 3 ? words[3] : "v1");
    cJSON_AddStringToObject(j, "TrackId", nw > 1 ? words[1] : fqn);
    cJSON_AddStringToObject(j, "TrackShortName", nw > 1 ? words[1] : fqn);
    cJSON_AddStringToObject(j, "TrackLongName", nw > 1 ? words[1] : fqn);
    cJSON_AddStringToObject(j, "InstanceName", "lds-sim");
    cJSON_AddStringToObject(j, "InstanceType", "simulator");
    cJSON_AddStringToObject(j, "InstanceRegion", "local");
    cJSON_AddStringToObject(j, "InstanceAudience", "test");
    cJSON_AddStringToObject(j, "InstanceDB", "memory");
    cJSON_AddNumberToObject(j, "OutstandingCommentsCount", 0);
    cJSON_AddNumberToObject(j, "OutstandingRatings", 0);
    cJSON_AddBoolToObject(j, "ValidatedBeforePublishing", 1);
    cJSON_AddStringToObject(j, "stdout", get ? "" : "content refreshed from MinIO");
    cJSON_AddStringToObject(j, "stderr", "");
    simkit_reply_json(req, 200, j);
}

/* ---------------------------------------------------------------- reporting */

/* A ReportingLabSessionPart: what the sim knows of it, rpt_* counters 0. */
static cJSON *report_part_json(const struct lds_session *s, const struct lds_part *p)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "created", s->created);
    if (p->exam_version)
        cJSON_AddStringToObject(j, "exam_version", p->exam_version);
    if (p->fqn)
        cJSON_AddStringToObject(j, "form_qualified_name", p->fqn);
    cJSON_AddStringToObject(j, "repository_type", p->repository_type);
    cJSON_AddNumberToObject(j, "rpt_feedback_count", 0);
    cJSON_AddNumberToObject(j, "rpt_session_duration", 0);
    cJSON_AddBoolToObject(j, "rpt_timer_expired", 0);
    cJSON_AddStringToObject(j, "session_part_state", p->state);
    if (p->track)
        cJSON_AddStringToObject(j, "track", p->track);
    return j;
}

/* A ReportingLabSession: the session's readable fields under the report's names. */
static cJSON *report_json(const struct lds_session *s)
{
    static const char *const echo[] = {"auth_id", "auth_id_type", "email_address", "first_name",
                                       "last_name", "location", "rack_group", "scheduled_date",
                                       NULL};
    static const char *const rpt[] = {
        "rpt_child_window_content_count", "rpt_child_window_devices_count",
        "rpt_child_window_resources_count", "rpt_total_child_window_count",
        "rpt_total_devices_focus_count", "rpt_total_feedback_count",
        "rpt_total_guidelines_focus_count", "rpt_total_navigation_event_count",
        "rpt_total_response_count", "rpt_total_session_duration", "rpt_total_timer_expired",
        "rpt_total_window_focus_changes_count", "rpt_window_content_focus_count",
        "rpt_window_resources_focus_count", NULL};
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "active_reservation", !s->finalized);
    for (int i = 0; echo[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->input, echo[i]);
        if (cJSON_IsString(v))
            cJSON_AddStringToObject(j, echo[i], v->valuestring);
    }
    cJSON_AddStringToObject(j, "created", s->created);
    cJSON_AddNumberToObject(j, "current_session_part", s->nparts > 0 ? 1 : 0);
    cJSON_AddStringToObject(j, "id", s->id);
    cJSON_AddStringToObject(j, "log_id", s->log_id);
    const cJSON *origin = cJSON_GetObjectItemCaseSensitive(s->input, "origin");
    if (cJSON_IsString(origin))
        cJSON_AddStringToObject(j, "origin_id", origin->valuestring);
    add_rack_number(j, s->input);
    for (int i = 0; rpt[i]; i++)
        cJSON_AddNumberToObject(j, rpt[i], 0);
    cJSON_AddBoolToObject(j, "session_finalized", s->finalized);
    cJSON *parts = cJSON_AddArrayToObject(j, "session_parts");
    for (int i = 0; i < s->nparts; i++)
        cJSON_AddItemToArray(parts, report_part_json(s, &s->parts[i]));
    cJSON_AddStringToObject(j, "session_state", s->state);
    cJSON_AddBoolToObject(j, "timer_paused", s->timer_paused);
    const cJSON *tz = cJSON_GetObjectItemCaseSensitive(s->input, "timezone_offset");
    cJSON_AddNumberToObject(j, "timezone_offset", cJSON_IsNumber(tz) ? tz->valueint : 0);
    return j;
}

static int report_cmp(const void *a, const void *b)
{
    const struct lds_session *x = *(const struct lds_session *const *)a;
    const struct lds_session *y = *(const struct lds_session *const *)b;
    if (x->created_us != y->created_us)
        return x->created_us < y->created_us ? -1 : 1;
    return strcmp(x->id, y->id);
}

enum part_field { PF_FQN, PF_TRACK, PF_EXAM_VERSION };

/* 1 when a part of s has field equal to want. */
static int any_part(const struct lds_session *s, enum part_field field, const char *want)
{
    for (int i = 0; i < s->nparts; i++) {
        const struct lds_part *p = &s->parts[i];
        const char *v = field == PF_FQN ? p->fqn : field == PF_TRACK ? p->track : p->exam_version;
        if (v && strcmp(v, want) == 0)
            return 1;
    }
    return 0;
}

/* A query parameter, NULL when absent or empty (an empty filter filters nothing). */
static const char *param(struct evkeyvalq *q, const char *k)
{
    const char *v = evhttp_find_header(q, k);
    return v && *v ? v : NULL;
}

/* GET /reservations/v3/reporting/lab_session?from&to&fqn&track&exam_version&location&state:
 * LabSessionsReport {"lab_sessions": [ReportingLabSession]} sorted by created, then id. */
static void report_sessions(struct lds *l, struct evhttp_request *req)
{
    struct evkeyvalq q;
    const char *qs = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct lds_session **v = NULL;
    TAILQ_INIT(&q);
    if (qs && evhttp_parse_query_str(qs, &q) != 0) {
        lds_error(req, 400, "malformed query string");
        goto out;
    }
    int64_t from = INT64_MIN, to = INT64_MAX;
    const char *f = param(&q, "from"), *t = param(&q, "to");
    const char *bad = f && lcm_pk_rfc3339_us(f, 1, &from) < 0 ? "from"
                      : t && lcm_pk_rfc3339_us(t, 1, &to) < 0 ? "to"
                                                           : NULL;
    if (bad) {
        lds_validation_error(req, bad, "not an RFC 3339 date-time (e.g. 2026-01-01T10:00:00Z)");
        goto out;
    }
    const char *fqn = param(&q, "fqn"), *track = param(&q, "track");
    const char *ev = param(&q, "exam_version"), *loc = param(&q, "location");
    const char *state = param(&q, "state");
    size_t n = 0, cap = simkit_map_count(l->sessions);
    if (cap && !(v = calloc(cap, sizeof *v))) {
        lds_error(req, 500, "out of memory");
        goto out;
    }
    size_t pos = 0;
    const char *k;
    void *val;
    while (simkit_map_next(l->sessions, &pos, &k, &val)) {
        struct lds_session *s = val;
        const cJSON *sl = cJSON_GetObjectItemCaseSensitive(s->input, "location");
        if (s->created_us < from || s->created_us > to ||
            (fqn && !any_part(s, PF_FQN, fqn)) || (track && !any_part(s, PF_TRACK, track)) ||
            (ev && !any_part(s, PF_EXAM_VERSION, ev)) ||
            (loc && !(cJSON_IsString(sl) && strcmp(sl->valuestring, loc) == 0)) ||
            (state && strcmp(s->state, state) != 0))
            continue;
        v[n++] = s;
    }
    if (n > 1)
        qsort(v, n, sizeof *v, report_cmp);
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(j, "lab_sessions");
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, report_json(v[i]));
    l->n_reports++;
    simkit_reply_json(req, 200, j);
out:
    free(v);
    evhttp_clear_headers(&q);
}

static int authorized(struct lds *l, struct evhttp_request *req)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (h && strcmp(h, l->expected_auth) == 0)
        return 1;
    l->n_auth_failures++;
    return 0;
}

static int is_cmd(struct evhttp_request *req, enum evhttp_cmd_type c)
{
    return evhttp_request_get_command(req) == c;
}

static void api(struct lds *l, struct evhttp_request *req, char **segs, int n)
{
    /* segs[0..1] = reservations, v3 */
    if (!authorized(l, req)) {
        lds_error(req, 401, "Unauthorized");
        return;
    }
    if (n >= 3 && strcmp(segs[2], "lab_folder") == 0) {
        if (n == 5 && strcmp(segs[3], "minio") == 0) {
            if (is_cmd(req, EVHTTP_REQ_PUT) || is_cmd(req, EVHTTP_REQ_GET)) {
                content_refresh(l, req, segs[4], is_cmd(req, EVHTTP_REQ_GET));
                return;
            }
            lds_error(req, 405, "The method is not allowed for the requested URL.");
            return;
        }
        lds_error(req, 404, "not simulated");
        return;
    }
    if (n >= 3 && strcmp(segs[2], "reporting") == 0) {
        if (n == 4 && strcmp(segs[3], "lab_session") == 0) {
            if (is_cmd(req, EVHTTP_REQ_GET))
                report_sessions(l, req);
            else
                lds_error(req, 405, "The method is not allowed for the requested URL.");
            return;
        }
        lds_error(req, 404, "not simulated");
        return;
    }
    if (n < 3 || strcmp(segs[2], "lab_session") != 0) {
        lds_error(req, 404, "not found");
        return;
    }
    if (n == 3) {
        if (is_cmd(req, EVHTTP_REQ_POST)) {
            create_session(l, req);
        } else if (is_cmd(req, EVHTTP_REQ_GET)) {
            cJSON *arr = cJSON_CreateArray();
            size_t pos = 0;
            const char *k;
            void *v;
            while (simkit_map_next(l->sessions, &pos, &k, &v))
                cJSON_AddItemToArray(arr, session_json(v));
            simkit_reply_json(req, 200, arr);
        } else {
            lds_error(req, 405, "The method is not allowed for the requested URL.");
        }
        return;
    }
    struct lds_session *s = simkit_map_get(l->sessions, segs[3]);
    if (!s) {
        lds_error(req, 404, "LDS session not found");
        return;
    }
    if (n == 4) {
        if (!is_cmd(req, EVHTTP_REQ_GET)) {
            lds_error(req, 405, "The method is not allowed for the requested URL.");
            return;
        }
        simkit_reply_json(req, 200, session_json(s));
        return;
    }
    if (n == 5 && strcmp(segs[4], "release") == 0) {
        if (!is_cmd(req, EVHTTP_REQ_POST)) {
            lds_error(req, 405, "The method is not allowed for the requested URL.");
            return;
        }
        int empty;
        cJSON *b = simkit_body_json(req, &empty);
        int ok = !empty && (cJSON_IsObject(b) || cJSON_IsNull(b));
        cJSON_Delete(b);
        if (!ok) {
            lds_error(req, 400, "the body must be a JSON object ({})");
            return;
        }
        /* releasing twice answers 204 again: release is how lcmd tears down, and it retries */
        if (!s->finalized) {
            s->finalized = 1;
            session_set_state(s, "finalized");
            l->n_released++;
            simkit_log(l->kit, "info", "msg=\"lds session released\" lds_session_id=%s", s->id);
        }
        simkit_reply_empty(req, 204);
        return;
    }
    if (n == 5 && strcmp(segs[4], "lablet_launch_url") == 0) {
        if (!is_cmd(req, EVHTTP_REQ_GET)) {
            lds_error(req, 405, "The method is not allowed for the requested URL.");
            return;
        }
        if (s->finalized) {
            lds_error(req, 409, "the LDS session is finalized");
            return;
        }
        char url[1024];
        if (launch_url(l, s, url, sizeof url) < 0) {
            lds_error(req, 500, "out of memory");
            return;
        }
        s->launch_urls++;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "url", url);
        simkit_reply_json(req, 200, j);
        return;
    }
    if ((n == 6 || n == 7) && strcmp(segs[4], "part") == 0) {
        long pn;
        if (simkit_parse_int(segs[5], &pn) < 0 || pn < 1 || pn > s->nparts) {
            lds_error(req, 404, "LDS session part not found");
            return;
        }
        struct lds_part *p = &s->parts[pn - 1];
        if (n == 6 && is_cmd(req, EVHTTP_REQ_GET)) {
            simkit_reply_json(req, 200, part_json(p));
            return;
        }
        if (n == 7 && strcmp(segs[6], "devices") == 0) {
            if (is_cmd(req, EVHTTP_REQ_GET)) {
                simkit_reply_json(req, 200, cJSON_Duplicate(p->devices, 1));
                return;
            }
            if (is_cmd(req, EVHTTP_REQ_PUT)) {
                if (s->finalized) {
                    lds_error(req, 409, "the LDS session is finalized");
                    return;
                }
                put_devices(l, s, p, req);
                return;
            }
        }
        lds_error(req, 405, "The method is not allowed for the requested URL.");
        return;
    }
    lds_error(req, 404, "not simulated");
}

/* ---------------------------------------------------------------- learner and admin */

static cJSON *admin_session_json(struct lds *l, struct lds_session *s)
{
    cJSON *j = session_json(s);
    cJSON *parts = cJSON_GetObjectItemCaseSensitive(j, "session_parts");
    cJSON *pj;
    int i = 0;
    cJSON_ArrayForEach(pj, parts) {
        cJSON_AddItemToObject(pj, "devices", cJSON_Duplicate(s->parts[i].devices, 1));
        i++;
    }
    char url[1024];
    if (s->launch_token && launch_url(l, s, url, sizeof url) == 0)
        cJSON_AddStringToObject(j, "launch_url", url);
    cJSON_AddNumberToObject(j, "launch_urls_issued", s->launch_urls);
    cJSON_AddNumberToObject(j, "logins", s->logins);
    cJSON_AddNumberToObject(j, "devices_puts", s->devices_puts);
    if (s->last_event_id[0]) {
        cJSON_AddStringToObject(j, "last_event_id", s->last_event_id);
        cJSON_AddStringToObject(j, "last_event_type", s->last_event_type);
    }
    return j;
}

/* Plays the learner: login | pause | finish | end. */
static void learner_action(struct lds *l, struct lds_session *s, const char *action,
                           struct evhttp_request *req)
{
    const char *state, *suffix, *by = NULL;
    if (strcmp(action, "login") == 0) {
        state = "running";
        suffix = "lds.session.running.v1";
    } else if (strcmp(action, "pause") == 0 || strcmp(action, "paused") == 0) {
        state = "paused";
        suffix = "lds.session.paused.v1";
    } else if (strcmp(action, "finish") == 0 || strcmp(action, "user-finished") == 0) {
        state = "user_finished";
        suffix = "lds.session.user-finished.v1";
        by = "user";
    } else if (strcmp(action, "end") == 0 || strcmp(action, "ended") == 0) {
        state = "ended";
        suffix = "lds.session.ended.v1";
        by = "timeout";
    } else {
        lds_error(req, 404, "actions: login, pause, finish, end");
        return;
    }
    if (s->finalized) {
        lds_error(req, 409, "the LDS session is finalized");
        return;
    }
    if (strcmp(state, "running") == 0)
        s->logins++;
    s->timer_paused = strcmp(state, "paused") == 0;
    session_set_state(s, state);
    char id[37];
    if (emit_state(l, s, state, suffix, by, id) < 0) {
        lds_error(req, 500, "cannot queue the CloudEvent");
        return;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "lds_session_id", s->id);
    cJSON_AddStringToObject(j, "state", s->state);
    cJSON_AddStringToObject(j, "event_id", id);
    cJSON_AddStringToObject(j, "event_type", s->last_event_type);
    simkit_reply_json(req, 202, j);
}

/* GET <frontend>/lablet/{id}?token=…: the learner opening the launch URL logs in. */
static void frontend(struct lds *l, struct evhttp_request *req, const char *id)
{
    struct lds_session *s = simkit_map_get(l->sessions, id);
    char token[1024];
    if (!s || !s->launch_token || simkit_query(req, "token", token, sizeof token) < 0 ||
        strcmp(token, s->launch_token) != 0) {
        lds_error(req, 403, "invalid or unknown launch link");
        return;
    }
    if (s->finalized) {
        lds_error(req, 410, "this lab session has ended");
        return;
    }
    if (strcmp(s->state, "running") != 0) {
        session_set_state(s, "running");
        s->logins++;
        s->timer_paused = 0;
        emit_state(l, s, "running", "lds.session.running.v1", NULL, NULL);
    }
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b,
                        "<!doctype html><title>lds-sim lablet</title><h1>Simulated LDS</h1>"
                        "<p>Lab session %s is running.</p>\n",
                        s->id);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/html; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

static void admin(struct lds *l, struct evhttp_request *req, char **segs, int n)
{
    if (n == 2 && strcmp(segs[1], "sessions") == 0 && is_cmd(req, EVHTTP_REQ_GET)) {
        cJSON *arr = cJSON_CreateArray();
        size_t pos = 0;
        const char *k;
        void *v;
        while (simkit_map_next(l->sessions, &pos, &k, &v))
            cJSON_AddItemToArray(arr, admin_session_json(l, v));
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "count", cJSON_GetArraySize(arr));
        cJSON_AddItemToObject(j, "sessions", arr);
        simkit_reply_json(req, 200, j);
        return;
    }
    if (n == 2 && strcmp(segs[1], "content") == 0 && is_cmd(req, EVHTTP_REQ_GET)) {
        cJSON *j = cJSON_CreateObject();
        size_t pos = 0;
        const char *k;
        void *v;
        while (simkit_map_next(l->content, &pos, &k, &v)) {
            struct lds_content *c = v;
            cJSON *o = cJSON_AddObjectToObject(j, k);
            cJSON_AddNumberToObject(o, "refreshes", c->refreshes);
            cJSON_AddStringToObject(o, "refreshed_at", c->refreshed_at);
        }
        simkit_reply_json(req, 200, j);
        return;
    }
    if (n == 2 && strcmp(segs[1], "reset") == 0 && is_cmd(req, EVHTTP_REQ_POST)) {
        size_t pos = 0;
        const char *k;
        void *v;
        while (simkit_map_next(l->sessions, &pos, &k, &v))
            session_free(v);
        simkit_map_free(l->sessions);
        l->sessions = simkit_map_new();
        simkit_reply_empty(req, 204);
        return;
    }
    if ((n == 3 || n == 4) && strcmp(segs[1], "sessions") == 0) {
        struct lds_session *s = simkit_map_get(l->sessions, segs[2]);
        if (!s) {
            lds_error(req, 404, "LDS session not found");
            return;
        }
        if (n == 3 && is_cmd(req, EVHTTP_REQ_GET)) {
            simkit_reply_json(req, 200, admin_session_json(l, s));
            return;
        }
        if (n == 4 && is_cmd(req, EVHTTP_REQ_POST)) {
            learner_action(l, s, segs[3], req);
            return;
        }
        lds_error(req, 405, "GET /_sim/sessions/{id}, POST /_sim/sessions/{id}/{action}");
        return;
    }
    lds_error(req, 404, "no such admin route");
}

static void lds_route(struct simkit *kit, struct evhttp_request *req, char **segs, int n, void *ud)
{
    struct lds *l = ud;
    if (n >= 2 && strcmp(segs[0], "reservations") == 0 && strcmp(segs[1], "v3") == 0) {
        api(l, req, segs, n);
        return;
    }
    if (n >= 1 && strcmp(segs[0], "_sim") == 0) {
        admin(l, req, segs, n);
        return;
    }
    if (n == 2 && strcmp(segs[0], "lablet") == 0 && is_cmd(req, EVHTTP_REQ_GET)) {
        frontend(l, req, segs[1]);
        return;
    }
    lds_error(req, 404, "The requested URL was not found on the server.");
}

static void lds_stats(struct simkit *kit, cJSON *stats, void *ud)
{
    struct lds *l = ud;
    cJSON *j = cJSON_AddObjectToObject(stats, "lds");
    cJSON_AddNumberToObject(j, "sessions", (double)simkit_map_count(l->sessions));
    cJSON_AddNumberToObject(j, "created", (double)l->n_created);
    cJSON_AddNumberToObject(j, "released", (double)l->n_released);
    cJSON_AddNumberToObject(j, "auth_failures", (double)l->n_auth_failures);
    cJSON_AddNumberToObject(j, "reports", (double)l->n_reports);
}

static void lds_shutdown(struct simkit *kit, void *ud)
{
    struct lds *l = ud;
    size_t pos = 0;
    const char *k;
    void *v;
    while (simkit_map_next(l->sessions, &pos, &k, &v))
        session_free(v);
    pos = 0;
    while (simkit_map_next(l->content, &pos, &k, &v))
        free(v);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lds-sim [options]\n"
            "Simulates the LDS Reservations API v3 and posts LDS CloudEvents to lcmd.\n"
            "  --username USER          HTTP Basic user (default lds)\n"
            "  --password PASS          HTTP Basic password (default lds)\n"
            "  --frontend-url URL       base of lablet launch URLs (default: this server)\n"
            "%s",
            simkit_common_usage());
}

int main(int argc, char **argv)
{
    struct simkit_opts o;
    struct lds l = {0};
    struct simkit *kit = NULL;
    char err[256];
    int rc = 1;
    simkit_opts_init(&o, "lds-sim");
    o.type_prefix = "com.cisco";
    l.username = "lds";
    l.password = "lds";
    for (int i = 1; i < argc; i++) {
        int r = simkit_parse_common(&o, argc, argv, &i);
        if (r < 0) {
            fprintf(stderr, "lds-sim: bad or missing value for %s\n", argv[i]);
            return 2;
        }
        if (r > 0)
            continue;
        const char **dst = NULL;
        if (strcmp(argv[i], "--username") == 0)
            dst = &l.username;
        else if (strcmp(argv[i], "--password") == 0)
            dst = &l.password;
        else if (strcmp(argv[i], "--frontend-url") == 0)
            dst = &l.frontend_url;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "lds-sim: unknown option or missing value: %s\n", argv[i]);
            usage(stderr);
            return 2;
        }
        *dst = argv[++i];
    }
    char cred[512];
    snprintf(cred, sizeof cred, "%s:%s", l.username, l.password);
    char *b64 = simkit_base64((const unsigned char *)cred, strlen(cred), 0);
    l.sessions = simkit_map_new();
    l.content = simkit_map_new();
    if (!b64 || !l.sessions || !l.content || !(l.expected_auth = malloc(strlen(b64) + 7)))
        goto out;
    sprintf(l.expected_auth, "Basic %s", b64);
    o.error_reply = lds_error;
    o.route = lds_route;
    o.stats = lds_stats;
    o.shutdown = lds_shutdown;
    o.ud = &l;
    if (simkit_new(&kit, &o, err, sizeof err) < 0) {
        fprintf(stderr, "lds-sim: %s\n", err);
        goto out;
    }
    l.kit = kit;
    rc = simkit_run(kit) < 0 ? 1 : 0;
out:
    simkit_free(kit);
    simkit_map_free(l.sessions);
    simkit_map_free(l.content);
    free(l.expected_auth);
    free(b64);
    return rc;
}
