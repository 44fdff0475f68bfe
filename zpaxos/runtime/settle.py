"""Moving the state into a configuration after each step of a membership change.

A step's quorums meet the previous configuration's, but not necessarily those of the
configuration before that (docs/membership.md, rule 3). So after EVERY step, before the
next one is proposed, every key's latest state must be held by an accept quorum of the
new epoch (the simulator's ``moves-state-only-for-joins`` variant shows what breaks
otherwise). :func:`settle` does it in three parts, each saying what it waits for:

1. **Decided keys.** It waits until an accept quorum of the new configuration reports
   being in the new epoch and holding at least as many decided keys as the most any
   member held when the wait began (the members' catch-up states, as ``zpaxos members``
   lists them: nodes learn decisions from Decides and catch-up pages). A decision is a
   fact: holding it is enough, no round is needed. The count is a proxy for "the same
   keys": a key some member does not know decided while another does is also listed by
   the first as accepted but not decided when it accepted it, and so gets part 2.
2. **Keys accepted but not decided.** It lists them from every member (paged:
   ``UndecidedRequest``, a bounded page of keys walked per request), from at least a
   prepare quorum of the new configuration (every accept quorum of the previous one
   meets it, so a value that could have been chosen there is listed), and runs an
   identity round for each in the new epoch (protocol/identity.py): phase 1 with the
   new prepare quorum; a value found is accepted by the new accept quorum and decided;
   nothing found, nothing proposed.
3. **Registers.** It lists every register (``RegistersRequest`` pages, from a prepare
   quorum as well) and reads each with a two-phase ``get``: phase 1 with the new
   prepare quorum, then the state written back by the new accept quorum (no 1-RTT
   promise: one is bound to the epoch it was made in).

Everything is idempotent: a crash or Ctrl-C of the command part way leaves the rest for
the rerun, which settles the configuration it finds before it proposes anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from zpaxos.protocol.identity import moved
from zpaxos.protocol.membership import Config
from zpaxos.protocol.messages import (
    RegistersReply,
    RegistersRequest,
    UndecidedReply,
    UndecidedRequest,
)
from zpaxos.protocol.register import GET, OK, RegOp
from zpaxos.runtime import members as chain
from zpaxos.runtime.client import Client

PAGE_TIMEOUT_S = 5.0  # a member that answers no page request within this is left out
ROUNDS_IN_FLIGHT = 256  # identity rounds (and register reads) at once

# Turned off only by the tests that show what breaks without it (never by a user).
ENABLED = True


class SettleError(Exception):
    """The state could not be moved (the message says why, for the user)."""


def settle(client: Client, cfg: Config, say: Callable[[str], None],
           wait: Callable[[str, int, int], None]) -> tuple[int, int]:
    """Move the state into ``cfg`` (the configuration the cluster is in; see the module
    doc). ``say``: a line for the user; ``wait(what, done, total)``: one round of a wait
    (it pauses, and raises when the user interrupts). Returns how many identity rounds
    and register reads it ran."""
    if cfg.epoch <= 1 or not ENABLED:
        return 0, 0
    up = _decided_held(client, cfg, wait)
    keys = sorted(k for k in listing(client, cfg, up, UndecidedRequest, UndecidedReply,
                                     lambda m: (m.keys, m.last, m.more))
                  if not k.startswith(chain.PREFIX))  # the chain: the runner's own keys
    if keys:
        say(f"epoch {cfg.epoch}: identity rounds for {len(keys)} keys accepted but not "
            f"decided")
        for _, outcome, _ in client.stream(((k, b"") for k in keys), ROUNDS_IN_FLIGHT,
                                           fast=False, identity=True):
            if not moved(outcome):
                raise SettleError(f"key {outcome.key!r} could not be moved to epoch "
                                  f"{cfg.epoch}: {outcome.reason} (run the command again)")
    names = sorted(listing(client, cfg, up, RegistersRequest, RegistersReply,
                           lambda m: (m.names, m.names[-1] if m.names else m.after, m.more)))
    if names:
        say(f"epoch {cfg.epoch}: reading {len(names)} registers into the new quorums")
        opts = client.register_options(one_rtt=False)
        for _, r, _ in client.register_stream(((n, RegOp(GET)) for n in names),
                                              ROUNDS_IN_FLIGHT, opts):
            if r.status != OK:
                raise SettleError(f"register {r.key!r} could not be moved to epoch "
                                  f"{cfg.epoch}: {r.reason or r.status} (run the command "
                                  f"again)")
    return len(keys), len(names)


def _decided_held(client: Client, cfg: Config,
                  wait: Callable[[str, int, int], None]) -> set[int]:
    """Wait until an accept quorum of ``cfg`` is in its epoch and holds at least as many
    decided keys as the most any member held when the wait began; the members that
    answered the last ask."""
    infos = client.ask_members()
    most = max((i.decided for i in infos.values()), default=0)
    while True:
        held = {i for i in cfg.accept if i in infos and infos[i].epoch >= cfg.epoch
                and infos[i].decided >= most}
        if cfg.accept_ok(held):
            return set(infos)
        best = max((infos[i].decided for i in cfg.accept if i in infos), default=0)
        wait(f"the decided keys to be held by an accept quorum of epoch {cfg.epoch} "
             f"({cfg.accept_quorum} of {', '.join(f'node{i}' for i in cfg.accept)} with "
             f"{most} decided keys; {len(held)} have)", min(best, most), most)
        infos = client.ask_members()


def listing(client: Client, cfg: Config, up: set[int], request: Callable[[str], Any],
            reply_type: type, unpack: Callable[[Any], tuple[tuple[str, ...], str, bool]],
            ) -> set[str]:
    """Every name the members of ``cfg`` that are ``up`` (they answered just before)
    list, page by page (each member paged in parallel: ``unpack(reply)`` gives a page's
    names, the cursor to ask after, and whether more remain). A member silent for
    PAGE_TIMEOUT_S is left out; the members that finished must include a prepare quorum
    of ``cfg``."""
    sockets = client.sockets
    ids = [i for i in cfg.ids if i in up]
    cursor = {i: "" for i in ids}
    heard = dict.fromkeys(ids, time.monotonic())
    done: set[int] = set()
    found: set[str] = set()
    sockets.send_all((i, request("")) for i in cursor)
    while len(done) < len(cursor):
        now = time.monotonic()
        waiting = [i for i in cursor if i not in done and now - heard[i] < PAGE_TIMEOUT_S]
        if not waiting:
            break
        for src, msg in sockets.poll(0.2):
            if type(src) is not int or type(msg) is not reply_type or src not in cursor \
                    or src in done or getattr(msg, "after", None) != cursor[src]:
                continue
            names, last, more = unpack(msg)
            found.update(names)
            heard[src] = time.monotonic()
            if more and last > cursor[src]:  # (a page that does not move on ends it)
                cursor[src] = last
                sockets.send(src, request(last))
            else:
                done.add(src)
        if sockets.stop_requested:
            client._stop()
    if not cfg.prepare_ok(done):
        silent = ", ".join(f"node{i}" for i in sorted(set(cfg.ids) - done))
        raise SettleError(f"too few members of epoch {cfg.epoch} listed their keys "
                          f"({silent} did not answer): a prepare quorum must (is it running?)")
    return found


__all__ = ["ENABLED", "SettleError", "listing", "settle"]
