/* Helpers shared by the policy tests (temporary policy dirs, writing files, sample workers). */
#include "policy_test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

long long ptu_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

long long ptu_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

double ptu_cpu_ms_since(long long t0)
{
    return (double)(ptu_cpu_ns() - t0) / 1e6;
}

double ptu_ms_since(long long t0)
{
    return (double)(ptu_now_ns() - t0) / 1e6;
}

static int copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    char buf[8192];
    size_t n;
    int rc = in && out ? 0 : -1;
    while (rc == 0 && (n = fread(buf, 1, sizeof(buf), in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            rc = -1;
    if (in)
        fclose(in);
    if (out && fclose(out) != 0)
        rc = -1;
    return rc;
}

char *ptu_copy_defaults(void)
{
    char *dir = strdup("/tmp/lcm-policy-test-XXXXXX");
    if (!dir || !mkdtemp(dir)) {
        free(dir);
        return NULL;
    }
    char a[1024], b[1024];
    snprintf(a, sizeof(a), "%s/fixtures", dir);
    mkdir(a, 0700);
    static const char *const names[] = {"placement", "scale_up", "scale_down"};
    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof(a), "%s/%s.lua", LCM_DEFAULT_POLICY_DIR, names[i]);
        snprintf(b, sizeof(b), "%s/%s.lua", dir, names[i]);
        if (copy_file(a, b) != 0)
            return NULL;
        snprintf(a, sizeof(a), "%s/fixtures/%s.lua", LCM_DEFAULT_POLICY_DIR, names[i]);
        snprintf(b, sizeof(b), "%s/fixtures/%s.lua", dir, names[i]);
        if (copy_file(a, b) != 0)
            return NULL;
    }
    return dir;
}

void ptu_rmdir(char *dir)
{
    if (!dir)
        return;
    char p[1024];
    static const char *const names[] = {"placement", "scale_up", "scale_down"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s/%s.lua", dir, names[i]);
        unlink(p);
        snprintf(p, sizeof(p), "%s/fixtures/%s.lua", dir, names[i]);
        unlink(p);
    }
    snprintf(p, sizeof(p), "%s/fixtures", dir);
    rmdir(p);
    rmdir(dir);
}

int ptu_write_bytes(const char *dir, const char *rel, const void *data, size_t len)
{
    char p[1024], tmp[1100];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    snprintf(tmp, sizeof(tmp), "%s.tmp", p);
    struct stat before;
    int had = stat(p, &before) == 0;
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return -1;
    if (fwrite(data, 1, len, f) != len) {
        fclose(f);
        return -1;
    }
    if (fclose(f) != 0 || rename(tmp, p) != 0)
        return -1;
    if (had) {
        /* make the change visible to an mtime poll even within one timestamp tick */
        struct timespec ts[2] = {before.st_atim, before.st_mtim};
        ts[1].tv_sec += 2;
        utimensat(AT_FDCWD, p, ts, 0);
    }
    return 0;
}

int ptu_write(const char *dir, const char *rel, const char *text)
{
    return ptu_write_bytes(dir, rel, text, strlen(text));
}

struct lcm_policy_worker ptu_worker(const char *id, double alloc_cpu, int sessions)
{
    struct lcm_policy_worker w;
    memset(&w, 0, sizeof(w));
    snprintf(w.id, sizeof(w.id), "%s", id);
    snprintf(w.region, sizeof(w.region), "eu-west-1");
    snprintf(w.template_name, sizeof(w.template_name), "multi-sessions");
    snprintf(w.status, sizeof(w.status), "running");
    w.license_type = LCM_POLICY_LIC_ENTERPRISE;
    snprintf(w.cml_version, sizeof(w.cml_version), "2.9.1");
    w.declared = (struct lcm_policy_capacity){48, 192, 256, 200};
    w.allocated = (struct lcm_policy_capacity){alloc_cpu, alloc_cpu * 4, alloc_cpu * 5,
                                               (int64_t)alloc_cpu};
    w.session_count = sessions;
    w.last_activity_at = 1764240000;
    w.status_since = 1764230000;
    return w;
}
