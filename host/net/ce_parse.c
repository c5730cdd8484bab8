/* CloudEvents 1.0 decoding and validation (structured, batch, binary). Everything that comes
 * from outside is checked here once: the ingestion route only ever sees valid events, with
 * bounded attribute lengths and no control characters in what may end up in a log line. */
#include "ce_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "rfc3339.h"
#include "sha256.h"

static int fail(struct lcm_ce_err *err, int status, const char *prefix, const char *field,
                const char *detail)
{
    if (err) {
        err->status = status;
        snprintf(err->field, sizeof(err->field), "%s%s", prefix ? prefix : "", field ? field : "");
        snprintf(err->detail, sizeof(err->detail), "%s", detail);
    }
    return -1;
}

/* Printable text without control characters (they would forge log lines). */
static int clean_text(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if ((unsigned char)s[n] < 0x20 || s[n] == 0x7f || n >= max)
            return 0;
    return n > 0;
}

static int ext_name_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9')) || n >= LCM_CE_MAX_EXT_NAME)
            return 0;
    return n > 0;
}

int lcm_ce_mode(const char *content_type, int has_ce_specversion)
{
    char ct[128] = "";
    if (content_type) {
        size_t n = strcspn(content_type, ";");
        while (n > 0 && (content_type[n - 1] == ' ' || content_type[n - 1] == '\t'))
            n--;
        if (n >= sizeof(ct))
            n = sizeof(ct) - 1;
        memcpy(ct, content_type, n);
        ct[n] = 0;
    }
    if (!strcasecmp(ct, "application/cloudevents+json"))
        return LCM_CE_STRUCTURED;
    if (!strcasecmp(ct, "application/cloudevents-batch+json"))
        return LCM_CE_BATCH;
    /* Binary mode carries its attributes in headers and any data content type. */
    if (has_ce_specversion)
        return LCM_CE_BINARY;
    return -1;
}

int lcm_ce_validate(cJSON *obj, struct lcm_ce *ev, const char *prefix, struct lcm_ce_err *err)
{
    memset(ev, 0, sizeof(*ev));
    if (!cJSON_IsObject(obj))
        return fail(err, 400, prefix, "", "a CloudEvent must be a JSON object");
    const cJSON *sv = cJSON_GetObjectItemCaseSensitive(obj, "specversion");
    if (!cJSON_IsString(sv))
        return fail(err, 400, prefix, "specversion", "specversion is required");
    if (strcmp(sv->valuestring, "1.0"))
        return fail(err, 400, prefix, "specversion", "only CloudEvents specversion 1.0 is accepted");
    static const struct { const char *name; size_t max; } req[] = {
        { "id", LCM_CE_MAX_ID }, { "source", LCM_CE_MAX_SOURCE }, { "type", LCM_CE_MAX_TYPE },
    };
    const char *vals[3];
    for (size_t i = 0; i < 3; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, req[i].name);
        char d[96];
        if (!cJSON_IsString(a) || !a->valuestring[0]) {
            snprintf(d, sizeof(d), "%s is required (a non-empty string)", req[i].name);
            return fail(err, 400, prefix, req[i].name, d);
        }
        if (!clean_text(a->valuestring, req[i].max)) {
            snprintf(d, sizeof(d), "%s must be at most %zu printable characters", req[i].name, req[i].max);
            return fail(err, 400, prefix, req[i].name, d);
        }
        vals[i] = a->valuestring;
    }
    int n = 0, has_data = 0, has_b64 = 0;
    for (cJSON *a = obj->child; a; a = a->next) {
        if (++n > LCM_CE_MAX_ATTRS)
            return fail(err, 400, prefix, "", "too many attributes");
        const char *k = a->string;
        if (!k)
            return fail(err, 400, prefix, "", "attribute without a name");
        if (!strcmp(k, "data")) {
            has_data = 1;
            continue;
        }
        if (!strcmp(k, "data_base64")) {
            has_b64 = 1;
            if (!cJSON_IsString(a))
                return fail(err, 400, prefix, "data_base64", "data_base64 must be a string");
            continue;
        }
        if (!ext_name_ok(k))
            return fail(err, 400, prefix, "", "attribute names are 1-20 lower-case letters or digits");
        if (cJSON_IsNull(a))
            continue;
        if (!strcmp(k, "subject")) {
            if (!cJSON_IsString(a) || !clean_text(a->valuestring, LCM_CE_MAX_SUBJECT))
                return fail(err, 400, prefix, "subject", "subject must be a non-empty printable string");
            ev->subject = a->valuestring;
        } else if (!strcmp(k, "time")) {
            int64_t t;
            if (!cJSON_IsString(a) || lcm_rfc3339_parse(a->valuestring, &t) < 0)
                return fail(err, 400, prefix, "time", "time must be an RFC 3339 timestamp");
            ev->time = a->valuestring;
        } else if (!strcmp(k, "datacontenttype") || !strcmp(k, "dataschema")) {
            if (!cJSON_IsString(a) || !clean_text(a->valuestring, 512))
                return fail(err, 400, prefix, k, "must be a non-empty printable string");
        } else if (!cJSON_IsString(a) && !cJSON_IsNumber(a) && !cJSON_IsBool(a)) {
            char d[96];
            snprintf(d, sizeof(d), "extension attribute %s must be a string, number or boolean", k);
            return fail(err, 400, prefix, k, d);
        }
    }
    if (has_data && has_b64)
        return fail(err, 400, prefix, "data_base64", "data and data_base64 are mutually exclusive");
    ev->obj = obj;
    ev->id = vals[0];
    ev->source = vals[1];
    ev->type = vals[2];
    return 0;
}

