/* The embedded Redis of a development lcmd: a redis-server child on a unix socket in the
 * data directory, with AOF on, stopped when lcmd exits (and killed if lcmd dies). */
#ifndef LCM_EMBEDDED_H
#define LCM_EMBEDDED_H

#include <stddef.h>
#include <sys/types.h>

struct lcm_embedded_redis {
    pid_t pid;          /* 0 when we reuse a server we did not start */
    char dir[4096];
    char url[4200];     /* unix:///…/redis.sock */
};

int lcm_embedded_redis_start(const char *binary, const char *data_dir, const char *appendfsync,
                             struct lcm_embedded_redis *out, char *err, size_t errlen);
void lcm_embedded_redis_stop(struct lcm_embedded_redis *e);

#endif
