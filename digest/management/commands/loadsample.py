import json
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from papers.ingest import import_items
from papers.models import Paper, Topic, TopicExample
from papers.sources import InvalidInput
from papers.sources.files import read_items
from subscriptions.models import Subscriber

SAMPLE_DIR = Path(__file__).resolve().parents[3] / "papers" / "sample_data"


class Command(BaseCommand):
    help = (
        "Import the bundled sample papers and create the sample topics. Topics that already exist (by slug) are left "
        "as they are, so running it again never undoes an operator's edits."
    )

    def add_arguments(self, parser):
        parser.add_argument("--papers", default=str(SAMPLE_DIR / "papers.json"), help="papers file (%(default)s)")
        parser.add_argument("--topics", default=str(SAMPLE_DIR / "topics.json"), help="topics file (%(default)s)")
        parser.add_argument(
            "--demo-readers", action="store_true", help="also subscribe a few confirmed demo readers (example.com)"
        )

    def handle(self, *args, papers, topics, demo_readers, **options):
        topic_list = read_topics(topics)
        try:
            items = read_items(papers, max_bytes=settings.IMPORT_MAX_BYTES)
        except InvalidInput as invalid:
            raise CommandError(f"{papers}: {invalid.reason}", returncode=2) from None
        result = import_items(items)
        for rejection in result.rejected:
            self.stderr.write(f"{papers}: {rejection.where}: {rejection.reason}")
        self.stdout.write(
            f"Papers from {papers}: {result.created} created, {result.updated} updated, "
            f"{result.unchanged} unchanged, {len(result.rejected)} rejected."
        )

        created, kept = create_missing_topics(topic_list)
        self.stdout.write(f"Topics from {topics}: {len(created)} created, {len(kept)} already there (left as is).")
        for topic in created:
            self.stdout.write(f"  + {topic.slug}: {topic.name}")
        examples = add_examples(created, topic_list)
        if examples:
            self.stdout.write(f"  {examples} editor's corrections (“not this topic”) added to the new topics.")
        if demo_readers:
            for reader, is_new in create_demo_readers():
                self.stdout.write(f"Demo reader {reader.email}: {'subscribed' if is_new else 'already there'}.")
        if result.rejected:
            raise CommandError("Some sample papers were not imported; the reasons are listed above.", returncode=2)


def read_topics(path):
    """Unsaved Topics from a JSON array of {"name", "slug", "description", "aliases": [...]}, each one checked."""
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CommandError(f"{path}: no such file", returncode=2) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CommandError(f"{path}: cannot be read as JSON: {error}", returncode=2) from None
    if not isinstance(entries, list):
        raise CommandError(f"{path}: expected a JSON array of topics", returncode=2)
    topics = []
    for position, entry in enumerate(entries, start=1):
        try:
            topics.append(build_topic(entry, display_order=position * 10))
        except ValidationError as error:
            raise CommandError(f"{path}: topic {position}: {'; '.join(error.messages)}", returncode=2) from None
    return topics


def build_topic(entry, display_order):
    if not isinstance(entry, dict):
        raise ValidationError("not an object")
    texts = {key: entry.get(key, "") for key in ("name", "slug", "description")}
    aliases = entry.get("aliases", [])
    not_this_topic = entry.get("not_this_topic", [])
    if not all(isinstance(value, str) for value in texts.values()):
        raise ValidationError("name, slug and description must be text")
    if not isinstance(aliases, list) or not all(isinstance(alias, str) for alias in aliases):
        raise ValidationError("aliases must be a list of strings")
    if not isinstance(not_this_topic, list) or not all(isinstance(value, str) for value in not_this_topic):
        raise ValidationError("not_this_topic must be a list of arXiv ids")
    topic = Topic(
        **{key: value.strip() for key, value in texts.items()},
        aliases="\n".join(alias.strip() for alias in aliases if alias.strip()),
        display_order=display_order,
    )
    topic.full_clean(validate_unique=False, validate_constraints=False)
    topic.not_this_topic = [value.strip() for value in not_this_topic if value.strip()]
    return topic


def create_missing_topics(topics):
    """Save each topic unless one with its slug (or its name) exists; return (created, kept)."""
    created, kept = [], []
    for topic in topics:
        # An operator may have renamed the slug of a sample topic; its name is unique too, so it is still "there".
        existing = Topic.objects.filter(name=topic.name).exclude(slug=topic.slug).first()
        if existing is not None:
            kept.append(existing)
            continue
        stored, is_new = Topic.objects.get_or_create(
            slug=topic.slug,
            defaults={field: getattr(topic, field) for field in ("name", "description", "aliases", "display_order")},
        )
        (created if is_new else kept).append(stored)
    return created, kept


def add_examples(created, topic_list):
    """The sample's own editor's corrections ("not_this_topic": papers a topic's words catch but it is not about), for
    the topics just created; a topic already there keeps the examples its operators gave it."""
    wanted = {topic.slug: topic.not_this_topic for topic in topic_list}
    papers = {paper.arxiv_id: paper for paper in Paper.objects.filter(arxiv_id__in=sum(wanted.values(), []))}
    examples = [
        TopicExample(topic=topic, paper=papers[arxiv_id], belongs=False)
        for topic in created
        for arxiv_id in wanted.get(topic.slug, [])
        if arxiv_id in papers
    ]
    TopicExample.objects.bulk_create(examples, ignore_conflicts=True)
    return len(examples)


DEMO_READERS = [
    {
        "email": "ada@example.com",
        "topics": ["large-language-models", "graph-neural-networks"],
        "keywords": ["diffusion"],
    },
    {
        "email": "grace@example.com",
        "topics": ["speech-and-audio", "reinforcement-learning-and-robotics"],
        "keywords": [],
    },
    {"email": "alan@example.com", "topics": [], "keywords": ["NeRF", "gaussian splatting"]},
]


def create_demo_readers():
    """Confirmed readers at reserved example.com addresses, so a demo run has someone to write to."""
    results = []
    for spec in DEMO_READERS:
        reader, is_new = Subscriber.objects.get_or_create(
            email=spec["email"],
            defaults={"status": Subscriber.Status.ACTIVE, "confirmed_at": timezone.now(), "keywords": spec["keywords"]},
        )
        if is_new:
            reader.topics.set(Topic.objects.filter(slug__in=spec["topics"]))
        results.append((reader, is_new))
    return results
