/* SPDX-License-Identifier: MIT */
/*
 * kts_format decoder, collectd's JSON (an array of value lists, as collectd's write_http and
 * format_json write them; docs/FORMAT.md): which arrays and objects may open where, the
 * scalars of "values", "dstypes", "dsnames" and "meta", and the checks when a value list
 * closes. kts_format_decode_impl.h says how the decoder is split.
 */
#include "kts_assert.h"
#include "kts_format_decode_impl.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

int dec_cd_open(struct kts_decoder *d, struct frame *f, bool is_map)
{
    const char *got = is_map ? "an object" : "an array";
    switch (f->kind) {
    case FR_CD_ROOT:
        if (!is_map)
            return dec_fail(d, -EINVAL, "expected a value list object, got an array");
        if (!dec_vl_begin(d))
            return 0;
        return dec_push(d, FR_CD_VL, true);
    case FR_CD_VL:
        if (!is_map && f->field == F_VALUES)
            return dec_push(d, FR_CD_VALUES, false);
        if (!is_map && f->field == F_DSTYPES)
            return dec_push(d, FR_CD_DSTYPES, false);
        if (!is_map && f->field == F_DSNAMES)
            return dec_push(d, FR_CD_DSNAMES, false);
        if (is_map && f->field == F_META)
            return dec_push(d, FR_CD_META, true);
        if (f->field == F_UNKNOWN)
            return dec_push(d, FR_SKIP, is_map);
        return dec_fail(d, -EINVAL, "expected %s, got %s", dec_expect_of(f->kind, f->field), got);
    case FR_CD_VALUES:
    case FR_CD_DSTYPES:
    case FR_CD_DSNAMES:
    case FR_CD_META:
        return dec_fail(d, -EINVAL, "expected a scalar, got %s", got);
    default:
        return dec_fail(d, -EINVAL, "unexpected %s", got);
    }
}

/* An element of "values": kept as text until "dstypes" is known, when the value list closes. */
static int value_scalar(struct kts_decoder *d, enum scalar k, const char *s, size_t len)
{
    if (k != SC_NUMBER && k != SC_NULL)
        return dec_fail(d, -EINVAL, "expected a number or null, got %s", dec_scalar_name(k));
    KTS_ASSERT(d->cd_n_values < KTS_FORMAT_MAX_DS); /* dec_cd_scalar() checked the count */
    struct cd_value *v = &d->cd_values[d->cd_n_values++];
    v->is_null = k == SC_NULL;
    v->len = len;
    memcpy(v->text, s, len);
    return 1;
}

static int dstype_scalar(struct kts_decoder *d, enum scalar k, const char *s, size_t len)
{
    enum kts_ds_type t;
    if (k != SC_STRING || dec_ds_type_from(s, len, &t) != 0)
        return dec_fail(d, -EINVAL, "expected \"gauge\", \"derive\", \"counter\" or \"absolute\"");
    KTS_ASSERT(d->cd_n_types < KTS_FORMAT_MAX_DS); /* dec_cd_scalar() checked the count */
    d->cd_types[d->cd_n_types++] = t;
    return 1;
}

/*
 * A value of "meta". collectd writes meta values untyped: strings, integers (negative ones are
 * signed), other numbers (doubles), booleans; null is what our collectd encoder writes for a
 * non-finite double.
 */
static int meta_scalar(struct kts_decoder *d, struct frame *f, enum scalar k, const char *s,
                       size_t len, bool b)
{
    if (!dec_meta_begin(d, f->key, f->key_len))
        return 0;
    struct pmeta m = {0};
    switch (k) {
    case SC_STRING:
        m.type = KTS_META_STRING;
        break;
    case SC_BOOL:
        m.type = KTS_META_BOOLEAN;
        m.v.boolean = b;
        break;
    case SC_NULL:
        m.type = KTS_META_DOUBLE;
        m.v.dbl = NAN;
        break;
    case SC_NUMBER: {
        bool neg;
        uint64_t mag;
        int r = dec_parse_integer(s, len, &neg, &mag);
        if (r == 1 && !neg) {
            m.type = KTS_META_UNSIGNED_INT;
            m.v.uint = mag;
        } else if (r == 1 && mag <= (uint64_t)INT64_MAX + 1) {
            m.type = KTS_META_SIGNED_INT;
            m.v.sint = (int64_t)(0 - mag);
        } else {
            m.type = KTS_META_DOUBLE;
            if (!dec_to_double(d, s, len, "meta", &m.v.dbl))
                return 0;
        }
        break;
    }
    }
    return dec_meta_add(d, f->key, f->key_len, &m, s, len);
}

