#!/usr/bin/env bash
# [logs] drain (docs/logs.md): an app's output, its build output and its access log shipped
# to a real rsyslogd started here on 127.0.0.1 (RFC 5424 messages, octet-counted framing, over
# TCP, then TLS with a CA of the test's own); rsyslogd restarted in the middle of a stream of
# numbered lines loses none of them; with the receiver away, a full queue drops lines and
# `deployctl status` counts them.
source "$(dirname "$0")/lib.sh"
require_binaries
RSYSLOGD=$(command -v rsyslogd || echo /usr/sbin/rsyslogd)
if [[ ! -x $RSYSLOGD ]]; then
    [[ ${CI:-} == true ]] && fail "rsyslogd present" "scripts/deps installs rsyslog"
    log "SKIP: needs rsyslogd (Debian: apt-get install rsyslog rsyslog-openssl)"
    exit 77
fi

RS=$TEST_TMP/rsyslog
mkdir -p "$RS/work"
SYSLOG_PORT=$(free_port)
TLS_PORT=$(free_port)
RECEIVED=$RS/received.log
RSYSLOG_PID=""
# start_rsyslog [tls]: rsyslogd in the foreground with a configuration of its own only: one
# listener on 127.0.0.1 and one file, each message as "APP PROCID MSGID TIME TEXT".
start_rsyslog() {
    local conf=$RS/rsyslog.conf
    {
        printf 'global(workDirectory="%s"' "$RS/work"
        if [[ ${1:-} == tls ]]; then
            printf ' DefaultNetstreamDriver="ossl" DefaultNetstreamDriverCAFile="%s"' "$RS/ca.pem"
            printf ' DefaultNetstreamDriverCertFile="%s" DefaultNetstreamDriverKeyFile="%s"' "$RS/cert.pem" "$RS/key.pem"
            printf ')\nmodule(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")\n'
            printf 'input(type="imtcp" address="127.0.0.1" port="%s")\n' "$TLS_PORT"
        else
            printf ')\nmodule(load="imtcp")\ninput(type="imtcp" address="127.0.0.1" port="%s")\n' "$SYSLOG_PORT"
        fi
        printf 'template(name="line" type="string" string="%%app-name%% %%procid%% %%msgid%% %%timereported:::date-rfc3339%% %%msg%%\\n")\n'
        printf '*.* action(type="omfile" file="%s" template="line")\n' "$RECEIVED"
    } >"$conf"
    "$RSYSLOGD" -n -f "$conf" -i "$RS/rsyslogd.pid" >>"$RS/rsyslogd.out" 2>&1 &
    RSYSLOG_PID=$!
    local port=$SYSLOG_PORT
    [[ ${1:-} == tls ]] && port=$TLS_PORT
    wait_until 10 port_in_use "$port" || fail "rsyslogd listens on 127.0.0.1:$port" "$(excerpt "$RS/rsyslogd.out")"
}
stop_rsyslog() {
    [[ -n $RSYSLOG_PID ]] || return 0
    kill "$RSYSLOG_PID" 2>/dev/null || true
    wait "$RSYSLOG_PID" 2>/dev/null || true
    RSYSLOG_PID=""
}
# (The EXIT trap kills it with the test's other background jobs.)

METRICS_PORT=$(free_port)
AGENT_EXTRA_ARGS=(--metrics-listen "127.0.0.1:$METRICS_PORT")
start_agent
start_rsyslog
# A web app that writes a numbered line every 20 ms, and says what it built.
BUILD='echo "build-marker-$(cat VERSION)" && mkdir -p public && echo "hello from $(cat VERSION)" > public/index.html && echo ok > public/healthz'
TICKING='(i=0; while :; do echo "tick $i"; i=$((i+1)); sleep 0.02; done) & exec busybox httpd -f -p 127.0.0.1:$PORT -h public'
make_app_repo hello build="$BUILD" run="$TICKING"
APP=hello
# drain_toml RUN [LOGS LINES...]: deploy.toml again, with RUN and those [logs] lines, committed.
drain_toml() {
    write_toml "$REPO" hello build="$BUILD" run="$1"
    shift
    printf '\n[logs]\n' >>"$REPO/deploy.toml"
    printf '%s\n' "$@" >>"$REPO/deploy.toml"
    git -C "$REPO" commit -qam "deploy.toml: $*"
}
drain_toml "$TICKING" "drain = \"syslog+tcp://127.0.0.1:$SYSLOG_PORT\""
assert_exit 0 dctl deploy
expect_serving $APP "hello from 1" "v1 serves"
# ticks RELEASE: the tick numbers rsyslogd received from that release's web process.
ticks() { awk -v r="$1" '$1 == "hello" && $2 == "web" && $3 == r && $5 == "tick" { print $6 }' "$RECEIVED" 2>/dev/null | sort -n -u; }
has_ticks() { [[ $(ticks "$1" | grep -c .) -ge $2 ]]; }
assert_true "the app's lines reach rsyslogd (APP hello, PROCID web, MSGID v1)" wait_until 15 has_ticks v1 10
time_field=$(awk '$1 == "hello" && $2 == "web" { print $4; exit }' "$RECEIVED")
assert_match "$time_field" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{6}(Z|\+00:00)$' "each message carries the line's own time, to the microsecond"
assert_exit 0 dctl --json status
assert_eq "true $((SYSLOG_PORT))" "$(jq -r 'select(.event == "status") | "\(.drain.connected) \(.drain.url | sub(".*:"; ""))"' "$OUT_FILE")" \
    "status --json: the drain, connected"
