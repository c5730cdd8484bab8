/* The lds plugin: delivery provider for LDS Reservations API v3. Skeleton stage: it loads,
 * declares itself through the SDK descriptor and answers every operation with LCM_E_NOTIMPL
 * (listed as not implemented at GET /api/v1/plugins) until the real implementation replaces
 * this file. */
#include <lcm/spi.h>

#include <stdlib.h>

struct lds_plugin {
    const struct lcm_host_services *hs;
    struct lcm_host *h;
};

static int lds_create(const struct lcm_host_services *hs, struct lcm_host *h, void **self,
                      struct lcm_error *err)
{
    struct lds_plugin *p = calloc(1, sizeof *p);
    if (!p) {
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return LCM_E_NOMEM;
    }
    p->hs = hs;
    p->h = h;
    *self = p;
    return 0;
}

static void lds_destroy(void *self) { free(self); }

/* Refuses synchronously: done is never called, the caller sees the error at once. */
static int lds_notimpl(void *self, const struct lcm_call *call, const void *args,
                       lcm_done_fn done, void *ud, struct lcm_error *err)
{
    lcm_error_set(err, LCM_E_NOTIMPL, 0, 0, "lds plugin: operation not implemented yet");
    return LCM_E_NOTIMPL;
}

static const struct lcm_delivery_ops lds_ops = {
    .size = sizeof(struct lcm_delivery_ops),
    .session_create = lds_notimpl,
    .set_devices = lds_notimpl,
    .session_get = lds_notimpl,
    .launch_url = lds_notimpl,
    .release = lds_notimpl,
    .refresh_content = lds_notimpl,
};

static const char *const lds_unimplemented[] = {
    "session_create",
    "set_devices",
    "session_get",
    "launch_url",
    "release",
    "refresh_content",
    NULL,
};

LCM_PLUGIN_DESCRIPTOR = {
    LCM_PLUGIN_HEADER,
    .kind = LCM_KIND_DELIVERY,
    .name = "lds",
    .version = "0.0.1",
    .description = "delivery provider for LDS Reservations API v3"
                   " (skeleton: every operation answers not implemented)",
    .create = lds_create,
    .destroy = lds_destroy,
    .ops = &lds_ops,
    .unimplemented_ops = lds_unimplemented,
};
