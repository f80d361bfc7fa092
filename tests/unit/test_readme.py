"""README's configuration reference covers every variable the gateway reads, with its default."""

import re
from dataclasses import fields
from pathlib import Path

from tfstack.gateway.settings import VARIABLES, Settings, env_name

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _readme_rows() -> dict[str, str]:
    """Variable -> its default cell; a row may name several variables (then the cell is shared)."""
    rows = {}
    for line in README.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`TFSTACK_"):
            names = re.findall(r"`(TFSTACK_\w+)`", cells[0])
            for name in names:
                rows[name] = cells[1] if len(names) == 1 else ""
    return rows


def test_every_gateway_setting_is_documented_in_readme():
    documented = _readme_rows()
    missing = [env_name(f.name) for f in fields(Settings) if env_name(f.name) not in documented]
    assert not missing, f"README's configuration table lacks {missing}"


def test_readme_documents_no_variable_the_gateway_does_not_read():
    known = {env_name(f.name) for f in fields(Settings)}
    assert set(_readme_rows()) <= known


def test_readme_defaults_match_the_code():
    rows = _readme_rows()
    for field in fields(Settings):
        raw_default = VARIABLES[field.name][1]
        cell = rows[env_name(field.name)]
        if raw_default and "`" in cell:  # else a derived default, described in words
            assert f"`{raw_default}`" in cell, (env_name(field.name), raw_default, cell)
