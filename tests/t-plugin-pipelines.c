/* SPDX-License-Identifier: MIT */
/* kts_plugin_pipelines: tests named after the guarantees in src/pipeline/kts_plugin_pipelines.h. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kts_conf.h"
#include "kts_format.h"
#include "kts_log.h"
#include "kts_plugin_pipelines.h"
#include "tap.h"

static char logbuf[16384];
static void sink(int level, const char *msg, void *opaque)
{
    (void)level;
    (void)opaque;
    size_t l = strlen(logbuf);
    snprintf(logbuf + l, sizeof(logbuf) - l, "%s\n", msg);
    printf("# log: %s\n", msg);
}

static char typesdb_path[] = "/tmp/t-plugin-pipelines-types.XXXXXX";
static struct kts_strv typesdb;

#define MAXO 256
static struct kts_vl outs[MAXO];
static size_t nouts;

static int collect(const struct kts_vl *vl, void *ctx)
{
    (void)ctx;
    if (nouts >= MAXO)
        return -ENOSPC;
    int rc = kts_vl_copy(&outs[nouts], vl);
    if (rc == 0)
        nouts++;
    return rc;
}

static void outs_clear(void)
{
    for (size_t i = 0; i < nouts; i++)
        kts_vl_fini(&outs[i]);
    nouts = 0;
}

static const struct kts_meta *meta(const struct kts_vl *vl, const char *key)
{
    for (size_t i = 0; i < vl->meta_len; i++)
        if (strcmp(vl->meta[i].key, key) == 0)
            return &vl->meta[i];
    return NULL;
}

static char last_err[512]; /* kts_plugin_pipelines_config()'s error text of the last setup() */

static struct kts_plugin_pipelines *setup(const char *text, int *rc)
{
    struct kts_conf *root = NULL;
    char *err = last_err;
    const size_t errsz = sizeof(last_err);
    struct kts_plugin_pipelines *ps = NULL;
    logbuf[0] = '\0';
    err[0] = '\0';
    *rc = kts_conf_parse(text, strlen(text), "t-plugin-pipelines", &root, err, errsz);
    if (*rc < 0) {
        diag("parse: %s", err);
        return NULL;
    }
    *rc = kts_plugin_pipelines_config(root, &typesdb, "t-plugin-pipelines", &ps, err, errsz);
    kts_conf_free(root);
    return ps;
}

/* One value list with one data source. */
static struct kts_ds in_ds;
static struct kts_meta in_meta = {
    .key = "agent:note", .type = KTS_META_STRING, .value.string = "hello"};
static struct kts_vl mk(const char *plugin, const char *type, double t, enum kts_ds_type dt,
                        double v)
{
    struct kts_vl vl;
    memset(&vl, 0, sizeof(vl));
    snprintf(vl.host, sizeof(vl.host), "h1");
    snprintf(vl.plugin, sizeof(vl.plugin), "%s", plugin);
    snprintf(vl.type, sizeof(vl.type), "%s", type);
    vl.time = KTS_TIME_FROM_DOUBLE(t);
    vl.interval = KTS_TIME_FROM_S(10);
    snprintf(in_ds.name, sizeof(in_ds.name), "value");
    in_ds.type = dt;
    if (dt == KTS_DS_GAUGE)
        in_ds.value.gauge = v;
    else
        in_ds.value.derive = (int64_t)v;
    vl.ds = &in_ds;
    vl.ds_len = 1;
    vl.meta = &in_meta;
    vl.meta_len = 1;
    return vl;
}

static int feed(struct kts_plugin_pipelines *ps, const char *plugin, const char *type, double t,
                enum kts_ds_type dt, double v)
{
    struct kts_vl vl = mk(plugin, type, t, dt, v);
    return kts_plugin_pipelines_process(&vl, collect, NULL, ps);
}

