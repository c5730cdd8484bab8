/* Helpers shared by the plugin tests: throw-away plugin directories holding copies of the
 * fixture .so files, stderr capture (to read the loader's log lines), loop driving. */
#ifndef LCM_TEST_PLUGIN_HARNESS_H
#define LCM_TEST_PLUGIN_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

struct event_base;

/* mkdtemp under TMPDIR; returns a malloc'd path. */
char *h_tmpdir(void);
void h_rmtree(const char *dir);
/* Copies FX_DIR/<fixture> to <dir>/<as> with mode; returns 0. */
int h_copy(const char *src_path, const char *dir, const char *as, mode_t mode);
int h_fx(const char *dir, const char *fixture, const char *as);   /* mode 0755 */

/* Everything written to fd 2 between begin and end; the returned string is malloc'd. */
void h_capture_begin(void);
char *h_capture_end(void);

/* Runs the loop until *flag becomes nonzero or ms pass; returns *flag. */
int h_run_until(struct event_base *base, const int *flag, int ms);
/* Runs the loop for about ms. */
void h_run_for(struct event_base *base, int ms);

#endif
