"""Files staff attach to a reply or note (docs/web.md: the ticket page's reply box,
`POST /api/v1/tickets/<number>/replies` as multipart/form-data).

The limits are inbound mail's (`MAX_ATTACHMENTS`, `MAX_ATTACHMENT_BYTES`,
`MAX_ATTACHMENTS_TOTAL_BYTES`; helpdesk.inbound.limits), so what the helpdesk
stores and mails stays within one set of bounds. A mail over them is stored with a
note, since its raw bytes keep the rest; a person uploading is there to choose,
so an upload over them is refused whole, before anything is stored. Names are
made safe by the inbound rule (`parser.safe_filename`), and the content type is
kept for display only: downloads are always `application/octet-stream`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NoReturn, Protocol

from helpdesk.errors import ValidationError
from helpdesk.inbound.limits import MailLimits
from helpdesk.inbound.parser import safe_content_type, safe_filename
from helpdesk.services.tickets import NewAttachment

FIELD = "attachments"  # the form field the files come in, in the portal and the API
UNKNOWN_TYPE = "application/octet-stream"


class UploadedFile(Protocol):
    """A file from a form, as werkzeug's FileStorage gives it."""

    @property
    def filename(self) -> str | None: ...
    @property
    def mimetype(self) -> str: ...
    def read(self) -> bytes: ...


def attachments(files: Iterable[UploadedFile], limits: MailLimits) -> list[NewAttachment]:
    """The files to store with the message; ValidationError (field `attachments`)
    when they break a limit. A nameless empty part is no file: it is what a browser
    sends for a file input left empty."""
    read = [(item.filename or "", item.mimetype or UNKNOWN_TYPE, item.read()) for item in files]
    read = [(name, kind, data) for name, kind, data in read if name or data]
    if len(read) > limits.attachments:
        _refuse(f"at most {limits.attachments} files may be attached to one message")
    kept: list[NewAttachment] = []
    total = 0
    for index, (name, kind, data) in enumerate(read, start=1):
        content_type = safe_content_type(kind)
        filename = safe_filename(name, content_type, index)
        if len(data) > limits.attachment_bytes:
            _refuse(f"{filename} is {len(data):,} bytes; a file may have at most {limits.attachment_bytes:,}")
        total += len(data)
        kept.append(NewAttachment(filename, content_type, data))
    if total > limits.attachments_total_bytes:
        _refuse(f"the files have {total:,} bytes together; at most {limits.attachments_total_bytes:,} in all")
    return kept


def _refuse(reason: str) -> NoReturn:
    raise ValidationError({FIELD: reason})
