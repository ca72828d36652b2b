"""Markup in a paper's title, abstract or authors, in a reader's keywords or in a browser's User-Agent is shown as text
on every page and in every email that shows it, and never becomes an element or an attribute.

Each page is parsed as a browser parses it: no script element runs the payload, no element carries an event handler,
no injected element exists, and the payload itself is there as text (so a page that stopped showing the field would
fail too).
"""

import pytest
from django.core import mail
from django.core.management import call_command
from lxml import etree, html

from digest import feedback as reader_feedback
from digest.models import Delivery
from subscriptions import tokens
from tests.test_smtp_delivery import seed_topic


def payload(marker):
    return f'<script>alert("{marker}")</script><img src=x onerror=alert(1)><b class="{marker}">{marker}</b>"\'>'


TITLE = "Graph neural networks " + payload("in-title")
ABSTRACT = "A GNN. " + payload("in-abstract")
AUTHOR = payload("in-author")
# Keywords are at most 60 characters, and commas and semicolons separate them. Single quotes: the admin shows the
# keywords as JSON, which would spell a double quote \".
KEYWORD = "<img src=x onerror=alert(1)><b class='in-keyword'>K</b>'"
USER_AGENT = "Mozilla/5.0 " + payload("in-user-agent")
MARKERS = ["in-title", "in-abstract", "in-author", "in-keyword", "in-user-agent"]


def assert_shown_as_text(document, *expected):
    """`document` (HTML) has no element, attribute or script from a payload, and shows each `expected` as text."""
    tree = html.document_fromstring(document)
    for script in tree.iter("script"):
        assert "alert(" not in (script.text or ""), html.tostring(script)
    for element in tree.iter():
        if not isinstance(element.tag, str):
            continue
        handlers = [name for name in element.attrib if name.lower().startswith("on")]
        assert handlers == [], html.tostring(element)[:300]
        assert element.get("src") != "x", html.tostring(element)[:300]
        assert element.get("class") not in MARKERS, html.tostring(element)[:300]
    shown = tree.text_content() + " ".join(" ".join(element.attrib.values()) for element in tree.iter())
    for text in expected:
        assert text in shown, f"{text!r} is not shown"


@pytest.fixture
def world(settings, db, make_paper, make_reader, admin_user):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    topic = seed_topic()
    paper = make_paper(TITLE, ABSTRACT, authors=[AUTHOR, "B. Author"], upvotes=100)
    reader = make_reader("ada@example.com", topics=[topic], keywords=[KEYWORD, "<script>alert(2)</script>"])
    reader.record("confirm", user_agent=USER_AGENT)
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    reader_feedback.record(reader, paper, "more")
    return {"topic": topic, "paper": paper, "reader": reader, "delivery": Delivery.objects.get()}


def test_the_public_pages_show_paper_markup_as_text(client, world):
    topic, paper = world["topic"], world["paper"]
    today = paper.first_seen_at.date().isoformat()

    assert_shown_as_text(client.get("/").content.decode(), TITLE, AUTHOR)
    assert_shown_as_text(client.get(f"/topics/{topic.slug}/{today}/").content.decode(), TITLE, ABSTRACT, AUTHOR)


def test_the_readers_pages_show_paper_and_keyword_markup_as_text(client, world):
    reader, paper = world["reader"], world["paper"]
    manage = client.get(f"/manage/{tokens.make_token(reader, tokens.MANAGE)}/").content.decode()
    feedback = client.get(f"/feedback/{tokens.feedback_value(reader, paper.id, 'less')}/").content.decode()
    view = client.get(f"/digest/{tokens.view_value(reader, world['delivery'].digest_date)}/").content.decode()

    assert_shown_as_text(manage, KEYWORD, TITLE)
    assert_shown_as_text(feedback, TITLE)
    assert_shown_as_text(view, TITLE, AUTHOR, KEYWORD)


def test_both_parts_of_the_digest_show_the_markup_as_typed(world):
    [message] = mail.outbox
    assert_shown_as_text(message.alternatives[0][0], TITLE, AUTHOR, KEYWORD)
    # The text part is plain text: the markup is there as typed, not as HTML entities.
    text = " ".join(message.body.split())
    assert AUTHOR in text and KEYWORD in text and "&lt;" not in text and "&quot;" not in text


@pytest.mark.parametrize("feed", ["topic", "reader"])
def test_the_feeds_keep_markup_as_text(client, world, feed):
    path = f"/topics/{world['topic'].slug}/feed/" if feed == "topic" else tokens.feed_url(world["reader"])
    atom = "{http://www.w3.org/2005/Atom}"

    tree = etree.fromstring(client.get(path.removeprefix("http://127.0.0.1:8000")).content)

    [entry] = tree.iter(f"{atom}entry")
    assert entry.findtext(f"{atom}title") == TITLE
    assert AUTHOR in [name.text for name in entry.iter(f"{atom}name")]
    # An Atom reader shows the summary as HTML: once unescaped from the XML it must still be inert.
    summary = entry.find(f"{atom}summary")
    assert summary.get("type") == "html"
    assert_shown_as_text(f"<html><body>{summary.text}</body></html>", AUTHOR)


def test_the_admin_shows_markup_as_text(admin_client, world, make_reader):
    paper, reader, topic = world["paper"], world["reader"], world["topic"]
    not_sent_yet = make_reader("bob@example.com", topics=[topic], keywords=[KEYWORD])
    pages = {
        "papers": ("/admin/papers/paper/", [TITLE]),
        "paper": (f"/admin/papers/paper/{paper.pk}/change/", [TITLE, ABSTRACT]),
        "topic preview": (f"/admin/papers/topic/{topic.pk}/change/", [TITLE]),
        "delivery": (f"/admin/digest/delivery/{world['delivery'].pk}/change/", [TITLE]),
        "subscribers": ("/admin/subscriptions/subscriber/", ["ada@example.com"]),
        "subscriber": (f"/admin/subscriptions/subscriber/{reader.pk}/change/", [KEYWORD, USER_AGENT]),
        "digest preview": (f"/admin/subscriptions/subscriber/{not_sent_yet.pk}/preview/", [TITLE]),
        "preview frame": (f"/admin/subscriptions/subscriber/{not_sent_yet.pk}/preview/html/", [TITLE, KEYWORD]),
    }
    for name, (path, expected) in pages.items():
        response = admin_client.get(path)
        assert response.status_code == 200, name
        assert_shown_as_text(response.content.decode(), *expected)
