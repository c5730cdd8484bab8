/* Helpers shared by the policy tests: temporary policy directories, file writing, workers. */
#ifndef POLICY_TEST_UTIL_H
#define POLICY_TEST_UTIL_H

#include <stddef.h>

#include "policy.h"

/* mkdtemp'd directory holding a copy of policies/ (with fixtures/). Caller frees with
 * ptu_rmdir (removes it) then free(). */
char *ptu_copy_defaults(void);
void ptu_rmdir(char *dir);
/* Writes dir/rel (creating nothing else); returns 0 or -1. Bumps mtime forward so a poll
 * sees the change even within the same second. */
int ptu_write(const char *dir, const char *rel, const char *text);
int ptu_write_bytes(const char *dir, const char *rel, const void *data, size_t len);
/* A running enterprise multi-sessions worker with the given allocation. */
struct lcm_policy_worker ptu_worker(const char *id, double alloc_cpu, int sessions);
double ptu_ms_since(long long t0_ns);
long long ptu_now_ns(void);
/* CPU time of the calling thread: what a policy call really costs the loop, without the
 * time the test box spent running other processes (the wall clock is checked loosely). */
long long ptu_cpu_ns(void);
double ptu_cpu_ms_since(long long t0_ns);

#endif
