/* SPDX-License-Identifier: MIT */
/*
 * write_kafka_ts: collectd → Kafka as time-series JSON (docs/write_kafka_ts.md).
 *
 * Thin glue: collectd config → kts_producer_config (option table in
 * src/kafka/kts_producer_options.c), value_list_t → struct kts_vl → kts_producer_send(),
 * producer counters → collectd values.
 * Each <Plugin write_kafka_ts> block is one independent instance (its own producer).
 *
 * Life cycle: collectd runs config callbacks before it forks into the background (threads made
 * there would not survive the fork), so config only validates;
 * librdkafka handles and threads are created in init; shutdown flushes and reports.
 */
#include "kts_collectd.h"

#include "kts_log.h"
#include "kts_producer.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

/* collectd's global options (BaseDir, for the default spool directory). The daemon exports
 * this function; weak, so that a host without it makes the default spool a clear start-up
 * error instead of a plugin that cannot be loaded. */
#pragma weak global_option_get

#define PLUGIN_NAME "write_kafka_ts"
#define MAX_INSTANCES 32

struct wkt_instance {
    struct kts_producer_config cfg;
    struct kts_producer *producer;
    char name[256]; /* write/read callback name: write_kafka_ts/<instance> */
};

/* Filled by the config callback before collectd starts threads; read-only afterwards. */
static struct wkt_instance *instances[MAX_INSTANCES];
static size_t instances_num;
static bool config_failed;

static int wkt_config(oconfig_item_t *ci)
{
    kts_collectd_log_init();
    struct kts_conf *conf = kts_collectd_conf(ci, "collectd.conf");
    struct wkt_instance *in = calloc(1, sizeof(*in));
    if (conf == NULL || in == NULL) {
        kts_conf_free(conf);
        free(in);
        ERROR(PLUGIN_NAME " plugin: out of memory");
        config_failed = true;
        return -1;
    }
    int rc = kts_opt_defaults(kts_producer_options, &in->cfg);
    if (rc == 0)
        rc = kts_opt_apply(kts_producer_options, &in->cfg, conf, PLUGIN_NAME " plugin");
    if (kts_producer_config_check(&in->cfg, PLUGIN_NAME " plugin") != 0)
        rc = -1;
    kts_conf_free(conf);
    if (rc == 0 && instances_num >= MAX_INSTANCES) {
        ERROR(PLUGIN_NAME " plugin: more than %d <Plugin " PLUGIN_NAME "> blocks", MAX_INSTANCES);
        rc = -1;
    }
    if (rc == 0 && in->cfg.name == NULL && (in->cfg.name = strdup(in->cfg.topic)) == NULL)
        rc = -1;
    for (size_t i = 0; rc == 0 && i < instances_num; i++) {
        if (in->cfg.spool_dir != NULL && instances[i]->cfg.spool_dir != NULL &&
            strcmp(in->cfg.spool_dir, "none") != 0 &&
            strcmp(instances[i]->cfg.spool_dir, in->cfg.spool_dir) == 0) {
            ERROR(PLUGIN_NAME " plugin: instances \"%s\" and \"%s\" have the same SpoolDirectory "
                              "\"%s\": each needs its own",
                  instances[i]->cfg.name, in->cfg.name, in->cfg.spool_dir);
            rc = -1;
        }
        if (strcmp(instances[i]->cfg.name, in->cfg.name) == 0) {
            ERROR(PLUGIN_NAME
                  " plugin: two instances are named \"%s\": give each <Plugin " PLUGIN_NAME
                  "> block its own Instance or Topic",
                  in->cfg.name);
            rc = -1;
        }
    }
    if (rc != 0) {
        ERROR(PLUGIN_NAME " plugin: invalid configuration; the plugin will not start");
        kts_producer_config_free(&in->cfg);
        free(in);
        config_failed = true;
        return -1;
    }
    snprintf(in->name, sizeof(in->name), PLUGIN_NAME "/%s", in->cfg.name);
    instances[instances_num++] = in;
    return 0;
}

/*
 * The spool directory of an instance (docs/write_kafka_ts.md "Spool"): SpoolDirectory "none"
 * turns the spool off (cfg->spool_dir becomes NULL); an absolute path is used as it is; without
 * SpoolDirectory, BaseDir/write_kafka_ts/INSTANCE, its parent created here with mode 700.
 * Runs at init, when collectd has read every global option (a BaseDir line may come after the
 * <Plugin> block) and has changed its working directory to BaseDir. 0, or -1 with the reason
 * logged (naming the path): never a silent fallback to memory only.
 */
