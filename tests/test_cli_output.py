"""What people read: propose's result and round lines, status and its exit code, escaped
values in every text output, and the lab's shipped config traced out of the box."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.harness import ROOT, Cluster, free_ports
from zpaxos.cli.propose import result_line
from zpaxos.lab.launcher import LocalCluster, wait_for
from zpaxos.protocol.core import Outcome
from zpaxos.protocol.messages import Ballot
from zpaxos.runtime.exits import Exit

pytestmark = pytest.mark.e2e

B = r"\d+\.[0-9a-f]{4}"  # a ballot as printed
TIME = r"\d\d:\d\d:\d\d\.\d{3} "  # how every text log line starts


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The lab's own configs/cluster.ini, moved to free ports: what a student runs."""
    work = tmp_path_factory.mktemp("lab")
    text = (ROOT / "configs" / "cluster.ini").read_text()
    for old, new in zip((5001, 5002, 5003), free_ports(3), strict=True):
        text = text.replace(f"port = {old}", f"port = {new}")
    config = work / "cluster.ini"
    config.write_text(text)
    c = LocalCluster(config, work, range(3))
    try:
        c.start_all()
        yield c
    finally:
        c.close()


def propose(c: LocalCluster, *args: str):
    return c.run("propose", *args)


# ---------------------------------------------------------------- propose's result


def test_chosen_now_then_already_chosen_name_the_ballot_that_chose(lab):
    first = propose(lab, "Value_A", "--key", "k1", "--json", "-q")
    doc = first.json
    assert (first.code, doc["how"], doc["own"], doc["told_by"]) == (0, "proposed", True, None)
    at = doc["chosen_ballot"]
    assert re.fullmatch(B, at) and at == doc["ballot"]

    again = propose(lab, "Value_B", "--key", "k1")
    assert again.code == 0
    m = re.fullmatch(rf"k1 = 'Value_A': already chosen, at ballot ({B}) "
                     r"\((node\d) said so\); it proposed 'Value_B'; 1 round, \d+ ms\n", again.out)
    assert m and m.group(1) == at, again.out  # the ballot that chose, not its own
    assert re.fullmatch(rf"round 1, ballot {B}: Prepare to 3 nodes, 0 promises: "
                        rf"{m.group(2)} says 'Value_A' was already chosen \(at {at}\)\n", again.err)

    same = propose(lab, "Value_A", "--key", "k1", "--json", "-q").json
    assert (same["how"], same["own"], same["chosen_ballot"]) == ("already", True, at)
    assert re.fullmatch(r"node\d", same["told_by"])
    assert same["reason"] == f"already chosen (told by {same['told_by']})"
    assert same["ballot"] != at  # its own, unused ballot is still there, for who wants it
    assert set(same) == documented_json_fields()


def documented_json_fields() -> set[str]:
    """The fields the propose reference (docs/cli.md) says --json prints."""
    reference = (ROOT / "docs" / "cli.md").read_text()
    paragraph = reference[reference.index("`--json` prints "):].split("\n\n")[0]
    return {w for w in re.findall(r"`([^`]+)`", paragraph) if re.fullmatch(r"[a-z_]+", w)}


def _outcome(how: str, chosen: bytes, proposed: bytes = b"Value_B", rounds: int = 1) -> Outcome:
    return Outcome("CISC5597", proposed, chosen, chosen == proposed, rounds,
                   Ballot(rounds, b"\x9c\x41"), "", (), Ballot(1, b"\x23\x1f"), how)


