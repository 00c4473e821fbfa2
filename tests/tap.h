/* SPDX-License-Identifier: MIT */
/*
 * tap.h: a minimal TAP producer for the C tests (header only).
 *
 *   plan(3);
 *   ok(x == 1, "x is one");
 *   is_int(got, 42, "answer");
 *   return done_testing();
 *
 * Every test prints its plan first ("1..N"), so a crash before the end is a failure for prove
 * and for CI. done_testing() returns the exit status: 0 only if every planned test ran and passed.
 */
#ifndef KTS_TAP_H
#define KTS_TAP_H

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_planned = -1;
static int tap_run;
static int tap_failed;

static inline void plan(int n)
{
    tap_planned = n;
    printf("1..%d\n", n);
    fflush(stdout);
}

/* Prints each line of the message with "# " in front to `f`. */
static inline void tap_vdiag(FILE *f, const char *fmt, va_list ap)
{
    char buf[4096];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    /* Every line of a diagnostic starts with "# ". */
    for (char *line = buf, *nl; line != NULL && *line != '\0'; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        fprintf(f, "# %s\n", line);
    }
    fflush(f);
}

/* Information: on stdout, which prove shows only with -v. */
static inline void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void diag(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tap_vdiag(stdout, fmt, ap);
    va_end(ap);
}

/* Why a test point failed: on stderr, like Test::More, so it is in every log (prove and CI
 * show stderr without -v). */
static inline void tap_fail_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void tap_fail_diag(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tap_vdiag(stderr, fmt, ap);
    va_end(ap);
}

static inline int tap_vok(int cond, const char *file, int line, const char *fmt, va_list ap)
{
    char name[1024];
    vsnprintf(name, sizeof(name), fmt, ap);
    tap_run++;
    if (!cond)
        tap_failed++;
    printf("%sok %d - %s\n", cond ? "" : "not ", tap_run, name);
    fflush(stdout);
    if (!cond)
        tap_fail_diag("  Failed test %d '%s'\n  at %s line %d.", tap_run, name, file, line);
    return cond;
}

static inline int tap_ok(int cond, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline int tap_ok(int cond, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = tap_vok(cond, file, line, fmt, ap);
    va_end(ap);
    return r;
}

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

#define is_int(got, want, ...)                                                                     \
    do {                                                                                           \
        long long tap_g_ = (long long)(got), tap_w_ = (long long)(want);                           \
        if (!ok(tap_g_ == tap_w_, __VA_ARGS__))                                                    \
            tap_fail_diag("       got: %lld\n  expected: %lld", tap_g_, tap_w_);                   \
    } while (0)

#define is_uint(got, want, ...)                                                                    \
    do {                                                                                           \
        unsigned long long tap_g_ = (unsigned long long)(got),                                     \
                           tap_w_ = (unsigned long long)(want);                                    \
        if (!ok(tap_g_ == tap_w_, __VA_ARGS__))                                                    \
            tap_fail_diag("       got: %llu\n  expected: %llu", tap_g_, tap_w_);                   \
    } while (0)

#define is_str(got, want, ...)                                                                     \
    do {                                                                                           \
        const char *tap_g_ = (got), *tap_w_ = (want);                                              \
        int tap_c_ = (tap_g_ == NULL && tap_w_ == NULL) ||                                         \
                     (tap_g_ != NULL && tap_w_ != NULL && strcmp(tap_g_, tap_w_) == 0);            \
        if (!ok(tap_c_, __VA_ARGS__))                                                              \
            tap_fail_diag("       got: '%s'\n  expected: '%s'", tap_g_ ? tap_g_ : "(null)",        \
                          tap_w_ ? tap_w_ : "(null)");                                             \
    } while (0)

/* Doubles: equal within `tol` absolute (tol 0 means bit-identical, NaN equals NaN). */
#define is_double(got, want, tol, ...)                                                             \
    do {                                                                                           \
        double tap_g_ = (got), tap_w_ = (want), tap_t_ = (tol);                                    \
        int tap_c_ = (isnan(tap_g_) && isnan(tap_w_)) ||                                           \
                     (tap_t_ == 0 ? memcmp(&tap_g_, &tap_w_, sizeof(double)) == 0                  \
                                  : fabs(tap_g_ - tap_w_) <= tap_t_);                              \
        if (!ok(tap_c_, __VA_ARGS__))                                                              \
            tap_fail_diag("       got: %.17g\n  expected: %.17g", tap_g_, tap_w_);                 \
    } while (0)

/* Stop the test (prove reports "Bail out!"): for set-up that later tests cannot do without. */
#define BAIL_OUT(...)                                                                              \
    do {                                                                                           \
        printf("Bail out! ");                                                                      \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        fflush(stdout);                                                                            \
        exit(255);                                                                                 \
    } while (0)

static inline int done_testing(void)
{
    if (tap_planned >= 0 && tap_run != tap_planned)
        tap_fail_diag("Looks like you planned %d tests but ran %d.", tap_planned, tap_run);
    if (tap_failed)
        tap_fail_diag("Looks like you failed %d test(s) of %d run.", tap_failed, tap_run);
    return (tap_failed == 0 && (tap_planned < 0 || tap_run == tap_planned)) ? 0 : 1;
}

#endif
