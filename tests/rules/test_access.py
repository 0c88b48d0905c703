"""Access by action (pure): RoleAccessPolicy over generated staff, every action
of DEFAULT_RULES and client ids; overrides; the 0.1 adapter."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clientcomm.directory.models import Role, Staff, StaffPermission
from clientcomm.errors import PermissionDeniedError
from clientcomm.rules.access import (
    ADMIN_ONLY_ACTIONS,
    DEFAULT_RULES,
    AccessPolicy,
    RoleAccessPolicy,
    Rule,
    as_policy,
    client_access,
    full_access,
    require,
    require_client_access,
    require_mailing,
)

CLIENTS = [f"c{i}" for i in range(6)]
ACTIONS = sorted(DEFAULT_RULES)
MAILING = [a for a in ACTIONS if a.startswith("mailing.")]
PORTAL = [a for a in ACTIONS if a.startswith(("share.", "portal."))]
LETTERS = [a for a in ACTIONS if a.startswith("letters.")]
CLIENT_ACTIONS = [
    a
    for a in ACTIONS
    if not a.startswith(("mailing.", "announcement.")) and a not in PORTAL and a not in LETTERS
]
CHAT = [a for a in ACTIONS if a.startswith("chat.")]

SETTINGS = settings(max_examples=100, deadline=None)


def _staff(unrestricted: bool, client_ids: frozenset[str], **kw: Any) -> Staff:
    """A Staff entry; unrestricted staff have no client list (refused)."""
    return Staff(
        unrestricted=unrestricted, client_ids=frozenset() if unrestricted else client_ids, **kw
    )


staff_members = st.builds(
    _staff,
    unrestricted=st.booleans(),
    id=st.sampled_from(["s1", "s2", "s3"]),
    firm_id=st.just("f1"),
    name=st.just("Name"),
    role=st.sampled_from(list(Role)),
    client_ids=st.frozensets(st.sampled_from(CLIENTS)),
    active=st.booleans(),
)
client_ids = st.none() | st.sampled_from(CLIENTS)
actions = st.sampled_from(ACTIONS)
unknown_actions = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "mailing",
            "mailing.",
            "mailing.*",
            "chat",
            "chat.*",
            "MAILING.SEND",
            "chat.read ",
            " chat.read",
            "mailing.send.all",
            "share.created",
            "message.delete_all",
            "",
        ]
    ),
).filter(lambda a: a not in DEFAULT_RULES)

POLICY = RoleAccessPolicy()


def test_default_actions_are_the_documented_ones() -> None:
    assert set(DEFAULT_RULES) == {
        "mailing.send",
        "mailing.view",
        "mailing.cancel",
        "chat.read",
        "chat.write",
        "message.delete",
        "message.evidence",
        "attachment.open",
        "announcement.manage",
        "announcement.view_reads",
        # conversations (seed 002)
        "conversation.read",
        "conversation.write",
        "conversation.assign",
        "conversation.notify_admins",
        # sharing (seed 001)
        "share.create",
        "share.view",
        "share.end",
        "share.end_any",
        "portal.folder.create",
        "portal.channel.create",
        "portal.message.write",
        "portal.message.read",
        # serial-letter runs (seed 003)
        "letters.prepare",
        "letters.view",
        "letters.release",
        "letters.order",
        "letters.cancel",
        "letters.download",
        "letters.delete",
    }
    assert isinstance(POLICY, AccessPolicy)


@SETTINGS
@given(staff_members, client_ids)
def test_announcement_actions(staff: Staff, client: str | None) -> None:
    """Seed 004: announcements are firm settings (administrators and managers);
    the read confirmation also for unrestricted clerks."""
    full = staff.active and staff.role in (Role.ADMIN, Role.MANAGER)
    assert POLICY.allows(staff, "announcement.manage", client) == full
    clerk = staff.active and staff.role is Role.CLERK and staff.unrestricted
    assert POLICY.allows(staff, "announcement.view_reads", client) == (full or clerk)


@SETTINGS
@given(staff_members, st.sampled_from([*ACTIONS, "no.such"]), client_ids)
def test_inactive_staff_may_do_nothing(staff: Staff, action: str, client: str | None) -> None:
    inactive = Staff(
        staff.id,
        staff.firm_id,
        staff.name,
        staff.role,
        unrestricted=staff.unrestricted,
        client_ids=staff.client_ids,
        active=False,
    )
    assert not POLICY.allows(inactive, action, client)
    assert not RoleAccessPolicy({action: lambda s, c: True}).allows(inactive, action, client)


@SETTINGS
@given(staff_members, actions, client_ids)
def test_admins_and_managers_may_do_every_known_action(
    staff: Staff, action: str, client: str | None
) -> None:
    if staff.active and staff.role in (Role.ADMIN, Role.MANAGER):
        assert full_access(staff)
        if action in ADMIN_ONLY_ACTIONS and staff.role is Role.MANAGER:
            assert not POLICY.allows(staff, action, client)  # "Serienbrief löschen"
            return
        assert POLICY.allows(staff, action, client)
        # whatever their own client list says
        assert POLICY.allows(staff, action, "not-on-any-list")


@SETTINGS
@given(staff_members, unknown_actions, client_ids)
def test_unknown_actions_are_refused(staff: Staff, action: str, client: str | None) -> None:
    assert not POLICY.allows(staff, action, client)


@SETTINGS
@given(staff_members, st.sampled_from(MAILING), client_ids)
def test_mailing_for_clerks_and_assistants(staff: Staff, action: str, client: str | None) -> None:
    if staff.role in (Role.ADMIN, Role.MANAGER):
        return
    allowed = POLICY.allows(staff, action, client)
    if staff.role is Role.ASSISTANT or not staff.unrestricted:
        assert not allowed  # restricted clerks and assistants: not at all
    else:
        assert allowed == staff.active  # unrestricted clerks reach every client


@SETTINGS
@given(staff_members, st.sampled_from(CLIENT_ACTIONS), client_ids)
def test_chat_and_message_actions_follow_client_access(
    staff: Staff, action: str, client: str | None
) -> None:
    allowed = POLICY.allows(staff, action, client)
    if staff.active and staff.role in (Role.ADMIN, Role.MANAGER):
        assert allowed
    elif client is None:
        assert allowed == staff.active
    else:
        assert allowed == staff.can_access(client)
    assert client_access(staff, client) == (
        staff.active and (client is None or staff.can_access(client))
    )


@SETTINGS
@given(staff_members, st.sampled_from(CHAT), st.sampled_from(CLIENTS))
def test_chat_equals_can_access_below_manager(staff: Staff, action: str, client: str) -> None:
    if staff.role in (Role.CLERK, Role.ASSISTANT):
        assert POLICY.allows(staff, action, client) == staff.can_access(client)


@SETTINGS
@given(staff_members, actions, client_ids, st.booleans())
def test_overrides_replace_a_rule(
    staff: Staff, action: str, client: str | None, answer: bool
) -> None:
    calls: list[tuple[Staff, str | None]] = []

    def rule(s: Staff, c: str | None) -> bool:
        calls.append((s, c))
        return answer

    policy = RoleAccessPolicy({action: rule})
    allowed = policy.allows(staff, action, client)
    if not staff.active:
        assert not allowed and not calls
    elif staff.role is Role.MANAGER and action in ADMIN_ONLY_ACTIONS:
        assert allowed == answer  # managers are asked the rule of an admin-only action
    elif staff.role in (Role.ADMIN, Role.MANAGER):
        assert allowed and not calls  # the full-access bypass lives in the policy
    else:
        assert allowed == answer
        assert calls == [(staff, client)]
    for other in ACTIONS:
        if other != action:
            assert policy.allows(staff, other, client) == POLICY.allows(staff, other, client)
    assert DEFAULT_RULES[action] is not rule  # the defaults are not changed


@SETTINGS
@given(staff_members, client_ids)
def test_overrides_add_actions(staff: Staff, client: str | None) -> None:
    policy = RoleAccessPolicy({"example.action": client_access})
    assert policy.allows(staff, "example.action", client) == (
        full_access(staff) or client_access(staff, client)
    )
    assert not POLICY.allows(staff, "example.action", client)
    assert "example.action" not in DEFAULT_RULES


@SETTINGS
@given(staff_members, actions, client_ids)
def test_full_access_roles_are_configurable(staff: Staff, action: str, client: str | None) -> None:
    nobody = RoleAccessPolicy(full_access_roles=())
    assert nobody.allows(staff, action, client) == (
        staff.active and DEFAULT_RULES[action](staff, client)
    )
    admins = RoleAccessPolicy(full_access_roles=[Role.ADMIN])
    if staff.active and staff.role is Role.ADMIN:
        assert admins.allows(staff, action, client)


@SETTINGS
@given(staff_members, st.sampled_from([*ACTIONS, "no.such"]))
def test_require_raises_exactly_when_refused(staff: Staff, action: str) -> None:
    if POLICY.allows(staff, action):
        require(POLICY, staff, action)
    else:
        with pytest.raises(PermissionDeniedError) as info:
            require(POLICY, staff, action)
        assert info.value.context["action"] == action
        assert info.value.context["actor"] == staff.id
    if POLICY.allows(staff, "mailing.send"):
        require_mailing(POLICY, staff)
    else:
        with pytest.raises(PermissionDeniedError):
            require_mailing(POLICY, staff)


@SETTINGS
@given(staff_members, actions, st.lists(st.sampled_from(CLIENTS), max_size=8))
def test_require_client_access_names_every_offending_client(
    staff: Staff, action: str, clients: list[str]
) -> None:
    offending = [c for c in clients if not POLICY.allows(staff, action, c)]
    if not offending:
        require_client_access(POLICY, staff, clients, action=action)
        return
    with pytest.raises(PermissionDeniedError) as info:
        require_client_access(POLICY, staff, clients, action=action)
    assert info.value.offending_ids == tuple(sorted(offending))
    assert info.value.context["action"] == action


# -- the 0.1 adapter ---------------------------------------------------------------------
class Legacy:
    """A host policy written for clientcomm 0.1: no ``allows``."""

    def __init__(self, clients: frozenset[str], mailing: bool) -> None:
        self.clients = clients
        self.mailing = mailing
        self.asked: list[tuple[str, Any]] = []

    def may_access_client(self, staff: Staff, client_id: str) -> bool:
        self.asked.append(("client", client_id))
        return staff.active and client_id in self.clients

    def may_send_mailing(self, staff: Staff) -> bool:
        self.asked.append(("mailing", None))
        return staff.active and self.mailing


legacy_policies = st.builds(Legacy, st.frozensets(st.sampled_from(CLIENTS)), st.booleans())


def test_as_policy() -> None:
    assert isinstance(as_policy(None), RoleAccessPolicy)
    assert as_policy(POLICY) is POLICY
    adapted = as_policy(Legacy(frozenset(), True))
    assert isinstance(adapted, AccessPolicy)
    assert not isinstance(adapted, RoleAccessPolicy)
    with pytest.raises(TypeError):
        as_policy(object())


@SETTINGS
@given(legacy_policies, staff_members, st.sampled_from(MAILING), client_ids)
def test_legacy_mailing_actions(
    legacy: Legacy, staff: Staff, action: str, client: str | None
) -> None:
    allowed = as_policy(legacy).allows(staff, action, client)
    may_mail = legacy.may_send_mailing(staff)
    if client is None:
        assert allowed == may_mail
    else:
        assert allowed == (
            may_mail and (full_access(staff) or legacy.may_access_client(staff, client))
        )


@SETTINGS
@given(legacy_policies, staff_members, st.sampled_from(CLIENT_ACTIONS), client_ids)
def test_legacy_client_actions(
    legacy: Legacy, staff: Staff, action: str, client: str | None
) -> None:
    allowed = as_policy(legacy).allows(staff, action, client)
    if client is None:
        assert allowed == POLICY.allows(staff, action, None)
    else:
        # 0.1: admins and managers reach every client, others as may_access_client says
        assert allowed == (full_access(staff) or legacy.may_access_client(staff, client))


@SETTINGS
@given(legacy_policies, staff_members, unknown_actions, client_ids)
def test_legacy_adapter_refuses_unknown_actions(
    legacy: Legacy, staff: Staff, action: str, client: str | None
) -> None:
    assert not as_policy(legacy).allows(staff, action, client)


def test_legacy_policy_only_with_may_access_client() -> None:
    class OnlyClients:
        def may_access_client(self, staff: Staff, client_id: str) -> bool:
            return client_id == "c1"

    policy = as_policy(OnlyClients())
    clerk = Staff("s1", "f1", "Cleo", Role.CLERK)
    assert policy.allows(clerk, "chat.read", "c1")
    assert not policy.allows(clerk, "chat.read", "c2")
    # no may_send_mailing: mailing follows the default rules on the legacy client access
    assert policy.allows(clerk, "mailing.send") == POLICY.allows(clerk, "mailing.send")
    assistant = Staff("s2", "f1", "Asta", Role.ASSISTANT)
    assert not policy.allows(assistant, "mailing.send")


def test_rule_type_is_a_callable_of_staff_and_client() -> None:
    rule: Rule = DEFAULT_RULES["chat.read"]
    assert rule(Staff("s", "f1", "n", Role.CLERK), None)


# -- sharing (seed 001) -------------------------------------------------------------------
portal_staff = st.builds(
    _staff,
    unrestricted=st.booleans(),
    id=st.sampled_from(["s1", "s2", "s3"]),
    firm_id=st.just("f1"),
    name=st.just("Name"),
    role=st.sampled_from(list(Role)),
    client_ids=st.frozensets(st.sampled_from(CLIENTS)),
    active=st.booleans(),
    permissions=st.frozensets(st.sampled_from(list(StaffPermission))),
)


@SETTINGS
@given(portal_staff, st.sampled_from([a for a in PORTAL if a != "share.end_any"]), client_ids)
def test_portal_actions_need_the_permission_and_the_client(
    staff: Staff, action: str, client: str | None
) -> None:
    """Seed 001: "Berechtigung Mandantenportal" and access to the case file's
    client (handler or assistant is the case file's rule, in sharing.rules)."""
    allowed = POLICY.allows(staff, action, client)
    if full_access(staff):
        assert allowed
    else:
        assert allowed == (
            staff.active
            and StaffPermission.CLIENT_PORTAL in staff.permissions
            and (client is None or staff.can_access(client))
        )


@SETTINGS
@given(portal_staff, client_ids)
def test_only_full_access_roles_end_others_shares(staff: Staff, client: str | None) -> None:
    assert POLICY.allows(staff, "share.end_any", client) == full_access(staff)


@SETTINGS
@given(staff_members, st.sampled_from(LETTERS), client_ids)
def test_letter_run_actions(staff: Staff, action: str, client: str | None) -> None:
    """Seed 003: preparing and checking with client access; release, order,
    cancel and download for clerks on the clients they reach; delete for
    administrators only."""
    allowed = POLICY.allows(staff, action, client)
    reach = staff.active and (client is None or staff.can_access(client))
    if not staff.active:
        assert not allowed
    elif action == "letters.delete":
        assert allowed == (staff.role is Role.ADMIN)
    elif staff.role in (Role.ADMIN, Role.MANAGER):
        assert allowed
    elif action in ("letters.prepare", "letters.view"):
        assert allowed == reach
    else:
        assert allowed == (staff.role is Role.CLERK and reach)
