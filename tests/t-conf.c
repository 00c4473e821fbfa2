/* SPDX-License-Identifier: MIT */
/* kts_conf: parser (guarantee 2), option tables (3), case-insensitive names (4). */
#include "kts_conf.h"
#include "kts_log.h"
#include "tap.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

static char logbuf[8192];
static int loglines;
static void capture(int level, const char *msg, void *opaque)
{
    (void)level;
    (void)opaque;
    loglines++;
    strncat(logbuf, msg, sizeof(logbuf) - strlen(logbuf) - 2);
    strcat(logbuf, "\n");
}

struct cfg {
    char *topic;
    struct kts_strv brokers;
    int64_t count;
    double ratio;
    bool flag;
    int mode;
    double timeout;
    int custom_calls;
};
static const char *const modes[] = {"series", "host", "none", NULL};
static int custom_fn(const struct kts_opt *o, void *obj, const struct kts_conf *item, const char *w)
{
    (void)o;
    (void)w;
    ((struct cfg *)obj)->custom_calls++;
    return item->values_num == 2 ? 0 : -EINVAL;
}
static const struct kts_opt table[] = {
    {"Topic", KTS_OPT_STRING, offsetof(struct cfg, topic), "collectd", 0, 0, NULL, NULL, 0,
     "topic"},
    {"Broker", KTS_OPT_STRINGS, offsetof(struct cfg, brokers), NULL, 0, 0, NULL, NULL,
     KTS_OPT_REQUIRED, "a broker"},
    {"Count", KTS_OPT_INT, offsetof(struct cfg, count), "100", 1, 1000, NULL, NULL, 0, "count"},
    {"Ratio", KTS_OPT_DOUBLE, offsetof(struct cfg, ratio), "0.5", 0, 1, NULL, NULL, 0, "ratio"},
    {"Flag", KTS_OPT_BOOL, offsetof(struct cfg, flag), "true", 0, 0, NULL, NULL, 0, "flag"},
    {"Key", KTS_OPT_ENUM, offsetof(struct cfg, mode), "series", 0, 0, modes, NULL, 0, "key"},
    {"Timeout", KTS_OPT_DURATION, offsetof(struct cfg, timeout), "2.5", 0, 60, NULL, NULL, 0,
     "timeout"},
    {"Property", KTS_OPT_CUSTOM, 0, NULL, 0, 0, NULL, custom_fn, 0, "pairs"},
    KTS_OPT_END,
};

/* A second owner's options in the same block (kts_opt_apply_sets). */
struct cfg2 {
    int64_t level;
    char *path;
};
static const struct kts_opt table2[] = {
    {"Level", KTS_OPT_INT, offsetof(struct cfg2, level), "3", 1, 9, NULL, NULL, 0, "level"},
    {"Path", KTS_OPT_STRING, offsetof(struct cfg2, path), NULL, 0, 0, NULL, NULL, KTS_OPT_REQUIRED,
     "a path"},
    {"Block", KTS_OPT_CUSTOM, 0, NULL, 0, 0, NULL, kts_opt_accept, 0, "checked elsewhere"},
    KTS_OPT_END,
};

/* 3 over several tables: each option goes to its table's object, problems of all are reported
 * in one pass, an unknown option lists every table's names. */
static void test_sets(void)
{
    static const char text[] = "Count 7\nlevel 5\nBroker \"a\"\n<Block x>\n  Anything 1\n"
                               "</Block>\nLevel 12\nNope 1\nCount 0\n";
    char err[256];
    struct kts_conf *root = NULL;
    kts_conf_parse(text, strlen(text), "sets.conf", &root, err, sizeof(err));
    struct cfg c = {0};
    struct cfg2 c2 = {0};
    kts_opt_defaults(table, &c);
    kts_opt_defaults(table2, &c2);
    const struct kts_opt_set sets[] = {{table, &c}, {table2, &c2}};
    logbuf[0] = '\0';
    loglines = 0;
    is_int(kts_opt_apply_sets(sets, 2, root, "two"), -EINVAL, "3: sets: invalid values fail");
    ok(c.count == 7 && c2.level == 5 && c.brokers.n == 1,
       "3: sets: each option lands in its own table's object");
    is_int(loglines, 4, "3: sets: the four problems of both tables reported in one pass");
    ok(strstr(logbuf, "invalid value 12 for option \"Level\" (sets.conf:7)") &&
           strstr(logbuf, "invalid value 0 for option \"Count\" (sets.conf:9)"),
       "3: sets: range errors of either table");
    ok(strstr(logbuf, "unknown option \"Nope\" (sets.conf:8); known options: Topic, Broker, Count, "
                      "Ratio, Flag, Key, Timeout, Property, Level, Path, Block"),
       "3: sets: an unknown option lists the names of every table");
    ok(strstr(logbuf, "option \"Path\" is required") && !strstr(logbuf, "\"Block\""),
       "3: sets: a required option of the second table; the accepted block is no problem");
    kts_opt_free(table, &c);
    kts_opt_free(table2, &c2);
    kts_conf_free(root);
}

static const char good[] = "# comment\n"
                           "<Plugin \"write_kafka_ts\">\n"
                           "  topic \"metrics\" # trailing comment\n"
                           "  Broker \"a:1\"\n"
                           "  Broker b:2\n"
                           "  Count 7\n"
                           "  Ratio 0.25\n"
                           "  Flag false\n"
                           "  KEY \"Host\"\n"
                           "  Timeout 1.5\n"
                           "  Property \"x\" \\\n"
                           "           \"y \\\"quoted\\\"\"\n"
                           "  <Inner 1 true>\n"
                           "  </Inner>\n"
                           "</Plugin>\n";

