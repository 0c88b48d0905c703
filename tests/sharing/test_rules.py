"""The pure rules of portal sharing (hypothesis, no backend)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clientcomm import ConflictError, InvalidInputError, PermissionDeniedError
from clientcomm.attachments.models import AttachmentInfo, AttachmentMode, StoredAttachment
from clientcomm.directory.models import CaseFile, Contact, Role, Staff
from clientcomm.sharing import rules
from clientcomm.sharing.models import ShareOrigin
from clientcomm.sharing.records import ShareRecord, ShareStatus

SETTINGS = settings(max_examples=200, deadline=None)
T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
CLIENTS = ["c1", "c2", "c3", "c4"]
STAFF = ["s1", "s2", "s3"]


@SETTINGS
@given(
    st.sampled_from(STAFF),
    st.sampled_from(list(Role)),
    st.none() | st.sampled_from(STAFF),
    st.frozensets(st.sampled_from(STAFF)),
)
def test_only_handler_or_assistant_may_share(
    staff_id: str, role: Role, handler: str | None, assistants: frozenset[str]
) -> None:
    staff = Staff(staff_id, "f1", "N", role)
    case = CaseFile("a", "f1", "c1", "T", handler_id=handler, assistant_ids=assistants)
    refusal = rules.sharer_refusal(staff, case)
    assert (refusal is None) == (staff_id == handler or staff_id in assistants)
    if refusal is not None:
        assert staff_id in refusal and "a" in refusal


@SETTINGS
@given(
    st.lists(st.sampled_from(CLIENTS), min_size=1, max_size=4, unique=True),
    st.frozensets(st.sampled_from(CLIENTS)),
    st.none() | st.sampled_from([*CLIENTS, "c9"]),
)
def test_the_client_of_a_share(
    clients: list[str], registered: frozenset[str], named: str | None
) -> None:
    case = CaseFile("a", "f1", clients[0], "T", client_ids=frozenset(clients[1:]))
    contacts = {c: [Contact(f"k{c}", "f1", c, "N", registered=c in registered)] for c in clients}
    access = rules.portal_clients(case, contacts)
    assert access == [c for c in case.clients if c in registered]
    try:
        chosen = rules.choose_client(case, access, named)
    except InvalidInputError as exc:
        assert exc.field == "client_id"
        if named is None:
            assert len(access) != 1
        else:
            assert named not in access
        return
    assert chosen in access
    assert chosen == named if named is not None else len(access) == 1


def share(**kw: object) -> ShareRecord:
    stored = StoredAttachment(
        AttachmentInfo("a", "x.pdf", 1, "application/pdf"), "b", AttachmentMode.PER_COPY, b"k"
    )
    values: dict[str, object] = dict(
        id="s", client_id="c1", location_id="f", status=ShareStatus.ACTIVE, shared_at=T0,
        sealed=b"", case_id="a", origin=ShareOrigin.FIRM, shared_by="s1", attachments=(stored,),
    )  # fmt: skip
    values.update(kw)
    return ShareRecord(**values)  # type: ignore[arg-type]


def test_who_may_end_which_share() -> None:
    rules.end_refusal(share(), "s1", may_end_any=False)
    rules.end_refusal(share(), "s2", may_end_any=True)
    with pytest.raises(PermissionDeniedError, match="only the staff member who shared"):
        rules.end_refusal(share(), "s2", may_end_any=False)
    with pytest.raises(ConflictError, match="with a message"):
        rules.end_refusal(share(message_id="m"), "s1", may_end_any=True)
    with pytest.raises(ConflictError, match="upload"):
        rules.end_refusal(share(origin=ShareOrigin.CLIENT), "s1", may_end_any=True)
    with pytest.raises(ConflictError, match="ended already"):
        rules.end_refusal(share(status=ShareStatus.ENDED), "s1", may_end_any=True)


@SETTINGS
@given(
    st.none() | st.integers(min_value=-10, max_value=10),
    st.none() | st.integers(min_value=1, max_value=10),
)
def test_expiry_and_reminder(days: int | None, before: int | None) -> None:
    expires = None if days is None else T0 + timedelta(days=days)
    if expires is not None and expires <= T0:
        with pytest.raises(InvalidInputError):
            rules.check_expiry(expires, T0)
        return
    assert rules.check_expiry(expires, T0) == expires
    remind = rules.reminder_due(expires, None if before is None else timedelta(days=before), T0)
    if expires is None or before is None or expires - timedelta(days=before) <= T0:
        assert remind is None
    else:
        assert remind == expires - timedelta(days=before)


def test_naive_expiry_and_bad_names_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        rules.check_expiry(datetime(2030, 1, 1), T0)
    for bad in ("", "  ", "a\nb", "x" * 201, 3):
        with pytest.raises(InvalidInputError):
            rules.check_place_name(bad)
    assert rules.check_place_name("  Bescheide ") == "Bescheide"
