"""The ``clientcomm`` command.

clientcomm migrate URL            apply pending schema migrations
clientcomm keys new               print a fresh firm master key
clientcomm clients URL --firm ID  list the clients of the SQL-backed Directory
clientcomm worker URL ...         run the background steps (mailing fan-out, e-mail
                                  notices, ...) until SIGTERM/SIGINT, or with --once
                                  until nothing is due

Every option is described in docs/cli.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import re
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from clientcomm.directory.sql import directory_for
from clientcomm.errors import ClientCommError, ConfigurationError
from clientcomm.storage.url import open_store

if TYPE_CHECKING:
    from clientcomm.notifications import LinkTemplates
    from clientcomm.notifications.templates import TemplateSet

log = logging.getLogger("clientcomm.cli")


async def _migrate(url: str) -> int:
    store = await open_store(url, migrate=False)
    try:
        version = await store.migrate()
    finally:
        await store.aclose()
    print(f"schema version {version}")
    return 0


async def _clients(url: str, firm_id: str) -> int:
    store = await open_store(url)
    try:
        directory = directory_for(store)
        for client in await directory.list_clients(firm_id):
            state = "active" if client.active else "inactive"
            print(f"{client.id}\t{client.name}\t{state}\t{','.join(sorted(client.group_ids))}")
    finally:
        await store.aclose()
    return 0


async def _worker(args: argparse.Namespace) -> int:
    """Run the background worker over the embedded wiring: SQL Directory in the
    same database, LocalKeyProvider (master key from CLIENTCOMM_MASTER_KEY or
    CLIENTCOMM_MASTER_KEY_FILE), FileBlobStore and SMTP from the options.

    SIGTERM and SIGINT stop it after the current step (exit 0); a second one
    stops it at once (exit 1): the step's transaction rolls back and the work it
    had claimed is finished by the next worker once its lease expires.
    """
    from clientcomm.app import ClientComm
    from clientcomm.blobs.filesystem import FileBlobStore
    from clientcomm.crypto import LocalKeyProvider, load_master_key
    from clientcomm.mail import SMTPConfig, SMTPTransport, TLSMode
    from clientcomm.notifications import MailSettings, NotificationComposer
    from clientcomm.worker import Worker

    # Everything that can be wrong with the options fails here, before the
    # database is opened.
    links = _link_templates(args.link)
    templates = None if args.templates is None else _template_set(args.templates)
    smtp = SMTPConfig(
        host=args.smtp_host,
        port=args.smtp_port,
        tls=TLSMode(args.smtp_tls),
        username=args.smtp_user,
        password=os.environ.get("CLIENTCOMM_SMTP_PASSWORD"),
    )
    mail = MailSettings(sender=args.sender, message_id_domain=args.message_id_domain)
    NotificationComposer(mail, templates)  # checks the sender and the domain
    master_key = load_master_key()

    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    worker: Worker | None = None
    received: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum)
        if len(received) == 1:
            log.info("%s: stopping after the current step", signum.name)
            if worker is not None:
                worker.stop()
        elif len(received) == 2 and main_task is not None:
            log.warning("%s again: stopping at once", signum.name)
            main_task.cancel()

    installed: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows, threads
            continue
        installed.append(signum)
    try:
        store = await open_store(args.url)
        try:
            app = ClientComm(
                store=store,
                directory=directory_for(store),
                keys=LocalKeyProvider(store, master_key),
                blobs=FileBlobStore(args.blobs),
                transport=SMTPTransport(smtp),
                links=links,
                mail=mail,
                templates=templates,
            )
        except BaseException:
            await store.aclose()
            raise
        try:
            worker = Worker(
                app, batch=args.batch, idle_interval=args.idle_interval, steps=args.steps
            )
            if received:  # a signal came while the store was opening
                worker.stop()
            log.info(
                "worker %s: steps %s", app.worker_id, ", ".join(worker.steps or app.steps.names)
            )
            done = await worker.run(stop_when_idle=args.once)
        finally:
            await app.aclose()
    except asyncio.CancelledError:
        if len(received) < 2 or main_task is None:
            raise
        main_task.uncancel()
        print(
            "clientcomm: stopped at once; work it had claimed resumes when the lease expires",
            file=sys.stderr,
        )
        return 1
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    log.info("worker stopped after %d items", done)
    print(f"processed {done}")
    return 0


def _template_set(directory: str) -> TemplateSet:
    """The ``--templates`` directory as a :class:`TemplateSet` (checked now).

    Raises:
        ConfigurationError: no such directory, or a template that is broken.
    """
    from clientcomm.notifications.templates import TemplateSet

    if not os.path.isdir(directory):
        raise ConfigurationError(f"--templates: {directory} is not a directory")
    return TemplateSet(directory=directory)


def _link_templates(values: Sequence[tuple[str | None, str]]) -> LinkTemplates:
    """The ``--link`` options as :class:`LinkTemplates`.

    Raises:
        ConfigurationError: two defaults, two templates for one kind, no default
            while some kind has no template, or a template LinkTemplates refuses.
    """
    from clientcomm.notifications import LinkTemplates
    from clientcomm.notifications.models import NotificationKind

    default: str | None = None
    per_kind: dict[str, str] = {}
    for kind, template in values:
        if kind is None:
            if default is not None:
                raise ConfigurationError("--link: give one default link template, not two")
            default = template
        elif kind in per_kind:
            raise ConfigurationError(f"--link: two link templates for {kind}")
        else:
            per_kind[kind] = template
    missing = [k.value for k in NotificationKind if k.value not in per_kind]
    if default is None and missing:
        raise ConfigurationError(
            f"--link: a default link template is needed (no template for {', '.join(missing)})"
        )
    return LinkTemplates(per_kind, default=default)


def _keys_new() -> int:
    from clientcomm.crypto import generate_master_key

    print(generate_master_key())
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``clientcomm worker: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be between 1 and 65535, not {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more seconds, not {text}")
    return value


def _host(text: str) -> str:
    host = text.strip()
    if not host:
        raise argparse.ArgumentTypeError("must name the SMTP server (a host name or IP address)")
    return host


_KIND_LINK = re.compile(r"(?P<kind>[A-Za-z_]+)=(?P<template>.+)")


def _link(text: str) -> tuple[str | None, str]:
    """``TEMPLATE`` (the default) or ``KIND=TEMPLATE``."""
    from clientcomm.notifications.models import NotificationKind

    match = _KIND_LINK.fullmatch(text)
    if match is None:
        return None, text
    kinds = [k.value for k in NotificationKind]
    if match["kind"] not in kinds:
        raise argparse.ArgumentTypeError(
            f"unknown notification kind {match['kind']!r} (known: {', '.join(kinds)})"
        )
    return match["kind"], match["template"]


def _steps(text: str) -> tuple[str, ...]:
    from clientcomm.app import BUILTIN_STEPS

    known = [step.name for step in BUILTIN_STEPS]
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise argparse.ArgumentTypeError(f"name at least one step (known: {', '.join(known)})")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown step {', '.join(map(repr, unknown))} (known: {', '.join(known)})"
        )
    return names


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="clientcomm", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("migrate", help="apply pending schema migrations")
    p.add_argument("url", help="memory://, sqlite:///path or postgresql://...")
    keys = sub.add_parser("keys", help="key management")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser("new", help="print a fresh master key (base64)")
    p = sub.add_parser("clients", help="list clients of the SQL-backed Directory")
    p.add_argument("url")
    p.add_argument("--firm", required=True)
    p = sub.add_parser(
        "worker",
        help="run mailing fan-out and notification delivery",
        description="Run clientcomm's background steps until SIGTERM or SIGINT "
        "(or, with --once, until nothing is due). See docs/cli.md.",
    )
    p.add_argument("url", help="sqlite:///path or postgresql://...")
    p.add_argument("--once", action="store_true", help="stop when nothing is due")
    p.add_argument("--blobs", required=True, help="directory of the FileBlobStore")
    p.add_argument(
        "--link",
        required=True,
        action="append",
        type=_link,
        metavar="[KIND=]TEMPLATE",
        help="portal link template, e.g. https://portal.example/{firm_id}/clients/{client_id}; "
        "KIND=TEMPLATE for one notification kind (repeatable)",
    )
    p.add_argument(
        "--templates", metavar="DIR", help="directory of notification templates (de/...)"
    )
    p.add_argument("--sender", required=True, help="From address of notifications")
    p.add_argument("--message-id-domain", required=True)
    p.add_argument("--smtp-host", required=True, type=_host)
    p.add_argument("--smtp-port", type=_port, default=None)
    p.add_argument(
        "--smtp-tls",
        default="starttls",
        choices=("starttls", "implicit", "none"),
        help="default: starttls",
    )
    p.add_argument("--smtp-user", default=None, help="password from CLIENTCOMM_SMTP_PASSWORD")
    p.add_argument(
        "--batch",
        type=_positive_int,
        default=500,
        metavar="N",
        help="items per step and round (default: 500)",
    )
    p.add_argument(
        "--idle-interval",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="sleep when nothing is due (default: 1)",
    )
    p.add_argument(
        "--steps",
        type=_steps,
        default=None,
        metavar="NAME,...",
        help="run only these steps (default: all)",
    )
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default="WARNING",
        metavar="LEVEL",
        help=f"{', '.join(LOG_LEVELS)} (default: WARNING); logs go to stderr",
    )
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for usage, configuration or
    clientcomm errors, 1 for other failures and a worker stopped at once)."""
    args = build_parser().parse_args(argv)
    if args.command == "worker":
        logging.basicConfig(
            level=args.log_level,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    try:
        if args.command == "migrate":
            return asyncio.run(_migrate(args.url))
        if args.command == "clients":
            return asyncio.run(_clients(args.url, args.firm))
        if args.command == "worker":
            return asyncio.run(_worker(args))
        if args.command == "keys" and args.keys_command == "new":
            return _keys_new()
    except ClientCommError as exc:
        print(f"clientcomm: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a blob directory or database file out of reach
        print(f"clientcomm: {_one_line(exc)}", file=sys.stderr)
        return 1
    return 2  # pragma: no cover - argparse enforces the commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
