/* lcm-seed: writes domain commands straight into the event store (as the API would, without a
 * fence) so the lifecycle tests can book and schedule sessions, bring workers up and request
 * operator actions without depending on the HTTP API or the scheduler. One command per run:
 *   lcm-seed REDIS_URL template JSON | definition ID JSON | worker JSON | session JSON |
 *            schedule SID WID | transition SID STATUS [REASON] | desired SID STATUS |
 *            extend SID END | lab-action LAB ACTION | worker-status WID STATUS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "core/metrics.h"
#include "core/redis.h"
#include "domain/definition.h"
#include "domain/lab.h"
#include "domain/session.h"
#include "domain/session_time.h"
#include "domain/template.h"
#include "domain/worker.h"
#include "store/store.h"
#include "ctl/sessions_tx.h"

#define BY "test:seed"

static int g_argc, g_rc = 1;
static char **g_argv;
static struct event_base *g_base;
static struct lcm_store *g_store;

static void done(const struct lcm_store_result *res, void *ud)
{
    (void)ud;
    if (res->status) {
        fprintf(stderr, "lcm-seed: commit: %s %s\n", lcm_store_strerror(res->status), res->message);
        g_rc = 1;
    } else {
        g_rc = 0;
    }
    event_base_loopbreak(g_base);
}

/* lcm_tx without a controller: commits with no fence. */
static int commit(struct lcm_tx *tx)
{
    if (tx->failed) {
        fprintf(stderr, "lcm-seed: refused: %s (%s)\n", tx->derr.message, tx->derr.field);
        return -1;
    }
    struct lcm_store_change ch[LCM_TX_MAX];
    struct lcm_store_event ev[64];
    char *datas[64], ats[64][LCM_TIME_BUFSZ];
    size_t nc = 0, k = 0;
    for (size_t i = 0; i < tx->n; i++) {
        struct lcm_tx_agg *a = &tx->a[i];
        if (!a->evs.n)
            continue;
        ch[nc++] = (struct lcm_store_change){ .kind = a->kind, .id = a->id,
                                              .expected_version = a->expected, .events = &ev[k],
                                              .n_events = a->evs.n };
        for (size_t e = 0; e < a->evs.n && k < 64; e++, k++) {
            datas[k] = cJSON_PrintUnformatted(a->evs.v[e].data);
            lcm_rfc3339_format(a->evs.v[e].at, ats[k], LCM_TIME_BUFSZ);
            ev[k] = (struct lcm_store_event){ .type = a->evs.v[e].type, .data = datas[k],
                                              .at = ats[k], .by = BY };
        }
    }
    char err[256];
    int rc = nc ? lcm_store_commit(g_store, ch, nc, NULL, done, NULL, err, sizeof(err)) : -1;
    for (size_t i = 0; i < k; i++)
        free(datas[i]);
    if (!nc) {
        g_rc = 0;   /* nothing to do */
        return 1;
    }
    if (rc)
        fprintf(stderr, "lcm-seed: commit: %s\n", err);
    return rc;
}


static const void *get(const char *kind, const char *id)
{
    const void *s = lcm_store_get(g_store, kind, id);
    if (!s)
        fprintf(stderr, "lcm-seed: no %s %s\n", kind, id);
    return s;
}

