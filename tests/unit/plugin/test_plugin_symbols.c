/* Checks what every built plugin .so exports and links by reading its ELF dynamic symbol
 * table and DT_NEEDED entries: only the descriptor may be exported (plus the ODR indicator
 * AddressSanitizer adds for it), and no plugin may link libcurl, hiredis or libevent. Two
 * deliberately bad fixtures prove the check can fail. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct elf_report {
    char exported[16][128];   /* defined global/weak dynamic symbols */
    int nexported;
    char needed[32][128];
    int nneeded;
};

/* Reads the .dynsym and .dynamic sections of a 64-bit ELF file. Returns 0 or -1. */
static int elf_inspect(const char *path, struct elf_report *out)
{
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof(Elf64_Ehdr)) {
        close(fd);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    const unsigned char *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return -1;
    int rc = -1;
    const Elf64_Ehdr *eh = (const void *)m;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_shoff == 0 || eh->e_shoff + (size_t)eh->e_shnum * sizeof(Elf64_Shdr) > size)
        goto out;
    const Elf64_Shdr *sh = (const void *)(m + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_DYNSYM && sh[i].sh_type != SHT_DYNAMIC)
            continue;
        if (sh[i].sh_link >= eh->e_shnum)
            goto out;
        const Elf64_Shdr *strsh = &sh[sh[i].sh_link];
        if (sh[i].sh_offset + sh[i].sh_size > size || strsh->sh_offset + strsh->sh_size > size)
            goto out;
        const char *strtab = (const char *)m + strsh->sh_offset;
        if (sh[i].sh_type == SHT_DYNSYM) {
            const Elf64_Sym *sym = (const void *)(m + sh[i].sh_offset);
            size_t n = sh[i].sh_size / sizeof(Elf64_Sym);
            for (size_t k = 0; k < n; k++) {
                int bind = ELF64_ST_BIND(sym[k].st_info);
                if (sym[k].st_shndx == SHN_UNDEF || sym[k].st_name == 0 ||
                    (bind != STB_GLOBAL && bind != STB_WEAK) ||
                    sym[k].st_name >= strsh->sh_size)
                    continue;
                if (out->nexported < 16)
                    snprintf(out->exported[out->nexported], 128, "%s",
                             strtab + sym[k].st_name);
                out->nexported++;
            }
        } else {
            const Elf64_Dyn *d = (const void *)(m + sh[i].sh_offset);
            size_t n = sh[i].sh_size / sizeof(Elf64_Dyn);
            for (size_t k = 0; k < n && d[k].d_tag != DT_NULL; k++) {
                if (d[k].d_tag != DT_NEEDED || d[k].d_un.d_val >= strsh->sh_size)
                    continue;
                if (out->nneeded < 32)
                    snprintf(out->needed[out->nneeded], 128, "%s", strtab + d[k].d_un.d_val);
                out->nneeded++;
            }
        }
    }
    rc = 0;
out:
    munmap((void *)m, size);
    return rc;
}

/* Returns NULL when the plugin is clean, else why not (static buffer). */
static const char *plugin_problem(const char *path)
{
    static char why[512];
    struct elf_report r;
    if (elf_inspect(path, &r) != 0) {
        snprintf(why, sizeof why, "%s: not a readable 64-bit ELF file", path);
        return why;
    }
    int has_desc = 0;
    for (int i = 0; i < r.nexported && i < 16; i++) {
        const char *s = r.exported[i];
        if (strcmp(s, "lcm_plugin_descriptor") == 0) {
            has_desc = 1;
            continue;
        }
        /* ASan's one-definition-rule indicator for the descriptor (sanitizer builds). */
        if (strcmp(s, "__odr_asan.lcm_plugin_descriptor") == 0)
            continue;
        snprintf(why, sizeof why, "%s exports %s", path, s);
        return why;
    }
    if (r.nexported > 16) {
        snprintf(why, sizeof why, "%s exports %d symbols", path, r.nexported);
        return why;
    }
    if (!has_desc) {
        snprintf(why, sizeof why, "%s does not export lcm_plugin_descriptor", path);
        return why;
    }
    static const char *const banned[] = { "libcurl", "libhiredis", "libevent" };
    for (int i = 0; i < r.nneeded && i < 32; i++)
        for (int b = 0; b < 3; b++)
            if (strncmp(r.needed[i], banned[b], strlen(banned[b])) == 0) {
                snprintf(why, sizeof why, "%s links %s", path, r.needed[i]);
                return why;
            }
    return NULL;
}

static void test_built_plugins_are_clean(void **state)
{
    const char *dirs[] = { PLUGIN_DIR, FX_DIR };
    int checked = 0, providers = 0;
    for (int d = 0; d < 2; d++) {
        DIR *dh = opendir(dirs[d]);
        assert_non_null(dh);
        struct dirent *de;
        while ((de = readdir(dh))) {
            size_t l = strlen(de->d_name);
            if (l < 4 || strcmp(de->d_name + l - 3, ".so") != 0)
                continue;
            /* In the fixture dir only the SDK example and the well-behaved fixture count;
             * the others are broken on purpose. */
            if (d == 1 && strcmp(de->d_name, "lcm-example.so") != 0 &&
                strcmp(de->d_name, "fx-good.so") != 0)
                continue;
            char path[1024];
            snprintf(path, sizeof path, "%s/%s", dirs[d], de->d_name);
            const char *why = plugin_problem(path);
            if (why)
                fail_msg("%s", why);
            checked++;
            providers += d == 0;
        }
        closedir(dh);
    }
    assert_true(providers >= 4);     /* aws, cml, lds, grading */
    assert_true(checked >= providers + 2);
}

static void test_checker_catches_bad_plugins(void **state)
{
    const char *why = plugin_problem(FX_DIR "/fx-leaky.so");
    assert_non_null(why);
    assert_non_null(strstr(why, "exports fx_leaked_helper"));
    why = plugin_problem(FX_DIR "/fx-linked.so");
    assert_non_null(why);
    assert_non_null(strstr(why, "links libevent"));
    why = plugin_problem(FX_DIR "/fx-no_symbol.so");
    assert_non_null(why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_built_plugins_are_clean),
        cmocka_unit_test(test_checker_catches_bad_plugins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
