"""The public API: ``clientcomm.__all__`` is exact and sorted, a star-import
works without the PostgreSQL extra, the deprecated module names still work
(with a DeprecationWarning), and every subpackage's ``__all__`` resolves."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import clientcomm

ROOT = Path(__file__).resolve().parent.parent
SUBPACKAGES = [
    "mail",
    "notifications",
    "mailing",
    "messages",
    "attachments",
    "records",
    "audit",
    "compliance",
    "evidence",
    "sharing",
    "letters",
    "postal",
]

# (deprecated module, the module it now is, or whose names it re-exports)
ALIASES = [
    ("clientcomm.access", ["clientcomm.rules.access"]),
    ("clientcomm.audience", ["clientcomm.rules.audience"]),
    ("clientcomm.readstate", ["clientcomm.rules.readstate"]),
    ("clientcomm.notify", ["clientcomm.notifications", "clientcomm.mail"]),
    ("clientcomm.notify.outbox", ["clientcomm.notifications.outbox"]),
    ("clientcomm.notify.smtp", ["clientcomm.mail.smtp"]),
]


def isort_key(name: str) -> tuple[int, list[Any]]:
    """The order ruff's RUF022 keeps ``__all__`` in (isort style): CONSTANTS,
    then Classes, then everything else, each in natural order."""
    if len(name) > 1 and name.upper() == name and name.lower() != name:
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    return group, [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def run_python(code: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """``python -c code argv...`` in a fresh interpreter (no module caching)."""
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )


def test_all_is_sorted() -> None:
    names = list(clientcomm.__all__)
    assert names == sorted(names, key=isort_key)
    assert len(set(names)) == len(names)


def test_all_is_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(clientcomm).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    assert set(clientcomm.__all__) == public | {"__version__"}
    for name in clientcomm.__all__:
        assert getattr(clientcomm, name) is not None
    assert "PostgresStore" not in clientcomm.__all__  # needs the extra; imported lazily


def test_no_submodule_is_in_all() -> None:
    for name in clientcomm.__all__:
        assert not isinstance(getattr(clientcomm, name), types.ModuleType), name


_NO_PSYCOPG = """
import json, sys
sys.modules["psycopg"] = None  # importing psycopg now fails, as without the extra
sys.modules["psycopg_pool"] = None
ns = {}
exec("from clientcomm import *", ns)
import clientcomm
out = {"names": sorted(n for n in ns if n != "__builtins__"), "all": clientcomm.__all__}
try:
    clientcomm.PostgresStore
except ImportError as exc:
    out["error"] = str(exc)
    out["name"] = exc.name
out["unknown"] = None
try:
    clientcomm.NoSuchThing
except AttributeError as exc:
    out["unknown"] = str(exc)
print(json.dumps(out))
"""


def test_star_import_works_without_the_postgres_extra() -> None:
    proc = run_python(_NO_PSYCOPG)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["names"] == sorted(out["all"])
    assert "clientcomm[postgres]" in out["error"]
    assert out["name"] == "clientcomm.storage.postgres"
    assert "NoSuchThing" in out["unknown"]


def test_importing_clientcomm_does_not_import_psycopg() -> None:
    proc = run_python("import sys, clientcomm; print('psycopg' in sys.modules)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_postgres_store_resolves_with_the_extra() -> None:
    pytest.importorskip("psycopg")
    from clientcomm.storage.postgres import PostgresStore

    assert clientcomm.PostgresStore is PostgresStore


_ALIAS = """
import importlib, json, sys, warnings
old, new = sys.argv[1], sys.argv[2:]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    module = importlib.import_module(old)
deprecations = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
same, missing = [], []
for target in new:
    target_module = importlib.import_module(target)
    if module is target_module:
        same.append(target)
    for name in getattr(target_module, "__all__", []):
        if getattr(module, name, missing) is not getattr(target_module, name):
            missing.append(f"{target}.{name}")
print(json.dumps({"deprecations": deprecations, "same": same, "missing": missing}))
"""


@pytest.mark.parametrize(("old", "new"), ALIASES, ids=[a for a, _ in ALIASES])
def test_deprecated_alias(old: str, new: list[str]) -> None:
    proc = run_python(_ALIAS, old, *new)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["deprecations"], f"importing {old} gave no DeprecationWarning"
    assert any("deprecated" in m for m in out["deprecations"])
    assert out["missing"] == []
    if len(new) == 1 and old != "clientcomm.notify":
        assert out["same"] == new  # the alias is the new module itself


def test_deprecation_is_shown_to_the_importing_script() -> None:
    # attributed to the importer (not to importlib), so the default filters show it
    proc = run_python("import clientcomm.access")
    assert proc.returncode == 0
    assert "<string>:1: DeprecationWarning: clientcomm.access is deprecated" in proc.stderr


def test_deprecated_aliases_are_not_imported_by_clientcomm() -> None:
    proc = run_python(
        "import sys, warnings; warnings.simplefilter('error', DeprecationWarning); "
        "import clientcomm, clientcomm.app, clientcomm.worker, clientcomm.records.docs; "
        "clientcomm.records.docs.load_all(); "
        "print(sorted(m for m in sys.modules if m in "
        "{'clientcomm.access', 'clientcomm.audience', 'clientcomm.readstate', "
        "'clientcomm.notify'}))"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_subpackage_all(package: str) -> None:
    module = importlib.import_module(f"clientcomm.{package}")
    names = list(module.__all__)
    assert names, f"clientcomm.{package} exports nothing"
    assert names == sorted(names, key=isort_key)
    assert len(set(names)) == len(names)
    for name in names:
        assert hasattr(module, name), f"clientcomm.{package}.{name} does not resolve"
