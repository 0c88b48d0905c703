"""Client chats: one chat per client, encrypted messages, read state.

Staff write to a client's chat (a single message, or a mailing copy written by
the mailing worker); the client reads its own chat and replies. Every message
text is sealed for its client (AAD: firm, client, ``"message"``, message id,
``"text"``), so a copy moved to another client or message fails to open.

Through the client-side API a mailing copy is indistinguishable from an
ordinary single message: no recipient list, no mailing id, no count.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from clientcomm.actors import ClientActor, StaffActor
from clientcomm.attachments import AttachmentInfo, AttachmentStore, StoredAttachment
from clientcomm.clock import Clock, SystemClock
from clientcomm.crypto.context import SealContext
from clientcomm.crypto.envelope import OpenRequest, Sealer, SealRequest
from clientcomm.directory.base import Directory
from clientcomm.directory.models import Client, Staff
from clientcomm.errors import InvalidInputError, NotFoundError
from clientcomm.rules.access import (
    AccessPolicy,
    RoleAccessPolicy,
    require_client_access,
    resolve_staff,
)
from clientcomm.rules.readstate import Author, DefaultReadPolicy, ReadPolicy, UnreadFor
from clientcomm.storage.base import Record, Store, Transaction

__all__ = [
    "MESSAGE_KIND",
    "READ_KIND",
    "ChatMessage",
    "ClientMessage",
    "MessageService",
    "build_message_record",
    "validate_text",
]

MESSAGE_KIND = "message"
READ_KIND = "chat.read"
MAX_TEXT = 100_000


def validate_text(text: object, field: str = "text") -> str:
    """A message text: a non-empty string of at most 100,000 characters, no NUL.

    Raises:
        InvalidInputError: otherwise.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(field, "must be a non-empty string")
    if len(text) > MAX_TEXT:
        raise InvalidInputError(field, f"must be at most {MAX_TEXT} characters", value=len(text))
    if "\x00" in text:
        raise InvalidInputError(field, "must not contain NUL characters")
    return text


def text_context(firm_id: str, client_id: str, message_id: str) -> SealContext:
    """Where a message text is sealed: its client, the message id, field ``text``."""
    return SealContext(firm_id, client_id, MESSAGE_KIND, message_id, "text")


def text_contexts(firm_id: str, pairs: Iterable[tuple[str, str]]) -> list[SealContext]:
    """:func:`text_context` for many ``(client_id, message_id)`` pairs."""
    return SealContext.many(firm_id, MESSAGE_KIND, "text", pairs)


def message_data(
    author: Author,
    author_id: str,
    attachments: Sequence[StoredAttachment] = (),
    mailing_id: str | None = None,
) -> dict[str, Any]:
    """The ``data`` of a stored chat message."""
    data: dict[str, Any] = {"author": author.value, "author_id": author_id}
    if attachments:
        data["attachments"] = [a.to_dict() for a in attachments]
    if mailing_id is not None:
        data["mailing_id"] = mailing_id
    return data


def build_message_record(
    *,
    firm_id: str,
    client_id: str,
    message_id: str,
    sealed_text: bytes,
    author: Author,
    author_id: str,
    unread_for: UnreadFor,
    sent_at: datetime,
    attachments: Sequence[StoredAttachment] = (),
    mailing_id: str | None = None,
    shared: dict[str, Any] | None = None,
) -> Record:
    """The stored form of one chat message (the mailing worker builds copies with it).

    ``shared``: a dict the caller builds copies of one batch into; a copy
    without attachments then reuses the first one's ``data`` object, so stores
    serialise it once per batch (records' ``data`` is never mutated).
    """
    if not attachments and shared is not None:
        data = shared.get("data")
        if data is None or data["author_id"] != author_id or data.get("mailing_id") != mailing_id:
            data = shared["data"] = message_data(author, author_id, (), mailing_id)
    else:
        data = message_data(author, author_id, attachments, mailing_id)
    return Record(
        kind=MESSAGE_KIND,
        id=message_id,
        firm_id=firm_id,
        parent=client_id,
        status=unread_for.value,
        data=data,
        body=sealed_text,
        created_at=sent_at,
    )


