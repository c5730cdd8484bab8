/* The cml plugin: runtime provider for CML 2.9. Skeleton stage: it loads, declares itself
 * through the SDK descriptor and answers every operation with LCM_E_NOTIMPL (listed as not
 * implemented at GET /api/v1/plugins) until the real implementation replaces this file. */
#include <lcm/spi.h>

#include <stdlib.h>

struct cml_plugin {
    const struct lcm_host_services *hs;
    struct lcm_host *h;
};

static int cml_create(const struct lcm_host_services *hs, struct lcm_host *h, void **self,
                      struct lcm_error *err)
{
    struct cml_plugin *p = calloc(1, sizeof *p);
    if (!p) {
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return LCM_E_NOMEM;
    }
    p->hs = hs;
    p->h = h;
    *self = p;
    return 0;
}

static void cml_destroy(void *self) { free(self); }

/* Refuses synchronously: done is never called, the caller sees the error at once. */
static int cml_notimpl(void *self, const struct lcm_call *call, const void *args,
                       lcm_done_fn done, void *ud, struct lcm_error *err)
{
    lcm_error_set(err, LCM_E_NOTIMPL, 0, 0, "cml plugin: operation not implemented yet");
    return LCM_E_NOTIMPL;
}

static const struct lcm_runtime_ops cml_ops = {
    .size = sizeof(struct lcm_runtime_ops),
    .system_info = cml_notimpl,
    .licence_get = cml_notimpl,
    .licence_register = cml_notimpl,
    .lab_import = cml_notimpl,
    .lab_get = cml_notimpl,
    .lab_start = cml_notimpl,
    .lab_stop = cml_notimpl,
    .lab_wipe = cml_notimpl,
    .lab_delete = cml_notimpl,
    .lab_converged = cml_notimpl,
    .nodes_list = cml_notimpl,
    .node_set_tags = cml_notimpl,
    .extract_configs = cml_notimpl,
    .system_stats = cml_notimpl,
    .activity = cml_notimpl,
    .list_labs = cml_notimpl,
};

static const char *const cml_unimplemented[] = {
    "system_info",
    "licence_get",
    "licence_register",
    "lab_import",
    "lab_get",
    "lab_start",
    "lab_stop",
    "lab_wipe",
    "lab_delete",
    "lab_converged",
    "nodes_list",
    "node_set_tags",
    "extract_configs",
    "system_stats",
    "activity",
    "list_labs",
    NULL,
};

LCM_PLUGIN_DESCRIPTOR = {
    LCM_PLUGIN_HEADER,
    .kind = LCM_KIND_RUNTIME,
    .name = "cml",
    .version = "0.0.1",
    .description = "runtime provider for CML 2.9"
                   " (skeleton: every operation answers not implemented)",
    .create = cml_create,
    .destroy = cml_destroy,
    .ops = &cml_ops,
    .unimplemented_ops = cml_unimplemented,
};
