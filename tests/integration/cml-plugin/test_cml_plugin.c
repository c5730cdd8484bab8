/* Integration tests of the cml plugin: build/plugins/lcm-cml.so loaded through the real loader
 * with the real host services (libevent loop, curl-multi client, metrics), talking HTTP to a
 * real cml-sim process on a loopback port. Each test uses its own virtual CML controller. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

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

/* ---- world: cml-sim process, loop, host, registry ---- */

static struct event_base *base;
static struct lcm_metrics *metrics;
static struct lcm_httpc *httpc;
static struct lcm_plugins *reg;
static pid_t sim_pid;
static int sim_port;
static char tmpdir[256], plugdir[300];
static char *topology;
static size_t topology_len;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void run_ms(int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* Runs the loop until *flag is set or ms pass. */
static int run_until(const int *flag, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    while (!*flag && now_ms() < end) {
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
    char *b = malloc((size_t)n + 1);
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

/* ---- admin calls to the simulator (through the same loop) ---- */

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

/* method path [json body]; returns the status, *out (may be NULL) gets the body (caller frees). */
static int sim_admin(const char *method, const char *path, const char *body, char **out)
{
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", sim_port, path);
    const char *h[] = { "Content-Type: application/json" };
    struct lcm_httpc_req req = { .method = method, .url = url, .headers = h, .nheaders = 1,
                                 .body = body, .body_len = body ? strlen(body) : 0,
                                 .timeout_ms = 5000 };
    struct adm a = { 0 };
    if (lcm_httpc_request(httpc, &req, adm_done, &a, NULL) != 0)
        return -1;
    run_until(&a.done, 10000);
    if (out)
        *out = a.body;
    else
        free(a.body);
    return a.status;
}

/* A number from GET /_sim/controllers/<id>. */
static double ctrl_num(const char *ctrl, const char *field)
{
    char path[128], *body = NULL;
    snprintf(path, sizeof path, "/_sim/controllers/%s", ctrl);
    assert_int_equal(sim_admin("GET", path, NULL, &body), 200);
    cJSON *j = cJSON_Parse(body);
    free(body);
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, field);
    double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
    cJSON_Delete(j);
    return v;
}

/* A number from GET /_sim/stats (faults_hit counts requests answered by a fault rule). */
static double sim_stat(const char *field)
{
    char *body = NULL;
    assert_int_equal(sim_admin("GET", "/_sim/stats", NULL, &body), 200);
    cJSON *j = cJSON_Parse(body);
    free(body);
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, field);
    double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
    cJSON_Delete(j);
    return v;
}

static void add_fault(const char *json)
{
    char *body = NULL;
    int st = sim_admin("POST", "/_sim/faults", json, &body);
    if (st != 201 && st != 200)
        fail_msg("fault %s refused: %d %s", json, st, body ? body : "");
    free(body);
}

static void clear_faults(void) { assert_int_equal(sim_admin("DELETE", "/_sim/faults", NULL, NULL), 204); }

static double metric(const char *name, const char *labels)
{
    return lcm_metrics_get(metrics, name, labels);
}

/* ---- calling ops ---- */

typedef cJSON *(*conv_fn)(const void *result);

struct outcome {
    int calls;
    int code, retryable, http_status;
    char message[256];
    conv_fn conv;
    cJSON *res;                  /* the result converted while it was valid */
};

static void on_done(void *ud, const struct lcm_error *err, const void *result)
{
    struct outcome *o = ud;
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

static void outcome_free(struct outcome *o)
{
    cJSON_Delete(o->res);
    o->res = NULL;
}

static cJSON *strs_json(struct lcm_strs s)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < s.n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(s.v[i] ? s.v[i] : ""));
    return a;
}

#define ADDS(o, k, v) cJSON_AddStringToObject(o, k, (v) ? (v) : "")

static cJSON *conv_sysinfo(const void *r)
{
    const struct lcm_rt_system_info *s = r;
    cJSON *o = cJSON_CreateObject();
    ADDS(o, "version", s->version);
    cJSON_AddBoolToObject(o, "ready", s->ready);
    return o;
}

static cJSON *conv_licence(const void *r)
{
    const struct lcm_rt_licence *l = r;
    cJSON *o = cJSON_CreateObject();
    ADDS(o, "registration_status", l->registration_status);
    ADDS(o, "authorization_status", l->authorization_status);
    ADDS(o, "product_license", l->product_license);
    cJSON_AddNumberToObject(o, "registered", l->registered);
    cJSON_AddNumberToObject(o, "node_limit", l->node_limit);
    return o;
}

static cJSON *conv_imported(const void *r)
{
    const struct lcm_rt_imported *im = r;
    cJSON *o = cJSON_CreateObject();
    ADDS(o, "lab_id", im->lab_id);
    cJSON_AddItemToObject(o, "warnings", strs_json(im->warnings));
    return o;
}

static cJSON *conv_lab(const void *r)
{
    const struct lcm_rt_lab *l = r;
    cJSON *o = cJSON_CreateObject();
    ADDS(o, "id", l->id);
    ADDS(o, "title", l->title);
    ADDS(o, "state", l->state);
    cJSON_AddNumberToObject(o, "node_count", l->node_count);
    return o;
}

static cJSON *conv_converged(const void *r)
{
    return cJSON_CreateBool(((const struct lcm_rt_converged *)r)->converged);
}

