"""ci/cluster/images.sh sends each image build only the files its table lists (and hashes only
those for its cache key): every file a project Dockerfile COPYs must be among them, or the image
fails to build on the cluster run, or worse, is served stale from the cache after that file changes.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGES_SH = REPO / "ci" / "cluster" / "images.sh"


def project_images() -> list[tuple[str, Path, Path, list[str]]]:
    """(name, Dockerfile, context, listed files) for each image built from this repository."""
    rows = re.findall(
        r'^\s*"([a-z-]+)\|[^|]*\|([^|]*)\|([^|]*)\|([^|]*)\|', IMAGES_SH.read_text(), re.M
    )
    out = []
    for name, dockerfile, context, files in rows:
        if "$" in dockerfile or "$" in context:  # addon images: contexts built outside the repo
            continue
        out.append((name, REPO / dockerfile, REPO / context, files.split()))
    assert {"gateway", "models", "tfserving-standin"} <= {row[0] for row in out}, out
    return out


def copy_sources(dockerfile: Path) -> list[str]:
    """Sources of every COPY/ADD from the build context (not `--from=` another stage)."""
    sources = []
    for line in re.sub(r"\\\n", " ", dockerfile.read_text()).splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        args = words[1:]
        if any(a.startswith("--from") for a in args):
            continue
        sources += [a for a in args if not a.startswith("--")][:-1]
    return sources


@pytest.mark.parametrize("image", project_images(), ids=lambda row: row[0])
def test_every_copied_file_is_in_the_listed_context(image):
    name, dockerfile, context, listed = image
    sources = copy_sources(dockerfile)
    assert sources, f"{dockerfile} copies nothing?"
    for source in sources:
        path = source.rstrip("/")
        covered = any(path == entry or path.startswith(entry.rstrip("/") + "/") for entry in listed)
        assert covered, (
            f"{name}: {dockerfile.relative_to(REPO)} copies {source!r}, which "
            f"ci/cluster/images.sh does not send (its list: {' '.join(listed)})"
        )
        assert (context / path).exists(), f"{name}: {source!r} is not in {context}"
