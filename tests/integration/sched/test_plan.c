/* Planner units: the scheduler's split verdicts (static per definition + dynamic per
 * placement) equal lcm_placement_check on thousands of random (worker, definition) pairs;
 * tentative placements respect capacity and the personal-licence rule; bin packing; the
 * scale-down guard refuses any action on a busy worker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl/autoscaler.h"
#include "ctl/scheduler_plan.h"
#include "domain/definition.h"
#include "domain/fsm.h"
#include "domain/worker.h"
#include "policy/policy_builtin.h"

static const char *const VERS[] = { "2.8.0", "2.9.0", "2.9.1", "2.10.0", NULL };
static const char *const NDS[] = { "iosv", "csr1000v", "nxosv", "ubuntu" };

static struct lcm_worker *rand_worker(int i)
{
    char id[32];
    snprintf(id, sizeof id, "w%04d", i);
    struct lcm_worker *w = lcm_worker_new(id);
    w->version = 1;
    static const uint8_t st[] = { LCM_WK_RUNNING, LCM_WK_RUNNING, LCM_WK_RUNNING, LCM_WK_DRAINING,
                                  LCM_WK_PENDING, LCM_WK_STOPPED };
    w->status = st[rand() % 6];
    w->cml.ready = rand() % 8 != 0;
    const char *v = VERS[rand() % 5];
    w->cml.version = v ? strdup(v) : NULL;
    w->cml.n_node_definitions = (uint16_t)(rand() % 5);
    w->cml.node_definitions = calloc(4, sizeof(char *));
    for (int k = 0; k < w->cml.n_node_definitions && k < 4; k++)
        w->cml.node_definitions[k] = strdup(NDS[k]);
    if (w->cml.n_node_definitions > 4)
        w->cml.n_node_definitions = 4;
    static const uint8_t lic[] = { LCM_LIC_ENTERPRISE, LCM_LIC_PERSONAL, LCM_LIC_EVALUATION };
    w->license.type = lic[rand() % 3];
    w->declared = (struct lcm_capacity){ 48, 192, 256, 200 };
    w->allocated = (struct lcm_capacity){ rand() % 49, rand() % 193, rand() % 257, rand() % 201 };
    w->nsessions = (uint32_t)(rand() % 3);
    lcm_ports_init(&w->ports, 2000, (uint16_t)(2000 + rand() % 8));
    return w;
}

/* nsessions was set without a session list: reset it before freeing */
static void wfree(struct lcm_worker *w)
{
    w->nsessions = 0;
    lcm_worker_free(w);
}

static struct lcm_definition *rand_def(int i)
{
    char id[32];
    snprintf(id, sizeof id, "d%03d", i);
    struct lcm_definition *d = lcm_definition_new(id);
    d->req.need = (struct lcm_capacity){ rand() % 16, rand() % 64, rand() % 80, rand() % 40 };
    d->license_affinity = (uint8_t)(rand() % 8);
    const char *mn = VERS[rand() % 5], *mx = VERS[rand() % 5];
    d->req.cml_version_min = mn ? strdup(mn) : NULL;
    d->req.cml_version_max = rand() % 2 && mx ? strdup(mx) : NULL;
    d->req.n_node_definitions = (uint16_t)(rand() % 3);
    d->req.node_definitions = calloc(3, sizeof(char *));
    for (int k = 0; k < d->req.n_node_definitions; k++)
        d->req.node_definitions[k] = strdup(NDS[rand() % 4]);
    d->nports = (uint16_t)(rand() % 6);
    return d;
}

static void snap_from(struct lcm_sched_snap *sn, struct lcm_worker **ws, size_t n, size_t shortlist)
{
    memset(sn, 0, sizeof *sn);
    sn->shortlist = shortlist;
    sn->wk = calloc(n, sizeof *sn->wk);
    sn->nwk = n;
    for (size_t i = 0; i < n; i++) {
        sn->wk[i].w = ws[i];
        sn->wk[i].sh = *ws[i];
        sn->wk[i].idrank = (uint32_t)i;
        lcm_sched_policy_worker(ws[i], &sn->wk[i].pw);
    }
}