void lcm_ce_list_clear(struct lcm_ce_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        cJSON_Delete(l->v[i].obj);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int lcm_ce_parse_structured(const char *body, size_t len, struct lcm_ce_list *out,
                            struct lcm_ce_err *err)
{
    memset(out, 0, sizeof(*out));
    if (!body || !len)
        return fail(err, 400, "", "", "the body must be a CloudEvent (JSON object)");
    cJSON *obj = cJSON_ParseWithLength(body, len);
    if (!obj)
        return fail(err, 400, "", "", "the body is not valid JSON");
    out->v = calloc(1, sizeof(*out->v));
    if (!out->v) {
        cJSON_Delete(obj);
        return fail(err, 413, "", "", "out of memory");
    }
    if (lcm_ce_validate(obj, &out->v[0], "", err) < 0) {
        cJSON_Delete(obj);
        free(out->v);
        out->v = NULL;
        return -1;
    }
    out->n = 1;
    return 0;
}

int lcm_ce_parse_batch(const char *body, size_t len, size_t max_batch, struct lcm_ce_list *out,
                       struct lcm_ce_err *err)
{
    memset(out, 0, sizeof(*out));
    if (!body || !len)
        return fail(err, 400, "", "", "the body must be a JSON array of CloudEvents");
    cJSON *arr = cJSON_ParseWithLength(body, len);
    if (!arr)
        return fail(err, 400, "", "", "the body is not valid JSON");
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        return fail(err, 400, "", "", "a batch must be a JSON array of CloudEvents");
    }
    size_t n = (size_t)cJSON_GetArraySize(arr);
    if (n > max_batch) {
        char d[96];
        snprintf(d, sizeof(d), "a batch holds at most %zu events (got %zu)", max_batch, n);
        cJSON_Delete(arr);
        return fail(err, 413, "", "", d);
    }
    if (n && !(out->v = calloc(n, sizeof(*out->v)))) {
        cJSON_Delete(arr);
        return fail(err, 413, "", "", "out of memory");
    }
    size_t i = 0;
    for (cJSON *it = arr->child; it; it = it->next, i++) {
        char prefix[24];
        snprintf(prefix, sizeof(prefix), "[%zu].", i);
        if (lcm_ce_validate(it, &out->v[i], prefix, err) < 0) {
            for (size_t j = 0; j < i; j++)
                out->v[j].obj = NULL;   /* still owned by arr */
            free(out->v);
            out->v = NULL;
            cJSON_Delete(arr);
            return -1;
        }
    }
    /* Detach every event from the array so each is owned on its own. */
    for (i = 0; i < n; i++) {
        cJSON *it = cJSON_DetachItemFromArray(arr, 0);
        out->v[i].obj = it;
    }
    out->n = n;
    cJSON_Delete(arr);
    return 0;
}

