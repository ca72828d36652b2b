"""What any client asks a site for besides its pages: HEAD /, /robots.txt, a favicon."""

import re

import pytest

from subscriptions.routes import ROUTES


def test_head_of_the_start_page_answers_200(client, db):
    response = client.head("/")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    assert response.content == b""


def test_robots_txt_lets_crawlers_see_the_public_pages_but_not_the_readers_links_or_the_admin(client):
    response = client.get("/robots.txt")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert "User-agent: *" in lines
    disallowed = {line.removeprefix("Disallow: ") for line in lines if line.startswith("Disallow:")}
    assert disallowed == {f"/{route}/" for route in ROUTES.values()} | {"/admin/", "/anymail/"}
    assert client.head("/robots.txt").status_code == 200


@pytest.mark.parametrize(
    ("path", "content_type", "starts"),
    [
        ("/favicon.ico", ("image/x-icon", "image/vnd.microsoft.icon"), b"\x00\x00\x01\x00"),
        ("/favicon.svg", ("image/svg+xml",), b"<svg "),
    ],
)
def test_the_site_has_a_favicon(client, path, content_type, starts):
    response = client.get(path)
    assert response.status_code == 200 and response["Content-Type"] in content_type
    assert b"".join(response.streaming_content).startswith(starts)


def test_pages_name_their_icons(client, db):
    page = client.get("/").content.decode()
    assert '<link rel="icon" href="/favicon.ico" sizes="32x32">' in page
    assert '<link rel="icon" href="/favicon.svg" type="image/svg+xml">' in page
    assert 'href="data:,"' not in page


def footer_of(page):
    return " ".join(re.sub(r"<[^>]+>", " ", page.split('<footer class="site">', 1)[1].split("</footer>")[0]).split())


@pytest.mark.parametrize(
    ("address", "footer"),
    [
        ("Paper Digest (development)\nNo postal address set", "Paper Digest (development) No postal address set"),
        ("Paper Digest Ltd\n1 Main Street, Springfield", "Paper Digest Ltd 1 Main Street, Springfield"),
        ("Acme Research\n1 Main Street, Springfield", "Acme Research 1 Main Street, Springfield"),
        ("", "Paper Digest"),
    ],
)
def test_the_footer_names_the_site_at_most_once_with_the_operators_address(client, db, settings, address, footer):
    settings.DIGEST_SITE_NAME = "Paper Digest"
    settings.DIGEST_POSTAL_ADDRESS = address
    text = footer_of(client.get("/topics/").content.decode())
    assert text.startswith(footer)
    assert text.count("Paper Digest") <= 1
    assert text.endswith("Topics")
