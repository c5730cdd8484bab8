/* grading-sim: a stand-in for the grading engine (reference/grading/): OAuth2 client-credentials
 * tokens, sessions with parts and pods, grading that completes after a configurable delay with a
 * configurable score, and the grading CloudEvents posted to lcmd. See docs/simulators.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>

#include "simkit.h"

struct grd_settings {
    int score, max_score, cut_score, delay_ms, sections;
    int fail;      /* every grading fails */
    int fail_next; /* the next N gradings fail */
    char fail_reason[256];
};

struct grd_session;

struct grd_part {
    struct grd_session *s;
    char *id;
    cJSON *pod; /* as created, or NULL */
    cJSON *audit;
    char status[16];
    char *reason;
    char created[32], modified[32], first_graded[32];
    int generation;
    int grading; /* a grade timer is pending */
    int has_report;
    int score, max_score, cut_score, sections;
    char report_at[32];
    int grade_requests;
    struct event *timer;
};

struct grd_session {
    struct grd *g;
    char *id, *candidate_id, *lds_id, *lds_env;
    int has_lds;
    char created[32], modified[32];
    int nparts;
    struct grd_part *parts;
    /* per-session overrides set through /_sim/sessions/{id}/config; < 0: use the global */
    int ov_score, ov_fail, ov_delay_ms;
};

struct grd {
    struct simkit *kit;
    const char *client_id, *client_secret;
    char *expected_basic;
    int token_ttl;
    struct grd_settings set;
    struct simkit_map *sessions; /* id -> grd_session */
    struct simkit_map *tokens;   /* token -> double* expiry (monotonic seconds) */
    unsigned long n_tokens, n_auth_failures, n_graded, n_failed, n_sessions_created;
};

/* ---------------------------------------------------------------- replies */

static const char *title_for(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Error";
    }
}

/* ASP.NET ProblemDetails, as the engine answers. */
static void grd_error(struct evhttp_request *req, int status, const char *detail)
{
    char type[96];
    cJSON *j = cJSON_CreateObject();
    snprintf(type, sizeof type, "https://httpstatuses.io/%d", status);
    cJSON_AddStringToObject(j, "type", type);
    cJSON_AddStringToObject(j, "title", title_for(status));
    cJSON_AddNumberToObject(j, "status", status);
    cJSON_AddStringToObject(j, "detail", detail);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/problem+json");
    simkit_reply_json(req, status, j);
}

static void grd_validation(struct evhttp_request *req, const char *field, const char *msg)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "https://tools.ietf.org/html/rfc9110#section-15.5.1");
    cJSON_AddStringToObject(j, "title", "One or more validation errors occurred.");
    cJSON_AddNumberToObject(j, "status", 400);
    cJSON *errs = cJSON_AddObjectToObject(j, "errors");
    cJSON *arr = cJSON_AddArrayToObject(errs, field);
    cJSON_AddItemToArray(arr, cJSON_CreateString(msg));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/problem+json");
    simkit_reply_json(req, 400, j);
}

static void oauth_error(struct evhttp_request *req, int status, const char *error,
                        const char *desc)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "error", error);
    cJSON_AddStringToObject(j, "error_description", desc);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    simkit_reply_json(req, status, j);
}

static int is_cmd(struct evhttp_request *req, enum evhttp_cmd_type c)
{
    return evhttp_request_get_command(req) == c;
}

/* ---------------------------------------------------------------- tokens */

static void prune_tokens(struct grd *g)
{
    double now = simkit_mono_s();
    size_t pos = 0, n = 0;
    const char *k;
    void *v;
    char **dead = calloc(simkit_map_count(g->tokens) + 1, sizeof *dead);
    if (!dead)
        return;
    while (simkit_map_next(g->tokens, &pos, &k, &v))
        if (*(double *)v <= now)
            dead[n++] = strdup(k);
    for (size_t i = 0; i < n; i++) {
        if (dead[i])
            free(simkit_map_del(g->tokens, dead[i]));
        free(dead[i]);
    }
    free(dead);
}

static void clear_tokens(struct grd *g)
{
    size_t pos = 0;
    const char *k;
    void *v;
    while (simkit_map_next(g->tokens, &pos, &k, &v))
        free(v);
    simkit_map_free(g->tokens);
    g->tokens = simkit_map_new();
}

/* POST token endpoint: grant_type=client_credentials with the client in the form or in Basic. */
static void token_endpoint(struct grd *g, struct evhttp_request *req)
{
    struct evkeyvalq form;
    char *body = NULL;
    TAILQ_INIT(&form);
    if (!is_cmd(req, EVHTTP_REQ_POST)) {
        oauth_error(req, 405, "invalid_request", "POST only");
        return;
    }
    body = simkit_body(req);
    if (!body || evhttp_parse_query_str(body, &form) != 0) {
        oauth_error(req, 400, "invalid_request", "the body must be application/x-www-form-urlencoded");
        goto out;
    }
    const char *gt = evhttp_find_header(&form, "grant_type");
    const char *id = evhttp_find_header(&form, "client_id");
    const char *secret = evhttp_find_header(&form, "client_secret");
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!gt) {
        oauth_error(req, 400, "invalid_request", "Missing form parameter: grant_type");
        goto out;
    }
    if (strcmp(gt, "client_credentials") != 0) {
        oauth_error(req, 400, "unsupported_grant_type", "Unsupported grant_type");
        goto out;
    }
    int ok = (id && secret && strcmp(id, g->client_id) == 0 &&
              strcmp(secret, g->client_secret) == 0) ||
             (auth && strcmp(auth, g->expected_basic) == 0);
    if (!ok) {
        g->n_auth_failures++;
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                          "Basic realm=\"grading\"");
        oauth_error(req, 401, "invalid_client", "Invalid client or Invalid client credentials");
        goto out;
    }
    prune_tokens(g);
    char tok[65];
    simkit_random_hex(tok, 32);
    double *exp = malloc(sizeof *exp);
    if (!exp || simkit_map_put(g->tokens, tok, exp) < 0) {
        free(exp);
        oauth_error(req, 500, "server_error", "out of memory");
        goto out;
    }
    *exp = simkit_mono_s() + g->token_ttl;
    g->n_tokens++;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "access_token", tok);
    cJSON_AddStringToObject(j, "token_type", "Bearer");
    cJSON_AddNumberToObject(j, "expires_in", g->token_ttl);
    cJSON_AddStringToObject(j, "scope", "api");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    simkit_reply_json(req, 200, j);
