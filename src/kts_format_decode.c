/* kts_format decoder: first version is a placeholder, the real decoder follows. */
#include "kts_format.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

struct kts_decoder {
    unsigned flags;
};

struct kts_decoder *kts_decoder_create(unsigned flags)
{
    struct kts_decoder *d = calloc(1, sizeof(*d));
    if (d != NULL)
        d->flags = flags;
    return d;
}

void kts_decoder_destroy(struct kts_decoder *d)
{
    free(d);
}

int kts_decoder_decode(struct kts_decoder *d, const void *buf, size_t len,
                       enum kts_format *fmt, kts_decode_cb cb, void *opaque, char *errbuf,
                       size_t errbuf_size)
{
    if (fmt != NULL)
        *fmt = KTS_FORMAT_UNKNOWN;
    if (errbuf != NULL && errbuf_size > 0)
        snprintf(errbuf, errbuf_size, "decoder not implemented yet");
    return -ENOSYS;
}

int kts_format_decode(const void *buf, size_t len, unsigned flags, enum kts_format *fmt,
                      kts_decode_cb cb, void *opaque, char *errbuf, size_t errbuf_size)
{
    return kts_decoder_decode(NULL, buf, len, fmt, cb, opaque, errbuf, errbuf_size);
}

int kts_format_decode_array(const void *buf, size_t len, unsigned flags, enum kts_format *fmt,
                            struct kts_vl **vls_out, size_t *n_out, char *errbuf,
                            size_t errbuf_size)
{
    *vls_out = NULL;
    *n_out = 0;
    return kts_decoder_decode(NULL, buf, len, fmt, NULL, NULL, errbuf, errbuf_size);
}
