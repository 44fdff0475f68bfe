"""``zpaxos node`` with crash points placed from outside, until the runtime places them.

The runtime is meant to call :func:`zpaxos.runtime.faults.crash_point` itself (see that
module for the names and places). Until it does, the nemesis starts nodes through this
shim, which wraps the two places from the outside:

* ``before_commit`` / ``after_commit`` around the store's group commit (the node sends a
  pass's replies only after the commit returns, so "after" is before any reply);
* ``mid_value_write``: half of a value file's temporary copy written, not renamed.

If the runtime calls crash_point already, or the wrapped names are gone (the runtime
was redesigned), the shim changes nothing and only runs the CLI.

    python -m tests.nemesis.crashnode node 1 --config F     (same arguments as zpaxos)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from zpaxos.runtime.faults import crash_point

MUTANT_ENV = "ZPAXOS_NEMESIS_MUTANT"
# Deliberately broken nodes, to show the nemesis catches what it claims to catch.
MUTANTS = {
    "forget": "the group commit does nothing: a restarted node has forgotten its promises, "
              "acceptances and decisions",
}


def runtime_places_crash_points() -> bool:
    root = Path(__file__).resolve().parents[2] / "zpaxos" / "runtime"
    return any("crash_point(" in p.read_text(encoding="utf-8")
               for p in root.rglob("*.py") if p.name != "faults.py")


def install() -> bool:
    """Wrap the commit and the value-file write; False when nothing could be wrapped."""
    try:
        from zpaxos.runtime import storage, valuefiles
        store_cls = storage.SqliteStore
        vf_cls = valuefiles.ValueFiles
        save, write = store_cls.save, vf_cls._write
    except (ImportError, AttributeError):
        return False

    def save_with_crash_points(self, items, ranges=()):
        crash_point("before_commit")
        result = save(self, items, ranges)
        crash_point("after_commit")
        return result

    def write_with_crash_point(self, key, value):
        tmp = valuefiles.value_file(self.data_dir, key).with_name(f".{key}.txt.tmp")
        content = value + b"\n"
        try:
            with open(tmp, "wb") as f:
                f.write(content[: max(1, len(content) // 2)])
                f.flush()
        except OSError:
            pass
        crash_point("mid_value_write")
        return write(self, key, value)

    store_cls.save = save_with_crash_points
    vf_cls._write = write_with_crash_point
    return True


def wiring() -> str:
    """'runtime', 'shim' or 'not wired': who places the crash points."""
    if runtime_places_crash_points():
        return "runtime"
    try:
        from zpaxos.runtime import storage, valuefiles
        ok = hasattr(storage.SqliteStore, "save") and hasattr(valuefiles.ValueFiles, "_write")
    except ImportError:
        ok = False
    return "shim" if ok else "not wired"


def install_mutant(name: str) -> None:
    from zpaxos.runtime import storage

    if name == "forget":
        storage.SqliteStore.save = lambda self, items, ranges=(): None
    else:
        raise SystemExit(f"unknown mutant {name!r} (known: {', '.join(MUTANTS)})")


def main() -> None:
    if not runtime_places_crash_points():
        install()
    mutant = os.environ.get(MUTANT_ENV)
    if mutant:
        install_mutant(mutant)
    from zpaxos.cli import main as cli_main

    cli_main(sys.argv[1:])


if __name__ == "__main__":
    main()
