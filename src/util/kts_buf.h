/* SPDX-License-Identifier: MIT */
/*
 * kts_buf: a small growable byte buffer (the encoder's output, and scratch space elsewhere).
 *
 * Guarantees:
 *  1. A buffer is caller-owned: zero-initialise it (or kts_buf_init()), use it, kts_buf_fini().
 *     A zeroed buffer is valid and empty; nothing is allocated until the first append.
 *  2. After every successful append, `data[len]` is a NUL byte (so the content can be printed),
 *     but the content itself may contain NUL bytes: always use `len`.
 *  3. A failed call (-ENOMEM, or -EOVERFLOW for sizes that would overflow) leaves the buffer
 *     exactly as it was.
 *  4. kts_buf_reset() keeps the memory, so a buffer reused per message stops allocating once it
 *     has grown to the largest message (the encoder's hot path relies on this).
 */
#ifndef KTS_BUF_H
#define KTS_BUF_H

#include <stddef.h>

struct kts_buf {
    char *data; /* owned by the buffer; NULL until the first growth */
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated (always > len when data != NULL) */
};

/* Make `b` empty without allocating. `b` is caller-owned storage. */
void kts_buf_init(struct kts_buf *b);

/* Free the memory owned by `b` and make it empty again (it may be reused). */
void kts_buf_fini(struct kts_buf *b);

/* Forget the content but keep the memory. */
static inline void kts_buf_reset(struct kts_buf *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

/* Make room for at least `extra` more bytes plus the terminating NUL (grows by doubling).
 * Returns 0, -ENOMEM or -EOVERFLOW. */
int kts_buf_grow(struct kts_buf *b, size_t extra);

static inline int kts_buf_reserve(struct kts_buf *b, size_t extra)
{
    if (b->data != NULL && b->cap - b->len > extra)
        return 0;
    return kts_buf_grow(b, extra);
}

/* Append `n` bytes copied from `p` (`p` is only read, may be NULL when n is 0). */
int kts_buf_append(struct kts_buf *b, const void *p, size_t n);

/* Append one byte. */
int kts_buf_append_char(struct kts_buf *b, char c);

/* Append a NUL-terminated string (without its NUL). */
int kts_buf_append_str(struct kts_buf *b, const char *s);

/* Shorten the content to `len` bytes (no-op if `len` >= current length). */
void kts_buf_truncate(struct kts_buf *b, size_t len);

#endif
