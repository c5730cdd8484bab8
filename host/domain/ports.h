/* The per-worker port registry: a bitmap over the worker's range (default 2000–9999, 1 KB)
 * plus one lease per lab record. A lab gets the lowest free ports; they stay leased until
 * the lab is deleted (they survive stop/wipe so a wiped lab can be reused). */
#ifndef LCM_DOMAIN_PORTS_H
#define LCM_DOMAIN_PORTS_H

#include <stddef.h>
#include <stdint.h>

#include "derr.h"

#define LCM_PORTS_DEFAULT_LO 2000
#define LCM_PORTS_DEFAULT_HI 9999
#define LCM_PORTS_MAX_PER_LAB 256

struct lcm_port_lease {
    char *lab_id;         /* owned */
    uint16_t *ports;      /* owned, ascending */
    uint16_t n;
};

struct lcm_ports {
    uint16_t lo, hi;      /* inclusive range */
    uint32_t nfree;
    uint64_t *bits;       /* owned; bit set = in use */
    struct lcm_port_lease *leases;   /* owned, in allocation order */
    uint32_t nleases, cap;
};

/* lo ≤ hi, lo ≥ 1. Returns 0, LCM_DERR_INVALID or LCM_DERR_NOMEM. */
int lcm_ports_init(struct lcm_ports *p, uint16_t lo, uint16_t hi);
void lcm_ports_free(struct lcm_ports *p);
/* Deep copy into dst (same capacity). 0, or LCM_DERR_NOMEM (dst must still be freed). */
int lcm_ports_clone(struct lcm_ports *dst, const struct lcm_ports *src);
uint32_t lcm_ports_free_count(const struct lcm_ports *p);
int lcm_ports_in_use(const struct lcm_ports *p, uint16_t port);
/* Chooses the n lowest free ports into out (no change to p). LCM_DERR_EXHAUSTED when fewer
 * than n are free. */
int lcm_ports_pick(const struct lcm_ports *p, size_t n, uint16_t *out, struct lcm_derr *err);
/* Records a lease: every port must be in range, free, and not repeated; lab_id must not
 * hold a lease yet (LCM_DERR_CONFLICT otherwise; p unchanged). */
int lcm_ports_take(struct lcm_ports *p, const char *lab_id, const uint16_t *ports, size_t n,
                   struct lcm_derr *err);
/* Frees the lab's lease; returns the number of ports freed (0 when it held none). */
int lcm_ports_release(struct lcm_ports *p, const char *lab_id);
const struct lcm_port_lease *lcm_ports_lease(const struct lcm_ports *p, const char *lab_id);

/* {"range":[lo,hi],"leases":{"<lab_id>":[ports…],…}} and back (replaces p). */
struct cJSON *lcm_ports_to_json(const struct lcm_ports *p);
int lcm_ports_from_json(struct lcm_ports *p, const struct cJSON *o, struct lcm_derr *err);
size_t lcm_ports_mem(const struct lcm_ports *p);

#endif
