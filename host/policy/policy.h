/* The policy engine: sandboxed, hot-reloaded Lua policies (placement, scale_up, scale_down)
 * with a built-in C policy behind each one as fallback. Inputs and outputs are plain C
 * structs of this header, so the engine does not depend on the domain code; the scheduler and
 * autoscaler translate their aggregates into these structs. See docs/policies.md. */
#ifndef LCM_POLICY_H
#define LCM_POLICY_H

#include <stddef.h>
#include <stdint.h>

struct cJSON;
struct event_base;
struct lcm_metrics;

#define LCM_POLICY_ID_MAX 64
#define LCM_POLICY_SHORT_MAX 32
#define LCM_POLICY_REASON_MAX 160

enum lcm_policy_kind {
    LCM_POLICY_PLACEMENT = 0,
    LCM_POLICY_SCALE_UP,
    LCM_POLICY_SCALE_DOWN,
    LCM_POLICY_KINDS
};

/* Licence types as bits; a licence *set* (a definition's affinity) is an OR of them, 0 = any. */
#define LCM_POLICY_LIC_ENTERPRISE 1u
#define LCM_POLICY_LIC_PERSONAL 2u
#define LCM_POLICY_LIC_EVALUATION 4u

/* Lua: {cpu_cores, memory_gb, storage_gb, max_nodes} for declared/template capacity and
 * {cpu_cores, memory_gb, storage_gb, nodes} for allocated capacity. */
struct lcm_policy_capacity {
    double cpu_cores;
    double memory_gb;
    double storage_gb;
    int64_t nodes;
};

/* What one session needs (Lua: flat fields of the session / demand table). */
struct lcm_policy_requirements {
    char definition_id[LCM_POLICY_ID_MAX];
    double cpu_cores;
    double memory_gb;
    double storage_gb;
    int64_t node_count;
    unsigned license_affinity; /* LCM_POLICY_LIC_* bits, 0 = any */
};

/* A worker as policies see it: a placement candidate, a fleet member or a scale-down
 * candidate. Strings are NUL-terminated within their arrays. */
struct lcm_policy_worker {
    char id[LCM_POLICY_ID_MAX];
    char region[LCM_POLICY_SHORT_MAX];
    char template_name[LCM_POLICY_ID_MAX];  /* Lua: template */
    char status[LCM_POLICY_SHORT_MAX];      /* pending|provisioning|starting|running|draining|… */
    unsigned license_type;                  /* one LCM_POLICY_LIC_* bit (0 = unknown) */
    char cml_version[LCM_POLICY_SHORT_MAX];
    struct lcm_policy_capacity declared;    /* from the template */
    struct lcm_policy_capacity allocated;   /* sum of its non-terminal sessions */
    int64_t session_count;
    double cpu_percent;                     /* metrics, 0–100 (Lua: cpu_percent) */
    double memory_percent;
    int64_t last_activity_at;               /* unix seconds, 0 = unknown */
    int64_t status_since;                   /* unix seconds the current status began */
};

struct lcm_policy_template {
    char name[LCM_POLICY_ID_MAX];
    char region[LCM_POLICY_SHORT_MAX];
    unsigned license_type;                  /* one LCM_POLICY_LIC_* bit */
    struct lcm_policy_capacity capacity;    /* nodes = max_nodes */
    double cost_per_hour;
    int enabled;
};

/* Host-side limits and clock handed to the scaling policies (Lua: limits table). The host
 * enforces the hard limits again after the policy; the policy sees them to plan well. */
struct lcm_policy_limits {
    int64_t now;                            /* unix seconds */
    int64_t max_workers_per_region;         /* 0 = unlimited */
    int64_t max_launches_per_cycle;         /* 0 = unlimited */
    int cooldown_active;                    /* the relevant (up or down) cooldown is running */
    int64_t min_warm_workers;               /* running workers scale-down must keep */
    int64_t stopped_retention_minutes;      /* a stopped worker older than this is terminated */
};

/* ---- placement: rank(session, workers, ctx) -> { {worker_id=, score=}, … } ---- */
struct lcm_policy_placement_in {
    char session_id[LCM_POLICY_ID_MAX];
    struct lcm_policy_requirements req;
    const struct lcm_policy_worker *workers; /* shortlist that passed the hard filters */
    size_t n_workers;
    int64_t now;
};
struct lcm_policy_rank {
    char worker_id[LCM_POLICY_ID_MAX];
    double score;
};
/* Owned by the engine's caller after a call; release with lcm_policy_placement_out_clear. */
struct lcm_policy_placement_out {
    struct lcm_policy_rank *ranks;           /* best first; a subset of the shortlist */
    size_t n;
};

