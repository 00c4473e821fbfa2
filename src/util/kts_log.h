/* SPDX-License-Identifier: MIT */
/*
 * kts_log: the library's only way to say something.
 *
 * The library never includes collectd headers. The plugins install a sink that forwards to
 * collectd's plugin_log(); tests install one that prints TAP diagnostics ("# ...") or captures
 * the lines. Without a sink, messages go to stderr.
 *
 * Levels use syslog's numbers, which are also collectd's LOG_ERR .. LOG_DEBUG.
 */
#ifndef KTS_LOG_H
#define KTS_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#define KTS_LOG_ERR 3
#define KTS_LOG_WARNING 4
#define KTS_LOG_NOTICE 5
#define KTS_LOG_INFO 6
#define KTS_LOG_DEBUG 7

/* A sink receives the finished line (no trailing newline). `msg` is only valid during the call. */
typedef void (*kts_log_sink)(int level, const char *msg, void *opaque);

/* Install a sink (NULL restores stderr). Not thread-safe with concurrent kts_log(): install it
 * before starting threads. */
void kts_log_set_sink(kts_log_sink sink, void *opaque);

/* Format and send one line. Lines longer than 1023 bytes are truncated. */
void kts_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kts_vlog(int level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* How many lines at KTS_LOG_ERR (or more severe) the calling thread has logged so far. A
 * configuration step reads it before and after to count the problems it reported: every problem
 * is one error line (kts_conf.h, 3), and configuration runs on one thread. */
unsigned long kts_log_error_count(void);

/*
 * Rate limiting for repeated problems (drops, decode errors): at most one line per `interval_s`
 * seconds per limiter; the next line that gets through says how many were suppressed.
 * A limiter is caller-owned, zero-initialised, and safe to share between threads.
 */
struct kts_ratelimit {
    int64_t next_ns;     /* monotonic time before which lines are suppressed */
    uint64_t suppressed; /* lines suppressed since the last one logged */
    int interval_s;      /* 0 means 10 seconds */
};
void kts_log_limited(struct kts_ratelimit *rl, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * librdkafka's error events (the error callback) are logged through a set of KTS_RDK_LIMITERS
 * limiters, one picked by the kind of error: its code and its text up to librdkafka's variable
 * tail " (after Nms in state …)". So one problem repeating is rate-limited, while another one
 * (a second broker down, an authentication failure after a refused connection) still gets its
 * line. Two kinds may share a limiter (a hash picks it); the line then says how many were
 * suppressed.
 */
#define KTS_RDK_LIMITERS 8
struct kts_ratelimit *kts_rdk_limiter(struct kts_ratelimit set[KTS_RDK_LIMITERS], int err,
                                      const char *reason);

/*
 * Whether a line of librdkafka's log callback repeats an error event: librdkafka 2.0.2 logs
 * every broker failure as facility "FAIL" (at a level above debug) and raises the same text as
 * an error event right after (rd_kafka_broker_set_error()). The plugins log the event (it has
 * the error's name) and drop the FAIL line, so each failure is logged once.
 */
bool kts_rdk_log_is_error_event(int level, const char *fac);

#endif
