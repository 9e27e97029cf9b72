"""Files on staff replies (docs/web.md; docs/outbound-mail.md): uploaded in the
portal's reply box or to the API as multipart/form-data, within the limits inbound
mail has, stored under a safe name, downloaded as bytes only, and mailed with a
public reply — never with an internal note."""

from __future__ import annotations

import hashlib
from io import BytesIO
from urllib.parse import quote, unquote

import pytest
from sqlalchemy import func, select

from helpdesk.extensions import db
from helpdesk.inbound.parser import MAX_FILENAME_LENGTH
from helpdesk.models import Attachment, Message, OutboxMessage
from tests.support.database import open_ticket
from tests.support.outbox import deliver, text_of
from tests.support.web_process import WebServer, portal_login

NUMBER = "TKT-000001"
PAGE = f"/tickets/{NUMBER}"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4  # binary, every byte value
CSV = "fecha;velocidad\n2026-03-02;12 Mb/s\n".encode()


def _files(*items: tuple[bytes, str, str]) -> list[tuple[BytesIO, str, str]]:
    return [(BytesIO(data), name, content_type) for data, name, content_type in items]


def _api_reply(api, files, **fields: str):  # type: ignore[no-untyped-def]
    return api.post(f"/tickets/{NUMBER}/replies", data={"body": "Adjunto.", **fields, "attachments": files})


def _portal_reply(portal, files, **fields: str):  # type: ignore[no-untyped-def]
    form = {"body": "Adjunto.", "kind": "reply", **fields, "csrf_token": portal.token(PAGE)}
    return portal.client.post(f"{PAGE}/reply", data={**form, "attachments": files})


def _stored() -> list[tuple[str, str, int, bytes]]:
    rows = db.session.execute(select(Attachment).order_by(Attachment.id)).scalars()
    return [(row.filename, row.content_type, row.size, row.data) for row in rows]


def _counts() -> tuple[int, int, int]:
    """Messages, attachments and outbox rows: what a refused reply must leave as it was."""
    return tuple(  # type: ignore[return-value]
        db.session.execute(select(func.count()).select_from(model)).scalar_one()
        for model in (Message, Attachment, OutboxMessage)
    )


# -- upload and download -------------------------------------------------------------------------


def test_files_from_the_portal_are_stored_on_the_reply_and_downloaded_as_bytes(portal, service):
    open_ticket(service)
    answer = _portal_reply(
        portal, _files((PDF, "factura.pdf", "application/pdf"), (CSV, "test.csv", "text/csv"))
    )
    assert answer.status_code == 302
    message = db.session.execute(select(Message).order_by(Message.id.desc())).scalars().first()
    assert (message.kind, message.body) == ("reply", "Adjunto.")
    assert [(a.filename, a.content_type, a.size, a.sha256) for a in message.attachments] == [
        ("factura.pdf", "application/pdf", len(PDF), hashlib.sha256(PDF).hexdigest()),
        ("test.csv", "text/csv", len(CSV), hashlib.sha256(CSV).hexdigest()),
    ]
    page = portal.get(PAGE).get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in page and 'type="file" multiple' in page
    first = message.attachments[0]
    assert f'<a href="/attachments/{first.id}">factura.pdf</a>' in page
    download = portal.get(f"/attachments/{first.id}")
    assert download.data == PDF
    assert download.mimetype == "application/octet-stream"  # the uploaded type is not trusted
    assert download.headers["Content-Disposition"] == "attachment; filename=factura.pdf"
    assert download.headers["X-Content-Type-Options"] == "nosniff"


