import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from papers.ingest import IngestResult, import_items
from papers.sources import InvalidInput
from papers.sources.files import read_items


class Command(BaseCommand):
    help = (
        "Import papers from Hugging Face daily_papers JSON (an array or JSON Lines) or an arXiv API Atom feed. "
        "'-' reads stdin. Exits with status 2 if any item or file was rejected; the valid papers are imported anyway."
    )
    # call_command(..., stdin=BytesIO(...)) lets tests feed "-" without touching the process's stdin.
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH", help="a file to import, or - for stdin")
        parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")

    def handle(self, *args, paths, no_progress, **options):
        stdin = options.get("stdin")
        show_progress = not no_progress and self.stderr.isatty()
        total = IngestResult()
        unusable = 0
        for path in paths:
            name = "<stdin>" if path == "-" else path
            try:
                items = read_items(path, stdin=stdin, max_bytes=settings.IMPORT_MAX_BYTES)
            except InvalidInput as invalid:
                self.stderr.write(f"{name}: {invalid.reason}")
                unusable += 1
                continue
            with tqdm(total=len(items), desc=name, unit="paper", file=sys.stderr, disable=not show_progress) as bar:
                result = import_items(items, on_progress=bar.update)
            for rejection in result.rejected:
                self.stderr.write(f"{name}: {rejection.where}: {rejection.reason}")
            total.add(result)

        files = f"{len(paths)} file{'s' if len(paths) != 1 else ''}" + (f" ({unusable} unusable)" if unusable else "")
        self.stdout.write(
            f"{files}: {total.created} created, {total.updated} updated, {total.unchanged} unchanged, "
            f"{len(total.rejected)} rejected."
        )
        if total.rejected or unusable:
            raise CommandError("Some input was not imported; the reasons are listed above.", returncode=2)
