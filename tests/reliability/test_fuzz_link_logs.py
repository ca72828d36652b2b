"""Generated requests under every signed link route: any method, any spelling of the route, any link value (genuine,
mutated, spliced or noise), anything after it, a query string and a Referer. None gets a server error, a client over
BAD_LINK_RATE_PER_IP gets 429 on every page under a route, and no log line says any 8 characters in a row of a
reader's token or of a signature: neither Django's (through the console handler the operator reads) nor the access
line of the Procfile's gunicorn logger (config.logs.GunicornLogger, fed the same request as gunicorn would)."""

import datetime
import io
import itertools
import re
import shlex
from urllib.parse import quote, unquote

import pytest
from gunicorn.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st

from subscriptions import routes, tokens
from subscriptions.models import Subscriber
from tests.reliability.test_fuzz_links import NASTY, link_values, signed_values
from tests.reliability.test_fuzz_links import PAGES as LINK_PAGES
from tests.reliability.test_security_logs import fragments, procfile

pytestmark = pytest.mark.usefixtures("plain_template_rendering")

METHODS = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"]
PAGES = [*LINK_PAGES, ("POST", "/manage/{}/feedback/undo/", tokens.MANAGE)]
OVER_THE_LIMIT = "192.0.2.99"
_fresh_addresses = (f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in itertools.count(1))


@pytest.fixture
def world(make_reader, make_paper, make_topic, client, settings):
    """Two readers' links of every purpose, and one client address already over the bad link limit."""
    settings.BAD_LINK_RATE_PER_IP = "10/h"
    topic, paper = make_topic("Computer vision"), make_paper("Seeing in the dark")
    readers = [
        make_reader("ada@example.com", topics=[topic]),
        make_reader("bob@example.com", topics=[topic], status=Subscriber.Status.PENDING),
    ]
    values = signed_values(readers, paper)
    for _ in range(10):
        assert client.get("/manage/not-a-link/", REMOTE_ADDR=OVER_THE_LIMIT).status_code == 400
    secrets = set().union(*(fragments(value) for value, _purpose in values))
    return {"values": values, "secrets": secrets}


@pytest.fixture
def access_log():
    """The Procfile's gunicorn logger (its --logger-class and --access-logfile), writing its access lines here."""
    config = Config()
    command = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", procfile("web"))  # ${PORT:-8000}: the default
    for name, value in vars(config.parser().parse_args(shlex.split(command)[1:])).items():
        if value is not None and name in config.settings:
            config.set(name, value)
    logger = config.logger_class(config)
    [handler] = logger.access_log.handlers
    stream = io.StringIO()
    handler.setStream(stream)
    return logger, stream


def mostly(usual, *others):
    """`usual` four times in five (so that most requests reach the pages' own code), else one of `others`."""
    return st.sampled_from([usual] * 4 * len(others) + list(others))


@st.composite
def requests_under_routes(draw, values):
    """(method, the request target as sent, the Referer or None) of a request under a signed link route: one of the
    pages as its link names it, or changed: another method, the route spelled otherwise, more path after it."""
    method, template, purpose = draw(st.sampled_from(PAGES))
    own = {key: reader for key, reader in values.items() if key[1] == purpose}
    value = draw(link_values(draw(mostly(own, values))))
    path = template.format(quote(value, safe=draw(mostly(":", "", ":/?", ":.-_~"))))
    tail = draw(mostly("", "x", "x/y/", "/", "..", st.text(max_size=20), st.sampled_from(NASTY)))
    if isinstance(tail, st.SearchStrategy):
        tail = draw(tail)
    name, rest = path[1:].split("/", 1)
    # "/%2F": a server sees "//" (a test client would read a leading "//" as a host name). The server decodes a
    # percent-encoded letter: the same page.
    lead = draw(mostly("/", "/%2F", "/./", "/%2e%2E/"))
    spelling = draw(mostly(name, f"%{ord(name[0]):02X}{name[1:]}", f"%{ord(name[0]):02x}{name[1:]}", name.upper()))
    target = f"{lead}{spelling}/{rest}{quote(tail, safe='/%')}"
    query = draw(mostly(None, st.text(max_size=20), f"next=/{name}/{value}/", f"v={value}"))
    if isinstance(query, st.SearchStrategy):
        query = draw(query)
    if query is not None:
        target += "?" + quote(query, safe="=&/:")
    referer = draw(mostly(None, f"https://digest.example.org{target}", target, quote(target)))
    return draw(mostly(method, *METHODS)), target, referer


class Sent:
    """What gunicorn hands its logger after answering: the response's status line and headers."""

    def __init__(self, response):
        self.status = f"{response.status_code} {response.reason_phrase}"
        self.headers = list(response.items())
        self.sent = len(response.content) if not response.streaming else 0


def gunicorn_environ(method, target, referer, address):
    path, _, query = target.partition("?")
    environ = {
        "REQUEST_METHOD": method,
        "RAW_URI": target,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "PATH_INFO": unquote(path, encoding="latin-1"),
        "QUERY_STRING": query,
        "REMOTE_ADDR": address,
    }
    if referer is not None:
        environ["HTTP_REFERER"] = referer
    return environ


class Received:
    """gunicorn's parsed request, as its logger reads it: the request headers."""

    def __init__(self, environ):
        self.headers = [("HOST", "digest.example.org")]
        if "HTTP_REFERER" in environ:
            self.headers.append(("REFERER", environ["HTTP_REFERER"]))


@settings(settings.get_profile("fuzz"), max_examples=1000)
@given(data=st.data())
def test_no_request_under_a_signed_link_route_fails_or_puts_a_link_in_a_log_line(
    client, world, logs, access_log, fresh_example, data
):
    method, target, referer = data.draw(requests_under_routes(world["values"]))
    over_the_limit = data.draw(mostly(False, True))
    address = OVER_THE_LIMIT if over_the_limit else next(_fresh_addresses)
    gunicorn, access = access_log
    with fresh_example():
        for stream in (logs, access):
            stream.seek(0)
            stream.truncate()
        extra = {"REMOTE_ADDR": address} | ({"HTTP_REFERER": referer} if referer is not None else {})
        response = client.generic(method, target, **extra)
        environ = gunicorn_environ(method, target, referer, address)
        gunicorn.access(Sent(response), Received(environ), environ, datetime.timedelta(milliseconds=3))

        assert response.status_code < 500, (method, target, response.status_code)
        if over_the_limit:
            under_a_route = routes.is_link_path(response.wsgi_request.path_info)
            assert (response.status_code == 429) == under_a_route, (target, response.status_code)
        lines = logs.getvalue() + access.getvalue()
        assert access.getvalue().count(f'"{method} ') == 1, access.getvalue()
        leaked = sorted(secret for secret in world["secrets"] if secret in lines)
        assert leaked == [], [line for line in lines.splitlines() if any(secret in line for secret in leaked)]