assert_exit 0 dctl status
assert_match "$OUT" "drain syslog\+tcp://127\.0\.0\.1:$SYSLOG_PORT: connected, [0-9]+ delivered" "status: the drain's line"

# --- a second release: its build output and the access log go too -----------------------
commit_change "$REPO" "Version 2" VERSION 2
assert_exit 0 dctl deploy
expect_serving $APP "hello from 2" "v2 serves"
for _ in 1 2 3; do fetch $APP /index.html >/dev/null; done
has_build() { grep -qE '^hello build v2 [^ ]+ build-marker-2$' "$RECEIVED"; }
assert_true "the build's output goes too (PROCID build, MSGID v2)" wait_until 15 has_build
has_access() { grep -E '^hello access v2 ' "$RECEIVED" | grep -q '"path":"/index.html"'; }
assert_true "the access log goes too (PROCID access: the request's JSON record)" wait_until 15 has_access

# --- rsyslogd restarted in the middle: no line of the stream is lost ---------------------
assert_true "v2's ticks arrive" wait_until 15 has_ticks v2 20
stop_rsyslog
before=$(ticks v2 | tail -n1)
sleep 2 # the app writes about 100 lines meanwhile; the drain queues them
start_rsyslog
assert_true "after the restart the drain reconnects and sends on" wait_until 15 has_ticks v2 $((before + 150))
last=$(ticks v2 | tail -n1)
expected=$(seq 0 "$last" | paste -sd' ')
got=$(ticks v2 | awk -v last="$last" '$1 <= last' | paste -sd' ') # the app writes on meanwhile
if [[ $got == "$expected" ]]; then
    pass "rsyslogd restarted: every tick from 0 to $last arrived (none lost across the outage)"
else
    missing=$(comm -23 <(seq 0 "$last" | sort) <(ticks v2 | sort) | sort -n | head -n 20 | paste -sd' ')
    fail "rsyslogd restarted: every tick from 0 to $last arrived" "missing: $missing"
fi
dups=$(awk '$1 == "hello" && $2 == "web" && $3 == "v2" && $5 == "tick" { print $6 }' "$RECEIVED" | sort | uniq -d | grep -c . || true)
log "lines received twice (sent again after the connection broke before they were confirmed): $dups"

# --- the receiver away, a small queue: lines past it are dropped and counted -------------
# A web app that writes 3000 lines as it starts, each with its shell's pid: one start's lines.
drain_toml 'seq 1 3000 | sed "s/^/burst $$ /"; exec busybox httpd -f -p 127.0.0.1:$PORT -h public' \
    "drain = \"syslog+tcp://127.0.0.1:$SYSLOG_PORT\"" 'drain_queue = "64k"'
