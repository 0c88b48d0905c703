"""The postal selection rules of a serial-letter run (seed 003, steps 5-7)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clientcomm.directory.models import Contact, ContactPreference
from clientcomm.errors import InvalidInputError
from clientcomm.letters.merge import plan_letters as pack_letters
from clientcomm.letters.models import A4, LetterPlan, PrintOptions, ValidatedPdf
from clientcomm.letters.selection import (
    LetterLine,
    Selection,
    SendTo,
    filter_wants_letter,
    letter_documents,
    selected_lines,
    wants_letter,
)

CONTACTS = [Contact(c, "f1", "u", c) for c in ("a", "b", "c", "d", "e", "other")]
ATTACHMENT = ValidatedPdf("info.pdf", b"%PDF-attachment", (A4,))


def _doc(unit: str) -> ValidatedPdf:
    return ValidatedPdf(f"{unit}.pdf", f"%PDF-{unit}".encode(), (A4,))


def plan_letters(
    lines: list[LetterLine], selection: Selection
) -> list[tuple[str, tuple[str, ...]]]:
    """(contact, the units' documents in the letter) per letter, through part 1's
    merge; every letter ends with the general attachment once."""
    units = {line.unit_id for line in lines}
    docs = letter_documents(lines, selection, {u: [_doc(u)] for u in units})
    plans = pack_letters(docs, [ATTACHMENT], CONTACTS, PrintOptions(), merge=selection.merge)
    return [_summary(p) for p in plans]


def _summary(plan: LetterPlan) -> tuple[str, tuple[str, ...]]:
    names = [part.pdf.filename for part in plan.parts]
    assert names[-1] == "info.pdf" and names.count("info.pdf") == 1
    return plan.contact.id, tuple(n.removesuffix(".pdf") for n in names[:-1])


ONLINE = ContactPreference.ONLINE
LETTER = ContactPreference.LETTER

# The seed's rules, written out as the expected answer of every filter for
# every (registered, preference): (ALL, BY_PREFERENCE, UNREGISTERED).
FILTER_TABLE = {
    (True, ONLINE): (True, False, False),  # registered, "online": no letter by preference
    (True, LETTER): (True, True, False),  # registered, "letter": a letter by preference
    (False, ONLINE): (True, True, True),  # unregistered: always a letter
    (False, LETTER): (True, True, True),
}
FILTERS = (SendTo.ALL, SendTo.BY_PREFERENCE, SendTo.UNREGISTERED)
OVERRIDES = ("none", "include", "exclude")


def _case_id(case: tuple[object, ...]) -> str:
    return "-".join(str(getattr(part, "value", part)) for part in case)


TABLE = [
    (registered, preference, send_to, override, merge)
    for (registered, preference), send_to, override, merge in itertools.product(
        FILTER_TABLE, FILTERS, OVERRIDES, (False, True)
    )
]


@pytest.mark.parametrize(
    ("registered", "preference", "send_to", "override", "merge"),
    TABLE,
    ids=[_case_id(case) for case in TABLE],
)
def test_selection_table(
    registered: bool,
    preference: ContactPreference,
    send_to: SendTo,
    override: str,
    merge: bool,
) -> None:
    """registration x preference x filter x manual override x merge: the contact
    has two units; the answer is the filter's (table above) unless overridden,
    and merge decides one letter with both units or one letter per unit."""
    by_filter = FILTER_TABLE[(registered, preference)][FILTERS.index(send_to)]
    expected_sent = {"none": by_filter, "include": True, "exclude": False}[override]
    lines = [
        LetterLine("unit-1", "c", registered, preference),
        LetterLine("unit-1", "other", True, ONLINE),
        LetterLine("unit-2", "c", registered, preference),
    ]
    selection = Selection(
        send_to,
        include={"c"} if override == "include" else (),
        exclude={"c"} if override == "exclude" else (),
        merge=merge,
    )
    assert filter_wants_letter(send_to, registered, preference) is by_filter
    assert wants_letter(lines[0], selection) is expected_sent
    letters = [p for p in plan_letters(lines, selection) if p[0] == "c"]
    if not expected_sent:
        assert letters == []
    elif merge:
        assert letters == [("c", ("unit-1", "unit-2"))]
    else:
        assert letters == [("c", ("unit-1",)), ("c", ("unit-2",))]
    # the other contact (registered, online) is untouched by c's override
    other = [p for p in plan_letters(lines, selection) if p[0] == "other"]
    assert bool(other) is (send_to is SendTo.ALL)


def test_include_and_exclude_same_contact_is_refused() -> None:
    with pytest.raises(InvalidInputError) as info:
        Selection(SendTo.ALL, include={"a", "b"}, exclude={"b"})
    assert info.value.field == "exclude"


def test_duplicate_line_is_refused() -> None:
    line = LetterLine("u", "c", False, ONLINE)
    with pytest.raises(InvalidInputError) as info:
        letter_documents([line, line], Selection(), {})
    assert info.value.field == "lines"


def test_merged_letter_stands_at_first_line() -> None:
    lines = [
        LetterLine("u1", "a", False, ONLINE),
        LetterLine("u1", "b", False, ONLINE),
        LetterLine("u2", "a", False, ONLINE),
        LetterLine("u3", "b", False, ONLINE),
    ]
    assert plan_letters(lines, Selection(SendTo.ALL, merge=True)) == [
        ("a", ("u1", "u2")),
        ("b", ("u1", "u3")),
    ]


def test_digest_depends_on_every_part() -> None:
    base = Selection(SendTo.ALL)
    variants = [
        base,
        Selection(SendTo.BY_PREFERENCE),
        Selection(SendTo.ALL, include={"a"}),
        Selection(SendTo.ALL, exclude={"a"}),
        Selection(SendTo.ALL, merge=True),
        Selection(SendTo.ALL, include={"a", "b"}),
        Selection(SendTo.ALL, include={"a,b"}),
    ]
    assert len({v.digest() for v in variants}) == len(variants)
    assert (
        Selection(SendTo.ALL, include=["b", "a"]).digest()
        == Selection(SendTo.ALL, include=["a", "b"]).digest()
    )


_lines = st.lists(
    st.builds(
        LetterLine,
        st.sampled_from(["u1", "u2", "u3", "u4"]),
        st.sampled_from(["a", "b", "c", "d", "e"]),
        st.booleans(),
        st.sampled_from([ONLINE, LETTER]),
    ),
    max_size=20,
    unique_by=lambda line: (line.unit_id, line.contact_id),
)
_contacts = st.frozensets(st.sampled_from(["a", "b", "c", "d", "e"]))


@settings(max_examples=200, deadline=None)
@given(_lines)
def test_filters_are_nested(lines: list[LetterLine]) -> None:
    """Without manual choices: unregistered-only within by-preference within all."""
    pick = {f: set(selected_lines(lines, Selection(f))) for f in FILTERS}
    assert pick[SendTo.UNREGISTERED] <= pick[SendTo.BY_PREFERENCE] <= pick[SendTo.ALL]
    assert pick[SendTo.ALL] == set(lines)


@settings(max_examples=200, deadline=None)
@given(_lines, st.sampled_from(FILTERS), _contacts, _contacts, st.booleans())
def test_merge_keeps_every_selected_document(
    lines: list[LetterLine],
    send_to: SendTo,
    include: frozenset[str],
    exclude: frozenset[str],
    merge: bool,
) -> None:
    """Merge changes how documents are packed, never which ones are sent; a
    merged run has one letter per contact; overrides always win."""
    selection = Selection(send_to, include=include - exclude, exclude=exclude, merge=merge)
    letters = plan_letters(lines, selection)
    pairs = sorted((u, contact) for contact, units in letters for u in units)
    expected = sorted((x.unit_id, x.contact_id) for x in selected_lines(lines, selection))
    assert pairs == expected
    contacts = [contact for contact, _ in letters]
    if merge:
        assert len(contacts) == len(set(contacts))
    else:
        assert all(len(units) == 1 for _, units in letters)
    assert not set(contacts) & exclude
    assert set(contacts) >= {x.contact_id for x in lines} & (include - exclude)
