/* SPDX-License-Identifier: MIT */
/*
 * Golden fixtures: every case in tests/data/filters/LIST (made by gen.py from pandas,
 * statsmodels and scipy) is run through a real pipeline configured from its .conf file, at
 * batch sizes 1, 2, 3, 7, 64 and all-at-once; the outputs must be identical across batch sizes
 * and match the reference: "abs TOL" point by point (same timestamps, |got - want| <= TOL), or
 * "rmse TOL skip N" (root mean square difference after the first N points).
 */
#include "filter-harness.h"
#include "tap.h"

struct series {
    double *t, *v;
    size_t n, cap;
};

static void push(struct series *s, double t, double v)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->t = realloc(s->t, s->cap * sizeof(double));
        s->v = realloc(s->v, s->cap * sizeof(double));
    }
    s->t[s->n] = t;
    s->v[s->n] = v;
    s->n++;
}

static int emit(const struct kts_vl *vl, const uint16_t *flags, void *opaque)
{
    (void)flags;
    push(opaque, KTS_TIME_TO_DOUBLE(vl->time), vl->ds[0].value.gauge);
    return 0;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

static size_t read_input(const char *path, struct kts_vl **vls_out, struct kts_ds **ds_out)
{
    char *text = slurp(path);
    if (text == NULL)
        return 0;
    size_t n = 0, cap = 1024;
    struct kts_vl *vls = calloc(cap, sizeof(*vls));
    struct kts_ds *ds = calloc(cap, sizeof(*ds));
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "time", 4) == 0)
            continue;
        if (n == cap) {
            cap *= 2;
            vls = realloc(vls, cap * sizeof(*vls));
            ds = realloc(ds, cap * sizeof(*ds));
        }
        char *f1 = strchr(line, ','), *f2 = f1 ? strchr(f1 + 1, ',') : NULL;
        if (f2 == NULL)
            continue;
        memset(&vls[n], 0, sizeof(vls[n]));
        memset(&ds[n], 0, sizeof(ds[n]));
        snprintf(vls[n].host, KTS_NAME_MAX, "golden");
        snprintf(vls[n].plugin, KTS_NAME_MAX, "test");
        snprintf(vls[n].type, KTS_NAME_MAX, "gauge");
        vls[n].time = KTS_TIME_FROM_DOUBLE(strtod(line, NULL));
        switch (f1[1]) {
        case 'c':
            ds[n].type = KTS_DS_COUNTER;
            ds[n].value.counter = strtoull(f2 + 1, NULL, 10);
            break;
        case 'd':
            ds[n].type = KTS_DS_DERIVE;
            ds[n].value.derive = strtoll(f2 + 1, NULL, 10);
            break;
        case 'a':
            ds[n].type = KTS_DS_ABSOLUTE;
            ds[n].value.absolute = strtoull(f2 + 1, NULL, 10);
            break;
        default:
            ds[n].type = KTS_DS_GAUGE;
            ds[n].value.gauge = strtod(f2 + 1, NULL);
        }
        n++;
    }
    for (size_t i = 0; i < n; i++) {
        vls[i].ds = &ds[i];
        vls[i].ds_len = 1;
    }
    free(text);
    *vls_out = vls;
    *ds_out = ds;
    return n;
}

static void read_output(const char *path, struct series *s)
{
    char *text = slurp(path);
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "time", 4) == 0)
            continue;
        char *c = strchr(line, ',');
        if (c != NULL)
            push(s, strtod(line, NULL), strtod(c + 1, NULL));
    }
    free(text);
}

