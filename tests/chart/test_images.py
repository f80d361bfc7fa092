"""Image references: the chart's defaults name the images each release publishes
(.github/workflows/release.yaml), one value moves every image to a mirror, digests pin them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import CHART, HELMS, REPO, render_error, render_scenario

DIGEST = "sha256:" + "0123456789abcdef" * 4


def images(rendered) -> dict[str, str]:
    """Every container image in the rendered objects, by container name (pods and test pods)."""
    found = {}
    for obj in rendered.objects:
        spec = obj.get("spec", {})
        pod = spec.get("template", {}).get("spec", spec) if obj["kind"] != "Pod" else spec
        for key in ("initContainers", "containers"):
            for container in pod.get(key) or []:
                found[f"{obj['kind']}/{container['name']}"] = container["image"]
    return found


def chart_versions() -> tuple[str, str]:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return chart["version"], chart["appVersion"]


def test_defaults_are_the_published_images_at_the_charts_app_version():
    version, app_version = chart_versions()
    assert version == app_version, (
        "the release workflow publishes images and chart under one version"
    )
    refs = set(images(render_scenario("defaults")).values())
    assert f"ghcr.io/tfstack/gateway:{app_version}" in refs
    assert f"ghcr.io/tfstack/models:{app_version}" in refs
    assert "tensorflow/serving:2.21.0" in refs


def test_release_workflow_pushes_what_the_chart_names():
    workflow = (REPO / ".github" / "workflows" / "release.yaml").read_text()
    for name in ("gateway", "models"):
        assert f"ghcr.io/${{{{ env.OWNER }}}}/{name}:${{{{ env.VERSION }}}}" in workflow
    assert "platforms: linux/amd64,linux/arm64" in workflow
    assert "oci://ghcr.io/$OWNER/charts" in workflow


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize(
    ("registry", "want"),
    [
        ("registry.example.com", "registry.example.com"),
        ("mirror.example.com:5000/team/", "mirror.example.com:5000/team"),
        ("localhost:5000", "localhost:5000"),
    ],
)
def test_global_image_registry_moves_every_image(helm, registry, want):
    refs = images(
        render_scenario("everything", "--set", f"global.imageRegistry={registry}", helm=helm)
    )
    # The chart's own images move; images the user wrote out in extraContainers and
    # extraInitContainers are theirs, used exactly as given.
    users = {ref for ref in refs.values() if ref.startswith("busybox:")}
    assert users, "the everything scenario has extra containers of the user's"
    ours = {where: ref for where, ref in refs.items() if ref not in users}
    assert len(ours) >= 3, ours
    for where, ref in ours.items():
        assert ref.startswith(want + "/"), f"{where}: {ref} is not from {want}"
        assert "ghcr.io" not in ref, f"{where}: {ref} kept the default registry"
    values = set(ours.values())
    _, app_version = chart_versions()
    assert f"{want}/tfstack/gateway:{app_version}" in values
    # Docker Hub names have no registry part: the mirror is prefixed, the path kept.
    assert f"{want}/tensorflow/serving:2.21.0" in values


def test_gpu_profile_mirrors_the_gpu_tag():
    refs = set(
        images(render_scenario("gpu", "--set", "global.imageRegistry=reg.example.com")).values()
    )
    assert "reg.example.com/tensorflow/serving:2.21.0-gpu" in refs


def test_digests_pin_each_image():
    rendered = render_scenario(
        "defaults",
        "--set",
        f"gateway.image.digest={DIGEST}",
        "--set",
        f"modelSource.image.digest={DIGEST}",
        "--set",
        f"tfserving.image.digest={DIGEST}",
    )
    refs = images(rendered)
    assert refs
    for where, ref in refs.items():
        assert re.fullmatch(r"[^@]+:[^@/]+@" + DIGEST, ref), f"{where}: {ref} is not pinned"


@pytest.mark.parametrize(
    "key", ["gateway.image.digest", "tfserving.image.digest", "tests.image.digest"]
)
def test_a_malformed_digest_is_refused_naming_the_value(key):
    error = render_error("-f", str(CHART / "ci" / "defaults-values.yaml"), "--set", f"{key}=latest")
    assert f"at '/{key.replace('.', '/')}'" in error
    assert "does not match pattern" in error


def test_docs_say_how_to_use_a_mirror_and_local_images():
    chart_md = Path(REPO / "docs" / "chart.md").read_text()
    assert "global.imageRegistry" in chart_md
    for tool in ("kind load image-archive", "k3d image import", "minikube image load"):
        assert tool in chart_md, f"docs/chart.md does not show `{tool}`"
