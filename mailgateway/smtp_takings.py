"""The SMTP mails each listener process is storing, kept in a file, so that a mail
whose storing kills its process (a crash in C code, the out-of-memory killer,
`os._exit` in a library) is counted across processes and restarts, and after
`TAKING_ATTEMPTS` deaths is kept unread instead of killing a listener at each
retry of its sender (docs/mail-gateway.md, "A mail that kills the listener").

Each listener process has a file of slots, one per ingest thread: a slot holds the
key of the mail its thread is storing (`taking_key`: a hash of the envelope and
the raw bytes), written before `ingest` starts and blanked when it ends, either
way. The process holds an exclusive `flock` on its file while it lives, and the
kernel lets it go when the process dies, however it dies. So a file whose lock can
be taken is a dead process's, and each key left in its slots is a mail that died
with it. Whoever finds such a file (a listener process starting, the gateway
seeing one of its listener processes exit) removes it and adds a line per key to
`<key>.deaths`: `alone` when that mail was the only one the process was taking
(`takings.Takings`), so the death is surely its own, `beside` otherwise.

Only a death that may be the mail's own doing is counted. A supervisor that ends a
gateway whose ingest hangs (the database holding a query: the health check fails,
an orchestrator restarts it) is no crash of the mail, and counting it put a good
mail in the quarantine after a few restarts while its sender retried. So two deaths
count against no mail: one after the process began an orderly stop (`stopping`
writes it at the top of the file: a SIGTERM, then the supervisor's kill after its
grace), and one of a mail whose thread was waiting on the database, in one wait of
`database_waits.WAITING_SECONDS` (or of the mail's storing deadline, if sooner):
the IMAP poller's rule too (`DatabaseWaits.waited`). The thread's waits are known
in memory from the database engine's events (`database_waits`), and a watcher
thread writes the slot's mark (`_HUNG`) once such a wait is that long, long before
the health check fails (at SMTP_TIMEOUT), so the mark is on the disk before any
supervisor acts on it; the wait's end takes it off at once. A mail that kills
computes (it fills the memory, crashes the parser); a thread blocked on the
database's answer does not. A
mail taken alone is then taken as shared (`takings.Taking.waiting`: its slot says
`_BESIDE` first), so the process's other mail is taken beside it while it waits.

Nothing is fsync'd: a process that dies leaves what it wrote in the kernel's page
cache, which only the machine going down loses, and then the mails in flight died
of something else. A write is two system calls a mail and no database commit
(docs/benchmarks.md, issue 19).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from config import ConfigurationError
from mailgateway import database_waits
from mailgateway.database_waits import DATABASE_WAITS
from mailgateway.takings import Taking

log = logging.getLogger("mailgateway.smtp")

_KEY_CHARS = 64  # a SHA-256 in hex
_ALONE, _BESIDE = "A", "B"
_SECONDS_CHARS = 12  # when it began, in whole seconds since the epoch
# The slot's last field: the mail's thread waits on the database past its deadline
# (`_HUNG`), or not (`_WORKING`).
_WORKING, _HUNG = "-", "H"
_SLOT = _KEY_CHARS + _SECONDS_CHARS + 6  # key, A or B, the time, the mark, spaces and a line feed
_KIND_AT = _KEY_CHARS + 1  # where A or B is in a slot
_MARK_AT = _SLOT - 2  # where the mark is in a slot
_BLANK = b" " * (_SLOT - 1) + b"\n"
# The file's first line, before the slots: blank, or this once the process began to stop.
_STOPPED = "stopping"
_STOPPING = _STOPPED.encode("ascii").ljust(_SLOT - 1) + b"\n"
# How often the watcher looks at the database waits of the ingest threads (`_watch`).
WATCH_SECONDS = 0.25
_SUFFIX = ".takings"
_DEATHS = ".deaths"
# What SMTP_LISTEN may hold that a folder's name should not (`takings_directory`).
_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9.-]")
# A record of deaths is dropped this long after its last death: a sender gives a mail
# up after five days (Postfix's maximal_queue_lifetime), and then no retry comes.
DEATHS_KEPT_SECONDS = 7 * 24 * 3600


class Deaths(NamedTuple):
    """How many listener processes died while storing one mail: taken alone, and beside others."""

    alone: int = 0
    beside: int = 0

    def __bool__(self) -> bool:
        return bool(self.alone or self.beside)


def taking_key(raw: bytes, mail_from: str, recipients: tuple[str, ...]) -> str:
    """The key a mail is counted under: its envelope and raw bytes, as its sender's
    retries bring them again. Read from nothing parsed: parsing may be what kills."""
    digest = hashlib.sha256()
    digest.update(mail_from.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(",".join(recipients).encode("utf-8", "surrogateescape") + b"\0")
    digest.update(raw)
    return digest.hexdigest()


class _Slot(NamedTuple):
    """What a slot's line says: no key for a blank (or torn) one, or the file's first line."""

    key: str = ""
    kind: str = ""
    began: float = 0.0
    hung: bool = False


def _read_slot(slot: str) -> _Slot:
    key, kind, began, mark = (slot.split() + ["", "", "", ""])[:4]
    try:
        return _Slot(key, kind, float(began), mark == _HUNG) if len(key) == _KEY_CHARS else _Slot()
    except ValueError:
        return _Slot()


def _lines(written: bytes) -> list[str]:
    """A file's lines. Nothing is written where no slot or stop was (its first line
    until a stop, a slot whose thread took no mail yet), and reads as zero bytes:
    blanks too."""
    return written.replace(b"\0", b" ").decode("ascii", "replace").splitlines()


class _Thread:
    """One ingest thread's slot, and what its mail does now, in this process's memory."""

    def __init__(self, index: int) -> None:
        self.offset = (index + 1) * _SLOT  # the file's first line is its stop's
        self.key = ""  # the mail being stored, if any
        self.taken: Taking | None = None  # the mail's taking in the process (`takings`)
        self.ident = 0  # its `threading.get_ident()`, for `DATABASE_WAITS`
        self.hung = False  # its slot says so (`_HUNG`)


def storing_for(directory: Path) -> list[float]:
    """How long each mail that the listener processes keeping their files in
    `directory` are storing has been stored, in seconds: for the health check,
    which tells an operator of the ingest threads that hang (docs/operations.md).
    Read without a lock: the file of a process that died shows its mails too until
    its deaths are counted (within a second by its gateway, else at the next start)."""
    now = time.time()
    ages: list[float] = []
    for path in directory.glob(f"*{_SUFFIX}"):
        try:
            slots = _lines(path.read_bytes())
        except FileNotFoundError:
            continue
        ages.extend(now - slot.began for slot in map(_read_slot, slots) if slot.key)
    return ages


def takings_directory(instance_path: str, listen: str) -> Path:
    """Where the listener processes sharing SMTP_LISTEN keep their files: in the
    instance folder (HELPDESK_INSTANCE_DIR), one folder per listening address."""
    return Path(instance_path) / "smtp-takings" / _NOT_IN_A_NAME.sub("_", listen)


def _created(building: Path) -> int:
    """A new file of slots, its folder made first (the instance folder must be
    writable: docs/operations.md, `HELPDESK_INSTANCE_DIR`)."""
    for _ in range(2):
        building.parent.mkdir(parents=True, exist_ok=True)
        try:
            return os.open(building, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileNotFoundError:  # removed by the last process of it to stop (`close`)
            pass
    building.parent.mkdir(parents=True, exist_ok=True)
    return os.open(building, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)


class SmtpTakings:
    """This process's file of slots, and the deaths recorded for every listener
    process sharing `directory`. Used from the ingest threads, from the event loop
    (`stopping`), from its watcher thread and, for `adopt`, from the gateway's main
    thread. `hang_seconds`: how long a mail may be stored before its sender is
    answered 451 (the listener's deadline); a database wait that long, or of
    `database_waits.WAITING_SECONDS` if sooner, is a hang."""

    def __init__(self, directory: Path, *, hang_seconds: float) -> None:
        self.directory = directory
        self.hang_seconds = hang_seconds
        name = f"{os.getpid()}-{uuid.uuid4().hex}"
        building = directory / f".{name}"
        try:
            self._fd = _created(building)
        except OSError as exc:  # as gateway.py reports a setting: one line, not a traceback
            raise ConfigurationError(
                f"HELPDESK_INSTANCE_DIR: the SMTP listeners keep their files in {directory}, "
                f"which cannot be written ({exc.strerror or exc})"
            ) from exc
        # Locked before it gets the name others look for, so no one takes it for dead.
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self.path = directory / f"{name}{_SUFFIX}"
        os.rename(building, self.path)
        self._local = threading.local()
        self._threads: list[_Thread] = []
        # Held while a slot is written, so the watcher's mark never lands in a slot
        # its thread blanked or began again meanwhile.
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="smtp-takings", daemon=True)
        self._watcher.start()
        self.adopt()

    def deaths(self, key: str) -> Deaths:
        """The deaths recorded for `key`: one failed open for a mail that never killed."""
        try:
            with open(self._deaths_path(key), encoding="ascii") as lines:
                said = lines.read().split()
        except FileNotFoundError:
            return Deaths()
        return Deaths(said.count("alone"), said.count("beside"))

    def _deaths_path(self, key: str) -> Path:
        return self.directory / f"{key}{_DEATHS}"

    def forget(self, key: str) -> None:
        """Drop the deaths of `key`: the mail was stored after all (it died beside
        the mail that really kills, or of something else)."""
        try:
            os.unlink(self._deaths_path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:  # the mail is stored: its answer must not fail for this
            log.error("could not drop the deaths of SMTP mail %s: %s", key, exc)

    @contextmanager
    def taking(self, key: str, taken: Taking) -> Iterator[None]:
        """Hold `key` in this thread's slot while the mail is stored (`taken`: alone,
        or beside the process's other takings); a death in
        between is counted against it by whoever finds this file, unless it is a
        hang's or a stop's (the module's docstring). A slot that cannot be written
        (the instance folder's disk full, or remounted read-only) costs that count,
        never the mail: it is stored uncounted, as before the count existed, rather
        than answered 451 for as long as the disk stays full."""
        thread = self._thread()
        began = f"{time.time():{_SECONDS_CHARS}.0f}"
        line = f"{key} {_ALONE if taken.alone else _BESIDE} {began} {_WORKING}\n".encode("ascii")
        with DATABASE_WAITS.telling(lambda: self._answered(thread)) as thread.ident:
            with self._lock:
                held = self._write(line, thread.offset, key)
                thread.hung = False
                if held:
                    thread.key = key
                    thread.taken = taken
            try:
                yield
            finally:
                self._ended(thread, key, held=held)

    def _ended(self, thread: _Thread, key: str, *, held: bool) -> None:
        """The mail's storing ended, either way: its slot blanked."""
        if held:
            with self._lock:
                thread.key, thread.hung, thread.taken = "", False, None
                self._write(_BLANK, thread.offset, key)

    def _answered(self, thread: _Thread) -> None:
        """This thread's wait on the database ended (`DATABASE_WAITS`): its slot's
        hang mark, if the watcher wrote one, is taken off before the mail goes on,
        so a death after it is counted again."""
        if thread.hung:  # read after the wait was cleared: see `_mark_hangs`
            with self._lock:
                if thread.key:
                    self._mark(thread, hung=False)

    def _thread(self) -> _Thread:
        thread: _Thread | None = getattr(self._local, "thread", None)
        if thread is None:
            with self._lock:
                thread = _Thread(len(self._threads))
                self._threads.append(thread)
            self._local.thread = thread
        return thread

    def _watch(self) -> None:
        while not self._closed.wait(WATCH_SECONDS):
            self._mark_hangs()

    def _mark_hangs(self) -> None:
        """Mark the slot of each mail whose thread waits on the database
        (`DatabaseWaits.waited`: one wait of `database_waits.WAITING_SECONDS`, or of
        the mail's deadline if sooner; the IMAP poller's rule too). The wait's end
        takes the mark off (`_answered`)."""
        with self._lock:
            for thread in self._threads:
                hung = bool(thread.key) and DATABASE_WAITS.waited(thread.ident, self.hang_seconds)
                if hung == thread.hung:
                    continue
                if hung:
                    # `hung` is set before the wait is read again: a wait ending
                    # between the two is seen here, or its thread sees `hung` and
                    # waits for this lock to take the mark off (`_answered`).
                    thread.hung = True
                    if DATABASE_WAITS.since(thread.ident) is None:
                        thread.hung = False
                        continue
                self._mark(thread, hung=hung)
                if hung and thread.taken is not None:
                    self._share(thread, thread.taken)
                if hung:
                    log.warning(
                        "SMTP mail %s waits on the database (for %g s): its ingest thread "
                        "hangs, and a death now is not counted against the mail",
                        thread.key,
                        min(database_waits.WAITING_SECONDS, self.hang_seconds),
                    )

    def _share(self, thread: _Thread, taken: Taking) -> None:
        """Let the process's other mail be taken beside a mail that hangs (the
        module's docstring); called with the lock held. One taken alone is beside
        them from now on, and its slot says so first: its wait may end, and then a
        death is counted against it again, as `beside`. Taken alone still when its
        slot cannot say so."""
        if taken.alone and not self._write(_BESIDE.encode("ascii"), thread.offset + _KIND_AT, thread.key):
            return
        taken.waiting()

    def _mark(self, thread: _Thread, *, hung: bool) -> None:
        """Write a slot's mark; called with the lock held, for a slot holding a mail."""
        thread.hung = hung
        self._write((_HUNG if hung else _WORKING).encode("ascii"), thread.offset + _MARK_AT, thread.key)

    def stopping(self) -> None:
        """An orderly stop began: a death from now on (the supervisor's kill after its
        grace, with a mail's storing hung) is the stop's, counted against no mail."""
        try:
            os.pwrite(self._fd, _STOPPING, 0)
        except OSError as exc:  # the deaths of this stop may then be counted
            log.error("could not write the stop in %s: %s", self.path, exc)

    def _write(self, slot: bytes, offset: int, key: str) -> bool:
        """Write a slot; False, logged, when the disk refuses it."""
        try:
            os.pwrite(self._fd, slot, offset)
        except OSError as exc:
            log.error(
                "could not write SMTP mail %s in %s, its death would not be counted: %s", key, self.path, exc
            )
            return False
        return True

    def adopt(self) -> int:
        """Count the deaths of the processes that died with mails in their slots,
        and remove their files; the number of deaths counted. Safe beside other
        processes doing the same: a file is read by whoever holds its lock, and only
        while it still has its name."""
        counted = 0
        for path in self.directory.glob(f"*{_SUFFIX}"):
            if path == self.path:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:  # adopted by another meanwhile
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # its process lives
                    continue
                if os.fstat(fd).st_nlink == 0:  # adopted by another before this lock
                    continue
                slots = _lines(os.read(fd, os.fstat(fd).st_size))
                # Removed before its deaths are written: dying in between loses a death
                # (one more for the mail that kills) rather than counting one twice.
                try:
                    os.unlink(path)
                except OSError as exc:  # a disk remounted read-only: counted once it can be removed
                    log.error("could not remove %s to count its deaths: %s", path, exc)
                    continue
            finally:
                os.close(fd)
            counted += self._count(slots)
        self._prune()
        return counted

    def _count(self, slots: list[str]) -> int:
        """Count the deaths of a dead process's mails (its file's lines), but those of
        a hang or a stop (the module's docstring); the number counted."""
        stopped = bool(slots) and slots[0].split() == [_STOPPED]
        counted = 0
        for slot in map(_read_slot, slots):
            if not slot.key:
                continue
            if stopped or slot.hung:
                why = "during its stop" if stopped else "with the mail waiting on the database (a hang)"
                log.warning("an SMTP listener process was ended %s (mail %s): not counted", why, slot.key)
                continue
            log.error("an SMTP listener process died while storing mail %s", slot.key)
            try:
                with open(self._deaths_path(slot.key), "a", encoding="ascii") as deaths:
                    deaths.write("alone\n" if slot.kind == _ALONE else "beside\n")
            except OSError as exc:  # a full disk: the death is lost, the gateway goes on
                log.error("could not count the death of SMTP mail %s: %s", slot.key, exc)
                continue
            counted += 1
        return counted

    def _prune(self) -> None:
        """Drop the deaths of mails no sender retries any more (DEATHS_KEPT_SECONDS)."""
        oldest = time.time() - DEATHS_KEPT_SECONDS
        for path in self.directory.glob(f"*{_DEATHS}"):
            try:
                if path.stat().st_mtime < oldest:
                    path.unlink()
            except OSError:  # removed meanwhile, or a read-only disk: dropped another time
                pass

    def close(self) -> None:
        """At a clean stop, once every mail was stored: nothing in flight to count."""
        if self._fd < 0:
            return
        self._closed.set()
        self._watcher.join()
        os.unlink(self.path)
        os.close(self._fd)
        self._fd = -1
        try:  # the last one of a listening address leaves nothing behind (tests start many)
            self.directory.rmdir()
        except OSError:  # another process's file, or deaths to remember
            pass
