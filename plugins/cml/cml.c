/* The cml plugin: runtime provider for CML 2.9. Each SPI op becomes one or a few calls to the
 * worker's CML API (see docs/cml.md for the mapping); requests, tokens and errors are handled
 * by cml_client.c, response parsing by cml_parse.c, endpoint templates by cml_endpoint.c. */
#include <lcm/spi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "cml_client.h"
#include "cml_endpoint.h"
#include "cml_parse.h"
#include "plugkit.h"

#define CML_JSON "application/json"
#define CML_YAML "application/x-yaml"

static const struct lcm_plugin_config_key cml_config[] = {
    { "endpoint_template", LCM_PCFG_STRING, NULL,
      "CML base URL template with {instance_id}, {worker_id}, {private_ip}; unset = the call's "
      "endpoint, or https://{private_ip}. The environment variable LCM_CML_ENDPOINT wins.", 0 },
    { "username", LCM_PCFG_STRING, NULL,
      "CML user (the environment variable LCM_CML_USERNAME wins)", 0 },
    { "cml_password", LCM_PCFG_SECRET, NULL,
      "CML password (the environment variable LCM_CML_PASSWORD wins)", 0 },
    { "verify_tls", LCM_PCFG_BOOL, "true",
      "verify the CML TLS certificate (CML ships self-signed ones); LCM_CML_VERIFY_TLS wins", 0 },
    { "ca_file", LCM_PCFG_STRING, NULL, "CA bundle to verify CML certificates with", 0 },
    { "timeout_ms", LCM_PCFG_INT, "30000", "per-attempt timeout of a CML call", 0 },
    { "import_timeout_ms", LCM_PCFG_INT, "180000", "timeout of POST /import (not retried)", 0 },
    { "connect_timeout_ms", LCM_PCFG_INT, "5000", "TCP/TLS connect timeout", 0 },
    { "max_retries", LCM_PCFG_INT, "2",
      "extra attempts on transport errors, 429 and 5xx for idempotent calls", 0 },
    { "health_in_readiness", LCM_PCFG_BOOL, "false",
      "system_info also asks GET /system_health (needs credentials) and reports ready only "
      "when CML says the system is valid", 0 },
};

struct cml_instance {
    struct cml_plugin p;
    long import_timeout_ms;
};

static int env_bool(const char *name, int dflt)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return dflt;
    if (!strcasecmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no") ||
        !strcasecmp(v, "off"))
        return 0;
    return 1;
}

static int cml_create(const struct lcm_host_services *hs, struct lcm_host *h, void **self,
                      struct lcm_error *err)
{
    if (!hs || hs->size < LCM_SPI_SIZE_UPTO(struct lcm_host_services, config_bool)) {
        lcm_error_set(err, LCM_E_INVAL, 0, 0, "cml: host services table too old");
        return LCM_E_INVAL;
    }
    struct cml_instance *in = calloc(1, sizeof *in);
    if (!in) {
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return LCM_E_NOMEM;
    }
    struct cml_plugin *p = &in->p;
    p->hs = hs;
    p->h = h;
    const char *tmpl = getenv("LCM_CML_ENDPOINT");
    if (!tmpl || !*tmpl)
        tmpl = hs->config_str(h, "endpoint_template");
    const char *ca = hs->config_str(h, "ca_file");
    p->cfg.endpoint_template = tmpl && *tmpl ? strdup(tmpl) : NULL;
    p->cfg.ca_file = ca && *ca ? strdup(ca) : NULL;
    if ((tmpl && *tmpl && !p->cfg.endpoint_template) || (ca && *ca && !p->cfg.ca_file)) {
        free(p->cfg.endpoint_template);
        free(in);
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return LCM_E_NOMEM;
    }
    if (p->cfg.endpoint_template) {
        /* Check the template now (with dummy values) so a typo refuses the plugin at load. */
        char out[512], why[200];
        if (cml_endpoint_expand(p->cfg.endpoint_template, "i-0", "w-0", "192.0.2.1", out,
                                sizeof out, why, sizeof why) != 0) {
            char m[256];
            snprintf(m, sizeof m, "cml: %s", why);
            lcm_error_set(err, LCM_E_CONFIG, 0, 0, m);
            free(p->cfg.endpoint_template);
            free(p->cfg.ca_file);
            free(in);
            return LCM_E_CONFIG;
        }
    }
    p->cfg.verify_tls = env_bool("LCM_CML_VERIFY_TLS", lcm_pk_cfg_bool(hs, h, "verify_tls", 1));
    p->cfg.health_in_readiness = lcm_pk_cfg_bool(hs, h, "health_in_readiness", 0);
    p->cfg.timeout_ms = lcm_pk_cfg_long(hs, h, "timeout_ms", 30000, 100, 3600000);
    p->cfg.connect_timeout_ms = lcm_pk_cfg_long(hs, h, "connect_timeout_ms", 5000, 50, 600000);
    p->cfg.max_retries = (int)lcm_pk_cfg_long(hs, h, "max_retries", 2, 0, 10);
    in->import_timeout_ms = lcm_pk_cfg_long(hs, h, "import_timeout_ms", 180000, 100, 3600000);
    hs->log(h, LCM_SPI_INFO, "msg=\"cml plugin ready\" endpoint_template=\"%s\" verify_tls=%d",
            p->cfg.endpoint_template ? p->cfg.endpoint_template : "(call endpoint or "
            CML_DEFAULT_TEMPLATE ")", p->cfg.verify_tls);
    *self = in;
    return 0;
}

