"""Case files with several clients (portal sharing) in every bundled Directory."""

from __future__ import annotations

import pytest

from clientcomm import CaseFile, Client, Firm, InvalidInputError, NotFoundError
from clientcomm.directory.base import WritableDirectory


async def seed(d: WritableDirectory) -> None:
    await d.put_firm(Firm("f1", "Kanzlei"))
    for cid in ("c1", "c2", "c3", "c%"):
        await d.put_client(Client(cid, "f1", f"Client {cid}"))


async def test_a_case_file_keeps_its_other_clients(any_directory: WritableDirectory) -> None:
    d = any_directory
    await seed(d)
    case = CaseFile("a1", "f1", "c1", "Akte", handler_id="s1", client_ids={"c2"})
    await d.put_case_file(case)
    await d.put_case_file(CaseFile("a2", "f1", "c2", "Andere"))
    await d.put_case_file(CaseFile("a3", "f1", "c%", "Wildcard"))
    got = await d.get_case_file("f1", "a1")
    assert got == case and got.clients == ("c1", "c2") and got.has_client("c2")
    assert [c.id for c in await d.list_case_files("f1", "c2")] == ["a1", "a2"]
    assert [c.id for c in await d.list_case_files("f1", "c1")] == ["a1"]
    assert [c.id for c in await d.list_case_files("f1", "c3")] == []  # LIKE pre-filter only
    assert [c.id for c in await d.list_case_files("f1", "c%")] == ["a3"]


async def test_other_clients_must_exist_and_be_ids(any_directory: WritableDirectory) -> None:
    d = any_directory
    await seed(d)
    with pytest.raises(NotFoundError):
        await d.put_case_file(CaseFile("a1", "f1", "c1", "Akte", client_ids={"nobody"}))
    with pytest.raises(InvalidInputError) as err:
        await d.put_case_file(CaseFile("a1", "f1", "c1", "Akte", client_ids={"c\n2"}))
    assert err.value.field == "client_ids"
    with pytest.raises(NotFoundError):
        await d.get_case_file("f1", "a1")
