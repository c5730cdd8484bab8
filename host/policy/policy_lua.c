/* Marshalling for the policy engine: the C structs of policy.h become the plain Lua tables a
 * policy receives (described once, by field tables), results are read back with raw access
 * only and validated strictly, and fixture files are read into the same C structs. */
#include "policy_lua.h"

#include <lauxlib.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_vm.h"

const char *lcm_policy_fn_name(enum lcm_policy_kind kind)
{
    switch (kind) {
    case LCM_POLICY_PLACEMENT: return "rank";
    case LCM_POLICY_SCALE_UP: return "plan";
    case LCM_POLICY_SCALE_DOWN: return "choose";
    default: return "?";
    }
}

static const struct {
    const char *name;
    unsigned bit;
} licenses[] = {{"enterprise", LCM_POLICY_LIC_ENTERPRISE},
                {"personal", LCM_POLICY_LIC_PERSONAL},
                {"evaluation", LCM_POLICY_LIC_EVALUATION}};

int lcm_policy_parse_license(const char *s, unsigned *bit)
{
    for (size_t i = 0; i < sizeof(licenses) / sizeof(licenses[0]); i++)
        if (!strcmp(s, licenses[i].name)) {
            *bit = licenses[i].bit;
            return 0;
        }
    return -1;
}

const char *lcm_policy_license_name(unsigned bit)
{
    for (size_t i = 0; i < sizeof(licenses) / sizeof(licenses[0]); i++)
        if (bit == licenses[i].bit)
            return licenses[i].name;
    return NULL;
}

int lcm_policy_parse_action(const char *s, enum lcm_policy_action *a)
{
    if (!strcmp(s, "drain"))
        *a = LCM_POLICY_DRAIN;
    else if (!strcmp(s, "stop"))
        *a = LCM_POLICY_STOP;
    else if (!strcmp(s, "terminate"))
        *a = LCM_POLICY_TERMINATE;
    else
        return -1;
    return 0;
}

const char *lcm_policy_action_name(enum lcm_policy_action a)
{
    switch (a) {
    case LCM_POLICY_DRAIN: return "drain";
    case LCM_POLICY_STOP: return "stop";
    case LCM_POLICY_TERMINATE: return "terminate";
    }
    return "?";
}

/* ---------------------------------------------------------------- field tables */

enum ft { FT_STR, FT_NUM, FT_INT, FT_BOOL, FT_LIC, FT_LICSET, FT_SUB };
struct fdesc {
    const char *key;
    enum ft t;
    size_t off;
    size_t size;
    const struct fdesc *sub;
};
#define MSZ(T, m) sizeof(((T *)0)->m)
#define F(k, t, T, m) {k, t, offsetof(T, m), MSZ(T, m), NULL}
#define FSUB(k, T, m, d) {k, FT_SUB, offsetof(T, m), MSZ(T, m), d}
#define FEND {NULL, FT_STR, 0, 0, NULL}

typedef struct lcm_policy_capacity cap_t;
static const struct fdesc d_cap_declared[] = {
    F("cpu_cores", FT_NUM, cap_t, cpu_cores), F("memory_gb", FT_NUM, cap_t, memory_gb),
    F("storage_gb", FT_NUM, cap_t, storage_gb), F("max_nodes", FT_INT, cap_t, nodes), FEND};
static const struct fdesc d_cap_allocated[] = {
    F("cpu_cores", FT_NUM, cap_t, cpu_cores), F("memory_gb", FT_NUM, cap_t, memory_gb),
    F("storage_gb", FT_NUM, cap_t, storage_gb), F("nodes", FT_INT, cap_t, nodes), FEND};

typedef struct lcm_policy_worker wk_t;
static const struct fdesc d_worker[] = {
    F("id", FT_STR, wk_t, id),
    F("region", FT_STR, wk_t, region),
    F("template", FT_STR, wk_t, template_name),
    F("status", FT_STR, wk_t, status),
    F("license_type", FT_LIC, wk_t, license_type),
    F("cml_version", FT_STR, wk_t, cml_version),
    FSUB("declared", wk_t, declared, d_cap_declared),
    FSUB("allocated", wk_t, allocated, d_cap_allocated),
    F("session_count", FT_INT, wk_t, session_count),
    F("cpu_percent", FT_NUM, wk_t, cpu_percent),
    F("memory_percent", FT_NUM, wk_t, memory_percent),
    F("last_activity_at", FT_INT, wk_t, last_activity_at),
    F("status_since", FT_INT, wk_t, status_since),
    FEND};

typedef struct lcm_policy_placement_in pin_t;
static const struct fdesc d_session[] = {
    F("id", FT_STR, pin_t, session_id),
    F("definition_id", FT_STR, pin_t, req.definition_id),
    F("cpu_cores", FT_NUM, pin_t, req.cpu_cores),
    F("memory_gb", FT_NUM, pin_t, req.memory_gb),
    F("storage_gb", FT_NUM, pin_t, req.storage_gb),
    F("node_count", FT_INT, pin_t, req.node_count),
    F("license_affinity", FT_LICSET, pin_t, req.license_affinity),
    FEND};
static const struct fdesc d_ctx[] = {F("now", FT_INT, pin_t, now), FEND};

