/* Pure helpers of the lds plugin: defensive parsers for LDS answers (any byte string in, a
 * bounded and checked result or LCM_E_PROTO out), the request bodies, URL escaping and the
 * rewriting of launch URLs onto the region's frontend. */
#include "lds_parse.h"
#include "plugkit.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#define LDS_MAX_BODY (8u << 20)

int lds_id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > LDS_MAX_ID)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!(isalnum(c) || c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return strcmp(id, ".") != 0 && strcmp(id, "..") != 0;
}

/* A string member that fits cap (with its NUL); NULL when absent, not a string or too long. */
static const char *str_member(const cJSON *o, const char *k, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(v) || !v->valuestring || strlen(v->valuestring) + 1 > cap)
        return NULL;
    return v->valuestring;
}

int lds_parse_created(const char *body, size_t len, char *id, size_t cap, char *why,
                      size_t whylen)
{
    cJSON *j = lcm_pk_json_parse(body, len, LDS_MAX_BODY, why, whylen);
    if (!j)
        return LCM_E_PROTO;
    int rc = LCM_E_PROTO;
    char cand[LDS_MAX_ID + 1] = "";
    if (!cJSON_IsObject(j)) {
        lcm_pk_set_why(why, whylen, "creation answer is not an object");
        goto out;
    }
    const char *sid = str_member(j, "session_id", sizeof cand);
    if (sid) {
        snprintf(cand, sizeof cand, "%s", sid);
    } else {
        /* location: http://…/reservations/v3/lab_session/<uuid> */
        const cJSON *loc = cJSON_GetObjectItemCaseSensitive(j, "location");
        if (cJSON_IsString(loc) && loc->valuestring) {
            const char *s = loc->valuestring;
            size_t n = strlen(s);
            while (n > 0 && s[n - 1] == '/')
                n--;
            size_t b = n;
            while (b > 0 && s[b - 1] != '/')
                b--;
            if (n > b && n - b <= LDS_MAX_ID) {
                memcpy(cand, s + b, n - b);
                cand[n - b] = '\0';
            }
        }
    }
    if (!lds_id_ok(cand)) {
        lcm_pk_set_why(why, whylen, "creation answer has no usable session_id");
        goto out;
    }
    if (strlen(cand) + 1 > cap) {
        lcm_pk_set_why(why, whylen, "session id too long");
        goto out;
    }
    memcpy(id, cand, strlen(cand) + 1);
    rc = 0;
out:
    cJSON_Delete(j);
    return rc;
}

/* The session_part_state of j's current part (current_session_part, 1-based; the first part
 * when absent or out of range) into out, when there is one. */
static void current_part_state(const cJSON *j, const cJSON *parts, struct lds_session_info *out)
{
    const cJSON *cur = cJSON_GetObjectItemCaseSensitive(j, "current_session_part");
    long idx = 1;
    if (cJSON_IsNumber(cur) && cur->valuedouble >= 1 && cur->valuedouble <= 1000)
        idx = (long)cur->valuedouble;
    const cJSON *part = cJSON_IsArray(parts) ? cJSON_GetArrayItem(parts, (int)(idx - 1)) : NULL;
    if (!part && cJSON_IsArray(parts))
        part = cJSON_GetArrayItem(parts, 0);
    if (cJSON_IsObject(part)) {
        const char *ps = str_member(part, "session_part_state", sizeof out->part_state);
        if (ps) {
            snprintf(out->part_state, sizeof out->part_state, "%s", ps);
            out->has_part_state = 1;
        }
    }
}

int lds_parse_session(const char *body, size_t len, struct lds_session_info *out, char *why,
                      size_t whylen)
{
    memset(out, 0, sizeof *out);
    cJSON *j = lcm_pk_json_parse(body, len, LDS_MAX_BODY, why, whylen);
    if (!j)
        return LCM_E_PROTO;
    int rc = LCM_E_PROTO;
    if (!cJSON_IsObject(j)) {
        lcm_pk_set_why(why, whylen, "session is not an object");
        goto out;
    }
    const char *id = str_member(j, "id", sizeof out->id);
    if (!id || !lds_id_ok(id)) {
        lcm_pk_set_why(why, whylen, "session has no usable id");
        goto out;
    }
    snprintf(out->id, sizeof out->id, "%s", id);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "state");
    if (cJSON_IsString(st) && st->valuestring) {
        if (strlen(st->valuestring) > LDS_MAX_STATE) {
            lcm_pk_set_why(why, whylen, "session state too long");
            goto out;
        }
        snprintf(out->state, sizeof out->state, "%s", st->valuestring);
    } else if (st && !cJSON_IsNull(st)) {
        lcm_pk_set_why(why, whylen, "session state is not a string");
        goto out;
    }
    const cJSON *fin = cJSON_GetObjectItemCaseSensitive(j, "is_finalized");
    if (fin && !cJSON_IsBool(fin) && !cJSON_IsNull(fin)) {
        lcm_pk_set_why(why, whylen, "is_finalized is not a boolean");
        goto out;
    }
    out->is_finalized = cJSON_IsTrue(fin);
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(j, "session_parts");
    if (parts && !cJSON_IsArray(parts) && !cJSON_IsNull(parts)) {
        lcm_pk_set_why(why, whylen, "session_parts is not an array");
        goto out;
    }
    current_part_state(j, parts, out);
    rc = 0;
