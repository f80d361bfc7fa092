"""The project's one logging configuration: JSON lines, for every process it runs.

Every project logger (all under `tfstack`: `tfstack.gateway.*`, `tfstack.modelserver.*`, ...),
gunicorn's own and any library's warning reach one JSON stream on stderr; the gateway's access log
(`tfstack.access`) has stdout to itself. The gateway gets it through gunicorn (`logconfig_dict` in
gunicorn.conf.py, applied in the master before any worker forks); the model server calls `setup()`
in `main`.

Standard library only, like all of tfstack/runtime/, which the gateway image copies without the
rest of `tfstack`.
"""

from __future__ import annotations

import json
import logging
import logging.config
import time
from typing import Any

ACCESS_LOGGER = "tfstack.access"
# Top-level loggers of the project's packages and of the server that hosts them; their children
# (`tfstack.gateway.health`, `tfstack.modelserver.manager`, ...) follow them.
PROJECT_LOGGERS = ("tfstack", "gunicorn.error")


class JsonFormatter(logging.Formatter):
    """The record's `fields` dict (access log) or its message, as one JSON object per line."""

    _second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        if fields is None:
            fields = {"level": record.levelname.lower(), "logger": record.name}
            fields["message"] = record.getMessage()
            if record.exc_info:
                fields["traceback"] = self.formatException(record.exc_info)
        return json.dumps({"ts": f"{self._stamp(record.created)}.{int(record.msecs):03d}Z",
                           **fields})

    def _stamp(self, created: float) -> str:
        """`created`'s UTC date and time to the second; formatted once per second (the access
        log writes a line per request)."""
        second, text = self._second
        if int(created) != second:
            second = int(created)
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)  # one assignment: threads see either pair whole
        return text


def lean_records() -> None:
    """Stop `logging` from computing, for every record, what JsonFormatter never writes: the
    calling file and line (a walk up the stack), the thread, the process id and the
    multiprocessing process name (the switches the `logging` docs list under "Optimization").
    Process-wide: every logger of a tfstack process writes through JsonFormatter."""
    logging._srcfile = None  # noqa: SLF001 (the documented switch)
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def config(level: str = "info") -> dict[str, Any]:
    """A `logging.config.dictConfig` dict: project loggers at `level`, everything else (libraries)
    at WARNING, all as JSON on stderr; the access log as JSON on stdout."""
    stream = {"class": "logging.StreamHandler", "formatter": "json"}
    project = {"level": level.upper(), "propagate": True, "handlers": []}
    return {
        "version": 1,
        "disable_existing_loggers": False,  # loggers created at import time keep working
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stderr": {**stream, "stream": "ext://sys.stderr"},
            "stdout": {**stream, "stream": "ext://sys.stdout"},
        },
        "root": {"level": "WARNING", "handlers": ["stderr"]},
        "loggers": {
            **{name: project for name in PROJECT_LOGGERS},
            ACCESS_LOGGER: {"level": "INFO", "propagate": False, "handlers": ["stdout"]},
            # The gateway writes its own access lines; gunicorn's stay off (accesslog = None).
            "gunicorn.access": {"level": "CRITICAL", "propagate": False, "handlers": []},
        },
    }


def setup(level: str = "info") -> None:
    logging.config.dictConfig(config(level))
    lean_records()
