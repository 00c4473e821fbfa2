/* SPDX-License-Identifier: MIT */
/* kts_format_impl.h: helpers shared by the encoder (kts_format.c) and the decoder
 * (kts_format_decode.c). Not part of the library's API. */
#ifndef KTS_FORMAT_IMPL_H
#define KTS_FORMAT_IMPL_H

#include <stdbool.h>
#include <stddef.h>

/* strtod() in the C locale, whatever setlocale() the process did. `s` is NUL-terminated. */
double kts_fmt_strtod_c(const char *s, char **end);

/* snprintf(dst, size, fmt, x) for one double conversion in the C locale (the decimal point is
 * '.' whatever the locale). Returns snprintf's value. */
int kts_fmt_snprintf_double(char *dst, size_t size, const char *fmt, double x)
    __attribute__((format(printf, 3, 0)));

/* Strict UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF). */
bool kts_fmt_utf8_valid(const char *s, size_t n);

/* The fast path for our own encoder's time-series JSON (kts_format_fast.c, guarantees 1-7
 * there). A kts_fast is owned by its creator (kts_fast_destroy(); NULL is fine); create
 * returns NULL when out of memory. kts_fast_decode() only reads `s`/`len`; it returns the
 * decoded value list, owned by `f` and valid until the next call, or NULL when the message
 * must be decoded by the yajl path (never an error of its own). */
struct kts_fast;
struct kts_vl;
struct kts_fast *kts_fast_create(void);
void kts_fast_destroy(struct kts_fast *f);
struct kts_vl *kts_fast_decode(struct kts_fast *f, const char *s, size_t len);

#endif
