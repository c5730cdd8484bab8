/* Sandbox tests: runaway loops (plain, pcall-wrapped, in coroutines) are cut off within the
 * budget, the unbounded C functions (patterns, string.rep, table walks with metamethods) are
 * unavailable or capped, the memory cap holds, and io/os/require/load/bytecode are gone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "policy_test_util.h"
#include "policy_vm.h"

#define MEM (16u << 20)
#define BUDGET 20000000u
#define DEADLINE_MS 30
/* What "cut off within the budget" means here: the deadline plus slack for a loaded CI box
 * (and ASan); far below the 100 ms the event loop may be held. */
#define CUTOFF_MS 90.0

struct snippet {
    const char *src;
    size_t len;
};

static int run_chunk(lua_State *L)
{
    struct snippet *s = lua_touserdata(L, 1);
    lcm_policy_vm_dochunk(L, "=snippet", s->src, s->len);
    return 0;
}

static enum lcm_policy_vm_status run_n(const char *src, size_t len, uint64_t budget,
                                       unsigned deadline_ms, double *ms, char *err, size_t errlen)
{
    struct lcm_policy_vm vm;
    char e[256];
    assert_int_equal(lcm_policy_vm_open(&vm, MEM, e, sizeof(e)), 0);
    struct snippet s = {src, len};
    long long t0 = ptu_now_ns(), c0 = ptu_cpu_ns();
    lcm_policy_vm_arm(&vm, budget, deadline_ms);
    enum lcm_policy_vm_status st = lcm_policy_vm_run(&vm, run_chunk, &s, err, errlen);
    double wall = ptu_ms_since(t0);
    /* ms = CPU time spent (the loop's cost); the wall clock only has to be sane, since a
     * loaded CI box may not schedule this thread for a while */
    if (ms)
        *ms = ptu_cpu_ms_since(c0);
    if (wall > 2000)
        fail_msg("wall clock %.0f ms for: %.60s", wall, src);
    lcm_policy_vm_close(&vm);
    return st;
}

static enum lcm_policy_vm_status run(const char *src, double *ms, char *err, size_t errlen)
{
    return run_n(src, strlen(src), BUDGET, DEADLINE_MS, ms, err, errlen);
}

static void expect_cut(const char *src)
{
    char err[256] = "";
    double ms = 0;
    enum lcm_policy_vm_status st = run(src, &ms, err, sizeof(err));
    if (st != LCM_VM_TIMEOUT || ms > CUTOFF_MS)
        fail_msg("snippet not cut off: status %d after %.1f ms (%s): %s", st, ms, err, src);
}

static void test_infinite_loop_cut(void **state)
{
    (void)state;
    expect_cut("while true do end");
    expect_cut("local t = {} while true do t[#t % 10 + 1] = 1 end");
    expect_cut("local function f() return f() end return f()"); /* tail call loop */
}

static void test_instruction_budget(void **state)
{
    (void)state;
    char err[256];
    double ms;
    /* a large deadline: only the instruction budget can stop it */
    enum lcm_policy_vm_status st =
        run_n("for i = 1, 1e12 do end", 22, 1000000, 10000, &ms, err, sizeof(err));
    assert_int_equal(st, LCM_VM_TIMEOUT);
    assert_non_null(strstr(err, "instruction budget"));
    assert_true(ms < 1000);
    /* and a modest loop within the budget completes */
    assert_int_equal(run("local n = 0 for i = 1, 100000 do n = n + i end assert(n > 0)", NULL,
                         err, sizeof(err)),
                     LCM_VM_OK);
}

static void test_pcall_cannot_swallow(void **state)
{
    (void)state;
    expect_cut("while true do pcall(function() while true do end end) end");
    /* no allocation in the outer loop: only the persistent hook can stop this one */
    expect_cut("local f = function() while true do end end while true do pcall(f) end");
    expect_cut("local f = function() for i = 1, 1e12 do end end "
               "while true do local ok = pcall(f) end");
    expect_cut("while true do pcall(function() for i = 1, 1e12 do end end) end");
    expect_cut("local function f() while true do end end "
               "while true do xpcall(f, function(m) return m end) end");
    expect_cut("while true do pcall(pcall, function() while true do end end) end");
    /* even when the script returns normally right after catching the stop */
    char err[256];
    assert_int_equal(run("local ok = pcall(function() while true do end end) return ok", NULL, err,
                         sizeof(err)),
                     LCM_VM_TIMEOUT);
}

