/* Ceilings for bench/api's POST: evhttp with the Redis writes of one session creation per
 * request and nothing else (no auth, no body parsing, no validation, no read model, a short
 * reply). Whatever lcmd does on POST /api/v1/sessions, it does at least this, so run.py
 * compares both lcmd and the aim with these figures in the same run.
 *   store     the write lcmd makes (hash with the 19 fields, the session.created event, the
 *             three indexes) through lcm_store_append: the real lcm_append function, with its
 *             checks and group commit, over lcm_redis
 *   commands  the same writes as plain commands, pipelined on one hiredis connection: the
 *             layout's floor (no function, no checks, no atomicity)
 * Usage: bench_api_evhttp_session <port> <redis_port> store|commands */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "core/log.h"
#include "core/redis.h"
#include "store/store.h"

#define DEF_ID "def-01a21d34ea15b2590228"
#define SLOT "{\"start\":\"2026-11-27T19:32:16Z\",\"end\":\"2026-11-27T20:32:16Z\"}"
#define AT "2026-11-27T13:32:17Z"
#define DATA                                                                                  \
    "{\"definition_id\":\"" DEF_ID "\",\"definition_name\":\"bench\",\"definition_version\":" \
    "\"1.0.0\",\"owner\":\"admin\",\"reservation_id\":null,\"timeslot\":" SLOT               \
    ",\"boot_lead_minutes\":20,\"lds_enabled\":false,\"grading_enabled\":false}"
#define START_SCORE 1795807936.0

static struct lcm_store *store;
static redisAsyncContext *rc;
static unsigned long seq;

/* The hash fields of a new session, as lcmd writes them (id first). */
static const char *const FIELDS[][2] = {
    { "id", NULL },
    { "definition_id", DEF_ID },
    { "definition_name", "bench" },
    { "definition_version", "1.0.0" },
    { "owner", "admin" },
    { "timeslot", SLOT },
    { "status", "pending" },
    { "desired_status", "running" },
    { "boot_lead_minutes", "20" },
    { "lds_enabled", "false" },
    { "grading_enabled", "false" },
    { "ports", "{}" },
    { "pipeline", "{}" },
    { "user_session", "{\"lds_session_id\":null,\"login_url\":null,\"devices\":null,\"status\":null}" },
    { "grading", "{\"grading_session_id\":null,\"status\":null}" },
    { "status_history", "[]" },
    { "created_at", AT },
    { "created_by", "admin" },
    { "updated_at", AT },
};
#define NFIELDS (sizeof(FIELDS) / sizeof(FIELDS[0]))

static void reply(struct evhttp_request *req, const char *id, int ok)
{
    struct evbuffer *b = evbuffer_new();
    if (ok) {
        evbuffer_add_printf(b, "{\"id\":\"%s\"}", id);
        evhttp_send_reply(req, 201, "Created", b);
    } else {
        evhttp_send_reply(req, 503, "Unavailable", b);
    }
    evbuffer_free(b);
}

/* Reads the body as lcmd must (and drops it) and names the new session. */
static void take_body(struct evhttp_request *req, char *id, size_t idlen)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    evbuffer_drain(in, evbuffer_get_length(in));
    snprintf(id, idlen, "ses-b%ld-%lu", (long)getpid(), ++seq);
}

/* ---- store: lcm_store_append ---------------------------------------------------------- */

struct pending {
    struct evhttp_request *req;
    char id[48];
};

static void store_done(const struct lcm_store_result *r, void *ud)
{
    struct pending *p = ud;
    reply(p->req, p->id, r->status == LCM_STORE_OK);
    free(p);
}

static void on_req_store(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct pending *p = malloc(sizeof(*p));
    p->req = req;
    take_body(req, p->id, sizeof(p->id));
    struct lcm_store_field f[NFIELDS];
    for (size_t i = 0; i < NFIELDS; i++)
        f[i] = (struct lcm_store_field){ FIELDS[i][0], i ? FIELDS[i][1] : p->id };
    struct lcm_store_event ev = { "session.created", DATA, AT, "admin" };
    struct lcm_store_index_op ix[3] = {
        { "lcm:idx:session:all", 0, 0, 0, NULL, 0 },
        { "lcm:idx:session:status:pending", 0, 0, 0, NULL, 0 },
        { "lcm:idx:session:start", 1, 0, START_SCORE, NULL, 0 },
    };
    struct lcm_store_write w = { "session", p->id, 0, &ev, 1, f, NFIELDS, ix, 3, NULL, 0 };
    if (lcm_store_append(store, &w, 1, NULL, store_done, p) < 0) {
        reply(req, p->id, 0);
        free(p);
    }
}

