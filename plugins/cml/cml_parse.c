/* Parsers for CML 2.9 API responses into SPI result structs (see cml_parse.h). They treat the
 * body as hostile: wrong types are skipped or refused, sizes are bounded, strings are copied
 * into the caller's arena so the cJSON tree is freed before returning. */
#include "cml_parse.h"
#include "plugkit.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

struct cml_chunk {
    struct cml_chunk *next;
    max_align_t align[];
};

void *cml_arena_alloc(struct cml_arena *a, size_t n)
{
    if (n > ((size_t)1 << 30))
        return NULL;
    struct cml_chunk *c = calloc(1, sizeof *c + (n ? n : 1));
    if (!c)
        return NULL;
    c->next = a->head;
    a->head = c;
    a->bytes += n;
    return c->align;
}

char *cml_arena_strndup(struct cml_arena *a, const char *s, size_t n)
{
    if (!s)
        return NULL;
    char *d = cml_arena_alloc(a, n + 1);
    if (d)
        memcpy(d, s, n);
    return d;
}

char *cml_arena_strdup(struct cml_arena *a, const char *s)
{
    return s ? cml_arena_strndup(a, s, strlen(s)) : NULL;
}

void cml_arena_free(struct cml_arena *a)
{
    while (a->head) {
        struct cml_chunk *c = a->head;
        a->head = c->next;
        free(c);
    }
    a->bytes = 0;
}

static int fail(char *why, size_t whylen, int code, const char *msg)
{
    if (why && whylen)
        snprintf(why, whylen, "%s", msg);
    return code;
}

static cJSON *parse(const char *body, size_t len)
{
    if (!body || len == 0)
        return NULL;
    return cJSON_ParseWithLength(body, len);
}

/* A string member copied into the arena; NULL when absent or not a string. *oom set on OOM. */
static const char *str_at(struct cml_arena *a, const cJSON *o, const char *name, int *oom)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsString(it) || !it->valuestring)
        return NULL;
    char *s = cml_arena_strdup(a, it->valuestring);
    if (!s)
        *oom = 1;
    return s;
}

static int bool_at(const cJSON *o, const char *name, int dflt)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    if (cJSON_IsBool(it))
        return cJSON_IsTrue(it) ? 1 : 0;
    return dflt;
}

/* A finite number member clamped into [lo, hi]; dflt when absent or not a number. */
static double num_at(const cJSON *o, const char *name, double lo, double hi, double dflt)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(it))
        return dflt;
    double d = it->valuedouble;
    if (d != d)
        return dflt;
    return d < lo ? lo : d > hi ? hi : d;
}

int cml_parse_token(struct cml_arena *a, const char *body, size_t len, const char **token,
                    char *why, size_t whylen)
{
    *token = NULL;
    cJSON *j = parse(body, len);
    int rc = 0;
    if (!cJSON_IsString(j) || !j->valuestring) {
        rc = fail(why, whylen, LCM_E_PROTO, "authenticate: the answer is not a JSON string");
        goto out;
    }
    size_t n = strlen(j->valuestring);
    if (n == 0 || n > CML_MAX_TOKEN) {
        rc = fail(why, whylen, LCM_E_PROTO, "authenticate: empty or oversized token");
        goto out;
    }
    /* The token goes into an Authorization header: refuse anything that could split it. */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)j->valuestring[i];
        if (c <= 0x20 || c >= 0x7f) {
            rc = fail(why, whylen, LCM_E_PROTO, "authenticate: token has invalid characters");
            goto out;
        }
    }
    *token = cml_arena_strndup(a, j->valuestring, n);
    if (!*token)
        rc = fail(why, whylen, LCM_E_NOMEM, "out of memory");
out:
    cJSON_Delete(j);
    return rc;
}

