/* cml-sim model: virtual controllers, labs, nodes, tokens, telemetry and the lab state machine
 * (timed transitions on the loop). Also renders labs and nodes as CML 2.9 JSON. */
#include "cml_sim.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

/* ---- controllers ---- */

bool cml_ctrl_id_valid(const char *id)
{
  size_t n = strlen(id);
  if (n == 0 || n > CML_ID_MAX || !strcmp(id, "_sim") || !strcmp(id, "api"))
    return false;
  for (size_t i = 0; i < n; i++) {
    char ch = id[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '.' || ch == '_' || ch == '-'))
      return false;
  }
  return true;
}

struct cml_ctrl *cml_ctrl_get(struct cml_sim *sim, const char *id)
{
  return sim_map_get(&sim->ctrls, id);
}

struct cml_ctrl *cml_ctrl_create(struct cml_sim *sim, const char *id)
{
  if (!cml_ctrl_id_valid(id) || cml_ctrl_get(sim, id))
    return NULL;
  struct cml_ctrl *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  c->sim = sim;
  snprintf(c->id, sizeof(c->id), "%s", id);
  snprintf(c->version, sizeof(c->version), "%s", sim->dflt.version);
  c->enterprise = sim->dflt.enterprise;
  c->node_limit = sim->dflt.node_limit;
  c->ready = true;
  c->registered = true;
  c->registered_wall_ms = sim_wall_ms();
  c->cpus = 48;
  c->memory_mb = 192 * 1024;
  c->disk_gb = 128;
  c->t = sim->dflt.t;
  sim_uuid4(c->compute_id);
  sim_uuid4(c->owner_id);
  sim_uuid4(c->product_uuid);
  if (cml_ctrl_set_node_defs(c, sim->node_defs, sim->nnode_defs) < 0 ||
      sim_map_put(&sim->ctrls, c->id, c) < 0) {
    cml_strv_free(c->node_defs, c->nnode_defs);
    free(c);
    return NULL;
  }
  return c;
}

int64_t cml_ctrl_node_limit(const struct cml_ctrl *c)
{
  if (c->node_limit > 0)
    return c->node_limit;
  return c->enterprise ? 500 : 20;
}

static void ctrl_free(struct cml_ctrl *c)
{
  while (c->labs_head)
    cml_lab_free(c->labs_head);
  cml_tokens_clear(c);
  cml_strv_free(c->node_defs, c->nnode_defs);
  free(c->tel);
  free(c);
}

void cml_ctrl_remove(struct cml_sim *sim, struct cml_ctrl *c)
{
  sim_map_del(&sim->ctrls, c->id);
  cml_pending_forget_ctrl(sim, c);
  ctrl_free(c);
}

static void free_each(const char *key, void *val, void *ud)
{
  (void)key;
  (void)ud;
  ctrl_free(val);
}

void cml_ctrl_free_all(struct cml_sim *sim)
{
  sim_map_each(&sim->ctrls, free_each, NULL);
  sim_map_clear(&sim->ctrls);
}

/* ---- node definitions ---- */

bool cml_node_def_id_valid(const char *id)
{
  size_t n = id ? strlen(id) : 0;
  if (n == 0 || n > 250 || id[0] == '.')
    return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)id[i];
    if (ch < 0x20 || ch == 0x7f || strchr("!@#%^&*();$/\\", ch))
      return false;
  }
  return true;
}

void cml_strv_free(char **v, size_t n)
{
  for (size_t i = 0; v && i < n; i++)
    free(v[i]);
  free(v);
}

/* Appends id unless present; the list has room for CML_NODE_DEFS_MAX. */
static int strv_add_unique(char **v, size_t *n, const char *id, size_t len)
{
  for (size_t i = 0; i < *n; i++)
    if (strlen(v[i]) == len && !memcmp(v[i], id, len))
      return 0;
  if (*n == CML_NODE_DEFS_MAX)
    return -2;
  if (!(v[*n] = strndup(id, len)))
    return -1;
  (*n)++;
  return 0;
}

__attribute__((format(printf, 5, 6))) static int defs_fail(char **v, size_t n, char *err,
                                                           size_t errlen, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  cml_strv_free(v, n);
  return -1;
}