static cJSON *conv_nodes(const void *r)
{
    const struct lcm_rt_nodes *n = r;
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n->n; i++) {
        cJSON *o = cJSON_CreateObject();
        ADDS(o, "id", n->v[i].id);
        ADDS(o, "label", n->v[i].label);
        ADDS(o, "node_definition", n->v[i].node_definition);
        ADDS(o, "state", n->v[i].state);
        cJSON_AddItemToObject(o, "tags", strs_json(n->v[i].tags));
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

static cJSON *conv_configs(const void *r)
{
    const struct lcm_rt_configs *c = r;
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < c->n; i++) {
        cJSON *o = cJSON_CreateObject();
        ADDS(o, "node_id", c->v[i].node_id);
        ADDS(o, "label", c->v[i].label);
        ADDS(o, "config", c->v[i].config);
        cJSON_AddNumberToObject(o, "len", (double)c->v[i].config_len);
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

static cJSON *conv_stats(const void *r)
{
    const struct lcm_rt_system_stats *s = r;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "cpu_percent", s->cpu_percent);
    cJSON_AddNumberToObject(o, "mem_used", (double)s->mem_used_bytes);
    cJSON_AddNumberToObject(o, "mem_total", (double)s->mem_total_bytes);
    cJSON_AddNumberToObject(o, "disk_total", (double)s->disk_total_bytes);
    cJSON_AddNumberToObject(o, "computes", s->computes);
    cJSON_AddNumberToObject(o, "running_nodes", s->running_nodes);
    return o;
}

static cJSON *conv_activity(const void *r)
{
    const struct lcm_rt_activity *a = r;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "last_activity_ms", (double)a->last_activity_ms);
    cJSON *ev = cJSON_AddArrayToObject(o, "events");
    for (size_t i = 0; i < a->n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "at_ms", (double)a->v[i].at_ms);
        ADDS(e, "category", a->v[i].category);
        ADDS(e, "lab_id", a->v[i].lab_id);
        cJSON_AddItemToArray(ev, e);
    }
    return o;
}

static cJSON *conv_ids(const void *r)
{
    return strs_json(((const struct lcm_rt_lab_ids *)r)->ids);
}

static cJSON *conv_node_defs(const void *r)
{
    return strs_json(((const struct lcm_rt_node_definitions *)r)->ids);
}

static int has_str(const cJSON *arr, const char *s)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
        if (cJSON_IsString(it) && strcmp(it->valuestring, s) == 0)
            return 1;
    return 0;
}

struct target {
    const char *instance;        /* virtual controller id */
    const char *credentials;
    int64_t deadline_ms;
};

/* Calls op (an offset in lcm_runtime_ops) and waits for done. Returns the synchronous code;
 * on 0, o holds the outcome (calls must be 1). */
static int call_op_async(size_t off, const struct target *t, const void *args, conv_fn conv,
                         struct outcome *o, uint64_t *op_id)
{
    memset(o, 0, sizeof *o);
    o->conv = conv;
    o->code = 1;
    struct lcm_call call = { .size = sizeof call, .correlation_id = "cml-it",
                             .instance_id = t->instance, .worker_id = t->instance,
                             .credentials = t->credentials, .deadline_ms = t->deadline_ms };
    struct lcm_error err = { 0 };
    int rc = lcm_plugins_call(reg, LCM_KIND_RUNTIME, off, &call, args, on_done, o, &err, op_id);
    if (rc != 0) {
        o->code = rc;
        o->retryable = err.retryable;
        snprintf(o->message, sizeof o->message, "%s", err.message);
    }
    return rc;
}

static void call_op(size_t off, const struct target *t, const void *args, conv_fn conv,
                    struct outcome *o)
{
    int rc = call_op_async(off, t, args, conv, o, NULL);
    if (rc != 0)
        return;
    run_until(&o->calls, 20000);
    assert_int_equal(o->calls, 1);
}

#define OP(name) offsetof(struct lcm_runtime_ops, name)

static void expect_ok(const struct outcome *o)
{
    if (o->code != 0)
        fail_msg("op failed: code=%d retryable=%d http=%d msg=%s", o->code, o->retryable,
                 o->http_status, o->message);
}

/* Polls lab_get until the CML state is want (or the time runs out). */
static void wait_state(const struct target *t, const char *lab_id, const char *want, int ms)
{
    struct lcm_rt_lab_args la = { .lab_id = lab_id };
    uint64_t end = now_ms() + (uint64_t)ms;
    char last[64] = "";
    while (now_ms() < end) {
        struct outcome o;
        call_op(OP(lab_get), t, &la, conv_lab, &o);
        expect_ok(&o);
        snprintf(last, sizeof last, "%s",
                 cJSON_GetObjectItem(o.res, "state")->valuestring);
        outcome_free(&o);
        if (strcmp(last, want) == 0)
            return;
        run_ms(30);
    }
    fail_msg("lab %s: state %s, wanted %s", lab_id, last, want);
}

static void wait_converged(const struct target *t, const char *lab_id, int ms)
{
    struct lcm_rt_lab_args la = { .lab_id = lab_id };
    uint64_t end = now_ms() + (uint64_t)ms;
    while (now_ms() < end) {
        struct outcome o;
        call_op(OP(lab_converged), t, &la, conv_converged, &o);
        expect_ok(&o);
        int c = cJSON_IsTrue(o.res);
        outcome_free(&o);
        if (c)
            return;
        run_ms(30);
    }
    fail_msg("lab %s never converged", lab_id);
}

static char *import_lab(const struct target *t, const char *title)
{
    struct lcm_rt_lab_import_args ia = { .topology_yaml = topology,
                                         .topology_len = topology_len, .title = title };
    struct outcome o;
    call_op(OP(lab_import), t, &ia, conv_imported, &o);
    expect_ok(&o);
    char *id = strdup(cJSON_GetObjectItem(o.res, "lab_id")->valuestring);
    outcome_free(&o);
    assert_true(strlen(id) > 0);
    return id;
}

static void lab_simple(size_t off, const struct target *t, const char *lab_id)
{
    struct lcm_rt_lab_args la = { .lab_id = lab_id };
    struct outcome o;
    call_op(off, t, &la, NULL, &o);
    expect_ok(&o);
    outcome_free(&o);
}

/* The number of successful authentications so far (plugin metric). */
static double auths(void)
{
    return metric("lcm_plugin_cml_auth_total", "plugin=\"cml\",result=\"ok\"");
}

/* ---- setup ---- */

