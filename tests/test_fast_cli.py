"""``zpaxos propose``'s fast path: it parses the common forms exactly as click does, hands
everything else to click, and really leaves click unloaded."""

from __future__ import annotations

import subprocess
import sys

import pytest

from zpaxos.cli import cli
from zpaxos.cli.propose import PROPOSE_OPTIONS, ProposeArgs, fast_args
from zpaxos.lab.launcher import child_env

FAST = [
    ["v"], ["v", "-q"], ["v", "--quiet", "--json"], ["--key", "k1", "v"], ["v", "--key=k-2"],
    ["v", "--config", "x.ini", "--timeout", "2.5"], ["v", "--timeout=1e-3"],
    ["v", "--max-rounds", "3", "--round-timeout", "0.5", "--backoff", "0"], ["v", "-v"],
    ["v", "--client-key", "some/file"], ["v", "--json", "--verbose"], ["v", "-q", "--quiet"],
]
CLICK = [  # help, staging, usage errors, odd forms: click parses them and says what it says
    [], ["-h"], ["v", "--help"], ["v", "-v", "-q"], ["v", "w"], ["v", "--key", "bad key"],
    ["v", "--key"], ["v", "--timeout", "0"], ["v", "--timeout", "nan"], ["v", "--timeout", "x"],
    ["v", "--max-rounds", "0"], ["v", "--max-rounds", "1.5"], ["v", "--backoff", "-1"],
    ["v", "--delay", "1"], ["v", "--prepare-delay", "1:0.5"], ["--value-file", "f"],
    ["v", "--key", "a", "--key", "b"], ["v", "-qv"], ["--", "-v"], ["-5"], ["v", "--json=1"],
    ["v", "--client-key", "."], ["v", "--client-key", ""], ["v", "--unknown"],
]


@pytest.mark.parametrize("args", FAST, ids=" ".join)
def test_fast_path_parses_as_click_does(args):
    ctx = cli.commands["propose"].make_context("propose", list(args))
    assert fast_args(list(args)) == ProposeArgs(**ctx.params)


def test_one_table_makes_the_click_options_and_the_arguments():
    """PROPOSE_OPTIONS builds the click command; ProposeArgs has a field for VALUE and
    each of its options, with click's defaults."""
    import click
    from msgspec.structs import fields

    params = cli.commands["propose"].params
    assert [p.name for p in params if isinstance(p, click.Option)] == [
        o.dest for o in PROPOSE_OPTIONS]
    assert [f.name for f in fields(ProposeArgs)] == ["value", *(o.dest for o in PROPOSE_OPTIONS)]
    ctx = cli.commands["propose"].make_context("propose", ["v"])
    assert ProposeArgs(**ctx.params) == ProposeArgs(value="v")


@pytest.mark.parametrize("args", CLICK, ids=lambda a: " ".join(a) or "(none)")
def test_anything_else_goes_to_click(args):
    assert fast_args(list(args)) is None


def test_a_fast_propose_never_loads_click(tmp_path):
    """Through the fast path to a user error: the same line as click's path prints, and
    not one click module imported on the way."""
    missing = tmp_path / "missing.ini"
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "zpaxos", "propose", "v",
                        "-q", "--config", str(missing)], capture_output=True, text=True,
                       env=child_env(), timeout=60)
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    errors = [line for line in lines if not line.startswith("import time:")]
    assert errors == [f"zpaxos propose: error: {missing}: config file not found (give one "
                      f"with --config or $ZPAXOS_CONFIG)"]
    imported = {line.split("|")[-1].strip() for line in lines if line.startswith("import time:")}
    assert "zpaxos.cli.propose" in imported
    assert not {m for m in imported if m == "click" or m.startswith("click.")}
    # The same mistake through click (help-like forms go there): the same line.
    r2 = subprocess.run([sys.executable, "-m", "zpaxos", "propose", "v", "-q", "--delay", "0",
                         "--config", str(missing)], capture_output=True, text=True,
                        env=child_env(), timeout=60)
    assert (r2.returncode, r2.stderr.splitlines()) == (2, errors)


@pytest.mark.e2e
def test_a_chosen_value_loads_only_what_a_propose_needs(tmp_path):
    """A propose that ends chosen imports none of what only a failure, another command or
    a node needs: the explanations of a failure, click, metrics, SQLite, the lock rules;
    nor ``dataclasses`` (its types are msgspec Structs: a dataclass costs about 0.7 ms to
    create at import, a Struct 0.05 ms)."""
    from zpaxos.lab.launcher import LocalCluster, free_ports, write_config

    path = write_config(tmp_path / "cluster.ini",
                        [("127.0.0.1", p) for p in free_ports(3)], value_files="")
    with LocalCluster(path, tmp_path, range(3)) as local:
        local.start_all()
        r = subprocess.run([sys.executable, "-X", "importtime", "-m", "zpaxos", "propose", "v",
                            "-q", "--config", str(path)], capture_output=True, text=True,
                           env=child_env(), timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines()
                if line.startswith("import time:")}
    assert "zpaxos.runtime.client" in imported
    unneeded = ("click", "prometheus_client", "sqlite3", "dataclasses", "socket",
                "zpaxos.pictures.explain", "zpaxos.pictures.statusview",
                "zpaxos.runtime.storage", "zpaxos.protocol.lease")
    assert not {m for m in imported if m.split(".")[0] in unneeded[:5] or m in unneeded}
    # typing_extensions (msgspec's optional helper, installed here by mypy) is kept out:
    # an import that was refused shows as a line of under 100 us with no children.
    assert "inspect" not in imported and "ast" not in imported


def test_the_fast_process_runs_without_the_cyclic_collector(monkeypatch):
    """`zpaxos propose` as a process of its own (argv from sys.argv, ended with os._exit)
    turns the cyclic collector off; a caller in the same process (argv given) keeps it."""
    import gc

    from zpaxos.cli import entry

    seen: list[bool] = []

    def leave(code: int) -> None:
        raise SystemExit(code)

    from zpaxos.cli import propose

    monkeypatch.setattr(propose, "run_propose", lambda args: seen.append(gc.isenabled()))
    monkeypatch.setattr(entry, "_leave", leave)
    # (the process's own run also keeps typing_extensions out; not this test process's)
    monkeypatch.setattr(entry, "_without_typing_extensions", lambda: None)
    monkeypatch.setattr(sys, "argv", ["zpaxos", "propose", "v", "--key", "k", "-q"])
    assert gc.isenabled()
    try:
        with pytest.raises(SystemExit):
            entry.main()
        with pytest.raises(SystemExit):
            gc.enable()
            entry.main(["propose", "v", "--key", "k", "-q"])
    finally:
        gc.enable()
    assert seen == [False, True]
