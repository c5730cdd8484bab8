/* The event store on Redis streams: atomic appends through the `lcm` Redis Function library
 * (optimistic concurrency + leader fencing), in-memory read models loaded from the hashes and
 * kept current by following lcm:feed, and the rebuild of hashes/indexes from the streams.
 * Key layout and operator commands: docs/redis-layout.md. */
#ifndef LCM_STORE_H
#define LCM_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "../domain/kind.h"

struct event_base;
struct lcm_metrics;
struct lcm_redis;
struct lcm_store;

/* Status codes of store operations (0 or negative). */
enum {
    LCM_STORE_OK = 0,
    LCM_STORE_ECONFLICT = -1,    /* expected version is not the current one (HTTP 409/412) */
    LCM_STORE_EFENCED = -2,      /* fencing token is not the current lease's */
    LCM_STORE_EDUPLICATE = -3,   /* a uniqueness key is held by another value */
    LCM_STORE_EINVALID = -4,     /* malformed request (a bug in the caller) */
    LCM_STORE_EUNAVAILABLE = -5, /* not connected, or the connection dropped: outcome unknown */
    LCM_STORE_EREDIS = -6,       /* any other Redis error */
    LCM_STORE_ENOMEM = -7,
};
const char *lcm_store_strerror(int status);

/* Library name and source (host/store/lcm_store.lua, embedded at build time). */
extern const char lcm_store_lua_source[];

struct lcm_store_opts {
    long feed_maxlen;             /* MAXLEN ~ for lcm:feed; 0 → default 100000; <0 → no cap */
    const char *follow_url;       /* Redis URL of the feed follower connection; NULL → the URL
                                     of the command connection */
    int no_follow;                /* 1: do not follow lcm:feed (rebuild, benchmarks) */
    const struct lcm_kind *const *kinds;  /* NULL-terminated; NULL → lcm_kinds */
};

/* Creates the store on an existing Redis connection (borrowed). Registers an on-connect hook
 * that loads the function library (FUNCTION LOAD REPLACE) before any queued command.
 * Shutdown order: lcm_redis_free(r) first (pending callbacks then complete with
 * LCM_STORE_EUNAVAILABLE), then lcm_store_free(). Returns NULL with err filled. */
struct lcm_store *lcm_store_new(struct event_base *base, struct lcm_redis *r,
                                struct lcm_metrics *metrics, const struct lcm_store_opts *opts,
                                char *err, size_t errlen);
void lcm_store_free(struct lcm_store *s);

/* ---- Writes -------------------------------------------------------------------------- */

/* One event to append; strings borrowed for the call. data is a JSON object text. */
struct lcm_store_event {
    const char *type;
    const char *data;
    const char *at;               /* RFC 3339 UTC; NULL → now */
    const char *by;               /* actor; NULL → "" */
};
struct lcm_store_field {
    const char *name;
    const char *value;            /* NULL → HDEL the field */
};
struct lcm_store_index_op {
    const char *key;              /* must start with "lcm:idx:" */
    int sorted;                   /* 0 = set, 1 = sorted set */
    int remove;                   /* 0 = SADD/ZADD, 1 = SREM/ZREM */
    double score;                 /* sorted add only */
    const char *member;           /* NULL → the aggregate id */
    int unique;                   /* set add only: refused (EDUPLICATE) when the set holds
                                     another member (struct lcm_index_entry.unique) */
};
/* A uniqueness reservation lcm:uniq:<name> → value, checked and written in the same atomic
 * call: reserving a name held by a different value fails with LCM_STORE_EDUPLICATE (the
 * holder is reported); reserving it again with the same value is a no-op (idempotent). */
struct lcm_store_unique {
    const char *name;             /* e.g. "reservation:R-1", "idem:<Idempotency-Key>" */
    const char *value;            /* NULL → the aggregate id */
    long long ttl_ms;             /* 0 = no expiry */
    int release;                  /* 1 = delete if it still holds value */
};
/* Low-level write of one aggregate: exactly what lcm_append receives. */
struct lcm_store_write {
    const char *kind;
    const char *id;
    uint64_t expected_version;    /* 0 = the aggregate must not exist yet */
    const struct lcm_store_event *events; size_t n_events;       /* ≥ 1 */
    const struct lcm_store_field *fields; size_t n_fields;       /* hash changes */
    const struct lcm_store_index_op *indexes; size_t n_indexes;
    const struct lcm_store_unique *uniques; size_t n_uniques;
};