int cml_node_defs_parse_csv(const char *csv, char ***out, size_t *n, char *err, size_t errlen)
{
  char **v = calloc(CML_NODE_DEFS_MAX, sizeof(*v));
  size_t k = 0;
  if (!v)
    return defs_fail(NULL, 0, err, errlen, "out of memory");
  for (const char *s = csv; s && *s;) {
    size_t len = strcspn(s, ",");
    char id[256];
    snprintf(id, sizeof(id), "%.*s", (int)(len < 255 ? len : 255), s);
    if (len > 250 || !cml_node_def_id_valid(id))
      return defs_fail(v, k, err, errlen, "not a node definition id: \"%s\"", id);
    int rc = strv_add_unique(v, &k, s, len);
    if (rc == -2)
      return defs_fail(v, k, err, errlen, "more than %d node definitions", CML_NODE_DEFS_MAX);
    if (rc < 0)
      return defs_fail(v, k, err, errlen, "out of memory");
    s += len;
    if (*s == ',')
      s++;
  }
  *out = v;
  *n = k;
  return 0;
}

int cml_node_defs_from_json(const cJSON *arr, char ***out, size_t *n, char *err, size_t errlen)
{
  if (!cJSON_IsArray(arr))
    return defs_fail(NULL, 0, err, errlen, "node_definitions must be an array of ids");
  char **v = calloc(CML_NODE_DEFS_MAX, sizeof(*v));
  size_t k = 0;
  if (!v)
    return defs_fail(NULL, 0, err, errlen, "out of memory");
  const cJSON *it;
  cJSON_ArrayForEach(it, arr) {
    if (!cJSON_IsString(it) || !cml_node_def_id_valid(it->valuestring))
      return defs_fail(v, k, err, errlen, "not a node definition id: %.64s",
                       cJSON_IsString(it) ? it->valuestring : "(not a string)");
    int rc = strv_add_unique(v, &k, it->valuestring, strlen(it->valuestring));
    if (rc == -2)
      return defs_fail(v, k, err, errlen, "more than %d node definitions", CML_NODE_DEFS_MAX);
    if (rc < 0)
      return defs_fail(v, k, err, errlen, "out of memory");
  }
  *out = v;
  *n = k;
  return 0;
}

int cml_ctrl_set_node_defs(struct cml_ctrl *c, char *const *v, size_t n)
{
  char **copy = calloc(n ? n : 1, sizeof(*copy));
  if (!copy)
    return -1;
  for (size_t i = 0; i < n; i++)
    if (!(copy[i] = strdup(v[i]))) {
      cml_strv_free(copy, i);
      return -1;
    }
  cml_strv_free(c->node_defs, c->nnode_defs);
  c->node_defs = copy;
  c->nnode_defs = n;
  return 0;
}

/* ---- tokens ---- */

void cml_tokens_clear(struct cml_ctrl *c)
{
  while (c->tokens) {
    struct cml_token *t = c->tokens;
    c->tokens = t->next;
    free(t);
  }
  c->ntokens = 0;
}

static void tokens_prune(struct cml_ctrl *c, int64_t now)
{
  struct cml_token **pp = &c->tokens;
  size_t kept = 0;
  while (*pp) {
    struct cml_token *t = *pp;
    /* Expired tokens are kept a while (one TTL) so that the 401 can say "expired". */
    if (t->expires_ms + c->t.token_ttl_ms < now || kept >= CML_TOKENS_MAX) {
      *pp = t->next;
      free(t);
      c->ntokens--;
      continue;
    }
    kept++;
    pp = &t->next;
  }
}

const char *cml_token_issue(struct cml_ctrl *c)
{
  int64_t now = sim_now_ms();
  tokens_prune(c, now);
  char payload[256], hdr64[64], pay64[360], sig64[64];
  unsigned char sig[32];
  sim_random(sig, sizeof(sig));
  int64_t wall = sim_wall_ms() / 1000;
  snprintf(payload, sizeof(payload),
           "{\"iss\":\"cml-sim\",\"sub\":\"%s\",\"ctrl\":\"%s\",\"iat\":%lld,\"exp\":%lld}",
           c->owner_id, c->id, (long long)wall, (long long)(wall + c->t.token_ttl_ms / 1000));
  static const char hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
  sim_b64url((const unsigned char *)hdr, strlen(hdr), hdr64);
  sim_b64url((const unsigned char *)payload, strlen(payload), pay64);
  sim_b64url(sig, sizeof(sig), sig64);
  size_t n = strlen(hdr64) + strlen(pay64) + strlen(sig64) + 3;
  struct cml_token *t = malloc(sizeof(*t) + n);
  if (!t)
    return NULL;
  snprintf(t->value, n, "%s.%s.%s", hdr64, pay64, sig64);
  t->expires_ms = now + c->t.token_ttl_ms;
  t->next = c->tokens; /* newest first, so the cap drops the oldest */
  c->tokens = t;
  c->ntokens++;
  tokens_prune(c, now);
  return c->tokens->value;
}

