"""The serial-letter run service: create, upload and split, edit, overview,
check downloads, selection and options, access; on every Store backend."""

from __future__ import annotations

import io

import pypdf
import pytest

from clientcomm import StaffActor
from clientcomm.app import ClientComm
from clientcomm.errors import InvalidInputError, NotFoundError, PermissionDeniedError
from clientcomm.letters.run_models import PageRange
from clientcomm.letters.run_records import DocRole, RunState
from clientcomm.letters.selection import Selection, SendTo
from tests.letters_run.pdfs import text_pdf
from tests.letters_run.support import (
    ADMIN,
    ASSISTANT,
    CLERK,
    MANAGER,
    MEMBERS,
    OTHER_FIRM,
    RESTRICTED,
    UNITS,
)

UPLOAD = text_pdf("Einheit 1 Seite 1", "Einheit 1 Seite 2", "Einheit 2", "Einheit 3", "Einheit 4")
RANGES = [
    PageRange("u1", 1, 2, "Abrechnung"),
    PageRange("u2", 3, 3, "Abrechnung"),
    PageRange("u3", 4, 4, "Abrechnung"),
    PageRange("u4", 5, 5, "Abrechnung"),
]


def texts(pdf: bytes) -> list[str]:
    return [p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages]


async def new_run(app: ClientComm, actor: StaffActor = CLERK) -> str:
    run = await app.letter_runs.create(
        actor, property_id="p1", title="Abrechnung 2026", contacts=MEMBERS
    )
    await app.letter_runs.upload(actor, run.id, filename="abr.pdf", pdf=UPLOAD, ranges=RANGES)
    await app.letter_runs.add_attachment(
        actor, run.id, filename="info.pdf", pdf=text_pdf("Allgemeine Info")
    )
    return run.id


async def test_create_upload_split_and_overview(app: ClientComm) -> None:
    runs = app.letter_runs
    run = await runs.create(CLERK, property_id="p1", title="Abrechnung 2026", contacts=MEMBERS)
    assert run.state is RunState.DRAFT and run.unit_ids == UNITS
    docs = await runs.upload(CLERK, run.id, filename="abr.pdf", pdf=UPLOAD, ranges=RANGES)
    assert [(d.unit_id, d.pages) for d in docs] == [("u1", 2), ("u2", 1), ("u3", 1), ("u4", 1)]
    first = await runs.download_document(CLERK, run.id, docs[0].id)
    assert texts(first) == ["Einheit 1 Seite 1", "Einheit 1 Seite 2"]
    assert texts(await runs.download_document(CLERK, run.id, docs[3].id)) == ["Einheit 4"]
    att = await runs.add_attachment(CLERK, run.id, filename="info.pdf", pdf=text_pdf("Info"))
    assert att.role is DocRole.ATTACHMENT and att.unit_id is None

    lines = await runs.overview(CLERK, run.id)
    got = [(x.unit_id, x.contact_id, x.registered, x.preference.value, x.by_post) for x in lines]
    # default selection: by preference
    assert got == [
        ("u1", "olga", True, "letter", True),
        ("u1", "tom", True, "online", False),
        ("u2", "olga", True, "letter", True),
        ("u3", "uwe", False, "online", True),
        ("u4", "vera", True, "letter", True),
    ]
    assert all(len(x.documents) == 1 for x in lines)


async def test_documents_sealed_for_their_unit(app: ClientComm) -> None:
    """A unit's document is sealed under the unit's client key: forgetting
    another client leaves it readable, forgetting the unit destroys it."""
    run_id = await new_run(app)
    docs = {d.unit_id: d for d in await app.letter_runs.documents(CLERK, run_id)}
    await app.sealer.forget_client("f1", "u2", override=True)
    assert texts(await app.letter_runs.download_document(CLERK, run_id, docs["u1"].id))
    listed = {d.unit_id for d in await app.letter_runs.documents(CLERK, run_id)}
    assert "u2" not in listed and "u1" in listed  # the forgotten unit's document fails alone


async def test_edit_until_released(app: ClientComm) -> None:
    runs = app.letter_runs
    run_id = await new_run(app)
    docs = {d.unit_id: d for d in await runs.documents(CLERK, run_id) if d.unit_id}
    moved = await runs.reassign(CLERK, run_id, docs["u4"].id, "u3")
    assert moved.unit_id == "u3"
    with pytest.raises(NotFoundError):
        await runs.download_document(CLERK, run_id, docs["u4"].id)
    assert texts(await runs.download_document(CLERK, run_id, moved.id)) == ["Einheit 4"]
    await runs.remove_document(CLERK, run_id, moved.id)
    left = await runs.documents(CLERK, run_id)
    assert moved.id not in {d.id for d in left}
    with pytest.raises(InvalidInputError) as info:
        await runs.reassign(CLERK, run_id, docs["u1"].id, "u-unknown")
    assert info.value.field == "unit_id"