/* ---- scale_up: plan(demand, fleet, templates, limits) -> { {template=, region=, count=, reason=}, … } */
struct lcm_policy_demand {
    struct lcm_policy_requirements req;
    char region[LCM_POLICY_SHORT_MAX];      /* "" = any region */
    int64_t unplaced;                       /* in the lead window, no worker fitted */
    int64_t upcoming;                       /* booked within worker_boot_minutes, not placed */
};
struct lcm_policy_rejection {
    char reason[LCM_POLICY_SHORT_MAX];      /* e.g. "capacity", "license", "cml_version" */
    int64_t count;
};
struct lcm_policy_scale_up_in {
    const struct lcm_policy_demand *demand;
    size_t n_demand;
    const struct lcm_policy_rejection *rejections;
    size_t n_rejections;
    const struct lcm_policy_worker *fleet;  /* every non-terminal worker, in-flight included */
    size_t n_fleet;
    const struct lcm_policy_template *templates;
    size_t n_templates;
    struct lcm_policy_limits limits;
};
struct lcm_policy_launch {
    char template_name[LCM_POLICY_ID_MAX];
    char region[LCM_POLICY_SHORT_MAX];
    int64_t count;
    char reason[LCM_POLICY_REASON_MAX];
};
struct lcm_policy_scale_up_out {
    struct lcm_policy_launch *launches;
    size_t n;
};

/* ---- scale_down: choose(eligible, fleet, limits) -> { {worker_id=, action=, reason=}, … } */
enum lcm_policy_action { LCM_POLICY_DRAIN = 0, LCM_POLICY_STOP, LCM_POLICY_TERMINATE };
struct lcm_policy_scale_down_in {
    const struct lcm_policy_worker *eligible; /* empty, nothing scheduled soon, idle long enough */
    size_t n_eligible;
    const struct lcm_policy_worker *fleet;
    size_t n_fleet;
    struct lcm_policy_limits limits;
};
struct lcm_policy_retire {
    char worker_id[LCM_POLICY_ID_MAX];
    enum lcm_policy_action action;
    char reason[LCM_POLICY_REASON_MAX];
};
struct lcm_policy_scale_down_out {
    struct lcm_policy_retire *retire;
    size_t n;
};

void lcm_policy_placement_out_clear(struct lcm_policy_placement_out *o);
void lcm_policy_scale_up_out_clear(struct lcm_policy_scale_up_out *o);
void lcm_policy_scale_down_out_clear(struct lcm_policy_scale_down_out *o);

/* ---- the engine ---- */
struct lcm_policy_config {
    const char *dir;                 /* holds placement.lua … and fixtures/; NULL = default */
    size_t mem_limit;                /* bytes per VM; 0 = 16 MiB */
    uint64_t instr_budget;           /* VM instructions per call; 0 = 20 million */
    unsigned deadline_ms;            /* wall clock per call; 0 = 30 ms */
    unsigned load_deadline_ms;       /* wall clock for a load's top-level chunk; 0 = 50 ms */
    unsigned watch_interval_ms;      /* file poll period when base is set; 0 = 1000 */
    struct event_base *base;         /* NULL: no file watching (reload only on request) */
    struct lcm_metrics *metrics;     /* NULL: no metrics */
};

/* Where a decision came from. */
enum lcm_policy_source { LCM_POLICY_SRC_LUA = 0, LCM_POLICY_SRC_BUILTIN };
enum lcm_policy_fallback {
    LCM_POLICY_FB_NONE = 0,
    LCM_POLICY_FB_NOT_LOADED,        /* no good Lua policy (never loaded) */
    LCM_POLICY_FB_ERROR,             /* runtime error (incl. memory cap) */
    LCM_POLICY_FB_TIMEOUT,           /* instruction budget or deadline */
    LCM_POLICY_FB_INVALID            /* result failed validation */
};
struct lcm_policy_eval_info {
    enum lcm_policy_source source;
    enum lcm_policy_fallback fallback;
    uint64_t generation;             /* of the Lua policy used/tried (0 = none) */
    double elapsed_ms;               /* time in the Lua call */
    char error[256];                 /* why it fell back */
};

struct lcm_policy_engine;
struct lcm_policy_gen;

/* Creates the engine and loads the three policies from cfg->dir. A policy that fails to load
 * is recorded (status JSON, log) and served by its built-in until a good one loads. Returns
 * NULL only for unusable config / out of memory (err filled). */
struct lcm_policy_engine *lcm_policy_engine_new(const struct lcm_policy_config *cfg, char *err,
                                                size_t errlen);
/* Frees everything. Pinned generations must have been released before. */
void lcm_policy_engine_free(struct lcm_policy_engine *e);

/* Re-reads one policy (and its fixtures) now: new VM, required function, fixtures, swap.
 * Returns 1 when a new generation was installed, 0 when the files are unchanged (nothing
 * done; force=1 reloads anyway), negative LCM_POLICY_E_* with err filled when refused (the
 * last good generation keeps serving). */
int lcm_policy_reload(struct lcm_policy_engine *e, enum lcm_policy_kind kind, int force,
                      char *err, size_t errlen);
