"""A run's release with and without the e-mail notice, the firm's manager
approval read from the Directory (with the host's override), and the postal
provider as a constructor option; on every Store backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.utils import parseaddr
from pathlib import Path

import attrs
import pytest

from clientcomm import ClientActor, ClientComm, ConfigurationError, InvalidInputError, StaffActor
from clientcomm.directory.base import WritableDirectory
from clientcomm.letters.intake import PdfIntake
from clientcomm.letters.run_records import RunState
from clientcomm.letters.selection import Selection, SendTo
from clientcomm.mail.memory import MemoryTransport
from clientcomm.notifications.records import JOB_KIND
from clientcomm.postal import MemoryPostalProvider, PostalCapabilities
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.letters_run.support import MEMBERS, letters_app
from tests.letters_run.test_end_to_end import CASES, RANGES, UPLOAD, prepare

SHARER = StaffActor("f1", "sharer")


async def jobs(app: ClientComm) -> int:
    async with app.store.transaction("f1") as tx:
        return await tx.count(JOB_KIND)


def mailed(app: ClientComm) -> list[str]:
    assert isinstance(app.transport, MemoryTransport)
    return sorted(parseaddr(m["To"])[1] for m in app.transport.messages())


async def a_run(app: ClientComm, title: str = "Abrechnung") -> str:
    run = await app.letter_runs.create(SHARER, property_id="p1", title=title, contacts=MEMBERS)
    await app.letter_runs.upload(SHARER, run.id, filename="a.pdf", pdf=UPLOAD, ranges=RANGES)
    return run.id


async def released_notify(app: ClientComm, run_id: str) -> list[object]:
    await app.audit.chain("f1")
    page = await app.audit.query("f1", subject=f"letters.run:{run_id}", limit=1000)
    return [e.details.get("notify") for e in page.entries if e.operation == "letters.released"]


async def set_approval(app: ClientComm, on: bool) -> None:
    d = app.directory
    assert isinstance(d, WritableDirectory)
    await d.put_firm(attrs.evolve(await d.get_firm("f1"), letter_approval=on))


# -- 1. release with and without the e-mail notice --------------------------------------------
async def test_release_without_the_notice_writes_no_notice(
    app: ClientComm, tmp_path: Path, intake: PdfIntake
) -> None:
    await prepare(app, tmp_path, intake)
    quiet = await a_run(app, "Leise")
    done = await app.letter_runs.release(SHARER, quiet, case_files=CASES, notify=False)
    assert done.state is RunState.RELEASED and set(done.released_units) == {"u1", "u2", "u4"}
    assert await jobs(app) == 0
    await app.drain()
    assert mailed(app) == []
    # the documents are in the portals all the same
    for unit, contact in (("u1", "olga"), ("u4", "vera")):
        portal = ClientActor("f1", unit, contact)
        [folder] = await app.shares.list_folders(portal, CASES[unit])
        assert len(await app.shares.list_documents(portal, folder.id)) == 1
    assert await released_notify(app, quiet) == [False]

    # the default: the notice to every registered contact with an address, per unit
    loud = await a_run(app, "Laut")
    await app.letter_runs.release(SHARER, loud, case_files=CASES)
    assert await jobs(app) > 0
    await app.drain()
    assert mailed(app) == [
        "olga@example.com",
        "olga@example.com",
        "tom@example.com",
        "vera@example.com",
    ]
    assert await released_notify(app, loud) == [True]


async def test_release_refuses_a_notify_that_is_no_bool(
    app: ClientComm, tmp_path: Path, intake: PdfIntake
) -> None:
    await prepare(app, tmp_path, intake)
    run_id = await a_run(app)
    with pytest.raises(InvalidInputError) as err:
        await app.letter_runs.release(SHARER, run_id, case_files=CASES, notify=0)  # type: ignore[arg-type]
    assert err.value.field == "notify"
    assert (await app.letter_runs.get(SHARER, run_id)).state is RunState.DRAFT
    assert await jobs(app) == 0


# -- 2. manager approval from the Directory ------------------------------------------------------
async def test_approval_in_the_firm_settings_decides_who_gets_the_link(
    app: ClientComm, tmp_path: Path, intake: PdfIntake
) -> None:
    await prepare(app, tmp_path, intake)
    run_id = await a_run(app)
    await app.letter_runs.set_selection(SHARER, run_id, Selection(SendTo.ALL))
    off = await app.letter_runs.request_download(SHARER, run_id)
    assert off.recipients == ("sharer",)  # approval off (the default): the requester
    await set_approval(app, True)
    on = await app.letter_runs.request_download(SHARER, run_id)
    assert on.recipients == ("approver",)  # only staff with letter_approval
    # the host's callback, where it is set, overrides the Directory
    seen: list[str] = []

    async def host_says_no(firm_id: str) -> bool:
        seen.append(firm_id)
        return False

    app.letter_runs.approval = host_says_no
    overridden = await app.letter_runs.request_download(SHARER, run_id)
    assert overridden.recipients == ("sharer",) and seen == ["f1"]
    await app.audit.chain("f1")
    page = await app.audit.query("f1", subject=f"letters.run:{run_id}", limit=1000)
    asked = [e.details["approval"] for e in page.entries if e.operation.endswith("requested")]
    assert sorted(asked) == [False, False, True]


# -- 3. the postal provider as a constructor option ------------------------------------------------
@pytest.fixture(params=STORE_BACKENDS)
async def postal_app(
    request: pytest.FixtureRequest, tmp_path: Path, intake: PdfIntake
) -> AsyncIterator[ClientComm]:
    provider = MemoryPostalProvider(PostalCapabilities())
    async for store in open_backend(request.param, tmp_path):
        async with letters_app(store, tmp_path, postal=provider) as app:
            app.letter_runs.intake = intake
            yield app


async def test_the_postal_provider_is_a_constructor_option(
    postal_app: ClientComm, tmp_path: Path, intake: PdfIntake
) -> None:
    app = postal_app
    provider = app.letter_runs.provider
    assert isinstance(provider, MemoryPostalProvider)
    await prepare(app, tmp_path, intake)
    app.letter_runs.provider = provider  # prepare() set a file drop; the option's again
    run_id = await a_run(app)
    await app.letter_runs.release(SHARER, run_id, case_files=CASES, notify=False)
    await app.letter_runs.set_selection(SHARER, run_id, Selection(SendTo.UNREGISTERED))
    ordered = await app.letter_runs.order(SHARER, run_id)
    assert ordered.order is not None and ordered.order.state == "ordered"
    assert [b.batch_id for b in provider.orders] == [ordered.order.batch_id]


async def test_ordering_without_a_provider_is_a_configuration_error(
    app: ClientComm, tmp_path: Path, intake: PdfIntake
) -> None:
    await prepare(app, tmp_path, intake)
    app.letter_runs.provider = None  # the default of ClientComm(postal=None)
    run_id = await a_run(app)
    await app.letter_runs.release(SHARER, run_id, case_files=CASES, notify=False)
    before = await app.letter_runs.get(SHARER, run_id)
    with pytest.raises(ConfigurationError, match="postal"):
        await app.letter_runs.order(SHARER, run_id)
    assert await app.letter_runs.get(SHARER, run_id) == before  # nothing written
    assert (await app.letter_runs.dispatch(SHARER, run_id)).button.value == "feature_unavailable"


def test_a_postal_option_that_is_no_provider_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="PostalProvider"):
        ClientComm.in_memory(postal=object())
