/* session.cloudevent_received: the session aggregate accepts a recorded CloudEvent (any
 * status, version + 1, no other change) and refuses one without type/id/source. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "session.h"

static int apply(struct lcm_session *s, const char *type, const char *data, uint64_t v)
{
    cJSON *d = cJSON_Parse(data);
    assert_non_null(d);
    struct lcm_event ev = { type, v, "2026-01-01T10:00:00Z", "test", d };
    char err[200];
    int rc = lcm_kind_session.apply(s, &ev, err, sizeof(err));
    cJSON_Delete(d);
    return rc;
}

static const char created[] =
    "{\"definition_id\":\"d1\",\"definition_name\":\"n\",\"definition_version\":\"1\",\"owner\":\"o\","
    "\"reservation_id\":null,\"timeslot\":{\"start\":\"2026-01-01T10:00:00Z\",\"end\":\"2026-01-01T12:00:00Z\"},"
    "\"boot_lead_minutes\":-1,\"lds_enabled\":true,\"grading_enabled\":true}";

static void accepted(void **st)
{
    (void)st;
    struct lcm_session *s = lcm_session_new("s1");
    assert_int_equal(apply(s, "session.created", created, 1), 0);
    uint8_t status = s->status;
    assert_int_equal(apply(s, "session.cloudevent_received",
                           "{\"cloudevent\":{\"specversion\":\"1.0\",\"id\":\"e1\",\"source\":\"lds\","
                           "\"type\":\"com.cisco.lds.session.running.v1\",\"data\":{\"state\":\"running\"}}}", 2), 0);
    assert_int_equal(s->version, 2);
    assert_int_equal(s->status, status);
    lcm_session_free(s);
}

static void refused(void **st)
{
    (void)st;
    struct lcm_session *s = lcm_session_new("s1");
    assert_int_equal(apply(s, "session.created", created, 1), 0);
    assert_int_equal(apply(s, "session.cloudevent_received", "{}", 2), -1);
    assert_int_equal(apply(s, "session.cloudevent_received", "{\"cloudevent\":{\"id\":\"e\",\"source\":\"s\"}}", 2), -1);
    assert_int_equal(apply(s, "session.cloudevent_received", "{\"cloudevent\":\"x\"}", 2), -1);
    assert_int_equal(s->version, 1);
    /* not before the session exists */
    struct lcm_session *n = lcm_session_new("s2");
    assert_int_equal(apply(n, "session.cloudevent_received",
                           "{\"cloudevent\":{\"id\":\"e\",\"source\":\"s\",\"type\":\"t\"}}", 1), -1);
    lcm_session_free(n);
    lcm_session_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(accepted), cmocka_unit_test(refused) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
