#!/usr/bin/env python3
"""A git server over HTTP that asks for a token, for test_webhooks.sh: git's own
`git http-backend` (smart HTTP) run as a CGI program behind HTTP Basic authentication.

Usage: git_http_auth.py PORT PROJECT_ROOT USER TOKEN
Every request without "Authorization: Basic base64(USER:TOKEN)" is answered 401 with
WWW-Authenticate; the others go to git http-backend. Each request's user (or "-") is
printed to stdout, one per line, so the test can see what was sent.
"""
import base64
import http.server
import os
import subprocess
import sys

PORT, ROOT, USER, TOKEN = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
EXPECTED = "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def serve(self):
        given = self.headers.get("Authorization", "")
        print(given.split(" ")[0] if given else "-", flush=True)
        data = self.body()
        if given != EXPECTED:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        env = dict(os.environ, GIT_PROJECT_ROOT=ROOT, GIT_HTTP_EXPORT_ALL="1",
                   REQUEST_METHOD=self.command, PATH_INFO=path, QUERY_STRING=query,
                   CONTENT_TYPE=self.headers.get("Content-Type", ""),
                   CONTENT_LENGTH=str(len(data)), REMOTE_USER=USER, REMOTE_ADDR="127.0.0.1",
                   GIT_PROTOCOL=self.headers.get("Git-Protocol", ""))
        out = subprocess.run(["git", "http-backend"], input=data, env=env,
                             capture_output=True).stdout
        head, _, rest = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split(" ")[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        self.wfile.write(rest)

    do_GET = serve
    do_POST = serve


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
