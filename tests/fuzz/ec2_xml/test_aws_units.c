/* Unit tests of the aws plugin's pure parts: XML readers on real-AWS and moto response shapes
 * (from tests/fuzz/ec2_xml/corpus), parser limits, form encoding, ClientTokens, base64 and
 * timestamps. The network side is covered by tests/integration/aws against moto. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "aws_query.h"
#include "aws_xml.h"

static char *slurp(const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fuzz/ec2_xml/corpus/%s", LCM_SOURCE_DIR, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return b;
}

static struct aws_doc *load(const char *name)
{
    size_t n;
    char *b = slurp(name, &n), err[128];
    struct aws_doc *d = NULL;
    int rc = aws_xml_parse(b, n, &d, err, sizeof err);
    free(b);
    if (rc != 0)
        print_message("parse %s: %s\n", name, err);
    return d;
}

static void test_describe_paginated(void **st)
{
    struct aws_doc *d = load("describe_paginated.xml");
    assert_non_null(d);
    struct lcm_cloud_instances in;
    assert_int_equal(aws_xml_instances(d, &in), 0);
    assert_int_equal(in.n, 2);
    assert_string_equal(in.v[0].instance_id, "i-1");
    assert_int_equal(in.v[0].state, LCM_INSTANCE_RUNNING);
    assert_int_equal(in.v[0].tags.n, 2);
    assert_string_equal(in.v[0].tags.v[0].key, "lcm:worker_id");
    assert_string_equal(in.v[0].tags.v[0].value, "w-1");
    assert_string_equal(in.v[0].tags.v[1].value, "");
    assert_null(in.v[0].public_ip);
    assert_int_equal(in.v[1].state, LCM_INSTANCE_STOPPED);
    assert_string_equal(in.v[1].state_reason, "User initiated");
    assert_string_equal(in.next_token, "eyJ0b2tlbiI6ICJuZXh0In0=");
    aws_doc_free(d);
}

static void test_moto_shapes(void **st)
{
    struct aws_doc *d = load("run_instances.xml");
    struct lcm_cloud_instances in;
    assert_int_equal(aws_xml_instances(d, &in), 0);
    assert_int_equal(in.n, 1);
    assert_string_equal(in.v[0].client_token, "lcm-w1");
    assert_non_null(in.v[0].private_ip);
    aws_doc_free(d);

    d = load("stop_instances.xml");
    struct lcm_cloud_changes ch;
    assert_int_equal(aws_xml_changes(d, &ch), 0);
    assert_int_equal(ch.n, 1);
    assert_int_equal(ch.v[0].current, LCM_INSTANCE_STOPPING);
    aws_doc_free(d);

    d = load("create_tags_moto.xml");
    assert_int_equal(aws_xml_return_true(d, "CreateTagsResponse"), 0);
    assert_int_equal(aws_xml_return_true(d, "DeleteTagsResponse"), -1);
    aws_doc_free(d);
    d = load("create_tags_real.xml");
    assert_int_equal(aws_xml_return_true(d, "CreateTagsResponse"), 0);
    aws_doc_free(d);

    d = load("start_missing_id.xml");
    assert_int_equal(aws_xml_changes(d, &ch), -1);
    aws_doc_free(d);
}

static void test_images_newest_first(void **st)
{
    struct aws_doc *d = load("describe_images_real.xml");
    struct lcm_cloud_images im;
    assert_int_equal(aws_xml_images(d, &im), 0);
    assert_int_equal(im.n, 2);
    assert_string_equal(im.v[0].name, "cml-2.9.1");
    assert_string_equal(im.v[1].image_id, "ami-0abcdef1234567890");
    assert_string_equal(im.v[0].state, "available");
    aws_doc_free(d);
}

static void test_errors(void **st)
{
    const char *code, *msg;
    struct aws_doc *d = load("error_ec2_real.xml");
    assert_int_equal(aws_xml_error(d, &code, &msg), 0);
    assert_string_equal(code, "RequestLimitExceeded");
    assert_string_equal(msg, "Request limit exceeded.");
    aws_doc_free(d);
    d = load("error_authfailure.xml");
    assert_int_equal(aws_xml_error(d, &code, &msg), 0);
    assert_string_equal(code, "AuthFailure");
    aws_doc_free(d);
    d = load("error_cw_signature.xml");
    assert_int_equal(aws_xml_error(d, &code, &msg), 0);
    assert_string_equal(code, "SignatureDoesNotMatch");
    aws_doc_free(d);
    d = load("describe_paginated.xml");
    assert_int_equal(aws_xml_error(d, &code, &msg), -1);
    aws_doc_free(d);
}

static void test_metric_data(void **st)
{
    struct aws_doc *d = load("metric_data.xml");
    struct lcm_cloud_datapoints dp;
    const char *next;
    assert_int_equal(aws_xml_datapoints(d, &dp, &next), 0);
    assert_int_equal(dp.n, 3);
    assert_int_equal(dp.v[0].at_ms, 1735689600000LL);
    assert_true(dp.v[0].value == 0.0);
    assert_int_equal(dp.v[1].at_ms, 1735689900500LL);
    assert_true(dp.v[1].value == 100.0);
    assert_true(dp.v[2].value == 12.5);
    assert_string_equal(next, "abc");
    aws_doc_free(d);
    d = load("metric_mismatch.xml");
    assert_int_equal(aws_xml_datapoints(d, &dp, &next), -1);
    aws_doc_free(d);
    d = load("get_metric_data_empty.xml");
    assert_int_equal(aws_xml_datapoints(d, &dp, &next), 0);
    assert_int_equal(dp.n, 0);
    aws_doc_free(d);
}

static void test_parser_limits(void **st)
{
    assert_null(load("doctype_entities.xml"));
    assert_null(load("deep_nesting.xml"));
    assert_null(load("truncated_prefixed.xml"));
    struct aws_doc *d = NULL;
    char err[128];
    assert_int_equal(aws_xml_parse("", 0, &d, err, sizeof err), -1);
    assert_int_equal(aws_xml_parse("not xml", 7, &d, err, sizeof err), -1);
    /* 64 levels are fine, 65 are not */
    char buf[2048] = "";
    for (int i = 0; i < 64; i++)
        strcat(buf, "<a>");
    for (int i = 0; i < 64; i++)
        strcat(buf, "</a>");
    assert_int_equal(aws_xml_parse(buf, strlen(buf), &d, err, sizeof err), 0);
    aws_doc_free(d);
    memmove(buf + 3, buf, strlen(buf) + 1);
    memcpy(buf, "<a>", 3);
    strcat(buf, "</a>");
    assert_int_equal(aws_xml_parse(buf, strlen(buf), &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "nested"));
}

