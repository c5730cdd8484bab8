/* Starts and stops the development Redis. Runs before the event loop exists, so waiting
 * for the socket here (bounded) is fine. */
#include "embedded.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "log.h"

static int ping(const char *sock)
{
    struct timeval tv = { 0, 300 * 1000 };
    redisContext *c = redisConnectUnixWithTimeout(sock, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return -1;
    }
    redisReply *r = redisCommand(c, "PING");
    int ok = r && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return ok ? 0 : -1;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

int lcm_embedded_redis_start(const char *binary, const char *data_dir, const char *appendfsync,
                             struct lcm_embedded_redis *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (mkdir(data_dir, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create data_dir %s: %s", data_dir, strerror(errno));
        return -1;
    }
    char abs[PATH_MAX];
    if (!realpath(data_dir, abs)) {
        snprintf(err, errlen, "data_dir %s: %s", data_dir, strerror(errno));
        return -1;
    }
    char sock[PATH_MAX + 16];
    snprintf(sock, sizeof(sock), "%s/redis.sock", abs);
    if (strlen(sock) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        snprintf(err, errlen, "data_dir path too long for a unix socket (%zu bytes): %s", strlen(sock), sock);
        return -1;
    }
    snprintf(out->dir, sizeof(out->dir), "%s", abs);
    snprintf(out->url, sizeof(out->url), "unix://%s", sock);
    if (ping(sock) == 0) {
        lcm_info("redis", "msg=\"reusing the Redis already serving the data dir\" socket=%s", sock);
        return 0;
    }
    unlink(sock);
    char logfile[PATH_MAX + 16];
    snprintf(logfile, sizeof(logfile), "%s/redis.log", abs);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* If lcmd dies, Redis gets SIGTERM and flushes its AOF on the way out. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        setpgid(0, 0);   /* Ctrl-C in the terminal reaches lcmd, which stops Redis in order */
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
        }
        execlp(binary, binary, "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
               "--dir", abs, "--appendonly", "yes", "--appendfsync", appendfsync, "--save", "",
               "--daemonize", "no", "--logfile", logfile, "--protected-mode", "yes", (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", binary, strerror(errno));
        _exit(127);
    }
    out->pid = pid;
    for (int i = 0; i < 200; i++) {
        if (ping(sock) == 0) {
            lcm_info("redis", "msg=\"embedded redis started\" pid=%d socket=%s appendfsync=%s", (int)pid,
                     sock, appendfsync);
            return 0;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            out->pid = 0;
            snprintf(err, errlen, "redis-server exited at start (see %s)", logfile);
            return -1;
        }
        sleep_ms(50);
    }
    lcm_embedded_redis_stop(out);
    snprintf(err, errlen, "redis-server did not answer on %s within 10 s", sock);
    return -1;
}

void lcm_embedded_redis_stop(struct lcm_embedded_redis *e)
{
    if (!e || e->pid <= 0)
        return;
    kill(e->pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        int st;
        if (waitpid(e->pid, &st, WNOHANG) == e->pid) {
            e->pid = 0;
            return;
        }
        sleep_ms(50);
    }
    kill(e->pid, SIGKILL);
    waitpid(e->pid, NULL, 0);
    e->pid = 0;
}
