"""Pages and answers whose size an outsider chooses: a stranger's mail of megabytes
held for review stays a page (docs/web.md, "Quarantine")."""

from __future__ import annotations

from email.message import EmailMessage

from sqlalchemy import select

from helpdesk.extensions import db
from helpdesk.models import QuarantineItem
from helpdesk.portal.quarantine import RAW_SHOWN_BYTES


def test_a_held_mail_of_megabytes_shows_its_start_and_downloads_whole(gateway, portal):
    """The held mail's page carried the whole raw mail (25 MiB the gateway accepts);
    now its first RAW_SHOWN_BYTES, and a download gives every byte."""
    mail = EmailMessage()
    mail["From"] = "stranger@nowhere.example"
    mail["To"] = "support@helpdesk.test"
    mail["Subject"] = "big"
    mail.set_content("hello\n")
    mail.add_attachment(bytes(range(256)) * 12_000, maintype="application", subtype="zip", filename="a.zip")
    assert gateway.send(mail)[0] == 250
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    raw = item.inbound_mail.raw
    assert len(raw) > 4_000_000
    page = portal.get(f"/quarantine/{item.id}")
    assert page.status_code == 200 and len(page.data) < RAW_SHOWN_BYTES + 20_000
    assert b"Subject: big" in page.data and b"the download holds every byte" in page.data
    download = portal.get(f"/quarantine/{item.id}/raw")
    assert download.status_code == 200 and download.data == raw
    assert download.headers["Content-Disposition"].startswith("attachment")
