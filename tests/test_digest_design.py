"""The digest as a reader reads it: a header saying what is inside and in what order, the top pick first (with the
paper's picture), then the papers grouped by the reader's topics; cards that say when and where each paper was
published and how much it is discussed, snippets cut between sentences or words, one loud link and quieter others;
subjects an inbox shows whole; a kind email on a day with nothing new, and a welcome on the first."""

import email
import re
from datetime import timedelta
from email import policy

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.utils import timezone
from lxml import html as lxml_html

from digest.models import Delivery
from papers.models import Paper
from subscriptions import tokens

SUBJECT_MOST = 60


def sent_to(address):
    [message] = [message for message in mail.outbox if message.to == [address]]
    parsed = email.message_from_bytes(message.message().as_bytes(), policy=policy.default)
    return message, parsed, lxml_html.fromstring(parsed.get_body(("html",)).get_content())


def text_of(element):
    return " ".join(element.text_content().replace("\xa0", " ").split())


@pytest.fixture
def two_topics(frozen_clock, locmem, make_topic, make_paper, settings):
    settings.SITE_URL = "https://digest.example.org"
    gnn = make_topic("Graph neural networks", aliases=["GNN"])
    speech = make_topic("Speech recognition", aliases=["ASR", "speech recognition"])
    seen = timezone.now() - timedelta(hours=3)  # all came in together: trending orders them by upvotes
    make_paper(
        "Graph neural networks for molecules",
        "We train graph neural networks (GNN) on molecules. The GNN beats every baseline. Code is public.",
        upvotes=300,
        num_comments=12,
        thumbnail_url="https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/2611.90001.png",
        published_at=seen,
        arxiv_id="2611.90001",
        first_seen_at=seen,
    )
    make_paper(
        "Speech recognition for every language",
        "An ASR model.",
        upvotes=200,
        thumbnail_url="https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/2611.90002.png",
        arxiv_id="2611.90002",
        first_seen_at=seen,
    )
    make_paper("Message passing at scale", "Graph neural networks, bigger.", upvotes=100, first_seen_at=seen)
    make_paper("Streaming speech recognition", "ASR that streams.", upvotes=50, first_seen_at=seen)
    make_paper("Graph transformers", "A GNN with attention.", upvotes=20, first_seen_at=seen)
    return gnn, speech


def test_the_header_says_what_is_inside_and_in_what_order(two_topics, make_reader):
    make_reader("ada@example.com", topics=two_topics)
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    _message, parsed, page = sent_to("ada@example.com")

    assert text_of(page.find_class("date-heading")[0]) == "Wednesday 2 December 2026"
    intro = text_of(page.find_class("intro")[0])
    count = len(Delivery.objects.get().paper_ids)
    assert count > 2
    assert f"{count} new papers for Graph neural networks and Speech recognition." in intro
    assert "The top pick first, then by topic, the most relevant first." in intro
    text = " ".join(parsed.get_body(("plain",)).get_content().split())
    assert f"{count} new papers for Graph neural networks and Speech recognition." in text


def test_the_top_pick_leads_then_each_topic_has_its_papers_under_its_name(two_topics, make_reader):
    make_reader("ada@example.com", topics=two_topics)
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    _message, parsed, page = sent_to("ada@example.com")

    rows = page.xpath("//td[@class='section' or @class='paper']")
    layout = [
        ("section", text_of(row.find("h2"))) if row.get("class") == "section" else ("paper", text_of(row.find("h3")))
        for row in rows
    ]
    delivery = Delivery.objects.get()
    titles = dict(Paper.objects.values_list("id", "title"))
    sent = [titles[paper_id] for paper_id in delivery.paper_ids]
    firsts = [labels[0] for labels in delivery.shown["labels"]]
    # The delivery keeps the email's order, so "view in browser" shows the same email.
    assert [title for kind, title in layout if kind == "paper"] == sent
    # "Top pick", its paper, then a heading wherever the topic the papers match best changes, each topic once.
    assert layout[:2] == [("section", "Top pick"), ("paper", sent[0])]
    expected = [("section", "Top pick"), ("paper", sent[0])]
    for title, label, previous in zip(sent[1:], firsts[1:], [None, *firsts[1:-1]], strict=True):
        expected += [("section", label)] if label != previous else []
        expected.append(("paper", title))
    assert layout == expected
    headings = [title for kind, title in layout[2:] if kind == "section"]
    assert sorted(headings) == ["Graph neural networks", "Speech recognition"]
    # Positions follow the email's order; a grouped card does not repeat its group's name above its title.
    positions = [text_of(row.xpath(".//td[@class='top']/b")[0]) for row in page.find_class("paper")]
    assert positions == [str(number) for number in range(1, len(sent) + 1)]
    chips = [[text_of(chip) for chip in row.xpath(".//td[@class='top']/span")] for row in page.find_class("paper")]
    assert chips[0] == [firsts[0]] and all(firsts[n] not in chips[n] for n in range(1, len(sent)))
    text = parsed.get_body(("plain",)).get_content()
    assert text.index("TOP PICK") < text.index(headings[0].upper() + "\n") < text.index(headings[1].upper() + "\n")