out:
    evhttp_clear_headers(&form);
    free(body);
}

static int bearer_ok(struct grd *g, struct evhttp_request *req)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        double *exp = simkit_map_get(g->tokens, h + 7);
        if (exp && *exp > simkit_mono_s())
            return 1;
    }
    g->n_auth_failures++;
    return 0;
}

/* ---------------------------------------------------------------- model */

static void part_clear(struct grd_part *p)
{
    if (p->timer)
        event_free(p->timer);
    free(p->id);
    free(p->reason);
    cJSON_Delete(p->pod);
    cJSON_Delete(p->audit);
}

static void session_free(struct grd_session *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->nparts; i++)
        part_clear(&s->parts[i]);
    free(s->parts);
    free(s->id);
    free(s->candidate_id);
    free(s->lds_id);
    free(s->lds_env);
    free(s);
}

static void audit(struct grd_part *p, const char *action)
{
    char ts[32];
    struct grd *g = p->s->g;
    char email[300];
    simkit_now_rfc3339(ts);
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "action", action);
    cJSON *actor = cJSON_AddObjectToObject(e, "actor");
    cJSON_AddStringToObject(actor, "id", g->client_id);
    cJSON_AddStringToObject(actor, "name", g->client_id);
    snprintf(email, sizeof email, "%s@grading-sim.invalid", g->client_id);
    cJSON_AddStringToObject(actor, "email", email);
    cJSON_AddStringToObject(e, "actionable", p->id);
    cJSON_AddStringToObject(e, "timestamp", ts);
    cJSON_AddItemToArray(p->audit, e);
    snprintf(p->modified, sizeof p->modified, "%s", ts);
    snprintf(p->s->modified, sizeof p->s->modified, "%s", ts);
}

static const char *session_status(const struct grd_session *s)
{
    int graded = 0, faulted = 0, grading = 0;
    for (int i = 0; i < s->nparts; i++) {
        const char *st = s->parts[i].status;
        graded += strcmp(st, "Graded") == 0;
        faulted += strcmp(st, "Faulted") == 0;
        grading += strcmp(st, "Grading") == 0;
    }
    if (grading)
        return "Grading";
    if (faulted)
        return "Faulted";
    if (s->nparts > 0 && graded == s->nparts)
        return "Graded";
    return "Created";
}

/* Splits score over sections greedily: each section gets what fits, so the sum is the score. */
static int section_max(const struct grd_part *p, int i)
{
    int base = p->max_score / p->sections;
    return i == p->sections - 1 ? p->max_score - base * (p->sections - 1) : base;
}

static cJSON *score_report(const struct grd_part *p)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "createdAt", p->report_at);
    cJSON_AddStringToObject(r, "lastModified", p->report_at);
    cJSON *meta = cJSON_AddObjectToObject(r, "gradingToolkitPackageMetadata");
    cJSON_AddStringToObject(meta, "formName", p->id);
    cJSON_AddStringToObject(meta, "formId", p->id);
    cJSON_AddStringToObject(meta, "publisher", "grading-sim");
    cJSON_AddStringToObject(meta, "version", "1.0");
    cJSON_AddNumberToObject(meta, "outstandingCommentsCount", 0);
    cJSON_AddNumberToObject(meta, "outstandingRatings", 0);
    cJSON_AddBoolToObject(meta, "validatedBeforePublishing", 1);
    cJSON_AddStringToObject(r, "gradingRulesetVersion", "sim-1");
    cJSON_AddNumberToObject(r, "scoringRulesetVersion", 1);
    cJSON_AddNumberToObject(r, "generation", p->generation);
    cJSON_AddNumberToObject(r, "revision", 0);
    cJSON_AddNumberToObject(r, "score", p->score);
    cJSON_AddNumberToObject(r, "maxScore", p->max_score);
    cJSON *secs = cJSON_AddArrayToObject(r, "sections");
    int left = p->score;
    for (int i = 0; i < p->sections; i++) {
        int smax = section_max(p, i);
        int sc = left < smax ? left : smax;
        char sid[32], iid[40];
        left -= sc;
        snprintf(sid, sizeof sid, "section-%d", i + 1);
        snprintf(iid, sizeof iid, "%s.item-1", sid);
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "id", sid);
        cJSON_AddStringToObject(s, "createdAt", p->report_at);
        cJSON_AddStringToObject(s, "lastModified", p->report_at);
        cJSON_AddNumberToObject(s, "score", sc);
        cJSON_AddNumberToObject(s, "maxScore", smax);
        cJSON *items = cJSON_AddArrayToObject(s, "items");
        cJSON *it = cJSON_CreateObject();
        cJSON_AddStringToObject(it, "id", iid);
        cJSON_AddNumberToObject(it, "score", sc);
        cJSON_AddStringToObject(it, "type", "lablet");
        cJSON_AddNumberToObject(it, "maxScore", smax);
        cJSON_AddBoolToObject(it, "fieldTest", 0);
        cJSON_AddArrayToObject(it, "evaluationResults");
        cJSON_AddArrayToObject(it, "questions");
        cJSON_AddItemToArray(items, it);
        cJSON_AddItemToArray(secs, s);
    }
    /* the report schema has no cut score; the engine's free-form variables carry it */
    cJSON *vars = cJSON_AddObjectToObject(r, "variables");
    cJSON_AddNumberToObject(vars, "cutScore", p->cut_score);
    cJSON_AddBoolToObject(vars, "passed", p->score >= p->cut_score);
    return r;
}

