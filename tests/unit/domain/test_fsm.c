/* Every allowed and every refused transition of the four state machines, checked through
 * the command functions and through apply (a forged event for a refused transition must not
 * fold). The expected tables are written here from DOMAIN.md, independently of fsm.c. */
#include "testutil.h"

#include "definition.h"
#include "fsm.h"
#include "lab.h"
#include "session.h"
#include "worker.h"

struct edge { const char *from; const char *to[16]; };

static const struct edge def_table[] = {
    {"pending_sync", {"active", "deleted"}},
    {"active", {"inactive", "deprecated", "deleted"}},
    {"inactive", {"active", "deleted"}},
    {"deprecated", {"deleted"}},
    {"deleted", {0}},
};
static const struct edge worker_table[] = {
    {"pending", {"provisioning", "failed"}},
    {"provisioning", {"starting", "failed"}},
    {"starting", {"running", "failed"}},
    {"running", {"draining", "terminating", "failed"}},
    {"draining", {"stopping", "running", "terminating", "failed"}},   /* running = cancel */
    {"stopping", {"stopped", "failed"}},
    {"stopped", {"starting", "terminating", "failed"}},
    {"terminating", {"terminated", "failed"}},
    {"terminated", {0}},
    {"failed", {"pending", "terminating"}},
};
static const struct edge session_table[] = {
    {"pending", {"scheduled", "expired", "terminated"}},
    {"scheduled", {"instantiating", "expired", "terminated"}},
    {"instantiating", {"ready", "expired", "terminated"}},
    {"ready", {"running", "expired", "terminated"}},
    {"running", {"collecting", "stopping", "expired", "terminated"}},
    {"collecting", {"grading", "stopping", "expired", "terminated"}},
    {"grading", {"stopping", "expired", "terminated"}},
    {"stopping", {"stopped", "terminated"}},
    {"stopped", {"archived", "terminated"}},
    {"expired", {"archived", "terminated"}},
    {"archived", {"terminated"}},
    {"terminated", {0}},
};
static const struct edge lab_table[] = {
    {"discovered", {"defined", "starting", "queued", "booted", "stopped", "wiped", "deleting",
                    "archived", "error", "orphaned"}},
    {"importing", {"defined", "error", "orphaned"}},
    {"defined", {"starting", "queued", "deleting", "error", "orphaned"}},
    {"starting", {"queued", "booted", "stopping", "error", "orphaned"}},
    {"queued", {"starting", "booted", "stopping", "error", "orphaned"}},
    {"booted", {"paused", "stopping", "error", "orphaned"}},
    {"paused", {"booted", "stopping", "error", "orphaned"}},
    {"stopping", {"stopped", "error", "orphaned"}},
    {"stopped", {"starting", "wiping", "deleting", "error", "orphaned"}},
    {"wiping", {"wiped", "error", "orphaned"}},
    {"wiped", {"starting", "queued", "deleting", "error", "orphaned"}},
    {"deleting", {"deleted", "error", "orphaned"}},
    {"deleted", {"archived"}},
    {"error", {"starting", "stopping", "wiping", "deleting", "orphaned", "archived"}},
    {"orphaned", {"deleting", "deleted", "archived"}},
    {"archived", {0}},
};

static int expected(const struct edge *t, size_t n, const char *from, const char *to)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(t[i].from, from))
            continue;
        for (int k = 0; t[i].to[k]; k++)
            if (!strcmp(t[i].to[k], to))
                return 1;
        return 0;
    }
    fail_msg("status %s missing from the expected table", from);
    return 0;
}

/* Per kind: an aggregate in `from`, the command, and the status after apply. */
struct machine {
    const struct lcm_fsm *m;
    const struct lcm_kind *k;
    const struct edge *table;
    size_t n;
    void *(*make)(int from);
    int (*cmd)(void *s, int to, struct lcm_events *out, struct lcm_derr *err);
    int (*status)(const void *s);
    const struct lcm_history *(*hist)(const void *s);
};

