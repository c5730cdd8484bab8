/* Session index for the scheduler and the autoscaler: a map session id → (pending?, start,
 * worker counted), an array of pending entries sorted by start (new ones collect in a tail
 * merged in at the next query; entries that stopped being pending are dropped lazily), and
 * per-worker counts of non-terminal sessions. Fed by lcm_store_subscribe. */
#include "scheduler_index.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "domain/kind.h"
#include "domain/session.h"
#include "domain/session_time.h"
#include "store/store.h"

#define RESYNC_S 60

struct sent {
    char *id;
    char *worker;          /* counted in wk (non-terminal session naming it), or NULL */
    int64_t key;           /* timeslot start while pending */
    uint32_t gen;          /* generation of the live element in the sorted array */
    int pending;
    struct sent *next;
};

struct wcnt {
    char *id;
    size_t n;
    struct wcnt *next;
};

struct elem {
    int64_t key;
    uint32_t gen;
    struct sent *e;
};

struct lcm_sched_index {
    struct lcm_store *st;
    int sub;
    struct sent **b;
    size_t nb, n;
    struct wcnt **wb;
    size_t nwb, nw;
    struct elem *v, *tail;
    size_t nv, capv, nt, capt;
    size_t npending;
    int synced;
    int synced_loaded;     /* the read models were loaded when it was last rebuilt */
    time_t synced_at;
};

static unsigned long hs(const char *s)
{
    unsigned long h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h;
}

static struct sent *find(const struct lcm_sched_index *x, const char *id)
{
    if (!x->nb)
        return NULL;
    for (struct sent *e = x->b[hs(id) % x->nb]; e; e = e->next)
        if (!strcmp(e->id, id))
            return e;
    return NULL;
}

static struct sent *get(struct lcm_sched_index *x, const char *id)
{
    struct sent *e = find(x, id);
    if (e)
        return e;
    if (x->n >= x->nb) {
        size_t nb = x->nb ? x->nb * 2 : 1024;
        struct sent **b = calloc(nb, sizeof *b);
        if (!b)
            return NULL;
        for (size_t i = 0; i < x->nb; i++)
            for (struct sent *y = x->b[i], *ny; y; y = ny) {
                ny = y->next;
                size_t h = hs(y->id) % nb;
                y->next = b[h];
                b[h] = y;
            }
        free(x->b);
        x->b = b;
        x->nb = nb;
    }
    e = calloc(1, sizeof *e);
    if (!e || !(e->id = strdup(id))) {
        free(e);
        return NULL;
    }
    size_t h = hs(id) % x->nb;
    e->next = x->b[h];
    x->b[h] = e;
    x->n++;
    return e;
}

static struct wcnt *wfind(struct lcm_sched_index *x, const char *id, int create)
{
    if (x->nwb) {
        for (struct wcnt *w = x->wb[hs(id) % x->nwb]; w; w = w->next)
            if (!strcmp(w->id, id))
                return w;
    }
    if (!create)
        return NULL;
    if (x->nw >= x->nwb) {
        size_t nb = x->nwb ? x->nwb * 2 : 256;
        struct wcnt **b = calloc(nb, sizeof *b);
        if (!b)
            return NULL;
        for (size_t i = 0; i < x->nwb; i++)
            for (struct wcnt *y = x->wb[i], *ny; y; y = ny) {
                ny = y->next;
                size_t h = hs(y->id) % nb;
                y->next = b[h];
                b[h] = y;
            }
        free(x->wb);
        x->wb = b;
        x->nwb = nb;
    }
    struct wcnt *w = calloc(1, sizeof *w);
    if (!w || !(w->id = strdup(id))) {
        free(w);
        return NULL;
    }
    size_t h = hs(id) % x->nwb;
    w->next = x->wb[h];
    x->wb[h] = w;
    x->nw++;
    return w;
}

static int push_tail(struct lcm_sched_index *x, struct sent *e)
{
    if (x->nt == x->capt) {
        size_t nc = x->capt ? x->capt * 2 : 256;
        struct elem *t = realloc(x->tail, nc * sizeof *t);
        if (!t)
            return -1;
        x->tail = t;
        x->capt = nc;
    }
    x->tail[x->nt++] = (struct elem){ e->key, e->gen, e };
    return 0;
}

static int valid(const struct elem *el)
{
    return el->e->pending && el->gen == el->e->gen;
}

void lcm_sched_index_note(struct lcm_sched_index *x, const char *id, const struct lcm_session *s)
{
    struct sent *e = s ? get(x, id) : find(x, id);
    if (!e) {
        /* out of memory: the periodic resync repairs it */
        if (s)
            x->synced = 0;
        return;
    }
    int pending = s && s->status == LCM_SS_PENDING;
    int64_t key = s ? s->start : 0;
    if (pending && (!e->pending || e->key != key)) {
        e->gen++;
        e->key = key;
        if (push_tail(x, e) < 0) {
            x->synced = 0;
            pending = 0;
        }
    }
    if (pending != e->pending)
        x->npending += pending ? 1 : (size_t)-1;
    e->pending = pending;
    const char *want = s && !lcm_session_is_terminal(s->status) && s->worker_id && *s->worker_id
                           ? s->worker_id : NULL;
    if (e->worker && want && !strcmp(e->worker, want))
        return;
    if (e->worker) {
        struct wcnt *w = wfind(x, e->worker, 0);
        if (w && w->n)
            w->n--;
        free(e->worker);
        e->worker = NULL;
    }
    if (want) {
        struct wcnt *w = wfind(x, want, 1);
        if (w && (e->worker = strdup(want)))
            w->n++;
        else
            x->synced = 0;
    }
}

