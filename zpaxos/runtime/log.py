"""Event logging shared by nodes and proposers.

Every record is an *event* with a name and fields, logged through the standard
``logging`` module. The configured file (``paxos.log``, appended by every process of the
cluster) gets text or JSON lines; stderr always gets text, for the person watching.

JSON lines carry what a message sequence chart needs (``zpaxos trace`` reads them)::

    {"ts": 1764226800.123456, "process": "node0", "level": "INFO", "event": "recv",
     "type": "PREPARE", "msg_id": "3f2a9c01:1", "peer": "proposer 3f2a",
     "key": "CISC5597", "ballot": "1.3f2a"}

``send`` and ``recv`` name the message ``type`` and ``msg_id`` (unique per sender, so a
send pairs with its receive) and the ``peer`` at the other end; other events (start,
stop, round, adopted, pause, retry, chosen, gave_up, learned, persisted, malformed, ...)
carry their own fields.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from zpaxos.printable import printable, quoted
from zpaxos.protocol.messages import Ballot
from zpaxos.runtime.config import LogConfig

_VALUE_SHOWN = 200  # characters of a value shown in a text line


def show_value(v: bytes | None) -> str | None:
    """Values are bytes; logs show them as text, with undecodable bytes escaped."""
    return None if v is None else v.decode("utf-8", "backslashreplace")


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return show_value(v)
    if isinstance(v, Ballot):
        return str(v)
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_jsonable(x) for x in v]
    return v


class _TextFormatter(logging.Formatter):
    """One line per event, for people. Every field goes through ``printable``: a value
    holding a newline cannot split the line or forge another one."""

    def format(self, record: logging.LogRecord) -> str:
        return self.line(record.created, getattr(record, "process_name", "?"),
                         record.levelname, getattr(record, "event", ""),
                         getattr(record, "fields", {}), record.getMessage())

    @staticmethod
    def line(created: float, process: str, level: str, event: str, fields: dict[str, Any],
             msg: str = "") -> str:
        t = time.strftime("%H:%M:%S", time.localtime(created))
        ms = int((created % 1) * 1000)
        parts = []
        for k, v in fields.items():
            if v is None or k in ("type", "peer"):
                continue
            if isinstance(v, (list, tuple, set, frozenset)) and not isinstance(v, Ballot):
                v = ",".join(str(_jsonable(x)) for x in v)
            s = quoted(_jsonable(v) if not isinstance(v, bytes) else v)
            if len(s) > _VALUE_SHOWN:
                s = s[:_VALUE_SHOWN] + "..."
            parts.append(f"{printable(k)}={s}")
        head = printable(event)
        if event in ("send", "recv"):
            arrow = "->" if event == "send" else "<-"
            kind, peer = printable(fields.get("type")), printable(fields.get("peer"))
            head = f"{event} {kind} {arrow} {peer}"
        tail = f" {printable(msg)}" if msg else ""
        return (f"{t}.{ms:03d} {printable(process):<14} "
                f"{printable(level):<5} {head} {' '.join(parts)}{tail}").rstrip()

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> str:
        """A line of a JSON log (what ``_JsonFormatter`` wrote) as the same text line."""
        fields = {k: v for k, v in obj.items() if k not in ("ts", "process", "level", "event",
                                                            "msg")}
        ts = obj.get("ts")
        return cls.line(ts if isinstance(ts, (int, float)) else 0.0, str(obj.get("process", "?")),
                        str(obj.get("level", "")), str(obj.get("event", "")), fields,
                        str(obj.get("msg", "")))


_JSON = msgspec.json.Encoder()


class _JsonFormatter(logging.Formatter):
    """One JSON object per line, compact, non-ASCII as is (encoded by msgspec, already
    loaded for the wire: the :mod:`json` package is about 0.7 ms of a short-lived
    ``zpaxos propose``'s imports, and msgspec encodes a line in a fraction of its time)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 6),
            "process": getattr(record, "process_name", "?"),
            "level": record.levelname,
            "event": getattr(record, "event", "log"),
        }
        for k, v in getattr(record, "fields", {}).items():
            if v is not None:
                out[k] = _jsonable(v)
        msg = record.getMessage()
        if msg:
            out["msg"] = msg
        return _JSON.encode(out).decode()


_OPEN: list[SharedFileHandler] = []  # this process's log files, for reopen_logs


