import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "a-long-random-production-secret-for-tests-only-0123456789",
    "SITE_URL": "https://digest.example.org",
    "DEFAULT_FROM_EMAIL": "Digest <digest@example.org>",
    "DIGEST_POSTAL_ADDRESS": "Example Org, 1 Main Street, Springfield",
}


def manage(*args, **env):
    clean = {k: v for k, v in os.environ.items() if k not in {*PRODUCTION, "DATABASE_URL"}}
    clean["DATABASE_URL"] = "sqlite:///:memory:"
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def settings_in_process(*, hidden_modules=(), **env):
    """config/settings.py run afresh in this process, on the environment manage() gives its subprocess (this one's
    without the production variables, an in-memory SQLite as DATABASE_URL, then `env`); returns the module it builds.

    A bad value raises the ImproperlyConfigured that manage.py reports as "Configuration error: <its message>" with
    exit code 2 and no traceback; test_a_bad_value_stops_manage_py_with_exit_code_2_and_the_message shows that once in
    a real process, so the many values are checked here, without starting Python and Django again for each. Modules
    named in `hidden_modules` look uninstalled meanwhile. The settings the tests run with are left as they are."""
    with pytest.MonkeyPatch.context() as patch:
        for name in {*PRODUCTION, "DATABASE_URL"}:
            patch.delenv(name, raising=False)
        patch.setenv("DATABASE_URL", "sqlite:///:memory:")
        for name, value in env.items():
            patch.setenv(name, value)
        for name in hidden_modules:
            # A None entry in sys.modules makes the package look absent to importlib.util.find_spec.
            patch.setitem(sys.modules, name, None)
        spec = importlib.util.spec_from_file_location("config.settings_under_test", ROOT / "config" / "settings.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


def configuration_error(**env):
    """The message of the ImproperlyConfigured that settings_in_process(**env) raises."""
    with pytest.raises(ImproperlyConfigured) as error:
        settings_in_process(**env)
    return str(error.value)


def test_production_settings_start_with_everything_set():
    result = manage("check", **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SECRET_KEY", "", "SECRET_KEY must be set"),
        ("SITE_URL", "", "SITE_URL must be set"),
        ("SITE_URL", "digest.example.org", "SITE_URL='digest.example.org' is not a URL"),
        ("DEFAULT_FROM_EMAIL", "", "DEFAULT_FROM_EMAIL must be set"),
        ("DIGEST_POSTAL_ADDRESS", "", "DIGEST_POSTAL_ADDRESS must be set"),
        ("DIGEST_TRENDING_WEIGHT", "-1", "DIGEST_TRENDING_WEIGHT=-1.0 is below the minimum"),
        ("DEBUG", "maybe", "DEBUG='maybe' is not a yes/no value"),
        ("DATABASE_URL", "mysqlx://nowhere", "DATABASE_URL is not a database URL"),
        ("EMAIL_PORT", "twenty-five", "EMAIL_PORT='twenty-five' is not a whole number"),
        ("EMAIL_PORT", "70000", "EMAIL_PORT=70000 is out of range"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL='localhost:6379' is not a URL"),
        ("MATCH_MIN_SCORE", "high", "MATCH_MIN_SCORE='high' is not a number"),
        ("MAIL_RATE_PER_SECOND", "-5", "MAIL_RATE_PER_SECOND=-5.0 is below the minimum"),
        ("MAIL_RATE_PER_SECOND", "50/s", "MAIL_RATE_PER_SECOND='50/s' is not a number"),
        ("MAIL_RATE_PER_SECOND", "nan", "MAIL_RATE_PER_SECOND=nan is not a finite number"),
        ("MAIL_RATE_PER_SECOND", "inf", "MAIL_RATE_PER_SECOND=inf is not a finite number"),
        ("UNCONFIRMED_SIGNUP_DAYS", "5", "UNCONFIRMED_SIGNUP_DAYS=5 is shorter than CONFIRMATION_MAX_AGE_DAYS=7"),
        ("DIGEST_SEND_CONCURRENCY", "0", "DIGEST_SEND_CONCURRENCY=0 is out of range (1 to 64)"),
        ("DIGEST_SEND_CONCURRENCY", "sixteen", "DIGEST_SEND_CONCURRENCY='sixteen' is not a whole number"),
        (
            "MAIL_RATE_PER_SECOND",
            "0.1",
            "MAIL_RATE_PER_SECOND=0.1 sends a chunk of DIGEST_CHUNK_SIZE=250 in 2500 s or more, over half of "
            "DIGEST_RECOVER_AFTER_SECONDS=3600: lower DIGEST_CHUNK_SIZE.",
        ),
    ],
)
def test_a_bad_or_missing_value_stops_start_up_naming_the_variable(name, value, message):
    assert configuration_error(**{**PRODUCTION, name: value}).startswith(message)


def test_a_bad_value_stops_manage_py_with_exit_code_2_and_the_message():
    result = manage("check", **{**PRODUCTION, "EMAIL_PORT": "twenty-five"})
    assert result.returncode == 2
    assert result.stderr.startswith("Configuration error: EMAIL_PORT='twenty-five' is not a whole number")
    assert "Traceback" not in result.stderr


def test_debug_gives_development_defaults_for_secrets():
    result = manage("check", DEBUG="true")
    assert result.returncode == 0, result.stderr


def test_without_redis_tasks_run_inline_and_with_it_they_go_to_the_broker():
    from django.conf import settings

    assert settings.CELERY_TASK_ALWAYS_EAGER is (os.environ.get("REDIS_URL") in (None, ""))
    assert settings.CELERY_ACCEPT_CONTENT == ["json"]


def test_celery_takes_its_configuration_from_settings():
    from django.conf import settings

    from config.celery import app

    assert app.main == "digest"
    assert app.conf.broker_url == settings.CELERY_BROKER_URL
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_serializer == "json"
    assert app.conf.task_acks_late is True
    assert app.conf.broker_transport_options["visibility_timeout"] >= 3600


def test_the_procfile_names_processes_that_exist():
    import importlib

    processes = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert set(processes) == {"release", "web", "worker", "beat"}
    assert processes["web"].startswith("gunicorn config.wsgi ")
    importlib.import_module("config.wsgi")
    assert "django_celery_beat.schedulers:DatabaseScheduler" in processes["beat"]
    importlib.import_module("django_celery_beat.schedulers").DatabaseScheduler  # noqa: B018


def test_the_web_process_refuses_to_start_with_a_bad_value_too():
    env = {k: v for k, v in os.environ.items() if k not in {*PRODUCTION, "DATABASE_URL"}}
    env.update({**PRODUCTION, "DATABASE_URL": "sqlite:///:memory:", "DEBUG": "maybe"})
    result = subprocess.run(
        [sys.executable, "-c", "import config.wsgi"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: DEBUG='maybe' is not a yes/no value" in result.stderr


def test_production_serves_the_admins_static_files_after_collectstatic(tmp_path):
    env = {**PRODUCTION, "STATIC_ROOT": str(tmp_path / "static"), "SECURE_SSL_REDIRECT": "false"}
    collected = manage("collectstatic", "--noinput", **env)
    assert collected.returncode == 0, collected.stderr
    # A request through the whole middleware stack, as gunicorn would pass it, for the hashed name the admin uses.
    script = (
        "import django; django.setup()\n"
        "from django.templatetags.static import static; from django.test import Client\n"
        "url = static('admin/css/base.css'); response = Client().get(url, HTTP_HOST='digest.example.org')\n"
        "print(url, response.status_code, response['Cache-Control'], response['Content-Type'], sep='|')\n"
    )
    clean = {k: v for k, v in os.environ.items() if k not in {*PRODUCTION, "DATABASE_URL"}}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**clean, **env, "DATABASE_URL": "sqlite:///:memory:", "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    url, status, cache_control, content_type = result.stdout.strip().split("|")
    assert re.fullmatch(r"/static/admin/css/base\.[0-9a-f]{12}\.css", url)
    assert (status, content_type) == ("200", 'text/css; charset="utf-8"')
    assert "immutable" in cache_control


def test_makemigrations_check_needs_no_environment():
    # It reads only the models and migrations; the production secrets are irrelevant to it.
    result = manage("makemigrations", "--check", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "No changes detected" in result.stdout


def test_other_commands_still_refuse_to_start_without_the_production_settings():
    result = manage("migrate", "--check")
    assert result.returncode == 2 and result.stderr.startswith("Configuration error: SECRET_KEY must be set")
