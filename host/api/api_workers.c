/* /api/v1/workers: the fleet. Create from a template (origin manual); start/stop/terminate
 * set the desired status the worker controller drives toward (start also retries a failed
 * worker: failed → pending); drain/cancel-drain are status changes; refresh and import are
 * requests recorded on lcm:requests for the controller. */
#include "api_int.h"

#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "app.h"
#include "core/auth.h"
#include "core/httpd.h"
#include "domain/rfc3339.h"
#include "domain/template.h"
#include "domain/worker.h"
#include "store/store.h"

#define K (&lcm_kind_worker)

static int64_t created(const void *s) { return ((const struct lcm_worker *)s)->created_at; }

static int keep(const void *s, void *ud)
{
    const struct lcm_worker *w = s;
    struct lcm_req *r = ud;
    const char *v;
    if ((v = lcm_req_query(r, "status")) && !api_csv_has(v, lcm_fsm_name(&lcm_fsm_worker, w->status)))
        return 0;
    if ((v = lcm_req_query(r, "region")) && (!w->region || strcmp(v, w->region)))
        return 0;
    if ((v = lcm_req_query(r, "template")) && (!w->template_name || strcmp(v, w->template_name)))
        return 0;
    if ((v = lcm_req_query(r, "origin")) && strcmp(v, lcm_worker_origin_name(w->origin)))
        return 0;
    return 1;
}

static void h_list(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    if (api_ready(a, r))
        return;
    const char *st = lcm_req_query(r, "status");
    for (const char *p = st; p && *p;) {
        size_t n = strcspn(p, ",");
        char w[32];
        snprintf(w, sizeof(w), "%.*s", (int)(n < 31 ? n : 31), p);
        if (lcm_fsm_parse(&lcm_fsm_worker, w) < 0) {
            lcm_reply_problem(r, 400, "invalid-query", "Invalid query parameter",
                              "status must be a worker status (pending, provisioning, starting, running, "
                              "draining, stopping, stopped, terminating, terminated, failed)", "status");
            return;
        }
        p += n + (p[n] == ',');
    }
    api_list(a, r, K, keep, r, created);
}

static void h_get(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    if (api_ready(a, r))
        return;
    const void *w = api_get(a, r, K, lcm_req_param(r, "id"));
    if (w)
        api_reply_agg(r, 200, K, w, NULL);
}

static void h_create(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    if (api_ready(a, r))
        return;
    cJSON *body = api_body(r, &lcm_api_schema_worker_create, 1);
    if (!body)
        return;
    struct lcm_events evs;
    lcm_events_init(&evs);
    struct lcm_derr e;
    const char *tname = cJSON_GetObjectItemCaseSensitive(body, "template")->valuestring;
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(body, "name");
    const struct lcm_template *tpl = lcm_store_get(a->app->store, lcm_kind_template.name, tname);
    char id[64];
    api_new_id("wk-", id, sizeof(id));
    struct lcm_worker_create c = {
        .id = id,
        .name = cJSON_IsString(nm) ? nm->valuestring : NULL,
        .region = cJSON_GetObjectItemCaseSensitive(body, "region")->valuestring,
        .origin = LCM_ORIGIN_MANUAL,
    };
    if (lcm_worker_cmd_create(&c, tpl, api_by(r), api_now(), &evs, &e)) {
        api_problem_derr(r, &e);
    } else {
        struct api_op *op = api_op_new(a, r, K, id, 201);
        if (op) {
            op->location = API_BASE "/workers";
            struct api_change ch = { K, id, 0, &evs, NULL, 0 };
            api_commit(op, &ch, 1);
        }
    }
    lcm_events_clear(&evs);
    cJSON_Delete(body);
}

enum wact { W_START, W_STOP, W_TERMINATE, W_DRAIN, W_CANCEL_DRAIN };

