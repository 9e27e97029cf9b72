"""The assistant's tool calls beside the plain API (docs/integrations.md,
docs/benchmarks.md): what the tool layer costs on top of the API's own ticket
creation and lookup.

Against a private PostgreSQL (fsync on), through gunicorn (`wsgi:app`, sync
workers, started as bench/web_bench.py starts it), requests per second for:

1. `POST /api/v1/tickets` with a staff token (the API's own creation);
2. `create_ticket_report` through `POST /api/v1/assistant/tool-calls` with an
   assistant integration token, one call a request, each under a call id of its own
   (as a runtime names its calls), the customer named by email, name and language as
   an assistant in a web chat names them (`channel: chat`: on WhatsApp, the default,
   the sender's number is required and an email alone is refused, 422;
   docs/integrations.md, "Who the customer is");
3. `get_ticket_information` the same way, on the customer's own tickets;
4. `GET /api/v1/tickets/<number>` with the staff token.

Payloads are Spanish descriptions of 300 bytes to 4 KB. Creates are spread over
many customers, four tickets each, so the per-customer limits
(`CUSTOMER_MAX_TICKETS_PER_HOUR`, `CUSTOMER_MAX_OPEN_TICKETS`) are checked on
every tool call and never reached, as with real traffic; every answer is checked
(201, or a successful output). Lookups pick random tickets among 2,000 opened
beforehand by 400 customers through the TicketsService (half of them assigned, so
the output names an agent). Clients: twice as many processes as gunicorn workers,
each a minimal HTTP/1.1 client, one connection per request (bench/web_bench.py
says why). The four kinds alternate, `--rounds` phases of `--seconds` each, and
each rate sums its phases, so the machine's drift falls on all of them.

Goal: the tool layer costs under 20 % over the plain API, i.e. tool/API ≥ 0.8 for
creation and for lookup.

Run from the project root:
    .venv/bin/python -m bench.assistant_bench [--workers 2,4] [--seconds 5] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue
import random
import socket
import tempfile
import time
import traceback
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from bench.postgres import admin, migrate, server_settings
from bench.report import markdown_table, plain_table, positive_counts
from bench.web_bench import gunicorn
from bench.workers import Run, WorkerResult
from config import TestingConfig
from helpdesk import create_app
from helpdesk.extensions import db
from helpdesk.services import Actor, TicketsService
from helpdesk.services.integrations import IntegrationsService
from helpdesk.services.staff import StaffService
from tests.support.pgserver import PostgresServer
from tests.support.web_process import api_token

EMAIL, PASSWORD = "bench-admin@helpdesk.test", "bench-password-1"
GOAL = 0.8  # tool calls at least 0.8 of the API's rate: the layer costs under 20 %
SEEDED_CUSTOMERS = 400
SEEDED_TICKETS = 2_000
TICKETS_PER_CUSTOMER = 4  # a new customer every fourth creation: under both limits (10)
SETUP_TIMEOUT = 300.0
KINDS = ("api_create", "tool_create", "api_lookup", "tool_lookup")

# What customers write to an ISP's WhatsApp assistant; descriptions are drawn from these.
SENTENCES = (
    "Desde el lunes la conexión a internet se corta varias veces al día, sobre todo por la noche.",
    "Contraté 300 Mbps y las pruebas de velocidad no pasan de 20 Mbps, incluso con cable.",
    "Ya reinicié el módem tres veces y la luz de señal sigue parpadeando en rojo.",
    "El técnico vino el jueves pero no pudo entrar al edificio porque el portero no estaba.",
    "En la factura de este mes aparece un cargo de 49,90 € por un servicio que nunca pedí.",
    "La televisión se congela cada pocos minutos y el decodificador muestra el error E-102.",
    "Trabajo desde casa y necesito una solución urgente: tengo videollamadas todo el día.",
    "Mi vecino tiene el mismo proveedor y no tiene ningún problema, así que parece algo de mi línea.",
    "El teléfono fijo no tiene tono desde la tormenta del sábado; el router sí enciende.",
    "Me gustaría saber si pueden cambiar el router por uno con wifi 6, el actual no llega al dormitorio.",
    "Les envío el número de serie del equipo: ZTE-F680-7731-AB09, por si lo necesitan.",
    "Por favor, avísenme por WhatsApp cuando haya novedades; por correo no siempre lo veo.",
)
TITLES = (
    "Internet lento por las noches",
    "Cortes de conexión frecuentes",
    "Cargo no reconocido en la factura",
    "Sin tono en el teléfono fijo",
    "Decodificador con error E-102",
    "Cambio de router",
)


def description(rng: random.Random) -> str:
    """A Spanish description of 300 bytes to 4 KB (UTF-8)."""
    size = rng.randint(300, 4000)
    text = ""
    while len(text.encode()) < size:
        text += rng.choice(SENTENCES) + " "
    return text.encode()[:size].decode(errors="ignore").strip()


@dataclass(frozen=True)
class Rates:
    workers: int
    runs: dict[str, Run]

    def rate(self, kind: str) -> float:
        return self.runs[kind].rate

    def ratio(self, what: str) -> float:
        api = self.rate(f"api_{what}")
        return self.rate(f"tool_{what}") / api if api else 0.0


# -- setup -----------------------------------------------------------------------------


def prepare(pg: PostgresServer) -> tuple[str, str]:
    """A migrated database with the bench's admin, an agent, an assistant
    integration (its token returned) and the lookups' tickets."""
    url = pg.create_database("bench_assistant")
    migrate(url)
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url)
    rng = random.Random(7)
    with app.app_context():
        staff = StaffService(db.session)
        staff.create(email=EMAIL, name="Bench Admin", role="admin", password=PASSWORD)
        agent, _ = staff.create(email="agnes@helpdesk.test", name="Agnes Agent", role="agent")
        _integration, token = IntegrationsService(db.session).add("whatsapp-bot", "assistant")
        db.session.commit()
        tickets = TicketsService.from_config(db.session, app.config)
        for n in range(SEEDED_TICKETS):
            email = customer_email(n % SEEDED_CUSTOMERS)
            tickets.open_ticket(
                subject=rng.choice(TITLES),
                description=description(rng),
                requester_email=email,
                requester_name=f"Cliente {n % SEEDED_CUSTOMERS}",
                channel="whatsapp",
                source="ai",
                actor=Actor.customer(email),
                priority=rng.choice(("low", "medium", "high", "urgent")),
                category=rng.choice(("support", "technical", "billing")),
            )
            db.session.commit()
        agent_id = agent.id
        db.session.remove()
        db.engine.dispose()
    admin(
        url,
        "UPDATE contacts SET language = 'es'",
        f"UPDATE tickets SET assignee_id = {agent_id}, status = 'in_progress' WHERE number % 2 = 0",
        "VACUUM ANALYZE",
        "CHECKPOINT",
    )
    return url, token


