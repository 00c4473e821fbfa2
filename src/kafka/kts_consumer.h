/* SPDX-License-Identifier: MIT */
/*
 * kts_consumer: Kafka → decoded value lists → (pipeline) → dispatch, at least once
 * (the core of read_kafka_ts; no collectd headers).
 *
 * Guarantees:
 *  1. Consumer-group member, enable.auto.commit=true and enable.auto.offset.store=false: offsets
 *     are committed in the background, but only the offsets this module stored. The assignor is
 *     eager (range,roundrobin) by default; cooperative-sticky and group.protocol "consumer"
 *     (KIP-848) are accepted only where the linked librdkafka has the fixes they need
 *     (kts_rdkver.h), and then rebalancing is incremental: only the partitions that move are
 *     drained (9) and unassigned, the others keep flowing.
 *  2. The offset stored for a partition is always (offset+1) of a message M such that every
 *     value of M and of every earlier message of that partition consumed by this member has
 *     been confirmed written (kts_consumer_written()), was declared already written by the
 *     dispatch callback (KTS_DISPATCH_SKIPPED), or was a bad message (counted, optionally
 *     dead-lettered). Never further: a crash or kill -9 redelivers, never loses.
 *  3. Per series (host, plugin, plugin_instance, type, type_instance after naming), at most one
 *     value is between dispatch and its written-confirmation, and queued values of a series are
 *     dispatched in timestamp order (stable for equal times). So collectd's write threads
 *     cannot reorder a series.
 *  4. In flight (consumed, not yet confirmed) is bounded: at most MaxInFlightMessages messages
 *     plus one poll batch, and consuming pauses while more than MaxInFlightValues values wait.
 *  5. A message that does not decode, whose value lists do not match types.db, or whose output
 *     names are too long is a bad message: counted, logged rate-limited with topic, partition and
 *     offset, copied to the dead-letter topic when one is configured (headers kts.source.topic,
 *     kts.source.partition, kts.source.offset, kts.error), and its offset then counts as done.
 *     A bad message never stalls the partition and never crashes.
 *  6. A message is all or nothing: either all its value lists pass to the pipeline, or none.
 *  7. The pipeline hook gets every decoded value list and may emit 0..n value lists; the default
 *     is the identity. Output naming (host prefix/suffix, plugin_instance suffix) applies to
 *     what the pipeline emits.
 *  8. kts_consumer_drain() stops dispatching new values and waits (bounded) for every value
 *     already dispatched to be confirmed, storing their offsets; kts_consumer_close() then
 *     unsubscribes, polls until the assignment is empty (bounded), closes (committing the stored
 *     offsets) and destroys. No synchronous commit in the rebalance callback. Close during a
 *     rebalance neither aborts nor hangs.
 *  9. Revoked partitions: queued values not yet dispatched are dropped (the new owner redelivers
 *     them from the committed offset); offsets are stored before the partitions are given up.
 * 10. A dispatched value not confirmed within WriteTimeout (e.g. dropped by a filter chain or
 *     by collectd's WriteQueueLimit) is counted as unconfirmed, logged, and then treated as
 *     done, so one lost value cannot stall a partition forever.
 * 11. With a commit hook (read_kafka_ts FlushBeforeCommit), offsets are stored only at commit
 *     points, every commit_interval seconds on the consumer thread, and lag one generation:
 *     commit point k stores the offsets that were done at commit point k-1, then records what
 *     is done now and calls the hook (which flushes the caching writers) without the lock. So
 *     an offset is stored only after a flush that started after its values were written, plus
 *     one commit interval for writers whose flush is asynchronous (collectd's rrdtool plugin
 *     only queues on flush). A revoke stores nothing beyond the last commit point (the rest
 *     is redelivered to the new owner). Drain calls the hook once more (final) and then stores
 *     everything done (a clean shutdown: the writers' own shutdown writes their caches).
 *
 * State in Kafka (StateTopic, callbacks kts_consumer_state_ops; kts_consumer_state.c):
 * 12. With a state topic the consumer needs exactly one input topic (no pattern). At create,
 *     a missing state topic is created with cleanup.policy=compact and the input topic's
 *     partition count (broker's default replication); an existing one with another partition
 *     count or cleanup policy, or a missing input topic, is an error that names both topics.
 * 13. Restore: an input partition assigned (eager or incremental) is paused and processes no
 *     message until the state partition with its number has been read from the beginning to
 *     its high watermark (queried at assignment) by a separate, group-less consumer, every
 *     record passed to restore() on the consumer thread (a tombstone as val NULL). Messages
 *     fetched before the pause are not processed; the partition is sought back to the first of
 *     them. Other partitions keep flowing meanwhile.
 * 14. Commit points (11) also run with a state topic and no commit hook (every
 *     commit_interval). Checkpoints are taken at every n-th commit point of a partition, n =
 *     ceil(state_interval / commit_interval) (1 when state_interval <= commit_interval), counted
 *     from its assignment and from its last checkpoint taken. At such a commit point, on the
 *     consumer thread, checkpoint() is called for
 *     each owned, restored partition that consumed something since its last checkpoint and has
 *     no checkpoint under way: its state is then the cut at its last consumed offset Q (the
 *     pipeline runs on this thread in message order). The records are kept, and produced to the
 *     state topic's partition of the same number only once every value up to Q is done (with a
 *     commit hook: stored-eligible as in 11, i.e. flushed one generation later). A state record
 *     at position Q therefore never exists before the values up to Q were written.
 * 15. With a state topic, the offset stored for a partition is the cut Q+1 of its last
 *     checkpoint whose records were all acknowledged by the broker, never further (it replaces
 *     2's "as soon as done"). A record that fails (produce error or delivery failure) stores
 *     nothing for that checkpoint (counted, logged) and the partition's next checkpoint is full
 *     (checkpoint(full = true)). So after a kill -9 the committed offset is at or before the cut
 *     of every state record of the partition: redelivered values that a restored series already
 *     absorbed are the restore side's to skip (its stored position), the rest is processed.
 * 16. Revoke of a partition (eager or incremental) and drain: its queued values are not
 *     dropped but dispatched; the consumer waits (DrainTimeout) until all its values are done,
 *     calls the commit hook once (if any), takes a final checkpoint, waits (DrainTimeout) for
 *     its acknowledgements and stores its cut, then calls revoked(). When a wait times out,
 *     no final checkpoint is taken: the stored offset stays at the last acknowledged cut and
 *     the new owner redelivers from there.
 * 17. Self-metrics: state partitions restored, records restored, refused by reason (restore()'s
 *     return), tombstones read and written, checkpoints, records and bytes produced, failed
 *     records, and the time spent restoring and checkpointing.
 */
