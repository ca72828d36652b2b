"""Signed links: every route that acts on a signed value refuses a forged one and changes nothing.

A forgery is an edited signature, another reader's token under this reader's signature, a value without its
signature, a value signed with another SECRET_KEY, a value made for another purpose, or garbage. The genuine value
is tried last on each route, so a route that refused everything would fail too.
"""

from collections import namedtuple
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from digest import feedback as reader_feedback
from digest.models import Delivery, Feedback
from papers.models import Paper
from subscriptions import tokens
from subscriptions.models import Consent, ErasedAddress, Subscriber
from tests.test_smtp_delivery import seed_papers, seed_readers, seed_topic

PURPOSES = [tokens.CONFIRM, tokens.MANAGE, tokens.UNSUBSCRIBE, tokens.FEEDBACK, tokens.VIEW, tokens.FEED]
BAD_LINK = "This link does not work"

Route = namedtuple("Route", "name purpose path method data", defaults=[None])
ROUTES = [
    Route("confirm page", tokens.CONFIRM, "/confirm/{}/", "get"),
    Route("confirm", tokens.CONFIRM, "/confirm/{}/", "post"),
    Route("preference center", tokens.MANAGE, "/manage/{}/", "get"),
    Route("save preferences", tokens.MANAGE, "/manage/{}/", "post", "preferences"),
    Route("pause", tokens.MANAGE, "/manage/{}/pause/", "post"),
    Route("download my data", tokens.MANAGE, "/manage/{}/data/", "get"),
    Route("delete page", tokens.MANAGE, "/manage/{}/delete/", "get"),
    Route("delete", tokens.MANAGE, "/manage/{}/delete/", "post"),
    Route("undo feedback", tokens.MANAGE, "/manage/{}/feedback/undo/", "post", "feedback"),
    Route("unsubscribe page", tokens.UNSUBSCRIBE, "/unsubscribe/{}/", "get"),
    Route("unsubscribe", tokens.UNSUBSCRIBE, "/unsubscribe/{}/", "post"),
    Route("one-click unsubscribe", tokens.UNSUBSCRIBE, "/unsubscribe/{}/", "post", "one-click"),
    Route("resubscribe", tokens.UNSUBSCRIBE, "/unsubscribe/{}/resubscribe/", "post"),
    Route("feedback page", tokens.FEEDBACK, "/feedback/{}/", "get"),
    Route("feedback", tokens.FEEDBACK, "/feedback/{}/", "post"),
    Route("view in browser", tokens.VIEW, "/digest/{}/", "get"),
    Route("reader feed", tokens.FEED, "/feed/{}/", "get"),
]


@pytest.fixture
def world(settings, db):
    """Ada and Bob are active and were sent today's digest; Ada gave feedback on a paper; Pat has not confirmed."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    seed_papers()
    topic = seed_topic()
    ada, bob = seed_readers(["ada@example.com", "bob@example.com"], topic)
    [pat] = seed_readers(["pat@example.com"], topic, status=Subscriber.Status.PENDING)
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    paper = Paper.objects.get(arxiv_id="2501.00001")
    reader_feedback.record(ada, paper, "more")
    mail.outbox.clear()
    day = ada.deliveries.get(status=Delivery.Status.SENT).digest_date
    return {"ada": ada, "bob": bob, "pat": pat, "paper": paper, "day": day, "topic": topic}


def value_for(world, purpose, reader):
    """The signed value the site puts in `reader`'s link for `purpose`."""
    if purpose == tokens.FEEDBACK:
        return tokens.feedback_value(reader, world["paper"].id, "less")
    if purpose == tokens.VIEW:
        return tokens.view_value(reader, world["day"])
    return tokens.make_token(reader, purpose)


def value_under_another_key(world, purpose, reader):
    """The same link as another installation (another SECRET_KEY) would make it."""
    tokens._signer.cache_clear()
    try:
        with override_settings(SECRET_KEY="another-installations-secret-key-0123456789abcdef"):
            return value_for(world, purpose, reader)
    finally:
        tokens._signer.cache_clear()


def forgeries(world, purpose, owner):
    genuine = value_for(world, purpose, owner)
    other = world["bob"] if owner != world["bob"] else world["ada"]
    unsigned = genuine.rsplit(":", 1)[0]
    found = {
        "signature edited": genuine[:-1] + ("A" if genuine[-1] != "A" else "B"),
        "another reader's token under this signature": genuine.replace(owner.token, other.token),
        "no signature": unsigned,
        "signed with another SECRET_KEY": value_under_another_key(world, purpose, owner),
        "garbage": "not-a-token",
        "very long": "A" * 4000,
        "separators only": "::",
    }
    for other_purpose in PURPOSES:
        if other_purpose != purpose:
            found[f"made for {other_purpose}"] = value_for(world, other_purpose, owner)
    return found