void cml_parse_error_text(const char *body, size_t len, char *out, size_t cap)
{
    if (!out || cap == 0)
        return;
    out[0] = '\0';
    const char *src = NULL;
    size_t n = 0;
    cJSON *j = parse(body, len);
    const cJSON *d = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "description")
                                       : NULL;
    if (!cJSON_IsString(d) && cJSON_IsObject(j))
        d = cJSON_GetObjectItemCaseSensitive(j, "detail");   /* FastAPI validation errors */
    if (cJSON_IsString(d) && d->valuestring) {
        src = d->valuestring;
        n = strlen(src);
    } else if (body) {
        src = body;
        n = len;
    }
    size_t o = 0;
    int space = 0;
    for (size_t i = 0; src && i < n && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == '\0')
            break;
        if (isspace(c) || c < 0x20 || c == 0x7f) {
            space = o > 0;
            continue;
        }
        if (space && o + 2 < cap)
            out[o++] = ' ';
        space = 0;
        out[o++] = c >= 0x80 ? '?' : (char)c;
    }
    out[o] = '\0';
    cJSON_Delete(j);
}

int cml_parse_system_info(struct cml_arena *a, const char *body, size_t len,
                          struct lcm_rt_system_info *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    cJSON *j = parse(body, len);
    int rc = 0, oom = 0;
    if (!cJSON_IsObject(j)) {
        rc = fail(why, whylen, LCM_E_PROTO, "system_information: not a JSON object");
        goto out;
    }
    out->version = str_at(a, j, "version", &oom);
    out->ready = bool_at(j, "ready", 0);
    if (!out->version && !oom)
        rc = fail(why, whylen, LCM_E_PROTO, "system_information: no version");
    if (oom)
        rc = fail(why, whylen, LCM_E_NOMEM, "out of memory");
out:
    cJSON_Delete(j);
    return rc;
}

int cml_parse_health(const char *body, size_t len, int *valid, int *licensed, char *why,
                     size_t whylen)
{
    *valid = 0;
    *licensed = 0;
    cJSON *j = parse(body, len);
    int rc = 0;
    if (!cJSON_IsObject(j)) {
        rc = fail(why, whylen, LCM_E_PROTO, "system_health: not a JSON object");
        goto out;
    }
    const cJSON *ctrl = cJSON_GetObjectItemCaseSensitive(j, "controller");
    *valid = bool_at(j, "valid", 0) && (!cJSON_IsObject(ctrl) || bool_at(ctrl, "valid", 0));
    *licensed = bool_at(j, "is_licensed", 0);
out:
    cJSON_Delete(j);
    return rc;
}

static int has_ci(const char *s, const char *needle)
{
    size_t n = strlen(needle);
    for (; s && *s; s++)
        if (strncasecmp(s, needle, n) == 0)
            return 1;
    return 0;
}

int cml_parse_licence(struct cml_arena *a, const char *body, size_t len,
                      struct lcm_rt_licence *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    cJSON *j = parse(body, len);
    int rc = 0, oom = 0;
    if (!cJSON_IsObject(j)) {
        rc = fail(why, whylen, LCM_E_PROTO, "licensing: not a JSON object");
        goto out;
    }
    const cJSON *reg = cJSON_GetObjectItemCaseSensitive(j, "registration");
    const cJSON *auth = cJSON_GetObjectItemCaseSensitive(j, "authorization");
    const cJSON *prod = cJSON_GetObjectItemCaseSensitive(j, "product_license");
    if (cJSON_IsObject(reg))
        out->registration_status = str_at(a, reg, "status", &oom);
    if (cJSON_IsObject(auth))
        out->authorization_status = str_at(a, auth, "status", &oom);
    const char *active = cJSON_IsObject(prod) ? str_at(a, prod, "active", &oom) : NULL;
    int enterprise = cJSON_IsObject(prod) ? bool_at(prod, "is_enterprise", 0) : 0;
    if (!out->registration_status && !out->authorization_status && !active && !oom) {
        rc = fail(why, whylen, LCM_E_PROTO, "licensing: no registration, authorization or "
                                            "product licence");
        goto out;
    }
    out->registered = out->registration_status &&
                      (strcasecmp(out->registration_status, "COMPLETED") == 0 ||
                       strcasecmp(out->registration_status, "REGISTERED") == 0);
    if (active) {
        if (has_ci(active, "enterprise"))
            out->product_license = "enterprise";
        else if (has_ci(active, "personal"))
            out->product_license = "personal";
        else if (has_ci(active, "eval"))
            out->product_license = "evaluation";
        else if (has_ci(active, "educ"))
            out->product_license = "education";
        else {
            char *l = cml_arena_strdup(a, active);
            for (char *p = l; p && *p; p++)
                *p = (char)tolower((unsigned char)*p);
            out->product_license = l;
            oom |= !l;
        }
    } else if (enterprise) {
        out->product_license = "enterprise";
    }
    /* The node limit is the max of the node-count feature (CML lists it among the licensing
     * features, e.g. "CML - Node"/CML_NODE_COUNT); personal licences have 20 built in. */
    const cJSON *feats = cJSON_GetObjectItemCaseSensitive(j, "features");
    const cJSON *f;
    int limit = 0;
    if (cJSON_IsArray(feats)) {
        cJSON_ArrayForEach(f, feats) {
            if (!cJSON_IsObject(f))
                continue;
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(f, "id");
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(f, "name");
            int node = (cJSON_IsString(id) && has_ci(id->valuestring, "node")) ||
                       (cJSON_IsString(nm) && has_ci(nm->valuestring, "node"));
            if (!node)
                continue;
            double mx = num_at(f, "max", 0, 1e6, 0);
            if ((int)mx > limit)
                limit = (int)mx;
        }
    }
    if (limit == 0 && out->product_license && strcmp(out->product_license, "personal") == 0)
        limit = 20;
    out->node_limit = limit;
    if (oom)
        rc = fail(why, whylen, LCM_E_NOMEM, "out of memory");
out:
    cJSON_Delete(j);
    return rc;
}

