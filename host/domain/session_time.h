/* Session time rules of DOMAIN.md as pure functions of (session, now, parameters); the
 * session controller and the scheduler call them on every sweep. */
#ifndef LCM_DOMAIN_SESSION_TIME_H
#define LCM_DOMAIN_SESSION_TIME_H

#include <stdint.h>

struct lcm_session;

struct lcm_time_params {
    int32_t lead_window_minutes;        /* 35: pending sessions considered for placement */
    int32_t default_boot_lead_minutes;  /* 20: when the session has none */
    int32_t grace_minutes;              /* 5: pending/scheduled past start by this → expired */
    int32_t collect_grace_minutes;      /* 30: collecting/grading may outlive the end by this */
};

void lcm_time_params_default(struct lcm_time_params *p);

/* pending and (no start, or start - lead_window ≤ now). */
int lcm_session_in_lead_window(const struct lcm_session *s, int64_t now,
                               const struct lcm_time_params *p);
/* scheduled and (no start, or start - boot_lead ≤ now). */
int lcm_session_due_to_instantiate(const struct lcm_session *s, int64_t now,
                                   const struct lcm_time_params *p);

enum lcm_deadline_action {
    LCM_DEADLINE_NONE = 0,
    LCM_DEADLINE_EXPIRE,       /* move to expired */
    LCM_DEADLINE_COLLECT,      /* running at the end with grading enabled: collect instead */
};
/* What the clock demands now: pending/scheduled whose start passed by more than the grace
 * → expire; a session not yet stopping when the end passes → expire, except a running one
 * with grading enabled (→ collect) and collecting/grading ones, which get
 * collect_grace_minutes past the end before they expire. */
enum lcm_deadline_action lcm_session_deadline_action(const struct lcm_session *s, int64_t now,
                                                     const struct lcm_time_params *p);
int lcm_session_is_expired(const struct lcm_session *s, int64_t now,
                           const struct lcm_time_params *p);
/* 1 for the statuses in which the session holds worker capacity (scheduled … stopping). */
int lcm_session_holds_capacity(int status);
/* 1 for stopped, expired, archived, terminated (the session no longer runs). */
int lcm_session_is_terminal(int status);

#endif
