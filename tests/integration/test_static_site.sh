#!/usr/bin/env bash
# A [static] release is served by deploy-proxy straight from its files: types,
# validators, ranges, gzip variants, index files, the SPA fallback, no escape
# from the release directory; redeploy and rollback switch instantly.
source "$(dirname "$0")/lib.sh"
require_binaries
command -v gzip >/dev/null || { echo "skipped: gzip is not installed"; exit 77; }

start_agent
make_app_repo site
APP=site
cat >"$REPO/build.sh" <<'EOF'
set -e
v=$(cat VERSION)
rm -rf dist
mkdir -p dist/docs dist/assets
printf '<h1>site %s</h1>\n' "$v" >dist/index.html
printf 'console.log("v%s");\n' "$v" >dist/app.js
gzip -c dist/app.js >dist/app.js.gz
printf 'body { color: red }\n' >dist/style.css
printf 'docs %s\n' "$v" >dist/docs/index.html
printf '0123456789abcdefghij' >dist/assets/data.txt
ln -s /etc/passwd dist/passwd.txt
ln -s /etc dist/etc
EOF
cat >"$REPO/deploy.toml" <<EOF
app = "site"

[build]
command = "sh build.sh"

[static]
dir = "dist"
spa = true

[deploy]
drain = "200ms"

[targets.local]
hosts = ["$AGENT_URL"]
EOF
git -C "$REPO" add -A
git -C "$REPO" commit -q -m "A static site"

assert_exit 0 dctl deploy
assert_eq PRODUCTION "$(release_state $APP v1)" "v1 is PRODUCTION"
port=$(release_field $APP v1 port)
assert_eq 0 "${port:-0}" "a static release has no port"
assert_jq "$(cat "$DATA/proxy/routes.json")" \
    '.routes[0].static.root == "'"$(release_dir $APP v1)"'/dist" and .routes[0].static.spa == true and (.routes[0] | has("upstream") | not)' \
    "routes.json routes site.localhost to v1's dist/"

URL="http://127.0.0.1:$PROXY_PORT"
# req PATH [curl args...]: sets CODE, HEADERS (lower-cased names) and BODY.
req() {
    local path=$1
    shift
    : >"$TEST_TMP/h" >"$TEST_TMP/b"
    CODE=$(curl -s --path-as-is --max-time 5 -H "Host: site.localhost" -D "$TEST_TMP/h" \
        -o "$TEST_TMP/b" -w '%{http_code}' "$@" "$URL$path") || CODE=000
    HEADERS=$(tr -d '\r' <"$TEST_TMP/h" | sed 's/^\([^:]*\):/\L\1:/')
    BODY=$(tr -d '\0' <"$TEST_TMP/b")
}
header() { sed -n "s/^$1: //p" <<<"$HEADERS" | head -1; }

# --- files, types, index files ---------------------------------------------------
req /
assert_eq "200 <h1>site 1</h1>" "$CODE $BODY" "/ serves index.html"
assert_eq "text/html; charset=utf-8" "$(header content-type)" "index.html is text/html"
req /app.js
assert_eq 'console.log("v1");' "$BODY" "/app.js"
assert_eq "text/javascript; charset=utf-8" "$(header content-type)" "app.js is text/javascript"
assert_eq "Accept-Encoding" "$(header vary)" "app.js has a .gz variant: Vary: Accept-Encoding"
assert_eq "" "$(header content-encoding)" "no gzip without Accept-Encoding"
etag=$(header etag)
modified=$(header last-modified)
assert_match "$etag" '^"[0-9a-f]+-[0-9a-f]+"$' "ETag is a quoted size-mtime tag"
assert_match "$modified" 'GMT$' "Last-Modified is an HTTP date"
req /style.css
assert_eq "text/css; charset=utf-8" "$(header content-type)" "style.css is text/css"
req /docs/
assert_eq "200 docs 1" "$CODE $BODY" "/docs/ serves docs/index.html"
req "/docs?x=1"
assert_eq "301 /docs/?x=1" "$CODE $(header location)" "/docs redirects to /docs/"

# --- validators and ranges -------------------------------------------------------
req /app.js -H "If-None-Match: $etag"
assert_eq "304 " "$CODE $BODY" "If-None-Match with the ETag → 304, no body"
req /app.js -H 'If-None-Match: "something-else"'
assert_eq 200 "$CODE" "If-None-Match with another tag → 200"
req /app.js -H "If-Modified-Since: $modified"
assert_eq 304 "$CODE" "If-Modified-Since Last-Modified → 304"
req /assets/data.txt -H "Range: bytes=5-9"
assert_eq "206 56789" "$CODE $BODY" "Range bytes=5-9 → 206 with those bytes"
assert_eq "bytes 5-9/20" "$(header content-range)" "Content-Range of the 206"
req /assets/data.txt -H "Range: bytes=-3"
assert_eq "206 hij" "$CODE $BODY" "suffix Range bytes=-3"
req /assets/data.txt -H "Range: bytes=100-"
assert_eq "416 bytes */20" "$CODE $(header content-range)" "unsatisfiable Range → 416"