def test_files_over_the_api_come_as_multipart_and_json_still_works(api, portal, service):
    open_ticket(service)
    answer = _api_reply(api, _files((PDF, "factura.pdf", "text/html")), internal="true")
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    assert (body["kind"], body["body"]) == ("note", "Adjunto.")
    (item,) = body["attachments"]
    assert (item["filename"], item["content_type"], item["size"]) == ("factura.pdf", "text/html", len(PDF))
    download = portal.get(f"/attachments/{item['id']}")
    assert download.data == PDF and download.mimetype == "application/octet-stream"
    plain = api.post(f"/tickets/{NUMBER}/replies", {"body": "Sin archivos"})
    assert plain.status_code == 201 and plain.get_json()["attachments"] == []
    details = api.get(f"/tickets/{NUMBER}").get_json()
    assert [len(m["attachments"]) for m in details["messages"]] == [0, 1, 0]


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({}, "body", "is required"),
        ({"internal": "yes"}, "internal", "must be true or false"),
        ({"cc": "x@example.com"}, "cc", "is not a known field"),
        ({"other": (b"x", "x.txt")}, "other", "is not a known file field"),
    ],
)
def test_a_bad_multipart_reply_is_a_422_naming_the_field(api, service, fields, field, message):
    open_ticket(service)
    before = _counts()
    extra = {
        name: (BytesIO(value[0]), value[1]) if isinstance(value, tuple) else value
        for name, value in fields.items()
    }
    data = {"body": "Adjunto.", "attachments": _files((CSV, "a.csv", "text/csv")), **extra}
    if field == "body":
        del data["body"]
    answer = api.post(f"/tickets/{NUMBER}/replies", data=data)
    assert answer.status_code == 422
    assert answer.get_json()["error"]["fields"][field] == message
    assert _counts() == before


def _multipart(*parts: tuple[bytes, bytes]) -> bytes:
    """A multipart/form-data body as a hostile client may write it (boundary `B`):
    each part's header lines and its bytes, not necessarily UTF-8."""
    body = b"".join(b"--B\r\n" + head + b"\r\n\r\n" + value + b"\r\n" for head, value in parts)
    return body + b"--B--\r\n"


