#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# t-deb.sh: the Debian package (contrib/debian, contrib/build-deb) builds, holds what it should,
# and its plugins work in the REAL collectd daemon against the suite's REAL Kafka.
#
#   1   contrib/build-deb builds collectd-kafka-ts_VERSION_ARCH.deb (dpkg-buildpackage -b)
#   2   contents (dpkg-deb -c): the three plugins as regular .so files in /usr/lib/collectd (no
#       libtool .la), /usr/bin/kts-filter, the man page collectd-kafka-ts.5.gz, copyright, and
#       examples/{agent,aggregator,migration}.conf + examples/pipelines/*.conf; nothing outside
#       /usr/bin, /usr/lib/collectd and /usr/share/{man,doc}
#   3   metadata (dpkg-deb -f): Package, Version = configure's version, Architecture = dpkg's,
#       Depends on collectd-core (>= 5.12), librdkafka1 and libyajl2
#   4   extracted (dpkg -x) into a temporary root: its kts-filter validates the packaged
#       example pipelines
#   5-6 a collectd with PluginDir = that root's usr/lib/collectd loads all three plugins and
#       runs them: the load average goes through a ts_filter target (a smoothed copy "load-ema"),
#       write_kafka_ts sends raw and copy to Kafka, read_kafka_ts reads both back into csv
#       under host kts-test.back; no [error] line, clean stop
#   7-11 only with KTS_DEB_INSTALL=1 (CI: .ci/run sets it; needs root or password-less sudo):
#       7    apt-get installs the .deb and nothing else (simulated first; refused when any file
#            of the package already exists, e.g. after a make install)
#       8-9  collectd loads the three plugins from /usr/lib/collectd and runs them as in 5-6
#       10   dpkg -r removes the package: not installed afterwards
#       11   no file of the package is left (dpkg -L before removal), nor its doc directory
#       Without KTS_DEB_INSTALL=1 these five are reported as skipped. Two runs on one machine
#       install one after the other (flock on $TMPDIR/kts-deb-install.lock). An EXIT trap removes the
#       package if the test installed it and stopped early: the system is left as found.
# Build time: the .deb takes about 20 s on two cores (see "build took" in the output).
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
BUILDDIR=${KTS_TOP_BUILDDIR:-$(pwd)}
PKG=collectd-kafka-ts
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
INSTALLED_BY_US=0
deb_cleanup() {
    if [ "$INSTALLED_BY_US" = 1 ]; then
        echo "# t-deb: removing $PKG installed by this test" >&2
        $SUDO dpkg -P "$PKG" >/dev/null 2>&1 || echo "# t-deb: dpkg -P $PKG FAILED" >&2
    fi
}
# Set before e2e.sh: its EXIT trap (stop the daemons) then runs before this one.
trap deb_cleanup EXIT
# shellcheck source=tests/lib/e2e.sh
. "$SRCDIR/tests/lib/e2e.sh"
e2e_plan 11
RUN=kdeb-$$-$(date +%s)
W=$(collectd_dir work)

# ------------------------------------------------------------------ 1 build
t0=$SECONDS
out=$("$SRCDIR/contrib/build-deb" "$W/out" 2>"$W/build.err")
st=$?
DEB=$(printf '%s\n' "$out" | tail -n 1)
diag "build took $((SECONDS - t0)) s: $DEB"
[ "$st" -eq 0 ] && [ -f "$DEB" ]
ok $? "contrib/build-deb builds the package" || sed 's/^/#   /' "$W/build.err" >&2

# ------------------------------------------------------------------ 2 contents
dpkg-deb -c "$DEB" 2>/dev/null | awk '{ print substr($1, 1, 1) " " $NF }' | sed 's| \./| /|' >"$W/contents"
problems=""
for f in /usr/lib/collectd/write_kafka_ts.so /usr/lib/collectd/read_kafka_ts.so \
    /usr/lib/collectd/ts_filter.so /usr/bin/kts-filter /usr/share/man/man5/collectd-kafka-ts.5.gz \
    /usr/share/doc/$PKG/copyright /usr/share/doc/$PKG/examples/agent.conf \
    /usr/share/doc/$PKG/examples/aggregator.conf /usr/share/doc/$PKG/examples/migration.conf \
    /usr/share/doc/$PKG/examples/pipelines/spikes.conf; do
    grep -qxF -- "- $f" "$W/contents" || problems="$problems missing:$f"