static int start_sim(void)
{
    char portfile[400];
    snprintf(portfile, sizeof portfile, "%s/port", tmpdir);
    sim_pid = fork();
    if (sim_pid < 0)
        return -1;
    if (sim_pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0 && !getenv("CML_IT_VERBOSE"))
            dup2(fd, 2);
        execl(CML_SIM, CML_SIM, "--listen", "127.0.0.1:0", "--port-file", portfile,
              "--import-ms", "50", "--boot-ms", "400", "--stop-ms", "100", "--wipe-ms", "100",
              "--token-ttl-ms", "600000", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        char *p = slurp(portfile, NULL);
        if (p && atoi(p) > 0) {
            sim_port = atoi(p);
            free(p);
            return 0;
        }
        free(p);
        int st;
        if (waitpid(sim_pid, &st, WNOHANG) == sim_pid)
            return -1;
        usleep(10000);
    }
    return -1;
}

static int setup(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/lcm-cml-it-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(plugdir, sizeof plugdir, "%s/plugins", tmpdir);
    if (mkdir(plugdir, 0755) != 0 || chmod(tmpdir, 0755) != 0 || chmod(plugdir, 0755) != 0)
        return -1;
    char dst[400];
    snprintf(dst, sizeof dst, "%s/lcm-cml.so", plugdir);
    if (copy_file(CML_PLUGIN, dst, 0755) != 0)
        return -1;
    if (!(topology = slurp(TOPOLOGY, &topology_len)))
        return -1;
    if (start_sim() != 0)
        return -1;

    char tmpl[128];
    snprintf(tmpl, sizeof tmpl, "http://127.0.0.1:%d/{instance_id}", sim_port);
    setenv("LCM_CML_ENDPOINT", tmpl, 1);
    setenv("LCM_CML_USERNAME", "admin", 1);
    setenv("LCM_CML_PASSWORD", "admin-sim", 1);
    setenv("LCM_WRONG_USERNAME", "admin", 1);
    setenv("LCM_WRONG_PASSWORD", "not-the-password", 1);

    base = event_base_new();
    metrics = lcm_metrics_new();
    httpc = lcm_httpc_new(base, metrics);
    if (!base || !metrics || !httpc)
        return -1;
    /* Short timeouts so timeouts and retries show up quickly. */
    cJSON *cfg = cJSON_Parse("{\"cml\":{\"timeout_ms\":800,\"import_timeout_ms\":800,"
                             "\"max_retries\":2,\"connect_timeout_ms\":500}}");
    struct lcm_plugin_host_ctx ctx = { .base = base, .httpc = httpc, .metrics = metrics,
                                       .config = cfg };
    char err[256];
    reg = lcm_plugins_load(plugdir, &ctx, err, sizeof err);
    cJSON_Delete(cfg);
    if (!reg || lcm_plugins_count(reg) != 1) {
        fprintf(stderr, "cml plugin not loaded: %s %s\n", err,
                reg ? lcm_plugins_refusal(reg, "lcm-cml.so") : "");
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    lcm_plugins_free(reg);
    lcm_httpc_free(httpc);
    lcm_metrics_free(metrics);
    event_base_free(base);
    if (sim_pid > 0) {
        kill(sim_pid, SIGTERM);
        int st;
        waitpid(sim_pid, &st, 0);
    }
    free(topology);
    nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static int per_test_teardown(void **state)
{
    clear_faults();
    return 0;
}

/* ---- tests ---- */

static void test_loaded_and_implemented(void **state)
{
    struct lcm_plugin *p = lcm_plugins_get(reg, LCM_KIND_RUNTIME);
    assert_non_null(p);
    assert_string_equal(lcm_plugin_name(p), "cml");
    static const size_t ops[] = { OP(system_info), OP(licence_get), OP(licence_register),
                                  OP(lab_import), OP(lab_get), OP(lab_start), OP(lab_stop),
                                  OP(lab_wipe), OP(lab_delete), OP(lab_converged),
                                  OP(nodes_list), OP(node_set_tags), OP(extract_configs),
                                  OP(system_stats), OP(activity), OP(list_labs),
                                  OP(node_definitions) };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        assert_true(lcm_plugin_implements(p, ops[i]));
}

static void test_system_info_licence_stats(void **state)
{
    struct target t = { .instance = "w-info" };
    struct outcome o;
    double a0 = auths();
    call_op(OP(system_info), &t, NULL, conv_sysinfo, &o);
    expect_ok(&o);
    assert_string_equal(cJSON_GetObjectItem(o.res, "version")->valuestring, "2.9.0");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o.res, "ready")));
    outcome_free(&o);
    assert_true(auths() == a0);              /* system_information needs no token */

    call_op(OP(licence_get), &t, NULL, conv_licence, &o);
    expect_ok(&o);
    assert_string_equal(cJSON_GetObjectItem(o.res, "product_license")->valuestring,
                        "enterprise");
    assert_string_equal(cJSON_GetObjectItem(o.res, "registration_status")->valuestring,
                        "COMPLETED");
    assert_int_equal(cJSON_GetObjectItem(o.res, "registered")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItem(o.res, "node_limit")->valueint, 500);
    outcome_free(&o);
    assert_true(auths() == a0 + 1);

    call_op(OP(system_stats), &t, NULL, conv_stats, &o);
    expect_ok(&o);
    assert_true(cJSON_GetObjectItem(o.res, "computes")->valueint >= 1);
    assert_true(cJSON_GetObjectItem(o.res, "mem_total")->valuedouble > 0);
    assert_int_equal(cJSON_GetObjectItem(o.res, "running_nodes")->valueint, 0);
    outcome_free(&o);
    assert_true(auths() == a0 + 1);          /* the token is cached per endpoint */

    /* A personal-licence controller: licence type and its node limit. */
    assert_int_equal(sim_admin("POST", "/_sim/controllers",
                               "{\"id\":\"w-personal\",\"license\":\"personal\"}", NULL), 201);
    struct target tp = { .instance = "w-personal" };
    call_op(OP(licence_get), &tp, NULL, conv_licence, &o);
    expect_ok(&o);
    assert_string_equal(cJSON_GetObjectItem(o.res, "product_license")->valuestring, "personal");
    assert_int_equal(cJSON_GetObjectItem(o.res, "node_limit")->valueint, 20);
    outcome_free(&o);
}

