/* SPDX-License-Identifier: MIT */
/*
 * kts-filter --seed-topic: produce the series states of a state file (after --state-in loaded
 * them into the pipelines) to a read_kafka_ts StateTopic, so a first deployment starts from
 * pre-trained states instead of warming up (docs/read_kafka_ts.md "Seeding the state from
 * history").
 *
 * Each record goes where read_kafka_ts's checkpoints would put it: the key is the pipeline
 * name, NUL, the series identity (kts_pipeline_state.h), the value the record, the partition
 * the one with the number of the input partition the series lives on. write_kafka_ts produces
 * a series' messages with the key kts_series_message_key(Key "series" or "host") and the
 * partitioner murmur2_random, so that partition is librdkafka's murmur2 partitioner over that
 * key with the input topic's partition count (the Java client's: positive(murmur2(key)) % n).
 * The state topic is checked, or created compacted with the input's partition count, exactly
 * as read_kafka_ts does at start-up (kts_consumer.h 12). The records carry the position they
 * were saved with: kts-filter and ts_filter never set one (-1/-1), and read_kafka_ts installs
 * such a record and never treats a message as absorbed by it (kts_pipeline_state.h 4).
 */
#include "kts-filter-seed.h"

#include "kts_format.h"
#include "kts_pipeline_state.h"
#include "kts_series.h"
#include "kts_state_topic.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEED_FLUSH_MS 60000
#define SEED_MAX_PARTITIONS 4096

struct seed_ctx {
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    int32_t parts;
    enum kts_key_mode mode;
    unsigned long long produced, failed, bytes;
    unsigned long long *per_part;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct seed_ctx *sc = opaque;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (sc->failed++ == 0)
            fprintf(stderr, "kts-filter: --seed-topic: a record was not delivered: %s\n",
                    rd_kafka_err2str(m->err));
    }
}

/* The input partition of the series whose identity is `id` (`len` bytes). */
static int32_t input_partition(const struct seed_ctx *sc, const char *id, size_t len)
{
    struct kts_vl vl;
    memset(&vl, 0, sizeof(vl));
    kts_series_identity_names(&vl, id, len);
    char key[5 * KTS_NAME_MAX + 8];
    size_t klen = kts_series_message_key(key, sizeof(key), &vl, sc->mode);
    if (klen >= sizeof(key))
        klen = sizeof(key) - 1; /* write_kafka_ts cuts it the same way */
    return rd_kafka_msg_partitioner_murmur2_random(sc->rkt, key, klen, sc->parts, NULL, NULL);
}

/* kts_state_record_fn: produce one record to its partition. */
static int seed_one(const void *key, size_t klen, const void *rec, size_t rlen, int32_t partition,
                    void *opaque)
{
    struct seed_ctx *sc = opaque;
    (void)partition; /* the stored one: -1 for a state saved by kts-filter or ts_filter */
    if (rec == NULL)
        return 0; /* a tombstone: nothing to seed */
    const char *nul = memchr(key, '\0', klen);
    if (nul == NULL)
        return 0;
    size_t off = (size_t)(nul + 1 - (const char *)key);
    int32_t p = input_partition(sc, nul + 1, klen - off);
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            sc->rk, RD_KAFKA_V_RKT(sc->rkt), RD_KAFKA_V_PARTITION(p),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY((void *)key, klen),
            RD_KAFKA_V_VALUE((void *)rec, rlen), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(sc->rk, 100);
            continue;
        }
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "kts-filter: --seed-topic: cannot produce: %s\n",
                    rd_kafka_err2str(err));
            return -EIO;
        }
        break;
    }
    sc->produced++;
    sc->bytes += klen + rlen;
    sc->per_part[p]++;
    rd_kafka_poll(sc->rk, 0);
    return 0;
}

/* Partition count of `topic` (full metadata: naming it could create it): > 0, 0 missing, -1. */
static int32_t partition_count(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, 15000);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kts-filter: --seed-topic: cannot read the cluster's metadata: %s\n",
                rd_kafka_err2str(err));
        return -1;
    }
    int32_t n = 0;
    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, topic) == 0 && md->topics[i].err == 0)
            n = md->topics[i].partition_cnt;
    rd_kafka_metadata_destroy(md);
    return n;
}

