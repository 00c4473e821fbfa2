/* SPDX-License-Identifier: MIT */
/*
 * kts_format: the time-series JSON format (docs/FORMAT.md) and collectd's own JSON.
 *
 * Encoder (hot path of write_kafka_ts):
 *  1. kts_format_encode() appends exactly one message to a kts_buf and allocates nothing
 *     except when the buffer has to grow; on failure the buffer is left as it was.
 *  2. KTS_FORMAT_TS output is version 1 of docs/FORMAT.md: fixed field order, time and
 *     interval as seconds with exactly 10 fractional digits (exact cdtime round trip),
 *     counter/absolute as unsigned and derive as signed 64-bit integers, gauges as the
 *     shortest decimal that parses back to the same double, non-finite gauges as null.
 *  3. KTS_FORMAT_COLLECTD output is byte-identical to collectd 5.12's format_json (as stock
 *     write_kafka "Format JSON" emits one value list, StoreRates false) whenever all strings are
 *     printable ASCII and meta doubles are finite; the documented deviations are: control
 *     characters are escaped and UTF-8 is kept (collectd writes '?'), meta keys are escaped,
 *     non-finite meta doubles are null (collectd writes "nan"), empty meta is omitted.
 *  4. Strings are always valid JSON and valid UTF-8: '"', '\\' and control characters are
 *     escaped, valid UTF-8 passes through unchanged, each maximal invalid UTF-8 subsequence
 *     becomes U+FFFD. Output never depends on the locale.
 *
 * Decoder (read_kafka_ts):
 *  5. The format is detected by content: the first non-blank byte '{' is KTS_FORMAT_TS,
 *     '[' is KTS_FORMAT_COLLECTD (an array of any number of collectd value-list objects).
 *  6. All or nothing: the callback sees the value lists of a message only after the whole
 *     message decoded without error, in message order.
 *  7. Errors return a negative errno (-EINVAL malformed or invalid, -ERANGE a limit or
 *     range, -EPROTONOSUPPORT an unsupported "v", -ENOMEM) and a one-line message in errbuf
 *     naming the field (e.g. "ds[1].value") and the byte offset. Malformed input never
 *     crashes and never makes the decoder allocate more than a small multiple of its size.
 *  8. Numbers are parsed from their text: integers exactly (out of range is an error, never a
 *     wrap), gauges with correct rounding (strtod in the C locale), time and interval exactly
 *     from the decimal text (any number of digits, exponents allowed) to the nearest cdtime.
 *  9. Strings must be valid UTF-8 after unescaping (\uXXXX surrogate pairs included), must not
 *     contain NUL, and names must fit KTS_NAME_MAX-1 bytes: too long is an error, never a
 *     truncation.
 */
#ifndef KTS_FORMAT_H
#define KTS_FORMAT_H

#include <stddef.h>

#include "kts_buf.h"
#include "kts_value.h"

enum kts_format {
    KTS_FORMAT_UNKNOWN = 0,  /* decoder: not detected (empty or not JSON) */
    KTS_FORMAT_TS = 1,       /* our time-series JSON, docs/FORMAT.md */
    KTS_FORMAT_COLLECTD = 2, /* collectd's format_json (write_kafka / write_http "JSON") */
};

enum kts_key_mode {
    KTS_KEY_NONE = 0,   /* no key: empty string */
    KTS_KEY_SERIES = 1, /* host/plugin[-plugin_instance]/type[-type_instance] */
    KTS_KEY_HOST = 2,   /* host */
};

/* The version written in "v" and the only one the decoder accepts. */
#define KTS_FORMAT_VERSION 1

/* Decoder limits (docs/FORMAT.md "Limits"); exceeding one is an error (-ERANGE). */
#define KTS_FORMAT_MAX_DS 64            /* data sources per value list */
#define KTS_FORMAT_MAX_META 64          /* meta entries per value list */
#define KTS_FORMAT_MAX_META_STRING 4095 /* bytes of a meta string value */
#define KTS_FORMAT_MAX_DEPTH 32         /* nesting of arrays and objects */
#define KTS_FORMAT_MAX_VLS 10000        /* value lists per message (collectd format) */
#define KTS_FORMAT_MAX_NUMBER 400       /* characters of one number */

