"""Contention starves no one (issue 23): clients with no think time on one register all
progress. The simulator runs the real hosts with no faults; before the fix, one client
finished its 40 operations while the four others had done 0 or 1."""

from __future__ import annotations

import statistics
from collections import Counter

from zpaxos.lab.regfair import jain_index
from zpaxos.protocol.register import RegisterOptions
from zpaxos.sim import regsim

BUSY = regsim.RegScenario(clients=5, keys=("r0",), ops_per_client=40, inflight=1, drop=0,
                          dup=0, crashes=False, partitions=False, think_s=0.0,
                          options=RegisterOptions())


def test_no_client_starves_on_a_contended_register() -> None:
    for seed in range(5):
        r = regsim.run(seed, BUSY)
        assert not r.violations
        ends: dict[str, float] = {}
        for e in r.history:
            assert e.ret is not None  # no faults: every operation ends
            ends[e.process] = max(ends.get(e.process, 0.0), e.ret)
        first = min(ends.values())  # until the first client is done, all compete
        done = Counter(e.process for e in r.history if e.ret is not None and e.ret <= first)
        counts = sorted(done[p] for p in ends)
        assert counts[0] >= statistics.median(counts) / 5, f"seed {seed}: {counts}"


def test_jain_index() -> None:
    assert jain_index([3.0, 3.0, 3.0]) == 1.0
    assert abs(jain_index([1.0, 0.0, 0.0, 0.0]) - 0.25) < 1e-9
