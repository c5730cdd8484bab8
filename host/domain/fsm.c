/* Transition tables of DOMAIN.md. Where DOMAIN.md leaves a choice (the lab record mirrors
 * CML and has no table there) the choice is written next to the table. */
#include "fsm.h"

#include <string.h>

#define B(x) (1u << (x))

static const char *const def_names[] = {"pending_sync", "active", "inactive", "deprecated",
                                        "deleted"};
/* pending_sync → active ⇄ inactive; active → deprecated; any (but deleted) → deleted. */
static const uint32_t def_allowed[LCM_DEF__COUNT] = {
    [LCM_DEF_PENDING_SYNC] = B(LCM_DEF_ACTIVE) | B(LCM_DEF_DELETED),
    [LCM_DEF_ACTIVE] = B(LCM_DEF_INACTIVE) | B(LCM_DEF_DEPRECATED) | B(LCM_DEF_DELETED),
    [LCM_DEF_INACTIVE] = B(LCM_DEF_ACTIVE) | B(LCM_DEF_DELETED),
    [LCM_DEF_DEPRECATED] = B(LCM_DEF_DELETED),
    [LCM_DEF_DELETED] = 0,
};

static const char *const wk_names[] = {"pending", "provisioning", "starting", "running",
                                       "draining", "stopping", "stopped", "terminating",
                                       "terminated", "failed"};
#define WK_FAIL B(LCM_WK_FAILED)
/* draining → running is the admin's cancel-drain (fix: drains are graceful and reversible).
 * "any non-terminal → failed": every status but terminated (and failed itself). */
static const uint32_t wk_allowed[LCM_WK__COUNT] = {
    [LCM_WK_PENDING] = B(LCM_WK_PROVISIONING) | WK_FAIL,
    [LCM_WK_PROVISIONING] = B(LCM_WK_STARTING) | WK_FAIL,
    [LCM_WK_STARTING] = B(LCM_WK_RUNNING) | WK_FAIL,
    [LCM_WK_RUNNING] = B(LCM_WK_DRAINING) | B(LCM_WK_TERMINATING) | WK_FAIL,
    [LCM_WK_DRAINING] = B(LCM_WK_STOPPING) | B(LCM_WK_RUNNING) | B(LCM_WK_TERMINATING) | WK_FAIL,
    [LCM_WK_STOPPING] = B(LCM_WK_STOPPED) | WK_FAIL,
    [LCM_WK_STOPPED] = B(LCM_WK_STARTING) | B(LCM_WK_TERMINATING) | WK_FAIL,
    [LCM_WK_TERMINATING] = B(LCM_WK_TERMINATED) | WK_FAIL,
    [LCM_WK_TERMINATED] = 0,
    [LCM_WK_FAILED] = B(LCM_WK_PENDING) | B(LCM_WK_TERMINATING),
};

static const char *const ss_names[] = {"pending", "scheduled", "instantiating", "ready",
                                       "running", "collecting", "grading", "stopping",
                                       "stopped", "expired", "archived", "terminated"};
#define SS_X B(LCM_SS_EXPIRED)
#define SS_T B(LCM_SS_TERMINATED)
static const uint32_t ss_allowed[LCM_SS__COUNT] = {
    [LCM_SS_PENDING] = B(LCM_SS_SCHEDULED) | SS_X | SS_T,
    [LCM_SS_SCHEDULED] = B(LCM_SS_INSTANTIATING) | SS_X | SS_T,
    [LCM_SS_INSTANTIATING] = B(LCM_SS_READY) | SS_X | SS_T,
    [LCM_SS_READY] = B(LCM_SS_RUNNING) | SS_X | SS_T,
    [LCM_SS_RUNNING] = B(LCM_SS_COLLECTING) | B(LCM_SS_STOPPING) | SS_X | SS_T,
    [LCM_SS_COLLECTING] = B(LCM_SS_GRADING) | B(LCM_SS_STOPPING) | SS_X | SS_T,
    [LCM_SS_GRADING] = B(LCM_SS_STOPPING) | SS_X | SS_T,
    [LCM_SS_STOPPING] = B(LCM_SS_STOPPED) | SS_T,
    [LCM_SS_STOPPED] = B(LCM_SS_ARCHIVED) | SS_T,
    [LCM_SS_EXPIRED] = B(LCM_SS_ARCHIVED) | SS_T,
    [LCM_SS_ARCHIVED] = SS_T,
    [LCM_SS_TERMINATED] = 0,
};

