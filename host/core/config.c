/* Configuration table, parser and validation. Every key lcmd understands is listed once in
 * lcm_cfg_keys[]; adding a key is one line here (and docs/config.md is regenerated from it). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S LCM_CFG_STRING
#define I LCM_CFG_INT
#define B LCM_CFG_BOOL
#define E LCM_CFG_ENUM
#define A LCM_CFG_ADDR
#define L LCM_CFG_LIST

const struct lcm_cfg_key lcm_cfg_keys[] = {
    /* core */
    { "listen", A, "127.0.0.1:8080", 0, 0, NULL, 0, "core", "Address the HTTP API listens on (host:port)." },
    { "redis_url", S, NULL, 0, 0, NULL, 0, "core", "Redis to use: redis://host:port[/db], unix:///path[?db=N], sentinel://host:port,host:port/master. Unset: lcmd starts its own redis-server on a unix socket in data_dir (AOF on)." },
    { "data_dir", S, ".lcm-data", 0, 0, NULL, 0, "core", "Directory for the embedded Redis (socket, AOF) and other local state." },
    { "plugin_dir", S, LCM_DEFAULT_PLUGIN_DIR, 0, 0, NULL, 0, "core", "Directory provider plugins (lcm-*.so) are loaded from; nothing outside it is loaded." },
    { "plugin_config_file", S, NULL, 0, 0, NULL, 0, "core", "JSON file with provider plugin settings: {\"<plugin>\": {\"<key>\": value}}. Environment LCM_PLUGIN_<NAME>_<KEY> overrides a key; secrets belong in the environment." },
    { "policy_dir", S, LCM_DEFAULT_POLICY_DIR, 0, 0, NULL, 0, "core", "Directory with placement.lua, scale_up.lua, scale_down.lua." },
    { "ui_dir", S, LCM_SOURCE_DIR "/ui", 0, 0, NULL, 0, "core", "Directory of the operator dashboard's static files, served at / (no token needed for the files; the API needs one)." },
    { "log_level", E, "info", 0, 0, "debug|info|warn|error", 0, "core", "Minimum level of log lines written to stderr." },
    { "redis_server", S, "redis-server", 0, 0, NULL, 0, "core", "redis-server binary used for the embedded Redis." },
    { "redis_appendfsync", E, "everysec", 0, 0, "everysec|always", 0, "core", "AOF fsync policy of the embedded Redis (see docs/redis-layout.md for what each may lose)." },
    { "redis_connect_timeout_ms", I, "2000", 10, 60000, NULL, 0, "core", "Timeout for connecting to Redis." },
    { "redis_command_timeout_ms", I, "5000", 10, 600000, NULL, 0, "core", "A Redis command without a reply by then fails (and the connection is re-established)." },
    { "redis_backoff_max_ms", I, "2000", 10, 60000, NULL, 0, "core", "Upper bound of the jittered reconnect backoff." },
    /* controllers */
    { "lease_ttl_ms", I, "5000", 300, 600000, NULL, 0, "controllers", "Leader lease TTL; a dead leader is replaced within this time. Renewed every third of it." },
    { "leader_holder", S, NULL, 0, 0, NULL, 0, "controllers", "Name this replica uses in the lease (default hostname-pid-random)." },
    /* session lifecycle and lab records (host/ctl/sessions.c, labs.c; docs/lifecycle.md, docs/labs.md) */
    { "boot_lead_minutes", I, "20", 0, 1440, NULL, 0, "lifecycle", "A scheduled session starts instantiating this long before its timeslot starts, unless its definition sets boot_lead_minutes." },
    { "expiry_grace_minutes", I, "5", 0, 1440, NULL, 0, "lifecycle", "A pending/scheduled session whose timeslot start passed by more than this becomes expired." },
    { "collect_grace_minutes", I, "30", 0, 1440, NULL, 0, "lifecycle", "A collecting/grading session may outlive its timeslot end by this long before it expires." },
    { "session_sweep_ms", I, "5000", 50, 600000, NULL, 0, "lifecycle", "Safety sweep of the sessions controller (it is woken by session changes and by a deadline timer on the earliest due session)." },
    { "session_step_timeout_ms", I, "60000", 100, 3600000, NULL, 0, "lifecycle", "Deadline of each external call a pipeline step makes (CML, LDS, grading)." },
    { "session_step_retries", I, "3", 0, 100, NULL, 0, "lifecycle", "Retries of a failing pipeline step; when they are used up the session is terminated with the reason." },
    { "session_retry_backoff_ms", I, "2000", 1, 3600000, NULL, 0, "lifecycle", "First retry delay of a failed step, doubled per attempt." },
    { "session_retry_backoff_max_ms", I, "60000", 1, 3600000, NULL, 0, "lifecycle", "Upper bound of the step retry delay." },
    { "session_poll_ms", I, "2000", 20, 600000, NULL, 0, "lifecycle", "How often a lab being started, stopped or wiped is polled on CML (also lab actions)." },
    { "session_boot_timeout_s", I, "900", 1, 86400, NULL, 0, "lifecycle", "A lab that has not converged this long after start_lab began fails the attempt." },
    { "session_wait_timeout_s", I, "600", 1, 86400, NULL, 0, "lifecycle", "Limit for a lab to reach STOPPED (stop_lab) or DEFINED_ON_CORE (wipe_lab) per attempt." },
    { "session_lds_poll_ms", I, "15000", 50, 3600000, NULL, 0, "lifecycle", "Ready/running sessions poll LDS this often in case a CloudEvent was missed." },
    { "session_grading_poll_ms", I, "10000", 50, 3600000, NULL, 0, "lifecycle", "Grading sessions poll the grading engine this often in case a CloudEvent was missed." },
    { "session_grading_timeout_s", I, "1800", 1, 86400, NULL, 0, "lifecycle", "A session still without a grading result this long after grading was requested goes to stopping without a score." },
    { "session_archive_after_s", I, "300", 0, 31536000, NULL, 0, "lifecycle", "A stopped session is archived after this long." },
    { "lab_discovery_interval_ms", I, "60000", 100, 86400000, NULL, 0, "lifecycle", "Lab discovery period per running worker (also run when a worker becomes running)." },
    { "lab_action_timeout_s", I, "600", 1, 86400, NULL, 0, "lifecycle", "A lab record action (start/stop/wipe/delete) not finished by then is recorded as failed." },
    /* scheduler and autoscaler (host/ctl/scheduler.c, autoscaler.c; docs/scheduler.md) */
    { "lead_window_minutes", I, "35", 0, 10080, NULL, 0, "scheduler", "A pending session is considered for placement once its timeslot starts within this many minutes (a session with no start at once)." },
    { "scheduler_interval_ms", I, "1000", 20, 600000, NULL, 0, "scheduler", "Scheduler sweep period (it is also woken by every session/worker change)." },
    { "shortlist_size", I, "32", 1, 1000, NULL, 0, "scheduler", "Workers that passed the hard filters handed to placement.lua per session (the most utilised first)." },
    { "sched_backoff_max_s", I, "60", 1, 3600, NULL, 0, "scheduler", "Upper bound of the per-session retry backoff after a session found no worker (doubling from 1 s; reset by any fleet change)." },
    { "worker_boot_minutes", I, "25", 1, 1440, NULL, 0, "scheduler", "Scale-up looks this far ahead: sessions booked to start within it count as demand now." },
    { "autoscaler_interval_ms", I, "2000", 20, 600000, NULL, 0, "scheduler", "Autoscaler sweep period (it is also woken when the scheduler reports unplaced demand)." },
    { "max_workers_per_region", I, "50", 0, 100000, NULL, 0, "scheduler", "Hard cap of non-terminated workers per region (0 = unlimited)." },
    { "max_launches_per_cycle", I, "20", 0, 100000, NULL, 0, "scheduler", "Hard cap of workers created by one autoscaler cycle (0 = unlimited)." },
    { "scale_up_cooldown_s", I, "60", 0, 86400, NULL, 0, "scheduler", "After a scale-up, no further launch for this long (kept in Redis, survives failover)." },
    { "scale_down_cooldown_s", I, "300", 0, 86400, NULL, 0, "scheduler", "After a scale-down action, and after a worker started, no drain/stop for this long." },
    { "idle_minutes", I, "60", 0, 10080, NULL, 0, "scheduler", "An empty worker must have been idle (no CML activity, no session end) this long before scale-down." },
    { "min_warm_workers", I, "0", 0, 100000, NULL, 0, "scheduler", "Running workers scale-down always keeps (warm capacity)." },
    { "stopped_retention_minutes", I, "1440", 0, 525600, NULL, 0, "scheduler", "A stopped worker is terminated after this long (0 = keep stopped workers)." },
    { "drain_deadline_minutes", I, "0", 0, 10080, NULL, 0, "scheduler", "Deadline put on drains started by scale-down (0 = none; the worker is empty anyway)." },
    /* worker controller (host/ctl/workers*.c; docs/workers.md) */
    { "worker_poll_interval_ms", I, "5000", 50, 600000, NULL, 0, "workers", "How often a worker in transition (provisioning, starting, stopping, terminating) is re-read from EC2 and CML." },
    { "discovery_interval_ms", I, "60000", 0, 86400000, NULL, 0, "workers", "Period of the discovery and orphan sweep over every known region (0 = only on POST /api/v1/workers/import and at leadership start)." },
    { "discovery_ami_name_pattern", S, NULL, 0, 0, NULL, 0, "workers", "Discovery also imports instances whose AMI name matches this glob (e.g. cml-2.9*); unset: only instances carrying LCM's tags." },
    { "metrics_interval_ms", I, "60000", 1000, 86400000, NULL, 0, "workers", "How often CloudWatch CPU, CML system stats, readiness and activity are read for each running worker." },
    { "worker_boot_timeout_s", I, "1800", 10, 86400, NULL, 0, "workers", "A worker still provisioning/starting (EC2 not running or CML not ready and licensed) after this long goes to failed, with the last error as reason." },
    { "worker_max_attempts", I, "8", 1, 1000, NULL, 0, "workers", "Consecutive retryable failures of a launch before the worker goes to failed (non-retryable errors fail at once)." },
    { "worker_backoff_base_ms", I, "1000", 10, 600000, NULL, 0, "workers", "First retry delay of a failed worker step (doubling per attempt, drawn from [d/2, d])." },
    { "worker_backoff_max_ms", I, "60000", 10, 3600000, NULL, 0, "workers", "Cap of the worker step retry delay." },
    { "worker_stop_drain_minutes", I, "0", 0, 10080, NULL, 0, "workers", "Deadline put on the drain that precedes a requested stop (POST /workers/{id}/stop) of a running worker; 0 = none: the worker stops once its sessions are gone." },
    { "worker_op_timeout_ms", I, "60000", 1000, 600000, NULL, 0, "workers", "Deadline of one cloud or runtime plugin call made by the worker controller." },
    /* policies */
    { "policy_mem_limit_mb", I, "16", 1, 1024, NULL, 0, "policy", "Memory cap of each policy's Lua VM." },
    { "policy_instr_budget", I, "20000000", 1000, 1000000000, NULL, 0, "policy", "VM instructions allowed per policy call." },
    { "policy_deadline_ms", I, "30", 1, 90, NULL, 0, "policy", "Wall-clock limit per policy call (kept under 100 ms so a policy never stalls the loop)." },
    { "policy_watch_interval_ms", I, "1000", 100, 60000, NULL, 0, "policy", "How often policy files are checked for changes (hot reload)." },
    /* http server */
    { "http_max_body_bytes", I, "1048576", 1024, 1073741824, NULL, 0, "http", "Largest request body accepted; larger gets 413 without being read." },
    { "http_max_header_bytes", I, "16384", 1024, 1048576, NULL, 0, "http", "Largest request header block accepted; larger is refused (431/400)." },
    { "http_timeout_s", I, "15", 1, 3600, NULL, 0, "http", "Read/write timeout per connection: an idle or half-sent request, or a client that stops reading its response, is cut off after this long." },
    { "http_max_connections", I, "10000", 16, 1000000, NULL, 0, "http", "File-descriptor budget lcmd asks the OS for (RLIMIT_NOFILE) so idle connections cannot starve it." },
    { "metrics_open", B, "true", 0, 0, NULL, 0, "http", "Serve /metrics without a token." },
    /* auth */
    { "admin_token", S, NULL, 0, 0, NULL, 1, "auth", "An admin bearer token (tests, demos, first set-up). When no token at all is configured, lcmd generates one at start, prints it once and keeps only its hash." },
    { "token", L, NULL, 0, 0, NULL, 1, "auth", "API token as `<role>:<subject>:<sha256-hex of the token>` (repeatable; env: ';'-separated). Roles: admin, operator, author, learner-service, viewer." },
    { "oidc_jwks_file", S, NULL, 0, 0, NULL, 0, "auth", "JWKS file with the identity provider's RSA keys; when set, RS256 JWT bearer tokens are accepted too." },
    { "oidc_issuer", S, NULL, 0, 0, NULL, 0, "auth", "Required `iss` of JWTs." },
    { "oidc_audience", S, "lcm", 0, 0, NULL, 0, "auth", "Required `aud` of JWTs." },
    { "oidc_role_claim", S, "lcm_role", 0, 0, NULL, 0, "auth", "JWT claim that holds the LCM role." },
    { "oidc_leeway_s", I, "30", 0, 600, NULL, 0, "auth", "Clock skew allowed on exp/nbf." },
    /* outbound http */
    { "httpc_timeout_ms", I, "10000", 100, 600000, NULL, 0, "httpc", "Default per-attempt timeout of outbound HTTP requests (plugins may ask for less or more)." },
    { "httpc_connect_timeout_ms", I, "3000", 50, 60000, NULL, 0, "httpc", "Default connect timeout of outbound HTTP requests." },
    /* events: SSE, CloudEvents in and out, feed trimming (host/net; docs/events.md) */
    { "sse_heartbeat_ms", I, "10000", 100, 300000, NULL, 0, "events", "Interval of the SSE heartbeat comment sent to every GET /api/v1/events client." },
    { "sse_max_clients", I, "1000", 1, 1000000, NULL, 0, "events", "Concurrent SSE clients served; more get 503." },
    { "sse_max_buffer_bytes", I, "1048576", 4096, 1073741824, NULL, 0, "events", "An SSE client with more unsent bytes than this (slow reader) is disconnected; it resumes with Last-Event-ID." },
    { "cloudevents_lds_prefix", S, "com.cisco.lds", 0, 0, NULL, 0, "events", "Type prefix of LDS CloudEvents (<prefix>.session.running[.vN], .paused, .user-finished, .ended)." },
    { "cloudevents_grading_prefix", S, "com.cisco.grading", 0, 0, NULL, 0, "events", "Type prefix of grading CloudEvents (<prefix>.completed[.vN], .failed)." },
    { "cloudevents_dedupe_ttl_s", I, "86400", 1, 31536000, NULL, 0, "events", "How long a received CloudEvent (source + id) is remembered to ignore duplicates." },
    { "cloudevents_max_batch", I, "100", 1, 10000, NULL, 0, "events", "Most events in one application/cloudevents-batch+json request (more: 413)." },
    { "cloudevents_sinks", L, NULL, 0, 0, NULL, 0, "events", "Webhook URLs that receive every session and worker change as a CloudEvent (repeatable; env: ';'-separated). None: no outbound delivery." },
    { "cloudevents_sink_token", S, NULL, 0, 0, NULL, 1, "events", "Bearer token sent to the sinks (optional)." },
    { "cloudevents_source", S, "urn:lcm", 0, 0, NULL, 0, "events", "CloudEvent source of outbound events (receivers de-duplicate by source + id)." },
    { "cloudevents_type_prefix", S, "io.lablet.lcm", 0, 0, NULL, 0, "events", "Outbound CloudEvent type is <prefix>.<kind>.<event>.v1." },
    { "outbox_exclude_types", S, "worker.metrics,session.cloudevent_received", 0, 0, NULL, 0, "events", "Event types not delivered to sinks (comma-separated)." },
    { "outbox_batch", I, "100", 1, 10000, NULL, 0, "events", "Feed entries read from the consumer group per XREADGROUP." },
    { "outbox_concurrency", I, "32", 1, 10000, NULL, 0, "events", "Aggregates delivered in parallel (each aggregate's events go one at a time, in order)." },
    { "outbox_max_attempts", I, "10", 1, 100000, NULL, 0, "events", "Attempts per event before it is dead-lettered (lcm:outbox:dead, lcm_outbox_dead_letters_total)." },
    { "outbox_backoff_ms", I, "500", 1, 600000, NULL, 0, "events", "First retry delay of a failed delivery (doubling, jittered)." },
    { "outbox_backoff_max_ms", I, "60000", 1, 3600000, NULL, 0, "events", "Upper bound of the delivery retry delay." },
    { "outbox_timeout_ms", I, "5000", 100, 600000, NULL, 0, "events", "Timeout of one delivery POST." },
    { "outbox_lease_ms", I, "15000", 300, 600000, NULL, 0, "events", "TTL of the deliverer lease lcm:outbox:lease (one replica delivers); renewed every third of it." },
    { "outbox_claim_idle_ms", I, "10000", 0, 3600000, NULL, 0, "events", "Entries pending at another (dead) consumer this long are taken over with XAUTOCLAIM; keep it below outbox_lease_ms." },
    { "outbox_poll_ms", I, "1000", 10, 60000, NULL, 0, "events", "Safety poll of the consumer group (new events also wake the deliverer at once)." },
    { "outbox_consumer", S, NULL, 0, 0, NULL, 0, "events", "Consumer name of this replica in the lcm-outbox group (default hostname-pid)." },
    { "feed_trim_interval_ms", I, "10000", 100, 3600000, NULL, 0, "events", "How often the deliverer trims lcm:feed (XTRIM MINID, never past an undelivered entry)." },
    { "feed_retention_s", I, "604800", 1, 315360000, NULL, 0, "events", "lcm:feed keeps at least this much history (SSE resume); older, delivered entries are trimmed." },
};
const size_t lcm_cfg_nkeys = sizeof(lcm_cfg_keys) / sizeof(lcm_cfg_keys[0]);

