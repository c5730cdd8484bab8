/* Helpers shared by the domain unit tests: a fixed clock, event folding, hash-field capture
 * and small builders for aggregates in a given state. */
#ifndef DOMAIN_TESTUTIL_H
#define DOMAIN_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "derr.h"
#include "events.h"
#include "kind.h"

#define T0 1764237600   /* 2025-11-27T10:00:00Z */

/* Folds evs into state; fails the test when apply refuses. */
static inline void fold(const struct lcm_kind *k, void *state, struct lcm_events *evs)
{
    char err[256] = "";
    int rc = lcm_events_apply(k, state, evs, err, sizeof err);
    if (rc)
        fail_msg("apply refused: %s", err);
    lcm_events_clear(evs);
}

struct fieldbuf {
    char *names[256];
    char *values[256];
    size_t n;
    char *bytes;        /* "name=value\n"… */
    size_t len;
};

static inline void fb_emit(const char *f, const char *v, void *ud)
{
    struct fieldbuf *b = ud;
    assert_true(b->n < 256);
    b->names[b->n] = strdup(f);
    b->values[b->n] = strdup(v);
    b->n++;
    size_t add = strlen(f) + strlen(v) + 2;
    b->bytes = realloc(b->bytes, b->len + add + 1);
    sprintf(b->bytes + b->len, "%s=%s\n", f, v);
    b->len += add;
}

static inline void fb_free(struct fieldbuf *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->names[i]);
        free(b->values[i]);
    }
    free(b->bytes);
    memset(b, 0, sizeof *b);
}

static inline const char *fb_get(const struct fieldbuf *b, const char *name)
{
    for (size_t i = 0; i < b->n; i++)
        if (!strcmp(b->names[i], name))
            return b->values[i];
    return NULL;
}

/* Index memberships as text ("key sorted score unique\n"…), for byte comparisons. */
static inline void ib_emit(const struct lcm_index_entry *e, void *ud)
{
    struct fieldbuf *b = ud;
    char v[64];
    snprintf(v, sizeof v, "%d %.17g %d", e->sorted, e->score, e->unique);
    fb_emit(e->key, v, b);
}

/* The kind's clone (when it has one) emits the same hash fields, index memberships and JSON
 * as the original, byte for byte, with the same version. */
static inline void assert_clone(const struct lcm_kind *k, const void *state)
{
    if (!k->clone)
        return;
    void *c = k->clone(state);
    assert_non_null(c);
    assert_int_equal(k->version(c), k->version(state));
    struct fieldbuf a = {0}, b = {0};
    k->fields(state, fb_emit, &a);
    k->fields(c, fb_emit, &b);
    assert_int_equal(a.n, b.n);
    assert_int_equal(a.len, b.len);
    if (a.len)
        assert_memory_equal(a.bytes, b.bytes, a.len);
    fb_free(&a);
    fb_free(&b);
    k->indexes(state, ib_emit, &a);
    k->indexes(c, ib_emit, &b);
    assert_int_equal(a.len, b.len);
    if (a.len)
        assert_memory_equal(a.bytes, b.bytes, a.len);
    fb_free(&a);
    fb_free(&b);
    cJSON *j1 = k->to_json(state), *j2 = k->to_json(c);
    char *s1 = cJSON_PrintUnformatted(j1), *s2 = cJSON_PrintUnformatted(j2);
    assert_string_equal(s1, s2);
    cJSON_free(s1);
    cJSON_free(s2);
    cJSON_Delete(j1);
    cJSON_Delete(j2);
    k->destroy(c);
}

/* fields → from_fields (into a fresh state) → fields must give identical bytes; also the
 * store's "version" field is honoured, and clone agrees (assert_clone). Returns nothing;
 * fails the test otherwise. */
static inline void assert_roundtrip(const struct lcm_kind *k, const void *state, const char *id)
{
    assert_clone(k, state);
    struct fieldbuf a = {0}, b = {0};
    k->fields(state, fb_emit, &a);
    assert_true(a.n > 0);
    char ver[32];
    snprintf(ver, sizeof ver, "%llu", (unsigned long long)k->version(state));
    a.names[a.n] = strdup("version");
    a.values[a.n] = strdup(ver);
    a.n++;
    void *copy = k->create(id);
    char err[256] = "";
    if (k->from_fields(copy, (const char *const *)a.names, (const char *const *)a.values, a.n,
                       err, sizeof err))
        fail_msg("from_fields refused: %s", err);
    assert_int_equal(k->version(copy), k->version(state));
    k->fields(copy, fb_emit, &b);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.bytes, b.bytes, a.len);
    /* and to_json agrees */
    cJSON *j1 = k->to_json(state), *j2 = k->to_json(copy);
    char *s1 = cJSON_PrintUnformatted(j1), *s2 = cJSON_PrintUnformatted(j2);
    assert_string_equal(s1, s2);
    cJSON_free(s1);
    cJSON_free(s2);
    cJSON_Delete(j1);
    cJSON_Delete(j2);
    k->destroy(copy);
    fb_free(&a);
    fb_free(&b);
}

static inline char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    fclose(f);
    return s;
}

#endif
