"""Gmail clips a message whose HTML is over about 102 KB: it shows the start and hides the rest (the unsubscribe link
and the postal address among it) behind "View entire message". The largest digest a reader can choose
(MAX_PAPERS_PER_EMAIL papers) stays under 90 KB, so no reader's email is clipped and nothing needs a warning."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from subscriptions import tokens
from subscriptions.models import MAX_PAPERS_PER_EMAIL

SIZE_BUDGET = 90_000


@pytest.mark.django_db
def test_the_largest_digest_a_reader_can_choose_is_under_90_kb(settings):
    """The richest realistic digest (bench.digest_cost.rich_digest: the longest sample titles, many authors, three
    labels and a long "Why:" line on every card, a picture for the top pick, a reader of five topics and three
    keywords, welcomed to their first digest), as sent."""
    from bench.digest_cost import rich_digest

    settings.SITE_URL = "https://papers.example.org"
    html = rich_digest(MAX_PAPERS_PER_EMAIL).alternatives[0][0]
    assert html.count('class="paper"') == MAX_PAPERS_PER_EMAIL
    assert len(html.encode()) < SIZE_BUDGET, f"{MAX_PAPERS_PER_EMAIL} papers weigh {len(html.encode())} bytes"


def test_the_form_offers_no_more_than_that(client, db):
    page = client.get("/").content.decode()
    assert f'max="{MAX_PAPERS_PER_EMAIL}"' in page
    assert f"From 1 to {MAX_PAPERS_PER_EMAIL}." in page
    response = client.post("/", {"papers_per_email": MAX_PAPERS_PER_EMAIL + 1})
    assert f"less than or equal to {MAX_PAPERS_PER_EMAIL}" in response.content.decode()


def test_the_preference_center_too(client, make_reader):
    page = client.get(tokens.manage_url(make_reader(papers_per_email=MAX_PAPERS_PER_EMAIL))).content.decode()
    assert f'max="{MAX_PAPERS_PER_EMAIL}"' in page and f'value="{MAX_PAPERS_PER_EMAIL}"' in page


@pytest.mark.django_db(transaction=True)
def test_readers_who_chose_more_get_the_most_after_the_migration():
    executor = MigrationExecutor(connection)
    before, after = [("subscriptions", "0010_signupemail")], [("subscriptions", "0011_papers_per_email_at_most_25")]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps.get_model("subscriptions", "Subscriber")
    many = old.objects.create(email="many@example.com", token="t1", papers_per_email=30)
    few = old.objects.create(email="few@example.com", token="t2", papers_per_email=7)
    waiting = old.objects.create(
        email="waiting@example.com", token="t3", pending_preferences={"papers_per_email": 28, "topics": []}
    )
    executor = MigrationExecutor(connection)
    executor.migrate(after)
    new = executor.loader.project_state(after).apps.get_model("subscriptions", "Subscriber")
    assert new.objects.get(id=many.id).papers_per_email == MAX_PAPERS_PER_EMAIL
    assert new.objects.get(id=few.id).papers_per_email == 7
    assert new.objects.get(id=waiting.id).pending_preferences == {"papers_per_email": 25, "topics": []}
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
