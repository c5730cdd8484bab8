/* simkit: shared runtime of lds-sim and grading-sim (server, admin routes, faults, CloudEvents
 * outbox to lcmd). Everything runs on one libevent loop; nothing blocks; everything allocated is
 * freed by simkit_free so the sims stay ASan/LSan clean. */
#include "simkit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/keyvalq_struct.h>

#define MAX_SEGS 16
#define EVENT_RING 1024
#define MAX_BODY (4 * 1024 * 1024)

/* ---------------------------------------------------------------- utilities */

double simkit_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void simkit_now_rfc3339(char out[32])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char date[24];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%.19s.%03dZ", date, (int)(ts.tv_nsec / 1000000) % 1000);
}

static void fill_random(unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            /* getrandom cannot fail on a sane kernel; fall back so ids stay distinct anyway */
            for (; got < n; got++)
                buf[got] = (unsigned char)(rand() ^ (int)time(NULL));
            return;
        }
        got += (size_t)r;
    }
}

void simkit_uuid(char out[37])
{
    unsigned char b[16];
    fill_random(b, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

void simkit_random_hex(char *out, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[64];
    if (nbytes > sizeof b)
        nbytes = sizeof b;
    fill_random(b, nbytes);
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * nbytes] = '\0';
}

char *simkit_base64(const unsigned char *in, size_t len, int url)
{
    static const char std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char urlsafe[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *tab = url ? urlsafe : std;
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    size_t o = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        size_t rem = len - i;
        if (rem > 1)
            v |= (uint32_t)in[i + 1] << 8;
        if (rem > 2)
            v |= in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        if (rem > 1)
            out[o++] = tab[(v >> 6) & 63];
        else if (!url)
            out[o++] = '=';
        if (rem > 2)
            out[o++] = tab[v & 63];
        else if (!url)
            out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

/* ---------------------------------------------------------------- map (open addressing) */

struct map_slot {
    char *key; /* NULL: empty; TOMBSTONE: deleted */
    void *val;
};

struct simkit_map {
    struct map_slot *slots;
    size_t cap, used, tombs;
};

static char tombstone_mark;
#define TOMBSTONE (&tombstone_mark)

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

struct simkit_map *simkit_map_new(void)
{
    struct simkit_map *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cap = 64;
    m->slots = calloc(m->cap, sizeof *m->slots);
    if (!m->slots) {
        free(m);
        return NULL;
    }
    return m;
}

void simkit_map_free(struct simkit_map *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key && m->slots[i].key != TOMBSTONE)
            free(m->slots[i].key);
    free(m->slots);
    free(m);
}

static struct map_slot *map_find(const struct simkit_map *m, const char *key)
{
    size_t i = (size_t)hash_str(key) & (m->cap - 1);
    for (size_t n = 0; n < m->cap; n++, i = (i + 1) & (m->cap - 1)) {
        struct map_slot *s = &m->slots[i];
        if (!s->key)
            return NULL;
        if (s->key != TOMBSTONE && strcmp(s->key, key) == 0)
            return s;
    }
    return NULL;
}

static int map_grow(struct simkit_map *m)
{
    size_t ncap = (m->used * 4 >= m->cap) ? m->cap * 2 : m->cap; /* else just drop tombstones */
    struct map_slot *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        struct map_slot *s = &m->slots[i];
        if (!s->key || s->key == TOMBSTONE)
            continue;
        size_t j = (size_t)hash_str(s->key) & (ncap - 1);
        while (ns[j].key)
            j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    m->tombs = 0;
    return 0;
}

void *simkit_map_get(const struct simkit_map *m, const char *key)
{
    struct map_slot *s = map_find(m, key);
    return s ? s->val : NULL;
}

int simkit_map_put(struct simkit_map *m, const char *key, void *val)
{
    struct map_slot *s = map_find(m, key);
    if (s) {
        s->val = val;
        return 0;
    }
    if ((m->used + m->tombs + 1) * 2 > m->cap && map_grow(m) < 0)
        return -1;
    char *k = strdup(key);
    if (!k)
        return -1;
    size_t i = (size_t)hash_str(key) & (m->cap - 1);
    while (m->slots[i].key && m->slots[i].key != TOMBSTONE)
        i = (i + 1) & (m->cap - 1);
    if (m->slots[i].key == TOMBSTONE)
        m->tombs--;
    m->slots[i].key = k;
    m->slots[i].val = val;
    m->used++;
    return 0;
}

void *simkit_map_del(struct simkit_map *m, const char *key)
{
    struct map_slot *s = map_find(m, key);
    if (!s)
        return NULL;
    void *v = s->val;
    free(s->key);
    s->key = TOMBSTONE;
    s->val = NULL;
    m->used--;
    m->tombs++;
    return v;
}

size_t simkit_map_count(const struct simkit_map *m)
{
    return m->used;
}

int simkit_map_next(const struct simkit_map *m, size_t *pos, const char **key, void **val)
{
    for (; *pos < m->cap; (*pos)++) {
        struct map_slot *s = &m->slots[*pos];
        if (s->key && s->key != TOMBSTONE) {
            *key = s->key;
            *val = s->val;
            (*pos)++;
            return 1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- kit state */

struct fault {
    struct fault *next;
    int id;
    char *path;   /* substring of the request path */
    char *method; /* NULL: any */
    int status;   /* 0: none (delay only or drop) */
    int delay_ms;
    int drop;
    int remaining; /* < 0: until cleared */
    int hits;
};

/* A request whose handling or reply is held back by a delay fault. */
struct deferred {
    struct deferred *prev, *next;
    struct simkit *kit;
    struct evhttp_request *req;
    struct event *timer;
    int status; /* reply this status after the delay; 0: route normally */
    int drop;
};

enum post_state { POST_WAIT, POST_READY, POST_INFLIGHT, POST_BACKOFF, POST_DONE };

/* One CloudEvent on its way to lcmd. Posts of one subject form a chain so they are delivered in
 * order: only the head of a chain is ever in flight. */
struct post {
    struct post *prev, *next; /* all posts */
    struct post *rnext;       /* ready queue */
    struct post *next_same;   /* the next event of the same subject, waiting for this one */
    struct simkit *kit;
    char *subject, *body;
    uint64_t seq;
    int attempts;
    int ok;
    enum post_state state;
    struct evhttp_connection *conn; /* freed from the timer, never inside its own callback */
    struct event *timer;
};

struct event_rec {
    uint64_t seq; /* 0: unused */
    char id[37];
    char type[160];
    char subject[128];
    char state[12];
    int attempts;
    int last_status;
    char at[32];
    char *body; /* the exact CloudEvent, kept so a test can have it delivered again */
};

struct simkit {
    struct simkit_opts o;
    struct event_base *base;
    struct evdns_base *dns;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct event *sigint, *sigterm;
    char self_url[128];
    char type_buf[256];
    /* lcmd target */
    char *lcm_host;
    int lcm_port;
    char *lcm_path; /* full path incl. ce_path */
    /* faults */
    struct fault *faults;
    int fault_seq;
    struct deferred *deferred;
    /* outbox */
    struct post *posts_head, *posts_tail;
    struct post *ready_head, *ready_tail;
    struct simkit_map *chains; /* subject -> head post */
    int inflight;
    uint64_t seq;
    struct event_rec ring[EVENT_RING];
    /* stats */
    uint64_t n_requests, n_faulted, n_emitted, n_delivered, n_failed, n_attempts, n_skipped;
    int stopping;
    int flushing; /* held requests answered at shutdown whose replies are still being written */
};

struct event_base *simkit_base(struct simkit *kit)
{
    return kit->base;
}

const char *simkit_self_url(struct simkit *kit)
{
    return kit->self_url;
}

void simkit_log(struct simkit *kit, const char *level, const char *fmt, ...)
{
    char ts[32], msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    simkit_now_rfc3339(ts);
    fprintf(stderr, "ts=%s level=%s sim=%s %s\n", ts, level, kit ? kit->o.name : "sim", msg);
}

const char *simkit_type(struct simkit *kit, const char *type_suffix)
{
    snprintf(kit->type_buf, sizeof kit->type_buf, "%s.%s", kit->o.type_prefix, type_suffix);
    return kit->type_buf;
}

/* ---------------------------------------------------------------- options */

void simkit_opts_init(struct simkit_opts *o, const char *name)
{
    memset(o, 0, sizeof *o);
    o->name = name;
    o->listen = "127.0.0.1:0";
    o->ce_path = "/api/v1/cloudevents";
    o->type_prefix = "com.cisco";
    o->source = name;
    o->ce_retries = 5;
    o->ce_backoff_ms = 200;
    o->ce_timeout_ms = 5000;
    o->ce_concurrency = 64;
}

int simkit_parse_int(const char *s, long *out)
{
    char *end;
    if (!s || !*s)
        return -1;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0)
        return -1;
    *out = v;
    return 0;
}

const char *simkit_common_usage(void)
{
    return "  --listen ADDR:PORT       where to serve (default 127.0.0.1:0, a free port)\n"
           "  --port-file PATH         write the bound port there once listening\n"
           "  --lcm-url URL            lcmd base URL for CloudEvents (http://host:port)\n"
           "  --lcm-token TOKEN        bearer token sent to lcmd\n"
           "  --ce-path PATH           path appended to --lcm-url (default /api/v1/cloudevents)\n"
           "  --type-prefix PREFIX     CloudEvent type prefix (default com.cisco)\n"
           "  --source SOURCE          CloudEvent source (default the sim's name)\n"
           "  --ce-retries N           retries per event after the first attempt (default 5)\n"
           "  --ce-backoff-ms N        first retry delay, doubled per retry (default 200)\n"
           "  --ce-timeout-ms N        per-attempt timeout (default 5000)\n"
           "  --ce-concurrency N       events in flight at most (default 64)\n"
           "  --quiet                  no per-request log lines\n";
}

int simkit_parse_common(struct simkit_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const char **sval = NULL;
    int *ival = NULL;
    if (strcmp(a, "--quiet") == 0) {
        o->quiet = 1;
        return 1;
    }
    if (strcmp(a, "--listen") == 0)
        sval = &o->listen;
    else if (strcmp(a, "--port-file") == 0)
        sval = &o->port_file;
    else if (strcmp(a, "--lcm-url") == 0)
        sval = &o->lcm_url;
    else if (strcmp(a, "--lcm-token") == 0)
        sval = &o->lcm_token;
    else if (strcmp(a, "--ce-path") == 0)
        sval = &o->ce_path;
    else if (strcmp(a, "--type-prefix") == 0)
        sval = &o->type_prefix;
    else if (strcmp(a, "--source") == 0)
        sval = &o->source;
    else if (strcmp(a, "--ce-retries") == 0)
        ival = &o->ce_retries;
    else if (strcmp(a, "--ce-backoff-ms") == 0)
        ival = &o->ce_backoff_ms;
    else if (strcmp(a, "--ce-timeout-ms") == 0)
        ival = &o->ce_timeout_ms;
    else if (strcmp(a, "--ce-concurrency") == 0)
        ival = &o->ce_concurrency;
    else
        return 0;
    if (*i + 1 >= argc)
        return -1;
    (*i)++;
    if (sval) {
        *sval = argv[*i];
        return 1;
    }
    long v;
    if (simkit_parse_int(argv[*i], &v) < 0 || v > 1000000)
        return -1;
    *ival = (int)v;
    return 1;
}

/* ---------------------------------------------------------------- replies and bodies */

void simkit_reply_json(struct evhttp_request *req, int status, cJSON *body)
{
    struct evbuffer *buf = evbuffer_new();
    if (body) {
        char *s = cJSON_PrintUnformatted(body);
        if (s) {
            evbuffer_add(buf, s, strlen(s));
            free(s);
        }
        cJSON_Delete(body);
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        if (!evhttp_find_header(h, "Content-Type"))
            evhttp_add_header(h, "Content-Type", "application/json");
    }
    evhttp_send_reply(req, status, NULL, buf);
    evbuffer_free(buf);
}

void simkit_reply_empty(struct evhttp_request *req, int status)
{
    evhttp_send_reply(req, status, NULL, NULL);
}

char *simkit_body(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    evbuffer_copyout(in, s, n);
    s[n] = '\0';
    return s;
}

cJSON *simkit_body_json(struct evhttp_request *req, int *empty)
{
    char *s = simkit_body(req);
    cJSON *j = NULL;
    int is_empty = 1;
    if (s) {
        for (const char *p = s; *p; p++)
            if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t')
                is_empty = 0;
        if (!is_empty)
            j = cJSON_Parse(s);
        free(s);
    }
    if (empty)
        *empty = is_empty;
    return j;
}

int simkit_query(struct evhttp_request *req, const char *key, char *out, size_t outlen)
{
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq params;
    int rc = -1;
    if (!q)
        return -1;
    TAILQ_INIT(&params);
    if (evhttp_parse_query_str(q, &params) == 0) {
        const char *v = evhttp_find_header(&params, key);
        if (v) {
            snprintf(out, outlen, "%s", v);
            rc = 0;
        }
    }
    evhttp_clear_headers(&params);
    return rc;
}

/* ---------------------------------------------------------------- outbox */

static struct event_rec *rec_for(struct simkit *kit, uint64_t seq)
{
    struct event_rec *r = &kit->ring[seq % EVENT_RING];
    return r->seq == seq ? r : NULL;
}

static void post_start(struct post *p);
static void post_timer_cb(evutil_socket_t fd, short what, void *arg);

static void ready_push(struct simkit *kit, struct post *p)
{
    p->state = POST_READY;
    p->rnext = NULL;
    if (kit->ready_tail)
        kit->ready_tail->rnext = p;
    else
        kit->ready_head = p;
    kit->ready_tail = p;
}

static void pump(struct simkit *kit)
{
    while (!kit->stopping && kit->ready_head && kit->inflight < kit->o.ce_concurrency) {
        struct post *p = kit->ready_head;
        kit->ready_head = p->rnext;
        if (!kit->ready_head)
            kit->ready_tail = NULL;
        post_start(p);
    }
}

static void post_free(struct post *p)
{
    if (p->conn)
        evhttp_connection_free(p->conn); /* drops an in-flight request without its callback */
    if (p->timer)
        event_free(p->timer);
    free(p->subject);
    free(p->body);
    free(p);
}

/* The post is finished (delivered or given up): unlink it and let the next one of its subject go. */
static void post_finish(struct post *p)
{
    struct simkit *kit = p->kit;
    struct event_rec *r = rec_for(kit, p->seq);
    if (r)
        snprintf(r->state, sizeof r->state, "%s", p->ok ? "delivered" : "failed");
    if (p->next_same) {
        simkit_map_put(kit->chains, p->subject, p->next_same);
        ready_push(kit, p->next_same);
    } else {
        simkit_map_del(kit->chains, p->subject);
    }
    if (p->prev)
        p->prev->next = p->next;
    else
        kit->posts_head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        kit->posts_tail = p->prev;
    post_free(p);
    pump(kit);
}

static void schedule(struct post *p, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(p->timer, &tv);
}

static void post_done_cb(struct evhttp_request *req, void *arg)
{
    struct post *p = arg;
    struct simkit *kit = p->kit;
    int code = req ? evhttp_request_get_response_code(req) : 0;
    struct event_rec *r = rec_for(kit, p->seq);
    kit->inflight--;
    if (r)
        r->last_status = code;
    if (code >= 200 && code < 300) {
        p->ok = 1;
        p->state = POST_DONE;
        kit->n_delivered++;
        schedule(p, 0);
        return;
    }
    int retryable = code == 0 || code == 408 || code == 429 || code >= 500;
    if (retryable && p->attempts <= kit->o.ce_retries) {
        int ms = kit->o.ce_backoff_ms;
        for (int i = 1; i < p->attempts && ms < 30000; i++)
            ms *= 2;
        p->state = POST_BACKOFF;
        simkit_log(kit, "warn", "msg=\"cloudevent post failed, retrying\" seq=%llu status=%d "
                   "attempt=%d retry_in_ms=%d", (unsigned long long)p->seq, code, p->attempts, ms);
        if (r)
            snprintf(r->state, sizeof r->state, "retrying");
        schedule(p, ms);
        return;
    }
    simkit_log(kit, "error", "msg=\"cloudevent post gave up\" seq=%llu status=%d attempts=%d",
               (unsigned long long)p->seq, code, p->attempts);
    kit->n_failed++;
    p->state = POST_DONE;
    schedule(p, 0);
}

/* Timer: frees the previous attempt's connection (which could not be freed inside its own
 * callback), then either finishes the post or queues the next attempt. */
static void post_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct post *p = arg;
    if (p->conn) {
        evhttp_connection_free(p->conn);
        p->conn = NULL;
    }
    if (p->state == POST_DONE) {
        post_finish(p);
        return;
    }
    ready_push(p->kit, p);
    pump(p->kit);
}

static void post_start(struct post *p)
{
    struct simkit *kit = p->kit;
    struct event_rec *r = rec_for(kit, p->seq);
    char host_hdr[300];
    p->attempts++;
    kit->n_attempts++;
    if (r) {
        r->attempts = p->attempts;
        snprintf(r->state, sizeof r->state, "inflight");
    }
    p->state = POST_INFLIGHT;
    kit->inflight++;
    p->conn = evhttp_connection_base_new(kit->base, kit->dns, kit->lcm_host,
                                         (unsigned short)kit->lcm_port);
    struct evhttp_request *req = p->conn ? evhttp_request_new(post_done_cb, p) : NULL;
    if (!req) {
        post_done_cb(NULL, p);
        return;
    }
    struct timeval tv = {kit->o.ce_timeout_ms / 1000, (kit->o.ce_timeout_ms % 1000) * 1000};
    evhttp_connection_set_timeout_tv(p->conn, &tv);
    evhttp_connection_set_retries(p->conn, 0);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    snprintf(host_hdr, sizeof host_hdr, "%s:%d", kit->lcm_host, kit->lcm_port);
    evhttp_add_header(h, "Host", host_hdr);
    evhttp_add_header(h, "Content-Type", "application/cloudevents+json; charset=utf-8");
    evhttp_add_header(h, "Connection", "close");
    evhttp_add_header(h, "User-Agent", kit->o.name);
    if (kit->o.lcm_token && *kit->o.lcm_token) {
        char auth[1024];
        snprintf(auth, sizeof auth, "Bearer %s", kit->o.lcm_token);
        evhttp_add_header(h, "Authorization", auth);
    }
    evbuffer_add(evhttp_request_get_output_buffer(req), p->body, strlen(p->body));
    /* A refused connect calls post_done_cb from inside this call (status 0) and returns 0. -1 only
     * comes from allocation failures, after which libevent 2.1 may or may not have freed req, so
     * it is not freed here: a possible leak when out of memory beats a double free. */
    if (evhttp_make_request(p->conn, req, EVHTTP_REQ_POST, kit->lcm_path) != 0)
        post_done_cb(NULL, p);
}

/* Records an event in the ring and queues its post (when lcmd is configured). */
static int enqueue(struct simkit *kit, const char *id, const char *type, const char *subject,
                   const char *time, const char *body)
{
    struct post *p = NULL;
    kit->seq++;
    kit->n_emitted++;
    struct event_rec *r = &kit->ring[kit->seq % EVENT_RING];
    free(r->body);
    memset(r, 0, sizeof *r);
    r->seq = kit->seq;
    snprintf(r->id, sizeof r->id, "%s", id);
    snprintf(r->type, sizeof r->type, "%s", type);
    snprintf(r->subject, sizeof r->subject, "%s", subject);
    snprintf(r->at, sizeof r->at, "%s", time);
    r->body = strdup(body);
    simkit_log(kit, "info", "msg=\"cloudevent\" seq=%llu id=%s type=%s subject=%s",
               (unsigned long long)kit->seq, id, type, subject);
    if (!kit->lcm_host) {
        snprintf(r->state, sizeof r->state, "skipped");
        kit->n_skipped++;
        return 0;
    }
    p = calloc(1, sizeof *p);
    if (!p)
        goto fail;
    p->kit = kit;
    p->seq = kit->seq;
    p->subject = strdup(subject);
    p->body = strdup(body);
    p->timer = evtimer_new(kit->base, post_timer_cb, p);
    if (!p->subject || !p->body || !p->timer)
        goto fail;
    snprintf(r->state, sizeof r->state, "queued");
    struct post *head = simkit_map_get(kit->chains, subject);
    if (head) {
        while (head->next_same)
            head = head->next_same;
        head->next_same = p;
        p->state = POST_WAIT;
    } else {
        if (simkit_map_put(kit->chains, subject, p) < 0)
            goto fail;
        ready_push(kit, p);
    }
    p->prev = kit->posts_tail;
    if (kit->posts_tail)
        kit->posts_tail->next = p;
    else
        kit->posts_head = p;
    kit->posts_tail = p;
    pump(kit);
    return 0;
fail:
    snprintf(r->state, sizeof r->state, "failed");
    kit->n_failed++;
    if (p)
        post_free(p);
    return -1;
}

int simkit_emit(struct simkit *kit, const char *type_suffix, const char *subject, cJSON *data,
                char *id_out)
{
    char id[37], ts[32], type[256];
    cJSON *ev = cJSON_CreateObject();
    char *body = NULL;
    int rc = -1;
    simkit_uuid(id);
    simkit_now_rfc3339(ts);
    snprintf(type, sizeof type, "%s", simkit_type(kit, type_suffix));
    if (!ev)
        goto out;
    cJSON_AddStringToObject(ev, "specversion", "1.0");
    cJSON_AddStringToObject(ev, "id", id);
    cJSON_AddStringToObject(ev, "source", kit->o.source);
    cJSON_AddStringToObject(ev, "type", type);
    cJSON_AddStringToObject(ev, "subject", subject);
    cJSON_AddStringToObject(ev, "time", ts);
    cJSON_AddStringToObject(ev, "datacontenttype", "application/json");
    cJSON_AddItemToObject(ev, "data", data);
    data = NULL;
    body = cJSON_PrintUnformatted(ev);
    if (!body)
        goto out;
    if (id_out)
        memcpy(id_out, id, 37);
    rc = enqueue(kit, id, type, subject, ts, body);
out:
    free(body);
    cJSON_Delete(data);
    cJSON_Delete(ev);
    return rc;
}

/* ---------------------------------------------------------------- faults */

static void fault_free(struct fault *f)
{
    free(f->path);
    free(f->method);
    free(f);
}

static cJSON *fault_json(const struct fault *f)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "id", f->id);
    cJSON_AddStringToObject(j, "path", f->path);
    if (f->method)
        cJSON_AddStringToObject(j, "method", f->method);
    cJSON_AddNumberToObject(j, "status", f->status);
    cJSON_AddNumberToObject(j, "delay_ms", f->delay_ms);
    cJSON_AddBoolToObject(j, "drop", f->drop);
    cJSON_AddNumberToObject(j, "count", f->remaining);
    cJSON_AddNumberToObject(j, "hits", f->hits);
    return j;
}

static const char *method_name(enum evhttp_cmd_type c)
{
    switch (c) {
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

/* Adds one fault from its JSON description; returns the new fault or NULL with err. */
static struct fault *fault_add(struct simkit *kit, const cJSON *j, const char **err)
{
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(j, "path");
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(j, "method");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(j, "status");
    const cJSON *delay = cJSON_GetObjectItemCaseSensitive(j, "delay_ms");
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(j, "drop");
    const cJSON *count = cJSON_GetObjectItemCaseSensitive(j, "count");
    if (!cJSON_IsObject(j) || (path && !cJSON_IsString(path)) || (method && !cJSON_IsString(method)) ||
        (status && !cJSON_IsNumber(status)) || (delay && !cJSON_IsNumber(delay)) ||
        (count && !cJSON_IsNumber(count)) || (drop && !cJSON_IsBool(drop))) {
        *err = "fault: {path?: string, method?: string, status?: int, delay_ms?: int, "
               "drop?: bool, count?: int}";
        return NULL;
    }
    int st = status ? status->valueint : 0;
    int dl = delay ? delay->valueint : 0;
    if ((st != 0 && (st < 100 || st > 599)) || dl < 0 || dl > 600000) {
        *err = "fault: status must be 100..599 and delay_ms 0..600000";
        return NULL;
    }
    if (st == 0 && dl == 0 && !cJSON_IsTrue(drop)) {
        *err = "fault: give at least one of status, delay_ms, drop";
        return NULL;
    }
    struct fault *f = calloc(1, sizeof *f);
    if (!f) {
        *err = "out of memory";
        return NULL;
    }
    f->id = ++kit->fault_seq;
    f->path = strdup(path ? path->valuestring : "");
    f->method = method ? strdup(method->valuestring) : NULL;
    f->status = st;
    f->delay_ms = dl;
    f->drop = cJSON_IsTrue(drop);
    f->remaining = count ? count->valueint : 1;
    if (f->remaining == 0)
        f->remaining = -1;
    struct fault **tail = &kit->faults;
    while (*tail)
        tail = &(*tail)->next;
    *tail = f;
    return f;
}

/* Finds (and consumes one use of) the first fault matching the request. */
static struct fault *fault_match(struct simkit *kit, struct evhttp_request *req, const char *path)
{
    const char *m = method_name(evhttp_request_get_command(req));
    for (struct fault **pp = &kit->faults; *pp; pp = &(*pp)->next) {
        struct fault *f = *pp;
        if (!strstr(path, f->path))
            continue;
        if (f->method && strcasecmp(f->method, m) != 0)
            continue;
        f->hits++;
        if (f->remaining > 0 && --f->remaining == 0) {
            /* copy out what the caller needs, then drop the spent fault */
            static struct fault spent;
            spent = *f;
            *pp = f->next;
            fault_free(f);
            spent.path = spent.method = NULL;
            spent.next = NULL;
            return &spent;
        }
        return f;
    }
    return NULL;
}

/* ---------------------------------------------------------------- request dispatch */

static void route(struct simkit *kit, struct evhttp_request *req);

static void deferred_unlink(struct deferred *d)
{
    struct simkit *kit = d->kit;
    if (d->prev)
        d->prev->next = d->next;
    else
        kit->deferred = d->next;
    if (d->next)
        d->next->prev = d->prev;
    event_free(d->timer);
    free(d);
}

static void deferred_cb(evutil_socket_t fd, short what, void *arg)
{
    struct deferred *d = arg;
    struct simkit *kit = d->kit;
    struct evhttp_request *req = d->req;
    int status = d->status, drop = d->drop;
    deferred_unlink(d);
    if (drop) {
        struct evhttp_connection *c = evhttp_request_get_connection(req);
        if (c)
            evhttp_connection_free(c); /* closes without a reply; frees req with it */
        else
            evhttp_request_free(req); /* the client left already; the request is ours */
        return;
    }
    if (status) {
        kit->o.error_reply(req, status, "injected fault");
        return;
    }
    route(kit, req);
}

static int defer(struct simkit *kit, struct evhttp_request *req, int ms, int status, int drop)
{
    struct deferred *d = calloc(1, sizeof *d);
    if (!d)
        return -1;
    d->kit = kit;
    d->req = req;
    d->status = status;
    d->drop = drop;
    d->timer = evtimer_new(kit->base, deferred_cb, d);
    if (!d->timer) {
        free(d);
        return -1;
    }
    d->next = kit->deferred;
    if (kit->deferred)
        kit->deferred->prev = d;
    kit->deferred = d;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(d->timer, &tv);
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Splits a path into percent-decoded segments inside buf; returns the count or -1. */
static int split_path(const char *path, char *buf, size_t buflen, char **segs, int max)
{
    size_t o = 0;
    int n = 0;
    const char *p = path;
    while (*p == '/')
        p++;
    while (*p) {
        if (n == max)
            return -1;
        segs[n++] = buf + o;
        while (*p && *p != '/') {
            int c = (unsigned char)*p;
            if (c == '%' && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
                c = hexval(p[1]) * 16 + hexval(p[2]);
                p += 2;
            }
            if (o + 2 >= buflen)
                return -1;
            buf[o++] = (char)c;
            p++;
        }
        buf[o++] = '\0';
        while (*p == '/')
            p++;
    }
    return n;
}

static void admin_stats(struct simkit *kit, struct evhttp_request *req)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", kit->o.name);
    cJSON_AddNumberToObject(j, "requests", (double)kit->n_requests);
    cJSON_AddNumberToObject(j, "faulted", (double)kit->n_faulted);
    cJSON *ev = cJSON_AddObjectToObject(j, "cloudevents");
    cJSON_AddNumberToObject(ev, "emitted", (double)kit->n_emitted);
    cJSON_AddNumberToObject(ev, "delivered", (double)kit->n_delivered);
    cJSON_AddNumberToObject(ev, "failed", (double)kit->n_failed);
    cJSON_AddNumberToObject(ev, "skipped", (double)kit->n_skipped);
    cJSON_AddNumberToObject(ev, "attempts", (double)kit->n_attempts);
    cJSON_AddNumberToObject(ev, "inflight", kit->inflight);
    cJSON_AddNumberToObject(ev, "pending",
                            (double)(kit->n_emitted - kit->n_delivered - kit->n_failed -
                                     kit->n_skipped));
    if (kit->o.stats)
        kit->o.stats(kit, j, kit->o.ud);
    simkit_reply_json(req, 200, j);
}

static void admin_events(struct simkit *kit, struct evhttp_request *req)
{
    cJSON *arr = cJSON_CreateArray();
    uint64_t first = kit->seq >= EVENT_RING ? kit->seq - EVENT_RING + 1 : 1;
    for (uint64_t s = first; s <= kit->seq; s++) {
        struct event_rec *r = rec_for(kit, s);
        if (!r)
            continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "seq", (double)r->seq);
        cJSON_AddStringToObject(e, "id", r->id);
        cJSON_AddStringToObject(e, "type", r->type);
        cJSON_AddStringToObject(e, "subject", r->subject);
        cJSON_AddStringToObject(e, "time", r->at);
        cJSON_AddStringToObject(e, "state", r->state);
        cJSON_AddNumberToObject(e, "attempts", r->attempts);
        cJSON_AddNumberToObject(e, "last_status", r->last_status);
        cJSON_AddItemToArray(arr, e);
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "events", arr);
    simkit_reply_json(req, 200, j);
}

static void admin_faults(struct simkit *kit, struct evhttp_request *req)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd == EVHTTP_REQ_GET) {
        cJSON *arr = cJSON_CreateArray();
        for (struct fault *f = kit->faults; f; f = f->next)
            cJSON_AddItemToArray(arr, fault_json(f));
        cJSON *j = cJSON_CreateObject();
        cJSON_AddItemToObject(j, "faults", arr);
        simkit_reply_json(req, 200, j);
        return;
    }
    if (cmd == EVHTTP_REQ_DELETE) {
        while (kit->faults) {
            struct fault *f = kit->faults;
            kit->faults = f->next;
            fault_free(f);
        }
        simkit_reply_empty(req, 204);
        return;
    }
    if (cmd != EVHTTP_REQ_POST) {
        kit->o.error_reply(req, 405, "GET, POST or DELETE");
        return;
    }
    cJSON *body = simkit_body_json(req, NULL);
    const char *err = NULL;
    cJSON *added = cJSON_CreateArray();
    if (cJSON_IsArray(body)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, body) {
            struct fault *f = fault_add(kit, it, &err);
            if (!f)
                break;
            cJSON_AddItemToArray(added, fault_json(f));
        }
    } else if (cJSON_IsObject(body)) {
        struct fault *f = fault_add(kit, body, &err);
        if (f)
            cJSON_AddItemToArray(added, fault_json(f));
    } else {
        err = "body must be a fault object or an array of them";
    }
    cJSON_Delete(body);
    if (err) {
        cJSON_Delete(added);
        kit->o.error_reply(req, 400, err);
        return;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "faults", added);
    simkit_reply_json(req, 201, j);
}

