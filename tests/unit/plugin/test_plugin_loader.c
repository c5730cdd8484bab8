/* Loader tests: every refusal rule with its exact reason and its log line, lcmd keeping the
 * plugins that are fine, an older-minor plugin loading, config validation, the status JSON
 * for GET /api/v1/plugins, and the four provider plugins of build/plugins loading. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "harness.h"
#include "optable.h"
#include "plugin.h"

static struct event_base *base;

static int setup(void **state)
{
    base = event_base_new();
    return base ? 0 : -1;
}

static int teardown(void **state)
{
    event_base_free(base);
    return 0;
}

static struct lcm_plugins *load(const char *dir, const cJSON *config, char **log)
{
    struct lcm_plugin_host_ctx ctx = { .base = base, .config = config };
    char err[256] = "";
    if (log)
        h_capture_begin();
    struct lcm_plugins *r = lcm_plugins_load(dir, &ctx, err, sizeof err);
    if (log)
        *log = h_capture_end();
    assert_non_null(r);
    return r;
}

/* The log line of a refusal: one line with the word refused, the file and the reason. */
static void assert_refusal_logged(const char *log, const char *file, const char *reason)
{
    char want_file[300], want_reason[700];
    snprintf(want_file, sizeof want_file, "file=%s ", file);
    snprintf(want_reason, sizeof want_reason, "reason=\"%s\"", reason);
    const char *line = log;
    while (line && *line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char *l = strndup(line, len);
        int hit = strstr(l, "refused") && strstr(l, want_file) && strstr(l, want_reason);
        free(l);
        if (hit)
            return;
        line = end ? end + 1 : NULL;
    }
    fail_msg("no refusal line for %s with reason \"%s\" in:\n%s", file, reason, log);
}

struct rcase {
    const char *name;
    const char *fixture;      /* file in FX_DIR, or NULL for a special case */
    mode_t mode;
    char reason[256];         /* exact; or a prefix when prefix is set */
    int prefix;
    int example_control;      /* the good neighbour is the SDK example, not fx */
};

static void run_case(struct rcase *c)
{
    char *dir = h_tmpdir();
    assert_non_null(dir);
    /* A good neighbour: the fx fixture, or (for cases that fail after the duplicate checks)
     * the SDK example, which is of another kind and name. */
    const char *good = c->example_control ? "example" : "fx";
    assert_int_equal(h_fx(dir, c->example_control ? "lcm-example.so" : "fx-good.so",
                          "00-good.so"), 0);
    const char *as = "zz-case.so";
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, as);
    if (strcmp(c->name, "symlink") == 0) {
        char target[1024];
        snprintf(target, sizeof target, "%s/fx-good.so", FX_DIR);
        assert_int_equal(symlink(target, path), 0);
    } else if (strcmp(c->name, "junk") == 0) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs("this is not an ELF file\n", f);
        fclose(f);
        chmod(path, 0644);
    } else if (strcmp(c->name, "directory") == 0) {
        assert_int_equal(mkdir(path, 0755), 0);
    } else {
        assert_int_equal(h_fx(dir, c->fixture, as), 0);
        assert_int_equal(chmod(path, c->mode), 0);
    }

    char *log = NULL;
    struct lcm_plugins *r = load(dir, NULL, &log);
    /* lcmd keeps running with the plugin that is fine. */
    assert_int_equal(lcm_plugins_count(r), 1);
    assert_non_null(lcm_plugins_find(r, good));
    assert_int_equal(lcm_plugins_refused_count(r), 1);
    const char *why = lcm_plugins_refusal(r, as);
    if (!why)
        fail_msg("case %s: %s was not refused", c->name, as);
    if (c->prefix) {
        if (strncmp(why, c->reason, strlen(c->reason)) != 0)
            fail_msg("case %s: reason \"%s\" does not start with \"%s\"", c->name, why,
                     c->reason);
        assert_refusal_logged(log, as, why);
    } else {
        if (strcmp(why, c->reason) != 0)
            fail_msg("case %s: reason \"%s\", expected \"%s\"", c->name, why, c->reason);
        assert_refusal_logged(log, as, c->reason);
    }
    free(log);
    lcm_plugins_free(r);
    h_rmtree(dir);
    free(dir);
}