static cJSON *part_json(const struct grd_part *p)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", p->id);
    cJSON_AddStringToObject(j, "createdAt", p->created);
    cJSON_AddStringToObject(j, "lastModified", p->modified);
    if (p->first_graded[0])
        cJSON_AddStringToObject(j, "firstGraded", p->first_graded);
    else
        cJSON_AddNullToObject(j, "firstGraded");
    cJSON_AddNullToObject(j, "lastSubmitted");
    cJSON_AddStringToObject(j, "status", p->status);
    if (p->reason)
        cJSON_AddStringToObject(j, "statusReason", p->reason);
    else
        cJSON_AddNullToObject(j, "statusReason");
    /* pod and scoreReport are $refs to non-nullable schemas: absent rather than null */
    if (p->pod)
        cJSON_AddItemToObject(j, "pod", cJSON_Duplicate(p->pod, 1));
    if (p->has_report)
        cJSON_AddItemToObject(j, "scoreReport", score_report(p));
    cJSON_AddItemToObject(j, "auditTrail", cJSON_Duplicate(p->audit, 1));
    return j;
}

static cJSON *session_json(const struct grd_session *s)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", s->id);
    cJSON_AddStringToObject(j, "createdAt", s->created);
    cJSON_AddStringToObject(j, "lastModified", s->modified);
    cJSON_AddStringToObject(j, "candidateId", s->candidate_id);
    if (s->has_lds) {
        cJSON *l = cJSON_AddObjectToObject(j, "lds");
        if (s->lds_id)
            cJSON_AddStringToObject(l, "id", s->lds_id);
        else
            cJSON_AddNullToObject(l, "id");
        if (s->lds_env)
            cJSON_AddStringToObject(l, "environment", s->lds_env);
        else
            cJSON_AddNullToObject(l, "environment");
    }
    cJSON_AddStringToObject(j, "status", session_status(s));
    cJSON *parts = cJSON_AddArrayToObject(j, "parts");
    for (int i = 0; i < s->nparts; i++)
        cJSON_AddItemToArray(parts, part_json(&s->parts[i]));
    return j;
}

/* ---------------------------------------------------------------- validation */

static int nonempty_str(const cJSON *v)
{
    return cJSON_IsString(v) && v->valuestring[0];
}

static int str_or_null(const cJSON *v)
{
    return cJSON_IsString(v) || cJSON_IsNull(v);
}

