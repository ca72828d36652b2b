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
