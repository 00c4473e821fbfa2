/* SPDX-License-Identifier: MIT */
/*
 * kts_testhooks.h: the library's interface for tests, fuzzers and benchmarks only. What is
 * declared here exists so that a test can reach something the plugins never need; nothing in
 * plugins/ or tools/ includes this header (docs/DESIGN.md). A knob that a user should set
 * is an option in a component's table instead, documented with the others.
 *
 * Declared here (the decoder, src/format/kts_format_decode.c):
 *
 *   KTS_DECODE_NO_FAST       kts_decoder_create() flag: never take the fast path for our own
 *                            encoder's messages (kts_format_fast.c), always the yajl path. The
 *                            results are the same either way (kts_format_fast.c guarantees
 *                            1-3); the flag lets tests/t-format-fast.c and the fuzz targets
 *                            compare the two paths, and benchmarks time the yajl path.
 *   kts_format_decode_array  decode a whole message into an array of copies, for tests that
 *                            compare value lists (t-format, format-tool, t-producer-mock,
 *                            t-producer-spool); the plugins decode with a callback.
 *
 * Kept by their owners, next to what they tune, and listed here so that every test knob is
 * found from one place:
 *
 *   struct kts_producer_config.spool_segment_bytes   (src/kafka/kts_producer.h) the spool's segment
 *                            size, so tests reach many segments with little data; 0 = 64 MiB.
 *   struct kts_producer_config.topic_check_timeout   (src/kafka/kts_producer.h) the start-up topic
 *                            check's timeout; < 0 skips it (tests on the mock cluster).
 *   kts_consumer_apply_naming()   (src/kafka/kts_consumer.h) read_kafka_ts's output naming
 *                            (prefix, suffixes) alone, for tests/t-consumer.c.
 *   kts_state_topic_policy()   (src/kafka/kts_state_topic.h) a topic's cleanup.policy as the
 *                            state topic's start-up check reads it, for tests/t-consumer-state.c.
 *   OrderedDispatch false    (src/kafka/kts_consumer.c's option table) dispatch without per-series
 *                            ordering, to measure and to show what ordering prevents: refused by
 *                            plugins/read_kafka_ts.c unless collectd's environment has
 *                            KTS_TEST_KNOBS=1 (tests/t-read-order.sh, bench/read-bench).
 */
#ifndef KTS_TESTHOOKS_H
#define KTS_TESTHOOKS_H

#include "kts_format.h"

/* Decoder flag (next to KTS_DECODE_RATES_AS_GAUGE, kts_format.h): always the yajl path. */
#define KTS_DECODE_NO_FAST 0x2u

/*
 * Decode into a newly allocated array of `*n_out` value lists (each a deep copy, see
 * kts_vl_copy). On success the caller owns `*vls_out` and frees it with kts_vl_array_free();
 * on failure nothing is returned to free (`*vls_out` NULL, `*n_out` 0).
 */
int kts_format_decode_array(const void *buf, size_t len, unsigned flags, enum kts_format *fmt,
                            struct kts_vl **vls_out, size_t *n_out, char *errbuf,
                            size_t errbuf_size);

#endif
