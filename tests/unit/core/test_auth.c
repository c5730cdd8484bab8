/* Tokens: hashed storage, role permissions, malformed entries refused, generated token. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/auth.h"
#include "core/config.h"

static struct lcm_config *cfg_with(char **env)
{
    char err[256];
    struct lcm_config *c = lcm_config_load(NULL, env, err, sizeof(err));
    assert_non_null(c);
    return c;
}

static void configured_tokens(void **state)
{
    (void)state;
    char hash[65], line[200];
    lcm_auth_sha256_hex("viewer-token", 12, hash);
    snprintf(line, sizeof(line), "LCM_TOKEN=viewer:dash:%s", hash);
    char *env[] = { line, "LCM_ADMIN_TOKEN=admin-token-1234567890", NULL };
    struct lcm_config *c = cfg_with(env);
    char *gen = NULL, err[256];
    struct lcm_auth *a = lcm_auth_new(c, &gen, err, sizeof(err));
    assert_non_null(a);
    assert_null(gen);
    const char *sub, *role;
    assert_int_equal(lcm_auth_check(a, "viewer-token", &sub, &role), 0);
    assert_string_equal(sub, "dash");
    assert_string_equal(role, "viewer");
    assert_int_equal(lcm_auth_check(a, "admin-token-1234567890", &sub, &role), 0);
    assert_string_equal(role, "admin");
    assert_int_equal(lcm_auth_check(a, "nope", &sub, &role), -1);
    assert_int_equal(lcm_auth_check(a, "", &sub, &role), -1);
    lcm_auth_free(a);
    lcm_config_free(c);
}

static void generated_when_none(void **state)
{
    (void)state;
    struct lcm_config *c = cfg_with(NULL);
    char *gen = NULL, err[256];
    struct lcm_auth *a = lcm_auth_new(c, &gen, err, sizeof(err));
    assert_non_null(a);
    assert_non_null(gen);
    const char *sub, *role;
    assert_int_equal(lcm_auth_check(a, gen, &sub, &role), 0);
    assert_string_equal(role, "admin");
    free(gen);
    lcm_auth_free(a);
    lcm_config_free(c);
}

static void malformed(void **state)
{
    (void)state;
    char *cases[][2] = {
        { "LCM_TOKEN=wizard:x:0000000000000000000000000000000000000000000000000000000000000000", "unknown role" },
        { "LCM_TOKEN=viewer:x:abc", "64 hex digits" },
        { "LCM_TOKEN=viewer", "expected <role>:<subject>:<sha256-hex>" },
        { "LCM_ADMIN_TOKEN=short", "at least 16" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *env[] = { cases[i][0], NULL };
        struct lcm_config *c = cfg_with(env);
        char *gen = NULL, err[256] = "";
        assert_null(lcm_auth_new(c, &gen, err, sizeof(err)));
        if (!strstr(err, cases[i][1]))
            fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i][1]);
        lcm_config_free(c);
    }
}

static void permissions(void **state)
{
    (void)state;
    assert_true(lcm_auth_role_allows("viewer", LCM_PERM_READ));
    assert_false(lcm_auth_role_allows("viewer", LCM_PERM_BOOK));
    assert_true(lcm_auth_role_allows("learner-service", LCM_PERM_BOOK));
    assert_false(lcm_auth_role_allows("learner-service", LCM_PERM_OPERATE));
    assert_true(lcm_auth_role_allows("author", LCM_PERM_AUTHOR));
    assert_false(lcm_auth_role_allows("author", LCM_PERM_ADMIN));
    assert_true(lcm_auth_role_allows("operator", LCM_PERM_OPERATE));
    assert_false(lcm_auth_role_allows("operator", LCM_PERM_ADMIN));
    assert_true(lcm_auth_role_allows("admin", LCM_PERM_ADMIN));
    assert_false(lcm_auth_role_allows("nobody", LCM_PERM_READ));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(configured_tokens), cmocka_unit_test(generated_when_none),
        cmocka_unit_test(malformed), cmocka_unit_test(permissions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
