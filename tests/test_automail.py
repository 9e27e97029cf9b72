"""Auto-mail detection (RFC 3834): machines are ignored, people never are.

Headers are copied from what real clients and mail systems send; the corpus
bounces (../shared/corpus) are read with the standard library into InboundMail,
because parser.parse is written elsewhere.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import email.utils
from pathlib import Path

import pytest

from helpdesk.inbound.automail import (
    BODY_SCAN_CHARS,
    MAX_BOUNCED_IDS,
    detect,
    is_bounce,
    is_machine_address,
    original_message_ids,
    via_mailing_list,
)
from helpdesk.inbound.parser import Attachment, InboundMail

OWN = ["support@helpdesk.test", "billing@helpdesk.test"]
OWN_MSGID_DOMAINS = ["helpdesk.helpdesk.test"]
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def make_mail(
    *,
    headers: list[tuple[str, str]] | None = None,
    subject: str = "Printer on floor 3 is broken",
    from_address: str = "alice@customer.example",
    from_name: str = "Alice Example",
    text_body: str = "Hello, the printer jams on every page.\n\nAlice",
    content_type: str = "text/plain",
    message_id: str | None = "CAB1234567890@mail.gmail.com",
    attachments: list[Attachment] | None = None,
    in_reply_to: list[str] | None = None,
    references: list[str] | None = None,
) -> InboundMail:
    base = [
        ("from", f"{from_name} <{from_address}>"),
        ("to", "support@helpdesk.test"),
        ("subject", subject),
        ("message-id", f"<{message_id}>"),
    ]
    return InboundMail(
        raw=b"",
        message_id=message_id,
        in_reply_to=in_reply_to or [],
        references=references or [],
        subject=subject,
        from_address=from_address,
        from_name=from_name,
        headers=base + [(name.lower(), value) for name, value in headers or []],
        content_type=content_type,
        text_body=text_body,
        attachments=attachments or [],
    )


def check(mail: InboundMail) -> str | None:
    return detect(mail, own_addresses=OWN, own_message_id_domains=OWN_MSGID_DOMAINS)


def corpus_mail(name: str) -> InboundMail:
    """A corpus file as InboundMail, read with the standard library."""
    message = email.message_from_bytes((CORPUS / name).read_bytes(), policy=email.policy.compat32)
    from_name, from_address = email.utils.parseaddr(str(message.get("from", "")))
    text_parts: list[str] = []
    attachments: list[Attachment] = []

    def collect(part: email.message.Message) -> None:
        content_type = part.get_content_type()
        if content_type.startswith("message/") or content_type == "text/rfc822-headers":
            payload = part.get_payload()
            data = (
                b"".join(sub.as_bytes() for sub in payload)
                if isinstance(payload, list)
                else str(payload).encode()
            )
            attachments.append(Attachment("part", content_type, data))
        elif part.is_multipart():
            for sub in part.get_payload():
                collect(sub)
        elif content_type == "text/plain":
            text_parts.append((part.get_payload(decode=True) or b"").decode("latin-1"))

    collect(message)
    text_body = text_parts[0] if text_parts else ""
    message_id = str(message.get("message-id", "")).strip().strip("<>") or None
    return InboundMail(
        raw=b"",
        message_id=message_id,
        subject=str(message.get("subject", "")),
        from_address=from_address.lower(),
        from_name=from_name,
        headers=[(key.lower(), str(value)) for key, value in message.items()],
        content_type=message.get_content_type(),
        text_body=text_body,
        attachments=attachments,
    )


# --- people stay people ------------------------------------------------------


def test_ordinary_customer_mail_is_not_automatic() -> None:
    mail = make_mail(headers=[("X-Mailer", "Microsoft Outlook 16.0")])
    assert check(mail) is None
    assert not is_bounce(mail)


@pytest.mark.parametrize(
    "subject",
    [
        "Re: my auto-reply settings are broken",
        "Auto-reply settings broken after update",
        "Out of office replies don't work since Monday",
        "Automatic replies are sent twice",
        "Fwd: Undelivered Mail Returned to Sender",
        "RE: Automatic reply: [TKT-000123] Printer",
        "Mail delivery failed for our invoices, please help",
        "Question about returned mail",
        "Delivered: the package arrived broken",
        "Our failure notice emails are not arriving",
        "Undeliverable invoices - can you check?",
    ],
)
def test_people_writing_about_automatic_mail_are_not_flagged(subject: str) -> None:
    assert check(make_mail(subject=subject)) is None


def test_customer_forwarding_a_bounce_is_a_person() -> None:
    body = (
        "Hi, our mail to your sales team bounced, see below.\n\n"
        "---------- Forwarded message ---------\n"
        "This is the mail system at host mx.helpdesk.test.\n\n"
        "I'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients.\n"
    )
    mail = make_mail(subject="Fwd: Undelivered Mail Returned to Sender", text_body=body)
    assert check(mail) is None
    assert not is_bounce(mail)


def test_auto_submitted_no_is_a_person() -> None:
    assert check(make_mail(headers=[("Auto-Submitted", "no")])) is None
    assert check(make_mail(headers=[("Auto-Submitted", "No (sent by a human)")])) is None


def test_noreply_sender_alone_is_not_automatic() -> None:
    # A website contact form sends from noreply@ with the visitor in Reply-To.
    mail = make_mail(
        from_address="noreply@customer.example",
        from_name="Website",
        headers=[("Reply-To", "visitor@example.org")],
    )
    assert check(mail) is None


def test_outlook_x_auto_response_suppress_alone_is_a_person() -> None:
    # Exchange sets it on ordinary mail (e.g. to distribution lists); even "All".
    for value in ("All", "DR, OOF, AutoReply", "OOF"):
        mail = make_mail(
            subject="Re: my auto-reply settings are broken",
            headers=[("X-Auto-Response-Suppress", value), ("X-MS-Has-Attach", "")],
        )
        assert check(mail) is None, value


def test_x_autoreply_with_explicit_no_is_a_person() -> None:
    assert check(make_mail(headers=[("X-Autoreply", "no")])) is None
    assert check(make_mail(headers=[("X-Autorespond", "false")])) is None


def test_x_loop_naming_someone_else_is_not_a_loop() -> None:
    # procmail recipes stamp the forwarding user's own address.
    assert check(make_mail(headers=[("X-Loop", "alice@customer.example")])) is None


def test_message_id_in_a_parent_of_our_domain_is_not_ours() -> None:
    # Thunderbird writes the sender's domain into Message-IDs; only the exact
    # helpdesk domain means our own mail came back.
    assert check(make_mail(message_id="abc.123@helpdesk.test")) is None


def test_precedence_first_class_is_a_person() -> None:
    assert check(make_mail(headers=[("Precedence", "first-class")])) is None


# --- RFC 3834 and vendor headers -------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("auto-replied", "auto-submitted: auto-replied"),
        ("auto-generated", "auto-submitted: auto-generated"),
        ("Auto-Replied", "auto-submitted: auto-replied"),
        ('auto-replied; owner-email="bob@example.org"', "auto-submitted: auto-replied"),
        ("auto-notified (Sieve vacation)", "auto-submitted: auto-notified"),
    ],
)
def test_auto_submitted_other_than_no_is_automatic(value: str, reason: str) -> None:
    assert check(make_mail(headers=[("Auto-Submitted", value)])) == reason


@pytest.mark.parametrize("value", ["bulk", "junk", "list", "auto_reply", "Bulk"])
def test_precedence_bulk_junk_list_is_automatic(value: str) -> None:
    assert check(make_mail(headers=[("Precedence", value)])) == f"precedence: {value.lower()}"


def test_x_precedence_counts_like_precedence() -> None:
    assert check(make_mail(headers=[("X-Precedence", "bulk")])) == "precedence: bulk"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Autoreply", "yes"),
        ("X-Autorespond", "Vacation"),
        ("X-Autoresponse", ""),
        ("X-AutoReply-From", "bob@example.org"),
        ("X-Mail-Autoreply", "yes"),
        ("X-Autogenerated", "Reply"),
        ("X-FC-MachineGenerated", "true"),
    ],
)
def test_vendor_autoreply_headers_are_automatic(name: str, value: str) -> None:
    assert check(make_mail(headers=[(name, value)])) == f"{name.lower()} header"


def test_exchange_out_of_office() -> None:
    mail = make_mail(
        subject="Automatic reply: [TKT-000042] Printer on floor 3 is broken",
        from_address="bob@customer.example",
        from_name="Bob Example",
        text_body="I am out of the office until Monday with limited access to email.",
        headers=[
            ("Auto-Submitted", "auto-generated"),
            ("X-Auto-Response-Suppress", "All"),
            ("X-MS-Exchange-Inbox-Rules-Loop", "bob@customer.example"),
            ("Thread-Topic", "[TKT-000042] Printer on floor 3 is broken"),
        ],
        in_reply_to=["tkt-000042.abc@helpdesk.helpdesk.test"],
    )
    assert check(mail) == "auto-submitted: auto-generated"
    assert not is_bounce(mail)


def test_gmail_vacation_responder() -> None:
    mail = make_mail(
        subject="Re: [TKT-000042] Printer on floor 3 is broken",
        from_address="carol@gmail.com",
        from_name="Carol",
        text_body="Thanks for your mail, I'm travelling until the 12th.",
        headers=[("Auto-Submitted", "auto-replied")],
    )
    assert check(mail) == "auto-submitted: auto-replied"


def test_osticket_auto_reply() -> None:
    mail = make_mail(
        subject="Support Ticket Opened [#123456]",
        from_address="helpdesk@vendor.example",
        from_name="Vendor Support",
        headers=[
            ("Precedence", "auto_reply"),
            ("X-Autoreply", "yes"),
            ("X-Auto-Response-Suppress", "ALL, AutoReply"),
        ],
    )
    assert check(mail) == "precedence: auto_reply"


def test_zammad_auto_reply() -> None:
    mail = make_mail(
        subject="Thanks for your inquiry ([Ticket#31001])",
        from_address="support@vendor.example",
        from_name="Vendor",
        headers=[
            ("X-Loop", "yes"),
            ("Precedence", "bulk"),
            ("Auto-Submitted", "auto-generated"),
            ("X-Auto-Response-Suppress", "All"),
        ],
    )
    assert check(mail) == "x-loop"


def test_otrs_x_loop_true_alone_is_automatic() -> None:
    assert check(make_mail(headers=[("X-Loop", "true")])) == "x-loop"


# --- loops -----------------------------------------------------------------


@pytest.mark.parametrize(
    "sender",
    [
        "support@helpdesk.test",
        "Support@Helpdesk.Test",
        "support+TKT-000001@helpdesk.test",
        "billing@helpdesk.test",
        "support@\uff48\uff45\uff4c\uff50\uff44\uff45\uff53\uff4b.test",  # fullwidth: IDNA maps it to ours
    ],
)
def test_mail_from_our_own_address_is_a_loop(sender: str) -> None:
    assert check(make_mail(from_address=sender.lower())) == "own address"


def test_own_address_comparison_ignores_case_of_configuration() -> None:
    mail = make_mail(from_address="support@helpdesk.test")
    assert detect(mail, own_addresses=["SUPPORT@HELPDESK.TEST"], own_message_id_domains=[]) == "own address"


def test_our_own_message_id_coming_back_is_a_loop() -> None:
    mail = make_mail(message_id="tkt-000001.x9f@helpdesk.helpdesk.test")
    assert check(mail) == "own message-id domain"
    upper = make_mail(message_id="tkt-000001.x9f@HELPDESK.helpdesk.test")
    assert check(upper) == "own message-id domain"


@pytest.mark.parametrize(
    "value",
    [
        "support@helpdesk.test",
        "<support@helpdesk.test>",
        "Support+TKT-000009@helpdesk.test",
        "support@\uff48\uff45\uff4c\uff50\uff44\uff45\uff53\uff4b.test",  # IDNA maps it to ours
    ],
)
def test_x_loop_naming_our_address_is_a_loop(value: str) -> None:
    assert check(make_mail(headers=[("X-Loop", value)])) == "x-loop: own address"


# --- reports and bounces ---------------------------------------------------

POSTFIX_BOUNCE_BODY = """\
This is the mail system at host mx.customer.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

                   The mail system

