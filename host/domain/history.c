/* Bounded status history shared by the aggregates. */
#include "history.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "jsonx.h"
#include "kind.h"
#include "rfc3339.h"

static void entry_free(struct lcm_hist_entry *e)
{
    free(e->by);
    free(e->reason);
}

void lcm_history_free(struct lcm_history *h)
{
    for (uint16_t i = 0; i < h->n; i++)
        entry_free(&h->v[i]);
    free(h->v);
    memset(h, 0, sizeof *h);
}

int lcm_history_clone(struct lcm_history *dst, const struct lcm_history *src)
{
    memset(dst, 0, sizeof *dst);
    if (!src->v)
        return 0;
    dst->v = calloc(src->cap ? src->cap : 1, sizeof *dst->v);
    if (!dst->v)
        return -1;
    dst->cap = src->cap;
    int rc = 0;
    for (uint16_t i = 0; i < src->n; i++, dst->n++) {
        dst->v[i] = src->v[i];
        rc |= lcm_clone_str(&dst->v[i].by);
        rc |= lcm_clone_str(&dst->v[i].reason);
    }
    return rc;
}

int lcm_history_push(struct lcm_history *h, int from, int to, int64_t at, const char *by,
                     const char *reason)
{
    struct lcm_hist_entry e = {.at = at, .from = (uint8_t)from, .to = (uint8_t)to};
    e.by = strdup(by && *by ? by : "system");
    e.reason = lcm_dup(reason);
    if (!e.by || (reason && *reason && !e.reason)) {
        entry_free(&e);
        return -1;
    }
    if (h->n == LCM_HISTORY_MAX) {
        entry_free(&h->v[0]);
        memmove(h->v, h->v + 1, (size_t)(h->n - 1) * sizeof *h->v);
        h->n--;
    }
    if (h->n == h->cap) {
        uint16_t cap = h->cap ? (uint16_t)(h->cap * 2) : 4;
        if (cap > LCM_HISTORY_MAX)
            cap = LCM_HISTORY_MAX;
        struct lcm_hist_entry *v = realloc(h->v, cap * sizeof *v);
        if (!v) {
            entry_free(&e);
            return -1;
        }
        h->v = v;
        h->cap = cap;
    }
    h->v[h->n++] = e;
    return 0;
}

cJSON *lcm_history_to_json(const struct lcm_history *h, const struct lcm_fsm *m)
{
    cJSON *a = cJSON_CreateArray();
    for (uint16_t i = 0; a && i < h->n; i++) {
        const struct lcm_hist_entry *e = &h->v[i];
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(a, o) ||
            lcm_jx_put_str(o, "from", lcm_fsm_name(m, e->from)) ||
            lcm_jx_put_str(o, "to", lcm_fsm_name(m, e->to)) || lcm_jx_put_time(o, "at", e->at) ||
            lcm_jx_put_str(o, "by", e->by) || lcm_jx_put_str(o, "reason", e->reason)) {
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

int lcm_history_from_json(struct lcm_history *h, const cJSON *arr, const struct lcm_fsm *m)
{
    struct lcm_history n = {0};
    if (arr && !cJSON_IsArray(arr))
        return -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        const char *from, *to, *by, *reason;
        int64_t at;
        if (lcm_jx_str(it, "from", &from) != 1 || lcm_jx_str(it, "to", &to) != 1 ||
            lcm_jx_time(it, "at", &at) < 0 || lcm_jx_str(it, "by", &by) < 0 ||
            lcm_jx_str(it, "reason", &reason) < 0)
            goto bad;
        int f = lcm_fsm_parse(m, from), t = lcm_fsm_parse(m, to);
        if (f < 0 || t < 0 || lcm_history_push(&n, f, t, at, by, reason))
            goto bad;
    }
    lcm_history_free(h);
    *h = n;
    return 0;
bad:
    lcm_history_free(&n);
    return -1;
}

size_t lcm_history_mem(const struct lcm_history *h)
{
    size_t b = (size_t)h->cap * sizeof *h->v;
    for (uint16_t i = 0; i < h->n; i++)
        b += (h->v[i].by ? strlen(h->v[i].by) + 1 : 0) +
             (h->v[i].reason ? strlen(h->v[i].reason) + 1 : 0);
    return b;
}

int lcm_history_apply_transition(const struct lcm_fsm *m, uint8_t *status,
                                 struct lcm_history *h, int to, const struct lcm_event *ev,
                                 int64_t at, char *err, size_t errlen)
{
    const char *from, *reason;
    if (lcm_jx_str(ev->data, "from", &from) != 1 || lcm_fsm_parse(m, from) != *status ||
        lcm_jx_str(ev->data, "reason", &reason) < 0) {
        lcm_errf(err, errlen, "%s: data.from must be the current status %s", ev->type,
                 lcm_fsm_name(m, *status));
        return -1;
    }
    if (!lcm_fsm_allowed(m, *status, to)) {
        lcm_errf(err, errlen, "%s cannot go from %s to %s", m->kind, lcm_fsm_name(m, *status),
                 lcm_fsm_name(m, to));
        return -1;
    }
    if (lcm_history_push(h, *status, to, at, ev->by, reason)) {
        lcm_errf(err, errlen, "out of memory");
        return -1;
    }
    *status = (uint8_t)to;
    return 0;
}