#undef S
#undef I
#undef B
#undef E
#undef A
#undef L

struct value {
    char *text;            /* NULL = unset */
    char **items;          /* LCM_CFG_LIST */
    size_t nitems;
    const char *origin;
};

struct lcm_config {
    struct value v[sizeof(lcm_cfg_keys) / sizeof(lcm_cfg_keys[0])];
};

static int key_index(const char *name)
{
    for (size_t i = 0; i < lcm_cfg_nkeys; i++)
        if (strcmp(lcm_cfg_keys[i].name, name) == 0)
            return (int)i;
    return -1;
}

static int must_index(const char *name)
{
    int i = key_index(name);
    if (i < 0) {
        fprintf(stderr, "lcm_config: unknown key '%s' requested (programming error)\n", name);
        abort();
    }
    return i;
}

static int parse_bool(const char *s, int *out)
{
    static const char *const t[] = { "1", "true", "yes", "on" }, *const f[] = { "0", "false", "no", "off" };
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, t[i]) == 0) { *out = 1; return 0; }
        if (strcasecmp(s, f[i]) == 0) { *out = 0; return 0; }
    }
    return -1;
}

static int validate(const struct lcm_cfg_key *k, const char *val, char *err, size_t errlen)
{
    switch (k->type) {
    case LCM_CFG_STRING:
    case LCM_CFG_LIST:
        if (!*val) {
            snprintf(err, errlen, "%s: empty value", k->name);
            return -1;
        }
        return 0;
    case LCM_CFG_INT: {
        char *end;
        errno = 0;
        long long n = strtoll(val, &end, 10);
        if (errno || end == val || *end) {
            snprintf(err, errlen, "%s: '%s' is not an integer", k->name, val);
            return -1;
        }
        if (n < k->min || n > k->max) {
            snprintf(err, errlen, "%s: %lld is out of range [%lld, %lld]", k->name, n, k->min, k->max);
            return -1;
        }
        return 0;
    }
    case LCM_CFG_BOOL: {
        int b;
        if (parse_bool(val, &b) < 0) {
            snprintf(err, errlen, "%s: '%s' is not a boolean (true/false)", k->name, val);
            return -1;
        }
        return 0;
    }
    case LCM_CFG_ENUM: {
        size_t n = strlen(val);
        for (const char *p = k->choices; p && *p;) {
            const char *bar = strchr(p, '|');
            size_t l = bar ? (size_t)(bar - p) : strlen(p);
            if (l == n && strncmp(p, val, n) == 0)
                return 0;
            p = bar ? bar + 1 : NULL;
        }
        snprintf(err, errlen, "%s: '%s' is not one of %s", k->name, val, k->choices);
        return -1;
    }
    case LCM_CFG_ADDR: {
        const char *colon = strrchr(val, ':');
        char *end;
        long port = colon ? strtol(colon + 1, &end, 10) : -1;
        if (!colon || colon == val || !colon[1] || *end || port < 0 || port > 65535) {
            snprintf(err, errlen, "%s: '%s' is not host:port", k->name, val);
            return -1;
        }
        return 0;
    }
    }
    return -1;
}