def customer_email(n: int) -> str:
    """The seeded customer who opened tickets n, n + 400, n + 800, …"""
    return f"cliente{n}@example.com"


# -- clients ---------------------------------------------------------------------------


def _tool_call(customer: dict[str, str], name: str, arguments: dict[str, str], call_id: str) -> bytes:
    return json.dumps(
        {
            "customer": customer,
            "conversation_id": f"chat-{call_id}",
            "channel": "chat",
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
                }
            ],
        },
        ensure_ascii=False,
    ).encode()


def _requests(kind: str, index: int, label: str) -> Callable[[int], tuple[str, str, bytes]]:
    """The n-th request of a client: method, path and body. Creating clients name a
    new customer every TICKETS_PER_CUSTOMER requests (the phase's label makes them
    new to the helpdesk); lookups pick the seeded tickets at random, the same
    sequence for both kinds. Each tool call's id is the run's only one: an id the
    integration used before is claimed again and waited for on PostgreSQL while the
    other request's claim is open, which no runtime numbering its calls does."""
    rng = random.Random(f"{kind[-6:]}-{index}-{label}")
    texts = [description(rng) for _ in range(64)]

    def create(n: int) -> tuple[str, str, bytes]:
        who = n // TICKETS_PER_CUSTOMER
        email = f"{kind}-{label}-c{index}-{who}@example.com"
        name, title, text = (
            f"Cliente {index}-{who}",
            f"{TITLES[n % len(TITLES)]} ({n})",
            texts[n % len(texts)],
        )
        if kind == "api_create":
            body = {
                "subject": title,
                "description": text,
                "requester_email": email,
                "requester_name": name,
                "priority": "high",
                "category": "technical",
            }
            return "POST", "/api/v1/tickets", json.dumps(body, ensure_ascii=False).encode()
        arguments = {"title": title, "description": text, "category": "technical", "priority": "high"}
        customer = {"email": email, "name": name, "language": "es"}
        return (
            "POST",
            "/api/v1/assistant/tool-calls",
            _tool_call(customer, "create_ticket_report", arguments, f"call_{kind}-{label}-{index}-{n}"),
        )

    def lookup(n: int) -> tuple[str, str, bytes]:
        number = rng.randint(1, SEEDED_TICKETS)
        ticket = f"TKT-{number:06d}"
        if kind == "api_lookup":
            return "GET", f"/api/v1/tickets/{ticket}", b""
        customer = {"email": customer_email((number - 1) % SEEDED_CUSTOMERS)}
        return (
            "POST",
            "/api/v1/assistant/tool-calls",
            _tool_call(
                customer, "get_ticket_information", {"ticketId": ticket}, f"call_{kind}-{label}-{index}-{n}"
            ),
        )

    return create if kind.endswith("create") else lookup


