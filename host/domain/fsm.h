/* The four state machines of DOMAIN.md (definition, worker, session, lab record) as data:
 * status names and, per status, the bitmask of statuses it may move to. Command functions
 * and apply both consult these tables, so a refused transition can never be folded. */
#ifndef LCM_DOMAIN_FSM_H
#define LCM_DOMAIN_FSM_H

#include <stdint.h>

enum lcm_definition_status {
    LCM_DEF_PENDING_SYNC, LCM_DEF_ACTIVE, LCM_DEF_INACTIVE, LCM_DEF_DEPRECATED,
    LCM_DEF_DELETED, LCM_DEF__COUNT
};

enum lcm_worker_status {
    LCM_WK_PENDING, LCM_WK_PROVISIONING, LCM_WK_STARTING, LCM_WK_RUNNING, LCM_WK_DRAINING,
    LCM_WK_STOPPING, LCM_WK_STOPPED, LCM_WK_TERMINATING, LCM_WK_TERMINATED, LCM_WK_FAILED,
    LCM_WK__COUNT
};

enum lcm_session_status {
    LCM_SS_PENDING, LCM_SS_SCHEDULED, LCM_SS_INSTANTIATING, LCM_SS_READY, LCM_SS_RUNNING,
    LCM_SS_COLLECTING, LCM_SS_GRADING, LCM_SS_STOPPING, LCM_SS_STOPPED, LCM_SS_EXPIRED,
    LCM_SS_ARCHIVED, LCM_SS_TERMINATED, LCM_SS__COUNT
};

enum lcm_lab_status {
    LCM_LAB_DISCOVERED, LCM_LAB_IMPORTING, LCM_LAB_DEFINED, LCM_LAB_STARTING, LCM_LAB_QUEUED,
    LCM_LAB_BOOTED, LCM_LAB_PAUSED, LCM_LAB_STOPPING, LCM_LAB_STOPPED, LCM_LAB_WIPING,
    LCM_LAB_WIPED, LCM_LAB_DELETING, LCM_LAB_DELETED, LCM_LAB_ERROR, LCM_LAB_ORPHANED,
    LCM_LAB_ARCHIVED, LCM_LAB__COUNT
};

struct lcm_fsm {
    const char *kind;
    int count;
    const char *const *names;
    const uint32_t *allowed;   /* allowed[from] has bit `to` set when from → to is allowed */
};

extern const struct lcm_fsm lcm_fsm_definition;
extern const struct lcm_fsm lcm_fsm_worker;
extern const struct lcm_fsm lcm_fsm_session;
extern const struct lcm_fsm lcm_fsm_lab;

/* 1 when from → to is in the table (from == to is never a transition). */
int lcm_fsm_allowed(const struct lcm_fsm *m, int from, int to);
const char *lcm_fsm_name(const struct lcm_fsm *m, int status);   /* "?" when out of range */
int lcm_fsm_parse(const struct lcm_fsm *m, const char *name);    /* -1 when unknown */
/* 1 when no transition leaves status. */
int lcm_fsm_is_final(const struct lcm_fsm *m, int status);

#endif
