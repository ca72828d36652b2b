"""Every admin changelist runs the same number of queries whatever the number of rows it shows: no query per row.

Each page is rendered with a few rows, then again with ten times as many (readers with topics, consents, deliveries,
runs, papers), and the query counts must be equal.
"""

import itertools

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from digest.models import Delivery, DigestRun, Feedback
from papers.models import FetchRun, Paper, Topic
from subscriptions.models import ErasedAddress, MailEvent, Subscriber

FEW, MANY = 3, 30

# (name, URL with {placeholders} from Dataset.values(), whether the page's row count grows with the data)
PAGES = [
    ("subscribers", "/admin/subscriptions/subscriber/", True),
    ("subscribers by status", "/admin/subscriptions/subscriber/?status__exact=active", True),
    ("subscribers by topic", "/admin/subscriptions/subscriber/?topics__id__exact={topic}", True),
    ("subscribers by frequency", "/admin/subscriptions/subscriber/?frequency__exact=daily", True),
    ("subscribers found by address", "/admin/subscriptions/subscriber/?q={email}", False),
    ("subscribers found by part of an address", "/admin/subscriptions/subscriber/?q=example", True),
    ("subscribers sorted by email", "/admin/subscriptions/subscriber/?o=1", True),
    ("deliveries", "/admin/digest/delivery/", True),
    ("deliveries by status", "/admin/digest/delivery/?status__exact=failed", True),
    ("deliveries by date", "/admin/digest/delivery/?digest_date__gte={week_ago}", True),
    ("deliveries of a run", "/admin/digest/delivery/?run__id__exact={run}", True),
    ("deliveries found by address", "/admin/digest/delivery/?q={email}", False),
    ("deliveries found by part of an address", "/admin/digest/delivery/?q=example", True),
    ("deliveries found by Message-ID", "/admin/digest/delivery/?q={message_id}", False),
    ("digest runs", "/admin/digest/digestrun/", True),
    ("digest runs that planned digests", "/admin/digest/digestrun/?outcome=planned", True),
    ("topics", "/admin/papers/topic/", True),
    ("papers", "/admin/papers/paper/", True),
    ("papers found by title", "/admin/papers/paper/?q=paper", True),
    ("fetch runs", "/admin/papers/fetchrun/", True),
    ("erased addresses", "/admin/subscriptions/erasedaddress/", True),
    ("mail events", "/admin/subscriptions/mailevent/", True),
    ("feedback", "/admin/digest/feedback/", True),
    ("complaints", "/admin/subscriptions/mailevent/?event_type__exact=complained", True),
]


class Dataset:
    """Readers, each with 1-3 topics, two consent records, a sent digest (today) and a failed one (yesterday) of one
    run; a topic for every three readers; an earlier run, a paper, a fetch run and an erased address per reader."""

    def __init__(self, make_reader):
        self.make_reader = make_reader
        self.numbers = itertools.count(1)
        self.topics = [Topic.objects.create(name=f"Topic {n}", slug=f"topic-{n}") for n in range(2)]
        self.run = DigestRun.objects.create(finished_at=timezone.now())
        self.first = None

    def grow(self, readers):
        today = timezone.now().date()
        while Subscriber.objects.count() < readers:
            n = next(self.numbers)
            if n % 3 == 0:
                self.topics.append(Topic.objects.create(name=f"Topic {len(self.topics)}", slug=f"t{len(self.topics)}"))
            reader = self.make_reader(f"reader{n}@example.com", topics=self.topics[: 1 + n % 3])
            reader.record("subscribe", ip="192.0.2.1", wording="Send me the digest.")
            reader.record("confirm", ip="192.0.2.1")
            paper = Paper.objects.create(arxiv_id=f"2611.{n:05d}", title=f"Paper {n}", raw_title=f"Paper {n}")
            DigestRun.objects.create(planned_count=1, sent_count=1, finished_at=timezone.now())  # an earlier run
            run = self.run
            DigestRun.objects.filter(pk=run.pk).update(planned_count=2 * n, sent_count=n, failed_count=n)
            Delivery.objects.create(
                subscriber=reader, run=run, digest_date=today, status="sent", paper_ids=[paper.pk],
                message_id=f"<{n}@digest.test>", attempts=1, finished_at=timezone.now(),
            )  # fmt: skip
            Delivery.objects.create(
                subscriber=reader, run=run, digest_date=today - timezone.timedelta(days=1), status="failed",
                error="The mail server refused the message: 554 no", attempts=1,
            )  # fmt: skip
            FetchRun.objects.create(source="hf", fetched_count=n)
            ErasedAddress.objects.create(email_hash=ErasedAddress.hash(f"gone{n}@example.com"))
            MailEvent.objects.create(subscriber=reader, esp="mailgun", event_type="complained", event_id=f"e{n}")
            Feedback.objects.create(subscriber=reader, paper=paper, direction="more")
            if self.first is None:
                self.first = reader

    def values(self):
        reader = self.first
        return {
            "topic": self.topics[0].pk,
            "email": reader.email,
            "run": self.run.pk,
            "message_id": reader.deliveries.get(status="sent").message_id,
            "week_ago": timezone.now().date() - timezone.timedelta(days=7),
        }


@pytest.fixture
def dataset(db, make_reader):
    return Dataset(make_reader)


def render(client, url):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries), response.context["cl"].result_count, queries


@pytest.mark.parametrize(("url", "grows"), [(url, grows) for _name, url, grows in PAGES], ids=[p[0] for p in PAGES])
def test_changelist_queries_do_not_grow_with_rows(admin_client, dataset, url, grows):
    dataset.grow(FEW)
    url = url.format(**dataset.values())
    render(admin_client, url)  # warm-up: per-process caches (content types, ...)
    few, few_rows, _ = render(admin_client, url)
    dataset.grow(MANY)
    many, many_rows, queries = render(admin_client, url)
    assert many_rows > few_rows if grows else many_rows == few_rows >= 1
    sql = "\n".join(query["sql"] for query in queries.captured_queries)
    assert many == few, f"{url}: {few} queries with {few_rows} rows, {many} with {many_rows}:\n{sql}"


def test_the_subscriber_list_reads_topics_and_last_deliveries_in_its_own_queries(admin_client, dataset):
    """What the list shows per row comes from the page's query and one prefetch, not from a query per row."""
    dataset.grow(MANY)
    queries, rows, captured = render(admin_client, "/admin/subscriptions/subscriber/")
    assert rows == MANY
    statements = [query["sql"] for query in captured.captured_queries]
    page = [sql for sql in statements if "LIMIT" in sql and "last_delivery_date" in sql]
    assert len(page) == 1 and "ORDER BY" in page[0]
    assert sum('"digest_delivery"' in sql for sql in statements) == 1  # the subqueries of that one query
    assert sum('"digest_topic"' in sql for sql in statements) == 2  # the topic filter's choices, the prefetch
