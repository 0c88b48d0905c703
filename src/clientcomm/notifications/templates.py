"""Notification templates: German and English, text and HTML, overridable.

Each notification kind has three templates per language, looked up as
``{language}/{kind}.subject.txt``, ``{language}/{kind}.txt`` and
``{language}/{kind}.html``. The bundled ones live in the package
(``clientcomm/notifications/templates/``); a host overrides any of them by giving a
directory or a mapping with the same names, and adds a language the same way.

Templates see only these variables (:data:`TEMPLATE_VARIABLES`): ``firm_name``,
``recipient_name``, ``link``, ``client_name``, ``count``, ``kind``,
``language``, ``expires_on`` (the date a portal share ends, or None). There is
no variable for message or comment text: a notification says that something is
waiting, from whom, and where.

HTML templates are autoescaped; undefined variables are errors
(``StrictUndefined``). Templates are compiled once and cached.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import attrs
import jinja2
import jinja2.meta

from clientcomm.errors import ConfigurationError, InvalidInputError
from clientcomm.notifications.models import NotificationKind

__all__ = ["TEMPLATE_VARIABLES", "RenderedNotification", "TemplateSet"]

#: The variables every template may use.
TEMPLATE_VARIABLES = frozenset(
    {
        "firm_name",
        "recipient_name",
        "link",
        "client_name",
        "count",
        "kind",
        "language",
        "expires_on",
    }
)
_PARTS = ("subject.txt", "txt", "html")


@attrs.frozen
class RenderedNotification:
    """The rendered parts of one notification (hidden from ``repr``)."""

    subject: str = attrs.field(repr=False)
    text: str = attrs.field(repr=False)
    html: str = attrs.field(repr=False)
    language: str


class TemplateSet:
    """The templates used to render notifications.

    Args:
        directory: a directory with host templates (``de/new_message.txt`` ...),
            searched before the bundled ones.
        overrides: template sources by name, searched before ``directory``.
        default_language: used when a recipient's language has no templates.
        languages: the languages offered; each must have every template.

    Raises:
        ConfigurationError: (on construction) a language without a complete set
            of templates, a template that does not compile, or one that uses a
            variable outside :data:`TEMPLATE_VARIABLES`.
    """

    def __init__(
        self,
        *,
        directory: str | os.PathLike[str] | None = None,
        overrides: Mapping[str, str] | None = None,
        default_language: str = "de",
        languages: Iterable[str] = ("de", "en"),
    ) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if overrides:
            loaders.append(jinja2.DictLoader(dict(overrides)))
        if directory is not None:
            if not os.path.isdir(directory):
                raise ConfigurationError(
                    "template directory does not exist", directory=os.fspath(directory)
                )
            loaders.append(jinja2.FileSystemLoader(os.fspath(directory)))
        loaders.append(jinja2.PackageLoader("clientcomm.notifications", "templates"))
        self._env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html", "htm"), default_for_string=False, default=False
            ),
            undefined=jinja2.StrictUndefined,
            auto_reload=False,
            cache_size=-1,
            keep_trailing_newline=False,
        )
        self.languages = tuple(dict.fromkeys(lang.lower() for lang in languages))
        if default_language.lower() not in self.languages:
            raise ConfigurationError(
                "default_language must be one of languages", default_language=default_language
            )
        self.default_language = default_language.lower()
        self._compiled: dict[tuple[str, str], tuple[jinja2.Template, ...]] = {}
        for language in self.languages:
            for kind in NotificationKind:
                self._compiled[(language, kind.value)] = tuple(
                    self._load(f"{language}/{kind.value}.{part}") for part in _PARTS
                )

    def __repr__(self) -> str:
        return f"TemplateSet(languages={self.languages!r}, default={self.default_language!r})"

    def _load(self, name: str) -> jinja2.Template:
        try:
            source, _, _ = self._env.loader.get_source(self._env, name)  # type: ignore[union-attr]
            variables = jinja2.meta.find_undeclared_variables(self._env.parse(source))
            template = self._env.get_template(name)
        except jinja2.TemplateNotFound as exc:
            raise ConfigurationError(f"notification template {exc.name!r} is missing") from None
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigurationError(
                f"notification template {name!r} line {exc.lineno}: {exc.message}"
            ) from None
        unknown = variables - TEMPLATE_VARIABLES
        if unknown:
            raise ConfigurationError(
                f"notification template {name!r} uses unknown variables: "
                f"{', '.join(sorted(unknown))}",
                template=name,
            )
        return template

    def language_for(self, requested: str | None) -> str:
        """The language to use for a recipient who prefers ``requested``:
        ``"en-GB"`` and ``"en_US"`` map to ``"en"``; unknown or missing
        languages fall back to :attr:`default_language`."""
        if requested:
            tag = requested.replace("_", "-").lower()
            if tag in self.languages:
                return tag
            primary = tag.split("-", 1)[0]
            if primary in self.languages:
                return primary
        return self.default_language

    def render(
        self,
        kind: NotificationKind | str,
        language: str | None,
        *,
        firm_name: str,
        recipient_name: str,
        link: str,
        client_name: str | None = None,
        count: int | None = None,
        expires_at: datetime | None = None,
    ) -> RenderedNotification:
        """Render subject, text and HTML for one recipient.

        The subject's whitespace (including any line breaks from the template)
        is collapsed to single spaces.

        Raises:
            InvalidInputError: unknown ``kind``.
            ConfigurationError: a template failed while rendering (e.g. an
                undefined variable).
        """
        try:
            key = NotificationKind(kind).value
        except ValueError:
            raise InvalidInputError("kind", "unknown notification kind", value=kind) from None
        lang = self.language_for(language)
        subject_t, text_t, html_t = self._compiled[(lang, key)]
        context: dict[str, Any] = {
            "firm_name": firm_name,
            "recipient_name": recipient_name,
            "link": link,
            "client_name": client_name,
            "count": count,
            "expires_on": None
            if expires_at is None
            else expires_at.strftime("%d.%m.%Y" if lang == "de" else "%Y-%m-%d"),
            "kind": key,
            "language": lang,
        }
        try:
            subject = " ".join(subject_t.render(context).split())
            text = text_t.render(context)
            html = html_t.render(context)
        except jinja2.TemplateError as exc:
            raise ConfigurationError(
                f"notification template {lang}/{key} failed: {exc}", kind=key, language=lang
            ) from None
        return RenderedNotification(subject=subject, text=text, html=html, language=lang)