/* Validates the CreateSessionCommand schema; fills field/message on error. */
static int check_create(const cJSON *b, char *field, size_t fl, const char **msg)
{
    const cJSON *cid = cJSON_GetObjectItemCaseSensitive(b, "candidateId");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(b, "id");
    const cJSON *lds = cJSON_GetObjectItemCaseSensitive(b, "lds");
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(b, "parts");
    if (!cJSON_IsString(cid) || strlen(cid->valuestring) < 3) {
        snprintf(field, fl, "candidateId");
        *msg = "The field candidateId is required and must be at least 3 characters long.";
        return -1;
    }
    if (id && !str_or_null(id)) {
        snprintf(field, fl, "id");
        *msg = "The field id must be a string.";
        return -1;
    }
    if (lds && !cJSON_IsNull(lds)) {
        const cJSON *li = cJSON_GetObjectItemCaseSensitive(lds, "id");
        const cJSON *le = cJSON_GetObjectItemCaseSensitive(lds, "environment");
        if (!cJSON_IsObject(lds) || !li || !le || !str_or_null(li) || !str_or_null(le)) {
            snprintf(field, fl, "lds");
            *msg = "lds needs id and environment.";
            return -1;
        }
    }
    if (parts && !cJSON_IsNull(parts) && !cJSON_IsArray(parts)) {
        snprintf(field, fl, "parts");
        *msg = "The field parts must be an array.";
        return -1;
    }
    int pi = 0;
    const cJSON *p;
    const cJSON *plist = cJSON_IsArray(parts) ? parts : NULL;
    cJSON_ArrayForEach(p, plist) {
        const cJSON *pid = cJSON_GetObjectItemCaseSensitive(p, "id");
        const cJSON *pod = cJSON_GetObjectItemCaseSensitive(p, "pod");
        if (!cJSON_IsObject(p) || !cJSON_IsString(pid) || strlen(pid->valuestring) < 3) {
            snprintf(field, fl, "parts[%d].id", pi);
            *msg = "The field id is required and must be at least 3 characters long.";
            return -1;
        }
        for (const cJSON *q = parts->child; q != p; q = q->next) {
            const cJSON *qid = cJSON_GetObjectItemCaseSensitive(q, "id");
            if (strcmp(qid->valuestring, pid->valuestring) == 0) {
                snprintf(field, fl, "parts[%d].id", pi);
                *msg = "Part ids must be unique within a session.";
                return -1;
            }
        }
        if (pod && !cJSON_IsNull(pod)) {
            const cJSON *podid = cJSON_GetObjectItemCaseSensitive(pod, "id");
            const cJSON *devs = cJSON_GetObjectItemCaseSensitive(pod, "devices");
            if (!cJSON_IsObject(pod) || !podid || !str_or_null(podid)) {
                snprintf(field, fl, "parts[%d].pod.id", pi);
                *msg = "The field id is required.";
                return -1;
            }
            if (devs && !cJSON_IsNull(devs) && !cJSON_IsArray(devs)) {
                snprintf(field, fl, "parts[%d].pod.devices", pi);
                *msg = "The field devices must be an array.";
                return -1;
            }
            int di = 0;
            const cJSON *d;
            const cJSON *dlist = cJSON_IsArray(devs) ? devs : NULL;
            cJSON_ArrayForEach(d, dlist) {
                static const char *const dreq[] = {"label", "hostname", "collector", NULL};
                for (int k = 0; dreq[k]; k++)
                    if (!nonempty_str(cJSON_GetObjectItemCaseSensitive(d, dreq[k]))) {
                        snprintf(field, fl, "parts[%d].pod.devices[%d].%s", pi, di, dreq[k]);
                        *msg = "The field is required (a non-empty string).";
                        return -1;
                    }
                const cJSON *ifs = cJSON_GetObjectItemCaseSensitive(d, "interfaces");
                if (!cJSON_IsArray(ifs) || cJSON_GetArraySize(ifs) < 1) {
                    snprintf(field, fl, "parts[%d].pod.devices[%d].interfaces", pi, di);
                    *msg = "The field interfaces is required and needs at least one item.";
                    return -1;
                }
                int ii = 0;
                const cJSON *itf;
                cJSON_ArrayForEach(itf, ifs) {
                    static const char *const ireq[] = {"name", "protocol", "host", NULL};
                    for (int k = 0; ireq[k]; k++)
                        if (!nonempty_str(cJSON_GetObjectItemCaseSensitive(itf, ireq[k]))) {
                            snprintf(field, fl, "parts[%d].pod.devices[%d].interfaces[%d].%s", pi,
                                     di, ii, ireq[k]);
                            *msg = "The field is required (a non-empty string).";
                            return -1;
                        }
                    const cJSON *port = cJSON_GetObjectItemCaseSensitive(itf, "port");
                    if (port && (!cJSON_IsNumber(port) ||
                                 port->valuedouble != (double)port->valueint)) {
                        snprintf(field, fl, "parts[%d].pod.devices[%d].interfaces[%d].port", pi,
                                 di, ii);
                        *msg = "The field port must be an integer.";
                        return -1;
                    }
                    const cJSON *au = cJSON_GetObjectItemCaseSensitive(itf, "authentication");
                    if (au && !cJSON_IsNull(au) &&
                        !nonempty_str(cJSON_GetObjectItemCaseSensitive(au, "scheme"))) {
                        snprintf(field, fl,
                                 "parts[%d].pod.devices[%d].interfaces[%d].authentication.scheme",
                                 pi, di, ii);
                        *msg = "The field scheme is required.";
                        return -1;
                    }
                    ii++;
                }
                di++;
            }
        }
        pi++;
    }
    return 0;
}

/* ---------------------------------------------------------------- grading */

