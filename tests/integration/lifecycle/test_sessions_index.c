/* Unit test of the sessions controller's index (host/ctl/sessions_index.c): active / parked /
 * absent moves, wake-up order, and a randomised run against a plain array model with many
 * sessions (the heap and the hash table must agree with it after every operation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl/sessions_index.h"

static int has(char **ids, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ids[i], id))
            return 1;
    return 0;
}

static void test_moves(void **state)
{
    (void)state;
    struct lcm_sidx *x = lcm_sidx_new();
    assert_non_null(x);
    assert_int_equal(lcm_sidx_activate(x, "a"), 0);
    assert_int_equal(lcm_sidx_park(x, "b", 200), 0);
    assert_int_equal(lcm_sidx_park(x, "c", 100), 0);
    assert_int_equal(lcm_sidx_state(x, "a", NULL), 1);
    int64_t at;
    assert_int_equal(lcm_sidx_state(x, "b", &at), 2);
    assert_int_equal(at, 200);
    assert_int_equal(lcm_sidx_state(x, "zz", NULL), 0);
    assert_int_equal(lcm_sidx_nactive(x), 1);
    assert_int_equal(lcm_sidx_nparked(x), 2);
    assert_int_equal(lcm_sidx_next(x), 100);

    /* re-park earlier and later */
    assert_int_equal(lcm_sidx_park(x, "b", 50), 0);
    assert_int_equal(lcm_sidx_next(x), 50);
    assert_int_equal(lcm_sidx_park(x, "b", 300), 0);
    assert_int_equal(lcm_sidx_next(x), 100);

    /* nothing due yet, then c, then b */
    assert_int_equal(lcm_sidx_wake_due(x, 99), 0);
    assert_int_equal(lcm_sidx_wake_due(x, 100), 1);
    assert_int_equal(lcm_sidx_state(x, "c", NULL), 1);
    assert_int_equal(lcm_sidx_next(x), 300);
    size_t n;
    char **ids = lcm_sidx_active_ids(x, &n);
    assert_non_null(ids);
    assert_int_equal(n, 2);
    assert_true(has(ids, n, "a") && has(ids, n, "c"));
    assert_null(ids[n]);
    /* the copy stays valid while the index changes */
    lcm_sidx_remove(x, "a");
    lcm_sidx_remove(x, "c");
    assert_string_equal(ids[0], "c");
    lcm_sidx_ids_free(ids);
    assert_int_equal(lcm_sidx_nactive(x), 0);

    /* active → parked → active; removal of a parked one */
    assert_int_equal(lcm_sidx_activate(x, "b"), 0);
    assert_int_equal(lcm_sidx_nparked(x), 0);
    assert_int_equal(lcm_sidx_next(x), 0);
    assert_int_equal(lcm_sidx_park(x, "b", 10), 0);
    assert_int_equal(lcm_sidx_nactive(x), 0);
    lcm_sidx_remove(x, "b");
    lcm_sidx_remove(x, "b");
    assert_int_equal(lcm_sidx_nparked(x), 0);
    assert_int_equal(lcm_sidx_state(x, "b", NULL), 0);

    lcm_sidx_park(x, "p", 5);
    lcm_sidx_activate(x, "q");
    lcm_sidx_clear(x);
    assert_int_equal(lcm_sidx_nactive(x) + lcm_sidx_nparked(x), 0);
    assert_int_equal(lcm_sidx_state(x, "p", NULL), 0);
    lcm_sidx_free(x);
}

/* ---- randomised against a model ---- */

#define N 20000

struct model {
    int state[N];        /* 0 absent, 1 active, 2 parked */
    int64_t at[N];
};

static unsigned long rng = 12345;
static unsigned long rnd(void)
{
    rng = rng * 6364136223846793005UL + 1442695040888963407UL;
    return rng >> 33;
}

static void check_model(struct lcm_sidx *x, const struct model *m)
{
    size_t na = 0, np = 0;
    int64_t next = 0;
    for (int i = 0; i < N; i++) {
        if (m->state[i] == 1)
            na++;
        if (m->state[i] == 2) {
            np++;
            if (!next || m->at[i] < next)
                next = m->at[i];
        }
    }
    assert_int_equal(lcm_sidx_nactive(x), na);
    assert_int_equal(lcm_sidx_nparked(x), np);
    assert_int_equal(lcm_sidx_next(x), next);
}

static void test_random_many(void **state)
{
    (void)state;
    struct lcm_sidx *x = lcm_sidx_new();
    struct model *m = calloc(1, sizeof(*m));
    assert_non_null(x);
    assert_non_null(m);
    char id[32];
    int64_t now = 1000;
    for (int step = 0; step < 100000; step++) {
        int i = (int)(rnd() % N);
        snprintf(id, sizeof(id), "ses-%05d", i);
        unsigned long r = rnd() % 100;
        switch (r < 30 ? 0 : r < 65 ? 1 : r < 98 ? 3 : 4) {
        case 0:
            assert_int_equal(lcm_sidx_activate(x, id), 0);
            m->state[i] = 1;
            m->at[i] = 0;
            break;
        case 1: {
            int64_t at = now + (int64_t)(rnd() % 5000);
            assert_int_equal(lcm_sidx_park(x, id, at), 0);
            m->state[i] = 2;
            m->at[i] = at;
            break;
        }
        case 3:
            lcm_sidx_remove(x, id);
            m->state[i] = 0;
            break;
        default: {
            now += (int64_t)(rnd() % 50);
            size_t woke = 0;
            for (int k = 0; k < N; k++)
                if (m->state[k] == 2 && m->at[k] <= now) {
                    m->state[k] = 1;
                    m->at[k] = 0;
                    woke++;
                }
            assert_int_equal(lcm_sidx_wake_due(x, now), woke);
            break;
        }
        }
        int64_t at;
        assert_int_equal(lcm_sidx_state(x, id, &at), m->state[i]);
        if (m->state[i] == 2)
            assert_int_equal(at, m->at[i]);
        if (step % 5000 == 0)
            check_model(x, m);
    }
    check_model(x, m);
    size_t n;
    char **ids = lcm_sidx_active_ids(x, &n);
    assert_non_null(ids);
    assert_int_equal(n, lcm_sidx_nactive(x));
    for (size_t k = 0; k < n; k++) {
        int i = atoi(ids[k] + 4);
        assert_int_equal(m->state[i], 1);
    }
    lcm_sidx_ids_free(ids);
    free(m);
    lcm_sidx_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_moves),
        cmocka_unit_test(test_random_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
