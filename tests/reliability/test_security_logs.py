"""Secrets never reach the logs: the flows that log are run with every logger at DEBUG, through the console handler
the operator reads, and nothing in its output is a key, a password or a link that acts for a reader."""

import base64
import http.client
import io
import itertools
import json
import os
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from django.core import mail
from django.core.management import call_command
from django.test import Client

from subscriptions import tokens
from subscriptions.models import Subscriber
from tests.test_settings import PRODUCTION, ROOT, configuration_error
from tests.test_smtp_delivery import free_port, seed_papers, seed_readers, seed_topic

EMAIL_HOST_PASSWORD = "smtp-pa55word-never-logged"
API_KEY = "key-mailgun-api-key-never-logged"
WEBHOOK_SECRET = "tracker:webhook-secret-never-logged"
SIGNING_KEY = "mailgun-signing-key-never-logged"


@pytest.fixture
def readers(db):
    seed_papers()
    topic = seed_topic()
    active, unsubscribed = seed_readers(["ada@example.com", "bob@example.com"], topic)
    unsubscribed.unsubscribe()
    return active, unsubscribed, topic


def secrets_of(readers, settings):
    found = {
        "SECRET_KEY": settings.SECRET_KEY,
        "EMAIL_HOST_PASSWORD": EMAIL_HOST_PASSWORD,
        "ANYMAIL_MAILGUN_API_KEY": API_KEY,
        "ANYMAIL_WEBHOOK_SECRET": WEBHOOK_SECRET.split(":")[1],
        "ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
    }
    for reader in Subscriber.objects.all():
        found[f"{reader.email}'s token"] = reader.token
        for purpose in (tokens.CONFIRM, tokens.MANAGE, tokens.UNSUBSCRIBE, tokens.FEED):
            # The signature alone acts as the link: a log line that kept only it would still leak.
            found[f"{reader.email}'s {purpose} signature"] = tokens.make_token(reader, purpose).rsplit(":", 1)[1]
    return found


def assert_no_secret_in(output, secrets):
    leaked = {name: value for name, value in secrets.items() if value and value in output}
    assert leaked == {}, output


class RefusingAuthenticator:
    def __call__(self, server, session, envelope, mechanism, auth_data):
        return AuthResult(success=False, handled=False)


class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"


@pytest.fixture
def smtp_refusing_the_password(settings):
    controller = Controller(
        Sink(),
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=RefusingAuthenticator(),
        auth_require_tls=False,
    )
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "digest", EMAIL_HOST_PASSWORD
    settings.DIGEST_MAX_RETRIES = 0
    yield controller
    controller.stop()


def test_a_failing_smtp_login_logs_why_but_not_the_password(logs, readers, smtp_refusing_the_password, settings):
    with pytest.raises(smtplib.SMTPAuthenticationError):
        mail.send_mail("Check", "Body", None, ["ada@example.com"])  # the server does refuse the login

    call_command("senddigests", "--now", "--no-progress", stdout=io.StringIO(), stderr=io.StringIO())

    output = logs.getvalue()
    assert "Mail connection failed for 1 digests" in output and "535" in output
    assert_no_secret_in(output, secrets_of(readers, settings))