static void action(struct lcm_req *r, struct lcm_api *a, enum wact act)
{
    if (api_ready(a, r))
        return;
    const struct lcm_worker *w = api_get(a, r, K, lcm_req_param(r, "id"));
    if (!w || api_if_match(r, w->version))
        return;
    cJSON *body = api_body(r, act == W_DRAIN ? &lcm_api_schema_worker_drain : &lcm_api_schema_reason, 0);
    if (!body)
        return;
    struct lcm_events evs;
    lcm_events_init(&evs);
    struct lcm_derr e;
    lcm_derr_clear(&e);
    int64_t now = api_now();
    const char *by = api_by(r);
    int rc = 0;
    switch (act) {
    case W_START:
        rc = lcm_worker_cmd_set_desired(w, LCM_WK_RUNNING, by, now, &evs, &e);
        /* a failed worker is retried (failed → pending, DOMAIN.md): the controller then
         * launches it again (a new ClientToken generation) or re-adopts its instance */
        if (!rc && w->status == LCM_WK_FAILED)
            rc = lcm_worker_cmd_transition(w, LCM_WK_PENDING, "retry requested", by, now, &evs, &e);
        break;
    case W_STOP: rc = lcm_worker_cmd_set_desired(w, LCM_WK_STOPPED, by, now, &evs, &e); break;
    case W_TERMINATE: rc = lcm_worker_cmd_set_desired(w, LCM_WK_TERMINATED, by, now, &evs, &e); break;
    case W_CANCEL_DRAIN: rc = lcm_worker_cmd_cancel_drain(w, by, now, &evs, &e); break;
    case W_DRAIN: {
        const cJSON *rs = cJSON_GetObjectItemCaseSensitive(body, "reason");
        const cJSON *dl = cJSON_GetObjectItemCaseSensitive(body, "deadline");
        int64_t deadline = 0;
        if (cJSON_IsString(dl) && lcm_rfc3339_parse(dl->valuestring, &deadline) < 0) {
            lcm_reply_problem(r, 422, "validation", "Validation failed",
                              "deadline must be an RFC 3339 time", "deadline");
            goto out;
        }
        rc = lcm_worker_cmd_drain(w, cJSON_IsString(rs) ? rs->valuestring : NULL, deadline, by,
                                  now, &evs, &e);
        break;
    }
    }
    if (rc) {
        api_problem_derr(r, &e);
    } else if (evs.n == 0) {   /* already so */
        api_reply_agg(r, 200, K, w, NULL);
    } else {
        struct api_op *op = api_op_new(a, r, K, w->id, 200);
        if (op) {
            struct api_change ch = { K, w->id, w->version, &evs, NULL, 0 };
            api_commit(op, &ch, 1);
        }
    }
out:
    lcm_events_clear(&evs);
    cJSON_Delete(body);
}

static void h_start(struct lcm_req *r, void *ud) { action(r, ud, W_START); }
static void h_stop(struct lcm_req *r, void *ud) { action(r, ud, W_STOP); }
static void h_terminate(struct lcm_req *r, void *ud) { action(r, ud, W_TERMINATE); }
static void h_drain(struct lcm_req *r, void *ud) { action(r, ud, W_DRAIN); }
static void h_cancel_drain(struct lcm_req *r, void *ud) { action(r, ud, W_CANCEL_DRAIN); }

static void h_refresh(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    if (api_ready(a, r))
        return;
    const struct lcm_worker *w = api_get(a, r, K, lcm_req_param(r, "id"));
    if (!w)
        return;
    cJSON *body = api_body(r, &lcm_api_schema_reason, 0);
    if (!body)
        return;
    cJSON_Delete(body);
    const char *kv[] = { "worker_id", w->id };
    api_request(a, r, "worker.refresh", kv, 2);
}

static void h_import(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    if (api_ready(a, r))
        return;
    cJSON *body = api_body(r, &lcm_api_schema_worker_import, 1);
    if (!body)
        return;
    const char *region = cJSON_GetObjectItemCaseSensitive(body, "region")->valuestring;
    size_t n = strlen(region);
    int ok = n >= 1 && n <= 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = (region[i] >= 'a' && region[i] <= 'z') || (region[i] >= '0' && region[i] <= '9') ||
             region[i] == '-';
    if (!ok) {
        lcm_reply_problem(r, 422, "validation", "Validation failed",
                          "region must be an AWS region name like eu-west-1", "region");
    } else {
        const char *kv[] = { "region", region };
        api_request(a, r, "worker.import", kv, 2);
    }
    cJSON_Delete(body);
}

int api_workers_routes(struct lcm_api *a)
{
    struct lcm_httpd *h = a->app->httpd;
    return lcm_httpd_route(h, "GET", API_BASE "/workers", 0, LCM_PERM_READ, h_list, a) ||
           lcm_httpd_route(h, "POST", API_BASE "/workers", 0, LCM_PERM_OPERATE, h_create, a) ||
           lcm_httpd_route(h, "POST", API_BASE "/workers/import", 0, LCM_PERM_OPERATE, h_import, a) ||
           lcm_httpd_route(h, "GET", API_BASE "/workers/{id}", 0, LCM_PERM_READ, h_get, a) ||
           lcm_httpd_route(h, "POST", API_BASE "/workers/{id}/start", 0, LCM_PERM_OPERATE, h_start, a) ||
           lcm_httpd_route(h, "POST", API_BASE "/workers/{id}/stop", 0, LCM_PERM_OPERATE, h_stop, a) ||
           lcm_httpd_route(h, "POST", API_BASE "/workers/{id}/terminate", 0, LCM_PERM_OPERATE, h_terminate, a) ||
           lcm_httpd_route(h, "POST", API_BASE "/workers/{id}/drain", 0, LCM_PERM_OPERATE, h_drain, a) ||
           lcm_httpd_route(h, "POST", API_BASE "/workers/{id}/cancel-drain", 0, LCM_PERM_OPERATE, h_cancel_drain, a) ||
           lcm_httpd_route(h, "POST", API_BASE "/workers/{id}/refresh", 0, LCM_PERM_OPERATE, h_refresh, a);
}
