/* Registers every controller with the controller framework. Each controller lives in its
 * own file and adds one line here; its instance hangs off app->controllers. */
#include "controllers.h"

#include <stdio.h>
#include <stdlib.h>

#include "app.h"
#include "labs.h"
#include "sessions.h"
#include "scheduler_ctl.h"
#include "workers.h"

int lcm_controllers_init(struct lcm_app *app, char *err, size_t errlen)
{
    if (!app->controllers && !(app->controllers = calloc(1, sizeof(*app->controllers)))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (lcm_workers_ctl_init(app, err, errlen) < 0) return -1;
    if (lcm_sched_ctl_init(app, err, errlen) < 0) return -1;
    if (lcm_sessions_ctl_init(app, err, errlen) < 0) return -1;
    if (lcm_labs_ctl_init(app, err, errlen) < 0) return -1;
    return 0;
}

void lcm_controllers_free(struct lcm_app *app)
{
    lcm_labs_ctl_free(app);
    lcm_sessions_ctl_free(app);
    lcm_sched_ctl_free(app);
    lcm_workers_ctl_free(app);
    free(app->controllers);
    app->controllers = NULL;
}
