/* RS256 JWT verification with OpenSSL 3 and cJSON. Written against RFC 7515/7519 directly
 * (not libjwt) so the algorithm is pinned and every claim is checked. */
#include "jwt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

struct key {
    char kid[128];
    EVP_PKEY *pkey;
};

struct lcm_jwks {
    struct key *keys;
    size_t n;
};

static int b64url_val(int c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* Decodes unpadded base64url; returns malloc'd bytes (NUL-terminated) or NULL on bad input. */
static unsigned char *b64url_decode(const char *s, size_t len, size_t *out_len)
{
    if (len % 4 == 1)
        return NULL;
    unsigned char *out = malloc(len * 3 / 4 + 3);
    if (!out)
        return NULL;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_val((unsigned char)s[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)((acc >> bits) & 0xff);
        }
    }
    out[o] = 0;
    *out_len = o;
    return out;
}

static EVP_PKEY *rsa_from_ne(const char *n64, const char *e64)
{
    size_t nl, el;
    unsigned char *n = b64url_decode(n64, strlen(n64), &nl);
    unsigned char *e = b64url_decode(e64, strlen(e64), &el);
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    BIGNUM *bn = NULL, *be = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    if (!n || !e || nl < 256 /* RSA-2048 minimum */)
        goto out;
    bn = BN_bin2bn(n, (int)nl, NULL);
    be = BN_bin2bn(e, (int)el, NULL);
    bld = OSSL_PARAM_BLD_new();
    if (!bn || !be || !bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        goto out;
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    free(n);
    free(e);
    return pkey;
}

struct lcm_jwks *lcm_jwks_parse(const char *json, size_t len, char *err, size_t errlen)
{
    cJSON *doc = cJSON_ParseWithLength(json, len);
    cJSON *keys = doc ? cJSON_GetObjectItemCaseSensitive(doc, "keys") : NULL;
    if (!cJSON_IsArray(keys)) {
        snprintf(err, errlen, "JWKS must be an object with a \"keys\" array");
        cJSON_Delete(doc);
        return NULL;
    }
    struct lcm_jwks *k = calloc(1, sizeof(*k));
    int n = cJSON_GetArraySize(keys);
    k->keys = calloc((size_t)(n ? n : 1), sizeof(*k->keys));
    if (!k->keys) {
        free(k);
        cJSON_Delete(doc);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, keys) {
        const cJSON *kty = cJSON_GetObjectItemCaseSensitive(item, "kty");
        const cJSON *kid = cJSON_GetObjectItemCaseSensitive(item, "kid");
        const cJSON *use = cJSON_GetObjectItemCaseSensitive(item, "use");
        const cJSON *nn = cJSON_GetObjectItemCaseSensitive(item, "n");
        const cJSON *ee = cJSON_GetObjectItemCaseSensitive(item, "e");
        if (!cJSON_IsString(kty) || strcmp(kty->valuestring, "RSA") != 0)
            continue;   /* other key types are not usable for RS256 */
        if (cJSON_IsString(use) && strcmp(use->valuestring, "sig") != 0)
            continue;
        if (!cJSON_IsString(kid) || !cJSON_IsString(nn) || !cJSON_IsString(ee) ||
            strlen(kid->valuestring) >= sizeof(k->keys[0].kid)) {
            snprintf(err, errlen, "JWKS key #%zu: RSA keys need kid, n and e", k->n + 1);
            lcm_jwks_free(k);
            cJSON_Delete(doc);
            return NULL;
        }
        EVP_PKEY *p = rsa_from_ne(nn->valuestring, ee->valuestring);
        if (!p) {
            snprintf(err, errlen, "JWKS key '%s': invalid RSA modulus/exponent (or under 2048 bits)", kid->valuestring);
            lcm_jwks_free(k);
            cJSON_Delete(doc);
            return NULL;
        }
        snprintf(k->keys[k->n].kid, sizeof(k->keys[k->n].kid), "%s", kid->valuestring);
        k->keys[k->n].pkey = p;
        k->n++;
    }
    cJSON_Delete(doc);
    return k;
}

struct lcm_jwks *lcm_jwks_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read JWKS file %s", path);
        return NULL;
    }
    char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    struct lcm_jwks *k = lcm_jwks_parse(buf, n, err, errlen);
    free(buf);
    return k;
}

void lcm_jwks_free(struct lcm_jwks *k)
{
    if (!k)
        return;
    for (size_t i = 0; i < k->n; i++)
        EVP_PKEY_free(k->keys[i].pkey);
    free(k->keys);
    free(k);
}

size_t lcm_jwks_count(const struct lcm_jwks *k) { return k ? k->n : 0; }

int lcm_jwt_looks_like(const char *t)
{
    int dots = 0;
    for (; *t; t++) {
        if (*t == '.')
            dots++;
        else if (b64url_val((unsigned char)*t) < 0)
            return 0;
    }
    return dots == 2;
}

