/* Prometheus registry: an open-addressing hash of series (name + labels) plus a small list
 * of families for TYPE/HELP. Rendering sorts by name so families stay contiguous. */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS 14
static const double bucket_bounds[NBUCKETS] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                0.1, 0.25, 0.5, 1, 2.5, 5, 10 };

struct series {
    char *name;
    char *labels;
    double value;                 /* counter/gauge value; histogram sum */
    unsigned long long count;     /* histogram count */
    unsigned long long buckets[NBUCKETS];
    int is_hist;
};

struct family {
    char *name;
    char *help;
    enum lcm_metric_type type;
};

struct lcm_metrics {
    struct series **slots;
    size_t cap, n;
    struct family *fams;
    size_t nfams, capfams;
};

static unsigned long hash2(const char *a, const char *b)
{
    unsigned long h = 1469598103934665603UL;
    for (; *a; a++)
        h = (h ^ (unsigned char)*a) * 1099511628211UL;
    h = (h ^ 0xff) * 1099511628211UL;
    for (; b && *b; b++)
        h = (h ^ (unsigned char)*b) * 1099511628211UL;
    return h;
}

struct lcm_metrics *lcm_metrics_new(void)
{
    struct lcm_metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->cap = 256;
    m->slots = calloc(m->cap, sizeof(*m->slots));
    if (!m->slots) {
        free(m);
        return NULL;
    }
    return m;
}

void lcm_metrics_free(struct lcm_metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i]) {
            free(m->slots[i]->name);
            free(m->slots[i]->labels);
            free(m->slots[i]);
        }
    }
    for (size_t i = 0; i < m->nfams; i++) {
        free(m->fams[i].name);
        free(m->fams[i].help);
    }
    free(m->fams);
    free(m->slots);
    free(m);
}

static struct family *find_family(const struct lcm_metrics *m, const char *name)
{
    for (size_t i = 0; i < m->nfams; i++)
        if (strcmp(m->fams[i].name, name) == 0)
            return &m->fams[i];
    return NULL;
}

void lcm_metrics_declare(struct lcm_metrics *m, const char *name, enum lcm_metric_type type,
                         const char *help)
{
    if (!m || find_family(m, name))
        return;
    if (m->nfams == m->capfams) {
        size_t nc = m->capfams ? m->capfams * 2 : 16;
        struct family *nf = realloc(m->fams, nc * sizeof(*nf));
        if (!nf)
            return;
        m->fams = nf;
        m->capfams = nc;
    }
    struct family *f = &m->fams[m->nfams];
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    if (!f->name || !f->help) {
        free(f->name);
        free(f->help);
        return;
    }
    f->type = type;
    m->nfams++;
}

static int grow(struct lcm_metrics *m)
{
    size_t nc = m->cap * 2;
    struct series **ns = calloc(nc, sizeof(*ns));
    if (!ns)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        struct series *s = m->slots[i];
        if (!s)
            continue;
        size_t j = hash2(s->name, s->labels) & (nc - 1);
        while (ns[j])
            j = (j + 1) & (nc - 1);
        ns[j] = s;
    }
    free(m->slots);
    m->slots = ns;
    m->cap = nc;
    return 0;
}

static struct series *lookup(const struct lcm_metrics *m, const char *name, const char *labels)
{
    if (!labels)
        labels = "";
    size_t i = hash2(name, labels) & (m->cap - 1);
    while (m->slots[i]) {
        struct series *s = m->slots[i];
        if (strcmp(s->name, name) == 0 && strcmp(s->labels, labels) == 0)
            return s;
        i = (i + 1) & (m->cap - 1);
    }
    return NULL;
}

static struct series *get(struct lcm_metrics *m, const char *name, const char *labels)
{
    if (!m || !name)
        return NULL;
    if (!labels)
        labels = "";
    struct series *s = lookup(m, name, labels);
    if (s)
        return s;
    if ((m->n + 1) * 2 > m->cap && grow(m) < 0)
        return NULL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->name = strdup(name);
    s->labels = strdup(labels);
    if (!s->name || !s->labels) {
        free(s->name);
        free(s->labels);
        free(s);
        return NULL;
    }
    size_t i = hash2(name, labels) & (m->cap - 1);
    while (m->slots[i])
        i = (i + 1) & (m->cap - 1);
    m->slots[i] = s;
    m->n++;
    return s;
}

