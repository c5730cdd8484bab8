/* The scheduler's session index: pending sessions ordered by timeslot start, and the number
 * of non-terminal sessions naming each worker, kept current from the store's change feed
 * (and the scheduler's own commits), so that a cycle, the autoscaler's demand and
 * availability look at the sessions of a time window instead of every session ever booked.
 * The read models stay the truth: every entry is checked against lcm_store_get when used,
 * and the index is rebuilt from a full scan when it starts and once a minute. */
#ifndef LCM_CTL_SCHEDULER_INDEX_H
#define LCM_CTL_SCHEDULER_INDEX_H

#include <stddef.h>
#include <stdint.h>

struct lcm_session;
struct lcm_store;
struct lcm_sched_index;

/* Subscribes to the store's changes. NULL when out of memory. Free before the store. */
struct lcm_sched_index *lcm_sched_index_new(struct lcm_store *st);
void lcm_sched_index_free(struct lcm_sched_index *x);

/* Rebuilds from every session of the read model (became leader, read models loaded). */
void lcm_sched_index_resync(struct lcm_sched_index *x);
/* One session's current state (NULL: forget it). Called from the feed and after commits. */
void lcm_sched_index_note(struct lcm_sched_index *x, const char *id, const struct lcm_session *s);

/* Calls fn for every pending session whose timeslot start is at most start_max (sessions
 * starting "now" have start 0 and are always included), with its current read-model state,
 * in no particular order; fn returns nonzero to stop. Returns the number of calls. */
typedef int (*lcm_sched_index_fn)(const struct lcm_session *s, void *ud);
size_t lcm_sched_index_each_pending(struct lcm_sched_index *x, int64_t start_max,
                                    lcm_sched_index_fn fn, void *ud);
/* Non-terminal sessions naming the worker (scheduled onwards, holding or about to hold it). */
size_t lcm_sched_index_worker_sessions(struct lcm_sched_index *x, const char *worker_id);
/* Pending sessions indexed (all start times). */
size_t lcm_sched_index_pending(const struct lcm_sched_index *x);

#endif
