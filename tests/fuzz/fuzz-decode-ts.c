/* SPDX-License-Identifier: MIT */
/*
 * fuzz-decode-ts: libFuzzer target for the time-series JSON v1 decoder (docs/FORMAT.md).
 *
 * Oracles, each an abort() on failure (kts_format.h and kts_format_fast.c guarantees):
 *  1. Differential: kts_decoder_decode() with the fast path and with KTS_DECODE_NO_FAST (the
 *     yajl path) give the same return code, detected format, error message and value lists,
 *     bit for bit (kts_format_fast.c 2, 3).
 *  2. The fast path alone (kts_fast_decode): whatever it accepts, the yajl path accepts too, as
 *     exactly one value list equal to it (kts_format_fast.c 1, 2).
 *  3. Round trip: every decoded value list encodes and decodes back to itself (kts_format.h 2).
 *  4. A failed decode returns one of the documented codes with a non-empty message
 *     (kts_format.h 7) and delivers no value list (6).
 * Plus ASan/UBSan/LeakSanitizer on all of it. Build and run: tests/fuzz/build, tests/fuzz/run.
 */
#include "fuzz-common.h"
#include "kts_format_impl.h"

#include <stdint.h>

static struct kts_decoder *dec_fast, *dec_yajl;
static struct kts_fast *fast;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet();
    dec_fast = kts_decoder_create(0);
    dec_yajl = kts_decoder_create(KTS_DECODE_NO_FAST);
    fast = kts_fast_create();
    if (dec_fast == NULL || dec_yajl == NULL || fast == NULL)
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
    /* An exact-size heap copy, so ASan sees any read past the end of the message. */
    char *msg = malloc(size ? size : 1);
    if (msg == NULL)
        return 0;
    memcpy(msg, data, size);

    struct fuzz_result a, b;
    fuzz_decode(dec_fast, msg, size, &a);
    fuzz_decode(dec_yajl, msg, size, &b);
    char why[512] = "";
    if (a.rc != b.rc || a.fmt != b.fmt || strcmp(a.err, b.err) != 0 || a.n != b.n)
        fuzz_fail("fast/yajl differ: rc %d/%d fmt %d/%d n %zu/%zu err '%s' / '%s'", a.rc, b.rc,
                  a.fmt, b.fmt, a.n, b.n, a.err, b.err);
    for (size_t i = 0; i < a.n && i < FUZZ_MAX_VLS; i++)
        if (a.owned[i] && b.owned[i] &&
            !fuzz_vl_same(&a.vls[i], &b.vls[i], false, why, sizeof(why)))
            fuzz_fail("fast/yajl differ in value list %zu: %s", i, why);
    check_error_contract(&a, "default decoder");
    check_error_contract(&b, "yajl path");

    struct kts_vl *fv = kts_fast_decode(fast, msg, size);
    if (fv != NULL) {
        if (b.rc != 0 || b.n != 1 || !b.owned[0])
            fuzz_fail("fast path accepted what the yajl path did not: rc %d, %zu value lists: %s",
                      b.rc, b.n, b.err);
        if (!fuzz_vl_same(fv, &b.vls[0], false, why, sizeof(why)))
            fuzz_fail("fast path value list differs from the yajl path's: %s", why);
    }

    fuzz_round_trip(dec_yajl, &b);
    fuzz_result_fini(&a);
    fuzz_result_fini(&b);
    free(msg);
    return 0;
}
