/* SHA-256 in plain C (the domain links nothing but cJSON): a definition's topology_sha256
 * identifies the exact topology a lab was imported from. */
#ifndef LCM_DOMAIN_SHA256_H
#define LCM_DOMAIN_SHA256_H

#include <stddef.h>

/* Writes 64 lowercase hex digits and a NUL into hex. */
void lcm_sha256_hex(const void *data, size_t len, char hex[65]);

#endif
