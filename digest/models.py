"""The daily job's records: each run (DigestRun), each reader's digest of a day (Delivery) and readers' feedback.

DigestRun and Delivery change state only through the verbs here. Each is one conditional UPDATE (a row changes only
if it is still in the state the verb expects), so two workers, a retried task, recovery and an operator can act at
once and each row still changes once.
"""

from django.db import connection, models, transaction
from django.db.models import Count, F, Q, Value
from django.db.models.functions import Concat, Greatest
from django.utils import timezone

from papers.models import Paper

BULK_SIZE = 1000


def _parts(ids, size=BULK_SIZE):
    return [ids[start : start + size] for start in range(0, len(ids), size)]


class DigestRunManager(models.Manager):
    def start(self, now, pool_size):
        return self.create(started_at=now, pool_size=pool_size)

    def add_outcome(self, run_id, *, sent=0, failed=0, skipped=0):
        """Add finished digests to their run, and close the run when every planned digest is accounted for."""
        if run_id is None:
            return
        with transaction.atomic():
            runs = self.filter(pk=run_id)
            runs.update(
                sent_count=F("sent_count") + sent,
                failed_count=F("failed_count") + failed,
                skipped_count=F("skipped_count") + skipped,
            )
            # Comparing the run's own counters costs one row; asking its deliveries would read all of them per chunk.
            runs.filter(
                finished_at__isnull=True, planned_count=F("sent_count") + F("failed_count") + F("skipped_count")
            ).update(finished_at=timezone.now())

    def take_back_failures(self, run_id, count, line):
        """An operator retries `count` of the run's failed digests: they leave its failed count (and the note says
        so), so that when they finish, sent + failed + skipped again equals planned."""
        self.filter(pk=run_id).update(
            failed_count=Greatest(F("failed_count") - count, 0),
            note=Concat(F("note"), Value(line)),
        )

    def recount(self, started_before, now):
        """Recount runs started before `started_before` and still open from their rows, and close those with nothing
        left to do.

        A run's counters are added to as chunks finish; a chunk whose count was lost to a dropped connection would
        otherwise leave its run open for ever."""
        open_runs = list(self.filter(finished_at=None, started_at__lt=started_before).values_list("id", flat=True))
        # A run with digests claimed since then is being sent: its live attempts add what they write to its counts
        # when their chunk ends, so counting their rows now would count them twice.
        busy = set()
        for part in _parts(open_runs):
            claimed = Delivery.objects.filter(run_id__in=part, claimed_at__gte=started_before)
            busy.update(claimed.order_by().values_list("run_id", flat=True).distinct())
        open_runs = [run_id for run_id in open_runs if run_id not in busy]
        statuses = {}
        for part in _parts(open_runs):
            rows = Delivery.objects.filter(run_id__in=part).order_by().values_list("run_id", "status")
            for run_id, status, count in rows.annotate(count=Count("id")):
                statuses.setdefault(run_id, {})[status] = count
        empty = [run_id for run_id in open_runs if run_id not in statuses]
        for part in _parts(empty):
            self.filter(id__in=part, finished_at=None).update(
                sent_count=0, failed_count=0, skipped_count=0, finished_at=now
            )
        for run_id, counts in statuses.items():
            unfinished = counts.get(Delivery.Status.PENDING, 0) + counts.get(Delivery.Status.SENDING, 0)
            self.filter(pk=run_id, finished_at=None).update(
                sent_count=counts.get(Delivery.Status.SENT, 0),
                failed_count=counts.get(Delivery.Status.FAILED, 0),
                skipped_count=counts.get(Delivery.Status.SKIPPED, 0),
                finished_at=None if unfinished else now,
            )


class DigestRun(models.Model):
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    pool_size = models.PositiveIntegerField(default=0)
    planned_count = models.PositiveIntegerField("planned", default=0)
    sent_count = models.PositiveIntegerField("sent", default=0)
    failed_count = models.PositiveIntegerField("failed", default=0)
    skipped_count = models.PositiveIntegerField("skipped", default=0)
    note = models.TextField(blank=True)

    objects = DigestRunManager()

    class Meta:
        ordering = ["-started_at"]

    def __str__(self):
        return f"Digest run {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def duration(self):
        if self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def set_planned(self, count, now):
        """Record how many digests the run planned; a run with nobody to send to is over as soon as it is planned."""
        self.planned_count, self.finished_at = count, None if count else now
        DigestRun.objects.filter(pk=self.pk).update(planned_count=self.planned_count, finished_at=self.finished_at)


