"""The operator's pages in Chromium: each admin page renders with no console error or Content Security Policy
violation (the admin's scripts, django-celery-beat's and the preview's frame included)."""

import importlib

import pytest
from django.apps import apps
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask
from playwright.sync_api import expect

from tests.browser.conftest import PHONE, contrast
from tests.test_smtp_delivery import seed_papers, seed_readers, seed_topic

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def operator_page(open_page, django_user_model):
    django_user_model.objects.create_superuser("operator", "operator@example.org", "a-long-test-password")
    page = open_page("/admin/login/")
    page.get_by_label("Username").fill("operator")
    page.get_by_label("Password").fill("a-long-test-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    return page


def test_every_admin_page_renders_cleanly(operator_page, snap_widths):
    seed_papers()
    topic = seed_topic()
    [reader] = seed_readers(["ada@example.com"], topic)
    reader.keywords = ["protein folding", "message passing"]
    reader.save()
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    # A transactional test run before this one empties the tables, the schedule the migrations made included.
    importlib.import_module("digest.migrations.0003_periodic_tasks").create_schedule(apps, None)
    task = PeriodicTask.objects.get(name="Plan and send digests")
    pages = {
        "home": "/admin/",
        "health": "/admin/health/",
        "subscribers": "/admin/subscriptions/subscriber/",
        "subscriber": f"/admin/subscriptions/subscriber/{reader.pk}/change/",
        "deliveries": "/admin/digest/delivery/",
        "runs": "/admin/digest/digestrun/",
        "topic": f"/admin/papers/topic/{topic.pk}/change/",
        "papers": "/admin/papers/paper/",
        "mail-events": "/admin/subscriptions/mailevent/",
        "periodic-task": f"/admin/django_celery_beat/periodictask/{task.pk}/change/",
    }
    for name, path in pages.items():
        response = operator_page.goto(path)
        assert response.ok, f"{path} answered {response.status}"
        operator_page.wait_for_load_state("networkidle")
        if name in ("health", "subscriber"):
            snap_widths(operator_page, name)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_health_chart_reads_on_a_phone_in_either_scheme(operator_page, scheme, snap):
    seed_papers()
    seed_readers(["ada@example.com"], seed_topic())
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    page = operator_page
    page.emulate_media(color_scheme=scheme)
    page.set_viewport_size({"width": PHONE, "height": 800})
    page.goto("/admin/health/")
    chart = page.locator(".chart")
    expect(chart.locator("rect.sent")).to_have_count(30)
    # The first and last dates in type an operator can read, however small the picture gets.
    dates = chart.locator(".axis span")
    expect(dates.first).to_be_visible()
    assert all(
        float(size.removesuffix("px")) >= 12
        for size in dates.evaluate_all("spans => spans.map(s => getComputedStyle(s).fontSize)")
    )
    # The bars stand out from the page: WCAG's 3:1 for graphics.
    fill = chart.locator("rect.sent").last.evaluate("bar => getComputedStyle(bar).fill")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert contrast(fill, background) >= 3, f"{fill} on {background}"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE
    snap(page, "health")


def test_the_preview_frame_shows_the_email_and_a_test_goes_to_the_operator(operator_page, snap):
    from django.core import mail

    seed_papers()
    [reader] = seed_readers(["ada@example.com"], seed_topic())
    operator_page.goto(f"/admin/subscriptions/subscriber/{reader.pk}/preview/")
    frame = operator_page.frame_locator("iframe.preview-frame")
    expect(frame.get_by_role("heading", level=1)).to_be_visible()
    expect(frame.get_by_role("link", name="Graph neural networks for molecules", exact=True)).to_be_visible()
    # The email's own inline styles apply inside the frame (its policy allows them; the admin's does not).
    color = frame.locator(".paper h3 a").first.evaluate("link => getComputedStyle(link).color")
    assert color != "rgb(0, 0, 238)", "the email's styles did not apply"
    snap(operator_page, "preview")
    operator_page.get_by_role("button", name="Send test digest to me").click()
    expect(operator_page.get_by_text("Sent the test digest to operator@example.org")).to_be_visible()
    [message] = mail.outbox
    assert message.to == ["operator@example.org"] and message.subject.startswith("[Test] ")


def test_an_operator_marks_a_paper_not_this_topic_and_adds_one_that_belongs(operator_page, snap):
    from papers.models import TopicExample

    papers = seed_papers()
    topic = seed_topic()
    other = next(paper for paper in papers.values() if "GNN" not in paper.title and "graph" not in paper.title.lower())
    operator_page.goto(f"/admin/papers/topic/{topic.pk}/change/")
    matches = operator_page.locator("#matches")
    first = matches.locator("ol > li").first
    title = first.get_by_role("link").inner_text()
    snap(operator_page, "topic-before")

    first.get_by_role("button", name="Not this topic").click()

    expect(operator_page.get_by_text(f"Marked “{title}”")).to_be_visible()
    expect(matches.get_by_role("link", name=title, exact=True)).to_have_count(0)
    expect(operator_page.locator("#examples-group")).to_contain_text("Not this topic")

    operator_page.get_by_label("A stored paper that belongs here").fill(other.arxiv_id)
    operator_page.get_by_label("A stored paper that belongs here").press("Enter")

    expect(operator_page.get_by_text(f"Marked “{other.title}”")).to_be_visible()
    expect(matches.get_by_role("link", name=other.title, exact=True)).to_be_visible()
    expect(matches).to_contain_text("marked as belonging here by an editor")
    snap(operator_page, "topic-after")
    assert sorted(TopicExample.objects.values_list("belongs", flat=True)) == [False, True]
