/* sim_yaml: tolerant YAML-subset reader producing cJSON (see sim_yaml.h for the subset).
 * Line-based: each line is split into indent + text; "- " items are parsed by re-reading the
 * same line as if its content started at the column after the dash. */
#include "sim_yaml.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

struct line {
  const char *raw; /* start of the physical line */
  size_t rawlen;   /* without the line break and a trailing \r */
  int indent;      /* column of text (virtual for "- " items) */
  const char *text;
  size_t len;      /* text length, trailing blanks trimmed */
  int blank;       /* empty or comment-only */
};

struct parser {
  struct line *lines;
  size_t n, i;
  int depth;
  char *err;
  size_t errlen;
  int failed;
};

static void fail(struct parser *p, size_t lineno, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct parser *p, size_t lineno, const char *fmt, ...)
{
  if (p->failed)
    return;
  p->failed = 1;
  char msg[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (p->err && p->errlen)
    snprintf(p->err, p->errlen, "line %zu: %s", lineno + 1, msg);
}

/* ---- small string buffer ---- */
struct sbuf {
  char *s;
  size_t len, cap;
  int oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
  if (b->oom)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t c = b->cap ? b->cap : 64;
    while (c < b->len + n + 1)
      c *= 2;
    char *ns = realloc(b->s, c);
    if (!ns) {
      b->oom = 1;
      return;
    }
    b->s = ns;
    b->cap = c;
  }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = '\0';
}

static void sb_addc(struct sbuf *b, char c) { sb_add(b, &c, 1); }

static const char *sb_str(struct sbuf *b)
{
  if (!b->s)
    sb_add(b, "", 0);
  return b->s ? b->s : "";
}

/* ---- scalars ---- */

static int is_int(const char *s)
{
  if (*s == '-' || *s == '+')
    s++;
  if (!isdigit((unsigned char)*s))
    return 0;
  if (s[0] == '0' && s[1] != '\0') /* 0755 etc. stay strings */
    return 0;
  for (; *s; s++)
    if (!isdigit((unsigned char)*s))
      return 0;
  return 1;
}

static int is_float(const char *s)
{
  int digits = 0, dot = 0;
  if (*s == '-' || *s == '+')
    s++;
  for (; *s && *s != 'e' && *s != 'E'; s++) {
    if (isdigit((unsigned char)*s))
      digits++;
    else if (*s == '.' && !dot)
      dot = 1;
    else
      return 0;
  }
  if (!digits || !dot)
    return 0;
  if (*s == 'e' || *s == 'E') {
    s++;
    if (*s == '-' || *s == '+')
      s++;
    if (!isdigit((unsigned char)*s))
      return 0;
    for (; *s; s++)
      if (!isdigit((unsigned char)*s))
        return 0;
  }
  return 1;
}

