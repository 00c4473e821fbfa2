/* SPDX-License-Identifier: MIT */
#include "kts_log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static kts_log_sink log_sink;
static void *log_opaque;
static __thread unsigned long thread_errors; /* lines at KTS_LOG_ERR (or worse) by this thread */

unsigned long kts_log_error_count(void)
{
    return thread_errors;
}

void kts_log_set_sink(kts_log_sink sink, void *opaque)
{
    log_sink = sink;
    log_opaque = opaque;
}

void kts_vlog(int level, const char *fmt, va_list ap)
{
    char line[1024];
    if (level <= KTS_LOG_ERR)
        thread_errors++;
    vsnprintf(line, sizeof(line), fmt, ap);
    if (log_sink != NULL)
        log_sink(level, line, log_opaque);
    else
        fprintf(stderr, "%s\n", line);
}

void kts_log(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kts_vlog(level, fmt, ap);
    va_end(ap);
}

static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void kts_log_limited(struct kts_ratelimit *rl, int level, const char *fmt, ...)
{
    int64_t now = monotonic_ns();
    int64_t next = __atomic_load_n(&rl->next_ns, __ATOMIC_RELAXED);
    int interval = rl->interval_s > 0 ? rl->interval_s : 10;

    /* One thread wins the window; the others count themselves as suppressed. */
    if (now < next ||
        !__atomic_compare_exchange_n(&rl->next_ns, &next, now + (int64_t)interval * 1000000000, 0,
                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        __atomic_add_fetch(&rl->suppressed, 1, __ATOMIC_RELAXED);
        return;
    }
    uint64_t suppressed = __atomic_exchange_n(&rl->suppressed, 0, __ATOMIC_RELAXED);

    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (suppressed > 0)
        kts_log(level, "%s (%llu similar messages suppressed in the last %d s)", line,
                (unsigned long long)suppressed, interval);
    else
        kts_log(level, "%s", line);
}

struct kts_ratelimit *kts_rdk_limiter(struct kts_ratelimit set[KTS_RDK_LIMITERS], int err,
                                      const char *reason)
{
    const char *tail = reason != NULL ? strstr(reason, " (after ") : NULL;
    size_t n = reason == NULL ? 0 : tail != NULL ? (size_t)(tail - reason) : strlen(reason);
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uint32_t)err;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)reason[i]) * 1099511628211ULL;
    return &set[h % KTS_RDK_LIMITERS];
}

bool kts_rdk_log_is_error_event(int level, const char *fac)
{
    return level < KTS_LOG_DEBUG && fac != NULL && strcmp(fac, "FAIL") == 0;
}