def test_arranging_puts_the_best_first_then_groups_by_best_label_in_order_of_their_best():
    from digest.selection import arrange
    from papers.ranking import Pick

    def pick(name, *labels):
        return Pick(Paper(title=name), 0.0, 0.0, labels)

    picks = [pick("a", "RL"), pick("b", "Speech"), pick("c", "RL", "Speech"), pick("d", "Speech"), pick("e")]
    arranged = arrange(picks)
    assert [p.paper.title for p in arranged] == ["a", "b", "d", "c", "e"]
    assert arrange(arranged) == arranged  # "view in browser" rebuilds from the arranged order


def test_a_card_says_when_where_and_how_discussed_with_one_loud_link(two_topics, make_reader):
    make_reader("ada@example.com", topics=two_topics)
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    _message, parsed, page = sent_to("ada@example.com")

    cards = page.find_class("paper")
    [top] = [card for card in cards if text_of(card.find("h3")) == "Graph neural networks for molecules"]
    published = Paper.objects.get(arxiv_id="2611.90001").published_at
    date = f"{published.day} {published:%b %Y}"
    assert text_of(top.find_class("meta")[0]) == f"{date} · arXiv 2611.90001"
    assert text_of(top.find_class("votes")[0]) == "▲ 300"
    links = [(link.get("href"), text_of(link)) for link in top.find_class("links")[0].iter("a")]
    assert links == [
        ("https://arxiv.org/pdf/2611.90001", "PDF"),
        ("https://huggingface.co/papers/2611.90001", "Hugging Face (12 comments)"),
    ]
    # The title is the one primary link: bold and larger; the others are regular weight, "More/Less" smaller still.
    title_link = top.xpath(".//h3/a")[0]
    assert title_link.get("href") == "https://arxiv.org/abs/2611.90001"
    styles = {name: top.find_class(name)[0].get("style") for name in ("links", "feedback")}
    assert "font-weight" not in styles["links"] and "font-size:14px" in styles["links"]
    assert "font-size:12px" in styles["feedback"]
    assert "font-weight:700" in top.find("h3").get("style") and "font-size:19px" in top.find("h3").get("style")
    text = parsed.get_body(("plain",)).get_content()
    assert f"{date} · arXiv 2611.90001 · ▲ 300 upvotes · 12 comments\n" in text.replace("\xa0", " ")


def test_only_the_top_pick_shows_its_picture_sized_and_described(two_topics, make_reader):
    make_reader("ada@example.com", topics=two_topics)
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    _message, _parsed, page = sent_to("ada@example.com")

    [picture] = page.iter("img")  # two of the papers have one
    first = page.find_class("paper")[0]
    top = Paper.objects.get(title=text_of(first.find("h3")))
    assert picture.get("src") == top.thumbnail_url
    assert (picture.get("width"), picture.get("height")) == ("552", "290")
    assert picture.get("alt") == "Preview of the paper"
    assert "height:auto" in picture.get("style") and "width:100%" in picture.get("style")  # phones scale it
    assert picture.getparent().tag == "a" and picture.getparent().get("href").startswith("https://huggingface.co/")
    assert picture in first.iter("img")


def test_no_picture_when_the_source_has_none(locmem, make_topic, make_paper, make_reader):
    gnn = make_topic("Graph neural networks", aliases=["GNN"])
    make_paper("Graph neural networks for molecules", "GNN.")
    make_paper("Graph transformers", "A GNN with attention.")
    make_reader("ada@example.com", topics=[gnn])
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    _message, _parsed, page = sent_to("ada@example.com")
    assert list(page.iter("img")) == []


