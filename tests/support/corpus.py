"""The mail the gateway is tested on: the shared corpus of other projects' real mail
(../shared/corpus/, read-only) and our own samples (tests/samples/)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def corpus() -> list[dict[str, str]]:
    if not (CORPUS / "MANIFEST.tsv").exists():
        pytest.fail(f"corpus missing at {CORPUS} (shared/ must sit beside the clone)")
    with open(CORPUS / "MANIFEST.tsv", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def on_the_wire(raw: bytes) -> bytes:
    """What an MTA sends: CRLF line ends (smtplib sends bytes as they are)."""
    return re.sub(rb"\r?\n", b"\r\n", raw)


def samples() -> list[dict[str, str]]:
    with open(SAMPLES / "EXPECTED.tsv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))
