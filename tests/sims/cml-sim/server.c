/* cml-sim server: command line, the evhttp listener, routing of /<controller>/api/v0/... to the
 * virtual controllers and /_sim/... to the admin API, faults/latency through deferred replies,
 * and a clean shutdown on SIGTERM/SIGINT (everything freed). */
#include "cml_sim.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/util.h>

void cml_log(struct cml_sim *sim, const char *fmt, ...)
{
  if (!sim->verbose)
    return;
  char ts[40];
  sim_rfc3339(sim_wall_ms(), ts, sizeof(ts));
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "ts=%s sim=cml ", ts);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

const char *cml_method_str(struct evhttp_request *req)
{
  switch (evhttp_request_get_command(req)) {
  case EVHTTP_REQ_GET: return "GET";
  case EVHTTP_REQ_POST: return "POST";
  case EVHTTP_REQ_PUT: return "PUT";
  case EVHTTP_REQ_DELETE: return "DELETE";
  case EVHTTP_REQ_PATCH: return "PATCH";
  case EVHTTP_REQ_HEAD: return "HEAD";
  case EVHTTP_REQ_OPTIONS: return "OPTIONS";
  default: return "OTHER";
  }
}

/* ---- pending (deferred) replies ---- */

static void pending_unlink_free(struct cml_pending *p)
{
  struct cml_sim *sim = p->sim;
  if (p->prev)
    p->prev->next = p->next;
  else
    sim->pending = p->next;
  if (p->next)
    p->next->prev = p->prev;
  if (p->ev)
    event_free(p->ev);
  free(p->path);
  cml_lab_free(p->lab);
  cJSON_Delete(p->warnings);
  free(p);
}

static void drop_connection(struct cml_sim *sim, struct evhttp_request *req)
{
  struct evhttp_connection *evcon = evhttp_request_get_connection(req);
  sim->dropped++;
  if (evcon)
    evhttp_connection_free(evcon); /* frees req with it */
  else
    evhttp_send_reply(req, 500, "Dropped", NULL); /* peer already gone: this frees req */
}

static void on_pending(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct cml_pending *p = arg;
  struct cml_sim *sim = p->sim;
  struct evhttp_request *req = p->req;
  switch (p->kind) {
  case PEND_DROP:
    pending_unlink_free(p);
    drop_connection(sim, req);
    return;
  case PEND_ERROR:
    sim_reply_error(req, p->status, "Injected fault (cml-sim)");
    break;
  case PEND_DISPATCH:
    if (p->ctrl)
      cml_api_handle(sim, p->ctrl, req, p->path);
    else
      sim_reply_error(req, 404, "Unknown controller");
    break;
  case PEND_IMPORT:
    if (p->ctrl) {
      struct cml_lab *lab = p->lab;
      p->lab = NULL;
      cml_lab_attach(p->ctrl, lab);
      cml_tel_add(p->ctrl, "import_lab", lab->id, NULL, (int64_t)lab->nnodes);
      cml_log(sim, "event=lab_import ctrl=%s lab=%s nodes=%zu title=\"%s\"", p->ctrl->id, lab->id,
              lab->nnodes, lab->title);
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "id", lab->id);
      cJSON_AddItemToObject(o, "warnings", p->warnings);
      p->warnings = NULL;
      sim_reply_json(req, 200, o);
    } else {
      sim_reply_error(req, 404, "Unknown controller");
    }
    break;
  default:
    sim_reply_error(req, 500, "internal error");
    break;
  }
  pending_unlink_free(p);
}

static struct cml_pending *pending_add(struct cml_sim *sim, struct cml_ctrl *c,
                                       struct evhttp_request *req, int kind, int64_t delay_ms)
{
  struct cml_pending *p = calloc(1, sizeof(*p));
  if (!p)
    return NULL;
  p->sim = sim;
  p->req = req;
  p->ctrl = c;
  p->kind = kind;
  p->ev = evtimer_new(sim->base, on_pending, p);
  if (!p->ev) {
    free(p);
    return NULL;
  }
  p->next = sim->pending;
  if (sim->pending)
    sim->pending->prev = p;
  sim->pending = p;
  if (delay_ms < 0)
    delay_ms = 0;
  struct timeval tv = {.tv_sec = (time_t)(delay_ms / 1000),
                       .tv_usec = (suseconds_t)((delay_ms % 1000) * 1000)};
  evtimer_add(p->ev, &tv);
  return p;
}

