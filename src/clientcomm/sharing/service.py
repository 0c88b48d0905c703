"""Portal sharing (seed 001): documents with and without a message, folders and
channels, messages, ending a share, expiry, the download log, client uploads.

Every call names its actor and is authorised before anything of the Store is
read or written:

* an actor-only refusal (wrong actor type, unknown or inactive staff, no
  "client portal" permission: the ``share.*`` / ``portal.*`` actions of
  :mod:`clientcomm.rules.access`) is a :class:`PermissionDeniedError` with the
  reason, the same for existing and missing ids;
* an object out of reach (a case file whose clients the staff member may not
  reach, another client's folder, channel, share or message, another firm's
  anything) is the very :class:`NotFoundError` a missing id gets;
* a staff member who reaches the case file but is neither its handler nor one
  of its assistants may read, but not share: a :class:`PermissionDeniedError`
  naming why (:func:`~clientcomm.sharing.rules.sharer_refusal`).

Writing a share: the documents are checked and sealed for the client while
they stream into the BlobStore (bounded memory, one pass:
:meth:`~clientcomm.attachments.AttachmentStore.store_stream`), their blob ids
reserved first (a ``blob.intent``); then **one transaction** writes the share
records, the message, their audit records and the notices (the outbox), and
settles the reservation. A process killed in between leaves an open
reservation that ``attachments.sweep`` reclaims with its blobs; a refused
document leaves nothing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs

from clientcomm.actors import ClientActor, StaffActor, require_actor
from clientcomm.attachments import AttachmentStore
from clientcomm.attachments.models import StoredAttachment
from clientcomm.attachments.rules import check_content_type, check_filename
from clientcomm.audit import append as audit
from clientcomm.clock import Clock
from clientcomm.crypto.envelope import OpenRequest, Sealer, SealRequest
from clientcomm.directory.base import Directory
from clientcomm.directory.models import CaseFile, Staff
from clientcomm.errors import (
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from clientcomm.ids import new_id
from clientcomm.messages.records import ReadCursor
from clientcomm.messages.rules import decode_body, encode_body, validate_text
from clientcomm.notifications.keys import NoticeKeys
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.models import NotificationEvent, NotificationKind, RecipientPlan
from clientcomm.notifications.outbox import enqueue, prepare
from clientcomm.notifications.rules import client_contact_recipients, staff_recipient
from clientcomm.records import Records, RecordTx, bound
from clientcomm.rules.access import AccessPolicy, acting_staff
from clientcomm.rules.readstate import Author, DefaultReadPolicy, ReadPolicy, UnreadFor
from clientcomm.rules.text import check_identifier
from clientcomm.sharing import rules
from clientcomm.sharing.models import (
    Channel,
    Folder,
    PlaceKind,
    PortalDocument,
    PortalMessage,
    SharedDocument,
    ShareMarker,
    ShareOrigin,
    ShareReceipt,
)
from clientcomm.sharing.records import (
    DownloadLog,
    PlaceRecord,
    PortalMessageRecord,
    ShareRecord,
    ShareStatus,
    ShareTimer,
    TimerWhat,
)
from clientcomm.steps import each_alone
from clientcomm.storage.base import Store

__all__ = ["DEFAULT_MAX_DOCUMENT_SIZE", "SharingService"]

log = logging.getLogger("clientcomm.sharing")

DEFAULT_MAX_DOCUMENT_SIZE = 1024 * 1024 * 1024  # 1 GiB
_READ = 1024 * 1024
_MAX_DOCUMENTS = 100
_MAX_IDS = 1000
_PARALLEL = 2  # documents sealed and written at once (see _store_documents)


def _reader(actor: StaffActor | ClientActor) -> str:
    return f"staff:{actor.staff_id}" if isinstance(actor, StaffActor) else "client"


def _actor_name(actor: StaffActor | ClientActor) -> str:
    return actor.staff_id if isinstance(actor, StaffActor) else f"client:{actor.client_id}"


async def _chunks(content: object, field: str) -> AsyncIterator[bytes]:
    """A document's content as an async stream of bytes (read once)."""
    if isinstance(content, bytes | bytearray | memoryview):
        view = memoryview(content)
        for start in range(0, len(view), _READ):
            yield bytes(view[start : start + _READ])
        return
    if isinstance(content, Path):
        try:
            with content.open("rb") as fh:
                while piece := fh.read(_READ):
                    yield piece
        except OSError as exc:
            raise InvalidInputError(field, f"unreadable: {exc.strerror or exc}") from None
        return
    read = getattr(content, "read", None)
    if callable(read):
        while piece := read(_READ):
            yield piece
        return
    if isinstance(content, AsyncIterable):
        async for piece in content:
            yield piece
        return
    if isinstance(content, Iterable) and not isinstance(content, str):
        for piece in content:
            yield piece
        return
    raise InvalidInputError(field, "content must be bytes, a stream of bytes, a file or a path")


@attrs.frozen
class _Checked:
    doc: PortalDocument
    filename: str
    field: str