class DeliveryQuerySet(models.QuerySet):
    def claim(self, claim, now, window=1):
        """Take the pending rows among these for one send attempt (pending -> sending, tagged with `claim`), which
        hands at most `window` of them to the mail backend before their outcomes are written."""
        return self.filter(status=Delivery.Status.PENDING).update(
            status=Delivery.Status.SENDING,
            claim_token=claim,
            claimed_at=now,
            send_window=window,
            attempts=F("attempts") + 1,
        )

    def release(self):
        """Give the rows still `sending` among these back to pending, for another attempt to claim."""
        return self.filter(status=Delivery.Status.SENDING).update(status=Delivery.Status.PENDING, claim_token=None)

    def fail_interrupted(self, now):
        """Fail the rows still `sending` among these as interrupted: they may have reached the mail server, so they
        are never sent again (at most once). Returns how many."""
        return self.filter(status=Delivery.Status.SENDING).update(
            status=Delivery.Status.FAILED,
            interrupted=True,
            error=Delivery.INTERRUPTED,
            finished_at=now,
            claim_token=None,
        )

    def give_back(self, reason, now, *, final):
        """Rows a send attempt could not hand over (no mail connection): failed with `reason` when `final`, else
        pending again with it, for a retry."""
        if final:
            return self.update(status=Delivery.Status.FAILED, error=reason, finished_at=now, claim_token=None)
        return self.update(status=Delivery.Status.PENDING, error=reason, claim_token=None)

    def mark_queued(self, now):
        """Note that these pending rows were queued again now, so recovery waits as long again before the next time."""
        return self.filter(status=Delivery.Status.PENDING).update(claimed_at=now)

    def retry_failed(self):
        """Failed rows back to pending for an operator's retry; interrupted ones stay failed (they may have gone)."""
        return self.filter(status=Delivery.Status.FAILED, interrupted=False).update(
            status=Delivery.Status.PENDING, claim_token=None, claimed_at=None, finished_at=None
        )


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    FINAL_STATUSES = (Status.SENT, Status.FAILED, Status.SKIPPED)
    INTERRUPTED = "Interrupted while sending; it may have reached the mail server, so it is not sent again."
    # What a send attempt writes when the backend has answered (Delivery.record).
    RECORDED_FIELDS = ["status", "message_id", "paper_ids", "shown", "error", "finished_at", "claim_token"]

    subscriber = models.ForeignKey("subscriptions.Subscriber", on_delete=models.CASCADE, related_name="deliveries")
    run = models.ForeignKey(DigestRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="deliveries")
    digest_date = models.DateField(help_text="The reader's local date this digest is for.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    # The papers in the email, best first. A list on the row rather than a join table: a run writes one row per
    # reader, and "never send a paper twice" reads only the reader's recent rows.
    paper_ids = models.JSONField(default=list, blank=True)
    # What the email showed beside each paper (its matched topics and why they matched, its upvotes then) and in the
    # footer, so "view in browser" shows the email as sent:
    # {"labels": [[...], ...], "reasons": [[...], ...], "upvotes": [...], "topics": [...], "weekly": bool}.
    shown = models.JSONField(default=dict, blank=True)
    claim_token = models.UUIDField(null=True, blank=True, editable=False, help_text="Which send attempt holds it.")
    message_id = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True, help_text="Why it failed or was skipped.")
    interrupted = models.BooleanField(
        default=False,
        help_text="Failed while the mail server held it: it may have been delivered, so it is never sent again.",
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    send_window = models.PositiveSmallIntegerField(
        default=1,
        editable=False,
        help_text="How many digests the attempt holding it may hand to the mail backend before writing their outcomes.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-digest_date", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["subscriber", "digest_date"], name="one_delivery_per_subscriber_per_day"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "sending", "sent", "failed", "skipped"]),
                name="delivery_status_valid",
            ),
        ]
        indexes = [
            # The admin's list, newest first (ORDER BY digest_date DESC, id DESC), unfiltered and by status.
            models.Index(fields=["digest_date", "id"], name="delivery_date_id"),
            models.Index(fields=["status", "digest_date", "id"], name="delivery_status_date_id"),
            # Finding the digest a provider's report or a reader's complaint names.
            models.Index(fields=["message_id"], name="delivery_message_id"),
        ]

    def __str__(self):
        return f"Digest for subscriber {self.subscriber_id} on {self.digest_date}"

    def get_papers(self):
        """The papers sent, in the order the email listed them (papers deleted since are left out)."""
        by_id = Paper.objects.in_bulk(self.paper_ids)
        return [by_id[paper_id] for paper_id in self.paper_ids if paper_id in by_id]

    def record(self, claim):
        """Write this finished delivery (its RECORDED_FIELDS), if `claim` still holds it; return whether it did.

        One hand-written UPDATE committed at once, not the ORM's: on PostgreSQL it takes 0.54 ms per outcome where the
        ORM's filter().update() takes 1.16 ms, flushed or not (medians of 5 rounds of 1,500, `python
        bench/record_bench.py`, on this project's 2-core machine). Its commit does not wait for the disk
        (synchronous_commit off, for this transaction only), from within the same statement. Every other session sees
        the row at once; only a crash of the database server itself can lose the last fraction of a second of such
        commits, and recovery treats claims older than the server's start accordingly (every row still `sending`
        fails, none is sent again)."""
        self.claim_token = None
        with connection.cursor() as cursor:
            cursor.execute(_record_statement(unflushed=True), _record_values(self, claim))
            if cursor.rowcount == 1:
                return True
        return self._recorded()

    def _recorded(self):
        # Not ours any more, or ours already: a write repeated after a dropped connection finds the first committed.
        return Delivery.objects.filter(
            pk=self.pk,
            claim_token=None,
            status=self.status,
            finished_at=self.finished_at,
            message_id=self.message_id,
        ).exists()

    @staticmethod
    def record_many(deliveries, claim):
        """Write several finished deliveries, if `claim` still holds them, in one transaction: one round trip for
        the updates on PostgreSQL (psycopg sends them in pipeline mode), committed as `record` commits. Returns those
        it could not write: recovery took them back (a planner judged this worker dead). Django's bulk_update would
        build a CASE per row and field, and could not tell which rows were no longer ours."""
        if len(deliveries) == 1:
            return [] if deliveries[0].record(claim) else list(deliveries)
        if not deliveries:
            return []
        for delivery in deliveries:
            delivery.claim_token = None
        with transaction.atomic(), connection.cursor() as cursor:
            statement = _record_statement(unflushed=True)
            cursor.executemany(statement, [_record_values(delivery, claim) for delivery in deliveries])
            written = cursor.rowcount
        if written == len(deliveries):
            return []
        return [delivery for delivery in deliveries if not delivery._recorded()]


