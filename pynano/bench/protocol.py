"""The line protocol between the bench runner and its worker processes.

Every message is one line: a verb, then ``key=value`` fields separated by
spaces. Values are percent-encoded, so they never hold a space or a line
break. benchmarks/cfloor.c speaks the same protocol, so the runner drives
the C floor and the Python stacks alike.

Runner to server: ``serve kind=... version=... suite=... count=... threads=...
bytes=... warmup=...``, ``release``, ``quit``.
Runner to client: ``run`` with the same fields, ``release``, ``quit``.
Worker to runner: ``ready``, ``serving``, ``held``, ``done`` or ``error``,
each with result fields.
"""

from __future__ import annotations

from typing import Dict, Tuple
from urllib.parse import quote, unquote


class ProtocolError(RuntimeError):
    """A worker sent a line the runner cannot parse."""


def format_message(verb: str, **fields: object) -> str:
    """Encode a verb and its fields as one protocol line, without the newline."""
    parts = [verb]
    for key, value in fields.items():
        parts.append(f"{key}={quote(str(value), safe='')}")
    return " ".join(parts)


def parse_message(line: str) -> Tuple[str, Dict[str, str]]:
    """Split one protocol line into its verb and fields."""
    words = line.split()
    if not words:
        raise ProtocolError("empty line; expected a verb and key=value fields")
    fields: Dict[str, str] = {}
    for word in words[1:]:
        key, separator, value = word.partition("=")
        if not separator or not key:
            raise ProtocolError(f"field {word!r} in {line!r} is not key=value")
        fields[key] = unquote(value)
    return words[0], fields
