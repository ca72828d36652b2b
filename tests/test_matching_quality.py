"""The matcher's ranking quality on the labelled set in bench/matching/ (see bench/matching_bench.py)."""

import json

from bench.matching_bench import DEFAULT_INTERESTS, DEFAULT_PAPERS, evaluate, load_papers


def test_mean_r_precision_on_the_labelled_set_stays_above_085():
    papers = load_papers(DEFAULT_PAPERS)
    interests = json.loads(DEFAULT_INTERESTS.read_text(encoding="utf-8"))
    assert len(papers) >= 80 and len(interests) >= 20

    result = evaluate(papers, interests, min_score=0.5)

    worst = sorted(result["per_interest"], key=lambda row: row["r_precision"])[:3]
    assert result["mean_r_precision"] >= 0.85, worst
    assert result["min_r_precision"] >= 0.5, worst
