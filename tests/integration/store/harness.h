/* Test/bench harness for the store: a private redis-server (appendonly yes) on a free
 * loopback port in a temp dir, a synchronous hiredis client for assertions, and helpers that
 * drive the libevent loop until a condition holds. */
#ifndef LCM_TEST_STORE_HARNESS_H
#define LCM_TEST_STORE_HARNESS_H

#include <hiredis/hiredis.h>
#include <sys/types.h>

struct event_base;
struct lcm_redis;

struct th_redis {
    pid_t pid;
    int port;
    char dir[256];
    char url[64];
};

/* Starts redis-server; extra is appended to its command line (NULL for none). 0 or -1. */
int th_redis_start(struct th_redis *r, const char *extra);
void th_redis_stop(struct th_redis *r);
redisContext *th_sync(const struct th_redis *r);
/* Runs a command on a sync context and returns the reply (caller frees). */
redisReply *th_cmd(redisContext *c, const char *fmt, ...);
/* Runs the loop until *flag != 0 or timeout; returns 0 when the flag was set. */
int th_run_until(struct event_base *base, const int *flag, long timeout_ms);
/* Connects an lcm_redis and waits for the connection. NULL on failure. */
struct lcm_redis *th_connect(struct event_base *base, const char *url);
double th_now_ms(void);
/* Canonical text of every lcm:* hash, set and sorted set (names sorted, hash fields sorted,
 * set members sorted); streams and strings are left out. Caller frees. */
char *th_snapshot(redisContext *c);

#endif