static void test_every_refusal(void **state)
{
    static struct rcase cases[32];
    size_t n = 0;
#define CASE(nm, fxf, md, ...)                                                              \
    do {                                                                                   \
        cases[n].name = nm;                                                                \
        cases[n].fixture = fxf;                                                            \
        cases[n].mode = md;                                                                \
        snprintf(cases[n].reason, sizeof cases[n].reason, __VA_ARGS__);                    \
        n++;                                                                               \
    } while (0)
    CASE("bad magic", "fx-bad_magic.so", 0755, "bad magic 0xdeadbeef (expected 0x%08x)",
         LCM_SPI_MAGIC);
    CASE("other major", "fx-major.so", 0755, "SPI major %d.%d differs from host %d.%d",
         LCM_SPI_MAJOR + 1, LCM_SPI_MINOR, LCM_SPI_MAJOR, LCM_SPI_MINOR);
    CASE("newer minor", "fx-newer_minor.so", 0755, "SPI %d.%d is newer than host %d.%d",
         LCM_SPI_MAJOR, LCM_SPI_MINOR + 1, LCM_SPI_MAJOR, LCM_SPI_MINOR);
    CASE("short ops table", "fx-short_ops.so", 0755,
         "short ops table: size %zu < %zu required for cloud ops at SPI %d.0",
         LCM_SPI_SIZE_UPTO(struct lcm_cloud_ops, find_image),
         LCM_SPI_SIZE_UPTO(struct lcm_cloud_ops, create_tags), LCM_SPI_MAJOR);
    CASE("ops table short for its minor", "fx-short_for_minor.so", 0755,
         "short ops table: size %zu < %zu required for cloud ops at SPI %d.%d",
         LCM_SPI_SIZE_UPTO(struct lcm_cloud_ops, create_tags),
         LCM_SPI_SIZE_UPTO(struct lcm_cloud_ops, metrics), LCM_SPI_MAJOR, LCM_SPI_MINOR);
    CASE("missing required op", "fx-missing_op.so", 0755, "missing required op cloud.launch");
    CASE("duplicate name", "fx-good.so", 0755, "duplicate name fx (already loaded from 00-good.so)");
    CASE("kind already provided", "fx-other_kind_dup.so", 0755,
         "kind cloud is already provided by fx (00-good.so)");
    CASE("no descriptor", "fx-no_symbol.so", 0755, "no lcm_plugin_descriptor symbol");
    CASE("descriptor too small", "fx-small_desc.so", 0755,
         "descriptor size 16 is smaller than %zu",
         LCM_SPI_SIZE_UPTO(struct lcm_plugin_descriptor, unimplemented_ops));
    CASE("unknown kind", "fx-bad_kind.so", 0755, "unknown kind 99");
    CASE("invalid name", "fx-bad_name.so", 0755, "invalid name (want 1-63 of [a-z0-9_-])");
    CASE("create fails", "fx-create_fail.so", 0755, "create failed (%d): fixture refuses to start",
         LCM_E_CONFIG);
    cases[n - 1].example_control = 1;
    CASE("required config", "fx-required_cfg.so", 0755,
         "config: required key endpoint is not set");
    cases[n - 1].example_control = 1;
    CASE("world-writable", "fx-good.so", 0757, "writable by others (mode 0757)");
    CASE("symlink", NULL, 0, "is a symbolic link (plugins load only from the plugin directory)");
    CASE("directory", NULL, 0, "not a regular file");
    CASE("junk", NULL, 0, "dlopen failed: ");
    cases[n - 1].prefix = 1;
#undef CASE
    for (size_t i = 0; i < n; i++)
        run_case(&cases[i]);
}

/* A plugin built against SPI 1.0 (shorter ops table, no metrics op) loads; the op it cannot
 * have answers LCM_E_NOTIMPL from the host, and the status says so. */
static int old_done_calls;
static void old_done(void *ud, const struct lcm_error *err, const void *result)
{
    old_done_calls++;
    assert_null(err);
    const struct lcm_cloud_instances *res = result;
    assert_int_equal(res->n, 1);
    assert_string_equal(res->v[0].instance_id, "i-fx");
}

