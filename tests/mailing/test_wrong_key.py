"""A mailing whose staged text cannot be opened is never taken for cancelled
(issue 10, item 1), on every Store backend.

* a worker with the wrong master key fails loudly (``ConfigurationError``) and
  every recipient stays queued; the right worker then delivers them all;
* a flipped bit in the staged text (or a damaged staging key record) marks the
  mailing ``failed`` with a reason, visible in its status, its ledger and the
  audit trail; nothing is delivered and nothing is forgotten;
* only an explicit cancel or a real tombstone of the staging key cancels.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest

from clientcomm import ConfigurationError
from clientcomm.actors import StaffActor
from clientcomm.app import ClientComm
from clientcomm.audit.records import AuditEntry, PendingAudit
from clientcomm.crypto import KEY_RECORD_KIND, LocalKeyProvider, MasterKey
from clientcomm.mail.memory import MemoryTransport
from clientcomm.mailing import (
    MAILING_KIND,
    DeliveryEvent,
    MailingState,
    RecipientState,
    staging_owner,
)
from clientcomm.messages import MESSAGE_KIND
from clientcomm.records import Records
from clientcomm.rules.audience import Audience
from clientcomm.storage.base import Store
from clientcomm.worker import Worker
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.mailing_support import LINKS, MAIL, make_app, recipient_states

ADMIN = StaffActor("f1", "admin")
TEXT = "Liebe Mandantinnen und Mandanten, bitte beachten Sie die neuen Fristen."


@attrs.frozen
class Env:
    app: ClientComm
    store: Store

    def other_key(self) -> ClientComm:
        """A second ClientComm on the same store, directory and blobs, started
        with another master key (a misconfigured worker)."""
        app = self.app
        return ClientComm(
            store=self.store,
            directory=app.directory,
            keys=LocalKeyProvider(self.store, MasterKey.generate(), clock=app.clock),
            blobs=app.blobs,
            transport=MemoryTransport(),
            links=LINKS,
            mail=MAIL,
            clock=app.clock,
            mailing_batch=app.mailings.batch_size,
        )


@pytest.fixture(params=STORE_BACKENDS)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    async for store in open_backend(request.param, tmp_path):
        async with make_app(store, tmp_path, mailing_batch=2) as application:
            yield Env(application, store)


async def count(store: Store, kind: str, **kw: object) -> int:
    async with store.transaction("f1") as tx:
        return await tx.count(kind, **kw)  # type: ignore[arg-type]


async def staging_key_alive(app: ClientComm, mailing_id: str) -> bool:
    owner = staging_owner(mailing_id)
    return owner in await app.sealer.provider.current_versions("f1", [owner])


async def audit_operations(store: Store, mailing_id: str) -> list[str]:
    """The mailing's audit operations in order: chained entries, then those
    appended but not chained yet."""
    subject = f"mailing:{mailing_id}"
    records = Records(store)
    async with records.transaction("f1") as tx:
        chained = await tx.list(AuditEntry, parent=subject)
        pending = await tx.list(PendingAudit)
    return [e.operation for e in chained] + [e.operation for e in pending if e.subject == subject]


async def flip_staged_text(store: Store, mailing_id: str) -> None:
    async with store.transaction("f1") as tx:
        rec = await tx.get(MAILING_KIND, mailing_id)
        assert rec.body is not None
        body = bytearray(rec.body)
        body[-20] ^= 0x01  # one bit of the ciphertext
        await tx.update([rec.evolve(body=bytes(body))])


# -- the wrong master key ---------------------------------------------------------
async def test_wrong_master_key_fails_loudly_and_keeps_every_recipient_queued(
    env: Env,
) -> None:
    app = env.app
    receipt = await app.mailings.submit(ADMIN, Audience.everyone(), TEXT)
    assert receipt.total == 5
    wrong = env.other_key()
    with pytest.raises(ConfigurationError, match="master key does not match"):
        await wrong.run_step("mailing.fanout")
    with pytest.raises(ConfigurationError):
        await wrong.run_once()
    with pytest.raises(ConfigurationError):  # the worker does not eat it either
        await Worker(wrong, idle_interval=0).run(stop_when_idle=True)
    assert await recipient_states(env.store) == {"queued": 5}
    progress = await app.mailings.status(ADMIN, receipt.id)
    assert progress.state is MailingState.SENDING
    assert (progress.pending, progress.cancelled, progress.failed) == (5, 0, 0)
    assert progress.failure is None
    assert await count(env.store, MESSAGE_KIND) == 0
    assert await staging_key_alive(app, receipt.id)  # nothing forgotten
    assert await audit_operations(env.store, receipt.id) == ["mailing.submitted"]
    # the right key delivers everything at once (the wrong worker left no lease)
    assert await app.run_step("mailing.fanout") == 5
    await app.run_step("mailing.fanout")
    assert await recipient_states(env.store) == {"delivered": 5}
    done = await app.mailings.status(ADMIN, receipt.id)
    assert done.state is MailingState.COMPLETED and done.delivered == 5


async def test_wrong_master_key_cannot_submit(env: Env) -> None:
    await env.app.mailings.submit(ADMIN, Audience.clients("c1"), TEXT)  # the firm has keys
    with pytest.raises(ConfigurationError):
        await env.other_key().mailings.submit(ADMIN, Audience.everyone(), TEXT)
    assert await count(env.store, MAILING_KIND) == 1
    async with env.store.transaction("f1") as tx:  # no key made under the wrong master key
        keys = [r for r in await tx.list(KEY_RECORD_KIND) if r.data["keys"]]
    assert {r.data["master_key_id"] for r in keys} == {
        env.app.sealer.provider.master_key_id  # type: ignore[attr-defined]
    }


# -- damaged staged content --------------------------------------------------------
async def test_flipped_bit_in_staged_text_fails_the_mailing_with_a_reason(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    app = env.app
    receipt = await app.mailings.submit(ADMIN, Audience.everyone(), TEXT)
    assert await app.run_step("mailing.fanout", limit=2) == 2  # one page delivered
    await flip_staged_text(env.store, receipt.id)
    events: list[DeliveryEvent] = []
    app.mailings.subscribe(events.append)
    with caplog.at_level(logging.ERROR, logger="clientcomm.mailing"):
        await app.run_step("mailing.fanout")
    assert sorted(e.client_id for e in events) == ["c3", "c4", "c6"]
    assert {e.state for e in events} == {RecipientState.FAILED}
    assert any(
        receipt.id in r.getMessage() and "staged text" in r.getMessage() for r in caplog.records
    )
    progress = await app.mailings.status(ADMIN, receipt.id)
    assert progress.state is MailingState.FAILED
    assert progress.failure == "staged_text_damaged"
    assert (progress.delivered, progress.failed, progress.pending, progress.cancelled) == (
        2,
        3,
        0,
        0,
    )
    assert progress.done
    assert await count(env.store, MESSAGE_KIND) == 2  # nothing more delivered
    assert await staging_key_alive(app, receipt.id)  # nothing forgotten
    assert await audit_operations(env.store, receipt.id) == [
        "mailing.submitted",
        "mailing.delivered",  # the two copies delivered before the damage
        "mailing.failed",
    ]
    ledger = [e async for e in app.mailings.ledger(ADMIN, receipt.id)]
    assert [e.state for e in ledger].count("delivered") == 2
    assert {(e.state, e.reason) for e in ledger if e.state != "delivered"} == {
        ("failed", "staged_text_damaged")
    }
    # later rounds change nothing: not completed, not cancelled, key still there
    assert await app.run_step("mailing.fanout") == 0
    assert await app.run_step("mailing.fanout") == 0
    again = await app.mailings.status(ADMIN, receipt.id)
    assert again == progress
    assert await staging_key_alive(app, receipt.id)
    updates = [p async for p in app.mailings.follow(ADMIN, receipt.id, until="copies")]
    assert updates[-1].state is MailingState.FAILED


async def test_damaged_staging_key_record_fails_the_mailing(env: Env) -> None:
    app = env.app
    receipt = await app.mailings.submit(ADMIN, Audience.everyone(), TEXT)
    async with env.store.transaction("f1") as tx:
        rec = await tx.get(KEY_RECORD_KIND, staging_owner(receipt.id))
        await tx.update([rec.evolve(data={**rec.data, "keys": {"1": "AAAA"}})])
    await app.run_step("mailing.fanout")
    progress = await app.mailings.status(ADMIN, receipt.id)
    assert progress.state is MailingState.FAILED
    assert progress.failure == "staged_text_damaged"
    assert (progress.delivered, progress.failed, progress.pending) == (0, 5, 0)
    assert await count(env.store, MESSAGE_KIND) == 0
    async with env.store.transaction("f1") as tx:  # the record was not turned into a tombstone
        kept = await tx.get(KEY_RECORD_KIND, staging_owner(receipt.id))
    assert kept.data.get("forgotten_at") is None and kept.data["keys"] == {"1": "AAAA"}


async def test_a_mailing_record_that_does_not_decode_is_left_alone(env: Env) -> None:
    app = env.app
    receipt = await app.mailings.submit(ADMIN, Audience.everyone(), TEXT)
    async with env.store.transaction("f1") as tx:
        rec = await tx.get(MAILING_KIND, receipt.id)
        await tx.update([rec.evolve(data={"junk": True})])
    assert await app.run_step("mailing.fanout") == 0
    assert await recipient_states(env.store) == {"queued": 5}  # not cancelled
    assert await staging_key_alive(app, receipt.id)


# -- what still cancels -------------------------------------------------------------
async def test_explicit_cancel_still_cancels(env: Env) -> None:
    app = env.app
    receipt = await app.mailings.submit(ADMIN, Audience.everyone(), TEXT)
    assert await app.run_step("mailing.fanout", limit=2) == 2
    await app.mailings.cancel(ADMIN, receipt.id)
    await app.run_step("mailing.fanout")
    assert await recipient_states(env.store) == {"delivered": 2, "cancelled": 3}
    progress = await app.mailings.status(ADMIN, receipt.id)
    assert progress.state is MailingState.CANCELLED and progress.failure is None
    assert not await staging_key_alive(app, receipt.id)


async def test_a_real_tombstone_of_the_staging_key_cancels(env: Env) -> None:
    app = env.app
    receipt = await app.mailings.submit(ADMIN, Audience.everyone(), TEXT)
    assert await app.run_step("mailing.fanout", limit=2) == 2
    await app.sealer.provider.forget("f1", staging_owner(receipt.id))
    app.mailings.fanout.forget("f1", receipt.id)
    await app.run_step("mailing.fanout")
    assert await recipient_states(env.store) == {"delivered": 2, "cancelled": 3}
    assert await count(env.store, MESSAGE_KIND) == 2
    assert "mailing.failed" not in await audit_operations(env.store, receipt.id)