@pytest.mark.parametrize(
    ("ranges", "field"),
    [
        ([], "ranges"),
        ([PageRange("u1", 0, 1)], "ranges"),
        ([PageRange("u1", 2, 1)], "ranges"),
        ([PageRange("u1", 1, 6)], "ranges"),
        ([PageRange("u1", 1, 2), PageRange("u2", 2, 3)], "ranges"),
        ([PageRange("c1", 1, 1)], "ranges"),  # a client not of the run
        ([PageRange("u1", 1, 1, "bad\ntype")], "doc_type"),
    ],
)
async def test_bad_upload_writes_nothing(
    app: ClientComm, ranges: list[PageRange], field: str
) -> None:
    runs = app.letter_runs
    run = await runs.create(CLERK, property_id="p1", title="t")
    with pytest.raises(InvalidInputError) as info:
        await runs.upload(CLERK, run.id, filename="a.pdf", pdf=UPLOAD, ranges=ranges)
    assert info.value.field == field
    assert await runs.documents(CLERK, run.id) == ()


async def test_not_a_pdf_is_refused(app: ClientComm) -> None:
    runs = app.letter_runs
    run = await runs.create(CLERK, property_id="p1", title="t")
    with pytest.raises(InvalidInputError) as info:
        await runs.upload(
            CLERK, run.id, filename="a.pdf", pdf=b"no pdf", ranges=[PageRange("u1", 1, 1)]
        )
    assert info.value.field == "document"
    with pytest.raises(InvalidInputError):
        await runs.add_attachment(CLERK, run.id, filename="a.pdf", pdf=b"%PDF-1.4 broken")
    assert await runs.documents(CLERK, run.id) == ()


async def test_create_validates_units_and_contacts(app: ClientComm) -> None:
    runs = app.letter_runs
    with pytest.raises(NotFoundError):
        await runs.create(CLERK, property_id="nope", title="t")
    with pytest.raises(NotFoundError):
        await runs.create(CLERK, property_id="p1", title="t", unit_ids=["u1", "c1"])
    with pytest.raises(InvalidInputError) as info:
        await runs.create(CLERK, property_id="p1", title="t", contacts={"u1": ["k1"]})
    assert info.value.field == "contacts"
    with pytest.raises(InvalidInputError) as info:
        await runs.create(CLERK, property_id="p1", title="", contacts=MEMBERS)
    assert info.value.field == "title"
    run = await runs.create(CLERK, property_id="p1", title="t", unit_ids=["u3"])
    assert run.unit_ids == ("u3",)
    # without a contacts map: each unit's Directory contacts
    lines = await runs.overview(CLERK, run.id)
    assert [(x.unit_id, x.contact_id) for x in lines] == [("u3", "uwe")]


async def test_selection_and_options(app: ClientComm) -> None:
    runs = app.letter_runs
    run_id = await new_run(app)
    view = await runs.set_selection(
        CLERK, run_id, Selection(SendTo.UNREGISTERED, include={"vera"}, merge=True)
    )
    assert view.selection.send_to is SendTo.UNREGISTERED
    lines = await runs.overview(CLERK, run_id)
    assert {(x.unit_id, x.contact_id) for x in lines if x.by_post} == {
        ("u3", "uwe"),
        ("u4", "vera"),
    }
    view = await runs.set_options(
        CLERK, run_id, colour=True, duplex=True, duplex_optimised=True, registered=True
    )
    assert (view.colour, view.duplex, view.duplex_optimised, view.registered) == (
        True,
        True,
        True,
        True,
    )
    again = await runs.get(CLERK, run_id)
    assert again == view
    with pytest.raises(InvalidInputError) as info:
        await runs.set_options(CLERK, run_id, colour=False, duplex=False, duplex_optimised=True)
    assert info.value.field == "duplex_optimised"
    with pytest.raises(InvalidInputError):
        await runs.set_options(CLERK, run_id, colour=1, duplex=False)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await runs.set_selection(CLERK, run_id, "all")  # type: ignore[arg-type]


async def test_access(app: ClientComm) -> None:
    runs = app.letter_runs
    run_id = await new_run(app)
    # a restricted clerk reaching only some units: the run answers as missing
    with pytest.raises(NotFoundError) as info:
        await runs.get(RESTRICTED, run_id)
    assert info.value.kind == "letters.run" and info.value.id == run_id
    with pytest.raises(NotFoundError) as missing:
        await runs.get(RESTRICTED, "no-such-run")
    assert missing.value.kind == "letters.run"
    # another firm: missing too
    with pytest.raises(NotFoundError):
        await runs.get(OTHER_FIRM, run_id)
    # assistants prepare and check, but may not set the postal selection
    assert (await runs.get(ASSISTANT, run_id)).id == run_id
    with pytest.raises(PermissionDeniedError):
        await runs.set_selection(ASSISTANT, run_id, Selection())
    # wrong actor type
    with pytest.raises(PermissionDeniedError):
        await runs.get("admin", run_id)  # type: ignore[arg-type]
    for actor in (ADMIN, MANAGER, CLERK):
        assert (await runs.get(actor, run_id)).id == run_id


async def test_every_change_is_audited(app: ClientComm) -> None:
    run_id = await new_run(app)
    await app.letter_runs.set_selection(CLERK, run_id, Selection(SendTo.ALL))
    await app.run_step("audit.chain")
    page = await app.audit.query("f1", subject=f"letters.run:{run_id}", limit=1000)
    ops = [e.operation for e in page.entries]
    mine = [o for o in ops if o.startswith("letters.")]
    assert mine.count("letters.documents_added") == 2
    assert {"letters.run_created", "letters.selection_set"} <= set(mine)
