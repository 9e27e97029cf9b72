"""A self-signed certificate for 127.0.0.1, for the private servers that speak TLS
(Dovecot's IMAPS and STARTTLS, the outbound SMTP sink)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


class OpensslMissing(RuntimeError):
    pass


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """Write `cert.pem` and `key.pem` into `folder`; returns their paths."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise OpensslMissing("the openssl command is missing (Debian package openssl)")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key