/* GET /node_definitions: what the worker controller records for placement. */
static void test_node_definitions(void **state)
{
    struct target t = { .instance = "w-nodedefs" };
    struct outcome o;
    double a0 = auths();
    call_op(OP(node_definitions), &t, NULL, conv_node_defs, &o);
    expect_ok(&o);
    /* cml-sim's default list: the reference platform plus the sample topologies' definitions */
    assert_int_equal(cJSON_GetArraySize(o.res), 16);
    static const char *const want[] = { "iosv", "iosvl2", "ubuntu", "alpine", "external_connector",
                                        "unmanaged_switch", "ubuntu-desktop-24-04-v2",
                                        "vmanagemock", "mock-server" };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!has_str(o.res, want[i]))
            fail_msg("node definition %s missing", want[i]);
    outcome_free(&o);
    assert_true(auths() == a0 + 1);          /* needs a token, like CML */

    /* The controller's list changes (an image added or removed): the next call sees it. */
    assert_int_equal(sim_admin("PATCH", "/_sim/controllers/w-nodedefs",
                               "{\"node_definitions\":[\"iosv\",\"custom-xe\"]}", NULL), 200);
    call_op(OP(node_definitions), &t, NULL, conv_node_defs, &o);
    expect_ok(&o);
    assert_int_equal(cJSON_GetArraySize(o.res), 2);
    assert_string_equal(cJSON_GetArrayItem(o.res, 0)->valuestring, "iosv");
    assert_string_equal(cJSON_GetArrayItem(o.res, 1)->valuestring, "custom-xe");
    outcome_free(&o);
    assert_true(auths() == a0 + 1);          /* the token is reused */
    assert_int_equal(sim_admin("PATCH", "/_sim/controllers/w-nodedefs",
                               "{\"node_definitions\":[]}", NULL), 200);
    call_op(OP(node_definitions), &t, NULL, conv_node_defs, &o);
    expect_ok(&o);
    assert_int_equal(cJSON_GetArraySize(o.res), 0);
    outcome_free(&o);

    /* An expired token is renewed once, transparently. */
    assert_int_equal(sim_admin("POST", "/_sim/controllers/w-nodedefs/expire_tokens", NULL, NULL),
                     204);
    call_op(OP(node_definitions), &t, NULL, conv_node_defs, &o);
    expect_ok(&o);
    outcome_free(&o);
    assert_true(auths() == a0 + 2);

    /* Failures map like every other call: 5xx retried then retryable, bad credentials final. */
    add_fault("{\"controller\":\"w-nodedefs\",\"path\":\"/node_definitions\","
              "\"status\":500,\"count\":-1}");
    double before = sim_stat("faults_hit");
    call_op(OP(node_definitions), &t, NULL, conv_node_defs, &o);
    assert_int_equal(o.code, LCM_E_UNAVAIL);
    assert_int_equal(o.retryable, 1);
    assert_int_equal(o.http_status, 500);
    assert_non_null(strstr(o.message, "node_definitions"));
    assert_true(sim_stat("faults_hit") - before == 3);
    clear_faults();
    struct target bad = { .instance = "w-nodedefs-creds", .credentials = "WRONG" };
    call_op(OP(node_definitions), &bad, NULL, conv_node_defs, &o);
    assert_int_equal(o.code, LCM_E_AUTH);
    assert_int_equal(o.retryable, 0);
}

