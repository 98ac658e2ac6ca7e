"""`core.integrity.judge`: each impossible state named once, with its fix, and
whether --repair may apply it."""

from __future__ import annotations

from outbox.core.integrity import BrokenBlob, Facts, FaultKind, SchemaFacts, judge

HEAD = SchemaFacts("0010", "0010", True)


def test_a_sound_database_has_no_faults() -> None:
    assert judge(Facts(HEAD)) == []


def test_each_fact_is_one_fault_with_a_fix() -> None:
    facts = Facts(HEAD, final_with_pending=("m1",), dead_claims={"m2": "host:1:x"},
                  orphan_blobs=("ab" * 32,), broken_blobs=(BrokenBlob("m3", "cd" * 32,
                                                                      "corrupt"),),
                  events_out_of_order=(("m4", 17),))

    faults = judge(facts)

    assert [f.kind for f in faults] == [FaultKind.FINAL_WITH_PENDING, FaultKind.DEAD_CLAIM,
                                        FaultKind.ORPHAN_BLOB, FaultKind.BLOB_MISSING,
                                        FaultKind.EVENTS_OUT_OF_ORDER]
    assert all(f.fix and f.repairable for f in faults)
    assert "outbox queue cancel m3" in faults[3].fix
    assert "sha256" in faults[3].detail
    assert "host:1:x" in faults[1].line()


def test_an_older_revision_is_migrated_and_hides_what_the_migration_adds() -> None:
    older = SchemaFacts("0009", "0010", True, missing_tables=("suppressions",))

    (fault,) = judge(Facts(older))

    assert fault.kind is FaultKind.SCHEMA_DRIFT and fault.repairable
    assert "0009" in fault.detail and "migrate" in fault.fix


def test_an_unknown_revision_and_lost_tables_are_for_an_operator() -> None:
    newer = judge(Facts(SchemaFacts("0099", "0010", False)))
    lost = judge(Facts(SchemaFacts("0010", "0010", True, missing_tables=("events",),
                                   missing_columns=("messages.owner",),
                                   missing_indexes=("ix_events_message_id_id",))))

    assert [f.repairable for f in newer] == [False]
    assert [f.repairable for f in lost] == [False, False, True]
