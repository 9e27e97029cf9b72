"""One rule for what an email address is (docs/mail-gateway.md, helpdesk.addresses): the
gateway reads exactly the addresses the TicketsService, the API, the portal and
the staff and sender administration accept, and every one of them refuses the
rest with the same words."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from helpdesk import addresses
from helpdesk.errors import Conflict, ValidationError
from helpdesk.extensions import db
from helpdesk.inbound import quarantine
from helpdesk.inbound.ingest import Envelope, Outcome, ingest
from helpdesk.inbound.parser import parse
from helpdesk.models import Contact, OutboxMessage, QuarantineItem, Ticket
from helpdesk.services import Actor
from helpdesk.services.integrations import IntegrationsService
from helpdesk.services.senders import normalize_pattern
from helpdesk.services.staff import StaffService
from tests.support.mail import SUPPORT

# What mail can be delivered to, each as it is stored.
VALID = [
    "ann@example.com",
    "root@localhost",  # a server's own mailbox
    "soporte@intranet",  # a dotless intranet domain
    "ops@mail_srv.corp",  # a Windows host name
    "yuki..tanaka.@docomo.example.jp",  # Japanese carriers' local parts
    "o'brien+tickets@example.ie",
    "josé@correo.example.es",  # RFC 6531
    "用户@例子.广告",
    "ann@[192.0.2.1]",
    "ann@[ipv6:2001:db8::1]",
    "a@" + "b" * 63 + ".example",
    "a=b?c@example.com",  # `=` and `?` are atext; only together do they open an encoded word
]
# What no mail server delivers to.
INVALID = [
    "ann",
    "@example.com",
    "ann@",
    "ann@@example.com",
    "a b@example.com",
    "ann@exa mple.com",
    "<ann@example.com>",
    "ann@example..com",
    "ann@-example.com",
    "ann@example-.com",
    "ann@.example.com",
    "ann,bob@example.com",
    '"ann"@example.com',
    "ann@example.com;bob@example.com",
    "ann\x00@example.com",
    "ann@[300.1.1.1]",
    "a@" + "b" * 64 + ".example",  # a label longer than DNS allows
    "a" * 245 + "@example.com",  # longer than an SMTP path
    # Shaped as RFC 2047 encoded words: the email package decodes them when it writes a
    # header, into a line break (every mail naming it failed) or another address.
    "=?utf-8?q?a=0d=0ab?=@example.com",
    "=?utf-8?q?eve=40evil.example=2c?=@example.com",
]


@pytest.mark.parametrize("address", VALID)
def test_deliverable_addresses_are_valid_and_normal(address: str) -> None:
    assert addresses.is_valid(address)
    assert addresses.normalize(f"  {address.upper()}. ") == address.upper().lower()


@pytest.mark.parametrize("address", INVALID)
def test_what_mail_cannot_reach_is_invalid(address: str) -> None:
    assert not addresses.is_valid(addresses.normalize(address))


def test_a_trailing_dot_names_the_same_mailbox() -> None:
    assert addresses.normalize("Ann@Example.COM.") == "ann@example.com"
    assert addresses.normalize("ann@example.com..") == "ann@example.com"
    assert not addresses.is_valid(addresses.normalize("ann@."))


def _from_header(address: str) -> bytes:
    return (f"From: Someone <{address}>\r\nSubject: hello\r\n\r\nbody\r\n").encode()


# A NUL is not among them: it never reaches the address reader (the parser drops
# control characters from header text first).
@pytest.mark.parametrize("address", [a for a in VALID + INVALID if "\x00" not in a])
def test_the_gateway_reads_exactly_what_the_rule_accepts(address: str) -> None:
    mail = parse(_from_header(address))
    expected = addresses.normalize(address) if addresses.is_valid(addresses.normalize(address)) else ""
    if not expected:
        # Nothing else in the header may be taken for the address either.
        assert mail.from_address == "" or addresses.is_valid(mail.from_address)
        assert mail.from_address != addresses.normalize(address)
    else:
        assert mail.from_address == expected


@pytest.mark.parametrize("address", ["root@localhost", "soporte@intranet", "yuki..tanaka.@docomo.example.jp"])
def test_the_service_accepts_every_address_the_gateway_reads(service, agent_actor, address: str) -> None:
    ticket = service.open_ticket(
        subject="s",
        description="d",
        requester_email=address,
        channel="web",
        actor=agent_actor,
        cc=[(address + "x", "")],
    )
    assert ticket.requester.email == address
    assert [p.email for p in ticket.participants] == [address + "x"]


@pytest.mark.parametrize(
    "address", ["ann", "ann@exa mple.com", "ann@@example.com", "=?utf-8?q?a=0d=0ab?=@example.com"]
)
def test_every_channel_refuses_a_non_address_with_the_same_words(
    service, agent_actor, api, portal, app, address: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        service.open_ticket(
            subject="s", description="d", requester_email=address, channel="web", actor=agent_actor
        )
    assert refused.value.fields == {"requester_email": addresses.INVALID}
    with pytest.raises(ValidationError) as refused:
        service.open_ticket(
            subject="s",
            description="d",
            requester_email="ann@example.com",
            channel="web",
            actor=agent_actor,
            cc=[(address, "")],
        )
    assert addresses.INVALID in refused.value.fields["cc"]

    response = api.post("/tickets", {"subject": "s", "description": "d", "requester_email": address})
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {"requester_email": addresses.INVALID}
    response = api.post(
        "/tickets",
        {"subject": "s", "description": "d", "requester_email": "ann@example.com", "cc": [address]},
    )
    assert response.status_code == 422
    assert addresses.INVALID in response.get_json()["error"]["fields"]["cc"]

    page = portal.post(
        "/tickets/new", {"subject": "s", "description": "d", "requester_email": address}, page="/tickets/new"
    )
    assert page.status_code == 422 and addresses.INVALID.encode() in page.data
    assert db.session.execute(select(Ticket)).first() is None

    with pytest.raises(ValidationError) as refused:
        StaffService(db.session).create(
            email=address, name="N", role="agent", password="long-enough-password"
        )
    assert refused.value.fields == {"email": addresses.INVALID}
    with pytest.raises(ValidationError) as refused:
        normalize_pattern(address)
    assert addresses.INVALID in refused.value.fields["pattern"]


def test_sender_rules_take_intranet_domains_and_addresses() -> None:
    assert normalize_pattern("@Intranet") == "@intranet"
    assert normalize_pattern("@example.com.") == "@example.com"
    assert normalize_pattern("Root@Localhost") == "root@localhost"
    with pytest.raises(ValidationError):
        normalize_pattern("@exa mple.com")


@pytest.mark.parametrize(
    ("address", "base", "plus"),
    [
        ("Support+TKT-000078@Helpdesk.test", "support@helpdesk.test", "TKT-000078"),
        ("support@helpdesk.test", "support@helpdesk.test", None),
        ("<support+a+b@helpdesk.test>", "support@helpdesk.test", "a+b"),
    ],
)
def test_plus_addresses_deliver_to_their_mailbox(address: str, base: str, plus: str | None) -> None:
    assert addresses.without_detail(address) == base
    assert addresses.detail(address) == plus
    assert addresses.is_support_address(address, {"support@helpdesk.test"})
    assert not addresses.is_support_address(address, {"billing@helpdesk.test"})
    assert not addresses.is_support_address("support", {"support"})


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("v.ictim@gmail.com", "victim@gmail.com"),
        ("Vi.C.tim+spam@GMail.com.", "victim@gmail.com"),
        ("victim@googlemail.com", "victim@gmail.com"),
        ("v.i.c.t.i.m@googlemail.com", "victim@gmail.com"),
        ("victim@\uff47\uff4d\uff41\uff49\uff4c.com", "victim@gmail.com"),  # fullwidth: IDNA maps it
        ("v.ictim@example.com", "v.ictim@example.com"),  # only providers known to ignore dots
        ("v.ictim@mail.gmail.com", "v.ictim@mail.gmail.com"),
        ("v.ictim@gmail.co", "v.ictim@gmail.co"),
    ],
)
def test_gmail_ignores_dots_and_googlemail_is_gmail_so_one_mailbox(address: str, key: str) -> None:
    """Gmail delivers `v.ictim@`, `vi.ctim@` and `victim@googlemail.com` to one inbox:
    as different mailboxes, a stranger made each spelling a customer of its own and
    flooded that inbox with acknowledgments past every per-mailbox limit."""
    assert addresses.mailbox(address) == key


def test_a_gmail_spelling_stays_its_own_address_for_everything_but_counting_and_our_own() -> None:
    """The key counts; it grants nothing: `v.ictim@gmail.com` is stored, compared
    and authorized as written, another contact than `victim@gmail.com`. Only our own
    mailbox is known by it (`is_support_address`): mail to a spelling of it reaches us."""
    assert addresses.normalize("V.ictim@Gmail.com") == "v.ictim@gmail.com"
    assert addresses.without_detail("v.ictim+x@googlemail.com") == "v.ictim@googlemail.com"


@pytest.mark.parametrize(
    "address",
    [
        "helpdesk@gmail.com",
        "Help.Desk@googlemail.com",
        "h.e.l.p.d.e.s.k+x@gmail.com",
        "help.desk+TKT-000078@GMAIL.COM.",
        "help.desk@\uff47\uff4d\uff41\uff49\uff4c.com",  # fullwidth: IDNA maps it
    ],
)
def test_every_spelling_of_a_gmail_support_inbox_is_a_support_address(address: str) -> None:
    """Gmail delivers each to the support inbox `help.desk@gmail.com`: the sender
    mailed them and a mail's Cc made them participants, as strangers' addresses
    (SPEC §8)."""
    assert addresses.is_support_address(address, ["help.desk@gmail.com"])
    assert addresses.is_support_address("help.desk@gmail.com", [address])


@pytest.mark.parametrize(
    "address", ["help.desk@gmail.co", "help.desk@mail.gmail.com", "helpdesk@example.com", "help.desk", ""]
)
def test_another_mailbox_is_no_support_address(address: str) -> None:
    """Dots count outside Gmail, and a Workspace domain keeps them (`mailbox`)."""
    assert not addresses.is_support_address(address, ["help.desk@gmail.com", "help.desk@example.com"])


STAND_IN = "5215512345678@phone.invalid"  # addresses.for_phone("+5215512345678")


@pytest.mark.parametrize(
    "address",
    [
        STAND_IN,
        "5215512345678@phone.ｉｎｖａｌｉｄ",  # fullwidth letters: IDNA folds them to ASCII
        "5215512345678@phone．invalid",  # a fullwidth full stop: IDNA splits labels at it
        "5215512345678@PHONE.INVALID",
        "5215512345678@phone.invalid.",
        "5215512345678+x@phone.invalid",
        "５２１５５１２３４５６７８@phone.invalid",  # another local part, the same domain
        "anyone@invalid",  # the reserved name itself (RFC 2606 §2)
    ],
)
def test_every_spelling_of_the_reserved_invalid_domain_is_reserved(address: str) -> None:
    """A stand-in address is judged as a relay and the per-customer limits see it:
    `…@phone.ｉｎｖａｌｉｄ` passed as a customer's address while its mailbox (the
    key the limits count by) was the WhatsApp customer's own stand-in, so someone
    giving it shared, and used up, that customer's limits."""
    assert addresses.is_reserved_invalid(address)


