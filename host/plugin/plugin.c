/* Plugin loader and registry: dlopens provider .so files from one directory, validates each
 * descriptor before any plugin code runs, refuses what does not fit with one log line, and
 * tracks every op in flight so that each caller's done runs exactly once, even at shutdown. */
#include "plugin.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "core/log.h"
#include "core/metrics.h"
#include "hostsvc.h"
#include "optable.h"

#define COMP "plugin"
#define NBUCKETS 1024u

struct lcm_plugin {
    struct lcm_plugins *reg;
    char *file;                                 /* base name */
    char *path;
    void *dl;
    const struct lcm_plugin_descriptor *desc;   /* inside dl */
    const struct lcm_kind_meta *kind;
    const void *ops;
    uint32_t ops_size;
    struct lcm_host *host;
    void *self;
    int created, destroyed;
    size_t inflight;
    struct lcm_plugin *next;
};

struct refusal {
    char *file;
    char *reason;
    struct refusal *next;
};

enum op_state { OP_OPEN = 0, OP_DEFERRED, OP_ORPHANED };

/* One accepted call. The plugin only ever sees its id (as the done ud), so a late or
 * duplicate done can be recognised without touching freed memory. */
struct op_rec {
    uint64_t id;
    struct lcm_plugin *pl;
    const struct lcm_op_meta *op;
    lcm_done_fn done;
    void *ud;
    enum op_state state;
    int in_call;                 /* inside the plugin's op function */
    int done_in_call;            /* plugin completed it re-entrantly */
    struct event *deferred;      /* delivers the re-entrant completion later */
    uint64_t started_ms;
    struct op_rec *hnext;
};

struct lcm_plugins {
    char *dir;
    struct lcm_plugin_host_ctx ctx;
    struct lcm_plugin *plugins;   /* in load order */
    struct refusal *refused, **refused_tail;
    char *dir_error;
    struct op_rec *buckets[NBUCKETS];
    size_t inflight;
    int shutting_down, shut;
    struct lcm_plugins *next_live;
};

/* Registries alive in this process: plugin dones carry only an op id, and ids are unique per
 * process, so the done trampoline finds its registry here. Usually exactly one. */
static struct lcm_plugins *live;
static uint64_t next_op_id = 1;
static uint64_t violations;
static lcm_plugin_violation_fn violation_fn;
static void *violation_ud;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const char *kind_name(uint32_t k)
{
    const struct lcm_kind_meta *m = lcm_optable_kind(k);
    return m ? m->name : "?";
}

/* ---------------------------------------------------------------------------------------- */
/* Violations                                                                               */

void lcm_plugins_set_violation_handler(lcm_plugin_violation_fn fn, void *ud)
{
    violation_fn = fn;
    violation_ud = ud;
}

uint64_t lcm_plugins_violations(void) { return violations; }

static void violation(struct lcm_plugins *r, const char *plugin, const char *op,
                      const char *what)
{
    violations++;
    if (r && r->ctx.metrics) {
        char l[256], esc[128];
        lcm_metrics_escape(esc, sizeof esc, plugin ? plugin : "?");
        snprintf(l, sizeof l, "plugin=\"%s\"", esc);
        lcm_metrics_inc(r->ctx.metrics, "lcm_plugin_violations_total", l, 1);
    }
    if (violation_fn) {
        violation_fn(plugin, op, what, violation_ud);
        return;
    }
    lcm_error(COMP, "msg=\"plugin broke the SPI contract\" plugin=%s op=%s what=\"%s\"",
              plugin ? plugin : "?", op ? op : "?", what);
#ifdef LCM_DEBUG_CHECKS
    abort();
#endif
}

/* ---------------------------------------------------------------------------------------- */
/* Op records                                                                               */

static struct op_rec **bucket(struct lcm_plugins *r, uint64_t id)
{
    return &r->buckets[(id * 0x9e3779b97f4a7c15ull) >> 54 & (NBUCKETS - 1)];
}

