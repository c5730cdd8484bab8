/* Serves a directory of static files (the dashboard) for GET requests no route matched. */
#ifndef LCM_STATIC_H
#define LCM_STATIC_H

struct lcm_req;

/* ud is the directory path (NUL-terminated, kept by the caller). */
void lcm_static_serve(struct lcm_req *r, void *ud);

#endif
