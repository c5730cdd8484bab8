/* Replays fuzz inputs through LLVMFuzzerTestOneInput without libFuzzer, so every corpus runs
 * as an ordinary ctest with the project's compiler and sanitizers. Arguments are files or
 * directories of files (replayed in name order). Fails when an input cannot be read or when
 * nothing was replayed. Shared by every target under tests/fuzz/. */
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return -1;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return 0;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays every non-hidden file of dir in name order; returns the number that failed. */
static int run_dir(const char *dir, int *files)
{
    DIR *d = opendir(dir);
    if (!d) {
        perror(dir);
        return 1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int bad = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, cap * sizeof(*nn));
            if (!nn) {
                bad++;
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) {
            bad++;
            break;
        }
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof(*names), cmp);
    for (size_t k = 0; k < n; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        bad += run_file(path) != 0;
        (*files)++;
        free(names[k]);
    }
    free(names);
    return bad;
}

int main(int argc, char **argv)
{
    int files = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            return 1;
        }
        if (S_ISDIR(st.st_mode)) {
            bad += run_dir(argv[i], &files);
        } else {
            bad += run_file(argv[i]) != 0;
            files++;
        }
    }
#ifdef LCM_REPLAY_DEGENERATE
    /* the degenerate inputs a corpus directory cannot hold well */
    LLVMFuzzerTestOneInput((const uint8_t *)"", 0);
    LLVMFuzzerTestOneInput(NULL, 0);
#endif
    printf("replayed %d inputs\n", files);
    return bad || files == 0 ? 1 : 0;
}