typedef struct lcm_policy_demand dm_t;
static const struct fdesc d_demand[] = {
    F("definition_id", FT_STR, dm_t, req.definition_id),
    F("cpu_cores", FT_NUM, dm_t, req.cpu_cores),
    F("memory_gb", FT_NUM, dm_t, req.memory_gb),
    F("storage_gb", FT_NUM, dm_t, req.storage_gb),
    F("node_count", FT_INT, dm_t, req.node_count),
    F("license_affinity", FT_LICSET, dm_t, req.license_affinity),
    F("region", FT_STR, dm_t, region),
    F("unplaced", FT_INT, dm_t, unplaced),
    F("upcoming", FT_INT, dm_t, upcoming),
    FEND};

typedef struct lcm_policy_template tp_t;
static const struct fdesc d_template[] = {
    F("name", FT_STR, tp_t, name),
    F("region", FT_STR, tp_t, region),
    F("license_type", FT_LIC, tp_t, license_type),
    FSUB("capacity", tp_t, capacity, d_cap_declared),
    F("cost_per_hour", FT_NUM, tp_t, cost_per_hour),
    F("enabled", FT_BOOL, tp_t, enabled),
    FEND};

typedef struct lcm_policy_limits lm_t;
static const struct fdesc d_limits[] = {
    F("now", FT_INT, lm_t, now),
    F("max_workers_per_region", FT_INT, lm_t, max_workers_per_region),
    F("max_launches_per_cycle", FT_INT, lm_t, max_launches_per_cycle),
    F("cooldown_active", FT_BOOL, lm_t, cooldown_active),
    F("min_warm_workers", FT_INT, lm_t, min_warm_workers),
    F("stopped_retention_minutes", FT_INT, lm_t, stopped_retention_minutes),
    FEND};

static size_t desc_count(const struct fdesc *d)
{
    size_t n = 0;
    while (d[n].key)
        n++;
    return n;
}

/* ---------------------------------------------------------------- C -> Lua */

static void push_record(lua_State *L, const struct fdesc *d, const void *base)
{
    const char *b = base;
    lua_createtable(L, 0, (int)desc_count(d));
    for (; d->key; d++) {
        const void *p = b + d->off;
        switch (d->t) {
        case FT_STR:
            lua_pushstring(L, (const char *)p);
            break;
        case FT_NUM:
            lua_pushnumber(L, *(const double *)p);
            break;
        case FT_INT:
            lua_pushinteger(L, (lua_Integer)*(const int64_t *)p);
            break;
        case FT_BOOL:
            lua_pushboolean(L, *(const int *)p);
            break;
        case FT_LIC: {
            const char *n = lcm_policy_license_name(*(const unsigned *)p);
            if (!n)
                continue;
            lua_pushstring(L, n);
            break;
        }
        case FT_LICSET: {
            unsigned set = *(const unsigned *)p;
            lua_createtable(L, 3, 0);
            int i = 0;
            for (size_t k = 0; k < sizeof(licenses) / sizeof(licenses[0]); k++)
                if (set & licenses[k].bit) {
                    lua_pushstring(L, licenses[k].name);
                    lua_rawseti(L, -2, ++i);
                }
            break;
        }
        case FT_SUB:
            push_record(L, d->sub, p);
            break;
        }
        lua_setfield(L, -2, d->key);
    }
}

static void push_array(lua_State *L, const struct fdesc *d, const void *base, size_t n,
                       size_t stride)
{
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        push_record(L, d, (const char *)base + i * stride);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* The shortlist from the cycle's cache: a worker's table is built the first time it is
 * shortlisted (or after the host touched it) and reused by reference afterwards, so a call
 * costs one array of references instead of a dozen tables per worker. */
static void push_cached_workers(lua_State *L, struct lcm_policy_wcache *wc, const size_t *keys,
                                const struct lcm_policy_placement_in *p)
{
    if (wc->ref == LUA_NOREF) {
        lua_createtable(L, (int)(wc->n < 4096 ? wc->n : 4096), 0);
        wc->ref = luaL_ref(L, LUA_REGISTRYINDEX);
        lua_createtable(L, (int)(wc->n < 4096 ? wc->n : 4096), 0);
        wc->ids_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, wc->ref);
    int ct = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, wc->ids_ref);
    int it = lua_gettop(L);
    lua_createtable(L, (int)p->n_workers, 0);
    for (size_t j = 0; j < p->n_workers; j++) {
        size_t k = keys[j];
        if (k >= wc->n) {
            luaL_error(L, "worker cache key out of range");
            return;
        }
        if (!wc->valid[k]) {
            push_record(L, d_worker, &p->workers[j]);
            lua_pushvalue(L, -1);
            lua_rawseti(L, ct, (lua_Integer)k + 1);
            wc->idp[k] = lua_pushstring(L, p->workers[j].id);
            lua_rawseti(L, it, (lua_Integer)k + 1);
            wc->valid[k] = 1;
        } else {
            lua_rawgeti(L, ct, (lua_Integer)k + 1);
        }
        lua_rawseti(L, -2, (lua_Integer)j + 1);
    }
    lua_replace(L, ct);
    lua_settop(L, ct);
}

