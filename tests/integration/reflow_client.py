#!/usr/bin/python3
"""An independent client of `sandflow serve` (Debian's python3-websockets), replaying the
exchange of Reflow's host, then sending what a broken or hostile client would.

usage: reflow_client.py WS_URL EXAMPLES_ACTORS_DIR
The server must run with --max-message-bytes 1048576. Exit status 0 when every check
passes; each failed check is printed.
"""
import asyncio
import json
import sys
import time

import websockets

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


async def rpc(ws, req):
    await ws.send(json.dumps(req))
    return json.loads(await ws.recv())


async def reflow_exchange(url, actors):
    async with websockets.connect(url, max_size=2**24) as ws:
        r = await rpc(ws, {"jsonrpc": "2.0", "id": "list-1", "method": "list", "params": {}})
        check(r.get("id") == "list-1", f"list id: {r}")
        check("double" in r.get("result", {}).get("actors", []), f"list: {r}")

        r = await rpc(ws, {"jsonrpc": "2.0", "id": "load-1", "method": "load",
                           "params": {"file_path": actors + "/python/double.actor.py"}})
        check(r.get("id") == "load-1" and r["result"]["success"] is True, f"load: {r}")

        await ws.send(json.dumps({
            "jsonrpc": "2.0", "id": "process-1", "method": "process",
            "params": {"actor_id": "double", "payload": {"input": 21}, "config": {},
                       "state": {}, "timestamp": int(time.time() * 1000)}}))
        first = json.loads(await ws.recv())
        check(first.get("method") == "script_output" and "id" not in first,
              f"first message is a script_output notification: {first}")
        p = first.get("params", {})
        check(p.get("data") == 42 and p.get("port") == "output", f"output 42: {first}")
        check(isinstance(p.get("timestamp"), int), f"output has a timestamp: {first}")
        check(p.get("actor_id") == "double", f"output names the actor: {first}")
        second = json.loads(await ws.recv())
        check(second.get("id") == "process-1", f"then the response: {second}")
        check(second.get("result", {}).get("outputs") == {"status": "completed"},
              f"result.outputs: {second}")


async def hostile(url):
    async with websockets.connect(url, max_size=2**24) as ws:
        await ws.send("{nope")
        r = json.loads(await ws.recv())
        check(r["error"]["code"] == -32700 and r["id"] is None, f"parse error: {r}")

        await ws.send(b"\x00\x01binary")
        r = json.loads(await ws.recv())
        check(r["error"]["code"] == -32600, f"binary frame: {r}")

        r = await rpc(ws, {"jsonrpc": "2.0", "id": 5, "method": "process",
                           "params": {"actor_id": 5}})
        check(r["error"]["code"] == -32602 and r["id"] == 5, f"wrong type: {r}")

        r = await rpc(ws, {"jsonrpc": "2.0", "id": "u", "method": "frobnicate"})
        check(r["error"]["code"] == -32601 and r["id"] == "u", f"unknown method: {r}")

        r = await rpc(ws, {"jsonrpc": "2.0", "id": 6, "method": "process",
                           "params": {"actor_id": "nobody"}})
        check(r["error"]["code"] == -32001, f"actor not found: {r}")

        await ws.send("[" * 100 + "]" * 100)
        r = json.loads(await ws.recv())
        check(r["error"]["code"] == -32004 and r["error"]["data"]["limit"] == "kMaxRpcDepth",
              f"deep nesting: {r}")

        await ws.send(json.dumps([{"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                  {"jsonrpc": "2.0", "method": "ping"}, 3]))
        r = json.loads(await ws.recv())
        check(isinstance(r, list) and len(r) == 2, f"batch: {r}")

        r = await rpc(ws, {"jsonrpc": "2.0", "id": "still", "method": "ping"})
        check(r.get("result", {}).get("pong") is True, f"connection still serves: {r}")

    # 2 MB that deflate to a few KB: the limit applies to the decompressed size.
    async with websockets.connect(url, compression="deflate", max_size=2**24) as ws:
        names = [type(e).__name__ for e in ws.extensions]
        check(names == ["PerMessageDeflate"], f"permessage-deflate negotiated: {names}")
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping",
                                  "params": {"pad": "a" * 2_000_000}}))
        try:
            r = await ws.recv()
            check(False, f"an oversized message must close the connection, got {r[:200]}")
        except websockets.ConnectionClosed as e:
            check(e.code == 1009, f"oversized message closes with 1009, got {e.code}")


async def main():
    url, actors = sys.argv[1], sys.argv[2]
    await reflow_exchange(url, actors)
    await hostile(url)


asyncio.run(main())
sys.exit(1 if failures else 0)
