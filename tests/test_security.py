"""CURVE: only listed keys speak Paxos, every refusal is visible, forged messages change
nothing, and an authorized client's Decide is checked before it is believed.

Real node processes with CURVE on, on free loopback ports; outsiders are raw ZeroMQ
sockets and raw TCP connections made here."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import pytest
import zmq

from tests.harness import Cluster
from zpaxos.lab.launcher import Result, child_env, zpaxos_cmd
from zpaxos.protocol.messages import Ballot, Decide, Prepare
from zpaxos.runtime import codec
from zpaxos.runtime.security import keygen

pytestmark = pytest.mark.e2e


def run(cwd: Path, *args: str, stdin: str | None = None) -> Result:
    p = subprocess.run(zpaxos_cmd(*args), cwd=cwd, env=child_env(), capture_output=True,
                       text=True, timeout=60, input=stdin)
    return Result(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def secure(tmp_path):
    c = Cluster(tmp_path, secure=True)
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()


def statuses(c: Cluster) -> list[dict]:
    r = c.run("status", "--json")
    assert r.code == 0, r.err
    return json.loads(r.out)["nodes"]


def db_keys(c: Cluster) -> list[set[str]]:
    """Every key each node's database holds: read after the nodes stop (a running node
    holds its database exclusively)."""
    c.stop_all()
    out = []
    for i in range(c.n):
        db = sqlite3.connect(f"file:{c.dir}/data/node{i}/state.db?mode=ro", uri=True)
        try:
            out.append({r[0] for r in db.execute("SELECT key FROM acceptor")})
        finally:
            db.close()  # a read lock left behind would keep the node from restarting
    return out


def variant(c: Cluster, name: str, edit) -> Path:
    path = c.dir / name
    path.write_text(edit((c.dir / "cluster.ini").read_text()))
    return path


# ---------------------------------------------------------------- keys and config


def test_keygen_writes_private_secrets_and_never_overwrites(tmp_path):
    r = run(tmp_path, "keygen", "keys", "--name", "node0", "--name", "alice")
    assert r.code == 0, r.err
    for name in ("node0", "alice"):
        mode = stat.S_IMODE((tmp_path / "keys" / f"{name}.key_secret").stat().st_mode)
        assert mode == 0o600
        assert (tmp_path / "keys" / f"{name}.key").read_text().count("public-key") == 1
    before = (tmp_path / "keys" / "alice.key_secret").read_bytes()
    r = run(tmp_path, "keygen", "keys", "--name", "alice")
    assert r.code == 2 and r.err.strip().endswith("already exists; keeping it (use --force to "
                                                  "replace it)")
    assert (tmp_path / "keys" / "alice.key_secret").read_bytes() == before
    assert run(tmp_path, "keygen", "keys", "--name", "alice", "--force").code == 0
    assert (tmp_path / "keys" / "alice.key_secret").read_bytes() != before


def test_keygen_makes_every_key_a_config_names(tmp_path):
    config = Path(__file__).parents[1] / "configs" / "cluster-secure.ini"
    r = run(tmp_path, "keygen", "--config", str(config))
    assert r.code == 0, r.err
    names = sorted(p.name for p in (tmp_path / "keys").rglob("*.key_secret"))
    assert names == ["lab.key_secret", "node0.key_secret", "node1.key_secret",
                     "node2.key_secret"]
    again = run(tmp_path, "keygen", "--config", str(config))
    assert again.code == 0 and "every key exists already" in again.out


@pytest.mark.parametrize("edit,expected", [
    (lambda t: t.replace("keys/node1.key\n", "keys/nope.key\n"),
     "[node.1] public_key: keys/nope.key: key file not found"),
    (lambda t: t.replace("authorized_clients = keys/clients", "authorized_clients = keys/x"),
     "[security] authorized_clients: keys/x: authorized clients directory not found"),
    (lambda t: t.replace("curve = true", "curve = maybe"),
     "[security] curve: 'maybe' is not true or false"),
], ids=["missing-public", "missing-clients-dir", "bad-flag"])
def test_bad_keys_are_one_line_and_exit_2(tmp_path, edit, expected):
    c = Cluster(tmp_path, secure=True)
    path = variant(c, "bad.ini", edit)
    r = run(tmp_path, "status", "--config", str(path))
    assert r.code == 2 and r.err.count("\n") == 1, r.err
    assert expected in r.err and "Traceback" not in r.err


def test_malformed_and_world_readable_secrets_are_refused(tmp_path):
    c = Cluster(tmp_path, secure=True)
    (tmp_path / "keys" / "node0.key").write_text("public-key = \"tooshort\"\n")
    r = run(tmp_path, "status", "--config", str(c.config))
    assert r.code == 2 and "[node.0] public_key: keys/node0.key: not a ZeroMQ public key" in r.err
    (tmp_path / "b").mkdir()
    c2 = Cluster(tmp_path / "b", secure=True)
    secret = tmp_path / "b" / "keys" / "clients" / "lab.key_secret"
    secret.chmod(0o644)
    r = run(tmp_path / "b", "status", "--config", str(c2.config))
    assert r.code == 2 and r.err.count("\n") == 1
    assert "secret key is readable by others (mode 644); run: chmod 600" in r.err
    (tmp_path / "b" / "keys" / "node1.key_secret").chmod(0o640)  # a node's own secret
    node = run(tmp_path / "b", "node", "1", "--config", str(c2.config))
    assert node.code == 2 and "[node.1] secret_key:" in node.err and "mode 640" in node.err


# ---------------------------------------------------------------- who gets in


def test_an_authorized_client_works_as_before_and_every_node_learns(secure):
    r = secure.propose("Value_A", "--json")
    assert r.code == 0 and r.json["chosen"] == "Value_A", r.err
    # The proposer's Decide is a client's claim: each node checks it with its peers
    # (CHECK / CHECKED) before recording the value.
    secure.wait_for(lambda: all(n["keys"].get("CISC5597", {}).get("chosen") == "Value_A"
                                for n in statuses(secure)), "every node learned Value_A")


@pytest.mark.parametrize("who", ["unknown-key", "no-key"])
def test_a_refused_proposer_fails_fast_and_changes_nothing(secure, who):
    c = secure
    if who == "unknown-key":
        keygen(c.dir / "other", "mallory")
        args = ["--config", str(c.config), "--client-key", str(c.dir / "other/mallory.key_secret")]
        why = "refused our key"
    else:
        plain = variant(c, "plain.ini", lambda t: t.split("[security]")[0].replace(
            "public_key", "; public_key").replace("secret_key", "; secret_key"))
        args = ["--config", str(plain)]
        why = "failed the security handshake: the node runs CURVE and this client does not"
    started = time.monotonic()
    r = run(c.dir, "propose", "Forged", "--key", "k1", "--timeout", "30", *args)
    took = time.monotonic() - started
    assert r.code == 1 and r.err.startswith("zpaxos propose: error: cannot propose: node"), r.err
    assert why in r.err and r.err.count("\n") == 1
    assert took < 10  # the handshake told it; it did not wait out the 30 s deadline
    nothing_changed(c, [0, 1, 2], plaintext=who == "no-key")


CLOSED = ("handshake closed, not reachable (down behind a proxy? is CURVE configured the same "
          "on both sides?)")


def test_a_wrong_server_key_is_a_node_not_reachable_with_a_hint(secure):
    """A CURVE hello made with the wrong server key is dropped by the node without a
    word: the client sees the handshake closed, just as behind a forwarder whose node is
    down. So the nodes count as not reachable (never refused: the client keeps trying),
    and the failure says what the closed handshake may mean."""
    c = secure
    wrong = variant(c, "wrong.ini", lambda t: t.replace(
        "public_key = keys/node0.key", "public_key = keys/node2.key").replace(
        "public_key = keys/node1.key", "public_key = keys/node2.key"))
    r = run(c.dir, "propose", "Forged", "--key", "k1", "--timeout", "2", "-q",
            "--config", str(wrong))
    assert r.code == 1 and "cannot propose" not in r.err, r.err
    assert r.err.startswith("no value chosen for k1: ") and r.err.count("\n") == 1, r.err
    assert r.err.rstrip().endswith(f"; no reply from node0, node1; node0, node1: {CLOSED}")
    st = run(c.dir, "status", "--json", "--timeout", "2", "--config", str(wrong))
    errors = [n["error"] for n in json.loads(st.out)["nodes"]]
    assert errors == [CLOSED, CLOSED, None], st.err  # node2 answers
    nothing_changed(c, [0, 1])  # node2's key is right: it answers (a minority: no decision)


def nothing_changed(c: Cluster, refusers: list[int], plaintext: bool = False) -> None:
    """The refusing nodes hold nothing of k1, counted and logged the refusals, and no
    node has k1 chosen.

    ``plaintext``: the peer ran without CURVE. Which side sees the mismatch first is a race
    in libzmq: when the node does, it refuses the peer (counted, logged); when the peer
    does, it hangs up, and the node sees only a handshake closed (counted as such, as a
    health check is, never logged as a refusal)."""
    nodes = statuses(c)
    assert all("k1" not in nodes[i]["keys"] for i in refusers)
    assert all(n["keys"].get("k1", {}).get("chosen") is None for n in nodes)
    counted = ("refused", "handshakes_closed") if plaintext else ("refused",)
    assert sum(nodes[i]["counters"].get(k, 0) for i in refusers for k in counted) >= 2
    refused = [e for e in map(json.loads, (c.dir / "paxos.log").read_text().splitlines())
               if e.get("event") == "refused" and e.get("process", "").startswith("node")]
    assert plaintext or refused
    assert all("address" in e and "key" in e for e in refused)
    stored = db_keys(c)
    assert all("k1" not in stored[i] for i in refusers)


@pytest.mark.parametrize("args", [["get", "r"], ["set", "r", "x"],
                                  ["cas", "r", "x", "--expect-absent"], ["delete", "r"]])
def test_a_refused_register_command_names_the_refusal_at_once(secure, args):
    """As propose does (above): the refusal, named, within moments, not 'no quorum' at
    the deadline (issue 26.6)."""
    c = secure
    keygen(c.dir / "other", "mallory")
    started = time.monotonic()
    r = run(c.dir, *args, "--timeout", "30", "--config", str(c.config),
            "--client-key", str(c.dir / "other/mallory.key_secret"))
    took = time.monotonic() - started
    assert r.code == 1 and r.out == "", r.err
    # It ends once so many refused that no quorum can answer: two nodes, or all three.
    assert re.fullmatch(rf"zpaxos {args[0]}: error: cannot {args[0]}: node\d refused our key"
                        r"(; node\d refused our key){1,2}\n", r.err), r.err
    assert took < 10  # the handshakes told it; it did not wait out the 30 s deadline


def test_forged_frames_from_outsiders_change_nothing(secure):
    """A raw plaintext DEALER sends a Decide for an undecided key and a Prepare with the
    largest round; a raw TCP connection sends garbage and a replay of a plaintext
    greeting. Nothing reaches any node's state; the refusals are counted."""
    c = secure
    ctx = zmq.Context()
    try:
        for port in c.ports:
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(f"tcp://127.0.0.1:{port}")
            for forged in (Decide("k9", b"forged", Ballot(5, b"evil")),
                           Prepare("k9", Ballot(codec.MAX_ROUND, b"evil"))):
                try:  # queued until the handshake fails, then dropped; never blocks us
                    s.send(codec.encode(forged), zmq.NOBLOCK)
                except zmq.Again:
                    pass
            with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
                try:  # a replayed plaintext greeting, then garbage; the node hangs up
                    raw.sendall(b"\xff" + b"\x00" * 8 + b"\x01\x7f" + b"\x03\x00NULL"
                                + b"\x00" * 300)
                    raw.sendall(b"GET / HTTP/1.0\r\n\r\n" * 50)
                except OSError:
                    pass
        time.sleep(1.0)  # give the handshakes time to fail (nothing to await: no reply comes)
    finally:
        ctx.destroy(linger=0)
    nodes = statuses(c)
    assert all("k9" not in n["keys"] for n in nodes)
    assert all(n["counters"]["refused"] >= 1 for n in nodes)
    assert all("k9" not in keys for keys in db_keys(c))
    c.start_all()
    r = c.propose("Value_A", "--key", "k9", "--json")  # the key is not locked
    assert r.code == 0 and r.json["chosen"] == "Value_A" and r.json["rounds"] == 1