def request(client, route, value, world):
    path = route.path.format(value)
    if route.method == "get":
        return client.get(path)
    if route.data == "one-click":
        return client.post(path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    data = {
        None: {},
        "preferences": {
            "topics": [world["topic"].pk],
            "keywords": "forged keyword",
            "time_zone": "Asia/Tokyo",
            "send_hour": "3",
            "frequency": "weekly",
            "weekly_day": "4",
            "papers_per_email": "2",
        },
        "feedback": {"feedback": str(Feedback.objects.values_list("id", flat=True).first())},
    }[route.data]
    return client.post(path, data)


def state():
    """Everything a signed link could change, as plain values."""
    readers = [
        (
            r.email,
            r.status,
            r.keywords,
            r.send_hour,
            r.frequency,
            r.papers_per_email,
            sorted(r.topics.values_list("id")),
        )
        for r in Subscriber.objects.order_by("email")
    ]
    feedback = list(Feedback.objects.values_list("subscriber__email", "paper_id", "direction"))
    return readers, feedback, Consent.objects.count(), ErasedAddress.objects.count(), len(mail.outbox)


@pytest.mark.parametrize("route", ROUTES, ids=[route.name for route in ROUTES])
def test_a_forged_link_gets_the_bad_link_page_and_changes_nothing(client, world, route, generous_rate_limits):
    owner = world["pat"] if route.purpose == tokens.CONFIRM else world["ada"]
    before = state()

    for forgery, value in forgeries(world, route.purpose, owner).items():
        response = request(client, route, value, world)

        assert response.status_code == 400, forgery
        page = response.content.decode()
        assert BAD_LINK in page, forgery
        assert all(reader.email not in page for reader in Subscriber.objects.all()), forgery
        assert state() == before, forgery

    genuine = request(client, route, value_for(world, route.purpose, owner), world)
    assert genuine.status_code in (200, 302), genuine.content.decode()[:500]


def test_a_link_signed_with_a_retired_key_works_only_while_the_key_is_a_fallback(client, world, settings):
    ada = world["ada"]
    old_link = value_under_another_key(world, tokens.MANAGE, ada)
    old_key = "another-installations-secret-key-0123456789abcdef"

    settings.SECRET_KEY_FALLBACKS = [old_key]
    tokens._signer.cache_clear()
    try:
        assert client.get(f"/manage/{old_link}/").status_code == 200
        settings.SECRET_KEY_FALLBACKS = []
        tokens._signer.cache_clear()
        assert client.get(f"/manage/{old_link}/").status_code == 400
    finally:
        tokens._signer.cache_clear()


def test_a_confirmation_links_age_cannot_be_edited_to_make_it_young_again(client, world, settings):
    settings.CONFIRMATION_MAX_AGE_DAYS = 7
    pat = world["pat"]
    with time_machine.travel(timezone.now(), tick=False) as clock:
        old = tokens.make_token(pat, tokens.CONFIRM)
        clock.shift(timedelta(days=8))
        fresh = tokens.make_token(pat, tokens.CONFIRM)
        # The signed value is token:timestamp:signature; put today's timestamp on the old signature.
        token, _old_stamp, old_signature = old.split(":")
        _token, fresh_stamp, _fresh_signature = fresh.split(":")
        rejuvenated = f"{token}:{fresh_stamp}:{old_signature}"

        expired = client.post(f"/confirm/{old}/")
        edited = client.post(f"/confirm/{rejuvenated}/")

    assert expired.status_code == 400 and "This link has expired" in expired.content.decode()
    assert edited.status_code == 400 and BAD_LINK in edited.content.decode()
    pat.refresh_from_db()
    assert pat.status == Subscriber.Status.PENDING and not pat.consents.filter(action="confirm").exists()


def test_one_readers_links_show_and_download_only_their_own_data(client, world):
    ada, bob = world["ada"], world["bob"]
    pages = {
        "preference center": client.get(f"/manage/{tokens.make_token(ada, tokens.MANAGE)}/"),
        "download my data": client.get(f"/manage/{tokens.make_token(ada, tokens.MANAGE)}/data/"),
        "unsubscribe page": client.get(f"/unsubscribe/{tokens.make_token(ada, tokens.UNSUBSCRIBE)}/"),
        "view in browser": client.get(f"/digest/{tokens.view_value(ada, world['day'])}/"),
        "feedback page": client.get(f"/feedback/{tokens.feedback_value(ada, world['paper'].id, 'less')}/"),
    }

    for name, response in pages.items():
        assert response.status_code == 200, name
        content = response.content.decode()
        assert bob.email not in content and bob.token not in content, name
        assert tokens.make_token(bob, tokens.MANAGE) not in content, name
        assert tokens.make_token(bob, tokens.UNSUBSCRIBE) not in content, name
    assert "ada@example.com" in pages["download my data"].content.decode()


def test_retired_keys_are_read_from_the_environment():
    from tests.test_security import settings_in_a_fresh_process
    from tests.test_settings import PRODUCTION

    found = settings_in_a_fresh_process(["SECRET_KEY_FALLBACKS"], **PRODUCTION, SECRET_KEY_FALLBACKS="old-1, old-2")

    assert found == {"SECRET_KEY_FALLBACKS": ["old-1", "old-2"]}
