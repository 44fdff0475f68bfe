"""A fault-injecting TCP proxy that understands ZeroMQ's framing (ZMTP 3.x).

The kernel here has no netem, so message faults are made one level up: one proxy
listener per node (``proxy_addr(i):port`` forwards to ``node_addr(i):port``); every other
node and every proposer reaches node i through it. Per TCP connection and direction the
proxy

* passes the 64-byte greeting through verbatim, byte by byte as it arrives (each side
  sends part of it and waits for the other's, so holding it back would deadlock);
* then reads frames (flags byte, 1- or 8-byte size, body). Command frames (READY, PING)
  pass at once; message frames are gathered until the one without MORE, and the whole
  multipart message is then dropped, delayed, duplicated or reordered. Dropping a single
  frame out of a multipart message would corrupt the stream; whole messages never do.

Faults are rules on directed links ``src -> dst`` (``node0``, ``node1``, ``client``),
set through a control socket (a Unix socket, so the runner in another namespace reaches
it): one JSON object per line, ``{"op": "set", "rules": [...]}``, ``{"op": "clear"}``,
``{"op": "stats"}``; each answered with one JSON line.

    python -m tests.nemesis.proxy --control /tmp/x.sock --port 7000 --nodes 3 --seed 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import random
import struct
from collections import Counter
from dataclasses import asdict, dataclass

from tests.nemesis.netns import CLIENT_HOST, NODE_BASE, SUBNET, Topology

GREETING_BYTES = 64
MORE, LONG, COMMAND = 0x01, 0x02, 0x04


@dataclass
class Rule:
    """What happens to whole messages on the directed link src -> dst."""

    src: str = "*"
    dst: str = "*"
    drop: float = 0.0  # probability a message is lost (1.0: the link is cut one way)
    dup: float = 0.0  # probability a message is delivered twice
    delay_ms: tuple[float, float] = (0.0, 0.0)  # uniform extra latency, order kept
    reorder: float = 0.0  # probability a message gets an independent delay (overtaken)
    reorder_ms: float = 50.0

    def matches(self, src: str, dst: str) -> bool:
        return self.src in ("*", src) and self.dst in ("*", dst)


def peer_of(ip: str) -> str:
    """Who is behind a source address: node<j>, client, or the address itself."""
    if ip.startswith(SUBNET + "."):
        last = int(ip.rsplit(".", 1)[1])
        if last == CLIENT_HOST:
            return "client"
        if NODE_BASE <= last < NODE_BASE + 10:
            return f"node{last - NODE_BASE}"
    return ip


class Proxy:
    def __init__(self, nodes: int, port: int, seed: int) -> None:
        self.nodes = nodes
        self.port = port
        self.rng = random.Random(seed)
        self.rules: list[Rule] = []
        self.stats: Counter[str] = Counter()

    def rule_for(self, src: str, dst: str) -> Rule | None:
        for r in self.rules:
            if r.matches(src, dst):
                return r
        return None

    # ---- per connection

    async def handle(self, node: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        src = peer_of(writer.get_extra_info("peername")[0])
        dst = f"node{node}"
        self.stats["connections"] += 1
        try:
            up_r, up_w = await asyncio.open_connection(Topology.node_addr(node), self.port)
        except OSError:
            self.stats["connect_failed"] += 1
            writer.close()
            return
        tasks = [asyncio.create_task(self.pump(reader, up_w, src, dst)),
                 asyncio.create_task(self.pump(up_r, writer, dst, src))]
        _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        for w in (writer, up_w):
            w.close()

    async def pump(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, src: str,
                   dst: str) -> None:
        loop = asyncio.get_running_loop()
        last_release = 0.0  # FIFO delay: a delayed message never overtakes an earlier one
        try:
            passed = 0
            while passed < GREETING_BYTES:
                chunk = await r.read(GREETING_BYTES - passed)
                if not chunk:
                    return
                w.write(chunk)
                passed += len(chunk)
            parts: list[bytes] = []
            while True:
                head = await r.readexactly(1)
                flags = head[0]
                size_b = await r.readexactly(8 if flags & LONG else 1)
                size = struct.unpack(">Q", size_b)[0] if flags & LONG else size_b[0]
                frame = head + size_b + await r.readexactly(size)
                if flags & COMMAND:
                    w.write(frame)
                    self.stats["commands"] += 1
                    continue
                parts.append(frame)
                if flags & MORE:
                    continue
                msg, parts = b"".join(parts), []
                self.stats["messages"] += 1
                rule = self.rule_for(src, dst)
                if rule is None:
                    w.write(msg)
                    await w.drain()
                    continue
                if self.rng.random() < rule.drop:
                    self.stats["dropped"] += 1
                    continue
                copies = 2 if self.rng.random() < rule.dup else 1
                self.stats["duplicated"] += copies - 1
                for _ in range(copies):
                    now = loop.time()
                    if self.rng.random() < rule.reorder:
                        delay = self.rng.uniform(0, rule.reorder_ms) / 1000
                        self.stats["reordered"] += 1
                    else:
                        lo, hi = rule.delay_ms
                        release = max(now + self.rng.uniform(lo, hi) / 1000, last_release)
                        last_release = release
                        delay = release - now
                    if delay <= 0:
                        w.write(msg)
                    else:
                        self.stats["delayed"] += 1
                        loop.call_later(delay, _write_if_open, w, msg)
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return

    # ---- control

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                req = json.loads(line)
                op = req.get("op")
                if op == "set":
                    self.rules = [Rule(**{**r, "delay_ms": tuple(r.get("delay_ms", (0, 0)))})
                                  for r in req["rules"]]
                elif op == "clear":
                    self.rules = []
                reply = {"ok": True, "stats": dict(self.stats),
                         "rules": [asdict(r) for r in self.rules]}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError, TypeError):
            pass
        finally:
            writer.close()

    async def serve(self, control_path: str) -> None:
        servers = []
        for i in range(self.nodes):
            handler = functools.partial(self.handle, i)
            servers.append(await asyncio.start_server(handler, Topology.proxy_addr(i),
                                                      self.port, reuse_address=True))
        servers.append(await asyncio.start_unix_server(self.control, control_path))
        print("proxy ready", flush=True)
        await asyncio.gather(*(s.serve_forever() for s in servers))


def _write_if_open(w: asyncio.StreamWriter, data: bytes) -> None:
    if not w.is_closing():
        w.write(data)


class ProxyControl:
    """The runner's end of the control socket."""

    def __init__(self, path: str) -> None:
        import socket

        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.file = self.sock.makefile("rwb")

    def request(self, **req: object) -> dict:
        self.file.write(json.dumps(req).encode() + b"\n")
        self.file.flush()
        return json.loads(self.file.readline())

    def set(self, rules: list[dict]) -> dict:
        return self.request(op="set", rules=rules)

    def clear(self) -> dict:
        return self.request(op="clear")

    def stats(self) -> dict:
        return self.request(op="stats")["stats"]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
            self.sock.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--control", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--nodes", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(Proxy(a.nodes, a.port, a.seed).serve(a.control))


if __name__ == "__main__":
    main()
