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

#endif