int cml_token_check(struct cml_ctrl *c, const char *token)
{
  if (!token || !*token)
    return -1;
  int64_t now = sim_now_ms();
  for (struct cml_token *t = c->tokens; t; t = t->next)
    if (!strcmp(t->value, token))
      return t->expires_ms > now ? 0 : -2;
  return -1;
}

/* ---- telemetry ---- */

void cml_tel_add(struct cml_ctrl *c, const char *category, const char *lab_id, const char *detail,
                 int64_t count)
{
  if (!c->tel) {
    c->tel = calloc(CML_TEL_RING, sizeof(*c->tel));
    if (!c->tel)
      return;
  }
  struct cml_tel *e = &c->tel[(c->tel_head + c->tel_count) % CML_TEL_RING];
  if (c->tel_count == CML_TEL_RING)
    c->tel_head = (c->tel_head + 1) % CML_TEL_RING;
  else
    c->tel_count++;
  e->wall_ms = sim_wall_ms();
  e->category = category;
  snprintf(e->lab_id, sizeof(e->lab_id), "%s", lab_id ? lab_id : "");
  snprintf(e->detail, sizeof(e->detail), "%s", detail ? detail : "");
  e->count = count;
}

/* ---- nodes and labs ---- */

static bool billable(const struct cml_node *n)
{
  /* CML does not count unmanaged switches and external connectors against the licence. */
  return strcmp(n->node_definition, "unmanaged_switch") != 0 &&
         strcmp(n->node_definition, "external_connector") != 0;
}

static bool running(const struct cml_node *n)
{
  return n->state == NODE_QUEUED || n->state == NODE_STARTED || n->state == NODE_BOOTED;
}

/* Resources a node uses when running: its own cpus/ram, else the node definition's default. */
static void node_resources(const struct cml_node *n, int64_t *cpus, int64_t *ram)
{
  static const struct {
    const char *def;
    int64_t cpus, ram;
  } defs[] = {
      {"iosv", 1, 512},          {"iosvl2", 1, 768},         {"csr1000v", 1, 3072},
      {"cat8000v", 1, 4096},     {"iosxrv9000", 4, 20480},   {"nxosv9000", 2, 8192},
      {"asav", 1, 2048},         {"alpine", 1, 512},         {"ubuntu", 1, 2048},
      {"server", 1, 256},        {"desktop", 1, 1024},       {"unmanaged_switch", 0, 0},
      {"external_connector", 0, 0},
  };
  *cpus = 1;
  *ram = 2048;
  for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++)
    if (!strcmp(defs[i].def, n->node_definition)) {
      *cpus = defs[i].cpus;
      *ram = defs[i].ram;
    }
  if (n->cpus > 0)
    *cpus = n->cpus;
  if (n->ram > 0)
    *ram = n->ram;
}

void cml_ctrl_usage(const struct cml_ctrl *c, struct cml_usage *u)
{
  memset(u, 0, sizeof(*u));
  for (const struct cml_lab *l = c->labs_head; l; l = l->next) {
    u->labs++;
    for (size_t i = 0; i < l->nnodes; i++) {
      const struct cml_node *n = &l->nodes[i];
      u->nodes++;
      if (!running(n))
        continue;
      int64_t cpus, ram;
      node_resources(n, &cpus, &ram);
      u->running_nodes++;
      u->vcpus += cpus;
      u->ram_mb += ram;
      if (billable(n))
        u->billable_running++;
    }
  }
}

static void node_clear(struct cml_node *n)
{
  free(n->label);
  free(n->node_definition);
  free(n->image_definition);
  for (size_t i = 0; i < n->ntags; i++)
    free(n->tags[i]);
  free(n->tags);
  cJSON_Delete(n->configuration);
  free(n->extracted);
}

void cml_lab_free(struct cml_lab *lab)
{
  if (!lab)
    return;
  struct cml_ctrl *c = lab->ctrl;
  if (c && (lab->prev || c->labs_head == lab)) {
    if (lab->prev)
      lab->prev->next = lab->next;
    else
      c->labs_head = lab->next;
    if (lab->next)
      lab->next->prev = lab->prev;
    else
      c->labs_tail = lab->prev;
    c->nlabs--;
  }
  if (lab->timer)
    event_free(lab->timer);
  for (size_t i = 0; i < lab->nnodes; i++)
    node_clear(&lab->nodes[i]);
  free(lab->nodes);
  free(lab->title);
  free(lab->description);
  free(lab->notes);
  free(lab);
}

