/* The Lua sandbox behind each policy generation (internal to host/policy): one lua_State with
 * a capped allocator, an allow-list of libraries with the unbounded C functions removed or
 * capped, and a count hook enforcing an instruction budget and a wall-clock deadline. */
#ifndef LCM_POLICY_VM_H
#define LCM_POLICY_VM_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

/* Limits of the library replacements (see docs/policies.md). */
#define LCM_POLICY_STRING_MAX (64u << 10)  /* bytes in one string: bounds every compare/copy */
#define LCM_POLICY_REP_MAX LCM_POLICY_STRING_MAX
#define LCM_POLICY_SORT_MAX 20000          /* elements table.sort accepts */
#define LCM_POLICY_SORT_WORK 20000000      /* n*log2(n)*(20+longest string) table.sort accepts */
#define LCM_POLICY_TABLE_OP_MAX 100000     /* elements table.insert/remove/move/concat walk */
#define LCM_POLICY_HOOK_EVERY 1000         /* instructions between hook calls */
#define LCM_POLICY_BIG_ALLOC (64u << 10)   /* allocations this large also check the clock */

enum lcm_policy_vm_status {
    LCM_VM_OK = 0,
    LCM_VM_ERROR,   /* runtime error (message in err) */
    LCM_VM_NOMEM,   /* the memory cap refused an allocation */
    LCM_VM_TIMEOUT  /* instruction budget or deadline */
};

struct lcm_policy_vm {
    lua_State *L;
    size_t used;            /* bytes currently allocated */
    size_t limit;           /* cap */
    size_t peak;
    uint64_t budget;        /* instructions for the armed call */
    uint64_t count;
    int64_t deadline_ns;    /* CLOCK_MONOTONIC */
    int tripped;            /* 1 = budget, 2 = deadline; keeps erroring until re-armed */
    unsigned refused;       /* allocations refused by the cap since arming */
};

/* Opens a sandboxed VM. Returns 0, or -1 with err. */
int lcm_policy_vm_open(struct lcm_policy_vm *vm, size_t mem_limit, char *err, size_t errlen);
/* Closes (runs with a small budget so nothing can loop during close). */
void lcm_policy_vm_close(struct lcm_policy_vm *vm);

/* Arms the budget/deadline for one call. */
void lcm_policy_vm_arm(struct lcm_policy_vm *vm, uint64_t budget, unsigned deadline_ms);

/* Runs f(ud) protected under the armed limits; on failure fills err (status says why).
 * The stack is reset afterwards. */
enum lcm_policy_vm_status lcm_policy_vm_run(struct lcm_policy_vm *vm, lua_CFunction f, void *ud,
                                            char *err, size_t errlen);

/* Loads a text chunk (never bytecode) and runs it; leaves its first result on the stack top
 * (caller in a lcm_policy_vm_run callback). Raises a Lua error on failure. */
void lcm_policy_vm_dochunk(lua_State *L, const char *name, const char *src, size_t len);

int64_t lcm_policy_now_ns(void);

#endif
