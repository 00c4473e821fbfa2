/* SPDX-License-Identifier: MIT */
/*
 * kts-filter: run a filter pipeline offline over a CSV series, to tune pipelines on exported
 * history (docs/FILTERS.md).
 *
 *   kts-filter --config FILE [--pipeline NAME] [--interval SECONDS]
 *              [--host H] [--plugin P] [--type T] INPUT
 *
 * FILE holds one or more <Pipeline> blocks in collectd.conf syntax (the same blocks as in
 * read_kafka_ts and ts_filter). INPUT ("-" = stdin) is CSV with the header `timestamp,value`;
 * timestamps are "YYYY-MM-DD HH:MM:SS" (UTC) or epoch seconds. Output (stdout) is CSV
 * `timestamp,input,output,action`, one line per input point plus one per made-up point:
 *
 *   kept      the point came out (value possibly transformed, e.g. smoothed)
 *   replaced  an outlier whose value was replaced
 *   marked    an outlier that was only marked (Action "mark")
 *   warming   passed through by a filter still learning (e.g. deseasonalize's first period)
 *   dropped   nothing came out for this point (duplicate, outlier dropped, counter reset, ...)
 *   filled    a point made up for a gap (input column empty)
 *   delayed   a point released later than 4096 lines after its input line (which then said
 *             "dropped"): input column empty. A point held back for less (an outlier filter's
 *             Delay, dedup's end of a flat run) completes its own input line instead, with
 *             the action it came out with
 *
 * The series is named --host/--plugin/--type (default localhost/kts-filter/gauge) for the
 * pipelines' <Match>; the first pipeline that matches runs, or the one named --pipeline.
 * The interval of the series is --interval, else the most common spacing of the first 1000
 * points. A summary goes to stderr. Exit status: 0, 1 on bad input or configuration.
 * --state-in FILE restores the pipelines' per-series state from FILE before the input, and
 * --state-out FILE saves it after the input (atomically; src/pipeline/kts_state_file.h), without
 * flushing: what the filters hold back at the end stays in the state and comes out in the run
 * that continues from it (as "delayed" lines). The same file is ts_filter's StateFile.
 * kts-filter --config FILE --state-in FILE --seed-topic TOPIC --input-topic TOPIC --bootstrap
 * HOST:PORT [--key series|host] [-X key=value]... produces the states of FILE to a
 * read_kafka_ts StateTopic instead of filtering (tools/kts-filter-seed.c).
 *
 * `kts-filter --options-markdown` prints the option reference of docs/FILTERS.md;
 * `kts-filter --config FILE --check` validates FILE and lists its pipelines.
 *
 * INPUT may also be time-series JSON or collectd's JSON, one message per line (what a Kafka
 * consumer dumps): then every value list goes to the first pipeline that matches it (or the
 * one named --pipeline) and the output has two more leading columns, `series,ds` (the series
 * key host/plugin[-instance]/type[-instance] and the data source index).
 */
#include "kts-filter-seed.h"
#include "kts_format.h"
#include "kts_pipeline_state.h"
#include "kts_state_file.h"
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kts_array.h"
#include "kts_conf.h"
#include "kts_filter.h"
#include "kts_format.h"
#include "kts_log.h"
#include "kts_output.h"
#include "kts_pipeline.h"

struct in_point {
    double t;
    double v;
    bool empty;
};

#define MAX_DS 64

struct emitted {
    kts_time_t t;
    char key[5 * KTS_NAME_MAX];
    size_t ds_len;
    double v[MAX_DS];
    uint16_t flags[MAX_DS];
};

static struct emitted *em;
static size_t em_n, em_cap;
static bool dates;     /* print timestamps as dates (the input had dates) */
static bool json_mode; /* input is time-series JSON: print series and data source columns */
static bool no_flush;  /* --state-out: the held points stay in the state */
static uint64_t counts[7];
static const char *const action_names[7] = {"kept",    "replaced", "marked", "warming",
                                            "dropped", "filled",   "delayed"};
enum { A_KEPT, A_REPLACED, A_MARKED, A_WARMING, A_DROPPED, A_FILLED, A_DELAYED };

/* Scratch of collect(): an output in doubles (kts_output_typed with no type: all gauges). */
static struct kts_output typed;

