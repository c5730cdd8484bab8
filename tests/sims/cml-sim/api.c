/* cml-sim CML API: the /api/v0 operations LCM uses, with the status codes, JSON shapes and
 * error bodies ({code, description}) of the CML 2.9 OpenAPI document. One virtual controller per
 * call; server.c has already resolved the controller and applied faults and latency. */
#include "cml_sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "sim_yaml.h"

#define MAX_SEGS 8

struct call {
  struct cml_sim *sim;
  struct cml_ctrl *c;
  struct evhttp_request *req;
  enum evhttp_cmd_type method;
  char *seg[MAX_SEGS];
  int nseg;
  struct evkeyvalq query;
};

static bool is(const struct call *k, int i, const char *s)
{
  return i < k->nseg && !strcmp(k->seg[i], s);
}

/* ---- authentication ---- */

static bool authorized(struct call *k)
{
  const char *h = evhttp_find_header(evhttp_request_get_input_headers(k->req), "Authorization");
  if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
    sim_reply_error(k->req, 401, "No authorization token provided.");
    return false;
  }
  const char *tok = h + 7;
  while (*tok == ' ')
    tok++;
  int r = cml_token_check(k->c, tok);
  if (r == -2) {
    sim_reply_error(k->req, 401, "Authorization token has expired.");
    return false;
  }
  if (r < 0) {
    sim_reply_error(k->req, 401, "Invalid authorization token.");
    return false;
  }
  return true;
}

static cJSON *json_body(struct call *k)
{
  size_t n;
  char *b = sim_body_dup(k->req, &n);
  cJSON *j = b ? cJSON_ParseWithLength(b, n) : NULL;
  free(b);
  return j;
}

static void do_authenticate(struct call *k, bool extended)
{
  cJSON *j = json_body(k);
  const char *u = sim_json_str(j, "username"), *p = sim_json_str(j, "password");
  if (!cJSON_IsObject(j) || !u || !p || !*u || strlen(u) > 32) {
    sim_reply_error(k->req, 422, "Request body must be {\"username\": str, \"password\": str}");
  } else if (strcmp(u, k->sim->username) != 0 || strcmp(p, k->sim->password) != 0) {
    sim_reply_error(k->req, 403, "Authentication failed!");
  } else {
    const char *tok = cml_token_issue(k->c);
    if (!tok) {
      sim_reply_error(k->req, 500, "out of memory");
    } else if (extended) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "username", u);
      cJSON_AddStringToObject(o, "id", k->c->owner_id);
      cJSON_AddStringToObject(o, "token", tok);
      cJSON_AddTrueToObject(o, "admin");
      cJSON_AddNullToObject(o, "error");
      sim_reply_json(k->req, 200, o);
    } else {
      sim_reply_json(k->req, 200, cJSON_CreateString(tok));
    }
  }
  cJSON_Delete(j);
}

/* ---- system ---- */

static void do_system_information(struct call *k)
{
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "version", k->c->version);
  cJSON_AddBoolToObject(o, "ready", k->c->ready);
  cJSON_AddFalseToObject(o, "allow_ssh_pubkey_auth");
  cJSON_AddNullToObject(o, "oui");
  sim_reply_json(k->req, 200, o);
}

/* hostname for the simulated compute: the controller id restricted to [a-zA-Z0-9.-] */
static void hostname(const struct cml_ctrl *c, char *out, size_t len)
{
  size_t o = 0;
  for (const char *s = c->id; *s && o + 1 < len; s++)
    out[o++] = (*s == '_') ? '-' : *s;
  out[o] = '\0';
  if (!o)
    snprintf(out, len, "cml");
}

static cJSON *mem_stats(double used, double total)
{
  cJSON *m = cJSON_CreateObject();
  cJSON_AddNumberToObject(m, "used", used);
  cJSON_AddNumberToObject(m, "free", total - used);
  cJSON_AddNumberToObject(m, "total", total);
  return m;
}

