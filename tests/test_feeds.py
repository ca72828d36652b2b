"""The Atom feeds: /topics/<slug>/feed/ (public) and /feed/<signed token>/ (a reader's digests)."""

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit
from xml.etree import ElementTree

import feedparser
import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from lxml import html

from digest.models import Delivery
from papers.ingest import upsert_papers
from papers.models import Paper
from papers.sources import PaperRecord
from subscriptions import tokens
from subscriptions.models import Subscriber

ATOM = "{http://www.w3.org/2005/Atom}"
NOW = datetime(2026, 6, 10, 15, 0, tzinfo=UTC)
TODAY = NOW.date()


@pytest.fixture(autouse=True)
def frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def gnn(make_topic):
    return make_topic("Graph neural networks", aliases=["GNN"], description="Learning on graphs.")


def path_of(url):
    return urlsplit(url).path


def valid_atom(response):
    """The feed's entries as (id, title) after checking it is well-formed Atom with RFC 4287's required elements, and
    free of what the W3C feed validator warns about (`assert_validator_rules`)."""
    assert response.status_code == 200
    assert response["Content-Type"] == "application/atom+xml; charset=utf-8"
    parsed = feedparser.parse(response.content)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == "atom10"

    feed = ElementTree.fromstring(response.content)
    assert feed.tag == f"{ATOM}feed"
    for name in ("id", "title", "updated"):
        assert (feed.findtext(f"{ATOM}{name}") or "").strip(), f"feed has no {name}"
    assert_uri(feed.findtext(f"{ATOM}id"))
    feed_has_author = feed.find(f"{ATOM}author/{ATOM}name") is not None
    entries = []
    for entry in feed.findall(f"{ATOM}entry"):
        for name in ("id", "title", "updated"):
            assert (entry.findtext(f"{ATOM}{name}") or "").strip(), f"an entry has no {name}"
        assert feed_has_author or entry.find(f"{ATOM}author/{ATOM}name") is not None
        alternate = [link for link in entry.findall(f"{ATOM}link") if link.get("rel", "alternate") == "alternate"]
        assert len(alternate) == 1 and alternate[0].get("href", "").startswith("https://")
        assert_uri(entry.findtext(f"{ATOM}id"))
        datetime.fromisoformat(entry.findtext(f"{ATOM}updated"))
        entries.append((entry.findtext(f"{ATOM}id"), entry.findtext(f"{ATOM}title")))
    ids = [entry_id for entry_id, _title in entries]
    assert len(ids) == len(set(ids)), "entry ids repeat"
    assert [entry.title for entry in parsed.entries] == [title for _id, title in entries]
    assert_validator_rules(feed, response.wsgi_request.build_absolute_uri())
    return entries


def assert_validator_rules(feed, location):
    """The W3C feed validator's Atom checks that a well-formed feed can still fail, each as it words its message."""
    links = feed.findall(f"{ATOM}link")
    [self_link] = [link for link in links if link.get("rel") == "self"]  # 'Missing atom:link with rel="self"'
    assert self_link.get("type") in (None, "application/atom+xml")  # '"self" link references a non-Atom ...'
    assert path_of(self_link.get("href")) == path_of(location)  # "Self reference doesn't match document location"
    for link in feed.iter(f"{ATOM}link"):
        assert_uri(link.get("href"))  # relative links need an xml:base this feed does not give
    entries = feed.findall(f"{ATOM}entry")
    updated = [parse_time(entry.findtext(f"{ATOM}updated")) for entry in entries]
    # "Two entries with the same value for atom:updated"
    assert len(updated) == len(set(updated)), f"entries share an updated time: {sorted(updated)}"
    if entries:
        assert parse_time(feed.findtext(f"{ATOM}updated")) == max(updated)
    for entry, entry_updated in zip(entries, updated, strict=True):
        published = entry.findtext(f"{ATOM}published")
        assert published is None or parse_time(published) <= entry_updated
        for name in ("title", "summary"):  # text constructs: "text" or escaped "html", never undeclared markup
            element = entry.find(f"{ATOM}{name}")
            assert element is None or element.get("type", "text") in ("text", "html")
            assert element is None or not list(element), f"{name} holds elements"


def parse_time(value):
    """An RFC 3339 date-time the validator accepts: a time zone, at most microseconds."""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)", value), value
    return datetime.fromisoformat(value)


def assert_uri(value):
    parts = urlsplit(value)
    assert parts.scheme in ("http", "https", "tag") and (parts.netloc or parts.scheme == "tag"), value


def page_ids(client, topic, day):
    tree = html.fromstring(client.get(f"/topics/{topic.slug}/{day.isoformat()}/").content)
    return [link.get("href") for link in tree.cssselect("ol.papers > li > h2 > a")]