void cml_lab_attach(struct cml_ctrl *c, struct cml_lab *lab)
{
  lab->ctrl = c;
  lab->next = NULL;
  lab->prev = c->labs_tail;
  if (c->labs_tail)
    c->labs_tail->next = lab;
  else
    c->labs_head = lab;
  c->labs_tail = lab;
  c->nlabs++;
}

struct cml_lab *cml_lab_get(struct cml_ctrl *c, const char *id)
{
  for (struct cml_lab *l = c->labs_head; l; l = l->next)
    if (!strcmp(l->id, id))
      return l;
  return NULL;
}

struct cml_node *cml_node_get(struct cml_lab *lab, const char *id)
{
  for (size_t i = 0; i < lab->nnodes; i++)
    if (!strcmp(lab->nodes[i].id, id))
      return &lab->nodes[i];
  return NULL;
}

static char *dup_trunc(const char *s, size_t max)
{
  size_t n = strlen(s);
  if (n > max) {
    n = max;
    /* do not cut a UTF-8 sequence in half */
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
      n--;
  }
  return strndup(s, n);
}

static int errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int errf(char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

static const char *const topo_versions[] = {"0.0.1", "0.0.2", "0.0.3", "0.0.4", "0.0.5",
                                            "0.1.0", "0.2.0", "0.2.1", "0.2.2", "0.3.0"};

static int node_from_topology(struct cml_node *n, const cJSON *jn, size_t idx, cJSON *warnings,
                              char *err, size_t errlen)
{
  if (!cJSON_IsObject(jn))
    return errf(err, errlen, "nodes[%zu] is not an object", idx);
  const char *label = sim_json_str(jn, "label");
  const char *def = sim_json_str(jn, "node_definition");
  if (!label || !*label || strlen(label) > 128)
    return errf(err, errlen, "nodes[%zu]: 'label' must be a string of 1-128 characters", idx);
  if (!def || !*def || strlen(def) > 250)
    return errf(err, errlen, "nodes[%zu] (%s): 'node_definition' is required", idx, label);
  const cJSON *tid = cJSON_GetObjectItemCaseSensitive(jn, "id");
  if (!cJSON_IsString(tid) && !cJSON_IsNumber(tid))
    return errf(err, errlen, "nodes[%zu] (%s): 'id' is required", idx, label);
  sim_uuid4(n->id);
  n->label = strdup(label);
  n->node_definition = strdup(def);
  const char *img = sim_json_str(jn, "image_definition");
  n->image_definition = img && *img ? strdup(img) : NULL;
  if (!n->label || !n->node_definition)
    return errf(err, errlen, "out of memory");
  int64_t v;
  if (sim_json_int(jn, "x", &v))
    n->x = v < -15000 ? -15000 : v > 15000 ? 15000 : v;
  if (sim_json_int(jn, "y", &v))
    n->y = v < -15000 ? -15000 : v > 15000 ? 15000 : v;
  if (sim_json_int(jn, "cpus", &v) && v >= 1 && v <= 128)
    n->cpus = v;
  if (sim_json_int(jn, "ram", &v) && v >= 1 && v <= 1048576)
    n->ram = v;
  const cJSON *tags = cJSON_GetObjectItemCaseSensitive(jn, "tags");
  if (tags && !cJSON_IsNull(tags)) {
    if (!cJSON_IsArray(tags))
      return errf(err, errlen, "nodes[%zu] (%s): 'tags' must be a list", idx, label);
    int nt = cJSON_GetArraySize(tags);
    n->tags = calloc((size_t)nt + 1, sizeof(char *));
    if (!n->tags)
      return errf(err, errlen, "out of memory");
    const cJSON *t;
    cJSON_ArrayForEach(t, tags) {
      if (!cJSON_IsString(t) || strlen(t->valuestring) > 64)
        return errf(err, errlen, "nodes[%zu] (%s): tags must be strings of at most 64 characters",
                    idx, label);
      if (!(n->tags[n->ntags++] = strdup(t->valuestring)))
        return errf(err, errlen, "out of memory");
    }
  }
  const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(jn, "configuration");
  if (cfg && !cJSON_IsNull(cfg)) {
    if (!cJSON_IsString(cfg) && !cJSON_IsArray(cfg) && !cJSON_IsObject(cfg))
      return errf(err, errlen, "nodes[%zu] (%s): bad 'configuration'", idx, label);
    n->configuration = cJSON_Duplicate(cfg, 1);
  }
  if (!cJSON_GetObjectItemCaseSensitive(jn, "x") || !cJSON_GetObjectItemCaseSensitive(jn, "y")) {
    char w[200];
    snprintf(w, sizeof(w), "Node %s has no position, placed at 0,0", label);
    cJSON_AddItemToArray(warnings, cJSON_CreateString(w));
  }
  n->state = NODE_DEFINED;
  return 0;
}

struct cml_lab *cml_lab_from_topology(struct cml_ctrl *c, const cJSON *topo, const char *title,
                                      cJSON *warnings, char *err, size_t errlen)
{
  struct cml_lab *lab = NULL;
  if (!cJSON_IsObject(topo)) {
    errf(err, errlen, "The body is not a topology (expected a mapping with nodes, links, lab)");
    return NULL;
  }
  const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(topo, "nodes");
  const cJSON *links = cJSON_GetObjectItemCaseSensitive(topo, "links");
  const cJSON *labj = cJSON_GetObjectItemCaseSensitive(topo, "lab");
  if (!cJSON_IsArray(nodes)) {
    errf(err, errlen, "The topology has no 'nodes' list");
    return NULL;
  }
  if (!cJSON_IsObject(labj)) {
    errf(err, errlen, "The topology has no 'lab' section");
    return NULL;
  }
  if (links && !cJSON_IsArray(links) && !cJSON_IsNull(links)) {
    errf(err, errlen, "The topology's 'links' is not a list");
    return NULL;
  }
  if (!links)
    cJSON_AddItemToArray(warnings, cJSON_CreateString("Topology has no 'links' list"));
  const cJSON *ver = cJSON_GetObjectItemCaseSensitive(labj, "version");
  if (ver) {
    bool ok = false;
    for (size_t i = 0; cJSON_IsString(ver) && i < sizeof(topo_versions) / sizeof(*topo_versions);
         i++)
      ok = ok || !strcmp(ver->valuestring, topo_versions[i]);
    if (!ok) {
      errf(err, errlen, "Unsupported topology schema version");
      return NULL;
    }
  }
  lab = calloc(1, sizeof(*lab));
  if (!lab)
    goto oom;
  lab->ctrl = NULL;
  sim_uuid4(lab->id);
  lab->created_ms = lab->modified_ms = sim_wall_ms();
  const char *t = title && *title ? title : sim_json_str(labj, "title");
  char deflt[64];
  if (!t || !*t) {
    char ts[40];
    sim_rfc3339(lab->created_ms, ts, sizeof(ts));
    snprintf(deflt, sizeof(deflt), "Lab at %.16s", ts);
    t = deflt;
  }
  lab->title = dup_trunc(t, 64);
  const char *d = sim_json_str(labj, "description");
  lab->description = dup_trunc(d ? d : "", 4096);
  const char *nt = sim_json_str(labj, "notes");
  lab->notes = dup_trunc(nt ? nt : "", 32768);
  if (!lab->title || !lab->description || !lab->notes)
    goto oom;
  size_t nn = (size_t)cJSON_GetArraySize(nodes);
  if (nn) {
    lab->nodes = calloc(nn, sizeof(*lab->nodes));
    if (!lab->nodes)
      goto oom;
  }
  const cJSON *jn;
  cJSON_ArrayForEach(jn, nodes) {
    struct cml_node *n = &lab->nodes[lab->nnodes++];
    if (node_from_topology(n, jn, lab->nnodes - 1, warnings, err, errlen) < 0)
      goto fail;
    const cJSON *tid = cJSON_GetObjectItemCaseSensitive(jn, "id");
    for (size_t k = 0; k + 1 < lab->nnodes; k++) {
      const cJSON *other = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(nodes, (int)k), "id");
      if (cJSON_Compare(tid, other, 1)) {
        errf(err, errlen, "Duplicate node id in topology (node %s)", n->label);
        goto fail;
      }
    }
  }
  lab->nlinks = cJSON_IsArray(links) ? (size_t)cJSON_GetArraySize(links) : 0;
  lab->state = LAB_DEFINED;
  lab->phase = PH_IDLE;
  return lab;
oom:
  errf(err, errlen, "out of memory");
fail:
  cml_lab_free(lab);
  return NULL;
}

