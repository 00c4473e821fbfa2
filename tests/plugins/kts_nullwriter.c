/* SPDX-License-Identifier: MIT */
/*
 * kts_nullwriter: a test/bench-only collectd writer that stores nothing (never installed).
 *
 *   <Plugin kts_nullwriter>
 *     Plugin "kts_testgen"   # count only value lists of this plugin (default: every one)
 *     Count 1000000          # log once when this many have been written (0 = never)
 *   </Plugin>
 *
 * What it guarantees (bench/read-bench relies on these):
 *  1. Its write callback does no work but one atomic increment per value list (two clock
 *     reads for the first and the Count-th), so a bench measures the cost of everything else.
 *  2. It logs once, when Count matching value lists have passed (INFO):
 *       "kts_nullwriter: N value lists written; first at F s, last at L s, R per second"
 *     F and L are seconds since its init callback; R = (N - 1) / (L - F).
 *  3. Registered at config time, so a read_kafka_ts loaded after it confirms a value only
 *     after this writer returned.
 */
#include "collectd.h"

#include "plugin.h"
#include "utils/common/common.h"

#include <stdatomic.h>
#include <time.h>

#define NW_NAME "kts_nullwriter"

static char *nw_plugin;
static uint64_t nw_count;
static int64_t nw_start_ns;
static atomic_uint_fast64_t nw_written;
static atomic_int_fast64_t nw_first_ns;

static int64_t nw_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int nw_write(const data_set_t *ds, const value_list_t *vl, user_data_t *ud)
{
    (void)ds;
    (void)ud;
    if (nw_plugin != NULL && strcmp(vl->plugin, nw_plugin) != 0)
        return 0;
    uint64_t n = atomic_fetch_add(&nw_written, 1) + 1;
    if (n == 1)
        atomic_store(&nw_first_ns, nw_now());
    if (nw_count > 0 && n == nw_count) {
        int64_t last = nw_now(), first = atomic_load(&nw_first_ns);
        double f = (double)(first - nw_start_ns) / 1e9, l = (double)(last - nw_start_ns) / 1e9;
        INFO(NW_NAME ": %" PRIu64 " value lists written; first at %.3f s, last at %.3f s, "
                     "%.0f per second",
             n, f, l, l > f ? (double)(n - 1) / (l - f) : 0.0);
    }
    return 0;
}

static int nw_init(void)
{
    nw_start_ns = nw_now();
    return 0;
}

static int nw_config(oconfig_item_t *ci)
{
    for (int i = 0; i < ci->children_num; i++) {
        oconfig_item_t *c = ci->children + i;
        int st = 0;
        if (strcasecmp(c->key, "Plugin") == 0) {
            st = cf_util_get_string(c, &nw_plugin);
        } else if (strcasecmp(c->key, "Count") == 0) {
            if (c->values_num == 1 && c->values[0].type == OCONFIG_TYPE_NUMBER &&
                c->values[0].value.number >= 0)
                nw_count = (uint64_t)c->values[0].value.number;
            else
                st = -1;
        } else {
            ERROR(NW_NAME ": unknown option \"%s\"", c->key);
            st = -1;
        }
        if (st != 0)
            return -1;
    }
    return 0;
}

void module_register(void);
__attribute__((visibility("default"))) void module_register(void)
{
    plugin_register_complex_config(NW_NAME, nw_config);
    plugin_register_init(NW_NAME, nw_init);
    plugin_register_write(NW_NAME, nw_write, NULL);
}
