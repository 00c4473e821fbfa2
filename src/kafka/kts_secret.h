/* SPDX-License-Identifier: MIT */
/* kts_secret: secrets in librdkafka properties (passwords, key passwords).
 *
 * What it guarantees:
 *  1. kts_secret_read_file() reads a value from a file (PropertyFile): at most
 *     KTS_SECRET_MAX bytes, one trailing "\n" (or "\r\n") removed; its own buffers are wiped.
 *     Its log lines name the file and the property, never the value.
 *  2. When the file can be read by every user (mode o+r), kts_secret_read_file() logs a warning
 *     that says how to fix it (chmod 600, owner the collectd user); the value is still used.
 *  3. kts_secret_mask() copies a log line with every listed secret replaced by "[redacted]";
 *     when the result would not fit, the line is cut before the secret rather than leak it.
 * kts_secret_read_file() serves PropertyFile in both plugins; kts_secret_mask() serves both
 * through kts_rdkconf.h.
 */
#ifndef KTS_SECRET_H
#define KTS_SECRET_H

#include "kts_conf.h"

#include <stddef.h>

#define KTS_SECRET_MAX 8191

/* Reads the secret in `path` into *out (malloc'd; the caller wipes and frees it). `where` and
 * `key` name the option in log lines. Returns 0, -EINVAL (cannot open, too large) or -ENOMEM. */
int kts_secret_read_file(const char *path, char **out, const char *where, const char *key);

/* Writes `in` to `out` (size bytes) with each non-empty string of `secrets` replaced by
 * "[redacted]"; returns `out`. `secrets` and `in` are borrowed. */
const char *kts_secret_mask(const struct kts_strv *secrets, const char *in, char *out, size_t size);

#endif
