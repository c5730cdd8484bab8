/* The LCM provider SPI: the only header a provider plugin (cloud, runtime, delivery, grading)
 * needs. A plugin is a .so that exports one descriptor; the host validates it, hands the plugin
 * a table of host services, and calls its asynchronous operations. See docs/spi.md. */
#ifndef LCM_SPI_H
#define LCM_SPI_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------
 * Versioning. MINOR grows when members are appended (the host still loads older minors);
 * MAJOR grows when anything is changed or removed (the host refuses any other major). The
 * host refuses a plugin whose minor is newer than its own.
 *
 * Change list (newest last):
 *   1.0 (2026-11-27)  Initial SPI: descriptor, host services (log, clocks, timers, HTTP,
 *                     secrets, metrics, config), cloud/runtime/delivery/grading ops.
 *   1.1 (2026-11-27)  Appended optional observability ops: cloud.metrics, runtime.system_stats,
 *                     runtime.activity, runtime.list_labs, delivery.refresh_content; appended
 *                     host service metric_set. A 1.0 plugin (shorter ops tables) still loads;
 *                     the host reports those ops as not implemented for it.
 *   1.2 (2026-11-27)  Appended optional op runtime.node_definitions (the node definition ids
 *                     a CML controller offers, for placement). 1.0 and 1.1 plugins still load;
 *                     the op is reported as not implemented for them.
 *   1.3 (2026-11-27)  Appended optional op delivery.session_find (an LDS session by the
 *                     external id LCM created it with, so that a create whose answer was lost
 *                     is found instead of made twice). Older minors still load; the op is
 *                     reported as not implemented for them.
 * ------------------------------------------------------------------------------------------ */
#define LCM_SPI_MAJOR 1
#define LCM_SPI_MINOR 3
#define LCM_SPI_MAGIC 0x4c434d50u /* "LCMP" */

/* The name of the one symbol a plugin exports. */
#define LCM_PLUGIN_SYMBOL "lcm_plugin_descriptor"

/* Size of a size-prefixed table up to and including member m: what a plugin built against
 * an older minor has as its table size, and what the host checks before using member m. */
#define LCM_SPI_SIZE_UPTO(type, m) (offsetof(type, m) + sizeof(((type *)0)->m))
#define LCM_SPI_HAS(tbl, type, m) ((tbl)->size >= LCM_SPI_SIZE_UPTO(type, m) && (tbl)->m)

/* ------------------------------------------------------------------------------------------
 * Errors. Every fallible call returns 0 or one of these (negative) and fills an lcm_error.
 * ------------------------------------------------------------------------------------------ */
#define LCM_OK           0
#define LCM_E_INVAL     -1   /* bad arguments (caller bug, not retryable) */
#define LCM_E_NOMEM     -2
#define LCM_E_NOTIMPL   -3   /* the provider does not implement this operation (yet) */
#define LCM_E_NOTFOUND  -4   /* the remote object does not exist */
#define LCM_E_CONFLICT  -5   /* remote state does not allow it (e.g. lab already started) */
#define LCM_E_AUTH      -6   /* authentication/authorisation refused by the remote */
#define LCM_E_TIMEOUT   -7
#define LCM_E_UNAVAIL   -8   /* transport error, 5xx, remote not ready */
#define LCM_E_THROTTLED -9   /* 429 / rate limit / quota */
#define LCM_E_PROTO    -10   /* response could not be understood */
#define LCM_E_CANCELLED -11  /* cancelled by the host (op cancel, shutdown) */
#define LCM_E_SHUTDOWN -12   /* the host is shutting down; the op did not finish */
#define LCM_E_CONFIG   -13   /* plugin configuration missing or invalid (incl. secrets) */
#define LCM_E_INTERNAL -14   /* a bug in the plugin or host */
#define LCM_E_REMOTE   -15   /* the remote answered with an error not covered above */

struct lcm_error {
    int code;                /* one of LCM_E_* */
    int retryable;           /* 1 when the same call may succeed later */
    int http_status;         /* remote HTTP status when there was one, else 0 */
    char message[256];       /* human readable, never contains a secret */
};

/* ------------------------------------------------------------------------------------------
 * Common small types. All pointers are borrowed: arguments for the duration of the op call,
 * results for the duration of the done callback. Nothing changes owner across the boundary.
 * ------------------------------------------------------------------------------------------ */
