import math
import string

import pytest
import time_machine
from django.utils import timezone

from subscriptions import tokens
from subscriptions.models import Subscriber


@pytest.fixture
def topic(make_topic):
    return make_topic("Computer vision")


def sign_up(client, topic, email, ip="203.0.113.5"):
    data = {"email": email, "topics": [topic.pk], "time_zone": "UTC", "send_hour": "8", "frequency": "daily"}
    data.update(weekly_day="0", papers_per_email="10")
    return client.post("/", data, REMOTE_ADDR=ip)


def test_too_many_sign_ups_from_one_network_get_a_friendly_429(client, topic, settings):
    settings.SUBSCRIBE_RATE_PER_IP = "3/h"
    codes = [sign_up(client, topic, f"reader{n}@example.com").status_code for n in range(4)]
    assert codes == [302, 302, 302, 429]
    response = sign_up(client, topic, "reader9@example.com")
    assert response.status_code == 429 and b"Too many attempts" in response.content
    assert Subscriber.objects.count() == 3
    # Another network is not affected, and reading the page is never limited.
    assert sign_up(client, topic, "other@example.com", ip="198.51.100.1").status_code == 302
    assert client.get("/", REMOTE_ADDR="203.0.113.5").status_code == 200


def test_too_many_sign_ups_for_one_address_get_a_429_whatever_the_spelling(client, topic, settings):
    settings.SUBSCRIBE_RATE_PER_IP = "100/h"
    settings.SUBSCRIBE_RATE_PER_ADDRESS = "2/h"
    emails = ["ada@example.com", "ADA@example.com", " Ada@Example.com "]
    codes = [sign_up(client, topic, email, ip=f"192.0.2.{n}").status_code for n, email in enumerate(emails)]
    assert codes == [302, 302, 429]
    assert Subscriber.objects.count() == 1


def test_a_form_error_does_not_count_against_the_address(client, topic, settings):
    settings.SUBSCRIBE_RATE_PER_ADDRESS = "1/h"
    client.post("/", {"email": "ada@example.com"}, REMOTE_ADDR="192.0.2.1")
    assert sign_up(client, topic, "ada@example.com").status_code == 302


