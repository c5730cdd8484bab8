/* Test helpers for the plugin suite: temp plugin directories, stderr capture and loop
 * driving. */
#include "harness.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

char *h_tmpdir(void)
{
    const char *t = getenv("TMPDIR");
    char buf[512];
    snprintf(buf, sizeof buf, "%s/lcm-plugin-test-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(buf))
        return NULL;
    chmod(buf, 0755);
    return strdup(buf);
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p);
}

void h_rmtree(const char *dir)
{
    if (dir)
        nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int h_copy(const char *src, const char *dir, const char *as, mode_t mode)
{
    char dst[1024];
    snprintf(dst, sizeof dst, "%s/%s", dir, as);
    int in = open(src, O_RDONLY), out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int rc = in < 0 || out < 0 ? -1 : 0;
    char buf[65536];
    ssize_t n;
    while (rc == 0 && (n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n)
            rc = -1;
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    if (rc == 0)
        rc = chmod(dst, mode);
    return rc;
}

int h_fx(const char *dir, const char *fixture, const char *as)
{
    char src[1024];
    snprintf(src, sizeof src, "%s/%s", FX_DIR, fixture);
    return h_copy(src, dir, as, 0755);
}

static int saved_fd = -1;
static char cap_path[512];

void h_capture_begin(void)
{
    snprintf(cap_path, sizeof cap_path, "/tmp/lcm-plugin-cap-%d-XXXXXX", (int)getpid());
    int fd = mkstemp(cap_path);
    fflush(stderr);
    saved_fd = dup(2);
    dup2(fd, 2);
    close(fd);
}

char *h_capture_end(void)
{
    fflush(stderr);
    dup2(saved_fd, 2);
    close(saved_fd);
    saved_fd = -1;
    FILE *f = fopen(cap_path, "r");
    char *out = NULL;
    size_t len = 0;
    if (f) {
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        out = calloc(1, (size_t)n + 1);
        if (out)
            len = fread(out, 1, (size_t)n, f);
        fclose(f);
    }
    unlink(cap_path);
    if (out) {
        out[len] = '\0';
        fputs(out, stderr);          /* keep it visible in the test output */
    }
    return out ? out : strdup("");
}

int h_run_until(struct event_base *base, const int *flag, int ms)
{
    for (int i = 0; i < ms && !*flag; i++) {
        struct timeval tv = { 0, 1000 };
        event_base_loopexit(base, &tv);
        event_base_loop(base, 0);
    }
    return *flag;
}

void h_run_for(struct event_base *base, int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    event_base_loopexit(base, &tv);
    event_base_loop(base, 0);
}