static void clear_value(struct value *v)
{
    free(v->text);
    for (size_t i = 0; i < v->nitems; i++)
        free(v->items[i]);
    free(v->items);
    memset(v, 0, sizeof(*v));
}

static int set_value(struct lcm_config *c, int idx, const char *val, const char *origin, int append,
                     char *err, size_t errlen)
{
    const struct lcm_cfg_key *k = &lcm_cfg_keys[idx];
    struct value *v = &c->v[idx];
    if (k->type == LCM_CFG_LIST) {
        if (!append || strcmp(v->origin ? v->origin : "", origin) != 0) {
            clear_value(v);
        }
        /* env form: ';'-separated */
        char *copy = strdup(val);
        if (!copy)
            goto oom;
        char *save = NULL;
        for (char *tok = strtok_r(copy, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
            while (isspace((unsigned char)*tok))
                tok++;
            if (!*tok)
                continue;
            char **ni = realloc(v->items, (v->nitems + 1) * sizeof(*ni));
            if (!ni) {
                free(copy);
                goto oom;
            }
            v->items = ni;
            if (!(v->items[v->nitems] = strdup(tok))) {
                free(copy);
                goto oom;
            }
            v->nitems++;
        }
        free(copy);
        v->origin = origin;
        return 0;
    }
    if (validate(k, val, err, errlen) < 0)
        return -1;
    char *t = strdup(val);
    if (!t)
        goto oom;
    free(v->text);
    v->text = t;
    v->origin = origin;
    return 0;
oom:
    snprintf(err, errlen, "%s: out of memory", k->name);
    return -1;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = 0;
    return s;
}

static int load_file(struct lcm_config *c, const char *file, char *err, size_t errlen)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", file, strerror(errno));
        return -1;
    }
    char line[8192];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errlen, "%s:%d: line too long", file, lineno);
            rc = -1;
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%d: expected 'key = value'", file, lineno);
            rc = -1;
            break;
        }
        *eq = 0;
        char *key = trim(s), *val = trim(eq + 1);
        size_t vl = strlen(val);
        if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
            val[vl - 1] = 0;
            val++;
        }
        int idx = key_index(key);
        if (idx < 0) {
            snprintf(err, errlen, "%s:%d: unknown key '%s'", file, lineno, key);
            rc = -1;
            break;
        }
        char e2[256];
        if (set_value(c, idx, val, "file", 1, e2, sizeof(e2)) < 0) {
            snprintf(err, errlen, "%s:%d: %s", file, lineno, e2);
            rc = -1;
            break;
        }
    }
    fclose(f);
    return rc;
}

