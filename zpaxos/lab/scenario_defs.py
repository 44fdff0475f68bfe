"""The scenarios: the lab's nine (1-9), the register race (10), catching up (11), a
lock's hand-over (12, in lock_scenario.py) and membership (13-15,
zpaxos/lab/scenario_members.py).

Each is a function of a :class:`~zpaxos.lab.scenario_kit.Ctx` that drives the running
cluster, checks its outcome against what Paxos guarantees (raising Failed when it does
not hold) and returns one line saying what happened. The lists at the end number them;
the runner (scenarios.py) runs them.

The staged orderings (4-6) use the proposer's staging options with delays of seconds,
far longer than a whole proposal takes on a quiet machine, so a slow, loaded machine
still produces the same ordering.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from zpaxos.lab.launcher import wait_for
from zpaxos.lab.lock_scenario import LOCK_SCENARIOS
from zpaxos.lab.scenario_kit import Ctx, Failed, check, finish, won
from zpaxos.lab.scenario_members import s13_grow, s14_remove, s15_replace
from zpaxos.naming import node_name
from zpaxos.protocol.messages import DEFAULT_KEY

STAGE_S = 3.0  # how late a staged message arrives
PAUSE_S = 1.0  # livelock: each proposer's pause between its phases


# ---------------------------------------------------------------- the scenarios


def s1_single(ctx: Ctx) -> str:
    a = ctx.propose("Value_A", DEFAULT_KEY)
    won(a, "Value_A", True)
    ctx.chosen_everywhere(DEFAULT_KEY, "Value_A")
    for node in ctx.cfg.nodes:
        f = ctx.workdir / "data" / node_name(node.id) / f"{DEFAULT_KEY}.txt"
        try:
            wait_for(f.is_file, f"{f}", 10)
        except TimeoutError as e:
            raise Failed(str(e)) from None
        check(f.read_text().strip() == "Value_A", f"{f} holds {f.read_text()!r}")
    ctx.row.chosen, ctx.row.rounds = a["chosen"], str(a["rounds"])
    return f"Value_A chosen in {a['rounds']} round; {DEFAULT_KEY}.txt on every node"


def _first_wins(ctx: Ctx, key: str, first: str, second: str) -> str:
    p1 = ctx.propose_bg(first, key)
    p2 = ctx.propose_bg(second, key, "--delay", "1")
    d1, d2 = finish(ctx, p1, first), finish(ctx, p2, second)
    won(d1, first, True)
    won(d2, first, False)
    ctx.chosen_everywhere(key, first)
    ctx.row.chosen, ctx.row.rounds = first, f"{d1['rounds']}+{d2['rounds']}"
    if d2.get("how") == "already":
        return (f"{first} chosen; the later proposer found it already chosen "
                f"(told by {d2.get('told_by') or 'a node'}) and reports it")
    return f"{first} chosen; the later proposer adopted it ({d2['reason']})"


def s2_a_then_b(ctx: Ctx) -> str:
    return _first_wins(ctx, "lab-2-a-then-b", "Value_A", "Value_B")


def s3_b_then_a(ctx: Ctx) -> str:
    return _first_wins(ctx, "lab-3-b-then-a", "Value_B", "Value_A")


def _accepts_only_at_node0(ctx: Ctx) -> list[str]:
    args = []
    for i in range(1, ctx.n):
        args += ["--accept-delay", f"{i}:{STAGE_S:g}"]
    return args


# Which of two proposers holds the higher ballot would otherwise depend on their random
# ids: B starts at round 2, so its first ballot is above A's first (1.x) in every run.
B_ABOVE_A = ("--first-round", "2")


def s4_minority_seen(ctx: Ctx) -> str:
    key = "p24-minority-seen"
    a = ctx.propose_bg("Value_A", key, *_accepts_only_at_node0(ctx))
    ctx.accepted_by(0, key, "Value_A")
    # B's quorum is the first `quorum` nodes, which include node0 and its accepted value.
    late = [arg for i in range(ctx.quorum, ctx.n)
            for arg in ("--prepare-delay", f"{i}:{STAGE_S:g}")]
    b = ctx.propose("Value_B", key, *B_ABOVE_A, *late)
    da = finish(ctx, a, "Value_A")
    won(b, "Value_A", False)
    won(da, "Value_A", True)
    check(b["rounds"] == 1, f"B's ballot is above A's, yet B needed {b['rounds']} rounds")
    adopted = ctx.log().events(key=key, process=b["proposer"], name="adopted")
    check(bool(adopted) and adopted[0].get("value") == "Value_A",
          "B never logged adopting Value_A")
    ctx.chosen_everywhere(key, "Value_A")
    ctx.row.chosen, ctx.row.rounds = "Value_A", f"A:{da['rounds']} B:{b['rounds']}"
    return "B's Prepare found Value_A at node0 and adopted it; both report Value_A"


def s5_minority_missed(ctx: Ctx) -> str:
    key = "p25-minority-missed"
    a = ctx.propose_bg("Value_A", key, *_accepts_only_at_node0(ctx))
    ctx.accepted_by(0, key, "Value_A")
    b = ctx.propose("Value_B", key, *B_ABOVE_A, "--prepare-delay", f"0:{STAGE_S:g}")
    da = finish(ctx, a, "Value_A")
    won(b, "Value_B", True)
    won(da, "Value_B", False)
    check(b["rounds"] == 1, f"B's ballot is above A's, yet B needed {b['rounds']} rounds")
    log = ctx.log()
    a_ballots = {e["ballot"] for e in log.events(key=key, process=da["proposer"], name="send",
                                                 type="ACCEPT")}
    for i in range(1, ctx.n):
        took = [e for e in log.events(key=key, process=node_name(i), name="send",
                                      type="ACCEPTED") if e.get("ballot") in a_ballots]
        check(not took, f"{node_name(i)} accepted A's ballot; B's Prepare should have overtaken it")
    ctx.chosen_everywhere(key, "Value_B")
    ctx.row.chosen, ctx.row.rounds = "Value_B", f"A:{da['rounds']} B:{b['rounds']}"
    return "B's Prepare overtook A's Accepts; B chose Value_B; A's Accepts were turned down"


def _duel(ctx: Ctx, key: str, *args: str) -> tuple[dict[str, Any], dict[str, Any]]:
    staged = ("--pause-between-phases", f"{PAUSE_S:g}", "--max-rounds", "100", *args)
    a = ctx.propose_bg("Value_A", key, *staged)
    # B's Prepare (above A's ballot) lands in the middle of A's pause, and from then on
    # each one's Prepare lands in the other's pause.
    b = ctx.propose_bg("Value_B", key, "--delay", f"{PAUSE_S / 2:g}", *B_ABOVE_A, *staged)
    return finish(ctx, a, "Value_A"), finish(ctx, b, "Value_B")


def s6_livelock(ctx: Ctx) -> str:
    # Without backoff: each one's Prepare pre-empts the other's Accept, round after round,
    # until their deadlines (which fall in the middle of a pause) stop both.
    key = "p26-livelock-no-backoff"
    da, db = _duel(ctx, key, "--backoff", "0", "--timeout", f"{4.5 * PAUSE_S:g}")
    check(da["exit"] == 1 and db["exit"] == 1,
          f"without backoff the duel should livelock, but A got {da['chosen']}, B {db['chosen']}")
    check(da["rounds"] >= 3 and db["rounds"] >= 3,
          f"expected several pre-empted rounds, got A:{da['rounds']} B:{db['rounds']}")
    states = ctx.cluster.status(key)["nodes"]
    check(not any(n["keys"].get(key, {}).get("chosen") for n in states),
          "a value was chosen in the livelocked duel")
    # With randomized, growing backoff the same duel ends, with exactly one value.
    key2 = "p26-livelock-backoff"
    ea, eb = _duel(ctx, key2, "--backoff", f"{PAUSE_S:g}", "--timeout", "60")
    check(ea["exit"] == 0 and eb["exit"] == 0, "with backoff both proposers should finish")
    check(ea["chosen"] == eb["chosen"], f"two values chosen: {ea['chosen']}, {eb['chosen']}")
    ctx.chosen_everywhere(key2, ea["chosen"])
    ctx.row.chosen = ea["chosen"]
    ctx.row.rounds = f"{da['rounds']}+{db['rounds']} / {ea['rounds']}+{eb['rounds']}"
    return (f"no backoff: livelock, both gave up after {da['rounds']} and {db['rounds']} "
            f"rounds; backoff: {ea['chosen']} chosen")


def _down(ctx: Ctx, count: int) -> list[int]:
    ids = [node.id for node in ctx.cfg.nodes][-count:]
    for i in ids:
        ctx.cluster.kill(i)
    return ids


def _restart(ctx: Ctx, ids: list[int]) -> None:
    for i in ids:
        ctx.cluster.start(i)


def s7_minority_down(ctx: Ctx) -> str:
    key = "minority-down"
    down = _down(ctx, ctx.n - ctx.quorum)
    try:
        a = ctx.propose("Value_A", key)
        won(a, "Value_A", True)
    finally:
        _restart(ctx, down)
    ctx.chosen_everywhere(key, "Value_A")  # the restarted nodes catch up from their peers
    ctx.row.chosen, ctx.row.rounds = "Value_A", str(a["rounds"])
    names = ", ".join(node_name(i) for i in down)
    return f"{names} down; Value_A chosen by {ctx.quorum} of {ctx.n}"


def s8_majority_down(ctx: Ctx) -> str:
    key = "majority-down"
    timeout_s = 2.0
    down = _down(ctx, ctx.n - ctx.quorum + 1)
    try:
        a = ctx.propose("Value_A", key, "--timeout", f"{timeout_s:g}")
    finally:
        _restart(ctx, down)
    names = [node_name(i) for i in down]
    check(a["exit"] == 1 and a["chosen"] is None, "a value was chosen without a quorum")
    check(a["elapsed_ms"] <= timeout_s * 1000 + 1000,  # the deadline, plus slack for load
          f"gave up after {a['elapsed_ms']} ms, timeout was {timeout_s:g} s")
    check(sorted(a["no_reply_from"]) == sorted(names),
          f"named {a['no_reply_from']} as silent, expected {names}")
    b = ctx.propose("Value_A", key)
    won(b, "Value_A", True)
    ctx.chosen_everywhere(key, "Value_A")
    ctx.row.chosen, ctx.row.rounds = "Value_A", f"{a['rounds']}/{b['rounds']}"
    return (f"{', '.join(names)} down: failed after {a['elapsed_ms'] / 1000:.1f} s naming them; "
            f"after restart Value_A chosen")


def s9_crash_restart(ctx: Ctx) -> str:
    key = "crash-restart"
    won(ctx.propose("Value_A", key), "Value_A", True)
    for node in ctx.cfg.nodes:
        ctx.cluster.kill(node.id, signal.SIGKILL)
    ctx.cluster.start_all()
    b = ctx.propose("Value_B", key)
    won(b, "Value_A", False)
    ctx.row.chosen, ctx.row.rounds = "Value_A", str(b["rounds"])
    return "every node SIGKILLed and restarted; the new proposer got Value_A"


SCENARIOS: list[tuple[str, str, Callable[[Ctx], str]]] = [
    ("single", "A single proposer: Value_A is chosen", s1_single),
    ("a-then-b", "A first, B one second later: Value_A wins, B adopts it", s2_a_then_b),
    ("b-then-a", "B first, A one second later: Value_B wins", s3_b_then_a),
    ("page24", "Minority accepted, seen: B adopts Value_A (Ousterhout p.24)", s4_minority_seen),
    ("page25", "Minority accepted, missed: B wins, A's Accepts fail (p.25)", s5_minority_missed),
    ("page26", "Duelling proposers: livelock without backoff, not with it (p.26)", s6_livelock),
    ("minority-down", "A minority of nodes down: consensus still", s7_minority_down),
    ("majority-down", "A majority down: clear failure; after restart, success",
     s8_majority_down),
    ("crash-restart", "Every node SIGKILLed and restarted: the value survives",
     s9_crash_restart),
]


# ---------------------------------------------------------------- catching up

CATCH_UP_WITHIN_S = 10.0  # generous for a loaded machine; about a second on a quiet one


def s11_paused_catch_up(ctx: Ctx) -> str:
    """The last node is paused (SIGSTOP) while Value_A is chosen, so the proposer never
    reaches it and ends; resumed (SIGCONT), it learns the decision from its peers' learn
    logs (docs/catching-up.md) and writes the value file, with no further proposal."""
    key = DEFAULT_KEY
    if any(n["keys"].get(key, {}).get("chosen") for n in ctx.cluster.status(key)["nodes"]):
        key = f"{DEFAULT_KEY}-paused"  # scenario 1 chose CISC5597 already in this run
    i = ctx.cfg.nodes[-1].id
    proc = ctx.cluster.procs[i]
    since = time.time()
    proc.send_signal(signal.SIGSTOP)
    try:
        a = ctx.propose("Value_A", key, "--timeout", "20")
        won(a, "Value_A", True)
        time.sleep(1.0)  # the proposer has ended; the node is still paused
    finally:
        proc.send_signal(signal.SIGCONT)
    t0 = time.monotonic()
    path = ctx.workdir / "data" / node_name(i) / f"{key}.txt"
    try:
        wait_for(path.is_file, f"{path.name} on {node_name(i)}", CATCH_UP_WITHIN_S)
    except TimeoutError as e:
        raise Failed(str(e)) from None
    took = time.monotonic() - t0
    check(path.read_text() == "Value_A\n", f"{path} holds {path.read_text()!r}")
    log = ctx.log()
    caught = [e for e in log.events(process=node_name(i), name="caught_up") if e.ts >= since]
    check(bool(caught), f"{node_name(i)} learned {key} some other way than catching up")
    starts = [e for e in log.all_events
              if e.name == "start" and e.key == key and e.ts >= since]
    check(len(starts) == 1, f"{len(starts)} proposals of {key}; expected only the first")
    ctx.row.chosen, ctx.row.rounds = "Value_A", str(a["rounds"])
    return (f"{node_name(i)} paused during the decision; {took:.1f} s after it resumed it "
            f"caught up from {caught[0].fields.get('peer')} and wrote {key}.txt")


# ---------------------------------------------------------------- registers

RACERS = ("A", "B")
RACE_TRIES = 3  # compare-and-sets per racer


def s10_cas_race(ctx: Ctx) -> str:
    """Two processes race compare-and-set on one register: each reads the version, then
    tries to move it one up. Exactly one wins each version; the other's CAS fails and
    reports the state that beat it."""
    import json

    from zpaxos.lab.launcher import child_env

    register = "lab-10-cas-race"
    start_at = time.time() + 1.0  # both racers are up by then, and start together
    procs = [subprocess.Popen(
        [sys.executable, "-m", "zpaxos.lab.casrace", "--config", str(ctx.cluster.config),
         "--name", name, "--register", register, "--tries", str(RACE_TRIES),
         "--start-at", f"{start_at:.3f}"],
        cwd=ctx.workdir, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for name in RACERS]
    lines: list[dict[str, Any]] = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=120)
            check(p.returncode == 0, f"a racer failed (exit {p.returncode}): {err.strip()}")
            lines += [json.loads(x) for x in out.splitlines() if x.strip()]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    tries = [x for x in lines if "status" in x]
    check(len(tries) == len(RACERS) * RACE_TRIES, f"expected {len(RACERS) * RACE_TRIES} "
          f"compare-and-sets, got {len(tries)}")
    wins = sorted((x["version"], x["name"]) for x in tries if x["status"] == "ok")
    lost = [x for x in tries if x["status"] == "cas_failed"]
    check(len(wins) + len(lost) == len(tries),
          f"a compare-and-set ended without an answer: {[x for x in tries if x not in lost]}")
    versions = [v for v, _ in wins]
    check(versions == list(range(1, len(wins) + 1)),
          f"versions won: {versions}; exactly one winner per version expected")
    for x in lost:
        check(x["version"] > x["expect"], f"{x['name']}'s CAS from version {x['expect']} "
              f"failed, but reported version {x['version']}")
    final = ctx.cluster.run("get", register, "--json")
    check(final.code == 0, f"zpaxos get failed: {final.err.strip()}")
    doc = final.json
    last_v, last_name = wins[-1]
    check((doc["version"], doc["value"]) == (last_v, f"{last_name}{last_v}"),
          f"the register reads {doc['value']} at version {doc['version']}, expected "
          f"{last_name}{last_v} at {last_v}")
    ctx.row.chosen = f"{doc['value']} (v{doc['version']})"
    ctx.row.rounds = f"{len(tries)} CAS"
    who = ", ".join(f"v{v} {n}" for v, n in wins)
    return (f"{len(tries)} compare-and-sets, {len(wins)} won, one per version ({who}); "
            f"{len(lost)} failed and reported the state that beat them")


# Registers beside the lab's nine: scenario 10 (run_scenarios.sh runs every scenario).
REGISTER_SCENARIOS: list[tuple[str, str, Callable[[Ctx], str]]] = [
    ("cas-race", "Two clients race compare-and-set on a register: one winner per version",
     s10_cas_race),
]
# Catching up (docs/catching-up.md): scenario 11.
CATCH_UP_SCENARIOS: list[tuple[str, str, Callable[[Ctx], str]]] = [
    ("paused-catch-up", "A node paused during a decision, then resumed: it catches up",
     s11_paused_catch_up),
]
# Locks (docs/locks.md): scenario 12, in zpaxos/lab/lock_scenario.py.
# Membership (docs/members-operating.md): scenarios 13-15, in zpaxos/lab/scenario_members.py.
MEMBER_SCENARIOS: list[tuple[str, str, Callable[[Ctx], str]]] = [
    ("grow", "The cluster grows by two nodes while a proposer runs", s13_grow),
    ("remove", "A node is removed while a proposer runs: it stops, the rest agree", s14_remove),
    ("replace", "A node's data directory is deleted: a new node takes its place",
     s15_replace),
]
ALL_SCENARIOS = (SCENARIOS + REGISTER_SCENARIOS + CATCH_UP_SCENARIOS + LOCK_SCENARIOS
                 + MEMBER_SCENARIOS)