def _record_statement(*, unflushed=False):
    quote = connection.ops.quote_name
    meta = Delivery._meta
    columns = [meta.get_field(name).column for name in Delivery.RECORDED_FIELDS]
    statement = "UPDATE {} SET {} WHERE {} = %s AND {} = %s".format(
        quote(meta.db_table),
        ", ".join(f"{quote(column)} = %s" for column in columns),
        quote(meta.pk.column),
        quote(meta.get_field("claim_token").column),
    )
    if unflushed and connection.vendor == "postgresql":
        # The statement's transaction commits without waiting for the disk: set_config(..., true) lasts until that
        # commit, and setting it from the statement saves the round trip a SET LOCAL would cost.
        statement += " AND set_config('synchronous_commit', 'off', true) IS NOT NULL"
    return statement


def _record_values(delivery, claim):
    fields = [Delivery._meta.get_field(name) for name in Delivery.RECORDED_FIELDS]
    token = Delivery._meta.get_field("claim_token").get_db_prep_value(claim, connection)
    values = [field.get_db_prep_save(getattr(delivery, field.attname), connection) for field in fields]
    return [*values, delivery.pk, token]


class Feedback(models.Model):
    """A reader's "more like this" or "less like this" on a paper, from the links in their digest (digest.feedback).

    One per reader and paper: a second click changes the direction. It nudges the reader's next rankings
    (digest.selection) and is listed, with an undo, in their preference center.
    """

    class Direction(models.TextChoices):
        MORE = "more", "More like this"
        LESS = "less", "Less like this"

    subscriber = models.ForeignKey("subscriptions.Subscriber", on_delete=models.CASCADE, related_name="feedback")
    paper = models.ForeignKey(Paper, on_delete=models.CASCADE, related_name="feedback")
    direction = models.CharField(max_length=4, choices=Direction.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "feedback"
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["subscriber", "paper"], name="one_feedback_per_subscriber_per_paper"),
            models.CheckConstraint(condition=Q(direction__in=["more", "less"]), name="feedback_direction_valid"),
        ]

    def __str__(self):
        return f"{self.get_direction_display()} {self.paper_id} from subscriber {self.subscriber_id}"
