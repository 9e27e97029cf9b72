"""CPU the SMTP listener spends per mail around `ingest`: the session's commands and
the hand-over to the ingest threads and back (docs/benchmarks.md, issue 19,
eighteenth session).

The listener (`mailgateway.smtp.LiberalSMTP`) runs in a process of its own with a
handler that hands each mail to a thread pool under `wait_for`, as
`SupportHandler.handle_DATA` does, where a stand-in for `ingest` burns `--burn` ms
of that thread's CPU (no database, so nothing else varies between runs). Clients
send `bench.realistic_mail` mails over `--connections` connections (EHLO once, then
MAIL, RCPT and DATA per mail, five untimed first). Reported per timed mail, from
/proc: the CPU of the event loop's thread, and of the whole process less the burn.

Several trees can be compared (`--trees old=/path/to/a/checkout,new=.`): each run
imports the listener from its tree, and runs alternate between them, the order
swapped every round, so a drift of a shared machine falls on both alike.

Run from the project root:  .venv/bin/python -m bench.smtp_session_bench [--rounds 6]
    [--mails 300] [--connections 2] [--burn 3] [--shape plain4k] [--trees NAME=PATH,...]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import smtplib
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import listener

ROOT = Path(__file__).resolve().parent.parent
WARMUP = 5  # mails each connection sends before the timed ones
SUPPORT = "support@helpdesk.test"


def burn(ms: float) -> None:
    """The stand-in for `ingest`: `ms` of this thread's CPU in Python."""
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        sum(range(200))


def _thread_cpu(tid: int) -> float:
    with open(f"/proc/{os.getpid()}/task/{tid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu(loop_tid: int) -> tuple[float, float]:
    """CPU seconds of the event loop's thread and of the whole process."""
    every = sum(_thread_cpu(int(tid)) for tid in os.listdir(f"/proc/{os.getpid()}/task"))
    return _thread_cpu(loop_tid), every


def _serve(tree: str, burn_ms: float, ready: Any, start: Any, stop: Any, out: Any) -> None:
    sys.path.insert(0, tree)
    assert "mailgateway.smtp" not in sys.modules, "the listener must come from the tree measured"
    from aiosmtpd.controller import Controller

    from mailgateway.process import configure_process
    from mailgateway.smtp import ConnectionLimits, LiberalSMTP

    configure_process()  # the gateway's switch interval and logging
    executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ingest")

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.run_in_executor(executor, burn, burn_ms), 300)
            return "250 OK"

    class BenchController(Controller):
        def factory(self) -> Any:
            limits = ConnectionLimits(100, 100)
            return LiberalSMTP(
                self.handler, connections=limits, data_timeout=600, session_timeout=3600, **self.SMTP_kwargs
            )

    controller = listener.start(BenchController, Handler(), enable_SMTPUTF8=True)
    print(
        f"listener from {LiberalSMTP.__module__} in {sys.modules[LiberalSMTP.__module__].__file__}",
        flush=True,
    )
    assert controller._thread is not None
    loop_tid = controller._thread.native_id
    ready.put(controller.port)
    start.wait()
    before = _cpu(loop_tid)
    stop.wait()
    after = _cpu(loop_tid)
    out.put((after[0] - before[0], after[1] - before[1]))
    controller.stop()
    executor.shutdown()


def _client(port: int, raws: list[bytes], barrier: Any) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
        client.ehlo("client.example")
        for index, raw in enumerate(raws):
            if index == WARMUP:
                barrier.wait()
            client.mail("ann@example.com")
            client.rcpt(SUPPORT)
            code, text = client.data(raw)
            if code != 250:
                raise SystemExit(f"mail {index}: {code} {text!r}")


def run(tree: str, raws: list[bytes], connections: int, burn_ms: float) -> tuple[float, float]:
    """ms of CPU per timed mail: the event loop's thread, the process less the burn."""
    ctx = mp.get_context("spawn")
    ready, out = ctx.Queue(), ctx.Queue()
    start, stop = ctx.Event(), ctx.Event()
    server = ctx.Process(target=_serve, args=(tree, burn_ms, ready, start, stop, out))
    server.start()
    try:
        port = ready.get(timeout=120)
        barrier = ctx.Barrier(connections + 1)
        clients = [ctx.Process(target=_client, args=(port, raws, barrier)) for _ in range(connections)]
        for client in clients:
            client.start()
        barrier.wait(timeout=300)
        start.set()
        for client in clients:
            client.join()
            if client.exitcode:
                raise SystemExit(f"a client failed ({client.exitcode})")
        stop.set()
        loop_cpu, process_cpu = out.get(timeout=120)
    finally:
        stop.set()
        server.join(timeout=60)
    timed = connections * (len(raws) - WARMUP)
    return loop_cpu * 1000 / timed, process_cpu * 1000 / timed - burn_ms


def main(argv: list[str] | None = None) -> int:
    # Here, not at the top: it imports the pipeline, and each server process must
    # import the listener from its own tree (`_serve`), not from this one.
    from bench.realistic_mail import SHAPES, generate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="runs of each tree, alternating (default 6)")
    parser.add_argument("--mails", type=int, default=300, help="timed mails per connection (default 300)")
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--burn", type=float, default=3.0, help="ms of CPU the stand-in ingest burns")
    parser.add_argument("--shape", default="plain4k", choices=SHAPES)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--trees", default=f"this={ROOT}", help="NAME=PATH,... (default: this tree)")
    args = parser.parse_args(argv)
    trees = [entry.split("=", 1) for entry in args.trees.split(",")]
    raws = [mail.raw for mail in generate(args.shape, args.mails + WARMUP, seed=args.seed)]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in trees}
    for round_ in range(args.rounds):
        for name, tree in trees if round_ % 2 == 0 else trees[::-1]:
            loop_ms, over_ms = run(str(Path(tree).resolve()), raws, args.connections, args.burn)
            results[name].append((loop_ms, over_ms))
            print(f"round {round_ + 1} {name}: event loop {loop_ms:.3f} ms/mail, less burn {over_ms:.3f}")
    print("| tree | event loop thread ms/mail, median [range] | process less the burn ms/mail |")
    print("|---|---:|---:|")
    for name, values in results.items():
        cells = []
        for column in (0, 1):
            series = [value[column] for value in values]
            cells.append(f"{statistics.median(series):.3f} [{min(series):.3f}–{max(series):.3f}]")
        print(f"| {name} | {cells[0]} | {cells[1]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