def _client(
    kind: str, base: str, token: str, index: int, label: str, seconds: float, barrier: Barrier
) -> WorkerResult:
    if kind.startswith("api"):
        token = api_token(base, EMAIL, PASSWORD)
    expected = b"HTTP/1.1 201 " if kind == "api_create" else b"HTTP/1.1 200 "
    netloc = urllib.parse.urlsplit(base).netloc
    host, port = netloc.split(":")
    request = _requests(kind, index, label)
    barrier.wait(SETUP_TIMEOUT)
    started = time.monotonic()
    deadline, count = started + seconds, 0
    while time.monotonic() < deadline:
        method, path, body = request(count)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {netloc}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        with socket.create_connection((host, int(port)), timeout=60) as connection:
            connection.sendall(head.encode() + body)
            answer = b"".join(iter(lambda: connection.recv(65536), b""))
        # A tool's output is JSON text inside the JSON answer: its quotes are escaped.
        if not answer.startswith(expected) or (
            kind.startswith("tool") and b'\\"success\\": true' not in answer
        ):
            raise RuntimeError(f"{kind} {method} {path} answered {answer[:300]!r}")
        count += 1
    return WorkerResult(count, started, time.monotonic())


def _main(
    kind: str,
    base: str,
    token: str,
    index: int,
    label: str,
    seconds: float,
    barrier: Barrier,
    results: Queue[tuple[int, Any]],
) -> None:
    try:
        results.put((index, _client(kind, base, token, index, label, seconds, barrier)))
    except BaseException:
        barrier.abort()
        results.put((index, traceback.format_exc()))