static int strs_from_array(struct cml_arena *a, const cJSON *arr, size_t max,
                           struct lcm_strs *out)
{
    out->v = NULL;
    out->n = 0;
    if (!cJSON_IsArray(arr))
        return 0;
    size_t n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (cJSON_IsString(it) && it->valuestring)
            n++;
    }
    if (n > max)
        return LCM_E_PROTO;
    if (n == 0)
        return 0;
    const char **v = cml_arena_alloc(a, n * sizeof *v);
    if (!v)
        return LCM_E_NOMEM;
    size_t i = 0;
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsString(it) || !it->valuestring)
            continue;
        if (!(v[i++] = cml_arena_strdup(a, it->valuestring)))
            return LCM_E_NOMEM;
    }
    out->v = v;
    out->n = n;
    return 0;
}

int cml_parse_imported(struct cml_arena *a, const char *body, size_t len,
                       struct lcm_rt_imported *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    cJSON *j = parse(body, len);
    int rc = 0, oom = 0;
    if (!cJSON_IsObject(j)) {
        rc = fail(why, whylen, LCM_E_PROTO, "import: not a JSON object");
        goto out;
    }
    out->lab_id = str_at(a, j, "id", &oom);
    if (!out->lab_id && !oom) {
        rc = fail(why, whylen, LCM_E_PROTO, "import: no lab id in the answer");
        goto out;
    }
    rc = strs_from_array(a, cJSON_GetObjectItemCaseSensitive(j, "warnings"), 1000,
                         &out->warnings);
    if (rc == LCM_E_PROTO)
        rc = fail(why, whylen, rc, "import: too many warnings");
    if (oom || rc == LCM_E_NOMEM)
        rc = fail(why, whylen, LCM_E_NOMEM, "out of memory");
out:
    cJSON_Delete(j);
    return rc;
}

int cml_parse_lab(struct cml_arena *a, const char *body, size_t len, struct lcm_rt_lab *out,
                  char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    cJSON *j = parse(body, len);
    int rc = 0, oom = 0;
    if (!cJSON_IsObject(j)) {
        rc = fail(why, whylen, LCM_E_PROTO, "lab: not a JSON object");
        goto out;
    }
    out->id = str_at(a, j, "id", &oom);
    out->title = str_at(a, j, "lab_title", &oom);
    out->state = str_at(a, j, "state", &oom);
    out->created = str_at(a, j, "created", &oom);
    out->modified = str_at(a, j, "modified", &oom);
    out->node_count = (int)num_at(j, "node_count", 0, 1e6, 0);
    if (!out->state && !oom)
        rc = fail(why, whylen, LCM_E_PROTO, "lab: no state in the answer");
    if (oom)
        rc = fail(why, whylen, LCM_E_NOMEM, "out of memory");
out:
    cJSON_Delete(j);
    return rc;
}

