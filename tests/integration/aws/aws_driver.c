/* Test driver for the aws plugin: loads lcm-aws.so through the real loader with the real host
 * services (libevent loop, curl-multi HTTP), runs one cloud op given on the command line and
 * prints {"rc","error","result","elapsed_ms"} as JSON. Credentials come from the environment. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "core/httpc.h"
#include "core/log.h"
#include "core/metrics.h"
#include "plugin/plugin.h"

#define MAXV 64

struct drv {
    struct event_base *base;
    struct lcm_plugins *reg;
    int finished;
    cJSON *out;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static const char *state_name(enum lcm_instance_state s)
{
    static const char *const n[] = { "unknown", "pending", "running", "stopping", "stopped",
                                     "shutting-down", "terminated" };
    return (unsigned)s < 7 ? n[s] : "?";
}

static cJSON *kvs_json(const struct lcm_kvs *k)
{
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; i < k->n; i++)
        cJSON_AddStringToObject(o, k->v[i].key, k->v[i].value);
    return o;
}

static void add_str(cJSON *o, const char *k, const char *v)
{
    if (v)
        cJSON_AddStringToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

static const char *g_op;

static cJSON *result_json(const void *r)
{
    if (!r)
        return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    if (!strcmp(g_op, "launch") || !strcmp(g_op, "describe")) {
        const struct lcm_cloud_instances *in = r;
        cJSON *arr = cJSON_AddArrayToObject(o, "instances");
        for (size_t i = 0; i < in->n; i++) {
            const struct lcm_cloud_instance *x = &in->v[i];
            cJSON *j = cJSON_CreateObject();
            add_str(j, "instance_id", x->instance_id);
            cJSON_AddStringToObject(j, "state", state_name(x->state));
            add_str(j, "state_name", x->state_name);
            add_str(j, "image_id", x->image_id);
            add_str(j, "instance_type", x->instance_type);
            add_str(j, "private_ip", x->private_ip);
            add_str(j, "public_ip", x->public_ip);
            add_str(j, "availability_zone", x->availability_zone);
            add_str(j, "launch_time", x->launch_time);
            add_str(j, "client_token", x->client_token);
            cJSON_AddItemToObject(j, "tags", kvs_json(&x->tags));
            cJSON_AddItemToArray(arr, j);
        }
        add_str(o, "next_token", in->next_token);
    } else if (!strcmp(g_op, "start") || !strcmp(g_op, "stop") || !strcmp(g_op, "terminate")) {
        const struct lcm_cloud_changes *c = r;
        cJSON *arr = cJSON_AddArrayToObject(o, "changes");
        for (size_t i = 0; i < c->n; i++) {
            cJSON *j = cJSON_CreateObject();
            add_str(j, "instance_id", c->v[i].instance_id);
            cJSON_AddStringToObject(j, "previous", state_name(c->v[i].previous));
            cJSON_AddStringToObject(j, "current", state_name(c->v[i].current));
            cJSON_AddItemToArray(arr, j);
        }
    } else if (!strcmp(g_op, "find-image")) {
        const struct lcm_cloud_images *im = r;
        cJSON *arr = cJSON_AddArrayToObject(o, "images");
        for (size_t i = 0; i < im->n; i++) {
            cJSON *j = cJSON_CreateObject();
            add_str(j, "image_id", im->v[i].image_id);
            add_str(j, "name", im->v[i].name);
            add_str(j, "creation_date", im->v[i].creation_date);
            add_str(j, "state", im->v[i].state);
            add_str(j, "architecture", im->v[i].architecture);
            cJSON_AddItemToArray(arr, j);
        }
    } else if (!strcmp(g_op, "metrics")) {
        const struct lcm_cloud_datapoints *d = r;
        cJSON *arr = cJSON_AddArrayToObject(o, "points");
        for (size_t i = 0; i < d->n; i++) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddNumberToObject(j, "at_ms", (double)d->v[i].at_ms);
            cJSON_AddNumberToObject(j, "value", d->v[i].value);
            cJSON_AddItemToArray(arr, j);
        }
        add_str(o, "unit", d->unit);
    }
    return o;
}

static cJSON *error_json(const struct lcm_error *e)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "code", e->code);
    cJSON_AddBoolToObject(j, "retryable", e->retryable);
    cJSON_AddNumberToObject(j, "http_status", e->http_status);
    cJSON_AddStringToObject(j, "message", e->message);
    return j;
}

static void on_done(void *ud, const struct lcm_error *err, const void *result)
{
    struct drv *d = ud;
    d->finished++;
    if (d->finished > 1)
        return;                  /* the loader reports the violation; keep the first result */
    cJSON_AddNumberToObject(d->out, "rc", err ? err->code : 0);
    cJSON_AddItemToObject(d->out, "error", err ? error_json(err) : cJSON_CreateNull());
    cJSON_AddItemToObject(d->out, "result", err ? cJSON_CreateNull() : result_json(result));
    event_base_loopexit(d->base, NULL);
}

static uint64_t g_op_id;