static void test_older_minor_loads(void **state)
{
    char *dir = h_tmpdir();
    assert_int_equal(h_fx(dir, "fx-old_minor.so", "old.so"), 0);
    struct lcm_plugins *r = load(dir, NULL, NULL);
    assert_int_equal(lcm_plugins_refused_count(r), 0);
    struct lcm_plugin *p = lcm_plugins_get(r, LCM_KIND_CLOUD);
    assert_non_null(p);
    assert_string_equal(lcm_plugin_name(p), "fx");
    assert_true(lcm_plugin_implements(p, offsetof(struct lcm_cloud_ops, describe)));
    assert_false(lcm_plugin_implements(p, offsetof(struct lcm_cloud_ops, metrics)));

    struct lcm_error err;
    struct lcm_cloud_metrics_args ma = { .instance_id = "i-1", .metric = "CPUUtilization" };
    int rc = lcm_cloud_call(r, metrics, NULL, &ma, old_done, NULL, &err, NULL);
    assert_int_equal(rc, LCM_E_NOTIMPL);
    assert_int_equal(err.code, LCM_E_NOTIMPL);
    assert_non_null(strstr(err.message, "SPI 1.0"));

    struct lcm_cloud_describe_args da = { 0 };
    assert_int_equal(lcm_cloud_call(r, describe, NULL, &da, old_done, NULL, &err, NULL), 0);
    for (int i = 0; i < 2000 && old_done_calls == 0; i++)
        h_run_for(base, 1);
    assert_int_equal(old_done_calls, 1);

    cJSON *st = lcm_plugins_status_json(r);
    cJSON *pl = cJSON_GetArrayItem(cJSON_GetObjectItem(st, "loaded"), 0);
    cJSON *spi = cJSON_GetObjectItem(pl, "spi");
    assert_int_equal(cJSON_GetObjectItem(spi, "minor")->valueint, 0);
    cJSON *op;
    int seen = 0;
    cJSON_ArrayForEach(op, cJSON_GetObjectItem(pl, "ops")) {
        if (strcmp(cJSON_GetObjectItem(op, "name")->valuestring, "metrics") == 0) {
            assert_true(cJSON_IsFalse(cJSON_GetObjectItem(op, "implemented")));
            assert_string_equal(cJSON_GetObjectItem(op, "since")->valuestring, "1.1");
            seen = 1;
        }
    }
    assert_true(seen);
    cJSON_Delete(st);
    lcm_plugins_free(r);
    h_rmtree(dir);
    free(dir);
}

/* SPI 1.2 appended runtime.node_definitions: a plugin built at the previous minor (1.1) still
 * loads under this host, and the op table says which minor each runtime op needs, so a 1.1
 * runtime plugin's shorter table is accepted and the new op is reported as not implemented. */
static void test_previous_minor_loads(void **state)
{
    assert_true(LCM_SPI_MINOR >= 2);
    char *dir = h_tmpdir();
    assert_int_equal(h_fx(dir, "fx-minor1.so", "m1.so"), 0);
    struct lcm_plugins *r = load(dir, NULL, NULL);
    assert_int_equal(lcm_plugins_refused_count(r), 0);
    struct lcm_plugin *p = lcm_plugins_get(r, LCM_KIND_CLOUD);
    assert_non_null(p);
    assert_true(lcm_plugin_implements(p, offsetof(struct lcm_cloud_ops, describe)));
    cJSON *st = lcm_plugins_status_json(r);
    cJSON *pl = cJSON_GetArrayItem(cJSON_GetObjectItem(st, "loaded"), 0);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(pl, "spi"), "minor")->valueint, 1);
    cJSON_Delete(st);
    lcm_plugins_free(r);
    h_rmtree(dir);
    free(dir);

    const struct lcm_kind_meta *k = lcm_optable_kind(LCM_KIND_RUNTIME);
    assert_non_null(k);
    const struct lcm_op_meta *nd = lcm_optable_op_by_name(k, "node_definitions");
    assert_non_null(nd);
    assert_int_equal(nd->offset, offsetof(struct lcm_runtime_ops, node_definitions));
    assert_int_equal(nd->since_minor, 2);
    assert_false(nd->required);
    assert_int_equal(lcm_optable_min_size(k, 1),
                     LCM_SPI_SIZE_UPTO(struct lcm_runtime_ops, list_labs));
    assert_int_equal(lcm_optable_min_size(k, 2), sizeof(struct lcm_runtime_ops));
    /* every member of the host's runtime table is described (appended ops get a row) */
    assert_int_equal(offsetof(struct lcm_runtime_ops, system_info) + k->nops * sizeof(lcm_op_fn),
                     sizeof(struct lcm_runtime_ops));
}

