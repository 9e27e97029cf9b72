"""What of a mail is stored for display (docs/mail-gateway.md).

The raw bytes are kept whole on the inbound-mail row, so everything here may be
lossy for display's sake: quoted history and signatures are stripped (in time
linear in the text, see `helpdesk.inbound.replies`), HTML goes through an allowlist
sanitizer (nh3) and is never rendered raw, and attachments over the limits
(`helpdesk.inbound.limits`: count, size each, size in all) are left out with a note —
they are still in the raw mail.
"""

from __future__ import annotations

from helpdesk import html, inputs
from helpdesk.inbound.limits import MailLimits
from helpdesk.inbound.parser import InboundMail
from helpdesk.inbound.replies import latest_reply
from helpdesk.services.tickets import MAX_SUBJECT, NewAttachment


def display_subject(mail: InboundMail) -> str:
    """The subject a ticket opened by the mail gets: one line, cut to what a ticket
    holds, and "" where that shows nothing, only spaces or invisible characters (a
    zero-width space), so the mail gets the stand-in an empty Subject gets
    (docs/mail-gateway.md, "What is stored"). Cut before it is judged: what is kept
    must show something."""
    return inputs.readable_line(mail.subject[:MAX_SUBJECT])


def display_text(mail: InboundMail) -> str:
    """The new text of the mail: quoted history and signature removed; "" where it
    has nothing to read (`inputs.nothing_to_read`: only invisible characters), as
    for a mail without text.

    Falls back to the whole text when stripping would leave nothing (a mail that
    is only a forwarded quote is still worth reading).
    """
    text = mail.text_body.strip()
    if inputs.nothing_to_read(text):
        return ""
    return latest_reply(text)


def sanitized_html(mail: InboundMail) -> str | None:
    return html.clean(mail.html_body) if mail.html_body else None


def attachments(mail: InboundMail, limits: MailLimits) -> tuple[list[NewAttachment], list[str]]:
    """Attachments to store, and a note for each one left out over the limits."""
    kept: list[NewAttachment] = []
    notes: list[str] = []
    total = 0
    beyond_count = mail.attachments[limits.attachments :]
    for item in mail.attachments[: limits.attachments]:
        size = len(item.data)
        if size > limits.attachment_bytes:
            notes.append(
                f"{item.filename} ({size} bytes) not stored: larger than "
                f"{limits.attachment_bytes} bytes; it is in the original mail."
            )
            continue
        if total + size > limits.attachments_total_bytes:
            notes.append(
                f"{item.filename} ({size} bytes) not stored: attachments exceed "
                f"{limits.attachments_total_bytes} bytes in total; it is in the "
                "original mail."
            )
            continue
        total += size
        kept.append(
            NewAttachment(item.filename, item.content_type, item.data, item.content_id, item.is_inline)
        )
    if len(beyond_count) == 1:
        notes.append(
            f"1 more attachment not stored: more than {limits.attachments} in one mail "
            "(MAX_ATTACHMENTS); it is in the original mail."
        )
    elif beyond_count:
        notes.append(
            f"{len(beyond_count)} more attachments not stored: more than "
            f"{limits.attachments} in one mail (MAX_ATTACHMENTS); they are in the "
            "original mail."
        )
    return kept, notes
