""" "More like this" and "less like this": what a reader's feedback on papers does to their next digests.

Each card of a digest has two links (subscriptions.tokens.feedback_url, signed for the reader, the paper and the
direction). Opening one shows a page with one button (mail scanners open links); pressing it records a `Feedback`
row, one per reader and paper, so a second click changes the direction. The preference center lists it with an undo.

In the ranking, a reader's feedback reorders the papers their topics and keywords matched: a little of it nudges every
candidate's score by at most FEEDBACK_WEIGHT either way, and from FEEDBACK_MODEL_MIN_CLICKS clicks (some of each kind)
a personal model fitted to them does (papers.ranking says how); readers without feedback are ranked exactly as before.
"""

from django.db import transaction

from digest.models import Feedback


@transaction.atomic
def record(subscriber, paper, direction):
    """Record (or change) the reader's feedback on the paper; returns the Feedback row."""
    feedback, _created = Feedback.objects.update_or_create(
        subscriber=subscriber, paper=paper, defaults={"direction": direction}
    )
    return feedback


def undo(subscriber, feedback_id):
    """Remove one of the reader's feedback rows; False when it was not theirs or is gone already."""
    deleted, _by_model = Feedback.objects.filter(subscriber=subscriber, id=feedback_id).delete()
    return bool(deleted)
