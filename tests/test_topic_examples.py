"""Editors correct a topic (papers.models.TopicExample): on the topic's admin page, "Not this topic" / "Belongs here"
on a shown paper, or a paper named by arXiv id, change what the topic matches: in the admin's preview, on the public
topic pages and in the next digests."""

import json
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from lxml import html

from digest.selection import History, choose_papers
from papers.matching import Example, Index, Query, topic_examples
from papers.models import Paper, Topic, TopicExample
from papers.ranking import Pool, Preferences

SAMPLE = Path(__file__).resolve().parent.parent / "papers/sample_data"


@pytest.fixture
def gnn(make_topic):
    return make_topic("Graph neural networks", aliases=["GNN", "message passing"])


@pytest.fixture
def papers(frozen_clock, make_paper):
    return {
        "molecules": make_paper("Graph neural networks for molecules", "A GNN with message passing on molecules."),
        "counting": make_paper("A GNN that counts substructures", "Message passing that counts cycles."),
        "speech": make_paper("Speech recognition in noisy rooms", "Robust ASR with beamforming."),
    }


def change_url(topic):
    return f"/admin/papers/topic/{topic.pk}/change/"


def examples_url(topic):
    return f"/admin/papers/topic/{topic.pk}/examples/"


def preview_titles(client, topic):
    """The titles the topic's admin page lists under "Papers it matches today"."""
    tree = html.fromstring(client.get(change_url(topic)).content)
    return [link.text_content() for link in tree.cssselect("#matches ol > li > a")]


def mark(client, topic, paper, belongs):
    return client.post(examples_url(topic), {"paper": paper.pk, "belongs": "yes" if belongs else "no"})


def messages_of(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


def topic_page_titles(client, topic):
    day = timezone.now().astimezone(UTC).date()
    tree = html.fromstring(client.get(f"/topics/{topic.slug}/{day.isoformat()}/").content)
    return [link.text_content() for link in tree.cssselect("ol.papers > li > h2 > a")]


def digest_titles(make_reader, topic):
    """What the next digest of a reader of `topic` would pick, as a run picks it."""
    reader = make_reader(topics=[topic])
    now = timezone.now()
    picks = choose_papers(Pool.load(now), reader, {topic.id}, History.load([reader.id], now))
    return [pick.paper.title for pick in picks]


# ---------------------------------------------------------------------------------------------------------------------
# The buttons on the topic's admin page


def test_not_this_topic_takes_a_shown_paper_out_of_the_preview_the_topic_page_and_the_digest(
    admin_client, client, make_reader, gnn, papers, admin_user
):
    counting = papers["counting"]
    assert counting.title in preview_titles(admin_client, gnn)
    assert counting.title in topic_page_titles(client, gnn)  # now cached for the day
    assert counting.title in digest_titles(make_reader, gnn)

    response = mark(admin_client, gnn, counting, belongs=False)

    assert response.status_code == 302 and response["Location"] == change_url(gnn) + "#matches"
    example = TopicExample.objects.get()
    assert (example.topic, example.paper, example.belongs, example.created_by) == (gnn, counting, False, admin_user)
    assert messages_of(response) == [
        f"Marked “{counting.title}” ({counting.arxiv_id}) as not this topic. The preview below uses it now; digests, "
        "topic pages and feeds from their next run."
    ]
    assert preview_titles(admin_client, gnn) == [papers["molecules"].title]
    assert topic_page_titles(client, gnn) == [papers["molecules"].title]
    assert digest_titles(make_reader, gnn) == [papers["molecules"].title]


def test_belongs_here_brings_in_a_paper_the_topic_missed_and_says_why(admin_client, client, make_reader, gnn, papers):
    speech = papers["speech"]
    assert speech.title not in preview_titles(admin_client, gnn)

    mark(admin_client, gnn, speech, belongs=True)

    page = admin_client.get(change_url(gnn)).content.decode()
    assert speech.title in preview_titles(admin_client, gnn)
    assert "marked as belonging here by an editor" in page
    assert speech.title in topic_page_titles(client, gnn)
    assert speech.title in digest_titles(make_reader, gnn)
    picks = Pool.load(timezone.now()).choose(Preferences((gnn.id,), ()), since=timezone.now() - timedelta(days=1))
    assert [pick.reasons for pick in picks if pick.paper == speech] == [("marked as belonging here by an editor",)]


def test_marking_again_changes_the_verdict_and_the_inline_lists_and_deletes_examples(admin_client, gnn, papers):
    speech = papers["speech"]
    mark(admin_client, gnn, speech, belongs=True)
    mark(admin_client, gnn, speech, belongs=False)
    assert list(TopicExample.objects.values_list("paper", "belongs")) == [(speech.pk, False)]

    page = admin_client.get(change_url(gnn))
    tree = html.fromstring(page.content)
    [row] = tree.cssselect("#examples-group tbody tr.has_original")
    assert speech.arxiv_id in row.text_content() and "Not this topic" in row.text_content()
    assert (
        "Marked " + speech.arxiv_id + " as not this topic."
        in admin_client.get(f"/admin/papers/topic/{gnn.pk}/history/").content.decode()
    )

    example = TopicExample.objects.get()
    data = {
        "name": gnn.name, "slug": gnn.slug, "description": "", "aliases": gnn.aliases, "is_active": "on",
        "display_order": "100", "examples-TOTAL_FORMS": "1", "examples-INITIAL_FORMS": "1",
        "examples-MIN_NUM_FORMS": "0", "examples-MAX_NUM_FORMS": "1000",
        "examples-0-id": str(example.pk), "examples-0-topic": str(gnn.pk), "examples-0-DELETE": "on",
    }  # fmt: skip
    assert admin_client.post(change_url(gnn), data).status_code == 302
    assert not TopicExample.objects.exists()


def test_a_belongs_here_example_is_added_by_arxiv_id_or_link(admin_client, gnn, make_paper):
    old = make_paper("Speech recognition for meetings", first_seen_at=timezone.now() - timedelta(days=9))

    response = admin_client.post(
        examples_url(gnn), {"arxiv_id": f" https://arxiv.org/abs/{old.arxiv_id}v2 ", "belongs": "yes"}
    )

    assert response.status_code == 302
    assert list(TopicExample.objects.values_list("paper", "belongs")) == [(old.pk, True)]
    assert messages_of(response)[0].startswith(f"Marked “{old.title}” ({old.arxiv_id}) as belonging here.")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"arxiv_id": "2401.99999", "belongs": "yes"}, "No paper 2401.99999 is stored yet: import or fetch it first"),
        ({"arxiv_id": "not an id", "belongs": "yes"}, "“not an id” is not an arXiv id like 2401.04088."),
        ({"arxiv_id": "", "belongs": "yes"}, "Give the arXiv id of a paper that belongs here"),
        ({"paper": "12abc", "belongs": "no"}, "“12abc” is not a paper id."),
        ({"paper": "-1", "belongs": "no"}, "“-1” is not a paper id."),
        ({"paper": "999999", "belongs": "no"}, "There is no paper with id 999999."),
        ({"paper": "9" * 30, "belongs": "no"}, "There is no paper with id 999999999"),
        ({"paper": "١٢", "belongs": "no"}, "“١٢” is not a paper id."),
        ({"paper": "{paper}", "belongs": "maybe"}, "Choose “Not this topic” or “Belongs here”."),
        ({"paper": "{paper}"}, "Choose “Not this topic” or “Belongs here”."),
    ],
)
def test_bad_input_gives_a_message_not_an_error(admin_client, gnn, papers, data, message):
    data = {name: value.format(paper=papers["speech"].pk) for name, value in data.items()}
    response = admin_client.post(examples_url(gnn), data)
    assert response.status_code == 302 and response["Location"] == change_url(gnn) + "#matches"
    [said] = messages_of(response)
    assert said.startswith(message)
    assert not TopicExample.objects.exists()


