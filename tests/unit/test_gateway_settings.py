"""Gateway settings: defaults, parsing, and a bad value naming its variable (in-process and at
gunicorn start-up)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tfstack.gateway.settings import Settings, SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]


def test_defaults_match_the_brief():
    settings = load_settings({})
    assert settings.bind == "0.0.0.0:8080"
    assert settings.deadline_ms == 10000
    assert settings.backends == ("127.0.0.1:8500",)
    assert settings.workers >= 1 and settings.threads >= 1
    assert settings.worker_class == "gevent"  # docs/architecture.md, "Worker model"
    assert settings == Settings.defaults()


def test_values_are_parsed():
    settings = load_settings(
        {
            "TFSTACK_BACKENDS": " a:1, [::1]:8500 ,a:1,b.svc.cluster.local:8500",
            "TFSTACK_WORKERS": "3",
            "TFSTACK_LOG_LEVEL": "DEBUG",
            "TFSTACK_ACCESS_LOG": "off",
            "TFSTACK_READY_MODELS": "digits, half_plus_two",
        }
    )
    assert settings.backends == ("a:1", "[::1]:8500", "b.svc.cluster.local:8500")
    assert settings.workers == 3
    assert settings.log_level == "debug"
    assert settings.access_log is False
    assert settings.ready_models == ("digits", "half_plus_two")


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        load_settings({}).workers = 9  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("TFSTACK_BIND", "8080", "expected host:port"),
        ("TFSTACK_BIND", "host:99999", "expected host:port"),
        ("TFSTACK_WORKERS", "two", "expected an integer"),
        ("TFSTACK_WORKERS", "0", "in [1, 64]"),
        ("TFSTACK_THREADS", "-1", "in [1, 256]"),
        ("TFSTACK_BACKENDS", " , ", "empty list"),
        ("TFSTACK_BACKENDS", "a:1,nohostport", "expected host:port"),
        ("TFSTACK_DEADLINE_MS", "1.5", "expected an integer"),
        ("TFSTACK_DEADLINE_MS", "0", "expected an integer in"),
        ("TFSTACK_MAX_BODY_BYTES", "lots", "expected an integer"),
        ("TFSTACK_GRPC_MAX_MESSAGE_BYTES", "1024", "expected an integer in"),
        ("TFSTACK_LOG_LEVEL", "verbose", "expected one of"),
        ("TFSTACK_ACCESS_LOG", "maybe", "expected true/false"),
        ("TFSTACK_READY_CHECK_INTERVAL_MS", "50", "expected an integer in [100, 60000]"),
        ("TFSTACK_GRACEFUL_TIMEOUT_S", "0", "expected an integer in"),
        ("TFSTACK_WORKER_TIMEOUT_S", "", "expected an integer"),
        ("TFSTACK_DEBUG_ENDPOINTS", "2", "expected true/false"),
        ("TFSTACK_WORKER_CLASS", "sync", "expected one of gevent, gthread"),
        ("TFSTACK_WORKER_CONNECTIONS", "0", "expected an integer in"),
    ],
)
def test_bad_value_names_the_variable(variable, value, problem):
    with pytest.raises(SettingsError) as err:
        load_settings({variable: value})
    assert str(err.value).startswith(f"{variable}: ")
    assert problem in str(err.value)


def run_gunicorn(env: dict[str, str]) -> subprocess.CompletedProcess:
    gunicorn = Path(sys.executable).parent / "gunicorn"
    return subprocess.run(
        [str(gunicorn), "-c", "tfstack/gateway/gunicorn.conf.py",
         "tfstack.gateway.app:create_app()"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_gunicorn_refuses_to_start_and_names_the_variable(tmp_path):
    result = run_gunicorn({"TFSTACK_DEADLINE_MS": "soon",
                           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "TFSTACK_DEADLINE_MS: expected an integer, got 'soon'" in result.stderr
    assert "Traceback" not in result.stderr


def test_gunicorn_needs_the_metrics_directory_from_its_environment():
    """Set by the image, the chart and `tfstack up`; never invented from Python, where a worker
    could import prometheus_client before seeing it."""
    result = run_gunicorn({})
    assert result.returncode != 0
    assert "PROMETHEUS_MULTIPROC_DIR is not set" in result.stderr
    assert "Traceback" not in result.stderr
