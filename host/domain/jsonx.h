/* JSON helpers shared by the aggregates (internal to lcm_domain): tolerant getters that read
 * both API bodies and hash fields read back from Redis (where every value is a string), and
 * the generic state-JSON <-> hash-fields mapping that makes fields() and from_fields()
 * inverse of each other. */
#ifndef LCM_DOMAIN_JSONX_H
#define LCM_DOMAIN_JSONX_H

#include <stddef.h>
#include <stdint.h>

#include "kind.h"

struct cJSON;

/* NULL for NULL or "" (the domain stores absent strings as NULL). */
char *lcm_dup(const char *s);
/* Replaces *dst with a copy of s; returns 0 or -1 on allocation failure (dst unchanged). */
int lcm_set_str(char **dst, const char *s);

/* Getters return 1 when present and well typed, 0 when absent or null, -1 when present with
 * the wrong type. Numbers and booleans are also accepted as strings ("42", "true"), which is
 * how they come back from a Redis hash. */
int lcm_jx_str(const struct cJSON *o, const char *k, const char **v);
int lcm_jx_i64(const struct cJSON *o, const char *k, int64_t *v);
int lcm_jx_num(const struct cJSON *o, const char *k, double *v);
int lcm_jx_bool(const struct cJSON *o, const char *k, int *v);
int lcm_jx_time(const struct cJSON *o, const char *k, int64_t *v);   /* RFC 3339 string */
/* Object or array, or a string holding one (parsed into *tmp, caller deletes *tmp). */
int lcm_jx_nested(const struct cJSON *o, const char *k, const struct cJSON **v,
                  struct cJSON **tmp);

/* Setters write JSON null for absent values (NULL string, time 0). Return 0 or -1. */
int lcm_jx_put_str(struct cJSON *o, const char *k, const char *v);
int lcm_jx_put_time(struct cJSON *o, const char *k, int64_t t);
int lcm_jx_put_i64(struct cJSON *o, const char *k, int64_t v);
int lcm_jx_put_bool(struct cJSON *o, const char *k, int v);

/* 1 when s is non-empty, at most maxlen bytes, and has no control characters (and no
 * spaces unless allow_space). */
int lcm_text_ok(const char *s, size_t maxlen, int allow_space);

/* Deep copies for the kinds' clone(), made in place on a struct copied bit for bit: each
 * replaces the borrowed pointer with an owned copy, or with NULL (and a count of 0) when out
 * of memory, so the struct can always be freed afterwards. Return 0 or -1. */
int lcm_clone_str(char **p);
/* lcm_clone_str on each of n pointers, all of them even after a failure. */
int lcm_clone_strs(char **const *strs, size_t n);
int lcm_clone_strv(char ***v, uint16_t *n);

/* String vectors (owned char *[]). */
void lcm_strv_free(char **v, size_t n);
/* Returns 0, or -1 when arr is not an array of acceptable strings (*bad_index set). */
int lcm_strv_from_json(const struct cJSON *arr, size_t maxn, size_t maxlen, char ***out,
                       uint16_t *n, int *bad_index);
struct cJSON *lcm_strv_to_json(char *const *v, size_t n);

/* Emits every member of obj as a hash field: strings as-is, everything else as compact
 * JSON, nulls skipped. rename (NULL or NULL-terminated pairs {json_key, field}) renames
 * members whose name would clash with the store's own fields (e.g. "version"). */
void lcm_jx_emit_fields(const struct cJSON *obj, const char *const *rename,
                        lcm_field_emit_fn emit, void *ud);
/* Compact JSON text of item, identical to cJSON_PrintUnformatted's but without its
 * per-number sprintf/sscanf for integers (free() the result). NULL on failure. */
char *lcm_jx_print(const struct cJSON *item);
/* The inverse: an object of string members built from hash fields (renames undone). The
 * store's "version" field is returned in *version (0 when absent). NULL on failure. */
struct cJSON *lcm_jx_from_fields(const char *const *fields, const char *const *values,
                                 size_t n, const char *const *rename, uint64_t *version);
/* Validating getters for API bodies: absent is fine unless required; present with a wrong
 * type or out of range is LCM_DERR_INVALID with err->field = field. get_text/get_int return
 * 0 or the error; get_flag/get_strv return 1 when present, 0 when absent, or the error. */
struct lcm_derr;
int lcm_get_text(const struct cJSON *o, const char *k, const char *field, int required,
                 size_t maxlen, int allow_space, char **dst, struct lcm_derr *err);
int lcm_get_int(const struct cJSON *o, const char *k, const char *field, int required,
                int64_t lo, int64_t hi, int32_t *dst, struct lcm_derr *err);
int lcm_get_flag(const struct cJSON *o, const char *k, const char *field, uint8_t *dst,
                 struct lcm_derr *err);
int lcm_get_strv(const struct cJSON *o, const char *k, const char *field, char ***v,
                 uint16_t *n, struct lcm_derr *err);
/* Copies err into buf. */
void lcm_errf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
