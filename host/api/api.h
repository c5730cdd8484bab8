/* The resource routes of the HTTP API v1 (templates, definitions, workers, sessions, labs)
 * and GET /openapi.json. Handlers read the store's read models and write through
 * lcm_store_commit; replies are deferred until the store has answered. */
#ifndef LCM_API_H
#define LCM_API_H

#include <stddef.h>

struct lcm_app;
struct lcm_api;

/* Registers the routes on app->httpd (app must outlive the api; app->store, app->httpd and
 * app->redis are required, app->plugins optional). Returns NULL with err filled. */
struct lcm_api *lcm_api_new(struct lcm_app *app, char *err, size_t errlen);
/* Detaches in-flight operations (their store callbacks then only free themselves) and frees
 * the api. Call it before lcm_store_free()/lcm_redis_free(). NULL is fine. */
void lcm_api_free(struct lcm_api *api);

/* The OpenAPI 3.1 document served at GET /openapi.json (host/api/openapi.json, embedded at
 * build time), NUL-terminated. */
extern const char lcm_api_openapi_source[];

#endif
