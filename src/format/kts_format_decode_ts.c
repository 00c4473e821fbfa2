/* SPDX-License-Identifier: MIT */
/*
 * kts_format decoder, the time-series JSON v1 (docs/FORMAT.md): which objects and arrays may
 * open where, the scalars of a value list, a data source and a meta entry, and the checks
 * when each of them closes. kts_format_decode_impl.h says how the decoder is split.
 */
#include "kts_assert.h"
#include "kts_format_decode_impl.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Clear what the next data source or meta entry object collects. */
static void tmp_clear(struct kts_decoder *d)
{
    memset(&d->tmp, 0, offsetof(struct tmp_obj, str_len));
    d->tmp.num_len = 0;
    d->tmp.str_len = 0;
}

int dec_ts_open(struct kts_decoder *d, struct frame *f, bool is_map)
{
    const char *got = is_map ? "an object" : "an array";
    switch (f->kind) {
    case FR_TS_ROOT:
        if (f->field == F_DS && !is_map)
            return dec_push(d, FR_TS_DS_ARRAY, false);
        if (f->field == F_META && is_map)
            return dec_push(d, FR_TS_META, true);
        if (f->field == F_UNKNOWN)
            return dec_push(d, FR_SKIP, is_map);
        return dec_fail(d, -EINVAL, "expected %s, got %s", dec_expect_of(f->kind, f->field), got);
    case FR_TS_DS_ARRAY:
        if (!is_map)
            return dec_fail(d, -EINVAL, "expected a data source object, got an array");
        if (f->count > KTS_FORMAT_MAX_DS)
            return dec_fail(d, -ERANGE, "more than %d data sources", KTS_FORMAT_MAX_DS);
        tmp_clear(d);
        return dec_push(d, FR_TS_DS, true);
    case FR_TS_META:
        if (!is_map)
            return dec_fail(d, -EINVAL,
                            "expected a meta entry object {\"type\",\"value\"}, got an array");
        if (!dec_meta_begin(d, f->key, f->key_len))
            return 0;
        tmp_clear(d);
        return dec_push(d, FR_TS_META_ENTRY, true);
    case FR_TS_DS:
    case FR_TS_META_ENTRY:
        if (f->field == F_UNKNOWN)
            return dec_push(d, FR_SKIP, is_map);
        return dec_fail(d, -EINVAL, "expected %s, got %s", dec_expect_of(f->kind, f->field), got);
    default:
        return dec_fail(d, -EINVAL, "unexpected %s", got);
    }
}

/* "v": the format version. */
static int root_version(struct kts_decoder *d, enum scalar k, const char *s, size_t len)
{
    bool neg;
    uint64_t v;
    if (k != SC_NUMBER || dec_parse_integer(s, len, &neg, &v) != 1 || neg)
        return dec_fail(d, -EINVAL, "expected the integer %d", KTS_FORMAT_VERSION);
    if (v != KTS_FORMAT_VERSION)
        return dec_fail(d, -EPROTONOSUPPORT,
                        "format version %.*s is not supported (this reader reads version %d)",
                        (int)(len < 20 ? len : 20), s, KTS_FORMAT_VERSION);
    dec_cur_vl(d)->seen |= BIT(F_V);
    return 1;
}

/* A field of a data source object: kept in d->tmp until the object closes. */
static int ds_scalar(struct kts_decoder *d, struct frame *f, enum scalar k, const char *s,
                     size_t len)
{
    switch (f->field) {
    case F_NAME:
        if (k != SC_STRING)
            return dec_fail(d, -EINVAL, "expected a string, got %s", dec_scalar_name(k));
        d->tmp.has_name = true;
        return dec_take_name(d, d->tmp.name, s, len, true);
    case F_TYPE: {
        enum kts_ds_type t;
        if (k != SC_STRING || dec_ds_type_from(s, len, &t) != 0)
            return dec_fail(d, -EINVAL,
                            "expected \"gauge\", \"derive\", \"counter\" or \"absolute\"");
        d->tmp.has_type = true;
        d->tmp.type = (int)t;
        return 1;
    }
    case F_VALUE:
        if (k != SC_NUMBER && k != SC_NULL)
            return dec_fail(d, -EINVAL, "expected a number or null, got %s", dec_scalar_name(k));
        d->tmp.has_value = true;
        d->tmp.value_kind = k;
        d->tmp.num_len = len;
        memcpy(d->tmp.num, s, len);
        return 1;
    default:
        return 1;
    }
}

/* A field of a meta entry object: kept in d->tmp until the object closes. */
static int meta_entry_scalar(struct kts_decoder *d, struct frame *f, enum scalar k, const char *s,
                             size_t len, bool b)
{
    switch (f->field) {
    case F_TYPE: {
        enum kts_meta_type t;
        if (k != SC_STRING || dec_meta_type_from(s, len, &t) != 0)
            return dec_fail(d, -EINVAL,
                            "expected \"string\", \"signed_int\", "
                            "\"unsigned_int\", \"double\" or \"boolean\"");
        d->tmp.has_type = true;
        d->tmp.type = (int)t;
        return 1;
    }
    case F_VALUE:
        d->tmp.has_value = true;
        d->tmp.value_kind = k;
        d->tmp.value_bool = b;
        if (k == SC_NUMBER) {
            memcpy(d->tmp.num, s, len);
            d->tmp.num_len = len;
        } else if (k == SC_STRING) {
            if (len > KTS_FORMAT_MAX_META_STRING)
                return dec_fail(d, -ERANGE, "meta string is %zu bytes long, at most %d are allowed",
                                len, KTS_FORMAT_MAX_META_STRING);
            memcpy(d->tmp.str, s, len);
            d->tmp.str_len = len;
        }
        return 1;
    default:
        return 1;
    }
}