static void test_1_config(void)
{
    int rc;
    struct kts_plugin_pipelines *ps = setup("Topic \"x\"\n", &rc);
    ok(rc == 0 && ps == NULL, "1: a block without <Pipeline> gives no set and no error");

    ps = setup("PipelineMode \"copy\"\n"
               "<Pipeline \"a\">\n <Filter \"smooth\">\n </Filter>\n</Pipeline>\n"
               "<Pipeline \"a\">\n <Filter \"smooth\">\n </Filter>\n OutputType \"derive\"\n"
               " OutputHostSuffix \"-x\"\n</Pipeline>\n"
               "<Pipeline \"b\">\n <Filter \"smooth\">\n  Tua 3\n </Filter>\n</Pipeline>\n"
               "<Pipeline \"c\">\n <Filter \"smooth\">\n </Filter>\n"
               " OutputType \"nosuchtype\"\n</Pipeline>\n",
               &rc);
    is_int(rc, -EINVAL, "1: an invalid configuration fails");
    ok(ps == NULL, "1: ... and gives no set");
    ok(strstr(logbuf, "pipeline \"a\": PipelineMode \"copy\" needs an Output* option") != NULL,
       "1: copy mode without an Output* option is refused (3)");
    ok(strstr(logbuf, "two <Pipeline> blocks are named \"a\"") != NULL,
       "1: duplicate pipeline names are refused");
    ok(strstr(logbuf, "OutputType \"derive\": data source \"value\" is DERIVE, but filtered "
                      "values are gauges") != NULL,
       "1: OutputType with a DERIVE data source is refused naming type and data source (4)");
    ok(strstr(logbuf, "Tua") != NULL, "1: a filter's unknown option is reported");
    ok(strstr(logbuf, "OutputType \"nosuchtype\" is not in types.db") != NULL,
       "1: an unknown OutputType is refused; every problem of the block was reported");
    /* The summary counts every problem listed, and filters are numbered from 1 in the order
     * written, an invalid <Filter> block included. */
    ps = setup("<Pipeline \"p\">\n <Filter \"nosuch\">\n </Filter>\n"
               " <Filter \"outlier\">\n  Method \"iqr\"\n </Filter>\n Nope 3\n</Pipeline>\n",
               &rc);
    ok(rc == -EINVAL && ps == NULL, "1: a pipeline with three problems is refused");
    ok(strstr(logbuf, "pipeline \"p\": filter #1: unknown filter \"nosuch\"") != NULL &&
           strstr(logbuf, "pipeline \"p\": filter #2 \"outlier\": invalid value \"iqr\"") != NULL &&
           strstr(logbuf, "unknown option \"Nope\"") != NULL,
       "1: the three problems are listed; the second <Filter> block is filter #2");
    is_str(last_err, "3 problem(s) in the <Pipeline> configuration",
           "1: the summary counts the three problems listed");
    ps = setup("PipelineMode \"both\"\n<Pipeline \"a\">\n</Pipeline>\n", &rc);
    ok(rc == -EINVAL &&
           strstr(logbuf, "invalid value \"both\" for option \"PipelineMode\"") != NULL,
       "1: an unknown PipelineMode is refused");
}

static void test_2_3_routing_modes(void)
{
    int rc;
    struct kts_plugin_pipelines *ps =
        setup("<Pipeline \"first\">\n <Match>\n  Plugin \"p\"\n </Match>\n"
              " <Filter \"smooth\">\n  Tau 10\n </Filter>\n"
              " OutputPluginInstanceSuffix \"-f\"\n</Pipeline>\n"
              "<Pipeline \"second\">\n <Match>\n  Plugin \"p\" \"q\"\n"
              " </Match>\n <Filter \"smooth\">\n  Tau 10\n </Filter>\n"
              "</Pipeline>\n",
              &rc);
    ok(rc == 0 && ps != NULL && kts_plugin_pipelines_count(ps) == 2, "2: two pipelines configured");
    if (ps == NULL)
        return;
    ok(kts_plugin_pipelines_copy_mode(ps, 0) && !kts_plugin_pipelines_copy_mode(ps, 1),
       "3: auto = copy with an Output* option, replace without");
    feed(ps, "other", "gauge", 100, KTS_DS_GAUGE, 1.5);
    ok(nouts == 1 && strcmp(outs[0].plugin, "other") == 0 && outs[0].ds[0].value.gauge == 1.5 &&
           meta(&outs[0], KTS_META_PIPELINE) == NULL,
       "2: a value list no pipeline selects is emitted unchanged");
    outs_clear();
    feed(ps, "p", "gauge", 100, KTS_DS_GAUGE, 2.0);
    ok(nouts == 2 && strcmp(outs[0].plugin_instance, "") == 0 &&
           strcmp(outs[1].plugin_instance, "f") == 0,
       "2, 3: the first matching pipeline runs; copy emits raw then filtered under its name "
       "(\"-f\" on an empty plugin instance: \"f\")");
    const struct kts_meta *m = nouts == 2 ? meta(&outs[1], KTS_META_PIPELINE) : NULL;
    ok(m != NULL && m->type == KTS_META_STRING && strcmp(m->value.string, "first") == 0 &&
           meta(&outs[1], "agent:note") != NULL && meta(&outs[0], KTS_META_PIPELINE) == NULL,
       "5: the filtered value list names its pipeline and keeps the input's meta data");
    outs_clear();
    feed(ps, "q", "gauge", 100, KTS_DS_GAUGE, 3.0);
    ok(nouts == 1 && strcmp(outs[0].plugin, "q") == 0 &&
           meta(&outs[0], KTS_META_PIPELINE) != NULL &&
           strcmp(meta(&outs[0], KTS_META_PIPELINE)->value.string, "second") == 0,
       "3: replace mode emits only the pipeline's output, under the input's name");
    outs_clear();
    kts_plugin_pipelines_destroy(ps);
}

