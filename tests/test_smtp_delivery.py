"""The SMTP path end to end: `senddigests` talks to a real SMTP server (aiosmtpd) on loopback.

Everything is asserted on what the server received, parsed as a mail client would, and on the rows an operator reads.
"""

import contextlib
import email
import logging
import re
import socket
import threading
from collections import Counter
from email import policy
from io import StringIO
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from django.core.management import call_command
from django.urls import resolve
from django.utils import timezone
from lxml import html as lxml_html

from digest import sending
from digest.models import Delivery, DigestRun
from papers.models import Paper, Topic
from subscriptions import tokens
from subscriptions.models import Subscriber

SITE_URL = "https://digest.example.org"
SCRIPT_TITLE = "<script>alert(1)</script> Graph neural networks"
GNN_PAPERS = [
    ("2501.00001", "Graph neural networks for molecules", "Message passing over molecular graphs.", 40),
    ("2501.00002", "A GNN that counts substructures", "Graph neural networks that count cycles.", 12),
    ("2501.00003", SCRIPT_TITLE, "A title that tries to run code in the reader's mail client.", 3),
]
OTHER_PAPER = ("2501.00004", "Speech recognition in noisy rooms", "Robust automatic speech recognition.", 90)
READERS = ["ada@example.com", "grace@example.com", "alan@example.com"]


class MailServer:
    """An aiosmtpd handler that keeps every message it accepts.

    `reply_to_rcpt(address, attempt)` may return an SMTP reply ("550 …") to refuse that RCPT TO; `attempt` counts the
    RCPTs this address has had so far, starting at 1.
    """

    def __init__(self):
        self.received = []  # (recipient, raw message), in arrival order
        self.rcpt_attempts = Counter()
        self.reply_to_rcpt = lambda address, attempt: None
        # An async callable given the recipients, awaited before a message is accepted: a slow server.
        self.before_accepting = None
        self._lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self._lock:
            self.rcpt_attempts[address] += 1
            attempt = self.rcpt_attempts[address]
        reply = self.reply_to_rcpt(address, attempt)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.before_accepting is not None:
            await self.before_accepting(envelope.rcpt_tos)
        # Counted as accepted from here, whether or not the client is still there to read the reply.
        with self._lock:
            self.received.extend((recipient, envelope.content) for recipient in envelope.rcpt_tos)
        return "250 Message accepted for delivery"

    def count_by_recipient(self):
        with self._lock:
            return Counter(recipient for recipient, _message in self.received)

    def messages_to(self, address):
        """The messages `address` received, parsed as a mail client would."""
        with self._lock:
            raw = [content for recipient, content in self.received if recipient == address]
        return [email.message_from_bytes(content, policy=policy.default) for content in raw]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_mail_server():
    """A MailServer listening on 127.0.0.1; yields (handler, port)."""
    handler = MailServer()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    # aiosmtpd logs every SMTP command at INFO, which buries a failing test's own output.
    server_log = logging.getLogger("mail.log")
    level = server_log.level
    server_log.setLevel(logging.WARNING)
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()
        server_log.setLevel(level)


@pytest.fixture
def mail_server(settings):
    with running_mail_server() as (server, port):
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.SITE_URL = SITE_URL
        yield server


@pytest.fixture
def no_waiting(monkeypatch):
    """The waits the command asks for between retry rounds, recorded instead of slept."""
    waits = []
    monkeypatch.setattr(sending.time, "sleep", waits.append)
    return waits


def seed_papers():
    papers = [
        Paper.objects.create(
            arxiv_id=arxiv_id, title=title, raw_title=title, abstract=abstract, upvotes=upvotes, authors=["A. Author"]
        )
        for arxiv_id, title, abstract, upvotes in [*GNN_PAPERS, OTHER_PAPER]
    ]
    return {paper.id: paper for paper in papers}


def seed_topic():
    return Topic.objects.create(
        name="Graph neural networks", slug="graph-neural-networks", aliases="GNN\nmessage passing\ngraph transformer"
    )


def seed_readers(emails, topic, status=Subscriber.Status.ACTIVE):
    readers = []
    for address in emails:
        reader = Subscriber.objects.create(email=address, status=status, confirmed_at=timezone.now())
        reader.topics.add(topic)
        readers.append(reader)
    return readers


@pytest.fixture
def seeded(db):
    papers = seed_papers()
    topic = seed_topic()
    readers = seed_readers(READERS, topic)
    seed_readers(["pending@example.com"], topic, status=Subscriber.Status.PENDING)
    return papers, readers


def send_digests():
    out = StringIO()
    call_command("senddigests", "--now", "--no-progress", stdout=out)
    return out.getvalue()


def listed_titles(text):
    """The paper titles of a digest's text part, in the order it lists them ("1. Title")."""
    return [match[1] for line in text.splitlines() if (match := re.fullmatch(r"\d+\. (.+)", line))]


