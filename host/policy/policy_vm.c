/* The policy sandbox: a lua_State per generation whose allocator enforces a memory cap, whose
 * libraries are an allow-list (base, table, string, math, utf8, coroutine) with every C
 * function that could run unbounded removed or capped, and whose count hook stops a call
 * that exceeds its instruction budget or wall-clock deadline, in every coroutine, for good. */
#include "policy_vm.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t lcm_policy_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* lua_Alloc with a hard cap: refusing makes Lua raise a memory error inside the script. */
static void *vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct lcm_policy_vm *vm = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        vm->used -= old;
        return NULL;
    }
    if (nsize > old) {
        /* Once stopped, nothing grows: the script fails fast until the hook unwinds it. */
        if (vm->tripped || vm->used - old + nsize > vm->limit) {
            vm->refused++;
            return NULL;
        }
        /* One string object is capped, which bounds what any single compare, hash or copy
         * of it costs between two hook calls. */
        if (!ptr && osize == LUA_TSTRING && nsize > LCM_POLICY_STRING_MAX + 64) {
            vm->refused++;
            return NULL;
        }
        /* Bulk work in C (concat, buffers, table growth) allocates as it goes: large
         * allocations look at the clock too, between the count hook's checks. */
        if (nsize - old >= LCM_POLICY_BIG_ALLOC && lcm_policy_now_ns() > vm->deadline_ns) {
            vm->tripped = 2;
            vm->refused++;
            return NULL;
        }
    }
    void *p = realloc(ptr, nsize);
    if (!p)
        return NULL;
    vm->used = vm->used - old + nsize;
    if (vm->used > vm->peak)
        vm->peak = vm->used;
    return p;
}

static struct lcm_policy_vm *vm_of(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

/* Count hook. Once tripped it stays tripped until the next arm, and drops the running thread
 * (and the main thread) to a count of 1, so the error is raised again on the very next
 * instruction: a pcall in the script, or a coroutine, cannot swallow the stop. */
static void vm_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct lcm_policy_vm *vm = vm_of(L);
    if (!vm->tripped) {
        vm->count += LCM_POLICY_HOOK_EVERY;
        if (vm->count > vm->budget)
            vm->tripped = 1;
        else if (lcm_policy_now_ns() > vm->deadline_ns)
            vm->tripped = 2;
        else
            return;
    }
    lua_sethook(L, vm_hook, LUA_MASKCOUNT, 1);
    if (L != vm->L)
        lua_sethook(vm->L, vm_hook, LUA_MASKCOUNT, 1);
    luaL_error(L, "policy stopped: %s exceeded",
               vm->tripped == 1 ? "instruction budget" : "deadline");
}

void lcm_policy_vm_arm(struct lcm_policy_vm *vm, uint64_t budget, unsigned deadline_ms)
{
    vm->count = 0;
    vm->tripped = 0;
    vm->refused = 0;
    vm->budget = budget;
    vm->deadline_ns = lcm_policy_now_ns() + (int64_t)deadline_ms * 1000000;
    lua_sethook(vm->L, vm_hook, LUA_MASKCOUNT, LCM_POLICY_HOOK_EVERY);
}

/* Charges a C function's work (in instruction units) to the budget and looks at the clock,
 * before the work is done: a heavy C call cannot start once the call is out of time. */
static void charge(lua_State *L, uint64_t units)
{
    struct lcm_policy_vm *vm = vm_of(L);
    if (!vm->tripped) {
        vm->count += units;
        if (vm->count > vm->budget)
            vm->tripped = 1;
        else if (lcm_policy_now_ns() > vm->deadline_ns)
            vm->tripped = 2;
    }
    if (vm->tripped)
        luaL_error(L, "policy stopped: %s exceeded",
                   vm->tripped == 1 ? "instruction budget" : "deadline");
}

/* ---------------------------------------------------------------- library replacements */

