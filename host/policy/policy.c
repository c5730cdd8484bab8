/* The policy engine: loads each Lua policy into a fresh sandboxed VM, proves it on its fixtures
 * before swapping it in (the last good generation keeps serving otherwise), pins generations
 * for evaluations, falls back to the built-in C policy on any failure and counts it, and
 * watches the files on a libevent timer for hot reload. */
#include "policy.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/event.h>
#include <lauxlib.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../core/log.h"
#include "../core/metrics.h"
#include "policy_builtin.h"
#include "policy_lua.h"
#include "policy_vm.h"

#define COMP "policy"
#define MAX_POLICY_FILE (1u << 20)

static const char *const kind_names[LCM_POLICY_KINDS] = {"placement", "scale_up", "scale_down"};

const char *lcm_policy_kind_name(enum lcm_policy_kind kind)
{
    return (unsigned)kind < LCM_POLICY_KINDS ? kind_names[kind] : "?";
}

struct limits {
    size_t mem_limit;
    uint64_t budget;
    unsigned deadline_ms;
    unsigned load_deadline_ms;
};

struct lcm_policy_gen {
    atomic_int refs;
    enum lcm_policy_kind kind;
    uint64_t number;
    char sha256[65];          /* of the policy file */
    char fixtures_sha256[65];
    time_t loaded_at;
    size_t n_fixtures;
    struct limits lim;
    struct lcm_policy_vm vm;
    int module_ref;
    pthread_mutex_t mu;       /* one evaluation at a time in this VM */
};

struct fstamp {
    int64_t mtime_ns;
    int64_t size;
};

struct pslot {
    struct lcm_policy_gen *cur;    /* engine's reference; NULL = built-in serves */
    uint64_t loads;                /* successful loads so far (= last generation number) */
    char last_error[512];
    time_t last_error_at;
    char refused_key[130];         /* sha pair of the last refused files: not retried */
    struct fstamp seen_policy, seen_fixtures;
    uint64_t fallbacks, evaluations, reloads, refusals;
    int64_t last_fb_log_ns;
    uint64_t fb_suppressed;
};

struct lcm_policy_engine {
    char *dir;
    struct limits lim;
    unsigned watch_interval_ms;
    struct lcm_metrics *metrics;
    struct event *timer;
    pthread_mutex_t mu;            /* slots' pointers, counters, metrics */
    pthread_mutex_t reload_mu;     /* one reload at a time */
    struct pslot slot[LCM_POLICY_KINDS];
};

/* ---------------------------------------------------------------- files */

static void sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL))
        mdlen = 0;
    for (unsigned i = 0; i < mdlen && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    out[mdlen ? 64 : 0] = 0;
}

static int read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return LCM_POLICY_E_IO;
    }
    char *b = malloc(MAX_POLICY_FILE + 1);
    if (!b) {
        fclose(f);
        snprintf(err, errlen, "out of memory");
        return LCM_POLICY_E_NOMEM;
    }
    size_t n = fread(b, 1, MAX_POLICY_FILE + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > MAX_POLICY_FILE) {
        free(b);
        snprintf(err, errlen, "%s: %s", path, bad ? "read error" : "larger than 1 MiB");
        return LCM_POLICY_E_IO;
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    return 0;
}

static void policy_paths(const char *dir, enum lcm_policy_kind kind, char *pol, char *fix,
                         size_t cap)
{
    snprintf(pol, cap, "%s/%s.lua", dir, kind_names[kind]);
    snprintf(fix, cap, "%s/fixtures/%s.lua", dir, kind_names[kind]);
}

static struct fstamp stamp_of(const char *path)
{
    struct stat st;
    struct fstamp s = {-1, -1};
    if (stat(path, &st) == 0) {
        s.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        s.size = (int64_t)st.st_size;
    }
    return s;
}

/* ---------------------------------------------------------------- generations */

