/* A small aggregate kind for store tests and the store benchmark ("note"): its state is a flat
 * map of string fields plus a status, so folding, hash fields and indexes are easy to predict
 * while exercising every member of struct lcm_kind. */
#ifndef LCM_TEST_STORE_TESTKIND_H
#define LCM_TEST_STORE_TESTKIND_H

#include "domain/kind.h"

/* Events: "note.set" {field: "value", …} sets fields (a "status" field moves the note between
 * lcm:idx:note:status:<status> sets; a numeric "score" puts it in the sorted set
 * lcm:idx:note:score; a "ref" field is a unique index lcm:idx:note:ref:<ref>); "note.unset" {"fields": [names]} removes fields. Anything else is
 * refused by apply. */
extern const struct lcm_kind lcm_test_note_kind;
extern const struct lcm_kind *const lcm_test_kinds[];

#endif