static void on_cancel(evutil_socket_t fd, short w, void *arg)
{
    struct drv *d = arg;
    lcm_plugins_cancel(d->reg, g_op_id);
}

static void on_shutdown(evutil_socket_t fd, short w, void *arg)
{
    struct drv *d = arg;
    lcm_plugins_shutdown(d->reg);
}

static int split_kv(char *s, struct lcm_kv *kv)
{
    char *eq = strchr(s, '=');
    if (!eq)
        return -1;
    *eq = '\0';
    kv->key = s;
    kv->value = eq + 1;
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: aws_driver --dir PLUGIN_DIR [--config JSON] [--region R] [--worker W]\n"
            "  [--credentials SET] [--deadline-ms N] [--cancel-after-ms N] [--shutdown-after-ms N]\n"
            "  OP [--image I] [--type T] [--token T] [--subnet S] [--sg G]... [--key K]\n"
            "  [--user-data S] [--tag k=v]... [--root-gb N] [--id I]... [--state S]...\n"
            "  [--next T] [--max N] [--force] [--pattern P] [--owner O]... [--start-ms N]\n"
            "  [--end-ms N] [--period N] [--stat S] [--metric M]\n"
            "OP: launch describe start stop terminate find-image create-tags metrics\n");
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *config = NULL, *region = NULL, *worker = NULL, *creds = NULL;
    const char *image = NULL, *type = NULL, *token = NULL, *subnet = NULL, *key = NULL;
    const char *udata = NULL, *next = NULL, *pattern = NULL, *stat = NULL, *metric = NULL;
    const char *sgs[MAXV], *ids[MAXV], *states[MAXV], *owners[MAXV];
    struct lcm_kv tags[MAXV];
    size_t nsg = 0, nid = 0, nst = 0, now = 0, ntag = 0;
    long deadline = 0, cancel_after = -1, shutdown_after = -1, root_gb = 0, max = 0, period = 0;
    long long start_ms = 0, end_ms = 0;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && (i++, 1))
        if (OPT("--dir")) dir = v;
        else if (OPT("--config")) config = v;
        else if (OPT("--region")) region = v;
        else if (OPT("--worker")) worker = v;
        else if (OPT("--credentials")) creds = v;
        else if (OPT("--deadline-ms")) deadline = atol(v);
        else if (OPT("--cancel-after-ms")) cancel_after = atol(v);
        else if (OPT("--shutdown-after-ms")) shutdown_after = atol(v);
        else if (OPT("--image")) image = v;
        else if (OPT("--type")) type = v;
        else if (OPT("--token")) token = v;
        else if (OPT("--subnet")) subnet = v;
        else if (OPT("--key")) key = v;
        else if (OPT("--user-data")) udata = v;
        else if (OPT("--root-gb")) root_gb = atol(v);
        else if (OPT("--next")) next = v;
        else if (OPT("--max")) max = atol(v);
        else if (OPT("--pattern")) pattern = v;
        else if (OPT("--start-ms")) start_ms = atoll(v);
        else if (OPT("--end-ms")) end_ms = atoll(v);
        else if (OPT("--period")) period = atol(v);
        else if (OPT("--stat")) stat = v;
        else if (OPT("--metric")) metric = v;
        else if (OPT("--sg") && nsg < MAXV) sgs[nsg++] = v;
        else if (OPT("--id") && nid < MAXV) ids[nid++] = v;
        else if (OPT("--state") && nst < MAXV) states[nst++] = v;
        else if (OPT("--owner") && now < MAXV) owners[now++] = v;
        else if (OPT("--tag") && ntag < MAXV) {
            if (split_kv(argv[i], &tags[ntag++]) != 0) { usage(); return 2; }
        } else if (strcmp(a, "--force") == 0) force = 1;
        else if (a[0] != '-' && !g_op) g_op = a;
        else { fprintf(stderr, "bad argument: %s\n", a); usage(); return 2; }
