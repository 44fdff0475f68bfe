"""The data directory: one owner, no silent amnesia, storage errors told apart, checksums.

Process behaviour is tested on real ``zpaxos node`` processes (zpaxos.lab.launcher); each
refusal is asserted as the exact line on stderr, with its exit code and no traceback.
Tests that need root (read-only bind mounts, tmpfs, chattr) skip without it.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import pytest

from tests.harness import ROOT, Cluster, env, free_ports, zpaxos_cmd
from zpaxos.lab.launcher import write_config
from zpaxos.protocol.core import KeyState
from zpaxos.protocol.messages import Ballot
from zpaxos.runtime.storage import SqliteStore
from zpaxos.runtime.storage_errors import (
    DataDirLocked,
    NotLost,
    StateDamaged,
    StateLost,
)

pytestmark = pytest.mark.e2e

ERR = "zpaxos node: error: node0: "
ID = bytes(range(16))
README = "'Operating zpaxos' in the README"
RESCUE = (f"; the node will not vote on it: put back this node's own latest files if you "
          f"still have them, else follow {README} to rejoin with --new")


@pytest.fixture
def c(tmp_path):
    cluster = Cluster(tmp_path, n=1)
    try:
        yield cluster
    finally:
        cluster.stop_all()


def data(c: Cluster) -> Path:
    return c.dir / "data" / "node0"


def refused(c: Cluster, *args: str) -> tuple[int, str]:
    """Run ``zpaxos node 0`` expecting it to refuse at once: its exit code and its line."""
    r = c.run("node", "0", "-q", *args, timeout=30)
    assert "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1, r.err
    return r.code, r.err.strip()


def commits(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute("SELECT value FROM meta WHERE name='commit_seq'").fetchone()[0])
    finally:
        con.close()


def learned_is_durable(c: Cluster) -> bool:
    """node0 logged a commit (``persisted``) after its latest ``learned`` event."""
    log = c.dir / "paxos.log"
    events = [line.replace(" ", "") for line in log.read_text().splitlines()
              if '"process":"node0"' in line.replace(" ", "")] if log.exists() else []
    learned = [i for i, e in enumerate(events) if '"event":"learned"' in e]
    return bool(learned) and any('"event":"persisted"' in e for e in events[learned[-1]:])


def chosen(c: Cluster, value: str, key: str = "CISC5597") -> None:
    r = c.propose(value, "--key", key)
    assert r.code == 0 and r.json["chosen"] == value, r.err


# ---------------------------------------------------------------- hole 1: one owner


def test_second_process_on_the_same_data_dir_fails_naming_the_pid(c):
    c.start(0)
    other = write_config(c.dir / "other.ini", [("127.0.0.1", free_ports(1)[0])])
    r = subprocess.run(zpaxos_cmd("node", "0", "--config", str(other), "-q"), cwd=c.dir,
                       env=env(), capture_output=True, text=True, timeout=15)
    assert r.returncode == 1
    assert r.stderr == (f"{ERR}data/node0: data directory is in use by process "
                        f"{c.procs[0].pid} (another node on the same data_dir?); stop it "
                        f"first, or give this node its own data_dir\n")
    chosen(c, "Value_A")  # the first node is untouched


def test_kill_9_never_leaves_a_stale_lock(c):
    c.start(0)
    chosen(c, "Value_A")
    c.kill(0)
    assert (data(c) / "node.lock").exists()
    c.start(0)
    # Its vote survived. (Whether it also knows the value chosen depends on whether the
    # kill came before the next commit carried the learned decision: learning is not
    # durable at once, the acceptance is.)
    state = c.node_state(0)
    assert state["chosen"] == "Value_A" or state["value"] == "Value_A", state


def test_lock_is_held_in_process_too(tmp_path):
    store = SqliteStore(tmp_path)
    try:
        with pytest.raises(DataDirLocked, match=f"in use by process {os.getpid()}"):
            SqliteStore(tmp_path)
    finally:
        store.close()
    SqliteStore(tmp_path).close()  # released by close()


# ---------------------------------------------------------------- hole 2: amnesia


def test_deleted_database_is_state_lost_not_a_new_node(c):
    c.start(0)
    chosen(c, "Value_A")
    c.stop(0)
    n = commits(data(c) / "state.db")
    (data(c) / "state.db").unlink()
    code, line = refused(c)
    assert code == 4
    assert line == (f"{ERR}data/node0/state.db: missing, but this directory held zpaxos state "
                    f"({n} commits; state lost){RESCUE}")


def test_restored_old_backup_is_refused(c):
    c.start(0)
    chosen(c, "Value_A", "k1")
    c.stop(0)
    backup = c.dir / "backup.db"
    shutil.copy(data(c) / "state.db", backup)
    c.start(0)
    chosen(c, "Value_B", "k2")
    c.stop(0)
    old, new = commits(backup), commits(data(c) / "state.db")
    shutil.copy(backup, data(c) / "state.db")
    code, line = refused(c)
    assert code == 4 and old < new
    assert line == (f"{ERR}data/node0/state.db: rolled back: it holds {old} commits but this "
                    f"node had made {new} (restored from an old backup, or its journal or "
                    f"write-ahead log was deleted){RESCUE}")


def test_deleted_journal_after_kill_9_is_refused(c):
    """The latest commits live in state.journal until they are folded into state.db:
    deleting it after a crash loses them, and the marker sees that."""
    c.start(0)
    chosen(c, "Value_A")
    c.kill(0)
    journal = data(c) / "state.journal"
    assert journal.read_bytes()[25:33] != bytes(8)  # a record waits there
    journal.unlink()
    code, line = refused(c)
    assert code == 4 and "rolled back: it holds 0 commits but this node had made" in line


def test_starting_empty_is_explicit_and_keeps_the_old_files(c):
    c.start(0)
    chosen(c, "Value_A")
    c.stop(0)
    (data(c) / "state.db").unlink()
    p = subprocess.Popen(zpaxos_cmd("node", "0", "--config", str(c.config), "-q", "--new"),
                         cwd=c.dir, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert "listening on" in p.stdout.readline()
        assert c.node_state(0) is None  # empty: it knows no key
    finally:
        p.terminate()
        out, err = p.communicate(timeout=10)
    retired = list(data(c).glob("retired-*"))
    assert len(retired) == 1 and (retired[0] / "state.marker").exists()
    assert err.startswith("node0: started empty on purpose (--new); the old state files are in "
                          "data/node0/retired-")
    c.start(0)  # the new incarnation is an ordinary node from now on


def test_new_over_healthy_state_is_refused(c):
    c.start(0)
    chosen(c, "Value_A")
    c.stop(0)
    n = commits(data(c) / "state.db")
    code, line = refused(c, "--new")
    assert code == 2
    assert line == (f"{ERR}data/node0: --new refused: this node's state is intact ({n} commits) "
                    f"and starting it empty would throw away its promises; start it without "
                    f"--new")


def test_first_start_without_any_data_dir_just_works(c):
    assert not (c.dir / "data").exists()
    c.start(0)
    chosen(c, "Value_A")


# ---------------------------------------------------------------- hole 3: storage errors


def _mount_or_skip(*args: str) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount")
    r = subprocess.run(["mount", *args], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"mount {' '.join(args)}: {r.stderr.strip()}")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_read_only_data_dir_is_not_writable_not_damaged(c):
    c.start(0)
    chosen(c, "Value_A")
    c.stop(0)
    d = data(c)
    _mount_or_skip("--bind", str(d), str(d))
    try:
        _mount_or_skip("-o", "remount,ro,bind", str(d))
        code, line = refused(c)
    finally:
        _umount(d)
    assert code == 5
    assert line == (f"{ERR}data/node0/node.lock: not writable (read-only file system); the "
                    f"stored state is intact: make it writable again (remount read-write, fix "
                    f"ownership or permissions, chattr -i) and start the node again")
    c.start(0)  # and once writable again, it is the same node
    assert c.node_state(0)["chosen"] == "Value_A"


def test_immutable_database_is_not_writable(c):
    c.start(0)
    chosen(c, "Value_A")
    c.stop(0)
    db = data(c) / "state.db"
    if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i not available here")
    try:
        code, line = refused(c)
    finally:
        subprocess.run(["chattr", "-i", str(db)], capture_output=True)
    assert code == 5
    assert line == (f"{ERR}data/node0/state.db: not writable (operation not permitted "
                    f"(immutable file?)); the stored state is intact: make it writable again "
                    f"(remount read-write, fix ownership or permissions, chattr -i) and start "
                    f"the node again")


def test_disk_full_stops_the_node_with_its_own_message(c):
    d = data(c)
    d.mkdir(parents=True)
    _mount_or_skip("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d))
    try:
        c.start(0)
        big = "x" * 100_000
        for i in range(40):
            if not c.is_running(0):
                break
            c.propose(big, "--key", f"k{i}", "--timeout", "2")
        p = c.procs[0]
        code = p.wait(timeout=10)
        err = p.stderr.read()
        c.kill(0)
    finally:
        _umount(d)
    assert code == 6 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    # The journal (every pass) or state.db (when the journal is folded into it).
    assert re.fullmatch(
        re.escape(f"{ERR}stopping: data/node0/state.") + r"(journal|db)" +
        re.escape(": disk full (") + r"[^)]*" +
        re.escape("); the state is intact up to the last commit: free space on that file "
                  "system and start the node again"), err.strip()), err


def test_files_cut_underneath_stop_the_node_without_a_signal(c):
    """SQLite's memory-mapped -shm file, truncated under the old node, killed it by SIGBUS."""
    c.start(0)
    chosen(c, "Value_A")
    for f in data(c).glob("state.db*"):
        os.truncate(f, 0)
    c.propose("Value_B", "--key", "k2", "--timeout", "2")
    p = c.procs[0]
    code = p.wait(timeout=10)
    err = p.stderr.read()
    assert code == 7, (code, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"{ERR}stopping: data/node0/state.db: changed underneath the running "
                          f"node (the file was truncated from ")


