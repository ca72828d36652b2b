"""The operator's exact preview of a reader's digest, and the test send to the operator's own address."""

import re

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command

from digest.models import Delivery
from subscriptions import tokens
from subscriptions.models import Subscriber
from tests.test_digest_email import why_lines
from tests.test_smtp_delivery import SCRIPT_TITLE, seed_papers, seed_readers, seed_topic

NOW = "2026-11-30 09:00Z"


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def reader(db):
    seed_papers()
    [reader] = seed_readers(["ada@example.com"], seed_topic())
    return reader


@pytest.fixture
def operator(admin_user):
    admin_user.email = "operator@example.org"
    admin_user.save()
    return admin_user


def preview_path(reader, suffix="", date=None):
    return f"/admin/subscriptions/subscriber/{reader.pk}/preview/{suffix}" + (f"?date={date}" if date else "")


def test_the_preview_shows_headers_papers_and_both_parts_without_recording_anything(admin_client, reader):
    page = admin_client.get(preview_path(reader)).content.decode()
    assert "Digest preview for ada@example.com" in page
    assert re.search(r"<th scope=\"row\">Subject</th><td><code>[^<]*Graph neural networks for molecules", page)
    assert f"&lt;{tokens.unsubscribe_url(reader)}&gt;" in page  # List-Unsubscribe, the reader's own
    assert "List-Unsubscribe=One-Click" in page
    assert '<th scope="row">To</th><td><code>ada@example.com</code>' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and SCRIPT_TITLE not in page
    assert f'src="{preview_path(reader, "html/", "2026-11-30")}"' in page
    assert "Unsubscribe: " + tokens.unsubscribe_url(reader) in page  # the text part
    assert not Delivery.objects.exists() and mail.outbox == []


def test_the_preview_is_exactly_what_a_real_send_sends(admin_client, reader):
    html = admin_client.get(preview_path(reader, "html/")).content.decode()
    page = admin_client.get(preview_path(reader)).content.decode()
    subject = re.search(r"<th scope=\"row\">Subject</th><td><code>([^<]*)</code>", page).group(1)
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    [sent] = mail.outbox
    assert sent.alternatives[0][0] == html
    assert subject.replace("&#x27;", "'").replace("&amp;", "&") == sent.subject
    assert Delivery.objects.get().status == Delivery.Status.SENT


def test_the_preview_message_and_the_sent_one_are_the_same_email(reader):
    from digest.previews import build_preview

    preview = build_preview(reader).message
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    [sent] = mail.outbox
    assert (preview.subject, preview.body, preview.alternatives) == (sent.subject, sent.body, sent.alternatives)
    per_send = {"Message-ID"}  # made fresh for every message, preview or not
    assert {k: v for k, v in preview.extra_headers.items() if k not in per_send} == {
        k: v for k, v in sent.extra_headers.items() if k not in per_send
    }


def test_the_html_frame_has_a_policy_for_the_emails_inline_styles_and_runs_nothing(admin_client, reader):
    response = admin_client.get(preview_path(reader, "html/"))
    policy = response["Content-Security-Policy"]
    assert "style-src 'unsafe-inline'" in policy and "default-src 'none'" in policy
    assert "sandbox" in policy and "frame-ancestors 'self'" in policy
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert "script-src" not in policy  # default-src 'none': no script at all


def test_a_paused_reader_is_previewed_with_the_reason_it_would_not_go(admin_client, reader):
    reader.pause()
    page = admin_client.get(preview_path(reader)).content.decode()
    assert "A real run would not send this: The reader&#x27;s subscription is paused; not sent." in page
    assert "Graph neural networks for molecules" in page


def test_a_reader_with_nothing_new_gets_the_reason_and_no_email(admin_client, make_reader):
    reader = make_reader("grace@example.com")
    page = admin_client.get(preview_path(reader)).content.decode()
    assert "No new paper matched the reader&#x27;s topics and keywords." in page
    assert "Send test digest to me" not in page
    assert "Nothing would be sent" in admin_client.get(preview_path(reader, "html/")).content.decode()