static int collect(const struct kts_vl *vl, const uint16_t *flags, void *opaque)
{
    (void)opaque;
    if (KTS_ARRAY_GROW(em, em_cap, em_n + 1) != 0)
        return -ENOMEM;
    int rc = kts_output_typed(vl, flags, NULL, NULL, &kts_output_kts_filter, &typed);
    if (rc < 0)
        return rc;
    struct emitted *e = &em[em_n++];
    e->t = vl->time;
    kts_series_message_key(e->key, sizeof(e->key), vl, KTS_KEY_SERIES);
    e->ds_len = vl->ds_len < MAX_DS ? vl->ds_len : MAX_DS;
    for (size_t d = 0; d < e->ds_len; d++) {
        e->v[d] = typed.vl.ds[d].value.gauge;
        e->flags[d] = flags[d];
    }
    return 0;
}

/* Shortest decimal that reads back as the same double. */
static void fmt_double(char *buf, size_t size, double v)
{
    if (isnan(v)) {
        snprintf(buf, size, "nan");
        return;
    }
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static void fmt_time(char *buf, size_t size, kts_time_t t)
{
    double s = KTS_TIME_TO_DOUBLE(t);
    if (dates) {
        time_t whole = (time_t)floor(s + 1e-7);
        struct tm tm;
        gmtime_r(&whole, &tm);
        size_t n = strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
        double frac = s - (double)whole;
        if (frac > 1e-6 && n < size)
            snprintf(buf + n, size - n, ".%06.0f", frac * 1e6);
    } else {
        int n = snprintf(buf, size, "%.6f", s);
        while (n > 0 && (size_t)n < size && buf[n - 1] == '0')
            buf[--n] = '\0';
        if (n > 0 && (size_t)n < size && buf[n - 1] == '.')
            buf[--n] = '\0';
    }
}

/* CSV field: quoted when it contains a comma, a quote or a newline. */
static void print_field(const char *s)
{
    if (strpbrk(s, ",\"\n") == NULL) {
        fputs(s, stdout);
        return;
    }
    putchar('"');
    for (; *s; s++) {
        if (*s == '"')
            putchar('"');
        putchar(*s);
    }
    putchar('"');
}

/*
 * Output lines wait in a queue while an input line nothing came out for ("dropped") is at its
 * head: a filter that holds points back (an outlier filter's Delay, dedup's flat runs) releases
 * them later with their own timestamps, and the released point then completes that line
 * instead of printing a separate one. A line still unresolved when HOLD lines wait behind it,
 * or at the end of the input, is printed as dropped (and the point, if it comes, as delayed).
 */
enum { HOLD = 4096 };
struct line {
    char key[5 * KTS_NAME_MAX];
    char okey[5 * KTS_NAME_MAX]; /* the key its output comes under (Output* options) */
    size_t d;
    kts_time_t t;
    double in, out;
    bool has_in, has_out;
    int action;
};
static struct line *lq;
static size_t lq_head, lq_n, lq_cap;
static char out_key[5 * KTS_NAME_MAX]; /* the output key of the input being reported */

static void print_now(const struct line *l)
{
    char ts[64], iv[64] = "", ov[64] = "";
    fmt_time(ts, sizeof(ts), l->t);
    if (l->has_in && !isnan(l->in))
        fmt_double(iv, sizeof(iv), l->in);
    if (l->has_out)
        fmt_double(ov, sizeof(ov), l->out);
    if (json_mode) {
        print_field(l->key);
        printf(",%zu,", l->d);
    }
    printf("%s,%s,%s,%s\n", ts, iv, ov, action_names[l->action]);
    counts[l->action]++;
}

/* Print the waiting lines up to the first unresolved dropped one (all of them with `all`). */
static void drain(bool all)
{
    while (lq_n > 0) {
        struct line *l = &lq[lq_head];
        if (!all && l->action == A_DROPPED && lq_n <= HOLD)
            break;
        print_now(l);
        lq_head = (lq_head + 1) % lq_cap;
        lq_n--;
    }
}

/* A point released later: complete the dropped line of its input when one waits. */
static bool resolve(const char *key, size_t d, kts_time_t t, double out, int action)
{
    for (size_t k = lq_n; k-- > 0;) {
        struct line *l = &lq[(lq_head + k) % lq_cap];
        if (l->action == A_DROPPED && l->t == t && l->d == d &&
            strcmp(l->okey[0] != '\0' ? l->okey : l->key, key) == 0) {
            l->out = out;
            l->has_out = true;
            l->action = action;
            return true;
        }
    }
    return false;
}

static void print_line(const char *key, size_t d, kts_time_t t, const double *in, const double *out,
                       int action)
{
    if (lq_n == lq_cap) {
        size_t ncap = lq_cap ? lq_cap * 2 : 64;
        struct line *n = malloc(ncap * sizeof(*n));
        if (n == NULL) { /* no room to wait: print what waits, then this line */
            drain(true);
            struct line l1 = {.d = d, .t = t, .action = action};
            snprintf(l1.key, sizeof(l1.key), "%s", key);
            l1.has_in = in != NULL;
            l1.in = in ? *in : 0;
            l1.has_out = out != NULL;
            l1.out = out ? *out : 0;
            print_now(&l1);
            return;
        }
        for (size_t k = 0; k < lq_n; k++)
            n[k] = lq[(lq_head + k) % lq_cap];
        free(lq);
        lq = n;
        lq_cap = ncap;
        lq_head = 0;
    }
    struct line *l = &lq[(lq_head + lq_n) % lq_cap];
    lq_n++;
    snprintf(l->key, sizeof(l->key), "%s", key);
    snprintf(l->okey, sizeof(l->okey), "%s", out_key);
    l->d = d;
    l->t = t;
    l->has_in = in != NULL;
    l->in = in ? *in : 0;
    l->has_out = out != NULL;
    l->out = out ? *out : 0;
    l->action = action;
}

static int action_of(uint16_t flags)
{
    if (flags & KTS_PT_FILLED)
        return A_FILLED;
    if (flags & KTS_PT_REPLACED)
        return A_REPLACED;
    if (flags & KTS_PT_MARKED)
        return A_MARKED;
    if (flags & KTS_PT_WARMING)
        return A_WARMING;
    return A_KEPT;
}

/* Print what one input value list (NULL: a flush) produced: in emission order, the output for
 * each input data source (first emitted point at the input's time that was not filled), then
 * the other points as filled/delayed; input data sources with no output are dropped. */
static void report(const struct kts_vl *in)
{
    char inkey[5 * KTS_NAME_MAX] = "";
    size_t match[MAX_DS];
    size_t nds = in != NULL ? (in->ds_len < MAX_DS ? in->ds_len : MAX_DS) : 0;
    if (in != NULL)
        kts_series_message_key(inkey, sizeof(inkey), in, KTS_KEY_SERIES);
    /* The key the input's points come out under: the one of what this input released. */
    out_key[0] = '\0';
    if (em_n > 0)
        snprintf(out_key, sizeof(out_key), "%s", em[0].key);
    for (size_t i = 1; i < em_n; i++)
        if (strcmp(em[i].key, out_key) != 0)
            out_key[0] = '\0';
    for (size_t k = 0; out_key[0] != '\0' && k < lq_n; k++) {
        struct line *l = &lq[(lq_head + k) % lq_cap];
        if (l->okey[0] == '\0' && strcmp(l->key, inkey) == 0)
            snprintf(l->okey, sizeof(l->okey), "%s", out_key);
    }
    for (size_t d = 0; d < nds; d++) {
        match[d] = SIZE_MAX;
        for (size_t i = 0; i < em_n && match[d] == SIZE_MAX; i++)
            if (em[i].t == in->time && d < em[i].ds_len &&
                !(em[i].flags[d] & (KTS_PT_FILLED | KTS_PT_ABSENT)))
                match[d] = i;
    }
    for (size_t i = 0; i < em_n; i++) {
        const struct emitted *e = &em[i];
        for (size_t d = 0; d < e->ds_len; d++) {
            if (e->flags[d] & KTS_PT_ABSENT)
                continue;
            if (d < nds && match[d] == i) {
                double iv = kts_ds_as_double(&in->ds[d]);
                print_line(inkey, d, e->t, &iv, &e->v[d], action_of(e->flags[d]));
            } else if ((e->flags[d] & KTS_PT_FILLED) ||
                       !resolve(e->key, d, e->t, e->v[d], action_of(e->flags[d]))) {
                print_line(e->key, d, e->t, NULL, &e->v[d],
                           (e->flags[d] & KTS_PT_FILLED) ? A_FILLED
                           : (e->flags[d] & (KTS_PT_REPLACED | KTS_PT_MARKED))
                               ? action_of(e->flags[d])
                               : A_DELAYED);
            }
        }
    }
    for (size_t d = 0; d < nds; d++)
        if (match[d] == SIZE_MAX) {
            double iv = kts_ds_as_double(&in->ds[d]);
            print_line(inkey, d, in->time, &iv, NULL, A_DROPPED);
        }
    em_n = 0;
    drain(false);
}

static bool parse_time(const char *s, double *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
    if (end != NULL) {
        double frac = 0;
        if (*end == '.')
            frac = strtod(end, (char **)&end);
        if (*end != '\0')
            return false;
        *out = (double)timegm(&tm) + frac;
        dates = true;
        return true;
    }
    char *e;
    *out = strtod(s, &e);
    return e != s && *e == '\0' && isfinite(*out) && *out > 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '"')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n' ||
                     s[n - 1] == '"'))
        s[--n] = '\0';
    return s;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Most common spacing among the first points (rounded to the millisecond). */
