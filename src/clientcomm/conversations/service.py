"""Conversations between a firm and its clients (seed 002).

Staff start a conversation with a client (subject, first message, files, an
assigned administrator, "notify administrators"); a client may start one from
the portal. Both sides comment, with files; staff set the state (open, needs
attention, answered) through the state machine of
:mod:`clientcomm.conversations.rules`; whose turn it is follows who wrote
last. Every comment notifies through the outbox in its own transaction.

Every value is sealed for the client: a conversation's subject with the
values that decide who is notified and what is shown, a comment's text with
its author, time and attachments' descriptors. A conversation or comment out
of the actor's reach answers exactly as a missing one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import attrs

from clientcomm.actors import ClientActor, StaffActor, require_actor
from clientcomm.attachments.service import AttachmentStore, Copies
from clientcomm.audit import append as audit
from clientcomm.clock import Clock, SystemClock
from clientcomm.conversations.models import (
    ClientConversation,
    Comment,
    ConversationPage,
    ConversationSettings,
    ConversationStatus,
    EscalationPolicy,
    StaffConversation,
    Turn,
)
from clientcomm.conversations.records import (
    COMMENT_KIND,
    CONVERSATION_KIND,
    FEED_KIND,
    INBOX_KIND,
    UNASSIGNED,
    CommentRecord,
    ConversationRecord,
    EscalationRecord,
    EscalationState,
    FeedEntry,
    InboxEntry,
    ReadMark,
)
from clientcomm.conversations.rules import (
    IllegalTransitionError,
    after_comment,
    authenticated_comment,
    authenticated_conversation,
    check_conversation,
    comment_context,
    comment_plaintext,
    comment_plan,
    conversation_plaintext,
    escalation_due,
    escalation_plan,
    index_status,
    index_statuses,
    next_escalation,
    staff_transition,
    subject_context,
    turn_after,
    waiting_on_firm,
    with_mac,
)
from clientcomm.crypto.envelope import OpenRequest, Sealer, SealReservation
from clientcomm.directory.base import Directory
from clientcomm.directory.models import Contact, Firm, Role, Staff
from clientcomm.errors import (
    ConflictError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
)
from clientcomm.ids import new_id
from clientcomm.messages.rules import validate_subject, validate_text
from clientcomm.notifications.inapp import InAppNotification, list_inapp
from clientcomm.notifications.inapp import mark_all_read as inapp_mark_all_read
from clientcomm.notifications.inapp import mark_read as inapp_mark_read
from clientcomm.notifications.keys import NoticeKeys
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.models import NotificationEvent, NotificationKind
from clientcomm.notifications.outbox import NotificationBatch, enqueue, prepare
from clientcomm.notifications.rules import NoticeKey, admin_recipients
from clientcomm.records import Records, RecordTx, bound
from clientcomm.records.registry import REGISTRY
from clientcomm.rules.access import AccessPolicy, as_policy, require_reach, resolve_staff
from clientcomm.rules.readstate import Author
from clientcomm.rules.text import MAX_SIGNED_64
from clientcomm.steps import each_alone
from clientcomm.storage.base import Record, Store

__all__ = ["ConversationService"]

log = logging.getLogger("clientcomm.conversations")

T = TypeVar("T")

_ATTEMPTS = 5
"""How often a write is tried again when the conversation changed meanwhile."""

MAX_BULK = 500
"""At most this many conversations per bulk re-notification."""

_SCAN_ROUNDS = 20
"""A staff list skips at most this many batches of conversations out of the
actor's reach before it returns a shorter page (its cursor goes on)."""

_CONV = REGISTRY.of(ConversationRecord)
_COMMENT = REGISTRY.of(CommentRecord)


def _check_int(value: object, field: str, *, low: int, high: int = MAX_SIGNED_64) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidInputError(field, f"must be an integer from {low} to {high}")
    return value


def _reader(actor: StaffActor | ClientActor) -> str:
    return f"staff:{actor.staff_id}" if isinstance(actor, StaffActor) else "client"


def _who(actor: StaffActor | ClientActor) -> str:
    """The actor as conversations record it: ``staff:<id>`` or ``client:<id>``."""
    if isinstance(actor, StaffActor):
        return f"staff:{actor.staff_id}"
    return f"client:{actor.client_id}"


def _audit_actor(actor: StaffActor | ClientActor) -> str:
    return actor.staff_id if isinstance(actor, StaffActor) else f"client:{actor.client_id}"


def _statuses(status: object) -> list[ConversationStatus] | None:
    if status is None:
        return None
    if isinstance(status, str):
        values: list[object] = [status]
    elif isinstance(status, Iterable):
        values = list(status)
    else:
        raise InvalidInputError("status", "must be a status or a collection of them")
    out: list[ConversationStatus] = []
    for value in values:
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            out.append(ConversationStatus(value))
        except ValueError:
            raise InvalidInputError(
                "status", "must be a conversation status", value=value
            ) from None
    if not out:
        raise InvalidInputError("status", "must name at least one status")
    return out


@attrs.frozen
class _Loaded:
    """A conversation as its sealed value authenticates it, with its subject."""

    record: ConversationRecord
    subject: str


@attrs.frozen
class _Audience:
    """Who a comment's notices may go to (staff for a client's comment, the
    client's contacts for a staff comment), read before the transaction."""

    firm: Firm
    staff: Sequence[Staff]
    contacts: Sequence[Contact]


