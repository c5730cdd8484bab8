/* Building one atomic commit across several aggregates from domain commands: each aggregate
 * gets a scratch copy of its read-model state, commands append events to it and the events
 * are folded at once, so a second command on the same aggregate sees the first one's effect.
 * Used by the sessions and labs controllers (one commit = e.g. session + lab + worker). */
#ifndef LCM_CTL_SESSIONS_TX_H
#define LCM_CTL_SESSIONS_TX_H

#include <stddef.h>
#include <stdint.h>

#include "ctl.h"
#include "domain/derr.h"
#include "domain/events.h"
#include "domain/kind.h"

#define LCM_TX_MAX 6

struct lcm_tx_agg {
    const struct lcm_kind *kind;
    char *id;                     /* owned */
    void *scratch;                /* owned: state with this commit's events folded in */
    uint64_t expected;            /* version of the read-model state (0 = new aggregate) */
    struct lcm_events evs;        /* events of this commit */
    size_t folded;                /* evs already folded into scratch */
};

struct lcm_tx {
    struct lcm_tx_agg a[LCM_TX_MAX];
    size_t n;
    int failed;                   /* a command refused or an event did not fold */
    struct lcm_derr derr;         /* the first refusal */
};

void lcm_tx_init(struct lcm_tx *t);
void lcm_tx_free(struct lcm_tx *t);
/* The scratch state of aggregate kind/id in this commit (cur = its read-model state, or NULL
 * for a new one), created on first use. NULL on failure (t->failed set). */
void *lcm_tx_state(struct lcm_tx *t, const struct lcm_kind *k, const char *id, const void *cur);
/* The event list commands of this aggregate append to. */
struct lcm_events *lcm_tx_events(struct lcm_tx *t, const void *scratch);
/* Call after each command: records a refusal (rc < 0) or folds the new events. Returns rc. */
int lcm_tx_check(struct lcm_tx *t, int rc, const struct lcm_derr *e);
/* Number of events over all aggregates. */
size_t lcm_tx_nevents(const struct lcm_tx *t);
/* Commits every aggregate that has events through lcm_ctl_commit (fenced). Returns 0 (done
 * runs later) or -1 with err filled (done never runs). */
int lcm_tx_commit(struct lcm_tx *t, struct lcm_ctl *ctl, lcm_ctl_done_fn done, void *ud,
                  char *err, size_t errlen);

#endif
