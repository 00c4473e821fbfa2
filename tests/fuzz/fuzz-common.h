/* SPDX-License-Identifier: MIT */
/*
 * fuzz-common.h: helpers shared by the libFuzzer targets of tests/fuzz/ (one header, static
 * functions, included by each target only).
 *
 * A target aborts (which libFuzzer reports as a crash and saves the input) when an oracle
 * fails; the message says which and why on stderr.
 */
#ifndef KTS_FUZZ_COMMON_H
#define KTS_FUZZ_COMMON_H

#include "../lib/vl_same.h"
#include "kts_buf.h"
#include "kts_format.h"
#include "kts_log.h"
#include "kts_testhooks.h"
#include "kts_value.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The library logs through kts_log(); the fuzzers discard it (set KTS_FUZZ_LOG=1 to see it). */
static inline void fuzz_log_sink(int level, const char *msg, void *opaque)
{
    (void)level;
    (void)opaque;
    (void)msg;
}

static inline void fuzz_quiet(void)
{
    if (getenv("KTS_FUZZ_LOG") == NULL)
        kts_log_set_sink(fuzz_log_sink, NULL);
}

__attribute__((noreturn, format(printf, 1, 2))) static inline void fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("FUZZ ORACLE FAILED: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* Doubles compare by bits, except that any NaN equals any NaN when `nan_any` (the encoder
 * writes every non-finite gauge as null, so a NaN's payload is not kept by a round trip). */
/* Deep equality of two value lists; `why` (n bytes) says the first difference. Strict (`loose`
 * false): names over all KTS_NAME_MAX bytes, the padding after the NUL too (kts_format_fast.c 2
 * promises that much between the two paths), doubles by bits. Loose (round trips): names as
 * strings (the padding is not part of the format: the collectd path leaves earlier bytes
 * there) and any NaN equals any NaN (the encoder writes null). */
static inline bool fuzz_vl_same(const struct kts_vl *a, const struct kts_vl *b, bool loose,
                                char *why, size_t n)
{
    return vl_same(a, b, loose ? VL_SAME_NAN_ANY : VL_SAME_NAME_BYTES, why, n);
}

/* The result of decoding one message: return code, format, message, value lists (deep copies,
 * owned by the result: fuzz_result_fini()). */
#define FUZZ_MAX_VLS 8
struct fuzz_result {
    int rc;
    enum kts_format fmt;
    char err[512];
    size_t n;
    struct kts_vl vls[FUZZ_MAX_VLS];
    bool owned[FUZZ_MAX_VLS];
};

static inline int fuzz_collect_cb(struct kts_vl *vl, void *opaque)
{
    struct fuzz_result *r = opaque;
    if (r->n < FUZZ_MAX_VLS && kts_vl_copy(&r->vls[r->n], vl) == 0)
        r->owned[r->n] = true;
    r->n++;
    return 0;
}

static inline void fuzz_decode(struct kts_decoder *d, const void *buf, size_t len,
                               struct fuzz_result *r)
{
    memset(r, 0, sizeof(*r));
    r->rc = kts_decoder_decode(d, buf, len, &r->fmt, fuzz_collect_cb, r, r->err, sizeof(r->err));
}

static inline void fuzz_result_fini(struct fuzz_result *r)
{
    for (size_t i = 0; i < FUZZ_MAX_VLS; i++)
        if (r->owned[i])
            kts_vl_fini(&r->vls[i]);
}

/*
 * Round trip: every value list the decoder returned, encoded as time-series JSON v1 and decoded
 * again (by `d`), must come back equal (kts_format.h 2: exact for every field; NaN stays NaN).
 * An encoder refusal (-EINVAL: e.g. no data source from a collectd message with empty arrays)
 * is allowed only where the decoder accepts what the encoder refuses, and never -ENOMEM.
 */
static inline void fuzz_round_trip(struct kts_decoder *d, const struct fuzz_result *r)
{
    for (size_t i = 0; i < r->n && i < FUZZ_MAX_VLS; i++) {
        if (!r->owned[i])
            continue;
        struct kts_buf buf;
        kts_buf_init(&buf);
        int rc = kts_format_encode(&buf, &r->vls[i], KTS_FORMAT_TS);
        if (rc == -EINVAL && r->vls[i].ds_len == 0) {
            kts_buf_fini(&buf);
            continue;
        }
        if (rc != 0)
            fuzz_fail("round trip: encoding value list %zu failed: %d", i, rc);
        struct fuzz_result back;
        fuzz_decode(d, buf.data, buf.len, &back);
        char why[512];
        if (back.rc != 0 || back.n != 1)
            fuzz_fail("round trip: re-decoding value list %zu: rc %d, %zu value lists: %s "
                      "(encoded: %.*s)",
                      i, back.rc, back.n, back.err, (int)buf.len, buf.data);
        if (!fuzz_vl_same(&r->vls[i], &back.vls[0], true, why, sizeof(why)))
            fuzz_fail("round trip: value list %zu differs after encode+decode: %s (encoded: "
                      "%.*s)",
                      i, why, (int)buf.len, buf.data);
        fuzz_result_fini(&back);
        kts_buf_fini(&buf);
    }
}

#endif
