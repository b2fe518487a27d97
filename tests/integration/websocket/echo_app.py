# The app of test_websocket.sh: a WebSocket echo server that prefixes each
# answer with its release, on 127.0.0.1:$PORT, also serving plain HTTP
# (/healthz for the agent's health check, / for curl, /nows: 404 to an upgrade).
# On SIGTERM it notes when it was stopped (MARKS/stop.RELEASE) and exits.
import asyncio
import http
import os
import signal
import time

import websockets

# The release id: each deploy of the test commits VERSION N, deployed as release vN.
with open("VERSION") as version:
    RELEASE = "v" + version.read().strip()
MARKS = os.environ.get("MARKS", "")


async def plain(path, headers):
    if path == "/healthz":
        return http.HTTPStatus.OK, [], b"ok\n"
    if path == "/nows":
        return http.HTTPStatus.NOT_FOUND, [], b"no websocket here\n"
    if "upgrade" not in headers.get("Connection", "").lower():
        return http.HTTPStatus.OK, [], f"hello from {RELEASE}\n".encode()
    return None  # the WebSocket handshake goes on


async def echo(ws, path=None):
    try:
        async for message in ws:
            await ws.send(f"{RELEASE} {message}")
    except websockets.ConnectionClosed:
        pass


def stopped(*_):
    if MARKS:
        with open(os.path.join(MARKS, f"stop.{RELEASE}"), "w") as f:
            f.write(f"{time.time()}\n")
    os._exit(0)  # the kernel closes every connection: the proxy sees their end


async def main():
    signal.signal(signal.SIGTERM, stopped)
    async with websockets.serve(echo, "127.0.0.1", int(os.environ["PORT"]),
                                process_request=plain, ping_interval=None):
        await asyncio.Future()


asyncio.run(main())