@pytest.mark.parametrize("outcome,told_by,line", [
    (_outcome("proposed", b"Value_B"), None,
     "CISC5597 = 'Value_B': chosen now, its own value; ballot 1.231f, 1 round, 9 ms"),
    (_outcome("adopted", b"Value_A", rounds=2), None,
     "CISC5597 = 'Value_A': chosen now, an earlier proposal's value it adopted (it proposed "
     "'Value_B'); ballot 1.231f, 2 rounds, 9 ms"),
    (_outcome("already", b"Value_A"), "node2",
     "CISC5597 = 'Value_A': already chosen, at ballot 1.231f (node2 said "
     "so); it proposed 'Value_B'; 1 round, 9 ms"),
    (_outcome("already", b"Value_B"), "node0",
     "CISC5597 = 'Value_B': already chosen, at ballot 1.231f (node0 said "
     "so); it proposed the same value; 1 round, 9 ms"),
    (_outcome("proposed", b"two\nlines", proposed=b"two\nlines"), None,
     "CISC5597 = 'two\\nlines': chosen now, its own value; ballot 1.231f, 1 round, 9 ms"),
    # Empty, a quote, bytes that are not UTF-8: each visible, none taken for the text around
    (_outcome("proposed", b"", proposed=b""), None,
     "CISC5597 = '': chosen now, its own value; ballot 1.231f, 1 round, 9 ms"),
    (_outcome("adopted", b"it's", proposed=b"\xff\x00"), None,
     "CISC5597 = 'it\\'s': chosen now, an earlier proposal's value it adopted (it proposed "
     "'\\xff\\x00'); ballot 1.231f, 1 round, 9 ms"),
])
def test_result_line_tells_the_three_cases_apart(outcome, told_by, line):
    assert result_line(outcome, told_by, 9.2) == line


# ---------------------------------------------------------------- what stderr shows


def test_default_is_one_line_per_round_v_everything_q_nothing_file_everything(lab):
    r = propose(lab, "Value_A", "--key", "quiet-q", "-q")
    assert (r.code, r.err) == (0, "")
    assert r.out.startswith("quiet-q = 'Value_A': chosen now, its own value; ballot ")

    r = propose(lab, "Value_A", "--key", "default")
    assert r.code == 0
    assert re.fullmatch(rf"round 1, ballot {B}: Prepare to 3 nodes, [23] promises; Accept to "
                        r"3 nodes, [23] accepted: chosen: 'Value_A'\n", r.err), r.err

    r = propose(lab, "Value_A", "--key", "verbose", "-v")
    assert r.code == 0
    lines = r.err.splitlines()
    assert all(re.match(TIME + r"proposer [0-9a-f]{4} ", line) for line in lines), r.err
    assert sum(" send PREPARE -> node" in line for line in lines) == 3

    # Whatever stderr showed, the log file got every event of every proposer.
    events = [json.loads(line) for line in (lab.dir / "paxos.log").read_text().splitlines()]
    for key in ("quiet-q", "default", "verbose"):
        sent = [e["type"] for e in events if e.get("key") == key and e["event"] == "send"
                and e["process"].startswith("proposer")]
        assert sent.count("PREPARE") == 3 and sent.count("ACCEPT") == 3, key


# ---------------------------------------------------------------- the shipped config


def test_lab_log_is_traceable_and_readable_out_of_the_box(lab):
    assert propose(lab, "Value_A", "--key", "traced", "-q").code == 0
    r = lab.run("status")  # any command: the config is the shipped one
    assert r.code == 0
    trace = _zpaxos(lab, "trace", "paxos.log")  # what the README says, after the lab
    assert trace.code == 0 and "PREPARE" in trace.out and "traced" in trace.out, trace.err
    log = _zpaxos(lab, "log", "paxos.log", "--key", "traced")
    lines = log.out.splitlines()
    assert log.code == 0 and len(lines) >= 12
    assert all(re.match(TIME, line) for line in lines)
    assert any(re.match(TIME + rf"proposer [0-9a-f]{{4}}  INFO  send PREPARE -> node0 msg_id=\S+ "
                        rf"key=traced ballot={B}$", line) for line in lines), log.out


def _zpaxos(c: LocalCluster, *args: str):
    """A command that takes no --config, run in the cluster's directory."""
    import subprocess

    from zpaxos.lab.launcher import Result, child_env, zpaxos_cmd

    r = subprocess.run(zpaxos_cmd(*args), cwd=c.dir, env=child_env(), capture_output=True,
                       text=True, timeout=60)
    return Result(r.returncode, r.stdout, r.stderr)


def test_log_of_a_missing_file_is_one_line(tmp_path):
    r = _zpaxos(LocalCluster(tmp_path / "c.ini", tmp_path, []), "log", "nope.log")
    assert (r.code, r.out) == (2, "")
    assert r.err == "zpaxos log: error: nope.log: cannot read (No such file or directory)\n"


# ---------------------------------------------------------------- values that hold newlines


