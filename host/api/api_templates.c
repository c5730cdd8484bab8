/* /api/v1/templates: worker templates (admin). The id is the name. PATCH is a JSON merge
 * patch (RFC 7396) over the current spec; DELETE is soft (template.deleted). */
#include "api_int.h"

#include <string.h>

#include <cjson/cJSON.h>

#include "app.h"
#include "core/auth.h"
#include "core/httpd.h"
#include "domain/template.h"
#include "store/entry.h"
#include "store/store.h"

#define K (&lcm_kind_template)

static int64_t created(const void *s) { return ((const struct lcm_template *)s)->created_at; }

static int keep(const void *s, void *ud)
{
    const struct lcm_template *t = s;
    struct lcm_req *r = ud;
    int all = api_query_bool(r, "include_deleted", 0) == 1;
    if (t->deleted && !all)
        return 0;
    const char *v;
    if ((v = lcm_req_query(r, "region")) && (!t->region || strcmp(v, t->region)))
        return 0;
    if ((v = lcm_req_query(r, "enabled")) && (!strcmp(v, "true") != !!t->enabled))
        return 0;
    return 1;
}

static void h_list(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    if (api_ready(a, r) || api_query_bool(r, "include_deleted", 0) < 0)
        return;
    api_list(a, r, K, keep, r, created);
}

static void h_get(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    if (api_ready(a, r))
        return;
    const void *t = api_get(a, r, K, lcm_req_param(r, "name"));
    if (t)
        api_reply_agg(r, 200, K, t, NULL);
}

static void h_create(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    if (api_ready(a, r))
        return;
    cJSON *body = api_body(r, &lcm_api_schema_template, 1);
    if (!body)
        return;
    struct lcm_events evs;
    lcm_events_init(&evs);
    struct lcm_derr e;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(body, "name");
    if (lcm_template_cmd_create(body, api_by(r), api_now(), &evs, &e)) {
        api_problem_derr(r, &e);
        goto out;
    }
    if (!lcm_store_valid_name(name->valuestring)) {
        lcm_reply_problem(r, 422, "validation", "Validation failed",
                          "name may only contain letters, digits, '.', '_' and '-'", "name");
        goto out;
    }
    const struct lcm_template *cur = lcm_store_get(a->app->store, K->name, name->valuestring);
    if (cur) {
        char detail[200];
        snprintf(detail, sizeof(detail), "template '%.128s' already exists%s", name->valuestring,
                 cur->deleted ? " (deleted; names are not reused)" : "");
        lcm_reply_problem(r, 409, "already-exists", "Already exists", detail, "name");
        goto out;
    }
    struct api_op *op = api_op_new(a, r, K, name->valuestring, 201);
    if (!op)
        goto out;
    op->location = API_BASE "/templates";
    struct api_change ch = { K, name->valuestring, 0, &evs, NULL, 0 };
    api_commit(op, &ch, 1);
out:
    lcm_events_clear(&evs);
    cJSON_Delete(body);
}

static cJSON *spec_of(const struct lcm_template *t)
{
    cJSON *o = K->to_json(t);
    static const char *const state[] = { "id", "status", "created_at", "created_by", "updated_at" };
    for (size_t i = 0; o && i < sizeof(state) / sizeof(state[0]); i++)
        cJSON_DeleteItemFromObjectCaseSensitive(o, state[i]);
    return o;
}

static void h_patch(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    if (api_ready(a, r))
        return;
    const struct lcm_template *t = api_get(a, r, K, lcm_req_param(r, "name"));
    if (!t || api_if_match(r, t->version))
        return;
    cJSON *patch = api_body(r, &lcm_api_schema_template, 1);
    if (!patch)
        return;
    struct lcm_events evs;
    lcm_events_init(&evs);
    struct lcm_derr e;
    cJSON *spec = spec_of(t);
    if (!spec) {
        lcm_reply_problem(r, 503, "internal", "Service Unavailable", "out of memory", NULL);
        goto out;
    }
    api_merge_patch(spec, patch);
    if (lcm_template_cmd_update(t, spec, api_by(r), api_now(), &evs, &e)) {
        api_problem_derr(r, &e);
        goto out;
    }
    struct api_op *op = api_op_new(a, r, K, t->id, 200);
    if (!op)
        goto out;
    struct api_change ch = { K, t->id, t->version, &evs, NULL, 0 };
    api_commit(op, &ch, 1);
out:
    cJSON_Delete(spec);
    lcm_events_clear(&evs);
    cJSON_Delete(patch);
}

static void deleted_done(struct api_op *op, const struct lcm_store_result *res)
{
    if (res->status == LCM_STORE_OK)
        lcm_reply(op->req, 204, NULL, NULL, 0);
    else
        api_op_default_done(op, res);
}

static void h_delete(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    if (api_ready(a, r))
        return;
    const struct lcm_template *t = api_get(a, r, K, lcm_req_param(r, "name"));
    if (!t || api_if_match(r, t->version))
        return;
    struct lcm_events evs;
    lcm_events_init(&evs);
    struct lcm_derr e;
    if (lcm_template_cmd_delete(t, lcm_req_query(r, "reason"), api_by(r), api_now(), &evs, &e)) {
        api_problem_derr(r, &e);
    } else {
        struct api_op *op = api_op_new(a, r, K, t->id, 204);
        if (op) {
            op->done = deleted_done;
            struct api_change ch = { K, t->id, t->version, &evs, NULL, 0 };
            api_commit(op, &ch, 1);
        }
    }
    lcm_events_clear(&evs);
}

int api_templates_routes(struct lcm_api *a)
{
    struct lcm_httpd *h = a->app->httpd;
    return lcm_httpd_route(h, "GET", API_BASE "/templates", 0, LCM_PERM_READ, h_list, a) ||
           lcm_httpd_route(h, "POST", API_BASE "/templates", 0, LCM_PERM_ADMIN, h_create, a) ||
           lcm_httpd_route(h, "GET", API_BASE "/templates/{name}", 0, LCM_PERM_READ, h_get, a) ||
           lcm_httpd_route(h, "PATCH", API_BASE "/templates/{name}", 0, LCM_PERM_ADMIN, h_patch, a) ||
           lcm_httpd_route(h, "DELETE", API_BASE "/templates/{name}", 0, LCM_PERM_ADMIN, h_delete, a);
}
