/* Licence type names. */
#include "license.h"

#include <string.h>

const char *lcm_license_name(int lic)
{
    switch (lic) {
    case LCM_LIC_PERSONAL: return "personal";
    case LCM_LIC_ENTERPRISE: return "enterprise";
    case LCM_LIC_EVALUATION: return "evaluation";
    }
    return "?";
}

int lcm_license_parse(const char *s)
{
    if (!s)
        return 0;
    if (!strcmp(s, "personal"))
        return LCM_LIC_PERSONAL;
    if (!strcmp(s, "enterprise"))
        return LCM_LIC_ENTERPRISE;
    if (!strcmp(s, "evaluation"))
        return LCM_LIC_EVALUATION;
    return 0;
}
