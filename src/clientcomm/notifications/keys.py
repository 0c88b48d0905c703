"""The per-firm notice MAC key (hardening item 10.2).

What decides who gets a notification and what it says (a fan-out batch's
client ids, a job's address, names and link, an in-app record's client name)
is stored in clear, outside any sealed value: the notices hold no content and
are built long after the sealed values that caused them (a mailing's page key
is forgotten when the mailing completes, possibly before its batches are
expanded). They are MACed instead, with a keyed BLAKE2b under a long-lived
key per firm:

* the key is 32 random bytes, created on first use and stored sealed (an
  envelope for the firm-level key owner :data:`NOTICE_KEY_OWNER`) in the one
  record ``notify.key`` of the firm. Every :class:`~clientcomm.crypto.keys.KeyProvider`
  backend seals it like any client value; key rotation and the firm-wide
  re-wrap reach it by its :class:`~clientcomm.records.SealedField`
  declaration; a master-key rotation re-wraps the owner's key like a client's.
* :class:`NoticeKeys` opens it once per firm and process and caches it, so a
  step pays one look-up per firm, never one per batch or job.
* When the key is created, the firm's notification records written before
  0.2 that can still be delivered or shown (pending batches, pending and
  failed jobs, in-app records) are *adopted*: MACed under the new key in the
  same transaction. From then on a record without a MAC is refused like one
  whose MAC does not match, so stripping a MAC is no way around it.
* The key provider is the anchor: a firm whose ``notify.key`` record is gone
  while the provider still holds a key for :data:`NOTICE_KEY_OWNER` (deleted
  in the database) gets a new key *without* adoption: every record MACed
  under the old one, and every record without a MAC, is refused.

A firm without a key yet (nothing written since 0.2) reads its records as
before: only records without a MAC are accepted
(:class:`~clientcomm.notifications.rules.NoticeKey` with ``secret=None``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import attrs

from clientcomm.clock import Clock, SystemClock
from clientcomm.crypto.context import SealContext
from clientcomm.crypto.envelope import Sealer, SealRequest
from clientcomm.errors import ConflictError, IntegrityError
from clientcomm.notifications.fanout import FANOUT_KIND, FanoutBatch, FanoutStatus, batch_mac
from clientcomm.notifications.records import (
    INAPP_KIND,
    JOB_KIND,
    InAppRecord,
    JobStatus,
    NotifyJob,
    inapp_mac,
    job_mac,
)
from clientcomm.notifications.rules import NoticeKey
from clientcomm.records import REGISTRY, Kind, Meta, Records, RecordTx, SealedField, meta_field
from clientcomm.storage.base import Store

__all__ = [
    "NOTICE_KEY",
    "NOTICE_KEY_ID",
    "NOTICE_KEY_KIND",
    "NOTICE_KEY_OWNER",
    "NoticeKey",
    "NoticeKeyRecord",
    "NoticeKeys",
]

log = logging.getLogger("clientcomm.notifications")

NOTICE_KEY_KIND = "notify.key"
NOTICE_KEY_ID = "notice-key"
NOTICE_KEY_OWNER = "notices:firm"
"""The key-provider "client" whose key seals a firm's notice key (like
``mailing:<id>`` for a mailing's staging)."""

_KEY_SIZE = 32
_ADOPT_PAGE = 500


@attrs.frozen
class NoticeKeyRecord:
    """A firm's notice MAC key, sealed (see module docs)."""

    id: str
    sealed_key: bytes = attrs.field(repr=False)
    created_at: datetime
    meta: Meta = meta_field()


NOTICE_KEY = REGISTRY.register(
    Kind(
        NOTICE_KEY_KIND,
        NoticeKeyRecord,
        "the firm's notice MAC key (one per firm), sealed",
        columns={"id": "id", "created_at": "created_at", "body": "sealed_key"},
        meanings={
            "id": f"always {NOTICE_KEY_ID!r}",
            "body": f"32 random bytes, sealed for the owner {NOTICE_KEY_OWNER!r}",
        },
        sealed=(SealedField("sealed_key"),),
        owner=lambda r: NOTICE_KEY_OWNER,
        integrity={
            "sealed_key": "sealed: the key MACing the firm's notification records",
            "id": "aad: the sealed key's context names the record (moving it fails to open)",
            "created_at": "unbound: when the key was made (shown nowhere)",
        },
        capability="notifications",
    )
)


def _context(firm_id: str) -> SealContext:
    return SealContext(firm_id, NOTICE_KEY_OWNER, NOTICE_KEY_KIND, NOTICE_KEY_ID, "key")


