/* Port registry of one worker. Lowest-free allocation scans the bitmap a word at a time, so
 * picking a few ports out of 8,000 costs a handful of 64-bit operations. */
#include "ports.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "jsonx.h"

static size_t nwords(uint16_t lo, uint16_t hi)
{
    return ((size_t)(hi - lo) + 1 + 63) / 64;
}

int lcm_ports_init(struct lcm_ports *p, uint16_t lo, uint16_t hi)
{
    memset(p, 0, sizeof *p);
    if (lo == 0 || lo > hi)
        return LCM_DERR_INVALID;
    p->bits = calloc(nwords(lo, hi), sizeof *p->bits);
    if (!p->bits)
        return LCM_DERR_NOMEM;
    p->lo = lo;
    p->hi = hi;
    p->nfree = (uint32_t)(hi - lo) + 1;
    return 0;
}

void lcm_ports_free(struct lcm_ports *p)
{
    for (uint32_t i = 0; i < p->nleases; i++) {
        free(p->leases[i].lab_id);
        free(p->leases[i].ports);
    }
    free(p->leases);
    free(p->bits);
    memset(p, 0, sizeof *p);
}

int lcm_ports_clone(struct lcm_ports *dst, const struct lcm_ports *src)
{
    *dst = *src;
    dst->bits = NULL;
    dst->leases = NULL;
    dst->nleases = dst->cap = 0;
    if (src->bits) {
        size_t nw = nwords(src->lo, src->hi);
        if (!(dst->bits = malloc(nw * sizeof *dst->bits)))
            return LCM_DERR_NOMEM;
        memcpy(dst->bits, src->bits, nw * sizeof *dst->bits);
    }
    if (!src->leases)
        return 0;
    dst->leases = calloc(src->cap ? src->cap : 1, sizeof *dst->leases);
    if (!dst->leases)
        return LCM_DERR_NOMEM;
    dst->cap = src->cap;
    for (uint32_t i = 0; i < src->nleases; i++) {
        const struct lcm_port_lease *s = &src->leases[i];
        struct lcm_port_lease *d = &dst->leases[i];
        d->lab_id = s->lab_id ? strdup(s->lab_id) : NULL;
        d->ports = s->n ? malloc(s->n * sizeof *d->ports) : NULL;
        dst->nleases++;   /* freed with dst from here on */
        if ((s->lab_id && !d->lab_id) || (s->n && !d->ports))
            return LCM_DERR_NOMEM;
        if (s->n)
            memcpy(d->ports, s->ports, s->n * sizeof *d->ports);
        d->n = s->n;
    }
    return 0;
}

uint32_t lcm_ports_free_count(const struct lcm_ports *p)
{
    return p->nfree;
}

int lcm_ports_in_use(const struct lcm_ports *p, uint16_t port)
{
    if (!p->bits || port < p->lo || port > p->hi)
        return 0;
    size_t i = (size_t)(port - p->lo);
    return (p->bits[i / 64] >> (i % 64)) & 1;
}

static void set_bit(struct lcm_ports *p, uint16_t port, int on)
{
    size_t i = (size_t)(port - p->lo);
    if (on)
        p->bits[i / 64] |= (uint64_t)1 << (i % 64);
    else
        p->bits[i / 64] &= ~((uint64_t)1 << (i % 64));
}

int lcm_ports_pick(const struct lcm_ports *p, size_t n, uint16_t *out, struct lcm_derr *err)
{
    if (n > p->nfree || !p->bits)
        return lcm_derr_set(err, LCM_DERR_EXHAUSTED, "ports",
                            "worker has %u free ports in %u-%u, %zu needed", p->nfree, p->lo,
                            p->hi, n);
    size_t got = 0, total = (size_t)(p->hi - p->lo) + 1, words = nwords(p->lo, p->hi);
    for (size_t w = 0; w < words && got < n; w++) {
        uint64_t freebits = ~p->bits[w];
        while (freebits && got < n) {
            size_t i = w * 64 + (size_t)__builtin_ctzll(freebits);
            if (i >= total)
                break;
            out[got++] = (uint16_t)(p->lo + i);
            freebits &= freebits - 1;
        }
    }
    if (got < n)   /* cannot happen while nfree is exact; kept as a guard */
        return lcm_derr_set(err, LCM_DERR_EXHAUSTED, "ports", "port registry exhausted");
    return 0;
}

const struct lcm_port_lease *lcm_ports_lease(const struct lcm_ports *p, const char *lab_id)
{
    for (uint32_t i = 0; lab_id && i < p->nleases; i++)
        if (!strcmp(p->leases[i].lab_id, lab_id))
            return &p->leases[i];
    return NULL;
}

