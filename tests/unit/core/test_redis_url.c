/* Redis URL parsing: redis://, unix:// and sentinel:// (sentinel list, default port, IPv6,
 * master name, db), and the malformed URLs each form refuses with a message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/redis.h"

static void redis_and_unix_unchanged(void **state)
{
    (void)state;
    struct lcm_redis_addr a;
    char err[256];
    assert_int_equal(lcm_redis_parse_url("redis://127.0.0.1:6390/3", &a, err, sizeof(err)), 0);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 6390);
    assert_int_equal(a.db, 3);
    assert_false(a.is_sentinel);
    assert_int_equal(lcm_redis_parse_url("redis://localhost", &a, err, sizeof(err)), 0);
    assert_int_equal(a.port, 6379);
    assert_int_equal(lcm_redis_parse_url("unix:///tmp/r.sock?db=2", &a, err, sizeof(err)), 0);
    assert_true(a.is_unix);
    assert_string_equal(a.path, "/tmp/r.sock");
    assert_int_equal(a.db, 2);
    assert_false(a.is_sentinel);
}

static void sentinel_list(void **state)
{
    (void)state;
    struct lcm_redis_addr a;
    char err[256];
    assert_int_equal(lcm_redis_parse_url("sentinel://127.0.0.1:26380,127.0.0.2:26381,localhost/mymaster",
                                         &a, err, sizeof(err)), 0);
    assert_true(a.is_sentinel);
    assert_false(a.is_unix);
    assert_int_equal(a.nsentinels, 3);
    assert_string_equal(a.sentinels[0].host, "127.0.0.1");
    assert_int_equal(a.sentinels[0].port, 26380);
    assert_string_equal(a.sentinels[1].host, "127.0.0.2");
    assert_int_equal(a.sentinels[1].port, 26381);
    assert_string_equal(a.sentinels[2].host, "localhost");
    assert_int_equal(a.sentinels[2].port, 26379);   /* default sentinel port */
    assert_string_equal(a.master, "mymaster");
    assert_int_equal(a.db, 0);
    assert_string_equal(a.host, "");                /* no primary known before discovery */
}

static void sentinel_single_db_ipv6(void **state)
{
    (void)state;
    struct lcm_redis_addr a;
    char err[256];
    assert_int_equal(lcm_redis_parse_url("sentinel://[::1]:26379/lcm-primary_1.x/4", &a, err, sizeof(err)), 0);
    assert_int_equal(a.nsentinels, 1);
    assert_string_equal(a.sentinels[0].host, "::1");
    assert_int_equal(a.sentinels[0].port, 26379);
    assert_string_equal(a.master, "lcm-primary_1.x");
    assert_int_equal(a.db, 4);
    assert_int_equal(lcm_redis_parse_url("sentinel://[::1]/m", &a, err, sizeof(err)), 0);
    assert_int_equal(a.sentinels[0].port, 26379);
    assert_int_equal(lcm_redis_parse_url("sentinel://h:1/m/", &a, err, sizeof(err)), 0);
    assert_int_equal(a.db, 0);
}

static void sentinel_refused(void **state)
{
    (void)state;
    static const struct { const char *url, *needle; } bad[] = {
        { "sentinel://127.0.0.1:26379", "master name" },
        { "sentinel://127.0.0.1:26379/", "master name" },
        { "sentinel:///mymaster", "without sentinels" },
        { "sentinel://h:0/m", "bad sentinel address" },
        { "sentinel://h:65536/m", "bad sentinel address" },
        { "sentinel://h:12x/m", "bad sentinel address" },
        { "sentinel://h:/m", "bad sentinel address" },
        { "sentinel://h1,,h2/m", "bad sentinel address" },
        { "sentinel://h1,/m", "empty sentinel address" },
        { "sentinel://[::1/m", "bad sentinel address" },
        { "sentinel://[::1]x/m", "bad sentinel address" },
        { "sentinel://u:p@h/m", "credentials" },
        { "sentinel://h/my master", "bad character" },
        { "sentinel://h/m/x", "bad db" },
        { "sentinel://h/m/-1", "bad db" },
        { "sentinel://a,b,c,d,e,f,g,h,i/m", "more than 8" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct lcm_redis_addr a;
        char err[256] = "";
        int rc = lcm_redis_parse_url(bad[i].url, &a, err, sizeof(err));
        if (rc != -1 || !strstr(err, bad[i].needle))
            fail_msg("%s: rc=%d err=\"%s\" (wanted \"%s\")", bad[i].url, rc, err, bad[i].needle);
    }
    /* the longest master name that fits, and one past it */
    char url[300], name[200];
    memset(name, 'm', 127);
    name[127] = 0;
    snprintf(url, sizeof(url), "sentinel://h/%s", name);
    struct lcm_redis_addr a;
    char err[256];
    assert_int_equal(lcm_redis_parse_url(url, &a, err, sizeof(err)), 0);
    assert_int_equal(strlen(a.master), 127);
    memset(name, 'm', 128);
    name[128] = 0;
    snprintf(url, sizeof(url), "sentinel://h/%s", name);
    assert_int_equal(lcm_redis_parse_url(url, &a, err, sizeof(err)), -1);
    assert_int_equal(lcm_redis_parse_url("sentinels://h/m", &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "must start with"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(redis_and_unix_unchanged),
        cmocka_unit_test(sentinel_list),
        cmocka_unit_test(sentinel_single_db_ipv6),
        cmocka_unit_test(sentinel_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
