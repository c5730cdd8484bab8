/* The scheduler: places pending sessions inside the lead window, soonest first (hard rules
 * in C → shortlist → placement policy), and commits each worker's placements atomically with
 * its capacity (session.scheduled + worker.allocated in one store write with expected
 * versions, so two schedulers can never over-commit a worker). Sessions that find no worker
 * stay pending with their rejection counts, back off per session, and feed the autoscaler.
 * The same planner answers the preview and availability routes without side effects. */
#ifndef LCM_CTL_SCHEDULER_H
#define LCM_CTL_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "scheduler_plan.h"
#include "store/store.h"

struct cJSON;
struct lcm_config;
struct lcm_metrics;
struct lcm_redis;
struct lcm_sched;
struct lcm_session;

struct lcm_sched_cfg {
    int lead_window_minutes;          /* 35 */
    size_t shortlist;                 /* 32 */
    int backoff_max_s;                /* 60 */
    long cycle_budget_ms;             /* planning time per cycle before yielding; 0 = none */
    enum lcm_sched_policy_mode mode;  /* ENGINE (Lua, falls back to C) or BUILTIN */
    const char *by;                   /* actor on events; NULL = "controller:scheduler" */
};
void lcm_sched_cfg_default(struct lcm_sched_cfg *c);
void lcm_sched_cfg_from_config(const struct lcm_config *cfg, struct lcm_sched_cfg *c);

/* Store commit used for placements: the controller passes lcm_ctl_commit (fenced); the
 * benchmark lcm_store_commit. Same contract as lcm_store_commit. */
typedef int (*lcm_sched_commit_fn)(void *ud, const struct lcm_store_change *changes, size_t n,
                                   lcm_store_done_fn done, void *dud, char *err, size_t errlen);

struct lcm_sched_env {
    struct lcm_store *store;          /* required */
    struct lcm_policy_engine *policy; /* NULL: built-in C policy */
    struct lcm_metrics *metrics;      /* may be NULL */
    struct lcm_redis *redis;          /* lcm:sched:retry; NULL: kept in memory only */
    lcm_sched_commit_fn commit;       /* required */
    void *commit_ud;
    void (*wake)(void *ud);           /* asks for another cycle soon (may be NULL) */
    void *wake_ud;
};

struct lcm_sched *lcm_sched_new(const struct lcm_sched_env *env, const struct lcm_sched_cfg *cfg);
/* Commits still in flight are detached (their callbacks only free themselves). */
void lcm_sched_free(struct lcm_sched *s);

/* One cycle at time `now` (unix seconds): returns the number of sessions whose placement
 * was submitted (committed later), or -1 on out of memory. */
int lcm_sched_cycle(struct lcm_sched *s, int64_t now);
/* Became leader: reload the retry counters from Redis. Lost it: forget in-flight marks. */
void lcm_sched_start(struct lcm_sched *s);
void lcm_sched_stop(struct lcm_sched *s);
/* A change seen on the feed (from the controller's interested hook): a fleet change that can
 * make room resets every session's backoff. Returns 1 when a cycle is worth running. */
int lcm_sched_note_change(struct lcm_sched *s, const char *kind, const char *event_type);

struct lcm_sched_stats {
    uint64_t cycles, placed, committed, unplaced_attempts, conflicts, failed_commits;
    size_t inflight_commits, inflight_sessions;
    size_t queue_depth;               /* pending sessions in the lead window at the last cycle */
    uint32_t last_counts[LCM_REJ__COUNT];   /* sums over the last cycle's unplaced sessions */
    double last_cycle_ms;
    double last_decide_ms, last_commit_ms;   /* of the last cycle: deciding, building commits */
};
void lcm_sched_get_stats(const struct lcm_sched *s, struct lcm_sched_stats *st);

/* Pending sessions with timeslot start ≤ start_max (start 0 = now: always), from the
 * scheduler's index (scheduler_index.h) rather than a walk over every session; fn returns
 * nonzero to stop. Returns the number of calls. */
size_t lcm_sched_each_pending(struct lcm_sched *s, int64_t start_max,
                              int (*fn)(const struct lcm_session *ss, void *ud), void *ud);
/* Non-terminal sessions naming the worker, from the same index. */
size_t lcm_sched_worker_sessions(struct lcm_sched *s, const char *worker_id);

/* 1 while a placement commit on the worker is in flight (the autoscaler leaves it alone). */
int lcm_sched_worker_busy(const struct lcm_sched *s, const char *worker_id);
/* 1 when the scheduler tried to place the session and found no worker (its last attempt). */
int lcm_sched_is_unplaced(const struct lcm_sched *s, const char *session_id);

/* The decision log (newest last, bounded): the scheduler's and the autoscaler's. entry is
 * consumed; "at" is added when missing. */
void lcm_sched_log(struct lcm_sched *s, struct cJSON *entry);
/* GET /api/v1/scheduler body (without the leader part). Caller frees. */
struct cJSON *lcm_sched_status_json(const struct lcm_sched *s);

/* POST /api/v1/scheduler/preview: where a session (an existing pending one, or a definition
 * for a hypothetical one) would go now: the chosen worker, the ranked shortlist with scores
 * and each rejected worker's reason. The same planner as the cycle; no side effects.
 * Returns the JSON or NULL with err (and *http_status) filled. */
struct cJSON *lcm_sched_preview(struct lcm_sched *s, const char *session_id,
                                const char *definition_id, int64_t now, int *http_status,
                                char *err, size_t errlen);
/* How many more sessions of a definition fit the running fleet for the window [start, end)
 * (pending sessions overlapping the window are placed first, then probes one after the
 * other through the planner), with the rejection counts when none fits. max caps the
 * count. Capacity held now counts as held (conservative). Returns 0 or -1 (memory). */
struct lcm_sched_avail {
    int64_t fits_now;
    uint32_t counts[LCM_REJ__COUNT];
    int known_definition;
};
int lcm_sched_availability(struct lcm_sched *s, const char *definition_id, int64_t start,
                           int64_t end, int64_t max, int64_t now, struct lcm_sched_avail *out);

#endif