def test_a_keyword_shows_as_the_reader_wrote_it(locmem, make_paper, make_reader):
    make_paper("NeRF in the wild", "Neural radiance fields (NeRF) from photo collections.")
    make_reader("ada@example.com", keywords=["NeRF"])
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    _message, _parsed, page = sent_to("ada@example.com")
    [chip] = page.xpath("//td[@class='top']/span")
    assert text_of(chip) == "“NeRF”"
    assert "“nerf”" not in text_of(page)


@pytest.mark.parametrize(
    "abstract",
    [
        "Large language models are served in batches, which needs virtual memory and paging for the key-value cache. "
        * 4,
        "We propose Q-learning with a twist " * 20,
        "A" * 400,
    ],
)
def test_snippets_end_at_a_sentence_or_between_words(locmem, make_topic, make_paper, make_reader, abstract):
    gnn = make_topic("Graph neural networks", aliases=["GNN"])
    make_paper("Graph neural networks for molecules", "GNN. " + abstract)
    make_reader("ada@example.com", topics=[gnn])
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    _message, parsed, page = sent_to("ada@example.com")
    snippet = text_of(page.find_class("snippet")[0])
    full = " ".join(("GNN. " + abstract).split())
    assert len(snippet) <= 280
    if snippet.endswith("…"):
        kept = snippet[:-1]
        assert full.startswith(kept) and (full[len(kept)] in " ,;:" or " " not in kept)
    else:
        assert snippet.endswith(".") and full.startswith(snippet) and full[len(snippet)] == " "


def test_every_sample_snippet_ends_at_a_word_boundary(db):
    call_command("loadsample", stdout=open("/dev/null", "w"))  # noqa: SIM115
    for paper in Paper.objects.all():
        full = " ".join(paper.abstract.split())
        snippet = paper.get_snippet(280)
        kept = snippet.removesuffix("…")
        assert full.startswith(kept), paper.title
        assert kept == full or full[len(kept)] in " ,;:", (paper.title, snippet)


def test_every_demo_subject_fits_an_inbox_and_says_what_is_inside(db, locmem):
    call_command("loadsample", "--demo-readers", stdout=open("/dev/null", "w"))  # noqa: SIM115
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    assert len(mail.outbox) == 3
    for message in mail.outbox:
        picks = Delivery.objects.get(subscriber__email=message.to[0]).paper_ids
        top = Paper.objects.get(id=picks[0]).title
        assert len(message.subject) <= SUBJECT_MOST, message.subject
        assert message.subject.endswith(f" and {len(picks) - 1} more"), message.subject
        shown = message.subject.removesuffix(f" and {len(picks) - 1} more").removesuffix("…")
        assert top.startswith(shown) and len(shown) >= 20, (message.subject, top)


def test_the_footer_says_why_by_the_sites_name_not_an_address(two_topics, make_reader, settings):
    settings.SITE_URL = "http://127.0.0.1:8000"
    make_reader("ada@example.com", topics=two_topics, keywords=["NeRF"])
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    _message, parsed, page = sent_to("ada@example.com")
    footer = text_of(page.find_class("footer-cell")[0])
    assert "You get this email because you subscribed to Paper Digest for: Graph neural networks, Speech" in footer
    assert "“NeRF”" in footer and "127.0.0.1" not in footer
    # No separator can start a line on a phone: each stays with the link before it.
    links = page.find_class("footer-links")[0]
    separators = list(links.iter("span"))
    assert len(separators) == 2
    assert all(span.getprevious().tail == "\xa0" and span.tail.startswith(" ") for span in separators)
    text = " ".join(parsed.get_body(("plain",)).get_content().split())
    assert "You get this email because you subscribed to Paper Digest for: Graph neural networks," in text


def test_a_day_with_nothing_new_says_so_and_offers_the_days_trending_papers(two_topics, make_topic, make_reader):
    vision = make_topic("Computer vision", aliases=["image classification"])
    quiet = make_reader("quiet@example.com", topics=[vision], send_when_empty=True)
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    message, parsed, page = sent_to("quiet@example.com")

    assert message.subject == "Nothing new for you on 2 Dec"
    assert "Nothing new matched Computer vision today." in text_of(page.find_class("intro")[0])
    assert "0 new papers" not in text_of(page)
    [section] = page.find_class("section")
    assert text_of(section.find("h2")) == "Trending today"
    [adjust] = section.xpath(".//a")
    assert (text_of(adjust), adjust.get("href")) == ("Adjust your topics", tokens.manage_url(quiet))
    titles = [text_of(card.find("h3")) for card in page.find_class("paper")]
    assert titles == [
        "Graph neural networks for molecules",
        "Speech recognition for every language",
        "Message passing at scale",
    ]
    # Offered, not matched: no "Why:" line, and they stay free to come in a later digest as matches.
    assert page.find_class("why") == []
    delivery = Delivery.objects.get(subscriber=quiet)
    assert delivery.paper_ids == [] and delivery.status == Delivery.Status.SENT
    text = " ".join(parsed.get_body(("plain",)).get_content().split())
    assert f"Adjust your topics: {tokens.manage_url(quiet)}" in text and "Message passing at scale" in text


