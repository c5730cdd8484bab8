/* lcm-policy-check: loads a policy directory the way lcmd does (sandbox, required functions,
 * fixtures) and also runs the built-in C policies on the same fixtures, so an operator can
 * test a policy change before deploying it. Exit status 0 = everything passes. */
#include <stdio.h>
#include <string.h>

#include "policy.h"

static void print_line(void *ud, const char *text)
{
    fprintf(ud, "%s\n", text);
}

int main(int argc, char **argv)
{
    int builtin_too = 1;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--lua-only"))
            builtin_too = 0;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help") || dir) {
            fprintf(stderr, "usage: %s [--lua-only] [policy-dir]\n"
                            "  loads placement.lua, scale_up.lua, scale_down.lua from the dir\n"
                            "  (default %s) and runs fixtures/<name>.lua against them and,\n"
                            "  unless --lua-only, against the built-in C policies too.\n",
                    argv[0], LCM_DEFAULT_POLICY_DIR);
            return 2;
        } else
            dir = argv[i];
    }
    if (!dir)
        dir = LCM_DEFAULT_POLICY_DIR;
    struct lcm_policy_check_report r = {print_line, stdout};
    int failures = lcm_policy_check_dir(dir, builtin_too, &r);
    printf("%s: %d failure%s\n", failures ? "FAILED" : "PASSED", failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
