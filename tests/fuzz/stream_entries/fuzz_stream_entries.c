/* Fuzz target for the store's stream-entry decoding: the input is raw RESP (what Redis would
 * send for XRANGE or XREAD), parsed by hiredis's reader, then walked as both shapes and as a
 * feed and an aggregate stream, folding into the "note" test kind. Must never crash. */
#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/log.h"
#include "store/entry.h"
#include "testkind.h"

static void fold(const struct lcm_store_entry *e, void *ud)
{
    void **st = ud;
    struct lcm_event ev = { e->type, e->version, e->at, e->by, e->data };
    char err[128];
    if (!*st)
        *st = lcm_test_note_kind.create(e->id ? e->id : "x");
    if (*st)
        (void)lcm_test_note_kind.apply(*st, &ev, err, sizeof(err));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lcm_log_set_level(LCM_LOG_ERROR);
    /* hiredis 0.14's reader allocates a multi-bulk's element array up front and has no
     * limit: a "*1000000000" header would test malloc, not us. Redis never sends that. */
    for (size_t i = 0; i + 1 < size; i++) {
        size_t d = 0;
        if (data[i] != '*')
            continue;
        while (i + 1 + d < size && data[i + 1 + d] >= '0' && data[i + 1 + d] <= '9')
            d++;
        if (d > 5)
            return 0;
    }
    redisReader *rd = redisReaderCreate();
    if (!rd)
        return 0;
    if (redisReaderFeed(rd, (const char *)data, size) == REDIS_OK) {
        void *reply = NULL;
        for (int n = 0; n < 8 && redisReaderGetReply(rd, &reply) == REDIS_OK && reply; n++) {
            const redisReply *r = reply;
            char last[48] = "";
            void *st = NULL;
            lcm_store_entries_each(r, 0, "lcm:{note:x}:events", fold, &st, last, sizeof(last));
            lcm_store_entries_each(r, 1, "lcm:feed", fold, &st, last, sizeof(last));
            const redisReply *e = lcm_store_xread_entries(r, "lcm:feed");
            if (e)
                lcm_store_entries_each(e, 1, "lcm:feed", fold, &st, last, sizeof(last));
            if (st)
                lcm_test_note_kind.destroy(st);
            freeReplyObject(reply);
            reply = NULL;
        }
    }
    redisReaderFree(rd);
    return 0;
}
