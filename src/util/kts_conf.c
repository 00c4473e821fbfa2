/* SPDX-License-Identifier: MIT */
#include "kts_conf.h"

#include "kts_array.h"
#include "kts_log.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ tree building */

struct kts_conf *kts_conf_new(const char *key)
{
    struct kts_conf *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->key = strdup(key != NULL ? key : "");
    if (c->key == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

struct kts_conf *kts_conf_add_child(struct kts_conf *parent, const char *key)
{
    if (parent->children_num == INT_MAX || KTS_ARRAY_GROW(parent->children, parent->children_cap,
                                                          (size_t)parent->children_num + 1) != 0)
        return NULL;
    struct kts_conf *c = &parent->children[parent->children_num];
    memset(c, 0, sizeof(*c));
    c->key = strdup(key);
    if (c->key == NULL)
        return NULL;
    c->file = parent->file;
    parent->children_num++;
    return c;
}

static struct kts_conf_value *conf_add_value(struct kts_conf *item)
{
    if (item->values_num == INT_MAX ||
        KTS_ARRAY_GROW(item->values, item->values_cap, (size_t)item->values_num + 1) != 0)
        return NULL;
    struct kts_conf_value *v = &item->values[item->values_num++];
    memset(v, 0, sizeof(*v));
    return v;
}

int kts_conf_add_string(struct kts_conf *item, const char *s)
{
    char *copy = strdup(s);
    if (copy == NULL)
        return -ENOMEM;
    struct kts_conf_value *v = conf_add_value(item);
    if (v == NULL) {
        free(copy);
        return -ENOMEM;
    }
    v->type = KTS_CONF_STRING;
    v->v.string = copy;
    return 0;
}

int kts_conf_add_number(struct kts_conf *item, double d)
{
    struct kts_conf_value *v = conf_add_value(item);
    if (v == NULL)
        return -ENOMEM;
    v->type = KTS_CONF_NUMBER;
    v->v.number = d;
    return 0;
}

int kts_conf_add_boolean(struct kts_conf *item, bool b)
{
    struct kts_conf_value *v = conf_add_value(item);
    if (v == NULL)
        return -ENOMEM;
    v->type = KTS_CONF_BOOLEAN;
    v->v.boolean = b;
    return 0;
}

void kts_conf_fini(struct kts_conf *item)
{
    if (item == NULL)
        return;
    for (int i = 0; i < item->values_num; i++)
        if (item->values[i].type == KTS_CONF_STRING)
            free(item->values[i].v.string);
    free(item->values);
    for (int i = 0; i < item->children_num; i++)
        kts_conf_fini(&item->children[i]);
    free(item->children);
    free(item->key);
    memset(item, 0, sizeof(*item));
}

void kts_conf_free(struct kts_conf *root)
{
    if (root == NULL)
        return;
    /* The root owns the file name string that every item points at. */
    char *file = (char *)root->file;
    kts_conf_fini(root);
    free(file);
    free(root);
}

const char *kts_conf_describe_values(const struct kts_conf *item, char *buf, size_t size)
{
    size_t used = 0;
    if (size == 0)
        return buf;
    buf[0] = '\0';
    for (int i = 0; i < item->values_num && used < size; i++) {
        const struct kts_conf_value *v = &item->values[i];
        int n;
        const char *sep = i ? " " : "";
        switch (v->type) {
        case KTS_CONF_STRING:
            n = snprintf(buf + used, size - used, "%s\"%s\"", sep, v->v.string);
            break;
        case KTS_CONF_NUMBER:
            n = snprintf(buf + used, size - used, "%s%.15g", sep, v->v.number);
            break;
        default:
            n = snprintf(buf + used, size - used, "%s%s", sep, v->v.boolean ? "true" : "false");
            break;
        }
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return buf;
}

/* ------------------------------------------------------------------ parser */

struct parser {
    const char *p, *end;
    const char *file;
    int line;
    char *err;
    size_t errsz;
};

static int perr(struct parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(struct parser *ps, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(ps->err, ps->errsz, "%s:%d: %s", ps->file, ps->line, msg);
    return -EINVAL;
}

/* Skips blanks, comments and escaped newlines; stops at a newline (statement end). */
static void skip_blank(struct parser *ps)
{
    while (ps->p < ps->end) {
        char c = *ps->p;
        if (c == ' ' || c == '\t' || c == '\r') {
            ps->p++;
        } else if (c == '\\' && ps->p + 1 < ps->end &&
                   (ps->p[1] == '\n' ||
                    (ps->p[1] == '\r' && ps->p + 2 < ps->end && ps->p[2] == '\n'))) {
            ps->p += ps->p[1] == '\n' ? 2 : 3;
            ps->line++;
        } else if (c == '#') {
            while (ps->p < ps->end && *ps->p != '\n')
                ps->p++;
        } else {
            break;
        }
    }
}

static bool is_word_char(char c)
{
    return c != '\0' && !isspace((unsigned char)c) && c != '"' && c != '<' && c != '>' && c != '#';
}

/* A bare word; returns a malloc'ed copy. */
static char *read_word(struct parser *ps)
{
    const char *s = ps->p;
    while (ps->p < ps->end && is_word_char(*ps->p) &&
           !(*ps->p == '\\' && ps->p + 1 < ps->end && (ps->p[1] == '\n' || ps->p[1] == '\r')))
        ps->p++;
    return strndup(s, (size_t)(ps->p - s));
}

/* A double-quoted string starting at ps->p; returns a malloc'ed, unescaped copy or NULL. */
static char *read_quoted(struct parser *ps, int *rc)
{
    size_t cap = 32, n = 0;
    char *out = malloc(cap);
    if (out == NULL) {
        *rc = -ENOMEM;
        return NULL;
    }
    ps->p++; /* opening quote */
    while (ps->p < ps->end && *ps->p != '"') {
        char c = *ps->p++;
        if (c == '\n') {
            free(out);
            *rc = perr(ps, "unterminated string (a string ends on its line)");
            return NULL;
        }
        if (c == '\\' && ps->p < ps->end) {
            c = *ps->p++;
            if (c == '\n') { /* continuation inside a string */
                ps->line++;
                continue;
            }
        }
        if (n + 2 > cap) {
            cap *= 2;
            char *g = realloc(out, cap);
            if (g == NULL) {
                free(out);
                *rc = -ENOMEM;
                return NULL;
            }
            out = g;
        }
        out[n++] = c;
    }
    if (ps->p >= ps->end) {
        free(out);
        *rc = perr(ps, "unterminated string");
        return NULL;
    }
    ps->p++; /* closing quote */
    out[n] = '\0';
    if (strlen(out) != n) {
        free(out);
        *rc = perr(ps, "NUL byte inside a string");
        return NULL;
    }
    return out;
}

/* Reads values up to end of statement (newline, EOF or '>' when in_tag). */
static int read_values(struct parser *ps, struct kts_conf *item, bool in_tag)
{
    for (;;) {
        skip_blank(ps);
        if (ps->p >= ps->end || *ps->p == '\n' || (in_tag && *ps->p == '>'))
            return 0;
        if (*ps->p == '"') {
            int rc = 0;
            char *s = read_quoted(ps, &rc);
            if (s == NULL)
                return rc;
            rc = kts_conf_add_string(item, s);
            free(s);
            if (rc < 0)
                return rc;
            continue;
        }
        if (*ps->p == '<' || *ps->p == '>')
            return perr(ps, "unexpected '%c' in the values of \"%s\"", *ps->p, item->key);
        char *w = read_word(ps);
        if (w == NULL)
            return -ENOMEM;
        if (*w == '\0') { /* e.g. \v, \f, a '\\' before a lone \r: would never advance */
            free(w);
            return perr(ps, "unexpected character 0x%02x in the values of \"%s\"",
                        (unsigned char)*ps->p, item->key);
        }
        int rc;
        char *endp;
        errno = 0;
        double d = strtod(w, &endp);
        if (strcasecmp(w, "true") == 0 || strcasecmp(w, "yes") == 0 || strcasecmp(w, "on") == 0)
            rc = kts_conf_add_boolean(item, true);
        else if (strcasecmp(w, "false") == 0 || strcasecmp(w, "no") == 0 ||
                 strcasecmp(w, "off") == 0)
            rc = kts_conf_add_boolean(item, false);
        else if (*w != '\0' && *endp == '\0' && errno == 0 && isfinite(d))
            rc = kts_conf_add_number(item, d);
        else /* collectd also accepts unquoted words as strings */
            rc = kts_conf_add_string(item, w);
        free(w);
        if (rc < 0)
            return rc;
    }
}

static int parse_block_body(struct parser *ps, struct kts_conf *parent, int depth);

static int parse_statement(struct parser *ps, struct kts_conf *parent, int depth, bool *closed)
{
    *closed = false;
    if (*ps->p == '<') {
        ps->p++;
        bool closing = ps->p < ps->end && *ps->p == '/';
        if (closing)
            ps->p++;
        char *key = read_word(ps);
        if (key == NULL)
            return -ENOMEM;
        if (*key == '\0') {
            free(key);
            return perr(ps, "a block tag needs a name");
        }
        if (closing) {
            skip_blank(ps);
            int rc = 0;
            if (depth == 0)
                rc = perr(ps, "</%s> closes a block that was never opened", key);
            else if (strcasecmp(key, parent->key) != 0)
                rc = perr(ps, "</%s> closes <%s>", key, parent->key);
            else if (ps->p >= ps->end || *ps->p != '>')
                rc = perr(ps, "missing '>' after </%s", key);
            free(key);
            if (rc < 0)
                return rc;
            ps->p++;
            *closed = true;
            return 0;
        }
        if (depth >= 32) {
            free(key);
            return perr(ps, "blocks nested deeper than 32 levels");
        }
        struct kts_conf *item = kts_conf_add_child(parent, key);
        free(key);
        if (item == NULL)
            return -ENOMEM;
        item->line = ps->line;
        int rc = read_values(ps, item, true);
        if (rc < 0)
            return rc;
        if (ps->p >= ps->end || *ps->p != '>')
            return perr(ps, "missing '>' after <%s", item->key);
        ps->p++;
        /* Index, not pointer: parsing children may realloc parent->children. */
        int idx = parent->children_num - 1;
        return parse_block_body(ps, &parent->children[idx], depth + 1);
    }
    char *key = read_word(ps);
    if (key == NULL)
        return -ENOMEM;
    if (*key == '\0') {
        free(key);
        return perr(ps, "unexpected character '%c'", *ps->p);
    }
    struct kts_conf *item = kts_conf_add_child(parent, key);
    free(key);
    if (item == NULL)
        return -ENOMEM;
    item->line = ps->line;
    return read_values(ps, item, false);
}

static int parse_block_body(struct parser *ps, struct kts_conf *block, int depth)
{
    int open_line = ps->line;
    for (;;) {
        skip_blank(ps);
        if (ps->p >= ps->end) {
            if (depth > 0) {
                ps->line = open_line;
                return perr(ps, "<%s> is never closed", block->key);
            }
            return 0;
        }
        if (*ps->p == '\n') {
            ps->p++;
            ps->line++;
            continue;
        }
        bool closed;
        int rc = parse_statement(ps, block, depth, &closed);
        if (rc < 0)
            return rc;
        if (closed)
            return 0;
        skip_blank(ps);
        if (ps->p < ps->end && *ps->p != '\n')
            return perr(ps, "unexpected '%c' after a statement", *ps->p);
    }
}

int kts_conf_parse(const char *text, size_t len, const char *filename, struct kts_conf **out,
                   char *errbuf, size_t errbuf_size)
{
    *out = NULL;
    if (memchr(text, '\0', len) != NULL) {
        snprintf(errbuf, errbuf_size, "%s: contains a NUL byte", filename ? filename : "(config)");
        return -EINVAL;
    }
    struct kts_conf *root = kts_conf_new("");
    char *file = strdup(filename != NULL ? filename : "(config)");
    if (root == NULL || file == NULL) {
        free(file);
        kts_conf_free(root);
        return -ENOMEM;
    }
    root->file = file;
    struct parser ps = {text, text + len, file, 1, errbuf, errbuf_size};
    int rc = parse_block_body(&ps, root, 0);
    if (rc < 0) {
        if (rc == -ENOMEM)
            snprintf(errbuf, errbuf_size, "%s: out of memory", file);
        kts_conf_free(root);
        return rc;
    }
    *out = root;
    return 0;
}

int kts_conf_parse_file(const char *path, struct kts_conf **out, char *errbuf, size_t errbuf_size)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        snprintf(errbuf, errbuf_size, "%s: %s", path, strerror(e));
        return -e;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (64u << 20)) {
                free(buf);
                fclose(f);
                snprintf(errbuf, errbuf_size, "%s: larger than 64 MiB", path);
                return -EFBIG;
            }
            char *g = realloc(buf, cap);
            if (g == NULL) {
                free(buf);
                fclose(f);
                return -ENOMEM;
            }
            buf = g;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        free(buf);
        snprintf(errbuf, errbuf_size, "%s: read error", path);
        return -EIO;
    }
    int rc = kts_conf_parse(buf, len, path, out, errbuf, errbuf_size);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------ string vectors */

void kts_strv_free(struct kts_strv *sv)
{
    for (size_t i = 0; i < sv->n; i++)
        free(sv->v[i]);
    free(sv->v);
    sv->v = NULL;
    sv->n = 0;
    sv->cap = 0;
}

int kts_strv_push(struct kts_strv *sv, const char *s)
{
    char *copy = strdup(s);
    if (copy == NULL || KTS_ARRAY_GROW(sv->v, sv->cap, sv->n + 1) != 0) {
        free(copy);
        return -ENOMEM;
    }
    sv->v[sv->n++] = copy;
    return 0;
}

/* ------------------------------------------------------------------ option tables */

#define FIELD(obj, opt, T) ((T *)((char *)(obj) + (opt)->offset))

static void describe_allowed(const struct kts_opt *o, char *buf, size_t size)
{
    switch (o->type) {
    case KTS_OPT_STRING:
    case KTS_OPT_STRINGS:
        snprintf(buf, size, "one string");
        break;
    case KTS_OPT_BOOL:
        snprintf(buf, size, "true or false");
        break;
    case KTS_OPT_ENUM: {
        size_t used = 0;
        for (size_t i = 0; o->words[i] != NULL && used < size; i++) {
            int n =
                snprintf(buf + used, size - used, "%s\"%s\"", i ? ", " : "one of ", o->words[i]);
            if (n < 0)
                break;
            used += (size_t)n;
        }
        break;
    }
    case KTS_OPT_INT:
    case KTS_OPT_DOUBLE:
    case KTS_OPT_DURATION: {
        const char *what = o->type == KTS_OPT_INT        ? "a whole number"
                           : o->type == KTS_OPT_DURATION ? "a number of seconds"
                                                         : "a number";
        if (o->min == 0 && o->max == 0)
            snprintf(buf, size, "%s", what);
        else
            snprintf(buf, size, "%s from %.15g to %.15g", what, o->min, o->max);
        break;
    }
    default:
        snprintf(buf, size, "see the documentation");
    }
}

static bool in_range(const struct kts_opt *o, double d)
{
    if (o->min == 0 && o->max == 0)
        return true;
    return d >= o->min && d <= o->max;
}

/* Converts one scalar value (from the config tree) into the field. Returns 0 or -EINVAL. */
static int opt_set_value(const struct kts_opt *o, void *obj, const struct kts_conf_value *v)
{
    switch (o->type) {
    case KTS_OPT_STRING: {
        if (v->type != KTS_CONF_STRING)
            return -EINVAL;
        char *s = strdup(v->v.string);
        if (s == NULL)
            return -ENOMEM;
        free(*FIELD(obj, o, char *));
        *FIELD(obj, o, char *) = s;
        return 0;
    }
    case KTS_OPT_STRINGS:
        if (v->type != KTS_CONF_STRING)
            return -EINVAL;
        return kts_strv_push(FIELD(obj, o, struct kts_strv), v->v.string);
    case KTS_OPT_BOOL:
        if (v->type == KTS_CONF_BOOLEAN) {
            *FIELD(obj, o, bool) = v->v.boolean;
            return 0;
        }
        if (v->type == KTS_CONF_STRING && strcasecmp(v->v.string, "true") == 0) {
            *FIELD(obj, o, bool) = true;
            return 0;
        }
        if (v->type == KTS_CONF_STRING && strcasecmp(v->v.string, "false") == 0) {
            *FIELD(obj, o, bool) = false;
            return 0;
        }
        return -EINVAL;
    case KTS_OPT_ENUM:
        if (v->type != KTS_CONF_STRING)
            return -EINVAL;
        for (int i = 0; o->words[i] != NULL; i++)
            if (strcasecmp(o->words[i], v->v.string) == 0) {
                *FIELD(obj, o, int) = i;
                return 0;
            }
        return -EINVAL;
    case KTS_OPT_INT: {
        double d;
        char *end;
        if (v->type == KTS_CONF_NUMBER)
            d = v->v.number;
        else if (v->type == KTS_CONF_STRING && *v->v.string != '\0')
            d = strtod(v->v.string, &end), d = *end ? NAN : d;
        else
            return -EINVAL;
        if (!isfinite(d) || d != floor(d) || fabs(d) > 9007199254740992.0 || !in_range(o, d))
            return -EINVAL;
        *FIELD(obj, o, int64_t) = (int64_t)d;
        return 0;
    }
    case KTS_OPT_DOUBLE:
    case KTS_OPT_DURATION: {
        double d;
        char *end;
        if (v->type == KTS_CONF_NUMBER)
            d = v->v.number;
        else if (v->type == KTS_CONF_STRING && *v->v.string != '\0')
            d = strtod(v->v.string, &end), d = *end ? NAN : d;
        else
            return -EINVAL;
        if (!isfinite(d) || !in_range(o, d))
            return -EINVAL;
        *FIELD(obj, o, double) = d;
        return 0;
    }
    default:
        return -EINVAL;
    }
}

int kts_opt_defaults(const struct kts_opt *table, void *obj)
{
    for (const struct kts_opt *o = table; o->name != NULL; o++) {
        if (o->def == NULL || o->type == KTS_OPT_CUSTOM)
            continue;
        struct kts_conf_value v = {.type = KTS_CONF_STRING, .v.string = (char *)o->def};
        if (o->type == KTS_OPT_BOOL) {
            v.type = KTS_CONF_BOOLEAN;
            v.v.boolean = strcasecmp(o->def, "true") == 0;
        }
        int rc = opt_set_value(o, obj, &v);
        if (rc < 0) {
            kts_log(KTS_LOG_ERR, "kts_conf: bad built-in default \"%s\" for %s", o->def, o->name);
            return rc;
        }
    }
    return 0;
}

/* The row of `sets` named `key`, or NULL; marks it seen (for KTS_OPT_REQUIRED). */
static const struct kts_opt *opt_find(const struct kts_opt_set *sets, size_t nsets, const char *key,
                                      unsigned char (*seen)[256], void **obj)
{
    for (size_t s = 0; s < nsets; s++)
        for (size_t k = 0; sets[s].table[k].name != NULL; k++)
            if (strcasecmp(sets[s].table[k].name, key) == 0) {
                if (k < sizeof(seen[s]))
                    seen[s][k] = 1;
                *obj = sets[s].obj;
                return &sets[s].table[k];
            }
    return NULL;
}

/* "A, B, C": every option name of `sets`, for the unknown-option message. */
static void opt_names(const struct kts_opt_set *sets, size_t nsets, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t s = 0; s < nsets; s++)
        for (size_t k = 0; sets[s].table[k].name != NULL && used < size; k++) {
            int n =
                snprintf(buf + used, size - used, "%s%s", used ? ", " : "", sets[s].table[k].name);
            if (n < 0)
                return;
            used += (size_t)n;
        }
}

/* Apply one child `c` through its row `o` into `obj`: 0, -EINVAL (logged) or -ENOMEM. */
static int opt_apply_one(const struct kts_opt *o, void *obj, const struct kts_conf *c,
                         const char *where, const char *loc)
{
    char vals[512], allowed[512];
    if (o->type == KTS_OPT_CUSTOM)
        return o->custom(o, obj, c, where) < 0 ? -EINVAL : 0;
    kts_conf_describe_values(c, vals, sizeof(vals));
    describe_allowed(o, allowed, sizeof(allowed));
    if (c->children_num > 0) {
        kts_log(KTS_LOG_ERR, "%s: option \"%s\"%s is not a block; expected %s", where, o->name, loc,
                allowed);
        return -EINVAL;
    }
    if (c->values_num != 1) {
        kts_log(KTS_LOG_ERR,
                "%s: option \"%s\"%s takes exactly one value, got %d (%s); expected %s", where,
                o->name, loc, c->values_num, vals, allowed);
        return -EINVAL;
    }
    int rc = opt_set_value(o, obj, &c->values[0]);
    if (rc == -ENOMEM) {
        kts_log(KTS_LOG_ERR, "%s: out of memory", where);
        return rc;
    }
    if (rc < 0)
        kts_log(KTS_LOG_ERR, "%s: invalid value %s for option \"%s\"%s; allowed: %s", where, vals,
                o->name, loc, allowed);
    return rc < 0 ? -EINVAL : 0;
}

int kts_opt_apply_sets(const struct kts_opt_set *sets, size_t nsets, const struct kts_conf *block,
                       const char *where)
{
    if (nsets > KTS_OPT_SETS_MAX) {
        kts_log(KTS_LOG_ERR, "%s: kts_conf: more than %d option tables", where, KTS_OPT_SETS_MAX);
        return -EINVAL;
    }
    int errors = 0;
    unsigned char seen[KTS_OPT_SETS_MAX][256];
    memset(seen, 0, sizeof(seen));
    for (int i = 0; i < block->children_num; i++) {
        const struct kts_conf *c = &block->children[i];
        char loc[256] = "";
        if (c->file != NULL && c->line > 0)
            snprintf(loc, sizeof(loc), " (%s:%d)", c->file, c->line);
        void *obj = NULL;
        const struct kts_opt *o = opt_find(sets, nsets, c->key, seen, &obj);
        if (o == NULL) {
            char known[512];
            opt_names(sets, nsets, known, sizeof(known));
            kts_log(KTS_LOG_ERR, "%s: unknown option \"%s\"%s; known options: %s", where, c->key,
                    loc, known);
            errors++;
            continue;
        }
        int rc = opt_apply_one(o, obj, c, where, loc);
        if (rc == -ENOMEM)
            return rc;
        errors += rc < 0;
    }
    for (size_t s = 0; s < nsets; s++)
        for (size_t k = 0; sets[s].table[k].name != NULL && k < sizeof(seen[s]); k++) {
            const struct kts_opt *o = &sets[s].table[k];
            if ((o->flags & KTS_OPT_REQUIRED) && !seen[s][k]) {
                kts_log(KTS_LOG_ERR, "%s: option \"%s\" is required (%s)", where, o->name,
                        o->help ? o->help : "no default");
                errors++;
            }
        }
    return errors ? -EINVAL : 0;
}

int kts_opt_apply(const struct kts_opt *table, void *obj, const struct kts_conf *block,
                  const char *where)
{
    const struct kts_opt_set set = {table, obj};
    return kts_opt_apply_sets(&set, 1, block, where);
}

int kts_opt_accept(const struct kts_opt *opt, void *obj, const struct kts_conf *item,
                   const char *where)
{
    (void)opt;
    (void)obj;
    (void)item;
    (void)where;
    return 0;
}

void kts_opt_free(const struct kts_opt *table, void *obj)
{
    for (const struct kts_opt *o = table; o->name != NULL; o++) {
        if (o->type == KTS_OPT_STRING) {
            free(*FIELD(obj, o, char *));
            *FIELD(obj, o, char *) = NULL;
        } else if (o->type == KTS_OPT_STRINGS) {
            kts_strv_free(FIELD(obj, o, struct kts_strv));
        }
    }
}
