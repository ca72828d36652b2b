"""Open redirects: whatever a request carries, every redirect the site answers with stays on the site."""

from urllib.parse import urlsplit

import pytest

from subscriptions import tokens

HOSTILE = [
    "//attacker.example",
    "///attacker.example",
    "/\\attacker.example",
    "\\\\attacker.example",
    "https://attacker.example",
    "http:attacker.example",
    "%2F%2Fattacker.example",
    "/%09/attacker.example",
    "javascript:alert(1)",
    "https://testserver@attacker.example",
]


def assert_stays_on_the_site(response, what):
    location = response.headers.get("Location")
    if location is None:
        return
    parts = urlsplit(location)
    assert parts.scheme in ("", "http", "https"), (what, location)
    assert parts.netloc in ("", "testserver"), (what, location)
    assert not location.startswith(("//", "/\\", "\\")), (what, location)


@pytest.fixture
def operator(django_user_model, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # ten logins, not ten seconds
    return django_user_model.objects.create_superuser("operator", "operator@example.org", "a-long-passphrase-1")


@pytest.mark.parametrize("logged_in", [False, True], ids=["anonymous", "operator"])
def test_no_redirect_leaves_the_site_whatever_the_next_or_path(client, make_reader, make_topic, operator, logged_in):
    make_topic("Graph neural networks")
    manage = tokens.make_token(make_reader("ada@example.com"), tokens.MANAGE)
    if logged_in:
        client.force_login(operator)
    for value in HOSTILE:
        for what, response in requests(client, manage, value).items():
            assert response.status_code < 500, (what, value)
            assert_stays_on_the_site(response, what)


def requests(client, manage, value):
    return {
        "admin login page": client.get("/admin/login/", {"next": value}),
        "admin login": client.post(
            f"/admin/login/?next={value}", {"username": "operator", "password": "a-long-passphrase-1", "next": value}
        ),
        "admin logout": client.post("/admin/logout/", {"next": value}),
        "admin, logged out": client.get(f"/admin/?next={value}"),
        "sign-up": client.post(f"/?next={value}", {"email": "x@example.com", "next": value}),
        "topic without a date": client.get(f"/topics/graph-neural-networks/?next={value}"),
        "pause": client.post(f"/manage/{manage}/pause/?next={value}", {"next": value}),
        "save preferences": client.post(f"/manage/{manage}/?next={value}", {"next": value}),
        "undo feedback": client.post(f"/manage/{manage}/feedback/undo/?next={value}", {"next": value}),
        "a path with a slash missing": client.get(f"/{value}"),
        "a path with a slash missing, under topics": client.get(f"/topics/{value}"),
        "a double-slash path": client.get(f"//{value.lstrip('/')}"),
    }


def test_a_forged_host_header_never_reaches_a_redirect(client, db):
    response = client.get("/topics/graph-neural-networks", headers={"Host": "attacker.example"})

    assert response.status_code == 400
    assert "Location" not in response.headers
