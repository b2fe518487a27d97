#!/usr/bin/env bash
# deploy-proxy streams request bodies (docs/api.md "Proxy routing table"): a
# 1 GiB upload reaches the app intact while the proxy's memory stays flat;
# a body over the route's max_body is refused with 413 (before a byte of it
# is read when its Content-Length says so, at the limit when chunked); a POST
# is never sent to the app twice, even over pooled connections the app closes
# at random; server-sent events reach the client one by one; an app that
# never answers gets 504 after read_timeout, with a log line naming it.
# deploy-proxy runs on its own with a routes.json written here and a Python
# upstream.
source "$(dirname "$0")/lib.sh"
[[ -x $PROXY_BIN ]] || fail "binary present" "expected an executable at $PROXY_BIN (build deploy-proxy first)"
for tool in python3 curl ss; do
    command -v "$tool" >/dev/null || {
        log "SKIP: needs $tool (Debian: apt-get install python3 curl iproute2)"
        exit 77
    }
done

W=$TEST_TMP/streams
mkdir -p "$W"

# The upstream, raw sockets (HTTP/1.1, keep-alive, Content-Length or chunked
# request bodies):
#   /upload        counts the body's bytes, answers "bytes=N"
#   /sse           a chunked text/event-stream: "data: N" for N in 0..4, 0.5 s apart
#   /hang          never answers
#   /post          notes "METHOD ID" (X-Id) in $SEEN, then at random answers and
#                  keeps the connection, answers and closes it soon after
#                  (an idle timeout), or closes it without answering
# Every request is noted in $SEEN as "METHOD PATH ID" once its header is read.
cat >"$W/upstream.py" <<'EOF'
import random, socket, sys, threading, time
port, seen = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()

def note(line):
    with lock, open(seen, "a") as f:
        f.write(line + "\n")

def answer(conn, body, extra=b""):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(body), extra) + body)

def serve(conn):
    f = conn.makefile("rb", buffering=1 << 20)
    try:
        while True:
            line = f.readline()
            if not line:
                return
            method, path, _ = line.decode().split(" ", 2)
            headers = {}
            while True:
                h = f.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, v = h.decode().split(":", 1)
                headers[k.strip().lower()] = v.strip()
            rid = headers.get("x-id", "-")
            note(f"{method} {path} {rid}")
            n = 0
            if headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size = int(f.readline().split(b";")[0], 16)
                    if size == 0:
                        while f.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    left = size
                    while left:
                        got = len(f.read(min(left, 1 << 20)))
                        if not got:
                            return
                        left -= got
                    n += size
                    f.readline()
            else:
                left = int(headers.get("content-length", "0"))
                while left:
                    got = len(f.read(min(left, 1 << 20)))
                    if not got:
                        return
                    left -= got
                    n += got
            if path == "/upload":
                answer(conn, b"bytes=%d\n" % n)
            elif path == "/sse":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
                for i in range(5):
                    ev = b"data: %d\n\n" % i
                    conn.sendall(b"%x\r\n%s\r\n" % (len(ev), ev))
                    time.sleep(0.5)
                conn.sendall(b"0\r\n\r\n")
            elif path == "/hang":
                time.sleep(30)
                return
            elif path == "/post":
                note(f"{method} {rid}")
                r = random.random()
                if r < 0.2:
                    return  # read, never answered: the connection closes
                answer(conn, f"id={rid}\n".encode())
                if r < 0.5:
                    time.sleep(random.random() * 0.02)
                    return  # an idle keep-alive connection closed by the app
            else:
                answer(conn, b"ok\n")
    except (ConnectionError, ValueError):
        return
    finally:
        try:
            conn.close()
        except OSError:
            pass

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(128)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF

UP=$(free_port)
python3 "$W/upstream.py" "$UP" "$W/seen" >"$W/upstream.log" 2>&1 &
wait_until 10 port_in_use "$UP" || fail "upstream listens" "$(excerpt "$W/upstream.log")"

