/* The sessions controller (leader only): drives every session through the pipeline of
 * DOMAIN.md — instantiating (lab, ports, tags, start, LDS) → ready → running → collecting →
 * grading → stopping (stop, LDS release, wipe) → stopped → archived — plus the timeslot rules
 * (boot lead, expiry, collection at the end) on a deadline timer. Every step is recorded as
 * session.step events before and after its external call, so it resumes after a crash.
 * docs/lifecycle.md describes the states and what each step calls. */
#ifndef LCM_CTL_SESSIONS_H
#define LCM_CTL_SESSIONS_H

#include <stddef.h>

struct lcm_app;

/* Registers the controller on app->ctl (app->store, app->plugins and app->cfg required). */
int lcm_sessions_ctl_init(struct lcm_app *app, char *err, size_t errlen);
/* Frees it; call after the plugins were shut down and Redis freed (no callback pending). */
void lcm_sessions_ctl_free(struct lcm_app *app);

#endif
