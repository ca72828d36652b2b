"""Sending several digests at once (digest.senders): each sending thread's mail connection, what the threads never
touch, and stops that arrive while messages are in the backend's hands or just answered.

The SMTP tests talk to a real SMTP server (aiosmtpd) on loopback that counts the connections it was given and the
QUITs that ended them; the others use Django's locmem backend.
"""

import threading

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from celery.exceptions import SoftTimeLimitExceeded
from django.core import mail
from django.core.mail.backends import locmem as locmem_backend
from django.db import connection as database
from django.utils import timezone

from digest import compose, planning, senders, sending
from digest.models import Delivery
from tests.test_smtp_delivery import MailServer, free_port

# The longest a test waits for a sending thread to reach the point it stages; reaching it is what is asserted.
REACH_SECONDS = 10


class CountingMailServer(MailServer):
    """A MailServer that also counts the SMTP sessions ended with QUIT."""

    def __init__(self):
        super().__init__()
        self.quits = 0

    async def handle_QUIT(self, server, session, envelope):
        with self._lock:
            self.quits += 1
        return "221 Bye"


class CountingController(Controller):
    """aiosmtpd's controller, counting the connections the server was given (one SMTP instance each)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.connections = 0

    def factory(self):
        self.connections += 1
        return SMTP(self.handler, **self.SMTP_kwargs)


@pytest.fixture
def smtp_server(settings):
    """(server, connections): the MailServer and a function giving the connections clients opened to it so far."""
    server = CountingMailServer()
    controller = CountingController(server, hostname="127.0.0.1", port=free_port())
    controller.start()
    # start() itself connects once, to check the server is up.
    before = controller.connections
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    try:
        yield server, lambda: controller.connections - before
    finally:
        controller.stop()


def planned(make_reader, topic, count):
    readers = [make_reader(topics=[topic]) for _ in range(count)]
    now = timezone.now()
    return readers, planning.plan_deliveries(now, planning.start_run(now), ignore_hour=True)


def test_each_sending_thread_keeps_one_smtp_connection_for_its_messages_and_quits_it(
    smtp_server, settings, gnn, make_reader
):
    server, connections = smtp_server
    settings.DIGEST_SEND_CONCURRENCY = 2
    readers, ids = planned(make_reader, gnn, 6)

    assert sending.send_deliveries(ids).sent == 6

    assert server.count_by_recipient() == dict.fromkeys((reader.email for reader in readers), 1)
    # Two threads, one connection each, kept across their messages and closed with QUIT at the end.
    assert (connections(), server.quits) == (2, 2)


def test_a_deferred_message_costs_its_thread_a_new_connection_and_every_connection_is_quit(
    smtp_server, settings, gnn, make_reader
):
    server, connections = smtp_server
    settings.DIGEST_SEND_CONCURRENCY = 1
    readers, ids = planned(make_reader, gnn, 3)
    server.reply_to_rcpt = lambda address, attempt: "451 Try again later" if address == readers[0].email else None

    outcome = sending.send_deliveries(ids)

    assert (outcome.sent, outcome.retry_ids) == (2, [Delivery.objects.get(subscriber=readers[0]).id])
    assert server.count_by_recipient() == {readers[1].email: 1, readers[2].email: 1}
    assert (connections(), server.quits) == (2, 2)


def test_a_chunk_whose_emails_all_fail_to_build_quits_its_mail_connection(
    smtp_server, settings, gnn, make_reader, monkeypatch
):
    server, connections = smtp_server
    _readers, ids = planned(make_reader, gnn, 2)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in rendering")

    monkeypatch.setattr(compose.Batch, "build", broken)
    assert sending.send_deliveries(ids).failed == 2

    assert server.count_by_recipient() == {}
    assert connections() == server.quits == 1


class RecordsDatabaseUse(locmem_backend.EmailBackend):
    """locmem, noting for each thread, as it closes its connection at the end, whether that thread ever opened a
    database connection."""

    used = []

    def close(self):
        type(self).used.append((threading.current_thread(), database.connection is not None))
        super().close()


def test_the_sending_threads_never_touch_the_database(settings, gnn, make_reader, monkeypatch):
    settings.EMAIL_BACKEND = "tests.test_senders.RecordsDatabaseUse"
    settings.DIGEST_SEND_CONCURRENCY = 4
    monkeypatch.setattr(RecordsDatabaseUse, "used", [])
    readers, ids = planned(make_reader, gnn, 8)

    assert sending.send_deliveries(ids).sent == 8

    assert len(mail.outbox) == 8
    sending_threads = [used for thread, used in RecordsDatabaseUse.used if thread is not threading.current_thread()]
    assert sending_threads and not any(sending_threads)


def test_a_stop_while_answers_are_collected_never_sends_one_of_them_twice(
    locmem, settings, gnn, make_reader, monkeypatch
):
    # Every message was taken; the task's soft time limit fires as the first answer is being written down.
    settings.DIGEST_SEND_CONCURRENCY = 16
    readers, ids = planned(make_reader, gnn, 3)
    apply, calls = sending._apply, []

    def stopped_on_the_first(*args):
        calls.append(args)
        if len(calls) == 1:
            raise SoftTimeLimitExceeded()
        return apply(*args)

    monkeypatch.setattr(sending, "_apply", stopped_on_the_first)
    with pytest.raises(SoftTimeLimitExceeded):
        sending.send_deliveries(ids)

    went_out = {message.to[0] for message in mail.outbox}
    # What went out is recorded, or failed as interrupted: never pending, to be sent again.
    for reader in readers:
        if reader.email in went_out:
            assert Delivery.objects.get(subscriber=reader).status in ("sent", "failed")
    monkeypatch.undo()
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    sending.send_deliveries(ids)
    assert sorted(message.to[0] for message in mail.outbox) == sorted({message.to[0] for message in mail.outbox})


class HeldUntilReleased(locmem_backend.EmailBackend):
    """locmem that holds each message until `release` is set, telling `holding` it has one."""

    holding = None
    release = None

    def send_messages(self, messages):
        type(self).holding.set()
        assert type(self).release.wait(REACH_SECONDS), "never released"
        return super().send_messages(messages)


def test_a_stop_while_the_backend_answers_never_sends_that_message_twice(settings, gnn, make_reader, monkeypatch):
    # The task's time limit fires while the only message is in the backend's hands. Abandoning the attempt looks at
    # the message just as its sending thread writes down that it was taken: it must count as taken or maybe taken.
    settings.EMAIL_BACKEND = "tests.test_senders.HeldUntilReleased"
    monkeypatch.setattr(HeldUntilReleased, "holding", threading.Event())
    monkeypatch.setattr(HeldUntilReleased, "release", threading.Event())
    [reader], ids = planned(make_reader, gnn, 1)
    here = threading.current_thread()
    made = []
    answered_changed = threading.Condition()

    class OwnedLock:
        """A lock that knows which thread holds it."""

        def __init__(self):
            self._lock, self.owner = threading.Lock(), None

        def __enter__(self):
            self._lock.acquire()
            self.owner = threading.current_thread()

        def __exit__(self, *exc):
            self.owner = None
            self._lock.release()

    real_init = senders.Senders.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self._lock = OwnedLock()
        made.append(self)

    class WatchedSlot(senders.Slot):
        """A slot whose first look at `answered` from the stopping thread lets the backend answer, then waits until
        the sending thread wrote its answer down, unless the stopping thread holds the lock that keeps it out."""

        looked = False

        @property
        def answered(self):
            value = self.__dict__.get("_answered", False)
            if threading.current_thread() is here and not self.looked:
                self.looked = True
                HeldUntilReleased.release.set()
                lock = made[0]._lock
                with answered_changed:
                    reached = answered_changed.wait_for(
                        lambda: self.__dict__.get("_answered") or lock.owner is here, REACH_SECONDS
                    )
                assert reached, "the sending thread never answered"
            return value

        @answered.setter
        def answered(self, value):
            with answered_changed:
                self.__dict__["_answered"] = value
                answered_changed.notify_all()

    def stopped_while_it_is_held(self):
        assert HeldUntilReleased.holding.wait(REACH_SECONDS), "the message never reached the backend"
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(senders.Senders, "__init__", init)
    monkeypatch.setattr(senders, "Slot", WatchedSlot)
    monkeypatch.setattr(senders.Senders, "answers", stopped_while_it_is_held)
    with pytest.raises(SoftTimeLimitExceeded):
        sending.send_deliveries(ids)
    for thread in made[0]._threads:
        thread.join(REACH_SECONDS)

    assert [message.to[0] for message in mail.outbox] == [reader.email]
    delivery = Delivery.objects.get()
    # It may have gone out (it did): failed as interrupted, never sent again.
    assert (delivery.status, delivery.error) == ("failed", Delivery.INTERRUPTED)
    monkeypatch.undo()
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert sending.send_deliveries(ids).sent == 0
    assert [message.to[0] for message in mail.outbox] == [reader.email]