PROXY_PORT=$(free_port)
printf 'probe-%s\n' "$RANDOM" >"$W/probe.key"
MIB=$((1024 * 1024))
UPLOAD_MIB=${UPLOAD_MIB:-1024} # the streamed upload: 1 GiB (smaller only to debug this script)
cat >"$W/routes.json" <<EOF
{"generation": 1, "routes": [
 {"host": "big.localhost", "app": "big", "release": "v1", "upstream": "127.0.0.1:$UP",
  "limits": {"max_body": 0}},
 {"host": "small.localhost", "app": "small", "release": "v1", "upstream": "127.0.0.1:$UP",
  "limits": {"max_body": $MIB}},
 {"host": "slow.localhost", "app": "slow", "release": "v1", "upstream": "127.0.0.1:$UP",
  "limits": {"read_timeout_ms": 1000, "connect_timeout_ms": 1000}}
]}
EOF
# The RSS bound: 30 MB. A sanitizer build starts far above it (shadow memory, its
# allocator's own) and keeps freed memory in a quarantine (256 MB by default): there the
# quarantine is off and the bound is 30 MB above the RSS before the upload, still far below
# what a proxy that kept any part of a 1 GiB body would reach.
asan=0
proxy_env=()
if grep -q __asan_init "$PROXY_BIN"; then
    asan=1
    proxy_env=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0:thread_local_quarantine_size_kb=0")
fi
${proxy_env[@]+"${proxy_env[@]}"} "$PROXY_BIN" --listen "127.0.0.1:$PROXY_PORT" --routes "$W/routes.json" --threads 2 \
    --probe-key "$W/probe.key" --log-level info >"$W/proxy.log" 2>&1 &
PROXY=$!
wait_until 10 port_in_use "$PROXY_PORT" || fail "deploy-proxy listens" "$(excerpt "$W/proxy.log")"
wait_until 10 grep -qx 1 "$W/applied" 2>/dev/null || fail "deploy-proxy applies the table" "$(excerpt "$W/proxy.log")"
URL=http://127.0.0.1:$PROXY_PORT

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$PROXY/status"; }
rss_limit_kb=30720
((asan)) && rss_limit_kb=$(($(rss_kb) + 30720))

# ------------------------------------------------ 1 GiB streamed upload
sample_rss() {
    : >"$W/rss"
    while [[ ! -f $W/upload.done ]]; do
        rss_kb >>"$W/rss"
        sleep 0.2
    done
}
sample_rss &
SAMPLER=$!
start=$(date +%s.%N)
out=$(head -c "$UPLOAD_MIB"M /dev/zero | curl -sS --max-time 120 -T - -H "Host: big.localhost" "$URL/upload")
end=$(date +%s.%N)
touch "$W/upload.done"
wait "$SAMPLER"
assert_eq "bytes=$((UPLOAD_MIB * MIB))" "$out" "a $UPLOAD_MIB MiB chunked upload (curl -T - from a pipe) reaches the app intact"
max_rss=$(sort -n "$W/rss" | tail -n1)
samples=$(wc -l <"$W/rss")
secs=$(awk -v s="$start" -v e="$end" 'BEGIN {printf "%.2f", e - s}')
log "$UPLOAD_MIB MiB chunked upload: ${secs}s ($(awk -v t="$secs" -v m="$UPLOAD_MIB" 'BEGIN {printf "%.0f", m / t}') MiB/s), proxy VmRSS max ${max_rss} kB over $samples samples"
[[ $samples -ge 1 && $max_rss -lt $rss_limit_kb ]] ||
    fail "deploy-proxy's RSS stays under $((rss_limit_kb / 1024)) MB during the upload" "max ${max_rss} kB; $(tr '\n' ' ' <"$W/rss")"
pass "deploy-proxy's RSS stayed under $((rss_limit_kb / 1024)) MB during it (max ${max_rss} kB)"

