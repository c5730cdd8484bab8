/* Prometheus metrics registry: counters, gauges and histograms keyed by name + label set,
 * rendered in the text exposition format for GET /metrics. One registry per lcmd. */
#ifndef LCM_METRICS_H
#define LCM_METRICS_H

#include <stddef.h>

struct lcm_metrics;

enum lcm_metric_type { LCM_METRIC_COUNTER, LCM_METRIC_GAUGE, LCM_METRIC_HISTOGRAM };

struct lcm_metrics *lcm_metrics_new(void);
void lcm_metrics_free(struct lcm_metrics *m);

/* Declares a family (type + HELP text). Optional: undeclared families render as untyped
 * counters/gauges. Re-declaring is harmless. */
void lcm_metrics_declare(struct lcm_metrics *m, const char *name, enum lcm_metric_type type,
                         const char *help);

/* labels is the inside of the braces, already escaped, e.g. `route="/healthz",code="200"`,
 * or NULL/"" for none. */
void lcm_metrics_inc(struct lcm_metrics *m, const char *name, const char *labels, double by);
void lcm_metrics_set(struct lcm_metrics *m, const char *name, const char *labels, double v);
/* Histogram observation in seconds (default latency buckets 1 ms … 10 s). */
void lcm_metrics_observe(struct lcm_metrics *m, const char *name, const char *labels, double v);
/* Current value of a counter/gauge (0 when absent); histograms return their count. */
double lcm_metrics_get(const struct lcm_metrics *m, const char *name, const char *labels);

/* Renders the whole registry; returns a malloc'd NUL-terminated string (caller frees). */
char *lcm_metrics_render(const struct lcm_metrics *m, size_t *len);

/* Escapes a label value for use inside labels (backslash, quote, newline). Writes at most
 * cap bytes including NUL; returns dst. */
char *lcm_metrics_escape(char *dst, size_t cap, const char *value);

#endif
