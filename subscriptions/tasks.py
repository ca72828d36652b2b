"""Celery tasks of the sign-up flow: thin wrappers around subscriptions.emails and subscriptions.signup."""

import logging

from celery import shared_task

from subscriptions import emails
from subscriptions.mailerrors import Permanent, classify, retry_delay

logger = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, max_retries=8)
def send_subscription_email(self, subscriber_id, kind):
    try:
        return emails.send_subscription_email(subscriber_id, kind)
    except Exception as error:
        problem = classify(error)
        if isinstance(problem, Permanent) or self.request.is_eager:
            # Eager (no broker): the reader is waiting on the page, which must not fail; they can send the form again.
            logger.warning("Sign-up email (%s) to subscriber %s not sent: %s", kind, subscriber_id, problem)
            return False
        raise self.retry(countdown=retry_delay(self.request.retries)) from error


@shared_task(acks_late=True)
def purge_unconfirmed():
    """Beat runs this daily: sign-ups nobody confirmed within UNCONFIRMED_SIGNUP_DAYS go."""
    from subscriptions import signup  # here: signup imports this module to queue its emails

    run = signup.purge_unconfirmed()
    return {"deleted": run.deleted_count, "dropped": run.dropped_count}