truncate -s 256M "$W/sparse"
out=$(curl -sS --max-time 60 -T "$W/sparse" -H "Host: big.localhost" "$URL/upload")
assert_eq "bytes=268435456" "$out" "a 256 MiB upload with Content-Length reaches the app intact"
rss_after=$(rss_kb)
[[ $rss_after -lt $rss_limit_kb ]] || fail "RSS after the uploads under $((rss_limit_kb / 1024)) MB" "$rss_after kB"
pass "RSS after both uploads: $rss_after kB"

# ------------------------------------------------ max_body
head -c $((2 * MIB)) /dev/zero >"$W/2m"
head -c $((MIB / 2)) /dev/zero >"$W/halfm"
: >"$W/seen"
code=$(curl -s -o "$W/body" -w '%{http_code}' --max-time 10 -H "Host: small.localhost" \
    -H "Expect: 100-continue" --data-binary @"$W/2m" "$URL/upload")
assert_eq 413 "$code" "Content-Length 2 MiB over max_body 1 MiB, Expect: 100-continue: 413"
assert_contains "$(cat "$W/body")" "max_body is 1048576 bytes" "... saying the limit"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H "Host: small.localhost" \
    -H "Expect:" --data-binary @"$W/2m" "$URL/upload")
assert_eq 413 "$code" "the same without Expect (the body sent at once): 413 all the same"
assert_eq "" "$(cat "$W/seen")" "... and the app saw neither request"
# From a file, not a pipe: curl stops reading its input once the 413 arrives, and a
# writer into the pipe (head) would then die of SIGPIPE.
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
    -H "Host: small.localhost" -T - "$URL/upload" <"$W/2m")
assert_eq 413 "$code" "a chunked 2 MiB body over max_body 1 MiB: 413 at the limit"
out=$(head -c $((MIB / 2)) /dev/zero | curl -sS --max-time 10 -H "Host: small.localhost" -T - "$URL/upload")
assert_eq "bytes=524288" "$out" "a chunked 512 KiB body under max_body: passed"
out=$(curl -sS --max-time 10 -H "Host: small.localhost" --data-binary @"$W/halfm" "$URL/upload")
assert_eq "bytes=524288" "$out" "a 512 KiB body with Content-Length under max_body (100-continue): passed"
assert_contains "$(cat "$W/proxy.log")" "413 for a 2097152-byte body over max_body 1048576" "the 413 is logged"

# ------------------------------------------------ server-sent events
cat >"$W/sse_client.py" <<'EOF'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
t0 = time.monotonic()
s.sendall(b"GET /sse HTTP/1.1\r\nHost: big.localhost\r\nConnection: close\r\n\r\n")
data, stamps = b"", {}
while True:
    part = s.recv(65536)
    if not part:
        break
    data += part
    for i in range(5):
        if i not in stamps and b"data: %d\n" % i in data:
            stamps[i] = time.monotonic() - t0
end = time.monotonic() - t0
print(" ".join("%.2f" % stamps.get(i, -1) for i in range(5)), "%.2f" % end)
EOF
read -r e0 e1 e2 e3 e4 total < <(python3 "$W/sse_client.py" "$PROXY_PORT")
log "SSE: events at $e0 $e1 $e2 $e3 $e4 s, response ended at $total s"
assert_true "SSE: the first event arrives at once (${e0}s), long before the response ends (${total}s)" \
    awk -v a="$e0" -v b="$total" 'BEGIN {exit !(a >= 0 && a < 0.4 && b >= 1.9)}'
assert_true "SSE: the next ones 0.5 s apart (${e1}s, ${e2}s), each as it is sent" \
    awk -v a="$e1" -v b="$e2" 'BEGIN {exit !(a >= 0.3 && a < 0.9 && b >= 0.8 && b < 1.4)}'

# ------------------------------------------------ POST never twice
cat >"$W/posts.py" <<'EOF'
import http.client, sys, collections
port, n = int(sys.argv[1]), int(sys.argv[2])
codes = collections.Counter()
conn = None
for i in range(n):
    for method in ("POST", "GET"):
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            body = b"x" * 100 if method == "POST" else None
            conn.request(method, "/post", body=body,
                         headers={"Host": "big.localhost", "X-Id": f"{method}-{i}"})
            r = conn.getresponse()
            r.read()
            codes[f"{method} {r.status}"] += 1
            if r.will_close:
                conn.close(); conn = None
        except Exception as e:
            codes[f"{method} {type(e).__name__}"] += 1
            conn.close(); conn = None
