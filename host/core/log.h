/* Structured logging: one line per event, `ts=… level=… comp=… key=value…` on stderr.
 * Secrets never go through here; callers log token *subjects*, never tokens. */
#ifndef LCM_LOG_H
#define LCM_LOG_H

#include <stdarg.h>

enum lcm_log_level { LCM_LOG_DEBUG = 0, LCM_LOG_INFO, LCM_LOG_WARN, LCM_LOG_ERROR };

void lcm_log_set_level(enum lcm_log_level level);
enum lcm_log_level lcm_log_get_level(void);
/* Parses "debug|info|warn|error"; returns 0 or -1. */
int lcm_log_parse_level(const char *s, enum lcm_log_level *out);
const char *lcm_log_level_name(enum lcm_log_level level);

/* fmt continues the line with key=value pairs, e.g. "msg=\"listening\" addr=%s". */
void lcm_log(enum lcm_log_level level, const char *comp, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void lcm_logv(enum lcm_log_level level, const char *comp, const char *fmt, va_list ap);

#define lcm_debug(comp, ...) lcm_log(LCM_LOG_DEBUG, comp, __VA_ARGS__)
#define lcm_info(comp, ...)  lcm_log(LCM_LOG_INFO, comp, __VA_ARGS__)
#define lcm_warn(comp, ...)  lcm_log(LCM_LOG_WARN, comp, __VA_ARGS__)
#define lcm_error(comp, ...) lcm_log(LCM_LOG_ERROR, comp, __VA_ARGS__)

#endif