static int refuse_metatable(lua_State *L, int idx, const char *fn)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    if (lua_getmetatable(L, idx))
        return luaL_error(L, "%s: tables with a metatable are refused in policies", fn);
    return 0;
}

static void check_span(lua_State *L, lua_Integer from, lua_Integer to, lua_Integer cap,
                       const char *fn)
{
    if (to >= from && (lua_Unsigned)to - (lua_Unsigned)from >= (lua_Unsigned)cap)
        luaL_error(L, "%s: more than %d elements is refused in policies", fn, (int)cap);
    charge(L, to >= from ? (uint64_t)(to - from) + 1 : 1);
}

/* Sorting compares n*log2(n) times, each compare as long as the shorter string: bound the
 * product, since the whole sort is one C call the hook cannot interrupt. */
static void check_sort(lua_State *L)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    check_span(L, 1, n, LCM_POLICY_SORT_MAX, "table.sort");
    size_t longest = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, 1, i) == LUA_TSTRING && lua_rawlen(L, -1) > longest)
            longest = lua_rawlen(L, -1);
        lua_pop(L, 1);
    }
    double lg = 1;
    for (lua_Integer k = n; k > 1; k >>= 1)
        lg++;
    double work = (double)n * lg * (20.0 + (double)longest);
    if (work > LCM_POLICY_SORT_WORK)
        luaL_error(L, "table.sort: %d elements of up to %d bytes is too much work for a policy",
                   (int)n, (int)longest);
    charge(L, (uint64_t)(work / 20));
}

enum guard { G_INSERT, G_REMOVE, G_CONCAT, G_UNPACK, G_SORT, G_MOVE, G_SETMETATABLE };
static const char *const guard_names[] = {"table.insert", "table.remove", "table.concat",
                                          "table.unpack", "table.sort",   "table.move",
                                          "setmetatable"};

/* The table library's C loops run metamethods (C functions included) without the hook ever
 * seeing an instruction, and walk lengths a __len can make astronomical. The guards accept
 * raw tables only, and cap the number of elements walked. */