/* Delivers a recorded event again, same id and body: what a real producer's retry looks like. */
static void admin_resend(struct simkit *kit, struct evhttp_request *req, const char *seqs)
{
    long seq;
    struct event_rec *r;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        kit->o.error_reply(req, 405, "POST");
        return;
    }
    if (simkit_parse_int(seqs, &seq) < 0 || !(r = rec_for(kit, (uint64_t)seq)) || !r->body) {
        kit->o.error_reply(req, 404, "no such event");
        return;
    }
    /* copy first: enqueue may overwrite this very ring slot */
    struct event_rec c = *r;
    char *body = strdup(r->body);
    if (!body || enqueue(kit, c.id, c.type, c.subject, c.at, body) < 0) {
        free(body);
        kit->o.error_reply(req, 500, "cannot queue");
        return;
    }
    free(body);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "seq", (double)kit->seq);
    cJSON_AddStringToObject(j, "id", c.id);
    simkit_reply_json(req, 202, j);
}

static void route(struct simkit *kit, struct evhttp_request *req)
{
    char buf[4096];
    char *segs[MAX_SEGS];
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    int n = split_path(path ? path : "/", buf, sizeof buf, segs, MAX_SEGS);
    if (n < 0) {
        kit->o.error_reply(req, 404, "no such path");
        return;
    }
    if (n == 2 && strcmp(segs[0], "_sim") == 0) {
        if (strcmp(segs[1], "health") == 0) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "status", "ok");
            cJSON_AddStringToObject(j, "name", kit->o.name);
            simkit_reply_json(req, 200, j);
            return;
        }
        if (strcmp(segs[1], "stats") == 0) {
            admin_stats(kit, req);
            return;
        }
        if (strcmp(segs[1], "events") == 0) {
            admin_events(kit, req);
            return;
        }
        if (strcmp(segs[1], "faults") == 0) {
            admin_faults(kit, req);
            return;
        }
    }
    if (n == 4 && strcmp(segs[0], "_sim") == 0 && strcmp(segs[1], "events") == 0 &&
        strcmp(segs[3], "resend") == 0) {
        admin_resend(kit, req, segs[2]);
        return;
    }
    kit->o.route(kit, req, segs, n, kit->o.ud);
}