static void do_system_stats(struct call *k)
{
  const struct cml_ctrl *c = k->c;
  struct cml_usage u;
  cml_ctrl_usage(c, &u);
  /* A booted node keeps about half a vCPU busy; the controller itself a little. */
  double pct = 2.0 + 50.0 * (double)u.vcpus / (double)(c->cpus ? c->cpus : 1);
  if (pct > 100.0)
    pct = 100.0;
  double mib = 1024.0 * 1024.0;
  double mem_total = (double)c->memory_mb * mib;
  double mem_used = (4096.0 + (double)u.ram_mb) * mib;
  if (mem_used > mem_total)
    mem_used = mem_total;
  double disk_total = (double)c->disk_gb * 1024.0 * mib;
  double disk_used = (20.0 * 1024.0 + 512.0 * (double)u.nodes) * mib;
  if (disk_used > disk_total)
    disk_used = disk_total;
  char host[CML_ID_MAX + 1];
  hostname(c, host, sizeof(host));

  cJSON *o = cJSON_CreateObject();
  cJSON *computes = cJSON_AddObjectToObject(o, "computes");
  cJSON *h = cJSON_AddObjectToObject(computes, c->compute_id);
  cJSON_AddStringToObject(h, "hostname", host);
  cJSON_AddTrueToObject(h, "is_controller");
  cJSON *st = cJSON_AddObjectToObject(h, "stats");
  cJSON *cpu = cJSON_AddObjectToObject(st, "cpu");
  cJSON_AddNumberToObject(cpu, "count", (double)c->cpus);
  cJSON_AddNumberToObject(cpu, "percent", pct);
  cJSON_AddStringToObject(cpu, "model", "cml-sim virtual CPU");
  cJSON_AddNumberToObject(cpu, "predicted", (double)u.vcpus);
  double load = pct / 100.0 * (double)c->cpus;
  double loads[3] = {load, load, load};
  cJSON_AddItemToObject(cpu, "load", cJSON_CreateDoubleArray(loads, 3));
  cJSON_AddItemToObject(st, "memory", mem_stats(mem_used, mem_total));
  cJSON_AddItemToObject(st, "disk", mem_stats(disk_used, disk_total));
  cJSON *dom = cJSON_AddObjectToObject(st, "dominfo");
  cJSON_AddNumberToObject(dom, "total_nodes", (double)u.nodes);
  cJSON_AddNumberToObject(dom, "total_orphans", 0);
  cJSON_AddNumberToObject(dom, "running_nodes", (double)u.running_nodes);
  cJSON_AddNumberToObject(dom, "running_orphans", 0);
  cJSON_AddNumberToObject(dom, "allocated_cpus", (double)u.vcpus);
  cJSON_AddNumberToObject(dom, "allocated_memory", (double)u.ram_mb);
  cJSON *all = cJSON_AddObjectToObject(o, "all");
  cJSON *acpu = cJSON_AddObjectToObject(all, "cpu");
  cJSON_AddNumberToObject(acpu, "count", (double)c->cpus);
  cJSON_AddNumberToObject(acpu, "percent", pct);
  cJSON_AddItemToObject(all, "memory", mem_stats(mem_used, mem_total));
  cJSON_AddItemToObject(all, "disk", mem_stats(disk_used, disk_total));
  cJSON *ctl = cJSON_AddObjectToObject(o, "controller");
  cJSON_AddItemToObject(ctl, "disk", mem_stats(disk_used, disk_total));
  sim_reply_json(k->req, 200, o);
}

static void do_system_health(struct call *k)
{
  const struct cml_ctrl *c = k->c;
  char host[CML_ID_MAX + 1];
  hostname(c, host, sizeof(host));
  cJSON *o = cJSON_CreateObject();
  cJSON_AddBoolToObject(o, "valid", c->ready && c->registered);
  cJSON *computes = cJSON_AddObjectToObject(o, "computes");
  cJSON *h = cJSON_AddObjectToObject(computes, c->compute_id);
  const char *flags[] = {"kvm_vmx_enabled", "enough_cpus", "lld_connected", "lld_synced",
                         "libvirt", "fabric", "device_mux", "refplat_images_available",
                         "docker_shim", "valid"};
  for (size_t i = 0; i < sizeof(flags) / sizeof(*flags); i++)
    cJSON_AddBoolToObject(h, flags[i], c->ready);
  cJSON_AddStringToObject(h, "admission_state", c->ready ? "READY" : "ONLINE");
  cJSON_AddTrueToObject(h, "is_controller");
  cJSON_AddStringToObject(h, "hostname", host);
  cJSON_AddBoolToObject(o, "is_licensed", c->registered);
  cJSON_AddBoolToObject(o, "is_enterprise", c->enterprise);
  cJSON *ctl = cJSON_AddObjectToObject(o, "controller");
  cJSON_AddBoolToObject(ctl, "core_connected", c->ready);
  cJSON_AddBoolToObject(ctl, "nodes_loaded", c->ready);
  cJSON_AddBoolToObject(ctl, "images_loaded", c->ready);
  cJSON_AddBoolToObject(ctl, "valid", c->ready);
  sim_reply_json(k->req, 200, o);
}

static cJSON *time_info(const char *status, int64_t when_ms, bool ok)
{
  cJSON *t = cJSON_CreateObject();
  if (when_ms) {
    char ts[40];
    sim_rfc3339(when_ms, ts, sizeof(ts));
    cJSON_AddStringToObject(t, "succeeded", ts);
    cJSON_AddStringToObject(t, "attempted", ts);
  } else {
    cJSON_AddNullToObject(t, "succeeded");
    cJSON_AddNullToObject(t, "attempted");
  }
  cJSON_AddNullToObject(t, "scheduled");
  if (status)
    cJSON_AddStringToObject(t, "status", status);
  else
    cJSON_AddNullToObject(t, "status");
  cJSON_AddNullToObject(t, "failure");
  if (ok)
    cJSON_AddStringToObject(t, "success", "SUCCESS");
  else
    cJSON_AddNullToObject(t, "success");
  return t;
}