def test_deleted_database_under_a_running_node_stops_it(c):
    c.start(0)
    chosen(c, "Value_A")
    (data(c) / "state.db").unlink()
    r = c.propose("Value_B", "--key", "k2", "--timeout", "2")
    assert r.code == 1  # no reply left the node: nothing was promised from a lost file
    p = c.procs[0]
    assert p.wait(timeout=10) == 7
    assert p.stderr.read() == (f"{ERR}stopping: data/node0/state.db: changed underneath the "
                               f"running node (the file was deleted); no reply depends on the "
                               f"failed write: find what touched the data directory, then start "
                               f"the node again (it checks its state)\n")


# ---------------------------------------------------------------- hole 5: checksums


def test_changed_byte_in_a_stored_value_is_refused(c):
    c.start(0)
    chosen(c, "Value_Original")
    c.stop(0)
    db = data(c) / "state.db"
    raw = bytearray(db.read_bytes())
    at = raw.index(b"Value_Original")
    raw[at + 6] ^= 0x01  # "Value_Nriginal": still a valid SQLite file
    db.write_bytes(bytes(raw))
    code, line = refused(c)
    assert code == 3
    assert line == (f"{ERR}data/node0/state.db: the state of key 'CISC5597' fails its "
                    f"checksum (changed on disk){RESCUE}")


