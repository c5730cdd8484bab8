/* HTTP routes of the scheduler: GET /api/v1/scheduler (leader, queue, last cycle,
 * rejections, decision log), POST /api/v1/scheduler/preview and GET /api/v1/availability
 * (both through the same planner as the real decision, without side effects). */
#include "scheduler_ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "app.h"
#include "autoscaler.h"
#include "core/auth.h"
#include "core/httpd.h"
#include "core/redis.h"
#include "ctl.h"
#include "domain/definition.h"
#include "domain/rfc3339.h"
#include "scheduler.h"
#include "store/store.h"

#define AVAIL_MAX 1000

struct sched_api {
    struct lcm_app *app;
    struct lcm_sched *sched;
    struct lcm_autoscaler *as;
};

/* one per app, freed with the process (routes cannot be unregistered) */
static struct sched_api apis[4];
static size_t napis;

struct status_req {
    struct lcm_req *r;
    cJSON *body;
};

static void status_reply(struct lcm_redis *rd, redisReply *rep, void *ud)
{
    struct status_req *q = ud;
    (void)rd;
    cJSON *arr = cJSON_AddArrayToObject(q->body, "fleet_decisions");
    /* XREVRANGE: newest first; reported oldest first like "decisions" */
    if (rep && rep->type == REDIS_REPLY_ARRAY) {
        for (size_t i = rep->elements; i-- > 0;) {
            const redisReply *e = rep->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[1]->type != REDIS_REPLY_ARRAY)
                continue;
            const redisReply *f = e->element[1];
            for (size_t k = 0; k + 1 < f->elements; k += 2)
                if (f->element[k]->type == REDIS_REPLY_STRING && !strcmp(f->element[k]->str, "decision") &&
                    f->element[k + 1]->type == REDIS_REPLY_STRING) {
                    cJSON *d = cJSON_Parse(f->element[k + 1]->str);
                    if (d) {
                        cJSON_AddStringToObject(d, "id", e->element[0]->str);
                        cJSON_AddItemToArray(arr, d);
                    }
                }
        }
    }
    if (q->r)
        lcm_reply_json(q->r, 200, q->body);
    else
        cJSON_Delete(q->body);
    free(q);
}

static void h_status(struct lcm_req *r, void *ud)
{
    struct sched_api *a = ud;
    cJSON *o = lcm_ctl_status_json(a->app->ctl);
    cJSON_AddItemToObject(o, "scheduler", lcm_sched_status_json(a->sched));
    cJSON_AddItemToObject(o, "autoscaler", lcm_autoscaler_status_json(a->as, (int64_t)time(NULL)));
    const char *count = lcm_req_query(r, "limit");
    char n[16];
    snprintf(n, sizeof n, "%d", count && atoi(count) > 0 && atoi(count) <= 1000 ? atoi(count) : 50);
    struct status_req *q = calloc(1, sizeof *q);
    const char *argv[] = { "XREVRANGE", "lcm:sched:decisions", "+", "-", "COUNT", n };
    if (q) {
        q->r = r;
        q->body = o;
        if (lcm_redis_commandv(a->app->redis, status_reply, q, 6, argv, NULL) == 0)
            return;
        free(q);
    }
    lcm_reply_json(r, 200, o);
}

static void h_preview(struct lcm_req *r, void *ud)
{
    struct sched_api *a = ud;
    size_t len = 0;
    const char *body = lcm_req_body(r, &len);
    cJSON *b = body ? cJSON_ParseWithLength(body, len) : NULL;
    if (!cJSON_IsObject(b)) {
        cJSON_Delete(b);
        lcm_reply_problem(r, 400, "malformed-json", "Malformed JSON",
                          "the body must be a JSON object {session_id} or {definition_id}", NULL);
        return;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, b) {
        if (strcmp(it->string, "session_id") && strcmp(it->string, "definition_id")) {
            char d[160];
            snprintf(d, sizeof d, "unknown field %.100s", it->string);
            lcm_reply_problem(r, 422, "validation", "Invalid request", d, it->string);
            cJSON_Delete(b);
            return;
        }
        if (!cJSON_IsString(it) || !*it->valuestring) {
            lcm_reply_problem(r, 422, "validation", "Invalid request", "must be a non-empty string", it->string);
            cJSON_Delete(b);
            return;
        }
    }
    const cJSON *sid = cJSON_GetObjectItemCaseSensitive(b, "session_id");
    const cJSON *did = cJSON_GetObjectItemCaseSensitive(b, "definition_id");
    int status = 500;
    char err[256] = "";
    cJSON *o = lcm_sched_preview(a->sched, sid ? sid->valuestring : NULL, did ? did->valuestring : NULL,
                                 (int64_t)time(NULL), &status, err, sizeof err);
    cJSON_Delete(b);
    if (!o) {
        lcm_reply_problem(r, status, status == 404 ? "not-found" : status == 422 ? "validation" : "internal",
                          status == 404 ? "Not found" : status == 422 ? "Invalid request" : "Internal error",
                          err, status == 422 ? "definition_id" : NULL);
        return;
    }
    lcm_reply_json(r, 200, o);
}

