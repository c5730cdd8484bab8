/* The grading plugin: grading provider for the grading engine. Skeleton stage: it loads,
 * declares itself through the SDK descriptor and answers every operation with LCM_E_NOTIMPL
 * (listed as not implemented at GET /api/v1/plugins) until the real implementation replaces
 * this file. */
#include <lcm/spi.h>

#include <stdlib.h>

struct grd_plugin {
    const struct lcm_host_services *hs;
    struct lcm_host *h;
};

static int grd_create(const struct lcm_host_services *hs, struct lcm_host *h, void **self,
                      struct lcm_error *err)
{
    struct grd_plugin *p = calloc(1, sizeof *p);
    if (!p) {
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return LCM_E_NOMEM;
    }
    p->hs = hs;
    p->h = h;
    *self = p;
    return 0;
}

static void grd_destroy(void *self) { free(self); }

/* Refuses synchronously: done is never called, the caller sees the error at once. */
static int grd_notimpl(void *self, const struct lcm_call *call, const void *args,
                       lcm_done_fn done, void *ud, struct lcm_error *err)
{
    lcm_error_set(err, LCM_E_NOTIMPL, 0, 0, "grading plugin: operation not implemented yet");
    return LCM_E_NOTIMPL;
}

static const struct lcm_grading_ops grd_ops = {
    .size = sizeof(struct lcm_grading_ops),
    .session_create = grd_notimpl,
    .request_grading = grd_notimpl,
    .get_result = grd_notimpl,
};

static const char *const grd_unimplemented[] = {
    "session_create",
    "request_grading",
    "get_result",
    NULL,
};

LCM_PLUGIN_DESCRIPTOR = {
    LCM_PLUGIN_HEADER,
    .kind = LCM_KIND_GRADING,
    .name = "grading",
    .version = "0.0.1",
    .description = "grading provider for the grading engine"
                   " (skeleton: every operation answers not implemented)",
    .create = grd_create,
    .destroy = grd_destroy,
    .ops = &grd_ops,
    .unimplemented_ops = grd_unimplemented,
};
