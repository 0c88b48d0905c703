"""The registry of record kinds: every stored kind is declared once, here typed.

The Store keeps one generic, firm-scoped table of :class:`~clientcomm.storage.base.Record`
rows (its conformance suite is the contract an integrator's adapter passes).
Above it, every capability declares each kind it stores as a :class:`Kind`:

* the attrs class its services read and write (never hand-built dicts);
* which attributes go to the indexed columns (``parent``, ``key``, ``ref``,
  ``status``, ``due_at``, ``created_at``, ``body``) and what they mean;
* its status values;
* where its sealed values are (:class:`SealedField`) and whose key seals them, so
  key rotation, the client data export and erasure reach a new kind by its
  declaration alone;
* a layout version and the upcasters that lift older rows to it.

One cattrs converter encodes the remaining attributes into ``data``. Encoding
and decoding are generated once per kind, so the hot paths (a mailing's
fan-out writes one record per recipient) pay a dict build, not reflection.

``docs/records.md`` lists every kind; it is generated from this registry
(``python -m clientcomm.records``) and a test checks it is current.
"""

from __future__ import annotations

import base64
import enum
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar, cast

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from clientcomm.errors import ConfigurationError, IntegrityError, InvalidInputError
from clientcomm.storage.base import EPOCH, Record, build_record

__all__ = [
    "COLUMNS",
    "INTEGRITY",
    "REGISTRY",
    "Kind",
    "Meta",
    "Registry",
    "SealedField",
    "converter",
    "unbound",
]

T = TypeVar("T")

COLUMNS = ("id", "parent", "key", "ref", "status", "due_at", "created_at", "body")
"""The Record columns an attribute can be mapped to (everything else goes to ``data``)."""

_VERSION_KEY = "_v"

INTEGRITY = {
    "sealed": "inside a sealed value (encrypted and authenticated)",
    "aad": "in the associated data of the record's sealed value (moving it fails to open)",
    "bound": "bound into the record's sealed value; the clear copy is checked against it",
    "mac": "covered by a MAC under a key held only in a sealed value",
    "key": "a wrapped key: the key provider authenticates it, a key commitment binds it",
    "chain": "hash-chained per firm: an edit is found by the audit trail's verify, not on read",
    "unbound": "not authenticated: decides neither who receives nor what is shown (why: see text)",
}
"""How a stored attribute is protected against edits in the database (the
first word of a :attr:`Kind.integrity` entry); see ``docs/security.md``."""


@attrs.frozen
class Meta:
    """Where a stored value sits: its firm and the store's bookkeeping.

    Every record class has a ``meta`` attribute of this type (keyword-only,
    excluded from equality). A value built by a service has the default
    ``Meta()``; the typed transaction fills in the firm on insert. Values read
    from the store carry ``seq``/``version`` so that an update is checked
    against the version that was read (optimistic concurrency), and claimed
    values carry their lease.
    """

    firm_id: str = ""
    seq: int = 0
    version: int = 0
    lease_owner: str | None = None
    lease_until: datetime | None = None


NO_META = Meta()
"""The ``meta`` of a value not yet stored (shared: ``Meta`` is immutable)."""


def meta_field() -> Any:
    """The ``meta`` attribute of a record class: ``meta: Meta = meta_field()``."""
    return attrs.field(default=NO_META, eq=False, repr=False, kw_only=True)


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _unb64(value: Any, _: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)  # a column value (the record's body)
    if not isinstance(value, str):
        raise TypeError("bytes must be stored as base64 text")
    return base64.b64decode(value.encode("ascii"), validate=True)


