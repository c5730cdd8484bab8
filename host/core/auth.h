/* API tokens and roles. Tokens are kept only as SHA-256 hashes; a presented bearer token is
 * hashed and compared in constant time. Each route names a permission; each role grants a
 * fixed set of permissions (the table is in docs/api.md). */
#ifndef LCM_AUTH_H
#define LCM_AUTH_H

#include <stddef.h>

struct lcm_auth;
struct lcm_config;

/* Permissions named by routes. */
#define LCM_PERM_READ        "read"         /* GET anything */
#define LCM_PERM_BOOK        "book"         /* create/terminate/extend sessions, cloudevents */
#define LCM_PERM_AUTHOR      "author"       /* definitions */
#define LCM_PERM_OPERATE     "operate"      /* workers, labs, session transitions, policy reload */
#define LCM_PERM_ADMIN       "admin"        /* templates and everything else */

/* Builds the token table from config (the token entries and admin_token). When no token is
 * configured at all, generates an admin token and returns it in *generated (malloc'd; the
 * caller prints it once and frees it). NULL with err on a malformed entry. */
struct lcm_auth *lcm_auth_new(const struct lcm_config *cfg, char **generated, char *err,
                              size_t errlen);
void lcm_auth_free(struct lcm_auth *a);

/* Checks a bearer token. Returns 0 and sets *subject and *role (borrowed from the table), or -1. */
int lcm_auth_check(const struct lcm_auth *a, const char *token, const char **subject,
                   const char **role);
/* Whether role grants perm. */
int lcm_auth_role_allows(const char *role, const char *perm);
int lcm_auth_valid_role(const char *role);
/* sha256 hex of s into out[65]. */
void lcm_auth_sha256_hex(const char *s, size_t len, char out[65]);
size_t lcm_auth_count(const struct lcm_auth *a);

#endif
