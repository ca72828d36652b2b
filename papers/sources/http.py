"""One polite HTTP session for the paper sources: timeouts, a User-Agent, and urllib3's retries.

Retries cover connection errors, 429 and 5xx, with exponential backoff, and honour the server's Retry-After.
"""

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from papers.sources import InvalidInput

TIMEOUT = (10, 60)  # seconds to connect, seconds to read


def make_session(user_agent, *, retries=4, backoff_factor=2.0):
    retry = Retry(
        total=retries,
        backoff_factor=backoff_factor,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=("GET",),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session = requests.Session()
    session.headers["User-Agent"] = user_agent
    session.mount("https://", HTTPAdapter(max_retries=retry))
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return session


def get(session, url, params):
    """The response body (bytes) of a successful GET, or InvalidInput saying what went wrong."""
    try:
        response = session.get(url, params=params, timeout=TIMEOUT)
    except requests.RequestException as error:
        raise InvalidInput(f"could not fetch {url}: {error}") from None
    if response.status_code != 200:
        raise InvalidInput(f"{response.url} answered HTTP {response.status_code} (after retries)")
    return response.content
