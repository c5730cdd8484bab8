/* Test kit shared by the lds and grading plugin integration tests: a simulator process on a
 * free loopback port, lcmd's real host (libevent loop, HTTP client, metrics) and the plugin
 * .so loaded through the real loader from a private plugin directory. */
#ifndef LCM_PLUGTEST_H
#define LCM_PLUGTEST_H

#include <stddef.h>
#include <stdint.h>

#include <lcm/spi.h>

struct cJSON;
struct lcm_plugins;
struct lcm_metrics;

extern struct lcm_plugins *pt_reg;
extern struct lcm_metrics *pt_metrics;
extern int pt_sim_port;

/* Starts sim (argv NULL-terminated, without --listen/--port-file) on a free port. 0 or -1. */
int pt_start_sim(const char *sim, const char *const *argv);
/* Creates the host and loads plugin_so (copied into a private plugin dir) with config (JSON
 * text, may be NULL). 0 or -1 (reason on stderr). */
int pt_load(const char *plugin_so, const char *config_json);
/* Frees the registry and host, stops the simulator (SIGTERM) and removes the temp dir.
 * Returns the simulator's exit status (0 when it exited cleanly). */
int pt_teardown(void);

/* 1 when lcmd's log so far (stderr since pt_load) contains needle. */
int pt_log_contains(const char *needle);

uint64_t pt_now_ms(void);
void pt_run_ms(int ms);
int pt_run_until(const int *flag, int ms);

/* HTTP to the simulator through the same loop: returns the status; *out gets the body. */
int pt_sim(const char *method, const char *path, const char *body, char **out);
/* A number at a dotted path ("lds.created") of a JSON answer of GET path; -1 when absent. */
double pt_sim_num(const char *path, const char *field);
void pt_add_fault(const char *json);
void pt_clear_faults(void);

/* Calling ops: the outcome of one op, with the result converted to JSON while valid. */
typedef struct cJSON *(*pt_conv_fn)(const void *result);
struct pt_outcome {
    int calls;
    int code, retryable, http_status;
    char message[256];
    pt_conv_fn conv;
    struct cJSON *res;
};
struct pt_target {
    const char *endpoint, *region, *credentials;
    int64_t deadline_ms;
};
/* Calls op (offset in the kind's ops table). Returns the synchronous code; on 0 the outcome
 * fills in later (pt_wait). */
int pt_call_async(enum lcm_plugin_kind kind, size_t off, const struct pt_target *t,
                  const void *args, pt_conv_fn conv, struct pt_outcome *o, uint64_t *op_id);
/* Calls and waits (up to 20 s) for exactly one done. */
void pt_call(enum lcm_plugin_kind kind, size_t off, const struct pt_target *t, const void *args,
             pt_conv_fn conv, struct pt_outcome *o);
void pt_outcome_free(struct pt_outcome *o);
void pt_expect_ok(const struct pt_outcome *o);
/* Expects failure with code and retryable. */
void pt_expect_err(const struct pt_outcome *o, int code, int retryable);

/* A string member of the converted result (NULL when absent). */
const char *pt_res_str(const struct pt_outcome *o, const char *key);
double pt_res_num(const struct pt_outcome *o, const char *key);

#endif
