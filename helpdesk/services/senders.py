"""Authorized senders: who may open tickets by mail (docs/mail-gateway.md).

A rule is an exact address (`ann@example.com`) or a whole domain (`@example.com`),
tied to an organization; an exact rule wins over a domain rule.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk import addresses, inputs
from helpdesk.database import insert_ignoring
from helpdesk.errors import Conflict, NotFound, ValidationError
from helpdesk.models import AuthorizedSender, Organization

MAX_ORGANIZATION = 200  # organizations.name
IP_HOST = "names a host by its IP address: mail from it is held whatever the rules say"


def normalize_pattern(pattern: str) -> str:
    """Lower-case and check a rule, its domain as IDNA maps it (`addresses.folded`);
    raises ValidationError naming what is wrong.

    Addresses and domains follow `helpdesk.addresses`, the rule the gateway reads
    senders with, so every sender the gateway can see can also be authorized
    (`@intranet` included). A domain typed with fullwidth letters (`@ｂücher.example`,
    an input method's) is the domain it maps to: kept as typed, the rule matched no
    mail a relay delivers, as the gateway pairs only a domain's two spellings
    (docs/mail-gateway.md, "One domain, two spellings")."""
    value = addresses.folded(addresses.normalize(pattern))
    if value.startswith("@"):
        domain = value[1:].rstrip(".")
        if not addresses.is_valid_domain(domain):
            raise ValidationError({"pattern": "a domain rule looks like @example.com"})
        return "@" + domain
    if not addresses.is_valid(value):
        raise ValidationError({"pattern": f"{addresses.INVALID} (a@b.c) nor a domain (@b.c)"})
    return value


class SendersService:
    def __init__(self, session: Session) -> None:
        self.session = session

    def organization(self, name: str) -> Organization:
        """Find or create an organization by name: one line of text (a control
        character, NUL among them, is a space; PostgreSQL refuses NUL)."""
        name = inputs.one_line(name or "")
        if not name:
            raise ValidationError({"organization": "is required"})
        if len(name) > MAX_ORGANIZATION:
            raise ValidationError({"organization": f"must be at most {MAX_ORGANIZATION} characters"})
        named = select(Organization).where(Organization.name == name)
        org = self.session.execute(named).scalar_one_or_none()
        if org is None:
            # Another request may be creating it at this moment: then theirs is read back.
            org = self.session.scalars(
                insert_ignoring(self.session, Organization, ["name"])
                .values(name=name)
                .returning(Organization)
            ).one_or_none()
        return org or self.session.execute(named).scalar_one()

    def add(self, pattern: str, organization_name: str) -> AuthorizedSender:
        """Authorize `pattern` for the organization (created when new). An address
        literal (`root@[127.0.0.1]`, `x@127.0.0.1`, `@[192.0.2.1]`) is refused: mail
        from one is held whatever the rules say (docs/mail-gateway.md, "What an
        address is"), so its rule could never match. `remove` still takes one stored
        before this was refused."""
        value = normalize_pattern(pattern)
        if addresses.is_address_literal(value):
            raise ValidationError({"pattern": IP_HOST})
        duplicate = Conflict(f"{value} is already authorized.")
        existing = self._find(value)
        if existing is not None:  # named as stored: it may be the domain's other spelling
            raise Conflict(f"{existing.pattern} is already authorized.")
        organization = self.organization(organization_name)
        # The insert refuses what another request is adding at the same moment.
        rule = self.session.scalars(
            insert_ignoring(self.session, AuthorizedSender, ["pattern"])
            .values(pattern=value, organization_id=organization.id)
            .returning(AuthorizedSender)
        ).one_or_none()
        if rule is None:
            raise duplicate
        return rule

    def remove(self, pattern: str) -> None:
        """Remove the rule `pattern` names, in any spelling (`_find`), or one stored
        as typed before rules were folded (`@ｂücher.example`), by that text."""
        typed = addresses.normalize(pattern)
        rule = self._find(normalize_pattern(pattern), typed)
        if rule is None:
            raise NotFound(f"No rule {pattern}.")
        self.session.delete(rule)
        self.session.flush()

    def list(self) -> list[AuthorizedSender]:
        return list(
            self.session.execute(select(AuthorizedSender).order_by(AuthorizedSender.pattern)).scalars().all()
        )

    def _find(self, pattern: str, typed: str = "") -> AuthorizedSender | None:
        """The rule `pattern` names, stored in any spelling of an internationalised
        domain (`addresses.either_form`): the gateway matches a rule in all of them,
        so `@xn--bcher-kva.example` beside `@bücher.example` would be a second rule
        for one domain (docs/mail-gateway.md, "One domain, two spellings"), or
        stored as `typed`. The spelling given wins."""
        # `@domain` too: no local part needed
        forms = sorted(addresses.either_form(pattern) | ({typed} if typed else set()))
        rules = self.session.scalars(
            select(AuthorizedSender).where(AuthorizedSender.pattern.in_(forms)).order_by(AuthorizedSender.id)
        ).all()
        return next((rule for rule in rules if rule.pattern == pattern), rules[0] if rules else None)
