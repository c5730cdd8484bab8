/* Metrics registry renders valid Prometheus text: TYPE/HELP once per family, histograms
 * cumulative with +Inf, _sum and _count. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/metrics.h"

static void counters_and_histograms(void **state)
{
    (void)state;
    struct lcm_metrics *m = lcm_metrics_new();
    lcm_metrics_declare(m, "x_total", LCM_METRIC_COUNTER, "things");
    lcm_metrics_inc(m, "x_total", "a=\"1\"", 2);
    lcm_metrics_inc(m, "x_total", "a=\"1\"", 3);
    lcm_metrics_inc(m, "x_total", "a=\"2\"", 1);
    for (int i = 0; i < 1000; i++) {
        char l[32];
        snprintf(l, sizeof(l), "n=\"%d\"", i);
        lcm_metrics_set(m, "g", l, i);
    }
    lcm_metrics_declare(m, "lat_seconds", LCM_METRIC_HISTOGRAM, "latency");
    lcm_metrics_observe(m, "lat_seconds", NULL, 0.003);
    lcm_metrics_observe(m, "lat_seconds", NULL, 7);
    assert_true(lcm_metrics_get(m, "x_total", "a=\"1\"") == 5);
    assert_true(lcm_metrics_get(m, "g", "n=\"999\"") == 999);
    size_t len;
    char *t = lcm_metrics_render(m, &len);
    assert_non_null(t);
    assert_int_equal(strlen(t), len);
    assert_non_null(strstr(t, "# TYPE x_total counter\nx_total{a=\"1\"} 5\nx_total{a=\"2\"} 1\n"));
    assert_non_null(strstr(t, "lat_seconds_bucket{le=\"0.0025\"} 0\nlat_seconds_bucket{le=\"0.005\"} 1\n"));
    assert_non_null(strstr(t, "lat_seconds_bucket{le=\"+Inf\"} 2\nlat_seconds_sum 7.003\nlat_seconds_count 2\n"));
    /* one TYPE line per family */
    const char *first = strstr(t, "# TYPE x_total");
    assert_non_null(first);
    assert_null(strstr(first + 1, "# TYPE x_total"));
    free(t);
    lcm_metrics_free(m);
}

static void escaping(void **state)
{
    (void)state;
    char out[64];
    lcm_metrics_escape(out, sizeof(out), "a\"b\\c\nd");
    assert_string_equal(out, "a\\\"b\\\\c\\nd");
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(counters_and_histograms), cmocka_unit_test(escaping) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
