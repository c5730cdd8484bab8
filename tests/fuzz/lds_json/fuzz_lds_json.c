/* Fuzz target over the lds plugin's response parsers and URL helpers (lds_parse.c): every
 * parser sees every input, and whatever they accept must hold their promises (ids URL-safe,
 * strings NUL-terminated within bounds, launch URLs http(s) without controls). libFuzzer entry
 * point; replay.c runs the corpus as a ctest. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lds_parse.h"
#include "plugkit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_url(const char *u)
{
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
        abort();
    for (; *u; u++)
        if ((unsigned char)*u <= 0x20 || (unsigned char)*u >= 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *b = (const char *)data;
    char id[LDS_MAX_ID + 1], why[128], text[160], url[LDS_MAX_URL + 1], out[LDS_MAX_URL + 1];
    if (lds_parse_created(b, size, id, sizeof id, why, sizeof why) == 0 && !lds_id_ok(id))
        abort();
    struct lds_session_info si;
    if (lds_parse_session(b, size, &si, why, sizeof why) == 0) {
        if (!lds_id_ok(si.id) || strlen(si.state) > LDS_MAX_STATE ||
            strlen(si.part_state) > LDS_MAX_STATE || (si.is_finalized & ~1))
            abort();
    }
    if (lds_parse_launch_url(b, size, url, sizeof url, why, sizeof why) == 0) {
        if (strlen(url) > LDS_MAX_URL)
            abort();
        if (lds_launch_rewrite(url, "https://learn.example.test/base", out, sizeof out, why,
                               sizeof why) == 0)
            check_url(out);
        if (lds_launch_rewrite(url, NULL, out, sizeof out, why, sizeof why) == 0)
            check_url(out);
    }
    /* The session report, as session_find reads it: a match is a usable, open session. */
    static const struct lds_find_query queries[] = {
        { "sess-1", "Exam CCIE TEST v1 DES 1.1", 0 },
        { "sess-1", "Exam CCIE TEST v1 DES 1.1", INT64_C(1767261600000) },
        { "", "", LDS_MAX_TIME_MS },
    };
    for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
        int found = -1;
        int rc = lds_parse_report_find(b, size, &queries[i], &si, &found, why, sizeof why);
        if ((rc != 0 && rc != LCM_E_PROTO) || (rc != 0 && found != 0) || (found & ~1))
            abort();
        if (found && (!lds_id_ok(si.id) || strlen(si.state) > LDS_MAX_STATE ||
                      strlen(si.part_state) > LDS_MAX_STATE || si.is_finalized))
            abort();
    }
    size_t n;
    lds_parse_devices(b, size, &n, why, sizeof why);
    lds_parse_error_text(b, size, text, sizeof text);
    if (strlen(text) >= sizeof text)
        abort();
    for (const char *p = text; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == '"')
            abort();

    /* The raw bytes as a launch URL / FQN (NUL-terminated copy). */
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    if (lds_launch_rewrite(s, "http://f.example", out, sizeof out, why, sizeof why) == 0)
        check_url(out);
    /* As a date-time: whatever parses is within years 0000..9999 (± a day of offset). */
    int64_t us;
    if (lcm_pk_rfc3339_us(s, 0, &us) == 0 &&
        (us < INT64_C(-62167219200000000) - INT64_C(86400000000) ||
         us > INT64_C(253402300800000000) + INT64_C(86400000000)))
        abort();
    char enc[3 * 512 + 1];
    if (strlen(s) < 512 && lcm_pk_percent_encode(s, enc, sizeof enc) >= 0) {
        for (const char *p = enc; *p; p++)
            if (!(*p == '%' || *p == '-' || *p == '.' || *p == '_' || *p == '~' ||
                  (*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= 'a' && *p <= 'z')))
                abort();
    }
    free(s);
    return 0;
}
