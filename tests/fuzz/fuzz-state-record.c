/* SPDX-License-Identifier: MIT */
/*
 * fuzz-state-record: libFuzzer target for the decoder of pipeline state records
 * (kts_state_record_check, kts_pipeline_state_import; src/pipeline/kts_pipeline_state.h).
 *
 * Input: one flag byte, then a record. Flag bit 0 set: the target first rewrites the record's
 * last 4 bytes to its CRC-32C, so that the fuzzer gets past the checksum into the length and
 * configuration checks (such a record is only imported and exported, never run: a record whose
 * checksum is right but whose filter state is made up is not what the checksum protects
 * against, kts_pipeline_state.h guarantee 3). Flag bit 0 clear: the record as given.
 *
 * Oracles, each an abort() on failure:
 *  1. kts_state_record_check() accepts only a record whose parts lie inside it and add up.
 *  2. An import accepted means the check accepted it; every refusal gives a reason.
 *  3. An accepted record re-exports byte for byte (the state holds exactly what it carried).
 *  4. An accepted unmodified record (flag 0) can be processed and flushed (the seeds are
 *     records the pipeline wrote itself).
 * Plus ASan/UBSan/LeakSanitizer. Seeds: tests/fuzz/corpus/state-record (records of
 * FUZZ_STATE_PIPELINE written by the library, with flag 0 and 1).
 */
#include "fuzz-common.h"

#include "kts_conf.h"
#include "kts_crc32c.h"
#include "kts_pipeline.h"
#include "kts_pipeline_state.h"
#include "kts_series.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every filter, as in tests/t-pipeline-state.c ("every filter"). */
#define FUZZ_STATE_PIPELINE                                                                        \
    "<Pipeline \"p\">\n  ExpireAfter 100000\n"                                                     \
    "  <Filter \"dedup\">\n SuppressUnchanged true\nHeartbeat 100\n  </Filter>\n"                  \
    "  <Filter \"difference\">\nMethod \"rate\"\n  </Filter>\n"                                    \
    "  <Filter \"fill\">\nMaxGap 3\n  </Filter>\n"                                                 \
    "  <Filter \"deseasonalize\">\nPeriod 600\nBins 20\n  </Filter>\n"                             \
    "  <Filter \"outlier\">\nWindow 300\nDelay 1\n  </Filter>\n"                                   \
    "  <Filter \"smooth\">\nMethod \"sma\"\nWindow 60\n  </Filter>\n"                              \
    "</Pipeline>\n"

static struct kts_conf *conf_root;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet();
    char err[256];
    if (kts_conf_parse(FUZZ_STATE_PIPELINE, strlen(FUZZ_STATE_PIPELINE), "fuzz", &conf_root, err,
                       sizeof(err)) < 0)
        fuzz_fail("the pipeline does not parse: %s", err);
    return 0;
}

struct export_check {
    const uint8_t *rec;
    size_t rlen;
    int records;
};

static int check_export(const void *key, size_t klen, const void *rec, size_t rlen,
                        int32_t partition, void *opaque)
{
    struct export_check *ec = opaque;
    (void)key;
    (void)klen;
    (void)partition;
    ec->records++;
    if (rec == NULL || rlen != ec->rlen || memcmp(rec, ec->rec, rlen) != 0)
        fuzz_fail("oracle 3: an accepted record of %zu bytes re-exports as %zu other bytes",
                  ec->rlen, rlen);
    return 0;
}

static int discard(const struct kts_vl *vl, const uint16_t *flags, void *opaque)
{
    (void)vl;
    (void)flags;
    (void)opaque;
    return 0;
}

/* Run a few value lists of the record's series through the pipeline, then flush. */
static void run_some(struct kts_pipeline *p, const struct kts_state_info *in)
{
    struct kts_vl vl;
    struct kts_ds ds[4];
    memset(&vl, 0, sizeof(vl));
    memset(ds, 0, sizeof(ds));
    kts_series_identity_names(&vl, in->identity, in->identity_len);
    vl.ds = ds;
    vl.ds_len = in->ds_num <= 4 ? in->ds_num : 4;
    vl.interval = KTS_TIME_FROM_S(10);
    for (int i = 0; i < 5; i++) {
        vl.time = (kts_time_t)in->time + KTS_TIME_FROM_S(10 * (i - 1));
        for (size_t d = 0; d < vl.ds_len; d++)
            ds[d].value.gauge = 10.0 * i;
        kts_pipeline_process(p, &vl, 1, discard, NULL);
    }
    kts_pipeline_flush(p, discard, NULL);
}

static void check_info(const struct kts_state_info *in, const uint8_t *rec, size_t rlen)
{
    const uint8_t *end = rec + rlen;
    if ((const uint8_t *)in->identity < rec ||
        (const uint8_t *)in->identity + in->identity_len > end || in->blob_lens < rec ||
        in->blob_lens + 4u * in->nfilters > end || in->blobs < rec ||
        in->blobs + (size_t)in->ds_num * in->ds_bytes + 4 != end)
        fuzz_fail("oracle 1: an accepted record's parts lie outside its %zu bytes", rlen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool fix = data[0] & 1;
    size_t rlen = size - 1;
    uint8_t *rec = malloc(rlen ? rlen : 1);
    if (rec == NULL)
        return 0;
    memcpy(rec, data + 1, rlen);
    if (fix && rlen >= 4) {
        uint32_t crc = kts_crc32c(0, rec, rlen - 4);
        for (int i = 0; i < 4; i++)
            rec[rlen - 4 + (size_t)i] = (uint8_t)(crc >> (8 * i));
    }
    struct kts_state_info in;
    enum kts_state_refusal why = KTS_STATE_OK;
    bool checked = kts_state_record_check(rec, rlen, &in, &why) == 0;
    if (checked)
        check_info(&in, rec, rlen);
    else if (why == KTS_STATE_OK)
        fuzz_fail("oracle 2: a refused record without a reason");
    /* The key: the pipeline's name and the record's identity (or a fixed one). */
    char key[2 + KTS_SERIES_IDENTITY_MAX] = "p";
    size_t klen = 2 + 14;
    memcpy(key + 2, "h\0cpu\0\0gauge\0\0", 14);
    if (checked && in.identity_len <= KTS_SERIES_IDENTITY_MAX) {
        memcpy(key + 2, in.identity, in.identity_len);
        klen = 2 + in.identity_len;
    }
    struct kts_pipeline *p = NULL;
    char err[256];
    if (kts_pipeline_config(&conf_root->children[0], "fuzz", &p, err, sizeof(err)) < 0)
        fuzz_fail("the pipeline does not configure: %s", err);
    int rc = kts_pipeline_state_import(p, key, klen, rec, rlen, &why);
    if (rc == 0 && rlen > 0) {
        if (!checked)
            fuzz_fail("oracle 2: an import accepted a record the check refused");
        struct export_check ec = {rec, rlen, 0};
        kts_pipeline_state_export(p, -1, false, check_export, &ec);
        if (ec.records != 1)
            fuzz_fail("oracle 3: %d records exported after one import", ec.records);
        if (!fix)
            run_some(p, &in);
    } else if (rc != 0 && why == KTS_STATE_OK) {
        fuzz_fail("oracle 2: a refused import without a reason");
    }
    kts_pipeline_destroy(p);
    free(rec);
    return 0;
}