static void test_verdicts_equal_placement_check(void **st)
{
    (void)st;
    srand(42);
    enum { NW = 300, ND = 40 };
    struct lcm_worker *ws[NW];
    for (int i = 0; i < NW; i++)
        ws[i] = rand_worker(i);
    struct lcm_sched_snap sn;
    snap_from(&sn, ws, NW, 8);
    size_t checked = 0, hist[LCM_REJ__COUNT] = { 0 };
    for (int j = 0; j < ND; j++) {
        struct lcm_definition *d = rand_def(j);
        struct lcm_sched_def *df = lcm_sched_snap_def(&sn, d->id, d);
        assert_non_null(df);
        for (int i = 0; i < NW; i++) {
            enum lcm_place_reject want = lcm_placement_check(ws[i], &df->req);
            enum lcm_place_reject got = lcm_sched_verdict(&sn, df, (size_t)i);
            if (want != got)
                fail_msg("worker %d def %d: planner says %s, lcm_placement_check says %s", i, j,
                         lcm_place_reject_name(got), lcm_place_reject_name(want));
            hist[want]++;
            checked++;
        }
        sn.defs[sn.ndefs - 1].d = NULL;   /* d is freed now; the entry keeps its verdicts */
        lcm_definition_free(d);
    }
    /* the random mix exercised every rule */
    for (int r = 0; r < LCM_REJ__COUNT; r++)
        if (!hist[r])
            fail_msg("rule %s never hit", lcm_place_reject_name((enum lcm_place_reject)r));
    assert_int_equal(checked, NW * ND);
    lcm_sched_snap_free(&sn);
    for (int i = 0; i < NW; i++)
        wfree(ws[i]);
}

static struct lcm_worker *worker(const char *id, int lic, int cpu_alloc, uint32_t nsess)
{
    struct lcm_worker *w = lcm_worker_new(id);
    w->version = 1;
    w->status = LCM_WK_RUNNING;
    w->cml.ready = 1;
    w->cml.version = strdup("2.9.0");
    w->license.type = (uint8_t)lic;
    w->declared = (struct lcm_capacity){ 48, 192, 256, 200 };
    w->allocated = (struct lcm_capacity){ cpu_alloc, cpu_alloc * 4, 0, 0 };
    w->nsessions = nsess;
    lcm_ports_init(&w->ports, 2000, 9999);
    return w;
}

static void test_bin_packing_and_personal(void **st)
{
    (void)st;
    struct lcm_worker *ws[4] = { worker("a-empty", LCM_LIC_ENTERPRISE, 0, 0),
                                 worker("b-half", LCM_LIC_ENTERPRISE, 24, 0),
                                 worker("c-personal", LCM_LIC_PERSONAL, 0, 0),
                                 worker("d-quarter", LCM_LIC_ENTERPRISE, 12, 0) };
    struct lcm_sched_snap sn;
    snap_from(&sn, ws, 4, 32);
    for (size_t i = 0; i < 4; i++)
        sn.wk[i].util = lcm_policy_utilisation(&sn.wk[i].pw);
    struct lcm_definition *d = lcm_definition_new("d");
    d->req.need = (struct lcm_capacity){ 8, 16, 10, 5 };
    d->license_affinity = LCM_LIC_PERSONAL;   /* enterprise and personal workers serve it */
    struct lcm_sched_def *df = lcm_sched_snap_def(&sn, "d", d);
    struct lcm_sched_decision dec;
    lcm_sched_decision_init(&dec);
    static const char *const sids[] = { "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10" };
    /* the most utilised worker takes sessions until it is full; the empty one stays empty */
    int placed_on[4] = { 0 };
    for (int k = 0; k < 10; k++) {
        assert_int_equal(lcm_sched_decide(&sn, df, sids[k], NULL, NULL, LCM_SCHED_POLICY_BUILTIN, 0, 0, &dec), 0);
        if (dec.chosen < 0)
            break;
        placed_on[dec.chosen]++;
        assert_int_equal(lcm_sched_snap_take(&sn, df, (size_t)dec.chosen, sids[k]), 0);
    }
    assert_int_equal(placed_on[1], 3);     /* b: 24 + 3×8 = 48 */
    assert_int_equal(placed_on[3], 4);     /* d: 12 + 4×8 = 44 */
    assert_true(placed_on[2] <= 1);        /* personal: at most one session */
    assert_int_equal(placed_on[0], 10 - 3 - 4 - placed_on[2]);
    /* capacity never exceeded */
    for (size_t i = 0; i < 4; i++)
        assert_true(sn.wk[i].sh.allocated.cpu_cores <= 48);
    assert_int_equal(sn.wk[2].sh.nsessions <= 1, 1);
    lcm_sched_decision_free(&dec);
    sn.defs[0].d = NULL;
    lcm_definition_free(d);
    lcm_sched_snap_free(&sn);
    for (int i = 0; i < 4; i++)
        wfree(ws[i]);
}

static void test_guard_refuses_busy(void **st)
{
    (void)st;
    struct lcm_worker *busy = worker("busy", LCM_LIC_ENTERPRISE, 8, 1);
    struct lcm_worker *idle = worker("idle", LCM_LIC_ENTERPRISE, 0, 0);
    for (int a = LCM_POLICY_DRAIN; a <= LCM_POLICY_TERMINATE; a++) {
        assert_non_null(lcm_autoscaler_guard(busy, 0, a));
        /* a scheduled session that has no allocation yet also counts */
        assert_non_null(lcm_autoscaler_guard(idle, 1, a));
        assert_null(lcm_autoscaler_guard(idle, 0, a));
    }
    idle->status = LCM_WK_STOPPED;
    assert_non_null(lcm_autoscaler_guard(idle, 0, LCM_POLICY_DRAIN));
    assert_null(lcm_autoscaler_guard(idle, 0, LCM_POLICY_TERMINATE));
    wfree(busy);
    wfree(idle);
}