static int cmp_u16(const void *a, const void *b)
{
    return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

int lcm_ports_take(struct lcm_ports *p, const char *lab_id, const uint16_t *ports, size_t n,
                   struct lcm_derr *err)
{
    if (!lab_id || !*lab_id)
        return lcm_derr_set(err, LCM_DERR_INVALID, "lab_id", "lab id required");
    if (n == 0 || n > LCM_PORTS_MAX_PER_LAB)
        return lcm_derr_set(err, LCM_DERR_INVALID, "ports", "lease of %zu ports", n);
    if (lcm_ports_lease(p, lab_id))
        return lcm_derr_set(err, LCM_DERR_CONFLICT, "lab_id", "lab %s already holds ports",
                            lab_id);
    uint16_t *v = malloc(n * sizeof *v);
    char *id = strdup(lab_id);
    if (!v || !id)
        goto nomem;
    memcpy(v, ports, n * sizeof *v);
    qsort(v, n, sizeof *v, cmp_u16);
    for (size_t i = 0; i < n; i++) {
        if (v[i] < p->lo || v[i] > p->hi || lcm_ports_in_use(p, v[i]) ||
            (i > 0 && v[i] == v[i - 1])) {
            lcm_derr_set(err, LCM_DERR_CONFLICT, "ports", "port %u is %s", v[i],
                         (v[i] < p->lo || v[i] > p->hi) ? "out of range"
                         : (i > 0 && v[i] == v[i - 1]) ? "repeated" : "already in use");
            free(v);
            free(id);
            return LCM_DERR_CONFLICT;
        }
    }
    if (p->nleases == p->cap) {
        uint32_t cap = p->cap ? p->cap * 2 : 4;
        struct lcm_port_lease *l = realloc(p->leases, cap * sizeof *l);
        if (!l)
            goto nomem;
        p->leases = l;
        p->cap = cap;
    }
    for (size_t i = 0; i < n; i++)
        set_bit(p, v[i], 1);
    p->nfree -= (uint32_t)n;
    p->leases[p->nleases++] = (struct lcm_port_lease){.lab_id = id, .ports = v, .n = (uint16_t)n};
    return 0;
nomem:
    free(v);
    free(id);
    return lcm_derr_set(err, LCM_DERR_NOMEM, "ports", "out of memory");
}

int lcm_ports_release(struct lcm_ports *p, const char *lab_id)
{
    for (uint32_t i = 0; lab_id && i < p->nleases; i++) {
        struct lcm_port_lease *l = &p->leases[i];
        if (strcmp(l->lab_id, lab_id))
            continue;
        int n = l->n;
        for (uint16_t k = 0; k < l->n; k++)
            set_bit(p, l->ports[k], 0);
        p->nfree += (uint32_t)l->n;
        free(l->lab_id);
        free(l->ports);
        memmove(l, l + 1, (size_t)(p->nleases - i - 1) * sizeof *l);
        p->nleases--;
        return n;
    }
    return 0;
}

cJSON *lcm_ports_to_json(const struct lcm_ports *p)
{
    cJSON *o = cJSON_CreateObject(), *r = cJSON_CreateArray(), *leases = cJSON_CreateObject();
    if (!o || !r || !leases) {
        cJSON_Delete(o);
        cJSON_Delete(r);
        cJSON_Delete(leases);
        return NULL;
    }
    cJSON_AddItemToObject(o, "range", r);
    cJSON_AddItemToObject(o, "leases", leases);
    cJSON_AddItemToArray(r, cJSON_CreateNumber(p->lo));
    cJSON_AddItemToArray(r, cJSON_CreateNumber(p->hi));
    for (uint32_t i = 0; i < p->nleases; i++) {
        cJSON *a = cJSON_CreateArray();
        if (!a || !cJSON_AddItemToObject(leases, p->leases[i].lab_id, a)) {
            cJSON_Delete(a);
            cJSON_Delete(o);
            return NULL;
        }
        for (uint16_t k = 0; k < p->leases[i].n; k++)
            cJSON_AddItemToArray(a, cJSON_CreateNumber(p->leases[i].ports[k]));
    }
    return o;
}

static int port_num(const cJSON *it, uint16_t *out)
{
    if (!cJSON_IsNumber(it) || it->valuedouble < 1 || it->valuedouble > 65535 ||
        it->valuedouble != (double)(int)it->valuedouble)
        return -1;
    *out = (uint16_t)it->valuedouble;
    return 0;
}

int lcm_ports_from_json(struct lcm_ports *p, const cJSON *o, struct lcm_derr *err)
{
    struct lcm_ports n;
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "range");
    uint16_t lo, hi;
    if (!cJSON_IsArray(r) || cJSON_GetArraySize(r) != 2 ||
        port_num(cJSON_GetArrayItem(r, 0), &lo) || port_num(cJSON_GetArrayItem(r, 1), &hi) ||
        lcm_ports_init(&n, lo, hi))
        return lcm_derr_set(err, LCM_DERR_INVALID, "ports.range", "bad port range");
    const cJSON *leases = cJSON_GetObjectItemCaseSensitive(o, "leases"), *l;
    if (leases && !cJSON_IsObject(leases)) {
        lcm_ports_free(&n);
        return lcm_derr_set(err, LCM_DERR_INVALID, "ports.leases", "not an object");
    }
    cJSON_ArrayForEach(l, leases) {
        uint16_t v[LCM_PORTS_MAX_PER_LAB];
        int cnt = cJSON_GetArraySize(l), k = 0;
        const cJSON *it;
        if (!cJSON_IsArray(l) || cnt < 1 || cnt > LCM_PORTS_MAX_PER_LAB)
            goto bad;
        cJSON_ArrayForEach(it, l) {
            if (port_num(it, &v[k++]))
                goto bad;
        }
        if (lcm_ports_take(&n, l->string, v, (size_t)cnt, err))
            goto bad;
    }
    lcm_ports_free(p);
    *p = n;
    return 0;
bad:
    lcm_ports_free(&n);
    return lcm_derr_set(err, LCM_DERR_INVALID, "ports.leases", "bad port lease");
}

size_t lcm_ports_mem(const struct lcm_ports *p)
{
    size_t b = p->bits ? nwords(p->lo, p->hi) * 8 : 0;
    b += (size_t)p->cap * sizeof *p->leases;
    for (uint32_t i = 0; i < p->nleases; i++)
        b += strlen(p->leases[i].lab_id) + 1 + (size_t)p->leases[i].n * 2;
    return b;
}