static void do_licensing(struct call *k)
{
  const struct cml_ctrl *c = k->c;
  struct cml_usage u;
  cml_ctrl_usage(c, &u);
  int64_t reg = c->registered ? c->registered_wall_ms : 0;
  cJSON *o = cJSON_CreateObject();
  cJSON *udi = cJSON_AddObjectToObject(o, "udi");
  char host[CML_ID_MAX + 1];
  hostname(c, host, sizeof(host));
  cJSON_AddStringToObject(udi, "hostname", host);
  cJSON_AddStringToObject(udi, "product_uuid", c->product_uuid);
  cJSON *r = cJSON_AddObjectToObject(o, "registration");
  cJSON_AddStringToObject(r, "status", c->registered ? "COMPLETED" : "UNREGISTERED");
  if (c->registered) {
    cJSON_AddStringToObject(r, "smart_account", "cml-sim");
    cJSON_AddStringToObject(r, "virtual_account", "default");
  } else {
    cJSON_AddNullToObject(r, "smart_account");
    cJSON_AddNullToObject(r, "virtual_account");
  }
  cJSON_AddItemToObject(r, "register_time", time_info(c->registered ? "SUCCEEDED" : NULL, reg,
                                                      c->registered));
  cJSON_AddItemToObject(r, "renew_time", time_info(NULL, 0, false));
  char exp[40];
  if (c->registered) {
    sim_rfc3339(reg + 365LL * 24 * 3600 * 1000, exp, sizeof(exp));
    cJSON_AddStringToObject(r, "expires", exp);
  } else {
    cJSON_AddNullToObject(r, "expires");
  }
  cJSON *a = cJSON_AddObjectToObject(o, "authorization");
  cJSON_AddStringToObject(a, "status", c->registered ? "IN_COMPLIANCE" : "INIT");
  cJSON_AddItemToObject(a, "renew_time", time_info(NULL, 0, false));
  if (c->registered) {
    sim_rfc3339(reg + 90LL * 24 * 3600 * 1000, exp, sizeof(exp));
    cJSON_AddStringToObject(a, "expires", exp);
  } else {
    cJSON_AddNullToObject(a, "expires");
  }
  cJSON_AddFalseToObject(o, "reservation_mode");
  cJSON *fs = cJSON_AddArrayToObject(o, "features");
  cJSON *f = cJSON_CreateObject();
  cJSON_AddStringToObject(f, "id",
                          c->enterprise ? "regid.2019-10.com.cisco.CML_NODE_COUNT,1.0_enterprise"
                                        : "regid.2019-10.com.cisco.CML_NODE_COUNT,1.0_personal");
  cJSON_AddStringToObject(f, "name", c->enterprise ? "CML - Enterprise Node Count"
                                                   : "CML - Personal Node Count");
  cJSON_AddStringToObject(f, "version", "1.0");
  cJSON_AddNumberToObject(f, "in_use", (double)u.billable_running);
  cJSON_AddStringToObject(f, "status", c->registered ? "IN_COMPLIANCE" : "INIT");
  cJSON_AddNumberToObject(f, "min", 0);
  cJSON_AddNumberToObject(f, "max", (double)cml_ctrl_node_limit(c));
  cJSON_AddNullToObject(f, "minEndDate");
  cJSON_AddNullToObject(f, "maxEndDate");
  cJSON_AddItemToArray(fs, f);
  cJSON *pl = cJSON_AddObjectToObject(o, "product_license");
  cJSON_AddStringToObject(pl, "active", c->enterprise ? "CML_Enterprise" : "CML_Personal");
  cJSON_AddBoolToObject(pl, "is_enterprise", c->enterprise);
  cJSON *tr = cJSON_AddObjectToObject(o, "transport");
  cJSON *px = cJSON_AddObjectToObject(tr, "proxy");
  cJSON_AddNullToObject(px, "server");
  cJSON_AddNullToObject(px, "port");
  cJSON_AddStringToObject(tr, "ssms", "https://smartreceiver.cisco.com/licservice/license");
  cJSON_AddStringToObject(tr, "default_ssms",
                          "https://smartreceiver.cisco.com/licservice/license");
  sim_reply_json(k->req, 200, o);
}

