/* Internals shared by the store's files (store.c: connection and writes, readmodel.c: the
 * in-memory aggregates and the feed follower, rebuild.c). Not for use outside host/store. */
#ifndef LCM_STORE_INT_H
#define LCM_STORE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct event;

/* The hash fields of one state in one allocation: name and value NUL-terminated in buf,
 * off[2i] / off[2i+1] their offsets ("version" not included). */
struct lcm_store_fset {
    uint64_t version;          /* of the state they were emitted from */
    char *buf;
    size_t len, cap;
    uint32_t *off;
    size_t n, capn;
    int oom;
};

/* One aggregate in the read model (chained hash map per kind). */
struct lcm_store_agg {
    char *id;
    void *state;               /* owned, kind->destroy */
    uint64_t version;          /* kind->version(state), cached */
    uint64_t notified;         /* last version reported to subscribers from the feed */
    int reloading;             /* an HGETALL resync is in flight */
    struct lcm_store_agg *next;
    /* The fields of state as this process last committed them (so the next commit diffs
     * against them instead of emitting the current state again), or NULL; dropped whenever
     * state changes any other way. Bounded in bytes, least recently committed dropped first. */
    struct lcm_store_fset *fields;
    struct lcm_store_agg *lru_prev, *lru_next;
};

struct lcm_store_kmap {
    struct lcm_store *s;
    const struct lcm_kind *kind;
    struct lcm_store_agg **buckets;
    size_t nbuckets, count;
};

struct lcm_store_sub {
    int handle;
    lcm_store_change_fn fn;
    void *ud;
};

struct lcm_store_load;
struct lcm_store_rebuild;
struct append_op;

struct lcm_store {
    struct event_base *base;
    struct lcm_redis *r;          /* borrowed: commands */
    struct lcm_redis *follow;     /* owned: XREAD BLOCK on lcm:feed */
    struct lcm_metrics *metrics;  /* borrowed, may be NULL */
    long feed_maxlen;             /* < 0: uncapped */
    char feed_maxlen_s[24];
    char *follow_url;
    int no_follow;
    int closing;

    struct lcm_store_kmap *maps;
    size_t n_maps;

    struct lcm_store_sub *subs;
    size_t n_subs, cap_subs;
    int next_handle;

    char feed_pos[48];
    int loaded;
    int follow_started;
    int follow_inflight;
    struct event *follow_retry;
    struct lcm_store_load *load;       /* in-flight initial load, or NULL */
    lcm_store_ready_fn ready;
    void *ready_ud;
    struct lcm_store_rebuild *rebuild; /* in-flight rebuild, or NULL */
    size_t pending_reloads;

    /* Field cache of the read model (store.c): most recently committed first. */
    struct lcm_store_agg *lru_head, *lru_tail;
    size_t fcache_bytes, fcache_max;

    /* Group commit (store.c): appends waiting for an FCALL to return, FIFO. */
    struct append_op *q_head, *q_tail;
    size_t q_len;
    int inflight;                 /* lcm_append calls without reply */
    int in_reply;                 /* inside a batch's callbacks: appends queue */
};

/* Read-model map helpers (readmodel.c). */
struct lcm_store_kmap *lcm_store_kmap_find(const struct lcm_store *s, const char *kind);
struct lcm_store_agg *lcm_store_agg_find(const struct lcm_store_kmap *m, const char *id);
/* Inserts or replaces (state ownership moves to the map). Returns the entry or NULL. */
struct lcm_store_agg *lcm_store_agg_put(struct lcm_store_kmap *m, const char *id, void *state);
void lcm_store_maps_free(struct lcm_store *s);
void lcm_store_follow_stop(struct lcm_store *s);
void lcm_store_rebuild_abort(struct lcm_store *s);

/* Field sets (store.c). collect emits state's fields into f (zeroed first); f->oom on
 * allocation failure. */
void lcm_store_fset_collect(const struct lcm_kind *k, const void *state,
                            struct lcm_store_fset *f);
void lcm_store_fset_free(struct lcm_store_fset *f);
/* Drops a's cached fields (state replaced or changed outside a commit of this process). */
void lcm_store_fcache_drop(struct lcm_store *s, struct lcm_store_agg *a);
/* Re-reads one aggregate's hash and takes it as the read model's state whenever the versions
 * differ, in either direction (Redis lost writes in a failover, or we missed some). */
void lcm_store_resync(struct lcm_store *s, const char *kind, const char *id);
#define LCM_STORE_FCACHE_MAX ((size_t)16 << 20)   /* bytes of cached fields */

/* Copies a state through fields()/from_fields() (kinds without clone). NULL on failure. */
void *lcm_store_clone_state(const struct lcm_kind *k, const char *id, const void *state,
                            char *err, size_t errlen);

/* Collected hash fields of a state ("version" not included), owned strings. */
struct lcm_store_fieldv {
    char **names, **values;
    size_t n, cap;
    int oom;
};
void lcm_store_fieldv_collect(const struct lcm_kind *k, const void *state,
                              struct lcm_store_fieldv *out);
void lcm_store_fieldv_free(struct lcm_store_fieldv *v);

/* RFC 3339 UTC with milliseconds, for events without `at`. */
void lcm_store_now(char *buf, size_t cap);

#define LCM_STORE_FEED "lcm:feed"
#define LCM_STORE_LEADER "lcm:leader"

#endif
