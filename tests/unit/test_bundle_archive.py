from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
from pathlib import Path

import pytest

from drayman.bundles.archive import (
    MAX_BUNDLE_BYTES,
    folder_signature,
    manifest_version,
    pack,
)
from drayman.bundles.extract import unpack
from drayman.exceptions import BundleError


def write(root: Path, relpath: str, text: str = "x = 1\n") -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def dags(tmp_path: Path) -> Path:
    root = tmp_path / "dags"
    write(root, "sales.py", "print('sales')\n")
    write(root, "etl/helpers.py", "def f():\n    return 1\n")
    write(root, "etl/__init__.py", "")
    return root


def test_version_is_the_hash_of_the_manifest(dags: Path) -> None:
    packed = pack(dags)

    assert packed.manifest == {
        "etl/__init__.py": hashlib.sha256(b"").hexdigest(),
        "etl/helpers.py": hashlib.sha256(b"def f():\n    return 1\n").hexdigest(),
        "sales.py": hashlib.sha256(b"print('sales')\n").hexdigest(),
    }
    assert packed.version == manifest_version(packed.manifest)
    assert len(packed.version) == 64
    int(packed.version, 16)


def test_same_content_gives_the_same_bytes_whatever_the_mtimes_and_order(
    dags: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    # created in another order, with other mtimes and modes
    write(other, "etl/helpers.py", "def f():\n    return 1\n")
    write(other, "sales.py", "print('sales')\n").chmod(0o755)
    write(other, "etl/__init__.py", "")
    os.utime(other / "sales.py", ns=(10**9, 10**9))

    first, second = pack(dags), pack(other)

    assert first.version == second.version
    assert first.archive == second.archive


def test_content_and_names_change_the_version(dags: Path) -> None:
    before = pack(dags).version
    write(dags, "sales.py", "print('sales!')\n")
    edited = pack(dags).version
    (dags / "sales.py").rename(dags / "orders.py")
    renamed = pack(dags).version

    assert len({before, edited, renamed}) == 3


def test_archive_entries_are_normalised(dags: Path) -> None:
    archive = pack(dags).archive

    assert archive[4:8] == b"\0\0\0\0"  # gzip header mtime
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["etl/__init__.py", "etl/helpers.py", "sales.py"]
    for member in members:
        assert (member.mtime, member.uid, member.gid, member.mode) == (0, 0, 0, 0o644)
        assert (member.uname, member.gname) == ("", "")


def test_hidden_cache_and_bytecode_files_are_left_out(dags: Path) -> None:
    write(dags, ".git/config")
    write(dags, ".env", "SECRET=1")
    write(dags, "etl/.hidden.py")
    write(dags, "etl/__pycache__/helpers.cpython-311.pyc")
    write(dags, "old.pyc")

    assert sorted(pack(dags).manifest) == ["etl/__init__.py", "etl/helpers.py", "sales.py"]


def test_draymanignore_patterns(dags: Path) -> None:
    write(
        dags,
        ".draymanignore",
        "# data stays out\n\n*.csv\ndata/\netl/scratch_*.py\n/notes.txt\n",
    )
    write(dags, "data/big.parquet")
    write(dags, "etl/data/kept.py")  # "data/" matches a directory at any depth
    write(dags, "reports/q1.csv")
    write(dags, "etl/scratch_1.py")
    write(dags, "notes.txt")
    write(dags, "data.py")  # "data/" matches directories only

    assert sorted(pack(dags).manifest) == [
        "data.py",
        "etl/__init__.py",
        "etl/helpers.py",
        "sales.py",
    ]


def test_missing_folder_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist; set DRAYMAN_DAGS_FOLDER"):
        pack(tmp_path / "nope")
    with pytest.raises(BundleError, match="does not exist"):
        folder_signature(tmp_path / "nope")


def test_symlink_outside_the_folder_is_refused(dags: Path, tmp_path: Path) -> None:
    secret = write(tmp_path, "secret.txt", "password")
    (dags / "leak.txt").symlink_to(secret)

    with pytest.raises(BundleError, match=r"leak\.txt is a symlink to .*outside the DAG folder"):
        pack(dags)


def test_symlinks_inside_are_followed_and_loops_cut(dags: Path) -> None:
    (dags / "alias.py").symlink_to(dags / "sales.py")
    (dags / "etl" / "loop").symlink_to(dags)  # would recurse forever if followed blindly

    manifest = pack(dags).manifest

    assert manifest["alias.py"] == manifest["sales.py"]
    assert not any(path.startswith("etl/loop") for path in manifest)


def test_broken_symlink_is_refused(dags: Path) -> None:
    (dags / "gone.py").symlink_to(dags / "missing.py")

    with pytest.raises(BundleError, match="broken symlink"):
        pack(dags)


def test_folder_over_the_size_limit_is_refused(dags: Path) -> None:
    with (dags / "huge.bin").open("wb") as handle:  # sparse: no real disk space used
        handle.truncate(MAX_BUNDLE_BYTES + 1)

    with pytest.raises(BundleError, match=r"over the 200 MB limit") as info:
        pack(dags)
    assert str(dags) in str(info.value)


def test_unpack_restores_the_files(dags: Path, tmp_path: Path) -> None:
    packed = pack(dags)
    dest = tmp_path / "out"

    unpack(packed.archive, dest)

    assert (dest / "etl" / "helpers.py").read_text() == "def f():\n    return 1\n"
    assert pack(dest).version == packed.version


def test_unpack_refuses_paths_outside_the_destination(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo("../evil.py")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))

    with pytest.raises(BundleError, match=re.escape("'../evil.py' climbs out")):
        unpack(raw.getvalue(), tmp_path / "out")
    assert not (tmp_path / "evil.py").exists()


def test_unpack_refuses_garbage(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="cannot unpack"):
        unpack(b"not a tarball", tmp_path / "out")


def test_empty_folder_is_a_valid_bundle(tmp_path: Path) -> None:
    packed = pack(tmp_path)

    assert packed.manifest == {}
    assert packed.version == hashlib.sha256(b"{}").hexdigest()


def test_folder_signature_follows_included_files_only(dags: Path) -> None:
    first = folder_signature(dags)
    assert folder_signature(dags) == first
    assert [relpath for relpath, _, _ in first] == [
        "etl/__init__.py",
        "etl/helpers.py",
        "sales.py",
    ]

    write(dags, ".scratch.py")
    write(dags, "etl/__pycache__/x.pyc")
    assert folder_signature(dags) == first

    write(dags, "sales.py", "print('changed, longer')\n")
    edited = folder_signature(dags)
    assert edited != first

    write(dags, "new.py")
    added = folder_signature(dags)
    assert added != edited

    (dags / "new.py").unlink()
    assert folder_signature(dags) == edited