class NoticeKeys:
    """The firm notice keys of one process: opened (or created) once per firm,
    then cached. Call its methods outside an open transaction on the same
    store (they open their own, and the key provider may too)."""

    def __init__(self, store: Store, sealer: Sealer, *, clock: Clock | None = None) -> None:
        self._records = Records(store)
        self._sealer = sealer
        self._clock: Clock = clock or sealer.clock or SystemClock()
        self._cache: dict[str, bytes] = {}
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"NoticeKeys(firms={len(self._cache)})"

    async def get(self, firm_id: str, *, create: bool = True) -> NoticeKey:
        """The firm's notice key; created (adopting the firm's older records)
        if it has none and ``create``; otherwise ``NoticeKey(None)`` for a
        firm without a key (its records were all written before 0.2).

        Raises:
            IntegrityError: the key record does not open (edited, another
                firm's, its owner's key forgotten).
            ConfigurationError: the key provider's master key is the wrong one.
            StorageError: the backend failed.
        """
        return (await self._get(firm_id, create))[0]

    async def ensure(self, firm_id: str) -> tuple[NoticeKey, bool]:
        """:meth:`get` with ``create``; also says whether the key was created
        by this call (then the firm's older records were adopted: values read
        before have new versions)."""
        return await self._get(firm_id, True)

    async def _get(self, firm_id: str, create: bool) -> tuple[NoticeKey, bool]:
        cached = self._cache.get(firm_id)
        if cached is not None:
            return NoticeKey(cached), False
        record = await self._records.find(NoticeKeyRecord, firm_id, NOTICE_KEY_ID)
        if record is not None:
            return NoticeKey(await self._open(firm_id, record)), False
        provider = self._sealer.provider
        known = NOTICE_KEY_OWNER in await provider.current_versions(firm_id, [NOTICE_KEY_OWNER])
        if not create and not known:
            return NoticeKey(None), False
        async with self._lock:  # one creation per firm in this process
            cached = self._cache.get(firm_id)
            if cached is not None:
                return NoticeKey(cached), False
            return await self._create(firm_id, adopt=not known)

    async def _open(self, firm_id: str, record: NoticeKeyRecord) -> bytes:
        secret = await self._sealer.open(_context(firm_id), record.sealed_key)
        if len(secret) != _KEY_SIZE:
            raise IntegrityError("the firm's notice key has the wrong size", firm_id=firm_id)
        self._cache[firm_id] = secret
        return secret

    async def _create(self, firm_id: str, *, adopt: bool) -> tuple[NoticeKey, bool]:
        secret = os.urandom(_KEY_SIZE)
        [sealed] = await self._sealer.seal_many([SealRequest(_context(firm_id), secret)])
        record = NoticeKeyRecord(NOTICE_KEY_ID, sealed, self._clock.now())
        adopted = 0
        try:
            async with self._records.transaction(firm_id) as tx:
                await tx.insert([record])
                if adopt:
                    adopted = await _adopt(tx, secret)
        except ConflictError:
            # created concurrently by another process: use theirs
            found = await self._records.find(NoticeKeyRecord, firm_id, NOTICE_KEY_ID)
            if found is None:
                raise
            return NoticeKey(await self._open(firm_id, found)), False
        if adopt:
            log.info("firm %s: notice key created; %d older records adopted", firm_id, adopted)
        else:
            log.error(
                "firm %s: the notice key record is missing although its key owner exists"
                " (deleted?): a new key was made; records MACed before are refused",
                firm_id,
            )
        self._cache[firm_id] = secret
        return NoticeKey(secret), True


async def _adopt(tx: RecordTx, secret: bytes) -> int:
    """MAC the firm's records written before 0.2 that can still be delivered
    or shown; records that do not decode are left (they fail as before)."""
    plans: Sequence[tuple[str, str | None, type[Any], Callable[[bytes, Any], bytes]]] = (
        (FANOUT_KIND, FanoutStatus.PENDING.value, FanoutBatch, batch_mac),
        (JOB_KIND, JobStatus.PENDING.value, NotifyJob, job_mac),
        (JOB_KIND, JobStatus.FAILED.value, NotifyJob, job_mac),
        (INAPP_KIND, None, InAppRecord, inapp_mac),
    )
    adopted = 0
    for kind_name, status, cls, mac in plans:
        kind = tx.registry.of(cls)
        after = 0
        while True:
            page = await tx.raw.list(kind_name, status=status, after_seq=after, limit=_ADOPT_PAGE)
            if not page:
                break
            after = page[-1].seq
            changed = []
            for raw in page:
                try:
                    value = kind.decode(raw)
                except IntegrityError:
                    continue
                if not value.mac:
                    changed.append(attrs.evolve(value, mac=mac(secret, value)))
            if changed:
                await tx.update(changed)
                adopted += len(changed)
            if len(page) < _ADOPT_PAGE:
                break
    return adopted
