"""The SMTP listeners count the deaths of a mail that kills them in files of the
instance folder (mailgateway/smtp_takings.py). A disk that refuses those writes
(full, or remounted read-only) costs the count, never the mail or the gateway
(docs/mail-gateway.md, "A mail that kills the listener"). The kernel's /dev/full
stands for the full disk: every write to it fails with ENOSPC, as there."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from helpdesk.extensions import db
from helpdesk.models import Ticket
from mailgateway.smtp import SupportHandler, make_controller
from mailgateway.smtp_takings import SmtpTakings, taking_key
from tests.support.gateway_process import refused_start
from tests.support.mail import message, send
from tests.support.pgserver import free_port

FULL = "/dev/full"


@pytest.fixture
def full_disk_listener(app, senders) -> Iterator[tuple[int, SupportHandler]]:
    """A listener whose slots file has become the full device: every slot written fails."""
    app.config.update(SMTP_LISTEN=f"127.0.0.1:{free_port()}")
    handler = SupportHandler(app, workers=2)
    full = os.open(FULL, os.O_RDWR)
    os.dup2(full, handler.takings._fd)
    os.close(full)
    controller = make_controller(app, handler)
    controller.start()
    try:
        yield controller.port, handler
    finally:
        controller.stop()
        handler.close()


def test_a_full_disk_under_the_slots_file_refuses_no_mail(app, full_disk_listener, caplog):
    """Before, the slot's write raised, and every mail of the listener was answered
    451 for as long as the disk stayed full (a log filling the root disk), though the
    database had room: now it is stored, its death uncounted, and the log says so."""
    port, _handler = full_disk_listener
    db.session.rollback()
    with caplog.at_level(logging.ERROR, logger="mailgateway.smtp"):
        code, reply = send(port, message(message_id="<full@example.com>"), mail_from="ann@example.com")
    assert code == 250, reply
    db.session.expire_all()
    assert db.session.scalars(select(Ticket)).one().subject
    assert any("its death would not be counted" in record.getMessage() for record in caplog.records)


def test_a_death_the_full_disk_cannot_record_stops_no_one(tmp_path: Path, caplog):
    """The gateway counts a listener's deaths in its main loop as soon as it sees the
    listener exit (`ListenerProcesses.watch`), and a listener starting counts them
    too: a deaths record the disk refused raised there, ending the gateway (IMAP,
    outbound mail and all) or the listener's start. Now it is logged and lost."""
    key = taking_key(b"Subject: x\r\n\r\nx\r\n", "ann@example.com", ("support@example.com",))
    # A dead process's file, its lock free, its mail still in a slot; the record of
    # that mail's deaths on the full device.
    (tmp_path / "1-dead.takings").write_text(f"{key} A {1:12d} -\n", "ascii")
    (tmp_path / f"{key}.deaths").symlink_to(FULL)
    with caplog.at_level(logging.ERROR, logger="mailgateway.smtp"):
        takings = SmtpTakings(tmp_path, hang_seconds=1.0)
    try:
        assert not (tmp_path / "1-dead.takings").exists()
        assert any("could not count the death" in record.getMessage() for record in caplog.records)
    finally:
        takings.close()


def test_an_instance_folder_the_gateway_cannot_write_is_refused_in_one_line(app, database_url, tmp_path):
    """With PostgreSQL and its keys given, the gateway wrote nothing in the instance
    folder until the listeners' files; one it cannot write (a read-only mount in a
    container; here a path under a file, which even root cannot make) ended its start
    with a traceback of OSError. Now it is refused as any setting is: one line."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    said = refused_start(
        tmp_path,
        DATABASE_URL=database_url,
        HELPDESK_INSTANCE_DIR=str(blocker / "instance"),
        SMTP_LISTEN=f"127.0.0.1:{free_port()}",
        SUPPORT_ADDRESSES="support@helpdesk.test",
    )
    assert "Traceback" not in said, said
    assert said.startswith("gateway: HELPDESK_INSTANCE_DIR: the SMTP listeners keep their files in "), said
