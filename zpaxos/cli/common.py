"""What every command shares, without click: the failure it prints as one line, loading
the cluster file, opening the event log. ``zpaxos propose``'s fast path runs on these
alone (zpaxos/cli/entry.py), so nothing here may import click."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from zpaxos.runtime.exits import Exit

if TYPE_CHECKING:
    import logging

    from zpaxos.runtime.config import ClusterConfig
    from zpaxos.runtime.log import EventLog


class Failure(Exception):
    """A user-facing failure: printed as one line (``zpaxos CMD: error: ...``), exits with
    ``code``."""

    def __init__(self, message: str, code: Exit = Exit.FAILED) -> None:
        super().__init__(message)
        self.code = code


class Usage(Exception):
    """A usage mistake found after parsing: the click command turns it into its own
    usage error (``see 'zpaxos propose --help'``)."""


def echo(message: str, err: bool = False) -> None:
    """What ``click.echo`` does with a line of text, without importing click."""
    stream = sys.stderr if err else sys.stdout
    stream.write(message + "\n")
    stream.flush()


def load_cluster(config: str | None) -> ClusterConfig:
    """The cluster file (``--config``, else $ZPAXOS_CONFIG, else configs/cluster.ini)."""
    from zpaxos.runtime.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as e:
        raise Failure(str(e), Exit.USAGE) from None


def open_log(cluster: ClusterConfig, process: str, quiet: bool,
             summary: logging.Handler | None = None, level: str | None = None) -> EventLog:
    """The process's event log: everything to the log file; on stderr every event as
    text, or (``summary``, a handler) only what that handler makes of them, or nothing
    (``quiet``). ``level``: the file's level instead of the cluster file's."""
    import logging

    from zpaxos.runtime.log import setup_logging

    try:
        log = setup_logging(cluster.log, process, stderr=not quiet and summary is None,
                            level=level)
    except OSError as e:
        raise Failure(f"{cluster.path}: [log] file: cannot open {cluster.log.file} "
                      f"({e.strerror})", Exit.USAGE) from None
    if summary is not None and not quiet:
        # The summary reads INFO events even when the file is configured to get fewer.
        for h in log.logger.handlers:
            h.setLevel(log.logger.level)
        log.logger.setLevel(min(log.logger.level, logging.INFO))
        log.logger.addHandler(summary)
    return log
