"""Retention and erasure (and the client data export) as one service,
``app.compliance``: a firm's retention policy, host-set retention dates, which
clients are due, erasing a client, and the ``clients.erase`` sweep.

These are host functions: they take a firm id and an actor name for the audit
trail and check no permission; authorise before you call (usually for a
firm's administrators or a back-office job).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from clientcomm.audit import append as audit
from clientcomm.compliance.erasure import left_behind
from clientcomm.compliance.records import (
    POLICY_ID,
    ClientRetention,
    ErasureJob,
    ErasureStatus,
    FirmRetention,
    PolicyStatus,
    Tombstone,
)
from clientcomm.compliance.rules import RetentionPolicy, erasure_due, retain_until
from clientcomm.crypto.keys import validate_key_owner
from clientcomm.crypto.retention import check_retention
from clientcomm.errors import ConflictError, InvalidInputError, NotFoundError, RetentionError
from clientcomm.records import Records

if TYPE_CHECKING:
    from clientcomm.app import ClientComm

__all__ = ["ComplianceService", "DueClient"]

log = logging.getLogger("clientcomm.compliance")

SWEEP_INTERVAL = timedelta(days=1)
"""How often the ``clients.erase`` step sweeps a firm with a policy."""


@attrs.frozen
class DueClient:
    """A client whose retention ended: its last activity (None when a
    host-set date decided) and the end of its retention."""

    client_id: str
    last_activity: datetime | None
    retain_until: datetime


def _aware(field: str, value: object) -> None:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidInputError(field, "must be a timezone-aware datetime")


class ComplianceService:
    """Retention, erasure and export over one app's backends (``app.compliance``)."""

    def __init__(self, app: ClientComm) -> None:
        self._app = app
        self._records = Records(app.store)

    # -- the policy --------------------------------------------------------------
    async def set_policy(
        self, firm_id: str, policy: RetentionPolicy | None, *, actor: str = "system"
    ) -> None:
        """Set a firm's retention policy (``None`` removes it: nothing of the
        firm becomes due by period any more). The next ``clients.erase`` round
        sweeps the firm. Audited as ``retention.policy_set``.

        Raises:
            InvalidInputError: ``policy`` is not a RetentionPolicy or None.
        """
        validate_key_owner("firm_id", firm_id)
        if policy is not None and not isinstance(policy, RetentionPolicy):
            raise InvalidInputError("policy", "must be a RetentionPolicy or None")
        now = self._app.clock.now()
        async with self._records.transaction(firm_id) as tx:
            current = await tx.find(FirmRetention, POLICY_ID)
            if policy is None:
                if current is not None:
                    await tx.delete(FirmRetention, [POLICY_ID])
            elif current is None:
                await tx.insert([FirmRetention(POLICY_ID, policy.years, now, actor, due_at=now)])
            else:
                await tx.update(
                    [
                        attrs.evolve(
                            current,
                            years=policy.years,
                            set_by=actor,
                            due_at=now,
                            meta=attrs.evolve(current.meta, lease_owner=None, lease_until=None),
                        )
                    ]
                )
            await audit(
                tx,
                subject=f"firm:{firm_id}",
                operation="retention.policy_set",
                actor=actor,
                at=now,
                years=None if policy is None else policy.years,
                removed=policy is None,
            )

    async def policy(self, firm_id: str) -> RetentionPolicy | None:
        """A firm's retention policy, or None."""
        found = await self._records.find(FirmRetention, firm_id, POLICY_ID)
        return None if found is None else RetentionPolicy(found.years)

    async def set_retention_date(
        self,
        firm_id: str,
        client_id: str,
        keep_until: datetime | None,
        *,
        actor: str = "system",
    ) -> None:
        """Set until when one client's records are kept (replacing the policy's
        period for it; ``None`` clears it). Audited as ``retention.date_set``.

        Raises:
            InvalidInputError: a naive datetime or a bad id.
        """
        validate_key_owner("firm_id", firm_id)
        validate_key_owner("client_id", client_id)
        if keep_until is not None:
            _aware("keep_until", keep_until)
        now = self._app.clock.now()
        async with self._records.transaction(firm_id) as tx:
            current = await tx.find(ClientRetention, client_id)
            if current is not None:
                await tx.delete(ClientRetention, [client_id])
            if keep_until is not None:
                await tx.insert([ClientRetention(client_id, client_id, keep_until, actor, now)])
            await audit(
                tx,
                subject=f"client:{client_id}",
                operation="retention.date_set",
                actor=actor,
                at=now,
                client=client_id,
                keep_until=None if keep_until is None else keep_until.isoformat(),
            )

    async def last_activity(self, firm_id: str, client_id: str) -> datetime | None:
        """The time of the client's newest record (a message, a read cursor,
        any client kind with an indexed client column), or None."""
        newest: datetime | None = None
        async with self._records.transaction(firm_id) as tx:
            for kind in self._records.registry.client_kinds():
                if kind.client_column is None or kind.cls is ClientRetention:
                    continue
                filters: dict[str, Any] = {kind.client_column: client_id}
                [*last] = await tx.raw.list(kind.name, limit=1, descending=True, **filters)
                if last and (newest is None or last[0].created_at > newest):
                    newest = last[0].created_at
        return newest

    async def retain_until(self, firm_id: str, client_id: str) -> datetime | None:
        """Until when the client's records are kept under the firm's policy or
        the host-set date (None when neither keeps them). The sealer's
        retention rule, if the app has one, is checked on top of this when the
        keys go."""
        return (await self._retention(firm_id, client_id))[1]

    async def _retention(
        self, firm_id: str, client_id: str
    ) -> tuple[datetime | None, datetime | None]:
        """The client's last activity (None when a host date decides) and the
        end of its retention."""
        validate_key_owner("firm_id", firm_id)
        validate_key_owner("client_id", client_id)
        async with self._records.transaction(firm_id) as tx:
            stored = await tx.find(FirmRetention, POLICY_ID)
            date = await tx.find(ClientRetention, client_id)
        policy = None if stored is None else RetentionPolicy(stored.years)
        if date is not None:
            return None, retain_until(policy, None, date.keep_until)
        last = await self.last_activity(firm_id, client_id)
        return last, retain_until(policy, last)

    async def due(self, firm_id: str) -> list[DueClient]:
        """The clients whose retention has ended and who are not erased or
        being erased: the Directory's clients of the firm, and clients with a
        host-set date (a client the host already removed from its Directory
        is found by its date only; erase it with :meth:`erase`)."""
        validate_key_owner("firm_id", firm_id)
        now = self._app.clock.now()
        ids = {c.id for c in await self._app.directory.list_clients(firm_id)}
        async for r in self._records.iterate(ClientRetention, firm_id):
            ids.add(r.client_id)
        out: list[DueClient] = []
        for client_id in sorted(ids):
            if await self._records.find(ErasureJob, firm_id, client_id) is not None:
                continue
            last, until = await self._retention(firm_id, client_id)
            if until is not None and erasure_due(until, now):
                out.append(DueClient(client_id, last, until))
        return out

    # -- erasure -----------------------------------------------------------------
    async def erase(
        self,
        firm_id: str,
        client_id: str,
        *,
        actor: str = "system",
        override: bool = False,
        reason: str = "request",
    ) -> ErasureJob:
        """Erase a client: refuse while its retention runs (the policy or the
        host's date, then the sealer's retention rule) unless ``override``;
        destroy its keys (:meth:`ClientComm.forget_client`, audited as
        ``client.forgotten``); queue the job that deletes its records and
        blobs (the ``clients.erase`` step), audited as
        ``client.erasure_queued`` with ``override`` and ``retain_until``.
        Returns the job (the existing one if the client's erasure was queued
        already; calling again after a crash resumes where it stopped; calling
        again after it finished walks again if records were filed under the
        client since, audited with reason ``left_behind``).

        Raises:
            RetentionError: the records must still be kept (nothing destroyed
                or written).
            InvalidInputError: a bad id.
            StorageError: a backend failed (call again).
        """
        validate_key_owner("firm_id", firm_id)
        validate_key_owner("client_id", client_id)
        existing = await self._records.find(ErasureJob, firm_id, client_id)
        if existing is not None:
            if existing.status is ErasureStatus.DONE and await left_behind(self._records, existing):
                return await self._walk_again(existing)
            return existing
        now = self._app.clock.now()
        until = await self.retain_until(firm_id, client_id)
        check_retention(until, now, firm_id=firm_id, client_id=client_id, override=override)
        await self._app.forget_client(firm_id, client_id, actor=actor, override=override)
        job = ErasureJob(client_id, client_id, now, actor, reason, override, until)
        try:
            async with self._records.transaction(firm_id) as tx:
                await audit(
                    tx,
                    subject=f"client:{client_id}",
                    operation="client.erasure_queued",
                    actor=actor,
                    at=now,
                    client=client_id,
                    reason=reason,
                    override=override,
                    retain_until=None if until is None else until.isoformat(),
                )
                return await tx.insert_one(job)
        except ConflictError:  # queued concurrently
            return await self._records.get(ErasureJob, firm_id, client_id)

    async def _walk_again(self, job: ErasureJob) -> ErasureJob:
        """Queue a finished erasure again: records were filed under the
        client after it finished (a writer whose key cache outlived the
        forgetting, by at most its revalidation time)."""
        now = self._app.clock.now()
        again = attrs.evolve(
            job, status=ErasureStatus.PENDING, kind=None, after_seq=0, finished_at=None
        )
        try:
            async with self._records.transaction(job.meta.firm_id) as tx:
                await audit(
                    tx,
                    subject=f"client:{job.client_id}",
                    operation="client.erasure_queued",
                    actor=job.actor,
                    at=now,
                    client=job.client_id,
                    reason="left_behind",
                    override=job.override,
                    retain_until=None if job.retain_until is None else job.retain_until.isoformat(),
                )
                return await tx.update_one(again)
        except ConflictError:
            return await self._records.get(ErasureJob, job.meta.firm_id, job.client_id)

    async def erasure_status(self, firm_id: str, client_id: str) -> ErasureJob:
        """A client's erasure job as it stands.

        Raises:
            NotFoundError: the client's erasure was never queued.
        """
        return await self._records.get(ErasureJob, firm_id, client_id)

    async def tombstone(self, firm_id: str, client_id: str) -> Tombstone | None:
        """The tombstone of an erased client, or None."""
        return await self._records.find(Tombstone, firm_id, client_id)

    async def sweep(self, *, limit: int = 10) -> int:
        """One retention sweep of each of up to ``limit`` firms whose sweep is
        due (the first half of the ``clients.erase`` step): every due client
        is erased with reason ``"policy"``. A client the sealer's retention
        rule still keeps is logged and left (it stays due); one failing
        client never stops the others. Returns firms swept plus clients queued."""
        now = self._app.clock.now()
        policies, _ = await self._records.claim(
            FirmRetention,
            status=PolicyStatus.ACTIVE,
            owner=self._app.worker_id,
            now=now,
            lease=self._app.lease,
            limit=limit,
        )
        done = 0
        for stored in policies:
            firm_id = stored.meta.firm_id
            try:
                due = await self.due(firm_id)
            except Exception:
                log.exception("retention sweep of firm %s failed", firm_id)
                continue
            for client in due:
                try:
                    await self.erase(firm_id, client.client_id, reason="policy")
                    done += 1
                except RetentionError:
                    log.warning(
                        "client %s of firm %s is due by policy but the retention rule keeps it",
                        client.client_id,
                        firm_id,
                    )
                except Exception:
                    log.exception(
                        "erasure of client %s of firm %s failed", client.client_id, firm_id
                    )
            try:
                async with self._records.transaction(firm_id) as tx:
                    await tx.update(
                        [
                            attrs.evolve(
                                stored,
                                due_at=now + SWEEP_INTERVAL,
                                last_sweep=now,
                                meta=attrs.evolve(stored.meta, lease_owner=None, lease_until=None),
                            )
                        ]
                    )
            except (ConflictError, NotFoundError):
                pass  # the policy was changed meanwhile: swept again at its new due time
            done += 1
        return done

    # -- export ------------------------------------------------------------------
    def export(
        self, firm_id: str, client_id: str, *, actor: str = "system"
    ) -> AsyncIterator[bytes]:
        """Everything stored for one client, decrypted, as zip bytes (see
        :func:`clientcomm.compliance.export.export_client`)."""
        from clientcomm.compliance.export import export_client

        return export_client(self._app, firm_id, client_id, actor=actor)
