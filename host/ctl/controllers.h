/* All controllers, registered on app->ctl at start and freed at shutdown. */
#ifndef LCM_CONTROLLERS_H
#define LCM_CONTROLLERS_H

#include <stddef.h>

struct lcm_app;

int lcm_controllers_init(struct lcm_app *app, char *err, size_t errlen);
void lcm_controllers_free(struct lcm_app *app);

#endif
