#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys

# Commands that only read the code (models, migrations), never a database, a secret or a mail server: they run on
# the development defaults when the environment has none, so `manage.py makemigrations --check` works anywhere.
CODE_ONLY_COMMANDS = {"makemigrations"}


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if sys.argv[1:2] and sys.argv[1] in CODE_ONLY_COMMANDS:
        os.environ.setdefault("DEBUG", "true")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        settings.INSTALLED_APPS  # noqa: B018 - load the settings now, so a bad environment is reported plainly
    except ImproperlyConfigured as error:
        sys.stderr.write(
            f"Configuration error: {error}\n"
            "Settings come from the environment (README.md, Settings). On a development machine, DEBUG=true gives "
            "development defaults, e.g. DEBUG=true python manage.py ...\n"
        )
        sys.exit(2)
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
