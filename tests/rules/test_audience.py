"""resolve_audience (pure) over generated clients, groups, audiences and senders,
checked against a direct model of seed 000's rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clientcomm.directory.models import Client, ClientGroup, Role, Staff
from clientcomm.errors import InvalidInputError, NotFoundError
from clientcomm.rules.access import RoleAccessPolicy
from clientcomm.rules.audience import Audience, ResolvedAudience, SkippedClient, resolve_audience

CLIENT_POOL = [f"c{i}" for i in range(8)]
GROUP_POOL = ["g1", "g2", "g3"]
POLICY = RoleAccessPolicy()
SETTINGS = settings(max_examples=100, deadline=None)
ERRORS = settings(max_examples=50, deadline=None)


@st.composite
def firms(draw: st.DrawFn) -> tuple[list[Client], list[ClientGroup]]:
    groups = draw(st.lists(st.sampled_from(GROUP_POOL), unique=True))
    ids = draw(st.lists(st.sampled_from(CLIENT_POOL), unique=True, max_size=8))
    clients = [
        Client(
            cid,
            "f1",
            cid.upper(),
            active=draw(st.booleans()),
            group_ids=draw(st.frozensets(st.sampled_from(groups))) if groups else frozenset(),
        )
        for cid in ids
    ]
    return clients, [ClientGroup(g, "f1", g.upper()) for g in groups]


def _staff(unrestricted: bool, client_ids: frozenset[str], **kw: Any) -> Staff:
    """A Staff entry; unrestricted staff have no client list (refused)."""
    return Staff(
        unrestricted=unrestricted, client_ids=frozenset() if unrestricted else client_ids, **kw
    )


senders = st.builds(
    _staff,
    unrestricted=st.booleans(),
    id=st.just("sender"),
    firm_id=st.just("f1"),
    name=st.just("Sender"),
    role=st.sampled_from(list(Role)),
    client_ids=st.frozensets(st.sampled_from(CLIENT_POOL)),
)


def audiences(
    clients: Sequence[Client], groups: Sequence[ClientGroup]
) -> st.SearchStrategy[Audience]:
    """Audiences naming only what exists (errors are tested separately)."""
    group_ids = [g.id for g in groups]
    client_ids = [c.id for c in clients]
    return st.builds(
        Audience,
        all_active=st.booleans(),
        group_ids=st.frozensets(st.sampled_from(group_ids)) if group_ids else st.just(frozenset()),
        client_ids=st.frozensets(st.sampled_from(client_ids))
        if client_ids
        else st.just(frozenset()),
    )


def reachable(sender: Staff, client_id: str) -> bool:
    return POLICY.allows(sender, "mailing.send", client_id)


def model(
    audience: Audience, sender: Staff, clients: Sequence[Client]
) -> ResolvedAudience | type[Exception]:
    """What seed 000 says the result is, for an audience naming only existing groups
    and clients."""
    if not (audience.all_active or audience.group_ids or audience.client_ids):
        return InvalidInputError
    if any(not reachable(sender, c) for c in audience.client_ids):
        return NotFoundError  # out of reach answers as missing
    by_id = {c.id: c for c in clients}
    chosen = set(audience.client_ids)
    chosen |= {c.id for c in clients if audience.all_active and c.active}
    chosen |= {c.id for c in clients if c.group_ids & audience.group_ids}
    recipients = tuple(sorted(c for c in chosen if by_id[c].active and reachable(sender, c)))
    if not recipients:
        return InvalidInputError
    skipped = tuple(
        SkippedClient(c, "inactive") for c in sorted(audience.client_ids) if not by_id[c].active
    )
    return ResolvedAudience(recipients, skipped)


def resolve(
    audience: Audience, sender: Staff, clients: Sequence[Client], groups: Sequence[ClientGroup]
) -> ResolvedAudience:
    return resolve_audience(audience, sender=sender, policy=POLICY, clients=clients, groups=groups)


@SETTINGS
@given(st.data(), firms(), senders)
def test_resolution_follows_the_rules(
    data: st.DataObject, firm: tuple[list[Client], list[ClientGroup]], sender: Staff
) -> None:
    clients, groups = firm
    audience = data.draw(audiences(clients, groups), label="audience")
    expected = model(audience, sender, clients)
    if isinstance(expected, type):
        with pytest.raises(expected):
            resolve(audience, sender, clients, groups)
        return
    result = resolve(audience, sender, clients, groups)
    assert result == expected
    by_id = {c.id: c for c in clients}
    ids = result.recipient_ids
    assert list(ids) == sorted(set(ids))  # sorted and unique
    assert result.count == len(ids)
    assert all(by_id[c].active for c in ids)  # inactive clients never receive
    assert all(reachable(sender, c) for c in ids)  # within the sender's reach
    union = (
        set(audience.client_ids)
        | ({c.id for c in clients if c.active} if audience.all_active else set())
        | {c.id for c in clients if c.group_ids & audience.group_ids}
    )
    assert set(ids) <= union
    assert {c for c in union if by_id[c].active and reachable(sender, c)} == set(ids)
    assert {s.client_id for s in result.skipped} == {
        c for c in audience.client_ids if not by_id[c].active
    }
    assert all(s.reason == "inactive" for s in result.skipped)
    assert not set(ids) & {s.client_id for s in result.skipped}


@SETTINGS
@given(st.data(), firms(), senders)
def test_union_of_audiences_is_the_union_of_recipients(
    data: st.DataObject, firm: tuple[list[Client], list[ClientGroup]], sender: Staff
) -> None:
    clients, groups = firm
    a = data.draw(audiences(clients, groups), label="a")
    b = data.draw(audiences(clients, groups), label="b")
    results = []
    for audience in (a, b):
        try:
            results.append(resolve(audience, sender, clients, groups))
        except (InvalidInputError, NotFoundError):
            return
    both = resolve(a | b, sender, clients, groups)
    assert set(both.recipient_ids) == set(results[0].recipient_ids) | set(results[1].recipient_ids)
    assert set(both.skipped) == set(results[0].skipped) | set(results[1].skipped)


@ERRORS
@given(firms())
def test_everyone_from_an_admin_is_every_active_client(
    firm: tuple[list[Client], list[ClientGroup]],
) -> None:
    clients, groups = firm
    admin = Staff("a", "f1", "Admin", Role.ADMIN, unrestricted=False)
    active = sorted(c.id for c in clients if c.active)
    if not active:
        with pytest.raises(InvalidInputError) as info:
            resolve(Audience.everyone(), admin, clients, groups)
        assert info.value.field == "audience"
        return
    result = resolve(Audience.everyone(), admin, clients, groups)
    assert result.recipient_ids == tuple(active)
    assert result.skipped == ()


# -- errors --------------------------------------------------------------------------
ADMIN = Staff("a", "f1", "Admin", Role.ADMIN)


@ERRORS
@given(firms(), senders)
def test_empty_audience_is_refused(
    firm: tuple[list[Client], list[ClientGroup]], sender: Staff
) -> None:
    clients, groups = firm
    with pytest.raises(InvalidInputError) as info:
        resolve(Audience(), sender, clients, groups)
    assert info.value.field == "audience"


@ERRORS
@given(firms(), st.frozensets(st.sampled_from([*GROUP_POOL, "g9", "x"]), min_size=1))
def test_unknown_groups_are_refused(
    firm: tuple[list[Client], list[ClientGroup]], asked: frozenset[str]
) -> None:
    clients, groups = firm
    known = {g.id for g in groups}
    unknown = asked - known
    if groups and not unknown:
        return
    with pytest.raises(InvalidInputError) as info:
        resolve(Audience(group_ids=asked), ADMIN, clients, groups)
    assert info.value.field == "audience.group_ids"
    assert info.value.value == sorted(asked if not groups else unknown)


@ERRORS
@given(firms(), st.frozensets(st.sampled_from([*CLIENT_POOL, "z1", "z2"]), min_size=1))
def test_missing_picked_clients_are_not_found(
    firm: tuple[list[Client], list[ClientGroup]], picked: frozenset[str]
) -> None:
    clients, groups = firm
    missing = sorted(picked - {c.id for c in clients})
    if not missing:
        return
    with pytest.raises(NotFoundError) as info:
        resolve(Audience(client_ids=picked, all_active=True), ADMIN, clients, groups)
    assert info.value.kind == "client"
    assert info.value.id == ", ".join(missing)  # every missing one, sorted


@SETTINGS
@given(st.data(), firms(), senders)
def test_picked_clients_outside_access_are_named(
    data: st.DataObject, firm: tuple[list[Client], list[ClientGroup]], sender: Staff
) -> None:
    clients, groups = firm
    if not clients:
        return
    picked = data.draw(st.frozensets(st.sampled_from([c.id for c in clients]), min_size=1))
    outside = sorted(c for c in picked if not reachable(sender, c))
    audience = Audience(client_ids=picked, all_active=data.draw(st.booleans()))
    if not outside:
        return
    with pytest.raises(NotFoundError) as info:
        resolve(audience, sender, clients, groups)
    # exactly those, never dropped, and answered as missing ones are
    assert info.value.kind == "client"
    assert info.value.id == ", ".join(outside)
    missing = data.draw(st.sampled_from(["z1", "z2"]))
    with pytest.raises(NotFoundError) as both:
        resolve(attrs.evolve(audience, client_ids=picked | {missing}), sender, clients, groups)
    assert both.value.id == ", ".join(sorted([*outside, missing]))  # not told apart


def test_errors_come_in_a_fixed_order() -> None:
    clients = [Client("c1", "f1", "C1"), Client("c2", "f1", "C2", active=False)]
    groups = [ClientGroup("g1", "f1", "G1")]
    clerk = Staff("s", "f1", "Restricted", Role.CLERK, unrestricted=False, client_ids={"c1"})
    # unknown group before missing client before access
    with pytest.raises(InvalidInputError):
        resolve(Audience(group_ids="g9", client_ids={"zz", "c2"}), clerk, clients, groups)
    with pytest.raises(NotFoundError):
        resolve(Audience(group_ids="g1", client_ids={"zz", "c2"}), clerk, clients, groups)
    with pytest.raises(NotFoundError) as info:
        resolve(Audience(client_ids={"c1", "c2"}), clerk, clients, groups)
    assert info.value.id == "c1, c2"  # restricted clerks may not mail: as if missing
    # groups asked for in a firm without groups
    with pytest.raises(InvalidInputError) as bad:
        resolve(Audience.groups("g1"), ADMIN, clients, [])
    assert bad.value.field == "audience.group_ids"
    # only an inactive picked client: reported, and nobody is left
    with pytest.raises(InvalidInputError) as empty:
        resolve(Audience.clients("c2"), ADMIN, clients, groups)
    assert empty.value.field == "audience"


def test_audience_values() -> None:
    assert Audience(client_ids="c1") == Audience.clients("c1")
    assert Audience(group_ids="g1") == Audience.groups("g1")
    both = Audience.groups("g2", "g1") | Audience.clients("c2", "c1") | Audience.everyone()
    assert both == Audience(all_active=True, group_ids={"g1", "g2"}, client_ids={"c1", "c2"})
    assert both.to_dict() == {
        "all_active": True,
        "group_ids": ["g1", "g2"],
        "client_ids": ["c1", "c2"],
    }
    assert attrs.evolve(both, all_active=False).to_dict()["all_active"] is False