static struct op_rec *op_find(uint64_t id, struct lcm_plugins **rout)
{
    for (struct lcm_plugins *r = live; r; r = r->next_live)
        for (struct op_rec *o = *bucket(r, id); o; o = o->hnext)
            if (o->id == id) {
                *rout = r;
                return o;
            }
    return NULL;
}

static void op_unlink(struct lcm_plugins *r, struct op_rec *o)
{
    for (struct op_rec **pp = bucket(r, o->id); *pp; pp = &(*pp)->hnext)
        if (*pp == o) {
            *pp = o->hnext;
            break;
        }
    if (o->state != OP_ORPHANED) {
        r->inflight--;
        o->pl->inflight--;
    }
    if (o->deferred)
        event_free(o->deferred);
    free(o);
}

static void count_call(struct lcm_plugins *r, struct op_rec *o, const struct lcm_error *err)
{
    if (!r->ctx.metrics)
        return;
    char l[256], esc[128];
    lcm_metrics_escape(esc, sizeof esc, o->pl->desc->name);
    snprintf(l, sizeof l, "plugin=\"%s\",op=\"%s\"", esc, o->op->name);
    lcm_metrics_observe(r->ctx.metrics, "lcm_plugin_call_seconds", l,
                        (double)(now_ms() - o->started_ms) / 1000.0);
    snprintf(l, sizeof l, "plugin=\"%s\",op=\"%s\",result=\"%s\"", esc, o->op->name,
             err ? "error" : "ok");
    lcm_metrics_inc(r->ctx.metrics, "lcm_plugin_calls_total", l, 1);
}

/* Delivers to the caller and forgets the op; the caller's done may start new calls. */
static void complete(struct lcm_plugins *r, struct op_rec *o, const struct lcm_error *err,
                     const void *result)
{
    lcm_done_fn done = o->done;
    void *ud = o->ud;
    count_call(r, o, err);
    op_unlink(r, o);
    done(ud, err, err ? NULL : result);
}

static void deferred_fire(evutil_socket_t fd, short what, void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    struct lcm_plugins *r;
    struct op_rec *o = op_find(id, &r);
    if (!o || o->state != OP_DEFERRED)
        return;
    struct lcm_error e;
    lcm_error_set(&e, LCM_E_INTERNAL, 1, 0, "plugin completed the operation re-entrantly");
    complete(r, o, &e, NULL);
}

/* The done every plugin op gets. ud is the op id. */
static void op_done(void *ud, const struct lcm_error *err, const void *result)
{
    uint64_t id = (uint64_t)(uintptr_t)ud;
    struct lcm_plugins *r = NULL;
    struct op_rec *o = op_find(id, &r);
    if (!o) {
        violation(NULL, NULL, NULL, "done called twice or for an op it did not accept");
        return;
    }
    const char *pname = o->pl->desc->name;
    if (o->state == OP_ORPHANED) {
        /* The host already answered the caller (shutdown); the late answer is dropped. */
        lcm_debug(COMP, "msg=\"late done after shutdown dropped\" plugin=%s op=%s", pname,
                  o->op->name);
        op_unlink(r, o);
        return;
    }
    if (o->state == OP_DEFERRED) {
        violation(r, pname, o->op->name, "done called twice");
        return;
    }
    if (o->in_call) {
        /* The caller must never be re-entered; the borrowed result cannot outlive this call,
         * so what the caller later gets is a retryable internal error. */
        violation(r, pname, o->op->name, "done called from inside the op");
        o->done_in_call = 1;
        o->state = OP_DEFERRED;
        return;
    }
    struct lcm_error copy;
    if (err && err->code == 0) {
        /* An error struct with code 0 would read as success to some callers. */
        copy = *err;
        copy.code = LCM_E_INTERNAL;
        err = &copy;
    }
    complete(r, o, err, result);
}

/* ---------------------------------------------------------------------------------------- */
/* Loading                                                                                  */

