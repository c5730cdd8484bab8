/* lcmctl: the operators' command-line client of lcmd's HTTP API v1. Blocking libcurl is fine
 * here (one request at a time); human tables by default, the API's JSON with -o json.
 * Exit codes: 0 ok, 1 the API answered an error, 2 usage, 3 could not reach lcmd. */
#include "out.h"
#include "sse.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef LCM_VERSION
#define LCM_VERSION "0"
#endif

enum { EX_OK = 0, EX_API = 1, EX_USAGE = 2, EX_CONN = 3 };

struct opt {
    const char *k, *v;
};

struct ctx {
    const char *url, *token;
    int json, wide, verbose;
    long timeout_s;
    const char *pos[64];
    int npos;
    struct opt opts[64];
    int nopts;
};

static const char *bool_flags[] = { "all", "wide", "help", "verbose", NULL };

/* ---- usage ------------------------------------------------------------------------------ */

static const char usage_text[] =
    "usage: lcmctl [--url URL] [--token TOKEN] [-o table|json] [--timeout S] <noun> <verb> [args]\n"
    "\n"
    "  --url URL        lcmd base URL (env LCM_URL; default http://127.0.0.1:8080)\n"
    "  --token TOKEN    bearer token (env LCM_TOKEN)\n"
    "  -o, --output F   table (default) or json (the API's JSON, for scripts)\n"
    "  --wide           do not shorten long table cells\n"
    "  --timeout S      per-request timeout in seconds (default 30)\n"
    "\n"
    "resources (definitions, templates, workers, sessions, labs):\n"
    "  <noun> list [field=value ...] [--limit N] [--cursor C] [--all]\n"
    "  <noun> get <id>\n"
    "  <noun> create -f FILE|-  |  --json '{...}'\n"
    "  definitions activate|deactivate|delete <id>     templates delete <name>\n"
    "  workers create --template T --region R [--name N]\n"
    "  workers drain <id> [--reason R] [--deadline T]\n"
    "  workers start|stop|terminate|cancel-drain|refresh <id>     workers import --region R\n"
    "  sessions book --definition ID [--start T] [--end T | --minutes N] [--reservation R]\n"
    "                [--owner O] [--idempotency-key K]\n"
    "  sessions by-reservation <reservation_id>\n"
    "  sessions terminate|collect|requeue <id> [--reason R]    sessions extend <id> --end T\n"
    "  sessions transition <id> --status S [--reason R]\n"
    "  labs action <id> <start|stop|wipe|delete|...>\n"
    "operations:\n"
    "  policies status|reload        plugins list          health\n"
    "  scheduler status              scheduler preview --definition ID [--start T] [--end T]\n"
    "  availability [--definition ID] [--start T] [--end T]\n"
    "  events watch [--since ID] [--count N] [--kind K[,K]] [--type T[,T]] [--id ID]\n"
    "                                (SSE, live; reconnects with Last-Event-ID)\n"
    "  api <METHOD> <PATH> [JSON]    any route, raw\n"
    "\n"
    "exit codes: 0 ok, 1 the API answered an error (its problem detail is printed),\n"
    "            2 usage error, 3 lcmd could not be reached\n";

static int usage_err(const char *fmt, const char *arg)
{
    fprintf(stderr, "lcmctl: ");
    fprintf(stderr, fmt, arg ? arg : "");
    fprintf(stderr, "\n(lcmctl --help for usage)\n");
    return EX_USAGE;
}

/* ---- arguments -------------------------------------------------------------------------- */

static const char *opt(const struct ctx *c, const char *k)
{
    for (int i = c->nopts - 1; i >= 0; i--)
        if (!strcmp(c->opts[i].k, k))
            return c->opts[i].v;
    return NULL;
}

/* Every option given must be in the comma-separated allowed list. */
static int allow(const struct ctx *c, const char *allowed)
{
    for (int i = 0; i < c->nopts; i++) {
        const char *k = c->opts[i].k;
        size_t kl = strlen(k);
        const char *p = allowed;
        int ok = 0;
        while (p && *p) {
            const char *e = strchr(p, ',');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            if (n == kl && !strncmp(p, k, n))
                ok = 1;
            p = e ? e + 1 : NULL;
        }
        if (!ok) {
            usage_err("unknown option --%s for this command", k);
            return -1;
        }
    }
    return 0;
}

static int is_bool_flag(const char *k)
{
    for (int i = 0; bool_flags[i]; i++)
        if (!strcmp(bool_flags[i], k))
            return 1;
    return 0;
}