static int push_args(lua_State *L, enum lcm_policy_kind kind, const void *in,
                     struct lcm_policy_wcache *wc, const size_t *keys)
{
    switch (kind) {
    case LCM_POLICY_PLACEMENT: {
        const struct lcm_policy_placement_in *p = in;
        push_record(L, d_session, p);
        if (wc && keys)
            push_cached_workers(L, wc, keys, p);
        else
            push_array(L, d_worker, p->workers, p->n_workers, sizeof(*p->workers));
        push_record(L, d_ctx, p);
        return 3;
    }
    case LCM_POLICY_SCALE_UP: {
        const struct lcm_policy_scale_up_in *u = in;
        lua_createtable(L, 0, 2);
        push_array(L, d_demand, u->demand, u->n_demand, sizeof(*u->demand));
        lua_setfield(L, -2, "groups");
        lua_createtable(L, 0, (int)u->n_rejections);
        for (size_t i = 0; i < u->n_rejections; i++) {
            lua_pushinteger(L, (lua_Integer)u->rejections[i].count);
            lua_setfield(L, -2, u->rejections[i].reason);
        }
        lua_setfield(L, -2, "rejections");
        push_array(L, d_worker, u->fleet, u->n_fleet, sizeof(*u->fleet));
        push_array(L, d_template, u->templates, u->n_templates, sizeof(*u->templates));
        push_record(L, d_limits, &u->limits);
        return 4;
    }
    case LCM_POLICY_SCALE_DOWN: {
        const struct lcm_policy_scale_down_in *s = in;
        push_array(L, d_worker, s->eligible, s->n_eligible, sizeof(*s->eligible));
        push_array(L, d_worker, s->fleet, s->n_fleet, sizeof(*s->fleet));
        push_record(L, d_limits, &s->limits);
        return 3;
    }
    default:
        return luaL_error(L, "unknown policy kind");
    }
}

/* ---------------------------------------------------------------- results (strict) */

#define INVALID(...)                                                                         \
    do {                                                                                     \
        snprintf(c->verr, sizeof(c->verr), __VA_ARGS__);                                     \
        return -1;                                                                           \
    } while (0)

/* The result must be a plain array: keys exactly 1..n. Returns n or -1. */
static lua_Integer array_len(lua_State *L, int idx, struct lcm_policy_call *c, size_t max)
{
    if (lua_type(L, idx) != LUA_TTABLE)
        INVALID("result is a %s, not an array", luaL_typename(L, idx));
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if ((size_t)n > max)
        INVALID("result has %lld entries, at most %zu allowed", (long long)n, max);
    lua_Integer keys = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > n) {
            lua_pop(L, 1);
            INVALID("result is not an array (non-sequence key)");
        }
        keys++;
    }
    if (keys != n)
        INVALID("result is not an array (holes)");
    return n;
}

/* Reads entry[key] as a string; returns NULL (and fills verr) when absent or not a string,
 * unless optional. The string stays valid while the entry is on the stack. */
static const char *entry_str(lua_State *L, int idx, const char *key, lua_Integer i, int optional,
                             size_t max, struct lcm_policy_call *c)
{
    lua_pushstring(L, key);
    int t = lua_rawget(L, idx);
    const char *s = NULL;
    if (t == LUA_TSTRING) {
        size_t len;
        s = lua_tolstring(L, -1, &len);
        if (len >= max || strlen(s) != len) {
            snprintf(c->verr, sizeof(c->verr), "result[%lld].%s: bad or too long string",
                     (long long)i, key);
            s = NULL;
        }
    } else if (t != LUA_TNIL || !optional) {
        snprintf(c->verr, sizeof(c->verr), "result[%lld].%s: expected a string, got %s",
                 (long long)i, key, lua_typename(L, t));
    } else {
        s = "";
    }
    lua_pop(L, 1); /* strings inside the entry table stay referenced by it */
    return s;
}

static int validate_placement(lua_State *L, int idx, struct lcm_policy_call *c)
{
    const struct lcm_policy_placement_in *in = c->in;
    struct lcm_policy_placement_out *out = c->out;
    lua_Integer n = array_len(L, idx, c, in->n_workers);
    if (n < 0)
        return -1;
    if (n == 0)
        return 0;
    out->ranks = calloc((size_t)n, sizeof(*out->ranks));
    unsigned char seen_buf[64];
    unsigned char *seen = in->n_workers <= sizeof(seen_buf) ? seen_buf : calloc(in->n_workers, 1);
    if (seen == seen_buf)
        memset(seen_buf, 0, sizeof(seen_buf));
    if (!out->ranks || !seen) {
        if (seen != seen_buf)
            free(seen);
        INVALID("out of memory");
    }
    /* with the cycle cache, an id is (almost always) the interned string of the cached
     * worker: compare pointers first, strings only when that finds nothing */
    const struct lcm_policy_wcache *wc = c->keys ? c->wc : NULL;
    int rc = -1;
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, idx, i) != LUA_TTABLE) {
            snprintf(c->verr, sizeof(c->verr), "result[%lld] is not a table", (long long)i);
            goto out;
        }
        int e = lua_gettop(L);
        const char *id = entry_str(L, e, "worker_id", i, 0, LCM_POLICY_ID_MAX, c);
        if (!id)
            goto out;
        size_t w = 0;
        if (wc) {
            while (w < in->n_workers && wc->idp[c->keys[w]] != id)
                w++;
            if (w == in->n_workers)
                w = 0;
            else
                goto found;
        }
        while (w < in->n_workers && strcmp(in->workers[w].id, id) != 0)
            w++;
    found:
        if (w == in->n_workers) {
            snprintf(c->verr, sizeof(c->verr), "result[%lld].worker_id '%s' is not in the shortlist",
                     (long long)i, id);
            goto out;
        }
        if (seen[w]) {
            snprintf(c->verr, sizeof(c->verr), "result[%lld].worker_id '%s' is a duplicate",
                     (long long)i, id);
            goto out;
        }
        seen[w] = 1;
        lua_pushliteral(L, "score");
        if (lua_rawget(L, e) != LUA_TNUMBER || !isfinite(lua_tonumber(L, -1))) {
            snprintf(c->verr, sizeof(c->verr), "result[%lld].score is not a finite number",
                     (long long)i);
            goto out;
        }
        struct lcm_policy_rank *r = &out->ranks[out->n++];
        snprintf(r->worker_id, sizeof(r->worker_id), "%s", id);
        r->score = lua_tonumber(L, -1);
        lua_settop(L, e - 1);
    }
    rc = 0;