static int guarded(lua_State *L)
{
    enum guard g = (enum guard)lua_tointeger(L, lua_upvalueindex(2));
    const char *fn = guard_names[g];
    switch (g) {
    case G_INSERT:
    case G_REMOVE:
        refuse_metatable(L, 1, fn);
        check_span(L, 1, (lua_Integer)lua_rawlen(L, 1), LCM_POLICY_TABLE_OP_MAX, fn);
        break;
    case G_SORT:
        refuse_metatable(L, 1, fn);
        check_sort(L);
        break;
    case G_CONCAT:
        refuse_metatable(L, 1, fn);
        check_span(L, luaL_optinteger(L, 3, 1),
                   luaL_optinteger(L, 4, (lua_Integer)lua_rawlen(L, 1)),
                   LCM_POLICY_TABLE_OP_MAX, fn);
        break;
    case G_UNPACK:
        refuse_metatable(L, 1, fn);
        check_span(L, luaL_optinteger(L, 2, 1),
                   luaL_optinteger(L, 3, (lua_Integer)lua_rawlen(L, 1)),
                   LCM_POLICY_TABLE_OP_MAX, fn);
        break;
    case G_MOVE:
        refuse_metatable(L, 1, fn);
        if (!lua_isnoneornil(L, 5))
            refuse_metatable(L, 5, fn);
        check_span(L, luaL_checkinteger(L, 2), luaL_checkinteger(L, 3),
                   LCM_POLICY_TABLE_OP_MAX, fn);
        break;
    case G_SETMETATABLE:
        /* A finalizer would run outside any call's budget (e.g. while the VM closes). */
        if (lua_type(L, 2) == LUA_TTABLE) {
            lua_pushliteral(L, "__gc");
            if (lua_rawget(L, 2) != LUA_TNIL)
                return luaL_error(L, "setmetatable: __gc metamethods are refused in policies");
            lua_pop(L, 1);
        }
        break;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static void guard_field(lua_State *L, int tbl, const char *name, enum guard g)
{
    lua_getfield(L, tbl, name);
    lua_pushinteger(L, g);
    lua_pushcclosure(L, guarded, 2);
    lua_setfield(L, tbl, name);
}

static int safe_rep(lua_State *L)
{
    size_t l, lsep;
    luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &lsep);
    unsigned long long per = (unsigned long long)l + lsep;
    if (n <= 0 || l == 0) {
        /* Also the original's n-iteration loop over an empty piece: rep('', 2^62) would
         * spin in C. With an empty piece the result is just n-1 separators... */
        if (n > 1 && lsep > 0) {
            if ((unsigned long long)(n - 1) > LCM_POLICY_REP_MAX / lsep)
                return luaL_error(L, "string.rep: results over %d bytes are refused in policies",
                                  (int)LCM_POLICY_REP_MAX);
        } else {
            lua_pushliteral(L, "");
            return 1;
        }
    }
    {
        /* total = n*l + (n-1)*lsep, computed without overflow */
        if ((unsigned long long)n > (LCM_POLICY_REP_MAX + lsep) / per)
            return luaL_error(L, "string.rep: results over %d bytes are refused in policies",
                              (int)LCM_POLICY_REP_MAX);
    }
    charge(L, 1 + (uint64_t)(n > 0 ? n : 0) * (l + lsep) / 64);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* string.find without patterns: Lua patterns can backtrack for seconds inside one C call,
 * where no hook runs. Plain substring search (memmem is linear) with Lua's init rules. */
static int safe_find(lua_State *L)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    lua_Integer init = luaL_optinteger(L, 3, 1);
    int plain = lua_toboolean(L, 4);
    charge(L, 1 + ls / 64);
    if (!plain && strpbrk(p, "^$*+?.([%-") != NULL)
        return luaL_error(L, "string.find: patterns are disabled in policies "
                             "(plain search only: string.find(s, sub, init, true))");
    if (init < 0)
        init = (lua_Integer)ls + init + 1 < 1 ? 1 : (lua_Integer)ls + init + 1;
    else if (init == 0)
        init = 1;
    if ((size_t)init > ls + 1) {
        lua_pushnil(L);
        return 1;
    }
    const char *hit = lp == 0 ? s + init - 1 : memmem(s + init - 1, ls - (size_t)(init - 1), p, lp);
    if (!hit) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushinteger(L, (lua_Integer)(hit - s) + 1);
    lua_pushinteger(L, (lua_Integer)(hit - s) + (lua_Integer)lp);
    return 2;
}

static int vm_panic(lua_State *L)
{
    /* Every entry into a policy VM is protected; reaching this is a bug in the host. */
    const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
    fprintf(stderr, "level=error comp=policy msg=\"unprotected Lua error\" error=\"%s\"\n", m);
    abort();
}

static int open_libs(lua_State *L)
{
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},         {LUA_TABLIBNAME, luaopen_table},
        {LUA_STRLIBNAME, luaopen_string},  {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8},   {LUA_COLIBNAME, luaopen_coroutine},
        {NULL, NULL}};
    for (const luaL_Reg *l = libs; l->name; l++) {
        luaL_requiref(L, l->name, l->func, 1);
        lua_pop(L, 1);
    }
    lua_pushglobaltable(L);
    int g = lua_gettop(L);
    static const char *const drop_global[] = {"dofile", "loadfile", "load", "loadstring",
                                              "require", "collectgarbage", "print", "warn",
                                              "module", NULL};
    for (int i = 0; drop_global[i]; i++) {
        lua_pushnil(L);
        lua_setfield(L, g, drop_global[i]);
    }
    guard_field(L, g, "setmetatable", G_SETMETATABLE);

    lua_getfield(L, g, LUA_STRLIBNAME);
    int s = lua_gettop(L);
    static const char *const drop_string[] = {"dump", "match", "gmatch", "gsub", "pack",
                                              "packsize", "unpack", NULL};
    for (int i = 0; drop_string[i]; i++) {
        lua_pushnil(L);
        lua_setfield(L, s, drop_string[i]);
    }
    lua_pushcfunction(L, safe_find);
    lua_setfield(L, s, "find");
    lua_getfield(L, s, "rep");
    lua_pushcclosure(L, safe_rep, 1);
    lua_setfield(L, s, "rep");
    lua_pop(L, 1);

    lua_getfield(L, g, LUA_TABLIBNAME);
    int t = lua_gettop(L);
    guard_field(L, t, "insert", G_INSERT);
    guard_field(L, t, "remove", G_REMOVE);
    guard_field(L, t, "concat", G_CONCAT);
    guard_field(L, t, "unpack", G_UNPACK);
    guard_field(L, t, "sort", G_SORT);
    guard_field(L, t, "move", G_MOVE);
    lua_pop(L, 2);
    return 0;
}

