"""The public topic pages: /topics/, /topics/<slug>/ and /topics/<slug>/<YYYY-MM-DD>/, as a reader sees them."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from lxml import html

from digest.selection import History, choose_papers
from papers.matching import Query, build_index
from papers.models import Paper
from papers.ranking import Pool
from subscriptions.models import MAX_PAPERS_PER_EMAIL

NOW = datetime(2026, 6, 10, 15, 0, tzinfo=UTC)
TODAY = NOW.date()
YESTERDAY = TODAY - timedelta(days=1)

GNN_PAPERS = [
    ("Graph neural networks for molecules", "We train a graph neural network on molecular graphs.", 5),
    ("Message passing at scale", "A GNN with message passing over billions of edges.", 80),
    ("Scaling vision transformers", "Image classification with bigger transformers; a graph of results.", 300),
    ("Oversmoothing in deep graph neural networks", "Why deep GNNs oversmooth, and graph rewiring.", 20),
    ("Protein folding without graphs", "Sequence models predict protein structure.", 150),
]


@pytest.fixture(autouse=True)
def frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def gnn(make_topic):
    return make_topic("Graph neural networks", aliases=["GNN", "message passing"], description="Learning on graphs.")


@pytest.fixture
def todays_papers(make_paper):
    seen = NOW - timedelta(hours=3)
    return [make_paper(title, abstract, upvotes=upvotes, first_seen_at=seen) for title, abstract, upvotes in GNN_PAPERS]


def day_path(topic, day):
    return f"/topics/{topic.slug}/{day.isoformat()}/"


def titles_on(response):
    tree = html.fromstring(response.content)
    return [link.text_content() for link in tree.cssselect("ol.papers > li > h2 > a")]


def test_the_page_ranks_the_days_papers_as_the_digest_does_for_a_reader_of_that_topic(
    client, gnn, todays_papers, make_reader
):
    response = client.get(day_path(gnn, TODAY))

    assert response.status_code == 200
    reader = make_reader(topics=[gnn], papers_per_email=MAX_PAPERS_PER_EMAIL)
    digest = choose_papers(Pool.load(NOW), reader, {gnn.id}, History.load([reader.id], NOW))
    assert titles_on(response) == [pick.paper.title for pick in digest]
    # Trending counts: the most upvoted GNN paper comes first, and papers on other subjects are left out.
    assert titles_on(response)[0] == "Message passing at scale"
    assert "Protein folding without graphs" not in titles_on(response)


def test_with_equal_votes_the_order_is_the_matching_codes_order_for_the_topic(client, gnn, make_paper):
    seen = NOW - timedelta(hours=2)
    for title, abstract, _upvotes in GNN_PAPERS:
        make_paper(title, abstract, upvotes=10, first_seen_at=seen)

    response = client.get(day_path(gnn, TODAY))

    day_papers = Paper.objects.filter(first_seen_at__date=TODAY)
    matches = build_index(day_papers).rank(
        Query.from_topic(gnn), min_score=settings.MATCH_MIN_SCORE, relative=settings.MATCH_RELATIVE_SCORE
    )
    assert len(matches) >= 3
    assert titles_on(response) == [match.paper.title for match in matches]


def test_a_page_shows_each_papers_authors_upvotes_snippet_and_links(client, gnn, make_paper):
    paper = make_paper(
        "Graph neural networks, revisited",
        "A graph neural network study. " * 30,
        upvotes=42,
        authors=["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"],
        github_url="https://github.com/example/gnn",
        first_seen_at=NOW - timedelta(hours=1),
    )

    page = client.get(day_path(gnn, TODAY)).content.decode()
    card = html.fromstring(page).cssselect("ol.papers > li")[0]

    assert card.cssselect("h2 a")[0].get("href") == paper.abs_url
    assert "Ada Lovelace, Alan Turing, Grace Hopper et al." in card.text_content()
    assert "▲ 42" in card.text_content()
    snippet = card.cssselect("p.snippet")[0].text_content()
    assert snippet.startswith("A graph neural network study.") and len(snippet) <= 280
    links = {link.text_content(): link.get("href") for link in card.cssselect("p.links a")}
    assert links == {
        "Abstract": paper.abs_url,
        "PDF": paper.pdf_url,
        "Hugging Face": paper.hf_url,
        "Code": "https://github.com/example/gnn",
    }


def test_a_page_holds_only_the_papers_first_seen_that_utc_day(client, gnn, make_paper):
    make_paper("Graph neural networks at midnight", first_seen_at=datetime(2026, 6, 10, 0, 0, tzinfo=UTC))
    make_paper("Graph neural networks before midnight", first_seen_at=datetime(2026, 6, 9, 23, 59, 59, tzinfo=UTC))

    assert titles_on(client.get(day_path(gnn, TODAY))) == ["Graph neural networks at midnight"]
    assert titles_on(client.get(day_path(gnn, YESTERDAY))) == ["Graph neural networks before midnight"]


def test_markup_in_a_title_is_shown_as_text_never_run(client, gnn, make_paper):
    make_paper("<script>alert('x')</script> Graph neural networks <b>bold</b>", first_seen_at=NOW)

    response = client.get(day_path(gnn, TODAY))
    page = response.content.decode()

    assert "<script>alert" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; Graph neural networks &lt;b&gt;bold&lt;/b&gt;" in page
    assert titles_on(response) == ["<script>alert('x')</script> Graph neural networks <b>bold</b>"]


def test_the_page_is_plain_accessible_html_with_the_feed_in_its_head(client, gnn, todays_papers):
    response = client.get(day_path(gnn, TODAY))
    tree = html.fromstring(response.content)

    alternate = tree.cssselect('head link[rel="alternate"][type="application/atom+xml"]')
    assert [link.get("href") for link in alternate] == [f"/topics/{gnn.slug}/feed/"]
    assert len(tree.cssselect("main")) == 1 and tree.cssselect("header") and tree.cssselect("footer")
    assert [h1.text_content() for h1 in tree.cssselect("h1")] == ["Graph neural networks"]
    assert tree.cssselect("h1 + p")[0].text_content() == "Trending papers of Wednesday 10 June 2026 (today) · 3 papers"
    assert tree.cssselect('nav[aria-label="Other days"]')
    # Works without JavaScript: there is none; and the inline style carries this response's nonce (strict CSP).
    assert not tree.cssselect("script") and not tree.cssselect("[style]")
    nonce = response.wsgi_request.csp_nonce
    assert all(style.get("nonce") == nonce for style in tree.cssselect("style"))
    assert f"'nonce-{nonce}'" in response["Content-Security-Policy"]


def test_days_link_to_the_day_before_and_after_but_never_to_the_future(client, gnn):
    today = html.fromstring(client.get(day_path(gnn, TODAY)).content)
    assert [link.get("href") for link in today.cssselect('a[rel="prev"]')] == [day_path(gnn, YESTERDAY)]
    assert not today.cssselect('a[rel="next"]')

    earlier = html.fromstring(client.get(day_path(gnn, TODAY - timedelta(days=2))).content)
    assert [link.get("href") for link in earlier.cssselect('a[rel="next"]')] == [day_path(gnn, YESTERDAY)]
    assert day_path(gnn, TODAY) in [link.get("href") for link in earlier.cssselect("nav.days a")]


def test_an_empty_day_says_so_and_where_to_look(client, gnn, make_paper):
    make_paper("Protein folding", "Sequence models.", first_seen_at=NOW)

    today = client.get(day_path(gnn, TODAY)).content.decode()
    past = client.get(day_path(gnn, YESTERDAY)).content.decode()

    assert "No paper on Graph neural networks has arrived yet today." in today
    assert "No paper first seen on 9 June 2026 matched Graph neural networks." in past
    for page in (today, past):
        assert 'href="/topics/"' in page and "get new papers by email" in page
        assert "<ol" not in page


def test_the_topic_list_links_each_active_topic_to_todays_page(client, gnn, make_topic):
    hidden = make_topic("Retired topic")
    hidden.is_active = False
    hidden.save()

    response = client.get("/topics/")
    tree = html.fromstring(response.content)

    links = {link.text_content(): link.get("href") for link in tree.cssselect("ul.papers > li > a")}
    assert links == {"Graph neural networks": day_path(gnn, TODAY)}
    assert "Retired topic" not in response.content.decode()
    assert f'href="/topics/{gnn.slug}/feed/"' in response.content.decode()


def test_a_topics_address_without_a_date_goes_to_today(client, gnn):
    response = client.get(f"/topics/{gnn.slug}/")

    assert response.status_code == 302
    assert response["Location"] == day_path(gnn, TODAY)


@pytest.mark.parametrize("day", ["2026-06-11", "2027-01-01", "2026-02-30", "2026-13-01", "20260610", "2026-6-1", "x"])
def test_a_bad_or_future_date_is_a_clear_404(client, gnn, day):
    response = client.get(f"/topics/{gnn.slug}/{day}/")

    assert response.status_code == 404
    page = response.content.decode()
    assert f"No page for “{day}”" in page
    assert day_path(gnn, TODAY) in page and 'href="/topics/"' in page
    assert "public" not in response.get("Cache-Control", "")


@pytest.mark.parametrize("path", ["/topics/unknown/", "/topics/unknown/2026-06-10/", "/topics/unknown/feed/"])
def test_an_unknown_topic_is_a_clear_404(client, db, path):
    response = client.get(path)

    assert response.status_code == 404
    assert "No topic “unknown”" in response.content.decode()


def test_an_inactive_topic_has_no_pages(client, gnn, todays_papers):
    gnn.is_active = False
    gnn.save()

    for path in [f"/topics/{gnn.slug}/", day_path(gnn, TODAY), f"/topics/{gnn.slug}/feed/"]:
        assert client.get(path).status_code == 404, path


def test_public_pages_may_be_cached_briefly(client, gnn):
    for path in ["/topics/", day_path(gnn, TODAY)]:
        response = client.get(path)
        assert response["Cache-Control"] == "public, max-age=300", path
        assert "Set-Cookie" not in response and "Cookie" not in response.get("Vary", ""), path


def embed_stored_papers():
    """What importing does (papers.ingest): each paper's vector stored on its row, so pages only read them."""
    assert build_index().vectors.shape[0] == Paper.objects.count()