int dec_cd_scalar(struct kts_decoder *d, struct frame *f, enum scalar k, const char *s, size_t len,
                  bool b)
{
    switch (f->kind) {
    case FR_CD_VL:
        return dec_vl_scalar(d, f, k, s, len);
    case FR_CD_VALUES:
    case FR_CD_DSTYPES:
    case FR_CD_DSNAMES:
        if (f->count > KTS_FORMAT_MAX_DS)
            return dec_fail(d, -ERANGE, "more than %d data sources", KTS_FORMAT_MAX_DS);
        if (f->kind == FR_CD_VALUES)
            return value_scalar(d, k, s, len);
        if (f->kind == FR_CD_DSTYPES)
            return dstype_scalar(d, k, s, len);
        if (k != SC_STRING)
            return dec_fail(d, -EINVAL, "expected a string, got %s", dec_scalar_name(k));
        KTS_ASSERT(d->cd_n_names < KTS_FORMAT_MAX_DS);
        return dec_take_name(d, d->cd_names[d->cd_n_names++], s, len, true);
    case FR_CD_META:
        return meta_scalar(d, f, k, s, len, b);
    case FR_CD_ROOT:
        return dec_fail(d, -EINVAL, "expected a value list object, got %s", dec_scalar_name(k));
    default:
        return dec_fail(d, -EINVAL, "unexpected %s", dec_scalar_name(k));
    }
}

static int close_cd_vl(struct kts_decoder *d, const struct frame *f)
{
    struct pvl *p = dec_cur_vl(d);
    if (!dec_check_required(d, p->seen | f->seen,
                            BIT(F_HOST) | BIT(F_PLUGIN) | BIT(F_TYPE) | BIT(F_TIME) |
                                BIT(F_VALUES) | BIT(F_DSTYPES) | BIT(F_DSNAMES)))
        return 0;
    size_t n = d->cd_n_values;
    if (n == 0)
        return dec_fail(d, -EINVAL, "\"values\" is empty");
    if (d->cd_n_types != n || d->cd_n_names != n)
        return dec_fail(d, -EINVAL,
                        "\"values\", \"dstypes\" and \"dsnames\" differ in length (%zu, %zu, %zu)",
                        n, d->cd_n_types, d->cd_n_names);
    if (KTS_ARRAY_GROW(d->ds, d->cap_ds, d->n_ds + n) != 0)
        return dec_fail(d, -ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        struct kts_ds *ds = &d->ds[d->n_ds + i];
        memcpy(ds->name, d->cd_names[i], sizeof(ds->name));
        ds->type = (d->flags & KTS_DECODE_RATES_AS_GAUGE) ? KTS_DS_GAUGE : d->cd_types[i];
        const struct cd_value *v = &d->cd_values[i];
        snprintf(d->subpath, sizeof(d->subpath), "values[%zu]", i);
        int ok = dec_ds_value(d, ds, v->is_null, v->text, v->len);
        d->subpath[0] = '\0';
        if (!ok)
            return 0;
    }
    d->n_ds += n;
    p->vl.ds_len = n;
    return 1;
}

int dec_cd_close(struct kts_decoder *d, const struct frame *f)
{
    switch (f->kind) {
    case FR_CD_VL:
        return close_cd_vl(d, f);
    case FR_CD_ROOT:
        d->root_done = true;
        if (f->count == 0)
            return dec_fail(d, -EINVAL, "the array holds no value list");
        return 1;
    default:
        return 1;
    }
}
