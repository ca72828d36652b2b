"""The tasks as the embedded default runs them: inline (eager), with no broker. tests/test_worker.py runs a real one."""

import smtplib
import threading

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend

from config.celery import app
from digest import sending
from digest.models import Delivery, DigestRun
from digest.tasks import plan_digests


class BusyOnceBackend(LocmemBackend):
    """Answers 451 to the first message it is given, then accepts (messages come from several sending threads)."""

    refused = 0
    lock = threading.Lock()

    def send_messages(self, messages):
        with BusyOnceBackend.lock:
            first, BusyOnceBackend.refused = BusyOnceBackend.refused == 0, BusyOnceBackend.refused + 1
        if first:
            raise smtplib.SMTPDataError(451, b"Try again later")
        return super().send_messages(messages)


@pytest.fixture
def eager(settings, monkeypatch):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    saved = app.conf.task_always_eager
    app.conf.task_always_eager = True
    monkeypatch.setattr(sending.time, "sleep", lambda seconds: None)
    yield
    app.conf.task_always_eager = saved


@pytest.fixture
def readers(make_paper, make_topic, make_reader):
    topic = make_topic("Graph neural networks")
    make_paper("Graph neural networks at scale")
    return [make_reader(topics=[topic], send_hour=0) for _ in range(3)]


def test_plan_digests_sends_inline_without_a_broker(eager, readers):
    assert plan_digests.delay().get() == 3
    assert sorted(message.to[0] for message in mail.outbox) == sorted(reader.email for reader in readers)
    assert DigestRun.objects.get().sent_count == 3


def test_a_transient_failure_is_retried_by_the_task(eager, readers, settings, monkeypatch):
    settings.EMAIL_BACKEND = "tests.test_tasks.BusyOnceBackend"
    monkeypatch.setattr(BusyOnceBackend, "refused", 0)
    plan_digests.delay()
    assert len(mail.outbox) == 3
    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.Status.SENT}
    assert sorted(Delivery.objects.values_list("attempts", flat=True)) == [1, 1, 2]


def test_a_worker_that_loses_the_database_retries_the_chunk_and_sends_each_digest_once(eager, readers, monkeypatch):
    # As a worker runs it (not eagerly): the database stays out of reach past sending's own reconnects, so the task
    # asks Celery to retry it; the retry (run inline here) sends what the first attempt could not.
    from celery.exceptions import Retry
    from django.db import OperationalError
    from django.utils import timezone

    from digest import planning
    from digest.tasks import send_deliveries

    now = timezone.now()
    run = planning.start_run(now)
    ids = planning.plan_deliveries(now, run)
    real, calls = sending.send_deliveries, []

    def database_gone_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise OperationalError("terminating connection due to administrator command")
        return real(*args, **kwargs)

    monkeypatch.setattr(sending, "send_deliveries", database_gone_once)
    send_deliveries.push_request(
        args=[ids, run.id], kwargs={}, retries=0, id="first-attempt", is_eager=False, called_directly=False
    )
    try:
        with pytest.raises(Retry):
            send_deliveries.run(ids, run.id)
    finally:
        send_deliveries.pop_request()

    assert sorted(message.to[0] for message in mail.outbox) == sorted(reader.email for reader in readers)
    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.Status.SENT}
    run.refresh_from_db()
    assert (run.sent_count, run.finished_at is not None) == (3, True)


@pytest.mark.django_db(transaction=True)
def test_a_dropped_database_connection_costs_a_reconnect_not_the_write(monkeypatch, caplog):
    from django.db import OperationalError, connection

    monkeypatch.setattr(sending._database_retry, "sleep", lambda seconds: None)
    attempts = []

    def write():
        attempts.append(connection.connection)
        if len(attempts) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone()[0]

    connection.ensure_connection()
    assert sending.on_database(write) == 1
    assert len(attempts) == 2
    assert attempts[1] is None, "the broken connection was closed; the retry opened a new one"
    assert "Database connection failed (server closed the connection unexpectedly); reconnecting." in caplog.text


class PremailerRuns:
    """Counts premailer's passes (each inlines the CSS of a batch of cards, or of a shell)."""

    def __init__(self, monkeypatch):
        import premailer

        self.count = 0
        transform = premailer.Premailer.transform

        def counted(premailer_self, *args, **kwargs):
            self.count += 1
            return transform(premailer_self, *args, **kwargs)

        monkeypatch.setattr(premailer.Premailer, "transform", counted)


def test_a_later_task_in_the_process_reuses_the_inlined_cards_and_renders_an_edited_paper_anew(
    eager, readers, monkeypatch
):
    from django.utils import timezone

    from digest import planning
    from digest.tasks import send_deliveries
    from papers.models import Paper

    now = timezone.now()
    run = planning.start_run(now)
    first, second, third = planning.plan_deliveries(now, run)
    premailer_runs = PremailerRuns(monkeypatch)

    send_deliveries.delay([first], run.id)
    assert premailer_runs.count >= 1  # the card, and the shell unless an earlier digest today inlined it
    runs_after_first = premailer_runs.count
    send_deliveries.delay([second], run.id)
    assert premailer_runs.count == runs_after_first

    paper = Paper.objects.get()
    paper.title = "Graph neural networks at a larger scale"
    paper.save()
    send_deliveries.delay([third], run.id)
    assert premailer_runs.count == runs_after_first + 1  # the edited card only: the shell is the day's
    html = {message.to[0]: message.alternatives[0][0] for message in mail.outbox}
    address = dict(Delivery.objects.values_list("id", "subscriber__email"))
    assert "Graph neural networks at scale</a></h3>" in html[address[second]]
    assert "Graph neural networks at a larger scale</a></h3>" in html[address[third]]
