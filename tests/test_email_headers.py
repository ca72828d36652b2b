"""Every email's headers, as bytes on the wire, pass a strict parser whatever the site's name and the papers' titles.

A receiving system reads the bytes, not Django's message object: each email is parsed back with the standard library's
strict policy (any defect fails), its addresses are checked with email-validator, and the raw header lines are held to
RFC 2047 (encoded words of at most 75 characters, on lines of at most 76) and RFC 2919 (a literal list id).
"""

import re
from email import policy
from email.header import decode_header, make_header
from email.parser import BytesParser

import pytest
from django.core import mail
from django.core.management import call_command
from email_validator import validate_email

from subscriptions.emails import CONFIRM, MANAGE_LINK, make_subscription_email
from subscriptions.models import Subscriber
from tests.test_smtp_delivery import running_mail_server

SITE_URL = "https://digest.example.org"
LIST_ID = "digest.digest.example.org"
SITE_NAMES = [
    "Papiers du jour – Ünï",
    "Paper Digest",
    'The "Morning" Papers, <beta> (ML; vision)',
    "📄 Papers ☕ every morning 🚀",
    "Die täglichen Veröffentlichungen über maschinelles Lernen für Forschende in Zürich und Genève",
    "A very long ASCII site name for a daily digest of machine learning research papers from arXiv",
]
LONG_TITLE = (
    "Ünïcode–heavy “quoted” title: grâph neural networks für Moleküle, Ökosysteme et réseaux — "
    "a survey of 日本語 and emoji 🚀 handling"
)
ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
# RFC 2919: list-label "." list-id-namespace, as a dot-atom-text.
ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
LIST_ID_RE = re.compile(rf"{ATEXT}(?:\.{ATEXT})+")