def test_an_unknown_topic_is_not_found_and_a_get_changes_nothing(admin_client, gnn, papers):
    assert (
        admin_client.post(
            "/admin/papers/topic/999999/examples/", {"paper": papers["speech"].pk, "belongs": "no"}
        ).status_code
        == 404
    )
    assert admin_client.get(examples_url(gnn), {"paper": papers["speech"].pk, "belongs": "no"}).status_code == 405
    assert not TopicExample.objects.exists()


# ---------------------------------------------------------------------------------------------------------------------
# Who may mark


@pytest.fixture
def staff(django_user_model):
    def make(*codenames):
        user = django_user_model.objects.create_user(
            f"staff-{'-'.join(codenames)}", "s@example.org", "pw", is_staff=True
        )
        user.user_permissions.add(*Permission.objects.filter(content_type__app_label="papers", codename__in=codenames))
        return user

    return make


def test_staff_who_may_only_view_topics_see_the_preview_without_buttons_and_get_403(client, staff, gnn, papers):
    client.force_login(staff("view_topic"))
    page = client.get(change_url(gnn)).content.decode()
    assert papers["counting"].title in page
    assert "Not this topic" not in page and "Belongs here" not in page and 'name="arxiv_id"' not in page

    assert client.post(examples_url(gnn), {"paper": papers["counting"].pk, "belongs": "no"}).status_code == 403
    assert client.post(examples_url(gnn), {"arxiv_id": papers["speech"].arxiv_id, "belongs": "yes"}).status_code == 403
    assert not TopicExample.objects.exists()


def test_staff_who_may_change_topics_mark_papers(client, staff, gnn, papers):
    client.force_login(staff("view_topic", "change_topic"))
    assert "Not this topic" in client.get(change_url(gnn)).content.decode()
    assert mark(client, gnn, papers["counting"], belongs=False).status_code == 302
    assert TopicExample.objects.filter(paper=papers["counting"], belongs=False).exists()


def test_readers_and_strangers_are_sent_to_the_login_page(client, django_user_model, gnn, papers):
    for user in [None, django_user_model.objects.create_user("reader", "r@example.org", "pw")]:
        if user:
            client.force_login(user)
        response = mark(client, gnn, papers["counting"], belongs=False)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert not TopicExample.objects.exists()