static void test_coroutine_loop_cut(void **state)
{
    (void)state;
    expect_cut("local co = coroutine.wrap(function() while true do end end) co()");
    expect_cut("local co = coroutine.create(function() while true do end end) "
               "coroutine.resume(co)");
    expect_cut("while true do "
               "  local co = coroutine.create(function() while true do end end) "
               "  coroutine.resume(co) "
               "end");
    expect_cut("while true do pcall(coroutine.wrap(function() "
               "  while true do pcall(function() while true do end end) end end)) end");
    /* yielding ping-pong forever */
    expect_cut("local co = coroutine.wrap(function() while true do coroutine.yield() end end) "
               "while true do co() end");
    /* coroutines still work normally */
    char err[256];
    assert_int_equal(run("local co = coroutine.wrap(function(a) local b = coroutine.yield(a + 1) "
                         "return b * 2 end) assert(co(1) == 2) assert(co(5) == 10)",
                         NULL, err, sizeof(err)),
                     LCM_VM_OK);
}

static void test_pattern_bomb_unavailable(void **state)
{
    (void)state;
    char err[256];
    double ms = 0;
    /* the classic catastrophic backtracking: seconds of CPU inside one C call if allowed */
    enum lcm_policy_vm_status st =
        run("return string.find(string.rep('a', 200), '.-.-.-.-.-.-.-.-.-.-.-.-b')", &ms, err,
            sizeof(err));
    assert_int_equal(st, LCM_VM_ERROR);
    assert_non_null(strstr(err, "patterns are disabled"));
    if (ms >= CUTOFF_MS)
        fail_msg("took %.1f ms", ms);
    st = run("return string.find(string.rep('a', 200), '(a*)*b')", &ms, err, sizeof(err));
    assert_int_equal(st, LCM_VM_ERROR);
    if (ms >= CUTOFF_MS)
        fail_msg("took %.1f ms", ms);
    /* the other pattern functions are gone, through the string metatable too */
    assert_int_equal(run("assert(string.match == nil and string.gmatch == nil and "
                         "string.gsub == nil and ('x').match == nil and ('x').gsub == nil)",
                         NULL, err, sizeof(err)),
                     LCM_VM_OK);
    /* plain find keeps working, with Lua's init rules */
    assert_int_equal(run("assert(string.find('hello world', 'o w', 1, true) == 5) "
                         "local a, b = ('abcabc'):find('bc', 3) assert(a == 5 and b == 6) "
                         "assert(('abc'):find('x') == nil) "
                         "assert(('abc'):find('c', -1) == 3) "
                         "assert(('abc'):find('', 10) == nil) "
                         "assert(('a.b'):find('.', 1, true) == 2)",
                         NULL, err, sizeof(err)),
                     LCM_VM_OK);
}

static void test_string_rep_bomb_refused(void **state)
{
    (void)state;
    char err[256];
    double ms;
    assert_int_equal(run("return string.rep('x', 1e9)", &ms, err, sizeof(err)), LCM_VM_ERROR);
    if (!strstr(err, "string.rep"))
        fail_msg("unexpected error: %s", err);
    if (ms >= CUTOFF_MS)
        fail_msg("took %.1f ms", ms);
    assert_int_equal(run("return ('xy'):rep(1 << 40, ',')", &ms, err, sizeof(err)), LCM_VM_ERROR);
    assert_int_equal(run("return string.rep('x', math.maxinteger)", &ms, err, sizeof(err)),
                     LCM_VM_ERROR);
    /* the empty piece would make the original loop 2^62 times in C */
    assert_int_equal(run("assert(string.rep('', 1 << 62) == '')", &ms, err, sizeof(err)),
                     LCM_VM_OK);
    if (ms >= CUTOFF_MS)
        fail_msg("took %.1f ms", ms);
    assert_int_equal(run("return string.rep('', 1 << 62, ',')", &ms, err, sizeof(err)),
                     LCM_VM_ERROR);
    /* one string is capped at 64 KiB, however it is built */
    assert_int_equal(run("return string.rep('x', 70000)", &ms, err, sizeof(err)), LCM_VM_ERROR);
    assert_int_equal(run("local s = string.rep('x', 60000) return s .. s", &ms, err, sizeof(err)),
                     LCM_VM_NOMEM);
    /* capped pieces added up still hit the memory cap */
    enum lcm_policy_vm_status st =
        run("local t = {} for i = 1, 1e6 do t[i] = string.rep('x', 60000) .. i end", &ms, err,
            sizeof(err));
    /* the cap (16 MiB) or, on a slow sanitizer build, the deadline stops it first */
    assert_true(st == LCM_VM_NOMEM || st == LCM_VM_TIMEOUT);
    if (ms >= CUTOFF_MS)
        fail_msg("took %.1f ms", ms);
    assert_int_equal(run("local s = 'x' while true do s = s .. s end", &ms, err, sizeof(err)),
                     LCM_VM_NOMEM);
    st = run("local t = {} for i = 1, 1e8 do t[i] = i end", &ms, err, sizeof(err));
    assert_true(st == LCM_VM_NOMEM || st == LCM_VM_TIMEOUT);
    if (ms >= CUTOFF_MS)
        fail_msg("took %.1f ms", ms);
    assert_int_equal(run("return string.format('%s%s', string.rep('x', 30000), "
                         "table.concat({string.rep('y', 30000), 'z'}))",
                         NULL, err, sizeof(err)),
                     LCM_VM_OK);
}

