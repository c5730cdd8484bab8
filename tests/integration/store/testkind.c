/* The "note" test kind (see testkind.h): a map of string fields kept in a cJSON object,
 * deterministic fields() output (sorted by name) so that rebuilds compare byte for byte. */
#include "testkind.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct note {
    char *id;
    uint64_t version;
    cJSON *f;   /* object of strings, kept sorted by name */
};

static void *note_create(const char *id)
{
    struct note *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->id = strdup(id);
    n->f = cJSON_CreateObject();
    if (!n->id || !n->f) {
        free(n->id);
        cJSON_Delete(n->f);
        free(n);
        return NULL;
    }
    return n;
}

static void note_destroy(void *st)
{
    struct note *n = st;
    if (!n)
        return;
    free(n->id);
    cJSON_Delete(n->f);
    free(n);
}

static int set_field(cJSON *o, const char *name, const char *value)
{
    cJSON *v = cJSON_CreateString(value);
    if (!v)
        return -1;
    cJSON_DeleteItemFromObjectCaseSensitive(o, name);
    return cJSON_AddItemToObject(o, name, v) ? 0 : -1;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

static int note_apply(void *st, const struct lcm_event *ev, char *err, size_t errlen)
{
    struct note *n = st;
    const cJSON *it;
    if (!ev->data || !cJSON_IsObject(ev->data)) {
        snprintf(err, errlen, "data is not an object");
        return -1;
    }
    if (strcmp(ev->type, "note.set") == 0) {
        cJSON_ArrayForEach(it, ev->data) {
            if (!cJSON_IsString(it) || strcmp(it->string, "version") == 0) {
                snprintf(err, errlen, "field %s is not a string", it->string);
                return -1;
            }
        }
        cJSON_ArrayForEach(it, ev->data)
            if (set_field(n->f, it->string, it->valuestring) < 0)
                return -1;
    } else if (strcmp(ev->type, "note.unset") == 0) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(ev->data, "fields");
        if (!cJSON_IsArray(arr)) {
            snprintf(err, errlen, "fields is not an array");
            return -1;
        }
        cJSON_ArrayForEach(it, arr)
            if (cJSON_IsString(it))
                cJSON_DeleteItemFromObjectCaseSensitive(n->f, it->valuestring);
    } else {
        snprintf(err, errlen, "unknown event type %s", ev->type);
        return -1;
    }
    n->version = ev->version;
    return 0;
}

static void note_fields(const void *st, lcm_field_emit_fn emit, void *ud)
{
    /* sorted by name: the same state always gives the same bytes */
    const struct note *n = st;
    size_t count = (size_t)cJSON_GetArraySize(n->f), i = 0;
    const cJSON **v = calloc(count + 1, sizeof(*v));
    const cJSON *it;
    if (!v)
        return;
    cJSON_ArrayForEach(it, n->f)
        v[i++] = it;
    qsort(v, count, sizeof(*v), by_name);
    for (i = 0; i < count; i++)
        emit(v[i]->string, v[i]->valuestring, ud);
    free(v);
}

static void note_indexes(const void *st, lcm_index_emit_fn emit, void *ud)
{
    const struct note *n = st;
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(n->f, "status");
    const cJSON *score = cJSON_GetObjectItemCaseSensitive(n->f, "score");
    char key[200];
    if (cJSON_IsString(status)) {
        snprintf(key, sizeof(key), "lcm:idx:note:status:%s", status->valuestring);
        struct lcm_index_entry e = { key, 0, 0, 0 };
        emit(&e, ud);
    }
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(n->f, "ref");
    if (cJSON_IsString(ref)) {
        snprintf(key, sizeof(key), "lcm:idx:note:ref:%s", ref->valuestring);
        struct lcm_index_entry e = { key, 0, 0, 1 };
        emit(&e, ud);
    }
    if (cJSON_IsString(score)) {
        char *end;
        double d = strtod(score->valuestring, &end);
        if (end != score->valuestring && *end == '\0') {
            struct lcm_index_entry e = { "lcm:idx:note:score", 1, d, 0 };
            emit(&e, ud);
        }
    }
}

static cJSON *note_to_json(const void *st)
{
    const struct note *n = st;
    cJSON *o = cJSON_Duplicate(n->f, 1);
    if (o) {
        cJSON_AddStringToObject(o, "id", n->id);
        cJSON_AddNumberToObject(o, "version", (double)n->version);
    }
    return o;
}

static int note_from_fields(void *st, const char *const *fields, const char *const *values,
                            size_t count, char *err, size_t errlen)
{
    struct note *n = st;
    for (size_t i = 0; i < count; i++) {
        if (strcmp(fields[i], "version") == 0) {
            char *end;
            unsigned long long v = strtoull(values[i], &end, 10);
            if (*end || end == values[i]) {
                snprintf(err, errlen, "bad version");
                return -1;
            }
            n->version = v;
        } else if (set_field(n->f, fields[i], values[i]) < 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

static uint64_t note_version(const void *st) { return ((const struct note *)st)->version; }

const struct lcm_kind lcm_test_note_kind = {
    .name = "note",
    .create = note_create,
    .destroy = note_destroy,
    .apply = note_apply,
    .fields = note_fields,
    .indexes = note_indexes,
    .to_json = note_to_json,
    .from_fields = note_from_fields,
    .version = note_version,
};

const struct lcm_kind *const lcm_test_kinds[] = { &lcm_test_note_kind, NULL };