int cml_parse_bool(const char *body, size_t len, int *out, char *why, size_t whylen)
{
    *out = 0;
    cJSON *j = parse(body, len);
    int rc = 0;
    if (cJSON_IsBool(j))
        *out = cJSON_IsTrue(j) ? 1 : 0;
    else
        rc = fail(why, whylen, LCM_E_PROTO, "expected a JSON boolean");
    cJSON_Delete(j);
    return rc;
}

/* A node's configuration: a string, a {name, content} file, or an array of such files (the
 * first, CML's main file, is kept). */
static const char *config_of(struct cml_arena *a, const cJSON *cfg, int *oom)
{
    if (cJSON_IsString(cfg) && cfg->valuestring) {
        char *s = cml_arena_strdup(a, cfg->valuestring);
        *oom |= !s;
        return s;
    }
    if (cJSON_IsArray(cfg)) {
        const cJSON *f;
        cJSON_ArrayForEach(f, cfg) {
            if (cJSON_IsObject(f))
                return str_at(a, f, "content", oom);
        }
        return NULL;
    }
    if (cJSON_IsObject(cfg))
        return str_at(a, cfg, "content", oom);
    return NULL;
}

int cml_parse_nodes(struct cml_arena *a, const char *body, size_t len, struct lcm_rt_nodes *out,
                    const char ***configs, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    if (configs)
        *configs = NULL;
    cJSON *j = parse(body, len);
    int rc = 0, oom = 0;
    if (!cJSON_IsArray(j)) {
        rc = fail(why, whylen, LCM_E_PROTO, "nodes: not a JSON array");
        goto out;
    }
    size_t n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, j) {
        if (cJSON_IsObject(it))
            n++;
        else {
            rc = fail(why, whylen, LCM_E_PROTO, "nodes: expected node objects (data=true)");
            goto out;
        }
    }
    if (n > CML_MAX_NODES) {
        rc = fail(why, whylen, LCM_E_PROTO, "nodes: too many nodes");
        goto out;
    }
    if (n == 0)
        goto out;
    struct lcm_rt_node *v = cml_arena_alloc(a, n * sizeof *v);
    const char **cv = configs ? cml_arena_alloc(a, n * sizeof *cv) : NULL;
    if (!v || (configs && !cv)) {
        rc = fail(why, whylen, LCM_E_NOMEM, "out of memory");
        goto out;
    }
    size_t i = 0;
    cJSON_ArrayForEach(it, j) {
        struct lcm_rt_node *nd = &v[i];
        nd->id = str_at(a, it, "id", &oom);
        nd->label = str_at(a, it, "label", &oom);
        nd->node_definition = str_at(a, it, "node_definition", &oom);
        nd->state = str_at(a, it, "state", &oom);
        if (!nd->id && !oom) {
            rc = fail(why, whylen, LCM_E_PROTO, "nodes: a node has no id");
            goto out;
        }
        int trc = strs_from_array(a, cJSON_GetObjectItemCaseSensitive(it, "tags"), CML_MAX_TAGS,
                                  &nd->tags);
        if (trc == LCM_E_PROTO) {
            rc = fail(why, whylen, LCM_E_PROTO, "nodes: too many tags on a node");
            goto out;
        }
        oom |= trc == LCM_E_NOMEM;
        if (cv)
            cv[i] = config_of(a, cJSON_GetObjectItemCaseSensitive(it, "configuration"), &oom);
        i++;
    }
    if (oom) {
        rc = fail(why, whylen, LCM_E_NOMEM, "out of memory");
        goto out;
    }
    out->v = v;
    out->n = n;
    if (configs)
        *configs = cv;
out:
    if (rc != 0)
        memset(out, 0, sizeof *out);
    cJSON_Delete(j);
    return rc;
}

int cml_parse_lab_ids(struct cml_arena *a, const char *body, size_t len,
                      struct lcm_rt_lab_ids *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    cJSON *j = parse(body, len);
    int rc = 0;
    if (!cJSON_IsArray(j)) {
        rc = fail(why, whylen, LCM_E_PROTO, "labs: not a JSON array");
        goto out;
    }
    rc = strs_from_array(a, j, CML_MAX_LABS, &out->ids);
    if (rc == LCM_E_PROTO)
        fail(why, whylen, rc, "labs: too many labs");
    else if (rc)
        fail(why, whylen, rc, "out of memory");
out:
    cJSON_Delete(j);
    return rc;
}

