"""The announcements API (seed 004): staff publish firm announcements, the host
reports what its client users do, and the pure rules of
:mod:`clientcomm.announcements.rules` decide what each page shows.

Storage (one Store transaction per call, typed records):

* ``announcement``: one row per announcement, its current revision;
* ``announcement.user``: one row per client user, written only once the user
  closes a banner or opens "read more" (never up front, never by a page view);
* ``announcement.read``: one row per user and revision opened with "read more".

A page view costs **one indexed store read**: the firm's announcements are
kept in a per-process cache (refreshed after ``cache_ttl`` seconds and
dropped at once by every write of this service; another process's write is
seen within ``cache_ttl``), and the user's state is one row read by its id. A
page view while nothing is published reads nothing; one with an announcement
for client groups also asks the Directory for the client's groups.
"""

from __future__ import annotations

import logging
import time as _time
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, TypeVar

import attrs

from clientcomm.actors import ClientActor, StaffActor, require_actor
from clientcomm.announcements.models import (
    Announcement,
    AnnouncementState,
    AnnouncementText,
    ClientUser,
    PortalAnnouncement,
    PortalAnnouncements,
    ReadEntry,
    ReadReport,
)
from clientcomm.announcements.records import (
    AnnouncementRecord,
    AnnouncementStatus,
    Interaction,
    ReadReceipt,
    UserState,
    user_key,
)
from clientcomm.announcements.render import Rendered, render_markdown
from clientcomm.announcements.rules import (
    Dismissal,
    Notice,
    UserFacts,
    check_aware,
    check_removal,
    decide,
    dismiss,
    firm_zone,
    in_audience,
    is_published,
    log_in,
    returning,
)
from clientcomm.audit import append as audit
from clientcomm.clock import Clock, SystemClock
from clientcomm.directory.base import Directory
from clientcomm.directory.models import Staff
from clientcomm.errors import ConflictError, InvalidInputError, NotFoundError
from clientcomm.ids import new_id
from clientcomm.records import Records, RecordTx
from clientcomm.rules.access import (
    AccessPolicy,
    acting_staff,
    as_policy,
    require_reach,
)
from clientcomm.rules.audience import Audience
from clientcomm.rules.text import check_identifier, check_line, check_storable
from clientcomm.storage.base import Store

__all__ = ["DEFAULT_TIME_ZONE", "AnnouncementService"]

log = logging.getLogger("clientcomm.announcements")

DEFAULT_TIME_ZONE = "Europe/Berlin"
MAX_TITLE = 200
MAX_DESCRIPTION = 20_000
_KIND = "announcement"
_MANAGE = "announcement.manage"


@attrs.frozen
class _Live:
    """A cached announcement: the record, its rules view and its rendering."""

    record: AnnouncementRecord
    notice: Notice
    rendered: Rendered


def _notice(record: AnnouncementRecord) -> Notice:
    return Notice(
        id=record.id,
        revision=record.revision,
        publish_at=record.publish_at,
        remove_at=record.remove_at,
        everyone=record.everyone,
        group_ids=frozenset(record.group_ids),
        client_ids=frozenset(record.client_ids),
        deleted=record.status is AnnouncementStatus.DELETED,
        order=record.meta.seq,
    )


def _facts(state: UserState | None, client_id: str, group_ids: frozenset[str]) -> UserFacts:
    if state is None:
        return UserFacts(client_id=client_id, group_ids=group_ids)
    return UserFacts(
        client_id=client_id,
        group_ids=group_ids,
        logins=state.logins,
        dismissals={
            i.announcement_id: Dismissal(i.dismissed_login, i.read_revision)
            for i in state.interactions
        },
    )


def _interactions(user: UserFacts) -> tuple[Interaction, ...]:
    return tuple(
        Interaction(i, d.dismissed_login, d.read_revision)
        for i, d in sorted(user.dismissals.items())
    )


_T = TypeVar("_T")
_ATTEMPTS = 3


async def _retrying(attempt: Callable[[], Awaitable[_T]]) -> _T:
    """Run one transaction, again after a ConflictError (the same user acting
    in two requests at once: both found no state row, or the same version);
    each attempt reads afresh, so nothing is lost or doubled."""
    for left in range(_ATTEMPTS - 1, -1, -1):
        try:
            return await attempt()
        except ConflictError:
            if not left:
                raise
            log.info("announcement state changed concurrently; trying again")
    raise AssertionError("unreachable")