def test_the_buttons_need_the_csrf_token(gnn, papers, admin_user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert mark(client, gnn, papers["counting"], belongs=False).status_code == 403
    assert not TopicExample.objects.exists()


# ---------------------------------------------------------------------------------------------------------------------
# Examples reach similar papers, through the embeddings


@pytest.fixture
def sample_papers(db):
    call_command("importpapers", str(SAMPLE / "papers.json"), "--no-progress")
    return {paper.title: paper for paper in Paper.objects.all()}


@pytest.fixture
def llm(db):
    [item] = [t for t in json.loads((SAMPLE / "topics.json").read_text()) if t["slug"] == "large-language-models"]
    return Topic.objects.create(**{**item, "aliases": "\n".join(item["aliases"])})


COT = "Chain-of-Thought Prompting Elicits Reasoning in Large Language Models"
ZERO_SHOT = "Large Language Models are Zero-Shot Reasoners"


def test_a_paper_much_like_one_marked_not_this_topic_drops_too(admin_client, llm, sample_papers):
    # Both say "large language models" in their title; what they are about is prompting for reasoning.
    assert {COT, ZERO_SHOT} <= set(preview_titles(admin_client, llm))

    before = preview_titles(admin_client, llm)
    mark(admin_client, llm, sample_papers[COT], belongs=False)

    shown = preview_titles(admin_client, llm)
    assert COT not in shown and ZERO_SHOT not in shown
    assert len(shown) >= len(before) - 2  # the rest of the topic is still there


def test_a_paper_much_like_a_positive_example_is_lifted_and_says_so(sample_papers):
    papers = list(sample_papers.values())
    index = Index(papers)
    topic = Topic(name="Diffusion and image generation", aliases="text-to-image\nimage synthesis")
    before = index.score(Query.from_topic(topic))
    query = Query.from_topic(topic, [Example(sample_papers[COT], True)])
    after = index.score(query)
    zero_shot = index.doc_of(sample_papers[ZERO_SHOT].arxiv_id)

    assert after[index.doc_of(sample_papers[COT].arxiv_id)] == 1.0
    assert after[zero_shot] > before.get(zero_shot, 0.0) + 0.05
    assert "close to “Chain-of-Thought Prompting Elicits Reasoning in Large …”" in index.explain(query, zero_shot)
    # Papers unlike the example barely move: only through the topic's best matches, which the example joins.
    unlike = index.doc_of(sample_papers["Attention Is All You Need"].arxiv_id)
    assert abs(after.get(unlike, 0.0) - before.get(unlike, 0.0)) < 0.02


def test_at_weight_zero_only_the_marked_papers_change(sample_papers):
    papers = list(sample_papers.values())
    index = Index(papers, semantic_weight=0)
    topic = Topic(name="Large language models", aliases="LLM")
    before = index.score(Query.from_topic(topic))
    after = index.score(Query.from_topic(topic, [Example(sample_papers[COT], False)]))
    assert after == {doc: score for doc, score in before.items() if papers[doc].title != COT}
    assert index._rows is None  # nothing of the embeddings was loaded


# ---------------------------------------------------------------------------------------------------------------------
# Loading


def test_a_pool_reads_every_topics_examples_in_one_query(make_topic, gnn, papers):
    other = make_topic("Speech", aliases=["ASR"])
    TopicExample.objects.create(topic=gnn, paper=papers["counting"], belongs=False)
    TopicExample.objects.create(topic=other, paper=papers["molecules"], belongs=True)
    pool = Pool.load(timezone.now())
    since = timezone.now() - timedelta(days=1)

    with CaptureQueriesContext(connection) as queries:
        for topic_ids in [(gnn.id,), (other.id,), (gnn.id, other.id)]:
            pool.choose(Preferences(topic_ids, ()), since=since)

    assert sum("topicexample" in query["sql"] for query in queries) == 1
    assert [p.paper for p in pool.choose(Preferences((other.id,), ()), since=since)][0] == papers["molecules"]
    assert papers["counting"] not in [p.paper for p in pool.choose(Preferences((gnn.id,), ()), since=since)]


def test_topic_examples_groups_them_by_topic(gnn, papers):
    TopicExample.objects.create(topic=gnn, paper=papers["speech"], belongs=True)
    assert topic_examples([gnn.id]) == {gnn.id: [Example(papers["speech"], True)]}
    assert topic_examples([]) == {}


def test_matchpapers_honours_a_topics_examples(gnn, papers, capsys):
    TopicExample.objects.create(topic=gnn, paper=papers["counting"], belongs=False)
    TopicExample.objects.create(topic=gnn, paper=papers["speech"], belongs=True)
    call_command("matchpapers", "--topic", gnn.slug, "--json")
    ids = [row["arxiv_id"] for row in json.loads(capsys.readouterr().out)]
    assert ids == [papers["speech"].arxiv_id, papers["molecules"].arxiv_id]