/* "ts" / "collectd" / "unknown". Returns a static string. */
const char *kts_format_name(enum kts_format fmt);

/* "gauge", "derive", "counter", "absolute" (collectd's names); NULL for other values. */
const char *kts_ds_type_name(enum kts_ds_type type);

/*
 * Append one message for `vl` to `out` (see 1-4). `vl` is only read; `out` is caller-owned.
 * Returns 0; -EINVAL for an unknown DS or meta type, no data source, or more than
 * KTS_FORMAT_MAX_DS of them; -ENOMEM. KTS_FORMAT_COLLECTD writes "[{...}]".
 */
int kts_format_encode(struct kts_buf *out, const struct kts_vl *vl, enum kts_format fmt);

/*
 * Write the Kafka message key of `vl` into `dst` (caller-owned, `dst_size` bytes, NUL-terminated
 * and truncated like snprintf when too small; dst may be NULL when dst_size is 0). Names are copied
 * as they are (no escaping). Returns the length the full key has (like snprintf), so `ret >=
 * dst_size` means truncated. The key of KTS_KEY_NONE is "" (length 0).
 */
size_t kts_series_message_key(char *dst, size_t dst_size, const struct kts_vl *vl,
                              enum kts_key_mode mode);

/* ------------------------------------------------------------------ decoder */

/* Decoder flags. */
/* collectd format only: treat every value as a gauge (for producers running StoreRates true,
 * whose counters and derives are written as rates but still labelled with their DS type). */
#define KTS_DECODE_RATES_AS_GAUGE 0x1u
/* 0x2u is KTS_DECODE_NO_FAST, a test knob (kts_testhooks.h). */

/*
 * Called once per decoded value list. `vl` (including ds, meta and meta strings) is owned by
 * the decoder and valid only during the call; the callback may modify it in place but must not
 * free anything; use kts_vl_copy() to keep it. Return 0 to go on; any other value stops the
 * decoding and is returned by the decode function (a negative errno is expected).
 */
typedef int (*kts_decode_cb)(struct kts_vl *vl, void *opaque);

/* A reusable decoder: keeps its scratch memory between messages. Not thread-safe; use one per
 * thread. Returns NULL when out of memory. */
struct kts_decoder;
struct kts_decoder *kts_decoder_create(unsigned flags);
void kts_decoder_destroy(struct kts_decoder *d); /* NULL is fine */

/*
 * Decode the message `buf`/`len` (only read; need not be NUL-terminated) and call `cb` for each
 * value list (see 5-9). `fmt`, if not NULL, receives the detected format, also on error
 * (KTS_FORMAT_UNKNOWN if it could not be detected). `errbuf` (caller-owned, may be NULL)
 * receives the error message. Returns 0, a negative errno (7), or the callback's value.
 */
int kts_decoder_decode(struct kts_decoder *d, const void *buf, size_t len, enum kts_format *fmt,
                       kts_decode_cb cb, void *opaque, char *errbuf, size_t errbuf_size);

/* One-shot convenience: a temporary decoder with `flags`. */
int kts_format_decode(const void *buf, size_t len, unsigned flags, enum kts_format *fmt,
                      kts_decode_cb cb, void *opaque, char *errbuf, size_t errbuf_size);

/* Free an array of `n` value lists made by kts_vl_copy() (kts_vl_fini() each), and the array.
 * Tests decode into such arrays with kts_format_decode_array() (kts_testhooks.h). */
void kts_vl_array_free(struct kts_vl *vls, size_t n);

/*
 * Deep-copy `src` into caller-owned `dst`: dst->ds, dst->meta and the meta strings are newly
 * allocated and owned by `dst` (free with kts_vl_fini()). Returns 0 or -ENOMEM (then `dst`
 * owns nothing and needs no kts_vl_fini()).
 */
int kts_vl_copy(struct kts_vl *dst, const struct kts_vl *src);

/* Free what kts_vl_copy() allocated in `vl` and set ds/meta to NULL, lengths to 0. Only for
 * value lists whose ds/meta are heap-owned this way; never for a decoder callback's `vl`. */
void kts_vl_fini(struct kts_vl *vl);

#endif