static rd_kafka_t *seed_producer(const struct kts_seed_args *sa, struct seed_ctx *sc)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *fixed[][2] = {{"bootstrap.servers", sa->bootstrap}, {"acks", "all"}};
    for (size_t i = 0; i < 2; i++)
        if (rd_kafka_conf_set(conf, fixed[i][0], fixed[i][1], err, sizeof(err)) != RD_KAFKA_CONF_OK)
            goto bad;
    for (size_t i = 0; i < sa->nprops; i++) {
        char kv[1024];
        snprintf(kv, sizeof(kv), "%s", sa->props[i]);
        char *eq = strchr(kv, '=');
        if (eq == NULL) {
            snprintf(err, sizeof(err), "-X %s: not key=value", sa->props[i]);
            goto bad;
        }
        *eq = '\0';
        if (rd_kafka_conf_set(conf, kv, eq + 1, err, sizeof(err)) != RD_KAFKA_CONF_OK)
            goto bad;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, sc);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (rk != NULL)
        return rk;
    fprintf(stderr, "kts-filter: --seed-topic: %s\n", err);
    return NULL;
bad:
    fprintf(stderr, "kts-filter: --seed-topic: %s\n", err);
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* The state topic checked or created (read_kafka_ts's rule), the input's partition count. */
static int32_t seed_topics(const struct kts_seed_args *sa, rd_kafka_t *rk)
{
    char err[512] = "";
    if (kts_state_topic_check(rk, sa->input_topic, sa->state_topic, "kts-filter", err,
                              sizeof(err)) < 0) {
        fprintf(stderr, "kts-filter: --seed-topic: %s\n", err);
        return -1;
    }
    int32_t parts = partition_count(rk, sa->input_topic);
    if (parts <= 0 || parts > SEED_MAX_PARTITIONS) {
        fprintf(stderr, "kts-filter: --seed-topic: input topic \"%s\": %d partitions\n",
                sa->input_topic, (int)parts);
        return -1;
    }
    return parts;
}

static void seed_report(const struct kts_seed_args *sa, const struct seed_ctx *sc)
{
    fprintf(stderr, "kts-filter: seeded %llu record(s), %llu bytes, into \"%s\" (%d partitions:",
            sc->produced, sc->bytes, sa->state_topic, (int)sc->parts);
    for (int32_t p = 0; p < sc->parts; p++)
        fprintf(stderr, " %llu", sc->per_part[p]);
    fprintf(stderr, "), %llu not delivered\n", sc->failed);
}

int kts_seed_state_topic(const struct kts_seed_args *sa, struct kts_pipeline **pipes, size_t npipes)
{
    if (sa->key_mode == KTS_KEY_NONE) {
        fprintf(stderr, "kts-filter: --key none: write_kafka_ts then spreads a series over "
                        "every partition, so its state has no partition; use series or host\n");
        return 1;
    }
    struct seed_ctx sc = {.mode = (enum kts_key_mode)sa->key_mode};
    sc.rk = seed_producer(sa, &sc);
    if (sc.rk == NULL)
        return 1;
    int rc = 1;
    sc.parts = seed_topics(sa, sc.rk);
    if (sc.parts > 0) {
        sc.per_part = calloc((size_t)sc.parts, sizeof(*sc.per_part));
        sc.rkt = rd_kafka_topic_new(sc.rk, sa->state_topic, NULL);
    }
    if (sc.per_part != NULL && sc.rkt != NULL) {
        int erc = 0;
        for (size_t i = 0; i < npipes && erc == 0; i++)
            erc = kts_pipeline_state_export(pipes[i], -1, false, seed_one, &sc);
        rd_kafka_resp_err_t ferr = rd_kafka_flush(sc.rk, SEED_FLUSH_MS);
        if (ferr != RD_KAFKA_RESP_ERR_NO_ERROR)
            fprintf(stderr, "kts-filter: --seed-topic: flush: %s\n", rd_kafka_err2str(ferr));
        seed_report(sa, &sc);
        rc = erc == 0 && ferr == RD_KAFKA_RESP_ERR_NO_ERROR && sc.failed == 0 ? 0 : 1;
    }
    if (sc.rkt != NULL)
        rd_kafka_topic_destroy(sc.rkt);
    free(sc.per_part);
    rd_kafka_destroy(sc.rk);
    return rc;
}
