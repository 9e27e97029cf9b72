"""CPU the SMTP listener spends per mail reading DATA: aiosmtpd's line-by-line
`smtp_DATA` against `LiberalSMTP`'s chunked one (docs/mail-gateway.md, issue 19).

The server runs in a process of its own with a handler that answers `250` at once
(no pipeline, no database), so its CPU is the SMTP session and nothing else. Both
variants get the same session on the same mails (`bench.realistic_mail`, sent over
one connection: EHLO once, then MAIL, RCPT and DATA per mail), so the difference
between them is the DATA phase. "aiosmtpd" is aiosmtpd's own `SMTP` with our line
length limit, "chunked" is `mailgateway.smtp.LiberalSMTP`. Runs alternate between
the two; CPU is the server process's, from /proc, over the timed mails. The handler
answers with the length it received and the client checks it against the mail's.

Run from the project root:  .venv/bin/python -m bench.smtp_data_bench [--mails 1000] [--runs 3]
    [--shape realistic]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import smtplib
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from bench import listener
from bench.cpu import tree_cpu
from bench.realistic_mail import SHAPES, generate
from mailgateway.smtp import ConnectionLimits, LiberalSMTP
from tests.support.mail import SUPPORT


class UpstreamSMTP(SMTP):
    """aiosmtpd's DATA loop, with the listener's line length limit."""

    line_length_limit = LiberalSMTP.line_length_limit


def chunked(handler: Any, **kwargs: Any) -> SMTP:
    """`LiberalSMTP` with limits no run reaches (it requires them since they were added)."""
    limits = ConnectionLimits(100, 100)
    return LiberalSMTP(handler, connections=limits, data_timeout=600, session_timeout=3600, **kwargs)


VARIANTS: dict[str, Callable[..., SMTP]] = {"aiosmtpd": UpstreamSMTP, "chunked": chunked}


class LengthHandler:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return f"250 OK {len(envelope.original_content)}"


def _serve(variant: str, ready: Any, stop: Any) -> None:
    smtp_class = VARIANTS[variant]

    class BenchController(Controller):
        def factory(self) -> SMTP:
            return smtp_class(self.handler, **self.SMTP_kwargs)

    controller = listener.start(BenchController, LengthHandler())
    ready.put(controller.port)
    stop.wait()
    controller.stop()


def unstuffed_length(raw: bytes) -> int:
    """What the server should store: smtplib adds a final CRLF when one is missing."""
    return len(raw) + (0 if raw.endswith(b"\r\n") else 2)


def run(variant: str, raws: list[bytes], warmup: int) -> float:
    """ms of server CPU per timed mail."""
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_serve, args=(variant, ready, stop))
    server.start()
    try:
        port = ready.get(timeout=60)
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
            client.ehlo("client.example")
            before = 0.0
            for index, raw in enumerate(raws):
                if index == warmup:
                    time.sleep(0.05)  # let the last warm-up reply's work finish
                    before = tree_cpu(server.pid or 0)
                client.mail("ann@example.com")
                client.rcpt(SUPPORT)
                code, text = client.data(raw)
                if (code, text) != (250, f"OK {unstuffed_length(raw)}".encode()):
                    raise SystemExit(f"{variant}: mail {index}: {code} {text!r}")
            time.sleep(0.05)
            after = tree_cpu(server.pid or 0)
        return (after - before) * 1000 / (len(raws) - warmup)
    finally:
        stop.set()
        server.join(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=1000, help="timed mails per run (default 1000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each variant, alternating (default 3)")
    parser.add_argument("--shape", default="realistic", choices=SHAPES)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    warmup = 20
    raws = [mail.raw for mail in generate(args.shape, args.mails + warmup, seed=args.seed)]
    mean_kb = sum(len(r) for r in raws) / len(raws) / 1024
    lines = sum(r.count(b"\n") for r in raws) / len(raws)
    print(
        f"{len(raws)} {args.shape} mails, {mean_kb:.1f} KB and {lines:.0f} lines on average, {warmup} untimed"
    )
    results: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_ in range(args.runs):
        for name in VARIANTS:
            results[name].append(run(name, raws, warmup))
            print(f"run {round_ + 1} {name}: {results[name][-1]:.3f} ms of server CPU per mail", flush=True)
    print("| variant | server CPU ms/mail, each run |")
    print("|---|---|")
    for name, values in results.items():
        print(f"| {name} | {', '.join(f'{v:.3f}' for v in values)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
