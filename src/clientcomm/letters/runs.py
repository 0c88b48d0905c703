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

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from clientcomm.actors import StaffActor
from clientcomm.attachments.models import AttachmentInput, StoredAttachment
from clientcomm.attachments.service import AttachmentStore, Copies
from clientcomm.audit import append as audit
from clientcomm.clock import Clock, SystemClock
from clientcomm.compliance.export import register_exporter
from clientcomm.crypto.context import SealContext
from clientcomm.crypto.envelope import Sealer
from clientcomm.directory.base import Directory
from clientcomm.directory.models import Contact, Staff
from clientcomm.errors import (
    ClientCommError,
    ConfigurationError,
    ConflictError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
)
from clientcomm.ids import new_id
from clientcomm.letters.address import check_letter
from clientcomm.letters.dispatch import (
    DispatchButton,
    DispatchFacts,
    DispatchState,
    dispatch_state,
)
from clientcomm.letters.intake import PdfIntake
from clientcomm.letters.merge import plan_letters
from clientcomm.letters.models import (
    ColourMode,
    LetterPlan,
    LetterProblem,
    PageSize,
    PartKind,
    PrintOptions,
    Requirement,
    Sides,
    TextFragment,
    ValidatedPdf,
)
from clientcomm.letters.pdfa import PdfaConverter, PdfaError, check_pdfa
from clientcomm.letters.printfile import build_print_file
from clientcomm.letters.run_models import (
    DocumentInfo,
    DownloadView,
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
from clientcomm.letters.selection import (
    LetterLine,
    Selection,
    SendTo,
    letter_documents,
    wants_letter,
)
from clientcomm.letters.tokens import (
    LinkClaims,
    LinkPurpose,
    LinkTokenError,
    LinkTokens,
    TokenProblem,
)
from clientcomm.notifications.keys import NoticeKeys
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.models import Notification, NotificationEvent, NotificationKind
from clientcomm.notifications.outbox import enqueue
from clientcomm.notifications.rules import letter_download_recipients
from clientcomm.postal.base import LetterState as LetterStateValue
from clientcomm.postal.base import PostalBatch, PostalOrder, PostalProvider
from clientcomm.records import Records, bound
from clientcomm.rules.access import (
    AccessPolicy,
    acting_staff,
    as_policy,
    require_reach,
)
from clientcomm.sharing.models import PortalDocument
from clientcomm.sharing.service import SharingService
from clientcomm.steps import each_alone
from clientcomm.storage.base import Store

if TYPE_CHECKING:
    from clientcomm.app import ClientComm

__all__ = ["FirmSetting", "LetterRuns"]

log = logging.getLogger("clientcomm.letters")

FirmSetting = Callable[[str], Awaitable[bool]]
"""``async (firm_id) -> bool``: a firm setting the host owns (manager approval)."""

_MAX_TITLE = 200
_MAX_DOC_TYPE = 100
_RELEASE_BATCH = 100
"""Units released between two writes of the run's state (and audit records)."""


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
    shares: tuple[tuple[str, tuple[str, ...]], ...] = ()
    orders: int = 0
    releasing: bool = False
    run_id: str = ""

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
                "shares": [[unit, list(ids)] for unit, ids in self.shares],
                "orders": self.orders,
                "releasing": self.releasing,
                "run": self.run_id,
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
            shares=tuple((unit, tuple(ids)) for unit, ids in d["shares"]),
            orders=int(d["orders"]),
            releasing=bool(d["releasing"]),
            run_id=d["run"],
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
    sizes: tuple[PageSize, ...] = ()
    text: tuple[TextFragment, ...] = ()


@attrs.frozen
class _Run:
    record: RunRecord
    state: _State


class LetterRuns:
    """Serial-letter runs (see module docs). Built by
    :class:`~clientcomm.app.ClientComm` as ``app.letter_runs``.

    Args:
        approval: an override of the firm's "Manager Freigabe" setting, which
            is otherwise read from the Directory
            (:attr:`~clientcomm.directory.models.Firm.letter_approval`, default
            off): when the setting is on, only staff with
            :attr:`~clientcomm.directory.models.StaffPermission.LETTER_APPROVAL`
            receive PDF/A download links. A host whose Directory cannot carry
            the flag passes ``async (firm_id) -> bool`` here; it then decides
            alone.
        download_ttl: how long a download link is valid.
        intake: part 1's PDF intake for uploads (default: one started on first
            use with one worker process; :meth:`aclose` stops it).
        provider: the postal provider (:class:`~clientcomm.postal.PostalProvider`;
            ``ClientComm(postal=...)`` passes it); without one, the dispatch
            button shows "feature unavailable" and ordering raises
            ``ConfigurationError``. The attribute may still be set later.
        sharing: the portal sharing service releases go through (the app's).
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
        intake: PdfIntake | None = None,
        provider: PostalProvider | None = None,
        sharing: SharingService | None = None,
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
        self.approval: FirmSetting | None = approval
        self.download_ttl = download_ttl
        self.tokens = LinkTokens(notice_keys, self.clock)
        self.intake = intake
        self._own_intake = False
        self.provider = provider
        self.sharing = sharing

    # -- authorisation ---------------------------------------------------------------
    async def _staff(self, actor: object, action: str) -> Staff:
        return await acting_staff(self.directory, self.access, actor, action)

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
        bound.check_equal(what, "id", record.id, state.run_id)
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
        # a unit out of reach answers as the missing property (never naming it)
        require_reach(
            self.access, staff, units, action="letters.prepare", kind="client_group", id=property_id
        )
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
            run_id=run_id,
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
        pdf: ValidatedPdf,
        now: datetime,
    ) -> tuple[DocRecord, DocumentInfo, Copies]:
        doc_id = new_id()
        owner = _doc_owner(run_id, unit_id)
        prepared = self.attachments.prepare(
            [AttachmentInput(pdf.filename, pdf.data, "application/pdf")]
        )
        copies = await self.attachments.store_copies(firm_id, owner, doc_id, prepared)
        try:
            [stored] = copies.attachments
            info = DocumentInfo(
                doc_id, unit_id, role, doc_type, pdf.filename, pdf.page_count, pdf.sha256
            )
            plain = bound.pack(
                {
                    "run": run_id,
                    "unit": unit_id,
                    "role": role.value,
                    "type": doc_type,
                    "filename": pdf.filename,
                    "pages": pdf.page_count,
                    "sha256": pdf.sha256,
                    "blob": stored.blob_id,
                    "at": bound.stamp(now),
                    "sizes": [[z.width, z.height] for z in pdf.page_sizes],
                    "text": [[t.x, t.y, t.text] for t in pdf.first_page_text],
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
        sizes = tuple(PageSize(float(w), float(h)) for w, h in meta.get("sizes", ()))
        text = tuple(TextFragment(float(x), float(y), str(t)) for x, y, t in meta.get("text", ()))
        return _Doc(record, info, record.stored[0], sizes, text)

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
        whole = await self._intake().avalidate(filename, pdf)
        parts = await asyncio.to_thread(split_pages, whole.data, ranges)
        stem = filename.rsplit(".", 1)[0] if filename else "document"
        names = [f"{stem}-{r.first}-{r.last}.pdf" for r in ranges]
        checked = await self._intake().avalidate_many(
            list(zip(names, parts, strict=True)), first_page_text=True
        )
        for result in checked:
            if isinstance(result, BaseException):
                raise result
        return await self._add(
            staff,
            run,
            [
                (r.unit_id, DocRole.DOCUMENT, r.doc_type, v)
                for r, v in zip(ranges, checked, strict=True)
                if isinstance(v, ValidatedPdf)
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
        checked = await self._intake().avalidate(filename, pdf)
        [info] = await self._add(staff, run, [(None, DocRole.ATTACHMENT, "attachment", checked)])
        return info

    async def _add(
        self,
        staff: Staff,
        run: _Run,
        items: Sequence[tuple[str | None, DocRole, str, ValidatedPdf]],
    ) -> tuple[DocumentInfo, ...]:
        firm_id = staff.firm_id
        now = self.clock.now()
        made: list[tuple[DocRecord, DocumentInfo, Copies]] = []
        try:
            for unit_id, role, doc_type, data in items:
                made.append(
                    await self._store_doc(
                        firm_id, run.record.id, unit_id, role, doc_type, data, now
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

    @staticmethod
    def _validated(doc: _Doc, data: bytes) -> ValidatedPdf:
        """A stored document as part 1's value: it passed intake when it was
        added; its bytes are checked against the sealed SHA-256."""
        pdf = ValidatedPdf(doc.info.filename, data, doc.sizes, doc.text)
        if pdf.sha256 != doc.info.sha256 or len(doc.sizes) != doc.info.pages:
            raise IntegrityError("letters.doc: bytes differ from the sealed descriptor")
        return pdf

    def _intake(self) -> PdfIntake:
        if self.intake is None:
            self.intake = PdfIntake(workers=1)
            self._own_intake = True
        return self.intake

    async def aclose(self) -> None:
        """Stop the PDF intake pool this service started (not one passed in)."""
        if self._own_intake and self.intake is not None:
            await self.intake.aclose()
            self.intake = None
            self._own_intake = False

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
            self._validated(doc, data),
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

    # -- composing letters (part 1's merge, padding, print file) ------------------------
    async def _compose(
        self, firm_id: str, state: _State, *, selection: Selection | None = None
    ) -> tuple[list[LetterPlan], dict[str, Contact], int]:
        """The letters of the run under ``selection`` (default: the run's),
        each document checked against its sealed SHA-256; and how many
        documents could not be opened (left out, logged)."""
        docs = await self._docs(firm_id, state.run_id)
        lines, people = await self._lines(firm_id, state, docs)
        pdfs: dict[str, list[ValidatedPdf]] = {}
        attachments: list[ValidatedPdf] = []
        failed = 0
        for d in docs:
            try:
                pdf = self._validated(d, await self._bytes(firm_id, d))
            except ClientCommError:
                failed += 1
                log.error("letters.doc %s does not open; left out of the letters", d.record.id)
                continue
            if d.record.role is DocRole.ATTACHMENT:
                attachments.append(pdf)
            elif d.record.unit_id is not None:
                pdfs.setdefault(d.record.unit_id, []).append(pdf)
        letter_lines = [
            LetterLine(x.unit_id, x.contact_id, x.registered, x.preference) for x in lines
        ]
        chosen = selection or state.selection
        documents = letter_documents(letter_lines, chosen, pdfs)
        plans = plan_letters(documents, attachments, people, state.options, merge=chosen.merge)
        return list(plans), people, failed

    async def download_letter(
        self, actor: StaffActor, run_id: str, contact_id: str, *, unit_id: str | None = None
    ) -> bytes:
        """One contact's letter as the postal print file would hold it (its
        unit's documents, or with merge on all its units', the general
        attachments once, padding as the print options say), to check it
        before release (seed 003, step 2). ``unit_id`` picks one unit's letter
        of a contact with several when merge is off. Per document type:
        :meth:`download_document`.

        Raises:
            PermissionDeniedError, NotFoundError: as :meth:`get`; a contact
                with no letter in the run is a NotFoundError too.
        """
        staff = await self._staff(actor, "letters.view")
        run = await self._run(staff, run_id, "letters.view")
        everyone = attrs.evolve(run.state.selection, send_to=SendTo.ALL, exclude=frozenset())
        plans, _, _ = await self._compose(staff.firm_id, run.state, selection=everyone)
        chosen = [
            p
            for p in plans
            if p.contact.id == contact_id
            and (
                unit_id is None
                or any(part.label == unit_id for part in p.parts if part.kind is PartKind.DOCUMENT)
            )
        ]
        if not chosen:
            raise NotFoundError("letter", contact_id)
        printed = await asyncio.to_thread(build_print_file, chosen[:1], run.state.options)
        return printed.data

    # -- release into the portals (through the sharing capability) ------------------------
    async def release(
        self,
        actor: StaffActor,
        run_id: str,
        *,
        case_files: Mapping[str, str],
        folder_name: str | None = None,
        notify: bool = True,
    ) -> RunView:
        """Release the run into its units' portals (seed 003, step 3): for each
        unit with documents, a folder (``folder_name``, default the run's
        title) in the unit's portal under the unit's case file
        (``case_files``: unit id -> the host's case file of that unit), holding
        the unit's documents and the general attachments, each sealed for that
        client by the sharing capability, which also sends the "new
        documents" e-mail notice to the unit's registered contacts, unless
        ``notify=False`` (the optional notice of issue 16: then no notice is
        written; ``letters.released`` and each ``share.created`` record
        ``notify``/``notified=False``). A resumed release applies the
        ``notify`` of the call that shares a unit.

        A unit whose client has no portal access (no registered contact) is
        left out: it has no portal, its contacts get the letters by post.

        Resumable: the run's state records the units released every
        100 units; a release stopped part way (a crash, a refused unit) is
        finished by calling it again, which asks sharing (``visibility`` of
        the documents' host ids) which of the units not recorded already hold
        their documents, so none is shared twice (a folder created just before
        a crash may stay empty).
        The run is ``released`` once every unit with documents is.

        Raises:
            PermissionDeniedError: may not ``letters.release``; sharing's own
                refusals (no portal permission, not handler or assistant of
                the case file).
            NotFoundError: as :meth:`get`; a case file out of reach.
            InvalidInputError: a unit with documents has no case file
                (``field="case_files"``); the run has no documents;
                ``notify`` not a bool.
            ConfigurationError: no sharing service.
        """
        staff = await self._staff(actor, "letters.release")
        run = await self._run(staff, run_id, "letters.release")
        if not isinstance(notify, bool):
            raise InvalidInputError("notify", "must be True or False", value=repr(notify))
        if self.sharing is None:
            raise ConfigurationError("releasing letters needs the sharing service")
        firm_id = staff.firm_id
        docs = await self._docs(firm_id, run.record.id)
        attachments = [d for d in docs if d.record.role is DocRole.ATTACHMENT]
        by_unit: dict[str, list[_Doc]] = {}
        for d in docs:
            if d.record.role is DocRole.DOCUMENT and d.record.unit_id is not None:
                by_unit.setdefault(d.record.unit_id, []).append(d)
        if not by_unit:
            raise InvalidInputError("run", "has no documents to release")
        # units whose client has no portal access (no registered contact) have
        # no portal to release into: their contacts get the letters by post
        contacts = await self.directory.list_contacts(firm_id, list(by_unit))
        for unit in [u for u in by_unit if not any(c.registered for c in contacts.get(u, ()))]:
            del by_unit[unit]
        missing = sorted(u for u in by_unit if u not in case_files)
        if missing:
            raise InvalidInputError("case_files", "no case file for units", value=missing)
        name = folder_name or run.state.title
        released = dict(run.state.shares)
        record = run.record
        state = run.state
        resuming = state.releasing
        if not resuming:
            # the intent first: a call stopped part way is known as such, and
            # the next one asks sharing what it already holds (no duplicates)
            state = attrs.evolve(state, releasing=True)
            record = await self._store_state(firm_id, record, state)
        pending: list[str] = []
        documents_done = 0

        async def flush(final: bool) -> None:
            nonlocal record, state, pending, documents_done
            done = all(u in released for u in by_unit)
            if not pending and not (final and done):
                return
            state = attrs.evolve(
                state,
                shares=tuple(released.items()),
                released=tuple(u for u in state.units if u in released),
                releasing=not (final and done),
                state=RunState.RELEASED if final and done else state.state,
            )
            record = await self._write(
                staff,
                attrs.evolve(record, state=state.state),
                state,
                "letters.released",
                clients=pending,
                units=len(pending),
                documents=documents_done,
                notify=notify,
            )
            pending, documents_done = [], 0

        for unit in state.units:
            if unit not in by_unit or unit in released:
                continue
            case_id = case_files[unit]
            ours = [*by_unit[unit], *attachments]
            host_ids = [f"letters-{d.record.id}" for d in ours]
            if resuming:
                markers = await self.sharing.visibility(actor, case_id, host_ids)
                live = [
                    [m for m in markers.get(h, ()) if m.client_id == unit and m.ended_at is None]
                    for h in host_ids
                ]
                if all(live):
                    released[unit] = tuple(found[-1].share_id for found in live)
                    pending.append(unit)
                    continue
            folder = await self.sharing.create_folder(actor, case_id, name, client_id=unit)
            documents = [
                PortalDocument(
                    d.info.filename, await self._bytes(firm_id, d), "application/pdf", document_id=h
                )
                for d, h in zip(ours, host_ids, strict=True)
            ]
            receipt = await self.sharing.share(
                actor, case_id, documents, folder_id=folder.id, client_id=unit, notify=notify
            )
            released[unit] = receipt.share_ids
            pending.append(unit)
            documents_done += len(documents)
            if len(pending) >= _RELEASE_BATCH:
                await flush(False)
        await flush(True)
        return self._view(firm_id, _Run(record, state))

    async def _write(
        self,
        staff: Staff,
        record: RunRecord,
        state: _State,
        operation: str,
        *,
        clients: Sequence[str] = (),
        client: str | None = None,
        **details: Any,
    ) -> RunRecord:
        sealed = await self._sealed(staff.firm_id, record.id, state)
        changed = attrs.evolve(record, state=state.state, sealed_state=sealed)
        async with self.records.transaction(staff.firm_id) as tx:
            changed = await tx.update_one(changed)
            await audit(
                tx,
                subject=f"letters.run:{record.id}",
                operation=operation,
                actor=staff.id,
                at=self.clock.now(),
                clients=clients,
                client=client,
                **details,
            )
        return changed

    async def remove_unit(self, actor: StaffActor, run_id: str, unit_id: str) -> RunView:
        """Remove one unit's released documents from its portal (the shares
        are ended through the sharing capability; the audit keeps them).

        Raises:
            PermissionDeniedError: may not ``letters.release``.
            NotFoundError: as :meth:`get`; the unit has nothing released.
        """
        staff = await self._staff(actor, "letters.release")
        run = await self._run(staff, run_id, "letters.release")
        shares = dict(run.state.shares)
        if unit_id not in shares:
            raise NotFoundError("letters.unit", unit_id)
        await self._end_shares(actor, shares[unit_id])
        del shares[unit_id]
        state = attrs.evolve(
            run.state,
            shares=tuple(shares.items()),
            released=tuple(u for u in run.state.released if u != unit_id),
        )
        record = await self._write(
            staff, run.record, state, "letters.unit_removed", client=unit_id, unit=unit_id
        )
        return self._view(staff.firm_id, _Run(record, state))

    async def _end_shares(self, actor: StaffActor, share_ids: Sequence[str]) -> None:
        assert self.sharing is not None
        for share_id in share_ids:
            try:
                await self.sharing.end(actor, share_id)
            except ConflictError:
                continue  # ended already (a repeated removal)

    async def delete(self, actor: StaffActor, run_id: str) -> None:
        """ "Serienbrief löschen": remove every released document of the run
        from every unit's portal, and delete the run: its documents and
        attachments are deleted and the run's key owner forgotten. Only
        administrators may (``letters.delete``). Resumable: a deletion
        stopped part way is finished by calling it again.

        Raises:
            PermissionDeniedError: may not ``letters.delete``.
            NotFoundError: as :meth:`get`.
            ConflictError: the postal dispatch is ordered and still cancellable
                (cancel it first; once in production the letters go anyway).
        """
        staff = await self._staff(actor, "letters.delete")
        run = await self._run(staff, run_id, "letters.delete")
        order = run.state.order
        if (
            order is not None
            and order.state == "ordered"
            and all(x.state == LetterStateValue.ORDERED.value for x in order.letters)
        ):
            raise ConflictError("the postal dispatch is ordered and cancellable: cancel it first")
        firm_id = staff.firm_id
        for _, share_ids in run.state.shares:
            await self._end_shares(actor, share_ids)
        docs = await self._docs(firm_id, run.record.id)
        async with self.records.transaction(firm_id) as tx:
            records = await tx.list(DocRecord, parent=run.record.id)
            downloads = await tx.list(DownloadRecord, parent=run.record.id, decode_errors="skip")
        state = attrs.evolve(run.state, state=RunState.DELETED, shares=(), released=())
        sealed = await self._sealed(firm_id, run.record.id, state)
        async with self.records.transaction(firm_id) as tx:
            await tx.update([attrs.evolve(run.record, state=RunState.DELETED, sealed_state=sealed)])
            await tx.delete(DocRecord, [r.id for r in records])
            await tx.delete(DownloadRecord, [r.id for r in downloads])
            await audit(
                tx,
                subject=f"letters.run:{run.record.id}",
                operation="letters.deleted",
                actor=staff.id,
                at=self.clock.now(),
                clients=sorted(run.state.released),
                units=len(run.state.released),
                documents=len(records),
            )
        await self.attachments.discard(firm_id, [d.stored for d in docs])
        await self.attachments.discard(firm_id, [a for r in downloads for a in r.stored])

    # -- postal dispatch ------------------------------------------------------------------
    async def dispatch(self, actor: StaffActor, run_id: str) -> DispatchState:
        """The dispatch button (part 1's four states with reasons) for the run
        as it stands (seed 003, step 11).

        Raises:
            PermissionDeniedError, NotFoundError: as :meth:`get`.
        """
        staff = await self._staff(actor, "letters.view")
        run = await self._run(staff, run_id, "letters.view")
        return (await self._dispatch(staff.firm_id, run))[0]

    async def _dispatch(
        self, firm_id: str, run: _Run
    ) -> tuple[DispatchState, list[LetterPlan], dict[str, Contact]]:
        order = run.state.order
        if self.provider is None:
            return dispatch_state(DispatchFacts(False, 0)), [], {}
        caps = await self.provider.capabilities(firm_id)
        if order is not None and order.state == "ordered":
            cancellable = bool(order.letters) and all(
                s.state == LetterStateValue.ORDERED.value for s in order.letters
            )
            facts = DispatchFacts(
                caps.available, len(order.letters), ordered=True, cancellable=cancellable
            )
            return dispatch_state(facts), [], {}
        plans, people, failed = await self._compose(firm_id, run.state)
        problems: list[LetterProblem] = []
        for plan in plans:
            problems.extend(check_letter(plan, run.state.options))
        if failed:
            problems.append(
                LetterProblem("", "", Requirement.PROVIDER, f"{failed} document(s) do not open")
            )
        if run.state.state is not RunState.RELEASED:
            problems.append(
                LetterProblem(
                    "", "", Requirement.PROVIDER, "release the documents in the portal first"
                )
            )
        facts = DispatchFacts(caps.available, len(plans), tuple(problems))
        return dispatch_state(facts), plans, people

    async def order(self, actor: StaffActor, run_id: str) -> RunView:
        """Order the postal dispatch of the run's selected letters through the
        provider (seed 003, step 11, green button). Idempotent: the batch id
        is fixed before the provider is called, so a retried call (after a
        lost reply or a crash) orders once; calling it on an ordered run
        returns it unchanged.

        Raises:
            PermissionDeniedError: may not ``letters.order``.
            NotFoundError: as :meth:`get`.
            ConflictError: the dispatch is not orderable now: the button's
                state and reasons are in the message and ``context``.
            TemporaryDeliveryError, PermanentDeliveryError: the provider failed
                (the run keeps its pending batch id; call again).
            ConfigurationError: no postal provider is configured
                (``ClientComm(postal=...)``); nothing is written.
        """
        staff = await self._staff(actor, "letters.order")
        run = await self._run(staff, run_id, "letters.order")
        order = run.state.order
        if order is not None and order.state == "ordered":
            return self._view(staff.firm_id, run)
        if self.provider is None:
            raise ConfigurationError(
                "ordering letters needs a postal provider: pass ClientComm(postal=...)"
            )
        button, plans, people = await self._dispatch(staff.firm_id, run)
        if button.button is not DispatchButton.ORDERABLE:
            raise ConflictError(
                f"the dispatch cannot be ordered: {button.button.value}"
                + "".join(f"; {r.value}" for r in button.reasons)
                + "".join(f"; {p}" for p in button.problems[:5]),
                button=button.button.value,
                reasons=[r.value for r in button.reasons],
            )
        assert self.provider is not None
        record = run.record
        if order is None or order.state == "cancelled":
            seq = run.state.orders + 1
            batch_id = f"run-{run.record.id}-{seq}"
            pending = OrderView(batch_id, "", "pending", ())
            state = attrs.evolve(run.state, order=pending, orders=seq)
            record = await self._store_state(staff.firm_id, record, state)
            run = _Run(record, state)
        assert run.state.order is not None
        batch_id = run.state.order.batch_id
        printed = await asyncio.to_thread(build_print_file, plans, run.state.options)
        batch = PostalBatch.from_print_file(staff.firm_id, batch_id, printed, people)
        placed = await self.provider.order(batch)
        state = attrs.evolve(run.state, order=self._order_view(placed, "ordered", self.clock.now()))
        record = await self._write(
            staff,
            run.record,
            state,
            "letters.ordered",
            batch=batch_id,
            provider=self.provider.name,
            letters=len(placed.letters),
            registered=run.state.options.registered,
        )
        return self._view(staff.firm_id, _Run(record, state))

    async def _store_state(self, firm_id: str, record: RunRecord, state: _State) -> RunRecord:
        sealed = await self._sealed(firm_id, record.id, state)
        async with self.records.transaction(firm_id) as tx:
            return await tx.update_one(attrs.evolve(record, sealed_state=sealed))

    @staticmethod
    def _order_view(placed: PostalOrder, state: str, at: datetime | None) -> OrderView:
        return OrderView(
            placed.batch_id,
            placed.provider_ref,
            state,
            tuple(
                LetterState(s.letter_id, s.contact_id, s.state.value, s.tracking_id, s.detail)
                for s in placed.letters
            ),
            at,
        )

    async def cancel(self, actor: StaffActor, run_id: str) -> RunView:
        """Cancel the ordered dispatch (red button) while the provider allows.

        Raises:
            PermissionDeniedError: may not ``letters.cancel``.
            NotFoundError: as :meth:`get`; nothing is ordered.
            ConflictError: the provider has started production.
        """
        staff = await self._staff(actor, "letters.cancel")
        run = await self._run(staff, run_id, "letters.cancel")
        order = run.state.order
        if order is None or order.state not in ("ordered", "pending") or self.provider is None:
            raise NotFoundError("postal_batch", run_id)
        placed = await self.provider.cancel(staff.firm_id, order.batch_id)
        state = attrs.evolve(
            run.state, order=self._order_view(placed, "cancelled", order.ordered_at)
        )
        record = await self._write(
            staff,
            run.record,
            state,
            "letters.cancelled",
            batch=order.batch_id,
            letters=len(placed.letters),
        )
        return self._view(staff.firm_id, _Run(record, state))

    async def refresh(self, actor: StaffActor, run_id: str) -> RunView:
        """Take the provider's letter states and tracking ids into the run.

        Raises:
            PermissionDeniedError, NotFoundError: as :meth:`get` (``letters.view``).
        """
        staff = await self._staff(actor, "letters.view")
        run = await self._run(staff, run_id, "letters.view")
        order = run.state.order
        if order is None or order.state != "ordered" or self.provider is None:
            return self._view(staff.firm_id, run)
        placed = await self.provider.status(staff.firm_id, order.batch_id)
        fresh = self._order_view(placed, "ordered", order.ordered_at)
        if fresh == order:
            return self._view(staff.firm_id, run)
        counts: dict[str, int] = {}
        for s in fresh.letters:
            counts[s.state] = counts.get(s.state, 0) + 1
        state = attrs.evolve(run.state, order=fresh)
        record = await self._write(
            staff, run.record, state, "letters.status_updated", batch=order.batch_id, states=counts
        )
        return self._view(staff.firm_id, _Run(record, state))

    # -- PDF/A download: request --------------------------------------------------------------
    async def request_download(self, actor: StaffActor, run_id: str) -> DownloadView:
        """Request the download link for the run as PDF/A-2b (seed 003, step
        10): the letters of the contacts the current filter selects ("send to
        all contacts" gives the complete run), produced in the background
        (``letters.pdfa`` step), checked, stored sealed, and e-mailed as a
        signed, expiring link, to the requester, or, with the firm's manager
        approval on, only to the staff holding ``letter_approval``.

        Raises:
            PermissionDeniedError: may not ``letters.download``.
            NotFoundError: as :meth:`get`.
            InvalidInputError: the filter selects no letter, or nobody can
                receive the link (no address, or with approval on nobody
                holding ``letter_approval``).
        """
        staff = await self._staff(actor, "letters.download")
        run = await self._run(staff, run_id, "letters.download")
        firm_id = staff.firm_id
        plans, _, _ = await self._compose(firm_id, run.state)
        if not plans:
            raise InvalidInputError("selection", "the filter selects no letter")
        approval = await self._approval(firm_id)
        plan = letter_download_recipients(
            await self.directory.list_staff(firm_id),
            requester_id=staff.id,
            approval_required=approval,
        )
        if not plan.recipients:
            raise InvalidInputError("recipients", "nobody can receive the download link")
        digest = run.state.selection.digest()
        download_id = new_id()
        refs = [r.ref.removeprefix("staff:") for r in plan.recipients]
        now = self.clock.now()
        request = bound.pack(
            {
                "run": run.record.id,
                "digest": digest,
                "selection": json.loads(run.state.to_json())["selection"],
                "requester": staff.id,
                "approval": approval,
                "recipients": refs,
                "letters": len(plans),
            },
            b"",
        )
        sealed = await self.sealer.seal(_download_ctx(firm_id, run.record.id, download_id), request)
        record = DownloadRecord(
            download_id, run.record.id, DownloadStatus.PENDING, now, now, sealed
        )
        async with self.records.transaction(firm_id) as tx:
            await tx.insert([record])
            await audit(
                tx,
                subject=f"letters.run:{run.record.id}",
                operation="letters.download_requested",
                actor=staff.id,
                at=now,
                download=download_id,
                filter=digest,
                letters=len(plans),
                approval=approval,
                recipients=len(refs),
            )
        return DownloadView(
            download_id, run.record.id, DownloadStatus.PENDING, digest, len(plans), tuple(refs)
        )

    async def _approval(self, firm_id: str) -> bool:
        """The firm's "Manager Freigabe": the host's override if one is set,
        else ``Firm.letter_approval`` from the Directory."""
        if self.approval is not None:
            return bool(await self.approval(firm_id))
        return (await self.directory.get_firm(firm_id)).letter_approval

    async def download_status(
        self, actor: StaffActor, run_id: str, download_id: str
    ) -> DownloadView:
        """A requested download's state.

        Raises:
            PermissionDeniedError, NotFoundError: as :meth:`get`; another run's download.
        """
        staff = await self._staff(actor, "letters.download")
        run = await self._run(staff, run_id, "letters.download")
        record = await self.records.find(DownloadRecord, staff.firm_id, download_id)
        if record is None or record.run_id != run.record.id:
            raise NotFoundError(DOWNLOAD_KIND, download_id)
        request = await self._open_request(staff.firm_id, record)
        return DownloadView(
            record.id,
            record.run_id,
            record.status,
            request["digest"],
            int(request.get("letters", 0)),
            tuple(request["recipients"]),
            record.error,
        )

    # -- PDF/A download: production (the letters.pdfa step) -------------------------------------
    async def produce_downloads(self, *, owner: str, lease: timedelta, limit: int) -> int:
        """Produce due downloads (claimed with a lease; each fails alone)."""
        done = 0
        while done < limit:
            good, bad = await self.records.claim(
                DownloadRecord,
                status=DownloadStatus.PENDING.value,
                owner=owner,
                now=self.clock.now(),
                lease=lease,
                limit=min(5, limit - done),
            )
            for raw in bad:
                log.error("letters.download %s does not decode; marked failed", raw.id)
                async with self.store.transaction(raw.firm_id) as rtx:
                    await rtx.update([raw.evolve(status=DownloadStatus.FAILED.value)])
            if not good and not bad:
                break
            done += len(bad)
            done += await each_alone(
                good,
                self._produce,
                describe=lambda r: f"letters.download {r.id}",
                logger=log,
            )
        return done

    async def _fail(self, record: DownloadRecord, reason: str) -> int:
        firm_id = record.meta.firm_id
        async with self.records.transaction(firm_id) as tx:
            await tx.update(
                [
                    attrs.evolve(
                        record, status=DownloadStatus.FAILED, due_at=None, error=reason[:300]
                    )
                ]
            )
            await audit(
                tx,
                subject=f"letters.run:{record.run_id}",
                operation="letters.download_failed",
                actor="system",
                at=self.clock.now(),
                download=record.id,
                reason=reason[:300],
            )
        return 1

    async def _produce(self, record: DownloadRecord) -> int:
        firm_id = record.meta.firm_id
        try:
            request = await self._open_request(firm_id, record)
            run_record = await self.records.get(RunRecord, firm_id, record.run_id)
            state = await self._open_state(firm_id, run_record)
            meta = request["selection"]
            selection = Selection(
                SendTo(meta["send_to"]), meta["include"], meta["exclude"], meta["merge"]
            )
            if selection.digest() != request["digest"]:
                raise IntegrityError("letters.download: the filter differs from its digest")
            plans, _, _ = await self._compose(firm_id, state, selection=selection)
            if not plans:
                return await self._fail(record, "the filter selects no letter")
            printed = await asyncio.to_thread(build_print_file, plans, state.options)
        except (IntegrityError, NotFoundError, InvalidInputError) as exc:
            return await self._fail(record, f"{type(exc).__name__}: {exc}")
        try:
            pdfa = await self.converter.convert_bytes(printed.data)
            report = check_pdfa(pdfa)
        except PdfaError as exc:
            return await self._fail(record, f"pdfa: {exc}")
        name = f"serienbrief-{record.run_id[:8]}.pdf"
        prepared = self.attachments.prepare([AttachmentInput(name, pdfa, "application/pdf")])
        copies = await self.attachments.store_copies(
            firm_id, run_owner(record.run_id), record.id, prepared
        )
        try:
            token, _ = await self.tokens.issue(
                firm_id,
                LinkPurpose.RUN_DOWNLOAD,
                run_id=record.run_id,
                filter_digest=request["digest"],
                download_id=record.id,
                ttl=self.download_ttl,
            )
            key = await self.notice_keys.get(firm_id)
            firm = await self.directory.get_firm(firm_id)
            staff = [
                s for s in await self.directory.list_staff(firm_id) if s.id in request["recipients"]
            ]
            plan = letter_download_recipients(
                staff,
                requester_id=request["requester"],
                approval_required=bool(request["approval"]),
            )
            event = NotificationEvent(
                NotificationKind.LETTERS_DOWNLOAD, firm_id, firm.name, event_id=record.id
            )
            link = self.links.link(event)
            link += ("&" if "?" in link else "?") + "token=" + token
            notices = [Notification(event, r, link) for r in plan.recipients]
            async with self.records.transaction(firm_id) as tx:
                await tx.update(
                    [
                        attrs.evolve(
                            record,
                            status=DownloadStatus.READY,
                            due_at=None,
                            stored=tuple(copies.attachments),
                        )
                    ]
                )
                await self.attachments.settle(tx, copies.reservation)
                await enqueue(tx, notices, now=self.clock.now(), key=key)
                await audit(
                    tx,
                    subject=f"letters.run:{record.run_id}",
                    operation="letters.download_ready",
                    actor="system",
                    at=self.clock.now(),
                    download=record.id,
                    pages=report.pages,
                    recipients=len(notices),
                )
        except BaseException:
            await self.attachments.discard(firm_id, copies)
            raise
        return 1

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


async def _export_doc(app: ClientComm, firm_id: str, value: Any) -> dict[str, Any]:
    """A unit's document in the client data export: its descriptor and its
    bytes (base64), opened with the client's key."""
    assert isinstance(value, DocRecord)
    runs = app.letter_runs
    doc = await runs._open_doc(firm_id, value)
    data = await runs._bytes(firm_id, doc)
    return {
        "id": value.id,
        "run_id": value.run_id,
        "unit_id": value.unit_id,
        "role": value.role.value,
        "doc_type": doc.info.doc_type,
        "filename": doc.info.filename,
        "pages": doc.info.pages,
        "sha256": doc.info.sha256,
        "created_at": value.created_at.isoformat(),
        "content_base64": base64.b64encode(data).decode("ascii"),
    }


register_exporter(DOC_KIND, _export_doc)
