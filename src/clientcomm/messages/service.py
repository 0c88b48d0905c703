"""Client chats: one chat per client, encrypted messages, read state.

Staff write to a client's chat (a single message, or a mailing copy written by
the mailing worker); the client reads its own chat and replies. Every message
text is sealed for its client (AAD: firm, client, ``"message"``, message id,
``"text"``), so a copy moved to another client or message fails to open.

Through the client-side API a mailing copy is indistinguishable from an
ordinary single message: no recipient list, no mailing id, no count.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import attrs

from clientcomm.actors import ClientActor, StaffActor, require_actor
from clientcomm.attachments.service import AttachmentStore
from clientcomm.audit import AuditTrail
from clientcomm.audit import append as audit
from clientcomm.clock import Clock, SystemClock
from clientcomm.crypto.envelope import OpenRequest, Sealer, SealRequest
from clientcomm.directory.base import Directory
from clientcomm.directory.models import Client, Staff
from clientcomm.errors import ConflictError, IntegrityError, InvalidInputError, NotFoundError
from clientcomm.evidence.models import DeliveryEvidence
from clientcomm.evidence.service import gather
from clientcomm.ids import new_id
from clientcomm.messages.models import ChatMessage, ClientMessage, MessageList
from clientcomm.messages.records import MESSAGE_KIND, MessageRecord, ReadCursor
from clientcomm.messages.rules import (
    authenticated,
    encode_body,
    sealed_plaintext,
    text_context,
    validate_subject,
    validate_text,
)
from clientcomm.records import Records, RecordTx
from clientcomm.rules.access import (
    AccessPolicy,
    as_policy,
    require_reach,
    resolve_staff,
)
from clientcomm.rules.readstate import Author, DefaultReadPolicy, ReadPolicy, UnreadFor
from clientcomm.rules.text import MAX_SIGNED_64
from clientcomm.storage.base import Store

__all__ = ["MessageGuard", "MessageService"]

log = logging.getLogger("clientcomm.messages")

MessageGuard = Callable[[RecordTx, MessageRecord], Any]
"""A check another capability registers before a message copy is deleted:
``await guard(tx, message)`` returns the shared blob ids it still needs (the
mailing that is still fanning out), which are then not deleted."""


def _check_int(value: object, field: str, *, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= MAX_SIGNED_64:
        raise InvalidInputError(field, f"must be an integer from {low} to 2**63-1")


def _reader(actor: StaffActor | ClientActor) -> str:
    return f"staff:{actor.staff_id}" if isinstance(actor, StaffActor) else "client"


_SEND_ATTEMPTS = 5
"""How often :meth:`MessageService.send` writes again after a concurrent
change of the sender's read cursor."""