out:
    if (seen != seen_buf)
        free(seen);
    return rc;
}

static int int_value(lua_State *L, int idx, lua_Integer *v)
{
    if (lua_isinteger(L, idx)) {
        *v = lua_tointeger(L, idx);
        return 0;
    }
    if (lua_type(L, idx) == LUA_TNUMBER) {
        double d = lua_tonumber(L, idx);
        if (isfinite(d) && d == floor(d) && fabs(d) < 9e15) {
            *v = (lua_Integer)d;
            return 0;
        }
    }
    return -1;
}

static int validate_scale_up(lua_State *L, int idx, struct lcm_policy_call *c)
{
    const struct lcm_policy_scale_up_in *in = c->in;
    struct lcm_policy_scale_up_out *out = c->out;
    lua_Integer n = array_len(L, idx, c, LCM_POLICY_MAX_LAUNCH_ENTRIES);
    if (n <= 0)
        return (int)n;
    out->launches = calloc((size_t)n, sizeof(*out->launches));
    if (!out->launches)
        INVALID("out of memory");
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, idx, i) != LUA_TTABLE)
            INVALID("result[%lld] is not a table", (long long)i);
        int e = lua_gettop(L);
        const char *tn = entry_str(L, e, "template", i, 0, LCM_POLICY_ID_MAX, c);
        if (!tn)
            return -1;
        const struct lcm_policy_template *t = NULL;
        for (size_t k = 0; k < in->n_templates && !t; k++)
            if (!strcmp(in->templates[k].name, tn))
                t = &in->templates[k];
        if (!t)
            INVALID("result[%lld].template '%s' is not a known template", (long long)i, tn);
        if (!t->enabled)
            INVALID("result[%lld].template '%s' is disabled", (long long)i, tn);
        const char *region = entry_str(L, e, "region", i, 0, LCM_POLICY_SHORT_MAX, c);
        if (!region)
            return -1;
        if (!region[0] || (t->region[0] && strcmp(t->region, region) != 0))
            INVALID("result[%lld].region '%s' does not match template '%s' (region '%s')",
                    (long long)i, region, tn, t->region);
        lua_pushliteral(L, "count");
        lua_rawget(L, e);
        lua_Integer count = 0;
        if (int_value(L, -1, &count) != 0 || count < 1 || count > LCM_POLICY_MAX_LAUNCH_COUNT)
            INVALID("result[%lld].count must be an integer in 1..%d", (long long)i,
                    LCM_POLICY_MAX_LAUNCH_COUNT);
        lua_pop(L, 1);
        const char *reason = entry_str(L, e, "reason", i, 1, 4096, c);
        if (!reason)
            return -1;
        for (size_t k = 0; k < out->n; k++)
            if (!strcmp(out->launches[k].template_name, tn) &&
                !strcmp(out->launches[k].region, region))
                INVALID("result[%lld] repeats template '%s' in '%s'", (long long)i, tn, region);
        struct lcm_policy_launch *l = &out->launches[out->n++];
        snprintf(l->template_name, sizeof(l->template_name), "%s", tn);
        snprintf(l->region, sizeof(l->region), "%s", region);
        l->count = count;
        snprintf(l->reason, sizeof(l->reason), "%s", reason);
        lua_settop(L, e - 1);
    }
    return 0;
}

static int action_fits(enum lcm_policy_action a, const char *status)
{
    switch (a) {
    case LCM_POLICY_DRAIN:
        return !strcmp(status, "running");
    case LCM_POLICY_STOP:
        return !strcmp(status, "running") || !strcmp(status, "draining");
    case LCM_POLICY_TERMINATE:
        return !strcmp(status, "running") || !strcmp(status, "draining") ||
               !strcmp(status, "stopped") || !strcmp(status, "failed");
    }
    return 0;
}

