"""Personalised mailings: placeholders in a mailing's text and subject, rendered
per copy.

A placeholder is a name in double braces, ``{{ client_name }}`` (spaces inside
the braces optional). It names one value and nothing else: there is no
attribute access, no expression, no filter, no loop, and no code is ever run;
a value is inserted as it is and never read as a template again. ``\\{{`` writes
a literal ``{{``. The names are:

* ``client_name``: the client's name in the Directory;
* ``salutation``: the host's ``salutation`` field for the client if its
  :class:`ClientFields` supplies one, else the firm language's neutral one
  (:data:`DEFAULT_SALUTATIONS`);
* every name the host's :class:`ClientFields` declares for the firm.

A template is parsed once per mailing (at submit, where an unknown name or a
malformed placeholder is an :class:`~clientcomm.errors.InvalidInputError`, and
once more when a worker loads the mailing) into literal parts and names; a copy
is rendered by joining the parts with the client's values, no regular
expression per copy. A text without ``{{`` is not a template at all.

Everything here is pure except :class:`Personaliser`, which looks the values up
(one Directory call and one :class:`ClientFields` call per batch of copies).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from clientcomm.directory.base import Directory
from clientcomm.errors import ConfigurationError, InvalidInputError
from clientcomm.messages.rules import MAX_SUBJECT, MAX_TEXT, SUBJECT_MARK

__all__ = [
    "BUILTIN_FIELDS",
    "DEFAULT_SALUTATIONS",
    "MAX_FIELD_VALUE",
    "ClientFields",
    "CopyTemplate",
    "Personaliser",
    "StaticClientFields",
    "Template",
    "Unrenderable",
    "default_salutation",
    "is_template",
    "known_fields",
    "parse_template",
]

#: The placeholders every mailing may use.
BUILTIN_FIELDS = frozenset({"client_name", "salutation"})

#: ``{{ salutation }}`` when the host supplies none for a client, by firm language.
DEFAULT_SALUTATIONS: Mapping[str, str] = {
    "de": "Sehr geehrte Damen und Herren",
    "en": "Dear Sir or Madam",
}

#: The longest value a placeholder takes (characters).
MAX_FIELD_VALUE = 1_000

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PLACEHOLDER = re.compile(r"\{\{[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*\}\}")
_OPEN = "{{"
_ESCAPE = "\\{{"


def is_template(text: str | None) -> bool:
    """True if ``text`` has to be parsed (it contains ``{{``)."""
    return text is not None and _OPEN in text


@attrs.frozen
class Template:
    """A parsed text: ``literals[0] names[0] literals[1] ... literals[-1]``."""

    literals: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(self.names)

    @property
    def literal(self) -> str | None:
        """The text itself if it has no placeholder (escapes resolved), else None."""
        return None if self.names else self.literals[0]

    def render(self, values: Mapping[str, str]) -> str:
        """The text with each placeholder replaced by ``values[name]``
        (``KeyError`` for a missing name)."""
        lits = self.literals
        if not self.names:
            return lits[0]
        out = [lits[0]]
        for name, lit in zip(self.names, lits[1:], strict=True):
            out.append(values[name])
            out.append(lit)
        return "".join(out)


def parse_template(
    source: str, *, field: str = "text", known: Collection[str] | None = None
) -> Template:
    """Parse ``source`` into a :class:`Template`.

    ``known`` is the set of names it may use (``None``: any well-formed name).

    Raises:
        InvalidInputError: (``field``) a ``{{`` that does not start a
            ``{{ name }}`` placeholder (attribute access, expressions, filters,
            an unclosed brace), or a name outside ``known`` (the error names it).
    """
    literals: list[str] = []
    names: list[str] = []
    buf: list[str] = []
    pos = 0
    while True:
        at = source.find(_OPEN, pos)
        if at < 0:
            buf.append(source[pos:])
            break
        if at > 0 and source[at - 1] == "\\":  # \{{ is a literal {{
            buf.append(source[pos : at - 1])
            buf.append(_OPEN)
            pos = at + 2
            continue
        match = _PLACEHOLDER.match(source, at)
        if match is None:
            raise InvalidInputError(
                field,
                f"malformed placeholder at character {at + 1}: a placeholder is one name "
                "in double braces, {{ name }} (no attribute access, expressions or "
                "filters; write \\{{ for a literal {{)",
                value=at + 1,
            )
        name = match.group(1)
        if known is not None and name not in known:
            raise _unknown(field, name, known)
        buf.append(source[pos:at])
        literals.append("".join(buf))
        buf = []
        names.append(name)
        pos = match.end()
    literals.append("".join(buf))
    return Template(tuple(literals), tuple(names))


def _unknown(field: str, name: str, known: Collection[str]) -> InvalidInputError:
    return InvalidInputError(
        field,
        f"unknown placeholder {{{{ {name} }}}} (known: {', '.join(sorted(known))})",
        value=name,
    )


class Unrenderable(Exception):
    """A copy cannot be rendered for one client; ``reason`` goes to the ledger
    (``unrenderable:<placeholder>`` or ``unrenderable:text`` / ``:subject``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_LINE_BREAKS = frozenset("\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029")


@attrs.frozen
class CopyTemplate:
    """A mailing's parsed subject and text, precompiled for rendering: the
    literal parts encoded once, so a copy costs one UTF-8 encoding per value
    (which is also its lone-surrogate check) and one ``bytes.join``."""

    text: Template
    subject: Template | None = None
    #: every placeholder name used, once each (text first, then subject)
    fields: tuple[str, ...] = attrs.field(init=False)
    _text_parts: tuple[bytes, ...] = attrs.field(init=False, repr=False)
    _text_chars: int = attrs.field(init=False, repr=False)
    _text_blank: bool = attrs.field(init=False, repr=False)
    _text_checks: bool = attrs.field(init=False, repr=False)
    _subject_parts: tuple[bytes, ...] = attrs.field(init=False, repr=False)
    _subject_chars: int = attrs.field(init=False, repr=False)
    _subject_names: frozenset[str] = attrs.field(init=False, repr=False)
    _text_pairs: tuple[tuple[str, bytes], ...] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        subject = self.subject
        names = self.text.names + (subject.names if subject is not None else ())
        setattr_ = object.__setattr__
        setattr_(self, "fields", tuple(dict.fromkeys(names)))
        setattr_(self, "_text_parts", tuple(lit.encode() for lit in self.text.literals))
        setattr_(
            self, "_text_pairs", tuple(zip(self.text.names, self._text_parts[1:], strict=True))
        )
        setattr_(self, "_text_chars", sum(map(len, self.text.literals)))
        setattr_(self, "_text_blank", not "".join(self.text.literals).strip())
        # the rendered text can only be blank or too long in these cases
        most = self._text_chars + MAX_FIELD_VALUE * len(self.text.names)
        setattr_(self, "_text_checks", self._text_blank or most > MAX_TEXT)
        if subject is not None:
            setattr_(self, "_subject_parts", tuple(lit.encode() for lit in subject.literals))
            setattr_(self, "_subject_chars", sum(map(len, subject.literals)))
            setattr_(self, "_subject_names", frozenset(subject.names))
        else:
            setattr_(self, "_subject_parts", ())
            setattr_(self, "_subject_chars", 0)
            setattr_(self, "_subject_names", frozenset())

    @classmethod
    def parse(
        cls, text: str, subject: str | None = None, *, known: Collection[str] | None = None
    ) -> CopyTemplate:
        """Parse text and subject (see :func:`parse_template`)."""
        return cls(
            parse_template(text, field="text", known=known),
            None if subject is None else parse_template(subject, field="subject", known=known),
        )

    def check_known(self, known: Collection[str]) -> None:
        """Raises InvalidInputError naming the first placeholder (text first,
        then subject) outside ``known``."""
        for field, template in (("text", self.text), ("subject", self.subject)):
            for name in template.names if template is not None else ():
                if name not in known:
                    raise _unknown(field, name, known)

    def render(self, values: Mapping[str, Any]) -> bytes:
        """The sealed-message body of one copy (:func:`~clientcomm.messages.rules.encode_body`).

        Raises:
            Unrenderable: a value is missing, not a string, too long, or holds
                NUL or a lone surrogate; the rendered text is blank or too long;
                the rendered subject is not one line of at most 200 characters.
        """
        if self.subject is None and not self._text_checks:
            return self._render_text(values)  # the common case, one pass
        encoded: dict[str, bytes] = {}
        for name in self.fields:
            value = values.get(name)
            if type(value) is not str or len(value) > MAX_FIELD_VALUE or "\x00" in value:
                raise Unrenderable(f"unrenderable:{name}")
            try:
                encoded[name] = value.encode()
            except UnicodeEncodeError:  # a lone surrogate
                raise Unrenderable(f"unrenderable:{name}") from None
        names = self.text.names
        parts = self._text_parts
        out = [parts[0]]
        for name, lit in zip(names, parts[1:], strict=True):
            out.append(encoded[name])
            out.append(lit)
        text = b"".join(out)
        if self._text_checks and (
            self._text_chars + sum(len(values[n]) for n in names) > MAX_TEXT
            or (self._text_blank and not text.decode().strip())
        ):
            raise Unrenderable("unrenderable:text")
        if self.subject is None:
            return text
        names = self.subject.names
        subject = self._join(self._subject_parts, names, encoded)
        plain: list[str] = [values[n] for n in self._subject_names]
        if self._subject_chars + sum(len(values[n]) for n in names) > MAX_SUBJECT or any(
            not _LINE_BREAKS.isdisjoint(v) for v in plain
        ):
            raise Unrenderable("unrenderable:subject")
        if not subject.decode().strip():
            return text  # a blank subject is none
        return SUBJECT_MARK + subject + b"\x00" + text

    def _render_text(self, values: Mapping[str, Any]) -> bytes:
        """:meth:`render` of a text without subject that can be neither blank nor
        too long: each value checked and encoded where it is placed."""
        out = [self._text_parts[0]]
        append = out.append
        for name, lit in self._text_pairs:
            value = values.get(name)
            if type(value) is not str or len(value) > MAX_FIELD_VALUE or "\x00" in value:
                raise Unrenderable(f"unrenderable:{name}")
            try:
                append(value.encode())
            except UnicodeEncodeError:  # a lone surrogate
                raise Unrenderable(f"unrenderable:{name}") from None
            append(lit)
        return b"".join(out)

    @staticmethod
    def _join(parts: tuple[bytes, ...], names: tuple[str, ...], encoded: dict[str, bytes]) -> bytes:
        if not names:
            return parts[0]
        out = [parts[0]]
        for name, lit in zip(names, parts[1:], strict=True):
            out.append(encoded[name])
            out.append(lit)
        return b"".join(out)


@runtime_checkable
class ClientFields(Protocol):
    """The host's own placeholder values per client (e.g. a tax id, a contact
    person, a deadline), for personalised mailings.

    ``field_names`` is asked at submit and preview (a placeholder outside
    :data:`BUILTIN_FIELDS` and these names is refused); ``field_values`` during
    the fan-out, once per batch of copies (up to the fan-out's batch size), and
    for a preview. A client missing from its answer, or a name missing from a
    client's values, fails that client's copy alone (``unrenderable:<name>``
    in the ledger). Raising fails nothing: the batch is written later, by the
    next attempt. A ``salutation`` value overrides the default salutation.
    """

    async def field_names(self, firm_id: str) -> Collection[str]:
        """The names of the host's fields for ``firm_id``'s clients."""
        ...

    async def field_values(
        self, firm_id: str, client_ids: Sequence[str]
    ) -> Mapping[str, Mapping[str, str]]:
        """Client id -> field name -> value, for each of ``client_ids``."""
        ...


@attrs.frozen
class StaticClientFields:
    """:class:`ClientFields` from a fixed mapping: firm id -> client id -> name ->
    value (for tests, demos, and hosts that load their values up front).
    ``names`` defaults to every name used in ``values``, per firm."""

    values: Mapping[str, Mapping[str, Mapping[str, str]]]
    names: Mapping[str, Collection[str]] | None = None

    async def field_names(self, firm_id: str) -> Collection[str]:
        if self.names is not None:
            return frozenset(self.names.get(firm_id, ()))
        return frozenset(n for v in self.values.get(firm_id, {}).values() for n in v)

    async def field_values(
        self, firm_id: str, client_ids: Sequence[str]
    ) -> Mapping[str, Mapping[str, str]]:
        firm = self.values.get(firm_id, {})
        return {c: firm[c] for c in client_ids if c in firm}


async def known_fields(fields: ClientFields | None, firm_id: str) -> frozenset[str]:
    """The placeholder names a mailing of ``firm_id`` may use.

    Raises:
        ConfigurationError: the host declared a name that is not an identifier
            or is the built-in ``client_name``.
    """
    if fields is None:
        return BUILTIN_FIELDS
    names = frozenset(await fields.field_names(firm_id))
    for name in names:
        if not isinstance(name, str) or not _NAME.match(name) or name == "client_name":
            raise ConfigurationError(
                "ClientFields.field_names returned an unusable name (an identifier, "
                "not client_name, is needed)",
                name=repr(name)[:80],
            )
    return BUILTIN_FIELDS | names


def default_salutation(language: str | None) -> str:
    """The neutral salutation for a firm's language (German by default)."""
    lang = (language or "de").replace("_", "-").lower().split("-", 1)[0]
    return DEFAULT_SALUTATIONS.get(lang, DEFAULT_SALUTATIONS["de"])


class Personaliser:
    """Looks up the placeholder values of a batch of clients: names from the
    Directory, the host's fields from its :class:`ClientFields`."""

    def __init__(self, directory: Directory, fields: ClientFields | None) -> None:
        self.directory = directory
        self.fields = fields

    async def values(
        self,
        firm_id: str,
        template: CopyTemplate,
        client_ids: Sequence[str],
        *,
        language: str | None,
    ) -> dict[str, dict[str, object]]:
        """Client id -> the values ``template`` needs (what is missing stays
        missing, and fails that client's copy when it is rendered).

        Raises:
            ConfigurationError: the template uses host fields and no
                :class:`ClientFields` is configured (nothing is failed: every
                copy waits for a worker that has it).
        """
        wanted = frozenset(template.fields)
        out: dict[str, dict[str, object]] = {c: {} for c in client_ids}
        if not wanted or not client_ids:
            return out
        host_wanted = wanted - BUILTIN_FIELDS
        if host_wanted and self.fields is None:
            raise ConfigurationError(
                "a personalised mailing uses host fields but no ClientFields is configured",
                fields=sorted(host_wanted),
            )
        if "client_name" in wanted:
            for client in await self.directory.list_clients(firm_id, ids=client_ids):
                if client.id in out:
                    out[client.id]["client_name"] = client.name
        host: Mapping[str, Mapping[str, str]] = {}
        if self.fields is not None and wanted - {"client_name"}:
            host = await self.fields.field_values(firm_id, client_ids)
        salutation = default_salutation(language) if "salutation" in wanted else None
        host_names = wanted - {"client_name"}
        for cid, values in out.items():
            mine = host.get(cid)
            if mine is not None:
                for name in host_names:
                    if name in mine:
                        values[name] = mine[name]
            if salutation is not None:
                values.setdefault("salutation", salutation)
        return out