static bool reg_token_ok(const char *t)
{
  size_t n = strlen(t);
  if (n < 1 || n > 256)
    return false;
  for (; *t; t++)
    if (!((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') || (*t >= '0' && *t <= '9') ||
          *t == '+' || *t == '/' || *t == '%' || *t == '=' || *t == '-'))
      return false;
  return true;
}

static void do_registration(struct call *k)
{
  cJSON *j = json_body(k);
  const char *tok = sim_json_str(j, "token");
  int rereg = 0;
  sim_json_bool(j, "reregister", &rereg);
  if (!cJSON_IsObject(j) || !tok || !reg_token_ok(tok)) {
    sim_reply_error(k->req, 400, "Invalid registration token");
  } else if (k->c->registered && !rereg) {
    sim_reply_error(k->req, 409, "The product is already registered; set reregister to renew");
  } else {
    k->c->registered = true;
    k->c->registered_wall_ms = sim_wall_ms();
    cml_tel_add(k->c, "license_info", NULL, "registered", 0);
    sim_reply_empty(k->req, 204);
  }
  cJSON_Delete(j);
}

static void do_telemetry(struct call *k)
{
  const struct cml_ctrl *c = k->c;
  cJSON *arr = cJSON_CreateArray();
  for (size_t i = 0; i < c->tel_count; i++) {
    const struct cml_tel *e = &c->tel[(c->tel_head + i) % CML_TEL_RING];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "category", e->category);
    char ts[40];
    sim_rfc3339(e->wall_ms, ts, sizeof(ts));
    cJSON_AddStringToObject(o, "timestamp", ts);
    cJSON *d = cJSON_AddObjectToObject(o, "data");
    if (e->lab_id[0])
      cJSON_AddStringToObject(d, "lab_id", e->lab_id);
    if (!strcmp(e->category, "user_activity")) {
      cJSON_AddStringToObject(d, "user_id", c->owner_id);
      cJSON_AddStringToObject(d, "username", e->detail[0] ? e->detail : "learner");
    } else if (e->detail[0]) {
      cJSON_AddStringToObject(d, "detail", e->detail);
    }
    if (e->lab_id[0])
      cJSON_AddNumberToObject(d, "node_count", (double)e->count);
    cJSON_AddItemToArray(arr, o);
  }
  sim_reply_json(k->req, 200, arr);
}

/* ---- labs ---- */