static void request_done_cb(struct evhttp_request *req, void *arg)
{
    struct simkit *kit = arg;
    if (kit->o.quiet)
        return;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    simkit_log(kit, "info", "method=%s path=%s status=%d",
               method_name(evhttp_request_get_command(req)), path ? path : "?",
               evhttp_request_get_response_code(req));
}

static void gencb(struct evhttp_request *req, void *arg)
{
    struct simkit *kit = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    kit->n_requests++;
    evhttp_request_set_on_complete_cb(req, request_done_cb, kit);
    if (!path)
        path = "/";
    if (kit->stopping) {
        kit->o.error_reply(req, 503, "simulator shutting down");
        return;
    }
    /* admin routes are never faulted, so a test can always clear what it injected */
    if (strncmp(path, "/_sim/", 6) != 0 && kit->faults) {
        struct fault *f = fault_match(kit, req, path);
        if (f) {
            kit->n_faulted++;
            simkit_log(kit, "info", "msg=\"fault injected\" path=%s status=%d delay_ms=%d drop=%d",
                       path, f->status, f->delay_ms, f->drop);
            if (f->delay_ms > 0 || f->drop) {
                if (defer(kit, req, f->delay_ms, f->status, f->drop) < 0)
                    kit->o.error_reply(req, 500, "out of memory");
                return;
            }
            kit->o.error_reply(req, f->status, "injected fault");
            return;
        }
    }
    route(kit, req);
}

