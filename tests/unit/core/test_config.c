/* Config: defaults, file, env override, invalid values rejected with a clear message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/config.h"

static char *write_tmp(const char *text)
{
    static char path[64];
    strcpy(path, "/tmp/lcm-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void defaults(void **state)
{
    (void)state;
    char err[256];
    struct lcm_config *c = lcm_config_load(NULL, NULL, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(lcm_config_str(c, "listen"), "127.0.0.1:8080");
    assert_null(lcm_config_str(c, "redis_url"));
    assert_int_equal(lcm_config_int(c, "http_max_body_bytes"), 1048576);
    assert_true(lcm_config_bool(c, "metrics_open"));
    assert_string_equal(lcm_config_origin(c, "listen"), "default");
    lcm_config_free(c);
}

static void file_then_env(void **state)
{
    (void)state;
    char *p = write_tmp("# comment\nlisten = 127.0.0.1:9000\nlog_level = \"debug\"\n\n"
                        "token = viewer:alice:0000000000000000000000000000000000000000000000000000000000000000\n"
                        "token = operator:bob:1111111111111111111111111111111111111111111111111111111111111111\n");
    char *env[] = { "LCM_LISTEN=127.0.0.1:9100", "PATH=/bin", "LCM_HTTP_TIMEOUT_S=3", NULL };
    char err[256];
    struct lcm_config *c = lcm_config_load(p, env, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(lcm_config_str(c, "listen"), "127.0.0.1:9100");
    assert_string_equal(lcm_config_origin(c, "listen"), "env");
    assert_string_equal(lcm_config_str(c, "log_level"), "debug");
    assert_string_equal(lcm_config_origin(c, "log_level"), "file");
    assert_int_equal(lcm_config_int(c, "http_timeout_s"), 3);
    const char *const *items;
    assert_int_equal(lcm_config_list(c, "token", &items), 2);
    assert_true(strncmp(items[1], "operator:bob:", 13) == 0);
    lcm_config_free(c);
    unlink(p);
}

static void expect_error(const char *file_text, char **env, const char *needle)
{
    char err[256] = "";
    char *p = file_text ? write_tmp(file_text) : NULL;
    struct lcm_config *c = lcm_config_load(p, env, err, sizeof(err));
    if (p)
        unlink(p);
    assert_null(c);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void invalid_values(void **state)
{
    (void)state;
    expect_error("listen = nonsense\n", NULL, "listen: 'nonsense' is not host:port");
    expect_error("bogus_key = 1\n", NULL, "unknown key 'bogus_key'");
    expect_error("log_level = loud\n", NULL, "not one of debug|info|warn|error");
    expect_error("http_timeout_s = 0\n", NULL, "out of range");
    expect_error("http_timeout_s = 12abc\n", NULL, "not an integer");
    expect_error("listen 127.0.0.1:1\n", NULL, "expected 'key = value'");
    expect_error("metrics_open = perhaps\n", NULL, "not a boolean");
    char *env[] = { "LCM_HTTP_MAX_BODY_BYTES=-5", NULL };
    expect_error(NULL, env, "LCM_HTTP_MAX_BODY_BYTES");
    expect_error("redis_url = \n", NULL, "empty value");
}

static void missing_file(void **state)
{
    (void)state;
    char err[256];
    assert_null(lcm_config_load("/nonexistent/lcm.conf", NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/lcm.conf"));
}

static void secrets_masked(void **state)
{
    (void)state;
    char *env[] = { "LCM_ADMIN_TOKEN=super-secret-value-123", NULL };
    char err[256];
    struct lcm_config *c = lcm_config_load(NULL, env, err, sizeof(err));
    assert_non_null(c);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    lcm_config_dump(c, f);
    fclose(f);
    assert_null(strstr(buf, "super-secret-value-123"));
    assert_non_null(strstr(buf, "admin_token = <hidden>"));
    free(buf);
    lcm_config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults), cmocka_unit_test(file_then_env), cmocka_unit_test(invalid_values),
        cmocka_unit_test(missing_file), cmocka_unit_test(secrets_masked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
