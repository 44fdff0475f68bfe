"""``zpaxos propose`` without click: the command's work, and a fast path to run it.

A ``zpaxos propose`` process is short-lived, so its start-up is most of its cost. This
module holds everything the command does (load the config, open the log, propose, print)
and imports nothing it does not need: not click, not the other commands, not the
round-summary printer when ``-q`` silences it. :mod:`zpaxos.cli` wraps it in its click
command; ``zpaxos.entry`` runs it straight from ``argv`` when the arguments are plainly
one of the common forms (``propose VALUE`` with ``--key``, ``--config``, ``--json``,
``-q``, ``-v``, ``--timeout``, ``--round-timeout``, ``--max-rounds``, ``--backoff``,
``--client-key``), each valid exactly as click would check it. Anything else (help, a
staging option, a repeated option, a value click would refuse) goes to click, so every
message and exit code stays click's.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

EXIT_FAILED, EXIT_USAGE, EXIT_DEGRADED, EXIT_INTERRUPTED = 1, 2, 3, 130


class Failure(Exception):
    """A user-facing failure: printed as one line, exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class Usage(Exception):
    """A usage mistake found after parsing: the click command turns it into its own
    usage error (``see 'zpaxos propose --help'``)."""


def echo(message: str, err: bool = False) -> None:
    """What ``click.echo`` does with a line of text, without importing click."""
    stream = sys.stderr if err else sys.stdout
    stream.write(message + "\n")
    stream.flush()


def _load(config: str | None) -> Any:
    from zpaxos.runtime.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as e:
        raise Failure(str(e), EXIT_USAGE) from None


def _logging(cluster: Any, process: str, quiet: bool, summary: Any = None) -> Any:
    """The process's event log: everything to the log file; on stderr every event as
    text, or (``summary``, a handler) only what that handler makes of them, or nothing
    (``quiet``)."""
    import logging

    from zpaxos.runtime.log import setup_logging

    try:
        log = setup_logging(cluster.log, process, stderr=not quiet and summary is None)
    except OSError as e:
        raise Failure(f"{cluster.path}: [log] file: cannot open {cluster.log.file} ({e.strerror})",
                      EXIT_USAGE) from None
    if summary is not None and not quiet:
        # The summary reads INFO events even when the file is configured to get fewer.
        for h in log.logger.handlers:
            h.setLevel(log.logger.level)
        log.logger.setLevel(min(log.logger.level, logging.INFO))
        log.logger.addHandler(summary)
    return log


def _named(text: str) -> str:
    from zpaxos.explain import with_node_names

    return with_node_names(text)


