"""Gmail clips a message whose HTML is over about 102 KB: it shows the start and hides the rest (the unsubscribe link
and the postal address among it) behind "View entire message". The form says from how many papers per email that
happens (CLIP_SAFE_PAPERS), and that number follows what the digest weighs."""

import re

import pytest

from subscriptions import tokens
from subscriptions.models import CLIP_SAFE_PAPERS, MAX_PAPERS_PER_EMAIL

# "About 102 KB": read as decimal kilobytes, the smaller and so the safer reading.
GMAIL_CLIPS_OVER = 102_000


def helptext(page, field):
    match = re.search(rf'<div class="helptext" id="id_{field}_helptext">(.*?)</div>', page, re.S)
    assert match, f"no help text for {field}"
    assert re.search(rf'<input [^>]*aria-describedby="id_{field}_helptext"', page), "the help text is not tied to it"
    return match.group(1)


def test_the_form_says_gmail_clips_an_email_of_more_papers_than_fit(client, db):
    assert CLIP_SAFE_PAPERS < MAX_PAPERS_PER_EMAIL  # else the form offers no size that would be clipped
    text = helptext(client.get("/").content.decode(), "papers_per_email")
    assert f"More than {CLIP_SAFE_PAPERS} makes an email Gmail cuts short" in text
    assert "“View entire message”" in text


def test_the_preference_center_says_so_too(client, make_reader):
    page = client.get(tokens.manage_url(make_reader(papers_per_email=25))).content.decode()
    assert f"More than {CLIP_SAFE_PAPERS} makes an email Gmail cuts short" in helptext(page, "papers_per_email")


@pytest.mark.django_db
def test_a_digest_of_clip_safe_papers_is_under_gmails_limit_and_one_more_is_over(settings):
    """The richest realistic digest (bench.digest_cost.rich_digest: the longest sample titles, many authors, three
    labels and a long "Why:" line on every card, a reader of five topics and three keywords), as sent."""
    from bench.digest_cost import rich_digest

    settings.SITE_URL = "https://papers.example.org"
    weights = {
        papers: len(rich_digest(papers).alternatives[0][0].encode())
        for papers in (CLIP_SAFE_PAPERS, CLIP_SAFE_PAPERS + 1)
    }
    assert weights[CLIP_SAFE_PAPERS] < GMAIL_CLIPS_OVER, f"{CLIP_SAFE_PAPERS} papers weigh {weights}: lower it"
    assert weights[CLIP_SAFE_PAPERS + 1] >= GMAIL_CLIPS_OVER, (
        f"{CLIP_SAFE_PAPERS + 1} papers fit too ({weights}): raise CLIP_SAFE_PAPERS"
    )