static void grade_done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct grd_part *p = arg;
    struct grd_session *s = p->s;
    struct grd *g = s->g;
    int fail = g->set.fail;
    if (s->ov_fail >= 0)
        fail = s->ov_fail;
    if (!fail && g->set.fail_next > 0) {
        g->set.fail_next--;
        fail = 1;
    }
    p->grading = 0;
    p->generation++;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "grading_session_id", s->id);
    cJSON_AddStringToObject(d, "part_id", p->id);
    cJSON_AddStringToObject(d, "candidate_id", s->candidate_id);
    if (s->lds_id)
        cJSON_AddStringToObject(d, "lds_session_id", s->lds_id);
    if (s->lds_env)
        cJSON_AddStringToObject(d, "lds_environment", s->lds_env);
    if (fail) {
        snprintf(p->status, sizeof p->status, "Faulted");
        free(p->reason);
        p->reason = strdup(g->set.fail_reason);
        audit(p, "Faulted");
        g->n_failed++;
        cJSON_AddStringToObject(d, "status", "failed");
        cJSON_AddStringToObject(d, "reason", g->set.fail_reason);
        cJSON_AddStringToObject(d, "failed_at", p->modified);
        simkit_log(g->kit, "info", "msg=\"grading failed\" grading_session_id=%s part=%s", s->id,
                   p->id);
        simkit_emit(g->kit, "grading.failed.v1", s->id, d, NULL);
        return;
    }
    p->score = s->ov_score >= 0 ? s->ov_score : g->set.score;
    p->max_score = g->set.max_score;
    p->cut_score = g->set.cut_score;
    p->sections = g->set.sections;
    if (p->score > p->max_score)
        p->score = p->max_score;
    p->has_report = 1;
    snprintf(p->status, sizeof p->status, "Graded");
    free(p->reason);
    p->reason = NULL;
    audit(p, "Graded");
    snprintf(p->report_at, sizeof p->report_at, "%s", p->modified);
    if (!p->first_graded[0])
        snprintf(p->first_graded, sizeof p->first_graded, "%s", p->modified);
    g->n_graded++;
    cJSON_AddStringToObject(d, "status", "completed");
    cJSON_AddNumberToObject(d, "score", p->score);
    cJSON_AddNumberToObject(d, "max_score", p->max_score);
    cJSON_AddNumberToObject(d, "cut_score", p->cut_score);
    cJSON_AddBoolToObject(d, "passed", p->score >= p->cut_score);
    cJSON_AddNumberToObject(d, "generation", p->generation);
    cJSON_AddStringToObject(d, "graded_at", p->report_at);
    cJSON *secs = cJSON_AddArrayToObject(d, "sections");
    int left = p->score;
    for (int i = 0; i < p->sections; i++) {
        int smax = section_max(p, i), sc = left < smax ? left : smax;
        char sid[32];
        left -= sc;
        snprintf(sid, sizeof sid, "section-%d", i + 1);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", sid);
        cJSON_AddNumberToObject(o, "score", sc);
        cJSON_AddNumberToObject(o, "max_score", smax);
        cJSON_AddItemToArray(secs, o);
    }
    simkit_log(g->kit, "info", "msg=\"graded\" grading_session_id=%s part=%s score=%d/%d", s->id,
               p->id, p->score, p->max_score);
    simkit_emit(g->kit, "grading.completed.v1", s->id, d, NULL);
}

static void grade(struct grd *g, struct grd_session *s, struct grd_part *p,
                  struct evhttp_request *req)
{
    char recollect[16] = "";
    simkit_query(req, "recollect", recollect, sizeof recollect);
    p->grade_requests++;
    /* a grade request while one runs joins it, as a retried request must not grade twice */
    if (!p->grading) {
        int ms = s->ov_delay_ms >= 0 ? s->ov_delay_ms : g->set.delay_ms;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        if (!p->timer && !(p->timer = evtimer_new(simkit_base(g->kit), grade_done_cb, p))) {
            grd_error(req, 500, "out of memory");
            return;
        }
        p->grading = 1;
        snprintf(p->status, sizeof p->status, "Grading");
        audit(p, strcmp(recollect, "true") == 0 ? "GradeRequested(recollect)" : "GradeRequested");
        event_add(p->timer, &tv);
    }
    simkit_reply_empty(req, 202);
}

/* ---------------------------------------------------------------- API handlers */

static void create_session(struct grd *g, struct evhttp_request *req)
{
    int empty;
    cJSON *b = simkit_body_json(req, &empty);
    struct grd_session *s = NULL;
    char field[128];
    const char *msg;
    if (!cJSON_IsObject(b)) {
        grd_error(req, 400, empty ? "A non-empty request body is required."
                                  : "The request body is not a JSON object.");
        goto out;
    }
    if (check_create(b, field, sizeof field, &msg) < 0) {
        grd_validation(req, field, msg);
        goto out;
    }
    const cJSON *idv = cJSON_GetObjectItemCaseSensitive(b, "id");
    char idbuf[37];
    if (cJSON_IsString(idv) && idv->valuestring[0]) {
        if (simkit_map_get(g->sessions, idv->valuestring)) {
            grd_error(req, 422, "A session with the specified id already exists.");
            goto out;
        }
        snprintf(idbuf, sizeof idbuf, "%.36s", idv->valuestring);
    } else {
        simkit_uuid(idbuf);
    }
    s = calloc(1, sizeof *s);
    if (!s)
        goto oom;
    s->g = g;
    s->ov_score = s->ov_fail = s->ov_delay_ms = -1;
    s->id = strdup(cJSON_IsString(idv) && idv->valuestring[0] ? idv->valuestring : idbuf);
    s->candidate_id = strdup(cJSON_GetObjectItemCaseSensitive(b, "candidateId")->valuestring);
    const cJSON *lds = cJSON_GetObjectItemCaseSensitive(b, "lds");
    if (cJSON_IsObject(lds)) {
        const cJSON *li = cJSON_GetObjectItemCaseSensitive(lds, "id");
        const cJSON *le = cJSON_GetObjectItemCaseSensitive(lds, "environment");
        s->has_lds = 1;
        s->lds_id = cJSON_IsString(li) ? strdup(li->valuestring) : NULL;
        s->lds_env = cJSON_IsString(le) ? strdup(le->valuestring) : NULL;
    }
    simkit_now_rfc3339(s->created);
    memcpy(s->modified, s->created, sizeof s->modified);
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(b, "parts");
    s->nparts = cJSON_IsArray(parts) ? cJSON_GetArraySize(parts) : 0;
    if (s->nparts > 0 && !(s->parts = calloc((size_t)s->nparts, sizeof *s->parts)))
        goto oom;
    int i = 0;
    const cJSON *p;
    const cJSON *plist = cJSON_IsArray(parts) ? parts : NULL;
    cJSON_ArrayForEach(p, plist) {
        struct grd_part *gp = &s->parts[i++];
        const cJSON *pod = cJSON_GetObjectItemCaseSensitive(p, "pod");
        gp->s = s;
        gp->id = strdup(cJSON_GetObjectItemCaseSensitive(p, "id")->valuestring);
        gp->pod = cJSON_IsObject(pod) ? cJSON_Duplicate(pod, 1) : NULL;
        gp->audit = cJSON_CreateArray();
        if (!gp->id || !gp->audit)
            goto oom;
        snprintf(gp->status, sizeof gp->status, "Pending");
        memcpy(gp->created, s->created, sizeof gp->created);
        audit(gp, "Created");
    }
    if (!s->id || !s->candidate_id || simkit_map_put(g->sessions, s->id, s) < 0)
        goto oom;
    g->n_sessions_created++;
    simkit_log(g->kit, "info", "msg=\"grading session created\" grading_session_id=%s parts=%d",
               s->id, s->nparts);
    simkit_reply_json(req, 200, session_json(s));
    s = NULL;
    goto out;
oom:
    grd_error(req, 500, "out of memory");
out:
    session_free(s);
    cJSON_Delete(b);
}

