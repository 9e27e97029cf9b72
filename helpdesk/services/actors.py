"""Who did something: passed to every service call instead of read from `g`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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


@dataclass(frozen=True)
class Actor:
    kind: str  # "staff", "customer" or "system"
    label: str
    staff_id: int | None = None
    email: str | None = None
    role: str | None = None

    @classmethod
    def staff(cls, user: StaffMember) -> Actor:
        return cls("staff", f"{user.name} <{user.email}>", user.id, user.email, user.role)

    @classmethod
    def customer(cls, email: str, name: str = "") -> Actor:
        label = f"{name} <{email}>" if name else email
        return cls("customer", label, email=email.lower())

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls("system", label)

    @property
    def is_staff(self) -> bool:
        return self.kind == "staff"

    @property
    def is_customer(self) -> bool:
        return self.kind == "customer"
