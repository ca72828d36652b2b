import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from papers.matching import Query, build_index, topic_examples
from papers.models import Paper, Topic


class Command(BaseCommand):
    help = "Rank stored papers for a free-text interest or a curated topic, best first."

    def add_arguments(self, parser):
        parser.add_argument("interest", nargs="?", help='What a reader would type, e.g. "GNN for molecules".')
        parser.add_argument("--topic", metavar="SLUG", help="Rank for a curated topic instead of free text.")
        parser.add_argument("--all-topics", action="store_true", help="Show every active topic with its top papers.")
        parser.add_argument("--limit", type=int, default=10, help="How many papers to show (default 10).")
        parser.add_argument("--days", type=int, help="Only papers first seen in the last N days.")
        parser.add_argument(
            "--min-score",
            type=float,
            default=settings.MATCH_MIN_SCORE,
            help="Leave out papers scoring below this (default MATCH_MIN_SCORE, %(default)s).",
        )
        parser.add_argument(
            "--relative",
            type=float,
            default=settings.MATCH_RELATIVE_SCORE,
            help="Leave out papers below this share of the best score (default MATCH_RELATIVE_SCORE, %(default)s).",
        )
        parser.add_argument(
            "--json", dest="as_json", action="store_true", help='Print a JSON array of {"arxiv_id", "title", "score"}.'
        )

    def handle(self, *args, interest, topic, all_topics, limit, days, min_score, relative, as_json, **options):
        if sum(bool(choice) for choice in (interest, topic, all_topics)) != 1:
            raise CommandError("Give exactly one of: an INTEREST, --topic SLUG or --all-topics.", returncode=2)
        if limit < 1:
            raise CommandError(f"--limit must be at least 1, not {limit}.", returncode=2)
        if not 0 <= relative <= 1:
            raise CommandError(f"--relative must be from 0 to 1, not {relative}.", returncode=2)
        if days is not None and days < 1:
            raise CommandError(f"--days must be at least 1, not {days}.", returncode=2)

        if all_topics:
            topics = list(Topic.objects.filter(is_active=True))
            examples = topic_examples(topic.id for topic in topics)
            queries = [Query.from_topic(topic, examples.get(topic.id, ())) for topic in topics]
            if not queries:
                raise CommandError("There are no active topics; add some in the admin or run loadsample.", returncode=2)
        elif topic:
            found = Topic.objects.filter(slug=topic).first()
            if found is None:
                known = ", ".join(Topic.objects.values_list("slug", flat=True)) or "none yet"
                raise CommandError(f"No topic with slug {topic!r} (known: {known}).", returncode=2)
            queries = [Query.from_topic(found, topic_examples([found.id]).get(found.id, ()))]
        else:
            queries = [Query.from_interest(interest)]
            if not queries[0]:
                raise CommandError(f"Nothing to match in {interest!r}: it has no searchable words.", returncode=2)

        papers = Paper.objects.all()
        if days:
            papers = papers.filter(first_seen_at__gte=timezone.now() - timezone.timedelta(days=days))
        index = build_index(papers)
        results = [(query, index.rank(query, limit=limit, min_score=min_score, relative=relative)) for query in queries]

        if as_json:
            self._print_json(results, all_topics)
        elif not len(index):
            self.stdout.write("No papers stored yet. Import some with: python manage.py importpapers PATH")
        else:
            for query, matches in results:
                self._print_table(query, matches, heading=all_topics or bool(topic))

    def _print_json(self, results, grouped):
        def rows(matches):
            return [{"arxiv_id": m.arxiv_id, "title": m.paper.title, "score": m.score} for m in matches]

        if grouped:
            payload = [{"topic": query.label, "papers": rows(matches)} for query, matches in results]
        else:
            payload = rows(results[0][1])
        self.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2))

    def _print_table(self, query, matches, heading):
        if heading:
            self.stdout.write(self.style.MIGRATE_HEADING(query.label))
        if not matches:
            self.stdout.write("  No stored paper matches.")
        for match in matches:
            self.stdout.write(f"  {match.score:.3f}  {match.arxiv_id:<12} {match.paper.title}")
        if heading:
            self.stdout.write("")
