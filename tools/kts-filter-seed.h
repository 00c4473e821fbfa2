/* SPDX-License-Identifier: MIT */
/* kts-filter --seed-topic (tools/kts-filter-seed.c): a state file into a StateTopic. */
#ifndef KTS_FILTER_SEED_H
#define KTS_FILTER_SEED_H

#include <stddef.h>

#include "kts_pipeline.h"

struct kts_seed_args {
    const char *state_topic;  /* --seed-topic */
    const char *input_topic;  /* --input-topic */
    const char *bootstrap;    /* --bootstrap */
    int key_mode;             /* --key: enum kts_key_mode (write_kafka_ts's Key) */
    const char *const *props; /* -X key=value: librdkafka properties */
    size_t nprops;
};

/* Produce every series' state of the pipelines (loaded by --state-in) to the state topic, each
 * to its series' input partition. Returns the exit status (0, or 1 with the problem printed). */
int kts_seed_state_topic(const struct kts_seed_args *sa, struct kts_pipeline **pipes,
                         size_t npipes);

#endif