static void do_import(struct call *k)
{
  const char *title = evhttp_find_header(&k->query, "title");
  if (title && (strlen(title) < 1 || strlen(title) > 64)) {
    sim_reply_error(k->req, 422, "title: must be 1-64 characters");
    return;
  }
  size_t n;
  char *body = sim_body_dup(k->req, &n);
  char err[256] = "";
  cJSON *topo = NULL;
  if (!body) {
    snprintf(err, sizeof(err), "Empty body: expected a topology");
  } else {
    size_t i = 0;
    while (i < n && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
      i++;
    if (i < n && body[i] == '{') {
      topo = cJSON_ParseWithLength(body, n);
      if (!topo)
        snprintf(err, sizeof(err), "Body is not valid JSON");
    } else {
      char yerr[200];
      topo = sim_yaml_parse(body, n, yerr, sizeof(yerr));
      if (!topo)
        snprintf(err, sizeof(err), "Topology is not valid YAML: %s", yerr);
    }
  }
  free(body);
  struct cml_lab *lab = NULL;
  cJSON *warnings = cJSON_CreateArray();
  if (topo)
    lab = cml_lab_from_topology(k->c, topo, title, warnings, err, sizeof(err));
  cJSON_Delete(topo);
  if (!lab) {
    cJSON_Delete(warnings);
    sim_reply_error(k->req, 400, "Import failed: %s", err);
    return;
  }
  cml_pending_import(k->sim, k->c, k->req, lab, warnings, k->c->t.import_ms);
}

static struct cml_lab *find_lab(struct call *k, int status_if_missing)
{
  struct cml_lab *l = cml_lab_get(k->c, k->seg[1]);
  if (!l)
    sim_reply_error(k->req, status_if_missing, "Lab not found: %s", k->seg[1]);
  return l;
}

static void do_labs(struct call *k)
{
  cJSON *arr = cJSON_CreateArray();
  for (struct cml_lab *l = k->c->labs_head; l; l = l->next)
    cJSON_AddItemToArray(arr, cJSON_CreateString(l->id));
  sim_reply_json(k->req, 200, arr);
}

static void do_lab_action(struct call *k, const char *action)
{
  struct cml_lab *l = find_lab(k, 404);
  if (!l)
    return;
  char err[256] = "";
  int st;
  if (!strcmp(action, "start"))
    st = cml_lab_start(l, err, sizeof(err));
  else if (!strcmp(action, "stop"))
    st = cml_lab_stop(l, err, sizeof(err));
  else
    st = cml_lab_wipe(l, err, sizeof(err));
  if (st)
    sim_reply_error(k->req, st, "%s", err);
  else
    sim_reply_empty(k->req, 204);
  cml_log(k->sim, "event=lab_%s ctrl=%s lab=%s status=%d state=%s", action, k->c->id, l->id,
          st ? st : 204, cml_lab_state(l));
}

static void do_lab_delete(struct call *k)
{
  struct cml_lab *l = find_lab(k, 404);
  if (!l)
    return;
  char err[256] = "";
  int st = cml_lab_can_delete(l, err, sizeof(err));
  if (st) {
    sim_reply_error(k->req, st, "%s", err);
    return;
  }
  cml_log(k->sim, "event=lab_delete ctrl=%s lab=%s", k->c->id, l->id);
  cml_lab_free(l);
  sim_reply_empty(k->req, 204);
}

static void do_nodes(struct call *k)
{
  struct cml_lab *l = find_lab(k, 404);
  if (!l)
    return;
  bool data = sim_query_bool(&k->query, "data", 0);
  bool op = sim_query_bool(&k->query, "operational", 0);
  bool excl = sim_query_bool(&k->query, "exclude_configurations", 0);
  cJSON *arr = cJSON_CreateArray();
  for (size_t i = 0; i < l->nnodes; i++)
    cJSON_AddItemToArray(arr, data ? cml_node_json(l, &l->nodes[i], op, excl)
                                   : cJSON_CreateString(l->nodes[i].id));
  sim_reply_json(k->req, 200, arr);
}

static struct cml_node *find_node(struct call *k, struct cml_lab **labp, int status_if_missing)
{
  struct cml_lab *l = cml_lab_get(k->c, k->seg[1]);
  struct cml_node *n = l ? cml_node_get(l, k->seg[3]) : NULL;
  if (!l)
    sim_reply_error(k->req, status_if_missing, "Lab not found: %s", k->seg[1]);
  else if (!n)
    sim_reply_error(k->req, status_if_missing, "Node not found: %s", k->seg[3]);
  *labp = l;
  return n;
}

static void do_node_get(struct call *k)
{
  struct cml_lab *l;
  /* The spec documents 400 for "Specified node or lab not found" on this operation. */
  struct cml_node *n = find_node(k, &l, 400);
  if (!n)
    return;
  bool op = sim_query_bool(&k->query, "operational", 0);
  bool excl = sim_query_bool(&k->query, "exclude_configurations", 0);
  sim_reply_json(k->req, 200, cml_node_json(l, n, op, excl));
}

/* Validates a NodeUpdate body completely before changing anything. */
static int check_node_update(const cJSON *j, const struct cml_node *n, char *err, size_t len)
{
  static const char *const known[] = {"x", "y", "label", "parameters", "image_definition", "ram",
                                      "cpu_limit", "data_volume", "boot_disk_size", "hide_links",
                                      "tags", "cpus", "configuration", "pinned_compute_id"};
  if (!cJSON_IsObject(j)) {
    snprintf(err, len, "Request body must be a JSON object (NodeUpdate)");
    return 422;
  }
  const cJSON *f;
  cJSON_ArrayForEach(f, j) {
    bool ok = false;
    for (size_t i = 0; i < sizeof(known) / sizeof(*known); i++)
      ok = ok || !strcmp(f->string, known[i]);
    if (!ok) {
      snprintf(err, len, "%s: extra fields not permitted", f->string);
      return 422;
    }
  }
  const cJSON *tags = cJSON_GetObjectItemCaseSensitive(j, "tags");
  if (tags) {
    if (!cJSON_IsArray(tags)) {
      snprintf(err, len, "tags: must be a list of strings");
      return 422;
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, tags) {
      if (!cJSON_IsString(t) || strlen(t->valuestring) > 64) {
        snprintf(err, len, "tags: each tag must be a string of at most 64 characters");
        return 422;
      }
    }
  }
  const cJSON *label = cJSON_GetObjectItemCaseSensitive(j, "label");
  if (label && (!cJSON_IsString(label) || !*label->valuestring ||
                strlen(label->valuestring) > 128)) {
    snprintf(err, len, "label: must be a string of 1-128 characters");
    return 422;
  }
  const char *ints[] = {"x", "y", "ram", "cpus", "cpu_limit", "data_volume", "boot_disk_size"};
  for (size_t i = 0; i < sizeof(ints) / sizeof(*ints); i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, ints[i]);
    int64_t dummy;
    if (v && !cJSON_IsNull(v) && !sim_json_int(j, ints[i], &dummy)) {
      snprintf(err, len, "%s: must be an integer", ints[i]);
      return 422;
    }
    if (v && cJSON_IsNull(v) && (i < 2)) {
      snprintf(err, len, "%s: must be an integer", ints[i]);
      return 422;
    }
  }
  const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(j, "configuration");
  if (cfg && !cJSON_IsNull(cfg) && !cJSON_IsString(cfg) && !cJSON_IsArray(cfg) &&
      !cJSON_IsObject(cfg)) {
    snprintf(err, len, "configuration: must be a string, a file or a list of files");
    return 422;
  }
  if (n->state != NODE_DEFINED) {
    const char *frozen[] = {"configuration", "image_definition", "ram", "cpus", "cpu_limit",
                            "data_volume", "boot_disk_size"};
    for (size_t i = 0; i < sizeof(frozen) / sizeof(*frozen); i++)
      if (cJSON_GetObjectItemCaseSensitive(j, frozen[i])) {
        snprintf(err, len, "Node %s must be wiped (DEFINED_ON_CORE) to change '%s'", n->id,
                 frozen[i]);
        return 400;
      }
  }
  return 0;
}