static struct grd_part *find_part(struct grd_session *s, const char *pid)
{
    for (int i = 0; i < s->nparts; i++)
        if (strcmp(s->parts[i].id, pid) == 0)
            return &s->parts[i];
    return NULL;
}

static void api(struct grd *g, struct evhttp_request *req, char **segs, int n)
{
    /* segs[0..1] = api, v1 */
    if (!bearer_ok(g, req)) {
        /* the spec's 401 has no body */
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                          "Bearer error=\"invalid_token\"");
        simkit_reply_empty(req, 401);
        return;
    }
    if (n < 3 || strcmp(segs[2], "sessions") != 0) {
        grd_error(req, 404, "Not simulated.");
        return;
    }
    if (n == 3) {
        if (is_cmd(req, EVHTTP_REQ_POST))
            create_session(g, req);
        else
            grd_error(req, 405, "POST only.");
        return;
    }
    struct grd_session *s = simkit_map_get(g->sessions, segs[3]);
    if (!s) {
        grd_error(req, 404, "The specified session does not exist.");
        return;
    }
    if (n == 4) {
        if (is_cmd(req, EVHTTP_REQ_GET))
            simkit_reply_json(req, 200, session_json(s));
        else
            grd_error(req, 405, "GET only.");
        return;
    }
    if (n == 7 && strcmp(segs[4], "parts") == 0 && strcmp(segs[6], "grade") == 0) {
        struct grd_part *p = find_part(s, segs[5]);
        if (!p) {
            grd_error(req, 404, "The specified session part does not exist.");
            return;
        }
        if (!is_cmd(req, EVHTTP_REQ_POST)) {
            grd_error(req, 405, "POST only.");
            return;
        }
        grade(g, s, p, req);
        return;
    }
    grd_error(req, 404, "Not simulated.");
}

/* ---------------------------------------------------------------- admin */

static cJSON *settings_json(const struct grd *g)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "score", g->set.score);
    cJSON_AddNumberToObject(j, "max_score", g->set.max_score);
    cJSON_AddNumberToObject(j, "cut_score", g->set.cut_score);
    cJSON_AddNumberToObject(j, "delay_ms", g->set.delay_ms);
    cJSON_AddNumberToObject(j, "sections", g->set.sections);
    cJSON_AddBoolToObject(j, "fail", g->set.fail);
    cJSON_AddNumberToObject(j, "fail_next", g->set.fail_next);
    cJSON_AddStringToObject(j, "fail_reason", g->set.fail_reason);
    cJSON_AddNumberToObject(j, "token_ttl", g->token_ttl);
    return j;
}

/* Reads an optional non-negative integer member; -1 on a bad value. */
static int opt_int(const cJSON *b, const char *k, int *out, int max)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, k);
    if (!v)
        return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > max ||
        v->valuedouble != floor(v->valuedouble))
        return -1;
    *out = v->valueint;
    return 0;
}

static void admin_config(struct grd *g, struct evhttp_request *req)
{
    if (is_cmd(req, EVHTTP_REQ_POST)) {
        cJSON *b = simkit_body_json(req, NULL);
        struct grd_settings ns = g->set;
        int ttl = g->token_ttl;
        const cJSON *fail = cJSON_GetObjectItemCaseSensitive(b, "fail");
        const cJSON *reason = cJSON_GetObjectItemCaseSensitive(b, "fail_reason");
        int bad = !cJSON_IsObject(b) || opt_int(b, "score", &ns.score, 1000000) ||
                  opt_int(b, "max_score", &ns.max_score, 1000000) ||
                  opt_int(b, "cut_score", &ns.cut_score, 1000000) ||
                  opt_int(b, "delay_ms", &ns.delay_ms, 3600000) ||
                  opt_int(b, "sections", &ns.sections, 100) ||
                  opt_int(b, "fail_next", &ns.fail_next, 1000000) ||
                  opt_int(b, "token_ttl", &ttl, 86400 * 30) || (fail && !cJSON_IsBool(fail)) ||
                  (reason && !cJSON_IsString(reason)) || ns.sections < 1 || ns.max_score < 1 ||
                  ttl < 1;
        if (!bad) {
            if (fail)
                ns.fail = cJSON_IsTrue(fail);
            if (reason)
                snprintf(ns.fail_reason, sizeof ns.fail_reason, "%s", reason->valuestring);
            g->set = ns;
            g->token_ttl = ttl;
        }
        cJSON_Delete(b);
        if (bad) {
            grd_error(req, 400, "config: score, max_score>=1, cut_score, delay_ms, sections>=1, "
                                "fail_next, token_ttl>=1 (integers), fail (bool), fail_reason");
            return;
        }
    } else if (!is_cmd(req, EVHTTP_REQ_GET)) {
        grd_error(req, 405, "GET or POST");
        return;
    }
    simkit_reply_json(req, 200, settings_json(g));
}

