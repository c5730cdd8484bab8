/* cmlsim_kit: helpers for cml-sim (hash map, JSON replies, ids, time).
 * Everything here is single-threaded and loop-driven; nothing blocks. */
#include "cmlsim_kit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

/* ---- hash map ---- */

static uint64_t fnv1a(const char *s)
{
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ULL;
  }
  return h;
}

void sim_map_init(struct sim_map *m)
{
  m->buckets = NULL;
  m->nbuckets = 0;
  m->count = 0;
}

void sim_map_clear(struct sim_map *m)
{
  for (size_t i = 0; i < m->nbuckets; i++) {
    struct sim_map_ent *e = m->buckets[i];
    while (e) {
      struct sim_map_ent *n = e->next;
      free(e);
      e = n;
    }
  }
  free(m->buckets);
  sim_map_init(m);
}

static struct sim_map_ent **slot(const struct sim_map *m, const char *key, uint64_t h)
{
  struct sim_map_ent **pp = &m->buckets[h & (m->nbuckets - 1)];
  while (*pp && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0))
    pp = &(*pp)->next;
  return pp;
}

void *sim_map_get(const struct sim_map *m, const char *key)
{
  if (m->nbuckets == 0)
    return NULL;
  struct sim_map_ent **pp = slot(m, key, fnv1a(key));
  return *pp ? (*pp)->val : NULL;
}

static int grow(struct sim_map *m)
{
  size_t n = m->nbuckets ? m->nbuckets * 2 : 16;
  struct sim_map_ent **b = calloc(n, sizeof(*b));
  if (!b)
    return -1;
  for (size_t i = 0; i < m->nbuckets; i++) {
    struct sim_map_ent *e = m->buckets[i];
    while (e) {
      struct sim_map_ent *next = e->next;
      e->next = b[e->hash & (n - 1)];
      b[e->hash & (n - 1)] = e;
      e = next;
    }
  }
  free(m->buckets);
  m->buckets = b;
  m->nbuckets = n;
  return 0;
}

int sim_map_put(struct sim_map *m, const char *key, void *val)
{
  if ((m->count + 1 > m->nbuckets) && grow(m) < 0)
    return -1;
  uint64_t h = fnv1a(key);
  struct sim_map_ent **pp = slot(m, key, h);
  if (*pp) {
    (*pp)->val = val;
    return 0;
  }
  size_t kl = strlen(key);
  struct sim_map_ent *e = malloc(sizeof(*e) + kl + 1);
  if (!e)
    return -1;
  memcpy(e->key, key, kl + 1);
  e->hash = h;
  e->val = val;
  e->next = NULL;
  *pp = e;
  m->count++;
  return 0;
}

void *sim_map_del(struct sim_map *m, const char *key)
{
  if (m->nbuckets == 0)
    return NULL;
  struct sim_map_ent **pp = slot(m, key, fnv1a(key));
  struct sim_map_ent *e = *pp;
  if (!e)
    return NULL;
  void *v = e->val;
  *pp = e->next;
  free(e);
  m->count--;
  return v;
}

void sim_map_each(const struct sim_map *m, void (*fn)(const char *, void *, void *), void *ud)
{
  for (size_t i = 0; i < m->nbuckets; i++)
    for (struct sim_map_ent *e = m->buckets[i]; e; e = e->next)
      fn(e->key, e->val, ud);
}

/* ---- time ---- */

int64_t sim_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sim_wall_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sim_rfc3339(int64_t wall_ms, char *buf, size_t len)
{
  time_t t = (time_t)(wall_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, len, "%Y-%m-%dT%H:%M:%S+00:00", &tm);
}

/* ---- ids ---- */

