/* SPDX-License-Identifier: MIT */
/*
 * kts_producer: value lists → Kafka, never losing one silently (the core of write_kafka_ts).
 *
 * Guarantees:
 *  1. Every value list given to kts_producer_send() ends in exactly one of: delivered (broker
 *     acknowledged with the configured acks), failed (delivery report with an error), dropped
 *     (refused before reaching librdkafka, with a reason), or undelivered at close. Each has a
 *     counter; failures and drops are logged, rate-limited, naming the reason.
 *  2. Delivery reports are served continuously by a dedicated thread, so queue space is freed
 *     and counters move even when nothing is being sent.
 *  3. A full local queue (BufferMessages / BufferBytes) applies back-pressure: send() waits up
 *     to BlockTimeout for space, then drops (reason "queue_full"). While the queue stays full
 *     after such a drop, later sends drop at once instead of each waiting again, so a broker
 *     outage cannot stall collectd's write threads; waiting resumes when space frees.
 *  4. Messages never time out inside librdkafka by default (message.timeout.ms=0): during a
 *     broker outage they wait in the bounded queue and are delivered in order when it returns.
 *  5. kts_producer_close() flushes for at most the given time, purges what is left, and
 *     reports exactly how many value lists were not delivered.
 *  6. The message key is the series identity (or the host, or none); partitioning is
 *     murmur2_random, as the Java client's default partitioner.
 *  7. Property values are never logged, and the values of secret properties are masked in
 *     every line librdkafka produces that passes through here.
 *  8. Value lists carrying KTS_META_MARKER (dispatched by read_kafka_ts) are skipped and
 *     counted, never sent.
 *  9. librdkafka reports failed deliveries only (delivery.report.only.error): per-message
 *     success reports cost as much CPU as everything else the plugin does. `delivered` is
 *     derived (sent − failed − purged − queued), exact once the queue is empty (at close), never
 *     decreasing; request latency comes from librdkafka's statistics.
 * 10. With a spool (SpoolDirectory, src/kafka/kts_spool.h): a value list that finds the queue full
 *     after BlockTimeout is written to the spool instead of being dropped, and so is every value
 *     list after it until the spool has been drained (replayed into librdkafka's queue by the
 *     delivery thread as space frees), so per-series order is kept memory queue → spool →
 *     Kafka. At close, messages librdkafka could not deliver are put in FRONT of the spool in
 *     the order they were produced (they are older than everything spooled); a spool left
 *     from a previous run is replayed before any new value list. Only a full spool
 *     (SpoolMaxBytes) or a write error drops, counted and logged by reason.
 * 11. Write-ahead (SpoolMode "always"): every value list is written to the spool file before
 *     send() returns (in the kernel: a kill -9 of the process keeps it; with SpoolSync, a power
 *     loss keeps all but the last second) and leaves the spool only when the broker has
 *     acknowledged it, or it failed for good (counted). The delivery thread reads the spool in
 *     order into librdkafka's queue; librdkafka reports every delivery (not only errors), and
 *     after each batch of reports the spool is consumed up to the oldest message not yet
 *     acknowledged. After a restart,
 *     everything not acknowledged is sent again first, in order (at least once: what the broker
 *     acknowledged in the last cursor interval, 200 ms, comes again). A full or failing spool
 *     drops the value list (counted, logged): nothing bypasses the spool, so order holds.
 * 12. Start-up topic check (in kts_producer_create, i.e. collectd's init): the topic is looked
 *     up before librdkafka is told about it (a request for all topics, which creates nothing).
 *     A topic that does not exist gives a WARNING naming it, saying either that the broker
 *     created it automatically (it appeared after the producer's own metadata request, the
 *     broker's auto.create.topics.enable) with how many partitions, or that it was not created
 *     (auto-creation off: Property allow.auto.create.topics "false", or not created within the
 *     timeout) and what then happens to the value lists. Each step waits at most
 *     topic_check_timeout (5 s); no reachable broker (all refused, or a failed login) ends the
 *     check at once with a NOTICE: start-up is never held up by a broker that is down.
 */
#ifndef KTS_PRODUCER_H
#define KTS_PRODUCER_H

#include "kts_conf.h"
#include "kts_format.h"
#include "kts_value.h"

#include <stdint.h>

struct kts_producer;

