/* SPDX-License-Identifier: MIT */
/*
 * kts_typesdb: collectd's types.db, parsed without collectd, to validate decoded value lists.
 *
 * Guarantees:
 *  1. The grammar is collectd 5.12's: one type per line, `name ds:TYPE:min:max[, ds:…]`, fields
 *     separated by blanks, data sources by commas and/or blanks; '#' starts a comment line;
 *     TYPE is GAUGE, DERIVE, COUNTER or ABSOLUTE (case-insensitive); min/max are numbers or U.
 *  2. Several files can be loaded; a later definition of a type replaces the earlier one
 *     (as collectd does when TypesDB is given several times).
 *  3. A malformed line is an error naming the file and line; nothing of that file is kept.
 *  4. kts_typesdb_check() accepts a value list only when its type exists and it has exactly
 *     that type's data sources: same count, same names in the same order, same DS types.
 *     Any mismatch is -EINVAL with a message naming what differs; it never crashes.
 *  5. Lookups are O(1) on average and thread-safe once loading is finished.
 */
#ifndef KTS_TYPESDB_H
#define KTS_TYPESDB_H

#include <stddef.h>

#include "kts_value.h"

struct kts_typesdb_ds {
    char name[KTS_NAME_MAX];
    enum kts_ds_type type;
    double min, max; /* NaN for U */
};

struct kts_typesdb_type {
    char name[KTS_NAME_MAX];
    size_t ds_num;
    struct kts_typesdb_ds *ds;
};

struct kts_typesdb;

/* An empty database; NULL on ENOMEM. Free with kts_typesdb_destroy(). */
struct kts_typesdb *kts_typesdb_create(void);
void kts_typesdb_destroy(struct kts_typesdb *db); /* NULL is fine */

/* Parse `text` (len bytes; `filename` only for messages) and add its types (1-3).
 * Returns 0, -EINVAL ("FILE:LINE: what" in errbuf) or -ENOMEM. */
int kts_typesdb_load_text(struct kts_typesdb *db, const char *text, size_t len,
                          const char *filename, char *errbuf, size_t errbuf_size);
/* Read `path` and load it; -errno when it cannot be read. */
int kts_typesdb_load_file(struct kts_typesdb *db, const char *path, char *errbuf,
                          size_t errbuf_size);

/* The type named `name`, or NULL. The pointer is owned by db and valid until it is destroyed. */
const struct kts_typesdb_type *kts_typesdb_find(const struct kts_typesdb *db, const char *name);
size_t kts_typesdb_count(const struct kts_typesdb *db);

/* Check `vl` (only read) against the database (4). 0 or -EINVAL with the reason in errbuf. */
int kts_typesdb_check(const struct kts_typesdb *db, const struct kts_vl *vl, char *errbuf,
                      size_t errbuf_size);

#endif
