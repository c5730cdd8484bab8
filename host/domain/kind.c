/* The table of aggregate kinds the generic store, read models and API iterate over. */
#include "kind.h"

#include <string.h>

#include "definition.h"
#include "lab.h"
#include "session.h"
#include "template.h"
#include "worker.h"

const struct lcm_kind *const lcm_kinds[] = {
    &lcm_kind_definition, &lcm_kind_template, &lcm_kind_worker, &lcm_kind_session,
    &lcm_kind_lab, NULL};

const struct lcm_kind *lcm_kind_find(const char *name)
{
    for (size_t i = 0; name && lcm_kinds[i]; i++)
        if (!strcmp(lcm_kinds[i]->name, name))
            return lcm_kinds[i];
    return NULL;
}
