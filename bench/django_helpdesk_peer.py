"""django-helpdesk 2.6.1 as the benchmarks' peer: its `get_email` on the same mails, same run.

Runs only in the peer's own virtualenv (`make bench` builds it under
`bench/results/`, from `bench/peer-requirements.txt`), never in ours: it imports
Django and django-helpdesk and nothing of this project. `bench/peer.py` starts it
and talks to it over stdin/stdout.

The Django project is the least django-helpdesk runs in: its apps, PostgreSQL
(the benchmark's private server, a database of its own), `DEBUG` off, mail to
Django's dummy backend (the peer renders every notification as it does in
production; nothing leaves the machine), attachments to a scratch MEDIA_ROOT, and
one queue whose slug is our ticket prefix, so "Re: [TKT-000123] ..." threads into
its ticket 123 as it does into ours. Teams mode is off (it needs pinax-teams).

Commands (the first argument):
- `migrate URL`: build the schema; the driver copies that database for every run.
- `directory URL MEDIA WARMUP DIR`: `get_email` over the local directory WARMUP
  (untimed: imports, connections, first queries), then prints `ready`, waits for
  a line on stdin and times `get_email` over DIR. Files are taken in name order:
  django-helpdesk lists the directory in the file system's order, which would
  put replies before the mails they answer.
- `imap URL MEDIA HOST PORT USER PASSWORD FOLDER`: prints `ready`, waits for a
  line, and times `get_email` draining FOLDER (its IMAP import: STARTTLS when
  offered, one FETCH per message, flagged deleted, expunged at the end).

Either timed command prints one JSON line: seconds, CPU seconds of this process,
and what the database holds afterwards (tickets, follow-ups, attachments) and
what was left unread.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any
from urllib.parse import urlsplit

SLUG = "TKT"  # config.Config.TICKET_PREFIX without its dash
SUPPORT = "support@helpdesk.test"


def configure(url: str, media: str) -> None:
    import django
    from django.conf import settings

    parts = urlsplit(url)
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench only",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.sites",
            "django.contrib.humanize",
            "django.contrib.messages",
            "rest_framework",
            "helpdesk",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": parts.path.lstrip("/"),
                "USER": parts.username or "postgres",
                "HOST": parts.hostname,
                "PORT": str(parts.port),
            }
        },
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        SITE_ID=1,
        USE_TZ=True,
        TIME_ZONE="UTC",
        ROOT_URLCONF=__name__,
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
            }
        ],
        EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend",
        DEFAULT_FROM_EMAIL=SUPPORT,
        MEDIA_ROOT=media,
        HELPDESK_TEAMS_MODE_ENABLED=False,
        LOGGING_CONFIG=None,
    )
    django.setup()
    from django.urls import include, path

    # The notifications link to the ticket, so its URLs must resolve.
    globals()["urlpatterns"] = [path("helpdesk/", include("helpdesk.urls"))]


def open_queue(**mailbox: Any) -> None:
    """The one queue, reading `mailbox` (made once: it also makes a permission)."""
    from helpdesk.models import Queue

    Queue.objects.update_or_create(
        slug=SLUG,
        defaults=dict(
            title="Support",
            email_address=SUPPORT,
            allow_email_submission=True,
            email_box_interval=0,
            logging_type="none",
            **mailbox,
        ),
    )


def take_files_in_name_order() -> None:
    """django-helpdesk reads `os.listdir` as it comes; give it the names sorted."""
    import helpdesk.email

    class SortedListing:
        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        @staticmethod
        def listdir(path: str) -> list[str]:
            return sorted(os.listdir(path))

    helpdesk.email.os = SortedListing()


def get_email() -> None:
    from django.core.management import call_command

    call_command("get_email", quiet=True)


def timed(left: Any) -> dict[str, Any]:
    """Wait for the driver's go, run `get_email` once, report."""
    from helpdesk.models import FollowUp, FollowUpAttachment, Ticket

    print("ready", flush=True)
    sys.stdin.readline()
    cpu = time.process_time()
    started = time.perf_counter()
    get_email()
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    return {
        "seconds": seconds,
        "cpu": cpu,
        "tickets": Ticket.objects.count(),
        "followups": FollowUp.objects.count(),
        "attachments": FollowUpAttachment.objects.count(),
        "left": left(),
    }


def main(argv: list[str]) -> int:
    command, url, *rest = argv
    if command == "migrate":
        configure(url, media=rest[0] if rest else "/tmp")
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        return 0
    media, *rest = rest
    configure(url, media)
    if command == "directory":
        warmup, directory = rest
        take_files_in_name_order()
        open_queue(email_box_type="local", email_box_local_dir=warmup)
        get_email()
        open_queue(email_box_type="local", email_box_local_dir=directory)
        report = timed(lambda: len(os.listdir(directory)))
    elif command == "imap":
        host, port, user, password, folder = rest
        open_queue(
            email_box_type="imap",
            email_box_host=host,
            email_box_port=int(port),
            email_box_ssl=False,
            email_box_user=user,
            email_box_pass=password,
            email_box_imap_folder=folder,
        )
        report = timed(lambda: None)
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
