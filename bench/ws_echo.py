#!/usr/bin/env python3
"""WebSocket echo load for bench/proxy (standard library only).

  ws_echo.py server PORT
      a WebSocket echo upstream on 127.0.0.1:PORT: answers the handshake with 101,
      then sends back every byte it gets (the frames as they come).
  ws_echo.py client PORT HOST CONNECTIONS SECONDS
      CONNECTIONS connections to 127.0.0.1:PORT (Host: HOST) each upgraded, then each
      sends a 32-byte binary frame and waits for it to come back, over and over, for
      SECONDS; prints the round trips per second of all the connections together.

The client's frames are not masked and the server echoes them as they are: neither proxy
looks inside the frames, and this keeps the Python ends cheap, so the proxy in the middle
weighs more in the figure (the two Python ends still share the cores with it).
"""
import asyncio
import base64
import hashlib
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
FRAME = b"\x82\x20" + b"x" * 32


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.head = b""
        self.upgraded = False

    def data_received(self, data):
        if self.upgraded:
            self.transport.write(data)
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        key = b""
        for line in self.head[:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        self.upgraded = True
        rest = self.head[end + 4:]
        if rest:
            self.transport.write(rest)


async def server(port):
    srv = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", port, backlog=1024)
    async with srv:
        await srv.serve_forever()


async def one(port, host, deadline, counts, i):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                 f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 f"\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise SystemExit(f"no 101 from port {port}: {head[:40]!r}")
    n = 0
    while time.monotonic() < deadline:
        writer.write(FRAME)
        await reader.readexactly(len(FRAME))
        n += 1
    counts[i] = n
    writer.close()


async def client(port, host, connections, seconds):
    counts = [0] * connections
    start = time.monotonic()
    deadline = start + seconds
    await asyncio.gather(*(one(port, host, deadline, counts, i) for i in range(connections)))
    print(f"{sum(counts) / (time.monotonic() - start):.0f}")


if sys.argv[1] == "server":
    asyncio.run(server(int(sys.argv[2])))
else:
    asyncio.run(client(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])))