static void refuse(struct lcm_plugins *r, const char *file, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void refuse(struct lcm_plugins *r, const char *file, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    for (char *p = reason; *p; p++)
        if (*p == '"')
            *p = '\'';
    lcm_warn(COMP, "msg=\"plugin refused\" file=%s reason=\"%s\" host_spi=%d.%d", file, reason,
             LCM_SPI_MAJOR, LCM_SPI_MINOR);
    struct refusal *f = calloc(1, sizeof *f);
    if (!f)
        return;
    f->file = strdup(file);
    f->reason = strdup(reason);
    if (!f->file || !f->reason) {
        free(f->file);
        free(f->reason);
        free(f);
        return;
    }
    *r->refused_tail = f;
    r->refused_tail = &f->next;
}

static int valid_plugin_name(const char *s)
{
    size_t n = 0;
    for (; s && s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return s && n > 0 && n < 64;
}

static int in_list(const char *const *list, const char *name)
{
    for (size_t i = 0; list && list[i] && i < 256; i++)
        if (strcmp(list[i], name) == 0)
            return 1;
    return 0;
}

static int op_present(const struct lcm_plugin *p, const struct lcm_op_meta *m)
{
    if (p->ops_size < m->offset + sizeof(lcm_op_fn))
        return 0;
    lcm_op_fn fn;
    memcpy(&fn, (const char *)p->ops + m->offset, sizeof fn);
    return fn != NULL;
}

/* Checks the descriptor; returns a reason or NULL when fine. Reads data only. */
static const char *validate(struct lcm_plugins *r, struct lcm_plugin *p, char *buf,
                            size_t cap)
{
    const struct lcm_plugin_descriptor *d = p->desc;
    if (d->magic != LCM_SPI_MAGIC) {
        snprintf(buf, cap, "bad magic 0x%08x (expected 0x%08x)", d->magic, LCM_SPI_MAGIC);
        return buf;
    }
    if (d->spi_major != LCM_SPI_MAJOR) {
        snprintf(buf, cap, "SPI major %u.%u differs from host %d.%d", d->spi_major,
                 d->spi_minor, LCM_SPI_MAJOR, LCM_SPI_MINOR);
        return buf;
    }
    if (d->spi_minor > LCM_SPI_MINOR) {
        snprintf(buf, cap, "SPI %u.%u is newer than host %d.%d", d->spi_major, d->spi_minor,
                 LCM_SPI_MAJOR, LCM_SPI_MINOR);
        return buf;
    }
    size_t need = LCM_SPI_SIZE_UPTO(struct lcm_plugin_descriptor, unimplemented_ops);
    if (d->size < need) {
        snprintf(buf, cap, "descriptor size %u is smaller than %zu", d->size, need);
        return buf;
    }
    p->kind = lcm_optable_kind(d->kind);
    if (!p->kind) {
        snprintf(buf, cap, "unknown kind %u", d->kind);
        return buf;
    }
    if (!valid_plugin_name(d->name)) {
        snprintf(buf, cap, "invalid name (want 1-63 of [a-z0-9_-])");
        return buf;
    }
    if (!d->version || !*d->version) {
        snprintf(buf, cap, "missing version");
        return buf;
    }
    if (!d->create || !d->destroy) {
        snprintf(buf, cap, "missing %s", !d->create ? "create" : "destroy");
        return buf;
    }
    if (!d->ops) {
        snprintf(buf, cap, "missing ops table");
        return buf;
    }
    memcpy(&p->ops_size, d->ops, sizeof p->ops_size);
    p->ops = d->ops;
    size_t min = lcm_optable_min_size(p->kind, d->spi_minor);
    if (p->ops_size < min) {
        snprintf(buf, cap, "short ops table: size %u < %zu required for %s ops at SPI %u.%u",
                 p->ops_size, min, p->kind->name, d->spi_major, d->spi_minor);
        return buf;
    }
    for (size_t i = 0; i < p->kind->nops; i++) {
        const struct lcm_op_meta *m = &p->kind->ops[i];
        if (m->required && !op_present(p, m)) {
            snprintf(buf, cap, "missing required op %s.%s", p->kind->name, m->name);
            return buf;
        }
    }
    for (size_t i = 0; d->unimplemented_ops && d->unimplemented_ops[i]; i++) {
        if (i >= 256 || !lcm_optable_op_by_name(p->kind, d->unimplemented_ops[i])) {
            snprintf(buf, cap, "unimplemented_ops names an unknown op");
            return buf;
        }
    }
    for (struct lcm_plugin *q = r->plugins; q; q = q->next) {
        if (strcmp(q->desc->name, d->name) == 0) {
            snprintf(buf, cap, "duplicate name %s (already loaded from %s)", d->name, q->file);
            return buf;
        }
        if (q->desc->kind == d->kind) {
            snprintf(buf, cap, "kind %s is already provided by %s (%s)", p->kind->name,
                     q->desc->name, q->file);
            return buf;
        }
    }
    return NULL;
}

static void plugin_free(struct lcm_plugin *p)
{
    if (!p)
        return;
    lcm_hostsvc_free(p->host);
    if (p->dl)
        dlclose(p->dl);
    free(p->file);
    free(p->path);
    free(p);
}

static void load_one(struct lcm_plugins *r, const char *file)
{
    char why[512];
    size_t plen = strlen(r->dir) + strlen(file) + 2;
    struct lcm_plugin *p = calloc(1, sizeof *p);
    if (!p || !(p->file = strdup(file)) || !(p->path = malloc(plen))) {
        refuse(r, file, "out of memory");
        plugin_free(p);
        return;
    }
    p->reg = r;
    snprintf(p->path, plen, "%s/%s", r->dir, file);

    /* Ownership and mode: anyone who can rewrite the file can run code inside lcmd. */
    struct stat st;
    if (lstat(p->path, &st) != 0) {
        refuse(r, file, "cannot stat: %s", strerror(errno));
        goto fail;
    }
    if (S_ISLNK(st.st_mode)) {
        refuse(r, file, "is a symbolic link (plugins load only from the plugin directory)");
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        refuse(r, file, "not a regular file");
        goto fail;
    }
    if (st.st_mode & S_IWOTH) {
        refuse(r, file, "writable by others (mode %04o)", (unsigned)(st.st_mode & 07777));
        goto fail;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        refuse(r, file, "owned by uid %u, neither root nor lcmd's user", (unsigned)st.st_uid);
        goto fail;
    }

    dlerror();
    p->dl = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
    if (!p->dl) {
        const char *e = dlerror();
        refuse(r, file, "dlopen failed: %s", e ? e : "?");
        goto fail;
    }
    p->desc = dlsym(p->dl, LCM_PLUGIN_SYMBOL);
    if (!p->desc) {
        refuse(r, file, "no %s symbol", LCM_PLUGIN_SYMBOL);
        goto fail;
    }
    const char *reason = validate(r, p, why, sizeof why);
    if (reason) {
        refuse(r, file, "%s", reason);
        goto fail;
    }
    char err[256] = "";
    p->host = lcm_hostsvc_new(p->desc, &r->ctx, err, sizeof err);
    if (!p->host) {
        refuse(r, file, "%s", err);
        goto fail;
    }
    /* First plugin code to run (apart from ELF constructors, which dlopen always runs). */
    struct lcm_error e = { 0 };
    int rc = p->desc->create(&lcm_hostsvc_table, p->host, &p->self, &e);
    if (rc != 0) {
        e.message[sizeof e.message - 1] = '\0';
        refuse(r, file, "create failed (%d): %s", rc, e.message);
        lcm_hostsvc_close(p->host);
        goto fail;
    }
    p->created = 1;
    struct lcm_plugin **tail = &r->plugins;
    while (*tail)
        tail = &(*tail)->next;
    *tail = p;

    size_t nimpl = 0, nops = 0;
    for (size_t i = 0; i < p->kind->nops; i++) {
        nops++;
        nimpl += lcm_plugin_implements(p, p->kind->ops[i].offset) ? 1u : 0u;
    }
    lcm_info(COMP, "msg=\"plugin loaded\" file=%s name=%s kind=%s version=%s spi=%u.%u "
             "ops_implemented=%zu/%zu", file, p->desc->name, p->kind->name, p->desc->version,
             p->desc->spi_major, p->desc->spi_minor, nimpl, nops);
    return;
fail:
    plugin_free(p);
}

static int has_so_suffix(const char *n)
{
    size_t l = strlen(n);
    return l > 3 && strcmp(n + l - 3, ".so") == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

struct lcm_plugins *lcm_plugins_load(const char *dir, const struct lcm_plugin_host_ctx *ctx,
                                     char *err, size_t errlen)
{
    if (!dir || !*dir || !ctx || !ctx->base) {
        snprintf(err, errlen, "plugin directory and event base are required");
        return NULL;
    }
    struct lcm_plugins *r = calloc(1, sizeof *r);
    if (!r || !(r->dir = strdup(dir))) {
        free(r);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->ctx = *ctx;
    r->refused_tail = &r->refused;
    r->next_live = live;
    live = r;
    if (r->ctx.metrics) {
        lcm_metrics_declare(r->ctx.metrics, "lcm_plugin_calls_total", LCM_METRIC_COUNTER,
                            "Plugin operations completed, by plugin, op and result.");
        lcm_metrics_declare(r->ctx.metrics, "lcm_plugin_call_seconds", LCM_METRIC_HISTOGRAM,
                            "Plugin operation latency from call to done.");
        lcm_metrics_declare(r->ctx.metrics, "lcm_plugin_violations_total", LCM_METRIC_COUNTER,
                            "SPI contract violations by plugins (done twice, re-entrant).");
    }

    char msg[600];
    struct stat st;
    DIR *dh = NULL;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(msg, sizeof msg, "plugin directory %s: %s", dir,
                 errno ? strerror(errno) : "not a directory");
    } else if (st.st_mode & S_IWOTH) {
        snprintf(msg, sizeof msg, "plugin directory %s is writable by others (mode %04o)", dir,
                 (unsigned)(st.st_mode & 07777));
    } else if (!(dh = opendir(dir))) {
        snprintf(msg, sizeof msg, "plugin directory %s: %s", dir, strerror(errno));
    }
    if (!dh) {
        lcm_warn(COMP, "msg=\"no plugins loaded\" reason=\"%s\"", msg);
        r->ctx.config = NULL;
        r->dir_error = strdup(msg);
        return r;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(dh))) {
        if (de->d_name[0] == '.' || !has_so_suffix(de->d_name))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nn = realloc(names, nc * sizeof *nn);
            if (!nn)
                break;
            names = nn;
            cap = nc;
        }
        if (!(names[n] = strdup(de->d_name)))
            break;
        n++;
    }
    closedir(dh);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        load_one(r, names[i]);
        free(names[i]);
    }
    free(names);
    r->ctx.config = NULL;   /* only needed while loading; values were copied */
    lcm_info(COMP, "msg=\"plugins loaded\" dir=%s loaded=%zu refused=%zu", dir,
             lcm_plugins_count(r), lcm_plugins_refused_count(r));
    return r;
}