/* ---- commands: the same writes, plain and pipelined ----------------------------------- */

static void commands_done(redisAsyncContext *c, void *r, void *priv)
{
    (void)c;
    struct pending *p = priv;
    redisReply *x = r;
    reply(p->req, p->id, x && x->type != REDIS_REPLY_ERROR);
    free(p);
}

static void on_req_commands(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct pending *p = malloc(sizeof(*p));
    p->req = req;
    take_body(req, p->id, sizeof(p->id));
    char hk[80], ek[96], score[32];
    snprintf(hk, sizeof(hk), "lcm:{session:%s}", p->id);
    snprintf(ek, sizeof(ek), "%s:events", hk);
    snprintf(score, sizeof(score), "%.0f", START_SCORE);
    const char *hset[2 + 2 * (NFIELDS + 1)];
    int n = 0;
    hset[n++] = "HSET";
    hset[n++] = hk;
    hset[n++] = "version";
    hset[n++] = "1";
    for (size_t i = 0; i < NFIELDS; i++) {
        hset[n++] = FIELDS[i][0];
        hset[n++] = i ? FIELDS[i][1] : p->id;
    }
    redisAsyncCommand(rc, NULL, NULL, "HGET %s version", hk);
    redisAsyncCommand(rc, NULL, NULL, "EXISTS %s", ek);
    redisAsyncCommand(rc, NULL, NULL, "XADD %s * type session.created version 1 at %s by admin "
                      "data %s", ek, AT, DATA);
    redisAsyncCommand(rc, NULL, NULL, "XADD lcm:feed MAXLEN ~ 100000 * kind session id %s "
                      "type session.created version 1 at %s by admin data %s", p->id, AT, DATA);
    redisAsyncCommandArgv(rc, NULL, NULL, n, hset, NULL);
    redisAsyncCommand(rc, NULL, NULL, "SADD lcm:idx:session:all %s", p->id);
    redisAsyncCommand(rc, NULL, NULL, "SADD lcm:idx:session:status:pending %s", p->id);
    if (redisAsyncCommand(rc, commands_done, p, "ZADD lcm:idx:session:start %s %s", score,
                          p->id) != REDIS_OK) {
        reply(req, p->id, 0);
        free(p);
    }
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[3], "store") && strcmp(argv[3], "commands"))) {
        fprintf(stderr, "usage: %s <port> <redis_port> store|commands\n", argv[0]);
        return 2;
    }
    lcm_log_set_level(LCM_LOG_WARN);
    struct event_base *base = event_base_new();
    struct lcm_redis *r = NULL;
    int use_store = strcmp(argv[3], "store") == 0;
    if (use_store) {
        char url[64], err[256];
        snprintf(url, sizeof(url), "redis://127.0.0.1:%s", argv[2]);
        struct lcm_redis_opts ro = { .url = url };
        r = lcm_redis_new(base, NULL, &ro);
        struct lcm_store_opts so = { .no_follow = 1 };
        store = r ? lcm_store_new(base, r, NULL, &so, err, sizeof(err)) : NULL;
        if (!store) {
            fprintf(stderr, "store: %s\n", r ? err : "no redis");
            return 1;
        }
        while (!lcm_redis_connected(r))
            event_base_loop(base, EVLOOP_ONCE);
    } else {
        rc = redisAsyncConnect("127.0.0.1", atoi(argv[2]));
        if (!rc || rc->err) {
            fprintf(stderr, "redis connect failed\n");
            return 1;
        }
        redisLibeventAttach(rc, base);
    }
    struct evhttp *http = evhttp_new(base);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_POST);
    evhttp_set_gencb(http, use_store ? on_req_store : on_req_commands, NULL);
    int rc_exit = 0;
    if (evhttp_bind_socket(http, "127.0.0.1", (ev_uint16_t)atoi(argv[1])) < 0) {
        fprintf(stderr, "cannot bind\n");
        rc_exit = 1;
    } else {
        printf("listening\n");
        fflush(stdout);
        event_base_dispatch(base);
    }
    evhttp_free(http);
    if (store)
        lcm_store_free(store);
    if (r)
        lcm_redis_free(r);
    if (rc)
        redisAsyncFree(rc);
    event_base_free(base);
    return rc_exit;
}
