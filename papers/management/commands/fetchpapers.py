import datetime
import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from papers.fetching import fetch
from papers.models import FetchRun


class Command(BaseCommand):
    help = "Fetch papers from the live sources (what beat runs): Hugging Face daily papers and/or the arXiv API."

    def add_arguments(self, parser):
        parser.add_argument("--source", choices=["hf", "arxiv"], help="Only this source (default: both).")
        parser.add_argument("--date", help="For Hugging Face: the day to fetch (YYYY-MM-DD; default today).")

    def handle(self, *args, source, date, **options):
        day = None
        if date:
            try:
                day = datetime.date.fromisoformat(date)
            except ValueError:
                raise CommandError(f"--date {date!r} is not a date like 2026-11-30.", returncode=2) from None
        failed = False
        for name in [source] if source else ["hf", "arxiv"]:
            label = FetchRun.Source(name).label
            with tqdm(desc=label, unit="paper", file=sys.stderr, disable=not self.stderr.isatty()) as bar:
                run = fetch(name, day=day, on_progress=bar.update)
            if run.error and not run.fetched_count:
                failed = True
                self.stderr.write(f"{label}: failed: {run.error}")
                continue
            self.stdout.write(
                f"{label}: {run.fetched_count} fetched, {run.created_count} created, {run.updated_count} updated, "
                f"{run.error_count} rejected."
            )
            if run.error:
                self.stderr.write(run.error)
        if failed:
            raise CommandError("A fetch failed; nothing of it was stored. See the reason above.", returncode=1)
