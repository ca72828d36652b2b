import sys
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from papers import embeddings
from papers.models import Paper

BATCH_SIZE = 256


class Command(BaseCommand):
    help = (
        "Compute and store the embeddings of stored papers that have none, or that another model or an older text made "
        "(MATCH_EMBEDDINGS' model), newest first, so that no digest run or page has to. The release step runs it with "
        "--recent; run it without after changing MATCH_EMBEDDINGS to have every topic page's archive ready too. A run "
        "stopped half way keeps what it stored, and the next one goes on from there."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--recent",
            action="store_true",
            help="Only the papers a digest run reads: first seen in the last DIGEST_MAX_WINDOW_DAYS days.",
        )
        parser.add_argument(
            "--batch-size", type=int, default=BATCH_SIZE, help=f"Papers embedded and stored together ({BATCH_SIZE})."
        )
        parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")

    def handle(self, *args, recent, batch_size, no_progress, **options):
        if batch_size < 1:
            raise CommandError(f"--batch-size must be at least 1, not {batch_size}.", returncode=2)
        if settings.MATCH_SEMANTIC_WEIGHT == 0:
            # As the importer: nothing reads embeddings at this weight, so nothing loads the model.
            self.stdout.write("Nothing embedded: MATCH_SEMANTIC_WEIGHT is 0, so matching reads no embeddings.")
            return
        papers = Paper.objects.only(*embeddings.PAPER_FIELDS).order_by("-first_seen_at", "-id")
        if recent:
            papers = papers.filter(first_seen_at__gte=timezone.now() - timedelta(days=settings.DIGEST_MAX_WINDOW_DAYS))
        model = embeddings.embedder()
        show_progress = not no_progress and self.stderr.isatty()
        embedded = current = 0
        batch = []
        with tqdm(
            total=papers.count(), desc="embedding", unit="paper", file=sys.stderr, disable=not show_progress
        ) as bar:
            for paper in papers.iterator(chunk_size=1000):
                if embeddings.is_current(paper):
                    current += 1
                    bar.update()
                    continue
                batch.append(paper)
                if len(batch) == batch_size:
                    embedded += self._embed(batch, bar)
                    batch = []
            if batch:
                embedded += self._embed(batch, bar)
        plural = "" if embedded == 1 else "s"
        self.stdout.write(
            f"Embedded {embedded} paper{plural} with the {model.name} model; {current} already had their vectors."
        )

    def _embed(self, batch, bar):
        embeddings.paper_rows(batch, save=False)  # sets each paper's embedding and embedding_key
        embeddings.store(batch)  # unlike a page's, a failed write here stops the command
        bar.update(len(batch))
        return len(batch)
