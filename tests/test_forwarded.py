"""Nodes behind plain TCP forwarders (tests/forwarder.py): a forwarder accepts a
connection and closes it at once while its node is down, so the client sees handshakes
closed without detail. That is a node down, never a refusal, with CURVE on or off; a
key the nodes refuse is still refused at once.

Real node processes on free loopback ports; the client runs in this process (or as the
CLI) and reaches the nodes only through the forwarders."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
import zmq

from tests.forwarder import Forwarders
from tests.harness import Cluster
from zpaxos.client import Client, load_config
from zpaxos.lab.launcher import NodeStartError, child_env, write_config, zpaxos_cmd
from zpaxos.runtime.client import options_from
from zpaxos.runtime.curve import HandshakeWatch
from zpaxos.runtime.security import keygen

pytestmark = pytest.mark.e2e

PROPOSALS = 160
IN_FLIGHT = 16
KILL_AFTER = 32  # outcomes before two nodes are killed: the stream is well under way
DOWN_S = 2.0  # how long the two nodes stay down (a majority: nothing can be decided)
STREAM_TIMEOUT_S = 60.0  # each proposal's deadline: far longer than the outage
HANDSHAKE_WAIT_S = 10.0  # the most a refusal may take to show on loopback (it takes ms)


def client_config(c: Cluster, fw: Forwarders, secure: bool) -> Path:
    """The cluster file a client uses: every node's endpoint is its forwarder."""
    return write_config(c.dir / "via-forwarders.ini", [("127.0.0.1", p) for p in fw.ports],
                        secure=secure)


@pytest.mark.parametrize("secure", [False, True], ids=["plaintext", "curve"])
def test_a_stream_through_forwarders_outlives_a_majority_down(tmp_path, monkeypatch, secure):
    """kill -9 two of three nodes mid-stream and start them again 2 s later: every
    proposal is decided, none is abandoned as refused."""
    c = Cluster(tmp_path, secure=secure)
    monkeypatch.chdir(tmp_path)  # the config's key paths are relative to its directory
    errors: list[Exception] = []  # a restart that failed, in the timer thread

    def start_again() -> None:
        try:
            for i in (1, 2):
                c.start(i)
        except (NodeStartError, RuntimeError, OSError) as e:  # told by the test, not lost
            errors.append(e)

    restart = threading.Timer(DOWN_S, start_again)
    try:
        c.start_all()
        with Forwarders(c.ports) as fw:
            cluster = load_config(client_config(c, fw, secure))
            opts = options_from(cluster.proposer, timeout_s=STREAM_TIMEOUT_S)
            items = [(f"k{i}", f"v{i}") for i in range(PROPOSALS)]
            chosen: dict[int, bytes | None] = {}
            cut_before = None  # the forwarders' count of cut connections at the kill
            with Client(cluster) as client:
                for index, outcome, _ in client.stream(items, IN_FLIGHT, opts):
                    chosen[index] = outcome.chosen
                    if len(chosen) == KILL_AFTER:
                        c.kill(1)
                        c.kill(2)
                        cut_before = fw.cut
                        restart.start()
            restart.join()
            assert not errors, errors
            assert chosen == {i: f"v{i}".encode() for i in range(PROPOSALS)}
            # The outage was seen through the forwarders: connections accepted for a
            # node that was down, then closed during the client's handshake.
            assert cut_before is not None and fw.cut > cut_before
    finally:
        restart.cancel()
        restart.join()
        c.stop_all()


def test_an_unknown_key_through_forwarders_is_still_refused_at_once(tmp_path):
    c = Cluster(tmp_path, secure=True)
    try:
        c.start_all()
        keygen(tmp_path / "other", "mallory")
        with Forwarders(c.ports) as fw:
            config = client_config(c, fw, secure=True)
            started = time.monotonic()
            r = subprocess.run(
                zpaxos_cmd("propose", "Forged", "--key", "k1", "--timeout", "30",
                           "--config", str(config),
                           "--client-key", str(tmp_path / "other/mallory.key_secret")),
                cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=60)
            took = time.monotonic() - started
        assert r.returncode == 1, r.stderr
        assert r.stderr.startswith("zpaxos propose: error: cannot propose: node"), r.stderr
        assert "refused our key" in r.stderr and r.stderr.count("\n") == 1, r.stderr
        assert took < 10  # told by the handshake, not by the 30 s deadline
    finally:
        c.stop_all()


@pytest.mark.parametrize("client_curve", [False, True], ids=["plain-client", "curve-client"])
def test_curve_on_one_side_only_is_refused_with_the_true_reason(client_curve):
    """Connected directly, ZeroMQ names a mechanism mismatch on the client's side too
    (HANDSHAKE_FAILED_PROTOCOL, ZMTP_MECHANISM_MISMATCH) and never retries: a refusal,
    told as it is. (Behind a forwarder the client may see only the closed handshake.)"""
    ctx: zmq.Context = zmq.Context()
    try:
        router = ctx.socket(zmq.ROUTER)
        dealer = ctx.socket(zmq.DEALER)
        server_public, server_secret = zmq.curve_keypair()
        if client_curve:
            dealer.curve_serverkey = server_public
            dealer.curve_publickey, dealer.curve_secretkey = zmq.curve_keypair()
        else:
            router.curve_server = True
            router.curve_publickey, router.curve_secretkey = server_public, server_secret
        port = router.bind_to_random_port("tcp://127.0.0.1")
        watch = HandshakeWatch({0: dealer}, curve=client_curve)
        dealer.connect(f"tcp://127.0.0.1:{port}")
        [monitor] = watch.monitors
        deadline = time.monotonic() + HANDSHAKE_WAIT_S
        while not watch.refused and time.monotonic() < deadline:
            monitor.poll(int((deadline - time.monotonic()) * 1000) + 1)
            watch.handle(monitor)
        watch.close({0: dealer})
    finally:
        ctx.destroy(linger=0)
    side = ("the node runs without CURVE and this client with it ([security] curve differs)"
            if client_curve else
            "the node runs CURVE and this client does not (no [security] curve = true here)")
    assert watch.refused == {0: f"failed the security handshake: {side}"}
