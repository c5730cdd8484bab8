/* cml-sim admin API under /_sim/: create/remove/list virtual controllers, change their licence,
 * readiness and timings, inject faults (error codes, delays, dropped connections), add user
 * activity, expire tokens, reset. Documented in docs/simulators.md. No authentication: the
 * simulator is for loopback test rigs only. */
#include "cml_sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/http.h>

static cJSON *body_json(struct evhttp_request *req, bool *bad)
{
  size_t n;
  char *b = sim_body_dup(req, &n);
  *bad = false;
  if (!b)
    return cJSON_CreateObject();
  cJSON *j = cJSON_ParseWithLength(b, n);
  free(b);
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    *bad = true;
    return NULL;
  }
  return j;
}

/* ---- settings shared by controllers and the defaults ---- */

struct settings {
  bool has_lic, enterprise, has_limit, has_ready, ready, has_reg, registered, has_version;
  int64_t node_limit, cpus, memory_mb;
  char version[32];
  struct cml_timing t;
  bool has_t[6];
  bool has_nd;
  char **nd; /* owned (settings_free) */
  size_t nnd;
};

static void settings_free(struct settings *s)
{
  cml_strv_free(s->nd, s->nnd);
  s->nd = NULL;
  s->nnd = 0;
}

static const char *const timing_names[6] = {"import_ms", "boot_ms", "stop_ms", "wipe_ms",
                                            "token_ttl_ms", "latency_ms"};

static int64_t *timing_field(struct cml_timing *t, int i)
{
  int64_t *f[6] = {&t->import_ms, &t->boot_ms, &t->stop_ms, &t->wipe_ms, &t->token_ttl_ms,
                   &t->latency_ms};
  return f[i];
}

/* Parses every known member of j into s; returns 0 or -1 with err. `extra` lists further allowed
 * member names (NULL-terminated). The caller frees s with settings_free either way. */
static int parse_settings(const cJSON *j, struct settings *s, const char *const *extra, char *err,
                          size_t len)
{
  memset(s, 0, sizeof(*s));
  const cJSON *f;
  cJSON_ArrayForEach(f, j) {
    const char *k = f->string;
    int64_t v;
    int b;
    bool known = false;
    for (int i = 0; i < 6; i++)
      if (!strcmp(k, timing_names[i])) {
        known = true;
        if (!sim_json_int(j, k, &v) || v < 0 || v > 86400000LL * 365) {
          snprintf(err, len, "%s must be a non-negative integer (ms)", k);
          return -1;
        }
        *timing_field(&s->t, i) = v;
        s->has_t[i] = true;
      }
    if (known)
      continue;
    if (!strcmp(k, "license")) {
      const char *l = cJSON_IsString(f) ? f->valuestring : "";
      if (strcmp(l, "personal") && strcmp(l, "enterprise")) {
        snprintf(err, len, "license must be \"personal\" or \"enterprise\"");
        return -1;
      }
      s->has_lic = true;
      s->enterprise = !strcmp(l, "enterprise");
    } else if (!strcmp(k, "node_limit")) {
      if (!sim_json_int(j, k, &v) || v < 0 || v > 100000) {
        snprintf(err, len, "node_limit must be an integer 0..100000 (0 = licence default)");
        return -1;
      }
      s->has_limit = true;
      s->node_limit = v;
    } else if (!strcmp(k, "ready")) {
      if (!sim_json_bool(j, k, &b)) {
        snprintf(err, len, "ready must be a boolean");
        return -1;
      }
      s->has_ready = true;
      s->ready = b;
    } else if (!strcmp(k, "registered")) {
      if (!sim_json_bool(j, k, &b)) {
        snprintf(err, len, "registered must be a boolean");
        return -1;
      }
      s->has_reg = true;
      s->registered = b;
    } else if (!strcmp(k, "version")) {
      if (!cJSON_IsString(f) || !*f->valuestring || strlen(f->valuestring) >= sizeof(s->version)) {
        snprintf(err, len, "version must be a short string");
        return -1;
      }
      s->has_version = true;
      snprintf(s->version, sizeof(s->version), "%s", f->valuestring);
    } else if (!strcmp(k, "cpus")) {
      if (!sim_json_int(j, k, &v) || v < 1 || v > 4096) {
        snprintf(err, len, "cpus must be an integer 1..4096");
        return -1;
      }
      s->cpus = v;
    } else if (!strcmp(k, "memory_mb")) {
      if (!sim_json_int(j, k, &v) || v < 1024 || v > 64LL * 1024 * 1024) {
        snprintf(err, len, "memory_mb must be an integer >= 1024");
        return -1;
      }
      s->memory_mb = v;
    } else if (!strcmp(k, "node_definitions")) {
      settings_free(s);
      if (cml_node_defs_from_json(f, &s->nd, &s->nnd, err, len) < 0)
        return -1;
      s->has_nd = true;
    } else {
      bool ok = false;
      for (size_t i = 0; extra && extra[i]; i++)
        ok = ok || !strcmp(k, extra[i]);
      if (!ok) {
        snprintf(err, len, "unknown field: %s", k);
        return -1;
      }
    }
  }
  return 0;
}

