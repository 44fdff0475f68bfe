"""The membership lessons: break one rule of a membership change, find the shortest run
where that chooses two values for one key, and draw it (``zpaxos sim --break NAME``).

The search runs calm schedules (no loss, no crashes: the shortest story is the clearest)
of :mod:`zpaxos.sim.membersim` with the one change the rule is about; the shrinker takes
away every client operation the split does not need (delta debugging, shrink.ddmin); the
run is then replayed writing the JSON log real nodes write, one proposer process per
operation, so the charts of ``zpaxos trace`` draw it, and ``--compare`` draws the same
operations through the safe plan beside it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from zpaxos.pictures.chartmodel import Chart, select
from zpaxos.pictures.logmodel import read_log
from zpaxos.protocol.messages import Ballot
from zpaxos.sim.ghost import InvariantViolation
from zpaxos.sim.lesson import render, side_by_side
from zpaxos.sim.memberproc import Accept, Accepted, Nack, Prepare, Promise, Stale
from zpaxos.sim.membersim import MUTANTS, MemberRun, MemberScenario, MemberSimulation, generate
from zpaxos.sim.shrink import ddmin
from zpaxos.sim.tape import BASE_TS

SPLIT = "two values chosen for "


@dataclass(frozen=True)
class MemberRule:
    name: str
    change: tuple[tuple[str, int, int], ...]  # what the lesson's schedules change
    rule: str
    broken: str
    why: str  # the lesson's paragraph, after the facts


MEMBER_RULES: dict[str, MemberRule] = {r.name: r for r in (
    MemberRule("one-step-reconfig", (("add", 4, 0),),
               "a node joins the accept side first, is caught up, then joins the prepare side"
               " (3 -> 4 nodes takes two steps)",
               "3 nodes become 4 in one step: prepare 2 of 4, accept 3 of 4 at once",
               "In the one step, a phase 1 of two nodes (the new, empty one and one that had"
               " missed the value) meets none of the old configuration's accept quorums of"
               " two: the proposer of the new epoch read nothing and chose its own value."
               " Staged (accept side first, then the prepare side once the new node holds"
               " every key), every prepare quorum of each step meets every accept quorum of"
               " the one before."),
    MemberRule("counted-before-caught-up", (("add", 4, 0),),
               "a new node counts in phase 1 only once it holds every key's state",
               "the state is never moved: a new node counts in phase 1 as soon as its step"
               " is installed",
               "The new node counted in a phase-1 quorum without the value chosen before it"
               " came: its quorum missed the nodes that held it."),
    MemberRule("removed-while-needed", (("remove", 1, 0),),
               "a node leaves the prepare side first, then the accept side, so its votes are"
               " never needed once it is gone",
               "a node leaves both sides in one step",
               "The removed node's vote was part of the quorum that chose the first value;"
               " without it, the smaller configuration's phase 1 met none of that quorum's"
               " other nodes."),
    MemberRule("ignores-epoch", (("replace", 1, 4),),
               "a proposer counts replies with the quorums of its message's epoch",
               "a proposer takes the epoch from a refusal but keeps counting with the"
               " members and quorums it started with",
               "The proposer counted a quorum of a configuration that no longer existed:"
               " its 'chosen' was never chosen, and another value was."),
    MemberRule("range-across-epochs", (("replace", 1, 4), ("replace", 2, 5), ("replace", 3, 6)),
               "a range promise lets phase 1 be skipped only in the epoch it was granted in",
               "a proposer keeps its range promise across epochs",
               "The range promise was granted by nodes that have since left: the new nodes"
               " never promised anything, took a rival's value at a lower ballot, and then"
               " the phase-1 skip at the old lease's ballot."),
)}


def lesson_scenario(name: str, seed: int) -> MemberScenario:
    """A calm schedule with the rule's change (faults only add noise to the story)."""
    sc = generate(seed)
    return replace(sc, changes=MEMBER_RULES[name].change, drop_p=0.0, dup_p=0.0,
                   crashes=(), cuts=())


class NotFound(Exception):
    """No seed in the budget broke the rule."""


def _split_key(what: str) -> str | None:
    if not what.startswith(SPLIT):
        return None
    return what[len(SPLIT):].split(":", 1)[0]


def _splits(sc: MemberScenario, name: str, key: str | None = None) -> str | None:
    try:
        MemberSimulation(sc, **_variant(name)).run()
    except InvariantViolation as e:
        k = _split_key(e.what)
        if k is not None and (key is None or k == key):
            return k
    return None