static void cml_stop(void *self) { cml_client_stop(&((struct cml_instance *)self)->p); }

static void cml_destroy(void *self)
{
    struct cml_instance *in = self;
    if (!in)
        return;
    cml_client_free(&in->p);
    free(in->p.cfg.endpoint_template);
    free(in->p.cfg.ca_file);
    free(in);
}

static void cml_cancel(void *self, uint64_t op_id)
{
    cml_client_cancel(&((struct cml_instance *)self)->p, op_id);
}

/* ---- helpers ---- */

static int ok2xx(const struct lcm_http_resp *r) { return r->status >= 200 && r->status < 300; }

/* Starts the op's first request, or discards it: the entry-point tail every op shares. */
static int start(struct cml_op *op, const char *method, const char *path, const char *body,
                 size_t len, const char *ctype, int auth, int idem, cml_step_fn step,
                 struct lcm_error *err)
{
    int rc = cml_op_request(op, method, path, body, len, ctype, auth, idem, step, err);
    if (rc != 0)
        cml_op_discard(op);
    return rc;
}

/* Next request from inside a step; fails the op when it cannot go out. */
static void next(struct cml_op *op, const char *method, const char *path, const char *body,
                 size_t len, const char *ctype, int auth, int idem, cml_step_fn step)
{
    struct lcm_error e;
    if (cml_op_request(op, method, path, body, len, ctype, auth, idem, step, &e) != 0)
        cml_op_finish(op, &e, NULL);
}

static void proto_fail(struct cml_op *op, int rc, int status, const char *why)
{
    cml_op_fail(op, rc == LCM_E_NOMEM ? LCM_E_NOMEM : LCM_E_PROTO, rc == LCM_E_NOMEM, status,
                "cml %s: %s %s: %s", op->name, op->method, op->path, why);
}

static int bad_args(struct lcm_error *err, const char *op, const char *what)
{
    char m[160];
    snprintf(m, sizeof m, "cml %s: %s", op, what);
    lcm_error_set(err, LCM_E_INVAL, 0, 0, m);
    return LCM_E_INVAL;
}

/* New op for a lab: checks and copies the lab id. */
static struct cml_op *lab_op(void *self, const struct lcm_call *call, const void *args,
                             const char *name, lcm_done_fn done, void *ud,
                             struct lcm_error *err)
{
    const struct lcm_rt_lab_args *a = args;
    if (!a || !cml_id_ok(a->lab_id)) {
        bad_args(err, name, "missing or invalid lab_id");
        return NULL;
    }
    struct cml_op *op = cml_op_new(self, call, name, done, ud, err);
    if (!op)
        return NULL;
    if (!(op->lab_id = strdup(a->lab_id))) {
        cml_op_discard(op);
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return NULL;
    }
    return op;
}