static int parse_time(struct lcm_req *r, const char *name, int64_t *out)
{
    const char *v = lcm_req_query(r, name);
    if (!v)
        return 0;
    if (lcm_rfc3339_parse(v, out) < 0) {
        lcm_reply_problem(r, 422, "validation", "Invalid request", "must be an RFC 3339 time", name);
        return -1;
    }
    return 1;
}

static void h_availability(struct lcm_req *r, void *ud)
{
    struct sched_api *a = ud;
    const char *did = lcm_req_query(r, "definition_id");
    if (!did || !*did) {
        lcm_reply_problem(r, 422, "validation", "Invalid request", "definition_id is required", "definition_id");
        return;
    }
    const struct lcm_definition *def = lcm_store_get(a->app->store, "definition", did);
    if (!def) {
        lcm_reply_problem(r, 404, "not-found", "Not found", "unknown definition", "definition_id");
        return;
    }
    int64_t now = (int64_t)time(NULL), start = now, end;
    int hs = parse_time(r, "start", &start);
    if (hs < 0)
        return;
    int64_t dur = (def->max_duration_minutes > 0 ? def->max_duration_minutes : 60) * 60;
    int he = parse_time(r, "end", &end);
    if (he < 0)
        return;
    if (!he)
        end = start + dur;
    if (end <= start) {
        lcm_reply_problem(r, 422, "validation", "Invalid request", "end must be after start", "end");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    char ts[LCM_TIME_BUFSZ];
    cJSON_AddStringToObject(o, "definition_id", did);
    lcm_rfc3339_format(start, ts, sizeof ts);
    cJSON_AddStringToObject(o, "start", ts);
    lcm_rfc3339_format(end, ts, sizeof ts);
    cJSON_AddStringToObject(o, "end", ts);
    if (!lcm_definition_bookable(def)) {
        cJSON_AddNumberToObject(o, "available", 0);
        cJSON *why = cJSON_AddArrayToObject(o, "reasons");
        cJSON_AddItemToArray(why, cJSON_CreateString("definition is not active"));
        lcm_reply_json(r, 200, o);
        return;
    }
    struct lcm_sched_avail av;
    if (lcm_sched_availability(a->sched, did, start, end, AVAIL_MAX, now, &av) < 0) {
        cJSON_Delete(o);
        lcm_reply_problem(r, 500, "internal", "Internal error", "out of memory", NULL);
        return;
    }
    int64_t per = 0;
    const char *region = NULL;
    const char *tpl = lcm_autoscaler_best_template(a->as, did, &per, &region);
    int64_t room = tpl && region ? lcm_autoscaler_room(a->as, region) : 0;
    int64_t extra = 0;
    cJSON *as = cJSON_AddObjectToObject(o, "autoscaler");
    if (tpl) {
        cJSON_AddStringToObject(as, "template", tpl);
        if (region)
            cJSON_AddStringToObject(as, "region", region);
        cJSON_AddNumberToObject(as, "sessions_per_worker", (double)per);
        if (room < 0) {
            cJSON_AddNullToObject(as, "workers_room");
            extra = AVAIL_MAX;
        } else {
            cJSON_AddNumberToObject(as, "workers_room", (double)room);
            extra = room * per;
        }
    }
    cJSON_AddNumberToObject(as, "sessions", (double)extra);
    int64_t total = av.fits_now + extra;
    if (total > AVAIL_MAX)
        total = AVAIL_MAX;
    cJSON_AddNumberToObject(o, "available", (double)total);
    cJSON_AddNumberToObject(o, "fits_now", (double)av.fits_now);
    cJSON_AddBoolToObject(o, "capped", total >= AVAIL_MAX);
    if (av.fits_now == 0) {
        /* why the current fleet takes none, and why the autoscaler cannot add any */
        cJSON_AddItemToObject(o, "rejections", lcm_sched_counts_json(av.counts));
        cJSON *why = cJSON_AddArrayToObject(o, "reasons");
        cJSON_AddItemToArray(why, cJSON_CreateString("no running worker can take it now (see rejections)"));
        if (!tpl)
            cJSON_AddItemToArray(why, cJSON_CreateString("no enabled template with a region fits the definition"));
        else if (room == 0)
            cJSON_AddItemToArray(why, cJSON_CreateString("max_workers_per_region reached"));
    }
    lcm_reply_json(r, 200, o);
}

int lcm_sched_api_register(struct lcm_app *app, struct lcm_sched *s, struct lcm_autoscaler *as)
{
    if (!app->httpd)
        return 0;
    if (napis == sizeof apis / sizeof apis[0])
        return -1;
    struct sched_api *a = &apis[napis++];
    a->app = app;
    a->sched = s;
    a->as = as;
    if (lcm_httpd_route(app->httpd, "GET", "/api/v1/scheduler", 0, LCM_PERM_READ, h_status, a) < 0 ||
        lcm_httpd_route(app->httpd, "POST", "/api/v1/scheduler/preview", 0, LCM_PERM_READ, h_preview, a) < 0 ||
        lcm_httpd_route(app->httpd, "GET", "/api/v1/availability", 0, LCM_PERM_READ, h_availability, a) < 0)
        return -1;
    return 0;
}