/* ---- state machine ---- */

const char *cml_lab_state(const struct cml_lab *lab)
{
  switch (lab->state) {
  case LAB_STARTED: return "STARTED";
  case LAB_STOPPED: return "STOPPED";
  default: return "DEFINED_ON_CORE";
  }
}

const char *cml_node_state_str(enum cml_node_state s)
{
  switch (s) {
  case NODE_STOPPED: return "STOPPED";
  case NODE_QUEUED: return "QUEUED";
  case NODE_STARTED: return "STARTED";
  case NODE_BOOTED: return "BOOTED";
  default: return "DEFINED_ON_CORE";
  }
}

bool cml_lab_converged(const struct cml_lab *lab)
{
  if (lab->state != LAB_STARTED || lab->phase != PH_IDLE)
    return false;
  for (size_t i = 0; i < lab->nnodes; i++)
    if (lab->nodes[i].state != NODE_BOOTED)
      return false;
  return true;
}

static void set_nodes(struct cml_lab *lab, enum cml_node_state s)
{
  for (size_t i = 0; i < lab->nnodes; i++)
    lab->nodes[i].state = s;
}

static void on_lab_timer(evutil_socket_t fd, short what, void *arg);

static void arm(struct cml_lab *lab, enum cml_phase phase, int64_t ms)
{
  lab->phase = phase;
  lab->modified_ms = sim_wall_ms();
  if (!lab->timer) {
    lab->timer = evtimer_new(lab->ctrl->sim->base, on_lab_timer, lab);
    if (!lab->timer) {
      /* Without a timer the transition completes at once; keeps the model consistent. */
      on_lab_timer(-1, 0, lab);
      return;
    }
  }
  if (ms < 0)
    ms = 0;
  struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)((ms % 1000) * 1000)};
  evtimer_add(lab->timer, &tv);
}

