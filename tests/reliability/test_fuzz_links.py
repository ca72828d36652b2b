"""Generated signed links and one-click bodies. A link value that is not exactly one this site made for that page gets
the bad-link page (400), or the 404 page when it is not even a path segment, and changes nothing; a genuine one acts
only on the reader it names. Whatever body a mail client posts to a reader's one-click URL, only that reader changes,
and never with a server error."""

import datetime
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.models import Feedback
from subscriptions import tokens
from subscriptions.models import Consent, ErasedAddress, Subscriber

pytestmark = pytest.mark.usefixtures("plain_template_rendering", "generous_rate_limits")

DAY = datetime.date(2026, 11, 30)
# (method, path, the purpose of the link the page takes)
PAGES = [
    ("GET", "/unsubscribe/{}/", tokens.UNSUBSCRIBE),
    ("POST", "/unsubscribe/{}/", tokens.UNSUBSCRIBE),
    ("POST", "/unsubscribe/{}/resubscribe/", tokens.UNSUBSCRIBE),
    ("GET", "/manage/{}/", tokens.MANAGE),
    ("POST", "/manage/{}/pause/", tokens.MANAGE),
    ("GET", "/manage/{}/data/", tokens.MANAGE),
    ("GET", "/manage/{}/delete/", tokens.MANAGE),
    ("POST", "/manage/{}/delete/", tokens.MANAGE),
    ("GET", "/confirm/{}/", tokens.CONFIRM),
    ("POST", "/confirm/{}/", tokens.CONFIRM),
    ("GET", "/feed/{}/", tokens.FEED),
    ("GET", "/feedback/{}/", tokens.FEEDBACK),
    ("POST", "/feedback/{}/", tokens.FEEDBACK),
    ("GET", "/digest/{}/", tokens.VIEW),
]
NASTY = ["", ".", "..", ":", "/", "%", "%2F", "\x00", "\r\n", " ", "é", "🦀", "=", "-", "_", "A" * 300, "\u202e"]


def signed_values(readers, paper):
    """{(value, purpose): reader id} for a link of every purpose to each reader."""
    values = {}
    for reader in readers:
        for purpose in (tokens.UNSUBSCRIBE, tokens.MANAGE, tokens.CONFIRM, tokens.FEED):
            values[tokens.make_token(reader, purpose), purpose] = reader.pk
        values[tokens.feedback_value(reader, paper.pk, "more"), tokens.FEEDBACK] = reader.pk
        values[tokens.view_value(reader, DAY), tokens.VIEW] = reader.pk
    return values


@pytest.fixture
def world(make_reader, make_paper, make_topic):
    topic = make_topic("Computer vision")
    paper = make_paper("Seeing in the dark")
    readers = [
        make_reader("ada@example.com", topics=[topic]),
        make_reader("bob@example.com", topics=[topic], status=Subscriber.Status.PENDING),
        make_reader("cy@example.com", topics=[topic], status=Subscriber.Status.UNSUBSCRIBED),
        make_reader("di@example.com", topics=[topic], status=Subscriber.Status.PAUSED),
    ]
    values = signed_values(readers, paper)
    # Every example starts from this state: the one before it was rolled back.
    return {"readers": readers, "values": values, "before": snapshot(), "erased": ErasedAddress.objects.count()}


def snapshot():
    """Every reader's row, preferences and records, keyed by reader."""
    rows = {row["id"]: row for row in Subscriber.objects.values()}
    for reader in Subscriber.objects.prefetch_related("topics"):
        rows[reader.pk]["topics"] = sorted(topic.pk for topic in reader.topics.all())
    for subscriber_id, action in Consent.objects.values_list("subscriber_id", "action").order_by("id"):
        rows[subscriber_id].setdefault("consents", []).append(action)
    for subscriber_id, paper_id, direction in Feedback.objects.values_list("subscriber_id", "paper_id", "direction"):
        rows[subscriber_id].setdefault("feedback", []).append((paper_id, direction))
    return rows


def mutate(value, how, position, extra):
    position %= len(value) + 1
    if how == "flip" and position < len(value):
        flipped = chr(ord(value[position]) ^ 1)
        return value[:position] + flipped + value[position + 1 :]
    if how == "truncate":
        return value[:position]
    if how == "append":
        return value + extra
    if how == "insert":
        return value[:position] + extra + value[position:]
    if how == "case":
        return value.swapcase()
    return value


