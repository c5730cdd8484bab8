/* The list of events a command returns, and a helper that folds them (the in-memory half of
 * an append, used by tests and by the read model after a successful write). */
#include "events.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "derr.h"
#include "fsm.h"
#include "jsonx.h"

void lcm_events_init(struct lcm_events *evs)
{
    memset(evs, 0, sizeof *evs);
}

void lcm_events_clear(struct lcm_events *evs)
{
    for (size_t i = 0; i < evs->n; i++) {
        free(evs->v[i].type);
        free(evs->v[i].by);
        cJSON_Delete(evs->v[i].data);
    }
    free(evs->v);
    memset(evs, 0, sizeof *evs);
}

int lcm_events_add(struct lcm_events *evs, const char *type, cJSON *data, int64_t at,
                   const char *by)
{
    if (!data)
        data = cJSON_CreateObject();
    if (!data)
        return LCM_DERR_NOMEM;
    if (evs->n == evs->cap) {
        size_t cap = evs->cap ? evs->cap * 2 : 4;
        struct lcm_new_event *v = realloc(evs->v, cap * sizeof *v);
        if (!v) {
            cJSON_Delete(data);
            return LCM_DERR_NOMEM;
        }
        evs->v = v;
        evs->cap = cap;
    }
    struct lcm_new_event *e = &evs->v[evs->n];
    e->type = strdup(type);
    e->by = strdup(by && *by ? by : "system");
    if (!e->type || !e->by) {
        free(e->type);
        free(e->by);
        cJSON_Delete(data);
        return LCM_DERR_NOMEM;
    }
    e->data = data;
    e->at = at;
    evs->n++;
    return 0;
}

void lcm_events_view(const struct lcm_events *evs, size_t i, uint64_t version,
                     char atbuf[LCM_TIME_BUFSZ], struct lcm_event *out)
{
    const struct lcm_new_event *e = &evs->v[i];
    if (lcm_rfc3339_format(e->at, atbuf, LCM_TIME_BUFSZ))
        atbuf[0] = '\0';
    out->type = e->type;
    out->version = version;
    out->at = atbuf;
    out->by = e->by;
    out->data = e->data;
}

int lcm_events_apply(const struct lcm_kind *k, void *state, const struct lcm_events *evs,
                     char *err, size_t errlen)
{
    for (size_t i = 0; i < evs->n; i++) {
        char at[LCM_TIME_BUFSZ];
        struct lcm_event ev;
        lcm_events_view(evs, i, k->version(state) + 1, at, &ev);
        if (k->apply(state, &ev, err, errlen))
            return -1;
    }
    return 0;
}

struct cJSON *lcm_events_transition_data(const struct lcm_fsm *m, int from, const char *reason)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || lcm_jx_put_str(o, "from", lcm_fsm_name(m, from)) ||
        lcm_jx_put_str(o, "reason", reason)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int lcm_events_check(const struct lcm_event *ev, uint64_t cur, int64_t *at, char *err,
                     size_t errlen)
{
    if (!ev->type || !ev->data || !cJSON_IsObject(ev->data) || !ev->at ||
        lcm_rfc3339_parse(ev->at, at)) {
        lcm_errf(err, errlen, "event lacks type, object data or a valid time");
        return -1;
    }
    if (ev->version && ev->version != cur + 1) {
        lcm_errf(err, errlen, "version %llu does not follow %llu",
                 (unsigned long long)ev->version, (unsigned long long)cur);
        return -1;
    }
    return 0;
}
