"""Isolation of portal sharing, over every Store backend.

Every public method of the sharing API (enumerated by introspection: a method
added later is called too, and one with a parameter this test does not know
fails it) is called as client A with client B's ids (case file, folder,
channel, share, message, upload) and as staff outside the file (a restricted
clerk with the portal permission who does not reach B, and one without the
permission): each answer must be exactly what a missing id gets, a refusal, and
no byte of B's may come back. Nothing is written by the refused calls.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from clientcomm import CaseFile
from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.directory.base import WritableDirectory
from clientcomm.errors import ClientCommError
from clientcomm.sharing import (
    DOWNLOAD_KIND,
    MESSAGE_KIND,
    PLACE_KIND,
    SHARE_KIND,
    PortalDocument,
    SharingService,
)
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.sharing.support import SHARER, count, sharing_app

B_BYTES = b"%PDF-1.7\nsecret of client B " + b"\x01" * 5000 + b"\n%%EOF\n"
CLIENT_A = ClientActor("f1", "c1", "k1")
OUTSIDERS: dict[str, object] = {
    "client A": CLIENT_A,
    "restricted clerk with portal permission, outside the file": StaffActor("f1", "outsider"),
    "restricted clerk without portal permission": StaffActor("f1", "restricted"),
    "other firm's admin": StaffActor("f2", "admin2"),
}
MISSING = {
    "case_id": "akte-none",
    "folder_id": "fld-none",
    "channel_id": "chn-none",
    "share_id": "shr-none",
    "reply_to": "pm-none",
}
VALUES: dict[str, Any] = {
    "name": "Ordner",
    "text": "Hallo",
    "document_ids": ["b-doc"],
}


def documents() -> list[PortalDocument]:
    return [PortalDocument("x.pdf", b"%PDF-1.7\nA's own\n%%EOF\n", "application/pdf", "a-doc")]


def sharing_methods() -> list[str]:
    """Every public method of the sharing API that takes an actor."""
    out = []
    for name, fn in inspect.getmembers(SharingService, inspect.isfunction):
        if not name.startswith("_") and "actor" in inspect.signature(fn).parameters:
            out.append(name)
    return out


def kwargs_for(fn: Callable[..., Any], ids: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, p in inspect.signature(fn).parameters.items():
        if name in ("self", "actor"):
            continue
        if name in MISSING:
            out[name] = ids[name]
        elif name == "documents":
            out[name] = documents()
        elif name in VALUES:
            out[name] = VALUES[name]
        elif p.default is inspect.Parameter.empty:
            raise AssertionError(f"{fn.__qualname__}: unknown parameter {name!r}")
    return out


async def outcome(call: Callable[[], Any], names: list[str]) -> tuple[str, ...]:
    def scrub(text: str) -> str:
        for name in sorted(names, key=len, reverse=True):
            text = text.replace(name, "<id>")
        return text

    try:
        result = call()
        if inspect.isawaitable(result):
            result = await result
        if hasattr(result, "__anext__"):  # a download: read it all
            data = b"".join([piece async for piece in result])
            assert b"secret of client B" not in data, "client B's bytes leaked"
            return ("ok", f"{len(data)} bytes")
        assert "secret" not in repr(result)
        return ("ok", scrub(repr(result)))
    except ClientCommError as exc:
        context = sorted((k, scrub(repr(v))) for k, v in exc.context.items())
        return (type(exc).__name__, scrub(str(exc)), repr(context))


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with sharing_app(store, tmp_path) as application:
            yield application


async def client_b_objects(app: ClientComm) -> dict[str, Any]:
    """Client B (c2) has a case file of its own, and a folder, a channel, shares
    (with and without a message), messages and an upload in the shared file."""
    assert isinstance(app.directory, WritableDirectory)
    await app.directory.put_case_file(CaseFile("akte-b", "f1", "c2", "Bau", handler_id="sharer"))
    folder = await app.shares.create_folder(SHARER, "akte1", "B Ordner", client_id="c2")
    channel = await app.shares.create_channel(SHARER, "akte1", "B Post", client_id="c2")
    doc = PortalDocument("B.pdf", B_BYTES, "application/pdf", "b-doc")
    shared = await app.shares.share(SHARER, "akte1", [doc], folder_id=folder.id, client_id="c2")
    with_message = await app.shares.share_with_message(
        SHARER, "akte1", [doc], "Für B", channel_id=channel.id, client_id="c2"
    )
    client_b = ClientActor("f1", "c2", "k2")
    reply = await app.shares.post(client_b, channel.id, "Antwort von B")
    upload = await app.shares.upload(
        client_b, folder.id, [PortalDocument("U.pdf", B_BYTES, "application/pdf")]
    )
    # A's own places in the shared file, for the reply_to case below
    await app.shares.create_channel(SHARER, "akte1", "A Post", client_id="c1")
    return {
        "case_id": "akte-b",
        "folder_id": folder.id,
        "channel_id": channel.id,
        "share_id": shared.share_ids[0],
        "reply_to": reply,
        "more_shares": [with_message.share_ids[0], *upload],
    }


async def stored_counts(app: ClientComm) -> dict[str, int]:
    return {k: await count(app, k) for k in (SHARE_KIND, PLACE_KIND, MESSAGE_KIND, DOWNLOAD_KIND)}


def test_the_enumeration_finds_the_whole_api() -> None:
    found = set(sharing_methods())
    assert {
        "create_channel", "create_folder", "download", "end", "get_document",
        "list_channel_documents", "list_channels", "list_documents", "list_folders",
        "list_messages", "post", "share", "share_with_message", "unread_count",
        "upload", "visibility",
    } <= found  # fmt: skip
    for name in found:  # every parameter is known to this test
        kwargs_for(getattr(SharingService, name), MISSING)


async def test_every_method_refuses_b_s_ids_as_missing_ones(app: ClientComm) -> None:
    b = await client_b_objects(app)
    names = [v for v in b.values() if isinstance(v, str)] + list(MISSING.values())
    names += [*b["more_shares"], "c2"]
    before = await stored_counts(app)
    problems: list[str] = []
    checked = 0
    for name in sharing_methods():
        fn = getattr(app.shares, name)
        for who, actor in OUTSIDERS.items():
            for share_id in [b["share_id"], *b["more_shares"]]:
                ids = {**b, "share_id": share_id}
                there = await outcome(partial(fn, actor, **kwargs_for(fn, ids)), names)
                gone = await outcome(partial(fn, actor, **kwargs_for(fn, MISSING)), names)
                checked += 1
                if there != gone:
                    problems.append(f"{name} as {who}: B's ids {there} != missing {gone}")
                elif there[0] not in ("NotFoundError", "PermissionDeniedError"):
                    problems.append(f"{name} as {who}: not refused: {there}")
                if "share_id" not in inspect.signature(fn).parameters:
                    break
    assert not problems, "\n".join(problems)
    assert checked >= 16 * len(OUTSIDERS)
    assert await stored_counts(app) == before


async def test_a_reply_to_b_s_message_in_a_s_own_channel_is_a_missing_message(
    app: ClientComm,
) -> None:
    b = await client_b_objects(app)
    [own] = await app.shares.list_channels(CLIENT_A, "akte1")
    names = [b["reply_to"], MISSING["reply_to"]]
    there = await outcome(
        partial(app.shares.post, CLIENT_A, own.id, "x", reply_to=b["reply_to"]), names
    )
    gone = await outcome(
        partial(app.shares.post, CLIENT_A, own.id, "x", reply_to=MISSING["reply_to"]), names
    )
    assert there == gone and there[0] == "NotFoundError"


async def test_the_comparison_sees_a_leak(app: ClientComm) -> None:
    """Not vacuous: client B itself gets its folder (existing: answered; missing:
    NotFoundError), so the two outcomes differ, and B's bytes are recognised."""
    b = await client_b_objects(app)
    client_b = ClientActor("f1", "c2", "k2")
    fn = app.shares.list_documents
    there = await outcome(partial(fn, client_b, folder_id=b["folder_id"]), [])
    gone = await outcome(partial(fn, client_b, folder_id="fld-none"), [])
    assert there[0] == "ok" and gone[0] == "NotFoundError"
    with pytest.raises(AssertionError, match="leaked"):
        await outcome(partial(app.shares.download, client_b, b["share_id"]), [])