/* ---------------------------------------------------------------------------------------- */
/* Calls                                                                                    */

int lcm_plugins_call(struct lcm_plugins *r, enum lcm_plugin_kind kind, size_t op_offset,
                     const struct lcm_call *call, const void *args, lcm_done_fn done, void *ud,
                     struct lcm_error *err, uint64_t *op_id)
{
    struct lcm_error scratch;
    if (!err)
        err = &scratch;
    memset(err, 0, sizeof *err);
    if (!r || !done) {
        lcm_error_set(err, LCM_E_INVAL, 0, 0, "registry and done are required");
        return LCM_E_INVAL;
    }
    if (r->shutting_down) {
        lcm_error_set(err, LCM_E_SHUTDOWN, 1, 0, "plugins are shutting down");
        return LCM_E_SHUTDOWN;
    }
    struct lcm_plugin *p = lcm_plugins_get(r, kind);
    if (!p) {
        char m[96];
        snprintf(m, sizeof m, "no %s plugin is loaded", kind_name(kind));
        lcm_error_set(err, LCM_E_NOTFOUND, 0, 0, m);
        return LCM_E_NOTFOUND;
    }
    const struct lcm_op_meta *m = lcm_optable_op(p->kind, op_offset);
    if (!m) {
        lcm_error_set(err, LCM_E_INVAL, 0, 0, "no such op for this kind");
        return LCM_E_INVAL;
    }
    if (!op_present(p, m)) {
        char msg[160];
        snprintf(msg, sizeof msg, "plugin %s (SPI %u.%u) does not provide %s.%s",
                 p->desc->name, p->desc->spi_major, p->desc->spi_minor, p->kind->name, m->name);
        lcm_error_set(err, LCM_E_NOTIMPL, 0, 0, msg);
        return LCM_E_NOTIMPL;
    }
    struct op_rec *o = calloc(1, sizeof *o);
    if (!o) {
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return LCM_E_NOMEM;
    }
    o->id = next_op_id++;
    o->pl = p;
    o->op = m;
    o->done = done;
    o->ud = ud;
    o->started_ms = now_ms();
    struct op_rec **b = bucket(r, o->id);
    o->hnext = *b;
    *b = o;
    r->inflight++;
    p->inflight++;