/* ---------------------------------------------------------------- lifecycle */

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct simkit *kit = arg;
    simkit_log(kit, "info", "msg=\"shutting down\" signal=%d", (int)sig);
    event_base_loopexit(kit->base, NULL);
}

static int parse_lcm_url(struct simkit *kit, const char *url, char *err, size_t errlen)
{
    struct evhttp_uri *u = evhttp_uri_parse(url);
    int rc = -1;
    if (!u || !evhttp_uri_get_scheme(u) || strcmp(evhttp_uri_get_scheme(u), "http") != 0 ||
        !evhttp_uri_get_host(u)) {
        snprintf(err, errlen, "--lcm-url must be http://host[:port][/base]");
        goto out;
    }
    kit->lcm_host = strdup(evhttp_uri_get_host(u));
    kit->lcm_port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : 80;
    const char *base = evhttp_uri_get_path(u);
    size_t bl = base ? strlen(base) : 0;
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    size_t len = bl + strlen(kit->o.ce_path) + 2;
    kit->lcm_path = malloc(len);
    if (!kit->lcm_host || !kit->lcm_path)
        goto out;
    snprintf(kit->lcm_path, len, "%.*s%s%s", (int)bl, base ? base : "",
             kit->o.ce_path[0] == '/' ? "" : "/", kit->o.ce_path);
    rc = 0;
out:
    if (u)
        evhttp_uri_free(u);
    return rc;
}

