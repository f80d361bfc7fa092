"""prometheus-adapter's rules (k8s/prometheus-adapter/values.yaml) and how the adapter turns a
rule's `metricsQuery` template into PromQL for a Pods metric request.

Mirrors the adapter's `metricsQuery.Build` (pkg/naming/metrics_query.go): `<<.Series>>` is the
series name, `<<.LabelMatchers>>` is `namespace="NS"` then `pod="NAME"` (one pod) or
`pod=~"A|B"` (several), and `<<.GroupBy>>` is the resource label, `pod`. The labels are the ones
the rule's `resources.overrides` map to the namespace and pod resources (dcgm-exporter's series,
scraped through a ServiceMonitor, name the GPU's pod `exported_pod`: `pod` is dcgm-exporter's own).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from tfstack.observability.paths import ADAPTER_VALUES


@dataclass(frozen=True)
class AdapterRule:
    custom_metric: str  # the name the HPA asks for
    series: str  # the Prometheus series the rule discovers
    metrics_query: str  # the template
    namespace_label: str = "namespace"  # the series label overridden to the namespace resource
    pod_label: str = "pod"  # ... and to the pod resource

    def query(self, namespace: str, pods: Sequence[str]) -> str:
        op = "=" if len(pods) == 1 else "=~"
        matchers = f'{self.namespace_label}="{namespace}",{self.pod_label}{op}"{"|".join(pods)}"'
        text = (
            self.metrics_query.replace("<<.Series>>", self.series)
            .replace("<<.LabelMatchers>>", matchers)
            .replace("<<.GroupBy>>", self.pod_label)
        )
        if "<<" in text:
            raise ValueError(f"unsupported template field left in {text!r}")
        return text


def load_rules() -> list[AdapterRule]:
    rules = []
    for rule in yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]:
        # The series name: seriesQuery selects exactly one name, which `name.matches` anchors.
        series = re.fullmatch(r"\^(.+)\$", rule["name"]["matches"]).group(1)
        labels = {
            target["resource"]: label for label, target in rule["resources"]["overrides"].items()
        }
        rules.append(
            AdapterRule(
                rule["name"]["as"], series, rule["metricsQuery"],
                namespace_label=labels["namespace"], pod_label=labels["pod"],
            )  # fmt: skip
        )
    return rules
