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
#define LDS_MAX_FQN 256         /* a form_qualified_name we send */
#define LDS_MAX_AUTH_ID 256     /* an external id (auth_id) session_find looks for */
/* The latest created_after_ms session_find takes: 9999-12-31T23:59:59.999Z. */
#define LDS_MAX_TIME_MS INT64_C(253402300799999)

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
/* What session_find looks for in a session report. */
struct lds_find_query {
    const char *auth_id;         /* the external id session_create sent as auth_id */
    const char *fqn;             /* form_qualified_name of one of its parts */
    int64_t created_after_ms;    /* 0: any time */
};
/* GET /reporting/lab_session answer (LabSessionsReport: {"lab_sessions": [ReportingLabSession]}):
 * the most recently created session whose auth_id is q->auth_id, that is not finalized
 * (session_finalized, or is_finalized, true), one of whose session_parts has q->fqn (when LDS
 * lists parts at all) and whose created is at or after q->created_after_ms (when it parses).
 * Newest by created; one without a parseable created ranks below every dated one; ties go to
 * the later entry. *found is 0 when none matches. Entries of other auth_ids are skipped
 * whatever their shape; an entry with ours must be well formed (usable id, state and flags of
 * the right types) or the whole answer is LCM_E_PROTO, as is an answer without a lab_sessions
 * array. out->state is session_state ("" when absent), out->part_state as for
 * lds_parse_session. */
int lds_parse_report_find(const char *body, size_t len, const struct lds_find_query *q,
                          struct lds_session_info *out, int *found, char *why, size_t whylen);
/* GET /lablet_launch_url answer: {"url": "…"}. */
int lds_parse_launch_url(const char *body, size_t len, char *url, size_t cap, char *why,
                         size_t whylen);
/* PUT …/devices answer: a JSON array of devices; *n gets its length. */
int lds_parse_devices(const char *body, size_t len, size_t *n, char *why, size_t whylen);
/* An error body ({"message": …, "errors": {field: text}} or anything): printable text, always
 * NUL-terminated in out (empty when there is nothing useful). */
void lds_parse_error_text(const char *body, size_t len, char *out, size_t cap);


/* The launch URL the learner opens: a relative URL ("/lablet/…") is put under frontend; an
 * absolute one gets frontend's scheme://host[:port][/base] in place of its own origin, so
 * links always point at the region's frontend whatever host LDS put in them. frontend NULL
 * or "" leaves an absolute URL as it is (a relative one is then an error). The result must be
 * an http(s) URL without controls or spaces. Returns 0 or -1 with why filled. */
int lds_launch_rewrite(const char *url, const char *frontend, char *out, size_t cap, char *why,
                       size_t whylen);

/* RFC 3339 UTC ("2026-01-01T10:00:00Z") of Unix ms (the second it falls in). */
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
