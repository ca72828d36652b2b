""" "More / less like this": the personal model a reader's feedback fits once there is enough of it
(papers.ranking.fit_preference), seen through the digest they are sent.

Run with -s to see the rankings with and without the model.
"""

import email
from datetime import timedelta
from email import policy

import numpy as np
import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from digest import feedback as reader_feedback
from digest.previews import build_preview
from digest.selection import FeedbackPaper, History, choose_papers
from papers import ranking
from papers.ranking import Pool
from tests.test_feedback import ranked, show, titles


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel("2026-11-30 09:00Z", tick=False):
        yield


@pytest.fixture(autouse=True)
def outbox(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def gnn(make_topic):
    return make_topic("Graph neural networks", aliases=["GNN"])


@pytest.fixture
def clicked(make_paper):
    """Papers of earlier digests the reader gave feedback on: GNNs for molecules ("more"), for traffic ("less").

    Most are older than the pool (papers.ranking loads their stored vectors); one is in the pool but older than the
    reader's window, so it is not a candidate itself."""
    month_ago = timezone.now() - timedelta(days=30)
    last_week = timezone.now() - timedelta(days=5)
    more = [
        make_paper(
            "Graph neural networks for molecular property prediction",
            "We predict properties of molecules and drug candidates with a GNN over molecular graphs.",
            first_seen_at=month_ago,
        ),
        make_paper(
            "Message passing networks on molecular graphs for drug design",
            "Atoms are nodes and chemical bonds are edges; the network proposes drug-like molecules.",
            first_seen_at=month_ago,
        ),
        make_paper(
            "Equivariant graph neural networks for protein ligand binding",
            "A GNN over the 3D structure of a protein and a small molecule predicts binding affinity.",
            first_seen_at=month_ago,
        ),
    ]
    less = [
        make_paper(
            "Graph neural networks for traffic forecasting on road networks",
            "Road sensors are nodes; a spatio-temporal GNN predicts traffic speed an hour ahead.",
            first_seen_at=month_ago,
        ),
        make_paper(
            "Spatio-temporal graph networks for urban traffic flow",
            "We forecast traffic flow at city intersections with graph convolutions over the road graph.",
            first_seen_at=month_ago,
        ),
        make_paper(
            "Traffic speed prediction with graph convolutional networks",
            "A GCN over loop detectors on highways predicts congestion and travel times.",
            first_seen_at=last_week,
        ),
    ]
    return {"more": more, "less": less}


@pytest.fixture
def today(make_paper):
    """Today's GNN papers: the traffic ones much upvoted, the molecule ones barely."""
    return {
        "molecules": make_paper(
            "Graph neural networks for molecule generation",
            "A GNN generates new molecules atom by atom for drug discovery.",
            upvotes=3,
        ),
        "molecules 2": make_paper(
            "Predicting drug toxicity from molecular graphs with a GNN",
            "Graph neural networks over molecules predict the toxicity of drug candidates.",
            upvotes=5,
        ),
        "traffic": make_paper(
            "Graph neural networks for traffic flow forecasting in cities",
            "A GNN over the road network forecasts traffic flow and congestion.",
            upvotes=90,
        ),
        "traffic 2": make_paper(
            "Road traffic prediction with spatio-temporal graph neural networks",
            "Traffic speed prediction on road sensor graphs with a GNN.",
            upvotes=70,
        ),
        "scaling": make_paper(
            "Scaling graph neural network training on many GPUs",
            "Distributed GNN training partitions large graphs across machines.",
            upvotes=30,
        ),
    }


@pytest.fixture
def reader(make_reader, gnn):
    return make_reader("ada@example.com", topics=[gnn], papers_per_email=10)


def give_feedback(reader, clicked, more=3, less=3):
    for paper in clicked["more"][:more]:
        reader_feedback.record(reader, paper, "more")
    for paper in clicked["less"][:less]:
        reader_feedback.record(reader, paper, "less")


def in_order(message, papers):
    """The papers' titles in the order the email's HTML shows them."""
    parsed = email.message_from_bytes(message.message().as_bytes(), policy=policy.default)
    html = parsed.get_body(("html",)).get_content()
    return sorted((paper.title for paper in papers.values() if paper.title in html), key=html.index)


def emailed_titles(papers):
    """The papers' titles in the order the digest email shows them, through `senddigests` as a run sends it."""
    call_command("senddigests", "--now", "--no-progress")
    [message] = mail.outbox
    return in_order(message, papers)


@pytest.fixture
def without_model(monkeypatch):
    """Today's rule whatever the feedback: the model's threshold out of reach."""

    def switch_off():
        monkeypatch.setattr(ranking, "FEEDBACK_MODEL_MIN_CLICKS", 10**6)

    return switch_off


def test_enough_feedback_puts_papers_like_the_more_ones_first_in_the_email(reader, clicked, today, monkeypatch):
    before = titles(ranked(reader))
    give_feedback(reader, clicked)
    with monkeypatch.context() as patch:
        patch.setattr(ranking, "FEEDBACK_MODEL_MIN_CLICKS", 10**6)  # today's rule whatever the feedback
        show("The same feedback, bounded nudge only", ranked(reader))
        bounded = in_order(build_preview(reader).message, today)  # what a send would show (digest.compose)
    show("With the personal model", ranked(reader))
    after = emailed_titles(today)
    print("\nemail before:", before, "\nbounded only:", bounded, "\nemail after: ", after)

    molecules = {today["molecules"].title, today["molecules 2"].title}
    traffic = {today["traffic"].title, today["traffic 2"].title}
    assert sorted(after) == sorted(before)  # reordered: nothing added, nothing dropped
    assert set(after[:2]) == molecules  # barely upvoted, yet first: like the papers the reader wanted more of
    assert set(after[-2:]) == traffic  # the most upvoted, yet last: like the papers they wanted less of
    assert before[0] in traffic  # without feedback, trending puts traffic first
    # Today's bounded nudge (at most 30 %) does not overcome the upvotes: the model is what reorders.
    assert not set(bounded[:2]) & molecules


def test_the_model_is_fitted_once_per_reader_and_its_probabilities_order_the_candidates(
    reader, clicked, today, monkeypatch
):
    fits = []
    fit = ranking.fit_preference
    monkeypatch.setattr(ranking, "fit_preference", lambda *args, **kwargs: fits.append(args) or fit(*args, **kwargs))
    give_feedback(reader, clicked)
    picks = ranked(reader)
    [(vectors, liked)] = fits
    assert len(vectors) == 6 and sorted(liked) == [False] * 3 + [True] * 3
    # Each score is the blended score times model_factor, which stays within (1 - w, 1 + w).
    before = {pick.paper.id: pick.score for pick in choose_papers(*_no_feedback(reader))}
    weight = ranking.FEEDBACK_MODEL_WEIGHT
    for pick in picks:
        assert before[pick.paper.id] * (1 - weight) - 1e-6 <= pick.score <= before[pick.paper.id] * (1 + weight) + 1e-6
    change = {name: _score(picks, paper) / before[paper.id] for name, paper in today.items()}
    assert min(change["molecules"], change["molecules 2"]) > 1 > max(change["traffic"], change["traffic 2"])


def _no_feedback(reader):
    now = timezone.now()
    history = History.load([reader.id], now)
    history.feedback = {}
    return Pool.load(now), reader, set(reader.topics.values_list("id", flat=True)), history


def _score(picks, paper):
    return next(pick.score for pick in picks if pick.paper == paper)


@pytest.mark.parametrize(
    ("more", "less"),
    [(3, 2), (2, 1), (3, 0), (1, 3)],
    ids=["five-clicks", "three-clicks", "no-less", "one-more"],
)
def test_with_too_little_feedback_the_ranking_is_exactly_todays(
    reader, clicked, today, monkeypatch, without_model, more, less
):
    give_feedback(reader, clicked, more=more, less=less)
    now = timezone.now()
    topic_ids = {topic.id for topic in reader.topics.all()}
    history = History.load([reader.id], now)
    pool = Pool.load(now)
    feedback = history.feedback[reader.id]
    # Today's rule, written out: the best blended score over the reader's topics, times `factor`.
    more_similar = [pool._similar(item) for item in feedback if item.direction == "more"]
    less_similar = [pool._similar(item) for item in feedback if item.direction == "less"]
    plain = choose_papers(*_no_feedback(reader))
    expected = sorted(
        (pick.paper.title for pick in plain),
        key=lambda title: (
            -round(
                _score(plain, _paper(today, title)) * ranking.factor(_doc(pool, title), more_similar, less_similar), 6
            )
        ),
    )

    def refuse(*args, **kwargs):
        raise AssertionError("no model with this little feedback")

    monkeypatch.setattr(ranking, "fit_preference", refuse)
    picks = choose_papers(pool, reader, topic_ids, history)
    assert titles(picks) == expected
    without_model()
    assert choose_papers(Pool.load(now), reader, topic_ids, History.load([reader.id], now)) == picks
    assert emailed_titles(today) == expected


def _paper(papers, title):
    return next(paper for paper in papers.values() if paper.title == title)


def _doc(pool, title):
    return next(doc for doc, paper in enumerate(pool.papers) if paper.title == title)


def test_the_model_never_adds_a_paper_the_readers_topics_did_not_match(reader, clicked, today, make_paper):
    # Today's papers most like what the reader wanted more of, but not about graph neural networks.
    unmatched = [
        make_paper(
            "Molecular property prediction for drug candidates",
            "Predicting the properties of molecules and drug candidates.",
            upvotes=500,
        ),
        make_paper("Protein ligand binding affinity", "Binding of small molecules to proteins.", upvotes=300),
    ]
    before = ranked(reader)
    give_feedback(reader, clicked)
    after = ranked(reader)
    assert sorted(titles(after)) == sorted(titles(before))  # reordered, nothing added or dropped
    assert titles(after) != titles(before)
    assert not {paper.title for paper in unmatched} & set(titles(after))
    # The model does rate them as liked: they are left out because they did not match, not because it disliked them.
    pool = Pool.load(timezone.now())
    model = pool.feedback_model(History.load([reader.id], timezone.now()).feedback[reader.id])
    docs = [_doc(pool, paper.title) for paper in unmatched]
    assert (ranking.preference(model, pool.index.vectors[docs]) > 0.5).all()


def test_a_feedback_paper_deleted_after_the_history_was_read_is_left_out_of_the_model(reader, clicked, today):
    give_feedback(reader, clicked, more=3, less=3)
    feedback = History.load([reader.id], timezone.now()).feedback[reader.id]
    assert Pool.load(timezone.now()).feedback_model(feedback) is not None
    clicked["less"][0].delete()
    pool = Pool.load(timezone.now())
    assert len(pool.feedback_vectors(item.paper_id for item in feedback)) == 5
    assert pool.feedback_model(feedback) is None  # five clicks left: not enough for a model


def _run_queries(make_reader, make_paper, gnn, count):
    """The queries of a run for `count` new readers, each with feedback of their own on papers older than the pool."""
    month_ago = timezone.now() - timedelta(days=30)
    for _ in range(count):
        reader = make_reader(topics=[gnn])
        for number, (subject, direction) in enumerate([("molecules", "more")] * 3 + [("road traffic", "less")] * 3):
            paper = make_paper(f"Graph neural networks for {subject}, part {number}", first_seen_at=month_ago)
            reader_feedback.record(reader, paper, direction)
    mail.outbox.clear()
    with CaptureQueriesContext(connection) as queries:
        call_command("senddigests", "--now", "--no-progress")
    assert len(mail.outbox) == count
    return len(queries)


def test_a_run_loads_the_feedback_papers_once_per_chunk_not_per_reader(make_reader, make_paper, gnn, today):
    few = _run_queries(make_reader, make_paper, gnn, 2)
    many = _run_queries(make_reader, make_paper, gnn, 6)
    print(f"\nqueries: 2 readers {few}, 6 more readers {many}")
    # One outcome written per email (test_feedback.py says why); nothing else grows with the readers.
    assert many - 6 <= few - 2 + 2


def test_fit_preference_finds_the_penalised_optimum():
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(9, 32)) + 1.5
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    liked = np.array([1, 1, 0, 0, 0, 1, 0, 0, 0], dtype=bool)
    l2 = 0.03
    weights, bias = ranking.fit_preference(vectors, liked, l2)
    p = ranking.preference((weights, bias), vectors)
    share = np.where(liked, 1 / (2 * liked.sum()), 1 / (2 * (~liked).sum()))
    # The gradient of the penalised, balanced log-loss vanishes: for the weights and for the (unpenalised) bias.
    assert np.abs(vectors.T @ (share * (p - liked)) + l2 * weights).max() < 1e-8
    assert abs((share * (p - liked)).sum()) < 1e-8
    assert (p[liked] > 0.5).all() and (p[~liked] < 0.5).all()
    assert ranking.model_factor(1.0) == pytest.approx(1 + ranking.FEEDBACK_MODEL_WEIGHT)
    assert ranking.model_factor(0.5) == 1


@pytest.mark.parametrize(
    ("directions", "enough"),
    [("mmmlll", True), ("mmllll", True), ("mmmmml", False), ("mmmll", False), ("mmmmmmmm", False), ("", False)],
)
def test_how_much_feedback_is_enough(directions, enough):
    feedback = [
        FeedbackPaper(number, "A paper", (), "more" if d == "m" else "less") for number, d in enumerate(directions)
    ]
    assert ranking.has_enough_feedback(feedback) is enough
