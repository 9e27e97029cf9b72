"""A mail whose storing kills its SMTP listener process (a crash in C code, the
out-of-memory killer) is counted across processes and restarts, and after
TAKING_ATTEMPTS deaths taken alone it is quarantined unread and answered 250, while
the listener goes on serving other mail (docs/mail-gateway.md, "A mail that kills
the gateway"). The gateway runs as a real process; the deadly mail kills it for real
(SIGKILL), through tests/support/deadly/sitecustomize.py on its PYTHONPATH."""

from __future__ import annotations

import os
import signal
import smtplib
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from email.policy import SMTP
from pathlib import Path

import pytest
from sqlalchemy import select, text

from helpdesk.extensions import db
from helpdesk.inbound import quarantine
from helpdesk.inbound.ingest import quarantine_deadly
from helpdesk.models import InboundMail, QuarantineItem, Ticket
from helpdesk.services import Actor
from helpdesk.services.senders import SendersService
from mailgateway import database_waits
from mailgateway.smtp_takings import taking_key, takings_directory
from mailgateway.takings import TAKING_ATTEMPTS
from tests.support.gateway_process import ROOT, SECRETS, start
from tests.support.mail import SUPPORT, message, send, start_gateway
from tests.support.pgserver import free_port
from tests.support.waiting import wait_until

DEADLY = Path(__file__).resolve().parent / "support" / "deadly"
# The fields its sitecustomize.py looks for; not imported from it, since importing it
# wraps the parser of the process that imports it.
DEADLY_FIELD = "X-Test-Deadly: kill"
SLOW_FIELD = "X-Test-Slow"
_DEADLY_NAME, _DEADLY_VALUE = DEADLY_FIELD.split(": ")


