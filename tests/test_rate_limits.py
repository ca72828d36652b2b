import pytest

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
