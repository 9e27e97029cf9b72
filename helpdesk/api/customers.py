"""The customer an integration acts for, as a request names them
(docs/integrations.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app

from helpdesk import addresses, inputs, languages, phones
from helpdesk.errors import ValidationError
from helpdesk.extensions import db
from helpdesk.inbound import automail
from helpdesk.inputs import unstorable
from helpdesk.models import Contact
from helpdesk.services import contacts
from helpdesk.services.assistant import Customer

# The longest conversation id a chat or assistant request may name (tickets.conversation_id).
MAX_CONVERSATION_ID = 200


def conversation_id(text: str, errors: dict[str, str]) -> str:
    """A chat's or an assistant's conversation id, trimmed: 1 to MAX_CONVERSATION_ID
    characters of one line (it is shown on the ticket page and kept as given), none
    of them invisible (`inputs.has_invisible`): `conv-42` with a zero-width space
    was another conversation that read as the same (docs/integrations.md)."""
    text = text.strip()
    if not 1 <= len(text) <= MAX_CONVERSATION_ID or inputs.has_control(text) or inputs.has_invisible(text):
        errors["conversation_id"] = (
            f"must be 1 to {MAX_CONVERSATION_ID} characters of one line, none of them invisible"
        )
    return text


@dataclass(frozen=True)
class Named:
    """A customer as a request names them, checked, before any contact is looked for."""

    email: str | None  # as `contacts.named_address` takes it
    phone: str | None  # E.164
    phone_vouched: bool  # the channel proves the phone (WhatsApp's sender)
    name: str
    language: str  # one we have texts in, or "" for none given

    @property
    def key(self) -> str:
        """Who the customer is for their call limit (`customer_calls`): the proven
        number, else the mailbox (`addresses.mailbox`), so no spelling of either is
        a customer of its own."""
        if self.phone_vouched:
            assert self.phone is not None, "a vouched channel requires the phone"
            return self.phone
        assert self.email is not None, "an unvouched channel requires the email"
        return addresses.mailbox(self.email)


def named(value: dict[str, Any], *, phone_vouched: bool) -> Named:
    """The customer a request names: an email, a phone (E.164, a WhatsApp id) or
    both, maybe a name and a language. Only a phone the channel proves
    (`phone_vouched`: WhatsApp's sender) identifies anyone, and there it is
    required; otherwise the email is (docs/integrations.md, "Who the customer is")."""
    errors: dict[str, str] = {}
    known = {"email", "phone", "name", "language"}
    for key, item in value.items():
        if key not in known:
            errors[f"customer.{inputs.echoed(key)}"] = "is not a known field"
        elif not isinstance(item, str) or unstorable(item):
            errors[f"customer.{key}"] = "must be text"
    if errors:
        raise ValidationError(errors)
    # Its domain as IDNA maps it (a fullwidth spelling is the customer it reaches), no
    # address literal: the rule of every way in that names a customer.
    given = addresses.normalize(value.get("email")) or None
    email = contacts.named_address(db.session, given) if given is not None else None
    if given is not None and (email is None or addresses.is_reserved_invalid(email)):
        errors["customer.email"] = addresses.INVALID  # a stand-in is derived from a phone: no proof
    elif email is not None and contacts.is_ours(db.session, email, current_app.config):
        errors["customer.email"] = contacts.NOT_A_CUSTOMER
    elif email is not None and automail.is_machine_address(email):
        errors["customer.email"] = contacts.MACHINE_ADDRESS  # as the workflow API refuses it
    phone = None
    if value.get("phone"):
        phone = phones.normalize(value["phone"])
        if phone is None:
            errors["customer.phone"] = phones.INVALID
    # What the channel can prove is what it must give: WhatsApp (`phone_vouched`) the
    # sender's number, for an email typed there proves nothing (on its own it was
    # believed as a web chat's); a chat the email its backend vouches for.
    if phone_vouched and phone is None and "customer.phone" not in errors:
        errors["customer.phone"] = "is required"
    if not phone_vouched and email is None and "customer.email" not in errors:
        errors["customer.email"] = "is required"
    # A language we have no texts in is not an error: the default applies.
    language = languages.main_language(value.get("language", "")) or ""
    if errors:
        raise ValidationError(errors)
    return Named(email, phone, phone_vouched, value.get("name", "")[:200], language)


def named_customer(who: Named) -> Customer:
    """The customer `who` names, found or created as one contact."""
    contact = contacts.for_customer(
        db.session,
        email=who.email,
        phone=who.phone,
        phone_vouched=who.phone_vouched,
        name=who.name,
        language=who.language,
    )
    # A number is the address it was proven for, whatever that address became since:
    # one made a staff account later (someone hired) is no customer's, as named. A
    # stand-in address is no one's but the number's.
    if (
        who.phone_vouched
        and not addresses.is_reserved_invalid(contact.email)
        and contacts.is_ours(db.session, contact.email, current_app.config)
    ):
        raise ValidationError({"customer.phone": contacts.NUMBER_NOT_A_CUSTOMER})
    proven = who.phone if who.phone_vouched else None
    return Customer(contact, languages.of_contact(contact, current_app.config), proven)


def looked_up_customer(who: Named) -> Customer:
    """The customer `who` names, without storing anyone new: their contact as
    `named_customer` finds it, or, for someone no contact has (no contact at the
    email a chat names, none with the number WhatsApp proves), one that stands in
    for them and is never added to the session. A chat's lookup needs no contact,
    and neither does an assistant's call that reads or fails: each new address or
    number a caller named became a contact for good (docs/integrations.md, "Chat").
    The assistant's first call that writes for them stores the contact, in its own
    transaction (`AssistantService`). The stand-in reaches the tickets its address
    is a CC of (`contacts.tickets_of`: it has no id, so it is the requester of none)."""
    if who.phone_vouched:
        assert who.phone is not None, "a vouched channel requires the phone"
        known = contacts.holder(db.session, who.phone)
        email, proven = addresses.for_phone(who.phone), who.phone
    else:
        assert who.email is not None, "an unvouched channel requires the email"
        known = contacts.by_email(db.session, who.email)
        email, proven = who.email, None
    if known is not None:
        return named_customer(who)
    stand_in = Contact(
        email=email, phone=proven, name=addresses.display_name(who.name), language=who.language
    )
    return Customer(stand_in, languages.of_contact(stand_in, current_app.config), proven)
