"""Impossible states, and what to do about each: the judge behind `outbox check`.

The edges gather facts (`service.integrity`); this module names the faults in
them, each with its fix and whether `--repair` may apply that fix on its own:

    final_with_pending   a sent / partially sent / failed message with a recipient
                         still pending or deferred              repair: queue it again
                                                                for those recipients
    dead_claim           `sending` under a worker that is gone  repair: recover it as
                                                                the sweeper would (uncertain)
    orphan_blob          attachment content no blob record knows  repair: delete the file
    blob_missing         a message waiting to be sent whose attachment is missing or
                         fails its sha256                       repair: hold the message
                                                                (the operator restores
                                                                the file, or cancels);
                                                                held already: by hand
    events_out_of_order  an event stamped earlier than the one before it
                                                                repair: restamp it with
                                                                the earlier time
    schema_drift         the database's schema is not this Outbox's  repair: migrate (an
                         older revision) or create the missing index; otherwise by hand
Pure: facts in, faults out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class FaultKind(StrEnum):
    FINAL_WITH_PENDING = "final_with_pending"
    DEAD_CLAIM = "dead_claim"
    ORPHAN_BLOB = "orphan_blob"
    BLOB_MISSING = "blob_missing"
    EVENTS_OUT_OF_ORDER = "events_out_of_order"
    SCHEMA_DRIFT = "schema_drift"


@dataclass(frozen=True, slots=True)
class BrokenBlob:
    message: str
    sha256: str
    problem: str  # "missing" or "corrupt"
    held: bool = False  # the message is held already: --repair has nothing left to do


@dataclass(frozen=True, slots=True)
class SchemaFacts:
    revision: str | None
    head: str
    known_revision: bool  # this Outbox's migrations know `revision`
    missing_tables: tuple[str, ...] = ()
    missing_columns: tuple[str, ...] = ()  # "table.column"
    missing_indexes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Facts:
    schema: SchemaFacts
    final_with_pending: tuple[str, ...] = ()
    dead_claims: dict[str, str] = field(default_factory=dict)  # message id -> dead owner
    orphan_blobs: tuple[str, ...] = ()
    broken_blobs: tuple[BrokenBlob, ...] = ()
    events_out_of_order: tuple[tuple[str, int], ...] = ()  # (message id, event id)


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    subject: str  # the message, blob, owner or schema object it is about
    detail: str
    fix: str
    repairable: bool

    def line(self) -> str:
        how = "repairable with --repair" if self.repairable else "fix by hand"
        return f"{self.kind}: {self.subject}: {self.detail}; fix: {self.fix} ({how})"


def judge(facts: Facts) -> list[Fault]:
    return [*_schema(facts.schema), *_final_with_pending(facts), *_dead_claims(facts),
            *_orphans(facts), *_broken(facts), *_out_of_order(facts)]


def _final_with_pending(facts: Facts) -> list[Fault]:
    return [Fault(FaultKind.FINAL_WITH_PENDING, f"message {id}",
                  "it is final but a recipient has no result (pending or deferred)",
                  "queue it again for those recipients only", True)
            for id in facts.final_with_pending]


def _dead_claims(facts: Facts) -> list[Fault]:
    return [Fault(FaultKind.DEAD_CLAIM, f"message {id}",
                  f"`sending` under worker {owner}, which is gone",
                  "give the claim back as the sweeper does (uncertain, attempt counted)", True)
            for id, owner in sorted(facts.dead_claims.items())]


def _orphans(facts: Facts) -> list[Fault]:
    return [Fault(FaultKind.ORPHAN_BLOB, f"blob {sha256}",
                  "attachment content that no blob record knows (no message can use it)",
                  "delete the file", True)
            for sha256 in facts.orphan_blobs]


def _broken(facts: Facts) -> list[Fault]:
    return [Fault(FaultKind.BLOB_MISSING, f"message {broken.message}",
                  f"its attachment {broken.sha256} is {broken.problem}"
                  + (" (it no longer matches its sha256)" if broken.problem == "corrupt"
                     else ""),
                  f"put the file back (from a backup) and `outbox queue retry "
                  f"{broken.message}`, or `outbox queue cancel {broken.message}`; "
                  + ("it is held until then" if broken.held else "--repair holds it meanwhile"),
                  not broken.held)
            for broken in facts.broken_blobs]


def _out_of_order(facts: Facts) -> list[Fault]:
    return [Fault(FaultKind.EVENTS_OUT_OF_ORDER, f"message {message}",
                  f"event {event} is stamped earlier than the event before it (clocks "
                  "of the nodes disagree?)",
                  "restamp it with the earlier event's time; check NTP on every node", True)
            for message, event in facts.events_out_of_order]


def _schema(schema: SchemaFacts) -> list[Fault]:
    faults: list[Fault] = []
    if schema.revision != schema.head:
        older = schema.known_revision and schema.revision is not None
        faults.append(Fault(
            FaultKind.SCHEMA_DRIFT, "schema revision",
            f"the database is at {schema.revision or 'no revision'}, this Outbox at "
            f"{schema.head}",
            "migrate it (`outbox serve` or `outbox worker` does at start-up)" if older else
            "run the Outbox version that wrote this database, or restore a backup", older))
        return faults  # the tables, columns and indexes are the migrations' business
    faults += [Fault(FaultKind.SCHEMA_DRIFT, f"table {name}", "missing from the database",
                     "restore a backup; the data it held is gone", False)
               for name in schema.missing_tables]
    faults += [Fault(FaultKind.SCHEMA_DRIFT, f"column {name}", "missing from the database",
                     "restore a backup", False) for name in schema.missing_columns]
    faults += [Fault(FaultKind.SCHEMA_DRIFT, f"index {name}",
                     "missing from the database (queries slow down, a uniqueness rule may "
                     "not hold)", "create it again", True)
               for name in schema.missing_indexes]
    return faults
