"""Prometheus metrics: scraped from real node processes over HTTP, names checked against
Prometheus's conventions (in Python always; with ``promtool check metrics`` where it is
installed), the example alert rules parsed and checked against a real scrape, bad
``[metrics]`` config as one line, a metrics port in use as one line, and the commands
of docs/operating.md's "Metrics" section run as written."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml
import zmq
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import ROOT, Result, env, free_ports, wait_for, zpaxos_cmd
from tests.test_config_cli import GOOD, run_cli
from zpaxos.lab.launcher import LocalCluster, write_config
from zpaxos.protocol.messages import Ballot, Prepare
from zpaxos.runtime import codec
from zpaxos.runtime.client import Client
from zpaxos.runtime.config import load_config
from zpaxos.runtime.log import null_log
from zpaxos.runtime.metrics import ClientMetrics

RULES = ROOT / "deploy" / "prometheus" / "zpaxos-alerts.yml"
PROMTOOL = shutil.which("promtool")
NO_PROMTOOL = "promtool is not installed (Debian: apt-get install prometheus)"
PROPOSALS = 5


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (name, sorted labels) -> value (prometheus_client's parser)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


# ---------------------------------------------------------------- a real cluster, scraped

# Frames that are not valid batches, each with the reason its drop is counted under.
HEAD = b"ZPAXOS/3\x93\xa1x\x00\x91"  # protocol, [sender "x", seq 0, [one message]]
GARBAGE = [
    ([b"hello"], "unknown_protocol"),
    ([HEAD + b"\xc1\xc1"], "not_msgpack"),
    ([b"ZPAXOS/3\x93\xa1x\xff\x90"], "bad_envelope"),  # first seq -1
    ([HEAD + b"\x91\xa4NOPE"], "unknown_type"),
    ([HEAD + b"\x93\xa7PREPARE\xa1k\x92\x01\xc4\x00"], "bad_fields"),  # ballot id empty
    ([HEAD + b"\x93\xa7PREPARE\xa1k\x92\x01\xc4\x01x", b"second frame"], "frame_count"),
]


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    """A 3-node cluster serving metrics; a client with metrics proposes PROPOSALS values;
    then a Prepare node0 must nack, and garbage for node0. Yields the scrapes (node0's
    before the garbage, node0's after, the client's). Every process is stopped."""
    work = tmp_path_factory.mktemp("metrics")
    ports = free_ports(7)
    cfg = write_config(work / "cluster.ini", [("127.0.0.1", p) for p in ports[:3]],
                       log_level="WARNING", metrics_ports=ports[3:6])
    cluster = LocalCluster(cfg, work, range(3))
    ctx = zmq.Context()
    try:
        cluster.start_all()
        metrics = ClientMetrics()
        metrics.serve("127.0.0.1", ports[6])
        try:
            with Client(load_config(cfg), null_log("test"), metrics=metrics,
                        fast=False) as client:  # both phases: PROMISEs to count
                outcomes = client.propose_many([(f"m{i}", b"v") for i in range(PROPOSALS)])
            assert all(o.chosen == b"v" for o in outcomes)
            client_text = scrape(ports[6])
        finally:
            metrics.close()
        node0 = ports[3]
        # The client's Decides reach the nodes after its proposals returned: wait for them.
        wait_for(lambda: value(scrape(node0), "zpaxos_node_decisions_learned_total")
                 >= PROPOSALS, "node0 learned every decision")
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(f"tcp://127.0.0.1:{ports[0]}")
        ballot = Ballot(1, os.urandom(16))
        for _ in range(2):  # the same ballot twice: promised, then nacked
            s.send(codec.encode(Prepare("nk", ballot)))
        wait_for(lambda: value(scrape(node0), "zpaxos_node_messages_total", type="prepare",
                               outcome="nacked") >= 1, "node0 nacked the second Prepare")
        before = scrape(node0)
        for frames, _ in GARBAGE:
            s.send_multipart(frames)
        wait_for(lambda: sum(v for (n, _), v in samples(scrape(node0)).items()
                             if n == "zpaxos_node_malformed_frames_total") >= len(GARBAGE),
                 "node0 counted every malformed frame")
        s.close()
        yield {"before": before, "after": scrape(node0), "client": client_text}
    finally:
        ctx.destroy(linger=0)  # closes the DEALER too, if a wait above failed
        cluster.close()


@pytest.mark.e2e
def test_a_scraped_node_counts_what_it_did(scraped):
    text = scraped["before"]
    assert value(text, "zpaxos_node_decisions_learned_total") >= PROPOSALS
    assert value(text, "zpaxos_node_messages_total", type="prepare",
                 outcome="promised") >= PROPOSALS + 1  # the client's, and the raw one
    assert value(text, "zpaxos_node_messages_total", type="accept",
                 outcome="accepted") >= PROPOSALS
    assert value(text, "zpaxos_node_messages_total", type="prepare", outcome="nacked") == 1
    assert value(text, "zpaxos_node_fsync_duration_seconds_count") > 0
    assert value(text, "zpaxos_node_pass_duration_seconds_count") > 0
    assert value(text, "zpaxos_node_keys") == PROPOSALS + 1  # m0..m4 and nk
    assert value(text, "zpaxos_node_registers") == 0
    assert value(text, "zpaxos_node_peers_reachable") == 2
    assert value(text, "zpaxos_node_peer_up", peer="node2") == 1
    assert value(text, "zpaxos_node_cluster_size") == 3
    assert value(text, "zpaxos_node_voting") == 1
    assert value(text, "zpaxos_node_info", node="node0") == 1
    assert value(text, "process_resident_memory_bytes") > 1 << 20
    assert value(text, "zpaxos_node_queue_depth", queue="held") == 0


@pytest.mark.e2e
def test_malformed_frames_are_counted_by_reason(scraped):
    for frames, reason in GARBAGE:
        before = value(scraped["before"], "zpaxos_node_malformed_frames_total", reason=reason)
        after = value(scraped["after"], "zpaxos_node_malformed_frames_total", reason=reason)
        assert after == before + 1, (reason, frames)


@pytest.mark.e2e
def test_a_client_with_metrics_counts_its_proposals(scraped):
    text = scraped["client"]
    assert value(text, "zpaxos_client_proposals_total", result="proposed") == PROPOSALS
    assert value(text, "zpaxos_client_proposals_total", result="failed") == 0
    assert value(text, "zpaxos_client_proposal_rounds_count") == PROPOSALS
    assert value(text, "zpaxos_client_proposal_duration_seconds_count") == PROPOSALS
    assert value(text, "zpaxos_client_proposal_failures_total", reason="deadline") == 0


# ---------------------------------------------------------------- names and rules

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
UNITLESS_HISTOGRAMS = {"zpaxos_client_proposal_rounds"}  # a count of rounds has no unit


def convention_problems(text: str) -> list[str]:
    """Prometheus's naming conventions, on one scrape: a zpaxos_ (or the standard
    process_) prefix, snake_case, _total on counters and only there, histograms of time
    in _seconds, sizes in _bytes."""
    problems = []
    # As exposed (the parser adds _total to a counter's samples itself).
    for name in re.findall(r"^# TYPE (\S+) counter$", text, re.M):
        if not name.endswith("_total"):
            problems.append(f"{name}: a counter without _total")
    for fam in text_string_to_metric_families(text):
        name, kind = fam.name, fam.type
        if not NAME.match(name):
            problems.append(f"{name}: not snake_case")
        if not name.startswith(("zpaxos_node_", "zpaxos_client_", "process_")):
            problems.append(f"{name}: no zpaxos_node_/zpaxos_client_ prefix")
        if kind == "gauge" and name.endswith("_total"):
            problems.append(f"{name}: a gauge named like a counter")
        if kind == "histogram" and name not in UNITLESS_HISTOGRAMS \
                and not name.endswith(("_seconds", "_bytes")):
            problems.append(f"{name}: a histogram without a base unit (_seconds, _bytes)")
        if ("memory" in name or "size_bytes" in name) and not name.endswith("_bytes"):
            problems.append(f"{name}: a size not in _bytes")
        for s in fam.samples:
            for label in s.labels:
                if not NAME.match(label):
                    problems.append(f"{name}: label {label!r} not snake_case")
    return problems


def test_the_conventions_check_can_fail():
    bad = ("# TYPE zpaxos_node_hits counter\nzpaxos_node_hits 1\n"
           "# TYPE zpaxos_node_wait histogram\nzpaxos_node_wait_bucket{le=\"+Inf\"} 1\n"
           "zpaxos_node_wait_count 1\nzpaxos_node_wait_sum 1\n"
           "# TYPE paxos_keys gauge\npaxos_keys 1\n")
    assert len(convention_problems(bad)) == 3


@pytest.mark.e2e
@pytest.mark.parametrize("which", ["after", "client"])
def test_names_follow_the_conventions(scraped, which):
    assert convention_problems(scraped[which]) == []


@pytest.mark.e2e
@pytest.mark.parametrize("which", ["after", "client"])
def test_promtool_check_metrics(scraped, which):
    if PROMTOOL is None:
        pytest.skip(NO_PROMTOOL)
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=scraped[which],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def rule_metrics() -> set[str]:
    """Every metric name the alert rules' expressions use (PromQL words that are neither
    functions, keywords nor labels)."""
    rules = yaml.safe_load(RULES.read_text())
    names = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert {"alert", "expr", "labels", "annotations"} <= rule.keys(), rule
            expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\([^()]*\bby\b", "", rule["expr"])
            for word in re.findall(r"[a-z_][a-z0-9_]*", expr):
                if word.startswith(("zpaxos_", "process_")) or word == "up":
                    names.add(word)
    return names


@pytest.mark.e2e
def test_alert_rules_parse_and_name_only_served_metrics(scraped):
    served = {n for n, _ in samples(scraped["after"])} | {n for n, _ in
                                                          samples(scraped["client"])}
    used = rule_metrics()
    assert "zpaxos_node_fsync_duration_seconds_bucket" in used  # the extraction works
    assert used - served - {"up"} == set()  # "up" is Prometheus's own, per target


def test_promtool_check_rules():
    if PROMTOOL is None:
        pytest.skip(NO_PROMTOOL)
    r = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


# ---------------------------------------------------------------- config and ports

def test_where_a_node_serves_its_metrics(tmp_path):
    p = tmp_path / "c.ini"
    p.write_text(GOOD.replace("data_dir = data/node1", "data_dir = data/node1\n"
                              "metrics_port = 9201")
                 .replace("data_dir = data/node2", "data_dir = data/node2\nmetrics_port = 9202")
                 + "[metrics]\nhost = ::1\nport = 9200\n")
    cfg = load_config(p)
    assert cfg.metrics_address(0) == ("::1", 9200)  # [metrics] port
    assert cfg.metrics_address(1) == ("::1", 9201)  # its own metrics_port
    assert cfg.metrics_address(1, 9300) == ("::1", 9300)  # --metrics-port
    p.write_text(GOOD)
    assert load_config(p).metrics_address(0) is None  # off unless asked


@pytest.mark.parametrize("edit,expect", [
    (lambda s: s + "[metrics]\nport = 99999\n", "[metrics] port: '99999' is not a port"),
    (lambda s: s + "[metrics]\nport = http\n", "[metrics] port: 'http' is not a port"),
    (lambda s: s + "[metrics]\nhost = no..where\n", "[metrics] host: 'no..where' is not"),
    (lambda s: s + "[metrics]\npath = /m\n", "[metrics] path: unknown key (known: host, port)"),
    (lambda s: s.replace("data_dir = data/node1", "data_dir = data/node1\nmetrics_port = 0"),
     "[node.1] metrics_port: '0' is not a port"),
    (lambda s: s + "[metrics]\nport = 9200\n",
     "[node.1] metrics_port: 9200 is already used by [node.0] on the same host"),
])
def test_bad_metrics_config_is_one_line(tmp_path, capsys, edit, expect):
    p = tmp_path / "c.ini"
    p.write_text(edit(GOOD))
    code, out, err = run_cli(capsys, "node", "0", "--config", str(p))
    assert (code, out) == (2, "")
    assert err.startswith(f"zpaxos node: error: {p}: {expect}") and err.count("\n") == 1, err


@pytest.mark.e2e
def test_a_metrics_port_in_use_is_one_line(tmp_path):
    ports = free_ports(3)
    cfg = write_config(tmp_path / "cluster.ini", [("127.0.0.1", p) for p in ports])
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        busy = taken.getsockname()[1]
        p = subprocess.run(zpaxos_cmd("node", "0", "-q", "--config", str(cfg),
                                      "--metrics-port", str(busy)),
                           cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=60)
    finally:
        taken.close()
    r = Result(p.returncode, p.stdout, p.stderr)
    assert r.code == 1, r
    assert r.err == (f"zpaxos node: error: node0: cannot serve metrics on "
                     f"http://127.0.0.1:{busy}/metrics: address already in use (give another "
                     f"[metrics] port or --metrics-port)\n")


# ---------------------------------------------------------------- the docs' commands

def metrics_section() -> str:
    text = (ROOT / "docs" / "operating.md").read_text()
    return text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]


def doc_commands() -> list[str]:
    """The shell commands of the section: the lines of its ```sh blocks."""
    blocks = re.findall(r"^```sh\n(.*?)^```", metrics_section(), re.M | re.S)
    return [line for b in blocks for line in b.splitlines() if line.strip()]


def test_the_docs_list_every_metric_a_node_and_a_client_serve():
    """The table names each family; checked against the names the code declares."""
    section = metrics_section()
    code = (ROOT / "zpaxos" / "runtime" / "metrics.py").read_text()
    declared = set(re.findall(r'"(zpaxos_(?:node|client)_[a-z_]+)"', code))
    assert len(declared) > 15
    for name in declared:  # a counter is exposed (and shown) with _total
        assert f"`{name}`" in section or f"`{name}_total`" in section, name


@pytest.mark.e2e
def test_the_docs_commands_run_as_written(tmp_path):
    """Every command of the section runs here, as written, with the port numbers the
    text uses replaced by free ones and `zpaxos` by this checkout's; the cost command
    runs with one small pair (flags appended: argparse keeps the last)."""
    commands = doc_commands()
    assert len(commands) >= 5, commands
    ports = free_ports(4)
    cfg = write_config(tmp_path / "cluster.ini", [("127.0.0.1", p) for p in ports[:3]])
    e = env()
    e["ZPAXOS_CONFIG"] = str(cfg)
    started = []
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    zp = bin_dir / "zpaxos"
    zp.write_text(f"#!/bin/sh\nexec {' '.join(zpaxos_cmd())} \"$@\"\n")
    zp.chmod(0o755)
    e["PATH"] = f"{bin_dir}{os.pathsep}{Path(zpaxos_cmd()[0]).parent}{os.pathsep}{e['PATH']}"
    try:
        for line in commands:
            cmd = line.replace("9100", str(ports[3])).replace(".venv/bin/python",
                                                              zpaxos_cmd()[0])
            if "promtool" in cmd and PROMTOOL is None:
                continue  # (the promtool tests above skip, saying why)
            if cmd.startswith("zpaxos node"):
                p = subprocess.Popen(cmd, shell=True, cwd=tmp_path, env=e, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
                started.append(p)
                assert p.stdout is not None
                assert "metrics on" in p.stdout.readline()
                continue
            if "metrics_cost.py" in cmd:
                cmd += " --pairs 1 --proposals 200"
            r = subprocess.run(cmd, shell=True, cwd=ROOT, env=e, capture_output=True,
                               text=True, timeout=300)
            quiet = "promtool check metrics" in cmd  # (says nothing when all is well)
            assert r.returncode == 0 and (quiet or r.stdout), (cmd, r.stdout, r.stderr)
        # The Python block, against the node above and two more, on the same config.
        others = LocalCluster(cfg, tmp_path, [1, 2])
        try:
            others.start_all()
            for block in re.findall(r"^```python\n(.*?)^```", metrics_section(), re.M | re.S):
                code = block.replace("configs/cluster.ini", str(cfg)).replace(
                    "9101", str(free_ports(1)[0]))
                r = subprocess.run([zpaxos_cmd()[0], "-c", code], cwd=tmp_path, env=e,
                                   capture_output=True, text=True, timeout=120)
                assert r.returncode == 0, r.stderr
        finally:
            others.close()
    finally:
        for p in started:
            os.killpg(p.pid, 15)
            p.communicate(timeout=30)


def test_the_cost_report_of_a_run_too_short_to_measure_says_so(monkeypatch, capsys):
    """A run shorter than the kernel's CPU ticks can count 0 microseconds for a side: the
    A/B report says it cannot tell, rather than dividing by zero (it did, in CI)."""
    from tests.harness import bench_module

    cost = bench_module("metrics_cost")
    monkeypatch.setattr(cost, "one_run", lambda metrics, proposals, concurrency: (0, 0))
    cost.main(["--pairs", "1", "--proposals", "10"])
    assert "n/a (too short to measure)" in capsys.readouterr().out
