"""The metadata tamper suite for the sharing kinds (``share``, ``portal.place``,
``portal.message``), over every Store backend: each attribute declared
protected is edited in the store, and the body is swapped with another record's
of the same client; the tampered record alone is refused (never shown, never
opened), the others are still shown."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from clientcomm.app import ClientComm
from clientcomm.errors import IntegrityError, NotFoundError
from clientcomm.records import REGISTRY, Kind
from clientcomm.sharing import MESSAGE_KIND, PLACE_KIND, SHARE_KIND, PortalDocument
from clientcomm.storage.base import Record
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.sharing.support import PDF, SHARER, sharing_app

PROTECTED = {"sealed", "aad", "bound", "mac", "key"}


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with sharing_app(store, tmp_path) as application:
            yield application


def protected(kind: Kind[Any]) -> list[str]:
    return [
        f.name
        for f in attrs.fields(kind.cls)
        if f.name != "meta" and (kind.integrity_of(f.name) or "").partition(":")[0] in PROTECTED
    ]


def edited(value: Any) -> Any:
    """A different value of the same stored shape."""
    if isinstance(value, bytes):
        return value[:-1] + bytes([value[-1] ^ 1])
    if isinstance(value, str):
        if value in ("active", "ended"):
            return "ended" if value == "active" else "active"
        if value in ("folder", "channel"):
            return "channel" if value == "folder" else "folder"
        if value in ("to_client", "to_staff"):
            return "to_staff" if value == "to_client" else "to_client"
        if value in ("staff", "client", "firm"):
            return {"staff": "client", "client": "staff", "firm": "client"}[value]
        if value[:4].isdigit() and "T" in value:  # an ISO time in data
            return value.replace(value[:4], str(int(value[:4]) + 1), 1)
        return value + "-edited"
    if isinstance(value, list):
        if value and isinstance(value[0], dict):
            out = copy.deepcopy(value)
            out[0]["blob_id"] = out[0]["blob_id"] + "x"
            return out
        return [*value, "x-edited"]
    if value is None:
        return "x-edited"
    raise AssertionError(f"no edit for {value!r}")


def locate(kind: Kind[Any], attr: str) -> tuple[str, str]:
    for column, name in kind.columns.items():
        if name == attr:
            return ("column", column)
    return ("data", attr)


def tamper(record: Record, where: tuple[str, str]) -> Record:
    place, name = where
    if place == "column":
        value = getattr(record, name)
        if name == "created_at":
            return record.evolve(created_at=value + timedelta(seconds=1))
        return record.evolve(**{name: edited(value)})
    data = copy.deepcopy(dict(record.data))
    old = data.get(name)
    data[name] = edited(old)
    if name in ("expires_at", "ended_at") and old is None:
        data[name] = "2030-01-01T00:00:00+00:00"
    return record.evolve(data=data)


async def put_raw(app: ClientComm, record: Record) -> None:
    """Replace the stored record as a database editor would (delete and insert,
    so that ``created_at`` can change too)."""
    new = record.evolve(seq=0, version=0, lease_owner=None, lease_until=None)
    async with app.store.transaction("f1") as tx:
        await tx.delete(record.kind, [record.id])
        await tx.insert([new])


async def raw(app: ClientComm, kind: str, id: str) -> Record:
    async with app.store.transaction("f1") as tx:
        return await tx.get(kind, id)


async def setup(app: ClientComm) -> dict[str, Any]:
    folder = await app.shares.create_folder(SHARER, "akte3", "Bescheide")
    await app.shares.create_folder(SHARER, "akte3", "Verträge")
    channel = await app.shares.create_channel(SHARER, "akte3", "Post")
    docs = [
        PortalDocument("a.pdf", PDF, "application/pdf", "h1"),
        PortalDocument("b.pdf", PDF, "application/pdf", "h2"),
    ]
    shared = await app.shares.share(SHARER, "akte3", docs, folder_id=folder.id)
    await app.shares.post(SHARER, channel.id, "Erste")
    await app.shares.post(SHARER, channel.id, "Zweite")
    return {"folder": folder.id, "channel": channel.id, "shares": shared.share_ids}


async def shown_ids(app: ClientComm, kind: str, ids: dict[str, Any]) -> set[str]:
    """The records of ``kind`` a staff reader is shown (an IntegrityError or a
    NotFoundError for a tampered place hides all that is in it)."""
    try:
        if kind == SHARE_KIND:
            docs = await app.shares.list_documents(SHARER, ids["folder"], include_ended=True)
            return {d.id for d in docs}
        if kind == PLACE_KIND:
            return {f.id for f in await app.shares.list_folders(SHARER, "akte3")}
        msgs = await app.shares.list_messages(SHARER, ids["channel"], mark_read=False)
        return {m.id for m in msgs}
    except (IntegrityError, NotFoundError):
        return set()


async def kind_ids(app: ClientComm, kind: str, ids: dict[str, Any]) -> list[str]:
    async with app.store.transaction("f1") as tx:
        if kind == PLACE_KIND:
            return [r.id for r in await tx.list(kind, status="folder")]
        if kind == SHARE_KIND:
            return list(ids["shares"])
        return [r.id for r in await tx.list(kind, ref=ids["channel"])]


Reader = Callable[[ClientComm, str], Awaitable[object]]


@pytest.mark.parametrize("kind_name", [SHARE_KIND, PLACE_KIND, MESSAGE_KIND])
async def test_each_protected_attribute_edited_or_swapped_is_refused(
    app: ClientComm, kind_name: str
) -> None:
    kind = REGISTRY.kind(kind_name)
    ids = await setup(app)
    [victim, other] = await kind_ids(app, kind_name, ids)
    assert await shown_ids(app, kind_name, ids) >= {victim, other}
    # the id is in the associated data: the body swap below moves a value to another id
    attributes = [a for a in protected(kind) if a != "id"]
    assert len(attributes) >= 6
    for attr in attributes:
        original = await raw(app, kind_name, victim)
        where = locate(kind, attr)
        try:
            await put_raw(app, tamper(original, where))
            shown = await shown_ids(app, kind_name, ids)
            assert victim not in shown, f"{kind_name}.{attr} edited is still shown"
            assert other in shown, f"{kind_name}.{attr} edited hides another record"
            if kind_name == SHARE_KIND:
                with pytest.raises(NotFoundError):
                    await app.shares.get_document(SHARER, victim)
        finally:
            await put_raw(app, original)
        assert victim in await shown_ids(app, kind_name, ids)
    # a body swapped with another record's of the same client does not open
    a, b = await raw(app, kind_name, victim), await raw(app, kind_name, other)
    await put_raw(app, a.evolve(body=b.body))
    assert victim not in await shown_ids(app, kind_name, ids)
    assert other in await shown_ids(app, kind_name, ids)