static int validate_scale_down(lua_State *L, int idx, struct lcm_policy_call *c)
{
    const struct lcm_policy_scale_down_in *in = c->in;
    struct lcm_policy_scale_down_out *out = c->out;
    lua_Integer n = array_len(L, idx, c, in->n_eligible);
    if (n <= 0)
        return (int)n;
    out->retire = calloc((size_t)n, sizeof(*out->retire));
    if (!out->retire)
        INVALID("out of memory");
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, idx, i) != LUA_TTABLE)
            INVALID("result[%lld] is not a table", (long long)i);
        int e = lua_gettop(L);
        const char *id = entry_str(L, e, "worker_id", i, 0, LCM_POLICY_ID_MAX, c);
        if (!id)
            return -1;
        const struct lcm_policy_worker *w = NULL;
        for (size_t k = 0; k < in->n_eligible && !w; k++)
            if (!strcmp(in->eligible[k].id, id))
                w = &in->eligible[k];
        if (!w)
            INVALID("result[%lld].worker_id '%s' is not in the eligible list", (long long)i, id);
        for (size_t k = 0; k < out->n; k++)
            if (!strcmp(out->retire[k].worker_id, id))
                INVALID("result[%lld].worker_id '%s' is a duplicate", (long long)i, id);
        const char *an = entry_str(L, e, "action", i, 0, 16, c);
        if (!an)
            return -1;
        enum lcm_policy_action a;
        if (lcm_policy_parse_action(an, &a) != 0)
            INVALID("result[%lld].action '%s' is not drain|stop|terminate", (long long)i, an);
        if (!action_fits(a, w->status))
            INVALID("result[%lld]: cannot %s worker '%s' in status %s", (long long)i, an, id,
                    w->status);
        const char *reason = entry_str(L, e, "reason", i, 1, 4096, c);
        if (!reason)
            return -1;
        struct lcm_policy_retire *r = &out->retire[out->n++];
        snprintf(r->worker_id, sizeof(r->worker_id), "%s", id);
        r->action = a;
        snprintf(r->reason, sizeof(r->reason), "%s", reason);
        lua_settop(L, e - 1);
    }
    return 0;
}

int lcm_policy_lua_call(lua_State *L)
{
    struct lcm_policy_call *c = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->module_ref);
    lua_pushstring(L, lcm_policy_fn_name(c->kind));
    if (lua_rawget(L, 1) != LUA_TFUNCTION)
        return luaL_error(L, "the policy table has no function '%s'", lcm_policy_fn_name(c->kind));
    int nargs = push_args(L, c->kind, c->in, c->wc, c->keys);
    lua_call(L, nargs, 1);
    int idx = lua_gettop(L);
    int rc;
    switch (c->kind) {
    case LCM_POLICY_PLACEMENT: rc = validate_placement(L, idx, c); break;
    case LCM_POLICY_SCALE_UP: rc = validate_scale_up(L, idx, c); break;
    default: rc = validate_scale_down(L, idx, c); break;
    }
    if (rc != 0)
        c->invalid = 1;
    return 0;
}

/* ---------------------------------------------------------------- fixtures (Lua -> C) */

static const char *path_key(const char *path, const char *key, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s%s%s", path, path[0] ? "." : "", key);
    return buf;
}

static void read_record(lua_State *L, int idx, const struct fdesc *d, void *base,
                        const char *path);

static void read_field(lua_State *L, const struct fdesc *d, void *base, const char *path)
{
    char *p = (char *)base + d->off;
    int t = lua_type(L, -1);
    if (t == LUA_TNIL)
        return;
    switch (d->t) {
    case FT_STR: {
        size_t len;
        if (t != LUA_TSTRING)
            luaL_error(L, "%s: expected a string", path);
        const char *s = lua_tolstring(L, -1, &len);
        if (len >= d->size)
            luaL_error(L, "%s: longer than %d bytes", path, (int)d->size - 1);
        memcpy(p, s, len + 1);
        break;
    }
    case FT_NUM:
        if (t != LUA_TNUMBER)
            luaL_error(L, "%s: expected a number", path);
        *(double *)p = lua_tonumber(L, -1);
        break;
    case FT_INT: {
        lua_Integer v = 0;
        if (int_value(L, -1, &v) != 0)
            luaL_error(L, "%s: expected an integer", path);
        *(int64_t *)p = v;
        break;
    }
    case FT_BOOL:
        if (t != LUA_TBOOLEAN)
            luaL_error(L, "%s: expected a boolean", path);
        *(int *)p = lua_toboolean(L, -1);
        break;
    case FT_LIC:
        if (t != LUA_TSTRING || lcm_policy_parse_license(lua_tostring(L, -1), (unsigned *)p))
            luaL_error(L, "%s: expected enterprise|personal|evaluation", path);
        break;
    case FT_LICSET: {
        if (t != LUA_TTABLE)
            luaL_error(L, "%s: expected an array of licence names", path);
        unsigned set = 0;
        for (lua_Integer i = 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
            unsigned bit = 0;
            if (lua_type(L, -1) != LUA_TSTRING ||
                lcm_policy_parse_license(lua_tostring(L, -1), &bit))
                luaL_error(L, "%s[%d]: expected enterprise|personal|evaluation", path, (int)i);
            set |= bit;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        *(unsigned *)p = set;
        break;
    }
    case FT_SUB:
        if (t != LUA_TTABLE)
            luaL_error(L, "%s: expected a table", path);
        read_record(L, lua_gettop(L), d->sub, p, path);
        break;
    }
}

/* Unknown keys are errors: a typo in a fixture must not silently test nothing. */
static void read_record(lua_State *L, int idx, const struct fdesc *d, void *base,
                        const char *path)
{
    char buf[160];
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "%s: expected a table", path);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "%s: unexpected non-string key", path);
        const char *k = lua_tostring(L, -2);
        const struct fdesc *f = d;
        while (f->key && strcmp(f->key, k) != 0)
            f++;
        if (!f->key)
            luaL_error(L, "%s: unknown field", path_key(path, k, buf, sizeof(buf)));
        read_field(L, f, base, path_key(path, k, buf, sizeof(buf)));
        lua_pop(L, 1);
    }
}