class ConversationService:
    """Conversations (seed 002); ``app.conversations``."""

    def __init__(
        self,
        *,
        store: Store,
        directory: Directory,
        sealer: Sealer,
        attachments: AttachmentStore,
        links: LinkTemplates,
        notice_keys: NoticeKeys,
        clock: Clock | None = None,
        access: AccessPolicy | None = None,
        settings: ConversationSettings | None = None,
    ) -> None:
        self._records = Records(store)
        self._directory = directory
        self._sealer = sealer
        self._attachments = attachments
        self._links = links
        self._notice_keys = notice_keys
        self._clock: Clock = clock or SystemClock()
        self._access = as_policy(access)
        self.settings = settings or ConversationSettings()

    # -- authorisation ---------------------------------------------------------------
    async def _staff(self, actor: StaffActor, action: str) -> Staff:
        require_actor(actor, StaffActor, action=action)
        return await resolve_staff(self._directory, actor.firm_id, actor.staff_id, action=action)

    async def _raw(self, firm_id: str, conversation_id: str) -> Record:
        if not isinstance(conversation_id, str) or not conversation_id:
            raise NotFoundError("conversation", conversation_id)
        async with self._records.transaction(firm_id) as tx:
            raw = await tx.raw.find(CONVERSATION_KIND, conversation_id)
        if raw is None or raw.parent is None:
            raise NotFoundError("conversation", conversation_id)
        return raw

    async def _reach(
        self,
        actor: StaffActor | ClientActor,
        conversation_id: str,
        action: str,
        *,
        subject: bool = False,
    ) -> tuple[_Loaded, Staff | None]:
        """The conversation, authenticated, once the actor may do ``action`` on
        it; out of reach answers as missing.

        Raises:
            PermissionDeniedError: not an actor, unknown or inactive staff.
            NotFoundError: missing, another client's, out of reach.
            IntegrityError: it does not open (tampered, forgotten key).
        """
        require_actor(actor, StaffActor, ClientActor, action=action)
        staff = await self._staff(actor, action) if isinstance(actor, StaffActor) else None
        raw = await self._raw(actor.firm_id, conversation_id)
        self._check_reach(actor, staff, raw, action)
        [loaded] = await self._open(actor.firm_id, [_CONV.decode(raw)], subjects=subject)
        if isinstance(loaded, IntegrityError):
            raise loaded
        return loaded, staff

    def _check_reach(
        self, actor: StaffActor | ClientActor, staff: Staff | None, raw: Record, action: str
    ) -> str:
        """The client of conversation ``raw`` once ``actor`` may do ``action``
        on it (a client on its own only); out of reach answers as missing."""
        client_id = raw.parent
        assert client_id is not None
        if isinstance(actor, ClientActor):
            if client_id != actor.client_id:
                raise NotFoundError("conversation", raw.id)
        else:
            assert staff is not None
            require_reach(
                self._access, staff, [client_id], action=action, kind="conversation", id=raw.id
            )
        return client_id

    async def _open(
        self, firm_id: str, records: Sequence[ConversationRecord], *, subjects: bool = True
    ) -> list[_Loaded | IntegrityError]:
        """Each conversation once its MAC matches, with its subject opened
        (``subjects``; else ``""``: the write paths need no subject), or the
        error that refuses it (each fails alone)."""
        key = await self._notice_keys.get(firm_id)
        checked: list[ConversationRecord | IntegrityError] = []
        for c in records:
            try:
                checked.append(check_conversation(key, c))
            except IntegrityError as exc:
                checked.append(exc)
        good = [c for c in checked if isinstance(c, ConversationRecord)]
        if subjects and good:
            plain = await self._sealer.open_many(
                [
                    OpenRequest(subject_context(firm_id, c.client_id, c.id), c.sealed_subject)
                    for c in good
                ],
                return_exceptions=True,
            )
        else:
            plain = [b""] * len(good)
        opened: dict[int, _Loaded | IntegrityError] = {}
        for c, p in zip(good, plain, strict=True):
            if not subjects:
                opened[id(c)] = _Loaded(c, "")
            elif isinstance(p, IntegrityError):
                opened[id(c)] = p
            else:
                try:
                    opened[id(c)] = _Loaded(c, authenticated_conversation(c, p))
                except IntegrityError as exc:
                    opened[id(c)] = exc
        return [c if isinstance(c, IntegrityError) else opened[id(c)] for c in checked]

    async def _check_assignee(self, firm_id: str, assignee_id: object, client_id: str) -> str:
        """An assignee must be an active administrator who may read the client.

        Raises:
            InvalidInputError: otherwise (``field`` ``assignee_id``).
        """
        if not isinstance(assignee_id, str) or not assignee_id or assignee_id in (UNASSIGNED, "*"):
            raise InvalidInputError("assignee_id", "must be a staff id", value=assignee_id)
        try:
            staff = await self._directory.get_staff(firm_id, assignee_id)
        except NotFoundError:
            raise InvalidInputError(
                "assignee_id", "names no staff member of the firm", value=assignee_id
            ) from None
        if not staff.active or staff.role is not Role.ADMIN:
            raise InvalidInputError(
                "assignee_id", "must be an active administrator", value=assignee_id
            )
        if not self._access.allows(staff, "conversation.read", client_id):
            raise InvalidInputError(
                "assignee_id", "has no access to the conversation's client", value=assignee_id
            )
        return assignee_id

    # -- notices ---------------------------------------------------------------------
    async def _audience(self, firm_id: str, client_id: str, author: Author) -> _Audience:
        """Who a comment's notices may go to, read before its transaction
        (the plan itself is pure and needs the conversation's assignee)."""
        firm = await self._directory.get_firm(firm_id)
        if author is Author.CLIENT:
            return _Audience(firm, await self._directory.list_staff(firm_id), ())
        found = await self._directory.list_contacts(firm_id, [client_id])
        return _Audience(firm, (), found.get(client_id, ()))

    def _comment_batch(
        self,
        c: ConversationRecord,
        author: Author,
        comment_id: str,
        client_name: str,
        audience: _Audience,
    ) -> NotificationBatch:
        firm = audience.firm
        kind, plan = comment_plan(
            author,
            firm=firm,
            staff=audience.staff,
            contacts=audience.contacts,
            client_id=c.client_id,
            assignee_id=c.assignee_id,
            notify_admins=c.notify_admins,
        )
        event = NotificationEvent(
            kind=kind,
            firm_id=firm.id,
            firm_name=firm.name,
            event_id=c.id,
            cause_id=comment_id,
            client_id=c.client_id,
            client_name=client_name,
        )
        return prepare(event, plan, self._links)

    async def _admin_batch(
        self, c: ConversationRecord, cause: str, client_name: str
    ) -> NotificationBatch:
        firm = await self._directory.get_firm(c.meta.firm_id)
        staff = await self._directory.list_staff(c.meta.firm_id)
        event = NotificationEvent(
            kind=NotificationKind.ADMIN_ALERT,
            firm_id=firm.id,
            firm_name=firm.name,
            event_id=c.id,
            cause_id=cause,
            client_id=c.client_id,
            client_name=client_name,
        )
        return prepare(event, admin_recipients(staff), self._links)

    # -- writing helpers -------------------------------------------------------------
    @staticmethod
    def _seal_conversation(
        c: ConversationRecord, subject: str, seals: SealReservation
    ) -> ConversationRecord:
        sealed = seals.seal(
            subject_context(c.meta.firm_id or "", c.client_id, c.id),
            conversation_plaintext(c, subject),
        )
        return attrs.evolve(c, sealed_subject=sealed)

    async def _index(self, tx: RecordTx, c: ConversationRecord, *, moved: bool) -> None:
        """Keep the list index of ``c`` in step: ``moved`` (a comment: newest
        activity) writes its entries anew in place of the old ones, so they go
        to the top of the ``seq`` order (nothing is read: a buffering store
        queues it with the rest of the transaction); otherwise they are
        updated in place."""
        status = index_status(c.status, c.turn)
        ref = c.assignee_id or UNASSIGNED
        if moved:
            await tx.replace(
                [
                    InboxEntry(c.id, c.client_id, ref, status),
                    FeedEntry(c.id, c.client_id, "*", status),
                ]
            )
            return
        inbox = await tx.find(InboxEntry, c.id)
        feed = await tx.find(FeedEntry, c.id)
        if inbox is None or feed is None:  # a damaged index heals on the next change
            await self._index(tx, c, moved=True)
            return
        await tx.update([attrs.evolve(inbox, client_id=c.client_id, ref=ref, status=status)])
        await tx.update([attrs.evolve(feed, client_id=c.client_id, ref="*", status=status)])

    async def _escalation(
        self, tx: RecordTx, before: ConversationRecord | None, after: ConversationRecord
    ) -> None:
        """Schedule (or drop) the re-notification of a conversation waiting on
        the firm, when escalation is configured."""
        policy = self.settings.escalation
        if policy is None:
            return  # nothing scheduled (a schedule left from before is dropped by the step)
        was = before is not None and waiting_on_firm(before)
        now_waiting = waiting_on_firm(after)
        if now_waiting and (
            not was or (before is not None and before.turn_since != after.turn_since)
        ):
            due = escalation_due(policy, after.turn_since, 0)
            await tx.delete(EscalationRecord, [after.id])
            if due is not None:
                await tx.insert([EscalationRecord(after.id, after.client_id, due)])
        elif was and not now_waiting:
            await tx.delete(EscalationRecord, [after.id])

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run a read-seal-write ``attempt`` again when the conversation changed
        between its read and its write (a stale version); an illegal
        transition is not retried."""
        for n in range(_ATTEMPTS):
            try:
                return await attempt()
            except IllegalTransitionError:
                raise
            except ConflictError:
                if n == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    # -- creating --------------------------------------------------------------------
    async def create(
        self,
        actor: StaffActor,
        client_id: str,
        subject: str,
        text: str,
        *,
        attachments: Sequence[Any] = (),
        assignee_id: str | None = None,
        notify_admins: bool = False,
    ) -> str:
        """Start a conversation with ``client_id`` (seed 002, "Erstellen"):
        ``subject`` (the details), the first message ``text``, optional files,
        the assigned administrator and "notify administrators". The client's
        contacts with portal access are notified; with ``notify_admins`` every
        administrator too (``admin_alert``). Returns its id.

        Raises:
            PermissionDeniedError: not a staff actor, unknown or inactive staff.
            NotFoundError: unknown client, or one out of reach (the same answer).
            InvalidInputError: empty subject or text, a bad file, an assignee
                who is unknown, no active administrator, or cannot see the client;
                ``notify_admins`` not a bool.
        """
        staff = await self._staff(actor, "conversation.write")
        require_reach(self._access, staff, [client_id], action="conversation.write")
        client = await self._directory.get_client(actor.firm_id, client_id)
        subject_ = self._subject(subject)
        validate_text(text)
        if not isinstance(notify_admins, bool):
            raise InvalidInputError("notify_admins", "must be a bool", value=notify_admins)
        if assignee_id is not None:
            require_reach(self._access, staff, [client_id], action="conversation.assign")
            assignee_id = await self._check_assignee(actor.firm_id, assignee_id, client.id)
        return await self._start(
            actor,
            client.id,
            client.name,
            subject_,
            text,
            attachments,
            assignee_id=assignee_id,
            notify_admins=notify_admins,
        )

    async def start(
        self,
        actor: ClientActor,
        subject: str,
        text: str,
        *,
        attachments: Sequence[Any] = (),
    ) -> str:
        """A client starts a conversation from the portal: it waits on the
        firm, the office address is notified, and the host's default assignee
        (:class:`~clientcomm.conversations.models.ConversationSettings`), if
        it is an active administrator who reaches the client, is assigned and
        notified by e-mail and in-app. Returns its id.

        Raises:
            PermissionDeniedError: not a client's actor.
            NotFoundError: unknown client.
            InvalidInputError: empty subject or text, a bad file.
        """
        require_actor(actor, ClientActor, action="conversation.write")
        client = await self._directory.get_client(actor.firm_id, actor.client_id)
        subject_ = self._subject(subject)
        validate_text(text)
        assignee: str | None = None
        default = self.settings.default_assignee
        if default is not None:
            try:
                assignee = await self._check_assignee(actor.firm_id, default, client.id)
            except InvalidInputError as exc:
                log.warning(
                    "default assignee %r of firm %s not assigned: %s", default, actor.firm_id, exc
                )
        return await self._start(
            actor,
            client.id,
            client.name,
            subject_,
            text,
            attachments,
            assignee_id=assignee,
            notify_admins=False,
        )

    @staticmethod
    def _subject(subject: object) -> str:
        checked = validate_subject(subject)
        if checked is None:
            raise InvalidInputError("subject", "must not be empty")
        return checked

    async def _start(
        self,
        actor: StaffActor | ClientActor,
        client_id: str,
        client_name: str,
        subject: str,
        text: str,
        attachments: Sequence[Any],
        *,
        assignee_id: str | None,
        notify_admins: bool,
    ) -> str:
        firm_id = actor.firm_id
        author = Author.STAFF if isinstance(actor, StaffActor) else Author.CLIENT
        conversation_id = new_id()
        comment_id = new_id()
        now = self._clock.now()
        who = _who(actor)
        by_client = author is Author.CLIENT
        record = ConversationRecord(
            id=conversation_id,
            client_id=client_id,
            status=ConversationStatus.OPEN,
            assignee_id=assignee_id,
            sealed_subject=b"",
            created_at=now,
            created_by=who,
            notify_admins=notify_admins,
            turn=turn_after(author),
            turn_since=now,
            last_activity_at=now,
            status_changed_at=now,
            status_changed_by=who,
            comments=1,
            client_comments=1 if by_client else 0,
            staff_comments=0 if by_client else 1,
        )
        record = attrs.evolve(record, meta=attrs.evolve(record.meta, firm_id=firm_id))
        inputs = await self._attachments.intake(attachments)
        copies = await self._attachments.store_copies(firm_id, client_id, comment_id, inputs)
        try:
            seals = await self._sealer.reserve(firm_id, [client_id, client_id])
            comment = self._sealed_comment(
                firm_id, record, comment_id, actor, author, text, copies, now, seals
            )
            key = await self._notice_keys.get(firm_id)
            record = with_mac(key, self._seal_conversation(record, subject, seals))
            audience = await self._audience(firm_id, client_id, author)
            batches = [self._comment_batch(record, author, comment_id, client_name, audience)]
            if notify_admins and not by_client:
                batches.append(await self._admin_batch(record, conversation_id, client_name))
            async with self._records.transaction(firm_id) as tx:
                await tx.insert([record])
                await tx.insert([comment])
                await self._index(tx, record, moved=True)
                await self._escalation(tx, None, record)
                notified = 0
                for batch in batches:
                    notified += len(await enqueue(tx, batch, now=now, key=key))
                await audit(
                    tx,
                    subject=f"conversation:{conversation_id}",
                    operation="conversation.created",
                    actor=_audit_actor(actor),
                    at=now,
                    client=client_id,
                    objects=[f"conversation.comment:{comment_id}"],
                    by=author.value,
                    assignee=assignee_id,
                    notify_admins=notify_admins,
                    attachment_count=len(comment.attachments),
                    notified=notified,
                )
                await self._attachments.settle(tx, copies.reservation)
        except BaseException:
            await self._attachments.discard(firm_id, copies)
            raise
        return conversation_id

    @staticmethod
    def _sealed_comment(
        firm_id: str,
        c: ConversationRecord,
        comment_id: str,
        actor: StaffActor | ClientActor,
        author: Author,
        text: str,
        copies: Copies,
        now: datetime,
        seals: SealReservation,
    ) -> CommentRecord:
        author_id = (
            actor.staff_id
            if isinstance(actor, StaffActor)
            else (actor.contact_id or actor.client_id)
        )
        side = c.client_comments if author is Author.CLIENT else c.staff_comments
        comment = CommentRecord(
            id=comment_id,
            conversation_id=c.id,
            client_id=c.client_id,
            author=author,
            author_id=author_id,
            sealed_text=b"",
            created_at=now,
            number=c.comments,
            side_number=side,
            attachments=copies.stored.get(c.client_id, ()),
        )
        sealed = seals.seal(
            comment_context(firm_id, c.client_id, comment_id), comment_plaintext(comment, text)
        )
        return attrs.evolve(
            comment,
            sealed_text=sealed,
            attachments=tuple(a.stripped() for a in comment.attachments),
        )

    # -- commenting ------------------------------------------------------------------
    async def comment(
        self,
        actor: StaffActor | ClientActor,
        conversation_id: str,
        text: str,
        *,
        attachments: Sequence[Any] = (),
    ) -> str:
        """Add a comment (seed 002, "Kommentar erstellen"), with optional files.

        Whose turn it is moves to the other side. A client's comment makes a
        conversation that needed its reply open again and reopens an answered
        one (unless the host turned that off), and notifies the office
        address, the assigned administrator (e-mail and in-app) and, with
        "notify administrators", every administrator; a staff comment
        notifies the client's contacts. The notices are written in the
        comment's transaction. Returns the comment id.

        Raises:
            PermissionDeniedError: not an actor, unknown or inactive staff.
            NotFoundError: missing conversation, another client's, out of reach.
            InvalidInputError: empty or oversized text, a bad file.
            IntegrityError: the conversation does not open (tampered).
        """
        validate_text(text)
        action = "conversation.write"
        require_actor(actor, StaffActor, ClientActor, action=action)
        if not isinstance(conversation_id, str) or not conversation_id:
            raise NotFoundError("conversation", conversation_id)
        firm_id = actor.firm_id
        staff = await self._staff(actor, action) if isinstance(actor, StaffActor) else None
        if staff is None and not attachments:
            # a client writes in its own conversations only: the transaction
            # reads the conversation and refuses another client's
            assert isinstance(actor, ClientActor)
            client_id = actor.client_id
        else:  # staff reach and files both need the client before the write
            raw = await self._raw(firm_id, conversation_id)
            client_id = self._check_reach(actor, staff, raw, action)
        try:
            client = await self._directory.get_client(firm_id, client_id)
        except NotFoundError:
            raise NotFoundError("conversation", conversation_id) from None
        author = Author.CLIENT if staff is None else Author.STAFF
        comment_id = new_id()
        inputs = await self._attachments.intake(attachments)
        copies = await self._attachments.store_copies(firm_id, client_id, comment_id, inputs)
        try:
            key = await self._notice_keys.get(firm_id)
            audience = await self._audience(firm_id, client_id, author)
            await self._retrying(
                lambda: self._add_comment(
                    actor,
                    conversation_id,
                    client_id,
                    comment_id,
                    text,
                    copies,
                    client.name,
                    key,
                    audience,
                )
            )
        except BaseException:
            await self._attachments.discard(firm_id, copies)
            raise
        return comment_id

    async def _add_comment(
        self,
        actor: StaffActor | ClientActor,
        conversation_id: str,
        client_id: str,
        comment_id: str,
        text: str,
        copies: Copies,
        client_name: str,
        key: NoticeKey,
        audience: _Audience,
    ) -> None:
        """One attempt: the conversation is read, checked and written in one
        transaction; everything that awaits another service (keys, the
        directory) was fetched before it opened."""
        firm_id = actor.firm_id
        author = Author.STAFF if isinstance(actor, StaffActor) else Author.CLIENT
        seals = await self._sealer.reserve(firm_id, [client_id])
        async with self._records.transaction(firm_id) as tx:
            raw = await tx.raw.find(CONVERSATION_KIND, conversation_id)
            if raw is None or raw.parent != client_id:
                raise NotFoundError("conversation", conversation_id)
            before = check_conversation(key, _CONV.decode(raw))
            now = self._clock.now()
            status = after_comment(
                before.status,
                author,
                reopen_on_client_comment=self.settings.reopen_on_client_comment,
            )
            turn = turn_after(author)
            changed = status is not before.status
            after = attrs.evolve(
                before,
                status=status,
                turn=turn,
                turn_since=now if turn is not before.turn else before.turn_since,
                last_activity_at=now,
                comments=before.comments + 1,
                client_comments=before.client_comments + (author is Author.CLIENT),
                staff_comments=before.staff_comments + (author is Author.STAFF),
                status_changed_at=now if changed else before.status_changed_at,
                status_changed_by=_who(actor) if changed else before.status_changed_by,
            )
            comment = self._sealed_comment(
                firm_id, after, comment_id, actor, author, text, copies, now, seals
            )
            after = with_mac(key, after)
            batch = self._comment_batch(before, author, comment_id, client_name, audience)
            await tx.update([after])  # version-checked: a concurrent change retries
            await tx.insert([comment])
            await self._index(tx, after, moved=True)
            await self._escalation(tx, before, after)
            jobs = await enqueue(tx, batch, now=now, key=key, fresh=True)
            await audit(
                tx,
                subject=f"conversation:{before.id}",
                operation="conversation.commented",
                actor=_audit_actor(actor),
                at=now,
                client=before.client_id,
                objects=[f"conversation.comment:{comment_id}"],
                author=author.value,
                number=comment.number,
                attachment_count=len(comment.attachments),
                from_state=before.status.value,
                to_state=status.value,
                notified=len(jobs),
            )
            await self._attachments.settle(tx, copies.reservation)

    # -- state and assignee ----------------------------------------------------------
    async def set_status(
        self, actor: StaffActor, conversation_id: str, status: ConversationStatus
    ) -> StaffConversation:
        """Set the state (seed 002: "aufmerksam" when the client's reply is
        required, "Beantwortet" when the request is done, or open again), as
        the state machine allows; the actor and time are recorded. Returns the
        conversation as it is now.

        Raises:
            PermissionDeniedError: not a staff actor, unknown or inactive staff.
            NotFoundError: missing conversation or out of reach.
            InvalidInputError: ``status`` is no conversation status.
            IllegalTransitionError: the state machine refuses the change (a
                ``ConflictError`` naming both states); nothing is written.
        """
        require_actor(actor, StaffActor, action="conversation.write")
        if not isinstance(status, str):
            raise InvalidInputError("status", "must be a conversation status", value=status)
        [wanted] = _statuses(status) or []
        first = True
        loaded, _ = await self._reach(actor, conversation_id, "conversation.write")

        async def attempt() -> _Loaded:
            nonlocal first, loaded
            if not first:
                loaded, _ = await self._reach(actor, conversation_id, "conversation.write")
            first = False
            before = loaded.record
            to = staff_transition(before.status, wanted, conversation_id=before.id)
            now = self._clock.now()
            after = attrs.evolve(
                before, status=to, status_changed_at=now, status_changed_by=_who(actor)
            )
            after = with_mac(await self._notice_keys.get(actor.firm_id), after)
            async with self._records.transaction(actor.firm_id) as tx:
                stored = await tx.update_one(after)
                await self._index(tx, after, moved=False)
                await self._escalation(tx, before, after)
                await audit(
                    tx,
                    subject=f"conversation:{before.id}",
                    operation="conversation.status_changed",
                    actor=actor.staff_id,
                    at=now,
                    client=before.client_id,
                    from_state=before.status.value,
                    to_state=to.value,
                )
            return _Loaded(stored, loaded.subject)

        await self._retrying(attempt)
        return await self.get(actor, conversation_id)

    async def assign(
        self, actor: StaffActor, conversation_id: str, assignee_id: str | None
    ) -> StaffConversation:
        """Assign the conversation to an administrator (``None``: nobody).
        Returns the conversation as it is now.

        Raises:
            PermissionDeniedError: not a staff actor, unknown or inactive staff.
            NotFoundError: missing conversation or out of reach.
            InvalidInputError: an assignee who is unknown, no active
                administrator, or cannot see the client.
        """
        require_actor(actor, StaffActor, action="conversation.assign")
        loaded, _ = await self._reach(actor, conversation_id, "conversation.assign")
        if assignee_id is not None:
            assignee_id = await self._check_assignee(
                actor.firm_id, assignee_id, loaded.record.client_id
            )
        first = True

        async def attempt() -> _Loaded:
            nonlocal first, loaded
            if not first:
                loaded, _ = await self._reach(actor, conversation_id, "conversation.assign")
            first = False
            before = loaded.record
            if before.assignee_id == assignee_id:
                return loaded
            after = with_mac(
                await self._notice_keys.get(actor.firm_id),
                attrs.evolve(before, assignee_id=assignee_id),
            )
            async with self._records.transaction(actor.firm_id) as tx:
                stored = await tx.update_one(after)
                await self._index(tx, after, moved=False)
                await audit(
                    tx,
                    subject=f"conversation:{before.id}",
                    operation="conversation.assigned",
                    actor=actor.staff_id,
                    at=self._clock.now(),
                    client=before.client_id,
                    from_assignee=before.assignee_id,
                    to_assignee=assignee_id,
                )
            return _Loaded(stored, loaded.subject)

        await self._retrying(attempt)
        return await self.get(actor, conversation_id)

    async def notify_admins(
        self,
        actor: StaffActor,
        conversation_ids: Sequence[str],
        *,
        request_id: str | None = None,
    ) -> int:
        """The bulk action "send administrator notification for a new message"
        (seed 002): every active administrator is notified once about each of
        the chosen conversations, in one transaction. ``request_id`` makes a
        retried call send nothing twice (default: a new request). Returns how
        many notices were queued.

        Raises:
            PermissionDeniedError: not a staff actor, unknown or inactive staff.
            NotFoundError: the first id (in order) that is missing or out of
                reach; nothing is written.
            InvalidInputError: no ids, more than 500, or a bad ``request_id``.
            IntegrityError: a chosen conversation does not open (tampered).
        """
        staff = await self._staff(actor, "conversation.notify_admins")
        if isinstance(conversation_ids, str):
            raise InvalidInputError("conversation_ids", "must be a sequence of ids, not a string")
        ids = list(dict.fromkeys(conversation_ids))
        if not ids or len(ids) > MAX_BULK:
            raise InvalidInputError("conversation_ids", f"must name 1 to {MAX_BULK} conversations")
        request = new_id() if request_id is None else request_id
        if not isinstance(request, str) or not 0 < len(request) <= 64 or not request.isascii():
            raise InvalidInputError("request_id", "must be an ASCII id of at most 64 characters")
        async with self._records.transaction(actor.firm_id) as tx:
            found = await tx.raw.get_many(
                CONVERSATION_KIND, [i for i in ids if isinstance(i, str) and i]
            )
        for cid in ids:
            raw = found.get(cid) if isinstance(cid, str) else None
            if raw is None or raw.parent is None:
                raise NotFoundError("conversation", cid)
            require_reach(
                self._access,
                staff,
                [raw.parent],
                action="conversation.notify_admins",
                kind="conversation",
                id=cid,
            )
        opened = await self._open(
            actor.firm_id, [_CONV.decode(found[cid]) for cid in ids], subjects=False
        )
        loaded: list[_Loaded] = []
        for item in opened:
            if isinstance(item, IntegrityError):
                raise item
            loaded.append(item)
        clients = {
            c.id: c
            for c in await self._directory.list_clients(
                actor.firm_id, ids=sorted({x.record.client_id for x in loaded})
            )
        }
        batches = []
        for x in loaded:
            client = clients.get(x.record.client_id)
            name = client.name if client is not None else x.record.client_id
            batches.append(await self._admin_batch(x.record, f"{x.record.id}.{request}", name))
        key = await self._notice_keys.get(actor.firm_id)
        now = self._clock.now()
        async with self._records.transaction(actor.firm_id) as tx:
            notified = 0
            for batch in batches:
                notified += len(await enqueue(tx, batch, now=now, key=key))
            await audit(
                tx,
                subject=f"conversation:{ids[0]}",
                operation="conversation.admins_notified",
                actor=actor.staff_id,
                at=now,
                clients=sorted({x.record.client_id for x in loaded}),
                objects=[f"conversation:{i}" for i in ids],
                request=request,
                conversations=len(ids),
                notified=notified,
            )
        return notified

    # -- reading ---------------------------------------------------------------------
    async def _marks(self, firm_id: str, ids: Iterable[str], reader: str) -> dict[str, int]:
        wanted = [ReadMark.id_for(i, reader) for i in ids]
        async with self._records.transaction(firm_id) as tx:
            marks = await tx.get_many(ReadMark, wanted, decode_errors="skip")
        return {m.conversation_id: m.seen for m in marks.values()}

    def _staff_value(self, x: _Loaded, seen: int) -> StaffConversation:
        c = x.record
        return StaffConversation(
            id=c.id,
            client_id=c.client_id,
            subject=x.subject,
            status=c.status,
            assignee_id=c.assignee_id,
            notify_admins=c.notify_admins,
            turn=c.turn,
            turn_since=c.turn_since,
            last_activity_at=c.last_activity_at,
            created_at=c.created_at,
            created_by=c.created_by,
            status_changed_at=c.status_changed_at,
            status_changed_by=c.status_changed_by,
            comments=c.comments,
            unread=max(0, c.client_comments - seen),
        )

    @staticmethod
    def _client_value(x: _Loaded, seen: int) -> ClientConversation:
        c = x.record
        return ClientConversation(
            id=c.id,
            subject=x.subject,
            status=c.status,
            from_firm_last=c.turn is Turn.CLIENT,
            last_activity_at=c.last_activity_at,
            created_at=c.created_at,
            comments=c.comments,
            unread=max(0, c.staff_comments - seen),
        )

    async def _staff_view(self, actor: StaffActor, x: _Loaded) -> StaffConversation:
        seen = (await self._marks(actor.firm_id, [x.record.id], _reader(actor))).get(x.record.id, 0)
        return self._staff_value(x, seen)

    async def get(self, actor: StaffActor, conversation_id: str) -> StaffConversation:
        """One conversation as staff see it (with this staff member's unread count).

        Raises:
            PermissionDeniedError: not a staff actor, unknown or inactive staff.
            NotFoundError: missing conversation or out of reach.
            IntegrityError: it does not open (tampered, forgotten key).
        """
        require_actor(actor, StaffActor, action="conversation.read")
        loaded, _ = await self._reach(actor, conversation_id, "conversation.read", subject=True)
        return await self._staff_view(actor, loaded)

    async def get_for_client(self, actor: ClientActor, conversation_id: str) -> ClientConversation:
        """One of the client's own conversations.

        Raises:
            PermissionDeniedError: not a client's actor.
            NotFoundError: missing, or another client's (the same answer).
            IntegrityError: it does not open.
        """
        require_actor(actor, ClientActor, action="conversation.read")
        loaded, _ = await self._reach(actor, conversation_id, "conversation.read", subject=True)
        seen = (await self._marks(actor.firm_id, [loaded.record.id], "client")).get(
            loaded.record.id, 0
        )
        return self._client_value(loaded, seen)

    async def _entries(
        self,
        firm_id: str,
        kind: str,
        *,
        parent: str | None,
        ref: str | None,
        statuses: list[str] | None,
        after: int,
        limit: int,
    ) -> list[Record]:
        """Up to ``limit`` index entries, newest activity first, below seq
        ``after`` (0: from the newest): one indexed query per status value,
        merged (each reads at most ``limit`` rows)."""
        async with self._records.transaction(firm_id) as tx:
            found: list[Record] = []
            for status in statuses if statuses is not None else [None]:
                found.extend(
                    await tx.raw.list(
                        kind,
                        parent=parent,
                        ref=ref,
                        status=status,
                        after_seq=after,
                        descending=True,
                        limit=limit,
                    )
                )
        found.sort(key=lambda r: r.seq, reverse=True)
        return found[:limit]

    async def _page(
        self,
        firm_id: str,
        kind: str,
        *,
        parent: str | None,
        ref: str | None,
        statuses: list[str] | None,
        cursor: int | None,
        limit: int,
        visible: Callable[[str], bool],
    ) -> tuple[list[_Loaded], int | None, tuple[str, ...]]:
        after = 0 if cursor is None else cursor
        out: list[_Loaded] = []
        unreadable: list[str] = []
        next_cursor: int | None = None
        for _ in range(_SCAN_ROUNDS):
            need = limit - len(out)
            entries = await self._entries(
                firm_id,
                kind,
                parent=parent,
                ref=ref,
                statuses=statuses,
                after=after,
                limit=need + 1,
            )
            batch, more = entries[:need], len(entries) > need
            if not batch:
                next_cursor = None
                break
            after = batch[-1].seq
            chosen = [e for e in batch if e.parent is not None and visible(e.parent)]
            async with self._records.transaction(firm_id) as tx:
                raws = await tx.raw.get_many(CONVERSATION_KIND, [e.id for e in chosen])
            records: list[ConversationRecord] = []
            expected: dict[str, Record] = {}
            for e in chosen:
                raw = raws.get(e.id)
                if raw is None:  # deleted meanwhile, or a stray entry: not listed
                    log.warning("conversation index entry %s names no conversation", e.id)
                    continue
                try:
                    records.append(_CONV.decode(raw))
                    expected[e.id] = e
                except IntegrityError:
                    unreadable.append(e.id)
            for item, rec in zip(await self._open(firm_id, records), records, strict=True):
                e = expected[rec.id]
                if isinstance(item, IntegrityError):
                    unreadable.append(rec.id)
                    continue
                if not self._matches(e, item.record):
                    # its authenticated values do not match the filter: changed since
                    # the entries were read, or an entry edited (entries are unbound)
                    log.warning("conversation %s does not match its index entry; skipped", rec.id)
                    continue
                out.append(item)
            next_cursor = after if more else None
            if len(out) >= limit or not more:
                break
        for cid in unreadable:
            log.error(
                "conversation %s of firm %s does not open (tampered?); left out",
                cid,
                firm_id,
            )
        return out, next_cursor, tuple(unreadable)

    @staticmethod
    def _matches(entry: Record, c: ConversationRecord) -> bool:
        if entry.parent != c.client_id or entry.status != index_status(c.status, c.turn):
            return False
        if entry.kind == INBOX_KIND:
            return entry.ref == (c.assignee_id or UNASSIGNED)
        return entry.ref == "*"

    async def list_for_staff(
        self,
        actor: StaffActor,
        *,
        status: ConversationStatus | Iterable[ConversationStatus] | None = None,
        assignee_id: str | None = None,
        unassigned: bool = False,
        turn: Turn | None = None,
        limit: int = 50,
        cursor: int | None = None,
    ) -> ConversationPage[StaffConversation]:
        """The firm's conversations, newest activity first, with this staff
        member's unread counts: filtered by state(s), by assignee (or
        ``unassigned``) and by whose turn (``Turn.FIRM``: waiting on the firm).
        Each page is a few indexed queries whose cost follows the page, not
        the number of conversations; pass ``next_cursor`` for the next one.
        Conversations of clients out of the actor's reach are left out (a
        page may then be shorter; its cursor goes on).

        Raises:
            PermissionDeniedError: not a staff actor, unknown or inactive staff.
            InvalidInputError: a bad filter, ``limit`` outside 1..500, a bad cursor.
        """
        staff = await self._staff(actor, "conversation.read")
        statuses = _statuses(status)
        if turn is not None:
            try:
                turn = Turn(turn)
            except ValueError:
                raise InvalidInputError("turn", "must be firm or client", value=turn) from None
        if not isinstance(unassigned, bool) or (unassigned and assignee_id is not None):
            raise InvalidInputError("unassigned", "must be a bool, and not with assignee_id")
        if assignee_id is not None and (not isinstance(assignee_id, str) or not assignee_id):
            raise InvalidInputError("assignee_id", "must be a staff id", value=assignee_id)
        _check_int(limit, "limit", low=1, high=500)
        if cursor is not None:
            _check_int(cursor, "cursor", low=1)
        if assignee_id is not None or unassigned:
            kind, ref = INBOX_KIND, assignee_id or UNASSIGNED
        else:
            kind, ref = FEED_KIND, "*"
        cache: dict[str, bool] = {}

        def visible(client_id: str) -> bool:
            if client_id not in cache:
                cache[client_id] = self._access.allows(staff, "conversation.read", client_id)
            return cache[client_id]

        items, next_cursor, unreadable = await self._page(
            actor.firm_id,
            kind,
            parent=None,
            ref=ref,
            statuses=index_statuses(statuses, turn),
            cursor=cursor,
            limit=limit,
            visible=visible,
        )
        marks = await self._marks(actor.firm_id, [x.record.id for x in items], _reader(actor))
        return ConversationPage(
            [self._staff_value(x, marks.get(x.record.id, 0)) for x in items],
            next_cursor,
            unreadable,
        )

    async def list_for_client(
        self, actor: ClientActor, *, limit: int = 50, cursor: int | None = None
    ) -> ConversationPage[ClientConversation]:
        """The client's own conversations, newest activity first, with its
        unread counts.

        Raises:
            PermissionDeniedError: not a client's actor.
            InvalidInputError: ``limit`` outside 1..500, a bad cursor.
        """
        require_actor(actor, ClientActor, action="conversation.read")
        _check_int(limit, "limit", low=1, high=500)
        if cursor is not None:
            _check_int(cursor, "cursor", low=1)
        own = actor.client_id
        items, next_cursor, unreadable = await self._page(
            actor.firm_id,
            FEED_KIND,
            parent=own,
            ref=None,
            statuses=None,
            cursor=cursor,
            limit=limit,
            visible=lambda client_id: client_id == own,
        )
        marks = await self._marks(actor.firm_id, [x.record.id for x in items], "client")
        return ConversationPage(
            [self._client_value(x, marks.get(x.record.id, 0)) for x in items],
            next_cursor,
            unreadable,
        )

    async def comments(
        self,
        actor: StaffActor | ClientActor,
        conversation_id: str,
        *,
        after: int = 0,
        limit: int = 200,
        mark_read: bool = True,
    ) -> ConversationPage[Comment]:
        """The conversation's history (seed 002, "Kommentare"), oldest first,
        with authors and times; ``after`` pages on (``next_cursor``). Reading
        marks the other side's comments read up to the page's last. A comment
        that does not open is left out alone (its id in ``unreadable``).

        Raises:
            PermissionDeniedError: not an actor, unknown or inactive staff.
            NotFoundError: missing conversation, another client's, out of reach.
            InvalidInputError: ``limit`` outside 1..1000, a bad ``after``.
        """
        _check_int(limit, "limit", low=1, high=1000)
        _check_int(after, "after", low=0)
        loaded, _ = await self._reach(actor, conversation_id, "conversation.read")
        firm_id = actor.firm_id
        async with self._records.transaction(firm_id) as tx:
            raws = await tx.raw.list(
                COMMENT_KIND, parent=conversation_id, after_seq=after, limit=limit + 1
            )
        more = len(raws) > limit
        raws = list(raws[:limit])
        records: list[CommentRecord] = []
        unreadable: list[str] = []
        for raw in raws:
            try:
                m = _COMMENT.decode(raw)
            except IntegrityError:
                unreadable.append(raw.id)
                continue
            if m.client_id != loaded.record.client_id:
                unreadable.append(raw.id)
                continue
            records.append(m)
        plain = await self._sealer.open_many(
            [
                OpenRequest(comment_context(firm_id, m.client_id, m.id), m.sealed_text)
                for m in records
            ],
            return_exceptions=True,
        )
        out: list[Comment] = []
        other = Author.CLIENT if isinstance(actor, StaffActor) else Author.STAFF
        seen_upto = 0
        for m, p in zip(records, plain, strict=True):
            if isinstance(p, IntegrityError):
                unreadable.append(m.id)
                continue
            try:
                m, text = authenticated_comment(m, p)
            except IntegrityError:
                unreadable.append(m.id)
                continue
            if m.author is other:
                seen_upto = max(seen_upto, m.side_number)
            out.append(
                Comment(
                    id=m.id,
                    conversation_id=m.conversation_id,
                    author=m.author,
                    author_id=m.author_id,
                    text=text,
                    created_at=m.created_at,
                    attachments=tuple(a.info for a in m.attachments),
                    number=m.number,
                )
            )
        for cid in unreadable:
            log.error("comment %s of conversation %s does not open; left out", cid, conversation_id)
        if mark_read and seen_upto:
            await self._mark(actor, loaded.record, seen_upto)
        return ConversationPage(out, raws[-1].seq if more and raws else None, tuple(unreadable))

    async def _mark(
        self, actor: StaffActor | ClientActor, c: ConversationRecord, seen: int
    ) -> None:
        mark_id = ReadMark.id_for(c.id, _reader(actor))
        async with self._records.transaction(actor.firm_id) as tx:
            mark = await tx.find(ReadMark, mark_id)
            if mark is None:
                await tx.insert([ReadMark(mark_id, c.id, c.client_id, seen, self._clock.now())])
            elif mark.seen < seen:
                await tx.update([attrs.evolve(mark, seen=seen, at=self._clock.now())])

    async def mark_read(self, actor: StaffActor | ClientActor, conversation_id: str) -> None:
        """Mark every comment of the other side read for this reader.

        Raises:
            PermissionDeniedError / NotFoundError: as for :meth:`comments`.
        """
        loaded, _ = await self._reach(actor, conversation_id, "conversation.read")
        c = loaded.record
        await self._mark(
            actor, c, c.client_comments if isinstance(actor, StaffActor) else c.staff_comments
        )

    async def open_attachment(
        self, actor: StaffActor | ClientActor, comment_id: str, attachment_id: str
    ) -> AsyncIterator[bytes]:
        """Stream a comment's file (seed 002: the file symbol), decrypted.

        Raises:
            PermissionDeniedError: not an actor, unknown or inactive staff.
            NotFoundError: unknown comment or file, another client's, out of
                reach (the same answer).
            IntegrityError: tampered data or a forgotten client key.
        """
        require_actor(actor, StaffActor, ClientActor, action="attachment.open")
        staff = (
            await self._staff(actor, "attachment.open") if isinstance(actor, StaffActor) else None
        )
        if not isinstance(comment_id, str) or not comment_id:
            raise NotFoundError("comment", comment_id)
        async with self._records.transaction(actor.firm_id) as tx:
            raw = await tx.raw.find(COMMENT_KIND, comment_id)
        if raw is None or raw.ref is None:
            raise NotFoundError("comment", comment_id)
        if isinstance(actor, ClientActor) and raw.ref != actor.client_id:
            raise NotFoundError("comment", comment_id)
        if staff is not None:
            for action in ("conversation.read", "attachment.open"):
                require_reach(
                    self._access, staff, [raw.ref], action=action, kind="comment", id=comment_id
                )
        m = _COMMENT.decode(raw)
        [plain] = await self._sealer.open_many(
            [OpenRequest(comment_context(actor.firm_id, m.client_id, m.id), m.sealed_text)]
        )
        m, _ = authenticated_comment(m, plain)
        for stored in m.attachments:
            if stored.info.id == attachment_id:
                return self._attachments.open(actor.firm_id, m.client_id, stored)
        raise NotFoundError("attachment", attachment_id)

    # -- in-app notifications --------------------------------------------------------
    async def notifications(
        self,
        actor: StaffActor,
        *,
        unread_only: bool = False,
        limit: int = 50,
        before_seq: int = 0,
    ) -> Sequence[InAppNotification]:
        """The staff member's in-app notifications ("im Profil"), newest first.
        One that does not match its MAC (edited in the database) is left out.

        Raises:
            PermissionDeniedError: not a staff actor, unknown or inactive staff.
            InvalidInputError: ``limit`` outside 1..1000.
        """
        await self._staff(actor, "conversation.read")
        _check_int(before_seq, "before_seq", low=0)
        key = await self._notice_keys.get(actor.firm_id, create=False)
        async with self._records.transaction(actor.firm_id) as tx:
            return await list_inapp(
                tx,
                actor.staff_id,
                unread_only=unread_only,
                limit=limit,
                before_seq=before_seq,
                key=key,
            )

    async def mark_notifications_read(
        self, actor: StaffActor, notification_ids: Sequence[str]
    ) -> int:
        """Mark some of the staff member's in-app notifications read; returns
        how many changed.

        Raises:
            PermissionDeniedError: not a staff actor, unknown or inactive staff.
            NotFoundError: an id that is not one of the actor's (nothing changed).
        """
        await self._staff(actor, "conversation.read")
        if isinstance(notification_ids, str):
            raise InvalidInputError("notification_ids", "must be a sequence of ids")
        async with self._records.transaction(actor.firm_id) as tx:
            return await inapp_mark_read(
                tx, actor.staff_id, notification_ids, now=self._clock.now()
            )

    async def mark_all_notifications_read(self, actor: StaffActor) -> int:
        """Mark every in-app notification of the staff member read; returns how many.

        Raises:
            PermissionDeniedError: not a staff actor, unknown or inactive staff.
        """
        await self._staff(actor, "conversation.read")
        async with self._records.transaction(actor.firm_id) as tx:
            return await inapp_mark_all_read(tx, actor.staff_id, now=self._clock.now())

    # -- escalation ------------------------------------------------------------------
    async def escalate_due(self, *, owner: str, lease: timedelta, limit: int = 100) -> int:
        """Re-notify the conversations that have waited on the firm past the
        host's :class:`~clientcomm.conversations.models.EscalationPolicy`: the
        assignee first, then every administrator, each once (the notices' ids
        come from the conversation and the time it began to wait, so a step
        that runs twice notifies nobody twice). Each conversation fails alone.
        Returns how many schedules were processed. (The
        ``conversations.escalate`` step.)"""
        policy = self.settings.escalation
        if policy is None:
            return 0
        now = self._clock.now()
        good, bad = await self._records.claim(
            EscalationRecord,
            status=EscalationState.DUE.value,
            owner=owner,
            now=now,
            lease=lease,
            limit=limit,
        )
        for record in bad:  # a schedule that does not decode: dropped, visibly
            log.error(
                "escalation %s of firm %s does not decode; dropped", record.id, record.firm_id
            )
            async with self._records.transaction(record.firm_id) as tx:
                await tx.raw.delete(record.kind, [record.id])

        async def run(e: EscalationRecord) -> int:
            await self._escalate_one(e, policy, now)
            return 1

        return await each_alone(
            good,
            run,
            describe=lambda e: f"escalation of conversation {e.id} (firm {e.meta.firm_id})",
            logger=log,
        )

    async def _escalate_one(
        self, e: EscalationRecord, policy: EscalationPolicy, now: datetime
    ) -> None:
        firm_id = e.meta.firm_id
        released = attrs.evolve(e.meta, lease_owner=None, lease_until=None)
        async with self._records.transaction(firm_id) as tx:
            raw = await tx.raw.find(CONVERSATION_KIND, e.id)
        if raw is None:
            async with self._records.transaction(firm_id) as tx:
                await tx.update([attrs.evolve(e, meta=released)])  # lease still ours
                await tx.delete(EscalationRecord, [e.id])
            return
        [item] = await self._open(firm_id, [_CONV.decode(raw)], subjects=False)
        if isinstance(item, IntegrityError):
            raise item
        c = item.record
        level = e.level
        fired: list[tuple[str, int]] = []
        next_due: datetime | None = None
        while True:
            who, nxt, due = next_escalation(c, policy, level, now)
            if who is None:
                level, next_due = nxt, due
                break
            fired.append((who, level))
            level = nxt
        batches: list[tuple[str, NotificationBatch]] = []
        if fired:
            firm = await self._directory.get_firm(firm_id)
            staff = await self._directory.list_staff(firm_id)
            client = await self._directory.get_client(firm_id, c.client_id)
            waited = int(c.turn_since.timestamp() * 1000)
            for who, at_level in fired:
                event = NotificationEvent(
                    kind=NotificationKind.CONVERSATION_WAITING,
                    firm_id=firm_id,
                    firm_name=firm.name,
                    event_id=c.id,
                    cause_id=f"{c.id}.w{waited}.{at_level}",
                    client_id=c.client_id,
                    client_name=client.name,
                )
                plan = escalation_plan(
                    who, staff=staff, client_id=c.client_id, assignee_id=c.assignee_id
                )
                batches.append((who, prepare(event, plan, self._links)))
        key = await self._notice_keys.get(firm_id)
        async with self._records.transaction(firm_id) as tx:
            current = await tx.raw.find(CONVERSATION_KIND, c.id)
            if current is None or current.version != raw.version:
                raise ConflictError("the conversation changed; escalation runs again later")
            for who, batch in batches:
                jobs = await enqueue(tx, batch, now=now, key=key)
                await audit(
                    tx,
                    subject=f"conversation:{c.id}",
                    operation="conversation.escalated",
                    actor="system",
                    at=now,
                    client=c.client_id,
                    level=who,
                    waiting_since=bound.stamp(c.turn_since),
                    notified=len(jobs),
                )
            if next_due is None:
                await tx.update([attrs.evolve(e, meta=released)])  # fails if the lease was lost
                await tx.delete(EscalationRecord, [e.id])
            else:
                await tx.update([attrs.evolve(e, level=level, due_at=next_due, meta=released)])
