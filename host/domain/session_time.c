/* Session time rules: the lead window, the boot lead, expiry with grace. Parameters come
 * from configuration; the defaults are DOMAIN.md's. */
#include "session_time.h"

#include "fsm.h"
#include "session.h"

void lcm_time_params_default(struct lcm_time_params *p)
{
    p->lead_window_minutes = 35;
    p->default_boot_lead_minutes = 20;
    p->grace_minutes = 5;
    p->collect_grace_minutes = 30;
}

int lcm_session_in_lead_window(const struct lcm_session *s, int64_t now,
                               const struct lcm_time_params *p)
{
    if (s->status != LCM_SS_PENDING)
        return 0;
    return s->start == 0 || s->start - (int64_t)p->lead_window_minutes * 60 <= now;
}

int lcm_session_due_to_instantiate(const struct lcm_session *s, int64_t now,
                                   const struct lcm_time_params *p)
{
    if (s->status != LCM_SS_SCHEDULED)
        return 0;
    int64_t lead = s->boot_lead_minutes >= 0 ? s->boot_lead_minutes : p->default_boot_lead_minutes;
    return s->start == 0 || s->start - lead * 60 <= now;
}

enum lcm_deadline_action lcm_session_deadline_action(const struct lcm_session *s, int64_t now,
                                                     const struct lcm_time_params *p)
{
    switch (s->status) {
    case LCM_SS_PENDING:
    case LCM_SS_SCHEDULED:
        if (s->start && now > s->start + (int64_t)p->grace_minutes * 60)
            return LCM_DEADLINE_EXPIRE;
        break;
    case LCM_SS_INSTANTIATING:
    case LCM_SS_READY:
        break;
    case LCM_SS_RUNNING:
        if (s->end && now >= s->end)
            return s->grading_enabled ? LCM_DEADLINE_COLLECT : LCM_DEADLINE_EXPIRE;
        return LCM_DEADLINE_NONE;
    case LCM_SS_COLLECTING:
    case LCM_SS_GRADING:
        if (s->end && now >= s->end + (int64_t)p->collect_grace_minutes * 60)
            return LCM_DEADLINE_EXPIRE;
        return LCM_DEADLINE_NONE;
    default:
        return LCM_DEADLINE_NONE;   /* stopping and later: the clock no longer matters */
    }
    if (s->end && now >= s->end)
        return LCM_DEADLINE_EXPIRE;
    return LCM_DEADLINE_NONE;
}

int lcm_session_is_expired(const struct lcm_session *s, int64_t now,
                           const struct lcm_time_params *p)
{
    return s->status == LCM_SS_EXPIRED ||
           lcm_session_deadline_action(s, now, p) == LCM_DEADLINE_EXPIRE;
}

int lcm_session_holds_capacity(int status)
{
    return status >= LCM_SS_SCHEDULED && status <= LCM_SS_STOPPING;
}

int lcm_session_is_terminal(int status)
{
    return status == LCM_SS_STOPPED || status == LCM_SS_EXPIRED || status == LCM_SS_ARCHIVED ||
           status == LCM_SS_TERMINATED;
}