@pytest.mark.parametrize(
    "address", ["ann@invalid.example", "ann@invalidphone.example", "invalid@example.com"]
)
def test_a_domain_merely_naming_invalid_is_not_reserved(address: str) -> None:
    assert not addresses.is_reserved_invalid(address)


# --- IDNA 2008 (RFC 5891) with UTS #46 non-transitional mapping -------------------------


@pytest.mark.parametrize(
    ("address", "wire"),
    [
        ("hans@straße.de", "hans@xn--strae-oqa.de"),  # IDNA 2003: hans@strasse.de
        ("eleni@ς.gr", "eleni@xn--3xa.gr"),  # final sigma; IDNA 2003: σ, xn--4xa
        ("ana@bücher.example", "ana@xn--bcher-kva.example"),
        ("ana@ｂücher．example", "ana@xn--bcher-kva.example"),  # UTS 46 maps fullwidth
        ("ann@ｅｘａｍｐｌｅ.com", "ann@example.com"),
        ("ops@mail_srv.bücher.example", "ops@mail_srv.xn--bcher-kva.example"),  # ASCII label as is
    ],
)
def test_a_domain_goes_out_in_its_idna_2008_form(address: str, wire: str) -> None:
    """`straße.de` (xn--strae-oqa.de) and `strasse.de` are two registrable domains:
    Python's IDNA 2003 codec mailed a customer at the first to whoever owns the second."""
    assert addresses.on_the_wire(address) == wire


