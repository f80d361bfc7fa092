"""The models are the user's: the chart ships none, fails at render time without any (saying what
to set), serves exactly the models a user names, and the example models come as a values file
that every install in this repository (CI scenarios, the kind run, the docs) passes explicitly."""

from __future__ import annotations

import pytest
import yaml

from tests.chart.conftest import (
    CHART,
    EXAMPLE_MODELS,
    HELMS,
    REPO,
    chart_values,
    render,
    render_error,
    run_helm,
)
from tests.chart.test_tfserving import model_config

E2E_VALUES = REPO / "tests" / "e2e" / "values"


def served(rendered) -> dict:
    return {c.name: c for c in model_config(rendered).model_config_list.config}


@pytest.mark.parametrize("helm", HELMS)
def test_installing_without_models_fails_saying_what_to_set(helm):
    stderr = render_error(helm=helm, examples=False)
    assert "models: no model is configured, and the chart ships none" in stderr
    assert "--set models.my_model.basePath=" in stderr
    assert "-f charts/tfstack/examples/example-models.yaml" in stderr
    # `helm lint` runs templates in lint mode, where `fail` is reported as [INFO]: the bare chart
    # still lints clean (chart repositories and linters that pass no values keep working).
    lint = run_helm(helm, "lint", "--strict", str(CHART), check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_chart_default_has_no_models_and_no_test_model():
    values = chart_values()
    assert values["models"] == {}
    assert values["tests"]["model"] == ""


def test_a_users_model_is_served_alone_and_needs_no_helm_test():
    rendered = render("--set", "models.resnet.basePath=/models/resnet", examples=False)
    assert list(served(rendered)) == ["resnet"]
    assert served(rendered)["resnet"].base_path == "/models/resnet"
    pods = [o["metadata"]["name"] for o in rendered.of_kind("Pod")]
    assert not [name for name in pods if name.endswith("-test-prediction")]
    # The readiness gate asks for the user's model only (no example model it would wait for).
    probe = rendered.container("tfserving")["readinessProbe"]["exec"]["command"]
    assert probe[-1] == "resnet", probe


def test_a_users_helm_test_predicts_with_their_model():
    rendered = render(
        "--set",
        "models.resnet.basePath=/models/resnet",
        "--set-json",
        'tests={"model": "resnet", "request": "{\\"instances\\": [[0.5]]}", '
        '"expectedPredictions": "[[1.0]]"}',
        examples=False,
    )
    pod = rendered.get("Pod", "-test-prediction")
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["URL"].endswith("/v1/models/resnet:predict")
    assert env["EXPECTED"] == "[[1.0]]"


def test_the_example_values_file_serves_the_example_models():
    example = yaml.safe_load(EXAMPLE_MODELS.read_text())
    rendered = render()  # the fixtures' default layering: the example file first
    assert set(served(rendered)) == set(example["models"])
    assert set(example["models"]) == {"half_plus_two", "digits", "digits_png"}
    assert rendered.get("Pod", "-test-prediction")


E2E_FILES = {
    "user": ("user.yaml",),
    "probes": ("user.yaml", "probes.yaml"),
    "requests-per-second": ("user.yaml", "requests-per-second.yaml"),
}


@pytest.mark.parametrize("name", sorted(E2E_FILES))
def test_cluster_suite_values_render_with_their_own_models_only(name):
    """tests/e2e installs with these files (plus image overrides): they name their own models and
    must not lean on example models from the chart."""
    args = [a for f in E2E_FILES[name] for a in ("-f", str(E2E_VALUES / f))]
    rendered = render(*args, examples=False)
    user = yaml.safe_load((E2E_VALUES / "user.yaml").read_text())["models"]
    assert set(user) <= set(served(rendered))
    assert "digits_png" not in served(rendered)
    if name != "probes":
        assert rendered.get("Pod", "-test-prediction")


@pytest.mark.parametrize(
    "path",
    ["ci/kind/04-install.sh", "ci/cluster/images-smoke.sh", "docs/chart.md"],
)
def test_every_install_in_the_repository_passes_the_example_models(path):
    text = (REPO / path).read_text()
    assert "charts/tfstack/examples/example-models.yaml" in text, path


def test_a_model_with_every_setting_defaulted_is_served():
    """`models: {my_model: {}}` serves my_model from <mountPath>/my_model, newest version; only
    `null` drops a model (the chart once relied on its own example entries to fill such a map)."""
    rendered = render("--set-json", 'models={"my_model": {}, "dropped": null}', examples=False)
    (config,) = served(rendered).values()
    assert config.name == "my_model"
    assert config.base_path == "/models/my_model"
    assert config.model_version_policy.latest.num_versions == 1


def test_the_values_tfstack_image_prints_serve_the_images_models(tmp_path):
    """`tfstack image` prints these for a folder holding churn (1, 2) and fraud (7): installed as a
    values file, they copy the models out of that image and serve each model's newest version."""
    from tfstack.cli.image import chart_values

    values = tmp_path / "my-values.yaml"
    values.write_text(
        chart_values(
            "registry.example.com:5000/team/churn-models", "1.0", {"churn": [1, 2], "fraud": [7]}
        )
    )
    rendered = render("-f", str(values), examples=False)
    config = served(rendered)
    assert list(config) == ["churn", "fraud"]
    assert config["churn"].base_path == "/models/churn"
    assert config["churn"].model_version_policy.latest.num_versions == 1
    pod = rendered.deployment("tfserving")["spec"]["template"]["spec"]
    (copy,) = [c for c in pod["initContainers"] if c["name"] == "copy-models"]
    assert copy["image"] == "registry.example.com:5000/team/churn-models:1.0"
