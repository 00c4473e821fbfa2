/* SPDX-License-Identifier: MIT */
/* kts_buf: see kts_buf.h for what it guarantees. */
#include "kts_buf.h"
#include "kts_assert.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void kts_buf_init(struct kts_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void kts_buf_fini(struct kts_buf *b)
{
    free(b->data);
    kts_buf_init(b);
}

int kts_buf_grow(struct kts_buf *b, size_t extra)
{
    /* need = len + extra + 1 (the NUL), without overflowing. */
    if (extra > SIZE_MAX / 2 - 1 - b->len)
        return -EOVERFLOW;
    size_t need = b->len + extra + 1;
    if (b->data != NULL && need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        KTS_ASSERT(cap <= SIZE_MAX / 2); /* cannot overflow: need <= SIZE_MAX / 2 */
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return -ENOMEM;
    if (b->data == NULL)
        p[0] = '\0';
    b->data = p;
    b->cap = cap;
    return 0;
}

int kts_buf_append(struct kts_buf *b, const void *p, size_t n)
{
    int r = kts_buf_reserve(b, n);
    if (r != 0)
        return r;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int kts_buf_append_char(struct kts_buf *b, char c)
{
    int r = kts_buf_reserve(b, 1);
    if (r != 0)
        return r;
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
    return 0;
}

int kts_buf_append_str(struct kts_buf *b, const char *s)
{
    return kts_buf_append(b, s, strlen(s));
}

void kts_buf_truncate(struct kts_buf *b, size_t len)
{
    if (len < b->len) {
        b->len = len;
        b->data[len] = '\0';
    }
}
