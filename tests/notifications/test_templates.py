"""Templates, link templates and the notification value objects."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clientcomm.errors import ConfigurationError, InvalidInputError
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.models import (
    Notification,
    NotificationEvent,
    NotificationKind,
    Recipient,
    check_link,
)
from clientcomm.notifications.templates import TemplateSet

TEMPLATES = TemplateSet()


def render(kind: NotificationKind, language: str | None = "de", **kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {
        "firm_name": "Kanzlei Müller",
        "recipient_name": "Jörg",
        "link": "https://portal.example/f1/clients/c1/messages",
    }
    args.update(kw)
    return TEMPLATES.render(kind, language, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", list(NotificationKind))
@pytest.mark.parametrize("language", ["de", "en"])
def test_every_kind_renders_in_both_languages(kind: NotificationKind, language: str) -> None:
    out = render(kind, language, client_name="Mandant GmbH", count=2)
    assert out.language == language
    assert out.subject and "\n" not in out.subject
    assert "https://portal.example/f1/clients/c1/messages" in out.text
    assert 'href="https://portal.example/f1/clients/c1/messages"' in out.html
    assert f'<html lang="{language}">' in out.html
    assert "Kanzlei Müller" in out.text


def test_german_is_the_default_and_languages_fall_back() -> None:
    assert render(NotificationKind.NEW_MESSAGE, None).subject == "Neue Nachricht von Kanzlei Müller"
    assert render(NotificationKind.NEW_MESSAGE, "fr").language == "de"
    assert (
        render(NotificationKind.NEW_MESSAGE, "en-GB").subject == "New message from Kanzlei Müller"
    )
    assert render(NotificationKind.NEW_MESSAGE, "EN_us").language == "en"
    assert TEMPLATES.language_for("de-AT") == "de"


def test_document_counts_are_worded() -> None:
    assert "ein neues Dokument" in render(NotificationKind.NEW_DOCUMENTS, count=1).text
    assert "3 neue Dokumente" in render(NotificationKind.NEW_DOCUMENTS, count=3).text
    assert "a new document" in render(NotificationKind.NEW_DOCUMENTS, "en", count=1).text
    assert " new documents" in render(NotificationKind.NEW_DOCUMENTS, "en", count=None).text


def test_html_is_autoescaped_text_is_not() -> None:
    out = render(
        NotificationKind.NEW_COMMENT,
        firm_name='<script>alert("x")</script> & Co',
        recipient_name="<b>Jörg</b>",
        client_name="A & B <GmbH>",
        link="https://portal.example/a?x=1&y=2",
    )
    assert "<script>" not in out.html and "&lt;script&gt;" in out.html
    assert "&lt;b&gt;Jörg&lt;/b&gt;" in out.html
    assert "A &amp; B &lt;GmbH&gt;" in out.html
    assert 'href="https://portal.example/a?x=1&amp;y=2"' in out.html
    assert "<b>Jörg</b>" in out.text  # plain text stays plain
    assert "A & B <GmbH>" in out.subject


def test_host_overrides(tmp_path: Path) -> None:
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "new_message.subject.txt").write_text("Post von {{ firm_name }}\n")
    templates = TemplateSet(
        directory=tmp_path,
        overrides={"en/new_message.txt": "Hi {{ recipient_name }}: {{ link }}"},
    )
    assert (
        templates.render(
            "new_message", "de", firm_name="K", recipient_name="J", link="https://p.example/"
        ).subject
        == "Post von K"
    )
    en = templates.render(
        "new_message", "en", firm_name="K", recipient_name="J", link="https://p.example/"
    )
    assert en.text == "Hi J: https://p.example/"
    assert en.subject == "New message from K"  # not overridden: bundled


def test_bad_overrides_fail_at_configuration_time(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown variables: message_text"):
        TemplateSet(overrides={"de/new_message.txt": "{{ message_text }}"})
    with pytest.raises(ConfigurationError, match="line"):
        TemplateSet(overrides={"de/new_message.html": "{% if %}"})
    with pytest.raises(ConfigurationError, match="missing"):
        TemplateSet(languages=("de", "fr"))
    with pytest.raises(ConfigurationError):
        TemplateSet(default_language="fr")
    with pytest.raises(ConfigurationError):
        TemplateSet(directory=tmp_path / "nope")
    with pytest.raises(InvalidInputError):
        TEMPLATES.render("bogus", "de", firm_name="K", recipient_name="", link="https://p.example/")


def test_extra_language_via_overrides() -> None:
    sources = {}
    for kind in NotificationKind:
        sources[f"fr/{kind.value}.subject.txt"] = "Nouveau: {{ firm_name }}"
        sources[f"fr/{kind.value}.txt"] = "{{ link }}"
        sources[f"fr/{kind.value}.html"] = "<a href='{{ link }}'>{{ firm_name }}</a>"
    templates = TemplateSet(overrides=sources, languages=("de", "en", "fr"))
    out = templates.render(
        "new_message", "fr-CA", firm_name="K&K", recipient_name="", link="https://p.example/"
    )
    assert out.subject == "Nouveau: K&K" and out.html.endswith("K&amp;K</a>")


# -- link templates -----------------------------------------------------------

EVENT = NotificationEvent(
    kind=NotificationKind.NEW_MESSAGE,
    firm_id="f1",
    firm_name="Kanzlei",
    event_id="m/1",
    client_id="c 1&x",
)


def test_links_are_formatted_and_percent_encoded() -> None:
    links = LinkTemplates(
        {"new_comment": "https://office.example/{firm_id}/conversations/{event_id}#{cause_id}"},
        default="https://portal.example/{firm_id}/clients/{client_id}/messages?e={event_id}",
    )
    assert links.link(EVENT) == "https://portal.example/f1/clients/c%201%26x/messages?e=m%2F1"
    comment = NotificationEvent(
        kind="new_comment", firm_id="f1", firm_name="K", event_id="conv1", cause_id="cm9"
    )
    assert links.link(comment) == "https://office.example/f1/conversations/conv1#cm9"
    no_client = NotificationEvent(kind="new_message", firm_id="f1", firm_name="K", event_id="e")
    with pytest.raises(InvalidInputError) as info:
        links.link(no_client)
    assert info.value.field == "client_id"


@pytest.mark.parametrize(
    "template",
    [
        "https://portal.example/{firm_id}/{secret}",
        "https://portal.example/{}",
        "https://portal.example/{0}",
        "https://portal.example/{firm_id!r}",
        "https://portal.example/{firm_id:>10}",
        "https://portal.example/{firm_id.__class__}",
        "https://portal.example/{firm_id[0]}",
        "https://portal.example/{firm_id",
        "javascript:alert(1)//{firm_id}",
        "{firm_id}/portal",
        "https://{firm_id}.portal.example/",
        "/relative/{firm_id}",
    ],
)
def test_unsafe_link_templates_are_refused_at_configuration(template: str) -> None:
    with pytest.raises(ConfigurationError):
        LinkTemplates(default=template)


def test_link_templates_need_known_kinds_and_a_template() -> None:
    with pytest.raises(ConfigurationError):
        LinkTemplates({"bogus": "https://p.example/"})
    with pytest.raises(ConfigurationError):
        LinkTemplates({"new_comment": "https://p.example/"}).link(EVENT)
    assert "kinds" in repr(LinkTemplates(default="https://p.example/{firm_id}"))


@given(st.text(min_size=1, max_size=60).filter(lambda s: s.isprintable()))
def test_any_id_stays_inside_its_path_segment(client_id: str) -> None:
    links = LinkTemplates(default="https://portal.example/c/{client_id}/m")
    event = NotificationEvent(
        kind="new_message", firm_id="f", firm_name="K", event_id="e", client_id=client_id
    )
    link = links.link(event)
    assert link.startswith("https://portal.example/c/") and link.endswith("/m")
    middle = link[len("https://portal.example/c/") : -len("/m")]
    assert "/" not in middle and "?" not in middle and "#" not in middle


# -- value objects ---------------------------------------------------------------


def test_recipient_and_event_validation() -> None:
    r = Recipient(ref="contact:1", role="contact", name="Jörg", email="Jo@Example.COM")
    assert r.email == "Jo@example.com"
    assert "Jo@" not in repr(r) and "Jörg" not in repr(r)
    with pytest.raises(InvalidInputError):
        Recipient(ref="c", role="contact", name="x\r\nBcc: y", email="a@example.com")
    with pytest.raises(InvalidInputError):
        Recipient(ref="c", role="contact", name="x", email="not-an-address")
    with pytest.raises(InvalidInputError):
        Recipient(ref="c", role="contact", name="x", email="a@example.com", language="d e")
    with pytest.raises(InvalidInputError):
        NotificationEvent(kind="new_message", firm_id="f", firm_name="K\nX", event_id="e")
    with pytest.raises(InvalidInputError):
        NotificationEvent(kind="new_message", firm_id="f", firm_name=" ", event_id="e")
    with pytest.raises(InvalidInputError):
        NotificationEvent(kind="new_message", firm_id="f", firm_name="K", event_id="e", count=-1)
    with pytest.raises(ValueError):
        NotificationEvent(kind="bogus", firm_id="f", firm_name="K", event_id="e")
    for bad in [
        "ftp://x.example/",
        "https://",
        "https://x.example/a b",
        'https://x.example/"',
        "https://x.example/\r\n",
        "javascript:alert(1)",
    ]:
        with pytest.raises(InvalidInputError):
            check_link(bad)
    with pytest.raises(InvalidInputError):
        Notification(EVENT, r, "javascript:alert(1)")


def test_notification_has_no_content_fields() -> None:
    # Confidentiality by construction: nothing to put message text into.
    import attrs

    fields = {f.name for f in attrs.fields(NotificationEvent)} | {
        f.name for f in attrs.fields(Notification)
    }
    assert not fields & {"text", "body", "message", "comment", "attachments", "subject"}
