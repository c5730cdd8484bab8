/* Session aggregate (a learner's lab in a timeslot), with its LDS user session, grading
 * session and score report kept inside. Events:
 *   session.created {definition_id, definition_name, definition_version, owner,
 *                    reservation_id, timeslot{start,end}, boot_lead_minutes, lds_enabled,
 *                    grading_enabled}                                  (status pending)
 *   session.<status> {from, reason[, worker_id (scheduled)][, login_url (ready)]}
 *   session.extended {end}            session.desired {desired_status, reason?}
 *   session.lab_bound {lab_record_id, cml_lab_id}   session.ports_assigned {ports{name:n}}
 *   session.step {step, state, error?}              (pipeline progress)
 *   session.user_session {lds_session_id?, login_url?, devices?, status?}
 *   session.grading_updated {grading_session_id?, status?}
 *   session.scored {score, max_score, cut_score?, passed?, sections?, submitted_at?}
 *   session.cloudevent_received {cloudevent{specversion, id, source, type, …}}  (no state
 *                    change: an LDS/grading event recorded by POST /api/v1/cloudevents)
 * Index memberships: lcm:idx:session:all, lcm:idx:session:status:<status>,
 * lcm:idx:session:start (sorted set, score = timeslot.start in epoch seconds, or created_at
 * for a "now" session), lcm:idx:session:worker:<worker_id> (while placed), and the unique
 * reservation mapping as one set per reservation, lcm:idx:session:reservation:<reservation_id>,
 * holding exactly the session id (entry.unique = 1: the store refuses a second member;
 * lookup: SMEMBERS lcm:idx:session:reservation:<id>). */
#ifndef LCM_DOMAIN_SESSION_H
#define LCM_DOMAIN_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "derr.h"
#include "events.h"
#include "fsm.h"
#include "history.h"
#include "kind.h"

struct cJSON;
struct lcm_definition;
struct lcm_time_params;

enum lcm_step {
    LCM_STEP_RESOLVE_LAB, LCM_STEP_ALLOCATE_PORTS, LCM_STEP_SYNC_TAGS, LCM_STEP_START_LAB,
    LCM_STEP_LDS_SESSION, LCM_STEP_MARK_READY, LCM_STEP_COLLECT, LCM_STEP_OPEN_GRADING,
    LCM_STEP_RECORD_SCORE, LCM_STEP_STOP_LAB, LCM_STEP_RELEASE_LDS, LCM_STEP_WIPE_LAB,
    LCM_STEP__COUNT
};
enum lcm_step_state {
    LCM_STEP_NONE, LCM_STEP_STARTED, LCM_STEP_DONE, LCM_STEP_FAILED, LCM_STEP_SKIPPED,
    LCM_STEP_STATE__COUNT
};
const char *lcm_step_name(int step);
int lcm_step_parse(const char *s);
const char *lcm_step_state_name(int st);
int lcm_step_state_parse(const char *s);

struct lcm_step_progress {
    int64_t started_at, ended_at;
    char *error;                  /* last error, owned */
    uint8_t state, attempts;
};

struct lcm_session_port {
    char *name;                   /* owned */
    uint16_t port;
};

struct lcm_session {
    char *id;
    uint64_t version;
    char *definition_id, *definition_name, *definition_version, *owner, *reservation_id;
    int64_t start, end;           /* timeslot; start 0 = "now" */
    uint8_t status, desired_status;   /* enum lcm_session_status */
    char *desired_reason, *desired_by;/* who asked for desired_status and why (NULL: nobody
                                       * said); the controller's transition carries them */
    uint8_t lds_enabled, grading_enabled;
    int16_t boot_lead_minutes;
    char *worker_id, *lab_record_id, *cml_lab_id;
    struct lcm_session_port *ports;
    uint16_t nports;
    struct lcm_step_progress steps[LCM_STEP__COUNT];
    struct { char *lds_session_id, *login_url, *devices_json, *status; } user_session;
    struct { char *grading_session_id, *status; } grading;
    struct {
        double score, max_score, cut_score;
        char *sections_json;
        int64_t submitted_at;
        int8_t passed;            /* -1 unknown */
        uint8_t present;
    } score;
    struct lcm_history history;
    int64_t created_at, updated_at;
    char *created_by;
};

extern const struct lcm_kind lcm_kind_session;

