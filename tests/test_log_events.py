"""Every event kind is declared once (zpaxos/runtime/logevents.py); the code logs only
kinds from that table, and the docs' list of log events (docs/how-it-works.md) is that table."""

from __future__ import annotations

import re

from tests.harness import ROOT
from tests.test_readme import section
from zpaxos.runtime.logevents import EVENT_KINDS, LOGGED, TYPED


def logged_by_name() -> set[str]:
    """Every ``.event("name", ...)`` in the code (docstrings included)."""
    names: set[str] = set()
    for path in (ROOT / "zpaxos").rglob("*.py"):
        names |= set(re.findall(r"\.event\(\s*\"([a-z_]+)\"", path.read_text()))
    return names


def test_the_code_logs_only_kinds_of_the_table():
    found = logged_by_name()
    assert {"send", "recv", "value_file"} <= found  # the scan finds events at all
    assert found - set(EVENT_KINDS) == set()


def test_every_kind_of_the_table_is_logged_somewhere():
    assert set(LOGGED) - logged_by_name() == set()
    assert {"round", "retry", "chosen", "learned"} <= set(TYPED)


def test_the_readme_lists_exactly_the_table():
    paragraph = section("Logs").strip().split("\n\n")[0]
    documented = {w for w in re.findall(r"`([^`]+)`", paragraph) if re.fullmatch(r"[a-z_]+", w)}
    assert documented == set(EVENT_KINDS)


def test_a_json_line_is_one_compact_line_that_json_reads_back():
    """The JSON format (msgspec's encoder): one line, compact, non-ASCII kept, a newline
    or quote in a field escaped, bytes and ballots as text, None fields left out."""
    import json
    import logging

    from zpaxos.protocol.messages import Ballot
    from zpaxos.runtime.log import _JsonFormatter

    record = logging.LogRecord("zpaxos.x", logging.WARNING, __file__, 1, 'said "hi"\n',
                               None, None)
    record.created = 1764226800.1234567
    record.event, record.process_name = "chosen", "node0"
    record.fields = {"key": "k", "value": b"caf\xc3\xa9\nx\xff", "ballot": Ballot(3, b"\x0a" * 16),
                     "ids": frozenset({1}), "none": None, "n": (1 << 63) - 1}
    line = _JsonFormatter().format(record)
    assert "\n" not in line and ", " not in line and "café" in line
    assert json.loads(line) == {
        "ts": 1764226800.123457, "process": "node0", "level": "WARNING", "event": "chosen",
        "key": "k", "value": "café\nx\\xff", "ballot": str(Ballot(3, b"\x0a" * 16)),
        "ids": [1], "n": (1 << 63) - 1, "msg": 'said "hi"\n'}
