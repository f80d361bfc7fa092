"""Where tfstack's observability files and pinned tools live (one place for every caller)."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RULES_FILE = REPO / "charts" / "tfstack" / "files" / "rules" / "tfstack.rules.yaml"
DASHBOARDS_DIR = REPO / "charts" / "tfstack" / "files" / "dashboards"
ADAPTER_VALUES = REPO / "k8s" / "prometheus-adapter" / "values.yaml"
METRICS_CONTRACT = REPO / "docs" / "metrics.md"
TOOLS_BIN = REPO / ".tools" / "bin"
GRAFANA_SCHEMA_DIR = REPO / ".tools" / "grafana-schema"


class ToolMissing(RuntimeError):
    pass


def tool(name: str) -> Path:
    """A pinned binary from .tools/bin (ci/tools/install-*.sh), else one on PATH."""
    pinned = TOOLS_BIN / name
    if pinned.exists():
        return pinned
    found = shutil.which(name)
    if found:
        return Path(found)
    raise ToolMissing(f"{name} not found in {TOOLS_BIN} or on PATH; run `bash ci/setup.sh`")


def rules() -> list[dict]:
    """Every rule (recording and alerting) in tfstack's rules file, in order."""
    import yaml  # only the callers that read rules need it

    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]
