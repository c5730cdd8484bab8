/* cmlsim_kit: the small toolkit of cml-sim (lds-sim and grading-sim have their own simkit): a
 * string-keyed hash map, JSON replies over evhttp, UUID4 and RFC 3339 helpers, request body and
 * query access. Built as the static library `cmlsim_kit` (cJSON + libevent only). */
#ifndef LCM_CMLSIM_KIT_H
#define LCM_CMLSIM_KIT_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

struct evhttp_request;
struct evkeyvalq;

/* ---- hash map: string key (copied, owned by the map) -> borrowed void * value ---- */
struct sim_map_ent {
  struct sim_map_ent *next;
  uint64_t hash;
  void *val;
  char key[]; /* NUL-terminated copy */
};

struct sim_map {
  struct sim_map_ent **buckets;
  size_t nbuckets;
  size_t count;
};

void sim_map_init(struct sim_map *m);
/* Frees the entries (not the values). */
void sim_map_clear(struct sim_map *m);
void *sim_map_get(const struct sim_map *m, const char *key);
/* Inserts or replaces; returns 0 or -1 on allocation failure. */
int sim_map_put(struct sim_map *m, const char *key, void *val);
/* Removes the key and returns its value (NULL if absent). */
void *sim_map_del(struct sim_map *m, const char *key);
/* Calls fn for each entry; fn must not modify the map. */
void sim_map_each(const struct sim_map *m, void (*fn)(const char *key, void *val, void *ud), void *ud);

/* ---- time ---- */
int64_t sim_now_ms(void);  /* monotonic milliseconds */
int64_t sim_wall_ms(void); /* wall clock milliseconds since the epoch */
/* Formats wall-clock ms as RFC 3339 "2025-01-02T03:04:05+00:00" into buf (>= 32 bytes). */
void sim_rfc3339(int64_t wall_ms, char *buf, size_t len);

/* ---- ids ---- */
/* Fills buf (>= 37 bytes) with a random RFC 4122 version-4 UUID in lower-case hex. */
void sim_uuid4(char *buf);
/* Fills out with n random bytes (getrandom, falling back to a seeded PRNG). */
void sim_random(void *out, size_t n);
/* Base64url without padding of n bytes into out (size >= 4*n/3+4). */
void sim_b64url(const unsigned char *in, size_t n, char *out);

/* ---- requests and replies ---- */
/* Returns a NUL-terminated copy of the request body (caller frees) or NULL when empty; *len set. */
char *sim_body_dup(struct evhttp_request *req, size_t *len);
/* Parses the query string of the request into q (caller calls evhttp_clear_headers). */
void sim_query_parse(struct evhttp_request *req, struct evkeyvalq *q);
/* Query parameter as a boolean ("true"/"1"/"yes"), default when absent. */
int sim_query_bool(struct evkeyvalq *q, const char *name, int dflt);
/* Sends a JSON value (consumed) with the given status. */
void sim_reply_json(struct evhttp_request *req, int status, cJSON *body);
/* Sends raw JSON text with the given status. */
void sim_reply_text(struct evhttp_request *req, int status, const char *json);
/* Sends {"code": status, "description": msg}: the CML Error / ErrorResponse shape. */
void sim_reply_error(struct evhttp_request *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sends an empty body (e.g. 204). */
void sim_reply_empty(struct evhttp_request *req, int status);
/* Standard reason phrase for a status code. */
const char *sim_reason(int status);

/* JSON helpers that tolerate absent members. */
const char *sim_json_str(const cJSON *obj, const char *name);
/* Returns 1 and sets *out when obj[name] is a number (integers only). */
int sim_json_int(const cJSON *obj, const char *name, int64_t *out);
/* Returns 1 and sets *out when obj[name] is a boolean. */
int sim_json_bool(const cJSON *obj, const char *name, int *out);

#endif