def _variant(name: str) -> dict[str, Any]:
    return dict(MUTANTS[name][0])


@dataclass
class MemberLesson:
    rule: MemberRule
    seed: int
    seeds_searched: int
    key: str
    ops_before: int
    scenario: MemberScenario  # shrunk
    broken: LoggedRun
    intact: LoggedRun
    paragraph: str
    seconds: float


def break_membership(name: str, start: int = 0, limit: int = 20_000,
                     deadline_s: float = 50.0) -> MemberLesson:
    t0 = time.monotonic()
    rule = MEMBER_RULES[name]
    key = None
    for seed in range(start, start + limit):
        key = _splits(lesson_scenario(name, seed), name)
        if key is not None or time.monotonic() - t0 > deadline_s:
            break
    if key is None:
        raise NotFound(f"no schedule from seed {start} on chose two values with {name}"
                       f" broken (searched up to {limit} seeds / {deadline_s:g} s)")
    sc = lesson_scenario(name, seed)
    ops = ddmin(list(sc.ops), lambda kept: _splits(replace(sc, ops=tuple(kept)), name, key)
                is not None)
    shrunk = replace(sc, ops=tuple(ops))
    broken = LoggedRun.of(shrunk, _variant(name))
    intact = LoggedRun.of(shrunk, {})
    return MemberLesson(rule, seed, seed - start + 1, key, len(sc.ops), shrunk, broken,
                        intact, explain(rule, broken, key), time.monotonic() - t0)


def explain(rule: MemberRule, run: LoggedRun, key: str) -> str:
    """The paragraph: which quorum chose the first value, which phase 1 missed it."""
    configs = "; ".join(c.describe() for c in run.run.configs)
    return (f"Broken rule: {rule.name} -- {rule.broken}. {_story(run, key)}"
            f" The configurations: {configs}. {rule.why}")


def _story(run: LoggedRun, key: str) -> str:
    chosen = [o for o in run.lines if o["event"] == "chosen" and o["key"] == key]
    first = chosen[0] if chosen else None
    second = next((o for o in chosen if first and o["value"] != first["value"]), None)
    if first is None or second is None:
        return f"{run.violation[0].upper()}{run.violation[1:]}." if run.violation else ""

    def names(nodes: Iterable[str]) -> str:
        return " and ".join(sorted(set(nodes))) or "no node"

    voted = {o["process"] for o in run.lines if o["event"] == "send" and o["type"] == "ACCEPTED"
             and o["key"] == key and o["ballot"] == first["ballot"]}
    epoch = {_ballot(b): e for _, _, e, k, b, _ in run.run.votes if k == key}
    proc, b2 = second["process"], second["ballot"]
    heard: set[str] = set()
    for o in run.lines:
        if o["process"] != proc or o.get("ballot") != b2:
            continue
        if o["event"] == "send" and o["type"] == "ACCEPT":
            break
        if o["event"] == "recv" and o["type"] == "PROMISE":
            heard.add(o["peer"])
    e1, e2 = epoch.get(first["ballot"], 0), epoch.get(b2, 0)
    if b2.endswith("L") and not heard:  # a lease's ballot: phase 1 was the range promise
        return (f"{first['value']} was chosen for {key} by {names(voted)} at ballot"
                f" {first['ballot']} (epoch {e1}); then ballot {b2} skipped phase 1 in epoch"
                f" {e2} on a range promise of an earlier epoch, and {second['value']} was"
                f" chosen too.")
    return (f"{first['value']} was chosen for {key} by {names(voted)} at ballot"
            f" {first['ballot']} (epoch {e1}); then the phase 1 of ballot {b2}"
            f" (epoch {e2}) heard {names(heard)} -- "
            f"{'no node' if not heard & voted else names(heard & voted)} in both -- found"
            f" nothing accepted, and {second['value']} was chosen too.")


# --------------------------------------------------------------------------- the log


@dataclass
class LoggedRun:
    run: MemberRun
    lines: list[dict[str, Any]]
    violation: str  # "" when every invariant held

    @classmethod
    def of(cls, sc: MemberScenario, variant: dict[str, Any]) -> LoggedRun:
        """The whole run, on past its first violation (so a chart shows both decisions)."""
        sim = LoggedSimulation(sc, **variant)
        sim.run()
        return cls(sim.out, sim.lines, sim.violations[0] if sim.violations else "")

    def text(self) -> str:
        return "".join(json.dumps(o, separators=(",", ":"), ensure_ascii=False) + "\n"
                       for o in self.lines)

    def chosen(self) -> list[str]:
        return [f"{o['key']}={o['value']}" for o in self.lines if o["event"] == "chosen"]


