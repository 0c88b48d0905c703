"""clientcomm for hosts that are not async (Django, Flask, scripts).

:class:`SyncClientComm` runs one :class:`~clientcomm.app.ClientComm` on an
event loop of its own, in a background thread started through anyio's
blocking portal (:func:`anyio.from_thread.start_blocking_portal`), and offers
the same operations as plain blocking calls::

    portal = SyncClientComm(lambda: ClientComm.in_memory())
    receipt = portal.mailings.submit(actor, Audience.everyone(), "Hallo")
    portal.drain()
    portal.mailings.status(actor, receipt.id)
    portal.close()

The methods are not written out one by one: every attribute is looked up on the
wrapped app when it is used, so each service clientcomm has now or gains later
(``messages``, ``mailings``, ``audit``, ``compliance``, ...) is covered:

* a coroutine method becomes a blocking function with the same arguments
  and result, raising the same exceptions;
* an async generator method (e.g. ``audit.export_jsonl``) becomes a function
  returning the list of what it yields (bounded by the arguments you pass);
* an attribute whose value has coroutine methods (a service) is wrapped the
  same way, recursively;
* anything else (``app.steps.names``, ``app.worker_id``) is returned as it is.

Safe from several threads: every call is handed to the one event loop
(``BlockingPortal.call`` is thread-safe), where the app's connection pool and
its locks live; calls from many request threads run concurrently on that loop.
A call from the portal's own thread (inside an async step) is refused with
:class:`RuntimeError` rather than deadlocking.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

from clientcomm.app import ClientComm

__all__ = ["SyncClientComm", "SyncProxy"]

AppFactory = Callable[[], "ClientComm | Awaitable[ClientComm]"]


def _is_service(value: object) -> bool:
    """Whether ``value`` is an object with coroutine methods (a service to wrap)."""
    if inspect.isclass(value) or inspect.isroutine(value) or isinstance(value, type):
        return False
    cls = type(value)
    if cls.__module__ == "builtins":
        return False
    return any(
        inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member)
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_")
    )


async def _collect(gen: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in gen]


class SyncProxy:
    """Blocking access to one async object through a :class:`BlockingPortal`
    (see the module's documentation for what is wrapped and how)."""

    __slots__ = ("_portal", "_target")

    def __init__(self, portal: BlockingPortal, target: object) -> None:
        self._portal = portal
        self._target = target

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self._target, name)
        portal = self._portal
        if inspect.iscoroutinefunction(value):

            @functools.wraps(value)
            def call(*args: Any, **kwargs: Any) -> Any:
                return portal.call(functools.partial(value, *args, **kwargs))

            return call
        if inspect.isasyncgenfunction(value):

            @functools.wraps(value)
            def collect(*args: Any, **kwargs: Any) -> list[Any]:
                return portal.call(_collect, value(*args, **kwargs))

            return collect
        if _is_service(value):
            return SyncProxy(portal, value)
        return value

    def __dir__(self) -> list[str]:
        return [n for n in dir(self._target) if not n.startswith("_")]

    def __repr__(self) -> str:
        return f"SyncProxy({self._target!r})"


class SyncClientComm(SyncProxy):
    """A :class:`~clientcomm.app.ClientComm` behind blocking calls.

    Args:
        factory: builds the app, called once on the portal's event loop (so the
            app's database connections belong to that loop): a plain function
            returning the app, or an async one (e.g. one that awaits
            :func:`~clientcomm.storage.url.open_store`).

    Use it as a context manager, or call :meth:`close` at shutdown (Django:
    ``atexit`` or the app's ``ready()``; Flask: ``atexit``): it closes the app's
    backends and stops the thread.

    Whatever ``factory`` raises is raised here (the thread is stopped again);
    a factory returning something else than a ClientComm is a :class:`TypeError`.
    """

    __slots__ = ("_closed", "_cm", "_lock")

    def __init__(self, factory: AppFactory) -> None:
        cm: AbstractContextManager[BlockingPortal] = start_blocking_portal()
        portal = cm.__enter__()
        try:
            app = portal.call(self._build, factory)
        except BaseException as exc:
            cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        super().__init__(portal, app)
        self._cm = cm
        self._closed = False
        self._lock = threading.Lock()

    @staticmethod
    async def _build(factory: AppFactory) -> ClientComm:
        made = factory()
        app = await made if inspect.isawaitable(made) else made
        if not isinstance(app, ClientComm):
            raise TypeError(f"factory must return a ClientComm, not {type(app).__name__}")
        return app

    @classmethod
    def in_memory(cls, **kwargs: Any) -> SyncClientComm:
        """:meth:`ClientComm.in_memory` behind blocking calls (tests)."""
        return cls(lambda: ClientComm.in_memory(**kwargs))

    @property
    def app(self) -> ClientComm:
        """The wrapped async app (use it only from code running on :attr:`portal`)."""
        target = self._target
        assert isinstance(target, ClientComm)
        return target

    @property
    def portal(self) -> BlockingPortal:
        """The portal, to run an async function of your own on the app's loop:
        ``portal.call(my_coroutine_function, app)``."""
        return self._portal

    def close(self) -> None:
        """Close the app's backends and stop the event-loop thread (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._portal.call(self.app.aclose)
        finally:
            self._cm.__exit__(None, None, None)

    def __enter__(self) -> SyncClientComm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
