"""The lexical matcher (papers/matching.py): words, phrases and abbreviations. These tests rank with the embeddings'
weight at 0, where every score is lexical; tests/test_embeddings.py covers the blend with meaning."""

import json

import pytest
from django.core.management import CommandError, call_command

from papers.matching import Index, Query, build_index
from papers.models import Paper, Topic


def make_paper(arxiv_id, title, abstract=""):
    paper = Paper(arxiv_id=arxiv_id, title=title, raw_title=title, abstract=abstract)
    paper.refresh_search_text()
    return paper


FILLER = [
    make_paper("2401.00901", "Scaling laws for sparse autoencoders", "We study how features generalize with scale."),
    make_paper("2401.00902", "A benchmark for tabular learning", "Gradient boosted trees generalize well on tables."),
    make_paper(
        "2401.00903", "Efficient attention kernels", "Faster attention on GPUs with tiling; results generalize."
    ),
    make_paper("2401.00904", "Protein folding with language", "We predict structures and show generalization."),
]


def ranked_ids(papers, interest, **kwargs):
    return [match.arxiv_id for match in lexical(papers).rank(Query.from_interest(interest), **kwargs)]


def lexical(papers):
    return Index(papers, semantic_weight=0.0)


def test_it_finds_word_forms_and_plurals():
    papers = [make_paper("2401.00001", "Learning robotic grasping from play"), *FILLER]
    assert ranked_ids(papers, "robotics")[:1] == ["2401.00001"]
    assert ranked_ids(papers, "Robot grasps")[:1] == ["2401.00001"]


def test_it_ranks_the_phrase_above_papers_that_only_share_a_word():
    dg = make_paper("2401.00002", "Invariant features", "A method for domain generalization across unseen domains.")
    both_words = make_paper("2401.00003", "Domain experts", "Each domain has an expert; the experts generalize.")
    ranking = ranked_ids([dg, both_words, *FILLER], "domain generalization")
    assert ranking[0] == "2401.00002"
    assert set(ranking[1:]) >= {"2401.00003"}


@pytest.mark.parametrize(
    ("interest", "title"),
    [
        ("GNN", "Message passing with graph neural networks"),
        ("graph neural networks", "A GNN for molecules"),
        ("LLMs", "Pretraining a large language model on code"),
        ("large language model", "Instruction-following LLMs"),
        ("VLM", "A vision-language model for charts"),
        ("ASR", "Robust automatic speech recognition"),
        ("speech recognition", "Multilingual ASR at scale"),
        ("MoE", "Sparse mixture-of-experts transformers"),
        ("RL", "Deep reinforcement learning for control"),
        ("OOD detection", "Energy scores for out-of-distribution detection"),
        ("NeRF", "Neural radiance fields for large scenes"),
        ("RAG", "Retrieval-augmented generation for open-domain questions"),
        ("retrieval augmented generation", "Better RAG with rerankers"),
    ],
)
def test_it_understands_the_fields_abbreviations_both_ways(interest, title):
    papers = [make_paper("2401.00010", title), *FILLER]
    assert ranked_ids(papers, interest)[:1] == ["2401.00010"]


def test_a_broader_abbreviation_finds_the_narrower_kind():
    papers = [make_paper("2401.00011", "Semi-supervised classification with graph convolutional networks"), *FILLER]
    assert ranked_ids(papers, "GNN") == ["2401.00011"]


def test_the_title_counts_more_than_the_abstract():
    in_title = make_paper("2401.00020", "Diffusion policies for manipulation", "We train a controller.")
    in_abstract = make_paper("2401.00021", "Learning to manipulate", "We train a controller with diffusion policies.")
    assert ranked_ids([in_abstract, in_title, *FILLER], "diffusion policy")[:2] == ["2401.00020", "2401.00021"]


def test_case_accents_and_markup_are_ignored():
    papers = [make_paper("2401.00030", r"Solving the Schr\"odinger equation with \textbf{neural} networks"), *FILLER]
    assert ranked_ids(papers, "SCHRÖDINGER")[:1] == ["2401.00030"]
    assert ranked_ids(papers, "schrodinger")[:1] == ["2401.00030"]


def test_scores_are_between_zero_and_one_and_unrelated_papers_do_not_match():
    papers = [make_paper("2401.00040", "Graph neural networks for molecules", "GNN message passing."), *FILLER]
    matches = lexical(papers).rank(Query.from_interest("graph neural networks"))
    assert matches[0].arxiv_id == "2401.00040"
    assert all(0 < match.score < 1 for match in matches)
    assert ranked_ids(papers, "graph neural networks", min_score=0.25) == ["2401.00040"]


def test_commas_separate_alternatives():
    papers = [make_paper("2401.00050", "Speech synthesis in many voices"), make_paper("2401.00051", "GNN pruning")]
    assert set(ranked_ids(papers + FILLER, "text to speech, graph neural networks")) == {"2401.00050", "2401.00051"}


def test_a_topic_matches_through_its_aliases_and_description():
    topic = Topic(name="Graph learning", slug="graph-learning", aliases="GNN\nmessage passing", description="Graphs.")
    papers = [make_paper("2401.00060", "Scalable message passing on huge graphs"), *FILLER]
    assert [m.arxiv_id for m in lexical(papers).rank(Query.from_topic(topic), min_score=0.25)] == ["2401.00060"]


@pytest.mark.django_db
def test_matchpapers_prints_json_best_first(capsys):
    for paper in [make_paper("2401.00070", "Networks of graphs in theory"), make_paper("2401.00071", "GNN theory")]:
        paper.save()
    call_command("matchpapers", "graph neural networks", "--json", "--min-score", "0")
    rows = json.loads(capsys.readouterr().out)
    assert [row["arxiv_id"] for row in rows] == ["2401.00071", "2401.00070"]
    assert set(rows[0]) == {"arxiv_id", "title", "score"}
    assert rows[0]["score"] >= rows[1]["score"]