static void *mk_def(int from)
{
    struct lcm_definition *d = lcm_definition_new("d1");
    d->version = 1;
    d->name = strdup("lab");
    d->status = (uint8_t)from;
    return d;
}
static int cmd_def(void *s, int to, struct lcm_events *out, struct lcm_derr *err)
{
    return lcm_definition_cmd_transition(s, to, "test", "tester", T0, out, err);
}
static int st_def(const void *s) { return ((const struct lcm_definition *)s)->status; }
static const struct lcm_history *h_def(const void *s) { return &((const struct lcm_definition *)s)->history; }

static void *mk_wk(int from)
{
    struct lcm_worker *w = lcm_worker_new("w1");
    w->version = 1;
    w->status = (uint8_t)from;
    return w;
}
static int cmd_wk(void *s, int to, struct lcm_events *out, struct lcm_derr *err)
{
    return lcm_worker_cmd_transition(s, to, "test", "tester", T0, out, err);
}
static int st_wk(const void *s) { return ((const struct lcm_worker *)s)->status; }
static const struct lcm_history *h_wk(const void *s) { return &((const struct lcm_worker *)s)->history; }

static void *mk_ss(int from)
{
    struct lcm_session *s = lcm_session_new("s1");
    s->version = 1;
    s->definition_id = strdup("d1");
    s->status = (uint8_t)from;
    return s;
}
static int cmd_ss(void *s, int to, struct lcm_events *out, struct lcm_derr *err)
{
    if (to == LCM_SS_SCHEDULED)
        return lcm_session_cmd_schedule(s, "w1", "test", "tester", T0, out, err);
    return lcm_session_cmd_transition(s, to, "test", "tester", T0, out, err);
}
static int st_ss(const void *s) { return ((const struct lcm_session *)s)->status; }
static const struct lcm_history *h_ss(const void *s) { return &((const struct lcm_session *)s)->history; }

static void *mk_lab(int from)
{
    struct lcm_lab *l = lcm_lab_new("l1");
    l->version = 1;
    l->worker_id = strdup("w1");
    l->status = (uint8_t)from;
    return l;
}
static int cmd_lab(void *s, int to, struct lcm_events *out, struct lcm_derr *err)
{
    return lcm_lab_cmd_transition(s, to, "test", "tester", T0, out, err);
}
static int st_lab(const void *s) { return ((const struct lcm_lab *)s)->status; }
static const struct lcm_history *h_lab(const void *s) { return &((const struct lcm_lab *)s)->history; }

static void run_machine(const struct machine *mc)
{
    int allowed_n = 0, refused_n = 0;
    assert_int_equal((size_t)mc->m->count, mc->n);
    for (int from = 0; from < mc->m->count; from++) {
        for (int to = 0; to < mc->m->count; to++) {
            const char *fn = lcm_fsm_name(mc->m, from), *tn = lcm_fsm_name(mc->m, to);
            int want = from != to && expected(mc->table, mc->n, fn, tn);
            assert_int_equal(lcm_fsm_allowed(mc->m, from, to), want);
            void *s = mc->make(from);
            struct lcm_events out;
            struct lcm_derr err;
            lcm_events_init(&out);
            int rc = mc->cmd(s, to, &out, &err);
            if (want) {
                if (rc)
                    fail_msg("%s %s -> %s refused: %s", mc->m->kind, fn, tn, err.message);
                assert_int_equal(out.n, 1);
                char type[64];
                snprintf(type, sizeof type, "%s.%s", mc->m->kind, tn);
                assert_string_equal(out.v[0].type, type);
                fold(mc->k, s, &out);
                assert_int_equal(mc->status(s), to);
                const struct lcm_history *h = mc->hist(s);
                assert_int_equal(h->n, 1);
                assert_int_equal(h->v[0].from, from);
                assert_int_equal(h->v[0].to, to);
                assert_int_equal(h->v[0].at, T0);
                assert_string_equal(h->v[0].by, "tester");
                assert_string_equal(h->v[0].reason, "test");
                allowed_n++;
            } else {
                assert_int_equal(rc, from == to ? LCM_DERR_CONFLICT : LCM_DERR_CONFLICT);
                assert_int_equal(err.code, LCM_DERR_CONFLICT);
                assert_string_equal(err.field, "status");
                assert_int_equal(out.n, 0);
                /* a forged event for the refused transition does not fold either */
                char type[64], ebuf[256] = "";
                snprintf(type, sizeof type, "%s.%s", mc->m->kind, tn);
                cJSON *data = lcm_events_transition_data(mc->m, from, "forged");
                cJSON_AddStringToObject(data, "worker_id", "w1");
                lcm_events_add(&out, type, data, T0, "forger");
                if (lcm_events_apply(mc->k, s, &out, ebuf, sizeof ebuf) == 0)
                    fail_msg("forged %s %s -> %s folded", mc->m->kind, fn, tn);
                assert_true(ebuf[0] != '\0');
                assert_int_equal(mc->status(s), from);
                assert_int_equal(mc->k->version(s), 1);
                lcm_events_clear(&out);
                refused_n++;
            }
            mc->k->destroy(s);
        }
    }
    print_message("%s: %d allowed, %d refused transitions checked\n", mc->m->kind, allowed_n,
                  refused_n);
}

