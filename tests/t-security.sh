#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TLS and SASL end to end: REAL collectd daemons, REAL Kafka brokers of this test's own
# (contrib/kafka/kafka-local --sasl --tls: a CA, broker and client certificates made with openssl
# at start, encrypted private keys). Every password and key password reaches the plugins through
# PropertyFile (files of mode 0600), never through collectd.conf.
#   1     Kafka 4.1.1 with SASL_SSL (PLAIN, SCRAM-SHA-256) and SSL with client certificates
#   2-6   agent: kts_testgen burst → write_kafka_ts over SASL_SSL/PLAIN and over mTLS (client key
#         with ssl.key.password): every value list delivered, clean stop
#   7-10  aggregator: read_kafka_ts over SASL_SSL/PLAIN and over mTLS: every value in csv, exact
#   11-20 wrong password (SASL), untrusted CA, and a broker address the certificate does not name,
#         for both plugins at once: each instance logs an error naming the problem, collectd keeps
#         running and stops on TERM (no crash, no KILL; write_kafka_ts reports what it could not
#         deliver); both plugins warn about a PropertyFile that every user can read
#   21-23 wrong key password (ssl.key.password): both plugins refuse to start, saying
#         "ssl.key.location failed" and "maybe wrong password", and collectd neither crashes nor
#         hangs
#   24-28 SCRAM-SHA-256 over SASL_SSL against Kafka 3.9.1 (KTS_KAFKA_VERSION): write_kafka_ts
#         and read_kafka_ts deliver every value; a wrong SCRAM password is named. (librdkafka
#         before 2.6.1, e.g. Debian 12's 2.0.2, cannot log in to Kafka 4.x with SCRAM: librdkafka
#         #4895; t-kafka-sasl.sh tests SCRAM against 4.x, a TODO only with such a librdkafka.
#         See docs/RELIABILITY.md section 7 and docs/LIBRDKAFKA.md.)
#   29-30 no password of this test in any of its logs (collectd logs and stderr, broker logs);
#         no password in any collectd.conf
# KTS_SECURITY_SCRAM_VERSION (default 3.9.1) picks the Kafka release for 24-28.
set -u
SRCDIR=${KTS_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$SRCDIR/tests/lib/tap.sh"
. "$SRCDIR/tests/lib/collectd.sh"
. "$SRCDIR/tests/lib/kafka.sh"
CMP="$SRCDIR/tests/lib/compare_csv.py"
N=200        # value lists per burst
SERIES=10
RUN=sec-$$-$(date +%s)

plan 30

S="$COLLECTD_TMP/secrets" # PropertyFile files (not logs: excluded from the grep of 29)
mkdir -m 700 "$S"
# secret_file NAME VALUE [MODE]: writes VALUE to $S/NAME (mode 0600 unless given), prints the path
secret_file() {
    (umask 077 && printf '%s\n' "$2" >"$S/$1") && chmod "${3:-600}" "$S/$1" && echo "$S/$1"
}
PASSWORDS=() # every password this test uses, right or wrong (29)
remember() {
    PASSWORDS+=("$@")
    kafka_register_secret "$@"
}

# ---- property blocks
sasl_ssl_props() { # MECHANISM PASSWORD-FILE [CA]
    cat <<EOF
  Property "bootstrap.servers" "$KTS_SASL_SSL_BOOTSTRAP"
  Property "security.protocol" "SASL_SSL"
  Property "ssl.ca.location" "${3:-$KTS_TLS_CA}"
  Property "sasl.mechanism" "$1"
  Property "sasl.username" "$KTS_SASL_USERNAME"
  PropertyFile "sasl.password" "$2"
EOF
}
mtls_props() { # KEY-PASSWORD-FILE
    cat <<EOF
  Property "bootstrap.servers" "$KTS_TLS_BOOTSTRAP"
  Property "security.protocol" "SSL"
  Property "ssl.ca.location" "$KTS_TLS_CA"
  Property "ssl.certificate.location" "$KTS_TLS_CERT"
  Property "ssl.key.location" "$KTS_TLS_KEY"
  PropertyFile "ssl.key.password" "$1"
EOF
}
# writer NAME TOPIC PROPS [FLUSH-TIMEOUT]: a write_kafka_ts block
writer() {
    printf '<Plugin write_kafka_ts>\n  Instance "%s"\n  Topic "%s"\n  FlushTimeout %s\n%s\n</Plugin>\n' \
        "$1" "$2" "${4:-10}" "$3"
}
# reader NAME TOPIC PROPS [EXTRA]: a read_kafka_ts block (host prefix NAME-)
reader() {
    printf '<Plugin read_kafka_ts>\n  Instance "%s"\n  GroupId "%s"\n  Topic "%s"\n  StartPosition "earliest"\n  OutputHostPrefix "%s-"\n  DrainTimeout 3\n  CloseTimeout 3\n%s\n%s\n</Plugin>\n' \
        "$1" "$RUN-$1" "$2" "$1" "$3" "${4:-}"
}
burst_conf() {
    printf '<Plugin kts_testgen>\n  Mode "burst"\n  Count %d\n  Series %d\n  Rate 1000\n</Plugin>\n' "$N" "$SERIES"
}
# wait_csv DIR N TIMEOUT: until DIR holds at least N csv rows; prints the count
wait_csv() {
    local n=0
    for _ in $(seq $(($3 * 5))); do
        n=$(find "$1" -type f -exec cat {} + 2>/dev/null | grep -vc '^epoch')
        [ "$n" -ge "$2" ] && break
        sleep 0.2
    done
    echo "$n"
}
# save_broker_logs TAG: copies the current cluster's logs under $COLLECTD_TMP (kafka_stop removes
# its run directory) for 29
save_broker_logs() {
    mkdir -p "$COLLECTD_TMP/broker-$1" && cp "$KTS_KAFKA_RUN_DIR"/*.log "$COLLECTD_TMP/broker-$1/"
}
# stopped_sane NAME: 0 when the daemon stopped on TERM by itself (no KILL, no signal: exit status
# below 128) after "Exiting normally". Exit status 1 is expected when write_kafka_ts reports
# value lists it could not deliver, or a plugin's init failed: collectd says so and exits 1.
stopped_sane() {
    [ "$COLLECTD_STOPPED_BY" = TERM ] && [ "$COLLECTD_EXIT_STATUS" -lt 128 ] &&
        collectd_log_has 'Exiting normally' "$1"
}
# log_like NAME ERE DESCRIPTION: waits (30 s) for ERE in daemon NAME's log
log_like() {
    collectd_wait_log "$2" 30 "$1" >/dev/null 2>&1
    ok $? "$3" || diag "no /$2/ in the log of $1"
}

# ================================================================== Kafka 4.1.1, TLS + SASL
kafka_start --sasl --tls || bail_out "kafka-local start --sasl --tls failed"
ok 0 "1: Kafka $(sed -n 's/^kafka_version=//p' <<<"$(kafka_status)") with SASL_SSL ($KTS_SASL_SSL_BOOTSTRAP) and mTLS ($KTS_TLS_BOOTSTRAP) listeners"
remember "$KTS_SASL_PASSWORD" "$KTS_TLS_KEY_PASSWORD"
PW=$(secret_file sasl.pw "$KTS_SASL_PASSWORD")
KPW=$(secret_file key.pw "$KTS_TLS_KEY_PASSWORD")

# ---- 2-6 agent
A=$(collectd_dir agent)
{
    collectd_conf_header agent
    collectd_conf_ours write_kafka_ts kts_testgen
    writer w-sasl "$RUN-sasl" "$(sasl_ssl_props PLAIN "$PW")"
    writer w-mtls "$RUN-mtls" "$(mtls_props "$KPW")"
    burst_conf
} >"$A/collectd.conf"
collectd_start "$A/collectd.conf" agent
ok $? "2: agent with write_kafka_ts over SASL_SSL/PLAIN and over mTLS starts"
collectd_wait_log "kts_testgen: burst done: $N value lists" 60 agent
ok $? "3: the burst ($N value lists, $SERIES series) is dispatched"
sleep 1.5 # a round of self-metrics too
collectd_stop agent 60
ok $? "4: agent stops cleanly"
collectd_log_has 'write_kafka_ts plugin \(w-sasl\): shutdown: all [0-9]+ value lists sent were delivered' agent
ok $? "5: SASL_SSL/PLAIN: every value list delivered" || collectd_dump_log agent
collectd_log_has 'write_kafka_ts plugin \(w-mtls\): shutdown: all [0-9]+ value lists sent were delivered' agent
ok $? "6: mTLS with an encrypted client key: every value list delivered" || collectd_dump_log agent

# ---- 7-10 aggregator
G=$(collectd_dir agg)
{
    collectd_conf_header agg
    collectd_conf_stock csv
    collectd_conf_ours read_kafka_ts
    printf '<Plugin csv>\n  DataDir "%s"\n  StoreRates false\n</Plugin>\n' "$G/csv"
    reader r-sasl "$RUN-sasl" "$(sasl_ssl_props PLAIN "$PW")"
    reader r-mtls "$RUN-mtls" "$(mtls_props "$KPW")"
} >"$G/collectd.conf"
collectd_start "$G/collectd.conf" agg
ok $? "7: aggregator with read_kafka_ts over SASL_SSL/PLAIN and over mTLS starts"
got_s=$(wait_csv "$G/csv/r-sasl-kts-burst" "$N" 60)
got_m=$(wait_csv "$G/csv/r-mtls-kts-burst" "$N" 60)
collectd_stop agg 60
ok $? "8: aggregator stops cleanly"
out=$(python3 "$CMP" burst "$G/csv" "$N" "$SERIES" r-sasl-kts-burst 2>&1)
st=$?
[ $st -eq 0 ] || diag "$out"
ok $st "9: SASL_SSL/PLAIN read back: $(tail -n1 <<<"$out") ($got_s rows)"
out=$(python3 "$CMP" burst "$G/csv" "$N" "$SERIES" r-mtls-kts-burst 2>&1)
st=$?
[ $st -eq 0 ] || diag "$out"
ok $st "10: mTLS read back: $(tail -n1 <<<"$out") ($got_m rows)"

# ---- 11-18 wrong password, untrusted CA
BADPW="wrong-$KTS_SASL_PASSWORD"
remember "$BADPW"
BPW_OPEN=$(secret_file bad-open.pw "$BADPW" 644) # every user can read it: warned about (18)
OTHER="$COLLECTD_TMP/other-ca"                  # a CA that did not sign the broker's certificate
mkdir -p "$OTHER"
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -keyout "$OTHER/ca.key" -out "$OTHER/ca.pem" -subj "/CN=not the broker's CA" >/dev/null 2>&1 ||
    diag "openssl could not make the other CA"
B=$(collectd_dir bad)
{
    collectd_conf_header bad
    collectd_conf_ours write_kafka_ts read_kafka_ts
    # memory only (no spool), so that shutdown reports what it could not deliver (19)
    writer w-badpw "$RUN-bad" "$(sasl_ssl_props PLAIN "$BPW_OPEN")
  SpoolDirectory \"none\"" 1
    writer w-badca "$RUN-bad" "$(sasl_ssl_props PLAIN "$PW" "$OTHER/ca.pem")" 1
    reader r-badpw "$RUN-sasl" "$(sasl_ssl_props PLAIN "$BPW_OPEN")"
    reader r-badca "$RUN-sasl" "$(sasl_ssl_props PLAIN "$PW" "$OTHER/ca.pem")"
    # 127.1 is 127.0.0.1 to the resolver, but not a name the broker's certificate has.
    writer w-badname "$RUN-bad" "$(sasl_ssl_props PLAIN "$PW" | sed 's/127\.0\.0\.1:/127.1:/g')" 1
    reader r-badname "$RUN-sasl" "$(sasl_ssl_props PLAIN "$PW" | sed 's/127\.0\.0\.1:/127.1:/g')"
} >"$B/collectd.conf"
collectd_start "$B/collectd.conf" bad
ok $? "11: collectd starts with a wrong password and an untrusted CA in both plugins"
auth='SASL authentication error: Authentication failed: Invalid username or password'
cert='certificate verify failed'
log_like bad "write_kafka_ts plugin \\(w-badpw\\).*$auth" "12: write_kafka_ts, wrong password: '$auth'"
log_like bad "read_kafka_ts plugin \\(r-badpw\\).*$auth" "13: read_kafka_ts, wrong password: the same"
log_like bad "write_kafka_ts plugin \\(w-badca\\).*$cert" "14: write_kafka_ts, untrusted CA: '$cert'"
log_like bad "read_kafka_ts plugin \\(r-badca\\).*$cert" "15: read_kafka_ts, untrusted CA: the same"
log_like bad "write_kafka_ts plugin \\(w-badname\\).*sasl_ssl://127\\.1:.*$cert" \
    "16: write_kafka_ts, an address the certificate does not name (127.1): '$cert' (host name checked)"
log_like bad "read_kafka_ts plugin \\(r-badname\\).*sasl_ssl://127\\.1:.*$cert" "17: read_kafka_ts: the same"
sleep 2 # the clients keep retrying meanwhile
kill -0 "$(collectd_pid bad)" 2>/dev/null
ok $? "18: collectd still runs after the errors"
collectd_stop bad 60
stopped_sane bad &&
    collectd_log_has 'write_kafka_ts plugin \(w-badpw\): shutdown: [0-9]+ value lists were NOT delivered' bad
ok $? "19: and stops on TERM, reporting what it could not deliver (exit status $COLLECTD_EXIT_STATUS)"
warn="PropertyFile \"sasl.password\": \"$BPW_OPEN\" can be read by every user \\(mode 0644\\)"
collectd_log_has "write_kafka_ts plugin: $warn" bad && collectd_log_has "read_kafka_ts plugin: $warn" bad
ok $? "20: both plugins warn about a PropertyFile that every user can read"

# ---- 19-21 wrong key password
BADKEY="wrong-$KTS_TLS_KEY_PASSWORD"
remember "$BADKEY"
BKPW=$(secret_file badkey.pw "$BADKEY")
K=$(collectd_dir badkey)
{
    collectd_conf_header badkey
    collectd_conf_ours write_kafka_ts read_kafka_ts
    writer w-badkey "$RUN-bad" "$(mtls_props "$BKPW")"
    reader r-badkey "$RUN-mtls" "$(mtls_props "$BKPW")"
} >"$K/collectd.conf"
collectd_start "$K/collectd.conf" badkey
st=$?
key_err='ssl\.key\.location failed'
log_like badkey "write_kafka_ts plugin \\(w-badkey\\): cannot create the Kafka producer: $key_err" \
    "21: write_kafka_ts, wrong key password: does not start: 'ssl.key.location failed'"
log_like badkey "read_kafka_ts plugin \\(r-badkey\\): cannot create the consumer: $key_err" \
    "22: read_kafka_ts, wrong key password: the same"
collectd_stop badkey 60
stopped_sane badkey && [ "$st" -eq 0 ] &&
    [ "$(collectd_log_count '_kafka_ts plugin \(.-badkey\): .*maybe wrong password' badkey)" -ge 2 ]
ok $? "23: both say 'maybe wrong password' (OpenSSL); collectd starts and stops on TERM all the same"

# ================================================================== SCRAM: Kafka 3.9.1
save_broker_logs 4
kafka_stop
SCRAM_VERSION=${KTS_SECURITY_SCRAM_VERSION:-3.9.1}
KTS_KAFKA_VERSION=$SCRAM_VERSION kafka_start --sasl --tls
ok $? "24: Kafka $SCRAM_VERSION with SASL_SSL started" || bail_out "no Kafka $SCRAM_VERSION"
remember "$KTS_SASL_PASSWORD" "$KTS_TLS_KEY_PASSWORD"
PW2=$(secret_file sasl2.pw "$KTS_SASL_PASSWORD")
BADPW2="wrong-$KTS_SASL_PASSWORD"
remember "$BADPW2"
BPW2=$(secret_file bad2.pw "$BADPW2")
A2=$(collectd_dir agent2)
{
    collectd_conf_header agent2
    collectd_conf_ours write_kafka_ts kts_testgen
    writer w-scram "$RUN-scram" "$(sasl_ssl_props SCRAM-SHA-256 "$PW2")"
    writer w-scram-bad "$RUN-scram-bad" "$(sasl_ssl_props SCRAM-SHA-256 "$BPW2")" 1
    burst_conf
} >"$A2/collectd.conf"
collectd_start "$A2/collectd.conf" agent2 &&
    collectd_wait_log "kts_testgen: burst done: $N value lists" 60 agent2
log_like agent2 'write_kafka_ts plugin \(w-scram-bad\).*invalid credentials with SASL mechanism SCRAM-SHA-256' \
    "25: SCRAM, wrong password: 'invalid credentials with SASL mechanism SCRAM-SHA-256'"
sleep 1.5
collectd_stop agent2 60
stopped_sane agent2
ok $? "26: agent (write_kafka_ts with SCRAM-SHA-256) stops on TERM"
collectd_log_has 'write_kafka_ts plugin \(w-scram\): shutdown: all [0-9]+ value lists sent were delivered' agent2
ok $? "27: write_kafka_ts, SCRAM-SHA-256 over SASL_SSL: every value list delivered" || collectd_dump_log agent2
G2=$(collectd_dir agg2)
{
    collectd_conf_header agg2
    collectd_conf_stock csv
    collectd_conf_ours read_kafka_ts
    printf '<Plugin csv>\n  DataDir "%s"\n  StoreRates false\n</Plugin>\n' "$G2/csv"
    reader r-scram "$RUN-scram" "$(sasl_ssl_props SCRAM-SHA-256 "$PW2")"
} >"$G2/collectd.conf"
collectd_start "$G2/collectd.conf" agg2
got=$(wait_csv "$G2/csv/r-scram-kts-burst" "$N" 60)
collectd_stop agg2 60
st=$?
out=$(python3 "$CMP" burst "$G2/csv" "$N" "$SERIES" r-scram-kts-burst 2>&1)
[ $? -eq 0 ] || { st=1; diag "$out"; }
ok $st "28: read_kafka_ts, SCRAM-SHA-256 over SASL_SSL: $(tail -n1 <<<"$out") ($got rows), clean stop"
save_broker_logs 3
kafka_stop

# ================================================================== 29-30 no password in logs
logs=()
while IFS= read -r -d '' f; do logs+=("$f"); done < <(
    find "$COLLECTD_TMP" -path "$S" -prune -o -type f \( -name '*.log' -o -name '*.stderr' \) -print0)
printf '%s\n' "${PASSWORDS[@]}" >"$S/all"
hits=$(grep -lF -f "$S/all" "${logs[@]}" 2>/dev/null)
bytes=$(cat "${logs[@]}" 2>/dev/null | wc -c)
[ -z "$hits" ] && [ "${#logs[@]}" -ge 5 ]
ok $? "29: none of ${#PASSWORDS[@]} passwords in ${#logs[@]} log files ($bytes bytes)" || diag "found in: $hits"
hits=$(grep -lF -f "$S/all" "$COLLECTD_TMP"/*/collectd.conf)
[ -z "$hits" ]
ok $? "30: no password in any collectd.conf (PropertyFile keeps them out)" || diag "found in: $hits"

done_testing
