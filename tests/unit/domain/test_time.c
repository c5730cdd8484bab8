/* Session time rules: lead window, boot lead, expiry with grace, collection at the end of
 * the timeslot when grading is enabled, and which statuses hold capacity. */
#include "testutil.h"

#include "fsm.h"
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lead_window),
        cmocka_unit_test(test_boot_lead),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_capacity_statuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
