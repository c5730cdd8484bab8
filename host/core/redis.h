/* The Redis connection of lcmd: hiredis async on the host loop, automatic reconnect with
 * jittered backoff, and hooks that run on every (re)connect (e.g. the store loads its Redis
 * Function there). Redis is the system of record; while it is unreachable /readyz is 503.
 * With a sentinel:// URL the primary is asked of the sentinels on every (re)connect, checked
 * with ROLE, and followed on failover (+switch-master, READONLY, or the link dropping). */
#ifndef LCM_REDIS_H
#define LCM_REDIS_H

#include <stddef.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>

struct event_base;
struct lcm_metrics;
struct lcm_redis;

/* Reply is owned by hiredis and valid only during the callback; NULL when the connection
 * dropped before a reply arrived (the command may or may not have executed). */
typedef void (*lcm_redis_cb)(struct lcm_redis *r, redisReply *reply, void *ud);
/* Runs after each successful (re)connect, before queued commands are sent. */
typedef void (*lcm_redis_connect_hook)(struct lcm_redis *r, void *ud);

struct lcm_redis_opts {
    const char *url;          /* redis://host:port[/db], unix:///path[?db=N],
                                 sentinel://host:port[,host:port...]/master[/db] */
    long connect_timeout_ms;  /* default 2000 */
    long command_timeout_ms;  /* default 5000; a command with no reply by then fails (NULL) */
    long backoff_max_ms;      /* default 2000 */
};

/* Parses a Redis URL; fills host/port or path and db. Returns 0 or -1 with err filled.
 * sentinel:// URLs fill sentinels[] (port 26379 when omitted, IPv6 as [addr]:port) and master;
 * host/port then stay empty until a sentinel names the primary. */
#define LCM_REDIS_MAX_SENTINELS 8
struct lcm_redis_hostport { char host[256]; int port; };
struct lcm_redis_addr {
    char host[256]; int port; char path[512]; int db; int is_unix;
    int is_sentinel;
    char master[128];
    int nsentinels;
    struct lcm_redis_hostport sentinels[LCM_REDIS_MAX_SENTINELS];
};
int lcm_redis_parse_url(const char *url, struct lcm_redis_addr *out, char *err, size_t errlen);

struct lcm_redis *lcm_redis_new(struct event_base *base, struct lcm_metrics *metrics,
                                const struct lcm_redis_opts *opts);
void lcm_redis_free(struct lcm_redis *r);   /* pending callbacks run with NULL replies */

void lcm_redis_on_connect(struct lcm_redis *r, lcm_redis_connect_hook hook, void *ud);
int lcm_redis_connected(const struct lcm_redis *r);
/* Sends a command. Returns 0 (cb will run exactly once), or -1 when not connected (cb is
 * never called). */
int lcm_redis_command(struct lcm_redis *r, lcm_redis_cb cb, void *ud, const char *fmt, ...);
int lcm_redis_commandv(struct lcm_redis *r, lcm_redis_cb cb, void *ud, int argc,
                       const char **argv, const size_t *argvlen);
/* Raw context for adapters that need it (NULL when disconnected). Do not keep it. */
redisAsyncContext *lcm_redis_ctx(struct lcm_redis *r);
const char *lcm_redis_url(const struct lcm_redis *r);
/* "host:port" (or the socket path) of the server in use or being connected to; with Sentinel
 * the primary last discovered ("" before the first answer). Valid until the next loop turn. */
const char *lcm_redis_endpoint(const struct lcm_redis *r);

#endif