static void test_unsafe_or_missing_dir(void **state)
{
    char *dir = h_tmpdir();
    assert_int_equal(h_fx(dir, "fx-good.so", "good.so"), 0);
    assert_int_equal(chmod(dir, 0777), 0);
    struct lcm_plugins *r = load(dir, NULL, NULL);
    assert_int_equal(lcm_plugins_count(r), 0);
    cJSON *st = lcm_plugins_status_json(r);
    const char *e = cJSON_GetObjectItem(st, "dir_error")->valuestring;
    assert_non_null(strstr(e, "writable by others"));
    cJSON_Delete(st);
    lcm_plugins_free(r);

    char missing[1100];
    snprintf(missing, sizeof missing, "%s/nope", dir);
    r = load(missing, NULL, NULL);
    assert_int_equal(lcm_plugins_count(r), 0);
    st = lcm_plugins_status_json(r);
    assert_non_null(cJSON_GetObjectItem(st, "dir_error"));
    cJSON_Delete(st);
    lcm_plugins_free(r);
    chmod(dir, 0755);
    h_rmtree(dir);
    free(dir);
}

static void test_config_validation(void **state)
{
    char *dir = h_tmpdir();
    assert_int_equal(h_fx(dir, "fx-good.so", "good.so"), 0);
    struct { const char *json; const char *reason; } cases[] = {
        { "{\"fx\":{\"retries\":\"abc\"}}", "config: key retries (config): expected int" },
        { "{\"fx\":{\"honour_stop\":\"maybe\"}}",
          "config: key honour_stop (config): expected bool" },
        { "{\"fx\":{\"bogus\":1}}", "config: unknown key bogus" },
        { "{\"fx\":[1,2]}", "config: the value for plugin fx is not an object" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *cfg = cJSON_Parse(cases[i].json);
        char *log = NULL;
        struct lcm_plugins *r = load(dir, cfg, &log);
        assert_int_equal(lcm_plugins_count(r), 0);
        const char *why = lcm_plugins_refusal(r, "good.so");
        assert_non_null(why);
        assert_string_equal(why, cases[i].reason);
        assert_refusal_logged(log, "good.so", cases[i].reason);
        free(log);
        lcm_plugins_free(r);
        cJSON_Delete(cfg);
    }
    /* An environment value is validated too, and never echoed. */
    setenv("LCM_PLUGIN_FX_RETRIES", "s3cr3t-not-a-number", 1);
    char *log = NULL;
    struct lcm_plugins *r = load(dir, NULL, &log);
    assert_string_equal(lcm_plugins_refusal(r, "good.so"),
                        "config: key retries (env): expected int");
    assert_null(strstr(log, "s3cr3t"));
    free(log);
    lcm_plugins_free(r);
    unsetenv("LCM_PLUGIN_FX_RETRIES");
    h_rmtree(dir);
    free(dir);
}

static cJSON *find_item(cJSON *arr, const char *key, const char *val)
{
    cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        cJSON *v = cJSON_GetObjectItem(it, key);
        if (cJSON_IsString(v) && strcmp(v->valuestring, val) == 0)
            return it;
    }
    return NULL;
}