static void apply_timing(struct cml_timing *t, const struct settings *s)
{
  for (int i = 0; i < 6; i++)
    if (s->has_t[i])
      *timing_field(t, i) = *timing_field((struct cml_timing *)&s->t, i);
}

/* Takes s's node definition list (when it has one). */
static void apply_ctrl(struct cml_ctrl *c, struct settings *s)
{
  if (s->has_nd) {
    cml_strv_free(c->node_defs, c->nnode_defs);
    c->node_defs = s->nd;
    c->nnode_defs = s->nnd;
    s->nd = NULL;
    s->nnd = 0;
  }
  if (s->has_lic)
    c->enterprise = s->enterprise;
  if (s->has_limit)
    c->node_limit = s->node_limit;
  if (s->has_ready)
    c->ready = s->ready;
  if (s->has_reg) {
    if (s->registered && !c->registered)
      c->registered_wall_ms = sim_wall_ms();
    c->registered = s->registered;
  }
  if (s->has_version)
    snprintf(c->version, sizeof(c->version), "%s", s->version);
  if (s->cpus)
    c->cpus = s->cpus;
  if (s->memory_mb)
    c->memory_mb = s->memory_mb;
  apply_timing(&c->t, s);
}

static cJSON *defaults_json(const struct cml_sim *sim)
{
  cJSON *o = cJSON_CreateObject();
  for (int i = 0; i < 6; i++)
    cJSON_AddNumberToObject(o, timing_names[i],
                            (double)*timing_field((struct cml_timing *)&sim->dflt.t, i));
  cJSON_AddStringToObject(o, "license", sim->dflt.enterprise ? "enterprise" : "personal");
  cJSON_AddNumberToObject(o, "node_limit", (double)sim->dflt.node_limit);
  cJSON_AddStringToObject(o, "version", sim->dflt.version);
  cJSON_AddBoolToObject(o, "strict", sim->dflt.strict);
  cJSON *nd = cJSON_AddArrayToObject(o, "node_definitions");
  for (size_t i = 0; i < sim->nnode_defs; i++)
    cJSON_AddItemToArray(nd, cJSON_CreateString(sim->node_defs[i]));
  return o;
}

/* ---- faults ---- */

void cml_faults_clear(struct cml_sim *sim)
{
  while (sim->faults) {
    struct cml_fault *f = sim->faults;
    sim->faults = f->next;
    free(f);
  }
}

bool cml_fault_match(struct cml_sim *sim, const char *ctrl, const char *method, const char *path,
                     struct cml_fault *out)
{
  for (struct cml_fault **pp = &sim->faults; *pp; pp = &(*pp)->next) {
    struct cml_fault *f = *pp;
    if (f->ctrl[0] && strcmp(f->ctrl, ctrl) != 0)
      continue;
    if (f->method[0] && strcasecmp(f->method, method) != 0)
      continue;
    if (f->path[0] && !strstr(path, f->path))
      continue;
    f->hits++;
    *out = *f;
    out->next = NULL;
    if (f->remaining > 0 && --f->remaining == 0) {
      *pp = f->next;
      free(f);
    }
    return true;
  }
  return false;
}

