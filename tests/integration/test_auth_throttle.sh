#!/usr/bin/env bash
# Failed logins on a real agent's TCP API: a flood of wrong tokens from one
# address is logged once per address and minute (the fail2ban filter matches
# the line), audited as one row with its count instead of a row per request,
# and throttled (429 + Retry-After) past 20 failures, a valid token from that
# address included, while another source address (127.0.0.2) is served.
# Stopping the agent writes the minute under way; restarting it lifts the block.
# An agent on [::1] logs IPv6 addresses that fail2ban matches.
source "$(dirname "$0")/lib.sh"
require_binaries
command -v fail2ban-regex >/dev/null || {
    log "SKIP: needs fail2ban-regex (Debian: apt-get install fail2ban)"
    exit 77
}
bound=0
curl -s -o /dev/null --max-time 2 --interface 127.0.0.2 "http://127.0.0.1:1/" 2>/dev/null || bound=$?
[[ $bound == 45 ]] && { log "SKIP: cannot bind a client socket to 127.0.0.2"; exit 77; }

FILTER=$REPO_ROOT/packaging/fail2ban/deploy-agent.conf
start_agent
ADMIN=$DEPLOYCTL_TOKEN
ID=$(cut -d_ -f2 <<<"$ADMIN")
SECRET=$(printf 'Z%.0s' $(seq 43))
WRONG="dpa_${ID}_$SECRET"
FIRST_LOG=$AGENT_LOG
make_app_repo hello
# unix_api PATH [CURL ARGS...]: the API on the unix socket (no token there).
unix_api() {
    local path=$1
    shift
    curl -s --max-time 5 --unix-socket "$AGENT_SOCKET" "$@" "http://agent$path"
}
failed_lines() { grep -c "auth: [0-9]* failed logins from $1 " "$2" || true; }
counts_of() { sed -nE "s/.*auth: ([0-9]+) failed logins from $1 .*/\1/p" "$2"; }

# --- a flood of wrong tokens from 127.0.0.1: 401 up to the threshold, then 429 ----
FLOOD=300
args=()
for _ in $(seq "$FLOOD"); do args+=(-o /dev/null "$AGENT_URL/v1/apps/hello/deployments"); done
curl -s --parallel --parallel-max 16 -X POST -H 'Content-Type: application/json' -d '{}' \
    -H "Authorization: Bearer $WRONG" -w '%{http_code}\n' "${args[@]}" >"$TEST_TMP/codes" 2>/dev/null
N401=$(grep -cx 401 "$TEST_TMP/codes" || true)
N429=$(grep -cx 429 "$TEST_TMP/codes" || true)
assert_eq "$FLOOD" "$((N401 + N429))" "the flood: every request answered 401 or 429"
assert_true "the flood: at least 20 answered 401 (got $N401)" test "$N401" -ge 20
assert_true "the flood: at most 20 + the parallel ones in flight answered 401 (got $N401)" test "$N401" -le 36
assert_true "the flood: the rest answered 429 (got $N429)" test "$N429" -ge $((FLOOD - 36))

run curl -s -D "$TEST_TMP/h" -o "$TEST_TMP/b" -w '%{http_code}' -H "Authorization: Bearer $WRONG" "$AGENT_URL/v1/apps"
assert_eq 429 "$OUT" "throttled: a wrong token from 127.0.0.1 is 429"
RETRY=$(sed -nE 's/^[Rr]etry-[Aa]fter: *([0-9]+).*/\1/p' "$TEST_TMP/h")
assert_true "throttled: Retry-After is 1 to 60 seconds (got '$RETRY')" test "${RETRY:-0}" -ge 1 -a "${RETRY:-0}" -le 60
assert_eq too_many_failed_logins "$(jq -r .error.code "$TEST_TMP/b")" "throttled: error code too_many_failed_logins"
assert_contains "$(jq -r .error.message "$TEST_TMP/b")" "127.0.0.1" "throttled: the message names the address"

