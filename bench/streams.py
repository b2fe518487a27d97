#!/usr/bin/env python3
"""Upload and server-sent-event load for bench/proxy (standard library only).

  streams.py sink PORT
      an HTTP/1.1 upstream on 127.0.0.1:PORT that reads every request body to its
      end (Content-Length or chunked) and discards it, then answers 200 "bytes=N"
      (N: the body bytes it read); keep-alive.
  streams.py sse PORT HOLD_SECONDS
      an HTTP/1.1 upstream on 127.0.0.1:PORT that answers every request with
      text/event-stream (chunked), writes its first event at once, then keeps the
      response open HOLD_SECONDS before it ends it.
  streams.py upload PORT HOST MIB
      one PUT of a MIB MiB body (Content-Length, zeros sent 1 MiB at a time) to
      127.0.0.1:PORT (Host: HOST); checks the answer names every byte; prints the
      MiB/s from the connection to the whole answer.
  streams.py sse-client PORT HOST SAMPLES
      SAMPLES requests, each on a connection of its own, to 127.0.0.1:PORT (Host:
      HOST); for each, the time from the request sent to the first complete "data:"
      event received (not the response header); prints the median in milliseconds.
"""
import socket
import socketserver
import statistics
import sys
import time

MIB = 1024 * 1024


def read_head(conn, pending):
    """Reads up to the end of a message head: (head bytes, what followed it), or None."""
    while b"\r\n\r\n" not in pending:
        data = conn.recv(65536)
        if not data:
            return None
        pending += data
    head, _, rest = pending.partition(b"\r\n\r\n")
    return head, rest


def fields(head):
    out = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        out[name.strip().lower()] = value.strip()
    return out


class Sink(socketserver.BaseRequestHandler):
    def handle(self):
        conn = self.request
        buf = bytearray(MIB)
        view = memoryview(buf)
        pending = b""
        while True:
            got = read_head(conn, pending)
            if got is None:
                return
            head, pending = got
            hdr = fields(head)
            total = 0
            if hdr.get(b"transfer-encoding", b"").lower() == b"chunked":
                reader = conn.makefile("rb", buffering=MIB)
                # pending may hold the start of the body: feed it first.
                stream = Chained(pending, reader)
                while True:
                    line = stream.readline()
                    if not line:
                        return  # the proxy gave up on the request
                    size = int(line.split(b";")[0], 16)
                    if size == 0:
                        while stream.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    left = size
                    while left:
                        n = len(stream.read(min(left, MIB)))
                        if not n:
                            return
                        left -= n
                    total += size
                    stream.readline()
                # What the buffered reader holds past the body is not kept:
                # the connection ends after this answer.
                body = b"bytes=%d\n" % total
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                return
            else:
                left = int(hdr.get(b"content-length", b"0"))
                take = min(left, len(pending))
                total += take
                left -= take
                pending = pending[take:]
                while left:
                    n = conn.recv_into(view, min(left, MIB))
                    if not n:
                        return
                    total += n
                    left -= n
            body = b"bytes=%d\n" % total
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))


class Chained:
    """A few bytes already received, then a buffered socket file."""

    def __init__(self, first, reader):
        self.first = first
        self.reader = reader

    def readline(self):
        if self.first:
            line, nl, rest = self.first.partition(b"\n")
            if nl:
                self.first = rest
                return line + nl
            self.first = b""
            return line + self.reader.readline()
        return self.reader.readline()

    def read(self, n):
        if self.first:
            out, self.first = self.first[:n], self.first[n:]
            return out
        return self.reader.read1(n)


class Sse(socketserver.BaseRequestHandler):
    hold = 2.0

    def handle(self):
        conn = self.request
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if read_head(conn, b"") is None:
            return
        event = b"data: hello\n\n"
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
            conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
            time.sleep(self.hold)
            conn.sendall(b"0\r\n\r\n")
        except OSError:
            pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def upload(port, host, mib):
    size = mib * MIB
    block = bytes(MIB)
    start = time.monotonic()
    conn = socket.create_connection(("127.0.0.1", port))
    conn.sendall(b"PUT /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n"
                 % (host.encode(), size))
    for _ in range(mib):
        conn.sendall(block)
    got = read_head(conn, b"")
    if got is None:
        sys.exit(f"upload through port {port}: no answer")
    head, rest = got
    length = int(fields(head).get(b"content-length", b"0"))
    while len(rest) < length:
        data = conn.recv(65536)
        if not data:
            break
        rest += data
    seconds = time.monotonic() - start
    conn.close()
    if not head.startswith(b"HTTP/1.1 200") or rest.strip() != b"bytes=%d" % size:
        sys.exit(f"upload through port {port}: {head.splitlines()[0]!r} {rest[:80]!r}")
    print(f"{mib / seconds:.1f}")


def sse_client(port, host, samples):
    request = b"GET /events HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n" % host.encode()
    times = []
    for _ in range(samples):
        conn = socket.create_connection(("127.0.0.1", port))
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.monotonic()
        conn.sendall(request)
        data = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                sys.exit(f"sse through port {port}: closed before an event: {data[:200]!r}")
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep and b"data: hello\n\n" in body:
                break
        times.append((time.monotonic() - start) * 1000)
        conn.close()
    print(f"{statistics.median(times):.3f}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "sink":
        Server(("127.0.0.1", int(sys.argv[2])), Sink).serve_forever()
    elif len(sys.argv) == 4 and sys.argv[1] == "sse":
        Sse.hold = float(sys.argv[3])
        Server(("127.0.0.1", int(sys.argv[2])), Sse).serve_forever()
    elif len(sys.argv) == 5 and sys.argv[1] == "upload":
        upload(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) == 5 and sys.argv[1] == "sse-client":
        sse_client(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