static void test_4_types(void)
{
    int rc;
    struct kts_plugin_pipelines *ps =
        setup("<Pipeline \"rate\">\n <Match>\n  Plugin \"r\"\n </Match>\n"
              " <Filter \"difference\">\n </Filter>\n OutputType \"gauge\"\n"
              " OutputPluginInstanceSuffix \"-rate\"\n</Pipeline>\n"
              "<Pipeline \"badrate\">\n <Match>\n  Plugin \"b\"\n </Match>\n"
              " <Filter \"difference\">\n </Filter>\n OutputPluginInstanceSuffix \"-rate\"\n"
              "</Pipeline>\n"
              "<Pipeline \"dd\">\n <Match>\n  Plugin \"d\"\n </Match>\n"
              " <Filter \"dedup\">\n </Filter>\n OutputPluginInstanceSuffix \"-dd\"\n"
              "</Pipeline>\n"
              "<Pipeline \"ddg\">\n <Match>\n  Plugin \"g\"\n </Match>\n"
              " <Filter \"dedup\">\n </Filter>\n OutputType \"gauge\"\n"
              " OutputPluginInstanceSuffix \"-g\"\n</Pipeline>\n",
              &rc);
    ok(rc == 0 && ps != NULL, "4: pipelines configured");
    if (ps == NULL)
        return;
    feed(ps, "r", "derive", 100, KTS_DS_DERIVE, 1000);
    feed(ps, "r", "derive", 110, KTS_DS_DERIVE, 1250);
    ok(nouts == 3 && strcmp(outs[2].type, "gauge") == 0 && outs[2].ds[0].type == KTS_DS_GAUGE &&
           outs[2].ds[0].value.gauge == 25.0 && strcmp(outs[2].ds[0].name, "value") == 0,
       "4: a DERIVE rate comes out as a gauge of OutputType \"gauge\" (25/s)");
    outs_clear();
    feed(ps, "b", "derive", 100, KTS_DS_DERIVE, 1000);
    feed(ps, "b", "derive", 110, KTS_DS_DERIVE, 1250);
    struct kts_pipeline_stats st;
    struct kts_plugin_pipelines_counters c;
    struct kts_filter_stats fs[4];
    kts_plugin_pipelines_snapshot(ps, 1, &st, &c, fs, 4);
    ok(nouts == 2 && c.type_refused == 1 && strcmp(outs[1].plugin_instance, "") == 0,
       "4: without OutputType a changed value for a DERIVE data source is refused and counted; "
       "the raw values still go out");
    ok(strstr(logbuf, "set OutputType to an all-gauge type") != NULL,
       "4: ... with advice in the log");
    outs_clear();
    feed(ps, "d", "derive", 100, KTS_DS_DERIVE, 1000);
    ok(nouts == 2 && outs[1].ds[0].type == KTS_DS_DERIVE && outs[1].ds[0].value.derive == 1000,
       "4: an unchanged DERIVE value keeps its type without OutputType");
    outs_clear();
    feed(ps, "g", "derive", 100, KTS_DS_DERIVE, 9007199254740993.0);
    ok(nouts == 2 && outs[1].ds[0].type == KTS_DS_GAUGE &&
           outs[1].ds[0].value.gauge == (double)(int64_t)9007199254740993.0,
       "4: an unchanged integer into a gauge output type is converted");
    outs_clear();
    kts_plugin_pipelines_destroy(ps);
}

