"""Outages while a run is sending, with real processes: Redis restarted, the database connections cut, the mail server
busy then back, some addresses refused for good, and an email provider answering 503 in bursts.

Each test counts what the server or provider accepted per address and reads every row and run afterwards: one digest
per reader, none twice, every row final with a reason, and the run's counts equal to its rows.
"""

import pytest
from django.db import connection

from digest.models import Delivery
from subscriptions.models import Subscriber
from tests.reliability.harness import (
    WAIT_SECONDS,
    FakePostmark,
    all_final,
    outcome,
    run_to_the_end,
    seed_many_readers,
    wait_until_idle,
    workers,
    write_summary,
)
from tests.test_smtp_delivery import running_mail_server
from tests.test_worker import broker_client, wait_for

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]


def assert_one_each(summary, received, addresses):
    assert summary["readers_with_two_or_more"] == 0
    assert summary["rows_without_reason"] == 0
    assert received == dict.fromkeys(addresses, 1)
    for delivery in Delivery.objects.select_related("subscriber"):
        assert (delivery.status, delivery.error) == (Delivery.Status.SENT, "")
        assert delivery.message_id
    run = summary["runs"][0]
    assert (run["planned"], run["sent"], run["failed"], run["skipped"], run["finished"]) == (
        len(addresses), len(addresses), 0, 0, True
    )  # fmt: skip


