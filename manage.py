#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "digest.settings")
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