#undef OPT
    }
    if (!dir || !g_op) {
        usage();
        return 2;
    }
    const char *lvl = getenv("AWS_DRIVER_LOG");
    enum lcm_log_level ll = LCM_LOG_INFO;
    if (lvl)
        lcm_log_parse_level(lvl, &ll);
    lcm_log_set_level(ll);

    struct drv d = { 0 };
    d.base = event_base_new();
    struct lcm_metrics *metrics = lcm_metrics_new();
    struct lcm_httpc *httpc = lcm_httpc_new(d.base, metrics);
    cJSON *cfg = config ? cJSON_Parse(config) : NULL;
    if (config && !cfg) {
        fprintf(stderr, "--config is not JSON\n");
        return 2;
    }
    struct lcm_plugin_host_ctx ctx = { .base = d.base, .httpc = httpc, .metrics = metrics,
                                       .config = cfg };
    char err[256] = "";
    d.reg = lcm_plugins_load(dir, &ctx, err, sizeof err);
    if (!d.reg || !lcm_plugins_get(d.reg, LCM_KIND_CLOUD)) {
        fprintf(stderr, "no cloud plugin loaded from %s: %s %s\n", dir, err,
                d.reg ? lcm_plugins_refusal(d.reg, "lcm-aws.so") ? lcm_plugins_refusal(
                            d.reg, "lcm-aws.so") : "" : "");
        return 3;
    }
    d.out = cJSON_CreateObject();
    struct lcm_call call = { .size = sizeof call, .correlation_id = "aws-driver",
                             .region = region, .credentials = creds, .worker_id = worker };
    if (deadline > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        call.deadline_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + deadline;
    }
    struct lcm_error e = { 0 };
    int rc;
    struct lcm_strs sid = { ids, nid };
    struct lcm_kvs stag = { tags, ntag };
    double t0 = now_ms();
    if (!strcmp(g_op, "launch")) {
        struct lcm_cloud_launch_args a = {
            .image_id = image, .instance_type = type, .client_token = token,
            .subnet_id = subnet, .security_group_ids = { sgs, nsg }, .key_name = key,
            .user_data = udata, .user_data_len = udata ? strlen(udata) : 0, .tags = stag,
            .root_volume_gb = (int)root_gb };
        rc = lcm_cloud_call(d.reg, launch, &call, &a, on_done, &d, &e, &g_op_id);
    } else if (!strcmp(g_op, "describe")) {
        struct lcm_cloud_describe_args a = { .instance_ids = sid, .tag_filters = stag,
                                             .states = { states, nst }, .next_token = next,
                                             .max_results = (int)max };
        rc = lcm_cloud_call(d.reg, describe, &call, &a, on_done, &d, &e, &g_op_id);
    } else if (!strcmp(g_op, "start") || !strcmp(g_op, "stop") || !strcmp(g_op, "terminate")) {
        struct lcm_cloud_ids_args a = { .instance_ids = sid, .force = force };
        if (!strcmp(g_op, "start"))
            rc = lcm_cloud_call(d.reg, start, &call, &a, on_done, &d, &e, &g_op_id);
        else if (!strcmp(g_op, "stop"))
            rc = lcm_cloud_call(d.reg, stop, &call, &a, on_done, &d, &e, &g_op_id);
        else
            rc = lcm_cloud_call(d.reg, terminate, &call, &a, on_done, &d, &e, &g_op_id);
    } else if (!strcmp(g_op, "find-image")) {
        struct lcm_cloud_find_image_args a = { .name_pattern = pattern,
                                               .owners = { owners, now } };
        rc = lcm_cloud_call(d.reg, find_image, &call, &a, on_done, &d, &e, &g_op_id);
    } else if (!strcmp(g_op, "create-tags")) {
        struct lcm_cloud_tags_args a = { .resource_ids = sid, .tags = stag };
        rc = lcm_cloud_call(d.reg, create_tags, &call, &a, on_done, &d, &e, &g_op_id);
    } else if (!strcmp(g_op, "metrics")) {
        struct lcm_cloud_metrics_args a = { .instance_id = nid ? ids[0] : NULL,
                                            .metric = metric, .statistic = stat,
                                            .start_ms = start_ms, .end_ms = end_ms,
                                            .period_s = (int)period };
        rc = lcm_cloud_call(d.reg, metrics, &call, &a, on_done, &d, &e, &g_op_id);
    } else {
        usage();
        return 2;
    }
    int exit_code = 0;
    if (rc != 0) {
        cJSON_AddNumberToObject(d.out, "rc", rc);
        cJSON_AddBoolToObject(d.out, "sync", 1);
        cJSON_AddItemToObject(d.out, "error", error_json(&e));
        cJSON_AddNullToObject(d.out, "result");
    } else {
        struct event *cev = NULL, *sev = NULL;
        if (cancel_after >= 0) {
            struct timeval tv = { cancel_after / 1000, (cancel_after % 1000) * 1000 };
            cev = evtimer_new(d.base, on_cancel, &d);
            evtimer_add(cev, &tv);
        }
        if (shutdown_after >= 0) {
            struct timeval tv = { shutdown_after / 1000, (shutdown_after % 1000) * 1000 };
            sev = evtimer_new(d.base, on_shutdown, &d);
            evtimer_add(sev, &tv);
        }
        while (!d.finished && event_base_dispatch(d.base) == 0 && !d.finished)
            ;
        if (cev)
            event_free(cev);
        if (sev)
            event_free(sev);
        if (!d.finished) {
            fprintf(stderr, "loop ended without completion\n");
            exit_code = 4;
        }
    }
    cJSON_AddNumberToObject(d.out, "elapsed_ms", now_ms() - t0);
    cJSON_AddNumberToObject(d.out, "inflight_after", (double)lcm_plugins_inflight(d.reg));
    lcm_plugins_shutdown(d.reg);
    cJSON_AddNumberToObject(d.out, "done_calls", d.finished);
    cJSON_AddNumberToObject(d.out, "violations", (double)lcm_plugins_violations());
    char *s = cJSON_PrintUnformatted(d.out);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(d.out);
    lcm_plugins_free(d.reg);
    lcm_httpc_free(httpc);
    lcm_metrics_free(metrics);
    cJSON_Delete(cfg);
    event_base_free(d.base);
    libevent_global_shutdown();
    return exit_code;
}
