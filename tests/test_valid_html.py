"""Every page a reader can reach is valid HTML: the Nu HTML Checker (vnu.jar, the W3C's checker) finds no error in any.

The pages are rendered with realistic data (the SMTP tests' papers, one with markup in its title, a sent digest, a
reader's feedback) in their ordinary and their error states, then checked together in one run of the checker.

The checker is npm's vnu-jar package, pinned in tests/html_checker/ and installed by `make html-checker` (which
`make test` runs) into var/html-checker/<version>/; it runs on the system's Java. Without Java or the jar the test
skips, saying how to install them, unless HTML_CHECKER_TESTS=required (as in CI), which fails it instead.
"""

import json
import os
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.utils import timezone
from django.views.defaults import server_error

from subscriptions import signup, tokens
from subscriptions.models import Subscriber
from tests.test_smtp_delivery import seed_papers, seed_readers, seed_topic

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tests" / "html_checker" / "package.json"


def vnu_jar():
    version = json.loads(PACKAGE.read_text())["dependencies"]["vnu-jar"]
    default = ROOT / "var" / "html-checker" / version / "node_modules" / "vnu-jar" / "build" / "dist" / "vnu.jar"
    return Path(os.environ.get("VNU_JAR", default))


def checker_or_skip():
    """(java, vnu.jar), or the test skips (fails under HTML_CHECKER_TESTS=required) saying what is missing."""
    java, jar = shutil.which(os.environ.get("JAVA", "java")), vnu_jar()
    if java is None:
        message = "the HTML checker needs Java: install it with `apt-get install default-jre-headless`"
    elif not jar.is_file():
        message = f"the HTML checker is not installed at {jar}: run `make html-checker` (it needs npm)"
    else:
        return java, jar
    if os.environ.get("HTML_CHECKER_TESTS") == "required":
        pytest.fail(f"HTML_CHECKER_TESTS=required, but {message}", pytrace=False)
    pytest.skip(message)


