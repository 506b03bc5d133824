#!/usr/bin/env python
"""Django's command-line utility for the creativity study platform."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studyapp.settings")
    if sys.argv[1:2] == ["runserver"]:
        # The development server (loopback unless told otherwise) is the one place DEBUG is on
        # unless set: it serves the static files. gunicorn, Celery and the commands run without.
        os.environ.setdefault("DEBUG", "1")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
