/* All controllers, registered on app->ctl at start and freed at shutdown. Their instances
 * live in app->controllers (no per-process globals), so a second app in one process (tests,
 * tools) gets its own. */
#ifndef LCM_CONTROLLERS_H
#define LCM_CONTROLLERS_H

#include <stddef.h>

struct lcm_app;
struct lcm_labs_ctl;
struct lcm_sessions_ctl;
struct lcm_workers_ctl;

/* Owned by lcm_controllers_init/free (app->controllers). Each member is set by its
 * controller's init and cleared by its free; NULL when that controller is not set up. */
struct lcm_controllers {
    struct lcm_workers_ctl *workers;
    struct lcm_sessions_ctl *sessions;
    struct lcm_labs_ctl *labs;
};

/* Allocates app->controllers and registers every controller on app->ctl. */
int lcm_controllers_init(struct lcm_app *app, char *err, size_t errlen);
/* Frees every controller and app->controllers (safe after a failed init). */
void lcm_controllers_free(struct lcm_app *app);

#endif
