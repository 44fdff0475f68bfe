"""state.journal: every pass durable in one record, folded into state.db in bulk; a crash
at any point keeps what was acknowledged, and damage or rollback stops the node."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3

import pytest

from zpaxos.protocol.core import KeyState
from zpaxos.protocol.messages import Ballot
from zpaxos.runtime import journal as journal_mod
from zpaxos.runtime import storage_fold
from zpaxos.runtime.journal import HEADER_SIZE, JOURNAL_NAME
from zpaxos.runtime.storage import SqliteStore, StateDamaged, StateLost
from zpaxos.runtime.storage_errors import DiskFull

ID = bytes(range(16))


def state(n: int, chosen: bool = False) -> KeyState:
    b = Ballot(n, ID)
    v = b"v%d" % n
    return KeyState(b, b, v, v if chosen else None, b if chosen else Ballot(0, b""))


def crash(store: SqliteStore) -> None:
    """Let go of every file as a killed process would: nothing folded, no marker sealed."""
    store._close_journals()
    store._close_db()
    store._marker.close()
    store._lock.release()
    store._opened = False


def query(path, sql: str) -> list[tuple]:
    db = sqlite3.connect(path / "state.db")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def db_rows(path) -> int:
    return query(path, "SELECT count(*) FROM acceptor")[0][0]


def test_a_pass_is_durable_in_the_journal_and_replayed_after_a_crash(tmp_path):
    store = SqliteStore(tmp_path)
    store.save([("a", state(1))])
    store.seal()
    store.save([("a", state(2, chosen=True)), ("b", state(3))], [("p/", Ballot(9, ID))])
    crash(store)  # the second pass's marker never written: one commit behind, allowed
    assert db_rows(tmp_path) == 0  # only the journal has them
    again = SqliteStore(tmp_path)
    assert again.commit_seq == 2
    assert again.get(["a", "b"]) == {"a": state(2, chosen=True), "b": state(3)}
    assert again.load_ranges() == {"p/": Ballot(9, ID)}
    again.close()
    assert db_rows(tmp_path) == 2  # folded at start; the journal is empty again
    assert (tmp_path / JOURNAL_NAME).read_bytes()[HEADER_SIZE:HEADER_SIZE + 8] == bytes(8)


def test_fold_writes_a_key_once_and_keeps_the_latest(tmp_path, monkeypatch):
    monkeypatch.setattr(storage_fold, "FOLD_KEYS", 3)
    store = SqliteStore(tmp_path)
    for n in range(1, 6):
        store.save([("k", state(n))])
        store.seal()
    in_db = "SELECT key, promised_round FROM acceptor ORDER BY key"
    assert store._db.execute(in_db).fetchall() == []  # one key waits, under FOLD_KEYS
    store.save([("x", state(1)), ("y", state(1))])
    store.seal()  # three keys wait: folded
    rows = store._db.execute(in_db).fetchall()
    assert rows == [("k", 5), ("x", 1), ("y", 1)]
    assert store.page("", 10) == [("k", state(5)), ("x", state(1)), ("y", state(1))]
    store.close()


def test_pages_merge_the_journal_with_the_database_in_key_order(tmp_path):
    store = SqliteStore(tmp_path)
    store.save([(k, state(1, chosen=k in "bd")) for k in "abcde"])
    store._fold()
    store.save([("c", state(2, chosen=True)), ("bb", state(3)), ("f", state(4, chosen=True))])
    assert store.page("", 3) == [("a", state(1)), ("b", state(1, chosen=True)),
                                 ("bb", state(3))]
    assert store.page("b", 10, chosen_only=True) == [
        ("c", state(2, chosen=True)), ("d", state(1, chosen=True)), ("f", state(4, chosen=True))]
    assert store._pending  # no fold was needed for that
    store.close()


def test_reads_that_walk_the_database_see_what_the_journal_holds(tmp_path):
    store = SqliteStore(tmp_path)
    store.save([("b", state(2, chosen=True)), ("a", state(1))])
    assert [k for k, _ in store.page("", 10)] == ["a", "b"]
    assert store.count() == 2
    assert store.chosen_matching("b") == [("b", b"v2")]
    store.close()


def test_a_torn_last_record_was_never_acknowledged_and_is_dropped(tmp_path):
    store = SqliteStore(tmp_path)
    store.save([("a", state(1))])
    store.seal()
    end = store._journals[0].end
    store.save([("b", state(2))])
    crash(store)
    path = tmp_path / JOURNAL_NAME
    data = bytearray(path.read_bytes())
    data[end + 12:store_end(data, end)] = bytes(store_end(data, end) - end - 12)  # torn
    path.write_bytes(bytes(data))
    again = SqliteStore(tmp_path)
    assert again.commit_seq == 1 and again.get(["a", "b"]) == {"a": state(1)}
    again.close()


def store_end(data: bytearray, off: int) -> int:
    length = int.from_bytes(data[off:off + 4], "big")
    return off + 8 + length


def test_a_damaged_record_with_valid_ones_after_it_stops_the_node(tmp_path):
    store = SqliteStore(tmp_path)
    store.save([("a", state(1))])
    store.seal()
    first = HEADER_SIZE
    store.save([("b", state(2))])
    store.seal()
    crash(store)
    path = tmp_path / JOURNAL_NAME
    data = bytearray(path.read_bytes())
    data[first + 10] ^= 0xFF  # a byte inside the first record's payload
    path.write_bytes(bytes(data))
    with pytest.raises(StateDamaged, match=r"state.journal: damaged \(a record at byte 25 "
                                           r"fails its check, and a valid one follows it\)"):
        SqliteStore(tmp_path)


def test_losing_the_last_acknowledged_record_is_seen_by_the_marker(tmp_path):
    """A record damaged after its replies left looks torn, but the marker has it."""
    store = SqliteStore(tmp_path)
    store.save([("a", state(1))])
    store.seal()
    end = store._journals[0].end
    store.save([("b", state(2))])
    store.seal()  # replies sent, marker at 2
    crash(store)
    path = tmp_path / JOURNAL_NAME
    data = bytearray(path.read_bytes())
    data[end + 9] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StateLost, match="rolled back: it holds 1 commits but this node had "
                                        "made 2"):
        SqliteStore(tmp_path)


def test_a_journal_larger_than_any_we_write_is_refused_before_it_is_read(tmp_path, monkeypatch):
    store = SqliteStore(tmp_path)
    store.save([("a", state(1))])
    crash(store)
    monkeypatch.setattr(journal_mod, "MAX_JOURNAL", 1 << 20)  # the file is 4 MB preallocated
    with pytest.raises(StateDamaged, match=r"state.journal: damaged \(4194304 bytes, more "
                                           r"than a journal ever holds\)"):
        SqliteStore(tmp_path)


def test_a_journal_of_another_database_is_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        s = SqliteStore(d)
        s.save([("k", state(1))])
        crash(s)
    shutil.copy(b / JOURNAL_NAME, a / JOURNAL_NAME)
    with pytest.raises(StateLost, match="belongs to another database than state.db"):
        SqliteStore(a)


def test_a_database_older_than_its_journal_is_refused(tmp_path):
    store = SqliteStore(tmp_path)
    store.save([("a", state(1))])
    store.close()  # folded: state.db at commit 1
    backup = (tmp_path / "state.db").read_bytes()
    store = SqliteStore(tmp_path)
    store.save([("b", state(2))])
    store.seal()
    store.close()  # state.db at 2
    store = SqliteStore(tmp_path)
    store.save([("c", state(3))])
    crash(store)  # the journal holds commit 3
    (tmp_path / "state.db").write_bytes(backup)
    for extra in ("state.db-wal", "state.marker"):  # even with the marker gone
        (tmp_path / extra).unlink(missing_ok=True)
    with pytest.raises(StateLost, match=r"rolled back: it holds 1 commits but its journal "
                                        r"\(state.journal\) goes on from commit 3"):
        SqliteStore(tmp_path)


def test_a_crash_between_fold_and_reset_replays_nothing_twice(tmp_path, monkeypatch):
    store = SqliteStore(tmp_path)
    store.save([("a", state(1))])
    store.save([("a", state(2)), ("b", state(1))])
    store.seal()
    monkeypatch.setattr(journal_mod.Journal, "reset", lambda self: None)
    store._fold()  # committed to state.db; the journal keeps its records (the "crash")
    crash(store)
    monkeypatch.undo()
    again = SqliteStore(tmp_path)
    assert again.commit_seq == 2 and again.load() == {"a": state(2), "b": state(1)}
    again.save([("c", state(1))])  # and numbering goes on from there
    assert again.commit_seq == 3
    again.close()


def test_a_database_deleted_with_its_journal_left_is_refused(tmp_path):
    store = SqliteStore(tmp_path)
    store.save([("a", state(1))])
    crash(store)
    (tmp_path / "state.db").unlink()
    (tmp_path / "state.marker").unlink()
    with pytest.raises(StateLost, match=r"missing, but its journal \(state.journal\) holds state"):
        SqliteStore(tmp_path)


def test_new_retires_the_journal_too(tmp_path):
    store = SqliteStore(tmp_path)
    store.save([("a", state(1))])
    crash(store)
    (tmp_path / "state.db").unlink()
    fresh = SqliteStore(tmp_path, new=True)
    assert fresh.load() == {} and fresh.retired is not None
    assert (fresh.retired / JOURNAL_NAME).exists()
    fresh.close()


# ---- a full disk (issue 27): a reply never leaves for a record that is not whole on disk


def _short_pwrite(monkeypatch, script):
    """``os.pwrite`` that follows ``script``: per call, None (write normally), an int n
    (write only the first n bytes, as a nearly full disk does), or an OSError to raise."""
    real = os.pwrite
    steps = iter(script)

    def pwrite(fd, data, offset):
        step = next(steps, None)
        if isinstance(step, OSError):
            raise step
        data = bytes(data)
        return real(fd, data if step is None else data[:step], offset)

    monkeypatch.setattr(os, "pwrite", pwrite)


def test_a_short_write_is_continued_so_the_record_is_whole(tmp_path, monkeypatch):
    store = SqliteStore(tmp_path)
    _short_pwrite(monkeypatch, [10, 7])  # two short counts, then the rest in full
    store.save([("a", state(1))])
    store.seal()
    monkeypatch.undo()
    crash(store)
    again = SqliteStore(tmp_path)
    assert again.commit_seq == 1 and again.get(["a"]) == {"a": state(1)}
    again.close()


def test_a_write_that_stops_short_on_a_full_disk_is_an_error_and_never_counted(tmp_path,
                                                                               monkeypatch):
    store = SqliteStore(tmp_path)
    store.save([("a", state(1))])
    store.seal()
    _short_pwrite(monkeypatch, [20, OSError(errno.ENOSPC, "No space left on device")])
    with pytest.raises(DiskFull, match="disk full"):
        store.save([("b", state(2))])
    monkeypatch.undo()
    assert store.commit_seq == 1  # the failed record is not a commit
    crash(store)  # the node stops; what it wrote of the record is a torn tail
    again = SqliteStore(tmp_path)  # and a restart works: the marker never ran ahead
    assert again.commit_seq == 1
    assert again.get(["a", "b"]) == {"a": state(1)}
    again.close()


def test_a_write_that_makes_no_progress_is_a_full_disk(tmp_path, monkeypatch):
    store = SqliteStore(tmp_path)
    _short_pwrite(monkeypatch, [0])
    with pytest.raises(DiskFull):
        store.save([("a", state(1))])
    monkeypatch.undo()
    crash(store)
    again = SqliteStore(tmp_path)
    assert again.commit_seq == 0 and again.get(["a"]) == {}
    again.close()


def test_space_that_could_not_be_set_aside_is_an_error_before_the_write(tmp_path,
                                                                         monkeypatch):
    store = SqliteStore(tmp_path)
    writes = []
    monkeypatch.setattr(os, "pwrite", lambda *a: writes.append(a) or len(a[1]))

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    big = KeyState(Ballot(1, ID), Ballot(1, ID), b"x" * (5 << 20), None, Ballot(0, b""))
    with pytest.raises(DiskFull):
        store.save([("big", big)])  # past the preallocated 4 MB: needs new space
    assert writes == [] and store.commit_seq == 0
    monkeypatch.undo()
    store.close()


def test_a_disk_too_full_to_preallocate_still_takes_records_that_fit(tmp_path, monkeypatch):
    """Preallocating 4 MB is a saving, not a need: with less room, each record reserves
    what it needs, and only a record that cannot get its space fails."""
    real = os.posix_fallocate

    def little_room(fd, offset, length):
        if offset + length > 64 << 10:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", little_room)
    store = SqliteStore(tmp_path)
    store.save([("a", state(1))])
    store.seal()
    with pytest.raises(DiskFull):
        store.save([("big", KeyState(Ballot(1, ID), Ballot(1, ID), b"x" * (100 << 10), None,
                                     Ballot(0, b"")))])
    monkeypatch.undo()
    crash(store)
    again = SqliteStore(tmp_path)
    assert again.commit_seq == 1 and again.get(["a", "big"]) == {"a": state(1)}
    again.close()