def run_propose(value: str | None, value_file: str | None, key: str | None, delay: float,
                pause_between_phases: float | None, prepare_delay: dict, accept_delay: dict,
                first_round: int | None, max_rounds: int | None,
                timeout: float | None, round_timeout: float | None, backoff: float | None,
                config: str | None, client_key: Path | None, as_json: bool, verbose: bool,
                quiet: bool) -> None:
    """``zpaxos propose``: the arguments already converted and checked (see zpaxos.cli)."""
    import time

    if verbose and quiet:
        raise Usage("-v and -q cannot be used together")
    data = _value(value, value_file)
    cluster = _load(config)
    ids = {n.id for n in cluster.nodes}
    for opt, delays in (("--prepare-delay", prepare_delay), ("--accept-delay", accept_delay)):
        unknown = sorted(set(delays) - ids)
        if unknown:
            raise Failure(f"{opt}: no node {unknown[0]} in {cluster.path} (nodes: "
                          f"{', '.join(map(str, sorted(ids)))})", EXIT_USAGE)
    if delay:
        time.sleep(delay)

    from zpaxos.naming import proposer_name
    from zpaxos.protocol.messages import DEFAULT_KEY
    from zpaxos.runtime.client import Client, Interrupted, Refused, options_from
    from zpaxos.runtime.config import ConfigError
    from zpaxos.runtime.sockets import SignalWakeup
    from zpaxos.runtime.staging import StagingOptions

    opts = options_from(cluster.proposer, timeout_s=timeout, max_rounds=max_rounds,
                        round_timeout_s=round_timeout, backoff_s=backoff,
                        first_round=first_round)
    staging = StagingOptions(pause_between_phases_s=pause_between_phases or 0.0,
                             prepare_delay_s=prepare_delay, accept_delay_s=accept_delay)
    import os

    client_id = os.urandom(16)
    summary = None
    if not verbose and not quiet:
        from zpaxos.pictures.rounds import RoundSummary

        summary = RoundSummary()
    log = _logging(cluster, proposer_name(client_id), quiet, summary)
    wakeup = SignalWakeup()
    wakeup.install()
    started = time.monotonic()
    key = key or DEFAULT_KEY
    outcome = None
    reach = None  # what the client knows of the silent nodes (after a failure)
    took_ms = 0.0
    try:
        # fast=False: the lab shows both phases of every proposal (no range promises).
        with Client(cluster, log, client_id, key_file=client_key, fast=False) as client:
            log.event("start", role="proposer", key=key, value=data)
            outcome = client.propose(data, key, opts, wakeup, staging)
            took_ms = (time.monotonic() - started) * 1000
            from zpaxos.explain import reach_of

            reach = reach_of(client, outcome.silent if outcome.chosen is None else ())
    except Interrupted:
        raise KeyboardInterrupt from None
    except ConfigError as e:  # the client's CURVE key
        raise Failure(str(e), EXIT_USAGE) from None
    except Refused as e:
        from zpaxos.explain import refused_line

        raise Failure(refused_line("propose", e)) from None
    finally:
        wakeup.close()
        log.event("stop", key=key, rounds=outcome.rounds if outcome else None,
                  interrupted=outcome is None or None)
    _print_outcome(outcome, took_ms, as_json, log.process, reach)
    if outcome.chosen is None:
        sys.exit(EXIT_FAILED)


def _value(value: str | None, value_file: str | None) -> bytes:
    """The value to propose: VALUE, or the bytes of --value-file (stdin for '-'), checked
    against the size limit before anything is sent."""
    from zpaxos.protocol.registry import MAX_VALUE_BYTES

    if (value is None) == (value_file is None):
        raise Usage("give the value to propose as VALUE or with --value-file "
                    "(exactly one of them)")
    if value_file is None:
        assert value is not None
        data = value.encode()
    else:
        try:
            if value_file == "-":
                data = sys.stdin.buffer.read(MAX_VALUE_BYTES + 1)
            else:
                with open(value_file, "rb") as f:
                    data = f.read(MAX_VALUE_BYTES + 1)
        except OSError as e:
            raise Failure(f"--value-file {value_file}: cannot read ({e.strerror})",
                          EXIT_USAGE) from None
    if len(data) > MAX_VALUE_BYTES:
        what = "the value" if value_file is None else f"--value-file {value_file}"
        raise Failure(f"{what}: over the {MAX_VALUE_BYTES}-byte (1 MiB) limit on a value",
                      EXIT_USAGE)
    return data


def _print_outcome(o: Any, elapsed_ms: float, as_json: bool, proposer: str,
                   reach: Any = None) -> None:
    """``reach``: what the client knew of the silent nodes (explain.Reach)."""
    import json

    from zpaxos.naming import node_name
    from zpaxos.printable import printable
    from zpaxos.runtime.log import show_value

    silent = [node_name(n) for n in o.silent] if o.chosen is None else []
    told_by = node_name(o.told_by) if o.how == "already" and o.told_by is not None else None
    chosen_at = None if o.chosen_ballot.is_zero else str(o.chosen_ballot)
    if as_json:
        echo(json.dumps({
            "key": o.key, "proposed": show_value(o.proposed), "chosen": show_value(o.chosen),
            "own": o.own, "how": o.how or None, "chosen_ballot": chosen_at,
            "told_by": told_by, "ballot": str(o.ballot), "rounds": o.rounds,
            "elapsed_ms": round(elapsed_ms, 1), "reason": _named(o.reason),
            "no_reply_from": silent, "proposer": proposer,
        }))
        return
    if o.chosen is None:
        from zpaxos.explain import Reach, failure_line

        echo(failure_line(f"no value chosen for {printable(o.key)}", o.reason, o.silent,
                          reach or Reach()), err=True)
        return
    echo(result_line(o, told_by, elapsed_ms))