<nobody@customer.example>: host mx.customer.example[192.0.2.1] said: 550 5.1.1
    User unknown (in reply to RCPT TO command)
"""


def postfix_bounce() -> InboundMail:
    return make_mail(
        subject="Undelivered Mail Returned to Sender",
        from_address="mailer-daemon@mx.customer.example",
        from_name="Mail Delivery System",
        content_type="multipart/report",
        headers=[
            ("Return-Path", "<>"),
            ("Auto-Submitted", "auto-replied"),
            (
                "Content-Type",
                "multipart/report; report-type=delivery-status;\n"
                '\tboundary="4F1B2C3D.1700000000/mx.customer.example"',
            ),
        ],
        text_body=POSTFIX_BOUNCE_BODY,
        message_id="20240101120000.4F1B2C3D@mx.customer.example",
        attachments=[
            Attachment(
                "details.txt",
                "message/delivery-status",
                b"Reporting-MTA: dns; mx.customer.example\n\n"
                b"Final-Recipient: rfc822; nobody@customer.example\n"
                b"Original-Recipient: rfc822;nobody@customer.example\n"
                b"Action: failed\nStatus: 5.1.1\n",
            ),
            Attachment(
                "message.eml",
                "message/rfc822",
                b"From: Helpdesk <support@helpdesk.test>\n"
                b"To: nobody@customer.example\n"
                b"Subject: [TKT-000042] Printer\n"
                b"Message-ID: <tkt-000042.r1.abc@helpdesk.helpdesk.test>\n\nHello\n",
            ),
        ],
    )


def test_postfix_bounce_is_automatic_and_a_bounce() -> None:
    mail = postfix_bounce()
    assert check(mail) == "auto-submitted: auto-replied"
    assert is_bounce(mail)
    assert original_message_ids(mail) == ["tkt-000042.r1.abc@helpdesk.helpdesk.test"]


def test_delivery_status_report_without_other_signals() -> None:
    mail = make_mail(
        content_type="multipart/report",
        headers=[("Content-Type", 'multipart/report; report-type="delivery-status"; boundary=x')],
    )
    assert check(mail) == "delivery status report"
    assert is_bounce(mail)


def test_read_receipt_is_automatic_but_not_a_bounce() -> None:
    mail = make_mail(
        subject="Read: [TKT-000042] Printer",
        content_type="multipart/report",
        headers=[
            (
                "Content-Type",
                'multipart/report; report-type=disposition-notification; boundary="----=_NextPart_000"',
            )
        ],
    )
    assert check(mail) == "disposition notification"
    assert not is_bounce(mail)


def test_delay_notice_is_automatic_but_not_a_bounce() -> None:
    mail = make_mail(
        subject="Delivery Status Notification (Delay)",
        from_address="mailer-daemon@googlemail.com",
        from_name="Mail Delivery Subsystem",
        content_type="multipart/report",
        headers=[("Content-Type", "multipart/report; report-type=delivery-status; boundary=b")],
        attachments=[
            Attachment(
                "status",
                "message/delivery-status",
                b"Reporting-MTA: dns; googlemail.com\n\n"
                b"Final-Recipient: rfc822; slow@customer.example\n"
                b"Action: delayed\nStatus: 4.4.1\n",
            )
        ],
    )
    assert check(mail) == "delivery status report"
    assert not is_bounce(mail)


def test_delay_subject_without_report_is_not_a_bounce() -> None:
    mail = make_mail(
        subject="Warning: could not send message for past 4 hours",
        from_address="mailer-daemon@mx.customer.example",
        from_name="Mail Delivery Subsystem",
    )
    assert check(mail) == "bounce sender mailer-daemon@mx.customer.example"
    assert not is_bounce(mail)


def test_empty_return_path_is_automatic() -> None:
    assert check(make_mail(headers=[("Return-Path", "<>")])) == "empty return-path"
    assert check(make_mail(headers=[("Return-Path", "<<>>")])) == "empty return-path"
    assert check(make_mail(headers=[("Return-Path", "<alice@customer.example>")])) is None


@pytest.mark.parametrize(
    "sender",
    [
        "MAILER-DAEMON@mx.customer.example",
        "postmaster@customer.example",
        "Postmaster@x.example",
    ],
)
def test_bounce_senders_are_automatic(sender: str) -> None:
    mail = make_mail(from_address=sender.lower(), subject="Hello")
    assert check(mail) == f"bounce sender {sender.lower()}"
    assert is_bounce(mail)


def test_mailer_daemon_display_name_without_address() -> None:
    mail = make_mail(from_address="", from_name="MAILER DAEMON", subject="Banned file")
    assert check(mail) == "bounce sender MAILER DAEMON"


def test_qmail_failure_notice() -> None:
    body = (
        "Hi. This is the qmail-send program at mail.customer.example.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        "<nobody@customer.example>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n"
        "--- Below this line is a copy of the message.\n\n"
        "Return-Path: <support@helpdesk.test>\n"
        "Message-ID: <tkt-000007.r2.def@helpdesk.helpdesk.test>\n"
        "Subject: [TKT-000007] Your request\n"
    )
    mail = make_mail(
        subject="failure notice",
        from_address="mailer-daemon@mail.customer.example",
        from_name="",
        text_body=body,
    )
    assert check(mail) == "bounce sender mailer-daemon@mail.customer.example"
    assert is_bounce(mail)
    assert original_message_ids(mail) == ["tkt-000007.r2.def@helpdesk.helpdesk.test"]


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Delivery Status Notification", "delivery notice subject"),  # Exchange, no outcome in it
        ("Delivery Status Notification (Delay)", "delivery notice subject"),
        ("Delivery Status Notification (Success)", "delivery notice subject"),
        ("Delayed Mail (still being retried)", "delivery notice subject"),
        ("Delivery status notification settings are wrong", None),  # a person
    ],
)
def test_delivery_notice_subjects_without_headers_are_automatic_not_bounces(subject: str, expected) -> None:
    """A bare "Delivery Status Notification" opened a ticket and was acknowledged."""
    mail = make_mail(subject=subject, from_address="it@customer.example", from_name="IT")
    assert check(mail) == expected
    assert not is_bounce(mail)


@pytest.mark.parametrize(
    "subject",
    [
        "Undeliverable: [TKT-000042] Printer",
        "Unzustellbar: [TKT-000042] Drucker",
        "Non remis : [TKT-000042] Imprimante",
        "Undelivered Mail Returned to Sender",
        "Delivery Status Notification (Failure)",
        "Mail delivery failed: returning message to sender",
        "Returned mail: see transcript for details",
        "DELIVERY FAILURE: User nobody (nobody@customer.example) not listed in Domino Directory",
        "failure notice",
        "Delivery Notification: Delivery has failed",
    ],
)
def test_bounce_subjects_without_headers(subject: str) -> None:
    mail = make_mail(subject=subject, from_address="it@customer.example", from_name="IT")
    assert check(mail) == "bounce subject"
    assert is_bounce(mail)


@pytest.mark.parametrize(
    "subject",
    [
        "Automatic reply: [TKT-000042] Printer",
        "AutoReply: Printer",
        "Auto-Reply: Printer",
        "Auto Response: Printer",
        "Out of Office: Printer",
        "Out of Office AutoReply: Printer",
        "Out of office",
        "Abwesenheitsnotiz: [TKT-000042] Drucker",
        "Automatische Antwort: [TKT-000042] Drucker",
        "Réponse automatique : [TKT-000042] Imprimante",
        "Respuesta automática: [TKT-000042] Impresora",
        "Automatisch antwoord: [TKT-000042] Printer",
    ],
)
def test_out_of_office_subjects_without_headers(subject: str) -> None:
    mail = make_mail(subject=subject, from_address="bob@customer.example")
    assert check(mail) == "out-of-office subject"
    assert not is_bounce(mail)


def test_out_of_office_phrase_later_in_subject_needs_x_auto_response_suppress() -> None:
    subject = "[EXTERNAL] Automatic reply: [TKT-000042] Printer"
    assert check(make_mail(subject=subject)) is None
    suppressed = make_mail(subject=subject, headers=[("X-Auto-Response-Suppress", "All")])
    assert check(suppressed) == "out-of-office subject with x-auto-response-suppress"


def test_bounce_body_needs_a_mail_system_sender() -> None:
    body = (
        "Delivery to the following recipient failed permanently:\n\n"
        "     nobody@customer.example\n\n"
        "Technical details of permanent failure:\n"
        "The email account that you tried to reach does not exist.\n"
    )
    person = make_mail(subject="Can you help with this?", text_body=body)
    assert check(person) is None
    assert not is_bounce(person)

    system = make_mail(
        subject="Message not delivered",
        text_body=body,
        from_address="bounces@mail.customer.example",
        from_name="Mail Delivery",
    )
    assert check(system) == "bounce text"
    assert is_bounce(system)


# --- mailing lists ---------------------------------------------------------


def test_a_person_writing_through_a_list_is_a_person_without_acknowledgment() -> None:
    mail = make_mail(headers=[("List-Id", "Users of Foo <users.lists.foo.example>")])
    assert check(mail) is None
    assert via_mailing_list(mail) == "users.lists.foo.example"
    assert via_mailing_list(make_mail()) is None


def test_list_id_with_list_unsubscribe_is_list_traffic_not_a_newsletter() -> None:
    mail = make_mail(
        headers=[
            ("List-Id", "<sales.isp.example>"),
            ("List-Unsubscribe", "<mailto:sales+unsubscribe@isp.example>"),
        ]
    )
    assert check(mail) is None
    assert via_mailing_list(mail) == "sales.isp.example"


def test_list_id_with_bulk_precedence_is_still_bulk() -> None:
    mail = make_mail(headers=[("List-Id", "<announce.isp.example>"), ("Precedence", "list")])
    assert check(mail) == "precedence: list"


def test_newsletter_with_list_unsubscribe_is_bulk() -> None:
    mail = make_mail(
        headers=[
            ("List-Unsubscribe", "<mailto:unsub@news.example>, <https://news.example/u/abc>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]
    )
    assert check(mail) == "bulk mail (list-unsubscribe)"


# --- original_message_ids --------------------------------------------------


def test_original_message_ids_from_headers_attachment_and_references() -> None:
    mail = make_mail(
        subject="Undeliverable: [TKT-000042] Printer",
        content_type="multipart/report",
        message_id="bounce-1@mx.customer.example",
        in_reply_to=["tkt-000042.a@helpdesk.helpdesk.test"],
        references=["tkt-000040.z@helpdesk.helpdesk.test", "tkt-000042.a@helpdesk.helpdesk.test"],
        attachments=[
            Attachment(
                "headers.txt",
                "text/rfc822-headers",
                b"From: support@helpdesk.test\r\nMessage-ID:\r\n <tkt-000042.a@helpdesk.helpdesk.test>\r\n",
            )
        ],
        text_body="Original message:\n  Message-ID: <bounce-1@mx.customer.example>\n",
    )
    assert original_message_ids(mail) == [
        "tkt-000042.a@helpdesk.helpdesk.test",
        "tkt-000040.z@helpdesk.helpdesk.test",
    ]


def test_a_forged_bounce_naming_thousands_of_ids_costs_a_bounded_number() -> None:
    """Anyone can write a bounce; each ID it names costs ingest a database lookup, and
    the old code read the whole body and dropped repeats with a list (quadratic: 40,000
    IDs took 7 s). Only the first BODY_SCAN_CHARS are read, at most MAX_BOUNCED_IDS
    come back, in order, without repeats."""
    lines = "".join(f"Message-ID: <{n % 30000}@x.example>\n" for n in range(60_000))
    mail = make_mail(
        subject="Undelivered Mail Returned to Sender",
        in_reply_to=["tkt-000042.a@helpdesk.helpdesk.test"],
        text_body="Message-ID: <first@x.example>\nMessage-ID: <first@x.example>\n" + lines,
    )
    found = original_message_ids(mail)
    assert found[:3] == ["first@x.example", "0@x.example", "1@x.example"]
    assert len(found) == len(set(found)) == MAX_BOUNCED_IDS
    late = "x" * BODY_SCAN_CHARS + "\nMessage-ID: <late@x.example>\n"
    deep = make_mail(subject="failure notice", text_body=late)
    assert original_message_ids(deep) == []


def test_original_message_ids_empty_when_nothing_quoted() -> None:
    assert original_message_ids(make_mail(subject="failure notice", text_body="gone")) == []


# --- real bounces from the shared corpus -----------------------------------


def test_corpus_qmail_delivered_mailsite_bounce() -> None:
    mail = corpus_mail("mail-parser__tests_mails_mail_malformed_2")
    assert check(mail) == "delivery status report"
    # The DSN says Action: failed (mailbox full, reported as 4.2.2).
    assert is_bounce(mail)
    assert original_message_ids(mail) == ["004801d1fc84$01c934ac$b247f0b7$@infospacemail.com"]


def test_corpus_sims_bounce_relayed_through_a_list() -> None:
    mail = corpus_mail("RustPython__Lib_test_test_email_data_msg_16.txt")
    assert check(mail) == "precedence: bulk"
    assert is_bounce(mail)
    assert "002001c144a6$8752e060$56104586@oxy.edu" in original_message_ids(mail)


def test_corpus_amavis_report_from_mailer_daemon_with_empty_address() -> None:
    mail = corpus_mail("RustPython__Lib_test_test_email_data_msg_43.txt")
    assert check(mail) == "delivery status report"
    assert is_bounce(mail)


def test_corpus_plain_mail_is_a_person() -> None:
    mail = corpus_mail("RustPython__Lib_test_test_email_data_msg_01.txt")
    assert check(mail) is None
    assert not is_bounce(mail)


# --- outbound helper --------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("noreply@vendor.example", True),
        ("No-Reply@vendor.example", True),
        ("donotreply+x@vendor.example", True),
        ("MAILER-DAEMON@mx.example", True),
        ("postmaster@example.org", True),
        ("bounces@lists.example", True),
        ("alice@customer.example", False),
        ("noreplyhelp@customer.example", False),
        # A no-reply address with more after a separator: no person writes from it.
        ("noreply-alerts@bank.example", True),
        ("no-reply.billing@isp.example", True),
        ("do_not_reply_2024@shop.example", True),
        ("mailer-daemon.relay1@mx.example", True),
        # A word that merely starts like one, or a person's name after a machine word, stays mailable.
        ("noreplies@customer.example", False),
        ("bounce.fitness@gym.example", False),
        ("mailer.john@customer.example", False),
        # The no-reply words of Spanish, Portuguese, French and Italian, as punctuated
        # and followed by more; a person's mailbox that merely holds such a word is mailed.
        ("No-Responder@banco.example", True),
        ("noresponda_avisos@tienda.example", True),
        ("no.contestar@aseguradora.example", True),
        ("nao-responda@loja.example", True),
        ("ne_pas_repondre@banque.example", True),
        ("nonrispondere@banca.example", True),
        ("responder@customer.example", False),
        ("noresponderemos@customer.example", False),
        # Mailing-list robots, which read mail as commands; the list's people (its
        # owner, an admin) and a mailbox merely named for lists or requests are mailed.
        ("majordomo@lists.example", True),
        ("ListServ@lists.example", True),
        ("sympa@lists.example", True),
        ("users-request@lists.example", False),  # `change-request@` is a team's mailbox
        ("users-bounces+ann=example.com@lists.example", True),
        ("users-confirm+4f2a9c@lists.example", True),
        ("lists@customer.example", False),
        ("request@customer.example", False),
        ("users-owner@lists.example", False),
        ("product-owner@customer.example", False),
        ("it-admin@customer.example", False),
        ("lyris@customer.example", False),
    ],
)
def test_is_machine_address(address: str, expected: bool) -> None:
    assert is_machine_address(address) is expected


# --- reports and list notices in other languages and forms (issue: mail fidelity) ---


@pytest.mark.parametrize(
    "address",
    [
        "post_master@mail.example.ne.jp",
        "Mailer_Daemon@x.example",
        "mailer.daemon@x.example",
        "Post-Master@x.example",
    ],
)
def test_bounce_senders_however_punctuated(address: str) -> None:
    assert check(make_mail(from_address=address, from_name="")) == f"bounce sender {address}"


@pytest.mark.parametrize(
    "address", ["no.reply@x.example", "do_not_reply@x.example", "NoReply@x.example", "not-reply@x.example"]
)
def test_machine_addresses_however_punctuated_are_never_mailed(address: str) -> None:
    assert is_machine_address(address)
    assert not is_machine_address("noreen@x.example")


@pytest.mark.parametrize(
    "subject",
    [
        "配信不能: [TKT-000012] ご依頼を受け付けました",
        "Недоставлено: Счёт",
        "Не доставлено: Счёт",
        "无法传递: 您的请求",
        "Niedostarczalne: Faktura",
        "Kan inte levereras: Faktura",
        "Não é possível entregar: Fatura",
        "メール配信エラー",
    ],
)
def test_bounce_subjects_of_other_languages(subject: str) -> None:
    assert check(make_mail(subject=subject)) == "bounce subject"


@pytest.mark.parametrize(
    "subject",
    ["配信不能のお知らせについて質問です", "Kan ikke leveres i dag?", "No se puede entregar el router hoy"],
)
def test_people_using_the_same_words_in_a_sentence_stay_people(subject: str) -> None:
    assert check(make_mail(subject=subject)) is None


@pytest.mark.parametrize(
    "body",
    [
        "お客様が送信されたメールは、以下の宛先に配信できませんでした。",
        "很抱歉，您发送的邮件无法送达以下收件人",
        "Сообщение не может быть доставлено следующим получателям",
        "Ihre Nachricht konnte nicht zugestellt werden.",
        "Votre message n'a pas pu être remis aux destinataires suivants.",
        "Su mensaje no se pudo entregar a los siguientes destinatarios.",
        "Sua mensagem não pôde ser entregue.",
    ],
)
def test_report_words_in_other_languages_count_from_a_mail_system(body: str) -> None:
    system = make_mail(subject="Notice", text_body=body, from_address="no-reply@mail.example", from_name="")
    assert check(system) == "bounce text"
    assert is_bounce(system)
    person = make_mail(subject="Notice", text_body=body)
    assert check(person) is None


def test_a_web_form_from_noreply_with_the_visitor_in_reply_to_is_a_person() -> None:
    body = "Mensaje: el módem nuevo no se pudo entregar porque no había nadie en casa."
    form = make_mail(
        subject="Nuevo mensaje del formulario",
        text_body=body,
        from_address="noreply@isp.example",
        from_name="Formulario web",
        headers=[("Reply-To", "Rosa <rosa@hogar.example>")],
    )
    assert check(form) is None
    alone = make_mail(
        subject="Nuevo mensaje del formulario",
        text_body=body,
        from_address="noreply@isp.example",
        from_name="Formulario web",
    )
    assert check(alone) == "bounce text"


def test_report_words_are_read_near_the_top_only() -> None:
    deep = "x" * BODY_SCAN_CHARS + "\nkonnte nicht zugestellt werden"
    assert (
        check(make_mail(subject="Notice", text_body=deep, from_address="no-reply@mail.example", from_name=""))
        is None
    )


class _Unsearchable:
    def search(self, *args: object) -> None:
        raise AssertionError("a person's mail was searched for report phrases")


def test_a_persons_mail_is_never_searched_for_report_phrases(monkeypatch: pytest.MonkeyPatch) -> None:
    """The phrases count only beside a mail-system sender or a bounce subject, so a
    person's body is not read for them: that search cost 1.6 ms per 4 KB mail."""
    from helpdesk.inbound import automail

    monkeypatch.setattr(automail, "_BOUNCE_BODY", _Unsearchable())
    monkeypatch.setattr(automail, "_LIST_NOTICE_BODY", _Unsearchable())
    long_body = "Hello, the printer jams on every page. " * 2000
    assert check(make_mail(text_body=long_body)) is None
    assert not is_bounce(make_mail(text_body=long_body))


