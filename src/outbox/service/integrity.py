"""`outbox check [--repair]`: gather the facts (database, liveness locks, blob store),
let `core.integrity` name the faults, and apply the fixes it calls safe."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

from outbox.blobs.filesystem import FilesystemBlobs
from outbox.core.integrity import BrokenBlob, Facts, Fault, FaultKind, judge
from outbox.core.model import Event, EventType, MessageStatus
from outbox.errors import BlobCorrupt
from outbox.service.outbox import Outbox
from outbox.worker.policy import recovery_policy

PAGE = 500
HOLD_REASON = ("attachment content missing or corrupt (outbox check): put it back and retry, "
               "or cancel")


@dataclass(frozen=True, slots=True)
class CheckReport:
    faults: tuple[Fault, ...]
    repaired: tuple[str, ...] = ()  # what --repair changed, one line each


async def check(outbox: Outbox, *, repair: bool) -> CheckReport:
    facts = await gather(outbox)
    faults = tuple(judge(facts))
    if not repair or not faults:
        return CheckReport(faults)
    repaired = await apply_repairs(outbox, facts, faults)
    return CheckReport(tuple(judge(await gather(outbox))), tuple(repaired))


async def gather(outbox: Outbox) -> Facts:
    integrity = outbox.store.integrity
    return Facts(
        schema=await integrity.schema_facts(),
        final_with_pending=await integrity.final_with_pending(),
        dead_claims=await _dead_claims(outbox),
        orphan_blobs=await _orphan_blobs(outbox),
        broken_blobs=await _broken_blobs(outbox),
        events_out_of_order=tuple((message, event) for message, event, _, _ in
                                  await integrity.events_out_of_order()))


async def _dead_claims(outbox: Outbox) -> dict[str, str]:
    holders = await outbox.store.messages.claim_holders()
    dead = await outbox.store.liveness.dead(holders) if holders else set()
    if not dead:
        return {}
    found: dict[str, str] = {}
    cursor: str | None = None
    while True:
        page = await outbox.messages.list(MessageStatus.SENDING, PAGE, cursor)
        found.update({m.id: m.claim.owner for m in page.messages
                      if m.claim is not None and m.claim.owner in dead})
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


async def _orphan_blobs(outbox: Outbox) -> tuple[str, ...]:
    """Files in the blob directory that no blob record knows (filesystem store)."""
    if not isinstance(outbox.blobs, FilesystemBlobs):
        return ()
    files = _blob_files(outbox.blobs.directory)
    known = await outbox.store.blob_index.find_blobs(files)
    return tuple(sha256 for sha256 in files if sha256 not in known)


def _blob_files(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(path.name for path in directory.glob("??/??/*")
                  if path.is_file() and len(path.name) == 64 and path.parent.parent.parent
                  == directory)


async def _broken_blobs(outbox: Outbox) -> tuple[BrokenBlob, ...]:
    broken: list[BrokenBlob] = []
    verdicts: dict[str, str | None] = {}
    for message, sha256, size in await outbox.store.integrity.waiting_blob_uses():
        if sha256 not in verdicts:
            verdicts[sha256] = await _blob_problem(outbox, sha256, size)
        problem = verdicts[sha256]
        if problem is not None:
            broken.append(BrokenBlob(message, sha256, problem, await _is_held(outbox, message)))
    return tuple(broken)


async def _is_held(outbox: Outbox, message: str) -> bool:
    """Held already (by an earlier --repair, or for its relay): holding it is no repair."""
    detail = await outbox.store.messages.get(message)
    return detail.message.status is MessageStatus.HELD


async def _blob_problem(outbox: Outbox, sha256: str, size: int) -> str | None:
    digest, read = hashlib.sha256(), 0
    try:
        async for chunk in outbox.blobs.read(sha256, size):
            digest.update(chunk)
            read += len(chunk)
    except (BlobCorrupt, OSError):
        return "missing"
    if read == 0 and size > 0:
        return "missing"
    return None if (read, digest.hexdigest()) == (size, sha256) else "corrupt"


async def apply_repairs(outbox: Outbox, facts: Facts, faults: tuple[Fault, ...]) -> list[str]:
    kinds = {fault.kind for fault in faults if fault.repairable}
    done: list[str] = []
    now = outbox.clock()
    store = outbox.store
    if FaultKind.SCHEMA_DRIFT in kinds:
        done += await _repair_schema(outbox, facts)
    if facts.final_with_pending:
        event = Event(now, EventType.QUEUED, detail="outbox check --repair: final with "
                      "recipients that had no result; queued again for them")
        count = await store.integrity.requeue_final(facts.final_with_pending, now, event)
        done.append(f"queued again {count} final message(s) with pending recipients: "
                    f"{', '.join(facts.final_with_pending)}")
    if facts.dead_claims:
        done += await _recover_dead(outbox, facts)
    if facts.orphan_blobs:
        outbox.blobs.delete_content(facts.orphan_blobs)
        done.append(f"deleted {len(facts.orphan_blobs)} attachment file(s) no record knows: "
                    f"{', '.join(facts.orphan_blobs)}")
    if holdable := [broken for broken in facts.broken_blobs if not broken.held]:
        ids = sorted({broken.message for broken in holdable})
        event = Event(now, EventType.HELD, guidance="attachment_corrupt", detail=HOLD_REASON)
        count = await store.integrity.hold_messages(ids, now, HOLD_REASON, event)
        done.append(f"held {count} message(s) whose attachment is missing or corrupt: "
                    f"{', '.join(ids)} (put the file back and retry, or cancel)")
    if facts.events_out_of_order:
        ids = sorted({message for message, _ in facts.events_out_of_order})
        count = await store.integrity.restamp_events(ids)
        done.append(f"restamped {count} event(s) out of order in message(s) {', '.join(ids)}")
    return done


async def _repair_schema(outbox: Outbox, facts: Facts) -> list[str]:
    schema = facts.schema
    if schema.revision != schema.head and schema.known_revision:
        await outbox.store.migrate()
        return [f"migrated the schema from {schema.revision} to {schema.head}"]
    if schema.missing_indexes:
        made = await outbox.store.integrity.create_indexes(schema.missing_indexes)
        return [f"created {made} missing index(es): {', '.join(schema.missing_indexes)}"]
    return []


async def _recover_dead(outbox: Outbox, facts: Facts) -> list[str]:
    policy, rng, now = recovery_policy(outbox.settings), random.Random(), outbox.clock()
    owners = set(facts.dead_claims.values())
    recovered = await outbox.store.messages.recover_stale(
        now, lambda claim: policy.decide(claim, now, rng), owners)
    await outbox.store.liveness.forget(owners)
    return [f"gave back {len(recovered)} claim(s) of dead worker(s) {', '.join(sorted(owners))}"
            f" (uncertain, attempt counted): {', '.join(recovered)}"]