int dec_ts_scalar(struct kts_decoder *d, struct frame *f, enum scalar k, const char *s, size_t len,
                  bool b)
{
    switch (f->kind) {
    case FR_TS_ROOT:
        if (f->field == F_V)
            return root_version(d, k, s, len);
        return dec_vl_scalar(d, f, k, s, len);
    case FR_TS_DS:
        return ds_scalar(d, f, k, s, len);
    case FR_TS_META_ENTRY:
        return meta_entry_scalar(d, f, k, s, len, b);
    case FR_TS_META:
        return dec_fail(d, -EINVAL, "expected a meta entry object {\"type\",\"value\"}, got %s",
                        dec_scalar_name(k));
    case FR_TS_DS_ARRAY:
        return dec_fail(d, -EINVAL, "expected a data source object, got %s", dec_scalar_name(k));
    default:
        return dec_fail(d, -EINVAL, "unexpected %s", dec_scalar_name(k));
    }
}

/* The data source object that just closed. */
static int close_ts_ds(struct kts_decoder *d)
{
    struct tmp_obj *t = &d->tmp;
    if (!t->has_name)
        return dec_fail(d, -EINVAL, "data source has no \"name\"");
    if (!t->has_type)
        return dec_fail(d, -EINVAL, "data source has no \"type\"");
    if (!t->has_value)
        return dec_fail(d, -EINVAL, "data source has no \"value\"");
    if (KTS_ARRAY_GROW(d->ds, d->cap_ds, d->n_ds + 1) != 0)
        return dec_fail(d, -ENOMEM, "out of memory");
    struct kts_ds *ds = &d->ds[d->n_ds];
    memcpy(ds->name, t->name, sizeof(ds->name));
    ds->type = (enum kts_ds_type)t->type;
    snprintf(d->subpath, sizeof(d->subpath), "value");
    int ok = dec_ds_value(d, ds, t->value_kind == SC_NULL, t->num, t->num_len);
    d->subpath[0] = '\0';
    if (!ok)
        return 0;
    d->n_ds++;
    dec_cur_vl(d)->vl.ds_len++;
    return 1;
}

/* The meta entry object that just closed; its key is the parent frame's current key. */
static int close_ts_meta_entry(struct kts_decoder *d, const struct frame *parent)
{
    KTS_ASSERT(parent != NULL && parent->kind == FR_TS_META); /* dec_ts_open() */
    struct tmp_obj *t = &d->tmp;
    if (!t->has_type)
        return dec_fail(d, -EINVAL, "meta entry has no \"type\"");
    if (!t->has_value)
        return dec_fail(d, -EINVAL, "meta entry has no \"value\"");
    struct pmeta m = {0};
    m.type = (enum kts_meta_type)t->type;
    enum scalar k = t->value_kind;
    int ok = 1;
    snprintf(d->subpath, sizeof(d->subpath), "value");
    switch (m.type) {
    case KTS_META_STRING:
        if (k != SC_STRING)
            return dec_fail(d, -EINVAL, "a string meta entry needs a string value, got %s",
                            dec_scalar_name(k));
        break;
    case KTS_META_SIGNED_INT:
        if (k != SC_NUMBER)
            return dec_fail(d, -EINVAL, "a signed_int meta entry needs a number, got %s",
                            dec_scalar_name(k));
        ok = dec_to_i64(d, t->num, t->num_len, "signed_int", &m.v.sint);
        break;
    case KTS_META_UNSIGNED_INT:
        if (k != SC_NUMBER)
            return dec_fail(d, -EINVAL, "an unsigned_int meta entry needs a number, got %s",
                            dec_scalar_name(k));
        ok = dec_to_u64(d, t->num, t->num_len, "unsigned_int", &m.v.uint);
        break;
    case KTS_META_DOUBLE:
        if (k == SC_NULL)
            m.v.dbl = NAN;
        else if (k == SC_NUMBER)
            ok = dec_to_double(d, t->num, t->num_len, "double", &m.v.dbl);
        else
            return dec_fail(d, -EINVAL, "a double meta entry needs a number or null, got %s",
                            dec_scalar_name(k));
        break;
    case KTS_META_BOOLEAN:
        if (k != SC_BOOL)
            return dec_fail(d, -EINVAL, "a boolean meta entry needs true or false, got %s",
                            dec_scalar_name(k));
        m.v.boolean = t->value_bool;
        break;
    }
    d->subpath[0] = '\0';
    if (!ok)
        return 0;
    return dec_meta_add(d, parent->key, parent->key_len, &m, t->str, t->str_len);
}

static int close_ts_root(struct kts_decoder *d, const struct frame *f)
{
    struct pvl *p = dec_cur_vl(d);
    if (!dec_check_required(d, p->seen | (f->seen & BIT(F_DS)),
                            BIT(F_V) | BIT(F_HOST) | BIT(F_PLUGIN) | BIT(F_TYPE) | BIT(F_TIME) |
                                BIT(F_DS)))
        return 0;
    if (p->vl.ds_len == 0)
        return dec_fail(d, -EINVAL, "\"ds\" is empty");
    return 1;
}

int dec_ts_close(struct kts_decoder *d, const struct frame *f, const struct frame *parent)
{
    switch (f->kind) {
    case FR_TS_DS:
        return close_ts_ds(d);
    case FR_TS_META_ENTRY:
        return close_ts_meta_entry(d, parent);
    case FR_TS_ROOT:
        d->root_done = true;
        return close_ts_root(d, f);
    default:
        return 1;
    }
}