_TYPES = {Prepare: "PREPARE", Promise: "PROMISE", Accept: "ACCEPT", Accepted: "ACCEPTED",
          Nack: "NACK"}


def _ballot(b: Ballot) -> str:
    return f"{b.round}.{b.proposer.decode(errors='replace')}"


def _fields(msg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"key": msg.key, "ballot": _ballot(msg.ballot)}
    if isinstance(msg, Promise) and not msg.accepted.is_zero:
        out["accepted"], out["value"] = _ballot(msg.accepted), _text(msg.value)
    if isinstance(msg, Accept):
        out["value"] = _text(msg.value)
    if isinstance(msg, Nack):
        out["promised"] = _ballot(msg.promised)
    return out


def _text(v: bytes | None) -> str:
    return "" if v is None else v.decode(errors="backslashreplace")[:40]


class LoggedSimulation(MemberSimulation):
    """Writes what real nodes and proposers log: one proposer process per operation."""

    def __init__(self, sc: MemberScenario, **variant: Any) -> None:
        super().__init__(sc, **variant)
        self.lines: list[dict[str, Any]] = []
        self.sent: dict[str, int] = {}
        self.msg_ids: dict[tuple[Any, Any, Any], list[str]] = {}
        self.current: dict[str, str] = {}  # client -> the operation it runs (or ran last)
        self.keys: dict[str, str] = {}  # operation -> its key
        self.on_key: dict[tuple[str, str | None], str] = {}  # (client, key) -> operation
        self.violations: list[str] = []
        involved = {1, 2, 3} | {n for _, a, b in sc.changes for n in (a, b) if n}
        for a in sorted(involved):
            self.emit(f"node{a}", "start", role="node", keys=0)

    def violate(self, what: str) -> None:
        self.violations.append(what)  # noted, and the run goes on

    def emit(self, process: str, event: str, **fields: Any) -> None:
        self.lines.append({"ts": round(BASE_TS + self.now, 6), "process": process,
                           "level": "INFO", "event": event, **fields})

    def _name(self, who: Any, key: str | None = None) -> str:
        """A node, or the operation of a client that a message about ``key`` concerns:
        the latest one on that key (a late reply belongs to it, not to the next one)."""
        if isinstance(who, int):
            return f"node{who}"
        return f"proposer {self.on_key.get((who, key)) or self.current.get(who, who)}"

    def send(self, src: Any, dst: Any, msg: Any) -> None:
        if not isinstance(src, int):
            p = self.procs[src]
            if p.op is not None and self.current.get(src) != p.op.token:
                self.current[src] = p.op.token
                self.keys[p.op.token] = p.op.key
                self.on_key[(src, p.op.key)] = p.op.token
                self.emit(self._name(src), "start", role="proposer", key=p.op.key,
                          value=_text(p.op.arg) if p.op.arg is not None else p.op.kind)
        t = _TYPES.get(type(msg))
        if t is not None:
            sender = self._name(src, msg.key)
            self.sent[sender] = self.sent.get(sender, 0) + 1
            mid = f"{sender.replace('proposer ', '')}:{self.sent[sender]}"
            self.msg_ids.setdefault((src, dst, msg), []).append(mid)
            self.emit(sender, "send", type=t, msg_id=mid, peer=self._name(dst, msg.key),
                      **_fields(msg))
        elif isinstance(msg, Stale) and not isinstance(dst, int):
            self.emit(self._name(src), "stale", key=msg.about, peer=self._name(dst),
                      epoch=msg.cfg.epoch)
        super().send(src, dst, msg)

    def _deliver(self, src: Any, dst: Any, msg: Any) -> None:
        t = _TYPES.get(type(msg))
        queue = self.msg_ids.get((src, dst, msg))
        if t is not None and queue:
            up = self.up[dst] if isinstance(dst, int) else True
            if up:
                self.emit(self._name(dst, msg.key), "recv", type=t, msg_id=queue.pop(0),
                          peer=self._name(src, msg.key), **_fields(msg))
        super()._deliver(src, dst, msg)

    def _finished(self, proc: str, token: str, state: bytes | None) -> None:
        if state is not None and self.current.get(proc) == token:
            p = self.procs[proc]
            key = self.keys.get(token, "")
            self.emit(self._name(proc), "chosen", key=key, value=_text(state),
                      ballot=_ballot(p.ballot), own=True, rounds=p.round)
            self.emit(self._name(proc), "stop", key=key, rounds=p.round)
        super()._finished(proc, token, state)

    def _installed(self, new: Any) -> None:
        self.emit("proposer admin", "installed", epoch=new.epoch, config=new.describe())
        super()._installed(new)


