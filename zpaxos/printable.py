"""Text that is safe to show on one line: every human-readable output goes through here.

Values are arbitrary bytes chosen by users. Printed raw, a value holding a newline would
split a log line in two (and could forge a whole log line) or break a table row; a
terminal escape sequence could rewrite the screen. So every field shown to a person
(log lines, the status table, propose's result line, the bench report) is escaped the
way Python escapes a string literal: ``\\n``, ``\\t``, ``\\x1b``, ``\\u2028``, and a
backslash as ``\\\\``, which keeps the rendering unambiguous. Bytes that are not UTF-8
show as ``\\xff``. JSON output needs none of this: JSON escapes by itself.

A value in a command's output (propose, get/set/cas/delete, status, the scenarios) goes
through :func:`value_text`, one way for every command: quoted, so an empty value shows as
``''``, and shortened with its size where a table has no room for it. Log lines keep
their logfmt ``key=value`` form (:func:`quoted`).
"""

from __future__ import annotations

import unicodedata

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
# Control, format (bidi overrides, zero-width), line and paragraph separators.
_UNSAFE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}


def _escape_char(c: str) -> str:
    short = _SHORT.get(c)
    if short is not None:
        return short
    o = ord(c)
    if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{o - 0xDC00:02x}"
    if o < 0x100:
        return f"\\x{o:02x}"
    return f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def _unsafe(c: str) -> bool:
    return c in _SHORT or (not c.isprintable() and c != " ") or (
        unicodedata.category(c) in _UNSAFE_CATEGORIES)


def printable(v: bytes | str | None, missing: str = "-") -> str:
    """``v`` as one line of printable text (``missing`` for None)."""
    if v is None:
        return missing
    s = v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v)
    if s.isprintable() and "\\" not in s:
        return s  # the common case, fast
    return "".join(_escape_char(c) if _unsafe(c) else c for c in s)


def quoted(v: bytes | str | None) -> str:
    """Like :func:`printable`, in double quotes when needed to keep ``key=value`` pairs
    apart (empty, or holding a space, ``=`` or ``"``), logfmt style."""
    s = printable(v, "")
    if s == "" or any(c in s for c in ' ="'):
        return '"' + s.replace('"', '\\"') + '"'
    return s


def value_text(v: bytes | str, limit: int | None = None) -> str:
    """A value as every command shows it: in single quotes, escaped as by
    :func:`printable` (a quote as ``\\'``), so an empty value shows as ``''`` and a value
    is never mistaken for the words around it. Bytes that are not UTF-8 show as ``\\xff``.
    Past ``limit`` characters it is cut, with its size: ``'bbbbbbbb'... (1048576 bytes)``."""
    s = v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v
    cut = limit is not None and len(s) > limit
    inside = printable(s[:limit] if cut else s).replace("'", "\\'")
    if not cut:
        return f"'{inside}'"
    size = len(v) if isinstance(v, bytes) else len(v.encode("utf-8", "surrogateescape"))
    return f"'{inside}'... ({size} bytes)"
