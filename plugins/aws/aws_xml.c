/* Reads EC2 and CloudWatch Query API XML with expat into a bounded arena tree, then maps the
 * tree to SPI result structs. No string searching on raw XML: a real parser, limits on depth
 * and node count, DOCTYPE refused (no entity tricks). */
#include "aws_xml.h"

#include <expat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- arena ---- */

struct aws_chunk {
    struct aws_chunk *next;
    size_t used, cap;
    _Alignas(max_align_t) unsigned char data[];
};
struct aws_arena {
    struct aws_chunk *head;
};

struct aws_arena *aws_arena_new(void) { return calloc(1, sizeof(struct aws_arena)); }

void aws_arena_free(struct aws_arena *a)
{
    if (!a)
        return;
    for (struct aws_chunk *c = a->head, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    free(a);
}

void *aws_arena_alloc(struct aws_arena *a, size_t n)
{
    const size_t al = _Alignof(max_align_t);
    n = (n + al - 1) & ~(al - 1);
    if (n == 0)
        n = al;
    struct aws_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 16384 ? n : 16384;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

static char *arena_strndup(struct aws_arena *a, const char *s, size_t n)
{
    char *d = aws_arena_alloc(a, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

char *aws_arena_strdup(struct aws_arena *a, const char *s)
{
    return s ? arena_strndup(a, s, strlen(s)) : NULL;
}

/* ---- parse ---- */

#define TEXT_MAX (1u << 20)

struct pstate {
    XML_Parser xp;
    struct aws_doc *doc;
    struct aws_node *cur;
    int depth;
    size_t nodes;
    char *buf;                  /* text of cur until its first child element or its end */
    size_t blen, bcap;
    int buf_closed;             /* cur already got a child: further text is ignored */
    const char *fail;
};

static void pfail(struct pstate *s, const char *why)
{
    if (!s->fail)
        s->fail = why;
    XML_StopParser(s->xp, XML_FALSE);
}

static int commit_text(struct pstate *s)
{
    if (!s->cur || s->buf_closed)
        return 0;
    s->buf_closed = 1;
    char *t = arena_strndup(s->doc->arena, s->buf ? s->buf : "", s->blen);
    if (!t)
        return -1;
    s->cur->text = t;
    s->cur->text_len = s->blen;
    s->blen = 0;
    return 0;
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    struct pstate *s = ud;
    if (s->fail)
        return;
    if (++s->depth > AWS_XML_MAX_DEPTH)
        return pfail(s, "too deeply nested");
    if (++s->nodes > AWS_XML_MAX_NODES)
        return pfail(s, "too many elements");
    if (commit_text(s) != 0)
        return pfail(s, "out of memory");
    const char *colon = strrchr(name, ':');
    struct aws_node *n = aws_arena_alloc(s->doc->arena, sizeof *n);
    if (!n || !(n->name = aws_arena_strdup(s->doc->arena, colon ? colon + 1 : name)))
        return pfail(s, "out of memory");
    n->text = (char *)"";
    n->parent = s->cur;
    if (s->cur) {
        if (s->cur->last)
            s->cur->last->next = n;
        else
            s->cur->child = n;
        s->cur->last = n;
    } else if (!s->doc->root) {
        s->doc->root = n;
    }
    s->cur = n;
    s->buf_closed = 0;
    s->blen = 0;
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
    struct pstate *s = ud;
    if (s->fail || !s->cur)
        return;
    if (commit_text(s) != 0)
        return pfail(s, "out of memory");
    s->cur = s->cur->parent;
    s->depth--;
    s->buf_closed = 1;          /* the parent's text ended when its first child began */
}

static void XMLCALL on_text(void *ud, const XML_Char *t, int len)
{
    struct pstate *s = ud;
    if (s->fail || !s->cur || s->buf_closed || len <= 0)
        return;
    if (s->blen + (size_t)len > TEXT_MAX)
        return pfail(s, "text too long");
    if (s->blen + (size_t)len + 1 > s->bcap) {
        size_t cap = s->bcap ? s->bcap : 256;
        while (cap < s->blen + (size_t)len + 1)
            cap *= 2;
        char *nb = realloc(s->buf, cap);
        if (!nb)
            return pfail(s, "out of memory");
        s->buf = nb;
        s->bcap = cap;
    }
    memcpy(s->buf + s->blen, t, (size_t)len);
    s->blen += (size_t)len;
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal)
{
    pfail(ud, "DOCTYPE not allowed");
}

static void XMLCALL on_entity(void *ud, const XML_Char *name, int is_param,
                              const XML_Char *value, int value_len, const XML_Char *base,
                              const XML_Char *sysid, const XML_Char *pubid,
                              const XML_Char *notation)
{
    pfail(ud, "entity declarations not allowed");
}

int aws_xml_parse(const char *buf, size_t len, struct aws_doc **out, char *err, size_t errlen)
{
    *out = NULL;
    struct pstate s = { 0 };
    int rc = -1;
    if (len > INT32_MAX) {
        snprintf(err, errlen, "response too large");
        return -1;
    }
    s.doc = calloc(1, sizeof *s.doc);
    if (!s.doc || !(s.doc->arena = aws_arena_new())) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    s.xp = XML_ParserCreate("UTF-8");
    if (!s.xp) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    XML_SetUserData(s.xp, &s);
    XML_SetElementHandler(s.xp, on_start, on_end);
    XML_SetCharacterDataHandler(s.xp, on_text);
    XML_SetStartDoctypeDeclHandler(s.xp, on_doctype);
    XML_SetEntityDeclHandler(s.xp, on_entity);
    if (XML_Parse(s.xp, buf ? buf : "", (int)len, XML_TRUE) == XML_STATUS_ERROR || s.fail) {
        if (s.fail)
            snprintf(err, errlen, "xml: %s", s.fail);
        else
            snprintf(err, errlen, "xml: %s at line %lu",
                     XML_ErrorString(XML_GetErrorCode(s.xp)),
                     (unsigned long)XML_GetCurrentLineNumber(s.xp));
        goto out;
    }
    if (!s.doc->root) {
        snprintf(err, errlen, "xml: no root element");
        goto out;
    }
    *out = s.doc;
    s.doc = NULL;
    rc = 0;
out:
    if (s.xp)
        XML_ParserFree(s.xp);
    free(s.buf);
    aws_doc_free(s.doc);
    return rc;
}

void aws_doc_free(struct aws_doc *d)
{
    if (!d)
        return;
    aws_arena_free(d->arena);
    free(d);
}

struct aws_node *aws_xml_child(const struct aws_node *n, const char *name)
{
    for (struct aws_node *c = n ? n->child : NULL; c; c = c->next)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

const char *aws_xml_text(const struct aws_node *n, const char *name)
{
    struct aws_node *c = aws_xml_child(n, name);
    return c ? c->text : NULL;
}

/* Iterative so that depth never costs stack (the tree depth is bounded anyway). */
struct aws_node *aws_xml_find(const struct aws_node *n, const char *name)
{
    const struct aws_node *top = n;
    while (n) {
        if (strcmp(n->name, name) == 0)
            return (struct aws_node *)n;
        if (n->child) {
            n = n->child;
            continue;
        }
        while (n && n != top && !n->next)
            n = n->parent;
        if (!n || n == top)
            break;
        n = n->next;
    }
    return NULL;
}

static size_t count_items(const struct aws_node *set, const char *item)
{
    size_t k = 0;
    for (struct aws_node *c = set ? set->child : NULL; c; c = c->next)
        if (strcmp(c->name, item) == 0)
            k++;
    return k;
}

/* Empty text counts as absent so that callers get NULL rather than "". */
static const char *opt_text(const struct aws_node *n, const char *name)
{
    const char *t = aws_xml_text(n, name);
    return t && *t ? t : NULL;
}

int aws_xml_error(const struct aws_doc *d, const char **code, const char **message)
{
    if (!d || !d->root)
        return -1;
    const char *root = d->root->name;
    if (strcmp(root, "Response") != 0 && strcmp(root, "ErrorResponse") != 0 &&
        strcmp(root, "Errors") != 0 && strcmp(root, "Error") != 0)
        return -1;
    struct aws_node *e = aws_xml_find(d->root, "Error");
    const char *c = e ? opt_text(e, "Code") : NULL;
    if (!c)
        return -1;
    *code = c;
    *message = opt_text(e, "Message");
    return 0;
}

enum lcm_instance_state aws_state_from_name(const char *s)
{
    static const struct { const char *n; enum lcm_instance_state st; } m[] = {
        { "pending", LCM_INSTANCE_PENDING },     { "running", LCM_INSTANCE_RUNNING },
        { "stopping", LCM_INSTANCE_STOPPING },   { "stopped", LCM_INSTANCE_STOPPED },
        { "shutting-down", LCM_INSTANCE_SHUTTING_DOWN },
        { "terminated", LCM_INSTANCE_TERMINATED },
    };
    for (size_t i = 0; s && i < sizeof m / sizeof m[0]; i++)
        if (strcmp(s, m[i].n) == 0)
            return m[i].st;
    return LCM_INSTANCE_UNKNOWN;
}

static int read_tags(struct aws_arena *a, const struct aws_node *set, struct lcm_kvs *out)
{
    size_t n = count_items(set, "item"), k = 0;
    out->v = NULL;
    out->n = 0;
    if (!n)
        return 0;
    struct lcm_kv *v = aws_arena_alloc(a, n * sizeof *v);
    if (!v)
        return -1;
    for (struct aws_node *it = set->child; it; it = it->next) {
        if (strcmp(it->name, "item") != 0)
            continue;
        const char *key = aws_xml_text(it, "key");
        if (!key)
            continue;
        const char *val = aws_xml_text(it, "value");
        v[k].key = key;
        v[k].value = val ? val : "";
        k++;
    }
    out->v = v;
    out->n = k;
    return 0;
}

static int read_instance(struct aws_arena *a, const struct aws_node *it,
                         struct lcm_cloud_instance *o)
{
    o->instance_id = opt_text(it, "instanceId");
    if (!o->instance_id)
        return -1;
    struct aws_node *st = aws_xml_child(it, "instanceState");
    o->state_name = st ? opt_text(st, "name") : NULL;
    o->state = aws_state_from_name(o->state_name);
    struct aws_node *sr = aws_xml_child(it, "stateReason");
    o->state_reason = sr ? opt_text(sr, "message") : opt_text(it, "reason");
    if (!o->state_reason)
        o->state_reason = opt_text(it, "reason");
    o->image_id = opt_text(it, "imageId");
    o->instance_type = opt_text(it, "instanceType");
    o->private_ip = opt_text(it, "privateIpAddress");
    o->public_ip = opt_text(it, "ipAddress");
    o->public_dns = opt_text(it, "dnsName");
    struct aws_node *pl = aws_xml_child(it, "placement");
    o->availability_zone = pl ? opt_text(pl, "availabilityZone") : NULL;
    o->launch_time = opt_text(it, "launchTime");
    o->client_token = opt_text(it, "clientToken");
    return read_tags(a, aws_xml_child(it, "tagSet"), &o->tags);
}

/* Appends the instances of one instancesSet to out (capacity already reserved). */
static void read_instance_set(struct aws_arena *a, const struct aws_node *set,
                              struct lcm_cloud_instance *v, size_t *k, size_t cap, int *bad)
{
    for (struct aws_node *it = set ? set->child : NULL; it && *k < cap; it = it->next) {
        if (strcmp(it->name, "item") != 0)
            continue;
        if (read_instance(a, it, &v[*k]) == 0)
            (*k)++;
        else
            *bad = 1;
    }
}

int aws_xml_instances(struct aws_doc *d, struct lcm_cloud_instances *out)
{
    memset(out, 0, sizeof *out);
    if (!d || !d->root)
        return -1;
    const struct aws_node *r = d->root;
    struct aws_node *rs = aws_xml_child(r, "reservationSet");
    struct aws_node *is = aws_xml_child(r, "instancesSet");
    if (!rs && !is)
        return -1;
    size_t cap = count_items(is, "item");
    for (struct aws_node *res = rs ? rs->child : NULL; res; res = res->next)
        if (strcmp(res->name, "item") == 0)
            cap += count_items(aws_xml_child(res, "instancesSet"), "item");
    struct lcm_cloud_instance *v = NULL;
    if (cap && !(v = aws_arena_alloc(d->arena, cap * sizeof *v)))
        return -1;
    size_t k = 0;
    int bad = 0;
    read_instance_set(d->arena, is, v, &k, cap, &bad);
    for (struct aws_node *res = rs ? rs->child : NULL; res; res = res->next)
        if (strcmp(res->name, "item") == 0)
            read_instance_set(d->arena, aws_xml_child(res, "instancesSet"), v, &k, cap, &bad);
    if (bad)
        return -1;
    out->v = v;
    out->n = k;
    out->next_token = opt_text(r, "nextToken");
    return 0;
}

int aws_xml_changes(struct aws_doc *d, struct lcm_cloud_changes *out)
{
    memset(out, 0, sizeof *out);
    if (!d || !d->root)
        return -1;
    struct aws_node *is = aws_xml_child(d->root, "instancesSet");
    if (!is)
        return -1;
    size_t cap = count_items(is, "item"), k = 0;
    struct lcm_cloud_change *v = NULL;
    if (cap && !(v = aws_arena_alloc(d->arena, cap * sizeof *v)))
        return -1;
    for (struct aws_node *it = is->child; it; it = it->next) {
        if (strcmp(it->name, "item") != 0)
            continue;
        const char *id = opt_text(it, "instanceId");
        if (!id)
            return -1;
        struct aws_node *cs = aws_xml_child(it, "currentState");
        struct aws_node *ps = aws_xml_child(it, "previousState");
        v[k].instance_id = id;
        v[k].current = aws_state_from_name(cs ? aws_xml_text(cs, "name") : NULL);
        v[k].previous = aws_state_from_name(ps ? aws_xml_text(ps, "name") : NULL);
        k++;
    }
    out->v = v;
    out->n = k;
    return 0;
}

static int image_cmp(const void *pa, const void *pb)
{
    const struct lcm_cloud_image *a = pa, *b = pb;
    const char *da = a->creation_date ? a->creation_date : "";
    const char *db = b->creation_date ? b->creation_date : "";
    /* ISO 8601 UTC strings of one shape sort as text; newest first. */
    int c = strcmp(db, da);
    return c ? c : strcmp(a->image_id, b->image_id);
}

int aws_xml_images(struct aws_doc *d, struct lcm_cloud_images *out)
{
    memset(out, 0, sizeof *out);
    if (!d || !d->root)
        return -1;
    struct aws_node *set = aws_xml_child(d->root, "imagesSet");
    if (!set)
        return -1;
    size_t cap = count_items(set, "item"), k = 0;
    struct lcm_cloud_image *v = NULL;
    if (cap && !(v = aws_arena_alloc(d->arena, cap * sizeof *v)))
        return -1;
    for (struct aws_node *it = set->child; it; it = it->next) {
        if (strcmp(it->name, "item") != 0)
            continue;
        const char *id = opt_text(it, "imageId");
        if (!id)
            return -1;
        v[k].image_id = id;
        v[k].name = opt_text(it, "name");
        v[k].creation_date = opt_text(it, "creationDate");
        v[k].state = opt_text(it, "imageState");
        v[k].architecture = opt_text(it, "architecture");
        k++;
    }
    if (k > 1)
        qsort(v, k, sizeof *v, image_cmp);
    out->v = v;
    out->n = k;
    return 0;
}

long long aws_parse_iso8601_ms(const char *s)
{
    if (!s)
        return -1;
    int Y, M, D, h, m, sec, used = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &Y, &M, &D, &h, &m, &sec, &used) != 6 ||
        used != 19)
        return -1;
    if (Y < 1970 || Y > 9999 || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 ||
        sec > 60 || h < 0 || m < 0 || sec < 0)
        return -1;
    const char *p = s + 19;
    long ms = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
        if (digits == 0)
            return -1;
        for (; digits < 3; digits++)
            ms *= 10;
    }
    if (!(strcmp(p, "Z") == 0 || strcmp(p, "+00:00") == 0 || *p == '\0'))
        return -1;
    struct tm tm = { .tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D, .tm_hour = h,
                     .tm_min = m, .tm_sec = sec };
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    return (long long)t * 1000 + ms;
}

static int dp_cmp(const void *pa, const void *pb)
{
    const struct lcm_cloud_datapoint *a = pa, *b = pb;
    return (a->at_ms > b->at_ms) - (a->at_ms < b->at_ms);
}

int aws_xml_datapoints(struct aws_doc *d, struct lcm_cloud_datapoints *out, const char **next)
{
    memset(out, 0, sizeof *out);
    if (next)
        *next = NULL;
    if (!d || !d->root)
        return -1;
    struct aws_node *res = aws_xml_child(d->root, "GetMetricDataResult");
    struct aws_node *mdr = res ? aws_xml_child(res, "MetricDataResults") : NULL;
    if (!mdr)
        return -1;
    if (next)
        *next = opt_text(res, "NextToken");
    struct aws_node *m = aws_xml_child(mdr, "member");
    if (!m)
        return 0;               /* no query results: no datapoints */
    struct aws_node *ts = aws_xml_child(m, "Timestamps"), *vs = aws_xml_child(m, "Values");
    size_t nt = count_items(ts, "member"), nv = count_items(vs, "member");
    if (nt != nv)
        return -1;
    if (!nt)
        return 0;
    struct lcm_cloud_datapoint *v = aws_arena_alloc(d->arena, nt * sizeof *v);
    if (!v)
        return -1;
    size_t k = 0;
    struct aws_node *t = ts->child, *x = vs->child;
    while (t && x) {
        if (strcmp(t->name, "member") != 0) {
            t = t->next;
            continue;
        }
        if (strcmp(x->name, "member") != 0) {
            x = x->next;
            continue;
        }
        long long at = aws_parse_iso8601_ms(t->text);
        char *end;
        double val = strtod(x->text, &end);
        if (at < 0 || end == x->text || *end)
            return -1;
        v[k].at_ms = at;
        v[k].value = val;
        k++;
        t = t->next;
        x = x->next;
    }
    qsort(v, k, sizeof *v, dp_cmp);
    out->v = v;
    out->n = k;
    return 0;
}

int aws_xml_return_true(const struct aws_doc *d, const char *root)
{
    if (!d || !d->root || strcmp(d->root->name, root) != 0)
        return -1;
    /* EC2 says <return>true</return>; moto leaves it out. Only an explicit false fails. */
    const char *r = aws_xml_text(d->root, "return");
    return !r || strcmp(r, "true") == 0 ? 0 : -1;
}