#ifndef KTS_CONSUMER_H
#define KTS_CONSUMER_H

#include "kts_conf.h"
#include "kts_value.h"

#include <stdbool.h>
#include <stdint.h>

struct kts_consumer;

enum kts_start_position {
    KTS_START_EARLIEST = 0,
    KTS_START_LATEST = 1,
};

/* Settings; the plugin fills this from kts_consumer_options. */
struct kts_consumer_config {
    char *name;                 /* instance name: self-metrics, default log prefix (group id) */
    char *log_prefix;           /* starts every log line, the caller's (e.g. "read_kafka_ts plugin
                                 * (NAME)"); NULL: "kts_consumer (NAME)". Not an option: set
                                 * by the caller, freed by kts_consumer_config_free() */
    char *group_id;             /* required */
    struct kts_strv topics;     /* required; "^regex" subscribes by pattern */
    int start_position;         /* enum kts_start_position (auto.offset.reset) */
    char *dead_letter_topic;    /* NULL: bad messages are only counted and logged */
    char *state_topic;          /* NULL: no state in Kafka (12–17) */
    struct kts_strv properties; /* flattened key, value … librdkafka properties */
    struct kts_strv typesdb;    /* types.db files; none = KTS_TYPESDB_DEFAULT */
    int64_t max_inflight_messages;
    int64_t max_inflight_values;
    int64_t batch_size;   /* messages per poll */
    double write_timeout; /* seconds before an unconfirmed value counts as done (10) */
    double drain_timeout; /* seconds drain waits for confirmations */
    double close_timeout; /* seconds close waits for the assignment to be revoked */
    bool ordered;         /* (3); false dispatches every value at once (for measuring) */
    char *host_prefix;    /* output naming (7); NULL = none */
    char *host_suffix;
    char *plugin_instance_suffix;
};

extern const struct kts_opt kts_consumer_options[];
void kts_consumer_config_free(struct kts_consumer_config *cfg);

/*
 * The pipeline slot (read_kafka_ts <Pipeline> blocks). Called on the consumer thread for each
 * decoded value list `in` (owned by the caller, may be modified, valid during the call). Call
 * `emit(in_or_other, emit_ctx)` 0..n times; emit copies what it is given. Return 0, or a
 * negative errno to make the whole message bad (5).
 */