static int lab_path(char *dst, size_t cap, const struct cml_op *op, const char *suffix)
{
    return snprintf(dst, cap, "/labs/%s%s", op->lab_id, suffix ? suffix : "");
}

/* ---- system_info (+ optional system_health) ---- */

static void sysinfo_health_step(struct cml_op *op, const struct lcm_http_resp *r)
{
    if (!ok2xx(r)) {
        cml_op_fail_http(op, r, LCM_E_REMOTE);
        return;
    }
    int valid, licensed;
    char why[128];
    int rc = cml_parse_health(r->body, r->body_len, &valid, &licensed, why, sizeof why);
    if (rc) {
        proto_fail(op, rc, r->status, why);
        return;
    }
    op->sysinfo.ready = op->sysinfo.ready && valid;
    cml_op_finish(op, NULL, &op->sysinfo);
}

static void sysinfo_step(struct cml_op *op, const struct lcm_http_resp *r)
{
    if (!ok2xx(r)) {
        cml_op_fail_http(op, r, LCM_E_REMOTE);
        return;
    }
    char why[128];
    int rc = cml_parse_system_info(&op->arena, r->body, r->body_len, &op->sysinfo, why,
                                   sizeof why);
    if (rc) {
        proto_fail(op, rc, r->status, why);
        return;
    }
    if (op->p->cfg.health_in_readiness && op->sysinfo.ready) {
        next(op, "GET", "/system_health", NULL, 0, NULL, 1, 1, sysinfo_health_step);
        return;
    }
    cml_op_finish(op, NULL, &op->sysinfo);
}

static int cml_system_info(void *self, const struct lcm_call *call, const void *args,
                           lcm_done_fn done, void *ud, struct lcm_error *err)
{
    struct cml_op *op = cml_op_new(self, call, "system_info", done, ud, err);
    if (!op)
        return err->code;
    return start(op, "GET", "/system_information", NULL, 0, NULL, 0, 1, sysinfo_step, err);
}

/* ---- licensing ---- */

static void licence_step(struct cml_op *op, const struct lcm_http_resp *r)
{
    if (!ok2xx(r)) {
        cml_op_fail_http(op, r, LCM_E_REMOTE);
        return;
    }
    struct lcm_rt_licence l;
    char why[128];
    int rc = cml_parse_licence(&op->arena, r->body, r->body_len, &l, why, sizeof why);
    if (rc) {
        proto_fail(op, rc, r->status, why);
        return;
    }
    cml_op_finish(op, NULL, &l);
}

static int cml_licence_get(void *self, const struct lcm_call *call, const void *args,
                           lcm_done_fn done, void *ud, struct lcm_error *err)
{
    struct cml_op *op = cml_op_new(self, call, "licence_get", done, ud, err);
    if (!op)
        return err->code;
    return start(op, "GET", "/licensing", NULL, 0, NULL, 1, 1, licence_step, err);
}

/* Steps for calls that answer 204/200 without a result we use. */
static void noresult_step(struct cml_op *op, const struct lcm_http_resp *r)
{
    if (!ok2xx(r)) {
        cml_op_fail_http(op, r, LCM_E_REMOTE);
        return;
    }
    cml_op_finish(op, NULL, NULL);
}

/* Lab state changes: a 400 means the lab's state (or licence) does not allow it. */
static void statechange_step(struct cml_op *op, const struct lcm_http_resp *r)
{
    if (!ok2xx(r)) {
        cml_op_fail_http(op, r, LCM_E_CONFLICT);
        return;
    }
    cml_op_finish(op, NULL, NULL);
}

static int cml_licence_register(void *self, const struct lcm_call *call, const void *args,
                                lcm_done_fn done, void *ud, struct lcm_error *err)
{
    const struct lcm_rt_licence_register_args *a = args;
    if (!a || !a->token || !*a->token)
        return bad_args(err, "licence_register", "missing token");
    struct cml_op *op = cml_op_new(self, call, "licence_register", done, ud, err);
    if (!op)
        return err->code;
    cJSON *o = cJSON_CreateObject();
    char *body = NULL;
    if (o && cJSON_AddStringToObject(o, "token", a->token) &&
        cJSON_AddBoolToObject(o, "reregister", a->reregister != 0))
        body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!body) {
        cml_op_discard(op);
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return LCM_E_NOMEM;
    }
    /* 400 = CML refused the token (final); 409 = registration not possible now (conflict). */
    int rc = start(op, "POST", "/licensing/registration", body, strlen(body), CML_JSON, 1, 0,
                   noresult_step, err);
    memset(body, 0, strlen(body));       /* the token is a secret */
    free(body);
    return rc;
}

