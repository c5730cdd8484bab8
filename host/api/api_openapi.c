/* GET /openapi.json (open) serves the embedded OpenAPI 3.1 document; GET /api/v1/routes
 * lists the router's table as registered at the time of the call, which the OpenAPI
 * consistency test compares with the document. */
#include "api_int.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "app.h"
#include "core/auth.h"
#include "core/httpd.h"

static void h_openapi(struct lcm_req *r, void *ud)
{
    (void)ud;
    lcm_reply_header(r, "Cache-Control", "no-cache");
    lcm_reply(r, 200, "application/json", lcm_api_openapi_source, strlen(lcm_api_openapi_source));
}

static void h_routes(struct lcm_req *r, void *ud)
{
    struct lcm_api *a = ud;
    size_t n = lcm_httpd_routes(a->app->httpd, NULL, 0);
    struct lcm_route_info *v = calloc(n ? n : 1, sizeof(*v));
    if (!v) {
        lcm_reply_problem(r, 503, "internal", "Service Unavailable", "out of memory", NULL);
        return;
    }
    n = lcm_httpd_routes(a->app->httpd, v, n);
    cJSON *o = cJSON_CreateObject();
    cJSON *items = cJSON_AddArrayToObject(o, "items");
    for (size_t i = 0; i < n; i++) {
        cJSON *it = cJSON_CreateObject();
        cJSON_AddStringToObject(it, "method", v[i].method);
        cJSON_AddStringToObject(it, "path", v[i].pattern);
        if (v[i].flags & LCM_ROUTE_OPEN)
            cJSON_AddNullToObject(it, "permission");
        else
            cJSON_AddStringToObject(it, "permission", v[i].perm);
        cJSON_AddItemToArray(items, it);
    }
    free(v);
    lcm_reply_json(r, 200, o);
}

int api_openapi_routes(struct lcm_api *a)
{
    struct lcm_httpd *h = a->app->httpd;
    return lcm_httpd_route(h, "GET", "/openapi.json", LCM_ROUTE_OPEN, NULL, h_openapi, a) ||
           lcm_httpd_route(h, "GET", API_BASE "/routes", 0, LCM_PERM_READ, h_routes, a);
}
