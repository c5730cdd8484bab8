/* lcmd configuration: one table of every key (name, type, default, range, description),
 * read from an optional `key = value` file and overridden by LCM_<KEY> environment variables.
 * The same table generates docs/config.md, so the documentation cannot drift from the code. */
#ifndef LCM_CONFIG_H
#define LCM_CONFIG_H

#include <stddef.h>
#include <stdio.h>

enum lcm_cfg_type {
    LCM_CFG_STRING,
    LCM_CFG_INT,       /* integer within [min, max] */
    LCM_CFG_BOOL,      /* true/false/yes/no/on/off/1/0 */
    LCM_CFG_ENUM,      /* one of the '|'-separated words in choices */
    LCM_CFG_ADDR,      /* host:port */
    LCM_CFG_LIST,      /* repeatable key; env value is ';'-separated */
};

struct lcm_cfg_key {
    const char *name;          /* file key; env var is LCM_ + upper(name) */
    enum lcm_cfg_type type;
    const char *def;           /* default as text; NULL = unset */
    long long min, max;        /* LCM_CFG_INT */
    const char *choices;       /* LCM_CFG_ENUM */
    int secret;                /* never printed or logged */
    const char *section;
    const char *desc;
};

struct lcm_config;

extern const struct lcm_cfg_key lcm_cfg_keys[];
extern const size_t lcm_cfg_nkeys;

/* Loads defaults, then the file (NULL = none), then the environment (envp NULL-terminated,
 * NULL = none). Returns NULL with err filled on any invalid key or value. */
struct lcm_config *lcm_config_load(const char *file, char *const *envp, char *err, size_t errlen);
void lcm_config_free(struct lcm_config *c);

/* Accessors abort on a name that is not in the table (a programming error). */
const char *lcm_config_str(const struct lcm_config *c, const char *name);   /* NULL if unset */
long long lcm_config_int(const struct lcm_config *c, const char *name);
int lcm_config_bool(const struct lcm_config *c, const char *name);
/* LCM_CFG_LIST values. */
size_t lcm_config_list(const struct lcm_config *c, const char *name, const char *const **items);
/* Where the value came from: "default", "file", "env" or "set". */
const char *lcm_config_origin(const struct lcm_config *c, const char *name);
/* Overrides a value after load (validated); used for computed defaults. 0 or -1 with err. */
int lcm_config_set(struct lcm_config *c, const char *name, const char *value, char *err,
                   size_t errlen);

/* Writes the effective configuration (secrets masked) as `key = value` lines. */
void lcm_config_dump(const struct lcm_config *c, FILE *out);
/* Writes the Markdown reference of every key (docs/config.md is this output). */
void lcm_config_write_docs(FILE *out);

#endif
