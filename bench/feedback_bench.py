#!/usr/bin/env python
"""Does "more / less like this" feedback rank a reader's papers better? Simulated readers on the labelled set.

    python bench/feedback_bench.py [--repeats 20] [--seed 20261204] [--candidates 40] [--days 3] [--shown 10]
                                   [--more-rate 0.8] [--less-rate 0.4] [--noise 0.1] [--heldout-share 0.5]
                                   [--part dev heldout] [--grid]

Prints one JSON object. The pool is the 403 papers of bench/matching/labelled/README.md (papers.json there,
papers/sample_data/papers.json and bench/matching/papers.json), indexed once with the settings' matcher (lexical
blended with the static embeddings). Each interest of interests_dev.json and interests_heldout.json is one reader:

* Candidates: the top --candidates papers the matcher ranks for the interest (`Index.score`); a candidate's base
  score is its relevance (the bench has no trending: the labelled papers' dates say nothing about one run's day).
* What the reader saw: the candidates split at random into --days days, the top --shown of each day by base score.
* Clicks: on a paper they saw, "more" with probability --more-rate if it is relevant to the interest, "less" with
  probability --less-rate if it is not; each click's direction is flipped with probability --noise (label noise).
* The clicks are split once, at random (--heldout-share of them held out), into training clicks, which are the
  reader's feedback, and held-out clicks, which are what the ranking is judged on.

For each reader with at least one "more" and one "less" among their held-out clicks it measures the AUC: the share of
(held-out "more", held-out "less") pairs the ranking puts in that order, ties counting half (`clicks`), and the same
for the held-out clicked papers' true labels, relevant above not relevant, where the clicks' noise does not blur it
(`labels`). The rankings of the held-out clicked papers, each from the training clicks alone:

* `none`: the base score (no feedback);
* `bounded`: the base score × papers.ranking.factor, today's nudge from similarity to the feedback papers' titles;
* `model`: the product's rule: the personal model (papers.ranking.fit_preference; base × model_factor) once the
  training clicks reach FEEDBACK_MODEL_MIN_CLICKS with FEEDBACK_MODEL_MIN_EACH of each kind, `bounded` below that;
* `model_alone`, for reference: the model's probability alone, without the base score (`bounded` where not fitted).

Each reader is simulated --repeats times (different days, clicks and splits; all seeded). Per part it reports the
mean AUC over (reader, repeat), the pooled pairwise accuracy over all pairs, the same on the readers the model was
fitted for, and a 95 % bootstrap interval (resampling interests) of the mean differences of the `clicks` AUC. Tune on
`dev` only (`--part dev`; --grid adds the dev figures for other minimum clicks, penalties and weights); `heldout` is
the final figure.
"""

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.matching_bench import load_papers, setup_django  # noqa: E402

LABELLED = ROOT / "bench/matching/labelled"
PAPERS = [LABELLED / "papers.json", ROOT / "papers/sample_data/papers.json", ROOT / "bench/matching/papers.json"]
PARTS = {"dev": LABELLED / "interests_dev.json", "heldout": LABELLED / "interests_heldout.json"}
GRID = {
    "min_clicks": [4, 6, 8],
    "l2": [0.003, 0.01, 0.03, 0.1, 0.3],
    "weight": [0.3, 0.5, 0.7, 0.9],
}


class Click:
    def __init__(self, doc, direction, relevant):
        self.doc = doc
        self.direction = direction
        self.relevant = relevant  # the label; the direction may be flipped (--noise)


def simulate(rng, candidates, relevant, args):
    """(training clicks, held-out clicks) of one reader: [Click]."""
    order = list(candidates)
    rng.shuffle(order)
    shown = []
    for day in range(args.days):
        today = order[day :: args.days]
        today.sort(key=lambda doc: (-candidates[doc], doc))
        shown += today[: args.shown]
    clicks = []
    for doc in sorted(shown):
        liked = doc in relevant
        if rng.random() < (args.more_rate if liked else args.less_rate):
            if rng.random() < args.noise:
                liked = not liked
            clicks.append(Click(doc, "more" if liked else "less", doc in relevant))
    rng.shuffle(clicks)
    held = round(len(clicks) * args.heldout_share)
    return clicks[held:], clicks[:held]


