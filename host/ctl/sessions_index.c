/* The sessions controller's index of sessions that need looking at: a hash map by id, a
 * doubly linked list of the active ones and a binary min-heap of the parked ones by wake
 * time, so that every operation is O(1) or O(log parked) and a pass walks only the active
 * list. */
#include "sessions_index.h"

#include <stdlib.h>
#include <string.h>

#define NOT_PARKED ((size_t)-1)

struct ent {
    char *id;                     /* owned */
    unsigned long hash;
    int64_t at;                   /* parked until (wall seconds); 0 while active */
    size_t hpos;                  /* index in the heap, NOT_PARKED while active */
    struct ent *prev, *next;      /* active list */
    struct ent *chain;            /* hash bucket */
};

struct lcm_sidx {
    struct ent **buckets;
    size_t nbuckets, n;
    struct ent *active;           /* head of the active list */
    size_t nactive;
    struct ent **heap;
    size_t nheap, capheap;
};

static unsigned long hstr(const char *s)
{
    unsigned long h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h;
}

struct lcm_sidx *lcm_sidx_new(void)
{
    struct lcm_sidx *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->nbuckets = 256;
    if (!(x->buckets = calloc(x->nbuckets, sizeof(*x->buckets)))) {
        free(x);
        return NULL;
    }
    return x;
}

void lcm_sidx_clear(struct lcm_sidx *x)
{
    if (!x)
        return;
    for (size_t i = 0; i < x->nbuckets; i++) {
        while (x->buckets[i]) {
            struct ent *e = x->buckets[i];
            x->buckets[i] = e->chain;
            free(e->id);
            free(e);
        }
    }
    x->n = x->nactive = x->nheap = 0;
    x->active = NULL;
}

void lcm_sidx_free(struct lcm_sidx *x)
{
    if (!x)
        return;
    lcm_sidx_clear(x);
    free(x->buckets);
    free(x->heap);
    free(x);
}

static struct ent *find(const struct lcm_sidx *x, const char *id, unsigned long h)
{
    for (struct ent *e = x->buckets[h & (x->nbuckets - 1)]; e; e = e->chain)
        if (e->hash == h && !strcmp(e->id, id))
            return e;
    return NULL;
}

/* Doubles the bucket array; on failure the table just stays denser. */
static void grow(struct lcm_sidx *x)
{
    size_t nb = x->nbuckets * 2;
    struct ent **b = calloc(nb, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < x->nbuckets; i++) {
        while (x->buckets[i]) {
            struct ent *e = x->buckets[i];
            x->buckets[i] = e->chain;
            e->chain = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    }
    free(x->buckets);
    x->buckets = b;
    x->nbuckets = nb;
}

/* ---- active list ---- */

static void list_add(struct lcm_sidx *x, struct ent *e)
{
    e->prev = NULL;
    e->next = x->active;
    if (x->active)
        x->active->prev = e;
    x->active = e;
    x->nactive++;
}

static void list_del(struct lcm_sidx *x, struct ent *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        x->active = e->next;
    if (e->next)
        e->next->prev = e->prev;
    e->prev = e->next = NULL;
    x->nactive--;
}

/* ---- heap ---- */

static void heap_set(struct lcm_sidx *x, size_t i, struct ent *e)
{
    x->heap[i] = e;
    e->hpos = i;
}

static void sift_up(struct lcm_sidx *x, size_t i)
{
    struct ent *e = x->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (x->heap[p]->at <= e->at)
            break;
        heap_set(x, i, x->heap[p]);
        i = p;
    }
    heap_set(x, i, e);
}

static void sift_down(struct lcm_sidx *x, size_t i)
{
    struct ent *e = x->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        int64_t best = e->at;
        if (l < x->nheap && x->heap[l]->at < best) {
            m = l;
            best = x->heap[l]->at;
        }
        if (l + 1 < x->nheap && x->heap[l + 1]->at < best)
            m = l + 1;
        if (m == i)
            break;
        heap_set(x, i, x->heap[m]);
        i = m;
    }
    heap_set(x, i, e);
}

static int heap_add(struct lcm_sidx *x, struct ent *e)
{
    if (x->nheap == x->capheap) {
        size_t nc = x->capheap ? x->capheap * 2 : 64;
        struct ent **h = realloc(x->heap, nc * sizeof(*h));
        if (!h)
            return -1;
        x->heap = h;
        x->capheap = nc;
    }
    heap_set(x, x->nheap++, e);
    sift_up(x, e->hpos);
    return 0;
}

