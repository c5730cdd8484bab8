/* Internals shared by the worker controller's files (workers.c: the per-worker state machine;
 * workers_discovery.c: discovery and orphan clean-up; workers_metrics.c: metrics). Nothing
 * here is state of record: it is retry bookkeeping that a new leader rebuilds from nothing. */
#ifndef LCM_CTL_WORKERS_INT_H
#define LCM_CTL_WORKERS_INT_H

#include <stddef.h>
#include <stdint.h>

#include <lcm/spi.h>

struct lcm_app;
struct lcm_events;
struct lcm_store_result;
struct lcm_worker;

#define WK_NTRACK 256
#define WK_BY "controller:workers"

/* Per worker, in memory only. */
struct wk_track {
    char *id;                     /* owned */
    struct wk_track *next;
    unsigned attempts;            /* consecutive failures of step */
    int step;
    char last_error[320];
    double next_ms;               /* no action before this (monotonic ms) */
    double metrics_ms;            /* next metrics collection */
    int status_seen;              /* status the *_sent flags belong to */
    int start_sent, stop_sent, term_sent;
    int missing;                  /* discovery sweeps in a row the instance was absent */
    int refresh;                  /* re-read EC2/CML now */
};

/* One asynchronous action on behalf of the controller; freed by its last callback. */
struct wop {
    struct lcm_workers_ctl *c;               /* NULL once the controller is gone (detached) */
    struct wop *prev, *next;
    char id[160];                 /* worker id ("" for fleet-wide ops) */
    int claimed;                  /* holds lcm_ctl_claim("worker", id) */
    int step;
    int stage;
    char region[64];
    char instance_id[64];
    char image_id[64];
    char cml_version[64];
    int cml_ready;
    int have_stats;
    double cpu_cw, cpu_cml, mem_cml;
    int have_cw;
    int64_t last_activity_ms;
    char **node_defs;             /* owned: CML's node definition ids (sorted, unique) */
    size_t n_node_defs;
    int have_node_defs;           /* node_defs was read from CML during this op */
    void *extra;                  /* step-specific heap data, freed with the op */
    void (*extra_free)(void *);
};

struct lcm_workers_ctl {
    struct lcm_app *app;
    struct wk_track *tracks[WK_NTRACK];
    struct wop *ops;
    long poll_ms, discovery_ms, metrics_ms, boot_timeout_s, drain_minutes;
    long max_attempts, backoff_base_ms, backoff_max_ms, op_timeout_ms;
    const char *ami_pattern;      /* discovery: AMI name pattern (NULL = tags only) */
    int discovery_enabled;
    int running;                  /* leader and started */
    double next_discovery_ms;
    int discovery_busy;
    int discovery_now;
    char *extra_regions[16];      /* regions asked for by import requests */
    double next_requests_ms;
    int requests_busy;
    int group_ready;              /* consumer group on lcm:requests exists */
    uint64_t sweeps;
};

double wk_now_ms(void);
int64_t wk_wall_s(void);
struct wk_track *wk_track(struct lcm_workers_ctl *c, const char *id);
void wk_track_forget(struct lcm_workers_ctl *c, const char *id);

struct wop *wk_op_new(struct lcm_workers_ctl *c, const char *worker_id, int step);
/* Releases the claim (when the controller still exists) and frees the op. */
void wk_op_done(struct wop *op);

/* The call context for a worker (region, ids, endpoint, deadline). */
void wk_call_for(struct lcm_workers_ctl *c, const struct lcm_worker *w, struct lcm_call *call);

/* Commits evs to worker id at expected version (0 = create) under the leader fence.
 * done(op, status) runs once later (status 0 or a negative LCM_STORE_E*) unless this
 * returns < 0. */
typedef void (*wk_commit_fn)(struct wop *op, int status);
int wk_commit(struct lcm_workers_ctl *c, const char *id, uint64_t expected, const struct lcm_events *evs,
              struct wop *op, wk_commit_fn done);

/* Status of an EC2 state for the worker FSM (-1: none). */
int wk_status_of_instance(enum lcm_instance_state s);
/* Builds an observation of inst onto the worker (endpoint derived from the private IP). */
void wk_observe_instance(const struct lcm_worker *w, const struct lcm_cloud_instance *inst,
                         int status, struct lcm_events *out);

/* Discovery + orphan sweep over every known region (workers_discovery.c). */
void wk_discovery_start(struct lcm_workers_ctl *c);
/* Metrics + CML readiness of one running worker (workers_metrics.c); needs the claim. */
void wk_metrics_start(struct lcm_workers_ctl *c, const struct lcm_worker *w);
void wk_metrics_declare(struct lcm_workers_ctl *c);

/* CML node definitions (runtime.node_definitions, SPI 1.2), recorded on the worker for
 * placement. The runtime plugin implements the op: */
int wk_has_node_defs_op(struct lcm_workers_ctl *c);
/* Keeps nd on op (sorted, unique, only ids a worker record accepts); 0 or -1 (no memory). */
int wk_node_defs_take(struct wop *op, const struct lcm_rt_node_definitions *nd);
/* 1 when op read a list that differs (as a set) from the one recorded on w. */
int wk_node_defs_changed(const struct wop *op, const struct lcm_worker *w);
/* Appends worker.cml (version NULL = unchanged) to evs. The command replaces the whole list,
 * so op's list goes in when it read one, else the list w already has. */
void wk_set_cml(const struct lcm_worker *w, const struct wop *op, const char *version, int ready,
                int64_t now, struct lcm_events *evs);

#endif
