/* The host-services table lcmd hands to each plugin instance (lcm_host_services in spi.h):
 * logging, clocks, one-shot timers, async HTTP, secrets, metrics and validated configuration,
 * with every timer and request tracked per plugin so shutdown can cancel them. */
#ifndef LCM_PLUGIN_HOSTSVC_H
#define LCM_PLUGIN_HOSTSVC_H

#include <stddef.h>

#include <lcm/spi.h>

struct cJSON;
struct lcm_plugin_host_ctx;

extern const struct lcm_host_services lcm_hostsvc_table;

/* A host handle for plugin d. Validates d's config schema and the configured values (ctx->config
 * and LCM_PLUGIN_<NAME>_<KEY>); returns NULL with err filled ("config: …") when they do not
 * fit. */
struct lcm_host *lcm_hostsvc_new(const struct lcm_plugin_descriptor *d,
                                 const struct lcm_plugin_host_ctx *ctx, char *err,
                                 size_t errlen);
/* No new timers/requests; pending timers are cancelled (their callbacks never run) and HTTP
 * requests cancelled and detached (the plugin's callbacks never run). */
void lcm_hostsvc_close(struct lcm_host *h);
void lcm_hostsvc_free(struct lcm_host *h);
/* Timers + HTTP requests the plugin has pending. */
size_t lcm_hostsvc_pending(const struct lcm_host *h);
/* The config schema with current values (secrets: only whether set). Caller frees. */
struct cJSON *lcm_hostsvc_config_json(const struct lcm_host *h);
const char *lcm_hostsvc_comp(const struct lcm_host *h);    /* "plugin.<name>" */

#endif
