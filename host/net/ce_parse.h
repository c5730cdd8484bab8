/* CloudEvents 1.0 decoding for POST /api/v1/cloudevents: structured (one JSON object), batch
 * (a JSON array of them) and binary (ce-* headers + body) content modes, with every required
 * attribute validated. Pure (no I/O) so that the fuzz target drives exactly this code. */
#ifndef LCM_NET_CE_PARSE_H
#define LCM_NET_CE_PARSE_H

#include <stddef.h>

struct cJSON;

enum lcm_ce_mode { LCM_CE_STRUCTURED = 1, LCM_CE_BATCH, LCM_CE_BINARY };

/* Limits; longer attributes are refused (400), so nothing unbounded reaches Redis or logs. */
#define LCM_CE_MAX_ID 256
#define LCM_CE_MAX_SOURCE 512
#define LCM_CE_MAX_TYPE 256
#define LCM_CE_MAX_SUBJECT 512
#define LCM_CE_MAX_EXT_NAME 20
#define LCM_CE_MAX_ATTRS 64

/* One decoded event: the structured JSON form (owned), and borrowed views of its attributes. */
struct lcm_ce {
    struct cJSON *obj;          /* owned: specversion, id, source, type, …, data / data_base64 */
    const char *id, *source, *type, *subject, *time;   /* point into obj; subject/time may be NULL */
};

struct lcm_ce_list {
    struct lcm_ce *v;
    size_t n;
};

/* Why a request was refused: field names the attribute ("type", "[2].id", "ce-source"). */
struct lcm_ce_err {
    int status;                 /* 400, 413 or 415 */
    char field[48];
    char detail[200];
};

/* The mode a request is in, from its Content-Type and whether a ce-specversion header is
 * present. Returns a mode, or -1 (415) when the content type fits none. */
int lcm_ce_mode(const char *content_type, int has_ce_specversion);

/* Structured mode: body is one JSON object. Batch mode: a JSON array of objects (at most
 * max_batch; an empty array is valid and yields n = 0). Returns 0 or -1 with err filled; out
 * is empty on failure. */
int lcm_ce_parse_structured(const char *body, size_t len, struct lcm_ce_list *out,
                            struct lcm_ce_err *err);
int lcm_ce_parse_batch(const char *body, size_t len, size_t max_batch, struct lcm_ce_list *out,
                       struct lcm_ce_err *err);

/* Binary mode: attributes from ce-* headers through get (returns the header value or NULL),
 * data from the body: parsed JSON when content_type is JSON (application/json or +json),
 * otherwise kept as data_base64. Only the attributes of the spec plus the names in
 * extensions (NULL-terminated, may be NULL) are read, since headers cannot be enumerated. */
typedef const char *(*lcm_ce_header_fn)(void *ud, const char *name);
int lcm_ce_parse_binary(lcm_ce_header_fn get, void *ud, const char *const *extensions,
                        const char *content_type, const char *body, size_t len,
                        struct lcm_ce_list *out, struct lcm_ce_err *err);

/* Validates one structured event object (borrowed) and fills the views of ev (ev->obj is
 * set to obj, not copied). prefix is put before field names in err ("[3]."). */
int lcm_ce_validate(struct cJSON *obj, struct lcm_ce *ev, const char *prefix,
                    struct lcm_ce_err *err);

void lcm_ce_list_clear(struct lcm_ce_list *l);

/* The key a delivery is de-duplicated by: hex SHA-256 of source, a NUL and id. */
void lcm_ce_dedupe_hash(const char *source, const char *id, char hex[65]);

#endif