static double guess_interval(const struct in_point *pts, size_t n)
{
    size_t m = n < 1001 ? n : 1001;
    if (m < 2)
        return 0;
    double *d = malloc((m - 1) * sizeof(double));
    size_t k = 0;
    for (size_t i = 1; i < m; i++) {
        double dt = round((pts[i].t - pts[i - 1].t) * 1000) / 1000;
        if (dt > 0)
            d[k++] = dt;
    }
    qsort(d, k, sizeof(double), cmp_double);
    double best = 0;
    size_t best_n = 0;
    for (size_t i = 0; i < k;) {
        size_t j = i;
        while (j < k && d[j] == d[i])
            j++;
        if (j - i > best_n) {
            best_n = j - i;
            best = d[i];
        }
        i = j;
    }
    free(d);
    return best;
}

static void opt_table_md(const struct kts_opt *t)
{
    printf("| option | type | default | allowed | meaning |\n| --- | --- | --- | --- | --- |\n");
    for (const struct kts_opt *o = t; o->name != NULL; o++) {
        char allowed[256] = "any";
        const char *type = "string";
        switch (o->type) {
        case KTS_OPT_INT:
        case KTS_OPT_DOUBLE:
        case KTS_OPT_DURATION:
            type = o->type == KTS_OPT_INT      ? "integer"
                   : o->type == KTS_OPT_DOUBLE ? "number"
                                               : "seconds";
            if (o->min != 0 || o->max != 0)
                snprintf(allowed, sizeof(allowed), "%.15g to %.15g", o->min, o->max);
            break;
        case KTS_OPT_BOOL:
            type = "boolean";
            snprintf(allowed, sizeof(allowed), "true, false");
            break;
        case KTS_OPT_ENUM: {
            type = "word";
            size_t n = 0;
            allowed[0] = '\0';
            for (int i = 0; o->words[i] != NULL && n < sizeof(allowed); i++)
                n += (size_t)snprintf(allowed + n, sizeof(allowed) - n, "%s\"%s\"", i ? ", " : "",
                                      o->words[i]);
            break;
        }
        case KTS_OPT_CUSTOM:
            type = "block";
            snprintf(allowed, sizeof(allowed), "see below");
            break;
        default:
            break;
        }
        char def[64];
        if (o->def == NULL)
            snprintf(def, sizeof(def), "(none)");
        else if (o->type == KTS_OPT_ENUM || o->type == KTS_OPT_STRING)
            snprintf(def, sizeof(def), "\"%s\"", o->def);
        else
            snprintf(def, sizeof(def), "%s", o->def);
        printf("| `%s` | %s | %s | %s | %s |\n", o->name, type, def, allowed,
               o->help ? o->help : "");
    }
}

