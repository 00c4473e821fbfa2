# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# tests/lib/kcat.sh: how tests write their input with kcat (sourced by tests/lib/kafka.sh and
# tests/lib/e2e.sh).
#
# KAFKA_KCAT_ORDER is the kcat property (`kcat -P -X "$KAFKA_KCAT_ORDER"`) that writes a
# partition's messages in input order: one request in flight. Without idempotence (librdkafka
# 2.0.2's kcat) a retried batch can land after the next ones on a loaded machine
# (docs/write_kafka_ts.md, Ordering), and a test's series would reach the reader reordered.
KAFKA_KCAT_ORDER=max.in.flight.requests.per.connection=1
