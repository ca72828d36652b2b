"""Every page a reader can reach is valid HTML: the Nu HTML Checker (vnu.jar, the W3C's checker) finds no error in any.

The pages are rendered with realistic data (tests/reader_pages.py's walk: the SMTP tests' papers, one with markup in its
title, a sent digest, a reader's feedback) in their ordinary and their error states, then checked together in one run
of the checker.

The checker is npm's vnu-jar package, pinned in tests/html_checker/ and installed by `make html-checker` (which
`make test` runs) into var/html-checker/<version>/; it runs on the system's Java. Without Java or the jar the test
skips, saying how to install them, unless HTML_CHECKER_TESTS=required (as in CI), which fails it instead.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from django.test import Client, RequestFactory
from django.views.defaults import server_error

from tests.reader_pages import walk as reader_pages_walk

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


class ClientVisit:
    """reader_pages.walk's visitor with Django's test client: it keeps each named page's HTML."""

    def __init__(self, client):
        self.client = client
        self.pages = {}

    def get(self, name, path, status=200):
        self._keep(name, get(self.client, path, status))

    def post(self, name, path, data=None, status=200):
        self._keep(name, post(self.client, path, data, status))

    def _keep(self, name, html):
        if name is not None:
            self.pages[name] = html


def reader_pages(client, settings):
    """{name: html} of every page a reader can reach, in their ordinary and error states."""
    visit = ClientVisit(client)
    reader_pages_walk(visit, settings)
    visit.pages["csrf-failure"] = get_csrf_failure()
    visit.pages["server-error"] = server_error(RequestFactory().get("/")).content.decode()
    return visit.pages


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
