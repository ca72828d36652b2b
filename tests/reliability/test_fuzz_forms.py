"""Generated posts of the two forms readers fill in: the sign-up form at `/` and the preference center behind a signed
manage link. Whatever a browser, a bot or a tamperer sends, the answer is the form again with its errors (400) or the
redirect, never a server error; every stored reader is valid, no email header carries a line break from the input,
and no other reader's row changes."""

import re

import pytest
from django.core import mail
from hypothesis import given, settings
from hypothesis import strategies as st

from subscriptions import tokens
from subscriptions.forms import time_zone_choices
from subscriptions.models import MAX_KEYWORD_LENGTH, MAX_KEYWORDS, Subscriber

pytestmark = pytest.mark.usefixtures("generous_rate_limits", "inline_tasks", "plain_template_rendering")

SIGN_UP_EXAMPLES = 600
PREFERENCE_EXAMPLES = 400
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
TIME_ZONES = [name for name, _label in time_zone_choices()]
# Text with what breaks things: line breaks, NUL, separators, markup, right-to-left and combining marks, emoji.
NASTY = [
    "\r", "\n", "\r\n", "\x00", "\t", "\x0b", ",", ";", "<b>x</b>", "&amp;", "\u202e", "e\u0301", "🦀", "\u2028",
    " ", "x" * 61, "y" * 5000, "%0d%0a", "'; DROP TABLE x; --", "{{ form }}", "${7*7}", "İ", "ß", "\ufeff",
]  # fmt: skip
text = st.text(max_size=30) | st.sampled_from(NASTY)
LOCAL_PARTS = st.text(st.sampled_from("abcXYZ09._%+-!#'é中\u0301\r\n \x00\"(),:;<>@[\\]"), min_size=1, max_size=16)
DOMAINS = ["example.com", "EXAMPLE.org", "bücher.example", "xn--bcher-kva.example", "xn--zz.example", "example.com.",
           "localhost", "[127.0.0.1]", "exa mple.com", "例え.テスト", "a" * 64 + ".com", "-bad-.example"]  # fmt: skip
ADDRESSES = [
    "ada@example.com\nBcc: victim@example.org", "ada@example.com\r\nSubject: hi", "ada@example.com\r",
    "ada@example.com\x00", " ada@example.com ", "\tada@example.com\n", "ADA@Example.COM", "ada@example.com%0d%0a",
    "a" * 64 + "@" + "b" * 186 + ".com", "a" * 60 + "@" + "b" * 180 + ".com", "@example.com", "ada@", "ada",
    '"ada lovelace"@example.com', "ada@@example.com", "ada@example.com, bob@example.com", "<ada@example.com>",
    "Ada <ada@example.com>",
]  # fmt: skip


def addresses():
    built = st.builds(lambda local, domain: f"{local}@{domain}", LOCAL_PARTS, st.sampled_from(DOMAINS))
    return built | st.sampled_from(ADDRESSES) | text


def numbers(low, high):
    odd = ["", " 8", "8.0", "1e1", "٣", "0x10", "-0", "99999999999999999999", "NaN", "8\n"]
    return st.integers(low, high).map(str) | st.sampled_from(odd) | text


@st.composite
def sign_up_forms(draw, topic_ids, taken):
    """A form as the page sends it, then a few fields replaced by hostile values, left out, or added."""
    form = {
        "email": draw(
            st.builds("{}{}@example.com".format, st.sampled_from(["ada", "Bob.", "é"]), st.integers(0, 10**6))
            | st.sampled_from(taken)
        ),
        "topics": [str(pk) for pk in draw(st.lists(st.sampled_from(topic_ids[:2]), max_size=2, unique=True))],
        "keywords": "\n".join(draw(st.lists(st.sampled_from(["protein folding", "GNN", "diffusion"]), max_size=3))),
        "time_zone": draw(st.sampled_from(TIME_ZONES)),
        "send_hour": str(draw(st.integers(0, 23))),
        "frequency": draw(st.sampled_from(["daily", "weekdays", "weekly"])),
        "weekly_day": str(draw(st.integers(0, 6))),
        "papers_per_email": str(draw(st.integers(1, 30))),
        "send_when_empty": draw(st.sampled_from(["True", "False"])),
        "website": "",
    }
    hostile = {
        "email": addresses(),
        "topics": st.lists(
            st.sampled_from(topic_ids).map(str) | st.integers(-3, 10**12).map(str) | text, max_size=4, unique=True
        ),
        "keywords": st.lists(text, max_size=14).map("\n".join) | text,
        "time_zone": st.sampled_from(["utc", "Europe/Nowhere", "../etc", "localtime", "UTC\n"]) | text,
        "send_hour": numbers(-2, 26),
        "frequency": st.sampled_from(["DAILY", "hourly", "daily\r\n"]) | text,
        "weekly_day": numbers(-1, 8),
        "papers_per_email": numbers(-1, 35),
        "send_when_empty": st.sampled_from(["", "true", "1"]) | text,
        "website": text,
    }
    for name in draw(st.lists(st.sampled_from(list(hostile)), max_size=3, unique=True)):
        form[name] = draw(hostile[name])
    for name in draw(st.lists(st.sampled_from(list(form)), max_size=2, unique=True)):
        del form[name]
    form.update(draw(st.dictionaries(st.text(min_size=1, max_size=10), text, max_size=2)))
    return form


