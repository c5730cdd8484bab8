/* Shared internals of host/net (not for other parts): the context and each part's entry
 * points. */
#ifndef LCM_NET_INT_H
#define LCM_NET_INT_H

#include <stddef.h>
#include <stdint.h>

struct event;
struct event_base;
struct lcm_config;
struct lcm_httpc;
struct lcm_httpd;
struct lcm_kind;
struct lcm_event;
struct lcm_metrics;
struct lcm_redis;
struct lcm_store;
struct lcm_sse;
struct lcm_ce_ingest;
struct lcm_outbox;
struct cJSON;

struct lcm_net {
    const struct lcm_config *cfg;
    struct event_base *base;
    struct lcm_metrics *metrics;
    struct lcm_redis *redis;
    struct lcm_store *store;
    struct lcm_httpd *httpd;
    struct lcm_httpc *httpc;
    int sub;                        /* store subscription handle */
    struct lcm_sse *sse;
    struct lcm_ce_ingest *ce;
    struct lcm_outbox *outbox;
};

/* Stream ids "ms-seq": compares two ids (-1, 0, 1); unparsable ids sort first. */
int lcm_net_id_cmp(const char *a, const char *b);
int lcm_net_id_parse(const char *s, uint64_t *ms, uint64_t *seq);

/* One feed event as SSE and the outbox send it: {"kind","id","type","version","at","by","data"}
 * (data copied; NULL → {}). The object is the caller's; the text is malloc'd (cJSON_free).
 * NULL on OOM. */
struct cJSON *lcm_net_event_obj(const char *kind, const char *id, const char *type,
                                uint64_t version, const char *at, const char *by,
                                const struct cJSON *data);
char *lcm_net_event_json(const char *kind, const char *id, const char *type, uint64_t version,
                         const char *at, const char *by, const struct cJSON *data);

struct lcm_sse *lcm_sse_new(struct lcm_net *n, char *err, size_t errlen);
void lcm_sse_event(struct lcm_sse *s, const char *kind, const char *id, const char *type,
                   uint64_t version, const char *at, const char *by, const struct cJSON *data,
                   const char *feed_id);
void lcm_sse_free(struct lcm_sse *s);

struct lcm_ce_ingest *lcm_ce_ingest_new(struct lcm_net *n, char *err, size_t errlen);
void lcm_ce_ingest_free(struct lcm_ce_ingest *c);

struct lcm_outbox *lcm_outbox_new(struct lcm_net *n, char *err, size_t errlen);
void lcm_outbox_wake(struct lcm_outbox *o);
void lcm_outbox_shutdown(struct lcm_outbox *o);
void lcm_outbox_free(struct lcm_outbox *o);

#endif
