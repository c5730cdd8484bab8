/* Which sessions the sessions controller must look at, so that a pass costs O(sessions that
 * need attention) rather than O(every session ever booked). A session is either *active*
 * (looked at on every pass: in the pipeline, tearing down, claimed, asked to terminate), or
 * *parked* until a wall-clock time (a pending/scheduled session before its boot lead or
 * expiry, a stopped one before it is archived), or absent (archived, or terminated with
 * everything released: nothing left to do). The controller moves sessions between these from
 * its store change callback and after each decision. Pure data structure, no I/O. */
#ifndef LCM_CTL_SESSIONS_INDEX_H
#define LCM_CTL_SESSIONS_INDEX_H

#include <stddef.h>
#include <stdint.h>

struct lcm_sidx;

struct lcm_sidx *lcm_sidx_new(void);
void lcm_sidx_free(struct lcm_sidx *x);
/* Forgets every session (keeps the allocation). */
void lcm_sidx_clear(struct lcm_sidx *x);

/* Looks at id on every pass from now on (adds it when absent). 0 or -1 (out of memory). */
int lcm_sidx_activate(struct lcm_sidx *x, const char *id);
/* Looks at id again once wall time at (seconds) is reached. 0 or -1 (out of memory). */
int lcm_sidx_park(struct lcm_sidx *x, const char *id, int64_t at);
/* Nothing to do for id until it changes. */
void lcm_sidx_remove(struct lcm_sidx *x, const char *id);

/* Moves every session parked until now or earlier to the active set; returns how many. */
size_t lcm_sidx_wake_due(struct lcm_sidx *x, int64_t now);
/* The earliest parked time, or 0 when nothing is parked. */
int64_t lcm_sidx_next(const struct lcm_sidx *x);

/* 1 active, 2 parked, 0 absent; *at (when not NULL) gets the parked time. */
int lcm_sidx_state(const struct lcm_sidx *x, const char *id, int64_t *at);
size_t lcm_sidx_nactive(const struct lcm_sidx *x);
size_t lcm_sidx_nparked(const struct lcm_sidx *x);

/* Copies of the active ids (most recently activated first) into a NULL-terminated array the
 * caller frees with lcm_sidx_ids_free; *n gets the count. NULL when out of memory. The copy
 * lets the caller change the index while it walks the list. */
char **lcm_sidx_active_ids(const struct lcm_sidx *x, size_t *n);
void lcm_sidx_ids_free(char **ids);

#endif