def test_each_reader_gets_one_complete_digest(mail_server, seeded):
    papers, readers = seeded
    send_digests()

    assert mail_server.count_by_recipient() == Counter(READERS)
    gnn_titles = {title for _id, title, _abstract, _upvotes in GNN_PAPERS}
    list_ids = set()
    for reader in readers:
        [message] = mail_server.messages_to(reader.email)
        delivery = Delivery.objects.get(subscriber=reader)
        chosen = [papers[paper_id].title for paper_id in delivery.paper_ids]
        assert set(chosen) == gnn_titles

        assert message["To"] == reader.email
        subject = message["Subject"]
        assert "\n" not in subject and "\r" not in subject
        assert chosen[0] in subject

        # A long URL is folded onto its own line; unfolded, the header value starts with that folding space.
        unsubscribe = message["List-Unsubscribe"].strip()
        assert re.fullmatch(r"<https://digest\.example\.org/unsubscribe/[^/>]+/>", unsubscribe)
        url = unsubscribe[1:-1]
        match = resolve(urlsplit(url).path)
        assert match.view_name == "subscriptions:unsubscribe"
        assert tokens.find_subscriber(match.kwargs["token"], tokens.UNSUBSCRIBE) == reader
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert re.fullmatch(r".*<[\w-]+\.digest\.example\.org>", message["List-Id"])
        list_ids.add(message["List-Id"])
        assert re.fullmatch(r"<[^@<>\s]+@digest\.example\.org>", message["Message-ID"])

        assert message.get_content_type() == "multipart/alternative"
        assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()

        assert listed_titles(text) == chosen
        assert OTHER_PAPER[1] not in text and OTHER_PAPER[1] not in html
        assert f"Unsubscribe: {url}" in text

        page = lxml_html.fromstring(html)
        card_titles = page.xpath("//td[@class='paper']/h3")
        assert [heading.text_content().strip() for heading in card_titles] == chosen
        assert all("font-size" in heading.get("style", "") for heading in card_titles)
        assert url in [link.get("href") for link in page.iter("a")]

        assert "&lt;script&gt;alert(1)&lt;/script&gt; Graph neural networks" in html
        assert "<script" not in html.lower()
        assert page.xpath("//script") == []

        assert delivery.status == Delivery.Status.SENT
        assert delivery.message_id == message["Message-ID"]
        assert delivery.error == ""
        assert delivery.attempts == 1

    assert len(list_ids) == 1, "all digests belong to one list"
    run = DigestRun.objects.get()
    assert (run.planned_count, run.sent_count, run.failed_count, run.skipped_count) == (3, 3, 0, 0)
    assert run.pool_size == 4
    assert run.finished_at is not None


def test_a_second_run_the_same_day_sends_nothing(mail_server, seeded):
    send_digests()
    assert len(mail_server.received) == 3

    output = send_digests()

    assert "Nobody is due a digest now." in output
    assert len(mail_server.received) == 3
    assert Delivery.objects.count() == 3
    assert DigestRun.objects.order_by("started_at").last().planned_count == 0


def test_a_refused_address_fails_and_is_suppressed_while_the_others_are_sent(mail_server, seeded, no_waiting):
    mail_server.reply_to_rcpt = lambda address, attempt: (
        "550 5.1.1 <grace@example.com>: Recipient address rejected: User unknown"
        if address == "grace@example.com"
        else None
    )

    send_digests()

    assert mail_server.count_by_recipient() == Counter(["ada@example.com", "alan@example.com"])
    assert mail_server.rcpt_attempts["grace@example.com"] == 1, "a permanent refusal is not retried"
    assert no_waiting == []
    grace = Subscriber.objects.get(email="grace@example.com")
    failed = Delivery.objects.get(subscriber=grace)
    assert failed.status == Delivery.Status.FAILED
    assert "550" in failed.error and "Recipient address rejected: User unknown" in failed.error
    assert failed.paper_ids == []
    assert grace.status == Subscriber.Status.SUPPRESSED
    assert "550" in grace.status_reason
    sent = Delivery.objects.exclude(subscriber=grace)
    assert {delivery.status for delivery in sent} == {Delivery.Status.SENT}
    assert Subscriber.objects.filter(status=Subscriber.Status.ACTIVE).count() == 2
    run = DigestRun.objects.get()
    assert (run.planned_count, run.sent_count, run.failed_count) == (3, 2, 1)
    assert run.finished_at is not None


def test_a_busy_server_is_retried_until_each_digest_is_sent_once(mail_server, seeded, no_waiting, settings):
    settings.DIGEST_MAX_RETRIES = 3
    mail_server.reply_to_rcpt = lambda address, attempt: "451 4.3.2 Too busy, try again later" if attempt <= 2 else None

    send_digests()

    assert mail_server.count_by_recipient() == Counter(READERS)
    assert mail_server.rcpt_attempts == Counter(dict.fromkeys(READERS, 3))
    assert len(no_waiting) == 2, "one backoff wait before each retry round"
    assert 0 <= no_waiting[0] <= settings.DIGEST_RETRY_BASE_SECONDS
    assert 0 <= no_waiting[1] <= 2 * settings.DIGEST_RETRY_BASE_SECONDS
    for delivery in Delivery.objects.select_related("subscriber"):
        [message] = mail_server.messages_to(delivery.subscriber.email)
        assert delivery.status == Delivery.Status.SENT
        assert delivery.attempts == 3
        assert delivery.error == ""
        assert delivery.message_id == message["Message-ID"]
    assert Subscriber.objects.filter(status=Subscriber.Status.ACTIVE).count() == 3
    run = DigestRun.objects.get()
    assert (run.planned_count, run.sent_count, run.failed_count) == (3, 3, 0)


def test_a_server_busy_past_the_last_retry_fails_the_digests_but_keeps_the_readers(
    mail_server, seeded, no_waiting, settings
):
    settings.DIGEST_MAX_RETRIES = 1
    mail_server.reply_to_rcpt = lambda address, attempt: "451 4.3.2 Too busy, try again later"

    send_digests()

    assert mail_server.received == []
    assert mail_server.rcpt_attempts == Counter(dict.fromkeys(READERS, 2))
    for delivery in Delivery.objects.all():
        assert delivery.status == Delivery.Status.FAILED
        assert "451" in delivery.error and "Too busy" in delivery.error
        assert delivery.attempts == 2
    assert Subscriber.objects.filter(status=Subscriber.Status.ACTIVE).count() == 3
    run = DigestRun.objects.get()
    assert (run.planned_count, run.sent_count, run.failed_count) == (3, 0, 3)
    assert run.finished_at is not None
