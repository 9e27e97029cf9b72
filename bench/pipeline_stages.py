"""Gateway CPU per mail, stage by stage, measured in process on the pipeline's own functions.

`measure` feeds mails one at a time, in one thread, to `helpdesk.inbound.ingest.ingest`
— the function the SMTP listener and the IMAP poller call — inside an app context
per mail, as they do. For the run only, the functions that make up each stage are
wrapped where ingest looks them up (SQLAlchemy's `Session` methods on the class)
and put back afterwards. The thread's CPU time (`time.thread_time`: waiting for
PostgreSQL is not counted) is charged to the innermost stage running, so a stage
that calls another (`may_reply` asks `identify`, which runs a statement) is not
counted twice. Nothing of the pipeline is copied here: a stage whose function is
renamed or no longer called shows "not called" in its cell, and its time lands in
"the rest". A wrapper costs about a microsecond a call.

Stages:
- parse: `parse` as ingest calls it (MIME tree, headers, text and HTML bodies,
  attachments; HTML-only mail is read as text here);
- auto-mail: `automail.detect` and `automail.via_mailing_list`;
- match: `matching.find_ticket`;
- authorize: `authentication.check`, `authorization.identify`,
  `authorization.may_reply` and (staff mail) `matching.answers_mail_sent_to`;
- strip: `storage.display_text` (reply and signature stripping, `replies.latest_reply`);
- sanitize: `storage.sanitized_html` (nh3);
- database: SQLAlchemy's `Session.execute`, `scalar`, `scalars`, `get`, `flush` and
  `commit`, wherever they are called (the match and authorize stages' statements
  count here, not there): composing and caching statements, the ORM's unit of work
  and loading, psycopg2 sending parameters (attachments' bytes too) and reading rows;
- the rest: everything else ingest does in Python — the dedup key, the inbound
  row's values, TicketsService building the ticket, its message, history,
  participants and notification rows, the per-customer limits' logic, the log
  line, the app context.

PostgreSQL's CPU over the same mails comes from the caller (`/proc`, see `bench.cpu`).
"""

from __future__ import annotations

import functools
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from bench.realistic_mail import GeneratedMail
from bench.report import markdown_table, plain_table
from helpdesk.inbound import authentication, authorization, automail, matching, storage
from helpdesk.inbound import ingest as pipeline
from tests.support.mail import SUPPORT

REST = "the rest"
WARMUP = 10  # mails ingested before counting starts: connections, compiled statements, caches
STAGES: tuple[tuple[str, tuple[tuple[ModuleType | type, str], ...]], ...] = (
    ("parse", ((pipeline, "parse"),)),
    ("auto-mail", ((automail, "detect"), (automail, "via_mailing_list"))),
    ("match", ((matching, "find_ticket"),)),
    (
        "authorize",
        (
            (authentication, "check"),
            (authorization, "identify"),
            (authorization, "may_reply"),
            (matching, "answers_mail_sent_to"),
        ),
    ),
    ("strip", ((storage, "display_text"),)),
    ("sanitize", ((storage, "sanitized_html"),)),
    (
        "database",
        tuple((Session, name) for name in ("execute", "scalar", "scalars", "get", "flush", "commit")),
    ),
)
HEADERS = (
    "shape",
    "mails",
    *(name for name, _ in STAGES),
    REST,
    "gateway CPU ms/mail",
    "PostgreSQL CPU ms/mail",
    "outcomes",
)


@dataclass(frozen=True)
class StageSplit:
    shape: str
    mails: int
    cpu: dict[str, float]  # seconds per stage, over all measured mails; REST included
    calls: dict[str, int]
    total: float  # the thread's CPU seconds in ingest and its app context
    postgres: float  # PostgreSQL's CPU seconds over the same mails
    outcomes: dict[str, int]

    def per_mail_ms(self, seconds: float) -> float:
        return 1000.0 * seconds / self.mails if self.mails else 0.0

    def cells(self) -> tuple[str, ...]:
        stages = tuple(
            f"{self.per_mail_ms(self.cpu[name]):.2f}" if self.calls[name] else "not called"
            for name, _ in STAGES
        )
        return (
            self.shape,
            str(self.mails),
            *stages,
            f"{self.per_mail_ms(self.cpu[REST]):.2f}",
            f"{self.per_mail_ms(self.total):.2f}",
            f"{self.per_mail_ms(self.postgres):.2f}",
            ", ".join(f"{count} {outcome}" for outcome, count in sorted(self.outcomes.items())),
        )


class _StageClock:
    """Charges the thread's CPU time to the innermost stage running (one thread only)."""

    def __init__(self) -> None:
        self.cpu: defaultdict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self._running: list[list[Any]] = []  # [stage, CPU time it last resumed]

    def timed(self, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            now = time.thread_time()
            if self._running:
                outer = self._running[-1]
                self.cpu[outer[0]] += now - outer[1]
            self._running.append([stage, now])
            self.calls[stage] += 1
            try:
                return function(*args, **kwargs)
            finally:
                now = time.thread_time()
                name, resumed = self._running.pop()
                self.cpu[name] += now - resumed
                if self._running:
                    self._running[-1][1] = now

        return wrapper


@contextmanager
def _wrapped(clock: _StageClock) -> Iterator[None]:
    originals = [(module, name, getattr(module, name)) for _, targets in STAGES for module, name in targets]
    try:
        for stage, targets in STAGES:
            for module, name in targets:
                setattr(module, name, clock.timed(stage, getattr(module, name)))
        yield
    finally:
        for module, name, function in originals:
            setattr(module, name, function)


def measure(
    app: Flask,
    shape: str,
    mails: Sequence[GeneratedMail],
    *,
    channel: str,
    postgres_cpu: Callable[[], float],
    warmup: int = WARMUP,
) -> StageSplit:
    """Ingest `mails` in order; the first `warmup` of them are not counted."""
    clock = _StageClock()
    outcomes: Counter[str] = Counter()
    total = postgres = 0.0
    with _wrapped(clock):
        for position, mail in enumerate(mails):
            if position == warmup:
                clock.cpu.clear()
                clock.calls.clear()
                postgres = -postgres_cpu()
            envelope = pipeline.Envelope(mail.sender, (SUPPORT,), channel)
            started = time.thread_time()
            with app.app_context():
                result = pipeline.ingest(mail.raw, envelope, app.config)
            if position >= warmup:
                total += time.thread_time() - started
                outcomes[result.outcome.value] += 1
    postgres += postgres_cpu()
    cpu = dict(clock.cpu)
    cpu[REST] = total - sum(cpu.values())
    return StageSplit(
        shape, max(0, len(mails) - warmup), cpu, dict(clock.calls), total, postgres, dict(outcomes)
    )


def report(splits: Sequence[StageSplit], first: int) -> str:
    """The stage table, for the terminal and in Markdown."""
    rows = [split.cells() for split in splits]
    return "\n".join(
        [
            f"Gateway CPU per mail by stage, ms: `ingest` in process, one thread, on the first {first} "
            f"mails of each shape, {WARMUP} of them uncounted (bench/pipeline_stages.py):",
            plain_table(HEADERS, rows),
            "",
            markdown_table(HEADERS, rows),
        ]
    )
