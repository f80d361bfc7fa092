"""ManagedProcess.wait_until: a process that never gets ready is stopped when asked, so a helper
that fails before handing it back leaves nothing running."""

from __future__ import annotations

import pytest

from tfstack.runtime.procs import ManagedProcess


def _sleeper(tmp_path, name: str) -> ManagedProcess:
    return ManagedProcess(name, ["sleep", "300"], tmp_path / f"{name}.log").start()


def test_a_process_that_never_gets_ready_is_stopped_on_request(tmp_path):
    proc = _sleeper(tmp_path, "never-ready")
    try:
        with pytest.raises(TimeoutError, match="never-ready not answering after 1s"):
            proc.wait_until(lambda: False, 1, "answering", stop_on_failure=True)
        assert not proc.alive()
    finally:
        proc.stop()


def test_by_default_the_caller_keeps_the_process_to_look_at(tmp_path):
    proc = _sleeper(tmp_path, "kept")
    try:
        with pytest.raises(TimeoutError):
            proc.wait_until(lambda: False, 1, "answering")
        assert proc.alive()
    finally:
        proc.stop()
    assert not proc.alive()
