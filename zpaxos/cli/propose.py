"""``zpaxos propose``: its options as one table, its work, and a fast path to run it.

A ``zpaxos propose`` process is short-lived, so its start-up is most of its cost. This
module holds everything the command does (load the config, open the log, propose, print)
and imports nothing it does not need: not click, not the other commands, not the
round-summary printer when ``-q`` silences it.

:data:`PROPOSE_OPTIONS` declares every option once. :func:`command` builds the click
command from it (zpaxos/cli/app.py registers it); :func:`fast_args` parses ``argv`` from
the same table when it is plainly one of the common forms (every option whose ``fast`` is
true, each value valid exactly as click would check it), and ``zpaxos.cli.entry`` then
runs :func:`run_propose` without loading click. Anything else (help, a staging option, a
repeated option, a value click would refuse) goes to click, so every message and exit code
stays click's. An A/B run of whole processes (README, "A fast zpaxos propose") shows what
skipping click is worth.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec import field

from zpaxos.cli.common import Failure, Usage, echo, load_cluster, open_log
from zpaxos.cli.options import CLIENT_KEY, CONFIG, JSON, Option
from zpaxos.runtime.exits import Exit

if TYPE_CHECKING:
    import click

    from zpaxos.pictures.explain import Reach
    from zpaxos.protocol.core import Outcome

_STAGING = "Staging: "
PROPOSE_OPTIONS: tuple[Option, ...] = (
    Option(("--value-file",), "value_file", "text", metavar="PATH", fast=False,
           help="Read the value from PATH ('-' for stdin) instead of VALUE."),
    Option(("--key",), "key", "key", help="Instance key (default CISC5597); also the value "
                                          "file's name."),
    Option(("--delay",), "delay", "seconds", metavar="S", default=0.0, fast=False,
           help="Wait S seconds before proposing (the lab's 'sleep 1 &&')."),
    Option(("--pause-between-phases",), "pause_between_phases", "seconds", metavar="S",
           fast=False, help=f"{_STAGING}wait S seconds after a quorum of promises, every "
                            f"round."),
    Option(("--prepare-delay",), "prepare_delay", "node_delays", metavar="NODE:S", fast=False,
           help=f"{_STAGING}send each Prepare to NODE S seconds late (repeatable)."),
    Option(("--accept-delay",), "accept_delay", "node_delays", metavar="NODE:S", fast=False,
           help=f"{_STAGING}send each Accept to NODE S seconds late (repeatable)."),
    Option(("--first-round",), "first_round", "count", metavar="N", low=1, high=1 << 31,
           fast=False, help=f"{_STAGING}start at round N, so this proposer's ballots are "
                            f"above (or below) another's whatever the random proposer ids."),
    Option(("--max-rounds",), "max_rounds", "count", metavar="N", low=1, high=None,
           help="Give up after N ballots (default from the config)."),
    Option(("--timeout",), "timeout", "seconds", metavar="S", low=0.001,
           help="Whole-proposal deadline in seconds (default from the config)."),
    Option(("--round-timeout",), "round_timeout", "seconds", metavar="S", low=0.001,
           help="Wait this long for a quorum in one phase."),
    Option(("--backoff",), "backoff", "seconds", metavar="S",
           help="Base of the randomized retry backoff; 0 retries at once."),
    CONFIG,
    CLIENT_KEY,
    JSON,
    Option(("-v", "--verbose"), "verbose", "flag",
           help="Show every message sent and received on stderr, not one line per round."),
    Option(("-q", "--quiet"), "quiet", "flag",
           help="Print only the result: nothing on stderr (the log file gets everything)."),
)


class ProposeArgs(msgspec.Struct, frozen=True):
    """``zpaxos propose``'s arguments, converted and checked: VALUE and one field per
    option of :data:`PROPOSE_OPTIONS` (tests/test_fast_cli.py checks they match)."""

    value: str | None = None
    value_file: str | None = None
    key: str | None = None
    delay: float = 0.0
    pause_between_phases: float | None = None
    prepare_delay: dict[Hashable, float] = field(default_factory=dict)  # node id -> s
    accept_delay: dict[Hashable, float] = field(default_factory=dict)
    first_round: int | None = None
    max_rounds: int | None = None
    timeout: float | None = None
    round_timeout: float | None = None
    backoff: float | None = None
    config: str | None = None
    client_key: Path | None = None
    as_json: bool = False
    verbose: bool = False
    quiet: bool = False


def command() -> click.Command:
    """The click command, built from :data:`PROPOSE_OPTIONS`."""
    import click

    from zpaxos.cli.options import apply

    @click.command("propose")
    @click.argument("value", required=False)
    @apply(PROPOSE_OPTIONS)
    def propose(**params: Any) -> None:
        """Propose VALUE; print the value chosen and how.

        The value chosen is this one (chosen now), an earlier proposal's value it had to
        adopt (chosen now), or a value already chosen; the ballot printed is the one that
        chose it.

        On stderr it shows one line per round (its Prepares and Promises, Accepts and
        Accepteds); -v shows every message instead, -q nothing. The log file always gets
        every event.
        """
        try:
            run_propose(ProposeArgs(**params))
        except Usage as e:
            raise click.UsageError(str(e)) from None

    return propose


def _named(text: str) -> str:
    from zpaxos.pictures.explain import with_node_names

    return with_node_names(text)


def run_propose(a: ProposeArgs) -> None:
    """``zpaxos propose``: the arguments already converted and checked."""
    import time

    if a.verbose and a.quiet:
        raise Usage("-v and -q cannot be used together")
    data = _value(a.value, a.value_file)
    cluster = load_cluster(a.config)
    ids = {n.id for n in cluster.nodes}
    for opt, delays in (("--prepare-delay", a.prepare_delay),
                        ("--accept-delay", a.accept_delay)):
        unknown = sorted(n for n in delays if isinstance(n, int) and n not in ids)
        if unknown:
            raise Failure(f"{opt}: no node {unknown[0]} in {cluster.path} (nodes: "
                          f"{', '.join(map(str, sorted(ids)))})", Exit.USAGE)
    if a.delay:
        time.sleep(a.delay)

    import os

    from zpaxos.hosts.staging import StagingOptions
    from zpaxos.naming import proposer_name
    from zpaxos.protocol.messages import DEFAULT_KEY
    from zpaxos.runtime.client import Client, Interrupted, Refused, options_from
    from zpaxos.runtime.config import ConfigError
    from zpaxos.runtime.sockets import SignalWakeup

    opts = options_from(cluster.proposer, timeout_s=a.timeout, max_rounds=a.max_rounds,
                        round_timeout_s=a.round_timeout, backoff_s=a.backoff,
                        first_round=a.first_round)
    staging = StagingOptions(pause_between_phases_s=a.pause_between_phases or 0.0,
                             prepare_delay_s=a.prepare_delay, accept_delay_s=a.accept_delay)
    client_id = os.urandom(16)
    summary = None
    if not a.verbose and not a.quiet:
        from zpaxos.pictures.rounds import RoundSummary

        summary = RoundSummary()
    log = open_log(cluster, proposer_name(client_id), a.quiet, summary)
    wakeup = SignalWakeup()
    wakeup.install()
    started = time.monotonic()
    key = a.key or DEFAULT_KEY
    outcome: Outcome | None = None
    reach = None  # what the client knows of the silent nodes (after a failure)
    took_ms = 0.0
    try:
        # fast=False: the lab shows both phases of every proposal (no range promises).
        with Client(cluster, log, client_id, key_file=a.client_key, fast=False) as client:
            log.event("start", role="proposer", key=key, value=data)
            outcome = client.propose(data, key, opts, wakeup, staging)
            took_ms = (time.monotonic() - started) * 1000
            if outcome.chosen is None:  # (only a failure's line uses it: not imported else)
                from zpaxos.pictures.explain import reach_of

                reach = reach_of(client, outcome.silent)
    except Interrupted:
        raise KeyboardInterrupt from None
    except ConfigError as e:  # the client's CURVE key
        raise Failure(str(e), Exit.USAGE) from None
    except ValueError as e:  # what the client refuses to send (a chain key's junk)
        raise Failure(str(e), Exit.USAGE) from None
    except Refused as e:
        from zpaxos.pictures.explain import refused_line

        raise Failure(refused_line("propose", e)) from None
    finally:
        wakeup.close()
        log.event("stop", key=key, rounds=outcome.rounds if outcome else None,
                  interrupted=outcome is None or None)
    _print_outcome(outcome, took_ms, a.as_json, log.process, reach)
    if outcome.chosen is None:
        sys.exit(Exit.FAILED)


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
                          Exit.USAGE) from None
    if len(data) > MAX_VALUE_BYTES:
        what = "the value" if value_file is None else f"--value-file {value_file}"
        raise Failure(f"{what}: over the {MAX_VALUE_BYTES}-byte (1 MiB) limit on a value",
                      Exit.USAGE)
    return data


def _print_outcome(o: Outcome, elapsed_ms: float, as_json: bool, proposer: str,
                   reach: Reach | None = None) -> None:
    """``reach``: what the client knew of the silent nodes (explain.Reach)."""
    from zpaxos.naming import as_node_name
    from zpaxos.printable import printable
    from zpaxos.runtime.log import show_value

    silent = [as_node_name(n) for n in o.silent] if o.chosen is None else []
    told_by = as_node_name(o.told_by) if o.how == "already" and o.told_by is not None else None
    chosen_at = None if o.chosen_ballot.is_zero else str(o.chosen_ballot)
    if as_json:
        import json

        echo(json.dumps({
            "key": o.key, "proposed": show_value(o.proposed), "chosen": show_value(o.chosen),
            "own": o.own, "how": o.how or None, "chosen_ballot": chosen_at,
            "told_by": told_by, "ballot": str(o.ballot), "rounds": o.rounds,
            "elapsed_ms": round(elapsed_ms, 1), "reason": _named(o.reason),
            "no_reply_from": silent, "proposer": proposer,
        }))
        return
    if o.chosen is None:
        from zpaxos.pictures.explain import Reach, failure_line

        echo(failure_line(f"no value chosen for {printable(o.key)}", o.reason, o.silent,
                          reach or Reach()), err=True)
        return
    echo(result_line(o, told_by, elapsed_ms))


def result_line(o: Outcome, told_by: str | None, elapsed_ms: float) -> str:
    """The chosen value and how it came to be, telling apart the three cases a student
    meets: chosen now with this proposer's value; chosen now with a value it had to
    adopt; already chosen (before it came, or by another proposer while it waited),
    whatever it proposed. The ballot is the one that chose the value, not merely this
    proposer's last one."""
    from zpaxos.printable import printable, value_text

    at = "ballot unknown" if o.chosen_ballot.is_zero else f"ballot {o.chosen_ballot}"
    took = f"{o.rounds} round{'s' if o.rounds != 1 else ''}, {elapsed_ms:.0f} ms"
    head = f"{printable(o.key)} = {value_text(o.chosen or b'')}"  # chosen: not None here
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

_FAST = {decl: opt for opt in PROPOSE_OPTIONS if opt.fast for decl in opt.decls}


def fast_args(args: list[str]) -> ProposeArgs | None:
    """``run_propose``'s arguments for ``args`` (after ``propose``), or None when click
    should parse them (anything unusual, or anything click would reject)."""
    kw: dict[str, Any] = {}
    i = 0
    while i < len(args):
        a = args[i]
        name, eq, raw = a.partition("=") if a.startswith("--") else (a, "", "")
        opt = _FAST.get(name)
        if opt is None:
            if a.startswith("-") or "value" in kw:
                return None  # help, another option, "--", a second argument
            kw["value"] = a
        elif opt.kind == "flag":
            if eq:
                return None  # --json=1: click says why
            kw[opt.dest] = True
        else:
            if opt.dest in kw:
                return None  # a repeated option: click's rules
            if not eq:
                i += 1
                if i == len(args):
                    return None
                raw = args[i]
            v = opt.parse(raw)
            if v is None:
                return None
            kw[opt.dest] = v
        i += 1
    if "value" not in kw or (kw.get("verbose") and kw.get("quiet")):
        return None
    return ProposeArgs(**kw)