/* The option reference of docs/FILTERS.md, generated from the option tables. */
static void options_markdown(void)
{
    printf("<!-- generated by `kts-filter --options-markdown` from the option tables; "
           "do not edit by hand -->\n\n");
    printf("### `<Pipeline \"name\">`\n\n");
    opt_table_md(kts_pipeline_options);
    for (size_t i = 0; kts_filters[i] != NULL; i++) {
        printf("\n### `<Filter \"%s\">`\n\n%s.\n\n", kts_filters[i]->name, kts_filters[i]->summary);
        if (kts_filters[i]->options[0].name == NULL)
            printf("No options.\n");
        else
            opt_table_md(kts_filters[i]->options);
    }
}

struct json_ctx {
    struct kts_pipeline **pipes;
    size_t npipes;
    const char *pname;
    uint64_t vls, unmatched;
    int rc;
};

static int on_json_vl(struct kts_vl *vl, void *opaque)
{
    struct json_ctx *jc = opaque;
    jc->vls++;
    struct kts_pipeline *p = NULL;
    for (size_t i = 0; i < jc->npipes && p == NULL; i++)
        if (jc->pname ? strcmp(kts_pipeline_name(jc->pipes[i]), jc->pname) == 0 &&
                            kts_pipeline_match(jc->pipes[i], vl)
                      : kts_pipeline_match(jc->pipes[i], vl))
            p = jc->pipes[i];
    if (p == NULL) {
        jc->unmatched++;
        return 0;
    }
    int rc = kts_pipeline_process(p, vl, 1, collect, NULL);
    report(vl);
    return rc;
}

