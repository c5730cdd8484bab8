/* New events produced by command functions, before the store appends them. A command never
 * mutates state: it validates and fills a struct lcm_events; the caller appends them and
 * folds them with the kind's apply (lcm_events_apply does both steps in memory). */
#ifndef LCM_DOMAIN_EVENTS_H
#define LCM_DOMAIN_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "kind.h"
#include "rfc3339.h"

struct cJSON;

struct lcm_new_event {
    char *type;            /* owned */
    struct cJSON *data;    /* owned, always an object */
    int64_t at;            /* epoch seconds, UTC */
    char *by;              /* owned */
};

struct lcm_events {
    struct lcm_new_event *v;
    size_t n, cap;
};

void lcm_events_init(struct lcm_events *evs);
/* Frees every event; the list can be reused. */
void lcm_events_clear(struct lcm_events *evs);
/* Takes ownership of data (also on failure). Returns 0 or LCM_DERR_NOMEM. */
int lcm_events_add(struct lcm_events *evs, const char *type, struct cJSON *data, int64_t at,
                   const char *by);
/* A borrowed struct lcm_event view of event i with the given version; atbuf holds the
 * formatted time and must outlive the view. */
void lcm_events_view(const struct lcm_events *evs, size_t i, uint64_t version,
                     char atbuf[LCM_TIME_BUFSZ], struct lcm_event *out);
/* Folds every event into state with versions state+1, state+2, … (what the store does after
 * a successful append). Returns 0, or -1 with err when an event does not fit. */
int lcm_events_apply(const struct lcm_kind *k, void *state, const struct lcm_events *evs,
                     char *err, size_t errlen);


/* Helpers for the aggregates' command and apply functions. */
struct lcm_fsm;
/* {"from": <name>, "reason": reason|null} */
struct cJSON *lcm_events_transition_data(const struct lcm_fsm *m, int from, const char *reason);
/* Checks the envelope (type, object data, RFC 3339 at, version follows cur) and parses at.
 * Returns 0 or -1 with err. */
int lcm_events_check(const struct lcm_event *ev, uint64_t cur, int64_t *at, char *err,
                     size_t errlen);

#endif