def _field(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    return b'Content-Disposition: form-data; name="' + name + b'"', value


UNREADABLE = {
    "body not UTF-8": [_field(b"body", b"caf\xe9")],
    "a name not UTF-8": [_field(b"body", b"Adjunto."), _field(b"intern\xe9l", b"true")],
    "a filename not UTF-8": [
        _field(b"body", b"Adjunto."),
        (b'Content-Disposition: form-data; name="attachments"; filename="f\xe9.txt"', b"data"),
    ],
}


@pytest.mark.parametrize("parts", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_a_multipart_reply_that_cannot_be_read_exactly_is_a_400_and_nothing_is_stored(api, service, parts):
    """Werkzeug decoded a text part with U+FFFD for each bad byte (stored so) and,
    for a header it could not decode, dropped the whole form: 422 "body is required"
    for a body that was sent. Either is now 400, as malformed JSON is."""
    open_ticket(service)
    before = _counts()
    answer = api.post(
        f"/tickets/{NUMBER}/replies", data=_multipart(*parts), content_type="multipart/form-data; boundary=B"
    )
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json()["error"]["code"] == "invalid_form"
    assert _counts() == before


def test_a_portal_form_that_cannot_be_read_exactly_is_a_400_page(portal, service):
    """The reply box (multipart) stored U+FFFD for bytes not UTF-8; a form sent
    urlencoded kept `%E9` as those three characters. Both are a 400 page now."""
    open_ticket(service)
    before = _counts()
    token = portal.token(PAGE).encode()
    multipart = portal.client.post(
        f"{PAGE}/reply",
        data=_multipart(_field(b"csrf_token", token), _field(b"kind", b"reply"), _field(b"body", b"caf\xe9")),
        content_type="multipart/form-data; boundary=B",
    )
    urlencoded = portal.client.post(
        f"{PAGE}/reply",
        data=b"csrf_token=" + token + b"&kind=reply&body=caf%E9",
        content_type="application/x-www-form-urlencoded",
    )
    for answer in (multipart, urlencoded):
        assert answer.status_code == 400
        assert "The form could not be read" in answer.get_data(as_text=True)
    assert _counts() == before


# -- limits --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "files", "reason"),
    [
        (
            {"MAX_ATTACHMENT_BYTES": 1000},
            [(b"x" * 1001, "big.bin", "application/octet-stream")],
            "big.bin is 1,001 bytes; a file may have at most 1,000",
        ),
        (
            {"MAX_ATTACHMENTS_TOTAL_BYTES": 1500},
            [(b"x" * 1000, "a.bin", "application/octet-stream"), (b"y" * 1000, "b.bin", "image/png")],
            "the files have 2,000 bytes together; at most 1,500 in all",
        ),
        (
            {"MAX_ATTACHMENTS": 2},
            [(b"1", "1.txt", "text/plain"), (b"2", "2.txt", "text/plain"), (b"3", "3.txt", "text/plain")],
            "at most 2 files may be attached to one message",
        ),
    ],
    ids=["too large", "too large together", "too many"],
)
def test_files_over_the_mail_limits_are_refused_and_nothing_is_stored(
    app, api, portal, service, config, files, reason
):
    open_ticket(service)
    app.config.update(config)
    before = _counts()
    answer = _api_reply(api, _files(*files))
    assert answer.status_code == 422
    assert answer.get_json()["error"]["fields"] == {"attachments": reason}
    assert _counts() == before
    refused = _portal_reply(portal, _files(*files), body="Mi respuesta escrita")
    assert refused.status_code == 422
    page = refused.get_data(as_text=True)
    assert reason in page
    assert "Mi respuesta escrita</textarea>" in page  # what was typed is not lost
    assert _counts() == before


def test_staff_replies_may_carry_the_attachments_limit_nothing_else_may(app, api, portal, service, client):
    """MAX_REQUEST_BYTES bounds every body; a reply with files by a signed-in staff
    member may add MAX_ATTACHMENTS_TOTAL_BYTES to it. Anyone else, and every other
    route, is refused (413) before the body is read."""
    open_ticket(service)
    app.config.update(MAX_CONTENT_LENGTH=4000, MAX_ATTACHMENT_BYTES=6000, MAX_ATTACHMENTS_TOTAL_BYTES=6000)
    file = (b"x" * 5000, "big.bin", "application/octet-stream")
    assert _api_reply(api, _files(file)).status_code == 201
    assert _portal_reply(portal, _files(file)).status_code == 302
    assert [row[2] for row in _stored()] == [5000, 5000]
    before = _counts()
    over = (b"x" * 10_500, "bigger.bin", "application/octet-stream")  # past 4000 + 6000
    answer = _api_reply(api, _files(over))
    assert answer.status_code == 413
    assert answer.get_json()["error"]["code"] == "request_entity_too_large"
    assert _portal_reply(portal, _files(over)).status_code == 413
    status = portal.client.post(
        f"{PAGE}/status", data={"status": "open", "note": "x" * 5000, "csrf_token": portal.token(PAGE)}
    )
    assert status.status_code == 413
    token = portal.token(PAGE)
    portal.client.post("/logout", data={"csrf_token": token})
    anonymous = client.post(
        f"{PAGE}/reply", data={"body": "Hola", "csrf_token": token, "attachments": _files(file)}
    )
    assert anonymous.status_code == 413
    forged = client.post(
        f"/api/v1/tickets/{NUMBER}/replies",
        data={"body": "Hola", "attachments": _files(file)},
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert forged.status_code == 401
    assert _counts() == before


def test_the_reply_box_names_the_limits_it_takes(portal, service):
    """The reply box said "1 MB each, 1 MB in all" (each limit capped by
    MAX_REQUEST_BYTES, the bound before staff replies got room for files) while it
    took 10 MiB each and 20 MiB in all (files and customer pages review)."""
    open_ticket(service)
    page = portal.get(PAGE).get_data(as_text=True)
    assert "(optional; up to 100 files, 10.5 MB each, 21 MB in all)" in page


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("../../etc/passwd", "passwd"),
        ("fact\x00ura.pdf", "factura.pdf"),
        ("factura\u202efdp.exe", "facturafdp.exe"),  # a right-to-left override hides the real extension
        ("x" * 300 + ".pdf", "x" * (MAX_FILENAME_LENGTH - 4) + ".pdf"),
        ("../", "attachment-1.txt"),
        ("a<b>:c|?*.txt", "a_b__c___.txt"),
    ],
    ids=["traversal", "nul", "rtl override", "300 characters", "no name left", "reserved characters"],
)
def test_a_hostile_filename_is_stored_safe(api, service, name, stored):
    open_ticket(service)
    answer = _api_reply(api, _files((b"data", name, "text/plain")))
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["attachments"][0]["filename"] == stored
    assert _stored() == [(stored, "text/plain", 4, b"data")]


