"""Running on separate machines (docs/operating.md): where a node listens (``bind``) apart
from where the others reach it (``host``), the shipped example and systemd unit, and the
``syncing`` counter the rolling upgrade waits on.

The cluster across network namespaces that follows the guide is tests/test_deploy_netns.py.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT, env, free_ports, zpaxos_cmd
from tests.test_admission import Net
from zpaxos.cli import main
from zpaxos.hosts.admission import VOTING
from zpaxos.runtime.config import ConfigError, load_config
from zpaxos.runtime.exits import Exit
from zpaxos.runtime.storage_errors import StateDamaged, StateLost

UNIT = ROOT / "deploy" / "zpaxos-node@.service"
EXAMPLE = ROOT / "configs" / "three-machines.ini"
GUIDE = ROOT / "docs" / "operating.md"

ONE_NODE = """
[node.0]
host = {host}
port = {port}
data_dir = {data}
{bind}
[log]
file =
"""

THREE = """
[node.0]
host = 127.0.0.1
port = 5001
data_dir = d0
{bind}
[node.1]
host = 127.0.0.1
port = 5002
data_dir = d1
[node.2]
host = 127.0.0.1
port = 5003
data_dir = d2
"""


def cfg(tmp_path: Path, bind_line: str = ""):
    p = tmp_path / "c.ini"
    p.write_text(THREE.format(bind=bind_line))
    return p


# ---------------------------------------------------------------- host and bind


def test_without_bind_a_node_listens_where_it_is_reached(tmp_path):
    """Today's configs mean what they meant: every shipped one, and a plain [node.N]."""
    n = load_config(cfg(tmp_path)).nodes[0]
    assert (n.bind, n.bind_endpoint, n.endpoint) == (None, "tcp://127.0.0.1:5001",
                                                     "tcp://127.0.0.1:5001")
    for name in ("cluster.ini", "five-nodes.ini", "cluster-secure.ini"):
        for n in load_config(ROOT / "configs" / name, keys=False).nodes:
            assert n.bind is None and n.bind_endpoint == n.endpoint


@pytest.mark.parametrize("bind,endpoint", [
    ("0.0.0.0", "tcp://0.0.0.0:5001"),
    ("*", "tcp://*:5001"),
    ("::", "tcp://[::]:5001"),
    ("[0::1]", "tcp://[::1]:5001"),
    ("10.1.2.3", "tcp://10.1.2.3:5001"),
    ("eth0", "tcp://eth0:5001"),  # ZeroMQ takes an interface name too
])
def test_bind_is_where_the_node_listens_and_host_where_it_is_reached(tmp_path, bind, endpoint):
    n = load_config(cfg(tmp_path, f"bind = {bind}")).nodes[0]
    assert (n.bind_endpoint, n.endpoint) == (endpoint, "tcp://127.0.0.1:5001")
    assert load_config(cfg(tmp_path, f"bind = {bind}")).nodes[1].bind is None


def test_the_three_machines_example_parses_with_names_and_bind():
    c = load_config(EXAMPLE, keys=False)
    assert [(n.host, n.bind, n.port) for n in c.nodes] == [
        (f"node{i}.paxos.example", "0.0.0.0", 5001) for i in range(3)]
    assert [n.endpoint for n in c.nodes] == [f"tcp://node{i}.paxos.example:5001"
                                            for i in range(3)]
    assert c.security.curve
    assert all(str(n.data_dir).startswith("/var/lib/zpaxos/") for n in c.nodes)


@pytest.mark.parametrize("bind,problem", [
    ("not an address!", "'not an address!' is not an IP address or host name "
                        "(or * for every interface)"),
    ("300.0.0.1", "'300.0.0.1' is not an IPv4 address"),
    ("[10.0.0.1]", "'[10.0.0.1]' is an IPv4 address in brackets (brackets are for IPv6 only)"),
    ("**", "'**' is not an IP address or host name (or * for every interface)"),
])
def test_a_bad_bind_is_one_line_naming_file_section_key(tmp_path, capsys, bind, problem):
    p = cfg(tmp_path, f"bind = {bind}")
    with pytest.raises(SystemExit) as e:
        main(["node", "0", "--config", str(p)])
    out, err = capsys.readouterr()
    assert (e.value.code, out) == (Exit.USAGE, "")
    assert err == f"zpaxos node: error: {p}: [node.0] bind: {problem}\n"
    with pytest.raises(ConfigError):
        load_config(p)