def test_a_value_with_a_newline_stays_on_its_line_everywhere(lab):
    forged = "x\n12:00:00.000 node0          INFO  chosen key=nl value=FORGED"
    r = propose(lab, forged, "--key", "nl")
    assert r.code == 0
    assert r.out.count("\n") == 1 and r.out.startswith(
        "nl = 'x\\n12:00:00.000 node0          INFO  chosen key=nl value=FORGED': chosen now")
    assert r.err.count("\n") == 1

    r = propose(lab, "again", "--key", "nl", "-v")
    assert all(re.match(TIME, line) for line in r.err.splitlines()), r.err

    r = lab.run("status", "--key", "nl")
    rows = r.out.splitlines()
    # The table (header, one row per node), the health line, then the decided keys each
    # node knows (docs/catching-up.md): one line per node, none carrying the value.
    assert rows[4] == "all 3 nodes reachable" and rows[5] == "decided keys known:", rows
    assert all(row.startswith(("NODE", "node")) for row in rows[:4])
    assert len(rows) == 9 and all(row.startswith("  node") for row in rows[6:]), rows

    log = _zpaxos(lab, "log", "paxos.log", "--key", "nl").out.splitlines()
    assert log and all(re.match(TIME, line) for line in log)
    assert not any("FORGED" in line and "value=FORGED" == line.split()[-1] for line in log)


def test_text_formatter_escapes_every_field():
    from zpaxos.runtime.log import _TextFormatter

    line = _TextFormatter.line(0.0, "node\n0", "INFO", "recv", {
        "type": "PROMISE", "peer": "proposer\r1", "key": "k", "value": b"a\nb \xff",
        "reason": "x=y", "no_reply_from": [1, 2]}, "ms\x1b[2Jg")
    assert line.endswith('node\\n0        INFO  recv PROMISE <- proposer\\r1 key=k '
                         'value="a\\nb \\xff" reason="x=y" no_reply_from=1,2 ms\\x1b[2Jg')
    assert "\n" not in line


def test_bench_report_escapes_the_cluster_name():
    from zpaxos.lab.bench import report

    text = report({"cluster": "a\nb.ini", "nodes": 3, "value_bytes": 16, "runs": [],
                   "cli_propose": None, "keys": "bench-0a1b2c-*"})
    assert text.splitlines()[0].startswith("cluster: a\\nb.ini (3 nodes)")


# ---------------------------------------------------------------- a node's terminal


def test_a_proposer_gone_after_its_decision_is_no_warning_on_a_nodes_terminal(tmp_path):
    """A proposer ends once a quorum answered; a slower node's reply then finds it gone.
    That is normal: no WARNING on the node's terminal (issue 26.7), only a DEBUG line.
    node2 is made the slow one: stopped (SIGSTOP) during the proposer's pause between its
    phases, so its Accept and the Decide wait in its socket until the proposer has left."""
    import signal

    c = Cluster(tmp_path, log_level="DEBUG")
    errs = [tmp_path / f"node{i}.err" for i in range(3)]
    stopped = False
    try:
        for i in range(3):
            c.start(i, stderr=errs[i])
        assert c.run("propose", "Value_A").code == 0  # the lab's ordinary proposal

        p = c.propose_bg("Value_B", "--key", "late", "--pause-between-phases", "1")
        c.wait_for(lambda: any(e.get("event") == "pause" and e.get("key") == "late"
                               for e in _events(tmp_path)), "the proposer's pause")
        c.procs[2].send_signal(signal.SIGSTOP)
        stopped = True
        r = c.finish(p)
        assert r.code == 0 and r.json["chosen"] == "Value_B", r.err
        c.procs[2].send_signal(signal.SIGCONT)
        stopped = False
        c.wait_for(lambda: (c.node_state(2, "late") or {}).get("chosen") == "Value_B",
                   "node2 learned the decision from the Decide it read late")
    finally:
        if stopped:
            c.procs[2].send_signal(signal.SIGCONT)
        c.stop_all()
    gone = [e for e in _events(tmp_path) if e.get("event") == "undeliverable"
            and e.get("process") == "node2"]
    assert gone and all(e["level"] == "DEBUG" for e in gone), gone  # it did happen
    for err in errs:
        warnings = [line for line in err.read_text().splitlines() if "WARNING" in line]
        assert not warnings, f"{err.name}: {warnings}"