static void *read_array(lua_State *L, int idx, const struct fdesc *d, size_t stride,
                        void **slot, size_t *n, const char *path)
{
    char buf[160];
    if (lua_type(L, idx) == LUA_TNIL) {
        *n = 0;
        return NULL;
    }
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "%s: expected an array", path);
    size_t len = lua_rawlen(L, idx);
    *slot = calloc(len ? len : 1, stride);
    if (!*slot)
        luaL_error(L, "out of memory");
    *n = len;
    for (size_t i = 0; i < len; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        snprintf(buf, sizeof(buf), "%s[%zu]", path, i + 1);
        read_record(L, lua_gettop(L), d, (char *)*slot + i * stride, buf);
        lua_pop(L, 1);
    }
    return *slot;
}

static int field_of(lua_State *L, int idx, const char *key)
{
    lua_getfield(L, idx, key);
    return lua_gettop(L);
}

static void check_keys(lua_State *L, int idx, const char *const *allowed, const char *path)
{
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        int ok = 0;
        for (int i = 0; k && allowed[i]; i++)
            ok |= !strcmp(allowed[i], k);
        if (!ok)
            luaL_error(L, "%s: unknown field '%s'", path, k ? k : "(non-string)");
        lua_pop(L, 1);
    }
}

static void read_expect(lua_State *L, int idx, enum lcm_policy_kind kind,
                        struct lcm_policy_fixture *fx, const char *path)
{
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "%s.expect: expected an array (may be empty)", path);
    size_t n = lua_rawlen(L, idx);
    for (size_t i = 1; i <= n; i++) {
        int t = lua_rawgeti(L, idx, (lua_Integer)i);
        int e = lua_gettop(L);
        if (kind == LCM_POLICY_PLACEMENT) {
            if (!fx->exp_place.ranks && !(fx->exp_place.ranks = calloc(n, sizeof(struct lcm_policy_rank))))
                luaL_error(L, "out of memory");
            if (t != LUA_TSTRING || lua_rawlen(L, e) >= LCM_POLICY_ID_MAX)
                luaL_error(L, "%s.expect[%d]: expected a worker id", path, (int)i);
            snprintf(fx->exp_place.ranks[fx->exp_place.n++].worker_id, LCM_POLICY_ID_MAX, "%s",
                     lua_tostring(L, e));
        } else if (kind == LCM_POLICY_SCALE_UP) {
            if (!fx->exp_up.launches && !(fx->exp_up.launches = calloc(n, sizeof(struct lcm_policy_launch))))
                luaL_error(L, "out of memory");
            struct lcm_policy_launch *l = &fx->exp_up.launches[fx->exp_up.n++];
            static const char *const keys[] = {"template", "region", "count", NULL};
            if (t != LUA_TTABLE)
                luaL_error(L, "%s.expect[%d]: expected {template=, region=, count=}", path, (int)i);
            check_keys(L, e, keys, path);
            lua_getfield(L, e, "template");
            lua_getfield(L, e, "region");
            lua_getfield(L, e, "count");
            lua_Integer cnt = 0;
            if (!lua_isstring(L, -3) || !lua_isstring(L, -2) || int_value(L, -1, &cnt) != 0)
                luaL_error(L, "%s.expect[%d]: expected {template=, region=, count=}", path, (int)i);
            snprintf(l->template_name, sizeof(l->template_name), "%s", lua_tostring(L, -3));
            snprintf(l->region, sizeof(l->region), "%s", lua_tostring(L, -2));
            l->count = cnt;
        } else {
            if (!fx->exp_down.retire && !(fx->exp_down.retire = calloc(n, sizeof(struct lcm_policy_retire))))
                luaL_error(L, "out of memory");
            struct lcm_policy_retire *r = &fx->exp_down.retire[fx->exp_down.n++];
            static const char *const keys[] = {"worker_id", "action", NULL};
            if (t != LUA_TTABLE)
                luaL_error(L, "%s.expect[%d]: expected {worker_id=, action=}", path, (int)i);
            check_keys(L, e, keys, path);
            lua_getfield(L, e, "worker_id");
            lua_getfield(L, e, "action");
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING ||
                lcm_policy_parse_action(lua_tostring(L, -1), &r->action) != 0)
                luaL_error(L, "%s.expect[%d]: expected {worker_id=, action=drain|stop|terminate}",
                           path, (int)i);
            snprintf(r->worker_id, sizeof(r->worker_id), "%s", lua_tostring(L, -2));
        }
        lua_settop(L, e - 1);
    }
}

