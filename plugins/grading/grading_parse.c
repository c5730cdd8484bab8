/* Pure helpers of the grading plugin: defensive parsers (any byte string in, a bounded and
 * checked result or LCM_E_PROTO out) for token, Session and error answers, plus the create
 * body and percent-encoding. */
#include "grading_parse.h"
#include "plugkit.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#define GRD_MAX_BODY (8u << 20)

static const cJSON *member(const cJSON *o, const char *k)
{
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

int grd_parse_token(const char *body, size_t len, char *tok, size_t cap, long *expires_in_s,
                    char *why, size_t whylen)
{
    cJSON *j = lcm_pk_json_parse(body, len, GRD_MAX_BODY, why, whylen);
    if (!j)
        return LCM_E_PROTO;
    int rc = LCM_E_PROTO;
    const cJSON *at = member(j, "access_token");
    const cJSON *tt = member(j, "token_type");
    const cJSON *ex = member(j, "expires_in");
    if (!cJSON_IsString(at) || !at->valuestring || !at->valuestring[0]) {
        lcm_pk_set_why(why, whylen, "token answer has no access_token");
        goto out;
    }
    size_t n = strlen(at->valuestring);
    if (n > GRD_MAX_TOKEN || n + 1 > cap) {
        lcm_pk_set_why(why, whylen, "access_token too long");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)at->valuestring[i];
        if (c <= 0x20 || c >= 0x7f) {
            lcm_pk_set_why(why, whylen, "access_token has characters not allowed in a header");
            goto out;
        }
    }
    if (tt && !cJSON_IsNull(tt) &&
        !(cJSON_IsString(tt) && tt->valuestring && strcasecmp(tt->valuestring, "bearer") == 0)) {
        lcm_pk_set_why(why, whylen, "token_type is not Bearer");
        goto out;
    }
    double ttl = GRD_DEFAULT_TTL_S;
    if (cJSON_IsNumber(ex)) {
        ttl = ex->valuedouble;
    } else if (cJSON_IsString(ex) && ex->valuestring) {
        char *end;
        ttl = strtod(ex->valuestring, &end);
        if (end == ex->valuestring || *end) {
            lcm_pk_set_why(why, whylen, "expires_in is not a number");
            goto out;
        }
    } else if (ex && !cJSON_IsNull(ex)) {
        lcm_pk_set_why(why, whylen, "expires_in is not a number");
        goto out;
    }
    if (!isfinite(ttl) || ttl < 1)
        ttl = 1;
    if (ttl > GRD_MAX_TTL_S)
        ttl = GRD_MAX_TTL_S;
    memcpy(tok, at->valuestring, n + 1);
    *expires_in_s = (long)ttl;
    rc = 0;
out:
    /* The tree holds the token: wipe it before freeing. */
    if (cJSON_IsString(at) && at->valuestring)
        memset(at->valuestring, 0, strlen(at->valuestring));
    cJSON_Delete(j);
    return rc;
}

