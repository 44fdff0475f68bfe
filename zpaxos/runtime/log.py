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

import json
import logging
import sys
import time
from typing import Any

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


class _JsonFormatter(logging.Formatter):
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
        return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


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
        fh = logging.FileHandler(cfg.file, mode="a", encoding="utf-8")
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
