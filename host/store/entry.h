/* Defensive decoding of Redis stream entries (XRANGE/XREAD replies) into store events.
 * Entries may have been written by hand with redis-cli: anything malformed is reported with
 * the stream key and entry id and skipped, never trusted. */
#ifndef LCM_STORE_ENTRY_H
#define LCM_STORE_ENTRY_H

#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>

struct cJSON;

/* One decoded entry. Strings point into the reply (valid while it is); data is owned. */
struct lcm_store_entry {
    const char *entry_id;     /* stream entry id, "1700000000000-0" */
    const char *kind, *id;    /* feed entries only, NULL otherwise */
    const char *type, *at, *by;
    uint64_t version;
    struct cJSON *data;       /* a JSON object */
};

/* Decodes one entry reply [id, [field, value, …]]. feed = 1 requires kind and id (lcm:feed).
 * Returns 0, or -1 with err filled (out is then empty). */
int lcm_store_entry_decode(const redisReply *entry, int feed, struct lcm_store_entry *out,
                           char *err, size_t errlen);
void lcm_store_entry_clear(struct lcm_store_entry *e);

/* Walks an array of entries (an XRANGE reply or one stream of an XREAD reply), calling fn for
 * every well-formed one; malformed ones are logged (key, entry id, reason) and counted.
 * last_id receives the id of the last entry with a usable id, even a malformed one, so that
 * a follower moves past it. Returns the number skipped, or -1 when entries is no array. */
typedef void (*lcm_store_entry_fn)(const struct lcm_store_entry *e, void *ud);
long lcm_store_entries_each(const redisReply *entries, int feed, const char *key,
                            lcm_store_entry_fn fn, void *ud, char *last_id, size_t last_cap);

/* Finds the entries of stream `key` in an XREAD reply ([[key, [entries]] …]); NULL when the
 * reply has none or is malformed. */
const redisReply *lcm_store_xread_entries(const redisReply *reply, const char *key);

/* True when s is a valid kind or id: [A-Za-z0-9._-]{1,128} (the Lua side checks the same). */
int lcm_store_valid_name(const char *s);

#endif
