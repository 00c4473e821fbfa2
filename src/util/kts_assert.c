/* SPDX-License-Identifier: MIT */
/* kts_assert.c: what a failed KTS_ASSERT does (kts_assert.h). */
#include "kts_assert.h"
#include "kts_log.h"

#include <stdlib.h>

void kts_assert_fail(const char *expr, const char *file, int line, const char *func)
{
    /* Through the sink the plugins install (collectd's log), else stderr (kts_log.h). */
    kts_log(KTS_LOG_ERR, "assertion failed: %s:%d: %s: %s", file, line, func, expr);
    abort();
}