static cJSON *fault_json(const struct cml_fault *f)
{
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "id", (double)f->id);
  if (f->ctrl[0])
    cJSON_AddStringToObject(o, "controller", f->ctrl);
  else
    cJSON_AddNullToObject(o, "controller");
  cJSON_AddStringToObject(o, "path", f->path);
  cJSON_AddStringToObject(o, "method", f->method);
  cJSON_AddNumberToObject(o, "status", f->status);
  cJSON_AddNumberToObject(o, "delay_ms", (double)f->delay_ms);
  cJSON_AddBoolToObject(o, "drop", f->drop);
  cJSON_AddNumberToObject(o, "remaining", (double)f->remaining);
  cJSON_AddNumberToObject(o, "hits", (double)f->hits);
  return o;
}

static void fault_add(struct cml_sim *sim, struct evhttp_request *req, const char *ctrl_forced)
{
  bool bad;
  cJSON *j = body_json(req, &bad);
  if (bad) {
    sim_reply_error(req, 400, "body must be a JSON object");
    return;
  }
  struct cml_fault f = {.remaining = 1};
  char err[160] = "";
  const cJSON *it;
  cJSON_ArrayForEach(it, j) {
    const char *k = it->string;
    int64_t v;
    int b;
    if (!strcmp(k, "controller")) {
      if (!cJSON_IsNull(it) && (!cJSON_IsString(it) || !cml_ctrl_id_valid(it->valuestring)))
        snprintf(err, sizeof(err), "controller must be a controller id or null");
      else if (cJSON_IsString(it))
        snprintf(f.ctrl, sizeof(f.ctrl), "%s", it->valuestring);
    } else if (!strcmp(k, "path")) {
      if (!cJSON_IsString(it) || strlen(it->valuestring) >= sizeof(f.path))
        snprintf(err, sizeof(err), "path must be a string (substring of the request path)");
      else
        snprintf(f.path, sizeof(f.path), "%s", it->valuestring);
    } else if (!strcmp(k, "method")) {
      if (!cJSON_IsString(it) || strlen(it->valuestring) >= sizeof(f.method))
        snprintf(err, sizeof(err), "method must be an HTTP method");
      else
        snprintf(f.method, sizeof(f.method), "%s", it->valuestring);
    } else if (!strcmp(k, "status")) {
      if (!sim_json_int(j, k, &v) || v < 100 || v > 599)
        snprintf(err, sizeof(err), "status must be an HTTP status 100..599");
      else
        f.status = (int)v;
    } else if (!strcmp(k, "count")) {
      if (!sim_json_int(j, k, &v) || v == 0 || v < -1)
        snprintf(err, sizeof(err), "count must be >= 1, or -1 for until removed");
      else
        f.remaining = v;
    } else if (!strcmp(k, "delay_ms")) {
      if (!sim_json_int(j, k, &v) || v < 0 || v > 3600000)
        snprintf(err, sizeof(err), "delay_ms must be 0..3600000");
      else
        f.delay_ms = v;
    } else if (!strcmp(k, "drop")) {
      if (!sim_json_bool(j, k, &b))
        snprintf(err, sizeof(err), "drop must be a boolean");
      else
        f.drop = b;
    } else {
      snprintf(err, sizeof(err), "unknown field: %s", k);
    }
    if (err[0])
      break;
  }
  cJSON_Delete(j);
  if (!err[0] && !f.status && !f.delay_ms && !f.drop)
    snprintf(err, sizeof(err), "a fault needs status, delay_ms or drop");
  if (err[0]) {
    sim_reply_error(req, 400, "%s", err);
    return;
  }
  if (ctrl_forced)
    snprintf(f.ctrl, sizeof(f.ctrl), "%s", ctrl_forced);
  struct cml_fault *nf = malloc(sizeof(*nf));
  if (!nf) {
    sim_reply_error(req, 500, "out of memory");
    return;
  }
  *nf = f;
  nf->id = sim->next_fault_id++;
  nf->next = NULL;
  struct cml_fault **pp = &sim->faults; /* appended: rules apply in creation order */
  while (*pp)
    pp = &(*pp)->next;
  *pp = nf;
  cml_log(sim, "event=fault_added id=%llu ctrl=%s path=%s status=%d delay_ms=%lld drop=%d",
          (unsigned long long)nf->id, nf->ctrl[0] ? nf->ctrl : "*", nf->path, nf->status,
          (long long)nf->delay_ms, nf->drop);
  sim_reply_json(req, 201, fault_json(nf));
}

