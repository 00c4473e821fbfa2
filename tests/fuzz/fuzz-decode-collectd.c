/* SPDX-License-Identifier: MIT */
/*
 * fuzz-decode-collectd: libFuzzer target for the decoder of collectd's own JSON (an array of
 * value-list objects, as stock write_kafka / write_http "JSON" write it; docs/FORMAT.md).
 *
 * Oracles, each an abort() on failure (kts_format.h guarantees):
 *  1. With and without KTS_DECODE_RATES_AS_GAUGE: a failed decode returns one of the
 *     documented codes with a non-empty message and delivers no value list (6, 7).
 *  2. The fast path never changes a result (differential against KTS_DECODE_NO_FAST, as in
 *     fuzz-decode-ts: the content decides the format, so mutations reach both).
 *  3. Round trip: every decoded value list encodes as time-series JSON v1 and decodes back
 *     to itself (2), so nothing the collectd decoder accepts is lost on the way to Kafka.
 * Plus ASan/UBSan/LeakSanitizer. Build and run: tests/fuzz/build, tests/fuzz/run.
 */
#include "fuzz-common.h"

#include <stdint.h>

static struct kts_decoder *dec, *dec_rates, *dec_yajl;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet();
    dec = kts_decoder_create(0);
    dec_rates = kts_decoder_create(KTS_DECODE_RATES_AS_GAUGE);
    dec_yajl = kts_decoder_create(KTS_DECODE_NO_FAST);
    if (dec == NULL || dec_rates == NULL || dec_yajl == NULL)
        abort();
    return 0;
}

static void check_error_contract(const struct fuzz_result *r, const char *path)
{
    if (r->rc == 0)
        return;
    if (r->rc != -EINVAL && r->rc != -ERANGE && r->rc != -EPROTONOSUPPORT && r->rc != -ENOMEM)
        fuzz_fail("%s: undocumented return code %d (%s)", path, r->rc, r->err);
    if (r->err[0] == '\0')
        fuzz_fail("%s: error %d without a message", path, r->rc);
    if (r->n != 0)
        fuzz_fail("%s: error %d after %zu value lists were delivered (all or nothing)", path, r->rc,
                  r->n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *msg = malloc(size ? size : 1); /* exact size: ASan sees reads past the end */
    if (msg == NULL)
        return 0;
    memcpy(msg, data, size);

    struct fuzz_result a, r, y;
    fuzz_decode(dec, msg, size, &a);
    fuzz_decode(dec_rates, msg, size, &r);
    fuzz_decode(dec_yajl, msg, size, &y);
    check_error_contract(&a, "collectd decoder");
    check_error_contract(&r, "collectd decoder, rates as gauges");
    char why[512] = "";
    if (a.rc != y.rc || a.fmt != y.fmt || strcmp(a.err, y.err) != 0 || a.n != y.n)
        fuzz_fail("fast/yajl differ: rc %d/%d fmt %d/%d n %zu/%zu err '%s' / '%s'", a.rc, y.rc,
                  a.fmt, y.fmt, a.n, y.n, a.err, y.err);
    for (size_t i = 0; i < a.n && i < FUZZ_MAX_VLS; i++)
        if (a.owned[i] && y.owned[i] &&
            !fuzz_vl_same(&a.vls[i], &y.vls[i], false, why, sizeof(why)))
            fuzz_fail("fast/yajl differ in value list %zu: %s", i, why);
    if (a.fmt != r.fmt)
        fuzz_fail("the flags changed the detected format: %d / %d", a.fmt, r.fmt);

    fuzz_round_trip(dec_yajl, &a);
    fuzz_round_trip(dec_yajl, &r);
    fuzz_result_fini(&a);
    fuzz_result_fini(&r);
    fuzz_result_fini(&y);
    free(msg);
    return 0;
}