static void test_lab_lifecycle(void **state)
{
    struct target t = { .instance = "w-life" };
    struct outcome o;
    char *lab = import_lab(&t, "LCM life 1");

    struct lcm_rt_lab_args la = { .lab_id = lab };
    call_op(OP(lab_get), &t, &la, conv_lab, &o);
    expect_ok(&o);
    assert_string_equal(cJSON_GetObjectItem(o.res, "state")->valuestring, "DEFINED_ON_CORE");
    assert_string_equal(cJSON_GetObjectItem(o.res, "title")->valuestring, "LCM life 1");
    assert_string_equal(cJSON_GetObjectItem(o.res, "id")->valuestring, lab);
    assert_int_equal(cJSON_GetObjectItem(o.res, "node_count")->valueint, 3);
    outcome_free(&o);

    call_op(OP(list_labs), &t, NULL, conv_ids, &o);
    expect_ok(&o);
    assert_int_equal(cJSON_GetArraySize(o.res), 1);
    assert_string_equal(cJSON_GetArrayItem(o.res, 0)->valuestring, lab);
    outcome_free(&o);

    /* Nodes with their tags; then give the PC a port tag, keeping its other tags. */
    call_op(OP(nodes_list), &t, &la, conv_nodes, &o);
    expect_ok(&o);
    assert_int_equal(cJSON_GetArraySize(o.res), 3);
    cJSON *pc = NULL, *n;
    cJSON_ArrayForEach(n, o.res)
        if (strcmp(cJSON_GetObjectItem(n, "label")->valuestring, "PC") == 0)
            pc = n;
    assert_non_null(pc);
    cJSON *tags = cJSON_GetObjectItem(pc, "tags");
    assert_int_equal(cJSON_GetArraySize(tags), 2);
    assert_string_equal(cJSON_GetArrayItem(tags, 0)->valuestring, "serial:4567");
    assert_string_equal(cJSON_GetArrayItem(tags, 1)->valuestring, "vnc:4568");
    char node_id[64];
    snprintf(node_id, sizeof node_id, "%s", cJSON_GetObjectItem(pc, "id")->valuestring);
    outcome_free(&o);

    /* The caller keeps non-port tags and replaces the port ones (DOMAIN.md "Ports"). */
    const char *newtags[] = { "serial:2000", "vnc:2001", "group:pod-a" };
    struct lcm_rt_node_tags_args ta = { .lab_id = lab, .node_id = node_id,
                                        .tags = { newtags, 3 } };
    call_op(OP(node_set_tags), &t, &ta, NULL, &o);
    expect_ok(&o);
    outcome_free(&o);
    call_op(OP(nodes_list), &t, &la, conv_nodes, &o);
    expect_ok(&o);
    int seen = 0;
    cJSON_ArrayForEach(n, o.res) {
        cJSON *tg = cJSON_GetObjectItem(n, "tags");
        if (strcmp(cJSON_GetObjectItem(n, "id")->valuestring, node_id) == 0) {
            assert_int_equal(cJSON_GetArraySize(tg), 3);
            assert_string_equal(cJSON_GetArrayItem(tg, 0)->valuestring, "serial:2000");
            assert_string_equal(cJSON_GetArrayItem(tg, 2)->valuestring, "group:pod-a");
            seen = 1;
        } else {
            assert_int_equal(cJSON_GetArraySize(tg), 1);   /* other nodes untouched */
        }
    }
    assert_true(seen);
    outcome_free(&o);

    /* start → converged → booted */
    lab_simple(OP(lab_start), &t, lab);
    wait_converged(&t, lab, 10000);
    call_op(OP(lab_get), &t, &la, conv_lab, &o);
    expect_ok(&o);
    assert_string_equal(cJSON_GetObjectItem(o.res, "state")->valuestring, "STARTED");
    outcome_free(&o);
    call_op(OP(system_stats), &t, NULL, conv_stats, &o);
    expect_ok(&o);
    assert_true(cJSON_GetObjectItem(o.res, "running_nodes")->valueint >= 3);
    outcome_free(&o);

    /* Collect every node's configuration. */
    struct lcm_rt_extract_args ea = { .lab_id = lab };
    call_op(OP(extract_configs), &t, &ea, conv_configs, &o);
    expect_ok(&o);
    assert_int_equal(cJSON_GetArraySize(o.res), 3);
    cJSON_ArrayForEach(n, o.res) {
        assert_true(strlen(cJSON_GetObjectItem(n, "label")->valuestring) > 0);
        assert_non_null(strstr(cJSON_GetObjectItem(n, "config")->valuestring,
                               "extracted by cml-sim"));
    }
    outcome_free(&o);
    /* One named node only. */
    const char *one[] = { node_id };
    struct lcm_rt_extract_args e1 = { .lab_id = lab, .node_ids = { one, 1 } };
    call_op(OP(extract_configs), &t, &e1, conv_configs, &o);
    expect_ok(&o);
    assert_int_equal(cJSON_GetArraySize(o.res), 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(o.res, 0), "label")->valuestring,
                        "PC");
    outcome_free(&o);

    /* Delete refuses a running lab: a conflict, not retryable. */
    call_op(OP(lab_delete), &t, &la, NULL, &o);
    assert_int_equal(o.code, LCM_E_CONFLICT);
    assert_int_equal(o.retryable, 0);
    assert_int_equal(o.http_status, 400);
    assert_non_null(strstr(o.message, "running"));

    /* stop → wipe */
    lab_simple(OP(lab_stop), &t, lab);
    wait_state(&t, lab, "STOPPED", 5000);
    lab_simple(OP(lab_wipe), &t, lab);
    wait_state(&t, lab, "DEFINED_ON_CORE", 5000);

    /* Reuse: the wiped lab starts again and keeps the tags written before. */
    lab_simple(OP(lab_start), &t, lab);
    wait_converged(&t, lab, 10000);
    call_op(OP(nodes_list), &t, &la, conv_nodes, &o);
    expect_ok(&o);
    cJSON_ArrayForEach(n, o.res) {
        assert_string_equal(cJSON_GetObjectItem(n, "state")->valuestring, "BOOTED");
        if (strcmp(cJSON_GetObjectItem(n, "id")->valuestring, node_id) == 0)
            assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(n, "tags")), 3);
    }
    outcome_free(&o);
    lab_simple(OP(lab_stop), &t, lab);
    wait_state(&t, lab, "STOPPED", 5000);
    lab_simple(OP(lab_wipe), &t, lab);
    wait_state(&t, lab, "DEFINED_ON_CORE", 5000);
    lab_simple(OP(lab_delete), &t, lab);

    /* Gone: not found, not retryable. */
    call_op(OP(lab_get), &t, &la, conv_lab, &o);
    assert_int_equal(o.code, LCM_E_NOTFOUND);
    assert_int_equal(o.retryable, 0);
    assert_int_equal(o.http_status, 404);
    call_op(OP(list_labs), &t, NULL, conv_ids, &o);
    expect_ok(&o);
    assert_int_equal(cJSON_GetArraySize(o.res), 0);
    outcome_free(&o);
    free(lab);
}

static void test_unknown_lab_is_not_found_once(void **state)
{
    struct target t = { .instance = "w-unknown" };
    struct outcome o;
    call_op(OP(list_labs), &t, NULL, conv_ids, &o);   /* authenticates */
    expect_ok(&o);
    outcome_free(&o);
    const char *ghost = "90f84e38-a71c-4d57-8d90-00fa8a197385";
    static const size_t ops[] = { OP(lab_get), OP(lab_start), OP(lab_stop), OP(lab_wipe),
                                  OP(lab_delete), OP(lab_converged), OP(nodes_list) };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        double before = ctrl_num("w-unknown", "requests");
        struct lcm_rt_lab_args la = { .lab_id = ghost };
        call_op(ops[i], &t, &la, NULL, &o);
        assert_int_equal(o.code, LCM_E_NOTFOUND);
        assert_int_equal(o.retryable, 0);
        assert_int_equal(o.http_status, 404);
        assert_non_null(strstr(o.message, ghost));
        /* One request per call: no retries, no re-authentication storm. */
        assert_true(ctrl_num("w-unknown", "requests") == before + 1);
    }
    /* An id that could escape the path is refused before any I/O. */
    struct lcm_rt_lab_args bad = { .lab_id = "../system_stats" };
    assert_int_equal(call_op_async(OP(lab_get), &t, &bad, NULL, &o, NULL), LCM_E_INVAL);
}