struct lcm_kv { const char *key, *value; };
struct lcm_strs { const char *const *v; size_t n; };
struct lcm_kvs { const struct lcm_kv *v; size_t n; };

/* Completion of an operation. err is NULL on success (then result points to the op's result
 * type named at the op, or is NULL for ops without a result); on failure err is set and result
 * is NULL. Called exactly once per op that returned 0, never from inside the op call itself,
 * and never for an op that returned an error. ud is the value the host passed to the op. */
typedef void (*lcm_done_fn)(void *ud, const struct lcm_error *err, const void *result);

/* Per-call context: which target the call is about, so one plugin instance serves every
 * worker/region. Fields a kind does not use are NULL/0. */
struct lcm_call {
    uint32_t size;               /* sizeof(struct lcm_call) as the host compiled it */
    uint64_t op_id;              /* host-assigned, unique per process; for cancel and logs */
    const char *correlation_id;  /* request/session id to put in log lines */
    const char *region;          /* cloud region; LDS deployment region */
    const char *endpoint;        /* base URL of the remote (CML worker, LDS, grading); NULL =
                                    the plugin's configured default */
    const char *credentials;     /* name of the credential set to look up through secret(),
                                    NULL = the plugin's default credentials */
    const char *worker_id;       /* LCM worker id when the call concerns one */
    const char *instance_id;     /* EC2 instance id when known */
    int64_t deadline_ms;         /* monotonic ms (host clock) after which to give up; 0 none */
    int insecure_tls;            /* skip TLS verification (self-signed CML certs) */
};

typedef int (*lcm_op_fn)(void *self, const struct lcm_call *call, const void *args,
                         lcm_done_fn done, void *ud, struct lcm_error *err);

/* ------------------------------------------------------------------------------------------
 * Host services: the only way a plugin does I/O, reads clocks, logs or gets secrets. The
 * table is size-prefixed; members are only ever appended. h is the opaque host handle given
 * to create(); pass it back on every call.
 * ------------------------------------------------------------------------------------------ */
struct lcm_host;

enum lcm_spi_log_level { LCM_SPI_DEBUG = 0, LCM_SPI_INFO, LCM_SPI_WARN, LCM_SPI_ERROR };

/* HTTP request, borrowed for the duration of http_request() only (the host copies). */
enum lcm_http_auth { LCM_HTTP_AUTH_NONE = 0, LCM_HTTP_AUTH_BASIC, LCM_HTTP_AUTH_BEARER,
                     LCM_HTTP_AUTH_SIGV4 };
struct lcm_http_req {
    uint32_t size;                   /* sizeof(struct lcm_http_req) */
    const char *method;              /* "GET", "POST", … */
    const char *url;
    const char *const *headers;      /* "Name: value" */
    size_t nheaders;
    const void *body;
    size_t body_len;
    long timeout_ms;                 /* per attempt; 0 = host default */
    long connect_timeout_ms;         /* 0 = host default */
    int max_retries;                 /* retries on transport errors / 429 / 5xx */
    int idempotent;                  /* retries only happen when set */
    int insecure;                    /* skip TLS verification */
    const char *ca_file;
    enum lcm_http_auth auth;
    const char *username, *password; /* BASIC; SIGV4: access key id / secret key */
    const char *bearer;              /* BEARER */
    const char *sigv4;               /* "aws:amz:<region>:<service>" */
    const char *session_token;       /* SIGV4 X-Amz-Security-Token */
    const char *metric_label;        /* e.g. "aws.ec2"; the host prefixes the plugin name */
    size_t max_response_bytes;       /* 0 = host default (16 MiB) */
};
struct lcm_http_header { const char *name, *value; };
/* Valid only during the callback. status 0 = no HTTP response; error says why. */
struct lcm_http_resp {
    int status;
    const char *body;                /* NUL-terminated */
    size_t body_len;
    const struct lcm_http_header *headers;
    size_t nheaders;
    int attempts;
    int cancelled;                   /* cancelled by http_cancel() or host shutdown */
    int timed_out;
    const char *error;               /* NULL on an HTTP response */
    double elapsed_s;
};
/* Called exactly once per accepted request, never from inside http_request()/http_cancel(). */
typedef void (*lcm_http_done_fn)(void *ud, const struct lcm_http_resp *resp);
/* One-shot timer callback; never runs after timer_cancel() returned 0. */
typedef void (*lcm_timer_fn)(void *ud);