out:
    cJSON_Delete(j);
    return rc;
}

/* A boolean member that may be absent or null (then 0): 0/1, or -1 when it is anything else. */
static int opt_bool(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (v && !cJSON_IsBool(v) && !cJSON_IsNull(v))
        return -1;
    return cJSON_IsTrue(v);
}

/* Reads one report entry whose auth_id is ours: -1 (malformed, why set), 0 (not a match) or
 * 1 (a match, info filled, *created_us set when *dated). */
static int report_entry(const cJSON *e, const struct lds_find_query *q,
                        struct lds_session_info *info, int64_t *created_us, int *dated,
                        char *why, size_t whylen)
{
    memset(info, 0, sizeof *info);
    const char *id = str_member(e, "id", sizeof info->id);
    if (!id || !lds_id_ok(id)) {
        lcm_pk_set_why(why, whylen, "report session has no usable id");
        return -1;
    }
    snprintf(info->id, sizeof info->id, "%s", id);
    int fin = opt_bool(e, "session_finalized"), fin2 = opt_bool(e, "is_finalized");
    if (fin < 0 || fin2 < 0) {
        lcm_pk_set_why(why, whylen, "report session_finalized is not a boolean");
        return -1;
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(e, "session_state");
    if (cJSON_IsString(st) && st->valuestring) {
        if (strlen(st->valuestring) > LDS_MAX_STATE) {
            lcm_pk_set_why(why, whylen, "report session_state too long");
            return -1;
        }
        snprintf(info->state, sizeof info->state, "%s", st->valuestring);
    } else if (st && !cJSON_IsNull(st)) {
        lcm_pk_set_why(why, whylen, "report session_state is not a string");
        return -1;
    }
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(e, "session_parts");
    if (parts && !cJSON_IsArray(parts) && !cJSON_IsNull(parts)) {
        lcm_pk_set_why(why, whylen, "report session_parts is not an array");
        return -1;
    }
    /* No parts listed: LDS's own fqn filter is all there is to go by. */
    int has_form = cJSON_GetArraySize(parts) == 0;
    const cJSON *plist = cJSON_IsArray(parts) ? parts : NULL, *p;
    cJSON_ArrayForEach(p, plist)
    {
        if (!cJSON_IsObject(p)) {
            lcm_pk_set_why(why, whylen, "report session part is not an object");
            return -1;
        }
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(p, "form_qualified_name");
        if (cJSON_IsString(f) && f->valuestring && strcmp(f->valuestring, q->fqn) == 0)
            has_form = 1;
    }
    if (fin || fin2 || !has_form)
        return 0;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "created");
    *dated = cJSON_IsString(c) && c->valuestring &&
             lcm_pk_rfc3339_us(c->valuestring, 0, created_us) == 0;
    if (*dated && q->created_after_ms > 0 && *created_us < q->created_after_ms * 1000)
        return 0;
    current_part_state(e, parts, info);
    return 1;
}

int lds_parse_report_find(const char *body, size_t len, const struct lds_find_query *q,
                          struct lds_session_info *out, int *found, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    *found = 0;
    if (!q || !q->auth_id || !q->fqn || q->created_after_ms < 0 ||
        q->created_after_ms > LDS_MAX_TIME_MS) {
        lcm_pk_set_why(why, whylen, "bad query");
        return LCM_E_INVAL;
    }
    cJSON *j = lcm_pk_json_parse(body, len, LDS_MAX_BODY, why, whylen);
    if (!j)
        return LCM_E_PROTO;
    int rc = LCM_E_PROTO, best_dated = 0;
    int64_t best_us = 0;
    const cJSON *list = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "lab_sessions")
                                          : NULL;
    if (!cJSON_IsArray(list)) {
        lcm_pk_set_why(why, whylen, "report has no lab_sessions array");
        goto out;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, list)
    {
        if (!cJSON_IsObject(e)) {
            lcm_pk_set_why(why, whylen, "report entry is not an object");
            goto out;
        }
        const cJSON *aid = cJSON_GetObjectItemCaseSensitive(e, "auth_id");
        if (!cJSON_IsString(aid) || !aid->valuestring || strcmp(aid->valuestring, q->auth_id))
            continue;
        struct lds_session_info info;
        int64_t us = 0;
        int dated = 0;
        int m = report_entry(e, q, &info, &us, &dated, why, whylen);
        if (m < 0)
            goto out;
        /* Newest wins: dated above undated, ties to the later entry. */
        if (m == 1 && (!*found || (dated && (!best_dated || us >= best_us)) ||
                       (!dated && !best_dated))) {
            *out = info;
            *found = 1;
            best_dated = dated;
            best_us = us;
        }
    }
    rc = 0;
