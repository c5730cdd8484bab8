/* Multi-aggregate commits for the controllers: scratch copies of read-model states (cloned
 * through the kind's own fields/from_fields, the path Redis hashes take), commands folded as
 * they are made, and one fenced lcm_ctl_commit at the end. */
#include "sessions_tx.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "domain/rfc3339.h"
#include "store/store.h"

void lcm_tx_init(struct lcm_tx *t)
{
    memset(t, 0, sizeof(*t));
}

void lcm_tx_free(struct lcm_tx *t)
{
    for (size_t i = 0; i < t->n; i++) {
        struct lcm_tx_agg *a = &t->a[i];
        if (a->scratch)
            a->kind->destroy(a->scratch);
        lcm_events_clear(&a->evs);
        free(a->id);
    }
    t->n = 0;
}

struct fields {
    char **names, **values;
    size_t n, cap;
    int oom;
};

static void collect(const char *field, const char *value, void *ud)
{
    struct fields *f = ud;
    if (f->oom)
        return;
    if (f->n == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 32;
        char **nn = realloc(f->names, nc * sizeof(*nn)), **nv;
        if (!nn) {
            f->oom = 1;
            return;
        }
        f->names = nn;
        nv = realloc(f->values, nc * sizeof(*nv));
        if (!nv) {
            f->oom = 1;
            return;
        }
        f->values = nv;
        f->cap = nc;
    }
    f->names[f->n] = strdup(field);
    f->values[f->n] = strdup(value ? value : "");
    f->n++;
    if (!f->names[f->n - 1] || !f->values[f->n - 1])
        f->oom = 1;
}

static void *clone_state(const struct lcm_kind *k, const char *id, const void *cur)
{
    void *st = k->create(id);
    if (!st || !cur)
        return st;
    struct fields f = { 0 };
    k->fields(cur, collect, &f);
    char ver[32];
    snprintf(ver, sizeof(ver), "%" PRIu64, k->version(cur));
    collect("version", ver, &f);
    char why[200];
    int rc = f.oom ? -1
                   : k->from_fields(st, (const char *const *)f.names, (const char *const *)f.values,
                                    f.n, why, sizeof(why));
    for (size_t i = 0; i < f.n; i++) {
        free(f.names[i]);
        free(f.values[i]);
    }
    free(f.names);
    free(f.values);
    if (rc) {
        k->destroy(st);
        return NULL;
    }
    return st;
}

void *lcm_tx_state(struct lcm_tx *t, const struct lcm_kind *k, const char *id, const void *cur)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->a[i].kind == k && !strcmp(t->a[i].id, id))
            return t->a[i].scratch;
    if (t->n == LCM_TX_MAX) {
        t->failed = 1;
        lcm_derr_set(&t->derr, LCM_DERR_INVALID, "", "too many aggregates in one commit");
        return NULL;
    }
    struct lcm_tx_agg *a = &t->a[t->n];
    memset(a, 0, sizeof(*a));
    a->kind = k;
    a->id = strdup(id);
    a->scratch = a->id ? clone_state(k, id, cur) : NULL;
    a->expected = cur ? k->version(cur) : 0;
    lcm_events_init(&a->evs);
    if (!a->scratch) {
        free(a->id);
        t->failed = 1;
        lcm_derr_set(&t->derr, LCM_DERR_NOMEM, "", "cannot copy %s %s", k->name, id);
        return NULL;
    }
    t->n++;
    return a->scratch;
}

struct lcm_events *lcm_tx_events(struct lcm_tx *t, const void *scratch)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->a[i].scratch == scratch)
            return &t->a[i].evs;
    return NULL;
}

int lcm_tx_check(struct lcm_tx *t, int rc, const struct lcm_derr *e)
{
    if (rc < 0) {
        if (!t->failed && e)
            t->derr = *e;
        t->failed = 1;
        return rc;
    }
    for (size_t i = 0; i < t->n; i++) {
        struct lcm_tx_agg *a = &t->a[i];
        for (; a->folded < a->evs.n; a->folded++) {
            char atbuf[LCM_TIME_BUFSZ], why[200] = "";
            struct lcm_event ev;
            lcm_events_view(&a->evs, a->folded, a->kind->version(a->scratch) + 1, atbuf, &ev);
            if (a->kind->apply(a->scratch, &ev, why, sizeof(why))) {
                if (!t->failed)
                    lcm_derr_set(&t->derr, LCM_DERR_CONFLICT, "", "%s does not fold: %s",
                                 a->evs.v[a->folded].type, why);
                t->failed = 1;
                return -1;
            }
        }
    }
    return rc;
}

size_t lcm_tx_nevents(const struct lcm_tx *t)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++)
        n += t->a[i].evs.n;
    return n;
}

int lcm_tx_commit(struct lcm_tx *t, struct lcm_ctl *ctl, lcm_ctl_done_fn done, void *ud,
                  char *err, size_t errlen)
{
    if (t->failed) {
        snprintf(err, errlen, "%s", t->derr.message);
        return -1;
    }
    size_t total = lcm_tx_nevents(t), nc = 0, k = 0;
    if (total == 0) {
        snprintf(err, errlen, "nothing to commit");
        return -1;
    }
    struct lcm_store_change ch[LCM_TX_MAX];
    struct lcm_store_event *se = calloc(total, sizeof(*se));
    char **datas = calloc(total, sizeof(*datas));
    char (*ats)[LCM_TIME_BUFSZ] = calloc(total, LCM_TIME_BUFSZ);
    int rc = -1;
    if (!se || !datas || !ats) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < t->n; i++) {
        struct lcm_tx_agg *a = &t->a[i];
        if (!a->evs.n)
            continue;
        ch[nc] = (struct lcm_store_change){ .kind = a->kind, .id = a->id,
                                            .expected_version = a->expected,
                                            .events = &se[k], .n_events = a->evs.n };
        for (size_t e = 0; e < a->evs.n; e++, k++) {
            struct lcm_new_event *ne = &a->evs.v[e];
            datas[k] = cJSON_PrintUnformatted(ne->data);
            lcm_rfc3339_format(ne->at, ats[k], LCM_TIME_BUFSZ);
            if (!datas[k]) {
                snprintf(err, errlen, "out of memory");
                goto out;
            }
            se[k] = (struct lcm_store_event){ .type = ne->type, .data = datas[k], .at = ats[k],
                                              .by = ne->by };
        }
        nc++;
    }
    rc = lcm_ctl_commit(ctl, ch, nc, done, ud, err, errlen) == 0 ? 0 : -1;
out:
    for (size_t i = 0; datas && i < total; i++)
        free(datas[i]);
    free(datas);
    free(ats);
    free(se);
    return rc;
}