static int spool_dir_resolve(struct wkt_instance *in)
{
    if (in->cfg.spool_dir != NULL) {
        if (strcmp(in->cfg.spool_dir, "none") == 0) {
            free(in->cfg.spool_dir);
            in->cfg.spool_dir = NULL;
        }
        return 0;
    }
    const char *base = global_option_get != NULL ? global_option_get("BaseDir") : NULL;
    char cwd[4096];
    if (base != NULL && base[0] != '\0' && base[0] != '/')
        base = getcwd(cwd, sizeof(cwd)); /* relative BaseDir: collectd has chdir()ed into it */
    if (base == NULL || base[0] != '/') {
        ERROR(PLUGIN_NAME
              " plugin (%s): cannot find collectd's BaseDir for the default spool "
              "directory; set SpoolDirectory to an absolute path (or \"none\": no spool)",
              in->cfg.name);
        return -1;
    }
    const char *n = in->cfg.name;
    if (n[0] == '\0' || strchr(n, '/') != NULL || strcmp(n, ".") == 0 || strcmp(n, "..") == 0) {
        ERROR(PLUGIN_NAME
              " plugin (%s): the instance name \"%s\" cannot name the default spool "
              "directory under BaseDir \"%s\" (it must not be empty, \".\", \"..\" or contain "
              "'/'): set Instance, or SpoolDirectory to an absolute path (or \"none\")",
              in->cfg.name, n, base);
        return -1;
    }
    size_t bl = strlen(base);
    while (bl > 1 && base[bl - 1] == '/')
        bl--;
    char parent[4200];
    int len = snprintf(parent, sizeof(parent), "%.*s/" PLUGIN_NAME, (int)bl, base);
    char *dir = NULL;
    if (len < 0 || (size_t)len >= sizeof(parent) || asprintf(&dir, "%s/%s", parent, n) < 0) {
        ERROR(PLUGIN_NAME " plugin (%s): the default spool directory under BaseDir \"%s\" is "
                          "too long; set SpoolDirectory",
              in->cfg.name, base);
        return -1;
    }
    if (mkdir(parent, 0700) != 0 && errno != EEXIST) {
        ERROR(PLUGIN_NAME " plugin (%s): cannot create the spool directory \"%s\" (the default "
                          "spool: BaseDir/" PLUGIN_NAME
                          "/INSTANCE): %s; fix it, or set SpoolDirectory to "
                          "another absolute path or to \"none\" (no spool)",
              in->cfg.name, parent, STRERROR(errno));
        free(dir);
        return -1;
    }
    in->cfg.spool_dir = dir;
    return 0;
}

static int wkt_write(const data_set_t *ds, const value_list_t *vl, user_data_t *ud)
{
    struct wkt_instance *in = ud->data;
    struct kts_ds ds_buf[ds->ds_num > 0 ? ds->ds_num : 1];
    struct kts_vl kvl;
    int rc = kts_collectd_vl_from(&kvl, ds_buf, ds, vl);
    if (rc == 0)
        rc = kts_producer_send(in->producer, &kvl);
    else
        ERROR(PLUGIN_NAME " plugin (%s): cannot convert a value list of %s/%s/%s: %s", in->cfg.name,
              vl->host, vl->plugin, vl->type, STRERROR(-rc));
    kts_collectd_vl_release(&kvl);
    return rc < 0 ? -1 : 0;
}

static void dispatch_one(const struct wkt_instance *in, const char *type, const char *type_instance,
                         value_t value)
{
    kts_collectd_dispatch_metric(PLUGIN_NAME, in->cfg.name, type, type_instance, value);
}

#define DISPATCH_DERIVE(in, ti, v)                                                                 \
    dispatch_one(in, "total_values", ti, (value_t){.derive = (derive_t)(v)})