/* All three; returns the number of policies refused (0 = all good) and err describes the
 * first refusal. For SIGHUP and POST /api/v1/policies/reload. */
int lcm_policy_reload_all(struct lcm_policy_engine *e, int force, char *err, size_t errlen);
/* Checks the files for changes (mtime/size then sha256) and reloads what changed; the file
 * watcher timer calls this. Returns the number of policies reloaded. */
int lcm_policy_poll(struct lcm_policy_engine *e);

/* Pins the current generation of a policy (NULL when none is loaded: built-in serves).
 * Everything evaluated with a pin uses that one generation even if a reload swaps in a new
 * one meanwhile; release when done. Thread-safe. */
struct lcm_policy_gen *lcm_policy_pin(struct lcm_policy_engine *e, enum lcm_policy_kind kind);
void lcm_policy_unpin(struct lcm_policy_gen *g);
uint64_t lcm_policy_gen_number(const struct lcm_policy_gen *g);

/* Evaluate. Always produce a decision (Lua, or the built-in on fallback) and return 0;
 * negative only for invalid arguments / out of memory. gen NULL = pin the current one for
 * this call. info may be NULL. */
int lcm_policy_place(struct lcm_policy_engine *e, struct lcm_policy_gen *gen,
                     const struct lcm_policy_placement_in *in,
                     struct lcm_policy_placement_out *out, struct lcm_policy_eval_info *info);
/* A placement cycle: many lcm_policy_place decisions over one fleet snapshot. Each worker's
 * Lua table is built once (the first time it is shortlisted) in the pinned generation's VM
 * and handed to rank() by reference afterwards; the host marks a worker whose view changed
 * (a tentative placement) with _touch and its table is rebuilt on its next use. Keys are
 * the caller's snapshot indexes 0..n_workers-1. The tables are shared by the calls of the
 * cycle only (a policy must treat its arguments as read-only); results are validated
 * against the C shortlist exactly as lcm_policy_place does, with the same fallback, limits,
 * counters and metrics. gen NULL pins the current generation. NULL when out of memory. */
struct lcm_policy_place_cycle;
struct lcm_policy_place_cycle *lcm_policy_place_cycle_begin(struct lcm_policy_engine *e,
                                                            struct lcm_policy_gen *gen,
                                                            size_t n_workers);
/* keys[j] is the snapshot index of in->workers[j]. Same contract as lcm_policy_place. */
int lcm_policy_place_cycle_rank(struct lcm_policy_place_cycle *c,
                                const struct lcm_policy_placement_in *in, const size_t *keys,
                                struct lcm_policy_placement_out *out,
                                struct lcm_policy_eval_info *info);
void lcm_policy_place_cycle_touch(struct lcm_policy_place_cycle *c, size_t key);
/* Releases the cache and the pin. */
void lcm_policy_place_cycle_end(struct lcm_policy_place_cycle *c);

int lcm_policy_scale_up(struct lcm_policy_engine *e, struct lcm_policy_gen *gen,
                        const struct lcm_policy_scale_up_in *in,
                        struct lcm_policy_scale_up_out *out, struct lcm_policy_eval_info *info);
int lcm_policy_scale_down(struct lcm_policy_engine *e, struct lcm_policy_gen *gen,
                          const struct lcm_policy_scale_down_in *in,
                          struct lcm_policy_scale_down_out *out,
                          struct lcm_policy_eval_info *info);

/* GET /api/v1/policies body: {dir, policies:[{name, file, source, generation, sha256,
 * loaded_at, fixtures, last_error, last_error_at, fallbacks, evaluations}]}. Caller frees. */
struct cJSON *lcm_policy_status_json(struct lcm_policy_engine *e);
uint64_t lcm_policy_fallbacks(struct lcm_policy_engine *e, enum lcm_policy_kind kind);
uint64_t lcm_policy_evaluations(struct lcm_policy_engine *e, enum lcm_policy_kind kind);

/* Loads dir's policies and runs their fixtures (and the built-ins against the same fixtures
 * when builtin_too) without an engine: what lcm-policy-check does. Writes one line per
 * policy/fixture to report (may be NULL). Returns the number of failures. */
struct lcm_policy_check_report {
    void (*line)(void *ud, const char *text);
    void *ud;
};
int lcm_policy_check_dir(const char *dir, int builtin_too, const struct lcm_policy_check_report *r);

const char *lcm_policy_kind_name(enum lcm_policy_kind kind);
const char *lcm_policy_action_name(enum lcm_policy_action a);
const char *lcm_policy_license_name(unsigned bit);

/* Error codes. */
#define LCM_POLICY_E_INVAL (-22)
#define LCM_POLICY_E_NOMEM (-12)
#define LCM_POLICY_E_IO (-5)
#define LCM_POLICY_E_LOAD (-100)    /* syntax error / top-level error / no function */
#define LCM_POLICY_E_FIXTURE (-101) /* a fixture failed */

#endif