# --- another address is served; a valid token from the throttled one is not ------
run curl -s -o "$TEST_TMP/b" -w '%{http_code}' --interface 127.0.0.2 -H "Authorization: Bearer $ADMIN" "$AGENT_URL/v1/apps"
assert_eq 200 "$OUT" "127.0.0.2 with a valid token is served"
run curl -s -o /dev/null -w '%{http_code}' --interface 127.0.0.2 -H "Authorization: Bearer $WRONG" "$AGENT_URL/v1/apps"
assert_eq 401 "$OUT" "127.0.0.2 with a wrong token: 401, not throttled"
run curl -s -o "$TEST_TMP/b" -w '%{http_code}' -H "Authorization: Bearer $ADMIN" "$AGENT_URL/v1/apps"
assert_eq 429 "$OUT" "127.0.0.1 with a valid token: still 429 while the block lasts"
assert_exit 3 dctl status
assert_contains "$ERR" "HTTP 429" "deployctl from the throttled address: says HTTP 429"
assert_contains "$ERR" "too many failed logins from 127.0.0.1" "deployctl from the throttled address: says why"
assert_eq 200 "$(unix_api /v1/apps -o /dev/null -w '%{http_code}')" "the unix socket is never throttled"

# --- the log: one line for the flood, the token's public part only -----------------
assert_eq 1 "$(failed_lines 127.0.0.1 "$AGENT_LOG")" "the log: one line for 127.0.0.1 (at most one a minute)"
LINE=$(grep "failed logins from 127.0.0.1 " "$AGENT_LOG")
assert_match "$LINE" "warn: auth: [0-9]+ failed logins from 127\.0\.0\.1 in the last [0-9]+s, last token name prefix dpa_${ID}…$" \
    "the log line's shape"
EARLY=$(counts_of 127.0.0.1 "$AGENT_LOG")
assert_eq 20 "$EARLY" "the log line counts the 20 failures that started the block"
assert_eq 0 "$(failed_lines 127.0.0.2 "$AGENT_LOG")" "127.0.0.2's one failure waits for the end of its minute"
assert_not_contains "$(cat "$AGENT_LOG")" "$SECRET" "the log never holds the secret"

# --- the audit: one row for the flood, none per request ----------------------------
unix_api "/v1/audit?limit=1000" >"$TEST_TMP/audit.json"
assert_eq 1 "$(jq '[.[] | select(.who == "address:127.0.0.1")] | length' "$TEST_TMP/audit.json")" \
    "the audit: one row for 127.0.0.1's failed logins"
assert_eq "$EARLY" "$(jq '.[] | select(.who == "address:127.0.0.1") | .count' "$TEST_TMP/audit.json")" \
    "the audit row's count is the log line's"
assert_eq "dpa_${ID}…" "$(jq -r '.[] | select(.who == "address:127.0.0.1") | .token_name' "$TEST_TMP/audit.json")" \
    "the audit row names the token's public prefix"
assert_eq 0 "$(jq '[.[] | select(.who != "address:127.0.0.1")] | length' "$TEST_TMP/audit.json")" \
    "the audit: no row per refused POST"

# --- fail2ban matches the line ------------------------------------------------------
run fail2ban-regex "$AGENT_LOG" "$FILTER"
assert_eq 0 "$RC" "fail2ban-regex: exit 0"
assert_match "$OUT" "Lines: [0-9]+ lines, 0 ignored, 1 matched" "fail2ban-regex: matches the one line"

# --- stopping writes the minute under way; a restart lifts the block ----------------
kill_agent -TERM
assert_eq 2 "$(failed_lines 127.0.0.1 "$FIRST_LOG")" "stopping: the rest of 127.0.0.1's minute is logged"
assert_eq 1 "$(failed_lines 127.0.0.2 "$FIRST_LOG")" "stopping: 127.0.0.2's one failure is logged"
assert_eq 1 "$(counts_of 127.0.0.2 "$FIRST_LOG")" "127.0.0.2: 1 failed login"
TOTAL=$(counts_of 127.0.0.1 "$FIRST_LOG" | awk '{ n += $1 } END { print n }')
# The flood, the Retry-After probe, the valid token, and deployctl's one request.
assert_eq $((FLOOD + 3)) "$TOTAL" "every refused request from 127.0.0.1 is counted once"
run fail2ban-regex "$FIRST_LOG" "$FILTER"
assert_match "$OUT" "Lines: [0-9]+ lines, 0 ignored, 3 matched" "fail2ban-regex: matches the three lines"

