"""Every mail of ../shared/corpus/ through the real listener: none crashes it, none
gets a 5xx, each gets a recorded outcome. Prints a table by corpus category."""
from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from sqlalchemy import func, select

from helpdesk.extensions import db
from helpdesk.models import InboundMail
from tests.mail import start_gateway

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def corpus() -> list[dict[str, str]]:
    if not (CORPUS / "MANIFEST.tsv").exists():
        pytest.fail(f"corpus missing at {CORPUS} (shared/ must sit beside the clone)")
    with open(CORPUS / "MANIFEST.tsv", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def on_the_wire(raw: bytes) -> bytes:
    """What an MTA sends: CRLF line ends (smtplib sends bytes as they are)."""
    return re.sub(rb"\r?\n", b"\r\n", raw)


def test_every_corpus_mail_gets_a_recorded_outcome(app):
    entries = corpus()
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    for gateway in start_gateway(app, UNKNOWN_SENDER_POLICY="accept"):
        for entry in entries:
            raw = (CORPUS / entry["file"]).read_bytes()
            code, text = gateway.send(on_the_wire(raw), mail_from="corpus@example.org")
            assert code == 250, f"{entry['file']}: {code} {text!r}"
            outcome = text.decode().split()[2]
            outcomes[entry["category"]][outcome] += 1
            if entry["category"] == "bounce":
                assert outcome in ("ignored", "duplicate"), entry["file"]
    names = sorted({o for c in outcomes.values() for o in c})
    print("\n" + "category".ljust(14) + "".join(n.rjust(13) for n in names))
    for category, counts in sorted(outcomes.items()):
        print(category.ljust(14) + "".join(str(counts[n]).rjust(13) for n in names))
    total = sum(sum(c.values()) for c in outcomes.values())
    duplicates = sum(c["duplicate"] for c in outcomes.values())
    assert total == len(entries)
    recorded = db.session.execute(select(func.count(InboundMail.id))).scalar_one()
    assert recorded == total - duplicates