class SharedFileHandler(logging.FileHandler):
    """The log file, appended to by every process of the cluster (``O_APPEND``: each
    record is one write, so lines from several processes never mix).

    Two ways to keep it bounded (``[log]``):

    * ``max_bytes`` 0 (the default): the file only grows; ``logrotate`` moves it aside and
      sends SIGHUP, and :func:`reopen_logs` (the node's SIGHUP handler) makes the next
      record open a new file at the configured path. Short-lived processes (propose,
      status...) open the path afresh each time.
    * ``max_bytes`` > 0: rotation by size, safe with several processes on one file. Before
      each record the handler checks the file: when the path names another file than the
      one it holds open (another process rotated it), it reopens; when its file reached
      ``max_bytes``, it takes an exclusive lock (``flock`` on ``FILE.lock``), checks again
      under the lock that nobody rotated meanwhile, renames ``FILE.(n-1)`` to ``FILE.n``
      ... ``FILE`` to ``FILE.1`` (``FILE.backup_count`` is overwritten: the oldest goes),
      and opens a new ``FILE``. A record another process writes between the check and the
      rename lands in ``FILE.1``: nothing is lost. At most ``backup_count`` + 1 files,
      each about ``max_bytes``, plus one record per process that wrote during a rotation.
    """

    def __init__(self, path: Path, max_bytes: int = 0, backup_count: int = 5) -> None:
        super().__init__(path, mode="a", encoding="utf-8")
        self.path = Path(self.baseFilename)
        self.max_bytes, self.backup_count = max_bytes, backup_count
        self.reopen_requested = False
        _OPEN.append(self)

    def emit(self, record: logging.LogRecord) -> None:
        if self.reopen_requested:
            self.reopen_requested = False
            self._reopen()
        elif self.max_bytes and self.stream is not None:
            self._rotate_if_due()
        super().emit(record)

    def _reopen(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.stream = self._open()

    def _same_file(self) -> bool:
        assert self.stream is not None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(self.stream.fileno())
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def _rotate_if_due(self) -> None:
        assert self.stream is not None
        if not self._same_file():
            self._reopen()  # another process rotated it (or it was moved): follow
            return
        if os.fstat(self.stream.fileno()).st_size < self.max_bytes:
            return
        with open(f"{self.path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if self._same_file():  # nobody rotated it while we waited
                for i in range(self.backup_count - 1, 0, -1):
                    older = Path(f"{self.path}.{i}")
                    if older.exists():
                        os.replace(older, f"{self.path}.{i + 1}")
                os.replace(self.path, f"{self.path}.1")
            self._reopen()

    def close(self) -> None:
        if self in _OPEN:
            _OPEN.remove(self)
        super().close()


def reopen_logs() -> None:
    """Make every log file of this process open its path again at its next record (the
    file was moved aside by logrotate). Safe in a signal handler: it only sets flags."""
    for h in list(_OPEN):
        h.reopen_requested = True


class EventLog:
    """A process's logger: ``log.event("chosen", key=..., value=...)``."""

    def __init__(self, logger: logging.Logger, process: str) -> None:
        self.logger = logger
        self.process = process

    def enabled(self, level: int = logging.INFO) -> bool:
        return self.logger.isEnabledFor(level)

    def event(self, name: str, msg: str = "", level: int = logging.INFO, **fields: Any) -> None:
        if self.logger.isEnabledFor(level):
            self.logger.log(level, msg, extra={"event": name, "fields": fields,
                                               "process_name": self.process})


def setup_logging(cfg: LogConfig, process: str, *, stderr: bool = True,
                  level: str | None = None) -> EventLog:
    """Log to the configured file and (unless ``stderr`` is False) to stderr.

    A log file that cannot be opened is the user's problem: it raises OSError, which the
    CLI reports in one line.
    """
    logger = logging.getLogger(f"zpaxos.{process}")
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    logger.setLevel(level or cfg.level)
    if cfg.file is not None:
        if cfg.file.parent != cfg.file:
            cfg.file.parent.mkdir(parents=True, exist_ok=True)
        fh = SharedFileHandler(cfg.file, cfg.max_bytes, cfg.backup_count)
        fh.setFormatter(_JsonFormatter() if cfg.format == "json" else _TextFormatter())
        logger.addHandler(fh)
    if stderr:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(_TextFormatter())
        logger.addHandler(sh)
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return EventLog(logger, process)


def null_log(process: str = "test") -> EventLog:
    logger = logging.getLogger(f"zpaxos.null.{process}")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return EventLog(logger, process)