def test_the_ranking_is_computed_once_and_then_cached(client, gnn, todays_papers):
    embed_stored_papers()
    with CaptureQueriesContext(connection) as first:
        first_page = client.get(day_path(gnn, TODAY))
    with CaptureQueriesContext(connection) as second:
        second_page = client.get(day_path(gnn, TODAY))

    assert titles_on(first_page) == titles_on(second_page)
    assert len(second) == len(first) - 2  # neither the pool nor the topic's examples are loaded again


def test_queries_do_not_grow_with_the_number_of_papers(client, gnn, make_paper):
    for number in range(2):
        make_paper(f"Graph neural networks, part {number}", first_seen_at=NOW - timedelta(days=1))
    for number in range(25):
        make_paper(
            f"Graph neural networks, volume {number}",
            "A GNN.",
            authors=["A. Author", "B. Author"],
            github_url="https://github.com/example/x",
            first_seen_at=NOW,
        )

    embed_stored_papers()
    with CaptureQueriesContext(connection) as few:
        few_page = client.get(day_path(gnn, YESTERDAY))
    with CaptureQueriesContext(connection) as many:
        many_page = client.get(day_path(gnn, TODAY))

    assert len(titles_on(few_page)) == 2 and len(titles_on(many_page)) == 25
    assert len(many) == len(few) <= 4