void sim_random(void *out, size_t n)
{
  unsigned char *p = out;
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom(p + got, n - got, GRND_NONBLOCK);
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  if (got < n) {
    /* Entropy pool not ready (early boot): a time-seeded xorshift is enough for a simulator. */
    static uint64_t s;
    if (!s)
      s = (uint64_t)sim_wall_ms() ^ 0x9e3779b97f4a7c15ULL;
    for (; got < n; got++) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      p[got] = (unsigned char)s;
    }
  }
}

void sim_uuid4(char *buf)
{
  unsigned char b[16];
  sim_random(b, sizeof(b));
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  snprintf(buf, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
           b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
           b[15]);
}

void sim_b64url(const unsigned char *in, size_t n, char *out)
{
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t o = 0, i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = tbl[(v >> 18) & 63];
    out[o++] = tbl[(v >> 12) & 63];
    out[o++] = tbl[(v >> 6) & 63];
    out[o++] = tbl[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    out[o++] = tbl[(v >> 18) & 63];
    out[o++] = tbl[(v >> 12) & 63];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    out[o++] = tbl[(v >> 18) & 63];
    out[o++] = tbl[(v >> 12) & 63];
    out[o++] = tbl[(v >> 6) & 63];
  }
  out[o] = '\0';
}

/* ---- requests and replies ---- */

char *sim_body_dup(struct evhttp_request *req, size_t *len)
{
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t n = in ? evbuffer_get_length(in) : 0;
  *len = n;
  if (n == 0)
    return NULL;
  char *s = malloc(n + 1);
  if (!s)
    return NULL;
  evbuffer_copyout(in, s, n);
  s[n] = '\0';
  return s;
}

void sim_query_parse(struct evhttp_request *req, struct evkeyvalq *q)
{
  TAILQ_INIT(q);
  const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
  const char *qs = u ? evhttp_uri_get_query(u) : NULL;
  if (qs)
    evhttp_parse_query_str(qs, q);
}

int sim_query_bool(struct evkeyvalq *q, const char *name, int dflt)
{
  const char *v = evhttp_find_header(q, name);
  if (!v)
    return dflt;
  return strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcmp(v, "yes") == 0 ||
         strcmp(v, "True") == 0;
}

const char *sim_reason(int status)
{
  switch (status) {
  case 200: return "OK";
  case 201: return "Created";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 409: return "Conflict";
  case 413: return "Payload Too Large";
  case 422: return "Unprocessable Entity";
  case 429: return "Too Many Requests";
  case 500: return "Internal Server Error";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "Status";
  }
}

void sim_reply_text(struct evhttp_request *req, int status, const char *json)
{
  struct evbuffer *b = evbuffer_new();
  if (b && json)
    evbuffer_add(b, json, strlen(json));
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
  evhttp_send_reply(req, status, sim_reason(status), b);
  if (b)
    evbuffer_free(b);
}

void sim_reply_json(struct evhttp_request *req, int status, cJSON *body)
{
  char *s = body ? cJSON_PrintUnformatted(body) : NULL;
  sim_reply_text(req, status, s ? s : "null");
  free(s);
  cJSON_Delete(body);
}

void sim_reply_error(struct evhttp_request *req, int status, const char *fmt, ...)
{
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "code", status);
  cJSON_AddStringToObject(o, "description", msg);
  sim_reply_json(req, status, o);
}

void sim_reply_empty(struct evhttp_request *req, int status)
{
  evhttp_send_reply(req, status, sim_reason(status), NULL);
}

const char *sim_json_str(const cJSON *obj, const char *name)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

int sim_json_int(const cJSON *obj, const char *name, int64_t *out)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
  if (!cJSON_IsNumber(v))
    return 0;
  double d = v->valuedouble;
  if (d != d || d < -9.0e15 || d > 9.0e15 || d != (double)(int64_t)d)
    return 0;
  *out = (int64_t)d;
  return 1;
}

int sim_json_bool(const cJSON *obj, const char *name, int *out)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
  if (!cJSON_IsBool(v))
    return 0;
  *out = cJSON_IsTrue(v);
  return 1;
}
