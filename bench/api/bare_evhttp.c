/* Baseline for bench/api: the barest evhttp responder (one loop, a fixed JSON body of the
 * size of a session, no routing, no auth, no Redis), so lcmd's GET cost can be put in
 * proportion. Usage: bench_api_bare_evhttp <port> [body_bytes] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

static char *body;
static size_t body_len;

static void on_req(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_reference(b, body, body_len, NULL, NULL);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s <port> [body_bytes]\n", argv[0]);
        return 2;
    }
    body_len = argc > 2 ? (size_t)atol(argv[2]) : 900;
    body = malloc(body_len + 1);
    memset(body, 'x', body_len);
    body[0] = '{';
    body[body_len - 1] = '}';
    struct event_base *base = event_base_new();
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
    free(body);
    return 0;
}
