/* SPDX-License-Identifier: MIT */
/* kts_kafka_properties: see kts_kafka_properties.h for the guarantees (numbers below refer to
 * them). */
#include "kts_kafka_properties.h"
#include "kts_array.h"

#include "kts_log.h"
#include "kts_secret.h"

#include <ctype.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* librdkafka's property table, read once (1): names and Range columns, first row of a name wins
 * (the global section comes before the topic section). Kept until exit. */
struct prop_row {
    char *name;
    char *range; /* NULL: empty column */
    char *words; /* a string property's values listed in its description (2), or NULL */
};
static struct prop_row *rows;
static size_t rows_n, rows_cap;
static pthread_once_t rows_once = PTHREAD_ONCE_INIT;

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static bool row_known(const char *name)
{
    for (size_t i = 0; i < rows_n; i++)
        if (strcasecmp(rows[i].name, name) == 0)
            return true;
    return false;
}

/* One table line "name | C/P | Range | Default | ...": adds its name and range. */
static void add_line(char *line)
{
    char *bar1 = strchr(line, '|');
    char *bar2 = bar1 ? strchr(bar1 + 1, '|') : NULL;
    char *bar3 = bar2 ? strchr(bar2 + 1, '|') : NULL;
    if (bar3 == NULL)
        return;
    *bar1 = *bar3 = '\0';
    const char *name = trim(line), *range = trim(bar2 + 1);
    /* "Supported: GSSAPI, PLAIN, ..." (sasl.mechanisms), "Available strategies: range, ..."
     * (partition.assignment.strategy): the values librdkafka checks only in rd_kafka_new(). */
    char *words = NULL;
    static const char *const intro[] = {"Supported: ", "Available strategies: "};
    for (size_t i = 0; i < 2 && words == NULL && *range == '\0'; i++) {
        char *w = strstr(bar3 + 1, intro[i]);
        if (w != NULL) {
            w += strlen(intro[i]);
            words = strndup(w, strcspn(w, "."));
        }
    }
    if (*name == '\0' || strcmp(name, "Property") == 0 || strchr(name, ' ') || row_known(name) ||
        KTS_ARRAY_GROW(rows, rows_cap, rows_n + 1) != 0) {
        free(words);
        return;
    }
    rows[rows_n].name = strdup(name);
    rows[rows_n].range = *range ? strdup(range) : NULL;
    rows[rows_n].words = words;
    if (rows[rows_n].name == NULL) {
        free(rows[rows_n].range);
        free(words);
        return;
    }
    rows_n++;
}

static void load_rows(void)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (f == NULL) {
        kts_log(KTS_LOG_WARNING, "kts_kafka_properties: open_memstream: %s", strerror(errno));
        return;
    }
    rd_kafka_conf_properties_show(f);
    if (fclose(f) != 0 || text == NULL) {
        free(text);
        return;
    }
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        if (line[0] != '#' && line[0] != '-')
            add_line(line);
    free(text);
}

bool kts_kafka_properties_is_secret(const char *name)
{
    return strcasestr(name, "password") != NULL || strcasestr(name, "secret") != NULL ||
           strcasecmp(name, "ssl.key.pem") == 0 ||
           strcasecmp(name, "sasl.oauthbearer.config") == 0 ||
           strcasecmp(name, "sasl.username") == 0;
}

static const struct prop_row *row_of(const char *name)
{
    pthread_once(&rows_once, load_rows);
    for (size_t i = 0; i < rows_n; i++)
        if (strcasecmp(rows[i].name, name) == 0)
            return &rows[i];
    return NULL;
}

const char *kts_kafka_properties_allowed(const char *name)
{
    const struct prop_row *r = row_of(name);
    return r == NULL ? NULL : r->range != NULL ? r->range : r->words;
}

/* Is every comma-separated element of `value` one of `words` (case-insensitive)? */
static bool all_listed(const char *value, const char *words)
{
    char v[512], *save = NULL;
    if (snprintf(v, sizeof(v), "%s", value) >= (int)sizeof(v))
        return false;
    int n = 0;
    for (char *e = strtok_r(v, ",", &save); e != NULL; e = strtok_r(NULL, ",", &save), n++) {
        e = trim(e);
        size_t el = strlen(e);
        bool found = false;
        for (const char *w = words; *w && !found;) {
            size_t wl = strcspn(w, ",");
            const char *t = w;
            while (isspace((unsigned char)*t) && t < w + wl)
                t++;
            found = el > 0 && (size_t)(w + wl - t) == el && strncasecmp(t, e, el) == 0;
            w += wl + (w[wl] == ',');
        }
        if (!found)
            return false;
    }
    return n > 0;
}

/* Case-insensitive Levenshtein distance, capped: returns cap + 1 when larger than cap. */
static size_t distance(const char *a, const char *b, size_t cap)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > lb + cap || lb > la + cap || lb > 255)
        return cap + 1;
    size_t prev[256], cur[256];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        size_t best = cur[0];
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] +
                         (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            if (cur[j] < best)
                best = cur[j];
        }
        if (best > cap)
            return cap + 1;
        memcpy(prev, cur, (lb + 1) * sizeof(*prev));
    }
    return prev[lb];
}