static void env_name(const char *key, char *out, size_t cap)
{
    size_t o = (size_t)snprintf(out, cap, "LCM_");
    for (const char *p = key; *p && o + 1 < cap; p++)
        out[o++] = (char)toupper((unsigned char)*p);
    out[o] = 0;
}

struct lcm_config *lcm_config_load(const char *file, char *const *envp, char *err, size_t errlen)
{
    struct lcm_config *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < lcm_cfg_nkeys; i++) {
        if (lcm_cfg_keys[i].def && set_value(c, (int)i, lcm_cfg_keys[i].def, "default", 0, err, errlen) < 0)
            goto fail;
    }
    if (file && load_file(c, file, err, errlen) < 0)
        goto fail;
    for (char *const *e = envp; e && *e; e++) {
        if (strncmp(*e, "LCM_", 4) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        for (size_t i = 0; i < lcm_cfg_nkeys; i++) {
            char name[128];
            env_name(lcm_cfg_keys[i].name, name, sizeof(name));
            size_t nl = strlen(name);
            if ((size_t)(eq - *e) == nl && strncmp(*e, name, nl) == 0) {
                char e2[256];
                if (set_value(c, (int)i, eq + 1, "env", 0, e2, sizeof(e2)) < 0) {
                    snprintf(err, errlen, "environment %s: %s", name, e2);
                    goto fail;
                }
            }
        }
    }
    return c;
fail:
    lcm_config_free(c);
    return NULL;
}