def test_each_paper_says_why_it_is_on_the_topics_page(client, gnn, todays_papers):
    response = client.get(day_path(gnn, TODAY))

    tree = html.fromstring(response.content)
    shown = {
        item.cssselect("h2 > a")[0].text_content(): item.cssselect("p.why")[0].text_content()
        for item in tree.cssselect("ol.papers > li")
    }
    index = build_index(Paper.objects.filter(first_seen_at__date=TODAY))
    query = Query.from_topic(gnn)
    expected = {paper.title: f"Why: {index.explain(query, doc)}" for doc, paper in enumerate(index.papers)}
    assert shown and shown == {title: expected[title] for title in shown}
    assert shown["Message passing at scale"].startswith("Why: mentions “")


def checked_topics(page):
    tree = html.fromstring(page)
    return [box.get("value") for box in tree.cssselect('input[name="topics"]') if box.get("checked") is not None]


def test_get_them_by_email_opens_the_sign_up_form_with_the_topic_chosen(client, gnn, todays_papers, make_topic):
    make_topic("Robotics")
    tree = html.fromstring(client.get(day_path(gnn, TODAY)).content)
    [link] = [a.get("href") for a in tree.cssselect("a") if a.text_content() == "Get them by email"]
    assert link == f"/?topic={gnn.slug}#signup-title"
    assert checked_topics(client.get(link).content) == [str(gnn.pk)]


def test_an_empty_days_sign_up_link_chooses_the_topic_too(client, gnn):
    page = client.get(day_path(gnn, YESTERDAY)).content.decode()
    assert f'<a href="/?topic={gnn.slug}#signup-title">get new papers by email</a>' in page


@pytest.mark.parametrize("slug", ["no-such-topic", "retired-topic", ""])
def test_a_sign_up_link_for_no_active_topic_chooses_none(client, make_topic, slug):
    make_topic("Retired topic").__class__.objects.filter(slug="retired-topic").update(is_active=False)
    response = client.get(f"/?topic={slug}")
    assert response.status_code == 200 and checked_topics(response.content) == []
