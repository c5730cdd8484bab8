/* The contract between the domain (pure C aggregates) and the generic parts of the host that
 * handle every aggregate the same way: the event store's rebuild, the read models that
 * follow lcm:feed, the API's generic GET/list. One vtable per aggregate kind. */
#ifndef LCM_DOMAIN_KIND_H
#define LCM_DOMAIN_KIND_H

#include <stddef.h>
#include <stdint.h>

struct cJSON;

/* One event as stored in lcm:{<kind>:<id>}:events (fields type, version, at, by, data). */
struct lcm_event {
    const char *type;          /* e.g. "session.scheduled" */
    uint64_t version;          /* aggregate version after this event (1 for the first) */
    const char *at;            /* RFC 3339 UTC */
    const char *by;            /* actor: token subject, "controller:scheduler", … */
    const struct cJSON *data;  /* payload (borrowed) */
};

/* Index membership of an aggregate's current state, e.g. set "lcm:idx:session:status:ready"
 * member ID, or sorted set "lcm:idx:session:start" member ID score 1764240000. */
struct lcm_index_entry {
    const char *key;
    int sorted;                /* 0 = set (SADD/SREM), 1 = sorted set (ZADD/ZREM) */
    double score;
    int unique;                /* 1: the key may hold at most this one member; the store
                                * refuses (conflict) a write that would add a second one
                                * (e.g. lcm:idx:session:reservation:<reservation_id>) */
};
typedef void (*lcm_index_emit_fn)(const struct lcm_index_entry *e, void *ud);
/* One field of the aggregate's hash lcm:{<kind>:<id>} (value NUL-terminated; JSON when
 * nested). The store adds "version" itself. */
typedef void (*lcm_field_emit_fn)(const char *field, const char *value, void *ud);

struct lcm_kind {
    const char *name;          /* "definition", "template", "worker", "session", "lab" */
    void *(*create)(const char *id);             /* empty state, version 0 */
    void (*destroy)(void *state);
    /* Folds one event into state. Returns 0, or -1 with err filled when the event does not
     * fit (unknown type, malformed data); state is then unchanged. */
    int (*apply)(void *state, const struct lcm_event *ev, char *err, size_t errlen);
    /* The hash fields for the current state (deterministic: same events → same bytes). */
    void (*fields)(const void *state, lcm_field_emit_fn emit, void *ud);
    /* Index memberships for the current state (the store diffs old vs new). */
    void (*indexes)(const void *state, lcm_index_emit_fn emit, void *ud);
    /* Full JSON representation for the API (caller frees with cJSON_Delete). */
    struct cJSON *(*to_json)(const void *state);
    /* Rebuilds state from a hash read back from Redis (fields as emitted above).
     * Returns 0 or -1 with err. */
    int (*from_fields)(void *state, const char *const *fields, const char *const *values,
                       size_t n, char *err, size_t errlen);
    uint64_t (*version)(const void *state);
    /* Optional (NULL: the store copies through fields() and from_fields()). A deep copy of
     * state that folds and emits exactly as the original: fields(clone) == fields(state)
     * byte for byte, same version. NULL when out of memory. */
    void *(*clone)(const void *state);
};

/* All kinds, NULL-terminated; and lookup by name (NULL when unknown). */
extern const struct lcm_kind *const lcm_kinds[];
const struct lcm_kind *lcm_kind_find(const char *name);

#endif
