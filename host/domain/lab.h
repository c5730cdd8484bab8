/* Lab record aggregate: a CML lab on a worker. It owns its ports (they survive stop/wipe so
 * a wiped lab can be reused) and records which session uses it. Events:
 *   lab.created {worker_id, cml_lab_id, title, definition_id, status: importing|discovered}
 *   lab.<status> {from, reason}        commanded transitions (table in fsm.c)
 *   lab.observed {cml_state, status}   what CML reports; may leave the table (history notes it)
 *   lab.ports_assigned {ports{name:n}}
 *   lab.bound {session_id}  lab.unbound {session_id}     (runs[] keeps the last 16)
 *   lab.action_requested {action}  lab.action_done {action, error?}
 * Indexes: lcm:idx:lab:all, lcm:idx:lab:status:<s>, lcm:idx:lab:worker:<worker_id>,
 * lcm:idx:lab:definition:<definition_id>. */
#ifndef LCM_DOMAIN_LAB_H
#define LCM_DOMAIN_LAB_H

#include <stdint.h>

#include "derr.h"
#include "events.h"
#include "fsm.h"
#include "history.h"
#include "kind.h"

#define LCM_LAB_MAX_RUNS 16

/* CML lab states (DEFINED_ON_CORE, STARTED, BOOTED, STOPPED, QUEUED, …) → lab status, or
 * -1 when unknown. */
int lcm_lab_status_from_cml(const char *cml_state);

enum lcm_lab_action { LCM_LAB_ACT_START, LCM_LAB_ACT_STOP, LCM_LAB_ACT_WIPE,
                      LCM_LAB_ACT_DELETE, LCM_LAB_ACT__COUNT };
const char *lcm_lab_action_name(int a);
int lcm_lab_action_parse(const char *s);

struct lcm_lab_port { char *name; uint16_t port; };
struct lcm_lab_run { char *session_id; int64_t started_at, ended_at; };

struct lcm_lab {
    char *id;
    uint64_t version;
    char *worker_id, *cml_lab_id, *title, *definition_id, *active_session_id;
    uint8_t status;                 /* enum lcm_lab_status */
    int8_t pending_action;          /* enum lcm_lab_action, -1 none */
    struct lcm_lab_port *ports;
    uint16_t nports;
    struct lcm_lab_run runs[LCM_LAB_MAX_RUNS];
    uint8_t nruns;
    struct lcm_history history;
    int64_t created_at, updated_at;
    char *created_by;
};

extern const struct lcm_kind lcm_kind_lab;

struct lcm_lab *lcm_lab_new(const char *id);
void lcm_lab_free(struct lcm_lab *l);

/* discovered: the lab was found on the worker rather than imported by LCM. */
int lcm_lab_cmd_create(const char *id, const char *worker_id, const char *cml_lab_id,
                       const char *title, const char *definition_id, int discovered,
                       const char *by, int64_t now, struct lcm_events *out,
                       struct lcm_derr *err);
int lcm_lab_cmd_transition(const struct lcm_lab *l, enum lcm_lab_status to, const char *reason,
                           const char *by, int64_t now, struct lcm_events *out,
                           struct lcm_derr *err);
/* No event when the mapped status equals the current one. */
int lcm_lab_cmd_observe(const struct lcm_lab *l, const char *cml_state, const char *by,
                        int64_t now, struct lcm_events *out, struct lcm_derr *err);
int lcm_lab_cmd_assign_ports(const struct lcm_lab *l, const char *const *names,
                             const uint16_t *ports, size_t n, const char *by, int64_t now,
                             struct lcm_events *out, struct lcm_derr *err);
/* A lab serves one session at a time; only a defined/stopped/wiped/booted lab can be bound. */
int lcm_lab_cmd_bind(const struct lcm_lab *l, const char *session_id, const char *by,
                     int64_t now, struct lcm_events *out, struct lcm_derr *err);
int lcm_lab_cmd_unbind(const struct lcm_lab *l, const char *session_id, const char *by,
                       int64_t now, struct lcm_events *out, struct lcm_derr *err);
/* The API's POST /labs/{id}/actions: refused when another action is pending or the status
 * does not allow it (start: defined/stopped/wiped; stop: booted/starting/queued/paused;
 * wipe: stopped; delete: any but deleting/deleted/archived). */
int lcm_lab_cmd_request_action(const struct lcm_lab *l, enum lcm_lab_action a, const char *by,
                               int64_t now, struct lcm_events *out, struct lcm_derr *err);
int lcm_lab_cmd_action_done(const struct lcm_lab *l, const char *error, const char *by,
                            int64_t now, struct lcm_events *out, struct lcm_derr *err);

#endif
