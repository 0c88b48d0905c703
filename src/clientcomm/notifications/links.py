"""Host-supplied link templates for notifications.

The host knows where its portal lives; clientcomm only fills in ids. A link
template is a ``str.format`` string with named placeholders from a fixed set
(:data:`LINK_FIELDS`); every value is percent-encoded before it is inserted, so
an id can never change the URL's structure. Templates are checked when the
:class:`LinkTemplates` is built: an unknown placeholder, a positional ``{}``, a
conversion (``!r``), a format spec or attribute/index access is refused then,
not when the first mail goes out.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

from clientcomm.errors import ConfigurationError, InvalidInputError
from clientcomm.notifications.models import NotificationEvent, NotificationKind, check_link

__all__ = ["LINK_FIELDS", "LinkTemplates"]

#: Placeholders a link template may use.
LINK_FIELDS = frozenset({"firm_id", "client_id", "event_id", "cause_id", "kind"})


def _placeholders(template: str, name: str) -> frozenset[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigurationError(f"link template {name!r}: {exc}", template=name) from None
    fields: set[str] = set()
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field == "" or field.isdigit():
            raise ConfigurationError(
                f"link template {name!r}: positional placeholders are not allowed",
                template=name,
            )
        if field not in LINK_FIELDS:
            raise ConfigurationError(
                f"link template {name!r}: unknown placeholder {{{field}}}; "
                f"allowed: {', '.join(sorted(LINK_FIELDS))}",
                template=name,
                placeholder=field,
            )
        if spec or conversion:
            raise ConfigurationError(
                f"link template {name!r}: format specs and conversions are not allowed",
                template=name,
            )
        fields.add(field)
    return frozenset(fields)


class LinkTemplates:
    """Link templates per notification kind, with an optional default.

    Example::

        LinkTemplates(
            {"new_comment": "https://office.example/{firm_id}/conversations/{event_id}"},
            default="https://portal.example/{firm_id}/clients/{client_id}/messages",
        )

    Raises:
        ConfigurationError: (on construction) an unknown kind, a template that is
            not an absolute http(s) URL, or an unknown/unsafe placeholder.
    """

    def __init__(self, templates: Mapping[str, str] | None = None, *, default: str | None = None):
        self._templates: dict[str, tuple[str, frozenset[str]]] = {}
        for key, template in (templates or {}).items():
            try:
                kind = NotificationKind(key)
            except ValueError:
                raise ConfigurationError(
                    f"link template for unknown notification kind {key!r}", kind=key
                ) from None
            self._templates[kind.value] = (template, self._check(template, kind.value))
        self._default = None if default is None else (default, self._check(default, "default"))

    @staticmethod
    def _check(template: str, name: str) -> frozenset[str]:
        if not isinstance(template, str):
            raise ConfigurationError(f"link template {name!r} must be a string", template=name)
        fields = _placeholders(template, name)
        # The scheme and host must be fixed text, not filled in from ids.
        sample = template.format(**dict.fromkeys(fields, "x"))
        parts = urlsplit(sample)
        head = template.split("{", 1)[0]
        if (
            parts.scheme not in ("https", "http")
            or not parts.hostname
            or "//" not in head
            or not urlsplit(head).hostname
        ):
            raise ConfigurationError(
                f"link template {name!r} must be an absolute http(s) URL with a fixed host",
                template=name,
            )
        return fields

    def __repr__(self) -> str:
        return f"LinkTemplates(kinds={sorted(self._templates)!r}, default={bool(self._default)})"

    def template_for(self, kind: NotificationKind | str) -> str:
        """The template used for ``kind``.

        Raises:
            ConfigurationError: no template for ``kind`` and no default.
        """
        return self._lookup(kind)[0]

    def _lookup(self, kind: NotificationKind | str) -> tuple[str, frozenset[str]]:
        entry = self._templates.get(str(kind)) or self._default
        if entry is None:
            raise ConfigurationError(f"no link template for {kind!s} and no default", kind=kind)
        return entry

    def link(self, event: NotificationEvent) -> str:
        """The link for ``event``, every value percent-encoded.

        Raises:
            ConfigurationError: no template for the event's kind.
            InvalidInputError: the template needs a field the event lacks
                (e.g. ``client_id``), or the result is not a valid link.
        """
        template, fields = self._lookup(event.kind)
        values: dict[str, str] = {}
        for field in fields:
            value = getattr(event, field)
            if field == "cause_id" and value is None:
                value = event.event_id
            if value is None:
                raise InvalidInputError(
                    field, f"the link template for {event.kind!s} needs {field}"
                )
            values[field] = quote(str(value), safe="")
        return check_link(template.format(**values))