def test_changed_promised_round_is_refused(c):
    c.start(0)
    chosen(c, "Value_A", "k1")
    chosen(c, "Value_B", "k2")
    c.stop(0)
    con = sqlite3.connect(data(c) / "state.db")
    con.execute("UPDATE acceptor SET promised_round = 0 WHERE key = 'k2'")
    con.commit()
    con.close()
    code, line = refused(c)
    assert code == 3
    assert line == (f"{ERR}data/node0/state.db: the state of key 'k2' fails its checksum "
                    f"(changed on disk){RESCUE}")


# ---------------------------------------------------------------- the store, in process


def test_store_exposes_incarnation_and_commit_count(tmp_path):
    store = SqliteStore(tmp_path)
    inc = store.incarnation
    assert len(inc) == 16 and store.commit_seq == 0
    store.save([("a", KeyState(Ballot(1, ID)))])
    store.save([("b", KeyState(Ballot(2, ID)))])
    assert store.commit_seq == 2
    store.close()
    again = SqliteStore(tmp_path)
    assert (again.incarnation, again.commit_seq) == (inc, 2)
    again.close()


def test_torn_marker_write_falls_back_to_the_other_slot(tmp_path):
    store = SqliteStore(tmp_path)
    for i in range(3):
        store.save([("a", KeyState(Ballot(i + 1, ID)))])
    store.close()
    marker = tmp_path / "state.marker"
    raw = bytearray(marker.read_bytes())
    raw[512 + 30] ^= 0xFF  # commit 3 lives in slot 1: tear it
    marker.write_bytes(bytes(raw))
    again = SqliteStore(tmp_path)  # slot 0 says 2 <= 3 in the database: fine
    assert again.commit_seq == 3
    again.close()
    marker.write_bytes(b"\0" * 1024)
    with pytest.raises(StateDamaged, match=r"state.marker: damaged \(no valid record\)"):
        SqliteStore(tmp_path)