static void admin_session_config(struct grd *g, struct grd_session *s, struct evhttp_request *req)
{
    cJSON *b = simkit_body_json(req, NULL);
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(b, "score");
    const cJSON *fail = cJSON_GetObjectItemCaseSensitive(b, "fail");
    const cJSON *dl = cJSON_GetObjectItemCaseSensitive(b, "delay_ms");
    int bad = !cJSON_IsObject(b) || (sc && !cJSON_IsNumber(sc) && !cJSON_IsNull(sc)) ||
              (fail && !cJSON_IsBool(fail) && !cJSON_IsNull(fail)) ||
              (dl && !cJSON_IsNumber(dl) && !cJSON_IsNull(dl));
    if (!bad) {
        if (sc)
            s->ov_score = cJSON_IsNumber(sc) && sc->valueint >= 0 ? sc->valueint : -1;
        if (fail)
            s->ov_fail = cJSON_IsBool(fail) ? cJSON_IsTrue(fail) : -1;
        if (dl)
            s->ov_delay_ms = cJSON_IsNumber(dl) && dl->valueint >= 0 ? dl->valueint : -1;
    }
    cJSON_Delete(b);
    if (bad) {
        grd_error(req, 400, "session config: score (int|null), fail (bool|null), delay_ms (int|null)");
        return;
    }
    simkit_reply_empty(req, 204);
}

static cJSON *admin_session_json(const struct grd_session *s)
{
    cJSON *j = session_json(s);
    cJSON *ov = cJSON_AddObjectToObject(j, "sim");
    cJSON_AddNumberToObject(ov, "score_override", s->ov_score);
    cJSON_AddNumberToObject(ov, "fail_override", s->ov_fail);
    cJSON_AddNumberToObject(ov, "delay_ms_override", s->ov_delay_ms);
    cJSON *reqs = cJSON_AddObjectToObject(ov, "grade_requests");
    for (int i = 0; i < s->nparts; i++)
        cJSON_AddNumberToObject(reqs, s->parts[i].id, s->parts[i].grade_requests);
    return j;
}

static void admin(struct grd *g, struct evhttp_request *req, char **segs, int n)
{
    if (n == 2 && strcmp(segs[1], "config") == 0) {
        admin_config(g, req);
        return;
    }
    if (n == 3 && strcmp(segs[1], "tokens") == 0 && strcmp(segs[2], "expire") == 0 &&
        is_cmd(req, EVHTTP_REQ_POST)) {
        clear_tokens(g);
        simkit_reply_empty(req, 204);
        return;
    }
    if (n == 2 && strcmp(segs[1], "sessions") == 0 && is_cmd(req, EVHTTP_REQ_GET)) {
        cJSON *arr = cJSON_CreateArray();
        size_t pos = 0;
        const char *k;
        void *v;
        while (simkit_map_next(g->sessions, &pos, &k, &v))
            cJSON_AddItemToArray(arr, admin_session_json(v));
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "count", cJSON_GetArraySize(arr));
        cJSON_AddItemToObject(j, "sessions", arr);
        simkit_reply_json(req, 200, j);
        return;
    }
    if ((n == 3 || n == 4) && strcmp(segs[1], "sessions") == 0) {
        struct grd_session *s = simkit_map_get(g->sessions, segs[2]);
        if (!s) {
            grd_error(req, 404, "The specified session does not exist.");
            return;
        }
        if (n == 3 && is_cmd(req, EVHTTP_REQ_GET)) {
            simkit_reply_json(req, 200, admin_session_json(s));
            return;
        }
        if (n == 4 && strcmp(segs[3], "config") == 0 && is_cmd(req, EVHTTP_REQ_POST)) {
            admin_session_config(g, s, req);
            return;
        }
    }
    grd_error(req, 404, "No such admin route.");
}

static int is_token_path(char **segs, int n)
{
    if (n == 2 && strcmp(segs[0], "oauth2") == 0 && strcmp(segs[1], "token") == 0)
        return 1;
    /* Keycloak's layout, as in the spec's tokenUrl: /auth/realms/<realm>/protocol/openid-connect/token */
    return n == 6 && strcmp(segs[0], "auth") == 0 && strcmp(segs[1], "realms") == 0 &&
           strcmp(segs[3], "protocol") == 0 && strcmp(segs[4], "openid-connect") == 0 &&
           strcmp(segs[5], "token") == 0;
}

static void grd_route(struct simkit *kit, struct evhttp_request *req, char **segs, int n, void *ud)
{
    struct grd *g = ud;
    if (n >= 2 && strcmp(segs[0], "api") == 0 && strcmp(segs[1], "v1") == 0) {
        api(g, req, segs, n);
        return;
    }
    if (is_token_path(segs, n)) {
        token_endpoint(g, req);
        return;
    }
    if (n >= 1 && strcmp(segs[0], "_sim") == 0) {
        admin(g, req, segs, n);
        return;
    }
    grd_error(req, 404, "Not found.");
}