def auc(scores, held_out, *, labels=False):
    """(pairs in order, pairs): held-out "more" above held-out "less", or with `labels` relevant above not relevant."""
    more = [scores[click.doc] for click in held_out if (click.relevant if labels else click.direction == "more")]
    less = [scores[click.doc] for click in held_out if not (click.relevant if labels else click.direction == "more")]
    pairs = [(m > s) + 0.5 * (m == s) for m in more for s in less]
    return sum(pairs), len(pairs)


class Bench:
    def __init__(self, args):
        from papers.matching import Index

        self.args = args
        self.papers = load_papers(PAPERS)
        self.index = Index(self.papers)
        self.vectors = self.index.vectors
        self.doc_of = {paper.arxiv_id: doc for doc, paper in enumerate(self.papers)}
        self._similar = {}

    def similar(self, doc):
        """{doc: similarity} of the pool to feedback paper `doc`, as Pool._similar computes it."""
        from papers.ranking import similarity_query

        if doc not in self._similar:
            paper = self.papers[doc]
            self._similar[doc] = self.index.score(similarity_query(paper.title, tuple(paper.keywords or ())))
        return self._similar[doc]

    def readers(self, part):
        """[(interest, {doc: base score} of its candidates, set of relevant docs)]."""
        from papers.matching import Query

        readers = []
        for item in json.loads(PARTS[part].read_text(encoding="utf-8")):
            scores = self.index.score(Query.from_interest(item["interest"]))
            top = sorted(scores, key=lambda doc: (-scores[doc], self.papers[doc].arxiv_id))[: self.args.candidates]
            readers.append(
                (item["interest"], {doc: scores[doc] for doc in top}, {self.doc_of[i] for i in item["relevant"]})
            )
        return readers

    def rankings(self, candidates, train, held_out, settings):
        """({method: {doc: score}} over the held-out clicked papers, the settings whose model was fitted)."""
        from papers import ranking

        docs = [click.doc for click in held_out]
        base = {doc: candidates[doc] for doc in docs}
        more = [self.similar(click.doc) for click in train if click.direction == "more"]
        less = [self.similar(click.doc) for click in train if click.direction == "less"]
        bounded = {doc: base[doc] * ranking.factor(doc, more, less) for doc in docs}
        results, fitted = {"none": base, "bounded": bounded}, set()
        for name, (min_clicks, l2, weight) in settings.items():
            if ranking.has_enough_feedback(train, min_clicks=min_clicks):
                model = ranking.fit_preference(
                    self.vectors[[click.doc for click in train]], [click.direction == "more" for click in train], l2
                )
                probability = ranking.preference(model, self.vectors[docs])
                if weight is None:  # the model alone, without the relevance
                    results[name] = dict(zip(docs, probability, strict=True))
                else:
                    results[name] = {
                        doc: base[doc] * ranking.model_factor(p, weight)
                        for doc, p in zip(docs, probability, strict=True)
                    }
                fitted.add(name)
            else:
                results[name] = bounded
        return results, fitted

    def run(self, part, settings):
        """One row per (reader, repeat) with held-out clicks of both kinds: per method, (pairs in order, pairs) by
        click direction and, under "<method>:labels", by the papers' true labels."""
        rows = []
        for number, (_interest, candidates, relevant) in enumerate(self.readers(part)):
            for repeat in range(self.args.repeats):
                rng = random.Random(f"{self.args.seed}:{part}:{number}:{repeat}")
                train, held_out = simulate(rng, candidates, relevant, self.args)
                directions = {click.direction for click in held_out}
                if directions != {"more", "less"}:
                    continue
                results, fitted = self.rankings(candidates, train, held_out, settings)
                row = {"interest": number, "train_clicks": len(train), "fitted": fitted}
                for method, scores in results.items():
                    row[method] = auc(scores, held_out)
                    row[method + ":labels"] = auc(scores, held_out, labels=True)
                rows.append(row)
        return rows