void cml_pending_import(struct cml_sim *sim, struct cml_ctrl *c, struct evhttp_request *req,
                        struct cml_lab *lab, cJSON *warnings, int64_t delay_ms)
{
  struct cml_pending *p = pending_add(sim, c, req, PEND_IMPORT, delay_ms);
  if (!p) {
    cml_lab_free(lab);
    cJSON_Delete(warnings);
    sim_reply_error(req, 500, "out of memory");
    return;
  }
  p->lab = lab;
  p->warnings = warnings;
}

void cml_pending_forget_ctrl(struct cml_sim *sim, struct cml_ctrl *c)
{
  for (struct cml_pending *p = sim->pending; p; p = p->next)
    if (p->ctrl == c)
      p->ctrl = NULL;
}

static void pending_free_all(struct cml_sim *sim)
{
  while (sim->pending) {
    struct cml_pending *p = sim->pending;
    struct evhttp_request *req = p->req;
    int kind = p->kind;
    pending_unlink_free(p);
    if (kind == PEND_DROP)
      drop_connection(sim, req);
    else
      sim_reply_error(req, 503, "cml-sim is shutting down");
  }
}

/* ---- routing ---- */

static void on_request(struct evhttp_request *req, void *arg)
{
  struct cml_sim *sim = arg;
  sim->requests++;
  const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
  const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
  if (!path || path[0] != '/') {
    sim_reply_error(req, 400, "Bad request path");
    return;
  }
  if (!strncmp(path, "/_sim", 5) && (path[5] == '/' || path[5] == '\0')) {
    cml_admin_handle(sim, req, path + 5);
    return;
  }
  char cid[CML_ID_MAX + 1];
  const char *api;
  if (!strncmp(path, "/api/v0", 7) && (path[7] == '/' || path[7] == '\0')) {
    snprintf(cid, sizeof(cid), "default");
    api = path; /* the un-prefixed form serves the controller named "default" */
  } else {
    const char *slash = strchr(path + 1, '/');
    size_t n = slash ? (size_t)(slash - path - 1) : strlen(path + 1);
    if (!slash || n == 0 || n > CML_ID_MAX || strncmp(slash, "/api/v0", 7) != 0 ||
        (slash[7] != '/' && slash[7] != '\0')) {
      sim_reply_error(req, 404, "Not Found (expected /<controller>/api/v0/...)");
      return;
    }
    memcpy(cid, path + 1, n);
    cid[n] = '\0';
    api = slash;
  }
  struct cml_ctrl *c = cml_ctrl_get(sim, cid);
  if (!c) {
    if (sim->dflt.strict || !cml_ctrl_id_valid(cid)) {
      sim_reply_error(req, 404, "Unknown controller: %s", cid);
      return;
    }
    c = cml_ctrl_create(sim, cid);
    if (!c) {
      sim_reply_error(req, 500, "cannot create controller");
      return;
    }
    cml_log(sim, "event=controller_created ctrl=%s auto=true", cid);
  }
  const char *rest = api + 7; /* after "/api/v0" */
  const char *method = cml_method_str(req);
  cml_log(sim, "event=request ctrl=%s method=%s path=%s", cid, method, api);

  struct cml_fault f;
  bool hit = cml_fault_match(sim, cid, method, api, &f);
  int64_t delay = c->t.latency_ms + (hit ? f.delay_ms : 0);
  if (hit) {
    sim->faults_hit++;
    cml_log(sim, "event=fault ctrl=%s rule=%llu status=%d delay_ms=%lld drop=%d", cid,
            (unsigned long long)f.id, f.status, (long long)f.delay_ms, f.drop);
  }
  int kind = hit && f.drop ? PEND_DROP : hit && f.status ? PEND_ERROR : PEND_DISPATCH;
  if (kind == PEND_DISPATCH && delay <= 0) {
    cml_api_handle(sim, c, req, rest);
    return;
  }
  struct cml_pending *p = pending_add(sim, c, req, kind, delay);
  if (!p || (kind == PEND_DISPATCH && !(p->path = strdup(rest)))) {
    if (p)
      pending_unlink_free(p);
    sim_reply_error(req, 500, "out of memory");
    return;
  }
  p->status = hit ? f.status : 0;
}

/* ---- command line ---- */

