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