def summarise(rows, methods, model, seed, *, intervals=True):
    def figures(selected, key):
        selected = [row for row in selected if row[key][1]]
        return {
            "mean_auc": round(sum(row[key][0] / row[key][1] for row in selected) / len(selected), 4),
            "pairwise_accuracy": round(sum(row[key][0] for row in selected) / sum(row[key][1] for row in selected), 4),
        }

    def block(selected):
        if not selected:
            return {"readers": 0}
        out = {"readers": len(selected)}
        for method in methods:
            out[method] = {"clicks": figures(selected, method), "labels": figures(selected, method + ":labels")}
        return out

    fitted = [row for row in rows if model in row["fitted"]]
    summary = {
        "all": block(rows),
        "model_fitted": block(fitted),
        "share_fitted": round(len(fitted) / len(rows), 4) if rows else None,
        "mean_train_clicks": round(sum(row["train_clicks"] for row in rows) / len(rows), 2) if rows else None,
    }
    if not intervals:
        return summary
    summary["bootstrap_95"] = {
        f"{a}-{b}": bootstrap(rows, a, b, seed) for a, b in ((model, "none"), (model, "bounded"), ("bounded", "none"))
    }
    return summary


def bootstrap(rows, a, b, seed, rounds=1000):
    """Mean AUC difference a − b, with a 95 % interval from resampling interests (a reader's repeats move together)."""
    by_interest = {}
    for row in rows:
        difference = row[a][0] / row[a][1] - row[b][0] / row[b][1]
        by_interest.setdefault(row["interest"], []).append(difference)
    groups = list(by_interest.values())
    rng = random.Random(seed)

    def mean(sample):
        values = [value for group in sample for value in group]
        return sum(values) / len(values)

    means = sorted(mean(rng.choices(groups, k=len(groups))) for _ in range(rounds))
    return {
        "mean": round(mean(groups), 4),
        "low": round(means[int(0.025 * rounds)], 4),
        "high": round(means[int(0.975 * rounds)], 4),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument("--candidates", type=int, default=40)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--shown", type=int, default=10)
    parser.add_argument("--more-rate", type=float, default=0.8)
    parser.add_argument("--less-rate", type=float, default=0.4)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--heldout-share", type=float, default=0.5)
    parser.add_argument("--part", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--grid", action="store_true", help="Also report the dev figures for GRID's settings.")
    args = parser.parse_args()
    setup_django()
    from papers import ranking

    started = time.perf_counter()
    bench = Bench(args)
    product = (ranking.FEEDBACK_MODEL_MIN_CLICKS, ranking.FEEDBACK_MODEL_L2, ranking.FEEDBACK_MODEL_WEIGHT)
    output = {
        "papers": len(bench.papers),
        "simulation": {key: value for key, value in vars(args).items() if key not in ("grid", "part")},
        "model": dict(zip(["min_clicks", "l2", "weight"], product, strict=True))
        | {"min_each": ranking.FEEDBACK_MODEL_MIN_EACH},
        "parts": {},
    }
    for part in args.part:
        rows = bench.run(part, {"model": product, "model_alone": (*product[:2], None)})
        output["parts"][part] = summarise(rows, ["none", "bounded", "model", "model_alone"], "model", args.seed)
    if args.grid:
        settings = {
            f"n={n} l2={l2} w={w}": (n, l2, w) for n in GRID["min_clicks"] for l2 in GRID["l2"] for w in GRID["weight"]
        }
        rows = bench.run("dev", settings)
        grid = []
        for name in settings:
            summary = summarise(rows, [name], name, args.seed, intervals=False)
            grid.append({"setting": name, **summary["all"][name], "share_fitted": summary["share_fitted"]})
        grid.sort(key=lambda item: -item["clicks"]["mean_auc"])
        output["dev_grid"] = grid
    output["seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(output, indent=2))


if __name__ == "__main__":
    main()
