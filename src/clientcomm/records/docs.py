"""``docs/records.md``, generated from the registry (``python -m clientcomm.records``).

A test compares the file with :func:`render` so the page never drifts from the code.
"""

from __future__ import annotations

from typing import Any, cast

import attrs

from clientcomm.records.registry import COLUMNS, REGISTRY, Kind, Registry

__all__ = ["load_all", "render"]

_HEADER = """# Record kinds

Every kind clientcomm stores, generated from the record registry
(`clientcomm.records.REGISTRY`) by `python -m clientcomm.records > docs/records.md`;
a test checks that this page is current. The Store keeps them all in one generic,
firm-scoped table (see [storage.md](storage.md)); each kind declares its attrs
class, what the indexed columns mean, its status values, where it holds sealed
values (what key rotation, the client data export and erasure walk), and its
layout version. Attributes not mapped to a column are encoded into `data` by the
one cattrs converter.

| kind | capability | class | what it is | layout |
|---|---|---|---|---|
"""


def load_all() -> Registry:
    """Import every bundled capability, so each has declared its kinds."""
    import clientcomm.app  # noqa: F401  (imports every capability)

    return REGISTRY


def _kind_section(kind: Kind[object]) -> str:
    lines = [f"## `{kind.name}`", "", kind.doc[0].upper() + kind.doc[1:] + ".", ""]
    lines.append(f"Class `{kind.cls.__module__}.{kind.cls.__qualname__}`.")
    lines.append("")
    lines.append("| column | attribute | meaning |")
    lines.append("|---|---|---|")
    for column in COLUMNS:
        if column in kind.columns:
            meaning = kind.meanings.get(column, "")
            lines.append(f"| `{column}` | `{kind.columns[column]}` | {meaning} |")
    # a kind with its own body layout names the attributes kept there (``in_body``)
    mapped = set(kind.columns.values()) | {"meta"} | set(getattr(kind, "in_body", ()))
    data = [f.name for f in attrs.fields(cast(Any, kind.cls)) if f.name not in mapped]
    if data:
        lines.append(f"| `data` | {', '.join(f'`{d}`' for d in data)} | |")
    lines.append("")
    if kind.status is not None:
        values = ", ".join(f"`{s.value}`" for s in kind.status)
        lines += [f"Status values: {values}.", ""]
    if kind.sealed:
        places = ", ".join(f"`{f.path}` ({f.what})" for f in kind.sealed)
        lines += [f"Sealed values: {places}.", ""]
    if kind.integrity:
        lines += ["Integrity against edits in the database:", ""]
        lines += [f"- `{a}`: {how}" for a, how in kind.integrity.items()]
        lines.append("")
    if kind.client is not None:
        where = f" (indexed: `{kind.client_column}`)" if kind.client_column else ""
        lines += [f"Belongs to a client{where}: reached by export and erasure.", ""]
    if kind.version > 1:
        lines += [
            f"Layout version {kind.version}; upcasters from "
            + ", ".join(f"v{v}" for v in sorted(kind.upcasters))
            + ".",
            "",
        ]
    return "\n".join(lines)


def render(registry: Registry | None = None) -> str:
    """The whole page."""
    registry = registry or load_all()
    rows = [
        f"| [`{k.name}`](#{k.name.replace('.', '')}) | {k.capability} | `{k.cls.__name__}` "
        f"| {k.doc} | v{k.version} |"
        for k in registry
    ]
    sections = [_kind_section(k) for k in registry]
    return _HEADER + "\n".join(rows) + "\n\n" + "\n".join(sections)
