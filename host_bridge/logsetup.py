"""Logging for the bridge: readable text for a terminal, one JSON object per line for a collector.

`--log-format json` gives lines like
    {"ts": "2025-01-02T03:04:05.678Z", "level": "warning", "logger": "host_bridge.ingest",
     "msg": "rejected batch from mqtt: bad_crc", "pid": 1234}
Extra fields passed with `log.info(..., extra={"node": "pump-1"})` become keys of their own, so
journald, Loki or an ELK pipeline can filter on them without parsing the message.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

FORMATS = ("text", "json")

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        t = time.gmtime(record.created)
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
            "thread": record.threadName,
        }
        for k, v in record.__dict__.items():
            if k not in _STANDARD and not k.startswith("_"):
                out[k] = v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=repr)


CHATTY_LIBRARIES = ("asyncua", "pymodbus", "amqtt", "transitions")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str = "info", fmt: str = "text", stream=None) -> None:
    """Configure the root logger once (replaces handlers a previous call installed)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        # under systemd journald stamps each line itself
        text = TEXT_FORMAT if not os.environ.get("JOURNAL_STREAM") else "%(levelname)s %(name)s: %(message)s"
        handler.setFormatter(logging.Formatter(text))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # The protocol libraries log routine traffic at INFO (asyncua: a line per OPC UA publish
    # request, 100/s per client at a 10 ms publishing interval): an operator's log at the
    # default level carries their warnings and errors only; --log-level debug shows it all.
    quiet = logging.DEBUG if root.level <= logging.DEBUG else max(root.level, logging.WARNING)
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(quiet)