@pytest.mark.parametrize(
    ("sender", "body"),
    [
        ("soporte-bounces@listas.example", "Post by non-member to a members-only list"),
        ("clientes-owner@listas.example", "No tiene permiso para enviar mensajes a esta lista"),
        ("owner-avisos@listas.example", "You are not allowed to post to this mailing list"),
        ("sympa@listas.example", "You are not allowed to send messages to list x@listas.example"),
        ("ventas-request@listas.example", "Sorry, only subscribers may post to this list."),
        ("mailman@listas.example", "The message is not from a list member"),
    ],
)
def test_list_software_refusing_a_post_is_automatic(sender: str, body: str) -> None:
    assert (
        check(make_mail(subject="Rejected", text_body=body, from_address=sender, from_name=""))
        == "mailing-list notice"
    )
    # The same words from a person (a customer quoting the notice) are a request.
    assert check(make_mail(subject="Rejected", text_body=body)) is None


@pytest.mark.parametrize(
    "subject",
    ["Your message to Soporte-clientes awaits moderator approval", "Request to mailing list Avisos rejected"],
)
def test_list_software_subjects_are_automatic(subject: str) -> None:
    assert check(make_mail(subject=subject)) == "mailing-list notice"
    assert check(make_mail(subject="Re: " + subject)) is None


def test_exims_failed_recipients_header_marks_a_bounce() -> None:
    mail = make_mail(subject="Notice", headers=[("X-Failed-Recipients", "bob@example.com")])
    assert check(mail) == "x-failed-recipients header"
    assert is_bounce(mail)