/* ---- controllers ---- */

static int cmp_ctrl(const void *a, const void *b)
{
  return strcmp((*(struct cml_ctrl *const *)a)->id, (*(struct cml_ctrl *const *)b)->id);
}

struct collect {
  struct cml_ctrl **v;
  size_t n;
};

static void collect_one(const char *k, void *val, void *ud)
{
  (void)k;
  struct collect *c = ud;
  c->v[c->n++] = val;
}

static void ctrl_list(struct cml_sim *sim, struct evhttp_request *req)
{
  struct collect col = {.v = calloc(sim->ctrls.count + 1, sizeof(struct cml_ctrl *))};
  if (!col.v) {
    sim_reply_error(req, 500, "out of memory");
    return;
  }
  sim_map_each(&sim->ctrls, collect_one, &col);
  qsort(col.v, col.n, sizeof(*col.v), cmp_ctrl);
  cJSON *arr = cJSON_CreateArray();
  for (size_t i = 0; i < col.n; i++)
    cJSON_AddItemToArray(arr, cml_ctrl_admin_json(col.v[i]));
  free(col.v);
  sim_reply_json(req, 200, arr);
}

static void ctrl_create(struct cml_sim *sim, struct evhttp_request *req)
{
  bool bad;
  cJSON *j = body_json(req, &bad);
  if (bad) {
    sim_reply_error(req, 400, "body must be a JSON object");
    return;
  }
  static const char *const extra[] = {"id", NULL};
  struct settings s;
  char err[160];
  const char *id = sim_json_str(j, "id");
  if (parse_settings(j, &s, extra, err, sizeof(err)) < 0) {
    sim_reply_error(req, 400, "%s", err);
  } else if (!id || !cml_ctrl_id_valid(id)) {
    sim_reply_error(req, 400, "id must match [A-Za-z0-9._-]{1,64}");
  } else if (cml_ctrl_get(sim, id)) {
    sim_reply_error(req, 409, "controller %s exists", id);
  } else {
    struct cml_ctrl *c = cml_ctrl_create(sim, id);
    if (!c) {
      sim_reply_error(req, 500, "cannot create controller");
    } else {
      apply_ctrl(c, &s);
      cml_log(sim, "event=controller_created ctrl=%s auto=false", id);
      sim_reply_json(req, 201, cml_ctrl_admin_json(c));
    }
  }
  settings_free(&s);
  cJSON_Delete(j);
}

static void ctrl_patch(struct cml_sim *sim, struct evhttp_request *req, struct cml_ctrl *c)
{
  bool bad;
  cJSON *j = body_json(req, &bad);
  if (bad) {
    sim_reply_error(req, 400, "body must be a JSON object");
    return;
  }
  struct settings s;
  char err[160];
  if (parse_settings(j, &s, NULL, err, sizeof(err)) < 0) {
    sim_reply_error(req, 400, "%s", err);
  } else {
    apply_ctrl(c, &s);
    if (s.has_nd)
      cml_log(sim, "event=node_definitions ctrl=%s count=%zu", c->id, c->nnode_defs);
    sim_reply_json(req, 200, cml_ctrl_admin_json(c));
  }
  settings_free(&s);
  cJSON_Delete(j);
}

