/* Unit tests of lcmctl's pure parts: the SSE parser (field rules, CR/LF/CRLF split across
 * reads, ids persisting, comments, retry) and the table/key-value renderers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "out.h"
#include "sse.h"

struct got {
    int n;
    char id[8][64], event[8][64], data[8][256];
    long retry[8];
    int stop_after;
};

static int collect(const struct lcmctl_sse_event *ev, void *ud)
{
    struct got *g = ud;
    if (g->n < 8) {
        snprintf(g->id[g->n], 64, "%s", ev->id);
        snprintf(g->event[g->n], 64, "%s", ev->event);
        snprintf(g->data[g->n], 256, "%s", ev->data);
        g->retry[g->n] = ev->retry_ms;
    }
    g->n++;
    return g->stop_after && g->n >= g->stop_after ? 7 : 0;
}

static void feed_bytewise(struct lcmctl_sse *p, const char *s)
{
    for (size_t i = 0; s[i]; i++)
        assert_int_equal(lcmctl_sse_feed(p, s + i, 1), 0);
}

static void test_sse_basic(void **st)
{
    (void)st;
    struct got g = { 0 };
    struct lcmctl_sse p;
    lcmctl_sse_init(&p, collect, &g);
    const char *s = ": keep-alive\n"
                    "id: 1-0\nevent: session.ready\ndata: {\"a\":1}\n\n"
                    "data: line1\ndata:line2\n\n"            /* no space after the colon */
                    "id\nevent:x\n\n"                          /* no data: no dispatch, id reset */
                    "retry: 2500\ndata\n\n";                   /* "data" alone: empty line */
    assert_int_equal(lcmctl_sse_feed(&p, s, strlen(s)), 0);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.id[0], "1-0");
    assert_string_equal(g.event[0], "session.ready");
    assert_string_equal(g.data[0], "{\"a\":1}");
    assert_string_equal(g.id[1], "1-0");       /* the id persists */
    assert_string_equal(g.event[1], "message");
    assert_string_equal(g.data[1], "line1\nline2");
    assert_string_equal(g.id[2], "");
    assert_string_equal(g.data[2], "");
    assert_int_equal(g.retry[2], 2500);
    lcmctl_sse_free(&p);
}

static void test_sse_line_endings_split(void **st)
{
    (void)st;
    struct got g = { 0 };
    struct lcmctl_sse p;
    lcmctl_sse_init(&p, collect, &g);
    /* CRLF and bare CR, fed one byte at a time so CR and LF arrive in different reads */
    feed_bytewise(&p, "id: 7\r\ndata: a\r\n\r\nid: 8\rdata: b\r\r");
    assert_int_equal(g.n, 2);
    assert_string_equal(g.id[0], "7");
    assert_string_equal(g.data[0], "a");
    assert_string_equal(g.id[1], "8");
    assert_string_equal(g.data[1], "b");
    lcmctl_sse_free(&p);
}

static void test_sse_partial_then_reset(void **st)
{
    (void)st;
    struct got g = { 0 };
    struct lcmctl_sse p;
    lcmctl_sse_init(&p, collect, &g);
    const char *a = "id: 5-1\ndata: done\n\nid: 5-2\ndata: half";
    assert_int_equal(lcmctl_sse_feed(&p, a, strlen(a)), 0);
    assert_int_equal(g.n, 1);
    assert_string_equal(p.last_id, "5-1");
    lcmctl_sse_reset(&p);   /* the connection dropped mid-event */
    /* the unfinished event 5-2 was never delivered: the resume must ask from 5-1 */
    assert_string_equal(p.id, "5-1");
    const char *b = "\n\ndata: next\n\n";
    assert_int_equal(lcmctl_sse_feed(&p, b, strlen(b)), 0);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.data[1], "next");
    lcmctl_sse_free(&p);
}

static void test_sse_stop(void **st)
{
    (void)st;
    struct got g = { .stop_after = 1 };
    struct lcmctl_sse p;
    lcmctl_sse_init(&p, collect, &g);
    const char *s = "data: 1\n\ndata: 2\n\n";
    assert_int_equal(lcmctl_sse_feed(&p, s, strlen(s)), 7);
    assert_int_equal(g.n, 1);
    lcmctl_sse_free(&p);
}

static char *render_table(const char *json, const struct lcmctl_col *cols, size_t n, int wide)
{
    cJSON *j = cJSON_Parse(json);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    lcmctl_table(f, j, cols, n, wide);
    fclose(f);
    cJSON_Delete(j);
    return out;
}

static void test_table(void **st)
{
    (void)st;
    static const struct lcmctl_col cols[] = {
        { "ID", "id" }, { "CPU", "allocated.cpu_cores/declared.cpu_cores" }, { "N", "#sessions" },
        { "READY", "cml.ready" }, { "URL", "user_session.login_url" },
    };
    char *t = render_table("[{\"id\":\"w-1\",\"allocated\":{\"cpu_cores\":4},\"declared\":{\"cpu_cores\":48},"
                           "\"sessions\":[{},{}],\"cml\":{\"ready\":true},\"user_session\":{\"login_url\":null}},"
                           "{\"id\":\"worker-22\",\"sessions\":[],\"cml\":{\"ready\":false}}]",
                           cols, 5, 0);
    assert_string_equal(t, "ID         CPU   N  READY  URL\n"
                           "w-1        4/48  2  yes    -\n"
                           "worker-22  -/-   0  no     -\n");
    free(t);
    t = render_table("[]", cols, 5, 0);
    assert_string_equal(t, "(none)\n");
    free(t);
}

static void test_table_cut(void **st)
{
    (void)st;
    static const struct lcmctl_col cols[] = { { "X", "x" } };
    char json[300];
    snprintf(json, sizeof(json), "[{\"x\":\"%s\"}]",
             "0123456789012345678901234567890123456789012345678901234567890123456789");
    char *t = render_table(json, cols, 1, 0);
    /* 59 characters and an ellipsis */
    assert_string_equal(t, "X\n01234567890123456789012345678901234567890123456789012345678\xe2\x80\xa6\n");
    free(t);
    t = render_table(json, cols, 1, 1);
    assert_non_null(strstr(t, "0123456789\n"));
    free(t);
}

static void test_kv(void **st)
{
    (void)st;
    cJSON *j = cJSON_Parse("{\"id\":\"s-1\",\"timeslot\":{\"start\":\"2025-01-01T00:00:00Z\"},"
                           "\"tags\":[\"a\",\"b\"],\"hist\":[{\"to\":\"ready\"}],\"score\":null,\"n\":2.5}");
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    lcmctl_kv(f, j);
    fclose(f);
    assert_string_equal(out, "id: s-1\ntimeslot.start: 2025-01-01T00:00:00Z\ntags: a,b\n"
                             "hist[0].to: ready\nscore: -\nn: 2.5\n");
    free(out);
    cJSON_Delete(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sse_basic),
        cmocka_unit_test(test_sse_line_endings_split),
        cmocka_unit_test(test_sse_partial_then_reset),
        cmocka_unit_test(test_sse_stop),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_table_cut),
        cmocka_unit_test(test_kv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
