/* Static API tokens from configuration, stored hashed. OIDC JWTs plug in beside this (the
 * API layer tries JWT verification when a token has the JWT shape). */
#include "auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "config.h"

struct token {
    unsigned char hash[32];
    char *subject, *role;
};

struct lcm_auth {
    struct token *t;
    size_t n;
};

static const char *const roles[] = { "admin", "operator", "author", "learner-service", "viewer" };

int lcm_auth_valid_role(const char *role)
{
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
        if (role && strcmp(role, roles[i]) == 0)
            return 1;
    return 0;
}

int lcm_auth_role_allows(const char *role, const char *perm)
{
    if (!role || !perm)
        return 0;
    if (strcmp(role, "admin") == 0)
        return 1;
    if (strcmp(perm, LCM_PERM_READ) == 0)
        return lcm_auth_valid_role(role);
    if (strcmp(role, "operator") == 0)
        return strcmp(perm, LCM_PERM_OPERATE) == 0 || strcmp(perm, LCM_PERM_BOOK) == 0;
    if (strcmp(role, "author") == 0)
        return strcmp(perm, LCM_PERM_AUTHOR) == 0;
    if (strcmp(role, "learner-service") == 0)
        return strcmp(perm, LCM_PERM_BOOK) == 0;
    return 0;
}

static void sha256(const char *s, size_t len, unsigned char out[32])
{
    unsigned int ol = 32;
    EVP_Digest(s, len, out, &ol, EVP_sha256(), NULL);
}

void lcm_auth_sha256_hex(const char *s, size_t len, char out[65])
{
    unsigned char h[32];
    sha256(s, len, h);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static int hex_to_bin(const char *hex, unsigned char out[32])
{
    if (strlen(hex) != 64)
        return -1;
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    return 0;
}

static int add(struct lcm_auth *a, const unsigned char hash[32], const char *subject, const char *role)
{
    struct token *nt = realloc(a->t, (a->n + 1) * sizeof(*nt));
    if (!nt)
        return -1;
    a->t = nt;
    struct token *t = &a->t[a->n];
    memcpy(t->hash, hash, 32);
    t->subject = strdup(subject);
    t->role = strdup(role);
    if (!t->subject || !t->role) {
        free(t->subject);
        free(t->role);
        return -1;
    }
    a->n++;
    return 0;
}

struct lcm_auth *lcm_auth_new(const struct lcm_config *cfg, char **generated, char *err,
                              size_t errlen)
{
    struct lcm_auth *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    *generated = NULL;
    const char *const *items;
    size_t n = lcm_config_list(cfg, "token", &items);
    for (size_t i = 0; i < n; i++) {
        char *copy = strdup(items[i]);
        char *c1 = copy ? strchr(copy, ':') : NULL;
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        unsigned char h[32];
        if (!c1 || !c2) {
            snprintf(err, errlen, "token #%zu: expected <role>:<subject>:<sha256-hex>", i + 1);
            free(copy);
            goto fail;
        }
        *c1 = 0;
        *c2 = 0;
        if (!lcm_auth_valid_role(copy)) {
            snprintf(err, errlen, "token #%zu: unknown role '%s'", i + 1, copy);
            free(copy);
            goto fail;
        }
        if (!c1[1] || hex_to_bin(c2 + 1, h) < 0) {
            snprintf(err, errlen, "token #%zu: subject must be non-empty and the hash 64 hex digits", i + 1);
            free(copy);
            goto fail;
        }
        int rc = add(a, h, c1 + 1, copy);
        free(copy);
        if (rc < 0)
            goto oom;
    }
    const char *admin = lcm_config_str(cfg, "admin_token");
    if (admin) {
        if (strlen(admin) < 16) {
            snprintf(err, errlen, "admin_token: must be at least 16 characters");
            goto fail;
        }
        unsigned char h[32];
        sha256(admin, strlen(admin), h);
        if (add(a, h, "admin", "admin") < 0)
            goto oom;
    }
    if (a->n == 0) {
        unsigned char raw[24];
        if (RAND_bytes(raw, sizeof(raw)) != 1) {
            snprintf(err, errlen, "no entropy for a generated admin token");
            goto fail;
        }
        char *tok = malloc(2 * sizeof(raw) + 5);
        if (!tok)
            goto oom;
        strcpy(tok, "lcm_");
        for (size_t i = 0; i < sizeof(raw); i++)
            snprintf(tok + 4 + 2 * i, 3, "%02x", raw[i]);
        unsigned char h[32];
        sha256(tok, strlen(tok), h);
        if (add(a, h, "admin", "admin") < 0) {
            free(tok);
            goto oom;
        }
        *generated = tok;
    }
    return a;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    lcm_auth_free(a);
    return NULL;
}

void lcm_auth_free(struct lcm_auth *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++) {
        free(a->t[i].subject);
        free(a->t[i].role);
    }
    free(a->t);
    free(a);
}

size_t lcm_auth_count(const struct lcm_auth *a) { return a ? a->n : 0; }

int lcm_auth_check(const struct lcm_auth *a, const char *token, const char **subject,
                   const char **role)
{
    if (!a || !token || !*token || strlen(token) > 4096)
        return -1;
    unsigned char h[32];
    sha256(token, strlen(token), h);
    int found = -1;
    /* compare against every entry so timing does not reveal which one matched */
    for (size_t i = 0; i < a->n; i++)
        if (CRYPTO_memcmp(h, a->t[i].hash, 32) == 0)
            found = (int)i;
    if (found < 0)
        return -1;
    *subject = a->t[found].subject;
    *role = a->t[found].role;
    return 0;
}
