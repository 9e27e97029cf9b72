"""Who did something: passed to every service call instead of read from `g`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from helpdesk import addresses


class StaffMember(Protocol):
    """A staff user as far as an actor needs one: the ORM object (portal) or the
    row behind an API token (`helpdesk.auth.TokenStaff`)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def email(self) -> str: ...
    @property
    def role(self) -> str: ...


# The width of the author and actor label columns; a long name and a long address
# together can exceed it.
MAX_LABEL = 400


@dataclass(frozen=True)
class Actor:
    kind: str  # "staff", "customer", "unverified" or "system"
    label: str
    staff_id: int | None = None
    email: str | None = None
    role: str | None = None

    @classmethod
    def staff(cls, user: StaffMember) -> Actor:
        return cls("staff", f"{user.name} <{user.email}>", user.id, user.email, user.role)

    @classmethod
    def customer(cls, email: str, name: str = "") -> Actor:
        return cls("customer", _label(email, name), email=email.lower())

    @classmethod
    def unverified(cls, email: str, name: str = "") -> Actor:
        """Mail that claims a staff address without proof (docs/mail-gateway.md). It acts as
        nobody: it may only leave an internal note, labelled as unverified."""
        return cls("unverified", _label(email, name, " (unverified sender)"), email=email.lower())

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls("system", label)

    @property
    def is_staff(self) -> bool:
        return self.kind == "staff"

    @property
    def is_customer(self) -> bool:
        return self.kind == "customer"


def _label(email: str, name: str, suffix: str = "") -> str:
    """`Name <address>` and the suffix, within the label columns."""
    name = addresses.display_name(name)
    label = f"{name} <{email}>" if name else email
    return label[: MAX_LABEL - len(suffix)] + suffix