def test_a_provider_error_logs_why_but_not_the_api_key(
    logs, client, readers, settings, monkeypatch, inline_tasks, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "anymail.backends.mailgun.EmailBackend"
    settings.ANYMAIL = {"MAILGUN_API_KEY": API_KEY, "MAILGUN_SENDER_DOMAIN": "mg.example.org"}
    settings.DIGEST_MAX_RETRIES = 0
    seen = []

    def provider(adapter, request, *args, **kwargs):
        seen.append(request.headers["Authorization"])
        response = requests.Response()
        response.status_code, response.reason, response.request, response.url = (
            401,
            "Unauthorized",
            request,
            request.url,
        )
        response._content = json.dumps({"message": "Invalid private key"}).encode()
        return response

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", provider)

    call_command("senddigests", "--now", "--no-progress", stdout=io.StringIO(), stderr=io.StringIO())
    form = {"email": "carol@example.com", "topics": [readers[2].pk], "time_zone": "UTC", "send_hour": "8"}
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/", {**form, "frequency": "daily", "weekly_day": "0", "papers_per_email": "10"})

    assert len(seen) == 2 and base64.b64decode(seen[0].split()[1]).decode() == f"api:{API_KEY}"  # the key was used
    output = logs.getvalue()
    assert "Invalid private key" in output
    assert_no_secret_in(output, secrets_of(readers, settings))


def test_webhook_calls_with_a_wrong_secret_log_nothing_secret(logs, client, readers, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}
    wrong = "Basic " + base64.b64encode(b"tracker:guess").decode()
    right = "Basic " + base64.b64encode(WEBHOOK_SECRET.encode()).decode()

    refused = client.post("/anymail/mailgun/tracking/", "{}", content_type="application/json", HTTP_AUTHORIZATION=wrong)
    unsigned = client.post(
        "/anymail/mailgun/tracking/", "{}", content_type="application/json", HTTP_AUTHORIZATION=right
    )

    assert (refused.status_code, unsigned.status_code) == (403, 400)
    output = logs.getvalue()
    assert "wrong ANYMAIL_WEBHOOK_SECRET credentials" in output and "invalid payload format" in output
    assert_no_secret_in(output, secrets_of(readers, settings))


def test_sign_ups_and_refused_signed_links_log_no_link(logs, client, readers, settings, inline_tasks):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    active, unsubscribed, topic = readers
    manage_path = f"/manage/{tokens.make_token(active, tokens.MANAGE)}/"
    form = {"topics": [topic.pk], "time_zone": "UTC", "send_hour": "8", "frequency": "daily"}
    form.update(weekly_day="0", papers_per_email="10")

    for _ in range(2):  # the second is "not sending another sign-up email so soon"
        client.post("/", {**form, "email": "carol@example.com"})
    client.post("/", {**form, "email": "carol@example.com", "time_zone": "Mars/Olympus"})
    answers = [
        client.post(manage_path, {"send_hour": "99"}).status_code,  # a form error: 400
        Client(enforce_csrf_checks=True).post(manage_path, form).status_code,  # no CSRF token: 403
        client.get(f"/feed/{tokens.make_token(unsubscribed, tokens.FEED)}/").status_code,  # an ended feed: 410
        client.get(f"/digest/{tokens.view_value(active, active.created_at.date())}/").status_code,  # no digest: 404
        client.post(f"/confirm/{tokens.make_token(unsubscribed, tokens.CONFIRM)}/").status_code,  # not pending: 400
    ]

    assert answers == [400, 403, 410, 404, 400]
    output = logs.getvalue()
    assert "Bad Request: /manage/" in output and "Forbidden (CSRF cookie not set.): /manage/" in output
    assert "Not sending another sign-up email" in output
    assert_no_secret_in(output, secrets_of(readers, settings))


def test_a_very_long_path_is_logged_at_once(logs, client):
    # 40,000 characters of one kind each: a pattern that tried every starting point would take seconds or minutes.
    path = "/" + "a" * 20_000 + "/" * 20_000

    started = time.monotonic()
    response = client.get(path)
    took = time.monotonic() - started

    assert response.status_code == 404 and "Not Found: /aaaa" in logs.getvalue()
    assert took < 2, took


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REDIS_URL", "redis//:redis-pa55word-never-logged@cache.internal:6379/0"),
        ("DATABASE_URL", "postgres://digest:db-pa55word-never-logged@db.internal:5432/"),
        ("DATABASE_URL", "postgress://digest:db-pa55word-never-logged@db.internal:5432/digest"),
    ],
)
def test_a_settings_error_names_the_variable_but_not_the_password_in_it(name, value):
    # manage.py prints this message after "Configuration error: ", and nothing else from the environment.
    message = configuration_error(**{**PRODUCTION, name: value})

    assert message.startswith(name)
    assert "pa55word" not in message and PRODUCTION["SECRET_KEY"] not in message


# Every page a signed link opens, with the purpose of the link it takes.
LINK_PAGES = [
    ("/confirm/{}/", tokens.CONFIRM),
    ("/manage/{}/", tokens.MANAGE),
    ("/manage/{}/pause/", tokens.MANAGE),
    ("/manage/{}/data/", tokens.MANAGE),
    ("/manage/{}/delete/", tokens.MANAGE),
    ("/manage/{}/feedback/undo/", tokens.MANAGE),
    ("/unsubscribe/{}/", tokens.UNSUBSCRIBE),
    ("/unsubscribe/{}/resubscribe/", tokens.UNSUBSCRIBE),
    ("/digest/{}/", tokens.VIEW),
    ("/feedback/{}/", tokens.FEEDBACK),
    ("/feed/{}/", tokens.FEED),
]
# What a reader's mail app or a tamperer may make of a link: one character short, one too many, more path after it.
NEAR_MISSES = [
    lambda value: value[:-1],
    lambda value: value + "A",
    lambda value: value + "/more/path",
    lambda value: value[:-1] + "?utm_source=mail&next=/manage/" + value[:-1],
]
# How a client may spell a path: as it is, or with the route's first letter and the value's colons percent-encoded
# (the server decodes them: it is the same page).
SPELLINGS = [lambda path: path, lambda path: f"/%{ord(path[1]):02X}{path[2:]}".replace(":", "%3A")]


