/* Structured one-line logging to stderr. The level is process-wide (set once from config);
 * lines are written with a single write() so concurrent processes do not interleave. */
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static enum lcm_log_level current_level = LCM_LOG_INFO;
static const char *const level_names[] = { "debug", "info", "warn", "error" };

void lcm_log_set_level(enum lcm_log_level level) { current_level = level; }
enum lcm_log_level lcm_log_get_level(void) { return current_level; }

const char *lcm_log_level_name(enum lcm_log_level level)
{
    return (unsigned)level < 4 ? level_names[level] : "?";
}

int lcm_log_parse_level(const char *s, enum lcm_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (s && strcasecmp(s, level_names[i]) == 0) {
            *out = (enum lcm_log_level)i;
            return 0;
        }
    }
    if (s && strcasecmp(s, "warning") == 0) {
        *out = LCM_LOG_WARN;
        return 0;
    }
    return -1;
}

void lcm_logv(enum lcm_log_level level, const char *comp, const char *fmt, va_list ap)
{
    if (level < current_level)
        return;
    char line[4096];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s comp=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, lcm_log_level_name(level), comp ? comp : "-");
    if (n < 0)
        return;
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    /* One event per line: a newline inside a value would forge a second event. */
    for (size_t i = (size_t)n; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void lcm_log(enum lcm_log_level level, const char *comp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lcm_logv(level, comp, fmt, ap);
    va_end(ap);
}
