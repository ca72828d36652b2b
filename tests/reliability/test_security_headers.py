"""Header injection: nothing a reader types, nor a paper's title, nor the site's name, adds or changes an email header.

Each email (the confirmation, the digest, the operator's test send) is checked as bytes on the wire, parsed back the
way a receiving mail system would.
"""

import email
import email.header
import re
from email import policy
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.core.management import call_command

from subscriptions.models import Subscriber
from tests.test_smtp_delivery import seed_papers, seed_topic

INJECTION = "\r\nBcc: evil@attacker.example\r\nX-Injected: yes"
ENCODED_WORD = "=?utf-8?q?=0D=0ABcc=3A_evil=40attacker.example?="
CONFIRMATION_HEADERS = ["Content-Type", "MIME-Version", "Subject", "From", "To", "Date", "Message-ID"]
DIGEST_HEADERS = [*CONFIRMATION_HEADERS, "List-Unsubscribe", "List-Unsubscribe-Post", "List-Id"]
TEST_SEND_HEADERS = [*CONFIRMATION_HEADERS, "List-Id", "X-Digest-Test"]


@pytest.fixture(autouse=True)
def site(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.DIGEST_SITE_NAME = "Paper Digest" + INJECTION


@pytest.fixture
def topic(db):
    seed_papers()
    return seed_topic()


def sign_up(client, capture, topic, email_address, keywords=""):
    data = {
        "email": email_address,
        "topics": [topic.pk],
        "keywords": keywords,
        "time_zone": "UTC",
        "send_hour": "8",
        "frequency": "daily",
        "weekly_day": "0",
        "papers_per_email": "10",
    }
    with capture(execute=True):
        return client.post("/", data)


def decoded(value):
    return str(email.header.make_header(email.header.decode_header(value)))


def on_the_wire(message):
    """The message as a receiving system parses it from the bytes sent: its headers, unfolded (RFC 5322 2.2.3)."""
    parsed = email.message_from_bytes(message.message().as_bytes(), policy=policy.compat32)
    return {name: re.sub(r"\r?\n(?=[ \t])", "", value) for name, value in parsed.items()}


def header_names(parsed):
    return sorted(parsed)


def assert_one_line_headers(parsed):
    for name, value in parsed.items():
        assert "\r" not in value and "\n" not in value, (name, value)
        assert "evil@attacker.example" not in value or name in ("Subject", "List-Id"), (name, value)


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.com\r\nBcc: evil@attacker.example",
        "ada@example.com\nBcc: evil@attacker.example",
        "ada@example.com%0D%0ABcc:evil@attacker.example",
        "Ada <ada@example.com>",
        "ada@example.com, evil@attacker.example",
        ENCODED_WORD + "@example.com",
        "=?utf-8?b?ZXZpbEBhdHRhY2tlci5leGFtcGxl?=@example.com",
        "ada@=?utf-8?q?attacker?=.example",
    ],
)
def test_an_address_that_could_carry_a_header_is_refused_at_sign_up(
    client, django_capture_on_commit_callbacks, inline_tasks, topic, address
):
    response = sign_up(client, django_capture_on_commit_callbacks, topic, address)

    assert response.status_code == 400
    assert "Enter a valid email address" in response.content.decode() or "line breaks" in response.content.decode()
    assert not Subscriber.objects.exists() and mail.outbox == []


def test_the_confirmation_email_has_exactly_its_headers_whatever_the_keywords(
    client, django_capture_on_commit_callbacks, inline_tasks, topic
):
    keywords = f"graphs{INJECTION}\n{ENCODED_WORD}\nBcc: evil@attacker.example"
    assert sign_up(client, django_capture_on_commit_callbacks, topic, "ada@example.com", keywords).status_code == 302

    [message] = mail.outbox
    parsed = on_the_wire(message)
    assert header_names(parsed) == sorted(CONFIRMATION_HEADERS)
    assert parsed["To"] == "ada@example.com"
    assert parsed["Subject"] == "Confirm your subscription to Paper Digest Bcc: evil@attacker.example X-Injected: yes"
    assert_one_line_headers(parsed)
    assert message.recipients() == ["ada@example.com"]


def test_the_digest_has_exactly_its_headers_whatever_the_titles_and_keywords(make_paper, make_reader, topic):
    make_paper(f"Graph neural networks{INJECTION}", upvotes=500)
    reader = make_reader("ada@example.com", topics=[topic], keywords=[f"graphs{INJECTION}", ENCODED_WORD])

    call_command("senddigests", "--now", "--no-progress", stdout=None)

    [message] = mail.outbox
    parsed = on_the_wire(message)
    assert header_names(parsed) == sorted(DIGEST_HEADERS)
    assert parsed["To"] == reader.email and message.recipients() == [reader.email]
    # The title's line breaks are spaces in the one-line subject, cut to 60 characters between words.
    assert decoded(parsed["Subject"]) == "Graph neural networks Bcc: evil@attacker.example… and 3 more"
    # The name holds specials (":", "@"), so it stands as a quoted phrase before the literal list id (RFC 2919).
    assert parsed["List-Id"].startswith('"Paper Digest Bcc: evil@attacker.example X-Injected: yes" <digest.')
    assert_one_line_headers(parsed)


def test_the_operators_test_send_has_exactly_its_headers(client, admin_user, make_paper, make_reader, topic):
    admin_user.email = "operator@example.org"
    admin_user.save()
    client.force_login(admin_user)
    make_paper(f"Graph neural networks{INJECTION}", upvotes=500)
    reader = make_reader("ada@example.com", topics=[topic], keywords=[f"graphs{INJECTION}"])

    client.post(f"/admin/subscriptions/subscriber/{reader.pk}/preview/send/")

    [message] = mail.outbox
    parsed = on_the_wire(message)
    assert header_names(parsed) == sorted(TEST_SEND_HEADERS)
    assert parsed["To"] == "operator@example.org" and message.recipients() == ["operator@example.org"]
    assert parsed["X-Digest-Test"] == "Preview of the digest for ada@example.com"
    assert decoded(parsed["Subject"]).startswith("[Test] Graph neural networks Bcc: evil@attacker.example")
    assert_one_line_headers(parsed)


def test_a_link_in_an_email_names_the_site_not_the_host_the_request_came_to(
    client, django_capture_on_commit_callbacks, inline_tasks, topic, settings
):
    settings.SITE_URL = "http://127.0.0.1:8000"
    settings.DIGEST_SITE_NAME = "Paper Digest"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/",
            {
                "email": "ada@example.com",
                "topics": [topic.pk],
                "time_zone": "UTC",
                "send_hour": "8",
                "frequency": "daily",
                "weekly_day": "0",
                "papers_per_email": "10",
            },
            headers={"Host": "localhost", "X-Forwarded-Host": "attacker.example"},
        )

    assert response.status_code == 302
    [message] = mail.outbox
    assert "http://127.0.0.1:8000/confirm/" in message.body
    links = re.findall(r"https?://[^\s\"'<>]+", message.body + message.alternatives[0][0])
    assert "http://127.0.0.1:8000/confirm/" in message.body
    assert {urlsplit(link).netloc for link in links} == {"127.0.0.1:8000"}