int lcm_policy_vm_open(struct lcm_policy_vm *vm, size_t mem_limit, char *err, size_t errlen)
{
    memset(vm, 0, sizeof(*vm));
    vm->limit = mem_limit;
    vm->L = lua_newstate(vm_alloc, vm);
    if (!vm->L) {
        snprintf(err, errlen, "cannot create a Lua state within %zu bytes", mem_limit);
        return -1;
    }
    lua_atpanic(vm->L, vm_panic);
    /* The hook is in place before any script runs; coroutines inherit it from the thread
     * that creates them (lua_newthread copies the hook), and arm() re-arms the main one. */
    lcm_policy_vm_arm(vm, 10000000, 1000);
    lua_pushcfunction(vm->L, open_libs);
    if (lua_pcall(vm->L, 0, 0, 0) != LUA_OK) {
        snprintf(err, errlen, "cannot open the sandbox libraries: %s",
                 lua_type(vm->L, -1) == LUA_TSTRING ? lua_tostring(vm->L, -1) : "?");
        lua_close(vm->L);
        vm->L = NULL;
        return -1;
    }
    return 0;
}

void lcm_policy_vm_close(struct lcm_policy_vm *vm)
{
    if (!vm->L)
        return;
    lcm_policy_vm_arm(vm, 100000, 10);
    lua_close(vm->L);
    vm->L = NULL;
}

enum lcm_policy_vm_status lcm_policy_vm_run(struct lcm_policy_vm *vm, lua_CFunction f, void *ud,
                                            char *err, size_t errlen)
{
    lua_State *L = vm->L;
    lua_settop(L, 0);
    lua_pushcfunction(L, f);
    lua_pushlightuserdata(L, ud);
    int st = lua_pcall(L, 1, 0, 0);
    enum lcm_policy_vm_status res = LCM_VM_OK;
    if (vm->tripped) {
        res = LCM_VM_TIMEOUT;
        snprintf(err, errlen, "%s exceeded",
                 vm->tripped == 1 ? "instruction budget" : "deadline");
    } else if (st == LUA_ERRMEM) {
        res = LCM_VM_NOMEM;
        snprintf(err, errlen, "memory limit (%zu bytes) exceeded", vm->limit);
    } else if (st != LUA_OK) {
        res = LCM_VM_ERROR;
        if (lua_type(L, -1) == LUA_TSTRING)
            snprintf(err, errlen, "%s", lua_tostring(L, -1));
        else
            snprintf(err, errlen, "(error object is a %s value)", luaL_typename(L, -1));
    }
    lua_settop(L, 0);
    /* Leave the main thread's hook at its normal period for the next arm. */
    lua_sethook(L, vm_hook, LUA_MASKCOUNT, LCM_POLICY_HOOK_EVERY);
    return res;
}

void lcm_policy_vm_dochunk(lua_State *L, const char *name, const char *src, size_t len)
{
    /* mode "t": a bytecode chunk ("\27Lua…") is refused by the loader itself. */
    if (luaL_loadbufferx(L, src, len, name, "t") != LUA_OK)
        lua_error(L);
    lua_call(L, 0, 1);
}
