/* The built-in C policies: the same three defaults as the policies/ scripts, used when a Lua policy
 * is missing, fails or times out, and as the benchmark's baseline. Pure C, no I/O. */
#ifndef LCM_POLICY_BUILTIN_H
#define LCM_POLICY_BUILTIN_H

#include "policy.h"

/* Each returns 0, or LCM_POLICY_E_NOMEM; out is cleared first and owned by the caller. */
int lcm_policy_builtin_place(const struct lcm_policy_placement_in *in,
                             struct lcm_policy_placement_out *out);
int lcm_policy_builtin_scale_up(const struct lcm_policy_scale_up_in *in,
                                struct lcm_policy_scale_up_out *out);
int lcm_policy_builtin_scale_down(const struct lcm_policy_scale_down_in *in,
                                  struct lcm_policy_scale_down_out *out);

/* Does a worker with licence `worker_lic` serve a session with affinity `affinity`? (DOMAIN.md
 * Placement rule 2: enterprise also serves personal.) */
int lcm_policy_license_serves(unsigned worker_lic, unsigned affinity);
/* The default placement score: the worker's dominant share (max of allocated/declared over
 * cpu, memory, storage, nodes), 0 when nothing is declared. */
double lcm_policy_utilisation(const struct lcm_policy_worker *w);

#endif