static void disarm(struct cml_lab *lab)
{
  if (lab->timer)
    evtimer_del(lab->timer);
  lab->phase = PH_IDLE;
}

static void on_lab_timer(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct cml_lab *lab = arg;
  struct cml_ctrl *c = lab->ctrl;
  switch (lab->phase) {
  case PH_QUEUED:
    /* A quarter of the boot time queued, the rest booting. */
    set_nodes(lab, NODE_STARTED);
    arm(lab, PH_BOOTING, c->t.boot_ms - c->t.boot_ms / 4);
    return;
  case PH_BOOTING:
    set_nodes(lab, NODE_BOOTED);
    cml_tel_add(c, "boot_node", lab->id, NULL, (int64_t)lab->nnodes);
    break;
  case PH_STOPPING:
    set_nodes(lab, NODE_STOPPED);
    lab->state = LAB_STOPPED;
    cml_tel_add(c, "stop_lab", lab->id, NULL, (int64_t)lab->nnodes);
    break;
  case PH_WIPING:
    set_nodes(lab, NODE_DEFINED);
    for (size_t i = 0; i < lab->nnodes; i++) {
      free(lab->nodes[i].extracted);
      lab->nodes[i].extracted = NULL;
    }
    lab->state = LAB_DEFINED;
    cml_tel_add(c, "wipe_node", lab->id, NULL, (int64_t)lab->nnodes);
    break;
  default:
    break;
  }
  lab->phase = PH_IDLE;
  lab->modified_ms = sim_wall_ms();
  cml_log(c->sim, "event=lab_state ctrl=%s lab=%s state=%s", c->id, lab->id, cml_lab_state(lab));
}

int cml_lab_start(struct cml_lab *lab, char *err, size_t errlen)
{
  struct cml_ctrl *c = lab->ctrl;
  if (lab->phase == PH_WIPING) {
    errf(err, errlen, "Lab %s is being wiped and cannot be started", lab->id);
    return 400;
  }
  if (lab->state == LAB_STARTED && lab->phase != PH_STOPPING)
    return 0; /* already queued, booting or booted */
  if (!c->registered) {
    errf(err, errlen, "Cannot start lab: the product is not licensed (register it first)");
    return 400;
  }
  struct cml_usage u;
  cml_ctrl_usage(c, &u);
  int64_t mine_running = 0, mine = 0;
  for (size_t i = 0; i < lab->nnodes; i++) {
    if (!billable(&lab->nodes[i]))
      continue;
    mine++;
    if (running(&lab->nodes[i]))
      mine_running++;
  }
  int64_t limit = cml_ctrl_node_limit(c);
  if (u.billable_running - mine_running + mine > limit) {
    errf(err, errlen,
         "Node license limit exceeded: starting this lab needs %lld nodes, %lld of %lld are in use",
         (long long)mine, (long long)(u.billable_running - mine_running), (long long)limit);
    return 400;
  }
  disarm(lab);
  set_nodes(lab, NODE_QUEUED);
  lab->state = LAB_STARTED;
  cml_tel_add(c, "start_lab", lab->id, NULL, (int64_t)lab->nnodes);
  arm(lab, PH_QUEUED, c->t.boot_ms / 4);
  return 0;
}

