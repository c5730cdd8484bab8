/* The scheduler's placement planner: a snapshot of the fleet taken from the read models,
 * the hard rules of DOMAIN.md "Placement" (the same verdicts as lcm_placement_check, with
 * the rules that do not change within a cycle computed once per definition), the shortlist,
 * the placement policy, and tentative allocations so that one cycle can place many
 * sessions. No I/O: the controller, the preview and availability all decide through here. */
#ifndef LCM_CTL_SCHEDULER_PLAN_H
#define LCM_CTL_SCHEDULER_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "domain/placement.h"
#include "domain/worker.h"
#include "policy/policy.h"

struct cJSON;
struct lcm_definition;
struct lcm_store;

/* One worker of a snapshot. */
struct lcm_sched_wk {
    const struct lcm_worker *w;     /* read model (borrowed: valid for the cycle only) */
    struct lcm_worker sh;           /* shallow copy carrying the tentative allocations */
    struct lcm_alloc *tent;         /* owned copy of sh.sessions once it was allocated to */
    struct lcm_policy_worker pw;    /* the policy's view of sh */
    double util;                    /* dominant share of sh (shortlist order) */
    uint32_t idrank;                /* rank of the id in the snapshot (tie-break) */
    uint32_t placed;                /* tentative placements this cycle */
    int excluded;                   /* a commit on it is in flight: not offered, not counted */
};

/* Per definition: what its sessions need and the verdicts that cannot change in a cycle. */
struct lcm_sched_def {
    char *id;                       /* owned */
    const struct lcm_definition *d; /* NULL when the store does not know it */
    struct lcm_place_req req;
    struct lcm_policy_requirements preq;
    uint8_t *pre;                   /* per worker: rule 1 / 2 (licence) verdict */
    uint8_t *post;                  /* per worker: rule 4 verdict */
    /* The candidates: workers passing the static rules (not excluded), in shortlist order.
     * The rules that move (personal busy, capacity, ports) only ever get stricter within a
     * snapshot, so a candidate that fails one is dropped for good; a worker that takes a
     * placement only moves forward. The shortlist is then the first passing entries. */
    size_t *ord;
    size_t nord;
    size_t *pos;                    /* per worker: index in ord, SIZE_MAX when not there */
};

struct lcm_sched_snap {
    struct lcm_sched_wk *wk;
    size_t nwk;
    struct lcm_sched_def *defs;
    size_t ndefs, capdefs;
    size_t shortlist;               /* workers handed to the policy per decision */
    /* The placement policy's cycle (worker tables built once, see lcm_policy_place_cycle):
     * set by the caller for a run of decisions, NULL = one lcm_policy_place per decision. */
    struct lcm_policy_place_cycle *pcycle;
};

/* Workers to leave out of a snapshot (commits in flight). Returns 1 to exclude. */
typedef int (*lcm_sched_exclude_fn)(void *ud, const char *worker_id);

/* Builds a snapshot of every worker in the store. Returns 0 or -1 (out of memory). */
int lcm_sched_snap_build(struct lcm_sched_snap *sn, const struct lcm_store *st,
                         size_t shortlist, lcm_sched_exclude_fn exclude, void *ud);
void lcm_sched_snap_free(struct lcm_sched_snap *sn);
/* The definition entry (created on first use); NULL only when out of memory. def may be
 * NULL (unknown definition: entry->d stays NULL). */
struct lcm_sched_def *lcm_sched_snap_def(struct lcm_sched_snap *sn, const char *definition_id,
                                         const struct lcm_definition *def);

/* The verdict of worker i for definition df (first rule broken in DOMAIN.md order), equal
 * to lcm_placement_check(&sn->wk[i].sh, &df->req). */
enum lcm_place_reject lcm_sched_verdict(const struct lcm_sched_snap *sn,
                                        const struct lcm_sched_def *df, size_t i);

/* Which policy serves the decisions. */
enum lcm_sched_policy_mode { LCM_SCHED_POLICY_ENGINE = 0, LCM_SCHED_POLICY_BUILTIN };

struct lcm_sched_decision {
    int chosen;                           /* worker index, -1 when nothing fits */
    double chosen_score;
    uint32_t counts[LCM_REJ__COUNT];      /* verdicts over the workers considered */
    size_t considered, passed;
    size_t *shortlist;                    /* worker indexes handed to the policy (owned) */
    size_t nshort, capshort;
    struct lcm_policy_placement_out ranks; /* the policy's answer */
    struct lcm_policy_eval_info info;
    enum lcm_place_reject *reasons;       /* per worker when asked for (owned) */
};
void lcm_sched_decision_init(struct lcm_sched_decision *d);
void lcm_sched_decision_free(struct lcm_sched_decision *d);

/* Decides where one session of definition df goes (no side effects on the snapshot other
 * than dropping candidates that can no longer fit). The shortlist, the choice and the
 * counts are those of a check of every worker; counts, considered and passed are filled
 * when nothing was chosen or want_reasons is set (a placed decision skips that walk).
 * engine/gen: the policy engine and the generation pinned for the cycle (engine NULL or mode
 * BUILTIN: the built-in C policy). want_reasons fills d->reasons. Returns 0 or -1 (out of
 * memory). */
int lcm_sched_decide(struct lcm_sched_snap *sn, struct lcm_sched_def *df,
                     const char *session_id, struct lcm_policy_engine *engine,
                     struct lcm_policy_gen *gen, enum lcm_sched_policy_mode mode, int64_t now,
                     int want_reasons, struct lcm_sched_decision *d);

/* Records a tentative placement of session_id on worker i (capacity, session list, ports
 * kept free for the lab). Returns 0 or -1. */
int lcm_sched_snap_take(struct lcm_sched_snap *sn, const struct lcm_sched_def *df, size_t i,
                        const char *session_id);

/* {counts by reason name (non-zero only)} */
struct cJSON *lcm_sched_counts_json(const uint32_t counts[LCM_REJ__COUNT]);

/* Licence bit conversions between the domain (lcm_license) and the policy structs. */
unsigned lcm_sched_policy_license(unsigned domain_bits);
/* Unix seconds the worker's current status began. */
int64_t lcm_sched_status_since(const struct lcm_worker *w);
/* Fills the policy's view of a worker. */
void lcm_sched_policy_worker(const struct lcm_worker *w, struct lcm_policy_worker *pw);

#endif