struct lcm_host_services {
    uint32_t size;                   /* sizeof(struct lcm_host_services) as the host built it */
    uint16_t spi_major, spi_minor;   /* the host's SPI version */

    /* Log one line; fmt continues it in key=value style, e.g. "msg=\"launched\" id=%s". The
     * host adds time, level and comp=plugin.<name>. Never pass a secret. */
    void (*log)(struct lcm_host *h, enum lcm_spi_log_level lvl, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    void (*logv)(struct lcm_host *h, enum lcm_spi_log_level lvl, const char *fmt, va_list ap);

    uint64_t (*monotonic_ms)(struct lcm_host *h);   /* for deadlines and durations */
    int64_t (*wall_ms)(struct lcm_host *h);         /* Unix epoch ms, for timestamps */

    /* One-shot timer on the host loop. Returns 0 (fills *id) or LCM_E_*. */
    int (*timer_add)(struct lcm_host *h, uint64_t delay_ms, lcm_timer_fn cb, void *ud,
                     uint64_t *id);
    /* Returns 0 (cb will not run) or LCM_E_NOTFOUND (already ran or unknown). */
    int (*timer_cancel)(struct lcm_host *h, uint64_t id);

    /* Async HTTP through the host's client (timeouts, retries, metrics, logs). Returns 0 and
     * fills *id (may be NULL) — done runs exactly once later — or LCM_E_* (done never runs). */
    int (*http_request)(struct lcm_host *h, const struct lcm_http_req *req,
                        lcm_http_done_fn done, void *ud, uint64_t *id);
    /* Done later runs with cancelled=1. Returns 0 or LCM_E_NOTFOUND. */
    int (*http_cancel)(struct lcm_host *h, uint64_t id);

    /* Secret by name (e.g. "CML_PASSWORD"): the environment variable LCM_<NAME> first, then
     * the plugin's config key of that name in lower case (a declared LCM_PCFG_SECRET key).
     * Copies it NUL-terminated into buf; returns its length, LCM_E_NOTFOUND, or LCM_E_INVAL
     * when it does not fit. The host never logs secrets; wipe buf after use. */
    int (*secret)(struct lcm_host *h, const char *name, char *buf, size_t cap);

    /* Metrics; the host prefixes names with "lcm_plugin_" and adds plugin="<name>" to the
     * labels. labels is the inside of the braces, e.g. "op=\"launch\"", or NULL. */
    void (*metric_inc)(struct lcm_host *h, const char *name, const char *labels, double by);
    void (*metric_observe)(struct lcm_host *h, const char *name, const char *labels,
                           double seconds);

    /* Validated configuration (keys declared in the descriptor). Strings stay valid for the
     * plugin's lifetime. config_str returns NULL for an unset key without default; the typed
     * getters return 0, or LCM_E_NOTFOUND (unset) / LCM_E_INVAL (wrong type). Secret-typed
     * keys are only readable through secret(). */
    const char *(*config_str)(struct lcm_host *h, const char *key);
    int (*config_int)(struct lcm_host *h, const char *key, int64_t *out);
    int (*config_bool)(struct lcm_host *h, const char *key, int *out);

    /* --- 1.1 --- */
    void (*metric_set)(struct lcm_host *h, const char *name, const char *labels, double v);
};

/* ------------------------------------------------------------------------------------------
 * Configuration schema: declared by the plugin, validated and served by the host, shown at
 * GET /api/v1/plugins (secret values never shown).
 * ------------------------------------------------------------------------------------------ */
enum lcm_plugin_config_type { LCM_PCFG_STRING = 1, LCM_PCFG_INT, LCM_PCFG_BOOL,
                              LCM_PCFG_SECRET };
struct lcm_plugin_config_key {
    const char *name;            /* [a-z0-9_]+ */
    enum lcm_plugin_config_type type;
    const char *default_value;   /* as text ("30", "true"); NULL = no default */
    const char *description;
    int required;                /* host refuses the plugin when unset and no default */
};

/* ------------------------------------------------------------------------------------------
 * Kind: cloud (EC2 / CloudWatch). call->region selects the region.
 * ------------------------------------------------------------------------------------------ */
enum lcm_instance_state {
    LCM_INSTANCE_UNKNOWN = 0, LCM_INSTANCE_PENDING, LCM_INSTANCE_RUNNING,
    LCM_INSTANCE_STOPPING, LCM_INSTANCE_STOPPED, LCM_INSTANCE_SHUTTING_DOWN,
    LCM_INSTANCE_TERMINATED
};

struct lcm_cloud_instance {
    const char *instance_id;
    enum lcm_instance_state state;
    const char *state_name;      /* as the cloud says it ("running") */
    const char *state_reason;    /* may be NULL */
    const char *image_id;
    const char *instance_type;
    const char *private_ip, *public_ip;   /* NULL when none */
    const char *public_dns;
    const char *availability_zone;
    const char *launch_time;     /* RFC 3339 UTC */
    const char *client_token;
    struct lcm_kvs tags;
};
struct lcm_cloud_instances {     /* result of launch, describe */
    const struct lcm_cloud_instance *v;
    size_t n;
    const char *next_token;      /* describe: NULL when this was the last page */
};

struct lcm_cloud_launch_args {   /* result: struct lcm_cloud_instances (the launched one) */
    const char *image_id;
    const char *instance_type;
    const char *client_token;    /* idempotency: derived from the worker id */
    const char *subnet_id;       /* NULL = default */
    struct lcm_strs security_group_ids;
    const char *key_name;        /* NULL = none */
    const char *iam_instance_profile; /* NULL = none */
    const void *user_data;       /* raw bytes; the plugin encodes as the cloud needs */
    size_t user_data_len;
    struct lcm_kvs tags;         /* applied to instance and volumes at launch */
    int root_volume_gb;          /* 0 = image default */
};
struct lcm_cloud_describe_args { /* result: struct lcm_cloud_instances */
    struct lcm_strs instance_ids;  /* empty = filter by tags/states only */
    struct lcm_kvs tag_filters;    /* tag key = value; value "*" = tag present */
    struct lcm_strs states;        /* state names to include; empty = all */
    const char *next_token;        /* NULL = first page */
    int max_results;               /* 0 = provider default */
};
struct lcm_cloud_ids_args {      /* start, stop, terminate; result: struct lcm_cloud_changes */
    struct lcm_strs instance_ids;
    int force;                   /* stop only: force */
};
struct lcm_cloud_change {
    const char *instance_id;
    enum lcm_instance_state previous, current;
};
struct lcm_cloud_changes { const struct lcm_cloud_change *v; size_t n; };

struct lcm_cloud_find_image_args {  /* result: struct lcm_cloud_images, newest first */
    const char *name_pattern;       /* glob, e.g. "cml-2.9*" */
    struct lcm_strs owners;         /* empty = self + any the account can use */
};
struct lcm_cloud_image {
    const char *image_id, *name, *creation_date, *state, *architecture;
};
struct lcm_cloud_images { const struct lcm_cloud_image *v; size_t n; };

struct lcm_cloud_tags_args {     /* create_tags; no result */
    struct lcm_strs resource_ids;
    struct lcm_kvs tags;
};

struct lcm_cloud_metrics_args {  /* 1.1; result: struct lcm_cloud_datapoints (oldest first) */
    const char *instance_id;
    const char *metric;          /* "CPUUtilization" */
    const char *statistic;       /* "Average" (default when NULL), "Maximum" */
    int64_t start_ms, end_ms;    /* Unix epoch ms */
    int period_s;                /* 0 = 300 */
};
struct lcm_cloud_datapoint { int64_t at_ms; double value; };
struct lcm_cloud_datapoints { const struct lcm_cloud_datapoint *v; size_t n; const char *unit; };

struct lcm_cloud_ops {
    uint32_t size;               /* sizeof(struct lcm_cloud_ops) as the plugin compiled it */
    lcm_op_fn launch;            /* required; args lcm_cloud_launch_args */
    lcm_op_fn describe;          /* required; args lcm_cloud_describe_args */
    lcm_op_fn start;             /* required; args lcm_cloud_ids_args */
    lcm_op_fn stop;              /* required; args lcm_cloud_ids_args */
    lcm_op_fn terminate;         /* required; args lcm_cloud_ids_args */
    lcm_op_fn find_image;        /* required; args lcm_cloud_find_image_args */
    lcm_op_fn create_tags;       /* optional; args lcm_cloud_tags_args */
    /* --- 1.1 --- */
    lcm_op_fn metrics;           /* optional; args lcm_cloud_metrics_args */
};

/* ------------------------------------------------------------------------------------------
 * Kind: runtime (CML). call->endpoint is the worker's CML base URL (https://host), and
 * call->credentials names its credential set.
 * ------------------------------------------------------------------------------------------ */
struct lcm_rt_system_info {      /* result of system_info (no args) */
    const char *version;         /* "2.9.0+build..." */
    int ready;                   /* CML says ready */
};
struct lcm_rt_licence {          /* result of licence_get (no args) */
    const char *registration_status;   /* "COMPLETED", "NOT_REGISTERED", … */
    const char *authorization_status;  /* "IN_COMPLIANCE", "EVAL", … */
    const char *product_license;       /* "personal", "enterprise", "evaluation", … */
    int registered;              /* 1 when registration completed */
    int node_limit;              /* 0 = unknown */
};
struct lcm_rt_licence_register_args {  /* no result */
    const char *token;           /* smart licensing token (a secret: never logged) */
    int reregister;
};
struct lcm_rt_lab_import_args {  /* result: struct lcm_rt_imported */
    const char *topology_yaml;
    size_t topology_len;
    const char *title;           /* NULL = keep the topology's title */
};
struct lcm_rt_imported { const char *lab_id; struct lcm_strs warnings; };

struct lcm_rt_lab_args {         /* lab_get, lab_start/stop/wipe/delete, lab_converged,
                                    nodes_list */
    const char *lab_id;
};
struct lcm_rt_lab {              /* result of lab_get */
    const char *id, *title;
    const char *state;           /* CML's: DEFINED_ON_CORE, STARTED, BOOTED, QUEUED, STOPPED */
    int node_count;
    const char *created, *modified;
};
struct lcm_rt_converged { int converged; };      /* result of lab_converged */

struct lcm_rt_node {
    const char *id, *label, *node_definition;
    const char *state;           /* CML node state */
    struct lcm_strs tags;
};
struct lcm_rt_nodes { const struct lcm_rt_node *v; size_t n; };   /* result of nodes_list */

struct lcm_rt_node_tags_args {   /* node_set_tags: replaces the full tag list; no result */
    const char *lab_id, *node_id;
    struct lcm_strs tags;
};
struct lcm_rt_extract_args {     /* result: struct lcm_rt_configs */
    const char *lab_id;
    struct lcm_strs node_ids;    /* empty = every node */
};
struct lcm_rt_config { const char *node_id, *label, *config; size_t config_len; };
struct lcm_rt_configs { const struct lcm_rt_config *v; size_t n; };

struct lcm_rt_system_stats {     /* 1.1; result of system_stats (no args) */
    double cpu_percent;
    uint64_t mem_used_bytes, mem_total_bytes;
    uint64_t disk_used_bytes, disk_total_bytes;
    int computes;
    int running_nodes;
};
struct lcm_rt_activity_args {    /* 1.1; result: struct lcm_rt_activity */
    int64_t since_ms;            /* Unix epoch ms; 0 = provider default window */
};
struct lcm_rt_event { int64_t at_ms; const char *category; const char *lab_id; };
struct lcm_rt_activity {
    int64_t last_activity_ms;    /* newest user activity; 0 = none seen */
    const struct lcm_rt_event *v;
    size_t n;
};
struct lcm_rt_lab_ids { struct lcm_strs ids; };  /* 1.1; result of list_labs (no args) */
/* 1.2; result of node_definitions (no args): the ids of every node definition the controller
 * offers (CML's `id`, e.g. "iosv"), each once, in no particular order. */
struct lcm_rt_node_definitions { struct lcm_strs ids; };

struct lcm_runtime_ops {
    uint32_t size;
    lcm_op_fn system_info;       /* required; args NULL; result lcm_rt_system_info */
    lcm_op_fn licence_get;       /* required; args NULL; result lcm_rt_licence */
    lcm_op_fn licence_register;  /* optional; args lcm_rt_licence_register_args */
    lcm_op_fn lab_import;        /* required */
    lcm_op_fn lab_get;           /* required */
    lcm_op_fn lab_start;         /* required */
    lcm_op_fn lab_stop;          /* required */
    lcm_op_fn lab_wipe;          /* required */
    lcm_op_fn lab_delete;        /* required */
    lcm_op_fn lab_converged;     /* required */
    lcm_op_fn nodes_list;        /* required */
    lcm_op_fn node_set_tags;     /* required */
    lcm_op_fn extract_configs;   /* optional */
    /* --- 1.1 --- */
    lcm_op_fn system_stats;      /* optional; args NULL; result lcm_rt_system_stats */
    lcm_op_fn activity;          /* optional */
    lcm_op_fn list_labs;         /* optional; args NULL; result lcm_rt_lab_ids */
    /* --- 1.2 --- */
    lcm_op_fn node_definitions;  /* optional; args NULL; result lcm_rt_node_definitions */
};

/* ------------------------------------------------------------------------------------------
 * Kind: delivery (LDS). call->region selects the LDS deployment.
 * ------------------------------------------------------------------------------------------ */
struct lcm_lds_create_args {     /* result: struct lcm_lds_session */
    const char *form_qualified_name;
    const char *external_id;     /* LCM session id (idempotency / correlation) */
    const char *candidate_id;    /* owner */
    const char *first_name, *last_name, *email;   /* may be NULL */
    int64_t timeslot_start_ms, timeslot_end_ms;
    int max_length_minutes;
};
struct lcm_lds_device {
    const char *device_label, *protocol, *host;
    int port;
    const char *password;        /* may be NULL; a secret */
};
struct lcm_lds_devices_args {    /* set_devices; no result */
    const char *lds_session_id;
    int part;                    /* 0 = 1 */
    const struct lcm_lds_device *v;
    size_t n;
};
struct lcm_lds_session_args { const char *lds_session_id; };  /* get, launch_url, release */
struct lcm_lds_session {         /* result of create and get */
    const char *id;
    const char *state;           /* LDS session state */
    const char *part_state;      /* current part's state; may be NULL */
    int is_finalized;
};
struct lcm_lds_url { const char *url; };         /* result of launch_url */
/* 1.3; session_find (result: struct lcm_lds_session): the most recently created LDS session
 * that is not finalized, whose auth_id is external_id (as session_create sent it) and one of
 * whose parts is form_qualified_name, created at or after created_after_ms (0: any time).
 * LCM_E_NOTFOUND when there is none. The host calls it before creating again after an
 * attempt whose outcome it does not know (a lost answer, a crash). */
struct lcm_lds_find_args {
    const char *form_qualified_name;
    const char *external_id;
    int64_t created_after_ms;
};
struct lcm_lds_content_args { const char *form_qualified_name; };  /* refresh_content */

struct lcm_delivery_ops {
    uint32_t size;
    lcm_op_fn session_create;    /* required */
    lcm_op_fn set_devices;       /* required */
    lcm_op_fn session_get;       /* required */
    lcm_op_fn launch_url;        /* required */
    lcm_op_fn release;           /* required */
    /* --- 1.1 --- */
    lcm_op_fn refresh_content;   /* optional */
    /* --- 1.3 --- */
    lcm_op_fn session_find;      /* optional */
};

/* ------------------------------------------------------------------------------------------
 * Kind: grading (grading engine).
 * ------------------------------------------------------------------------------------------ */
struct lcm_grd_interface {
    const char *name, *protocol, *host;
    int port;
    const char *username, *password;   /* may be NULL; secrets */
};
struct lcm_grd_device {
    const char *label, *hostname, *collector;
    const struct lcm_grd_interface *ifaces;
    size_t nifaces;
};
struct lcm_grd_create_args {     /* result: struct lcm_grd_created */
    const char *session_id;      /* LCM session id (used as the grading session id) */
    const char *candidate_id;
    const char *lds_session_id, *lds_environment;  /* may be NULL */
    const char *part_id;         /* e.g. the FQN */
    const char *pod_id;
    const struct lcm_grd_device *devices;
    size_t ndevices;
};
struct lcm_grd_created { const char *grading_session_id, *part_id; };
struct lcm_grd_part_args { const char *grading_session_id, *part_id; };  /* request_grading */
struct lcm_grd_session_args { const char *grading_session_id; };         /* get_result */
struct lcm_grd_section { const char *id; double score, max_score; };
struct lcm_grd_result {          /* result of get_result */
    const char *status;          /* session/part status as the engine says it */
    int completed;               /* a score report is final */
    int failed;
    double score, max_score, cut_score;
    int passed;                  /* -1 unknown */
    const struct lcm_grd_section *sections;
    size_t nsections;
    const char *submitted_at;    /* RFC 3339; may be NULL */
};

struct lcm_grading_ops {
    uint32_t size;
    lcm_op_fn session_create;    /* required */
    lcm_op_fn request_grading;   /* required */
    lcm_op_fn get_result;        /* required */
};

/* ------------------------------------------------------------------------------------------
 * The descriptor: the one exported symbol. Version fields come first and never move.
 * ------------------------------------------------------------------------------------------ */
enum lcm_plugin_kind { LCM_KIND_CLOUD = 1, LCM_KIND_RUNTIME, LCM_KIND_DELIVERY,
                       LCM_KIND_GRADING };

struct lcm_plugin_descriptor {
    uint32_t magic;              /* LCM_SPI_MAGIC */
    uint16_t spi_major, spi_minor;
    uint32_t size;               /* sizeof(struct lcm_plugin_descriptor) as compiled */
    uint32_t kind;               /* enum lcm_plugin_kind */
    const char *name;            /* unique, [a-z0-9_-]+, e.g. "aws" */
    const char *version;         /* the plugin's own version, e.g. "0.1.0" */
    const char *description;