static const char *const lab_names[] = {"discovered", "importing", "defined", "starting",
                                        "queued", "booted", "paused", "stopping",
                                        "stopped", "wiping", "wiped", "deleting",
                                        "deleted", "error", "orphaned", "archived"};
/* The lab record mirrors CML. Commanded changes follow this table; what CML reports is
 * folded through lab.observed, which may jump (like a worker's EC2 observation). Every live
 * status can fail (error) or lose its worker (orphaned). A wiped lab can be started again
 * (reuse). deleted/orphaned end in archived. */
#define LAB_EO (B(LCM_LAB_ERROR) | B(LCM_LAB_ORPHANED))
static const uint32_t lab_allowed[LCM_LAB__COUNT] = {
    [LCM_LAB_DISCOVERED] = B(LCM_LAB_DEFINED) | B(LCM_LAB_STARTING) | B(LCM_LAB_QUEUED) |
                           B(LCM_LAB_BOOTED) | B(LCM_LAB_STOPPED) | B(LCM_LAB_WIPED) |
                           B(LCM_LAB_DELETING) | B(LCM_LAB_ARCHIVED) | LAB_EO,
    [LCM_LAB_IMPORTING] = B(LCM_LAB_DEFINED) | LAB_EO,
    [LCM_LAB_DEFINED] = B(LCM_LAB_STARTING) | B(LCM_LAB_QUEUED) | B(LCM_LAB_DELETING) | LAB_EO,
    [LCM_LAB_STARTING] = B(LCM_LAB_QUEUED) | B(LCM_LAB_BOOTED) | B(LCM_LAB_STOPPING) | LAB_EO,
    [LCM_LAB_QUEUED] = B(LCM_LAB_STARTING) | B(LCM_LAB_BOOTED) | B(LCM_LAB_STOPPING) | LAB_EO,
    [LCM_LAB_BOOTED] = B(LCM_LAB_PAUSED) | B(LCM_LAB_STOPPING) | LAB_EO,
    [LCM_LAB_PAUSED] = B(LCM_LAB_BOOTED) | B(LCM_LAB_STOPPING) | LAB_EO,
    [LCM_LAB_STOPPING] = B(LCM_LAB_STOPPED) | LAB_EO,
    [LCM_LAB_STOPPED] = B(LCM_LAB_STARTING) | B(LCM_LAB_WIPING) | B(LCM_LAB_DELETING) | LAB_EO,
    [LCM_LAB_WIPING] = B(LCM_LAB_WIPED) | LAB_EO,
    [LCM_LAB_WIPED] = B(LCM_LAB_STARTING) | B(LCM_LAB_QUEUED) | B(LCM_LAB_DELETING) | LAB_EO,
    [LCM_LAB_DELETING] = B(LCM_LAB_DELETED) | LAB_EO,
    [LCM_LAB_DELETED] = B(LCM_LAB_ARCHIVED),
    [LCM_LAB_ERROR] = B(LCM_LAB_STARTING) | B(LCM_LAB_STOPPING) | B(LCM_LAB_WIPING) |
                      B(LCM_LAB_DELETING) | B(LCM_LAB_ORPHANED) | B(LCM_LAB_ARCHIVED),
    [LCM_LAB_ORPHANED] = B(LCM_LAB_DELETING) | B(LCM_LAB_DELETED) | B(LCM_LAB_ARCHIVED),
    [LCM_LAB_ARCHIVED] = 0,
};

const struct lcm_fsm lcm_fsm_definition = {"definition", LCM_DEF__COUNT, def_names, def_allowed};
const struct lcm_fsm lcm_fsm_worker = {"worker", LCM_WK__COUNT, wk_names, wk_allowed};
const struct lcm_fsm lcm_fsm_session = {"session", LCM_SS__COUNT, ss_names, ss_allowed};
const struct lcm_fsm lcm_fsm_lab = {"lab", LCM_LAB__COUNT, lab_names, lab_allowed};

int lcm_fsm_allowed(const struct lcm_fsm *m, int from, int to)
{
    if (from < 0 || to < 0 || from >= m->count || to >= m->count || from == to)
        return 0;
    return (m->allowed[from] & B(to)) != 0;
}

const char *lcm_fsm_name(const struct lcm_fsm *m, int status)
{
    return (status >= 0 && status < m->count) ? m->names[status] : "?";
}

int lcm_fsm_parse(const struct lcm_fsm *m, const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < m->count; i++)
        if (!strcmp(m->names[i], name))
            return i;
    return -1;
}

int lcm_fsm_is_final(const struct lcm_fsm *m, int status)
{
    return status >= 0 && status < m->count && m->allowed[status] == 0;
}