/* Work in C between two hook calls: long-string compares and copies churned in a loop. */
static void test_c_work_between_hooks_bounded(void **state)
{
    (void)state;
    expect_cut("local a = string.rep('x', 65000) local b = string.rep('x', 64999) .. 'x' "
               "while true do local _ = (a == b) end");
    expect_cut("local a = string.rep('x', 65000) local b = string.rep('x', 64999) .. 'y' "
               "while true do local _ = (a < b) end");
    expect_cut("local s = string.rep('x', 60000) while true do local t = s:sub(2) .. 'y' end");
    expect_cut("local s = string.rep('ab', 30000) while true do s:find('ba', 1, true) end");
    expect_cut("local t = {} for i = 1, 99999 do t[i] = i end "
               "while true do table.insert(t, 1, 0) table.remove(t, 1) end");
    expect_cut("local t = {} for i = 1, 99999 do t[i] = 'w' end "
               "while true do local _ = table.concat(t, '', 1, 60000) end");
    char err[256];
    double ms;
    /* a sort whose compares are all long is refused before it starts */
    assert_int_equal(run("local s = string.rep('x', 60000) local t = {} "
                         "for i = 1, 20000 do t[i] = s end table.sort(t)",
                         &ms, err, sizeof(err)),
                     LCM_VM_ERROR);
    if (ms >= CUTOFF_MS)
        fail_msg("took %.1f ms: %s", ms, err);
}

static void test_dangerous_globals_unavailable(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(run("assert(os == nil) assert(io == nil) assert(require == nil) "
                         "assert(package == nil) assert(debug == nil) assert(load == nil) "
                         "assert(loadstring == nil) assert(dofile == nil) "
                         "assert(loadfile == nil) assert(collectgarbage == nil) "
                         "assert(string.dump == nil) assert(print == nil)",
                         NULL, err, sizeof(err)),
                     LCM_VM_OK);
    assert_int_equal(run("os.execute('touch /tmp/lcm-policy-pwned')", NULL, err, sizeof(err)),
                     LCM_VM_ERROR);
    assert_non_null(strstr(err, "os"));
    assert_int_equal(run("io.open('/etc/passwd')", NULL, err, sizeof(err)), LCM_VM_ERROR);
    assert_int_equal(run("require('os')", NULL, err, sizeof(err)), LCM_VM_ERROR);
    assert_int_equal(run("load('return 1')", NULL, err, sizeof(err)), LCM_VM_ERROR);
    /* the registry's loaded-modules table is not reachable either */
    assert_int_equal(run("assert(getmetatable('').__index == string) "
                         "for k, v in pairs(_G) do assert(k ~= '_LOADED') end",
                         NULL, err, sizeof(err)),
                     LCM_VM_OK);
}

