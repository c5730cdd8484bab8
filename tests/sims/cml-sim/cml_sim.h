/* cml-sim: internal types shared by the simulator's files (model, CML API, admin API, server).
 * One process, one libevent loop, many virtual CML 2.9 controllers kept in a hash map; each
 * controller owns its labs, nodes, tokens and telemetry ring. */
#ifndef LCM_CML_SIM_H
#define LCM_CML_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "cmlsim_kit.h"

struct event_base;
struct event;
struct evhttp;
struct evhttp_request;

#define CML_ID_MAX 64      /* virtual controller id: [A-Za-z0-9._-]{1,64} */
#define CML_TEL_RING 256   /* telemetry events kept per controller */
#define CML_TOKENS_MAX 64  /* live tokens kept per controller (oldest dropped) */
#define CML_NODE_DEFS_MAX 512 /* node definitions per controller */

/* The node definitions new controllers offer unless --node-definitions says otherwise: the
 * usual CML reference platform plus every node_definition of the sample topologies. */
#define CML_DEFAULT_NODE_DEFS                                                                    \
  "iosv,iosvl2,csr1000v,cat8000v,iosxrv9000,nxosv9000,asav,alpine,ubuntu,server,desktop,"       \
  "unmanaged_switch,external_connector,ubuntu-desktop-24-04-v2,vmanagemock,mock-server"

/* Durations and knobs a controller runs with; copied from the sim defaults at creation. */
struct cml_timing {
  int64_t import_ms, boot_ms, stop_ms, wipe_ms, token_ttl_ms, latency_ms;
};

enum cml_node_state { NODE_DEFINED, NODE_STOPPED, NODE_QUEUED, NODE_STARTED, NODE_BOOTED };

/* What a lab is waiting for (its one timer). */
enum cml_phase { PH_IDLE, PH_QUEUED, PH_BOOTING, PH_STOPPING, PH_WIPING };

/* The lab states of the spec's `States` enum. */
enum cml_lab_state { LAB_DEFINED, LAB_STOPPED, LAB_STARTED };

struct cml_node {
  char id[37];
  char *label, *node_definition, *image_definition; /* owned; image_definition may be NULL */
  int64_t x, y;
  int64_t cpus, ram; /* 0 = unset (null) */
  char **tags;       /* owned array of owned strings */
  size_t ntags;
  cJSON *configuration; /* owned; NULL, string, or array of {name, content} */
  char *extracted;      /* owned; the last extracted running configuration, or NULL */
  enum cml_node_state state;
};

struct cml_ctrl;

struct cml_lab {
  struct cml_lab *next, *prev; /* creation order within the controller */
  struct cml_ctrl *ctrl;
  char id[37];
  char *title, *description, *notes; /* owned */
  int64_t created_ms, modified_ms;    /* wall clock */
  struct cml_node *nodes;             /* owned array */
  size_t nnodes, nlinks;
  enum cml_lab_state state;
  enum cml_phase phase;
  struct event *timer; /* owned; created on first transition */
};

struct cml_token {
  struct cml_token *next;
  int64_t expires_ms; /* monotonic */
  char value[];
};

struct cml_tel {
  int64_t wall_ms;
  const char *category; /* static string from the spec's TelemetryEventCategory enum */
  char lab_id[37];
  char detail[40];
  int64_t count;
};

struct cml_sim;

struct cml_ctrl {
  struct cml_sim *sim;
  char id[CML_ID_MAX + 1];
  char version[32];
  bool enterprise;
  int64_t node_limit;
  bool ready;
  bool registered;
  int64_t registered_wall_ms;
  int64_t cpus, memory_mb, disk_gb; /* simulated compute host */
  struct cml_timing t;
  char compute_id[37], owner_id[37], product_uuid[37];
  struct cml_lab *labs_head, *labs_tail; /* owned */
  size_t nlabs;
  struct cml_token *tokens; /* owned */
  size_t ntokens;
  struct cml_tel *tel; /* owned ring of CML_TEL_RING, allocated on first event */
  size_t tel_head, tel_count;
  uint64_t requests;
  char **node_defs; /* owned: node definition ids GET /node_definitions lists */
  size_t nnode_defs;
};

/* A fault rule (admin API): matches requests to one controller (or all) by path substring and
 * method, for the next `remaining` requests (-1 = until removed). */
struct cml_fault {
  struct cml_fault *next;
  uint64_t id;
  char ctrl[CML_ID_MAX + 1]; /* empty = every controller */
  char path[128];            /* substring of the path after the controller prefix; empty = any */
  char method[8];            /* empty = any */
  int status;                /* 0 = no error reply */
  int64_t delay_ms;
  bool drop;
  int64_t remaining;
  uint64_t hits;
};

/* A request whose reply is deferred (latency, fault delay, import time, dropped connection). */
struct cml_pending {
  struct cml_pending *next, *prev;
  struct cml_sim *sim;
  struct evhttp_request *req;
  struct event *ev;
  struct cml_ctrl *ctrl; /* NULL once the controller is removed */
  int kind;              /* PEND_* in server.c */
  int status;
  char *path;            /* owned: API path after the prefix */
  struct cml_lab *lab;   /* owned until attached (import) */
  cJSON *warnings;       /* owned (import) */
};

/* Settings new controllers start from; `startup` keeps the command line's for /_sim/reset. */
struct cml_defaults {
  struct cml_timing t;
  bool enterprise;
  int64_t node_limit; /* 0 = per licence: personal 20, enterprise 500 */
  char version[32];
  bool strict;        /* no automatic creation of unknown controllers */
};