def test_an_authorized_clients_forged_decide_is_not_believed(secure):
    """Roles: a client key may propose, but its Decide is only a claim. A claim for a value
    no quorum accepted (made up, or accepted at one node only) is never recorded."""
    c = secure
    import os

    from zpaxos.client import Client, load_config
    old = os.getcwd()
    os.chdir(c.dir)  # the config's key paths are relative to the cluster's directory
    try:
        cluster = load_config(c.config)
        with Client(cluster) as client:
            for node in cluster.nodes:
                client.sockets.send(node.id, Decide("k7", b"made-up", Ballot(3, b"bug")))
            # Accepted at node0 only (a minority): then claimed chosen.
            client.sockets.send(0, codec.decode(codec.encode(
                Prepare("k8", Ballot(1, b"bug"))))[0])
            time.sleep(0.3)
            from zpaxos.protocol.messages import Accept
            client.sockets.send(0, Accept("k8", Ballot(1, b"bug"), b"minority"))
            time.sleep(0.3)
            for node in cluster.nodes:
                client.sockets.send(node.id, Decide("k8", b"minority", Ballot(1, b"bug")))
            time.sleep(0.5)
            client.sockets.poll(0)
    finally:
        os.chdir(old)
    nodes = statuses(c)
    for n in nodes:
        assert n["keys"].get("k7", {}).get("chosen") is None
        assert n["keys"].get("k8", {}).get("chosen") is None
    assert nodes[0]["keys"]["k8"]["value"] == "minority"  # it was accepted, not chosen
    r = c.propose("Value_B", "--key", "k8", "--json")  # Paxos goes on: the minority value
    assert r.code == 0 and r.json["chosen"] in ("minority", "Value_B")  # may be adopted


