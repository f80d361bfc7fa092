"""model_repo's config files and the validator (`python -m tfstack.model_repo.validate`)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tfstack.model_repo import build, config, validate

REPO = Path(__file__).resolve().parents[2]


# --- the shipped config files ------------------------------------------------------------


def test_models_config_parses_with_official_proto_and_matches_the_build():
    parsed = text_format.Parse(
        config.MODELS_CONFIG.read_text(), model_server_config_pb2.ModelServerConfig()
    )
    entries = {c.name: c for c in parsed.model_config_list.config}
    assert list(entries) == list(build.MODELS)
    for name, entry in entries.items():
        assert entry.base_path == f"/models/{name}"
        assert entry.model_platform == "tensorflow"
    digits = entries["digits"]
    assert list(digits.model_version_policy.specific.versions) == [1, 2]
    assert dict(digits.version_labels) == {"stable": 1, "canary": 2}


def test_batching_parameters_parse_as_tf_serving_batching_parameters():
    params = config.parse_batching_parameters(config.BATCHING_PARAMETERS)
    assert params.DESCRIPTOR.full_name == "tensorflow.serving.BatchingParameters"
    assert params.max_batch_size.value == 32
    assert list(params.allowed_batch_sizes)[-1] == params.max_batch_size.value
    assert params.num_batch_threads.value >= 1


def test_monitoring_config_enables_prometheus_on_tf_serving_path():
    monitoring = config.parse_monitoring_config(config.MONITORING_CONFIG)
    assert monitoring.prometheus_config.enable is True
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"


def test_private_messages_are_wire_compatible_with_field_numbers():
    # Field numbers from TF Serving's .proto files: text parses, and the bytes keep the numbers.
    params = config.parse_batching_parameters(config.BATCHING_PARAMETERS)
    wire = params.SerializeToString()
    assert wire.startswith(b"\x0a\x02\x08\x20")  # field 1 (max_batch_size) = Int64Value{value: 32}


def test_render_local_config_maps_container_root_to_absolute_local_root(tmp_path):
    rendered = config.render_local_config(tmp_path / "models")
    parsed = text_format.Parse(rendered, model_server_config_pb2.ModelServerConfig())
    paths = [c.base_path for c in parsed.model_config_list.config]
    assert paths == [str((tmp_path / "models" / name).resolve()) for name in build.MODELS]


def test_models_config_fixture_points_at_built_models(models_config, models_root):
    parsed = config.parse_model_server_config(models_config)
    for entry in parsed.model_config_list.config:
        assert Path(entry.base_path).is_absolute()
        assert (Path(entry.base_path) / "1" / "saved_model.pb").is_file()
        assert Path(entry.base_path).parent == models_root.resolve()


def test_parse_error_carries_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.config"
    bad.write_text('model_config_list {\n  config {\n    nmae: "x"\n  }\n}\n')
    with pytest.raises(config.ConfigError) as err:
        config.parse_model_server_config(bad)
    assert (err.value.line, err.value.column) == (3, 5)
    assert str(err.value).startswith(f"{bad}:3:5: ")
    assert 'no field named "nmae"' in str(err.value)


def test_entry_lines_follow_the_source(tmp_path):
    lines = config.config_entry_lines(config.MODELS_CONFIG.read_text())
    source = config.MODELS_CONFIG.read_text().splitlines()
    assert [source[e.of("name") - 1].strip() for e in lines] == [
        f'name: "{name}"' for name in build.MODELS
    ]
    digits = lines[1]
    assert source[digits.labels["canary"] - 1].strip() == 'key: "canary"'
    assert source[digits.versions[2] - 1].strip() == "versions: 2"


# --- the validator ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_model_pb(models_root) -> bytes:
    return (models_root / "half_plus_two" / "1" / "saved_model.pb").read_bytes()


def run_validator(capsys, *argv: str) -> tuple[int, list[str]]:
    code = validate.main([str(a) for a in argv])
    out = capsys.readouterr().out
    return code, out.splitlines()


def make_repo(root: Path, layout: dict[str, bytes | None], saved_model: bytes) -> None:
    """`layout`: relative path -> file bytes (None: a directory; b"SM": a real saved_model.pb)."""
    for rel, content in layout.items():
        path = root / rel
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(saved_model if content == b"SM" else content)


def entry(name: str, body: str = "") -> str:
    return (
        f'  config {{\n    name: "{name}"\n    base_path: "/models/{name}"\n'
        f'    model_platform: "tensorflow"\n{body}  }}\n'
    )


GOOD = {"a/1/saved_model.pb": b"SM", "b/1/saved_model.pb": b"SM", "b/2/saved_model.pb": b"SM"}

# (case id, config text, repo layout, expected line, expected message fragment)
BROKEN = [
    (
        "duplicate-name",
        "model_config_list {\n" + entry("a") + entry("a"),
        GOOD,
        8,
        "Illegal to list model a multiple times in config list (first at line 3)",
    ),
    (
        "relative-path",
        'model_config_list {\n  config {\n    name: "a"\n    base_path: "models/a"\n'
        '    model_platform: "tensorflow"\n  }\n',
        GOOD,
        4,
        "Expected model a to have an absolute path or URI; got base_path()=models/a",
    ),
    (
        "missing-base-path",
        "model_config_list {\n" + entry("nope"),
        GOOD,
        4,
        "Could not find base path",
    ),
    (
        "non-numeric-dirs-only",
        "model_config_list {\n" + entry("a"),
        {"a/v1/saved_model.pb": b"SM", "a/latest": None},
        4,
        "No versions of servable a found under base path",
    ),
    (
        "missing-saved-model-pb",
        "model_config_list {\n" + entry("a"),
        {"a/1/variables": None},
        4,
        "holds no saved_model.pb",
    ),
    (
        "corrupt-saved-model-pb",
        "model_config_list {\n" + entry("a"),
        {"a/1/saved_model.pb": b"\xff\xff\xff\xff"},
        4,
        "saved_model.pb is not a SavedModel",
    ),
    (
        "specific-version-missing",
        "model_config_list {\n"
        + entry(
            "b",
            "    model_version_policy {\n      specific {\n        versions: 1\n"
            "        versions: 3\n      }\n    }\n",
        ),
        GOOD,
        9,
        "Version 3 of servable b, which was requested to be served as a 'specific' version",
    ),
    (
        "label-to-unserved-version",
        "model_config_list {\n"
        + entry("b", '    version_labels {\n      key: "canary"\n      value: 7\n    }\n'),
        GOOD,
        7,
        "version label canary points at version 7 of model b, which its version policy does not "
        "serve (served: 2)",
    ),
    (
        "unsupported-platform",
        'model_config_list {\n  config {\n    name: "a"\n    base_path: "/models/a"\n'
        '    model_platform: "pytorch"\n  }\n',
        GOOD,
        5,
        "Model a requests unsupported platform pytorch",
    ),
    (
        "no-platform",
        'model_config_list {\n  config {\n    name: "a"\n    base_path: "/models/a"\n  }\n',
        GOOD,
        2,
        "Illegal setting neither ModelServerConfig::model_type (deprecated) nor",
    ),
    ("empty-config", "# nothing\n", GOOD, 1, "no model_config_list"),
]


@pytest.mark.parametrize(
    ("config_text", "layout", "line", "fragment"),
    [case[1:] for case in BROKEN],
    ids=[case[0] for case in BROKEN],
)
def test_validator_reports_problem_with_file_and_line(
    tmp_path, capsys, saved_model_pb, config_text, layout, line, fragment
):
    text = config_text if config_text.startswith("#") else config_text + "}\n"
    make_repo(tmp_path / "repo", layout, saved_model_pb)
    cfg = tmp_path / "models.config"
    cfg.write_text(text)
    code, lines = run_validator(capsys, cfg, "--path-map", f"/models={tmp_path / 'repo'}")
    assert code == 1
    assert any(out.startswith(f"{cfg}:{line}: ") and fragment in out for out in lines), (
        f"wanted {cfg}:{line}: ...{fragment}... in {lines}"
    )


def test_validator_reports_parse_error_with_line_and_column(tmp_path, capsys):
    cfg = tmp_path / "models.config"
    cfg.write_text('model_config_list {\n  config {\n    name: "a"\n    base_path: /x\n  }\n}\n')
    code, lines = run_validator(capsys, cfg)
    assert code == 1
    assert lines[0].startswith(f"{cfg}:4:16: ")


def test_validator_reports_every_problem_not_just_the_first(tmp_path, capsys, saved_model_pb):
    make_repo(tmp_path / "repo", GOOD, saved_model_pb)
    cfg = tmp_path / "models.config"
    cfg.write_text("model_config_list {\n" + entry("a") + entry("a") + entry("nope") + "}\n")
    code, lines = run_validator(capsys, cfg, "--path-map", f"/models={tmp_path / 'repo'}")
    assert code == 1
    assert [out.split(": ")[0] for out in lines] == [f"{cfg}:8", f"{cfg}:14"]


def test_validator_accepts_latest_policy_that_skips_a_broken_old_version(
    tmp_path, capsys, saved_model_pb
):
    # TF Serving only loads the versions the policy serves: a broken version 1 under the default
    # latest(1) policy is no problem, just as a non-numeric folder next to the versions is not.
    layout = {"a/1/variables": None, "a/2/saved_model.pb": b"SM", "a/tmp-export": None}
    make_repo(tmp_path / "repo", layout, saved_model_pb)
    cfg = tmp_path / "models.config"
    cfg.write_text("model_config_list {\n" + entry("a") + "}\n")
    code, lines = run_validator(capsys, cfg, "--path-map", f"/models={tmp_path / 'repo'}")
    assert code == 0, lines
    assert "  a: latest policy serves version(s) 2" in lines


@pytest.mark.parametrize(
    ("kind", "text", "line", "fragment"),
    [
        (
            "--batching",
            "max_batch_size { value: 32 }\nallowed_batch_sizes: 8\nallowed_batch_sizes: 16\n",
            2,
            "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 16; "
            "expected 32",
        ),
        (
            "--batching",
            "max_batch_size { value: 8 }\nallowed_batch_sizes: 8\nallowed_batch_sizes: 4\n"
            "allowed_batch_sizes: 8\n",
            2,
            "must be monotonically increasing",
        ),
        ("--batching", "max_batch_size: 32\n", 1, "1:"),
        ("--monitoring", 'prometheus_config {\n  enable: true\n  path: "metrics"\n}\n', 3, "'/'"),
    ],
    ids=["batching-last-size", "batching-order", "batching-parse", "monitoring-path"],
)
def test_validator_checks_batching_and_monitoring_files(
    tmp_path, capsys, models_config, kind, text, line, fragment
):
    extra = tmp_path / "extra.txt"
    extra.write_text(text)
    code, lines = run_validator(capsys, models_config, kind, extra)
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith(f"{extra}:{line}") and fragment in lines[0]


def test_validator_passes_the_shipped_repository(models_root):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfstack.model_repo.validate",
            "model_repo/models.config",
            "--path-map",
            f"/models={models_root}",
            "--batching",
            "model_repo/batching_parameters.txt",
            "--monitoring",
            "model_repo/monitoring.config",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.splitlines()
    assert summary[0] == "model_repo/models.config: OK, 3 model(s)"
    assert "  digits: specific policy serves version(s) 1, 2; labels canary=2, stable=1" in summary
    assert "    v1 signatures: classify_x_to_y, regress_x_to_y, serving_default" in summary
    assert summary[-2:] == [
        "model_repo/batching_parameters.txt: OK",
        "model_repo/monitoring.config: OK",
    ]


def test_console_script_is_declared():
    scripts = importlib.metadata.entry_points(group="console_scripts")
    assert scripts["tfstack-validate-models"].value == "tfstack.model_repo.validate:main"


def test_tfstack_validate_is_the_validator_under_the_one_command(models_root, capsys, monkeypatch):
    from tfstack import cli

    monkeypatch.chdir(REPO)
    argv = ["model_repo/models.config", "--path-map", f"/models={models_root}"]
    old_code, old_lines = run_validator(capsys, *argv)
    code = cli.main(["validate", *argv])
    assert (code, capsys.readouterr().out.splitlines()) == (old_code, old_lines)
    assert code == 0 and old_lines[0] == "model_repo/models.config: OK, 3 model(s)"

    code = cli.main(["validate", str(REPO / "model_repo" / "models.config")])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1 and len(lines) == 3 and all("--path-map" in line for line in lines)


def test_validator_without_path_map_points_at_the_flag(capsys):
    code, lines = run_validator(capsys, REPO / "model_repo" / "models.config")
    assert code == 1
    assert all("--path-map" in out for out in lines) and len(lines) == 3
