#!/usr/bin/python3
"""Reflow's exchange timed from an independent client (Debian's python3-websockets), for
server_bench: p50 of a `process` round trip (a Python actor that streams one output, then
answers) against this client's own `list` round trip on the same connection, interleaved
call by call so that both see the same load. The ratio is the server's cost of a call
beyond the transport and this client's own.

usage: server_bench_client.py WS_URL ACTOR_ID ROUNDS
Prints one line: "list_p50_us=N process_p50_us=N" (exit status 1 and the reason on stderr
when an answer is not as promised).
"""
import asyncio
import json
import statistics
import sys
import time

import websockets


async def main(url, actor, rounds):
    list_us, process_us = [], []
    async with websockets.connect(url, max_size=2**24) as ws:
        async def list_once(i):
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": f"l{i}", "method": "list",
                                      "params": {}}))
            r = json.loads(await ws.recv())
            if r.get("id") != f"l{i}" or actor not in r.get("result", {}).get("actors", []):
                raise SystemExit(f"list: {r}")

        async def process_once(i):
            await ws.send(json.dumps({
                "jsonrpc": "2.0", "id": f"p{i}", "method": "process",
                "params": {"actor_id": actor, "payload": {"input": i}, "config": {},
                           "state": {}, "timestamp": int(time.time() * 1000)}}))
            out = json.loads(await ws.recv())
            if out.get("method") != "script_output" or out["params"].get("data") != 2 * i:
                raise SystemExit(f"process: expected the output first: {out}")
            r = json.loads(await ws.recv())
            if r.get("id") != f"p{i}" or "result" not in r:
                raise SystemExit(f"process: {r}")

        for i in range(20):  # warm-up: the instance's worker starts on the first call
            await process_once(-i - 1)
            await list_once(-i - 1)
        for i in range(rounds):
            for name, once, into in (("list", list_once, list_us),
                                     ("process", process_once, process_us)):
                t = time.perf_counter_ns()
                await once(i)
                into.append((time.perf_counter_ns() - t) / 1000)
    print(f"list_p50_us={statistics.median(list_us):.0f} "
          f"process_p50_us={statistics.median(process_us):.0f}")


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    except SystemExit as e:
        print(e, file=sys.stderr)
        sys.exit(1)
