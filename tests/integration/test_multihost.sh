#!/usr/bin/env bash
# A target with several hosts (docs/multi-host.md): parallel and rolling deploys to three
# real agents, output grouped per host, the summary, a failing host (health check, or no
# agent at all) rolling the switched hosts back, --no-rollback, status/releases over every
# host, and a canary on every host (the same clients on its side everywhere; promote and
# abort apply to all).
source "$(dirname "$0")/lib.sh"
require_binaries

start_agent a
start_agent b
start_agent c
# Three agents, three admin tokens: deployctl takes each from the credentials file.
unset DEPLOYCTL_TOKEN
APP=hello
ALL="\"$A_URL\", \"$B_URL\", \"$C_URL\""
# With BREAK_HEALTH=1 (set on one agent only with `env set --host`), /healthz is gone.
BREAKABLE_RUN='if [ "$BREAK_HEALTH" = 1 ]; then rm -f public/healthz; fi; exec busybox httpd -f -p 127.0.0.1:$PORT -h public'
make_app_repo hello hosts="$ALL" run="$BREAKABLE_RUN" health_timeout=3s
dc() { "$DEPLOYCTL_BIN" -C "$REPO" --no-color "$@"; }
prod_on() { acurl -s "$1/v1/apps/hello" | jq -r '.production // empty' 2>/dev/null || true; }
count_on() { acurl -s "$1/v1/apps/hello/releases" | jq -r 'if type == "array" then length else 0 end' 2>/dev/null || echo 0; }
serving_everywhere() {
    expect_serving $APP "$1" "$2: a serves it" "$A_PROXY_PORT"
    expect_serving $APP "$1" "$2: b serves it" "$B_PROXY_PORT"
    expect_serving $APP "$1" "$2: c serves it" "$C_PROXY_PORT"
}
# contiguous FILE HOST: the lines prefixed [HOST] form one block.
contiguous() {
    local lines first last n
    lines=$(grep -nF "[$2] " "$1" | cut -d: -f1)
    n=$(grep -c . <<<"$lines")
    first=$(head -n1 <<<"$lines")
    last=$(tail -n1 <<<"$lines")
    ((n > 1 && last - first + 1 == n))
}
no_escapes() { ! grep -q $'\033' "$1" && ! grep -q $'\r' "$1"; }

# --- parallel, the first deploy: every host gets v1 ---------------------------------
assert_exit 0 dc deploy
for h in "$A_URL" "$B_URL" "$C_URL"; do
    assert_eq v1 "$(prod_on "$h")" "parallel: $h has v1 in production"
done
serving_everywhere "hello from 1" "parallel v1"
cp "$OUT_FILE" "$TEST_TMP/parallel.out"
cat "$ERR_FILE" >>"$TEST_TMP/parallel.out"
for h in "$A_URL" "$B_URL" "$C_URL"; do
    assert_true "parallel, no TTY: $h's lines are one block" contiguous "$OUT_FILE" "$h"
done
assert_true "parallel, no TTY: no escape codes, no carriage returns" no_escapes "$TEST_TMP/parallel.out"
assert_match "$OUT" "^HOST +RELEASE +STATE +TIME" "parallel: the summary table's header"
for h in "$A_URL" "$B_URL" "$C_URL"; do
    assert_match "$OUT" "^$h +v1 +PRODUCTION " "parallel: the summary row of $h"
done
assert_contains "$OUT" "3 of 3 hosts live (parallel" "parallel: the verdict"

# --- logs -f follows every host at once, each line with its host --------------------
# An unreachable host is reported and the others go on; the markers are appended to each
# agent's app log as the app would write them.
FOLLOW=$TEST_TMP/follow-all.out
nobody=$(free_port)
dc --host "$A_URL" --host "$B_URL" --host "$C_URL" --host "http://127.0.0.1:$nobody" \
    logs -f >"$FOLLOW" 2>"$TEST_TMP/follow-all.err" &
follow_pid=$!
marker=marker-$RANDOM$RANDOM
for n in A B C; do
    data=${n}_DATA
    echo "$marker-$n" >>"${!data}/apps/hello/logs/v1.app.log"
