/* Tolerant JSON reading and deterministic JSON writing for the domain's aggregates. The
 * hash-field mapping lives here once so that every kind gets fields()/from_fields() that
 * round-trip byte for byte. */
#include "jsonx.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "derr.h"
#include "rfc3339.h"

char *lcm_dup(const char *s)
{
    return (s && *s) ? strdup(s) : NULL;
}

int lcm_set_str(char **dst, const char *s)
{
    char *c = NULL;
    if (s && *s && !(c = strdup(s)))
        return -1;
    free(*dst);
    *dst = c;
    return 0;
}

static const cJSON *member(const cJSON *o, const char *k)
{
    if (!o || !cJSON_IsObject(o))
        return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

int lcm_jx_str(const cJSON *o, const char *k, const char **v)
{
    const cJSON *m = member(o, k);
    *v = NULL;
    if (!m)
        return 0;
    if (!cJSON_IsString(m))
        return -1;
    *v = m->valuestring;
    return **v ? 1 : 0;
}

static int parse_i64(const char *s, int64_t *v)
{
    if (!s || !*s)
        return -1;
    char *end;
    long long x = strtoll(s, &end, 10);
    if (*end != '\0' || end == s)
        return -1;
    *v = x;
    return 0;
}

int lcm_jx_i64(const cJSON *o, const char *k, int64_t *v)
{
    const cJSON *m = member(o, k);
    if (!m)
        return 0;
    if (cJSON_IsNumber(m)) {
        double d = m->valuedouble;
        if (!isfinite(d) || d != floor(d) || d > 9.0e15 || d < -9.0e15)
            return -1;
        *v = (int64_t)d;
        return 1;
    }
    if (cJSON_IsString(m) && parse_i64(m->valuestring, v) == 0)
        return 1;
    return -1;
}

int lcm_jx_num(const cJSON *o, const char *k, double *v)
{
    const cJSON *m = member(o, k);
    if (!m)
        return 0;
    if (cJSON_IsNumber(m) && isfinite(m->valuedouble)) {
        *v = m->valuedouble;
        return 1;
    }
    if (cJSON_IsString(m)) {
        char *end;
        double d = strtod(m->valuestring, &end);
        if (end != m->valuestring && *end == '\0' && isfinite(d)) {
            *v = d;
            return 1;
        }
    }
    return -1;
}

int lcm_jx_bool(const cJSON *o, const char *k, int *v)
{
    const cJSON *m = member(o, k);
    if (!m)
        return 0;
    if (cJSON_IsBool(m)) {
        *v = cJSON_IsTrue(m) ? 1 : 0;
        return 1;
    }
    if (cJSON_IsString(m)) {
        if (!strcmp(m->valuestring, "true")) {
            *v = 1;
            return 1;
        }
        if (!strcmp(m->valuestring, "false")) {
            *v = 0;
            return 1;
        }
    }
    return -1;
}

int lcm_jx_time(const cJSON *o, const char *k, int64_t *v)
{
    const cJSON *m = member(o, k);
    *v = 0;
    if (!m)
        return 0;
    if (!cJSON_IsString(m) || lcm_rfc3339_parse(m->valuestring, v))
        return -1;
    return 1;
}

int lcm_jx_nested(const cJSON *o, const char *k, const cJSON **v, cJSON **tmp)
{
    const cJSON *m = member(o, k);
    *v = NULL;
    *tmp = NULL;
    if (!m)
        return 0;
    if (cJSON_IsObject(m) || cJSON_IsArray(m)) {
        *v = m;
        return 1;
    }
    if (cJSON_IsString(m)) {
        cJSON *p = cJSON_Parse(m->valuestring);
        if (p && (cJSON_IsObject(p) || cJSON_IsArray(p))) {
            *tmp = p;
            *v = p;
            return 1;
        }
        cJSON_Delete(p);
    }
    return -1;
}

int lcm_jx_put_str(cJSON *o, const char *k, const char *v)
{
    cJSON *it = (v && *v) ? cJSON_CreateString(v) : cJSON_CreateNull();
    return (it && cJSON_AddItemToObject(o, k, it)) ? 0 : (cJSON_Delete(it), -1);
}

int lcm_jx_put_time(cJSON *o, const char *k, int64_t t)
{
    char buf[LCM_TIME_BUFSZ];
    if (t == 0 || lcm_rfc3339_format(t, buf, sizeof buf))
        return lcm_jx_put_str(o, k, NULL);
    return lcm_jx_put_str(o, k, buf);
}

int lcm_jx_put_i64(cJSON *o, const char *k, int64_t v)
{
    return cJSON_AddNumberToObject(o, k, (double)v) ? 0 : -1;
}

int lcm_jx_put_bool(cJSON *o, const char *k, int v)
{
    return cJSON_AddBoolToObject(o, k, v ? 1 : 0) ? 0 : -1;
}

int lcm_text_ok(const char *s, size_t maxlen, int allow_space)
{
    if (!s || !*s)
        return 0;
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++) {
        if (*p < 0x20 || *p == 0x7f)
            return 0;
        if (*p == ' ' && !allow_space)
            return 0;
    }
    return n <= maxlen;
}