def phase(kind: str, base: str, token: str, processes: int, label: str, seconds: float) -> Run:
    """`processes` clients of `kind` for about `seconds`: requests answered, and the
    seconds from the first start to the last finish. `label` names the phase, once
    in the whole run."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results: Queue[tuple[int, Any]] = ctx.Queue()
    clients = [
        ctx.Process(target=_main, args=(kind, base, token, i, label, seconds, barrier, results))
        for i in range(processes)
    ]
    for client in clients:
        client.start()
    outcomes = []
    try:
        for _ in clients:
            outcomes.append(results.get(timeout=SETUP_TIMEOUT + seconds + 120)[1])
    except queue.Empty:
        raise RuntimeError(f"{kind} clients did not report") from None
    finally:
        for client in clients:
            client.join(timeout=30)
    failures = [o for o in outcomes if isinstance(o, str)]
    if failures:
        raise RuntimeError(f"{kind} client failed:\n{failures[0]}")
    elapsed = max(o.finished for o in outcomes) - min(o.started for o in outcomes)
    return Run(processes, sum(o.count for o in outcomes), elapsed)


def measure(url: str, token: str, workers: int, scratch: Path, seconds: float, rounds: int) -> Rates:
    """The four kinds in turn, `rounds` times, after a one-second warm-up of each
    (the workers' first requests load code and fill caches)."""
    server = gunicorn(url, scratch, workers=workers)
    tally = {kind: [0, 0.0] for kind in KINDS}
    try:
        for kind in KINDS:
            phase(kind, server.base, token, workers * 2, f"w{workers}-warm-up", 1.0)
        for round_ in range(rounds):
            for kind in KINDS:
                run = phase(kind, server.base, token, workers * 2, f"w{workers}-r{round_}", seconds)
                tally[kind][0] += run.count
                tally[kind][1] += run.elapsed
    finally:
        server.stop()
    return Rates(
        workers, {kind: Run(workers * 2, int(count), elapsed) for kind, (count, elapsed) in tally.items()}
    )


def gap_free(url: str) -> bool:
    (row,) = admin(url, "SELECT count(*), min(number), max(number) FROM tickets")
    assert row is not None
    return bool(row[1] == 1 and row[2] == row[0])


def verdict(ratio: float) -> str:
    return "PASS" if ratio >= GOAL else "MISS"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.assistant_bench")
    parser.add_argument("--workers", type=positive_counts, default=[2, 4], help="gunicorn workers (2,4)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase (5)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating phases of each kind (4)")
    args = parser.parse_args(argv)
    pg = PostgresServer(durable=True).start()
    scratch = Path(tempfile.mkdtemp(prefix="assistant-bench."))
    try:
        url, token = prepare(pg)
        settings = server_settings(url)
        print(f"{settings}; {SEEDED_TICKETS} tickets seeded for the lookups", flush=True)
        rows = []
        for workers in args.workers:
            rates = measure(url, token, workers, scratch, args.seconds, args.rounds)
            rows.append(rates)
            print(
                f"{workers} gunicorn workers: "
                + ", ".join(f"{kind} {rates.rate(kind):.0f}/s ({rates.runs[kind].count})" for kind in KINDS),
                flush=True,
            )
        numbers_ok = gap_free(url)
    finally:
        pg.stop()

    print()
    print(f"Assistant tool calls beside the plain API ({settings})")
    print(
        f"Clients: twice as many processes as gunicorn workers; {args.rounds} alternating phases of "
        f"{args.seconds:.0f} s per kind. Requests/s; ratio = tool / API."
    )
    headers = (
        "gunicorn workers",
        "API create/s",
        "tool create/s",
        "create ratio",
        "API lookup/s",
        "tool lookup/s",
        "lookup ratio",
    )
    table = [
        (
            str(r.workers),
            f"{r.rate('api_create'):.0f}",
            f"{r.rate('tool_create'):.0f}",
            f"{r.ratio('create'):.2f}",
            f"{r.rate('api_lookup'):.0f}",
            f"{r.rate('tool_lookup'):.0f}",
            f"{r.ratio('lookup'):.2f}",
        )
        for r in rows
    ]
    print(plain_table(headers, table))
    for what in ("create", "lookup"):
        worst = min(r.ratio(what) for r in rows)
        print(
            f"Goal: the tool layer costs under 20 % over the plain API ({what}: tool/API ≥ {GOAL}): "
            f"worst {worst:.2f}, {verdict(worst)}."
        )
    print(f"Numbers gap-free: {'yes' if numbers_ok else 'NO'}.")
    print()
    print(markdown_table(headers, table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
