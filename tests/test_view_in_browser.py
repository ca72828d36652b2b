"""Every digest links to a signed web page of itself: the email as sent, as a valid web page (how it looks, pixel for
pixel, is tests/browser/test_other_pages.py's; its validity, tests/test_valid_html.py's)."""

import re

import pytest
from django.core import mail
from django.core.management import call_command
from lxml import etree
from lxml import html as lxml_html

from digest.webpage import web_page
from papers.models import Paper
from subscriptions import tokens
from subscriptions.models import Subscriber
from tests.test_smtp_delivery import SCRIPT_TITLE, seed_papers, seed_readers, seed_topic


@pytest.fixture
def sent(settings, db):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    seed_papers()
    readers = seed_readers(["ada@example.com", "grace@example.com"], seed_topic())
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    return readers


def view_link(message):
    [link] = re.findall(r"View in browser: (\S+)", message.body)
    assert f'href="{link}"' in message.alternatives[0][0]
    return "/" + link.split("/", 3)[3]


def shown(html):
    """What a page shows: its body's text, its links and the classes its elements are styled by, in order."""
    body = lxml_html.document_fromstring(html).body
    links = [(link.get("href"), link.text_content()) for link in body.iter("a")]
    return body.text_content(), links, [element.get("class") for element in body.iter(etree.Element)]


def test_the_page_is_the_email_as_sent(client, sent):
    message = next(m for m in mail.outbox if m.to == ["ada@example.com"])
    response = client.get(view_link(message))
    assert response.status_code == 200
    assert shown(response.content.decode()) == shown(message.alternatives[0][0])
    # Without what only mail clients read (Outlook's conditional comments stay: to a browser they are comments).
    page = re.sub(r"<!--.*?-->", "", response.content.decode(), flags=re.DOTALL)
    assert "mso-" in message.alternatives[0][0] and "mso-" not in page
    assert "&lt;script&gt;" in response.content.decode() and SCRIPT_TITLE not in response.content.decode()
    assert response.content.decode().count('class="why"') == len(message.shown["labels"])  # why, as sent


def test_it_stays_the_email_as_sent_when_upvotes_and_topics_change_later(client, sent):
    message = next(m for m in mail.outbox if m.to == ["ada@example.com"])
    Paper.objects.update(upvotes=999)
    Subscriber.objects.get(email="ada@example.com").topics.clear()
    assert client.get(view_link(message)).content.decode() == web_page(message.alternatives[0][0])


def test_the_page_allows_the_emails_styles_and_nothing_that_runs(client, sent):
    response = client.get(view_link(mail.outbox[0]))
    policy = response["Content-Security-Policy"]
    assert "style-src 'unsafe-inline'" in policy and "default-src 'none'" in policy and "script-src" not in policy
    assert "no-store" in response["Cache-Control"]


def test_a_tampered_or_foreign_link_shows_nothing(client, sent):
    ada, grace = sent
    path = view_link(next(m for m in mail.outbox if m.to == ["ada@example.com"]))
    assert client.get(path[:-3] + "xx/").status_code == 400
    unsubscribe = tokens.make_token(ada, tokens.UNSUBSCRIBE)
    assert client.get(f"/digest/{unsubscribe}/").status_code == 400
    # A day the reader got no digest: a clear 404, not someone else's.
    from datetime import date

    other_day = tokens.view_value(ada, date(2020, 1, 1))
    response = client.get(f"/digest/{other_day}/")
    assert response.status_code == 404 and b"This digest is not here" in response.content


def test_an_erased_readers_link_shows_nothing(client, sent):
    message = next(m for m in mail.outbox if m.to == ["ada@example.com"])
    Subscriber.objects.get(email="ada@example.com").erase()
    response = client.get(view_link(message))
    assert response.status_code == 410 and b"This subscription was deleted" in response.content


def test_a_paper_deleted_since_is_left_out_and_the_rest_still_shows(client, sent):
    message = next(m for m in mail.outbox if m.to == ["ada@example.com"])
    Paper.objects.get(title="A GNN that counts substructures").delete()
    page = client.get(view_link(message)).content.decode()
    assert "Graph neural networks for molecules" in page
    assert "A GNN that counts substructures" not in page
