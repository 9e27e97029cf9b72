"""The database driver, measured: the same mails ingested through psycopg2 (the
design's driver: every statement sent as text with its values written in, planned
anew each time) and through psycopg 3 (values sent apart from the statement, and a
statement run five times on a connection prepared by the server, so neither lexed
nor planned again). Issue 19, docs/benchmarks.md, "The driver, measured".

psycopg 3 is not a dependency of the product. The benchmark reads it from
`bench/results/psycopg3` (ignored by git), installed there by hand:
    .venv/bin/pip install --target bench/results/psycopg3 psycopg==3.2.3 psycopg-binary==3.2.3

Each run is a fresh database copied from the migrated template on one private
durable PostgreSQL, the same seeded mails fed in order, in process, through
`helpdesk.inbound.ingest.ingest` (`bench.pipeline_stages.measure`, the first 20
uncounted), the gateway thread's CPU and the PostgreSQL server's from `/proc`. The
two drivers alternate in a shuffled order every round and are compared pairwise.

Run from the project root (about 3 s a run):
    .venv/bin/python -m bench.driver_bench --shape plain4k --rounds 6
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import pipeline_stages
from bench.pg_parts_bench import DATABASE, MAILS, WARMUP, _Clock
from bench.realistic_mail import announced, generate
from bench.report import markdown_table, median_range, paired, plain_table, shuffled_rounds
from bench.smtp_bench import CUSTOMER_LIMITS_NEVER_REACHED, prepare_database
from config import TestingConfig
from helpdesk import create_app
from helpdesk.extensions import db
from tests.support.pgserver import PostgresServer

PSYCOPG3 = Path(__file__).parent / "results" / "psycopg3"
DRIVERS = {"psycopg2": "postgresql+psycopg2://", "psycopg 3": "postgresql+psycopg://"}
BASELINE = "psycopg2"


@dataclass(frozen=True)
class Sample:
    shape: str
    round: str
    variant: str
    gateway: float
    postgres: float
    outcomes: dict[str, int]

    @property
    def both(self) -> float:
        return self.gateway + self.postgres


def run(pg: PostgresServer, shape: str, mails: Sequence, driver: str, round_id: str) -> Sample:
    url = prepare_database(pg, DATABASE).replace("postgresql://", DRIVERS[driver], 1)
    url = url.replace(DRIVERS[BASELINE], DRIVERS[driver], 1)
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url, **CUSTOMER_LIMITS_NEVER_REACHED)
    clock = _Clock(pg.data)
    try:
        with app.app_context():
            assert db.engine.url.drivername == DRIVERS[driver].removesuffix("://"), db.engine.url
        split = pipeline_stages.measure(app, shape, mails, channel="smtp", postgres_cpu=clock, warmup=WARMUP)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    postgres = sum(clock.readings[-1]) - sum(clock.readings[0])
    return Sample(
        shape, round_id, driver, split.per_mail_ms(split.total), split.per_mail_ms(postgres), split.outcomes
    )


HEADERS = (
    "shape",
    "driver",
    "runs",
    "gateway CPU ms/mail",
    "PostgreSQL CPU ms/mail",
    "both",
    "gateway, paired",
    "PostgreSQL, paired",
    "both, paired",
)


def rows(samples: Sequence[Sample]) -> list[tuple[str, ...]]:
    found = []
    for shape in dict.fromkeys(s.shape for s in samples):
        of_shape = [s for s in samples if s.shape == shape]
        for driver in DRIVERS:
            runs = [s for s in of_shape if s.variant == driver]
            found.append(
                (
                    shape,
                    driver,
                    str(len(runs)),
                    median_range([s.gateway for s in runs]),
                    median_range([s.postgres for s in runs]),
                    median_range([s.both for s in runs]),
                    paired(of_shape, driver, BASELINE, lambda s: s.gateway),
                    paired(of_shape, driver, BASELINE, lambda s: s.postgres),
                    paired(of_shape, driver, BASELINE, lambda s: s.both),
                )
            )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.driver_bench")
    parser.add_argument("--shape", choices=("plain4k", "realistic"), action="append", help="(both)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--mails", type=int, default=MAILS, help=f"per run, {WARMUP} of them uncounted")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if not (PSYCOPG3 / "psycopg").is_dir():
        print(f"psycopg 3 is not in {PSYCOPG3}; see this module's docstring", file=sys.stderr)
        return 2
    sys.path.append(str(PSYCOPG3))
    pg = PostgresServer(durable=True).start()
    try:
        samples = shuffled_rounds(
            args.shape or ["plain4k", "realistic"],
            lambda shape: announced(shape, generate(shape, args.mails, seed=args.seed)),
            args.rounds,
            list(DRIVERS),
            lambda shape, mails, driver, round_id: run(pg, shape, mails, driver, round_id),
            lambda sample: (
                f"gateway {sample.gateway:.2f} + PostgreSQL {sample.postgres:.2f} ms/mail {sample.outcomes}"
            ),
        )
    finally:
        pg.stop()
    table = rows(samples)
    print(f"\nCPU per mail by driver, ms ({args.mails - WARMUP} counted mails a run; paired: vs psycopg2):")
    print(plain_table(HEADERS, table))
    print()
    print(markdown_table(HEADERS, table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