static int node_def_id_ok(const char *s)
{
    size_t n = 0;
    for (; s && s[n]; n++)
        if ((unsigned char)s[n] < 0x20 || (unsigned char)s[n] == 0x7f || n >= CML_MAX_NODE_DEF_ID)
            return 0;
    return n > 0;
}

int cml_parse_node_definitions(struct cml_arena *a, const char *body, size_t len,
                               struct lcm_rt_node_definitions *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    cJSON *j = parse(body, len);
    int rc = 0;
    const char **v = NULL;
    size_t n = 0, total = 0;
    if (!cJSON_IsArray(j)) {
        rc = fail(why, whylen, LCM_E_PROTO, "node_definitions: not a JSON array");
        goto out;
    }
    total = (size_t)cJSON_GetArraySize(j);
    if (total > CML_MAX_NODE_DEFS) {
        rc = fail(why, whylen, LCM_E_PROTO, "node_definitions: too many node definitions");
        goto out;
    }
    if (total && !(v = cml_arena_alloc(a, total * sizeof *v))) {
        rc = fail(why, whylen, LCM_E_NOMEM, "out of memory");
        goto out;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, j) {
        const cJSON *id = cJSON_IsObject(it) ? cJSON_GetObjectItemCaseSensitive(it, "id") : NULL;
        if (!cJSON_IsString(id) || !node_def_id_ok(id->valuestring))
            continue;
        int dup = 0;
        for (size_t i = 0; i < n && !dup; i++)
            dup = strcmp(v[i], id->valuestring) == 0;
        if (dup)
            continue;
        if (!(v[n] = cml_arena_strdup(a, id->valuestring))) {
            rc = fail(why, whylen, LCM_E_NOMEM, "out of memory");
            goto out;
        }
        n++;
    }
    if (total && !n) {
        rc = fail(why, whylen, LCM_E_PROTO, "node_definitions: no entry has a usable id");
        goto out;
    }
    out->ids.v = n ? v : NULL;
    out->ids.n = n;
out:
    cJSON_Delete(j);
    return rc;
}

static uint64_t bytes_at(const cJSON *o, const char *name)
{
    return (uint64_t)num_at(o, name, 0, 1.8e19, 0);
}

int cml_parse_stats(const char *body, size_t len, struct lcm_rt_system_stats *out, char *why,
                    size_t whylen)
{
    memset(out, 0, sizeof *out);
    cJSON *j = parse(body, len);
    int rc = 0;
    if (!cJSON_IsObject(j)) {
        rc = fail(why, whylen, LCM_E_PROTO, "system_stats: not a JSON object");
        goto out;
    }
    const cJSON *all = cJSON_GetObjectItemCaseSensitive(j, "all");
    const cJSON *computes = cJSON_GetObjectItemCaseSensitive(j, "computes");
    if (!cJSON_IsObject(all) && !cJSON_IsObject(computes)) {
        rc = fail(why, whylen, LCM_E_PROTO, "system_stats: neither totals nor computes");
        goto out;
    }
    if (cJSON_IsObject(all)) {
        const cJSON *cpu = cJSON_GetObjectItemCaseSensitive(all, "cpu");
        const cJSON *mem = cJSON_GetObjectItemCaseSensitive(all, "memory");
        const cJSON *disk = cJSON_GetObjectItemCaseSensitive(all, "disk");
        if (cJSON_IsObject(cpu))
            out->cpu_percent = num_at(cpu, "percent", 0, 100, 0);
        if (cJSON_IsObject(mem)) {
            out->mem_used_bytes = bytes_at(mem, "used");
            out->mem_total_bytes = bytes_at(mem, "total");
        }
        if (cJSON_IsObject(disk)) {
            out->disk_used_bytes = bytes_at(disk, "used");
            out->disk_total_bytes = bytes_at(disk, "total");
        }
    }
    const cJSON *c;
    long running = 0;
    const cJSON *clist = cJSON_IsObject(computes) ? computes : NULL;
    cJSON_ArrayForEach(c, clist) {
        if (!cJSON_IsObject(c))
            continue;
        if (out->computes < 100000)
            out->computes++;
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(c, "stats");
        const cJSON *dom = cJSON_IsObject(st) ? cJSON_GetObjectItemCaseSensitive(st, "dominfo")
                                              : NULL;
        if (cJSON_IsObject(dom))
            running += (long)num_at(dom, "running_nodes", 0, 1e6, 0);
        if (running > 1000000)
            running = 1000000;
    }
    out->running_nodes = (int)running;
out:
    cJSON_Delete(j);
    return rc;
}