restart_agent
run curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ADMIN" "$AGENT_URL/v1/apps"
assert_eq 200 "$OUT" "a restart lifts the block: 127.0.0.1 is served again"
assert_exit 0 dctl audit --json --limit 1000
assert_eq "$TOTAL" "$(jq -s '[.[] | select(.who == "address:127.0.0.1") | .count] | add' <<<"$OUT")" \
    "deployctl audit --json: the rows of 127.0.0.1 add up to every refused request"
assert_eq 2 "$(jq -s '[.[] | select(.who == "address:127.0.0.1")] | length' <<<"$OUT")" \
    "deployctl audit --json: two rows for 127.0.0.1 (the block, and the minute stopped)"
assert_eq too_many_failed_logins "$(jq -rs '[.[] | select(.who == "address:127.0.0.1")][0].error' <<<"$OUT")" \
    "deployctl audit --json: the later row's last answer was 429"
assert_exit 0 dctl audit
assert_match "$OUT" "address:127\.0\.0\.1 \(dpa_${ID}…\) +$EARLY failed logins, last POST /v1/apps/hello/deployments +401 unauthorized" \
    "deployctl audit: the row of the block, with its count"
assert_match "$OUT" "address:127\.0\.0\.2 \(dpa_${ID}…\) +1 failed login, last GET /v1/apps" \
    "deployctl audit: 127.0.0.2's one failure"

# --- IPv6: an agent on [::1] with --failed-logins-per-minute 3 ----------------------
if ! ip -6 addr show dev lo 2>/dev/null | grep -q '::1/128'; then
    log "no IPv6 loopback here: the IPv6 line is checked by the unit tests only"
    exit 0
fi
kill_agent -TERM
V6_DIR=$TEST_TMP/v6
V6_PORT=$(free_port)
mkdir -p "$V6_DIR/data"
"$AGENT_BIN" serve --data-dir "$V6_DIR/data" --listen "[::1]:$V6_PORT" --proxy-listen "127.0.0.1:$(free_port)" \
    --engine process --proxy-bin "$PROXY_BIN" --socket "" --failed-logins-per-minute 3 \
    </dev/null >"$V6_DIR/agent.log" 2>&1 &
AGENT_PID=$!
disown "$AGENT_PID"
echo "$AGENT_PID" >>"$TEST_TMP/agent.pids"
IT_AGENT_LOGS+=("$V6_DIR/agent.log")
v6_up() { curl -fsS -g -o /dev/null --max-time 1 "http://[::1]:$V6_PORT/v1/health" 2>/dev/null; }
wait_until 10 v6_up || fail "the agent on [::1] answers /v1/health" "$(excerpt "$V6_DIR/agent.log")"
V6_TOKEN=$(<"$V6_DIR/data/admin.token")
codes=""
for _ in 1 2 3 4; do
    codes+="$(curl -s -g -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer ghp_notours' "http://[::1]:$V6_PORT/v1/apps") "
done
assert_eq "401 401 401 429 " "$codes" "[::1], --failed-logins-per-minute 3: the 4th wrong token is 429"
run curl -s -g -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $V6_TOKEN" "http://[::1]:$V6_PORT/v1/apps"
assert_eq 429 "$OUT" "[::1]: a valid token is refused while blocked"
assert_match "$(cat "$V6_DIR/agent.log")" "warn: auth: 3 failed logins from ::1 in the last [0-9]+s, last token name prefix ghp_…" \
    "[::1]: the line names the IPv6 address and only the foreign token's first characters"
assert_not_contains "$(cat "$V6_DIR/agent.log")" "notours" "[::1]: no more of the token than its prefix"
run fail2ban-regex "$V6_DIR/agent.log" "$FILTER"
assert_match "$OUT" "Lines: [0-9]+ lines, 0 ignored, 1 matched" "fail2ban-regex: matches the IPv6 line"