static int parse_args(struct ctx *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] == '-' && a[1] && strcmp(a, "-") != 0) {
            const char *k, *v = NULL;
            static char kbuf[64][64];
            if (a[1] == '-') {
                const char *eq = strchr(a + 2, '=');
                size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
                if (n == 0 || n >= 64 || c->nopts >= 64)
                    return usage_err("bad option '%s'", a);
                memcpy(kbuf[c->nopts], a + 2, n);
                kbuf[c->nopts][n] = 0;
                k = kbuf[c->nopts];
                if (eq)
                    v = eq + 1;
            } else if (!strcmp(a, "-o")) {
                k = "output";
            } else if (!strcmp(a, "-f")) {
                k = "file";
            } else if (!strcmp(a, "-h")) {
                k = "help";
            } else if (!strcmp(a, "-v")) {
                k = "verbose";
            } else {
                return usage_err("unknown option '%s'", a);
            }
            if (!v && is_bool_flag(k))
                v = "1";
            if (!v) {
                if (i + 1 >= argc)
                    return usage_err("option '%s' needs a value", a);
                v = argv[++i];
            }
            if (!strcmp(k, "url"))
                c->url = v;
            else if (!strcmp(k, "token"))
                c->token = v;
            else if (!strcmp(k, "output")) {
                if (strcmp(v, "json") && strcmp(v, "table"))
                    return usage_err("-o must be table or json, not '%s'", v);
                c->json = !strcmp(v, "json");
            } else if (!strcmp(k, "timeout")) {
                char *end;
                c->timeout_s = strtol(v, &end, 10);
                if (*end || c->timeout_s <= 0)
                    return usage_err("--timeout must be a positive number of seconds", NULL);
            } else if (!strcmp(k, "wide"))
                c->wide = 1;
            else if (!strcmp(k, "verbose"))
                c->verbose = 1;
            else if (!strcmp(k, "help")) {
                fputs(usage_text, stdout);
                exit(EX_OK);
            } else if (!strcmp(k, "version")) {
                printf("lcmctl %s\n", LCM_VERSION);
                exit(EX_OK);
            } else {
                if (c->nopts >= 64)
                    return usage_err("too many options", NULL);
                c->opts[c->nopts++] = (struct opt){ k, v };
            }
        } else {
            if (c->npos >= 64)
                return usage_err("too many arguments", NULL);
            c->pos[c->npos++] = a;
        }
    }
    return EX_OK;
}

/* ---- HTTP ------------------------------------------------------------------------------- */

struct buf {
    char *p;
    size_t n, cap;
};

static size_t buf_write(char *data, size_t size, size_t nmemb, void *ud)
{
    struct buf *b = ud;
    size_t n = size * nmemb;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = 0;
    return n;
}

/* Prints the API's problem+json (RFC 9457) detail, or the raw body when it is not one. */
static void print_problem(long status, const char *body, size_t len)
{
    cJSON *j = body && len ? cJSON_ParseWithLength(body, len) : NULL;
    const cJSON *title = cJSON_GetObjectItemCaseSensitive(j, "title");
    const cJSON *detail = cJSON_GetObjectItemCaseSensitive(j, "detail");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    const cJSON *field = cJSON_GetObjectItemCaseSensitive(j, "field");
    if (cJSON_IsObject(j) && (cJSON_IsString(title) || cJSON_IsString(detail))) {
        fprintf(stderr, "lcmctl: HTTP %ld: %s", status, cJSON_IsString(title) ? title->valuestring : "error");
        if (cJSON_IsString(detail) && detail->valuestring[0])
            fprintf(stderr, ": %s", detail->valuestring);
        if (cJSON_IsString(field) && field->valuestring[0])
            fprintf(stderr, " (field: %s)", field->valuestring);
        if (cJSON_IsString(type))
            fprintf(stderr, " [%s]", type->valuestring);
        fputc('\n', stderr);
    } else {
        int n = len > 300 ? 300 : (int)len;
        fprintf(stderr, "lcmctl: HTTP %ld%s%.*s\n", status, n ? ": " : "", n, body ? body : "");
    }
    cJSON_Delete(j);
}

static struct curl_slist *base_headers(const struct ctx *c, const char *const *extra)
{
    struct curl_slist *h = NULL;
    char line[4200];
    if (c->token && c->token[0]) {
        snprintf(line, sizeof(line), "Authorization: Bearer %s", c->token);
        h = curl_slist_append(h, line);
    }
    h = curl_slist_append(h, "Accept: application/json, application/problem+json");
    for (int i = 0; extra && extra[i]; i++)
        h = curl_slist_append(h, extra[i]);
    return h;
}

/* One request. On 2xx: *out gets the parsed JSON (NULL for an empty body) and EX_OK.
 * Otherwise prints the problem and returns EX_API, or EX_CONN when lcmd was unreachable. */
static int request(const struct ctx *c, const char *method, const char *path, const cJSON *body,
                   const char *const *extra, cJSON **out)
{
    *out = NULL;
    CURL *e = curl_easy_init();
    if (!e) {
        fprintf(stderr, "lcmctl: cannot initialise libcurl\n");
        return EX_CONN;
    }
    char url[4096];
    snprintf(url, sizeof(url), "%s%s", c->url, path);
    char *payload = body ? cJSON_PrintUnformatted(body) : NULL;
    const char *ct[] = { "Content-Type: application/json", NULL };
    const char *hdrs[16];
    int nh = 0;
    if (payload)
        hdrs[nh++] = ct[0];
    for (int i = 0; extra && extra[i] && nh < 15; i++)
        hdrs[nh++] = extra[i];
    hdrs[nh] = NULL;
    struct curl_slist *h = base_headers(c, hdrs);
    struct buf b = { 0 };
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, c->timeout_s);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, c->timeout_s < 10 ? c->timeout_s : 10L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "lcmctl/" LCM_VERSION);
    if (payload) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, payload);
    } else if (!strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH")) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
    }
    if (c->verbose)
        fprintf(stderr, "> %s %s\n", method, url);
    CURLcode rc = curl_easy_perform(e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    int ret;
    if (rc != CURLE_OK) {
        fprintf(stderr, "lcmctl: cannot reach %s: %s\n", c->url, curl_easy_strerror(rc));
        ret = EX_CONN;
    } else if (status < 200 || status > 299) {
        print_problem(status, b.p, b.n);
        ret = EX_API;
    } else {
        ret = EX_OK;
        if (b.n) {
            *out = cJSON_ParseWithLength(b.p, b.n);
            if (!*out) {
                /* not JSON (e.g. /metrics): hand it over as a string */
                *out = cJSON_CreateString(b.p);
            }
        }
    }
    if (c->verbose)
        fprintf(stderr, "< %ld (%zu bytes)\n", status, b.n);
    free(b.p);
    free(payload);
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    return ret;
}