struct lcm_session *lcm_session_new(const char *id);
void lcm_session_free(struct lcm_session *s);
/* Bytes the session holds in the read model (struct + owned strings/arrays, without
 * allocator overhead). */
size_t lcm_session_mem(const struct lcm_session *s);

/* POST /sessions body {definition_id, timeslot:{start,end}, reservation_id?, owner?}:
 * pointers are borrowed from body. */
struct lcm_session_create {
    const char *id;
    const char *definition_id;
    const char *owner;            /* token subject when the body has none */
    const char *reservation_id;
    int64_t start, end;           /* 0 = now / start + max_duration_minutes */
};
int lcm_session_parse_create(const struct cJSON *body, struct lcm_session_create *c,
                             struct lcm_derr *err);
/* Validates against the (active) definition and the time rules: the timeslot ends after it
 * starts, lasts at most max_duration_minutes, and has not started more than the grace ago. */
int lcm_session_cmd_create(const struct lcm_session_create *c, const struct lcm_definition *def,
                           const struct lcm_time_params *p, const char *by, int64_t now,
                           struct lcm_events *out, struct lcm_derr *err);
/* Any table transition except scheduled (needs a worker: lcm_session_cmd_schedule). */
int lcm_session_cmd_transition(const struct lcm_session *s, enum lcm_session_status to,
                               const char *reason, const char *by, int64_t now,
                               struct lcm_events *out, struct lcm_derr *err);
int lcm_session_cmd_schedule(const struct lcm_session *s, const char *worker_id,
                             const char *reason, const char *by, int64_t now,
                             struct lcm_events *out, struct lcm_derr *err);
/* instantiating → ready, with the login URL when LDS gave one. */
int lcm_session_cmd_ready(const struct lcm_session *s, const char *login_url, const char *by,
                          int64_t now, struct lcm_events *out, struct lcm_derr *err);
/* New end: after the current end, within max_duration_minutes of the start (0 = no cap);
 * not for sessions already stopping or later. */
int lcm_session_cmd_extend(const struct lcm_session *s, int64_t new_end,
                           int32_t max_duration_minutes, const char *by, int64_t now,
                           struct lcm_events *out, struct lcm_derr *err);
/* desired ∈ {running, stopped, terminated} */
int lcm_session_cmd_set_desired(const struct lcm_session *s, enum lcm_session_status desired,
                                const char *by, int64_t now, struct lcm_events *out,
                                struct lcm_derr *err);
/* The same with the requester's reason (≤ 400 printable characters, NULL/"" = none), kept
 * with by as desired_reason/desired_by until the next request, so the controller's
 * transition records who asked and why. No event when desired is already so. */
int lcm_session_cmd_request(const struct lcm_session *s, enum lcm_session_status desired,
                            const char *reason, const char *by, int64_t now,
                            struct lcm_events *out, struct lcm_derr *err);
int lcm_session_cmd_bind_lab(const struct lcm_session *s, const char *lab_record_id,
                             const char *cml_lab_id, const char *by, int64_t now,
                             struct lcm_events *out, struct lcm_derr *err);
int lcm_session_cmd_set_ports(const struct lcm_session *s, const char *const *names,
                              const uint16_t *ports, size_t n, const char *by, int64_t now,
                              struct lcm_events *out, struct lcm_derr *err);
int lcm_session_cmd_step(const struct lcm_session *s, enum lcm_step step,
                         enum lcm_step_state state, const char *error, const char *by,
                         int64_t now, struct lcm_events *out, struct lcm_derr *err);
/* NULL members are left as they are; devices_json must be a JSON array when given. */
int lcm_session_cmd_user_session(const struct lcm_session *s, const char *lds_session_id,
                                 const char *login_url, const char *devices_json,
                                 const char *status, const char *by, int64_t now,
                                 struct lcm_events *out, struct lcm_derr *err);
int lcm_session_cmd_grading(const struct lcm_session *s, const char *grading_session_id,
                            const char *status, const char *by, int64_t now,
                            struct lcm_events *out, struct lcm_derr *err);
/* report {score, max_score, cut_score?, passed?, sections?[], submitted_at?}; passed is
 * derived from cut_score when absent. */
int lcm_session_cmd_score(const struct lcm_session *s, const struct cJSON *report,
                          const char *by, int64_t now, struct lcm_events *out,
                          struct lcm_derr *err);

#endif
