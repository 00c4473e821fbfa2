/* SPDX-License-Identifier: MIT */
/* kts_typesdb: see kts_typesdb.h for the guarantees (numbers below refer to them). */
#include "kts_typesdb.h"
#include "kts_array.h"
#include "kts_hash.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct kts_typesdb {
    struct kts_typesdb_type **slots; /* open addressing, linear probing; NULL = empty */
    size_t cap;                      /* power of two */
    size_t count;
};

static uint64_t hash_str(const char *s)
{
    return kts_hash64(s, strlen(s), KTS_HASH_SEED);
}

struct kts_typesdb *kts_typesdb_create(void)
{
    struct kts_typesdb *db = calloc(1, sizeof(*db));
    if (db == NULL)
        return NULL;
    db->cap = 512;
    db->slots = calloc(db->cap, sizeof(*db->slots));
    if (db->slots == NULL) {
        free(db);
        return NULL;
    }
    return db;
}

static void type_free(struct kts_typesdb_type *t)
{
    if (t != NULL) {
        free(t->ds);
        free(t);
    }
}

void kts_typesdb_destroy(struct kts_typesdb *db)
{
    if (db == NULL)
        return;
    for (size_t i = 0; i < db->cap; i++)
        type_free(db->slots[i]);
    free(db->slots);
    free(db);
}

static size_t find_slot(struct kts_typesdb_type **slots, size_t cap, const char *name)
{
    size_t i = (size_t)hash_str(name) & (cap - 1);
    while (slots[i] != NULL && strcmp(slots[i]->name, name) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

static int grow(struct kts_typesdb *db)
{
    size_t cap = db->cap * 2;
    struct kts_typesdb_type **slots = calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < db->cap; i++)
        if (db->slots[i] != NULL)
            slots[find_slot(slots, cap, db->slots[i]->name)] = db->slots[i];
    free(db->slots);
    db->slots = slots;
    db->cap = cap;
    return 0;
}

/* Takes ownership of t (frees it on failure). Replaces an existing type of that name (2). */
static int put(struct kts_typesdb *db, struct kts_typesdb_type *t)
{
    if ((db->count + 1) * 2 > db->cap && grow(db) < 0) {
        type_free(t);
        return -ENOMEM;
    }
    size_t i = find_slot(db->slots, db->cap, t->name);
    if (db->slots[i] != NULL)
        type_free(db->slots[i]);
    else
        db->count++;
    db->slots[i] = t;
    return 0;
}

const struct kts_typesdb_type *kts_typesdb_find(const struct kts_typesdb *db, const char *name)
{
    const struct kts_typesdb_type *t = db->slots[find_slot(db->slots, db->cap, name)];
    return t;
}

size_t kts_typesdb_count(const struct kts_typesdb *db)
{
    return db->count;
}

static int parse_limit(const char *s, double *out)
{
    if (strcasecmp(s, "U") == 0) {
        *out = NAN;
        return 0;
    }
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return (end == s || *end != '\0' || errno == ERANGE) ? -EINVAL : 0;
}

/* One "ds:TYPE:min:max" token (modified in place). */
static int parse_ds(char *tok, struct kts_typesdb_ds *ds, char *why, size_t why_size)
{
    char *f[4];
    int n = 0;
    char *save = NULL;
    for (char *p = strtok_r(tok, ":", &save); p != NULL; p = strtok_r(NULL, ":", &save)) {
        if (n == 4) {
            n++;
            break;
        }
        f[n++] = p;
    }
    if (n != 4) {
        snprintf(why, why_size, "data source \"%s\" is not name:TYPE:min:max", tok);
        return -EINVAL;
    }
    if (strlen(f[0]) >= sizeof(ds->name)) {
        snprintf(why, why_size, "data source name \"%.40s…\" is too long", f[0]);
        return -EINVAL;
    }
    strcpy(ds->name, f[0]);
    if (strcasecmp(f[1], "GAUGE") == 0)
        ds->type = KTS_DS_GAUGE;
    else if (strcasecmp(f[1], "DERIVE") == 0)
        ds->type = KTS_DS_DERIVE;
    else if (strcasecmp(f[1], "COUNTER") == 0)
        ds->type = KTS_DS_COUNTER;
    else if (strcasecmp(f[1], "ABSOLUTE") == 0)
        ds->type = KTS_DS_ABSOLUTE;
    else {
        snprintf(why, why_size, "data source \"%s\": unknown type \"%s\"", f[0], f[1]);
        return -EINVAL;
    }
    if (parse_limit(f[2], &ds->min) < 0 || parse_limit(f[3], &ds->max) < 0) {
        snprintf(why, why_size, "data source \"%s\": min/max \"%s\"/\"%s\" are not numbers or U",
                 f[0], f[2], f[3]);
        return -EINVAL;
    }
    return 0;
}

/* Parses one line (modified in place) into *out (NULL for a blank or comment line). */
static int parse_line(char *line, struct kts_typesdb_type **out, char *why, size_t why_size)
{
    *out = NULL;
    char *save = NULL;
    const char *seps = " \t\r\n,";
    char *name = strtok_r(line, " \t\r\n", &save);
    if (name == NULL || name[0] == '#')
        return 0;
    if (strlen(name) >= KTS_NAME_MAX) {
        snprintf(why, why_size, "type name \"%.40s…\" is too long", name);
        return -EINVAL;
    }
    struct kts_typesdb_type *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    strcpy(t->name, name);
    size_t ds_cap = 0;
    for (char *tok = strtok_r(NULL, seps, &save); tok != NULL; tok = strtok_r(NULL, seps, &save)) {
        if (KTS_ARRAY_GROW(t->ds, ds_cap, t->ds_num + 1) != 0) {
            type_free(t);
            return -ENOMEM;
        }
        int rc = parse_ds(tok, &t->ds[t->ds_num], why, why_size);
        if (rc < 0) {
            type_free(t);
            return rc;
        }
        t->ds_num++;
    }
    if (t->ds_num == 0) {
        snprintf(why, why_size, "type \"%s\" has no data source", t->name);
        type_free(t);
        return -EINVAL;
    }
    *out = t;
    return 0;
}

int kts_typesdb_load_text(struct kts_typesdb *db, const char *text, size_t len,
                          const char *filename, char *errbuf, size_t errbuf_size)
{
    /* Parse everything first, then add: a bad file adds nothing (3). */
    struct kts_typesdb_type **parsed = NULL;
    size_t n = 0, cap = 0;
    int rc = 0, lineno = 0;
    char why[256];
    size_t pos = 0;
    while (pos < len && rc == 0) {
        size_t end = pos;
        while (end < len && text[end] != '\n')
            end++;
        lineno++;
        char *line = strndup(text + pos, end - pos);
        if (line == NULL) {
            rc = -ENOMEM;
            break;
        }
        struct kts_typesdb_type *t;
        why[0] = '\0';
        rc = parse_line(line, &t, why, sizeof(why));
        free(line);
        if (rc == -EINVAL && errbuf != NULL)
            snprintf(errbuf, errbuf_size, "%s:%d: %s", filename, lineno, why);
        if (rc == 0 && t != NULL) {
            if (KTS_ARRAY_GROW(parsed, cap, n + 1) != 0) {
                type_free(t);
                rc = -ENOMEM;
                break;
            }
            parsed[n++] = t;
        }
        pos = end + 1;
    }
    size_t i = 0;
    for (; rc == 0 && i < n; i++)
        rc = put(db, parsed[i]); /* put() owns parsed[i] from here */
    for (; i < n; i++)
        type_free(parsed[i]);
    free(parsed);
    if (rc == -ENOMEM && errbuf != NULL)
        snprintf(errbuf, errbuf_size, "%s: out of memory", filename);
    return rc;
}

int kts_typesdb_load_file(struct kts_typesdb *db, const char *path, char *errbuf,
                          size_t errbuf_size)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        int e = errno;
        if (errbuf != NULL)
            snprintf(errbuf, errbuf_size,
                     "TypesDB \"%s\": cannot open: %s; allowed: a readable "
                     "file in collectd's types.db format",
                     path, strerror(e));
        return -e;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 > cap) {
            char *g = realloc(text, cap + 65536 * 2);
            if (g == NULL) {
                free(text);
                fclose(f);
                return -ENOMEM;
            }
            text = g;
            cap += 65536 * 2;
        }
        size_t r = fread(text + len, 1, 65536, f);
        len += r;
        if (r == 0)
            break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(text);
        if (errbuf != NULL)
            snprintf(errbuf, errbuf_size, "cannot read types.db \"%s\"", path);
        return -EIO;
    }
    int rc = kts_typesdb_load_text(db, text, len, path, errbuf, errbuf_size);
    free(text);
    return rc;
}

