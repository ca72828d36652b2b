import json
import re
import secrets

import pytest
from django.http import HttpResponse
from django.template import engines
from django.urls import path

from tests.test_settings import PRODUCTION, configuration_error, manage, settings_in_process

NONCE_PAGE = """<!DOCTYPE html>
<html><head><style nonce="{{ request.csp_nonce }}">body { margin: 0 }</style></head>
<body><script nonce="{{ request.csp_nonce }}">document.body.dataset.ready = "1";</script></body></html>"""


def nonce_page(request):
    return HttpResponse(engines["django"].from_string(NONCE_PAGE).render(request=request))


# For @pytest.mark.urls: a page with inline code the way the site's templates write it.
urlpatterns = [path("inline/", nonce_page)]


def policy(response):
    """The Content-Security-Policy header as {directive: [sources]}."""
    directives = (part.split() for part in response.headers["Content-Security-Policy"].split(";"))
    return {name: sources for name, *sources in directives}


def test_a_page_carries_the_security_headers(client):
    response = client.get("/admin/login/")

    assert response.status_code == 200
    assert policy(response) == {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"


@pytest.mark.urls("tests.test_security")
def test_inline_style_and_script_run_only_with_this_responses_nonce(client):
    first, second = client.get("/inline/"), client.get("/inline/")

    nonces = []
    for response in (first, second):
        in_page = set(re.findall(r'nonce="([^"]+)"', response.content.decode()))
        assert len(in_page) == 1
        nonce = in_page.pop()
        assert len(nonce) >= 22  # 16 random bytes, base64
        assert policy(response)["script-src"] == ["'self'", f"'nonce-{nonce}'"]
        assert policy(response)["style-src"] == ["'self'", f"'nonce-{nonce}'"]
        assert policy(response)["frame-ancestors"] == ["'none'"]
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


@pytest.mark.parametrize("redis_url", ["redis://127.0.0.1:6379/15", ""], ids=["with-redis", "without-redis"])
def test_production_settings_pass_the_deployment_checklist(redis_url):
    production = {**PRODUCTION, "SECRET_KEY": secrets.token_urlsafe(50), "REDIS_URL": redis_url}
    # The browser tests set this in the test process; a deployment never has it (check --deploy says so: async.E001).
    result = manage("check", "--deploy", **production, DJANGO_ALLOW_ASYNC_UNSAFE="")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("System check identified no issues"), result.stdout
    assert result.stderr == ""


def settings_in_a_fresh_process(names, **env):
    # The settings module run afresh in this process on that environment; the values go through JSON, as they did when
    # a `manage.py shell` printed them.
    settings = settings_in_process(**env)
    return json.loads(json.dumps({name: getattr(settings, name) for name in names}))


def test_https_production_defaults():
    found = settings_in_a_fresh_process(
        [
            "SESSION_COOKIE_SECURE",
            "CSRF_COOKIE_SECURE",
            "SECURE_SSL_REDIRECT",
            "SECURE_HSTS_SECONDS",
            "SECURE_HSTS_INCLUDE_SUBDOMAINS",
            "SECURE_HSTS_PRELOAD",
            "SECURE_PROXY_SSL_HEADER",
            "SUBSCRIBE_RATE_PER_IP",
            "SUBSCRIBE_RATE_PER_ADDRESS",
            "CONFIRMATION_RESEND_SECONDS",
            "CONFIRMATION_MAX_AGE_DAYS",
            "RATELIMIT_VIEW",
        ],
        **PRODUCTION,
    )

    assert found == {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": None,
        "SUBSCRIBE_RATE_PER_IP": "20/h",
        "SUBSCRIBE_RATE_PER_ADDRESS": "5/h",
        "CONFIRMATION_RESEND_SECONDS": 600,
        "CONFIRMATION_MAX_AGE_DAYS": 7,
        "RATELIMIT_VIEW": "subscriptions.views.rate_limited",
    }


def test_behind_a_tls_proxy_the_forwarded_scheme_is_trusted():
    found = settings_in_a_fresh_process(["SECURE_PROXY_SSL_HEADER"], **PRODUCTION, SECURE_PROXY_SSL_HEADER="true")

    assert found["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]  # a tuple, through JSON


def test_development_over_http_keeps_plain_http_working():
    found = settings_in_a_fresh_process(
        ["SITE_URL", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"],
        DEBUG="true",
    )

    assert found == {
        "SITE_URL": "http://127.0.0.1:8000",
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 0,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
    }


@pytest.mark.parametrize(
    ("redis_url", "backend", "prefix"),
    [
        ("redis://127.0.0.1:6379/15", "django.core.cache.backends.redis.RedisCache", "digest"),
        ("", "django.core.cache.backends.locmem.LocMemCache", ""),
    ],
    ids=["with-redis", "without-redis"],
)
def test_rate_limits_count_in_redis_when_there_is_one(redis_url, backend, prefix):
    found = settings_in_a_fresh_process(["CACHES"], **PRODUCTION, REDIS_URL=redis_url)

    assert found["CACHES"]["default"]["BACKEND"] == backend
    assert found["CACHES"]["default"].get("KEY_PREFIX", "") == prefix


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SUBSCRIBE_RATE_PER_IP", "lots", "SUBSCRIBE_RATE_PER_IP='lots' is not a rate"),
        ("SUBSCRIBE_RATE_PER_ADDRESS", "5/w", "SUBSCRIBE_RATE_PER_ADDRESS='5/w' is not a rate"),
        ("SUBSCRIBE_RATE_PER_ADDRESS", "0/h", "SUBSCRIBE_RATE_PER_ADDRESS='0/h' is not a rate"),
        ("SECURE_HSTS_SECONDS", "-1", "SECURE_HSTS_SECONDS=-1 is out of range"),
        ("SECURE_HSTS_SECONDS", "a year", "SECURE_HSTS_SECONDS='a year' is not a whole number"),
        ("SECURE_SSL_REDIRECT", "maybe", "SECURE_SSL_REDIRECT='maybe' is not a yes/no value"),
        ("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto", "SECURE_PROXY_SSL_HEADER='X-Forwarded-Proto' is not a yes/no"),
        ("SECURE_HSTS_PRELOAD", "sure", "SECURE_HSTS_PRELOAD='sure' is not a yes/no value"),
        ("CONFIRMATION_RESEND_SECONDS", "10m", "CONFIRMATION_RESEND_SECONDS='10m' is not a whole number"),
        ("CONFIRMATION_MAX_AGE_DAYS", "0", "CONFIRMATION_MAX_AGE_DAYS=0 is out of range"),
    ],
)
def test_a_bad_security_or_rate_value_stops_start_up_naming_the_variable(name, value, message):
    assert configuration_error(**{**PRODUCTION, name: value}).startswith(message)


@pytest.mark.parametrize("rate", ["20/h", "5/15m", "1/s", "100/d", "3/1h"])
def test_rates_django_ratelimit_understands_are_accepted(monkeypatch, rate):
    from config.env import env_rate

    monkeypatch.setenv("SOME_RATE", rate)
    assert env_rate("SOME_RATE", "1/h") == rate


@pytest.mark.parametrize("rate", ["20", "20/", "/h", "20/hour", "20/H", "-1/h", "20/0m", "２０/h", "20 / h"])
def test_anything_else_is_refused(monkeypatch, rate):
    from django.core.exceptions import ImproperlyConfigured

    from config.env import env_rate

    monkeypatch.setenv("SOME_RATE", rate)
    with pytest.raises(ImproperlyConfigured, match=r"^SOME_RATE=.* is not a rate; write a number of requests"):
        env_rate("SOME_RATE", "1/h")


def test_an_unknown_address_gets_the_sites_own_404_page(client, settings, db):
    settings.DEBUG = False
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "<h1>Page not found</h1>" in page and 'href="/topics/"' in page
    nonce = re.search(r'<style nonce="([^"]+)"', page).group(1)
    assert f"'nonce-{nonce}'" in response["Content-Security-Policy"]


def test_a_server_error_page_needs_nothing_that_could_fail_again():
    from django.template.loader import render_to_string

    page = render_to_string("500.html")  # rendered without a request or context, as Django's handler does
    assert "<h1>Something went wrong</h1>" in page and "{%" not in page