static void test_form_encoding(void **st)
{
    struct aws_form f;
    aws_form_init(&f, "DescribeImages", "2016-11-15");
    aws_form_add(&f, "Filter.1.Value.1", "cml 2.9*:x/y~z&=%20");
    aws_form_addf(&f, "v", "Tag.%d.Key", 3);
    assert_false(f.oom);
    assert_string_equal(f.buf, "Action=DescribeImages&Version=2016-11-15&Filter.1.Value.1="
                               "cml+2.9%2A%3Ax%2Fy~z%26%3D%2520&Tag.3.Key=v");
    aws_form_free(&f);
}

static void test_client_token(void **st)
{
    char a[72], b[72];
    assert_int_equal(aws_client_token("w-123", a, sizeof a), 0);
    assert_string_equal(a, "lcm-w-123");
    char longid[200];
    memset(longid, 'x', 150);
    longid[150] = '\0';
    assert_int_equal(aws_client_token(longid, a, sizeof a), 0);
    assert_int_equal(aws_client_token(longid, b, sizeof b), 0);
    assert_string_equal(a, b);                          /* deterministic */
    assert_true(strlen(a) <= 64 && aws_client_token_valid(a));
    longid[0] = 'y';
    assert_int_equal(aws_client_token(longid, b, sizeof b), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(aws_client_token("has space", a, sizeof a), 0);
    assert_true(aws_client_token_valid(a) && !strchr(a, ' '));
    assert_int_equal(aws_client_token("", a, sizeof a), -1);
    assert_false(aws_client_token_valid(""));
    memset(longid, 'a', 65);
    longid[65] = '\0';
    assert_false(aws_client_token_valid(longid));
}

static void test_base64_and_time(void **st)
{
    static const char *const in[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
    static const char *const out[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=",
                                       "Zm9vYmFy" };
    for (int i = 0; i < 7; i++) {
        char *s = aws_base64(in[i], strlen(in[i]));
        assert_string_equal(s, out[i]);
        free(s);
    }
    char t[32];
    aws_iso8601(1735689600123LL, t);
    assert_string_equal(t, "2025-01-01T00:00:00Z");
    assert_int_equal(aws_parse_iso8601_ms("2025-01-01T00:00:00Z"), 1735689600000LL);
    assert_int_equal(aws_parse_iso8601_ms("2025-01-01T00:00:00.25Z"), 1735689600250LL);
    assert_int_equal(aws_parse_iso8601_ms("2025-01-01 00:00:00"), -1);
    assert_int_equal(aws_parse_iso8601_ms("2025-01-01T00:00:00Zjunk"), -1);
    uint64_t s = 42;
    assert_int_not_equal(aws_rand_next(&s), aws_rand_next(&s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_describe_paginated), cmocka_unit_test(test_moto_shapes),
        cmocka_unit_test(test_images_newest_first), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_metric_data), cmocka_unit_test(test_parser_limits),
        cmocka_unit_test(test_form_encoding), cmocka_unit_test(test_client_token),
        cmocka_unit_test(test_base64_and_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
