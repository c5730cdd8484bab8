/* Session time rules: lead window, boot lead, expiry with grace, collection at the end of
 * the timeslot when grading is enabled, and which statuses hold capacity. */
#include "testutil.h"

#include "fsm.h"
#include "rfc3339.h"
#include "session.h"
#include "session_time.h"

static struct lcm_session *at_status(int st, int64_t start, int64_t end)
{
    struct lcm_session *s = lcm_session_new("s");
    s->version = 1;
    s->status = (uint8_t)st;
    s->start = start;
    s->end = end;
    return s;
}

static void test_lead_window(void **st)
{
    struct lcm_time_params p;
    lcm_time_params_default(&p);
    int64_t start = T0 + 3600;
    struct lcm_session *s = at_status(LCM_SS_PENDING, start, start + 3600);
    assert_false(lcm_session_in_lead_window(s, start - 35 * 60 - 1, &p));
    assert_true(lcm_session_in_lead_window(s, start - 35 * 60, &p));
    p.lead_window_minutes = 10;                    /* configurable */
    assert_false(lcm_session_in_lead_window(s, start - 11 * 60, &p));
    s->start = 0;                                  /* "now" session: at once */
    assert_true(lcm_session_in_lead_window(s, T0, &p));
    s->status = LCM_SS_SCHEDULED;
    assert_false(lcm_session_in_lead_window(s, T0, &p));
    lcm_session_free(s);
}

static void test_boot_lead(void **st)
{
    struct lcm_time_params p;
    lcm_time_params_default(&p);
    int64_t start = T0 + 3600;
    struct lcm_session *s = at_status(LCM_SS_SCHEDULED, start, start + 3600);
    s->boot_lead_minutes = -1;                     /* default 20 */
    assert_false(lcm_session_due_to_instantiate(s, start - 20 * 60 - 1, &p));
    assert_true(lcm_session_due_to_instantiate(s, start - 20 * 60, &p));
    s->boot_lead_minutes = 5;                      /* the definition's */
    assert_false(lcm_session_due_to_instantiate(s, start - 6 * 60, &p));
    assert_true(lcm_session_due_to_instantiate(s, start - 5 * 60, &p));
    s->start = 0;
    assert_true(lcm_session_due_to_instantiate(s, T0, &p));
    s->status = LCM_SS_PENDING;
    assert_false(lcm_session_due_to_instantiate(s, T0, &p));
    lcm_session_free(s);
}

static void test_expiry(void **st)
{
    struct lcm_time_params p;
    lcm_time_params_default(&p);
    int64_t start = T0, end = T0 + 3600;
    /* (fix) a missed timeslot: pending/scheduled past start + 5 min grace → expired */
    for (int stt = LCM_SS_PENDING; stt <= LCM_SS_SCHEDULED; stt++) {
        struct lcm_session *s = at_status(stt, start, end);
        assert_int_equal(lcm_session_deadline_action(s, start + 300, &p), LCM_DEADLINE_NONE);
        assert_int_equal(lcm_session_deadline_action(s, start + 301, &p), LCM_DEADLINE_EXPIRE);
        assert_true(lcm_session_is_expired(s, start + 301, &p));
        lcm_session_free(s);
    }
    /* not yet stopping when the end passes → expired */
    const int live[] = {LCM_SS_INSTANTIATING, LCM_SS_READY, LCM_SS_RUNNING};
    for (int i = 0; i < 3; i++) {
        struct lcm_session *s = at_status(live[i], start, end);
        assert_int_equal(lcm_session_deadline_action(s, end - 1, &p), LCM_DEADLINE_NONE);
        assert_int_equal(lcm_session_deadline_action(s, end, &p), LCM_DEADLINE_EXPIRE);
        lcm_session_free(s);
    }
    /* running with grading: collect instead; collecting/grading get a grace */
    struct lcm_session *s = at_status(LCM_SS_RUNNING, start, end);
    s->grading_enabled = 1;
    assert_int_equal(lcm_session_deadline_action(s, end, &p), LCM_DEADLINE_COLLECT);
    s->status = LCM_SS_COLLECTING;
    assert_int_equal(lcm_session_deadline_action(s, end + 29 * 60, &p), LCM_DEADLINE_NONE);
    assert_int_equal(lcm_session_deadline_action(s, end + 30 * 60, &p), LCM_DEADLINE_EXPIRE);
    s->status = LCM_SS_STOPPING;
    assert_int_equal(lcm_session_deadline_action(s, end + 99999, &p), LCM_DEADLINE_NONE);
    s->status = LCM_SS_EXPIRED;
    assert_true(lcm_session_is_expired(s, T0, &p));
    lcm_session_free(s);
}