    struct lcm_call c = { 0 };
    if (call)
        c = *call;
    c.size = sizeof c;
    c.op_id = o->id;
    lcm_op_fn fn;
    memcpy(&fn, (const char *)p->ops + m->offset, sizeof fn);
    o->in_call = 1;
    int rc = fn(p->self, &c, args, op_done, (void *)(uintptr_t)o->id, err);
    o->in_call = 0;
    if (rc != 0) {
        if (o->done_in_call)
            violation(r, p->desc->name, m->name, "done called for an op that returned an error");
        if (err->code == 0)
            err->code = rc;
        count_call(r, o, err);
        op_unlink(r, o);
        return rc;
    }
    if (o->done_in_call) {
        o->deferred = event_new(r->ctx.base, -1, 0, deferred_fire, (void *)(uintptr_t)o->id);
        if (o->deferred)
            event_active(o->deferred, EV_TIMEOUT, 1);
    }
    if (op_id)
        *op_id = o->id;
    return 0;
}

int lcm_plugins_cancel(struct lcm_plugins *r, uint64_t op_id)
{
    struct lcm_plugins *owner;
    struct op_rec *o = op_find(op_id, &owner);
    if (!o || owner != r || o->state != OP_OPEN)
        return LCM_E_NOTFOUND;
    if (!o->pl->desc->cancel)
        return LCM_E_NOTIMPL;
    o->pl->desc->cancel(o->pl->self, op_id);
    return 0;
}

