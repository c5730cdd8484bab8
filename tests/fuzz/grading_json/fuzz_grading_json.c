/* Fuzz target over the grading plugin's response parsers (grading_parse.c): token, Session
 * (created / result) and error bodies. Accepted results must be consistent (tokens printable,
 * TTL in range, section counts bounded and backed by arrays, flags 0/1, passed -1/0/1).
 * libFuzzer entry point; replay.c runs the corpus as a ctest. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grading_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *b = (const char *)data;
    char why[128], text[160], id[GRD_MAX_ID + 1];
    char *tok = malloc(GRD_MAX_TOKEN + 1);
    long ttl = 0;
    if (tok && grd_parse_token(b, size, tok, GRD_MAX_TOKEN + 1, &ttl, why, sizeof why) == 0) {
        if (!tok[0] || ttl < 1 || ttl > GRD_MAX_TTL_S)
            abort();
        for (const char *p = tok; *p; p++)
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
                abort();
    }
    free(tok);
    grd_parse_error_text(b, size, text, sizeof text);
    if (strlen(text) >= sizeof text)
        abort();
    int has;
    if (grd_parse_session_part(b, size, "Exam CCIE TEST v1 DES 1.1", id, sizeof id, &has, why,
                               sizeof why) == 0 && (!id[0] || (has & ~1)))
        abort();
    struct grd_result_buf r;
    for (int pass = 0; pass < 2; pass++) {
        if (grd_parse_result(b, size, pass ? "p" : NULL, &r, why, sizeof why) == 0) {
            if (!r.r.status || (r.r.completed & ~1) || (r.r.failed & ~1) ||
                (r.r.completed && r.r.failed) || r.r.passed < -1 || r.r.passed > 1 ||
                r.r.nsections > GRD_MAX_SECTIONS || (r.r.nsections && !r.r.sections))
                abort();
            for (size_t i = 0; i < r.r.nsections; i++)
                if (!r.r.sections[i].id || strlen(r.r.sections[i].id) >= 64)
                    abort();
            if (r.r.submitted_at && strlen(r.r.submitted_at) >= 64)
                abort();
        }
        grd_result_free(&r);
    }
    return 0;
}
