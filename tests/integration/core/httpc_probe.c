/* Sends one request through lcm_httpc (the host's outbound HTTP service) and prints
 * "status=<n> attempts=<n>" and the body; used by tests to exercise SigV4 against moto.
 * Secrets come from the environment (PROBE_KEY, PROBE_SECRET, PROBE_TOKEN), never argv. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/httpc.h"
#include "core/metrics.h"

static int status = -1;

static void done(const struct lcm_httpc_resp *r, void *ud)
{
    struct event_base *base = ud;
    status = r->status;
    printf("status=%d attempts=%d error=%s\n%.*s\n", r->status, r->attempts, r->error ? r->error : "-",
           (int)r->body_len, r->body);
    event_base_loopexit(base, NULL);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: httpc_probe METHOD URL BODY [SIGV4-PROVIDER]\n");
        return 2;
    }
    struct event_base *base = event_base_new();
    struct lcm_metrics *m = lcm_metrics_new();
    struct lcm_httpc *c = lcm_httpc_new(base, m);
    const char *hdrs[] = { "Content-Type: application/x-www-form-urlencoded; charset=utf-8" };
    struct lcm_httpc_req rq = {
        .method = argv[1], .url = argv[2], .body = argv[3], .body_len = strlen(argv[3]),
        .headers = hdrs, .nheaders = 1, .timeout_ms = 15000, .metric_label = "probe",
    };
    if (argc > 4) {
        rq.auth = LCM_HTTPC_AUTH_SIGV4;
        rq.sigv4 = argv[4];
        rq.username = getenv("PROBE_KEY");
        rq.password = getenv("PROBE_SECRET");
        rq.session_token = getenv("PROBE_TOKEN");
    }
    if (lcm_httpc_request(c, &rq, done, base, NULL) < 0) {
        fprintf(stderr, "request refused\n");
        return 2;
    }
    event_base_dispatch(base);
    lcm_httpc_free(c);
    lcm_metrics_free(m);
    event_base_free(base);
    libevent_global_shutdown();
    return status >= 0 ? 0 : 1;
}