int lcm_plugins_op_offset(enum lcm_plugin_kind kind, const char *op, size_t *offset)
{
    const struct lcm_op_meta *m = lcm_optable_op_by_name(lcm_optable_kind(kind), op);
    if (!m)
        return LCM_E_NOTFOUND;
    if (offset)
        *offset = m->offset;
    return 0;
}

size_t lcm_plugins_inflight(const struct lcm_plugins *r) { return r ? r->inflight : 0; }

/* ---------------------------------------------------------------------------------------- */
/* Shutdown                                                                                 */

static void finish_plugin(struct lcm_plugins *r, struct lcm_plugin *p)
{
    if (!p->created || p->destroyed)
        return;
    if (p->desc->stop && p->inflight)
        p->desc->stop(p->self);
    /* Whatever the plugin did not finish, the host answers now, once. */
    for (unsigned b = 0; b < NBUCKETS; b++) {
        struct op_rec *o = r->buckets[b];
        while (o) {
            struct op_rec *next = o->hnext;
            if (o->pl == p && o->state != OP_ORPHANED) {
                struct lcm_error e;
                if (o->state == OP_DEFERRED)
                    lcm_error_set(&e, LCM_E_INTERNAL, 1, 0,
                                  "plugin completed the operation re-entrantly");
                else
                    lcm_error_set(&e, LCM_E_SHUTDOWN, 1, 0, "lcmd is shutting down");
                lcm_done_fn done = o->done;
                void *ud = o->ud;
                count_call(r, o, &e);
                o->state = OP_ORPHANED;
                r->inflight--;
                p->inflight--;
                if (o->deferred) {
                    event_free(o->deferred);
                    o->deferred = NULL;
                }
                done(ud, &e, NULL);
                next = o->hnext;    /* done cannot add ops for this plugin now */
            }
            o = next;
        }
    }
    lcm_hostsvc_close(p->host);
    p->desc->destroy(p->self);
    p->destroyed = 1;
    /* Orphans can no longer be answered by the plugin: forget them. */
    for (unsigned b = 0; b < NBUCKETS; b++) {
        struct op_rec **pp = &r->buckets[b];
        while (*pp) {
            struct op_rec *o = *pp;
            if (o->pl == p) {
                *pp = o->hnext;
                if (o->deferred)
                    event_free(o->deferred);
                free(o);
            } else {
                pp = &o->hnext;
            }
        }
    }
}