static int json_type(const char *ct)
{
    if (!ct || !*ct)
        return 1;   /* no content type: JSON, as CloudEvents assume for JSON formats */
    size_t n = strcspn(ct, ";");
    while (n > 0 && ct[n - 1] == ' ')
        n--;
    if (n == 16 && !strncasecmp(ct, "application/json", 16))
        return 1;
    return n > 5 && !strncasecmp(ct + n - 5, "+json", 5);
}

static char *base64(const unsigned char *p, size_t n)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc(4 * ((n + 2) / 3) + 1), *w = o;
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        *w++ = t[v >> 18 & 63];
        *w++ = t[v >> 12 & 63];
        *w++ = i + 1 < n ? t[v >> 6 & 63] : '=';
        *w++ = i + 2 < n ? t[v & 63] : '=';
    }
    *w = 0;
    return o;
}

int lcm_ce_parse_binary(lcm_ce_header_fn get, void *ud, const char *const *extensions,
                        const char *content_type, const char *body, size_t len,
                        struct lcm_ce_list *out, struct lcm_ce_err *err)
{
    static const char *const std[] = { "specversion", "id", "source", "type", "subject", "time",
                                       "dataschema", NULL };
    memset(out, 0, sizeof(*out));
    cJSON *obj = cJSON_CreateObject();
    if (!obj)
        return fail(err, 413, "", "", "out of memory");
    for (int pass = 0; pass < 2; pass++) {
        const char *const *names = pass ? extensions : std;
        for (size_t i = 0; names && names[i]; i++) {
            char h[48];
            snprintf(h, sizeof(h), "ce-%s", names[i]);
            const char *v = get(ud, h);
            if (!v || cJSON_GetObjectItemCaseSensitive(obj, names[i]))
                continue;
            if (!cJSON_AddStringToObject(obj, names[i], v)) {
                cJSON_Delete(obj);
                return fail(err, 413, "", "", "out of memory");
            }
        }
    }
    if (content_type && *content_type && !cJSON_AddStringToObject(obj, "datacontenttype", content_type)) {
        cJSON_Delete(obj);
        return fail(err, 413, "", "", "out of memory");
    }
    if (body && len) {
        cJSON *data = NULL;
        if (json_type(content_type)) {
            if (!(data = cJSON_ParseWithLength(body, len))) {
                cJSON_Delete(obj);
                return fail(err, 400, "", "data", "the body is not valid JSON but its content type says JSON");
            }
            cJSON_AddItemToObject(obj, "data", data);
        } else {
            char *b = base64((const unsigned char *)body, len);
            if (!b || !cJSON_AddStringToObject(obj, "data_base64", b)) {
                free(b);
                cJSON_Delete(obj);
                return fail(err, 413, "", "", "out of memory");
            }
            free(b);
        }
    }
    out->v = calloc(1, sizeof(*out->v));
    if (!out->v) {
        cJSON_Delete(obj);
        return fail(err, 413, "", "", "out of memory");
    }
    if (lcm_ce_validate(obj, &out->v[0], "ce-", err) < 0) {
        cJSON_Delete(obj);
        free(out->v);
        out->v = NULL;
        return -1;
    }
    out->n = 1;
    return 0;
}

void lcm_ce_dedupe_hash(const char *source, const char *id, char hex[65])
{
    size_t ls = strlen(source), li = strlen(id);
    char buf[LCM_CE_MAX_SOURCE + LCM_CE_MAX_ID + 2];
    if (ls > LCM_CE_MAX_SOURCE)
        ls = LCM_CE_MAX_SOURCE;
    if (li > LCM_CE_MAX_ID)
        li = LCM_CE_MAX_ID;
    memcpy(buf, source, ls);
    buf[ls] = 0;
    memcpy(buf + ls + 1, id, li);
    lcm_sha256_hex(buf, ls + 1 + li, hex);
}