done
for n in A B C; do
    url=${n}_URL
    has_line() { grep -qE "^\[${!url}\] +app \| $marker-$n\$" "$FOLLOW"; }
    assert_true "logs -f on several hosts: $n's new line, with its host" wait_until 10 has_line
done
has_error() { grep -qF "127.0.0.1:$nobody" "$TEST_TMP/follow-all.err"; }
assert_true "logs -f on several hosts: the unreachable one is reported" wait_until 10 has_error
assert_true "logs -f on several hosts: still following the others" alive "$follow_pid"
echo "$marker-A-again" >>"$A_DATA/apps/hello/logs/v1.app.log"
has_again() { grep -qE "^\[$A_URL\] +app \| $marker-A-again\$" "$FOLLOW"; }
assert_true "logs -f on several hosts: a later line comes too" wait_until 10 has_again
kill "$follow_pid" 2>/dev/null || true
wait "$follow_pid" 2>/dev/null || true

# --- several hosts' lines merged by time: written stamped, as the app's writer stamps --
# Each agent's app log gets lines of its own at interleaved times; deployctl reads the three
# at once and prints them in time order, each with its host.
t0=$(date +%s) # every stamp from one clock reading: a second may pass meanwhile
stamp() { date -u -d "@$((t0 - 600 + $1))" +%Y-%m-%dT%H:%M:%S.000000Z; }
since=$(date -u -d "@$((t0 - 650))" +%Y-%m-%dT%H:%M:%SZ)
order=(A:1 B:2 A:3 C:4 B:5 C:6 A:7)
for entry in "${order[@]}"; do
    n=${entry%%:*} t=${entry#*:} data=${entry%%:*}_DATA
    echo "$(stamp "$t") merged-$marker-$t" >>"${!data}/apps/hello/logs/v1.app.log"
done
assert_exit 0 dc --json logs --since "$since" --grep "merged-$marker"
merged=$(jq -r 'select(.event == "log") | "\(.host) \(.line)"' "$OUT_FILE" | paste -sd' ')
expected=""
for entry in "${order[@]}"; do
    url=${entry%%:*}_URL
    expected+="${expected:+ }${!url} merged-$marker-${entry#*:}"
done
assert_eq "$expected" "$merged" "logs on several hosts: the lines of all hosts in time order"
assert_eq 7 "$(jq -r 'select(.event == "log") | .ts' "$OUT_FILE" | grep -cE '^[0-9-]{10}T[0-9:]{8}\.[0-9]{6}Z$')" \
    "logs --json: every line has its ts"
assert_eq "web" "$(jq -r 'select(.event == "log") | .process' "$OUT_FILE" | sort -u)" \
    "logs --json: the process of every app line"
assert_exit 0 dc logs --timestamps --since "$since" --grep "merged-$marker-1\$"
assert_match "$OUT" "^\[$A_URL\] $(stamp 1) +app \| merged-$marker-1$" "logs --timestamps: the time of each line"
assert_exit 0 dc logs --since "$since" --until "$(stamp 4 | cut -c1-19)" --grep "merged-$marker"
assert_eq 3 "$(grep -c "merged-$marker" <<<"$OUT")" "logs --since/--until: the lines of the range only"
assert_exit 2 dc logs --since yesterday
assert_contains "$ERR" "--since: 'yesterday' is neither a time" "logs --since: a bad time is a usage error"
assert_exit 2 dc logs -f --hold 2m
assert_contains "$ERR" "--hold takes a duration up to 60s" "logs --hold: more than a minute is a usage error"

# -f: lines the hosts write at about the same moment come in time order, not arrival order.
# (--hold 3s: a line waits that long for the other host's, so a loaded machine cannot reorder them.)
dc --host "$A_URL" --host "$B_URL" logs -f --hold 3s --grep "late-$marker" >"$TEST_TMP/follow-merge.out" 2>&1 &
follow_pid=$!
sleep 1
t1=$(date +%s)
echo "$(date -u -d @$((t1 + 2)) +%Y-%m-%dT%H:%M:%S.000000Z) late-$marker-second" >>"$B_DATA/apps/hello/logs/v1.app.log"
echo "$(date -u -d @$((t1 + 1)) +%Y-%m-%dT%H:%M:%S.000000Z) late-$marker-first" >>"$A_DATA/apps/hello/logs/v1.app.log"
has_both() { [ "$(grep -c "late-$marker" "$TEST_TMP/follow-merge.out")" = 2 ]; }
assert_true "logs -f on several hosts: both lines come" wait_until 10 has_both
assert_eq "first second" "$(grep -o "late-$marker-[a-z]*" "$TEST_TMP/follow-merge.out" | sed "s/late-$marker-//" | paste -sd' ')" \
    "logs -f on several hosts: lines of the same moment in time order"
kill "$follow_pid" 2>/dev/null || true
wait "$follow_pid" 2>/dev/null || true

# --- rolling: host 2 starts only once host 1 is PRODUCTION ---------------------------
commit_change "$REPO" "Version 2" VERSION 2
assert_exit 0 dc --json deploy --strategy rolling
J=$OUT_FILE
assert_true "rolling --json: every line is a JSON object" jq -e . "$J" >/dev/null
serving_everywhere "hello from 2" "rolling v2"
live_ts() { jq -r --arg h "$1" 'select(.event == "state" and .host == $h and .state == "PRODUCTION") | .ts' "$J" | head -n1; }
first_ts() { jq -r --arg h "$1" 'select(.event == "state" and .host == $h) | .ts' "$J" | head -n1; }
a_live=$(live_ts "$A_URL") b_first=$(first_ts "$B_URL") b_live=$(live_ts "$B_URL") c_first=$(first_ts "$C_URL")
assert_ne "" "$a_live" "rolling: a's PRODUCTION event has a time stamp"
assert_true "rolling: b starts ($b_first) after a is PRODUCTION ($a_live)" test "$b_first" \> "$a_live"
assert_true "rolling: c starts ($c_first) after b is PRODUCTION ($b_live)" test "$c_first" \> "$b_live"
assert_eq "$A_URL $B_URL $C_URL" "$(jq -r 'select(.event == "created") | .host' "$J" | paste -sd' ')" \
    "rolling: created on a, b, c in order"
S=$(jq -c 'select(.event == "summary")' "$J")
assert_jq "$S" '.command == "deploy" and .strategy == "rolling" and .ok and .exit_code == 0' \
    "rolling: the summary event"
assert_jq "$S" '[.hosts[] | select(.state == "PRODUCTION" and .release == "v2" and .previous == "v1")] | length == 3' \
    "rolling: the summary has the 3 hosts on v2 (previous v1)"
assert_jq "$(jq -sc . "$J")" '[.[] | select(.event != "summary" and .event != "package") | has("host")] | all' \
    "rolling --json: every host's event carries its host"
rolling_ms=$(jq -r .elapsed_ms <<<"$S")

# The same deploy in parallel, for the figures (nothing new to upload).
commit_change "$REPO" "Version 3" VERSION 3
assert_exit 0 dc --json deploy
parallel_ms=$(jq -r 'select(.event == "summary") | .elapsed_ms' "$OUT_FILE")
log "3 hosts: rolling ${rolling_ms} ms, parallel ${parallel_ms} ms"
serving_everywhere "hello from 3" "parallel v3"

# --- a failing host: the others are rolled back to v3 ------------------------------
assert_exit 0 dc --host "$C_URL" env set BREAK_HEALTH=1
commit_change "$REPO" "Version 4" VERSION 4
assert_exit 1 dc --json deploy
S=$(jq -c 'select(.event == "summary")' "$OUT_FILE")
assert_jq "$S" '.ok == false and .exit_code == 1' "health fails on c: summary not ok, exit_code 1"
assert_jq "$S" '.hosts[0].state == "ROLLED_BACK" and .hosts[0].release == "v4" and .hosts[0].previous == "v3"' \
    "health fails on c: a rolled back from v4 to v3"
assert_jq "$S" '.hosts[1].state == "ROLLED_BACK"' "health fails on c: b rolled back"
assert_jq "$S" '.hosts[2].state == "FAILED" and .hosts[2].release == "v4"' "health fails on c: c FAILED"
assert_eq 2 "$(jq -s '[.[] | select(.event == "done" and .state == "PRODUCTION" and .release == "v3" and .previous == "v4")] | length' "$OUT_FILE")" \
    "health fails on c: a done event (v3 live again, previous v4) from a and b"
for h in "$A_URL" "$B_URL" "$C_URL"; do
    assert_eq v3 "$(prod_on "$h")" "after the rollback: $h has v3 in production"
done
serving_everywhere "hello from 3" "after the rollback"
assert_exit 0 dc --json status
assert_eq "v3 v3 v3" "$(jq -r 'select(.event != "summary") | .production' "$OUT_FILE" | paste -sd' ')" \
    "status --json after the rollback: v3 on every host"
assert_jq "$(jq -c 'select(.event == "summary")' "$OUT_FILE")" '.command == "status" and .consistent' \
    "status --json: the hosts agree"

# --- rolling with a failing host: the hosts after it are not started --------------
commit_change "$REPO" "Version 5" VERSION 5
before_b=$(count_on "$B_URL")
assert_exit 1 dc --host "$A_URL" --host "$C_URL" --host "$B_URL" deploy --strategy rolling
assert_true "rolling failure, no TTY: no escape codes, no carriage returns" no_escapes "$OUT_FILE"
assert_match "$OUT" "^$A_URL +v5 -> v3 +ROLLED_BACK " "rolling failure: a rolled back (summary)"
assert_match "$OUT" "^$C_URL +v5 +FAILED " "rolling failure: c FAILED (summary)"
assert_match "$OUT" "^$B_URL +- +NOT_STARTED " "rolling failure: b not started (summary)"
assert_eq "$before_b" "$(count_on "$B_URL")" "rolling failure: b got no release"
assert_eq v3 "$(prod_on "$A_URL")" "rolling failure: a back on v3"
assert_contains "$ERR" "failed on 1 of 3 hosts" "rolling failure: the error says how many hosts failed"

# --- --no-rollback: the switched hosts stay on the new release ---------------------
# (b skipped v5, c has it FAILED: the fleet's id is the highest next one, v6 on every host)
commit_change "$REPO" "Version 6" VERSION 6
assert_exit 1 dc deploy --no-rollback
assert_match "$OUT" "^$A_URL +v6 +PRODUCTION .*kept: --no-rollback" "--no-rollback: a kept v6"
expect_serving $APP "hello from 6" "--no-rollback: a serves v6" "$A_PROXY_PORT"
expect_serving $APP "hello from 6" "--no-rollback: b serves v6" "$B_PROXY_PORT"
expect_serving $APP "hello from 3" "--no-rollback: c still serves v3" "$C_PROXY_PORT"
assert_exit 0 dc status
assert_match "$OUT" "^$C_URL +v3 [0-9a-f]{7} +PRODUCTION" "status: the table shows c on v3, and its commit"
assert_match "$OUT" "^$A_URL +v6 [0-9a-f]{7} +PRODUCTION" "status: the table shows a on v6, and its commit"
assert_eq v6 "$(prod_on "$B_URL")" "--no-rollback: b got v6 too, one id for the fleet"
assert_contains "$ERR" "the hosts differ" "status: says the hosts differ"
assert_exit 0 dc --json releases
assert_jq "$(jq -c 'select(type == "object" and .event == "summary")' "$OUT_FILE")" \
    '.command == "releases" and (.consistent | not) and .hosts[0].release == "v6" and .hosts[2].release == "v3"' \
    "releases --json: the summary shows the PRODUCTION release of each host, and that they differ"
assert_exit 0 dc --host "$C_URL" env unset BREAK_HEALTH

# --- an unreachable host: exit 3, the others are rolled back ------------------------
dead=$(free_port)
b_before=$(prod_on "$B_URL")
commit_change "$REPO" "Version 7" VERSION 7
assert_exit 3 dc --host "$A_URL" --host "http://127.0.0.1:$dead" --host "$B_URL" deploy
assert_match "$OUT" "^http://127.0.0.1:$dead +- +UNREACHABLE " "dead host: UNREACHABLE in the summary"
assert_match "$OUT" "^$A_URL +v7 -> v6 +ROLLED_BACK " "dead host: a rolled back to v6"
assert_eq v6 "$(prod_on "$A_URL")" "dead host: a back on v6"
assert_eq "$b_before" "$(prod_on "$B_URL")" "dead host: b back on $b_before"
assert_contains "$ERR" "127.0.0.1:$dead" "dead host: the error names it"
assert_contains "$ERR" "is deploy-agent running there" "dead host: the error asks whether the agent runs"
assert_contains "$ERR" "--host, DEPLOYCTL_HOST or the target's hosts" "dead host: the error says where the URL comes from"

# --- [deploy] strategy / max_parallel in deploy.toml ------------------------------
sed -i 's/^\[deploy\]$/[deploy]\nstrategy = "rollin"/' "$REPO/deploy.toml"
commit_change "$REPO" "Typo in strategy"
assert_exit 2 dc deploy
assert_contains "$ERR" 'did you mean "rolling"' "strategy typo: did you mean"
assert_match "$ERR" 'deploy.toml:[0-9]+:[0-9]+' "strategy typo: file:line:col"
sed -i 's/^strategy = "rollin"$/strategy = "rolling"\nmax_parallel = 0/' "$REPO/deploy.toml"
commit_change "$REPO" "max_parallel 0"
assert_exit 2 dc deploy
assert_contains "$ERR" "deploy.max_parallel" "max_parallel = 0: names the key"
sed -i 's/^max_parallel = 0$/max_parallel = 2/' "$REPO/deploy.toml"
commit_change "$REPO" "Version 8, rolling from deploy.toml" VERSION 8
assert_exit 0 dc --json deploy
assert_jq "$(jq -c 'select(.event == "summary")' "$OUT_FILE")" '.strategy == "rolling" and .ok' \
    "deploy.toml strategy = \"rolling\" is used"
serving_everywhere "hello from 8" "rolling from deploy.toml"

# --- a canary on every host: each splits its own traffic the same way ----------------
canary_on() { acurl -s "$1/v1/apps/hello/canary" | jq -r '.release // empty' 2>/dev/null || true; }
state_on() { acurl -s "$1/v1/apps/hello/releases/$2" | jq -r '.state // empty' 2>/dev/null || true; }
# sides PORT: for 200 client ids, which release answered each ("c" the canary, "p" production).
sides() {
    python3 - "$1" "$2" <<'PY'
import http.client, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
out = []
for i in range(200):
    conn.request("GET", "/", headers={"Host": "hello.localhost", "X-Deploy-Client": f"client-{i}"})
    body = conn.getresponse().read().decode().strip()
    out.append("c" if body == sys.argv[2] else "p" if body == "hello from 8" else "?")
print("".join(out))
PY
}
commit_change "$REPO" "Version 10, a canary" VERSION 10
assert_exit 0 dc deploy --canary 30
assert_contains "$OUT" "3 of 3 hosts live with the canary (rolling" "canary: the verdict (deploy.toml says rolling)"
for h in "$A_URL" "$B_URL" "$C_URL"; do
    assert_match "$OUT" "^$h +v[0-9]+ +CANARY " "canary: the summary row of $h"
    assert_eq v8 "$(prod_on "$h")" "canary: $h keeps v8 in production"
    [[ -n $(canary_on "$h") ]] || fail "canary: $h has a CANARY release" "$(acurl -s "$h/v1/apps/hello/releases")"
done
CANARY_A=$(canary_on "$A_URL")
SIDES_A=$(sides "$A_PROXY_PORT" "hello from 10")
SIDES_B=$(sides "$B_PROXY_PORT" "hello from 10")
SIDES_C=$(sides "$C_PROXY_PORT" "hello from 10")
assert_not_contains "$SIDES_A$SIDES_B$SIDES_C" "?" "canary: every request answered by v8 or the canary"
assert_eq "$SIDES_A" "$SIDES_B" "canary: a and b put each client on the same side"
assert_eq "$SIDES_A" "$SIDES_C" "canary: a and c put each client on the same side"
ON_CANARY=$(tr -cd c <<<"$SIDES_A" | wc -c)
log "canary at 30% on three hosts: $ON_CANARY of 200 clients on the canary, the same ones everywhere"
assert_true "canary: 20-40% of 200 clients on the canary ($ON_CANARY)" test "$ON_CANARY" -ge 40 -a "$ON_CANARY" -le 80
assert_exit 0 dc canary
for h in "$A_URL" "$B_URL" "$C_URL"; do
    assert_contains "$OUT" "$h" "deployctl canary shows $h"
done
assert_exit 0 dc canary promote
for h in "$A_URL" "$B_URL" "$C_URL"; do
    assert_eq PRODUCTION "$(state_on "$h" "$(prod_on "$h")")" "promote: $h has a PRODUCTION release"
    assert_eq "" "$(canary_on "$h")" "promote: $h has no canary left"
done
assert_eq "$CANARY_A" "$(prod_on "$A_URL")" "promote: a's canary is its PRODUCTION"
serving_everywhere "hello from 10" "canary promoted"
commit_change "$REPO" "Version 11, a canary aborted" VERSION 11
assert_exit 0 dc deploy --canary 50
declare -A ABORTED=()
for h in "$A_URL" "$B_URL" "$C_URL"; do ABORTED[$h]=$(canary_on "$h"); done
assert_exit 0 dc canary abort
for h in "$A_URL" "$B_URL" "$C_URL"; do
    assert_eq FAILED "$(state_on "$h" "${ABORTED[$h]}")" "abort: $h's canary ${ABORTED[$h]} is FAILED"
    assert_eq "" "$(canary_on "$h")" "abort: $h has no canary left"
done
serving_everywhere "hello from 10" "canary aborted"
# One host fails its canary's health check: the others' canaries are aborted.
assert_exit 0 dc --host "$C_URL" env set BREAK_HEALTH=1
commit_change "$REPO" "Version 12, a canary that fails on c" VERSION 12
assert_exit 1 dc deploy --canary 50
assert_match "$OUT" "^$A_URL +v[0-9]+ -> v[0-9]+ +ROLLED_BACK .*rolled back: canary v[0-9]+ aborted, v[0-9]+ still live" \
    "a failed canary host: a's canary aborted (summary)"
assert_match "$OUT" "^$C_URL +v[0-9]+ +FAILED " "a failed canary host: c FAILED (summary)"
for h in "$A_URL" "$B_URL"; do
    assert_eq "" "$(canary_on "$h")" "a failed canary host: $h has no canary left"
done
serving_everywhere "hello from 10" "a failed canary host"
assert_exit 0 dc --host "$C_URL" env unset BREAK_HEALTH

# --- tokens for several agents: a credentials line wins over DEPLOYCTL_TOKEN --------
# Each agent made its own admin token. The variable holds a's; b has a line.
cp "$CREDENTIALS" "$CREDENTIALS.all"
{ grep -v "^$A_URL " "$CREDENTIALS.all" | grep -v "^$C_URL " || true; } >"$CREDENTIALS"
export DEPLOYCTL_TOKEN=$(<"$A_DATA/admin.token")
assert_exit 0 dc --host "$A_URL" --host "$B_URL" status
assert_contains "$OUT" "$B_URL" "DEPLOYCTL_TOKEN for a, a line for b: status works on both"
commit_change "$REPO" "Version 9, tokens from two places" VERSION 9
assert_exit 0 dc --host "$A_URL" --host "$B_URL" deploy
expect_serving $APP "hello from 9" "DEPLOYCTL_TOKEN for a, a line for b: a deployed" "$A_PROXY_PORT"
expect_serving $APP "hello from 9" "DEPLOYCTL_TOKEN for a, a line for b: b deployed" "$B_PROXY_PORT"
assert_exit 3 dc --host "$A_URL" --host "$C_URL" status
assert_contains "$ERR" "$C_URL refused the token from DEPLOYCTL_TOKEN" "c without a line: names c and the variable"
assert_contains "$ERR" "add a line for it to $CREDENTIALS with \`deployctl login $C_URL\`" "c without a line: says to add one for c with login"
printf '%s %s\n' "$C_URL" "dpa_000000000000_$(printf 'A%.0s' $(seq 43))" >>"$CREDENTIALS"
assert_exit 3 dc --host "$C_URL" status
assert_contains "$ERR" "$C_URL refused the token for it in $CREDENTIALS" "a wrong line for c: names c and the file"
assert_not_contains "$ERR" "set DEPLOYCTL_TOKEN" "a wrong line for c: the variable would not help"
mv "$CREDENTIALS.all" "$CREDENTIALS"
unset DEPLOYCTL_TOKEN

log "all $CHECKS checks passed"