static void grd_stats(struct simkit *kit, cJSON *stats, void *ud)
{
    struct grd *g = ud;
    cJSON *j = cJSON_AddObjectToObject(stats, "grading");
    cJSON_AddNumberToObject(j, "sessions", (double)simkit_map_count(g->sessions));
    cJSON_AddNumberToObject(j, "sessions_created", (double)g->n_sessions_created);
    cJSON_AddNumberToObject(j, "tokens_issued", (double)g->n_tokens);
    cJSON_AddNumberToObject(j, "auth_failures", (double)g->n_auth_failures);
    cJSON_AddNumberToObject(j, "graded", (double)g->n_graded);
    cJSON_AddNumberToObject(j, "failed", (double)g->n_failed);
}

static void grd_shutdown(struct simkit *kit, void *ud)
{
    struct grd *g = ud;
    size_t pos = 0;
    const char *k;
    void *v;
    while (simkit_map_next(g->sessions, &pos, &k, &v))
        session_free(v);
    pos = 0;
    while (simkit_map_next(g->tokens, &pos, &k, &v))
        free(v);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: grading-sim [options]\n"
            "Simulates the grading engine and posts grading CloudEvents to lcmd.\n"
            "  --client-id ID           OAuth2 client id (default lcm)\n"
            "  --client-secret SECRET   OAuth2 client secret (default lcm-secret)\n"
            "  --token-ttl SECONDS      access token lifetime, expires_in (default 300)\n"
            "  --score N                score given (default 85)\n"
            "  --max-score N            maximum score (default 100)\n"
            "  --cut-score N            pass mark, reported in the event (default 70)\n"
            "  --delay-ms N             grading takes this long (default 200)\n"
            "  --sections N             sections in the score report (default 2)\n"
            "  --fail                   every grading fails (grading.failed event)\n"
            "  --fail-reason TEXT       statusReason of failed gradings\n"
            "%s",
            simkit_common_usage());
}

int main(int argc, char **argv)
{
    struct simkit_opts o;
    struct grd g = {0};
    struct simkit *kit = NULL;
    char err[256];
    int rc = 1;
    simkit_opts_init(&o, "grading-sim");
    g.client_id = "lcm";
    g.client_secret = "lcm-secret";
    g.token_ttl = 300;
    g.set.score = 85;
    g.set.max_score = 100;
    g.set.cut_score = 70;
    g.set.delay_ms = 200;
    g.set.sections = 2;
    snprintf(g.set.fail_reason, sizeof g.set.fail_reason, "%s",
             "simulated grading failure: device outputs could not be collected");
    for (int i = 1; i < argc; i++) {
        int r = simkit_parse_common(&o, argc, argv, &i);
        if (r < 0) {
            fprintf(stderr, "grading-sim: bad or missing value for %s\n", argv[i]);
            return 2;
        }
        if (r > 0)
            continue;
        const char *a = argv[i];
        int *ival = NULL;
        long minv = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--fail") == 0) {
            g.set.fail = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "grading-sim: unknown option or missing value: %s\n", a);
            usage(stderr);
            return 2;
        }
        if (strcmp(a, "--client-id") == 0) {
            g.client_id = argv[++i];
            continue;
        }
        if (strcmp(a, "--client-secret") == 0) {
            g.client_secret = argv[++i];
            continue;
        }
        if (strcmp(a, "--fail-reason") == 0) {
            snprintf(g.set.fail_reason, sizeof g.set.fail_reason, "%s", argv[++i]);
            continue;
        }
        if (strcmp(a, "--token-ttl") == 0) {
            ival = &g.token_ttl;
            minv = 1;
        } else if (strcmp(a, "--score") == 0) {
            ival = &g.set.score;
        } else if (strcmp(a, "--max-score") == 0) {
            ival = &g.set.max_score;
            minv = 1;
        } else if (strcmp(a, "--cut-score") == 0) {
            ival = &g.set.cut_score;
        } else if (strcmp(a, "--delay-ms") == 0) {
            ival = &g.set.delay_ms;
        } else if (strcmp(a, "--sections") == 0) {
            ival = &g.set.sections;
            minv = 1;
        }
        long v;
        if (!ival) {
            fprintf(stderr, "grading-sim: unknown option: %s\n", a);
            usage(stderr);
            return 2;
        }
        if (simkit_parse_int(argv[++i], &v) < 0 || v < minv || v > 100000000) {
            fprintf(stderr, "grading-sim: bad value for %s\n", a);
            return 2;
        }
        *ival = (int)v;
    }
    char cred[512];
    snprintf(cred, sizeof cred, "%s:%s", g.client_id, g.client_secret);
    char *b64 = simkit_base64((const unsigned char *)cred, strlen(cred), 0);
    g.sessions = simkit_map_new();
    g.tokens = simkit_map_new();
    if (!b64 || !g.sessions || !g.tokens || !(g.expected_basic = malloc(strlen(b64) + 7)))
        goto out;
    sprintf(g.expected_basic, "Basic %s", b64);
    o.error_reply = grd_error;
    o.route = grd_route;
    o.stats = grd_stats;
    o.shutdown = grd_shutdown;
    o.ud = &g;
    if (simkit_new(&kit, &o, err, sizeof err) < 0) {
        fprintf(stderr, "grading-sim: %s\n", err);
        goto out;
    }
    g.kit = kit;
    rc = simkit_run(kit) < 0 ? 1 : 0;
out:
    simkit_free(kit);
    simkit_map_free(g.sessions);
    simkit_map_free(g.tokens);
    free(g.expected_basic);
    free(b64);
    return rc;
}