@pytest.fixture
def world(make_topic, make_reader):
    """Topics (one inactive) and readers in each status whose rows a sign-up for their address must not touch."""
    vision, language = make_topic("Computer vision"), make_topic("Language models")
    hidden = make_topic("Retired topic")
    hidden.is_active = False
    hidden.save()
    readers = {
        status: make_reader(f"{status}@example.com", topics=[vision], status=status)
        for status in (Subscriber.Status.ACTIVE, Subscriber.Status.PAUSED, Subscriber.Status.SUPPRESSED)
    }
    return {
        "topic_ids": [vision.pk, language.pk, hidden.pk],
        "active_ids": {vision.pk, language.pk},
        "readers": readers,
        # Every example starts from this state: the one before it was rolled back.
        "before": {status: snapshot(reader) for status, reader in readers.items()},
        "known": set(Subscriber.objects.values_list("pk", flat=True)),
    }


def snapshot(reader):
    reader = Subscriber.objects.get(pk=reader.pk)
    return reader.email, reader.status, reader.get_preferences(), reader.consents.count(), reader.token


def assert_valid(reader, active_topic_ids):
    reader.full_clean()
    assert reader.email == reader.email.strip().lower() and not CONTROL.search(reader.email)
    assert len(reader.email) <= 254 and reader.email.count("@") >= 1
    assert len(reader.keywords) <= MAX_KEYWORDS
    assert all(isinstance(k, str) and k and len(k) <= MAX_KEYWORD_LENGTH for k in reader.keywords)
    assert not any(CONTROL.search(keyword) for keyword in reader.keywords)
    assert set(reader.topics.values_list("pk", flat=True)) <= active_topic_ids
    assert reader.topics.exists() or reader.keywords


def assert_headers_have_no_line_breaks(message):
    for name, value in message.message().items():
        assert "\r" not in str(value) and "\n" not in str(value), f"{name} carries a line break: {value!r}"
    assert all(not CONTROL.search(address) for address in message.recipients())


@settings(settings.get_profile("fuzz"), max_examples=SIGN_UP_EXAMPLES)
@given(data=st.data())
def test_any_sign_up_post_gets_the_form_or_the_redirect_and_stores_only_valid_readers(
    client, world, fresh_example, django_capture_on_commit_callbacks, data
):
    taken = [reader.email for reader in world["readers"].values()]
    form = data.draw(sign_up_forms(world["topic_ids"], taken))
    before, known = world["before"], world["known"]
    with fresh_example():
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/", form, REMOTE_ADDR="203.0.113.9")
        new = list(Subscriber.objects.exclude(pk__in=known))
        if response.status_code == 302:
            assert response["Location"] == "/subscribe/sent/"
            assert len(new) <= 1
            if not form.get("website") and form.get("email", "").strip().lower().rstrip(".") not in taken:
                assert len(new) == 1, "a valid sign-up stored nobody"
        else:
            assert response.status_code == 400, response.status_code
            assert "Please fix" in response.content.decode()
            assert new == [] and mail.outbox == []
        for reader in new:
            assert_valid(reader, world["active_ids"])
            assert reader.status == Subscriber.Status.PENDING
        for message in mail.outbox:
            assert_headers_have_no_line_breaks(message)
            assert message.to in ([reader.email] for reader in [*new, *world["readers"].values()])
        assert {status: snapshot(reader) for status, reader in world["readers"].items()} == before


@settings(settings.get_profile("fuzz"), max_examples=PREFERENCE_EXAMPLES)
@given(data=st.data())
def test_any_preference_post_saves_valid_preferences_or_shows_errors_and_touches_no_one_else(
    client, world, fresh_example, data
):
    reader, other = world["readers"][Subscriber.Status.ACTIVE], world["readers"][Subscriber.Status.PAUSED]
    form = data.draw(sign_up_forms(world["topic_ids"], [reader.email]))
    url = f"/manage/{tokens.make_token(reader, tokens.MANAGE)}/"
    before, other_before = world["before"][reader.status], world["before"][other.status]
    with fresh_example():
        response = client.post(url, form, REMOTE_ADDR="203.0.113.9")
        after = snapshot(reader)
        if response.status_code == 302:
            assert response["Location"] == url + "?saved=1"
            assert_valid(Subscriber.objects.get(pk=reader.pk), world["active_ids"])
            assert (after[0], after[1], after[4]) == (before[0], before[1], before[4])
        else:
            assert response.status_code == 400, response.status_code
            assert "Please fix" in response.content.decode()
            assert after == before
        assert snapshot(other) == other_before
