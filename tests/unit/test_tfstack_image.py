"""`tfstack image DIR --tag REF`: the user's folder of models becomes a models image of the same
shape as the example one (built by model_repo/Dockerfile, so readable by the chart's non-root init
container), after the same checks as `tfstack up --models`, and the chart values are printed.

No container engine runs here: the builder is a stand-in on PATH that records what it was asked
to build, and the Dockerfile's COPY/RUN steps are played on the context as
tests/unit/test_models_image.py plays them on the example context.
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from tests.unit.test_models_image import build, instructions, unreadable
from tfstack import cli

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "model_repo" / "Dockerfile"
REF = "registry.example.com:5000/team/churn-models:1.0"


@pytest.fixture
def users_models(tmp_path, models_root) -> Path:
    """churn versions 1 and 2, fraud version 7 (real SavedModels), and what is not a model."""
    root = tmp_path / "my_models"
    for rel in ("churn/1", "churn/2", "fraud/7"):
        shutil.copytree(models_root / "half_plus_two" / "1", root / rel)
    (root / "churn" / ".export-tmp").mkdir()  # a half-written export
    (root / "README.md").write_text("my models\n")
    return root


@pytest.fixture
def fake_builder(tmp_path, monkeypatch) -> Path:
    """A `docker` on PATH that records its arguments and the context's files, then exits with
    $FAKE_EXIT (0 by default)."""
    bin_dir, record = tmp_path / "bin", tmp_path / "builder.log"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > {record}\n'
        "ctx=$(eval echo \\${$#})\n"
        f'(cd "$ctx" && find . -type f | sort) > {record}.files\n'
        'exit "${FAKE_EXIT:-0}"\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return record


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def image(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(["image", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_context_holds_the_models_and_the_example_images_dockerfile(
    capsys, tmp_path, users_models
):
    ctx = tmp_path / "ctx"
    code, out, _ = image(capsys, users_models, "--tag", REF, "--context", ctx, "--no-build")
    assert code == 0
    model_files = files(users_models / "fraud" / "7")
    assert files(ctx) == sorted(
        ["Dockerfile", "models.config", "batching_parameters.txt", "monitoring.config"]
        + [f"models/{v}/{f}" for v in ("churn/1", "churn/2", "fraud/7") for f in model_files]
    )
    assert (ctx / "Dockerfile").read_bytes() == DOCKERFILE.read_bytes()
    assert f"build context written to {ctx}" in out
    assert f"docker build -f {ctx}/Dockerfile -t {REF}" in out
    # The image's own models.config lists them where the chart mounts them, and validates there.
    config = (ctx / "models.config").read_text()
    assert 'base_path: "/models/churn"' in config and 'base_path: "/models/fraud"' in config
    assert (
        cli.main(["validate", str(ctx / "models.config"), f"--path-map=/models={ctx}/models"]) == 0
    )


def test_version_folders_keep_their_names_leading_zeros_and_all(capsys, tmp_path, models_root):
    # TF Serving's own test models keep version 123 in 00000123/.
    root = tmp_path / "tfserving_layout"
    shutil.copytree(models_root / "half_plus_two" / "1", root / "half" / "00000123")
    ctx = tmp_path / "ctx"
    code, _, err = image(capsys, root, "--tag", REF, "--context", ctx, "--no-build")
    assert code == 0, err
    assert (ctx / "models" / "half" / "00000123" / "saved_model.pb").is_file()
    assert (
        cli.main(["validate", str(ctx / "models.config"), f"--path-map=/models={ctx}/models"]) == 0
    )


def test_the_image_built_from_it_is_readable_by_the_pod_uid_and_not_root(
    capsys, tmp_path, users_models
):
    ctx, root = tmp_path / "ctx", tmp_path / "image"
    image(capsys, users_models, "--tag", REF, "--context", ctx, "--no-build")
    for path in [ctx, *ctx.rglob("*")]:  # as a checkout under umask 077 would leave it
        path.chmod(0o700 if path.is_dir() else 0o600)
    build((ctx / "Dockerfile").read_text(), ctx, root)
    assert (root / "models" / "churn" / "2" / "saved_model.pb").is_file()
    assert (root / "models" / "models.config").is_file()
    assert unreadable(root / "models") == []
    assert not stat.S_IWOTH & (root / "models" / "fraud").stat().st_mode
    users = [
        args for word, args in instructions((ctx / "Dockerfile").read_text()) if word == "USER"
    ]
    assert users[-1] == "65532:65532"


def test_it_builds_with_the_users_model_names_and_prints_chart_values(
    capsys, users_models, fake_builder
):
    code, out, _ = image(capsys, users_models, "--tag", REF)
    assert code == 0
    argv = fake_builder.read_text().splitlines()
    ctx = Path(argv[-1])
    assert argv[:2] == ["build", "-f"] and argv[2] == f"{ctx}/Dockerfile"
    assert argv[3:5] == ["-t", REF]
    assert "TITLE=tfstack models" in argv
    assert "DESCRIPTION=TF Serving SavedModels: churn (v1, v2), fraud" in argv
    sent = Path(f"{fake_builder}.files").read_text().split()
    assert "./models/churn/2/saved_model.pb" in sent and "./models/fraud/7/saved_model.pb" in sent
    assert not ctx.exists(), "the temporary context is removed after a build"
    assert f"built {REF}" in out
    values = out.split("chart values for it", 1)[1]
    assert 'repository: "registry.example.com:5000/team/churn-models"' in values
    assert 'tag: "1.0"' in values
    assert "  churn: {}" in values and "  fraud: {}" in values
    assert "churn: the image holds versions 1, 2" in values


def test_a_failed_build_keeps_the_context_and_passes_the_exit_code(
    capsys, tmp_path, users_models, fake_builder, monkeypatch
):
    monkeypatch.setenv("FAKE_EXIT", "3")
    ctx = tmp_path / "ctx"
    code, out, err = image(capsys, users_models, "--tag", REF, "--context", ctx)
    assert code == 3
    assert f"docker build failed (exit 3); the context is kept in {ctx}" in err
    assert (ctx / "models" / "churn" / "1" / "saved_model.pb").is_file()
    assert "chart values" not in out


def test_without_a_builder_it_says_so_and_prints_the_command(capsys, tmp_path, users_models):
    ctx = tmp_path / "ctx"
    code, _, err = image(
        capsys, users_models, "--tag", REF, "--context", ctx, "--builder", "no-such-builder"
    )
    assert code == 2
    assert "no-such-builder not found on PATH" in err
    assert f"no-such-builder build -f {ctx}/Dockerfile -t {REF}" in err
    assert (ctx / "Dockerfile").is_file()


def broken_saved_model(root: Path) -> str:
    (root / "churn" / "2" / "saved_model.pb").write_bytes(b"not a SavedModel")
    return f"version 2 of model churn ({root / 'churn' / '2'}): saved_model.pb is not a SavedModel"


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda root: shutil.rmtree(root / "fraud" / "7"), "fraud: no numeric version folder"),
        (broken_saved_model, None),
    ],
    ids=["no-version", "broken-saved-model"],
)
def test_a_folder_that_would_not_serve_builds_nothing(
    capsys, tmp_path, users_models, fake_builder, spoil, message
):
    message = spoil(users_models) or message
    ctx = tmp_path / "ctx"
    code, out, err = image(capsys, users_models, "--tag", REF, "--context", ctx)
    assert code == 2
    assert err.startswith("tfstack image: ") and message in err
    assert not fake_builder.exists(), "the builder ran"
    assert not ctx.exists()
    assert "chart values" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tag", "models@sha256:" + "0" * 64], "give a tag, not a digest"),
        (["--tag", REF, "--context", "."], "not empty"),
    ],
)
def test_wrong_arguments_are_named(capsys, users_models, fake_builder, argv, message):
    code, _, err = image(capsys, users_models, *argv)
    assert code == 2 and message in err
    assert not fake_builder.exists()


def test_one_models_version_folders_are_pointed_at_their_parent(capsys, users_models):
    code, _, err = image(capsys, users_models / "churn", "--tag", REF, "--no-build")
    assert code == 2
    assert f"use tfstack image {users_models} to serve it as 'churn'" in err
