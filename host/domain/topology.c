/* Line scanner for CML topology YAML: finds the top-level `nodes:` list and, per node, the
 * keys label, node_definition and tags at the node's own indentation; deeper lines
 * (configurations, interfaces, block scalars) are skipped by indentation. */
#include "topology.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const proto_names[] = {"serial", "vnc", "ssh", "telnet", "tcp", "http",
                                          "https"};

const char *lcm_proto_name(int proto)
{
    return (proto >= 0 && proto < LCM_PROTO__COUNT) ? proto_names[proto] : "?";
}

int lcm_proto_parse(const char *s)
{
    for (int i = 0; s && i < LCM_PROTO__COUNT; i++)
        if (!strcmp(proto_names[i], s))
            return i;
    return -1;
}

void lcm_port_name(const char *label, int proto, char *buf, size_t len)
{
    char san[LCM_TOPO_STR];
    size_t i = 0;
    for (; label[i] && i < sizeof san - 1; i++) {
        char c = label[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-'))
            c = '-';
        san[i] = c;
    }
    san[i] = '\0';
    snprintf(buf, len, "%s_%s", san, lcm_proto_name(proto));
}

struct line {
    const char *p;     /* first non-space character */
    size_t len;        /* up to end of line, trailing spaces and CR stripped */
    int indent;
    int blank;         /* empty or comment-only */
};

static const char *next_line(const char *s, struct line *l)
{
    const char *e = strchr(s, '\n');
    const char *end = e ? e : s + strlen(s);
    int ind = 0;
    const char *p = s;
    while (p < end && *p == ' ') {
        p++;
        ind++;
    }
    const char *q = end;
    while (q > p && (q[-1] == ' ' || q[-1] == '\r' || q[-1] == '\t'))
        q--;
    l->p = p;
    l->len = (size_t)(q - p);
    l->indent = ind;
    l->blank = l->len == 0 || *p == '#';
    return e ? e + 1 : NULL;
}

/* Copies a scalar value: strips quotes and trailing " #comment"; returns 0 or -1. */
static int scalar(const char *v, size_t n, char *out, size_t outlen)
{
    while (n && *v == ' ') {
        v++;
        n--;
    }
    if (n && (*v == '\'' || *v == '"')) {
        char q = *v;
        const char *e = memchr(v + 1, q, n - 1);
        if (!e)
            return -1;
        n = (size_t)(e - v - 1);
        v++;
    } else {
        for (size_t i = 0; i + 1 < n; i++)
            if (v[i] == ' ' && v[i + 1] == '#') {
                n = i;
                break;
            }
        while (n && v[n - 1] == ' ')
            n--;
    }
    if (n >= outlen)
        return -1;
    memcpy(out, v, n);
    out[n] = '\0';
    return 0;
}

/* "key: value" at the start of l (after an optional "- "); returns 1 and the value when the
 * key matches. */
static int keyval(const char *p, size_t len, const char *key, const char **val, size_t *vlen)
{
    size_t k = strlen(key);
    if (len < k + 1 || memcmp(p, key, k) || p[k] != ':')
        return 0;
    if (len > k + 1 && p[k + 1] != ' ')
        return 0;
    *val = p + k + 1;
    *vlen = len - k - 1;
    return 1;
}

static int add_tag(struct lcm_topo_node *n, const char *v, size_t len)
{
    if (n->ntags == LCM_TOPO_MAX_TAGS)
        return 0;   /* extra tags are irrelevant for ports beyond the cap */
    if (scalar(v, len, n->tags[n->ntags], LCM_TOPO_STR) == 0 && n->tags[n->ntags][0])
        n->ntags++;
    return 0;
}

/* tags: [a, "b"] */
static void inline_tags(struct lcm_topo_node *n, const char *v, size_t len)
{
    const char *o = memchr(v, '[', len), *c = o ? memchr(o, ']', len - (size_t)(o - v)) : NULL;
    if (!o || !c)
        return;
    const char *p = o + 1;
    while (p < c) {
        const char *comma = memchr(p, ',', (size_t)(c - p));
        const char *e = comma ? comma : c;
        add_tag(n, p, (size_t)(e - p));
        p = e + 1;
    }
}

int lcm_topology_parse(const char *yaml, struct lcm_topology *out, struct lcm_derr *err)
{
    memset(out, 0, sizeof *out);
    if (!yaml)
        return lcm_derr_set(err, LCM_DERR_INVALID, "topology", "topology is empty");
    const char *s = yaml;
    struct line l;
    int in_nodes = 0, found = 0, key_indent = -1, in_tags = 0, cap = 0;
    struct lcm_topo_node *cur = NULL;
    while (s) {
        s = next_line(s, &l);
        if (l.blank)
            continue;
        int top_item = l.indent == 0 && l.len >= 2 && l.p[0] == '-' && l.p[1] == ' ';
        if (l.indent == 0 && !(in_nodes && top_item)) {
            in_nodes = l.len >= 6 && !memcmp(l.p, "nodes:", 6) &&
                       (l.len == 6 || l.p[6] == ' ');
            if (in_nodes)
                found = 1;
            cur = NULL;
            in_tags = 0;
            if (in_nodes && l.len > 6) {
                /* "nodes: []" */
                continue;
            }
            continue;
        }
        if (!in_nodes)
            continue;
        const char *p = l.p;
        size_t len = l.len;
        int ind = l.indent;
        int item = len >= 2 && p[0] == '-' && p[1] == ' ';
        if (item && (key_indent < 0 || ind + 2 <= key_indent) && !(in_tags && ind >= key_indent)) {
            /* a new node: "- key: value" */
            if (out->nnodes == LCM_TOPO_MAX_NODES) {
                lcm_topology_free(out);
                return lcm_derr_set(err, LCM_DERR_INVALID, "topology", "more than %d nodes",
                                    LCM_TOPO_MAX_NODES);
            }
            if (out->nnodes == cap) {
                cap = cap ? cap * 2 : 8;
                struct lcm_topo_node *v = realloc(out->nodes, (size_t)cap * sizeof *v);
                if (!v) {
                    lcm_topology_free(out);
                    return lcm_derr_set(err, LCM_DERR_NOMEM, "topology", "out of memory");
                }
                out->nodes = v;
            }
            cur = &out->nodes[out->nnodes++];
            memset(cur, 0, sizeof *cur);
            key_indent = ind + 2;
            in_tags = 0;
            p += 2;
            len -= 2;
            ind += 2;
            while (len && *p == ' ') {
                p++;
                len--;
                ind++;
            }
        } else if (!cur) {
            continue;
        }
        if (in_tags) {
            if (item && ind >= key_indent) {
                add_tag(cur, p + 2, len - 2);
                continue;
            }
            in_tags = 0;
        }
        if (ind != key_indent)
            continue;
        const char *v;
        size_t vlen;
        if (keyval(p, len, "label", &v, &vlen)) {
            if (scalar(v, vlen, cur->label, sizeof cur->label))
                cur->label[0] = '\0';
        } else if (keyval(p, len, "node_definition", &v, &vlen)) {
            if (scalar(v, vlen, cur->node_definition, sizeof cur->node_definition))
                cur->node_definition[0] = '\0';
        } else if (keyval(p, len, "tags", &v, &vlen)) {
            while (vlen && *v == ' ') {
                v++;
                vlen--;
            }
            if (vlen && *v == '[')
                inline_tags(cur, v, vlen);
            else
                in_tags = 1;
        }
    }
    if (!found) {
        lcm_topology_free(out);
        return lcm_derr_set(err, LCM_DERR_INVALID, "topology", "no top-level nodes list");
    }
    for (int i = 0; i < out->nnodes; i++) {
        if (!out->nodes[i].label[0]) {
            lcm_topology_free(out);
            return lcm_derr_set(err, LCM_DERR_INVALID, "topology", "node %d has no label", i);
        }
    }
    return 0;
}

void lcm_topology_free(struct lcm_topology *t)
{
    free(t->nodes);
    t->nodes = NULL;
    t->nnodes = 0;
}
