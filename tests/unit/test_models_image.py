"""The models image (model_repo/Dockerfile) is readable by the chart's non-root init container
whatever the umask of the checkout it was built from.

No container engine runs in this suite, so the test plays the Dockerfile's file steps itself: the
build context is copied the way a checkout under umask 077 leaves it (files 0600, directories
0700, root-owned), each COPY puts it under a stand-in root as Docker does (modes kept), each RUN
runs with `/models` pointing there. Then the chart's init container command (`cp -R
/models/. /model-store/`) runs as TF Serving's uid 1000 (setpriv, when the suite runs as root, as
it does on CI), and the file modes are checked for what any non-root uid needs.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "model_repo" / "Dockerfile"
CONTEXT = REPO / "model_repo"
POD_UID = 1000  # tfserving.podSecurityContext.runAsUser / runAsGroup / fsGroup


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined."""
    out, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def checkout_under_umask_077(dest: Path) -> None:
    """The build context as a checkout made under umask 077 leaves it."""
    if not (CONTEXT / "models" / "half_plus_two").is_dir():
        pytest.fail("model_repo/models is not built: run `make models`", pytrace=False)
    for name in ("models", "models.config", "batching_parameters.txt", "monitoring.config"):
        src = CONTEXT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, symlinks=False, ignore=shutil.ignore_patterns(".*"))
        else:
            shutil.copy(src, dest / name)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o700 if path.is_dir() else 0o600)


def build(dockerfile: str, context: Path, root: Path) -> None:
    """The Dockerfile's COPY and RUN steps into `root` (the image's `/`)."""
    for word, args in instructions(dockerfile):
        if word == "COPY":
            assert not args.startswith("--"), f"COPY flags need BuildKit: {args}"
            *sources, dest = shlex.split(args)
            target = root / dest.lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            for src in sources:
                path = context / src
                if path.is_dir():  # `COPY dir/ /x/` copies the directory's contents
                    shutil.copytree(path, target, dirs_exist_ok=True)
                else:
                    shutil.copy2(path, target / path.name)
        elif word == "RUN":
            command = args.replace(" /models", f" {root}/models")
            subprocess.run(["sh", "-c", command], check=True, timeout=60)


@pytest.fixture
def sandbox() -> Iterator[Path]:
    # Not under pytest's tmp_path: its parents are 0700, which uid 1000 could not traverse.
    path = Path(tempfile.mkdtemp(prefix="tfstack-models-image-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def copy_as_pod_uid(image_root: Path, store: Path) -> subprocess.CompletedProcess:
    store.mkdir()
    os.chown(store, POD_UID, POD_UID)  # the emptyDir, group-owned by fsGroup
    return subprocess.run(
        ["setpriv", f"--reuid={POD_UID}", f"--regid={POD_UID}", "--clear-groups",
         "cp", "-R", f"{image_root}/models/.", f"{store}/"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def unreadable(root: Path) -> list[str]:
    """Paths a uid that is neither owner nor group could not read (files) or enter (dirs)."""
    bad = []
    for path in root.rglob("*"):
        mode = path.stat().st_mode
        need = (stat.S_IROTH | stat.S_IXOTH) if path.is_dir() else stat.S_IROTH
        if mode & need != need or mode & stat.S_IWOTH:
            bad.append(f"{oct(mode & 0o777)} {path.relative_to(root)}")
    return bad


def test_models_image_is_readable_by_the_pod_uid_whatever_the_umask(sandbox):
    context, root = sandbox / "context", sandbox / "image"
    context.mkdir()
    checkout_under_umask_077(context)
    build(DOCKERFILE.read_text(), context, root)
    assert (root / "models" / "half_plus_two").is_dir()
    assert (root / "models" / "models.config").is_file()
    assert unreadable(root / "models") == []
    if os.geteuid() == 0:
        result = copy_as_pod_uid(root, sandbox / "model-store")
        assert result.returncode == 0, result.stderr
        copied = sandbox / "model-store" / "half_plus_two"
        assert any(copied.rglob("saved_model.pb"))


def test_the_check_catches_an_image_that_keeps_the_checkouts_modes(sandbox):
    """Control: the same steps without the Dockerfile's RUN leave files uid 1000 cannot read."""
    context, root = sandbox / "context", sandbox / "image"
    context.mkdir()
    checkout_under_umask_077(context)
    without_run = "\n".join(
        line for line in DOCKERFILE.read_text().splitlines() if not line.startswith("RUN ")
    )
    build(without_run, context, root)
    assert unreadable(root / "models")
    if os.geteuid() == 0:
        result = copy_as_pod_uid(root, sandbox / "model-store")
        assert result.returncode != 0
        assert "Permission denied" in result.stderr


def test_the_image_runs_as_non_root():
    steps = instructions(DOCKERFILE.read_text())
    users = [args for word, args in steps if word == "USER"]
    assert users and not users[-1].startswith(("0", "root"))


def labels(dockerfile: str, build_args: dict[str, str]) -> dict[str, str]:
    """The image's LABELs after ARG substitution (`--build-arg` values over the defaults)."""
    args, out = {}, {}
    for word, rest in instructions(dockerfile):
        if word == "ARG":
            name, _, default = rest.partition("=")
            args[name] = build_args.get(name, shlex.split(default)[0] if default else "")
        elif word == "LABEL":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                out[key] = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], value)
    return out


def test_a_plain_build_labels_the_example_models_and_build_args_relabel_it():
    """`docker build -f model_repo/Dockerfile model_repo` (ci/kind, images.sh) is the example
    models image; `tfstack image` names the user's models through TITLE and DESCRIPTION."""
    text = DOCKERFILE.read_text()
    plain = labels(text, {})
    assert plain["org.opencontainers.image.title"] == "tfstack example models"
    assert plain["org.opencontainers.image.description"] == (
        "TF Serving SavedModels: half_plus_two, digits (v1, v2), digits_png"
    )
    users = labels(
        text, {"TITLE": "tfstack models", "DESCRIPTION": "TF Serving SavedModels: churn"}
    )
    assert users["org.opencontainers.image.description"] == "TF Serving SavedModels: churn"