static int verify_sig(EVP_PKEY *pkey, const char *signed_part, size_t signed_len,
                      const unsigned char *sig, size_t sig_len)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) == 1 &&
             EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)signed_part, signed_len) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

static int64_t num_claim(const cJSON *o, const char *name, int *present)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    *present = cJSON_IsNumber(v);
    return *present ? (int64_t)v->valuedouble : 0;
}

int lcm_jwt_verify(const struct lcm_jwks *keys, const struct lcm_jwt_policy *pol,
                   const char *token, struct lcm_jwt_claims *claims, char *err, size_t errlen)
{
    int rc = -1;
    unsigned char *hdr = NULL, *pay = NULL, *sig = NULL;
    cJSON *h = NULL, *p = NULL;
    size_t max = pol->max_len ? pol->max_len : 8192;
    size_t tl = strlen(token);
    memset(claims, 0, sizeof(*claims));
    if (tl > max) {
        snprintf(err, errlen, "token too long");
        return -1;
    }
    const char *d1 = strchr(token, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d1 || !d2 || strchr(d2 + 1, '.')) {
        snprintf(err, errlen, "not a JWS compact token");
        return -1;
    }
    size_t hl, pl, sl;
    hdr = b64url_decode(token, (size_t)(d1 - token), &hl);
    pay = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), &pl);
    sig = b64url_decode(d2 + 1, strlen(d2 + 1), &sl);
    if (!hdr || !pay || !sig) {
        snprintf(err, errlen, "bad base64url");
        goto out;
    }
    h = cJSON_ParseWithLength((const char *)hdr, hl);
    const cJSON *alg = h ? cJSON_GetObjectItemCaseSensitive(h, "alg") : NULL;
    const cJSON *kid = h ? cJSON_GetObjectItemCaseSensitive(h, "kid") : NULL;
    if (!cJSON_IsString(alg) || strcmp(alg->valuestring, "RS256") != 0) {
        snprintf(err, errlen, "algorithm not allowed (only RS256)");
        goto out;
    }
    if (!cJSON_IsString(kid)) {
        snprintf(err, errlen, "token has no kid");
        goto out;
    }
    EVP_PKEY *pkey = NULL;
    for (size_t i = 0; keys && i < keys->n; i++)
        if (strcmp(keys->keys[i].kid, kid->valuestring) == 0)
            pkey = keys->keys[i].pkey;
    if (!pkey) {
        snprintf(err, errlen, "unknown kid");
        goto out;
    }
    if (!verify_sig(pkey, token, (size_t)(d2 - token), sig, sl)) {
        snprintf(err, errlen, "bad signature");
        goto out;
    }
    p = cJSON_ParseWithLength((const char *)pay, pl);
    if (!cJSON_IsObject(p)) {
        snprintf(err, errlen, "payload is not a JSON object");
        goto out;
    }
    int has;
    claims->exp = num_claim(p, "exp", &has);
    if (!has || pol->now > claims->exp + pol->leeway_s) {
        snprintf(err, errlen, has ? "token expired" : "token has no exp");
        goto out;
    }
    claims->nbf = num_claim(p, "nbf", &has);
    if (has && pol->now + pol->leeway_s < claims->nbf) {
        snprintf(err, errlen, "token not yet valid (nbf)");
        goto out;
    }
    claims->iat = num_claim(p, "iat", &has);
    const cJSON *iss = cJSON_GetObjectItemCaseSensitive(p, "iss");
    if (!pol->issuer || !cJSON_IsString(iss) || strcmp(iss->valuestring, pol->issuer) != 0) {
        snprintf(err, errlen, "wrong issuer");
        goto out;
    }
    const cJSON *aud = cJSON_GetObjectItemCaseSensitive(p, "aud");
    int aud_ok = 0;
    if (pol->audience && cJSON_IsString(aud))
        aud_ok = strcmp(aud->valuestring, pol->audience) == 0;
    else if (pol->audience && cJSON_IsArray(aud)) {
        const cJSON *a;
        cJSON_ArrayForEach(a, aud) if (cJSON_IsString(a) && strcmp(a->valuestring, pol->audience) == 0) aud_ok = 1;
    }
    if (!aud_ok) {
        snprintf(err, errlen, "wrong audience");
        goto out;
    }
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(p, "sub");
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(p, pol->role_claim ? pol->role_claim : "lcm_role");
    if (!cJSON_IsString(sub) || !*sub->valuestring || strlen(sub->valuestring) >= sizeof(claims->sub)) {
        snprintf(err, errlen, "token has no usable sub");
        goto out;
    }
    if (!cJSON_IsString(role) || strlen(role->valuestring) >= sizeof(claims->role)) {
        snprintf(err, errlen, "token has no role claim");
        goto out;
    }
    snprintf(claims->sub, sizeof(claims->sub), "%s", sub->valuestring);
    snprintf(claims->role, sizeof(claims->role), "%s", role->valuestring);
    rc = 0;
out:
    cJSON_Delete(h);
    cJSON_Delete(p);
    free(hdr);
    free(pay);
    free(sig);
    return rc;
}
