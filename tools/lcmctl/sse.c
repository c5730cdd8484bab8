/* text/event-stream parser used by `lcmctl events watch`: line splitting on CR, LF or CRLF
 * (also when a CRLF is split across reads), field rules and dispatch per the WHATWG spec. */
#include "sse.h"

#include <stdlib.h>
#include <string.h>

#define SSE_MAX_LINE (4u << 20)

void lcmctl_sse_init(struct lcmctl_sse *p, lcmctl_sse_cb cb, void *ud)
{
    memset(p, 0, sizeof(*p));
    p->cb = cb;
    p->ud = ud;
    p->retry_ms = -1;
}

static int grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    if (need > SSE_MAX_LINE + 1)
        return -1;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    char *b = realloc(*buf, c);
    if (!b)
        return -1;
    *buf = b;
    *cap = c;
    return 0;
}

static int dispatch(struct lcmctl_sse *p)
{
    int rc = 0;
    if (p->has_data) {
        /* the spec strips the one trailing LF added after the last data line */
        if (p->data_len && p->data[p->data_len - 1] == '\n')
            p->data_len--;
        p->data[p->data_len] = 0;
        struct lcmctl_sse_event ev = {
            .id = p->id, .event = p->event[0] ? p->event : "message", .data = p->data,
            .retry_ms = p->retry_ms,
        };
        memcpy(p->last_id, p->id, sizeof(p->last_id));
        rc = p->cb ? p->cb(&ev, p->ud) : 0;
    }
    p->data_len = 0;
    p->has_data = 0;
    p->event[0] = 0;
    return rc;
}

static int field(struct lcmctl_sse *p, const char *line, size_t len)
{
    if (len == 0)
        return dispatch(p);
    if (line[0] == ':')
        return 0;   /* comment (keep-alive) */
    const char *colon = memchr(line, ':', len);
    size_t nlen = colon ? (size_t)(colon - line) : len;
    const char *val = colon ? colon + 1 : line + len;
    size_t vlen = colon ? len - nlen - 1 : 0;
    if (vlen && *val == ' ') {
        val++;
        vlen--;
    }
    if (nlen == 4 && !memcmp(line, "data", 4)) {
        if (grow(&p->data, &p->data_cap, p->data_len + vlen + 2) < 0)
            return -1;
        memcpy(p->data + p->data_len, val, vlen);
        p->data_len += vlen;
        p->data[p->data_len++] = '\n';
        p->has_data = 1;
    } else if (nlen == 5 && !memcmp(line, "event", 5)) {
        size_t k = vlen < sizeof(p->event) - 1 ? vlen : sizeof(p->event) - 1;
        memcpy(p->event, val, k);
        p->event[k] = 0;
    } else if (nlen == 2 && !memcmp(line, "id", 2)) {
        if (!memchr(val, 0, vlen)) {   /* ids with NUL are ignored */
            size_t k = vlen < sizeof(p->id) - 1 ? vlen : sizeof(p->id) - 1;
            memcpy(p->id, val, k);
            p->id[k] = 0;
        }
    } else if (nlen == 5 && !memcmp(line, "retry", 5)) {
        long v = 0;
        size_t i;
        for (i = 0; i < vlen && val[i] >= '0' && val[i] <= '9' && v < 100000000; i++)
            v = v * 10 + (val[i] - '0');
        if (vlen && i == vlen)
            p->retry_ms = v;
    }
    return 0;   /* unknown fields are ignored */
}

int lcmctl_sse_feed(struct lcmctl_sse *p, const char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = buf[i];
        if (p->skip_lf) {
            p->skip_lf = 0;
            if (c == '\n')
                continue;
        }
        if (c == '\r' || c == '\n') {
            p->skip_lf = c == '\r';
            int rc = field(p, p->line ? p->line : "", p->line_len);
            p->line_len = 0;
            if (rc)
                return rc;
            continue;
        }
        if (grow(&p->line, &p->line_cap, p->line_len + 2) < 0)
            return -1;
        p->line[p->line_len++] = c;
    }
    return 0;
}

void lcmctl_sse_reset(struct lcmctl_sse *p)
{
    p->line_len = 0;
    p->data_len = 0;
    p->has_data = 0;
    p->event[0] = 0;
    p->skip_lf = 0;
    memcpy(p->id, p->last_id, sizeof(p->id));
}

void lcmctl_sse_free(struct lcmctl_sse *p)
{
    free(p->line);
    free(p->data);
    p->line = p->data = NULL;
    p->line_cap = p->data_cap = 0;
}
