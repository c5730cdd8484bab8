/* Request building for the aws plugin: Query API form bodies, base64, ClientTokens, ISO
 * timestamps and the jitter PRNG. Kept free of I/O so unit tests and fuzzers can use it. */
#include "aws_query.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~';
}

int aws_urlencode(char *dst, size_t cap, const char *src)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
        if (unreserved(*p)) {
            if (k + 1 >= cap)
                return -1;
            dst[k++] = (char)*p;
        } else {
            if (k + 3 >= cap)
                return -1;
            dst[k++] = '%';
            dst[k++] = hex[*p >> 4];
            dst[k++] = hex[*p & 15];
        }
    }
    if (k >= cap)
        return -1;
    dst[k] = '\0';
    return 0;
}

static void put(struct aws_form *f, const char *s, int encode)
{
    if (f->oom)
        return;
    size_t need = encode ? strlen(s) * 3 + 1 : strlen(s) + 1;
    if (f->len + need > f->cap) {
        size_t cap = f->cap ? f->cap : 512;
        while (cap < f->len + need)
            cap *= 2;
        char *nb = realloc(f->buf, cap);
        if (!nb) {
            f->oom = 1;
            return;
        }
        f->buf = nb;
        f->cap = cap;
    }
    if (encode) {
        /* Spaces as '+' like every form encoder (botocore included): moto rebuilds the body
         * that way before checking the signature, and AWS accepts both. */
        aws_urlencode(f->buf + f->len, f->cap - f->len, s);
        char *w = f->buf + f->len, *r = w;
        while (*r) {
            if (r[0] == '%' && r[1] == '2' && r[2] == '0') {
                *w++ = '+';
                r += 3;
            } else {
                *w++ = *r++;
            }
        }
        *w = '\0';
        f->len = (size_t)(w - f->buf);
    } else {
        memcpy(f->buf + f->len, s, need);
        f->len += need - 1;
    }
}

void aws_form_add(struct aws_form *f, const char *key, const char *value)
{
    if (f->n++)
        put(f, "&", 0);
    put(f, key, 1);
    put(f, "=", 0);
    put(f, value ? value : "", 1);
}

void aws_form_addf(struct aws_form *f, const char *value, const char *keyfmt, ...)
{
    char key[256];
    va_list ap;
    va_start(ap, keyfmt);
    int n = vsnprintf(key, sizeof key, keyfmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof key) {
        f->oom = 1;             /* a key this long is a bug; refuse to send a wrong body */
        return;
    }
    aws_form_add(f, key, value);
}

void aws_form_init(struct aws_form *f, const char *action, const char *version)
{
    memset(f, 0, sizeof *f);
    aws_form_add(f, "Action", action);
    aws_form_add(f, "Version", version);
}

void aws_form_free(struct aws_form *f)
{
    free(f->buf);
    memset(f, 0, sizeof *f);
}

char *aws_base64(const void *data, size_t len)
{
    static const char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *in = data;
    size_t olen = 4 * ((len + 2) / 3);
    char *out = malloc(olen + 1), *o = out;
    if (!out)
        return NULL;
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = tbl[v >> 18 & 63];
        *o++ = tbl[v >> 12 & 63];
        *o++ = tbl[v >> 6 & 63];
        *o++ = tbl[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        *o++ = tbl[v >> 18 & 63];
        *o++ = tbl[v >> 12 & 63];
        *o++ = i + 1 < len ? tbl[v >> 6 & 63] : '=';
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

static uint64_t fnv1a64(const char *s, uint64_t h)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

int aws_client_token(const char *worker_id, char *out, size_t cap)
{
    if (!worker_id || !*worker_id || cap < 37)
        return -1;
    size_t n = strlen(worker_id);
    int plain = n <= 60;
    for (size_t i = 0; plain && i < n; i++)
        plain = unreserved((unsigned char)worker_id[i]);
    if (plain && n + 5 <= cap) {
        snprintf(out, cap, "lcm-%s", worker_id);
        return 0;
    }
    /* Two FNV-1a passes with different offsets: not cryptographic, only needs to be stable
     * and to make accidental collisions between worker ids negligible. */
    uint64_t a = fnv1a64(worker_id, 0xcbf29ce484222325ULL);
    uint64_t b = fnv1a64(worker_id, 0x84222325cbf29ce4ULL ^ (uint64_t)n);
    snprintf(out, cap, "lcm-%016llx%016llx", (unsigned long long)a, (unsigned long long)b);
    return 0;
}

int aws_client_token_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64)
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

void aws_iso8601(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

uint64_t aws_rand_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}
