""" "More like this" and "less like this": what a reader's feedback on papers does to their next digests.

Each card of a digest has two links (subscriptions.tokens.feedback_url, signed for the reader, the paper and the
direction). Opening one shows a page with one button (mail scanners open links); pressing it records a `Feedback`
row, one per reader and paper, so a second click changes the direction. The preference center lists it with an undo.

In the ranking (digest.selection), a reader with feedback gets every candidate's score multiplied by

    1 + FEEDBACK_WEIGHT × (similarity to the most similar "more" paper − similarity to the most similar "less" paper)

where a similarity is how well the candidate matches the feedback paper's title (and Hugging Face keywords) as a
query, in [0, 1). So feedback reorders the papers the reader's topics and keywords matched, by at most
FEEDBACK_WEIGHT either way; it never adds a paper that did not match, nor drops one. Readers without feedback are
ranked exactly as before.
"""

from django.db import transaction

from digest.matching import Query, QueryText
from digest.models import Feedback

FEEDBACK_WEIGHT = 0.3


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


def similarity_query(title, keywords=()):
    """The query a feedback paper stands for: its title, lifted a little by its keywords."""
    secondary = QueryText.parse(", ".join(keywords)) if keywords else None
    return Query([QueryText.parse(title)], [secondary] if secondary else [], label=title)


def factor(doc, more, less, weight=FEEDBACK_WEIGHT):
    """The multiplier of a candidate's score: `more` and `less` are lists of {doc: similarity}."""
    liked = max((similar.get(doc, 0.0) for similar in more), default=0.0)
    disliked = max((similar.get(doc, 0.0) for similar in less), default=0.0)
    return 1 + weight * (liked - disliked)