@pytest.fixture
def three_days(make_paper):
    """GNN papers on today, yesterday and four days ago, and one paper on another subject today."""
    made = {}
    for back, titles in [
        (0, [("Graph neural networks today", 3), ("GNN message passing today", 90)]),
        (1, [("Graph neural networks yesterday", 50), ("Deep GNN yesterday", 7), ("Graph neural nets, again", 1)]),
        (4, [("Graph neural networks long ago", 500)]),
    ]:
        for position, (title, upvotes) in enumerate(titles):
            # Papers of one fetch, each first seen at an instant of its own (papers.ingest.stamp_first_seen).
            seen = NOW - timedelta(days=back, hours=1, microseconds=position)
            made[title] = make_paper(title, "A graph neural network.", upvotes=upvotes, first_seen_at=seen)
    made["Protein folding today"] = make_paper("Protein folding today", "Sequences.", first_seen_at=NOW)
    return made


def test_a_topic_feed_is_valid_atom_newest_day_first_ranked_as_on_the_pages(client, gnn, three_days):
    entries = valid_atom(client.get(f"/topics/{gnn.slug}/feed/"))

    expected = page_ids(client, gnn, TODAY) + page_ids(client, gnn, TODAY - timedelta(days=1))
    assert [entry_id for entry_id, _title in entries] == expected
    assert len(expected) == 5
    assert entries[0][1] == "GNN message passing today"  # the more upvoted first, as on the page
    titles = {title for _id, title in entries}
    assert "Graph neural networks long ago" not in titles and "Protein folding today" not in titles


def test_topic_feed_ids_are_the_papers_arxiv_urls_and_stay_the_same(client, gnn, three_days):
    first = valid_atom(client.get(f"/topics/{gnn.slug}/feed/"))
    again = valid_atom(client.get(f"/topics/{gnn.slug}/feed/"))

    assert first == again
    paper = three_days["Graph neural networks today"]
    assert (paper.abs_url, paper.title) in first
    feed = ElementTree.fromstring(client.get(f"/topics/{gnn.slug}/feed/").content)
    assert feed.findtext(f"{ATOM}id") == f"http://127.0.0.1:8000/topics/{gnn.slug}/feed/"


def test_a_topic_feed_entry_carries_authors_links_and_a_summary(client, gnn, make_paper):
    paper = make_paper(
        "Graph neural networks with code",
        "A graph neural network, with code.",
        authors=["Ada Lovelace", "Alan Turing"],
        github_url="https://github.com/example/gnn",
        first_seen_at=NOW,
    )

    feed = feedparser.parse(client.get(f"/topics/{gnn.slug}/feed/").content)
    (entry,) = feed.entries

    assert entry.id == entry.link == paper.abs_url
    assert [author.name for author in entry.authors] == ["Ada Lovelace", "Alan Turing"]
    related = {link.title: link.href for link in entry.links if link.rel == "related"}
    assert related == {"PDF": paper.pdf_url, "Hugging Face": paper.hf_url, "Code": "https://github.com/example/gnn"}
    assert "A graph neural network, with code." in entry.summary and "▲ 10 upvotes" in entry.summary


def test_markup_in_a_title_stays_text_in_the_feed(client, gnn, make_paper):
    title = "<script>alert('x')</script> Graph neural networks & <b>friends</b>"
    make_paper(title, "A graph neural network <img src=x onerror=alert(1)>.", first_seen_at=NOW)

    response = client.get(f"/topics/{gnn.slug}/feed/")
    entries = valid_atom(response)

    assert [entry_title for _id, entry_title in entries] == [title]
    body = response.content.decode()
    assert "<script>" not in body and "<b>" not in body and "<img" not in body
    summary = feedparser.parse(response.content).entries[0].summary
    assert "<img" not in summary and "&lt;img src=x" in summary


def test_the_papers_of_one_fetch_each_have_their_own_updated_time_in_a_topic_feed(client, gnn):
    records = [PaperRecord(f"2606.0{number}001", f"Graph neural networks, part {number}") for number in range(1, 5)]
    upsert_papers(records)

    response = client.get(f"/topics/{gnn.slug}/feed/")
    entries = valid_atom(response)

    feed = ElementTree.fromstring(response.content)
    updated = {entry.findtext(f"{ATOM}id"): entry.findtext(f"{ATOM}updated") for entry in feed.findall(f"{ATOM}entry")}
    first_seen = {paper.abs_url: paper.first_seen_at.isoformat() for paper in Paper.objects.all()}
    assert len(entries) == 4 and updated == first_seen
    assert len(set(updated.values())) == 4
    assert feed.findtext(f"{ATOM}updated") == max(updated.values()) == NOW.isoformat()


def test_an_empty_topic_feed_is_still_valid(client, gnn):
    assert valid_atom(client.get(f"/topics/{gnn.slug}/feed/")) == []


def test_the_topic_feed_is_public_and_cached_briefly(client, gnn):
    response = client.get(f"/topics/{gnn.slug}/feed/")

    assert response["Cache-Control"] == "public, max-age=300"


def deliver(reader, day, papers, status=Delivery.Status.SENT):
    sent_at = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=8)
    return Delivery.objects.create(
        subscriber=reader,
        digest_date=day,
        status=status,
        paper_ids=[paper.id for paper in papers],
        claimed_at=sent_at,
        finished_at=sent_at if status == Delivery.Status.SENT else None,
    )


