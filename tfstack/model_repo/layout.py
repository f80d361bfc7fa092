"""How TF Serving reads a model's base path: its children named by a number are its versions.

FileSystemStoragePathSource (ParseVersionNumber) reads a child's name with
`strings::safe_strto64`: spaces around it skipped, an optional `-`, ASCII digits, in int64 range.
So `00000123` (TF Serving's own test model) is version 123, and `v1`, `1.0`, `+1` or `1_0` are no
version at all. The model server, `tfstack up`/`image`/`export` and the config validator all read
version folders through this module, so they agree with TF Serving and with each other.
"""

from __future__ import annotations

import re
from pathlib import Path

_NUMBER = re.compile(r"[ \t\n\v\f\r]*(-?[0-9]+)[ \t\n\v\f\r]*")
_INT64 = 2**63


def version_number(name: str) -> int | None:
    """The version a child named `name` is, or None when it is not one."""
    match = _NUMBER.fullmatch(name)
    if match is None:
        return None
    value = int(match.group(1))
    return value if -_INT64 <= value < _INT64 else None


def version_folders(base: Path) -> dict[int, Path]:
    """Version number -> folder under `base`, ordered by version. Two folders with one number
    (`1` and `01`): the later name in sorted order wins."""
    found: dict[int, Path] = {}
    for child in sorted(base.iterdir()):
        version = version_number(child.name)
        if version is not None and child.is_dir():
            found[version] = child
    return dict(sorted(found.items()))