const char *kts_kafka_properties_closest(const char *name)
{
    pthread_once(&rows_once, load_rows);
    const size_t cap = 3;
    const char *best = NULL;
    size_t best_d = cap + 1;
    for (size_t i = 0; i < rows_n; i++) {
        size_t d = distance(name, rows[i].name, cap);
        if (d < best_d) {
            best_d = d;
            best = rows[i].name;
        }
    }
    if (best != NULL || strlen(name) < 4)
        return best;
    /* "servers" for "bootstrap.servers", "bootstrap.servers.list": one name is a dot-separated
     * part of the other. */
    size_t ln = strlen(name);
    for (size_t i = 0; i < rows_n; i++) {
        const char *r = rows[i].name;
        size_t lr = strlen(r);
        const char *longer = ln > lr ? name : r, *shorter = ln > lr ? r : name;
        size_t ls = strlen(shorter), ll = strlen(longer);
        if (ls < 4 || ls == ll)
            continue;
        if ((strncasecmp(longer, shorter, ls) == 0 && longer[ls] == '.') ||
            (strcasecmp(longer + ll - ls, shorter) == 0 && longer[ll - ls - 1] == '.'))
            return r;
    }
    return NULL;
}

int kts_kafka_properties_check(const char *key, const char *value, char *errbuf, size_t errbuf_size)
{
    char errstr[512] = "";
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr));
    rd_kafka_conf_destroy(conf);
    if (res == RD_KAFKA_CONF_OK) {
        /* (2) values librdkafka would refuse only in rd_kafka_new(), at init */
        const struct prop_row *r = row_of(key);
        if (r == NULL || r->range != NULL || r->words == NULL || all_listed(value, r->words))
            return 0;
        if (kts_kafka_properties_is_secret(key))
            snprintf(errbuf, errbuf_size, "invalid value (not shown: secret); allowed: %s",
                     r->words);
        else
            snprintf(errbuf, errbuf_size,
                     "Invalid value \"%s\" for configuration property "
                     "\"%s\"; allowed: %s",
                     value, key, r->words);
        return -EINVAL;
    }
    char *msg = trim(errstr); /* librdkafka 2.0.2 ends its range message with "\n" */
    bool secret = kts_kafka_properties_is_secret(key);
    if (res == RD_KAFKA_CONF_UNKNOWN) {
        const char *near = kts_kafka_properties_closest(key);
        if (near != NULL)
            snprintf(errbuf, errbuf_size, "%s; did you mean \"%s\"?", msg, near);
        else
            snprintf(errbuf, errbuf_size,
                     "%s; allowed: the properties listed in librdkafka's "
                     "CONFIGURATION.md",
                     msg);
        return -EINVAL;
    }
    int n;
    if (secret)
        n = snprintf(errbuf, errbuf_size, "invalid value (not shown: secret)");
    else if (strstr(msg, value) == NULL || *value == '\0')
        /* "Invalid value for configuration property ..." (integers): say which value. */
        n = snprintf(errbuf, errbuf_size, "%s (value \"%s\")", msg, value);
    else
        n = snprintf(errbuf, errbuf_size, "%s", msg);
    const char *allowed = kts_kafka_properties_allowed(key);
    /* Only when librdkafka did not say it itself ("outside allowed range", "true or false"). */
    if (allowed != NULL && n >= 0 && (size_t)n < errbuf_size && strstr(msg, "allowed") == NULL &&
        strstr(msg, "true or false") == NULL)
        snprintf(errbuf + n, errbuf_size - (size_t)n, "; allowed: %s", allowed);
    return -EINVAL;
}

int kts_kafka_properties_option(const struct kts_opt *opt, const struct kts_conf *item,
                                const char *where, struct kts_strv *props,
                                kts_kafka_properties_extra_fn *extra)
{
    bool from_file = strcasecmp(opt->name, "PropertyFile") == 0;
    if (item->values_num != 2 || item->values[0].type != KTS_CONF_STRING ||
        item->values[1].type != KTS_CONF_STRING || item->children_num != 0) {
        /* Never echo the values: the second one may be a password. */
        kts_log(KTS_LOG_ERR, "%s: option \"%s\" takes two strings: \"librdkafka.property\" %s",
                where, opt->name, from_file ? "\"/path/to/file\"" : "\"value\"");
        return -EINVAL;
    }
    const char *key = item->values[0].v.string, *value = item->values[1].v.string;
    char *file_value = NULL;
    if (from_file) {
        int frc = kts_secret_read_file(item->values[1].v.string, &file_value, where, key);
        if (frc < 0)
            return frc;
        value = file_value;
    }
    /* Check key and value with librdkafka now, before collectd forks: bad ones stop start-up. */
    char msg[1024];
    int rc = kts_kafka_properties_check(key, value, msg, sizeof(msg));
    if (rc < 0)
        kts_log(KTS_LOG_ERR, "%s: %s \"%s\": %s", where, opt->name, key, msg);
    if (rc == 0 && extra != NULL)
        rc = extra(key, value, where);
    if (rc == 0 && (rc = kts_strv_push(props, key)) == 0 && (rc = kts_strv_push(props, value)) != 0)
        free(props->v[--props->n]);
    if (file_value != NULL) {
        explicit_bzero(file_value, strlen(file_value));
        free(file_value);
    }
    return rc;
}