@pytest.mark.parametrize("version", ["1", "2"])
def test_old_schemas_are_migrated_with_checksums(tmp_path, version):
    con = sqlite3.connect(tmp_path / "state.db")
    chosen_cols = ("" if version == "1" else
                   ", chosen_round INTEGER NOT NULL, chosen_id BLOB NOT NULL")
    con.executescript(
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE acceptor (key TEXT PRIMARY KEY, promised_round INTEGER NOT NULL,"
        " promised_id BLOB NOT NULL, accepted_round INTEGER NOT NULL, accepted_id BLOB NOT NULL,"
        f" value BLOB, chosen BLOB{chosen_cols});"
        f"INSERT INTO meta VALUES ('schema_version', '{version}');")
    extra = (0, b"") if version == "2" else ()
    con.execute(f"INSERT INTO acceptor VALUES (?, ?, ?, ?, ?, ?, ?{', ?, ?' * (version == '2')})",
                ("k", 3, ID, 2, ID, b"v", None, *extra))
    con.commit()
    con.close()
    store = SqliteStore(tmp_path)
    assert store.load() == {"k": KeyState(Ballot(3, ID), Ballot(2, ID), b"v", None)}
    assert store.commit_seq == 1  # rows mean promises: a lost database must be noticed
    store.close()
    (tmp_path / "state.db").unlink()
    with pytest.raises(StateLost, match="state lost"):
        SqliteStore(tmp_path)


def test_new_in_process(tmp_path):
    store = SqliteStore(tmp_path)
    store.save([("a", KeyState(Ballot(1, ID)))])
    old = store.incarnation
    store.close()
    with pytest.raises(NotLost):
        SqliteStore(tmp_path, new=True)
    (tmp_path / "state.db").unlink()
    with pytest.raises(StateLost):
        SqliteStore(tmp_path)
    fresh = SqliteStore(tmp_path, new=True)
    assert fresh.incarnation != old and fresh.load() == {} and fresh.retired is not None
    fresh.close()
    SqliteStore(tmp_path).close()  # from now on an ordinary node


def test_lock_file_deleted_under_a_running_node(c):
    """Someone removes node.lock: a second process still cannot use the database (SQLite's
    own exclusive lock), and the first stops at its next commit instead of sharing."""
    c.start(0)
    chosen(c, "Value_A")
    # The node commits the learned decision (no reply waits on it) about 20 ms later;
    # let it, or that commit may find node.lock gone and stop the node before the
    # second process tries (which is right, but not what this test is about).
    c.wait_for(lambda: learned_is_durable(c), "the decision's own commit")
    (data(c) / "node.lock").unlink()
    other = write_config(c.dir / "other.ini", [("127.0.0.1", free_ports(1)[0])])
    r = subprocess.run(zpaxos_cmd("node", "0", "--config", str(other), "-q"), cwd=c.dir,
                       env=env(), capture_output=True, text=True, timeout=15)
    assert r.returncode == 1
    assert r.stderr == (f"{ERR}data/node0/state.db: the database is locked by another "
                        f"process; stop the other node using this data_dir\n")
    c.propose("Value_B", "--key", "k2", "--timeout", "2")
    p = c.procs[0]
    assert p.wait(timeout=10) == 7
    assert p.stderr.read() == (f"{ERR}stopping: data/node0/node.lock: changed underneath the "
                               f"running node (the file was replaced by another one); no reply "
                               f"depends on the failed write: find what touched the data "
                               f"directory, then start the node again (it checks its state)\n")


def test_empty_database_file_from_a_crash_at_creation_is_still_a_new_node(tmp_path):
    (tmp_path / "state.db").write_bytes(b"")
    (tmp_path / "state.db-wal").write_bytes(b"")
    store = SqliteStore(tmp_path)
    assert store.load() == {} and store.commit_seq == 0
    store.close()


OTHER_USER = "65534"  # nobody
SETPRIV = shutil.which("setpriv") or "setpriv"


def readable_node(dest: Path) -> tuple[list[str], dict[str, str]] | str:
    """How the other user starts a node: zpaxos and its dependencies copied into ``dest``
    (where any user can read), and a Python that user can run. The clone and its .venv may
    sit in a directory only their owner can enter (``mktemp -d``, ``/root``); the copy does
    not depend on that. A string instead says why there is no such Python."""
    shutil.copytree(ROOT / "zpaxos", dest / "zpaxos",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for req in metadata.requires("zpaxos") or []:
        if "extra ==" in req:
            continue
        name = re.match(r"[A-Za-z0-9_.-]+", req)
        for f in metadata.distribution(name.group() if name else req).files or []:
            if ".." not in f.parts and not f.parts[0].endswith(".dist-info"):
                (dest / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(str(f.locate())), dest / f)
    e = {**env(), "PYTHONPATH": str(dest), "PYTHONDONTWRITEBYTECODE": "1"}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    tried = []
    for py in dict.fromkeys([sys.executable, os.path.realpath(sys.executable),
                             getattr(sys, "_base_executable", sys.executable),
                             shutil.which(version), f"/usr/bin/{version}",
                             f"/usr/local/bin/{version}"]):
        if py is None or not Path(py).exists():
            continue
        cmd = [SETPRIV, f"--reuid={OTHER_USER}", f"--regid={OTHER_USER}", "--clear-groups",
               py, "-s"]
        probe = subprocess.run([*cmd, "-c", "import zpaxos.cli, zmq, click, msgpack"],
                               env=e, capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return [*cmd, "-m", "zpaxos"], e
        tried.append(py)
    return (f"no {version} that user {OTHER_USER} can run with zpaxos copied to a readable "
            f"place (tried {', '.join(tried)})")


def test_files_of_another_user_are_not_writable_not_damaged():
    """The node started as the wrong user: permission denied is not damage."""
    if os.geteuid() != 0 or shutil.which(SETPRIV) is None:
        pytest.skip("needs root and setpriv to run the node as another user")
    work = Path(tempfile.mkdtemp(prefix="zpaxos-perm-"))  # reachable by the other user
    os.chmod(work, 0o755)
    c = Cluster(work, n=1)
    try:
        node = readable_node(work / "readable")
        if isinstance(node, str):
            pytest.skip(node)
        cmd, node_env = node
        c.start(0)
        chosen(c, "Value_A")
        c.stop(0)
        os.chmod(data(c), 0o777)
        for f in (data(c) / "node.lock", c.dir / "paxos.log"):
            if f.exists():
                os.chmod(f, 0o666)
        r = subprocess.run([*cmd, "node", "0", "--config", str(c.config), "-q"],
                           cwd=c.dir, env=node_env, capture_output=True, text=True, timeout=30)
    finally:
        c.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    assert r.returncode == 5, r.stderr
    assert r.stderr == (f"{ERR}data/node0/state.db: not writable (permission denied); the "
                        f"stored state is intact: make it writable again (remount read-write, "
                        f"fix ownership or permissions, chattr -i) and start the node again\n")


def test_storage_errors_are_classified_by_code_and_errno():
    import errno

    from zpaxos.runtime import storage_errors as se

    def sq(code: int, text: str = "x") -> sqlite3.Error:
        e = sqlite3.OperationalError(text)
        e.sqlite_errorcode = code
        return e

    p = Path("d/state.db")
    cases = [(sq(8), False, se.NotWritable), (sq(8 | 6 << 8), False, se.NotWritable),
             (sq(13), True, se.DiskFull), (sq(11), False, se.StateDamaged),
             (sq(26), False, se.StateDamaged), (sq(10 | 3 << 8), True, se.ChangedUnderneath),
             (sq(11), True, se.ChangedUnderneath), (sq(5), False, se.DataDirLocked),
             (sqlite3.OperationalError("database or disk is full"), True, se.DiskFull)]
    for err, running, cls in cases:
        assert type(se.from_sqlite_error(p, err, running)) is cls, (err, running)
    for no, cls in [(errno.EROFS, se.NotWritable), (errno.EACCES, se.NotWritable),
                    (errno.EPERM, se.NotWritable), (errno.ENOSPC, se.DiskFull),
                    (errno.EIO, se.StateDamaged)]:
        assert type(se.from_os_error(p, OSError(no, os.strerror(no)))) is cls
    assert type(se.from_os_error(p, OSError(errno.EIO, "x"), running=True)) is \
        se.ChangedUnderneath
    codes = [c.exit_code for c in (se.StateDamaged, se.StateLost, se.NotWritable, se.DiskFull,
                                   se.ChangedUnderneath)]
    assert codes == [3, 4, 5, 6, 7]
