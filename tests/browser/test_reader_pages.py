"""Reader pages in Chromium: where the preference center's notices show, and the topic pages on a phone."""

import pytest
from playwright.sync_api import expect

from digest.models import Feedback
from subscriptions import tokens
from tests.browser.conftest import PHONE

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("width", [PHONE, 1280])
def test_undoing_feedback_says_so_where_the_reader_is(open_page, make_reader, make_paper, width):
    reader = make_reader()
    for title in ["Sparse attention at scale", "Folding proteins with a small model"]:
        Feedback.objects.create(subscriber=reader, paper=make_paper(title), direction="more")
    page = open_page(tokens.manage_url(reader), width=width)
    page.get_by_role("button", name="Undo more like this: Sparse attention at scale").click()
    notice = page.get_by_role("status")
    expect(notice).to_have_text("Your feedback is undone.")
    expect(notice).to_be_in_viewport()
    expect(
        page.get_by_role("button", name="Undo more like this: Folding proteins with a small model")
    ).to_be_in_viewport()
    assert list(reader.feedback.values_list("paper__title", flat=True)) == ["Folding proteins with a small model"]


# A small phone's first screen: 360 by 640 CSS pixels.
FIRST_SCREEN = {"width": PHONE, "height": 640}


def test_a_topic_page_shows_its_first_paper_on_a_phones_first_screen(open_page, make_topic, make_paper, snap):
    topic = make_topic(
        "Efficient inference",
        aliases=["KV cache", "speculative decoding"],
        description="Making large models cheaper and faster to run: quantization, fast attention, speculative "
        "decoding, KV caching.",
    )
    for number in range(3):
        make_paper(f"Speculative decoding with a compressed KV cache, part {number} of a long series", upvotes=30)
    page = open_page(width=PHONE)
    page.set_viewport_size(FIRST_SCREEN)
    page.goto(f"/topics/{topic.slug}/")
    title = page.locator("ol.papers > li").first.get_by_role("heading")
    expect(title).to_contain_text("Speculative decoding with a compressed KV cache")
    box = title.bounding_box()
    assert box["y"] + box["height"] <= FIRST_SCREEN["height"], box
    snap(page, "topic-first-screen")

    page.get_by_role("link", name="Get them by email").click()
    expect(page.get_by_role("checkbox", name="Efficient inference")).to_be_checked()
    expect(page.get_by_role("heading", name="Sign up")).to_be_in_viewport()
