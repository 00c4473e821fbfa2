/* SPDX-License-Identifier: MIT */
/*
 * vl_desc.h: value lists described in text, for tests and test tools (header only).
 *
 * One directive per line, '#' starts a comment, tokens separated by blanks and unescaped with
 * vl_desc_unescape() (\n \t \r \\ \s for a space, \xNN for any byte, \z for nothing, so
 * "\z" alone is an empty string):
 *   host|plugin|plugin_instance|type|type_instance NAME
 *   time CDTIME            (integer, 2^-30 s)      interval CDTIME
 *   ds NAME TYPE VALUE     (gauge: strtod syntax incl. nan, inf, hex floats)
 *   meta KEY string|signed_int|unsigned_int|double|boolean VALUE
 *   lossy                  (decoding gives something else by design: +-Inf, invalid UTF-8)
 */
#ifndef KTS_TEST_VL_DESC_H
#define KTS_TEST_VL_DESC_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kts_format.h"

/* Unescape a description token into out (cap bytes with the NUL). Returns the length. */
static inline size_t vl_desc_unescape(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = in; *p != '\0' && n + 1 < cap; p++) {
        if (*p != '\\') {
            out[n++] = *p;
            continue;
        }
        p++;
        if (*p == '\0')
            break;
        switch (*p) {
        case 'n':
            out[n++] = '\n';
            break;
        case 't':
            out[n++] = '\t';
            break;
        case 'r':
            out[n++] = '\r';
            break;
        case 's':
            out[n++] = ' ';
            break;
        case 'z': /* nothing: "\z" alone is the empty string */
            break;
        case 'x': {
            char h[3] = {p[1], p[2], 0};
            out[n++] = (char)strtoul(h, NULL, 16);
            p += 2;
            break;
        }
        default:
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    return n;
}

/* Storage behind a value list loaded from a description. */
struct vl_store {
    struct kts_vl vl;
    struct kts_ds ds[KTS_FORMAT_MAX_DS + 2];
    struct kts_meta meta[KTS_FORMAT_MAX_META + 2];
    char strs[KTS_FORMAT_MAX_META + 2][2][512];
    bool lossy;
};

static inline int vl_desc_ds_type(const char *s, enum kts_ds_type *t)
{
    for (int i = 0; i <= 3; i++)
        if (strcmp(kts_ds_type_name((enum kts_ds_type)i), s) == 0) {
            *t = (enum kts_ds_type)i;
            return 0;
        }
    return -1;
}

/* Parse a description (`src` is only read) into caller-owned `st`. Returns 0 or -1. */
static inline int load_vl_text(const char *src, struct vl_store *st)
{
    memset(st, 0, sizeof(*st));
    st->vl.ds = st->ds;
    st->vl.meta = st->meta;
    char *text = strdup(src);
    if (text == NULL)
        return -1;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *tok[5] = {0};
        int nt = 0;
        char *s2 = NULL;
        for (char *t = strtok_r(line, " \t", &s2); t != NULL && nt < 5;
             t = strtok_r(NULL, " \t", &s2))
            tok[nt++] = t;
        if (nt == 0 || tok[0][0] == '#')
            continue;
        char *names[] = {st->vl.host, st->vl.plugin, st->vl.plugin_instance, st->vl.type,
                         st->vl.type_instance};
        const char *keys[] = {"host", "plugin", "plugin_instance", "type", "type_instance"};
        bool done = false;
        for (int i = 0; i < 5; i++)
            if (strcmp(tok[0], keys[i]) == 0 && nt == 2) {
                vl_desc_unescape(tok[1], names[i], KTS_NAME_MAX);
                done = true;
            }
        if (done)
            continue;
        if (strcmp(tok[0], "time") == 0 && nt == 2) {
            st->vl.time = strtoull(tok[1], NULL, 10);
        } else if (strcmp(tok[0], "interval") == 0 && nt == 2) {
            st->vl.interval = strtoull(tok[1], NULL, 10);
        } else if (strcmp(tok[0], "lossy") == 0) {
            st->lossy = true;
        } else if (strcmp(tok[0], "ds") == 0 && nt == 4) {
            struct kts_ds *d = &st->ds[st->vl.ds_len++];
            vl_desc_unescape(tok[1], d->name, sizeof(d->name));
            if (vl_desc_ds_type(tok[2], &d->type) != 0)
                goto bad;
            if (d->type == KTS_DS_GAUGE)
                d->value.gauge = strtod(tok[3], NULL);
            else if (d->type == KTS_DS_DERIVE)
                d->value.derive = strtoll(tok[3], NULL, 10);
            else
                d->value.counter = strtoull(tok[3], NULL, 10);
        } else if (strcmp(tok[0], "meta") == 0 && nt == 4) {
            size_t i = st->vl.meta_len++;
            struct kts_meta *m = &st->meta[i];
            vl_desc_unescape(tok[1], st->strs[i][0], sizeof(st->strs[i][0]));
            m->key = st->strs[i][0];
            if (strcmp(tok[2], "string") == 0) {
                m->type = KTS_META_STRING;
                vl_desc_unescape(tok[3], st->strs[i][1], sizeof(st->strs[i][1]));
                m->value.string = st->strs[i][1];
            } else if (strcmp(tok[2], "signed_int") == 0) {
                m->type = KTS_META_SIGNED_INT;
                m->value.sint = strtoll(tok[3], NULL, 10);
            } else if (strcmp(tok[2], "unsigned_int") == 0) {
                m->type = KTS_META_UNSIGNED_INT;
                m->value.uint = strtoull(tok[3], NULL, 10);
            } else if (strcmp(tok[2], "double") == 0) {
                m->type = KTS_META_DOUBLE;
                m->value.dbl = strtod(tok[3], NULL);
            } else if (strcmp(tok[2], "boolean") == 0) {
                m->type = KTS_META_BOOLEAN;
                m->value.boolean = strcmp(tok[3], "true") == 0;
            } else {
                goto bad;
            }
        } else {
            goto bad;
        }
    }
    free(text);
    return 0;
bad:
    free(text);
    return -1;
}

#endif