static void test_token_expiry_reauth_once(void **state)
{
    struct target t = { .instance = "w-token" };
    struct outcome o;
    char *lab = import_lab(&t, "token lab");
    double a0 = auths(), r0 = metric("lcm_plugin_cml_reauth_total", "plugin=\"cml\"");

    /* Mid-flow the controller expires every token: the next call re-authenticates once,
     * transparently. */
    assert_int_equal(sim_admin("POST", "/_sim/controllers/w-token/expire_tokens", NULL, NULL),
                     204);
    lab_simple(OP(lab_start), &t, lab);
    assert_true(auths() == a0 + 1);
    assert_true(metric("lcm_plugin_cml_reauth_total", "plugin=\"cml\"") == r0 + 1);
    wait_converged(&t, lab, 10000);
    assert_true(auths() == a0 + 1);          /* the new token is reused */

    /* Through the TTL: tokens live 300 ms on this controller now. */
    assert_int_equal(sim_admin("PATCH", "/_sim/controllers/w-token", "{\"token_ttl_ms\":300}",
                               NULL), 200);
    assert_int_equal(sim_admin("POST", "/_sim/controllers/w-token/expire_tokens", NULL, NULL),
                     204);
    struct lcm_rt_lab_args la = { .lab_id = lab };
    call_op(OP(nodes_list), &t, &la, conv_nodes, &o);
    expect_ok(&o);
    outcome_free(&o);
    double a1 = auths();
    run_ms(400);                             /* let the 300 ms token expire */
    call_op(OP(lab_get), &t, &la, conv_lab, &o);
    expect_ok(&o);
    outcome_free(&o);
    assert_true(auths() == a1 + 1);

    /* A controller that keeps refusing the token: exactly one re-authentication, then an
     * auth error (not retried forever). */
    add_fault("{\"controller\":\"w-token\",\"path\":\"/labs/\",\"method\":\"GET\","
              "\"status\":401,\"count\":-1}");
    double a2 = auths();
    call_op(OP(lab_get), &t, &la, conv_lab, &o);
    assert_int_equal(o.code, LCM_E_AUTH);
    assert_int_equal(o.retryable, 0);
    assert_int_equal(o.http_status, 401);
    assert_true(auths() == a2 + 1);
    clear_faults();

    /* Concurrent calls while no token is cached share one authentication. */
    assert_int_equal(sim_admin("PATCH", "/_sim/controllers/w-token", "{\"token_ttl_ms\":600000}",
                               NULL), 200);
    assert_int_equal(sim_admin("POST", "/_sim/controllers/w-token/expire_tokens", NULL, NULL),
                     204);
    call_op(OP(lab_get), &t, &la, conv_lab, &o);  /* 401 → drops the token, re-auths */
    expect_ok(&o);
    outcome_free(&o);
    struct target tn = { .instance = "w-token-many" };
    double a3 = auths();
    struct outcome many[16];
    for (int i = 0; i < 16; i++)
        assert_int_equal(call_op_async(OP(list_labs), &tn, NULL, conv_ids, &many[i], NULL), 0);
    for (int i = 0; i < 16; i++) {
        run_until(&many[i].calls, 10000);
        assert_int_equal(many[i].calls, 1);
        expect_ok(&many[i]);
        outcome_free(&many[i]);
    }
    assert_true(auths() == a3 + 1);

    lab_simple(OP(lab_stop), &t, lab);
    free(lab);
}

static void test_bad_credentials(void **state)
{
    struct target t = { .instance = "w-creds", .credentials = "WRONG" };
    struct outcome o;
    call_op(OP(list_labs), &t, NULL, conv_ids, &o);
    assert_int_equal(o.code, LCM_E_AUTH);
    assert_int_equal(o.retryable, 0);
    assert_non_null(strstr(o.message, "WRONG"));
    assert_null(strstr(o.message, "not-the-password"));
    /* A credential set nobody configured: refused synchronously, nothing sent. */
    struct target t2 = { .instance = "w-creds", .credentials = "NOBODY" };
    assert_int_equal(call_op_async(OP(list_labs), &t2, NULL, conv_ids, &o, NULL), LCM_E_CONFIG);
    /* system_information needs no credentials at all. */
    call_op(OP(system_info), &t2, NULL, conv_sysinfo, &o);
    expect_ok(&o);
    outcome_free(&o);
}