def test_sharp_s_and_ss_are_two_mailboxes_and_each_keeps_its_spelling() -> None:
    assert addresses.mailbox("Hans+x@straße.de") == "hans@xn--strae-oqa.de"
    assert addresses.mailbox("hans@strasse.de") == "hans@strasse.de"
    assert not addresses.is_support_address("hans@straße.de", ["hans@strasse.de"])
    assert addresses.folded("hans@straße.de") == "hans@straße.de"
    assert addresses.folded("hans@ｓｔｒａßｅ.de") == "hans@straße.de"
    assert addresses.named("Hans@STRAẞE.de") == "hans@straße.de"  # capital sharp s
    assert addresses.either_form("hans@xn--strae-oqa.de") == {"hans@xn--strae-oqa.de", "hans@straße.de"}


@pytest.mark.parametrize(
    "domain",
    [
        "\u200dü.example",  # a joiner outside its context (IDNA 2003 dropped it: ü.example)
        "ab--ü.example",  # hyphens in the 3rd and 4th place of a U-label
        "ü-.example",
        "\u0301ü.example",  # a label starting with a combining mark
        "ü" * 60 + ".example",  # 60 letters, but the A-label is longer than 63
    ],
)
def test_a_domain_idna_2008_refuses_has_no_ascii_form(domain: str) -> None:
    assert addresses.domain_to_ascii(domain) is None
    assert addresses.on_the_wire(f"ana@{domain}") is None