struct lcm_store_result {
    int status;                   /* LCM_STORE_OK or a negative code */
    char message[256];            /* Redis's error text, or why */
    char aggregate[160];          /* CONFLICT: "<kind>:<id>" */
    int64_t current_version;      /* CONFLICT: the aggregate's version, -1 unknown */
    char holder[256];             /* DUPLICATE: "<key> <value holding it>" */
    const uint64_t *versions;     /* OK: the new version of each write, in order */
    size_t n_versions;
};
/* Runs exactly once, never from inside the call that accepted the operation; res is valid
 * only during the callback. */
typedef void (*lcm_store_done_fn)(const struct lcm_store_result *res, void *ud);

/* Appends atomically to one or more aggregates (all or nothing). fence: the leader lease
 * token the write is made under, or NULL for no check (API writes). Returns 0 (done runs
 * later exactly once) or a negative LCM_STORE_E* (done never runs). Any number of appends
 * may be in flight. They reach Redis in the order they were made: at once while few calls
 * are in flight, otherwise queued and sent together in one FCALL (group commit), where each
 * append is still validated, written or refused on its own (docs/redis-layout.md). */
int lcm_store_append(struct lcm_store *s, const struct lcm_store_write *writes, size_t n,
                     const char *fence, lcm_store_done_fn done, void *ud);

/* High-level write: events for aggregates known to the read model. The store folds the
 * events into a copy of the current state with kind->apply, derives the hash field and index
 * changes (diff of kind->fields and kind->indexes old vs new) and appends; on success the read
 * model holds the new state before done runs (read your writes). Returns
 * LCM_STORE_ECONFLICT at once when the read model's version differs from expected_version,
 * LCM_STORE_EINVALID (err filled) when an event does not apply. */
struct lcm_store_change {
    const struct lcm_kind *kind;
    const char *id;
    uint64_t expected_version;
    const struct lcm_store_event *events; size_t n_events;
    const struct lcm_store_unique *uniques; size_t n_uniques;
};
int lcm_store_commit(struct lcm_store *s, const struct lcm_store_change *changes, size_t n,
                     const char *fence, lcm_store_done_fn done, void *ud,
                     char *err, size_t errlen);

/* ---- Read models --------------------------------------------------------------------- */

/* Loads every aggregate from its hash (SCAN lcm:{*} TYPE hash + pipelined HGETALL), then
 * follows lcm:feed on a second connection (XREAD BLOCK) unless opts.no_follow.
 * ready runs once when the load finished (status 0) or failed. Returns 0 or -1. */
typedef void (*lcm_store_ready_fn)(struct lcm_store *s, int status, void *ud);
int lcm_store_start(struct lcm_store *s, lcm_store_ready_fn ready, void *ud);
int lcm_store_loaded(const struct lcm_store *s);

/* The current state of one aggregate (owned by the store; valid until control returns to
 * the loop), or NULL. */
const void *lcm_store_get(const struct lcm_store *s, const char *kind, const char *id);
/* Calls fn for every aggregate of a kind (unspecified order); fn returns nonzero to stop. */
typedef int (*lcm_store_each_fn)(const char *id, const void *state, void *ud);
size_t lcm_store_each(const struct lcm_store *s, const char *kind, lcm_store_each_fn fn,
                      void *ud);
size_t lcm_store_count(const struct lcm_store *s, const char *kind);

/* Called once per lcm:feed entry folded into the read model, in feed order, with the
 * aggregate's current state (which may already include later events: a local commit installs
 * its state before its feed entries arrive). feed_id is the lcm:feed entry id (for SSE's
 * Last-Event-ID). Events of the initial load are not reported. */
typedef void (*lcm_store_change_fn)(const struct lcm_kind *kind, const char *id,
                                    const void *state, const struct lcm_event *ev,
                                    const char *feed_id, void *ud);
/* Returns a subscription handle (> 0) or -1. */
int lcm_store_subscribe(struct lcm_store *s, lcm_store_change_fn fn, void *ud);
void lcm_store_unsubscribe(struct lcm_store *s, int handle);
/* The last lcm:feed id folded ("0-0" before any). */
const char *lcm_store_feed_position(const struct lcm_store *s);

/* ---- Rebuild ------------------------------------------------------------------------- */

struct lcm_store_rebuild_stats {
    size_t aggregates, events, skipped, index_entries;
    double seconds;
};
/* Rebuilds every hash lcm:{<kind>:<id>} and every index key lcm:idx:* from the event
 * streams alone (folding with kind->apply). Deletes lcm:idx:* first. Run it with no writers
 * (lcmd --rebuild). done runs once with 0 or a negative code. Returns 0 or -1. */
typedef void (*lcm_store_rebuild_fn)(struct lcm_store *s, int status,
                                     const struct lcm_store_rebuild_stats *st, void *ud);
int lcm_store_rebuild(struct lcm_store *s, lcm_store_rebuild_fn done, void *ud);

#endif
