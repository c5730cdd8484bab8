/* The parts of the aggregate kinds' vtables that are the same for every kind (see
 * kind_glue.h), written once so that a fix to how state is read back applies to all. */
#include "kind_glue.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "jsonx.h"

int lcm_kind_glue_from_fields(const struct lcm_kind_glue *g, void *state,
                              const char *const *fields, const char *const *values, size_t n,
                              char *err, size_t errlen)
{
    uint64_t version;
    cJSON *o = lcm_jx_from_fields(fields, values, n, NULL, &version);
    void *fresh = g->create(NULL);
    int rc = -1;
    if (!o || !fresh) {
        lcm_errf(err, errlen, "out of memory");
        goto out;
    }
    if (g->load(o, fresh, err, errlen))
        goto out;
    memcpy((char *)fresh + g->version_off, &version, sizeof version);
    /* fresh takes over state's id; state's old contents go, then fresh moves in and is left
     * empty so that destroying it frees nothing state now owns. */
    char **sid = (char **)((char *)state + g->id_off);
    char **fid = (char **)((char *)fresh + g->id_off);
    *fid = *sid;
    *sid = NULL;
    g->clear(state);
    memcpy(state, fresh, g->size);
    memset(fresh, 0, g->size);
    rc = 0;
out:
    g->destroy(fresh);
    cJSON_Delete(o);
    return rc;
}

void *lcm_kind_glue_clone(const struct lcm_kind_glue *g, const void *state)
{
    void *c = malloc(g->size);
    if (!c)
        return NULL;
    memcpy(c, state, g->size);
    if (g->own(c, state)) {
        g->destroy(c);
        return NULL;
    }
    return c;
}

void lcm_kind_glue_fields(cJSON *o, const char *const *rename, lcm_field_emit_fn emit, void *ud)
{
    if (o)
        lcm_jx_emit_fields(o, rename, emit, ud);
    cJSON_Delete(o);
}