# --------------------------------------------------------------------------- pictures

LESSONS = ("one-step-reconfig",)  # what --lessons draws (the most instructive of them)


def _charts(log: Path, key: str) -> list[Chart]:
    return select(read_log(log), key=key)


def draw_member_lesson(lesson: MemberLesson, out: Path, fmt: str,
                       compare: bool = False) -> list[Path]:
    """Write the lesson's log (``out`` with .log) and its chart; returns the files."""
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".log")
    log.write_text(lesson.broken.text(), encoding="utf-8")
    written = [log]
    name = lesson.rule.name
    title = f"zpaxos sim --break {name} (seed {lesson.seed})"
    doc = render(_charts(log, lesson.key), fmt, str(log), log, title, lesson.paragraph)
    if compare:
        intact_log = out.with_name(out.stem + "-intact.log")
        intact_log.write_text(lesson.intact.text(), encoding="utf-8")
        written.append(intact_log)
        right = render(_charts(intact_log, lesson.key), fmt, str(intact_log), intact_log)
        if fmt == "svg":
            doc = side_by_side(doc, right, (f"{name}: two values chosen",
                                            "the safe plan, same operations: one value"))
        elif fmt == "text":
            doc = (f"=== {name} ===\n\n{doc}\n"
                   f"=== the safe plan, same operations ===\n\n{right}")
    out.write_text(doc, encoding="utf-8")
    written.append(out)
    return written


def report(lesson: MemberLesson) -> str:
    """What ``zpaxos sim --break`` prints for a membership rule."""
    safe = ("safe: every invariant held" if not lesson.intact.violation
            else f"NOT SAFE: {lesson.intact.violation}")
    mine = sorted({c.split("=", 1)[1] for c in lesson.intact.chosen()
                   if c.startswith(lesson.key + "=")})
    return (f"rule {lesson.rule.name}: seed {lesson.seed} chose two values for {lesson.key}"
            f" after searching {lesson.seeds_searched} seed"
            f"{'s' if lesson.seeds_searched != 1 else ''}\n"
            f"shrunk from {lesson.ops_before} client operations to"
            f" {len(lesson.scenario.ops)} ({lesson.seconds:.1f} s)\n"
            f"the same operations through the safe plan: {safe}; {lesson.key} is"
            f" {' and '.join(mine) or 'never chosen'}\n\n{lesson.paragraph}\n")


def write_member_lessons(out_dir: Path, names: Iterable[str] = LESSONS
                         ) -> list[tuple[MemberLesson, list[Path]]]:
    """Each lesson into ``out_dir`` (NAME.svg with the safe plan beside it, NAME.html to
    step through, NAME.txt), and a section of README.md (which write_lessons began)."""
    done = []
    readme = out_dir / "README.md"
    lines = [readme.read_text(encoding="utf-8")] if readme.exists() else []
    for name in names:
        lesson = break_membership(name)
        files = draw_member_lesson(lesson, out_dir / f"{name}.svg", "svg", compare=True)
        files += draw_member_lesson(lesson, out_dir / f"{name}.html", "html")[1:]
        files += draw_member_lesson(lesson, out_dir / f"{name}.txt", "text")[1:]
        done.append((lesson, files))
        lines += [f"## {name} (membership)", "",
                  f"Kept: {lesson.rule.rule}. Broken: {lesson.rule.broken}.", "",
                  f"Seed {lesson.seed} (after {lesson.seeds_searched} searched), shrunk to"
                  f" {len(lesson.scenario.ops)} client operations: [{name}.svg]({name}.svg),"
                  f" step through [{name}.html]({name}.html), text [{name}.txt]({name}.txt).",
                  "", lesson.paragraph, ""]
    readme.write_text("\n".join(lines), encoding="utf-8")
    return done