def test_another_date_is_labelled_and_a_bad_one_is_explained(admin_client, reader):
    page = admin_client.get(preview_path(reader, date="2026-12-24")).content.decode()
    assert "Thursday 24 December 2026" in page
    page = admin_client.get(preview_path(reader, date="yesterday"), follow=True).content.decode()
    assert "is not a date like 2026-11-30" in page and "Monday 30 November 2026" in page


def test_send_test_digest_to_me(client, operator, reader):
    client.force_login(operator)
    response = client.post(preview_path(reader, "send/"), {"date": "2026-11-30"}, follow=True)
    assert "Sent the test digest to operator@example.org" in response.content.decode()
    [message] = mail.outbox
    assert message.to == ["operator@example.org"]
    assert message.subject.startswith("[Test] ")
    assert "List-Unsubscribe" not in message.extra_headers
    assert message.extra_headers["X-Digest-Test"] == "Preview of the digest for ada@example.com"
    assert "Graph neural networks for molecules" in message.body
    assert not Delivery.objects.exists()
    # The reader's next real digest still has the papers: a test send is not part of their history.
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    assert Delivery.objects.get().error == ""
    assert "Graph neural networks for molecules" in mail.outbox[1].body


def test_an_operator_without_an_address_is_told_to_add_one(admin_client, admin_user, reader):
    admin_user.email = ""
    admin_user.save()
    response = admin_client.post(preview_path(reader, "send/"), follow=True)
    assert "Your admin user has no email address" in response.content.decode()
    assert mail.outbox == []


def test_only_staff_with_permission_see_previews(client, reader, django_user_model):
    assert client.get(preview_path(reader))["Location"].startswith("/admin/login/")
    staff = django_user_model.objects.create_user("viewer", "viewer@example.org", "pw", is_staff=True)
    client.force_login(staff)
    assert client.get(preview_path(reader)).status_code == 403
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(Permission.objects.get(codename="view_subscriber"))
    staff = django_user_model.objects.get(pk=staff.pk)
    client.force_login(staff)
    assert client.get(preview_path(reader)).status_code == 200
    assert client.post(preview_path(reader, "send/")).status_code == 403
    assert mail.outbox == [] and Subscriber.objects.get().status == Subscriber.Status.ACTIVE


def test_the_preview_says_why_each_paper_is_there_as_the_email_does(admin_client, reader):
    page = admin_client.get(preview_path(reader)).content.decode()
    html = admin_client.get(preview_path(reader, "html/")).content.decode()
    lines = why_lines(html)
    assert lines and all(line.startswith("Why: Graph neural networks — ") for line in lines)
    listed = re.findall(r'<span class="quiet preview-why">([^<]*)</span>', page)
    assert [line.replace("&#x27;", "'") for line in listed] == lines  # the papers listed above the email
    assert "\nWhy: Graph neural networks — " in page  # the text part


def test_a_reader_already_sent_today_is_told_so_with_links_to_what_was_sent(admin_client, reader):
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    delivery = Delivery.objects.get(status=Delivery.Status.SENT)
    page = admin_client.get(preview_path(reader)).content.decode()
    assert "A real run would not send this: Already sent today." in page
    assert "No new paper matched" not in page
    assert f'<a href="/admin/digest/delivery/{delivery.pk}/change/">the delivery</a>' in page
    assert f'<a href="{tokens.view_url(reader, delivery.digest_date)}">the email as sent</a>' in page
    other_day = admin_client.get(preview_path(reader, date="2026-12-01")).content.decode()
    assert "Already sent" not in other_day


@pytest.mark.parametrize(
    ("status", "error", "said"),
    [
        ("failed", "SMTP 451: try later", "Today's digest failed: SMTP 451: try later"),
        ("skipped", "No new paper matched.", "Today's digest was skipped: No new paper matched."),
        ("pending", "", "Today's digest is being sent."),
    ],
)
def test_a_reader_with_todays_digest_under_way_or_done_is_told_which(admin_client, reader, status, error, said):
    delivery = Delivery.objects.create(subscriber=reader, digest_date="2026-11-30", status=status, error=error)
    page = admin_client.get(preview_path(reader)).content.decode()
    assert f"A real run would not send this: {said}".replace("'", "&#x27;") in page
    assert f'<a href="/admin/digest/delivery/{delivery.pk}/change/">the delivery</a>' in page
    assert "the email as sent" not in page
