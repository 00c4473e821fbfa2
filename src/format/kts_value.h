/* SPDX-License-Identifier: MIT */
/*
 * kts_value: a collectd value list without collectd.
 *
 * The library (format, Kafka, filters) works on struct kts_vl; only plugins/ convert between
 * it and collectd's value_list_t/data_set_t. Numbering and sizes follow collectd 5.12 so the
 * conversion is a copy, never a translation table.
 */
#ifndef KTS_VALUE_H
#define KTS_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* collectd's DATA_MAX_NAME_LEN: names are at most 127 bytes plus NUL. */
#define KTS_NAME_MAX 128

/*
 * The meta-data key read_kafka_ts puts (as boolean true) on every value list it dispatches.
 * write_kafka_ts skips value lists that carry it, so an aggregator that also runs
 * write_kafka_ts cannot feed its own output back into Kafka.
 */
#define KTS_META_MARKER "kafka_ts:dispatched"

/* Same numbers as collectd's DS_TYPE_*. */
enum kts_ds_type {
    KTS_DS_COUNTER = 0,
    KTS_DS_GAUGE = 1,
    KTS_DS_DERIVE = 2,
    KTS_DS_ABSOLUTE = 3,
};

/* collectd's cdtime_t: 2^-30 seconds since the epoch. */
typedef uint64_t kts_time_t;
#define KTS_TIME_FROM_S(s) ((kts_time_t)(s) << 30)
#define KTS_TIME_TO_DOUBLE(t) ((double)(t) / 1073741824.0)
#define KTS_TIME_FROM_DOUBLE(d) ((kts_time_t)(1073741824.0 * (d) + 0.5))

union kts_value {
    uint64_t counter;
    double gauge;
    int64_t derive;
    uint64_t absolute;
};

/* One data source of a value list: its name and type (from types.db) and its value. */
struct kts_ds {
    char name[KTS_NAME_MAX];
    enum kts_ds_type type;
    union kts_value value;
};

/* Same numbers as collectd's MD_TYPE_*. */
enum kts_meta_type {
    KTS_META_STRING = 1,
    KTS_META_SIGNED_INT = 2,
    KTS_META_UNSIGNED_INT = 3,
    KTS_META_DOUBLE = 4,
    KTS_META_BOOLEAN = 5,
};

struct kts_meta {
    char *key;
    enum kts_meta_type type;
    union {
        char *string;
        int64_t sint;
        uint64_t uint;
        double dbl;
        bool boolean;
    } value;
};

/*
 * A value list. The five names are NUL-terminated and at most KTS_NAME_MAX-1 bytes.
 * Ownership of `ds` and `meta` (and the strings inside meta) depends on who filled it:
 * the decoder allocates them and kts_vl_fini() frees them; an encoder caller may point them at
 * its own storage and must then not call kts_vl_fini().
 */
struct kts_vl {
    char host[KTS_NAME_MAX];
    char plugin[KTS_NAME_MAX];
    char plugin_instance[KTS_NAME_MAX];
    char type[KTS_NAME_MAX];
    char type_instance[KTS_NAME_MAX];
    kts_time_t time;
    kts_time_t interval;
    size_t ds_len;
    struct kts_ds *ds;
    size_t meta_len;
    struct kts_meta *meta;
};

/*
 * What an Output*Suffix option appends to a name (read_kafka_ts's OutputHostSuffix and
 * OutputPluginInstanceSuffix, a pipeline's five Output*Suffix options): the suffix as given, or,
 * when the name it is appended to is empty, the suffix without its leading separators ('-', '_',
 * '.'). A suffix must not start the name with its separator: "-smooth" on the empty plugin
 * instance of "memory" gives the plugin instance "smooth" (identifier memory-smooth), not
 * "-smooth" (memory--smooth). NULL suffix: NULL.
 */
static inline const char *kts_name_suffix(const char *name, const char *suffix)
{
    if (suffix != NULL && name[0] == '\0')
        while (*suffix == '-' || *suffix == '_' || *suffix == '.')
            suffix++;
    return suffix;
}

#endif
