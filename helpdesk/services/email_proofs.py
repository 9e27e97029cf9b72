"""Proof that a WhatsApp customer reads the mailbox they name (docs/integrations.md,
"Who the customer is").

An email typed into WhatsApp is a claim: binding the number to it on its word let
whoever named an address before its owner wrote read the tickets the owner's mail
opened later. So a number is bound to an address only after a code mailed there
comes back from that number: `request_code` mails a fresh one (the assistant's
`verify_email` without `code`), `confirm` checks it and binds
(`contacts.bind_proven`).

- A code is `CODE_DIGITS` random digits, good for `CODE_LIFETIME`, for the number
  that asked and the address it was mailed to; a new request replaces the
  number's earlier code. Only a keyed hash of it is stored (`EmailProof`), and it
  is compared in constant time; `MAX_WRONG_TRIES` wrong tries kill it.
- Requests are limited to `MAX_REQUESTS` per number (whatever mailboxes it names)
  and `MAILBOX_MAX_REQUESTS` per mailbox (`addresses.mailbox`: every spelling of
  one inbox, from every number together) within `REQUEST_WINDOW`, so the helpdesk
  cannot be made to flood an inbox; the mail is outbox mail (`email_code`) under
  the sender's recipient rules, but for two: neither its limits on automatic mail
  nor an address's undeliverable mark hold it back (the owner asked for it), and
  a right code clears that mark, being read from our mail. The
  mailbox's limit is well above a number's, so no one number (it took one, when
  they were equal) keeps the owner's number from asking: it takes four spending
  every request on that mailbox every hour (docs/security.md, "An email typed
  into WhatsApp").
- No code is mailed for an address whose contact has another number: a
  contact's number is never replaced, so it could bind nothing, and its owner
  would get mail on a stranger's request. The request is answered, counted and
  stored as any other (with a code no one can type), so the number that asked
  cannot learn whether the address is linked.
- A code may be typed in any script's decimal digits (Arabic-Indic, fullwidth…):
  each is read as its ASCII digit; spaces, dashes and invisible format characters
  (RLM, zero-width space, BOM…) are ignored.
- Wrong codes are limited per mailbox: once `MAILBOX_MAX_WRONG` were given for it
  within `WRONG_WINDOW`, a number that gave one of them neither checks nor asks
  for a code for it until the window moves on. A number that gave none (the
  owner's, reading the code) still may, so guessers cannot lock the owner out,
  and each further guess costs them a number a day.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import Integer, bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session

from helpdesk import addresses
from helpdesk.clock import now
from helpdesk.database import advisory_key
from helpdesk.models import Contact, EmailProof
from helpdesk.services import contacts, notifications
from helpdesk.services.actors import Actor

CODE_DIGITS = 6
MAX_CODE_TEXT = 20  # characters of a code as given, spaces and dashes included (the tool's schema)
_ASCII_DIGITS = "0123456789"
CODE_LIFETIME = timedelta(minutes=15)
MAX_WRONG_TRIES = 5  # per code
MAX_REQUESTS = 3  # per number, within REQUEST_WINDOW
MAILBOX_MAX_REQUESTS = 10  # per mailbox, from every number together, within REQUEST_WINDOW
REQUEST_WINDOW = timedelta(hours=1)
MAILBOX_MAX_WRONG = 20  # wrong codes per mailbox within WRONG_WINDOW, then one per number
WRONG_WINDOW = timedelta(days=1)  # counted by the code's request time
KEPT = WRONG_WINDOW  # rows older than this are deleted by the next request

# Two numbers asking for one mailbox, or giving codes for it, at once take turns
# (PostgreSQL), so they cannot both take its last request or its last wrong try
# before the limit: the first key is this space, the second the mailbox's
# hash (`database.advisory_key`), apart from the numbers' and the limits' spaces.
PROOF_LOCK = 0x707266  # "prf"
_LOCK_MAILBOX = select(
    func.pg_advisory_xact_lock(bindparam("space", type_=Integer), bindparam("mailbox_key", type_=Integer))
)
_DIGEST_PURPOSE = b"helpdesk email proof v1"


class ProofRefused(Exception):
    """Why a request or a check fails: `too_many` (a request limit), `too_many_wrong`
    (the mailbox's wrong codes, and this number gave some), `wrong_code` (no live
    code for this number and address, expired, or not this one), `taken` (binding
    would replace a number or an address already linked)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def request_code(
    session: Session, config: Mapping[str, Any], phone: str, email: str, language: str
) -> EmailProof:
    """Mail a new code to `email` for the number `phone`, in `language`, replacing
    the number's earlier one; its row. `ProofRefused("too_many")` over a limit. An
    address whose contact has another number gets no mail, and the caller cannot tell."""
    email = addresses.normalize(email)
    mailbox = addresses.mailbox(email)
    contacts.lock_number(session, phone)
    _lock_mailbox(session, mailbox)
    moment = now()
    session.execute(delete(EmailProof).where(EmailProof.created_at < moment - KEPT))
    by_number = EmailProof.phone == phone
    by_mailbox = EmailProof.mailbox == mailbox
    recent = EmailProof.created_at >= moment - REQUEST_WINDOW
    numbered, mailed, wrong, wrong_here = session.execute(
        select(
            func.count().filter(by_number, recent),
            func.count().filter(by_mailbox, recent),
            *_wrong_tries(by_number, by_mailbox),
        ).where(EmailProof.created_at >= moment - WRONG_WINDOW, or_(by_number, by_mailbox))
    ).one()
    if wrong >= MAILBOX_MAX_WRONG and wrong_here:
        raise ProofRefused("too_many_wrong")  # a code it may not check
    if numbered >= MAX_REQUESTS or mailed >= MAILBOX_MAX_REQUESTS:
        raise ProofRefused("too_many")
    session.execute(
        update(EmailProof).where(by_number, EmailProof.spent.is_(False)).values(spent=True),
        execution_options={"synchronize_session": False},
    )
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    proof = EmailProof(
        phone=phone,
        email=email,
        mailbox=mailbox,
        code_hash="",
        wrong_tries=0,
        spent=False,
        created_at=moment,
        expires_at=moment + CODE_LIFETIME,
    )
    session.add(proof)
    session.flush()  # its id is in the hash
    if contacts.has_another_number(session, email, phone):
        # No code could bind it, so none is mailed to its owner on a stranger's
        # request; the row is written and counted all the same, holding a code no
        # one can type (`confirm` drops every space), so the number is answered as
        # for any address (docs/security.md, "An email typed into WhatsApp").
        proof.code_hash = _digest(config, proof, f"never mailed {secrets.token_hex(16)}")
        session.flush()
        return proof
    proof.code_hash = _digest(config, proof, code)
    minutes = int(CODE_LIFETIME.total_seconds() // 60)
    notifications.queue_email_code(session, email, language, code, minutes)
    session.flush()
    return proof


def waiting_code(session: Session, phone: str, email: str) -> EmailProof | None:
    """The number's code for `email` that waits untouched: the newest it asked for,
    not spent, not expired, no wrong try given; None else. What a request submitted
    again is answered with instead of a new code (the assistant's `verify_email`)."""
    proof = session.execute(
        select(EmailProof)
        .where(EmailProof.phone == phone, EmailProof.spent.is_(False))
        .order_by(EmailProof.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if (
        proof is None
        or proof.email != addresses.normalize(email)
        or proof.expires_at <= now()
        or proof.wrong_tries
    ):
        return None
    return proof


def confirm(
    session: Session, config: Mapping[str, Any], phone: str, email: str, code: str, name: str = ""
) -> Contact:
    """Check `code` for the number `phone` and `email`; right, bind the number to the
    email's contact and return it. A wrong code counts a try, which the caller must
    commit even though this raises `ProofRefused("wrong_code")`; the fifth kills
    the code. `ProofRefused("too_many_wrong")`, nothing checked: the mailbox's wrong
    codes are spent and this number gave some of them. `ProofRefused("taken")`:
    proven, but the binding would replace an identity (`contacts.bind_proven`).

    Under the mailbox's lock (after the number's, as `request_code`), so two numbers
    checking at once cannot both take its last wrong try."""
    email = addresses.normalize(email)
    contacts.lock_number(session, phone)
    _lock_mailbox(session, addresses.mailbox(email))
    proof = session.execute(
        select(EmailProof)
        .where(EmailProof.phone == phone, EmailProof.spent.is_(False))
        .order_by(EmailProof.id.desc())
        .limit(1)
        .with_for_update()
    ).scalar_one_or_none()
    moment = now()
    if proof is None or proof.expires_at <= moment:
        raise ProofRefused("wrong_code")
    by_number, by_mailbox = EmailProof.phone == phone, EmailProof.mailbox == proof.mailbox
    wrong, wrong_here = session.execute(
        select(*_wrong_tries(by_number, by_mailbox)).where(
            EmailProof.created_at >= moment - WRONG_WINDOW, by_mailbox
        )
    ).one()
    if wrong >= MAILBOX_MAX_WRONG and wrong_here:
        raise ProofRefused("too_many_wrong")
    typed = _as_typed(code)
    # The address as asked for, in either spelling of its domain (one mailbox): the
    # code asked for `ana@xn--bcher-kva.example` is right for `ana@bücher.example`.
    asked_for = proof.email in addresses.either_form(email)
    right = asked_for and hmac.compare_digest(proof.code_hash, _digest(config, proof, typed))
    if not right:
        proof.wrong_tries += 1
        if proof.wrong_tries >= MAX_WRONG_TRIES:
            proof.spent = True
        session.flush()
        raise ProofRefused("wrong_code")
    proof.spent = True
    contact = contacts.bind_proven(session, phone, email, name)
    if contact is None:
        raise ProofRefused("taken")
    # The code was read from our mail: the mailbox takes it again, whatever bounced
    # before (docs/outbound-mail.md, "Verification codes"), in either form of its domain.
    contacts.clear_undeliverable(session, email, Actor.customer(email, name))
    return contact


def _as_typed(code: str) -> str:
    """The code as the customer meant it: spaces, dashes and invisible format
    characters (Unicode's category Cf: the RLM and LRM a right-to-left chat or a
    copy adds, zero-width spaces and joiners, a BOM) dropped, and each Unicode
    decimal digit (an Arabic or Persian keyboard's '١٢٣', a fullwidth '１２３') read
    as its ASCII digit; anything else is kept, so it makes a wrong code. Text longer
    than `MAX_CODE_TEXT` (the tool's schema refuses it) is no code, and is not read."""
    if len(code) > MAX_CODE_TEXT:
        return ""
    kept = "".join(code.split()).replace("-", "")
    return "".join(
        _ASCII_DIGITS[value] if (value := unicodedata.decimal(char, None)) is not None else char
        for char in kept
        if unicodedata.category(char) != "Cf"
    )


def _lock_mailbox(session: Session, mailbox: str) -> None:
    """Take the mailbox's proof lock until the transaction ends (PostgreSQL; SQLite
    lets one writer in at a time anyway)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_LOCK_MAILBOX, {"space": PROOF_LOCK, "mailbox_key": advisory_key(mailbox)})


def _wrong_tries(by_number: Any, by_mailbox: Any) -> tuple[Any, Any]:
    """The wrong codes given for a mailbox, and those of them this number gave (of
    the rows the query keeps)."""
    tries = EmailProof.wrong_tries
    return (
        func.coalesce(func.sum(tries).filter(by_mailbox), 0),
        func.coalesce(func.sum(tries).filter(by_mailbox, by_number), 0),
    )


def _digest(config: Mapping[str, Any], proof: EmailProof, code: str) -> str:
    """The stored form of a code: keyed by the secret and bound to its row, number
    and address, so neither a copied hash nor a code from another row matches."""
    key = hmac.new(str(config["SECRET_KEY"]).encode(), _DIGEST_PURPOSE, hashlib.sha256).digest()
    text = f"{proof.id}\n{proof.phone}\n{proof.email}\n{code}"
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
