"""Structured logs: one JSON access-log line per request on stdout, everything else on stderr.

(Named accesslog, not logging, so it cannot shadow the standard library's module.)
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

ACCESS_LOGGER = "tfstack.access"
APP_LOGGER = "tfstack.gateway"


class JsonFormatter(logging.Formatter):
    """The record's `fields` dict (access log) or its message, as one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        if fields is None:
            fields = {"level": record.levelname.lower(), "logger": record.name}
            fields["message"] = record.getMessage()
            if record.exc_info:
                fields["traceback"] = self.formatException(record.exc_info)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return json.dumps({"ts": f"{stamp}.{int(record.msecs):03d}Z", **fields})


def configure(level: str, access_log: bool) -> logging.Logger:
    """Set up both loggers once per process; returns the access logger."""
    _json_logger(APP_LOGGER, sys.stderr).setLevel(level.upper())
    access = _json_logger(ACCESS_LOGGER, sys.stdout)
    access.setLevel(logging.INFO if access_log else logging.CRITICAL + 1)
    return access


def _json_logger(name: str, stream: TextIO) -> logging.Logger:
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    return logger


def log_request(logger: logging.Logger, **fields: object) -> None:
    if logger.isEnabledFor(logging.INFO):
        logger.info("", extra={"fields": fields})