def fragments(value, size=8):
    """Every run of `size` characters of a signed value's secret parts, the reader's token and the signature (not a
    digest's date or a paper's id): a log line that kept any of them gave part of the link away."""
    reader_token, signature = value.split(".")[0].split(":")[0], value.rsplit(":", 1)[1]
    return {part[start : start + size] for part in (reader_token, signature) for start in range(len(part) - size + 1)}


def procfile(process):
    [command] = [
        line.split(":", 1)[1] for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith(f"{process}:")
    ]
    return command


@pytest.fixture
def production_web_server(tmp_path):
    """The Procfile's release step, then its web process, with production settings behind a TLS-terminating proxy
    (plain HTTP from 127.0.0.1 with X-Forwarded-Proto). Yields (port, run: a Python snippet run under the same
    settings, read: everything the server printed so far, stdout and stderr)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "DATABASE_URL", "REDIS_URL"}}
    env.update(PRODUCTION)
    env.update(
        VAR_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'digest.sqlite3'}",
        SECURE_PROXY_SSL_HEADER="true",
        PORT=str(port),
        WEB_CONCURRENCY="1",
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    )
    released = subprocess.run(["bash", "-c", procfile("release")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert released.returncode == 0, released.stderr

    def run(snippet):
        script = "import django; django.setup()\n" + snippet
        env_run = {**env, "DJANGO_SETTINGS_MODULE": "config.settings"}
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env_run, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    log = tmp_path / "web.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            ["bash", "-c", f"exec {procfile('web')}"], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            for _attempt in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            yield port, run, log.read_text
        finally:
            server.terminate()
            server.wait(timeout=30)


def test_a_signed_link_cut_short_or_lengthened_is_in_no_log_line_of_the_production_web_server(
    production_web_server,
):
    port, run, read = production_web_server
    values = json.loads(
        run(
            "import datetime, json\n"
            "from subscriptions import tokens; from subscriptions.models import Subscriber\n"
            "reader = Subscriber.objects.create(email='ada@example.com', status='active')\n"
            "print(json.dumps({purpose: tokens.make_token(reader, purpose) for purpose in "
            "(tokens.CONFIRM, tokens.MANAGE, tokens.UNSUBSCRIBE, tokens.FEED)} | "
            "{tokens.FEEDBACK: tokens.feedback_value(reader, 1, 'more'), "
            "tokens.VIEW: tokens.view_value(reader, datetime.date(2026, 12, 1))}))\n"
        )
    )
    answers = []
    for template, purpose in LINK_PAGES:
        for near_miss, spelling in itertools.product(NEAR_MISSES, SPELLINGS):
            path = spelling(template.format(near_miss(values[purpose])))
            for method in ("GET", "POST"):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                headers = {
                    "Host": "digest.example.org",
                    "X-Forwarded-Proto": "https",
                    "Referer": f"https://digest.example.org{path}",
                }
                connection.request(method, path, headers=headers)
                answers.append(connection.getresponse().status)
                connection.close()
    time.sleep(0.5)  # the access log line is written after the answer
    output = read()

    assert set(answers) <= {301, 400, 403, 404, 405, 429} and {400, 404, 429} <= set(answers), answers
    # The requests were logged, by gunicorn and by Django, with the route and without the link.
    assert '"GET /manage/[signed link] HTTP/1.1" 400' in output, output
    assert '"https://digest.example.org/manage/[signed link]"' in output
    assert "django.request: Bad Request: /manage/[signed link]" in output
    assert "django.request: Not Found: /manage/[signed link]" in output
    leaks = [
        (purpose, fragment, line)
        for line in output.splitlines()
        for purpose, value in values.items()
        for fragment in fragments(value)
        if fragment in line
    ]
    assert leaks == []
