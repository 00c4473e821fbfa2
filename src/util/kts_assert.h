/* SPDX-License-Identifier: MIT */
/*
 * KTS_ASSERT(expr): an invariant that executes, where a comment would only claim it (a count
 * that must not go below zero, a lock that must be held, an index that must be in range).
 *
 * Active in builds configured with --enable-asserts (configure defines KTS_ENABLE_ASSERTS in
 * build-config.h; ./run-tests configures its sanitizer and valgrind phases so, and
 * tests/fuzz/build its fuzz targets): a false `expr` logs "assertion failed: FILE:LINE: FUNC:
 * EXPR" through kts_log() at KTS_LOG_ERR (collectd's log in a plugin, stderr elsewhere), then
 * aborts. Otherwise a no-op: `expr`
 * is still compiled (so it stays correct) but never evaluated, so it must have no side
 * effects and may cost anything.
 *
 * Not a way to handle errors: input, configuration, the network and the disk are checked with
 * a logged error as always. An assertion states what this code itself guarantees.
 */
#ifndef KTS_ASSERT_H
#define KTS_ASSERT_H

#include "build-config.h"

/* Logs the failed assertion and aborts; called only by KTS_ASSERT. */
void kts_assert_fail(const char *expr, const char *file, int line, const char *func)
    __attribute__((noreturn, cold));

#ifdef KTS_ENABLE_ASSERTS
#define KTS_ASSERT(expr) ((expr) ? (void)0 : kts_assert_fail(#expr, __FILE__, __LINE__, __func__))
#else
#define KTS_ASSERT(expr) ((void)sizeof(!(expr)))
#endif

#endif
