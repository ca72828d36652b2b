#!/usr/bin/env python
"""What one digest email costs: its HTML bytes, and the CPU a sending task spends building it.

    python bench/digest_cost.py [--subscribers 2000] [--chunk-size 50] [--passes 2]

Prints one JSON object on stdout; progress goes to stderr. It runs on a throwaway SQLite database in a temporary
directory, with DEBUG off as in production.

- `richest`: the HTML and whole-message bytes of the richest realistic digest (`rich_digest`) at 10 papers and at the
  largest number a reader may choose (subscriptions.models.MAX_PAPERS_PER_EMAIL).
- `tasks`: `--subscribers` readers of the synthetic data of bench/digest_data.py (1,000 papers, 50 topics, 10
  papers per email) built in chunks of `--chunk-size` as a Celery task builds them: one compose.Batch per chunk,
  given no pool or renderer, then choose, prepare and build each reader's email (sending and recording left out).
  Each pass goes over every reader once; passes after the first show what a long-lived worker process pays. For each
  pass: CPU ms per digest (time.process_time), premailer runs, and the mean HTML bytes.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The sample papers' longest titles, each with its real authors (four or more, so cards show "et al."), abstract
# and a code link: what the busiest cards of a real day look like.
RICH_TOPICS = [
    "Large language models",
    "Efficient inference",
    "Retrieval-augmented generation",
    "Vision-language models",
    "Reinforcement learning from human feedback",
]
RICH_KEYWORDS = ["speculative decoding", "kv cache", "mixture of experts"]
RICH_REASONS = (
    "mentions “llm”, “language model”; close to “Efficient Memory Management for Large Language Model Serving”",
    "close in meaning to “Direct Preference Optimization: Your Language Model is Secretly a Reward Model”",
    "mentions “retrieval”",
)


def log(message):
    print(f"[digest_cost] {message}", file=sys.stderr, flush=True)


def rich_papers(count):
    """`count` saved papers from the bundled sample, longest titles first, each with many authors and a code link."""
    from papers.models import Paper

    items = json.loads((ROOT / "papers" / "sample_data" / "papers.json").read_text())
    items.sort(key=lambda item: -len(item["paper"]["title"]))
    papers = []
    for number in range(count):
        listing = items[number % len(items)]  # Hugging Face's daily_papers item: the paper, its picture, comments
        item = listing["paper"]
        authors = [author["name"] for author in item["authors"]]
        authors += [f"{name} Example" for name in ("Ana", "Wei", "Sara", "Jonas", "Priya", "Mateo")]
        arxiv_id = f"2612.{number + 10001:05d}"
        papers.append(
            Paper.objects.update_or_create(
                arxiv_id=arxiv_id,
                defaults={
                    "title": item["title"],
                    "raw_title": item["title"],
                    "abstract": item["summary"],
                    "authors": authors,
                    "upvotes": 100 + 37 * number,
                    "github_url": f"https://github.com/example-lab/{item['id'].replace('.', '-')}-official",
                    "thumbnail_url": listing["thumbnail"],
                    "num_comments": 100 + listing["numComments"],
                    "published_at": datetime.fromisoformat(item["publishedAt"]),
                },
            )[0]
        )
    return papers


def rich_digest(count, *, day=None):
    """The richest realistic digest of `count` papers as a DigestMessage: long titles, many authors, three matched
    labels per card with a "Why:" line explaining two, a code link, a picture for the top pick, a reader with five
    topics and three keywords, welcomed to their first digest; the cards in the email's order (grouped by topic)."""
    from django.utils import timezone

    from digest.rendering import DigestRenderer
    from digest.selection import arrange
    from papers.ranking import Pick
    from subscriptions.models import Subscriber

    reader, _created = Subscriber.objects.get_or_create(
        email="a.long-address.reader@research-institute.example.org",
        defaults={"status": Subscriber.Status.ACTIVE, "keywords": RICH_KEYWORDS, "papers_per_email": count},
    )
    keywords = [f"“{keyword}”" for keyword in RICH_KEYWORDS]
    picks = []
    for number, paper in enumerate(rich_papers(count)):
        labels = (RICH_TOPICS[number % 5], keywords[number % 3], RICH_TOPICS[(number + 2) % 5])
        picks.append(Pick(paper, 1.0, 1.0, labels, RICH_REASONS))
    day = day or timezone.localdate()
    return DigestRenderer().build(reader, arrange(picks), day=day, labels=RICH_TOPICS + keywords, first=True)