static char *esc(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    char *r = e ? strdup(e) : NULL;
    curl_free(e);
    return r;
}

/* path + "?k=v&..." from the given pairs (values escaped). Skips NULL values. */
static void add_query(char *path, size_t cap, const char *k, const char *v)
{
    if (!v)
        return;
    char *ek = esc(k), *ev = esc(v);
    size_t n = strlen(path);
    snprintf(path + n, cap - n, "%s%s=%s", strchr(path, '?') ? "&" : "?", ek ? ek : "", ev ? ev : "");
    free(ek);
    free(ev);
}

/* ---- output ----------------------------------------------------------------------------- */

static void print_json(const cJSON *j)
{
    char *s = j ? cJSON_Print(j) : NULL;
    printf("%s\n", s ? s : "null");
    free(s);
}

/* The array of items in a list answer: the body itself, or its "items"/<noun>/"data". */
static const cJSON *list_items(const cJSON *j, const char *noun)
{
    if (cJSON_IsArray(j))
        return j;
    const char *keys[] = { "items", noun, "data", "results", NULL };
    for (int i = 0; keys[i]; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, keys[i]);
        if (cJSON_IsArray(a))
            return a;
    }
    return NULL;
}

static const char *next_cursor(const cJSON *j)
{
    const char *keys[] = { "next_cursor", "next", "cursor", NULL };
    for (int i = 0; keys[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[i]);
        if (cJSON_IsString(v) && v->valuestring[0])
            return v->valuestring;
    }
    const cJSON *page = cJSON_GetObjectItemCaseSensitive(j, "page");
    return page ? next_cursor(page) : NULL;
}

static const struct lcmctl_col cols_definitions[] = {
    { "ID", "id" }, { "NAME", "name" }, { "VERSION", "version" }, { "STATUS", "status" },
    { "NODES", "node_count" }, { "CPU", "resource_requirements.cpu_cores" },
    { "MEM_GB", "resource_requirements.memory_gb" }, { "FQN", "form_qualified_name" },
};
static const struct lcmctl_col cols_templates[] = {
    { "NAME", "name" }, { "INSTANCE", "instance_type" }, { "REGION", "region" },
    { "LICENSE", "license_type" }, { "CPU", "capacity.cpu_cores" }, { "MEM_GB", "capacity.memory_gb" },
    { "NODES", "capacity.max_nodes" }, { "$/H", "cost_per_hour" }, { "ENABLED", "enabled" },
};
static const struct lcmctl_col cols_workers[] = {
    { "ID", "id" }, { "NAME", "name" }, { "REGION", "region" }, { "TEMPLATE", "template" },
    { "STATUS", "status" }, { "DESIRED", "desired_status" }, { "CML", "cml.ready" },
    { "CPU", "allocated.cpu_cores/declared.cpu_cores" },
    { "MEM_GB", "allocated.memory_gb/declared.memory_gb" },
    { "NODES", "allocated.nodes/declared.max_nodes" }, { "SESSIONS", "#sessions" },
};
static const struct lcmctl_col cols_sessions[] = {
    { "ID", "id" }, { "DEFINITION", "definition_name" }, { "STATUS", "status" },
    { "WORKER", "worker_id" }, { "START", "timeslot.start" }, { "END", "timeslot.end" },
    { "RESERVATION", "reservation_id" }, { "SCORE", "score.score" }, { "LOGIN_URL", "user_session.login_url" },
};
static const struct lcmctl_col cols_labs[] = {
    { "ID", "id" }, { "WORKER", "worker_id" }, { "CML_LAB", "cml_lab_id" }, { "TITLE", "title" },
    { "STATUS", "status" }, { "SESSION", "active_session_id" }, { "DEFINITION", "definition_id" },
};
static const struct lcmctl_col cols_policies[] = {
    { "NAME", "name" }, { "SOURCE", "source" }, { "GENERATION", "generation" },
    { "FIXTURES", "fixtures" }, { "RELOADS", "reloads" }, { "REFUSALS", "refusals" },
    { "FALLBACKS", "fallbacks" }, { "LOADED_AT", "loaded_at" }, { "LAST_ERROR", "last_error" },
};
static const struct lcmctl_col cols_plugins[] = {
    { "NAME", "name" }, { "KIND", "kind" }, { "VERSION", "version" }, { "SPI", "spi.major" },
    { "STATUS", "status" }, { "INFLIGHT", "inflight" }, { "FILE", "file" },
};
static const struct lcmctl_col cols_refused[] = { { "REFUSED_FILE", "file" }, { "REASON", "reason" } };

#define NCOLS(a) (sizeof(a) / sizeof((a)[0]))

struct noun {
    const char *name, *alias1, *alias2;
    const struct lcmctl_col *cols;
    size_t ncols;
};

static const struct noun nouns[] = {
    { "definitions", "definition", "defs", cols_definitions, NCOLS(cols_definitions) },
    { "templates", "template", "tpl", cols_templates, NCOLS(cols_templates) },
    { "workers", "worker", "wk", cols_workers, NCOLS(cols_workers) },
    { "sessions", "session", "sess", cols_sessions, NCOLS(cols_sessions) },
    { "labs", "lab", NULL, cols_labs, NCOLS(cols_labs) },
};

static const struct noun *find_noun(const char *s)
{
    for (size_t i = 0; i < NCOLS(nouns); i++)
        if (!strcmp(s, nouns[i].name) || (nouns[i].alias1 && !strcmp(s, nouns[i].alias1)) ||
            (nouns[i].alias2 && !strcmp(s, nouns[i].alias2)))
            return &nouns[i];
    return NULL;
}