def _aware(value: Any, _: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _str_tuple(value: Any, _: Any) -> tuple[str, ...]:
    """``tuple[str, ...]`` from a JSON list in one pass (pages and fan-out
    batches hold hundreds of ids; cattrs' generic path calls a hook per item)."""
    if not isinstance(value, list | tuple):
        raise TypeError("expected a list of strings")
    out = tuple(value)
    if not set(map(type, out)) <= {str}:  # exact str, checked in one C-level pass
        raise TypeError("expected a list of strings")
    return out


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter()
    conv.register_structure_hook_func(lambda t: t == tuple[str, ...], _str_tuple)
    conv.register_unstructure_hook(bytes, _b64)
    conv.register_structure_hook(bytes, _unb64)
    conv.register_unstructure_hook(datetime, datetime.isoformat)
    conv.register_structure_hook(datetime, _aware)
    return conv


converter = _make_converter()
"""The one cattrs converter that encodes record attributes into ``data``: bytes
as base64 text, datetimes as ISO 8601, enums by value, nested attrs classes as
dicts, tuples as lists."""


def _status_value(status: Any) -> Any:
    return status.value if isinstance(status, enum.Enum) else status


def _flat_text(data: dict[str, Any]) -> bool:
    """Only ``data`` of text values is shared between consecutive records:
    ``==`` would take ``1``, ``1.0`` and ``True`` for the same value."""
    return all(isinstance(v, str) or v is None for v in data.values())


def _is_text_type(tp: Any) -> bool:
    """Whether every value of the annotation ``tp`` encodes to text or None
    (``str``, a str-valued enum, ``None``, or a union of them)."""
    if tp is str or tp is type(None):
        return True
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return all(isinstance(m.value, str) for m in tp)
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and args:
        return all(_is_text_type(a) for a in args)
    return False


def _created_value(created: datetime | None) -> datetime:
    return EPOCH if created is None else created


def unbound(reason: str, *names: str) -> dict[str, str]:
    """:attr:`Kind.integrity` entries ``"unbound: <reason>"`` for ``names``."""
    return {n: f"unbound: {reason}" for n in names}


@attrs.frozen
class SealedField:
    """A place in a kind's records that holds sealed values.

    Attributes:
        path: ``"body"`` (the record's body), or the name of an attribute of
            the record class holding a sealed value (bytes), or
            ``"attr[].field"``: the ``field`` of every element of the tuple
            ``attr`` (e.g. ``"attachments[].stream_key"``).
        what: ``"envelope"`` (a sealed value: data key wrapped for the owner)
            or ``"stream_key"`` (a wrapped data key of a chunked stream, e.g. an
            attachment's bytes in the BlobStore).
        blob: for stream keys, the attribute of the element naming the blob
            (the export and erasure find the bytes through it).
    """

    path: str
    what: Literal["envelope", "stream_key"] = "envelope"
    blob: str | None = None

    def values(self, value: Any) -> list[bytes]:
        """The sealed values at this place of ``value`` (a decoded record)."""
        attr, _, sub = self.path.partition("[].")
        found = getattr(value, attr)
        if not sub:
            return [] if found is None else [found]
        return [getattr(item, sub) for item in found]

    def replace(self, value: T, new: Sequence[bytes]) -> T:
        """``value`` with this place's sealed values replaced by ``new``."""
        attr, _, sub = self.path.partition("[].")
        if not sub:
            return cast(T, attrs.evolve(cast(Any, value), **{attr: new[0]}))
        items = getattr(value, attr)
        changed = tuple(attrs.evolve(item, **{sub: v}) for item, v in zip(items, new, strict=True))
        return cast(T, attrs.evolve(cast(Any, value), **{attr: changed}))


@attrs.frozen(eq=False)
class Kind(Generic[T]):
    """The declaration of one stored record kind (see module docs).

    Attributes:
        name: the Record ``kind``, e.g. ``"mailing.page"``.
        cls: the attrs class (with a ``meta: Meta`` attribute).
        doc: one line on what a record of this kind is.
        columns: Record column -> attribute name; ``id`` is required; the
            attributes not named here (and not ``meta``) are encoded into
            ``data`` by the converter.
        meanings: Record column -> what it means for this kind (for the docs).
        status: the enum of its status values, if it has a status.
        sealed: where it holds sealed values.
        owner: the key owner of its sealed values (usually the client id) for
            a decoded value; required when ``sealed`` is not empty.
        client: the client whose data a record is (for export and erasure),
            ``None`` for firm-level records.
        client_column: the indexed column that holds the client id, so that a
            client's records are found without a scan (``"parent"`` etc.).
        version: the current layout version of ``data``.
        upcasters: ``{n: f}`` lifts a ``data`` dict of version ``n`` to ``n + 1``.
        capability: the capability package that owns the kind.
        body_codec: ``(encode, decode)`` between the attribute mapped to
            ``body`` and bytes, for a body that is not a sealed value.
        integrity: attribute -> ``"<how>: <what it means here>"``, ``how``
            one of :data:`INTEGRITY`: how each stored value is protected
            against edits in the database (the metadata tamper suite edits
            and swaps every attribute declared protected, and requires every
            attribute to be declared); ``"*"`` stands for every attribute
            not named.
    """

    name: str
    cls: type[T]
    doc: str
    columns: Mapping[str, str]
    meanings: Mapping[str, str] = attrs.field(factory=dict)
    status: type[enum.Enum] | None = None
    sealed: tuple[SealedField, ...] = ()
    owner: Callable[[T], str | None] | None = None
    client: Callable[[T], str | None] | None = None
    client_column: str | None = None
    version: int = 1
    upcasters: Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]] = attrs.field(factory=dict)
    capability: str = ""
    body_codec: tuple[Callable[[Any], bytes], Callable[[bytes], Any]] | None = None
    integrity: Mapping[str, str] = attrs.field(factory=dict)
    _encode_data: Callable[[T], dict[str, Any]] = attrs.field(init=False, repr=False)
    _decode_data: Callable[[Mapping[str, Any], Any], T] = attrs.field(init=False, repr=False)
    _column_attrs: tuple[tuple[str, str], ...] = attrs.field(init=False, repr=False)
    _encoder: Callable[[T, str | None], Record] = attrs.field(init=False, repr=False)
    _variant_builders: dict[
        tuple[str, ...], Callable[[Record, Iterable[Sequence[Any]]], list[Record]]
    ] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        fields = {f.name: f for f in attrs.fields(cast(Any, self.cls))}
        if "meta" not in fields:
            raise ConfigurationError(f"record class {self.cls.__name__} has no meta attribute")
        if "id" not in self.columns:
            raise ConfigurationError(f"kind {self.name}: the id column must be mapped")
        for column, attr in self.columns.items():
            if column not in COLUMNS:
                raise ConfigurationError(f"kind {self.name}: unknown column {column!r}")
            if attr not in fields:
                raise ConfigurationError(f"kind {self.name}: no attribute {attr!r}")
        if self.sealed and self.owner is None:
            raise ConfigurationError(f"kind {self.name}: sealed fields need an owner")
        if self.client_column is not None and self.client_column not in self.columns:
            raise ConfigurationError(f"kind {self.name}: client column is not mapped")
        for attr, how in self.integrity.items():
            if (attr not in fields and attr != "*") or how.partition(":")[0] not in INTEGRITY:
                raise ConfigurationError(f"kind {self.name}: bad integrity entry {attr!r}")
        for v in range(1, self.version):
            if v not in self.upcasters:
                raise ConfigurationError(f"kind {self.name}: no upcaster from version {v}")
        omitted: dict[str, Any] = {a: override(omit=True) for a in (*self.columns.values(), "meta")}
        omitted["_cattrs_omit_if_default"] = True
        object.__setattr__(
            self,
            "_encode_data",
            make_dict_unstructure_fn(self.cls, converter, **omitted),
        )
        object.__setattr__(
            self,
            "_decode_data",
            make_dict_structure_fn(
                self.cls, converter, meta=override(struct_hook=lambda meta, _: meta)
            ),
        )
        object.__setattr__(self, "_column_attrs", tuple(self.columns.items()))
        object.__setattr__(self, "_encoder", self._make_encoder())
        object.__setattr__(self, "_variant_builders", {})

    def _make_encoder(self) -> Callable[[T, str | None], Record]:
        """Generate the encoder (the fan-out's hot path): one function call per
        value, no reflection. Consecutive values with equal ``data`` share one
        dict object when it holds only text, so a store serialises it once per
        batch (``data`` is never mutated)."""
        hints = typing.get_type_hints(self.cls)
        # every Record field, positionally, in Record's order (build_record)
        cols: dict[str, str] = {"kind": repr(self.name), "firm_id": "meta.firm_id or firm_id or ''"}
        for column, attr in self.columns.items():
            if column == "status":
                hint = hints.get(attr)
                if isinstance(hint, type) and issubclass(hint, enum.Enum):
                    cols["status"] = f"value.{attr}.value"
                else:
                    cols["status"] = f"_status(value.{attr})"
            elif column == "created_at":
                cols["created_at"] = f"_created(value.{attr})"
            elif column == "body" and self.body_codec is not None:
                cols["body"] = f"_body(value.{attr})"
            else:
                cols[column] = f"value.{attr}"
        cols["data"] = "data"
        cols.setdefault("created_at", "_EPOCH")
        fresh = {"seq": "0", "version": "0", "lease_owner": "None", "lease_until": "None"}
        stored = {k: f"meta.{k}" for k in fresh}
        order = [f.name for f in attrs.fields(Record)]
        fresh_args = ", ".join({**cols, **fresh}.get(n, "None") for n in order)
        stored_args = ", ".join({**cols, **stored}.get(n, "None") for n in order)
        # Which data attributes may hold non-text values: only their presence
        # is checked per value (absent: at their default, omitted from data).
        mapped = {*self.columns.values(), "meta"}
        others = [
            f.name
            for f in attrs.fields(cast(Any, self.cls))
            if f.name not in mapped and not _is_text_type(hints.get(f.name))
        ]
        flat = " and ".join(f"{name!r} not in data" for name in others) or "True"
        version = f"    data[{_VERSION_KEY!r}] = {self.version}\n" if self.version > 1 else ""
        source = (
            "def encode(value, firm_id=None):\n"
            "    meta = value.meta\n"
            "    data = _data(value)\n"
            f"{version}"
            f"    if ({flat}) or _flat(data):\n"
            "        if data == last[0]:\n"
            "            data = last[0]\n"
            "        else:\n"
            "            last[0] = data\n"
            "    if meta.version or meta.seq or meta.lease_owner is not None:\n"
            f"        return _build({stored_args})\n"
            f"    return _build({fresh_args})\n"
        )
        namespace: dict[str, Any] = {
            "_build": build_record,
            "_EPOCH": EPOCH,
            "_data": self._encode_data,
            "_status": _status_value,
            "_created": _created_value,
            "_flat": _flat_text,
            "_body": self.body_codec[0] if self.body_codec else None,
            "last": [None],
        }
        exec(compile(source, f"<clientcomm.records encode {self.name}>", "exec"), namespace)  # noqa: S102
        return cast(Callable[[T, str | None], Record], namespace["encode"])

    def encode_variants(
        self,
        template: T,
        firm_id: str | None,
        names: tuple[str, ...],
        rows: Iterable[Sequence[Any]],
    ) -> list[Record]:
        """The Records of ``template`` with the attributes ``names`` replaced by
        each row's values: equal to encoding
        ``attrs.evolve(template, **dict(zip(names, row)))`` for every row, with
        one encoding of ``template`` for the whole batch (a mailing writes one
        copy per recipient that differs only in its id, client and sealed text).

        Only attributes stored in a plain column may vary (not ``data``, the
        status or ``created_at``, and none with a validator or converter), so
        the rows need no encoding of their own; the store checks every Record
        as it checks any other.

        Raises:
            ConfigurationError: a name is not such an attribute.
        """
        build = self._variant_builders.get(names)
        if build is None:
            build = self._make_variant_builder(names)
        return build(self._encoder(template, firm_id), rows)

    def _make_variant_builder(
        self, names: tuple[str, ...]
    ) -> Callable[[Record, Iterable[Sequence[Any]]], list[Record]]:
        column_of = {attr: column for column, attr in self.columns.items()}
        fields = {f.name: f for f in attrs.fields(cast(Any, self.cls))}
        varying: dict[str, str] = {}
        for i, name in enumerate(names):
            column = column_of.get(name)
            field = fields.get(name)
            if (
                column is None
                or column in ("status", "created_at", "kind", "firm_id")
                or field is None
                or field.validator is not None
                or field.converter is not None
            ):
                raise ConfigurationError(
                    f"kind {self.name}: {name!r} cannot vary in encode_variants "
                    "(only plain column attributes can)"
                )
            if column == "body" and self.body_codec is not None:
                varying[column] = f"_body(r[{i}])"
            else:
                varying[column] = f"r[{i}]"
        order = [f.name for f in attrs.fields(Record)]
        args = ", ".join(varying.get(n, f"base.{n}") for n in order)
        source = f"def variants(base, rows):\n    return [_build({args}) for r in rows]\n"
        namespace: dict[str, Any] = {
            "_build": build_record,
            "_body": self.body_codec[0] if self.body_codec else None,
        }
        exec(compile(source, f"<clientcomm.records variants {self.name}>", "exec"), namespace)  # noqa: S102
        build = cast(
            Callable[[Record, Iterable[Sequence[Any]]], list[Record]], namespace["variants"]
        )
        self._variant_builders[names] = build
        return build

    def integrity_of(self, attr: str) -> str | None:
        """The :attr:`integrity` entry of ``attr`` (or of ``"*"``), if declared."""
        return self.integrity.get(attr, self.integrity.get("*"))

    # -- codec -------------------------------------------------------------------
    def id_of(self, value: T) -> str:
        """The record id of ``value``."""
        return str(getattr(value, self.columns["id"]))

    def encode(self, value: T, firm_id: str | None = None) -> Record:
        """The Record for ``value`` (its ``meta`` gives firm, seq, version, lease;
        ``firm_id`` fills in a new value's firm)."""
        return self._encoder(value, firm_id)

    def decode(self, record: Record) -> T:
        """The typed value of a stored record; older layouts are upcast first.

        Raises:
            IntegrityError: the record is of another kind or does not decode
                (damaged or edited ``data``).
        """
        if record.kind != self.name:
            raise IntegrityError(
                f"record {record.id!r} is a {record.kind}, not a {self.name}",
                kind=record.kind,
                id=record.id,
            )
        data: Mapping[str, Any] = record.data
        version = data.get(_VERSION_KEY, 1)
        if version != self.version:
            data = self._upcast(record, dict(data), version)
        values: dict[str, Any] = {}
        for column, attr in self._column_attrs:
            values[attr] = getattr(record, column)
        if self.body_codec is not None:
            try:
                values[self.columns["body"]] = self.body_codec[1](record.body or b"")
            except Exception:
                raise IntegrityError(
                    f"{self.name} record {record.id!r}: body does not decode",
                    kind=self.name,
                    id=record.id,
                ) from None
        meta = Meta(
            record.firm_id, record.seq, record.version, record.lease_owner, record.lease_until
        )
        try:
            values["meta"] = meta
            return self._decode_data({**data, **values}, self.cls)
        except Exception as exc:  # cattrs raises many exception types
            raise IntegrityError(
                f"{self.name} record {record.id!r} does not decode",
                kind=self.name,
                id=record.id,
                reason=type(exc).__name__,
            ) from None

    def _upcast(self, record: Record, data: dict[str, Any], version: Any) -> dict[str, Any]:
        if not isinstance(version, int) or not 1 <= version <= self.version:
            raise IntegrityError(
                f"{self.name} record {record.id!r} has unknown layout {version!r}",
                kind=self.name,
                id=record.id,
            )
        while version < self.version:
            data = self.upcasters[version](data)
            version += 1
        data.pop(_VERSION_KEY, None)
        return data

    # -- sealed values -------------------------------------------------------------
    def sealed_values(self, value: T) -> list[tuple[SealedField, list[bytes]]]:
        """Every sealed value of ``value``, by place."""
        return [(f, f.values(value)) for f in self.sealed]

    def stream_blobs(self, value: T) -> list[str]:
        """The blob ids whose bytes ``value``'s stream keys open."""
        out: list[str] = []
        for f in self.sealed:
            if f.what != "stream_key" or f.blob is None:
                continue
            attr = f.path.partition("[].")[0]
            for item in getattr(value, attr):
                out.append(getattr(item, f.blob))
        return out


