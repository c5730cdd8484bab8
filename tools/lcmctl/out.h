/* Human output of lcmctl: aligned tables for lists (columns picked by JSON path) and a
 * flattened "key: value" view of one document. Pure (cJSON and stdio only), unit tested. */
#ifndef LCMCTL_OUT_H
#define LCMCTL_OUT_H

#include <stdio.h>

struct cJSON;

/* A column: header and a path into each item. Paths are dotted ("cml.ready",
 * "timeslot.start"); "a/b" renders two paths as "<a>/<b>" (used / declared); "#x" is the
 * number of elements of array x. */
struct lcmctl_col {
    const char *head;
    const char *path;
};

/* The value at a dotted path, or NULL. */
const struct cJSON *lcmctl_path(const struct cJSON *o, const char *path);
/* The text of one cell (malloc'd; "-" for missing/null). */
char *lcmctl_cell(const struct cJSON *item, const char *path);
/* Prints items (a JSON array of objects) as a table with a header line; cells longer than
 * 60 characters are cut with "…" unless wide is set. An empty array prints "(none)". */
void lcmctl_table(FILE *f, const struct cJSON *items, const struct lcmctl_col *cols, size_t ncols,
                  int wide);
/* Prints o flattened: "a.b: value", arrays of scalars comma-joined, arrays of objects as
 * "a[0].b: value". */
void lcmctl_kv(FILE *f, const struct cJSON *o);

#endif