static void do_node_patch(struct call *k)
{
  struct cml_lab *l;
  struct cml_node *n = find_node(k, &l, 404);
  if (!n)
    return;
  cJSON *j = json_body(k);
  char err[256];
  int st = check_node_update(j, n, err, sizeof(err));
  if (st) {
    sim_reply_error(k->req, st, "%s", err);
    cJSON_Delete(j);
    return;
  }
  const cJSON *tags = cJSON_GetObjectItemCaseSensitive(j, "tags");
  if (tags) {
    /* CML replaces the whole tag list. */
    size_t nt = (size_t)cJSON_GetArraySize(tags);
    char **nv = calloc(nt + 1, sizeof(char *));
    size_t i = 0;
    const cJSON *t;
    bool oom = !nv;
    cJSON_ArrayForEach(t, tags) {
      if (oom || !(nv[i++] = strdup(t->valuestring)))
        oom = true;
    }
    if (oom) {
      for (size_t q = 0; nv && q < i; q++)
        free(nv[q]);
      free(nv);
      cJSON_Delete(j);
      sim_reply_error(k->req, 500, "out of memory");
      return;
    }
    for (size_t q = 0; q < n->ntags; q++)
      free(n->tags[q]);
    free(n->tags);
    n->tags = nv;
    n->ntags = nt;
  }
  const char *label = sim_json_str(j, "label");
  if (label) {
    char *s = strdup(label);
    if (s) {
      free(n->label);
      n->label = s;
    }
  }
  int64_t v;
  if (sim_json_int(j, "x", &v))
    n->x = v < -15000 ? -15000 : v > 15000 ? 15000 : v;
  if (sim_json_int(j, "y", &v))
    n->y = v < -15000 ? -15000 : v > 15000 ? 15000 : v;
  if (cJSON_GetObjectItemCaseSensitive(j, "cpus"))
    n->cpus = sim_json_int(j, "cpus", &v) ? v : 0;
  if (cJSON_GetObjectItemCaseSensitive(j, "ram"))
    n->ram = sim_json_int(j, "ram", &v) ? v : 0;
  const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(j, "configuration");
  if (cfg) {
    cJSON_Delete(n->configuration);
    n->configuration = cJSON_IsNull(cfg) ? NULL : cJSON_Duplicate(cfg, 1);
  }
  const cJSON *img = cJSON_GetObjectItemCaseSensitive(j, "image_definition");
  if (img) {
    free(n->image_definition);
    n->image_definition = cJSON_IsString(img) ? strdup(img->valuestring) : NULL;
  }
  l->modified_ms = sim_wall_ms();
  cJSON_Delete(j);
  sim_reply_json(k->req, 200, cJSON_CreateString(n->id));
}

/* The text of a node's (main) configuration. */
static const char *config_text(const struct cml_node *n)
{
  const cJSON *c = n->configuration;
  if (cJSON_IsString(c))
    return c->valuestring;
  if (cJSON_IsArray(c))
    c = cJSON_GetArrayItem(c, 0);
  const char *s = sim_json_str(c, "content");
  return s ? s : "";
}

static void do_extract(struct call *k)
{
  struct cml_lab *l;
  struct cml_node *n = find_node(k, &l, 404);
  if (!n)
    return;
  if (n->state != NODE_BOOTED && n->state != NODE_STARTED) {
    sim_reply_error(k->req, 400, "Node %s is not running: cannot extract its configuration",
                    n->id);
    return;
  }
  char ts[40];
  sim_rfc3339(sim_wall_ms(), ts, sizeof(ts));
  const char *base = config_text(n);
  size_t len = strlen(base) + 128;
  char *text = malloc(len);
  if (!text) {
    sim_reply_error(k->req, 500, "out of memory");
    return;
  }
  snprintf(text, len, "%s%s! extracted by cml-sim at %s\n", base,
           (*base && base[strlen(base) - 1] != '\n') ? "\n" : "", ts);
  /* Like CML, the extracted running config becomes the node's stored configuration. */
  cJSON *c = n->configuration;
  if (cJSON_IsArray(c) && cJSON_IsObject(cJSON_GetArrayItem(c, 0))) {
    cJSON *first = cJSON_GetArrayItem(c, 0);
    cJSON_DeleteItemFromObjectCaseSensitive(first, "content");
    cJSON_AddStringToObject(first, "content", text);
  } else if (cJSON_IsObject(c)) {
    cJSON_DeleteItemFromObjectCaseSensitive(c, "content");
    cJSON_AddStringToObject(c, "content", text);
  } else {
    cJSON_Delete(n->configuration);
    n->configuration = cJSON_CreateString(text);
  }
  free(n->extracted);
  n->extracted = text;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", n->id);
  cJSON_AddStringToObject(o, "label", n->label);
  cJSON_AddStringToObject(o, "configuration", text);
  sim_reply_json(k->req, 200, o);
}

/* ---- node definitions ---- */

/* What CML's reference platform says about the definitions the sim knows by name; any other id
 * (a custom definition such as vmanagemock) is rendered as a generic KVM server. */
struct nd_kind {
  const char *id, *nature, *icon, *libvirt, *driver, *cfg_driver, *label;
  int ram, cpus, serial, boot_timeout;
};

