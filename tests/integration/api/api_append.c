/* Test helper: appends events to one aggregate through the event store's own commit path
 * (lcm_store_commit: fold, hash fields, indexes, feed), so the API tests can put sessions,
 * workers and labs into states only controllers reach, the way a controller would.
 * Usage: api_append <redis-url> <kind> <id> <expected-version> <type> <data-json> [...] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/redis.h"
#include "domain/kind.h"
#include "store/store.h"

struct ctx {
    struct event_base *base;
    struct lcm_store *store;
    const char *kind, *id;
    unsigned long long expected;
    struct lcm_store_event ev[16];
    size_t nev;
    int rc, started;
};

static void done(const struct lcm_store_result *res, void *ud)
{
    struct ctx *c = ud;
    if (res->status == LCM_STORE_OK) {
        printf("ok %llu\n", (unsigned long long)(res->n_versions ? res->versions[0] : 0));
        c->rc = 0;
    } else {
        fprintf(stderr, "append failed: %s %s\n", lcm_store_strerror(res->status), res->message);
    }
    event_base_loopexit(c->base, NULL);
}

static void ready(struct lcm_store *s, int status, void *ud)
{
    struct ctx *c = ud;
    char err[300] = "";
    if (status != 0) {
        fprintf(stderr, "load failed: %s\n", lcm_store_strerror(status));
        event_base_loopexit(c->base, NULL);
        return;
    }
    struct lcm_store_change ch = { lcm_kind_find(c->kind), c->id, c->expected, c->ev, c->nev, NULL, 0 };
    if (!ch.kind || lcm_store_commit(s, &ch, 1, NULL, done, c, err, sizeof(err)) != 0) {
        fprintf(stderr, "commit refused: %s\n", ch.kind ? err : "unknown kind");
        event_base_loopexit(c->base, NULL);
    }
}

static void connected(struct lcm_redis *r, void *ud)
{
    struct ctx *c = ud;
    (void)r;
    if (!c->started) {
        c->started = 1;
        if (lcm_store_start(c->store, ready, c) < 0)
            event_base_loopexit(c->base, NULL);
    }
}

int main(int argc, char **argv)
{
    if (argc < 7 || (argc - 5) % 2 || (size_t)(argc - 5) / 2 > 16) {
        fprintf(stderr, "usage: %s <redis-url> <kind> <id> <expected> <type> <data-json> [...]\n", argv[0]);
        return 2;
    }
    struct ctx c = { .kind = argv[2], .id = argv[3], .expected = strtoull(argv[4], NULL, 10), .rc = 1 };
    for (int i = 5; i + 1 < argc; i += 2)
        c.ev[c.nev++] = (struct lcm_store_event){ argv[i], argv[i + 1], NULL, "test" };
    c.base = event_base_new();
    struct lcm_redis_opts ro = { .url = argv[1], .connect_timeout_ms = 2000, .command_timeout_ms = 5000 };
    struct lcm_redis *r = lcm_redis_new(c.base, NULL, &ro);
    struct lcm_store_opts so = { .no_follow = 1 };
    char err[256];
    c.store = r ? lcm_store_new(c.base, r, NULL, &so, err, sizeof(err)) : NULL;
    if (!c.store) {
        fprintf(stderr, "store: %s\n", r ? err : "redis");
        return 1;
    }
    lcm_redis_on_connect(r, connected, &c);
    struct timeval limit = { 10, 0 };
    event_base_loopexit(c.base, &limit);
    event_base_dispatch(c.base);
    lcm_redis_free(r);
    lcm_store_free(c.store);
    event_base_free(c.base);
    return c.rc;
}