static int run(void)
{
    const char *op = g_argv[2];
    int64_t now = (int64_t)time(NULL);
    struct lcm_tx tx;
    struct lcm_derr de;
    lcm_tx_init(&tx);
    cJSON *j = NULL;
    int rc = -1;
    if (!strcmp(op, "template") && g_argc == 4) {
        j = cJSON_Parse(g_argv[3]);
        const cJSON *n = cJSON_GetObjectItem(j, "name");
        if (!cJSON_IsString(n))
            goto out;
        void *st = lcm_tx_state(&tx, &lcm_kind_template, n->valuestring, NULL);
        if (st)
            lcm_tx_check(&tx, lcm_template_cmd_create(j, BY, now, lcm_tx_events(&tx, st), &de), &de);
    } else if (!strcmp(op, "definition") && g_argc == 5) {
        j = cJSON_Parse(g_argv[4]);
        struct lcm_definition *d = lcm_tx_state(&tx, &lcm_kind_definition, g_argv[3], NULL);
        if (d) {
            lcm_tx_check(&tx, lcm_definition_cmd_create(g_argv[3], j, BY, now, lcm_tx_events(&tx, d),
                                                        &de), &de);
            lcm_tx_check(&tx, lcm_definition_cmd_transition(d, LCM_DEF_ACTIVE, "test", BY, now,
                                                            lcm_tx_events(&tx, d), &de), &de);
        }
    } else if (!strcmp(op, "worker") && g_argc == 4) {
        /* {id, template, region, instance_id, private_ip} → running, CML ready, licensed */
        j = cJSON_Parse(g_argv[3]);
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(j, "id"));
        const char *tn = cJSON_GetStringValue(cJSON_GetObjectItem(j, "template"));
        const struct lcm_template *tpl = tn ? get("template", tn) : NULL;
        if (!id || !tpl)
            goto out;
        struct lcm_worker *w = lcm_tx_state(&tx, &lcm_kind_worker, id, NULL);
        struct lcm_worker_create wc = { .id = id, .region = cJSON_GetStringValue(cJSON_GetObjectItem(j, "region")),
                                        .origin = LCM_ORIGIN_MANUAL };
        if (w) {
            lcm_tx_check(&tx, lcm_worker_cmd_create(&wc, tpl, BY, now, lcm_tx_events(&tx, w), &de), &de);
            struct lcm_worker_observation ob = {
                .status = LCM_WK_RUNNING,
                .instance_id = cJSON_GetStringValue(cJSON_GetObjectItem(j, "instance_id")),
                .private_ip = cJSON_GetStringValue(cJSON_GetObjectItem(j, "private_ip")),
            };
            lcm_tx_check(&tx, lcm_worker_cmd_observe(w, &ob, BY, now, lcm_tx_events(&tx, w), &de), &de);
            lcm_tx_check(&tx, lcm_worker_cmd_set_cml(w, "2.9.0", 1, NULL, 0, BY, now,
                                                     lcm_tx_events(&tx, w), &de), &de);
            lcm_tx_check(&tx, lcm_worker_cmd_set_license(w, tpl->license_type, "registered", 0, BY, now,
                                                         lcm_tx_events(&tx, w), &de), &de);
        }
    } else if (!strcmp(op, "session") && g_argc == 4) {
        /* {id, definition_id, start, end, owner} (epoch seconds; start 0 = now) */
        j = cJSON_Parse(g_argv[3]);
        struct lcm_session_create sc = { 0 };
        sc.id = cJSON_GetStringValue(cJSON_GetObjectItem(j, "id"));
        sc.definition_id = cJSON_GetStringValue(cJSON_GetObjectItem(j, "definition_id"));
        sc.owner = cJSON_GetStringValue(cJSON_GetObjectItem(j, "owner"));
        sc.reservation_id = cJSON_GetStringValue(cJSON_GetObjectItem(j, "reservation_id"));
        sc.start = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "start"));
        sc.end = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "end"));
        const struct lcm_definition *d = sc.definition_id ? get("definition", sc.definition_id) : NULL;
        struct lcm_time_params tp;
        lcm_time_params_default(&tp);
        struct lcm_session *s = sc.id && d ? lcm_tx_state(&tx, &lcm_kind_session, sc.id, NULL) : NULL;
        if (!s)
            goto out;
        lcm_tx_check(&tx, lcm_session_cmd_create(&sc, d, &tp, BY, now, lcm_tx_events(&tx, s), &de), &de);
    } else if (!strcmp(op, "schedule") && g_argc == 5) {
        const struct lcm_session *s0 = get("session", g_argv[3]);
        const struct lcm_worker *w0 = get("worker", g_argv[4]);
        const struct lcm_definition *d = s0 ? get("definition", s0->definition_id) : NULL;
        if (!s0 || !w0 || !d)
            goto out;
        struct lcm_session *s = lcm_tx_state(&tx, &lcm_kind_session, s0->id, s0);
        struct lcm_worker *w = lcm_tx_state(&tx, &lcm_kind_worker, w0->id, w0);
        if (s && w) {
            lcm_tx_check(&tx, lcm_session_cmd_schedule(s, w->id, "test", BY, now, lcm_tx_events(&tx, s),
                                                       &de), &de);
            lcm_tx_check(&tx, lcm_worker_cmd_allocate(w, s->id, &d->req.need, BY, now,
                                                      lcm_tx_events(&tx, w), &de), &de);
        }
    } else if (!strcmp(op, "transition") && g_argc >= 5) {
        const struct lcm_session *s0 = get("session", g_argv[3]);
        int to = lcm_fsm_parse(&lcm_fsm_session, g_argv[4]);
        struct lcm_session *s = s0 ? lcm_tx_state(&tx, &lcm_kind_session, s0->id, s0) : NULL;
        if (!s || to < 0)
            goto out;
        lcm_tx_check(&tx, lcm_session_cmd_transition(s, to, g_argc > 5 ? g_argv[5] : "test", BY, now,
                                                     lcm_tx_events(&tx, s), &de), &de);
    } else if (!strcmp(op, "desired") && g_argc == 5) {
        const struct lcm_session *s0 = get("session", g_argv[3]);
        int to = lcm_fsm_parse(&lcm_fsm_session, g_argv[4]);
        struct lcm_session *s = s0 ? lcm_tx_state(&tx, &lcm_kind_session, s0->id, s0) : NULL;
        if (!s || to < 0)
            goto out;
        lcm_tx_check(&tx, lcm_session_cmd_set_desired(s, to, BY, now, lcm_tx_events(&tx, s), &de), &de);
    } else if (!strcmp(op, "extend") && g_argc == 5) {
        const struct lcm_session *s0 = get("session", g_argv[3]);
        struct lcm_session *s = s0 ? lcm_tx_state(&tx, &lcm_kind_session, s0->id, s0) : NULL;
        if (!s)
            goto out;
        lcm_tx_check(&tx, lcm_session_cmd_extend(s, atoll(g_argv[4]), 0, BY, now, lcm_tx_events(&tx, s),
                                                 &de), &de);
    } else if (!strcmp(op, "lab-action") && g_argc == 5) {
        const struct lcm_lab *l0 = get("lab", g_argv[3]);
        struct lcm_lab *l = l0 ? lcm_tx_state(&tx, &lcm_kind_lab, l0->id, l0) : NULL;
        if (!l)
            goto out;
        lcm_tx_check(&tx, lcm_lab_cmd_request_action(l, lcm_lab_action_parse(g_argv[4]), BY, now,
                                                     lcm_tx_events(&tx, l), &de), &de);
    } else if (!strcmp(op, "worker-status") && g_argc == 5) {
        const struct lcm_worker *w0 = get("worker", g_argv[3]);
        struct lcm_worker *w = w0 ? lcm_tx_state(&tx, &lcm_kind_worker, w0->id, w0) : NULL;
        if (!w)
            goto out;
        struct lcm_worker_observation ob = { .status = lcm_fsm_parse(&lcm_fsm_worker, g_argv[4]) };
        lcm_tx_check(&tx, lcm_worker_cmd_observe(w, &ob, BY, now, lcm_tx_events(&tx, w), &de), &de);
    } else {
        fprintf(stderr, "lcm-seed: unknown command or arguments\n");
        goto out;
    }
    rc = commit(&tx);