static void gen_free(struct lcm_policy_gen *g)
{
    if (!g)
        return;
    lcm_policy_vm_close(&g->vm);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

void lcm_policy_unpin(struct lcm_policy_gen *g)
{
    if (g && atomic_fetch_sub(&g->refs, 1) == 1)
        gen_free(g);
}

uint64_t lcm_policy_gen_number(const struct lcm_policy_gen *g)
{
    return g ? g->number : 0;
}

struct load_ctx {
    const char *name;
    const char *src;
    size_t len;
    enum lcm_policy_kind kind;
    int ref;
};

static int load_module(lua_State *L)
{
    struct load_ctx *c = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lcm_policy_vm_dochunk(L, c->name, c->src, c->len);
    if (lua_type(L, 1) != LUA_TTABLE)
        return luaL_error(L, "%s must return a table of functions (got %s)", c->name,
                          luaL_typename(L, 1));
    lua_pushstring(L, lcm_policy_fn_name(c->kind));
    if (lua_rawget(L, 1) != LUA_TFUNCTION)
        return luaL_error(L, "%s: the returned table has no function '%s'", c->name,
                          lcm_policy_fn_name(c->kind));
    lua_pop(L, 1);
    c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static void out_clear(enum lcm_policy_kind kind, void *out)
{
    if (kind == LCM_POLICY_PLACEMENT)
        lcm_policy_placement_out_clear(out);
    else if (kind == LCM_POLICY_SCALE_UP)
        lcm_policy_scale_up_out_clear(out);
    else
        lcm_policy_scale_down_out_clear(out);
}

/* One protected, limited call of the policy in g. Returns the VM status; *invalid when the
 * result failed validation. out is filled only on success (cleared otherwise). */
static enum lcm_policy_vm_status gen_call_wc(struct lcm_policy_gen *g, const void *in, void *out,
                                             int *invalid, char *err, size_t errlen, double *ms,
                                             struct lcm_policy_wcache *wc, const size_t *keys)
{
    struct lcm_policy_call c = {.kind = g->kind, .module_ref = g->module_ref, .in = in, .out = out,
                                .wc = wc, .keys = keys};
    pthread_mutex_lock(&g->mu);
    /* The cycle cache lives in the VM's memory: past half of the cap, start it over rather
     * than let cached tables starve the policy itself. */
    if (wc && wc->ref != LUA_NOREF && g->vm.used > g->lim.mem_limit / 2) {
        luaL_unref(g->vm.L, LUA_REGISTRYINDEX, wc->ref);
        luaL_unref(g->vm.L, LUA_REGISTRYINDEX, wc->ids_ref);
        wc->ref = wc->ids_ref = LUA_NOREF;
        memset(wc->valid, 0, wc->n);
        lua_gc(g->vm.L, LUA_GCCOLLECT);
    }
    int64_t t0 = lcm_policy_now_ns();
    lcm_policy_vm_arm(&g->vm, g->lim.budget, g->lim.deadline_ms);
    enum lcm_policy_vm_status st = lcm_policy_vm_run(&g->vm, lcm_policy_lua_call, &c, err, errlen);
    int64_t t1 = lcm_policy_now_ns();
    pthread_mutex_unlock(&g->mu);
    if (ms)
        *ms = (double)(t1 - t0) / 1e6;
    *invalid = st == LCM_VM_OK && c.invalid;
    if (*invalid)
        snprintf(err, errlen, "invalid result: %s", c.verr);
    if (st != LCM_VM_OK || c.invalid)
        out_clear(g->kind, out);
    /* A call stopped half-way may have left a table half-built: rebuild them all. */
    if (st != LCM_VM_OK && wc)
        memset(wc->valid, 0, wc->n);
    return st;
}

static enum lcm_policy_vm_status gen_call(struct lcm_policy_gen *g, const void *in, void *out,
                                          int *invalid, char *err, size_t errlen, double *ms)
{
    return gen_call_wc(g, in, out, invalid, err, errlen, ms, NULL, NULL);
}

static const void *fixture_in(enum lcm_policy_kind kind, const struct lcm_policy_fixture *fx)
{
    return kind == LCM_POLICY_PLACEMENT ? (const void *)&fx->place
           : kind == LCM_POLICY_SCALE_UP ? (const void *)&fx->up
                                         : (const void *)&fx->down;
}

union any_out {
    struct lcm_policy_placement_out place;
    struct lcm_policy_scale_up_out up;
    struct lcm_policy_scale_down_out down;
};

static void report(const struct lcm_policy_check_report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void report(const struct lcm_policy_check_report *r, const char *fmt, ...)
{
    if (!r || !r->line)
        return;
    char buf[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    r->line(r->ud, buf);
}

static int builtin_eval(enum lcm_policy_kind kind, const void *in, void *out)
{
    if (kind == LCM_POLICY_PLACEMENT)
        return lcm_policy_builtin_place(in, out);
    if (kind == LCM_POLICY_SCALE_UP)
        return lcm_policy_builtin_scale_up(in, out);
    return lcm_policy_builtin_scale_down(in, out);
}

/* Runs every fixture against g (and, with builtin_too, against the built-in). Returns the
 * number of failures; the first one is described in err. */
static int run_fixtures(struct lcm_policy_gen *g, const struct lcm_policy_fixtures *fs,
                        int builtin_too, const struct lcm_policy_check_report *r, char *err,
                        size_t errlen)
{
    int failures = 0;
    for (size_t i = 0; i < fs->n; i++) {
        const struct lcm_policy_fixture *fx = &fs->v[i];
        for (int pass = 0; pass < (builtin_too ? 2 : 1); pass++) {
            union any_out out;
            memset(&out, 0, sizeof(out));
            char why[512] = "";
            int invalid = 0, bad = 0;
            double ms = 0;
            if (pass == 0 && g) {
                enum lcm_policy_vm_status st =
                    gen_call(g, fixture_in(fs->kind, fx), &out, &invalid, why, sizeof(why), &ms);
                bad = st != LCM_VM_OK || invalid;
            } else if (pass == 1 || !g) {
                bad = builtin_eval(fs->kind, fixture_in(fs->kind, fx), &out) != 0;
                if (bad)
                    snprintf(why, sizeof(why), "out of memory");
            }
            if (!bad)
                bad = lcm_policy_fixture_compare(fs->kind, fx, &out, why, sizeof(why)) != 0;
            out_clear(fs->kind, &out);
            const char *who = pass ? "builtin" : "lua";
            report(r, "%s %s %s fixture '%s'%s%s", bad ? "FAIL" : "ok  ", kind_names[fs->kind],
                   who, fx->name, bad ? ": " : "", bad ? why : "");
            if (bad && failures++ == 0)
                snprintf(err, errlen, "%s fixture '%s' failed (%s): %s", kind_names[fs->kind],
                         fx->name, who, why);
        }
    }
    return failures;
}

/* Loads one policy into a new generation and proves it on its fixtures. Returns 0 with *out,
 * or a negative code with err; the sha pair of the files read is left in key. */
static int gen_load(const char *dir, enum lcm_policy_kind kind, const struct limits *lim,
                    int builtin_too, const struct lcm_policy_check_report *r,
                    struct lcm_policy_gen **out, char key[130], char *err, size_t errlen)
{
    char pol_path[1024], fix_path[1024];
    char *pol = NULL, *fix = NULL;
    size_t pol_len = 0, fix_len = 0;
    struct lcm_policy_gen *g = NULL;
    struct lcm_policy_fixtures fs = {.kind = kind};
    struct lcm_policy_vm data = {0};
    char why[512];
    int rc;

    *out = NULL;
    key[0] = 0;
    policy_paths(dir, kind, pol_path, fix_path, sizeof(pol_path));
    if ((rc = read_file(pol_path, &pol, &pol_len, err, errlen)) != 0)
        goto out;
    if ((rc = read_file(fix_path, &fix, &fix_len, err, errlen)) != 0)
        goto out;
    rc = LCM_POLICY_E_NOMEM;
    g = calloc(1, sizeof(*g));
    if (!g)
        goto out;
    atomic_init(&g->refs, 1);
    g->kind = kind;
    g->lim = *lim;
    g->module_ref = LUA_NOREF;
    pthread_mutex_init(&g->mu, NULL);
    sha256_hex(pol, pol_len, g->sha256);
    sha256_hex(fix, fix_len, g->fixtures_sha256);
    snprintf(key, 130, "%s%s", g->sha256, g->fixtures_sha256);

    rc = LCM_POLICY_E_LOAD;
    if (lcm_policy_vm_open(&g->vm, lim->mem_limit, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s", why);
        goto out;
    }
    char chunk[96];
    snprintf(chunk, sizeof(chunk), "=%s.lua", kind_names[kind]);
    struct load_ctx lc = {.name = chunk, .src = pol, .len = pol_len, .kind = kind, .ref = LUA_NOREF};
    lcm_policy_vm_arm(&g->vm, lim->budget, lim->load_deadline_ms);
    if (lcm_policy_vm_run(&g->vm, load_module, &lc, why, sizeof(why)) != LCM_VM_OK) {
        snprintf(err, errlen, "%s: %s", pol_path, why);
        goto out;
    }
    g->module_ref = lc.ref;

    /* Fixtures are data, but operator-written code too: read them in their own sandbox so
     * they cannot touch the policy's globals. */
    char fchunk[96];
    snprintf(fchunk, sizeof(fchunk), "=fixtures/%s.lua", kind_names[kind]);
    fs.name = fchunk;
    fs.src = fix;
    fs.len = fix_len;
    if (lcm_policy_vm_open(&data, lim->mem_limit, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s", why);
        goto out;
    }
    lcm_policy_vm_arm(&data, lim->budget, lim->load_deadline_ms);
    if (lcm_policy_vm_run(&data, lcm_policy_lua_read_fixtures, &fs, why, sizeof(why)) != LCM_VM_OK) {
        snprintf(err, errlen, "%s: %s", fix_path, why);
        rc = LCM_POLICY_E_FIXTURE;
        goto out;
    }
    g->n_fixtures = fs.n;
    if (run_fixtures(g, &fs, builtin_too, r, err, errlen) != 0) {
        rc = LCM_POLICY_E_FIXTURE;
        goto out;
    }
    g->loaded_at = time(NULL);
    *out = g;
    g = NULL;
    rc = 0;
out:
    if (rc == LCM_POLICY_E_NOMEM)
        snprintf(err, errlen, "out of memory");
    lcm_policy_fixtures_free(&fs);
    lcm_policy_vm_close(&data);
    gen_free(g);
    free(pol);
    free(fix);
    return rc;
}

/* ---------------------------------------------------------------- engine */

static void set_metric_gauges(struct lcm_policy_engine *e, enum lcm_policy_kind kind)
{
    if (!e->metrics)
        return;
    char labels[64];
    snprintf(labels, sizeof(labels), "policy=\"%s\"", kind_names[kind]);
    struct pslot *s = &e->slot[kind];
    lcm_metrics_set(e->metrics, "lcm_policy_generation", labels, s->cur ? (double)s->cur->number : 0);
}

int lcm_policy_reload(struct lcm_policy_engine *e, enum lcm_policy_kind kind, int force,
                      char *err, size_t errlen)
{
    char tmp[8];
    if (!err || errlen == 0) {
        err = tmp;
        errlen = sizeof(tmp);
    }
    if (!e || (unsigned)kind >= LCM_POLICY_KINDS) {
        snprintf(err, errlen, "invalid arguments");
        return LCM_POLICY_E_INVAL;
    }
    err[0] = 0;
    pthread_mutex_lock(&e->reload_mu);
    struct pslot *s = &e->slot[kind];
    char pol_path[1024], fix_path[1024];
    policy_paths(e->dir, kind, pol_path, fix_path, sizeof(pol_path));
    struct fstamp sp = stamp_of(pol_path), sf = stamp_of(fix_path);

    /* Unchanged files need no new VM: compare content hashes with what is serving. */
    if (!force) {
        char *a = NULL, *b = NULL;
        size_t la, lb;
        char e1[8], key[130] = "", ha[65], hb[65];
        if (read_file(pol_path, &a, &la, e1, sizeof(e1)) == 0 &&
            read_file(fix_path, &b, &lb, e1, sizeof(e1)) == 0) {
            sha256_hex(a, la, ha);
            sha256_hex(b, lb, hb);
            snprintf(key, sizeof(key), "%s%s", ha, hb);
        }
        free(a);
        free(b);
        pthread_mutex_lock(&e->mu);
        int same = key[0] && s->cur && !strncmp(key, s->cur->sha256, 64) &&
                   !strcmp(key + 64, s->cur->fixtures_sha256);
        int refused_before = key[0] && !strcmp(key, s->refused_key);
        pthread_mutex_unlock(&e->mu);
        if (same || refused_before) {
            s->seen_policy = sp;
            s->seen_fixtures = sf;
            if (refused_before)
                snprintf(err, errlen, "%s", s->last_error);
            pthread_mutex_unlock(&e->reload_mu);
            return refused_before ? LCM_POLICY_E_LOAD : 0;
        }
    }

    struct lcm_policy_gen *g = NULL;
    char key[130];
    int64_t t0 = lcm_policy_now_ns();
    int rc = gen_load(e->dir, kind, &e->lim, 0, NULL, &g, key, err, errlen);
    double ms = (double)(lcm_policy_now_ns() - t0) / 1e6;
    s->seen_policy = sp;
    s->seen_fixtures = sf;

    struct lcm_policy_gen *old = NULL;
    char labels[96];
    pthread_mutex_lock(&e->mu);
    if (rc == 0) {
        g->number = ++s->loads;
        old = s->cur;
        s->cur = g; /* the swap: new evaluations pin g, pinned ones keep old alive */
        s->reloads++;
        s->refused_key[0] = 0;
        s->last_error[0] = 0;
        s->last_error_at = 0;
        if (e->metrics) {
            snprintf(labels, sizeof(labels), "policy=\"%s\",result=\"ok\"", kind_names[kind]);
            lcm_metrics_inc(e->metrics, "lcm_policy_reloads_total", labels, 1);
        }
    } else {
        s->refusals++;
        snprintf(s->refused_key, sizeof(s->refused_key), "%s", key);
        snprintf(s->last_error, sizeof(s->last_error), "%s", err);
        s->last_error_at = time(NULL);
        if (e->metrics) {
            snprintf(labels, sizeof(labels), "policy=\"%s\",result=\"refused\"", kind_names[kind]);
            lcm_metrics_inc(e->metrics, "lcm_policy_reloads_total", labels, 1);
        }
    }
    set_metric_gauges(e, kind);
    uint64_t serving = s->cur ? s->cur->number : 0;
    pthread_mutex_unlock(&e->mu);
    if (rc == 0) {
        lcm_info(COMP, "msg=\"policy loaded\" policy=%s generation=%llu sha256=%s fixtures=%zu "
                       "load_ms=%.2f",
                 kind_names[kind], (unsigned long long)g->number, g->sha256, g->n_fixtures, ms);
    } else {
        lcm_warn(COMP, "msg=\"policy refused, last good keeps serving\" policy=%s "
                       "serving_generation=%llu error=\"%s\"",
                 kind_names[kind], (unsigned long long)serving, err);
    }
    lcm_policy_unpin(old);
    pthread_mutex_unlock(&e->reload_mu);
    return rc == 0 ? 1 : rc;
}

int lcm_policy_reload_all(struct lcm_policy_engine *e, int force, char *err, size_t errlen)
{
    int refused = 0;
    for (int k = 0; k < LCM_POLICY_KINDS; k++) {
        char one[512];
        if (lcm_policy_reload(e, (enum lcm_policy_kind)k, force, one, sizeof(one)) < 0) {
            if (refused++ == 0 && err && errlen)
                snprintf(err, errlen, "%s: %s", kind_names[k], one);
        }
    }
    return refused;
}

int lcm_policy_poll(struct lcm_policy_engine *e)
{
    int reloaded = 0;
    for (int k = 0; k < LCM_POLICY_KINDS; k++) {
        char pol_path[1024], fix_path[1024];
        policy_paths(e->dir, (enum lcm_policy_kind)k, pol_path, fix_path, sizeof(pol_path));
        struct fstamp sp = stamp_of(pol_path), sf = stamp_of(fix_path);
        struct pslot *s = &e->slot[k];
        if (!memcmp(&sp, &s->seen_policy, sizeof(sp)) && !memcmp(&sf, &s->seen_fixtures, sizeof(sf)))
            continue;
        char err[512];
        if (lcm_policy_reload(e, (enum lcm_policy_kind)k, 0, err, sizeof(err)) == 1)
            reloaded++;
    }
    return reloaded;
}

static void watch_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    lcm_policy_poll(arg);
}

struct lcm_policy_engine *lcm_policy_engine_new(const struct lcm_policy_config *cfg, char *err,
                                                size_t errlen)
{
    struct lcm_policy_config def = {0};
    if (!cfg)
        cfg = &def;
    struct lcm_policy_engine *e = calloc(1, sizeof(*e));
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    e->dir = strdup(cfg->dir ? cfg->dir : LCM_DEFAULT_POLICY_DIR);
    e->lim.mem_limit = cfg->mem_limit ? cfg->mem_limit : (16u << 20);
    e->lim.budget = cfg->instr_budget ? cfg->instr_budget : 20000000u;
    e->lim.deadline_ms = cfg->deadline_ms ? cfg->deadline_ms : 30;
    e->lim.load_deadline_ms = cfg->load_deadline_ms ? cfg->load_deadline_ms : 50;
    e->watch_interval_ms = cfg->watch_interval_ms ? cfg->watch_interval_ms : 1000;
    e->metrics = cfg->metrics;
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->reload_mu, NULL);
    if (!e->dir) {
        snprintf(err, errlen, "out of memory");
        lcm_policy_engine_free(e);
        return NULL;
    }
    if (e->lim.mem_limit < (256u << 10)) {
        snprintf(err, errlen, "policy memory limit below 256 KiB");
        lcm_policy_engine_free(e);
        return NULL;
    }
    if (e->metrics) {
        lcm_metrics_declare(e->metrics, "lcm_policy_fallbacks_total", LCM_METRIC_COUNTER,
                            "Policy decisions taken by the built-in C policy instead of Lua");
        lcm_metrics_declare(e->metrics, "lcm_policy_evaluations_total", LCM_METRIC_COUNTER,
                            "Policy evaluations");
        lcm_metrics_declare(e->metrics, "lcm_policy_eval_seconds", LCM_METRIC_HISTOGRAM,
                            "Time spent in Lua per policy evaluation");
        lcm_metrics_declare(e->metrics, "lcm_policy_reloads_total", LCM_METRIC_COUNTER,
                            "Policy loads by result (ok, refused)");
        lcm_metrics_declare(e->metrics, "lcm_policy_generation", LCM_METRIC_GAUGE,
                            "Generation of the Lua policy serving (0 = built-in)");
    }
    for (int k = 0; k < LCM_POLICY_KINDS; k++) {
        char one[512];
        lcm_policy_reload(e, (enum lcm_policy_kind)k, 1, one, sizeof(one));
    }
    if (cfg->base) {
        e->timer = event_new(cfg->base, -1, EV_PERSIST, watch_cb, e);
        struct timeval tv = {(time_t)(e->watch_interval_ms / 1000),
                             (suseconds_t)(e->watch_interval_ms % 1000) * 1000};
        if (!e->timer || event_add(e->timer, &tv) != 0) {
            snprintf(err, errlen, "cannot start the policy file watcher");
            lcm_policy_engine_free(e);
            return NULL;
        }
    }
    return e;
}

void lcm_policy_engine_free(struct lcm_policy_engine *e)
{
    if (!e)
        return;
    if (e->timer)
        event_free(e->timer);
    for (int k = 0; k < LCM_POLICY_KINDS; k++)
        lcm_policy_unpin(e->slot[k].cur);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->reload_mu);
    free(e->dir);
    free(e);
}

struct lcm_policy_gen *lcm_policy_pin(struct lcm_policy_engine *e, enum lcm_policy_kind kind)
{
    if (!e || (unsigned)kind >= LCM_POLICY_KINDS)
        return NULL;
    pthread_mutex_lock(&e->mu);
    struct lcm_policy_gen *g = e->slot[kind].cur;
    if (g)
        atomic_fetch_add(&g->refs, 1);
    pthread_mutex_unlock(&e->mu);
    return g;
}

/* ---------------------------------------------------------------- evaluation */

static int evaluate_wc(struct lcm_policy_engine *e, struct lcm_policy_gen *gen,
                       enum lcm_policy_kind kind, const void *in, void *out,
                       struct lcm_policy_eval_info *info, struct lcm_policy_wcache *wc,
                       const size_t *keys)
{
    struct lcm_policy_eval_info local;
    if (!info)
        info = &local;
    memset(info, 0, sizeof(*info));
    if (!e || !in || !out)
        return LCM_POLICY_E_INVAL;
    if (gen && gen->kind != kind)
        return LCM_POLICY_E_INVAL;
    struct lcm_policy_gen *g = gen ? gen : lcm_policy_pin(e, kind);
    info->generation = g ? g->number : 0;
    if (g) {
        int invalid = 0;
        enum lcm_policy_vm_status st =
            gen_call_wc(g, in, out, &invalid, info->error, sizeof(info->error), &info->elapsed_ms,
                        gen ? wc : NULL, gen ? keys : NULL);
        if (st == LCM_VM_OK && !invalid)
            info->fallback = LCM_POLICY_FB_NONE;
        else if (st == LCM_VM_TIMEOUT)
            info->fallback = LCM_POLICY_FB_TIMEOUT;
        else if (invalid)
            info->fallback = LCM_POLICY_FB_INVALID;
        else
            info->fallback = LCM_POLICY_FB_ERROR;
    } else {
        info->fallback = LCM_POLICY_FB_NOT_LOADED;
        snprintf(info->error, sizeof(info->error), "no Lua policy loaded");
    }
    if (!gen)
        lcm_policy_unpin(g);

    info->source = info->fallback == LCM_POLICY_FB_NONE ? LCM_POLICY_SRC_LUA : LCM_POLICY_SRC_BUILTIN;
    int rc = 0;
    if (info->source == LCM_POLICY_SRC_BUILTIN)
        rc = builtin_eval(kind, in, out);

    struct pslot *s = &e->slot[kind];
    char labels[64];
    snprintf(labels, sizeof(labels), "policy=\"%s\"", kind_names[kind]);
    int log_it = 0;
    uint64_t suppressed = 0;
    pthread_mutex_lock(&e->mu);
    s->evaluations++;
    /* "not loaded" is a state visible in the status, not a per-decision failure. */
    int counted = info->fallback != LCM_POLICY_FB_NONE && info->fallback != LCM_POLICY_FB_NOT_LOADED;
    if (counted) {
        s->fallbacks++;
        int64_t now = lcm_policy_now_ns();
        if (now - s->last_fb_log_ns > 1000000000) {
            log_it = 1;
            suppressed = s->fb_suppressed;
            s->fb_suppressed = 0;
            s->last_fb_log_ns = now;
        } else {
            s->fb_suppressed++;
        }
    }
    if (e->metrics) {
        lcm_metrics_inc(e->metrics, "lcm_policy_evaluations_total", labels, 1);
        if (counted)
            lcm_metrics_inc(e->metrics, "lcm_policy_fallbacks_total", labels, 1);
        if (g)
            lcm_metrics_observe(e->metrics, "lcm_policy_eval_seconds", labels,
                                info->elapsed_ms / 1000.0);
    }
    pthread_mutex_unlock(&e->mu);
    if (log_it)
        lcm_warn(COMP, "msg=\"policy fell back to built-in\" policy=%s generation=%llu "
                       "error=\"%s\" suppressed=%llu",
                 kind_names[kind], (unsigned long long)info->generation, info->error,
                 (unsigned long long)suppressed);
    return rc;
}

static int evaluate(struct lcm_policy_engine *e, struct lcm_policy_gen *gen,
                    enum lcm_policy_kind kind, const void *in, void *out,
                    struct lcm_policy_eval_info *info)
{
    return evaluate_wc(e, gen, kind, in, out, info, NULL, NULL);
}

/* ---------------------------------------------------------------- placement cycles */

struct lcm_policy_place_cycle {
    struct lcm_policy_engine *e;
    struct lcm_policy_gen *g;       /* own pin; NULL = no Lua policy (built-in serves) */
    struct lcm_policy_wcache wc;
};

struct lcm_policy_place_cycle *lcm_policy_place_cycle_begin(struct lcm_policy_engine *e,
                                                            struct lcm_policy_gen *gen,
                                                            size_t n_workers)
{
    if (!e || (gen && gen->kind != LCM_POLICY_PLACEMENT))
        return NULL;
    struct lcm_policy_place_cycle *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->e = e;
    c->wc.ref = c->wc.ids_ref = LUA_NOREF;
    c->wc.n = n_workers;
    c->wc.valid = calloc(n_workers ? n_workers : 1, 1);
    c->wc.idp = calloc(n_workers ? n_workers : 1, sizeof(*c->wc.idp));
    if (!c->wc.valid || !c->wc.idp) {
        free(c->wc.valid);
        free(c->wc.idp);
        free(c);
        return NULL;
    }
    if (gen) {
        atomic_fetch_add(&gen->refs, 1);
        c->g = gen;
    } else {
        c->g = lcm_policy_pin(e, LCM_POLICY_PLACEMENT);
    }
    return c;
}

void lcm_policy_place_cycle_touch(struct lcm_policy_place_cycle *c, size_t key)
{
    if (c && key < c->wc.n)
        c->wc.valid[key] = 0;
}

int lcm_policy_place_cycle_rank(struct lcm_policy_place_cycle *c,
                                const struct lcm_policy_placement_in *in, const size_t *keys,
                                struct lcm_policy_placement_out *out,
                                struct lcm_policy_eval_info *info)
{
    if (out)
        memset(out, 0, sizeof(*out));
    if (!c || !keys)
        return LCM_POLICY_E_INVAL;
    for (size_t j = 0; in && j < in->n_workers; j++)
        if (keys[j] >= c->wc.n)
            return LCM_POLICY_E_INVAL;
    if (!c->g)
        return evaluate(c->e, NULL, LCM_POLICY_PLACEMENT, in, out, info);
    return evaluate_wc(c->e, c->g, LCM_POLICY_PLACEMENT, in, out, info, &c->wc, keys);
}

void lcm_policy_place_cycle_end(struct lcm_policy_place_cycle *c)
{
    if (!c)
        return;
    if (c->g) {
        pthread_mutex_lock(&c->g->mu);
        if (c->wc.ref != LUA_NOREF)
            luaL_unref(c->g->vm.L, LUA_REGISTRYINDEX, c->wc.ref);
        if (c->wc.ids_ref != LUA_NOREF)
            luaL_unref(c->g->vm.L, LUA_REGISTRYINDEX, c->wc.ids_ref);
        pthread_mutex_unlock(&c->g->mu);
        lcm_policy_unpin(c->g);
    }
    free(c->wc.valid);
    free(c->wc.idp);
    free(c);
}

int lcm_policy_place(struct lcm_policy_engine *e, struct lcm_policy_gen *gen,
                     const struct lcm_policy_placement_in *in,
                     struct lcm_policy_placement_out *out, struct lcm_policy_eval_info *info)
{
    if (out)
        memset(out, 0, sizeof(*out));
    return evaluate(e, gen, LCM_POLICY_PLACEMENT, in, out, info);
}

int lcm_policy_scale_up(struct lcm_policy_engine *e, struct lcm_policy_gen *gen,
                        const struct lcm_policy_scale_up_in *in,
                        struct lcm_policy_scale_up_out *out, struct lcm_policy_eval_info *info)
{
    if (out)
        memset(out, 0, sizeof(*out));
    return evaluate(e, gen, LCM_POLICY_SCALE_UP, in, out, info);
}

int lcm_policy_scale_down(struct lcm_policy_engine *e, struct lcm_policy_gen *gen,
                          const struct lcm_policy_scale_down_in *in,
                          struct lcm_policy_scale_down_out *out,
                          struct lcm_policy_eval_info *info)
{
    if (out)
        memset(out, 0, sizeof(*out));
    return evaluate(e, gen, LCM_POLICY_SCALE_DOWN, in, out, info);
}

uint64_t lcm_policy_fallbacks(struct lcm_policy_engine *e, enum lcm_policy_kind kind)
{
    pthread_mutex_lock(&e->mu);
    uint64_t v = e->slot[kind].fallbacks;
    pthread_mutex_unlock(&e->mu);
    return v;
}

uint64_t lcm_policy_evaluations(struct lcm_policy_engine *e, enum lcm_policy_kind kind)
{
    pthread_mutex_lock(&e->mu);
    uint64_t v = e->slot[kind].evaluations;
    pthread_mutex_unlock(&e->mu);
    return v;
}

/* ---------------------------------------------------------------- status */

static void add_time(cJSON *o, const char *key, time_t t)
{
    if (!t) {
        cJSON_AddNullToObject(o, key);
        return;
    }
    char buf[32];
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(o, key, buf);
}

cJSON *lcm_policy_status_json(struct lcm_policy_engine *e)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    cJSON_AddStringToObject(root, "dir", e->dir);
    cJSON *limits = cJSON_AddObjectToObject(root, "limits");
    if (limits) {
        cJSON_AddNumberToObject(limits, "memory_bytes", (double)e->lim.mem_limit);
        cJSON_AddNumberToObject(limits, "instruction_budget", (double)e->lim.budget);
        cJSON_AddNumberToObject(limits, "deadline_ms", e->lim.deadline_ms);
    }
    cJSON *arr = cJSON_AddArrayToObject(root, "policies");
    pthread_mutex_lock(&e->mu);
    for (int k = 0; arr && k < LCM_POLICY_KINDS; k++) {
        struct pslot *s = &e->slot[k];
        cJSON *p = cJSON_CreateObject();
        if (!p)
            break;
        char path[1024], fix[1024];
        policy_paths(e->dir, (enum lcm_policy_kind)k, path, fix, sizeof(path));
        cJSON_AddStringToObject(p, "name", kind_names[k]);
        cJSON_AddStringToObject(p, "file", path);
        cJSON_AddStringToObject(p, "fixtures_file", fix);
        cJSON_AddStringToObject(p, "function", lcm_policy_fn_name((enum lcm_policy_kind)k));
        cJSON_AddStringToObject(p, "source", s->cur ? "lua" : "builtin");
        cJSON_AddNumberToObject(p, "generation", s->cur ? (double)s->cur->number : 0);
        if (s->cur) {
            cJSON_AddStringToObject(p, "sha256", s->cur->sha256);
            cJSON_AddStringToObject(p, "fixtures_sha256", s->cur->fixtures_sha256);
            add_time(p, "loaded_at", s->cur->loaded_at);
            cJSON_AddNumberToObject(p, "fixtures", (double)s->cur->n_fixtures);
            cJSON_AddNumberToObject(p, "memory_bytes", (double)s->cur->vm.used);
        } else {
            cJSON_AddNullToObject(p, "sha256");
            cJSON_AddNullToObject(p, "fixtures_sha256");
            cJSON_AddNullToObject(p, "loaded_at");
            cJSON_AddNumberToObject(p, "fixtures", 0);
        }
        if (s->last_error[0])
            cJSON_AddStringToObject(p, "last_error", s->last_error);
        else
            cJSON_AddNullToObject(p, "last_error");
        add_time(p, "last_error_at", s->last_error_at);
        cJSON_AddNumberToObject(p, "fallbacks", (double)s->fallbacks);
        cJSON_AddNumberToObject(p, "evaluations", (double)s->evaluations);
        cJSON_AddNumberToObject(p, "reloads", (double)s->reloads);
        cJSON_AddNumberToObject(p, "refusals", (double)s->refusals);
        cJSON_AddItemToArray(arr, p);
    }
    pthread_mutex_unlock(&e->mu);
    return root;
}

/* ---------------------------------------------------------------- offline check */

int lcm_policy_check_dir(const char *dir, int builtin_too, const struct lcm_policy_check_report *r)
{
    struct limits lim = {16u << 20, 20000000u, 30, 50};
    int failures = 0;
    for (int k = 0; k < LCM_POLICY_KINDS; k++) {
        struct lcm_policy_gen *g = NULL;
        char key[130], err[768];
        int rc = gen_load(dir, (enum lcm_policy_kind)k, &lim, builtin_too, r, &g, key, err,
                          sizeof(err));
        if (rc != 0) {
            failures++;
            report(r, "FAIL %s: %s", kind_names[k], err);
        } else {
            report(r, "ok   %s: loaded, %zu fixtures pass, sha256 %s", kind_names[k],
                   g->n_fixtures, g->sha256);
        }
        lcm_policy_unpin(g);
    }
    return failures;
}
