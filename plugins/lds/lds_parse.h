/* Pure helpers of the lds plugin: parsers for LDS Reservations API v3 answers, request-body
 * builders, URL encoding and launch-URL rewriting. No I/O and no host services, so they are
 * unit-tested and fuzzed on their own (tests/fuzz/lds_json). */
#ifndef LCM_LDS_PARSE_H
#define LCM_LDS_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include <lcm/spi.h>

#define LDS_MAX_ID 128          /* an LDS session id we accept (a UUID is 36) */
#define LDS_MAX_STATE 64
#define LDS_MAX_URL 4096

/* A parsed LDSSession: strings NUL-terminated in fixed buffers (no allocation to free). */
struct lds_session_info {
    char id[LDS_MAX_ID + 1];
    char state[LDS_MAX_STATE + 1];
    char part_state[LDS_MAX_STATE + 1];    /* "" when the session has no such part */
    int has_part_state;
    int is_finalized;
};

/* 1 for an id safe to put in a URL path: [A-Za-z0-9._-]{1,128}, not "." or "..". */
int lds_id_ok(const char *id);

/* Every parser returns 0 or LCM_E_PROTO with why filled. */

/* POST /lab_session answer (LDSSessionCreated): session_id, else the last segment of
 * location. */
int lds_parse_created(const char *body, size_t len, char *id, size_t cap, char *why,
                      size_t whylen);
/* GET /lab_session/{id} answer (LDSSession). part_state is the state of the current part
 * (current_session_part, 1-based; the first part when absent). */
int lds_parse_session(const char *body, size_t len, struct lds_session_info *out, char *why,
                      size_t whylen);
/* GET /lablet_launch_url answer: {"url": "…"}. */
int lds_parse_launch_url(const char *body, size_t len, char *url, size_t cap, char *why,
                         size_t whylen);
/* PUT …/devices answer: a JSON array of devices; *n gets its length. */
int lds_parse_devices(const char *body, size_t len, size_t *n, char *why, size_t whylen);
/* An error body ({"message": …, "errors": {field: text}} or anything): printable text, always
 * NUL-terminated in out (empty when there is nothing useful). */
void lds_parse_error_text(const char *body, size_t len, char *out, size_t cap);

/* Percent-encodes s for one URL path segment (everything but unreserved characters, so a
 * space becomes %20 and '/' %2F). Returns the length, or -1 when it does not fit. */
int lds_path_escape(const char *s, char *out, size_t cap);

/* The launch URL the learner opens: a relative URL ("/lablet/…") is put under frontend; an
 * absolute one gets frontend's scheme://host[:port][/base] in place of its own origin, so
 * links always point at the region's frontend whatever host LDS put in them. frontend NULL
 * or "" leaves an absolute URL as it is (a relative one is then an error). The result must be
 * an http(s) URL without controls or spaces. Returns 0 or -1 with why filled. */
int lds_launch_rewrite(const char *url, const char *frontend, char *out, size_t cap, char *why,
                       size_t whylen);

/* RFC 3339 UTC ("2026-01-01T10:00:00Z") of Unix ms. */
void lds_rfc3339(int64_t ms, char *out, size_t cap);

/* Settings of the creation body that come from configuration. */
struct lds_create_defaults {
    const char *origin, *auth_id_type, *rack_group, *rack_number, *location;
    int timezone_offset;
};
/* The LDSSession creation body for a; now_ms is used when the timeslot start is unknown.
 * Returns a malloc'd string, or NULL (out of memory). */
char *lds_build_create_body(const struct lcm_lds_create_args *a,
                            const struct lds_create_defaults *d, int64_t now_ms);
/* The devices array (passwords included: the caller wipes and frees it). NULL on OOM. */
char *lds_build_devices_body(const struct lcm_lds_device *v, size_t n);

#endif