void lcm_config_free(struct lcm_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < lcm_cfg_nkeys; i++)
        clear_value(&c->v[i]);
    free(c);
}

const char *lcm_config_str(const struct lcm_config *c, const char *name)
{
    return c->v[must_index(name)].text;
}

long long lcm_config_int(const struct lcm_config *c, const char *name)
{
    const char *t = c->v[must_index(name)].text;
    return t ? strtoll(t, NULL, 10) : 0;
}

int lcm_config_bool(const struct lcm_config *c, const char *name)
{
    const char *t = c->v[must_index(name)].text;
    int b = 0;
    if (t)
        parse_bool(t, &b);
    return b;
}

size_t lcm_config_list(const struct lcm_config *c, const char *name, const char *const **items)
{
    const struct value *v = &c->v[must_index(name)];
    *items = (const char *const *)v->items;
    return v->nitems;
}

const char *lcm_config_origin(const struct lcm_config *c, const char *name)
{
    const char *o = c->v[must_index(name)].origin;
    return o ? o : "default";
}

int lcm_config_set(struct lcm_config *c, const char *name, const char *value, char *err,
                   size_t errlen)
{
    int i = key_index(name);
    if (i < 0) {
        snprintf(err, errlen, "unknown key '%s'", name);
        return -1;
    }
    return set_value(c, i, value, "set", 0, err, errlen);
}

