/* Resolution of a worker's CML base URL: the call's endpoint, or a template with the
 * placeholders {instance_id}, {worker_id}, {private_ip} (pure, unit-tested). */
#ifndef LCM_CML_ENDPOINT_H
#define LCM_CML_ENDPOINT_H

#include <stddef.h>

#define CML_DEFAULT_TEMPLATE "https://{private_ip}"

/* Expands tmpl into out (no trailing '/'). A placeholder whose value is NULL or empty, or an
 * unknown {placeholder}, is an error. Values are checked to be URL-safe (no '/', '?', '#',
 * '@', spaces or controls) so a crafted id cannot redirect the call. Returns 0 or -1 with
 * err filled. */
int cml_endpoint_expand(const char *tmpl, const char *instance_id, const char *worker_id,
                        const char *private_ip, char *out, size_t cap, char *err,
                        size_t errlen);

/* The base URL for a call:
 *   - override_tmpl (LCM_CML_ENDPOINT or the endpoint_template key) set: expand it; a full-URL
 *     call endpoint then only contributes its host as {private_ip};
 *   - otherwise a call endpoint with "://" is used as given;
 *   - otherwise CML_DEFAULT_TEMPLATE with the call endpoint (a bare host/IP) as {private_ip}.
 * Returns 0 or -1 with err filled. */
int cml_endpoint_resolve(const char *override_tmpl, const char *call_endpoint,
                         const char *instance_id, const char *worker_id, char *out, size_t cap,
                         char *err, size_t errlen);

#endif
