"""Domain exceptions. Services raise them; the API, portal, CLI and gateway map them
to their own answers (HTTP status, flash message, exit code, SMTP reply)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class DomainError(Exception):
    """Base of every error that is the user's input, not a bug."""

    code = "error"


class ValidationError(DomainError):
    code = "validation_error"

    def __init__(self, fields: Mapping[str, str], message: str = "Invalid input.") -> None:
        super().__init__(message)
        self.fields = dict(fields)
        self.message = message

    def __str__(self) -> str:
        details = "; ".join(f"{name}: {text}" for name, text in self.fields.items())
        return f"{self.message} {details}".strip()


class TicketCancelled(ValidationError):
    """A cancelled ticket is final: it takes internal notes, nothing else a person
    writes. A ValidationError to the API and portal as before; its own class so the
    assistant can tell the customer in words of their own (docs/integrations.md)."""

    def __init__(self) -> None:
        super().__init__({"status": "the ticket is cancelled; only notes can be added"})


class InvalidTransition(DomainError):
    code = "invalid_transition"

    def __init__(self, current: str, requested: str, allowed: Iterable[str]) -> None:
        self.current = current
        self.requested = requested
        self.allowed = tuple(allowed)
        names = ", ".join(self.allowed) or "none (final state)"
        super().__init__(f"Cannot move a ticket from {current} to {requested}; allowed: {names}.")


class NotFound(DomainError):
    code = "not_found"


class Forbidden(DomainError):
    """The actor's role does not allow it (an agent managing shared canned replies)."""

    code = "forbidden"


class Conflict(DomainError):
    """The request is valid but clashes with stored state (e.g. set-next too low)."""

    code = "conflict"