out:
    if (rc != 0) {
        memset(out, 0, sizeof *out);
        *found = 0;
    }
    cJSON_Delete(j);
    return rc;
}

int lds_parse_launch_url(const char *body, size_t len, char *url, size_t cap, char *why,
                         size_t whylen)
{
    cJSON *j = lcm_pk_json_parse(body, len, LDS_MAX_BODY, why, whylen);
    if (!j)
        return LCM_E_PROTO;
    int rc = LCM_E_PROTO;
    const cJSON *u = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "url") : NULL;
    if (!cJSON_IsString(u) || !u->valuestring || !u->valuestring[0]) {
        lcm_pk_set_why(why, whylen, "launch answer has no url");
        goto out;
    }
    if (strlen(u->valuestring) + 1 > cap || strlen(u->valuestring) > LDS_MAX_URL) {
        lcm_pk_set_why(why, whylen, "launch url too long");
        goto out;
    }
    memcpy(url, u->valuestring, strlen(u->valuestring) + 1);
    rc = 0;
out:
    cJSON_Delete(j);
    return rc;
}

int lds_parse_devices(const char *body, size_t len, size_t *n, char *why, size_t whylen)
{
    *n = 0;
    cJSON *j = lcm_pk_json_parse(body, len, LDS_MAX_BODY, why, whylen);
    if (!j)
        return LCM_E_PROTO;
    int rc = LCM_E_PROTO;
    if (!cJSON_IsArray(j)) {
        lcm_pk_set_why(why, whylen, "devices answer is not an array");
        goto out;
    }
    const cJSON *d;
    cJSON_ArrayForEach(d, j)
    {
        if (!cJSON_IsObject(d)) {
            lcm_pk_set_why(why, whylen, "device is not an object");
            goto out;
        }
        (*n)++;
    }
    rc = 0;
out:
    cJSON_Delete(j);
    return rc;
}

void lds_parse_error_text(const char *body, size_t len, char *out, size_t cap)
{
    if (!out || cap == 0)
        return;
    out[0] = '\0';
    size_t o = 0;
    if (!body || len == 0)
        return;
    cJSON *j = len <= LDS_MAX_BODY ? cJSON_ParseWithLength(body, len) : NULL;
    if (cJSON_IsObject(j)) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "message");
        if (!cJSON_IsString(m))
            m = cJSON_GetObjectItemCaseSensitive(j, "detail");
        if (cJSON_IsString(m))
            lcm_pk_append_printable(out, cap, &o, m->valuestring);
        const cJSON *errs = cJSON_GetObjectItemCaseSensitive(j, "errors");
        const cJSON *e;
        int first = 1;
        if (cJSON_IsObject(errs)) {
            cJSON_ArrayForEach(e, errs)
            {
                lcm_pk_append_printable(out, cap, &o, first ? (o ? " (" : "(") : ", ");
                first = 0;
                lcm_pk_append_printable(out, cap, &o, e->string);
                if (cJSON_IsString(e)) {
                    lcm_pk_append_printable(out, cap, &o, ": ");
                    lcm_pk_append_printable(out, cap, &o, e->valuestring);
                }
            }
            if (!first)
                lcm_pk_append_printable(out, cap, &o, ")");
        }
        cJSON_Delete(j);
        return;
    }
    cJSON_Delete(j);
    lcm_pk_printable_prefix(body, len, out, cap);
}

static int url_chars_ok(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '<' || c == '>' || c == '\\')
            return 0;
    }
    return 1;
}

