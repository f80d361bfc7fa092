"""Which versions of a model to serve: TF Serving's FileSystemStoragePathSource.

A base path's children whose names are integers are its versions (`00012` is 12;
tfstack/model_repo/layout.py); the model's
ServableVersionPolicy picks the aspired ones. Messages are TF Serving's log lines.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tfstack.model_repo.layout import version_folders

log = logging.getLogger("tfstack.modelserver.versions")


def list_versions(config) -> dict[int, Path] | None:
    """version -> directory under the base path; None when the base path cannot be read (the
    previous aspired set then stays, as in TF Serving)."""
    base = Path(config.base_path)
    if not base.is_dir():
        log.error(
            "FileSystemStoragePathSource encountered a filesystem access error: Could not find "
            "base path %s for servable %s with error NOT_FOUND: %s not found",
            base,
            config.name,
            base,
        )
        return None
    found = version_folders(base)
    if not found:
        log.warning(
            "No versions of servable %s found under base path %s. Did you forget to name your "
            "leaf directory as a number (eg. '/1/')?",
            config.name,
            base,
        )
    return found


def aspired_versions(config, found: dict[int, Path]) -> set[int]:
    """The model version policy applied to the versions on disk (latest N by default)."""
    policy = config.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(found)
    if choice == "specific":
        wanted = set(policy.specific.versions)
        for missing in sorted(wanted - set(found)):
            log.warning(
                "Version %d of servable %s, which was requested to be served as a 'specific' "
                "version in the servable's version policy, was not found in the file system",
                missing,
                config.name,
            )
        return wanted & set(found)
    count = max(policy.latest.num_versions, 1) if choice == "latest" else 1
    return set(sorted(found, reverse=True)[:count])