static void test_errors_and_timeouts(void **state)
{
    struct target t = { .instance = "w-faults" };
    struct outcome o;
    char *lab = import_lab(&t, "fault lab");
    struct lcm_rt_lab_args la = { .lab_id = lab };

    /* 500 on every GET of the lab: retried (max_retries=2), then a retryable failure with
     * the reason CML gave. */
    add_fault("{\"controller\":\"w-faults\",\"path\":\"/labs/\",\"method\":\"GET\","
              "\"status\":500,\"count\":-1}");
    double before = sim_stat("faults_hit");
    call_op(OP(lab_get), &t, &la, conv_lab, &o);
    assert_int_equal(o.code, LCM_E_UNAVAIL);
    assert_int_equal(o.retryable, 1);
    assert_int_equal(o.http_status, 500);
    assert_non_null(strstr(o.message, "HTTP 500"));
    assert_non_null(strstr(o.message, "lab_get"));
    assert_true(sim_stat("faults_hit") - before == 3);   /* 1 + max_retries attempts */
    clear_faults();

    /* One transient 503: the host's retry hides it. */
    add_fault("{\"controller\":\"w-faults\",\"path\":\"/labs/\",\"method\":\"GET\","
              "\"status\":503,\"count\":1}");
    call_op(OP(lab_get), &t, &la, conv_lab, &o);
    expect_ok(&o);
    outcome_free(&o);
    clear_faults();

    /* 429: throttled, retryable. */
    add_fault("{\"controller\":\"w-faults\",\"path\":\"/labs/\",\"status\":429,\"count\":-1}");
    call_op(OP(lab_converged), &t, &la, conv_converged, &o);
    assert_int_equal(o.code, LCM_E_THROTTLED);
    assert_int_equal(o.retryable, 1);
    clear_faults();

    /* A controller slower than the timeout: a retryable timeout. */
    add_fault("{\"controller\":\"w-faults\",\"path\":\"/labs/\",\"delay_ms\":2000,"
              "\"count\":-1}");
    uint64_t t0 = now_ms();
    call_op(OP(lab_get), &t, &la, conv_lab, &o);
    assert_int_equal(o.code, LCM_E_TIMEOUT);
    assert_int_equal(o.retryable, 1);
    assert_true(now_ms() - t0 < 6000);
    clear_faults();

    /* Dropped connections: unavailable, retryable. */
    add_fault("{\"controller\":\"w-faults\",\"path\":\"/labs/\",\"drop\":true,\"count\":-1}");
    call_op(OP(lab_get), &t, &la, conv_lab, &o);
    assert_true(o.code == LCM_E_UNAVAIL || o.code == LCM_E_TIMEOUT);
    assert_int_equal(o.retryable, 1);
    clear_faults();

    /* Import is not idempotent: one attempt only, even on a 503. */
    add_fault("{\"controller\":\"w-faults\",\"path\":\"/import\",\"status\":503,\"count\":-1}");
    before = sim_stat("faults_hit");
    struct lcm_rt_lab_import_args ia = { .topology_yaml = topology,
                                         .topology_len = topology_len, .title = "x" };
    call_op(OP(lab_import), &t, &ia, conv_imported, &o);
    assert_int_equal(o.code, LCM_E_UNAVAIL);
    assert_int_equal(o.retryable, 1);
    assert_true(sim_stat("faults_hit") - before == 1);
    clear_faults();

    /* A topology CML refuses: a final error with CML's reason. */
    const char *junk = "this: is: not: a: lab\n";
    struct lcm_rt_lab_import_args bad = { .topology_yaml = junk, .title = "junk" };
    call_op(OP(lab_import), &t, &bad, conv_imported, &o);
    assert_int_equal(o.code, LCM_E_REMOTE);
    assert_int_equal(o.retryable, 0);
    assert_int_equal(o.http_status, 400);
    assert_non_null(strstr(o.message, "Import failed"));

    /* The call's deadline caps the wait. */
    add_fault("{\"controller\":\"w-faults\",\"path\":\"/labs/\",\"delay_ms\":2000,"
              "\"count\":-1}");
    struct target td = { .instance = "w-faults", .deadline_ms = (int64_t)now_ms() + 250 };
    t0 = now_ms();
    call_op(OP(lab_get), &td, &la, conv_lab, &o);
    assert_int_equal(o.code, LCM_E_TIMEOUT);
    assert_true(now_ms() - t0 < 700);        /* retries share the time left, not add to it */
    clear_faults();

    lab_simple(OP(lab_delete), &t, lab);
    free(lab);
}

static void test_licence_registration(void **state)
{
    assert_int_equal(sim_admin("POST", "/_sim/controllers",
                               "{\"id\":\"w-lic\",\"registered\":false}", NULL), 201);
    struct target t = { .instance = "w-lic" };
    struct outcome o;
    call_op(OP(licence_get), &t, NULL, conv_licence, &o);
    expect_ok(&o);
    assert_int_equal(cJSON_GetObjectItem(o.res, "registered")->valueint, 0);
    outcome_free(&o);

    struct lcm_rt_licence_register_args ra = { .token = "c2ltLXRva2Vu" };
    call_op(OP(licence_register), &t, &ra, NULL, &o);
    expect_ok(&o);
    call_op(OP(licence_get), &t, NULL, conv_licence, &o);
    expect_ok(&o);
    assert_int_equal(cJSON_GetObjectItem(o.res, "registered")->valueint, 1);
    assert_string_equal(cJSON_GetObjectItem(o.res, "authorization_status")->valuestring,
                        "IN_COMPLIANCE");
    outcome_free(&o);
    /* Registering again without reregister: CML says 409. */
    call_op(OP(licence_register), &t, &ra, NULL, &o);
    assert_int_equal(o.code, LCM_E_CONFLICT);
    assert_int_equal(o.http_status, 409);
    ra.reregister = 1;
    call_op(OP(licence_register), &t, &ra, NULL, &o);
    expect_ok(&o);
    /* A token CML refuses: final, with CML's reason. */
    struct lcm_rt_licence_register_args bad = { .token = "not a token!", .reregister = 1 };
    call_op(OP(licence_register), &t, &bad, NULL, &o);
    assert_int_equal(o.code, LCM_E_REMOTE);
    assert_int_equal(o.retryable, 0);
    assert_int_equal(o.http_status, 400);
    assert_non_null(strstr(o.message, "Invalid registration token"));
}

