"""Strict readers for settings that come from the environment.

Each helper names the variable in its error, so a bad deployment value stops start-up with a message an operator can
act on instead of a traceback from deep inside a library.
"""

import math
import os
import re
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


def _raw(name):
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(name, default=None, *, required=False):
    value = _raw(name)
    if value is None:
        if required:
            raise ImproperlyConfigured(f"{name} must be set in the environment.")
        return default
    return value


def env_bool(name, default):
    value = _raw(name)
    if value is None:
        return default
    word = value.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(
        f"{name}={value!r} is not a yes/no value; use one of: true, false, 1, 0, yes, no, on, off."
    )


def env_choice(name, choices, default):
    value = _raw(name)
    if value is None:
        return default
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} is not one of: {', '.join(choices)}.")
    return value


def env_int(name, default, *, minimum=None, maximum=None):
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a whole number.") from None
    if minimum is not None and number < minimum or maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name}={number} is out of range ({minimum} to {maximum}).")
    return number


def env_float(name, default, *, minimum=None):
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number.") from None
    if not math.isfinite(number):
        raise ImproperlyConfigured(f"{name}={value} is not a finite number.")
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum of {minimum}.")
    return number


# django-ratelimit's rate syntax: a count, '/', an optional multiplier and a unit, e.g. "20/h" or "5/15m".
RATE = re.compile(r"(?P<count>\d+)/(?P<multiplier>\d*)(?P<unit>[smhd])", re.ASCII)


def env_rate(name, default):
    value = _raw(name)
    if value is None:
        return default
    match = RATE.fullmatch(value)
    if not match or int(match["count"]) == 0 or match["multiplier"] and int(match["multiplier"]) == 0:
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a rate; write a number of requests per period, e.g. 20/h, 5/15m, 100/d "
            "(units: s, m, h, d)."
        )
    return value


def env_list(name, default=()):
    value = _raw(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def shown(value):
    """A URL as an error message may show it: without the password it may carry (user:password@host)."""
    userinfo, at, host = value.rpartition("@")
    if not at:
        return value
    start = userinfo.find("//") + 2 if "//" in userinfo else 0
    user, colon, _password = userinfo[start:].partition(":")
    return userinfo[:start] + user + (":***" if colon else "") + at + host


def env_url(name, default=None, *, schemes=("http", "https"), required=False):
    value = env_str(name, default, required=required)
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise ImproperlyConfigured(
            f"{name}={shown(value)!r} is not a URL starting with {' or '.join(s + '://' for s in schemes)}."
        )
    return value.rstrip("/")


def env_database(name, default):
    value = _raw(name) or default
    try:
        config = dj_database_url.parse(value, conn_max_age=600, conn_health_checks=True)
    except (ValueError, KeyError) as exc:
        raise ImproperlyConfigured(f"{name} is not a database URL this project understands: {exc}") from None
    if not config.get("NAME"):
        raise ImproperlyConfigured(f"{name}={shown(value)!r} names no database.")
    return config