def _events(d: Path) -> list[dict]:
    path = d / "paxos.log"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a line being written
    return out


# ---------------------------------------------------------------- status exit codes


def health_line(out: str) -> str:
    """The line of ``zpaxos status`` that sums up the cluster (notes such as "catching
    up: node1" may follow it while a node fetches what it missed)."""
    return next(line for line in out.splitlines()
                if line.startswith(("all ", "unreachable: ")))


def test_status_exit_code_tells_the_clusters_health(tmp_path):
    c = Cluster(tmp_path)
    try:
        c.start_all()
        # A node just started asks its peers what it missed; until they have answered,
        # status says "catching up: nodeN" (under load, often at the first look).
        r = wait_for(lambda: next((s for s in [c.run("status")]
                                   if "catching up" not in s.out), None),
                     "every node caught up after the start")
        assert (r.code, health_line(r.out)) == (0, "all 3 nodes reachable")
        c.kill(2)
        r = c.run("status")
        assert (r.code, health_line(r.out)) == (
            Exit.DEGRADED, "unreachable: node2 (2 of 3 reachable, a majority: values can still "
                           "be chosen)")
        doc = json.loads(c.run("status", "--json").out)
        assert (doc["reachable"], doc["quorum"], doc["majority_reachable"]) == (2, 2, True)
        c.kill(0)
        r = c.run("status")
        assert (r.code, health_line(r.out)) == (1, "unreachable: node0, node2 (1 of 3 "
                                                      "reachable, no majority: nothing can be "
                                                      "chosen)")
        r = c.run("status", "--json")
        assert r.code == 1 and json.loads(r.out)["majority_reachable"] is False
    finally:
        c.stop_all()
    r = c.run("status", "--timeout", "0.2")
    assert r.code == 1 and r.err == ""


# ---------------------------------------------------------------- bench leaves no litter


def test_bench_refuses_a_cluster_that_would_get_a_file_per_key(capsys):
    from tests.test_config_cli import run_cli

    code, out, err = run_cli(capsys, "bench", "--config", str(ROOT / "configs" / "cluster.ini"))
    assert (code, out) == (2, "")
    assert err == (f"zpaxos bench: error: {ROOT / 'configs' / 'cluster.ini'}: [node.0] "
                   f"value_files: '*' would give each bench key (bench-*) a file in data/node0; "
                   f"run zpaxos bench without --config (a temporary cluster), or narrow "
                   f"value_files (e.g. CISC5597)\n")


def test_bench_keys_are_plainly_its_own_and_get_no_files(tmp_path):
    from zpaxos.lab.launcher import write_config

    config = write_config(tmp_path / "c.ini", [("127.0.0.1", p) for p in free_ports(3)],
                          value_files="CISC5597")
    with LocalCluster(config, tmp_path, range(3)) as c:
        c.start_all()
        r = c.run("bench", "--proposals", "6", "--concurrency", "3", "--contended-keys", "2",
                  "--cli-runs", "1", "--race-proposers", "2", "--race-keys", "3", "--json")
        assert r.code == 0, r.err
        prefix = r.json["keys"].removesuffix("*")
        assert re.fullmatch(r"bench-[0-9a-f]{6}-", prefix)
        keys = set(c.status()["nodes"][0]["keys"])
        # 6 + 6 + 2 in the three runs, 3 raced on, 2 zpaxos propose (one untimed, first)
        assert len(keys) == 6 + 6 + 2 + 3 + 2 and all(k.startswith(prefix) for k in keys)
        race = r.json["race"]
        assert (race["proposers"], race["keys"], race["decided"]) == (2, 3, 3)
        assert sum(race["rounds"].values()) == 2 * 3  # every proposal of both proposers
        assert sum(race["won"].values()) == 3  # each key won by exactly one of them
        assert not r.err  # stderr is a pipe here: no progress bar drawn
    assert sorted(p.name for p in (tmp_path / "data").rglob("*.txt")) == []


# ---------------------------------------------------------------- the round lines


