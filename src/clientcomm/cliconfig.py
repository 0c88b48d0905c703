"""Settings of the ``clientcomm`` command from a TOML file and the environment.

Every option of every command can be given three ways; the first found wins:

1. on the command line (``--smtp-host mail.example``),
2. in the environment as ``CLIENTCOMM_<OPTION>``: the option's name in upper
   case with ``-`` as ``_`` (``CLIENTCOMM_SMTP_HOST``, ``CLIENTCOMM_URL`` for
   the ``URL`` argument),
3. in the TOML file named by ``--config FILE`` (before the command) or
   ``CLIENTCOMM_CONFIG``: top-level keys apply to every command that has that
   option, a table per command to that command only (``[worker]``,
   ``[mailing.status]``); keys are option names with ``-`` or ``_``.

A key the file names for no command, a value of the wrong type or one the
option refuses is a :class:`~clientcomm.errors.ConfigurationError` naming the
file (or variable) and the key, before anything is opened.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from clientcomm.errors import ConfigurationError

__all__ = ["CONFIG_ENV", "ENV_PREFIX", "Configured", "apply_settings", "config_path", "load_file"]

CONFIG_ENV = "CLIENTCOMM_CONFIG"
ENV_PREFIX = "CLIENTCOMM_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def config_path(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """The file of ``--config FILE`` / ``--config=FILE`` before the command, else
    ``$CLIENTCOMM_CONFIG``, else None."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if not arg.startswith("-"):
            break  # the command: options after it are its own
    return environ.get(CONFIG_ENV) or None


def load_file(path: str) -> dict[str, Any]:
    """The TOML file as a dict.

    Raises:
        ConfigurationError: unreadable or not TOML.
    """
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigurationError(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config file {path}: not valid TOML: {exc}") from None


def _key(name: str) -> str:
    return name.replace("-", "_")


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {
        a.dest: a
        for a in parser._actions
        if a.dest not in (argparse.SUPPRESS, "help")
        and not isinstance(a, argparse._SubParsersAction)
    }


def _flag(action: argparse.Action) -> str:
    return action.option_strings[-1] if action.option_strings else action.dest.upper()


class Configured:
    """What :func:`apply_settings` set that argparse cannot: values of repeatable
    options (``--link``), used only when the command line gives none."""

    def __init__(self) -> None:
        self.appends: dict[tuple[str, str], list[Any]] = {}

    def fill(self, command: str, args: argparse.Namespace) -> None:
        for (cmd, dest), values in self.appends.items():
            if cmd == command and getattr(args, dest, None) is None:
                setattr(args, dest, list(values))


def _convert(action: argparse.Action, raw: object, where: str) -> Any:
    """``raw`` (a TOML value or an environment string) as the option's value."""
    flag = _flag(action)
    if isinstance(action, argparse._StoreTrueAction):
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise ConfigurationError(f"{where}: {flag} must be true or false, not {raw!r}")
    if isinstance(action, argparse._AppendAction):
        items = raw.split() if isinstance(raw, str) else raw
        if not isinstance(items, list):
            raise ConfigurationError(f"{where}: {flag} must be a list of strings")
        return [_one(action, item, where) for item in items]
    if isinstance(action, argparse._StoreAction) and action.nargs in ("+", "*"):
        items = raw.split() if isinstance(raw, str) else raw
        if not isinstance(items, list):
            raise ConfigurationError(f"{where}: {flag} must be a list of strings")
        return [_one(action, item, where) for item in items]
    return _one(action, raw, where)


def _one(action: argparse.Action, raw: object, where: str) -> Any:
    flag = _flag(action)
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ConfigurationError(f"{where}: {flag} must be a string or a number, not {raw!r}")
    text = str(raw)
    convert = action.type if callable(action.type) else str
    try:
        value = convert(text)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise ConfigurationError(f"{where}: {flag}: {exc}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ConfigurationError(f"{where}: {flag}: {text!r} is not one of {choices}")
    return value


def apply_settings(
    commands: Mapping[str, argparse.ArgumentParser],
    settings: Mapping[str, Any],
    environ: Mapping[str, str],
    *,
    source: str = "config file",
) -> Configured:
    """Make the file's and the environment's values the defaults of
    ``commands`` (``{"worker": parser, "mailing status": parser, ...}``); an
    option or argument given a value there is no longer required.

    Raises:
        ConfigurationError: an unknown key, or a value the option refuses.
    """
    configured = Configured()
    per_command: dict[str, dict[str, Any]] = {}
    shared: dict[str, tuple[str, Any]] = {}
    tables = {name.split()[0] for name in commands}
    for key, value in settings.items():
        if isinstance(value, dict) and key in tables:
            for name in commands:
                words = name.split()
                table: Any = settings
                for word in words:
                    table = table.get(word, {}) if isinstance(table, dict) else {}
                if words[0] == key and isinstance(table, dict):
                    per_command[name] = {
                        _key(k): (f"{'.'.join(words)}.{k}", v)
                        for k, v in table.items()
                        if not (isinstance(v, dict) and len(words) == 1)
                    }
            _check_tables(key, value, commands, source)
        else:
            shared[_key(key)] = (key, value)
    known = {dest for parser in commands.values() for dest in _actions(parser)}
    unknown = sorted(k for _, (k, _v) in shared.items() if _key(k) not in known)
    if unknown:
        raise ConfigurationError(f"{source}: unknown setting {unknown[0]!r}")
    for name, parser in commands.items():
        actions = _actions(parser)
        for dest in per_command.get(name, {}):
            if dest not in actions:
                key = per_command[name][dest][0]
                raise ConfigurationError(f"{source}: unknown setting {key!r}")
        for dest, action in actions.items():
            env_name = ENV_PREFIX + dest.upper()
            if environ.get(env_name) is not None:
                value = _convert(action, environ[env_name], env_name)
            elif dest in per_command.get(name, {}):
                key, raw = per_command[name][dest]
                value = _convert(action, raw, f"{source}: {key}")
            elif dest in shared:
                key, raw = shared[dest]
                value = _convert(action, raw, f"{source}: {key}")
            else:
                continue
            action.required = False
            if not action.option_strings and action.nargs is None:
                action.nargs = "?"
            if isinstance(action, argparse._AppendAction):
                configured.appends[(name, dest)] = value
            else:
                action.default = value
    return configured


def _check_tables(
    key: str, value: dict[str, Any], commands: Mapping[str, argparse.ArgumentParser], source: str
) -> None:
    """A ``[keys]`` table may hold only sub-tables of real sub-commands."""
    if key in commands:
        return
    subs = {name.split()[1] for name in commands if name.split()[0] == key and " " in name}
    for sub, table in value.items():
        if sub not in subs or not isinstance(table, dict):
            raise ConfigurationError(f"{source}: unknown setting '{key}.{sub}'")