static const char *ds_type_name(enum kts_ds_type t)
{
    switch (t) {
    case KTS_DS_GAUGE:
        return "gauge";
    case KTS_DS_DERIVE:
        return "derive";
    case KTS_DS_COUNTER:
        return "counter";
    case KTS_DS_ABSOLUTE:
        return "absolute";
    }
    return "unknown";
}

int kts_typesdb_check(const struct kts_typesdb *db, const struct kts_vl *vl, char *errbuf,
                      size_t errbuf_size)
{
    const struct kts_typesdb_type *t = kts_typesdb_find(db, vl->type);
    if (t == NULL) {
        snprintf(errbuf, errbuf_size, "type \"%s\" is not in types.db", vl->type);
        return -EINVAL;
    }
    if (t->ds_num != vl->ds_len) {
        snprintf(errbuf, errbuf_size,
                 "type \"%s\" has %zu data source(s) in types.db, the value "
                 "list %zu",
                 vl->type, t->ds_num, vl->ds_len);
        return -EINVAL;
    }
    for (size_t i = 0; i < t->ds_num; i++) {
        if (strcmp(t->ds[i].name, vl->ds[i].name) != 0) {
            snprintf(errbuf, errbuf_size,
                     "type \"%s\": data source %zu is \"%s\" in types.db, "
                     "\"%s\" in the value list",
                     vl->type, i, t->ds[i].name, vl->ds[i].name);
            return -EINVAL;
        }
        if (t->ds[i].type != vl->ds[i].type) {
            snprintf(errbuf, errbuf_size,
                     "type \"%s\": data source \"%s\" is %s in types.db, %s "
                     "in the value list",
                     vl->type, t->ds[i].name, ds_type_name(t->ds[i].type),
                     ds_type_name(vl->ds[i].type));
            return -EINVAL;
        }
    }
    return 0;
}
