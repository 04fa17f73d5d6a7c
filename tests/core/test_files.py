"""The one atomic write: a temp file beside the target, renamed or uploaded whole, or nothing."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any

import pytest

from mnistnn.core import locations
from mnistnn.core.files import TEMP_PREFIX, atomic_write, clean_temp_files, temp_beside
from mnistnn.core.storage import open_store


def _fail_midway(output: AbstractContextManager[IO[Any]]) -> None:
    """Write part of the bytes, then fail, as a crash in the middle of a write would."""
    with output as handle:
        handle.write(b"partial")
        raise RuntimeError("mid-write")


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.bin"
    with atomic_write(target) as handle:
        handle.write(b"new")
        assert not target.exists()  # nothing at the final path until the block ends
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.bin"]


def test_a_failed_atomic_write_keeps_the_old_bytes(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="mid-write"):
        _fail_midway(atomic_write(target))
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_temp_files_are_named_for_the_store_to_skip_and_clean(tmp_path: Path) -> None:
    with temp_beside(tmp_path / "x.json") as (handle, name):
        handle.write(b"{}")
    assert Path(name).name.startswith(f"{TEMP_PREFIX}x.json.")
    assert open_store(tmp_path).list() == []  # an interrupted write is never a key
    assert clean_temp_files(tmp_path) == [Path(name)]
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_to_a_url_uploads_only_on_success(s3_url: str) -> None:
    good, bad = f"{s3_url}/out/good.csv", f"{s3_url}/out/bad.csv"
    with locations.atomic_output(good) as handle:
        handle.write(b"a,b\n")
    with pytest.raises(RuntimeError, match="mid-write"):
        _fail_midway(locations.atomic_output(bad))
    assert locations.list_folder(f"{s3_url}/out") == ["good.csv"]
    assert locations.read_bytes(good) == b"a,b\n"
    staging = locations.cache_dir() / "staging"
    # both staged files removed (only these names: other processes stage files there too)
    assert not [p for n in ("good", "bad") for p in staging.glob(f"{TEMP_PREFIX}{n}.csv.*")]
