/* SPDX-License-Identifier: MIT */
/*
 * kts_format_decode_impl.h: the decoder's state and the helpers its parts share. Private to
 * the decoder, not part of the library's API. The decoder is in four files, by layer and by
 * format:
 *
 *   kts_format_decode.c        the driver: yajl's callbacks, the frame stack, dispatch to the
 *                              format of the current frame, the public kts_decoder_* API
 *   kts_format_decode_value.c  errors, the pools, and scalars: names, integers, doubles,
 *                              times, data source values, meta entries (both formats)
 *   kts_format_decode_ts.c     the time-series JSON v1: its frames, scalars and closing checks
 *   kts_format_decode_cd.c     collectd's JSON: its frames, scalars and closing checks
 *
 * Conventions: a helper returning int returns 1 when fine and 0 after dec_fail() recorded the
 * first error (which also makes yajl stop), unless it says otherwise.
 */
#ifndef KTS_FORMAT_DECODE_IMPL_H
#define KTS_FORMAT_DECODE_IMPL_H

#include "kts_array.h"
#include "kts_format.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <yajl/yajl_parse.h>

/* ------------------------------------------------------------------ state */

enum frame_kind {
    FR_TS_ROOT,       /* {"v":1,...} */
    FR_TS_DS_ARRAY,   /* "ds":[...] */
    FR_TS_DS,         /* {"name":..,"type":..,"value":..} */
    FR_TS_META,       /* "meta":{...} */
    FR_TS_META_ENTRY, /* {"type":..,"value":..} */
    FR_CD_ROOT,       /* [ {value list}, ... ] */
    FR_CD_VL,         /* {"values":[..],...} */
    FR_CD_VALUES,     /* "values":[...] */
    FR_CD_DSTYPES,    /* "dstypes":[...] */
    FR_CD_DSNAMES,    /* "dsnames":[...] */
    FR_CD_META,       /* "meta":{...} */
    FR_SKIP,          /* the value of a key we do not know: ignored, whatever it holds */
};

enum field {
    F_UNKNOWN = 0,
    F_V,
    F_HOST,
    F_PLUGIN,
    F_PLUGIN_INSTANCE,
    F_TYPE,
    F_TYPE_INSTANCE,
    F_TIME,
    F_INTERVAL,
    F_DS,
    F_META,
    F_VALUES,
    F_DSTYPES,
    F_DSNAMES,
    F_NAME,
    F_VALUE,
    F_META_KEY, /* any key of a meta object */
};

struct frame {
    enum frame_kind kind;
    bool is_map;
    size_t count;     /* arrays: elements started; objects: keys seen */
    enum field field; /* objects: field of the current key */
    uint32_t seen;    /* objects: bit per known field, to reject duplicates */
    size_t key_len;   /* objects: length of the current key (may exceed the copy) */
    char key[KTS_NAME_MAX];
};

/* A value list being decoded: ds and meta are ranges of the pools. */
struct pvl {
    struct kts_vl vl; /* names, time, interval, ds_len, meta_len; ds/meta set at the end */
    size_t ds_start;
    size_t meta_start;
    uint32_t seen; /* fields present */
};

struct pmeta {
    size_t key_off; /* in the string pool */
    enum kts_meta_type type;
    size_t str_off; /* KTS_META_STRING: in the string pool */
    union {
        int64_t sint;
        uint64_t uint;
        double dbl;
        bool boolean;
    } v;
};

enum scalar { SC_NULL, SC_BOOL, SC_NUMBER, SC_STRING };

/* What the current data source object or meta entry has seen so far. */
struct tmp_obj {
    bool has_name, has_type, has_value;
    enum scalar value_kind;
    bool value_bool;
    int type; /* enum kts_ds_type or enum kts_meta_type */
    char name[KTS_NAME_MAX];
    size_t str_len;                           /* meta string value */
    char str[KTS_FORMAT_MAX_META_STRING + 1]; /* meta string value */
    size_t num_len;
    char num[KTS_FORMAT_MAX_NUMBER + 1];
};

struct cd_value {
    bool is_null;
    size_t len;
    char text[KTS_FORMAT_MAX_NUMBER + 1];
};

struct kts_decoder {
    unsigned flags;
    struct kts_fast *fast; /* kts_format_fast.c, created on first use */
    yajl_handle h;
    enum kts_format fmt;
    const char *input; /* the message being decoded */
    size_t input_len;

    /* error */
    int err;
    char msg[512];
    char subpath[64]; /* appended to the path (collectd format: "values[2]") */

    /* parse position */
    int depth; /* frames in use */
    bool root_done;
    struct frame frames[KTS_FORMAT_MAX_DEPTH];

    /* pools */
    struct pvl *vls;
    size_t n_vls, cap_vls;
    struct kts_ds *ds;
    size_t n_ds, cap_ds;
    struct pmeta *pmeta;
    size_t n_meta, cap_meta;
    struct kts_meta *meta; /* built from pmeta at the end */
    size_t cap_meta_out;
    char *strs;
    size_t n_strs, cap_strs;