typedef int (*kts_emit_fn)(const struct kts_vl *vl, void *emit_ctx);
typedef int (*kts_pipeline_fn)(struct kts_vl *in, kts_emit_fn emit, void *emit_ctx, void *opaque);

/*
 * Hand one value list to collectd. `vl` is only valid during the call; `token` must travel with
 * it (e.g. as meta data) so that the write path can call kts_consumer_written(token).
 * Called with the consumer's lock held, from the consumer thread or from inside
 * kts_consumer_written(): it must not call back into the consumer. Return 0, or a negative errno
 * when the value could not be handed over (counted, then treated as done), or
 * KTS_DISPATCH_SKIPPED when the value was deliberately not handed over because the sinks already
 * have it (read_kafka_ts DedupStateFile): counted in `skipped`, done at once.
 */
typedef int (*kts_dispatch_fn)(const struct kts_vl *vl, uint64_t token, void *opaque);
#define KTS_DISPATCH_SKIPPED 1

/*
 * Commit hook (11): called without the consumer's lock, on the consumer thread (or, with
 * final = true, on the thread calling kts_consumer_drain()), so possibly concurrently with
 * itself during a drain that timed out: it must be thread-safe. It must not call back into the
 * consumer. Its return value is ignored.
 */
typedef void (*kts_commit_fn)(bool final, void *opaque);

/*
 * State in Kafka (12–17): the pipeline's side, as callbacks; all are called on the consumer
 * thread (or the thread of drain/close once run() returned), without the consumer's lock, and
 * must not call back into the consumer.
 *  restore     one record of the state partition `partition`, in offset order; val NULL (vlen
 *              0) is a tombstone. Return a kts_state_verdict (refusals are counted by reason).
 *  checkpoint  call put() once per series of `partition` whose state changed since the last
 *              checkpoint (every series when `full`), val NULL for a series that expired
 *              (tombstone); put copies. Return 0 or a negative errno (the checkpoint is then
 *              dropped, as a failed one, 15).
 *  revoked     the partition is no longer ours: forget its series' states.
 *  position    (may be NULL) the partition and offset of the message whose value lists the
 *              pipeline hook gets next, called before them: the restore side's "absorbed" rule
 *              compares it with the position stored in a series' state.
 */
typedef int (*kts_state_put_fn)(void *pctx, const void *key, size_t klen, const void *val,
                                size_t vlen);
enum kts_state_verdict {
    KTS_STATE_RESTORED = 0,
    KTS_STATE_REFUSED_CONFIG = -1,  /* another pipeline configuration (fingerprint) */
    KTS_STATE_REFUSED_VERSION = -2, /* unknown record version */
    KTS_STATE_REFUSED_CORRUPT = -3, /* checksum, truncated, undecodable */
    KTS_STATE_REFUSED_OTHER = -4,   /* unknown pipeline, out of memory … */
};
#define KTS_CONSUMER_STATE_REASONS 4
struct kts_consumer_state_ops {
    int (*restore)(void *ctx, int32_t partition, const void *key, size_t klen, const void *val,
                   size_t vlen);
    int (*checkpoint)(void *ctx, int32_t partition, bool full, kts_state_put_fn put, void *pctx);
    void (*revoked)(void *ctx, int32_t partition);
    void (*position)(void *ctx, int32_t partition, int64_t offset);
};

struct kts_consumer_callbacks {
    kts_dispatch_fn dispatch; /* required */
    void *dispatch_opaque;
    kts_pipeline_fn pipeline; /* NULL = identity */
    void *pipeline_opaque;
    kts_commit_fn commit_hook; /* NULL = offsets stored as soon as done (2) */
    void *commit_opaque;
    double commit_interval; /* seconds between commit points (11), > 0 with a hook or state */
    double state_interval;  /* seconds between checkpoints (14); <= commit_interval (0): at
                             * every commit point */
    const struct kts_consumer_state_ops *state; /* with cfg.state_topic: required (12) */
    void *state_ctx;
};