def test_round_lines_fold_each_round_into_one_line(tmp_path):
    import io
    import logging

    from zpaxos.cli.common import open_log as _logging
    from zpaxos.pictures.rounds import RoundSummary
    from zpaxos.runtime.config import load_config

    config = tmp_path / "c.ini"
    config.write_text((ROOT / "configs" / "cluster.ini").read_text()
                      .replace("level = INFO", "level = WARNING")
                      .replace("file = paxos.log", f"file = {tmp_path / 'p.log'}"))
    shown = io.StringIO()
    log = _logging(load_config(config), "proposer 9c41", False, RoundSummary(shown))

    def ev(name, level=logging.INFO, **f):
        log.event(name, level=level, key="K", **f)

    ev("round", ballot="1.9c41", round=1)
    for n in range(3):
        ev("send", type="PREPARE", peer=f"node{n}", ballot="1.9c41")
    ev("recv", type="PROMISE", peer="node0", ballot="1.9c41")
    ev("recv", type="NACK", peer="node1", ballot="1.9c41", promised="2.3f2a")
    ev("recv", type="NACK", peer="node2", ballot="1.9c41", promised="2.3f2a")
    ev("retry", ballot="1.9c41", reason="rejected by acceptor 1", backoff_s=0.0412)
    ev("round", ballot="3.9c41", round=2)
    for n in range(3):
        ev("send", type="PREPARE", peer=f"node{n}", ballot="3.9c41")
    ev("recv", type="PROMISE", peer="node0", ballot="1.9c41")  # late: an earlier round's
    for n in range(2):
        ev("recv", type="PROMISE", peer=f"node{n}", ballot="3.9c41")
    ev("adopted", value=b"Value\nA", from_ballot="2.3f2a", ballot="3.9c41")
    ev("pause", ballot="3.9c41", seconds=1.0)
    for n in range(3):
        ev("send", type="ACCEPT", peer=f"node{n}", ballot="3.9c41")
    ev("recv", type="ACCEPTED", peer="node2", ballot="3.9c41")
    ev("retry", ballot="3.9c41", reason="timeout in accept phase", backoff_s=0,
       no_reply_from=[0, 1])
    ev("round", ballot="4.9c41", round=3)
    ev("send", type="PREPARE", peer="node0", ballot="4.9c41")
    ev("gave_up", logging.WARNING, ballot="4.9c41", rounds=3,
       reason="no value chosen in 3 rounds (rejected by acceptor 0)")
    ev("recv", type="PROMISE", peer="node0", ballot="4.9c41")  # after the end: not shown
    assert shown.getvalue().splitlines() == [
        "round 1, ballot 1.9c41: Prepare to 3 nodes, 1 promise, 2 rejections (node1 promised "
        "2.3f2a): retry in 0.04 s",
        "round 2, ballot 3.9c41: Prepare to 3 nodes, 2 promises; adopted 'Value\\nA' (accepted "
        "at 2.3f2a), pause 1.0 s; Accept to 3 nodes, 1 accepted: no reply in time from node0, "
        "node1: retry at once",
        "round 3, ballot 4.9c41: Prepare to 1 node, 0 promises: gave up: no value chosen in 3 "
        "rounds (rejected by node0)",
    ]
    # The file keeps its configured level (WARNING): the summary did not lower it.
    events = [json.loads(line)["event"] for line in (tmp_path / "p.log").read_text().splitlines()]
    assert events == ["gave_up"]


# ---------------------------------------------------------------- IPv6


def test_an_ipv6_cluster_decides(tmp_path):
    from zpaxos.lab.launcher import write_config

    config = write_config(tmp_path / "c.ini", [("::1", p) for p in free_ports(3)])
    with LocalCluster(config, tmp_path, range(3)) as c:
        c.start_all()
        r = c.propose("Value_A")
        assert r.code == 0 and r.json["chosen"] == "Value_A", r.err


def test_progress_bar_only_on_a_terminal():
    import io

    from zpaxos.lab.progress import Progress

    piped = io.StringIO()
    with Progress("run", 3, piped) as bar:
        for _ in range(3):
            bar.step()
    assert piped.getvalue() == ""  # a pipe or a file gets nothing
    tty = io.StringIO()
    with Progress("run", 4, tty, every_s=0, force=True) as bar:
        bar.step(2)
        bar.step(2)
    drawn = tty.getvalue()
    assert "run [###############               ] 2/4" in drawn
    assert f"run [{'#' * 30}] 4/4" in drawn
    assert drawn.endswith("\r\x1b[K")  # wiped at the end: the report follows