/* One aggregate (or any object): JSON, or key: value lines. */
static void show_doc(const struct ctx *c, const cJSON *j)
{
    if (c->json || !cJSON_IsObject(j))
        print_json(j);
    else
        lcmctl_kv(stdout, j);
}

/* ---- commands --------------------------------------------------------------------------- */

static cJSON *read_body(const struct ctx *c, int *rc)
{
    const char *file = opt(c, "file"), *js = opt(c, "json");
    char *text = NULL;
    *rc = EX_OK;
    if (file && js) {
        *rc = usage_err("give -f FILE or --json, not both", NULL);
        return NULL;
    }
    if (js) {
        text = strdup(js);
    } else if (file) {
        FILE *f = strcmp(file, "-") ? fopen(file, "r") : stdin;
        if (!f) {
            fprintf(stderr, "lcmctl: cannot read %s: %s\n", file, strerror(errno));
            *rc = EX_USAGE;
            return NULL;
        }
        struct buf b = { 0 };
        char chunk[8192];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            if (buf_write(chunk, 1, n, &b) != n)
                break;
        if (f != stdin)
            fclose(f);
        text = b.p ? b.p : strdup("");
    } else {
        *rc = usage_err("a body is needed: -f FILE (or - for stdin) or --json '{...}'", NULL);
        return NULL;
    }
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    if (!j) {
        fprintf(stderr, "lcmctl: the body is not valid JSON%s%s\n", file ? " in " : "", file ? file : "");
        *rc = EX_USAGE;
    }
    free(text);
    return j;
}

static int cmd_list(const struct ctx *c, const struct noun *n)
{
    if (allow(c, "limit,cursor,all") < 0)
        return EX_USAGE;
    int all = opt(c, "all") != NULL;
    char *cursor = opt(c, "cursor") ? strdup(opt(c, "cursor")) : NULL;
    cJSON *acc = cJSON_CreateArray();
    int rc = EX_OK;
    for (;;) {
        char path[4096];
        snprintf(path, sizeof(path), "/api/v1/%s", n->name);
        for (int i = 2; i < c->npos; i++) {
            const char *eq = strchr(c->pos[i], '=');
            if (!eq) {
                rc = usage_err("filters are field=value, not '%s'", c->pos[i]);
                goto out;
            }
            char k[128];
            size_t kl = (size_t)(eq - c->pos[i]);
            if (kl == 0 || kl >= sizeof(k)) {
                rc = usage_err("bad filter '%s'", c->pos[i]);
                goto out;
            }
            memcpy(k, c->pos[i], kl);
            k[kl] = 0;
            add_query(path, sizeof(path), k, eq + 1);
        }
        add_query(path, sizeof(path), "limit", opt(c, "limit"));
        add_query(path, sizeof(path), "cursor", cursor);
        cJSON *j;
        if ((rc = request(c, "GET", path, NULL, NULL, &j)) != EX_OK)
            goto out;
        const cJSON *items = list_items(j, n->name);
        if (!items) {
            /* unexpected shape: show what came */
            show_doc(c, j);
            cJSON_Delete(j);
            goto out;
        }
        if (!all && c->json) {
            print_json(j);
            cJSON_Delete(j);
            goto out;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, items)
            cJSON_AddItemToArray(acc, cJSON_Duplicate(it, 1));
        const char *nc = next_cursor(j);
        free(cursor);
        cursor = nc ? strdup(nc) : NULL;
        if (!all || !cursor) {
            if (!all && cursor && !c->json)
                fprintf(stderr, "(more: --cursor %s, or --all)\n", cursor);
            cJSON_Delete(j);
            break;
        }
        cJSON_Delete(j);
    }
    if (c->json)
        print_json(acc);
    else
        lcmctl_table(stdout, acc, n->cols, n->ncols, c->wide);
out:
    cJSON_Delete(acc);
    free(cursor);
    return rc;
}

static int simple(const struct ctx *c, const char *method, const char *path, const cJSON *body,
                  const char *const *extra)
{
    cJSON *j;
    int rc = request(c, method, path, body, extra, &j);
    if (rc == EX_OK) {
        if (j)
            show_doc(c, j);
        else if (!c->json)
            printf("ok\n");
    }
    cJSON_Delete(j);
    return rc;
}

/* "/api/v1/<noun>/<escaped id>[/<action>]" */
static void id_path(char *path, size_t cap, const char *noun, const char *id, const char *action)
{
    char *e = esc(id);
    snprintf(path, cap, "/api/v1/%s/%s%s%s", noun, e ? e : "", action ? "/" : "", action ? action : "");
    free(e);
}

