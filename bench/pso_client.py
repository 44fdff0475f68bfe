"""A separate client process for PySyncObj (bench/compare.py; stdlib + pysyncobj).

    python pso_client.py RPC_PORT seq N PREFIX          one set at a time: latencies
    python pso_client.py RPC_PORT thr N PREFIX WINDOW   WINDOW sets in flight: seconds
    python pso_client.py RPC_PORT leader N PREFIX WINDOW  the leader generates the load
    python pso_client.py RPC_PORT reg N PREFIX          registers: sequential set, get
                                                        and cas latencies on N registers
    python pso_client.py RPC_PORT regthr N PREFIX WINDOW  register sets, WINDOW in flight
    python pso_client.py RPC_PORT lock N LOCK SECONDS   lock LOCK, release it, N times (or
                                                        for SECONDS when N is 0): latencies

Prints one JSON object.
"""

import json
import os
import sys
import time
from multiprocessing.connection import Client

AUTHKEY = b"zpaxos-compare"
RETRY_S = 0.001  # a refused tryAcquire is tried again this much later
REPLY_S = 5.0  # a lock call not answered by then failed (PySyncObj dropped it)
# An acquire not had by then gives up, counted as failed (as zpaxos's side of
# bench/locks.py, whose acquires time out after as long): a run of this benchmark once
# hung here, its cluster answering no lock call, until the harness's 300 s ran out.
ACQUIRE_TIMEOUT_S = 60.0


def windowed(conn, op: str, n: int, window: int, prefix: str) -> float:
    """``n`` writes ``op`` with up to ``window`` in flight; the seconds they took."""
    t0 = time.perf_counter()
    sent = got = 0
    while sent < min(window, n):
        conn.send((op, sent, f"{prefix}{sent}", b"v%d" % sent))
        sent += 1
    while got < n:
        _, _, err = conn.recv()
        assert err == 0, err
        got += 1
        if sent < n:
            conn.send((op, sent, f"{prefix}{sent}", b"v%d" % sent))
            sent += 1
    return time.perf_counter() - t0


def _call(conn, rid: int, msg: tuple) -> tuple[bool, object]:
    """Send ``msg`` (its id ``rid``) and wait for its answer: (answered without error, the
    result). A command PySyncObj drops (a leader change) never answers: REPLY_S."""
    conn.send(msg)
    end = time.monotonic() + REPLY_S
    while True:
        left = end - time.monotonic()
        if left <= 0 or not conn.poll(left):
            return False, None
        got, r, err = conn.recv()
        if got == rid:  # (a late answer to an earlier call is skipped)
            return err == 0, r


def lock_loop(conn, n: int, lock: str, seconds: float) -> dict:
    """Acquire and release ``lock``, as a ReplLockManager user does: tryAcquire until it
    succeeds (it has no waiting: a refused try is tried again, after RETRY_S), then
    release. ``n`` attempts, or for ``seconds`` when ``n`` is 0. Latencies in ms; calls
    that failed or were never answered are counted (and tried again), and so is an
    acquire given up after ACQUIRE_TIMEOUT_S."""
    me = f"c{os.getpid()}"
    acquire, release, tries, failed = [], [], 0, 0
    end = time.monotonic() + seconds
    rid = 0
    attempts = 0
    while (attempts < n) if n else time.monotonic() < end:
        attempts += 1
        t0 = time.perf_counter()
        give_up = time.monotonic() + ACQUIRE_TIMEOUT_S
        ok = False
        while not ok and time.monotonic() < give_up:
            rid += 1
            tries += 1
            answered, ok = _call(conn, rid, ("lacquire", rid, lock, me))
            failed += not answered
            if not ok:
                time.sleep(RETRY_S)
        if not ok:
            failed += 1  # timed out: not held, nothing to release
            continue
        t1 = time.perf_counter()
        rid += 1
        answered, _ = _call(conn, rid, ("lrelease", rid, lock, me))
        failed += not answered
        acquire.append((t1 - t0) * 1000)
        release.append((time.perf_counter() - t1) * 1000)
    return {"acquire_ms": acquire, "release_ms": release, "tries": tries, "failed": failed}


def main():
    port, mode, n, prefix = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    conn = Client(("127.0.0.1", port), authkey=AUTHKEY)
    if mode == "lock":
        print(json.dumps(lock_loop(conn, n, prefix, float(sys.argv[5]))))
        return
    window = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    if mode == "seq":
        lat = []
        for i in range(n):
            t0 = time.perf_counter()
            conn.send(("set", i, f"{prefix}{i}", b"v%d" % i))
            rid, _, err = conn.recv()
            lat.append((time.perf_counter() - t0) * 1000)
            assert rid == i and err == 0, (rid, err)
        print(json.dumps({"latencies_ms": lat}))
    elif mode in ("thr", "regthr"):
        op = "set" if mode == "thr" else "rset"
        print(json.dumps({"seconds": windowed(conn, op, n, window, prefix)}))
    elif mode == "reg":
        out = {}
        for op in ("set", "get", "cas"):
            lat = []
            for i in range(n):
                key = f"{prefix}{i}"
                msg = {"set": ("rset", i, key, b"v%d" % i), "get": ("rget", i, key),
                       "cas": ("rcas", i, key, 1, b"w%d" % i)}[op]
                t0 = time.perf_counter()
                conn.send(msg)
                rid, r, err = conn.recv()
                lat.append((time.perf_counter() - t0) * 1000)
                assert rid == i and err == 0, (rid, err)
                assert op != "cas" or r == 2, r  # the cas succeeded (version 1 -> 2)
            out[op] = lat
        print(json.dumps(out))
    else:
        conn.send(("load", n, window, prefix))
        print(json.dumps({"seconds": conn.recv()}))


if __name__ == "__main__":
    main()
