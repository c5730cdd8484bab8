/* Decodes stream entries of lcm:{<kind>:<id>}:events and lcm:feed without trusting them:
 * every element's type, length and content is checked, since an operator may XADD anything
 * with redis-cli. Used by the feed follower, the read-model load and the rebuild. */
#include "entry.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "../core/log.h"

int lcm_store_valid_name(const char *s)
{
    size_t n = 0;
    if (!s)
        return 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return n >= 1 && n <= 128;
}

/* A reply string usable as a C string: the right type and no embedded NUL. */
static const char *rstr(const redisReply *r)
{
    if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS) || !r->str)
        return NULL;
    if (memchr(r->str, '\0', r->len))
        return NULL;
    return r->str;
}

static int parse_version(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    size_t n = 0;
    for (; s[n]; n++) {
        if (s[n] < '0' || s[n] > '9' || n >= 15)
            return -1;
        v = v * 10 + (uint64_t)(s[n] - '0');
    }
    if (n == 0 || v == 0)
        return -1;
    *out = v;
    return 0;
}

void lcm_store_entry_clear(struct lcm_store_entry *e)
{
    if (e->data)
        cJSON_Delete(e->data);
    memset(e, 0, sizeof(*e));
}

int lcm_store_entry_decode(const redisReply *entry, int feed, struct lcm_store_entry *out,
                           char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const char *version = NULL, *data = NULL;
    size_t data_len = 0;
    if (!entry || entry->type != REDIS_REPLY_ARRAY || entry->elements != 2) {
        snprintf(err, errlen, "entry is not [id, fields]");
        return -1;
    }
    out->entry_id = rstr(entry->element[0]);
    if (!out->entry_id) {
        snprintf(err, errlen, "entry id is not a string");
        goto fail;
    }
    const redisReply *f = entry->element[1];
    if (!f || f->type != REDIS_REPLY_ARRAY || f->elements % 2 != 0) {
        snprintf(err, errlen, "fields are not a flat field/value array");
        goto fail;
    }
    for (size_t i = 0; i < f->elements; i += 2) {
        const char *name = rstr(f->element[i]);
        const redisReply *vr = f->element[i + 1];
        const char *val = rstr(vr);
        if (!name || !val) {
            snprintf(err, errlen, "field %zu is not a string", i / 2);
            goto fail;
        }
        const char **slot = NULL;
        if (strcmp(name, "type") == 0) slot = &out->type;
        else if (strcmp(name, "version") == 0) slot = &version;
        else if (strcmp(name, "at") == 0) slot = &out->at;
        else if (strcmp(name, "by") == 0) slot = &out->by;
        else if (strcmp(name, "data") == 0) { slot = &data; data_len = vr->len; }
        else if (strcmp(name, "kind") == 0) slot = &out->kind;
        else if (strcmp(name, "id") == 0) slot = &out->id;
        if (!slot)
            continue;   /* unknown fields are tolerated: a newer writer may add some */
        if (*slot) {
            snprintf(err, errlen, "field %.32s repeated", name);
            goto fail;
        }
        *slot = val;
    }
    if (!out->type || !version || !out->at || !data) {
        snprintf(err, errlen, "missing %s", !out->type ? "type" : !version ? "version"
                                            : !out->at ? "at" : "data");
        goto fail;
    }
    if (out->type[0] == '\0' || strlen(out->type) > 128) {
        snprintf(err, errlen, "bad type");
        goto fail;
    }
    if (parse_version(version, &out->version) < 0) {
        snprintf(err, errlen, "bad version");
        goto fail;
    }
    if (!out->by)
        out->by = "";
    if (feed) {
        if (!lcm_store_valid_name(out->kind) || !lcm_store_valid_name(out->id)) {
            snprintf(err, errlen, "feed entry without valid kind/id");
            goto fail;
        }
    } else {
        out->kind = out->id = NULL;
    }
    out->data = cJSON_ParseWithLength(data, data_len);
    if (!out->data || !cJSON_IsObject(out->data)) {
        snprintf(err, errlen, "data is not a JSON object");
        goto fail;
    }
    return 0;
fail:
    lcm_store_entry_clear(out);
    return -1;
}

long lcm_store_entries_each(const redisReply *entries, int feed, const char *key,
                            lcm_store_entry_fn fn, void *ud, char *last_id, size_t last_cap)
{
    if (!entries || entries->type != REDIS_REPLY_ARRAY)
        return -1;
    long skipped = 0;
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        struct lcm_store_entry ev;
        char why[128];
        /* Remember the id first so that a follower never re-reads a poisonous entry. */
        if (last_id && e && e->type == REDIS_REPLY_ARRAY && e->elements >= 1) {
            const char *id = rstr(e->element[0]);
            if (id && strlen(id) < last_cap && strlen(id) < 48)
                memcpy(last_id, id, strlen(id) + 1);
        }
        if (lcm_store_entry_decode(e, feed, &ev, why, sizeof(why)) < 0) {
            const char *id = (e && e->type == REDIS_REPLY_ARRAY && e->elements >= 1)
                                 ? rstr(e->element[0]) : NULL;
            lcm_warn("store", "msg=\"malformed stream entry skipped\" key=\"%.200s\" "
                     "entry=%.48s reason=\"%s\"", key ? key : "?", id ? id : "?", why);
            skipped++;
            continue;
        }
        fn(&ev, ud);
        lcm_store_entry_clear(&ev);
    }
    return skipped;
}

const redisReply *lcm_store_xread_entries(const redisReply *reply, const char *key)
{
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *s = reply->element[i];
        if (!s || s->type != REDIS_REPLY_ARRAY || s->elements != 2)
            continue;
        const char *k = rstr(s->element[0]);
        if (k && strcmp(k, key) == 0 && s->element[1] && s->element[1]->type == REDIS_REPLY_ARRAY)
            return s->element[1];
    }
    return NULL;
}