static void now_plus(char *out, size_t cap, long seconds)
{
    time_t t = time(NULL) + seconds;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int cmd_book(const struct ctx *c)
{
    if (allow(c, "definition,start,end,minutes,reservation,owner,idempotency-key") < 0)
        return EX_USAGE;
    if (!opt(c, "definition"))
        return usage_err("sessions book needs --definition ID", NULL);
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "definition_id", opt(c, "definition"));
    const char *start = opt(c, "start"), *end = opt(c, "end"), *mins = opt(c, "minutes");
    char sbuf[32], ebuf[32];
    if (mins && end) {
        cJSON_Delete(b);
        return usage_err("give --end or --minutes, not both", NULL);
    }
    if (mins) {
        char *x;
        long m = strtol(mins, &x, 10);
        if (*x || m <= 0) {
            cJSON_Delete(b);
            return usage_err("--minutes must be a positive number", NULL);
        }
        if (start) {
            /* --minutes counts from --start: parse it back (UTC, RFC 3339 Z form only) */
            struct tm tm;
            memset(&tm, 0, sizeof(tm));
            const char *r = strptime(start, "%Y-%m-%dT%H:%M:%S", &tm);
            if (!r || (*r != 'Z' && *r != 0)) {
                cJSON_Delete(b);
                return usage_err("--start must look like 2025-01-31T09:00:00Z with --minutes", NULL);
            }
            time_t t = timegm(&tm) + m * 60;
            gmtime_r(&t, &tm);
            strftime(ebuf, sizeof(ebuf), "%Y-%m-%dT%H:%M:%SZ", &tm);
        } else {
            now_plus(sbuf, sizeof(sbuf), 0);
            now_plus(ebuf, sizeof(ebuf), m * 60);
            start = sbuf;
        }
        end = ebuf;
    }
    if (start || end) {
        cJSON *ts = cJSON_AddObjectToObject(b, "timeslot");
        if (start)
            cJSON_AddStringToObject(ts, "start", start);
        if (end)
            cJSON_AddStringToObject(ts, "end", end);
    }
    if (opt(c, "reservation"))
        cJSON_AddStringToObject(b, "reservation_id", opt(c, "reservation"));
    if (opt(c, "owner"))
        cJSON_AddStringToObject(b, "owner", opt(c, "owner"));
    char ik[300];
    const char *extra[2] = { NULL, NULL };
    if (opt(c, "idempotency-key")) {
        snprintf(ik, sizeof(ik), "Idempotency-Key: %s", opt(c, "idempotency-key"));
        extra[0] = ik;
    }
    int rc = simple(c, "POST", "/api/v1/sessions", b, extra);
    cJSON_Delete(b);
    return rc;
}

static int need_id(const struct ctx *c, const char *what)
{
    if (c->npos < 3)
        return usage_err("%s needs an id", what);
    if (c->npos > 3 && strcmp(c->pos[1], "action") != 0)
        return usage_err("unexpected argument '%s'", c->pos[3]);
    return EX_OK;
}

static int cmd_resource(const struct ctx *c, const struct noun *n)
{
    const char *verb = c->npos > 1 ? c->pos[1] : "list";
    char path[2048];
    if (!strcmp(verb, "list"))
        return cmd_list(c, n);
    if (!strcmp(verb, "get")) {
        if (need_id(c, "get") || allow(c, "") < 0)
            return EX_USAGE;
        id_path(path, sizeof(path), n->name, c->pos[2], NULL);
        return simple(c, "GET", path, NULL, NULL);
    }
    if (!strcmp(verb, "create")) {
        if (!strcmp(n->name, "workers") && opt(c, "template")) {
            if (allow(c, "template,region,name") < 0)
                return EX_USAGE;
            if (!opt(c, "region"))
                return usage_err("workers create needs --region", NULL);
            cJSON *b = cJSON_CreateObject();
            cJSON_AddStringToObject(b, "template", opt(c, "template"));
            cJSON_AddStringToObject(b, "region", opt(c, "region"));
            if (opt(c, "name"))
                cJSON_AddStringToObject(b, "name", opt(c, "name"));
            int rc = simple(c, "POST", "/api/v1/workers", b, NULL);
            cJSON_Delete(b);
            return rc;
        }
        if (allow(c, "file,json") < 0)
            return EX_USAGE;
        int rc;
        cJSON *b = read_body(c, &rc);
        if (!b)
            return rc;
        snprintf(path, sizeof(path), "/api/v1/%s", n->name);
        rc = simple(c, "POST", path, b, NULL);
        cJSON_Delete(b);
        return rc;
    }
    if (!strcmp(n->name, "sessions") && !strcmp(verb, "book"))
        return cmd_book(c);
    if (!strcmp(n->name, "sessions") && !strcmp(verb, "by-reservation")) {
        if (need_id(c, "by-reservation") || allow(c, "") < 0)
            return EX_USAGE;
        id_path(path, sizeof(path), "sessions/by-reservation", c->pos[2], NULL);
        return simple(c, "GET", path, NULL, NULL);
    }
    if (!strcmp(verb, "delete") && (!strcmp(n->name, "definitions") || !strcmp(n->name, "templates"))) {
        if (need_id(c, "delete") || allow(c, "") < 0)
            return EX_USAGE;
        id_path(path, sizeof(path), n->name, c->pos[2], NULL);
        return simple(c, "DELETE", path, NULL, NULL);
    }
    if (!strcmp(n->name, "workers") && !strcmp(verb, "import")) {
        if (allow(c, "region") < 0)
            return EX_USAGE;
        if (!opt(c, "region"))
            return usage_err("workers import needs --region", NULL);
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "region", opt(c, "region"));
        int rc = simple(c, "POST", "/api/v1/workers/import", b, NULL);
        cJSON_Delete(b);
        return rc;
    }
    if (!strcmp(n->name, "labs") && !strcmp(verb, "action")) {
        if (c->npos != 4 || allow(c, "") < 0)
            return usage_err("usage: labs action <id> <action>", NULL);
        id_path(path, sizeof(path), "labs", c->pos[2], "actions");
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "action", c->pos[3]);
        int rc = simple(c, "POST", path, b, NULL);
        cJSON_Delete(b);
        return rc;
    }
    /* the action routes: POST /api/v1/<noun>/{id}/<verb> with an optional small body */
    static const struct {
        const char *noun, *verb, *opts;
    } actions[] = {
        { "definitions", "activate", "" }, { "definitions", "deactivate", "" },
        { "workers", "drain", "reason,deadline" }, { "workers", "cancel-drain", "" },
        { "workers", "start", "" }, { "workers", "stop", "reason" }, { "workers", "terminate", "reason" },
        { "workers", "refresh", "" },
        { "sessions", "terminate", "reason" }, { "sessions", "extend", "end" },
        { "sessions", "collect", "reason" }, { "sessions", "transition", "status,reason" },
        { "sessions", "requeue", "reason,start,end" },
    };
    for (size_t i = 0; i < NCOLS(actions); i++) {
        if (strcmp(actions[i].noun, n->name) || strcmp(actions[i].verb, verb))
            continue;
        if (need_id(c, verb) || allow(c, actions[i].opts) < 0)
            return EX_USAGE;
        if (!strcmp(verb, "extend") && !opt(c, "end"))
            return usage_err("sessions extend needs --end T", NULL);
        if (!strcmp(verb, "transition") && !opt(c, "status"))
            return usage_err("sessions transition needs --status S", NULL);
        cJSON *b = NULL;
        for (int k = 0; k < c->nopts; k++) {
            if (!b)
                b = cJSON_CreateObject();
            const char *key = c->opts[k].k;
            if (!strcmp(verb, "requeue") && (!strcmp(key, "start") || !strcmp(key, "end"))) {
                cJSON *ts = cJSON_GetObjectItemCaseSensitive(b, "timeslot");
                if (!ts)
                    ts = cJSON_AddObjectToObject(b, "timeslot");
                cJSON_DeleteItemFromObjectCaseSensitive(ts, key);
                cJSON_AddStringToObject(ts, key, c->opts[k].v);
            } else {
                cJSON_DeleteItemFromObjectCaseSensitive(b, key);
                cJSON_AddStringToObject(b, key, c->opts[k].v);
            }
        }
        id_path(path, sizeof(path), n->name, c->pos[2], verb);
        int rc = simple(c, "POST", path, b, NULL);
        cJSON_Delete(b);
        return rc;
    }
    return usage_err("unknown verb '%s' for this noun", verb);
}