int simkit_new(struct simkit **out, const struct simkit_opts *o, char *err, size_t errlen)
{
    struct simkit *kit = calloc(1, sizeof *kit);
    char host[256];
    long port;
    *out = NULL;
    if (!kit) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    kit->o = *o;
    const char *colon = strrchr(o->listen, ':');
    if (!colon || colon == o->listen || (size_t)(colon - o->listen) >= sizeof host ||
        simkit_parse_int(colon + 1, &port) < 0 || port > 65535) {
        snprintf(err, errlen, "--listen must be ADDR:PORT");
        goto fail;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - o->listen), o->listen);
    if (kit->o.ce_concurrency < 1)
        kit->o.ce_concurrency = 1;
    if (o->lcm_url && *o->lcm_url && parse_lcm_url(kit, o->lcm_url, err, errlen) < 0)
        goto fail;
    signal(SIGPIPE, SIG_IGN);
    kit->base = event_base_new();
    kit->chains = simkit_map_new();
    if (!kit->base || !kit->chains) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    /* names in --lcm-url resolve through evdns (with /etc/hosts) so nothing blocks the loop */
    kit->dns = evdns_base_new(kit->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!kit->dns)
        kit->dns = evdns_base_new(kit->base, 0);
    kit->http = evhttp_new(kit->base);
    if (!kit->http) {
        snprintf(err, errlen, "evhttp_new failed");
        goto fail;
    }
    evhttp_set_max_body_size(kit->http, MAX_BODY);
    evhttp_set_allowed_methods(kit->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                              EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                                              EVHTTP_REQ_HEAD);
    evhttp_set_gencb(kit->http, gencb, kit);
    struct evhttp_bound_socket *bs =
        evhttp_bind_socket_with_handle(kit->http, host, (unsigned short)port);
    kit->bound = bs;
    if (!bs) {
        snprintf(err, errlen, "cannot listen on %s: %s", o->listen, strerror(errno));
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    snprintf(kit->self_url, sizeof kit->self_url, strchr(host, ':') ? "http://[%s]:%ld"
                                                                     : "http://%s:%ld",
             strcmp(host, "0.0.0.0") == 0 ? "127.0.0.1" : host, port);
    kit->sigint = evsignal_new(kit->base, SIGINT, signal_cb, kit);
    kit->sigterm = evsignal_new(kit->base, SIGTERM, signal_cb, kit);
    if (!kit->sigint || !kit->sigterm || event_add(kit->sigint, NULL) < 0 ||
        event_add(kit->sigterm, NULL) < 0) {
        snprintf(err, errlen, "cannot install signal handlers");
        goto fail;
    }
    if (o->port_file) {
        char tmp[1024];
        snprintf(tmp, sizeof tmp, "%s.tmp", o->port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%ld\n", port) < 0 || fclose(f) != 0 || rename(tmp, o->port_file)) {
            snprintf(err, errlen, "cannot write %s", o->port_file);
            goto fail;
        }
    }
    if (kit->lcm_host)
        simkit_log(kit, "info", "msg=\"listening\" url=%s lcm=http://%s:%d%s", kit->self_url,
                   kit->lcm_host, kit->lcm_port, kit->lcm_path);
    else
        simkit_log(kit, "info", "msg=\"listening\" url=%s lcm=none", kit->self_url);
    *out = kit;
    return 0;
fail:
    simkit_free(kit);
    return -1;
}