static void run_case(const char *dir, const char *name)
{
    char path[2200], err[512];
    snprintf(path, sizeof(path), "%s/%s.conf", dir, name);
    char *conf_text = slurp(path);
    char mode[16] = "abs";
    double tol = 0;
    size_t skip = 0;
    const char *cmp = conf_text ? strstr(conf_text, "# compare ") : NULL;
    if (cmp)
        sscanf(cmp, "# compare %15s %lf skip %zu", mode, &tol, &skip);
    struct kts_conf *root = NULL;
    struct kts_pipeline *p = NULL;
    if (kts_conf_parse_file(path, &root, err, sizeof(err)) < 0 || root->children_num < 1 ||
        kts_pipeline_config(&root->children[0], name, &p, err, sizeof(err)) < 0) {
        ok(0, "%s: configuration loads (%s)", name, err);
        ok(0, "%s: batch sizes", name);
        ok(0, "%s: reference", name);
        kts_conf_free(root);
        free(conf_text);
        return;
    }
    kts_pipeline_destroy(p);
    snprintf(path, sizeof(path), "%s/%s.in.csv", dir, name);
    struct kts_vl *vls = NULL;
    struct kts_ds *ds = NULL;
    size_t n = read_input(path, &vls, &ds);
    ok(n > 0, "%s: configuration loads, %zu input points", name, n);

    size_t sizes[] = {1, 2, 3, 7, 64, n};
    struct series first = {0};
    bool same = true;
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        kts_pipeline_config(&root->children[0], name, &p, err, sizeof(err));
        struct series got = {0};
        for (size_t i = 0; i < n; i += sizes[k])
            kts_pipeline_process(p, vls + i, i + sizes[k] <= n ? sizes[k] : n - i, emit, &got);
        kts_pipeline_flush(p, emit, &got);
        kts_pipeline_destroy(p);
        if (k == 0) {
            first = got;
            continue;
        }
        if (got.n != first.n || memcmp(got.t, first.t, got.n * sizeof(double)) != 0 ||
            memcmp(got.v, first.v, got.n * sizeof(double)) != 0)
            same = false;
        free(got.t);
        free(got.v);
    }
    ok(same, "%s: identical output at batch sizes 1, 2, 3, 7, 64, %zu", name, n);

    struct series want = {0};
    snprintf(path, sizeof(path), "%s/%s.out.csv", dir, name);
    read_output(path, &want);
    if (strcmp(mode, "rmse") == 0) {
        double sq = 0;
        size_t m = 0;
        for (size_t i = skip; i < first.n && i < want.n; i++) {
            sq += pow(first.v[i] - want.v[i], 2);
            m++;
        }
        double rmse = m ? sqrt(sq / (double)m) : INFINITY;
        ok(first.n == want.n && rmse <= tol, "%s: RMSE to the reference %.4f <= %g over %zu points",
           name, rmse, tol, m);
    } else {
        size_t bad = 0, first_bad = 0;
        for (size_t i = 0; i < want.n && i < first.n; i++) {
            bool good = fabs(first.t[i] - want.t[i]) < 1e-6 &&
                        ((isnan(first.v[i]) && isnan(want.v[i])) ||
                         fabs(first.v[i] - want.v[i]) <= tol * (1 + fabs(want.v[i])));
            if (!good && bad++ == 0)
                first_bad = i;
        }
        if (!ok(first.n == want.n && bad == 0, "%s: matches the reference within %g (%zu points)",
                name, tol, want.n))
            diag("got %zu points, want %zu; %zu differ, first at %zu: got (%.6f, %.17g) want "
                 "(%.6f, %.17g)",
                 first.n, want.n, bad, first_bad, first_bad < first.n ? first.t[first_bad] : 0,
                 first_bad < first.n ? first.v[first_bad] : 0, want.t[first_bad],
                 want.v[first_bad]);
    }
    free(first.t);
    free(first.v);
    free(want.t);
    free(want.v);
    free(vls);
    free(ds);
    kts_conf_free(root);
    free(conf_text);
}

int main(void)
{
    const char *top = getenv("KTS_TOP_SRCDIR");
    char dir[1024], path[1100];
    snprintf(dir, sizeof(dir), "%s/tests/data/filters", top ? top : ".");
    snprintf(path, sizeof(path), "%s/LIST", dir);
    char *list = slurp(path);
    if (list == NULL) {
        plan(1);
        ok(0, "read %s", path);
        return done_testing();
    }
    size_t cases = 0;
    for (char *c = list; *c; c++)
        cases += *c == '\n';
    plan((int)cases * 3);
    char *save = NULL;
    for (char *name = strtok_r(list, "\n", &save); name; name = strtok_r(NULL, "\n", &save))
        run_case(dir, name);
    free(list);
    return done_testing();
}
