"""Settings for the paper digest. Everything an operator sets comes from the environment; see README.md."""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from digest.env import env_bool, env_database, env_float, env_int, env_list, env_str, env_url

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
    "digest.apps.DigestConfig",
    "subscriptions.apps.SubscriptionsConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "digest.urls"
WSGI_APPLICATION = "digest.wsgi.application"

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
            ],
        },
    },
]

DATABASES = {"default": env_database("DATABASE_URL", f"sqlite:///{VAR_DIR / 'digest.sqlite3'}")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # SQLite cannot share a connection across threads for long; WAL lets the web process read while a job writes.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["init_command"] = "PRAGMA journal_mode=WAL;"
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
STATIC_ROOT = VAR_DIR / "static"

# Mail: any Django backend by dotted path (SMTP, an Anymail ESP backend, …). See README.md, "Sending email".
DEFAULT_FROM_EMAIL = env_str(
    "DEFAULT_FROM_EMAIL", "Paper Digest <digest@localhost>" if DEBUG else None, required=not DEBUG
)
SERVER_EMAIL = env_str("SERVER_EMAIL", DEFAULT_FROM_EMAIL)
# With DEBUG on, mail goes to files under var/outbox/ (.eml and .html per message) instead of anywhere real.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND", "digest.outbox.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend"
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
DIGEST_MAX_RETRIES = env_int("DIGEST_MAX_RETRIES", 5, minimum=0, maximum=20)

# Fetching papers from the live sources.
ARXIV_CATEGORIES = env_list("ARXIV_CATEGORIES", ["cs.LG", "cs.CL", "cs.CV", "cs.AI", "cs.RO", "stat.ML"])
ARXIV_MAX_RESULTS = env_int("ARXIV_MAX_RESULTS", 400, minimum=1, maximum=2000)

# Importing and matching papers.
IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 64 * 1024 * 1024, minimum=1024)
MATCH_MIN_SCORE = env_float("MATCH_MIN_SCORE", 0.5, minimum=0.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
