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

log = logging.getLogger("mailgateway.smtp")

_KEY_CHARS = 64  # a SHA-256 in hex
_ALONE, _BESIDE = "A", "B"
_SECONDS_CHARS = 12  # when it began, in whole seconds since the epoch
_SLOT = _KEY_CHARS + _SECONDS_CHARS + 4  # key, A or B, the time, spaces and a line feed
_BLANK = b" " * (_SLOT - 1) + b"\n"
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


def _read_slot(slot: str) -> tuple[str, str, float]:
    """The key, kind and start of a slot's mail; no key for a blank (or torn) slot."""
    key, kind, began = (slot.split() + ["", "", ""])[:3]
    try:
        return (key, kind, float(began)) if len(key) == _KEY_CHARS else ("", "", 0.0)
    except ValueError:
        return "", "", 0.0


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
            slots = path.read_text("ascii", "replace").splitlines()
        except FileNotFoundError:
            continue
        ages.extend(now - began for key, _kind, began in map(_read_slot, slots) if key)
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
    process sharing `directory`. Used from the ingest threads and, for `adopt`, from
    the gateway's main thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
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
        self._slots = threading.local()
        self._next_slot = 0
        self._lock = threading.Lock()
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
    def taking(self, key: str, *, alone: bool) -> Iterator[None]:
        """Hold `key` in this thread's slot while the mail is stored; a death in
        between is counted against it by whoever finds this file. A slot that cannot
        be written (the instance folder's disk full, or remounted read-only) costs
        that count, never the mail: it is stored uncounted, as before the count
        existed, rather than answered 451 for as long as the disk stays full."""
        offset = self._slot() * _SLOT
        began = f"{time.time():{_SECONDS_CHARS}.0f}"
        held = self._write(f"{key} {_ALONE if alone else _BESIDE} {began}\n".encode("ascii"), offset, key)
        try:
            yield
        finally:
            if held:
                self._write(_BLANK, offset, key)

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

    def _slot(self) -> int:
        slot: int | None = getattr(self._slots, "index", None)
        if slot is None:
            with self._lock:
                slot, self._next_slot = self._next_slot, self._next_slot + 1
            self._slots.index = slot
        return slot

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
                slots = os.read(fd, os.fstat(fd).st_size).decode("ascii", "replace").splitlines()
                # Removed before its deaths are written: dying in between loses a death
                # (one more for the mail that kills) rather than counting one twice.
                try:
                    os.unlink(path)
                except OSError as exc:  # a disk remounted read-only: counted once it can be removed
                    log.error("could not remove %s to count its deaths: %s", path, exc)
                    continue
            finally:
                os.close(fd)
            for slot in slots:
                key, kind, _began = _read_slot(slot)
                if not key:
                    continue
                log.error("an SMTP listener process died while storing mail %s", key)
                try:
                    with open(self._deaths_path(key), "a", encoding="ascii") as deaths:
                        deaths.write("alone\n" if kind == _ALONE else "beside\n")
                except OSError as exc:  # a full disk: the death is lost, the gateway goes on
                    log.error("could not count the death of SMTP mail %s: %s", key, exc)
                    continue
                counted += 1
        self._prune()
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
        os.unlink(self.path)
        os.close(self._fd)
        self._fd = -1
        try:  # the last one of a listening address leaves nothing behind (tests start many)
            self.directory.rmdir()
        except OSError:  # another process's file, or deaths to remember
            pass
