/* Parsers for CML 2.9 API responses (pure: no I/O, no host services). Every parser accepts any
 * byte string, never trusts a shape, bounds what it keeps, and fills SPI result structs whose
 * strings and arrays live in a caller-owned arena. Fuzzed by tests/fuzz/cml_json. */
#ifndef LCM_CML_PARSE_H
#define LCM_CML_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include <lcm/spi.h>

/* Bounds on what a response may make the plugin keep. */
#define CML_MAX_NODES 4096
#define CML_MAX_TAGS 256
#define CML_MAX_LABS 100000
#define CML_MAX_EVENTS 100000
#define CML_MAX_TOKEN 8192
#define CML_MAX_NODE_DEFS 4096
#define CML_MAX_NODE_DEF_ID 250   /* NodeDefinitionResponse.id maxLength */

/* A bag of allocations freed together: results handed to done() live here. */
struct cml_arena {
    struct cml_chunk *head;
    size_t bytes;
};
void *cml_arena_alloc(struct cml_arena *a, size_t n);          /* zeroed; NULL on OOM */
char *cml_arena_strndup(struct cml_arena *a, const char *s, size_t n);
char *cml_arena_strdup(struct cml_arena *a, const char *s);   /* NULL s gives NULL */
void cml_arena_free(struct cml_arena *a);                      /* leaves it empty, reusable */

/* Every parser returns 0, LCM_E_PROTO (why says what did not fit) or LCM_E_NOMEM. */

/* POST /authenticate: a JSON string (the JWT). */
int cml_parse_token(struct cml_arena *a, const char *body, size_t len, const char **token,
                    char *why, size_t whylen);
/* An error body ({code, description} or anything): the description, else the body trimmed to
 * printable text, always NUL-terminated in out. */
void cml_parse_error_text(const char *body, size_t len, char *out, size_t cap);
/* GET /system_information. */
int cml_parse_system_info(struct cml_arena *a, const char *body, size_t len,
                          struct lcm_rt_system_info *out, char *why, size_t whylen);
/* GET /system_health: valid = top-level valid and controller.valid (0 when either is false). */
int cml_parse_health(const char *body, size_t len, int *valid, int *licensed, char *why,
                     size_t whylen);
/* GET /licensing. product_license is normalised (personal, enterprise, evaluation, education,
 * or the lower-cased name CML gave); node_limit from the node-count feature, else 20 for a
 * personal licence, else 0 (unknown). */
int cml_parse_licence(struct cml_arena *a, const char *body, size_t len,
                      struct lcm_rt_licence *out, char *why, size_t whylen);
/* POST /import. */
int cml_parse_imported(struct cml_arena *a, const char *body, size_t len,
                       struct lcm_rt_imported *out, char *why, size_t whylen);
/* GET /labs/{id}. */
int cml_parse_lab(struct cml_arena *a, const char *body, size_t len, struct lcm_rt_lab *out,
                  char *why, size_t whylen);
/* A bare JSON boolean (check_if_converged). */
int cml_parse_bool(const char *body, size_t len, int *out, char *why, size_t whylen);
/* GET /labs/{id}/nodes?data=true. When configs is non-NULL, (*configs)[i] is node i's
 * configuration text (the main file when CML gives several) or NULL. */
int cml_parse_nodes(struct cml_arena *a, const char *body, size_t len, struct lcm_rt_nodes *out,
                    const char ***configs, char *why, size_t whylen);
/* GET /labs: an array of ids. */
int cml_parse_lab_ids(struct cml_arena *a, const char *body, size_t len,
                      struct lcm_rt_lab_ids *out, char *why, size_t whylen);
/* GET /node_definitions: an array of NodeDefinitionResponse objects; out->ids are their `id`s,
 * each once, in CML's order. Entries without a usable id (a string of 1-250 printable
 * characters) are skipped, so one odd custom definition does not hide the others; a non-empty
 * list without any usable id is LCM_E_PROTO. */
int cml_parse_node_definitions(struct cml_arena *a, const char *body, size_t len,
                               struct lcm_rt_node_definitions *out, char *why, size_t whylen);
/* GET /system_stats: the "all" totals, compute count, running nodes summed over computes. */
int cml_parse_stats(const char *body, size_t len, struct lcm_rt_system_stats *out, char *why,
                    size_t whylen);
/* GET /telemetry/events: events at or after since_ms (all when 0), oldest first as CML lists
 * them; last_activity_ms is the newest event of a user-driven category (cml_user_category). */
int cml_parse_events(struct cml_arena *a, const char *body, size_t len, int64_t since_ms,
                     struct lcm_rt_activity *out, char *why, size_t whylen);
/* The configuration in the answer to PUT …/extract_configuration: a JSON string, or an
 * object with a "configuration" member; NULL otherwise (the caller then reads the node). */
const char *cml_parse_extracted(struct cml_arena *a, const char *body, size_t len);

/* 1 when a telemetry category stands for something a user did (idle detection). */
int cml_user_category(const char *category);
/* RFC 3339 timestamp ("2025-01-02T03:04:05.678Z"; an offset is required) to Unix epoch ms
 * (lcm_pk_rfc3339_us); 0 or -1 when it is not one. */
int cml_rfc3339_ms(const char *s, int64_t *out);
/* CML lab/node state → LCM lab-record status (DOMAIN.md): DEFINED_ON_CORE → defined,
 * STARTED|BOOTED → booted, STOPPED → stopped, QUEUED → queued; anything else → NULL. */
const char *cml_lab_status(const char *cml_state);

#endif
