/* SPDX-License-Identifier: MIT */
/*
 * kts_conf: configuration trees in collectd's syntax, and option tables that validate them.
 *
 * Guarantees:
 *  1. struct kts_conf mirrors collectd's oconfig_item_t (key, values, children), so the plugins
 *     convert collectd's tree with one deep copy and kts-filter parses the same block syntax
 *     from a file with kts_conf_parse(): one pipeline syntax everywhere.
 *  2. The parser accepts collectd.conf's grammar: `Key value ...` lines, `<Key value ...>` …
 *     `</Key>` blocks, double-quoted strings with \" and \\ escapes, numbers, true/false
 *     (booleans), `#` comments, `\` line continuation. Every error names the file and line.
 *  3. kts_opt_apply() reports EVERY problem in a block (unknown key, wrong value count or type,
 *     value out of range, not one of the allowed words, missing required option) through
 *     kts_log(), each naming the option, the value given and what is allowed, and only then
 *     fails. Defaults come from the same table, so the table is also the reference docs.
 *  4. Option names match case-insensitively, as in collectd.
 */
#ifndef KTS_CONF_H
#define KTS_CONF_H

#include <stdbool.h>
#include <stddef.h>

enum kts_conf_type {
    KTS_CONF_STRING = 0,
    KTS_CONF_NUMBER = 1,
    KTS_CONF_BOOLEAN = 2,
};

struct kts_conf_value {
    enum kts_conf_type type;
    union {
        char *string;
        double number;
        bool boolean;
    } v;
};

struct kts_conf {
    char *key;
    struct kts_conf_value *values;
    int values_num;
    struct kts_conf *children; /* array of children_num items */
    int children_num;
    size_t values_cap;   /* room in `values` (kts_array.h); 0 for a borrowed array */
    size_t children_cap; /* room in `children` (kts_array.h); 0 for a borrowed array */
    const char *file;    /* where it came from, for messages; may be NULL */
    int line;            /* 0 when unknown (collectd's tree has no line numbers) */
};

/*
 * Parse `text` (len bytes, need not be NUL-terminated) into a new root item whose children are
 * the top-level lines and blocks. `filename` is only used in messages and is copied.
 * On success *out is the caller's, freed with kts_conf_free(). Returns 0 or -EINVAL with
 * "FILE:LINE: what" in errbuf.
 */
int kts_conf_parse(const char *text, size_t len, const char *filename, struct kts_conf **out,
                   char *errbuf, size_t errbuf_size);
/* Read and parse a file; as kts_conf_parse(), -errno when the file cannot be read. */
int kts_conf_parse_file(const char *path, struct kts_conf **out, char *errbuf, size_t errbuf_size);
/* Free a tree made by kts_conf_parse*() or kts_conf_new(); NULL is fine. */
void kts_conf_free(struct kts_conf *root);
/* Free what an item owns (key, values, children) but not the item itself (for array items). */
void kts_conf_fini(struct kts_conf *item);

/* Building trees by hand (the plugins' oconfig conversion, tests). All copy their arguments.
 * kts_conf_add_child() returns the new child, owned by `parent`, or NULL on ENOMEM. */
struct kts_conf *kts_conf_new(const char *key);
struct kts_conf *kts_conf_add_child(struct kts_conf *parent, const char *key);
int kts_conf_add_string(struct kts_conf *item, const char *s);
int kts_conf_add_number(struct kts_conf *item, double d);
int kts_conf_add_boolean(struct kts_conf *item, bool b);

/* "Key \"v1\" 2 true" for messages; writes at most size bytes; returns buf. */
const char *kts_conf_describe_values(const struct kts_conf *item, char *buf, size_t size);

/* ------------------------------------------------------------------ option tables */

enum kts_opt_type {
    KTS_OPT_STRING,   /* char * (strdup'ed; previous value freed) */
    KTS_OPT_STRINGS,  /* struct kts_strv: repeatable option, each value appended */
    KTS_OPT_INT,      /* int64_t, whole numbers only, [min, max] */
    KTS_OPT_DOUBLE,   /* double, [min, max], finite */
    KTS_OPT_BOOL,     /* bool: true/false (unquoted or quoted) */
    KTS_OPT_ENUM,     /* int: index into `words`, matched case-insensitively */
    KTS_OPT_DURATION, /* double seconds; a number of seconds, [min, max] */
    KTS_OPT_CUSTOM,   /* handled by the caller's callback (blocks, pairs such as Property) */
};

struct kts_strv {
    char **v;
    size_t n;
    size_t cap; /* room in `v` (kts_array.h); 0 for a borrowed array */
};
void kts_strv_free(struct kts_strv *sv);
int kts_strv_push(struct kts_strv *sv, const char *s);

struct kts_opt;
/* For KTS_OPT_CUSTOM: validate/apply `item` to `obj`; log problems with kts_log and return a
 * negative errno when the item is invalid. */
typedef int (*kts_opt_custom_fn)(const struct kts_opt *opt, void *obj, const struct kts_conf *item,
                                 const char *where);

#define KTS_OPT_REQUIRED 0x1u

struct kts_opt {
    const char *name;
    enum kts_opt_type type;
    size_t offset;            /* offsetof(your struct, field) */
    const char *def;          /* default, as it would be written in the config; NULL = none */
    double min, max;          /* INT/DOUBLE/DURATION; min == max == 0 means unbounded */
    const char *const *words; /* ENUM: NULL-terminated allowed words */
    kts_opt_custom_fn custom; /* CUSTOM */
    unsigned flags;
    const char *help; /* one line, used by the configuration reference */
};
/* clang-format 14 and 19 lay a braced macro out differently: by hand */
/* clang-format off */
#define KTS_OPT_END {NULL, 0, 0, NULL, 0, 0, NULL, NULL, 0, NULL}
/* clang-format on */

/* Set every option of `table` that has a default (and zero the rest). 0 or -ENOMEM/-EINVAL. */
int kts_opt_defaults(const struct kts_opt *table, void *obj);

/*
 * Apply each child of `block` to `obj` through `table` (defaults must already be set).
 * `where` prefixes every message (e.g. "write_kafka_ts plugin"). Returns 0 when everything was
 * valid, else -EINVAL after logging every problem found.
 */
int kts_opt_apply(const struct kts_opt *table, void *obj, const struct kts_conf *block,
                  const char *where);

/* One option table and the object its offsets point into. */
struct kts_opt_set {
    const struct kts_opt *table;
    void *obj;
};
#define KTS_OPT_SETS_MAX 8

/*
 * kts_opt_apply() over several tables at once, for a block whose options belong to several
 * owners (read_kafka_ts: the consumer's, the plugin's own, the pipelines'): each child goes to
 * the first of the `nsets` (at most KTS_OPT_SETS_MAX) tables that names it, into that table's
 * object; a key no table names is an unknown option, reported with the names of all tables.
 * Guarantee 3 holds over the whole block. kts_opt_apply(t, o, …) is the one-table case.
 */
int kts_opt_apply_sets(const struct kts_opt_set *sets, size_t nsets, const struct kts_conf *block,
                       const char *where);

/* A KTS_OPT_CUSTOM callback that accepts the option and does nothing: for a key that belongs in
 * the block but that its owner validates elsewhere (read_kafka_ts's Pipeline and PipelineMode,
 * checked by kts_plugin_pipelines_config()). */
int kts_opt_accept(const struct kts_opt *opt, void *obj, const struct kts_conf *item,
                   const char *where);

/* Free what the table's STRING/STRINGS fields own in obj. */
void kts_opt_free(const struct kts_opt *table, void *obj);

#endif