static void activity(struct evhttp_request *req, struct cml_ctrl *c)
{
  bool bad;
  cJSON *j = body_json(req, &bad);
  if (bad) {
    sim_reply_error(req, 400, "body must be a JSON object");
    return;
  }
  const char *user = sim_json_str(j, "user");
  cml_tel_add(c, "user_activity", NULL, user ? user : "learner", 0);
  cJSON_Delete(j);
  sim_reply_empty(req, 204);
}

/* ---- config / reset / stats ---- */

struct apply_all {
  const struct settings *s;
};

static void apply_timing_one(const char *k, void *val, void *ud)
{
  (void)k;
  struct cml_ctrl *c = val;
  apply_timing(&c->t, ((struct apply_all *)ud)->s);
}

static void config_patch(struct cml_sim *sim, struct evhttp_request *req)
{
  bool bad;
  cJSON *j = body_json(req, &bad);
  if (bad) {
    sim_reply_error(req, 400, "body must be a JSON object");
    return;
  }
  static const char *const extra[] = {"strict", "apply_to_existing", NULL};
  struct settings s;
  char err[160];
  int strict = sim->dflt.strict, apply = 1;
  const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "strict");
  const cJSON *ap = cJSON_GetObjectItemCaseSensitive(j, "apply_to_existing");
  if (parse_settings(j, &s, extra, err, sizeof(err)) < 0) {
    sim_reply_error(req, 400, "%s", err);
  } else if ((st && !sim_json_bool(j, "strict", &strict)) ||
             (ap && !sim_json_bool(j, "apply_to_existing", &apply))) {
    sim_reply_error(req, 400, "strict and apply_to_existing must be booleans");
  } else if (s.has_ready || s.has_reg || s.cpus || s.memory_mb || s.has_nd) {
    sim_reply_error(req, 400,
                    "ready, registered, cpus, memory_mb and node_definitions are per controller");
  } else {
    sim->dflt.strict = strict;
    if (s.has_lic)
      sim->dflt.enterprise = s.enterprise;
    if (s.has_limit)
      sim->dflt.node_limit = s.node_limit;
    if (s.has_version)
      snprintf(sim->dflt.version, sizeof(sim->dflt.version), "%s", s.version);
    apply_timing(&sim->dflt.t, &s);
    if (apply) {
      struct apply_all a = {.s = &s};
      sim_map_each(&sim->ctrls, apply_timing_one, &a);
    }
    sim_reply_json(req, 200, defaults_json(sim));
  }
  settings_free(&s);
  cJSON_Delete(j);
}

static void stats(struct cml_sim *sim, struct evhttp_request *req)
{
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "controllers", (double)sim->ctrls.count);
  cJSON_AddNumberToObject(o, "requests", (double)sim->requests);
  cJSON_AddNumberToObject(o, "faults_hit", (double)sim->faults_hit);
  cJSON_AddNumberToObject(o, "dropped", (double)sim->dropped);
  size_t pend = 0, faults = 0;
  for (struct cml_pending *p = sim->pending; p; p = p->next)
    pend++;
  for (struct cml_fault *f = sim->faults; f; f = f->next)
    faults++;
  cJSON_AddNumberToObject(o, "pending", (double)pend);
  cJSON_AddNumberToObject(o, "fault_rules", (double)faults);
  sim_reply_json(req, 200, o);
}

/* ---- dispatch ---- */