struct cml_sim {
  struct event_base *base;
  struct evhttp *http;
  struct sim_map ctrls; /* id -> struct cml_ctrl * (owned) */
  struct cml_defaults dflt, startup;
  char username[64], password[128];
  bool verbose;
  struct cml_fault *faults; /* owned */
  uint64_t next_fault_id;
  struct cml_pending *pending; /* owned list */
  uint64_t requests, faults_hit, dropped;
  char **node_defs; /* owned: what new controllers offer (--node-definitions or the default) */
  size_t nnode_defs;
};

/* ---- model (model.c) ---- */
bool cml_ctrl_id_valid(const char *id);
struct cml_ctrl *cml_ctrl_get(struct cml_sim *sim, const char *id);
/* Creates a controller with the sim defaults; returns NULL on a bad id or allocation failure. */
struct cml_ctrl *cml_ctrl_create(struct cml_sim *sim, const char *id);
/* Removes and frees a controller (its labs, timers, tokens); pending replies lose their ctrl. */
void cml_ctrl_remove(struct cml_sim *sim, struct cml_ctrl *c);
void cml_ctrl_free_all(struct cml_sim *sim);
int64_t cml_ctrl_node_limit(const struct cml_ctrl *c);

/* Node definition ids: the spec's NodeDefinitionResponse.id pattern (1-250 characters, no
 * leading '.', none of !@#%^&*();$/\ or control characters). */
bool cml_node_def_id_valid(const char *id);
void cml_strv_free(char **v, size_t n);
/* Parses "a,b,c" (duplicates dropped, "" = none) into a new owned list; -1 + reason. */
int cml_node_defs_parse_csv(const char *csv, char ***out, size_t *n, char *err, size_t errlen);
/* Same from a JSON array of strings. */
int cml_node_defs_from_json(const cJSON *arr, char ***out, size_t *n, char *err, size_t errlen);
/* Replaces c's list with a copy of v; -1 on allocation failure (c unchanged). */
int cml_ctrl_set_node_defs(struct cml_ctrl *c, char *const *v, size_t n);

/* Tokens: issue (returns the token string owned by the controller) and check. */
const char *cml_token_issue(struct cml_ctrl *c);
/* 0 = valid, -1 = missing/unknown, -2 = expired */
int cml_token_check(struct cml_ctrl *c, const char *token);
void cml_tokens_clear(struct cml_ctrl *c);

void cml_tel_add(struct cml_ctrl *c, const char *category, const char *lab_id, const char *detail,
                 int64_t count);

/* Builds a lab (not attached) from a parsed topology; NULL + reason when it is not one. */
struct cml_lab *cml_lab_from_topology(struct cml_ctrl *c, const cJSON *topo, const char *title,
                                      cJSON *warnings, char *err, size_t errlen);
void cml_lab_attach(struct cml_ctrl *c, struct cml_lab *lab);
void cml_lab_free(struct cml_lab *lab); /* detached or not: unlinks, stops its timer */
struct cml_lab *cml_lab_get(struct cml_ctrl *c, const char *id);
struct cml_node *cml_node_get(struct cml_lab *lab, const char *id);

const char *cml_lab_state(const struct cml_lab *lab);
const char *cml_node_state_str(enum cml_node_state s);
bool cml_lab_converged(const struct cml_lab *lab);
/* Transitions; 0 ok, else an HTTP status with the reason in err. */
int cml_lab_start(struct cml_lab *lab, char *err, size_t errlen);
int cml_lab_stop(struct cml_lab *lab, char *err, size_t errlen);
int cml_lab_wipe(struct cml_lab *lab, char *err, size_t errlen);
int cml_lab_can_delete(struct cml_lab *lab, char *err, size_t errlen);

/* Counts over a controller's labs. */
struct cml_usage {
  int64_t labs, nodes, running_nodes, billable_running, vcpus, ram_mb;
};
void cml_ctrl_usage(const struct cml_ctrl *c, struct cml_usage *u);

/* JSON renderings (new objects). */
cJSON *cml_lab_json(const struct cml_lab *lab);
cJSON *cml_node_json(const struct cml_lab *lab, const struct cml_node *n, bool operational,
                     bool exclude_config);
cJSON *cml_ctrl_admin_json(const struct cml_ctrl *c);

/* ---- CML API (api.c) ---- */
/* Handles one API request for controller c; `path` is what follows "/api/v0". Either replies or
 * (import) queues a pending reply. */
void cml_api_handle(struct cml_sim *sim, struct cml_ctrl *c, struct evhttp_request *req,
                    const char *path);

/* ---- admin API (admin.c) ---- */
void cml_admin_handle(struct cml_sim *sim, struct evhttp_request *req, const char *path);
void cml_faults_clear(struct cml_sim *sim);
/* Finds the first fault rule matching (controller, method, path), consumes one use of it and
 * copies it to *out; false when none matches. */
bool cml_fault_match(struct cml_sim *sim, const char *ctrl, const char *method, const char *path,
                     struct cml_fault *out);

/* ---- server (server.c) ---- */
/* Queues a deferred action on req (PEND_DISPATCH / PEND_ERROR / PEND_DROP) after delay_ms. */
enum { PEND_DISPATCH = 1, PEND_ERROR, PEND_DROP, PEND_IMPORT };
/* Defers the reply: kind PEND_IMPORT with lab/warnings, after delay_ms. */
void cml_pending_import(struct cml_sim *sim, struct cml_ctrl *c, struct evhttp_request *req,
                        struct cml_lab *lab, cJSON *warnings, int64_t delay_ms);
void cml_pending_forget_ctrl(struct cml_sim *sim, struct cml_ctrl *c);
const char *cml_method_str(struct evhttp_request *req);
void cml_log(struct cml_sim *sim, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
