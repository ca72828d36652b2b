import sys
import time
from datetime import date

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from digest import compose, jobs, planning
from subscriptions.models import Subscriber


def parse_date(value):
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--date {value!r} is not a date like 2026-11-30.", returncode=2) from None


class Command(BaseCommand):
    help = (
        "Run the digest job once, here and now, as beat would: plan everyone due and send their digests, "
        "with no broker needed. Prints a summary."
    )

    def add_arguments(self, parser):
        parser.add_argument("--date", help="Send for this local date (YYYY-MM-DD), to everyone it is due, any hour.")
        parser.add_argument("--now", action="store_true", help="Do not wait for send hours: everyone due today.")
        parser.add_argument("--dry-run", action="store_true", help="Choose and render, but send and record nothing.")
        parser.add_argument("--no-progress", action="store_true", help="Do not show a progress bar.")
        parser.add_argument(
            "--processes", type=int, default=1, help="Send in this many processes at once (default 1; try the cores)."
        )

    def handle(self, *args, date, now, dry_run, no_progress, processes, **options):
        day = parse_date(date) if date else None
        if processes < 1:
            raise CommandError(f"--processes must be at least 1, not {processes}.", returncode=2)
        ignore_hour = now or day is not None
        started = time.perf_counter()
        moment = timezone.now()
        show = not no_progress and self.stderr.isatty()
        if dry_run:
            self.dry_run(moment, day, ignore_hour, show)
        else:
            self.send(moment, day, ignore_hour, show, processes)
        self.stdout.write(f"Took {time.perf_counter() - started:.1f} s.")

    def send(self, moment, day, ignore_hour, show, processes):
        with tqdm(unit="digest", file=sys.stderr, disable=not show) as bar:
            run, ids, total, recovered = jobs.run_digests(
                moment, day=day, ignore_hour=ignore_hour, processes=processes, on_progress=bar.update
            )
        if recovered.sent or recovered.failed or recovered.skipped:
            self.stdout.write(
                'Sent again what earlier runs left behind (README, "At most once"): '
                f"{recovered.sent} sent, {recovered.failed} failed, {recovered.skipped} skipped."
            )
        if not ids:
            self.stdout.write("Nobody is due a digest now.")
        self.stdout.write(
            f"Digest run {run.pk}: {len(ids)} planned from {run.pool_size} papers; "
            f"{total.sent} sent, {total.failed} failed, {total.skipped} skipped."
        )

    def dry_run(self, moment, day, ignore_hour, show):
        due = planning.find_due(moment, day=day, ignore_hour=ignore_hour)
        subscribers = Subscriber.objects.in_bulk([subscriber_id for subscriber_id, _day in due])
        batch = compose.Batch(list(subscribers), moment)
        would_send = would_skip = 0
        for subscriber_id, local_day in tqdm(due, unit="digest", file=sys.stderr, disable=not show):
            reader = subscribers[subscriber_id]
            picks, _reason = batch.choose(reader)
            if picks is None:
                would_skip += 1
                continue
            batch.build(reader, picks, local_day).message()
            would_send += 1
        self.stdout.write(
            f"Dry run: {len(due)} due from {len(batch.pool)} papers; {would_send} would be sent, {would_skip} skipped. "
            "Nothing was sent or recorded."
        )
