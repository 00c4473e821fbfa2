/* SPDX-License-Identifier: MIT */
/*
 * kts_array: the one way to grow an array. Every array that grows as elements arrive uses
 * kts_array_grow() (or KTS_ARRAY_GROW) instead of a hand-written realloc:
 *
 *     if (KTS_ARRAY_GROW(t->items, t->cap, t->n + 1) != 0)
 *         return -ENOMEM;
 *     t->items[t->n++] = item;
 *
 * Guarantees:
 *   1. On success (0), *ptr holds room for at least `need` elements and *cap says how many;
 *      the first old *cap elements are kept (realloc). need <= *cap changes nothing.
 *   2. The capacity doubles, from KTS_ARRAY_MIN_CAP, so n appends cost O(n) in all.
 *   3. No size computation overflows: a capacity whose size in bytes does not fit size_t is
 *      -EOVERFLOW; an allocation failure is -ENOMEM. Either way *ptr and *cap are unchanged
 *      (the old array is still valid and still owned by the caller).
 *   4. need == 0 never allocates; elem_size == 0 is -EINVAL.
 * Header only (static inline), so plugins and tools use it as the library does.
 */
#ifndef KTS_ARRAY_H
#define KTS_ARRAY_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define KTS_ARRAY_MIN_CAP 8

static inline int kts_array_grow(void **ptr, size_t *cap, size_t need, size_t elem_size)
{
    if (elem_size == 0)
        return -EINVAL;
    if (need <= *cap)
        return 0;
    size_t n = *cap >= KTS_ARRAY_MIN_CAP ? *cap : KTS_ARRAY_MIN_CAP;
    while (n < need) {
        if (__builtin_mul_overflow(n, (size_t)2, &n))
            return -EOVERFLOW;
    }
    size_t bytes;
    if (__builtin_mul_overflow(n, elem_size, &bytes))
        return -EOVERFLOW;
    void *p = realloc(*ptr, bytes);
    if (p == NULL)
        return -ENOMEM;
    *ptr = p;
    *cap = n;
    return 0;
}

/* kts_array_grow() for an array lvalue `arr` (any pointer type) and its size_t capacity. */
#define KTS_ARRAY_GROW(arr, cap, need)                                                             \
    kts_array_grow((void **)&(arr), &(cap), (need), sizeof(*(arr)))

#endif
