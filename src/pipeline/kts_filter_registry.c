/* SPDX-License-Identifier: MIT */
/* The filter registry: every filter the pipeline knows, by name. */
#include <strings.h>

#include "kts_filter.h"

const struct kts_filter_ops *const kts_filters[] = {
    &kts_filter_dedup,         &kts_filter_difference,    &kts_filter_fill,   &kts_filter_outlier,
    &kts_filter_deseasonalize, &kts_filter_reseasonalize, &kts_filter_smooth, NULL,
};

const struct kts_filter_ops *kts_filter_find(const char *name)
{
    for (size_t i = 0; kts_filters[i] != NULL; i++)
        if (strcasecmp(kts_filters[i]->name, name) == 0)
            return kts_filters[i];
    return NULL;
}