done
grep -q '\.la$' "$W/contents" && problems="$problems libtool-.la-files"
outside=$(awk '$1 == "-" || $1 == "l" { print $2 }' "$W/contents" |
    grep -vE '^/usr/(bin|lib/collectd|share/man|share/doc)/' | tr '\n' ' ')
[ -z "$outside" ] || problems="$problems outside:$outside"
is "$problems" "" "contents: plugins (regular files, no .la), kts-filter, man page, examples; nothing else outside bin, lib/collectd, man, doc"

# ------------------------------------------------------------------ 3 metadata
version=$(sed -n 's/^PACKAGE_VERSION = //p' "$BUILDDIR/Makefile")
arch=$(dpkg --print-architecture)
deps=$(dpkg-deb -f "$DEB" Depends 2>/dev/null)
meta="$(dpkg-deb -f "$DEB" Package 2>/dev/null)/$(dpkg-deb -f "$DEB" Version 2>/dev/null)/$(dpkg-deb -f "$DEB" Architecture 2>/dev/null)"
for d in 'collectd-core (>= 5.12)' librdkafka1 libyajl2; do
    case "$deps" in *"$d"*) ;; *) meta="$meta missing-dependency:$d" ;; esac
done
is "$meta" "$PKG/$version/$arch" "metadata: $PKG $version $arch, Depends: $deps"

# ------------------------------------------------------------------ 4 extracted tree
R="$W/root"
dpkg -x "$DEB" "$R" 2>"$W/x.err"
"$R/usr/bin/kts-filter" --config "$R/usr/share/doc/$PKG/examples/pipelines/aggregator.conf" --check \
    >"$W/check.out" 2>&1
ok $? "dpkg -x: the packaged kts-filter validates the packaged example pipelines" ||
    sed 's/^/#   /' "$W/x.err" "$W/check.out" >&2

# ------------------------------------------------------------------ the daemon check
# deb_conf NAME PLUGINDIR: load (stock) → PreCache ts_filter target (smoothed copy "load-ema") →
# write_kafka_ts → Kafka topic RUN-NAME → read_kafka_ts (host suffix ".back") → csv.
deb_conf() {
    local name=$1 dir=$2 d
    d=$(collectd_dir "$name")
    {
        collectd_conf_header "$name"
        collectd_conf_stock load csv
        printf 'PluginDir "%s"\nLoadPlugin ts_filter\nLoadPlugin write_kafka_ts\nLoadPlugin read_kafka_ts\n' "$dir"
        cat <<EOF
<Plugin csv>
  DataDir "$d/csv"
  StoreRates false
</Plugin>
<Plugin write_kafka_ts>
  Property "bootstrap.servers" "$B"
  Topic "$RUN-$name"
</Plugin>
<Plugin read_kafka_ts>
  Property "bootstrap.servers" "$B"
  GroupId "$RUN-$name"
  Topic "$RUN-$name"
  OutputHostSuffix ".back"
</Plugin>
<Chain "PreCache">
  <Target "ts_filter">
    <Pipeline "deb-load">
      <Match>
        Plugin "load"
      </Match>
      <Filter "smooth">
        Method "ema"
        Tau 10
      </Filter>
      OutputPluginInstanceSuffix "ema"
    </Pipeline>
  </Target>
</Chain>
EOF
    } >"$d/collectd.conf"
    echo "$d/collectd.conf"
}
# deb_run NAME PLUGINDIR DESCRIPTION: two test points (runs, then no errors + clean stop).
deb_run() {
    local name=$1 conf d deadline found=1 st
    d=$(collectd_dir "$name")
    conf=$(deb_conf "$name" "$2")
    if collectd_start "$conf" "$name"; then
        deadline=$((SECONDS + 60))
        while [ "$SECONDS" -lt "$deadline" ]; do
            if compgen -G "$d/csv/kts-test.back/load/load-*" >/dev/null &&
                compgen -G "$d/csv/kts-test.back/load-ema/load-*" >/dev/null &&
                compgen -G "$d/csv/kts-test/ts_filter-deb-load/total_values-in-*" >/dev/null; then
                found=0
                break
            fi
            sleep 0.5
        done
    fi
    ok "$found" "$3: collectd loads the three plugins; load and ts_filter's load-ema go to Kafka and back (csv kts-test.back)"
    collectd_stop "$name"
    st=$?
    if collectd_log_has '\[error\]' "$name"; then
        grep '\[error\]' "$(collectd_logfile "$name")" | head -n 20 | sed 's/^/#   /' >&2
        st=1
    fi
    ok "$st" "$3: no [error] in the log, clean stop"
}
deb_run extracted "$R/usr/lib/collectd" "extracted package"