static int cmd_policies(const struct ctx *c)
{
    const char *verb = c->npos > 1 ? c->pos[1] : "status";
    if (allow(c, "") < 0 || c->npos > 2)
        return EX_USAGE;
    const char *method, *path;
    if (!strcmp(verb, "status") || !strcmp(verb, "list") || !strcmp(verb, "get")) {
        method = "GET";
        path = "/api/v1/policies";
    } else if (!strcmp(verb, "reload")) {
        method = "POST";
        path = "/api/v1/policies/reload";
    } else {
        return usage_err("policies status|reload, not '%s'", verb);
    }
    cJSON *j;
    int rc = request(c, method, path, NULL, NULL, &j);
    if (rc == EX_OK) {
        if (c->json) {
            print_json(j);
        } else {
            lcmctl_table(stdout, cJSON_GetObjectItemCaseSensitive(j, "policies"), cols_policies,
                         NCOLS(cols_policies), c->wide);
            if (!strcmp(verb, "reload"))
                printf("reloaded\n");
        }
    }
    cJSON_Delete(j);
    return rc;
}

static int cmd_plugins(const struct ctx *c)
{
    const char *verb = c->npos > 1 ? c->pos[1] : "list";
    if (allow(c, "") < 0 || c->npos > 2 || (strcmp(verb, "list") && strcmp(verb, "status")))
        return usage_err("usage: plugins list", NULL);
    cJSON *j;
    int rc = request(c, "GET", "/api/v1/plugins", NULL, NULL, &j);
    if (rc == EX_OK) {
        if (c->json) {
            print_json(j);
        } else {
            const cJSON *spi = cJSON_GetObjectItemCaseSensitive(j, "spi");
            const cJSON *mj = cJSON_GetObjectItemCaseSensitive(spi, "major");
            const cJSON *mn = cJSON_GetObjectItemCaseSensitive(spi, "minor");
            if (cJSON_IsNumber(mj) && cJSON_IsNumber(mn))
                printf("host SPI %d.%d\n", mj->valueint, mn->valueint);
            lcmctl_table(stdout, cJSON_GetObjectItemCaseSensitive(j, "loaded"), cols_plugins,
                         NCOLS(cols_plugins), c->wide);
            const cJSON *ref = cJSON_GetObjectItemCaseSensitive(j, "refused");
            if (cJSON_GetArraySize(ref) > 0) {
                putchar('\n');
                lcmctl_table(stdout, ref, cols_refused, NCOLS(cols_refused), 1);
            }
        }
    }
    cJSON_Delete(j);
    return rc;
}

static int cmd_scheduler(const struct ctx *c)
{
    const char *verb = c->npos > 1 ? c->pos[1] : "status";
    if (!strcmp(verb, "status")) {
        if (allow(c, "") < 0)
            return EX_USAGE;
        return simple(c, "GET", "/api/v1/scheduler", NULL, NULL);
    }
    if (!strcmp(verb, "preview")) {
        if (allow(c, "definition,start,end,file,json") < 0)
            return EX_USAGE;
        cJSON *b;
        int rc;
        if (opt(c, "file") || opt(c, "json")) {
            if (!(b = read_body(c, &rc)))
                return rc;
        } else {
            if (!opt(c, "definition"))
                return usage_err("scheduler preview needs --definition ID (or a body with -f/--json)", NULL);
            b = cJSON_CreateObject();
            cJSON_AddStringToObject(b, "definition_id", opt(c, "definition"));
            if (opt(c, "start") || opt(c, "end")) {
                cJSON *ts = cJSON_AddObjectToObject(b, "timeslot");
                if (opt(c, "start"))
                    cJSON_AddStringToObject(ts, "start", opt(c, "start"));
                if (opt(c, "end"))
                    cJSON_AddStringToObject(ts, "end", opt(c, "end"));
            }
        }
        rc = simple(c, "POST", "/api/v1/scheduler/preview", b, NULL);
        cJSON_Delete(b);
        return rc;
    }
    return usage_err("scheduler status|preview, not '%s'", verb);
}

