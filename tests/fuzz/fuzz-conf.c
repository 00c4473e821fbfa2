/* SPDX-License-Identifier: MIT */
/*
 * fuzz-conf: libFuzzer target for configuration: the collectd.conf syntax parser
 * (kts_conf_parse), the option tables of write_kafka_ts (kts_producer_options) and
 * read_kafka_ts (kts_consumer_options), and the <Pipeline> blocks with every filter's option
 * table (kts_plugin_pipelines_config → kts_pipeline_config), as the plugins and kts-filter use
 * them. A pipeline set that configures is then run over a few value lists and flushed, so filter
 * state sized from fuzzed options is exercised too.
 *
 * Oracles, each an abort() on failure (kts_conf.h guarantees):
 *  1. A failed parse returns -EINVAL with "FILE:LINE: what" in errbuf (2).
 *  2. A block refused by kts_opt_apply() or kts_plugin_pipelines_config() logged at least one error
 *     line (3: every problem is reported before failing, none silently).
 *  3. kts_conf_describe_values() stays within its buffer (checked by ASan with exact sizes).
 * Plus ASan/UBSan/LeakSanitizer. Options that read files (PropertyFile, TypesDB) are left
 * out: a fuzzed path could name a FIFO or /dev/zero. Build and run: tests/fuzz/build, run.
 */
#include "fuzz-common.h"

#include "kts_conf.h"
#include "kts_consumer.h"
#include "kts_plugin_pipelines.h"
#include "kts_producer.h"

#include <stdint.h>
#include <strings.h>

static unsigned long errors_logged;

static void count_sink(int level, const char *msg, void *opaque)
{
    (void)opaque;
    if (level <= KTS_LOG_ERR)
        errors_logged++;
    if (getenv("KTS_FUZZ_LOG") != NULL)
        fprintf(stderr, "log %d: %s\n", level, msg);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    kts_log_set_sink(count_sink, NULL);
    return 0;
}

/* A shallow view of `block` without the children `skip` says no to (the plugins do the same
 * for the keys kts_plugin_pipelines owns). view->children is the caller's to free(). */
static int view_without(const struct kts_conf *block, struct kts_conf *view,
                        bool (*skip)(const char *key))
{
    *view = *block;
    view->children =
        calloc(block->children_num > 0 ? (size_t)block->children_num : 1, sizeof(*view->children));
    view->children_num = 0;
    view->children_cap = block->children_num > 0 ? (size_t)block->children_num : 1;
    if (view->children == NULL)
        return -ENOMEM;
    for (int i = 0; i < block->children_num; i++)
        if (!skip(block->children[i].key))
            view->children[view->children_num++] = block->children[i];
    return 0;
}

static bool reads_files(const char *key)
{
    return strcasecmp(key, "PropertyFile") == 0 || strcasecmp(key, "TypesDB") == 0;
}

static bool consumer_skips(const char *key)
{
    return reads_files(key) || kts_plugin_pipelines_owns_key(key);
}

static void check_refusal(int rc, unsigned long before, const char *what)
{
    if (rc == -EINVAL && errors_logged == before)
        fuzz_fail("%s refused the block (-EINVAL) without logging an error", what);
    if (rc < 0 && rc != -EINVAL && rc != -ENOMEM)
        fuzz_fail("%s: undocumented return code %d", what, rc);
}

static void describe_all(const struct kts_conf *c, int depth)
{
    char small[16], big[512];
    kts_conf_describe_values(c, small, sizeof(small));
    kts_conf_describe_values(c, big, sizeof(big));
    if (strlen(small) >= sizeof(small) || strlen(big) >= sizeof(big))
        fuzz_fail("kts_conf_describe_values: not NUL-terminated within its buffer");
    for (int i = 0; depth < 8 && i < c->children_num; i++)
        describe_all(&c->children[i], depth + 1);
}

static int emit_count(const struct kts_vl *vl, void *ctx)
{
    (void)vl;
    (*(size_t *)ctx)++;
    return 0;
}

/* A few value lists through the set: two series, one with a gap and a spike. */
static void run_pipes(struct kts_plugin_pipelines *ps)
{
    static const double vals[] = {1, 2, 3, 1000, 4, 5, -7, 6, 0.5, 6, 7, 8};
    struct kts_ds ds[2] = {{.name = "value", .type = KTS_DS_GAUGE},
                           {.name = "rx", .type = KTS_DS_DERIVE}};
    size_t emitted = 0;
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        struct kts_vl vl = {.host = "h",
                            .type_instance = "x",
                            .ds = ds,
                            .ds_len = i % 2 ? 1 : 2,
                            .interval = KTS_TIME_FROM_S(10)};
        strcpy(vl.plugin, i % 2 ? "cpu" : "interface");
        strcpy(vl.type, i % 2 ? "gauge" : "if_octets");
        vl.time = KTS_TIME_FROM_S(1700000000 + 10 * i + (i == 7 ? 100 : 0));
        ds[0].value.gauge = vals[i];
        ds[1].value.derive = (int64_t)(i * 1000);
        if (i % 2)
            ds[0].type = KTS_DS_GAUGE;
        (void)kts_plugin_pipelines_process(&vl, emit_count, &emitted, ps);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1); /* exact size, not NUL-terminated */
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    struct kts_conf *root = NULL;
    char err[256] = "";
    int rc = kts_conf_parse(text, size, "fuzz.conf", &root, err, sizeof(err));
    free(text);
    if (rc < 0) {
        if (rc != -EINVAL && rc != -ENOMEM)
            fuzz_fail("kts_conf_parse: undocumented return code %d", rc);
        if (rc == -EINVAL && strncmp(err, "fuzz.conf:", 10) != 0)
            fuzz_fail("kts_conf_parse: error without FILE:LINE: '%s'", err);
        return 0;
    }
    describe_all(root, 0);

    /* The options may be at the top level or inside any top-level block (<Plugin ...>). */
    for (int b = -1; b < root->children_num && b < 4; b++) {
        const struct kts_conf *block = b < 0 ? root : &root->children[b];
        if (b >= 0 && block->children_num == 0)
            continue;
        struct kts_conf view;

        if (view_without(block, &view, reads_files) == 0) {
            struct kts_producer_config pc;
            memset(&pc, 0, sizeof(pc));
            unsigned long before = errors_logged;
            rc = kts_opt_defaults(kts_producer_options, &pc);
            if (rc == 0) {
                rc = kts_opt_apply(kts_producer_options, &pc, &view, "fuzz write_kafka_ts");
                check_refusal(rc, before, "producer options");
            }
            kts_producer_config_free(&pc);
        }
        free(view.children);

        if (view_without(block, &view, consumer_skips) == 0) {
            struct kts_consumer_config cc;
            memset(&cc, 0, sizeof(cc));
            unsigned long before = errors_logged;
            rc = kts_opt_defaults(kts_consumer_options, &cc);
            if (rc == 0) {
                rc = kts_opt_apply(kts_consumer_options, &cc, &view, "fuzz read_kafka_ts");
                check_refusal(rc, before, "consumer options");
            }
            kts_consumer_config_free(&cc);
        }
        free(view.children);

        struct kts_plugin_pipelines *ps = NULL;
        unsigned long before = errors_logged;
        rc = kts_plugin_pipelines_config(block, NULL, "fuzz pipelines", &ps, err, sizeof(err));
        check_refusal(rc, before, "kts_plugin_pipelines_config");
        if (rc == 0 && ps != NULL)
            run_pipes(ps);
        kts_plugin_pipelines_destroy(ps);
    }
    kts_conf_free(root);
    return 0;
}
