/* Fuzz target for CloudEvents decoding (host/net/ce_parse.c). The first byte picks the mode:
 * '0' structured, '1' batch, '2' binary (then "name: value" header lines, a blank line, the
 * body), anything else content-type detection. Invariants: a success yields events with
 * specversion 1.0 and non-empty id/source/type that re-validate after a print/parse round
 * trip; a failure yields 400/413/415 and an empty list. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ce_parse.h"

#define MAX_HDRS 16

struct hdrs {
    char *name[MAX_HDRS], *value[MAX_HDRS];
    int n;
};

static const char *get(void *ud, const char *name)
{
    struct hdrs *h = ud;
    for (int i = 0; i < h->n; i++)
        if (!strcasecmp(h->name[i], name))
            return h->value[i];
    return NULL;
}

static void check_list(const struct lcm_ce_list *l, int rc, const struct lcm_ce_err *e)
{
    if (rc < 0) {
        if ((e->status != 400 && e->status != 413 && e->status != 415) || l->n || l->v)
            abort();
        return;
    }
    for (size_t i = 0; i < l->n; i++) {
        const struct lcm_ce *ev = &l->v[i];
        if (!ev->obj || !ev->id || !*ev->id || !ev->source || !*ev->source || !ev->type || !*ev->type)
            abort();
        const cJSON *sv = cJSON_GetObjectItemCaseSensitive(ev->obj, "specversion");
        if (!cJSON_IsString(sv) || strcmp(sv->valuestring, "1.0"))
            abort();
        char *text = cJSON_PrintUnformatted(ev->obj);
        if (!text)
            continue;   /* allocation failure only */
        struct lcm_ce_list again;
        struct lcm_ce_err e2;
        if (lcm_ce_parse_structured(text, strlen(text), &again, &e2) < 0 || again.n != 1 ||
            strcmp(again.v[0].id, ev->id) || strcmp(again.v[0].type, ev->type))
            abort();
        lcm_ce_list_clear(&again);
        cJSON_free(text);
        char hex[65];
        lcm_ce_dedupe_hash(ev->source, ev->id, hex);
        if (strlen(hex) != 64)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 18)
        return 0;
    char *buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = 0;
    size_t len = size - 1;
    struct lcm_ce_list l;
    struct lcm_ce_err e;
    memset(&e, 0, sizeof(e));
    int rc;
    switch (data[0]) {
    case '0':
        rc = lcm_ce_parse_structured(buf, len, &l, &e);
        check_list(&l, rc, &e);
        lcm_ce_list_clear(&l);
        break;
    case '1':
        rc = lcm_ce_parse_batch(buf, len, 100, &l, &e);
        if (rc == 0 && l.n > 100)
            abort();
        check_list(&l, rc, &e);
        lcm_ce_list_clear(&l);
        break;
    case '2': {
        struct hdrs h = { .n = 0 };
        char *p = buf, *end = buf + len;
        const char *ctype = NULL;
        while (p < end) {
            char *nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl)
                nl = end;
            *nl = 0;
            if (p == nl) {   /* blank line: body follows */
                p = nl + 1;
                break;
            }
            char *colon = strchr(p, ':');
            if (colon && h.n < MAX_HDRS) {
                *colon = 0;
                h.name[h.n] = p;
                h.value[h.n] = colon + 1 + (colon[1] == ' ');
                if (!strcasecmp(p, "content-type"))
                    ctype = h.value[h.n];
                h.n++;
            }
            p = nl + 1;
        }
        size_t blen = p < end ? (size_t)(end - p) : 0;
        static const char *const ext[] = { "traceparent", "partition", NULL };
        rc = lcm_ce_parse_binary(get, &h, ext, ctype, blen ? p : NULL, blen, &l, &e);
        check_list(&l, rc, &e);
        lcm_ce_list_clear(&l);
        break;
    }
    default: {
        int m = lcm_ce_mode(buf, data[0] & 1);
        if (m != -1 && m != LCM_CE_STRUCTURED && m != LCM_CE_BATCH && m != LCM_CE_BINARY)
            abort();
        break;
    }
    }
    free(buf);
    return 0;
}
