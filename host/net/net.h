/* host/net: the event-facing edges of lcmd — the SSE change feed (GET /api/v1/events),
 * CloudEvents ingestion (POST /api/v1/cloudevents) and the outbound CloudEvents deliverer
 * (lcm:feed → webhook sinks through a consumer group), plus lcm:feed trimming that never
 * drops an entry the deliverer has not acknowledged. See docs/events.md. */
#ifndef LCM_NET_H
#define LCM_NET_H

#include <stddef.h>

struct lcm_app;
struct lcm_net;

/* Creates the three parts from app (cfg, base, metrics, redis, store, httpd, httpc must be
 * set; all borrowed), registers the two routes on app->httpd and subscribes to the store.
 * Call after the store and the HTTP server/client exist, before the loop runs.
 * Returns NULL with err filled. */
struct lcm_net *lcm_net_new(struct lcm_app *app, char *err, size_t errlen);
/* On SIGTERM, before lcm_httpd_shutdown(): stops taking outbound work and releases the
 * deliverer's lease so another replica takes over at once. Optional; idempotent. */
void lcm_net_shutdown(struct lcm_net *n);
/* Frees everything. Call it before lcm_httpd_free(), lcm_store_free(), lcm_httpc_free() and
 * lcm_redis_free(): callbacks still pending in those complete later harmlessly. */
void lcm_net_free(struct lcm_net *n);

#endif