static void set_nds(struct lcm_worker *w, const char *a, const char *b)
{
    w->cml.node_definitions = calloc(2, sizeof(char *));
    w->cml.node_definitions[0] = strdup(a);
    w->cml.n_node_definitions = 1;
    if (b) {
        w->cml.node_definitions[1] = strdup(b);
        w->cml.n_node_definitions = 2;
    }
}

/* A template is judged unable to serve a definition only from workers whose CML was seen,
 * only for reasons their load does not explain, and only when none of them passes. */
static void test_cannot_serve(void **st)
{
    (void)st;
    struct lcm_definition *d = lcm_definition_new("d-iosv");
    d->req.need = (struct lcm_capacity){ 8, 16, 20, 5 };
    d->req.cml_version_min = strdup("2.9.0");
    d->req.node_definitions = calloc(1, sizeof(char *));
    d->req.node_definitions[0] = strdup("iosv");
    d->req.n_node_definitions = 1;
    d->nports = 3;
    char why[300];

    /* nothing observed yet: a first launch is allowed */
    assert_int_equal(lcm_autoscaler_cannot_serve(NULL, 0, d, why, sizeof why), 0);
    struct lcm_worker *w1 = worker("w1", LCM_LIC_ENTERPRISE, 0, 0);
    set_nds(w1, "alpine", NULL);
    const struct lcm_worker *ws[3] = { w1 };
    w1->status = LCM_WK_STARTING;
    assert_int_equal(lcm_autoscaler_cannot_serve(ws, 1, d, why, sizeof why), 0);
    w1->status = LCM_WK_RUNNING;
    w1->cml.ready = 0;   /* CML booting: what it offers is not known yet */
    assert_int_equal(lcm_autoscaler_cannot_serve(ws, 1, d, why, sizeof why), 0);
    w1->cml.ready = 1;
    assert_int_equal(lcm_autoscaler_cannot_serve(ws, 1, d, why, sizeof why), 1);
    assert_non_null(strstr(why, "node_definition iosv missing on its workers"));
    assert_non_null(strstr(why, "w1"));
    /* a stopped worker still tells what the template's CML offers */
    w1->status = LCM_WK_STOPPED;
    w1->cml.ready = 0;
    assert_int_equal(lcm_autoscaler_cannot_serve(ws, 1, d, why, sizeof why), 1);

    /* a full worker that has iosv: capacity is what a new worker fixes */
    struct lcm_worker *w2 = worker("w2", LCM_LIC_ENTERPRISE, 48, 3);
    set_nds(w2, "alpine", "iosv");
    ws[1] = w2;
    assert_int_equal(lcm_autoscaler_cannot_serve(ws, 2, d, why, sizeof why), 0);

    /* CML version below the minimum */
    free(w2->cml.version);
    w2->cml.version = strdup("2.8.1");
    assert_int_equal(lcm_autoscaler_cannot_serve(ws, 2, d, why, sizeof why), 1);
    assert_non_null(strstr(why, "2 observed"));
    assert_int_equal(lcm_autoscaler_cannot_serve(ws + 1, 1, d, why, sizeof why), 1);
    assert_non_null(strstr(why, "cml_version 2.8.1"));

    /* licence: an evaluation-licensed worker does not serve an enterprise-only definition */
    struct lcm_worker *w3 = worker("w3", LCM_LIC_EVALUATION, 0, 0);
    set_nds(w3, "iosv", NULL);
    d->license_affinity = LCM_LIC_ENTERPRISE;
    ws[2] = w3;
    assert_int_equal(lcm_autoscaler_cannot_serve(ws + 2, 1, d, why, sizeof why), 1);
    assert_non_null(strstr(why, "license evaluation"));
    d->license_affinity = 0;
    assert_int_equal(lcm_autoscaler_cannot_serve(ws, 3, d, why, sizeof why), 0);

    /* a need above what an empty worker offers (licence node limit below the template's) */
    w3->license.node_limit = 4;
    assert_int_equal(lcm_autoscaler_cannot_serve(ws + 2, 1, d, why, sizeof why), 1);
    assert_non_null(strstr(why, "nodes"));

    wfree(w1);
    wfree(w2);
    wfree(w3);
    lcm_definition_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verdicts_equal_placement_check),
        cmocka_unit_test(test_bin_packing_and_personal),
        cmocka_unit_test(test_guard_refuses_busy),
        cmocka_unit_test(test_cannot_serve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