/* Time-series JSON (or collectd's JSON) input: one message per line, as a consumer dumps them.
 * Each value list goes to the first pipeline that matches it (or --pipeline NAME). */
static int run_json(FILE *f, const char *input, struct kts_pipeline **pipes, size_t npipes,
                    const char *pname)
{
    struct kts_decoder *dec = kts_decoder_create(0);
    if (dec == NULL)
        return 1;
    struct json_ctx jc = {pipes, npipes, pname, 0, 0, 0};
    json_mode = true;
    printf("series,ds,timestamp,input,output,action\n");
    char *line = NULL;
    size_t linecap = 0, lineno = 0;
    ssize_t len;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &linecap, f)) > 0) {
        lineno++;
        char *l = trim(line);
        if (*l == '\0')
            continue;
        char err[512];
        int drc = kts_decoder_decode(dec, l, strlen(l), NULL, on_json_vl, &jc, err, sizeof(err));
        if (drc < 0) {
            fprintf(stderr, "kts-filter: %s:%zu: %s\n", input, lineno, err);
            rc = 1;
        }
    }
    free(line);
    for (size_t i = 0; rc == 0 && i < npipes && !no_flush; i++) {
        if (kts_pipeline_flush(pipes[i], collect, NULL) != 0)
            rc = 1;
        report(NULL);
    }
    drain(true);
    kts_decoder_destroy(dec);
    fprintf(stderr,
            "kts-filter: %llu value lists (%llu matched no pipeline):", (unsigned long long)jc.vls,
            (unsigned long long)jc.unmatched);
    for (int a = 0; a < 7; a++)
        fprintf(stderr, " %llu %s", (unsigned long long)counts[a], action_names[a]);
    fprintf(stderr, "\n");
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: kts-filter --config FILE [--pipeline NAME] [--interval SECONDS]\n"
               "                  [--host H] [--plugin P] [--type T]\n"
               "                  [--state-in FILE] [--state-out FILE] INPUT.csv|INPUT.json|-\n"
               "       kts-filter --config FILE --state-in FILE --seed-topic TOPIC\n"
               "                  --input-topic TOPIC --bootstrap HOST:PORT [--key series|host]\n"
               "                  [-X key=value]...  (seed a read_kafka_ts StateTopic)\n"
               "       kts-filter --config FILE --check     (validate, list the pipelines)\n"
               "       kts-filter --options-markdown        (the option reference)\n"
               "Runs a <Pipeline> from FILE over INPUT (CSV timestamp,value) and prints\n"
               "CSV timestamp,input,output,action. See docs/FILTERS.md.\n");
}

/* The command line. */
struct args {
    const char *config, *pname, *host, *plugin, *type, *input;
    const char *state_in, *state_out; /* --state-in, --state-out */
    double interval;                  /* -1: guessed from the input */
    bool check_only;
    struct kts_seed_args seed; /* --seed-topic ...: seed.state_topic != NULL */
    const char *props[64];
};

/* --key: write_kafka_ts's Key; -1 when unknown. */
static int key_mode_of(const char *s)
{
    return strcmp(s, "series") == 0 ? KTS_KEY_SERIES
           : strcmp(s, "host") == 0 ? KTS_KEY_HOST
           : strcmp(s, "none") == 0 ? KTS_KEY_NONE
                                    : -1;
}

/* The --seed-topic options of parse_args(): true when `c` was one. */
static bool parse_seed_arg(int c, struct args *a)
{
    switch (c) {
    case 'E':
        a->seed.state_topic = optarg;
        return true;
    case 'I':
        a->seed.input_topic = optarg;
        return true;
    case 'B':
        a->seed.bootstrap = optarg;
        return true;
    case 'K':
        a->seed.key_mode = key_mode_of(optarg);
        return true;
    case 'X':
        if (a->seed.nprops < sizeof(a->props) / sizeof(a->props[0]))
            a->props[a->seed.nprops++] = optarg;
        return true;
    }
    return false;
}