/* ---- labs ---- */

static void import_step(struct cml_op *op, const struct lcm_http_resp *r)
{
    if (!ok2xx(r)) {
        cml_op_fail_http(op, r, LCM_E_REMOTE);
        return;
    }
    struct lcm_rt_imported im;
    char why[128];
    int rc = cml_parse_imported(&op->arena, r->body, r->body_len, &im, why, sizeof why);
    if (rc) {
        proto_fail(op, rc, r->status, why);
        return;
    }
    op->p->hs->log(op->p->h, LCM_SPI_INFO, "msg=\"lab imported\" endpoint=%s lab=%s corr=%s",
                   cml_op_base(op), im.lab_id, op->corr[0] ? op->corr : "-");
    cml_op_finish(op, NULL, &im);
}

static void urlenc(char *dst, size_t cap, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; s && *s && o + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            dst[o++] = (char)c;
        } else {
            dst[o++] = '%';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        }
    }
    dst[o] = '\0';
}

static int cml_lab_import(void *self, const struct lcm_call *call, const void *args,
                          lcm_done_fn done, void *ud, struct lcm_error *err)
{
    const struct lcm_rt_lab_import_args *a = args;
    struct cml_instance *in = self;
    if (!a || !a->topology_yaml)
        return bad_args(err, "lab_import", "missing topology");
    size_t len = a->topology_len ? a->topology_len : strlen(a->topology_yaml);
    if (len == 0)
        return bad_args(err, "lab_import", "empty topology");
    if (a->title && (strlen(a->title) == 0 || strlen(a->title) > 64))
        return bad_args(err, "lab_import", "title must be 1-64 characters (CML limit)");
    struct cml_op *op = cml_op_new(self, call, "lab_import", done, ud, err);
    if (!op)
        return err->code;
    char path[256] = "/import", t[200];
    if (a->title) {
        urlenc(t, sizeof t, a->title);
        snprintf(path, sizeof path, "/import?title=%s", t);
    }
    /* Import is not idempotent (a retry could create a second lab): one attempt, and a longer
     * timeout since CML answers only when the lab is created. */
    op->timeout_ms = in->import_timeout_ms;
    return start(op, "POST", path, a->topology_yaml, len, CML_YAML, 1, 0, import_step, err);
}

static void lab_step(struct cml_op *op, const struct lcm_http_resp *r)
{
    if (!ok2xx(r)) {
        cml_op_fail_http(op, r, LCM_E_REMOTE);
        return;
    }
    struct lcm_rt_lab lab;
    char why[128];
    int rc = cml_parse_lab(&op->arena, r->body, r->body_len, &lab, why, sizeof why);
    if (rc) {
        proto_fail(op, rc, r->status, why);
        return;
    }
    if (!lab.id)
        lab.id = op->lab_id;
    cml_op_finish(op, NULL, &lab);
}

static int cml_lab_get(void *self, const struct lcm_call *call, const void *args,
                       lcm_done_fn done, void *ud, struct lcm_error *err)
{
    struct cml_op *op = lab_op(self, call, args, "lab_get", done, ud, err);
    if (!op)
        return err->code;
    char path[128];
    lab_path(path, sizeof path, op, NULL);
    return start(op, "GET", path, NULL, 0, NULL, 1, 1, lab_step, err);
}

static int lab_action(void *self, const struct lcm_call *call, const void *args,
                      const char *name, const char *method, const char *suffix,
                      lcm_done_fn done, void *ud, struct lcm_error *err)
{
    struct cml_op *op = lab_op(self, call, args, name, done, ud, err);
    if (!op)
        return err->code;
    char path[128];
    lab_path(path, sizeof path, op, suffix);
    return start(op, method, path, NULL, 0, NULL, 1, 1, statechange_step, err);
}

