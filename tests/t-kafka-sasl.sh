#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# kafka-local --sasl (a one-node cluster of this test's own):
#  1. the SASL_PLAINTEXT listener takes librdkafka 2.0.2 clients with SASL/PLAIN and the
#     credentials kafka-local printed: 100 messages produced and consumed back through it;
#  2. a wrong password is refused (the producer's messages fail, the broker says why);
#  3. SCRAM-SHA-256 with the same credentials: an ordinary test where the linked librdkafka has
#     the fix (2.6.1, librdkafka #4895); a TODO naming the limitation where it does not (2.0.2:
#     SCRAM fails against Kafka 4.x), so that a fixed one shows up as "unexpectedly passed".
#     kafka-local's KTS_SASL_MECHANISM follows: PLAIN before 2.6.1, SCRAM-SHA-256 from it on.
set -u
. "${KTS_TOP_SRCDIR:?run through make check}/tests/lib/tap.sh"
. "$KTS_TOP_SRCDIR/tests/lib/kafka.sh"

plan 6

kafka_start --sasl || bail_out "kafka-local start --sasl failed"
diag "bootstrap $KTS_BOOTSTRAP, SASL bootstrap $KTS_SASL_BOOTSTRAP"
scram_limit=$(kafka_rdkafka_limit scram-kafka4)
want=SCRAM-SHA-256
[ -n "$scram_limit" ] && want=PLAIN
is "$KTS_SASL_MECHANISM" "$want" "kafka-local names $want as the mechanism for librdkafka $(kafka_rdkafka_version)"

t=$(kafka_topic sasl)
kafka_create_topic "$t" 2 >/dev/null

# kafka_pc through the SASL listener with mechanism $1 and password $2.
sasl_pc() {
    local mech=$1 pw=$2
    shift 2
    KTS_BOOTSTRAP=$KTS_SASL_BOOTSTRAP kafka_pc "$@" -X security.protocol=SASL_PLAINTEXT \
        -X sasl.mechanism="$mech" -X sasl.username="$KTS_SASL_USERNAME" -X sasl.password="$pw"
}

# ---- 1
out=$(sasl_pc PLAIN "$KTS_SASL_PASSWORD" produce -t "$t" -n 100 -m plain 2>&1)
like "$out" "produced=100 delivered=100 failed=0" "1: PLAIN: 100 messages produced"
out=$(sasl_pc PLAIN "$KTS_SASL_PASSWORD" consume -t "$t" -n 100 -m plain -T 60 2>&1)
like "$out" "consumed=100 distinct=100 duplicates=0 invalid=0" "1: PLAIN: and consumed back"

# ---- 2
kafka_register_secret "wrong-$KTS_SASL_PASSWORD" # for t-zz-secrets.sh
out=$(sasl_pc PLAIN "wrong-$KTS_SASL_PASSWORD" produce -t "$t" -n 1 -m bad -T 3 2>&1)
ok "$(($? == 0))" "2: a wrong password: the message is not delivered"
like "$out" "Authentication failed" "2: and the error says authentication failed"

# ---- 3
TAP_TODO=$scram_limit
out=$(sasl_pc SCRAM-SHA-256 "$KTS_SASL_PASSWORD" produce -t "$t" -n 1 -m scram -T 3 2>&1)
ok $? "3: SCRAM-SHA-256 with the same credentials" || diag "$(grep -m1 -i 'authentication' <<<"$out")"
TAP_TODO=""

done_testing