static void test_status_json(void **state)
{
    char *dir = h_tmpdir();
    assert_int_equal(h_fx(dir, "fx-good.so", "a.so"), 0);
    assert_int_equal(h_fx(dir, "fx-major.so", "b.so"), 0);
    cJSON *cfg = cJSON_Parse("{\"fx\":{\"greeting\":\"hey\",\"fx_token\":\"TOPSECRET\"}}");
    setenv("LCM_PLUGIN_FX_RETRIES", "7", 1);
    struct lcm_plugins *r = load(dir, cfg, NULL);
    unsetenv("LCM_PLUGIN_FX_RETRIES");
    cJSON *st = lcm_plugins_status_json(r);
    char *text = cJSON_PrintUnformatted(st);
    assert_null(strstr(text, "TOPSECRET"));
    cJSON *spi = cJSON_GetObjectItem(st, "spi");
    assert_int_equal(cJSON_GetObjectItem(spi, "major")->valueint, LCM_SPI_MAJOR);
    assert_int_equal(cJSON_GetObjectItem(spi, "minor")->valueint, LCM_SPI_MINOR);
    cJSON *pl = find_item(cJSON_GetObjectItem(st, "loaded"), "name", "fx");
    assert_non_null(pl);
    assert_string_equal(cJSON_GetObjectItem(pl, "kind")->valuestring, "cloud");
    assert_string_equal(cJSON_GetObjectItem(pl, "version")->valuestring, "9.9.9");
    assert_string_equal(cJSON_GetObjectItem(pl, "file")->valuestring, "a.so");
    cJSON *config = cJSON_GetObjectItem(pl, "config");
    cJSON *g = find_item(config, "name", "greeting");
    assert_string_equal(cJSON_GetObjectItem(g, "value")->valuestring, "hey");
    assert_string_equal(cJSON_GetObjectItem(g, "origin")->valuestring, "config");
    assert_string_equal(cJSON_GetObjectItem(g, "default")->valuestring, "hello");
    cJSON *rt = find_item(config, "name", "retries");
    assert_string_equal(cJSON_GetObjectItem(rt, "value")->valuestring, "7");
    assert_string_equal(cJSON_GetObjectItem(rt, "origin")->valuestring, "env");
    assert_string_equal(cJSON_GetObjectItem(rt, "type")->valuestring, "int");
    cJSON *tok = find_item(config, "name", "fx_token");
    assert_string_equal(cJSON_GetObjectItem(tok, "type")->valuestring, "secret");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(tok, "set")));
    assert_null(cJSON_GetObjectItem(tok, "value"));
    cJSON *ops = cJSON_GetObjectItem(pl, "ops");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(find_item(ops, "name", "describe"),
                                                  "implemented")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(find_item(ops, "name", "start"),
                                                   "implemented")));
    cJSON *ni = cJSON_GetObjectItem(pl, "not_implemented");
    assert_int_equal(cJSON_GetArraySize(ni), 6);
    cJSON *ref = find_item(cJSON_GetObjectItem(st, "refused"), "file", "b.so");
    assert_non_null(ref);
    assert_non_null(strstr(cJSON_GetObjectItem(ref, "reason")->valuestring, "SPI major"));
    free(text);
    cJSON_Delete(st);
    cJSON_Delete(cfg);
    lcm_plugins_free(r);
    h_rmtree(dir);
    free(dir);
}

static int np_done_calls;
static void np_done(void *ud, const struct lcm_error *err, const void *result)
{
    np_done_calls++;
}

/* The provider plugins as built (build/plugins/lcm-<name>.so) load — or, once real, are only
 * refused for missing configuration — and every op they report as not implemented really
 * answers LCM_E_NOTIMPL instead of pretending success. */
static void test_providers_load(void **state)
{
    char *log = NULL;
    struct lcm_plugins *r = load(LCM_DEFAULT_PLUGIN_DIR, NULL, &log);
    free(log);
    const char *names[] = { "aws", "cml", "lds", "grading" };
    const char *kinds[] = { "cloud", "runtime", "delivery", "grading" };
    for (int i = 0; i < 4; i++) {
        char file[64];
        snprintf(file, sizeof file, "lcm-%s.so", names[i]);
        struct lcm_plugin *p = lcm_plugins_find(r, names[i]);
        const char *why = lcm_plugins_refusal(r, file);
        if (!p) {
            if (!why)
                fail_msg("%s neither loaded nor refused (not built?)", file);
            if (strncmp(why, "config:", 7) != 0)
                fail_msg("%s refused: %s", file, why);
            continue;
        }
        assert_int_equal((int)lcm_plugin_kind(p), i + 1);
        cJSON *st = lcm_plugins_status_json(r);
        cJSON *pl = find_item(cJSON_GetObjectItem(st, "loaded"), "name", names[i]);
        assert_string_equal(cJSON_GetObjectItem(pl, "kind")->valuestring, kinds[i]);
        cJSON *op;
        cJSON_ArrayForEach(op, cJSON_GetObjectItem(pl, "ops")) {
            if (cJSON_IsTrue(cJSON_GetObjectItem(op, "implemented")))
                continue;
            const char *opname = cJSON_GetObjectItem(op, "name")->valuestring;
            size_t off;
            assert_int_equal(lcm_plugins_op_offset((enum lcm_plugin_kind)(i + 1), opname, &off),
                             0);
            struct lcm_error err;
            int rc = lcm_plugins_call(r, (enum lcm_plugin_kind)(i + 1), off, NULL, NULL,
                                      np_done, NULL, &err, NULL);
            if (rc != LCM_E_NOTIMPL)
                fail_msg("%s.%s is reported not implemented but answered %d", names[i],
                         opname, rc);
        }
        cJSON_Delete(st);
    }
    lcm_plugins_free(r);
    assert_int_equal(np_done_calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_refusal),
        cmocka_unit_test(test_older_minor_loads),
        cmocka_unit_test(test_previous_minor_loads),
        cmocka_unit_test(test_unsafe_or_missing_dir),
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_status_json),
        cmocka_unit_test(test_providers_load),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