/* Settings; the plugin fills this from its option table (see kts_producer_options). */
struct kts_producer_config {
    char *name;                  /* instance name in the default log prefix (default: topic) */
    char *log_prefix;            /* starts every log line, the caller's (e.g. "write_kafka_ts
                                  * plugin (NAME)"); NULL: "kts_producer (NAME)". Not an option:
                                  * set by the caller, freed by kts_producer_config_free() */
    char *topic;                 /* required */
    int format;                  /* index into kts_producer_format_words */
    int key;                     /* index into kts_producer_key_words */
    struct kts_strv properties;  /* flattened key, value, key, value … librdkafka properties */
    int64_t buffer_messages;     /* queue.buffering.max.messages */
    int64_t buffer_kbytes;       /* queue.buffering.max.kbytes */
    double block_timeout;        /* seconds send() waits for queue space before dropping */
    double flush_timeout;        /* seconds close() waits for outstanding deliveries */
    bool skip_marked;            /* skip value lists carrying KTS_META_MARKER (default true) */
    double stats_interval;       /* seconds between librdkafka statistics (latency); 0 = 10 */
    char *spool_dir;             /* SpoolDirectory; NULL or "none" = no spool (10). The plugin
                                  * puts its default (BaseDir/write_kafka_ts/INSTANCE) here when
                                  * the option is not given. */
    int64_t spool_max_bytes;     /* SpoolMaxBytes */
    bool spool_sync;             /* SpoolSync: fdatasync the spool every second */
    int spool_mode;              /* index into kts_producer_spool_mode_words (11) */
    int64_t spool_segment_bytes; /* not an option: segment size for tests; 0 = 64 MiB */
    double topic_check_timeout;  /* not an option: seconds for each step of the topic check (12);
                                  * 0 = 5 s, < 0 = no check (tests) */
};

/* The option table for struct kts_producer_config (Property and PropertyFile are pairs). */
extern const struct kts_opt kts_producer_options[];
/* The words of Format ("json", "collectd") and Key ("series", "host", "none"), NULL-terminated. */
extern const char *const kts_producer_format_words[];
extern const char *const kts_producer_key_words[];
/* The words of SpoolMode: "overflow" (10), "always" (11). */
extern const char *const kts_producer_spool_mode_words[];
#define KTS_SPOOL_MODE_OVERFLOW 0
#define KTS_SPOOL_MODE_ALWAYS 1

/* Counters; all monotonic except queue_* (current state). */
struct kts_producer_stats {
    uint64_t sent;      /* accepted by librdkafka */
    uint64_t delivered; /* acknowledged by the broker */
    uint64_t failed;    /* delivery report with an error */
    uint64_t dropped_queue_full;
    uint64_t dropped_too_large;
    uint64_t dropped_encode;  /* could not be encoded (e.g. invalid value list) */
    uint64_t dropped_error;   /* produce refused for another reason */
    uint64_t skipped_marked;  /* carried KTS_META_MARKER */
    uint64_t blocked;         /* sends that waited for queue space (back-pressure) */
    uint64_t queue_messages;  /* sent but neither delivered nor failed yet */
    uint64_t latency_windows; /* statistics windows with requests (0: no latency figures yet) */
    double latency_avg_s;     /* produce request → broker ack in the last statistics window */
    double latency_max_s;     /*   (outbuf_latency + rtt of the busiest broker), seconds */
    /* spool (10); all 0 without one */
    uint64_t spooled;             /* value lists written to the spool (incl. requeued at close) */
    uint64_t replayed;            /* read back from the spool into librdkafka's queue */
    uint64_t dropped_spool_full;  /* spool at SpoolMaxBytes */
    uint64_t dropped_spool_error; /* the spool could not be written (logged) */
    uint64_t spool_torn;          /* torn/corrupt records found in the spool (never replayed) */
    uint64_t spool_bytes;         /* bytes in the spool files now */
    uint64_t acked;               /* (11) acknowledged by the broker, reported one by one */
};

/* Checks what the option table cannot (SpoolDirectory absolute or "none", SpoolSync with
 * "none");
 * logs every problem with `where` in front. 0 or -EINVAL. */
int kts_producer_config_check(const struct kts_producer_config *cfg, const char *where);

/*
 * Create a producer and start its delivery-report thread. `cfg` is copied. On failure returns
 * a negative errno with librdkafka's message in errbuf (secret values masked).
 * On success *out is the caller's; release it with kts_producer_close().
 */
int kts_producer_create(struct kts_producer **out, const struct kts_producer_config *cfg,
                        char *errbuf, size_t errbuf_size);

/*
 * Encode `vl` (borrowed) and hand it to Kafka. Thread-safe. Returns 0 when queued (or skipped
 * because of the marker: 1), or a negative errno when the value list was dropped (counted and
 * logged): -ENOBUFS queue full, -EMSGSIZE too large, -EINVAL cannot encode, -EIO other.
 */
int kts_producer_send(struct kts_producer *p, const struct kts_vl *vl);

/* Is librdkafka's idempotent producer on (enable.idempotence)? By default it is where the linked
 * librdkafka's idempotent producer is safe (kts_rdkver.h), unless Property "acks" is not "all";
 * Property "enable.idempotence" decides otherwise. */
bool kts_producer_idempotent(struct kts_producer *p);

/* Copy the counters. Resets the latency window (count/sum/max). */
void kts_producer_stats(struct kts_producer *p, struct kts_producer_stats *out);

/*
 * Stop the delivery thread, flush for at most `timeout_s` seconds, purge what is left, log the
 * exact number of value lists not delivered, and free everything. Returns that number (sent
 * but never acknowledged: failed at any time, or purged at close and not kept in the spool).
 * With a spool, purged messages go to the front of the spool (10). NULL p is fine.
 */
uint64_t kts_producer_close(struct kts_producer *p, double timeout_s);

/* Free what kts_opt_defaults/kts_opt_apply put into cfg. */
void kts_producer_config_free(struct kts_producer_config *cfg);

#endif