def _not_local(addr: str) -> bool:
    s = socket.socket()
    try:
        s.bind((addr, 0))
        return False
    except OSError as e:
        return e.errno == errno.EADDRNOTAVAIL
    finally:
        s.close()


# TEST-NET-1 (RFC 5737): never an address of this machine. Nothing is sent to it: a
# one-node cluster has no peers to connect to, and no client runs here.
ELSEWHERE = "192.0.2.1"


def test_a_node_reached_at_an_address_it_cannot_listen_on(tmp_path):
    """The reason for bind: a node reached at an address that is not its own (NAT, a
    name for another interface) cannot listen there. Without bind it says so in one line
    naming the key and what to set; with bind it listens there and says both."""
    if not _not_local(ELSEWHERE):
        pytest.skip(f"{ELSEWHERE} is an address of this machine")
    port = free_ports(1)[0]
    p = tmp_path / "c.ini"
    text = ONE_NODE.format(host=ELSEWHERE, port=port, data=tmp_path / "d", bind="")
    p.write_text(text)
    r = subprocess.run([*zpaxos_cmd("node", "0", "--config", str(p))], env=env(),
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == (f"zpaxos node: error: node0: cannot listen on tcp://{ELSEWHERE}:{port}: "
                        f"Cannot assign requested address ([node.0] host: if the others reach "
                        f"this node at an address it cannot listen on, set [node.0] bind = "
                        f"0.0.0.0 or one of its own addresses)\n")

    p.write_text(ONE_NODE.format(host=ELSEWHERE, port=port, data=tmp_path / "d",
                                 bind="bind = 127.0.0.1"))
    proc = subprocess.Popen([*zpaxos_cmd("node", "0", "--config", str(p))], env=env(),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"node0 listening on tcp://127.0.0.1:{port}, reached at "
                               f"tcp://{ELSEWHERE}:{port} (data in "), line
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # it listens on the bind address
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
        proc.stdout.close()
    assert code == 0


def test_a_bind_address_that_is_not_this_machines_names_bind(tmp_path):
    if not _not_local(ELSEWHERE):
        pytest.skip(f"{ELSEWHERE} is an address of this machine")
    port = free_ports(1)[0]
    p = tmp_path / "c.ini"
    p.write_text(ONE_NODE.format(host="127.0.0.1", port=port, data=tmp_path / "d",
                                 bind=f"bind = {ELSEWHERE}"))
    r = subprocess.run([*zpaxos_cmd("node", "0", "--config", str(p))], env=env(),
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == (f"zpaxos node: error: node0: cannot listen on tcp://{ELSEWHERE}:{port}: "
                        f"Cannot assign requested address ([node.0] bind)\n")


# ---------------------------------------------------------------- caught up: syncing


def test_syncing_counts_peers_whose_decisions_a_restarted_node_has_not_fetched_yet():
    """What the rolling upgrade waits for: a restarted node is caught up when every peer
    has sent its last sync page (``syncing`` 0); a peer that is down keeps it above 0."""
    net = Net()
    for i in range(3):
        net.start(i)
    net.run()
    net.stop(2)
    for k in range(5):
        net.decide(f"k{k}", b"v")  # while node2 is down
    c = net.start(2)
    assert c.syncing == 2
    net.run()
    assert c.phase == VOTING and c.syncing == 0
    assert {f"k{k}" for k in range(5)} <= set(net.disks[2].states)

    net.stop(2)
    net.stop(1)
    net.start(1)  # node1 is back, node0 answers it; node2 stays down meanwhile
    net.run()
    net.stop(1)  # and down again when node2 starts
    c = net.start(2)
    net.run()
    assert c.phase == VOTING and c.syncing == 1  # node0 answered in full, node1 is down


# ---------------------------------------------------------------- the systemd unit


def unit_settings(path: Path = UNIT) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> every value, in order (systemd keys may repeat)."""
    out: dict[tuple[str, str], list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault((section, key.strip()), []).append(value.strip())
    return out


def one(s: dict[tuple[str, str], list[str]], section: str, key: str) -> str:
    values = s.get((section, key), [])
    assert len(values) == 1, f"[{section}] {key}: {values}"
    return values[0]


def test_the_unit_runs_the_guides_command_and_never_restarts_over_lost_state():
    s = unit_settings()
    exec_start = one(s, "Service", "ExecStart").split()
    assert exec_start[1:] == ["node", "%i", "--config", "/etc/zpaxos/cluster.ini"]
    assert Path(exec_start[0]).name == "zpaxos" and Path(exec_start[0]).is_absolute()
    assert one(s, "Service", "Restart") == "on-failure"
    prevent = set(one(s, "Service", "RestartPreventExitStatus").split())
    # damaged or lost state: an operator must act; a bad config: a restart cannot fix it
    assert prevent == {str(StateDamaged.exit_code), str(StateLost.exit_code), str(Exit.USAGE)}
    assert one(s, "Service", "KillSignal") == "SIGTERM"
    assert int(one(s, "Service", "TimeoutStopSec")) >= 10
    assert int(one(s, "Service", "LimitNOFILE")) >= 4096
    assert one(s, "Service", "User") == "zpaxos"
    assert one(s, "Service", "ProtectSystem") == "strict"
    assert one(s, "Service", "NoNewPrivileges") == "yes"
    # ZeroMQ resolves a bind address through getifaddrs, which needs netlink.
    assert "AF_NETLINK" in one(s, "Service", "RestrictAddressFamilies").split()
    # It may write exactly where the example config keeps its data and its log.
    writable = [Path(p) for p in one(s, "Service", "ReadWritePaths").split()]
    c = load_config(EXAMPLE, keys=False)
    for path in [n.data_dir for n in c.nodes] + [c.log.file]:
        assert path is not None and any(path.is_relative_to(w) for w in writable), path
    assert one(s, "Install", "WantedBy") == "multi-user.target"
    assert "deploy/zpaxos-node@.service" in GUIDE.read_text()


def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    """systemd's own lint, on the unit as shipped but for where zpaxos is installed (verify
    checks that ExecStart's program exists: here, the zpaxos of this environment)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    installed = Path(sys.executable).parent / "zpaxos"
    if not os.access(installed, os.X_OK):
        pytest.skip(f"no zpaxos console script next to {sys.executable} (pip install -e .)")
    text = UNIT.read_text()
    assert "ExecStart=/opt/zpaxos/bin/zpaxos " in text
    (tmp_path / UNIT.name).write_text(text.replace("/opt/zpaxos/bin/zpaxos", str(installed)))
    (tmp_path / "zpaxos-node@0.service").symlink_to(UNIT.name)
    for name in (UNIT.name, "zpaxos-node@0.service"):
        r = subprocess.run([tool, "verify", str(tmp_path / name)], capture_output=True,
                           text=True, timeout=60)
        assert (r.returncode, r.stdout + r.stderr) == (0, ""), r.stderr


def test_systemd_analyze_verify_would_catch_a_mistake(tmp_path):
    """The lint above can fail: a misspelt key and an unknown signal are reported."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    installed = Path(sys.executable).parent / "zpaxos"
    text = (UNIT.read_text().replace("/opt/zpaxos/bin/zpaxos", str(installed))
            .replace("KillSignal=SIGTERM", "KillSignal=SIGTREM")
            .replace("LimitNOFILE=", "LimitNOFILES="))
    (tmp_path / UNIT.name).write_text(text)
    r = subprocess.run([tool, "verify", str(tmp_path / UNIT.name)], capture_output=True,
                       text=True, timeout=60)
    assert "SIGTREM" in r.stderr and "LimitNOFILES" in r.stderr



def test_the_scenario_runner_keeps_each_nodes_bind(tmp_path):
    """run_scenarios.sh --config FILE rewrites the cluster with fresh data directories; a
    node's bind must survive that, or it would try to listen on its host again."""
    from zpaxos.lab.scenarios import scenario_config

    path = scenario_config(load_config(EXAMPLE, keys=False), tmp_path)
    nodes = load_config(path, keys=False).nodes  # its key paths are relative to tmp_path
    assert [(n.host, n.bind) for n in nodes] == [(f"node{i}.paxos.example", "0.0.0.0")
                                                for i in range(3)]
