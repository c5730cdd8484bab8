/* Domain error values: filled by validators and command functions, turned into
 * problem+json by the API. */
#include "derr.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void lcm_derr_clear(struct lcm_derr *e)
{
    if (!e)
        return;
    e->code = 0;
    e->field[0] = '\0';
    e->message[0] = '\0';
}

int lcm_derr_set(struct lcm_derr *e, int code, const char *field, const char *fmt, ...)
{
    if (!e)
        return code;
    e->code = code;
    snprintf(e->field, sizeof e->field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return code;
}

const char *lcm_derr_code_name(int code)
{
    switch (code) {
    case LCM_DERR_OK: return "ok";
    case LCM_DERR_INVALID: return "invalid";
    case LCM_DERR_CONFLICT: return "conflict";
    case LCM_DERR_NOT_FOUND: return "not_found";
    case LCM_DERR_EXHAUSTED: return "exhausted";
    case LCM_DERR_NOMEM: return "nomem";
    default: return "unknown";
    }
}

int lcm_derr_http_status(int code)
{
    switch (code) {
    case LCM_DERR_OK: return 200;
    case LCM_DERR_INVALID: return 422;
    case LCM_DERR_CONFLICT: return 409;
    case LCM_DERR_NOT_FOUND: return 404;
    case LCM_DERR_EXHAUSTED: return 409;
    default: return 500;
    }
}
