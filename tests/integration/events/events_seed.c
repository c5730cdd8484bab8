/* Test tool: writes aggregates through the store's own append path (lcm_store_append), so the
 * Python tests create sessions and workers exactly as lcmd would, whatever the Redis Function
 * protocol of the day. Reads one JSON line per write on stdin:
 *   {"kind":"session","id":"s1","expected":0,"events":[{"type":"session.created","data":{…}}]}
 * and answers "ok <new version>" or "err <reason>"; prints "ready" once Redis is connected. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "core/redis.h"
#include "store/store.h"

struct seed {
    struct event_base *base;
    struct lcm_redis *redis;
    struct lcm_store *store;
    struct bufferevent *in;
    int busy, eof, ready;
};

static void next_line(struct seed *s);

static void done(const struct lcm_store_result *res, void *ud)
{
    struct seed *s = ud;
    if (res->status == LCM_STORE_OK && res->n_versions == 1)
        printf("ok %llu\n", (unsigned long long)res->versions[0]);
    else
        printf("err %s %s\n", lcm_store_strerror(res->status), res->message);
    fflush(stdout);
    s->busy = 0;
    next_line(s);
}

static void handle(struct seed *s, const char *line)
{
    cJSON *j = cJSON_Parse(line);
    const cJSON *evs = cJSON_GetObjectItemCaseSensitive(j, "events");
    const char *kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "kind"));
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "id"));
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(j, "expected");
    int n = cJSON_GetArraySize(evs);
    if (!kind || !id || !cJSON_IsNumber(exp) || !cJSON_IsArray(evs) || n < 1 || n > 64) {
        printf("err INVALID bad request line\n");
        fflush(stdout);
        cJSON_Delete(j);
        return;
    }
    struct lcm_store_event ev[64];
    char *texts[64];
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(evs, i);
        texts[i] = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(e, "data"));
        ev[i] = (struct lcm_store_event){
            .type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "type")),
            .data = texts[i], .by = "test" };
    }
    struct lcm_store_write w = { .kind = kind, .id = id, .expected_version = (uint64_t)exp->valuedouble,
                                 .events = ev, .n_events = (size_t)n };
    int rc = lcm_store_append(s->store, &w, 1, NULL, done, s);
    for (int i = 0; i < n; i++)
        cJSON_free(texts[i]);
    cJSON_Delete(j);
    if (rc < 0) {
        printf("err %s\n", lcm_store_strerror(rc));
        fflush(stdout);
        return;
    }
    s->busy = 1;
}

static void next_line(struct seed *s)
{
    struct evbuffer *b = bufferevent_get_input(s->in);
    while (!s->busy && s->ready) {
        size_t len;
        char *line = evbuffer_readln(b, &len, EVBUFFER_EOL_LF);
        if (!line)
            break;
        handle(s, line);
        free(line);
    }
    if (!s->busy && s->eof && evbuffer_get_length(b) == 0)
        event_base_loopexit(s->base, NULL);
}

static void on_read(struct bufferevent *bev, void *ud)
{
    (void)bev;
    next_line(ud);
}

static void on_event(struct bufferevent *bev, short what, void *ud)
{
    (void)bev;
    struct seed *s = ud;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        s->eof = 1;
        next_line(s);
    }
}

static void connected(struct lcm_redis *r, void *ud)
{
    (void)r;
    struct seed *s = ud;
    if (!s->ready) {
        s->ready = 1;
        printf("ready\n");
        fflush(stdout);
        next_line(s);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: lcm_events_seed REDIS_URL\n");
        return 2;
    }
    struct seed s = { 0 };
    char err[256];
    s.base = event_base_new();
    struct lcm_redis_opts ro = { .url = argv[1] };
    s.redis = lcm_redis_new(s.base, NULL, &ro);
    struct lcm_store_opts so = { .feed_maxlen = -1, .no_follow = 1 };
    s.store = s.redis ? lcm_store_new(s.base, s.redis, NULL, &so, err, sizeof(err)) : NULL;
    if (!s.store) {
        fprintf(stderr, "lcm_events_seed: %s\n", err);
        return 1;
    }
    lcm_redis_on_connect(s.redis, connected, &s);
    s.in = bufferevent_socket_new(s.base, STDIN_FILENO, 0);
    bufferevent_setcb(s.in, on_read, NULL, on_event, &s);
    bufferevent_enable(s.in, EV_READ);
    event_base_dispatch(s.base);
    bufferevent_free(s.in);
    lcm_redis_free(s.redis);
    lcm_store_free(s.store);
    event_base_free(s.base);
    return 0;
}