static int cmd_availability(const struct ctx *c)
{
    if (c->npos > 1 && strcmp(c->pos[1], "get") && strcmp(c->pos[1], "show"))
        return usage_err("usage: availability [--definition ID] [--start T] [--end T]", NULL);
    if (allow(c, "definition,start,end") < 0)
        return EX_USAGE;
    char path[2048] = "/api/v1/availability";
    add_query(path, sizeof(path), "definition_id", opt(c, "definition"));
    add_query(path, sizeof(path), "start", opt(c, "start"));
    add_query(path, sizeof(path), "end", opt(c, "end"));
    return simple(c, "GET", path, NULL, NULL);
}

static int cmd_health(const struct ctx *c)
{
    if (allow(c, "") < 0)
        return EX_USAGE;
    cJSON *j;
    int rc = request(c, "GET", "/readyz", NULL, NULL, &j);
    if (rc == EX_OK)
        show_doc(c, j);
    cJSON_Delete(j);
    return rc;
}

static int cmd_api(const struct ctx *c)
{
    if (c->npos < 3 || c->npos > 4 || allow(c, "file,json") < 0)
        return usage_err("usage: api <METHOD> <PATH> [JSON]", NULL);
    cJSON *b = NULL;
    int rc;
    if (c->npos == 4) {
        if (!(b = cJSON_Parse(c->pos[3]))) {
            fprintf(stderr, "lcmctl: the body is not valid JSON\n");
            return EX_USAGE;
        }
    } else if ((opt(c, "file") || opt(c, "json")) && !(b = read_body(c, &rc))) {
        return rc;
    }
    rc = simple(c, c->pos[1], c->pos[2], b, NULL);
    cJSON_Delete(b);
    return rc;
}

/* ---- events watch (SSE) ----------------------------------------------------------------- */

static volatile sig_atomic_t stop_flag;

static void on_sigint(int sig)
{
    (void)sig;
    stop_flag = 1;
}

struct watch {
    const struct ctx *c;
    struct lcmctl_sse sse;
    long count, seen;
    long status;
    struct buf errbody;
    int got_headers;
};

static int on_event(const struct lcmctl_sse_event *ev, void *ud)
{
    struct watch *w = ud;
    cJSON *j = cJSON_Parse(ev->data);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    const char *t = cJSON_IsString(type) ? type->valuestring : ev->event;
    if (w->c->json) {
        /* one JSON object per line (NDJSON): {id, event, data} */
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", ev->id);
        cJSON_AddStringToObject(o, "event", ev->event);
        cJSON_AddItemToObject(o, "data", j ? cJSON_Duplicate(j, 1) : cJSON_CreateString(ev->data));
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s ? s : "{}");
        free(s);
        cJSON_Delete(o);
    } else {
        /* lcmd's frames carry {kind, id, type, version, at, by, data}; CloudEvents-shaped
         * ones {type, subject, time, data}: show whichever is there */
        const cJSON *at = cJSON_GetObjectItemCaseSensitive(j, "at");
        if (!cJSON_IsString(at))
            at = cJSON_GetObjectItemCaseSensitive(j, "time");
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(j, "kind");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
        const cJSON *subj = cJSON_GetObjectItemCaseSensitive(j, "subject");
        char subject[256];
        if (cJSON_IsString(kind) && cJSON_IsString(id))
            snprintf(subject, sizeof(subject), "%s/%s", kind->valuestring, id->valuestring);
        else
            snprintf(subject, sizeof(subject), "%s", cJSON_IsString(subj) ? subj->valuestring : "-");
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
        const cJSON *st = lcmctl_path(data, "to");
        if (!cJSON_IsString(st))
            st = lcmctl_path(data, "status");
        printf("%-20s %-24s %-26s %-46s %s\n", ev->id,
               cJSON_IsString(at) ? at->valuestring : "-", t, subject,
               cJSON_IsString(st) ? st->valuestring : "");
    }
    fflush(stdout);
    cJSON_Delete(j);
    w->seen++;
    return w->count > 0 && w->seen >= w->count ? 1 : 0;
}

static size_t watch_write(char *data, size_t size, size_t nmemb, void *ud)
{
    struct watch *w = ud;
    size_t n = size * nmemb;
    if (stop_flag)
        return 0;
    if (w->status < 200 || w->status > 299) {
        buf_write(data, 1, n, &w->errbody);
        return n;
    }
    int rc = lcmctl_sse_feed(&w->sse, data, n);
    return rc == 0 ? n : 0;   /* a short write makes curl stop the transfer */
}

static size_t watch_header(char *data, size_t size, size_t nmemb, void *ud)
{
    struct watch *w = ud;
    if (size * nmemb > 5 && !strncmp(data, "HTTP/", 5)) {
        const char *sp = memchr(data, ' ', size * nmemb);
        w->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        w->got_headers = 1;
    }
    return size * nmemb;
}

