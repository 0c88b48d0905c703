"""Attachments of messages: validation, sealing into the BlobStore, two storage modes.

* :attr:`AttachmentMode.PER_COPY` (default, as seed 000 describes): every
  recipient gets a separately sealed copy of each file, under its own key.
* :attr:`AttachmentMode.SHARED`: the file is sealed **once** (its associated
  data names no client) and each recipient's copy holds only that stream's data
  key, wrapped with the recipient's key. Deleting one copy or forgetting one
  client leaves the others readable; the blob is deleted when its last
  reference (a ``blob.ref`` record) goes. Trade-off: far less storage and
  time, but the ciphertext is shared, so forgetting a client destroys only its
  *key reference*, not the bytes (which stay readable to the other recipients);
  and everyone holds the same data key, so a recipient who extracted it could
  recognise the blob. Per-copy mode has no such coupling.

Crash safety: blob bytes are written *before* the transaction that commits the
records referencing them. So that a crash in between leaves nothing behind, the
blob ids are first recorded in a small **reservation** (a ``blob.intent``
record, committed before the first byte is written); the transaction that
commits the referencing records settles (deletes) it. A reservation still open
after ``reservation_ttl`` belongs to a writer that died: :meth:`AttachmentStore.sweep`
(run by every worker round) claims it, which also makes the late writer's
commit fail, and deletes its blobs. One case is left: a writer stalled for
longer than the TTL that writes a blob *after* the sweep and then crashes
before its own clean-up leaves that blob behind.

A reservation may also name a **key owner** (a mailing's staging key,
``mailing:<id>``, created by the submit that reserved it) and the record
(``holder``) whose commit settles it: the sweep forgets that key too unless the
holder exists, so a submit killed after its staging key was made leaves no live
key behind. The sweep also removes the ``.partial-*`` files of puts killed
mid-write (:meth:`~clientcomm.blobs.filesystem.FileBlobStore.sweep_partial`,
for blob stores that have it), at most every ``partial_sweep_interval``.

Intake (:meth:`AttachmentStore.intake`), before anything is written: the file
name, media type and count rules (:mod:`~clientcomm.attachments.rules`); then
every file is read once, and refused as soon as the bytes read exceed
``max_size`` (not only by its size on disk: a file that grows meanwhile is
refused too) or do not match the declared media type, and handed to the host's
scanner (:class:`~clientcomm.attachments.models.AttachmentScanner`). What is
sealed afterwards is read again and must be the very bytes that were checked
(size and SHA-256), else the write is abandoned and the file refused.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs

from clientcomm.attachments.models import (
    AttachmentInfo,
    AttachmentInput,
    AttachmentMode,
    AttachmentScanner,
    StagedAttachment,
    StoredAttachment,
)
from clientcomm.attachments.records import BlobIntent, BlobRef
from clientcomm.attachments.rules import (
    HEAD_SIZE,
    TEXT_TYPES,
    ContentCheck,
    check_content_type,
    check_filename,
)
from clientcomm.blobs.base import BlobStore
from clientcomm.clock import Clock, SystemClock
from clientcomm.crypto.context import SealContext
from clientcomm.crypto.envelope import Sealer, stream_frame_size
from clientcomm.errors import InvalidInputError
from clientcomm.ids import new_id, worker_id
from clientcomm.records import Records, RecordTx
from clientcomm.storage.base import Store

__all__ = ["DEFAULT_MAX_SIZE", "AttachmentStore", "BlobReservation", "Copies"]

log = logging.getLogger("clientcomm.attachments")

DEFAULT_MAX_SIZE = 25 * 1024 * 1024
_READ = 1024 * 1024
_CACHE_LIMIT = 8 * 1024 * 1024
_SCANNER_DETAIL = 200


@attrs.frozen
class _Prepared:
    """A validated attachment: ``digest`` (SHA-256) is set once its content was
    read and checked (:meth:`AttachmentStore.intake`); ``info.size`` is then
    the size read."""

    info: AttachmentInfo
    content: bytes | Path = attrs.field(repr=False)
    field: str = "attachments"
    digest: bytes | None = attrs.field(default=None, repr=False)


@attrs.frozen
class BlobReservation:
    """Blob ids recorded (committed) before their bytes are written. Settle it
    with :meth:`AttachmentStore.settle` in the transaction that commits the
    records referencing the blobs."""

    intent: BlobIntent

    @property
    def blob_ids(self) -> tuple[str, ...]:
        return self.intent.blobs


@attrs.frozen
class Copies:
    """Per-recipient attachments of one fan-out batch (or one message), the
    shared blobs' reference records to insert with the copies, and the
    reservation of the per-copy blobs written for them."""

    stored: dict[str, tuple[StoredAttachment, ...]]
    refs: list[BlobRef]
    reservation: BlobReservation | None = None

    @property
    def attachments(self) -> list[StoredAttachment]:
        return [a for v in self.stored.values() for a in v]


def _unreadable(field: str, path: Path, exc: OSError) -> InvalidInputError:
    return InvalidInputError(field, f"unreadable: {exc.strerror or exc}", value=str(path))


def _changed(p: _Prepared) -> InvalidInputError:
    return InvalidInputError(
        p.field,
        "changed while being stored (it must not change until submitted)",
        value=p.info.filename,
    )


class _Intake:
    """One file's check pass: reads it (at most ``max_size + 1`` bytes), applies
    the size and content rules and hashes it. ``chunks()`` yields the checked
    pieces; ``failure`` is the refusal, once there is one (it is also raised)."""

    def __init__(self, p: _Prepared, max_size: int) -> None:
        self.p = p
        self.max_size = max_size
        self.size = 0
        self.digest = hashlib.sha256()
        self.failure: InvalidInputError | None = None
        self.done = False
        self._check = ContentCheck(p.info.content_type)
        self._pieces = self._read()

    def _read(self) -> Iterator[bytes]:
        content = self.p.content
        if isinstance(content, bytes):
            view = memoryview(content)
            for start in range(0, len(view), _READ):
                yield bytes(view[start : start + _READ])
            return
        try:
            with content.open("rb") as fh:
                while chunk := fh.read(min(_READ, self.max_size + 1 - self.size)):
                    yield chunk
        except OSError as exc:
            raise _unreadable(self.p.field, content, exc) from None

    def _refuse(self, message: str) -> InvalidInputError:
        self.failure = InvalidInputError(self.p.field, message, value=self.p.info.filename)
        return self.failure

    def chunks(self) -> Iterator[bytes]:
        if self.failure is not None:
            raise self.failure
        try:
            for chunk in self._pieces:
                self.size += len(chunk)
                if self.size > self.max_size:
                    raise self._refuse(
                        f"has more bytes than allowed; the limit is {self.max_size} bytes"
                    )
                reason = self._check.feed(chunk)
                if reason is not None:
                    raise self._refuse(reason)
                self.digest.update(chunk)
                yield chunk
        except InvalidInputError as exc:
            self.failure = exc
            raise
        if self.done:
            return
        if self.size == 0:
            raise self._refuse("is empty")
        reason = self._check.finish()
        if reason is not None:
            raise self._refuse(reason)
        self.done = True

    async def view(self) -> AsyncGenerator[bytes, None]:
        """The chunks, for the scanner (closing it early stops nothing here)."""
        for chunk in self.chunks():
            yield chunk

    def drain(self) -> None:
        """Read and check whatever has not been read yet."""
        for _ in self.chunks():
            pass


def _content_ctx(firm_id: str, owner: str | None, blob_id: str) -> SealContext:
    return SealContext(firm_id, owner, "attachment", blob_id, "content")


class AttachmentStore:
    """Seals attachments into a BlobStore (see module docs for the two modes).

    Args:
        blobs: where sealed bytes go.
        sealer: the envelope service.
        max_size: largest accepted file in bytes (default 25 MiB), counted on
            the bytes read.
        max_count: most files per message (default 20).
        store: where blob reservations are recorded (crash safety, see the
            module docs). Without it no reservation is written.
        clock: for reservation expiry (default: the system clock).
        reservation_ttl: how long a writer may take between reserving blob ids
            and committing the records that reference them (default 1 hour);
            also how long a ``.partial-*`` file must lie untouched before the
            sweep removes it.
        scanner: the host's check of every file before anything is stored
            (:class:`~clientcomm.attachments.models.AttachmentScanner`).
        partial_sweep_interval: how often :meth:`sweep` looks for
            ``.partial-*`` files (default every 15 minutes).
    """

    def __init__(
        self,
        blobs: BlobStore,
        sealer: Sealer,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        max_count: int = 20,
        store: Store | None = None,
        clock: Clock | None = None,
        reservation_ttl: timedelta = timedelta(hours=1),
        scanner: AttachmentScanner | None = None,
        partial_sweep_interval: timedelta = timedelta(minutes=15),
    ) -> None:
        if max_size <= 0 or max_count <= 0:
            raise InvalidInputError("max_size", "limits must be positive")
        if reservation_ttl <= timedelta(0):
            raise InvalidInputError("reservation_ttl", "must be positive")
        if partial_sweep_interval < timedelta(0):
            raise InvalidInputError("partial_sweep_interval", "must not be negative")
        self.blobs = blobs
        self.sealer = sealer
        self.max_size = max_size
        self.max_count = max_count
        self.store = store
        self._records = Records(store) if store is not None else None
        self.clock: Clock = clock or SystemClock()
        self.reservation_ttl = reservation_ttl
        self.scanner = scanner
        self.partial_sweep_interval = partial_sweep_interval
        self._next_partial_sweep: datetime | None = None
        self._owner = worker_id("attachments")

    # -- crash safety: reservations ---------------------------------------------------
    async def reserve(
        self,
        firm_id: str,
        blob_ids: Sequence[str],
        *,
        key_owner: str | None = None,
        holder: tuple[str, str] | None = None,
    ) -> BlobReservation | None:
        """Record ``blob_ids`` (in a transaction of its own) before writing them;
        with ``key_owner``, also the key-provider owner the writer is about to
        create keys for (forgotten by the sweep unless the ``holder`` record,
        ``(kind, id)``, exists by then). Returns None when there is nothing to
        reserve or no store.

        Raises:
            StorageError: the store failed (nothing was written).
        """
        if self._records is None or not (blob_ids or key_owner):
            return None
        now = self.clock.now()
        intent = BlobIntent(
            new_id(),
            tuple(blob_ids),
            now + self.reservation_ttl,
            now,
            key_owner=key_owner,
            holder=holder,
        )
        async with self._records.transaction(firm_id) as tx:
            intent = await tx.insert_one(intent)
        return BlobReservation(intent)

    async def settle(self, tx: RecordTx, reservation: BlobReservation | None) -> None:
        """In the transaction that commits the records referencing the reserved
        blobs: drop the reservation.

        Raises:
            ConflictError: the reservation expired and a sweep took it (its
                blobs are being deleted): roll back.
        """
        if reservation is None:
            return
        await tx.update([reservation.intent])  # version check: a sweep's claim bumped it
        await tx.delete(BlobIntent, [reservation.intent.id])

    async def release(self, firm_id: str, reservation: BlobReservation | None) -> None:
        """Give up a reservation whose records were not committed: delete its
        blobs, forget its key owner's keys, then the reservation itself.

        Nothing is undone when the reservation's ``holder`` record exists (the
        commit took, only its reply was lost).

        Raises:
            StorageError: the store, BlobStore or key provider failed (the
                reservation stays, for the sweep).
        """
        if reservation is None or self._records is None:
            return
        if await self._held(reservation.intent):
            return  # the commit took after all (its reply was lost): nothing to undo
        for blob_id in reservation.blob_ids:
            await self.blobs.delete(firm_id, blob_id)
        if reservation.intent.key_owner is not None:
            await self.sealer.provider.forget(firm_id, reservation.intent.key_owner)
        async with self._records.transaction(firm_id) as tx:
            await tx.delete(BlobIntent, [reservation.intent.id])

    async def sweep(self, *, limit: int = 100) -> int:
        """Clean up after writers that died: delete the blobs of reservations
        open longer than ``reservation_ttl`` (any firm) and forget the staging
        keys they name whose holder record does not exist; and, at most every
        ``partial_sweep_interval``, remove the ``.partial-*`` files of killed
        puts (blob stores with ``sweep_partial``). Claiming a reservation makes
        its late writer's commit fail, so no committed record ever points at a
        deleted blob or a forgotten key. Returns how many reservations and
        partial files were removed.

        Raises:
            StorageError: the store, the BlobStore or the key provider failed
                (run it again).
        """
        if self._records is None:
            return await self._sweep_partial()
        expired, _damaged = await self._records.claim(
            BlobIntent,
            status="open",
            owner=self._owner,
            now=self.clock.now(),
            lease=timedelta(minutes=5),
            limit=limit,
        )
        for intent in expired:
            firm_id = intent.meta.firm_id
            for blob_id in intent.blobs:
                await self.blobs.delete(firm_id, blob_id)
            if intent.key_owner is not None and not await self._held(intent):
                await self.sealer.provider.forget(firm_id, intent.key_owner)
                log.info("forgot staging key %s of a writer that died", intent.key_owner)
            async with self._records.transaction(firm_id) as tx:
                await tx.delete(BlobIntent, [intent.id])
        # A reservation that does not decode names no blob we could trust: it
        # stays claimed (leased again after each lease) and is logged, alone.
        return len(expired) + await self._sweep_partial()

    async def _held(self, intent: BlobIntent) -> bool:
        """Whether the record whose commit settles ``intent`` exists (it should
        not: that commit deletes the reservation)."""
        if intent.holder is None or self._records is None:
            return False
        kind, record_id = intent.holder
        async with self._records.transaction(intent.meta.firm_id) as tx:
            return await tx.raw.find(kind, record_id) is not None

    async def _sweep_partial(self) -> int:
        sweep_partial = getattr(self.blobs, "sweep_partial", None)
        if sweep_partial is None:
            return 0
        now = self.clock.now()
        if self._next_partial_sweep is not None and now < self._next_partial_sweep:
            return 0
        self._next_partial_sweep = now + self.partial_sweep_interval
        removed: int = await sweep_partial(older_than=self.reservation_ttl)
        if removed:
            log.info("removed %d partial blob files of writers that died", removed)
        return removed

    # -- validation --------------------------------------------------------------
    def prepare(self, inputs: Sequence[AttachmentInput]) -> list[_Prepared]:
        """Validate attachments before anything is written, without reading
        their content (:meth:`intake` reads and checks it too).

        Raises:
            InvalidInputError: too many files; a bad file name (empty, path
                parts, control or bidi characters), a bad media type, an empty,
                unreadable or oversized file (``field`` names ``attachments[i]``).
        """
        if len(inputs) > self.max_count:
            raise InvalidInputError("attachments", f"at most {self.max_count} files")
        out: list[_Prepared] = []
        for i, a in enumerate(inputs):
            field = f"attachments[{i}]"
            if not isinstance(a, AttachmentInput):
                raise InvalidInputError(field, "must be an AttachmentInput")
            name = check_filename(a.filename, f"{field}.filename")
            check_content_type(a.content_type, f"{field}.content_type")
            if isinstance(a.content, bytes):
                size = len(a.content)
            else:
                try:
                    if not a.content.is_file():
                        raise InvalidInputError(
                            field, "file not found or not a regular file", value=str(a.content)
                        )
                    size = a.content.stat().st_size
                    with a.content.open("rb"):
                        pass
                except OSError as exc:
                    raise _unreadable(field, a.content, exc) from None
            if size == 0:
                raise InvalidInputError(field, "is empty", value=name)
            if size > self.max_size:
                raise InvalidInputError(
                    field, f"is {size} bytes; the limit is {self.max_size} bytes", value=name
                )
            out.append(
                _Prepared(
                    AttachmentInfo(uuid.uuid4().hex, name, size, a.content_type),
                    a.content,
                    field,
                )
            )
        return out

    async def intake(self, inputs: Sequence[AttachmentInput]) -> list[_Prepared]:
        """:meth:`prepare`, then read each file once: refuse it when the bytes
        read exceed ``max_size``, when it is empty, when its content does not
        match its declared media type (:class:`~clientcomm.attachments.rules.ContentCheck`)
        or when the scanner refuses it. Nothing is written.

        Raises:
            InvalidInputError: as :meth:`prepare`, and for each refusal above
                (``field`` names ``attachments[i]``; a scanner's exception is
                the ``__cause__``).
        """
        return await self.check(self.prepare(inputs))

    async def check(self, prepared: Sequence[_Prepared]) -> list[_Prepared]:
        """The reading half of :meth:`intake`, for files :meth:`prepare` gave
        (already checked ones are returned as they are)."""
        return [p if p.digest is not None else await self._check_one(p) for p in prepared]

    async def _check_one(self, p: _Prepared) -> _Prepared:
        intake = _Intake(p, self.max_size)
        if self.scanner is not None:
            view = intake.view()
            try:
                await self.scanner(p.info.filename, p.info.content_type, view)
            except Exception as exc:
                if intake.failure is not None:
                    raise intake.failure from None
                detail = f"{type(exc).__name__}: {exc}"[:_SCANNER_DETAIL]
                raise InvalidInputError(
                    p.field, f"refused by the scanner ({detail})", value=p.info.filename
                ) from exc
            finally:
                await view.aclose()
        intake.drain()
        return attrs.evolve(
            p, info=attrs.evolve(p.info, size=intake.size), digest=intake.digest.digest()
        )

    def _source(self, p: _Prepared) -> bytes | Iterator[bytes]:
        """What is sealed: the checked bytes, or the checked file read again
        (refused, mid-write, if it is not the same any more)."""
        if p.digest is None:
            raise AssertionError("attachment was not checked")  # pragma: no cover
        return p.content if isinstance(p.content, bytes) else self._reread(p, p.content)

    def _reread(self, p: _Prepared, path: Path) -> Iterator[bytes]:
        size = p.info.size
        total = 0
        digest = hashlib.sha256()
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(min(_READ, size + 1 - total)):
                    total += len(chunk)
                    if total > size:
                        raise _changed(p)
                    digest.update(chunk)
                    yield chunk
        except OSError as exc:
            raise _unreadable(p.field, path, exc) from None
        if total != size or digest.digest() != p.digest:
            raise _changed(p)

    # -- single message (one client) ----------------------------------------------
    async def store_copies(
        self, firm_id: str, client_id: str, message_id: str, prepared: Sequence[_Prepared]
    ) -> Copies:
        """Seal each prepared file for ``client_id`` into its own blob (reserved
        first). Commit the message with :meth:`settle` of ``copies.reservation``
        in its transaction; if that fails, :meth:`discard` the copies.

        Files not checked yet (:meth:`prepare` without :meth:`intake`) are
        checked first, before anything is written.

        Raises:
            InvalidInputError: a file was refused, or changed after its check
                (nothing is left behind).
            KeyDestroyedError: the client was forgotten.
            StorageError: the BlobStore failed (blobs written so far are removed).
        """
        prepared = await self.check(prepared)
        blob_ids = [f"att-{uuid.uuid4().hex}" for _ in prepared]
        reservation = await self.reserve(firm_id, blob_ids)
        out: list[StoredAttachment] = []
        try:
            for p, blob_id in zip(prepared, blob_ids, strict=True):
                sealed = await self.sealer.seal_stream(
                    _content_ctx(firm_id, client_id, blob_id), self._source(p)
                )
                await self.blobs.put(firm_id, blob_id, sealed.chunks)
                out.append(StoredAttachment(p.info, blob_id, AttachmentMode.PER_COPY, sealed.key))
        except BaseException:
            await self.discard(firm_id, Copies({client_id: tuple(out)}, [], reservation))
            raise
        return Copies({client_id: tuple(out)} if out else {}, [], reservation)

    # -- one host stream, checked while it is sealed (portal sharing) -------------
    async def store_stream(
        self,
        firm_id: str,
        client_id: str,
        blob_id: str,
        source: AsyncIterable[bytes],
        *,
        filename: str,
        content_type: str,
        field: str,
        max_size: int | None = None,
    ) -> StoredAttachment:
        """Seal a stream that can be read only once (a host's document) for
        ``client_id`` into the blob ``blob_id`` (reserve it first with
        :meth:`reserve`), checking it on the way: refused as soon as the bytes
        read exceed ``max_size`` (default: this store's), when it is empty,
        or when its content does not match ``content_type``; then the scanner,
        if there is one, reads the sealed blob back (memory stays bounded by a
        frame). A refused stream leaves no blob behind.

        Raises:
            InvalidInputError: a refusal above (``field`` names the document).
            KeyDestroyedError: the client was forgotten.
            StorageError: the BlobStore failed (nothing is left behind).
        """
        limit = self.max_size if max_size is None else max_size
        check = ContentCheck(content_type)
        size = 0

        def refuse(message: str) -> InvalidInputError:
            return InvalidInputError(field, message, value=filename)

        text = content_type.lower() in TEXT_TYPES  # text: every byte is decoded

        async def checked() -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in source:
                if not isinstance(chunk, bytes | bytearray | memoryview):
                    raise refuse("must yield bytes")
                before = size
                size += len(chunk)
                if size > limit:
                    raise refuse(f"has more bytes than allowed; the limit is {limit} bytes")
                if text or before < HEAD_SIZE:  # a binary type's check reads the head only
                    reason = check.feed(bytes(chunk if text else chunk[:HEAD_SIZE]))
                    if reason is not None:
                        raise refuse(reason)
                yield bytes(chunk) if not isinstance(chunk, bytes) else chunk
            if size == 0:
                raise refuse("is empty")
            reason = check.finish()
            if reason is not None:
                raise refuse(reason)

        pieces = checked()
        ctx = _content_ctx(firm_id, client_id, blob_id)
        written = False
        try:
            sealed = await self.sealer.seal_stream(ctx, pieces)
            written = True  # put may have written part before it failed: delete below
            await self.blobs.put(firm_id, blob_id, sealed.chunks)
            info = AttachmentInfo(uuid.uuid4().hex, filename, size, content_type)
            stored = StoredAttachment(info, blob_id, AttachmentMode.PER_COPY, sealed.key)
            if self.scanner is not None:
                view = self.open(firm_id, client_id, stored)
                try:
                    await self.scanner(filename, content_type, view)
                except Exception as exc:
                    detail = f"{type(exc).__name__}: {exc}"[:_SCANNER_DETAIL]
                    raise refuse(f"refused by the scanner ({detail})") from exc
                finally:
                    await view.aclose()  # type: ignore[attr-defined]
        except BaseException:
            if written:
                await self.blobs.delete(firm_id, blob_id)
            raise
        return stored

    # -- mailings ----------------------------------------------------------------
    @staticmethod
    def staged_blob_ids(mailing_id: str, prepared: Sequence[_Prepared]) -> list[str]:
        """The blob ids :meth:`stage` writes for ``prepared`` (to reserve first)."""
        return [f"mail-{mailing_id}-{p.info.id}" for p in prepared]

    async def stage(
        self,
        firm_id: str,
        owner: str,
        mailing_id: str,
        prepared: Sequence[_Prepared],
        mode: AttachmentMode,
        *,
        reservation: BlobReservation | None = None,
    ) -> tuple[list[StagedAttachment], BlobReservation | None]:
        """Seal a mailing's files once, for the staging key ``owner``. In shared
        mode the staged blob *is* the shared blob (sealed without a client).
        Returns the staged files and their reservation (settle it in the
        mailing's transaction): ``reservation`` if given (made by the caller
        with :meth:`reserve` of :meth:`staged_blob_ids`, and released by the
        caller on failure), else a new one.

        Raises:
            InvalidInputError: a file was refused, or changed after its check
                (the blobs written are removed).
            StorageError: the BlobStore failed (the blobs written are removed;
                a reservation made here is released).
        """
        prepared = await self.check(prepared)
        blob_ids = self.staged_blob_ids(mailing_id, prepared)
        own = reservation is None
        if own:
            reservation = await self.reserve(firm_id, blob_ids)
        elif reservation is not None and not set(blob_ids) <= set(reservation.blob_ids):
            raise InvalidInputError("reservation", "does not reserve the staged blobs")
        out: list[StagedAttachment] = []
        try:
            for p, blob_id in zip(prepared, blob_ids, strict=True):
                key = self.sealer.new_stream_key()
                ctx_owner = owner if mode is AttachmentMode.PER_COPY else None
                [ref] = await self.sealer.wrap_stream_keys(firm_id, [(owner, key)])
                frames = self.sealer.seal_chunks(
                    _content_ctx(firm_id, ctx_owner, blob_id), key, self._source(p)
                )
                await self.blobs.put(firm_id, blob_id, frames)
                out.append(StagedAttachment(p.info, blob_id, mode, ref))
        except BaseException:
            await self.discard_staged(
                firm_id, out, force=True, reservation=reservation if own else None
            )
            raise
        return out, reservation

    async def _plain(self, firm_id: str, owner: str, s: StagedAttachment) -> AsyncIterator[bytes]:
        ctx = _content_ctx(firm_id, owner, s.blob_id)
        frames = self.blobs.open(firm_id, s.blob_id, chunk_size=stream_frame_size(s.stream_key))
        async for piece in self.sealer.open_stream(ctx, s.stream_key, frames, key_owner=owner):
            yield piece

    async def copies(
        self,
        firm_id: str,
        owner: str,
        staged: Sequence[StagedAttachment],
        recipients: Sequence[tuple[str, str]],
    ) -> Copies:
        """Make the attachments of one fan-out batch: ``recipients`` are
        ``(client_id, message_id)`` pairs. Per-copy files are re-sealed for
        each client into new blobs; shared files get one wrapped key per
        client and a ``blob.ref`` record each (to insert with the copies).

        Raises:
            KeyDestroyedError: a recipient was forgotten, or the staging key
                (the mailing was cancelled).
            StorageError: the BlobStore failed (blobs written so far are removed).
        """
        if not staged:
            return Copies({}, [])
        now = self.clock.now()
        stored: dict[str, list[StoredAttachment]] = {cid: [] for cid, _ in recipients}
        refs: list[BlobRef] = []
        per_copy = [s for s in staged if s.mode is AttachmentMode.PER_COPY]
        blob_ids = {
            (s.blob_id, cid): f"att-{uuid.uuid4().hex}" for s in per_copy for cid, _ in recipients
        }
        reservation = await self.reserve(firm_id, list(blob_ids.values()))
        try:
            for s in staged:
                if s.mode is AttachmentMode.SHARED:
                    key = await self.sealer.open_stream_key(
                        _content_ctx(firm_id, None, s.blob_id), s.stream_key, key_owner=owner
                    )
                    wrapped = await self.sealer.wrap_stream_keys(
                        firm_id, [(cid, key) for cid, _ in recipients]
                    )
                    for (cid, mid), ref in zip(recipients, wrapped, strict=True):
                        info = attrs.evolve(s.info, id=new_id())  # per copy: unlinkable
                        stored[cid].append(StoredAttachment(info, s.blob_id, s.mode, ref))
                        refs.append(
                            BlobRef(BlobRef.id_for(s.blob_id, mid), s.blob_id, cid, mid, now)
                        )
                    continue
                cached: list[bytes] | None = None
                if s.info.size <= _CACHE_LIMIT:
                    cached = [piece async for piece in self._plain(firm_id, owner, s)]
                keys = [self.sealer.new_stream_key() for _ in recipients]
                wrapped = await self.sealer.wrap_stream_keys(
                    firm_id, [(cid, k) for (cid, _), k in zip(recipients, keys, strict=True)]
                )
                for (cid, _mid), key, ref in zip(recipients, keys, wrapped, strict=True):
                    blob_id = blob_ids[(s.blob_id, cid)]
                    source: Any = cached if cached is not None else self._plain(firm_id, owner, s)
                    frames = self.sealer.seal_chunks(
                        _content_ctx(firm_id, cid, blob_id), key, source
                    )
                    await self.blobs.put(firm_id, blob_id, frames)
                    info = attrs.evolve(s.info, id=new_id())  # per copy: unlinkable
                    stored[cid].append(StoredAttachment(info, blob_id, s.mode, ref))
        except BaseException:
            await self.discard(firm_id, Copies({}, [], reservation))
            raise
        return Copies({cid: tuple(v) for cid, v in stored.items()}, refs, reservation)

    # -- reading -------------------------------------------------------------------
    async def open(
        self, firm_id: str, client_id: str, stored: StoredAttachment
    ) -> AsyncIterator[bytes]:
        """Stream the plaintext of a client's attachment.

        Raises:
            IntegrityError: tampered or moved data; KeyDestroyedError: forgotten client.
            NotFoundError: the blob is gone.
        """
        owner_in_ctx = client_id if stored.mode is AttachmentMode.PER_COPY else None
        ctx = _content_ctx(firm_id, owner_in_ctx, stored.blob_id)
        frames = self.blobs.open(
            firm_id, stored.blob_id, chunk_size=stream_frame_size(stored.stream_key)
        )
        async for piece in self.sealer.open_stream(
            ctx, stored.stream_key, frames, key_owner=client_id
        ):
            yield piece

    # -- cleanup -------------------------------------------------------------------
    async def discard(self, firm_id: str, stored: Copies | Sequence[StoredAttachment]) -> None:
        """Delete per-copy blobs of copies that were not committed, or of a
        deleted message (shared blobs are never deleted here); for uncommitted
        :class:`Copies` also every reserved blob and the reservation."""
        reservation = stored.reservation if isinstance(stored, Copies) else None
        attachments = stored.attachments if isinstance(stored, Copies) else stored
        for a in attachments:
            if a.mode is AttachmentMode.PER_COPY:
                await self.blobs.delete(firm_id, a.blob_id)
        await self.release(firm_id, reservation)

    async def discard_staged(
        self,
        firm_id: str,
        staged: Sequence[StagedAttachment],
        *,
        force: bool = False,
        reservation: BlobReservation | None = None,
    ) -> None:
        """Delete staged per-copy blobs; shared blobs only with ``force`` (the
        mailing never committed, or no copy references them); and the
        reservation of a mailing that never committed."""
        for s in staged:
            if s.mode is AttachmentMode.PER_COPY or force:
                await self.blobs.delete(firm_id, s.blob_id)
        await self.release(firm_id, reservation)

    async def release_refs(
        self, tx: RecordTx, stored: Sequence[StoredAttachment], message_id: str
    ) -> list[str]:
        """Drop a deleted copy's references to shared blobs; returns the blob ids
        no copy references any more (delete them after the transaction commits)."""
        orphaned: list[str] = []
        for a in stored:
            if a.mode is AttachmentMode.SHARED:
                await tx.delete(BlobRef, [BlobRef.id_for(a.blob_id, message_id)])
                if not await tx.count(BlobRef, parent=a.blob_id):
                    orphaned.append(a.blob_id)
        return orphaned
