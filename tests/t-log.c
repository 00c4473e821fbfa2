/* SPDX-License-Identifier: MIT */
/* kts_log: sink installation and the rate limiter. */
#include "kts_log.h"
#include "tap.h"

static int lines;
static char last[1024];
static int last_level;

static void capture(int level, const char *msg, void *opaque)
{
    (void)opaque;
    lines++;
    last_level = level;
    snprintf(last, sizeof(last), "%s", msg);
}

int main(void)
{
    plan(7);
    kts_log_set_sink(capture, NULL);

    kts_log(KTS_LOG_ERR, "x=%d", 42);
    is_int(lines, 1, "sink receives a line");
    is_str(last, "x=42", "the line is formatted");
    is_int(last_level, KTS_LOG_ERR, "the level is passed");

    struct kts_ratelimit rl = {.interval_s = 3600};
    lines = 0;
    for (int i = 0; i < 100; i++)
        kts_log_limited(&rl, KTS_LOG_WARNING, "dropped %d", i);
    is_int(lines, 1, "100 limited lines within the interval log once");
    is_str(last, "dropped 0", "the first one gets through");
    is_uint(rl.suppressed, 99, "the other 99 are counted as suppressed");

    rl.next_ns = 0; /* as if the interval had passed */
    kts_log_limited(&rl, KTS_LOG_WARNING, "dropped again");
    is_str(last, "dropped again (99 similar messages suppressed in the last 3600 s)",
           "the next line says how many were suppressed");
    kts_log_set_sink(NULL, NULL);
    return done_testing();
}