int cml_lab_stop(struct cml_lab *lab, char *err, size_t errlen)
{
  (void)err;
  (void)errlen;
  if (lab->state != LAB_STARTED || lab->phase == PH_STOPPING)
    return 0; /* stopping, stopped, defined or wiping: nothing to do */
  disarm(lab);
  arm(lab, PH_STOPPING, lab->ctrl->t.stop_ms);
  return 0;
}

int cml_lab_wipe(struct cml_lab *lab, char *err, size_t errlen)
{
  if (lab->state == LAB_STARTED) {
    errf(err, errlen, "Lab %s is running: stop it before wiping", lab->id);
    return 400;
  }
  if (lab->phase == PH_WIPING || lab->state == LAB_DEFINED)
    return 0;
  arm(lab, PH_WIPING, lab->ctrl->t.wipe_ms);
  return 0;
}

int cml_lab_can_delete(struct cml_lab *lab, char *err, size_t errlen)
{
  if (lab->state == LAB_STARTED) {
    errf(err, errlen, "Lab %s is running: stop and wipe it before deleting", lab->id);
    return 400;
  }
  return 0;
}

/* ---- JSON ---- */

static void add_time(cJSON *o, const char *name, int64_t wall_ms)
{
  char ts[40];
  sim_rfc3339(wall_ms, ts, sizeof(ts));
  cJSON_AddStringToObject(o, name, ts);
}

static void add_opt_int(cJSON *o, const char *name, int64_t v)
{
  if (v > 0)
    cJSON_AddNumberToObject(o, name, (double)v);
  else
    cJSON_AddNullToObject(o, name);
}

cJSON *cml_lab_json(const struct cml_lab *lab)
{
  const struct cml_ctrl *c = lab->ctrl;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", lab->id);
  add_time(o, "created", lab->created_ms);
  add_time(o, "modified", lab->modified_ms);
  cJSON_AddStringToObject(o, "lab_description", lab->description);
  cJSON_AddStringToObject(o, "lab_notes", lab->notes);
  cJSON_AddStringToObject(o, "lab_title", lab->title);
  cJSON_AddStringToObject(o, "owner", c->owner_id);
  char user[33];
  memcpy(user, c->sim->username, sizeof(user) - 1); /* the spec caps owner_username at 32 */
  user[sizeof(user) - 1] = '\0';
  cJSON_AddStringToObject(o, "owner_username", user);
  cJSON_AddStringToObject(o, "owner_fullname", "");
  cJSON_AddStringToObject(o, "state", cml_lab_state(lab));
  cJSON_AddNumberToObject(o, "node_count", (double)lab->nnodes);
  cJSON_AddNumberToObject(o, "link_count", (double)lab->nlinks);
  cJSON_AddItemToObject(o, "groups", cJSON_CreateArray());
  const char *perms[] = {"lab_admin", "lab_edit", "lab_exec", "lab_view"};
  cJSON_AddItemToObject(o, "effective_permissions", cJSON_CreateStringArray(perms, 4));
  return o;
}