@pytest.mark.django_db
def test_matchpapers_ranks_for_a_topic(capsys):
    Paper.objects.create(arxiv_id="2401.00080", title="Whisper-style ASR", raw_title="Whisper-style ASR")
    Paper.objects.create(arxiv_id="2401.00081", title="Protein design", raw_title="Protein design")
    Topic.objects.create(name="Speech", slug="speech", aliases="speech recognition\nTTS")
    call_command("matchpapers", "--topic", "speech", "--json")
    assert [row["arxiv_id"] for row in json.loads(capsys.readouterr().out)] == ["2401.00080"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Give exactly one of"),
        (["GNN", "--topic", "x"], "Give exactly one of"),
        (["--topic", "nope"], "No topic with slug 'nope'"),
        (["the of and"], "no searchable words"),
        (["GNN", "--limit", "0"], "--limit must be at least 1"),
    ],
)
def test_matchpapers_rejects_bad_input_with_exit_code_2(args, message):
    with pytest.raises(CommandError, match=message) as raised:
        call_command("matchpapers", *args)
    assert raised.value.returncode == 2


@pytest.mark.django_db
def test_matchpapers_says_when_nothing_is_stored(capsys):
    call_command("matchpapers", "GNN")
    assert "No papers stored yet" in capsys.readouterr().out


@pytest.mark.django_db
def test_the_index_reads_stored_papers_in_a_stable_order():
    for arxiv_id in ["2401.00093", "2401.00091", "2401.00092"]:
        Paper.objects.create(arxiv_id=arxiv_id, title="Graph neural networks", raw_title="Graph neural networks")
    matches = build_index().rank(Query.from_interest("GNN"))
    # Equal scores fall back to arXiv id, so SQLite and PostgreSQL print the same list.
    assert [m.arxiv_id for m in matches] == ["2401.00091", "2401.00092", "2401.00093"]


def test_why_quotes_the_readers_words_as_written_and_a_phrase_covers_its_words():
    papers = [
        make_paper("2401.00070", "Sparse mixture of experts layers", "Routing tokens to experts."),
        make_paper("2401.00071", "Protein folding at scale", "Folding proteins with protein language models."),
        *FILLER,
    ]
    index = lexical(papers)
    assert index.explain(Query.from_interest("Mixture-of-Experts"), 0) == "about “Mixture-of-Experts”"
    assert index.explain(Query.from_interest("Protein Folding"), 1) == "mentions “Protein Folding”"


def test_each_subject_of_a_readers_words_is_held_to_its_own_bar():
    papers = [
        make_paper("2401.00080", "Graph neural networks for graphs", "Graph neural networks on large graphs."),
        make_paper("2401.00081", "A study of voices", "We improve speech recognition a little."),
        *FILLER,
    ]
    index = lexical(papers)
    query = Query.from_interest("graph neural networks and speech recognition")
    assert set(index.matches(query, min_score=0.0, relative=0.75)) == {0, 1}
    # Held to the stronger subject's bar, the speech paper would be lost; a topic's aliases share one bar.
    query.separate = False
    assert set(index.matches(query, min_score=0.0, relative=0.75)) == {0}


DRIVING = [
    make_paper("2401.00090", "Planning for self-driving cars", "A planner for driving in dense city traffic."),
    make_paper("2401.00091", "End-to-end driving with world models", "Driving policies learned from video."),
]


def test_a_misspelt_word_is_read_as_the_word_the_papers_use():
    papers = [*DRIVING, *FILLER]
    index = lexical(papers)
    spelt = index.rank(Query.from_interest("self driving cars"))
    misspelt = index.rank(Query.from_interest("self drving cars"))
    assert [(m.arxiv_id, m.score) for m in misspelt] == [(m.arxiv_id, m.score) for m in spelt]
    assert [m.arxiv_id for m in misspelt[:2]] == ["2401.00090", "2401.00091"]
    matched = index.matches(Query.from_interest("self drving cars"))
    assert 0 in matched
    assert matched == index.matches(Query.from_interest("self driving cars"))
    assert "“driving”" in index.explain(Query.from_interest("self drving cars"), 1)


def test_a_real_word_or_a_short_one_is_never_respelled():
    # "Turing" is a word of its own, one letter from "tuning"; "LoRa" is too short to tell from "Lora" or "loss".
    papers = [
        make_paper("2401.00092", "Tuning learning rates", "Tuning schedules."),
        make_paper("2401.00093", "Instruction tuning at scale", "Tuning on instructions."),
        make_paper("2401.00094", "Low loss", "Loss landscapes and lose ends."),
        *FILLER,
    ]
    assert ranked_ids(papers, "Turing test") == []
    assert ranked_ids(papers, "lose") == ["2401.00094"]
    assert ranked_ids(papers, "loxs") == []


def test_a_word_longer_than_any_a_reader_misspells_is_not_searched():
    long_word = "electroencephalographically"  # 27 letters
    papers = [make_paper(f"2401.0010{n}", f"Read {long_word}", f"Measured {long_word}.") for n in range(3)]
    assert ranked_ids([*papers, *FILLER], long_word)[:3] == ["2401.00100", "2401.00101", "2401.00102"]
    assert ranked_ids([*papers, *FILLER], long_word.replace("ly", "y")) == []


def test_a_word_one_letter_from_a_word_only_one_paper_uses_is_not_respelled():
    papers = [DRIVING[0], *FILLER]
    assert ranked_ids(papers, "drving") == []