int lcm_clone_str(char **p)
{
    if (*p && !(*p = strdup(*p)))
        return -1;
    return 0;
}

int lcm_clone_strs(char **const *strs, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        rc |= lcm_clone_str(strs[i]);
    return rc;
}

int lcm_clone_strv(char ***v, uint16_t *n)
{
    if (!*v)
        return 0;
    char **src = *v, **dst = malloc((*n ? *n : 1) * sizeof *dst);
    *v = dst;
    if (!dst) {
        *n = 0;
        return -1;
    }
    int rc = 0;
    for (uint16_t i = 0; i < *n; i++) {
        dst[i] = src[i];
        rc |= lcm_clone_str(&dst[i]);
    }
    return rc;
}

void lcm_strv_free(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

int lcm_strv_from_json(const cJSON *arr, size_t maxn, size_t maxlen, char ***out,
                       uint16_t *n, int *bad_index)
{
    *out = NULL;
    *n = 0;
    *bad_index = -1;
    if (!cJSON_IsArray(arr))
        return -1;
    int cnt = cJSON_GetArraySize(arr);
    if (cnt < 0 || (size_t)cnt > maxn)
        return -1;
    if (cnt == 0)
        return 0;
    char **v = calloc((size_t)cnt, sizeof *v);
    if (!v)
        return -1;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsString(it) || !lcm_text_ok(it->valuestring, maxlen, 1) ||
            !(v[i] = strdup(it->valuestring))) {
            *bad_index = i;
            lcm_strv_free(v, (size_t)cnt);
            return -1;
        }
        i++;
    }
    *out = v;
    *n = (uint16_t)cnt;
    return 0;
}