static void change_cb(const struct lcm_kind *kind, const char *id, const void *state,
                      const struct lcm_event *ev, const char *feed_id, void *ud)
{
    (void)ev;
    (void)feed_id;
    if (kind == &lcm_kind_session || !strcmp(kind->name, "session"))
        lcm_sched_index_note(ud, id, state);
}

struct lcm_sched_index *lcm_sched_index_new(struct lcm_store *st)
{
    struct lcm_sched_index *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->st = st;
    x->sub = lcm_store_subscribe(st, change_cb, x);
    if (x->sub < 0) {
        free(x);
        return NULL;
    }
    return x;
}

void lcm_sched_index_free(struct lcm_sched_index *x)
{
    if (!x)
        return;
    lcm_store_unsubscribe(x->st, x->sub);
    for (size_t i = 0; i < x->nb; i++)
        for (struct sent *e = x->b[i], *n; e; e = n) {
            n = e->next;
            free(e->id);
            free(e->worker);
            free(e);
        }
    for (size_t i = 0; i < x->nwb; i++)
        for (struct wcnt *w = x->wb[i], *n; w; w = n) {
            n = w->next;
            free(w->id);
            free(w);
        }
    free(x->b);
    free(x->wb);
    free(x->v);
    free(x->tail);
    free(x);
}

static int resync_each(const char *id, const void *state, void *ud)
{
    lcm_sched_index_note(ud, id, state);
    return 0;
}

void lcm_sched_index_resync(struct lcm_sched_index *x)
{
    x->synced = 1;
    x->synced_loaded = lcm_store_loaded(x->st);
    x->synced_at = time(NULL);
    /* start the sorted array over (this also drops the stale entries a query never reached) */
    for (size_t i = 0; i < x->nb; i++)
        for (struct sent *e = x->b[i]; e; e = e->next)
            e->pending = 0;
    x->npending = 0;
    x->nv = x->nt = 0;
    lcm_store_each(x->st, "session", resync_each, x);
}

/* Rebuilt when never built, when the read models finished loading since (their initial
 * load is not reported as changes), and once a minute in case an update was lost. */
static void maybe_resync(struct lcm_sched_index *x)
{
    int loaded = lcm_store_loaded(x->st);
    if (!x->synced || (loaded && (!x->synced_loaded || time(NULL) - x->synced_at >= RESYNC_S)))
        lcm_sched_index_resync(x);
}

static int cmp_elem(const void *a, const void *b)
{
    const struct elem *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key;
}

/* Sorts the tail into the array, in place from the back: sequential moves only, no look at
 * the entries (stale ones are dropped when a query walks over them, or by the resync).
 * Returns 0 or -1 (memory: the tail stays for the next try, the array is still sorted). */
static int merge(struct lcm_sched_index *x)
{
    if (!x->nt)
        return 0;
    qsort(x->tail, x->nt, sizeof *x->tail, cmp_elem);
    if (x->nv + x->nt > x->capv) {
        size_t nc = (x->nv + x->nt) * 2;
        struct elem *m = realloc(x->v, nc * sizeof *m);
        if (!m)
            return -1;
        x->v = m;
        x->capv = nc;
    }
    size_t i = x->nv, j = x->nt, k = x->nv + x->nt;
    while (j > 0) {
        if (i > 0 && x->v[i - 1].key > x->tail[j - 1].key)
            x->v[--k] = x->v[--i];
        else
            x->v[--k] = x->tail[--j];
    }
    x->nv += x->nt;
    x->nt = 0;
    return 0;
}

size_t lcm_sched_index_each_pending(struct lcm_sched_index *x, int64_t start_max,
                                    lcm_sched_index_fn fn, void *ud)
{
    maybe_resync(x);
    if (merge(x) < 0)
        return 0;
    size_t calls = 0, w = 0, r = 0;
    int stop = 0;
    for (; r < x->nv && x->v[r].key <= start_max; r++) {
        struct elem el = x->v[r];
        if (!stop && valid(&el)) {
            const struct lcm_session *s = lcm_store_get(x->st, "session", el.e->id);
            if (!s || s->status != LCM_SS_PENDING || s->start != el.key) {
                /* the feed has not told us yet: take the read model's word */
                lcm_sched_index_note(x, el.e->id, s);
            } else {
                calls++;
                stop = fn(s, ud) != 0;
            }
        }
        if (valid(&el))
            x->v[w++] = el;
    }
    if (w < r) {
        memmove(&x->v[w], &x->v[r], (x->nv - r) * sizeof *x->v);
        x->nv -= r - w;
    }
    return calls;
}

size_t lcm_sched_index_worker_sessions(struct lcm_sched_index *x, const char *worker_id)
{
    maybe_resync(x);
    const struct wcnt *w = wfind(x, worker_id, 0);
    return w ? w->n : 0;
}

size_t lcm_sched_index_pending(const struct lcm_sched_index *x)
{
    return x->npending;
}
