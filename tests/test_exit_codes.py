"""Exit codes are one IntEnum (zpaxos/runtime/exits.py): each number means one thing for
every command, the docs' table (docs/cli.md) is generated from it, and no command exits with a
number of its own."""

from __future__ import annotations

import re

from tests.harness import ROOT
from zpaxos.runtime import storage_errors
from zpaxos.runtime.exits import MEANING, Exit, markdown_table
from zpaxos.runtime.faults import CRASH_EXIT_CODE

REFERENCE = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")


def test_the_docs_table_is_the_enum():
    body = REFERENCE.split("### Exit codes\n", 1)[1]
    table = body[body.index("| code |"):]
    table = table[: table.index("\n\n") + 1]
    assert table == markdown_table(), (
        "docs/cli.md's '### Exit codes' table differs from zpaxos/runtime/exits.py; paste:\n"
        + markdown_table())


def test_every_code_but_the_tests_crash_point_is_documented():
    assert set(MEANING) == set(Exit) - {Exit.CRASH_POINT}
    assert CRASH_EXIT_CODE is Exit.CRASH_POINT


def test_storage_errors_exit_with_the_enum():
    classes = [c for c in vars(storage_errors).values()
               if isinstance(c, type) and issubclass(c, storage_errors.StorageError)]
    assert len(classes) >= 8
    for c in classes:
        assert isinstance(c.exit_code, Exit), c


def test_no_command_declares_a_number_of_its_own():
    """No EXIT_* constants, no sys.exit(<digit>) under zpaxos/cli, lab or pictures."""
    pattern = re.compile(r"\bEXIT_[A-Z]+\s*=|sys\.exit\(\d|os\._exit\(\d|exit_code\s*=\s*\d")
    offenders = []
    for d in ("cli", "lab", "pictures", "runtime"):
        for path in (ROOT / "zpaxos" / d).rglob("*.py"):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []
