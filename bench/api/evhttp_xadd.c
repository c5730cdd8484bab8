/* Baseline for bench/api: evhttp + one asynchronous Redis XADD per request (hiredis async on
 * the same libevent loop), replying from the XADD callback. This is the least a durable
 * write over HTTP costs; lcmd's POST /api/v1/sessions is compared with it.
 * Usage: bench_api_evhttp_xadd <port> <redis_port> */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

static redisAsyncContext *rc;

static void on_xadd(redisAsyncContext *c, void *r, void *priv)
{
    (void)c;
    struct evhttp_request *req = priv;
    redisReply *reply = r;
    struct evbuffer *b = evbuffer_new();
    if (reply && reply->type == REDIS_REPLY_STRING) {
        evbuffer_add_printf(b, "{\"id\":\"%s\"}", reply->str);
        evhttp_send_reply(req, 201, "Created", b);
    } else {
        evhttp_send_reply(req, 503, "Unavailable", b);
    }
    evbuffer_free(b);
}

static void on_req(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    char *data = malloc(n + 1);
    evbuffer_copyout(in, data, n);
    data[n] = 0;
    if (redisAsyncCommand(rc, on_xadd, req, "XADD bench:api MAXLEN ~ 100000 * data %b", data, n) != REDIS_OK)
        evhttp_send_reply(req, 503, "Unavailable", NULL);
    free(data);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s <port> <redis_port>\n", argv[0]);
        return 2;
    }
    struct event_base *base = event_base_new();
    rc = redisAsyncConnect("127.0.0.1", atoi(argv[2]));
    if (!rc || rc->err) {
        fprintf(stderr, "redis connect failed\n");
        return 1;
    }
    redisLibeventAttach(rc, base);
    struct evhttp *http = evhttp_new(base);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_gencb(http, on_req, NULL);
    if (evhttp_bind_socket(http, "127.0.0.1", (ev_uint16_t)atoi(argv[1])) < 0) {
        fprintf(stderr, "cannot bind\n");
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    event_base_dispatch(base);
    evhttp_free(http);
    event_base_free(base);
    return 0;
}