cJSON *cml_node_json(const struct cml_lab *lab, const struct cml_node *n, bool operational,
                     bool exclude_config)
{
  const struct cml_ctrl *c = lab->ctrl;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", n->id);
  cJSON_AddStringToObject(o, "lab_id", lab->id);
  cJSON_AddStringToObject(o, "label", n->label);
  cJSON_AddStringToObject(o, "node_definition", n->node_definition);
  if (n->image_definition)
    cJSON_AddStringToObject(o, "image_definition", n->image_definition);
  else
    cJSON_AddNullToObject(o, "image_definition");
  cJSON_AddNumberToObject(o, "x", (double)n->x);
  cJSON_AddNumberToObject(o, "y", (double)n->y);
  add_opt_int(o, "cpus", n->cpus);
  add_opt_int(o, "ram", n->ram);
  cJSON_AddNullToObject(o, "cpu_limit");
  cJSON_AddNullToObject(o, "data_volume");
  cJSON_AddNullToObject(o, "boot_disk_size");
  cJSON_AddFalseToObject(o, "hide_links");
  cJSON *tags = cJSON_AddArrayToObject(o, "tags");
  for (size_t i = 0; i < n->ntags; i++)
    cJSON_AddItemToArray(tags, cJSON_CreateString(n->tags[i]));
  cJSON_AddItemToObject(o, "parameters", cJSON_CreateObject());
  cJSON_AddStringToObject(o, "state", cml_node_state_str(n->state));
  cJSON_AddStringToObject(o, "boot_progress",
                          n->state == NODE_BOOTED                                ? "Booted"
                          : (n->state == NODE_QUEUED || n->state == NODE_STARTED) ? "Booting"
                                                                                  : "Not running");
  bool on = running(n);
  if (on)
    cJSON_AddStringToObject(o, "compute_id", c->compute_id);
  else
    cJSON_AddNullToObject(o, "compute_id");
  cJSON_AddNullToObject(o, "pinned_compute_id");
  cJSON_AddNullToObject(o, "resource_pool");
  cJSON_AddNullToObject(o, "iol_app_id");
  cJSON_AddNullToObject(o, "vnc_key");
  cJSON_AddItemToObject(o, "serial_consoles", cJSON_CreateArray());
  if (!exclude_config) {
    if (n->configuration)
      cJSON_AddItemToObject(o, "configuration", cJSON_Duplicate(n->configuration, 1));
    else
      cJSON_AddNullToObject(o, "configuration");
  }
  if (operational) {
    cJSON *op = cJSON_AddObjectToObject(o, "operational");
    int64_t cpus, ram;
    node_resources(n, &cpus, &ram);
    cJSON_AddNullToObject(op, "boot_disk_size");
    cJSON_AddNullToObject(op, "cpu_limit");
    add_opt_int(op, "cpus", cpus);
    cJSON_AddNullToObject(op, "data_volume");
    add_opt_int(op, "ram", ram);
    if (on)
      cJSON_AddStringToObject(op, "compute_id", c->compute_id);
    else
      cJSON_AddNullToObject(op, "compute_id");
    if (n->image_definition)
      cJSON_AddStringToObject(op, "image_definition", n->image_definition);
    else
      cJSON_AddNullToObject(op, "image_definition");
    cJSON_AddNullToObject(op, "vnc_key");
    cJSON_AddNullToObject(op, "resource_pool");
    cJSON_AddNullToObject(op, "iol_app_id");
    cJSON_AddItemToObject(op, "serial_consoles", cJSON_CreateArray());
  }
  return o;
}

cJSON *cml_ctrl_admin_json(const struct cml_ctrl *c)
{
  struct cml_usage u;
  cml_ctrl_usage(c, &u);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", c->id);
  cJSON_AddStringToObject(o, "version", c->version);
  cJSON_AddStringToObject(o, "license", c->enterprise ? "enterprise" : "personal");
  cJSON_AddNumberToObject(o, "node_limit", (double)cml_ctrl_node_limit(c));
  cJSON_AddBoolToObject(o, "ready", c->ready);
  cJSON_AddBoolToObject(o, "registered", c->registered);
  cJSON_AddNumberToObject(o, "cpus", (double)c->cpus);
  cJSON_AddNumberToObject(o, "memory_mb", (double)c->memory_mb);
  cJSON_AddNumberToObject(o, "labs", (double)u.labs);
  cJSON_AddNumberToObject(o, "nodes", (double)u.nodes);
  cJSON_AddNumberToObject(o, "running_nodes", (double)u.running_nodes);
  cJSON_AddNumberToObject(o, "billable_running_nodes", (double)u.billable_running);
  cJSON_AddNumberToObject(o, "tokens", (double)c->ntokens);
  cJSON_AddNumberToObject(o, "requests", (double)c->requests);
  cJSON *t = cJSON_AddObjectToObject(o, "timing");
  cJSON_AddNumberToObject(t, "import_ms", (double)c->t.import_ms);
  cJSON_AddNumberToObject(t, "boot_ms", (double)c->t.boot_ms);
  cJSON_AddNumberToObject(t, "stop_ms", (double)c->t.stop_ms);
  cJSON_AddNumberToObject(t, "wipe_ms", (double)c->t.wipe_ms);
  cJSON_AddNumberToObject(t, "token_ttl_ms", (double)c->t.token_ttl_ms);
  cJSON_AddNumberToObject(t, "latency_ms", (double)c->t.latency_ms);
  cJSON *nd = cJSON_AddArrayToObject(o, "node_definitions");
  for (size_t i = 0; i < c->nnode_defs; i++)
    cJSON_AddItemToArray(nd, cJSON_CreateString(c->node_defs[i]));
  cJSON *labs = cJSON_AddArrayToObject(o, "lab_list");
  for (const struct cml_lab *l = c->labs_head; l; l = l->next) {
    cJSON *lj = cJSON_CreateObject();
    cJSON_AddStringToObject(lj, "id", l->id);
    cJSON_AddStringToObject(lj, "title", l->title);
    cJSON_AddStringToObject(lj, "state", cml_lab_state(l));
    cJSON_AddNumberToObject(lj, "node_count", (double)l->nnodes);
    cJSON_AddItemToArray(labs, lj);
  }
  return o;
}
