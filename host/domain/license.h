/* CML licence types (personal, enterprise, evaluation) as bits, so a definition's licence
 * affinity list is one byte (0 = any) and the placement filter compares integers. */
#ifndef LCM_DOMAIN_LICENSE_H
#define LCM_DOMAIN_LICENSE_H

enum lcm_license {
    LCM_LIC_PERSONAL = 1, LCM_LIC_ENTERPRISE = 2, LCM_LIC_EVALUATION = 4
};
const char *lcm_license_name(int lic);   /* single bit → "personal" … ("?" otherwise) */
int lcm_license_parse(const char *s);    /* → bit, or 0 when unknown */

#endif