/* Resolves a plain scalar (already trimmed) to null/bool/number/string. */
static cJSON *plain_scalar(const char *s, size_t n)
{
  char *t = malloc(n + 1);
  if (!t)
    return NULL;
  memcpy(t, s, n);
  t[n] = '\0';
  cJSON *v;
  if (n == 0 || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") || !strcmp(t, "NULL"))
    v = cJSON_CreateNull();
  else if (!strcmp(t, "true") || !strcmp(t, "True") || !strcmp(t, "TRUE"))
    v = cJSON_CreateTrue();
  else if (!strcmp(t, "false") || !strcmp(t, "False") || !strcmp(t, "FALSE"))
    v = cJSON_CreateFalse();
  else if (is_int(t) || is_float(t))
    v = cJSON_CreateNumber(strtod(t, NULL));
  else
    v = cJSON_CreateString(t);
  free(t);
  return v;
}

static void trim(const char **s, size_t *n)
{
  while (*n && (**s == ' ' || **s == '\t')) {
    (*s)++;
    (*n)--;
  }
  while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
    (*n)--;
}

/* Length of a plain scalar on one line before a " #" comment. */
static size_t strip_comment(const char *s, size_t n)
{
  for (size_t k = 0; k < n; k++)
    if (s[k] == '#' && (k == 0 || s[k - 1] == ' ' || s[k - 1] == '\t'))
      return k;
  return n;
}

/* Parses a quoted scalar starting at s[0] (a quote) in [s, s+n); returns the number of bytes
 * consumed (including both quotes) or 0 when unterminated. Unescaped text goes into out. */
static size_t quoted(const char *s, size_t n, struct sbuf *out)
{
  char q = s[0];
  size_t k = 1;
  while (k < n) {
    char c = s[k];
    if (q == '\'' && c == '\'') {
      if (k + 1 < n && s[k + 1] == '\'') {
        sb_addc(out, '\'');
        k += 2;
        continue;
      }
      return k + 1;
    }
    if (q == '"' && c == '"')
      return k + 1;
    if (q == '"' && c == '\\' && k + 1 < n) {
      char e = s[k + 1];
      k += 2;
      switch (e) {
      case 'n': sb_addc(out, '\n'); break;
      case 't': sb_addc(out, '\t'); break;
      case 'r': sb_addc(out, '\r'); break;
      case '0': sb_addc(out, '\0'); break;
      case '\n': break; /* escaped line break: joins lines */
      case 'u': {
        unsigned cp = 0;
        int ok = k + 4 <= n;
        for (int d = 0; ok && d < 4; d++) {
          char h = s[k + (size_t)d];
          cp <<= 4;
          if (h >= '0' && h <= '9') cp |= (unsigned)(h - '0');
          else if (h >= 'a' && h <= 'f') cp |= (unsigned)(h - 'a' + 10);
          else if (h >= 'A' && h <= 'F') cp |= (unsigned)(h - 'A' + 10);
          else ok = 0;
        }
        if (!ok) {
          sb_addc(out, 'u');
          break;
        }
        k += 4;
        char u[4];
        if (cp < 0x80) {
          sb_addc(out, (char)cp);
        } else if (cp < 0x800) {
          u[0] = (char)(0xc0 | (cp >> 6));
          u[1] = (char)(0x80 | (cp & 0x3f));
          sb_add(out, u, 2);
        } else {
          u[0] = (char)(0xe0 | (cp >> 12));
          u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
          u[2] = (char)(0x80 | (cp & 0x3f));
          sb_add(out, u, 3);
        }
        break;
      }
      default: sb_addc(out, e); break;
      }
      continue;
    }
    if (c == '\n') {
      /* Line folding inside a multi-line quoted scalar: a single break becomes a space, an empty
       * line becomes a newline; leading blanks of the next line are dropped. */
      size_t j = k + 1, breaks = 0;
      for (;;) {
        while (j < n && (s[j] == ' ' || s[j] == '\t'))
          j++;
        if (j < n && s[j] == '\n') {
          breaks++;
          j++;
          continue;
        }
        break;
      }
      while (out->len && (out->s[out->len - 1] == ' ' || out->s[out->len - 1] == '\t'))
        out->s[--out->len] = '\0';
      if (breaks == 0)
        sb_addc(out, ' ');
      for (size_t b = 0; b < breaks; b++)
        sb_addc(out, '\n');
      k = j;
      continue;
    }
    sb_addc(out, c);
    k++;
  }
  return 0;
}

/* ---- flow collections ---- */

static void skip_ws(const char **p, const char *end)
{
  while (*p < end && (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r'))
    (*p)++;
}

static cJSON *flow_value(struct parser *p, size_t lineno, const char **pp, const char *end,
                         int depth);

static cJSON *flow_scalar(struct parser *p, size_t lineno, const char **pp, const char *end,
                          int is_key)
{
  const char *s = *pp;
  if (s < end && (*s == '"' || *s == '\'')) {
    struct sbuf b = {0};
    size_t used = quoted(s, (size_t)(end - s), &b);
    if (!used) {
      free(b.s);
      fail(p, lineno, "unterminated quoted scalar in flow collection");
      return NULL;
    }
    *pp = s + used;
    cJSON *v = b.oom ? NULL : cJSON_CreateString(sb_str(&b));
    free(b.s);
    return v;
  }
  const char *e = s;
  while (e < end && *e != ',' && *e != ']' && *e != '}' && *e != '\n' &&
         !(*e == ':' && (is_key || e + 1 >= end || e[1] == ' ' || e[1] == ',' || e[1] == ']' ||
                         e[1] == '}')))
    e++;
  *pp = e;
  size_t n = (size_t)(e - s);
  trim(&s, &n);
  return plain_scalar(s, n);
}

static cJSON *flow_value(struct parser *p, size_t lineno, const char **pp, const char *end,
                         int depth)
{
  if (depth > MAX_DEPTH) {
    fail(p, lineno, "nesting too deep");
    return NULL;
  }
  skip_ws(pp, end);
  if (*pp >= end)
    return cJSON_CreateNull();
  char open = **pp;
  if (open != '[' && open != '{')
    return flow_scalar(p, lineno, pp, end, 0);
  char close = open == '[' ? ']' : '}';
  cJSON *coll = open == '[' ? cJSON_CreateArray() : cJSON_CreateObject();
  if (!coll)
    return NULL;
  (*pp)++;
  for (;;) {
    skip_ws(pp, end);
    if (*pp >= end) {
      fail(p, lineno, "unterminated flow collection");
      goto err;
    }
    if (**pp == close) {
      (*pp)++;
      return coll;
    }
    if (open == '[') {
      cJSON *v = flow_value(p, lineno, pp, end, depth + 1);
      if (!v)
        goto err;
      cJSON_AddItemToArray(coll, v);
    } else {
      cJSON *k = flow_scalar(p, lineno, pp, end, 1);
      if (!k)
        goto err;
      char *key = cJSON_IsString(k) ? strdup(k->valuestring) : cJSON_PrintUnformatted(k);
      cJSON_Delete(k);
      if (!key)
        goto err;
      skip_ws(pp, end);
      cJSON *v;
      if (*pp < end && **pp == ':') {
        (*pp)++;
        v = flow_value(p, lineno, pp, end, depth + 1);
      } else {
        v = cJSON_CreateNull();
      }
      if (!v) {
        free(key);
        goto err;
      }
      cJSON_DeleteItemFromObjectCaseSensitive(coll, key);
      cJSON_AddItemToObject(coll, key, v);
      free(key);
    }
    skip_ws(pp, end);
    if (*pp < end && **pp == ',') {
      (*pp)++;
    } else if (*pp < end && **pp != close) {
      fail(p, lineno, "expected ',' or '%c' in flow collection", close);
      goto err;
    }
  }
err:
  cJSON_Delete(coll);
  return NULL;
}

/* ---- block structure ---- */

static void skip_blank(struct parser *p)
{
  while (p->i < p->n && p->lines[p->i].blank)
    p->i++;
}

static int is_dash(const struct line *l)
{
  return l->len >= 1 && l->text[0] == '-' && (l->len == 1 || l->text[1] == ' ');
}

/* Position of the mapping ':' in a line (followed by a blank or end), outside quotes and flow
 * brackets, or -1 when the line is not "key: ...". */
static long map_colon(const char *s, size_t n)
{
  size_t k = 0;
  if (n && (s[0] == '"' || s[0] == '\'')) {
    struct sbuf tmp = {0};
    size_t used = quoted(s, n, &tmp);
    free(tmp.s);
    if (!used)
      return -1;
    k = used;
    while (k < n && s[k] == ' ')
      k++;
    return (k < n && s[k] == ':' && (k + 1 == n || s[k + 1] == ' ')) ? (long)k : -1;
  }
  if (n && (s[0] == '[' || s[0] == '{' || s[0] == '#'))
    return -1;
  for (; k < n; k++) {
    if (s[k] == '#' && k > 0 && s[k - 1] == ' ')
      return -1;
    if (s[k] == ':' && (k + 1 == n || s[k + 1] == ' ' || s[k + 1] == '\t'))
      return (long)k;
  }
  return -1;
}

static cJSON *parse_block(struct parser *p, int indent);

/* Joins raw text from line p->i onwards (starting at start) until the end of the document, for
 * quoted/flow scalars that span lines; returns the joined buffer. */
static char *join_from(struct parser *p, const char *start, size_t *outlen)
{
  struct sbuf b = {0};
  const struct line *l0 = &p->lines[p->i];
  sb_add(&b, start, (size_t)(l0->raw + l0->rawlen - start));
  for (size_t j = p->i + 1; j < p->n; j++) {
    sb_addc(&b, '\n');
    sb_add(&b, p->lines[j].raw, p->lines[j].rawlen);
  }
  if (b.oom) {
    free(b.s);
    return NULL;
  }
  *outlen = b.len;
  return b.s ? b.s : strdup("");
}

/* Advances p->i past the physical lines covered by `used` bytes of a joined buffer that started
 * at `start` on line p->i. */
static void advance_lines(struct parser *p, const char *joined, size_t used)
{
  for (size_t k = 0; k < used; k++)
    if (joined[k] == '\n')
      p->i++;
  p->i++;
}

/* Whether the quoted scalar or flow collection starting at s ends within s[0..n). */
static int closes_on_line(const char *s, size_t n)
{
  if (s[0] == '"' || s[0] == '\'') {
    struct sbuf tmp = {0};
    size_t used = quoted(s, n, &tmp);
    free(tmp.s);
    return used != 0;
  }
  int depth = 0;
  char q = 0;
  for (size_t k = 0; k < n; k++) {
    char c = s[k];
    if (q) {
      if (c == '\\' && q == '"' && k + 1 < n)
        k++;
      else if (c == q)
        q = 0;
    } else if (c == '"' || c == '\'') {
      q = c;
    } else if (c == '[' || c == '{') {
      depth++;
    } else if (c == ']' || c == '}') {
      if (--depth == 0)
        return 1;
    }
  }
  return 0;
}

/* Inline value after "key:" or "- ": flow collection, quoted or plain scalar (plain ones may
 * continue on more-indented lines). */
static cJSON *inline_value(struct parser *p, const char *s, size_t n, int parent_indent)
{
  size_t lineno = p->i;
  if (n && (s[0] == '[' || s[0] == '{' || s[0] == '"' || s[0] == '\'')) {
    /* Most values close on their own line; only join the following lines when they do not. */
    const struct line *cur = &p->lines[p->i];
    size_t jl = (size_t)(cur->raw + cur->rawlen - s);
    char *joined = NULL;
    const char *buf = s;
    if (!closes_on_line(s, jl)) {
      joined = join_from(p, s, &jl);
      if (!joined)
        return NULL;
      buf = joined;
    }
    const char *q = buf, *end = buf + jl;
    cJSON *v;
    if (s[0] == '[' || s[0] == '{') {
      v = flow_value(p, lineno, &q, end, p->depth + 1);
    } else {
      struct sbuf b = {0};
      size_t used = quoted(buf, jl, &b);
      if (!used) {
        fail(p, lineno, "unterminated quoted scalar");
        v = NULL;
      } else {
        q = buf + used;
        v = b.oom ? NULL : cJSON_CreateString(sb_str(&b));
      }
      free(b.s);
    }
    if (v) {
      /* Only blanks or a comment may follow on the closing line. */
      const char *e = q;
      while (e < end && *e != '\n' && (*e == ' ' || *e == '\t'))
        e++;
      if (e < end && *e != '\n' && *e != '#') {
        fail(p, lineno, "unexpected text after value");
        cJSON_Delete(v);
        v = NULL;
      } else {
        advance_lines(p, buf, (size_t)(q - buf));
      }
    }
    free(joined);
    return v;
  }
  if (n && (s[0] == '|' || s[0] == '>'))
    return NULL; /* handled by the caller */
  size_t m = strip_comment(s, n);
  const char *t = s;
  trim(&t, &m);
  p->i++;
  /* Multi-line plain scalar: following lines indented deeper than the parent are folded in. */
  size_t save = p->i;
  skip_blank(p);
  if (p->i < p->n && p->lines[p->i].indent > parent_indent && m > 0) {
    struct sbuf b = {0};
    sb_add(&b, t, m);
    while (p->i < p->n && (p->lines[p->i].blank || p->lines[p->i].indent > parent_indent)) {
      const struct line *l = &p->lines[p->i];
      if (!l->blank && (map_colon(l->text, l->len) >= 0 || is_dash(l))) {
        /* "a: 1\n  b: 2": a plain scalar cannot continue with a mapping or sequence */
        free(b.s);
        fail(p, p->i, "unexpected indentation");
        return NULL;
      }
      if (!l->blank) {
        size_t lm = strip_comment(l->text, l->len);
        const char *lt = l->text;
        trim(&lt, &lm);
        sb_addc(&b, ' ');
        sb_add(&b, lt, lm);
      }
      p->i++;
    }
    cJSON *v = b.oom ? NULL : cJSON_CreateString(sb_str(&b));
    free(b.s);
    return v;
  }
  p->i = save;
  return plain_scalar(t, m);
}

/* Block scalar introduced by header h ("|", "|-", ">+", "|2" ...) on line p->i whose parent
 * structure sits at column parent_indent. */
static cJSON *block_scalar(struct parser *p, const char *h, size_t hn, int parent_indent)
{
  char style = h[0];
  char chomp = 'c';
  int explicit_indent = 0;
  for (size_t k = 1; k < hn && h[k] != ' ' && h[k] != '#'; k++) {
    if (h[k] == '-' || h[k] == '+')
      chomp = h[k];
    else if (h[k] >= '1' && h[k] <= '9')
      explicit_indent = h[k] - '0';
    else {
      fail(p, p->i, "bad block scalar header");
      return NULL;
    }
  }
  p->i++;
  size_t first = p->i, last = p->i; /* [first, last) lines of the block */
  int content_indent = explicit_indent ? parent_indent + explicit_indent : -1;
  for (size_t j = p->i; j < p->n; j++) {
    const struct line *l = &p->lines[j];
    int allblank = 1;
    for (size_t k = 0; k < l->rawlen; k++)
      if (l->raw[k] != ' ' && l->raw[k] != '\t') {
        allblank = 0;
        break;
      }
    if (allblank) {
      continue;
    }
    if (l->indent <= parent_indent)
      break;
    if (content_indent < 0)
      content_indent = l->indent;
    last = j + 1;
  }
  if (content_indent < 0)
    content_indent = parent_indent + 1;
  struct sbuf b = {0};
  int prev_more = 0, prev_empty = 0;
  for (size_t j = first; j < last; j++) {
    const struct line *l = &p->lines[j];
    const char *txt = "";
    size_t tl = 0;
    if ((int)l->rawlen > content_indent) {
      txt = l->raw + content_indent;
      tl = l->rawlen - (size_t)content_indent;
    } else {
      /* A short line inside the block: blank, or text indented less than the block (tolerated). */
      size_t k = 0;
      while (k < l->rawlen && l->raw[k] == ' ')
        k++;
      txt = l->raw + k;
      tl = l->rawlen - k;
    }
    if (style == '|' || j == first) {
      if (j != first)
        sb_addc(&b, '\n');
      sb_add(&b, txt, tl);
    } else {
      /* Folded: a single break between text lines becomes a space, an empty line a newline, and
       * more-indented lines keep their breaks. */
      int more = tl && (txt[0] == ' ' || txt[0] == '\t');
      if (tl == 0)
        sb_addc(&b, '\n');
      else if (prev_empty || more || prev_more)
        sb_add(&b, prev_empty ? "" : "\n", prev_empty ? 0 : 1);
      else
        sb_addc(&b, ' ');
      sb_add(&b, txt, tl);
      prev_more = more;
    }
    prev_empty = tl == 0;
  }
  /* Trailing blank lines inside the block count only for "keep". */
  size_t trailing = 0;
  for (size_t j = last; j < p->n; j++) {
    const struct line *l = &p->lines[j];
    int allblank = 1;
    for (size_t k = 0; k < l->rawlen; k++)
      if (l->raw[k] != ' ' && l->raw[k] != '\t')
        allblank = 0;
    if (!allblank)
      break;
    trailing++;
  }
  if (last > first) {
    if (chomp == 'c')
      sb_addc(&b, '\n');
    else if (chomp == '+') {
      sb_addc(&b, '\n');
      for (size_t t = 0; t < trailing; t++)
        sb_addc(&b, '\n');
    }
  }
  p->i = last > first ? last : first;
  if (b.oom) {
    free(b.s);
    return NULL;
  }
  cJSON *v = cJSON_CreateString(sb_str(&b));
  free(b.s);
  return v;
}

/* Strips "&anchor" and "!tag" tokens in front of a value. */
static void strip_props(const char **s, size_t *n)
{
  while (*n && (**s == '&' || **s == '!')) {
    while (*n && **s != ' ') {
      (*s)++;
      (*n)--;
    }
    trim(s, n);
  }
}

/* Value that follows "key:" (rest = text after the colon) or "- " on line p->i. */
static cJSON *value_after(struct parser *p, const char *rest, size_t rn, int indent, int in_map)
{
  trim(&rest, &rn);
  strip_props(&rest, &rn);
  size_t cn = strip_comment(rest, rn);
  if (cn == 0) {
    p->i++;
    skip_blank(p);
    if (p->i < p->n && p->lines[p->i].indent > indent)
      return parse_block(p, p->lines[p->i].indent);
    /* "key:\n- a" : a sequence may sit at the key's own column. */
    if (in_map && p->i < p->n && p->lines[p->i].indent == indent && is_dash(&p->lines[p->i]))
      return parse_block(p, indent);
    return cJSON_CreateNull();
  }
  if (rest[0] == '|' || rest[0] == '>')
    return block_scalar(p, rest, rn, indent);
  return inline_value(p, rest, rn, indent);
}

static cJSON *parse_map(struct parser *p, int indent)
{
  cJSON *obj = cJSON_CreateObject();
  if (!obj)
    return NULL;
  for (;;) {
    skip_blank(p);
    if (p->i >= p->n)
      break;
    struct line *l = &p->lines[p->i];
    if (l->indent < indent)
      break;
    if (l->indent > indent) {
      fail(p, p->i, "unexpected indentation");
      goto err;
    }
    if (is_dash(l)) {
      fail(p, p->i, "sequence item where a mapping key was expected");
      goto err;
    }
    long c = map_colon(l->text, l->len);
    if (c < 0) {
      fail(p, p->i, "expected 'key: value'");
      goto err;
    }
    const char *ks = l->text;
    size_t kn = (size_t)c;
    trim(&ks, &kn);
    char *key;
    if (kn && (ks[0] == '"' || ks[0] == '\'')) {
      struct sbuf b = {0};
      quoted(ks, kn, &b);
      key = b.oom ? NULL : strdup(sb_str(&b));
      free(b.s);
    } else {
      key = strndup(ks, kn);
    }
    if (!key)
      goto err;
    cJSON *v = value_after(p, l->text + c + 1, l->len - (size_t)c - 1, indent, 1);
    if (!v) {
      free(key);
      if (!p->failed)
        fail(p, p->i < p->n ? p->i : p->n - 1, "bad value");
      goto err;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(obj, key); /* last duplicate wins */
    cJSON_AddItemToObject(obj, key, v);
    free(key);
  }
  return obj;
err:
  cJSON_Delete(obj);
  return NULL;
}

static cJSON *parse_seq(struct parser *p, int indent)
{
  cJSON *arr = cJSON_CreateArray();
  if (!arr)
    return NULL;
  for (;;) {
    skip_blank(p);
    if (p->i >= p->n)
      break;
    struct line *l = &p->lines[p->i];
    if (l->indent < indent)
      break;
    if (l->indent > indent) {
      fail(p, p->i, "unexpected indentation in sequence");
      goto err;
    }
    if (!is_dash(l))
      break; /* a sibling mapping key ("key:\n- a\nother: b") */
    size_t off = 1;
    while (off < l->len && l->text[off] == ' ')
      off++;
    cJSON *v;
    const char *rest = l->text + off;
    size_t rn = l->len - off;
    size_t cn = strip_comment(rest, rn);
    if (cn == 0 || rest[0] == '|' || rest[0] == '>' || rest[0] == '&' || rest[0] == '!') {
      v = value_after(p, rest, rn, indent, 0);
    } else {
      /* Re-read the rest of this line as a node starting at its own column. */
      l->indent += (int)off;
      l->text = rest;
      l->len = rn;
      v = parse_block(p, l->indent);
    }
    if (!v) {
      if (!p->failed)
        fail(p, p->i < p->n ? p->i : p->n - 1, "bad sequence item");
      goto err;
    }
    cJSON_AddItemToArray(arr, v);
  }
  return arr;
err:
  cJSON_Delete(arr);
  return NULL;
}

static cJSON *parse_block(struct parser *p, int indent)
{
  if (++p->depth > MAX_DEPTH) {
    fail(p, p->i, "nesting too deep");
    return NULL;
  }
  cJSON *v;
  skip_blank(p);
  if (p->i >= p->n) {
    v = cJSON_CreateNull();
  } else {
    struct line *l = &p->lines[p->i];
    if (is_dash(l))
      v = parse_seq(p, indent);
    else if (map_colon(l->text, l->len) >= 0)
      v = parse_map(p, indent);
    else
      v = value_after(p, l->text, l->len, indent - 1, 0);
  }
  p->depth--;
  return v;
}

cJSON *sim_yaml_parse(const char *text, size_t len, char *err, size_t errlen)
{
  struct parser p = {.err = err, .errlen = errlen};
  if (err && errlen)
    err[0] = '\0';
  size_t cap = 1;
  for (size_t k = 0; k < len; k++)
    if (text[k] == '\n')
      cap++;
  p.lines = calloc(cap, sizeof(*p.lines));
  if (!p.lines) {
    fail(&p, 0, "out of memory");
    return NULL;
  }
  cJSON *root = NULL;
  const char *s = text, *end = text + len;
  while (s <= end && p.n < cap) {
    const char *e = memchr(s, '\n', (size_t)(end - s));
    if (!e)
      e = end;
    struct line *l = &p.lines[p.n];
    l->raw = s;
    l->rawlen = (size_t)(e - s);
    if (l->rawlen && s[l->rawlen - 1] == '\r')
      l->rawlen--;
    size_t k = 0;
    while (k < l->rawlen && s[k] == ' ')
      k++;
    if (memchr(s, '\0', l->rawlen)) {
      fail(&p, p.n, "NUL byte in document");
      goto out;
    }
    l->indent = (int)k;
    l->text = s + k;
    l->len = l->rawlen - k;
    while (l->len && (l->text[l->len - 1] == ' ' || l->text[l->len - 1] == '\t'))
      l->len--;
    l->blank = l->len == 0 || l->text[0] == '#';
    /* Document markers: "---" starts, "..." ends; a second document is not supported. */
    if (l->indent == 0 && l->len >= 3 &&
        (!strncmp(l->text, "---", 3) || !strncmp(l->text, "...", 3)) &&
        (l->len == 3 || l->text[3] == ' '))
      l->blank = 1;
    p.n++;
    s = e + 1;
  }
  skip_blank(&p);
  if (p.i >= p.n) {
    fail(&p, 0, "empty document");
    goto out;
  }
  root = parse_block(&p, p.lines[p.i].indent);
  if (root && !p.failed) {
    skip_blank(&p);
    if (p.i < p.n) {
      fail(&p, p.i, "unexpected content (bad indentation?)");
      cJSON_Delete(root);
      root = NULL;
    }
  } else if (root) {
    cJSON_Delete(root);
    root = NULL;
  }
  if (!root && !p.failed)
    fail(&p, p.i < p.n ? p.i : 0, "could not parse document");
out:
  free(p.lines);
  return root;
}
