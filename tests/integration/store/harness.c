/* Harness for the store's integration tests and benchmark (see harness.h). */
#include "harness.h"

#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/redis.h"

double th_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

int th_redis_start(struct th_redis *r, const char *extra)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->dir, sizeof(r->dir), "/tmp/lcm-store-test-XXXXXX");
    if (!mkdtemp(r->dir))
        return -1;
    for (int attempt = 0; attempt < 5; attempt++) {
        r->port = free_port();
        if (r->port <= 0)
            return -1;
        char cmd[1024];
        snprintf(cmd, sizeof(cmd),
                 "exec redis-server --port %d --bind 127.0.0.1 --dir %s --appendonly yes "
                 "--save '' --daemonize no --loglevel warning --logfile %s/redis.log %s",
                 r->port, r->dir, r->dir, extra ? extra : "");
        pid_t pid = fork();
        if (pid < 0)
            return -1;
        if (pid == 0) {
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        r->pid = pid;
        for (int i = 0; i < 100; i++) {
            struct timeval tv = { 0, 200000 };
            redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
            if (c && !c->err) {
                redisReply *rep = redisCommand(c, "PING");
                int ok = rep && rep->type == REDIS_REPLY_STATUS;
                freeReplyObject(rep);
                redisFree(c);
                if (ok) {
                    snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d", r->port);
                    return 0;
                }
            } else if (c) {
                redisFree(c);
            }
            if (waitpid(pid, NULL, WNOHANG) == pid)
                break;   /* port taken meanwhile: try another */
            usleep(20000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        r->pid = 0;
    }
    return -1;
}

void th_redis_stop(struct th_redis *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
        r->pid = 0;
    }
    if (r->dir[0]) {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", r->dir);
        r->dir[0] = '\0';
    }
}

redisContext *th_sync(const struct th_redis *r)
{
    redisContext *c = redisConnect("127.0.0.1", r->port);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

redisReply *th_cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    return r;
}

static void timeout_cb(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    *(int *)ud = 1;
}

int th_run_until(struct event_base *base, const int *flag, long timeout_ms)
{
    int expired = 0;
    struct event *t = evtimer_new(base, timeout_cb, &expired);
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    evtimer_add(t, &tv);
    while (!*flag && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
    return *flag ? 0 : -1;
}

struct lcm_redis *th_connect(struct event_base *base, const char *url)
{
    struct lcm_redis_opts o = { .url = url, .command_timeout_ms = 30000 };
    struct lcm_redis *r = lcm_redis_new(base, NULL, &o);
    if (!r)
        return NULL;
    double t0 = th_now_ms();
    while (!lcm_redis_connected(r) && th_now_ms() - t0 < 3000)
        event_base_loop(base, EVLOOP_ONCE);
    if (!lcm_redis_connected(r)) {
        lcm_redis_free(r);
        return NULL;
    }
    return r;
}

/* ---- canonical snapshot of hashes and indexes ---------------------------------------- */

struct sbuf {
    char *p;
    size_t len, cap;
};

static void sb_add(struct sbuf *b, const char *a, const char *c)
{
    size_t n = strlen(a) + strlen(c) + 2;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np)
            abort();
        b->p = np;
        b->cap = cap;
    }
    b->len += (size_t)snprintf(b->p + b->len, b->cap - b->len, "%s%s\n", a, c);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts the pairs (k, v) of a flat array of n pairs by k. */
static int cmp_pair(const void *a, const void *b)
{
    return strcmp(((char *const *)a)[0], ((char *const *)b)[0]);
}

char *th_snapshot(redisContext *c)
{
    struct sbuf b = { 0 };
    sb_add(&b, "", "");
    redisReply *keys = th_cmd(c, "KEYS lcm:*");
    size_t n = keys ? keys->elements : 0;
    char **names = calloc(n + 1, sizeof(*names));
    for (size_t i = 0; i < n; i++)
        names[i] = keys->element[i]->str;
    qsort(names, n, sizeof(*names), cmp_str);
    for (size_t i = 0; i < n; i++) {
        redisReply *t = th_cmd(c, "TYPE %s", names[i]);
        redisReply *v = NULL;
        int hash = strcmp(t->str, "hash") == 0, set = strcmp(t->str, "set") == 0;
        if (hash)
            v = th_cmd(c, "HGETALL %s", names[i]);
        else if (set)
            v = th_cmd(c, "SORT %s ALPHA", names[i]);
        else if (strcmp(t->str, "zset") == 0)
            v = th_cmd(c, "ZRANGE %s 0 -1 WITHSCORES", names[i]);
        if (v) {
            size_t m = v->elements;
            char **el = calloc(m + 1, sizeof(*el));
            for (size_t k = 0; k < m; k++)
                el[k] = v->element[k]->str;
            if (hash)
                qsort(el, m / 2, 2 * sizeof(*el), cmp_pair);
            char head[600];
            snprintf(head, sizeof(head), "%s %s", t->str, names[i]);
            sb_add(&b, head, "");
            for (size_t k = 0; k < m; k++)
                sb_add(&b, "  ", el[k]);
            free(el);
            freeReplyObject(v);
        }
        freeReplyObject(t);
    }
    free(names);
    freeReplyObject(keys);
    return b.p;
}