    const struct lcm_plugin_config_key *config;   /* declared keys */
    size_t nconfig;

    /* Creates an instance. hs and h stay valid until destroy(). Return 0 and set *self, or
     * LCM_E_* with err filled (the host then refuses the plugin and logs the message). */
    int (*create)(const struct lcm_host_services *hs, struct lcm_host *h, void **self,
                  struct lcm_error *err);
    /* Optional: the host is shutting down. Finish every op in flight now by calling its done
     * with LCM_E_CANCELLED (allowed from inside stop). Ops still open afterwards are completed
     * by the host with LCM_E_SHUTDOWN. Right after stop returns, the host drops the plugin's
     * pending timers and HTTP requests: their callbacks never run, so state freed in stop is
     * never touched again. destroy() follows. */
    void (*stop)(void *self);
    /* Frees the instance. No HTTP callback or timer of the plugin runs afterwards. */
    void (*destroy)(void *self);
    /* Optional: cancel one op in flight (op_id from lcm_call); its done then runs later with
     * LCM_E_CANCELLED (or with its real outcome if it already finished). */
    void (*cancel)(void *self, uint64_t op_id);

    const void *ops;             /* struct lcm_<kind>_ops, starting with its uint32_t size */
    /* Names of ops present in the table that only answer LCM_E_NOTIMPL (a skeleton), NULL-
     * terminated; NULL = none. Shown at GET /api/v1/plugins. */
    const char *const *unimplemented_ops;
};

/* Use in a plugin: `LCM_PLUGIN_DESCRIPTOR = { LCM_PLUGIN_HEADER, .kind = …, … };`. Build
 * with -fvisibility=hidden so this is the only exported symbol. */
#define LCM_PLUGIN_HEADER                                                                  \
    .magic = LCM_SPI_MAGIC, .spi_major = LCM_SPI_MAJOR, .spi_minor = LCM_SPI_MINOR,       \
    .size = sizeof(struct lcm_plugin_descriptor)
#define LCM_PLUGIN_DESCRIPTOR                                                              \
    __attribute__((visibility("default"))) const struct lcm_plugin_descriptor              \
        lcm_plugin_descriptor

/* Small helper plugins may use to fill an error. */
static inline void lcm_error_set(struct lcm_error *e, int code, int retryable, int http_status,
                                 const char *msg)
{
    if (!e)
        return;
    size_t i = 0;
    e->code = code;
    e->retryable = retryable;
    e->http_status = http_status;
    if (msg)
        for (; msg[i] && i + 1 < sizeof e->message; i++)
            e->message[i] = msg[i];
    e->message[i] = '\0';
}

#ifdef __cplusplus
}
#endif

#endif