int cml_user_category(const char *category)
{
    static const char *const user[] = {
        "user_activity", "start_lab", "stop_lab", "queue_node", "start_node", "stop_node",
        "wipe_node", "packet_capture", "import_lab", "export_lab",
    };
    for (size_t i = 0; category && i < sizeof user / sizeof user[0]; i++)
        if (strcmp(category, user[i]) == 0)
            return 1;
    return 0;
}

int cml_parse_events(struct cml_arena *a, const char *body, size_t len, int64_t since_ms,
                     struct lcm_rt_activity *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    cJSON *j = parse(body, len);
    int rc = 0, oom = 0;
    if (!cJSON_IsArray(j)) {
        rc = fail(why, whylen, LCM_E_PROTO, "telemetry events: not a JSON array");
        goto out;
    }
    size_t n = (size_t)cJSON_GetArraySize(j);
    if (n > CML_MAX_EVENTS) {
        rc = fail(why, whylen, LCM_E_PROTO, "telemetry events: too many events");
        goto out;
    }
    struct lcm_rt_event *v = n ? cml_arena_alloc(a, n * sizeof *v) : NULL;
    if (n && !v) {
        rc = fail(why, whylen, LCM_E_NOMEM, "out of memory");
        goto out;
    }
    size_t k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, j) {
        if (!cJSON_IsObject(e))
            continue;
        const cJSON *cat = cJSON_GetObjectItemCaseSensitive(e, "category");
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(e, "timestamp");
        int64_t at;
        if (!cJSON_IsString(cat) || !cJSON_IsString(ts) || cml_rfc3339_ms(ts->valuestring, &at))
            continue;                    /* an event we cannot place in time is no evidence */
        if (since_ms > 0 && at < since_ms)
            continue;
        struct lcm_rt_event *ev = &v[k++];
        ev->at_ms = at;
        ev->category = cml_arena_strdup(a, cat->valuestring);
        oom |= !ev->category;
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(e, "data");
        if (cJSON_IsObject(data))
            ev->lab_id = str_at(a, data, "lab_id", &oom);
        if (cml_user_category(cat->valuestring) && at > out->last_activity_ms)
            out->last_activity_ms = at;
    }
    if (oom) {
        memset(out, 0, sizeof *out);
        rc = fail(why, whylen, LCM_E_NOMEM, "out of memory");
        goto out;
    }
    out->v = k ? v : NULL;
    out->n = k;
out:
    cJSON_Delete(j);
    return rc;
}

const char *cml_parse_extracted(struct cml_arena *a, const char *body, size_t len)
{
    cJSON *j = parse(body, len);
    const char *s = NULL;
    int oom = 0;
    if (cJSON_IsString(j) && j->valuestring)
        s = cml_arena_strdup(a, j->valuestring);
    else if (cJSON_IsObject(j))
        s = config_of(a, cJSON_GetObjectItemCaseSensitive(j, "configuration"), &oom);
    cJSON_Delete(j);
    return s;
}

int cml_rfc3339_ms(const char *s, int64_t *out)
{
    int64_t us;
    if (lcm_pk_rfc3339_us(s, 1, &us) != 0)
        return -1;
    *out = us / 1000;
    return 0;
}

const char *cml_lab_status(const char *st)
{
    if (!st)
        return NULL;
    if (strcmp(st, "DEFINED_ON_CORE") == 0)
        return "defined";
    if (strcmp(st, "STARTED") == 0 || strcmp(st, "BOOTED") == 0)
        return "booted";
    if (strcmp(st, "STOPPED") == 0)
        return "stopped";
    if (strcmp(st, "QUEUED") == 0)
        return "queued";
    return NULL;
}