@pytest.fixture(params=SITE_NAMES)
def site_name(request, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_URL = SITE_URL
    settings.DIGEST_SITE_NAME = request.param
    settings.DEFAULT_FROM_EMAIL = from_setting(request.param)
    return request.param


def from_setting(name):
    """DEFAULT_FROM_EMAIL as an operator writes it: the name quoted (it may hold specials), not encoded."""
    return '"{}" <digest@example.org>'.format(name.replace("\\", "\\\\").replace('"', '\\"'))


def raw_headers(raw):
    """[(name, value as sent, folds kept)] of the top-level header block."""
    block = raw.split(b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n", 1)[0].decode("ascii")
    return [(name, value.strip()) for name, value in re.findall(r"^([^\s:]+):(.*(?:\r?\n[ \t].*)*)", block, re.M)]


def unfolded(value):
    return re.sub(r"\r?\n(?=[ \t])", "", value)


def decoded(value):
    """What a mail client shows for an unstructured header: encoded words decoded, folds undone (RFC 2047 6.2)."""
    return str(make_header(decode_header(unfolded(value))))


def display_text(raw_phrase, parsed_name):
    """A display name as RFC 2047 6.2 reads it: the space between two encoded words is not part of the text. (Python's
    parser before CPython gh-128110 keeps that space in an address's display name, so its reading is not used then.)"""
    phrase = unfolded(raw_phrase).strip()
    return decoded(phrase) if ENCODED_WORD.match(phrase) else parsed_name


def strictly_parsed(raw):
    """The message parsed with raise_on_defect, after every check of its raw headers; fails on any defect."""
    for line in raw.splitlines():
        if not line.strip():
            break
        assert len(line) <= 998, line
        if ENCODED_WORD.search(line.decode("ascii")):
            assert len(line) <= 76, line  # RFC 2047 2: a line holding an encoded word
    for name, value in raw_headers(raw):
        assert value.isascii(), (name, value)
        for word in ENCODED_WORD.findall(value):
            assert len(word) <= 75, (name, word)
    parsed = BytesParser(policy=policy.strict).parsebytes(raw)
    for part in parsed.walk():
        assert not part.defects, part.defects
        for name, value in part.items():
            assert not value.defects, (name, value, value.defects)
    for name in ("From", "To"):
        for address in parsed[name].addresses:
            validate_email(address.addr_spec, check_deliverability=False)
    return parsed


def assert_clean(message, site_name):
    """The email's headers are strict-parser clean and say exactly what was meant."""
    raw = message.message().as_bytes()
    parsed = strictly_parsed(raw)
    headers = dict(raw_headers(raw))
    assert parsed["Subject"] == decoded(headers["Subject"]) == message.subject
    [sender] = parsed["From"].addresses
    assert sender.addr_spec == "digest@example.org" and headers["From"].endswith(" <digest@example.org>")
    assert display_text(headers["From"].removesuffix(" <digest@example.org>"), sender.display_name) == site_name
    assert [address.addr_spec for address in parsed["To"].addresses] == message.to
    assert re.fullmatch(r"<[^<>@\s]+@digest\.example\.org>", parsed["Message-ID"])
    return parsed, headers


def assert_list_headers(parsed, headers, site_name):
    """RFC 2919: the list id stands literally in angle brackets; only the phrase before it may be encoded."""
    phrase, list_id = re.fullmatch(r"(.*) <([^<>]*)>", unfolded(headers["List-Id"])).groups()
    assert list_id == LIST_ID and LIST_ID_RE.fullmatch(list_id)
    # The phrase is an RFC 5322 phrase, as before an address: read it with the strict address parser.
    named = policy.strict.header_factory("To", f"{phrase} <list@example.org>")
    assert not named.defects, named.defects
    [named] = named.addresses
    assert display_text(phrase, named.display_name) == site_name
    assert re.fullmatch(rf"<{re.escape(SITE_URL)}/unsubscribe/[^<>\s]+/>", unfolded(headers["List-Unsubscribe"]))
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def send_digest(make_paper, make_topic, make_reader, title):
    topic = make_topic("Graph neural networks")
    make_paper(title, "Graph neural networks for molecules.", upvotes=100)
    make_paper("Message passing on graphs", "Graph neural networks again.", upvotes=3)
    make_reader("ada@example.com", topics=[topic])
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    [message] = mail.outbox
    return message


def assert_subject_names(subject, title, *, start="", end=" and 1 more"):
    """At most 60 characters: `start`, the title (cut between words, with "…", when it is long), then `end`."""
    assert len(subject.removeprefix("[Test] ")) <= 60, subject  # an operator's test copy says so first
    assert subject.startswith(start) and subject.endswith(end), subject
    shown = subject.removeprefix(start).removesuffix(end)
    assert shown == title or (shown.endswith("…") and title.startswith(shown[:-1])), (subject, title)
    assert shown == title or title[len(shown) - 1] == " ", "cut in the middle of a word"


@pytest.mark.parametrize("title", ["Graph neural networks", LONG_TITLE])
def test_the_digest_headers_are_strictly_clean(site_name, make_paper, make_topic, make_reader, title):
    message = send_digest(make_paper, make_topic, make_reader, title)

    parsed, headers = assert_clean(message, site_name)

    assert_subject_names(parsed["Subject"], title)
    assert_list_headers(parsed, headers, site_name)


@pytest.mark.parametrize("kind", [CONFIRM, MANAGE_LINK])
def test_the_sign_up_emails_headers_are_strictly_clean(site_name, make_reader, kind):
    status = Subscriber.Status.PENDING if kind == CONFIRM else Subscriber.Status.ACTIVE
    message = make_subscription_email(make_reader("ada@example.com", status=status), kind)

    parsed, _headers = assert_clean(message, site_name)

    assert site_name in parsed["Subject"]


def test_the_operators_test_send_is_strictly_clean(site_name, client, admin_user, make_paper, make_topic, make_reader):
    admin_user.email = "operator@example.org"
    admin_user.save()
    client.force_login(admin_user)
    topic = make_topic("Graph neural networks")
    make_paper(LONG_TITLE, "Graph neural networks for molecules.", upvotes=100)
    reader = make_reader("ada@example.com", topics=[topic])

    client.post(f"/admin/subscriptions/subscriber/{reader.pk}/preview/send/")

    [message] = mail.outbox
    parsed, headers = assert_clean(message, site_name)
    assert_subject_names(parsed["Subject"], LONG_TITLE, start="[Test] ", end="")
    assert unfolded(headers["List-Id"]).endswith(f"<{LIST_ID}>")
    assert parsed["X-Digest-Test"] == "Preview of the digest for ada@example.com"


def test_the_digest_received_over_smtp_is_strictly_clean(settings, make_paper, make_topic, make_reader):
    site_name = SITE_NAMES[0]
    settings.DIGEST_SITE_NAME = site_name
    settings.DEFAULT_FROM_EMAIL = from_setting(site_name)
    settings.SITE_URL = SITE_URL
    topic = make_topic("Graph neural networks")
    make_paper(LONG_TITLE, "Graph neural networks for molecules.", upvotes=100)
    make_reader("ada@example.com", topics=[topic])
    with running_mail_server() as (server, port):
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        call_command("senddigests", "--now", "--no-progress", stdout=None)

    [(recipient, raw)] = server.received
    parsed = strictly_parsed(raw)
    headers = dict(raw_headers(raw))
    assert recipient == "ada@example.com"
    assert_subject_names(parsed["Subject"], LONG_TITLE, end="")
    assert parsed["From"].addresses[0].display_name == site_name
    assert_list_headers(parsed, headers, site_name)
