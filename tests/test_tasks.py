"""The tasks as the embedded default runs them: inline (eager), with no broker. tests/test_worker.py runs a real one."""

import smtplib

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend

from digest import sending
from digest.celery import app
from digest.models import Delivery, DigestRun
from digest.tasks import plan_digests


class BusyOnceBackend(LocmemBackend):
    """Answers 451 to the first message it is given, then accepts."""

    refused = 0

    def send_messages(self, messages):
        if BusyOnceBackend.refused == 0:
            BusyOnceBackend.refused += 1
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
