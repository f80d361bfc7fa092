"""The JSON log lines (tfstack/runtime/logconfig.py): each record's own time, and the same line
whether or not `lean_records` stopped `logging` computing what the line never shows."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest

from tfstack.runtime.logconfig import JsonFormatter, lean_records


def _record(created: float, **fields: object) -> logging.LogRecord:
    record = logging.LogRecord("tfstack.access", logging.INFO, __file__, 1, "", None, None)
    record.created, record.msecs = created, (created - int(created)) * 1000
    record.fields = fields
    return record


def test_every_line_carries_its_own_records_time_to_the_millisecond():
    formatter = JsonFormatter()
    # Within one second, across seconds, and back in time (a clock step): the text formatted
    # once per second must never stick to the wrong second.
    for created in (1_700_000_000.25, 1_700_000_000.875, 1_700_000_001.0, 1_700_000_061.5,
                    1_699_999_999.75, 1_700_000_000.5):
        line = json.loads(formatter.format(_record(created, status=200)))
        expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(created)))
        assert line == {"ts": f"{expected}.{int(created % 1 * 1000):03d}Z",
                        "status": 200}


@pytest.fixture
def logging_switches(monkeypatch):
    """`lean_records` sets process-wide switches: put them back after the test."""
    for name in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))


def _lines(logger_name: str) -> list[dict]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.propagate, logger.level = False, logging.INFO
    try:
        logger.info("", extra={"fields": {"request_id": "abc", "status": 429}})
        logger.warning("endpoint %s ejected", "10.0.0.1:8500")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("unhandled")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    for line in lines:
        line.pop("ts")
        if "traceback" in line:
            line["traceback"] = line["traceback"].splitlines()[-1]
    return lines


def test_lean_records_leaves_every_line_as_it_was(logging_switches):
    before = _lines("tfstack.test.lean")
    lean_records()
    assert logging._srcfile is None and not logging.logThreads  # it did switch them off
    after = _lines("tfstack.test.lean")
    assert after == before == [
        {"request_id": "abc", "status": 429},
        {"level": "warning", "logger": "tfstack.test.lean",
         "message": "endpoint 10.0.0.1:8500 ejected"},
        {"level": "error", "logger": "tfstack.test.lean", "message": "unhandled",
         "traceback": "ValueError: boom"},
    ]
