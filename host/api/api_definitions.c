/* /api/v1/definitions: bookable labs, versioned. Create validates everything (and derives
 * the port template from the topology); PATCH is a JSON merge patch that edits a
 * pending_sync/inactive definition in place and creates a new version (new id) of an active
 * or deprecated one; activation deprecates older active versions of the name and asks the
 * delivery plugin to refresh the LDS content. DELETE is soft. */
#include "api_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <lcm/spi.h>

#include "app.h"
#include "core/auth.h"
#include "core/httpd.h"
#include "core/log.h"
#include "domain/definition.h"
#include "domain/version.h"
#include "plugin/plugin.h"
#include "store/store.h"

#define K (&lcm_kind_definition)
#define MAX_SAME_NAME 64

static int64_t created(const void *s) { return ((const struct lcm_definition *)s)->created_at; }

static int ci_contains(const char *hay, const char *needle)
{
    if (!hay)
        return 0;
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (!strncasecmp(hay, needle, n))
            return 1;
    return n == 0;
}

static int keep(const void *s, void *ud)
{
    const struct lcm_definition *d = s;
    struct lcm_req *r = ud;
    const char *st = lcm_req_query(r, "status");
    const char *v;
    if (st) {
        if (!api_csv_has(st, lcm_fsm_name(&lcm_fsm_definition, d->status)))
            return 0;
    } else if (d->status == LCM_DEF_DELETED && api_query_bool(r, "include_deleted", 0) != 1) {
        return 0;
    }
    if ((v = lcm_req_query(r, "name")) && (!d->name || strcmp(v, d->name)))
        return 0;
    if ((v = lcm_req_query(r, "form_qualified_name")) && (!d->fqn || strcmp(v, d->fqn)))
        return 0;
    if ((v = lcm_req_query(r, "q")) && !ci_contains(d->name, v) && !ci_contains(d->fqn, v) &&
        !ci_contains(d->description, v) && !ci_contains(d->id, v))
        return 0;
    return 1;
}

