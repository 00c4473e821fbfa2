/* SPDX-License-Identifier: MIT */
/* kts_output: the pipeline output → typed value list policies, named after the guarantees in
 * src/pipeline/kts_output.h. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "kts_filter.h"
#include "kts_output.h"
#include "tap.h"

static struct kts_typesdb_ds tds[2];
static struct kts_typesdb_type type = {.name = "t", .ds_num = 2, .ds = tds};

static void set_type(enum kts_ds_type a, enum kts_ds_type b)
{
    snprintf(tds[0].name, sizeof(tds[0].name), "rx");
    snprintf(tds[1].name, sizeof(tds[1].name), "tx");
    tds[0].type = a;
    tds[1].type = b;
}

/* An output of two data sources: (type, value) each. */
static struct kts_ds ds[2];
static struct kts_vl vl = {.host = "h", .plugin = "p", .type = "t", .ds_len = 2, .ds = ds};

static const struct kts_meta *find(const struct kts_vl *v, const char *key)
{
    for (size_t i = 0; i < v->meta_len; i++)
        if (strcmp(v->meta[i].key, key) == 0)
            return &v->meta[i];
    return NULL;
}

static void test_conversions(struct kts_output *out)
{
    uint16_t flags[2] = {KTS_PT_RAW, 0};
    set_type(KTS_DS_DERIVE, KTS_DS_GAUGE);
    ds[0] = (struct kts_ds){.type = KTS_DS_DERIVE, .value.derive = -12345678901234LL};
    ds[1] = (struct kts_ds){.type = KTS_DS_DERIVE, .value.derive = 7};
    is_int(kts_output_typed(&vl, flags, &type, "p1", &kts_output_read_kafka_ts, out), 0,
           "1. unchanged integer and an integer into a gauge: written");
    ok(out->vl.ds[0].type == KTS_DS_DERIVE && out->vl.ds[0].value.derive == -12345678901234LL,
       "1. an unchanged integer stays the same integer");
    ok(out->vl.ds[1].type == KTS_DS_GAUGE && out->vl.ds[1].value.gauge == 7.0,
       "1. an integer into a GAUGE data source becomes a double");
    ok(strcmp(out->vl.ds[0].name, "rx") == 0 && strcmp(out->vl.ds[1].name, "tx") == 0 &&
           strcmp(out->vl.host, "h") == 0,
       "1. data-source names are the output type's, the names the output's");

    /* 2. a changed value (a gauge) for an integer data source, under each policy */
    set_type(KTS_DS_COUNTER, KTS_DS_DERIVE);
    ds[0] = (struct kts_ds){.type = KTS_DS_GAUGE, .value.gauge = 41.5};
    ds[1] = (struct kts_ds){.type = KTS_DS_GAUGE, .value.gauge = -2.4};
    is_int(kts_output_typed(&vl, flags, &type, "p1", &kts_output_read_kafka_ts, out), -ERANGE,
           "2. REFUSE (read_kafka_ts): a changed value for a COUNTER refuses the value list");
    ok(out->why != NULL && strstr(out->why, "gauge but the output type") != NULL,
       "3. with the reason: %s", out->why ? out->why : "(none)");
    is_int(kts_output_typed(&vl, flags, &type, NULL, &kts_output_ts_filter, out), 0,
           "2. ROUND (ts_filter): rounded instead");
    ok(out->vl.ds[0].value.counter == 42 && out->vl.ds[1].value.derive == -2 && out->rounded == 2,
       "2. ROUND: 41.5 -> 42 (COUNTER), -2.4 -> -2 (DERIVE), 2 counted as rounded");

    ds[1] = (struct kts_ds){.type = KTS_DS_GAUGE, .value.gauge = NAN};
    uint16_t absent[2] = {0, KTS_PT_ABSENT};
    is_int(kts_output_typed(&vl, absent, &type, NULL, &kts_output_ts_filter, out), -ERANGE,
           "2. ROUND: NaN cannot be written as an integer");
    is_int(out->rounded, 0, "3. a refused value list counts nothing as rounded");
    ds[0] = (struct kts_ds){.type = KTS_DS_COUNTER, .value.counter = 5};
    is_int(kts_output_typed(&vl, absent, &type, "p1", &kts_output_read_kafka_ts, out), -ERANGE,
           "2. REFUSE: a NaN placeholder for an integer data source");
    ok(out->why != NULL && strstr(out->why, "without a value (NaN)") != NULL,
       "3. the reason names the missing value");
    set_type(KTS_DS_COUNTER, KTS_DS_ABSOLUTE);
    ds[1] = (struct kts_ds){.type = KTS_DS_GAUGE, .value.gauge = -0.4};
    is_int(kts_output_typed(&vl, flags, &type, NULL, &kts_output_ts_filter, out), 0,
           "2. ROUND: -0.4 rounds to 0, which an ABSOLUTE data source holds");
    ds[1].value.gauge = -0.7;
    is_int(kts_output_typed(&vl, flags, &type, NULL, &kts_output_ts_filter, out), -ERANGE,
           "2. ROUND: -0.7 rounds to -1, negative for an ABSOLUTE data source");
    set_type(KTS_DS_DERIVE, KTS_DS_DERIVE);
    ds[1].value.gauge = 1e19;
    is_int(kts_output_typed(&vl, flags, &type, NULL, &kts_output_ts_filter, out), -ERANGE,
           "2. ROUND: 1e19 is out of a DERIVE's range");

    type.ds_num = 1;
    is_int(kts_output_typed(&vl, flags, &type, "p1", &kts_output_read_kafka_ts, out), -EINVAL,
           "3. another number of data sources: -EINVAL");
    ok(out->why != NULL && strstr(out->why, "number of data sources") != NULL,
       "3. with the reason");
    type.ds_num = 2;

    /* kts-filter: no type, every data source a gauge under its own name */
    ds[0] = (struct kts_ds){.name = "value", .type = KTS_DS_COUNTER, .value.counter = 3};
    is_int(kts_output_typed(&vl, flags, NULL, NULL, &kts_output_kts_filter, out), 0,
           "1. no type (kts-filter): written");
    ok(out->vl.ds[0].type == KTS_DS_GAUGE && out->vl.ds[0].value.gauge == 3.0 &&
           strcmp(out->vl.ds[0].name, "value") == 0 && out->vl.ds[1].value.gauge == 1e19,
       "1. every data source a double under its own name");
    is_int(out->vl.meta_len, 0, "4. kts-filter's policy: no meta data");
}