static int cml_lab_start(void *self, const struct lcm_call *call, const void *args,
                         lcm_done_fn done, void *ud, struct lcm_error *err)
{
    return lab_action(self, call, args, "lab_start", "PUT", "/start", done, ud, err);
}

static int cml_lab_stop(void *self, const struct lcm_call *call, const void *args,
                        lcm_done_fn done, void *ud, struct lcm_error *err)
{
    return lab_action(self, call, args, "lab_stop", "PUT", "/stop", done, ud, err);
}

static int cml_lab_wipe(void *self, const struct lcm_call *call, const void *args,
                        lcm_done_fn done, void *ud, struct lcm_error *err)
{
    return lab_action(self, call, args, "lab_wipe", "PUT", "/wipe", done, ud, err);
}

static int cml_lab_delete(void *self, const struct lcm_call *call, const void *args,
                          lcm_done_fn done, void *ud, struct lcm_error *err)
{
    return lab_action(self, call, args, "lab_delete", "DELETE", NULL, done, ud, err);
}

static void converged_step(struct cml_op *op, const struct lcm_http_resp *r)
{
    if (!ok2xx(r)) {
        cml_op_fail_http(op, r, LCM_E_REMOTE);
        return;
    }
    struct lcm_rt_converged c;
    char why[128];
    int rc = cml_parse_bool(r->body, r->body_len, &c.converged, why, sizeof why);
    if (rc) {
        proto_fail(op, rc, r->status, why);
        return;
    }
    cml_op_finish(op, NULL, &c);
}

static int cml_lab_converged(void *self, const struct lcm_call *call, const void *args,
                             lcm_done_fn done, void *ud, struct lcm_error *err)
{
    struct cml_op *op = lab_op(self, call, args, "lab_converged", done, ud, err);
    if (!op)
        return err->code;
    char path[128];
    lab_path(path, sizeof path, op, "/check_if_converged");
    return start(op, "GET", path, NULL, 0, NULL, 1, 1, converged_step, err);
}

static void nodes_step(struct cml_op *op, const struct lcm_http_resp *r)
{
    if (!ok2xx(r)) {
        cml_op_fail_http(op, r, LCM_E_REMOTE);
        return;
    }
    struct lcm_rt_nodes nodes;
    char why[128];
    int rc = cml_parse_nodes(&op->arena, r->body, r->body_len, &nodes, NULL, why, sizeof why);
    if (rc) {
        proto_fail(op, rc, r->status, why);
        return;
    }
    cml_op_finish(op, NULL, &nodes);
}

static int cml_nodes_list(void *self, const struct lcm_call *call, const void *args,
                          lcm_done_fn done, void *ud, struct lcm_error *err)
{
    struct cml_op *op = lab_op(self, call, args, "nodes_list", done, ud, err);
    if (!op)
        return err->code;
    char path[160];
    lab_path(path, sizeof path, op, "/nodes?data=true&exclude_configurations=true");
    return start(op, "GET", path, NULL, 0, NULL, 1, 1, nodes_step, err);
}

static int cml_node_set_tags(void *self, const struct lcm_call *call, const void *args,
                             lcm_done_fn done, void *ud, struct lcm_error *err)
{
    const struct lcm_rt_node_tags_args *a = args;
    if (!a || !cml_id_ok(a->lab_id) || !cml_id_ok(a->node_id))
        return bad_args(err, "node_set_tags", "missing or invalid lab_id/node_id");
    if (a->tags.n > CML_MAX_TAGS || (a->tags.n && !a->tags.v))
        return bad_args(err, "node_set_tags", "bad tag list");
    for (size_t i = 0; i < a->tags.n; i++)
        if (!a->tags.v[i] || strlen(a->tags.v[i]) > 64)
            return bad_args(err, "node_set_tags", "a tag is missing or longer than 64");
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "tags") : NULL;
    int ok = arr != NULL;
    for (size_t i = 0; ok && i < a->tags.n; i++) {
        cJSON *s = cJSON_CreateString(a->tags.v[i]);
        ok = s && cJSON_AddItemToArray(arr, s);
    }
    char *body = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!body) {
        lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
        return LCM_E_NOMEM;
    }
    struct cml_op *op = cml_op_new(self, call, "node_set_tags", done, ud, err);
    if (!op) {
        free(body);
        return err->code;
    }
    char path[200];
    snprintf(path, sizeof path, "/labs/%s/nodes/%s", a->lab_id, a->node_id);
    /* A full replacement of the tag list, so repeating it is harmless: idempotent. */
    int rc = start(op, "PATCH", path, body, strlen(body), CML_JSON, 1, 1, noresult_step, err);
    free(body);
    return rc;
}

