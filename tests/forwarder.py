"""A plain TCP forwarder in front of each node, as a load balancer, an SSH tunnel or
``socat TCP-LISTEN:P,fork TCP:127.0.0.1:Q`` would be.

It accepts every connection first and only then connects to its node, passing bytes
both ways unchanged. While the node is down, a client's connection is therefore
accepted and closed at once, in the middle of ZeroMQ's handshake: the client's monitor
shows HANDSHAKE_FAILED_NO_DETAIL, not a refused connection. (tests/nemesis/proxy.py is
ZMTP-aware and bound to the nemesis network namespaces; this one knows nothing of either.)

One asyncio loop in a thread of the test process serves every forwarder; ``close()``
stops it and closes every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Sequence

START_TIMEOUT_S = 10.0
CHUNK_BYTES = 65536


class Forwarders:
    """One forwarder per target port, listening on a free loopback port (``ports[i]``
    forwards to ``targets[i]``). ``cut``: connections closed at once because their node
    was down."""

    def __init__(self, targets: Sequence[int], host: str = "127.0.0.1") -> None:
        self.host = host
        self.targets = list(targets)
        self.ports: list[int] = []
        self.accepted = 0
        self.cut = 0
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="forwarders", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S) or not self.ports:
            self.close()
            raise RuntimeError("the forwarders did not start")

    def __enter__(self) -> Forwarders:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT_S)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._ready.set()  # (a failure to start must not leave __init__ waiting)
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        servers = []
        try:
            for target in self.targets:
                handler = functools.partial(self._handle, target)
                servers.append(await asyncio.start_server(handler, self.host, 0))
            self.ports = [s.sockets[0].getsockname()[1] for s in servers]
            self._ready.set()
            await self._stop.wait()
        finally:
            for s in servers:
                s.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, target: int, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        up_w = None
        try:
            try:
                up_r, up_w = await asyncio.open_connection(self.host, target)
            except OSError:
                self.cut += 1  # the node is down: hang up on the client mid-handshake
                return
            pumps = [asyncio.create_task(_pump(reader, up_w)),
                     asyncio.create_task(_pump(up_r, writer))]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for p in pumps:
                    p.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            for w in (writer, up_w):
                if w is not None:
                    w.close()
            self._tasks.discard(task)


async def _pump(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """Copy bytes until either side closes (then the caller closes both)."""
    with contextlib.suppress(ConnectionError, OSError):
        while chunk := await r.read(CHUNK_BYTES):
            w.write(chunk)
            await w.drain()
