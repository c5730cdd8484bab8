/* Between the C structs of policy.h and Lua tables (internal to host/policy): pushing a
 * policy's arguments, validating what it returns, and reading fixture files. */
#ifndef LCM_POLICY_LUA_H
#define LCM_POLICY_LUA_H

#include <lua.h>

#include "policy.h"

#define LCM_POLICY_MAX_LAUNCH_ENTRIES 64
#define LCM_POLICY_MAX_LAUNCH_COUNT 1000

/* The function each policy's module table must have. */
const char *lcm_policy_fn_name(enum lcm_policy_kind kind);

/* The worker tables of one placement cycle, kept in the VM between calls (see
 * lcm_policy_place_cycle_begin): ref is a registry table {[key+1] = worker table} and ids a
 * registry table anchoring each cached worker's id string, so that idp[key] (the interned
 * Lua string of that id) stays valid and unique while the cache lives; a short result
 * string equal to an id is that very object, which lets validation compare pointers. */
struct lcm_policy_wcache {
    int ref, ids_ref;      /* LUA_NOREF until the first call creates them */
    size_t n;              /* keys are 0..n-1 */
    unsigned char *valid;  /* per key: the cached table is current */
    const char **idp;      /* per key: the id string inside the VM (valid when valid[key]) */
};

/* One call of a policy function, run through lcm_policy_vm_run(lcm_policy_lua_call, &ctx).
 * out points to the kind's *_out struct (zeroed by the caller; filled only when valid, freed
 * by the caller in any case). */
struct lcm_policy_call {
    enum lcm_policy_kind kind;
    int module_ref;        /* registry ref of the module table */
    const void *in;
    void *out;
    int invalid;           /* the result failed validation (why in verr) */
    char verr[256];
    /* placement only, optional: worker tables reused across the calls of a cycle; keys[j]
     * is the cache key of in->workers[j] */
    struct lcm_policy_wcache *wc;
    const size_t *keys;
};
int lcm_policy_lua_call(lua_State *L);

/* One fixture case: an input, and the decision it must produce. */
struct lcm_policy_fixture {
    char name[128];
    struct lcm_policy_placement_in place;
    struct lcm_policy_scale_up_in up;
    struct lcm_policy_scale_down_in down;
    /* owned arrays the inputs point into */
    struct lcm_policy_worker *workers, *fleet, *eligible;
    struct lcm_policy_demand *demand;
    struct lcm_policy_rejection *rejections;
    struct lcm_policy_template *templates;
    /* expected decisions (order matters for placement only) */
    struct lcm_policy_placement_out exp_place;
    struct lcm_policy_scale_up_out exp_up;
    struct lcm_policy_scale_down_out exp_down;
};
struct lcm_policy_fixtures {
    enum lcm_policy_kind kind;
    const char *name;        /* chunk name for messages */
    const char *src;
    size_t len;
    struct lcm_policy_fixture *v;
    size_t n;
};
/* Runs the fixture chunk and reads its cases (through lcm_policy_vm_run). */
int lcm_policy_lua_read_fixtures(lua_State *L);
void lcm_policy_fixtures_free(struct lcm_policy_fixtures *f);

/* Compares a decision with a fixture's expectation; returns 0 or -1 with err. */
int lcm_policy_fixture_compare(enum lcm_policy_kind kind, const struct lcm_policy_fixture *fx,
                               const void *out, char *err, size_t errlen);

int lcm_policy_parse_license(const char *s, unsigned *bit);
int lcm_policy_parse_action(const char *s, enum lcm_policy_action *a);

#endif