class Registry:
    """Every declared :class:`Kind`, by name and by class."""

    def __init__(self) -> None:
        self._by_name: dict[str, Kind[Any]] = {}
        self._by_cls: dict[type[Any], Kind[Any]] = {}
        self._encoders: dict[type[Any], Callable[[Any, str | None], Record]] = {}

    def register(self, kind: Kind[T]) -> Kind[T]:
        """Declare ``kind``; returns it.

        Raises:
            ConfigurationError: the name or class is declared already.
        """
        if kind.name in self._by_name or kind.cls in self._by_cls:
            raise ConfigurationError(f"record kind {kind.name!r} is registered twice")
        self._by_name[kind.name] = kind
        self._by_cls[kind.cls] = kind
        return kind

    def kind(self, name: str) -> Kind[Any]:
        """The kind named ``name``.

        Raises:
            InvalidInputError: ``name`` is not registered.
        """
        try:
            return self._by_name[name]
        except KeyError:
            raise InvalidInputError("kind", "is not a registered record kind", value=name) from None

    def of(self, cls: type[T]) -> Kind[T]:
        """The kind whose class is ``cls``.

        Raises:
            InvalidInputError: ``cls`` is not a registered record class.
        """
        try:
            return self._by_cls[cls]
        except KeyError:
            raise InvalidInputError(
                "record", f"{cls.__name__} is not a registered record class"
            ) from None

    def encode(self, value: Any, firm_id: str | None = None) -> Record:
        """The Record of a registered value (see :meth:`Kind.encode`)."""
        return self.encoder(type(value))(value, firm_id)

    def encoder(self, cls: type[T]) -> Callable[[T, str | None], Record]:
        """The generated encoder of ``cls``'s kind (what :meth:`encode` calls).

        Raises:
            InvalidInputError: ``cls`` is not a registered record class.
        """
        found = self._encoders.get(cls)
        if found is None:
            found = self._encoders[cls] = self.of(cls)._encoder
        return found

    def decode(self, record: Record) -> Any:
        """The typed value of a record of any registered kind."""
        return self.kind(record.kind).decode(record)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Kind[Any]]:
        return iter(sorted(self._by_name.values(), key=lambda k: k.name))

    def sealed_kinds(self) -> list[Kind[Any]]:
        """The kinds that hold sealed values (what rotation and erasure walk)."""
        return [k for k in self if k.sealed]

    def client_kinds(self) -> list[Kind[Any]]:
        """The kinds whose records belong to a client (export and erasure)."""
        return [k for k in self if k.client is not None]


REGISTRY = Registry()
"""The registry every bundled capability declares its kinds in (on import)."""
