/* Pure helpers of the grading plugin: parsers for the OAuth2 token answer and the grading
 * engine's Session / ProblemDetails answers, the CreateSessionCommand body and form/path
 * encoding. No I/O and no host services; fuzzed by tests/fuzz/grading_json. */
#ifndef LCM_GRADING_PARSE_H
#define LCM_GRADING_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include <lcm/spi.h>

#define GRD_MAX_TOKEN 16384
#define GRD_MAX_ID 256
#define GRD_MAX_SECTIONS 256
#define GRD_DEFAULT_TTL_S 60       /* when the token answer has no expires_in */
#define GRD_MAX_TTL_S 86400

/* Every parser returns 0 or LCM_E_PROTO (why filled), or LCM_E_NOMEM. */

/* OAuth2 token answer: access_token (printable, ≤ GRD_MAX_TOKEN), token_type Bearer when
 * present, expires_in in seconds (number or numeric string; absent → GRD_DEFAULT_TTL_S,
 * clamped to 1..GRD_MAX_TTL_S). tok gets a copy (cap ≥ GRD_MAX_TOKEN + 1 is enough). */
int grd_parse_token(const char *body, size_t len, char *tok, size_t cap, long *expires_in_s,
                    char *why, size_t whylen);

/* An OAuth2 error ({"error","error_description"}) or ProblemDetails ({title, detail,
 * errors}) or any body: printable text, always NUL-terminated in out. */
void grd_parse_error_text(const char *body, size_t len, char *out, size_t cap);

/* A Session answer: its id (copied to id) and whether it has a part with part_id (NULL =
 * don't care, *has_part 0). */
int grd_parse_session_part(const char *body, size_t len, const char *part_id, char *id,
                           size_t cap, int *has_part, char *why, size_t whylen);

/* The result of get_result, with the storage its strings and sections point into. */
struct grd_result_buf {
    struct lcm_grd_result r;
    char status[64];
    char submitted[64];
    char reason[160];                      /* statusReason of a faulted part ("" none) */
    char part_id[GRD_MAX_ID + 1];
    struct lcm_grd_section *secs;          /* malloc'd */
    char (*sec_ids)[64];                   /* malloc'd */
};
/* A Session answer → the status and score report of the part part_id (NULL = the first
 * part). completed = the part is Graded with a score report; failed = Faulted/Failed. cut
 * score and passed come from the report's variables (cutScore, passed), passed = -1 when
 * neither says. */
int grd_parse_result(const char *body, size_t len, const char *part_id,
                     struct grd_result_buf *out, char *why, size_t whylen);
void grd_result_free(struct grd_result_buf *b);


/* The CreateSessionCommand body for a (passwords included: the caller wipes and frees it);
 * default_collector stands in for devices without one. NULL on OOM. */
char *grd_build_create_body(const struct lcm_grd_create_args *a, const char *default_collector);

#endif