@pytest.mark.parametrize(
    ("ascii_form", "unicode_form"),
    [
        ("xn--bcher-kva.example", "bücher.example"),
        ("XN--STRAE-OQA.de", "straße.de"),
        ("mail_srv.xn--bcher-kva.example.", "mail_srv.bücher.example."),
        ("example.com", "example.com"),
        ("xn--zz.example", None),  # no punycode
        ("xn--tda-.example", None),
        ("a..xn--bcher-kva.example", None),
    ],
)
def test_an_ascii_form_reads_back_as_its_domain_or_none(ascii_form: str, unicode_form: str | None) -> None:
    assert addresses.domain_to_unicode(ascii_form) == unicode_form


def test_a_megabyte_domain_is_refused_before_idna_runs() -> None:
    for domain in ("ü" * 1_000_000, "ü." * 500_000, "xn--" + "a" * 1_000_000, "a." * 500_000):
        assert addresses.domain_to_ascii(domain) is None
        assert addresses.domain_to_unicode(domain) is None


# Hosts named by a number: valid mail syntax, no customer's address.
NUMERIC_HOSTS = ["root@127.0.0.1", "x@123", "ann@10.1", "ann@0x7f000001", "ann@example.123"]


@pytest.mark.parametrize("address", [*NUMERIC_HOSTS, "ann@[10.0.0.1]", "ann@１２７.０.０.１"])
def test_a_host_named_by_a_number_is_an_address_literal(address: str) -> None:
    assert addresses.is_address_literal(addresses.normalize(address))
    assert addresses.named(address) is None


