/* SPDX-License-Identifier: MIT */
/*
 * kts_collectd: the glue every plugin shares (compiled into each plugin .so; hidden symbols).
 * Besides the plugin sources, the only code that includes collectd's headers.
 */
#ifndef KTS_COLLECTD_H
#define KTS_COLLECTD_H

#include "collectd.h"

#include "plugin.h"
#include "utils/common/common.h"

#include "kts_conf.h"
#include "kts_value.h"

/* Route the library's kts_log() lines to collectd's plugin_log(). */
void kts_collectd_log_init(void);

/* Deep-copy collectd's config tree into a new kts_conf tree (caller frees with kts_conf_free);
 * `file` names its origin in messages. NULL when out of memory. */
struct kts_conf *kts_collectd_conf(const oconfig_item_t *ci, const char *file);

/*
 * Fill `out` from collectd's value list. `ds_buf` (caller-owned, ds->ds_num entries) receives
 * the data sources; when vl has meta data, out->meta is allocated and must be released with
 * kts_collectd_vl_release(). Returns 0 or -ENOMEM / -EINVAL (ds/vl mismatch).
 */
int kts_collectd_vl_from(struct kts_vl *out, struct kts_ds *ds_buf, const data_set_t *ds,
                         const value_list_t *vl);
void kts_collectd_vl_release(struct kts_vl *kvl);

/* Dispatch one self-metric value (host: collectd's Hostname). The strings are copied
 * (truncated to collectd's name length). */
void kts_collectd_dispatch_metric(const char *plugin, const char *plugin_instance, const char *type,
                                  const char *type_instance, value_t value);

/*
 * The reverse: fill collectd's `out` from `in` (only read). `values_buf` (caller-owned,
 * in->ds_len entries) receives the values; out->meta is a new meta_data_t holding in's meta
 * data (NULL when there is none), owned by the caller: meta_data_destroy(out->meta) after
 * plugin_dispatch_values(). Returns 0, -ENOMEM, or -EINVAL (unknown DS or meta type).
 */
int kts_collectd_vl_to(value_list_t *out, value_t *values_buf, const struct kts_vl *in);

/* Add the `n` entries of `meta` to collectd's `md` (a key already there is replaced). Returns 0,
 * -ENOMEM, or -EINVAL (unknown meta type); on error some entries may have been added. */
int kts_collectd_meta_add(meta_data_t *md, const struct kts_meta *meta, size_t n);

#endif
