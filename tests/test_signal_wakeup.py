"""The loop's signal wake-up: a signal or request_stop makes its descriptor readable at
once, drain empties it, and a stop asked for after close (another thread, late) is a
no-op, never a write to a descriptor number since reused by another file."""

from __future__ import annotations

import os
import select
import signal
import threading

from zpaxos.runtime.sockets import SignalWakeup


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_request_stop_wakes_the_fd_and_drain_empties_it():
    w = SignalWakeup()
    try:
        assert not readable(w.fd) and not w.stop_requested
        for _ in range(70_000):  # more than a pipe holds (64 KiB): a full one is no error
            w.request_stop()
        assert readable(w.fd) and w.stop_requested
        w.drain()
        assert not readable(w.fd)
    finally:
        w.close()


def test_a_signal_wakes_the_fd_and_names_itself():
    before = signal.getsignal(signal.SIGTERM)
    w = SignalWakeup()
    seen: list[int] = []
    w.install(seen.append)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert readable(w.fd)
        assert w.stop_requested and w.signal_name == "SIGTERM" and seen == [signal.SIGTERM]
    finally:
        w.close()
    assert signal.getsignal(signal.SIGTERM) == before  # put back as it was


def test_a_late_request_stop_after_close_writes_nothing(tmp_path):
    w = SignalWakeup()
    w.close()
    w.close()  # twice is fine
    # Whatever now holds the descriptor numbers the pipe had gets no byte from us.
    path = tmp_path / "victim"
    fds = [os.open(path, os.O_RDWR | os.O_CREAT) for _ in range(4)]
    try:
        t = threading.Thread(target=w.request_stop)
        t.start()
        t.join()
        assert w.stop_requested and w.fd == -1
        assert path.read_bytes() == b""
    finally:
        for fd in fds:
            os.close(fd)
