"""Weekly readers get the week's best: a week of papers, ranked without the pull of age that a daily digest has."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command

from digest.selection import History, choose_papers
from papers.ranking import Pool
from subscriptions.models import Subscriber

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # a Monday


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def gnn(make_topic):
    return make_topic("Graph neural networks", aliases=["GNN"])


@pytest.fixture
def week(make_paper):
    def seen(days):
        return NOW - timedelta(days=days)

    return {
        "monday": make_paper("Graph neural networks at a billion edges", upvotes=300, first_seen_at=seen(6)),
        # Three papers as relevant as each other (all say "graph neural network"): upvotes decide the week's order.
        "thursday": make_paper("Graph neural networks for chemistry", upvotes=60, first_seen_at=seen(3)),
        "today": make_paper("A small graph neural network trick", upvotes=8, first_seen_at=seen(0.1)),
    }


def titles(reader, gnn):
    picks = choose_papers(Pool.load(NOW), reader, {gnn.id}, History.load([reader.id], NOW))
    return [pick.paper.title for pick in picks]


def test_a_weekly_readers_first_digest_is_the_weeks_best(gnn, week, make_reader):
    daily = make_reader("daily@example.com", topics=[gnn])
    weekly = make_reader("weekly@example.com", topics=[gnn], frequency=Subscriber.Frequency.WEEKLY, weekly_day=0)
    # The daily reader's first digest looks back 48 hours; the weekly reader's a week, best upvoted first.
    assert titles(daily, gnn) == ["A small graph neural network trick"]
    assert titles(weekly, gnn) == [
        "Graph neural networks at a billion edges",
        "Graph neural networks for chemistry",
        "A small graph neural network trick",
    ]


def test_a_daily_ranking_over_the_same_papers_favours_the_newest(gnn, week, make_reader, settings):
    settings.DIGEST_FIRST_WINDOW_HOURS = 24 * 7
    daily = make_reader("daily@example.com", topics=[gnn])
    assert titles(daily, gnn)[0] == "A small graph neural network trick"


def test_the_weekly_email_says_so(gnn, week, make_reader, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    make_reader("weekly@example.com", topics=[gnn], frequency=Subscriber.Frequency.WEEKLY, weekly_day=0)
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    [message] = mail.outbox
    assert message.subject == "Week’s best: Graph neural networks at a billion… and 2 more"
    assert "The week’s best: 3 papers for Graph neural networks." in " ".join(message.body.split())


def test_the_next_weekly_digest_has_only_what_came_since(gnn, week, make_reader, make_paper, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    weekly = make_reader("weekly@example.com", topics=[gnn], frequency=Subscriber.Frequency.WEEKLY, weekly_day=0)
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    with time_machine.travel(NOW + timedelta(days=7), tick=False):
        make_paper("Graph neural networks on a budget", upvotes=40, first_seen_at=NOW + timedelta(days=2))
        call_command("senddigests", "--now", "--no-progress", stdout=None)
    assert mail.outbox[1].subject.startswith("Week’s best: Graph neural networks on a budget")
    assert "billion edges" not in mail.outbox[1].body
    assert weekly.deliveries.count() == 2


def test_a_quiet_week_offers_the_weeks_most_upvoted_papers(gnn, week, make_topic, make_reader, settings):
    """Nothing matched a weekly reader: the papers offered instead are ranked as the week's best are, by upvotes,
    not by the daily pull of age that would put today's 8-upvote paper first."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    speech = make_topic("Speech recognition", aliases=["ASR"])
    make_reader(
        "quiet@example.com", topics=[speech], frequency=Subscriber.Frequency.WEEKLY, weekly_day=0, send_when_empty=True
    )
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    [message] = mail.outbox
    html = message.alternatives[0][0]
    assert "Trending this week" in html
    offered = [title for title in (paper.title for paper in week.values()) if title in html]
    assert sorted(offered, key=html.index) == [
        "Graph neural networks at a billion edges",
        "Graph neural networks for chemistry",
        "A small graph neural network trick",
    ]
