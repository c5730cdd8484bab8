/* The labs controller (leader only): executes the lab record actions requested through
 * POST /api/v1/labs/{id}/actions (start/stop/wipe/delete) with timeouts, discovers labs on
 * the workers (periodically and on demand): unknown CML labs become `discovered` records,
 * records whose lab or worker is gone become `orphaned`, idle records follow CML's state.
 * docs/labs.md. */
#ifndef LCM_CTL_LABS_H
#define LCM_CTL_LABS_H

#include <stddef.h>

struct lcm_app;

int lcm_labs_ctl_init(struct lcm_app *app, char *err, size_t errlen);
void lcm_labs_ctl_free(struct lcm_app *app);
/* Asks for a discovery pass now: of one worker, or of every running worker (NULL). Returns 0,
 * or -1 when the controller is not set up. Only the leader acts on it. */
int lcm_labs_discover(struct lcm_app *app, const char *worker_id);

#endif
