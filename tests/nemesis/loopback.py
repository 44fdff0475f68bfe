"""tests/nemesis/proxy.py on loopback, in a thread: no namespaces, no root. Each listener
forwards to one node's port; rules name listeners as their ``dst`` (inbound) and ``src``
(replies). Used where a test cuts some links of a LocalCluster (tests/test_catchup_e2e.py,
tests/test_mutex.py)."""

from __future__ import annotations

import asyncio
import functools
import threading

from tests.nemesis.proxy import Proxy, Rule


class LoopbackProxy(Proxy):
    """tests/nemesis/proxy.py on loopback: listener ``name -> (its port, the node port it
    forwards to)``. Rules name listeners as their ``dst`` (inbound) and ``src`` (replies)."""

    def __init__(self, listeners: dict[str, tuple[int, int]]) -> None:
        super().__init__(0, 0, 1)
        self.listeners = listeners
        self.loop = asyncio.new_event_loop()
        self.servers: list[asyncio.AbstractServer] = []
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _forward(self, name: str, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.listeners[name][1])
        except OSError:
            writer.close()
            return
        tasks = [asyncio.create_task(self.pump(reader, up_w, "peer", name)),
                 asyncio.create_task(self.pump(up_r, writer, name, "peer"))]
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        for w in (writer, up_w):
            w.close()

    async def _serve(self) -> None:
        for name, (port, _) in self.listeners.items():
            self.servers.append(await asyncio.start_server(
                functools.partial(self._forward, name), "127.0.0.1", port,
                reuse_address=True))

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(10)

    def cut(self, names: list[str]) -> None:
        rules = [Rule(src="*", dst=n, drop=1.0) for n in names]
        rules += [Rule(src=n, dst="*", drop=1.0) for n in names]
        self.loop.call_soon_threadsafe(setattr, self, "rules", rules)

    def heal(self) -> None:
        self.loop.call_soon_threadsafe(setattr, self, "rules", [])

    def stop(self) -> None:
        async def close() -> None:
            for s in self.servers:
                s.close()
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
