/* The aws plugin: cloud provider for AWS EC2 and CloudWatch. Skeleton stage: it loads,
 * declares itself through the SDK descriptor and answers every operation with LCM_E_NOTIMPL
 * (listed as not implemented at GET /api/v1/plugins) until the real implementation replaces
 * this file. */
#include <lcm/spi.h>

#include <stdlib.h>

struct aws_plugin {
    const struct lcm_host_services *hs;
    struct lcm_host *h;
};

static int aws_create(const struct lcm_host_services *hs, struct lcm_host *h, void **self,
                      struct lcm_error *err)
{
    struct aws_plugin *p = calloc(1, sizeof *p);
    if (!p) {
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return LCM_E_NOMEM;
    }
    p->hs = hs;
    p->h = h;
    *self = p;
    return 0;
}

static void aws_destroy(void *self) { free(self); }

/* Refuses synchronously: done is never called, the caller sees the error at once. */
static int aws_notimpl(void *self, const struct lcm_call *call, const void *args,
                       lcm_done_fn done, void *ud, struct lcm_error *err)
{
    lcm_error_set(err, LCM_E_NOTIMPL, 0, 0, "aws plugin: operation not implemented yet");
    return LCM_E_NOTIMPL;
}

static const struct lcm_cloud_ops aws_ops = {
    .size = sizeof(struct lcm_cloud_ops),
    .launch = aws_notimpl,
    .describe = aws_notimpl,
    .start = aws_notimpl,
    .stop = aws_notimpl,
    .terminate = aws_notimpl,
    .find_image = aws_notimpl,
    .create_tags = aws_notimpl,
    .metrics = aws_notimpl,
};

static const char *const aws_unimplemented[] = {
    "launch",
    "describe",
    "start",
    "stop",
    "terminate",
    "find_image",
    "create_tags",
    "metrics",
    NULL,
};

LCM_PLUGIN_DESCRIPTOR = {
    LCM_PLUGIN_HEADER,
    .kind = LCM_KIND_CLOUD,
    .name = "aws",
    .version = "0.0.1",
    .description = "cloud provider for AWS EC2 and CloudWatch"
                   " (skeleton: every operation answers not implemented)",
    .create = aws_create,
    .destroy = aws_destroy,
    .ops = &aws_ops,
    .unimplemented_ops = aws_unimplemented,
};
