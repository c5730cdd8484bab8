/* RS256 JWT verification: the forgeries and claim failures an OIDC verifier must refuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "core/jwt.h"

static EVP_PKEY *key;
static struct lcm_jwks *jwks;
static int64_t now;

static void b64url(const unsigned char *in, size_t len, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = tbl[(acc >> bits) & 63];
        }
    }
    if (bits)
        out[o++] = tbl[(acc << (6 - bits)) & 63];
    out[o] = 0;
}

static char *make_token(const char *header, const char *payload, EVP_PKEY *k)
{
    static char tok[16384];
    char h[2048], p[8192];
    b64url((const unsigned char *)header, strlen(header), h);
    b64url((const unsigned char *)payload, strlen(payload), p);
    snprintf(tok, sizeof(tok), "%s.%s", h, p);
    unsigned char sig[512];
    size_t sl = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k), 1);
    assert_int_equal(EVP_DigestSign(md, sig, &sl, (unsigned char *)tok, strlen(tok)), 1);
    EVP_MD_CTX_free(md);
    char s[1024];
    b64url(sig, sl, s);
    strcat(tok, ".");
    strcat(tok, s);
    return tok;
}

static char *claims(int64_t exp, int64_t nbf, const char *iss, const char *aud)
{
    static char p[1024];
    snprintf(p, sizeof(p), "{\"sub\":\"alice\",\"lcm_role\":\"operator\",\"iss\":\"%s\",\"aud\":%s,\"exp\":%lld,\"nbf\":%lld}",
             iss, aud, (long long)exp, (long long)nbf);
    return p;
}

static struct lcm_jwt_policy pol(void)
{
    struct lcm_jwt_policy p = { .issuer = "https://idp.test", .audience = "lcm", .now = now, .leeway_s = 30 };
    return p;
}

static int verify(const char *tok, char *err)
{
    struct lcm_jwt_claims c;
    struct lcm_jwt_policy p = pol();
    return lcm_jwt_verify(jwks, &p, tok, &c, err, 128);
}

static int setup(void **state)
{
    (void)state;
    now = (int64_t)time(NULL);
    key = EVP_RSA_gen(2048);
    BIGNUM *n = NULL, *e = NULL;
    EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n);
    EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &e);
    unsigned char nb[512], eb[16];
    int nl = BN_bn2bin(n, nb), el = BN_bn2bin(e, eb);
    char n64[1024], e64[32], json[2048];
    b64url(nb, (size_t)nl, n64);
    b64url(eb, (size_t)el, e64);
    snprintf(json, sizeof(json),
             "{\"keys\":[{\"kty\":\"EC\",\"kid\":\"ec1\"},{\"kty\":\"RSA\",\"kid\":\"k1\",\"use\":\"sig\",\"n\":\"%s\",\"e\":\"%s\"}]}",
             n64, e64);
    BN_free(n);
    BN_free(e);
    char err[128];
    jwks = lcm_jwks_parse(json, strlen(json), err, sizeof(err));
    assert_non_null(jwks);
    assert_int_equal(lcm_jwks_count(jwks), 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    lcm_jwks_free(jwks);
    EVP_PKEY_free(key);
    return 0;
}

static const char *H = "{\"alg\":\"RS256\",\"kid\":\"k1\",\"typ\":\"JWT\"}";

static void valid(void **state)
{
    (void)state;
    char *t = make_token(H, claims(now + 300, now - 10, "https://idp.test", "\"lcm\""), key);
    struct lcm_jwt_claims c;
    struct lcm_jwt_policy p = pol();
    char err[128];
    assert_int_equal(lcm_jwt_verify(jwks, &p, t, &c, err, sizeof(err)), 0);
    assert_string_equal(c.sub, "alice");
    assert_string_equal(c.role, "operator");
    assert_true(lcm_jwt_looks_like(t));
    t = make_token(H, claims(now + 300, now - 10, "https://idp.test", "[\"other\",\"lcm\"]"), key);
    assert_int_equal(verify(t, err), 0);
}

static void expect_refused(const char *tok, const char *reason)
{
    char err[128] = "";
    assert_int_equal(verify(tok, err), -1);
    if (!strstr(err, reason))
        fail_msg("refused for '%s', expected '%s'", err, reason);
}

static void claim_failures(void **state)
{
    (void)state;
    expect_refused(make_token(H, claims(now - 100, now - 200, "https://idp.test", "\"lcm\""), key), "expired");
    expect_refused(make_token(H, claims(now + 900, now + 600, "https://idp.test", "\"lcm\""), key), "nbf");
    expect_refused(make_token(H, claims(now + 300, now, "https://evil.test", "\"lcm\""), key), "issuer");
    expect_refused(make_token(H, claims(now + 300, now, "https://idp.test", "\"other\""), key), "audience");
    expect_refused(make_token(H, "{\"sub\":\"a\",\"lcm_role\":\"admin\",\"iss\":\"https://idp.test\",\"aud\":\"lcm\"}", key), "no exp");
    char p[512];
    snprintf(p, sizeof(p), "{\"sub\":\"a\",\"iss\":\"https://idp.test\",\"aud\":\"lcm\",\"exp\":%lld}", (long long)now + 100);
    expect_refused(make_token(H, p, key), "role");
}

static void forgeries(void **state)
{
    (void)state;
    char body[1024], hdr[256], tok[4096];
    /* alg none */
    b64url((const unsigned char *)"{\"alg\":\"none\",\"kid\":\"k1\"}", 25, hdr);
    char *c = claims(now + 300, now, "https://idp.test", "\"lcm\"");
    b64url((const unsigned char *)c, strlen(c), body);
    snprintf(tok, sizeof(tok), "%s.%s.", hdr, body);
    expect_refused(tok, "algorithm");
    /* HS256 keyed with the public key PEM (the classic RS/HS confusion) */
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, key);
    char *pem;
    long pl = BIO_get_mem_data(bio, &pem);
    const char *hh = "{\"alg\":\"HS256\",\"kid\":\"k1\"}";
    b64url((const unsigned char *)hh, strlen(hh), hdr);
    snprintf(tok, sizeof(tok), "%s.%s", hdr, body);
    unsigned char mac[32];
    unsigned ml = 32;
    HMAC(EVP_sha256(), pem, (int)pl, (unsigned char *)tok, strlen(tok), mac, &ml);
    char m64[64];
    b64url(mac, ml, m64);
    strcat(tok, ".");
    strcat(tok, m64);
    BIO_free(bio);
    expect_refused(tok, "algorithm");
    /* unknown kid */
    expect_refused(make_token("{\"alg\":\"RS256\",\"kid\":\"nope\"}", c, key), "unknown kid");
    /* signed by another key */
    EVP_PKEY *other = EVP_RSA_gen(2048);
    expect_refused(make_token(H, c, other), "bad signature");
    EVP_PKEY_free(other);
    /* tampered payload: swap in a payload with admin role, keep the signature */
    char *good = make_token(H, c, key);
    char copy[8192];
    snprintf(copy, sizeof(copy), "%s", good);
    char *d1 = strchr(copy, '.'), *d2 = strchr(d1 + 1, '.');
    char evil[1024], e64[1400], out[16384];
    snprintf(evil, sizeof(evil), "{\"sub\":\"alice\",\"lcm_role\":\"admin\",\"iss\":\"https://idp.test\",\"aud\":\"lcm\",\"exp\":%lld}", (long long)now + 300);
    b64url((const unsigned char *)evil, strlen(evil), e64);
    *d1 = 0;
    snprintf(out, sizeof(out), "%s.%s%s", copy, e64, d2);
    expect_refused(out, "bad signature");
    /* oversized */
    char *big = malloc(20000);
    memset(big, 'a', 19999);
    big[19999] = 0;
    big[100] = '.';
    big[200] = '.';
    expect_refused(big, "too long");
    free(big);
    expect_refused("a.b", "compact");
    expect_refused("a.b.c.d", "compact");
    expect_refused("!!.b.c", "base64url");
}

static void jwks_errors(void **state)
{
    (void)state;
    char err[128];
    assert_null(lcm_jwks_parse("[]", 2, err, sizeof(err)));
    const char *short_key = "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"x\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}";
    assert_null(lcm_jwks_parse(short_key, strlen(short_key), err, sizeof(err)));
    assert_non_null(strstr(err, "2048"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid), cmocka_unit_test(claim_failures), cmocka_unit_test(forgeries),
        cmocka_unit_test(jwks_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