static void test_capacity_statuses(void **st)
{
    for (int i = 0; i < LCM_SS__COUNT; i++) {
        int want = i == LCM_SS_SCHEDULED || i == LCM_SS_INSTANTIATING || i == LCM_SS_READY ||
                   i == LCM_SS_RUNNING || i == LCM_SS_COLLECTING || i == LCM_SS_GRADING ||
                   i == LCM_SS_STOPPING;
        assert_int_equal(lcm_session_holds_capacity(i), want);
    }
    assert_true(lcm_session_is_terminal(LCM_SS_TERMINATED));
    assert_false(lcm_session_is_terminal(LCM_SS_GRADING));
}

/* RFC 3339 formatting gives the bytes of the "%04d-%02u-%02uT%02d:%02d:%02dZ" it replaced
 * (civil date from a reference computation via parse), over the whole range and its edges;
 * and parses back to the same seconds. */
static void test_rfc3339_format(void **st)
{
    (void)st;
    const int64_t lo = -62167219200LL, hi = 253402300799LL;
    const int64_t edges[] = {lo, lo + 1, -1, 0, 1, 86399, 86400, 951782400, 951868800,
                             T0, 4102444800LL, hi - 1, hi};
    char buf[LCM_TIME_BUFSZ];
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 200000 + (int)(sizeof edges / sizeof *edges); i++) {
        int64_t t;
        if (i < (int)(sizeof edges / sizeof *edges)) {
            t = edges[i];
        } else {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t = lo + (int64_t)(x % (uint64_t)(hi - lo + 1));
        }
        assert_int_equal(lcm_rfc3339_format(t, buf, sizeof buf), 0);
        assert_int_equal(strlen(buf), 20);
        int y, mo, d, h, mi, se;
        char z = 0;
        assert_int_equal(sscanf(buf, "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &se, &z), 7);
        char want[LCM_TIME_BUFSZ];
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, mo, d, h, mi, se);
        assert_string_equal(buf, want);
        int64_t back = 0;
        assert_int_equal(lcm_rfc3339_parse(buf, &back), 0);
        assert_true(back == t);
        /* the civil fields agree with a day count done the slow way */
        int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400), secs = t - days * 86400;
        assert_int_equal(h * 3600 + mi * 60 + se, secs);
    }
    assert_int_equal(lcm_rfc3339_format(T0, buf, sizeof buf), 0);
    assert_string_equal(buf, "2025-11-27T10:00:00Z");
    assert_int_equal(lcm_rfc3339_format(0, buf, sizeof buf), 0);
    assert_string_equal(buf, "1970-01-01T00:00:00Z");
    assert_int_equal(lcm_rfc3339_format(hi, buf, sizeof buf), 0);
    assert_string_equal(buf, "9999-12-31T23:59:59Z");
    assert_int_equal(lcm_rfc3339_format(lo, buf, sizeof buf), 0);
    assert_string_equal(buf, "0000-01-01T00:00:00Z");
    assert_int_equal(lcm_rfc3339_format(hi + 1, buf, sizeof buf), -1);
    assert_int_equal(lcm_rfc3339_format(T0, buf, 20), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3339_format),
        cmocka_unit_test(test_lead_window),
        cmocka_unit_test(test_boot_lead),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_capacity_statuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