static void usage(FILE *to)
{
  fprintf(to,
          "usage: cml-sim --listen ADDR:PORT [options]\n"
          "  --listen ADDR:PORT     address to serve on (PORT 0 picks a free port)\n"
          "  --port-file PATH       write the bound port to PATH once listening\n"
          "  --username NAME        API user (default admin)\n"
          "  --password PASS        API password (default admin-sim)\n"
          "  --token-ttl-ms MS      token lifetime (default 3600000)\n"
          "  --import-ms MS         time an import takes (default 100)\n"
          "  --boot-ms MS           start -> BOOTED (default 1000)\n"
          "  --stop-ms MS           stop -> STOPPED (default 300)\n"
          "  --wipe-ms MS           wipe -> DEFINED_ON_CORE (default 200)\n"
          "  --latency-ms MS        added to every API request (default 0)\n"
          "  --license personal|enterprise   licence of new controllers (default enterprise)\n"
          "  --node-limit N         licensed node count (default personal 20, enterprise 500)\n"
          "  --version V            CML version reported (default 2.9.0)\n"
          "  --strict               do not create unknown controllers on first use\n"
          "  --node-definitions A,B,C  node definition ids new controllers offer at\n"
          "                         GET /api/v0/node_definitions (\"\" = none; default: the\n"
          "                         reference platform and the sample topologies' definitions)\n"
          "  --verbose              log every request to stderr\n");
}

static int parse_ms(const char *s, int64_t *out)
{
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || end == s || v < 0 || v > 86400000LL * 365)
    return -1;
  *out = v;
  return 0;
}

static int parse_listen(const char *s, char *addr, size_t alen, unsigned short *port)
{
  const char *colon = strrchr(s, ':');
  if (!colon || colon == s)
    return -1;
  const char *a = s;
  size_t n = (size_t)(colon - s);
  if (a[0] == '[' && n >= 2 && a[n - 1] == ']') {
    a++;
    n -= 2;
  }
  if (n == 0 || n >= alen)
    return -1;
  memcpy(addr, a, n);
  addr[n] = '\0';
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end || end == colon + 1 || p < 0 || p > 65535)
    return -1;
  *port = (unsigned short)p;
  return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
  (void)what;
  struct cml_sim *sim = arg;
  fprintf(stderr, "cml-sim: signal %d, shutting down\n", (int)sig);
  event_base_loopexit(sim->base, NULL);
}

