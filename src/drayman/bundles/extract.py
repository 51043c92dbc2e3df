"""Extracting a bundle archive: checked whole in memory first, then written without following
anything.

`tarfile.extractall` is not used, not even with `filter="data"`: on the Pythons drayman
supports (3.11 included) its filters have had escapes (CVE-2025-4517 and its siblings: symlink
chains longer than PATH_MAX, a file written through a symlink extracted just before it). A
bundle only ever holds regular files and directories (`archive.pack` follows symlinks and
stores content), so extraction allows nothing else and needs no link logic at all:

1. Every member is read and checked before anything is written: a regular file or a directory
   (links, devices and FIFOs are refused), a relative name without `..`, no name twice, within
   the size cap. The manifest of what was read must hash to the version asked for: a tampered
   or mislabelled archive writes nothing.
2. Files are written with `os.open(O_CREAT | O_EXCL | O_NOFOLLOW)` relative to a directory fd
   opened with `O_NOFOLLOW` component by component, so no path ever resolves through a
   symlink, whatever else appears in the destination meanwhile.

Directories are made 0755 and files 0644, so a try run as another user (`run_as_user`) can
read its bundle.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from drayman.bundles.archive import MAX_BUNDLE_BYTES, manifest_version
from drayman.exceptions import BundleError

MAX_MEMBERS = 100_000
MAX_NAME_BYTES = 255  # one path component (NAME_MAX)
MAX_PATH_BYTES = 1024  # a whole relative name: far below PATH_MAX once under any cache
DIR_MODE = 0o755
FILE_MODE = 0o644
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class _Checked:
    """An archive that passed every check: what to create, nothing yet written."""

    directories: tuple[tuple[str, ...], ...]
    files: dict[tuple[str, ...], bytes]
    version: str


def unpack(
    archive: bytes, dest: Path, version: str | None = None, *, max_bytes: int = MAX_BUNDLE_BYTES
) -> None:
    """Extract `archive` into the directory `dest` (made if missing; empty).

    With `version`, the archive must hold exactly the bundle of that version; that is checked
    before anything is written. Raises `BundleError` naming the offending member.
    """
    checked = _check(archive, max_bytes)
    if version is not None and checked.version != version:
        raise BundleError(
            f"bundle {version[:12]}: the archive holds version {checked.version[:12]}, not the "
            "one asked for (tampered with, or the bundle store is inconsistent); "
            "nothing was extracted"
        )
    try:
        _write(checked, dest)
    except OSError as exc:
        raise BundleError(f"cannot unpack bundle archive into {dest}: {exc}") from exc


def _check(archive: bytes, max_bytes: int) -> _Checked:
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            directories, files = _read_members(tar, max_bytes)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BundleError(f"cannot unpack bundle archive: {exc}") from exc
    _check_no_file_holds_another(directories, files)
    manifest = {"/".join(parts): hashlib.sha256(data).hexdigest() for parts, data in files.items()}
    return _Checked(tuple(sorted(directories)), files, manifest_version(manifest))


def _read_members(
    tar: tarfile.TarFile, max_bytes: int
) -> tuple[set[tuple[str, ...]], dict[tuple[str, ...], bytes]]:
    directories: set[tuple[str, ...]] = set()
    files: dict[tuple[str, ...], bytes] = {}
    total = 0
    for count, member in enumerate(tar, start=1):
        if count > MAX_MEMBERS:
            raise BundleError(f"bundle archive: more than {MAX_MEMBERS} members")
        parts = _parts(member.name)
        if member.isdir():
            directories.add(parts)
            continue
        if not member.isreg():
            raise _refused(member.name, f"is a {_kind(member)}; a bundle holds only files")
        total += member.size
        if total > max_bytes:
            raise _refused(
                member.name, f"takes the archive over the {max_bytes // 2**20} MB bundle limit"
            )
        if parts in files:
            raise _refused(member.name, "appears twice")
        files[parts] = _content(tar, member)
    return directories, files


def _content(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    data = handle.read() if handle is not None else b""
    if len(data) != member.size:
        raise _refused(member.name, "is truncated")
    return data


def _check_no_file_holds_another(
    directories: set[tuple[str, ...]], files: dict[tuple[str, ...], bytes]
) -> None:
    """A file's name must not also be a directory, or lead to another member."""
    for parts in (*directories, *files):
        for depth in range(1, len(parts)):
            if parts[:depth] in files:
                raise _refused("/".join(parts), f"is inside {'/'.join(parts[:depth])!r}, a file")
    for parts in files:
        if parts in directories:
            raise _refused("/".join(parts), "is both a file and a directory")


def _parts(name: str) -> tuple[str, ...]:
    """The components of a member's name, refusing any that could leave the destination."""
    if "\x00" in name:
        raise _refused(name, "has a NUL byte in its name")
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        raise _refused(name, "is an absolute path; bundle members are relative")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise _refused(name, f"has a name longer than {MAX_PATH_BYTES} bytes")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if not parts:
        raise _refused(name, "names the archive's root")
    for part in parts:
        if part == "..":
            raise _refused(name, "climbs out with '..'")
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise _refused(name, f"has a component longer than {MAX_NAME_BYTES} bytes")
    return parts


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"symlink (to {member.linkname!r})"
    if member.islnk():
        return f"hard link (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "FIFO"
    return f"member of tar type {member.type!r}"


def _refused(name: str, why: str) -> BundleError:
    return BundleError(f"bundle archive member {name!r} {why}; nothing was extracted")


# ----------------------------------------------------------------------- writing, no following


def _write(checked: _Checked, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    root = os.open(dest, _DIR_FLAGS)
    try:
        os.fchmod(root, DIR_MODE)
        for parts in checked.directories:
            with _directory(root, parts):
                pass
        for parts, data in sorted(checked.files.items()):
            with _directory(root, parts[:-1]) as parent:
                _write_file(parent, parts[-1], data)
    finally:
        os.close(root)


@contextmanager
def _directory(root: int, parts: tuple[str, ...]) -> Iterator[int]:
    """An fd of `root/parts...`, each component made if missing and never a symlink."""
    fd = os.dup(root)
    try:
        for part in parts:
            try:
                os.mkdir(part, DIR_MODE, dir_fd=fd)
                made = True
            except FileExistsError:
                made = False
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            if made:
                os.fchmod(fd, DIR_MODE)  # mkdir's mode went through the umask
        yield fd
    finally:
        os.close(fd)


def _write_file(parent: int, name: str, data: bytes) -> None:
    fd = os.open(name, _FILE_FLAGS, FILE_MODE, dir_fd=parent)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