cJSON *lcm_strv_to_json(char *const *v, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) {
        cJSON *s = cJSON_CreateString(v[i]);
        if (!s || !cJSON_AddItemToArray(a, s)) {
            cJSON_Delete(s);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

static const char *renamed(const char *const *rename, const char *key, int to_field)
{
    for (size_t i = 0; rename && rename[i]; i += 2)
        if (!strcmp(rename[i + (to_field ? 0 : 1)], key))
            return rename[i + (to_field ? 1 : 0)];
    return key;
}

/* ---- compact JSON text, byte for byte what cJSON_PrintUnformatted gives ----------------
 * Hash fields are written on every commit, and cJSON formats every number with sprintf +
 * sscanf + sprintf: most of the cost of fields(). Small integers (the usual numbers of the
 * states) and strings are formatted here; any other number goes through cJSON itself, so
 * the text cannot drift from what earlier versions wrote (test_domain_json compares both). */
struct jbuf {
    char *p;
    size_t n, cap;
    int bad;
};

static void jb_put(struct jbuf *b, const char *s, size_t n)
{
    if (b->bad)
        return;
    if (b->cap - b->n < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->bad = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void jb_string(struct jbuf *b, const char *s)
{
    if (!s) {
        jb_put(b, "\"\"", 2);
        return;
    }
    jb_put(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)s, *run = p;
    for (; *p; p++) {
        unsigned char c = *p;
        if (c > 31 && c != '"' && c != '\\')
            continue;
        jb_put(b, (const char *)run, (size_t)(p - run));
        run = p + 1;
        char esc[8];
        switch (c) {
        case '"': jb_put(b, "\\\"", 2); break;
        case '\\': jb_put(b, "\\\\", 2); break;
        case '\b': jb_put(b, "\\b", 2); break;
        case '\f': jb_put(b, "\\f", 2); break;
        case '\n': jb_put(b, "\\n", 2); break;
        case '\r': jb_put(b, "\\r", 2); break;
        case '\t': jb_put(b, "\\t", 2); break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", c);
            jb_put(b, esc, 6);
        }
    }
    jb_put(b, (const char *)run, (size_t)(p - run));
    jb_put(b, "\"", 1);
}

static void jb_number(struct jbuf *b, const cJSON *it)
{
    double d = it->valuedouble;
    /* An integer in int range (not -0): "%d" and "%1.15g" agree, so every cJSON version
     * prints its plain decimal digits. */
    if (d >= -2147483647.0 && d <= 2147483647.0 && d == (double)(long)d &&
        !(d == 0 && signbit(d))) {
        char tmp[24], *q = tmp + sizeof tmp;
        long v = (long)d;
        unsigned long u = v < 0 ? (unsigned long)-v : (unsigned long)v;
        do {
            *--q = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        if (v < 0)
            *--q = '-';
        jb_put(b, q, (size_t)(tmp + sizeof tmp - q));
        return;
    }
    char *s = cJSON_PrintUnformatted(it);
    if (!s) {
        b->bad = 1;
        return;
    }
    jb_put(b, s, strlen(s));
    cJSON_free(s);
}

static void jb_value(struct jbuf *b, const cJSON *it)
{
    const cJSON *c;
    switch (it->type & 0xff) {
    case cJSON_NULL: jb_put(b, "null", 4); break;
    case cJSON_False: jb_put(b, "false", 5); break;
    case cJSON_True: jb_put(b, "true", 4); break;
    case cJSON_Number: jb_number(b, it); break;
    case cJSON_String: jb_string(b, it->valuestring); break;
    case cJSON_Raw:
        if (!it->valuestring)
            b->bad = 1;
        else
            jb_put(b, it->valuestring, strlen(it->valuestring));
        break;
    case cJSON_Array:
        jb_put(b, "[", 1);
        for (c = it->child; c && !b->bad; c = c->next) {
            jb_value(b, c);
            if (c->next)
                jb_put(b, ",", 1);
        }
        jb_put(b, "]", 1);
        break;
    case cJSON_Object:
        jb_put(b, "{", 1);
        for (c = it->child; c && !b->bad; c = c->next) {
            jb_string(b, c->string);
            jb_put(b, ":", 1);
            jb_value(b, c);
            if (c->next)
                jb_put(b, ",", 1);
        }
        jb_put(b, "}", 1);
        break;
    default:
        b->bad = 1;
    }
}

char *lcm_jx_print(const cJSON *item)
{
    struct jbuf b = {0};
    jb_value(&b, item);
    if (b.bad) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

void lcm_jx_emit_fields(const cJSON *obj, const char *const *rename, lcm_field_emit_fn emit,
                        void *ud)
{
    const cJSON *it;
    struct jbuf b = {0};   /* reused by every member */
    cJSON_ArrayForEach(it, obj) {
        if (cJSON_IsNull(it) || !it->string)
            continue;
        const char *field = renamed(rename, it->string, 1);
        if (cJSON_IsString(it)) {
            emit(field, it->valuestring, ud);
            continue;
        }
        b.n = 0;
        b.bad = 0;
        jb_value(&b, it);
        if (!b.bad && b.p) {
            emit(field, b.p, ud);
            continue;
        }
        char *s = cJSON_PrintUnformatted(it);
        if (s) {
            emit(field, s, ud);
            cJSON_free(s);
        }
    }
    free(b.p);
}

cJSON *lcm_jx_from_fields(const char *const *fields, const char *const *values, size_t n,
                          const char *const *rename, uint64_t *version)
{
    cJSON *o = cJSON_CreateObject();
    *version = 0;
    for (size_t i = 0; o && i < n; i++) {
        if (!fields[i] || !values[i])
            continue;
        if (!strcmp(fields[i], "version")) {
            int64_t v;
            if (parse_i64(values[i], &v) == 0 && v >= 0)
                *version = (uint64_t)v;
            continue;
        }
        const char *key = renamed(rename, fields[i], 0);
        cJSON_DeleteItemFromObjectCaseSensitive(o, key);
        cJSON *s = cJSON_CreateString(values[i]);
        if (!s || !cJSON_AddItemToObject(o, key, s)) {
            cJSON_Delete(s);
            cJSON_Delete(o);
            return NULL;
        }
    }
    return o;
}

void lcm_errf(char *buf, size_t len, const char *fmt, ...)
{
    if (!buf || !len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

/* Validating getters: fill dst when present, return 0 (get_flag/get_strv: 1 when present)
 * or a negative LCM_DERR_* with err naming field. */
int lcm_get_text(const cJSON *o, const char *k, const char *field, int required,
                    size_t maxlen, int allow_space, char **dst, struct lcm_derr *err)
{
    const char *v;
    int r = lcm_jx_str(o, k, &v);
    if (r < 0)
        return lcm_derr_set(err, LCM_DERR_INVALID, field, "%s must be a string", field);
    if (r == 0) {
        if (required)
            return lcm_derr_set(err, LCM_DERR_INVALID, field, "%s is required", field);
        return 0;
    }
    if (!lcm_text_ok(v, maxlen, allow_space))
        return lcm_derr_set(err, LCM_DERR_INVALID, field,
                            "%s must be at most %zu printable characters", field, maxlen);
    if (lcm_set_str(dst, v))
        return lcm_derr_set(err, LCM_DERR_NOMEM, field, "out of memory");
    return 0;
}

int lcm_get_int(const cJSON *o, const char *k, const char *field, int required,
                   int64_t lo, int64_t hi, int32_t *dst, struct lcm_derr *err)
{
    int64_t v;
    int r = lcm_jx_i64(o, k, &v);
    if (r < 0 || (r == 1 && (v < lo || v > hi)))
        return lcm_derr_set(err, LCM_DERR_INVALID, field,
                            "%s must be an integer in [%lld, %lld]", field, (long long)lo,
                            (long long)hi);
    if (r == 0 && required)
        return lcm_derr_set(err, LCM_DERR_INVALID, field, "%s is required", field);
    if (r == 1)
        *dst = (int32_t)v;
    return 0;
}

int lcm_get_flag(const cJSON *o, const char *k, const char *field, uint8_t *dst,
                    struct lcm_derr *err)
{
    int v;
    int r = lcm_jx_bool(o, k, &v);
    if (r < 0)
        return lcm_derr_set(err, LCM_DERR_INVALID, field, "%s must be a boolean", field);
    if (r == 1)
        *dst = (uint8_t)v;
    return r;
}

int lcm_get_strv(const cJSON *o, const char *k, const char *field, char ***v, uint16_t *n,
                    struct lcm_derr *err)
{
    const cJSON *a;
    cJSON *tmp;
    int r = lcm_jx_nested(o, k, &a, &tmp);
    if (r == 0)
        return 0;
    int bad;
    char **nv;
    uint16_t nn;
    if (r < 0 || lcm_strv_from_json(a, 512, 256, &nv, &nn, &bad)) {
        cJSON_Delete(tmp);
        if (r > 0 && bad >= 0)
            return lcm_derr_set(err, LCM_DERR_INVALID, field, "%s[%d] must be a string",
                                field, bad);
        return lcm_derr_set(err, LCM_DERR_INVALID, field,
                            "%s must be an array of at most %d strings", field, 512);
    }
    cJSON_Delete(tmp);
    lcm_strv_free(*v, *n);
    *v = nv;
    *n = nn;
    return 1;
}

