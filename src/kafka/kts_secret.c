/* SPDX-License-Identifier: MIT */
/* kts_secret: see kts_secret.h for the guarantees (numbers below refer to them). */
#include "kts_secret.h"

#include "kts_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int kts_secret_read_file(const char *path, char **out, const char *where, const char *key)
{
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        kts_log(KTS_LOG_ERR, "%s: PropertyFile \"%s\": cannot open \"%s\": %s", where, key, path,
                strerror(errno));
        return -EINVAL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & S_IROTH)) /* (2) */
        kts_log(KTS_LOG_WARNING,
                "%s: PropertyFile \"%s\": \"%s\" can be read by every user "
                "(mode %04o); make it readable by the collectd user only (chmod 600)",
                where, key, path, (unsigned)(st.st_mode & 07777));
    char buf[KTS_SECRET_MAX + 1];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    /* A full buffer is not yet "too large": only a byte after it is (feof is not set yet). */
    int big = n == sizeof(buf) - 1 && fgetc(f) != EOF;
    fclose(f);
    if (big) {
        explicit_bzero(buf, sizeof(buf));
        kts_log(KTS_LOG_ERR, "%s: PropertyFile \"%s\": \"%s\" is larger than %d bytes", where, key,
                path, KTS_SECRET_MAX);
        return -EINVAL;
    }
    buf[n] = '\0';
    if (n > 0 && buf[n - 1] == '\n') /* (1) */
        buf[--n] = '\0';
    if (n > 0 && buf[n - 1] == '\r')
        buf[--n] = '\0';
    *out = strdup(buf);
    explicit_bzero(buf, sizeof(buf));
    return *out ? 0 : -ENOMEM;
}

const char *kts_secret_mask(const struct kts_strv *secrets, const char *in, char *out, size_t size)
{
    static const char red[] = "[redacted]";
    snprintf(out, size, "%s", in);
    for (size_t i = 0; i < secrets->n; i++) {
        const char *s = secrets->v[i];
        size_t sl = strlen(s);
        if (sl == 0)
            continue;
        char *hit, *from = out;
        while ((hit = strstr(from, s)) != NULL) {
            size_t tail = strlen(hit + sl);
            if ((size_t)(hit - out) + sizeof(red) - 1 + tail >= size) {
                *hit = '\0'; /* (3) no room: cut the line rather than leak */
                break;
            }
            memmove(hit + sizeof(red) - 1, hit + sl, tail + 1);
            memcpy(hit, red, sizeof(red) - 1);
            from = hit + sizeof(red) - 1;
        }
    }
    /* snprintf may have cut `in` in the middle of a secret: a prefix of a secret at the very
     * end is removed too (3). */
    size_t ol = strlen(out);
    if (ol + 1 >= size) {
        for (size_t i = 0; i < secrets->n; i++) {
            const char *s = secrets->v[i];
            size_t sl = strlen(s);
            if (sl == 0)
                continue;
            for (size_t k = sl - 1 < ol ? sl - 1 : ol; k > 0; k--)
                if (strncmp(out + ol - k, s, k) == 0) {
                    out[ol - k] = '\0';
                    ol -= k;
                    break;
                }
        }
    }
    return out;
}
