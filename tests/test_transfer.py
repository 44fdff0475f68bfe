"""Export and import end to end: real node processes, the real CLI, two clusters.

Also the pure parts: the line format, the merged walk over several nodes' pages (with a
small page size, so a walk spans many pages and nothing is listed twice or missed), and
that a bad line stops an import before anything is proposed.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.harness import Cluster
from zpaxos.client import Client, load_config
from zpaxos.protocol.messages import ZERO, SyncReply, SyncRequest
from zpaxos.runtime.exits import Exit
from zpaxos.runtime.transfer import TransferError, decided_keys, parse_line, validate_file

# --------------------------------------------------------------------------- lines


def test_parse_line_round_trips_text_bytes_and_deleted_registers() -> None:
    assert parse_line('{"key": "k", "value": "v\\nw"}').value == b"v\nw"
    assert parse_line('{"key": "k", "value_b64": "/wA="}').value == b"\xff\x00"
    r = parse_line('{"register": "r", "version": 4, "value": null}')
    assert r.register and r.value is None


@pytest.mark.parametrize("line, why", [
    ("not json", "not JSON"),
    ("[1]", "not a JSON object"),
    ('{"key": "k"}', 'no "value"'),
    ('{"key": "k", "register": "r", "value": "v"}', "exactly one"),
    ('{"key": "a b", "value": "v"}', "bad key name"),
    ('{"key": "k", "value": null}', "a key needs a value"),
    ('{"key": "k", "value_b64": "!!"}', "not base64"),
    ('{"key": "k", "value": "v", "extra": 1}', "unknown field 'extra'"),
    ('{"key": "k", "value": 3}', "not a string"),
])
def test_parse_line_refuses(line: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_line(line)


def test_validate_names_the_first_bad_line(tmp_path: Path) -> None:
    f = tmp_path / "x.jsonl"
    f.write_text('{"key": "a", "value": "1"}\n\n{"key": "b"}\n')
    with open(f) as s, pytest.raises(TransferError, match=r"^line 3: "):
        validate_file(s)


# --------------------------------------------------------------------------- the walk


class FakeNodes:
    """Stands in for a Client: each node answers a SyncRequest from its own sorted keys,
    ``page`` at a time; ``silent`` nodes never answer. Counts what is buffered."""

    def __init__(self, holdings: list[list[str]], page: int, silent: set[int] = frozenset()):
        self.holdings, self.page, self.silent = holdings, page, silent
        self.cluster = SimpleNamespace(nodes=[SimpleNamespace(id=i) for i in range(len(holdings))])
        self.quorum = len(holdings) // 2 + 1
        self.sockets = self
        self.queue: list = []

    def send(self, node: int, req: SyncRequest) -> None:
        if node in self.silent:
            return
        keys = [k for k in self.holdings[node] if k > req.after]
        chosen = tuple((k, k.encode(), ZERO) for k in keys[:self.page])
        self.queue.append((node, SyncReply(req.after, chosen, len(keys) > self.page)))

    def poll(self, timeout: float) -> list:
        out, self.queue = self.queue, []
        return out


def test_walk_is_the_union_in_order_with_bounded_buffers() -> None:
    everyone = [f"k{i:05d}" for i in range(5000)]
    holdings = [everyone[::2] + ["only0"], everyone[1::2], everyone[::3]]
    holdings = [sorted(h) for h in holdings]
    fake = FakeNodes(holdings, page=7)
    walk = decided_keys(fake)  # type: ignore[arg-type]
    seen, most = [], 0
    for entry in walk:
        seen.append(entry[0])
        most = max(most, max(len(b) for b in walk.buf.values()))
    assert seen == sorted(set(everyone) | {"only0"})  # every key once, in order
    assert most <= 2 * 7  # at most two pages per node held, whatever the key count


def test_walk_leaves_out_a_silent_node_but_needs_a_majority() -> None:
    walk = decided_keys(FakeNodes([["a", "b"], ["b", "c"], ["z"]], 1, silent={2}))
    walk.timeout_s = 0.05
    assert [e[0] for e in walk] == ["a", "b", "c"]
    walk = decided_keys(FakeNodes([["a"], ["b"], ["c"]], 1, silent={1, 2}))
    walk.timeout_s = 0.05
    with pytest.raises(TransferError, match="only 1 of 3 nodes answered"):
        list(walk)


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def two_clusters(tmp_path: Path):
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    src, dst = Cluster(tmp_path / "src", log_level="WARNING"), \
        Cluster(tmp_path / "dst", log_level="WARNING")
    try:
        src.start_all()
        dst.start_all()
        yield src, dst
    finally:
        src.stop_all()
        dst.stop_all()


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.e2e
def test_export_then_import_into_another_cluster(two_clusters, tmp_path: Path) -> None:
    src, dst = two_clusters
    items = [(f"job-{i:04d}", f"value {i}") for i in range(1200)]  # > 2 sync pages
    items += [("odd", b"\xff\xfe")]
    with Client(load_config(src.config)) as c:
        assert all(o.chosen is not None for o in c.propose_many(items))
        c.set("cfg", "one")
        c.set("gone", "x")
        c.delete("gone")
    # The client took the range "job-" on every node (its fast path): status shows it.
    r = src.run("status", "--ranges")
    assert "range promises: node0 1, node1 1, node2 1" in r.out, r.out
    assert [ln.split()[:2] for ln in r.out.splitlines() if "job-*" in ln] == \
        [["node0", "job-*"], ["node1", "job-*"], ["node2", "job-*"]]
    doc = src.run("status", "--json").json
    assert [n["ranges"][0]["prefix"] for n in doc["nodes"]] == ["job-"] * 3
    assert all(n["counters"]["ranges"] == 1 for n in doc["nodes"])
    out = tmp_path / "all.jsonl"
    r = src.run("export", "--registers", "--out", str(out))
    assert r.code == 0, r.err
    got = lines(out)
    keys = {d["key"]: d for d in got if "key" in d}
    assert len(keys) == 1201 and len(got) == 1203  # each once
    assert keys["job-0007"] == {"key": "job-0007", "value": "value 7"}
    assert keys["odd"] == {"key": "odd", "value_b64": "//4="}
    regs = {d["register"]: d for d in got if "register" in d}
    assert regs["cfg"] == {"register": "cfg", "version": 1, "value": "one"}
    assert regs["gone"] == {"register": "gone", "version": 2, "value": None}
    assert "exported 1201 keys and 2 registers" in r.err
    # --keys filters; without --registers, no registers.
    r = src.run("export", "--keys", "job-000?")
    assert r.code == 0 and [json.loads(x)["key"] for x in r.out.splitlines()] == \
        [f"job-000{i}" for i in range(10)]

    # The target already decided one key differently and holds one register differently.
    with Client(load_config(dst.config)) as c:
        c.propose("other", "job-0003")
        c.propose("value 4", "job-0004")
        c.set("cfg", "mine")
    r = dst.run("import", str(out))
    assert r.code == Exit.CONFLICT, r.err
    assert "differs: key job-0003: decided 'other', the file has 'value 3'; kept" in r.err
    assert "differs: register cfg: holds 'mine' (version 1), the file has 'one'; kept" in r.err
    assert ("1201 keys and 2 registers" in r.err and "1199 imported" in r.err
            and "2 already the same" in r.err and "2 decided differently" in r.err)
    again = tmp_path / "dst.jsonl"
    assert dst.run("export", "--registers", "--out", str(again)).code == 0
    dkeys = {d["key"]: d for d in lines(again) if "key" in d}
    assert dkeys["job-0003"]["value"] == "other"  # never overwritten
    assert dkeys["odd"] == keys["odd"] and dkeys["job-1199"] == keys["job-1199"]
    # Importing again changes nothing and says so.
    r = dst.run("import", str(out))
    assert r.code == Exit.CONFLICT and "0 imported" in r.err and "1201 already the same" in r.err


@pytest.mark.e2e
def test_import_checks_every_line_before_proposing(two_clusters, tmp_path: Path) -> None:
    _, dst = two_clusters
    f = tmp_path / "bad.jsonl"
    f.write_text('{"key": "first", "value": "1"}\n{"key": "second", "value": 2}\n')
    r = dst.run("import", str(f))
    assert r.code == 2
    assert r.err.strip() == (f'zpaxos import: error: {f}: line 2: "value" is not a string; '
                             f"nothing was imported")
    assert dst.run("export").out == ""  # "first" was not proposed
    r = dst.run("import", str(tmp_path / "missing.jsonl"))
    assert r.code == 2 and "cannot read" in r.err and "Traceback" not in r.err


@pytest.mark.e2e
def test_export_needs_a_majority(tmp_path: Path) -> None:
    c = Cluster(tmp_path, log_level="WARNING")
    try:
        c.start(0)
        r = c.run("export", "--out", str(tmp_path / "x.jsonl"))
        assert r.code == 1
        assert r.err.strip() == ("zpaxos export: error: only 1 of 3 nodes answered; a majority "
                                 "must, so that no decided key is missed")
        assert not (tmp_path / "x.jsonl").exists()
    finally:
        c.stop_all()