@st.composite
def link_values(draw, values):
    """A genuine value of any purpose and reader, mutated or not, a splice of two, or noise."""
    genuine = sorted(value for value, _purpose in values)
    kind = draw(st.sampled_from(["genuine", "mutated", "mutated", "mutated", "spliced", "noise"]))
    if kind == "noise":
        return draw(st.text(max_size=80) | st.sampled_from(NASTY))
    value = draw(st.sampled_from(genuine))
    if kind == "spliced":
        # One reader's signed part with another's signature, as a tamperer with two links might try.
        other = draw(st.sampled_from(genuine))
        return value.rpartition(":")[0] + ":" + other.rpartition(":")[2]
    if kind == "mutated":
        how = draw(st.sampled_from(["flip", "truncate", "append", "insert", "case"]))
        return mutate(
            value, how, draw(st.integers(0, 200)), draw(st.text(min_size=1, max_size=4) | st.sampled_from(NASTY))
        )
    return value


def request(client, method, path, **extra):
    return client.post(path, **extra) if method == "POST" else client.get(path, **extra)


@settings(settings.get_profile("fuzz"), max_examples=3000)
@given(data=st.data())
def test_a_signed_link_page_acts_only_on_the_reader_a_genuine_link_names(client, world, fresh_example, data):
    method, template, purpose = data.draw(st.sampled_from(PAGES))
    value = data.draw(link_values(world["values"]))
    named = world["values"].get((value, purpose))
    before, erased = world["before"], world["erased"]
    with fresh_example():
        response = request(client, method, template.format(quote(value, safe="")))
        assert response.status_code < 500
        after = snapshot()
        if named is None:
            assert response.status_code in (400, 404), (value, response.status_code)
            if response.status_code == 400:
                assert "link" in response.content.decode()
            assert after == before and ErasedAddress.objects.count() == erased
        else:
            assert {pk: row for pk, row in after.items() if pk != named} == {
                pk: row for pk, row in before.items() if pk != named
            }
            for reader in Subscriber.objects.all():
                reader.full_clean()


CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=latin-1",
    "application/x-www-form-urlencoded; charset=nonsense",
    "multipart/form-data",
    "multipart/form-data; boundary=BoUnDaRy",
    "multipart/form-data; boundary=",
    "text/plain",
    "application/json",
    "",
]
BODIES = [
    b"List-Unsubscribe=One-Click",
    b"List-Unsubscribe=One-Click&List-Unsubscribe=One-Click",
    b'--BoUnDaRy\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--BoUnDaRy--\r\n',
    b'--BoUnDaRy\r\nContent-Disposition: form-data; name="x"; filename="a.txt"\r\n\r\nabc',
    b"--BoUnDaRy\r\n\r\n",
    b"%ff%fe=%00&a=%zz",
    b"\xff\xfe\x00",
    b"{}",
    b"",
]


@settings(settings.get_profile("fuzz"), max_examples=1800)
@given(
    body=st.sampled_from(BODIES) | st.binary(max_size=300) | st.text(max_size=200).map(str.encode),
    content_type=st.sampled_from(CONTENT_TYPES) | st.text(max_size=40),
    target=st.integers(0, 3),
)
def test_any_one_click_body_unsubscribes_only_the_reader_of_the_url(
    client, world, fresh_example, body, content_type, target
):
    reader = world["readers"][target]
    url = f"/unsubscribe/{tokens.make_token(reader, tokens.UNSUBSCRIBE)}/"
    before = world["before"]
    with fresh_example():
        response = client.generic("POST", url, body, content_type=content_type)
        assert response.status_code in (200, 400), response.status_code
        after = snapshot()
        assert {pk: row for pk, row in after.items() if pk != reader.pk} == {
            pk: row for pk, row in before.items() if pk != reader.pk
        }
        status = Subscriber.objects.get(pk=reader.pk).status
        if response.status_code == 200:
            assert status == Subscriber.Status.UNSUBSCRIBED
        else:
            assert after == before
        Subscriber.objects.get(pk=reader.pk).full_clean()
