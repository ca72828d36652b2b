from datetime import timedelta

import pytest
from django.utils import timezone

from digest.models import Delivery
from digest.selection import History, choose_papers
from papers.ranking import Pool


@pytest.fixture
def gnn(make_topic):
    return make_topic("Graph neural networks", aliases=["GNN", "message passing"])


def picks_for(reader, now=None):
    now = now or timezone.now()
    pool = Pool.load(now)
    history = History.load([reader.id], now)
    return choose_papers(pool, reader, set(reader.topics.values_list("id", flat=True)), history)


def test_it_picks_matching_papers_best_first_and_ignores_the_rest(make_paper, make_reader, gnn):
    strong = make_paper("Graph neural networks for molecules", "A GNN with message passing.")
    weak = make_paper("Scaling message passing", "Systems for graphs.")
    make_paper("Speech recognition in noisy rooms", "ASR.")
    reader = make_reader(topics=[gnn])

    picks = picks_for(reader)

    assert [pick.paper for pick in picks] == [strong, weak]
    assert picks[0].labels == ("Graph neural networks",)
    assert picks[0].score >= picks[1].score


def test_trending_lifts_the_more_upvoted_of_two_equally_relevant_papers(make_paper, make_reader, gnn):
    quiet = make_paper("Graph neural networks, again", upvotes=0)
    loud = make_paper("Graph neural networks, again and again", upvotes=300)
    picks = picks_for(make_reader(topics=[gnn]))
    assert [pick.paper for pick in picks] == [loud, quiet]
    assert picks[0].relevance == pytest.approx(picks[1].relevance, abs=0.05)


def test_it_never_sends_a_paper_twice(make_paper, make_reader, gnn):
    first = make_paper("Graph neural networks one")
    second = make_paper("Graph neural networks two")
    reader = make_reader(topics=[gnn])
    yesterday = timezone.now() - timedelta(days=1)
    Delivery.objects.create(
        subscriber=reader,
        digest_date=yesterday.date(),
        status=Delivery.Status.SENT,
        paper_ids=[first.id],
        claimed_at=yesterday - timedelta(days=1),  # the earlier digest saw papers first seen before it
    )
    assert [pick.paper for pick in picks_for(reader)] == [second]


def test_only_papers_first_seen_since_the_last_digest_count(make_paper, make_reader, gnn):
    now = timezone.now()
    make_paper("Graph neural networks before", first_seen_at=now - timedelta(hours=30))
    fresh = make_paper("Graph neural networks after", first_seen_at=now - timedelta(hours=2))
    reader = make_reader(topics=[gnn])
    Delivery.objects.create(
        subscriber=reader, digest_date=(now - timedelta(days=1)).date(), status=Delivery.Status.SENT,
        claimed_at=now - timedelta(hours=20),
    )  # fmt: skip
    assert [pick.paper for pick in picks_for(reader, now)] == [fresh]


def test_a_first_digest_looks_back_48_hours(make_paper, make_reader, gnn, settings):
    now = timezone.now()
    recent = make_paper("Graph neural networks recent", first_seen_at=now - timedelta(hours=47))
    make_paper("Graph neural networks old", first_seen_at=now - timedelta(hours=49))
    assert [pick.paper for pick in picks_for(make_reader(topics=[gnn]), now)] == [recent]
    settings.DIGEST_FIRST_WINDOW_HOURS = 72
    assert len(picks_for(make_reader(topics=[gnn]), now)) == 2


def test_keywords_match_alone_and_are_labelled(make_paper, make_reader):
    nerf = make_paper("Fast neural radiance fields")
    picks = picks_for(make_reader(keywords=["NeRF"]))
    assert [(pick.paper, pick.labels) for pick in picks] == [(nerf, ("“nerf”",))]


def test_it_keeps_to_the_readers_papers_per_email(make_paper, make_reader, gnn):
    for number in range(5):
        make_paper(f"Graph neural networks part {number}")
    assert len(picks_for(make_reader(topics=[gnn], papers_per_email=3))) == 3


def test_nothing_matching_gives_no_picks(make_paper, make_reader, gnn):
    make_paper("Speech recognition")
    assert picks_for(make_reader(topics=[gnn])) == []
