/* CML endpoint resolution: one plugin instance serves every worker, so the base URL of each
 * call comes from the call (the worker's endpoint / ids) and an operator template, e.g.
 * http://127.0.0.1:9100/{instance_id} to put a whole fleet on one cml-sim. */
#include "cml_endpoint.h"

#include <stdio.h>
#include <string.h>

static int safe_value(const char *v)
{
    for (; *v; v++) {
        unsigned char c = (unsigned char)*v;
        if (c <= 0x20 || c >= 0x7f || strchr("/?#@\\%\"<>{}", c))
            return 0;
    }
    return 1;
}

int cml_endpoint_expand(const char *tmpl, const char *instance_id, const char *worker_id,
                        const char *private_ip, char *out, size_t cap, char *err,
                        size_t errlen)
{
    static const char *const names[] = { "instance_id", "worker_id", "private_ip" };
    const char *vals[] = { instance_id, worker_id, private_ip };
    size_t o = 0;
    if (!tmpl || !*tmpl || !out || cap == 0) {
        snprintf(err, errlen, "empty endpoint template");
        return -1;
    }
    for (const char *p = tmpl; *p;) {
        if (*p == '{') {
            const char *end = strchr(p, '}');
            size_t n = end ? (size_t)(end - p - 1) : 0;
            size_t i;
            for (i = 0; end && i < 3; i++)
                if (strlen(names[i]) == n && strncmp(p + 1, names[i], n) == 0)
                    break;
            if (!end || i == 3) {
                snprintf(err, errlen, "endpoint template: unknown placeholder at \"%.32s\"", p);
                return -1;
            }
            if (!vals[i] || !*vals[i]) {
                snprintf(err, errlen, "endpoint template needs {%s} but the call has none",
                         names[i]);
                return -1;
            }
            if (!safe_value(vals[i])) {
                snprintf(err, errlen, "endpoint template: {%s} has characters not allowed in "
                                      "a URL", names[i]);
                return -1;
            }
            size_t vl = strlen(vals[i]);
            if (o + vl >= cap)
                goto toolong;
            memcpy(out + o, vals[i], vl);
            o += vl;
            p = end + 1;
            continue;
        }
        if (o + 1 >= cap)
            goto toolong;
        out[o++] = *p++;
    }
    while (o > 0 && out[o - 1] == '/')
        o--;
    out[o] = '\0';
    if (!strstr(out, "://")) {
        snprintf(err, errlen, "endpoint \"%.64s\" is not an absolute URL", out);
        return -1;
    }
    return 0;
toolong:
    snprintf(err, errlen, "endpoint too long");
    return -1;
}

/* The host part of a URL (without userinfo or port), or the value itself when bare. */
static void host_of(const char *url, char *out, size_t cap)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    const char *at = strchr(p, '@'), *slash = strchr(p, '/');
    if (at && (!slash || at < slash))
        p = at + 1;
    size_t n = 0;
    if (*p == '[') {                     /* IPv6 literal: keep the brackets */
        const char *rb = strchr(p, ']');
        n = rb ? (size_t)(rb - p + 1) : strlen(p);
    } else {
        n = strcspn(p, ":/?#");
    }
    if (n >= cap)
        n = cap - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

int cml_endpoint_resolve(const char *override_tmpl, const char *call_endpoint,
                         const char *instance_id, const char *worker_id, char *out, size_t cap,
                         char *err, size_t errlen)
{
    char host[256] = "";
    int full = call_endpoint && strstr(call_endpoint, "://") != NULL;
    if (call_endpoint)
        host_of(call_endpoint, host, sizeof host);
    if (override_tmpl && *override_tmpl)
        return cml_endpoint_expand(override_tmpl, instance_id, worker_id, host, out, cap, err,
                                   errlen);
    if (full) {
        size_t n = strlen(call_endpoint);
        while (n > 0 && call_endpoint[n - 1] == '/')
            n--;
        if (n >= cap) {
            snprintf(err, errlen, "endpoint too long");
            return -1;
        }
        memcpy(out, call_endpoint, n);
        out[n] = '\0';
        return 0;
    }
    return cml_endpoint_expand(CML_DEFAULT_TEMPLATE, instance_id, worker_id, host, out, cap,
                               err, errlen);
}
