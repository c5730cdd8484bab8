/* Test kit for plugin integration tests: starts a simulator on a free port (--port-file), sets
 * up lcmd's real host services on a libevent loop and loads one plugin through the real
 * loader; helpers to call ops, wait for done and talk to the simulator's admin API. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "plugtest.h"

#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "core/httpc.h"
#include "core/metrics.h"
#include "plugin.h"

struct lcm_plugins *pt_reg;
struct lcm_metrics *pt_metrics;
int pt_sim_port;

static struct event_base *base;
static struct lcm_httpc *httpc;
static pid_t sim_pid;
static char tmpdir[256], logpath[300];
static int saved_stderr = -1;

uint64_t pt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void pt_run_ms(int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

int pt_run_until(const int *flag, int ms)
{
    uint64_t end = pt_now_ms() + (uint64_t)ms;
    while (!*flag && pt_now_ms() < end) {
        struct timeval tv = { 0, 5000 };
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    return *flag;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[n] = '\0';
        if (len)
            *len = (size_t)n;
    }
    return b;
}

static int copy_file(const char *src, const char *dst, mode_t mode)
{
    size_t n;
    char *b = slurp(src, &n);
    if (!b)
        return -1;
    int fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int rc = fd >= 0 && write(fd, b, n) == (ssize_t)n ? 0 : -1;
    if (fd >= 0)
        close(fd);
    free(b);
    return rc == 0 ? chmod(dst, mode) : -1;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p);
}

int pt_start_sim(const char *sim, const char *const *argv)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/lcm-plugtest-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir) || chmod(tmpdir, 0755) != 0)
        return -1;
    char portfile[400];
    snprintf(portfile, sizeof portfile, "%s/port", tmpdir);
    const char *args[64];
    size_t n = 0;
    args[n++] = sim;
    args[n++] = "--listen";
    args[n++] = "127.0.0.1:0";
    args[n++] = "--port-file";
    args[n++] = portfile;
    for (size_t i = 0; argv && argv[i] && n < 62; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    sim_pid = fork();
    if (sim_pid < 0)
        return -1;
    if (sim_pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0 && !getenv("PLUGTEST_VERBOSE"))
            dup2(fd, 2);
        execv(sim, (char *const *)args);
        _exit(127);
    }
    for (int i = 0; i < 1000; i++) {
        char *p = slurp(portfile, NULL);
        if (p && atoi(p) > 0) {
            pt_sim_port = atoi(p);
            free(p);
            return 0;
        }
        free(p);
        int st;
        if (waitpid(sim_pid, &st, WNOHANG) == sim_pid) {
            sim_pid = 0;
            return -1;
        }
        usleep(10000);
    }
    return -1;
}

int pt_load(const char *plugin_so, const char *config_json)
{
    char plugdir[300], dst[400];
    snprintf(plugdir, sizeof plugdir, "%s/plugins", tmpdir);
    const char *bn = strrchr(plugin_so, '/');
    bn = bn ? bn + 1 : plugin_so;
    snprintf(dst, sizeof dst, "%s/%s", plugdir, bn);
    if (mkdir(plugdir, 0755) != 0 || chmod(plugdir, 0755) != 0 ||
        copy_file(plugin_so, dst, 0755) != 0)
        return -1;
    /* lcmd's log lines (host and plugin) go to stderr: keep them in a file so tests can check
     * what was logged; pt_teardown copies them back to the real stderr. */
    snprintf(logpath, sizeof logpath, "%s/stderr.log", tmpdir);
    int lfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (lfd < 0)
        return -1;
    fflush(stderr);
    saved_stderr = dup(2);
    dup2(lfd, 2);
    close(lfd);
    base = event_base_new();
    pt_metrics = lcm_metrics_new();
    httpc = lcm_httpc_new(base, pt_metrics);
    if (!base || !pt_metrics || !httpc)
        return -1;
    cJSON *cfg = config_json ? cJSON_Parse(config_json) : NULL;
    if (config_json && !cfg)
        return -1;
    struct lcm_plugin_host_ctx ctx = { .base = base, .httpc = httpc, .metrics = pt_metrics,
                                       .config = cfg };
    char err[256] = "";
    pt_reg = lcm_plugins_load(plugdir, &ctx, err, sizeof err);
    cJSON_Delete(cfg);
    if (!pt_reg || lcm_plugins_count(pt_reg) != 1) {
        fprintf(stderr, "plugin not loaded: %s %s\n", err,
                pt_reg && lcm_plugins_refusal(pt_reg, bn) ? lcm_plugins_refusal(pt_reg, bn)
                                                          : "");
        return -1;
    }
    return 0;
}

int pt_teardown(void)
{
    lcm_plugins_free(pt_reg);
    pt_reg = NULL;
    if (httpc)
        lcm_httpc_free(httpc);
    if (pt_metrics)
        lcm_metrics_free(pt_metrics);
    if (base)
        event_base_free(base);
    httpc = NULL;
    pt_metrics = NULL;
    base = NULL;
    if (saved_stderr >= 0) {
        fflush(stderr);
        dup2(saved_stderr, 2);
        close(saved_stderr);
        saved_stderr = -1;
        char *log = slurp(logpath, NULL);
        if (log)
            fputs(log, stderr);
        free(log);
    }
    int rc = 0;
    if (sim_pid > 0) {
        kill(sim_pid, SIGTERM);
        int st;
        waitpid(sim_pid, &st, 0);
        rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        sim_pid = 0;
    }
    if (tmpdir[0])
        nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}

