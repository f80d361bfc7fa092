"""Version folders read as TF Serving's FileSystemStoragePathSource reads them
(`strings::safe_strto64` on the child's name), by every part of tfstack that reads them."""

from __future__ import annotations

from tfstack.cli import repo
from tfstack.model_repo.layout import version_folders, version_number
from tfstack.modelserver import versions


def test_a_version_is_a_name_safe_strto64_reads():
    assert version_number("1") == 1
    assert version_number("00000123") == 123  # TF Serving's own test model
    assert version_number(" 7 ") == 7
    assert version_number("-2") == -2
    assert version_number(str(2**63 - 1)) == 2**63 - 1
    for name in ("v1", "1.0", "+1", "1_0", "", "٣", "1e3", str(2**63), "0x10"):
        assert version_number(name) is None, name


def test_every_reader_of_a_base_path_finds_the_same_versions(tmp_path):
    base = tmp_path / "m"
    for name in ("1", "0003", "1_0", "v2", "٣", "+4"):
        (base / name).mkdir(parents=True)
    (base / "5").write_text("a file, not a version folder")
    expected = {1: base / "1", 3: base / "0003"}
    assert version_folders(base) == expected
    assert repo.version_dirs(base) == expected

    class Config:
        name, base_path = "m", str(base)

    assert versions.list_versions(Config()) == expected