static void test_bytecode_refused(void **state)
{
    (void)state;
    /* real bytecode from an unrestricted state: string.dump of a function */
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    assert_int_equal(luaL_dostring(L, "return string.dump(function() return 42 end)"), 0);
    size_t len;
    const char *bc = lua_tolstring(L, -1, &len);
    assert_true(len > 4 && bc[0] == 27);
    char err[256];
    assert_int_equal(run_n(bc, len, BUDGET, DEADLINE_MS, NULL, err, sizeof(err)), LCM_VM_ERROR);
    assert_non_null(strstr(err, "binary"));
    lua_close(L);
    /* the escape sequence in text is refused the same way */
    assert_int_equal(run_n("\x1bLua\x54", 5, BUDGET, DEADLINE_MS, NULL, err, sizeof(err)),
                     LCM_VM_ERROR);
}

static void test_table_walks_capped(void **state)
{
    (void)state;
    char err[256];
    double ms;
    /* a __len of 1e15 with C-function metamethods would loop in C without any instruction */
    assert_int_equal(run("local t = setmetatable({}, {__len = function() return 1e15 end, "
                         "__index = rawequal, __newindex = rawequal}) table.remove(t, 1)",
                         &ms, err, sizeof(err)),
                     LCM_VM_ERROR);
    if (ms >= CUTOFF_MS)
        fail_msg("took %.1f ms", ms);
    assert_int_equal(run("table.move({}, 1, 1e12, 1, {})", &ms, err, sizeof(err)), LCM_VM_ERROR);
    if (ms >= CUTOFF_MS)
        fail_msg("took %.1f ms", ms);
    assert_int_equal(run("table.concat(setmetatable({}, {__index = tostring}), '', 1, 1e9)", &ms,
                         err, sizeof(err)),
                     LCM_VM_ERROR);
    assert_int_equal(run("table.unpack({}, 1, 1e8)", &ms, err, sizeof(err)), LCM_VM_ERROR);
    assert_int_equal(run("local t = {} for i = 1, 30000 do t[i] = -i end table.sort(t)", &ms, err,
                         sizeof(err)),
                     LCM_VM_ERROR);
    assert_non_null(strstr(err, "table.sort"));
    /* __gc finalizers would run outside any budget */
    assert_int_equal(run("setmetatable({}, {__gc = function() while true do end end})", &ms, err,
                         sizeof(err)),
                     LCM_VM_ERROR);
    /* ordinary use is fine */
    assert_int_equal(run("local t = {3, 1, 2} table.sort(t, function(a, b) return a > b end) "
                         "assert(t[1] == 3 and t[3] == 1) table.insert(t, 4) "
                         "assert(table.remove(t) == 4) assert(table.concat(t, ',') == '3,2,1') "
                         "local m = table.move(t, 1, 3, 2, {}) assert(m[4] == 1) "
                         "assert(select('#', table.unpack(t)) == 3) "
                         "local o = setmetatable({}, {__index = function(_, k) return k end}) "
                         "assert(o.x == 'x')",
                         NULL, err, sizeof(err)),
                     LCM_VM_OK);
}

static void test_sort_comparator_loop_cut(void **state)
{
    (void)state;
    expect_cut("local t = {} for i = 1, 1000 do t[i] = i end "
               "table.sort(t, function(a, b) while true do end end)");
    expect_cut("local t = setmetatable({}, {__index = function() while true do end end}) "
               "return t.x");
    expect_cut("local s = setmetatable({}, {__tostring = function() while true do end end}) "
               "return tostring(s)");
}

static void test_deadline_without_budget(void **state)
{
    (void)state;
    char err[256];
    double ms;
    /* instruction budget out of reach: the wall clock stops it */
    enum lcm_policy_vm_status st =
        run_n("while true do end", 17, UINT64_MAX / 2, 20, &ms, err, sizeof(err));
    assert_int_equal(st, LCM_VM_TIMEOUT);
    assert_non_null(strstr(err, "deadline"));
    assert_true(ms < CUTOFF_MS); /* CPU ms; the wall clock passed 20 ms */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_infinite_loop_cut),
        cmocka_unit_test(test_instruction_budget),
        cmocka_unit_test(test_pcall_cannot_swallow),
        cmocka_unit_test(test_coroutine_loop_cut),
        cmocka_unit_test(test_pattern_bomb_unavailable),
        cmocka_unit_test(test_string_rep_bomb_refused),
        cmocka_unit_test(test_dangerous_globals_unavailable),
        cmocka_unit_test(test_bytecode_refused),
        cmocka_unit_test(test_table_walks_capped),
        cmocka_unit_test(test_sort_comparator_loop_cut),
        cmocka_unit_test(test_c_work_between_hooks_bounded),
        cmocka_unit_test(test_deadline_without_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