class MessageService:
    """Chats between a firm and its clients."""

    def __init__(
        self,
        *,
        store: Store,
        directory: Directory,
        sealer: Sealer,
        attachments: AttachmentStore,
        clock: Clock | None = None,
        access: AccessPolicy | None = None,
        read_policy: ReadPolicy | None = None,
    ) -> None:
        self._records = Records(store)
        self._directory = directory
        self._sealer = sealer
        self._attachments = attachments
        self._clock = clock or SystemClock()
        self._access = as_policy(access)
        self._read = read_policy or DefaultReadPolicy()
        self._keep_blobs: list[MessageGuard] = []
        self._audit = AuditTrail(store, clock=self._clock)

    def keep_blobs_while(self, guard: MessageGuard) -> None:
        """Register a :data:`MessageGuard` (the mailing service does, so that
        deleting a copy during the fan-out leaves the shared blob alone)."""
        self._keep_blobs.append(guard)

    async def blobs_kept(self, tx: RecordTx, message: MessageRecord) -> set[str]:
        """The blobs of ``message`` that must outlive it (what the registered
        guards keep: a shared blob its mailing still fans out), for erasure."""
        kept: set[str] = set()
        for guard in self._keep_blobs:
            kept.update(await guard(tx, message))
        return kept

    # -- authorisation ---------------------------------------------------------
    async def staff_for(self, actor: StaffActor) -> Staff:
        """The actor's Staff entry. Raises PermissionDeniedError if unknown/inactive
        or not a staff actor."""
        require_actor(actor, StaffActor, action="chat")
        return await resolve_staff(self._directory, actor.firm_id, actor.staff_id, action="chat")

    async def _authorise(
        self, actor: StaffActor | ClientActor, client_id: str, action: str = "chat.read"
    ) -> Client:
        require_actor(actor, StaffActor, ClientActor, action=action)
        if isinstance(actor, ClientActor):
            if actor.client_id != client_id:
                raise NotFoundError("chat", client_id)  # never leak another client's chat
        else:
            staff = await self.staff_for(actor)
            # out of reach answers as a missing client does (no existence oracle)
            require_reach(self._access, staff, [client_id], action=action)
        return await self._directory.get_client(actor.firm_id, client_id)

    # -- writing ---------------------------------------------------------------
    async def send(
        self,
        actor: StaffActor | ClientActor,
        client_id: str,
        text: str,
        *,
        attachments: Sequence[Any] = (),
        subject: str | None = None,
    ) -> str:
        """Write one message to ``client_id``'s chat (staff) or reply (client).

        ``subject`` is an optional subject line, sealed with the text.
        Returns the message id.

        Raises:
            PermissionDeniedError: not an actor, or unknown/inactive staff.
            NotFoundError: unknown client, or one outside the staff member's
                access (the same answer), or a client writing to another's chat.
            InvalidInputError: empty/oversized text, a subject that is not one
                line of at most 200 characters, bad attachment.
        """
        validate_text(text)
        subject = validate_subject(subject)
        client = await self._authorise(actor, client_id, "chat.write")
        author = Author.STAFF if isinstance(actor, StaffActor) else Author.CLIENT
        author_id = (
            actor.staff_id
            if isinstance(actor, StaffActor)
            else (actor.contact_id or actor.client_id)
        )
        message_id = new_id()
        firm_id = actor.firm_id
        inputs = await self._attachments.intake(attachments)
        copies = await self._attachments.store_copies(firm_id, client.id, message_id, inputs)
        try:
            message = MessageRecord(
                id=message_id,
                client_id=client.id,
                unread_for=self._read.unread_for(author, via_mailing=False),
                sealed_text=b"",
                sent_at=self._clock.now(),
                author=author,
                author_id=author_id,
                attachments=copies.stored.get(client.id, ()),
            )
            # the metadata are sealed with the text; only stripped descriptors stay in clear
            [sealed] = await self._sealer.seal_many(
                [
                    SealRequest(
                        text_context(firm_id, client.id, message_id),
                        sealed_plaintext(message, encode_body(text, subject)),
                    )
                ]
            )
            message = attrs.evolve(
                message,
                sealed_text=sealed,
                attachments=tuple(a.stripped() for a in message.attachments),
            )
            for attempt in range(_SEND_ATTEMPTS):
                try:
                    async with self._records.transaction(firm_id) as tx:
                        await tx.insert([message])
                        await audit(
                            tx,
                            subject=f"message:{message_id}",
                            operation="message.sent",
                            actor=actor.staff_id
                            if isinstance(actor, StaffActor)
                            else f"client:{actor.client_id}",
                            at=message.sent_at,
                            client=client.id,
                            objects=[f"contact:{actor.contact_id}"]
                            if isinstance(actor, ClientActor) and actor.contact_id
                            else [],
                            author=author.value,
                            attachment_count=len(message.attachments),
                        )
                        await self._attachments.settle(tx, copies.reservation)
                        if author is Author.STAFF:
                            stored = await tx.get(MessageRecord, message_id)
                            await self._advance_cursor(
                                tx, client.id, _reader(actor), stored.meta.seq
                            )
                    break
                except ConflictError:
                    # The sender's read cursor was created or moved by a
                    # concurrent send of the same staff member to the same
                    # client (the message id is new, so nothing else can
                    # conflict): nothing was written, write it all again.
                    if attempt == _SEND_ATTEMPTS - 1:
                        raise
        except BaseException:
            await self._attachments.discard(firm_id, copies)
            raise
        return message_id

    # -- reading ---------------------------------------------------------------
    async def _seen(self, tx: RecordTx, client_id: str, reader: str) -> int:
        cursor = await tx.find(ReadCursor, ReadCursor.id_for(client_id, reader))
        return cursor.seq if cursor else 0

    async def _advance_cursor(self, tx: RecordTx, client_id: str, reader: str, seq: int) -> None:
        cursor = await tx.find(ReadCursor, ReadCursor.id_for(client_id, reader))
        if cursor is None:
            await tx.insert(
                [
                    ReadCursor(
                        ReadCursor.id_for(client_id, reader), client_id, seq, self._clock.now()
                    )
                ]
            )
        elif cursor.seq < seq:
            opened = {k: v for k, v in cursor.opened.items() if v > seq}
            await tx.update([attrs.evolve(cursor, seq=seq, opened=opened)])

    async def unread_count(self, actor: StaffActor | ClientActor, client_id: str) -> int:
        """Unread messages in ``client_id``'s chat for this reader.

        Raises:
            PermissionDeniedError / NotFoundError: as for :meth:`send`.
        """
        await self._authorise(actor, client_id)
        side = UnreadFor.CLIENT if isinstance(actor, ClientActor) else UnreadFor.STAFF
        async with self._records.transaction(actor.firm_id) as tx:
            after = await self._seen(tx, client_id, _reader(actor))
            return await tx.count(
                MessageRecord, parent=client_id, status=side.value, after_seq=after
            )

    async def unread_counts(
        self, actor: StaffActor, client_ids: Sequence[str]
    ) -> Mapping[str, int]:
        """Unread counts for a staff member over several chats (one transaction).

        Raises:
            NotFoundError: the first of ``client_ids`` (in order) that does not
                exist or is outside the actor's access (the same answer for both).
        """
        staff = await self.staff_for(actor)
        client_ids = list(client_ids)
        known = {c.id for c in await self._directory.list_clients(actor.firm_id, ids=client_ids)}
        for cid in client_ids:
            require_reach(self._access, staff, [cid], action="chat.read")
            if cid not in known:
                raise NotFoundError("client", cid)
        out: dict[str, int] = {}
        reader = _reader(actor)
        async with self._records.transaction(actor.firm_id) as tx:
            for cid in client_ids:
                after = await self._seen(tx, cid, reader)
                out[cid] = await tx.count(
                    MessageRecord, parent=cid, status=UnreadFor.STAFF.value, after_seq=after
                )
        return out

    async def _open(
        self, firm_id: str, messages: Sequence[MessageRecord]
    ) -> list[tuple[MessageRecord, str | None, str]]:
        """Open messages: each as its sealed value authenticates it, with its
        subject and text (:func:`~clientcomm.messages.rules.authenticated`).

        Raises:
            IntegrityError: a sealed value or a stored value checked against it
                was tampered with.
        """
        plain = await self._sealer.open_many(
            [OpenRequest(text_context(firm_id, m.client_id, m.id), m.sealed_text) for m in messages]
        )
        return [authenticated(m, p) for m, p in zip(messages, plain, strict=True)]

    async def _page(
        self, actor: StaffActor | ClientActor, client_id: str, limit: int, before_seq: int
    ) -> tuple[int, list[tuple[MessageRecord, str | None, str]], tuple[str, ...]]:
        """The reader's cursor, the page's messages that open (each as its
        sealed value authenticates it, with subject and text), and the ids of
        those that do not (each fails alone, logged)."""
        _check_int(limit, "limit", low=1)
        _check_int(before_seq, "before_seq", low=0)
        kind = self._records.registry.of(MessageRecord)
        unreadable: list[str] = []
        messages: list[MessageRecord] = []
        async with self._records.transaction(actor.firm_id) as tx:
            seen = await self._seen(tx, client_id, _reader(actor))
            raw = await tx.raw.list(
                kind.name, parent=client_id, descending=True, after_seq=before_seq, limit=limit
            )
        for record in raw:
            try:
                messages.append(kind.decode(record))
            except IntegrityError:
                unreadable.append(record.id)
        plain = await self._sealer.open_many(
            [
                OpenRequest(text_context(actor.firm_id, m.client_id, m.id), m.sealed_text)
                for m in messages
            ],
            return_exceptions=True,
        )
        opened: list[tuple[MessageRecord, str | None, str]] = []
        for m, p in zip(messages, plain, strict=True):
            if isinstance(p, IntegrityError):
                unreadable.append(m.id)
                continue
            try:
                opened.append(authenticated(m, p))
            except IntegrityError:
                unreadable.append(m.id)
        for mid in unreadable:
            log.error("message %s of client %s does not open; left out", mid, client_id)
        return seen, opened, tuple(unreadable)

    async def list_for_client(
        self, actor: ClientActor, *, limit: int = 50, before_seq: int = 0, mark_read: bool = True
    ) -> MessageList[ClientMessage]:
        """The client's own chat, newest first; opening marks it read.

        A stored message that does not open (tampered with, damaged) is left
        out and logged, alone: its id is in the result's ``unreadable``.

        Raises:
            NotFoundError: unknown client.
            PermissionDeniedError: not a client's actor.
        """
        require_actor(actor, ClientActor, action="chat.read")
        await self._authorise(actor, actor.client_id)
        seen, opened, unreadable = await self._page(actor, actor.client_id, limit, before_seq)
        out = [
            ClientMessage(
                id=m.id,
                from_firm=m.author is Author.STAFF,
                text=t,
                sent_at=m.sent_at,
                attachments=tuple(a.info for a in m.attachments),
                unread=m.unread_for is UnreadFor.CLIENT and m.meta.seq > seen,
                seq=m.meta.seq,
                subject=subj,
            )
            for m, subj, t in opened
        ]
        if mark_read and opened:
            await self.mark_read(actor, actor.client_id, up_to_seq=opened[0][0].meta.seq)
        return MessageList(out, unreadable)

    async def list_for_staff(
        self,
        actor: StaffActor,
        client_id: str,
        *,
        limit: int = 50,
        before_seq: int = 0,
        mark_read: bool = True,
    ) -> MessageList[ChatMessage]:
        """A client's chat as staff see it, newest first; opening marks it read.

        A stored message that does not open (tampered with, damaged) is left
        out and logged, alone: its id is in the result's ``unreadable``.

        Raises:
            PermissionDeniedError: not a staff actor, or unknown/inactive staff.
            NotFoundError: unknown client, or one outside the actor's access.
        """
        require_actor(actor, StaffActor, action="chat.read")
        await self._authorise(actor, client_id)
        seen, opened, unreadable = await self._page(actor, client_id, limit, before_seq)
        out = [
            ChatMessage(
                id=m.id,
                client_id=client_id,
                author=m.author,
                author_id=m.author_id,
                text=t,
                sent_at=m.sent_at,
                attachments=tuple(a.info for a in m.attachments),
                unread=m.unread_for is UnreadFor.STAFF and m.meta.seq > seen,
                seq=m.meta.seq,
                mailing_id=m.mailing_id,
                subject=subj,
            )
            for m, subj, t in opened
        ]
        if mark_read and opened:
            await self.mark_read(actor, client_id, up_to_seq=opened[0][0].meta.seq)
        return MessageList(out, unreadable)

    async def get_for_client(self, actor: ClientActor, message_id: str) -> ClientMessage:
        """One message of the client's own chat.

        Raises:
            NotFoundError: unknown id, or a message of another client.
            PermissionDeniedError: not a client's actor.
        """
        require_actor(actor, ClientActor, action="chat.read")
        cursor_id = ReadCursor.id_for(actor.client_id, "client")
        async with self._records.transaction(actor.firm_id) as tx:
            m = await tx.find(MessageRecord, message_id)
            cursor = await tx.find(ReadCursor, cursor_id)
        if m is None or m.client_id != actor.client_id:
            raise NotFoundError("message", message_id)
        [(m, subject, text)] = await self._open(actor.firm_id, [m])
        seq = m.meta.seq
        if (
            m.unread_for is UnreadFor.CLIENT
            and seq > (cursor.seq if cursor else 0)
            and m.id not in (cursor.opened if cursor else {})
        ):
            # opened alone past the cursor: its first opening is recorded, once
            async with self._records.transaction(actor.firm_id) as tx:
                cursor = await tx.find(ReadCursor, cursor_id)
                if cursor is None:
                    now = self._clock.now()
                    await tx.insert([ReadCursor(cursor_id, m.client_id, 0, now, {m.id: seq})])
                    await self._audit_read(tx, actor, [m.id], via="message")
                elif cursor.seq < seq and m.id not in cursor.opened:
                    await tx.update([attrs.evolve(cursor, opened={**cursor.opened, m.id: seq})])
                    await self._audit_read(tx, actor, [m.id], via="message")
                # else: a concurrent read recorded it meanwhile
        return ClientMessage(
            id=m.id,
            from_firm=m.author is Author.STAFF,
            text=text,
            sent_at=m.sent_at,
            attachments=tuple(a.info for a in m.attachments),
            unread=False,
            seq=m.meta.seq,
            subject=subject,
        )

    async def mark_read(
        self, actor: StaffActor | ClientActor, client_id: str, *, up_to_seq: int
    ) -> None:
        """Mark the chat read for this reader up to ``up_to_seq``.

        Raises:
            InvalidInputError: ``up_to_seq`` is not an integer from 0 to 2**63-1.
        """
        _check_int(up_to_seq, "up_to_seq", low=0)
        await self._authorise(actor, client_id)
        async with self._records.transaction(actor.firm_id) as tx:
            cursor = await tx.find(ReadCursor, ReadCursor.id_for(client_id, _reader(actor)))
            await self._advance_cursor(tx, client_id, _reader(actor), up_to_seq)
            before = cursor.seq if cursor else 0
            if isinstance(actor, ClientActor) and up_to_seq > before:
                opened = set(cursor.opened) if cursor else set()
                await self._record_reads(tx, actor, before, up_to_seq, opened)

    async def _record_reads(
        self, tx: RecordTx, actor: ClientActor, after: int, up_to: int, opened: set[str]
    ) -> None:
        """Audit the messages that became read for the client (seq in ``after``
        .. ``up_to``, unread for the client, not ``opened`` alone before): one
        ``message.read`` entry per 500 messages, in the transaction that moves
        the cursor."""
        chunk = 500
        while True:
            raw = await tx.raw.list(
                MESSAGE_KIND,
                parent=actor.client_id,
                status=UnreadFor.CLIENT.value,
                after_seq=after,
                limit=chunk,
            )
            ids = [r.id for r in raw if r.seq <= up_to and r.id not in opened]
            await self._audit_read(tx, actor, ids, via="chat")
            if len(raw) < chunk or raw[-1].seq >= up_to:
                return
            after = raw[-1].seq

    async def _audit_read(
        self, tx: RecordTx, actor: ClientActor, ids: Sequence[str], *, via: str
    ) -> None:
        if not ids:
            return
        contact = [f"contact:{actor.contact_id}"] if actor.contact_id else []
        await audit(
            tx,
            subject=f"client:{actor.client_id}",
            operation="message.read",
            actor=f"client:{actor.client_id}",
            at=self._clock.now(),
            client=actor.client_id,
            objects=[*contact, *(f"message:{i}" for i in ids)],
            count=len(ids),
            via=via,
        )

    async def open_attachment(
        self, actor: StaffActor | ClientActor, message_id: str, attachment_id: str
    ) -> AsyncIterator[bytes]:
        """Stream an attachment's plaintext (an async iterator of bytes).

        Raises:
            NotFoundError: unknown message/attachment, another client's, or one
                outside the staff member's access (the same answer).
            PermissionDeniedError: not an actor, or unknown/inactive staff.
            IntegrityError: tampered data or a forgotten client key.
        """
        require_actor(actor, StaffActor, ClientActor, action="attachment.open")
        # the actor first (the same answer for any id), then the message
        staff = await self.staff_for(actor) if isinstance(actor, StaffActor) else None
        async with self._records.transaction(actor.firm_id) as tx:
            m = await tx.find(MessageRecord, message_id)
        if m is None or (isinstance(actor, ClientActor) and m.client_id != actor.client_id):
            raise NotFoundError("message", message_id)
        if staff is not None:  # out of reach answers as a missing message
            require_reach(
                self._access,
                staff,
                [m.client_id],
                action="attachment.open",
                kind="message",
                id=message_id,
            )
        await self._authorise(actor, m.client_id, "attachment.open")
        [(m, _, _)] = await self._open(actor.firm_id, [m])  # the descriptors it authenticates
        for stored in m.attachments:
            if stored.info.id == attachment_id:
                return self._attachments.open(actor.firm_id, m.client_id, stored)
        raise NotFoundError("attachment", attachment_id)

    async def evidence(self, actor: StaffActor, message_id: str) -> DeliveryEvidence:
        """Proof of delivery of one message sent to a client (a single message
        or a mailing copy): copy stored, e-mail notices accepted by the SMTP
        server (or failed, or pending), first opened by the client, and
        whatever later capabilities' evidence sources add
        (:mod:`clientcomm.evidence`; ``.to_json()`` exports it).

        The message's metadata are authenticated against its sealed value
        first; pending audit entries are chained first, so the entries the
        evidence cites have their chain positions and hashes. A notice or
        batch record that cannot be read is listed in ``problems`` (the rest
        of the evidence stands).

        Raises:
            PermissionDeniedError: not a staff actor, or unknown/inactive staff.
            NotFoundError: unknown message, or one outside the actor's
                ``message.evidence`` access (the same answer).
            IntegrityError: the message was tampered with (its stored values
                differ from its sealed ones, or it does not decode).
            KeyDestroyedError: the client was forgotten.
        """
        staff = await self.staff_for(actor)
        kind = self._records.registry.of(MessageRecord)
        async with self._records.transaction(actor.firm_id) as tx:
            raw = (await tx.raw.get_many(kind.name, [message_id])).get(message_id)
        if raw is None or raw.parent is None:
            raise NotFoundError("message", message_id)
        # out of reach answers as a missing message, before anything is decoded
        require_reach(
            self._access,
            staff,
            [raw.parent],
            action="message.evidence",
            kind="message",
            id=message_id,
        )
        [(m, _, _)] = await self._open(actor.firm_id, [kind.decode(raw)])
        await self._audit.chain(actor.firm_id)
        return await gather(
            firm_id=actor.firm_id,
            message=m,
            records=self._records,
            audit=self._audit,
            now=self._clock.now(),
        )

    async def delete(self, actor: StaffActor, message_id: str) -> None:
        """Delete one message copy (and its attachments; a shared attachment's
        blob goes when its last copy does). Other clients' copies are untouched.

        Raises:
            NotFoundError: unknown message, or one outside the actor's access.
            PermissionDeniedError: not a staff actor, or unknown/inactive staff.
        """
        staff = await self.staff_for(actor)
        async with self._records.transaction(actor.firm_id) as tx:
            m = await tx.find(MessageRecord, message_id)
            if m is None:
                raise NotFoundError("message", message_id)
            require_reach(
                self._access,
                staff,
                [m.client_id],
                action="message.delete",
                kind="message",
                id=message_id,
            )
            await tx.delete(MessageRecord, [message_id])
            await audit(
                tx,
                subject=f"message:{message_id}",
                operation="message.deleted",
                actor=actor.staff_id,
                at=self._clock.now(),
                client=m.client_id,
                objects=[f"mailing:{m.mailing_id}"] if m.mailing_id else [],
                attachment_count=len(m.attachments),
            )
            orphaned = await self._attachments.release_refs(tx, m.attachments, message_id)
            for guard in self._keep_blobs:
                if orphaned:
                    keep = set(await guard(tx, m))
                    orphaned = [b for b in orphaned if b not in keep]
        await self._attachments.discard(actor.firm_id, m.attachments)
        for blob_id in orphaned:
            await self._attachments.blobs.delete(actor.firm_id, blob_id)