class AnnouncementService:
    """Firm announcements for the client portal (``app.announcements``).

    Args:
        store, directory, clock, access: as the other services.
        time_zone, time_zones: **deprecated** overrides of the firm's zone.
            "Remove after" days are meant in the firm's
            :attr:`~clientcomm.directory.models.Firm.time_zone`, read from the
            Directory (the host's source of truth; default Europe/Berlin).
            ``time_zones`` (firm id -> zone) overrides it per firm,
            ``time_zone`` for every other firm; both are kept for hosts whose
            Directory cannot carry the setting yet.
        cache_ttl: seconds a process keeps a firm's announcement list before
            reading it again (0: read it on every page view).
    """

    def __init__(
        self,
        *,
        store: Store,
        directory: Directory,
        clock: Clock | None = None,
        access: AccessPolicy | None = None,
        time_zone: str | None = None,
        time_zones: Mapping[str, str] | None = None,
        cache_ttl: float = 5.0,
    ) -> None:
        if time_zone is not None:
            firm_zone(time_zone)
        for zone in (time_zones or {}).values():
            firm_zone(zone)
        if not isinstance(cache_ttl, int | float) or cache_ttl < 0:
            raise InvalidInputError("cache_ttl", "must be a number of seconds >= 0")
        self._records = Records(store)
        self._directory = directory
        self._clock = clock or SystemClock()
        self.access = as_policy(access)
        self._zone = time_zone
        self._zones = dict(time_zones or {})
        self._ttl = float(cache_ttl)
        self._cache: dict[str, tuple[float, tuple[_Live, ...]]] = {}

    # -- helpers ---------------------------------------------------------------------
    def set_time_zone(self, firm_id: str, time_zone: str) -> None:
        """**Deprecated**: set :attr:`Firm.time_zone
        <clientcomm.directory.models.Firm.time_zone>` in the Directory instead.
        Overrides the Directory's zone for ``firm_id`` in this process from
        now on (a ``DeprecationWarning``); stored announcements keep the zone
        they were made in.

        Raises:
            InvalidInputError: an unknown zone (``field="time_zone"``) or a bad firm id.
        """
        warnings.warn(
            "AnnouncementService.set_time_zone is deprecated: set Firm.time_zone in the Directory",
            DeprecationWarning,
            stacklevel=2,
        )
        check_identifier(firm_id, "firm_id")
        firm_zone(time_zone)
        self._zones[firm_id] = time_zone

    async def zone_of(self, firm_id: str) -> str:
        """The time zone name of ``firm_id``'s "remove after" days: the firm's
        ``time_zone`` in the Directory, unless a deprecated override names one.

        Raises:
            NotFoundError: the Directory does not know the firm.
        """
        override = self._zones.get(firm_id, self._zone)
        if override is not None:
            return override
        return (await self._directory.get_firm(firm_id)).time_zone

    async def _staff(self, actor: StaffActor, action: str) -> Staff:
        return await acting_staff(self._directory, self.access, actor, action)

    def _client(self, actor: ClientActor, action: str) -> str:
        require_actor(actor, ClientActor, action=action)
        check_identifier(actor.client_id, "actor.client_id")
        if actor.contact_id is not None:
            check_identifier(actor.contact_id, "actor.contact_id")
        return user_key(actor.client_id, actor.contact_id)

    def _forget(self, firm_id: str) -> None:
        self._cache.pop(firm_id, None)

    async def _live(self, firm_id: str) -> tuple[_Live, ...]:
        """The firm's announcements that are not deleted (cached)."""
        now = _time.monotonic()
        hit = self._cache.get(firm_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        async with self._records.transaction(firm_id) as tx:
            found = await tx.list(
                AnnouncementRecord, status=AnnouncementStatus.ACTIVE.value, decode_errors="skip"
            )
        live = tuple(_Live(r, _notice(r), render_markdown(r.description)) for r in found)
        if self._ttl > 0:
            self._cache[firm_id] = (now + self._ttl, live)
        return live

    async def _groups(self, firm_id: str, client_id: str) -> frozenset[str]:
        try:
            client = await self._directory.get_client(firm_id, client_id)
        except NotFoundError:
            return frozenset()
        return client.group_ids

    def _state_of(self, record: AnnouncementRecord, now: datetime) -> AnnouncementState:
        if record.status is AnnouncementStatus.DELETED:
            return AnnouncementState.DELETED
        if now < record.publish_at:
            return AnnouncementState.SCHEDULED
        if record.remove_at is not None and now >= record.remove_at:
            return AnnouncementState.REMOVED
        return AnnouncementState.PUBLISHED

    def _public(self, record: AnnouncementRecord, now: datetime) -> Announcement:
        return Announcement(
            id=record.id,
            revision=record.revision,
            title=record.title,
            description=record.description,
            html=render_markdown(record.description).html,
            publish_at=record.publish_at,
            remove_after=None
            if record.remove_after is None
            else date.fromisoformat(record.remove_after),
            removes_at=record.remove_at,
            time_zone=record.time_zone,
            audience=Audience(
                all_active=record.everyone,
                group_ids=frozenset(record.group_ids),
                client_ids=frozenset(record.client_ids),
            ),
            state=self._state_of(record, now),
            created_at=record.created_at,
            created_by=record.created_by,
            updated_at=record.updated_at,
            updated_by=record.updated_by,
            deleted_at=record.deleted_at,
        )

    async def _validate(
        self,
        staff: Staff,
        firm_id: str,
        title: object,
        description: object,
        publish_at: object,
        remove_after: object,
        audience: object,
        now: datetime,
    ) -> tuple[str, str, datetime, datetime | None, str | None, Audience, str]:
        title_ = check_line(title, "title", max_length=MAX_TITLE, required=True).strip()
        text = check_storable(description, "description", max_length=MAX_DESCRIPTION, required=True)
        at = now if publish_at is None else check_aware(publish_at, "publish_at", now)
        zone_name = await self.zone_of(firm_id)
        remove_at = check_removal(remove_after, firm_zone(zone_name), publish_at=at, now=now)
        if audience is None:
            audience = Audience.everyone()
        if not isinstance(audience, Audience):
            raise InvalidInputError("audience", "must be an Audience")
        if not (audience.all_active or audience.group_ids or audience.client_ids):
            raise InvalidInputError("audience", "choose all clients, groups or clients")
        if audience.group_ids:
            known = {g.id for g in await self._directory.list_groups(firm_id)}
            unknown = sorted(audience.group_ids - known)
            if unknown:
                raise InvalidInputError(
                    "audience.group_ids", "names an unknown group", value=unknown[0]
                )
        if audience.client_ids:
            found = {
                c.id for c in await self._directory.list_clients(firm_id, ids=audience.client_ids)
            }
            missing = sorted(audience.client_ids - found)
            if missing:  # unknown or another firm's: one answer
                raise NotFoundError("client", ", ".join(missing))
            require_reach(self.access, staff, sorted(audience.client_ids), action=_MANAGE)
        day = None if remove_after is None else str(remove_after)
        return title_, text, at, remove_at, day, audience, zone_name

    # -- staff -----------------------------------------------------------------------
    async def create(
        self,
        actor: StaffActor,
        title: str,
        description: str,
        *,
        publish_at: datetime | None = None,
        remove_after: date | None = None,
        audience: Audience | None = None,
    ) -> Announcement:
        """Publish an announcement now, or at ``publish_at`` (timezone-aware);
        ``remove_after`` is the last day it is shown (in the firm's time zone);
        ``audience``: every client (default), client groups or picked clients
        (:class:`~clientcomm.rules.audience.Audience`). Audited as
        ``announcement.created``.

        Raises:
            PermissionDeniedError: the actor may not do ``announcement.manage``.
            InvalidInputError: an empty or over-long title or description, a naive
                or out-of-range ``publish_at``, a ``remove_after`` that is no date,
                out of range, before the publish day or past, an unknown group
                (the error names the field). Nothing is written.
        """
        staff = await self._staff(actor, _MANAGE)
        now = self._clock.now()
        title_, text, at, remove_at, day, audience_, zone = await self._validate(
            staff, actor.firm_id, title, description, publish_at, remove_after, audience, now
        )
        record = AnnouncementRecord(
            id=new_id(),
            status=AnnouncementStatus.ACTIVE,
            revision=1,
            title=title_,
            description=text,
            publish_at=at,
            remove_at=remove_at,
            remove_after=day,
            time_zone=zone,
            everyone=audience_.all_active,
            group_ids=tuple(sorted(audience_.group_ids)),
            client_ids=tuple(sorted(audience_.client_ids)),
            created_at=now,
            created_by=actor.staff_id,
            updated_at=now,
            updated_by=actor.staff_id,
        )
        async with self._records.transaction(actor.firm_id) as tx:
            stored = await tx.insert_one(record)
            await audit(
                tx,
                subject=f"announcement:{record.id}",
                operation="announcement.created",
                actor=actor.staff_id,
                at=now,
                revision=1,
                publish_at=at.isoformat(),
                remove_at=None if remove_at is None else remove_at.isoformat(),
                audience=audience_.to_dict(),
            )
        self._forget(actor.firm_id)
        return self._public(stored, now)

    async def _get_record(self, tx: RecordTx, announcement_id: object) -> AnnouncementRecord:
        if not isinstance(announcement_id, str) or not announcement_id:
            raise InvalidInputError("announcement_id", "must be a non-empty string")
        check_identifier(announcement_id, "announcement_id")
        found = await tx.find(AnnouncementRecord, announcement_id)
        if found is None:
            raise NotFoundError(_KIND, announcement_id)
        return found

    async def edit(
        self,
        actor: StaffActor,
        announcement_id: str,
        title: str,
        description: str,
        *,
        publish_at: datetime | None = None,
        remove_after: date | None = None,
        audience: Audience | None = None,
    ) -> Announcement:
        """Replace an announcement's fields as the edit form holds them: title,
        description, ``remove_after`` (None: no removal day) and ``audience``
        (None: every client); ``publish_at`` None keeps the publish time. A
        changed title or description makes a new revision (shown again at the
        next login, unread until opened). Audited as ``announcement.edited``.

        Raises:
            PermissionDeniedError: the actor may not do ``announcement.manage``.
            NotFoundError: no such announcement in the actor's firm.
            ConflictError: it was deleted, or changed concurrently.
            InvalidInputError: as :meth:`create`.
        """
        staff = await self._staff(actor, _MANAGE)
        now = self._clock.now()
        async with self._records.transaction(actor.firm_id) as tx:
            old = await self._get_record(tx, announcement_id)
        if old.status is AnnouncementStatus.DELETED:
            raise ConflictError("the announcement was deleted", id=announcement_id)
        title_, text, at, remove_at, day, audience_, zone = await self._validate(
            staff,
            actor.firm_id,
            title,
            description,
            old.publish_at if publish_at is None else publish_at,
            remove_after,
            audience,
            now,
        )
        async with self._records.transaction(actor.firm_id) as tx:
            content = title_ != old.title or text != old.description
            changed = [
                name
                for name, differs in (
                    ("title", title_ != old.title),
                    ("description", text != old.description),
                    ("publish_at", at != old.publish_at),
                    ("remove_after", day != old.remove_after),
                    (
                        "audience",
                        (
                            audience_.all_active,
                            tuple(sorted(audience_.group_ids)),
                            tuple(sorted(audience_.client_ids)),
                        )
                        != (old.everyone, old.group_ids, old.client_ids),
                    ),
                )
                if differs
            ]
            new = attrs.evolve(
                old,
                revision=old.revision + (1 if content else 0),
                title=title_,
                description=text,
                publish_at=at,
                remove_at=remove_at,
                remove_after=day,
                time_zone=zone,  # the zone the (new) removal instant was computed in
                everyone=audience_.all_active,
                group_ids=tuple(sorted(audience_.group_ids)),
                client_ids=tuple(sorted(audience_.client_ids)),
                updated_at=now,
                updated_by=actor.staff_id,
            )
            stored = await tx.update_one(new)  # version-checked: ConflictError if changed
            await audit(
                tx,
                subject=f"announcement:{old.id}",
                operation="announcement.edited",
                actor=actor.staff_id,
                at=now,
                revision=new.revision,
                changed=changed,
                publish_at=at.isoformat(),
                remove_at=None if remove_at is None else remove_at.isoformat(),
                audience=audience_.to_dict(),
            )
        self._forget(actor.firm_id)
        return self._public(stored, now)

    async def delete(self, actor: StaffActor, announcement_id: str) -> bool:
        """Delete an announcement: it disappears from the portal at once and
        stays in the staff archive. Returns False if it was deleted already.
        Audited as ``announcement.deleted``.

        Raises:
            PermissionDeniedError: the actor may not do ``announcement.manage``.
            NotFoundError: no such announcement in the actor's firm.
        """
        await self._staff(actor, _MANAGE)
        now = self._clock.now()
        async with self._records.transaction(actor.firm_id) as tx:
            old = await self._get_record(tx, announcement_id)
            if old.status is AnnouncementStatus.DELETED:
                return False
            await tx.update_one(
                attrs.evolve(
                    old,
                    status=AnnouncementStatus.DELETED,
                    deleted_at=now,
                    updated_at=now,
                    updated_by=actor.staff_id,
                )
            )
            await audit(
                tx,
                subject=f"announcement:{old.id}",
                operation="announcement.deleted",
                actor=actor.staff_id,
                at=now,
                revision=old.revision,
            )
        self._forget(actor.firm_id)
        return True

    async def get(self, actor: StaffActor, announcement_id: str) -> Announcement:
        """One announcement (deleted ones too), with its removal day and state.

        Raises:
            PermissionDeniedError: the actor may not do ``announcement.manage``.
            NotFoundError: no such announcement in the actor's firm.
        """
        await self._staff(actor, _MANAGE)
        async with self._records.transaction(actor.firm_id) as tx:
            record = await self._get_record(tx, announcement_id)
        return self._public(record, self._clock.now())

    async def _all(self, firm_id: str) -> list[AnnouncementRecord]:
        """Every announcement of the firm, newest first."""
        async with self._records.transaction(firm_id) as tx:
            return await tx.list(AnnouncementRecord, decode_errors="skip", descending=True)

    async def list_current(self, actor: StaffActor) -> list[Announcement]:
        """Scheduled and published announcements, newest publish time first,
        each with its scheduled removal (``remove_after``, ``removes_at``).

        Raises:
            PermissionDeniedError: the actor may not do ``announcement.manage``.
        """
        await self._staff(actor, _MANAGE)
        now = self._clock.now()
        shown = [self._public(r, now) for r in await self._all(actor.firm_id)]
        current = (AnnouncementState.SCHEDULED, AnnouncementState.PUBLISHED)
        return sorted(
            (a for a in shown if a.state in current),
            key=lambda a: a.publish_at,
            reverse=True,
        )

    async def archive(self, actor: StaffActor) -> list[Announcement]:
        """Past announcements (their removal day ended, or deleted), the most
        recently ended first.

        Raises:
            PermissionDeniedError: the actor may not do ``announcement.manage``.
        """
        await self._staff(actor, _MANAGE)
        now = self._clock.now()
        shown = [self._public(r, now) for r in await self._all(actor.firm_id)]
        past = (AnnouncementState.REMOVED, AnnouncementState.DELETED)

        def ended(a: Announcement) -> datetime:
            if a.deleted_at is not None and (a.removes_at is None or a.deleted_at < a.removes_at):
                return a.deleted_at
            assert a.removes_at is not None
            return a.removes_at

        return sorted((a for a in shown if a.state in past), key=ended, reverse=True)

    async def read_report(
        self, actor: StaffActor, announcement_id: str, *, revision: int | None = None
    ) -> ReadReport:
        """Read confirmation of a revision (default: the current one): who of
        the audience opened it with "read more" and which portal users (the
        registered contacts of the audience's active clients) have not, both
        scoped to the clients the actor may see.

        Raises:
            PermissionDeniedError: the actor may not do ``announcement.view_reads``.
            NotFoundError: no such announcement in the actor's firm.
            InvalidInputError: ``revision`` is not one of its revisions.
        """
        staff = await self._staff(actor, "announcement.view_reads")
        async with self._records.transaction(actor.firm_id) as tx:
            record = await self._get_record(tx, announcement_id)
            rev = record.revision if revision is None else revision
            if not isinstance(rev, int) or isinstance(rev, bool) or not 1 <= rev <= record.revision:
                raise InvalidInputError("revision", f"must be between 1 and {record.revision}")
            receipts = await tx.list(ReadReceipt, parent=f"{record.id}@{rev}", decode_errors="skip")
        notice = _notice(record)
        clients = await self._directory.list_clients(actor.firm_id, active=True)
        visible = [
            c.id
            for c in clients
            if in_audience(notice, c.id, c.group_ids)
            and self.access.allows(staff, "announcement.view_reads", c.id)
        ]
        contacts = await self._directory.list_contacts(actor.firm_id, visible)
        read = tuple(
            ReadEntry(ClientUser(r.client_id, r.contact_id), r.read_at)
            for r in sorted(receipts, key=lambda r: (r.read_at, r.id))
            if self.access.allows(staff, "announcement.view_reads", r.client_id)
        )
        done = {(e.user.client_id, e.user.contact_id) for e in read}
        not_read = tuple(
            ClientUser(client_id, c.id)
            for client_id in visible
            for c in contacts.get(client_id, ())
            if c.registered and (client_id, c.id) not in done
        )
        return ReadReport(record.id, rev, read, not_read)

    # -- client users ----------------------------------------------------------------
    async def page_view(self, actor: ClientActor) -> PortalAnnouncements:
        """What a portal page shows the client user: the banners (until closed
        or read, then again from the next login) and the home page's list, both
        newest first. Writes nothing; reads one row (the user's state), and
        nothing while no announcement is published.

        Raises:
            PermissionDeniedError: ``actor`` is not a ClientActor.
        """
        key = self._client(actor, "announcement.page_view")
        now = self._clock.now()
        live = [x for x in await self._live(actor.firm_id) if is_published(x.notice, now)]
        if not live:
            return PortalAnnouncements((), ())
        groups: frozenset[str] = frozenset()
        if any(x.notice.group_ids for x in live):
            groups = await self._groups(actor.firm_id, actor.client_id)
        async with self._records.transaction(actor.firm_id) as tx:
            state = await tx.find(UserState, key)
        decision = decide((x.notice for x in live), _facts(state, actor.client_id, groups), now)
        by_id = {x.record.id: x for x in live}

        def shown(ids: Sequence[str]) -> tuple[PortalAnnouncement, ...]:
            return tuple(
                PortalAnnouncement(
                    id=i,
                    revision=by_id[i].record.revision,
                    title=by_id[i].record.title,
                    teaser_html=by_id[i].rendered.teaser_html,
                    published_at=by_id[i].record.publish_at,
                    unread=i in decision.unread,
                )
                for i in ids
            )

        return PortalAnnouncements(shown(decision.banners), shown(decision.listed))

    async def login(self, actor: ClientActor) -> int:
        """Report that the client user logged in: banners it dismissed come
        back. Returns how many came back. Writes only when some did (a user
        that never interacted has no row and gets none). Audited as
        ``announcement.login`` when it writes.

        Raises:
            PermissionDeniedError: ``actor`` is not a ClientActor.
        """
        key = self._client(actor, "announcement.login")
        now = self._clock.now()

        async def attempt() -> int:
            async with self._records.transaction(actor.firm_id) as tx:
                state = await tx.find(UserState, key)
                if state is None:
                    return 0
                facts = _facts(state, "", frozenset())
                returned = returning(facts)
                if not returned:
                    return 0
                # read afresh (not the cache): a dismissal is dropped only with
                # its announcement, so no read mark is lost to a stale list
                live = await tx.list(
                    AnnouncementRecord,
                    status=AnnouncementStatus.ACTIVE.value,
                    decode_errors="skip",
                )
                after = log_in(facts, keep=[r.id for r in live])
                await tx.update_one(
                    attrs.evolve(state, logins=after.logins, interactions=_interactions(after))
                )
                await audit(
                    tx,
                    subject=f"client:{actor.client_id}",
                    operation="announcement.login",
                    actor=f"client:{actor.client_id}",
                    at=now,
                    client=actor.client_id,
                    objects=[f"contact:{actor.contact_id}"] if actor.contact_id else [],
                    returned=returned,
                )
            return returned

        return await _retrying(attempt)

    async def _visible(
        self,
        tx: RecordTx,
        client_id: str,
        groups: frozenset[str],
        announcement_id: object,
        now: datetime,
    ) -> AnnouncementRecord:
        """The announcement if it is published for ``client_id`` (of
        ``groups``) now; otherwise the NotFoundError a missing one gets."""
        record = await self._get_record(tx, announcement_id)
        notice = _notice(record)
        if not is_published(notice, now) or not in_audience(notice, client_id, groups):
            raise NotFoundError(_KIND, record.id)
        return record

    async def _dismiss(
        self,
        tx: RecordTx,
        actor: ClientActor,
        key: str,
        record: AnnouncementRecord,
        now: datetime,
        *,
        read: bool,
    ) -> bool:
        """Record that the user dismissed (and with ``read``: read) the
        announcement (:func:`~clientcomm.announcements.rules.dismiss`); returns
        whether the state changed."""
        state = await tx.find(UserState, key)
        facts = _facts(state, "", frozenset())
        after = dismiss(facts, _notice(record), read=read)
        if after == facts:
            return False
        if state is None:
            await tx.insert(
                [
                    UserState(
                        id=key,
                        client_id=actor.client_id,
                        contact_id=actor.contact_id,
                        logins=after.logins,
                        interactions=_interactions(after),
                        created_at=now,
                    )
                ]
            )
        else:
            await tx.update([attrs.evolve(state, interactions=_interactions(after))])
        return True

    async def close(self, actor: ClientActor, announcement_id: str) -> bool:
        """The client user closed the banner: it stays away until the next
        login (the announcement stays listed). Returns whether anything changed.
        Audited as ``announcement.dismissed`` (``via: close``) when it did.

        Raises:
            PermissionDeniedError: ``actor`` is not a ClientActor.
            NotFoundError: no announcement published for the client has this id.
        """
        key = self._client(actor, "announcement.close")
        now = self._clock.now()
        groups = await self._groups(actor.firm_id, actor.client_id)

        async def attempt() -> bool:
            async with self._records.transaction(actor.firm_id) as tx:
                record = await self._visible(tx, actor.client_id, groups, announcement_id, now)
                changed = await self._dismiss(tx, actor, key, record, now, read=False)
                if changed:
                    await self._audit_client(
                        tx, actor, record, now, "announcement.dismissed", "close"
                    )
            return changed

        return await _retrying(attempt)

    async def read_more(self, actor: ClientActor, announcement_id: str) -> AnnouncementText:
        """The client user opened "read more": returns the full text, dismisses
        the banner until the next login and confirms the revision read (audited
        as ``announcement.read`` the first time, ``announcement.dismissed`` with
        ``via: read_more`` when it only dismisses again).

        Raises:
            PermissionDeniedError: ``actor`` is not a ClientActor.
            NotFoundError: no announcement published for the client has this id.
        """
        key = self._client(actor, "announcement.read_more")
        now = self._clock.now()
        groups = await self._groups(actor.firm_id, actor.client_id)

        async def attempt() -> AnnouncementRecord:
            async with self._records.transaction(actor.firm_id) as tx:
                record = await self._visible(tx, actor.client_id, groups, announcement_id, now)
                changed = await self._dismiss(tx, actor, key, record, now, read=True)
                receipt_id = f"{record.id}@{record.revision}|{key}"
                if await tx.find(ReadReceipt, receipt_id) is None:
                    await tx.insert(
                        [
                            ReadReceipt(
                                id=receipt_id,
                                parent=f"{record.id}@{record.revision}",
                                client_id=actor.client_id,
                                contact_id=actor.contact_id,
                                announcement_id=record.id,
                                revision=record.revision,
                                read_at=now,
                            )
                        ]
                    )
                    await self._audit_client(tx, actor, record, now, "announcement.read", None)
                elif changed:
                    await self._audit_client(
                        tx, actor, record, now, "announcement.dismissed", "read_more"
                    )
            return record

        record = await _retrying(attempt)
        return AnnouncementText(
            id=record.id,
            revision=record.revision,
            title=record.title,
            html=render_markdown(record.description).html,
            published_at=record.publish_at,
        )

    async def _audit_client(
        self,
        tx: RecordTx,
        actor: ClientActor,
        record: AnnouncementRecord,
        now: datetime,
        operation: str,
        via: str | None,
    ) -> None:
        extra: dict[str, Any] = {} if via is None else {"via": via}
        await audit(
            tx,
            subject=f"announcement:{record.id}",
            operation=operation,
            actor=f"client:{actor.client_id}",
            at=now,
            client=actor.client_id,
            objects=[f"contact:{actor.contact_id}"] if actor.contact_id else [],
            revision=record.revision,
            **extra,
        )