/* ---- extract_configs: list nodes → PUT extract per node → list nodes with configs ---- */

static void extract_next(struct cml_op *op);

static void extract_collect_step(struct cml_op *op, const struct lcm_http_resp *r)
{
    if (!ok2xx(r)) {
        cml_op_fail_http(op, r, LCM_E_REMOTE);
        return;
    }
    struct lcm_rt_nodes nodes;
    const char **cfgs = NULL;
    char why[128];
    int rc = cml_parse_nodes(&op->arena, r->body, r->body_len, &nodes, &cfgs, why, sizeof why);
    if (rc) {
        proto_fail(op, rc, r->status, why);
        return;
    }
    struct lcm_rt_config *v = op->ntargets ? cml_arena_alloc(&op->arena,
                                                             op->ntargets * sizeof *v) : NULL;
    if (op->ntargets && !v) {
        cml_op_fail(op, LCM_E_NOMEM, 1, 0, "out of memory");
        return;
    }
    size_t k = 0;
    for (size_t t = 0; t < op->ntargets; t++) {
        if (!op->targets[t])
            continue;                    /* skipped: CML could not extract this node */
        const char *label = NULL, *cfg = op->extracted[t];
        for (size_t i = 0; i < nodes.n; i++)
            if (strcmp(nodes.v[i].id, op->targets[t]) == 0) {
                label = nodes.v[i].label;
                if (!cfg)
                    cfg = cfgs[i];
                break;
            }
        v[k].node_id = op->targets[t];
        v[k].label = label;
        v[k].config = cfg ? cfg : "";
        v[k].config_len = cfg ? strlen(cfg) : 0;
        k++;
    }
    struct lcm_rt_configs res = { .v = k ? v : NULL, .n = k };
    cml_op_finish(op, NULL, &res);
}

static void extract_put_step(struct cml_op *op, const struct lcm_http_resp *r)
{
    if (!ok2xx(r)) {
        /* Asked for every node: a node CML cannot extract (unmanaged switch, external
         * connector, …) is left out instead of failing the collection. */
        if (op->all_nodes && r->status == 400) {
            op->targets[op->idx] = NULL;
            op->idx++;
            extract_next(op);
            return;
        }
        cml_op_fail_http(op, r, LCM_E_CONFLICT);
        return;
    }
    op->extracted[op->idx] = cml_parse_extracted(&op->arena, r->body, r->body_len);
    op->idx++;
    extract_next(op);
}

static void extract_next(struct cml_op *op)
{
    char path[240];
    if (op->idx < op->ntargets) {
        snprintf(path, sizeof path, "/labs/%s/nodes/%s/extract_configuration", op->lab_id,
                 op->targets[op->idx]);
        next(op, "PUT", path, NULL, 0, NULL, 1, 1, extract_put_step);
        return;
    }
    lab_path(path, sizeof path, op, "/nodes?data=true");
    next(op, "GET", path, NULL, 0, NULL, 1, 1, extract_collect_step);
}

static int running_state(const char *s)
{
    return s && (strcmp(s, "BOOTED") == 0 || strcmp(s, "STARTED") == 0);
}

