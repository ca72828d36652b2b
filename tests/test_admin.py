import pytest
from django.utils import timezone

from digest.models import Paper, Topic


@pytest.fixture
def papers(db):
    today = [
        ("2401.10001", "Graph neural networks for molecules"),
        ("2401.10002", "A GNN that counts substructures"),
        ("2401.10003", "Speech recognition in noisy rooms"),
    ]
    created = [Paper.objects.create(arxiv_id=i, title=t, raw_title=t, upvotes=5) for i, t in today]
    old = Paper.objects.create(arxiv_id="2301.10004", title="Old graph neural networks", raw_title="x")
    Paper.objects.filter(pk=old.pk).update(first_seen_at=timezone.now() - timezone.timedelta(days=5))
    return created


def test_paper_changelist_searches_by_id_and_title(admin_client, papers):
    page = admin_client.get("/admin/digest/paper/", {"q": "speech"}).content.decode()
    assert "Speech recognition in noisy rooms" in page
    assert "Graph neural networks for molecules" not in page
    page = admin_client.get("/admin/digest/paper/", {"q": "2401.10002"}).content.decode()
    assert "A GNN that counts substructures" in page


def test_paper_page_links_to_arxiv_and_pdf(admin_client, papers):
    page = admin_client.get(f"/admin/digest/paper/{papers[0].pk}/change/").content.decode()
    assert 'href="https://arxiv.org/abs/2401.10001"' in page
    assert 'href="https://arxiv.org/pdf/2401.10001"' in page


def test_topic_page_previews_todays_matches_only(admin_client, papers):
    topic = Topic.objects.create(name="Graph neural networks", slug="gnn", aliases="GNN\nmessage passing")
    page = admin_client.get(f"/admin/digest/topic/{topic.pk}/change/").content.decode()
    assert "Papers it matches today" in page
    assert "Graph neural networks for molecules" in page
    assert "A GNN that counts substructures" in page
    assert "Speech recognition in noisy rooms" not in page
    assert "Old graph neural networks" not in page


def test_topic_preview_explains_an_empty_day(admin_client, db):
    topic = Topic.objects.create(name="Graph neural networks", slug="gnn")
    page = admin_client.get(f"/admin/digest/topic/{topic.pk}/change/").content.decode()
    assert "No papers were first seen in the last 48 hours" in page


def test_topic_changelist_shows_subscriber_counts(admin_client, db):
    Topic.objects.create(name="Robotics", slug="robotics", description="Robots that learn.")
    page = admin_client.get("/admin/digest/topic/").content.decode()
    assert "Robotics" in page
    assert "Subscribers" in page


def test_an_erased_address_cannot_be_added_back_by_an_operator(admin_client, db):
    from subscriptions.models import ErasedAddress, Subscriber

    ErasedAddress.objects.create(email_hash=ErasedAddress.hash("ada@example.com"))
    data = {"email": "Ada@Example.com", "status": "active", "keywords": "[]", "time_zone": "UTC", "send_hour": "8"}
    data.update(frequency="daily", weekly_day="0", papers_per_email="10", created_at_0="2026-11-30")
    data.update({"created_at_1": "09:00", "consents-TOTAL_FORMS": "0", "consents-INITIAL_FORMS": "0"})
    response = admin_client.post("/admin/subscriptions/subscriber/add/", data)
    assert "asked for their data to be erased" in response.content.decode()
    assert not Subscriber.objects.exists()


def test_operators_erase_subscribers_with_an_action(admin_client, make_reader):
    from subscriptions.models import ErasedAddress, Subscriber

    reader = make_reader("ada@example.com")
    reader.record("confirm")
    data = {"action": "erase_selected", "_selected_action": [reader.pk]}
    admin_client.post("/admin/subscriptions/subscriber/", data, follow=True)
    assert not Subscriber.objects.exists() and ErasedAddress.is_erased("ada@example.com")