static void heap_del(struct lcm_sidx *x, struct ent *e)
{
    size_t i = e->hpos;
    struct ent *last = x->heap[--x->nheap];
    e->hpos = NOT_PARKED;
    if (i == x->nheap)
        return;
    heap_set(x, i, last);
    sift_up(x, i);
    sift_down(x, last->hpos);
}

/* ---- operations ---- */

static struct ent *get_or_add(struct lcm_sidx *x, const char *id, int *added)
{
    unsigned long h = hstr(id);
    struct ent *e = find(x, id, h);
    *added = 0;
    if (e)
        return e;
    if (x->n >= x->nbuckets)
        grow(x);
    e = calloc(1, sizeof(*e));
    if (!e || !(e->id = strdup(id))) {
        free(e);
        return NULL;
    }
    e->hash = h;
    e->hpos = NOT_PARKED;
    e->chain = x->buckets[h & (x->nbuckets - 1)];
    x->buckets[h & (x->nbuckets - 1)] = e;
    x->n++;
    *added = 1;
    return e;
}

int lcm_sidx_activate(struct lcm_sidx *x, const char *id)
{
    int added;
    struct ent *e = get_or_add(x, id, &added);
    if (!e)
        return -1;
    if (e->hpos != NOT_PARKED) {
        heap_del(x, e);
        list_add(x, e);
    } else if (added) {
        list_add(x, e);
    }
    e->at = 0;
    return 0;
}

int lcm_sidx_park(struct lcm_sidx *x, const char *id, int64_t at)
{
    int added;
    struct ent *e = get_or_add(x, id, &added);
    if (!e)
        return -1;
    if (e->hpos != NOT_PARKED) {
        int64_t old = e->at;
        e->at = at;
        if (at < old)
            sift_up(x, e->hpos);
        else if (at > old)
            sift_down(x, e->hpos);
        return 0;
    }
    if (!added)
        list_del(x, e);
    e->at = at;
    if (heap_add(x, e) < 0) {
        /* cannot park: keep looking at it on every pass rather than lose it */
        e->at = 0;
        list_add(x, e);
        return -1;
    }
    return 0;
}

void lcm_sidx_remove(struct lcm_sidx *x, const char *id)
{
    unsigned long h = hstr(id);
    for (struct ent **pp = &x->buckets[h & (x->nbuckets - 1)]; *pp; pp = &(*pp)->chain) {
        struct ent *e = *pp;
        if (e->hash != h || strcmp(e->id, id))
            continue;
        *pp = e->chain;
        if (e->hpos != NOT_PARKED)
            heap_del(x, e);
        else
            list_del(x, e);
        x->n--;
        free(e->id);
        free(e);
        return;
    }
}

size_t lcm_sidx_wake_due(struct lcm_sidx *x, int64_t now)
{
    size_t k = 0;
    while (x->nheap && x->heap[0]->at <= now) {
        struct ent *e = x->heap[0];
        heap_del(x, e);
        e->at = 0;
        list_add(x, e);
        k++;
    }
    return k;
}

int64_t lcm_sidx_next(const struct lcm_sidx *x)
{
    return x->nheap ? x->heap[0]->at : 0;
}

int lcm_sidx_state(const struct lcm_sidx *x, const char *id, int64_t *at)
{
    struct ent *e = find(x, id, hstr(id));
    if (at)
        *at = e ? e->at : 0;
    return !e ? 0 : e->hpos == NOT_PARKED ? 1 : 2;
}

size_t lcm_sidx_nactive(const struct lcm_sidx *x) { return x->nactive; }
size_t lcm_sidx_nparked(const struct lcm_sidx *x) { return x->nheap; }

char **lcm_sidx_active_ids(const struct lcm_sidx *x, size_t *n)
{
    char **v = calloc(x->nactive + 1, sizeof(*v));
    size_t k = 0;
    if (!v)
        return NULL;
    for (const struct ent *e = x->active; e; e = e->next) {
        if (!(v[k] = strdup(e->id))) {
            lcm_sidx_ids_free(v);
            return NULL;
        }
        k++;
    }
    if (n)
        *n = k;
    return v;
}

void lcm_sidx_ids_free(char **ids)
{
    for (size_t i = 0; ids && ids[i]; i++)
        free(ids[i]);
    free(ids);
}