class DeadlyGateways:
    """`gateway.py` processes whose parse of a deadly mail kills them, on one port
    and one log; any still running at the test's end is killed."""

    def __init__(self, database_url: str, tmp_path: Path) -> None:
        self.database_url, self.tmp_path = database_url, tmp_path
        self.port, self.log = free_port(), []
        self.started: list[subprocess.Popen[str]] = []

    def start(self, processes: int, **env: str) -> subprocess.Popen[str]:
        path = os.pathsep.join(filter(None, [str(DEADLY), os.environ.get("PYTHONPATH", "")]))
        process = start(
            self.database_url,
            self.port,
            self.tmp_path,
            self.log,
            PYTHONPATH=path,
            SMTP_PROCESSES=str(processes),
            **env,
        )
        self.started.append(process)
        return process

    def kill_the_rest(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


@pytest.fixture
def gateways(database_url, tmp_path):
    gateways = DeadlyGateways(database_url, tmp_path)
    try:
        yield gateways
    finally:
        gateways.kill_the_rest()


def deaths_counted(log: list[str]) -> int:
    return sum("an SMTP listener process died while storing mail" in line for line in list(log))


def listener_exits(log: list[str]) -> int:
    return sum("exited with code -9; restarting" in line for line in list(log))


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def health_check(gateways: DeadlyGateways, **env: str) -> tuple[int, str]:
    """`gateway.py --check` for the gateways' port and folder: its exit code and what it said."""
    done = subprocess.run(
        [sys.executable, "gateway.py", "--check"],
        cwd=ROOT,
        env={
            **os.environ,
            **SECRETS,
            "DATABASE_URL": gateways.database_url,
            "SMTP_LISTEN": f"127.0.0.1:{gateways.port}",
            "HELPDESK_INSTANCE_DIR": str(gateways.tmp_path / "instance"),
            "SUPPORT_ADDRESSES": "support@helpdesk.test",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout


def send_in_background(port: int, raw: bytes, replies: dict[str, object], name: str) -> threading.Thread:
    """Send `raw` from bob in a thread of its own; `replies[name]` gets its answer, or
    the disconnection of a listener that died with it in flight."""

    def run() -> None:
        try:
            replies[name] = send(port, raw, mail_from="bob@example.com")
        except smtplib.SMTPServerDisconnected as exc:
            replies[name] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.fixture
def customers(app):
    SendersService(db.session).add("@example.com", "Example Ltd")
    db.session.commit()
    db.session.remove()


def test_a_mail_that_kills_the_gateway_each_time_is_quarantined_unread_and_the_rest_goes_on(
    app, gateways, tmp_path, customers
):
    """Each delivery of the deadly mail kills the gateway; restarted (as a
    supervisor would), it counts the death. The first is counted beside whatever
    else was in flight, the next TAKING_ATTEMPTS with the mail taken alone; the
    delivery after them is answered 250 and quarantined unread. Before, every
    delivery killed the gateway, for as long as its sender retried."""
    port, log = gateways.port, gateways.log
    deadly = message(message_id="<deadly@client.example>", headers={_DEADLY_NAME: _DEADLY_VALUE}).as_bytes(
        policy=SMTP
    )
    for death in range(1 + TAKING_ATTEMPTS):
        process = gateways.start(1)
        assert deaths_counted(log) == death
        with pytest.raises(smtplib.SMTPServerDisconnected):
            send(port, deadly, mail_from="ann@example.com")
        assert process.wait(timeout=30) == -signal.SIGKILL
    process = gateways.start(1)
    try:
        assert deaths_counted(log) == 1 + TAKING_ATTEMPTS
        code, text = send(port, deadly, mail_from="ann@example.com")
        assert (code, text) == (250, b"2.0.0 OK quarantined"), "".join(log)
        # Its sender's retry after a 250 it did not hear is the same record.
        assert send(port, deadly, mail_from="ann@example.com") == (250, b"2.0.0 OK duplicate")
        good = send(port, message(message_id="<good@client.example>"), mail_from="ann@example.com")
        assert good == (250, b"2.0.0 OK created TKT-000001")
    finally:
        stop(process)
    assert process.returncode == 0, "".join(log)
    db.session.expire_all()
    [record] = (
        db.session.execute(select(InboundMail).where(InboundMail.outcome == "quarantined")).scalars().all()
    )
    assert record.raw == deadly
    assert record.reason.startswith(f"processing failed: {1 + TAKING_ATTEMPTS} gateway processes died")
    assert db.session.execute(select(QuarantineItem.inbound_mail_id)).scalars().all() == [record.id]
    assert db.session.execute(select(Ticket.number)).scalars().all() == [1]
    assert not list((tmp_path / "instance" / "smtp-takings").glob("*/*.takings")), "a clean stop leaves none"


def test_a_listener_process_killed_by_a_mail_is_counted_by_the_gateway_and_others_are_served(
    app, gateways, tmp_path, customers
):
    """With several listener processes, whichever the kernel hands the deadly mail
    dies: the gateway counts a listener's death when it sees it exit and restarts
    it, a restarted gateway counts its own; after 1 + TAKING_ATTEMPTS deaths across
    them the mail is quarantined, and good mail is served throughout."""
    port, log = gateways.port, gateways.log
    deadly = message(message_id="<deadly@client.example>", headers={_DEADLY_NAME: _DEADLY_VALUE}).as_bytes(
        policy=SMTP
    )
    process = gateways.start(2)
    sent = 0
    try:
        for death in range(1 + TAKING_ATTEMPTS):
            exits = listener_exits(log)
            with pytest.raises(smtplib.SMTPServerDisconnected):
                send(port, deadly, mail_from="ann@example.com")
            wait_until(
                lambda exits=exits, process=process: (
                    process.poll() is not None or listener_exits(log) > exits
                ),
                timeout=60,
                what=lambda: "".join(log),
            )
            if process.poll() is not None:  # the gateway's own listener took it: restarted
                stop(process)
                process = gateways.start(2)
            wait_until(lambda n=death + 1: deaths_counted(log) == n, timeout=60, what=lambda: "".join(log))
            for _ in range(2):
                sent += 1
                reply = send(
                    port, message(message_id=f"<good-{sent}@client.example>"), mail_from="ann@example.com"
                )
                assert reply[0] == 250, reply
        assert send(port, deadly, mail_from="ann@example.com") == (250, b"2.0.0 OK quarantined")
    finally:
        stop(process)
    db.session.expire_all()
    assert len(db.session.execute(select(Ticket.number)).scalars().all()) == sent


def test_a_good_mail_that_died_beside_the_deadly_one_is_stored_when_taken_alone(
    app, gateways, tmp_path, customers
):
    """A good mail being stored when the deadly one kills the process dies too, but
    that death is counted beside another mail: its retry is taken alone, stored, and
    its count dropped. Only deaths while taken alone quarantine a mail."""
    port, log = gateways.port, gateways.log
    slow = message(message_id="<slow@client.example>", headers={SLOW_FIELD: "3"}).as_bytes(policy=SMTP)
    deadly = message(message_id="<deadly@client.example>", headers={_DEADLY_NAME: _DEADLY_VALUE}).as_bytes(
        policy=SMTP
    )
    replies: dict[str, object] = {}
    process = gateways.start(1)
    sender = send_in_background(port, slow, replies, "slow")
    time.sleep(1.0)  # the slow mail is being parsed (3 s)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(port, deadly, mail_from="ann@example.com")
    sender.join(timeout=30)
    assert isinstance(replies["slow"], smtplib.SMTPServerDisconnected)
    assert process.wait(timeout=30) == -signal.SIGKILL
    process = gateways.start(1)
    try:
        assert deaths_counted(log) == 2  # both mails in flight
        [directory] = (tmp_path / "instance" / "smtp-takings").iterdir()
        assert sorted(path.read_text() for path in directory.glob("*.deaths")) == ["beside\n", "beside\n"]
        assert send(port, slow, mail_from="bob@example.com") == (250, b"2.0.0 OK created TKT-000001")
        assert [path.read_text() for path in directory.glob("*.deaths")] == ["beside\n"]  # the deadly mail's
        with pytest.raises(smtplib.SMTPServerDisconnected):
            send(port, deadly, mail_from="ann@example.com")
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        stop(process)


def test_the_health_check_fails_while_a_mail_s_storing_hangs(app, gateways, tmp_path, customers):
    """An ingest thread storing a mail for longer than SMTP_TIMEOUT hangs (its sender
    was answered 451 already): `gateway.py --check` says so and fails, so a monitor
    sees it and a supervisor may restart the gateway, which counts a death against
    the mail. Before, the check found the listener answering and was healthy."""
    port = gateways.port
    gateways.start(1, SMTP_TIMEOUT="2s")

    def check() -> tuple[int, str]:
        return health_check(gateways, SMTP_TIMEOUT="2s")

    code, said = check()
    assert code == 0 and f"ok   smtp listener: 127.0.0.1:{port} answers, 0 mail(s) being stored" in said, said
    hanging = message(message_id="<hangs@client.example>", headers={SLOW_FIELD: "60"}).as_bytes(policy=SMTP)
    code, _text = send(port, hanging, mail_from="ann@example.com")
    assert code == 451  # within 90 % of SMTP_TIMEOUT, the thread goes on
    time.sleep(2.5)
    code, said = check()
    assert code == 1, said
    assert "FAIL smtp listener: 127.0.0.1:%d answers, but 1 of the 1 mail(s) being stored" % port in said, (
        said
    )
    assert "for more than SMTP_TIMEOUT (2 s)" in said and "their ingest threads hang" in said, said


def test_a_stop_while_a_mail_is_stored_past_its_grace_counts_no_death_and_stores_it_once(
    app, gateways, tmp_path, customers
):
    """A SIGTERM while a mail is being stored for longer than the stop's grace (10 s):
    its session is closed unanswered, but the stop waits for its storing and then
    removes its file, so no death is counted against a mail that killed nothing, and
    its sender's retry is its duplicate, not a second ticket nor a mail taken alone."""
    port, log = gateways.port, gateways.log
    slow = message(message_id="<slow-stop@client.example>", headers={SLOW_FIELD: "12"}).as_bytes(policy=SMTP)
    replies: dict[str, object] = {}
    process = gateways.start(1)
    sender = send_in_background(port, slow, replies, "slow")
    time.sleep(1.0)  # the slow mail is being parsed (12 s)
    stop(process)
    sender.join(timeout=30)
    assert process.returncode == 0, "".join(log)
    assert isinstance(replies["slow"], smtplib.SMTPServerDisconnected), replies
    assert not list((tmp_path / "instance" / "smtp-takings").glob("*/*.takings")), "a clean stop leaves none"
    process = gateways.start(1)
    try:
        assert deaths_counted(log) == 0, "".join(log)
        assert send(port, slow, mail_from="bob@example.com") == (250, b"2.0.0 OK duplicate")
    finally:
        stop(process)
    db.session.expire_all()
    assert db.session.execute(select(Ticket.number)).scalars().all() == [1]


def test_a_mail_taken_alone_behind_a_hanging_one_stalls_no_other_mail(app, gateways, tmp_path, customers):
    """A mail that died beside another is taken alone at its retry, and waits for the
    mails being stored. Behind one whose storing hangs (the database, the pipeline),
    it waited for ever, and every mail after it waited behind it: the listener
    process answered 451 to all its mail until a restart. The wait to be taken alone
    now ends at the storing's deadline (its sender has had its 451), and the mails
    after it are stored."""
    port, log = gateways.port, gateways.log
    slow = message(message_id="<beside@client.example>", headers={SLOW_FIELD: "3"}).as_bytes(policy=SMTP)
    deadly = message(message_id="<deadly@client.example>", headers={_DEADLY_NAME: _DEADLY_VALUE}).as_bytes(
        policy=SMTP
    )
    replies: dict[str, object] = {}
    process = gateways.start(1, SMTP_TIMEOUT="4s")
    sender = send_in_background(port, slow, replies, "beside")
    time.sleep(1.0)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(port, deadly, mail_from="ann@example.com")
    sender.join(timeout=30)
    assert process.wait(timeout=30) == -signal.SIGKILL
    process = gateways.start(1, SMTP_TIMEOUT="4s")
    try:
        hanging = message(message_id="<hangs@client.example>", headers={SLOW_FIELD: "40"}).as_bytes(
            policy=SMTP
        )
        threads = [send_in_background(port, hanging, replies, "hanging")]
        time.sleep(1.0)
        threads.append(send_in_background(port, slow, replies, "beside"))  # died beside: taken alone, waits
        time.sleep(1.0)
        fresh = send(port, message(message_id="<fresh@client.example>"), mail_from="ann@example.com")
        assert fresh[0] == 250, (fresh, "".join(log))
        later = send(port, message(message_id="<later@client.example>"), mail_from="ann@example.com")
        assert later[0] == 250, (later, "".join(log))
        for thread in threads:
            thread.join(timeout=60)
        assert replies["hanging"][0] == 451 and replies["beside"][0] == 451, replies  # type: ignore[index]
    finally:
        process.kill()
        process.wait(timeout=30)


@contextmanager
def writes_held(database_url: str) -> Iterator[None]:
    """The database holding every write to the inbound mail, as a lock another
    session keeps does: PostgreSQL's SHARE lock on the table (reads go on), SQLite's
    write lock (its busy timeout long, so a write waits as on a hung server)."""
    if database_url.startswith("sqlite"):
        holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    with db.engine.connect() as held:
        held.execute(text("LOCK TABLE inbound_mails IN SHARE MODE"))
        yield
        held.rollback()


def test_restarts_of_a_gateway_whose_database_hangs_leave_its_mail_to_be_stored(
    app, gateways, database_url, customers
):
    """The database holds the mail's storing; its sender gets 451 at the deadline and
    retries, and a supervisor ends the gateway each time its health check fails (the
    mail stored longer than SMTP_TIMEOUT) and starts it again: once after a SIGTERM
    whose stop waits on the hung thread, then with SIGKILL alone. Before, each kill
    counted a death against the mail, and after 1 + TAKING_ATTEMPTS of them its
    next delivery was quarantined unread as deadly though nothing was wrong with it.
    A hang is no death of the mail: once the database answers, it is a ticket."""
    port, log = gateways.port, gateways.log
    mail = message(message_id="<waits@client.example>").as_bytes(policy=SMTP)
    settings = {"SMTP_TIMEOUT": "2s", "SQLITE_BUSY_TIMEOUT_MS": "600000"}
    with writes_held(database_url):
        for restart in range(1 + TAKING_ATTEMPTS):
            process = gateways.start(1, **settings)
            code, _text = send(port, mail, mail_from="ann@example.com")
            assert code == 451, "".join(log)
            wait_until(
                lambda: health_check(gateways, **settings)[0] == 1, timeout=30, what=lambda: "".join(log)
            )
            if restart == 0:  # a supervisor's stop: SIGTERM, and SIGKILL after its grace
                process.send_signal(signal.SIGTERM)
                wait_until(lambda: "received SIGTERM, stopping" in "".join(log), what=lambda: "".join(log))
            process.kill()
            assert process.wait(timeout=30) == -signal.SIGKILL
    process = gateways.start(1, **settings)
    try:
        assert send(port, mail, mail_from="ann@example.com") == (250, b"2.0.0 OK created TKT-000001")
        assert deaths_counted(log) == 0, "".join(log)
        assert "".join(log).count("(mail ") == 1 + TAKING_ATTEMPTS, "".join(log)  # each kill, not counted
    finally:
        stop(process)
    db.session.expire_all()
    assert not db.session.execute(select(QuarantineItem)).scalars().all()


def test_a_kill_during_a_stop_counts_no_death(app, gateways, tmp_path, customers):
    """A SIGTERM while a mail is being stored, and the supervisor's SIGKILL before the
    stop ends (its grace shorter than the storing): the process began an orderly
    stop, so its death is the stop's, counted against no mail, and the mail's retry
    is stored beside others, not taken alone. Before, it counted as the mail's death."""
    port, log = gateways.port, gateways.log
    slow = message(message_id="<slow-kill@client.example>", headers={SLOW_FIELD: "6"}).as_bytes(policy=SMTP)
    replies: dict[str, object] = {}
    process = gateways.start(1)
    sender = send_in_background(port, slow, replies, "slow")
    time.sleep(1.0)  # the slow mail is being parsed (6 s)
    process.send_signal(signal.SIGTERM)
    wait_until(lambda: "received SIGTERM, stopping" in "".join(log), what=lambda: "".join(log))
    process.kill()
    assert process.wait(timeout=30) == -signal.SIGKILL
    sender.join(timeout=30)
    process = gateways.start(1)
    try:
        assert deaths_counted(log) == 0, "".join(log)
        assert "was ended during its stop (mail " in "".join(log), "".join(log)
        assert not list((tmp_path / "instance" / "smtp-takings").glob("*/*.deaths"))
        assert send(port, slow, mail_from="bob@example.com") == (250, b"2.0.0 OK created TKT-000001")
    finally:
        stop(process)


def test_approving_a_mail_held_as_deadly_reads_it_apart_first(app, database_url, tmp_path):
    """A mail held unread because listener processes died storing it is read for the
    first time when approved. Before, `quarantine approve` read it in the CLI's own
    process, which it killed (SIGKILL, nothing said); the portal's worker likewise.
    Now a process apart reads it first: its death refuses the approval in one line,
    and the mail stays held for a decision."""
    deadly = message(message_id="<deadly@client.example>", headers={_DEADLY_NAME: _DEADLY_VALUE}).as_bytes(
        policy=SMTP
    )
    quarantine_deadly(deadly, 1 + TAKING_ATTEMPTS, "smtp 127.0.0.1:25")
    db.session.commit()
    [item_id] = db.session.execute(select(QuarantineItem.id)).scalars().all()
    db.session.rollback()  # SQLite's write lock, taken by the read's transaction, let go
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "quarantine", "approve", str(item_id)],
        cwd=ROOT,
        env={
            **os.environ,
            **SECRETS,
            "DATABASE_URL": database_url,
            "HELPDESK_INSTANCE_DIR": str(tmp_path / "instance"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(DEADLY), os.environ.get("PYTHONPATH", "")])),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert f"Cannot approve item {item_id}: a process reading this mail apart did not end well" in done.stderr
    db.session.expire_all()
    assert db.session.execute(select(QuarantineItem.state)).scalar_one() == "pending"
    assert not db.session.execute(select(Ticket)).scalars().all()


def test_a_mail_held_unread_that_reads_well_apart_is_approved(app, customers):
    """The process apart reads a harmless mail held unread and ends well: the
    approval goes on in the reviewer's process, as before."""
    good = message(message_id="<good-held@client.example>").as_bytes(policy=SMTP)
    quarantine_deadly(good, 1 + TAKING_ATTEMPTS, "smtp 127.0.0.1:25")
    db.session.commit()
    [item_id] = db.session.execute(select(QuarantineItem.id)).scalars().all()
    result = quarantine.approve(db.session, item_id, Actor.system("test"), app.config)
    db.session.commit()
    assert (result.outcome.value, result.ticket_number) == ("created", "TKT-000001")


# (SMTP_TIMEOUT, database_waits.WAITING_SECONDS, the hanging mail's answer): the mail's
# deadline (90 % of SMTP_TIMEOUT) comes first, or the one wait's bound does, long
# before it (the default SMTP_TIMEOUT is 300 s: its deadline was the only bound, and
# a kill in a shorter wait counted a death while the gate held every other mail).
HANG_BOUNDS = {"deadline first": (3, 10.0, 451), "one wait's bound first": (60, 1.0, 250)}


@pytest.mark.parametrize("bounds", HANG_BOUNDS.values(), ids=HANG_BOUNDS.keys())
def test_a_mail_taken_alone_that_hangs_on_the_database_holds_no_other_mail_back(pg_app, monkeypatch, bounds):
    """A mail that died beside another is taken alone at its retry, and its storing
    waits on the database (another session holds an uncommitted row under its dedup
    key). Every other mail of the process waited behind it at the gate for as long
    as the wait lasted, each answered 451 at its deadline. Once the wait is known
    (`DatabaseWaits.waited`) its slot is marked (a death is no longer its own) and
    says `beside`, and the other mail is stored beside it at once."""
    timeout, waiting_seconds, hanging_reply = bounds
    monkeypatch.setattr(database_waits, "WAITING_SECONDS", waiting_seconds)
    SendersService(db.session).add("@example.com", "Example Ltd")
    db.session.commit()
    hanging = message(message_id="<hangs@client.example>").as_bytes(policy=SMTP)
    replies: dict[str, object] = {}
    with db.engine.connect() as locker:  # holds the key the hanging mail's storing inserts
        locker.execute(
            text(
                "INSERT INTO inbound_mails (dedup_key, channel, size, outcome, mail_from, from_address,"
                " from_source, recipients, subject, reason, received_at, raw) VALUES"
                " ('hangs@client.example', 'smtp', 0, 'created', '', '', '', '', '', '', now(), '')"
            )
        )
        with contextmanager(start_gateway)(pg_app, SMTP_TIMEOUT=timedelta(seconds=timeout)) as gateway:
            directory = takings_directory(pg_app.instance_path, pg_app.config["SMTP_LISTEN"])
            key = taking_key(hanging, "bob@example.com", (SUPPORT,))
            (directory / f"{key}.deaths").write_text("beside\n")  # died beside another: taken alone
            sender = send_in_background(gateway.port, hanging, replies, "hanging")
            try:

                def slot() -> list[str] | None:
                    written = b"".join(path.read_bytes() for path in directory.glob("*.takings"))
                    lines = written.replace(b"\0", b" ").decode("ascii").split("\n")  # unwritten: zeros
                    mark = [line.split() for line in lines if line.strip().startswith(key)]
                    return mark[0] if mark and mark[0][-1] == "H" else None

                assert wait_until(slot, what="the hang marked")[1] == "B", "still counted as taken alone"
                started = time.monotonic()
                other_mail = message(
                    "carl@example.com", message_id="<other@client.example>"
                )  # its own contact
                other = send(gateway.port, other_mail, mail_from="carl@example.com")
                assert other[0] == 250, other
                assert time.monotonic() - started < 2, "the other mail waited for the one taken alone"
            finally:
                locker.rollback()  # the key goes: the hanging mail is stored
                sender.join(timeout=30)
    assert replies["hanging"][0] == hanging_reply, replies  # type: ignore[index]
    assert len(db.session.execute(select(Ticket)).scalars().all()) == 2