void lcm_plugins_shutdown(struct lcm_plugins *r)
{
    if (!r || r->shut)
        return;
    r->shutting_down = 1;
    for (struct lcm_plugin *p = r->plugins; p; p = p->next)
        finish_plugin(r, p);
    r->shut = 1;
    lcm_info(COMP, "msg=\"plugins stopped\" loaded=%zu", lcm_plugins_count(r));
}

void lcm_plugins_free(struct lcm_plugins *r)
{
    if (!r)
        return;
    lcm_plugins_shutdown(r);
    for (struct lcm_plugins **pp = &live; *pp; pp = &(*pp)->next_live)
        if (*pp == r) {
            *pp = r->next_live;
            break;
        }
    while (r->plugins) {
        struct lcm_plugin *p = r->plugins;
        r->plugins = p->next;
        plugin_free(p);
    }
    while (r->refused) {
        struct refusal *f = r->refused;
        r->refused = f->next;
        free(f->file);
        free(f->reason);
        free(f);
    }
    free(r->dir_error);
    free(r->dir);
    free(r);
}

/* ---------------------------------------------------------------------------------------- */
/* Lookup and status                                                                        */

struct lcm_plugin *lcm_plugins_get(struct lcm_plugins *r, enum lcm_plugin_kind kind)
{
    for (struct lcm_plugin *p = r ? r->plugins : NULL; p; p = p->next)
        if (p->desc->kind == (uint32_t)kind)
            return p;
    return NULL;
}

struct lcm_plugin *lcm_plugins_find(struct lcm_plugins *r, const char *name)
{
    for (struct lcm_plugin *p = r ? r->plugins : NULL; name && p; p = p->next)
        if (strcmp(p->desc->name, name) == 0)
            return p;
    return NULL;
}

size_t lcm_plugins_count(const struct lcm_plugins *r)
{
    size_t n = 0;
    for (const struct lcm_plugin *p = r ? r->plugins : NULL; p; p = p->next)
        n++;
    return n;
}

size_t lcm_plugins_refused_count(const struct lcm_plugins *r)
{
    size_t n = 0;
    for (const struct refusal *f = r ? r->refused : NULL; f; f = f->next)
        n++;
    return n;
}

const char *lcm_plugins_refusal(const struct lcm_plugins *r, const char *file)
{
    for (const struct refusal *f = r ? r->refused : NULL; file && f; f = f->next)
        if (strcmp(f->file, file) == 0)
            return f->reason;
    return NULL;
}