int main(int argc, char **argv)
{
  struct cml_sim sim = {0};
  int rc = 1;
  struct event *sigterm = NULL, *sigint = NULL;
  char addr[128] = "";
  unsigned short port = 0;
  const char *port_file = NULL;
  bool have_listen = false;

  sim_map_init(&sim.ctrls);
  sim.dflt.t = (struct cml_timing){.import_ms = 100, .boot_ms = 1000, .stop_ms = 300,
                                   .wipe_ms = 200, .token_ttl_ms = 3600000, .latency_ms = 0};
  sim.dflt.enterprise = true;
  snprintf(sim.dflt.version, sizeof(sim.dflt.version), "2.9.0");
  snprintf(sim.username, sizeof(sim.username), "admin");
  snprintf(sim.password, sizeof(sim.password), "admin-sim");
  sim.next_fault_id = 1;

  enum { O_LISTEN = 1, O_USER, O_PASS, O_TTL, O_IMPORT, O_BOOT, O_STOP, O_WIPE, O_LAT, O_LIC,
         O_LIMIT, O_VERSION, O_STRICT, O_PORTFILE, O_VERBOSE, O_NODEDEFS, O_HELP };
  static const struct option opts[] = {
      {"listen", required_argument, 0, O_LISTEN},     {"username", required_argument, 0, O_USER},
      {"password", required_argument, 0, O_PASS},     {"token-ttl-ms", required_argument, 0, O_TTL},
      {"import-ms", required_argument, 0, O_IMPORT},  {"boot-ms", required_argument, 0, O_BOOT},
      {"stop-ms", required_argument, 0, O_STOP},      {"wipe-ms", required_argument, 0, O_WIPE},
      {"latency-ms", required_argument, 0, O_LAT},    {"license", required_argument, 0, O_LIC},
      {"node-limit", required_argument, 0, O_LIMIT},  {"version", required_argument, 0, O_VERSION},
      {"strict", no_argument, 0, O_STRICT},           {"port-file", required_argument, 0, O_PORTFILE},
      {"verbose", no_argument, 0, O_VERBOSE},
      {"node-definitions", required_argument, 0, O_NODEDEFS},
      {"help", no_argument, 0, O_HELP},
      {0, 0, 0, 0}};
  const char *node_defs = CML_DEFAULT_NODE_DEFS;
  int o;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    int bad = 0;
    switch (o) {
    case O_LISTEN:
      bad = parse_listen(optarg, addr, sizeof(addr), &port);
      have_listen = !bad;
      break;
    case O_USER:
      bad = !*optarg || strlen(optarg) > 32;
      snprintf(sim.username, sizeof(sim.username), "%s", optarg);
      break;
    case O_PASS:
      bad = strlen(optarg) >= sizeof(sim.password);
      snprintf(sim.password, sizeof(sim.password), "%s", optarg);
      break;
    case O_TTL: bad = parse_ms(optarg, &sim.dflt.t.token_ttl_ms); break;
    case O_IMPORT: bad = parse_ms(optarg, &sim.dflt.t.import_ms); break;
    case O_BOOT: bad = parse_ms(optarg, &sim.dflt.t.boot_ms); break;
    case O_STOP: bad = parse_ms(optarg, &sim.dflt.t.stop_ms); break;
    case O_WIPE: bad = parse_ms(optarg, &sim.dflt.t.wipe_ms); break;
    case O_LAT: bad = parse_ms(optarg, &sim.dflt.t.latency_ms); break;
    case O_LIC:
      if (!strcmp(optarg, "personal"))
        sim.dflt.enterprise = false;
      else if (!strcmp(optarg, "enterprise"))
        sim.dflt.enterprise = true;
      else
        bad = 1;
      break;
    case O_LIMIT: bad = parse_ms(optarg, &sim.dflt.node_limit); break;
    case O_VERSION:
      bad = !*optarg || strlen(optarg) >= sizeof(sim.dflt.version);
      snprintf(sim.dflt.version, sizeof(sim.dflt.version), "%s", optarg);
      break;
    case O_STRICT: sim.dflt.strict = true; break;
    case O_PORTFILE: port_file = optarg; break;
    case O_VERBOSE: sim.verbose = true; break;
    case O_NODEDEFS: node_defs = optarg; break;
    case O_HELP: usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
    if (bad) {
      fprintf(stderr, "cml-sim: bad value for --%s: %s\n", opts[o - 1].name, optarg);
      return 2;
    }
  }
  if (!have_listen || optind != argc) {
    usage(stderr);
    return 2;
  }
  char nd_err[320];
  if (cml_node_defs_parse_csv(node_defs, &sim.node_defs, &sim.nnode_defs, nd_err,
                              sizeof(nd_err)) < 0) {
    fprintf(stderr, "cml-sim: bad value for --node-definitions: %s\n", nd_err);
    return 2;
  }
  sim.startup = sim.dflt;
  signal(SIGPIPE, SIG_IGN);

  sim.base = event_base_new();
  sim.http = sim.base ? evhttp_new(sim.base) : NULL;
  if (!sim.http) {
    fprintf(stderr, "cml-sim: cannot create the event loop\n");
    goto out;
  }
  evhttp_set_allowed_methods(sim.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                           EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                                           EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
  evhttp_set_max_body_size(sim.http, 16 * 1024 * 1024);
  evhttp_set_gencb(sim.http, on_request, &sim);
  struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(sim.http, addr, port);
  if (!bs) {
    fprintf(stderr, "cml-sim: cannot listen on %s:%u: %s\n", addr, port, strerror(errno));
    goto out;
  }
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl) == 0)
    port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
  if (port_file) {
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%u\n", port) < 0 || fclose(f) != 0 || rename(tmp, port_file) != 0) {
      fprintf(stderr, "cml-sim: cannot write %s\n", port_file);
      goto out;
    }
  }
  sigterm = evsignal_new(sim.base, SIGTERM, on_signal, &sim);
  sigint = evsignal_new(sim.base, SIGINT, on_signal, &sim);
  if (!sigterm || !sigint || evsignal_add(sigterm, NULL) || evsignal_add(sigint, NULL)) {
    fprintf(stderr, "cml-sim: cannot install signal handlers\n");
    goto out;
  }
  printf("cml-sim listening on http://%s:%u (licence=%s version=%s strict=%s)\n", addr, port,
         sim.dflt.enterprise ? "enterprise" : "personal", sim.dflt.version,
         sim.dflt.strict ? "yes" : "no");
  fflush(stdout);
  event_base_dispatch(sim.base);
  rc = 0;
out:
  pending_free_all(&sim);
  cml_ctrl_free_all(&sim);
  cml_faults_clear(&sim);
  cml_strv_free(sim.node_defs, sim.nnode_defs);
  if (sigterm)
    event_free(sigterm);
  if (sigint)
    event_free(sigint);
  if (sim.http)
    evhttp_free(sim.http);
  if (sim.base)
    event_base_free(sim.base);
  libevent_global_shutdown();
  return rc;
}
