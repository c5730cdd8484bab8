/* sim_yaml: a tolerant reader for the YAML subset that CML topology exports use (block mappings
 * and sequences, "- key: v" items, literal/folded block scalars, quoted and plain scalars, flow
 * [..] / {..} collections, comments). It returns a cJSON tree so JSON and YAML imports share code.
 * Anchors, aliases, tags and multi-document streams are not interpreted (tags/anchors are skipped). */
#ifndef LCM_SIM_YAML_H
#define LCM_SIM_YAML_H

#include <stddef.h>

#include <cjson/cJSON.h>

/* Parses text[0..len) and returns a new cJSON tree (caller frees with cJSON_Delete), or NULL with a
 * one-line reason (including the 1-based line number) in err. Nesting is limited to 64 levels. */
cJSON *sim_yaml_parse(const char *text, size_t len, char *err, size_t errlen);

#endif