static int cmd_events(const struct ctx *c)
{
    if (c->npos > 1 && strcmp(c->pos[1], "watch"))
        return usage_err("usage: events watch [--since ID] [--count N] [--kind K] [--type T] [--id ID]", NULL);
    if (allow(c, "since,count,type,kind,id") < 0)
        return EX_USAGE;
    struct watch w = { .c = c };
    if (opt(c, "count")) {
        char *x;
        w.count = strtol(opt(c, "count"), &x, 10);
        if (*x || w.count <= 0)
            return usage_err("--count must be a positive number", NULL);
    }
    lcmctl_sse_init(&w.sse, on_event, &w);
    if (opt(c, "since")) {
        snprintf(w.sse.id, sizeof(w.sse.id), "%s", opt(c, "since"));
        snprintf(w.sse.last_id, sizeof(w.sse.last_id), "%s", opt(c, "since"));
    }
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    if (!c->json)
        printf("%-20s %-24s %-26s %-46s %s\n", "FEED_ID", "AT", "TYPE", "AGGREGATE", "STATUS");
    fflush(stdout);
    int rc = EX_OK, connected_once = 0;
    long backoff_ms = 500;
    char url[4096];
    snprintf(url, sizeof(url), "%s/api/v1/events", c->url);
    /* filtering is the server's: only matching events cross the wire */
    add_query(url, sizeof(url), "kind", opt(c, "kind"));
    add_query(url, sizeof(url), "type", opt(c, "type"));
    add_query(url, sizeof(url), "id", opt(c, "id"));
    while (!stop_flag) {
        CURL *e = curl_easy_init();
        struct curl_slist *h = NULL;
        char last[300];
        const char *extra[3] = { "Accept: text/event-stream", NULL, NULL };
        if (w.sse.last_id[0]) {
            snprintf(last, sizeof(last), "Last-Event-ID: %s", w.sse.last_id);
            extra[1] = last;
        }
        h = base_headers(c, extra);
        w.status = 0;
        w.got_headers = 0;
        w.errbody.n = 0;
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, watch_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &w);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, watch_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, &w);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, c->timeout_s < 10 ? c->timeout_s : 10L);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_USERAGENT, "lcmctl/" LCM_VERSION);
        /* a silent stream (no keep-alive comment either) for this long is a dead stream */
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 90L);
        if (c->verbose)
            fprintf(stderr, "> GET %s%s%s\n", url, w.sse.last_id[0] ? " Last-Event-ID: " : "", w.sse.last_id);
        CURLcode cr = curl_easy_perform(e);
        curl_slist_free_all(h);
        curl_easy_cleanup(e);
        lcmctl_sse_reset(&w.sse);
        if (w.count > 0 && w.seen >= w.count)
            break;
        if (stop_flag)
            break;
        if (w.got_headers && (w.status < 200 || w.status > 299)) {
            print_problem(w.status, w.errbody.p, w.errbody.n);
            rc = EX_API;
            break;
        }
        if (!w.got_headers) {
            if (!connected_once) {
                fprintf(stderr, "lcmctl: cannot reach %s: %s\n", c->url, curl_easy_strerror(cr));
                rc = EX_CONN;
                break;
            }
        } else {
            connected_once = 1;
            backoff_ms = 500;
        }
        /* the stream ended or broke: resume from the last id after a pause */
        long wait = w.sse.retry_ms >= 0 && w.sse.retry_ms > backoff_ms ? w.sse.retry_ms : backoff_ms;
        fprintf(stderr, "lcmctl: event stream %s; reconnecting in %ld ms%s%s\n",
                cr == CURLE_OK ? "ended" : curl_easy_strerror(cr), wait,
                w.sse.last_id[0] ? " from " : "", w.sse.last_id);
        struct timespec ts = { wait / 1000, (wait % 1000) * 1000000L };
        nanosleep(&ts, NULL);
        backoff_ms = backoff_ms * 2 > 10000 ? 10000 : backoff_ms * 2;
    }
    free(w.errbody.p);
    lcmctl_sse_free(&w.sse);
    return rc;
}

/* ---- main ------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    struct ctx c = { .timeout_s = 30 };
    c.url = getenv("LCM_URL");
    c.token = getenv("LCM_TOKEN");
    int rc = parse_args(&c, argc, argv);
    if (rc != EX_OK)
        return rc;
    if (!c.url || !c.url[0])
        c.url = "http://127.0.0.1:8080";
    /* "http://host:port/" and "http://host:port" are the same base */
    static char urlbuf[2048];
    snprintf(urlbuf, sizeof(urlbuf), "%s", c.url);
    size_t ul = strlen(urlbuf);
    while (ul && urlbuf[ul - 1] == '/')
        urlbuf[--ul] = 0;
    c.url = urlbuf;
    if (c.npos == 0) {
        fputs(usage_text, stderr);
        return EX_USAGE;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "lcmctl: cannot initialise libcurl\n");
        return EX_CONN;
    }
    const char *noun = c.pos[0];
    const struct noun *n = find_noun(noun);
    if (n)
        rc = cmd_resource(&c, n);
    else if (!strcmp(noun, "policies") || !strcmp(noun, "policy"))
        rc = cmd_policies(&c);
    else if (!strcmp(noun, "plugins") || !strcmp(noun, "plugin"))
        rc = cmd_plugins(&c);
    else if (!strcmp(noun, "scheduler"))
        rc = cmd_scheduler(&c);
    else if (!strcmp(noun, "availability"))
        rc = cmd_availability(&c);
    else if (!strcmp(noun, "events"))
        rc = cmd_events(&c);
    else if (!strcmp(noun, "health"))
        rc = cmd_health(&c);
    else if (!strcmp(noun, "api"))
        rc = cmd_api(&c);
    else if (!strcmp(noun, "help")) {
        fputs(usage_text, stdout);
        rc = EX_OK;
    } else
        rc = usage_err("unknown noun '%s'", noun);
    curl_global_cleanup();
    return rc;
}