/* The combination of options: 0 when usable. */
static int check_args(const struct args *a, int rest)
{
    const struct kts_seed_args *s = &a->seed;
    if (s->state_topic == NULL && s->input_topic == NULL && s->bootstrap == NULL)
        return a->config == NULL || rest != (a->check_only ? 0 : 1) || s->nprops > 0;
    if (s->state_topic == NULL || s->input_topic == NULL || s->bootstrap == NULL) {
        fprintf(stderr, "kts-filter: --seed-topic needs --input-topic and --bootstrap\n");
        return 1;
    }
    if (s->key_mode < 0 || s->key_mode == KTS_KEY_NONE) {
        fprintf(stderr, "kts-filter: --key: allowed: series, host (with none, write_kafka_ts "
                        "spreads a series over every partition)\n");
        return 1;
    }
    if (a->config == NULL || a->state_in == NULL || a->state_out != NULL || a->check_only ||
        rest != 0) {
        fprintf(stderr, "kts-filter: --seed-topic needs --config and --state-in, and no input, "
                        "--state-out or --check\n");
        return 1;
    }
    return 0;
}

/* Parse the command line into `a`: -1 to go on, else the exit status (help, reference, usage). */
static int parse_args(int argc, char **argv, struct args *a)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"pipeline", required_argument, NULL, 'p'},
        {"interval", required_argument, NULL, 'i'},
        {"host", required_argument, NULL, 'H'},
        {"plugin", required_argument, NULL, 'P'},
        {"type", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {"options-markdown", no_argument, NULL, 'M'},
        {"check", no_argument, NULL, 'C'},
        {"state-in", required_argument, NULL, 'S'},
        {"state-out", required_argument, NULL, 'O'},
        {"seed-topic", required_argument, NULL, 'E'},
        {"input-topic", required_argument, NULL, 'I'},
        {"bootstrap", required_argument, NULL, 'B'},
        {"key", required_argument, NULL, 'K'},
        {NULL, 0, NULL, 0},
    };
    *a =
        (struct args){.host = "localhost", .plugin = "kts-filter", .type = "gauge", .interval = -1};
    a->seed.key_mode = KTS_KEY_SERIES;
    a->seed.props = a->props;
    int c;
    while ((c = getopt_long(argc, argv, "c:p:i:H:P:T:hX:", opts, NULL)) != -1) {
        if (parse_seed_arg(c, a))
            continue;
        switch (c) {
        case 'c':
            a->config = optarg;
            break;
        case 'p':
            a->pname = optarg;
            break;
        case 'i':
            a->interval = strtod(optarg, NULL);
            break;
        case 'H':
            a->host = optarg;
            break;
        case 'P':
            a->plugin = optarg;
            break;
        case 'T':
            a->type = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'M':
            options_markdown();
            return 0;
        case 'C':
            a->check_only = true;
            break;
        case 'S':
            a->state_in = optarg;
            break;
        case 'O':
            a->state_out = optarg;
            break;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (check_args(a, argc - optind) != 0) {
        usage(stderr);
        return 1;
    }
    a->input = a->check_only || a->seed.state_topic != NULL ? NULL : argv[optind];
    return -1;
}

static void destroy_pipelines(struct kts_pipeline **pipes, size_t npipes)
{
    for (size_t i = 0; i < npipes; i++)
        kts_pipeline_destroy(pipes[i]);
}

/* Configure every <Pipeline> of the file (so every problem in it is reported) into pipes[]
 * (at most `max`). Returns 0, or 1 with the problems reported and nothing kept. */
static int load_pipelines(const char *config, struct kts_pipeline **pipes, size_t max,
                          size_t *npipes)
{
    char err[1024];
    struct kts_conf *root = NULL;
    *npipes = 0;
    if (kts_conf_parse_file(config, &root, err, sizeof(err)) < 0) {
        fprintf(stderr, "kts-filter: %s\n", err);
        return 1;
    }
    int bad = 0;
    for (int i = 0; i < root->children_num; i++) {
        const struct kts_conf *b = &root->children[i];
        if (strcasecmp(b->key, "Pipeline") != 0) {
            fprintf(stderr,
                    "kts-filter: %s:%d: unexpected \"%s\"; the file holds <Pipeline> blocks\n",
                    config, b->line, b->key);
            bad++;
            continue;
        }
        struct kts_pipeline *p = NULL;
        if (kts_pipeline_config(b, "kts-filter", &p, err, sizeof(err)) < 0) {
            bad++;
            continue;
        }
        if (*npipes < max)
            pipes[(*npipes)++] = p;
        else
            kts_pipeline_destroy(p);
    }
    kts_conf_free(root);
    if (bad || *npipes == 0) {
        if (*npipes == 0 && !bad)
            fprintf(stderr, "kts-filter: %s has no <Pipeline> block\n", config);
        destroy_pipelines(pipes, *npipes);
        *npipes = 0;
        return 1;
    }
    return 0;
}

/* --check: list the pipelines and their filters. */
static void list_pipelines(struct kts_pipeline **pipes, size_t npipes)
{
    for (size_t i = 0; i < npipes; i++) {
        printf("pipeline \"%s\":", kts_pipeline_name(pipes[i]));
        for (size_t f = 0; f < kts_pipeline_filter_count(pipes[i]); f++)
            printf(" %s", kts_pipeline_filter_name(pipes[i], f));
        printf("\n");
    }
}

/* Parse one CSV line `l` (trimmed, not empty, not a comment) into *p. Returns 1 for the
 * header, 0 for a point, -1 on bad input (reported). */
static int parse_csv_line(char *l, const char *input, size_t lineno, struct in_point *p)
{
    char *comma = strchr(l, ',');
    if (comma == NULL) {
        fprintf(stderr, "kts-filter: %s:%zu: expected timestamp,value\n", input, lineno);
        return -1;
    }
    *comma = '\0';
    char *ts = trim(l), *vs = trim(comma + 1);
    char *c2 = strchr(vs, ',');
    if (c2 != NULL)
        *c2 = '\0';
    if (lineno == 1 && strcasecmp(ts, "timestamp") == 0)
        return 1;
    *p = (struct in_point){0};
    if (!parse_time(ts, &p->t)) {
        fprintf(stderr,
                "kts-filter: %s:%zu: bad timestamp \"%s\" (want YYYY-MM-DD HH:MM:SS "
                "or epoch seconds)\n",
                input, lineno, ts);
        return -1;
    }
    char *e;
    p->v = strtod(vs, &e);
    if (*vs == '\0') {
        p->empty = true;
        p->v = NAN;
    } else if (*e != '\0') {
        fprintf(stderr, "kts-filter: %s:%zu: bad value \"%s\"\n", input, lineno, vs);
        return -1;
    }
    return 0;
}

/* Read the CSV points of `f` into *pts (the caller frees it), *n of them. 0 or 1 (bad input,
 * reported; the points read so far are kept). */
static int read_csv(FILE *f, const char *input, struct in_point **pts, size_t *n)
{
    size_t cap = 0, lineno = 0, linecap = 0;
    char *line = NULL;
    int rc = 0;
    *pts = NULL;
    *n = 0;
    while (getline(&line, &linecap, f) > 0) {
        lineno++;
        char *l = trim(line);
        if (*l == '\0' || *l == '#')
            continue;
        struct in_point p;
        int lrc = parse_csv_line(l, input, lineno, &p);
        if (lrc < 0) {
            rc = 1;
            break;
        }
        if (lrc > 0)
            continue;
        if (KTS_ARRAY_GROW(*pts, cap, *n + 1) != 0) {
            fprintf(stderr, "kts-filter: %s: out of memory\n", input);
            rc = 1;
            break;
        }
        (*pts)[(*n)++] = p;
    }
    free(line);
    return rc;
}

/* Run the CSV points through the pipeline the arguments select and print the result. `rc`:
 * the status of reading the input (the output is only printed when it is 0). */
static int run_csv(const struct args *a, struct kts_pipeline **pipes, size_t npipes,
                   const struct in_point *pts, size_t n, int rc)
{
    double interval = a->interval < 0 ? guess_interval(pts, n) : a->interval;
    struct kts_vl vl;
    struct kts_ds ds;
    memset(&vl, 0, sizeof(vl));
    memset(&ds, 0, sizeof(ds));
    snprintf(vl.host, sizeof(vl.host), "%s", a->host);
    snprintf(vl.plugin, sizeof(vl.plugin), "%s", a->plugin);
    snprintf(vl.type, sizeof(vl.type), "%s", a->type);
    snprintf(ds.name, sizeof(ds.name), "value");
    ds.type = KTS_DS_GAUGE;
    vl.ds = &ds;
    vl.ds_len = 1;
    vl.interval = KTS_TIME_FROM_DOUBLE(interval);
    struct kts_pipeline *p = NULL;
    for (size_t i = 0; i < npipes && p == NULL; i++)
        if (a->pname ? strcmp(kts_pipeline_name(pipes[i]), a->pname) == 0
                     : kts_pipeline_match(pipes[i], &vl))
            p = pipes[i];
    if (p == NULL && rc == 0) {
        fprintf(stderr, "kts-filter: no pipeline %s%s%s in %s\n", a->pname ? "named " : "matches ",
                a->pname ? a->pname : a->host, a->pname ? "" : "/kts-filter/gauge", a->config);
        rc = 1;
    }
    if (rc != 0)
        return rc;
    printf("timestamp,input,output,action\n");
    for (size_t i = 0; i < n && rc == 0; i++) {
        vl.time = KTS_TIME_FROM_DOUBLE(pts[i].t);
        ds.value.gauge = pts[i].v;
        rc = kts_pipeline_process(p, &vl, 1, collect, NULL);
        report(&vl);
    }
    if (rc == 0 && !no_flush)
        rc = kts_pipeline_flush(p, collect, NULL);
    report(NULL);
    drain(true);
    fprintf(stderr, "kts-filter: pipeline \"%s\", %zu points, interval %g s:", kts_pipeline_name(p),
            n, interval);
    for (int k = 0; k < 7; k++)
        fprintf(stderr, " %llu %s", (unsigned long long)counts[k], action_names[k]);
    fprintf(stderr, "\n");
    return rc != 0;
}

/* --state-in: restore every pipeline's series from `path`. 0, or 1 (reported). */
static int state_in(const char *path, struct kts_pipeline **pipes, size_t npipes)
{
    struct kts_state_load_stats st;
    char err[512];
    int rc = kts_state_file_load(path, pipes, npipes, &st, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "kts-filter: --state-in %s\n", err);
        return 1;
    }
    fprintf(stderr, "kts-filter: state %s: %llu series restored, %llu refused", path,
            (unsigned long long)st.imported, (unsigned long long)st.refused);
    for (size_t i = 0; i < npipes; i++) {
        struct kts_pipeline_state_stats ps;
        kts_pipeline_state_get_stats(pipes[i], &ps);
        for (int r = 1; r < KTS_STATE_REASONS; r++)
            if (ps.refused[r] > 0)
                fprintf(stderr, " (pipeline \"%s\": %llu %s)", kts_pipeline_name(pipes[i]),
                        (unsigned long long)ps.refused[r],
                        kts_state_refusal_name((enum kts_state_refusal)r));
    }
    fprintf(stderr, ", %llu of pipelines not in the configuration\n",
            (unsigned long long)st.unknown);
    return 0;
}

