/* Builders for aggregates made through their real commands and events (so tests exercise
 * the same paths as lcmd). */
#ifndef DOMAIN_BUILDERS_H
#define DOMAIN_BUILDERS_H

#include "testutil.h"

#include "definition.h"
#include "template.h"
#include "worker.h"

static const char multi_json[] =
    "{\"id\":\"worker-template-multi\",\"name\":\"multi-sessions\","
    "\"description\":\"Multi-sessions worker\",\"instance_type\":\"m5zn.metal\","
    "\"ami_name_pattern\":\"cisco-cml2.9-lablet-v0.1.8\",\"capacity\":{\"cpu_cores\":48,"
    "\"memory_gb\":192,\"storage_gb\":256,\"max_nodes\":200},\"cost_per_hour_usd\":3.9641,"
    "\"enabled\":true,\"created_by\":\"seeder\",\"license_type\":\"enterprise\","
    "\"region\":\"us-east-1\"}";
static const char single_json[] =
    "{\"id\":\"worker-template-single\",\"name\":\"single-session\","
    "\"instance_type\":\"m5zn.metal\",\"ami_name_pattern\":\"cisco-cml2.9.1-20nodes-v0.2.2a\","
    "\"capacity\":{\"cpu_cores\":48,\"memory_gb\":192,\"storage_gb\":128,\"max_nodes\":20},"
    "\"cost_per_hour_usd\":3.9641,\"enabled\":true,\"license_type\":\"personal\","
    "\"region\":\"us-east-1\"}";

static inline struct lcm_template *make_template(const char *json)
{
    cJSON *b = cJSON_Parse(json);
    assert_non_null(b);
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    if (lcm_template_cmd_create(b, "seeder", T0, &out, &err))
        fail_msg("template: %s: %s", err.field, err.message);
    cJSON_Delete(b);
    struct lcm_template *t = lcm_template_new(cJSON_GetObjectItem(out.v[0].data, "name")->valuestring);
    fold(&lcm_kind_template, t, &out);
    return t;
}

/* A running, CML-ready worker from the template JSON, CML 2.9.1 with some node defs. */
static inline struct lcm_worker *make_worker(const char *id, const char *tpl_json,
                                             uint16_t lo, uint16_t hi)
{
    struct lcm_template *t = make_template(tpl_json);
    struct lcm_events out;
    struct lcm_derr err;
    lcm_events_init(&out);
    struct lcm_worker_create c = {.id = id, .origin = LCM_ORIGIN_SCALE_UP, .ports_lo = lo,
                                  .ports_hi = hi};
    if (lcm_worker_cmd_create(&c, t, "ctl:autoscaler", T0, &out, &err))
        fail_msg("worker: %s", err.message);
    struct lcm_worker *w = lcm_worker_new(id);
    fold(&lcm_kind_worker, w, &out);
    const int path[] = {LCM_WK_PROVISIONING, LCM_WK_STARTING, LCM_WK_RUNNING};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(lcm_worker_cmd_transition(w, path[i], NULL, "ctl:workers", T0 + i + 1,
                                                   &out, &err), 0);
        fold(&lcm_kind_worker, w, &out);
    }
    const char *nds[] = {"iosv", "ubuntu-desktop-24-04-v2", "vmanagemock", "mock-server"};
    assert_int_equal(lcm_worker_cmd_set_cml(w, "2.9.1", 1, nds, 4, "ctl:workers", T0 + 10, &out,
                                            &err), 0);
    fold(&lcm_kind_worker, w, &out);
    lcm_template_free(t);
    return w;
}

#endif