static const struct nd_kind nd_kinds[] = {
    {"iosv", "router", "router", "kvm", "iosv", "iosv", "IOSv", 512, 1, 2, 180},
    {"iosvl2", "switch", "switch", "kvm", "iosvl2", "iosvl2", "IOSvL2", 768, 1, 2, 180},
    {"csr1000v", "router", "router", "kvm", "csr1000v", "csr1000v", "CSR1000v", 3072, 1, 1, 420},
    {"cat8000v", "router", "router", "kvm", "csr1000v", "csr1000v", "Catalyst 8000v", 4096, 1, 1,
     420},
    {"iosxrv9000", "router", "router", "kvm", "iosxrv9000", "iosxrv9000", "IOS XRv 9000", 20480,
     4, 4, 900},
    {"nxosv9000", "switch", "switch", "kvm", "nxosv9000", "nxosv9000", "NX-OS 9000v", 8192, 2, 1,
     600},
    {"asav", "firewall", "firewall", "kvm", "asav", "asav", "ASAv", 2048, 1, 1, 300},
    {"alpine", "server", "server", "kvm", "alpine", "alpine", "Alpine", 512, 1, 1, 60},
    {"ubuntu", "server", "server", "kvm", "ubuntu", "ubuntu", "Ubuntu", 2048, 1, 1, 120},
    {"server", "server", "server", "kvm", "server", "server", "Server", 256, 1, 1, 60},
    {"desktop", "host", "host", "kvm", "alpine", "desktop", "Desktop", 1024, 1, 1, 120},
    {"unmanaged_switch", "switch", "switch", "none", "unmanaged_switch", NULL, "Unmanaged Switch",
     0, 0, 0, 5},
    {"external_connector", "external_connector", "cloud", "none", "external_connector", NULL,
     "External Connector", 0, 0, 0, 5},
};

static cJSON *node_definition_json(const char *id)
{
  const struct nd_kind generic = {id, "server", "server", "kvm", "server", "server", NULL, 1024,
                                  1, 1, 180};
  const struct nd_kind *k = &generic;
  for (size_t i = 0; i < sizeof(nd_kinds) / sizeof(*nd_kinds); i++)
    if (!strcmp(nd_kinds[i].id, id))
      k = &nd_kinds[i];
  char label[33], prefix[33];
  snprintf(label, sizeof(label), "%s", k->label ? k->label : id);
  snprintf(prefix, sizeof(prefix), "%.31s-", id);
  bool vm = strcmp(k->libvirt, "none") != 0;

  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", id);
  cJSON *boot = cJSON_AddObjectToObject(o, "boot");
  cJSON_AddNumberToObject(boot, "timeout", k->boot_timeout);
  if (vm) {
    const char *done[] = {"login:"};
    cJSON_AddItemToObject(boot, "completed", cJSON_CreateStringArray(done, 1));
  }
  cJSON *sim = cJSON_AddObjectToObject(o, "sim");
  cJSON *ln = cJSON_AddObjectToObject(sim, "linux_native");
  cJSON_AddStringToObject(ln, "libvirt_domain_driver", k->libvirt);
  cJSON_AddStringToObject(ln, "driver", k->driver);
  if (vm) {
    cJSON_AddNumberToObject(ln, "ram", k->ram);
    cJSON_AddNumberToObject(ln, "cpus", k->cpus);
  }
  cJSON *gen = cJSON_AddObjectToObject(o, "general");
  cJSON_AddStringToObject(gen, "nature", k->nature);
  cJSON_AddStringToObject(gen, "description", k->label ? k->label : id);
  cJSON_AddBoolToObject(gen, "read_only", k->label != NULL);
  cJSON *cfg = cJSON_AddObjectToObject(o, "configuration");
  cJSON *g = cJSON_AddObjectToObject(cfg, "generator");
  if (k->cfg_driver)
    cJSON_AddStringToObject(g, "driver", k->cfg_driver);
  else
    cJSON_AddNullToObject(g, "driver");
  cJSON *dev = cJSON_AddObjectToObject(o, "device");
  cJSON *ifs = cJSON_AddObjectToObject(dev, "interfaces");
  cJSON_AddNumberToObject(ifs, "serial_ports", k->serial);
  const char *phys[] = {"port0", "port1", "port2", "port3"};
  cJSON_AddItemToObject(ifs, "physical", cJSON_CreateStringArray(phys, vm ? 4 : 1));
  cJSON_AddBoolToObject(ifs, "has_loopback_zero", !strcmp(k->nature, "router"));
  cJSON *ui = cJSON_AddObjectToObject(o, "ui");
  cJSON_AddStringToObject(ui, "label_prefix", prefix);
  cJSON_AddStringToObject(ui, "icon", k->icon);
  cJSON_AddStringToObject(ui, "label", label);
  cJSON_AddTrueToObject(ui, "visible");
  cJSON_AddStringToObject(ui, "group", k->label && strcmp(k->nature, "server") &&
                                               strcmp(k->nature, "host") ? "Cisco" : "Others");
  cJSON_AddStringToObject(o, "schema_version", "0.0.1");
  return o;
}

static void do_node_definitions(struct call *k)
{
  cJSON *arr = cJSON_CreateArray();
  for (size_t i = 0; arr && i < k->c->nnode_defs; i++)
    cJSON_AddItemToArray(arr, node_definition_json(k->c->node_defs[i]));
  sim_reply_json(k->req, 200, arr);
}

/* ---- dispatch ---- */

