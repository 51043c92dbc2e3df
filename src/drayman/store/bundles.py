"""Bundles in the database: any worker can fetch a DAG folder's code by its version hash."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Connection, insert, select

from drayman.exceptions import NotFoundError
from drayman.store.schema import bundle, deploy


def save_bundle(
    conn: Connection,
    *,
    version: str,
    archive: bytes,
    manifest: dict[str, str],
    now: datetime,
) -> bool:
    """Store a bundle unless that version is already there. True when it was new."""
    if conn.execute(select(bundle.c.version).where(bundle.c.version == version)).first():
        return False
    conn.execute(
        insert(bundle).values(
            version=version,
            created_at=now,
            size_bytes=len(archive),
            file_count=len(manifest),
            manifest=json.dumps(manifest, sort_keys=True),
            archive=archive,
        )
    )
    return True


def load_archive(conn: Connection, version: str) -> bytes:
    """The packed archive of one bundle version."""
    row = conn.execute(select(bundle.c.archive).where(bundle.c.version == version)).first()
    if row is None:
        raise NotFoundError(f"bundle {version[:12]} is not in the store")
    return bytes(row.archive)


def load_manifest(conn: Connection, version: str) -> dict[str, str]:
    row = conn.execute(select(bundle.c.manifest).where(bundle.c.version == version)).first()
    if row is None:
        raise NotFoundError(f"bundle {version[:12]} is not in the store")
    manifest: dict[str, str] = json.loads(row.manifest)
    return manifest


def record_deploy(
    conn: Connection,
    *,
    version: str,
    previous_manifest: dict[str, str] | None,
    manifest: dict[str, str],
    created_by: str,
    source: str,
    now: datetime,
) -> None:
    """Remember who published which version and which files it changed."""
    before = previous_manifest or {}
    changes = {
        "added": sorted(set(manifest) - set(before)),
        "removed": sorted(set(before) - set(manifest)),
        "changed": sorted(p for p in manifest if p in before and before[p] != manifest[p]),
    }
    conn.execute(
        insert(deploy).values(
            bundle_version=version,
            created_at=now,
            created_by=created_by,
            source=source,
            changes=json.dumps(changes),
        )
    )


def latest_deployed_version(conn: Connection) -> str | None:
    row = conn.execute(
        select(deploy.c.bundle_version).order_by(deploy.c.id.desc()).limit(1)
    ).first()
    return None if row is None else str(row.bundle_version)
