/* SPDX-License-Identifier: MIT */
/*
 * vl_same.h: deep equality of two value lists for the tests and the fuzz targets (header only,
 * test code). One comparison, with the strictness each caller needs:
 *
 *   VL_SAME_NAME_BYTES  names over all KTS_NAME_MAX bytes, the padding after the NUL too (the
 *                       decoder's fast and yajl paths promise that much, kts_format_fast.c 2);
 *                       without it names compare as strings
 *   VL_SAME_NAN_ANY     any NaN equals any NaN (round trips: the encoder writes null); without
 *                       it doubles compare bit for bit
 *   VL_SAME_NULLS       the ds and meta arrays are both NULL or both not
 *
 * Counters, times and intervals compare exactly. `why` (n bytes) gets the first difference.
 */
#ifndef KTS_TEST_VL_SAME_H
#define KTS_TEST_VL_SAME_H

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "kts_value.h"

#define VL_SAME_NAME_BYTES 0x1u
#define VL_SAME_NAN_ANY 0x2u
#define VL_SAME_NULLS 0x4u

static inline bool vl_same_double(double a, double b, unsigned flags)
{
    if ((flags & VL_SAME_NAN_ANY) && isnan(a) && isnan(b))
        return true;
    return memcmp(&a, &b, sizeof(a)) == 0;
}

static inline bool vl_same_name(const char *a, const char *b, unsigned flags)
{
    return (flags & VL_SAME_NAME_BYTES) ? memcmp(a, b, KTS_NAME_MAX) == 0 : strcmp(a, b) == 0;
}

static inline bool vl_same(const struct kts_vl *a, const struct kts_vl *b, unsigned flags,
                           char *why, size_t n)
{
#define VL_DIFF(...)                                                                               \
    do {                                                                                           \
        snprintf(why, n, __VA_ARGS__);                                                             \
        return false;                                                                              \
    } while (0)
    if (!vl_same_name(a->host, b->host, flags))
        VL_DIFF("host '%s' != '%s'", a->host, b->host);
    if (!vl_same_name(a->plugin, b->plugin, flags))
        VL_DIFF("plugin '%s' != '%s'", a->plugin, b->plugin);
    if (!vl_same_name(a->plugin_instance, b->plugin_instance, flags))
        VL_DIFF("plugin_instance '%s' != '%s'", a->plugin_instance, b->plugin_instance);
    if (!vl_same_name(a->type, b->type, flags))
        VL_DIFF("type '%s' != '%s'", a->type, b->type);
    if (!vl_same_name(a->type_instance, b->type_instance, flags))
        VL_DIFF("type_instance '%s' != '%s'", a->type_instance, b->type_instance);
    if (a->time != b->time || a->interval != b->interval)
        VL_DIFF("time/interval %" PRIu64 "/%" PRIu64 " != %" PRIu64 "/%" PRIu64, a->time,
                a->interval, b->time, b->interval);
    if (a->ds_len != b->ds_len)
        VL_DIFF("ds_len %zu != %zu", a->ds_len, b->ds_len);
    if ((flags & VL_SAME_NULLS) && (a->ds == NULL) != (b->ds == NULL))
        VL_DIFF("ds NULL differs");
    for (size_t i = 0; i < a->ds_len; i++) {
        const struct kts_ds *x = &a->ds[i], *y = &b->ds[i];
        if (!vl_same_name(x->name, y->name, flags) || x->type != y->type)
            VL_DIFF("ds[%zu] name/type '%s'/%d != '%s'/%d", i, x->name, x->type, y->name, y->type);
        bool same = x->type == KTS_DS_GAUGE ? vl_same_double(x->value.gauge, y->value.gauge, flags)
                                            : x->value.counter == y->value.counter;
        if (!same)
            VL_DIFF("ds[%zu] value %.17g/%" PRIu64 " != %.17g/%" PRIu64, i, x->value.gauge,
                    x->value.counter, y->value.gauge, y->value.counter);
    }
    if (a->meta_len != b->meta_len)
        VL_DIFF("meta_len %zu != %zu", a->meta_len, b->meta_len);
    if ((flags & VL_SAME_NULLS) && (a->meta == NULL) != (b->meta == NULL))
        VL_DIFF("meta NULL differs");
    for (size_t i = 0; i < a->meta_len; i++) {
        const struct kts_meta *x = &a->meta[i], *y = &b->meta[i];
        if (strcmp(x->key, y->key) != 0 || x->type != y->type)
            VL_DIFF("meta[%zu] key/type '%s'/%d != '%s'/%d", i, x->key, x->type, y->key, y->type);
        bool same = true;
        switch (x->type) {
        case KTS_META_STRING:
            same = strcmp(x->value.string, y->value.string) == 0;
            break;
        case KTS_META_SIGNED_INT:
            same = x->value.sint == y->value.sint;
            break;
        case KTS_META_UNSIGNED_INT:
            same = x->value.uint == y->value.uint;
            break;
        case KTS_META_DOUBLE:
            same = vl_same_double(x->value.dbl, y->value.dbl, flags);
            break;
        case KTS_META_BOOLEAN:
            same = x->value.boolean == y->value.boolean;
            break;
        }
        if (!same)
            VL_DIFF("meta[%zu] '%s' value differs", i, x->key);
    }
    return true;
#undef VL_DIFF
}

#endif
