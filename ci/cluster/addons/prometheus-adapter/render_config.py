"""Render prometheus-adapter's config from the project's adapter rules, as a ConfigMap.

k8s/prometheus-adapter/values.yaml holds tfstack's adapter rules in the prometheus-community
chart's values format; users install that chart with it. The from-source cluster runs the adapter
without Helm, so this script does what the chart's configmap template does (rules.custom ->
rules, rules.external -> externalRules, rules.resource -> resourceRules) and prints the ConfigMap
the Deployment in prometheus-adapter.yaml mounts. The rules stay in one file.

It also checks that the Deployment's --prometheus-url is the values file's prometheus.url and
port, so the two cannot drift apart silently.

    python render_config.py [--values FILE] [--config-only] | kubectl apply -f -
"""

import argparse
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
DEFAULT_VALUES = REPO / "k8s" / "prometheus-adapter" / "values.yaml"
DEPLOYMENT = HERE / "prometheus-adapter.yaml"
CONFIGMAP = {"name": "prometheus-adapter-config", "namespace": "monitoring"}

# The chart's values key under `rules` -> the adapter config's key.
RULE_KEYS = {"custom": "rules", "external": "externalRules", "resource": "resourceRules"}


class ValuesError(Exception):
    """The values file asks for something this renderer does not reproduce."""


def adapter_config(values):
    rules = values.get("rules") or {}
    if rules.get("default"):
        raise ValuesError(
            "rules.default is true: the chart's built-in rules are not rendered here; "
            "set it to false or list the rules under rules.custom"
        )
    if rules.get("existing"):
        raise ValuesError("rules.existing names a ConfigMap; this renderer needs the rules inline")
    unknown = set(rules) - set(RULE_KEYS) - {"default", "existing"}
    if unknown:
        raise ValuesError(f"unknown keys under rules: {sorted(unknown)}")
    config = {RULE_KEYS[key]: rules[key] for key in RULE_KEYS if rules.get(key)}
    if not config:
        raise ValuesError("no rules under rules.custom, rules.external or rules.resource")
    return config


def prometheus_url(values):
    prometheus = values.get("prometheus") or {}
    url, port = prometheus.get("url"), prometheus.get("port")
    if not url:
        raise ValuesError("prometheus.url is not set")
    path = prometheus.get("path", "")
    return f"{url.rstrip('/')}:{port}{path}/" if port else f"{url.rstrip('/')}{path}/"


def deployment_prometheus_url(manifest_text):
    for doc in yaml.safe_load_all(manifest_text):
        if doc and doc.get("kind") == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                for arg in container.get("args", []):
                    if arg.startswith("--prometheus-url="):
                        return arg.split("=", 1)[1]
    raise ValuesError(f"no --prometheus-url argument in {DEPLOYMENT.name}")


def configmap(config, source):
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": dict(CONFIGMAP, annotations={"tfstack.local/generated-from": source}),
        "data": {"config.yaml": dump(config)},
    }


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the embedded config.yaml) as readable literal blocks."""


def _str(dumper, text):
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def dump(document):
    return yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=Path, default=DEFAULT_VALUES)
    parser.add_argument(
        "--config-only",
        action="store_true",
        help="print the adapter's config.yaml instead of the ConfigMap",
    )
    args = parser.parse_args(argv)

    values = yaml.safe_load(args.values.read_text())
    try:
        config = adapter_config(values)
        want, have = prometheus_url(values), deployment_prometheus_url(DEPLOYMENT.read_text())
        if want != have:
            raise ValuesError(
                f"{DEPLOYMENT.name} passes --prometheus-url={have}, "
                f"but {args.values} says {want}; make them agree"
            )
    except ValuesError as err:
        sys.exit(f"render_config: {args.values}: {err}")

    try:
        source = str(args.values.resolve().relative_to(REPO))
    except ValueError:
        source = str(args.values)
    sys.stdout.write(dump(config) if args.config_only else dump(configmap(config, source)))


if __name__ == "__main__":
    main()
