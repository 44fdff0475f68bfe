"""One PySyncObj node for bench/compare.py (stdlib + pysyncobj, the bench extra).

A replicated write-once map (``set(key, value)`` keeps the first value, like a zpaxos
key), in memory: no journal file, so, like PySyncObj with one, it never fsyncs. Beside
it, a small RPC listener (multiprocessing.connection) through which a separate client
process proposes, or asks this node, if it leads, to generate load itself (PySyncObj's
best configuration: the load inside the leader). It also keeps PySyncObj's lock manager
(``pysyncobj.batteries.ReplLockManager``'s replicated part, ``_ReplLockManagerImpl``, auto
unlock after 10 s), whose acquire and release a client calls with its own client id
(bench/locks.py).

    python pso_node.py INDEX RAFT_PORT,RAFT_PORT,RAFT_PORT RPC_PORT BATCH(0|1)
"""

import os
import sys
import threading
import time
from multiprocessing.connection import Listener

from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.batteries import _ReplLockManagerImpl

AUTHKEY = b"zpaxos-compare"
AUTO_UNLOCK_S = 10.0  # the locks' TTL (bench/locks.py gives zpaxos's the same)


class WriteOnce(SyncObj):
    def __init__(self, me, partners, batch):
        # appendEntriesUseBatch=False: a command from another thread wakes the Raft thread
        # through a pipe at once (low latency); True: commands wait for its next tick and
        # go out in batches (more throughput).
        self.locks = _ReplLockManagerImpl(AUTO_UNLOCK_S)
        super().__init__(me, partners, conf=SyncObjConf(dynamicMembershipChange=False,
                                                        appendEntriesUseBatch=batch),
                         consumers=[self.locks])
        self.data = {}
        self.regs = {}  # registers: key -> (version, value), as ReplDict keeps a dict

    @replicated
    def rset(self, key, value):
        version = self.regs.get(key, (0, None))[0] + 1
        self.regs[key] = (version, value)
        return version

    @replicated
    def rcas(self, key, expect_version, value):
        # compare-and-set, atomic because it runs as one replicated command
        version = self.regs.get(key, (0, None))[0]
        if version != expect_version:
            return -version
        self.regs[key] = (version + 1, value)
        return version + 1

    def rget(self, key):
        # a local read of this replica (not through the log: not linearizable)
        return self.regs.get(key, (0, None))

    @replicated
    def set(self, key, value):
        return self.data.setdefault(key, value)


def leader_load(obj, n, in_flight, prefix):
    """``n`` sets from inside this process, ``in_flight`` at once; seconds taken."""
    window = threading.Semaphore(in_flight)
    done = threading.Event()
    left = [n]
    lock = threading.Lock()

    def finished(result, error):
        window.release()
        with lock:
            left[0] -= 1
            if left[0] == 0:
                done.set()

    t0 = time.perf_counter()
    for i in range(n):
        window.acquire()
        obj.set(f"{prefix}{i}", b"v%d" % i, callback=finished)
    done.wait(300)
    return time.perf_counter() - t0


def serve(obj, conn):
    send_lock = threading.Lock()

    def reply(msg):
        # Called from PySyncObj's own thread (a command's callback): an exception here
        # would end that thread and the node with it, every later call unanswered (a
        # run of bench/locks.py hung so). A client gone (its late answer) is no error.
        try:
            with send_lock:
                conn.send(msg)
        except (OSError, EOFError, ValueError):
            pass

    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        kind = msg[0]
        if kind == "set":
            _, rid, key, value = msg
            obj.set(key, value, callback=lambda r, e, rid=rid: reply((rid, r, e)))
        elif kind == "rset":
            _, rid, key, value = msg
            obj.rset(key, value, callback=lambda r, e, rid=rid: reply((rid, r, e)))
        elif kind == "rcas":
            _, rid, key, expect, value = msg
            obj.rcas(key, expect, value, callback=lambda r, e, rid=rid: reply((rid, r, e)))
        elif kind == "lacquire":  # ReplLockManager.tryAcquire's replicated call
            _, rid, lock, client = msg
            obj.locks.acquire(lock, client, time.time(),
                              callback=lambda r, e, rid=rid: reply((rid, r, e)))
        elif kind == "lrelease":
            _, rid, lock, client = msg
            obj.locks.release(lock, client, callback=lambda r, e, rid=rid: reply((rid, r, e)))
        elif kind == "rget":
            reply((msg[1], obj.rget(msg[2]), 0))
        elif kind == "leader?":
            reply(bool(obj._isLeader()))
        elif kind == "load":
            threading.Thread(target=lambda args=msg[1:]: reply(leader_load(obj, *args)),
                             daemon=True).start()
        elif kind == "quit":
            os._exit(0)


def main():
    index, ports, rpc = int(sys.argv[1]), sys.argv[2].split(","), int(sys.argv[3])
    addrs = [f"127.0.0.1:{p}" for p in ports]
    batch = sys.argv[4] == "1"
    obj = WriteOnce(addrs[index], [a for i, a in enumerate(addrs) if i != index], batch)
    # A backlog for every client connecting at once (bench/locks.py starts 8): the
    # default of 1 let a connection overflow the accept queue, its client left waiting
    # for the authentication challenge for ever (a run of bench/locks.py hung so).
    listener = Listener(("127.0.0.1", rpc), authkey=AUTHKEY, backlog=64)
    print("ready", flush=True)
    while True:
        conn = listener.accept()
        threading.Thread(target=serve, args=(obj, conn), daemon=True).start()


if __name__ == "__main__":
    main()