/* Self-metrics: the producer's counters as collectd values (read callback, plugin interval). */
static int wkt_read(user_data_t *ud)
{
    struct wkt_instance *in = ud->data;
    struct kts_producer_stats st;
    kts_producer_stats(in->producer, &st);
    DISPATCH_DERIVE(in, "sent", st.sent);
    DISPATCH_DERIVE(in, "delivered", st.delivered);
    DISPATCH_DERIVE(in, "failed", st.failed);
    DISPATCH_DERIVE(in, "dropped-queue_full", st.dropped_queue_full);
    DISPATCH_DERIVE(in, "dropped-too_large", st.dropped_too_large);
    DISPATCH_DERIVE(in, "dropped-encode", st.dropped_encode);
    DISPATCH_DERIVE(in, "dropped-error", st.dropped_error);
    DISPATCH_DERIVE(in, "skipped-marked", st.skipped_marked);
    DISPATCH_DERIVE(in, "blocked", st.blocked);
    dispatch_one(in, "queue_length", "", (value_t){.gauge = (gauge_t)st.queue_messages});
    if (in->cfg.spool_dir != NULL) {
        DISPATCH_DERIVE(in, "spooled", st.spooled);
        DISPATCH_DERIVE(in, "replayed", st.replayed);
        DISPATCH_DERIVE(in, "dropped-spool_full", st.dropped_spool_full);
        DISPATCH_DERIVE(in, "dropped-spool_error", st.dropped_spool_error);
        DISPATCH_DERIVE(in, "spool-torn", st.spool_torn);
        dispatch_one(in, "bytes", "spool", (value_t){.gauge = (gauge_t)st.spool_bytes});
        if (in->cfg.spool_mode == KTS_SPOOL_MODE_ALWAYS)
            DISPATCH_DERIVE(in, "acked", st.acked);
    }
    dispatch_one(in, "latency", "request-avg",
                 (value_t){.gauge = st.latency_windows ? st.latency_avg_s : NAN});
    dispatch_one(in, "latency", "request-max",
                 (value_t){.gauge = st.latency_windows ? st.latency_max_s : NAN});
    return 0;
}

static int wkt_init(void)
{
    static bool initialized;
    if (initialized) /* collectd may call init again (e.g. after a config reload): once only */
        return 0;
    initialized = true;
    kts_collectd_log_init();
    if (config_failed) {
        ERROR(PLUGIN_NAME " plugin: not starting because of the configuration errors above");
        return -1;
    }
    if (instances_num == 0) {
        ERROR(PLUGIN_NAME " plugin: loaded but no <Plugin " PLUGIN_NAME "> block configured");
        return -1;
    }
    for (size_t i = 0; i < instances_num; i++) {
        struct wkt_instance *in = instances[i];
        char err[1024];
        in->cfg.stats_interval = CDTIME_T_TO_DOUBLE(plugin_get_interval());
        bool spool_default = in->cfg.spool_dir == NULL;
        if (spool_dir_resolve(in) != 0)
            return -1;
        if (in->cfg.log_prefix == NULL &&
            asprintf(&in->cfg.log_prefix, PLUGIN_NAME " plugin (%s)", in->cfg.name) < 0)
            in->cfg.log_prefix = NULL; /* the library's own prefix then */
        int rc = kts_producer_create(&in->producer, &in->cfg, err, sizeof(err));
        if (rc < 0) {
            ERROR(PLUGIN_NAME " plugin (%s): %s", in->cfg.name, err);
            if (spool_default && strncmp(err, "SpoolDirectory:", 15) == 0)
                ERROR(PLUGIN_NAME " plugin (%s): (\"%s\" is the default spool directory, "
                                  "BaseDir/" PLUGIN_NAME
                                  "/INSTANCE: fix it, or set SpoolDirectory to another "
                                  "absolute path, or to \"none\" for no spool)",
                      in->cfg.name, in->cfg.spool_dir);
            return -1;
        }
        plugin_register_write(in->name, wkt_write, &(user_data_t){.data = in});
        plugin_register_complex_read(NULL, in->name, wkt_read, 0, &(user_data_t){.data = in});
        INFO(PLUGIN_NAME " plugin (%s): producing to topic \"%s\", format %s, key %s, %s%s%s",
             in->cfg.name, in->cfg.topic, kts_producer_format_words[in->cfg.format],
             kts_producer_key_words[in->cfg.key],
             in->cfg.spool_dir ? "spool \"" : "no spool (SpoolDirectory \"none\"): memory only",
             in->cfg.spool_dir ? in->cfg.spool_dir : "", in->cfg.spool_dir ? "\"" : "");
    }
    return 0;
}

static int wkt_shutdown(void)
{
    int status = 0;
    for (size_t i = 0; i < instances_num; i++) {
        struct wkt_instance *in = instances[i];
        if (in->producer != NULL) {
            /* Unregister first: no write callback may run on a closed producer. */
            plugin_unregister_write(in->name);
            plugin_unregister_read(in->name);
            if (kts_producer_close(in->producer, in->cfg.flush_timeout) > 0)
                status = -1;
            in->producer = NULL;
        }
        kts_producer_config_free(&in->cfg);
        free(in);
        instances[i] = NULL;
    }
    instances_num = 0;
    return status;
}

void module_register(void);
__attribute__((visibility("default"))) void module_register(void)
{
    plugin_register_complex_config(PLUGIN_NAME, wkt_config);
    plugin_register_init(PLUGIN_NAME, wkt_init);
    plugin_register_shutdown(PLUGIN_NAME, wkt_shutdown);
}
