"""Separate hosts on one machine: one network namespace per node, joined by a bridge.

    zpnXXn0 (node0 10.77.0.10) --veth--+
    zpnXXn1 (node1 10.77.0.11) --veth--+-- br in zpnXXh (the "switch"; the fault proxy
    zpnXXn2 (node2 10.77.0.12) --veth--+      listens there on 10.77.0.20, .21, .22)
    zpnXXc  (proposers 10.77.0.30) -veth-+

Nothing is put in the host's own namespace: every address lives in a namespace created
here, so two runs on one machine (or another engineer's run) never collide; names carry
a per-run tag. Every namespace is deleted by :meth:`Topology.close`, which is also run at
interpreter exit and on SIGINT/SIGTERM (deleting a namespace removes its veths and bridge).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field

SUBNET = "10.77.0"
NODE_BASE, PROXY_BASE, CLIENT_HOST = 10, 20, 30

_open: list[Topology] = []


def _cleanup_all() -> None:
    for t in list(_open):
        t.close()


atexit.register(_cleanup_all)


def _on_signal(signum: int, _frame: object) -> None:
    # Unwind: the runner's finally blocks stop processes first, then remove namespaces
    # (and atexit removes any that are left).
    raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)


def install_signal_cleanup() -> None:
    """SIGINT/SIGTERM unwind through the runner's cleanup (call from the main thread)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here (None when they can)."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    probe = f"zpnprobe{os.getpid() % 100000}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def sweep_stale() -> list[str]:
    """Delete namespaces of earlier runs whose process is gone (killed with SIGKILL, when
    no cleanup could run). A run's namespaces are named after its pid: zpn<pid>..."""
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    gone = []
    for line in r.stdout.splitlines():
        m = re.match(r"zpn(\d+)[hcn]\d*\b", line)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            name = line.split()[0]
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            gone.append(name)
    return gone


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")


@dataclass
class Topology:
    n: int
    tag: str = field(default_factory=lambda: str(os.getpid()))
    namespaces: list[str] = field(default_factory=list)

    # ---- names and addresses

    @property
    def hub(self) -> str:
        return f"zpn{self.tag}h"

    @property
    def client_ns(self) -> str:
        return f"zpn{self.tag}c"

    def node_ns(self, i: int) -> str:
        return f"zpn{self.tag}n{i}"

    @staticmethod
    def node_addr(i: int) -> str:
        return f"{SUBNET}.{NODE_BASE + i}"

    @staticmethod
    def proxy_addr(i: int) -> str:
        return f"{SUBNET}.{PROXY_BASE + i}"

    def _hub_port(self, member: str) -> str:
        return f"zh{self.tag}{member}"[:15]

    # ---- life cycle

    def setup(self) -> Topology:
        sweep_stale()
        _open.append(self)
        try:
            self._add_ns(self.hub)
            _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.hub, "link", "set", "br0", "up")
            _ip("-n", self.hub, "link", "set", "lo", "up")
            for i in range(self.n):
                _ip("-n", self.hub, "addr", "add", f"{self.proxy_addr(i)}/24", "dev", "br0")
            for i in range(self.n):
                self._member(self.node_ns(i), f"n{i}", self.node_addr(i))
            self._member(self.client_ns, "c", f"{SUBNET}.{CLIENT_HOST}")
        except BaseException:
            self.close()
            raise
        return self

    def _add_ns(self, name: str) -> None:
        _ip("netns", "add", name)
        self.namespaces.append(name)

    def _member(self, ns: str, member: str, addr: str) -> None:
        self._add_ns(ns)
        hub_end = self._hub_port(member)
        _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", hub_end,
            "netns", self.hub)
        _ip("-n", self.hub, "link", "set", hub_end, "master", "br0")
        _ip("-n", self.hub, "link", "set", hub_end, "up")
        _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces.clear()
        if self in _open:
            _open.remove(self)

    # ---- faults

    def set_link(self, i: int, up: bool) -> None:
        """Take node i's cable out of the switch (both directions), or put it back."""
        _ip("-n", self.hub, "link", "set", self._hub_port(f"n{i}"), "up" if up else "down")

    def netem_available(self) -> bool:
        """Whether this kernel has netem (this project's CI machine has not)."""
        port = self._hub_port("c")
        r = subprocess.run(["tc", "-n", self.hub, "qdisc", "add", "dev", port, "root", "netem",
                            "delay", "1ms"], capture_output=True, text=True)
        if r.returncode == 0:
            subprocess.run(["tc", "-n", self.hub, "qdisc", "del", "dev", port, "root"],
                           capture_output=True)
        return r.returncode == 0

    def set_netem(self, i: int, spec: list[str] | None) -> None:
        """Packet faults on the bridge's port towards node i (netem ``spec``, e.g.
        ``["delay", "50ms", "20ms", "loss", "5%"]``); None removes them."""
        port = self._hub_port(f"n{i}")
        if spec is None:
            subprocess.run(["tc", "-n", self.hub, "qdisc", "del", "dev", port, "root"],
                           capture_output=True)
            return
        r = subprocess.run(["tc", "-n", self.hub, "qdisc", "replace", "dev", port, "root",
                            "netem", *spec], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"tc netem on {port}: {r.stderr.strip()}")

    def exec_prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]