static void test_definition_fsm(void **st)
{
    struct machine mc = {&lcm_fsm_definition, &lcm_kind_definition, def_table,
                         sizeof def_table / sizeof def_table[0], mk_def, cmd_def, st_def, h_def};
    run_machine(&mc);
}

static void test_worker_fsm(void **st)
{
    struct machine mc = {&lcm_fsm_worker, &lcm_kind_worker, worker_table,
                         sizeof worker_table / sizeof worker_table[0], mk_wk, cmd_wk, st_wk, h_wk};
    run_machine(&mc);
}

static void test_session_fsm(void **st)
{
    struct machine mc = {&lcm_fsm_session, &lcm_kind_session, session_table,
                         sizeof session_table / sizeof session_table[0], mk_ss, cmd_ss, st_ss, h_ss};
    run_machine(&mc);
}

static void test_lab_fsm(void **st)
{
    struct machine mc = {&lcm_fsm_lab, &lcm_kind_lab, lab_table,
                         sizeof lab_table / sizeof lab_table[0], mk_lab, cmd_lab, st_lab, h_lab};
    run_machine(&mc);
}

/* A transition event whose `from` is not the current status is refused (stale writer). */
static void test_stale_from_refused(void **st)
{
    struct lcm_session *s = mk_ss(LCM_SS_READY);
    struct lcm_events out;
    char err[256];
    lcm_events_init(&out);
    lcm_events_add(&out, "session.running",
                   lcm_events_transition_data(&lcm_fsm_session, LCM_SS_PENDING, NULL), T0, "x");
    assert_int_not_equal(lcm_events_apply(&lcm_kind_session, s, &out, err, sizeof err), 0);
    assert_int_equal(s->status, LCM_SS_READY);
    lcm_events_clear(&out);
    lcm_session_free(s);
}

/* Scheduling is a transition that needs a worker; the plain transition refuses it. */
static void test_schedule_needs_worker(void **st)
{
    struct lcm_session *s = mk_ss(LCM_SS_PENDING);
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    assert_int_equal(lcm_session_cmd_transition(s, LCM_SS_SCHEDULED, NULL, "x", T0, &out, &err),
                     LCM_DERR_INVALID);
    assert_string_equal(err.field, "worker_id");
    assert_int_equal(lcm_session_cmd_schedule(s, "", NULL, "x", T0, &out, &err), LCM_DERR_INVALID);
    assert_int_equal(lcm_session_cmd_schedule(s, "w7", "placed", "ctl:scheduler", T0, &out, &err), 0);
    fold(&lcm_kind_session, s, &out);
    assert_string_equal(s->worker_id, "w7");
    assert_int_equal(s->status, LCM_SS_SCHEDULED);
    lcm_session_free(s);
}

/* Worker: EC2 observations may skip states (set from what EC2 says, noted in history);
 * drain and cancel-drain. */