void lcm_metrics_inc(struct lcm_metrics *m, const char *name, const char *labels, double by)
{
    struct series *s = get(m, name, labels);
    if (s)
        s->value += by;
}

void lcm_metrics_set(struct lcm_metrics *m, const char *name, const char *labels, double v)
{
    struct series *s = get(m, name, labels);
    if (s)
        s->value = v;
}

void lcm_metrics_observe(struct lcm_metrics *m, const char *name, const char *labels, double v)
{
    struct series *s = get(m, name, labels);
    if (!s || !isfinite(v))
        return;
    s->is_hist = 1;
    s->value += v;
    s->count++;
    for (int i = 0; i < NBUCKETS; i++)
        if (v <= bucket_bounds[i])
            s->buckets[i]++;
}

double lcm_metrics_get(const struct lcm_metrics *m, const char *name, const char *labels)
{
    if (!m)
        return 0;
    struct series *s = lookup(m, name, labels);
    if (!s)
        return 0;
    return s->is_hist ? (double)s->count : s->value;
}

char *lcm_metrics_escape(char *dst, size_t cap, const char *value)
{
    size_t o = 0;
    if (cap == 0)
        return dst;
    for (const char *p = value ? value : ""; *p && o + 3 < cap; p++) {
        if (*p == '\\' || *p == '"') {
            dst[o++] = '\\';
            dst[o++] = *p;
        } else if (*p == '\n') {
            dst[o++] = '\\';
            dst[o++] = 'n';
        } else {
            dst[o++] = *p;
        }
    }
    dst[o] = 0;
    return dst;
}

struct buf { char *p; size_t len, cap; int oom; };

static void bprintf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(struct buf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t nc = (b->cap + (size_t)n + 1) * 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
}

static int cmp_series(const void *a, const void *b)
{
    const struct series *x = *(struct series *const *)a, *y = *(struct series *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->labels, y->labels);
}

static void fmt_num(char *out, size_t cap, double v)
{
    if (v == (double)(long long)v && fabs(v) < 1e15)
        snprintf(out, cap, "%lld", (long long)v);
    else
        snprintf(out, cap, "%.9g", v);
}

char *lcm_metrics_render(const struct lcm_metrics *m, size_t *len)
{
    struct buf b = { malloc(4096), 0, 4096, 0 };
    if (!b.p)
        return NULL;
    b.p[0] = 0;
    struct series **all = calloc(m->n ? m->n : 1, sizeof(*all));
    if (!all) {
        free(b.p);
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i])
            all[k++] = m->slots[i];
    qsort(all, k, sizeof(*all), cmp_series);
    const char *last = NULL;
    char num[64];
    for (size_t i = 0; i < k; i++) {
        struct series *s = all[i];
        if (!last || strcmp(last, s->name) != 0) {
            const struct family *f = find_family(m, s->name);
            if (f) {
                static const char *const tn[] = { "counter", "gauge", "histogram" };
                bprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", s->name, f->help, s->name, tn[f->type]);
            }
            last = s->name;
        }
        const char *sep = s->labels[0] ? "," : "";
        if (s->is_hist) {
            for (int j = 0; j < NBUCKETS; j++) {
                fmt_num(num, sizeof(num), bucket_bounds[j]);
                bprintf(&b, "%s_bucket{%s%sle=\"%s\"} %llu\n", s->name, s->labels, sep, num,
                        s->buckets[j]);
            }
            bprintf(&b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", s->name, s->labels, sep, s->count);
            fmt_num(num, sizeof(num), s->value);
            if (s->labels[0]) {
                bprintf(&b, "%s_sum{%s} %s\n%s_count{%s} %llu\n", s->name, s->labels, num,
                        s->name, s->labels, s->count);
            } else {
                bprintf(&b, "%s_sum %s\n%s_count %llu\n", s->name, num, s->name, s->count);
            }
        } else {
            fmt_num(num, sizeof(num), s->value);
            if (s->labels[0])
                bprintf(&b, "%s{%s} %s\n", s->name, s->labels, num);
            else
                bprintf(&b, "%s %s\n", s->name, num);
        }
    }
    free(all);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.p;
}
