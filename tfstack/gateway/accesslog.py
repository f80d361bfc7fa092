"""The access log: one JSON line per request on stdout (the format is
tfstack/runtime/logconfig.py's).

(Named accesslog, not logging, so it cannot shadow the standard library's module.)
"""

from __future__ import annotations

import logging

from tfstack.runtime.logconfig import ACCESS_LOGGER


def access_logger(enabled: bool) -> logging.Logger | None:
    """The access logger, or None when `TFSTACK_ACCESS_LOG` turns the access log off."""
    return logging.getLogger(ACCESS_LOGGER) if enabled else None


def log_request(logger: logging.Logger | None, **fields: object) -> None:
    if logger is not None and logger.isEnabledFor(logging.INFO):
        logger.info("", extra={"fields": fields})