const char *lcm_plugin_name(const struct lcm_plugin *p) { return p->desc->name; }
const char *lcm_plugin_version(const struct lcm_plugin *p) { return p->desc->version; }
enum lcm_plugin_kind lcm_plugin_kind(const struct lcm_plugin *p)
{
    return (enum lcm_plugin_kind)p->desc->kind;
}
void *lcm_plugin_self(const struct lcm_plugin *p) { return p->self; }
const void *lcm_plugin_ops(const struct lcm_plugin *p) { return p->ops; }

int lcm_plugin_implements(const struct lcm_plugin *p, size_t op_offset)
{
    const struct lcm_op_meta *m = lcm_optable_op(p->kind, op_offset);
    return m && op_present(p, m) && !in_list(p->desc->unimplemented_ops, m->name);
}

struct cJSON *lcm_plugins_status_json(const struct lcm_plugins *r)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    cJSON *spi = cJSON_AddObjectToObject(root, "spi");
    cJSON_AddNumberToObject(spi, "major", LCM_SPI_MAJOR);
    cJSON_AddNumberToObject(spi, "minor", LCM_SPI_MINOR);
    cJSON_AddStringToObject(root, "dir", r && r->dir ? r->dir : "");
    if (r && r->dir_error)
        cJSON_AddStringToObject(root, "dir_error", r->dir_error);
    cJSON *loaded = cJSON_AddArrayToObject(root, "loaded");
    for (const struct lcm_plugin *p = r ? r->plugins : NULL; p; p = p->next) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
            break;
        cJSON_AddItemToArray(loaded, o);
        cJSON_AddStringToObject(o, "name", p->desc->name);
        cJSON_AddStringToObject(o, "kind", p->kind->name);
        cJSON_AddStringToObject(o, "version", p->desc->version);
        cJSON_AddStringToObject(o, "description",
                                p->desc->description ? p->desc->description : "");
        cJSON_AddStringToObject(o, "file", p->file);
        cJSON *ps = cJSON_AddObjectToObject(o, "spi");
        cJSON_AddNumberToObject(ps, "major", p->desc->spi_major);
        cJSON_AddNumberToObject(ps, "minor", p->desc->spi_minor);
        cJSON_AddItemToObject(o, "config", lcm_hostsvc_config_json(p->host));
        cJSON *ops = cJSON_AddArrayToObject(o, "ops");
        cJSON *ni = cJSON_AddArrayToObject(o, "not_implemented");
        for (size_t i = 0; i < p->kind->nops; i++) {
            const struct lcm_op_meta *m = &p->kind->ops[i];
            int impl = lcm_plugin_implements(p, m->offset);
            cJSON *oo = cJSON_CreateObject();
            if (!oo)
                break;
            cJSON_AddStringToObject(oo, "name", m->name);
            cJSON_AddBoolToObject(oo, "required", m->required != 0);
            char since[16];
            snprintf(since, sizeof since, "%d.%u", LCM_SPI_MAJOR, m->since_minor);
            cJSON_AddStringToObject(oo, "since", since);
            cJSON_AddBoolToObject(oo, "implemented", impl);
            cJSON_AddItemToArray(ops, oo);
            if (!impl)
                cJSON_AddItemToArray(ni, cJSON_CreateString(m->name));
        }
        cJSON_AddNumberToObject(o, "inflight", (double)p->inflight);
        cJSON_AddStringToObject(o, "status", cJSON_GetArraySize(ni) == 0 ? "ok"
                                : "partial (some ops answer not implemented)");
    }
    cJSON *refused = cJSON_AddArrayToObject(root, "refused");
    for (const struct refusal *f = r ? r->refused : NULL; f; f = f->next) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
            break;
        cJSON_AddStringToObject(o, "file", f->file);
        cJSON_AddStringToObject(o, "reason", f->reason);
        cJSON_AddItemToArray(refused, o);
    }
    return root;
}