def test_a_redis_restart_mid_run_loses_no_digest_and_sends_none_twice(tmp_path, broker):
    readers = 1000
    addresses = seed_many_readers(readers)
    client = broker_client(broker.url)
    with running_mail_server() as (mail_server, port):
        queue = f"redis-{broker.port}"
        with workers(tmp_path, port, broker, queue):
            client.send_task("digest.tasks.plan_digests", queue=queue)
            wait_for(lambda: len(mail_server.received) >= readers // 4, WAIT_SECONDS, "a quarter of the digests")
            # Killed and started again with nothing kept: every queued task is gone.
            broker.restart()
            received_at_restart = len(mail_server.received)
            left_behind = run_to_the_end(client, queue, mail_server, readers, WAIT_SECONDS)

    summary = outcome(mail_server, addresses)
    summary.update(
        fault="Redis killed and restarted empty a quarter of the way through (queued tasks lost)",
        received_at_restart=received_at_restart,
        rows_left_behind_before_recovery=left_behind,
    )
    write_summary("redis_restarted", summary)
    assert left_behind > 0, "the restart should have lost queued work; it came too late to test anything"
    assert_one_each(summary, mail_server.count_by_recipient(), addresses)


def test_cutting_the_database_connections_mid_run_loses_no_digest_and_sends_none_twice(tmp_path, broker):
    readers = 1000
    addresses = seed_many_readers(readers)
    client = broker_client(broker.url)
    cuts = []
    with running_mail_server() as (mail_server, port):
        queue = f"pg-{broker.port}"
        with workers(tmp_path, port, broker, queue):
            client.send_task("digest.tasks.plan_digests", queue=queue)
            for share in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
                wait_for(lambda s=share: len(mail_server.received) >= readers * s, WAIT_SECONDS, f"{share:.0%} sent")
                cuts.append(cut_other_connections())
            left_behind = run_to_the_end(client, queue, mail_server, readers, WAIT_SECONDS)

    summary = outcome(mail_server, addresses)
    logs = "".join((tmp_path / name).read_text() for name in ("worker1.log", "worker2.log"))
    summary.update(
        fault="every worker's PostgreSQL connection terminated (pg_terminate_backend) six times during the run",
        connections_cut=cuts,
        reconnects_logged=logs.count("Database connection failed"),
        rows_left_behind_before_recovery=left_behind,
    )
    write_summary("database_connections_cut", summary)
    assert sum(cuts) >= 6, "each cut should have ended at least one worker connection"
    assert summary["reconnects_logged"] >= 1
    assert_one_each(summary, mail_server.count_by_recipient(), addresses)


def cut_other_connections():
    """Terminate every other session on this database (the workers'), as a failover or a restart would."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_a_busy_mail_server_is_retried_until_it_recovers_and_refused_addresses_fail_once(tmp_path, broker):
    readers = 400
    addresses = seed_many_readers(readers)
    refused = set(addresses[::40])  # ten addresses the server refuses for good
    busy = {"left": 150}  # the server answers 451 to this many RCPTs, then recovers

    def reply(address, attempt):
        if address in refused:
            return "550 5.1.1 No such mailbox"
        if busy["left"] > 0:
            busy["left"] -= 1
            return "451 4.3.2 Too busy, try again later"
        return None

    client = broker_client(broker.url)
    with running_mail_server() as (mail_server, port):
        mail_server.reply_to_rcpt = reply
        queue = f"smtp-{broker.port}"
        with workers(tmp_path, port, broker, queue, count=1):
            client.send_task("digest.tasks.plan_digests", queue=queue)
            wait_for(lambda: all_final(readers), WAIT_SECONDS, "every digest to reach a final state")
            wait_until_idle(client, queue, mail_server, WAIT_SECONDS, "the worker")

    received = mail_server.count_by_recipient()
    summary = outcome(mail_server, addresses)
    retried = Delivery.objects.filter(attempts__gt=1).count()
    summary.update(
        fault="SMTP 451 to the first 150 RCPTs, then accepting; 550 for 10 addresses throughout",
        rows_retried=retried,
    )
    write_summary("smtp_busy_then_back", summary)

    assert summary["readers_with_two_or_more"] == 0
    assert retried > 0
    assert received == {address: 1 for address in addresses if address not in refused}
    for delivery in Delivery.objects.select_related("subscriber"):
        if delivery.subscriber.email in refused:
            assert delivery.status == Delivery.Status.FAILED
            assert delivery.error == "The mail server refused the address: 550 5.1.1 No such mailbox"
            assert delivery.subscriber.status == Subscriber.Status.SUPPRESSED
        else:
            assert delivery.status == Delivery.Status.SENT
    run = summary["runs"][0]
    assert (run["planned"], run["sent"], run["failed"], run["finished"]) == (readers, readers - 10, 10, True)


def test_an_email_provider_answering_503_in_bursts_is_retried_and_sends_each_digest_once(tmp_path, broker):
    readers = 400
    addresses = seed_many_readers(readers)
    client = broker_client(broker.url)
    # Requests 20-39, 80-99, 140-159, ... get 503 Service Unavailable.
    with FakePostmark(unavailable=lambda number: number % 60 >= 20 and number % 60 < 40 and number < 400) as esp:
        provider = {
            "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
            "ANYMAIL_POSTMARK_SERVER_TOKEN": "server-token",
            "ANYMAIL_POSTMARK_API_URL": esp.url,
        }
        queue = f"esp-{broker.port}"
        with workers(tmp_path, 25, broker, queue, count=1, **provider):
            client.send_task("digest.tasks.plan_digests", queue=queue)
            wait_for(lambda: all_final(readers), WAIT_SECONDS, "every digest to reach a final state")

    summary = outcome(esp_as_mail_server(esp), addresses)
    summary.update(
        fault="Postmark API answering 503 to requests 20-39 of every 60 (the first 400)", refused=esp.refused
    )
    write_summary("esp_503_bursts", summary)

    assert esp.refused >= 100
    assert esp.accepted == dict.fromkeys(addresses, 1)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    assert Delivery.objects.filter(attempts__gt=1).exists()
    run = summary["runs"][0]
    assert (run["planned"], run["sent"], run["failed"], run["finished"]) == (readers, readers, 0, True)


def esp_as_mail_server(esp):
    """The provider's counts in the shape `outcome` reads from a mail server."""

    class Accepted:
        received = [address for address, count in esp.accepted.items() for _ in range(count)]

        @staticmethod
        def count_by_recipient():
            return esp.accepted

    return Accepted
