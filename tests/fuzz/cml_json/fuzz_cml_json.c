/* Fuzz target over the cml plugin's response parsers (cml_parse.c): every parser sees every
 * input, and whatever they accept must be internally consistent (counts match arrays, strings
 * NUL-terminated, limits respected). libFuzzer entry point; replay.c runs the corpus as a test. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cml_endpoint.h"
#include "cml_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_str(const char *s)
{
    if (s && strlen(s) > (size_t)64 << 20)
        abort();
}

static void check_strs(struct lcm_strs s)
{
    if (s.n && !s.v)
        abort();
    for (size_t i = 0; i < s.n; i++) {
        if (!s.v[i])
            abort();
        check_str(s.v[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *b = (const char *)data;
    struct cml_arena a = { 0 };
    char why[128], text[160];
    const char *tok;
    if (cml_parse_token(&a, b, size, &tok, why, sizeof why) == 0) {
        for (const char *p = tok; *p; p++)
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
                abort();
    }
    cml_parse_error_text(b, size, text, sizeof text);
    if (strlen(text) >= sizeof text)
        abort();

    struct lcm_rt_system_info si;
    if (cml_parse_system_info(&a, b, size, &si, why, sizeof why) == 0 && !si.version)
        abort();
    int valid, lic;
    cml_parse_health(b, size, &valid, &lic, why, sizeof why);

    struct lcm_rt_licence l;
    if (cml_parse_licence(&a, b, size, &l, why, sizeof why) == 0) {
        check_str(l.product_license);
        if (l.node_limit < 0 || l.node_limit > 1000000)
            abort();
    }
    struct lcm_rt_imported im;
    if (cml_parse_imported(&a, b, size, &im, why, sizeof why) == 0) {
        if (!im.lab_id)
            abort();
        check_strs(im.warnings);
    }
    struct lcm_rt_lab lab;
    if (cml_parse_lab(&a, b, size, &lab, why, sizeof why) == 0 && !lab.state)
        abort();
    int conv;
    cml_parse_bool(b, size, &conv, why, sizeof why);

    struct lcm_rt_nodes nodes;
    const char **cfgs;
    if (cml_parse_nodes(&a, b, size, &nodes, &cfgs, why, sizeof why) == 0) {
        if (nodes.n > CML_MAX_NODES || (nodes.n && (!nodes.v || !cfgs)))
            abort();
        for (size_t i = 0; i < nodes.n; i++) {
            if (!nodes.v[i].id || nodes.v[i].tags.n > CML_MAX_TAGS)
                abort();
            check_strs(nodes.v[i].tags);
            check_str(cfgs[i]);
        }
    }
    struct lcm_rt_lab_ids ids;
    if (cml_parse_lab_ids(&a, b, size, &ids, why, sizeof why) == 0)
        check_strs(ids.ids);
    struct lcm_rt_node_definitions nd;
    if (cml_parse_node_definitions(&a, b, size, &nd, why, sizeof why) == 0) {
        if (nd.ids.n > CML_MAX_NODE_DEFS)
            abort();
        check_strs(nd.ids);
        for (size_t i = 0; i < nd.ids.n; i++) {
            if (!nd.ids.v[i][0] || strlen(nd.ids.v[i]) > CML_MAX_NODE_DEF_ID)
                abort();
            for (size_t k = 0; k < i; k++)
                if (!strcmp(nd.ids.v[i], nd.ids.v[k]))
                    abort();
        }
    }
    struct lcm_rt_system_stats st;
    if (cml_parse_stats(b, size, &st, why, sizeof why) == 0 &&
        (st.cpu_percent < 0 || st.cpu_percent > 100 || st.running_nodes < 0))
        abort();
    struct lcm_rt_activity act;
    if (cml_parse_events(&a, b, size, 0, &act, why, sizeof why) == 0) {
        if (act.n && !act.v)
            abort();
        for (size_t i = 0; i < act.n; i++)
            if (!act.v[i].category ||
                (act.v[i].at_ms > act.last_activity_ms && cml_user_category(act.v[i].category)))
                abort();
    }
    check_str(cml_parse_extracted(&a, b, size));
    cml_arena_free(&a);

    /* Text helpers on the input as a NUL-terminated string. */
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    int64_t ms;
    cml_rfc3339_ms(s, &ms);
    cml_lab_status(s);
    char out[256];
    if (cml_endpoint_resolve(s, s, "i-0", "w-0", out, sizeof out, why, sizeof why) == 0 &&
        !strstr(out, "://"))
        abort();
    cml_endpoint_resolve(NULL, s, s, s, out, sizeof out, why, sizeof why);
    free(s);
    return 0;
}