/* Counters (monotonic unless noted). */
struct kts_consumer_stats {
    uint64_t messages;           /* consumed */
    uint64_t values;             /* value lists decoded */
    uint64_t decode_errors;      /* bad messages (5) */
    uint64_t dead_lettered;      /* copied to the dead-letter topic (delivered) */
    uint64_t dead_letter_failed; /* could not be copied */
    uint64_t dispatched;         /* value lists handed to dispatch */
    uint64_t dispatch_failed;
    uint64_t skipped;         /* dispatch returned KTS_DISPATCH_SKIPPED (already written) */
    uint64_t written;         /* confirmed by kts_consumer_written() */
    uint64_t unconfirmed;     /* write timeouts (10) */
    uint64_t dropped_revoked; /* queued values dropped when their partition was revoked */
    uint64_t offsets_stored;  /* offset store operations (partitions × times) */
    uint64_t commit_points;   /* commit hook calls (11) */
    uint64_t rebalances;
    uint64_t inflight_messages; /* current */
    uint64_t inflight_values;   /* current: queued + dispatched, not confirmed */
    /* StateTopic (17) */
    uint64_t state_partitions_restored;
    uint64_t state_restored; /* records installed (restore() returned KTS_STATE_RESTORED) */
    uint64_t state_refused[KTS_CONSUMER_STATE_REASONS]; /* config, version, corrupt, other */
    uint64_t state_tombstones_read;
    uint64_t state_checkpoints;   /* partition checkpoints all acknowledged */
    uint64_t state_records;       /* records produced and acknowledged (tombstones included) */
    uint64_t state_bytes;         /* their keys and values */
    uint64_t state_tombstones;    /* tombstones among them */
    uint64_t state_failed;        /* records not acknowledged (their checkpoint stores nothing) */
    uint64_t state_restore_ns;    /* time from assignment to the partition's resume, summed */
    uint64_t state_checkpoint_ns; /* time in checkpoint() and producing, summed */
};

/* Lag of one assigned partition: high watermark − next offset to consume (−1 unknown). */
struct kts_consumer_lag {
    char topic[128];
    int32_t partition;
    int64_t lag;
    int64_t stored; /* last stored offset (next to consume after a restart), -1 none */
};

/*
 * Create the consumer (no thread): load types.db, build the librdkafka consumer and subscribe.
 * `instance_id` (0..255) is put in the top 8 bits of every token, so several consumers can
 * share one write path. `cfg` and `cb` are copied. Returns 0 or a negative errno with the reason
 * in errbuf; on success *out is the caller's, released with kts_consumer_destroy().
 */
int kts_consumer_create(struct kts_consumer **out, const struct kts_consumer_config *cfg,
                        const struct kts_consumer_callbacks *cb, unsigned instance_id, char *errbuf,
                        size_t errbuf_size);

/* The consumer loop: poll, decode, dispatch, store offsets, until kts_consumer_drain(). Run it
 * on exactly one thread. Returns 0. */
int kts_consumer_run(struct kts_consumer *c);

/* A value with this token has passed the write path. Thread-safe; unknown tokens (other
 * instances, values already timed out, after close) are ignored and return -ENOENT. May
 * dispatch the series' next value before returning (3). */
int kts_consumer_written(struct kts_consumer *c, uint64_t token);

/* Is `token` one of this consumer's (top 8 bits)? */
bool kts_consumer_owns(const struct kts_consumer *c, uint64_t token);

/*
 * Stop dispatching, wait up to drain_timeout for every dispatched value to be confirmed, stop
 * run() and wait for it to return (the caller joins its thread afterwards), and store the
 * offsets that are done. Returns the number of values still unconfirmed (they will be
 * redelivered). Thread-safe; call it while collectd's write threads still run.
 */
uint64_t kts_consumer_drain(struct kts_consumer *c);

void kts_consumer_stats(struct kts_consumer *c, struct kts_consumer_stats *out);
/* Up to `max` partitions' lag into `out` (caller-owned); returns how many. */
size_t kts_consumer_lag(struct kts_consumer *c, struct kts_consumer_lag *out, size_t max);

/* The close sequence (8): Kafka side only. run() must have returned. The object stays valid
 * (kts_consumer_written() may still be called, e.g. by collectd's write threads, and counts but
 * dispatches nothing) until kts_consumer_destroy(). Idempotent. */
void kts_consumer_close(struct kts_consumer *c);
/* Close if not yet closed, and free. No other call may run or follow. NULL is fine. */
void kts_consumer_destroy(struct kts_consumer *c);

/* Output naming (7), exposed for tests: apply prefix/suffixes to `vl` in place. -ENAMETOOLONG
 * when a name would exceed KTS_NAME_MAX-1 bytes (vl is then unchanged). */
int kts_consumer_apply_naming(const struct kts_consumer_config *cfg, struct kts_vl *vl);

#endif
