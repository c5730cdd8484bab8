/* The worker controller (leader only): drives each worker's status toward its desired status
 * through the cloud plugin (launch, start, stop, terminate) and the runtime plugin (CML
 * readiness and licence), discovers instances launched outside LCM, cleans up workers whose
 * instance vanished, and collects metrics. docs/workers.md describes the state machine. */
#ifndef LCM_CTL_WORKERS_H
#define LCM_CTL_WORKERS_H

#include <stddef.h>

struct lcm_app;

/* Registers the controller on app->ctl (called from lcm_controllers_init). */
int lcm_workers_ctl_init(struct lcm_app *app, char *err, size_t errlen);
/* Detaches operations still in flight (their callbacks then only free themselves) and frees
 * the controller. */
void lcm_workers_ctl_free(struct lcm_app *app);

/* Requests from the API arrive on the stream lcm:requests ({type: worker.import, region},
 * {type: worker.refresh, worker_id}), read by the leader through the consumer group
 * lcm-workers: import runs discovery now, refresh re-reads EC2 and CML for one worker and
 * runs lab discovery on it (lcm_labs_discover). */

#endif
