/* Code that the aggregate kinds' vtables (struct lcm_kind) share instead of each keeping a
 * copy: rebuilding state from the hash read back from Redis, cloning, emitting the fields.
 * For the domain's own kind files only; the host sees struct lcm_kind alone. */
#ifndef LCM_DOMAIN_KIND_GLUE_H
#define LCM_DOMAIN_KIND_GLUE_H

#include <stddef.h>

#include "kind.h"

struct cJSON;

/* What the generic code needs to know about one kind's state struct. The struct has an
 * owned `char *id` at id_off and a `uint64_t version` at version_off. clone() uses only
 * size, destroy and own, so a kind with its own from_fields fills just those. */
struct lcm_kind_glue {
    size_t size;                          /* sizeof the state struct */
    size_t id_off, version_off;
    void *(*create)(const char *id);      /* empty state, version 0; NULL when out of memory */
    void (*destroy)(void *state);         /* NULL-safe */
    /* Frees all the state owns except the id and resets it to the empty state. */
    void (*clear)(void *state);
    /* Loads the kind's JSON representation into a fresh state; 0, or -1 with err filled. */
    int (*load)(const struct cJSON *o, void *state, char *err, size_t errlen);
    /* Replaces every pointer that copy, a bit copy of orig, shares with orig by an owned
     * copy, or by NULL (with a count of 0) when out of memory so that copy can always be
     * destroyed. Returns 0, or nonzero when any copy failed. */
    int (*own)(void *copy, const void *orig);
};

/* lcm_kind.from_fields for a kind whose load() reads back all of its JSON: the hash becomes
 * JSON, loads into a fresh state with the stored version, and replaces state's contents
 * (state keeps its id). On failure state is unchanged. */
int lcm_kind_glue_from_fields(const struct lcm_kind_glue *g, void *state,
                              const char *const *fields, const char *const *values, size_t n,
                              char *err, size_t errlen);

/* lcm_kind.clone: a bit copy of state made to own its pointers; NULL when out of memory. */
void *lcm_kind_glue_clone(const struct lcm_kind_glue *g, const void *state);

/* lcm_kind.fields from the kind's JSON representation o (taken over and deleted; NULL, when
 * it could not be built, emits nothing). rename as for lcm_jx_emit_fields. */
void lcm_kind_glue_fields(struct cJSON *o, const char *const *rename, lcm_field_emit_fn emit,
                          void *ud);

#endif
