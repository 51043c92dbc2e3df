"""Packing a DAG folder into a deterministic, content-addressed bundle.

A bundle's version is the sha256 of its manifest ({relative path: sha256 of the file}) in
canonical JSON, so it depends on file names and contents only: not on mtimes, owners, the
order a filesystem lists files in, or how the archive is compressed. Packing the same folder
on two machines gives the same version, which is what lets workers cache bundles by hash and
lets a re-deploy of unchanged code be recognised as such.

What goes in: every file under the folder except hidden files and directories (a name that
starts with "."), `__pycache__` directories, `*.pyc` files, and the patterns listed in a
`.draymanignore` file at the folder root. Symlinks are followed (the archive holds the content)
but must point inside the folder. File modes are not kept: every file is extracted 0644, so
call scripts through their interpreter (`bash scripts/load.sh`). Extracting is
`drayman.bundles.extract`.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from drayman.exceptions import BundleError

MAX_BUNDLE_BYTES = 200 * 1024 * 1024
IGNORE_FILE = ".draymanignore"

Signature = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class PackedBundle:
    """A packed DAG folder: its version, the tar.gz archive and the manifest it was named by."""

    version: str  # 64 hex: sha256 of the canonical manifest JSON
    archive: bytes  # deterministic tar.gz
    manifest: dict[str, str]  # relative posix path -> sha256 hex of the file's bytes


@dataclass(frozen=True)
class _Entry:
    relpath: str  # posix, NFC-normalised
    path: Path  # where to read it (may be a symlink inside the folder)
    size: int
    mtime_ns: int


def manifest_version(manifest: dict[str, str]) -> str:
    """The version of a bundle: sha256 of its manifest in canonical JSON."""
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def pack(folder: Path) -> PackedBundle:
    """Pack `folder` into a deterministic tar.gz named by the hash of its manifest."""
    entries = _included_files(folder)
    manifest: dict[str, str] = {}
    raw = io.BytesIO()
    # gzip header: no file name, mtime 0, so equal content gives byte-equal archives
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for entry in entries:
            data = _read(entry)
            manifest[entry.relpath] = hashlib.sha256(data).hexdigest()
            tar.addfile(_tar_info(entry.relpath, len(data)), io.BytesIO(data))
    return PackedBundle(
        version=manifest_version(manifest), archive=raw.getvalue(), manifest=manifest
    )


def folder_version(folder: Path) -> str:
    """The version `pack(folder)` would give, without building an archive."""
    manifest = {e.relpath: hashlib.sha256(_read(e)).hexdigest() for e in _included_files(folder)}
    return manifest_version(manifest)


def folder_signature(folder: Path) -> Signature:
    """A cheap fingerprint of the files `pack` would include (path, size, mtime).

    Only `stat` calls: the DAG processor compares it on every tick and hashes the folder only
    when it changed.
    """
    return tuple((e.relpath, e.size, e.mtime_ns) for e in _included_files(folder))


def _tar_info(relpath: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(relpath)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _read(entry: _Entry) -> bytes:
    try:
        return entry.path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read {entry.path}: {exc.strerror or exc}") from exc


def _included_files(folder: Path) -> list[_Entry]:
    """Every file a bundle of `folder` holds, sorted by relative path, within the size cap."""
    if not folder.is_dir():
        raise BundleError(
            f"DAG folder {folder} does not exist; set DRAYMAN_DAGS_FOLDER or create it"
        )
    root = folder.resolve()
    rules = _IgnoreRules.load(root)
    entries = sorted(_walk(root, root, "", rules, (root,)), key=lambda e: e.relpath)
    total = sum(e.size for e in entries)
    if total > MAX_BUNDLE_BYTES:
        raise BundleError(
            f"DAG folder {folder} holds {total / 2**20:.0f} MB, over the "
            f"{MAX_BUNDLE_BYTES // 2**20} MB limit of a bundle; list data files in "
            f"{folder / IGNORE_FILE} or keep them outside the DAG folder"
        )
    return entries


def _walk(
    root: Path, directory: Path, prefix: str, rules: _IgnoreRules, ancestors: tuple[Path, ...]
) -> Iterator[_Entry]:
    """Yield included files below `directory`; `ancestors` (real paths) detect symlink loops."""
    with os.scandir(directory) as listing:
        items = sorted(listing, key=lambda item: item.name)
    for item in items:
        relpath = unicodedata.normalize("NFC", prefix + item.name)
        is_dir = item.is_dir()
        if _skipped(item.name, is_dir) or rules.ignores(relpath, is_dir):
            continue
        path = Path(item.path)
        info = _stat_inside(root, path) if item.is_symlink() else item.stat()
        if is_dir:
            real = path.resolve()
            if real not in ancestors:
                yield from _walk(root, path, relpath + "/", rules, (*ancestors, real))
        elif stat.S_ISREG(info.st_mode):
            yield _Entry(relpath, path, info.st_size, info.st_mtime_ns)


def _skipped(name: str, is_dir: bool) -> bool:
    """Never bundled: hidden names, bytecode caches (they differ per Python and per host)."""
    if name.startswith("."):
        return True
    return name == "__pycache__" if is_dir else name.endswith(".pyc")


def _stat_inside(root: Path, link: Path) -> os.stat_result:
    """Stat a symlink's target, refusing one that leaves the folder or leads nowhere."""
    target = link.resolve()
    if not target.is_relative_to(root):
        raise BundleError(
            f"{link} is a symlink to {target}, outside the DAG folder {root}; "
            "a bundle may only link to files inside it (copy the file in instead)"
        )
    try:
        return target.stat()
    except OSError as exc:
        raise BundleError(f"{link} is a broken symlink ({exc.strerror or exc})") from exc


@dataclass(frozen=True)
class _IgnoreRules:
    """Patterns from `.draymanignore`: fnmatch against the relative posix path.

    A pattern ending in "/" matches directories only. A pattern without a "/" also matches a
    bare name at any depth (`*.csv`, `scratch/`), as in .gitignore.
    """

    file_patterns: tuple[str, ...] = ()
    dir_patterns: tuple[str, ...] = ()

    @classmethod
    def load(cls, root: Path) -> _IgnoreRules:
        path = root / IGNORE_FILE
        if not path.is_file():
            return cls()
        files: list[str] = []
        dirs: list[str] = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            pattern = line.strip()
            if not pattern or pattern.startswith("#"):
                continue
            pattern = pattern.lstrip("/")
            if pattern.endswith("/"):
                dirs.append(pattern.rstrip("/"))
            else:
                files.append(pattern)
        return cls(tuple(files), tuple(dirs))

    def ignores(self, relpath: str, is_dir: bool) -> bool:
        patterns = self.file_patterns + self.dir_patterns if is_dir else self.file_patterns
        name = relpath.rsplit("/", 1)[-1]
        return any(
            fnmatch.fnmatchcase(relpath, pattern)
            or ("/" not in pattern and fnmatch.fnmatchcase(name, pattern))
            for pattern in patterns
        )
