# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# tests/lib/e2e.sh: the common head of the end-to-end tests (REAL collectd daemon, REAL Kafka of
# the suite). Source it after setting SRCDIR:
#   SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
#   . "$SRCDIR/tests/lib/e2e.sh"
#   e2e_plan 12          # TAP plan; B = the suite's bootstrap address
# It sources tests/lib/collectd.sh and gives it the short TAP names ok, is and diag, and
# tests/lib/kcat.sh (kcat -P -X "$KAFKA_KCAT_ORDER" writes in input order).
# shellcheck source=tests/lib/collectd.sh
. "$SRCDIR/tests/lib/collectd.sh"
# shellcheck source=tests/lib/kcat.sh
. "$SRCDIR/tests/lib/kcat.sh"

ok() { collectd_tap_ok "$@"; }
is() { collectd_tap_is "$@"; }
diag() { collectd_tap_diag "$@"; }

# e2e_plan N: print the plan, then set B to the suite's broker (tests/run-suite starts it and
# exports KTS_BOOTSTRAP); without one, bail out: the test cannot run without a real broker.
e2e_plan() {
    collectd_tap_plan "$1"
    if [ -z "${KTS_BOOTSTRAP:-}" ]; then
        echo "Bail out! KTS_BOOTSTRAP is not set: run through make check (tests/run-suite starts Kafka)"
        exit 255
    fi
    B=$KTS_BOOTSTRAP
}
