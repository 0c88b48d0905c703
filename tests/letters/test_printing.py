"""Padding (hypothesis), per-contact merging, the print file opened with pypdf,
the address check and the dispatch button table."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pypdf import PdfReader
from pypdf.generic import IndirectObject

from clientcomm.directory.models import Contact, PostalAddress
from clientcomm.errors import InvalidInputError
from clientcomm.letters import (
    A4,
    AddressForm,
    Blank,
    DispatchButton,
    DispatchFacts,
    DispatchReason,
    LetterDocument,
    LetterProblem,
    PageSize,
    PrintOptions,
    Requirement,
    Sides,
    SourcePage,
    blanks_after,
    build_print_file,
    check_letter,
    dispatch_state,
    page_plan,
    plan_letters,
)
from clientcomm.letters.intake import PdfIntake
from clientcomm.letters.models import ValidatedPdf
from tests.letters import hostile

DUPLEX = PrintOptions(sides=Sides.DUPLEX, duplex_optimised=True)
A5 = PageSize(419.53, 595.28)
sizes = st.sampled_from([A4, A5, PageSize(612, 792), PageSize(841.89, 595.276)])
documents = st.lists(st.lists(sizes, min_size=1, max_size=7), min_size=1, max_size=8)
options = st.sampled_from(
    [PrintOptions(), PrintOptions(sides=Sides.DUPLEX), DUPLEX, PrintOptions(registered=True)]
)


# -- padding, pure -----------------------------------------------------------------------
@given(documents, options)
def test_padding_plan(docs: list[list[PageSize]], opts: PrintOptions) -> None:
    plan = page_plan(docs, opts)
    sources = [i for i in plan if isinstance(i, SourcePage)]
    assert sources == [SourcePage(d, p) for d, pages in enumerate(docs) for p in range(len(pages))]
    blanks = [i for i in plan if isinstance(i, Blank)]
    if not opts.duplex_optimised:
        assert blanks == []
        return
    # every document starts on a front side (odd 1-based position), the letter is even
    pos = 0
    for d, pages in enumerate(docs):
        start = plan.index(SourcePage(d, 0))
        assert start % 2 == 0
        pos = start + len(pages)
        if len(pages) % 2:
            assert plan[pos] == Blank(pages[-1])  # sized like the page before it
    assert len(plan) % 2 == 0
    assert len(blanks) == sum(len(p) % 2 for p in docs)
    assert blanks_after(docs, opts) == tuple(len(p) % 2 for p in docs)


def test_duplex_optimisation_needs_duplex_and_documents_need_pages() -> None:
    with pytest.raises(InvalidInputError):
        PrintOptions(duplex_optimised=True)
    with pytest.raises(InvalidInputError):
        page_plan([[A4], []], DUPLEX)


# -- fixtures: validated letters -----------------------------------------------------------
@pytest.fixture(scope="module")
def intake() -> Iterator[PdfIntake]:
    with PdfIntake(workers=2) as pool:
        yield pool


def contact(i: int, country: str = "DE", **kw: str) -> Contact:
    a = PostalAddress(
        kw.get("name", f"Erika Muster{i}"),
        kw.get("street", f"Hauptstraße {i}"),
        kw.get("postal_code", "10115"),
        kw.get("city", "Berlin"),
        country,
    )
    return Contact(f"c{i}", "f1", "cl1", a.name, address=a)


def addressed(intake: PdfIntake, c: Contact, pages: int, **kw: object) -> ValidatedPdf:
    a = c.address
    assert a is not None
    lines = [a.name, a.street, f"{a.postal_code} {a.city}"]
    if a.country != "DE":
        lines.append(a.country)
    data = hostile.letter(lines, pages=pages, title=f"{c.id}-{pages}", **kw)  # type: ignore[arg-type]
    return intake.validate(f"{c.id}-{pages}.pdf", data, first_page_text=True)


# -- merge and print file ------------------------------------------------------------------
def test_merge_order_and_attachments_once(intake: PdfIntake) -> None:
    c0, c1 = contact(0), contact(1)
    a0, b1, a2 = addressed(intake, c0, 1), addressed(intake, c1, 2), addressed(intake, c0, 3)
    att = intake.validate("anhang.pdf", hostile.letter(("",), pages=3, title="Anhang"))
    docs = [
        LetterDocument("c0", a0, "Einheit 1"),
        LetterDocument("c1", b1),
        LetterDocument("c0", a2, "Einheit 2"),
    ]
    plans = plan_letters(docs, [att], [c0, c1], DUPLEX)
    assert [p.contact.id for p in plans] == ["c0", "c1"]
    assert [[x.label for x in p.parts] for p in plans] == [
        ["Einheit 1", "Einheit 2", "anhang.pdf"],
        ["c1-2.pdf", "anhang.pdf"],
    ]
    assert [[x.blanks_after for x in p.parts] for p in plans] == [[1, 1, 1], [0, 1]]
    unmerged = plan_letters(docs, [att], [c0, c1], DUPLEX, merge=False)
    assert [p.contact.id for p in unmerged] == ["c0", "c1", "c0"]
    with pytest.raises(InvalidInputError):
        plan_letters([LetterDocument("zz", a0)], [], [c0], DUPLEX)

    pf = build_print_file(plans, DUPLEX)
    reader = PdfReader(io.BytesIO(pf.data))
    # c0: 1 + blank + 3 + blank + 3 + blank = 10; c1: 2 + 3 + blank = 6
    assert len(reader.pages) == pf.page_count == 16
    assert [(r.contact_id, r.first_page, r.page_count, r.sheets) for r in pf.letters] == [
        ("c0", 1, 10, 5),
        ("c1", 11, 6, 3),
    ]
    texts = [p.extract_text() for p in reader.pages]
    blank_pages = [i for i, t in enumerate(texts) if not t.strip()]
    assert blank_pages == [1, 5, 9, 15]
    assert "c0-1 1/0" in texts[0] and "c0-3 1/0" in texts[2] and "Anhang 1/0" in texts[6]
    assert "c1-2 2/0" in texts[11] and "Anhang 3/0" in texts[14]
    for i in blank_pages:
        prev = reader.pages[i - 1].mediabox
        assert (reader.pages[i].mediabox.width, reader.pages[i].mediabox.height) == (
            prev.width,
            prev.height,
        )
        assert "/Contents" not in reader.pages[i]


def test_blank_page_has_the_size_of_the_page_before(intake: PdfIntake) -> None:
    c0 = contact(0)
    a5 = intake.validate("a5.pdf", hostile.letter(pages=1, size=(A5.width, A5.height)))
    pf = build_print_file(plan_letters([LetterDocument("c0", a5)], [], [c0], DUPLEX), DUPLEX)
    reader = PdfReader(io.BytesIO(pf.data))
    assert len(reader.pages) == 2
    assert float(reader.pages[1].mediabox.width) == pytest.approx(A5.width)
    assert float(reader.pages[1].mediabox.height) == pytest.approx(A5.height)


def test_attachment_content_is_stored_once(intake: PdfIntake) -> None:
    contacts = [contact(i) for i in range(30)]
    docs = [LetterDocument(c.id, addressed(intake, c, 1 + i % 3)) for i, c in enumerate(contacts)]
    att = intake.validate(
        "anhang.pdf", hostile.letter(("",), pages=10, title="Anhang", body="x" * 400)
    )
    plans = plan_letters(docs, [att], contacts, DUPLEX)
    pf = build_print_file(plans, DUPLEX)
    reader = PdfReader(io.BytesIO(pf.data))
    seen: dict[int, set[tuple[int, int]]] = {}
    forms: set[int] = set()
    for rng in pf.letters:
        stubs = []
        for i in range(rng.first_page - 1, rng.last_page):
            page = reader.pages[i]
            if "/Contents" not in page:
                continue  # a blank page
            contents, res = page.raw_get("/Contents"), page.raw_get("/Resources")
            if b"/CCatt Do" in page.get_contents().get_data():  # type: ignore[union-attr]
                assert isinstance(contents, IndirectObject) and isinstance(res, IndirectObject)
                stubs.append((contents.idnum, res.idnum))
                form = res.get_object()["/XObject"].raw_get("/CCatt")  # type: ignore[index]
                forms.add(form.idnum)
        assert len(stubs) == 10  # the attachment once per letter
        for k, refs in enumerate(stubs):
            seen.setdefault(k, set()).add(refs)
    assert all(len(refs) == 1 for refs in seen.values())  # one object pair for all 30 letters
    assert len(forms) == 10  # one form XObject per attachment page in the whole file
    # size: 30 letters with the attachment cost about what 30 letters alone cost,
    # plus one copy of the attachment
    alone = build_print_file(plan_letters(docs, [], contacts, DUPLEX), DUPLEX)
    assert len(pf.data) < len(alone.data) + len(att.data) + 30 * 10 * 200


# -- address check -----------------------------------------------------------------------
def problems_of(
    intake: PdfIntake,
    c: Contact,
    pdf: ValidatedPdf,
    opts: PrintOptions = DUPLEX,
    form: AddressForm = AddressForm.B,
) -> list[tuple[str, Requirement]]:
    plan = plan_letters([LetterDocument(c.id, pdf)], [], [c], opts)[0]
    return [(p.contact_name, p.requirement) for p in check_letter(plan, opts, form=form)]


def test_address_check(intake: PdfIntake) -> None:
    c = contact(1)
    good = addressed(intake, c, 1)
    assert problems_of(intake, c, good) == []
    # form A letter checked against form B window: no text there
    form_a = addressed(intake, c, 1, form="A")
    assert problems_of(intake, c, form_a) == [(c.name, Requirement.ADDRESS_IN_WINDOW)]
    assert problems_of(intake, c, form_a, form=AddressForm.A) == []
    other = contact(1, street="Nebenweg 9")
    assert problems_of(intake, other, good) == [(c.name, Requirement.ADDRESS_MATCHES)]
    landscape = addressed(intake, c, 2, size=(hostile.A4_H, hostile.A4_W))
    assert (c.name, Requirement.A4_PORTRAIT) in problems_of(intake, c, landscape)
    abroad = contact(2, country="AT", city="Wien", postal_code="1010")
    at_letter = addressed(intake, abroad, 1)
    assert problems_of(intake, abroad, at_letter) == []
    registered = PrintOptions(registered=True)
    assert problems_of(intake, abroad, at_letter, registered) == [
        (abroad.name, Requirement.REGISTERED_GERMANY)
    ]
    assert problems_of(intake, c, good, registered) == []
    for bad in (contact(3, country=""), contact(3, street=""), contact(3, country="Deutschland")):
        found = problems_of(intake, bad, good)
        assert (bad.name, Requirement.ADDRESS_COMPLETE) in found
    nobody = Contact("c9", "f1", "cl1", "Ohne Adresse")
    plan = plan_letters([LetterDocument("c9", good)], [], [nobody], DUPLEX)[0]
    [problem] = check_letter(plan, DUPLEX)
    assert (problem.contact_name, problem.requirement) == (
        "Ohne Adresse",
        Requirement.ADDRESS_COMPLETE,
    )
    assert "Ohne Adresse" in str(problem)


# -- dispatch button, as a table -----------------------------------------------------------
P = LetterProblem("c1", "Erika", Requirement.A4_PORTRAIT, "pages 2", "brief.pdf")
TABLE = [
    # feature, letters, problems, ordered, cancellable -> button, reasons
    (False, 5, (), False, False, DispatchButton.FEATURE_UNAVAILABLE, ()),
    (False, 0, (P,), True, True, DispatchButton.FEATURE_UNAVAILABLE, ()),
    (True, 5, (), True, True, DispatchButton.CANCELLABLE, ()),
    (True, 5, (P,), True, True, DispatchButton.CANCELLABLE, ()),
    (True, 5, (), True, False, DispatchButton.NOT_POSSIBLE, (DispatchReason.ALREADY_ORDERED,)),
    (True, 0, (), False, False, DispatchButton.NOT_POSSIBLE, (DispatchReason.NO_LETTERS,)),
    (True, 5, (P,), False, False, DispatchButton.NOT_POSSIBLE, (DispatchReason.LETTER_PROBLEMS,)),
    (
        True,
        0,
        (P,),
        False,
        False,
        DispatchButton.NOT_POSSIBLE,
        (DispatchReason.NO_LETTERS, DispatchReason.LETTER_PROBLEMS),
    ),
    (True, 5, (), False, False, DispatchButton.ORDERABLE, ()),
]


@pytest.mark.parametrize(
    ("feature", "letters", "problems", "ordered", "cancellable", "button", "reasons"), TABLE
)
def test_dispatch_state_table(
    feature: bool,
    letters: int,
    problems: tuple[LetterProblem, ...],
    ordered: bool,
    cancellable: bool,
    button: DispatchButton,
    reasons: tuple[DispatchReason, ...],
) -> None:
    state = dispatch_state(DispatchFacts(feature, letters, problems, ordered, cancellable))
    assert (state.button, state.reasons) == (button, reasons)
    assert state.problems == (problems if DispatchReason.LETTER_PROBLEMS in reasons else ())
    assert (
        button.colour
        == {
            "orderable": "green",
            "cancellable": "red",
            "feature_unavailable": "yellow",
            "not_possible": "grey",
        }[button.value]
    )
    assert button.clickable is (button is not DispatchButton.NOT_POSSIBLE)


@pytest.mark.skipif(shutil.which("qpdf") is None, reason="qpdf is not installed")
def test_print_file_passes_qpdf_check(intake: PdfIntake, tmp_path: Path) -> None:
    contacts = [contact(i) for i in range(3)]
    docs = [LetterDocument(c.id, addressed(intake, c, 1 + i)) for i, c in enumerate(contacts)]
    att = intake.validate("anhang.pdf", hostile.letter(("",), pages=2, title="Anhang"))
    pf = build_print_file(plan_letters(docs, [att], contacts, DUPLEX), DUPLEX)
    path = tmp_path / "print.pdf"
    path.write_bytes(pf.data)
    proc = subprocess.run(["qpdf", "--check", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No syntax or stream encoding errors" in proc.stdout