static void test_worker_observe_and_drain(void **st)
{
    struct lcm_worker *w = mk_wk(LCM_WK_PENDING);
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    struct lcm_worker_observation ob = {.status = LCM_WK_RUNNING, .instance_id = "i-123",
                                        .public_ip = "198.51.100.7"};
    assert_int_equal(lcm_worker_cmd_observe(w, &ob, "ctl:workers", T0, &out, &err), 0);
    fold(&lcm_kind_worker, w, &out);
    assert_int_equal(w->status, LCM_WK_RUNNING);
    assert_string_equal(w->instance_id, "i-123");
    assert_int_equal(w->history.n, 1);
    assert_non_null(strstr(w->history.v[0].reason, "outside the table"));
    /* same observation again: nothing changes, no event */
    assert_int_equal(lcm_worker_cmd_observe(w, &ob, "ctl:workers", T0, &out, &err), 0);
    assert_int_equal(out.n, 0);
    /* cancel-drain only when draining */
    assert_int_equal(lcm_worker_cmd_cancel_drain(w, "admin", T0, &out, &err), LCM_DERR_CONFLICT);
    assert_int_equal(lcm_worker_cmd_drain(w, "scale down", T0 + 600, "ctl:autoscaler", T0, &out, &err), 0);
    fold(&lcm_kind_worker, w, &out);
    assert_int_equal(w->status, LCM_WK_DRAINING);
    assert_int_equal(w->drain.deadline, T0 + 600);
    assert_string_equal(w->drain.reason, "scale down");
    assert_int_equal(lcm_worker_drain_done(w, T0), 1);          /* no sessions */
    assert_int_equal(lcm_worker_cmd_cancel_drain(w, "admin", T0 + 1, &out, &err), 0);
    fold(&lcm_kind_worker, w, &out);
    assert_int_equal(w->status, LCM_WK_RUNNING);
    assert_int_equal(w->drain.deadline, 0);
    assert_null(w->drain.reason);
    assert_int_equal(w->history.n, 3);
    assert_string_equal(w->history.v[2].reason, "drain cancelled");
    lcm_worker_free(w);
}

/* Lab: CML observations map DEFINED_ON_CORE/STARTED/BOOTED/STOPPED/QUEUED. */
static void test_lab_observe(void **st)
{
    assert_int_equal(lcm_lab_status_from_cml("DEFINED_ON_CORE"), LCM_LAB_DEFINED);
    assert_int_equal(lcm_lab_status_from_cml("STARTED"), LCM_LAB_BOOTED);
    assert_int_equal(lcm_lab_status_from_cml("BOOTED"), LCM_LAB_BOOTED);
    assert_int_equal(lcm_lab_status_from_cml("STOPPED"), LCM_LAB_STOPPED);
    assert_int_equal(lcm_lab_status_from_cml("QUEUED"), LCM_LAB_QUEUED);
    assert_int_equal(lcm_lab_status_from_cml("bogus"), -1);
    struct lcm_lab *l = mk_lab(LCM_LAB_IMPORTING);
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    assert_int_equal(lcm_lab_cmd_observe(l, "STARTED", "ctl:labs", T0, &out, &err), 0);
    fold(&lcm_kind_lab, l, &out);
    assert_int_equal(l->status, LCM_LAB_BOOTED);
    assert_int_equal(lcm_lab_cmd_observe(l, "BOOTED", "ctl:labs", T0, &out, &err), 0);
    assert_int_equal(out.n, 0);
    assert_int_equal(lcm_lab_cmd_observe(l, "nope", "ctl:labs", T0, &out, &err), LCM_DERR_INVALID);
    lcm_lab_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_definition_fsm),
        cmocka_unit_test(test_worker_fsm),
        cmocka_unit_test(test_session_fsm),
        cmocka_unit_test(test_lab_fsm),
        cmocka_unit_test(test_stale_from_refused),
        cmocka_unit_test(test_schedule_needs_worker),
        cmocka_unit_test(test_worker_observe_and_drain),
        cmocka_unit_test(test_lab_observe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