static void h_list(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    if (api_ready(a, r) || api_query_bool(r, "include_deleted", 0) < 0)
        return;
    const char *st = lcm_req_query(r, "status");
    for (const char *p = st; p && *p;) {
        size_t n = strcspn(p, ",");
        char w[32];
        snprintf(w, sizeof(w), "%.*s", (int)(n < 31 ? n : 31), p);
        if (lcm_fsm_parse(&lcm_fsm_definition, w) < 0) {
            lcm_reply_problem(r, 400, "invalid-query", "Invalid query parameter",
                              "status must be pending_sync, active, inactive, deprecated or deleted",
                              "status");
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
    const void *d = api_get(a, r, K, lcm_req_param(r, "id"));
    if (d)
        api_reply_agg(r, 200, K, d, NULL);
}

/* Definitions sharing a name (not deleted). */
struct same_name {
    const char *name;
    const struct lcm_definition *v[MAX_SAME_NAME];
    size_t n;
    int with_deleted;
};

static int collect_same(const char *id, const void *s, void *ud)
{
    (void)id;
    const struct lcm_definition *d = s;
    struct same_name *c = ud;
    if (d->name && !strcmp(d->name, c->name) && (c->with_deleted || d->status != LCM_DEF_DELETED) &&
        c->n < MAX_SAME_NAME)
        c->v[c->n++] = d;
    return 0;
}

static void same_name(struct lcm_api *a, const char *name, int with_deleted, struct same_name *c)
{
    memset(c, 0, sizeof(*c));
    c->name = name;
    c->with_deleted = with_deleted;
    lcm_store_each(a->app->store, K->name, collect_same, c);
}

static void version_unique(const char *name, const char *semver, char *out, size_t cap)
{
    api_hash_id("definition-version:", name, semver, 32, out, cap);
}

/* Validates body into a scratch definition to learn name and version. */
static int peek_spec(const cJSON *body, struct lcm_definition **out, struct lcm_derr *e)
{
    struct lcm_definition *d = lcm_definition_new("peek");
    if (!d)
        return lcm_derr_set(e, LCM_DERR_NOMEM, "", "out of memory");
    int rc = lcm_definition_validate(body, d, e);
    if (rc) {
        lcm_definition_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

static void create_from(struct lcm_api *a, struct lcm_req *r, const cJSON *spec,
                        const struct lcm_definition *from)
{
    struct lcm_events evs;
    lcm_events_init(&evs);
    struct lcm_derr e;
    struct lcm_definition *peek = NULL;
    if (peek_spec(spec, &peek, &e)) {
        api_problem_derr(r, &e);
        goto out;
    }
    struct same_name sn;
    same_name(a, peek->name, 0, &sn);
    for (size_t i = 0; i < sn.n; i++) {
        int cmp = 0;
        lcm_semver_cmp_str(peek->semver, sn.v[i]->semver, &cmp);
        if (cmp == 0) {
            char detail[300];
            snprintf(detail, sizeof(detail), "version %s of '%.128s' already exists (%s)",
                     peek->semver, peek->name, sn.v[i]->id);
            lcm_reply_problem(r, 409, "already-exists", "Already exists", detail, "version");
            goto out;
        }
        if (from && cmp < 0) {
            char detail[300];
            snprintf(detail, sizeof(detail),
                     "a new version must be higher than every version of '%.128s' (%s exists)",
                     peek->name, sn.v[i]->semver);
            lcm_reply_problem(r, 422, "validation", "Validation failed", detail, "version");
            goto out;
        }
    }
    char id[64];
    api_new_id("def-", id, sizeof(id));
    if (lcm_definition_cmd_create(id, spec, api_by(r), api_now(), &evs, &e)) {
        api_problem_derr(r, &e);
        goto out;
    }
    char uname[128];
    version_unique(peek->name, peek->semver, uname, sizeof(uname));
    struct lcm_store_unique u = { uname, NULL, 0, 0 };
    struct api_op *op = api_op_new(a, r, K, id, 201);
    if (!op)
        goto out;
    op->location = API_BASE "/definitions";
    struct api_change ch = { K, id, 0, &evs, &u, 1 };
    api_commit(op, &ch, 1);
out:
    lcm_definition_free(peek);
    lcm_events_clear(&evs);
}

static void h_create(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    if (api_ready(a, r))
        return;
    cJSON *body = api_body(r, &lcm_api_schema_definition, 1);
    if (!body)
        return;
    create_from(a, r, body, NULL);
    cJSON_Delete(body);
}

/* The spec of d as an authored body (state and derived fields removed where the patch
 * changes what they derive from). */
static cJSON *patched_spec(const struct lcm_definition *d, const cJSON *patch)
{
    cJSON *spec = lcm_definition_spec_json(d);
    if (!spec)
        return NULL;
    if (cJSON_GetObjectItemCaseSensitive(patch, "topology")) {
        /* derived from the topology unless the patch says them again */
        cJSON_DeleteItemFromObjectCaseSensitive(spec, "topology_sha256");
        if (!cJSON_GetObjectItemCaseSensitive(patch, "node_count"))
            cJSON_DeleteItemFromObjectCaseSensitive(spec, "node_count");
        if (!cJSON_GetObjectItemCaseSensitive(patch, "port_template"))
            cJSON_DeleteItemFromObjectCaseSensitive(spec, "port_template");
        cJSON *rr = cJSON_GetObjectItemCaseSensitive(spec, "resource_requirements");
        const cJSON *prr = cJSON_GetObjectItemCaseSensitive(patch, "resource_requirements");
        if (rr && !cJSON_GetObjectItemCaseSensitive(prr, "node_definitions"))
            cJSON_DeleteItemFromObjectCaseSensitive(rr, "node_definitions");
    }
    api_merge_patch(spec, patch);
    return spec;
}

static int bump_version(struct lcm_api *a, const struct lcm_definition *d, cJSON *spec,
                        const cJSON *patch)
{
    if (cJSON_GetObjectItemCaseSensitive(patch, "version"))
        return 0;
    struct same_name sn;
    same_name(a, d->name, 0, &sn);
    const char *hi = d->semver;
    for (size_t i = 0; i < sn.n; i++) {
        int cmp = 0;
        if (lcm_semver_cmp_str(sn.v[i]->semver, hi, &cmp) == 0 && cmp > 0)
            hi = sn.v[i]->semver;
    }
    struct lcm_semver sv;
    if (lcm_semver_parse(hi, &sv))
        return -1;
    char nv[96];
    snprintf(nv, sizeof(nv), "%" PRIu64 ".%" PRIu64 ".%" PRIu64, sv.major, sv.minor, sv.patch + 1);
    cJSON_DeleteItemFromObjectCaseSensitive(spec, "version");
    return cJSON_AddStringToObject(spec, "version", nv) ? 0 : -1;
}

static void h_patch(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    if (api_ready(a, r))
        return;
    const struct lcm_definition *d = api_get(a, r, K, lcm_req_param(r, "id"));
    if (!d || api_if_match(r, d->version))
        return;
    cJSON *patch = api_body(r, &lcm_api_schema_definition, 1);
    if (!patch)
        return;
    struct lcm_events evs;
    lcm_events_init(&evs);
    struct lcm_derr e;
    cJSON *spec = patched_spec(d, patch);
    if (!spec) {
        lcm_reply_problem(r, 503, "internal", "Service Unavailable", "out of memory", NULL);
        goto out;
    }
    if (d->status == LCM_DEF_ACTIVE || d->status == LCM_DEF_DEPRECATED) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(spec, "name");
        if (!cJSON_IsString(nm) || strcmp(nm->valuestring, d->name)) {
            lcm_reply_problem(r, 422, "validation", "Validation failed",
                              "the name of a definition cannot change", "name");
            goto out;
        }
        if (bump_version(a, d, spec, patch)) {
            lcm_reply_problem(r, 503, "internal", "Service Unavailable", "out of memory", NULL);
            goto out;
        }
        /* a new version (new id, pending_sync); d stays until the new one is activated */
        create_from(a, r, spec, d);
        goto out;
    }
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(spec, "version");
    if (lcm_definition_cmd_update(d, spec, api_by(r), api_now(), &evs, &e)) {
        api_problem_derr(r, &e);
        goto out;
    }
    struct lcm_store_unique u[2];
    size_t nu = 0;
    char unew[128], uold[128];
    if (cJSON_IsString(ver) && strcmp(ver->valuestring, d->semver)) {
        struct same_name sn;
        same_name(a, d->name, 0, &sn);
        for (size_t i = 0; i < sn.n; i++) {
            int cmp = 1;
            lcm_semver_cmp_str(ver->valuestring, sn.v[i]->semver, &cmp);
            if (cmp == 0 && sn.v[i] != d) {
                lcm_reply_problem(r, 409, "already-exists", "Already exists",
                                  "another definition of this name has that version", "version");
                goto out;
            }
        }
        version_unique(d->name, ver->valuestring, unew, sizeof(unew));
        version_unique(d->name, d->semver, uold, sizeof(uold));
        u[nu++] = (struct lcm_store_unique){ uold, NULL, 0, 1 };
        u[nu++] = (struct lcm_store_unique){ unew, NULL, 0, 0 };
    }
    struct api_op *op = api_op_new(a, r, K, d->id, 200);
    if (!op)
        goto out;
    struct api_change ch = { K, d->id, d->version, &evs, nu ? u : NULL, nu };
    api_commit(op, &ch, 1);
out:
    cJSON_Delete(spec);
    lcm_events_clear(&evs);
    cJSON_Delete(patch);
}

/* ---- status changes ---- */

struct refresh_ctx {
    char fqn[512];
    char def_id[64];
};

static void refresh_done(void *ud, const struct lcm_error *err, const void *result)
{
    (void)result;
    struct refresh_ctx *c = ud;
    if (err && err->code)
        lcm_warn("api", "msg=\"LDS content refresh failed\" definition=%s fqn=\"%s\" code=%d err=\"%s\"",
                 c->def_id, c->fqn, err->code, err->message);
    else
        lcm_info("api", "msg=\"LDS content refreshed\" definition=%s fqn=\"%s\"", c->def_id, c->fqn);
    free(c);
}

/* Fire and forget: activation does not wait for LDS; a failure is logged. */
static void refresh_lds(struct lcm_api *a, const char *req_id, const struct lcm_definition *d)
{
    if (!d->lds_enabled || !d->fqn)
        return;
    if (!a->app->plugins) {
        lcm_warn("api", "req=%s msg=\"LDS content refresh skipped: no plugins\" definition=%s", req_id, d->id);
        return;
    }
    struct refresh_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    snprintf(c->fqn, sizeof(c->fqn), "%s", d->fqn);
    snprintf(c->def_id, sizeof(c->def_id), "%s", d->id);
    struct lcm_lds_content_args args = { d->fqn };
    struct lcm_call call = { .size = sizeof(call), .correlation_id = req_id };
    struct lcm_error err = { 0 };
    int rc = lcm_delivery_call(a->app->plugins, refresh_content, &call, &args, refresh_done, c,
                               &err, NULL);
    if (rc) {
        lcm_warn("api", "req=%s msg=\"LDS content refresh not sent\" definition=%s fqn=\"%s\" code=%d err=\"%s\"",
                 req_id, d->id, d->fqn, rc, err.message);
        free(c);
    }
}

static void activated_done(struct api_op *op, const struct lcm_store_result *res)
{
    if (res->status == LCM_STORE_OK) {
        const struct lcm_definition *d = lcm_store_get(op->api->app->store, K->name, op->id);
        if (d)
            refresh_lds(op->api, lcm_req_id(op->req), d);
    }
    api_op_default_done(op, res);
}

static void transition(struct lcm_req *r, struct lcm_api *a, enum lcm_definition_status to)
{
    if (api_ready(a, r))
        return;
    const struct lcm_definition *d = api_get(a, r, K, lcm_req_param(r, "id"));
    if (!d || api_if_match(r, d->version))
        return;
    cJSON *body = api_body(r, &lcm_api_schema_reason, 0);
    if (!body)
        return;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(body, "reason");
    const char *reason = cJSON_IsString(rs) ? rs->valuestring : NULL;
    struct lcm_events evs[MAX_SAME_NAME + 1];
    struct api_change ch[MAX_SAME_NAME + 1];
    size_t n = 0;
    struct lcm_derr e;
    int64_t now = api_now();
    lcm_events_init(&evs[0]);
    if (d->status == to) {   /* already there: nothing to write */
        api_reply_agg(r, 200, K, d, NULL);
        goto out;
    }
    if (lcm_definition_cmd_transition(d, to, reason, api_by(r), now, &evs[0], &e)) {
        api_problem_derr(r, &e);
        goto out;
    }
    ch[n++] = (struct api_change){ K, d->id, d->version, &evs[0], NULL, 0 };
    struct lcm_store_unique rel;
    char uname[128];
    if (to == LCM_DEF_DELETED) {
        version_unique(d->name, d->semver, uname, sizeof(uname));
        rel = (struct lcm_store_unique){ uname, NULL, 0, 1 };
        ch[0].uniques = &rel;
        ch[0].n_uniques = 1;
    }
    if (to == LCM_DEF_ACTIVE) {
        struct same_name sn;
        same_name(a, d->name, 0, &sn);
        for (size_t i = 0; i < sn.n; i++) {
            const struct lcm_definition *o = sn.v[i];
            if (o == d || o->status != LCM_DEF_ACTIVE)
                continue;
            if (!lcm_definition_supersedes(d, o)) {
                char detail[300];
                snprintf(detail, sizeof(detail),
                         "a newer version (%s, %s) of '%.128s' is active; deactivate it first",
                         o->semver, o->id, d->name);
                lcm_reply_problem(r, 409, "invalid-state", "Not allowed in the current state",
                                  detail, "status");
                goto out;
            }
            char why[160];
            snprintf(why, sizeof(why), "superseded by %s (%s)", d->id, d->semver);
            lcm_events_init(&evs[n]);
            if (lcm_definition_cmd_transition(o, LCM_DEF_DEPRECATED, why, api_by(r), now, &evs[n], &e)) {
                lcm_events_clear(&evs[n]);
                api_problem_derr(r, &e);
                goto out;
            }
            ch[n] = (struct api_change){ K, o->id, o->version, &evs[n], NULL, 0 };
            n++;
        }
    }
    struct api_op *op = api_op_new(a, r, K, d->id, to == LCM_DEF_DELETED ? 204 : 200);
    if (op) {
        if (to == LCM_DEF_ACTIVE)
            op->done = activated_done;
        api_commit(op, ch, n);
    }
out:
    for (size_t i = 0; i < (n ? n : 1); i++)
        lcm_events_clear(&evs[i]);
    cJSON_Delete(body);
}

static void h_activate(struct lcm_req *r, void *ud) { transition(r, ud, LCM_DEF_ACTIVE); }
static void h_deactivate(struct lcm_req *r, void *ud) { transition(r, ud, LCM_DEF_INACTIVE); }

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
    const struct lcm_definition *d = api_get(a, r, K, lcm_req_param(r, "id"));
    if (!d || api_if_match(r, d->version))
        return;
    if (d->status == LCM_DEF_DELETED) {
        lcm_reply(r, 204, NULL, NULL, 0);
        return;
    }
    struct lcm_events evs;
    lcm_events_init(&evs);
    struct lcm_derr e;
    if (lcm_definition_cmd_transition(d, LCM_DEF_DELETED, lcm_req_query(r, "reason"), api_by(r),
                                      api_now(), &evs, &e)) {
        api_problem_derr(r, &e);
    } else {
        char uname[128];
        version_unique(d->name, d->semver, uname, sizeof(uname));
        struct lcm_store_unique rel = { uname, NULL, 0, 1 };
        struct api_op *op = api_op_new(a, r, K, d->id, 204);
        if (op) {
            op->done = deleted_done;
            struct api_change ch = { K, d->id, d->version, &evs, &rel, 1 };
            api_commit(op, &ch, 1);
        }
    }
    lcm_events_clear(&evs);
}

static int by_semver_desc(const void *x, const void *y)
{
    const struct lcm_definition *a = *(const struct lcm_definition *const *)x;
    const struct lcm_definition *b = *(const struct lcm_definition *const *)y;
    int cmp = 0;
    lcm_semver_cmp_str(b->semver, a->semver, &cmp);
    return cmp ? cmp : strcmp(a->id, b->id);
}

static void h_versions(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    if (api_ready(a, r))
        return;
    const struct lcm_definition *d = api_get(a, r, K, lcm_req_param(r, "id"));
    if (!d)
        return;
    int all = api_query_bool(r, "include_deleted", 0);
    if (all < 0)
        return;
    struct same_name sn;
    same_name(a, d->name, all, &sn);
    qsort(sn.v, sn.n, sizeof(sn.v[0]), by_semver_desc);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", d->name);
    cJSON *items = cJSON_AddArrayToObject(o, "items");
    for (size_t i = 0; i < sn.n; i++)
        cJSON_AddItemToArray(items, api_agg_json(K, sn.v[i]));
    lcm_reply_json(r, 200, o);
}

int api_definitions_routes(struct lcm_api *a)
{
    struct lcm_httpd *h = a->app->httpd;
    return lcm_httpd_route(h, "GET", API_BASE "/definitions", 0, LCM_PERM_READ, h_list, a) ||
           lcm_httpd_route(h, "POST", API_BASE "/definitions", 0, LCM_PERM_AUTHOR, h_create, a) ||
           lcm_httpd_route(h, "GET", API_BASE "/definitions/{id}", 0, LCM_PERM_READ, h_get, a) ||
           lcm_httpd_route(h, "PATCH", API_BASE "/definitions/{id}", 0, LCM_PERM_AUTHOR, h_patch, a) ||
           lcm_httpd_route(h, "DELETE", API_BASE "/definitions/{id}", 0, LCM_PERM_AUTHOR, h_delete, a) ||
           lcm_httpd_route(h, "POST", API_BASE "/definitions/{id}/activate", 0, LCM_PERM_AUTHOR, h_activate, a) ||
           lcm_httpd_route(h, "POST", API_BASE "/definitions/{id}/deactivate", 0, LCM_PERM_AUTHOR, h_deactivate, a) ||
           lcm_httpd_route(h, "GET", API_BASE "/definitions/{id}/versions", 0, LCM_PERM_READ, h_versions, a);
}
