/* host/net wiring: creates the SSE feed, the CloudEvents ingestion and the outbound
 * deliverer on the app's loop, and fans every applied store event out to them from one
 * store subscription (so N SSE clients cost one subscription, not N). */
#include "net.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "app.h"
#include "kind.h"
#include "net_int.h"
#include "store/store.h"

int lcm_net_id_parse(const char *s, uint64_t *ms, uint64_t *seq)
{
    if (!s || !*s)
        return -1;
    char *end;
    unsigned long long a = strtoull(s, &end, 10), b = 0;
    if (end == s || (*end && *end != '-'))
        return -1;
    if (*end == '-') {
        const char *p = end + 1;
        b = strtoull(p, &end, 10);
        if (end == p || *end)
            return -1;
    }
    *ms = a;
    *seq = b;
    return 0;
}

int lcm_net_id_cmp(const char *a, const char *b)
{
    uint64_t am = 0, as = 0, bm = 0, bs = 0;
    int oka = lcm_net_id_parse(a, &am, &as) == 0, okb = lcm_net_id_parse(b, &bm, &bs) == 0;
    if (!oka || !okb)
        return oka - okb;
    if (am != bm)
        return am < bm ? -1 : 1;
    if (as != bs)
        return as < bs ? -1 : 1;
    return 0;
}

cJSON *lcm_net_event_obj(const char *kind, const char *id, const char *type, uint64_t version,
                        const char *at, const char *by, const cJSON *data)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *d = data ? cJSON_Duplicate(data, 1) : cJSON_CreateObject();
    if (!o || !d || !cJSON_AddStringToObject(o, "kind", kind) || !cJSON_AddStringToObject(o, "id", id) ||
        !cJSON_AddStringToObject(o, "type", type) ||
        !cJSON_AddNumberToObject(o, "version", (double)version) ||
        !cJSON_AddStringToObject(o, "at", at ? at : "") ||
        !cJSON_AddStringToObject(o, "by", by ? by : "")) {
        cJSON_Delete(d);
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_AddItemToObject(o, "data", d);
    return o;
}

char *lcm_net_event_json(const char *kind, const char *id, const char *type, uint64_t version,
                         const char *at, const char *by, const cJSON *data)
{
    cJSON *o = lcm_net_event_obj(kind, id, type, version, at, by, data);
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

static void on_change(const struct lcm_kind *kind, const char *id, const void *state,
                      const struct lcm_event *ev, const char *feed_id, void *ud)
{
    struct lcm_net *n = ud;
    (void)state;
    if (n->sse)
        lcm_sse_event(n->sse, kind->name, id, ev->type, ev->version, ev->at, ev->by, ev->data,
                      feed_id);
    if (n->outbox)
        lcm_outbox_wake(n->outbox);
}

struct lcm_net *lcm_net_new(struct lcm_app *app, char *err, size_t errlen)
{
    if (!app || !app->cfg || !app->base || !app->redis || !app->store || !app->httpd || !app->httpc) {
        snprintf(err, errlen, "lcm_net_new needs cfg, base, redis, store, httpd and httpc");
        return NULL;
    }
    struct lcm_net *n = calloc(1, sizeof(*n));
    if (!n) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    n->cfg = app->cfg;
    n->base = app->base;
    n->metrics = app->metrics;
    n->redis = app->redis;
    n->store = app->store;
    n->httpd = app->httpd;
    n->httpc = app->httpc;
    n->sub = -1;
    if (!(n->sse = lcm_sse_new(n, err, errlen)) || !(n->ce = lcm_ce_ingest_new(n, err, errlen)) ||
        !(n->outbox = lcm_outbox_new(n, err, errlen)))
        goto fail;
    if ((n->sub = lcm_store_subscribe(n->store, on_change, n)) < 0) {
        snprintf(err, errlen, "cannot subscribe to the store");
        goto fail;
    }
    return n;
fail:
    lcm_net_free(n);
    return NULL;
}

void lcm_net_shutdown(struct lcm_net *n)
{
    if (n && n->outbox)
        lcm_outbox_shutdown(n->outbox);
}

void lcm_net_free(struct lcm_net *n)
{
    if (!n)
        return;
    if (n->sub > 0)
        lcm_store_unsubscribe(n->store, n->sub);
    lcm_outbox_free(n->outbox);
    lcm_ce_ingest_free(n->ce);
    lcm_sse_free(n->sse);
    free(n);
}
