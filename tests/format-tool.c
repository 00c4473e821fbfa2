/* SPDX-License-Identifier: MIT */
/*
 * format-tool: a test tool (built by `make check`, not a test itself).
 *
 *   format-tool encode ts|collectd < descriptions
 *       value list descriptions (tests/lib/vl_desc.h) separated by lines "---"; writes each
 *       one encoded in that format, one message per line.
 *   format-tool recode < message
 *       decodes one message (either format) and encodes its value lists again in the same
 *       format (collectd: all of them in one array, as collectd writes a batch). Exit status 1
 *       and the decoder's message on stderr if it does not decode.
 *
 * tests/t-format-collectd.sh uses it to compare our bytes with what collectd itself writes.
 */
#include <stdio.h>

#include "kts_buf.h"
#include "kts_format.h"
#include "kts_testhooks.h"
#include "lib/vl_desc.h"

static int emit(const char *text, enum kts_format fmt, struct kts_buf *out)
{
    struct vl_store st;
    if (load_vl_text(text, &st) != 0) {
        fprintf(stderr, "format-tool: bad description:\n%s\n", text);
        return 1;
    }
    kts_buf_reset(out);
    int r = kts_format_encode(out, &st.vl, fmt);
    if (r != 0) {
        fprintf(stderr, "format-tool: encode failed (%d)\n", r);
        return 1;
    }
    fwrite(out->data, 1, out->len, stdout);
    fputc('\n', stdout);
    return 0;
}

static int encode_all(enum kts_format fmt)
{
    struct kts_buf text = {0}, out = {0};
    char line[65536];
    int rc = 0;
    while (fgets(line, sizeof(line), stdin) != NULL) {
        if (strcmp(line, "---\n") == 0) {
            rc |= emit(text.data ? text.data : "", fmt, &out);
            kts_buf_reset(&text);
        } else {
            kts_buf_append_str(&text, line);
        }
    }
    if (text.len > 0)
        rc |= emit(text.data, fmt, &out);
    kts_buf_fini(&text);
    kts_buf_fini(&out);
    return rc;
}

static int recode(void)
{
    struct kts_buf in = {0}, out = {0}, one = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
        kts_buf_append(&in, chunk, n);
    while (in.len > 0 && in.data[in.len - 1] == '\n')
        in.len--;
    struct kts_vl *vls = NULL;
    size_t nvl = 0;
    enum kts_format fmt;
    char err[512];
    int r = kts_format_decode_array(in.data, in.len, 0, &fmt, &vls, &nvl, err, sizeof(err));
    if (r != 0) {
        fprintf(stderr, "format-tool: %s\n", err);
        kts_buf_fini(&in);
        return 1;
    }
    if (fmt == KTS_FORMAT_COLLECTD)
        kts_buf_append_char(&out, '[');
    for (size_t i = 0; i < nvl; i++) {
        kts_buf_reset(&one);
        kts_format_encode(&one, &vls[i], fmt);
        if (fmt == KTS_FORMAT_COLLECTD) {
            if (i > 0)
                kts_buf_append_char(&out, ',');
            kts_buf_append(&out, one.data + 1, one.len - 2); /* without [ ] */
        } else {
            kts_buf_append(&out, one.data, one.len);
        }
    }
    if (fmt == KTS_FORMAT_COLLECTD)
        kts_buf_append_char(&out, ']');
    fwrite(out.data, 1, out.len, stdout);
    fputc('\n', stdout);
    kts_vl_array_free(vls, nvl);
    kts_buf_fini(&in);
    kts_buf_fini(&out);
    kts_buf_fini(&one);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "encode") == 0 && strcmp(argv[2], "ts") == 0)
        return encode_all(KTS_FORMAT_TS);
    if (argc == 3 && strcmp(argv[1], "encode") == 0 && strcmp(argv[2], "collectd") == 0)
        return encode_all(KTS_FORMAT_COLLECTD);
    if (argc == 2 && strcmp(argv[1], "recode") == 0)
        return recode();
    fprintf(stderr, "usage: format-tool encode ts|collectd < descriptions\n"
                    "       format-tool recode < message\n");
    return 2;
}
