/* Version arithmetic (semver precedence, CML versions as numbers), RFC 3339 and SHA-256. */
#include "testutil.h"

#include "rfc3339.h"
#include "sha256.h"
#include "version.h"

static int sv(const char *a, const char *b)
{
    int c = 99;
    assert_int_equal(lcm_semver_cmp_str(a, b, &c), 0);
    return c;
}

static void test_semver(void **st)
{
    const char *ordered[] = {"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
                             "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1",
                             "1.1.0", "1.10.0", "2.0.0"};
    size_t n = sizeof ordered / sizeof ordered[0];
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            int c = sv(ordered[i], ordered[j]);
            assert_int_equal(c, i < j ? -1 : i > j ? 1 : 0);
        }
    assert_int_equal(sv("1.0.0+build.1", "1.0.0+build.2"), 0);
    struct lcm_semver v;
    const char *bad[] = {"", "1", "1.0", "01.0.0", "1.0.0-", "1.0.0-01", "v1.0.0", "1.0.0.0",
                         "1.0.0 ", "1.0.0-a..b", "1.0.0+", "a.b.c"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(lcm_semver_parse(bad[i], &v), -1);
    assert_int_equal(lcm_semver_parse("10.20.30-rc.1+sha.5", &v), 0);
    assert_int_equal(v.major, 10);
    assert_int_equal(v.minor, 20);
    assert_int_equal(v.patch, 30);
}

static void test_cml_versions(void **st)
{
    /* the (fix): compared as numbers, never strings */
    assert_true(lcm_version_cmp("2.10.0", "2.9.1") > 0);
    assert_true(lcm_version_cmp("2.9.1", "2.10.0") < 0);
    assert_int_equal(lcm_version_cmp("2.9", "2.9.0"), 0);
    assert_true(lcm_version_cmp("2.9.1", "2.9") > 0);
    assert_true(lcm_version_cmp("2.9.0-dev", "2.9.0") < 0);
    assert_int_equal(lcm_version_cmp("2.9.1+build.5", "2.9.1"), 0);
    assert_true(lcm_version_cmp("garbage", "0.0.1") < 0);
    assert_true(lcm_version_in_range("2.10.0", "2.7.0", "2.10.0"));
    assert_false(lcm_version_in_range("2.10.1", "2.7.0", "2.10.0"));
    assert_false(lcm_version_in_range("2.6.9", "2.7.0", NULL));
    assert_true(lcm_version_in_range("2.7.0", "2.7.0", ""));
    assert_true(lcm_version_in_range("3.0", NULL, NULL));
    assert_false(lcm_version_in_range(NULL, NULL, NULL));
    assert_false(lcm_version_valid("2..9"));
    assert_false(lcm_version_valid("2.9."));
    assert_false(lcm_version_valid("1.2.3.4.5.6.7"));
}

static void test_rfc3339(void **st)
{
    char buf[LCM_TIME_BUFSZ];
    int64_t t;
    assert_int_equal(lcm_rfc3339_format(T0, buf, sizeof buf), 0);
    assert_string_equal(buf, "2025-11-27T10:00:00Z");
    assert_int_equal(lcm_rfc3339_parse(buf, &t), 0);
    assert_int_equal(t, T0);
    assert_int_equal(lcm_rfc3339_parse("2025-11-27T12:00:00.123+02:00", &t), 0);
    assert_int_equal(t, T0);
    assert_int_equal(lcm_rfc3339_parse("2024-02-29T00:00:00Z", &t), 0);
    assert_int_equal(lcm_rfc3339_parse("2025-02-29T00:00:00Z", &t), -1);
    assert_int_equal(lcm_rfc3339_parse("2025-11-27T10:00:00", &t), -1);
    assert_int_equal(lcm_rfc3339_parse("2025-13-01T00:00:00Z", &t), -1);
    assert_int_equal(lcm_rfc3339_parse("2025-11-27T10:00:00Zjunk", &t), -1);
    assert_int_equal(lcm_rfc3339_format(0, buf, sizeof buf), 0);
    assert_string_equal(buf, "1970-01-01T00:00:00Z");
    /* round trip over a wide range */
    for (int64_t x = -86400LL * 365 * 50; x < 86400LL * 365 * 200; x += 86400 * 37 + 3671) {
        assert_int_equal(lcm_rfc3339_format(x, buf, sizeof buf), 0);
        assert_int_equal(lcm_rfc3339_parse(buf, &t), 0);
        assert_int_equal(t, x);
    }
}

static void test_sha256(void **st)
{
    char hex[65];
    lcm_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    lcm_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    lcm_sha256_hex(m, strlen(m), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_semver),
        cmocka_unit_test(test_cml_versions),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_sha256),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
