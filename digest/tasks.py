"""Celery tasks: thin wrappers that call planning and sending (see those modules for the rules)."""

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from digest import planning, recovery, sending
from subscriptions.mailerrors import retry_delay


@shared_task(acks_late=True)
def plan_digests():
    """Beat runs this every 15 minutes: plan everyone due and queue their digests in chunks."""
    now = timezone.now()
    for run_id, chunk in recovery.recover(now):
        send_deliveries.delay(chunk, run_id)
    run = planning.start_run(now)
    ids = planning.plan_deliveries(now, run)
    for chunk in planning.chunks(ids):
        send_deliveries.delay(chunk, run.id)
    return len(ids)


@shared_task(bind=True, acks_late=True, max_retries=None)
def send_deliveries(self, delivery_ids, run_id=None):
    if self.request.is_eager:
        # No broker to wait in (the embedded default): retry in this process, as senddigests does.
        outcome = sending.send_with_retries(delivery_ids, run_id=run_id)
    else:
        last_try = self.request.retries >= settings.DIGEST_MAX_RETRIES
        try:
            outcome = sending.send_deliveries(delivery_ids, run_id=run_id, last_try=last_try)
        except sending.DATABASE_ERRORS as error:
            # The database stayed out of reach past sending's own reconnects. What was known is written or will be
            # recovered; the rows never handed over are pending again, and this task claims them when it retries.
            raise self.retry(exc=error, countdown=retry_delay(self.request.retries)) from error
        if outcome.retry_ids:
            raise self.retry(args=[outcome.retry_ids, run_id], countdown=retry_delay(self.request.retries))
    return {"sent": outcome.sent, "failed": outcome.failed, "skipped": outcome.skipped}
