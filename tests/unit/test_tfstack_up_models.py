"""`tfstack up --models DIR` / `--model-config FILE`: what gets served, and the errors a user sees
before anything starts (each names the path to fix)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tfstack import cli
from tfstack.cli import repo
from tfstack.model_repo.config import parse_batching_parameters

REPO = Path(__file__).resolve().parents[2]
TESTDATA = Path(os.environ.get("TFSTACK_TFSERVING_TESTDATA")
                or REPO.parent / "shared" / "testdata" / "tfserving")
PORTS = [  # nothing listens there
    "--gateway-port=1", "--grpc-port=2", "--rest-port=3", "--gateway-grpc-port=4",
    "--gateway-grpc-ops-port=5",
]


@pytest.fixture(scope="module")
def saved_model_pb(models_root) -> bytes:
    return (models_root / "half_plus_two" / "1" / "saved_model.pb").read_bytes()


def make_models(root: Path, saved_model: bytes, *versions: str) -> Path:
    """`versions`: "NAME/VERSION" folders, each with a real saved_model.pb."""
    for rel in versions:
        (root / rel).mkdir(parents=True)
        (root / rel / "saved_model.pb").write_bytes(saved_model)
    return root


def up_fails(capsys, tmp_path, *argv: str) -> str:
    """Run `tfstack up ARGV` expecting it to stop before starting anything; its stderr."""
    code = cli.main(["up", f"--run-dir={tmp_path / 'run'}", *PORTS, *argv])
    assert code == 2
    assert not (tmp_path / "run" / "modelserver.log").exists()
    return capsys.readouterr().err.strip()


def served(tmp_path, config) -> repo.Served:
    return repo.write_checked(config, tmp_path / "run" / "models.config", "test")


def test_a_folder_serves_every_model_in_it_latest_version_by_default(tmp_path, saved_model_pb):
    root = make_models(tmp_path / "mine", saved_model_pb, "churn/1", "churn/2", "fraud/7")
    (root / ".staging-x").mkdir()  # hidden folders (a half-written export) are not models
    (root / "README").write_text("not a model")
    result = served(tmp_path, repo.folder_config(root))
    assert result.models == {"churn": [2], "fraud": [7]}
    text = result.config_path.read_text()
    assert f'base_path: "{root.resolve() / "churn"}"' in text


def test_version_folders_are_numbers_as_tf_serving_reads_them(tmp_path, saved_model_pb):
    # TF Serving's own test models live in 00000123/: version 123. And 10 comes after 9.
    root = make_models(tmp_path / "mine", saved_model_pb, "churn/00000123", "fraud/9", "fraud/10")
    result = served(tmp_path, repo.folder_config(root))
    assert result.models == {"churn": [123], "fraud": [10]}
    assert repo.version_dirs(root / "churn") == {123: root / "churn" / "00000123"}


def test_tf_servings_own_test_models_serve_from_their_folder(tmp_path):
    if not (TESTDATA / "saved_model_half_plus_two_cpu").is_dir():
        pytest.fail(f"TF Serving's test models are missing from {TESTDATA} (CI keeps ../shared "
                    "beside the clone; elsewhere set TFSTACK_TFSERVING_TESTDATA)", pytrace=False)
    result = served(tmp_path, repo.folder_config(TESTDATA))
    assert result.models == {
        "saved_model_half_plus_two_cpu": [123], "saved_model_half_plus_two_tf2_cpu": [123]
    }


def test_labels_and_all_versions(tmp_path, saved_model_pb):
    root = make_models(tmp_path / "mine", saved_model_pb, "churn/1", "churn/2", "churn/3")
    labels = [repo.parse_label("churn:stable=1"), repo.parse_label("churn:canary=2")]
    result = served(tmp_path, repo.folder_config(root, labels))
    # Labelled versions are served (a label needs its version loaded), and so is the latest.
    assert result.models == {"churn": [1, 2, 3]}
    assert result.labels == {"churn": {"stable": 1, "canary": 2}}
    everything = served(tmp_path, repo.folder_config(root, all_versions=True))
    assert everything.models == {"churn": [1, 2, 3]} and not everything.labels


@pytest.mark.parametrize(
    ("layout", "argv", "expected"),
    [
        ((), ["--models={root}/missing"], "{root}/missing: no such folder"),
        ((), ["--models={root}"], "{root} holds no models: TF Serving wants {root}/NAME/VERSION"),
        (
            ("churn/1", "fraud/latest/"),
            ["--models={root}"],
            "{root}/fraud: no numeric version folder (TF Serving wants {root}/fraud/1/saved_model",
        ),
        (
            ("churn/1",),
            ["--models={root}/churn"],
            "{root}/churn holds version folders (1) of one model, not models: use --models {root}",
        ),
        (
            ("churn/1",),
            ["--models={root}/churn/1"],
            "{root}/churn/1 is version 1 of model 'churn', not a folder of models",
        ),
        (
            ("churn/1",),
            ["--models={root}", "--label=churn:canary=2"],
            "--label churn:canary=2: no version 2 in {root}/churn (found: 1)",
        ),
        (
            ("churn/1",),
            ["--models={root}", "--label=fraud:canary=1"],
            "--label fraud:canary: no model 'fraud' in {root}",
        ),
    ],
    ids=["missing", "empty", "no-versions", "one-model", "one-version", "label-version", "label"],
)
def test_a_wrong_folder_is_named_before_anything_starts(
    tmp_path, capsys, saved_model_pb, layout, argv, expected
):
    root = (tmp_path / "mine").resolve()
    root.mkdir()
    make_models(root, saved_model_pb, *[v for v in layout if not v.endswith("/")])
    for folder in (v for v in layout if v.endswith("/")):
        (root / folder).mkdir(parents=True)
    err = up_fails(capsys, tmp_path, *[a.format(root=root) for a in argv])
    assert expected.format(root=root) in err


def test_a_version_without_saved_model_is_named(tmp_path, capsys, saved_model_pb):
    root = make_models((tmp_path / "mine").resolve(), saved_model_pb, "churn/1")
    (root / "churn" / "2").mkdir()
    err = up_fails(capsys, tmp_path, f"--models={root}")
    assert err == f"tfstack up: {root}/churn/2: no saved_model.pb"


def test_a_config_file_is_checked_with_its_own_lines_and_path_map(tmp_path, capsys, saved_model_pb):
    make_models(tmp_path / "local", saved_model_pb, "churn/1")
    config = tmp_path / "models.config"
    config.write_text(
        "model_config_list {\n"
        '  config { name: "churn" base_path: "/models/churn" model_platform: "tensorflow" }\n'
        "}\n"
    )
    err = up_fails(capsys, tmp_path, f"--model-config={config}")
    assert err.startswith(f"tfstack up: {config}:2: Could not find base path /models/churn")
    assert "--path-map" in err

    path_map = [("/models", str(tmp_path / "local"))]
    repo.check_config_file(config, path_map)
    result = served(tmp_path, repo.mapped_config(config, path_map))
    assert result.models == {"churn": [1]}
    assert str((tmp_path / "local" / "churn").resolve()) in result.config_path.read_text()


def test_batching_options_from_the_command_line_override_the_file(tmp_path):
    dest = repo.batching_parameters(
        REPO / "model_repo" / "batching_parameters.txt", tmp_path / "b.txt", 16, 500
    )
    params = parse_batching_parameters(dest)
    assert params.max_batch_size.value == 16
    assert params.batch_timeout_micros.value == 500
    assert list(params.allowed_batch_sizes) == [8, 16]  # still ends at max_batch_size
    assert params.num_batch_threads.value == 2  # the rest comes from the file


def test_a_bad_batching_file_is_named(tmp_path, capsys, saved_model_pb):
    root = make_models((tmp_path / "mine").resolve(), saved_model_pb, "churn/1")
    bad = tmp_path / "batching.txt"
    bad.write_text("max_batch_size { value: 8 }\nallowed_batch_sizes: 4\n")
    err = up_fails(capsys, tmp_path, f"--models={root}", f"--batching-parameters={bad}")
    assert "Last entry in allowed_batch_sizes must match max_batch_size" in err
    assert err.startswith(f"tfstack up: {bad}:2: ")


def test_flags_that_belong_to_another_source_are_refused(tmp_path, capsys):
    err = up_fails(capsys, tmp_path, "--label=a:b=1")
    assert (
        err == "tfstack up: --label goes with --models (a config file has its own version_labels)"
    )
