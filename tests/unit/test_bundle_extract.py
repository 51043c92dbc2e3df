"""Hand-made hostile archives: each is refused, naming the member, and nothing is written,
inside the destination or out of it. The tar filters of Python 3.11 to 3.13 let several of
these through (CVE-2025-4517 and its siblings); `extract` never calls them."""

from __future__ import annotations

import gzip
import io
import os
import re
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from drayman.bundles.archive import pack
from drayman.bundles.cache import BundleCache
from drayman.bundles.extract import unpack
from drayman.exceptions import BundleError

Member = tuple[tarfile.TarInfo, bytes | None]


def _file(name: str, data: bytes = b"x = 1\n") -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _dir(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _special(name: str, kind: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    return info, None


def archive(*members: Member) -> bytes:
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def _cve_2025_4517(outside: Path) -> bytes:
    """The published PoC's shape: directories with long names and a symlink chain whose
    resolved path passes PATH_MAX (where realpath stops checking), then a link and a file
    through it that land outside."""
    long = "d" * 247
    steps = "abcdefghijklmnop"
    members: list[Member] = []
    path = ""
    for step in steps:
        members.append(_dir(os.path.join(path, long)))
        members.append(_link(os.path.join(path, step), long))
        path = os.path.join(path, long)
    chain = "/".join(steps)
    members.append(_link(chain + "/" + "l" * 254, "../" * len(steps)))
    members.append(_link("escape", chain + "/" + "l" * 254 + "/" + os.path.relpath(outside, "/")))
    members.append(_file("escape/evil.py"))
    return archive(*members)


HOSTILE: dict[str, tuple[Callable[[Path], bytes], str, str]] = {
    # name: (archive builder given the outside dir, the member named, what the error says)
    "absolute path": (
        lambda out: archive(_file(str(out / "evil.py"))),
        "evil.py",
        "absolute path",
    ),
    "dot-dot": (lambda out: archive(_file("../evil.py")), "../evil.py", "climbs out"),
    "dot-dot inside": (
        lambda out: archive(_file("dags/../../evil.py")),
        "dags/../../evil.py",
        "climbs out",
    ),
    "symlink outside": (
        lambda out: archive(_link("link", str(out))),
        "link",
        "symlink",
    ),
    "symlink then a file through it": (
        lambda out: archive(_link("link", str(out)), _file("link/evil.py")),
        "link",
        "symlink",
    ),
    "relative symlink climbing out": (
        lambda out: archive(_dir("a"), _link("a/up", "../.."), _file("a/up/evil.py")),
        "a/up",
        "symlink",
    ),
    "hard link outside": (
        lambda out: archive(_link("passwd", "/etc/passwd", tarfile.LNKTYPE)),
        "passwd",
        "hard link",
    ),
    "hard link inside": (
        lambda out: archive(_file("a.py"), _link("b.py", "a.py", tarfile.LNKTYPE)),
        "b.py",
        "hard link",
    ),
    "character device": (
        lambda out: archive(_special("null", tarfile.CHRTYPE)),
        "null",
        "device file",
    ),
    "block device": (lambda out: archive(_special("sda", tarfile.BLKTYPE)), "sda", "device"),
    "fifo": (lambda out: archive(_special("pipe", tarfile.FIFOTYPE)), "pipe", "FIFO"),
    "a member twice": (
        lambda out: archive(_file("a.py", b"good"), _file("a.py", b"evil")),
        "a.py",
        "twice",
    ),
    "a file inside a file": (
        lambda out: archive(_file("a"), _file("a/b.py")),
        "a/b.py",
        "a file",
    ),
    "a name longer than PATH_MAX allows": (
        lambda out: archive(_file("/".join(["d" * 200] * 30) + "/x.py")),
        "ddd",
        "longer than",
    ),
    "a component longer than NAME_MAX": (
        lambda out: archive(_file("x" * 300 + ".py")),
        "xxx",
        "longer than 255",
    ),
    "CVE-2025-4517 symlink chain past PATH_MAX": (_cve_2025_4517, "abcdefghijklmnop"[0], "symlink"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_writes_nothing(case: str, tmp_path: Path) -> None:
    build, member, why = HOSTILE[case]
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "cache" / "staging"
    dest.mkdir(parents=True)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    with pytest.raises(BundleError) as refused:
        unpack(build(outside), dest)

    message = str(refused.value)
    assert "bundle archive member" in message, message
    assert member in message, message
    assert why in message, message
    assert "nothing was extracted" in message, message
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert not Path("/evil.py").exists()


def test_the_cve_archive_has_the_published_shape(tmp_path: Path) -> None:
    """The CVE archive above holds its symlink chain and the file written through it, so its
    refusal means something."""
    with tarfile.open(fileobj=io.BytesIO(_cve_2025_4517(tmp_path)), mode="r:gz") as tar:
        kinds = {m.name.rsplit("/", 1)[-1][:8]: m.type for m in tar.getmembers()}
    assert tarfile.SYMTYPE in kinds.values()
    assert kinds["evil.py"] == tarfile.REGTYPE


def test_a_tampered_archive_extracts_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "etl").mkdir(parents=True)
    (src / "sales.py").write_text("X = 1\n")
    (src / "etl" / "helpers.py").write_text("Y = 2\n")
    packed = pack(src)
    tampered = archive(
        _dir("etl"), _file("etl/helpers.py", b"Y = 2\n"), _file("sales.py", b"X=666")
    )
    cache = BundleCache(tmp_path / "cache")

    with pytest.raises(BundleError, match="nothing was extracted") as refused:
        cache.path(packed.version, lambda: tampered)

    assert packed.version[:12] in str(refused.value)
    assert not cache.has(packed.version)
    assert list((tmp_path / "cache").iterdir()) == []
    # the genuine archive of that version goes in
    assert (
        cache.path(packed.version, lambda: packed.archive) / "sales.py"
    ).read_text() == "X = 1\n"


def test_extracted_bundle_is_readable_by_everyone(tmp_path: Path) -> None:
    """0755 directories, 0644 files, whatever the umask: a try run as another user
    (`run_as_user`) reads its bundle."""
    src = tmp_path / "src"
    (src / "etl").mkdir(parents=True)
    (src / "etl" / "helpers.py").write_text("Y = 2\n")
    packed = pack(src)
    old = os.umask(0o077)
    try:
        bundle = BundleCache(tmp_path / "cache").path(packed.version, lambda: packed.archive)
    finally:
        os.umask(old)

    assert os.stat(bundle).st_mode & 0o777 == 0o755
    assert os.stat(bundle / "etl").st_mode & 0o777 == 0o755
    assert os.stat(bundle / "etl" / "helpers.py").st_mode & 0o777 == 0o644


def test_the_size_cap_counts_before_reading(tmp_path: Path) -> None:
    data = archive(_file("a.py", b"a" * 600_000), _file("b.py", b"b" * 600_000))
    with pytest.raises(BundleError, match=re.escape("'b.py' takes the archive over the 1 MB")):
        unpack(data, tmp_path / "out", max_bytes=2**20)
    assert not (tmp_path / "out").exists()
