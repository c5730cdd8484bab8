/* The plugin registry of lcmd: loads provider .so files from the configured directory,
 * refuses the ones that do not fit (one log line each), and calls their asynchronous ops with
 * the exactly-once, never-re-entrant done contract enforced and counted. */
#ifndef LCM_PLUGIN_H
#define LCM_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include <lcm/spi.h>

struct cJSON;
struct event_base;
struct lcm_httpc;
struct lcm_metrics;
struct lcm_plugins;
struct lcm_plugin;

/* What the host gives the registry; borrowed, and (except config) must outlive it. */
struct lcm_plugin_host_ctx {
    struct event_base *base;        /* required: timers and deferred completions */
    struct lcm_httpc *httpc;        /* outbound HTTP; NULL = http_request answers LCM_E_UNAVAIL */
    struct lcm_metrics *metrics;    /* NULL = no metrics */
    /* Plugin configuration: {"<plugin name>": {"<key>": value, …}, …}; NULL = none. An
     * environment variable LCM_PLUGIN_<NAME>_<KEY> (upper case, '-' → '_') overrides. Read
     * only during lcm_plugins_load(). */
    const struct cJSON *config;
};

/* Loads every *.so directly inside dir (sorted by name). Files that do not fit are refused
 * with one log line (`msg="plugin refused" file=… reason="…"`) and listed in the status;
 * the others are created and registered. Returns NULL only on bad arguments or out of memory
 * (err filled); a missing or unsafe directory gives an empty registry that says why. */
struct lcm_plugins *lcm_plugins_load(const char *dir, const struct lcm_plugin_host_ctx *ctx,
                                     char *err, size_t errlen);

/* Shutdown, phase one: no new calls; each plugin's stop() runs (it may finish its ops with
 * LCM_E_CANCELLED); every op still open is completed by the host with LCM_E_SHUTDOWN; the
 * plugins' timers are cancelled and their HTTP requests cancelled and detached; destroy()
 * runs. Afterwards every done of every accepted call has run exactly once. Idempotent. */
void lcm_plugins_shutdown(struct lcm_plugins *r);
/* Shuts down if needed, dlcloses and frees everything. NULL is fine. */
void lcm_plugins_free(struct lcm_plugins *r);

/* The provider of a kind (one per kind), or NULL. */
struct lcm_plugin *lcm_plugins_get(struct lcm_plugins *r, enum lcm_plugin_kind kind);
struct lcm_plugin *lcm_plugins_find(struct lcm_plugins *r, const char *name);
size_t lcm_plugins_count(const struct lcm_plugins *r);
size_t lcm_plugins_refused_count(const struct lcm_plugins *r);
/* Reason the file with this base name was refused, or NULL. */
const char *lcm_plugins_refusal(const struct lcm_plugins *r, const char *file);

const char *lcm_plugin_name(const struct lcm_plugin *p);
const char *lcm_plugin_version(const struct lcm_plugin *p);
enum lcm_plugin_kind lcm_plugin_kind(const struct lcm_plugin *p);
/* 1 when the op at this offset is present in the plugin's table and not declared as a
 * skeleton ("not implemented"); 0 otherwise. */
int lcm_plugin_implements(const struct lcm_plugin *p, size_t op_offset);
/* The raw instance and ops table, for inspection only: call ops through lcm_plugins_call()
 * so that completion is tracked. */
void *lcm_plugin_self(const struct lcm_plugin *p);
const void *lcm_plugin_ops(const struct lcm_plugin *p);

/* Calls an op of the provider of kind. op_offset is offsetof(struct lcm_<kind>_ops, <op>)
 * (see LCM_PLUGINS_CALL). call may be NULL; the host copies it and assigns op_id (returned in
 * *op_id when non-NULL). Returns 0: done runs exactly once, later, from the loop; or a
 * negative LCM_E_* with err filled (LCM_E_NOTIMPL when the plugin lacks the op, LCM_E_SHUTDOWN
 * after shutdown, LCM_E_NOTFOUND when no plugin serves the kind): done never runs. */
int lcm_plugins_call(struct lcm_plugins *r, enum lcm_plugin_kind kind, size_t op_offset,
                     const struct lcm_call *call, const void *args, lcm_done_fn done, void *ud,
                     struct lcm_error *err, uint64_t *op_id);

#define LCM_PLUGINS_CALL(r, kind, ops_type, op, call, args, done, ud, err, op_id)           \
    lcm_plugins_call((r), (kind), offsetof(struct ops_type, op), (call), (args), (done),   \
                     (ud), (err), (op_id))
#define lcm_cloud_call(r, op, call, args, done, ud, err, id)                                 \
    LCM_PLUGINS_CALL(r, LCM_KIND_CLOUD, lcm_cloud_ops, op, call, args, done, ud, err, id)
#define lcm_runtime_call(r, op, call, args, done, ud, err, id)                               \
    LCM_PLUGINS_CALL(r, LCM_KIND_RUNTIME, lcm_runtime_ops, op, call, args, done, ud, err, id)
#define lcm_delivery_call(r, op, call, args, done, ud, err, id)                              \
    LCM_PLUGINS_CALL(r, LCM_KIND_DELIVERY, lcm_delivery_ops, op, call, args, done, ud, err, id)
#define lcm_grading_call(r, op, call, args, done, ud, err, id)                               \
    LCM_PLUGINS_CALL(r, LCM_KIND_GRADING, lcm_grading_ops, op, call, args, done, ud, err, id)

/* offsetof the op named op in the ops table of kind (e.g. "launch"); 0, or LCM_E_NOTFOUND. */
int lcm_plugins_op_offset(enum lcm_plugin_kind kind, const char *op, size_t *offset);

/* Asks the plugin to cancel an op in flight (its done then runs with LCM_E_CANCELLED, or with
 * its real outcome). Returns 0, LCM_E_NOTFOUND (not in flight) or LCM_E_NOTIMPL. */
int lcm_plugins_cancel(struct lcm_plugins *r, uint64_t op_id);
/* Ops accepted and not yet completed (all plugins). */
size_t lcm_plugins_inflight(const struct lcm_plugins *r);

/* GET /api/v1/plugins: {spi:{major,minor}, dir, loaded:[{name, kind, version, description,
 * file, spi:{major,minor}, config:[{name,type,default,description,required,value?}],
 * ops:[{name, required, since, implemented}], not_implemented:[…], inflight}],
 * refused:[{file, reason}]}. Secret values are never included. Caller frees. */
struct cJSON *lcm_plugins_status_json(const struct lcm_plugins *r);

/* Contract violations by a plugin: done called twice / for an unknown op, done called from
 * inside the op, done for an op that returned an error. The default handler logs an error
 * line and, in debug builds (LCM_DEBUG_CHECKS), aborts. Tests install their own. The
 * violation is also counted (lcm_plugin_violations_total). Returns the previous handler. */
typedef void (*lcm_plugin_violation_fn)(const char *plugin, const char *op, const char *what,
                                        void *ud);
void lcm_plugins_set_violation_handler(lcm_plugin_violation_fn fn, void *ud);
/* Total violations seen by this process. */
uint64_t lcm_plugins_violations(void);

#endif
