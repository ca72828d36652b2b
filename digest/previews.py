"""The exact digest a reader would get, for operators: built by the same code as a real send, with nothing sent,
claimed or recorded.

"Exact" means the same selection (the reader's topics, keywords, history of papers already sent), the same renderer
and the same headers; only what is made at send time differs (a fresh Message-ID and MIME boundary, and the Date).
"""

import dataclasses
from email.utils import parseaddr

from django.utils import timezone

from digest import compose
from digest.rendering import DigestRenderer, why_text
from papers.models import Paper
from papers.ranking import Pick, Pool

TEST_SUBJECT_PREFIX = "[Test] "
# Headers a test copy must not carry: a mail client's unsubscribe button would unsubscribe the reader.
TEST_DROPPED_HEADERS = ("List-Unsubscribe", "List-Unsubscribe-Post")


@dataclasses.dataclass
class Preview:
    subscriber: object
    day: object
    picks: list
    message: object  # the EmailMessage, or None when there is nothing to send
    reason: str  # why a real run would not send it ("" when it would)
    pool_size: int
    delivery: object = None  # the reader's Delivery for the day, when there is one already

    @property
    def papers(self):
        """[(pick, why it is there)] as the email's cards say it (digest.rendering.why_text)."""
        return [(pick, why_text(pick.labels, pick.reasons)) for pick in self.picks]

    @property
    def html(self):
        return self.message.alternatives[0][0] if self.message else ""

    @property
    def text(self):
        return self.message.body if self.message else ""

    def get_headers(self):
        """The headers as the mail backend would write them (From, To, Subject, List-Unsubscribe, …)."""
        if self.message is None:
            return []
        mime = self.message.message()
        return [(name, str(value)) for name, value in mime.items() if name.lower() != "content-type"]


def local_today(subscriber, now=None):
    return timezone.localtime(now or timezone.now(), subscriber.time_zone).date()


def build_preview(subscriber, day=None, now=None):
    """The digest `subscriber` would get for `day` (their local today by default) if it were sent now."""
    now = now or timezone.now()
    day = day or local_today(subscriber, now)
    batch = compose.Batch([subscriber.id], now, pool=Pool.load(now))
    _picks, reason = batch.choose(subscriber)
    # One digest per reader and day: a day that has one already says so, not why its papers are gone from the pool.
    delivery = subscriber.deliveries.filter(digest_date=day).first()
    if delivery is not None:
        reason = delivery_reason(delivery, today=day == local_today(subscriber, now))
    # An operator may preview a paused reader too: show what they would get, and say why it would not go.
    picks = batch.pick(subscriber)
    message = None
    if picks or not reason:
        batch.prepare([picks])
        message = batch.build(subscriber, picks, day)
    return Preview(subscriber, day, picks, message, reason or "", len(batch.pool), delivery)


def delivery_reason(delivery, *, today):
    """Why a real run sends nothing for a day that has its Delivery already."""
    day = delivery.digest_date
    name = "Today's digest" if today else f"The digest of {day.day} {day:%B %Y}"
    if delivery.status == delivery.Status.SENT:
        return "Already sent today." if today else f"Already sent for {day.day} {day:%B %Y}."
    if delivery.status == delivery.Status.FAILED:
        return f"{name} failed: {delivery.error}"
    if delivery.status == delivery.Status.SKIPPED:
        return f"{name} was skipped: {delivery.error}"
    return f"{name} is being sent."


def make_test_copy(preview, to):
    """The previewed email addressed to an operator: same body, "[Test]" subject, and no List-Unsubscribe headers."""
    message = preview.message
    message.to = [to]
    message.cc, message.bcc, message.reply_to = [], [], []
    message.subject = TEST_SUBJECT_PREFIX + message.subject
    for name in TEST_DROPPED_HEADERS:
        message.extra_headers.pop(name, None)
    message.extra_headers["X-Digest-Test"] = f"Preview of the digest for {parseaddr(preview.subscriber.email)[1]}"
    message.tags = ["digest-test"]
    message.metadata = {}
    return message


def build_delivered(delivery):
    """The email a sent digest was, for "view in browser": its papers in order, with the topics (and why they
    matched) and upvotes it showed (kept on the Delivery as `shown`) and the reader's own links. Only a paper's text
    edited since, or a paper deleted since, can make it differ from what was sent."""
    shown = delivery.shown or {}
    labels, reasons, upvotes = shown.get("labels", []), shown.get("reasons", []), shown.get("upvotes", [])
    position = {paper_id: index for index, paper_id in enumerate(delivery.paper_ids)}
    picks = []
    for paper in delivery.get_papers():
        index = position[paper.id]
        if index < len(upvotes):
            paper.upvotes = upvotes[index]
        paper_labels = tuple(labels[index]) if index < len(labels) else ()
        paper_reasons = tuple(reasons[index]) if index < len(reasons) else ()
        picks.append(Pick(paper, 0.0, 0.0, paper_labels, paper_reasons))
    offered = Paper.objects.in_bulk(shown.get("trending", []))  # a quiet day's trending papers
    message = DigestRenderer().build(
        delivery.subscriber,
        picks,
        day=delivery.digest_date,
        labels=shown.get("topics", []),
        weekly=shown.get("weekly"),
        first=shown.get("first", False),
        trending=[Pick(offered[id_], 0.0, 0.0, ()) for id_ in shown.get("trending", []) if id_ in offered],
    )
    return message.alternatives[0][0]
