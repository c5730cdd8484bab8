/* Wiring of the scheduler and the autoscaler into lcmd: two controllers on the leader-only
 * framework (commits fenced by the lease), their Redis state, and their HTTP routes
 * (sched_api.c). One line each in controllers.c calls init/free. */
#ifndef LCM_CTL_SCHEDULER_CTL_H
#define LCM_CTL_SCHEDULER_CTL_H

#include <stddef.h>

struct lcm_app;
struct lcm_autoscaler;
struct lcm_sched;

/* Creates the scheduler and the autoscaler from app->cfg, registers both controllers on
 * app->ctl and the routes on app->httpd. Returns 0 or -1 with err. */
int lcm_sched_ctl_init(struct lcm_app *app, char *err, size_t errlen);
/* Frees both (after Redis was freed: no callback pending). */
void lcm_sched_ctl_free(struct lcm_app *app);

/* Routes GET /api/v1/scheduler, POST /api/v1/scheduler/preview, GET /api/v1/availability
 * (sched_api.c). The pointers must outlive the server. */
int lcm_sched_api_register(struct lcm_app *app, struct lcm_sched *s, struct lcm_autoscaler *a);

#endif
