"""One log line per event, with its facts as fields: ``key=value`` text, or JSON for collectors.

``event(log, "delivery.attempt", message=12, route="direct_mx")`` logs the message
``delivery.attempt`` with the fields as ``extra``; ``KeyValueFormatter`` appends them to the plain
line, and python-json-logger's formatter (``SENDGATE_LOG_FORMAT=json``) writes them as keys.
Never pass a message body, a password or a token as a field.
"""

from __future__ import annotations

import logging
from typing import Any

# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def event(log: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    log.log(level, name, extra={"event": name, **fields})


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and k != "event"}


class KeyValueFormatter(logging.Formatter):
    """``2026-11-30 10:00:00 INFO sendgate.delivery delivery.attempt message=12 route=...``"""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = " ".join(f"{key}={_quoted(value)}" for key, value in fields_of(record).items())
        return f"{line} {pairs}" if pairs else line


def _quoted(value: Any) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class DropKnownNoise(logging.Filter):
    """Drop log lines that say nothing an operator can act on (given as message fragments)."""

    def __init__(self, fragments: list[str]) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)
