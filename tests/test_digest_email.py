import copy
import email
from datetime import timedelta
from email import policy

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone
from lxml import html as lxml_html

from subscriptions import tokens


@pytest.fixture
def outbox_backend(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_URL = "https://digest.example.org"


@pytest.fixture
def digest(outbox_backend, make_paper, make_topic, make_reader):
    gnn = make_topic("Graph neural networks", aliases=["GNN"])
    make_paper(
        "<script>alert(1)</script> Graph neural networks & friends",
        'A GNN that writes "<b>bold</b>" claims.',
        upvotes=120,
        github_url="https://github.com/example/gnn",
        authors=["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"],
    )
    make_paper("Message passing on graphs", "Graph neural networks again.", upvotes=3)
    reader = make_reader("ada@example.com", topics=[gnn], keywords=["GNN"])
    call_command("senddigests", "--now", "--no-progress")
    assert len(mail.outbox) == 1
    return reader, mail.outbox[0], email.message_from_bytes(mail.outbox[0].message().as_bytes(), policy=policy.default)


def test_it_has_the_one_click_unsubscribe_headers_for_its_reader(digest):
    reader, _message, parsed = digest
    link = parsed["List-Unsubscribe"].strip()  # long headers are folded before the URL
    assert link.startswith("<https://digest.example.org/unsubscribe/") and link.endswith("/>")
    token = link[1:-1].rstrip("/").rsplit("/", 1)[1]
    assert tokens.find_subscriber(token, tokens.UNSUBSCRIBE) == reader
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["List-Id"] == "Paper Digest <digest.digest.example.org>"
    assert parsed["Message-ID"].endswith("@digest.example.org>")


def test_the_subject_names_the_top_paper_on_one_line(digest):
    _reader, message, parsed = digest
    assert "\n" not in message.subject
    # The top paper's title, cut between words to keep the subject within 60 characters, and how many more.
    assert message.subject == "<script>alert(1)</script> Graph neural networks… and 1 more"


def test_it_is_multipart_with_a_plain_text_twin(digest):
    _reader, _message, parsed = digest
    assert parsed.get_content_type() == "multipart/alternative"
    text = parsed.get_body(("plain",)).get_content()
    html = parsed.get_body(("html",)).get_content()
    for part in (text, html):
        assert "Message passing on graphs" in part
        assert "https://arxiv.org/abs/" in part
    assert "Ada Lovelace, Alan Turing, Grace Hopper et al." in text


def test_every_paper_field_is_escaped_in_the_html(digest):
    _reader, _message, parsed = digest
    html = parsed.get_body(("html",)).get_content()
    assert "<script>" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_html_is_inlined_single_column_and_self_contained(digest):
    _reader, _message, parsed = digest
    html = parsed.get_body(("html",)).get_content()
    assert 'style="' in html
    assert "600" in html
    assert "<link" not in html and "<script" not in html
    assert "@media (prefers-color-scheme:dark)" in html


def test_the_footer_says_why_and_links_to_manage_and_unsubscribe(digest, settings):
    reader, _message, parsed = digest
    html = parsed.get_body(("html",)).get_content()
    text = parsed.get_body(("plain",)).get_content()
    for part in (html, text):
        assert "Graph neural networks" in part
        assert tokens.manage_url(reader).replace("&", "&amp;") in part or tokens.manage_url(reader) in part
        assert tokens.unsubscribe_url(reader) in part
        assert "%%" not in part
    assert settings.DIGEST_POSTAL_ADDRESS.splitlines()[0] in text


def test_each_reader_gets_their_own_links(outbox_backend, make_paper, make_topic, make_reader):
    gnn = make_topic("Graph neural networks")
    make_paper("Graph neural networks")
    readers = [make_reader(topics=[gnn]) for _ in range(2)]
    call_command("senddigests", "--now", "--no-progress")
    by_address = {message.to[0]: message for message in mail.outbox}
    for reader in readers:
        message = by_address[reader.email]
        assert message.extra_headers["List-Unsubscribe"] == f"<{tokens.unsubscribe_url(reader)}>"
        assert tokens.unsubscribe_url(reader) in message.body


def test_a_paper_cannot_smuggle_in_a_readers_links(outbox_backend, make_paper, make_topic, make_reader):
    gnn = make_topic("Graph neural networks")
    make_paper("Graph neural networks %%UNSUBSCRIBE_URL%% %%EMAIL%%", "%%MANAGE_URL%% graph neural networks")
    reader = make_reader(topics=[gnn])
    call_command("senddigests", "--now", "--no-progress")
    [message] = mail.outbox
    html = message.alternatives[0][0]
    assert "Graph neural networks %%UNSUBSCRIBE_URL%% %%EMAIL%%" in message.subject
    assert html.count(tokens.unsubscribe_url(reader)) == 1
    assert "%%MANAGE_URL%% graph neural networks" in html


def test_long_html_lines_are_folded_outside_attribute_values():
    from lxml import html as lxml_html

    from digest.rendering import fold_long_lines

    label = "a label with many words " * 20
    line = "".join(f'<a href="https://example.org/{n}" aria-label="{label}">link {n}</a> ' for n in range(20))
    folded = fold_long_lines(line, limit=200)
    assert max(len(part) for part in folded.split("\n")) <= 200 + len(label) + 60
    before = lxml_html.fromstring(f"<p>{line}</p>")
    after = lxml_html.fromstring(f"<p>{folded}</p>")
    assert [a.get("aria-label") for a in after.iter("a")] == [a.get("aria-label") for a in before.iter("a")]
    assert [a.get("href") for a in after.iter("a")] == [a.get("href") for a in before.iter("a")]


def why_lines(html):
    """The "Why:" line of each card, as a reader reads it (non-breaking spaces read as spaces)."""
    from lxml import html as lxml_html

    lines = lxml_html.fromstring(html).find_class("why")
    return [" ".join(line.text_content().replace("\xa0", " ").split()) for line in lines]


def test_each_card_says_why_its_paper_matched_in_both_parts(outbox_backend, make_paper, make_topic, make_reader):
    gnn = make_topic("Graph neural networks", aliases=["GNN"])
    make_paper("KV cache compression for long-context inference", "We compress the key-value cache.", upvotes=50)
    make_reader(topics=[gnn], keywords=["kv cache compression"])
    call_command("senddigests", "--now", "--no-progress")
    [message] = mail.outbox
    parsed = email.message_from_bytes(message.message().as_bytes(), policy=policy.default)
    text = parsed.get_body(("plain",)).get_content()
    html = parsed.get_body(("html",)).get_content()

    assert why_lines(html) == ["Why: “kv cache compression” — about “kv cache”, “compression”"]
    assert "▲ 50 upvotes\nWhy: “kv cache compression” — about “kv cache”, “compression”\n" in text
    assert "Matches:" not in text


def test_a_keyword_with_html_characters_is_escaped_in_the_why_line(outbox_backend, make_paper, make_reader):
    make_paper("Graph neural networks and friends", "Message passing on graphs.")
    make_reader(keywords=["<b>graph</b> neural networks & co"])
    call_command("senddigests", "--now", "--no-progress")
    [message] = mail.outbox
    html = message.alternatives[0][0]

    [why] = why_lines(html)
    assert why.startswith("Why: “<b>graph</b> neural networks & co” — about “graph neural networks”")
    assert "<b>graph</b>" not in html
    assert "“&lt;b&gt;graph&lt;/b&gt; neural networks &amp; co”</span> — about" in html
    assert "Why: “<b>graph</b> neural networks & co” — about" in message.body  # plain text stays plain


def test_a_card_explains_its_first_two_labels_and_names_the_rest(db, make_paper, make_reader):
    from digest.rendering import DigestRenderer
    from papers.ranking import Pick

    paper = make_paper("Speculative decoding with a small KV cache")
    labels = ("Efficient inference", "“speculative decoding”", "Large language models")
    reasons = ("mentions “kv cache”", "close in meaning to “speculative decoding”", 'mentions "llm" <i>')
    pick = Pick(paper, 1.0, 1.0, labels, reasons)
    message = DigestRenderer().build(make_reader(), [pick], day=paper.first_seen_at.date(), labels=list(labels))

    short = "Why: Efficient inference — mentions “kv cache” · “speculative decoding” — close in meaning"
    assert why_lines(message.alternatives[0][0]) == [short]
    assert f"{short} · also Large language models" in " ".join(message.body.split())
    why_part = message.body.split("\nWhy: ", 1)[1].split("\n\n", 1)[0]
    assert max(len(line) for line in ("Why: " + why_part).splitlines()) <= 72
    assert message.shown["reasons"] == [list(reasons)]


def test_a_card_without_reasons_has_no_why_line_and_lists_its_matches(db, make_paper, make_reader):
    from digest.rendering import DigestRenderer
    from papers.ranking import Pick

    paper = make_paper("Graph neural networks")
    pick = Pick(paper, 1.0, 1.0, ("Graph neural networks",))
    message = DigestRenderer().build(make_reader(), [pick], day=paper.first_seen_at.date(), labels=[])

    assert why_lines(message.alternatives[0][0]) == []
    assert 'class="why"' not in message.alternatives[0][0]
    assert "Matches: Graph neural networks\n" in message.body


def test_a_reason_does_not_repeat_its_label_and_long_quotes_are_cut():
    from digest.rendering import short_reason

    assert short_reason("“nerf”", "mentions “nerf”") == "mentioned"
    assert short_reason("Large language models", "mentions “large language models”") == "mentioned"
    assert short_reason("“speculative decoding”", "close in meaning to “speculative decoding”") == "close in meaning"
    assert short_reason("Graph neural networks", "about “graph neural networks”") == "a direct match"
    assert short_reason("Efficient inference", "mentions “kv cache”, “llm”") == "mentions “kv cache”, “llm”"
    title = "PagedAttention: efficient memory management for large language model serving systems"
    assert short_reason("LLMs", f"mentions “llm”; close to “{title}”") == (
        "mentions “llm”; close to “PagedAttention: efficient memory management for large…”"
    )


def test_a_ten_paper_digest_is_at_most_40_kb_of_html(db, settings):
    """The richest realistic ten papers (bench.digest_cost.rich_digest): the longest sample titles, many authors,
    three matched labels and a "Why:" line with long reasons on every card, a code link, a reader with five topics
    and three keywords. Every byte is sent to every reader, and Gmail clips an email past about 102 KB."""
    from bench.digest_cost import rich_digest

    settings.SITE_URL = "https://papers.example.org"
    html = rich_digest(10).alternatives[0][0]

    page = lxml_html.fromstring(html)
    assert len(page.find_class("paper")) == len(page.find_class("why")) == 10
    # Three labels a card: the top pick shows them all; the others, under their first label's heading, the other two.
    assert len(page.xpath("//td[@class='top']/span")) == 3 + 9 * 2
    assert len(page.xpath("//a[text()='Code']")) == 10
    assert len(html.encode()) <= 40_000


def changed_value(field, value):
    """Another value for a Paper field: what an edit or an import could make of it."""
    kind = field.get_internal_type()
    if field.choices:
        return next(choice for choice, _label in field.choices if choice != value)
    if kind == "JSONField":
        return [*value, "Another Name"]
    if isinstance(value, int):
        return value + 1
    if kind == "DateTimeField":
        return (value or timezone.now()) + timedelta(days=1)
    if kind == "BinaryField":
        return b"\x01" + (value or b"")
    if kind == "URLField":
        return "https://github.com/example/other"
    return value + " other"


def test_a_card_is_kept_per_process_by_every_paper_field_it_shows(monkeypatch):
    """Inlined cards are kept per worker process by rendering.card_key: a field shown on the card but left out of the
    key would show readers a stale card after an edit."""
    from digest import rendering
    from digest.rendering import DigestRenderer, card_key
    from papers.models import Paper
    from papers.ranking import Pick
    from subscriptions.models import Subscriber

    monkeypatch.setattr(rendering, "_CARDS", rendering.Recent(0))  # every card rendered anew
    paper = Paper(
        id=7, arxiv_id="2612.00007", title="A title", raw_title="A title", abstract="An abstract.",
        authors=["Ada Lovelace"], upvotes=3, num_comments=1, github_url="https://github.com/example/code",
        thumbnail_url="https://example.org/thumbnail.png", keywords=["graphs"], categories=["cs.LG"],
        primary_category="cs.LG", published_at=timezone.now(), first_seen_at=timezone.now(),
        updated_at=timezone.now(), search_title="title", search_abstract="abstract", embedding_key="key",
    )  # fmt: skip
    reader = Subscriber(email="ada@example.com", token="a-token")

    def card(paper):
        return DigestRenderer().card(Pick(paper, 1.0, 1.0, ("Graphs",), ("mentions “graphs”",)), 1, reader)

    shown = card(paper)
    for field in Paper._meta.concrete_fields:
        edited = copy.copy(paper)
        setattr(edited, field.attname, changed_value(field, getattr(paper, field.attname)))
        if card(edited) != shown:
            assert card_key(edited) != card_key(paper), f"the card shows {field.name}, which its key leaves out"


def test_the_process_keeps_a_bounded_number_of_cards_the_least_recently_used_dropped_first():
    from digest.rendering import Recent

    kept = Recent(2)
    kept.put("a", 1)
    kept.put("b", 2)
    assert kept.get("a") == 1  # "b" is now the least recently used
    kept.put("c", 3)
    assert (kept.get("a"), kept.get("b"), kept.get("c"), len(kept)) == (1, None, 3, 2)
