/* SPDX-License-Identifier: MIT */
/* kts_array_grow (src/util/kts_array.h): tests named after its guarantees. */
#include "kts_array.h"
#include "tap.h"

#include <stdbool.h>
#include <string.h>

struct item {
    uint64_t a, b;
};

int main(void)
{
    plan(17);

    /* 4. zero */
    struct item *v = NULL;
    size_t cap = 0;
    is_int(KTS_ARRAY_GROW(v, cap, 0), 0, "4. need 0: fine");
    ok(v == NULL && cap == 0, "4. ... and nothing allocated");
    is_int(kts_array_grow((void **)&v, &cap, 1, 0), -EINVAL, "4. elem_size 0: -EINVAL");
    ok(v == NULL && cap == 0, "4. ... and nothing allocated");

    /* 1, 2. growth */
    is_int(KTS_ARRAY_GROW(v, cap, 1), 0, "1. need 1 from empty: fine");
    ok(v != NULL && cap == KTS_ARRAY_MIN_CAP, "2. the first capacity is KTS_ARRAY_MIN_CAP (%zu)",
       cap);
    size_t n = 0, reallocs = 0;
    bool kept = true;
    for (uint64_t i = 0; i < 10000; i++) {
        size_t before = cap;
        if (KTS_ARRAY_GROW(v, cap, n + 1) != 0)
            break;
        reallocs += cap != before;
        v[n++] = (struct item){i, ~i};
    }
    for (size_t i = 0; i < n; i++)
        kept = kept && v[i].a == i && v[i].b == ~(uint64_t)i;
    is_uint(n, 10000, "1. 10,000 appends");
    ok(kept, "1. every element kept across the reallocations");
    is_uint(cap, 16384, "2. the capacity doubled: 16,384 for 10,000");
    is_uint(reallocs, 11, "2. 11 reallocations for 10,000 appends (8 to 16,384)");
    is_int(KTS_ARRAY_GROW(v, cap, 100), 0, "1. need <= cap: fine");
    is_uint(cap, 16384, "1. ... and the capacity unchanged");
    is_int(KTS_ARRAY_GROW(v, cap, 40000), 0, "2. need far beyond cap: one step");
    is_uint(cap, 65536, "2. ... to the next doubling that holds it (65,536)");

    /* 3. overflow */
    struct item *keep = v;
    size_t keep_cap = cap;
    is_int(KTS_ARRAY_GROW(v, cap, SIZE_MAX / sizeof(*v) + 1), -EOVERFLOW,
           "3. more elements than fit in size_t bytes: -EOVERFLOW");
    is_int(KTS_ARRAY_GROW(v, cap, SIZE_MAX), -EOVERFLOW,
           "3. need SIZE_MAX: -EOVERFLOW (the doubling would overflow)");
    ok(v == keep && cap == keep_cap, "3. after a failure the array and its capacity are unchanged");
    free(v);
    return done_testing();
}