@pytest.mark.parametrize("address", ["root@localhost", "ann@123.example", "ann@0xdead.example", "a@cafe"])
def test_a_name_with_digits_is_still_a_host_name(address: str) -> None:
    assert not addresses.is_address_literal(address)
    assert addresses.named(address) == address


@pytest.mark.parametrize("address", NUMERIC_HOSTS)
def test_every_channel_refuses_a_customer_at_a_host_named_by_a_number(
    app, client, api, portal, admin, address: str
) -> None:
    """`root@127.0.0.1` and `x@123` passed where `root@[127.0.0.1]` was refused: a
    resolver reads such a domain as an IPv4 address (no top-level domain is
    all-numeric, RFC 3696 §2), so a relay mailing it connects to that host, its own
    loopback or a server inside the network, and `verify_email` mailed a code there
    on anyone's word. Refused as a customer on every way in; mail from it is held
    and cannot be approved (docs/integrations.md, "Who the customer is")."""
    tokens = {
        kind: IntegrationsService(db.session).add(kind, kind)[1] for kind in ("chat", "assistant", "workflow")
    }
    db.session.commit()

    def integration(kind: str, path: str, body: object):  # type: ignore[no-untyped-def]
        return client.post(f"/api/v1/{path}", json=body, headers={"Authorization": f"Bearer {tokens[kind]}"})

    def tool(customer: dict[str, str], channel: str, name: str, arguments: dict[str, str]):  # type: ignore[no-untyped-def]
        call = {
            "id": "c1",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)},
        }
        body = {"customer": customer, "channel": channel, "tool_calls": [call]}
        return integration("assistant", "assistant/tool-calls", body)

    new = {"subject": "s", "description": "d"}
    assert api.post("/tickets", {**new, "requester_email": address}).status_code == 422
    cc = api.post("/tickets", {**new, "requester_email": "ann@example.com", "cc": [address]})
    assert set(cc.get_json()["error"]["fields"]) == {"cc"}
    page = portal.post("/tickets/new", {**new, "requester_email": address}, page="/tickets/new")
    assert page.status_code == 422 and addresses.INVALID.encode() in page.data
    workflow = integration(
        "workflow", "workflow/tickets", {"title": "t", "description": "d", "customer_email": address}
    )
    assert workflow.status_code == 422 and set(workflow.get_json()["error"]["fields"]) == {"customer_email"}
    chat = integration(
        "chat",
        "chat/tickets",
        {"conversation_id": "c1", "customer": {"email": address}, "transcript": "help"},
    )
    assert chat.get_json()["error"]["fields"] == {"customer.email": addresses.INVALID}
    report = tool({"email": address}, "chat", "create_ticket_report", {"title": "t", "description": "d"})
    assert report.get_json()["error"]["fields"] == {"customer.email": addresses.INVALID}
    verify = tool({"phone": "+5215512345678"}, "whatsapp", "verify_email", {"email": address})
    assert json.loads(verify.get_json()["tool_outputs"][0]["output"])["error"] == "Invalid arguments format"
    assert db.session.execute(select(OutboxMessage)).first() is None

    app.config["UNKNOWN_SENDER_POLICY"] = "accept"  # would make it a customer
    raw = f"From: {address}\r\nTo: {SUPPORT}\r\nSubject: Hi\r\nMessage-ID: <m1@example.com>\r\n\r\nHi.\r\n"
    mail = ingest(raw.encode(), Envelope(address, (SUPPORT,), "smtp"), app.config)
    db.session.commit()
    assert mail.outcome is Outcome.QUARANTINED and "names a host by its IP address" in mail.reason
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    with pytest.raises(Conflict):
        quarantine.approve(db.session, item.id, Actor.staff(admin), app.config)
    db.session.rollback()
    assert db.session.execute(select(Ticket)).first() is None
    assert db.session.execute(select(Contact).where(Contact.email == address)).first() is None