def test_health_checks_are_not_refusals_a_wrongly_keyed_peer_is(secure):
    """A TCP connection closed before its handshake ends (a load balancer's health check,
    a port scan) refuses nobody: it is counted as such, never as a refusal, and never
    logged as one. A CURVE peer that sealed its hello for another server key is refused,
    with the reason libzmq gives (the node sees it first, every time it retries)."""
    c = secure
    for port in c.ports:
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                pass
    ctx = zmq.Context()
    try:
        wrong_server, _ = zmq.curve_keypair()
        public, secret = zmq.curve_keypair()
        dealers = []  # (kept referenced: a collected socket closes before it connects)
        for port in c.ports:  # after the health checks: its refusal is counted after theirs
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.curve_serverkey, s.curve_publickey, s.curve_secretkey = (
                wrong_server, public, secret)
            s.connect(f"tcp://127.0.0.1:{port}")
            dealers.append(s)
        nodes = Cluster.wait_for(
            lambda: (lambda ns: ns if all(n["counters"]["refused"] >= 1 for n in ns)
                     else None)(statuses(c)), "every node counted the wrongly keyed peer")
    finally:
        ctx.destroy(linger=0)
    assert all(n["counters"]["handshakes_closed"] >= 5 for n in nodes), nodes
    refused = [json.loads(line) for line in (c.dir / "paxos.log").read_text().splitlines()
               if '"event": "refused"' in line or '"event":"refused"' in line]
    assert {e["process"] for e in refused} == {"node0", "node1", "node2"}
    assert all("sealed its hello for another server key" in e["msg"] for e in refused), refused