/* A second instance with health_in_readiness: system_info also asks /system_health. */
static void test_health_in_readiness(void **state)
{
    char dir[400], dst[460];
    snprintf(dir, sizeof dir, "%s/plugins-health", tmpdir);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(chmod(dir, 0755), 0);
    snprintf(dst, sizeof dst, "%s/lcm-cml.so", dir);
    assert_int_equal(copy_file(CML_PLUGIN, dst, 0755), 0);
    cJSON *cfg = cJSON_Parse("{\"cml\":{\"health_in_readiness\":true}}");
    struct lcm_plugin_host_ctx ctx = { .base = base, .httpc = httpc, .metrics = metrics,
                                       .config = cfg };
    char err[256];
    struct lcm_plugins *main_reg = reg;
    reg = lcm_plugins_load(dir, &ctx, err, sizeof err);
    cJSON_Delete(cfg);
    assert_non_null(reg);
    assert_int_equal(lcm_plugins_count(reg), 1);

    struct target t = { .instance = "w-health" };
    struct outcome o;
    call_op(OP(system_info), &t, NULL, conv_sysinfo, &o);
    expect_ok(&o);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o.res, "ready")));
    outcome_free(&o);
    /* authenticate + system_information + system_health */
    assert_true(ctrl_num("w-health", "requests") == 3);
    /* Not ready: CML says so before any health check. */
    assert_int_equal(sim_admin("PATCH", "/_sim/controllers/w-health", "{\"ready\":false}", NULL),
                     200);
    call_op(OP(system_info), &t, NULL, conv_sysinfo, &o);
    expect_ok(&o);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItem(o.res, "ready")));
    outcome_free(&o);
    assert_true(ctrl_num("w-health", "requests") == 4);
    /* The health check needs credentials. */
    assert_int_equal(sim_admin("PATCH", "/_sim/controllers/w-health", "{\"ready\":true}", NULL),
                     200);
    struct target tw = { .instance = "w-health", .credentials = "WRONG" };
    call_op(OP(system_info), &tw, NULL, conv_sysinfo, &o);
    assert_int_equal(o.code, LCM_E_AUTH);

    lcm_plugins_free(reg);
    reg = main_reg;
}

static void test_activity(void **state)
{
    struct target t = { .instance = "w-act" };
    struct outcome o;
    int64_t wall0 = (int64_t)time(NULL) * 1000 - 2000;
    struct lcm_rt_activity_args aa = { .since_ms = wall0 };
    call_op(OP(activity), &t, &aa, conv_activity, &o);
    expect_ok(&o);
    assert_true(cJSON_GetObjectItem(o.res, "last_activity_ms")->valuedouble == 0);
    outcome_free(&o);

    assert_int_equal(sim_admin("POST", "/_sim/controllers/w-act/activity",
                               "{\"user\":\"learner1\"}", NULL), 204);
    call_op(OP(activity), &t, &aa, conv_activity, &o);
    expect_ok(&o);
    double last = cJSON_GetObjectItem(o.res, "last_activity_ms")->valuedouble;
    assert_true(last >= (double)wall0 && last <= (double)wall0 + 60000);
    int found = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(o.res, "events"))
        found |= strcmp(cJSON_GetObjectItem(e, "category")->valuestring, "user_activity") == 0;
    assert_true(found);
    outcome_free(&o);

    /* since_ms in the future: nothing. */
    aa.since_ms = wall0 + 3600 * 1000;
    call_op(OP(activity), &t, &aa, conv_activity, &o);
    expect_ok(&o);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(o.res, "events")), 0);
    outcome_free(&o);
}

static void test_cancel(void **state)
{
    struct target t = { .instance = "w-cancel" };
    struct outcome o;
    call_op(OP(list_labs), &t, NULL, conv_ids, &o);
    expect_ok(&o);
    outcome_free(&o);
    add_fault("{\"controller\":\"w-cancel\",\"path\":\"/labs\",\"delay_ms\":600,"
              "\"count\":-1}");
    uint64_t id = 0;
    assert_int_equal(call_op_async(OP(list_labs), &t, NULL, conv_ids, &o, &id), 0);
    run_ms(50);
    assert_int_equal(o.calls, 0);
    assert_int_equal(lcm_plugins_cancel(reg, id), 0);
    run_until(&o.calls, 3000);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.code, LCM_E_CANCELLED);
    run_ms(700);                              /* the late answer changes nothing */
    assert_int_equal(o.calls, 1);
    assert_int_equal(lcm_plugins_inflight(reg), 0);
}

/* Last: shutdown with an op in flight and another waiting for a token. */
static void test_shutdown_completes_inflight(void **state)
{
    add_fault("{\"path\":\"/\",\"delay_ms\":2000,\"count\":-1}");
    struct target t1 = { .instance = "w-cancel" }, t2 = { .instance = "w-shutdown-new" };
    struct outcome a, b;
    assert_int_equal(call_op_async(OP(list_labs), &t1, NULL, conv_ids, &a, NULL), 0);
    assert_int_equal(call_op_async(OP(list_labs), &t2, NULL, conv_ids, &b, NULL), 0);
    run_ms(50);
    lcm_plugins_shutdown(reg);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_true(a.code == LCM_E_CANCELLED || a.code == LCM_E_SHUTDOWN);
    assert_true(b.code == LCM_E_CANCELLED || b.code == LCM_E_SHUTDOWN);
    run_ms(100);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_true(lcm_plugins_violations() == 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loaded_and_implemented),
        cmocka_unit_test_teardown(test_system_info_licence_stats, per_test_teardown),
        cmocka_unit_test_teardown(test_node_definitions, per_test_teardown),
        cmocka_unit_test_teardown(test_lab_lifecycle, per_test_teardown),
        cmocka_unit_test_teardown(test_unknown_lab_is_not_found_once, per_test_teardown),
        cmocka_unit_test_teardown(test_token_expiry_reauth_once, per_test_teardown),
        cmocka_unit_test_teardown(test_bad_credentials, per_test_teardown),
        cmocka_unit_test_teardown(test_errors_and_timeouts, per_test_teardown),
        cmocka_unit_test_teardown(test_licence_registration, per_test_teardown),
        cmocka_unit_test_teardown(test_health_in_readiness, per_test_teardown),
        cmocka_unit_test_teardown(test_activity, per_test_teardown),
        cmocka_unit_test_teardown(test_cancel, per_test_teardown),
        cmocka_unit_test_teardown(test_shutdown_completes_inflight, per_test_teardown),
    };
    return cmocka_run_group_tests_name("cml_plugin", tests, setup, teardown);
}