def test_the_quiet_days_email_in_the_browser_is_the_one_sent(two_topics, make_topic, make_reader, client):
    vision = make_topic("Computer vision", aliases=["image classification"])
    make_reader("quiet@example.com", topics=[vision], send_when_empty=True)
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    message, _parsed, page = sent_to("quiet@example.com")
    [link] = re.findall(r"View in browser: (\S+)", message.body)
    response = client.get("/" + link.split("/", 3)[3])
    shown = lxml_html.fromstring(response.content.decode())
    assert [text_of(card.find("h3")) for card in shown.find_class("paper")] == [
        text_of(card.find("h3")) for card in page.find_class("paper")
    ]
    assert text_of(shown.find_class("section")[0]) == text_of(page.find_class("section")[0])


def test_the_first_digest_welcomes_the_reader_and_the_next_does_not(two_topics, make_paper, make_reader):
    make_reader("ada@example.com", topics=two_topics)
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    _message, _parsed, page = sent_to("ada@example.com")
    count = len(Delivery.objects.get().paper_ids)
    assert text_of(page.find_class("intro")[0]).startswith(f"Welcome! This is your first digest. {count} new papers")

    mail.outbox.clear()
    with time_machine.travel(timezone.now() + timedelta(days=1), tick=False):
        make_paper("Graph neural networks, again", "Another GNN.", upvotes=5)
        call_command("senddigests", "--now", "--no-progress", stdout=None)
    _message, _parsed, page = sent_to("ada@example.com")
    assert text_of(page.find_class("intro")[0]).startswith("1 new paper for Graph neural networks")
    assert "Welcome" not in text_of(page)


def test_a_reader_of_one_topic_gets_the_top_pick_then_more_for_you(two_topics, make_reader):
    gnn, _speech = two_topics
    make_reader("ada@example.com", topics=[gnn])
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    _message, _parsed, page = sent_to("ada@example.com")

    assert [text_of(section.find("h2")) for section in page.find_class("section")] == ["Top pick", "More for you"]
    cards = page.find_class("paper")
    assert len(cards) >= 2
    # Nothing says which group a card is in, so every card names what it matched, as the first does.
    assert all([text_of(chip) for chip in card.xpath(".//td[@class='top']/span")] == [gnn.name] for card in cards)


def test_a_heading_that_looks_like_a_marker_is_shown_as_written(db):
    """A group's heading is a reader's keyword: the section row fills its values in one pass, so none is read as
    another's marker."""
    from digest.rendering import SECTION_MARKERS, DigestRenderer

    renderer = DigestRenderer()
    for marker in SECTION_MARKERS.values():
        row = lxml_html.fromstring(renderer.section(f"“{marker}”", "A note.", "https://x.example/manage/t/", "Adjust"))
        assert text_of(row.find(".//h2")) == f"“{marker}”"
        assert row.find(".//a").get("href") == "https://x.example/manage/t/"


def test_a_quiet_day_with_nothing_trending_either_says_so_and_still_offers_the_preferences(
    locmem, make_topic, make_reader
):
    vision = make_topic("Computer vision", aliases=["image classification"])
    quiet = make_reader("quiet@example.com", topics=[vision], send_when_empty=True)
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    message, parsed, page = sent_to("quiet@example.com")

    assert page.find_class("paper") == []
    [section] = page.find_class("section")
    assert text_of(section.find("h2")) == "Nothing new"
    assert "Your topics may be quiet for a day or two" in text_of(section)
    assert section.xpath(".//a")[0].get("href") == tokens.manage_url(quiet)
    assert message.subject.startswith("Nothing new for you on ")
    assert "Nothing new for your topics today" in text_of(page.find_class("preheader")[0])
