# WebSocket clients of test_websocket.sh, through deploy-proxy. URI names the
# app's host (its Host header, the TLS server name); the TCP connection goes to
# 127.0.0.1:PORT. Modes:
#   echo URI PORT [CAFILE]   one round trip: prints the answer
#   status URI PORT          prints the HTTP status of a refused handshake
#   idle URI PORT            a round trip, 1.5 s quiet, another, then quiet: prints
#                            the seconds from the last message to the close, and
#                            the close code (1001: the proxy's going away; 1006: none)
#   hold URI PORT N DIR      N connections; each one that closes notes when, and
#                            reconnects once; DIR/stop ends it: prints a JSON report
import asyncio
import json
import os
import ssl
import sys
import time
import urllib.parse

import websockets


def connect(uri, port, cafile=None):
    tls = {}
    if uri.startswith("wss:"):  # verified for the URI's host name (SNI too), not 127.0.0.1
        tls = {"ssl": ssl.create_default_context(cafile=cafile),
               "server_hostname": urllib.parse.urlsplit(uri).hostname}
    return websockets.connect(uri, host="127.0.0.1", port=int(port), ping_interval=None,
                              open_timeout=10, close_timeout=2, **tls)


async def echo(uri, port, cafile=None):
    async with connect(uri, port, cafile) as ws:
        await ws.send("hello")
        print(await asyncio.wait_for(ws.recv(), 5))


async def status(uri, port):
    try:
        async with connect(uri, port):
            print("101")
    except websockets.InvalidStatusCode as e:
        print(e.status_code)


async def idle(uri, port):
    async with connect(uri, port) as ws:
        await ws.send("one")
        await ws.recv()
        await asyncio.sleep(1.5)
        await ws.send("two")
        await ws.recv()
        await asyncio.sleep(1.5)
        await ws.send("three")
        last = time.monotonic()
        await ws.recv()
        try:
            await asyncio.wait_for(ws.recv(), 15)
        except websockets.ConnectionClosed:
            pass
        print(f"{time.monotonic() - last:.2f} {ws.close_code}")


async def hold(uri, port, n, folder):
    report = {"opened": 0, "closed": [], "reconnects": [], "failures": []}

    async def one(i):
        try:
            ws = await connect(uri, port)
            await ws.send(str(i))
            release = (await asyncio.wait_for(ws.recv(), 10)).split()[0]
        except Exception as e:  # noqa: BLE001
            report["failures"].append(f"open {i}: {e!r}")
            return
        report["opened"] += 1
        await ws.wait_closed()
        closed_at = time.time()
        report["closed"].append({"release": release, "at": closed_at})
        try:
            async with connect(uri, port) as again:
                await again.send("again")
                answer = await asyncio.wait_for(again.recv(), 10)
                report["reconnects"].append({"from": release, "to": answer.split()[0]})
        except Exception as e:  # noqa: BLE001
            report["failures"].append(f"reconnect {i}: {e!r}")

    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(one(i)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    while report["opened"] + len(report["failures"]) < n:
        await asyncio.sleep(0.05)
    open(os.path.join(folder, "ready"), "w").close()
    while not os.path.exists(os.path.join(folder, "stop")):
        await asyncio.sleep(0.1)
    # Reconnects under way finish: each closed connection has reconnected or failed to
    # (a loaded machine takes a while for a thousand of them), for at most 20 s.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        retried = len(report["reconnects"]) + sum(
            f.startswith("reconnect") for f in report["failures"])
        if retried >= len(report["closed"]):
            break
        await asyncio.sleep(0.05)
    report["still_open"] = report["opened"] - len(report["closed"])
    print(json.dumps(report))
    os._exit(0)


mode, args = sys.argv[1], sys.argv[2:]
if mode == "hold":
    asyncio.run(hold(args[0], args[1], int(args[2]), args[3]))
else:
    asyncio.run({"echo": echo, "status": status, "idle": idle}[mode](*args))