static void test_5_6_flags_held(void)
{
    int rc;
    struct kts_plugin_pipelines *ps =
        setup("<Pipeline \"fill\">\n <Match>\n  Plugin \"f\"\n </Match>\n"
              " <Filter \"fill\">\n  MaxGap 3\n </Filter>\n OutputHostSuffix \"-f\"\n"
              "</Pipeline>\n"
              "<Pipeline \"out\">\n <Match>\n  Plugin \"o\"\n </Match>\n"
              " <Filter \"outlier\">\n  MinPoints 5\n  Window 1000\n </Filter>\n"
              " OutputHostSuffix \"-o\"\n</Pipeline>\n"
              "<Pipeline \"flat\">\n <Match>\n  Plugin \"s\"\n </Match>\n"
              " <Filter \"dedup\">\n  SuppressUnchanged true\n  Heartbeat 0\n </Filter>\n"
              "</Pipeline>\n",
              &rc);
    ok(rc == 0 && ps != NULL, "5: pipelines configured");
    if (ps == NULL)
        return;
    feed(ps, "f", "gauge", 100, KTS_DS_GAUGE, 1);
    outs_clear();
    feed(ps, "f", "gauge", 130, KTS_DS_GAUGE, 4);
    /* raw 130, filled 110, filled 120, kept 130 */
    const struct kts_meta *m1 = nouts == 4 ? meta(&outs[1], KTS_META_FILLED) : NULL;
    ok(nouts == 4 && m1 != NULL && m1->type == KTS_META_BOOLEAN && m1->value.boolean &&
           outs[1].ds[0].value.gauge == 2.0 && meta(&outs[3], KTS_META_FILLED) == NULL,
       "5: filled points carry kafka_ts:filled = true, the real point does not");
    outs_clear();
    for (int i = 0; i < 8; i++)
        feed(ps, "o", "gauge", 100 + 10 * i, KTS_DS_GAUGE, 10 + (i % 3));
    outs_clear();
    feed(ps, "o", "gauge", 200, KTS_DS_GAUGE, 1000);
    ok(nouts == 2 && meta(&outs[1], KTS_META_REPLACED) != NULL && outs[1].ds[0].value.gauge < 20,
       "5: a replaced outlier carries kafka_ts:replaced");
    outs_clear();
    /* (6): a flat run is held back; the change releases its last point in the same call. */
    feed(ps, "s", "gauge", 100, KTS_DS_GAUGE, 5);
    feed(ps, "s", "gauge", 110, KTS_DS_GAUGE, 5);
    feed(ps, "s", "gauge", 120, KTS_DS_GAUGE, 5);
    size_t before = nouts;
    outs_clear();
    feed(ps, "s", "gauge", 130, KTS_DS_GAUGE, 7);
    ok(before == 1 && nouts == 2 && outs[0].time == KTS_TIME_FROM_S(120) &&
           outs[1].time == KTS_TIME_FROM_S(130),
       "6: held points come out while the value list that releases them is processed");
    outs_clear();
    struct kts_pipeline_stats st;
    struct kts_plugin_pipelines_counters c;
    struct kts_filter_stats fs[4];
    size_t nf = kts_plugin_pipelines_snapshot(ps, 0, &st, &c, fs, 4);
    ok(nf == 1 && c.filled == 2 && c.kept == 2 && c.raw == 2 && c.emitted == 4 &&
           fs[0].filled == 2 && st.series == 1,
       "7: snapshot: fill pipeline counted 2 filled, 2 kept, 2 raw, 4 emitted, 1 series");
    kts_plugin_pipelines_destroy(ps);
}

int main(void)
{
    kts_log_set_sink(sink, NULL);
    int fd = mkstemp(typesdb_path);
    const char *types = "gauge value:GAUGE:U:U\nderive value:DERIVE:0:U\n"
                        "if_octets rx:DERIVE:0:U, tx:DERIVE:0:U\n";
    if (fd < 0 || write(fd, types, strlen(types)) != (ssize_t)strlen(types)) {
        printf("Bail out! cannot write %s\n", typesdb_path);
        return 1;
    }
    close(fd);
    kts_strv_push(&typesdb, typesdb_path);
    plan(29);
    test_1_config();
    test_2_3_routing_modes();
    test_4_types();
    test_5_6_flags_held();
    unlink(typesdb_path);
    kts_strv_free(&typesdb);
    return done_testing();
}