@pytest.fixture
def reader_with_two_digests(make_reader, make_paper):
    reader = make_reader()
    papers = [make_paper(f"Study {letter}", "Text.", first_seen_at=NOW - timedelta(days=2)) for letter in "ABCDEFG"]
    a, b, c, d, e, f, g = papers
    deliver(reader, TODAY - timedelta(days=1), [b, a])
    deliver(reader, TODAY, [e, c, d])
    deliver(reader, TODAY - timedelta(days=2), [f], status=Delivery.Status.SKIPPED)
    deliver(make_reader(), TODAY, [g])
    return reader


def test_a_readers_feed_lists_their_sent_digests_newest_first_in_each_digests_order(client, reader_with_two_digests):
    url = tokens.feed_url(reader_with_two_digests)
    response = client.get(path_of(url))
    entries = valid_atom(response)

    assert [title for _id, title in entries] == ["Study E", "Study C", "Study D", "Study B", "Study A"]
    feed = ElementTree.fromstring(response.content)
    assert feed.findtext(f"{ATOM}id") == url
    updated = [entry.findtext(f"{ATOM}updated") for entry in feed.findall(f"{ATOM}entry")]
    # When each digest was sent, less a microsecond per place in it: sorted by time, the feed keeps each digest's order.
    assert updated == [
        "2026-06-10T08:00:00+00:00",
        "2026-06-10T07:59:59.999999+00:00",
        "2026-06-10T07:59:59.999998+00:00",
        "2026-06-09T08:00:00+00:00",
        "2026-06-09T07:59:59.999999+00:00",
    ]
    assert feed.findtext(f"{ATOM}updated") == "2026-06-10T08:00:00+00:00"
    assert "no-store" in response["Cache-Control"]


def test_a_readers_feed_link_is_its_own_purpose(client, reader_with_two_digests):
    reader = reader_with_two_digests
    feed_token = path_of(tokens.feed_url(reader)).split("/")[2]

    assert path_of(tokens.feed_url(reader)) == f"/feed/{feed_token}/"
    # The feed link cannot manage or unsubscribe; a manage link is no feed link.
    assert client.get(f"/manage/{feed_token}/").status_code == 400
    assert client.get(f"/unsubscribe/{feed_token}/").status_code == 400
    assert client.get(f"/feed/{tokens.make_token(reader, tokens.MANAGE)}/").status_code == 400


@pytest.mark.parametrize("tamper", ["foreign", "edited", "garbage"])
def test_a_tampered_or_foreign_feed_link_is_refused_and_reveals_nothing(client, reader_with_two_digests, tamper):
    reader = reader_with_two_digests
    token = tokens.make_token(reader, tokens.FEED)
    value = {
        "foreign": tokens.make_token(reader, tokens.UNSUBSCRIBE),
        "edited": token[:-1] + ("A" if token[-1] != "A" else "B"),
        "garbage": "not-a-token",
    }[tamper]

    response = client.get(f"/feed/{value}/")

    assert response.status_code == 400
    body = response.content.decode()
    assert "This link does not work" in body
    assert reader.email not in body and "Study" not in body and "<feed" not in body
    assert "no-store" in response["Cache-Control"]


@pytest.mark.parametrize("status", [Subscriber.Status.UNSUBSCRIBED, Subscriber.Status.SUPPRESSED])
def test_an_ended_subscriptions_feed_is_gone(client, reader_with_two_digests, status):
    reader = reader_with_two_digests
    path = path_of(tokens.feed_url(reader))
    reader.status = status
    reader.save()

    response = client.get(path)

    assert response.status_code == 410
    assert "This feed has ended" in response.content.decode() and "Study" not in response.content.decode()


def test_an_erased_readers_feed_is_gone(client, reader_with_two_digests):
    path = path_of(tokens.feed_url(reader_with_two_digests))
    reader_with_two_digests.erase()

    assert client.get(path).status_code == 410


def test_a_paused_readers_feed_still_shows_their_past_digests(client, reader_with_two_digests):
    reader_with_two_digests.pause()

    assert len(valid_atom(client.get(path_of(tokens.feed_url(reader_with_two_digests))))) == 5


def test_reader_feed_queries_do_not_grow_with_the_papers(client, make_reader, make_paper):
    few, many = make_reader(), make_reader()
    deliver(few, TODAY, [make_paper(f"Few {number}", first_seen_at=NOW) for number in range(2)])
    for back in range(5):
        papers = [make_paper(f"Many {back}-{number}", "Text.", authors=["A"], first_seen_at=NOW) for number in range(6)]
        deliver(many, TODAY - timedelta(days=back), papers)

    with CaptureQueriesContext(connection) as few_queries:
        assert len(valid_atom(client.get(path_of(tokens.feed_url(few))))) == 2
    with CaptureQueriesContext(connection) as many_queries:
        assert len(valid_atom(client.get(path_of(tokens.feed_url(many))))) == 30

    assert len(many_queries) == len(few_queries) <= 3