def check(checker, pages, folder):
    """{page name: [(type, line, message)]} for `pages` ({name: html}), from one run of the checker over all of them."""
    java, jar = checker
    paths = {}
    for name, html in pages.items():
        path = folder / f"{name}.html"
        path.write_text(html, encoding="utf-8")
        paths[str(path.resolve())] = name
    # -Xss: checking a page against the HTML schema recurses deeply, past Java's default thread stack. The client
    # compiler alone and the serial collector start and finish a short-lived JVM soonest. Language detection (it can
    # only warn that a page's text is not in its lang) costs memory and time. --verbose names each file checked.
    jvm = [java, "-Xss8m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
    command = [*jvm, "-jar", str(jar), "--format", "json", "--exit-zero-always", "--no-langdetect", "--verbose"]
    result = subprocess.run([*command, *sorted(paths)], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"the HTML checker failed: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    assert set(result.stdout.split("\n")) - {""} == set(paths), f"the HTML checker left pages out: {result.stdout}"
    found = {name: [] for name in pages}
    for message in json.loads(result.stderr)["messages"]:
        name = paths.get(unquote(urlparse(message.get("url", "")).path))
        assert name is not None, f"the HTML checker could not check a page: {message}"
        kind = "warning" if message.get("subType") == "warning" else message["type"]
        found[name].append((kind, message.get("lastLine"), message["message"]))
    return found


def get(client, path, status=200):
    response = client.get(path, follow=True)
    assert response.status_code == status, f"{path} answered {response.status_code}"
    return response.content.decode()


def post(client, path, data=None, status=200):
    response = client.post(path, data or {}, follow=True)
    assert response.status_code == status, f"POST {path} answered {response.status_code}"
    return response.content.decode()


def path_of(url):
    return "/" + url.split("/", 3)[3]


def reader_pages(client, settings):
    """{name: html} of every page a reader can reach, in their ordinary and error states."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    seed_papers()
    topic = seed_topic()
    ada, grace = seed_readers(["ada@example.com", "grace@example.com"], topic)
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    message = next(message for message in mail.outbox if message.to == ["ada@example.com"])
    [view_url] = re.findall(r"View in browser: (\S+)", message.body)
    more_url = re.findall(r"More like this: (\S+)", message.body)[0]
    [pending] = seed_readers(["pending@example.com"], topic, status=Subscriber.Status.PENDING)
    with time_machine.travel(timezone.now() - timedelta(days=30)):
        [late] = seed_readers(["late@example.com"], topic, status=Subscriber.Status.PENDING)
        expired_url = tokens.confirm_url(late)
    manage, feed = path_of(tokens.manage_url(ada)), path_of(tokens.feed_url(ada))
    unsubscribe = path_of(tokens.unsubscribe_url(grace))
    today = timezone.now().date()
    pages = {
        "subscribe": get(client, "/"),
        "subscribe-errors": post(client, "/", {"email": "not an address", "papers_per_email": "31"}, status=400),
        "subscribe-sent": get(client, "/subscribe/sent/"),
        "confirm": get(client, path_of(tokens.confirm_url(pending))),
        "confirmed": post(client, path_of(tokens.confirm_url(pending))),
        "confirm-returning": get(client, path_of(tokens.confirm_url(returning_reader(topic)))),
        "bad-link": get(client, "/confirm/not-a-token/", status=400),
        "expired-link": get(client, path_of(expired_url), status=400),
        "view-in-browser": get(client, path_of(view_url)),
        "view-in-browser-gone": get(client, path_of(tokens.view_url(ada, today - timedelta(days=3))), status=404),
        "feedback": get(client, path_of(more_url)),
        "feedback-done": post(client, path_of(more_url)),
        "manage": get(client, manage + "?saved=1"),
        "manage-errors": post(client, manage, {"papers_per_email": "0"}, status=400),
        "manage-paused": post(client, manage + "pause/"),
        "manage-feedback-undone": post(client, manage + "feedback/undo/", {"feedback": ada.feedback.get().id}),
        "erase": get(client, manage + "delete/"),
        "erased": post(client, manage + "delete/"),
        "deleted-link": get(client, manage, status=410),
        "feed-gone": get(client, feed, status=410),
        "unsubscribe": get(client, unsubscribe),
        "unsubscribed": post(client, unsubscribe),
        "manage-unsubscribed": get(client, path_of(tokens.manage_url(grace))),
        "resubscribed": post(client, unsubscribe + "resubscribe/"),
        "topics": get(client, "/topics/"),
        "topic-today": get(client, f"/topics/{topic.slug}/"),
        "topic-empty-day": get(client, f"/topics/{topic.slug}/{today - timedelta(days=1)}/"),
        "topic-unknown": get(client, "/topics/no-such-topic/", status=404),
        "topic-bad-day": get(client, f"/topics/{topic.slug}/2020-02-30/", status=404),
        "not-found": get(client, "/no/such/page/", status=404),
        "csrf-failure": get_csrf_failure(),
        "server-error": server_error(RequestFactory().get("/")).content.decode(),
    }
    settings.SUBSCRIBE_RATE_PER_IP = "1/h"
    sign_up = {"topics": [topic.id], "time_zone": "UTC", "send_hour": "8", "frequency": "daily", "weekly_day": "0"}
    sign_up["papers_per_email"] = "8"
    post(client, "/", {"email": "one@example.com", **sign_up})
    pages["rate-limited"] = post(client, "/", {"email": "two@example.com", **sign_up}, status=429)
    settings.BAD_LINK_RATE_PER_IP = "1/h"
    get(client, "/manage/not-a-token/", status=400)
    pages["too-many-bad-links"] = get(client, manage, status=429)
    return pages


def returning_reader(topic):
    """An unsubscribed reader whose new choices, weekly, wait for the confirmation link."""
    [reader] = seed_readers(["back@example.com"], topic, status=Subscriber.Status.UNSUBSCRIBED)
    choices = {**reader.get_preferences(), "topics": [topic], "keywords": ["protein folding"], "frequency": "weekly"}
    reader.pending_preferences = signup.pending_json(choices)
    reader.pending_since = timezone.now()
    reader.save()
    return reader


def get_csrf_failure():
    response = Client(enforce_csrf_checks=True).post("/", {"email": "ada@example.com"})
    assert response.status_code == 403
    return response.content.decode()


def test_every_reader_page_is_valid_html(db, client, settings, tmp_path):
    checker = checker_or_skip()
    pages = reader_pages(client, settings)
    found = check(checker, pages, tmp_path)
    errors, warnings = listing(found, "error"), listing(found, "warning")
    print(f"Nu HTML Checker: {len(pages)} pages, {len(errors)} errors, {len(warnings)} warnings", *warnings, sep="\n")
    assert not errors, f"{len(errors)} errors on the reader pages:\n" + "\n".join(errors)


def listing(found, kind):
    """The checker's messages of one kind as lines: "<page>.html line <n>: <message>"."""
    return [
        f"{name}.html line {line}: {text}"
        for name, messages in found.items()
        for k, line, text in messages
        if k == kind
    ]
