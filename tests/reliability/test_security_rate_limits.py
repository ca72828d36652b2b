"""Sign-up rate limits over real HTTP: a server on 127.0.0.1, a browser-like client in several threads at once."""

import http.client
import re
import threading
from collections import Counter
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

import pytest
import time_machine
from django.core import mail

from subscriptions.models import Subscriber

POSTS = 1000
THREADS = 8


class Browser:
    """What a browser does with the sign-up form: load the page, keep its CSRF cookie, post the form with its token."""

    def __init__(self, base_url):
        parts = urlsplit(base_url)
        self.host, self.port, self.origin = parts.hostname, parts.port, f"{parts.scheme}://{parts.netloc}"
        status, headers, body = self.request("GET", "/")
        assert status == 200, body[:500]
        self.cookie = SimpleCookie(headers["Set-Cookie"])["csrftoken"].value
        self.token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1)

    def request(self, method, path, body=None, headers=None):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.headers, response.read().decode()
        finally:
            connection.close()

    def sign_up(self, email, topic_id):
        form = {
            "csrfmiddlewaretoken": self.token,
            "email": email,
            "topics": topic_id,
            "time_zone": "UTC",
            "send_hour": "8",
            "frequency": "daily",
            "weekly_day": "0",
            "papers_per_email": "10",
        }
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={self.cookie}",
            "Origin": self.origin,
        }
        return self.request("POST", "/", urlencode(form), headers)


@pytest.fixture
def topic(make_topic):
    return make_topic("Computer vision")


def test_a_thousand_concurrent_sign_ups_from_one_address_get_at_most_the_limit_through(
    live_server, topic, settings, inline_tasks
):
    settings.SUBSCRIBE_RATE_PER_IP = "20/h"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    answers, lock = [], threading.Lock()

    def post_many(thread_number):
        try:
            browser = Browser(live_server.url)
            for n in range(thread_number, POSTS, THREADS):
                status, headers, body = browser.sign_up(f"reader{n}@example.com", topic.pk)
                with lock:
                    answers.append((status, headers.get("Location"), "Too many attempts" in body))
        except Exception as error:  # noqa: BLE001 - counted and asserted on below, in the test's own thread
            with lock:
                answers.append((f"error: {error!r}", None, False))

    # A fixed moment, so the run never straddles the end of the limit's hour.
    with time_machine.travel("2026-11-30 09:00:00Z", tick=True):
        threads = [threading.Thread(target=post_many, args=(number,)) for number in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    outcomes = Counter(status for status, _location, _page in answers)
    assert outcomes == {302: 20, 429: POSTS - 20}
    assert {location for status, location, _page in answers if status == 302} == {"/subscribe/sent/"}
    assert all(says_so for status, _location, says_so in answers if status == 429)
    assert Subscriber.objects.filter(status=Subscriber.Status.PENDING).count() == 20
    assert Subscriber.objects.count() == 20
    assert len(mail.outbox) == 20
    assert len({message.to[0] for message in mail.outbox}) == 20
