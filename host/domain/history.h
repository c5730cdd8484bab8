/* status_history {from, to, at, by, reason} kept inside every aggregate with a state
 * machine. Bounded: the newest LCM_HISTORY_MAX entries are kept in the read model and the
 * hash (the event stream keeps all of them), so a long-lived worker cannot grow without end. */
#ifndef LCM_DOMAIN_HISTORY_H
#define LCM_DOMAIN_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "fsm.h"

#define LCM_HISTORY_MAX 32

struct lcm_hist_entry {
    int64_t at;
    char *by;        /* owned */
    char *reason;    /* owned, NULL when none */
    uint8_t from, to;
};

struct lcm_history {
    struct lcm_hist_entry *v;   /* owned, oldest first */
    uint16_t n, cap;
};

void lcm_history_free(struct lcm_history *h);
/* Deep copy into dst (same capacity, for identical memory figures). 0, or -1 when out of
 * memory (dst then holds what could be copied and must still be freed). */
int lcm_history_clone(struct lcm_history *dst, const struct lcm_history *src);
/* Appends (dropping the oldest when full). Returns 0 or -1 on allocation failure. */
int lcm_history_push(struct lcm_history *h, int from, int to, int64_t at, const char *by,
                     const char *reason);
struct cJSON *lcm_history_to_json(const struct lcm_history *h, const struct lcm_fsm *m);
/* Replaces h from a JSON array as written by lcm_history_to_json. Returns 0 or -1. */
int lcm_history_from_json(struct lcm_history *h, const struct cJSON *arr,
                          const struct lcm_fsm *m);
/* Bytes held outside the owning struct (for the read-model memory figure). */
size_t lcm_history_mem(const struct lcm_history *h);

/* Folds a table transition event: data.from must equal *status and *status → to must be
 * allowed; pushes the history entry (by, data.reason) and sets *status. 0 or -1 with err. */
struct lcm_event;
int lcm_history_apply_transition(const struct lcm_fsm *m, uint8_t *status,
                                 struct lcm_history *h, int to, const struct lcm_event *ev,
                                 int64_t at, char *err, size_t errlen);

#endif