static void read_case(lua_State *L, int idx, struct lcm_policy_fixtures *fs,
                      struct lcm_policy_fixture *fx, size_t i)
{
    char path[160];
    snprintf(path, sizeof(path), "fixtures[%zu]", i + 1);
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "%s: expected a table", path);
    int f = field_of(L, idx, "name");
    if (lua_type(L, f) != LUA_TSTRING)
        luaL_error(L, "%s.name: expected a string", path);
    snprintf(fx->name, sizeof(fx->name), "%s", lua_tostring(L, f));
    snprintf(path, sizeof(path), "fixture '%s'", fx->name);
    size_t n;
    switch (fs->kind) {
    case LCM_POLICY_PLACEMENT: {
        static const char *const keys[] = {"name", "session", "workers", "ctx", "expect", NULL};
        check_keys(L, idx, keys, path);
        read_record(L, field_of(L, idx, "session"), d_session, &fx->place, "session");
        read_array(L, field_of(L, idx, "workers"), d_worker, sizeof(struct lcm_policy_worker),
                   (void **)&fx->workers, &n, "workers");
        fx->place.workers = fx->workers;
        fx->place.n_workers = n;
        if (lua_type(L, field_of(L, idx, "ctx")) != LUA_TNIL)
            read_record(L, lua_gettop(L), d_ctx, &fx->place, "ctx");
        break;
    }
    case LCM_POLICY_SCALE_UP: {
        static const char *const keys[] = {"name", "demand", "fleet", "templates", "limits",
                                           "expect", NULL};
        check_keys(L, idx, keys, path);
        int d = field_of(L, idx, "demand");
        if (lua_type(L, d) != LUA_TTABLE)
            luaL_error(L, "%s.demand: expected {groups=, rejections=}", path);
        static const char *const dkeys[] = {"groups", "rejections", NULL};
        check_keys(L, d, dkeys, "demand");
        read_array(L, field_of(L, d, "groups"), d_demand, sizeof(struct lcm_policy_demand),
                   (void **)&fx->demand, &n, "demand.groups");
        fx->up.demand = fx->demand;
        fx->up.n_demand = n;
        int r = field_of(L, d, "rejections");
        if (lua_type(L, r) == LUA_TTABLE) {
            size_t nr = 0;
            lua_pushnil(L);
            while (lua_next(L, r) != 0) {
                nr++;
                lua_pop(L, 1);
            }
            fx->rejections = calloc(nr ? nr : 1, sizeof(*fx->rejections));
            if (!fx->rejections)
                luaL_error(L, "out of memory");
            lua_pushnil(L);
            while (lua_next(L, r) != 0) {
                lua_Integer cnt = 0;
                if (lua_type(L, -2) != LUA_TSTRING || lua_rawlen(L, -2) >= LCM_POLICY_SHORT_MAX ||
                    int_value(L, -1, &cnt) != 0)
                    luaL_error(L, "demand.rejections: expected {reason = count}");
                struct lcm_policy_rejection *rj = &fx->rejections[fx->up.n_rejections++];
                snprintf(rj->reason, sizeof(rj->reason), "%s", lua_tostring(L, -2));
                rj->count = cnt;
                lua_pop(L, 1);
            }
            fx->up.rejections = fx->rejections;
        }
        read_array(L, field_of(L, idx, "fleet"), d_worker, sizeof(struct lcm_policy_worker),
                   (void **)&fx->fleet, &n, "fleet");
        fx->up.fleet = fx->fleet;
        fx->up.n_fleet = n;
        read_array(L, field_of(L, idx, "templates"), d_template,
                   sizeof(struct lcm_policy_template), (void **)&fx->templates, &n, "templates");
        fx->up.templates = fx->templates;
        fx->up.n_templates = n;
        if (lua_type(L, field_of(L, idx, "limits")) != LUA_TNIL)
            read_record(L, lua_gettop(L), d_limits, &fx->up.limits, "limits");
        break;
    }
    case LCM_POLICY_SCALE_DOWN: {
        static const char *const keys[] = {"name", "eligible", "fleet", "limits", "expect", NULL};
        check_keys(L, idx, keys, path);
        read_array(L, field_of(L, idx, "eligible"), d_worker, sizeof(struct lcm_policy_worker),
                   (void **)&fx->eligible, &n, "eligible");
        fx->down.eligible = fx->eligible;
        fx->down.n_eligible = n;
        read_array(L, field_of(L, idx, "fleet"), d_worker, sizeof(struct lcm_policy_worker),
                   (void **)&fx->fleet, &n, "fleet");
        fx->down.fleet = fx->fleet;
        fx->down.n_fleet = n;
        if (lua_type(L, field_of(L, idx, "limits")) != LUA_TNIL)
            read_record(L, lua_gettop(L), d_limits, &fx->down.limits, "limits");
        break;
    }
    default:
        luaL_error(L, "unknown policy kind");
    }
    read_expect(L, field_of(L, idx, "expect"), fs->kind, fx, path);
}

