"""Caps on the work one mail can cause (docs/security.md: hostile input is bounded).

Whoever sends a mail chooses every byte of it, before any authorization. These
caps bound what parsing and the pipeline do for one mail, so that no mail up to
`MAX_MESSAGE_BYTES` can stall a listener. A mail over a cap is never dropped:
over the structural caps (MIME parts, nesting, header fields and bytes) it is
quarantined with its raw bytes and the reason; over the others it is stored
with a note saying what was left out. The defaults are in `config.py`; docs/security.md
lists each setting and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config import Config

_SETTINGS = {
    "mime_parts": "MAX_MIME_PARTS",
    "mime_depth": "MAX_MIME_DEPTH",
    "header_fields": "MAX_HEADER_FIELDS",
    "header_bytes": "MAX_HEADER_BYTES",
    "html_text_chars": "MAX_HTML_TO_TEXT_CHARS",
    "cc_participants": "MAX_CC_PARTICIPANTS",
    "attachments": "MAX_ATTACHMENTS",
    "attachment_bytes": "MAX_ATTACHMENT_BYTES",
    "attachments_total_bytes": "MAX_ATTACHMENTS_TOTAL_BYTES",
}


@dataclass(frozen=True)
class MailLimits:
    mime_parts: int  # MIME parts read, enclosed messages' parts included
    mime_depth: int  # multipart and message/* nesting
    header_fields: int  # fields of the top-level header
    header_bytes: int  # bytes of the top-level header
    html_text_chars: int  # HTML read to make the text of an HTML-only mail
    cc_participants: int  # To/Cc addresses that become participants (and are mailed)
    attachments: int  # attachments stored per mail
    attachment_bytes: int  # largest attachment stored
    attachments_total_bytes: int  # attachment bytes stored per mail

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MailLimits:
        return cls(**{name: int(config[setting]) for name, setting in _SETTINGS.items()})


DEFAULT = MailLimits.from_config({setting: getattr(Config, setting) for setting in _SETTINGS.values()})