# -- mail ----------------------------------------------------------------------------------------


def test_a_public_replys_files_are_mailed_with_it(app, api, portal, service, sink):
    open_ticket(service, cc=[("bob@example.com", "Bob")])
    (_ack,) = deliver(app, sink)
    answer = _portal_reply(
        portal,
        _files(
            (PDF, "factura marzo.pdf", "application/pdf"),
            (CSV, "velocidad ñ.csv", "text/csv"),
            (b"<html>", "page.html", "multipart/mixed"),
        ),
        body="Te envío la factura.",
    )
    assert answer.status_code == 302
    mails = deliver(app, sink)[1:]
    assert sorted(mail["To"] for mail in mails) == ["Ann Example <ann@example.com>", "Bob <bob@example.com>"]
    for mail in mails:
        assert "Te envío la factura." in text_of(mail)
        parts = [
            (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
            for part in mail.iter_attachments()
        ]
        assert parts == [
            ("factura marzo.pdf", "application/pdf", PDF),
            ("velocidad ñ.csv", "text/csv", CSV),
            ("page.html", "application/octet-stream", b"<html>"),  # a structural type is no file's type
        ]


def test_an_internal_notes_files_are_never_mailed(app, api, portal, service, sink):
    open_ticket(service)
    (_ack,) = deliver(app, sink)
    assert (
        _portal_reply(portal, _files((PDF, "interno.pdf", "application/pdf")), kind="note").status_code == 302
    )
    assert (
        _api_reply(api, _files((PDF, "interno.pdf", "application/pdf")), internal="true").status_code == 201
    )
    assert len(_stored()) == 2
    assert db.session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one() == 1  # the ack
    assert len(deliver(app, sink)) == 1  # still only the acknowledgment


def test_a_file_named_in_any_script_downloads_under_its_name_through_gunicorn(
    database_url, portal, service, agent, tmp_path
):
    """The name went into Content-Disposition as raw text: gunicorn refused a name
    outside Latin-1 ('Presupuesto – 2026.pdf', as Word writes an en dash; '請求書.pdf')
    with a 500, and a Latin-1 one ('résumé.pdf') went out as bytes no browser reads
    as UTF-8, so it was saved as the attachment's id (found by review; Flask's test
    client never encodes headers). The name is sent as RFC 6266 asks: an ASCII
    `filename` and the whole name in `filename*`."""
    names = ["factura_año.pdf", "Presupuesto – 2026.pdf", "請求書.pdf", "résumé.pdf", "plain.pdf"]
    open_ticket(service)
    answer = _portal_reply(portal, _files(*((PDF, name, "application/pdf") for name in names)))
    assert answer.status_code == 302
    stored = {row.filename: row.id for row in db.session.execute(select(Attachment)).scalars()}
    assert sorted(stored) == sorted(names)
    email = agent.email
    db.session.rollback()  # on SQLite an open transaction holds the write lock gunicorn needs
    server = WebServer(database_url, tmp_path)
    try:
        browser = portal_login(server.base, email, "agent-password-1")
        for name, attachment_id in stored.items():
            with browser.open(f"{server.base}/attachments/{attachment_id}") as download:
                assert download.status == 200, name
                assert download.read() == PDF
                disposition = download.headers["Content-Disposition"]
            assert disposition.isascii(), disposition
            if name.isascii():
                assert disposition == f"attachment; filename={name}"
            else:
                assert f"filename*=UTF-8''{quote(name)}" in disposition, disposition
                assert "filename=.pdf" not in disposition  # an ASCII name for old clients too
                assert unquote(disposition.split("filename*=UTF-8''")[1]) == name
    finally:
        server.stop()