int simkit_run(struct simkit *kit)
{
    return event_base_dispatch(kit->base) < 0 ? -1 : 0;
}

static void flush_done_cb(struct evhttp_request *req, void *arg)
{
    struct simkit *kit = arg;
    if (--kit->flushing == 0)
        event_base_loopbreak(kit->base);
}

void simkit_free(struct simkit *kit)
{
    if (!kit)
        return;
    kit->stopping = 1;
    if (kit->o.shutdown)
        kit->o.shutdown(kit, kit->o.ud);
    while (kit->posts_head) {
        struct post *p = kit->posts_head;
        kit->posts_head = p->next;
        post_free(p);
    }
    /* held requests get an answer (which also frees detached ones) and the loop runs until those
     * answers are written, at most a second; nothing new is accepted meanwhile */
    if (kit->http && kit->bound) {
        evhttp_del_accept_socket(kit->http, kit->bound);
        kit->bound = NULL;
    }
    while (kit->deferred) {
        struct deferred *d = kit->deferred;
        struct evhttp_request *req = d->req;
        deferred_unlink(d);
        if (evhttp_request_get_connection(req)) {
            kit->flushing++;
            evhttp_request_set_on_complete_cb(req, flush_done_cb, kit);
        }
        kit->o.error_reply(req, 503, "simulator shutting down");
    }
    if (kit->flushing > 0) {
        struct timeval tv = {1, 0};
        event_base_loopexit(kit->base, &tv);
        event_base_dispatch(kit->base);
    }
    while (kit->faults) {
        struct fault *f = kit->faults;
        kit->faults = f->next;
        fault_free(f);
    }
    if (kit->http)
        evhttp_free(kit->http);
    if (kit->dns)
        evdns_base_free(kit->dns, 0);
    if (kit->sigint)
        event_free(kit->sigint);
    if (kit->sigterm)
        event_free(kit->sigterm);
    simkit_map_free(kit->chains);
    for (size_t i = 0; i < EVENT_RING; i++)
        free(kit->ring[i].body);
    if (kit->base)
        event_base_free(kit->base);
    free(kit->lcm_host);
    free(kit->lcm_path);
    free(kit);
    libevent_global_shutdown();
}