@attrs.frozen
class ClientMessage:
    """A message as the client sees it."""

    id: str
    from_firm: bool
    text: str = attrs.field(repr=False)
    sent_at: datetime
    attachments: tuple[AttachmentInfo, ...]
    unread: bool
    seq: int


@attrs.frozen
class ChatMessage:
    """A message as staff see it (``mailing_id`` is staff-only information)."""

    id: str
    client_id: str
    author: Author
    author_id: str
    text: str = attrs.field(repr=False)
    sent_at: datetime
    attachments: tuple[AttachmentInfo, ...]
    unread: bool
    seq: int
    mailing_id: str | None = None


def _infos(record: Record) -> tuple[AttachmentInfo, ...]:
    return tuple(AttachmentInfo.from_dict(a) for a in record.data.get("attachments", ()))


def _reader(actor: StaffActor | ClientActor) -> str:
    return f"staff:{actor.staff_id}" if isinstance(actor, StaffActor) else "client"


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
        self._store = store
        self._directory = directory
        self._sealer = sealer
        self._attachments = attachments
        self._clock = clock or SystemClock()
        self._access = access or RoleAccessPolicy()
        self._read = read_policy or DefaultReadPolicy()

    # -- authorisation ---------------------------------------------------------
    async def staff_for(self, actor: StaffActor) -> Staff:
        """The actor's Staff entry. Raises PermissionDeniedError if unknown/inactive."""
        return await resolve_staff(self._directory, actor.firm_id, actor.staff_id, action="chat")

    async def _authorise(self, actor: StaffActor | ClientActor, client_id: str) -> Client:
        if isinstance(actor, ClientActor):
            if actor.client_id != client_id:
                raise NotFoundError("chat", client_id)  # never leak another client's chat
        else:
            staff = await self.staff_for(actor)
            require_client_access(self._access, staff, [client_id], action="chat.read")
        return await self._directory.get_client(actor.firm_id, client_id)

    # -- writing ---------------------------------------------------------------
    async def send(
        self,
        actor: StaffActor | ClientActor,
        client_id: str,
        text: str,
        *,
        attachments: Sequence[Any] = (),
    ) -> str:
        """Write one message to ``client_id``'s chat (staff) or reply (client).

        Returns the message id.

        Raises:
            PermissionDeniedError: staff without access to the client.
            NotFoundError: unknown client (or a client writing to another's chat).
            InvalidInputError: empty/oversized text, bad attachment.
        """
        validate_text(text)
        client = await self._authorise(actor, client_id)
        author = Author.STAFF if isinstance(actor, StaffActor) else Author.CLIENT
        author_id = (
            actor.staff_id
            if isinstance(actor, StaffActor)
            else (actor.contact_id or actor.client_id)
        )
        message_id = uuid.uuid4().hex
        firm_id = actor.firm_id
        inputs = self._attachments.prepare(attachments)
        copies = await self._attachments.store_copies(firm_id, client.id, message_id, inputs)
        try:
            [sealed] = await self._sealer.seal_many(
                [SealRequest(text_context(firm_id, client.id, message_id), text.encode())]
            )
            record = build_message_record(
                firm_id=firm_id,
                client_id=client.id,
                message_id=message_id,
                sealed_text=sealed,
                author=author,
                author_id=author_id,
                unread_for=self._read.unread_for(author, via_mailing=False),
                sent_at=self._clock.now(),
                attachments=copies.stored.get(client.id, ()),
            )
            async with self._store.transaction(firm_id) as tx:
                await tx.insert([record])
                await self._attachments.settle(tx, copies.reservation)
                if author is Author.STAFF:
                    await self._advance_cursor(tx, client.id, _reader(actor), record_id=message_id)
        except BaseException:
            await self._attachments.discard(firm_id, copies)
            raise
        return message_id

    # -- reading ---------------------------------------------------------------
    async def _cursor(self, tx: Transaction, client_id: str, reader: str) -> Record | None:
        return await tx.find(READ_KIND, f"{client_id}|{reader}")

    async def _advance_cursor(
        self, tx: Transaction, client_id: str, reader: str, *, seq: int = 0, record_id: str = ""
    ) -> None:
        if record_id:
            seq = (await tx.get(MESSAGE_KIND, record_id)).seq
        cur = await self._cursor(tx, client_id, reader)
        if cur is None:
            await tx.insert(
                [
                    Record(
                        kind=READ_KIND,
                        id=f"{client_id}|{reader}",
                        firm_id=tx.firm_id,
                        parent=client_id,
                        data={"seq": seq},
                        created_at=self._clock.now(),
                    )
                ]
            )
        elif int(cur.data.get("seq", 0)) < seq:
            await tx.update([cur.evolve(data={"seq": seq})])

    async def unread_count(self, actor: StaffActor | ClientActor, client_id: str) -> int:
        """Unread messages in ``client_id``'s chat for this reader.

        Raises:
            PermissionDeniedError / NotFoundError: as for :meth:`send`.
        """
        await self._authorise(actor, client_id)
        side = UnreadFor.CLIENT if isinstance(actor, ClientActor) else UnreadFor.STAFF
        async with self._store.transaction(actor.firm_id) as tx:
            cur = await self._cursor(tx, client_id, _reader(actor))
            after = int(cur.data.get("seq", 0)) if cur else 0
            return await tx.count(
                MESSAGE_KIND, parent=client_id, status=side.value, after_seq=after
            )

    async def unread_counts(
        self, actor: StaffActor, client_ids: Sequence[str]
    ) -> Mapping[str, int]:
        """Unread counts for a staff member over several chats (one transaction)."""
        staff = await self.staff_for(actor)
        require_client_access(self._access, staff, client_ids, action="chat.read")
        out: dict[str, int] = {}
        async with self._store.transaction(actor.firm_id) as tx:
            for cid in client_ids:
                cur = await self._cursor(tx, cid, _reader(actor))
                after = int(cur.data.get("seq", 0)) if cur else 0
                out[cid] = await tx.count(
                    MESSAGE_KIND, parent=cid, status=UnreadFor.STAFF.value, after_seq=after
                )
        return out

    async def _open(self, firm_id: str, records: Sequence[Record]) -> list[str]:
        plain = await self._sealer.open_many(
            [
                OpenRequest(text_context(firm_id, r.parent or "", r.id), r.body or b"")
                for r in records
            ]
        )
        return [p.decode() for p in plain]

    async def list_for_client(
        self, actor: ClientActor, *, limit: int = 50, before_seq: int = 0, mark_read: bool = True
    ) -> list[ClientMessage]:
        """The client's own chat, newest first; opening marks it read.

        Raises:
            NotFoundError: unknown client.
        """
        await self._authorise(actor, actor.client_id)
        async with self._store.transaction(actor.firm_id) as tx:
            cur = await self._cursor(tx, actor.client_id, "client")
            seen = int(cur.data.get("seq", 0)) if cur else 0
            records = await tx.list(
                MESSAGE_KIND,
                parent=actor.client_id,
                descending=True,
                after_seq=before_seq,
                limit=limit,
            )
        texts = await self._open(actor.firm_id, records)
        out = [
            ClientMessage(
                id=r.id,
                from_firm=r.data["author"] == Author.STAFF.value,
                text=t,
                sent_at=r.created_at,
                attachments=tuple(
                    AttachmentInfo.from_dict(a) for a in r.data.get("attachments", ())
                ),
                unread=r.status == UnreadFor.CLIENT.value and r.seq > seen,
                seq=r.seq,
            )
            for r, t in zip(records, texts, strict=True)
        ]
        if mark_read and records:
            await self.mark_read(actor, actor.client_id, up_to_seq=records[0].seq)
        return out

    async def list_for_staff(
        self,
        actor: StaffActor,
        client_id: str,
        *,
        limit: int = 50,
        before_seq: int = 0,
        mark_read: bool = True,
    ) -> list[ChatMessage]:
        """A client's chat as staff see it, newest first; opening marks it read.

        Raises:
            PermissionDeniedError: no access to the client.
            NotFoundError: unknown client.
        """
        await self._authorise(actor, client_id)
        reader = _reader(actor)
        async with self._store.transaction(actor.firm_id) as tx:
            cur = await self._cursor(tx, client_id, reader)
            seen = int(cur.data.get("seq", 0)) if cur else 0
            records = await tx.list(
                MESSAGE_KIND, parent=client_id, descending=True, after_seq=before_seq, limit=limit
            )
        texts = await self._open(actor.firm_id, records)
        out = [
            ChatMessage(
                id=r.id,
                client_id=client_id,
                author=Author(r.data["author"]),
                author_id=r.data["author_id"],
                text=t,
                sent_at=r.created_at,
                attachments=tuple(
                    AttachmentInfo.from_dict(a) for a in r.data.get("attachments", ())
                ),
                unread=r.status == UnreadFor.STAFF.value and r.seq > seen,
                seq=r.seq,
                mailing_id=r.data.get("mailing_id"),
            )
            for r, t in zip(records, texts, strict=True)
        ]
        if mark_read and records:
            await self.mark_read(actor, client_id, up_to_seq=records[0].seq)
        return out

    async def get_for_client(self, actor: ClientActor, message_id: str) -> ClientMessage:
        """One message of the client's own chat.

        Raises:
            NotFoundError: unknown id, or a message of another client.
        """
        async with self._store.transaction(actor.firm_id) as tx:
            r = await tx.find(MESSAGE_KIND, message_id)
        if r is None or r.parent != actor.client_id:
            raise NotFoundError("message", message_id)
        [text] = await self._open(actor.firm_id, [r])
        return ClientMessage(
            id=r.id,
            from_firm=r.data["author"] == Author.STAFF.value,
            text=text,
            sent_at=r.created_at,
            attachments=_infos(r),
            unread=False,
            seq=r.seq,
        )

    async def mark_read(
        self, actor: StaffActor | ClientActor, client_id: str, *, up_to_seq: int
    ) -> None:
        """Mark the chat read for this reader up to ``up_to_seq``."""
        await self._authorise(actor, client_id)
        async with self._store.transaction(actor.firm_id) as tx:
            await self._advance_cursor(tx, client_id, _reader(actor), seq=up_to_seq)

    async def open_attachment(
        self, actor: StaffActor | ClientActor, message_id: str, attachment_id: str
    ) -> AsyncIterator[bytes]:
        """Stream an attachment's plaintext (an async iterator of bytes).

        Raises:
            NotFoundError: unknown message/attachment or another client's.
            PermissionDeniedError: staff without access.
            IntegrityError: tampered data or a forgotten client key.
        """
        async with self._store.transaction(actor.firm_id) as tx:
            r = await tx.find(MESSAGE_KIND, message_id)
        if r is None or (isinstance(actor, ClientActor) and r.parent != actor.client_id):
            raise NotFoundError("message", message_id)
        client_id = r.parent or ""
        await self._authorise(actor, client_id)
        for a in r.data.get("attachments", ()):
            stored = StoredAttachment.from_dict(a)
            if stored.info.id == attachment_id:
                return self._attachments.open(actor.firm_id, client_id, stored)
        raise NotFoundError("attachment", attachment_id)

    async def delete(self, actor: StaffActor, message_id: str) -> None:
        """Delete one message copy (and its attachments; a shared attachment's
        blob goes when its last copy does). Other clients' copies are untouched.

        Raises:
            NotFoundError: unknown message.
            PermissionDeniedError: no access to the message's client.
        """
        staff = await self.staff_for(actor)
        async with self._store.transaction(actor.firm_id) as tx:
            r = await tx.get(MESSAGE_KIND, message_id)
            require_client_access(self._access, staff, [r.parent or ""], action="message.delete")
            stored = [StoredAttachment.from_dict(a) for a in r.data.get("attachments", ())]
            await tx.delete(MESSAGE_KIND, [message_id])
            orphaned = await self._attachments.release_refs(tx, stored, message_id)
            mailing_id = r.data.get("mailing_id")
            if orphaned and mailing_id:
                mailing = await tx.find("mailing", mailing_id)
                if mailing is not None and mailing.status in ("sending", "scheduled"):
                    orphaned = []  # the mailing still fans out; it cleans up when done
        await self._attachments.discard(actor.firm_id, stored)
        for blob_id in orphaned:
            await self._attachments.blobs.delete(actor.firm_id, blob_id)