/* --state-out: save every pipeline's series to `path`. 0, or 1 (reported). */
static int state_out(const char *path, struct kts_pipeline **pipes, size_t npipes)
{
    size_t records = 0;
    char err[512];
    if (kts_state_file_save(path, pipes, npipes, &records, err, sizeof(err)) < 0) {
        fprintf(stderr, "kts-filter: --state-out %s\n", err);
        return 1;
    }
    fprintf(stderr, "kts-filter: state %s: %zu series saved\n", path, records);
    return 0;
}

/* The first character of `f` that is not white space, left to read; EOF when none. */
static int peek_first(FILE *f)
{
    int first = fgetc(f);
    while (first == ' ' || first == '\t' || first == '\n' || first == '\r')
        first = fgetc(f);
    if (first != EOF)
        ungetc(first, f);
    return first;
}

int main(int argc, char **argv)
{
    struct args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        return rc;
    struct kts_pipeline *pipes[64];
    size_t npipes;
    if (load_pipelines(a.config, pipes, sizeof(pipes) / sizeof(pipes[0]), &npipes) != 0)
        return 1;
    if (a.check_only) {
        list_pipelines(pipes, npipes);
        destroy_pipelines(pipes, npipes);
        return 0;
    }
    no_flush = a.state_out != NULL;
    if (a.state_in != NULL && state_in(a.state_in, pipes, npipes) != 0) {
        destroy_pipelines(pipes, npipes);
        return 1;
    }
    if (a.seed.state_topic != NULL) {
        rc = kts_seed_state_topic(&a.seed, pipes, npipes);
        destroy_pipelines(pipes, npipes);
        return rc;
    }
    FILE *f = strcmp(a.input, "-") == 0 ? stdin : fopen(a.input, "r");
    if (f == NULL) {
        fprintf(stderr, "kts-filter: %s: %s\n", a.input, strerror(errno));
        destroy_pipelines(pipes, npipes);
        return 1;
    }
    int first = peek_first(f);
    struct in_point *pts = NULL;
    size_t n = 0;
    if (first == '{' || first == '[') {
        rc = run_json(f, a.input, pipes, npipes, a.pname);
    } else {
        rc = read_csv(f, a.input, &pts, &n);
    }
    if (f != stdin)
        fclose(f);
    if (first != '{' && first != '[')
        rc = run_csv(&a, pipes, npipes, pts, n, rc);
    if (rc == 0 && a.state_out != NULL)
        rc = state_out(a.state_out, pipes, npipes);
    destroy_pipelines(pipes, npipes);
    free(pts);
    free(em);
    free(lq);
    kts_output_fini(&typed);
    return rc;
}
