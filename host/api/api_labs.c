/* /api/v1/labs: lab records (CML labs on workers). Actions are recorded as the record's
 * pending_action for the labs controller, which performs them on CML. */
#include "api_int.h"

#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "app.h"
#include "core/auth.h"
#include "core/httpd.h"
#include "domain/lab.h"
#include "store/store.h"

#define K (&lcm_kind_lab)

static int64_t created(const void *s) { return ((const struct lcm_lab *)s)->created_at; }

static int keep(const void *s, void *ud)
{
    const struct lcm_lab *l = s;
    struct lcm_req *r = ud;
    const char *v;
    if ((v = lcm_req_query(r, "status")) && !api_csv_has(v, lcm_fsm_name(&lcm_fsm_lab, l->status)))
        return 0;
    if ((v = lcm_req_query(r, "worker")) && (!l->worker_id || strcmp(v, l->worker_id)))
        return 0;
    if ((v = lcm_req_query(r, "definition")) && (!l->definition_id || strcmp(v, l->definition_id)))
        return 0;
    if ((v = lcm_req_query(r, "session")) && (!l->active_session_id || strcmp(v, l->active_session_id)))
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
        if (lcm_fsm_parse(&lcm_fsm_lab, w) < 0) {
            lcm_reply_problem(r, 400, "invalid-query", "Invalid query parameter",
                              "status must be lab statuses separated by commas", "status");
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
    const void *l = api_get(a, r, K, lcm_req_param(r, "id"));
    if (l)
        api_reply_agg(r, 200, K, l, NULL);
}

static void h_runs(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    if (api_ready(a, r))
        return;
    const struct lcm_lab *l = api_get(a, r, K, lcm_req_param(r, "id"));
    if (!l)
        return;
    cJSON *full = K->to_json(l);
    cJSON *runs = full ? cJSON_DetachItemFromObjectCaseSensitive(full, "runs") : NULL;
    cJSON_Delete(full);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "lab_id", l->id);
    cJSON_AddItemToObject(o, "items", runs ? runs : cJSON_CreateArray());
    lcm_reply_json(r, 200, o);
}

static void h_action(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    if (api_ready(a, r))
        return;
    const struct lcm_lab *l = api_get(a, r, K, lcm_req_param(r, "id"));
    if (!l || api_if_match(r, l->version))
        return;
    cJSON *body = api_body(r, &lcm_api_schema_lab_action, 1);
    if (!body)
        return;
    const char *act = cJSON_GetObjectItemCaseSensitive(body, "action")->valuestring;
    int ac = lcm_lab_action_parse(act);
    struct lcm_events evs;
    lcm_events_init(&evs);
    struct lcm_derr e;
    if (ac < 0) {
        lcm_reply_problem(r, 422, "validation", "Validation failed",
                          "action must be start, stop, wipe or delete", "action");
    } else if (lcm_lab_cmd_request_action(l, ac, api_by(r), api_now(), &evs, &e)) {
        api_problem_derr(r, &e);
    } else {
        struct api_op *op = api_op_new(a, r, K, l->id, 202);
        if (op) {
            struct api_change ch = { K, l->id, l->version, &evs, NULL, 0 };
            api_commit(op, &ch, 1);
        }
    }
    lcm_events_clear(&evs);
    cJSON_Delete(body);
}

int api_labs_routes(struct lcm_api *a)
{
    struct lcm_httpd *h = a->app->httpd;
    return lcm_httpd_route(h, "GET", API_BASE "/labs", 0, LCM_PERM_READ, h_list, a) ||
           lcm_httpd_route(h, "GET", API_BASE "/labs/{id}", 0, LCM_PERM_READ, h_get, a) ||
           lcm_httpd_route(h, "GET", API_BASE "/labs/{id}/runs", 0, LCM_PERM_READ, h_runs, a) ||
           lcm_httpd_route(h, "POST", API_BASE "/labs/{id}/actions", 0, LCM_PERM_OPERATE, h_action, a);
}
