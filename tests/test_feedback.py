""" "More like this" / "less like this": the signed links in the digest, the pages behind them, what feedback does to
the ranking, and the preference center's list with undo.

Run with -s to see the before/after rankings (test_less_like_this_*, test_more_like_this_*).
"""

import email
from datetime import timedelta
from email import policy

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from lxml import html as lxml_html

from digest import feedback as reader_feedback
from digest.models import Feedback
from digest.previews import build_preview
from digest.selection import History, choose_papers
from papers.ranking import FEEDBACK_WEIGHT, Pool
from subscriptions import tokens

SITE = "https://digest.example.org"


@pytest.fixture(autouse=True)
def frozen():
    # Trending depends on the time, so rankings compared for equality must be made at one moment.
    with time_machine.travel("2026-11-30 09:00Z", tick=False):
        yield


@pytest.fixture(autouse=True)
def site(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_URL = SITE


@pytest.fixture
def gnn(make_topic):
    return make_topic("Graph neural networks", aliases=["GNN"])


@pytest.fixture
def papers(make_paper):
    """A day of graph neural network papers: two on molecules, two on traffic, two on other things."""
    old = timezone.now() - timedelta(days=5)  # before a first digest's window: never a candidate itself
    return {
        "seen": make_paper(
            "Graph neural networks for molecular property prediction",
            "We predict properties of molecules and drug candidates with a GNN over molecular graphs.",
            upvotes=50,
            first_seen_at=old,
        ),
        "molecules": make_paper(
            "Molecular graph neural networks for drug discovery",
            "A GNN that predicts molecular properties of drug candidates.",
            upvotes=40,
        ),
        "molecules 2": make_paper(
            "Equivariant graph neural networks for molecules",
            "Message passing over molecular graphs predicts molecule properties.",
            upvotes=35,
        ),
        "traffic": make_paper(
            "Graph neural networks for traffic forecasting",
            "Road traffic prediction with a spatio-temporal GNN.",
            upvotes=60,
        ),
        "traffic 2": make_paper(
            "Spatio-temporal graph neural networks for road traffic",
            "Traffic speed prediction on road networks.",
            upvotes=20,
        ),
        "scaling": make_paper(
            "Scaling graph neural network training", "Distributed GNN training on many GPUs.", upvotes=80
        ),
        "recsys": make_paper(
            "Graph neural networks for recommendation",
            "Recommender systems over user item graphs with a GNN.",
            upvotes=30,
        ),
    }


@pytest.fixture
def reader(make_reader, gnn):
    return make_reader("ada@example.com", topics=[gnn], papers_per_email=10)


def ranked(reader):
    now = timezone.now()
    topic_ids = set(reader.topics.values_list("id", flat=True))
    return choose_papers(Pool.load(now), reader, topic_ids, History.load([reader.id], now))


def titles(picks):
    return [pick.paper.title for pick in picks]


def show(label, picks):
    print(f"\n{label}:")
    for position, pick in enumerate(picks, start=1):
        print(f"  {position}. {pick.score:.3f}  {pick.paper.title}")


def place(picks, paper):
    return [pick.paper for pick in picks].index(paper)


def value_of(url):
    return url.rstrip("/").rsplit("/", 1)[1]


def send_digest():
    call_command("senddigests", "--now", "--no-progress")
    [message] = mail.outbox
    parsed = email.message_from_bytes(message.message().as_bytes(), policy=policy.default)
    return parsed.get_body(("html",)).get_content(), parsed.get_body(("plain",)).get_content()


# The links in the email


def test_every_card_has_more_and_less_links_signed_for_the_reader_and_the_paper(papers, reader):
    picks = ranked(reader)
    html, text = send_digest()
    cards = lxml_html.fromstring(html).find_class("paper")
    assert len(picks) == len(cards) == 6
    for pick in picks:
        more = tokens.feedback_url(reader, pick.paper.id, "more")
        less = tokens.feedback_url(reader, pick.paper.id, "less")
        assert more.startswith(f"{SITE}/feedback/") and more != less
        # Each link stands in the card headed by its paper's title, which says what it is about.
        [card] = [card for card in cards if card.findtext("h3/a") == pick.paper.title]
        assert [link.get("href") for link in card.iter("a")][-2:] == [more, less]
        assert f"More like this: {more}\n" in text and f"Less like this: {less}\n" in text
    for part in (html, text):
        assert "%%" not in part


def test_each_reader_gets_their_own_feedback_links(papers, gnn, make_reader):
    readers = [make_reader(topics=[gnn]) for _ in range(2)]
    call_command("senddigests", "--now", "--no-progress")
    by_address = {message.to[0]: message for message in mail.outbox}
    paper = papers["traffic"]
    for reader, other in (readers, readers[::-1]):
        body = by_address[reader.email].body
        assert tokens.feedback_url(reader, paper.id, "less") in body
        assert tokens.feedback_url(other, paper.id, "less") not in body


def test_a_paper_title_cannot_smuggle_in_a_link(make_paper, gnn, reader):
    paper = make_paper("Graph neural networks %%MORE%% %%LESS%% %%POSITION%%", "A GNN.")
    html, text = send_digest()
    assert html.count(tokens.feedback_url(reader, paper.id, "more")) == 1
    assert "Graph neural networks %%MORE%% %%LESS%% %%POSITION%%" in text


# The pages behind the links


def test_a_get_shows_one_button_and_records_nothing(client, papers, reader):
    paper = papers["traffic"]
    response = client.get(tokens.feedback_url(reader, paper.id, "less").removeprefix(SITE))
    assert response.status_code == 200
    content = response.content.decode()
    assert "Less like this?" in content and paper.title in content
    assert content.count('method="post"') == 1 and "csrfmiddlewaretoken" in content
    assert response["Cache-Control"].startswith("max-age=0")
    assert not Feedback.objects.exists()


def test_a_post_records_it_and_a_second_click_changes_the_direction(papers, reader):
    client = Client(enforce_csrf_checks=True)
    paper = papers["traffic"]
    path = tokens.feedback_url(reader, paper.id, "less").removeprefix(SITE)
    assert client.post(path).status_code == 403  # the page's form carries the CSRF token; a bare POST does not
    client.get(path)
    response = client.post(path, {"csrfmiddlewaretoken": client.cookies["csrftoken"].value})
    assert response.status_code == 200
    assert tokens.manage_url(reader) in response.content.decode()
    assert list(Feedback.objects.values_list("subscriber", "paper", "direction")) == [(reader.id, paper.id, "less")]
    more = tokens.feedback_url(reader, paper.id, "more").removeprefix(SITE)
    client.post(more, {"csrfmiddlewaretoken": client.cookies["csrftoken"].value})
    assert list(Feedback.objects.values_list("subscriber", "paper", "direction")) == [(reader.id, paper.id, "more")]


@pytest.mark.parametrize(
    "forge",
    [
        lambda value, papers: value[:-2] + ("aa" if not value.endswith("aa") else "bb"),  # tampered signature
        lambda value, papers: value.replace(f".{papers['traffic'].id}.", f".{papers['molecules'].id}.", 1),
        lambda value, papers: value.replace(".less:", ".more:", 1),
        lambda value, papers: "not-a-link",
    ],
    ids=["tampered", "other-paper", "other-direction", "garbage"],
)
def test_a_forged_link_gets_the_bad_link_page_and_records_nothing(client, papers, reader, forge):
    value = forge(value_of(tokens.feedback_url(reader, papers["traffic"].id, "less")), papers)
    for method in (client.get, client.post):
        response = method(f"/feedback/{value}/")
        assert response.status_code == 400
    assert not Feedback.objects.exists()


def test_a_link_of_another_purpose_or_for_a_gone_reader_is_refused(client, papers, reader):
    for value in (tokens.make_token(reader, tokens.MANAGE), tokens.make_token(reader, tokens.UNSUBSCRIBE)):
        assert client.post(f"/feedback/{value}/").status_code == 400
    link = tokens.feedback_url(reader, papers["traffic"].id, "less").removeprefix(SITE)
    reader.erase()
    assert client.post(link).status_code == 410
    assert not Feedback.objects.exists()


def test_the_signed_value_binds_reader_paper_and_direction(papers, reader, make_reader, gnn):
    other = make_reader(topics=[gnn])
    paper = papers["traffic"]
    values = {
        value_of(tokens.feedback_url(someone, paper_id, direction))
        for someone in (reader, other)
        for paper_id in (paper.id, papers["molecules"].id)
        for direction in ("more", "less")
    }
    assert len(values) == 8
    assert tokens.read_feedback(value_of(tokens.feedback_url(reader, paper.id, "less"))) == (reader, paper.id, "less")


# What feedback does to the ranking


def test_less_like_this_ranks_similar_papers_lower_in_the_next_digest(client, papers, reader):
    before = ranked(reader)
    show("Before", before)
    client.post(tokens.feedback_url(reader, papers["seen"].id, "less").removeprefix(SITE))
    after = ranked(reader)
    show(f"After “less like this” on “{papers['seen'].title}”", after)

    assert sorted(titles(after)) == sorted(titles(before))  # feedback reorders, it never adds or drops
    molecules = [papers["molecules"], papers["molecules 2"]]
    assert place(after, papers["molecules"]) > place(before, papers["molecules"])
    assert {pick.paper for pick in after[-2:]} == set(molecules)  # now below every paper unlike it
    # The papers like it lose much more than the rest, which share only "graph neural networks" with it.
    change = {
        name: after[place(after, paper)].score / before[place(before, paper)].score
        for name, paper in papers.items()
        if name != "seen"
    }
    assert max(change["molecules"], change["molecules 2"]) < min(
        change[name] for name in ("traffic", "traffic 2", "scaling", "recsys")
    )
    # And the real digest (same code as a send) says the same.
    assert [pick.paper.title for pick in build_preview(reader).picks] == titles(after)


def test_more_like_this_ranks_similar_papers_higher_in_the_next_digest(client, papers, reader):
    before = ranked(reader)
    show("Before", before)
    client.post(tokens.feedback_url(reader, papers["seen"].id, "more").removeprefix(SITE))
    after = ranked(reader)
    show(f"After “more like this” on “{papers['seen'].title}”", after)

    assert sorted(titles(after)) == sorted(titles(before))
    for name in ("molecules", "molecules 2"):
        assert place(after, papers[name]) < place(before, papers[name])
    # The nudge is bounded (FEEDBACK_WEIGHT): the best match before, on traffic, is passed by the molecules one only.
    assert titles(before)[0] == papers["traffic"].title
    assert titles(after)[:2] == [papers["molecules"].title, papers["traffic"].title]
    html, _text = send_digest()
    assert html.index(papers["molecules"].title) < html.index(papers["traffic"].title)


def test_feedback_nudges_at_most_its_weight_and_never_reaches_papers_the_topics_miss(papers, reader, make_paper):
    make_paper("Molecular property prediction for drug candidates", "Molecules and drug candidates.", upvotes=500)
    before = {pick.paper.id: pick.score for pick in ranked(reader)}
    reader_feedback.record(reader, papers["seen"], "more")
    after = {pick.paper.id: pick.score for pick in ranked(reader)}
    assert after.keys() == before.keys()
    for paper_id, score in before.items():
        assert score <= after[paper_id] <= score * (1 + FEEDBACK_WEIGHT) + 1e-6


def test_undo_in_the_preference_center_restores_the_original_ranking(papers, reader):
    client = Client(enforce_csrf_checks=True)
    before = ranked(reader)
    reader_feedback.record(reader, papers["seen"], "less")
    reader_feedback.record(reader, papers["scaling"], "more")
    assert titles(ranked(reader)) != titles(before)

    manage = tokens.manage_url(reader).removeprefix(SITE)
    page = client.get(manage).content.decode()
    assert "Your feedback" in page
    assert f"Less like this</strong>: {papers['seen'].title}" in page
    assert f"More like this</strong>: {papers['scaling'].title}" in page
    assert f'aria-label="Undo less like this: {papers["seen"].title}"' in page

    undo = f"{manage}feedback/undo/"
    csrf = client.cookies["csrftoken"].value
    for feedback in Feedback.objects.filter(subscriber=reader):
        response = client.post(undo, {"feedback": feedback.id, "csrfmiddlewaretoken": csrf})
        assert response.status_code == 302 and "notice=feedback-undone" in response["Location"]
    assert not Feedback.objects.exists()
    assert ranked(reader) == before
    assert "None yet" in client.get(manage).content.decode()


def test_undo_needs_the_readers_own_manage_link_and_their_own_feedback(client, papers, reader, make_reader, gnn):
    other = make_reader(topics=[gnn])
    feedback = reader_feedback.record(reader, papers["seen"], "less")
    other_undo = tokens.manage_url(other).removeprefix(SITE) + "feedback/undo/"
    assert client.post(other_undo, {"feedback": feedback.id}).status_code == 302
    assert client.get(tokens.manage_url(reader).removeprefix(SITE) + "feedback/undo/").status_code == 405
    assert client.post(f"/manage/{value_of(tokens.unsubscribe_url(reader))}/feedback/undo/").status_code == 400
    assert Feedback.objects.filter(id=feedback.id).exists()


def test_readers_without_feedback_are_ranked_exactly_as_before(papers, reader, make_reader, gnn):
    other = make_reader(topics=[gnn], papers_per_email=10)
    before = ranked(reader)
    reader_feedback.record(other, papers["seen"], "less")
    reader_feedback.record(other, papers["traffic"], "more")
    assert ranked(reader) == before
    assert ranked(other) != before
    # Both in one run, sharing the pool: each gets their own.
    now = timezone.now()
    pool, history = Pool.load(now), History.load([reader.id, other.id], now)
    topic_ids = {gnn.id}
    assert choose_papers(pool, reader, topic_ids, history) == before
    assert choose_papers(pool, other, topic_ids, history) == ranked(other)
    assert choose_papers(pool, reader, topic_ids, history) == before


def test_erasing_a_reader_deletes_their_feedback(papers, reader):
    reader_feedback.record(reader, papers["seen"], "less")
    reader.erase()
    assert not Feedback.objects.exists()


def _run_queries(make_reader, gnn, papers, count, *, with_feedback):
    for _ in range(count):
        someone = make_reader(topics=[gnn])
        if with_feedback:
            reader_feedback.record(someone, papers["seen"], "less")
            reader_feedback.record(someone, papers["traffic"], "more")
    with CaptureQueriesContext(connection) as queries:
        call_command("senddigests", "--now", "--no-progress")
    return len(queries)


@pytest.mark.parametrize("with_feedback", [False, True])
def test_a_run_costs_no_more_queries_per_reader_with_feedback(make_reader, gnn, papers, with_feedback):
    few = _run_queries(make_reader, gnn, papers, 2, with_feedback=with_feedback)
    many = _run_queries(make_reader, gnn, papers, 6, with_feedback=with_feedback)
    print(f"\nqueries with_feedback={with_feedback}: 2 readers {few}, 6 more readers {many}")
    # Each email's outcome is written as it is sent (README, "At most once"): one statement per reader, by design.
    # Nothing else may grow with the readers, feedback or not.
    assert many - 6 <= few - 2 + 2


def test_a_link_for_a_paper_deleted_since_is_refused_and_records_nothing(client, papers, reader):
    link = tokens.feedback_url(reader, papers["traffic"].id, "more").removeprefix(SITE)
    papers["traffic"].delete()
    response = client.post(link)
    assert response.status_code == 400 and b"This link does not work" in response.content
    assert not Feedback.objects.exists()