static void route(struct call *k)
{
  enum evhttp_cmd_type m = k->method;
  bool G = m == EVHTTP_REQ_GET, P = m == EVHTTP_REQ_POST, U = m == EVHTTP_REQ_PUT,
       D = m == EVHTTP_REQ_DELETE, A = m == EVHTTP_REQ_PATCH;
  int n = k->nseg;
  struct cml_ctrl *c = k->c;

  /* Operations without authentication. */
  if (n == 1 && is(k, 0, "system_information")) {
    if (G)
      do_system_information(k);
    else
      sim_reply_error(k->req, 405, "Method Not Allowed");
    return;
  }
  if (!c->ready) {
    sim_reply_error(k->req, 503, "Controller %s is not ready yet", c->id);
    return;
  }
  if (n == 1 && (is(k, 0, "authenticate") || is(k, 0, "auth_extended"))) {
    if (P)
      do_authenticate(k, is(k, 0, "auth_extended"));
    else
      sim_reply_error(k->req, 405, "Method Not Allowed");
    return;
  }

  /* Known paths first, so unknown ones get 404 even without a token. */
  bool known =
      (n == 1 && (is(k, 0, "import") || is(k, 0, "labs") || is(k, 0, "system_stats") ||
                  is(k, 0, "system_health") || is(k, 0, "licensing") ||
                  is(k, 0, "node_definitions"))) ||
      (n == 2 && (is(k, 0, "labs") || (is(k, 0, "licensing") && is(k, 1, "registration")) ||
                  (is(k, 0, "telemetry") && is(k, 1, "events")))) ||
      (n == 3 && is(k, 0, "labs") &&
       (is(k, 2, "start") || is(k, 2, "stop") || is(k, 2, "wipe") || is(k, 2, "nodes") ||
        is(k, 2, "check_if_converged") || is(k, 2, "state"))) ||
      (n == 4 && is(k, 0, "labs") && is(k, 2, "nodes")) ||
      (n == 5 && is(k, 0, "labs") && is(k, 2, "nodes") && is(k, 4, "extract_configuration"));
  if (!known) {
    sim_reply_error(k->req, 404, "Not Found");
    return;
  }
  if (!authorized(k))
    return;

  if (n == 1 && is(k, 0, "import") && P)
    do_import(k);
  else if (n == 1 && is(k, 0, "labs") && G)
    do_labs(k);
  else if (n == 1 && is(k, 0, "system_stats") && G)
    do_system_stats(k);
  else if (n == 1 && is(k, 0, "system_health") && G)
    do_system_health(k);
  else if (n == 1 && is(k, 0, "licensing") && G)
    do_licensing(k);
  else if (n == 1 && is(k, 0, "node_definitions") && G)
    do_node_definitions(k);
  else if (n == 2 && is(k, 0, "licensing") && P)
    do_registration(k);
  else if (n == 2 && is(k, 0, "telemetry") && G)
    do_telemetry(k);
  else if (n == 2 && is(k, 0, "labs") && G) {
    struct cml_lab *l = find_lab(k, 404);
    if (l)
      sim_reply_json(k->req, 200, cml_lab_json(l));
  } else if (n == 2 && is(k, 0, "labs") && D)
    do_lab_delete(k);
  else if (n == 3 && U && (is(k, 2, "start") || is(k, 2, "stop") || is(k, 2, "wipe")))
    do_lab_action(k, k->seg[2]);
  else if (n == 3 && G && is(k, 2, "nodes"))
    do_nodes(k);
  else if (n == 3 && G && is(k, 2, "check_if_converged")) {
    struct cml_lab *l = find_lab(k, 404);
    if (l)
      sim_reply_json(k->req, 200, cJSON_CreateBool(cml_lab_converged(l)));
  } else if (n == 3 && G && is(k, 2, "state")) {
    struct cml_lab *l = find_lab(k, 404);
    if (l)
      sim_reply_json(k->req, 200, cJSON_CreateString(cml_lab_state(l)));
  } else if (n == 4 && G)
    do_node_get(k);
  else if (n == 4 && A)
    do_node_patch(k);
  else if (n == 5 && U)
    do_extract(k);
  else
    sim_reply_error(k->req, 405, "Method Not Allowed");
}

void cml_api_handle(struct cml_sim *sim, struct cml_ctrl *c, struct evhttp_request *req,
                    const char *path)
{
  struct call k = {.sim = sim, .c = c, .req = req, .method = evhttp_request_get_command(req)};
  c->requests++;
  char *copy = strdup(path);
  if (!copy) {
    sim_reply_error(req, 500, "out of memory");
    return;
  }
  for (char *save = NULL, *s = strtok_r(copy, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
    if (k.nseg == MAX_SEGS) {
      k.nseg = MAX_SEGS + 1;
      break;
    }
    k.seg[k.nseg++] = s;
  }
  sim_query_parse(req, &k.query);
  if (k.nseg > MAX_SEGS || k.nseg == 0)
    sim_reply_error(req, 404, "Not Found");
  else
    route(&k);
  evhttp_clear_headers(&k.query);
  free(copy);
}
