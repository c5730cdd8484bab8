/* Worker aggregate: a CML hypervisor on an EC2 instance, with its declared and allocated
 * capacity (plain integers: the scheduler scans them), the sessions it holds, and its port
 * registry. Events:
 *   worker.created {name, region, template, instance_type, origin, declared{}, license_type,
 *                   desired_status, ports_range[lo,hi]}
 *   worker.<status> {from, reason[, deadline]}      table transitions (draining: drain info)
 *   worker.observed {status?, instance_id?, instance_type?, ami_id?, private_ip?, public_ip?,
 *                    endpoint?}                     what EC2 says; status may skip the table
 *   worker.cml {version?, ready?, node_definitions?} worker.license {type?, status?, node_limit?}
 *   worker.metrics {cpu_pct, mem_pct, last_activity_at?}  worker.desired {desired_status}
 *   worker.allocated {session_id, cpu_cores, memory_gb, storage_gb, nodes}
 *   worker.released {session_id}
 *   worker.ports_allocated {lab_id, ports[]}  worker.ports_released {lab_id} */
#ifndef LCM_DOMAIN_WORKER_H
#define LCM_DOMAIN_WORKER_H

#include <stdint.h>

#include "capacity.h"
#include "derr.h"
#include "events.h"
#include "fsm.h"
#include "history.h"
#include "kind.h"
#include "license.h"
#include "ports.h"

struct lcm_template;

enum lcm_worker_origin { LCM_ORIGIN_SCALE_UP, LCM_ORIGIN_MANUAL, LCM_ORIGIN_DISCOVERED };
const char *lcm_worker_origin_name(int o);
int lcm_worker_origin_parse(const char *s);       /* -1 when unknown */

#define LCM_PERSONAL_NODE_LIMIT 20

struct lcm_alloc {
    char *session_id;             /* owned */
    struct lcm_capacity req;
};

struct lcm_worker {
    char *id;
    uint64_t version;
    char *name, *region, *template_name;
    char *instance_id, *instance_type, *ami_id, *private_ip, *public_ip, *endpoint;
    uint8_t status, desired_status;   /* enum lcm_worker_status (desired: running/stopped/terminated) */
    uint8_t origin;
    struct {
        uint8_t type;                 /* lcm_license bit */
        char *status;                 /* as CML reports it, e.g. "registered" */
        int32_t node_limit;           /* 0 = unknown */
    } license;
    struct {
        char *version;
        uint8_t ready;
        char **node_definitions;
        uint16_t n_node_definitions;
    } cml;
    struct lcm_capacity declared, allocated;
    struct lcm_alloc *sessions;       /* owned, in allocation order */
    uint32_t nsessions, cap_sessions;
    struct lcm_ports ports;
    struct { double cpu_pct, mem_pct; int64_t at; } metrics;
    int64_t last_activity_at;
    struct { int64_t started_at, deadline; char *reason; } drain;
    struct lcm_history history;
    int64_t created_at, updated_at;
    char *created_by;
};

extern const struct lcm_kind lcm_kind_worker;

struct lcm_worker *lcm_worker_new(const char *id);
void lcm_worker_free(struct lcm_worker *w);

/* The node limit that applies: min(template max_nodes, licence node_limit, 20 if personal). */
int32_t lcm_worker_node_limit(const struct lcm_worker *w);
const struct lcm_alloc *lcm_worker_find_alloc(const struct lcm_worker *w, const char *session_id);
/* 1 when a draining worker may go to stopping: it holds no session, or now ≥ deadline. */
int lcm_worker_drain_done(const struct lcm_worker *w, int64_t now);

/* Commands. */
struct lcm_worker_create {
    const char *id, *name, *region;   /* name defaults to id */
    int origin;                        /* enum lcm_worker_origin */
    uint16_t ports_lo, ports_hi;       /* 0 = default 2000–9999 */
};
int lcm_worker_cmd_create(const struct lcm_worker_create *c, const struct lcm_template *tpl,
                          const char *by, int64_t now, struct lcm_events *out,
                          struct lcm_derr *err);
int lcm_worker_cmd_transition(const struct lcm_worker *w, enum lcm_worker_status to,
                              const char *reason, const char *by, int64_t now,
                              struct lcm_events *out, struct lcm_derr *err);
/* running → draining with a deadline (0 = none); cancel: draining → running. */
int lcm_worker_cmd_drain(const struct lcm_worker *w, const char *reason, int64_t deadline,
                         const char *by, int64_t now, struct lcm_events *out,
                         struct lcm_derr *err);
int lcm_worker_cmd_cancel_drain(const struct lcm_worker *w, const char *by, int64_t now,
                                struct lcm_events *out, struct lcm_derr *err);
/* desired ∈ {running, stopped, terminated}. */
int lcm_worker_cmd_set_desired(const struct lcm_worker *w, enum lcm_worker_status desired,
                               const char *by, int64_t now, struct lcm_events *out,
                               struct lcm_derr *err);
/* What EC2 reports: any member may be NULL / status < 0 for "not reported". A status that
 * does not fit the table is accepted (EC2 is the truth) and noted in the history. No event
 * when nothing changes. */
struct lcm_worker_observation {
    int status;
    const char *instance_id, *instance_type, *ami_id, *private_ip, *public_ip, *endpoint;
};
int lcm_worker_cmd_observe(const struct lcm_worker *w, const struct lcm_worker_observation *o,
                           const char *by, int64_t now, struct lcm_events *out,
                           struct lcm_derr *err);
int lcm_worker_cmd_set_cml(const struct lcm_worker *w, const char *version, int ready,
                           const char *const *node_definitions, size_t n, const char *by,
                           int64_t now, struct lcm_events *out, struct lcm_derr *err);
int lcm_worker_cmd_set_license(const struct lcm_worker *w, int type, const char *status,
                               int32_t node_limit, const char *by, int64_t now,
                               struct lcm_events *out, struct lcm_derr *err);
int lcm_worker_cmd_metrics(const struct lcm_worker *w, double cpu_pct, double mem_pct,
                           int64_t last_activity_at, const char *by, int64_t now,
                           struct lcm_events *out, struct lcm_derr *err);
/* Reserves req for session_id. The worker must be running (not draining); the result must
 * stay within declared capacity and the node limit; a personal-licence worker holds at most
 * one session. Allocating an already-held session with the same req is a no-op (no event). */
int lcm_worker_cmd_allocate(const struct lcm_worker *w, const char *session_id,
                            const struct lcm_capacity *req, const char *by, int64_t now,
                            struct lcm_events *out, struct lcm_derr *err);
/* Releases session_id's reservation; a no-op (no event) when it holds none. */
int lcm_worker_cmd_release(const struct lcm_worker *w, const char *session_id, const char *by,
                           int64_t now, struct lcm_events *out, struct lcm_derr *err);
/* Leases the n lowest free ports to lab_id (written to ports_out, n entries). When lab_id
 * already holds n ports they are returned and no event is made. LCM_DERR_EXHAUSTED when the
 * range has fewer than n free. */
int lcm_worker_cmd_ports_allocate(const struct lcm_worker *w, const char *lab_id, size_t n,
                                  uint16_t *ports_out, const char *by, int64_t now,
                                  struct lcm_events *out, struct lcm_derr *err);
int lcm_worker_cmd_ports_release(const struct lcm_worker *w, const char *lab_id,
                                 const char *by, int64_t now, struct lcm_events *out,
                                 struct lcm_derr *err);

#endif
