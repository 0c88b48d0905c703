"""The serial-letter run (seed 003): the host API, :class:`LetterRuns`.

The steps of the seed, as methods (each authorised as an access-policy action
and audited in the transaction of the change):

==========================================  =====================  =====================
step                                        method                 action
==========================================  =====================  =====================
create a run for a property and its units   :meth:`create`         ``letters.prepare``
upload, split by page ranges, per unit      :meth:`upload`         ``letters.prepare``
general attachments                         :meth:`add_attachment` ``letters.prepare``
edit until released                         :meth:`remove_document`, ``letters.prepare``
                                            :meth:`reassign`
1 overview (registration, preference)       :meth:`overview`       ``letters.view``
2 check: one letter, print file / per type  :meth:`download_letter` ``letters.view``
3 release into the units' portals           :meth:`release`        ``letters.release``
  remove per unit                           :meth:`remove_unit`    ``letters.release``
  delete serial letter (administrators)     :meth:`delete`         ``letters.delete``
5-9 selection, merge, registered, options   :meth:`set_selection`, ``letters.order``
                                            :meth:`set_options`
10 PDF/A download link                      :meth:`request_download` ``letters.download``
11 order / cancel / status                  :meth:`order`,          ``letters.order``,
                                            :meth:`cancel`,         ``letters.cancel``,
                                            :meth:`refresh`         ``letters.view``
==========================================  =====================  =====================

A run reaches every one of its units: a staff member who may not do the
action on one of them gets the very ``NotFoundError`` a missing run gets.

Concurrency: a run's state is read, changed, sealed and written back with the
record's version checked (a concurrent change makes the second writer's
update a :class:`~clientcomm.errors.ConflictError`; nothing is written).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs
import pypdf

from clientcomm.actors import StaffActor, require_actor
from clientcomm.attachments.models import AttachmentInput, StoredAttachment
from clientcomm.attachments.service import AttachmentStore, Copies
from clientcomm.audit import append as audit
from clientcomm.clock import Clock, SystemClock
from clientcomm.crypto.context import SealContext
from clientcomm.crypto.envelope import Sealer
from clientcomm.directory.base import Directory
from clientcomm.directory.models import Contact, Staff
from clientcomm.errors import ClientCommError, IntegrityError, InvalidInputError, NotFoundError
from clientcomm.ids import new_id
from clientcomm.letters.models import ColourMode, PrintOptions, Sides
from clientcomm.letters.pdfa import PdfaConverter
from clientcomm.letters.run_models import (
    DocumentInfo,
    LetterState,
    OrderView,
    OverviewLine,
    PageRange,
    RunView,
)
from clientcomm.letters.run_operations import split_pages
from clientcomm.letters.run_records import (
    DOC_KIND,
    DOWNLOAD_KIND,
    RUN_KIND,
    DocRecord,
    DocRole,
    DownloadRecord,
    DownloadStatus,
    RunRecord,
    RunState,
    run_owner,
)
from clientcomm.letters.selection import LetterLine, Selection, SendTo, wants_letter
from clientcomm.letters.tokens import (
    LinkClaims,
    LinkPurpose,
    LinkTokenError,
    LinkTokens,
    TokenProblem,
)
from clientcomm.notifications.keys import NoticeKeys
from clientcomm.notifications.links import LinkTemplates
from clientcomm.records import Records, bound
from clientcomm.rules.access import AccessPolicy, as_policy, require, require_reach, resolve_staff
from clientcomm.storage.base import Store

__all__ = ["FirmSetting", "LetterRuns"]

log = logging.getLogger("clientcomm.letters")

FirmSetting = Callable[[str], Awaitable[bool]]
"""``async (firm_id) -> bool``: a firm setting the host owns (manager approval)."""

_MAX_TITLE = 200
_MAX_DOC_TYPE = 100


async def _never(firm_id: str) -> bool:
    return False


def _check_text(field: str, value: object, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InvalidInputError(field, f"must be non-empty text of at most {limit} characters")
    if any(ord(c) < 32 for c in value):
        raise InvalidInputError(field, "must not contain control characters")
    return value


# -- the sealed run state -------------------------------------------------------------


@attrs.frozen
class _State:
    title: str
    property_id: str
    state: RunState
    created_at: datetime
    created_by: str
    units: tuple[str, ...]
    selection: Selection
    options: PrintOptions
    released: tuple[str, ...] = ()
    order: OrderView | None = None
    members: tuple[tuple[str, tuple[str, ...]], ...] | None = None

    def to_json(self) -> bytes:
        o = self.order
        return json.dumps(
            {
                "title": self.title,
                "property": self.property_id,
                "state": self.state.value,
                "created_at": bound.stamp(self.created_at),
                "created_by": self.created_by,
                "units": list(self.units),
                "selection": {
                    "send_to": self.selection.send_to.value,
                    "include": sorted(self.selection.include),
                    "exclude": sorted(self.selection.exclude),
                    "merge": self.selection.merge,
                },
                "options": self.options.to_dict(),
                "released": list(self.released),
                "members": None
                if self.members is None
                else [[unit, list(ids)] for unit, ids in self.members],
                "order": None
                if o is None
                else {
                    "batch": o.batch_id,
                    "ref": o.provider_ref,
                    "state": o.state,
                    "at": bound.stamp(o.ordered_at),
                    "letters": [
                        [s.letter_id, s.contact_id, s.state, s.tracking_id, s.detail]
                        for s in o.letters
                    ],
                },
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> _State:
        d = json.loads(raw)
        sel, opt, o = d["selection"], d["options"], d["order"]
        return cls(
            title=d["title"],
            property_id=d["property"],
            state=RunState(d["state"]),
            created_at=datetime.fromisoformat(d["created_at"]),
            created_by=d["created_by"],
            units=tuple(d["units"]),
            selection=Selection(
                SendTo(sel["send_to"]), sel["include"], sel["exclude"], sel["merge"]
            ),
            options=PrintOptions(
                ColourMode(opt["colour"]),
                Sides(opt["sides"]),
                opt["duplex_optimised"],
                opt["registered"],
            ),
            released=tuple(d["released"]),
            members=None
            if d["members"] is None
            else tuple((unit, tuple(ids)) for unit, ids in d["members"]),
            order=None
            if o is None
            else OrderView(
                o["batch"],
                o["ref"],
                o["state"],
                tuple(LetterState(*s) for s in o["letters"]),
                datetime.fromisoformat(o["at"]) if o["at"] else None,
            ),
        )


def _run_ctx(firm_id: str, run_id: str) -> SealContext:
    return SealContext(firm_id, run_owner(run_id), RUN_KIND, run_id, "state")


def _doc_owner(run_id: str, unit_id: str | None) -> str:
    return unit_id if unit_id is not None else run_owner(run_id)


def _doc_ctx(firm_id: str, run_id: str, unit_id: str | None, doc_id: str) -> SealContext:
    return SealContext(firm_id, _doc_owner(run_id, unit_id), DOC_KIND, doc_id, "info")


def _download_ctx(firm_id: str, run_id: str, download_id: str) -> SealContext:
    return SealContext(firm_id, run_owner(run_id), DOWNLOAD_KIND, download_id, "request")


@attrs.frozen
class _Doc:
    record: DocRecord
    info: DocumentInfo
    stored: StoredAttachment


@attrs.frozen
class _Run:
    record: RunRecord
    state: _State


class LetterRuns:
    """Serial-letter runs (see module docs). Built by
    :class:`~clientcomm.app.ClientComm` as ``app.letter_runs``.

    Args:
        approval: the firm's "Manager Freigabe" setting (host-owned; default off):
            when it answers True, only staff with
            :attr:`~clientcomm.directory.models.StaffPermission.LETTER_APPROVAL`
            receive PDF/A download links.
        download_ttl: how long a download link is valid.
    """

    def __init__(
        self,
        *,
        store: Store,
        directory: Directory,
        sealer: Sealer,
        attachments: AttachmentStore,
        notice_keys: NoticeKeys,
        links: LinkTemplates,
        clock: Clock | None = None,
        access: AccessPolicy | None = None,
        converter: PdfaConverter | None = None,
        approval: FirmSetting | None = None,
        download_ttl: timedelta = timedelta(days=7),
    ) -> None:
        self.store = store
        self.records = Records(store)
        self.directory = directory
        self.sealer = sealer
        self.attachments = attachments
        self.notice_keys = notice_keys
        self.links = links
        self.clock: Clock = clock or SystemClock()
        self.access = as_policy(access)
        self.converter = converter or PdfaConverter()
        self.approval: FirmSetting = approval or _never
        self.download_ttl = download_ttl
        self.tokens = LinkTokens(notice_keys, self.clock)

    # -- authorisation ---------------------------------------------------------------
    async def _staff(self, actor: object, action: str) -> Staff:
        require_actor(actor, StaffActor, action=action)
        assert isinstance(actor, StaffActor)
        staff = await resolve_staff(self.directory, actor.firm_id, actor.staff_id, action=action)
        require(self.access, staff, action)
        return staff

    async def _run(self, staff: Staff, run_id: object, action: str) -> _Run:
        if not isinstance(run_id, str) or not run_id:
            raise NotFoundError(RUN_KIND, run_id)
        record = await self.records.find(RunRecord, staff.firm_id, run_id)
        if record is None:
            raise NotFoundError(RUN_KIND, run_id)
        state = await self._open_state(staff.firm_id, record)
        if state.state is RunState.DELETED:
            raise NotFoundError(RUN_KIND, run_id)
        require_reach(self.access, staff, state.units, action=action, kind=RUN_KIND, id=run_id)
        return _Run(record, state)

    async def _open_state(self, firm_id: str, record: RunRecord) -> _State:
        plain = await self.sealer.open(_run_ctx(firm_id, record.id), record.sealed_state)
        try:
            state = _State.from_json(plain)
        except (ValueError, KeyError, TypeError):
            raise IntegrityError("letters.run: sealed state does not parse", id=record.id) from None
        what = f"letters.run {record.id}"
        bound.check_equal(what, "property_id", record.property_id, state.property_id)
        bound.check_equal(what, "state", record.state, state.state)
        bound.check_equal(
            what, "created_at", bound.stamp(record.created_at), bound.stamp(state.created_at)
        )
        return state

    async def _sealed(self, firm_id: str, run_id: str, state: _State) -> bytes:
        return await self.sealer.seal(_run_ctx(firm_id, run_id), state.to_json())

    def _view(self, firm_id: str, run: _Run) -> RunView:
        s = run.state
        return RunView(
            id=run.record.id,
            firm_id=firm_id,
            property_id=s.property_id,
            title=s.title,
            state=s.state,
            unit_ids=s.units,
            selection=s.selection,
            colour=s.options.colour is ColourMode.COLOUR,
            duplex=s.options.sides is Sides.DUPLEX,
            duplex_optimised=s.options.duplex_optimised,
            registered=s.options.registered,
            released_units=s.released,
            order=s.order,
            created_by=s.created_by,
            created_at=s.created_at,
        )

    # -- create ----------------------------------------------------------------------
    async def create(
        self,
        actor: StaffActor,
        *,
        property_id: str,
        title: str,
        unit_ids: Sequence[str] | None = None,
        contacts: Mapping[str, Sequence[str]] | None = None,
    ) -> RunView:
        """A new run (draft) for ``property_id`` (a client group of the firm) and
        its units: ``unit_ids`` (clients of that group), default every active
        client of the group.

        ``contacts`` (unit id -> contact ids) says who the contacts of each unit
        are when the host knows better than the Directory's per-client
        contacts: one person (one contact id) may be a contact of several
        units, e.g. an owner of two flats. Every id must be a Directory contact
        of one of the run's units. Without it, each unit's contacts are its
        Directory contacts, read when the overview is built.

        Raises:
            PermissionDeniedError: may not ``letters.prepare``.
            NotFoundError: the group, or a unit (not of the group, or out of
                reach: answered alike).
            InvalidInputError: no units, a bad title.
        """
        staff = await self._staff(actor, "letters.prepare")
        firm_id = staff.firm_id
        _check_text("title", title, _MAX_TITLE)
        groups = {g.id for g in await self.directory.list_groups(firm_id)}
        if property_id not in groups:
            raise NotFoundError("client_group", property_id)
        group_clients = await self.directory.list_clients(firm_id, group_ids=[property_id])
        by_id = {c.id: c for c in group_clients}
        if unit_ids is None:
            units = tuple(c.id for c in group_clients if c.active)
        else:
            units = tuple(dict.fromkeys(unit_ids))
            for unit in units:
                if unit not in by_id:
                    raise NotFoundError("client", unit)
        if not units:
            raise InvalidInputError("unit_ids", "a run needs at least one unit")
        require_reach(self.access, staff, units, action="letters.prepare")
        members = None
        if contacts is not None:
            known = {
                c.id
                for found in (await self.directory.list_contacts(firm_id, units)).values()
                for c in found
            }
            extra = set(contacts) - set(units)
            if extra:
                raise InvalidInputError(
                    "contacts", "names a unit not of the run", value=sorted(extra)
                )
            members = tuple((u, tuple(dict.fromkeys(contacts.get(u, ())))) for u in units)
            for _, ids in members:
                for cid in ids:
                    if cid not in known:
                        raise InvalidInputError(
                            "contacts", "is not a contact of the run's units", value=cid
                        )
        run_id = new_id()
        now = self.clock.now()
        state = _State(
            title,
            property_id,
            RunState.DRAFT,
            now,
            staff.id,
            units,
            Selection(),
            PrintOptions(),
            members=members,
        )
        record = RunRecord(
            run_id, property_id, RunState.DRAFT, now, await self._sealed(firm_id, run_id, state)
        )
        async with self.records.transaction(firm_id) as tx:
            await tx.insert([record])
            await audit(
                tx,
                subject=f"letters.run:{run_id}",
                operation="letters.run_created",
                actor=staff.id,
                at=now,
                property=property_id,
                units=len(units),
            )
        return self._view(firm_id, _Run(record, state))

    async def get(self, actor: StaffActor, run_id: str) -> RunView:
        """The run.

        Raises:
            PermissionDeniedError: may not ``letters.view``.
            NotFoundError: no such run (or deleted, or a unit out of reach).
        """
        staff = await self._staff(actor, "letters.view")
        return self._view(staff.firm_id, await self._run(staff, run_id, "letters.view"))

    # -- documents ---------------------------------------------------------------------
    async def _store_doc(
        self,
        firm_id: str,
        run_id: str,
        unit_id: str | None,
        role: DocRole,
        doc_type: str,
        filename: str,
        data: bytes,
        now: datetime,
    ) -> tuple[DocRecord, DocumentInfo, Copies]:
        doc_id = new_id()
        owner = _doc_owner(run_id, unit_id)
        prepared = self.attachments.prepare([AttachmentInput(filename, data, "application/pdf")])
        copies = await self.attachments.store_copies(firm_id, owner, doc_id, prepared)
        try:
            [stored] = copies.attachments
            pages = _page_count(data)
            info = DocumentInfo(
                doc_id, unit_id, role, doc_type, filename, pages, hashlib.sha256(data).hexdigest()
            )
            plain = bound.pack(
                {
                    "run": run_id,
                    "unit": unit_id,
                    "role": role.value,
                    "type": doc_type,
                    "filename": filename,
                    "pages": pages,
                    "sha256": info.sha256,
                    "blob": stored.blob_id,
                    "at": bound.stamp(now),
                },
                b"",
            )
            sealed = await self.sealer.seal(_doc_ctx(firm_id, run_id, unit_id, doc_id), plain)
        except BaseException:
            await self.attachments.discard(firm_id, copies)
            raise
        return DocRecord(doc_id, run_id, unit_id, role, now, sealed, (stored,)), info, copies

    async def _open_doc(self, firm_id: str, record: DocRecord) -> _Doc:
        plain = await self.sealer.open(
            _doc_ctx(firm_id, record.run_id, record.unit_id, record.id), record.sealed_info
        )
        meta, _ = bound.unpack(plain, what=f"letters.doc {record.id}")
        if meta is None or len(record.stored) != 1:
            raise IntegrityError("letters.doc: no sealed descriptor", id=record.id)
        what = f"letters.doc {record.id}"
        bound.check_equal(what, "run_id", record.run_id, meta["run"])
        bound.check_equal(what, "unit_id", record.unit_id, meta["unit"])
        bound.check_equal(what, "role", record.role.value, meta["role"])
        bound.check_equal(what, "created_at", bound.stamp(record.created_at), meta["at"])
        bound.check_equal(what, "stored", record.stored[0].blob_id, meta["blob"])
        info = DocumentInfo(
            record.id,
            record.unit_id,
            record.role,
            meta["type"],
            meta["filename"],
            meta["pages"],
            meta["sha256"],
        )
        return _Doc(record, info, record.stored[0])

    async def _docs(self, firm_id: str, run_id: str) -> list[_Doc]:
        async with self.records.transaction(firm_id) as tx:
            records = await tx.list(DocRecord, parent=run_id)
        out: list[_Doc] = []
        for record in records:
            try:
                out.append(await self._open_doc(firm_id, record))
            except ClientCommError:
                # fails alone, visibly: left out and logged
                log.error("letters.doc %s of run %s does not open; left out", record.id, run_id)
        return out

    async def _bytes(self, firm_id: str, doc: _Doc) -> bytes:
        owner = _doc_owner(doc.record.run_id, doc.record.unit_id)
        parts = [p async for p in self.attachments.open(firm_id, owner, doc.stored)]
        return b"".join(parts)

    async def upload(
        self,
        actor: StaffActor,
        run_id: str,
        *,
        filename: str,
        pdf: bytes,
        ranges: Sequence[PageRange],
    ) -> tuple[DocumentInfo, ...]:
        """Split ``pdf`` by the host's page ``ranges`` into one document per
        range, each sealed for its unit, and add them to the draft run.

        Raises:
            PermissionDeniedError: may not ``letters.prepare``.
            NotFoundError: no such run (or out of reach).
            InvalidInputError: the run is released (``field="run"``); a range
                names a unit not of the run, lies outside the PDF or overlaps
                another (``field="ranges"``); not a PDF (``field="pdf"``); a
                bad file name or type text. Nothing is written.
        """
        staff = await self._staff(actor, "letters.prepare")
        run = await self._run(staff, run_id, "letters.prepare")
        self._draft(run)
        for r in ranges:
            if r.unit_id not in run.state.units:
                raise InvalidInputError("ranges", "names a unit not of this run", value=r.unit_id)
            _check_text("doc_type", r.doc_type, _MAX_DOC_TYPE)
        parts = split_pages(pdf, ranges)
        stem = filename.rsplit(".", 1)[0] if filename else "document"
        return await self._add(
            staff,
            run,
            [
                (r.unit_id, DocRole.DOCUMENT, r.doc_type, f"{stem}-{r.first}-{r.last}.pdf", data)
                for r, data in zip(ranges, parts, strict=True)
            ],
        )

    async def add_attachment(
        self, actor: StaffActor, run_id: str, *, filename: str, pdf: bytes
    ) -> DocumentInfo:
        """Add a general attachment (every letter of the run carries it once).

        Raises:
            as :meth:`upload`.
        """
        staff = await self._staff(actor, "letters.prepare")
        run = await self._run(staff, run_id, "letters.prepare")
        self._draft(run)
        _page_count(pdf)
        [info] = await self._add(
            staff, run, [(None, DocRole.ATTACHMENT, "attachment", filename, pdf)]
        )
        return info

    async def _add(
        self,
        staff: Staff,
        run: _Run,
        items: Sequence[tuple[str | None, DocRole, str, str, bytes]],
    ) -> tuple[DocumentInfo, ...]:
        firm_id = staff.firm_id
        now = self.clock.now()
        made: list[tuple[DocRecord, DocumentInfo, Copies]] = []
        try:
            for unit_id, role, doc_type, filename, data in items:
                made.append(
                    await self._store_doc(
                        firm_id, run.record.id, unit_id, role, doc_type, filename, data, now
                    )
                )
            async with self.records.transaction(firm_id) as tx:
                await tx.update([run.record])  # the run is unchanged since read (version check)
                await tx.insert([m[0] for m in made])
                for _, _, copies in made:
                    await self.attachments.settle(tx, copies.reservation)
                await audit(
                    tx,
                    subject=f"letters.run:{run.record.id}",
                    operation="letters.documents_added",
                    actor=staff.id,
                    at=now,
                    clients=sorted({m[1].unit_id for m in made if m[1].unit_id}),
                    documents=len(made),
                    role=items[0][1].value if items else "",
                    pages=sum(m[1].pages for m in made),
                )
        except BaseException:
            for _, _, copies in made:
                await self.attachments.discard(firm_id, copies)
            raise
        return tuple(m[1] for m in made)

    def _draft(self, run: _Run) -> None:
        if run.state.state is not RunState.DRAFT:
            raise InvalidInputError("run", "documents can only be edited until they are released")

    async def documents(self, actor: StaffActor, run_id: str) -> tuple[DocumentInfo, ...]:
        """The run's documents and general attachments (a record that does not
        open is left out and logged).

        Raises:
            PermissionDeniedError, NotFoundError: as :meth:`get`.
        """
        staff = await self._staff(actor, "letters.view")
        run = await self._run(staff, run_id, "letters.view")
        return tuple(d.info for d in await self._docs(staff.firm_id, run.record.id))

    async def remove_document(self, actor: StaffActor, run_id: str, document_id: str) -> None:
        """Remove a document or attachment from the draft run.

        Raises:
            PermissionDeniedError: may not ``letters.prepare``.
            NotFoundError: no such run or document.
            InvalidInputError: the run is released.
        """
        staff = await self._staff(actor, "letters.prepare")
        run = await self._run(staff, run_id, "letters.prepare")
        self._draft(run)
        doc = await self._doc(staff.firm_id, run, document_id)
        now = self.clock.now()
        async with self.records.transaction(staff.firm_id) as tx:
            await tx.update([run.record])
            await tx.delete(DocRecord, [doc.record.id])
            await audit(
                tx,
                subject=f"letters.run:{run.record.id}",
                operation="letters.document_removed",
                actor=staff.id,
                at=now,
                client=doc.record.unit_id,
                document=doc.record.id,
                role=doc.record.role.value,
            )
        await self.attachments.discard(staff.firm_id, [doc.stored])

    async def _doc(self, firm_id: str, run: _Run, document_id: object) -> _Doc:
        if not isinstance(document_id, str) or not document_id:
            raise NotFoundError(DOC_KIND, document_id)
        record = await self.records.find(DocRecord, firm_id, document_id)
        if record is None or record.run_id != run.record.id:
            raise NotFoundError(DOC_KIND, document_id)
        return await self._open_doc(firm_id, record)

    async def reassign(
        self, actor: StaffActor, run_id: str, document_id: str, unit_id: str
    ) -> DocumentInfo:
        """Assign a document of the draft run to another unit of the run (it is
        sealed anew for that unit; the old copy is deleted).

        Raises:
            PermissionDeniedError: may not ``letters.prepare``.
            NotFoundError: no such run or document.
            InvalidInputError: the run is released; ``unit_id`` is not a unit
                of the run; the document is a general attachment.
        """
        staff = await self._staff(actor, "letters.prepare")
        run = await self._run(staff, run_id, "letters.prepare")
        self._draft(run)
        if unit_id not in run.state.units:
            raise InvalidInputError("unit_id", "is not a unit of this run", value=unit_id)
        doc = await self._doc(staff.firm_id, run, document_id)
        if doc.record.role is not DocRole.DOCUMENT:
            raise InvalidInputError("document_id", "a general attachment belongs to no unit")
        data = await self._bytes(staff.firm_id, doc)
        now = self.clock.now()
        record, info, copies = await self._store_doc(
            staff.firm_id,
            run.record.id,
            unit_id,
            DocRole.DOCUMENT,
            doc.info.doc_type,
            doc.info.filename,
            data,
            now,
        )
        try:
            async with self.records.transaction(staff.firm_id) as tx:
                await tx.update([run.record])
                await tx.delete(DocRecord, [doc.record.id])
                await tx.insert([record])
                await self.attachments.settle(tx, copies.reservation)
                await audit(
                    tx,
                    subject=f"letters.run:{run.record.id}",
                    operation="letters.document_reassigned",
                    actor=staff.id,
                    at=now,
                    clients=sorted({unit_id, doc.record.unit_id or unit_id}),
                    document=record.id,
                    from_unit=doc.record.unit_id,
                    to_unit=unit_id,
                )
        except BaseException:
            await self.attachments.discard(staff.firm_id, copies)
            raise
        await self.attachments.discard(staff.firm_id, [doc.stored])
        return info

    # -- overview ---------------------------------------------------------------------
    async def _lines(
        self, firm_id: str, state: _State, docs: Sequence[_Doc]
    ) -> tuple[list[OverviewLine], dict[str, Contact]]:
        clients = {c.id: c for c in await self.directory.list_clients(firm_id, ids=state.units)}
        found = await self.directory.list_contacts(firm_id, state.units)
        contacts: dict[str, list[Contact]]
        if state.members is None:
            contacts = {u: list(found.get(u, ())) for u in state.units}
        else:
            every = {c.id: c for cs in found.values() for c in cs}
            contacts = {u: [every[c] for c in ids if c in every] for u, ids in state.members}
        by_unit: dict[str, list[DocumentInfo]] = {}
        for d in docs:
            if d.info.unit_id is not None:
                by_unit.setdefault(d.info.unit_id, []).append(d.info)
        lines: list[OverviewLine] = []
        people: dict[str, Contact] = {}
        for unit in state.units:
            client = clients.get(unit)
            for contact in contacts.get(unit, ()):
                people.setdefault(contact.id, contact)
                letter = LetterLine(unit, contact.id, contact.registered, contact.preference)
                lines.append(
                    OverviewLine(
                        unit,
                        client.name if client else unit,
                        contact.id,
                        contact.name,
                        contact.registered,
                        contact.preference,
                        tuple(by_unit.get(unit, ())),
                        wants_letter(letter, state.selection),
                    )
                )
        return lines, people

    async def overview(self, actor: StaffActor, run_id: str) -> tuple[OverviewLine, ...]:
        """Every letter of the run: unit, contact, the contact's portal
        registration and preference, the unit's documents, and whether the
        current selection sends it by post (seed 003, step 1).

        Raises:
            PermissionDeniedError, NotFoundError: as :meth:`get`.
        """
        staff = await self._staff(actor, "letters.view")
        run = await self._run(staff, run_id, "letters.view")
        docs = await self._docs(staff.firm_id, run.record.id)
        lines, _ = await self._lines(staff.firm_id, run.state, docs)
        return tuple(lines)

    async def download_document(self, actor: StaffActor, run_id: str, document_id: str) -> bytes:
        """One document (per document type) or attachment of the run, to check
        it before release (seed 003, step 2).

        Raises:
            PermissionDeniedError, NotFoundError: as :meth:`get` (also for a
                document of another run).
        """
        staff = await self._staff(actor, "letters.view")
        run = await self._run(staff, run_id, "letters.view")
        doc = await self._doc(staff.firm_id, run, document_id)
        return await self._bytes(staff.firm_id, doc)

    # -- selection and options ------------------------------------------------------------
    async def set_selection(self, actor: StaffActor, run_id: str, selection: Selection) -> RunView:
        """Set the postal selection (filter, manual choices, merge).

        Raises:
            PermissionDeniedError: may not ``letters.order``.
            NotFoundError: as :meth:`get`.
            InvalidInputError: not a :class:`Selection`.
        """
        if not isinstance(selection, Selection):
            raise InvalidInputError("selection", "must be a Selection")
        return await self._change(actor, run_id, lambda s: attrs.evolve(s, selection=selection))

    async def set_options(
        self,
        actor: StaffActor,
        run_id: str,
        *,
        colour: bool,
        duplex: bool,
        duplex_optimised: bool = False,
        registered: bool = False,
    ) -> RunView:
        """Set the print options (colour, duplex, duplex optimisation) and
        registered mail (Einwurf-Einschreiben) of the run.

        Raises:
            PermissionDeniedError: may not ``letters.order``.
            InvalidInputError: ``duplex_optimised`` without ``duplex``.
        """
        for name, flag in (
            ("colour", colour),
            ("duplex", duplex),
            ("duplex_optimised", duplex_optimised),
            ("registered", registered),
        ):
            if not isinstance(flag, bool):
                raise InvalidInputError(name, "must be True or False")
        options = PrintOptions(
            ColourMode.COLOUR if colour else ColourMode.BLACK_WHITE,
            Sides.DUPLEX if duplex else Sides.SIMPLEX,
            duplex_optimised,
            registered,
        )
        return await self._change(actor, run_id, lambda s: attrs.evolve(s, options=options))

    async def _change(
        self, actor: StaffActor, run_id: str, change: Callable[[_State], _State]
    ) -> RunView:
        staff = await self._staff(actor, "letters.order")
        run = await self._run(staff, run_id, "letters.order")
        state = change(run.state)
        record = attrs.evolve(
            run.record, sealed_state=await self._sealed(staff.firm_id, run.record.id, state)
        )
        now = self.clock.now()
        async with self.records.transaction(staff.firm_id) as tx:
            record = await tx.update_one(record)
            sel, opt = state.selection, state.options
            await audit(
                tx,
                subject=f"letters.run:{run.record.id}",
                operation="letters.selection_set",
                actor=staff.id,
                at=now,
                send_to=sel.send_to.value,
                included=len(sel.include),
                excluded=len(sel.exclude),
                merge=sel.merge,
                colour=opt.colour.value,
                duplex=opt.sides is Sides.DUPLEX,
                optimised=opt.duplex_optimised,
                registered=opt.registered,
            )
        return self._view(staff.firm_id, _Run(record, state))

    # -- PDF/A download ---------------------------------------------------------------------
    async def verify_download_link(self, token: object) -> LinkClaims:
        """The claims of a download link's token, if genuine, for this purpose
        and not expired.

        Raises:
            LinkTokenError: refused (malformed, another purpose, changed,
                expired).
        """
        return await self.tokens.verify(token, LinkPurpose.RUN_DOWNLOAD)

    async def open_download(self, actor: StaffActor, token: object) -> AsyncIterator[bytes]:
        """The PDF/A of a download link, streamed, for a staff member it was
        sent to (the link alone is not enough: the host's web app passes the
        signed-in staff member).

        Raises:
            LinkTokenError: the token is refused, or names a download whose
                run or filter differ from the sealed request (``tampered``).
            PermissionDeniedError: may not ``letters.download``; another firm.
            NotFoundError: the download is gone, not ready, or the staff
                member is not one of its recipients.
        """
        staff = await self._staff(actor, "letters.download")
        claims = await self.verify_download_link(token)
        if claims.firm_id != staff.firm_id:
            raise NotFoundError(DOWNLOAD_KIND, claims.download_id)
        record = await self.records.find(DownloadRecord, staff.firm_id, claims.download_id)
        if record is None or record.status is not DownloadStatus.READY:
            raise NotFoundError(DOWNLOAD_KIND, claims.download_id)
        request = await self._open_request(staff.firm_id, record)
        if request["run"] != claims.run_id or request["digest"] != claims.filter_digest:
            raise LinkTokenError(TokenProblem.TAMPERED, "the link is not valid")
        if staff.id not in request["recipients"] or len(record.stored) != 1:
            raise NotFoundError(DOWNLOAD_KIND, claims.download_id)
        now = self.clock.now()
        async with self.records.transaction(staff.firm_id) as tx:
            await audit(
                tx,
                subject=f"letters.run:{record.run_id}",
                operation="letters.download_opened",
                actor=staff.id,
                at=now,
                download=record.id,
            )
        return self.attachments.open(staff.firm_id, run_owner(record.run_id), record.stored[0])

    async def _open_request(self, firm_id: str, record: DownloadRecord) -> dict[str, Any]:
        plain = await self.sealer.open(
            _download_ctx(firm_id, record.run_id, record.id), record.sealed_request
        )
        meta, _ = bound.unpack(plain, what=f"letters.download {record.id}")
        if meta is None:
            raise IntegrityError("letters.download: no sealed request", id=record.id)
        bound.check_equal(f"letters.download {record.id}", "run_id", record.run_id, meta["run"])
        return meta


def _page_count(data: bytes) -> int:
    try:
        count = len(pypdf.PdfReader(io.BytesIO(data)).pages)
    except Exception:
        raise InvalidInputError("pdf", "not a readable PDF") from None
    if count < 1:
        raise InvalidInputError("pdf", "has no pages")
    return count
