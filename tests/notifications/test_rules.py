"""Who is notified: the pure rules."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from clientcomm.directory.models import Contact, Firm, Role, Staff, StaffPermission
from clientcomm.notifications.models import RecipientRole, SkipReason
from clientcomm.notifications.rules import (
    admin_recipients,
    client_contact_recipients,
    comment_recipients,
    letter_download_recipients,
    office_recipient,
    staff_recipient,
)

FIRM = Firm(id="f1", name="Kanzlei Müller", office_email="buero@kanzlei.example")


def contact(id: str, email: str | None, registered: bool = True, **kw: Any) -> Contact:
    return Contact(
        id=id,
        firm_id="f1",
        client_id=str(kw.pop("client_id", "c1")),
        name=f"N {id}",
        email=email,
        registered=registered,
        **kw,
    )


def staff(id: str, role: Role = Role.CLERK, email: str | None = "", **kw: Any) -> Staff:
    return Staff(
        id=id,
        firm_id="f1",
        name=f"S {id}",
        role=role,
        email=f"{id}@kanzlei.example" if email == "" else email,
        **kw,
    )


def test_only_registered_contacts_with_addresses_get_mail() -> None:
    plan = client_contact_recipients(
        [
            contact("b", "b@example.com"),
            contact("a", "a@example.com", language="en"),
            contact("u", "u@example.com", registered=False),
            contact("n", None),
            contact("e", "   "),
            contact("x", "broken@@example.com"),
            contact("d", "A@EXAMPLE.com"),  # same mailbox as "a"
            contact("o", "o@example.com", client_id="c2"),
        ],
        client_id="c1",
    )
    assert [r.ref for r in plan.recipients] == ["contact:a", "contact:b"]
    assert plan.recipients[0].language == "en"
    assert all(r.role is RecipientRole.CONTACT for r in plan.recipients)
    skipped = {s.ref: s for s in plan.skipped}
    assert skipped["contact:n"].reason is SkipReason.NO_ADDRESS
    assert skipped["contact:e"].reason is SkipReason.NO_ADDRESS
    assert skipped["contact:x"].reason is SkipReason.INVALID_ADDRESS
    assert "broken@@example.com" in skipped["contact:x"].detail
    assert "contact:u" not in skipped and "contact:o" not in skipped


def test_office_and_missing_office() -> None:
    (office,) = office_recipient(FIRM).recipients
    assert office.ref == "office" and office.email == "buero@kanzlei.example"
    plan = office_recipient(Firm(id="f1", name="K"))
    assert plan.recipients == () and plan.skipped[0].reason is SkipReason.NO_ADDRESS


def test_comment_goes_to_office_assignee_and_optionally_admins() -> None:
    team = [
        staff("adm1", Role.ADMIN),
        staff("adm2", Role.ADMIN, email=None),
        staff("adm3", Role.ADMIN, active=False),
        staff("mgr", Role.MANAGER),
        staff("clerk", Role.CLERK, unrestricted=False, client_ids={"c9"}),
    ]
    plan = comment_recipients(FIRM, team, client_id="c1", assignee_id="mgr")
    assert [r.ref for r in plan.recipients] == ["office", "staff:mgr"]
    assert plan.inapp_staff_ids == ("mgr",)

    plan = comment_recipients(FIRM, team, client_id="c1", assignee_id="mgr", notify_admins=True)
    assert [r.ref for r in plan.recipients] == ["office", "staff:mgr", "staff:adm1"]
    assert [s.ref for s in plan.skipped] == ["staff:adm2"]

    # an assignee who may not see the client gets nothing; unknown ids are ignored
    assert comment_recipients(FIRM, team, client_id="c1", assignee_id="clerk").inapp_staff_ids == ()
    assert comment_recipients(FIRM, team, client_id="c1", assignee_id="gone").recipients[0].ref == (
        "office"
    )


def test_assignee_without_email_still_gets_inapp() -> None:
    plan = staff_recipient(staff("s1", email=None), inapp=True)
    assert plan.recipients == () and plan.inapp_staff_ids == ("s1",)
    assert plan.skipped[0].reason is SkipReason.NO_ADDRESS
    assert staff_recipient(staff("s2", active=False), inapp=True) == staff_recipient(
        staff("s3", active=False)
    )


def test_office_address_shared_with_an_admin_gets_one_mail() -> None:
    firm = Firm(id="f1", name="K", office_email="adm1@kanzlei.example")
    plan = comment_recipients(
        firm, [staff("adm1", Role.ADMIN)], client_id="c1", assignee_id="adm1", notify_admins=True
    )
    assert [r.ref for r in plan.recipients] == ["office"]
    assert plan.inapp_staff_ids == ("adm1",)


def test_letter_download_recipients() -> None:
    team = [
        staff("req"),
        staff("ap1", permissions={StaffPermission.LETTER_APPROVAL}),
        staff("ap2", permissions={StaffPermission.LETTER_APPROVAL}, active=False),
    ]
    plan = letter_download_recipients(team, requester_id="req", approval_required=False)
    assert [r.ref for r in plan.recipients] == ["staff:req"]
    plan = letter_download_recipients(team, requester_id="req", approval_required=True)
    assert [r.ref for r in plan.recipients] == ["staff:ap1"]


EMAILS = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "",
            "bad",
            "a@example.com",
            "A@example.com",
            "b@example.com",
            "c@bücher.example",
            "x\r\n@example.com",
        ]
    ),
)


@given(st.lists(st.tuples(EMAILS, st.booleans(), st.sampled_from(["c1", "c2"])), max_size=12))
def test_contact_rule_properties(rows: list[tuple[str | None, bool, str]]) -> None:
    contacts = [
        contact(f"k{i:02d}", email, registered, client_id=client)
        for i, (email, registered, client) in enumerate(rows)
    ]
    plan = client_contact_recipients(contacts, client_id="c1")
    eligible = {f"contact:{c.id}" for c in contacts if c.registered and c.client_id == "c1"}
    refs = [r.ref for r in plan.recipients]
    # every eligible contact is either notified, reported, or shares a notified mailbox
    skipped = {s.ref for s in plan.skipped}
    assert set(refs) | skipped <= eligible
    assert not set(refs) & skipped
    addresses = [r.email.casefold() for r in plan.recipients]
    assert len(addresses) == len(set(addresses))  # one mail per mailbox
    for c in contacts:
        ref = f"contact:{c.id}"
        if ref in eligible and ref not in refs and ref not in skipped:
            assert c.email is not None and c.email.strip().casefold() in addresses


@given(st.lists(st.tuples(st.sampled_from(list(Role)), st.booleans(), st.booleans()), max_size=10))
def test_admin_rule_properties(rows: list[tuple[Role, bool, bool]]) -> None:
    team = [
        staff(f"s{i}", role, active=active, email=None if not has_mail else "")
        for i, (role, active, has_mail) in enumerate(rows)
    ]
    plan = admin_recipients(team)
    expected = [f"staff:{s.id}" for s in team if s.role is Role.ADMIN and s.active and s.email]
    assert [r.ref for r in plan.recipients] == sorted(expected)
    assert {s.ref for s in plan.skipped} == {
        f"staff:{s.id}" for s in team if s.role is Role.ADMIN and s.active and not s.email
    }