int lcm_policy_lua_read_fixtures(lua_State *L)
{
    struct lcm_policy_fixtures *fs = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lcm_policy_vm_dochunk(L, fs->name, fs->src, fs->len);
    if (lua_type(L, 1) != LUA_TTABLE)
        return luaL_error(L, "%s must return an array of fixture cases", fs->name);
    size_t n = lua_rawlen(L, 1);
    if (n == 0)
        return luaL_error(L, "%s has no fixture cases", fs->name);
    fs->v = calloc(n, sizeof(*fs->v));
    if (!fs->v)
        return luaL_error(L, "out of memory");
    for (size_t i = 0; i < n; i++) {
        fs->n = i + 1; /* owned from here on, even if reading it fails */
        lua_rawgeti(L, 1, (lua_Integer)i + 1);
        read_case(L, lua_gettop(L), fs, &fs->v[i], i);
        lua_settop(L, 1);
    }
    return 0;
}

void lcm_policy_fixtures_free(struct lcm_policy_fixtures *f)
{
    for (size_t i = 0; i < f->n; i++) {
        struct lcm_policy_fixture *x = &f->v[i];
        free(x->workers);
        free(x->fleet);
        free(x->eligible);
        free(x->demand);
        free(x->rejections);
        free(x->templates);
        lcm_policy_placement_out_clear(&x->exp_place);
        lcm_policy_scale_up_out_clear(&x->exp_up);
        lcm_policy_scale_down_out_clear(&x->exp_down);
    }
    free(f->v);
    f->v = NULL;
    f->n = 0;
}

/* ---------------------------------------------------------------- comparing decisions */

static int cmp_launch(const void *a, const void *b)
{
    const struct lcm_policy_launch *x = a, *y = b;
    int c = strcmp(x->template_name, y->template_name);
    return c ? c : strcmp(x->region, y->region);
}

static int cmp_retire(const void *a, const void *b)
{
    const struct lcm_policy_retire *x = a, *y = b;
    return strcmp(x->worker_id, y->worker_id);
}

static void list_ids(char *buf, size_t cap, const struct lcm_policy_rank *r, size_t n)
{
    size_t o = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        int w = snprintf(buf + o, cap - o, "%s%s", i ? "," : "", r[i].worker_id);
        if (w < 0)
            break;
        o += (size_t)w;
    }
}

int lcm_policy_fixture_compare(enum lcm_policy_kind kind, const struct lcm_policy_fixture *fx,
                               const void *outp, char *err, size_t errlen)
{
    if (kind == LCM_POLICY_PLACEMENT) {
        const struct lcm_policy_placement_out *o = outp;
        int ok = o->n == fx->exp_place.n;
        for (size_t i = 0; ok && i < o->n; i++)
            ok = !strcmp(o->ranks[i].worker_id, fx->exp_place.ranks[i].worker_id);
        if (!ok) {
            char got[200], want[200];
            list_ids(got, sizeof(got), o->ranks, o->n);
            list_ids(want, sizeof(want), fx->exp_place.ranks, fx->exp_place.n);
            snprintf(err, errlen, "expected [%s], got [%s]", want, got);
            return -1;
        }
        return 0;
    }
    if (kind == LCM_POLICY_SCALE_UP) {
        const struct lcm_policy_scale_up_out *o = outp;
        size_t n = o->n;
        if (n != fx->exp_up.n) {
            snprintf(err, errlen, "expected %zu launch entries, got %zu%s%s", fx->exp_up.n, n,
                     n ? ", first " : "", n ? o->launches[0].template_name : "");
            return -1;
        }
        if (n == 0)
            return 0;
        struct lcm_policy_launch *a = malloc(n * sizeof(*a)), *b = malloc(n * sizeof(*b));
        if (!a || !b) {
            free(a);
            free(b);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        memcpy(a, o->launches, n * sizeof(*a));
        memcpy(b, fx->exp_up.launches, n * sizeof(*b));
        qsort(a, n, sizeof(*a), cmp_launch);
        qsort(b, n, sizeof(*b), cmp_launch);
        int rc = 0;
        for (size_t i = 0; i < n && !rc; i++)
            if (cmp_launch(&a[i], &b[i]) != 0 || a[i].count != b[i].count) {
                snprintf(err, errlen, "expected %s/%s x%lld, got %s/%s x%lld",
                         b[i].template_name, b[i].region, (long long)b[i].count,
                         a[i].template_name, a[i].region, (long long)a[i].count);
                rc = -1;
            }
        free(a);
        free(b);
        return rc;
    }
    const struct lcm_policy_scale_down_out *o = outp;
    size_t n = o->n;
    if (n != fx->exp_down.n) {
        snprintf(err, errlen, "expected %zu workers retired, got %zu%s%s", fx->exp_down.n, n,
                 n ? ", first " : "", n ? o->retire[0].worker_id : "");
        return -1;
    }
    if (n == 0)
        return 0;
    struct lcm_policy_retire *a = malloc(n * sizeof(*a)), *b = malloc(n * sizeof(*b));
    if (!a || !b) {
        free(a);
        free(b);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(a, o->retire, n * sizeof(*a));
    memcpy(b, fx->exp_down.retire, n * sizeof(*b));
    qsort(a, n, sizeof(*a), cmp_retire);
    qsort(b, n, sizeof(*b), cmp_retire);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        if (strcmp(a[i].worker_id, b[i].worker_id) != 0 || a[i].action != b[i].action) {
            snprintf(err, errlen, "expected %s %s, got %s %s",
                     lcm_policy_action_name(b[i].action), b[i].worker_id,
                     lcm_policy_action_name(a[i].action), a[i].worker_id);
            rc = -1;
        }
    free(a);
    free(b);
    return rc;
}