out:
    cJSON_Delete(j);
    lcm_tx_free(&tx);
    return rc;
}

static void ready(struct lcm_store *s, int status, void *ud)
{
    (void)s;
    (void)ud;
    if (status) {
        fprintf(stderr, "lcm-seed: store load failed\n");
        event_base_loopbreak(g_base);
        return;
    }
    int rc = run();
    if (rc)
        event_base_loopbreak(g_base);
}

static void connected(struct lcm_redis *r, void *ud)
{
    (void)r;
    (void)ud;
    static int started;
    if (!started++)
        lcm_store_start(g_store, ready, NULL);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: lcm-seed REDIS_URL COMMAND ARGS…\n");
        return 2;
    }
    g_argc = argc;
    g_argv = argv;
    g_base = event_base_new();
    struct lcm_metrics *m = lcm_metrics_new();
    struct lcm_redis_opts ro = { .url = argv[1] };
    struct lcm_redis *r = lcm_redis_new(g_base, m, &ro);
    char err[256];
    struct lcm_store_opts so = { .no_follow = 1 };
    g_store = r ? lcm_store_new(g_base, r, m, &so, err, sizeof(err)) : NULL;
    if (!g_store) {
        fprintf(stderr, "lcm-seed: store: %s\n", r ? err : "redis");
        return 1;
    }
    lcm_redis_on_connect(r, connected, NULL);
    struct timeval limit = { 20, 0 };
    event_base_loopexit(g_base, &limit);
    event_base_dispatch(g_base);
    lcm_redis_free(r);
    lcm_store_free(g_store);
    lcm_metrics_free(m);
    event_base_free(g_base);
    return g_rc;
}
