"""An in-memory postal provider for tests: records orders, lets a test move
letters through production (:meth:`MemoryPostalProvider.advance`) and can be
told to fail (:meth:`MemoryPostalProvider.fail_next`)."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Self

import attrs

from clientcomm.errors import ConflictError, InvalidInputError, NotFoundError
from clientcomm.letters.models import LetterProblem
from clientcomm.postal.base import (
    LetterState,
    LetterStatus,
    PostalBatch,
    PostalCapabilities,
    PostalOrder,
)
from clientcomm.postal.rules import check_batch

__all__ = ["MemoryPostalProvider", "batch_fingerprint", "tracking_id"]


def batch_fingerprint(batch: PostalBatch) -> str:
    """A digest of the batch's print file, letters and options (same batch id
    with the same fingerprint is a retry, not a conflict)."""
    h = hashlib.sha256(batch.print_file.data)
    h.update(repr((batch.letters, batch.options)).encode())
    return h.hexdigest()


def tracking_id(batch_id: str, letter_id: str) -> str:
    """A deterministic test tracking id in the format of Deutsche Post's
    registered mail (``RR`` + 9 digits + ``DE``)."""
    digits = int(hashlib.sha256(f"{batch_id}/{letter_id}".encode()).hexdigest(), 16) % 10**9
    return f"RR{digits:09d}DE"


@attrs.define
class _Entry:
    batch: PostalBatch
    fingerprint: str
    order: PostalOrder


class MemoryPostalProvider:
    """Faithful in-memory :class:`~clientcomm.postal.base.PostalProvider`.

    Args:
        capabilities: what every firm gets.
        per_firm: firms with other capabilities (e.g. ``available=False``).
    """

    name = "memory"

    def __init__(
        self,
        capabilities: PostalCapabilities | None = None,
        *,
        per_firm: Mapping[str, PostalCapabilities] | None = None,
    ) -> None:
        self._caps = capabilities or PostalCapabilities()
        self._per_firm = dict(per_firm or {})
        self._orders: dict[tuple[str, str], _Entry] = {}
        self._failures: deque[tuple[str, Exception]] = deque()
        self.calls: list[tuple[str, str]] = []
        """(operation, batch_id) of every call that reached the provider."""

    def fail_next(self, operation: str, error: Exception) -> None:
        """Make the next call of ``operation`` (``order``, ``cancel``, ``status``,
        ``validate``, ``capabilities``) raise ``error`` before doing anything."""
        self._failures.append((operation, error))

    def _maybe_fail(self, operation: str) -> None:
        for i, (op, err) in enumerate(self._failures):
            if op == operation:
                del self._failures[i]
                raise err

    @property
    def orders(self) -> list[PostalBatch]:
        """Every batch ordered, in order."""
        return [e.batch for e in self._orders.values()]

    async def capabilities(self, firm_id: str) -> PostalCapabilities:
        self._maybe_fail("capabilities")
        return self._per_firm.get(firm_id, self._caps)

    async def validate(self, batch: PostalBatch) -> tuple[LetterProblem, ...]:
        self._maybe_fail("validate")
        return check_batch(await self.capabilities(batch.firm_id), batch)

    async def order(self, batch: PostalBatch) -> PostalOrder:
        self._maybe_fail("order")
        self.calls.append(("order", batch.batch_id))
        fingerprint = batch_fingerprint(batch)
        existing = self._orders.get((batch.firm_id, batch.batch_id))
        if existing is not None:
            if existing.fingerprint != fingerprint:
                raise ConflictError(f"batch {batch.batch_id!r} was ordered with other content")
            return existing.order
        problems = check_batch(self._per_firm.get(batch.firm_id, self._caps), batch)
        if problems:
            raise InvalidInputError(
                "batch", "; ".join(str(p) for p in problems[:5]), value=len(problems)
            )
        order = PostalOrder(
            batch.firm_id,
            batch.batch_id,
            f"mem-{fingerprint[:12]}",
            tuple(
                LetterStatus(letter.letter_id, letter.contact_id, LetterState.ORDERED)
                for letter in batch.letters
            ),
        )
        self._orders[(batch.firm_id, batch.batch_id)] = _Entry(batch, fingerprint, order)
        return order

    def _entry(self, firm_id: str, batch_id: str) -> _Entry:
        entry = self._orders.get((firm_id, batch_id))
        if entry is None:
            raise NotFoundError("postal_batch", batch_id)
        return entry

    async def cancel(self, firm_id: str, batch_id: str) -> PostalOrder:
        self._maybe_fail("cancel")
        entry = self._entry(firm_id, batch_id)
        states = {s.state for s in entry.order.letters}
        if states == {LetterState.CANCELLED}:
            return entry.order
        if not entry.order.cancellable:
            raise ConflictError(f"batch {batch_id!r} is in production and cannot be cancelled")
        entry.order = attrs.evolve(
            entry.order,
            letters=tuple(
                attrs.evolve(s, state=LetterState.CANCELLED) for s in entry.order.letters
            ),
        )
        return entry.order

    async def status(self, firm_id: str, batch_id: str) -> PostalOrder:
        self._maybe_fail("status")
        return self._entry(firm_id, batch_id).order

    def advance(
        self,
        firm_id: str,
        batch_id: str,
        state: LetterState,
        *,
        letter_ids: tuple[str, ...] | None = None,
        detail: str = "",
    ) -> PostalOrder:
        """Test hook: the provider moved letters (all by default) to ``state``;
        registered letters that are posted get tracking ids."""
        entry = self._entry(firm_id, batch_id)
        registered = entry.batch.options.registered
        letters = []
        for s in entry.order.letters:
            if letter_ids is None or s.letter_id in letter_ids:
                tracking = s.tracking_id
                if state is LetterState.POSTED and registered:
                    tracking = tracking or tracking_id(batch_id, s.letter_id)
                s = attrs.evolve(s, state=state, tracking_id=tracking, detail=detail)
            letters.append(s)
        entry.order = attrs.evolve(entry.order, letters=tuple(letters))
        return entry.order

    async def aclose(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
