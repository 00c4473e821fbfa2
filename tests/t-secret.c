/* SPDX-License-Identifier: MIT */
/* t-secret: src/kafka/kts_secret.c (read_kafka_ts's PropertyFile and masking); numbers are the
 * guarantees of kts_secret.h. */
#include "kts_log.h"
#include "kts_secret.h"
#include "tap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char logged[8192];

static void sink(int level, const char *msg, void *opaque)
{
    (void)opaque;
    size_t l = strlen(logged);
    snprintf(logged + l, sizeof(logged) - l, "%d|%s\n", level, msg);
}

/* Writes `content` (len bytes) to a new file of mode `mode` in dir; returns its path (static). */
static const char *file_with(const char *dir, const char *name, const char *content, size_t len,
                             mode_t mode)
{
    static char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL || fwrite(content, 1, len, f) != len || fclose(f) != 0)
        BAIL_OUT("cannot write %s", path);
    chmod(path, mode);
    return path;
}

int main(void)
{
    plan(16);
    kts_log_set_sink(sink, NULL);
    char dir[] = "/tmp/kts-t-secret.XXXXXX";
    if (mkdtemp(dir) == NULL)
        BAIL_OUT("mkdtemp");

    /* 1: the value, one trailing newline removed, never logged */
    char *v = NULL;
    const char *p = file_with(dir, "a", "s3cret-pw\n", 10, 0600);
    logged[0] = '\0';
    is_int(kts_secret_read_file(p, &v, "where", "sasl.password"), 0, "1: a 0600 file is read");
    is_str(v, "s3cret-pw", "1: one trailing newline removed");
    is_str(logged, "", "1, 2: nothing logged for a 0600 file");
    free(v);
    p = file_with(dir, "b", " a b \r\n\n", 8, 0600);
    kts_secret_read_file(p, &v, "where", "k");
    is_str(v, " a b \r\n", "1: only one newline removed, spaces kept");
    free(v);
    p = file_with(dir, "c", "pw\r\n", 4, 0600);
    kts_secret_read_file(p, &v, "where", "k");
    is_str(v, "pw", "1: a CRLF ending removed");
    free(v);

    /* 1: too large, missing: errors name the file, not the content */
    char *big = malloc(KTS_SECRET_MAX + 1);
    memset(big, 'x', KTS_SECRET_MAX + 1);
    p = file_with(dir, "big", big, KTS_SECRET_MAX + 1, 0600);
    logged[0] = '\0';
    v = (char *)"untouched";
    is_int(kts_secret_read_file(p, &v, "where", "k"), -EINVAL,
           "1: a file over KTS_SECRET_MAX bytes is refused");
    ok(v == NULL && strstr(logged, "is larger than 8191 bytes") && !strstr(logged, "xxxx"),
       "1: the error names the limit, not the content");
    p = file_with(dir, "max", big, KTS_SECRET_MAX, 0600);
    is_int(kts_secret_read_file(p, &v, "where", "k"), 0,
           "1: exactly KTS_SECRET_MAX bytes are read");
    ok(v != NULL && strlen(v) == KTS_SECRET_MAX, "1: all of them");
    free(v);
    free(big);
    logged[0] = '\0';
    char missing[4200];
    snprintf(missing, sizeof(missing), "%s/nope", dir);
    is_int(kts_secret_read_file(missing, &v, "where", "sasl.password"), -EINVAL,
           "1: a missing file is an error");
    ok(strstr(logged, "PropertyFile \"sasl.password\": cannot open") &&
           strstr(logged, "No such file"),
       "1: naming the property, the path and the reason");

    /* 2: world-readable: warned, still used */
    p = file_with(dir, "open", "pw2", 3, 0644);
    logged[0] = '\0';
    is_int(kts_secret_read_file(p, &v, "rkt", "sasl.password"), 0, "2: a 0644 file is still read");
    ok(strstr(logged, "4|rkt: PropertyFile \"sasl.password\"") &&
           strstr(logged, "can be read by every user (mode 0644)") && !strstr(logged, "pw2"),
       "2: with a warning naming the mode, not the value");
    free(v);

    /* 3: masking */
    char *sv[] = {(char *)"hunter2", (char *)"", (char *)"abc"};
    struct kts_strv secrets = {sv, 3};
    char out[64];
    is_str(kts_secret_mask(&secrets, "login hunter2 failed; hunter2hunter2 abc", out, sizeof(out)),
           "login [redacted] failed; [redacted][redacted] [redacted]",
           "3: every occurrence masked");
    /* No room for "[redacted]": the line is cut before the secret. */
    char small[16];
    is_str(kts_secret_mask(&secrets, "pw: hunter2 and more", small, sizeof(small)),
           "pw: ", "3: no room: cut before the secret");
    /* snprintf cut the input inside a secret: the partial secret at the end goes too. */
    char tiny[10];
    is_str(kts_secret_mask(&secrets, "xxxxhunter2", tiny, sizeof(tiny)), "xxxx",
           "3: a secret cut by the buffer's end is removed");

    const char *names[] = {"a", "b", "c", "big", "max", "open"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
    return done_testing();
}
