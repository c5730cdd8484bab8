/* Controllers and the leader lease. Only the replica holding the lease (a Redis key with a
 * TTL, renewed) runs controllers; every write they make carries the lease's fencing token,
 * which the store checks, so a paused ex-leader cannot write. Controllers are
 * level-triggered: woken (coalesced) by store changes and by a periodic sweep, they compare
 * desired with observed state and act, one action per aggregate at a time. */
#ifndef LCM_CTL_H
#define LCM_CTL_H

#include <stddef.h>
#include <stdint.h>

struct cJSON;
struct lcm_app;
struct lcm_ctl;
struct lcm_event;
struct lcm_kind;
struct lcm_store_change;
struct lcm_store_result;

struct lcm_controller {
    const char *name;                  /* "scheduler", "workers", … (static string) */
    unsigned sweep_ms;                 /* periodic reconcile; 0 = 1000 */
    /* Became leader: start working (state comes from the read models). Optional. */
    void (*start)(void *ud);
    /* Lost the lease or shutting down: stop starting new actions. Actions in flight may
     * finish; their commits will be fenced. Optional. */
    void (*stop)(void *ud);
    /* One pass of reconciliation. Called on sweep and on wake, only while leader. */
    void (*reconcile)(void *ud);
    /* A change applied to the read models (any kind): called for every change while leader
     * (also when a reconcile is already pending). Return 1 to get a reconcile soon.
     * Optional: NULL means "wake on every change". */
    int (*interested)(void *ud, const struct lcm_kind *kind, const char *id, const void *state,
                      const struct lcm_event *ev);
};

struct lcm_ctl *lcm_ctl_new(struct lcm_app *app, char *err, size_t errlen);
/* Stops controllers, releases the lease if held, frees everything. */
void lcm_ctl_free(struct lcm_ctl *c);
/* Registers a controller (before or after start). ud is the controller's own state. */
int lcm_ctl_register(struct lcm_ctl *c, const struct lcm_controller *def, void *ud);
/* Begins lease acquisition (call once the store's read models are loaded). */
void lcm_ctl_start(struct lcm_ctl *c);
/* Releases the lease and stops controllers (graceful shutdown). */
void lcm_ctl_shutdown(struct lcm_ctl *c);

int lcm_ctl_is_leader(const struct lcm_ctl *c);
/* Fencing token while leader (and the lease is believed valid), else NULL. */
const char *lcm_ctl_fence(const struct lcm_ctl *c);
const char *lcm_ctl_holder(const struct lcm_ctl *c);
struct lcm_app *lcm_ctl_app(const struct lcm_ctl *c);

/* Asks for a reconcile of one controller (NULL = all) soon; coalesced. */
void lcm_ctl_wake(struct lcm_ctl *c, const char *name);

/* Store commit carrying the fence. Refused locally (-1, err filled, done not called) when
 * not leader; the store refuses it (EFENCED) when the lease moved on meanwhile. */
typedef void (*lcm_ctl_done_fn)(const struct lcm_store_result *res, void *ud);
int lcm_ctl_commit(struct lcm_ctl *c, const struct lcm_store_change *changes, size_t n,
                   lcm_ctl_done_fn done, void *ud, char *err, size_t errlen);

/* One action per aggregate: returns 1 when claimed, 0 when an action is already running. */
int lcm_ctl_claim(struct lcm_ctl *c, const char *kind, const char *id);
void lcm_ctl_release(struct lcm_ctl *c, const char *kind, const char *id);
int lcm_ctl_claimed(const struct lcm_ctl *c, const char *kind, const char *id);

/* Leader, holder, token, controllers with last reconcile times; for GET /api/v1/scheduler
 * and the dashboard. Caller frees. */
struct cJSON *lcm_ctl_status_json(const struct lcm_ctl *c);

#endif
