"""Render the overview dashboard's main panels from a Prometheus to PNG (matplotlib), so README and
docs can show what an operator sees without a Grafana.

    python -m tfstack.observability.render_dashboards --prometheus http://127.0.0.1:9090 \\
        --out docs/img/

Runs each time-series panel's queries (variables filled in, `$__rate_interval` from the step)
through `/api/v1/query_range` and draws them the way the panel would: one line per series, legend
from the panel's legend format, the panel's unit on the y axis. Writes `<dashboard>.png` with all
of them.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
from matplotlib.ticker import FuncFormatter  # noqa: E402
from PIL import Image  # noqa: E402

from tfstack.observability.dashboards import DASHBOARDS, substitute  # noqa: E402

# unit -> (axis label, value formatter)
UNITS = {
    "reqps": ("requests/s", lambda v: f"{v:g}"),
    "s": ("seconds", lambda v: f"{v * 1000:g} ms" if 0 < abs(v) < 1 else f"{v:g} s"),
    "percentunit": ("share", lambda v: f"{v * 100:g} %"),
    "short": ("", lambda v: f"{v:g}"),
}


def query_range(prometheus: str, expr: str, start: float, end: float, step: float) -> list[dict]:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    url = f"{prometheus.rstrip('/')}/api/v1/query_range?{params}"
    with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 (operator-given URL)
        body = json.load(resp)
    if body.get("status") != "success":
        raise RuntimeError(f"query failed: {expr}: {body}")
    return body["data"]["result"]


def legend(fmt: str, labels: dict[str, str]) -> str:
    if not fmt or fmt == "__auto":
        text = ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    else:
        text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)
    # matplotlib leaves labels starting with "_" out of legends (the gateway's `_unknown` model).
    return "\u200b" + text if text.startswith("_") else text


def main_panels(dashboard: dict) -> list[dict]:
    """The time-series panels (rows and single-stat tiles left out)."""
    return [p for p in dashboard["panels"] if p["type"] == "timeseries"]


def fetch_panel(prometheus: str, panel: dict, variables: dict, start, end, step) -> list:
    """[(legend, minutes ago, values)] for every series of every query of the panel."""
    rate_interval = f"{max(int(step) * 4, 15)}s"
    lines = []
    for target in panel["targets"]:
        expr = substitute(target["expr"], variables, rate_interval)
        for series in query_range(prometheus, expr, start, end, step):
            points = [((float(t) - end) / 60, float(v)) for t, v in series["values"] if v != "NaN"]
            if points:
                xs, ys = zip(*points, strict=True)
                lines.append((legend(target.get("legendFormat", ""), series["metric"]), xs, ys))
    return lines


def draw_panel(ax, panel: dict, lines: list) -> None:
    label, fmt = UNITS.get(panel["fieldConfig"]["defaults"].get("unit", "short"), UNITS["short"])
    for name, xs, ys in lines:
        ax.plot(xs, ys, linewidth=1.4, label=name)
    ax.set_title(panel["title"], fontsize=10, loc="left")
    ax.set_xlabel("minutes ago", fontsize=8)
    ax.set_ylabel(label, fontsize=8)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(round(v, 6))))
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="upper left")


def render(
    prometheus: str,
    out_dir: Path,
    minutes: float = 5.0,
    variables: dict[str, str] | None = None,
    dashboard: str = "overview",
) -> Path:
    """Write `<dashboard>.png` with every main panel that has data; returns its path."""
    variables = {"namespace": ".*", "model": ".*", **(variables or {})}
    panels = main_panels(DASHBOARDS[dashboard]())
    end = time.time()
    start = end - minutes * 60
    step = max(1.0, minutes * 60 / 240)
    out_dir.mkdir(parents=True, exist_ok=True)
    fetched = [(panel, fetch_panel(prometheus, panel, variables, start, end, step))
               for panel in panels]  # fmt: skip
    drawn = [(panel, lines) for panel, lines in fetched if lines]  # a local stack has no KSM
    cols = 2
    rows = max(1, (len(drawn) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.8 * rows), dpi=72, squeeze=False)
    for ax, (panel, lines) in zip(axes.flat, drawn, strict=False):
        draw_panel(ax, panel, lines)
    for ax in list(axes.flat)[len(drawn) :]:
        ax.axis("off")
    fig.suptitle(f"tfstack / {dashboard} (last {minutes:g} min)", fontsize=12)
    fig.tight_layout()
    path = out_dir / f"{dashboard}.png"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    # A 256-colour palette keeps the picture small enough to commit (~4x smaller, same look).
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(256).save(path, optimize=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", required=True, help="Prometheus base URL")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--minutes", type=float, default=5.0, help="time range to draw")
    parser.add_argument("--namespace", default=".*", help="value of the namespace variable")
    parser.add_argument("--dashboard", default="overview", choices=sorted(DASHBOARDS))
    args = parser.parse_args()
    path = render(args.prometheus, args.out, args.minutes, {"namespace": args.namespace},
                  args.dashboard)  # fmt: skip
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