void lcm_config_dump(const struct lcm_config *c, FILE *out)
{
    for (size_t i = 0; i < lcm_cfg_nkeys; i++) {
        const struct lcm_cfg_key *k = &lcm_cfg_keys[i];
        const struct value *v = &c->v[i];
        if (k->type == LCM_CFG_LIST) {
            for (size_t j = 0; j < v->nitems; j++)
                fprintf(out, "%s = %s\n", k->name, k->secret ? "<hidden>" : v->items[j]);
            if (!v->nitems)
                fprintf(out, "# %s (unset)\n", k->name);
        } else if (!v->text) {
            fprintf(out, "# %s (unset)\n", k->name);
        } else {
            fprintf(out, "%s = %s   # %s\n", k->name, k->secret ? "<hidden>" : v->text,
                    v->origin ? v->origin : "default");
        }
    }
}

void lcm_config_write_docs(FILE *out)
{
    static const char *const tn[] = { "string", "integer", "boolean", "enum", "host:port", "list" };
    fprintf(out, "# lcmd configuration reference\n\n"
                 "Generated by `lcmd --config-docs` from the key table in `host/core/config.c`; a test\n"
                 "fails when this file and the table differ.\n\n"
                 "Each key may be set in the config file (`key = value`, `#` comments, `--config FILE`)\n"
                 "and overridden by the environment variable `LCM_<KEY>` (upper case). Secrets are\n"
                 "never printed by `lcmd --check-config`.\n");
    const char *section = NULL;
    char env[128];
    for (size_t i = 0; i < lcm_cfg_nkeys; i++) {
        const struct lcm_cfg_key *k = &lcm_cfg_keys[i];
        if (!section || strcmp(section, k->section) != 0) {
            section = k->section;
            fprintf(out, "\n## %s\n\n| key | env | type | default | description |\n|---|---|---|---|---|\n", section);
        }
        env_name(k->name, env, sizeof(env));
        char type[160];
        if (k->type == LCM_CFG_INT)
            snprintf(type, sizeof(type), "integer %lld..%lld", k->min, k->max);
        else if (k->type == LCM_CFG_ENUM) {
            size_t o = 0;
            for (const char *p = k->choices; *p && o + 4 < sizeof(type); p++) {
                if (*p == '|') {
                    memcpy(type + o, ", ", 2);
                    o += 2;
                } else {
                    type[o++] = *p;
                }
            }
            type[o] = 0;
        }
        else
            snprintf(type, sizeof(type), "%s", tn[k->type]);
        const char *def = k->def ? k->def : "(unset)";
        if (k->def && strcmp(k->name, "plugin_dir") == 0)
            def = "build/plugins";
        else if (k->def && strcmp(k->name, "policy_dir") == 0)
            def = "policies/";
        else if (k->def && strcmp(k->name, "ui_dir") == 0)
            def = "ui/";
        fprintf(out, "| `%s` | `%s` | %s | `%s` | %s |\n", k->name, env, type, def, k->desc);
    }
}