    /* current objects */
    struct tmp_obj tmp;
    size_t cd_n_values, cd_n_types, cd_n_names;
    struct cd_value cd_values[KTS_FORMAT_MAX_DS];
    enum kts_ds_type cd_types[KTS_FORMAT_MAX_DS];
    char cd_names[KTS_FORMAT_MAX_DS][KTS_NAME_MAX];
};

/* The bit of a field in the `seen` masks. */
#define BIT(f) (UINT32_C(1) << (f))

/* ------------------------------------------------------------------ kts_format_decode_value.c */

/* Record the first error (code is a negative errno), with the path of the current position
 * and the byte offset, and return 0 to make yajl stop. */
int dec_fail(struct kts_decoder *d, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "null", "a boolean", "a number", "a string": for error messages. */
const char *dec_scalar_name(enum scalar k);

/* Copy `s`/`len` and a NUL into the string pool; *off receives its offset. */
int dec_str_add(struct kts_decoder *d, const char *s, size_t len, size_t *off);
/* The value list being decoded (the last one begun). */
struct pvl *dec_cur_vl(struct kts_decoder *d);
/* Begin a value list (at most KTS_FORMAT_MAX_VLS in a message). */
int dec_vl_begin(struct kts_decoder *d);

/* A name: at most KTS_NAME_MAX-1 bytes, no NUL, copied into dst. */
int dec_take_name(struct kts_decoder *d, char *dst, const char *s, size_t len, bool nonempty);
/* A JSON integer's text: 1 if an integer that fits 64 bits of magnitude, 0 if not an integer,
 * -1 if too big (records no error). */
int dec_parse_integer(const char *s, size_t len, bool *neg, uint64_t *mag);
int dec_to_u64(struct kts_decoder *d, const char *s, size_t len, const char *what, uint64_t *out);
int dec_to_i64(struct kts_decoder *d, const char *s, size_t len, const char *what, int64_t *out);
/* A double from a JSON number (correctly rounded); out of the double range is an error.
 * len <= KTS_FORMAT_MAX_NUMBER (checked when the number arrived). */
int dec_to_double(struct kts_decoder *d, const char *s, size_t len, const char *what, double *out);
/* A time or interval in decimal seconds to the nearest cdtime_t, exactly. */
int dec_to_cdtime(struct kts_decoder *d, const char *s, size_t len, const char *what,
                  kts_time_t *out);
/* "gauge" … "absolute", "string" … "boolean": 0, or -1 if unknown (records no error). */
int dec_ds_type_from(const char *s, size_t len, enum kts_ds_type *t);
int dec_meta_type_from(const char *s, size_t len, enum kts_meta_type *t);
/* A data source value from its text (or null) and ds->type. */
int dec_ds_value(struct kts_decoder *d, struct kts_ds *ds, bool is_null, const char *s, size_t len);
/* Check a meta key of the current value list (length, NUL, duplicate) before its value. */
int dec_meta_begin(struct kts_decoder *d, const char *key, size_t klen);
/* Append a meta entry to the current value list (dec_meta_begin() checked the key). */
int dec_meta_add(struct kts_decoder *d, const char *key, size_t klen, struct pmeta *m,
                 const char *str, size_t slen);
/* Every field of `need` is in `seen`, or an error naming the first missing one. */
int dec_check_required(struct kts_decoder *d, uint32_t seen, uint32_t need);

/* ------------------------------------------------------------------ kts_format_decode.c */

/* Open a frame of this kind. */
int dec_push(struct kts_decoder *d, enum frame_kind kind, bool is_map);
/* What the field of a frame of kind `parent` must hold, for "expected X, got Y". */
const char *dec_expect_of(enum frame_kind parent, enum field field);
/* A scalar for a field common to both formats' value lists: names, time, interval; unknown
 * fields are ignored. */
int dec_vl_scalar(struct kts_decoder *d, struct frame *f, enum scalar k, const char *s, size_t len);

/* ------------------------------------------------------------------ the two formats */

/* An object (is_map) or array opens inside frame f, of the format's kinds (FR_TS_*, FR_CD_*). */
int dec_ts_open(struct kts_decoder *d, struct frame *f, bool is_map);
int dec_cd_open(struct kts_decoder *d, struct frame *f, bool is_map);
/* A scalar inside frame f (b: the value of a boolean). */
int dec_ts_scalar(struct kts_decoder *d, struct frame *f, enum scalar k, const char *s, size_t len,
                  bool b);
int dec_cd_scalar(struct kts_decoder *d, struct frame *f, enum scalar k, const char *s, size_t len,
                  bool b);
/* Frame f (already popped) closed; parent is the frame now on top (NULL at the root). */
int dec_ts_close(struct kts_decoder *d, const struct frame *f, const struct frame *parent);
int dec_cd_close(struct kts_decoder *d, const struct frame *f);

#endif