# ------------------------------------------------------------------ 7-11 real installation
if [ "${KTS_DEB_INSTALL:-0}" != 1 ]; then
    for n in 7 8 9 10 11; do
        echo "ok $n # skip KTS_DEB_INSTALL=1 not set (installing needs root; .ci/run sets it)"
    done
    collectd_tap_status
    exit $?
fi
reason=""
# One installing test at a time on a machine (held until this script exits).
exec 9>"${TMPDIR:-/tmp}/kts-deb-install.lock"
if ! flock -w 600 9; then
    reason="another t-deb held ${TMPDIR:-/tmp}/kts-deb-install.lock for 10 minutes"
elif [ -n "$SUDO" ] && ! sudo -n true 2>/dev/null; then
    reason="KTS_DEB_INSTALL=1 but neither root nor password-less sudo"
elif dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q 'installed'; then
    reason="$PKG is already installed: not touching it"
else
    for f in $(awk '$1 == "-" { print $2 }' "$W/contents"); do
        [ -e "$f" ] && reason="$reason $f exists already (make install?)"
    done
fi
if [ -z "$reason" ]; then
    # Simulate first: exactly one new package, nothing upgraded or removed, nothing to fetch.
    apt-get -s install "$DEB" >"$W/sim.out" 2>&1
    grep -q '^0 upgraded, 1 newly installed, 0 to remove' "$W/sim.out" ||
        reason="apt-get would change more than this package: $(grep -E 'newly installed|^Inst' "$W/sim.out" | tr '\n' ' ')"
fi
if [ -z "$reason" ]; then
    INSTALLED_BY_US=1
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=300 "$DEB" >"$W/install.out" 2>&1 ||
        reason="apt-get install failed: $(tail -n 5 "$W/install.out" | tr '\n' ' ')"
fi
if [ -z "$reason" ]; then
    dpkg-query -W -f='${Status} ${Version}' "$PKG" 2>/dev/null | grep -q "install ok installed $version" ||
        reason="not installed after apt-get: $(dpkg-query -W -f='${Status}' "$PKG" 2>&1)"
fi
is "$reason" "" "apt-get install ./$(basename "$DEB"): $PKG $version installed, nothing else changed"
if [ -n "$reason" ]; then
    for n in 8 9 10 11; do ok 1 "not run: the package is not installed"; done
    collectd_tap_status
    exit $?
fi
dpkg -L "$PKG" >"$W/files" 2>/dev/null
deb_run installed /usr/lib/collectd "installed package" # 8-9
# dpkg -r, waiting for the dpkg lock if another apt/dpkg holds it.
deadline=$((SECONDS + 300))
until $SUDO dpkg -r "$PKG" >"$W/remove.out" 2>&1; do
    if ! grep -qi 'lock' "$W/remove.out" || [ "$SECONDS" -ge "$deadline" ]; then
        sed 's/^/#   /' "$W/remove.out" >&2
        break
    fi
    sleep 2
done
$SUDO dpkg -P "$PKG" >/dev/null 2>&1 # nothing left in dpkg's status either
status=$(dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null)
st=1
case "$status" in "" | *not-installed*) INSTALLED_BY_US=0 st=0 ;; esac
ok "$st" "dpkg -r: $PKG is not installed any more (status '${status:-none}')"
left=""
while read -r f; do
    [ -f "$f" ] || [ -L "$f" ] && left="$left $f"
done <"$W/files"
[ -e "/usr/share/doc/$PKG" ] && left="$left /usr/share/doc/$PKG"
is "$left" "" "removal left none of the package's $(wc -l <"$W/files") paths behind"
collectd_tap_status
