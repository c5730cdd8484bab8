/* Fuzz target for the domain's event folding: the input is a sequence of lines
 * "<type> <data JSON>", folded into a fresh aggregate of every kind (as the store's rebuild
 * would with entries written by hand with redis-cli). Apply may refuse an event, but must
 * never crash, leak or corrupt state: after every accepted event the state must survive
 * fields → from_fields → fields byte for byte, else the target aborts. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "kind.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fields {
    char *names[512];
    char *values[512];
    size_t n;
    char *bytes;
    size_t len;
};

static void emit(const char *f, const char *v, void *ud)
{
    struct fields *b = ud;
    if (b->n == 512)
        abort();   /* no aggregate has this many fields */
    b->names[b->n] = strdup(f);
    b->values[b->n] = strdup(v);
    b->n++;
    size_t add = strlen(f) + strlen(v) + 2;
    b->bytes = realloc(b->bytes, b->len + add + 1);
    snprintf(b->bytes + b->len, add + 1, "%s=%s\n", f, v);
    b->len += add;
}

static void fields_free(struct fields *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->names[i]);
        free(b->values[i]);
    }
    free(b->bytes);
    memset(b, 0, sizeof *b);
}

static void index_sink(const struct lcm_index_entry *e, void *ud)
{
    (void)ud;
    if (!e->key || strncmp(e->key, "lcm:idx:", 8))
        abort();
}

static void check_roundtrip(const struct lcm_kind *k, const void *state)
{
    struct fields a = {0}, b = {0};
    k->fields(state, emit, &a);
    char ver[32];
    snprintf(ver, sizeof ver, "%llu", (unsigned long long)k->version(state));
    emit("version", ver, &a);
    void *copy = k->create("fz");
    char err[256];
    if (k->from_fields(copy, (const char *const *)a.names, (const char *const *)a.values, a.n,
                       err, sizeof err)) {
        fprintf(stderr, "from_fields refused its own fields (%s): %s\n", k->name, err);
        abort();
    }
    k->fields(copy, emit, &b);
    emit("version", ver, &b);
    if (a.len != b.len || memcmp(a.bytes, b.bytes, a.len)) {
        fprintf(stderr, "%s fields differ after round trip:\n%s\n---\n%s\n", k->name, a.bytes,
                b.bytes);
        abort();
    }
    k->indexes(state, index_sink, NULL);
    cJSON_Delete(k->to_json(state));
    k->destroy(copy);
    fields_free(&a);
    fields_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    for (size_t ki = 0; lcm_kinds[ki]; ki++) {
        const struct lcm_kind *k = lcm_kinds[ki];
        void *state = k->create("fz");
        int64_t tick = 0;
        const char *p = buf, *end = buf + size;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *le = nl ? nl : end;
            const char *sp = memchr(p, ' ', (size_t)(le - p));
            if (sp && sp > p && sp - p < 64) {
                char type[64];
                memcpy(type, p, (size_t)(sp - p));
                type[sp - p] = '\0';
                cJSON *d = cJSON_ParseWithLength(sp + 1, (size_t)(le - sp - 1));
                char at[32];
                snprintf(at, sizeof at, "2025-11-27T10:%02lld:%02lldZ", (long long)(tick / 60 % 60),
                         (long long)(tick % 60));
                tick++;
                struct lcm_event ev = {.type = type, .version = 0, .at = at, .by = "fuzz",
                                       .data = d};
                char err[256];
                uint64_t before = k->version(state);
                int rc = k->apply(state, &ev, err, sizeof err);
                if (getenv("FUZZ_VERBOSE") && !strncmp(type, k->name, strlen(k->name)))
                    fprintf(stderr, "  %s: %s\n", type, rc ? err : "ok");
                if (rc == 0) {
                    if (k->version(state) != before + 1)
                        abort();
                    check_roundtrip(k, state);
                } else if (k->version(state) != before) {
                    abort();   /* a refused event must leave the version alone */
                }
                cJSON_Delete(d);
            }
            p = le + 1;
        }
        k->destroy(state);
    }
    free(buf);
    return 0;
}