void cml_admin_handle(struct cml_sim *sim, struct evhttp_request *req, const char *path)
{
  enum evhttp_cmd_type m = evhttp_request_get_command(req);
  char seg[3][CML_ID_MAX + 2] = {{0}};
  int n = 0;
  const char *s = path;
  while (*s) {
    while (*s == '/')
      s++;
    if (!*s)
      break;
    size_t len = strcspn(s, "/");
    if (n == 3 || len > CML_ID_MAX) {
      sim_reply_error(req, 404, "Not Found");
      return;
    }
    memcpy(seg[n], s, len);
    seg[n++][len] = '\0';
    s += len;
  }
  cml_log(sim, "event=admin method=%s path=/_sim%s", cml_method_str(req), path);
#define SEG(i, str) (n > (i) && !strcmp(seg[i], (str)))
  if (n == 1 && SEG(0, "health") && m == EVHTTP_REQ_GET) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddTrueToObject(o, "ok");
    cJSON_AddNumberToObject(o, "controllers", (double)sim->ctrls.count);
    sim_reply_json(req, 200, o);
  } else if (n == 1 && SEG(0, "stats") && m == EVHTTP_REQ_GET) {
    stats(sim, req);
  } else if (n == 1 && SEG(0, "config") && m == EVHTTP_REQ_GET) {
    sim_reply_json(req, 200, defaults_json(sim));
  } else if (n == 1 && SEG(0, "config") && m == EVHTTP_REQ_PATCH) {
    config_patch(sim, req);
  } else if (n == 1 && SEG(0, "reset") && m == EVHTTP_REQ_POST) {
    cml_ctrl_free_all(sim);
    for (struct cml_pending *p = sim->pending; p; p = p->next)
      p->ctrl = NULL;
    cml_faults_clear(sim);
    sim->dflt = sim->startup;
    cml_log(sim, "event=reset");
    sim_reply_empty(req, 204);
  } else if (n == 1 && SEG(0, "controllers") && m == EVHTTP_REQ_GET) {
    ctrl_list(sim, req);
  } else if (n == 1 && SEG(0, "controllers") && m == EVHTTP_REQ_POST) {
    ctrl_create(sim, req);
  } else if (n >= 2 && SEG(0, "controllers")) {
    struct cml_ctrl *c = cml_ctrl_get(sim, seg[1]);
    if (!c) {
      sim_reply_error(req, 404, "Unknown controller: %s", seg[1]);
    } else if (n == 2 && m == EVHTTP_REQ_GET) {
      sim_reply_json(req, 200, cml_ctrl_admin_json(c));
    } else if (n == 2 && m == EVHTTP_REQ_PATCH) {
      ctrl_patch(sim, req, c);
    } else if (n == 2 && m == EVHTTP_REQ_DELETE) {
      cml_log(sim, "event=controller_removed ctrl=%s", c->id);
      cml_ctrl_remove(sim, c);
      sim_reply_empty(req, 204);
    } else if (n == 3 && SEG(2, "activity") && m == EVHTTP_REQ_POST) {
      activity(req, c);
    } else if (n == 3 && SEG(2, "expire_tokens") && m == EVHTTP_REQ_POST) {
      /* Keeps the tokens but moves their expiry to now, so clients see "expired" 401s. */
      int64_t now = sim_now_ms();
      for (struct cml_token *t = c->tokens; t; t = t->next)
        t->expires_ms = now;
      sim_reply_empty(req, 204);
    } else if (n == 3 && SEG(2, "faults") && m == EVHTTP_REQ_POST) {
      fault_add(sim, req, c->id);
    } else {
      sim_reply_error(req, 404, "Not Found");
    }
  } else if (n == 1 && SEG(0, "faults") && m == EVHTTP_REQ_GET) {
    cJSON *arr = cJSON_CreateArray();
    for (struct cml_fault *f = sim->faults; f; f = f->next)
      cJSON_AddItemToArray(arr, fault_json(f));
    sim_reply_json(req, 200, arr);
  } else if (n == 1 && SEG(0, "faults") && m == EVHTTP_REQ_POST) {
    fault_add(sim, req, NULL);
  } else if (n == 1 && SEG(0, "faults") && m == EVHTTP_REQ_DELETE) {
    cml_faults_clear(sim);
    sim_reply_empty(req, 204);
  } else if (n == 2 && SEG(0, "faults") && m == EVHTTP_REQ_DELETE) {
    char *end;
    unsigned long long id = strtoull(seg[1], &end, 10);
    struct cml_fault **pp = &sim->faults;
    while (*pp && (*end || (*pp)->id != id))
      pp = &(*pp)->next;
    if (*pp) {
      struct cml_fault *f = *pp;
      *pp = f->next;
      free(f);
      sim_reply_empty(req, 204);
    } else {
      sim_reply_error(req, 404, "Unknown fault: %s", seg[1]);
    }
  } else {
    sim_reply_error(req, 404, "Not Found");
  }
#undef SEG
}