def html_of(message):
    return message.alternatives[0][0]


def richest(max_papers):
    result = {}
    for count in sorted({10, max_papers}):
        message = rich_digest(count)
        result[f"{count}_papers"] = {
            "html_bytes": len(html_of(message).encode()),
            "message_bytes": len(message.message().as_bytes()),
        }
    return result


class PremailerCount:
    def __init__(self):
        import premailer

        self.count = 0
        self.original = premailer.Premailer.transform
        counter = self

        def transform(self, *args, **kwargs):
            counter.count += 1
            return counter.original(self, *args, **kwargs)

        premailer.Premailer.transform = transform


def task_passes(chunk_size, passes):
    from django.db import connection
    from django.utils import timezone

    from digest import compose
    from subscriptions.models import Subscriber

    counter = PremailerCount()
    now = timezone.now()
    compose.get_pool(now).warm()  # loaded once per process in a worker: not the tasks' share
    readers = list(Subscriber.objects.order_by("id"))
    chunks = [readers[start : start + chunk_size] for start in range(0, len(readers), chunk_size)]
    results = []
    for number in range(1, passes + 1):
        counter.count = 0
        digests = html_bytes = 0
        started = time.process_time()
        for chunk in chunks:
            batch = compose.Batch([reader.id for reader in chunk], now)
            chosen = [(reader, batch.choose(reader)[0]) for reader in chunk]
            chosen = [(reader, picks) for reader, picks in chosen if picks]
            batch.prepare(picks for _reader, picks in chosen)
            for reader, picks in chosen:
                html_bytes += len(html_of(batch.build(reader, picks, now.date())).encode())
                digests += 1
        seconds = time.process_time() - started
        connection.close()
        results.append(
            {
                "pass": number,
                "digests": digests,
                "tasks": len(chunks),
                "cpu_ms_per_digest": round(seconds * 1000 / digests, 3) if digests else None,
                "premailer_runs": counter.count,
                "mean_html_bytes": round(html_bytes / digests) if digests else None,
            }
        )
        log(f"pass {number}: {results[-1]}")
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--chunk-size", type=int, default=50)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=20260101)
    args = parser.parse_args()

    temp_dir = Path(tempfile.mkdtemp(prefix="digest_cost_"))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="true",
        DATABASE_URL=f"sqlite:///{temp_dir / 'bench.sqlite3'}",
        VAR_DIR=str(temp_dir / "var"),
        LOG_LEVEL="WARNING",
    )
    sys.path.insert(0, str(ROOT))
    try:
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        from bench.digest_data import generate
        from subscriptions.models import MAX_PAPERS_PER_EMAIL

        settings.DEBUG = False  # as in production: no query log, no template debug info
        call_command("migrate", verbosity=0, interactive=False)
        sizes = richest(MAX_PAPERS_PER_EMAIL)
        log(f"richest digests: {sizes}")
        from papers.models import Paper
        from subscriptions.models import Subscriber

        Subscriber.objects.all().delete()
        Paper.objects.all().delete()
        generate(papers=1000, topics=50, subscribers=args.subscribers, per_email=10, seed=args.seed, log=log)
        passes = task_passes(args.chunk_size, args.passes)
        head = os.popen(f"git -C {ROOT} rev-parse --short HEAD").read().strip()
        output = {"git_head": head, "richest": sizes, "chunk_size": args.chunk_size, "tasks": passes}
        print(json.dumps(output, indent=2))
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