def result_line(o: Any, told_by: str | None, elapsed_ms: float) -> str:
    """The chosen value and how it came to be, telling apart the three cases a student
    meets: chosen now with this proposer's value; chosen now with a value it had to
    adopt; already chosen (before it came, or by another proposer while it waited),
    whatever it proposed. The ballot is the one that chose the value, not merely this
    proposer's last one."""
    from zpaxos.printable import printable, value_text

    at = "ballot unknown" if o.chosen_ballot.is_zero else f"ballot {o.chosen_ballot}"
    took = f"{o.rounds} round{'s' if o.rounds != 1 else ''}, {elapsed_ms:.0f} ms"
    head = f"{printable(o.key)} = {value_text(o.chosen)}"
    proposed = value_text(o.proposed)
    if o.how == "already":
        who = f" ({told_by} said so)" if told_by else ""
        mine = "it proposed the same value" if o.own else f"it proposed {proposed}"
        return f"{head}: already chosen, at {at}{who}; {mine}; {took}"
    if o.own:
        return f"{head}: chosen now, its own value; {at}, {took}"
    return (f"{head}: chosen now, an earlier proposal's value it adopted (it proposed "
            f"{proposed}); {at}, {took}")


# ---------------------------------------------------------------- the fast path

# option -> (parameter, conversion); a conversion returns None for "let click say why".
_FLOAT_RANGES = {"--timeout": ("timeout", 0.001), "--round-timeout": ("round_timeout", 0.001),
                 "--backoff": ("backoff", 0.0)}
_FLAGS = {"-q": "quiet", "--quiet": "quiet", "-v": "verbose", "--verbose": "verbose",
          "--json": "as_json"}
_VALUED = ("--key", "--config", "--client-key", "--max-rounds", *_FLOAT_RANGES)


def _seconds(raw: str, low: float) -> float | None:
    try:
        v = float(raw)
    except ValueError:
        return None
    return v if low <= v <= 1e9 else None  # click.FloatRange(min=low, max=1e9); NaN fails


def fast_args(args: list[str]) -> dict[str, Any] | None:
    """``run_propose``'s arguments for ``args`` (after ``propose``), or None when click
    should parse them (anything unusual, or anything click would reject)."""
    import os

    kw: dict[str, Any] = dict(
        value=None, value_file=None, key=None, delay=0.0, pause_between_phases=None,
        prepare_delay={}, accept_delay={}, first_round=None, max_rounds=None, timeout=None,
        round_timeout=None, backoff=None, config=None, client_key=None, as_json=False,
        verbose=False, quiet=False)
    seen: set[str] = set()
    i = 0
    while i < len(args):
        a = args[i]
        name, eq, raw = a.partition("=") if a.startswith("--") else (a, "", "")
        if name in seen:
            return None  # a repeated option: click's rules
        if name in _FLAGS and not eq:
            kw[_FLAGS[name]] = True
        elif name in _VALUED:
            if not eq:
                i += 1
                if i == len(args):
                    return None
                raw = args[i]
            if name == "--key":
                from zpaxos.protocol.messages import key_problem

                if key_problem(raw):
                    return None
                kw["key"] = raw
            elif name == "--config":
                kw["config"] = raw
            elif name == "--client-key":
                if not raw or os.path.isdir(raw):
                    return None  # click.Path(dir_okay=False) says why
                kw["client_key"] = Path(raw)
            elif name == "--max-rounds":
                try:
                    n = int(raw)
                except ValueError:
                    return None
                if n < 1:
                    return None
                kw["max_rounds"] = n
            else:
                param, low = _FLOAT_RANGES[name]
                v = _seconds(raw, low)
                if v is None:
                    return None
                kw[param] = v
        elif a.startswith("-") or kw["value"] is not None:
            return None  # help, another option, "--", a second argument
        else:
            kw["value"] = a
            name = "VALUE"
        seen.add(name)
        i += 1
    if kw["value"] is None or (kw["verbose"] and kw["quiet"]):
        return None
    return kw
