/* Tables and key/value listings for lcmctl's default (human) output; `-o json` bypasses
 * this and prints the API's JSON unchanged. */
#include "out.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

const cJSON *lcmctl_path(const cJSON *o, const char *path)
{
    char seg[128];
    const char *p = path;
    while (o && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof(seg))
            return NULL;
        memcpy(seg, p, n);
        seg[n] = 0;
        o = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, seg) : NULL;
        p += n + (dot ? 1 : 0);
    }
    return o;
}

static char *scalar_text(const cJSON *v)
{
    char buf[64];
    if (!v || cJSON_IsNull(v))
        return strdup("-");
    if (cJSON_IsString(v))
        return strdup(v->valuestring[0] ? v->valuestring : "-");
    if (cJSON_IsBool(v))
        return strdup(cJSON_IsTrue(v) ? "yes" : "no");
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == (double)(long long)d && d < 1e15 && d > -1e15)
            snprintf(buf, sizeof(buf), "%lld", (long long)d);
        else
            snprintf(buf, sizeof(buf), "%.4g", d);
        return strdup(buf);
    }
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0)
        return strdup("-");
    if (cJSON_IsArray(v)) {
        /* arrays of scalars read best comma-joined */
        int all_scalar = 1;
        size_t len = 1;
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            if (cJSON_IsObject(e) || cJSON_IsArray(e))
                all_scalar = 0;
        }
        if (all_scalar) {
            char *out = calloc(1, 1);
            cJSON_ArrayForEach(e, v) {
                char *t = scalar_text(e);
                size_t tl = t ? strlen(t) : 0;
                char *n = out ? realloc(out, len + tl + 2) : NULL;
                if (!n) {
                    free(t);
                    free(out);
                    return NULL;
                }
                out = n;
                if (len > 1)
                    strcat(out, ",");
                strcat(out, t);
                len += tl + 1;
                free(t);
            }
            return out;
        }
    }
    return cJSON_PrintUnformatted(v);
}

char *lcmctl_cell(const cJSON *item, const char *path)
{
    if (path[0] == '#') {
        const cJSON *a = lcmctl_path(item, path + 1);
        char buf[32];
        snprintf(buf, sizeof(buf), "%d", cJSON_IsArray(a) ? cJSON_GetArraySize(a) : 0);
        return strdup(buf);
    }
    const char *slash = strchr(path, '/');
    if (slash) {
        char left[128];
        size_t n = (size_t)(slash - path);
        if (n >= sizeof(left))
            return strdup("-");
        memcpy(left, path, n);
        left[n] = 0;
        char *a = scalar_text(lcmctl_path(item, left));
        char *b = scalar_text(lcmctl_path(item, slash + 1));
        char *out = NULL;
        if (a && b && (out = malloc(strlen(a) + strlen(b) + 2)))
            sprintf(out, "%s/%s", a, b);
        free(a);
        free(b);
        return out;
    }
    return scalar_text(lcmctl_path(item, path));
}

/* Display width in columns: count UTF-8 lead bytes, not continuation bytes. */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

static void cut(char *s, size_t max)
{
    if (width(s) <= max)
        return;
    size_t w = 0;
    char *p = s;
    for (; *p; p++) {
        if (((unsigned char)*p & 0xC0) != 0x80 && ++w > max - 1)
            break;
    }
    strcpy(p, "\xe2\x80\xa6");   /* the 3 bytes fit: at least one character was dropped */
}

void lcmctl_table(FILE *f, const cJSON *items, const struct lcmctl_col *cols, size_t ncols, int wide)
{
    int n = cJSON_IsArray(items) ? cJSON_GetArraySize(items) : 0;
    if (n == 0) {
        fputs("(none)\n", f);
        return;
    }
    char **cells = calloc((size_t)n * ncols, sizeof(char *));
    size_t *w = calloc(ncols, sizeof(size_t));
    if (!cells || !w) {
        free(cells);
        free(w);
        return;
    }
    for (size_t c = 0; c < ncols; c++)
        w[c] = width(cols[c].head);
    int r = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, items) {
        for (size_t c = 0; c < ncols; c++) {
            char *s = lcmctl_cell(it, cols[c].path);
            if (s && !wide)
                cut(s, 60);
            cells[(size_t)r * ncols + c] = s;
            size_t sw = s ? width(s) : 0;
            if (sw > w[c])
                w[c] = sw;
        }
        r++;
    }
    for (size_t c = 0; c < ncols; c++)
        fprintf(f, "%-*s%s", c + 1 < ncols ? (int)w[c] : 0, cols[c].head, c + 1 < ncols ? "  " : "\n");
    for (int i = 0; i < n; i++) {
        for (size_t c = 0; c < ncols; c++) {
            const char *s = cells[(size_t)i * ncols + c] ? cells[(size_t)i * ncols + c] : "?";
            if (c + 1 < ncols) {
                fputs(s, f);
                for (size_t k = width(s); k < w[c] + 2; k++)
                    fputc(' ', f);
            } else {
                fprintf(f, "%s\n", s);
            }
        }
    }
    for (size_t k = 0; k < (size_t)n * ncols; k++)
        free(cells[k]);
    free(cells);
    free(w);
}

static void kv_rec(FILE *f, const cJSON *v, char *prefix, size_t cap)
{
    size_t plen = strlen(prefix);
    if (cJSON_IsObject(v) && v->child) {
        const cJSON *c;
        cJSON_ArrayForEach(c, v) {
            snprintf(prefix + plen, cap - plen, "%s%s", plen ? "." : "", c->string);
            kv_rec(f, c, prefix, cap);
            prefix[plen] = 0;
        }
        return;
    }
    if (cJSON_IsArray(v) && v->child && (cJSON_IsObject(v->child) || cJSON_IsArray(v->child))) {
        int i = 0;
        const cJSON *c;
        cJSON_ArrayForEach(c, v) {
            snprintf(prefix + plen, cap - plen, "[%d]", i++);
            kv_rec(f, c, prefix, cap);
            prefix[plen] = 0;
        }
        return;
    }
    char *s = cJSON_IsObject(v) ? strdup("{}") : scalar_text(v);
    fprintf(f, "%s: %s\n", plen ? prefix : "value", s ? s : "?");
    free(s);
}

void lcmctl_kv(FILE *f, const cJSON *o)
{
    char prefix[1024] = "";
    kv_rec(f, o, prefix, sizeof(prefix));
}