assert_exit 0 dctl deploy
# bursts: "PID COUNT" of each start's burst lines rsyslogd received (each line once).
bursts() { awk '$1 == "hello" && $2 == "web" && $3 == "v3" && $5 == "burst" { print $6, $7 }' "$RECEIVED" 2>/dev/null | sort -u | awk '{ n[$1]++ } END { for (p in n) print p, n[p] }'; }
first_burst_delivered() { [[ $(bursts | awk '$2 == 3000' | grep -c .) == 1 ]]; }
assert_true "with the receiver there, a 3000-line burst goes through a 64k queue whole" wait_until 20 first_burst_delivered
queued_bytes() { dctl --json status 2>/dev/null | jq -r 'select(.event == "status") | .drain.queued_bytes // -1' 2>/dev/null || echo -1; }
all_confirmed() { [[ $(queued_bytes) == 0 ]]; }
assert_true "... and is confirmed delivered (status: 0 bytes queued)" wait_until 20 all_confirmed
first_pid=$(bursts | awk '{ print $1 }')
stop_rsyslog
assert_exit 0 dctl restart # the new process writes its burst while nobody receives
dropped() { dctl --json status 2>/dev/null | jq -r 'select(.event == "status") | .drain.dropped // 0' 2>/dev/null || echo 0; }
some_dropped() { (($(dropped) > 0)); }
assert_true "the queue full, lines are dropped and counted (status --json .drain.dropped)" wait_until 20 some_dropped
assert_exit 0 dctl status
assert_match "$OUT" "drain syslog\+tcp://127\.0\.0\.1:$SYSLOG_PORT: not connected \(.*\), [0-9]+ delivered, .* queued, [0-9]+ dropped \(the queue was full\)" \
    "status: not connected, and how many lines were dropped"
queued=$(queued_bytes)
metrics=$(curl -s --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics")
assert_match "$metrics" "deploy_agent_drain_dropped_total\{app=\"hello\"\} $(dropped)" "GET /metrics: deploy_agent_drain_dropped_total, as status says"
assert_match "$metrics" "deploy_agent_drain_connected\{app=\"hello\"\} 0" "GET /metrics: the drain is not connected"
((queued >= 0 && queued <= 65536)) && pass "the queue holds at most drain_queue ($queued bytes)" || fail "the queue holds at most 64k" "queued: $queued"
start_rsyslog
second_burst() { bursts | awk -v p="$first_pid" '$1 != p && $2 > 0' | grep -q .; }
assert_true "what was queued is delivered once rsyslogd is back" wait_until 15 second_burst
sleep 1
n=$(bursts | awk -v p="$first_pid" '$1 != p { print $2 }')
d=$(dropped)
((n + d >= 3000 && n < 3000)) && pass "of the second 3000-line burst $n were delivered and $d dropped and counted" ||
    fail "delivered + dropped account for the second 3000-line burst" "delivered $n, dropped $d"

# --- TLS: the same over syslog+tls://, verified with the test's own CA -------------------
stop_rsyslog
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$RS/ca.key" -out "$RS/ca.pem" -days 2 -subj "/CN=drain test CA" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$RS/key.pem" -out "$RS/req.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost\n' >"$RS/ext"
openssl x509 -req -in "$RS/req.csr" -CA "$RS/ca.pem" -CAkey "$RS/ca.key" -CAcreateserial -out "$RS/cert.pem" -days 2 -extfile "$RS/ext" 2>/dev/null
start_rsyslog tls
echo 4 >"$REPO/VERSION"
drain_toml "$TICKING" "drain = \"syslog+tls://localhost:$TLS_PORT?ca=$RS/ca.pem\""
assert_exit 0 dctl deploy
has_tls_build() { grep -qE '^hello build v4 [^ ]+ build-marker-4$' "$RECEIVED"; }
assert_true "over TLS: the lines reach rsyslogd" wait_until 15 has_tls_build
# A certificate the CA did not sign: refused, and status says why.
stop_rsyslog
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$RS/key.pem" -out "$RS/cert.pem" -days 2 -subj "/CN=localhost" 2>/dev/null
start_rsyslog tls
commit_change "$REPO" "Version 5" VERSION 5
assert_exit 0 dctl deploy
refused() { dctl status 2>/dev/null | grep -q "not connected (TLS with localhost:$TLS_PORT: its certificate"; }
assert_true "over TLS, a receiver whose certificate the CA did not sign is refused, and status says why" wait_until 15 refused
assert_false "... and nothing of v5 reached it" grep -qE '^hello [a-z]+ v5 ' "$RECEIVED"

# --- the drain removed: its thread and queue go ------------------------------------------
echo 6 >"$REPO/VERSION"
drain_toml "$TICKING"
assert_exit 0 dctl deploy
queue_gone() { [[ ! -e $DATA/apps/hello/drain ]]; }
assert_true "without [logs] drain the drain stops and its queue is removed" wait_until 10 queue_gone
assert_exit 0 dctl --json status
assert_eq null "$(jq -r 'select(.event == "status") | .drain' "$OUT_FILE")" "status --json: drain null"