int main(void)
{
    plan(39);
    kts_log_set_sink(capture, NULL);
    char err[512];
    struct kts_conf *root = NULL;

    /* 2: grammar */
    is_int(kts_conf_parse(good, strlen(good), "good.conf", &root, err, sizeof(err)), 0,
           "2: parses a plugin block");
    ok(root && root->children_num == 1, "2: one top-level block");
    struct kts_conf *plugin = &root->children[0];
    is_str(plugin->key, "Plugin", "2: block key");
    ok(plugin->values_num == 1 && plugin->values[0].type == KTS_CONF_STRING,
       "2: block argument is a string");
    is_int(plugin->children_num, 10, "2: ten children");
    is_int(plugin->children[0].line, 3, "2: line numbers are kept");
    const struct kts_conf *prop = &plugin->children[8];
    ok(prop->values_num == 2 && strcmp(prop->values[1].v.string, "y \"quoted\"") == 0,
       "2: escapes and line continuation");
    const struct kts_conf *inner = &plugin->children[9];
    ok(inner->values_num == 2 && inner->values[0].type == KTS_CONF_NUMBER &&
           inner->values[1].type == KTS_CONF_BOOLEAN,
       "2: numbers and booleans in a tag");

    /* 3 and 4: option table */
    struct cfg c = {0};
    is_int(kts_opt_defaults(table, &c), 0, "3: defaults");
    is_str(c.topic, "collectd", "3: string default");
    is_int(c.count, 100, "3: int default");
    ok(c.flag == true && c.mode == 0 && c.timeout == 2.5, "3: bool, enum, duration defaults");

    /* The Inner block is unknown to the table: exactly one error naming it. */
    logbuf[0] = '\0';
    loglines = 0;
    is_int(kts_opt_apply(table, &c, plugin, "test plugin"), -EINVAL,
           "3: unknown block makes apply fail");
    is_int(loglines, 1, "3: exactly one problem logged");
    ok(strstr(logbuf, "unknown option \"Inner\" (good.conf:13)") != NULL,
       "3: message names the option and line");
    is_str(c.topic, "metrics", "4: lower-case key matched");
    ok(c.brokers.n == 2 && strcmp(c.brokers.v[1], "b:2") == 0,
       "3: repeatable option, unquoted word");
    ok(c.count == 7 && c.ratio == 0.25 && c.flag == false && c.mode == 1 && c.timeout == 1.5,
       "3: values applied");
    is_int(c.custom_calls, 1, "3: custom callback called");
    kts_opt_free(table, &c);
    kts_conf_free(root);

    /* 3: every problem in one pass */
    static const char bad[] =
        "Count 0\nCount 2.5\nRatio \"x\"\nFlag 3\nKey \"random\"\nTimeout 61\n"
        "Topic 1 2\nProperty \"only-one\"\n";
    is_int(kts_conf_parse(bad, strlen(bad), "bad.conf", &root, err, sizeof(err)), 0, "parses");
    struct cfg d = {0};
    kts_opt_defaults(table, &d);
    logbuf[0] = '\0';
    loglines = 0;
    is_int(kts_opt_apply(table, &d, root, "p"), -EINVAL, "3: invalid values fail");
    is_int(loglines, 8, "3: all 7 bad values and the missing required option are reported");
    ok(strstr(logbuf, "invalid value 0 for option \"Count\" (bad.conf:1); allowed: a whole number "
                      "from 1 to 1000"),
       "3: range error names option, value, range");
    ok(strstr(logbuf, "invalid value \"random\" for option \"Key\" (bad.conf:5); allowed: one of "
                      "\"series\", \"host\", \"none\""),
       "3: enum error lists allowed words");
    ok(strstr(logbuf, "option \"Topic\" (bad.conf:7) takes exactly one value, got 2"),
       "3: value count");
    ok(strstr(logbuf, "option \"Broker\" is required"), "3: missing required option");
    kts_opt_free(table, &d);
    kts_conf_free(root);

    /* 2: syntax errors name file and line */
    struct {
        const char *text, *msg;
    } errs[] = {
        {"<A>\n  x 1\n", "t.conf:1: <A> is never closed"},
        {"<A>\n</B>\n", "t.conf:2: </B> closes <A>"},
        {"x \"abc\n", "t.conf:1: unterminated string"},
        {"</A>\n", "t.conf:1: </A> closes a block that was never opened"},
        /* found by tests/fuzz/fuzz-conf: values that read_word() could not advance over made
         * the parser append empty strings forever (tests/fuzz/corpus/conf/regress-*) */
        {"x \"ema\"\v y 1\n", "t.conf:1: unexpected character 0x0b in the values of \"x\""},
        {"x \f\n", "t.conf:1: unexpected character 0x0c in the values of \"x\""},
        {"x a \\\r b\n", "t.conf:1: unexpected character 0x5c in the values of \"x\""},
    };
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        err[0] = '\0';
        int rc =
            kts_conf_parse(errs[i].text, strlen(errs[i].text), "t.conf", &root, err, sizeof(err));
        ok(rc == -EINVAL && strstr(err, errs[i].msg) != NULL && root == NULL, "2: error \"%s\"",
           errs[i].msg);
        if (rc != -EINVAL || !strstr(err, errs[i].msg))
            diag("got rc=%d err=%s", rc, err);
    }
    test_sets();
    kts_log_set_sink(NULL, NULL);
    return done_testing();
}