static void extract_list_step(struct cml_op *op, const struct lcm_http_resp *r)
{
    if (!ok2xx(r)) {
        cml_op_fail_http(op, r, LCM_E_REMOTE);
        return;
    }
    char why[128];
    int rc = cml_parse_nodes(&op->arena, r->body, r->body_len, &op->nodes, NULL, why,
                             sizeof why);
    if (rc) {
        proto_fail(op, rc, r->status, why);
        return;
    }
    size_t cap = op->all_nodes ? op->nodes.n : op->nstrs;
    op->targets = cap ? cml_arena_alloc(&op->arena, cap * sizeof *op->targets) : NULL;
    op->extracted = cap ? cml_arena_alloc(&op->arena, cap * sizeof *op->extracted) : NULL;
    if (cap && (!op->targets || !op->extracted)) {
        cml_op_fail(op, LCM_E_NOMEM, 1, 0, "out of memory");
        return;
    }
    if (op->all_nodes) {
        for (size_t i = 0; i < op->nodes.n; i++)
            if (running_state(op->nodes.v[i].state) && cml_id_ok(op->nodes.v[i].id))
                op->targets[op->ntargets++] = op->nodes.v[i].id;
    } else {
        for (size_t j = 0; j < op->nstrs; j++) {
            size_t i;
            for (i = 0; i < op->nodes.n; i++)
                if (strcmp(op->nodes.v[i].id, op->strs[j]) == 0)
                    break;
            if (i == op->nodes.n) {
                cml_op_fail(op, LCM_E_NOTFOUND, 0, 0, "cml extract_configs: node %s is not in "
                            "lab %s", op->strs[j], op->lab_id);
                return;
            }
            op->targets[op->ntargets++] = op->strs[j];
        }
    }
    op->idx = 0;
    extract_next(op);
}

static int cml_extract_configs(void *self, const struct lcm_call *call, const void *args,
                               lcm_done_fn done, void *ud, struct lcm_error *err)
{
    const struct lcm_rt_extract_args *a = args;
    if (!a || !cml_id_ok(a->lab_id))
        return bad_args(err, "extract_configs", "missing or invalid lab_id");
    if (a->node_ids.n > CML_MAX_NODES || (a->node_ids.n && !a->node_ids.v))
        return bad_args(err, "extract_configs", "bad node id list");
    for (size_t i = 0; i < a->node_ids.n; i++)
        if (!cml_id_ok(a->node_ids.v[i]))
            return bad_args(err, "extract_configs", "invalid node id");
    struct lcm_rt_lab_args la = { .lab_id = a->lab_id };
    struct cml_op *op = lab_op(self, call, &la, "extract_configs", done, ud, err);
    if (!op)
        return err->code;
    op->all_nodes = a->node_ids.n == 0;
    if (a->node_ids.n) {
        op->strs = calloc(a->node_ids.n, sizeof *op->strs);
        for (size_t i = 0; op->strs && i < a->node_ids.n; i++, op->nstrs++)
            if (!(op->strs[i] = strdup(a->node_ids.v[i])))
                break;
        if (!op->strs || op->nstrs != a->node_ids.n) {
            cml_op_discard(op);
            lcm_error_set(err, LCM_E_NOMEM, 1, 0, "out of memory");
            return LCM_E_NOMEM;
        }
    }
    char path[160];
    lab_path(path, sizeof path, op, "/nodes?data=true&exclude_configurations=true");
    return start(op, "GET", path, NULL, 0, NULL, 1, 1, extract_list_step, err);
}

/* ---- 1.1 observability ---- */

static void stats_step(struct cml_op *op, const struct lcm_http_resp *r)
{
    if (!ok2xx(r)) {
        cml_op_fail_http(op, r, LCM_E_REMOTE);
        return;
    }
    struct lcm_rt_system_stats s;
    char why[128];
    int rc = cml_parse_stats(r->body, r->body_len, &s, why, sizeof why);
    if (rc) {
        proto_fail(op, rc, r->status, why);
        return;
    }
    cml_op_finish(op, NULL, &s);
}

static int cml_system_stats(void *self, const struct lcm_call *call, const void *args,
                            lcm_done_fn done, void *ud, struct lcm_error *err)
{
    struct cml_op *op = cml_op_new(self, call, "system_stats", done, ud, err);
    if (!op)
        return err->code;
    return start(op, "GET", "/system_stats", NULL, 0, NULL, 1, 1, stats_step, err);
}

static void activity_step(struct cml_op *op, const struct lcm_http_resp *r)
{
    if (!ok2xx(r)) {
        cml_op_fail_http(op, r, LCM_E_REMOTE);
        return;
    }
    struct lcm_rt_activity act;
    char why[128];
    int rc = cml_parse_events(&op->arena, r->body, r->body_len, op->since_ms, &act, why,
                              sizeof why);
    if (rc) {
        proto_fail(op, rc, r->status, why);
        return;
    }
    cml_op_finish(op, NULL, &act);
}