print(" ".join(f"{k}={v}" for k, v in sorted(codes.items())))
EOF
: >"$W/seen"
codes=$(python3 "$W/posts.py" "$PROXY_PORT" 150)
log "150 POSTs and 150 GETs, one client connection, app closing connections at random: $codes"
posts_seen=$(grep -c '^POST POST-' "$W/seen" || true)
dups=$(grep '^POST POST-' "$W/seen" | sort | uniq -d | head -n3)
assert_eq "" "$dups" "no POST id reached the app twice ($posts_seen POSTs reached it)"
assert_match "$codes" "POST 200=[0-9]+" "... most POSTs were answered"
assert_match "$codes" "GET 200=[0-9]+" "... and GETs"
[[ $posts_seen -ge 150 ]] || fail "every POST reached the app once" "$posts_seen of 150: $codes"
pass "every POST reached the app ($posts_seen): none was lost to a connection already closed"
get_retries=$(grep '^GET GET-' "$W/seen" | sort | uniq -d | wc -l)
log "GET ids the app saw more than once (retried, allowed): $get_retries"

# ------------------------------------------------ read_timeout: 504
start=$(date +%s.%N)
code=$(curl -s -o "$W/body" -w '%{http_code}' --max-time 10 -H "Host: slow.localhost" "$URL/hang")
secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.2f", e - s}')
assert_eq 504 "$code" "an app that never answers: 504"
assert_true "... after read_timeout 1 s (${secs}s)" awk -v t="$secs" 'BEGIN {exit !(t >= 0.9 && t < 3)}'
assert_contains "$(cat "$W/proxy.log")" "slow (v1): 504: upstream 127.0.0.1:$UP did not answer within read_timeout 1000ms" \
    "the log line names the app, the upstream and the timeout"
assert_eq 1 "$(grep -c "GET /hang" "$W/seen")" "... and the request was not retried"

# Rate limit: 12 at once, then one more a second later.
for i in $(seq 12); do
    curl -s -o /dev/null --max-time 10 -H "Host: slow.localhost" "$URL/hang" &
done
wait_until 10 bash -c "[[ \$(grep -c 'slow (v1): 504' '$W/proxy.log') -ge 6 ]]" || true
sleep 1.5
curl -s -o /dev/null --max-time 10 -H "Host: slow.localhost" "$URL/hang"
lines=$(grep -c 'slow (v1): 504' "$W/proxy.log")
[[ $lines -le 12 ]] || fail "504 log lines are rate-limited" "$lines lines for 14 504s"
pass "504 log lines rate-limited: $lines lines for 14 of them"
assert_contains "$(cat "$W/proxy.log")" "more 502/504 lines suppressed" "... the rest counted in a \"suppressed\" line"

# ------------------------------------------------ connect refused: 502
DEAD=$(free_port)
cat >"$W/routes.json.tmp" <<EOF
{"generation": 2, "routes": [
 {"host": "slow.localhost", "app": "slow", "release": "v1", "upstream": "127.0.0.1:$DEAD",
  "limits": {"read_timeout_ms": 1000, "connect_timeout_ms": 1000}}
]}
EOF
mv "$W/routes.json.tmp" "$W/routes.json"
kill -HUP "$PROXY"
wait_until 10 grep -qx 2 "$W/applied" || fail "generation 2 applied" "$(excerpt "$W/proxy.log")"
assert_eq 502 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H "Host: slow.localhost" "$URL/")" \
    "an app whose port refuses connections: 502"
assert_contains "$(cat "$W/proxy.log")" "slow (v1): 502: cannot connect to 127.0.0.1:$DEAD" "the log line names the app and the upstream"
