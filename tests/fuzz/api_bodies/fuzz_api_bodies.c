/* Fuzz target for the request bodies of the resource routes: the first byte picks the body
 * (t: template, d: definition, s: session, anything else: each in turn), the rest is the
 * body as sent. It runs what POST /templates, /definitions and /sessions do before touching
 * the store (strict parse, shape check, domain validation) plus a merge patch of the body
 * onto itself, and checks the invariants: a result is 0 or a domain error with a message,
 * and a body that passes the shape check has no member the schema does not name. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api_body.h"
#include "api_int.h"
#include "domain/derr.h"

static void check_result(int rc, const struct lcm_derr *e)
{
    if (rc != 0 && rc != LCM_DERR_INVALID && rc != LCM_DERR_CONFLICT &&
        rc != LCM_DERR_NOT_FOUND && rc != LCM_DERR_NOMEM)
        abort();
    if (rc && rc != LCM_DERR_NOMEM && !e->message[0])
        abort();   /* every refusal says why */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1 << 20))
        return 0;
    static const char *const kinds[] = { "template", "definition", "session" };
    static const struct api_schema *const schemas[] = {
        &lcm_api_schema_template, &lcm_api_schema_definition, &lcm_api_schema_session_create
    };
    const char *json = (const char *)data + 1;
    size_t len = size - 1;
    for (int k = 0; k < 3; k++) {
        if ((data[0] == 't' && k != 0) || (data[0] == 'd' && k != 1) || (data[0] == 's' && k != 2))
            continue;
        struct lcm_derr e;
        int rc = lcm_api_body_validate(kinds[k], json, len, &e);
        check_result(rc, &e);
        cJSON *o = cJSON_ParseWithLength(json, len);
        if (o) {
            if (lcm_api_body_check(o, schemas[k], &e) == API_BODY_OK && cJSON_IsObject(o)) {
                /* a PATCH: the body merged onto a copy of itself must still be checkable */
                cJSON *t = cJSON_Duplicate(o, 1);
                if (t) {
                    api_merge_patch(t, o);
                    (void)lcm_api_body_check(t, schemas[k], &e);
                    cJSON_Delete(t);
                }
            }
            cJSON_Delete(o);
        }
    }
    return 0;
}