void grd_parse_error_text(const char *body, size_t len, char *out, size_t cap)
{
    if (!out || cap == 0)
        return;
    out[0] = '\0';
    size_t o = 0;
    if (!body || len == 0)
        return;
    cJSON *j = len <= GRD_MAX_BODY ? cJSON_ParseWithLength(body, len) : NULL;
    if (cJSON_IsObject(j)) {
        static const char *const keys[] = { "error", "error_description", "title", "detail",
                                            "message", NULL };
        for (int i = 0; keys[i]; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[i]);
            if (cJSON_IsString(v) && v->valuestring && v->valuestring[0]) {
                lcm_pk_append_printable(out, cap, &o, o ? ": " : "");
                lcm_pk_append_printable(out, cap, &o, v->valuestring);
            }
        }
        const cJSON *errs = cJSON_GetObjectItemCaseSensitive(j, "errors"), *e, *m;
        int first = 1;
        if (cJSON_IsObject(errs)) {
            cJSON_ArrayForEach(e, errs)
            {
                lcm_pk_append_printable(out, cap, &o, first ? " (" : "; ");
                first = 0;
                lcm_pk_append_printable(out, cap, &o, e->string);
                if (cJSON_IsArray(e)) {
                    cJSON_ArrayForEach(m, e)
                    {
                        if (cJSON_IsString(m)) {
                            lcm_pk_append_printable(out, cap, &o, " ");
                            lcm_pk_append_printable(out, cap, &o, m->valuestring);
                        }
                    }
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

/* The part with id part_id (NULL: the first) of a Session object, or NULL. */
static const cJSON *find_part(const cJSON *session, const char *part_id)
{
    const cJSON *parts = member(session, "parts"), *p;
    if (!cJSON_IsArray(parts))
        return NULL;
    cJSON_ArrayForEach(p, parts)
    {
        if (!cJSON_IsObject(p))
            continue;
        const cJSON *id = member(p, "id");
        if (!part_id || (cJSON_IsString(id) && id->valuestring &&
                         strcmp(id->valuestring, part_id) == 0))
            return p;
    }
    return NULL;
}

int grd_parse_session_part(const char *body, size_t len, const char *part_id, char *id,
                           size_t cap, int *has_part, char *why, size_t whylen)
{
    *has_part = 0;
    cJSON *j = lcm_pk_json_parse(body, len, GRD_MAX_BODY, why, whylen);
    if (!j)
        return LCM_E_PROTO;
    int rc = LCM_E_PROTO;
    const cJSON *sid = member(j, "id");
    if (!cJSON_IsString(sid) || !sid->valuestring || !sid->valuestring[0] ||
        strlen(sid->valuestring) > GRD_MAX_ID || strlen(sid->valuestring) + 1 > cap) {
        lcm_pk_set_why(why, whylen, "session has no usable id");
        goto out;
    }
    const cJSON *parts = member(j, "parts");
    if (parts && !cJSON_IsArray(parts) && !cJSON_IsNull(parts)) {
        lcm_pk_set_why(why, whylen, "parts is not an array");
        goto out;
    }
    memcpy(id, sid->valuestring, strlen(sid->valuestring) + 1);
    *has_part = part_id && find_part(j, part_id) != NULL;
    rc = 0;
out:
    cJSON_Delete(j);
    return rc;
}

static int num_member(const cJSON *o, const char *k, double *v)
{
    const cJSON *n = member(o, k);
    if (!cJSON_IsNumber(n) || !isfinite(n->valuedouble))
        return 0;
    *v = n->valuedouble;
    return 1;
}

static void copy_str(char *dst, size_t cap, const cJSON *v)
{
    dst[0] = '\0';
    if (cJSON_IsString(v) && v->valuestring) {
        size_t o = 0;
        lcm_pk_append_printable(dst, cap, &o, v->valuestring);
    }
}

void grd_result_free(struct grd_result_buf *b)
{
    free(b->secs);
    free(b->sec_ids);
    b->secs = NULL;
    b->sec_ids = NULL;
}

int grd_parse_result(const char *body, size_t len, const char *part_id,
                     struct grd_result_buf *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    cJSON *j = lcm_pk_json_parse(body, len, GRD_MAX_BODY, why, whylen);
    if (!j)
        return LCM_E_PROTO;
    int rc = LCM_E_PROTO;
    if (!cJSON_IsObject(j)) {
        lcm_pk_set_why(why, whylen, "session is not an object");
        goto out;
    }
    const cJSON *part = find_part(j, part_id);
    if (!part) {
        lcm_pk_set_why(why, whylen, part_id ? "session has no such part" : "session has no part");
        goto out;
    }
    copy_str(out->part_id, sizeof out->part_id, member(part, "id"));
    const cJSON *st = member(part, "status");
    if (!cJSON_IsString(st))
        st = member(j, "status");
    copy_str(out->status, sizeof out->status, st);
    copy_str(out->reason, sizeof out->reason, member(part, "statusReason"));
    struct lcm_grd_result *r = &out->r;
    r->status = out->status[0] ? out->status : "unknown";
    r->failed = strcasecmp(out->status, "Faulted") == 0 || strcasecmp(out->status, "Failed") == 0;
    r->passed = -1;
    const cJSON *rep = member(part, "scoreReport");
    if (rep && !cJSON_IsObject(rep) && !cJSON_IsNull(rep)) {
        lcm_pk_set_why(why, whylen, "scoreReport is not an object");
        goto out;
    }
    int graded = strcasecmp(out->status, "Graded") == 0;
    if (graded && !cJSON_IsObject(rep)) {
        lcm_pk_set_why(why, whylen, "part is Graded without a scoreReport");
        goto out;
    }
    if (cJSON_IsObject(rep) && !r->failed) {
        if (!num_member(rep, "score", &r->score) || !num_member(rep, "maxScore", &r->max_score)) {
            lcm_pk_set_why(why, whylen, "scoreReport without numeric score/maxScore");
            goto out;
        }
        const cJSON *vars = member(rep, "variables");
        int has_cut = num_member(vars, "cutScore", &r->cut_score) ||
                      num_member(vars, "cut_score", &r->cut_score);
        const cJSON *pa = member(vars, "passed");
        if (cJSON_IsBool(pa))
            r->passed = cJSON_IsTrue(pa);
        else if (has_cut)
            r->passed = r->score >= r->cut_score;
        const cJSON *secs = member(rep, "sections"), *s;
        if (secs && !cJSON_IsArray(secs) && !cJSON_IsNull(secs)) {
            lcm_pk_set_why(why, whylen, "sections is not an array");
            goto out;
        }
        size_t n = cJSON_IsArray(secs) ? (size_t)cJSON_GetArraySize(secs) : 0;
        if (n > GRD_MAX_SECTIONS) {
            lcm_pk_set_why(why, whylen, "too many sections");
            goto out;
        }
        if (n) {
            out->secs = calloc(n, sizeof *out->secs);
            out->sec_ids = calloc(n, sizeof *out->sec_ids);
            if (!out->secs || !out->sec_ids) {
                grd_result_free(out);
                lcm_pk_set_why(why, whylen, "out of memory");
                rc = LCM_E_NOMEM;
                goto out;
            }
        }
        size_t i = 0;
        cJSON_ArrayForEach(s, secs)
        {
            if (!cJSON_IsObject(s)) {
                grd_result_free(out);
                lcm_pk_set_why(why, whylen, "section is not an object");
                goto out;
            }
            copy_str(out->sec_ids[i], sizeof out->sec_ids[i], member(s, "id"));
            out->secs[i].id = out->sec_ids[i];
            num_member(s, "score", &out->secs[i].score);
            num_member(s, "maxScore", &out->secs[i].max_score);
            i++;
        }
        r->sections = out->secs;
        r->nsections = i;
        r->completed = graded;
    }
    const cJSON *sub = member(part, "lastSubmitted");
    if (!cJSON_IsString(sub) && cJSON_IsObject(rep)) {
        sub = member(rep, "lastModified");
        if (!cJSON_IsString(sub))
            sub = member(rep, "createdAt");
    }
    copy_str(out->submitted, sizeof out->submitted, sub);
    r->submitted_at = out->submitted[0] ? out->submitted : NULL;
    rc = 0;
out:
    cJSON_Delete(j);
    return rc;
}

/* Wipes every "password" string in the tree (before it is freed). */
static void wipe_passwords(cJSON *j)
{
    cJSON *c;
    cJSON_ArrayForEach(c, j)
    {
        if (cJSON_IsString(c) && c->string && strcmp(c->string, "password") == 0 &&
            c->valuestring)
            memset(c->valuestring, 0, strlen(c->valuestring));
        else if (cJSON_IsObject(c) || cJSON_IsArray(c))
            wipe_passwords(c);
    }
}

char *grd_build_create_body(const struct lcm_grd_create_args *a, const char *default_collector)
{
    cJSON *o = cJSON_CreateObject();
    int ok = o && cJSON_AddStringToObject(o, "id", a->session_id) &&
             cJSON_AddStringToObject(o, "candidateId", a->candidate_id);
    if (ok && a->lds_session_id && *a->lds_session_id) {
        cJSON *l = cJSON_AddObjectToObject(o, "lds");
        ok = l && cJSON_AddStringToObject(l, "id", a->lds_session_id) &&
             (a->lds_environment && *a->lds_environment
                  ? cJSON_AddStringToObject(l, "environment", a->lds_environment) != NULL
                  : cJSON_AddNullToObject(l, "environment") != NULL);
    }
    cJSON *parts = ok ? cJSON_AddArrayToObject(o, "parts") : NULL;
    cJSON *part = parts ? cJSON_CreateObject() : NULL;
    ok = part != NULL;
    if (ok)
        cJSON_AddItemToArray(parts, part);
    ok = ok && cJSON_AddStringToObject(part, "id", a->part_id);
    cJSON *pod = ok ? cJSON_AddObjectToObject(part, "pod") : NULL;
    ok = pod && cJSON_AddStringToObject(pod, "id", a->pod_id && *a->pod_id ? a->pod_id
                                                                           : a->session_id);
    cJSON *devs = ok ? cJSON_AddArrayToObject(pod, "devices") : NULL;
    ok = devs != NULL;
    for (size_t i = 0; ok && i < a->ndevices; i++) {
        const struct lcm_grd_device *d = &a->devices[i];
        cJSON *dj = cJSON_CreateObject();
        if (!dj) {
            ok = 0;
            break;
        }
        cJSON_AddItemToArray(devs, dj);
        ok = cJSON_AddStringToObject(dj, "label", d->label) &&
             cJSON_AddStringToObject(dj, "hostname", d->hostname && *d->hostname ? d->hostname
                                                                                 : d->label) &&
             cJSON_AddStringToObject(dj, "collector", d->collector && *d->collector
                                                          ? d->collector : default_collector);
        cJSON *ifs = ok ? cJSON_AddArrayToObject(dj, "interfaces") : NULL;
        ok = ifs != NULL;
        for (size_t k = 0; ok && k < d->nifaces; k++) {
            const struct lcm_grd_interface *f = &d->ifaces[k];
            cJSON *fj = cJSON_CreateObject();
            if (!fj) {
                ok = 0;
                break;
            }
            cJSON_AddItemToArray(ifs, fj);
            ok = cJSON_AddStringToObject(fj, "name", f->name) &&
                 cJSON_AddStringToObject(fj, "protocol", f->protocol) &&
                 cJSON_AddStringToObject(fj, "host", f->host);
            if (ok && f->port > 0)
                ok = cJSON_AddNumberToObject(fj, "port", f->port) != NULL;
            if (ok && ((f->username && *f->username) || (f->password && *f->password))) {
                cJSON *au = cJSON_AddObjectToObject(fj, "authentication");
                cJSON *pr = au ? cJSON_AddObjectToObject(au, "properties") : NULL;
                ok = pr && cJSON_AddStringToObject(au, "scheme", "basic");
                if (ok && f->username && *f->username)
                    ok = cJSON_AddStringToObject(pr, "username", f->username) != NULL;
                if (ok && f->password && *f->password)
                    ok = cJSON_AddStringToObject(pr, "password", f->password) != NULL;
            }
        }
    }
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    if (o)
        wipe_passwords(o);
    cJSON_Delete(o);
    return s;
}
