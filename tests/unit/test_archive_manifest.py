"""The backup manifest (core.archive): what a sound archive promises, and how each
fault of a damaged one is named."""

from __future__ import annotations

import pytest

from outbox.core.archive import (
    ArchiveFault,
    Manifest,
    Part,
    PartCheck,
    missing_after,
    next_expected,
)

PARTS = (Part("tables/messages.jsonl", 10, "aa", 2), Part("blobs/cafe", 5, "bb"))
MANIFEST = Manifest("0.1.0", "2026-12-02T10:00:00+00:00", "sqlite", "0009_list_filters",
                    "filesystem", PARTS)


def test_a_manifest_survives_its_json() -> None:
    again = Manifest.from_json(MANIFEST.to_json())

    assert again == MANIFEST
    assert again.tables == {"messages": 2}
    assert again.blob_parts == (PARTS[1],)


@pytest.mark.parametrize("data, named", [
    (b"{not json", "not JSON"),
    (b'{"format": "zip"}', "not of format outbox-backup/1"),
    (b'{"format": "outbox-backup/1", "parts": []}', "lacks or garbles"),
    (MANIFEST.to_json().replace(b"blobs/cafe", b"../etc/passwd"), "lacks or garbles"),
])
def test_a_manifest_that_cannot_be_trusted_is_refused_by_name(data: bytes, named: str) -> None:
    with pytest.raises(ArchiveFault, match=named):
        Manifest.from_json(data)


@pytest.mark.parametrize("size, sha, rows, fault", [
    (10, "aa", 2, None),
    (9, "aa", 2, "has 9 bytes, the manifest says 10"),
    (10, "ab", 2, "fails its sha256 check"),
    (10, "aa", 3, "has 3 rows, the manifest says 2"),
])
def test_each_part_is_judged_by_size_then_checksum_then_rows(size: int, sha: str, rows: int,
                                                             fault: str | None) -> None:
    found = PartCheck(PARTS[0], size, sha, rows).fault()

    assert found == fault if fault is None else fault in (found or "")


def test_parts_must_come_in_the_manifest_s_order_and_all_of_them() -> None:
    assert next_expected(MANIFEST, 0, "tables/messages.jsonl") == PARTS[0]
    with pytest.raises(ArchiveFault, match="where its manifest lists"):
        next_expected(MANIFEST, 0, "blobs/cafe")
    with pytest.raises(ArchiveFault, match="does not list"):
        next_expected(MANIFEST, 2, "blobs/extra")
    assert "truncated" in (missing_after(MANIFEST, 1) or "")
    assert missing_after(MANIFEST, 2) is None
