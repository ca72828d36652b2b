"""Store PaperRecords as Papers: upsert by arXiv id, a batch per transaction, safe to run again on the same input.

Sources disagree about what they know: arXiv has categories but no upvotes, Hugging Face the reverse. A record only
ever fills in or refreshes a field; an empty value never erases one another source gave.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import DataError, IntegrityError, models, transaction
from django.utils import timezone

from papers import embeddings
from papers.models import Paper
from papers.sources import InvalidItem

BATCH_SIZE = 500
MERGED_FIELDS = (
    "raw_title",
    "title",
    "abstract",
    "authors",
    "published_at",
    "featured_at",
    "upvotes",
    "num_comments",
    "github_url",
    "thumbnail_url",
    "keywords",
    "categories",
    "primary_category",
)


@dataclass(frozen=True)
class Rejection:
    where: str  # the item's label ("item 3", "line 7") or, from upsert_papers, its arXiv id
    reason: str


@dataclass
class IngestResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def add(self, other):
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejected.extend(other.rejected)


def import_items(items, *, on_progress=None):
    """Store the PaperRecords among `[(label, PaperRecord | InvalidItem)]`; every rejection names its item's label.

    `on_progress(n)` is called as items are dealt with, n at a time, adding up to len(items).
    """
    result = IngestResult()
    records = []
    labels = {}
    for label, item in items:
        if isinstance(item, InvalidItem):
            result.rejected.append(Rejection(label, item.reason))
        else:
            records.append(item)
            labels[item.arxiv_id] = label
    if on_progress is not None and result.rejected:
        on_progress(len(result.rejected))
    stored = upsert_papers(records, on_progress=on_progress)
    result.created, result.updated, result.unchanged = stored.created, stored.updated, stored.unchanged
    result.rejected.extend(Rejection(labels[rejection.where], rejection.reason) for rejection in stored.rejected)
    return result


def upsert_papers(records, *, batch_size=BATCH_SIZE, on_progress=None):
    """Create or refresh one Paper per arXiv id; `on_progress(n)` is called after each batch of n records."""
    records = list(records)
    result = IngestResult()
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        try:
            with transaction.atomic():
                batch_result = upsert_batch(batch)
        except (IntegrityError, DataError):
            # One row the database refuses (or a paper another import created meanwhile) fails the whole batch.
            # Redo it a paper at a time so only the refused paper is lost, and none is left half written.
            batch_result = upsert_one_by_one(batch)
        result.add(batch_result)
        if on_progress is not None:
            on_progress(len(batch))
    return result


def upsert_one_by_one(batch):
    result = IngestResult()
    for arxiv_id, group in group_by_arxiv_id(batch).items():
        try:
            with transaction.atomic():
                result.add(upsert_batch(group))
        except (IntegrityError, DataError) as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            result.rejected.append(Rejection(arxiv_id, f"the database refused it: {message}"))
    return result


def upsert_batch(batch):
    now = timezone.now()
    groups = group_by_arxiv_id(batch)
    existing = {
        paper.arxiv_id: paper
        for paper in Paper.objects.select_for_update().filter(arxiv_id__in=list(groups)).order_by("arxiv_id")
    }
    result = IngestResult()
    new_papers, changed_papers, changed_fields = [], [], set()
    for arxiv_id, group in groups.items():
        paper = existing.get(arxiv_id)
        is_new = paper is None
        if is_new:
            # Like first_seen_at, source says where the paper was first seen; later sources only add to it.
            paper = Paper(arxiv_id=arxiv_id, source=group[0].source, first_seen_at=now)
        fields = set()
        for record in group:
            fields |= apply_record(paper, record)
        problem = find_overlong_value(paper)
        if problem:
            result.rejected.append(Rejection(arxiv_id, problem))
        elif is_new:
            new_papers.append(paper)
        elif fields:
            paper.updated_at = now
            changed_papers.append(paper)
            changed_fields |= fields
        else:
            result.unchanged += 1

    stamp_first_seen(new_papers, now)
    for paper in new_papers + changed_papers:
        paper.refresh_search_text()
    reembedded = False
    if settings.MATCH_SEMANTIC_WEIGHT > 0:
        # Embedded here, in one batch, so that no digest run or page has to (papers.embeddings); a paper whose text
        # did not change keeps its vector, and its row is not rewritten for it.
        keys = [paper.embedding_key for paper in changed_papers]
        embeddings.paper_vectors(new_papers + changed_papers, save=False)
        reembedded = keys != [paper.embedding_key for paper in changed_papers]
    Paper.objects.bulk_create(new_papers)
    if changed_papers:
        update_fields = [*sorted(changed_fields), "search_title", "search_abstract", "updated_at"]
        if reembedded:
            update_fields += ["embedding", "embedding_key"]
        Paper.objects.bulk_update(changed_papers, update_fields)
    result.created = len(new_papers)
    result.updated = len(changed_papers)
    return result


def stamp_first_seen(papers, now):
    """Give each new paper of a batch its own first-seen instant, a microsecond apart from `now` back, in arXiv-id
    order (so the catalogue's order, newest first then by arXiv id, is what it would be with one instant for all).

    A topic feed's entry is updated when its paper was first seen, and feed readers and the W3C feed validator expect
    no two entries of a feed to share that time."""
    for position, paper in enumerate(sorted(papers, key=lambda paper: paper.arxiv_id)):
        paper.first_seen_at = now - timedelta(microseconds=position)


def group_by_arxiv_id(records):
    groups = {}
    for record in records:
        groups.setdefault(record.arxiv_id, []).append(record)
    return groups


def apply_record(paper, record):
    """Copy the record's non-empty values onto the paper; return the names of the fields that changed."""
    changed = set()
    for name in MERGED_FIELDS:
        value = getattr(record, name)
        if value is None or value == "" or value == [] or value == 0:
            continue
        if getattr(paper, name) != value:
            setattr(paper, name, value)
            changed.add(name)
    return changed


def find_overlong_value(paper):
    # SQLite stores any length; PostgreSQL refuses the row. Checking here makes both reject it the same way.
    for model_field in Paper._meta.concrete_fields:
        if isinstance(model_field, models.CharField) and model_field.max_length:
            value = getattr(paper, model_field.attname)
            if value and len(value) > model_field.max_length:
                return (
                    f"{model_field.name} is {len(value):,} characters long, "
                    f"more than the {model_field.max_length:,} the database holds"
                )
    return None
