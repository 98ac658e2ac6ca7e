"""What a backup archive promises, and how to tell a sound one from a broken one.

A backup is a tar whose first member is `manifest.json`; every other member is a
part the manifest lists, in order, with its size and sha256:

    manifest.json                   format, Outbox version, backend, schema revision,
                                    row counts per table, the parts
    tables/<table>.jsonl            one JSON object per row (portable across backends)
    blobs/<sha256>                  attachment content, by its checksum

`Manifest.from_json` refuses a manifest it cannot trust; `PartCheck` compares one
part as read against what the manifest says. Pure: the archive's I/O is in
`ops.backup`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

FORMAT = "outbox-backup/1"
MANIFEST = "manifest.json"
TABLES_DIR = "tables/"
BLOBS_DIR = "blobs/"


class ArchiveFault(Exception):
    """The archive is not a sound Outbox backup; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    size: int
    sha256: str
    rows: int | None = None  # a table's part: its row count


@dataclass(frozen=True, slots=True)
class Manifest:
    outbox_version: str
    created_at: str
    backend: str
    revision: str
    blob_store: str
    parts: tuple[Part, ...] = field(default=())

    @property
    def tables(self) -> dict[str, int]:
        return {part.name.removeprefix(TABLES_DIR).removesuffix(".jsonl"): part.rows or 0
                for part in self.parts if part.name.startswith(TABLES_DIR)}

    @property
    def blob_parts(self) -> tuple[Part, ...]:
        return tuple(part for part in self.parts if part.name.startswith(BLOBS_DIR))

    def to_json(self) -> bytes:
        body = {"format": FORMAT, "outbox_version": self.outbox_version,
                "created_at": self.created_at, "backend": self.backend,
                "revision": self.revision, "blob_store": self.blob_store,
                "row_counts": self.tables,
                "parts": [_part_json(part) for part in self.parts]}
        return json.dumps(body, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        try:
            body = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArchiveFault(f"its manifest.json is not JSON ({exc})") from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            found = body.get("format") if isinstance(body, dict) else None
            raise ArchiveFault(f"its manifest.json is not of format {FORMAT} (found {found!r})")
        try:
            parts = tuple(_part(item) for item in body["parts"])
            return cls(str(body["outbox_version"]), str(body["created_at"]),
                       str(body["backend"]), str(body["revision"]), str(body["blob_store"]),
                       parts)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchiveFault(f"its manifest.json lacks or garbles {exc}") from None


def _part_json(part: Part) -> dict[str, Any]:
    body: dict[str, Any] = {"name": part.name, "size": part.size, "sha256": part.sha256}
    if part.rows is not None:
        body["rows"] = part.rows
    return body


def _part(item: Any) -> Part:
    name = str(item["name"])
    if not (name.startswith((TABLES_DIR, BLOBS_DIR))) or ".." in name or name.count("/") != 1:
        raise ValueError(f"part name {name!r}")
    rows = item.get("rows")
    return Part(name, int(item["size"]), str(item["sha256"]),
                None if rows is None else int(rows))


@dataclass(frozen=True, slots=True)
class PartCheck:
    """What was read of one member, judged against the manifest."""

    expected: Part
    size: int
    sha256: str
    rows: int | None = None

    def fault(self) -> str | None:
        part = self.expected
        if self.size != part.size:
            return (f"part {part.name} has {self.size:,} bytes, the manifest says "
                    f"{part.size:,} (truncated or altered)")
        if self.sha256 != part.sha256:
            return f"part {part.name} fails its sha256 check (altered after the backup)"
        if part.rows is not None and self.rows != part.rows:
            return f"part {part.name} has {self.rows} rows, the manifest says {part.rows}"
        return None


def next_expected(manifest: Manifest, seen: int, member: str) -> Part:
    """The part the archive should hold at position `seen`; `ArchiveFault` otherwise."""
    if seen >= len(manifest.parts):
        raise ArchiveFault(f"it holds {member}, which its manifest does not list")
    expected = manifest.parts[seen]
    if member != expected.name:
        raise ArchiveFault(f"it holds {member} where its manifest lists {expected.name}")
    return expected


def missing_after(manifest: Manifest, seen: int) -> str | None:
    """A fault when the archive ended before every part was read."""
    if seen < len(manifest.parts):
        return (f"it ends before part {manifest.parts[seen].name} "
                f"({len(manifest.parts) - seen} of {len(manifest.parts)} parts missing: "
                "truncated)")
    return None
