"""Secrets never reach the logs: the flows that log are run with every logger at DEBUG, through the console handler
the operator reads, and nothing in its output is a key, a password or a link that acts for a reader."""

import base64
import io
import json
import logging
import smtplib

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from django.core import mail
from django.core.management import call_command
from django.test import Client

from subscriptions import tokens
from subscriptions.models import Subscriber
from tests.test_settings import PRODUCTION, configuration_error
from tests.test_smtp_delivery import free_port, seed_papers, seed_readers, seed_topic

EMAIL_HOST_PASSWORD = "smtp-pa55word-never-logged"
API_KEY = "key-mailgun-api-key-never-logged"
WEBHOOK_SECRET = "tracker:webhook-secret-never-logged"
SIGNING_KEY = "mailgun-signing-key-never-logged"


@pytest.fixture
def logs():
    """What the console handler prints, with the root logger and every named logger at DEBUG."""
    root = logging.getLogger()
    [console] = [handler for handler in root.handlers if handler.get_name() == "console"]
    loggers = [root, *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    saved = [(logger, logger.level) for logger in loggers]
    stream, saved_level = io.StringIO(), console.level
    saved_stream = console.setStream(stream)
    console.setLevel(logging.DEBUG)
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    yield stream
    console.setStream(saved_stream)
    console.setLevel(saved_level)
    for logger, level in saved:
        logger.setLevel(level)


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


def test_the_web_servers_access_log_shows_no_signed_link(tmp_path):
    import os
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    [web] = [line.split(":", 1)[1] for line in (root / "Procfile").read_text().splitlines() if line.startswith("web:")]
    port = free_port()
    env = {
        **os.environ,
        "DEBUG": "true",
        "VAR_DIR": str(tmp_path),
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    # A link shaped like a manage link; the page refuses it without reading the database.
    link = f"/manage/{'A' * 32}:{'b' * 43}/"
    server = subprocess.Popen(["bash", "-c", f"exec {web}"], cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{link}", headers={"Referer": f"http://x{link}"})
        for _attempt in range(100):
            try:
                urllib.request.urlopen(request, timeout=5)
            except urllib.error.HTTPError as answer:
                status = answer.code
                break
            except OSError:
                time.sleep(0.1)
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]

    assert status == 400
    assert '"GET /manage/[signed link]/ HTTP/1.1" 400' in output and '"http://x/manage/[signed link]/"' in output
    assert "b" * 43 not in output
