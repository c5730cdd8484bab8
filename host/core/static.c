/* Static files for the dashboard: path normalised and confined to the directory, a small
 * content-type table, index.html for directories, no caching so edits show at once. */
#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "httpd.h"

static const char *content_type(const char *path)
{
    static const struct { const char *ext, *type; } t[] = {
        { ".html", "text/html; charset=utf-8" }, { ".js", "text/javascript; charset=utf-8" },
        { ".mjs", "text/javascript; charset=utf-8" }, { ".css", "text/css; charset=utf-8" },
        { ".json", "application/json" }, { ".svg", "image/svg+xml" }, { ".png", "image/png" },
        { ".ico", "image/x-icon" }, { ".txt", "text/plain; charset=utf-8" }, { ".woff2", "font/woff2" },
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof(t) / sizeof(t[0]); i++)
        if (strcmp(dot, t[i].ext) == 0)
            return t[i].type;
    return "application/octet-stream";
}

void lcm_static_serve(struct lcm_req *r, void *ud)
{
    const char *dir = ud;
    const char *path = lcm_req_path(r);
    if (!path || path[0] != '/' || strstr(path, "..") || strstr(path, "//") || strlen(path) > 512 ||
        strncmp(path, "/api/", 5) == 0) {
        lcm_reply_problem(r, 404, "not-found", "Not Found", "no such route or file", NULL);
        return;
    }
    char full[PATH_MAX];
    snprintf(full, sizeof(full), "%s%s", dir, path);
    struct stat st;
    if (stat(full, &st) == 0 && S_ISDIR(st.st_mode)) {
        size_t l = strlen(full);
        snprintf(full + l, sizeof(full) - l, "%sindex.html", full[l - 1] == '/' ? "" : "/");
    }
    int fd = open(full, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (16 << 20)) {
        if (fd >= 0)
            close(fd);
        lcm_reply_problem(r, 404, "not-found", "Not Found", "no such route or file", NULL);
        return;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    ssize_t n = buf ? read(fd, buf, (size_t)st.st_size) : -1;
    close(fd);
    if (n < 0) {
        free(buf);
        lcm_reply_problem(r, 500, "internal", NULL, "cannot read the file", NULL);
        return;
    }
    lcm_reply_header(r, "Cache-Control", "no-cache");
    lcm_reply_header(r, "X-Content-Type-Options", "nosniff");
    lcm_reply_header(r, "Content-Security-Policy",
                     "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'");
    lcm_reply(r, 200, content_type(full), buf, (size_t)n);
    free(buf);
}
