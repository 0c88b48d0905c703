"""The one step registry: ClientComm.steps, run_step, run_once, host steps and
the Worker all run the same named steps."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clientcomm.actors import StaffActor
from clientcomm.app import BUILTIN_STEPS, ClientComm
from clientcomm.directory.memory import MemoryDirectory
from clientcomm.errors import ConfigurationError, InvalidInputError
from clientcomm.notifications.fanout import FANOUT_KIND
from clientcomm.notifications.records import JOB_KIND
from clientcomm.rules.audience import Audience
from clientcomm.steps import Step, StepRegistry
from clientcomm.worker import Worker
from tests.mailing_support import recipient_states, seed

ROOT = Path(__file__).resolve().parent.parent
OURS = (
    "mailing.fanout",
    "attachments.sweep",
    "sharing.timers",
    "letters.pdfa",
    "notifications.expand",
    "notifications.deliver",
    "keys.rewrap",
    "clients.erase",
    "conversations.escalate",
    "audit.chain",
)
NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")


class Spy:
    """A host step's function: records each call's limit; returns ``result`` for
    its first ``times`` calls and 0 (idle) after that."""

    def __init__(
        self, calls: list[tuple[str, int]], name: str, result: int = 0, *, times: int = 1
    ) -> None:
        self.calls = calls
        self.name = name
        self.result = result
        self.times = times

    async def __call__(self, app: ClientComm, limit: int) -> int:
        self.calls.append((self.name, limit))
        self.times -= 1
        return self.result if self.times >= 0 else 0


@pytest.fixture
async def directory() -> AsyncIterator[MemoryDirectory]:
    d = MemoryDirectory()
    await seed(d)
    yield d


def test_our_steps_in_order(directory: MemoryDirectory) -> None:
    app = ClientComm.in_memory(directory=directory)
    assert app.steps.names == OURS
    assert tuple(s.name for s in BUILTIN_STEPS) == OURS
    assert tuple(app.steps) == BUILTIN_STEPS
    assert [s.name for s in app.steps] == list(OURS)
    assert len(app.steps) == len(OURS)
    for step in app.steps:
        assert step.doc, f"{step.name} has no doc line"
        assert app.steps.get(step.name) is step


def test_the_architecture_page_lists_the_steps(directory: MemoryDirectory) -> None:
    app = ClientComm.in_memory(directory=directory)
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Background steps", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z0-9_.]+)` \| (.+?) \|$", section, flags=re.M)
    assert [name for name, _ in rows] == list(app.steps.names)
    assert {name: doc for name, doc in rows} == {s.name: s.doc for s in app.steps}


async def test_run_step_refuses_unknown_names(directory: MemoryDirectory) -> None:
    app = ClientComm.in_memory(directory=directory)
    with pytest.raises(InvalidInputError) as info:
        await app.run_step("mailing.nope")
    assert info.value.field == "name"
    assert info.value.value == "mailing.nope"
    for name in OURS:
        assert name in str(info.value)  # the known names are listed
    with pytest.raises(InvalidInputError):
        app.steps.get("")


@pytest.mark.parametrize("limit", [0, -1, -500, 1.5, "10", None])
async def test_run_step_refuses_bad_limits(directory: MemoryDirectory, limit: object) -> None:
    app = ClientComm.in_memory(directory=directory)
    for name in OURS:
        with pytest.raises(InvalidInputError) as info:
            await app.run_step(name, limit=limit)  # type: ignore[arg-type]
        assert info.value.field == "limit"
    with pytest.raises(InvalidInputError):
        await app.run_once(limit=limit)  # type: ignore[arg-type]


async def test_run_step_runs_one_step_with_its_limit(directory: MemoryDirectory) -> None:
    calls: list[tuple[str, int]] = []
    app = ClientComm.in_memory(
        directory=directory,
        steps=[
            Step("host.one", Spy(calls, "host.one", 3, times=2)),
            Step("host.two", Spy(calls, "two")),
        ],
    )
    assert await app.run_step("host.one", limit=7) == 3
    assert calls == [("host.one", 7)]
    assert await app.run_step("host.one") == 3
    assert calls[-1] == ("host.one", 500)


async def test_host_steps_run_after_ours(directory: MemoryDirectory) -> None:
    calls: list[tuple[str, int]] = []
    seen: list[dict[str, int]] = []

    async def host_step(app: ClientComm, limit: int) -> int:
        calls.append(("host.report", limit))
        seen.append(await recipient_states(app.store))
        return 0

    app = ClientComm.in_memory(
        directory=directory,
        steps=[
            Step("host.report", host_step, "a host's own step"),
            Step("host.idle", Spy(calls, "idle")),
        ],
    )
    assert app.steps.names == (*OURS, "host.report", "host.idle")
    await app.mailings.submit(StaffActor("f1", "admin"), Audience.clients("c1", "c2"), "Hallo")
    assert await app.run_once(limit=50) > 0
    # our mailing step had delivered the copies when the host's step ran
    assert seen == [{"delivered": 2}]
    assert calls == [("host.report", 50), ("idle", 50)]
    await app.drain()
    assert calls[-2:] == [("host.report", 500), ("idle", 500)]


async def test_host_step_results_count_in_a_round(directory: MemoryDirectory) -> None:
    calls: list[tuple[str, int]] = []
    app = ClientComm.in_memory(directory=directory, steps=[Step("host.busy", Spy(calls, "b", 4))])
    assert await app.run_once() == 4
    assert calls == [("b", 500)]


def test_duplicate_step_names_are_refused(directory: MemoryDirectory) -> None:
    calls: list[tuple[str, int]] = []
    with pytest.raises(ConfigurationError):
        ClientComm.in_memory(directory=directory, steps=[Step("mailing.fanout", Spy(calls, "x"))])
    with pytest.raises(ConfigurationError):
        ClientComm.in_memory(
            directory=directory,
            steps=[Step("host.a", Spy(calls, "a")), Step("host.a", Spy(calls, "b"))],
        )
    registry = StepRegistry()
    step = registry.register(Step("host.a", Spy(calls, "a")))
    with pytest.raises(ConfigurationError):
        registry.register(Step("host.a", Spy(calls, "b")))
    assert registry.get("host.a") is step
    assert registry.names == ("host.a",)


@pytest.mark.parametrize(
    "name",
    ["mailing.fanout", "host.step", "a.b", "cap.step_2", "a.b.c", "my_app.nightly_sync"],
)
def test_good_step_names(name: str) -> None:
    assert Step(name, Spy([], name)).name == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "fanout",
        "Mailing.fanout",
        "mailing.Fanout",
        "mailing.",
        ".fanout",
        "mailing..fanout",
        "mailing fanout",
        "mailing-x.fanout",
        "1mailing.fanout",
        "mailing.1fanout",
        "mailing.fan out",
        " mailing.fanout",
        "mailing.fanout ",
        "mailing.fänout",
    ],
)
def test_bad_step_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError):
        Step(name, Spy([], name))


def test_step_name_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        Step("host.step\n", Spy([], "x"))


@settings(max_examples=50, deadline=None)
@given(st.from_regex(NAME, fullmatch=True) | st.text(max_size=12))
def test_step_names_are_capability_dot_step(name: str) -> None:
    if name.endswith("\n"):
        return  # see test_step_name_with_a_trailing_newline_is_refused
    if NAME.fullmatch(name):
        assert Step(name, Spy([], name)).name == name
    else:
        with pytest.raises(ConfigurationError):
            Step(name, Spy([], name))


# -- the worker --------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [0, -1, True, 1.5, "10"])
def test_worker_refuses_bad_batches(directory: MemoryDirectory, batch: object) -> None:
    app = ClientComm.in_memory(directory=directory)
    with pytest.raises(InvalidInputError) as info:
        Worker(app, batch=batch)  # type: ignore[arg-type]
    assert info.value.field == "batch"


@pytest.mark.parametrize("interval", [-1, -0.001, "1"])
def test_worker_refuses_bad_idle_intervals(directory: MemoryDirectory, interval: object) -> None:
    app = ClientComm.in_memory(directory=directory)
    with pytest.raises(InvalidInputError) as info:
        Worker(app, idle_interval=interval)  # type: ignore[arg-type]
    assert info.value.field == "idle_interval"
    assert Worker(app, idle_interval=0).idle_interval == 0


def test_worker_refuses_unknown_steps(directory: MemoryDirectory) -> None:
    app = ClientComm.in_memory(directory=directory)
    with pytest.raises(InvalidInputError) as info:
        Worker(app, steps=["nope"])
    assert info.value.field == "name"
    with pytest.raises(InvalidInputError):
        Worker(app, steps=["mailing.fanout", "mailing.nope"])


async def test_worker_runs_only_the_chosen_steps(directory: MemoryDirectory) -> None:
    calls: list[tuple[str, int]] = []
    app = ClientComm.in_memory(
        directory=directory,
        steps=[Step("host.a", Spy(calls, "a", 1)), Step("host.b", Spy(calls, "b", 2))],
    )
    worker = Worker(app, batch=9, steps=["host.b"])
    assert worker.steps == ("host.b",)
    assert await worker.run_round() == 2
    assert calls == [("b", 9)]

    # the real steps: only the fan-out runs, notifications are not expanded
    await app.mailings.submit(StaffActor("f1", "admin"), Audience.clients("c1", "c3"), "Hallo")
    fanout_only = Worker(app, batch=100, steps=["mailing.fanout"])
    assert await fanout_only.run(stop_when_idle=True) == 2
    assert await recipient_states(app.store) == {"delivered": 2}
    async with app.store.transaction("f1") as tx:
        assert await tx.count(FANOUT_KIND, status="pending") == 1
        assert await tx.count(JOB_KIND) == 0
    assert calls == [("b", 9)]  # host steps not chosen did not run

    # every step (the default) picks up the rest
    everything = Worker(app, batch=100)
    assert everything.steps is None
    assert await everything.run(stop_when_idle=True) > 0
    async with app.store.transaction("f1") as tx:
        assert await tx.count(FANOUT_KIND, status="pending") == 0
        assert await tx.count(JOB_KIND) > 0
    assert ("a", 100) in calls and ("b", 100) in calls


async def test_stop_inside_a_step_starts_no_further_step(directory: MemoryDirectory) -> None:
    calls: list[tuple[str, int]] = []
    workers: list[Worker] = []

    async def stopper(app: ClientComm, limit: int) -> int:
        calls.append(("stopper", limit))
        workers[0].stop()
        return 1

    app = ClientComm.in_memory(
        directory=directory,
        steps=[Step("host.stopper", stopper), Step("host.after", Spy(calls, "after"))],
    )
    worker = Worker(app, batch=5)
    workers.append(worker)
    assert not worker.stopping
    assert await asyncio.wait_for(worker.run(), 10) == 1  # no stop_when_idle: stop() ends it
    assert worker.stopping
    assert calls == [("stopper", 5)]


async def test_stop_ends_an_idle_sleep_at_once(directory: MemoryDirectory) -> None:
    app = ClientComm.in_memory(directory=directory)  # the system clock: sleeps really wait
    worker = Worker(app, idle_interval=3600)
    task = asyncio.ensure_future(worker.run())
    await asyncio.sleep(0.05)
    assert not task.done()
    worker.stop()
    assert await asyncio.wait_for(task, 5) == 0