int pt_log_contains(const char *needle)
{
    fflush(stderr);
    char *log = slurp(logpath, NULL);
    int found = log && strstr(log, needle) != NULL;
    free(log);
    return found;
}

/* ---- the simulator's admin API ---- */

struct adm {
    int done, status;
    char *body;
};

static void adm_done(const struct lcm_httpc_resp *r, void *ud)
{
    struct adm *a = ud;
    a->status = r->status;
    a->body = r->body ? strdup(r->body) : NULL;
    a->done = 1;
}

int pt_sim(const char *method, const char *path, const char *body, char **out)
{
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", pt_sim_port, path);
    const char *h[] = { "Content-Type: application/json" };
    struct lcm_httpc_req req = { .method = method, .url = url, .headers = h, .nheaders = 1,
                                 .body = body, .body_len = body ? strlen(body) : 0,
                                 .timeout_ms = 5000 };
    struct adm a = { 0 };
    if (lcm_httpc_request(httpc, &req, adm_done, &a, NULL) != 0)
        return -1;
    pt_run_until(&a.done, 10000);
    if (out)
        *out = a.body;
    else
        free(a.body);
    return a.status;
}

double pt_sim_num(const char *path, const char *field)
{
    char *body = NULL;
    if (pt_sim("GET", path, NULL, &body) != 200) {
        free(body);
        return -1;
    }
    cJSON *j = cJSON_Parse(body);
    free(body);
    const cJSON *it = j;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", field);
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k && it;
         k = strtok_r(NULL, ".", &save))
        it = cJSON_GetObjectItemCaseSensitive(it, k);
    double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
    cJSON_Delete(j);
    return v;
}

void pt_add_fault(const char *json)
{
    char *body = NULL;
    int st = pt_sim("POST", "/_sim/faults", json, &body);
    if (st != 201 && st != 200)
        fail_msg("fault %s refused: %d %s", json, st, body ? body : "");
    free(body);
}

void pt_clear_faults(void)
{
    int st = pt_sim("DELETE", "/_sim/faults", NULL, NULL);
    if (st != 204 && st != 200)
        fail_msg("clearing faults: %d", st);
}

/* ---- ops ---- */

static void on_done(void *ud, const struct lcm_error *err, const void *result)
{
    struct pt_outcome *o = ud;
    o->calls++;
    if (err) {
        o->code = err->code;
        o->retryable = err->retryable;
        o->http_status = err->http_status;
        snprintf(o->message, sizeof o->message, "%s", err->message);
        return;
    }
    o->code = 0;
    o->res = o->conv && result ? o->conv(result) : NULL;
}

int pt_call_async(enum lcm_plugin_kind kind, size_t off, const struct pt_target *t,
                  const void *args, pt_conv_fn conv, struct pt_outcome *o, uint64_t *op_id)
{
    static const struct pt_target none = { 0 };
    if (!t)
        t = &none;
    memset(o, 0, sizeof *o);
    o->conv = conv;
    o->code = 1;
    struct lcm_call call = { .size = sizeof call, .correlation_id = "plugtest",
                             .endpoint = t->endpoint, .region = t->region,
                             .credentials = t->credentials, .deadline_ms = t->deadline_ms };
    struct lcm_error err = { 0 };
    int rc = lcm_plugins_call(pt_reg, kind, off, &call, args, on_done, o, &err, op_id);
    if (rc != 0) {
        o->code = rc;
        o->retryable = err.retryable;
        snprintf(o->message, sizeof o->message, "%s", err.message);
    }
    return rc;
}

void pt_call(enum lcm_plugin_kind kind, size_t off, const struct pt_target *t, const void *args,
             pt_conv_fn conv, struct pt_outcome *o)
{
    if (pt_call_async(kind, off, t, args, conv, o, NULL) != 0)
        return;
    pt_run_until(&o->calls, 20000);
    pt_run_ms(1);                 /* a second done would show up here */
    assert_int_equal(o->calls, 1);
}

void pt_outcome_free(struct pt_outcome *o)
{
    cJSON_Delete(o->res);
    o->res = NULL;
}

void pt_expect_ok(const struct pt_outcome *o)
{
    if (o->code != 0)
        fail_msg("op failed: code=%d retryable=%d http=%d msg=%s", o->code, o->retryable,
                 o->http_status, o->message);
}

void pt_expect_err(const struct pt_outcome *o, int code, int retryable)
{
    if (o->code != code || o->retryable != retryable)
        fail_msg("wanted code=%d retryable=%d, got code=%d retryable=%d http=%d msg=%s", code,
                 retryable, o->code, o->retryable, o->http_status, o->message);
}

const char *pt_res_str(const struct pt_outcome *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o->res, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

double pt_res_num(const struct pt_outcome *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o->res, key);
    return cJSON_IsNumber(v) ? v->valuedouble : cJSON_IsBool(v) ? cJSON_IsTrue(v) : -1;
}