# --- gzip variant ----------------------------------------------------------------
req /app.js -H "Accept-Encoding: gzip"
assert_eq "gzip" "$(header content-encoding)" "Accept-Encoding: gzip gets the .gz file"
assert_eq 'console.log("v1");' "$(gzip -dc "$TEST_TMP/b")" "the .gz body decompresses to app.js"
req /app.js -H "Accept-Encoding: gzip;q=0"
assert_eq "" "$(header content-encoding)" "gzip;q=0 gets the plain file"

# --- SPA fallback, HEAD, methods -------------------------------------------------
req /settings/profile
assert_eq "200 <h1>site 1</h1>" "$CODE $BODY" "SPA: an unknown path without extension → index.html"
req /missing.js
assert_eq 404 "$CODE" "SPA: an unknown file with an extension → 404"
req /app.js -I
assert_eq 200 "$CODE" "HEAD → 200"
assert_eq 19 "$(header content-length)" "HEAD has the file's Content-Length"
raw_head() { # the raw answer to a HEAD request on a connection the proxy closes
    exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT"
    printf 'HEAD /app.js HTTP/1.1\r\nHost: site.localhost\r\nConnection: close\r\n\r\n' >&3
    timeout 5 cat <&3
    exec 3<&-
}
assert_not_contains "$(raw_head)" "console.log" "HEAD sends no body"
req /app.js -X POST -d x=1
assert_eq "405 GET, HEAD" "$CODE $(header allow)" "POST → 405 with Allow"

# --- nothing outside the release directory ---------------------------------------
for path in /../../../../etc/passwd /%2e%2e/%2e%2e/%2e%2e/etc/passwd \
    /docs%2F..%2F..%2F..%2Fetc%2Fpasswd '/..%5C..%5Cetc%5Cpasswd' /index.html%00.js; do
    req "$path"
    assert_eq 400 "$CODE" "$path → 400"
    assert_not_contains "$BODY" "root:" "$path does not leak /etc/passwd"
done
req /passwd.txt
assert_eq 404 "$CODE" "a symlink to /etc/passwd inside dist → 404"
assert_not_contains "$BODY" "root:" "the symlink does not leak /etc/passwd"
req /etc/passwd
assert_not_contains "$BODY" "root:" "a symlinked directory out of dist does not leak /etc/passwd"
assert_eq "200 <h1>site 1</h1>" "$CODE $BODY" "… it is an unknown path (SPA index)"

# --- keep-alive: several requests on one connection ------------------------------
run curl -s --max-time 5 -H "Host: site.localhost" "$URL/docs/" "$URL/docs/"
assert_eq "docs 1docs 1" "$(tr -d '\n' <<<"$OUT")" "two requests on one connection"

# --- redeploy and rollback -------------------------------------------------------
commit_change "$REPO" "Version 2" VERSION 2
assert_exit 0 dctl deploy
expect_serving $APP "<h1>site 2</h1>" "v2 served after the redeploy"
assert_eq 'console.log("v2");' "$(fetch $APP /app.js)" "v2's app.js"
assert_exit 0 dctl rollback
expect_serving $APP "<h1>site 1</h1>" "rollback: v1 served again"
assert_eq 'console.log("v1");' "$(fetch $APP /app.js)" "rollback: v1's app.js"
assert_eq PRODUCTION "$(release_state $APP v1)" "v1 PRODUCTION after the rollback"
assert_eq INACTIVE "$(release_state $APP v2)" "v2 INACTIVE after the rollback"

# --- a build without the static dir fails and v1 keeps serving -------------------
commit_change "$REPO" "Broken" build.sh "echo no dist"
assert_exit 1 dctl deploy
assert_contains "$ERR$OUT" 'static dir "dist" does not exist after the build' \
    "the failure says the static dir is missing"
expect_serving $APP "<h1>site 1</h1>" "the failed release did not disturb v1"

# --- static answers are logged and counted as proxied ones ---------------------------
req "/assets/data.txt?logged=1"
assert_eq 200 "$CODE" "a static file for the access log"
req "/assets/data.txt?logged=1" -I
assert_eq 200 "$CODE" "... and a HEAD of it"
ACCESS=$DATA/apps/$APP/logs/access.ndjson
# The GET: status 200, its 20 bytes and a header; the HEAD: 200, a header and no body.
logged() {
    jq -e -s '[.[] | select(.path == "/assets/data.txt?logged=1" and .instance == "static")] as $l
        | ($l | length) == 2 and $l[0].method == "GET" and $l[0].status == 200 and $l[0].bytes_out > 100
        and $l[1].method == "HEAD" and $l[1].status == 200 and $l[1].bytes_out > 80
        and $l[1].bytes_out == $l[0].bytes_out - 20' "$ACCESS" >/dev/null 2>&1
}
assert_true "the access log has each static answer's status and bytes (header and body)" wait_until 5 logged
log "$(grep -F '"/assets/data.txt?logged=1"' "$ACCESS" | tail -2)"

# --- an agent killed and restarted does not try to start a static release --------
kill_agent -9
expect_serving $APP "<h1>site 1</h1>" "agent down: the proxy still serves the site"
restart_agent
expect_serving $APP "<h1>site 1</h1>" "after an agent restart: still served"
assert_eq PRODUCTION "$(release_state $APP v1)" "after an agent restart: v1 still PRODUCTION"

log "all $CHECKS checks passed"