static int http_scheme(const char *s)
{
    return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

int lds_launch_rewrite(const char *url, const char *frontend, char *out, size_t cap, char *why,
                       size_t whylen)
{
    const char *rest;
    int fe = frontend && *frontend;
    if (!url || !*url || !out || cap == 0) {
        lcm_pk_set_why(why, whylen, "empty launch url");
        return -1;
    }
    if (fe && (!http_scheme(frontend) || !url_chars_ok(frontend))) {
        lcm_pk_set_why(why, whylen, "frontend url is not an http(s) URL");
        return -1;
    }
    if (url[0] == '/' && url[1] != '/') {
        rest = url;                        /* relative: path[?query] */
    } else if (http_scheme(url)) {
        if (!fe) {
            rest = NULL;
        } else {
            const char *h = strstr(url, "://") + 3;
            rest = h + strcspn(h, "/?#");  /* path after the origin (may be "") */
        }
    } else {
        lcm_pk_set_why(why, whylen, "launch url is neither http(s) nor relative");
        return -1;
    }
    int n;
    if (!rest) {
        n = snprintf(out, cap, "%s", url);
    } else if (!fe) {
        lcm_pk_set_why(why, whylen, "relative launch url and no frontend url configured");
        return -1;
    } else {
        size_t fl = strlen(frontend);
        while (fl > 0 && frontend[fl - 1] == '/')
            fl--;
        if (*rest && *rest != '/')
            n = snprintf(out, cap, "%.*s/%s", (int)fl, frontend, rest);
        else
            n = snprintf(out, cap, "%.*s%s", (int)fl, frontend, rest);
    }
    if (n < 0 || (size_t)n >= cap || (size_t)n > LDS_MAX_URL) {
        lcm_pk_set_why(why, whylen, "launch url too long");
        return -1;
    }
    if (!url_chars_ok(out) || !http_scheme(out)) {
        lcm_pk_set_why(why, whylen, "launch url has characters not allowed in a URL");
        return -1;
    }
    return 0;
}

void lds_rfc3339(int64_t ms, char *out, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, cap, "1970-01-01T00:00:00Z");
}

char *lds_build_create_body(const struct lcm_lds_create_args *a,
                            const struct lds_create_defaults *d, int64_t now_ms)
{
    char ts[40];
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    int ok = 1;
#define ADD_S(k, v) ok = ok && cJSON_AddStringToObject(o, k, v) != NULL
    ADD_S("origin", d->origin);
    ADD_S("auth_id", a->external_id);
    ADD_S("auth_id_type", d->auth_id_type);
    ADD_S("candidate_id", a->candidate_id);
    ADD_S("location", d->location);
    ok = ok && cJSON_AddNumberToObject(o, "timezone_offset", d->timezone_offset) != NULL;
    ADD_S("first_name", a->first_name && *a->first_name ? a->first_name : "-");
    ADD_S("last_name", a->last_name && *a->last_name ? a->last_name : "-");
    ADD_S("rack_group", d->rack_group);
    ADD_S("rack_number", d->rack_number);
    lds_rfc3339(a->timeslot_start_ms > 0 ? a->timeslot_start_ms : now_ms, ts, sizeof ts);
    ADD_S("scheduled_date", ts);
    if (a->email && *a->email)
        ADD_S("email_address", a->email);
    if (a->timeslot_end_ms > 0) {
        lds_rfc3339(a->timeslot_end_ms, ts, sizeof ts);
        ADD_S("user_timeslot_end", ts);
    }
#undef ADD_S
    if (a->max_length_minutes > 0)
        ok = ok && cJSON_AddNumberToObject(o, "max_length_minutes", a->max_length_minutes);
    cJSON *parts = ok ? cJSON_AddArrayToObject(o, "session_parts") : NULL;
    cJSON *p = parts ? cJSON_CreateObject() : NULL;
    if (p) {
        cJSON_AddItemToArray(parts, p);
        ok = cJSON_AddStringToObject(p, "repository_type", "minio") &&
             cJSON_AddStringToObject(p, "form_qualified_name", a->form_qualified_name);
    }
    char *s = ok && p ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

char *lds_build_devices_body(const struct lcm_lds_device *v, size_t n)
{
    cJSON *arr = cJSON_CreateArray();
    int ok = arr != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        cJSON *d = cJSON_CreateObject();
        if (!d) {
            ok = 0;
            break;
        }
        cJSON_AddItemToArray(arr, d);
        ok = cJSON_AddStringToObject(d, "device_label", v[i].device_label) &&
             cJSON_AddStringToObject(d, "protocol", v[i].protocol) &&
             cJSON_AddStringToObject(d, "host", v[i].host);
        if (ok && v[i].port > 0)
            ok = cJSON_AddNumberToObject(d, "port", v[i].port) != NULL;
        if (ok && v[i].password && *v[i].password)
            ok = cJSON_AddStringToObject(d, "password", v[i].password) != NULL;
    }
    char *s = ok ? cJSON_PrintUnformatted(arr) : NULL;
    /* The tree holds passwords too: wipe them before freeing. */
    cJSON *d;
    cJSON_ArrayForEach(d, arr)
    {
        cJSON *pw = cJSON_GetObjectItemCaseSensitive(d, "password");
        if (cJSON_IsString(pw) && pw->valuestring)
            memset(pw->valuestring, 0, strlen(pw->valuestring));
    }
    cJSON_Delete(arr);
    return s;
}
