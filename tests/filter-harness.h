/* SPDX-License-Identifier: MIT */
/*
 * filter-harness.h: helpers for the filter tests (header only, test code).
 *
 * fh_filter_new("smooth", "Method \"sma\"\nWindow 300") configures one filter through its
 * option table exactly as a <Filter> block would; fh_step() feeds it one point and returns the
 * points it emitted. fh_pipeline_new() builds a whole pipeline from config text.
 */
#ifndef KTS_FILTER_HARNESS_H
#define KTS_FILTER_HARNESS_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kts_conf.h"
#include "kts_filter.h"
#include "kts_pipeline.h"

#define FH_MAX_OUT 1024
/* Tests write small times; event time 0 means "no time yet" to the filters (no collectd value
 * has it), so the harness shifts every time by FH_T0 seconds and fh_t() shifts back. */
#define FH_T0 1000000.0

struct fh {
    const struct kts_filter_ops *ops;
    void *conf;
    void *state;
    size_t state_size;
    struct kts_filter_stats st;
    struct kts_point out[FH_MAX_OUT];
    size_t n;
};

static inline void fh_free(struct fh *h)
{
    if (h == NULL)
        return;
    kts_opt_free(h->ops->options, h->conf);
    free(h->conf);
    free(h->state);
    free(h);
}

/* Parse "<Filter name> opts </Filter>" and configure; NULL (and a diag) on failure. */
static inline struct fh *fh_filter_new(const char *name, const char *opts)
{
    char text[4096];
    char err[512];
    snprintf(text, sizeof(text), "<Filter \"%s\">\n%s\n</Filter>\n", name, opts);
    struct kts_conf *root = NULL;
    if (kts_conf_parse(text, strlen(text), "test", &root, err, sizeof(err)) < 0) {
        printf("# parse: %s\n", err);
        return NULL;
    }
    struct fh *h = calloc(1, sizeof(*h));
    h->ops = kts_filter_find(name);
    if (h->ops == NULL) {
        free(h);
        kts_conf_free(root);
        return NULL;
    }
    h->conf = calloc(1, h->ops->conf_size);
    int rc = kts_opt_defaults(h->ops->options, h->conf);
    if (rc == 0)
        rc = kts_opt_apply(h->ops->options, h->conf, &root->children[0], "test");
    if (rc == 0 && h->ops->prepare)
        rc = h->ops->prepare(h->conf, "test");
    kts_conf_free(root);
    if (rc < 0) {
        h->state = NULL;
        fh_free(h);
        return NULL;
    }
    h->state_size = h->ops->state_size(h->conf);
    h->state = calloc(1, h->state_size);
    h->ops->init(h->conf, h->state);
    return h;
}

/* Reset the state (a new series). */
static inline void fh_reset(struct fh *h)
{
    memset(h->state, 0, h->state_size);
    memset(&h->st, 0, sizeof(h->st));
    h->ops->init(h->conf, h->state);
}

static inline struct kts_point fh_point(double t, double v)
{
    struct kts_point p;
    memset(&p, 0, sizeof(p));
    p.t = KTS_TIME_FROM_DOUBLE(t + FH_T0);
    p.value = v;
    p.type = KTS_DS_GAUGE;
    p.raw.gauge = v;
    p.flags = KTS_PT_RAW;
    return p;
}

/* Feed one point; the emitted points are h->out[0..return). */
static inline size_t fh_push(struct fh *h, const struct kts_point *p)
{
    struct kts_out out = {h->out, 0, FH_MAX_OUT, &h->st};
    h->ops->step(h->conf, h->state, p, &out);
    h->n = out.n;
    return out.n;
}

static inline size_t fh_step(struct fh *h, double t, double v)
{
    struct kts_point p = fh_point(t, v);
    return fh_push(h, &p);
}

static inline size_t fh_flush(struct fh *h)
{
    struct kts_out out = {h->out, 0, FH_MAX_OUT, &h->st};
    if (h->ops->flush)
        h->ops->flush(h->conf, h->state, &out);
    h->n = out.n;
    return out.n;
}

static inline double fh_t(const struct kts_point *p)
{
    return KTS_TIME_TO_DOUBLE(p->t) - FH_T0;
}

/* Build a pipeline from the text of one <Pipeline> block; NULL on failure. */
static inline struct kts_pipeline *fh_pipeline_new(const char *text)
{
    char err[512];
    struct kts_conf *root = NULL;
    if (kts_conf_parse(text, strlen(text), "test", &root, err, sizeof(err)) < 0) {
        printf("# parse: %s\n", err);
        return NULL;
    }
    struct kts_pipeline *p = NULL;
    if (root->children_num < 1 ||
        kts_pipeline_config(&root->children[0], "test", &p, err, sizeof(err)) < 0)
        p = NULL;
    kts_conf_free(root);
    return p;
}

#endif