static int cml_activity(void *self, const struct lcm_call *call, const void *args,
                        lcm_done_fn done, void *ud, struct lcm_error *err)
{
    const struct lcm_rt_activity_args *a = args;
    struct cml_op *op = cml_op_new(self, call, "activity", done, ud, err);
    if (!op)
        return err->code;
    op->since_ms = a && a->since_ms > 0 ? a->since_ms : 0;
    return start(op, "GET", "/telemetry/events", NULL, 0, NULL, 1, 1, activity_step, err);
}

static void labs_step(struct cml_op *op, const struct lcm_http_resp *r)
{
    if (!ok2xx(r)) {
        cml_op_fail_http(op, r, LCM_E_REMOTE);
        return;
    }
    struct lcm_rt_lab_ids ids;
    char why[128];
    int rc = cml_parse_lab_ids(&op->arena, r->body, r->body_len, &ids, why, sizeof why);
    if (rc) {
        proto_fail(op, rc, r->status, why);
        return;
    }
    cml_op_finish(op, NULL, &ids);
}

static int cml_list_labs(void *self, const struct lcm_call *call, const void *args,
                         lcm_done_fn done, void *ud, struct lcm_error *err)
{
    struct cml_op *op = cml_op_new(self, call, "list_labs", done, ud, err);
    if (!op)
        return err->code;
    return start(op, "GET", "/labs?show_all=true", NULL, 0, NULL, 1, 1, labs_step, err);
}

/* ---- 1.2 node definitions ---- */

static void nodedefs_step(struct cml_op *op, const struct lcm_http_resp *r)
{
    if (!ok2xx(r)) {
        cml_op_fail_http(op, r, LCM_E_REMOTE);
        return;
    }
    struct lcm_rt_node_definitions nd;
    char why[128];
    int rc = cml_parse_node_definitions(&op->arena, r->body, r->body_len, &nd, why, sizeof why);
    if (rc) {
        proto_fail(op, rc, r->status, why);
        return;
    }
    cml_op_finish(op, NULL, &nd);
}

static int cml_node_definitions(void *self, const struct lcm_call *call, const void *args,
                                lcm_done_fn done, void *ud, struct lcm_error *err)
{
    struct cml_op *op = cml_op_new(self, call, "node_definitions", done, ud, err);
    if (!op)
        return err->code;
    return start(op, "GET", "/node_definitions", NULL, 0, NULL, 1, 1, nodedefs_step, err);
}

static const struct lcm_runtime_ops cml_ops = {
    .size = sizeof(struct lcm_runtime_ops),
    .system_info = cml_system_info,
    .licence_get = cml_licence_get,
    .licence_register = cml_licence_register,
    .lab_import = cml_lab_import,
    .lab_get = cml_lab_get,
    .lab_start = cml_lab_start,
    .lab_stop = cml_lab_stop,
    .lab_wipe = cml_lab_wipe,
    .lab_delete = cml_lab_delete,
    .lab_converged = cml_lab_converged,
    .nodes_list = cml_nodes_list,
    .node_set_tags = cml_node_set_tags,
    .extract_configs = cml_extract_configs,
    .system_stats = cml_system_stats,
    .activity = cml_activity,
    .list_labs = cml_list_labs,
    .node_definitions = cml_node_definitions,
};

LCM_PLUGIN_DESCRIPTOR = {
    LCM_PLUGIN_HEADER,
    .kind = LCM_KIND_RUNTIME,
    .name = "cml",
    .version = "1.0.0",
    .description = "runtime provider for CML 2.9 (labs, nodes and tags, configs, licensing, "
                   "system stats, telemetry, node definitions)",
    .config = cml_config,
    .nconfig = sizeof cml_config / sizeof cml_config[0],
    .create = cml_create,
    .stop = cml_stop,
    .destroy = cml_destroy,
    .cancel = cml_cancel,
    .ops = &cml_ops,
    .unimplemented_ops = NULL,
};
