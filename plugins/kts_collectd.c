/* SPDX-License-Identifier: MIT */
#include "kts_collectd.h"

#include "kts_log.h"
#include "utils/metadata/meta_data.h"

static void log_sink(int level, const char *msg, void *opaque)
{
    (void)opaque;
    plugin_log(level, "%s", msg);
}

void kts_collectd_log_init(void)
{
    kts_log_set_sink(log_sink, NULL);
}

static int conf_copy(struct kts_conf *dst, const oconfig_item_t *src)
{
    for (int i = 0; i < src->values_num; i++) {
        const oconfig_value_t *v = &src->values[i];
        int rc;
        switch (v->type) {
        case OCONFIG_TYPE_STRING:
            rc = kts_conf_add_string(dst, v->value.string);
            break;
        case OCONFIG_TYPE_NUMBER:
            rc = kts_conf_add_number(dst, v->value.number);
            break;
        default:
            rc = kts_conf_add_boolean(dst, v->value.boolean);
            break;
        }
        if (rc < 0)
            return rc;
    }
    for (int i = 0; i < src->children_num; i++) {
        struct kts_conf *c = kts_conf_add_child(dst, src->children[i].key);
        if (c == NULL)
            return -ENOMEM;
        int rc = conf_copy(c, &src->children[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

struct kts_conf *kts_collectd_conf(const oconfig_item_t *ci, const char *file)
{
    struct kts_conf *root = kts_conf_new(ci->key);
    if (root == NULL)
        return NULL;
    /* Set before copying: kts_conf_add_child() gives children the parent's file. */
    root->file = strdup(file);
    if (root->file == NULL || conf_copy(root, ci) < 0) {
        kts_conf_free(root);
        return NULL;
    }
    return root;
}

static int meta_from(struct kts_vl *out, meta_data_t *md)
{
    char **toc = NULL;
    int n = meta_data_toc(md, &toc);
    if (n <= 0)
        return 0;
    out->meta = calloc((size_t)n, sizeof(*out->meta));
    if (out->meta == NULL) {
        for (int i = 0; i < n; i++)
            free(toc[i]);
        free(toc);
        return -ENOMEM;
    }
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        struct kts_meta *m = &out->meta[k];
        int type = meta_data_type(md, toc[i]);
        int rc = -1;
        switch (type) {
        case MD_TYPE_STRING:
            rc = meta_data_get_string(md, toc[i], &m->value.string);
            break;
        case MD_TYPE_SIGNED_INT:
            rc = meta_data_get_signed_int(md, toc[i], &m->value.sint);
            break;
        case MD_TYPE_UNSIGNED_INT:
            rc = meta_data_get_unsigned_int(md, toc[i], &m->value.uint);
            break;
        case MD_TYPE_DOUBLE:
            rc = meta_data_get_double(md, toc[i], &m->value.dbl);
            break;
        case MD_TYPE_BOOLEAN:
            rc = meta_data_get_boolean(md, toc[i], &m->value.boolean);
            break;
        }
        if (rc != 0) { /* vanished or unknown type: leave it out */
            free(toc[i]);
            continue;
        }
        m->key = toc[i]; /* ownership moves to out->meta */
        m->type = (enum kts_meta_type)type;
        k++;
    }
    free(toc);
    out->meta_len = k;
    return 0;
}

int kts_collectd_vl_from(struct kts_vl *out, struct kts_ds *ds_buf, const data_set_t *ds,
                         const value_list_t *vl)
{
    if ((size_t)ds->ds_num != vl->values_len)
        return -EINVAL;
    /* Same sizes (DATA_MAX_NAME_LEN == KTS_NAME_MAX) and NUL-terminated by collectd. */
    memcpy(out->host, vl->host, sizeof(out->host));
    memcpy(out->plugin, vl->plugin, sizeof(out->plugin));
    memcpy(out->plugin_instance, vl->plugin_instance, sizeof(out->plugin_instance));
    memcpy(out->type, vl->type, sizeof(out->type));
    memcpy(out->type_instance, vl->type_instance, sizeof(out->type_instance));
    out->time = vl->time;
    out->interval = vl->interval;
    for (size_t i = 0; i < vl->values_len; i++) {
        sstrncpy(ds_buf[i].name, ds->ds[i].name, sizeof(ds_buf[i].name));
        ds_buf[i].type = (enum kts_ds_type)ds->ds[i].type;
        switch (ds->ds[i].type) {
        case DS_TYPE_COUNTER:
            ds_buf[i].value.counter = vl->values[i].counter;
            break;
        case DS_TYPE_GAUGE:
            ds_buf[i].value.gauge = vl->values[i].gauge;
            break;
        case DS_TYPE_DERIVE:
            ds_buf[i].value.derive = vl->values[i].derive;
            break;
        case DS_TYPE_ABSOLUTE:
            ds_buf[i].value.absolute = vl->values[i].absolute;
            break;
        default:
            return -EINVAL;
        }
    }
    out->ds = ds_buf;
    out->ds_len = vl->values_len;
    out->meta = NULL;
    out->meta_len = 0;
    if (vl->meta != NULL)
        return meta_from(out, vl->meta);
    return 0;
}

void kts_collectd_vl_release(struct kts_vl *kvl)
{
    for (size_t i = 0; i < kvl->meta_len; i++) {
        if (kvl->meta[i].type == KTS_META_STRING)
            free(kvl->meta[i].value.string);
        free(kvl->meta[i].key);
    }
    free(kvl->meta);
    kvl->meta = NULL;
    kvl->meta_len = 0;
}

int kts_collectd_meta_add(meta_data_t *md, const struct kts_meta *meta, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct kts_meta *m = &meta[i];
        int rc;
        switch (m->type) {
        case KTS_META_STRING:
            rc = meta_data_add_string(md, m->key, m->value.string);
            break;
        case KTS_META_SIGNED_INT:
            rc = meta_data_add_signed_int(md, m->key, m->value.sint);
            break;
        case KTS_META_UNSIGNED_INT:
            rc = meta_data_add_unsigned_int(md, m->key, m->value.uint);
            break;
        case KTS_META_DOUBLE:
            rc = meta_data_add_double(md, m->key, m->value.dbl);
            break;
        case KTS_META_BOOLEAN:
            rc = meta_data_add_boolean(md, m->key, m->value.boolean);
            break;
        default:
            rc = -EINVAL;
            break;
        }
        if (rc != 0)
            return rc == -EINVAL ? -EINVAL : -ENOMEM;
    }
    return 0;
}

int kts_collectd_vl_to(value_list_t *out, value_t *values_buf, const struct kts_vl *in)
{
    *out = (value_list_t)VALUE_LIST_INIT;
    sstrncpy(out->host, in->host, sizeof(out->host));
    sstrncpy(out->plugin, in->plugin, sizeof(out->plugin));
    sstrncpy(out->plugin_instance, in->plugin_instance, sizeof(out->plugin_instance));
    sstrncpy(out->type, in->type, sizeof(out->type));
    sstrncpy(out->type_instance, in->type_instance, sizeof(out->type_instance));
    out->time = in->time;
    out->interval = in->interval;
    for (size_t i = 0; i < in->ds_len; i++) {
        switch (in->ds[i].type) {
        case KTS_DS_COUNTER:
            values_buf[i].counter = in->ds[i].value.counter;
            break;
        case KTS_DS_GAUGE:
            values_buf[i].gauge = in->ds[i].value.gauge;
            break;
        case KTS_DS_DERIVE:
            values_buf[i].derive = in->ds[i].value.derive;
            break;
        case KTS_DS_ABSOLUTE:
            values_buf[i].absolute = in->ds[i].value.absolute;
            break;
        default:
            return -EINVAL;
        }
    }
    out->values = values_buf;
    out->values_len = in->ds_len;
    out->meta = NULL;
    if (in->meta_len == 0)
        return 0;
    out->meta = meta_data_create();
    if (out->meta == NULL)
        return -ENOMEM;
    int rc = kts_collectd_meta_add(out->meta, in->meta, in->meta_len);
    if (rc < 0) {
        meta_data_destroy(out->meta);
        out->meta = NULL;
    }
    return rc;
}

void kts_collectd_dispatch_metric(const char *plugin, const char *plugin_instance, const char *type,
                                  const char *type_instance, value_t value)
{
    value_list_t vl = VALUE_LIST_INIT;
    vl.values = &value;
    vl.values_len = 1;
    sstrncpy(vl.plugin, plugin, sizeof(vl.plugin));
    sstrncpy(vl.plugin_instance, plugin_instance, sizeof(vl.plugin_instance));
    sstrncpy(vl.type, type, sizeof(vl.type));
    sstrncpy(vl.type_instance, type_instance, sizeof(vl.type_instance));
    plugin_dispatch_values(&vl);
}