class SharingService:
    """The client portal's documents and messages (``app.shares``).

    Args:
        max_document_size: largest accepted document in bytes (default 1 GiB),
            counted on the bytes read.
        reminder_before: how long before a share's expiry its sharer is
            reminded (``None``: never).
    """

    def __init__(
        self,
        *,
        store: Store,
        directory: Directory,
        sealer: Sealer,
        attachments: AttachmentStore,
        clock: Clock,
        access: AccessPolicy,
        links: LinkTemplates,
        notice_keys: NoticeKeys,
        read_policy: ReadPolicy | None = None,
        max_document_size: int = DEFAULT_MAX_DOCUMENT_SIZE,
        reminder_before: timedelta | None = timedelta(days=3),
    ) -> None:
        if isinstance(max_document_size, bool) or not isinstance(max_document_size, int):
            raise InvalidInputError("max_document_size", "must be a positive integer")
        if max_document_size <= 0:
            raise InvalidInputError("max_document_size", "must be a positive integer")
        if reminder_before is not None and reminder_before <= timedelta(0):
            raise InvalidInputError("reminder_before", "must be positive (or None)")
        self._records = Records(store)
        self._directory = directory
        self._sealer = sealer
        self._attachments = attachments
        self._clock = clock
        self._access = access
        self._links = links
        self._notice_keys = notice_keys
        self._read = read_policy or DefaultReadPolicy()
        self.max_document_size = max_document_size
        self.reminder_before = reminder_before

    # -- authorisation -------------------------------------------------------------
    async def _staff(self, actor: object, action: str) -> Staff:
        """The acting staff member, allowed ``action`` as such (before any read)."""
        return await acting_staff(self._directory, self._access, actor, action)

    async def _case(self, staff: Staff, case_id: object, action: str, *, sharer: bool) -> CaseFile:
        """The case file, if ``staff`` reaches it (every client of it it may do
        ``action`` on; one out of reach answers as a missing file)."""
        case_id = check_identifier(case_id, "case_id")
        try:
            case = await self._directory.get_case_file(staff.firm_id, case_id)
        except NotFoundError:
            raise NotFoundError("case_file", case_id) from None
        if not all(self._access.allows(staff, action, c) for c in case.clients):
            raise NotFoundError("case_file", case_id)
        if sharer:
            refusal = rules.sharer_refusal(staff, case)
            if refusal is not None:
                raise PermissionDeniedError(refusal, actor=staff.id, action=action)
        return case

    async def _client_case(self, actor: ClientActor, case_id: object) -> CaseFile:
        case_id = check_identifier(case_id, "case_id")
        try:
            case = await self._directory.get_case_file(actor.firm_id, case_id)
        except NotFoundError:
            raise NotFoundError("case_file", case_id) from None
        if not case.has_client(actor.client_id):
            raise NotFoundError("case_file", case_id)
        return case

    async def _target_client(self, case: CaseFile, client_id: object) -> str:
        if client_id is not None:
            client_id = check_identifier(client_id, "client_id")
        contacts = await self._directory.list_contacts(case.firm_id, list(case.clients))
        return rules.choose_client(case, rules.portal_clients(case, contacts), client_id)

    @staticmethod
    def _id(value: object, field: str) -> str:
        return check_identifier(value, field)

    async def _place(self, firm_id: str, place_id: str, kind: PlaceKind) -> PlaceRecord:
        """A folder or channel, authenticated; a missing one, one of the other
        kind and one that does not open answer alike (NotFoundError)."""
        what = rules.place_kind_name(kind)
        async with self._records.transaction(firm_id) as tx:
            record = await tx.find(PlaceRecord, place_id)
        if record is None or record.kind is not kind:
            raise NotFoundError(what, place_id)
        try:
            await self._place_name(firm_id, record)
        except IntegrityError:
            log.error("%s %s does not open; answered as missing", what, place_id)
            raise NotFoundError(what, place_id) from None
        return record

    async def _place_name(self, firm_id: str, record: PlaceRecord) -> str:
        plain = await self._sealer.open(rules.place_context(firm_id, record), record.sealed)
        return rules.place_authenticated(record, plain)

    async def _reach_place(
        self,
        actor: StaffActor | ClientActor,
        place_id: object,
        kind: PlaceKind,
        action: str,
        *,
        sharer: bool = False,
    ) -> tuple[PlaceRecord, str, Staff | None, CaseFile | None]:
        """A place the actor may use: the client's own, or one of a case file
        the staff member reaches (every refusal answers as a missing place)."""
        what = rules.place_kind_name(kind)
        place_id = self._id(place_id, f"{what}_id")
        staff: Staff | None = None
        if isinstance(actor, StaffActor):
            staff = await self._staff(actor, action)
        else:
            require_actor(actor, ClientActor, StaffActor, action=action)
        async with self._records.transaction(actor.firm_id) as tx:
            record = await tx.find(PlaceRecord, place_id)
        if record is None or record.kind is not kind:
            raise NotFoundError(what, place_id)
        case: CaseFile | None = None
        if isinstance(actor, ClientActor):
            if record.client_id != actor.client_id:
                raise NotFoundError(what, place_id)
        else:
            assert staff is not None
            if not self._access.allows(staff, action, record.client_id):
                raise NotFoundError(what, place_id)
            try:
                case = await self._case(staff, record.case_id, action, sharer=False)
            except NotFoundError:
                raise NotFoundError(what, place_id) from None
            if sharer:
                refusal = rules.sharer_refusal(staff, case)
                if refusal is not None:
                    raise PermissionDeniedError(refusal, actor=staff.id, action=action)
        try:
            name = await self._place_name(actor.firm_id, record)
        except IntegrityError:
            log.error("%s %s does not open; answered as missing", what, place_id)
            raise NotFoundError(what, place_id) from None
        return record, name, staff, case

    # -- folders and channels -----------------------------------------------------
    async def list_folders(
        self, actor: StaffActor | ClientActor, case_id: str, *, client_id: str | None = None
    ) -> list[Folder]:
        """The portal folders of a case file (one client's with ``client_id``;
        a client sees its own only). Seed 001: "Wählen Sie nun den Ordner aus".

        Raises:
            PermissionDeniedError: not an actor, unknown/inactive staff, no portal permission.
            NotFoundError: unknown case file, or out of reach (the same answer).
        """
        places = await self._list_places(actor, case_id, client_id, PlaceKind.FOLDER)
        return [
            Folder(r.id, r.client_id, r.case_id, n, r.created_at, r.created_by) for r, n in places
        ]

    async def list_channels(
        self, actor: StaffActor | ClientActor, case_id: str, *, client_id: str | None = None
    ) -> list[Channel]:
        """The message channels of a case file (as :meth:`list_folders`)."""
        places = await self._list_places(actor, case_id, client_id, PlaceKind.CHANNEL)
        return [
            Channel(r.id, r.client_id, r.case_id, n, r.created_at, r.created_by) for r, n in places
        ]

    async def _list_places(
        self, actor: object, case_id: object, client_id: object, kind: PlaceKind
    ) -> list[tuple[PlaceRecord, str]]:
        if isinstance(actor, ClientActor):
            case = await self._client_case(actor, case_id)
            clients = [actor.client_id]
        else:
            staff = await self._staff(actor, "share.view")
            case = await self._case(staff, case_id, "share.view", sharer=False)
            clients = list(case.clients)
        if client_id is not None:
            client_id = self._id(client_id, "client_id")
            if client_id not in clients:
                raise InvalidInputError(
                    "client_id", "is not a client of the case file", value=client_id
                )
            clients = [client_id]
        found: list[PlaceRecord] = []
        async with self._records.transaction(case.firm_id) as tx:
            for cid in clients:
                found += await tx.list(
                    PlaceRecord, parent=cid, ref=case.id, status=kind.value, decode_errors="skip"
                )
        return await self._named(case.firm_id, found)

    async def _named(
        self, firm_id: str, found: Sequence[PlaceRecord]
    ) -> list[tuple[PlaceRecord, str]]:
        plain = await self._sealer.open_many(
            [OpenRequest(rules.place_context(firm_id, r), r.sealed) for r in found],
            return_exceptions=True,
        )
        out: list[tuple[PlaceRecord, str]] = []
        for r, p in zip(found, plain, strict=True):
            try:
                if isinstance(p, IntegrityError):
                    raise p
                out.append((r, rules.place_authenticated(r, p)))
            except IntegrityError:
                log.error("portal place %s does not open; left out", r.id)
        return out

    async def create_folder(
        self, actor: StaffActor, case_id: str, name: str, *, client_id: str | None = None
    ) -> Folder:
        """Create a portal folder for a client of the case file (``client_id``
        required when several of its clients have portal access).

        Raises:
            PermissionDeniedError: as :meth:`list_folders`, or neither handler nor assistant.
            NotFoundError: unknown or out-of-reach case file.
            InvalidInputError: bad name; ``client_id`` missing, not of the file
                or without portal access.
        """
        r = await self._create_place(actor, case_id, name, client_id, PlaceKind.FOLDER)
        return Folder(r.id, r.client_id, r.case_id, name.strip(), r.created_at, r.created_by)

    async def create_channel(
        self, actor: StaffActor, case_id: str, name: str, *, client_id: str | None = None
    ) -> Channel:
        """Create a message channel (as :meth:`create_folder`)."""
        r = await self._create_place(actor, case_id, name, client_id, PlaceKind.CHANNEL)
        return Channel(r.id, r.client_id, r.case_id, name.strip(), r.created_at, r.created_by)

    async def _create_place(
        self, actor: object, case_id: object, name: object, client_id: object, kind: PlaceKind
    ) -> PlaceRecord:
        action = "portal.folder.create" if kind is PlaceKind.FOLDER else "portal.channel.create"
        staff = await self._staff(actor, action)
        clean = rules.check_place_name(name)
        case = await self._case(staff, case_id, action, sharer=True)
        target = await self._target_client(case, client_id)
        now = self._clock.now()
        record = PlaceRecord(
            f"{'fld' if kind is PlaceKind.FOLDER else 'chn'}-{new_id()}",
            target,
            case.id,
            kind,
            now,
            staff.id,
            b"",
        )
        sealed = await self._sealer.seal(
            rules.place_context(case.firm_id, record),
            bound.pack(rules.place_meta(record), clean.encode()),
        )
        record = attrs.evolve(record, sealed=sealed)
        async with self._records.transaction(case.firm_id) as tx:
            await tx.insert([record])
            await audit(
                tx,
                subject=f"portal.place:{record.id}",
                operation="portal.place_created",
                actor=staff.id,
                at=now,
                client=target,
                case_id=case.id,
                place=kind.value,
            )
        return record

    # -- sharing ----------------------------------------------------------------
    def _check_documents(self, documents: object, *, upload: bool) -> list[_Checked]:
        if isinstance(documents, PortalDocument) or not isinstance(documents, Sequence):
            raise InvalidInputError("documents", "must be a list of PortalDocument")
        if not documents:
            raise InvalidInputError("documents", "must name at least one document")
        if len(documents) > _MAX_DOCUMENTS:
            raise InvalidInputError("documents", f"at most {_MAX_DOCUMENTS} documents per call")
        out: list[_Checked] = []
        for i, doc in enumerate(documents):
            field = f"documents[{i}]"
            if not isinstance(doc, PortalDocument):
                raise InvalidInputError(field, "must be a PortalDocument")
            name = check_filename(doc.filename, f"{field}.filename")
            if len(name.encode("utf-8", "surrogatepass")) > 255:
                raise InvalidInputError(f"{field}.filename", "must be at most 255 bytes (UTF-8)")
            check_content_type(doc.content_type, f"{field}.content_type")
            if not upload and doc.document_id is None:
                raise InvalidInputError(
                    f"{field}.document_id", "the host's document id is required"
                )
            if not upload:
                check_identifier(doc.document_id, f"{field}.document_id")
            if isinstance(doc.content, bytes | bytearray) and len(doc.content) == 0:
                raise InvalidInputError(field, "is empty", value=name)
            if (
                isinstance(doc.content, bytes | bytearray)
                and len(doc.content) > self.max_document_size
            ):
                raise InvalidInputError(
                    field,
                    f"is {len(doc.content)} bytes; the limit is {self.max_document_size} bytes",
                    value=name,
                )
            out.append(_Checked(doc, name, field))
        return out

    async def share(
        self,
        actor: StaffActor,
        case_id: str,
        documents: Sequence[PortalDocument],
        *,
        folder_id: str,
        client_id: str | None = None,
        expires_at: datetime | None = None,
        notify: bool = True,
    ) -> ShareReceipt:
        """Share documents of a case file **without a message** into a folder of
        one client's portal (seed 001, "Ausschließlich Dokumente übermitteln").
        They appear for the client when this returns; the client's contacts
        with portal access get a "new documents" notice (background work),
        unless ``notify=False``: then no notice is written at all (the share
        is the same; its audit record says ``notified=False``).

        Raises:
            PermissionDeniedError: not a staff actor, unknown/inactive, no
                portal permission, neither handler nor assistant of the file.
            NotFoundError: unknown or out-of-reach case file; unknown folder,
                or one of another client or case file (the same answer).
            InvalidInputError: ``client_id`` required, not of the file or
                without portal access; a bad document (empty, over
                ``max_document_size``, bad file name or type, no host id);
                ``expires_at`` not in the future; ``notify`` not a bool.
                Nothing is written.
        """
        return await self._share(
            actor,
            case_id,
            documents,
            place_id=folder_id,
            kind=PlaceKind.FOLDER,
            client_id=client_id,
            expires_at=expires_at,
            text=None,
            notify=notify,
        )

    async def share_with_message(
        self,
        actor: StaffActor,
        case_id: str,
        documents: Sequence[PortalDocument],
        text: str,
        *,
        channel_id: str,
        client_id: str | None = None,
        expires_at: datetime | None = None,
        notify: bool = True,
    ) -> ShareReceipt:
        """Share documents **with a message** into a channel of one client's
        portal (seed 001, "Dokumente und Nachrichten übermitteln"); the
        contacts get a "new messages" notice (none with ``notify=False``, as
        in :meth:`share`). A share made this way cannot be ended (:meth:`end`).

        Raises:
            as :meth:`share` (``channel_id`` instead of ``folder_id``), and
            InvalidInputError for an empty or oversized text.
        """
        return await self._share(
            actor,
            case_id,
            documents,
            place_id=channel_id,
            kind=PlaceKind.CHANNEL,
            client_id=client_id,
            expires_at=expires_at,
            text=text,
            notify=notify,
        )

    async def _share(
        self,
        actor: object,
        case_id: object,
        documents: object,
        *,
        place_id: object,
        kind: PlaceKind,
        client_id: object,
        expires_at: object,
        text: object,
        notify: object,
    ) -> ShareReceipt:
        staff = await self._staff(actor, "share.create")
        if not isinstance(notify, bool):
            raise InvalidInputError("notify", "must be True or False", value=repr(notify))
        checked = self._check_documents(documents, upload=False)
        if text is not None:
            validate_text(text)
        now = self._clock.now()
        expiry = rules.check_expiry(expires_at, now)
        what = rules.place_kind_name(kind)
        place_id = self._id(place_id, f"{what}_id")
        case = await self._case(staff, case_id, "share.create", sharer=True)
        target = await self._target_client(case, client_id)
        firm_id = case.firm_id
        place = await self._place(firm_id, place_id, kind)
        if place.client_id != target or place.case_id != case.id:
            raise NotFoundError(what, place_id)  # another client's or case file's place
        message_id = f"pm-{new_id()}" if text is not None else None
        shares = await self._store_documents(
            firm_id,
            target,
            checked,
            case_id=case.id,
            location_id=place.id,
            origin=ShareOrigin.FIRM,
            shared_by=staff.id,
            now=now,
            expires_at=expiry,
            message_id=message_id,
            holder_first=True,
        )
        reservation, records = shares
        message: PortalMessageRecord | None = None
        try:
            if message_id is not None:
                assert isinstance(text, str)
                message = await self._sealed_message(
                    firm_id,
                    PortalMessageRecord(
                        message_id,
                        target,
                        place.id,
                        self._read.unread_for(Author.STAFF, via_mailing=False),
                        now,
                        b"",
                        Author.STAFF,
                        staff.id,
                        None,
                        tuple(r.id for r in records),
                    ),
                    text,
                )
            batch = None
            if notify:
                key = await self._notice_keys.get(firm_id)
                firm = await self._directory.get_firm(firm_id)
                contacts = await self._directory.list_contacts(firm_id, [target])
                event = NotificationEvent(
                    NotificationKind.NEW_MESSAGE
                    if message is not None
                    else NotificationKind.NEW_DOCUMENTS,
                    firm_id,
                    firm.name,
                    event_id=f"share-{records[0].id}",
                    client_id=target,
                    client_name=None,  # a client's notice names the firm, not the client
                    count=len(records),
                    expires_at=expiry,
                )
                batch = prepare(
                    event,
                    client_contact_recipients(contacts[target], client_id=target),
                    self._links,
                )
            async with self._records.transaction(firm_id) as tx:
                await tx.insert(records)
                for r in records:
                    await audit(
                        tx,
                        subject=f"share:{r.id}",
                        operation="share.created",
                        actor=staff.id,
                        at=now,
                        client=target,
                        objects=[f"portal.message:{message_id}"] if message_id else [],
                        case_id=case.id,
                        location=place.id,
                        with_message=message_id is not None,
                        expires_at=bound.stamp(expiry),
                        size=r.attachments[0].info.size,
                        notified=notify,
                    )
                await tx.insert(self._timers(records, now))
                if message is not None:
                    await tx.insert([message])
                    await self._message_audit(tx, message, staff.id, len(records))
                    stored = await tx.get(PortalMessageRecord, message.id)
                    await self._advance(tx, target, place.id, f"staff:{staff.id}", stored.meta.seq)
                if batch is not None:
                    await enqueue(tx, batch, now=now, key=key)
                await self._attachments.settle(tx, reservation)
        except BaseException:
            await self._attachments.release(firm_id, reservation)
            raise
        return ShareReceipt(
            case.id,
            target,
            tuple(r.id for r in records),
            folder_id=place.id if kind is PlaceKind.FOLDER else None,
            channel_id=place.id if kind is PlaceKind.CHANNEL else None,
            message_id=message_id,
            expires_at=expiry,
        )

    def _timers(self, records: Sequence[ShareRecord], now: datetime) -> list[ShareTimer]:
        out: list[ShareTimer] = []
        for r in records:
            if r.expires_at is None:
                continue
            out.append(
                ShareTimer(
                    ShareTimer.id_for(r.id, TimerWhat.EXPIRE),
                    r.id,
                    r.client_id,
                    TimerWhat.EXPIRE,
                    r.expires_at,
                )
            )
            remind = rules.reminder_due(r.expires_at, self.reminder_before, now)
            if remind is not None:
                out.append(
                    ShareTimer(
                        ShareTimer.id_for(r.id, TimerWhat.REMIND),
                        r.id,
                        r.client_id,
                        TimerWhat.REMIND,
                        remind,
                    )
                )
        return out

    async def _store_documents(
        self,
        firm_id: str,
        client_id: str,
        checked: Sequence[_Checked],
        *,
        case_id: str,
        location_id: str,
        origin: ShareOrigin,
        shared_by: str,
        now: datetime,
        expires_at: datetime | None,
        message_id: str | None,
        holder_first: bool,
    ) -> tuple[Any, list[ShareRecord]]:
        """Reserve the blob ids, seal each document for the client into its
        blob (checked on the way) and seal each share's descriptor. On any
        failure everything written is removed and the reservation released."""
        ids = [f"shr-{new_id()}" for _ in checked]
        blob_ids = [f"share-{uuid.uuid4().hex}" for _ in checked]
        reservation = await self._attachments.reserve(
            firm_id, blob_ids, holder=("share", ids[0]) if holder_first else None
        )

        async def store(blob_id: str, c: _Checked) -> StoredAttachment:
            return await self._attachments.store_stream(
                firm_id,
                client_id,
                blob_id,
                _chunks(c.doc.content, c.field),
                filename=c.filename,
                content_type=c.doc.content_type,
                field=c.field,
                max_size=self.max_document_size,
            )

        try:
            stored: list[StoredAttachment] = []
            pairs = list(zip(blob_ids, checked, strict=True))
            # _PARALLEL documents at a time: one is sealed while another's
            # frames are written and fsynced in a worker thread; the first
            # failure in document order is raised (the others' blobs are
            # removed with the reservation)
            for start in range(0, len(pairs), _PARALLEL):
                window = pairs[start : start + _PARALLEL]
                done = await asyncio.gather(
                    *(store(b, c) for b, c in window), return_exceptions=True
                )
                for outcome in done:
                    if isinstance(outcome, BaseException):
                        raise outcome
                    stored.append(outcome)
            records = [
                ShareRecord(
                    share_id,
                    client_id,
                    location_id,
                    ShareStatus.ACTIVE,
                    now,
                    b"",
                    case_id,
                    origin,
                    shared_by,
                    (attachment,),
                    document_id=c.doc.document_id if origin is ShareOrigin.FIRM else None,
                    message_id=message_id,
                    expires_at=expires_at,
                )
                for share_id, attachment, c in zip(ids, stored, checked, strict=True)
            ]
            records = await self._seal_shares(firm_id, records)
        except BaseException:
            await self._attachments.release(firm_id, reservation)
            raise
        return reservation, records

    async def _seal_shares(self, firm_id: str, records: Sequence[ShareRecord]) -> list[ShareRecord]:
        sealed = await self._sealer.seal_many(
            [
                SealRequest(rules.share_context(firm_id, r), bound.pack(rules.share_meta(r), b""))
                for r in records
            ]
        )
        return [
            attrs.evolve(r, sealed=s, attachments=tuple(a.stripped() for a in r.attachments))
            for r, s in zip(records, sealed, strict=True)
        ]

    async def _sealed_message(
        self, firm_id: str, record: PortalMessageRecord, text: str
    ) -> PortalMessageRecord:
        sealed = await self._sealer.seal(
            rules.message_context(firm_id, record),
            bound.pack(rules.message_meta(record), encode_body(text)),
        )
        return attrs.evolve(record, sealed_text=sealed)

    async def _message_audit(
        self, tx: RecordTx, m: PortalMessageRecord, actor: str, share_count: int
    ) -> None:
        await audit(
            tx,
            subject=f"portal.message:{m.id}",
            operation="portal.message_sent",
            actor=actor,
            at=m.sent_at,
            client=m.client_id,
            author=m.author.value,
            channel_id=m.channel_id,
            share_count=share_count,
            reply=m.reply_to is not None,
        )

    async def _advance(
        self, tx: RecordTx, client_id: str, channel_id: str, reader: str, seq: int
    ) -> None:
        cursor_id = ReadCursor.id_for(channel_id, reader)
        cursor = await tx.find(ReadCursor, cursor_id)
        if cursor is None:
            await tx.insert([ReadCursor(cursor_id, client_id, seq, self._clock.now())])
        elif cursor.seq < seq:
            await tx.update([attrs.evolve(cursor, seq=seq)])

    # -- reading shares ------------------------------------------------------------
    async def _open_shares(self, firm_id: str, found: Sequence[ShareRecord]) -> list[ShareRecord]:
        """The shares that open, each authenticated; one that does not fails
        alone (logged, left out)."""
        plain = await self._sealer.open_many(
            [OpenRequest(rules.share_context(firm_id, r), r.sealed) for r in found],
            return_exceptions=True,
        )
        out: list[ShareRecord] = []
        for r, p in zip(found, plain, strict=True):
            try:
                if isinstance(p, IntegrityError):
                    raise p
                out.append(rules.share_authenticated(r, p))
            except IntegrityError:
                log.error("share %s does not open; left out", r.id)
        return out

    def _shown(
        self, r: ShareRecord, kind: PlaceKind, log_entry: DownloadLog | None, *, staff: bool
    ) -> SharedDocument:
        info = r.attachments[0].info
        return SharedDocument(
            r.id,
            r.client_id,
            r.case_id,
            info.filename,
            info.size,
            info.content_type,
            r.origin,
            r.shared_by,
            r.shared_at,
            folder_id=r.location_id if kind is PlaceKind.FOLDER else None,
            channel_id=r.location_id if kind is PlaceKind.CHANNEL else None,
            message_id=r.message_id,
            document_id=r.document_id if staff else None,
            expires_at=r.expires_at,
            ended_at=r.ended_at,
            ended_by=r.ended_by if staff else None,
            first_downloaded_at=log_entry.first_at if staff and log_entry else None,
            last_downloaded_at=log_entry.last_at if staff and log_entry else None,
        )

    async def list_documents(
        self,
        actor: StaffActor | ClientActor,
        folder_id: str,
        *,
        include_ended: bool = False,
    ) -> list[SharedDocument]:
        """The documents of one folder (shared by the firm and uploaded by the
        client), oldest first: an indexed query on the folder, whatever else
        the store holds. A client sees its own folders only, never an ended
        share; staff see the download log and, with ``include_ended``, ended
        shares too.

        Raises:
            PermissionDeniedError: not an actor, unknown/inactive staff, no portal permission.
            NotFoundError: unknown folder, or out of reach (the same answer).
        """
        return await self._list_in(actor, folder_id, PlaceKind.FOLDER, include_ended)

    async def list_channel_documents(
        self, actor: StaffActor | ClientActor, channel_id: str, *, include_ended: bool = False
    ) -> list[SharedDocument]:
        """The documents shared with messages of one channel (as :meth:`list_documents`)."""
        return await self._list_in(actor, channel_id, PlaceKind.CHANNEL, include_ended)

    async def _list_in(
        self, actor: StaffActor | ClientActor, place_id: str, kind: PlaceKind, include_ended: bool
    ) -> list[SharedDocument]:
        place, _, staff, _ = await self._reach_place(actor, place_id, kind, "share.view")
        show_ended = include_ended and staff is not None
        async with self._records.transaction(actor.firm_id) as tx:
            found = await tx.list(
                ShareRecord,
                ref=place.id,
                **({} if show_ended else {"status": ShareStatus.ACTIVE.value}),
                decode_errors="skip",
            )
            found = [r for r in found if r.client_id == place.client_id]
            logs = (
                await tx.get_many(DownloadLog, [r.id for r in found], decode_errors="skip")
                if staff is not None
                else {}
            )
        opened = await self._open_shares(actor.firm_id, found)
        now = self._clock.now()
        return [
            self._shown(r, kind, logs.get(r.id), staff=staff is not None)
            for r in opened
            if (show_ended or r.status is ShareStatus.ACTIVE)
            # a client no longer sees an expired share, even before the step ends it
            and (staff is not None or r.expires_at is None or r.expires_at > now)
        ]

    async def _reach_share(
        self, actor: StaffActor | ClientActor, share_id: object, action: str
    ) -> tuple[ShareRecord, Staff | None]:
        share_id = self._id(share_id, "share_id")
        staff: Staff | None = None
        if isinstance(actor, StaffActor):
            staff = await self._staff(actor, action)
        else:
            require_actor(actor, ClientActor, StaffActor, action=action)
        async with self._records.transaction(actor.firm_id) as tx:
            record = await tx.find(ShareRecord, share_id)
        if record is None:
            raise NotFoundError("share", share_id)
        if isinstance(actor, ClientActor):
            if record.client_id != actor.client_id or record.status is ShareStatus.ENDED:
                raise NotFoundError("share", share_id)
        else:
            assert staff is not None
            try:
                await self._case(staff, record.case_id, action, sharer=False)
            except NotFoundError:
                raise NotFoundError("share", share_id) from None
            if not self._access.allows(staff, action, record.client_id):
                raise NotFoundError("share", share_id)
        opened = await self._open_shares(actor.firm_id, [record])
        if not opened:
            raise NotFoundError("share", share_id)
        expires = opened[0].expires_at
        if isinstance(actor, ClientActor) and expires is not None and expires <= self._clock.now():
            raise NotFoundError("share", share_id)  # expired, the step has not run yet
        return opened[0], staff

    async def get_document(self, actor: StaffActor | ClientActor, share_id: str) -> SharedDocument:
        """One shared document's descriptor (a client: its own, active ones).

        Raises:
            PermissionDeniedError / NotFoundError: as :meth:`list_documents`.
        """
        record, staff = await self._reach_share(actor, share_id, "share.view")
        async with self._records.transaction(actor.firm_id) as tx:
            entry = await tx.find(DownloadLog, record.id) if staff is not None else None
            place = await tx.find(PlaceRecord, record.location_id)
        kind = place.kind if place is not None else PlaceKind.FOLDER
        return self._shown(record, kind, entry, staff=staff is not None)

    async def download(
        self, actor: StaffActor | ClientActor, share_id: str
    ) -> AsyncIterator[bytes]:
        """Stream a shared document's bytes (a client: its own, active shares;
        staff: also uploads and ended shares, for the record). A client's
        download is logged (first and last time) and audited before the first
        byte is returned.

        Raises:
            PermissionDeniedError / NotFoundError: as :meth:`list_documents`.
            IntegrityError: the bytes were tampered with (raised mid-stream:
                discard what was read).
        """
        record, _ = await self._reach_share(actor, share_id, "share.view")
        if isinstance(actor, ClientActor):
            await self._log_download(actor, record)
        stored = record.attachments[0]
        return self._attachments.open(actor.firm_id, record.client_id, stored)

    async def _log_download(self, actor: ClientActor, record: ShareRecord) -> None:
        now = self._clock.now()
        async with self._records.transaction(actor.firm_id) as tx:
            entry = await tx.find(DownloadLog, record.id)
            if entry is None:
                await tx.insert([DownloadLog(record.id, record.client_id, now, now)])
            else:
                await tx.update([attrs.evolve(entry, last_at=now)])
            await audit(
                tx,
                subject=f"share:{record.id}",
                operation="share.downloaded",
                actor=f"client:{actor.client_id}",
                at=now,
                client=record.client_id,
                objects=[f"contact:{actor.contact_id}"] if actor.contact_id else [],
                first=entry is None,
            )

    # -- visibility ----------------------------------------------------------------
    async def visibility(
        self, actor: StaffActor, case_id: str, document_ids: Sequence[str]
    ) -> Mapping[str, tuple[ShareMarker, ...]]:
        """Which of the host's documents of a case file are shared, to whom,
        where, by whom and when, for a list of host document ids in one call
        (seed 001: the "shared" marker of the documents tab). Every id given
        is a key; an unshared one maps to ``()``. Ended shares are included
        (``ended_at`` set), newest last.

        Raises:
            PermissionDeniedError: not a staff actor, unknown/inactive, no portal permission.
            NotFoundError: unknown or out-of-reach case file.
            InvalidInputError: more than 1,000 ids, or a bad id.
        """
        staff = await self._staff(actor, "share.view")
        if isinstance(document_ids, str) or not isinstance(document_ids, Sequence):
            raise InvalidInputError("document_ids", "must be a list of document ids")
        if len(document_ids) > _MAX_IDS:
            raise InvalidInputError("document_ids", f"at most {_MAX_IDS} ids per call")
        wanted = [check_identifier(d, f"document_ids[{i}]") for i, d in enumerate(document_ids)]
        case = await self._case(staff, case_id, "share.view", sharer=False)
        want = set(wanted)
        found: list[ShareRecord] = []
        async with self._records.transaction(case.firm_id) as tx:
            for cid in case.clients:
                for r in await tx.list(ShareRecord, parent=cid, decode_errors="skip"):
                    if r.case_id == case.id and r.document_id in want:
                        found.append(r)
            kinds = {
                p.id: p.kind
                for p in (
                    await tx.get_many(
                        PlaceRecord, {r.location_id for r in found}, decode_errors="skip"
                    )
                ).values()
            }
        out: dict[str, list[ShareMarker]] = {d: [] for d in wanted}
        for r in await self._open_shares(case.firm_id, found):
            kind = kinds.get(r.location_id, PlaceKind.FOLDER)
            assert r.document_id is not None
            out[r.document_id].append(
                ShareMarker(
                    r.id,
                    r.document_id,
                    r.client_id,
                    r.shared_by,
                    r.shared_at,
                    r.location_id if kind is PlaceKind.FOLDER else None,
                    r.location_id if kind is PlaceKind.CHANNEL else None,
                    r.message_id,
                    r.expires_at,
                    r.ended_at,
                )
            )
        return {d: tuple(v) for d, v in out.items()}

    # -- ending ---------------------------------------------------------------------
    async def end(self, actor: StaffActor, share_id: str) -> SharedDocument:
        """End a share made without a message (seed 001, "Freigabe beenden"):
        afterwards the client can neither list nor download it; the share and
        its end stay recorded (audit ``share.ended``). Only the staff member
        who shared it may, or one allowed ``share.end_any`` (by default
        administrators and managers).

        Raises:
            PermissionDeniedError: not a staff actor, unknown/inactive, no
                portal permission, or not the sharer (and not ``share.end_any``).
            NotFoundError: unknown or out-of-reach share.
            ConflictError: shared with a message (why: the message holds it),
                a client's upload, or ended already.
        """
        record, staff = await self._reach_share(actor, share_id, "share.end")
        assert staff is not None
        may_end_any = self._access.allows(staff, "share.end_any", record.client_id)
        rules.end_refusal(record, staff.id, may_end_any=may_end_any)
        ended = await self._end(actor.firm_id, record, by=staff.id, operation="share.ended")
        return self._shown(ended, PlaceKind.FOLDER, None, staff=True)

    async def _end(
        self, firm_id: str, record: ShareRecord, *, by: str, operation: str
    ) -> ShareRecord:
        now = self._clock.now()
        ended = attrs.evolve(record, status=ShareStatus.ENDED, ended_at=now, ended_by=by)
        [ended] = await self._seal_shares(firm_id, [ended])
        async with self._records.transaction(firm_id) as tx:
            await tx.update([ended])
            await tx.delete(
                ShareTimer,
                [ShareTimer.id_for(record.id, w) for w in TimerWhat],
            )
            details: dict[str, Any] = {}
            if operation == "share.ended":
                details["by_sharer"] = by == record.shared_by
            await audit(
                tx,
                subject=f"share:{record.id}",
                operation=operation,
                actor=by,
                at=now,
                client=record.client_id,
                **details,
            )
        return attrs.evolve(
            ended, attachments=record.attachments
        )  # the descriptor as authenticated

    # -- messages ---------------------------------------------------------------------
    async def post(
        self,
        actor: StaffActor | ClientActor,
        channel_id: str,
        text: str,
        *,
        reply_to: str | None = None,
    ) -> str:
        """Write a new message (or, with ``reply_to``, a reply) into a channel,
        as staff (seed 001, "Ausschließlich Nachrichten übermitteln": the
        client's contacts get a "new messages" notice) or as the client (the
        staff's unread count rises and the file's handler is notified, by
        e-mail and in-app). Returns the message id.

        Raises:
            PermissionDeniedError: as :meth:`share` (staff).
            NotFoundError: unknown or out-of-reach channel; an unknown
                ``reply_to`` or one of another channel.
            InvalidInputError: empty or oversized text.
        """
        validate_text(text)
        place, _, staff, case = await self._reach_place(
            actor,
            channel_id,
            PlaceKind.CHANNEL,
            "portal.message.write",
            sharer=isinstance(actor, StaffActor),
        )
        firm_id = actor.firm_id
        if reply_to is not None:
            reply_to = self._id(reply_to, "reply_to")
            async with self._records.transaction(firm_id) as tx:
                parent = await tx.find(PortalMessageRecord, reply_to)
            if parent is None or parent.channel_id != place.id:
                raise NotFoundError("portal.message", reply_to)
        author = Author.STAFF if staff is not None else Author.CLIENT
        author_id = (
            actor.staff_id
            if isinstance(actor, StaffActor)
            else (actor.contact_id or actor.client_id)
        )
        now = self._clock.now()
        message = await self._sealed_message(
            firm_id,
            PortalMessageRecord(
                f"pm-{new_id()}",
                place.client_id,
                place.id,
                self._read.unread_for(author, via_mailing=False),
                now,
                b"",
                author,
                author_id,
                reply_to,
            ),
            text,
        )
        key = await self._notice_keys.get(firm_id)
        batch = await self._message_notice(firm_id, place, message, case)
        async with self._records.transaction(firm_id) as tx:
            await tx.insert([message])
            await self._message_audit(tx, message, _actor_name(actor), 0)
            if author is Author.STAFF:
                stored = await tx.get(PortalMessageRecord, message.id)
                await self._advance(tx, place.client_id, place.id, _reader(actor), stored.meta.seq)
            if batch is not None:
                await enqueue(tx, batch, now=now, key=key)
        return message.id

    async def _message_notice(
        self,
        firm_id: str,
        place: PlaceRecord,
        message: PortalMessageRecord,
        case: CaseFile | None,
    ) -> Any:
        firm = await self._directory.get_firm(firm_id)
        client = await self._directory.get_client(firm_id, place.client_id)
        # the clients' notice links to the portal; the handler's to the office
        # (its own kind, so a host's links route staff to its own app)
        event = NotificationEvent(
            NotificationKind.NEW_MESSAGE
            if message.author is Author.STAFF
            else NotificationKind.CLIENT_MESSAGE,
            firm_id,
            firm.name,
            event_id=place.id,
            cause_id=message.id,
            client_id=place.client_id,
            # a staff notice names the client who wrote; a client's notice the firm
            client_name=client.name if message.author is Author.CLIENT else None,
        )
        if message.author is Author.STAFF:
            contacts = await self._directory.list_contacts(firm_id, [place.client_id])
            plan = client_contact_recipients(contacts[place.client_id], client_id=place.client_id)
        else:
            plan = await self._handler_plan(firm_id, place.case_id, place.client_id)
        return prepare(event, plan, self._links)

    async def _handler_plan(self, firm_id: str, case_id: str, client_id: str) -> RecipientPlan:
        """The case file's handler (e-mail and in-app), if it still reaches the client."""
        try:
            case = await self._directory.get_case_file(firm_id, case_id)
        except NotFoundError:
            return RecipientPlan()
        if case.handler_id is None:
            return RecipientPlan()
        try:
            handler = await self._directory.get_staff(firm_id, case.handler_id)
        except NotFoundError:
            return RecipientPlan()
        if not self._access.allows(handler, "share.view", client_id):
            return RecipientPlan()
        return staff_recipient(handler, inapp=True)

    async def list_messages(
        self, actor: StaffActor | ClientActor, channel_id: str, *, mark_read: bool = True
    ) -> list[PortalMessage]:
        """A channel's messages, oldest first (a client: its own channels). For
        staff, ``mark_read`` moves the staff member's read cursor to the newest
        (the unread count drops). A message that does not open fails alone.

        Raises:
            PermissionDeniedError / NotFoundError: as :meth:`list_documents`.
        """
        place, _, staff, _ = await self._reach_place(
            actor, channel_id, PlaceKind.CHANNEL, "portal.message.read"
        )
        async with self._records.transaction(actor.firm_id) as tx:
            found = await tx.list(PortalMessageRecord, ref=place.id, decode_errors="skip")
        found = [m for m in found if m.client_id == place.client_id]
        plain = await self._sealer.open_many(
            [OpenRequest(rules.message_context(actor.firm_id, m), m.sealed_text) for m in found],
            return_exceptions=True,
        )
        out: list[PortalMessage] = []
        for m, p in zip(found, plain, strict=True):
            try:
                if isinstance(p, IntegrityError):
                    raise p
                _, text = decode_body(rules.message_authenticated(m, p))
            except (IntegrityError, ValueError):
                log.error("portal message %s does not open; left out", m.id)
                continue
            out.append(
                PortalMessage(
                    m.id,
                    m.channel_id,
                    m.client_id,
                    m.author.value,
                    m.author_id,
                    text,
                    m.sent_at,
                    m.reply_to,
                    m.share_ids,
                )
            )
        if staff is not None and mark_read and found:
            async with self._records.transaction(actor.firm_id) as tx:
                await self._advance(
                    tx, place.client_id, place.id, _reader(actor), max(m.meta.seq for m in found)
                )
        return out

    async def unread_count(self, actor: StaffActor, channel_id: str) -> int:
        """The client's messages in a channel this staff member has not read.

        Raises:
            PermissionDeniedError / NotFoundError: as :meth:`list_messages`.
        """
        require_actor(actor, StaffActor, action="portal.message.read")
        place, _, _, _ = await self._reach_place(
            actor, channel_id, PlaceKind.CHANNEL, "portal.message.read"
        )
        async with self._records.transaction(actor.firm_id) as tx:
            cursor = await tx.find(ReadCursor, ReadCursor.id_for(place.id, _reader(actor)))
            return await tx.count(
                PortalMessageRecord,
                ref=place.id,
                status=UnreadFor.STAFF.value,
                after_seq=cursor.seq if cursor else 0,
            )

    # -- client uploads ----------------------------------------------------------------
    async def upload(
        self, actor: ClientActor, folder_id: str, documents: Sequence[PortalDocument]
    ) -> list[str]:
        """A client uploads documents into a folder of its own portal; they are
        sealed for the client like every share, and the case file's handler is
        notified (e-mail and in-app). Returns the new share ids (staff list
        them with :meth:`list_documents`, ``origin`` ``client``, and download
        them with :meth:`download`).

        Raises:
            PermissionDeniedError: not a client actor.
            NotFoundError: unknown folder, or another client's (the same answer).
            InvalidInputError: a bad document (see :meth:`share`; a host id is ignored).
        """
        require_actor(actor, ClientActor, action="portal.upload")
        checked = self._check_documents(documents, upload=True)
        place, _, _, _ = await self._reach_place(
            actor, folder_id, PlaceKind.FOLDER, "portal.upload"
        )
        firm_id = actor.firm_id
        now = self._clock.now()
        who = f"client:{actor.contact_id or actor.client_id}"
        reservation, records = await self._store_documents(
            firm_id,
            actor.client_id,
            checked,
            case_id=place.case_id,
            location_id=place.id,
            origin=ShareOrigin.CLIENT,
            shared_by=who,
            now=now,
            expires_at=None,
            message_id=None,
            holder_first=True,
        )
        try:
            key = await self._notice_keys.get(firm_id)
            firm = await self._directory.get_firm(firm_id)
            client = await self._directory.get_client(firm_id, actor.client_id)
            event = NotificationEvent(
                NotificationKind.CLIENT_UPLOAD,
                firm_id,
                firm.name,
                event_id=f"upload-{records[0].id}",
                client_id=actor.client_id,
                client_name=client.name,
                count=len(records),
            )
            plan = await self._handler_plan(firm_id, place.case_id, actor.client_id)
            batch = prepare(event, plan, self._links)
            async with self._records.transaction(firm_id) as tx:
                await tx.insert(records)
                for r in records:
                    await audit(
                        tx,
                        subject=f"share:{r.id}",
                        operation="share.uploaded",
                        actor=f"client:{actor.client_id}",
                        at=now,
                        client=actor.client_id,
                        objects=[f"contact:{actor.contact_id}"] if actor.contact_id else [],
                        case_id=place.case_id,
                        location=place.id,
                        size=r.attachments[0].info.size,
                    )
                if batch is not None:
                    await enqueue(tx, batch, now=now, key=key)
                await self._attachments.settle(tx, reservation)
        except BaseException:
            await self._attachments.release(firm_id, reservation)
            raise
        return [r.id for r in records]

    # -- background: expiry and reminders ------------------------------------------------
    async def run_timers(self, *, owner: str, lease: timedelta, limit: int) -> int:
        """Claim due expiry and reminder timers (any firm) and act on each
        alone: an expiry ends its share (audit ``share.expired``), a reminder
        notifies the sharer by in-app record and e-mail (audit
        ``share.reminded``). A timer whose share is gone, ended or does not
        open is dropped (logged). Returns how many timers were done."""
        due, damaged = await self._records.claim(
            ShareTimer,
            status="due",
            owner=owner,
            now=self._clock.now(),
            lease=lease,
            limit=limit,
        )
        for record in damaged:
            log.error("share timer %s does not decode; left claimed", record.id)

        async def run(timer: ShareTimer) -> int:
            await self._run_timer(timer)
            return 1

        return await each_alone(
            due,
            run,
            describe=lambda t: f"share timer {t.id} (firm {t.meta.firm_id})",
            logger=log,
        )

    async def _run_timer(self, timer: ShareTimer) -> None:
        firm_id = timer.meta.firm_id
        async with self._records.transaction(firm_id) as tx:
            share = await tx.find(ShareRecord, timer.share_id)
        opened = await self._open_shares(firm_id, [share]) if share is not None else []
        if not opened or opened[0].status is ShareStatus.ENDED:
            async with self._records.transaction(firm_id) as tx:
                await tx.update([timer])  # still ours (version check), then drop it
                await tx.delete(ShareTimer, [timer.id])
            return
        record = opened[0]
        if timer.what is TimerWhat.EXPIRE:
            async with self._records.transaction(firm_id) as tx:
                await tx.update([timer])
            await self._end(firm_id, record, by="system", operation="share.expired")
            return
        now = self._clock.now()
        key = await self._notice_keys.get(firm_id)
        plan = RecipientPlan()
        try:
            sharer = await self._directory.get_staff(firm_id, record.shared_by)
            plan = staff_recipient(sharer, inapp=True)
        except NotFoundError:
            pass
        firm = await self._directory.get_firm(firm_id)
        client = await self._directory.get_client(firm_id, record.client_id)
        event = NotificationEvent(
            NotificationKind.SHARE_EXPIRING,
            firm_id,
            firm.name,
            event_id=record.location_id,
            cause_id=timer.id,
            client_id=record.client_id,
            client_name=client.name,
            count=1,
        )
        batch = prepare(event, plan, self._links)
        async with self._records.transaction(firm_id) as tx:
            await tx.update([timer])
            await tx.delete(ShareTimer, [timer.id])
            await enqueue(tx, batch, now=now, key=key)
            await audit(
                tx,
                subject=f"share:{record.id}",
                operation="share.reminded",
                actor="system",
                at=now,
                client=record.client_id,
                objects=[f"staff:{record.shared_by}"],
            )
