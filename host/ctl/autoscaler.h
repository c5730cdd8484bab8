/* The autoscaler: scale-up from unplaced and upcoming demand (in-flight workers count as
 * capacity, so nothing is launched twice; a template whose observed workers cannot serve a
 * definition is not launched for it; launches per pending session are bounded and kept in
 * Redis) through scale_up.lua, scale-down of empty, idle
 * workers through scale_down.lua, both behind host-enforced limits (max workers per region,
 * max launches per cycle, cooldowns kept in Redis, warm minimum, and a guard that refuses
 * any action on a worker holding a non-terminal session). Every decision, taken or refused,
 * is recorded: worker events carry the reason; refusals go to the decision log and the
 * lcm:sched:decisions stream. */
#ifndef LCM_CTL_AUTOSCALER_H
#define LCM_CTL_AUTOSCALER_H

#include <stddef.h>
#include <stdint.h>

#include "scheduler.h"

struct cJSON;
struct lcm_autoscaler;
struct lcm_config;

struct lcm_autoscaler_cfg {
    int lead_window_minutes;          /* 35 */
    int worker_boot_minutes;          /* 25 */
    int64_t max_workers_per_region;   /* 0 = unlimited */
    int64_t max_launches_per_cycle;   /* 0 = unlimited */
    int64_t up_cooldown_s, down_cooldown_s;
    int64_t idle_minutes;
    int64_t min_warm_workers;
    int64_t stopped_retention_minutes;
    int64_t drain_deadline_minutes;
    /* Launches made for one pending session before it stops counting as demand while it is
     * still unplaced (a second one covers a worker lost before it took the session: failed
     * launch, capacity taken by a session that starts earlier). 0 = unlimited. Default 2. */
    int64_t max_launches_per_session;
    const char *by;                   /* NULL = "controller:autoscaler" */
};
void lcm_autoscaler_cfg_default(struct lcm_autoscaler_cfg *c);
void lcm_autoscaler_cfg_from_config(const struct lcm_config *cfg, struct lcm_autoscaler_cfg *c);

struct lcm_autoscaler_env {
    struct lcm_store *store;          /* required */
    struct lcm_policy_engine *policy; /* NULL: built-in C policies */
    struct lcm_metrics *metrics;
    struct lcm_redis *redis;          /* cooldowns, idle times, decision stream; NULL: memory */
    struct lcm_sched *sched;          /* unplaced sessions and the shared decision log */
    lcm_sched_commit_fn commit;
    void *commit_ud;
};

struct lcm_autoscaler *lcm_autoscaler_new(const struct lcm_autoscaler_env *env,
                                          const struct lcm_autoscaler_cfg *cfg);
void lcm_autoscaler_free(struct lcm_autoscaler *a);
/* Became leader: reload cooldowns and idle times from Redis. */
void lcm_autoscaler_start(struct lcm_autoscaler *a);
/* A feed change (worker.released: remember when a worker last emptied). Returns 1 when a
 * cycle is worth running. */
int lcm_autoscaler_note_change(struct lcm_autoscaler *a, const char *kind, const char *id,
                               const char *event_type);
/* One cycle (scale-up, then scale-down) at unix time now. Returns the number of actions
 * submitted, or -1 on out of memory. */
int lcm_autoscaler_cycle(struct lcm_autoscaler *a, int64_t now);
struct cJSON *lcm_autoscaler_status_json(const struct lcm_autoscaler *a, int64_t now);

/* Workers the autoscaler could still add in a region (max_workers_per_region minus the
 * non-terminated ones; -1 = unlimited), for availability. */
int64_t lcm_autoscaler_room(const struct lcm_autoscaler *a, const char *region);
/* The cheapest enabled template whose licence the definition asks for, and how many of its
 * sessions one such worker holds (0 when none fits). For availability. */
const char *lcm_autoscaler_best_template(const struct lcm_autoscaler *a, const char *definition_id,
                                         int64_t *per_worker, const char **region);

/* Whether another worker of a template could serve a definition, judged from the workers of
 * that template (ws, n; any status) whose CML was observed: running or draining with CML
 * ready, or stopping/stopped with a CML version recorded. When there is at least one such
 * worker and every one of them rejects the definition for a reason its load does not
 * explain (licence, CML version, node definitions, or a need above what an empty worker
 * offers), a new worker of the template would be rejected too: returns 1 with why filled
 * (e.g. "node_definition iosv missing on its workers (1 observed, e.g. w-1)"). Returns 0
 * otherwise, also when none was observed yet (capabilities are unknown until one runs). */
struct lcm_definition;
int lcm_autoscaler_cannot_serve(const struct lcm_worker *const *ws, size_t n,
                                const struct lcm_definition *d, char *why, size_t whylen);

/* The scale-down guard, exposed for its test: refuses (returns a reason) any action on a
 * worker that holds capacity or has a non-terminal session (busy = the number of those
 * sessions), or whose status does not allow the action; NULL when allowed. */
const char *lcm_autoscaler_guard(const struct lcm_worker *w, size_t busy, int action);

#endif