def test_behind_a_proxy_the_limit_is_per_client_not_per_proxy(client, topic, settings):
    settings.SUBSCRIBE_RATE_PER_IP = "1/h"
    settings.CLIENT_IP_HEADER = "X-Forwarded-For"
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    first = client.post("/", {"email": "a@example.com"}, HTTP_X_FORWARDED_FOR="203.0.113.1", **proxy)
    # A client cannot pick its address: only the entry the proxy appended counts.
    spoofed = client.post("/", {"email": "b@example.com"}, HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.1", **proxy)
    other = client.post("/", {"email": "c@example.com"}, HTTP_X_FORWARDED_FOR="198.51.100.9", **proxy)
    assert (first.status_code, spoofed.status_code, other.status_code) == (400, 429, 400)


def test_consent_records_keep_the_clients_address_from_the_proxy_header(client, topic, settings):
    settings.CLIENT_IP_HEADER = "X-Real-IP"
    sign_up(client, topic, "ada@example.com", ip="10.0.0.2")
    client.post("/", {"email": "x"}, REMOTE_ADDR="10.0.0.2")
    from subscriptions.models import Consent

    assert Consent.objects.get().ip == "10.0.0.2"  # no header: REMOTE_ADDR
    data = {"email": "grace@example.com", "topics": [topic.pk], "time_zone": "UTC", "send_hour": "8"}
    data.update(frequency="daily", weekly_day="0", papers_per_email="10")
    client.post("/", data, REMOTE_ADDR="10.0.0.2", HTTP_X_REAL_IP="203.0.113.77")
    assert Consent.objects.get(subscriber__email="grace@example.com").ip == "203.0.113.77"


def test_without_any_client_address_sign_ups_share_one_limit_instead_of_failing(client, topic, settings):
    settings.SUBSCRIBE_RATE_PER_IP = "1/h"
    assert sign_up(client, topic, "one@example.com", ip="").status_code == 302
    assert sign_up(client, topic, "two@example.com", ip="").status_code == 429


# The characters of a signature (URL-safe base64): whoever has a link with its last one cut off can try them all.
LAST_CHARACTERS = string.ascii_letters + string.digits + "-_"


def test_guessing_a_links_last_character_gets_429_after_the_limit_even_for_the_right_one(
    client, make_reader, topic, settings
):
    settings.BAD_LINK_RATE_PER_IP = "10/h"
    value = tokens.make_token(make_reader("ada@example.com", topics=[topic]), tokens.MANAGE)
    guesses = [value[:-1] + char for char in LAST_CHARACTERS if char != value[-1]] + [value]

    with time_machine.travel(timezone.now(), tick=False) as clock:
        codes = [client.get(f"/manage/{guess}/", REMOTE_ADDR="203.0.113.5").status_code for guess in guesses]
        refused = client.get(f"/manage/{value}/data/", REMOTE_ADDR="203.0.113.5")

        assert codes == [400] * 10 + [429] * 54  # the right one, last, among them
        assert refused.status_code == 429 and b"Too many broken links" in refused.content
        retry_after = int(refused["Retry-After"])
        assert 0 < retry_after <= 3600
        assert f"try again in {math.ceil(retry_after / 60)} minute".encode() in refused.content
        # Another client, with the same link, is not affected.
        assert client.get(f"/manage/{value}/", REMOTE_ADDR="198.51.100.1").status_code == 200
        clock.shift(int(refused["Retry-After"]))
        assert client.get(f"/manage/{value}/", REMOTE_ADDR="203.0.113.5").status_code == 200


def test_a_wait_of_hours_is_said_in_hours(client, make_reader, topic, settings):
    settings.BAD_LINK_RATE_PER_IP = "1/d"
    value = tokens.make_token(make_reader("ada@example.com", topics=[topic]), tokens.MANAGE)
    with time_machine.travel("2026-12-04 00:00:30Z", tick=False):
        client.get(f"/manage/{value}x/", REMOTE_ADDR="203.0.113.5")
        refused = client.get(f"/manage/{value}/", REMOTE_ADDR="203.0.113.5")
    assert refused.status_code == 429
    hours = math.ceil(int(refused["Retry-After"]) / 3600)
    assert hours > 1 and f"Please try again in {hours} hours.".encode() in refused.content


def test_readers_opening_their_own_links_again_and_again_are_never_slowed_down(client, make_reader, topic, settings):
    settings.BAD_LINK_RATE_PER_IP = "10/h"
    reader = make_reader("ada@example.com", topics=[topic])
    pages = [
        f"/manage/{tokens.make_token(reader, tokens.MANAGE)}/",
        f"/unsubscribe/{tokens.make_token(reader, tokens.UNSUBSCRIBE)}/",
        f"/feed/{tokens.make_token(reader, tokens.FEED)}/",
    ]
    # An erased reader's links, and a confirmation link past its age, are this site's own: no guesswork to slow down.
    gone = make_reader("bob@example.com", topics=[topic])
    gone_link = f"/manage/{tokens.make_token(gone, tokens.MANAGE)}/"
    gone.erase()

    codes = {client.get(page, REMOTE_ADDR="203.0.113.5").status_code for page in pages * 20}
    gone_codes = {client.get(gone_link, REMOTE_ADDR="203.0.113.5").status_code for _ in range(20)}

    assert (codes, gone_codes) == ({200}, {410})


def test_one_click_unsubscribe_works_while_the_cache_is_down(client, make_reader, topic, settings):
    """The bad link limit lives in the cache (Redis in production). With it unreachable, a reader's own link still
    unsubscribes them (RFC 8058 asks that it always work), and a bad link is still refused with 400, not 500."""
    settings.CACHES = {
        **settings.CACHES,
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:9/0"},
    }
    reader = make_reader("ada@example.com", topics=[topic])
    link = f"/unsubscribe/{tokens.make_token(reader, tokens.UNSUBSCRIBE)}/"

    bad = client.post(link[:-2] + "x/", {"List-Unsubscribe": "One-Click"}, REMOTE_ADDR="203.0.113.5")
    good = client.post(link, {"List-Unsubscribe": "One-Click"}, REMOTE_ADDR="203.0.113.5")

    assert (bad.status_code, good.status_code) == (400, 200)
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.UNSUBSCRIBED
