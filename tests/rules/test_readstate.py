"""Read state (pure): for which side a new message starts unread."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from clientcomm.rules.readstate import Author, DefaultReadPolicy, ReadPolicy, UnreadFor

POLICY = DefaultReadPolicy()


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(list(Author)), st.booleans())
def test_a_message_starts_unread_for_the_other_side(author: Author, via_mailing: bool) -> None:
    unread = POLICY.unread_for(author, via_mailing=via_mailing)
    assert isinstance(unread, UnreadFor)
    if author is Author.STAFF:
        assert unread is UnreadFor.CLIENT  # single messages and mailing copies alike
    else:
        assert unread is UnreadFor.STAFF
    # the mailing flag does not change the default decision
    assert unread is POLICY.unread_for(author, via_mailing=not via_mailing)


def test_every_author_has_a_side() -> None:
    assert {POLICY.unread_for(a, via_mailing=False) for a in Author} == set(UnreadFor)
    assert POLICY.unread_for(Author.STAFF, via_mailing=True) is UnreadFor.CLIENT
    assert POLICY.unread_for(Author.CLIENT, via_mailing=True) is UnreadFor.STAFF


def test_stored_values_are_stable() -> None:
    # these strings are the message records' status column
    assert [a.value for a in Author] == ["staff", "client"]
    assert [u.value for u in UnreadFor] == ["to_client", "to_staff"]


def test_policies_are_pluggable() -> None:
    class EverythingUnreadForStaff:
        def unread_for(self, author: Author, *, via_mailing: bool) -> UnreadFor:
            return UnreadFor.STAFF

    assert isinstance(POLICY, ReadPolicy)
    assert isinstance(EverythingUnreadForStaff(), ReadPolicy)
    assert not isinstance(object(), ReadPolicy)


class Recording:
    """A read policy that records what it was asked and flips the default for mailings."""

    def __init__(self) -> None:
        self.asked: list[tuple[Author, bool]] = []

    def unread_for(self, author: Author, *, via_mailing: bool) -> UnreadFor:
        self.asked.append((author, via_mailing))
        if via_mailing:
            return UnreadFor.STAFF
        return DefaultReadPolicy().unread_for(author, via_mailing=via_mailing)


async def test_services_store_the_policy_decision() -> None:
    from clientcomm.actors import ClientActor, StaffActor
    from clientcomm.app import ClientComm
    from clientcomm.directory.memory import MemoryDirectory
    from clientcomm.messages.records import MessageRecord
    from clientcomm.records import Records
    from clientcomm.rules.audience import Audience
    from tests.mailing_support import seed

    directory = MemoryDirectory()
    await seed(directory)
    for policy, mailing_side in ((None, UnreadFor.CLIENT), (Recording(), UnreadFor.STAFF)):
        app = ClientComm.in_memory(directory=directory, read_policy=policy)
        staff_msg = await app.messages.send(StaffActor("f1", "admin"), "c1", "Hallo")
        reply = await app.messages.send(ClientActor("f1", "c1"), "c1", "Danke")
        await app.mailings.submit(StaffActor("f1", "admin"), Audience.clients("c1"), "Rund")
        await app.drain()
        async with Records(app.store).transaction("f1") as tx:
            stored = {m.id: m for m in await tx.list(MessageRecord, parent="c1")}
        assert stored.pop(staff_msg).unread_for is UnreadFor.CLIENT
        assert stored.pop(reply).unread_for is UnreadFor.STAFF
        [copy] = stored.values()
        assert copy.mailing_id is not None
        assert copy.unread_for is mailing_side
        if isinstance(policy, Recording):
            assert sorted(policy.asked) == sorted(
                [(Author.STAFF, False), (Author.CLIENT, False), (Author.STAFF, True)]
            )
