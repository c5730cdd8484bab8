/* OIDC access tokens: RS256 JWT verification against keys from a JWKS file. The algorithm
 * is pinned to RS256 (the header's alg must say so; "none", HS256 and everything else are
 * refused before any key is touched), and iss, aud, exp and nbf are always checked. */
#ifndef LCM_JWT_H
#define LCM_JWT_H

#include <stddef.h>
#include <stdint.h>

struct lcm_jwks;

struct lcm_jwt_claims {
    char sub[256];
    char role[64];          /* from the configured role claim (default "lcm_role") */
    int64_t exp, nbf, iat;
};

/* Loads RSA keys (kty RSA, use sig or absent, with kid) from a JWKS JSON file. NULL with err. */
struct lcm_jwks *lcm_jwks_load(const char *path, char *err, size_t errlen);
struct lcm_jwks *lcm_jwks_parse(const char *json, size_t len, char *err, size_t errlen);
void lcm_jwks_free(struct lcm_jwks *k);
size_t lcm_jwks_count(const struct lcm_jwks *k);

struct lcm_jwt_policy {
    const char *issuer;     /* required match of "iss" */
    const char *audience;   /* must appear in "aud" (string or array) */
    const char *role_claim; /* claim holding the LCM role; NULL = "lcm_role" */
    int64_t now;            /* unix seconds */
    int64_t leeway_s;       /* clock skew allowed on exp/nbf */
    size_t max_len;         /* refuse longer tokens; 0 = 8192 */
};

/* Verifies token; returns 0 and fills claims, or -1 with a short reason in err (never the
 * token itself). */
int lcm_jwt_verify(const struct lcm_jwks *keys, const struct lcm_jwt_policy *pol,
                   const char *token, struct lcm_jwt_claims *claims, char *err, size_t errlen);

/* Whether a bearer string has the JWT shape (three base64url segments). */
int lcm_jwt_looks_like(const char *token);

#endif