static void test_meta(struct kts_output *out)
{
    struct kts_meta in_meta[3] = {
        {.key = "app", .type = KTS_META_STRING, .value.string = "x"},
        {.key = "kafka_ts:filled", .type = KTS_META_BOOLEAN, .value.boolean = true},
        {.key = "ts_filter:marked", .type = KTS_META_BOOLEAN, .value.boolean = true},
    };
    struct kts_vl v = vl;
    v.meta = in_meta;
    v.meta_len = 3;
    set_type(KTS_DS_GAUGE, KTS_DS_GAUGE);
    ds[0] = (struct kts_ds){.type = KTS_DS_GAUGE, .value.gauge = 1};
    ds[1] = (struct kts_ds){.type = KTS_DS_GAUGE, .value.gauge = 2};
    uint16_t flags[2] = {KTS_PT_REPLACED | KTS_PT_MARKED, KTS_PT_WARMING};
    is_int(kts_output_typed(&v, flags, &type, "cpu_smooth", &kts_output_read_kafka_ts, out), 0,
           "4. read_kafka_ts's policy: written");
    const char *want[] = {"app",
                          "ts_filter:marked",
                          "kafka_ts:pipeline",
                          "kafka_ts:replaced",
                          "kafka_ts:marked",
                          "kafka_ts:warming"};
    bool same = out->vl.meta_len == 6;
    for (size_t i = 0; same && i < 6; i++)
        same = strcmp(out->vl.meta[i].key, want[i]) == 0;
    ok(same, "4. the input's meta data without \"kafka_ts:\" keys, the pipeline, then the flags "
             "of any data source, in order");
    const struct kts_meta *pm = find(&out->vl, "kafka_ts:pipeline");
    ok(pm != NULL && pm->type == KTS_META_STRING && strcmp(pm->value.string, "cpu_smooth") == 0,
       "4. kafka_ts:pipeline names the pipeline");

    is_int(kts_output_typed(&v, flags, &type, "cpu_smooth", &kts_output_ts_filter, out), 0,
           "4. ts_filter's policy: written");
    ok(out->vl.meta_len == 3 && strcmp(out->vl.meta[0].key, "ts_filter:replaced") == 0 &&
           strcmp(out->vl.meta[1].key, "ts_filter:marked") == 0 &&
           strcmp(out->vl.meta[2].key, "ts_filter:warming") == 0 &&
           out->vl.meta[2].type == KTS_META_BOOLEAN && out->vl.meta[2].value.boolean,
       "4. ts_filter: only the \"ts_filter:\" flags (the plugin keeps collectd's meta data)");

    const struct kts_ds *ds_before = out->vl.ds;
    const struct kts_meta *meta_before = out->vl.meta;
    kts_output_typed(&v, flags, &type, "cpu_smooth", &kts_output_read_kafka_ts, out);
    kts_output_typed(&v, flags, &type, "cpu_smooth", &kts_output_ts_filter, out);
    ok(out->vl.ds == ds_before && out->vl.meta == meta_before,
       "5. the scratch is reused: no allocation once grown");
}

int main(void)
{
    plan(26);
    struct kts_output out;
    memset(&out, 0, sizeof(out));
    test_conversions(&out);
    test_meta(&out);
    kts_output_fini(&out);
    return done_testing();
}
